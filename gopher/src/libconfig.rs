//! A small reader for the libconfig syntax.
//!
//! The legacy agent wrote its `.meta` files and its `gala-gopher.conf` in
//! libconfig. This module reads that syntax into an AST where every node keeps
//! its line, and offers a serde [`Deserializer`](serde::Deserializer) over
//! the AST ([`from_settings`], [`from_value`]) so the legacy config can be
//! read into the same structs as the TOML config.
//!
//! What is understood:
//! - settings `name = value` or `name : value`, each optionally ended by `;`
//!   or `,`; names match `[A-Za-z*][-A-Za-z0-9_*]*`;
//! - scalars: integers (decimal or `0x` hex, optional `L`/`LL` suffix),
//!   floats, booleans (`true`/`false`, any case), strings with libconfig's
//!   escapes `\" \\ \n \t \r \f \xNN` (any other backslash is kept with the
//!   character after it, as libconfig keeps it: `\|` stays `\|`), adjacent
//!   string literals being concatenated;
//! - groups `{ settings }`, arrays `[ scalars ]` and lists `( values )`, with
//!   `,` between elements and a trailing comma tolerated (libconfig 1.7, the
//!   one the legacy agent ran with, takes it; its shipped 1.x config has one);
//! - comments `# ...`, `// ...` and `/* ... */`.
//!
//! `@include` is refused with a clear error. The reader never panics, whatever
//! the input; nesting is limited to [`MAX_DEPTH`] levels.

use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

/// Deepest nesting of groups, arrays and lists that the reader accepts.
pub const MAX_DEPTH: usize = 64;

/// One `name = value` setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The setting's name.
    pub name: String,
    /// Its value.
    pub value: Value,
    /// Line of the name (1-based).
    pub line: usize,
}

/// A value with the line where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// What the value is.
    pub kind: ValueKind,
    /// Line where the value starts (1-based).
    pub line: usize,
}

/// The kinds of libconfig values.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// An integer (`5`, `-3`, `0x1F`, `10L`).
    Int(i64),
    /// A floating point number (`1.5`, `1e3`).
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A string, escapes resolved and adjacent literals joined.
    Str(String),
    /// `{ settings }`.
    Group(Vec<Setting>),
    /// `[ scalars ]`.
    Array(Vec<Value>),
    /// `( values )`.
    List(Vec<Value>),
}

impl ValueKind {
    /// The kind's name with an article, for error messages ("a string").
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Int(_) => "an integer",
            Self::Float(_) => "a float",
            Self::Bool(_) => "a boolean",
            Self::Str(_) => "a string",
            Self::Group(_) => "a group",
            Self::Array(_) => "an array",
            Self::List(_) => "a list",
        }
    }
}

impl Value {
    /// The string, if the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if the value is one.
    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            ValueKind::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The settings, if the value is a group.
    pub fn as_group(&self) -> Option<&[Setting]> {
        match &self.kind {
            ValueKind::Group(g) => Some(g),
            _ => None,
        }
    }

    /// The elements, if the value is an array or a list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match &self.kind {
            ValueKind::Array(v) | ValueKind::List(v) => Some(v),
            _ => None,
        }
    }
}

/// Finds a setting by name.
pub fn lookup<'a>(settings: &'a [Setting], name: &str) -> Option<&'a Setting> {
    settings.iter().find(|s| s.name == name)
}

/// A syntax error, with where it was found and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// Line (1-based).
    pub line: usize,
    /// Column in characters (1-based).
    pub column: usize,
    /// What was wrong, e.g. "expected `;` or `,` after setting `port`, found `8889`".
    pub message: String,
}

/// Parses a whole libconfig document into its top-level settings; the first
/// syntax error (in file order) fails it.
pub fn parse(src: &str) -> Result<Vec<Setting>, ParseError> {
    let (settings, errors) = parse_recovering(src);
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(settings),
    }
}

/// Parses a whole document and reports every syntax error, in file order.
///
/// After an error the reader skips to the end of the broken setting (the next
/// `;` or `,` at its level, the next `name =` on a later line, or the `}`
/// closing its group) and goes on. The settings returned are those read
/// without error: a broken setting is left out, never guessed, and a group
/// keeps its good settings.
pub fn parse_recovering(src: &str) -> (Vec<Setting>, Vec<ParseError>) {
    let (toks, mut errors) = Lexer::new(src).run();
    let mut p = Parser {
        toks,
        i: 0,
        errors: Vec::new(),
    };
    let settings = p.settings(None, 0).unwrap_or_default();
    errors.append(&mut p.errors);
    errors.sort_by_key(|e| (e.line, e.column));
    (settings, errors)
}

// ---------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Int(i64),
    Float(f64),
    Str(String),
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Assign,
    Semi,
    Comma,
    /// Text the lexer could not read; its error is already reported.
    Bad,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
    /// The token as written (shortened), for messages.
    text: String,
}

impl Token {
    fn describe(&self) -> String {
        match self.tok {
            Tok::Eof => "end of file".into(),
            Tok::Str(_) => "a string".into(),
            _ => format!("`{}`", self.text),
        }
    }
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: usize,
    column: usize,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '*'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*')
}

impl Lexer {
    fn new(src: &str) -> Self {
        Self {
            chars: src.chars().collect(),
            i: 0,
            line: 1,
            column: 1,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.i + n).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn err(&self, line: usize, column: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line,
            column,
            message: message.into(),
        }
    }

    fn text(&self, start: usize) -> String {
        let end = self.i.min(self.chars.len());
        let start = start.min(end);
        let s: String = self.chars[start..end].iter().take(40).collect();
        if end - start > 40 {
            format!("{s}...")
        } else {
            s
        }
    }

    /// Every token, ended by `Eof`, and every lexical error. Unreadable text
    /// becomes a [`Tok::Bad`] token, so the parser can go on after it.
    fn run(mut self) -> (Vec<Token>, Vec<ParseError>) {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        loop {
            if let Err(e) = self.skip_blanks() {
                errors.push(e);
            }
            let (line, column, start) = (self.line, self.column, self.i);
            let Some(c) = self.peek() else {
                out.push(Token {
                    tok: Tok::Eof,
                    line,
                    column,
                    text: String::new(),
                });
                return (out, errors);
            };
            let tok = match self.token(c, line, column, start) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(e);
                    Tok::Bad
                }
            };
            let text = self.text(start);
            out.push(Token {
                tok,
                line,
                column,
                text,
            });
        }
    }

    /// One token starting with `c`; always consumes at least one character.
    fn token(
        &mut self,
        c: char,
        line: usize,
        column: usize,
        start: usize,
    ) -> Result<Tok, ParseError> {
        let tok = match c {
            '{' | '}' | '[' | ']' | '(' | ')' | '=' | ':' | ';' | ',' => {
                self.bump();
                match c {
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    ';' => Tok::Semi,
                    ',' => Tok::Comma,
                    _ => Tok::Assign,
                }
            }
            '"' => Tok::Str(self.string()?),
            '@' => {
                self.bump();
                while self.peek().is_some_and(is_name_char) {
                    self.bump();
                }
                let word = self.text(start);
                if word == "@include" {
                    return Err(self.err(
                        line,
                        column,
                        "`@include` is not supported: copy the included settings into this file",
                    ));
                }
                return Err(self.err(line, column, format!("unexpected `{word}`")));
            }
            c if is_name_start(c) => {
                while self.peek().is_some_and(is_name_char) {
                    self.bump();
                }
                Tok::Name(self.text(start))
            }
            c if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') => self.number(line, column)?,
            c => {
                self.bump();
                return Err(self.err(
                    line,
                    column,
                    format!("unexpected character `{}`", c.escape_debug()),
                ));
            }
        };
        Ok(tok)
    }

    /// Skips white space and comments; an unterminated comment runs to the
    /// end of the text and is reported.
    fn skip_blanks(&mut self) -> Result<(), ParseError> {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('#'), _) | (Some('/'), Some('/')) => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let (line, column) = (self.line, self.column);
                    self.bump();
                    self.bump();
                    loop {
                        match (self.peek(), self.peek_at(1)) {
                            (Some('*'), Some('/')) => {
                                self.bump();
                                self.bump();
                                break;
                            }
                            (Some(_), _) => {
                                self.bump();
                            }
                            (None, _) => {
                                return Err(self.err(
                                    line,
                                    column,
                                    "unterminated comment: expected `*/`",
                                ));
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// A string literal; the cursor is on the opening quote.
    ///
    /// The escapes are libconfig's own: `\n \r \t \f \\ \"` and `\x` (or
    /// `\X`) followed by exactly two hex digits. Any other backslash is kept
    /// as it is, with the character after it (`\|` reads as the two
    /// characters `\|`, `\x4` as `\x4`), as libconfig keeps it. A `\x00` ends
    /// the literal's text, as it ends the C string libconfig 1.7 returns
    /// (1.5 dropped the byte instead).
    fn string(&mut self) -> Result<String, ParseError> {
        let (line, column) = (self.line, self.column);
        self.bump();
        let mut bytes = Vec::new();
        // Set by `\x00`: the rest of the literal is read but not kept.
        let mut ended = false;
        loop {
            let c = match self.bump() {
                None => {
                    return Err(self.err(
                        line,
                        column,
                        "unterminated string: expected a closing `\"`",
                    ));
                }
                Some('"') => break,
                Some('\\') => {
                    let hex = |c: Option<char>| c.and_then(|c| c.to_digit(16));
                    let byte = match self.peek() {
                        Some('"') => Some(b'"'),
                        Some('\\') => Some(b'\\'),
                        Some('n') => Some(b'\n'),
                        Some('t') => Some(b'\t'),
                        Some('r') => Some(b'\r'),
                        Some('f') => Some(0x0c),
                        Some('x' | 'X') => match (hex(self.peek_at(1)), hex(self.peek_at(2))) {
                            (Some(h), Some(l)) => {
                                self.bump();
                                self.bump();
                                // Two hex digits are at most 0xFF.
                                Some(u8::try_from(h * 16 + l).unwrap_or(u8::MAX))
                            }
                            _ => None,
                        },
                        _ => None,
                    };
                    match byte {
                        Some(b) => {
                            self.bump();
                            if b == 0 {
                                ended = true;
                            } else if !ended {
                                bytes.push(b);
                            }
                        }
                        // Not an escape: the backslash stays, and what follows
                        // it is read as ordinary text.
                        None if !ended => bytes.push(b'\\'),
                        None => {}
                    }
                    continue;
                }
                Some(c) => c,
            };
            if !ended {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A number; the cursor is on a digit, a sign or a dot.
    fn number(&mut self, line: usize, column: usize) -> Result<Tok, ParseError> {
        let start = self.i;
        let neg = match self.peek() {
            Some('-') => {
                self.bump();
                true
            }
            Some('+') => {
                self.bump();
                false
            }
            _ => false,
        };
        let tok = if self.peek() == Some('0') && matches!(self.peek_at(1), Some('x' | 'X')) {
            self.bump();
            self.bump();
            let digits_start = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                self.bump();
            }
            let digits: String = self.chars[digits_start..self.i].iter().collect();
            if digits.is_empty() {
                return Err(self.err(line, column, "expected hex digits after `0x`"));
            }
            self.int_suffix();
            self.check_number_end(start, line, column)?;
            let v = u64::from_str_radix(&digits, 16).map_err(|_| {
                self.err(
                    line,
                    column,
                    format!("integer `{}` does not fit in 64 bits", self.text(start)),
                )
            })?;
            // libconfig reads hex as an unsigned bit pattern.
            let v = i64::from_ne_bytes(v.to_ne_bytes());
            Tok::Int(if neg { v.wrapping_neg() } else { v })
        } else {
            let mut digits = 0;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
                digits += 1;
            }
            let mut float = false;
            if self.peek() == Some('.') {
                float = true;
                self.bump();
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                    digits += 1;
                }
            }
            if digits == 0 {
                self.check_number_end(start, line, column)?;
                return Err(self.err(
                    line,
                    column,
                    format!("expected a number, found `{}`", self.text(start)),
                ));
            }
            if matches!(self.peek(), Some('e' | 'E')) {
                let sign = usize::from(matches!(self.peek_at(1), Some('+' | '-')));
                if self.peek_at(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                    float = true;
                    for _ in 0..=sign {
                        self.bump();
                    }
                    while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        self.bump();
                    }
                }
            }
            let body: String = self.chars[start..self.i].iter().collect();
            if float {
                self.check_number_end(start, line, column)?;
                let v: f64 = body
                    .parse()
                    .map_err(|_| self.err(line, column, format!("invalid number `{body}`")))?;
                Tok::Float(v)
            } else {
                self.int_suffix();
                self.check_number_end(start, line, column)?;
                let v: i64 = body.parse().map_err(|_| {
                    self.err(
                        line,
                        column,
                        format!("integer `{body}` does not fit in 64 bits"),
                    )
                })?;
                Tok::Int(v)
            }
        };
        Ok(tok)
    }

    fn int_suffix(&mut self) {
        if self.peek() == Some('L') {
            self.bump();
            if self.peek() == Some('L') {
                self.bump();
            }
        }
    }

    fn check_number_end(
        &mut self,
        start: usize,
        line: usize,
        column: usize,
    ) -> Result<(), ParseError> {
        if self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
        {
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+'))
            {
                self.bump();
            }
            return Err(self.err(
                line,
                column,
                format!("invalid number `{}`", self.text(start)),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Parser

struct Parser {
    toks: Vec<Token>,
    i: usize,
    /// Syntax errors found so far.
    errors: Vec<ParseError>,
}

/// Where a sequence or group was opened, for "expected `)`" messages.
struct Open {
    line: usize,
}

/// A syntax error that is already in [`Parser::errors`] (or was reported by
/// the lexer as a [`Tok::Bad`] token).
struct Failed;

impl Parser {
    fn peek(&self) -> &Token {
        // The lexer always ends the stream with Eof, and `next` never moves past it.
        let last = self.toks.len().saturating_sub(1);
        &self.toks[self.i.min(last)]
    }

    fn peek_at(&self, n: usize) -> &Token {
        let last = self.toks.len().saturating_sub(1);
        &self.toks[self.i.saturating_add(n).min(last)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.i += 1;
        }
        t
    }

    /// Reports an error at a token, unless the token is one the lexer could
    /// not read (that error is already reported).
    fn fail(&mut self, t: &Token, message: String) -> Failed {
        if t.tok != Tok::Bad {
            self.errors.push(ParseError {
                line: t.line,
                column: t.column,
                message,
            });
        }
        Failed
    }

    /// After an error: skips to the end of the broken setting, i.e. past the
    /// next `;` or `,` at its level, or up to the next `name =` at its level,
    /// the `}` closing the enclosing group (`in_group`), or the end of the
    /// file. Closers of sequences left open by the error are passed over.
    fn resync(&mut self, in_group: bool) {
        let mut depth: usize = 0;
        loop {
            let t = self.peek();
            match t.tok {
                Tok::Eof => return,
                Tok::Semi | Tok::Comma if depth == 0 => {
                    self.next();
                    return;
                }
                Tok::RBrace if depth == 0 && in_group => return,
                Tok::Name(_) if depth == 0 && self.peek_at(1).tok == Tok::Assign => return,
                Tok::LBrace | Tok::LBracket | Tok::LParen => depth += 1,
                Tok::RBrace | Tok::RBracket | Tok::RParen => depth = depth.saturating_sub(1),
                _ => {}
            }
            self.next();
        }
    }

    /// Settings up to end of file (`group` is None) or up to the `}` closing a
    /// group. A broken setting is reported and left out; only a group that is
    /// never closed fails as a whole.
    fn settings(&mut self, group: Option<Open>, depth: usize) -> Result<Vec<Setting>, Failed> {
        let mut out: Vec<Setting> = Vec::new();
        loop {
            let t = self.peek().clone();
            match (&t.tok, &group) {
                (Tok::Eof, None) => return Ok(out),
                (Tok::RBrace, Some(_)) => {
                    self.next();
                    return Ok(out);
                }
                (Tok::Eof, Some(open)) => {
                    let message = format!(
                        "expected `}}` to close the group opened at line {}, found end of file",
                        open.line
                    );
                    return Err(self.fail(&t, message));
                }
                (Tok::Name(_), _) => {}
                _ => {
                    let want = if group.is_some() {
                        "a setting name or `}`"
                    } else {
                        "a setting name"
                    };
                    self.fail(&t, format!("expected {want}, found {}", t.describe()));
                    // The token is neither a name, nor the `}` closing this
                    // group, nor the end: resync moves past it.
                    self.resync(group.is_some());
                    continue;
                }
            }
            // `setting` always consumes the name, so resync moves on.
            let Ok(s) = self.setting(depth) else {
                self.resync(group.is_some());
                continue;
            };
            if let Some(first) = out.iter().find(|o| o.name == s.name) {
                let message = format!(
                    "duplicate setting `{}` (first set at line {})",
                    s.name, first.line
                );
                self.errors.push(ParseError {
                    line: s.line,
                    column: t.column,
                    message,
                });
                continue;
            }
            out.push(s);
        }
    }

    fn setting(&mut self, depth: usize) -> Result<Setting, Failed> {
        let name_tok = self.next();
        let Tok::Name(name) = name_tok.tok.clone() else {
            let message = format!("expected a setting name, found {}", name_tok.describe());
            return Err(self.fail(&name_tok, message));
        };
        let t = self.peek().clone();
        if t.tok != Tok::Assign {
            let message = format!(
                "expected `=` or `:` after setting name `{name}`, found {}",
                t.describe()
            );
            return Err(self.fail(&t, message));
        }
        self.next();
        let value = self.value(depth)?;
        let t = self.peek().clone();
        match t.tok {
            Tok::Semi | Tok::Comma => {
                self.next();
            }
            // Unreadable text after a good value is reported on its own.
            Tok::Name(_) | Tok::RBrace | Tok::Eof | Tok::Bad => {}
            _ => {
                let message = format!(
                    "expected `;` or `,` after setting `{name}`, found {}",
                    t.describe()
                );
                return Err(self.fail(&t, message));
            }
        }
        Ok(Setting {
            name,
            value,
            line: name_tok.line,
        })
    }

    /// A value. A token that cannot start one is not consumed (it may be the
    /// `;` or `}` the error recovery needs).
    fn value(&mut self, depth: usize) -> Result<Value, Failed> {
        let t = self.peek().clone();
        let line = t.line;
        let starts_value = match &t.tok {
            Tok::Int(_) | Tok::Float(_) | Tok::Str(_) => true,
            Tok::Name(n) => n.eq_ignore_ascii_case("true") || n.eq_ignore_ascii_case("false"),
            Tok::LBrace | Tok::LBracket | Tok::LParen => depth < MAX_DEPTH,
            _ => false,
        };
        if starts_value {
            self.next();
        }
        let kind = match t.tok {
            Tok::Int(i) => ValueKind::Int(i),
            Tok::Float(f) => ValueKind::Float(f),
            Tok::Str(ref s) => {
                let mut s = s.clone();
                while let Tok::Str(more) = &self.peek().tok {
                    s.push_str(more);
                    self.next();
                }
                ValueKind::Str(s)
            }
            Tok::Name(ref n) if n.eq_ignore_ascii_case("true") => ValueKind::Bool(true),
            Tok::Name(ref n) if n.eq_ignore_ascii_case("false") => ValueKind::Bool(false),
            Tok::Name(ref n) => {
                let message = format!("expected a value, found `{n}` (strings need double quotes)");
                return Err(self.fail(&t, message));
            }
            Tok::LBrace | Tok::LBracket | Tok::LParen if depth >= MAX_DEPTH => {
                return Err(self.fail(&t, format!("nesting deeper than {MAX_DEPTH} levels")));
            }
            Tok::LBrace => ValueKind::Group(self.settings(Some(Open { line }), depth + 1)?),
            Tok::LBracket => ValueKind::Array(self.seq(Tok::RBracket, line, depth + 1)?),
            Tok::LParen => ValueKind::List(self.seq(Tok::RParen, line, depth + 1)?),
            _ => {
                let message = format!("expected a value, found {}", t.describe());
                return Err(self.fail(&t, message));
            }
        };
        Ok(Value { kind, line })
    }

    /// Elements of an array (`close` is `]`) or a list (`)`), after the opener.
    fn seq(&mut self, close: Tok, open_line: usize, depth: usize) -> Result<Vec<Value>, Failed> {
        let array = close == Tok::RBracket;
        let (what, closer) = if array { ("array", "]") } else { ("list", ")") };
        let mut out = Vec::new();
        loop {
            if self.peek().tok == close {
                self.next();
                return Ok(out);
            }
            let at = self.peek().clone();
            if at.tok == Tok::Eof {
                let message = format!(
                    "expected `{closer}` to close the {what} opened at line {open_line}, found end of file"
                );
                return Err(self.fail(&at, message));
            }
            let v = self.value(depth)?;
            if array
                && matches!(
                    v.kind,
                    ValueKind::Group(_) | ValueKind::Array(_) | ValueKind::List(_)
                )
            {
                let message = "an array `[ ]` holds only scalar values; use a list `( )` for groups, arrays and lists"
                    .to_string();
                return Err(self.fail(&at, message));
            }
            out.push(v);
            let t = self.peek().clone();
            if t.tok == close || t.tok == Tok::Comma {
                self.next();
            }
            if t.tok == close {
                return Ok(out);
            }
            if t.tok != Tok::Comma {
                let message = format!(
                    "expected `,` or `{closer}` in the {what} opened at line {open_line}, found {}",
                    t.describe()
                );
                return Err(self.fail(&t, message));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// serde

/// An error while deserializing a libconfig tree into a Rust type, with the
/// line and the key path (`probes[2].param`) where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeError {
    /// What went wrong (serde's message, e.g. "unknown field `foo`, expected ...").
    pub message: String,
    /// Line of the innermost setting or value involved, when known.
    pub line: Option<usize>,
    /// Dotted key path from the root, e.g. `web_server.port` or `probes[2].param`.
    pub path: String,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "key `{}`: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            message: msg.to_string(),
            line: None,
            path: String::new(),
        }
    }
}

impl DeError {
    /// Sets the line unless a more precise (inner) one is already known.
    pub fn at_line(mut self, line: usize) -> Self {
        if self.line.is_none() {
            self.line = Some(line);
        }
        self
    }

    /// Prefixes the path with a key.
    pub fn in_key(mut self, key: &str) -> Self {
        self.path = if self.path.is_empty() {
            key.to_string()
        } else if self.path.starts_with('[') {
            format!("{key}{}", self.path)
        } else {
            format!("{key}.{}", self.path)
        };
        self
    }

    /// Prefixes the path with a sequence index.
    pub fn in_index(mut self, i: usize) -> Self {
        self.path = if self.path.is_empty() || self.path.starts_with('[') {
            format!("[{i}]{}", self.path)
        } else {
            format!("[{i}].{}", self.path)
        };
        self
    }
}

/// Deserializes top-level settings (a document) as if they were a group.
pub fn from_settings<T: DeserializeOwned>(settings: &[Setting]) -> Result<T, DeError> {
    T::deserialize(GroupDe(settings))
}

/// Deserializes one value.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, DeError> {
    T::deserialize(ValueDe(value))
}

struct GroupDe<'a>(&'a [Setting]);

impl<'de> de::Deserializer<'de> for GroupDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(GroupAccess {
            iter: self.0.iter(),
            cur: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct ValueDe<'a>(&'a Value);

impl<'de> de::Deserializer<'de> for ValueDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.0.kind {
            ValueKind::Int(i) => visitor.visit_i64(*i),
            ValueKind::Float(f) => visitor.visit_f64(*f),
            ValueKind::Bool(b) => visitor.visit_bool(*b),
            ValueKind::Str(s) => visitor.visit_str(s),
            ValueKind::Group(g) => visitor.visit_map(GroupAccess {
                iter: g.iter(),
                cur: None,
            }),
            ValueKind::Array(v) | ValueKind::List(v) => visitor.visit_seq(SeqAccess {
                iter: v.iter().enumerate(),
            }),
        };
        r.map_err(|e| e.at_line(self.0.line))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.0.kind {
            ValueKind::Str(s) => {
                let d: de::value::StrDeserializer<'_, DeError> = s.as_str().into_deserializer();
                visitor.visit_enum(d).map_err(|e| e.at_line(self.0.line))
            }
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct GroupAccess<'a> {
    iter: std::slice::Iter<'a, Setting>,
    cur: Option<&'a Setting>,
}

impl<'de> de::MapAccess<'de> for GroupAccess<'_> {
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(s) = self.iter.next() else {
            return Ok(None);
        };
        self.cur = Some(s);
        let key: de::value::StrDeserializer<'_, DeError> = s.name.as_str().into_deserializer();
        seed.deserialize(key)
            .map(Some)
            .map_err(|e| e.at_line(s.line).in_key(&s.name))
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let Some(s) = self.cur.take() else {
            return Err(de::Error::custom("a value was asked for before its key"));
        };
        seed.deserialize(ValueDe(&s.value))
            .map_err(|e| e.at_line(s.line).in_key(&s.name))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct SeqAccess<'a> {
    iter: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_> {
    type Error = DeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((i, v)) = self.iter.next() else {
            return Ok(None);
        };
        seed.deserialize(ValueDe(v))
            .map(Some)
            .map_err(|e| e.in_index(i))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(src: &str) -> Vec<Setting> {
        match parse(src) {
            Ok(s) => s,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    fn perr(src: &str) -> String {
        match parse(src) {
            Ok(s) => panic!("parse unexpectedly succeeded: {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn kind(s: &Setting) -> &ValueKind {
        &s.value.kind
    }

    #[test]
    fn scalars() {
        let s = p(r#"
            a = 5; b : -3, c = 0x1F; d = 10L; e = 7LL
            f = 1.5; g = -2e3; h = .5; i = TRUE; j = false
            k = "x\"y\\z\n\t\x41"; l = "con" /* c */ "cat" // tail
              "enated";
        "#);
        let v: Vec<_> = s
            .iter()
            .map(|s| (s.name.as_str(), kind(s).clone(), s.line))
            .collect();
        assert_eq!(
            v,
            vec![
                ("a", ValueKind::Int(5), 2),
                ("b", ValueKind::Int(-3), 2),
                ("c", ValueKind::Int(31), 2),
                ("d", ValueKind::Int(10), 2),
                ("e", ValueKind::Int(7), 2),
                ("f", ValueKind::Float(1.5), 3),
                ("g", ValueKind::Float(-2000.0), 3),
                ("h", ValueKind::Float(0.5), 3),
                ("i", ValueKind::Bool(true), 3),
                ("j", ValueKind::Bool(false), 3),
                ("k", ValueKind::Str("x\"y\\z\n\tA".into()), 4),
                ("l", ValueKind::Str("concatenated".into()), 4),
            ]
        );
    }

    /// libconfig's scanner interprets `\\ \" \n \r \t \f` and `\x`/`\X` with
    /// two hex digits; any other backslash stays, with what follows it.
    #[test]
    fn escapes_are_libconfigs() {
        let one = |lit: &str| -> String {
            let s = p(&format!("a = {lit};"));
            s[0].value.as_str().map(str::to_string).unwrap_or_default()
        };
        // The 1.x default config's start_check: the shell needs `\|` as written.
        assert_eq!(
            one(r#""ps -ef | grep 'redis\|keydb' | grep -v grep | wc -l""#),
            r"ps -ef | grep 'redis\|keydb' | grep -v grep | wc -l"
        );
        assert_eq!(one(r#""a\nb""#), "a\nb");
        assert_eq!(one(r#""a\rb\tc\fd""#), "a\rb\tc\u{c}d");
        assert_eq!(one(r#""back\\slash""#), r"back\slash");
        assert_eq!(one(r#""say \"hi\"""#), "say \"hi\"");
        assert_eq!(one(r#""\x41\X42\x6a""#), "ABj");
        // Unknown escapes, and `\x` without two hex digits, are kept.
        assert_eq!(one(r#""\q\d+\.\x4\xg1""#), r"\q\d+\.\x4\xg1");
        assert_eq!(one(r#""\\\q""#), r"\\q");
        // A backslash before the closing quote escapes it: still open.
        assert!(parse(r#"a = "x\";"#).is_err());
        // `\x00` ends the literal's text (libconfig returns a C string);
        // an adjacent literal is still joined.
        assert_eq!(one(r#""ab\x00cd" "ef""#), "abef");
        // Multi-line literals keep their line breaks; lines stay counted.
        let s = p("a = \"x\ny\";\nb = 1;");
        assert_eq!(s[0].value.as_str(), Some("x\ny"));
        assert_eq!(s[1].line, 3);
    }

    #[test]
    fn big_hex_is_a_bit_pattern() {
        let s = p("a = 0xFFFFFFFFFFFFFFFF; b = 0xFFFFFFFF;");
        assert_eq!(kind(&s[0]), &ValueKind::Int(-1));
        assert_eq!(kind(&s[1]), &ValueKind::Int(0xFFFF_FFFF));
    }

    #[test]
    fn groups_arrays_lists() {
        let s = p(
            "g = { x = 1; y = [1, 2, 3,]; }\nl = ( { a = \"b\" }, 5, [\"q\"], (), )\n*w-x_1 = [];",
        );
        let ValueKind::Group(g) = kind(&s[0]) else {
            panic!("not a group")
        };
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].value.as_seq().map(<[Value]>::len), Some(3));
        let ValueKind::List(l) = kind(&s[1]) else {
            panic!("not a list")
        };
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].line, 2);
        assert_eq!(l[0].as_group().map(|g| g[0].name.as_str()), Some("a"));
        assert_eq!(s[2].name, "*w-x_1");
        assert_eq!(kind(&s[2]), &ValueKind::Array(vec![]));
    }

    #[test]
    fn real_looking_meta_file() {
        let src = r#"version = "1.0.0"

measurements:
(
    {
        table_name: "tcp_link",
        entity_name: "tcp_link",
        fields:
        (
            {
                description: "id of process",
                type: "key",
                name: "tgid",
            },
            {
                description: "rx bytes",
                type: "gauge",
                name: "rx_bytes",
            }
        )
    }
)
"#;
        let s = p(src);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].value.as_str(), Some("1.0.0"));
        let ms = s[1].value.as_seq().unwrap_or_default();
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].line, 5);
        let m = ms[0].as_group().unwrap_or_default();
        let fields = lookup(m, "fields")
            .and_then(|f| f.value.as_seq())
            .unwrap_or_default();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].line, 15);
        let f1 = fields[1].as_group().unwrap_or_default();
        assert_eq!(
            lookup(f1, "name").and_then(|s| s.value.as_str()),
            Some("rx_bytes")
        );
        assert_eq!(lookup(f1, "name").map(|s| s.line), Some(18));
    }

    #[test]
    fn real_looking_conf_file() {
        let src = r#"
global =
{
    log_file_name = "gopher.log";
    log_level = "debug";  # debug | info | warn | error
};

web_server =
{
    port = 8888;
};

probes =
(
    {
        name = "system_meminfo";
        param = "-t 5";
        switch = "on";
    },
);
"#;
        let s = p(src);
        let names: Vec<_> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["global", "web_server", "probes"]);
        assert_eq!(s[2].value.as_seq().map(<[Value]>::len), Some(1));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            perr("port = 8888 8889;"),
            "line 1, column 13: expected `;` or `,` after setting `port`, found `8889`"
        );
        assert_eq!(
            perr("a 5;"),
            "line 1, column 3: expected `=` or `:` after setting name `a`, found `5`"
        );
        assert_eq!(
            perr("a = {\n b = 1;\n"),
            "line 3, column 1: expected `}` to close the group opened at line 1, found end of file"
        );
        assert_eq!(
            perr("a = (1, 2\n"),
            "line 2, column 1: expected `,` or `)` in the list opened at line 1, found end of file"
        );
        assert_eq!(
            perr("a = (1 2)"),
            "line 1, column 8: expected `,` or `)` in the list opened at line 1, found `2`"
        );
        assert_eq!(
            perr("a = on;"),
            "line 1, column 5: expected a value, found `on` (strings need double quotes)"
        );
        assert_eq!(
            perr("a = \"abc"),
            "line 1, column 5: unterminated string: expected a closing `\"`"
        );
        assert_eq!(
            perr("/* x"),
            "line 1, column 1: unterminated comment: expected `*/`"
        );
        assert_eq!(
            perr("@include \"other.cfg\""),
            "line 1, column 1: `@include` is not supported: copy the included settings into this file"
        );
        assert_eq!(
            perr("a = 1;\na = 2;"),
            "line 2, column 1: duplicate setting `a` (first set at line 1)"
        );
        assert_eq!(
            perr("a = 12abc;"),
            "line 1, column 5: invalid number `12abc`"
        );
        assert_eq!(
            perr("a = 99999999999999999999;"),
            "line 1, column 5: integer `99999999999999999999` does not fit in 64 bits"
        );
        assert_eq!(perr("a = [ { b = 1 } ];"), "line 1, column 7: an array `[ ]` holds only scalar values; use a list `( )` for groups, arrays and lists");
        assert_eq!(
            perr(";"),
            "line 1, column 1: expected a setting name, found `;`"
        );
        assert_eq!(
            perr("a = { 5 }"),
            "line 1, column 7: expected a setting name or `}`, found `5`"
        );
        assert_eq!(
            perr("a = -;"),
            "line 1, column 5: expected a number, found `-`"
        );
        assert_eq!(
            perr("a = 1; }"),
            "line 1, column 8: expected a setting name, found `}`"
        );
        assert_eq!(perr("a = $"), "line 1, column 5: unexpected character `$`");
    }

    #[test]
    fn every_syntax_error_is_reported_and_reading_resumes() {
        let src = "a = 1;\nb = 12abc;\nc = { d = on; e = 2; };\nf = (1 2);\ng = \"x\\qy\";\nh = 3\n\
                   @include \"x\"\ni = 4\nj = 5; j = 6;\nk { l = 1; }\nm = ( { n = 1 } { o = 2 } );\np = [ 1, ;\nq = 8;";
        let (settings, errors) = parse_recovering(src);
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "line 2, column 5: invalid number `12abc`",
                "line 3, column 11: expected a value, found `on` (strings need double quotes)",
                "line 4, column 8: expected `,` or `)` in the list opened at line 4, found `2`",
                "line 7, column 1: `@include` is not supported: copy the included settings into this file",
                "line 9, column 8: duplicate setting `j` (first set at line 9)",
                "line 10, column 3: expected `=` or `:` after setting name `k`, found `{`",
                "line 11, column 17: expected `,` or `)` in the list opened at line 11, found `{`",
                "line 12, column 10: expected a value, found `;`",
            ]
        );
        // The broken settings are left out, never guessed; a group keeps its good settings.
        let names: Vec<&str> = settings.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "g", "h", "i", "j", "q"]);
        let c: Vec<&str> = settings[1]
            .value
            .as_group()
            .unwrap_or_default()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(c, ["e"]);
        assert_eq!(settings[2].value.as_str(), Some("x\\qy"));
        assert_eq!(settings[5].value.as_int(), Some(5));
        // `parse` fails on the first error.
        assert_eq!(
            parse(src).map_err(|e| e.to_string()),
            Err("line 2, column 5: invalid number `12abc`".to_string())
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = format!("a = {}{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(
            perr(&src),
            format!(
                "line 1, column {}: nesting deeper than 64 levels",
                5 + MAX_DEPTH
            )
        );
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        web: Web,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Web {
        port: u16,
        #[serde(default)]
        ratio: f64,
        name: Option<String>,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "lowercase")]
    enum Mode {
        On,
        Off,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Item {
        name: String,
        mode: Mode,
    }

    fn de(src: &str) -> Result<Doc, DeError> {
        from_settings(&p(src))
    }

    #[test]
    fn serde_roundtrip() {
        let d = de("web = { port = 80; ratio = 2; name = \"x\" };\nitems = ( { name = \"a\"; mode = \"on\" } );");
        assert_eq!(
            d,
            Ok(Doc {
                web: Web {
                    port: 80,
                    ratio: 2.0,
                    name: Some("x".into())
                },
                items: vec![Item {
                    name: "a".into(),
                    mode: Mode::On
                }],
            })
        );
    }

    #[test]
    fn serde_errors_name_line_and_key() {
        let msg = |src: &str| match de(src) {
            Ok(d) => panic!("unexpected success: {d:?}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            msg("web = {\n port = 70000; };"),
            "line 2: key `web.port`: invalid value: integer `70000`, expected u16"
        );
        assert_eq!(
            msg("web = {\n port = 1;\n bogus = 2; };"),
            "line 3: key `web.bogus`: unknown field `bogus`, expected one of `port`, `ratio`, `name`"
        );
        assert_eq!(
            msg("web = { port = 1; };\nitems = (\n { name = \"a\"; mode = \"on\" },\n { name = \"b\";\n   mode = \"maybe\" } );"),
            "line 5: key `items[1].mode`: unknown variant `maybe`, expected `on` or `off`"
        );
        assert_eq!(
            msg("web = { port = 1; };\nitems = ( {\n mode = \"on\" } );"),
            "line 2: key `items[0]`: missing field `name`"
        );
        assert_eq!(
            msg("web = { port = \"x\"; };"),
            "line 1: key `web.port`: invalid type: string \"x\", expected u16"
        );
        assert_eq!(msg("items = ();"), "missing field `web`");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_strings(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_bytes(b in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let s = String::from_utf8_lossy(&b);
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_syntax_soup(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "a", "=", ":", ";", ",", "{", "}", "[", "]", "(", ")", "\"s\"", "\"", "1", "-", "0x",
                    "1.5e", "true", "#c\n", "//c\n", "/*", "*/", "\\", "\n", " ", "@include", "L", ".",
                ]),
                0..64,
            )
        ) {
            let s: String = parts.concat();
            if let Ok(settings) = parse(&s) {
                let _ = from_settings::<Doc>(&settings);
            }
        }
    }
}
