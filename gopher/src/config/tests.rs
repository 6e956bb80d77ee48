use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use super::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(path: &Path) -> Config {
    match Config::load(path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// A source path whose directory has no `../meta`, so meta_dir takes the installed default.
const SRC: &str = "/cfg/gala-gopher.toml";
const CONF: &str = "/cfg/gala-gopher.conf";

fn toml_ok(src: &str) -> Config {
    match Config::from_toml_str(src, Path::new(SRC)) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn toml_err(src: &str) -> Vec<String> {
    match Config::from_toml_str(src, Path::new(SRC)) {
        Ok(c) => panic!("unexpectedly valid: {c:?}"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

fn conf_err(src: &str) -> Vec<String> {
    match Config::from_libconfig_str(src, Path::new(CONF)) {
        Ok(c) => panic!("unexpectedly valid: {c:?}"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

fn probe(name: &str, param: &str, switch: Switch) -> ProbeConf {
    ProbeConf {
        name: name.into(),
        param: param.into(),
        switch,
        library: None,
        hang_timeout_secs: None,
        interval: None,
        snoopers: None,
        start_check: None,
        check_type: CheckType::Count,
    }
}

#[test]
fn the_shipped_configs_load_and_agree() {
    let toml = load(&repo().join("config/gala-gopher.toml"));
    let conf = load(&repo().join("config/gala-gopher.conf"));
    assert_ne!(toml.source, conf.source);
    assert_eq!(
        Config {
            source: PathBuf::new(),
            ..toml.clone()
        },
        Config {
            source: PathBuf::new(),
            ..conf
        }
    );

    // The shipped TOML is the defaults plus the four system probes and
    // tcp_link, then the LB and DNS probes switched auto, each with a start
    // check that counts its server's processes, reading the meta files of
    // the source tree.
    let auto = |name: &str, check: &str| ProbeConf {
        start_check: Some(check.into()),
        ..probe(name, "-t 5", Switch::Auto)
    };
    let want = Config {
        source: repo().join("config/gala-gopher.toml"),
        global: Global {
            meta_dir: repo().join("meta"),
            ..Global::default()
        },
        probes: [
            "system_meminfo",
            "system_vmstat",
            "system_inode",
            "system_tcp",
            "tcp_link",
        ]
        .iter()
        .map(|n| probe(n, "-t 5", Switch::On))
        .chain([
            auto("nginx_link", "grep -slx nginx /proc/[0-9]*/comm | wc -l"),
            auto(
                "haproxy_link",
                "grep -slx haproxy /proc/[0-9]*/comm | wc -l",
            ),
            auto(
                "ipvs_link",
                "grep -c . /proc/net/ip_vs 2>/dev/null || echo 0",
            ),
            auto(
                "dnsmasq_link",
                "grep -slx dnsmasq /proc/[0-9]*/comm | wc -l",
            ),
        ])
        .collect(),
        extend_probes: ["redis", "rabbitmq"]
            .iter()
            .map(|n| {
                let (param, comm) = match *n {
                    "redis" => ("-t 5", "redis-server"),
                    _ => ("-t 5 -u http://127.0.0.1:15672", "beam.smp"),
                };
                ExtendProbeConf {
                    name: (*n).into(),
                    command: format!("/usr/libexec/gala-gopher/extend_probes/{n}_probe.py"),
                    param: param.into(),
                    switch: Switch::Auto,
                    start_check: Some(format!("grep -slx {comm} /proc/[0-9]*/comm | wc -l")),
                    check_type: CheckType::Count,
                    ipc: None,
                    snoopers: None,
                }
            })
            .collect(),
        ..Config::default()
    };
    assert_eq!(toml, want);
    assert_eq!(toml.metric.out_channel, OutChannel::WebServer);
    assert_eq!(toml.event.out_channel, OutChannel::Logs);
    assert_eq!(toml.meta.out_channel, OutChannel::Logs);
}

#[test]
fn defaults() {
    let c = Config::default();
    assert_eq!(
        c.metric,
        Channel {
            out_channel: OutChannel::WebServer,
            kafka_topic: "gala_gopher".into()
        }
    );
    assert_eq!(
        c.meta,
        Channel {
            out_channel: OutChannel::Logs,
            kafka_topic: "gala_gopher_metadata".into()
        }
    );
    assert_eq!(
        (
            c.event.out_channel,
            c.event.kafka_topic.as_str(),
            c.event.timeout
        ),
        (OutChannel::Logs, "gala_gopher_event", 600)
    );
    assert_eq!(
        (
            c.imdb.max_tables_num,
            c.imdb.max_records_num,
            c.imdb.max_metrics_num,
            c.imdb.record_timeout
        ),
        (1024, 1024, 64, 60)
    );
    assert_eq!(
        (c.web_server.port, c.web_server.bind_addr),
        (8888, IpAddr::V4(Ipv4Addr::LOCALHOST))
    );
    assert_eq!(c.rest_api_server.port, 9999);
    assert_eq!(c.kafka.kafka_broker, "localhost:9092");
    assert_eq!(c.logs.metric_dir, Path::new("/var/log/gala-gopher/metrics"));
    assert_eq!((c.logs.max_file_size_mb, c.logs.max_files), (16, 5));
    assert_eq!(
        (
            c.supervisor.restart_max,
            c.supervisor.restart_backoff_ms,
            c.supervisor.stop_grace_ms
        ),
        (3, 1000, 5000)
    );
    assert_eq!(c.global.log_level, "info");
    assert_eq!(c.global.state_dir, Path::new("/var/lib/gala-gopher"));
    assert_eq!(c.global.pin_path, Path::new("/sys/fs/bpf/gala-gopher"));
    assert_eq!(c.validate(), Ok(()));
    // An empty file is the defaults.
    assert_eq!(
        toml_ok(""),
        Config {
            source: SRC.into(),
            ..Config::default()
        }
    );
}

#[test]
fn a_legacy_v1_conf_with_every_section_loads() {
    let path = repo().join("tests/data/config/legacy_v1.conf");
    let c = load(&path);
    assert_eq!(c.global.log_level, "debug");
    assert_eq!(c.global.log_file_name.as_deref(), Some("gopher.log"));
    assert!(c.global.rest_api_on);
    assert_eq!(
        c.metric,
        Channel {
            out_channel: OutChannel::Kafka,
            kafka_topic: "gala_gopher".into()
        }
    );
    assert_eq!(c.event.out_channel, OutChannel::Kafka);
    assert_eq!(c.meta.out_channel, OutChannel::Off);
    assert_eq!(c.imdb.max_records_num, 2048);
    assert_eq!(c.web_server.bind_addr, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert!(!c.web_server.ssl_auth);
    assert_eq!(c.web_server.private_key, None);
    assert_eq!(c.kafka.kafka_broker, "10.0.0.1:9092,10.0.0.2:9092");
    assert_eq!(
        (c.kafka.username.as_deref(), c.kafka.password.as_deref()),
        (None, None)
    );
    assert_eq!(
        c.probes,
        [
            probe("system_meminfo", "-t 5", Switch::On),
            probe("system_tcp", "-t 10 -l warn", Switch::Off)
        ]
    );
    assert_eq!(
        c.extend_probes,
        [
            ExtendProbeConf {
                name: "pg_stat".into(),
                command: "python3 /opt/gala-gopher/extend_probes/pg_stat_probe.py".into(),
                param: String::new(),
                switch: Switch::Auto,
                start_check: Some("ps -ef | grep postgres | grep -v grep | wc -l".into()),
                check_type: CheckType::Count,
                ipc: None,
                snoopers: None,
            },
            ExtendProbeConf {
                name: "redis".into(),
                command: "python3 /opt/gala-gopher/extend_probes/redis_probe.py".into(),
                param: "-p 6379".into(),
                switch: Switch::On,
                start_check: None,
                check_type: CheckType::Count,
                ipc: None,
                snoopers: None,
            },
        ]
    );
    assert_eq!(c.locations.line("extend_probes[1].param"), Some(120));
    assert_eq!(c.locations.line("extend_probes[1].nothing"), Some(117));
}

#[test]
fn toml_values_and_passthrough() {
    let c = toml_ok(
        "[global]\nlog_level = \"WARN\"\n[meta]\nout_channel = \"kafka\"\n[event]\nout_channel = \"\"\n\
         [kafka.options]\n\"security.protocol\" = \"sasl_plaintext\"\n\
         [[extend_probes]]\nname = \"x\"\ncommand = \"/bin/x\"\nswitch = \"auto\"\nstart_check = \"echo 1\"\n",
    );
    assert_eq!(c.global.log_level, "warn");
    assert_eq!(
        c.meta,
        Channel {
            out_channel: OutChannel::Kafka,
            kafka_topic: "gala_gopher_metadata".into()
        }
    );
    assert_eq!(c.event.out_channel, OutChannel::Off);
    assert_eq!(
        c.kafka.options.get("security.protocol").map(String::as_str),
        Some("sasl_plaintext")
    );
    assert_eq!(c.extend_probes[0].start_check.as_deref(), Some("echo 1"));
    assert_eq!(c.locations.line("extend_probes[0].start_check"), Some(13));
}

// --- validation rules: exact messages with file, line and key -------------

#[test]
fn port_zero() {
    assert_eq!(
        toml_err(
            "[web_server]\nbind_addr = \"127.0.0.1\"\nport = 0\n[rest_api_server]\nport = 0\n"
        ),
        [
            "/cfg/gala-gopher.toml:3: key `web_server.port`: expected a port 1..65535, got 0",
            "/cfg/gala-gopher.toml:5: key `rest_api_server.port`: expected a port 1..65535, got 0",
        ]
    );
    assert_eq!(
        conf_err("web_server = {\n  port = 0;\n};"),
        ["/cfg/gala-gopher.conf:2: key `web_server.port`: expected a port 1..65535, got 0"]
    );
}

#[test]
fn bad_probe_param() {
    let src = "[[probes]]\nname = \"system_cpu\"\n[[probes]]\nname = \"system_net\"\nparam = \"-t 5\"\n\
               [[probes]]\nname = \"system_tcp\"\nparam = \"-t 0\"\n[[probes]]\nname = \"system_inode\"\nparam = \"-q\"\n";
    assert_eq!(
        toml_err(src),
        [
            "/cfg/gala-gopher.toml:8: key `probes[2].param`: option `-t`: `0` is not a number from 1 to 3600",
            "/cfg/gala-gopher.toml:11: key `probes[3].param`: unknown option `-q` (expected one of -t -s -T -J -O \
             -D -F -P -l -U -L -c -C -d -p -w -n -m)",
        ]
    );
}

#[test]
fn extend_probe_rules() {
    let src = "[[extend_probes]]\nname = \"a\"\ncommand = \"  \"\n\
               [[extend_probes]]\nname = \"b\"\ncommand = \"/bin/b\"\nswitch = \"auto\"\n\
               [[extend_probes]]\nname = \"c\"\ncommand = \"/bin/c\"\nswitch = \"auto\"\nstart_check = \"\"\n";
    assert_eq!(
        toml_err(src),
        [
            "/cfg/gala-gopher.toml:3: key `extend_probes[0].command`: expected a command to run, got an empty string",
            "/cfg/gala-gopher.toml:4: key `extend_probes[1].start_check`: expected a shell command printing a \
             count: switch = \"auto\" starts the probe only when it prints a number > 0",
            "/cfg/gala-gopher.toml:12: key `extend_probes[2].start_check`: expected a shell command printing a \
             count: switch = \"auto\" starts the probe only when it prints a number > 0",
        ]
    );
}

#[test]
fn duplicate_probe_names() {
    let src = "probes = (\n { name = \"system_tcp\"; },\n { name = \"system_cpu\"; },\n { name = \"system_tcp\"; }\n);\n\
               extend_probes = (\n { name = \"system_cpu\"; command = \"/bin/x\"; },\n { name = \"\"; command = \"/bin/y\"; },\n\
               { command = \"/bin/z\"; },\n { name = \"w\"; }\n);";
    assert_eq!(
        conf_err(src),
        [
            "/cfg/gala-gopher.conf:4: key `probes[2].name`: probe `system_tcp` is already declared at probes[0] (line \
             2)",
            "/cfg/gala-gopher.conf:7: key `extend_probes[0].name`: probe `system_cpu` is already declared at \
             probes[1] (line 3)",
            "/cfg/gala-gopher.conf:8: key `extend_probes[1].name`: expected a probe name, got an empty string",
            "/cfg/gala-gopher.conf:9: key `extend_probes[2].name`: expected a probe name, but the entry has no `name`",
            "/cfg/gala-gopher.conf:10: key `extend_probes[3].command`: expected a command to run, but the entry has no \
             `command`",
        ]
    );
}

#[test]
fn zero_limits() {
    let src = "[imdb]\nmax_tables_num = 0\nmax_records_num = 0\nmax_metrics_num = 0\nrecord_timeout = 0\n\
               [logs]\nmax_file_size_mb = 0\nmax_files = 0\n";
    let msg = "expected a number greater than 0, got 0";
    assert_eq!(
        toml_err(src),
        [
            format!("/cfg/gala-gopher.toml:2: key `imdb.max_tables_num`: {msg}"),
            format!("/cfg/gala-gopher.toml:3: key `imdb.max_records_num`: {msg}"),
            format!("/cfg/gala-gopher.toml:4: key `imdb.max_metrics_num`: {msg}"),
            format!("/cfg/gala-gopher.toml:5: key `imdb.record_timeout`: {msg}"),
            format!("/cfg/gala-gopher.toml:7: key `logs.max_file_size_mb`: {msg}"),
            format!("/cfg/gala-gopher.toml:8: key `logs.max_files`: {msg}"),
        ]
    );
}

#[test]
fn other_value_rules() {
    let src = "[global]\nlog_level = \"verbose\"\n[event]\nout_channel = \"web_server\"\n\
               [metric]\nout_channel = \"kafka\"\nkafka_topic = \"\"\n\
               [web_server]\nssl_auth = true\n[kafka]\nkafka_broker = \"\"\ncompression_codec = \"brotli\"\n";
    assert_eq!(
        toml_err(src),
        [
            "/cfg/gala-gopher.toml:2: key `global.log_level`: expected one of trace, debug, info, warn, error, got \
             `verbose`",
            "/cfg/gala-gopher.toml:4: key `event.out_channel`: expected \"logs\", \"kafka\" or \"\" (off), got \
             \"web_server\" (only metrics are served on the web server)",
            "/cfg/gala-gopher.toml:7: key `metric.kafka_topic`: expected a topic name (out_channel is kafka), got an \
             empty string",
            "/cfg/gala-gopher.toml:9: key `web_server.ssl_auth`: `private_key`: expected the path of a PEM private key (ssl_auth is on), got none",
            "/cfg/gala-gopher.toml:11: key `kafka.kafka_broker`: expected a broker address host:port (a channel uses \
             kafka), got an empty string",
            "/cfg/gala-gopher.toml:12: key `kafka.compression_codec`: expected one of none, gzip, snappy, lz4, zstd, \
             got `brotli`",
        ]
    );
    assert_eq!(
        conf_err("rest_api_server = { ssl_auth = \"on\"; };"),
        ["/cfg/gala-gopher.conf:1: key `rest_api_server.ssl_auth`: `private_key`: expected the path of a PEM private key (ssl_auth is on), got none"]
    );
}

#[test]
fn unknown_keys_and_sections() {
    assert_eq!(
        toml_err("[web_server]\nport = 1\nprot = 2\n[global2]\nx = 1\n"),
        [
            "/cfg/gala-gopher.toml:3: key `web_server.prot`: unknown field `prot`, expected one of `port`, \
             `bind_addr`, `ssl_auth`, `private_key`, `cert_file`, `ca_file`, `switch`",
            "/cfg/gala-gopher.toml:4: key `global2`: unknown section `global2`, expected one of global, metric, \
             event, meta, ingress, egress, imdb, web_server, rest_api_server, kafka, logs, supervisor, cgroup, probes, \
             extend_probes",
        ]
    );
    assert_eq!(
        conf_err("probes = (\n { name = \"system_cpu\"; },\n { name = \"system_net\";\n   swich = \"on\"; }\n);"),
        [
            "/cfg/gala-gopher.conf:4: key `probes[1].swich`: unknown field `swich`, expected one of `name`, \
             `param`, `switch`, `library`, `hang_timeout_secs`, `interval`, `snoopers`, `start_check`, \
             `check_type`"
        ]
    );
    assert_eq!(
        conf_err("metric = { out_chanel = \"logs\"; };"),
        ["/cfg/gala-gopher.conf:1: key `metric.out_chanel`: unknown field `out_chanel`, expected one of \
          `out_channel`, `kafka_topic`, `pod_info_switch`"]
    );
}

#[test]
fn wrong_types_and_missing_keys() {
    assert_eq!(
        toml_err("[web_server]\nport = \"8888\"\n[imdb]\nrecord_timeout = -1\n[[probes]]\nparam = \"-t 5\"\n"),
        [
            "/cfg/gala-gopher.toml:2: key `web_server.port`: invalid type: string \"8888\", expected u16",
            "/cfg/gala-gopher.toml:4: key `imdb.record_timeout`: invalid value: integer `-1`, expected u64",
            "/cfg/gala-gopher.toml:5: key `probes[0].name`: expected a probe name, but the entry has no `name`",
        ]
    );
    assert_eq!(
        conf_err("web_server = { bind_addr = \"localhost\"; };\nmetric = { out_channel = \"stdout\"; };\n\
                  probes = ( { name = \"system_cpu\"; switch = \"maybe\"; } );\nlogs = 5;\nextend_probes = { };"),
        [
            "/cfg/gala-gopher.conf:1: key `web_server.bind_addr`: invalid IP address syntax",
            "/cfg/gala-gopher.conf:2: key `metric.out_channel`: expected \"web_server\", \"logs\", \"kafka\" or \"\" \
             (off), got \"stdout\"",
            "/cfg/gala-gopher.conf:3: key `probes[0].switch`: unknown variant `maybe`, expected one of `on`, `off`, \
             `auto`",
            "/cfg/gala-gopher.conf:4: key `logs`: invalid type: integer `5`, expected struct Logs",
            "/cfg/gala-gopher.conf:5: key `extend_probes`: expected a list of groups, found a group",
        ]
    );
}

#[test]
fn syntax_errors() {
    assert_eq!(
        toml_err("[web_server]\nport = = 1\n"),
        ["/cfg/gala-gopher.toml:2: extra `=`, expected nothing"]
    );
    assert_eq!(
        conf_err("web_server = {\n  port = 8888 8889;\n};"),
        ["/cfg/gala-gopher.conf:2: column 15: expected `;` or `,` after setting `port`, found `8889`"]
    );
    assert_eq!(
        conf_err("@include \"more.conf\""),
        ["/cfg/gala-gopher.conf:1: column 1: `@include` is not supported: copy the included settings into this file"]
    );
}

/// The message for an unknown probe name (the list is this build's probes).
fn unknown_probe(name: &str) -> String {
    let known: Vec<&str> = gopher_probes::NATIVE_PROBES
        .iter()
        .map(|d| d.name)
        .chain(gopher_probes_c::BUILTIN.iter().map(|c| c.name))
        .collect();
    format!(
        "expected the name of a probe of this build ({}), got unknown probe `{name}` (a C probe of your own needs \
         `library`; a probe switched off is not checked)",
        known.join(", ")
    )
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    // Five kinds of problems: a bad out_channel does not hide the TLS rule,
    // a bad number does not hide the next keys of its section, and the probe
    // names are checked with their lines.
    let toml = "[global]\nlog_level = \"info\"\n\
                [metric]\nout_channel = \"stdout\"\n\
                [web_server]\nport = 70000\nssl_auth = true\nbind_adr = \"127.0.0.1\"\n\
                [[probes]]\nname = \"no_such_probe\"\n\
                [[probes]]\nname = \"system_cpu\"\nswitch = \"sometimes\"\n";
    let f = "/cfg/gala-gopher.toml";
    assert_eq!(
        toml_err(toml),
        [
            format!(
                "{f}:4: key `metric.out_channel`: expected \"web_server\", \"logs\", \"kafka\" or \"\" (off), got \
                 \"stdout\""
            ),
            format!("{f}:6: key `web_server.port`: invalid value: integer `70000`, expected u16"),
            format!("{f}:7: key `web_server.ssl_auth`: `private_key`: expected the path of a PEM private key (ssl_auth is on), got none"),
            format!(
                "{f}:8: key `web_server.bind_adr`: unknown field `bind_adr`, expected one of `port`, `bind_addr`, \
                 `ssl_auth`, `private_key`, `cert_file`, `ca_file`, `switch`"
            ),
            format!("{f}:10: key `probes[0].name`: {}", unknown_probe("no_such_probe")),
            format!(
                "{f}:13: key `probes[1].switch`: unknown variant `sometimes`, expected one of `on`, `off`, `auto`"
            ),
        ]
    );

    // The same in a legacy gala-gopher.conf.
    let conf = "global = { log_level = \"info\"; };\n\
                metric =\n{\n    out_channel = \"stdout\";\n};\n\
                web_server =\n{\n    port = 70000;\n    ssl_auth = \"on\";\n    bind_adr = \"127.0.0.1\";\n};\n\
                probes =\n(\n    { name = \"no_such_probe\"; },\n    { name = \"system_cpu\";\n      switch = \"sometimes\"; }\n);\n";
    let f = "/cfg/gala-gopher.conf";
    assert_eq!(
        conf_err(conf),
        [
            format!(
                "{f}:4: key `metric.out_channel`: expected \"web_server\", \"logs\", \"kafka\" or \"\" (off), got \
                 \"stdout\""
            ),
            format!("{f}:8: key `web_server.port`: invalid value: integer `70000`, expected u16"),
            format!("{f}:9: key `web_server.ssl_auth`: `private_key`: expected the path of a PEM private key (ssl_auth is on), got none"),
            format!(
                "{f}:10: key `web_server.bind_adr`: unknown field `bind_adr`, expected one of `port`, `bind_addr`, \
                 `ssl_auth`, `private_key`, `cert_file`, `ca_file`, `switch`"
            ),
            format!("{f}:14: key `probes[0].name`: {}", unknown_probe("no_such_probe")),
            format!(
                "{f}:16: key `probes[1].switch`: unknown variant `sometimes`, expected one of `on`, `off`, `auto`"
            ),
        ]
    );

    // The good keys around the bad ones are read.
    let (c, problems) = Config::toml_partial(toml, Path::new(SRC));
    assert_eq!(problems.len(), 6);
    assert!(c.web_server.ssl_auth);
    assert_eq!(c.web_server.port, WebServer::default().port);
    assert_eq!(c.probes.len(), 2);
    assert_eq!(c.probes[1].switch, Switch::On);
}

#[test]
fn unknown_probes_switched_off_or_with_a_library_are_not_refused() {
    let c = toml_ok(
        "[[probes]]\nname = \"legacy_only\"\nswitch = \"off\"\n\
         [[probes]]\nname = \"mine\"\nlibrary = \"/usr/lib/libmine.so\"\n",
    );
    assert_eq!(c.probes.len(), 2);
}

#[test]
fn every_syntax_error_is_reported_and_the_rest_is_still_checked() {
    // libconfig: the reader resumes after each broken setting (left out);
    // the settings read are still checked, on the same line too.
    let conf = "web_server = {\n  port = 12abc;\n  ssl_auth = true;\n};\n\
                imdb = { max_tables_num = 0; record_timeout = on; };\n\
                logs = { max_files = 0 };\n";
    assert_eq!(
        conf_err(conf),
        [
            "/cfg/gala-gopher.conf:2: column 10: invalid number `12abc`",
            "/cfg/gala-gopher.conf:3: key `web_server.ssl_auth`: `private_key`: expected the path of a PEM private key (ssl_auth is on), got none",
            "/cfg/gala-gopher.conf:5: column 47: expected a value, found `on` (strings need double quotes)",
            "/cfg/gala-gopher.conf:5: key `imdb.max_tables_num`: expected a number greater than 0, got 0",
            "/cfg/gala-gopher.conf:6: key `logs.max_files`: expected a number greater than 0, got 0",
        ]
    );
    // TOML: the first error of each line; a value the parser had to guess
    // (line 2) is not checked.
    let toml = "[web_server]\nport = = 1\nssl_auth = true\n[imdb]\nmax_tables_num = 99999999999999999999\n\
                record_timeout = 0\n";
    assert_eq!(
        toml_err(toml),
        [
            "/cfg/gala-gopher.toml:2: extra `=`, expected nothing",
            "/cfg/gala-gopher.toml:3: key `web_server.ssl_auth`: `private_key`: expected the path of a PEM private key (ssl_auth is on), got none",
            "/cfg/gala-gopher.toml:5: key `imdb.max_tables_num`: integer `99999999999999999999` does not fit in 64 \
             bits",
            "/cfg/gala-gopher.toml:6: key `imdb.record_timeout`: expected a number greater than 0, got 0",
        ]
    );
}

#[test]
fn validate_is_pure_and_reports_everything() {
    let mut c = Config::default();
    c.web_server.port = 0;
    c.imdb.record_timeout = 0;
    c.probes.push(probe("system_cpu", "-t", Switch::On));
    let e = match c.validate() {
        Ok(()) => panic!("valid"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        e,
        "key `imdb.record_timeout`: expected a number greater than 0, got 0\n\
         key `web_server.port`: expected a port 1..65535, got 0\n\
         key `probes[0].param`: option `-t` needs a value"
    );
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

fn write(p: &Path, s: &str) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).ok();
    }
    if let Err(e) = std::fs::write(p, s) {
        panic!("{}: {e}", p.display());
    }
}

#[test]
fn meta_dir_resolution() {
    let tmp = tempdir();
    let cfg = tmp.path().join("config/gala-gopher.toml");
    let config_dir = tmp.path().join("config");
    let sibling = tmp.path().join("meta");
    write(&cfg, "");
    // No sibling meta/ directory yet: it is tried first, then the search goes on.
    let c = load(&cfg);
    let MetaDirOrigin::Searched { tried } = &c.meta_dir_origin else {
        panic!("not searched: {:?}", c.meta_dir_origin)
    };
    assert_eq!(tried.first(), Some(&sibling));
    assert_eq!(tried.last(), Some(&PathBuf::from(ETC_META_DIR)));
    assert_ne!(c.global.meta_dir, sibling);
    assert_eq!(c.global.meta_dir, search_meta_dir(Some(&config_dir)).0);
    // The note names every directory tried, in order, and global.meta_dir.
    let note = c.meta_dir_note();
    let list: Vec<String> = tried.iter().map(|d| d.display().to_string()).collect();
    assert!(note.contains(&list.join(", ")), "{note}");
    assert!(
        note.contains("`global.meta_dir` is not set in")
            && note.contains(&cfg.display().to_string()),
        "{note}"
    );
    // A sibling meta/ without .meta files is not used either.
    std::fs::create_dir_all(&sibling).ok();
    assert_ne!(load(&cfg).global.meta_dir, sibling);
    // Running from a source tree: config/gala-gopher.toml -> meta/.
    write(&sibling.join("a.meta"), "");
    assert_eq!(load(&cfg).global.meta_dir, sibling);
    // A relative meta_dir is resolved against the config file's directory,
    // and is used whether or not it holds anything.
    write(&cfg, "[global]\nmeta_dir = \"my-meta\"\n");
    let c = load(&cfg);
    assert_eq!(c.global.meta_dir, tmp.path().join("config/my-meta"));
    assert!(matches!(
        c.meta_dir_origin,
        MetaDirOrigin::Written { line: Some(2) }
    ));
    let note = c.meta_dir_note();
    assert!(
        note.contains(&format!("set by `global.meta_dir` ({}:2)", cfg.display())),
        "{note}"
    );
    write(&cfg, "[global]\nmeta_dir = \"/abs/meta\"\n");
    assert_eq!(load(&cfg).global.meta_dir, Path::new("/abs/meta"));
    // A meta_dir of the wrong type is reported, and the search is used.
    write(&cfg, "[global]\nmeta_dir = 5\n");
    let (c, problems) = Config::load_partial(&cfg);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(c.map(|c| c.global.meta_dir), Some(sibling));
}

#[test]
fn meta_dir_search_order() {
    let cands = |cfg: Option<&str>, exe: Option<&str>| {
        meta_dir_candidates(cfg.map(Path::new), exe.map(Path::new))
    };
    let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
    let (opt, etc) = (RPM_META_DIR, ETC_META_DIR);
    // Installed under a prefix, config in /etc/gala-gopher.
    assert_eq!(
        cands(Some("/etc/gala-gopher"), Some("/usr/bin/gala-gopher")),
        paths(&["/etc/meta", "/usr/share/gala-gopher/meta", opt, etc])
    );
    assert_eq!(
        cands(None, Some("/usr/local/bin/gala-gopher")),
        paths(&["/usr/local/share/gala-gopher/meta", opt, etc])
    );
    // A cargo build, with the config copied out of the source tree.
    assert_eq!(
        cands(Some("/tmp"), Some("/src/gg/target/debug/gala-gopher")),
        paths(&["/meta", "/src/gg/meta", opt, etc])
    );
    assert_eq!(
        cands(
            None,
            Some("/src/gg/target/x86_64-unknown-linux-gnu/release/gala-gopher")
        ),
        paths(&["/src/gg/meta", opt, etc])
    );
    // Any other place of the binary adds nothing.
    assert_eq!(
        cands(
            Some("config"),
            Some("/src/gg/target/debug/deps/gala_gopher-0123")
        ),
        paths(&["meta", opt, etc])
    );
    assert_eq!(cands(Some(""), None), paths(&["../meta", opt, etc]));
    // A directory is listed once.
    assert_eq!(
        cands(Some("/opt/gala-gopher/etc"), None),
        paths(&[opt, etc])
    );
    // The first directory with .meta files wins; the last one when none has any.
    let all = cands(Some("/etc/gala-gopher"), Some("/usr/bin/gala-gopher"));
    let has =
        |dirs: &'static [&'static str]| move |d: &Path| dirs.iter().any(|x| d == Path::new(x));
    assert_eq!(
        pick_meta_dir(&all, has(&["/usr/share/gala-gopher/meta", ETC_META_DIR])),
        Path::new("/usr/share/gala-gopher/meta")
    );
    assert_eq!(
        pick_meta_dir(&all, has(&[RPM_META_DIR, ETC_META_DIR])),
        Path::new(opt)
    );
    assert_eq!(
        pick_meta_dir(&all, has(&["/etc/meta", RPM_META_DIR])),
        Path::new("/etc/meta")
    );
    assert_eq!(pick_meta_dir(&all, has(&[])), Path::new(etc));

    // The same on a real file system: a prefix install found beside the binary.
    let tmp = tempdir();
    let prefix = tmp.path().join("prefix");
    write(&prefix.join("share/gala-gopher/meta/a.meta"), "");
    let found = pick_meta_dir(
        &meta_dir_candidates(
            Some(&tmp.path().join("cfg")),
            Some(&prefix.join("bin/gala-gopher")),
        ),
        has_meta_files,
    );
    assert_eq!(found, prefix.join("share/gala-gopher/meta"));
}

#[test]
fn load_picks_the_format() {
    let tmp = tempdir();
    let conf_text = "web_server = { port = 1234; };";
    let toml_text = "[web_server]\nport = 4321\n";
    for (name, text, port) in [
        ("a.conf", conf_text, 1234),
        ("a.toml", toml_text, 4321),
        ("sniffed-libconfig", conf_text, 1234),
        ("sniffed-toml", toml_text, 4321),
    ] {
        let p = tmp.path().join(name);
        if let Err(e) = std::fs::write(&p, text) {
            panic!("{e}");
        }
        assert_eq!(load(&p).web_server.port, port, "{name}");
        assert_eq!(load(&p).source, p);
    }
    let missing = tmp.path().join("missing.toml");
    let e = match Config::load(&missing) {
        Ok(_) => panic!("loaded a missing file"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.starts_with(&format!(
            "{}: cannot read the config file: ",
            missing.display()
        )),
        "{e}"
    );
}

#[test]
fn kafka_password_is_not_in_debug_output() {
    let c = toml_ok("[kafka]\nusername = \"u\"\npassword = \"s3cret\"\n");
    assert_eq!(c.kafka.password.as_deref(), Some("s3cret"));
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cret") && dbg.contains("<hidden>"), "{dbg}");
}

#[test]
fn legacy_spellings() {
    let c = match Config::from_libconfig_str(
        "global = { log_level = \"ERROR\"; log_file_name = \"\"; rest_api_on = \"on\"; };\n\
         web_server = { ssl_auth = \"OFF\"; ca_file = \"\"; };\n\
         kafka = { kafka_topic = \"old\"; switch = \"on\"; };\n\
         probes = ( { name = \"system_cpu\"; interval = 1; library = \"\"; } );",
        Path::new(CONF),
    ) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.global.log_level, "error");
    assert_eq!(c.global.log_file_name, None);
    assert!(c.global.rest_api_on);
    assert!(!c.web_server.ssl_auth);
    // V0's per-probe interval is the period.
    assert_eq!(
        c.probes,
        [ProbeConf {
            interval: Some(1),
            ..probe("system_cpu", "-t 1", Switch::On)
        }]
    );
}

proptest::proptest! {
    #[test]
    fn loading_never_panics(s in "\\PC*") {
        let _ = Config::from_toml_str(&s, Path::new(SRC));
        let _ = Config::from_libconfig_str(&s, Path::new(CONF));
    }

    #[test]
    fn loading_config_like_text_never_panics(
        parts in proptest::collection::vec(
            proptest::sample::select(vec![
                "[web_server]\n", "port = ", "0", "70000", "\"x\"", "\n", "[[probes]]\n", "name = \"a\"\n",
                "param = \"-t 0\"\n", "web_server = {", "};", "probes = (", "{ name = \"a\"; }", ",", ");",
                "switch = \"auto\"", "[global]\n", "meta_dir = \"m\"\n", "true", "[kafka.options]\n",
            ]),
            0..24,
        )
    ) {
        let s = parts.concat();
        let _ = Config::from_toml_str(&s, Path::new(SRC));
        let _ = Config::from_libconfig_str(&s, Path::new(CONF));
    }
}

#[test]
fn a_broker_list_with_a_bad_port_or_an_empty_entry_is_refused() {
    for (list, bad) in [
        ("10.0.0.1:0", "10.0.0.1:0"),
        ("a:9092,b:70000", "b:70000"),
        ("a:9092,,b:9092", ""),
        ("a:port", "a:port"),
        ("[::1]:0", "[::1]:0"),
    ] {
        let src =
            format!("[metric]\nout_channel = \"kafka\"\n[kafka]\nkafka_broker = \"{list}\"\n");
        let errs = toml_err(&src);
        assert_eq!(errs.len(), 1, "{list}: {errs:?}");
        assert!(
            errs[0].starts_with(
                "/cfg/gala-gopher.toml:4: key `kafka.kafka_broker`: expected host:port"
            ) && errs[0].contains(&format!("got `{bad}`")),
            "{list}: {errs:?}"
        );
    }
    for list in [
        "localhost:9092",
        "10.0.0.5:9092, 10.0.0.6:9092",
        "broker",
        "[::1]:9092",
        "::1",
        "SASL_SSL://kafka.example:9093",
    ] {
        let src =
            format!("[metric]\nout_channel = \"kafka\"\n[kafka]\nkafka_broker = \"{list}\"\n");
        if let Err(e) = Config::from_toml_str(&src, Path::new(SRC)) {
            panic!("{list} refused: {e:?}");
        }
    }
}

/// A legacy config read from text: the config and its warnings as text.
fn conf_ok(src: &str) -> (Config, Vec<String>) {
    match Config::from_libconfig_str(src, Path::new(CONF)) {
        Ok(c) => {
            let w = c.warnings.iter().map(ToString::to_string).collect();
            (c, w)
        }
        Err(e) => panic!("{e}"),
    }
}

fn names(c: &Config) -> Vec<(&str, Switch, &str)> {
    c.probes
        .iter()
        .map(|p| (p.name.as_str(), p.switch, p.param.as_str()))
        .collect()
}

#[test]
fn a_legacy_native_probe_switched_on_is_replaced_by_its_equivalents_with_a_warning() {
    let (c, w) = conf_ok(
        "probes = (\n  { name = \"example\"; param = \"\"; switch = \"off\"; },\n  \
         { name = \"system_infos\";\n    param = \"-t 7 -l warn\"; switch = \"on\"; },\n  \
         { name = \"system_net\"; switch = \"off\"; }\n);",
    );
    assert_eq!(
        names(&c),
        [
            ("example", Switch::Off, ""),
            ("system_infos", Switch::Off, "-t 7 -l warn"),
            ("system_net", Switch::Off, ""),
            ("system_cpu", Switch::On, "-t 7 -l warn"),
            ("system_meminfo", Switch::On, "-t 7 -l warn"),
            ("system_inode", Switch::On, "-t 7 -l warn"),
        ]
    );
    assert_eq!(
        w,
        ["/cfg/gala-gopher.conf:3: key `probes[1].name`: `system_infos` is a native probe of the legacy 1.x agent \
          (CPU, memory, network interface and disk/file-system statistics) that this agent does not have; the \
          probes of this agent that collect the same data are system_cpu, system_meminfo, system_net, \
          system_inode; switched on in its place, with its param: system_cpu, system_meminfo, system_inode; \
          already listed in this file (left as written): system_net. To silence this, replace `system_infos` \
          with those probes"]
    );
    // The result is valid as it is (validate is pure and finds nothing).
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn a_legacy_native_probe_without_an_equivalent_is_not_run_and_an_unknown_one_is_refused() {
    let (c, w) = conf_ok("probes = ( { name = \"event\"; param = \"\"; switch = \"on\"; } );");
    assert_eq!(names(&c), [("event", Switch::Off, "")]);
    assert_eq!(
        w,
        ["/cfg/gala-gopher.conf:1: key `probes[0].name`: `event` is a native probe of the legacy 1.x agent \
          (events read from the system log) that this agent does not have; nothing replaces it, so it is not run"]
    );
    // Switched off, a legacy probe is left alone, without a word.
    let (c, w) = conf_ok("probes = ( { name = \"virtualized_infos\"; switch = \"off\"; } );");
    assert_eq!(names(&c), [("virtualized_infos", Switch::Off, "")]);
    assert!(w.is_empty(), "{w:?}");
    // A name no generation had is still an error, listing this build's probes.
    assert_eq!(
        conf_err("probes = ( { name = \"system_infoz\"; switch = \"on\"; } );"),
        [format!(
            "/cfg/gala-gopher.conf:1: key `probes[0].name`: {}",
            unknown_probe("system_infoz")
        )]
    );
    // Every legacy name of the table is unknown to this agent, and every
    // equivalent it names is one of this agent's probes.
    let all: Vec<&str> = gopher_probes::ALL_NATIVE_PROBES
        .iter()
        .chain(gopher_probes_c::ALL_BUILTIN)
        .copied()
        .collect();
    for p in compat::LEGACY_NATIVE_PROBES {
        assert!(
            !all.contains(&p.name),
            "{} is a probe of this agent",
            p.name
        );
        for e in p.equivalents {
            assert!(
                all.contains(e),
                "{}: {e} is not a probe of this agent",
                p.name
            );
        }
    }
}

#[test]
fn v0_keys_are_mapped_or_warned_about() {
    // 21.09 had no metric section: kafka.switch sent the metrics to Kafka.
    let (c, w) = conf_ok(
        "global = { log_directory = \"/var/log/gala-gopher\"; };\n\
         web_server = { port = 8888; switch = \"on\"; };\n\
         kafka = { kafka_broker = \"127.0.0.1:9092\"; kafka_topic = \"old_topic\"; switch = \"on\"; };\n\
         probes = ( { name = \"system_meminfo\"; switch = \"on\"; interval = 3; },\n\
                    { name = \"system_tcp\"; param = \"-t 9\"; switch = \"on\"; interval = 3; } );",
    );
    assert_eq!(
        c.metric,
        Channel {
            out_channel: OutChannel::Kafka,
            kafka_topic: "old_topic".into()
        }
    );
    assert_eq!(
        names(&c),
        [
            ("system_meminfo", Switch::On, "-t 3"),
            ("system_tcp", Switch::On, "-t 9")
        ]
    );
    assert_eq!(
        w,
        [
            "/cfg/gala-gopher.conf:1: key `global.log_directory`: ignored (a 21.09 key): this agent logs to stderr \
             or the journal, or to `global.log_file_name` under `logs.debug_dir`",
            "/cfg/gala-gopher.conf:5: key `probes[1].interval`: ignored: `-t` in `param` sets the period of this \
             probe",
        ]
    );
    // Switched off, or in a file with a metric section, the Kafka keys do not
    // move the metrics; in the latter case they are warned about.
    let (c, w) = conf_ok("kafka = { kafka_topic = \"t\"; switch = \"off\"; };");
    assert_eq!(c.metric.out_channel, OutChannel::WebServer);
    assert_eq!(c.metric.kafka_topic, "t");
    assert!(w.is_empty(), "{w:?}");
    let (c, w) = conf_ok("metric = { out_channel = \"logs\"; };\nkafka = { switch = \"on\"; };");
    assert_eq!(c.metric.out_channel, OutChannel::Logs);
    assert_eq!(
        w,
        ["/cfg/gala-gopher.conf:2: key `kafka.switch`: ignored (a 21.09 key): the `metric` section of this file \
          chooses the channel and topic"]
    );
    let (_, w) = conf_ok("web_server = { switch = \"off\"; };");
    assert_eq!(
        w,
        ["/cfg/gala-gopher.conf:1: key `web_server.switch`: ignored (a 21.09 key): the Prometheus endpoint always \
          runs here; bind it to 127.0.0.1 with `web_server.bind_addr` to keep it local"]
    );
    // Bad values are errors naming the key.
    assert_eq!(
        conf_err(
            "web_server = { switch = \"maybe\"; };\nkafka = { switch = 3; };\n\
             probes = ( { name = \"system_meminfo\"; interval = 0; } );"
        ),
        [
            "/cfg/gala-gopher.conf:1: key `web_server.switch`: expected \"on\" or \"off\" (a 21.09 key)",
            "/cfg/gala-gopher.conf:2: key `kafka.switch`: expected \"on\" or \"off\" (a 21.09 key)",
            "/cfg/gala-gopher.conf:3: key `probes[0].interval`: expected a period in seconds from 1 to 3600 (a 21.09 \
             key), got 0",
        ]
    );
}

#[test]
fn v2_keys_are_mapped_or_warned_about() {
    // metric_total_size (MB) is spread over the rotated files of a directory.
    let (c, w) = conf_ok(
        "metric = { out_channel = \"web_server\"; pod_info_switch = \"on\"; };\n\
         event = { desc_language = \"zh_CN\"; };\n\
         logs = { metric_total_size = 100; max_files = 4; };",
    );
    assert_eq!(c.logs.max_file_size_mb, 25);
    assert_eq!(
        w,
        [
            "/cfg/gala-gopher.conf:1: key `metric.pod_info_switch`: ignored (a 2.x key): records get no pod labels \
             from this agent",
            "/cfg/gala-gopher.conf:2: key `event.desc_language`: ignored (a 1.x/2.x key): event bodies are written in \
             English only",
        ]
    );
    let (c, _) = conf_ok("logs = { metric_total_size = 3; };");
    assert_eq!(c.logs.max_file_size_mb, 1);
    let (c, w) = conf_ok("logs = { metric_total_size = 100; max_file_size_mb = 7; };");
    assert_eq!(c.logs.max_file_size_mb, 7);
    assert_eq!(
        w,
        ["/cfg/gala-gopher.conf:1: key `logs.metric_total_size`: ignored: `logs.max_file_size_mb` is also set, and \
          wins"]
    );
    assert_eq!(
        conf_err("logs = { metric_total_size = 0; };"),
        ["/cfg/gala-gopher.conf:1: key `logs.metric_total_size`: expected a number of MB greater than 0, got 0"]
    );
}

#[test]
fn the_legacy_shapes_of_every_generation_load_with_their_values() {
    let v0 = load(&repo().join("tests/data/config/legacy_v0.conf"));
    assert_eq!(v0.metric.out_channel, OutChannel::WebServer);
    assert_eq!(v0.metric.kafka_topic, "test_v0_metrics");
    assert_eq!(v0.imdb.max_records_num, 4096);
    assert_eq!(
        names(&v0),
        [
            ("example", Switch::Off, "-t 1"),
            ("system_meminfo", Switch::On, "-t 2"),
            ("system_vmstat", Switch::On, "-t 2"),
            ("system_inode", Switch::Off, "-t 5"),
            ("system_tcp", Switch::On, "-t 3"),
        ]
    );
    let v1 = load(&repo().join("tests/data/config/legacy_v1_shipped.conf"));
    assert_eq!(v1.event.out_channel, OutChannel::Kafka);
    assert_eq!(v1.event.timeout, 300);
    let ksli = v1.extend_probes.iter().find(|p| p.name == "ksliprobe");
    assert_eq!(
        ksli.and_then(|p| p.start_check.as_deref()),
        Some(r"ps -e -o comm= | grep -c 'memcached\|valkey'")
    );
    let cadvisor = v1.extend_probes.iter().find(|p| p.name == "cadvisor");
    assert_eq!(
        cadvisor.and_then(|p| p.start_check.as_deref()),
        Some("echo \"no-such-unit-a no-such-unit-b\" | xargs -n1 echo | grep -c running")
    );
    assert_eq!(
        v1.probes
            .iter()
            .filter(|p| p.switch == Switch::On)
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["system_cpu", "system_meminfo", "system_net", "system_inode"]
    );
    // The whitelist -w names is not installed here: a warning, no whitelist.
    assert_eq!(v1.app_whitelist, None);
    let v2 = load(&repo().join("tests/data/config/legacy_v2.conf"));
    assert!(v2.global.rest_api_on);
    assert_eq!(v2.logs.max_file_size_mb, 12);
    assert_eq!(v2.kafka.username, None);
    assert!(v2.probes.is_empty() && v2.extend_probes.is_empty());
    let keys: Vec<Option<&str>> = v2.warnings.iter().map(|w| w.key.as_deref()).collect();
    assert_eq!(
        keys,
        [Some("metric.pod_info_switch"), Some("event.desc_language")]
    );
}

#[test]
fn the_application_whitelist_is_found_where_the_legacy_agent_read_it() {
    let tmp = tempdir();
    let conf = tmp.path().join("etc/gala-gopher.conf");
    let app = tmp.path().join("etc/gala-gopher-app.conf");
    let good = "application = (\n  { comm = \"^nginx$\"; cmdline = \"\"; }\n);\n";
    // Nothing names one and none is beside the config: none.
    write(
        &conf,
        "probes = ( { name = \"system_cpu\"; param = \"-t 5\"; } );",
    );
    assert_eq!(load(&conf).app_whitelist, None);
    // Beside the config file.
    write(&app, good);
    let c = load(&conf);
    assert_eq!(
        c.app_whitelist.as_ref().map(|w| w.path.clone()),
        Some(app.clone())
    );
    assert!(c
        .app_whitelist
        .as_ref()
        .is_some_and(|w| w.matches("nginx", "")));
    // Named by -w of a probe that runs (one switched off does not count).
    let other = tmp.path().join("other-app.conf");
    write(
        &other,
        "application = ( { comm = \"java\"; }, { comm = \"python3\"; } );",
    );
    write(
        &conf,
        &format!(
            "probes = ( {{ name = \"system_net\"; param = \"-w /nonexistent\"; switch = \"off\"; }},\n\
             {{ name = \"system_cpu\"; param = \"-t 5 -w {}\"; }} );",
            other.display()
        ),
    );
    let c = load(&conf);
    assert_eq!(c.app_whitelist.as_ref().map(|w| w.apps.len()), Some(2));
    // global.app_whitelist wins, relative to the config file; it must exist.
    write(
        &conf,
        "global = { app_whitelist = \"gala-gopher-app.conf\"; };",
    );
    let c = load(&conf);
    assert_eq!(c.global.app_whitelist.as_deref(), Some(app.as_path()));
    assert_eq!(c.app_whitelist.map(|w| w.path), Some(app.clone()));
    write(
        &conf,
        "global = {\n  app_whitelist = \"missing-app.conf\"; };",
    );
    let err = match Config::load(&conf) {
        Ok(c) => panic!("unexpectedly valid: {c:?}"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err,
        format!(
            "{}: cannot read the application whitelist: No such file or directory (os error 2)",
            tmp.path().join("etc/missing-app.conf").display()
        )
    );
    // A bad whitelist fails the config, naming the whitelist's file and line,
    // together with the config's own problems.
    write(&app, "application = (\n  { comm = \"[a-\"; }\n);\n");
    write(&conf, "web_server = { port = 0; };");
    let err = match Config::load(&conf) {
        Ok(c) => panic!("unexpectedly valid: {c:?}"),
        Err(e) => e.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert_eq!(err.len(), 2, "{err:?}");
    assert!(
        err.iter().any(|e| e.starts_with(&format!(
            "{}:2: key `application[0].comm`: `[a-` is not a valid POSIX extended regular expression",
            app.display()
        ))),
        "{err:?}"
    );
    assert!(
        err.iter().any(|e| e
            == &format!(
                "{}:1: key `web_server.port`: expected a port 1..65535, got 0",
                conf.display()
            )),
        "{err:?}"
    );
    // A -w naming a file that does not exist is a warning, not an error.
    write(
        &conf,
        "probes = ( { name = \"system_cpu\"; param = \"-w /nonexistent/app.conf\"; } );",
    );
    let c = load(&conf);
    assert_eq!(c.app_whitelist, None);
    assert_eq!(c.warnings.iter().count(), 1, "{:?}", c.warnings);
}

/// A key and a self-signed certificate made with the openssl CLI.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf) {
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
        ])
        .args(["-days", "2", "-subj", "/CN=localhost"])
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is needed to make a test certificate (install openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join("k.pem"), dir.join("c.pem"))
}

#[test]
fn tls_files_are_checked_and_errors_name_the_key_and_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (key, cert) = tls_files(tmp.path());
    let (k, c) = (key.display(), cert.display());
    for section in ["web_server", "rest_api_server"] {
        // Good files, with and without a client CA.
        let good =
            format!("[{section}]\nssl_auth = true\nprivate_key = \"{k}\"\ncert_file = \"{c}\"\n");
        toml_ok(&good);
        toml_ok(&format!("{good}ca_file = \"{c}\"\n"));
        // A file that is missing, or not what its key says.
        let missing = tmp.path().join("missing.pem");
        let cases = [
            (
                format!(
                    "private_key = \"{}\"\ncert_file = \"{c}\"",
                    missing.display()
                ),
                3,
                "private_key",
                "missing.pem",
            ),
            (
                format!("private_key = \"{k}\"\ncert_file = \"{k}\""),
                4,
                "cert_file",
                "k.pem",
            ),
            (
                format!("private_key = \"{c}\"\ncert_file = \"{c}\""),
                3,
                "private_key",
                "c.pem",
            ),
            (
                format!(
                    "private_key = \"{k}\"\ncert_file = \"{c}\"\nca_file = \"{}\"",
                    missing.display()
                ),
                5,
                "ca_file",
                "missing.pem",
            ),
        ];
        for (keys, line, bad_key, file) in cases {
            let src = format!("[{section}]\nssl_auth = true\n{keys}\n");
            let e = toml_err(&src);
            assert_eq!(e.len(), 1, "{src}: {e:?}");
            let head = format!("{SRC}:{line}: key `{section}.{bad_key}`: ");
            assert!(
                e[0].starts_with(&head) && e[0].contains(file),
                "{src}: {e:?}"
            );
        }
        // A missing key is reported on ssl_auth.
        let e = toml_err(&format!(
            "[{section}]\nssl_auth = true\nprivate_key = \"{k}\"\n"
        ));
        assert_eq!(
            e,
            [format!(
                "{SRC}:2: key `{section}.ssl_auth`: `cert_file`: expected the path of a PEM certificate (ssl_auth is \
                 on), got none"
            )]
        );
        // Off: the files are not looked at.
        toml_ok(&format!(
            "[{section}]\nssl_auth = false\nprivate_key = \"/nonexistent\"\n"
        ));
    }
}

#[test]
fn native_probes_take_auto_with_a_start_check_in_both_formats() {
    let t = toml_ok(
        "[[probes]]\nname = \"system_tcp\"\nswitch = \"auto\"\nstart_check = \"grep -slx nginx /proc/[0-9]*/comm | wc -l\"\n",
    );
    assert_eq!(t.probes[0].switch, Switch::Auto);
    assert_eq!(
        t.probes[0].start_check.as_deref(),
        Some("grep -slx nginx /proc/[0-9]*/comm | wc -l")
    );
    let c = Config::from_libconfig_str(
        "probes = ( { name = \"system_tcp\"; switch = \"auto\"; start_check = \"echo 1\"; check_type = \"count\"; } );\n",
        Path::new(CONF),
    )
    .expect("a libconfig [[probes]] entry with start_check loads");
    assert_eq!(c.probes[0].start_check.as_deref(), Some("echo 1"));
    // Without a start check, auto is on (legacy configs), and not an error.
    let bare = toml_ok("[[probes]]\nname = \"system_tcp\"\nswitch = \"auto\"\n");
    assert_eq!(bare.probes[0].start_check, None);
}
