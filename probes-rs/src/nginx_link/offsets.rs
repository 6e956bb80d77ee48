//! Where nginx keeps the few things `nginx_link` reads from its memory,
//! per nginx version and build, and the checks made before attaching.
//!
//! nginx has no BTF and the stock builds are stripped, so the offsets come
//! from a table measured per version ([`KNOWN`], measured with
//! `scripts/nginx-offsets.sh`), or from a file the user measured the same
//! way (param `-p <file>`, format of [`OffsetsFile::parse`]). A version in
//! neither is refused with a message naming it (docs/nginx_link.md).

use std::fmt;
use std::path::Path;

use crate::lb_common::elf::{self, Elf, Symbol};

/// The function the probe hooks.
pub const HOOK: &str = "ngx_event_connect_peer";

/// The offsets the BPF program reads (`struct nl_offsets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    /// `ngx_peer_connection_t.log`.
    pub pc_log: u32,
    /// `ngx_log_t.data`.
    pub log_data: u32,
    /// `ngx_connection_t.fd`.
    pub conn_fd: u32,
    /// `ngx_http_log_ctx_t.connection`.
    pub http_conn: u32,
    /// `ngx_stream_session_t.connection`.
    pub strm_conn: u32,
}

impl Offsets {
    /// `struct nl_offsets`, native endian.
    pub fn encode(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        for (i, v) in [
            self.pc_log,
            self.log_data,
            self.conn_fd,
            self.http_conn,
            self.strm_conn,
        ]
        .iter()
        .enumerate()
        {
            out[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        out
    }
}

impl fmt::Display for Offsets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "peer_connection.log={} log.data={} connection.fd={} http_log_ctx.connection={} stream_session.connection={}",
            self.pc_log, self.log_data, self.conn_fd, self.http_conn, self.strm_conn
        )
    }
}

/// One row of the table: an nginx `major.minor` series on x86-64/aarch64
/// (LP64), with `ngx_peer_connection_t.log` with and without the two SSL
/// session callbacks that `NGX_SSL || NGX_COMPAT` put before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// `major.minor`.
    pub series: (u32, u32),
    /// `ngx_peer_connection_t.log` in builds with SSL or `--with-compat`.
    pub pc_log_ssl: u32,
    /// `ngx_peer_connection_t.log` in builds with neither.
    pub pc_log_plain: u32,
    /// The rest, not moved by build flags.
    pub log_data: u32,
    /// `ngx_connection_t.fd`.
    pub conn_fd: u32,
    /// `ngx_http_log_ctx_t.connection`.
    pub http_conn: u32,
    /// `ngx_stream_session_t.connection`.
    pub strm_conn: u32,
    /// Where the row was measured.
    pub measured: &'static str,
}

/// The versions this build knows. Each row was measured with
/// `scripts/nginx-offsets.sh` against that version's headers and build
/// flags; a test checks the 1.22 row against the script on the installed
/// nginx.
pub const KNOWN: &[Known] = &[Known {
    series: (1, 22),
    pc_log_ssl: 112,
    pc_log_plain: 96,
    log_data: 40,
    conn_fd: 24,
    http_conn: 0,
    strm_conn: 8,
    measured: "nginx 1.22.1 (Debian 12 nginx-dev headers, --with-compat), scripts/nginx-offsets.sh",
}];

/// The series the table knows, for messages: `1.22, 1.24`.
pub fn known_series() -> String {
    KNOWN
        .iter()
        .map(|k| format!("{}.{}", k.series.0, k.series.1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An offsets file: `key = value` lines, `#` comments, as printed by
/// `scripts/nginx-offsets.sh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetsFile {
    /// `version = 1.22.1`: the file applies to this version only (absent:
    /// to any version).
    pub version: Option<String>,
    /// The offsets.
    pub offsets: Offsets,
}

impl OffsetsFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("nginx_link offsets file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("nginx_link offsets file {}:{e}", path.display()))
    }

    /// Parses the text of an offsets file; errors are `line: message`.
    ///
    /// Keys: `version` (optional), `peer_connection.log`, `log.data`,
    /// `connection.fd` (required), `http_log_ctx.connection` (default 0),
    /// `stream_session.signature` (must be 0 when given),
    /// `stream_session.connection` (default 8).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut version = None;
        let (mut pc_log, mut log_data, mut conn_fd) = (None, None, None);
        let (mut http_conn, mut strm_conn) = (0, 8);
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!("{n}: expected `key = value`, found `{line}`"));
            };
            let (k, v) = (k.trim(), v.trim());
            if k == "version" {
                if elf::version_parts(v).len() < 2 {
                    return Err(format!("{n}: version `{v}` is not a version like 1.22.1"));
                }
                version = Some(v.to_owned());
                continue;
            }
            let num: u32 = v.parse().ok().filter(|x| *x < 4096).ok_or_else(|| {
                format!("{n}: {k} = `{v}` is not an offset (a number of bytes below 4096)")
            })?;
            match k {
                "peer_connection.log" => pc_log = Some(num),
                "log.data" => log_data = Some(num),
                "connection.fd" => conn_fd = Some(num),
                "http_log_ctx.connection" => http_conn = num,
                "stream_session.connection" => strm_conn = num,
                "stream_session.signature" if num == 0 => {}
                "stream_session.signature" => {
                    return Err(format!(
                        "{n}: stream_session.signature = {num}: the probe needs the signature first (0)"
                    ))
                }
                _ => {
                    return Err(format!(
                        "{n}: unknown key `{k}` (expected version, peer_connection.log, log.data, connection.fd, http_log_ctx.connection, stream_session.signature, stream_session.connection)"
                    ))
                }
            }
        }
        let need = |v: Option<u32>, k: &str| v.ok_or_else(|| format!("0: missing key {k}"));
        Ok(Self {
            version,
            offsets: Offsets {
                pc_log: need(pc_log, "peer_connection.log")?,
                log_data: need(log_data, "log.data")?,
                conn_fd: need(conn_fd, "connection.fd")?,
                http_conn,
                strm_conn,
            },
        })
    }
}

/// Whether the build has the SSL session callbacks in
/// `ngx_peer_connection_t` (`NGX_SSL || NGX_COMPAT`): an SSL symbol is
/// exported, or the module signature says http_ssl or compat.
pub fn has_ssl_fields(elf: &Elf<'_>, data: &[u8]) -> bool {
    elf.defines("ngx_ssl_create_connection") || signature_ssl_or_compat(data) == Some(true)
}

/// Character 24 of the flags of nginx's module signature
/// (`8,4,8,0011...`) is `NGX_HTTP_SSL || NGX_COMPAT`.
pub fn signature_ssl_or_compat(data: &[u8]) -> Option<bool> {
    let mut from = 0;
    while let Some(p) = elf::find(data.get(from..)?, b"8,4,8,") {
        let start = from + p + 6;
        let flags = data.get(start..start + 34)?;
        if flags.iter().all(|b| *b == b'0' || *b == b'1') {
            return Some(flags[23] == b'1');
        }
        from = start;
    }
    None
}

/// What the checks of one binary found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// `1.22.1`.
    pub version: String,
    /// The hooked function.
    pub hook: Symbol,
    /// The offsets to use.
    pub offsets: Offsets,
    /// Where they came from, for the log.
    pub source: String,
}

/// Checks an nginx binary (bytes `data`, shown as `shown`): a version
/// string, the hooked function, and offsets from `file` (when it applies
/// to this version) or the table. The error names the binary, its
/// version and what to do.
pub fn check(data: &[u8], shown: &Path, file: Option<&OffsetsFile>) -> Result<Checked, String> {
    let shown = shown.display();
    let elf = Elf::parse(data).map_err(|e| format!("{shown}: {e}"))?;
    let version = elf::version_after(data, b"nginx/").ok_or_else(|| {
        format!("{shown}: no nginx version string (nginx/x.y.z) in the binary; is it nginx?")
    })?;
    let hook = elf.function(HOOK).ok_or_else(|| {
        format!(
            "{shown} (nginx/{version}): function {HOOK} is in neither .dynsym nor .symtab \
             (a build without exported symbols, or stripped of its dynamic symbols); \
             nginx_link needs it, see docs/nginx_link.md"
        )
    })?;
    let ssl = has_ssl_fields(&elf, data);
    if let Some(f) = file.filter(|f| f.version.as_deref().is_none_or(|v| v == version)) {
        return Ok(Checked {
            version,
            hook,
            offsets: f.offsets,
            source: "the offsets file (-p)".into(),
        });
    }
    let parts = elf::version_parts(&version);
    let series = (
        parts.first().copied().unwrap_or(0),
        parts.get(1).copied().unwrap_or(0),
    );
    let row = KNOWN.iter().find(|k| k.series == series).ok_or_else(|| {
        let file_note = match file {
            Some(f) => format!(
                "; the offsets file given is for nginx/{}",
                f.version.as_deref().unwrap_or("?")
            ),
            None => String::new(),
        };
        format!(
            "{shown}: nginx/{version} is not in nginx_link's offset table (known: {}){file_note}; \
             measure its offsets with scripts/nginx-offsets.sh and pass the file with -p <file> \
             (docs/nginx_link.md)",
            known_series()
        )
    })?;
    Ok(Checked {
        version,
        hook,
        offsets: Offsets {
            pc_log: if ssl {
                row.pc_log_ssl
            } else {
                row.pc_log_plain
            },
            log_data: row.log_data,
            conn_fd: row.conn_fd,
            http_conn: row.http_conn,
            strm_conn: row.strm_conn,
        },
        source: format!(
            "the table, nginx {}.{} {} build",
            row.series.0,
            row.series.1,
            if ssl { "ssl/compat" } else { "plain" }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_files_parse_and_errors_name_the_line() {
        let f = OffsetsFile::parse(
            "# comment\nversion = 1.22.1\npeer_connection.log = 112\nlog.data = 40\nconnection.fd = 24 # fd\nhttp_log_ctx.connection = 0\nstream_session.signature = 0\nstream_session.connection = 8\n",
        )
        .expect("parses");
        assert_eq!(f.version.as_deref(), Some("1.22.1"));
        assert_eq!(
            f.offsets,
            Offsets {
                pc_log: 112,
                log_data: 40,
                conn_fd: 24,
                http_conn: 0,
                strm_conn: 8
            }
        );
        let e = OffsetsFile::parse("log.data = 40\nconnection.fd = x\n").expect_err("bad number");
        assert!(e.starts_with("2: connection.fd"), "{e}");
        let e = OffsetsFile::parse("frob = 1\n").expect_err("unknown key");
        assert!(e.contains("unknown key `frob`"), "{e}");
        let e = OffsetsFile::parse("log.data = 40\n").expect_err("missing");
        assert!(e.contains("missing key peer_connection.log"), "{e}");
        let e = OffsetsFile::parse("version = x\n").expect_err("bad version");
        assert!(e.starts_with("1: version"), "{e}");
        assert!(OffsetsFile::parse("stream_session.signature = 4\n").is_err());
    }

    #[test]
    fn the_module_signature_tells_ssl_or_compat() {
        assert_eq!(
            signature_ssl_or_compat(b"\08,4,8,0011111111010111001111111111111111\0"),
            Some(true)
        );
        let mut plain = *b"8,4,8,0011111111010111001111111111111111";
        plain[6 + 23] = b'0';
        assert_eq!(signature_ssl_or_compat(&plain), Some(false));
        assert_eq!(signature_ssl_or_compat(b"8,4,8,short"), None);
    }

    #[test]
    fn the_encoding_is_the_c_struct() {
        let o = Offsets {
            pc_log: 1,
            log_data: 2,
            conn_fd: 3,
            http_conn: 4,
            strm_conn: 5,
        };
        let e = o.encode();
        assert_eq!(&e[8..12], &3u32.to_ne_bytes());
        assert_eq!(&e[16..20], &5u32.to_ne_bytes());
    }
}
