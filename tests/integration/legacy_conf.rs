//! The default `gala-gopher.conf` of every legacy generation loads unchanged:
//! files of the shape each one shipped (tests/data/config/legacy_v0.conf for
//! 21.09, legacy_v1_shipped.conf for 1.x, legacy_v2.conf for 2.x) pass
//! `check-config`, and the agent starts on them and serves their metrics.
//! To run them here, only the ports and directories are moved into a temp
//! dir (and V0, which had no `logs` section, gets one so that nothing is
//! written under /var/log).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{bin, free_port, http_get, repo, wait_for, Agent, Setup, Tracefs};

fn data(name: &str) -> PathBuf {
    repo().join("tests/data/config").join(name)
}

/// `gala-gopher check-config FILE`: exit code, stdout, stderr.
fn check_config(file: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(bin())
        .arg("check-config")
        .arg(file)
        .output()
        .expect("run gala-gopher check-config");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Replaces every `from` (which must be there: a data file that drifted
/// away from what the test moves would otherwise write outside the temp
/// dir) with `to`.
fn moved(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the legacy config no longer holds `{from}`"
    );
    text.replace(from, to)
}

/// The data file `name` with its ports, directories, broker and whitelist
/// moved into the setup, written as `<setup>/gala-gopher.conf`.
fn prepare(s: &Setup, name: &str) -> PathBuf {
    let d = s.dir.path().display().to_string();
    let mut text = std::fs::read_to_string(data(name)).expect("read the legacy config");
    text = moved(&text, "port = 8888;", &format!("port = {};", s.port));
    text = moved(
        &text,
        "global =\n{\n",
        &format!("global =\n{{\n    meta_dir = \"{d}/meta\";\n    state_dir = \"{d}/state\";\n"),
    );
    if text.contains("port = 9999;") {
        text = moved(&text, "port = 9999;", &format!("port = {};", free_port()));
    }
    if text.contains("127.0.0.1:9092") {
        // A port where nothing listens: the Kafka channels start and retry.
        text = moved(
            &text,
            "127.0.0.1:9092",
            &format!("127.0.0.1:{}", free_port()),
        );
    }
    if text.contains("/opt/gala-gopher/gala-gopher-app.conf") {
        text = moved(
            &text,
            "/opt/gala-gopher/gala-gopher-app.conf",
            &format!("{d}/gala-gopher-app.conf"),
        );
    }
    if text.contains("/var/log/gala-gopher") {
        text = moved(&text, "/var/log/gala-gopher", &format!("{d}/logs"));
    } else {
        text.push_str(&format!(
            "\nlogs =\n{{\n    metric_dir = \"{d}/logs/metrics\";\n    event_dir = \"{d}/logs/event\";\n    \
             meta_dir = \"{d}/logs/meta\";\n    debug_dir = \"{d}/logs/debug\";\n}};\n"
        ));
    }
    let path = s.path("gala-gopher.conf");
    std::fs::write(&path, text).expect("write the config");
    path
}

/// What the agent logged: its stderr, then the file `global.log_file_name`
/// names under `logs.debug_dir` (where 1.x and 2.x configs send the log).
fn agent_log(s: &Setup, agent: &Agent) -> String {
    let file = std::fs::read_to_string(s.path("logs/debug/agent.log")).unwrap_or_default();
    format!("{}{file}", agent.log_text())
}

fn start(s: &Setup, conf: &Path) -> Agent {
    Agent::spawn_in(conf, s.port, &s.path("agent.log"), &[], Tracefs::AsIs)
}

/// Waits until a scrape holds a series of every one of `metrics`.
fn wait_for_series(agent: &Agent, metrics: &[&str]) -> String {
    wait_for(Duration::from_secs(30), "the legacy probes' series", || {
        let expo = agent.scrape();
        metrics
            .iter()
            .all(|m| expo.lines().any(|l| l.starts_with(m)))
            .then_some(expo)
    })
}

#[test]
fn every_generations_shipped_config_passes_check_config_as_it_is() {
    let cases: [(&str, &[&str]); 3] = [
        (
            "legacy_v0.conf",
            &["key `global.log_directory`: ignored (a 21.09 key)"],
        ),
        (
            "legacy_v1_shipped.conf",
            &[
                "key `event.desc_language`: ignored",
                "key `probes[1].name`: `system_infos` is a native probe of the legacy 1.x agent",
                "switched on in its place, with its param: system_cpu, system_meminfo, system_net, system_inode",
                "key `probes[1].param`: `-w /opt/gala-gopher/gala-gopher-app.conf` names the application \
                 whitelist, which does not exist",
            ],
        ),
        (
            "legacy_v2.conf",
            &[
                "key `metric.pod_info_switch`: ignored (a 2.x key)",
                "key `event.desc_language`: ignored",
            ],
        ),
    ];
    for (name, warnings) in cases {
        let file = data(name);
        let (code, out, err) = check_config(&file);
        assert_eq!(code, Some(0), "{name}: stdout:\n{out}\nstderr:\n{err}");
        assert!(out.contains(": OK ("), "{name}: {out}");
        for w in warnings {
            let line = err
                .lines()
                .find(|l| l.contains(w))
                .unwrap_or_else(|| panic!("{name}: no warning holding `{w}` in:\n{err}"));
            assert!(
                line.starts_with(&format!("warning: {}:", file.display())),
                "{name}: a warning names the file and line: {line}"
            );
        }
        assert_eq!(
            err.lines().filter(|l| l.starts_with("warning: ")).count(),
            warnings.len() - usize::from(name == "legacy_v1_shipped.conf"),
            "{name}: exactly the expected warnings:\n{err}"
        );
    }
}

#[test]
fn the_21_09_config_starts_the_agent_with_its_probes() {
    let s = Setup::new(&[]);
    let conf = prepare(&s, "legacy_v0.conf");
    let mut agent = start(&s, &conf);
    let expo = wait_for_series(
        &agent,
        &[
            "gala_gopher_system_meminfo_",
            "gala_gopher_system_vmstat_",
            "gala_gopher_system_tcp_",
        ],
    );
    // system_inode is switched off in the file.
    assert!(
        !expo.contains("gala_gopher_system_inode_"),
        "system_inode is off:\n{expo}"
    );
    let log = agent.log_text();
    assert_eq!(
        log.matches("global.log_directory").count(),
        1,
        "the ignored key is warned about once:\n{log}"
    );
    assert_eq!(agent.stop(), Some(0), "log:\n{}", agent.log_text());
}

#[test]
fn the_1x_config_starts_the_agent_with_system_infos_replaced_and_its_whitelist_loaded() {
    let s = Setup::new(&[]);
    std::fs::write(
        s.path("gala-gopher-app.conf"),
        "# processes to watch\napplication =\n(\n    { comm = \"^redis-server$\"; cmdline = \"\"; },\n    \
         { comm = \"java\"; cmdline = \"kafka\"; }\n);\n",
    )
    .expect("write the whitelist");
    let conf = prepare(&s, "legacy_v1_shipped.conf");
    let mut agent = start(&s, &conf);
    wait_for_series(
        &agent,
        &[
            "gala_gopher_system_cpu_",
            "gala_gopher_system_meminfo_",
            "gala_gopher_system_net_",
            "gala_gopher_system_inode_",
        ],
    );
    let log = agent_log(&s, &agent);
    assert_eq!(
        log.matches("`system_infos` is a native probe of the legacy 1.x agent")
            .count(),
        1,
        "warned once:\n{log}"
    );
    let whitelist = s.path("gala-gopher-app.conf");
    assert!(
        log.lines()
            .any(|l| l.contains("application whitelist loaded")
                && l.contains(&whitelist.display().to_string())
                && l.contains("entries=2")),
        "the whitelist named by -w is loaded:\n{log}"
    );
    // The extend probe `tcp` is switched on but its legacy binary is not
    // installed here: it fails on its own, and the agent keeps serving.
    std::thread::sleep(Duration::from_secs(2));
    let (status, _) = http_get(s.port, "/metrics").expect("scrape after the extend probe failed");
    assert_eq!(status, 200);
    assert_eq!(agent.stop(), Some(0), "log:\n{}", agent.log_text());

    // A whitelist with a bad pattern stops the start, naming its file and line.
    std::fs::write(
        &whitelist,
        "application =\n(\n    { comm = \"ok\"; },\n    { comm = \"redis(\"; cmdline = \"\"; }\n);\n",
    )
    .expect("write a bad whitelist");
    let (code, out, err) = check_config(&conf);
    assert_eq!(code, Some(2), "stdout:\n{out}\nstderr:\n{err}");
    let want = format!(
        "{}:4: key `application[1].comm`: `redis(` is not a valid POSIX extended regular expression",
        whitelist.display()
    );
    assert!(err.contains(&want), "expected `{want}` in:\n{err}");
    let out = Command::new(bin())
        .arg("--config")
        .arg(&conf)
        .output()
        .expect("run gala-gopher");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&want), "expected `{want}` in:\n{err}");
}

#[test]
fn the_2x_config_starts_the_agent() {
    let s = Setup::new(&[]);
    let conf = prepare(&s, "legacy_v2.conf");
    let mut agent = start(&s, &conf);
    // 2.x listed no probes in its config (they were started over its REST
    // API): the agent serves an exposition without probe series.
    let (status, body) = http_get(s.port, "/metrics").expect("scrape");
    assert_eq!(status, 200, "{body}");
    // Its `global.rest_api_on = true` serves the REST API on
    // `rest_api_server.port` (moved to a free port by `prepare`).
    let text = std::fs::read_to_string(&conf).expect("read the prepared config");
    let rest = &text[text
        .find("rest_api_server")
        .expect("a rest_api_server section")..];
    let port: u16 = rest[rest.find("port = ").expect("its port") + 7..]
        .split(';')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .expect("a port number");
    let (status, body) = http_get(port, "/").expect("GET / of the REST API");
    assert_eq!(status, 200, "{body}");
    let log = agent_log(&s, &agent);
    assert!(!log.contains("global.rest_api_on"), "{log}");
    for key in ["metric.pod_info_switch", "event.desc_language"] {
        assert_eq!(log.matches(key).count(), 1, "{key} warned once:\n{log}");
    }
    assert_eq!(agent.stop(), Some(0), "log:\n{}", agent.log_text());
}
