//! The legacy line protocol `|table|v1|v2|...|vn|` and its strict decoder.
//!
//! Decoding is pure and allocation-free: [`split_line`] borrows the table
//! name and values from the input, [`validate`] checks them against the
//! table's meta. Every failure is a [`Reject`] with a stable reason name,
//! counted per probe by the ingress; nothing here panics on any input (a
//! fuzz target and a proptest check that).

use crate::meta::{FieldType, Table};

/// Longest accepted line, in bytes, newline excluded (docs/compat.md §1).
pub const MAX_LINE_LEN: usize = 8192;

/// Name of the reserved event table.
pub const EVENT_TABLE: &str = "event";

/// Number of values of a line of the reserved `event` table.
pub const EVENT_FIELDS: usize = 12;

/// Why a line or record was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// The line does not start with `|` (not a record at all).
    NotARecord,
    /// Longer than [`MAX_LINE_LEN`].
    TooLong,
    /// Does not end with `|`.
    Unterminated,
    /// Not valid UTF-8.
    InvalidUtf8,
    /// Table name empty.
    EmptyTable,
    /// No `.meta` declares the table.
    UnknownTable,
    /// The first key is empty.
    EmptyKey,
    /// The number of values differs from the meta field count.
    FieldCount,
    /// A metric value is not a number (or not a well-formed histogram).
    InvalidNumber,
    /// A value contains a control character.
    ControlChar,
}

impl Reject {
    /// Every reason, for pre-registering self-metric series.
    pub const ALL: [Reject; 10] = [
        Reject::NotARecord,
        Reject::TooLong,
        Reject::Unterminated,
        Reject::InvalidUtf8,
        Reject::EmptyTable,
        Reject::UnknownTable,
        Reject::EmptyKey,
        Reject::FieldCount,
        Reject::InvalidNumber,
        Reject::ControlChar,
    ];

    /// Stable snake_case name, used as the `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::NotARecord => "not_a_record",
            Reject::TooLong => "too_long",
            Reject::Unterminated => "unterminated",
            Reject::InvalidUtf8 => "invalid_utf8",
            Reject::EmptyTable => "empty_table",
            Reject::UnknownTable => "unknown_table",
            Reject::EmptyKey => "empty_key",
            Reject::FieldCount => "field_count",
            Reject::InvalidNumber => "invalid_number",
            Reject::ControlChar => "control_char",
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A line split into its table name and borrowed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine<'a> {
    /// Table name.
    pub table: &'a str,
    /// Values, `""` for null.
    pub values: Vec<&'a str>,
}

/// Splits a protocol line (a trailing `\n` or `\r\n` is tolerated) into its
/// table and values, without looking at meta.
pub fn split_line(line: &[u8]) -> Result<RawLine<'_>, Reject> {
    let mut values = Vec::new();
    let table = split_line_into(line, &mut values)?;
    Ok(RawLine { table, values })
}

/// Like [`split_line`] but fills `values` in place, so a hot loop reuses one
/// vector. Returns the table name.
pub fn split_line_into<'a>(line: &'a [u8], values: &mut Vec<&'a str>) -> Result<&'a str, Reject> {
    split_line_joined(line, values).map(|(table, _)| table)
}

/// [`split_line_into`], also returning the text the values were cut from
/// (the line after its table name, without the final `|`), so that a store
/// can copy it at once.
///
/// After the UTF-8 check (which has a fast path for ASCII), one pass reads
/// the body eight bytes at a time: each word gives the positions of its `|`
/// bytes and whether it holds a control character. Both are ASCII, so every
/// cut falls on a character boundary. The outcome, and which error wins, is
/// that of a byte-wise decoder (the tests compare both on random input).
pub fn split_line_joined<'a>(
    line: &'a [u8],
    values: &mut Vec<&'a str>,
) -> Result<(&'a str, &'a str), Reject> {
    values.clear();
    let body = framed_body(line)?;
    let Some(table) = split_fields(body, values) else {
        values.clear();
        return Err(Reject::ControlChar);
    };
    if table.is_empty() {
        values.clear();
        return Err(Reject::EmptyTable);
    }
    Ok((table, body.get(table.len() + 1..).unwrap_or("")))
}

/// The text between a line's first and last `|` (a trailing newline
/// tolerated), checked for length and UTF-8.
fn framed_body(line: &[u8]) -> Result<&str, Reject> {
    let line = trim_newline(line);
    if line.first() != Some(&b'|') {
        return Err(Reject::NotARecord);
    }
    if line.len() > MAX_LINE_LEN {
        return Err(Reject::TooLong);
    }
    if line.len() < 2 || line.last() != Some(&b'|') {
        return Err(Reject::Unterminated);
    }
    std::str::from_utf8(&line[1..line.len() - 1]).map_err(|_| Reject::InvalidUtf8)
}

const LO7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
const HI: u64 = 0x8080_8080_8080_8080;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The high bit of each byte of `w` that equals `b`, and only those (no
/// borrow runs from one byte into the next).
#[inline(always)]
fn bytes_equal(w: u64, b: u8) -> u64 {
    let x = w ^ (ONES * u64::from(b));
    !(((x & LO7) + LO7) | x | LO7)
}

/// The high bit of each byte of `w` that is a control character: below
/// 0x20 and not a tab.
#[inline(always)]
fn control_bytes(w: u64) -> u64 {
    let below_space = !((w & LO7) + ONES * 0x60) & !w & HI;
    below_space & !bytes_equal(w, b'\t')
}

/// Cuts `body` at its `|` bytes: the first field is returned (the table
/// name), the others are pushed to `values`. `None` when `body` holds a
/// control character.
#[inline]
fn split_fields<'a>(body: &'a str, values: &mut Vec<&'a str>) -> Option<&'a str> {
    let bytes = body.as_bytes();
    let mut start = 0;
    let mut table = None;
    let mut cut = |at: usize, table: &mut Option<&'a str>| {
        debug_assert!(start <= at && at < bytes.len() && bytes[at] == b'|');
        // SAFETY: `at` is the position of a `|` byte of `body` and `start` is
        // 0 or just after an earlier one, so `start <= at <= body.len()` and
        // both are character boundaries (`|` is ASCII).
        let field = unsafe { body.get_unchecked(start..at) };
        if table.is_none() {
            *table = Some(field);
        } else {
            values.push(field);
        }
        start = at + 1;
    };
    let chunks = bytes.chunks_exact(8);
    let mut base = 0;
    for chunk in chunks {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        if control_bytes(w) != 0 {
            return None;
        }
        let mut pipes = bytes_equal(w, b'|');
        while pipes != 0 {
            cut(base + (pipes.trailing_zeros() / 8) as usize, &mut table);
            pipes &= pipes - 1;
        }
        base += 8;
    }
    // The last 0..=7 bytes, padded with a byte that is neither.
    let w = tail_word(bytes, b'a');
    if control_bytes(w) != 0 {
        return None;
    }
    let mut pipes = bytes_equal(w, b'|');
    while pipes != 0 {
        cut(base + (pipes.trailing_zeros() / 8) as usize, &mut table);
        pipes &= pipes - 1;
    }
    let rest = body.get(start..).unwrap_or("");
    Some(match table {
        Some(t) => {
            values.push(rest);
            t
        }
        None => rest,
    })
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Checks values against their table: count, first key, numeric metrics.
pub fn validate<S: AsRef<str>>(table: &Table, values: &[S]) -> Result<(), Reject> {
    if values.len() != table.fields.len() {
        return Err(Reject::FieldCount);
    }
    if let Some(&k) = table.keys.first() {
        if values[k].as_ref().is_empty() {
            return Err(Reject::EmptyKey);
        }
    }
    for (field, v) in table.fields.iter().zip(values) {
        let v = v.as_ref();
        if v.is_empty() {
            continue;
        }
        match field.ty {
            FieldType::Gauge | FieldType::Counter | FieldType::Untyped => {
                if !is_number(v) {
                    return Err(Reject::InvalidNumber);
                }
            }
            FieldType::Histogram => {
                if Histogram::parse(v).is_none() {
                    return Err(Reject::InvalidNumber);
                }
            }
            FieldType::Key | FieldType::Label => {}
        }
    }
    Ok(())
}

/// Whether [`parse_number`] accepts `v`, without computing the value: the
/// plain decimal forms are recognised in one pass over the bytes, anything
/// else is left to [`parse_number`] itself.
pub fn is_number(v: &str) -> bool {
    let b = v.as_bytes();
    (!b.is_empty() && all_digits(b)) || plain_decimal(b) || parse_number(v).is_some()
}

/// Whether every byte of `b` is an ASCII digit, eight at a time.
#[inline]
fn all_digits(b: &[u8]) -> bool {
    // A byte of a word is a digit when neither `byte - '0'` nor
    // `byte + (0x7f - '9')` sets its high bit. Borrows and carries only come
    // from a lower byte that is not a digit, which is flagged already.
    let digits = |w: u64| (w.wrapping_sub(ONES * 0x30) | w.wrapping_add(ONES * 0x46)) & HI == 0;
    let chunks = b.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        if !digits(u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))) {
            return false;
        }
    }
    tail.is_empty() || digits(tail_word(b, b'0'))
}

/// The last `b.len() % 8` bytes of `b` as the low bytes of a word, the
/// others `pad`. Loaded in one read when `b` is long enough (a copy to the
/// stack and a read back would stall on store forwarding).
#[inline(always)]
fn tail_word(b: &[u8], pad: u8) -> u64 {
    let r = b.len() % 8;
    let padded = ONES * u64::from(pad);
    if r == 0 {
        return padded;
    }
    match b.len().checked_sub(8) {
        Some(from) => {
            let w = u64::from_le_bytes(b[from..].try_into().unwrap_or([0; 8]));
            (w >> (8 * (8 - r))) | (padded << (8 * r))
        }
        None => b.iter().enumerate().fold(padded, |w, (i, &c)| {
            (w & !(0xFF << (8 * i))) | (u64::from(c) << (8 * i))
        }),
    }
}

/// `[+-]? (digits | digits '.' digits? | '.' digits) ([eE] [+-]? digits)?`:
/// a subset of what [`parse_number`] accepts (Rust's float syntax without
/// `inf`/`nan`, which take the slow path).
fn plain_decimal(b: &[u8]) -> bool {
    let digits_from = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let sign = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let mut i = digits_from(sign);
    let mut digits = i - sign;
    if b.get(i) == Some(&b'.') {
        let end = digits_from(i + 1);
        digits += end - (i + 1);
        i = end;
    }
    if digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits_from(i);
        if end == i {
            return false;
        }
        i = end;
    }
    i == b.len()
}

/// Parses a metric value: decimal integer or float, also `NaN`/`+Inf`/`-Inf`.
pub fn parse_number(v: &str) -> Option<f64> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    // Fast path for plain unsigned integers, the common case.
    if v.len() <= 15 && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(v.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0')) as f64);
    }
    match v {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "inf" | "+inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => {
            // Rust accepts "infinity"/"nan" spellings we don't want; the
            // match above already took the ones we do.
            if v.bytes()
                .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
            {
                return None;
            }
            v.parse::<f64>().ok()
        }
    }
}

/// A decoded V2 histogram value `N b1 c1 ... bN cN sum max`.
///
/// `bi` is a bucket's upper bound and `ci` the observations in that bucket
/// alone (not cumulative); the exporter makes them cumulative.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// `(upper bound, count in bucket)`, bounds strictly increasing.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of observations.
    pub sum: f64,
    /// Largest observation.
    pub max: f64,
}

impl Histogram {
    /// Parses the space-separated form; `None` when malformed.
    pub fn parse(v: &str) -> Option<Self> {
        let mut it = v.split_ascii_whitespace();
        let n: usize = it.next()?.parse().ok()?;
        if n > 256 {
            return None;
        }
        let mut buckets = Vec::with_capacity(n);
        let mut prev = f64::NEG_INFINITY;
        for _ in 0..n {
            let b = parse_number(it.next()?)?;
            let c: u64 = it.next()?.parse().ok()?;
            if b.is_nan() || b <= prev {
                return None;
            }
            prev = b;
            buckets.push((b, c));
        }
        let sum = parse_number(it.next()?)?;
        let max = parse_number(it.next()?)?;
        if it.next().is_some() {
            return None;
        }
        Some(Self { buckets, sum, max })
    }

    /// Total number of observations.
    pub fn count(&self) -> u64 {
        self.buckets
            .iter()
            .fold(0u64, |a, &(_, c)| a.saturating_add(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Field;

    fn table() -> Table {
        let f = |name: &str, ty| Field {
            name: name.into(),
            description: String::new(),
            ty,
        };
        Table::new(
            "t",
            "e",
            vec![
                f("k", FieldType::Key),
                f("l", FieldType::Label),
                f("g", FieldType::Gauge),
                f("c", FieldType::Counter),
            ],
        )
    }

    #[test]
    fn splits_a_record() {
        let r = split_line(b"|t|a|b|1|2|\n").expect("valid");
        assert_eq!(r.table, "t");
        assert_eq!(r.values, ["a", "b", "1", "2"]);
        assert!(validate(&table(), &r.values).is_ok());
    }

    #[test]
    fn rejects_per_compat_rules() {
        assert_eq!(split_line(b"hello"), Err(Reject::NotARecord));
        assert_eq!(split_line(b""), Err(Reject::NotARecord));
        assert_eq!(split_line(b"|"), Err(Reject::Unterminated));
        assert_eq!(split_line(b"|t|1"), Err(Reject::Unterminated));
        assert_eq!(split_line(b"||1|"), Err(Reject::EmptyTable));
        assert_eq!(split_line(b"|t|\xff|"), Err(Reject::InvalidUtf8));
        assert_eq!(split_line(b"|t|a\x01|"), Err(Reject::ControlChar));
        let mut long = b"|t|".to_vec();
        long.resize(MAX_LINE_LEN, b'x');
        long.push(b'|');
        assert_eq!(split_line(&long), Err(Reject::TooLong));
        long.truncate(MAX_LINE_LEN - 1);
        long.push(b'|');
        assert!(split_line(&long).is_ok(), "exactly 8192 bytes is accepted");

        let t = table();
        assert_eq!(validate(&t, &["a", "b", "1"]), Err(Reject::FieldCount));
        assert_eq!(
            validate(&t, &["a", "b", "1", "2", "3"]),
            Err(Reject::FieldCount)
        );
        assert_eq!(validate(&t, &["", "b", "1", "2"]), Err(Reject::EmptyKey));
        assert_eq!(
            validate(&t, &["a", "b", "x1", "2"]),
            Err(Reject::InvalidNumber)
        );
        assert_eq!(
            validate(&t, &["a", "", "", "2"]),
            Ok(()),
            "empty non-key values are nulls"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("42"), Some(42.0));
        assert_eq!(parse_number("-1.5e3"), Some(-1500.0));
        assert_eq!(parse_number("+Inf"), Some(f64::INFINITY));
        assert!(parse_number("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_number("infinity"), None);
        assert_eq!(parse_number("0x10"), None);
        assert_eq!(parse_number("12abc"), None);
        assert_eq!(parse_number("99999999999999999999"), Some(1e20));
        for (v, ok) in [
            ("0", true),
            ("1234567890123456789012345", true),
            ("12345678/", false),
            ("123456789:", false),
            ("1234567\u{e9}", false),
            ("1.", true),
            (".5", true),
            ("-.5e-3", true),
            ("+7E+2", true),
            (".", false),
            ("-", false),
            ("1e", false),
            ("e5", false),
            ("1.2.3", false),
            (" 42 ", true),
            ("-Inf", true),
            ("nan", true),
            ("", false),
        ] {
            assert_eq!(is_number(v), ok, "{v:?}");
            assert_eq!(parse_number(v).is_some(), ok, "{v:?}");
        }
    }

    #[test]
    fn histograms() {
        let h = Histogram::parse("3 10 1 100 2 1000 0 250 180").expect("valid");
        assert_eq!(h.buckets, vec![(10.0, 1), (100.0, 2), (1000.0, 0)]);
        assert_eq!(h.count(), 3);
        assert_eq!(h.sum, 250.0);
        assert!(Histogram::parse("2 10 1").is_none());
        assert!(
            Histogram::parse("2 10 1 5 1 0 0").is_none(),
            "bounds must increase"
        );
        assert!(Histogram::parse("1 10 1 5 5 extra").is_none());
        assert!(Histogram::parse("1 10 -1 5 5").is_none());
    }

    /// The byte-wise decoder the word-wise one replaced: the reference its
    /// outcome is checked against.
    fn split_bytewise(line: &[u8]) -> Result<(&str, Vec<&str>), Reject> {
        let body = framed_body(line)?;
        if body.bytes().any(|b| b < 0x20 && b != b'\t') {
            return Err(Reject::ControlChar);
        }
        let mut it = body.split('|');
        let table = it.next().unwrap_or("");
        if table.is_empty() {
            return Err(Reject::EmptyTable);
        }
        Ok((table, it.collect()))
    }

    #[test]
    fn word_wise_decoding_at_every_alignment() {
        fn split(l: &[u8]) -> Result<(&str, Vec<&str>), Reject> {
            let mut v = Vec::new();
            split_line_into(l, &mut v).map(|t| (t, v))
        }
        for n in 0..40 {
            let vals: Vec<String> = (0..n).map(|i| "x".repeat(i % 11)).collect();
            let line = format!("|tbl|{}|", vals.join("|"));
            assert_eq!(
                split(line.as_bytes()),
                split_bytewise(line.as_bytes()),
                "{line}"
            );
            for at in 1..line.len() - 1 {
                for bad in [b'\x01', b'\x1f', b'\t', 0x7f, b'|', 0] {
                    let mut l = line.clone().into_bytes();
                    l[at] = bad;
                    assert_eq!(split(&l), split_bytewise(&l), "{l:?}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn word_wise_decoding_matches_the_byte_wise_one(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'|', b'a', b'1', b'\t', b'\n', b'\r', 0u8, 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xa9, 0xff]),
                0..80,
            ),
            framed in proptest::bool::ANY,
        ) {
            let mut line = bytes;
            if framed {
                line.insert(0, b'|');
                line.push(b'|');
            }
            let mut v = Vec::new();
            let got = split_line_into(&line, &mut v).map(|t| (t, v.clone()));
            proptest::prop_assert_eq!(got, split_bytewise(&line));
        }

        #[test]
        fn is_number_agrees_with_parse_number(v in "[-+0-9.eE a-zA-Z_\u{e9}:/]{0,10}|[0-9]{0,20}[^0-9]?[0-9]{0,4}") {
            proptest::prop_assert_eq!(is_number(&v), parse_number(&v).is_some(), "{:?}", v);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let t = table();
            if let Ok(r) = split_line(&bytes) {
                let _ = validate(&t, &r.values);
            }
            let mut v = Vec::new();
            let _ = split_line_into(&bytes, &mut v);
        }

        #[test]
        fn roundtrips_pipe_free_values(vals in proptest::collection::vec("[a-z0-9 .]{0,12}", 1..20)) {
            let line = format!("|x|{}|", vals.join("|"));
            let r = split_line(line.as_bytes()).expect("well-formed");
            proptest::prop_assert_eq!(r.table, "x");
            proptest::prop_assert_eq!(r.values, vals.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
