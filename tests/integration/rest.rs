//! The REST API (:9999, docs/rest-api.md) against the real agent: the
//! legacy curl examples, start and stop of one probe while the others keep
//! reporting, bad input of every kind, persistence across a restart, TLS and
//! mutual TLS with certificates made here, and a schemathesis fuzz from
//! docs/rest-api.yaml.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{self, free_port, series_value, wait_for, Agent, Setup};

/// A setup whose agent serves the REST API on its own port and its control
/// socket in the setup's directory.
struct Rest {
    s: Setup,
    port: u16,
}

impl Rest {
    fn new() -> Self {
        Self {
            s: Setup::new(&[]),
            port: free_port(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.s.path("gopher-ctl.sock")
    }

    /// The base config with the REST API on, `extra` sections after it, and
    /// three native probes reporting every second.
    fn config(&self, extra: &str) -> String {
        let base = self
            .s
            .base_config()
            .replacen("[global]\n", "[global]\nrest_api_on = true\n", 1);
        let probes: String = ["system_meminfo", "system_vmstat", "system_inode"]
            .iter()
            .map(|p| format!("[[probes]]\nname = \"{p}\"\nparam = \"-t 1\"\nswitch = \"on\"\n"))
            .collect();
        format!(
            "{base}\n[rest_api_server]\nport = {}\nbind_addr = \"127.0.0.1\"\n{extra}\n{probes}",
            self.port
        )
    }

    fn start(&self, config: &str) -> Agent {
        let sock = self.socket();
        let agent = self.s.start_with_env(
            config,
            &[("GALA_GOPHER_CTL_SOCKET", sock.to_str().expect("utf-8 path"))],
        );
        wait_for(Duration::from_secs(15), "the REST API to answer", || {
            curl(&["-sS", &self.url("/")]).filter(|(st, _)| *st == 200)
        });
        agent
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

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

/// A shell command line (a legacy doc's curl, with its port replaced) and
/// the status and body it got.
fn sh_curl(line: &str) -> (u16, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{line} -s -w '\\n%{{http_code}}'"))
        .output()
        .expect("sh");
    parse_curl(&out.stdout).unwrap_or_else(|| {
        panic!(
            "no answer to {line}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn message(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["message"].as_str().unwrap_or_default().to_owned()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn put(r: &Rest, name: &str, body: &str) -> (u16, String) {
    curl(&["-sS", "-X", "PUT", &r.url(&format!("/{name}")), "-d", body])
        .unwrap_or_else(|| panic!("no answer to PUT /{name}"))
}

fn get(r: &Rest, path: &str) -> (u16, String) {
    curl(&["-sS", &r.url(path)]).unwrap_or_else(|| panic!("no answer to GET {path}"))
}

/// Polls the exposition every 200 ms for `d`: the longest time the counter
/// `counter` did not move, and whether `series` was in every scrape.
fn watch(agent: &Agent, counter: &str, series: &str, d: Duration) -> (Duration, bool) {
    let t0 = Instant::now();
    let mut last: Option<(f64, Instant)> = None;
    let mut worst = Duration::ZERO;
    let mut always = true;
    while t0.elapsed() < d {
        let now = Instant::now();
        let e = agent.scrape();
        always &= e.contains(series);
        match (series_value(&e, counter), last) {
            (Some(v), Some((old, since))) if old == v => worst = worst.max(now - since),
            (Some(v), _) => last = Some((v, now)),
            (None, _) => worst = worst.max(now - t0),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (worst, always)
}

#[test]
fn lists_gets_and_answers_the_legacy_curl_examples() {
    let r = Rest::new();
    let agent = r.start(&r.config(""));
    let (st, body) = get(&r, "/");
    assert_eq!(st, 200, "{body}");
    let names: Vec<String> = json(&body)
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    for n in ["system_meminfo", "system_vmstat", "system_inode"] {
        assert!(names.iter().any(|x| x == n), "{n} not in {names:?}");
    }
    let (st, body) = get(&r, "/system_meminfo");
    assert_eq!(st, 200, "{body}");
    let v = json(&body);
    for k in ["cmd", "snoopers", "params", "state"] {
        assert!(v.get(k).is_some(), "`{k}` missing: {body}");
    }
    assert_eq!(v["state"], "running", "{body}");

    // The legacy documentation's commands, with the port of this agent.
    // `tcp` is tcp_link (listed stopped: not in this config); params apply
    // to a stopped probe too and show in its view.
    let p = r.port;
    let (st, body) = sh_curl(&format!(
        "curl -X PUT http://localhost:{p}/tcp -d json='\n{{\n    \"params\": {{\n        \"report_period\": 60,\n        \"sample_period\": 200,\n    }}\n}}'"
    ));
    assert_eq!(
        (st, message(&body).as_str()),
        (200, "New config takes effect"),
        "{body}"
    );
    let tcp = json(&get(&r, "/tcp").1);
    assert_eq!(tcp["params"]["report_period"], 60, "{tcp}");
    assert_eq!(tcp["params"]["sample_period"], 200, "{tcp}");
    // A 2.x tcpprobe sub-probe name selects tcp_link, which collects its
    // data: the eBPF probe starts at run time (the REST API is on, so the
    // agent kept the eBPF capabilities).
    let (st, body) = sh_curl(&format!(
        "curl -X PUT localhost:{p}/tcp -d json='{{\"cmd\":{{\"probe\":[\"tcp_abnormal\"]}},\"state\":\"running\"}}'"
    ));
    assert_eq!(
        (st, message(&body).as_str()),
        (200, "New config takes effect"),
        "{body}"
    );
    wait_for(Duration::from_secs(15), "tcp running", || {
        let v = json(&get(&r, "/tcp").1);
        (v["state"] == "running" && v["cmd"]["probe"] == serde_json::json!(["tcp_link"]))
            .then_some(())
    });
    // A name that is neither a member nor a 2.x sub-probe: 400 naming the key.
    let (st, body) = sh_curl(&format!(
        "curl -X PUT localhost:{p}/tcp -d json='{{\"cmd\":{{\"probe\":[\"tcp_bogus\"]}}}}'"
    ));
    assert_eq!(st, 400, "{body}");
    assert!(message(&body).contains("cmd.probe"), "{body}");
    let (st, body) = sh_curl(&format!("curl -X GET http://localhost:{p}/flamegraph"));
    assert_eq!(st, 404, "{body}");
    let (st, body) = sh_curl(&format!(
        "curl -X PUT http://localhost:{p}/flamegraph -d json='\n{{\n    \"state\": \"running\"\n}}'"
    ));
    assert_eq!(st, 404, "{body}");
    let (st, body) = get(&r, "/status");
    assert_eq!(st, 200, "{body}");
    assert!(json(&body)["series"].as_u64().is_some(), "{body}");
    let (st, body) = get(&r, "/metrics");
    assert_eq!(st, 200);
    assert!(body.contains("gala_gopher_"), "{body}");
    drop(agent);
}

#[test]
fn a_probe_stops_and_starts_while_the_others_keep_reporting() {
    let r = Rest::new();
    let agent = r.start(&r.config(""));
    let other = "gala_gopher_system_vmstat_nr_free_pages{";
    let other_count = "gala_gopher_self_records_accepted_total{probe=\"system_vmstat\",";
    let mine = "gala_gopher_system_meminfo_MemTotal{";
    let mine_count = "gala_gopher_self_records_accepted_total{probe=\"system_meminfo\",";
    wait_for(Duration::from_secs(15), "both probes' series", || {
        let e = agent.scrape();
        (e.contains(other) && e.contains(mine)).then_some(())
    });
    let (st, body) = put(&r, "system_meminfo", r#"json={"state":"stopped"}"#);
    assert_eq!(st, 200, "{body}");
    assert_eq!(json(&get(&r, "/system_meminfo").1)["state"], "stopped");
    std::thread::sleep(Duration::from_millis(500));
    let before = series_value(&agent.scrape(), mine_count).unwrap_or(0.0);
    // system_vmstat (period 1 s) reports the whole time: its count of
    // accepted records never stands still for 3 s, its series never leave.
    let (stall, always) = watch(&agent, other_count, other, Duration::from_secs(5));
    assert!(
        always,
        "a system_vmstat series went missing while system_meminfo stopped"
    );
    assert!(
        stall < Duration::from_secs(3),
        "system_vmstat stalled {stall:?}"
    );
    // The stopped one reports nothing meanwhile.
    let after = series_value(&agent.scrape(), mine_count).unwrap_or(0.0);
    assert_eq!(before, after, "system_meminfo still reported while stopped");
    let (st, body) = put(&r, "system_meminfo", r#"{"state":"running"}"#);
    assert_eq!(st, 200, "{body}");
    wait_for(
        Duration::from_secs(15),
        "system_meminfo reporting again",
        || {
            let e = agent.scrape();
            (json(&get(&r, "/system_meminfo").1)["state"] == "running"
                && series_value(&e, mine_count).unwrap_or(0.0) > after
                && e.contains(mine))
            .then_some(())
        },
    );
    let (stall, always) = watch(&agent, other_count, other, Duration::from_secs(2));
    assert!(
        always && stall < Duration::from_secs(3),
        "system_vmstat after the restart: {stall:?}"
    );
}

#[test]
fn bad_requests_are_refused_with_the_key_and_the_agent_keeps_serving() {
    let r = Rest::new();
    let agent = r.start(&r.config(""));
    let cases: &[(&str, u16, &str)] = &[
        ("json={bad", 400, "invalid JSON"),
        (r#"json={"colour":"red"}"#, 400, "`colour`"),
        (r#"json={"state":"paused"}"#, 400, "`state`"),
        (r#"json={"params":{"report_period":601}}"#, 400, "5..=600"),
        (
            r#"json={"params":{"sample_period":"fast"}}"#,
            400,
            "params.sample_period",
        ),
        (
            r#"json={"snoopers":{"proc_name":[{"comm":"(["}]}}"#,
            400,
            "snoopers.proc_name[0]",
        ),
        (
            r#"json={"snoopers":{"pod_id":["p"]}}"#,
            400,
            "not supported",
        ),
    ];
    for (body, want, text) in cases {
        let (st, reply) = put(&r, "system_meminfo", body);
        assert_eq!(st, *want, "{body}: {reply}");
        let m = message(&reply);
        assert!(m.contains(text), "{body}: `{text}` not in {m}");
    }
    // The out-of-range message names the key and the range.
    let m = message(
        &put(
            &r,
            "system_meminfo",
            r#"json={"params":{"report_period":601}}"#,
        )
        .1,
    );
    assert!(
        m.contains("params.report_period") && m.contains("5..=600"),
        "{m}"
    );
    // 404, 405.
    assert_eq!(
        put(&r, "no_such_probe", r#"json={"state":"running"}"#).0,
        404
    );
    let (st, _) = curl(&["-sS", "-X", "DELETE", &r.url("/system_meminfo")]).expect("answer");
    assert_eq!(st, 405);
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-X",
            "PATCH",
            &r.url("/system_meminfo"),
        ])
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 405") && head.contains("allow: get, put, post"),
        "{head}"
    );
    // An oversized body (2 MiB): refused, and the agent answers after it.
    let big = r.s.path("big.txt");
    std::fs::write(
        &big,
        format!(
            "json={{\"state\":\"running\",\"x\":\"{}\"}}",
            "a".repeat(2 << 20)
        ),
    )
    .expect("write");
    let (st, reply) = curl(&[
        "-sS",
        "-X",
        "PUT",
        &r.url("/system_meminfo"),
        "--data-binary",
        &format!("@{}", big.display()),
    ])
    .expect("answer");
    assert_eq!(st, 400, "{reply}");
    assert!(message(&reply).contains("1 MiB"), "{reply}");
    // Nothing above changed the probe, and everything still serves.
    assert_eq!(json(&get(&r, "/system_meminfo").1)["state"], "running");
    assert!(agent.scrape().contains("gala_gopher_system_meminfo_"));
}

#[test]
fn changes_survive_a_restart_and_the_socket_serves_the_same_api() {
    let r = Rest::new();
    let cfg = r.config("");
    let mut agent = r.start(&cfg);
    assert_eq!(
        put(&r, "system_inode", r#"json={"state":"stopped"}"#).0,
        200
    );
    // The control socket: root only, the same routes.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(r.socket())
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let sock = r.socket();
    let (st, body) = curl(&[
        "-sS",
        "--unix-socket",
        sock.to_str().expect("utf-8"),
        "http://localhost/system_inode",
    ])
    .expect("socket answer");
    assert_eq!(st, 200);
    assert_eq!(json(&body)["state"], "stopped");
    assert_eq!(agent.stop(), Some(0), "{}", agent.log_text());
    assert!(!sock.exists(), "the socket is removed at stop");
    let kept = r.s.path("state/probes.json");
    assert!(kept.exists(), "kept changes in {}", kept.display());

    // The next start: config defaults, then the kept change.
    let agent = r.start(&cfg);
    wait_for(
        Duration::from_secs(10),
        "system_inode stopped again",
        || (json(&get(&r, "/system_inode").1)["state"] == "stopped").then_some(()),
    );
    assert_eq!(json(&get(&r, "/system_meminfo").1)["state"], "running");
    drop(agent);

    // A corrupt state file: logged with its name, and the agent runs its config.
    std::fs::write(&kept, "{ not json").expect("corrupt");
    let agent = r.start(&cfg);
    assert_eq!(json(&get(&r, "/system_inode").1)["state"], "running");
    let log = agent.log_text();
    assert!(log.contains(&kept.display().to_string()), "{log}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made
/// with the openssl CLI.
fn make_certs(dir: &Path) {
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
fn mutual_tls_accepts_a_client_certificate_and_refuses_a_client_without_one() {
    let r = Rest::new();
    let certs = r.s.path("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    make_certs(&certs);
    let c = |f: &str| certs.join(f).display().to_string();
    let extra = format!(
        "ssl_auth = true\nprivate_key = \"{}\"\ncert_file = \"{}\"\nca_file = \"{}\"\n",
        c("server.key"),
        c("server.pem"),
        c("ca.pem")
    );
    // The TLS keys go into [rest_api_server], which config() opens last.
    let cfg = r.config(&extra);
    let sock = r.socket();
    let agent = r.s.start_with_env(
        &cfg,
        &[("GALA_GOPHER_CTL_SOCKET", sock.to_str().expect("utf-8"))],
    );
    let url = format!("https://127.0.0.1:{}/system_meminfo", r.port);
    let (ca, cert, key) = (c("ca.pem"), c("client.pem"), c("client.key"));
    let (st, body) = wait_for(Duration::from_secs(15), "the REST API over mTLS", || {
        curl(&["-sS", "--cacert", &ca, "--cert", &cert, "--key", &key, &url])
    });
    assert_eq!(st, 200, "{body}");
    // The legacy way to change a probe, over mTLS.
    let (st, body) = curl(&[
        "-sS",
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "-X",
        "PUT",
        &url,
        "-d",
        r#"json={"params":{"report_period":30}}"#,
    ])
    .expect("answer");
    assert_eq!(
        (st, message(&body).as_str()),
        (200, "New config takes effect")
    );
    // Without a client certificate: refused at the handshake.
    assert_eq!(curl(&["-sS", "--cacert", &ca, &url]), None);
    // Plain HTTP on the TLS port: no answer.
    assert_eq!(curl(&["-sS", &r.url("/system_meminfo")]), None);
    assert!(agent.scrape().contains("gala_gopher_"));
}

/// schemathesis from the venv that scripts/deps.sh makes (installed here
/// when missing).
fn schemathesis() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| harness::repo().join("target"), PathBuf::from);
    let venv = target.join("schemathesis-venv");
    let st = venv.join("bin/st");
    if !st.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "schemathesis"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot install schemathesis into {} (python3 with venv and PyPI needed; scripts/deps.sh test does it)",
            venv.display()
        );
    }
    st
}

#[test]
fn schemathesis_fuzz_from_the_openapi_file_finds_no_5xx_and_the_agent_keeps_serving() {
    let st = schemathesis();
    let r = Rest::new();
    let agent = r.start(&r.config(""));
    let out = Command::new(&st)
        .arg("run")
        .arg(harness::repo().join("docs/rest-api.yaml"))
        .args(["--url", &r.url("")])
        .args(["--checks", "all"])
        // A schema-valid body can still be refused by the probe (a param it
        // cannot use): 400 is right there.
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", "100", "--seed", "1"])
        .env("NO_COLOR", "1")
        // schemathesis keeps a `.schemathesis/` cache in its working
        // directory: the test's own, not the source tree.
        .current_dir(r.s.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    let summary = text
        .lines()
        .find(|l| l.contains(" generated,"))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    println!("schemathesis: {}", summary.trim());
    let generated: u64 = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in `{summary}`"));
    assert!(generated >= 200, "too few cases: {summary}");
    // Still serving: metrics and the API.
    assert!(agent.scrape().contains("gala_gopher_"));
    assert_eq!(get(&r, "/").0, 200);
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
