//! The router served for real (TCP, TLS, mutual TLS, Unix socket) over a
//! small `ProbeControl` written here. A stand-in for the probe manager is
//! acceptable at unit level: these tests are about the HTTP layer (parsing,
//! status codes, persistence, TLS); tests/integration/rest.rs drives the
//! real agent.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Mutex;

use super::*;
use crate::control::{
    AgentStatus, Cmd, DesiredState, ProbeChange, ProbeState, ProbeView, SnoopersView,
};

/// Two resources, `tcp` and `baseinfo`; records every change applied.
#[derive(Default)]
struct Fake {
    applied: Mutex<Vec<(String, ProbeChange)>>,
    stopped: Mutex<Vec<String>>,
}

impl Fake {
    fn view(&self, name: &str) -> ProbeView {
        let stopped = self.stopped.lock().expect("lock").iter().any(|n| n == name);
        ProbeView {
            name: name.to_owned(),
            kind: "group",
            state: if stopped {
                ProbeState::Stopped
            } else {
                ProbeState::Running
            },
            cmd: Cmd {
                probe: vec!["tcp_link".into()],
            },
            params: BTreeMap::from([("report_period".to_owned(), json!(60))]),
            snoopers: SnoopersView::default(),
            restarts: 0,
        }
    }
}

impl ProbeControl for Fake {
    fn list(&self) -> Vec<ProbeView> {
        vec![self.view("baseinfo"), self.view("tcp")]
    }
    fn get(&self, name: &str) -> Option<ProbeView> {
        ["baseinfo", "tcp"].contains(&name).then(|| self.view(name))
    }
    fn apply(&self, name: &str, change: &ProbeChange) -> Result<(), ControlError> {
        if self.get(name).is_none() {
            return Err(ControlError::UnknownProbe(name.into()));
        }
        if let Some(p) = &change.probe {
            if p.iter().any(|n| n == "nope") {
                return Err(ControlError::Invalid {
                    key: "cmd.probe".into(),
                    message: "unknown sub-probe `nope`".into(),
                });
            }
        }
        if change.state == Some(DesiredState::Stopped) {
            self.stopped.lock().expect("lock").push(name.to_owned());
        }
        self.applied
            .lock()
            .expect("lock")
            .push((name.to_owned(), change.clone()));
        Ok(())
    }
    fn status(&self) -> AgentStatus {
        AgentStatus {
            version: "test".into(),
            series: 7,
            probes: self.list(),
            ..AgentStatus::default()
        }
    }
    fn metrics(&self) -> String {
        "gala_gopher_test 1\n".into()
    }
}

/// A server on a loopback port, stopped when dropped.
struct Running {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(api: Api, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                serve(listener, api, tls, async move {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
            });
        });
        Self {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP/1.1 request over a plain stream: (status, headers, body).
fn raw(
    stream: &mut (impl Read + Write),
    method: &str,
    path: &str,
    extra: &str,
    body: &[u8],
) -> (u16, String, String) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    let _ = stream.write_all(body);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = h
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, h.to_owned(), b.to_owned())
}

fn call(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let ct = if body.starts_with("json=") {
        "Content-Type: application/x-www-form-urlencoded\r\n"
    } else {
        ""
    };
    raw(&mut s, method, path, ct, body.as_bytes())
}

fn message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["message"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn routes_status_codes_and_bodies() {
    let fake = Arc::new(Fake::default());
    let srv = Running::start(Api::new(fake.clone()), None);
    let a = srv.addr;

    let (st, h, b) = call(a, "GET", "/", "");
    assert_eq!(st, 200, "{h}");
    let list: serde_json::Value = serde_json::from_str(&b).expect("json");
    assert_eq!(list[0]["name"], "baseinfo");
    assert_eq!(list[1]["name"], "tcp");

    let (st, h, b) = call(a, "GET", "/tcp", "");
    assert_eq!(st, 200);
    assert!(
        h.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{h}"
    );
    let v: serde_json::Value = serde_json::from_str(&b).expect("json");
    for k in ["cmd", "snoopers", "params", "state"] {
        assert!(v.get(k).is_some(), "{k} missing in {b}");
    }
    assert_eq!(v["state"], "running");

    let (st, _, b) = call(
        a,
        "PUT",
        "/tcp",
        r#"json={"cmd":{"probe":["tcp_abnormal"]},"state":"running"}"#,
    );
    assert_eq!((st, message(&b).as_str()), (200, SUCCESS_MESSAGE), "{b}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&b).expect("json")["result"],
        "success"
    );
    let (st, _, b) = call(a, "POST", "/tcp", r#"{"state":"stopped"}"#);
    assert_eq!(st, 200, "{b}");
    assert!(call(a, "GET", "/tcp", "").2.contains("\"stopped\""));
    {
        let applied = fake.applied.lock().expect("lock");
        assert_eq!(applied.len(), 2);
        assert_eq!(applied[0].1.probe, Some(vec!["tcp_abnormal".to_owned()]));
        assert_eq!(applied[1].1.state, Some(DesiredState::Stopped));
    }

    // 400s name the key.
    let (st, _, b) = call(a, "PUT", "/tcp", r#"json={"params":{"report_period":601}}"#);
    assert_eq!(st, 400);
    assert!(
        message(&b).contains("params.report_period") && message(&b).contains("5..=600"),
        "{b}"
    );
    let (st, _, b) = call(a, "PUT", "/tcp", "json={bad");
    assert_eq!(st, 400);
    assert!(message(&b).contains("invalid JSON"), "{b}");
    let (st, _, b) = call(a, "PUT", "/tcp", r#"{"colour":"red"}"#);
    assert_eq!(st, 400);
    assert!(message(&b).contains("`colour`"), "{b}");
    // A refusal of the manager is a 400 with its key.
    let (st, _, b) = call(a, "PUT", "/tcp", r#"{"cmd":{"probe":["nope"]}}"#);
    assert_eq!(st, 400);
    assert!(message(&b).contains("cmd.probe"), "{b}");

    // 404s.
    assert_eq!(call(a, "GET", "/nope", "").0, 404);
    assert_eq!(call(a, "PUT", "/nope", r#"{"state":"running"}"#).0, 404);
    assert_eq!(call(a, "GET", "/tcp/x", "").0, 404);

    // 405 with Allow.
    let (st, h, _) = call(a, "DELETE", "/tcp", "");
    assert_eq!(st, 405);
    assert!(
        h.to_ascii_lowercase().contains("allow: get, put, post"),
        "{h}"
    );
    let (st, h, _) = call(a, "PUT", "/", "{}");
    assert_eq!(st, 405);
    assert!(h.to_ascii_lowercase().contains("allow: get"), "{h}");
    assert_eq!(call(a, "PUT", "/status", "{}").0, 405);

    // Requests without a path of their own (authority and asterisk forms).
    for (method, target) in [("CONNECT", "127.0.0.1:1"), ("OPTIONS", "*")] {
        let (st, _, _) = call(a, method, target, "");
        assert!((400..500).contains(&st), "{method} {target}: {st}");
    }
    assert_eq!(call(a, "GET", "/tcp", "").0, 200);

    // Reserved names.
    let (st, _, b) = call(a, "GET", "/status", "");
    assert_eq!(st, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&b).expect("json")["series"],
        7
    );
    let (st, _, b) = call(a, "GET", "/metrics", "");
    assert_eq!((st, b.as_str()), (200, "gala_gopher_test 1\n"));

    // Nothing more was applied by the refused requests.
    assert_eq!(fake.applied.lock().expect("lock").len(), 2);
}

#[test]
fn oversized_bodies_are_a_400_and_the_server_keeps_serving() {
    let srv = Running::start(Api::new(Arc::new(Fake::default())), None);
    let big = format!(
        "json={{\"state\":\"running\",\"x\":\"{}\"}}",
        "a".repeat(MAX_BODY)
    );
    let (st, _, b) = call(srv.addr, "PUT", "/tcp", &big);
    assert_eq!(st, 400, "{b}");
    assert!(message(&b).contains("1 MiB"), "{b}");
    // Chunked (no Content-Length) is cut at the limit too.
    let mut s = std::net::TcpStream::connect(srv.addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let chunk = "a".repeat(64 * 1024);
    let mut req = String::from(
        "PUT /tcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..20 {
        req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    req.push_str("0\r\n\r\n");
    let _ = s.write_all(req.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(call(srv.addr, "GET", "/tcp", "").0, 200);
}

#[test]
fn accepted_changes_are_persisted_and_restored() {
    let dir = tempfile::tempdir().expect("tmp");
    let srv = Running::start(
        Api::new(Arc::new(Fake::default())).with_state_dir(dir.path()),
        None,
    );
    assert_eq!(
        call(
            srv.addr,
            "PUT",
            "/tcp",
            r#"json={"state":"stopped","params":{"report_period":30,}}"#
        )
        .0,
        200
    );
    // Refused requests are not kept.
    assert_eq!(
        call(srv.addr, "PUT", "/tcp", r#"{"params":{"report_period":1}}"#).0,
        400
    );
    assert_eq!(
        call(srv.addr, "PUT", "/tcp", r#"{"cmd":{"probe":["nope"]}}"#).0,
        400
    );
    drop(srv);
    let kept = persist::load(dir.path()).expect("load");
    assert_eq!(
        serde_json::Value::Object(kept["tcp"].clone()),
        json!({"state": "stopped", "params": {"report_period": 30}})
    );
    // The next start re-applies them.
    let fresh = Fake::default();
    let r = persist::restore(&fresh, dir.path());
    assert_eq!(r.applied, ["tcp"]);
    let applied = fresh.applied.lock().expect("lock");
    assert_eq!(applied[0].1.state, Some(DesiredState::Stopped));
    assert_eq!(
        applied[0].1.params.as_ref().expect("params")["report_period"],
        json!(30)
    );
}

#[test]
fn restore_skips_unknown_probes_and_ignores_a_corrupt_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join(persist::STATE_FILE);
    std::fs::write(
        &f,
        r#"{"version":1,"probes":{"gone":{"state":"running"},"tcp":{"state":"bogus"},"baseinfo":{"state":"stopped"}}}"#,
    )
    .expect("write");
    let fake = Fake::default();
    let r = persist::restore(&fake, dir.path());
    assert_eq!(r.applied, ["baseinfo"]);
    let skipped: Vec<&str> = r.skipped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(skipped, ["gone", "tcp"]);
    std::fs::write(&f, "{{{").expect("write");
    let r = persist::restore(&fake, dir.path());
    assert!(r.applied.is_empty());
    let e = r.file_error.expect("error");
    assert!(e.contains(&f.display().to_string()), "{e}");
}

#[test]
fn the_unix_socket_is_private_serves_the_router_and_is_removed_at_stop() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("sub/gopher-ctl.sock");
    // A stale socket is replaced.
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale"));
    let socket = UnixSocket::bind(&path).expect("bind");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let api = Api::new(Arc::new(Fake::default()));
    let t = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(serve_unix(socket, api, async move {
            let _ = rx.await;
        }))
        .expect("serve");
    });
    let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let (st, _, b) = raw(&mut s, "PUT", "/tcp", "", br#"{"state":"running"}"#);
    assert_eq!((st, message(&b).as_str()), (200, SUCCESS_MESSAGE));
    let _ = tx.send(());
    t.join().expect("join");
    assert!(!path.exists(), "the socket is removed at stop");
    // Something that is not a socket is left alone.
    std::fs::write(&path, "x").expect("file");
    assert!(UnixSocket::bind(&path).is_err());
}

/// Certificates made with the openssl CLI: a CA, a server cert for
/// 127.0.0.1 and a client cert, both signed by it; and a client cert from
/// another CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let sh = r#"set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=other-ca 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > san.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=client 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile client.ext 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.csr -subj /CN=rogue 2>/dev/null
openssl x509 -req -in rogue.csr -CA other-ca.pem -CAkey other-ca.key -CAcreateserial -out rogue.pem -days 2 -extfile client.ext 2>/dev/null
"#;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(sh)
            .current_dir(dir.path())
            .output()
            .expect("the openssl CLI is needed to make test certificates (install openssl)");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn p(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }
}

/// curl's status code for `url`, or `None` when the connection failed.
fn curl(args: &[&str], url: &str) -> (Option<u16>, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("curl is needed for the TLS tests (install curl)");
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u16>()
        .ok();
    let code = code.filter(|c| *c != 0 && out.status.success());
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn tls_13_serves_and_mutual_tls_refuses_a_client_without_a_valid_certificate() {
    let pki = Pki::new();
    let (key, cert, ca) = (pki.p("server.key"), pki.p("server.pem"), pki.p("ca.pem"));

    // Server-only TLS.
    let config = crate::tls::load(crate::tls::TlsFiles {
        private_key: Some(&key),
        cert_file: Some(&cert),
        ca_file: None,
    })
    .expect("tls config");
    let srv = Running::start(Api::new(Arc::new(Fake::default())), Some(config));
    let url = format!("https://127.0.0.1:{}/tcp", srv.addr.port());
    let cacert = ca.to_string_lossy().into_owned();
    assert_eq!(curl(&["--cacert", &cacert], &url).0, Some(200));
    // TLS 1.2 only: refused.
    let (code, err) = curl(&["--cacert", &cacert, "--tls-max", "1.2"], &url);
    assert_eq!(code, None, "TLS 1.2 must be refused: {err}");
    // Plain HTTP on the TLS port gets nothing.
    assert_eq!(
        curl(&[], &format!("http://127.0.0.1:{}/tcp", srv.addr.port())).0,
        None
    );
    drop(srv);

    // Mutual TLS.
    let config = crate::tls::load(crate::tls::TlsFiles {
        private_key: Some(&key),
        cert_file: Some(&cert),
        ca_file: Some(&ca),
    })
    .expect("mtls config");
    let srv = Running::start(Api::new(Arc::new(Fake::default())), Some(config));
    let url = format!("https://127.0.0.1:{}/tcp", srv.addr.port());
    let (ccert, ckey) = (
        pki.p("client.pem").to_string_lossy().into_owned(),
        pki.p("client.key").to_string_lossy().into_owned(),
    );
    let (code, err) = curl(
        &["--cacert", &cacert, "--cert", &ccert, "--key", &ckey],
        &url,
    );
    assert_eq!(code, Some(200), "{err}");
    let (code, err) = curl(&["--cacert", &cacert], &url);
    assert_eq!(
        code, None,
        "a client without a certificate must be refused: {err}"
    );
    let (rcert, rkey) = (
        pki.p("rogue.pem").to_string_lossy().into_owned(),
        pki.p("rogue.key").to_string_lossy().into_owned(),
    );
    let (code, err) = curl(
        &["--cacert", &cacert, "--cert", &rcert, "--key", &rkey],
        &url,
    );
    assert_eq!(
        code, None,
        "a certificate of another CA must be refused: {err}"
    );
    // The server still serves after the refusals.
    let (code, _) = curl(
        &["--cacert", &cacert, "--cert", &ccert, "--key", &ckey],
        &url,
    );
    assert_eq!(code, Some(200));
}

#[test]
fn tls_load_errors_name_the_key_and_the_file() {
    let pki = Pki::new();
    let (key, cert, ca) = (pki.p("server.key"), pki.p("server.pem"), pki.p("ca.pem"));
    let missing = pki.p("missing.pem");
    let garbage = pki.p("garbage.pem");
    std::fs::write(&garbage, "not pem at all\n").expect("write");
    let load = |k: Option<&Path>, c: Option<&Path>, a: Option<&Path>| {
        crate::tls::load(crate::tls::TlsFiles {
            private_key: k,
            cert_file: c,
            ca_file: a,
        })
        .map(|_| ())
    };
    let cases = [
        (load(None, Some(&cert), None), "private_key", ""),
        (load(Some(&key), None, None), "cert_file", ""),
        (
            load(Some(&missing), Some(&cert), None),
            "private_key",
            "missing.pem",
        ),
        (
            load(Some(&garbage), Some(&cert), None),
            "private_key",
            "garbage.pem",
        ),
        (
            load(Some(&key), Some(&garbage), None),
            "cert_file",
            "garbage.pem",
        ),
        (
            load(Some(&key), Some(&key), None),
            "cert_file",
            "server.key",
        ),
        (
            load(Some(&key), Some(&cert), Some(&missing)),
            "ca_file",
            "missing.pem",
        ),
        (
            load(Some(&key), Some(&cert), Some(&garbage)),
            "ca_file",
            "garbage.pem",
        ),
        // A key that is not the certificate's.
        (
            load(Some(&pki.p("client.key")), Some(&cert), None),
            "cert_file",
            "server.pem",
        ),
    ];
    for (i, (r, key_name, file)) in cases.into_iter().enumerate() {
        let e = r.expect_err(&format!("case {i}"));
        assert_eq!(e.key, key_name, "case {i}: {e}");
        assert!(e.message.contains(file), "case {i}: `{file}` not in {e}");
    }
    load(Some(&key), Some(&cert), Some(&ca)).expect("valid");
}

#[test]
fn start_serves_rest_and_the_socket_with_one_state_file_and_stop_removes_the_socket() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let src = format!(
        "[global]\nrest_api_on = true\nstate_dir = \"{}\"\n[rest_api_server]\nport = {port}\n",
        dir.path().join("state").display()
    );
    let cfg = crate::config::Config::from_toml_str(&src, Path::new("t.toml")).expect("config");
    let sock = dir.path().join("ctl.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let servers = {
        let _in = rt.enter();
        start_at(&cfg, Arc::new(Fake::default()), &sock).expect("start")
    };
    let rt_thread = std::thread::spawn(move || {
        rt.block_on(async {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            servers.stop().await;
        });
    });
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eq!(
        call(addr, "PUT", "/tcp", r#"json={"state":"stopped"}"#).0,
        200
    );
    let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("socket");
    let (st, _, _) = raw(
        &mut s,
        "PUT",
        "/baseinfo",
        "",
        br#"{"params":{"report_period":10}}"#,
    );
    assert_eq!(st, 200);
    let kept = persist::load(&dir.path().join("state")).expect("kept");
    assert_eq!(kept.keys().collect::<Vec<_>>(), ["baseinfo", "tcp"]);
    rt_thread.join().expect("join");
    assert!(!sock.exists(), "the socket is removed at stop");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the REST port is closed at stop"
    );
}
