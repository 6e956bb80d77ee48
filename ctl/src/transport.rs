//! Where requests go: the agent's REST API over TCP (plain or TLS) or its
//! root-only Unix control socket, and how the default is chosen.

use std::io::{BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{io_text, CtlError};
use crate::http::{self, Response};

/// The agent's control socket. The agent's own default is `DEFAULT_SOCKET`
/// in gopher/src/rest/mod.rs; this crate does not depend on the agent's, so
/// the one constant is written in both places. Both read
/// `GALA_GOPHER_CTL_SOCKET` (`SOCKET_ENV` there, `--socket`'s variable here).
pub const DEFAULT_SOCKET: &str = "/run/gala-gopher/gopher-ctl.sock";

/// The default REST API address (`rest_api_server` defaults of the agent).
pub const DEFAULT_URL: &str = "http://127.0.0.1:9999";

/// The port of a URL that names none: the agent's REST port.
pub const DEFAULT_PORT: u16 = 9999;

/// The hint after a failed TCP connect.
const TCP_HINT: &str = "is global.rest_api_on = true? or use the control socket (root)";

/// A parsed `--url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https`.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (9999 when the URL names none).
    pub port: u16,
    /// A path prefix without the trailing `/` (usually empty).
    pub prefix: String,
}

impl Url {
    /// Parses `http(s)://host[:port][/prefix]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let expected = "expected http://HOST[:PORT] or https://HOST[:PORT]";
        let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!("--url {s:?}: {expected}"));
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return Err(format!(
                "--url {s:?}: a query or fragment is not allowed; {expected}"
            ));
        }
        if authority.contains('@') {
            return Err(format!(
                "--url {s:?}: user info is not supported; {expected}"
            ));
        }
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| format!("--url {s:?}: `[` without `]`; {expected}"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("--url {s:?}: junk after `]`; {expected}"))?,
                ),
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("--url {s:?}: no host; {expected}"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("--url {s:?}: bad port {p:?} (1-65535)"))?,
        };
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    /// `host:port` (`[v6]:port`), for the Host header and messages.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// TLS files of the client (`--cacert`, `--cert`, `--key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates (PEM) that sign the agent's certificate; none: the
    /// system's bundle.
    pub cacert: Option<PathBuf>,
    /// Client certificate chain (PEM), for mutual TLS.
    pub cert: Option<PathBuf>,
    /// Client private key (PEM), for mutual TLS.
    pub key: Option<PathBuf>,
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The REST API.
    Url(Url),
    /// The Unix control socket.
    Socket(PathBuf),
    /// Neither named: the socket when it exists and can be connected to,
    /// else the URL.
    Auto {
        /// The default socket.
        socket: PathBuf,
        /// The default URL.
        url: Url,
    },
}

impl Target {
    /// The target from `--url`/`--socket` (at most one of them).
    pub fn choose(url: Option<&str>, socket: Option<&Path>) -> Result<Self, String> {
        match (url, socket) {
            (Some(_), Some(_)) => Err("--url and --socket exclude each other: give one".into()),
            (Some(u), None) => Ok(Target::Url(Url::parse(u)?)),
            (None, Some(p)) => Ok(Target::Socket(p.to_path_buf())),
            (None, None) => Ok(Target::Auto {
                socket: PathBuf::from(DEFAULT_SOCKET),
                url: Url::parse(DEFAULT_URL)?,
            }),
        }
    }
}

/// A byte stream to the agent.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Sends requests to the chosen target, one connection each.
#[derive(Debug)]
pub struct Client {
    target: Target,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    /// A client; TLS files are read here (an error names the file).
    pub fn new(target: Target, timeout: Duration, tls_files: TlsFiles) -> Result<Self, CtlError> {
        let any_tls_file =
            tls_files.cacert.is_some() || tls_files.cert.is_some() || tls_files.key.is_some();
        let https = matches!(&target, Target::Url(u) if u.tls);
        if any_tls_file && !https {
            return Err(CtlError::Usage(
                "--cacert, --cert and --key need an https:// --url".into(),
            ));
        }
        let tls = if https {
            Some(Arc::new(
                crate::tls::client_config(&tls_files).map_err(CtlError::Usage)?,
            ))
        } else {
            None
        };
        Ok(Self {
            target,
            timeout,
            tls,
        })
    }

    /// What the client talks to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// One request; `body` is JSON.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, CtlError> {
        let (mut stream, shown, host, prefix) = self.connect()?;
        let full = format!("{prefix}{path}");
        stream
            .set_timeouts(self.timeout)
            .map_err(|e| CtlError::Unreachable(format!("{shown}: {}", io_text(&e))))?;
        let body = body.map(|b| ("application/json", b));
        let wire = |e: std::io::Error| -> CtlError {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                CtlError::Unreachable(format!(
                    "no reply from {shown} within {}s (--timeout)",
                    self.timeout.as_secs_f64()
                ))
            } else if let Some(tls) = tls_cause(&e) {
                CtlError::Unreachable(format!("TLS with {shown} failed: {tls}; {}", tls_hint()))
            } else {
                CtlError::Unreachable(format!("talking to {shown}: {}", io_text(&e)))
            }
        };
        http::write_request(&mut stream.0, method, &host, &full, body).map_err(wire)?;
        let mut reader = BufReader::new(&mut stream.0);
        http::read_response(&mut reader).map_err(|e| match e {
            http::ReadError::Io(io) => wire(io),
            m @ http::ReadError::Malformed(_) => {
                let hint = match &self.target {
                    Target::Url(u) if !u.tls => {
                        "; if the agent serves TLS (rest_api_server.ssl_auth = true), use an https:// URL"
                    }
                    _ => "",
                };
                CtlError::Unreachable(format!("{shown} answered something that is {m}{hint}"))
            }
        })
    }

    /// Connects: (stream, what to show in messages, Host header, path prefix).
    fn connect(&self) -> Result<(Conn, String, String, String), CtlError> {
        match &self.target {
            Target::Socket(p) => {
                let s = connect_unix(p)?;
                Ok((
                    Conn(Stream::Unix(s)),
                    p.display().to_string(),
                    "localhost".into(),
                    String::new(),
                ))
            }
            Target::Url(u) => self.connect_url(u),
            Target::Auto { socket, url } => match connect_unix(socket) {
                Ok(s) => Ok((
                    Conn(Stream::Unix(s)),
                    socket.display().to_string(),
                    "localhost".into(),
                    String::new(),
                )),
                Err(_) => self.connect_url(url),
            },
        }
    }

    fn connect_url(&self, u: &Url) -> Result<(Conn, String, String, String), CtlError> {
        let shown = u.authority();
        let addrs: Vec<_> = (u.host.as_str(), u.port)
            .to_socket_addrs()
            .map_err(|e| {
                CtlError::Unreachable(format!("cannot resolve {}: {}", u.host, io_text(&e)))
            })?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, self.timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = match tcp {
            Some(s) => s,
            None => {
                let why = last.map_or_else(|| "no address".to_owned(), |e| io_text(&e));
                return Err(CtlError::Unreachable(format!(
                    "cannot connect to {shown}: {why}; {TCP_HINT}"
                )));
            }
        };
        let _ = tcp.set_nodelay(true);
        let stream = match &self.tls {
            None => Stream::Tcp(tcp),
            Some(cfg) => {
                let name =
                    rustls::pki_types::ServerName::try_from(u.host.clone()).map_err(|e| {
                        CtlError::Usage(format!(
                            "--url: {:?} is not a TLS server name: {e}",
                            u.host
                        ))
                    })?;
                let conn = rustls::ClientConnection::new(Arc::clone(cfg), name)
                    .map_err(|e| CtlError::Unreachable(format!("TLS with {shown} failed: {e}")))?;
                tcp.set_read_timeout(Some(self.timeout))
                    .and_then(|()| tcp.set_write_timeout(Some(self.timeout)))
                    .map_err(|e| CtlError::Unreachable(format!("{shown}: {}", io_text(&e))))?;
                let mut s = rustls::StreamOwned::new(conn, tcp);
                // Handshake now, so that its failure is told as such.
                while s.conn.is_handshaking() {
                    if let Err(e) = s.conn.complete_io(&mut s.sock) {
                        let why = tls_cause(&e).unwrap_or_else(|| io_text(&e));
                        return Err(CtlError::Unreachable(format!(
                            "TLS handshake with {shown} failed: {why}; {}",
                            tls_hint()
                        )));
                    }
                }
                Stream::Tls(Box::new(s))
            }
        };
        Ok((Conn(stream), shown.clone(), shown, u.prefix.clone()))
    }
}

/// A connected stream.
struct Conn(Stream);

impl Conn {
    fn set_timeouts(&mut self, t: Duration) -> std::io::Result<()> {
        match &self.0 {
            Stream::Tcp(s) => s
                .set_read_timeout(Some(t))
                .and_then(|()| s.set_write_timeout(Some(t))),
            Stream::Unix(s) => s
                .set_read_timeout(Some(t))
                .and_then(|()| s.set_write_timeout(Some(t))),
            Stream::Tls(s) => s
                .sock
                .set_read_timeout(Some(t))
                .and_then(|()| s.sock.set_write_timeout(Some(t))),
        }
    }
}

fn tls_hint() -> &'static str {
    "check --cacert (the CA that signed the agent's certificate; its name or address must match the URL's host) and, for mutual TLS, --cert and --key"
}

/// The rustls error inside an I/O error, as text.
fn tls_cause(e: &std::io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(|t| t.to_string())
}

fn connect_unix(p: &Path) -> Result<UnixStream, CtlError> {
    UnixStream::connect(p).map_err(|e| {
        use std::io::ErrorKind as K;
        let hint = match e.kind() {
            K::NotFound => "is gala-gopher running? (it serves this socket while it runs) or use --url",
            K::PermissionDenied => "the control socket is root-only: run gopher-ctl as root, or use --url",
            K::ConnectionRefused => "nothing serves it (a socket left by an agent that is gone?): is gala-gopher running?",
            _ => "or use --url",
        };
        CtlError::Unreachable(format!(
            "cannot connect to {}: {}; {hint}",
            p.display(),
            io_text(&e)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:9999").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.prefix.as_str()),
            (false, "127.0.0.1", 9999, "")
        );
        let u = Url::parse("https://agent.example:8443/gopher/").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.prefix.as_str()),
            (true, "agent.example", 8443, "/gopher")
        );
        assert_eq!(u.authority(), "agent.example:8443");
        let u = Url::parse("http://[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", DEFAULT_PORT));
        assert_eq!(u.authority(), "[::1]:9999");
        let u = Url::parse("http://localhost/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("localhost", 9999, "")
        );
        for (bad, why) in [
            ("127.0.0.1:9999", "expected http://"),
            ("ftp://x", "expected http://"),
            ("http://", "no host"),
            ("http://h:0", "bad port"),
            ("http://h:70000", "bad port"),
            ("http://h:x", "bad port"),
            ("http://u@h", "user info"),
            ("http://[::1", "without `]`"),
            ("http://[::1]x", "junk after"),
            ("http://h/?a=1", "query"),
        ] {
            let e = Url::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn choosing_the_target() {
        assert_eq!(
            Target::choose(Some("http://h:1"), None).unwrap(),
            Target::Url(Url::parse("http://h:1").unwrap())
        );
        assert_eq!(
            Target::choose(None, Some(Path::new("/tmp/s"))).unwrap(),
            Target::Socket("/tmp/s".into())
        );
        match Target::choose(None, None).unwrap() {
            Target::Auto { socket, url } => {
                assert_eq!(socket, Path::new(DEFAULT_SOCKET));
                assert_eq!(url.authority(), "127.0.0.1:9999");
            }
            t => panic!("{t:?}"),
        }
        assert!(Target::choose(Some("http://h"), Some(Path::new("/s")))
            .unwrap_err()
            .contains("exclude each other"));
    }

    #[test]
    fn tls_files_need_https() {
        let e = Client::new(
            Target::Url(Url::parse("http://h").unwrap()),
            Duration::from_secs(1),
            TlsFiles {
                cacert: Some("/x".into()),
                ..TlsFiles::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("need an https:// --url"), "{e}");
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
    }

    #[test]
    fn connect_errors_name_the_target_and_the_way_out() {
        // A port that nothing listens on: bind one, then close it.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = Client::new(
            Target::Url(Url::parse(&format!("http://127.0.0.1:{port}")).unwrap()),
            Duration::from_secs(2),
            TlsFiles::default(),
        )
        .unwrap();
        let e = c.request("GET", "/", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot connect to 127.0.0.1:{port}: connection refused; is global.rest_api_on = true? or use the control socket (root)")
        );
        assert_eq!(e.exit_code(), crate::error::EXIT_UNREACHABLE);

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        let c = Client::new(
            Target::Socket(missing.clone()),
            Duration::from_secs(2),
            TlsFiles::default(),
        )
        .unwrap();
        let e = c.request("GET", "/", None).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "cannot connect to {}: no such file or directory; is gala-gopher running?",
                missing.display()
            )),
            "{e}"
        );
        // Auto: no socket, so the URL; its error is the URL's.
        let c = Client::new(
            Target::Auto {
                socket: missing,
                url: Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            },
            Duration::from_secs(2),
            TlsFiles::default(),
        )
        .unwrap();
        let e = c.request("GET", "/", None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot connect to 127.0.0.1:{port}")),
            "{e}"
        );
    }

    /// Answers one connection on `l` with a 200 whose body is `who`.
    fn answer_once<L, S>(accept: L, who: &'static str) -> std::thread::JoinHandle<()>
    where
        L: FnOnce() -> S + Send + 'static,
        S: Read + Write,
    {
        std::thread::spawn(move || {
            let mut s = accept();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{who}",
                who.len()
            );
        })
    }

    #[test]
    fn auto_takes_the_socket_when_it_answers_else_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ctl.sock");
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}", tcp.local_addr().unwrap())).unwrap();
        let auto = || {
            Client::new(
                Target::Auto {
                    socket: sock.clone(),
                    url: url.clone(),
                },
                Duration::from_secs(5),
                TlsFiles::default(),
            )
            .unwrap()
        };
        // A socket that answers: it is used.
        let unix = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let t = answer_once(move || unix.accept().unwrap().0, "socket");
        assert_eq!(auto().request("GET", "/", None).unwrap().text(), "socket");
        t.join().unwrap();
        // The socket file is left but nothing serves it: the URL.
        assert!(sock.exists());
        let t = answer_once(move || tcp.accept().unwrap().0, "url");
        assert_eq!(auto().request("GET", "/", None).unwrap().text(), "url");
        t.join().unwrap();
    }

    #[test]
    fn a_silent_server_times_out_and_a_non_http_one_is_named() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            // First: accept and say nothing; second: answer junk.
            let (s1, _) = l.accept().unwrap();
            let (mut s2, _) = l.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = s2.read(&mut buf);
            s2.write_all(b"SSH-2.0-OpenSSH_9\r\n").unwrap();
            drop(s2);
            drop(s1);
        });
        let c = Client::new(
            Target::Url(Url::parse(&format!("http://127.0.0.1:{port}")).unwrap()),
            Duration::from_millis(300),
            TlsFiles::default(),
        )
        .unwrap();
        let e = c.request("GET", "/", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("no reply from 127.0.0.1:{port} within 0.3s (--timeout)")
        );
        assert_eq!(e.exit_code(), crate::error::EXIT_UNREACHABLE);
        let e = c.request("GET", "/", None).unwrap_err();
        assert!(
            e.to_string().contains(
                "answered something that is not an HTTP reply: expected a status line `HTTP/1.x <code> <reason>`, got \"SSH-2.0-OpenSSH_9\"; if the agent serves TLS"
            ),
            "{e}"
        );
        t.join().unwrap();
    }
}
