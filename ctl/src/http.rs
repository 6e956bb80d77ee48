//! A small HTTP/1.1 client: one request per connection (`Connection:
//! close`), replies framed by `Content-Length`, chunked transfer coding or
//! the end of the connection. Generic over the stream, so the same code
//! speaks over TCP, TLS and the Unix control socket.

use std::io::{BufRead, Read, Write};

/// The most a reply's status line and headers may take.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most a reply's body may take (a large `/metrics` is a few MB).
pub const MAX_BODY: usize = 256 * 1024 * 1024;

/// A parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase (may be empty).
    pub reason: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a reply could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The stream failed (a timeout shows as `WouldBlock`/`TimedOut`).
    Io(std::io::Error),
    /// The bytes are not an HTTP/1.x reply; says what was wrong.
    Malformed(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Malformed(m) => write!(f, "not an HTTP reply: {m}"),
        }
    }
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn malformed(m: impl Into<String>) -> ReadError {
    ReadError::Malformed(m.into())
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Writes one request with `Connection: close`; `body` is (content type,
/// bytes).
pub fn write_request<W: Write>(
    w: &mut W,
    method: &str,
    host: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> std::io::Result<()> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gopher-ctl/{}\r\nAccept: */*\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION")
    );
    match body {
        Some((ctype, bytes)) => {
            head.push_str(&format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                bytes.len()
            ));
            w.write_all(head.as_bytes())?;
            w.write_all(bytes)?;
        }
        None => {
            head.push_str("\r\n");
            w.write_all(head.as_bytes())?;
        }
    }
    w.flush()
}

/// Reads one line (up to `\n`) of at most `limit` bytes, without the line
/// end; `None` at a clean end of stream.
fn read_line<R: BufRead>(r: &mut R, limit: usize, what: &str) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        if buf.len() > limit {
            return Err(malformed(format!("{what} longer than {limit} bytes")));
        }
        return Err(malformed(format!(
            "the connection closed inside the {what}"
        )));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| malformed(format!("the {what} is not UTF-8")))
}

/// Reads a reply: skips interim 1xx replies, then the status line, the
/// headers and the body as the headers frame it.
pub fn read_response<R: BufRead>(r: &mut R) -> Result<Response, ReadError> {
    loop {
        let resp = read_one(r)?;
        if (100..200).contains(&resp.status) && resp.status != 101 {
            continue;
        }
        return Ok(resp);
    }
}

fn read_one<R: BufRead>(r: &mut R) -> Result<Response, ReadError> {
    let mut budget = MAX_HEAD;
    let status_line = read_line(r, budget, "status line")?
        .ok_or_else(|| malformed("the connection closed before any reply"))?;
    budget = budget.saturating_sub(status_line.len());
    let (status, reason) = parse_status_line(&status_line)?;

    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        if budget == 0 {
            return Err(malformed(format!("headers longer than {MAX_HEAD} bytes")));
        }
        let line = read_line(r, budget, "headers")?
            .ok_or_else(|| malformed("the connection closed inside the headers"))?;
        budget = budget.saturating_sub(line.len() + 2);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // Obsolete line folding: continues the previous value.
            match headers.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                None => return Err(malformed("a folded line before any header")),
            }
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed(format!("header line without a colon: {line:?}")))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(malformed(format!("bad header name in {line:?}")));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }

    let mut resp = Response {
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(resp);
    }
    let chunked = resp
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .rfind(|c| !c.is_empty())
        .is_some_and(|c| c.eq_ignore_ascii_case("chunked"));
    resp.body = if chunked {
        read_chunked(r)?
    } else if let Some(len) = content_length(&resp.headers)? {
        if len > MAX_BODY {
            return Err(malformed(format!(
                "Content-Length {len} is over the limit of {MAX_BODY} bytes"
            )));
        }
        let mut body = Vec::with_capacity(len.min(1 << 20));
        let got = r
            .by_ref()
            .take(u64::try_from(len).unwrap_or(u64::MAX))
            .read_to_end(&mut body)?;
        if got < len {
            return Err(malformed(format!(
                "the connection closed after {got} of {len} body bytes"
            )));
        }
        body
    } else {
        let mut body = Vec::new();
        read_to_eof(r, &mut body)?;
        body
    };
    Ok(resp)
}

fn parse_status_line(line: &str) -> Result<(u16, String), ReadError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        let shown: String = line.chars().take(60).collect();
        return Err(malformed(format!(
            "expected a status line `HTTP/1.x <code> <reason>`, got {shown:?}"
        )));
    }
    let code = parts.next().unwrap_or("");
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| code.len() == 3 && (100..=599).contains(c))
        .ok_or_else(|| malformed(format!("bad status code {code:?} in {line:?}")))?;
    Ok((status, parts.next().unwrap_or("").trim().to_owned()))
}

fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, ReadError> {
    let mut found: Option<usize> = None;
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        for part in v.split(',') {
            let part = part.trim();
            let n = part
                .parse::<usize>()
                .ok()
                .filter(|_| part.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| malformed(format!("bad Content-Length {v:?}")))?;
            if found.is_some_and(|f| f != n) {
                return Err(malformed(format!(
                    "conflicting Content-Length values {v:?}"
                )));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn read_to_eof<R: Read>(r: &mut R, out: &mut Vec<u8>) -> Result<(), ReadError> {
    let limit = u64::try_from(MAX_BODY).unwrap_or(u64::MAX) + 1;
    match r.by_ref().take(limit).read_to_end(out) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify, after the body.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.into()),
    }
    if out.len() > MAX_BODY {
        return Err(malformed(format!(
            "body over the limit of {MAX_BODY} bytes"
        )));
    }
    Ok(())
}

fn read_chunked<R: BufRead>(r: &mut R) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r, 1024, "chunk size line")?
            .ok_or_else(|| malformed("the connection closed before the last chunk"))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        if size_text.is_empty() || size_text.len() > 15 {
            return Err(malformed(format!("bad chunk size {line:?}")));
        }
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| malformed(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers up to the empty line; a reply that ends right after
            // the last chunk is taken as whole.
            while let Some(t) = read_line(r, MAX_HEAD, "trailers")? {
                if t.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(malformed(format!(
                "body over the limit of {MAX_BODY} bytes"
            )));
        }
        let start = body.len();
        let got = r
            .by_ref()
            .take(u64::try_from(size).unwrap_or(u64::MAX))
            .read_to_end(&mut body)?;
        if got < size {
            return Err(malformed(format!(
                "the connection closed inside a chunk ({got} of {size} bytes)"
            )));
        }
        debug_assert_eq!(body.len(), start + size);
        let end = read_line(r, 2, "chunk end")?
            .ok_or_else(|| malformed("the connection closed after a chunk"))?;
        if !end.is_empty() {
            return Err(malformed("a chunk is not followed by CRLF"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Response, ReadError> {
        read_response(&mut std::io::BufReader::new(raw))
    }

    fn err(raw: &[u8]) -> String {
        match parse(raw) {
            Ok(r) => panic!("parsed {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn content_length_body_and_headers() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}trailing junk")
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.reason, "OK");
        assert_eq!(r.header("Content-Length"), Some("7"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.text(), "{\"a\":1}");
        assert!(r.is_success());
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: y\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.text(), "Wikipedia in\r\n\r\nchunks.");
    }

    #[test]
    fn chunked_wins_over_content_length_and_last_chunk_may_end_the_stream() {
        let r = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abc");
    }

    #[test]
    fn body_to_the_end_of_the_connection() {
        let r = parse(b"HTTP/1.0 404 Not Found\r\n\r\nno probe named `x`").unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.text(), "no probe named `x`");
        assert!(!r.is_success());
    }

    #[test]
    fn interim_replies_are_skipped_and_204_has_no_body() {
        let r = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
    }

    #[test]
    fn bare_lf_lines_and_folded_headers() {
        let r =
            parse(b"HTTP/1.1 400 Bad Request\nX-A: one\n  two\nContent-Length: 3\n\nbad").unwrap();
        assert_eq!(r.header("x-a"), Some("one two"));
        assert_eq!(r.text(), "bad");
    }

    #[test]
    fn malformed_replies_say_what_is_wrong() {
        assert!(err(b"").contains("closed before any reply"));
        assert!(err(b"SSH-2.0-OpenSSH\r\n").contains("expected a status line"));
        assert!(err(b"HTTP/1.1 20 OK\r\n\r\n").contains("bad status code"));
        assert!(err(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
            .contains("after 5 of 10 body bytes"));
        assert!(err(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").contains("bad Content-Length"));
        assert!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
                .contains("conflicting")
        );
        assert!(err(b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n").contains("without a colon"));
        assert!(err(b"HTTP/1.1 200 OK\r\nA: b\r\n").contains("closed inside the headers"));
        assert!(
            err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
                .contains("bad chunk size")
        );
        assert!(
            err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
                .contains("inside a chunk (2 of 5")
        );
        assert!(
            err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n")
                .contains("not followed by CRLF")
        );
        assert!(
            err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n")
                .contains("before the last chunk")
        );
        assert!(
            err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n")
                .contains("bad chunk size")
        );
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(err(big.as_bytes()).contains("over the limit"));
        let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        assert!(err(&long).contains("longer than"));
    }

    #[test]
    fn request_bytes() {
        let mut out = Vec::new();
        write_request(
            &mut out,
            "PUT",
            "127.0.0.1:9999",
            "/tcp",
            Some(("application/json", b"{}")),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("PUT /tcp HTTP/1.1\r\nHost: 127.0.0.1:9999\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        let mut out = Vec::new();
        write_request(&mut out, "GET", "h", "/", None).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
        assert!(!text.contains("Content-Length"));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("tcp_link"), "tcp_link");
        assert_eq!(encode_segment("a b/c?%"), "a%20b%2Fc%3F%25");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }
}
