//! gopher-ctl, the binary that `cargo build -p gopher-ctl` builds (`make
//! test` builds it first), run as a user runs it.
//!
//! Against the real agent: over its REST API and over its control socket
//! (also with the REST API off), and over TLS with mutual TLS, with
//! certificates made here. Beside those, a real small HTTP/1.1 server run in
//! the test process, over TCP and over a Unix socket, answers as the agent's
//! API does, so that what gopher-ctl sends is recorded and checked byte for
//! byte and both Content-Length and chunked replies are read; and TLS is
//! also checked against `openssl s_server`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{self, free_port, wait_for, Agent, Setup};

/// The binary built by `cargo build -p gopher-ctl`.
fn ctl_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| harness::repo().join("target"), PathBuf::from);
    let p = target.join("debug").join("gopher-ctl");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p gopher-ctl` first (`make test` does)",
        p.display()
    );
    p
}

/// Runs gopher-ctl with `args` (and `stdin`), no GOPHER_CTL_* from the
/// environment of the test run.
fn ctl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(ctl_bin());
    c.args(args)
        .env_remove("GOPHER_CTL_URL")
        .env_remove("GALA_GOPHER_CTL_SOCKET")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("run gopher-ctl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it differs.
fn code(o: &Output, want: i32) {
    assert_eq!(
        o.status.code(),
        Some(want),
        "exit code; stdout:\n{}\nstderr:\n{}",
        out(o),
        err(o)
    );
}

/// A request as the server received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

const TCP_VIEW: &str = r#"{"name":"tcp","kind":"group","state":"running","cmd":{"probe":["tcp_link"]},"params":{"report_period":5},"snoopers":{"proc_id":[],"proc_name":[{"comm":"^nginx$","cmdline":""}],"container_id":[]},"restarts":1}"#;
const MEMINFO_VIEW: &str = r#"{"name":"system_meminfo","kind":"native","state":"stopped","cmd":{"probe":[]},"params":{},"snoopers":{"proc_id":[],"proc_name":[],"container_id":[]},"restarts":0}"#;
const STATUS: &str = r#"{"version":"0.1.0","uptime_secs":3725,"series":42,"drops":{"queue_full":2},"probes":[{"name":"tcp","kind":"group","state":"running","cmd":{"probe":["tcp_link"]},"params":{},"snoopers":{"proc_id":[],"proc_name":[],"container_id":[]},"restarts":1}]}"#;
const METRICS: &str =
    "# HELP gala_gopher_self_up 1\n# TYPE gala_gopher_self_up gauge\ngala_gopher_self_up 1\n";

/// What the small server answers: the routes of the agent's REST API.
fn answer(req: &Seen) -> Vec<u8> {
    // The agent's replies to changes and its errors.
    let result = |status: &str, message: &str| {
        let result = if status.starts_with("200") {
            "success"
        } else {
            "failed"
        };
        let body = serde_json::json!({"result": result, "message": message}).to_string();
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let reply = |status: &str, ctype: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let chunked = |ctype: &str, body: &str| {
        // Chunks of 7 bytes, to exercise the de-chunking.
        let mut s = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        for c in body.as_bytes().chunks(7) {
            s.push_str(&format!(
                "{:x}\r\n{}\r\n",
                c.len(),
                String::from_utf8_lossy(c)
            ));
        }
        s.push_str("0\r\n\r\n");
        s.into_bytes()
    };
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/") => chunked("application/json", &format!("[{TCP_VIEW},{MEMINFO_VIEW}]")),
        ("GET", "/tcp") => reply("200 OK", "application/json", TCP_VIEW),
        ("GET", "/status") => reply("200 OK", "application/json", STATUS),
        ("GET", "/metrics") => chunked("text/plain; version=0.0.4", METRICS),
        ("PUT", "/tcp") => {
            if req.body.contains("99999") {
                result(
                    "400 Bad Request",
                    "`params.report_period`: expected 1..=600, got 99999",
                )
            } else {
                result("200 OK", "New config takes effect")
            }
        }
        ("PUT" | "GET", p) => result(
            "404 Not Found",
            &format!("no probe named `{}`", p.trim_start_matches('/')),
        ),
        _ => result("405 Method Not Allowed", "method not allowed"),
    }
}

/// Reads one request (head and Content-Length body).
fn read_request(stream: &mut dyn Read) -> Option<Seen> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.to_owned(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The small server: answers every connection until dropped.
struct Server {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

impl Server {
    fn spawn(mut accept: impl FnMut() -> Option<Box<dyn Conn>> + Send + 'static) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let Some(mut c) = accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if let Some(req) = read_request(&mut c) {
                    let reply = answer(&req);
                    // Recorded before the reply, so that a test that has
                    // its reply sees the request.
                    seen2.lock().unwrap().push(req);
                    let _ = c.write_all(&reply);
                }
            }
        });
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn tcp() -> (Self, String) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
        l.set_nonblocking(true).unwrap();
        let s = Self::spawn(move || {
            let (c, _) = l.accept().ok()?;
            c.set_nonblocking(false).ok()?;
            c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            Some(Box::new(c))
        });
        (s, url)
    }

    fn unix(path: &Path) -> Self {
        let l = UnixListener::bind(path).unwrap();
        l.set_nonblocking(true).unwrap();
        Self::spawn(move || {
            let (c, _) = l.accept().ok()?;
            c.set_nonblocking(false).ok()?;
            c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            Some(Box::new(c))
        })
    }

    /// The requests so far, and forgets them.
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every command against the server at `via` (`--url URL` or `--socket P`).
fn every_command(server: &Server, via: &[&str]) {
    let args = |rest: &[&str]| -> Vec<String> {
        via.iter().chain(rest).map(|s| (*s).to_owned()).collect()
    };
    let run = |rest: &[&str], stdin: Option<&str>| {
        let a = args(rest);
        ctl(&a.iter().map(String::as_str).collect::<Vec<_>>(), stdin)
    };

    // probe list: a table from a chunked reply.
    let o = run(&["probe", "list"], None);
    code(&o, 0);
    assert_eq!(
        out(&o),
        "NAME            KIND    STATE    RESTARTS  PROBES\n\
         tcp             group   running         1  tcp_link\n\
         system_meminfo  native  stopped         0  -\n"
    );
    let o = run(&["probe", "list", "--json"], None);
    code(&o, 0);
    assert_eq!(out(&o), format!("[{TCP_VIEW},{MEMINFO_VIEW}]\n"));

    // probe get.
    let o = run(&["probe", "get", "tcp"], None);
    code(&o, 0);
    assert_eq!(
        out(&o),
        "name      tcp\n\
         kind      group\n\
         state     running\n\
         restarts  1\n\
         probes    tcp_link\n\
         params    report_period=5\n\
         snoopers  proc_name(comm=\"^nginx$\")\n"
    );
    let o = run(&["--json", "probe", "get", "tcp"], None);
    code(&o, 0);
    assert_eq!(out(&o), format!("{TCP_VIEW}\n"));
    let seen = server.take();
    assert_eq!(
        seen.iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect::<Vec<_>>(),
        ["GET /", "GET /", "GET /tcp", "GET /tcp"]
    );

    // An unknown probe: the agent's 404 and its message, exit 1.
    let o = run(&["probe", "get", "nope"], None);
    code(&o, 1);
    assert_eq!(out(&o), "");
    assert_eq!(
        err(&o),
        "gopher-ctl: the agent answered 404 Not Found: no probe named `nope`\n"
    );

    // probe set: JSON as given, `json=` taken off, -f FILE and stdin.
    let o = run(
        &[
            "probe",
            "set",
            "tcp",
            r#"json={"params":{"report_period":10}}"#,
        ],
        None,
    );
    code(&o, 0);
    assert_eq!(out(&o), "New config takes effect\n");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("change.json");
    std::fs::write(&f, "{\"snoopers\": {\"proc_id\": [1]}}\n").unwrap();
    let o = run(&["probe", "set", "tcp", "-f", f.to_str().unwrap()], None);
    code(&o, 0);
    let o = run(
        &["probe", "set", "tcp", "-f", "-"],
        Some(r#"{"cmd":{"probe":["tcp_abnormal"]}}"#),
    );
    code(&o, 0);
    // probe start / stop.
    code(&run(&["probe", "start", "tcp"], None), 0);
    let o = run(&["probe", "stop", "tcp", "--json"], None);
    code(&o, 0);
    // The agent's JSON as is.
    let reply = serde_json::json!({"result": "success", "message": "New config takes effect"});
    assert_eq!(out(&o), format!("{reply}\n"));
    let seen = server.take();
    let puts: Vec<(&str, &str, &str)> = seen
        .iter()
        .filter(|s| s.method == "PUT")
        .map(|s| {
            (
                s.path.as_str(),
                s.body.as_str(),
                s.header("content-type").unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        puts,
        [
            (
                "/tcp",
                r#"{"params":{"report_period":10}}"#,
                "application/json"
            ),
            (
                "/tcp",
                r#"{"snoopers": {"proc_id": [1]}}"#,
                "application/json"
            ),
            (
                "/tcp",
                r#"{"cmd":{"probe":["tcp_abnormal"]}}"#,
                "application/json"
            ),
            ("/tcp", r#"{"state":"running"}"#, "application/json"),
            ("/tcp", r#"{"state":"stopped"}"#, "application/json"),
        ]
    );
    // A 404 for the GET before them, then only PUTs.
    assert_eq!(seen.len(), 6, "{seen:?}");

    // The agent refuses a change: its message, exit 1.
    let o = run(
        &[
            "probe",
            "set",
            "tcp",
            r#"{"params":{"report_period":99999}}"#,
        ],
        None,
    );
    code(&o, 1);
    assert_eq!(
        err(&o),
        "gopher-ctl: the agent answered 400 Bad Request: `params.report_period`: expected 1..=600, got 99999\n"
    );
    // Bad JSON is a usage error and nothing is sent.
    server.take();
    let o = run(&["probe", "set", "tcp", r#"{"state":"running""#], None);
    code(&o, 2);
    assert!(
        err(&o).starts_with("gopher-ctl: the JSON argument: not JSON: EOF while parsing an object at line 1 column 18"),
        "{}",
        err(&o)
    );
    let o = run(&["probe", "set", "tcp", "[]"], None);
    code(&o, 2);
    assert!(err(&o).contains("expected a JSON object"), "{}", err(&o));
    assert!(server.take().is_empty());

    // status and metrics.
    let o = run(&["status"], None);
    code(&o, 0);
    assert_eq!(
        out(&o),
        "version  0.1.0\n\
         uptime   1h 2m 5s\n\
         series   42\n\
         drops    2 (queue_full=2)\n\
         \n\
         PROBE  KIND   STATE    RESTARTS\n\
         tcp    group  running         1\n"
    );
    let o = run(&["status", "--json"], None);
    code(&o, 0);
    assert_eq!(out(&o), format!("{STATUS}\n"));
    let o = run(&["metrics"], None);
    code(&o, 0);
    assert_eq!(out(&o), METRICS);
    let seen = server.take();
    assert_eq!(
        seen.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
        ["/status", "/status", "/metrics"]
    );
    assert!(seen.iter().all(|s| s
        .header("user-agent")
        .is_some_and(|u| u.starts_with("gopher-ctl/"))));
}

#[test]
fn every_command_over_tcp() {
    let (server, url) = Server::tcp();
    every_command(&server, &["--url", &url]);
    // The Host header is the URL's authority.
    ctl(&["--url", &url, "status"], None);
    let seen = server.take();
    assert_eq!(
        seen[0].header("host"),
        Some(url.trim_start_matches("http://"))
    );
}

#[test]
fn every_command_over_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gopher-ctl.sock");
    let server = Server::unix(&sock);
    every_command(&server, &["--socket", sock.to_str().unwrap()]);
    // GALA_GOPHER_CTL_SOCKET does what --socket does.
    let o = Command::new(ctl_bin())
        .arg("status")
        .env_remove("GOPHER_CTL_URL")
        .env("GALA_GOPHER_CTL_SOCKET", &sock)
        .output()
        .unwrap();
    code(&o, 0);
    assert_eq!(server.take().len(), 1);
}

#[test]
fn unreachable_agents_and_usage_errors_have_their_exit_codes() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let o = ctl(&["--url", &url, "probe", "list"], None);
    code(&o, 3);
    assert_eq!(
        err(&o),
        format!("gopher-ctl: cannot connect to 127.0.0.1:{port}: connection refused; is global.rest_api_on = true? or use the control socket (root)\n")
    );
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let o = ctl(&["--socket", sock.to_str().unwrap(), "status"], None);
    code(&o, 3);
    assert!(
        err(&o).starts_with(&format!(
            "gopher-ctl: cannot connect to {}: no such file or directory",
            sock.display()
        )),
        "{}",
        err(&o)
    );
    // A socket that nothing serves any more.
    drop(UnixListener::bind(&sock).unwrap());
    let o = ctl(&["--socket", sock.to_str().unwrap(), "status"], None);
    code(&o, 3);
    assert!(err(&o).contains("connection refused"), "{}", err(&o));

    // Usage: exit 2, with clap's or our message.
    for args in [
        &["probe"][..],
        &["probe", "set", "tcp"],
        &["frobnicate"],
        &["--url", "127.0.0.1:9999", "status"],
        &["--url", "http://h", "--socket", "/s", "status"],
        &["--url", "http://127.0.0.1:1", "--cacert", "/x", "status"],
        &["--timeout", "-1", "status"],
    ] {
        let o = ctl(args, None);
        code(&o, 2);
        assert!(!err(&o).is_empty(), "{args:?}: no message");
    }
    // --help and --version: exit 0, the transport rule is told.
    let o = ctl(&["--help"], None);
    code(&o, 0);
    assert!(
        out(&o).contains("/run/gala-gopher/gopher-ctl.sock"),
        "{}",
        out(&o)
    );
    let o = ctl(&["--version"], None);
    code(&o, 0);
    assert_eq!(
        out(&o),
        format!("gopher-ctl {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bash_completions_parse_and_complete_the_commands() {
    let o = ctl(&["completions", "bash"], None);
    code(&o, 0);
    let script = out(&o);
    assert!(script.contains("_gopher__ctl()"), "{script}");
    for word in ["probe", "status", "metrics", "--socket", "--url", "--json"] {
        assert!(script.contains(word), "no {word} in the completions");
    }
    // bash reads it, and completing `gopher-ctl probe ` offers the
    // probe commands.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("gopher-ctl.bash");
    std::fs::write(&f, &script).unwrap();
    let check = format!(
        "source {}; COMP_WORDS=(gopher-ctl probe ''); COMP_CWORD=2; COMP_LINE='gopher-ctl probe '; COMP_POINT=${{#COMP_LINE}}; _gopher__ctl gopher-ctl '' probe; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        f.display()
    );
    let o = Command::new("bash").args(["-c", &check]).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let words = out(&o);
    for w in ["list", "get", "set", "start", "stop"] {
        assert!(words.lines().any(|l| l == w), "no {w} in {words}");
    }
    for shell in ["zsh", "fish"] {
        let o = ctl(&["completions", shell], None);
        code(&o, 0);
        assert!(out(&o).contains("gopher-ctl"));
    }
}

/// `openssl` with `args`, failing loudly.
fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl CLI is required for this test (Debian package openssl)");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all
/// signed by the CA, in `dir`.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=gopher-ctl test CA",
        ],
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
}

/// `openssl s_server -WWW` (TLS 1.3) serving the files of `www` on a free
/// port, requiring a client certificate when `mtls`. Killed (by pid) on drop.
struct TlsServer {
    child: std::process::Child,
    port: u16,
}

impl TlsServer {
    fn start(certs: &Path, www: &Path, mtls: bool) -> Self {
        let port = free_port();
        let mut c = Command::new("openssl");
        c.current_dir(www)
            .arg("s_server")
            .args(["-tls1_3", "-WWW", "-quiet", "-accept", &port.to_string()])
            .arg("-cert")
            .arg(certs.join("server.pem"))
            .arg("-key")
            .arg(certs.join("server.key"));
        if mtls {
            c.args(["-Verify", "1", "-verify_return_error"])
                .arg("-CAfile")
                .arg(certs.join("ca.pem"));
        }
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        wait_for(
            Duration::from_secs(10),
            "openssl s_server to listen",
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        );
        Self { child, port }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn https_with_the_agents_ca_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("status"), STATUS).unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_owned();

    let srv = TlsServer::start(dir.path(), &www, false);
    let url = format!("https://127.0.0.1:{}", srv.port);
    let o = ctl(
        &["--url", &url, "--cacert", &p("ca.pem"), "status", "--json"],
        None,
    );
    code(&o, 0);
    assert_eq!(out(&o), format!("{STATUS}\n"));
    // Without the agent's CA, the handshake fails: exit 3, and it says why.
    let o = ctl(
        &["--url", &url, "--cacert", &p("client.pem"), "status"],
        None,
    );
    code(&o, 3);
    assert!(
        err(&o).starts_with(&format!(
            "gopher-ctl: TLS handshake with 127.0.0.1:{} failed: invalid peer certificate",
            srv.port
        )),
        "{}",
        err(&o)
    );
    drop(srv);

    // Mutual TLS: with the client certificate it works; without, the
    // server refuses it.
    let srv = TlsServer::start(dir.path(), &www, true);
    let url = format!("https://127.0.0.1:{}", srv.port);
    let o = ctl(
        &[
            "--url",
            &url,
            "--cacert",
            &p("ca.pem"),
            "--cert",
            &p("client.pem"),
            "--key",
            &p("client.key"),
            "status",
        ],
        None,
    );
    code(&o, 0);
    assert!(
        out(&o).starts_with("version  0.1.0\nuptime   1h 2m 5s\n"),
        "{}",
        out(&o)
    );
    let o = ctl(&["--url", &url, "--cacert", &p("ca.pem"), "status"], None);
    code(&o, 3);
    assert!(
        err(&o).starts_with(&format!(
            "gopher-ctl: TLS with 127.0.0.1:{} failed: received fatal alert: CertificateRequired",
            srv.port
        )),
        "{}",
        err(&o)
    );

    // Bad TLS files are usage errors naming the flag and the file.
    let o = ctl(&["--url", &url, "--cacert", &p("nope.pem"), "status"], None);
    code(&o, 2);
    assert!(
        err(&o).contains(&format!("--cacert {}", p("nope.pem"))),
        "{}",
        err(&o)
    );
    let o = ctl(
        &[
            "--url",
            &url,
            "--cacert",
            &p("ca.pem"),
            "--cert",
            &p("client.pem"),
            "status",
        ],
        None,
    );
    code(&o, 2);
    assert!(
        err(&o).contains("--cert and --key go together"),
        "{}",
        err(&o)
    );
    let o = ctl(
        &[
            "--url",
            &url,
            "--cacert",
            &p("ca.pem"),
            "--cert",
            &p("client.pem"),
            "--key",
            &p("client.pem"),
            "status",
        ],
        None,
    );
    code(&o, 2);
    assert!(err(&o).contains("--key"), "{}", err(&o));
}

/// An agent serving its REST API on its own port (when `rest`) and its
/// control socket in the setup's directory, with three native probes
/// reporting every second; `extra` goes into `[rest_api_server]`.
struct Live {
    s: Setup,
    rest_port: u16,
    agent: Option<Agent>,
}

impl Live {
    fn start(rest: bool, extra: &str) -> Self {
        let s = Setup::new(&[]);
        let rest_port = free_port();
        let mut base = s.base_config();
        if rest {
            base = base.replacen("[global]\n", "[global]\nrest_api_on = true\n", 1);
        }
        let probes: String = ["system_meminfo", "system_vmstat", "system_inode"]
            .iter()
            .map(|p| format!("[[probes]]\nname = \"{p}\"\nparam = \"-t 1\"\nswitch = \"on\"\n"))
            .collect();
        let cfg = format!(
            "{base}\n[rest_api_server]\nport = {rest_port}\nbind_addr = \"127.0.0.1\"\n{extra}\n{probes}"
        );
        let sock = s.path("gopher-ctl.sock");
        let agent = s.start_with_env(&cfg, &[("GALA_GOPHER_CTL_SOCKET", sock.to_str().unwrap())]);
        wait_for(Duration::from_secs(15), "the control socket", || {
            sock.exists().then_some(())
        });
        Self {
            s,
            rest_port,
            agent: Some(agent),
        }
    }

    fn socket(&self) -> String {
        self.s.path("gopher-ctl.sock").to_str().unwrap().to_owned()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rest_port)
    }

    fn log(&self) -> String {
        self.agent.as_ref().map(Agent::log_text).unwrap_or_default()
    }
}

/// `gopher-ctl VIA.. ARGS..`.
fn ctl_via(via: &[&str], args: &[&str]) -> Output {
    let all: Vec<&str> = via.iter().chain(args).copied().collect();
    ctl(&all, None)
}

/// The probe `name` of `probe get --json`.
fn view(via: &[&str], name: &str) -> serde_json::Value {
    let o = ctl_via(via, &["probe", "get", name, "--json"]);
    code(&o, 0);
    serde_json::from_str(&out(&o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out(&o)))
}

/// Every command against the running agent through `via`.
fn commands_against_the_agent(live: &Live, via: &[&str]) {
    // probe list: the configured probes, running, in an aligned table.
    let o = wait_for(Duration::from_secs(15), "the probes to run", || {
        let o = ctl_via(via, &["probe", "list"]);
        let running = out(&o)
            .lines()
            .filter(|l| l.starts_with("system_") && l.contains(" running "))
            .count();
        (o.status.code() == Some(0) && running == 3).then_some(o)
    });
    let table = out(&o);
    let head = table.lines().next().unwrap();
    assert_eq!(
        head,
        format!(
            "{:<w$}  KIND    STATE    RESTARTS  PROBES",
            "NAME",
            w = head.find("  KIND").unwrap()
        )
    );
    let col = head.find("STATE").unwrap();
    for name in ["system_meminfo", "system_vmstat", "system_inode"] {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{table}"));
        assert_eq!(&line[col..col + 7], "running", "{table}");
    }
    // --json: the agent's own GET / as is.
    let o = ctl_via(via, &["probe", "list", "--json"]);
    code(&o, 0);
    let list: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for name in ["system_meminfo", "system_vmstat", "system_inode"] {
        assert!(names.contains(&name), "{names:?}");
    }

    // probe get.
    let o = ctl_via(via, &["probe", "get", "system_meminfo"]);
    code(&o, 0);
    let text = out(&o);
    assert!(
        text.starts_with("name      system_meminfo\nkind      native\nstate     running\n"),
        "{text}"
    );
    assert!(text.contains("\nsnoopers  all processes\n"), "{text}");

    // stop and start one probe; the agent says its legacy words.
    let o = ctl_via(via, &["probe", "stop", "system_vmstat"]);
    code(&o, 0);
    assert_eq!(out(&o), "New config takes effect\n");
    assert_eq!(view(via, "system_vmstat")["state"], "stopped");
    assert_eq!(view(via, "system_meminfo")["state"], "running");
    let o = ctl_via(via, &["probe", "start", "system_vmstat"]);
    code(&o, 0);
    wait_for(
        Duration::from_secs(10),
        "system_vmstat to run again",
        || (view(via, "system_vmstat")["state"] == "running").then_some(()),
    );

    // probe set: params by their 2.x names, the legacy `json=` form too.
    let o = ctl_via(
        via,
        &[
            "probe",
            "set",
            "system_inode",
            r#"json={"params":{"report_period":7}}"#,
        ],
    );
    code(&o, 0);
    assert_eq!(view(via, "system_inode")["params"]["report_period"], 7);
    // Refusals: the agent's message, exit 1.
    let o = ctl_via(
        via,
        &[
            "probe",
            "set",
            "system_inode",
            r#"{"params":{"report_period":4}}"#,
        ],
    );
    code(&o, 1);
    assert!(
        err(&o).starts_with("gopher-ctl: the agent answered 400 Bad Request: ")
            && err(&o).contains("report_period"),
        "{}",
        err(&o)
    );
    assert_eq!(view(via, "system_inode")["params"]["report_period"], 7);
    let o = ctl_via(via, &["probe", "get", "no_such_probe"]);
    code(&o, 1);
    assert!(
        err(&o).starts_with("gopher-ctl: the agent answered 404 Not Found: "),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("no_such_probe"), "{}", err(&o));

    // status: the agent's version and its probes.
    let o = ctl_via(via, &["status"]);
    code(&o, 0);
    let text = out(&o);
    assert!(
        text.starts_with(&format!(
            "version  {}\nuptime   ",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(text.contains("\nPROBE "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("system_meminfo ") && l.contains(" running ")),
        "{text}"
    );
    let o = ctl_via(via, &["status", "--json"]);
    code(&o, 0);
    let st: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert!(st["series"].as_u64().is_some_and(|n| n > 0), "{st}");

    // metrics: the exposition text, with the probes' series.
    let o = ctl_via(via, &["metrics"]);
    code(&o, 0);
    let expo = out(&o);
    assert!(
        expo.lines()
            .any(|l| l.starts_with("gala_gopher_system_meminfo_")),
        "{}",
        &expo[..expo.len().min(2000)]
    );
    assert!(expo.contains("# TYPE "), "not the exposition text");
    assert!(live.agent.is_some(), "{}", live.log());
}

#[test]
fn the_real_agent_over_its_rest_api_and_its_control_socket() {
    let live = Live::start(true, "");
    let url = live.url();
    let sock = live.socket();
    commands_against_the_agent(&live, &["--url", &url]);
    commands_against_the_agent(&live, &["--socket", &sock]);
    // Both see the same probes.
    let a = out(&ctl_via(&["--url", &url], &["probe", "list"]));
    let b = out(&ctl_via(&["--socket", &sock], &["probe", "list"]));
    assert_eq!(a, b);
}

#[test]
fn the_control_socket_works_with_the_rest_api_off_and_is_root_only() {
    let live = Live::start(false, "");
    let url = live.url();
    let sock = live.socket();
    let o = ctl_via(
        &["--socket", &sock],
        &["probe", "get", "system_meminfo", "--json"],
    );
    code(&o, 0);
    let o = ctl_via(&["--url", &url], &["status"]);
    code(&o, 3);
    assert_eq!(
        err(&o),
        format!("gopher-ctl: cannot connect to 127.0.0.1:{}: connection refused; is global.rest_api_on = true? or use the control socket (root)\n", live.rest_port)
    );
    // The socket is root's alone (0600): another user is told so.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    // nobody runs a copy of gopher-ctl it can read, and may pass through
    // the socket's directory: only the socket's own mode stands in the way.
    let bin_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.path().join("gopher-ctl");
    std::fs::copy(ctl_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(live.s.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .args(["--socket", &sock, "status"])
        .env_remove("GALA_GOPHER_CTL_SOCKET")
        .output()
        .expect("setpriv (util-linux) runs gopher-ctl as nobody");
    code(&o, 3);
    assert_eq!(
        err(&o),
        format!("gopher-ctl: cannot connect to {sock}: permission denied; the control socket is root-only: run gopher-ctl as root, or use --url\n")
    );
    // As root it still works.
    code(&ctl_via(&["--socket", &sock], &["status"]), 0);
}

#[test]
fn the_real_agent_over_tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_owned();
    let live = Live::start(
        true,
        &format!(
            "ssl_auth = true\nprivate_key = \"{}\"\ncert_file = \"{}\"\nca_file = \"{}\"\n",
            p("server.key"),
            p("server.pem"),
            p("ca.pem")
        ),
    );
    let url = format!("https://127.0.0.1:{}", live.rest_port);
    let (ca, cert, key) = (p("ca.pem"), p("client.pem"), p("client.key"));
    let tls = ["--url", url.as_str(), "--cacert", &ca];
    let mtls = [&tls[..], &["--cert", &cert, "--key", &key]].concat();
    let o = wait_for(Duration::from_secs(15), "the REST API over TLS", || {
        let o = ctl_via(&mtls, &["probe", "get", "system_meminfo", "--json"]);
        (o.status.code() == Some(0)).then_some(o)
    });
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out(&o)).unwrap()["name"],
        "system_meminfo"
    );
    let o = ctl_via(&mtls, &["probe", "stop", "system_inode"]);
    code(&o, 0);
    assert_eq!(out(&o), "New config takes effect\n");
    // No client certificate: refused.
    let o = ctl_via(&tls, &["status"]);
    code(&o, 3);
    assert!(
        err(&o).starts_with(&format!(
            "gopher-ctl: TLS with 127.0.0.1:{} failed: received fatal alert: CertificateRequired; check --cacert",
            live.rest_port
        )),
        "{}",
        err(&o)
    );
    // Plain HTTP to a TLS port: not an HTTP reply, and the way out.
    let o = ctl_via(
        &["--url", &format!("http://127.0.0.1:{}", live.rest_port)],
        &["status"],
    );
    code(&o, 3);
    let e = err(&o);
    assert!(
        e.starts_with(&format!(
            "gopher-ctl: 127.0.0.1:{} answered something that is not an HTTP reply: ",
            live.rest_port
        )) && e.ends_with(
            "; if the agent serves TLS (rest_api_server.ssl_auth = true), use an https:// URL\n"
        ),
        "{e}"
    );
}
