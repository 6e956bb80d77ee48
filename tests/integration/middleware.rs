//! The redis and rabbitmq extend probes (extend_probes/, meta/redis.meta,
//! meta/rabbitmq.meta) against the real Debian servers, started here as
//! children of the test with temporary directories and free ports, run by
//! the real agent as `[[extend_probes]]` from the repository's paths.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{free_port, promtool, repo, wait_for, Agent, Helper, Setup};

/// The value of the series of `metric` whose labels include every `labels`
/// pair (`name="value"`).
fn value(expo: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let head = format!("{metric}{{");
    expo.lines()
        .filter(|l| l.starts_with(&head))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The whole line of that series (to read its labels).
fn series_line(expo: &str, metric: &str, labels: &[(&str, &str)]) -> Option<String> {
    let head = format!("{metric}{{");
    expo.lines()
        .filter(|l| l.starts_with(&head))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(str::to_owned)
}

/// Waits until the series has the value `want`; panics with the last scrape.
fn wait_value(agent: &Agent, metric: &str, labels: &[(&str, &str)], want: f64) {
    let t0 = Instant::now();
    loop {
        let expo = agent.scrape();
        if value(&expo, metric, labels) == Some(want) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{metric}{labels:?} never became {want}; it is {:?}; scrape:\n{}\nagent log:\n{}",
            value(&expo, metric, labels),
            expo.lines()
                .filter(|l| l.contains("redis") || l.contains("rabbitmq"))
                .collect::<Vec<_>>()
                .join("\n"),
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The lines of the exposition about `prefix` metrics (HELP, TYPE, series).
fn only(expo: &str, prefix: &str) -> String {
    expo.lines()
        .filter(|l| {
            l.starts_with(prefix)
                || l.starts_with(&format!("# HELP {prefix}"))
                || l.starts_with(&format!("# TYPE {prefix}"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The probes ran all along: never restarted, running now.
fn assert_never_restarted(agent: &Agent, probes: &[&str]) {
    let expo = agent.scrape();
    for p in probes {
        assert_eq!(
            value(
                &expo,
                "gala_gopher_self_probe_restarts_total",
                &[("probe", p)]
            ),
            Some(0.0),
            "probe {p} was restarted; log:\n{}",
            agent.log_text()
        );
        assert_eq!(
            value(
                &expo,
                "gala_gopher_self_probe_state",
                &[("probe", p), ("state", "running")]
            ),
            Some(1.0),
            "probe {p} is not running; log:\n{}",
            agent.log_text()
        );
    }
}

fn probe_path(rel: &str) -> PathBuf {
    let p = repo().join("extend_probes").join(rel);
    assert!(p.exists(), "{} is missing", p.display());
    p
}

fn wait_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    wait_for(Duration::from_secs(90), what, || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{what}: the server exited ({st}); its output:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    });
}

fn kill(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) of a process (or group) this test started.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn alive(pid: i32) -> bool {
    !crate::harness::live_pids(&[pid]).is_empty()
}

// ------------------------------------------------------------------ redis --

/// A redis-server of the test: own port, own temp dir, stopped by PID.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .args(["--bind", "127.0.0.1", "--daemonize", "no"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server is required (Debian package redis-server; scripts/deps.sh)");
        let mut r = Self {
            child,
            port,
            _dir: dir,
        };
        wait_port(port, "redis-server to listen", &mut r.child, &log);
        r
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that answers every connection with an HTTP response: not RESP.
fn not_redis() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    port
}

/// An HTTP server that answers every request 200 with a body that is not JSON.
fn not_json() -> u16 {
    use std::io::Read as _;
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 9\r\nConnection: close\r\n\r\n<html>hi!",
            );
        }
    });
    port
}

#[test]
fn redis_probe_reports_clients_and_info_and_survives_bad_servers() {
    let redis = Redis::start();
    let port = redis.port.to_string();
    let closed = free_port();
    let garbage = not_redis();
    let mut clients = Helper::python(
        None,
        &repo().join("tests/data/middleware/redis_clients.py"),
        &[port.as_str(), "3"],
    );
    clients.expect("ready");

    // Discovery from /proc finds this server and a second one without -s.
    let second = Redis::start();
    let out = Command::new("python3")
        .arg(probe_path("redis/redis_probe.py"))
        .arg("--once")
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("|redis_server|127.0.0.1|{port}|"))
            && text.contains(&format!("|redis_server|127.0.0.1|{}|", second.port)),
        "discovery did not find redis on {port} and {}: {text}\n{}",
        second.port,
        String::from_utf8_lossy(&out.stderr)
    );
    drop(second);

    let s = Setup::new(&[]);
    let probe = probe_path("redis/redis_probe.py");
    let cfg = format!(
        "{base}
[[extend_probes]]
name = \"redis\"
command = \"python3 {probe}\"
param = \"-t 1 -s 127.0.0.1:{port}\"
switch = \"auto\"
start_check = \"grep -slx redis-server /proc/[0-9]*/comm | wc -l\"

[[extend_probes]]
name = \"redis_bad\"
command = \"python3 {probe}\"
param = \"-t 1 -s 127.0.0.1:{closed},127.0.0.1:{garbage}\"
switch = \"on\"
",
        base = s.base_config(),
        probe = probe.display()
    );
    let agent = s.start(&cfg);
    let srv = [("server_ip", "127.0.0.1"), ("server_port", port.as_str())];
    let cli = [
        ("server_ip", "127.0.0.1"),
        ("server_port", port.as_str()),
        ("client_ip", "127.0.0.1"),
    ];

    // 3 workers + the blocked client + the probe's own connection.
    wait_value(
        &agent,
        "gala_gopher_redis_server_connected_clients",
        &srv,
        5.0,
    );
    wait_value(&agent, "gala_gopher_redis_server_up", &srv, 1.0);
    wait_value(
        &agent,
        "gala_gopher_redis_server_blocked_clients",
        &srv,
        1.0,
    );
    wait_value(&agent, "gala_gopher_redis_server_keys", &srv, 3.0);
    wait_value(
        &agent,
        "gala_gopher_redis_server_keyspace_hits_total",
        &srv,
        3.0,
    );
    wait_value(
        &agent,
        "gala_gopher_redis_server_keyspace_misses_total",
        &srv,
        3.0,
    );
    // The probe leaves itself out of the client table.
    wait_value(&agent, "gala_gopher_redis_client_connections", &cli, 4.0);
    wait_value(
        &agent,
        "gala_gopher_redis_client_blocked_connections",
        &cli,
        1.0,
    );
    let expo = agent.scrape();
    let line = series_line(&expo, "gala_gopher_redis_client_connections", &cli).unwrap();
    assert!(
        line.contains("client_names=\"blocker,worker-0,worker-1,worker-2\""),
        "{line}"
    );
    assert!(
        line.contains("blpop"),
        "the blocked client's command: {line}"
    );
    let line = series_line(&expo, "gala_gopher_redis_server_up", &srv).unwrap();
    assert!(
        line.contains("version=\"") && line.contains("role=\"master\""),
        "{line}"
    );
    let (code, lint) = promtool(&only(&expo, "gala_gopher_redis_"));
    assert_eq!(code, 0, "promtool on the redis metrics:\n{lint}");

    // Servers that are down or not redis: up 0, one clear line each, the
    // probe and the agent go on.
    let closed_s = closed.to_string();
    let garbage_s = garbage.to_string();
    wait_value(
        &agent,
        "gala_gopher_redis_server_up",
        &[("server_port", closed_s.as_str())],
        0.0,
    );
    wait_value(
        &agent,
        "gala_gopher_redis_server_up",
        &[("server_port", garbage_s.as_str())],
        0.0,
    );
    let log = wait_for(Duration::from_secs(10), "the probe's errors", || {
        let log = agent.log_text();
        (log.contains(&format!(
            "redis_probe: cannot connect to redis at 127.0.0.1:{closed}: Connection refused"
        )) && log.contains(&format!(
            "redis at 127.0.0.1:{garbage} sent 'HTTP/1.1 400 Bad Request' where a RESP reply was expected"
        )))
        .then_some(log)
    });
    assert!(!log.contains("Traceback"), "a traceback in the log:\n{log}");

    // The clients leave: the counts follow.
    drop(clients);
    wait_value(
        &agent,
        "gala_gopher_redis_server_connected_clients",
        &srv,
        1.0,
    );
    wait_value(
        &agent,
        "gala_gopher_redis_server_blocked_clients",
        &srv,
        0.0,
    );
    assert!(
        !agent.log_text().contains("Traceback"),
        "a traceback in the log"
    );
    assert_never_restarted(&agent, &["redis", "redis_bad"]);
    drop(agent);
}

#[test]
fn redis_probe_authenticates_from_the_environment_or_a_file() {
    const PASSWORD: &str = "s3cret-pw-of-the-test";
    let redis = Redis::start_with(&["--requirepass", PASSWORD]);
    let port = redis.port.to_string();
    let s = Setup::new(&[]);
    let wrong = s.path("wrong.pw");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let right = s.path("right.pw");
    std::fs::write(&right, format!("{PASSWORD}\n")).unwrap();
    let probe = probe_path("redis/redis_probe.py");
    let cfg = format!(
        "{base}
[[extend_probes]]
name = \"redis_env\"
command = \"python3 {probe}\"
param = \"-t 1 -s 127.0.0.1:{port}\"
switch = \"on\"

[[extend_probes]]
name = \"redis_file\"
command = \"python3 {probe}\"
param = \"-t 1 -s localhost:{port} --password-file {right}\"
switch = \"on\"

[[extend_probes]]
name = \"redis_wrong\"
command = \"python3 {probe}\"
param = \"-t 1 -s [::ffff:127.0.0.1]:{port} --password-file {wrong}\"
switch = \"on\"
",
        base = s.base_config(),
        probe = probe.display(),
        right = right.display(),
        wrong = wrong.display(),
    );
    // The password reaches the first probe through the agent's environment
    // (as from a unit's EnvironmentFile=), the others through their files.
    let agent = s.start_with_env(&cfg, &[("REDIS_PASSWORD", PASSWORD)]);
    let up = |host: &'static str| [("server_ip", host), ("server_port", port.as_str())];
    wait_value(&agent, "gala_gopher_redis_server_up", &up("127.0.0.1"), 1.0);
    wait_value(&agent, "gala_gopher_redis_server_up", &up("localhost"), 1.0);
    wait_value(
        &agent,
        "gala_gopher_redis_server_up",
        &up("::ffff:127.0.0.1"),
        0.0,
    );
    // Two probes connected at once at most: the server sees them.
    let expo = agent.scrape();
    let n = value(
        &expo,
        "gala_gopher_redis_server_connected_clients",
        &up("127.0.0.1"),
    )
    .unwrap();
    assert!((1.0..=3.0).contains(&n), "connected_clients {n}");
    let log = wait_for(Duration::from_secs(10), "the WRONGPASS error", || {
        let log = agent.log_text();
        log.contains(&format!(
            "redis_probe: redis at ::ffff:127.0.0.1:{port} answered AUTH with an error: WRONGPASS"
        ))
        .then_some(log)
    });
    assert!(
        !log.contains(PASSWORD),
        "the password is in the agent's log:\n{log}"
    );
    assert_never_restarted(&agent, &["redis_env", "redis_file", "redis_wrong"]);
}

// --------------------------------------------------------------- rabbitmq --

/// A child killed (by PID) and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// epmd and rabbitmq-server of the test, everything under a temp dir; both
/// stopped by PID on drop.
struct Rabbit {
    server: Child,
    _epmd: Killed,
    amqp_port: u16,
    api_port: u16,
    _dir: tempfile::TempDir,
}

impl Rabbit {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["home", "mnesia", "log"] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let (amqp_port, dist_port, epmd_port, api_port) =
            (free_port(), free_port(), free_port(), free_port());
        std::fs::write(d.join("enabled_plugins"), "[rabbitmq_management].\n").expect("plugins");
        std::fs::write(
            d.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{amqp_port}\n\
                 management.tcp.port = {api_port}\n\
                 management.tcp.ip = 127.0.0.1\n\
                 collect_statistics_interval = 1000\n"
            ),
        )
        .expect("conf");
        let epmd_log = d.join("epmd.log");
        let epmd = Command::new("epmd")
            .args(["-port", &epmd_port.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&epmd_log).expect("log"))
            .stderr(std::fs::File::create(d.join("epmd.err")).expect("log"))
            .spawn()
            .expect("epmd is required (Debian package erlang-base, with rabbitmq-server)");
        let mut epmd = Killed(epmd);
        wait_port(epmd_port, "epmd to listen", &mut epmd.0, &epmd_log);
        let log = d.join("rabbitmq.out");
        let server = {
            use std::os::unix::process::CommandExt as _;
            let mut c = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
            c.env("HOME", d.join("home"))
                .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
                .env("RABBITMQ_LOG_BASE", d.join("log"))
                .env(
                    "RABBITMQ_NODENAME",
                    format!("rabbit-{}@localhost", std::process::id()),
                )
                .env("RABBITMQ_NODE_PORT", amqp_port.to_string())
                .env("RABBITMQ_DIST_PORT", dist_port.to_string())
                .env("ERL_EPMD_PORT", epmd_port.to_string())
                .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
                .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).expect("log"))
                .stderr(std::fs::File::create(d.join("rabbitmq.err")).expect("log"));
            c.spawn().expect(
                "/usr/lib/rabbitmq/bin/rabbitmq-server is required (Debian package rabbitmq-server)",
            )
        };
        let mut r = Self {
            _epmd: epmd,
            server,
            amqp_port,
            api_port,
            _dir: dir,
        };
        wait_port(
            api_port,
            "the management API to listen",
            &mut r.server,
            &log,
        );
        wait_port(amqp_port, "the AMQP listener", &mut r.server, &log);
        r
    }

    /// beam.smp: the child of the rabbitmq-server script.
    fn beam(&self) -> Option<i32> {
        let me = self.server.id().to_string();
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat.rsplit(')').next()?.split_whitespace().nth(1)?;
            (ppid == me).then_some(pid)
        })
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let group = i32::try_from(self.server.id()).expect("pid");
        if let Some(beam) = self.beam() {
            kill(beam, libc::SIGTERM);
            let t0 = Instant::now();
            while alive(beam) && t0.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Whatever is left of the server's process group.
        kill(-group, libc::SIGKILL);
        let _ = self.server.wait();
        // epmd goes after the node (field order of the drop).
    }
}

#[test]
fn rabbitmq_probe_reports_clients_queues_and_node_health() {
    let rabbit = Rabbit::start();
    let amqp = rabbit.amqp_port.to_string();
    let api = rabbit.api_port.to_string();
    let client_port = free_port().to_string();
    let mut client = Helper::python(
        None,
        &repo().join("tests/data/middleware/amqp_client.py"),
        &[amqp.as_str(), "mw-queue", "5", client_port.as_str()],
    );
    client.expect("ready");

    let closed = free_port();
    let html = not_json();
    let s = Setup::new(&[]);
    let probe = probe_path("rabbitmq/rabbitmq_probe.py");
    let cfg = format!(
        "{base}
[[extend_probes]]
name = \"rabbitmq\"
command = \"python3 {probe}\"
param = \"-t 1 -u http://127.0.0.1:{api}\"
switch = \"auto\"
start_check = \"pgrep -c -f '[b]eam.smp.* rabbit'\"

[[extend_probes]]
name = \"rabbitmq_down\"
command = \"python3 {probe}\"
param = \"-t 1 -u http://127.0.0.1:{closed},http://127.0.0.1:{html}\"
switch = \"on\"
",
        base = s.base_config(),
        probe = probe.display()
    );
    let agent = s.start(&cfg);
    let api_keys = [("server_ip", "127.0.0.1"), ("server_port", api.as_str())];
    let client_keys = [
        ("server_ip", "127.0.0.1"),
        ("server_port", amqp.as_str()),
        ("client_ip", "127.0.0.1"),
        ("client_port", client_port.as_str()),
    ];
    let queue_keys = [
        ("server_port", api.as_str()),
        ("vhost", "/"),
        ("queue", "mw-queue"),
    ];
    wait_value(&agent, "gala_gopher_rabbitmq_server_up", &api_keys, 1.0);
    wait_value(
        &agent,
        "gala_gopher_rabbitmq_client_channels",
        &client_keys,
        1.0,
    );
    wait_value(
        &agent,
        "gala_gopher_rabbitmq_queue_messages_ready",
        &queue_keys,
        5.0,
    );
    wait_value(
        &agent,
        "gala_gopher_rabbitmq_queue_messages_unacknowledged",
        &queue_keys,
        0.0,
    );
    wait_value(
        &agent,
        "gala_gopher_rabbitmq_server_connections",
        &api_keys,
        1.0,
    );
    wait_value(
        &agent,
        "gala_gopher_rabbitmq_server_messages_ready",
        &api_keys,
        5.0,
    );
    let expo = agent.scrape();
    let line = series_line(&expo, "gala_gopher_rabbitmq_client_channels", &client_keys).unwrap();
    for want in [
        "user=\"guest\"",
        "vhost=\"/\"",
        "state=\"running\"",
        "client_product=\"gala-gopher-test\"",
        "connection_name=\"middleware-test\"",
    ] {
        assert!(line.contains(want), "{want} missing in {line}");
    }
    let node = format!("rabbit-{}@localhost", std::process::id());
    let node_keys = [("server_port", api.as_str()), ("node", node.as_str())];
    let line =
        series_line(&expo, "gala_gopher_rabbitmq_node_fd_used", &node_keys).unwrap_or_else(|| {
            panic!(
                "no node series for {node}:\n{}",
                only(&expo, "gala_gopher_rabbitmq_node")
            )
        });
    assert!(line.contains(&format!("amqp_port=\"{amqp}\"")), "{line}");
    assert!(value(&expo, "gala_gopher_rabbitmq_node_fd_used", &node_keys).unwrap() > 0.0);
    assert!(
        value(
            &expo,
            "gala_gopher_rabbitmq_node_mem_used_bytes",
            &node_keys
        )
        .unwrap()
            > 0.0
    );
    assert!(
        value(
            &expo,
            "gala_gopher_rabbitmq_node_disk_free_bytes",
            &node_keys
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        value(&expo, "gala_gopher_rabbitmq_node_mem_alarm", &node_keys),
        Some(0.0)
    );
    assert_eq!(
        value(
            &expo,
            "gala_gopher_rabbitmq_node_disk_free_alarm",
            &node_keys
        ),
        Some(0.0)
    );
    assert!(
        value(
            &expo,
            "gala_gopher_rabbitmq_client_received_bytes_total",
            &client_keys
        )
        .unwrap()
            > 0.0
    );
    let (code, lint) = promtool(&only(&expo, "gala_gopher_rabbitmq_"));
    assert_eq!(code, 0, "promtool on the rabbitmq metrics:\n{lint}");

    // The API that is not there: up 0 and a line naming the URL and the plugin.
    let closed_s = closed.to_string();
    wait_value(
        &agent,
        "gala_gopher_rabbitmq_server_up",
        &[("server_port", closed_s.as_str())],
        0.0,
    );
    let log = wait_for(Duration::from_secs(10), "the probe's error", || {
        let log = agent.log_text();
        log.contains(&format!(
            "rabbitmq_probe: cannot reach the RabbitMQ management API at http://127.0.0.1:{closed}/api/overview: Connection refused (is the rabbitmq_management plugin enabled"
        ))
        .then_some(log)
    });
    assert!(!log.contains("Traceback"), "a traceback in the log:\n{log}");
    wait_value(
        &agent,
        "gala_gopher_rabbitmq_server_up",
        &[("server_port", html.to_string().as_str())],
        0.0,
    );
    wait_for(Duration::from_secs(10), "the not-JSON error", || {
        agent
            .log_text()
            .contains(&format!(
                "rabbitmq_probe: http://127.0.0.1:{html}/api/overview answered something that is not JSON"
            ))
            .then_some(())
    });

    // The broker goes away: the probe says so and goes on, the agent too.
    drop(client);
    drop(rabbit);
    wait_value(&agent, "gala_gopher_rabbitmq_server_up", &api_keys, 0.0);
    assert!(
        agent.log_text().contains(&format!(
            "cannot reach the RabbitMQ management API at http://127.0.0.1:{api}/api/overview"
        )),
        "no error for the stopped broker:\n{}",
        agent.log_text()
    );
    assert!(!agent.log_text().contains("Traceback"));
    assert_never_restarted(&agent, &["rabbitmq", "rabbitmq_down"]);
}
