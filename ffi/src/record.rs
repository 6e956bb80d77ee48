//! Record emission: one protocol line `|table|v1|...|vn|\n` on fd 1.
//!
//! In the probe host, fd 1 is a pipe the daemon reads line by line, exactly
//! like an extend probe's stdout. Each line is written with one `write(2)`
//! (repeated only after a signal or a partial write) under a process-wide
//! lock, so records of concurrent threads never interleave.
//!
//! The checks here are the ones that keep the framing intact (no `|` or
//! control character inside a value, the line length, UTF-8); the daemon
//! validates the rest (table known, value count, numbers) against the meta.

use std::ffi::{c_char, CStr};
use std::sync::Mutex;

use crate::boundary::{guard, status_of};
use crate::status::gopher_status;
use crate::GOPHER_MAX_LINE_LEN;

/// Serialises record lines of concurrent threads.
static STDOUT_LOCK: Mutex<()> = Mutex::new(());

/// Checks one value (or the table name): UTF-8, and no `|` or control
/// character other than tab (which the daemon would refuse as well).
fn check_value(v: &[u8]) -> Result<(), gopher_status> {
    if std::str::from_utf8(v).is_err() {
        return Err(gopher_status::GOPHER_ERR_INVALID_UTF8);
    }
    if v.iter().any(|&b| b == b'|' || (b < 0x20 && b != b'\t')) {
        return Err(gopher_status::GOPHER_ERR_INVALID_VALUE);
    }
    Ok(())
}

/// Builds the line for a record into `out` (cleared first), newline
/// included. A `None` or empty value is null (an empty field).
///
/// Errors: an empty table or a value with `|` or a control character is
/// `GOPHER_ERR_INVALID_VALUE`; invalid UTF-8 is `GOPHER_ERR_INVALID_UTF8`;
/// a line over [`GOPHER_MAX_LINE_LEN`] bytes (newline excluded) is
/// `GOPHER_ERR_TOO_LONG`.
pub fn build_record<'a>(
    table: &[u8],
    values: impl IntoIterator<Item = Option<&'a [u8]>>,
    out: &mut Vec<u8>,
) -> Result<(), gopher_status> {
    out.clear();
    if table.is_empty() {
        return Err(gopher_status::GOPHER_ERR_INVALID_VALUE);
    }
    check_value(table)?;
    out.push(b'|');
    out.extend_from_slice(table);
    out.push(b'|');
    for v in values {
        let v = v.unwrap_or_default();
        check_value(v)?;
        if out.len() + v.len() + 1 > GOPHER_MAX_LINE_LEN {
            return Err(gopher_status::GOPHER_ERR_TOO_LONG);
        }
        out.extend_from_slice(v);
        out.push(b'|');
    }
    if out.len() > GOPHER_MAX_LINE_LEN {
        return Err(gopher_status::GOPHER_ERR_TOO_LONG);
    }
    out.push(b'\n');
    Ok(())
}

/// Checks a preformatted record line and returns it without its line end (a
/// trailing `\n` or `\r\n` is allowed). It must start and end with `|`, name
/// a table, be UTF-8 without control characters other than tab, and be at
/// most [`GOPHER_MAX_LINE_LEN`] bytes long.
pub fn check_line(line: &[u8]) -> Result<&[u8], gopher_status> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.first() != Some(&b'|') {
        return Err(gopher_status::GOPHER_ERR_INVALID_VALUE);
    }
    if line.len() > GOPHER_MAX_LINE_LEN {
        return Err(gopher_status::GOPHER_ERR_TOO_LONG);
    }
    if std::str::from_utf8(line).is_err() {
        return Err(gopher_status::GOPHER_ERR_INVALID_UTF8);
    }
    let framed = line.len() >= 3 && line.last() == Some(&b'|') && line.get(1) != Some(&b'|');
    if !framed || line.iter().any(|&b| b < 0x20 && b != b'\t') {
        return Err(gopher_status::GOPHER_ERR_INVALID_VALUE);
    }
    Ok(line)
}

/// Writes all of `buf` to `fd`: one `write(2)`, repeated only after EINTR, a
/// partial write, or EAGAIN on a non-blocking fd (after waiting with poll).
pub(crate) fn write_all_fd(fd: libc::c_int, mut buf: &[u8]) -> Result<(), gopher_status> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a live slice of `buf.len()` readable bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    wait_writable(fd)?;
                    continue;
                }
                _ => return Err(gopher_status::GOPHER_ERR_IO),
            }
        }
        let n = usize::try_from(n).map_err(|_| gopher_status::GOPHER_ERR_IO)?;
        if n == 0 {
            return Err(gopher_status::GOPHER_ERR_IO);
        }
        buf = buf.get(n..).unwrap_or_default();
    }
    Ok(())
}

fn wait_writable(fd: libc::c_int) -> Result<(), gopher_status> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, -1) };
        if r >= 0 {
            return Ok(());
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(gopher_status::GOPHER_ERR_IO);
        }
    }
}

/// Writes a complete line (newline included) to fd 1 under the stdout lock.
/// Rust code in the probe host may use it for lines it built itself.
pub fn write_record_line(line: &[u8]) -> Result<(), gopher_status> {
    let _held = STDOUT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    write_all_fd(libc::STDOUT_FILENO, line)
}

/// Emits one record of `table` with `n_values` values, in the table's meta
/// field order, as the line `|table|v1|...|vn|` on stdout.
///
/// `table` is a NUL-terminated table name. `values` points to `n_values`
/// pointers, each NULL or a NUL-terminated string; NULL or `""` is a null
/// value (an empty field). `values` may be NULL only when `n_values` is 0.
/// Everything is borrowed for the duration of the call only.
///
/// Returns `GOPHER_ERR_NULL` for a NULL `table` (or `values` with
/// `n_values > 0`), `GOPHER_ERR_INVALID_VALUE` for an empty table name or a
/// value containing `|`, a newline, a carriage return or another control
/// character (tab is allowed), `GOPHER_ERR_INVALID_UTF8`,
/// `GOPHER_ERR_TOO_LONG` when the line would exceed `GOPHER_MAX_LINE_LEN`
/// bytes, or `GOPHER_ERR_IO` when stdout cannot be written (e.g. the daemon
/// closed the pipe). Nothing is written unless the result is `GOPHER_OK`.
/// Thread-safe.
///
/// # Safety
/// The pointers must be as described above.
#[no_mangle]
pub unsafe extern "C" fn gopher_record_emit(
    table: *const c_char,
    values: *const *const c_char,
    n_values: usize,
) -> gopher_status {
    guard(|| {
        if table.is_null() || (values.is_null() && n_values > 0) {
            return gopher_status::GOPHER_ERR_NULL;
        }
        // Each value adds at least one `|`: more values than the line limit
        // can never fit, so refuse before touching the array.
        if n_values > GOPHER_MAX_LINE_LEN {
            return gopher_status::GOPHER_ERR_TOO_LONG;
        }
        // SAFETY: non-NULL; the caller promises a NUL-terminated string that
        // outlives the call.
        let table = unsafe { CStr::from_ptr(table) };
        let values: &[*const c_char] = if n_values == 0 {
            &[]
        } else {
            // SAFETY: non-NULL, and the caller promises `n_values` readable
            // pointers that are not modified during the call.
            unsafe { std::slice::from_raw_parts(values, n_values) }
        };
        let values = values.iter().map(|&v| {
            if v.is_null() {
                None
            } else {
                // SAFETY: each non-NULL value is a NUL-terminated string
                // that outlives the call (caller's promise).
                Some(unsafe { CStr::from_ptr(v) }.to_bytes())
            }
        });
        let mut line = Vec::with_capacity(256);
        if let Err(s) = build_record(table.to_bytes(), values, &mut line) {
            return s;
        }
        status_of(write_record_line(&line))
    })
}

/// Emits a preformatted record line such as `"|system_cpu|cpu0|1|2|\n"` on
/// stdout. The trailing newline is optional and is added when missing.
///
/// `line` is a NUL-terminated string borrowed for the duration of the call.
/// It must start and end with `|` (after its line end), name a table, hold
/// no newline, carriage return or other control character (tab is allowed),
/// be valid UTF-8 and be at most `GOPHER_MAX_LINE_LEN` bytes long without
/// its newline. Returns `GOPHER_ERR_NULL`, `GOPHER_ERR_INVALID_VALUE`,
/// `GOPHER_ERR_INVALID_UTF8`, `GOPHER_ERR_TOO_LONG` or `GOPHER_ERR_IO`
/// otherwise; nothing is written unless the result is `GOPHER_OK`.
/// Thread-safe.
///
/// # Safety
/// `line` must be NULL or point to a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn gopher_record_emit_line(line: *const c_char) -> gopher_status {
    guard(|| {
        if line.is_null() {
            return gopher_status::GOPHER_ERR_NULL;
        }
        // SAFETY: non-NULL; the caller promises a NUL-terminated string that
        // outlives the call.
        let line = unsafe { CStr::from_ptr(line) };
        let body = match check_line(line.to_bytes()) {
            Ok(b) => b,
            Err(s) => return s,
        };
        let mut out = Vec::with_capacity(body.len() + 1);
        out.extend_from_slice(body);
        out.push(b'\n');
        status_of(write_record_line(&out))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(table: &str, values: &[Option<&str>]) -> Result<String, gopher_status> {
        let mut out = Vec::new();
        build_record(
            table.as_bytes(),
            values.iter().map(|v| v.map(str::as_bytes)),
            &mut out,
        )?;
        Ok(String::from_utf8(out).expect("utf8"))
    }

    #[test]
    fn builds_lines_with_nulls() {
        assert_eq!(
            build(
                "system_cpu",
                &[Some("cpu0"), Some("12"), None, Some(""), Some("a\tb")]
            ),
            Ok("|system_cpu|cpu0|12|||a\tb|\n".into())
        );
        assert_eq!(build("t", &[]), Ok("|t|\n".into()));
    }

    #[test]
    fn refuses_values_that_break_the_framing() {
        for bad in ["a|b", "a\nb", "a\rb", "\x01"] {
            assert_eq!(
                build("t", &[Some("k"), Some(bad)]),
                Err(gopher_status::GOPHER_ERR_INVALID_VALUE),
                "{bad:?}"
            );
        }
        assert_eq!(
            build("", &[Some("k")]),
            Err(gopher_status::GOPHER_ERR_INVALID_VALUE)
        );
        assert_eq!(
            build("a|b", &[Some("k")]),
            Err(gopher_status::GOPHER_ERR_INVALID_VALUE)
        );
        let mut out = Vec::new();
        let bad_utf8: &[u8] = b"\xff";
        assert_eq!(
            build_record(b"t", [Some(bad_utf8)], &mut out),
            Err(gopher_status::GOPHER_ERR_INVALID_UTF8)
        );
    }

    #[test]
    fn line_limit_is_8192_bytes_without_the_newline() {
        // `|t|` + value + `|` = value + 4 bytes.
        let fits = "x".repeat(GOPHER_MAX_LINE_LEN - 4);
        let line = build("t", &[Some(&fits)]).expect("exactly the limit");
        assert_eq!(line.len(), GOPHER_MAX_LINE_LEN + 1);
        let over = "x".repeat(GOPHER_MAX_LINE_LEN - 3);
        assert_eq!(
            build("t", &[Some(&over)]),
            Err(gopher_status::GOPHER_ERR_TOO_LONG)
        );
        let many = vec![None; GOPHER_MAX_LINE_LEN];
        assert_eq!(build("t", &many), Err(gopher_status::GOPHER_ERR_TOO_LONG));
    }

    #[test]
    fn checks_preformatted_lines() {
        assert_eq!(check_line(b"|t|1|\n"), Ok(&b"|t|1|"[..]));
        assert_eq!(check_line(b"|t|1|\r\n"), Ok(&b"|t|1|"[..]));
        assert_eq!(check_line(b"|t|"), Ok(&b"|t|"[..]));
        for bad in [
            &b"t|1|"[..],
            b"",
            b"\n",
            b"|t|1",
            b"||1|",
            b"|",
            b"||",
            b"|t|a\nb|",
            b"|t|a\rb|\n",
        ] {
            assert_eq!(
                check_line(bad),
                Err(gopher_status::GOPHER_ERR_INVALID_VALUE),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            check_line(b"|t|\xff|"),
            Err(gopher_status::GOPHER_ERR_INVALID_UTF8)
        );
        let mut long = vec![b'|'; 1];
        long.resize(GOPHER_MAX_LINE_LEN, b'x');
        long.push(b'|');
        assert_eq!(check_line(&long), Err(gopher_status::GOPHER_ERR_TOO_LONG));
        long.remove(1);
        assert!(check_line(&long).is_ok());
    }

    #[test]
    fn null_pointers_are_refused() {
        // SAFETY: NULL pointers are allowed and checked.
        unsafe {
            assert_eq!(
                gopher_record_emit(std::ptr::null(), std::ptr::null(), 0),
                gopher_status::GOPHER_ERR_NULL
            );
            assert_eq!(
                gopher_record_emit(c"t".as_ptr(), std::ptr::null(), 1),
                gopher_status::GOPHER_ERR_NULL
            );
            assert_eq!(
                gopher_record_emit_line(std::ptr::null()),
                gopher_status::GOPHER_ERR_NULL
            );
            // Refused before anything is written.
            assert_eq!(
                gopher_record_emit_line(c"not a record".as_ptr()),
                gopher_status::GOPHER_ERR_INVALID_VALUE
            );
        }
    }

    #[test]
    fn write_errors_are_io() {
        // fd -1 is never open.
        assert_eq!(write_all_fd(-1, b"x\n"), Err(gopher_status::GOPHER_ERR_IO));
        assert_eq!(write_all_fd(-1, b""), Ok(()));
    }
}
