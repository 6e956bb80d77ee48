//! The REST API (:9999, docs/rest-api.md) and TLS of the agent's servers
//! against the real agent: :8888 over TLS and mutual TLS with certificates
//! made here.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{self, wait_for, Setup};

/// `curl args...` with the status code appended: (status, body), or `None`
/// when curl could not get an answer.
fn curl(args: &[&str]) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is needed by the REST tests (scripts/deps.sh installs it)");
    parse_curl(&out.stdout).filter(|_| out.status.success())
}

fn parse_curl(stdout: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(stdout);
    let (body, code) = text.rsplit_once('\n')?;
    let code: u16 = code.trim().parse().ok()?;
    (code != 0).then(|| (code, body.to_owned()))
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made
/// with the openssl CLI.
fn make_certs(dir: &std::path::Path) {
    let sh = r#"set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=operator
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile client.ext
"#;
    let out = Command::new("sh")
        .arg("-c")
        .arg(sh)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is needed to make the test certificates");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_web_server_serves_metrics_over_tls_and_mutual_tls_when_ssl_auth_is_on() {
    let s = Setup::new(&[]);
    let certs = s.path("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    make_certs(&certs);
    let c = |f: &str| certs.join(f).display().to_string();
    let cfg = s.base_config().replacen(
        "bind_addr = \"127.0.0.1\"\n",
        &format!(
            "bind_addr = \"127.0.0.1\"\nssl_auth = true\nprivate_key = \"{}\"\ncert_file = \"{}\"\nca_file = \"{}\"\n",
            c("server.key"),
            c("server.pem"),
            c("ca.pem")
        ),
        1,
    ) + "[[probes]]\nname = \"system_meminfo\"\nparam = \"-t 1\"\n";
    assert!(cfg.contains("ssl_auth = true"), "{cfg}");
    let file = s.path("gala-gopher.toml");
    std::fs::write(&file, &cfg).expect("config");
    // The harness waits for plain HTTP; this agent speaks TLS only.
    let log = std::fs::File::create(s.path("agent.log")).expect("log");
    let mut child = harness::Tracefs::AsIs
        .command(&[], "", &harness::bin())
        .arg("--config")
        .arg(&file)
        .env("GALA_GOPHER_CTL_SOCKET", s.path("ctl.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn gala-gopher");
    let url = format!("https://127.0.0.1:{}/metrics", s.port);
    let (ca, cert, key) = (c("ca.pem"), c("client.pem"), c("client.key"));
    let got = wait_for(Duration::from_secs(20), "metrics over mutual TLS", || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "agent exited ({st}):\n{}",
                std::fs::read_to_string(s.path("agent.log")).unwrap_or_default()
            );
        }
        curl(&["-sS", "--cacert", &ca, "--cert", &cert, "--key", &key, &url])
            .filter(|(st, body)| *st == 200 && body.contains("gala_gopher_system_meminfo_"))
    });
    assert_eq!(got.0, 200);
    // Refused: no client certificate, TLS 1.2, plain HTTP.
    assert_eq!(curl(&["-sS", "--cacert", &ca, &url]), None);
    assert_eq!(
        curl(&[
            "-sS",
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "--tls-max",
            "1.2",
            &url
        ]),
        None
    );
    assert_eq!(
        curl(&["-sS", &format!("http://127.0.0.1:{}/metrics", s.port)]),
        None
    );
    // SIGTERM: a clean stop.
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) of our own child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let st = child.wait().expect("wait");
    assert_eq!(st.code(), Some(0));
}
