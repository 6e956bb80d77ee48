//! `promtool check metrics` on the real agent's exposition: the names this
//! project made must be lint-clean; only legacy names may be flagged.
//!
//! The agent runs the default probes (the four /proc tables and the eBPF
//! `tcp_link`), the C probes `system_cpu` and `system_net`, an extend probe
//! that writes a `tcp_link_probe_stats` record (so that table is scraped even
//! where the eBPF probe cannot attach), and Kafka event and metadata channels
//! towards an address where nothing listens (so the `gala_gopher_self_kafka_*`
//! names are scraped too).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::harness::{promtool, wait_for, Setup};

/// Legacy names that promtool flags and that stay as they are: dashboards and
/// the topology service were built against them (docs/compat.md §5, §8).
/// Only these findings are allowed; each is a name the legacy agent had.
const LEGACY: &[&str] = &[
    // tcp_link (the seed's table, §8): counters without `_total`...
    "gala_gopher_tcp_link_rx_bytes",
    "gala_gopher_tcp_link_tx_bytes",
    "gala_gopher_tcp_link_packets_in",
    "gala_gopher_tcp_link_packets_out",
    "gala_gopher_tcp_link_retran_packets",
    "gala_gopher_tcp_link_lost_packets",
    // ... and a gauge whose name ends in `_count`.
    "gala_gopher_tcp_link_link_count",
    // system_meminfo (V0 table, §8): fields named after the /proc/meminfo
    // keys, hence camelCase.
    "gala_gopher_system_meminfo_MemTotal",
    "gala_gopher_system_meminfo_MemFree",
    "gala_gopher_system_meminfo_MemAvailable",
    "gala_gopher_system_meminfo_SwapCached",
];

/// Fields this project added to the legacy V0 table `system_meminfo`. They
/// keep that table's naming (the field is the /proc/meminfo key), so
/// promtool flags their camelCase like the legacy fields next to them. Kept
/// apart from [`LEGACY`] because they are additions; the counters added to
/// legacy tables (system_vmstat's) get `_total` and are clean.
const LEGACY_TABLE_ADDITIONS: &[&str] = &[
    // /proc/meminfo keys (camelCase).
    "gala_gopher_system_meminfo_AnonPages",
    "gala_gopher_system_meminfo_CommitLimit",
    "gala_gopher_system_meminfo_HugePages_Free",
    "gala_gopher_system_meminfo_HugePages_Total",
    "gala_gopher_system_meminfo_KernelStack",
    "gala_gopher_system_meminfo_PageTables",
    "gala_gopher_system_meminfo_SwapFree",
    "gala_gopher_system_meminfo_SwapTotal",
];

/// Fails clearly, before anything starts, when promtool is missing.
fn require_promtool() {
    let ok = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "promtool is required by this test and was not found on PATH: install the Debian \
         package `prometheus` (scripts/deps.sh does)"
    );
}

/// `name` of a line of `promtool check metrics`: `<metric> <problem>`.
fn finding_name(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

#[test]
fn own_metric_names_are_promtool_clean() {
    require_promtool();
    let s = Setup::new(&[]);
    // A tcp_link_probe_stats record as the eBPF probe writes one, under
    // another key so it never mixes with the real probe's series.
    let meta = std::fs::read_to_string(s.path("meta/tcp_link.meta")).unwrap();
    let n = crate::harness::field_count(&meta, "tcp_link_probe_stats");
    let record = format!("|tcp_link_probe_stats|promlint{}|", "|1".repeat(n - 1));
    let script = s.script(
        "stats.sh",
        &format!("while true; do\n  echo '{record}'\n  sleep 1\ndone"),
    );
    let cfg = crate::harness::every_series_config(&s, "promlint", &script);
    let agent = s.start(&cfg);

    // Every table in, and tcp_link either reporting or given up.
    let real_stats = "gala_gopher_tcp_link_probe_stats_conns_tracked{probe=\"tcp_link\"";
    let tcp_link_failed = "gala_gopher_self_probe_state{probe=\"tcp_link\",state=\"failed\"";
    let expo = wait_for(Duration::from_secs(30), "every table scraped", || {
        let e = agent.scrape();
        let tcp_link_done = e.contains(real_stats)
            || e.lines()
                .any(|l| l.starts_with(tcp_link_failed) && l.ends_with(" 1"));
        let all = [
            "gala_gopher_tcp_link_probe_stats_conns_tracked{probe=\"promlint\"",
            "gala_gopher_system_meminfo_MemTotal{",
            "gala_gopher_system_vmstat_pgpgin_total{",
            "gala_gopher_system_inode_Inodes{",
            "gala_gopher_system_tcp_st{",
            "gala_gopher_system_cpu_procs_running{",
            "gala_gopher_system_net_rx_bytes_total{",
            "gala_gopher_self_kafka_queue_messages{",
        ]
        .iter()
        .all(|m| e.contains(m));
        (tcp_link_done && all).then_some(e)
    });
    if expo.contains(real_stats) {
        eprintln!("the eBPF tcp_link probe attached: its own series are linted too");
    } else {
        eprintln!(
            "NOTE: the eBPF tcp_link probe could not attach here (see the log below); \
             tcp_link_probe_stats is linted from the extend probe's record only\n{}",
            agent
                .log_text()
                .lines()
                .filter(|l| l.contains("tcp_link"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // Our counters carry `_total`; the legacy names are unchanged.
    for name in [
        "gala_gopher_tcp_link_probe_stats_close_untracked_total{",
        "gala_gopher_tcp_link_probe_stats_conn_overflow_total{",
        "gala_gopher_system_cpu_user_total{",
        "gala_gopher_system_net_rx_bytes_total{",
        "gala_gopher_system_meminfo_MemTotal{",
        "gala_gopher_system_vmstat_pgpgin_total{",
        "gala_gopher_system_vmstat_nr_free_pages{",
        "gala_gopher_self_records_accepted_total{",
    ] {
        assert!(expo.contains(name), "{name} missing:\n{expo}");
    }

    let (code, out) = promtool(&expo);
    assert!(
        code == 0 || code == 3,
        "promtool exit {code} (0 clean, 3 lint findings, else an error):\n{out}"
    );
    let allowed: BTreeSet<&str> = LEGACY
        .iter()
        .chain(LEGACY_TABLE_ADDITIONS)
        .copied()
        .collect();
    let bad: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !allowed.contains(finding_name(l)))
        .collect();
    assert!(
        bad.is_empty(),
        "promtool flags names that are not legacy:\n{}\n\nfull promtool output:\n{out}",
        bad.join("\n")
    );
}

#[test]
fn promtool_findings_start_with_the_metric_name() {
    require_promtool();
    // What the test above relies on: a finding names the metric first, so a
    // non-legacy name is never mistaken for an allowed one.
    let (code, out) = promtool(
        "# HELP gala_gopher_myapp_requests requests\n# TYPE gala_gopher_myapp_requests counter\n\
         gala_gopher_myapp_requests 1\n",
    );
    assert_eq!(code, 3, "lint findings exit 3:\n{out}");
    let names: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(finding_name)
        .collect();
    assert_eq!(names, ["gala_gopher_myapp_requests"], "{out}");
}
