//! The container image and the Kubernetes manifests of deploy/.
//!
//! No image registry and no cluster can be reached here, so the tests check
//! what can be checked for real:
//! - every YAML document of deploy/k8s parses, and the DaemonSet holds what
//!   the agent needs and no more: the host's PID and network namespaces,
//!   the read-only host mounts, exactly the capabilities of the table in
//!   docs/install.md with everything else dropped, no privileged mode,
//!   resources, probes on /metrics :8888, scrape annotations, a headless
//!   Service, a ServiceAccount with no API permissions;
//! - the ConfigMap's config passes `gala-gopher check-config` and differs
//!   from config/gala-gopher.toml only where Kubernetes needs it to;
//! - the Containerfile makes its image from deploy/image/build-root.sh;
//! - that script, run on the gala-gopher rpm (the one `scripts/rpm.sh`
//!   builds, see rpm.rs) into a directory, gives a root file system from
//!   which the agent starts as the DaemonSet would start it: the test reads
//!   the pod spec and does what a container runtime does with it (a new
//!   mount namespace with the image's root read-only, a fresh procfs of the
//!   host's PID namespace, a read-only sysfs, the hostPath and ConfigMap
//!   volumes at their mount points, the capabilities of the spec as the
//!   bounding set, no_new_privs, the command and args of the spec). The
//!   agent must then run with exactly those capabilities, serve :8888 on the
//!   node's address and report the default tables, tcp_link included.
//!
//! Two deliberate differences from a real node: the pod's network is a
//! network namespace of the test's own (with a "node address" on a veth)
//! rather than this machine's, so that :8888 cannot collide with anything
//! else running here; and the writable hostPath volumes are temporary
//! directories rather than this machine's /var/log and /var/lib.
//!
//! The image test needs root (mounts, namespaces, eBPF): not being root is
//! a failure with a clear message, never a silent skip.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_norway::Value;

use crate::harness::{bin, http_get, repo, wait_for};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the image test needs root (mount and network namespaces, chroot, eBPF); run `make test` as root"
    );
}

// ---------------------------------------------------------------------------
// The manifests.

/// Every YAML document of deploy/k8s/*.yaml, with its file name, in file
/// order (the order `kubectl apply -f deploy/k8s/` applies them).
fn documents() -> Vec<(String, Value)> {
    let dir = repo().join("deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {}", dir.display());
    let mut docs = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        // Documents are separated by a line `---` (never inside a block
        // scalar, whose lines are indented).
        for part in text.split("\n---\n") {
            let v: Value = serde_norway::from_str(part)
                .unwrap_or_else(|e| panic!("deploy/k8s/{name} does not parse: {e}"));
            if !v.is_null() {
                docs.push((name.clone(), v));
            }
        }
    }
    docs
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

/// The one document of `kind`.
fn the<'a>(docs: &'a [(String, Value)], k: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|(_, v)| kind(v) == k)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(found.len(), 1, "expected one {k} in deploy/k8s");
    found[0]
}

fn text(v: &Value, what: &str) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is missing or not a string: {v:?}"))
        .to_owned()
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what} is missing or not a list: {v:?}"))
        .iter()
        .map(|s| text(s, what))
        .collect()
}

/// The capabilities of docs/install.md's table ("So the unit's
/// `CapabilityBoundingSet=` is `...`"), which the systemd unit also uses.
fn documented_capabilities() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(repo().join("docs/install.md")).unwrap();
    let start = doc
        .find("`CapabilityBoundingSet=` is `")
        .expect("docs/install.md names the unit's CapabilityBoundingSet= (\"The service and its capabilities\")")
        + "`CapabilityBoundingSet=` is `".len();
    let end = start + doc[start..].find('`').unwrap();
    let caps: BTreeSet<String> = doc[start..end]
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let unit = std::fs::read_to_string(repo().join("rpm/gala-gopher.service")).unwrap();
    let unit_caps: BTreeSet<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("rpm/gala-gopher.service has CapabilityBoundingSet=")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(caps, unit_caps, "docs/install.md and the unit disagree");
    caps
}

/// Capability numbers (linux/capability.h) of the names the table uses.
fn cap_number(name: &str) -> u32 {
    match name {
        "CAP_DAC_READ_SEARCH" => 2,
        "CAP_SYS_PTRACE" => 19,
        "CAP_SYS_ADMIN" => 21,
        "CAP_SYS_RESOURCE" => 24,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        _ => panic!("capability {name}: add its number to cap_number()"),
    }
}

/// A Kubernetes CPU quantity in cores ("50m", "1", "0.5").
fn cpu(q: &Value) -> f64 {
    let s = match q {
        Value::Number(n) => n.to_string(),
        other => text(other, "a cpu quantity"),
    };
    match s.strip_suffix('m') {
        Some(m) => m.parse::<f64>().unwrap() / 1000.0,
        None => s.parse().unwrap_or_else(|_| panic!("cpu quantity {s}")),
    }
}

/// A Kubernetes memory quantity in bytes ("64Mi", "1Gi", "100M", "1000").
fn bytes(q: &Value) -> f64 {
    let s = match q {
        Value::Number(n) => n.to_string(),
        other => text(other, "a memory quantity"),
    };
    let units: [(&str, f64); 6] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
    ];
    for (u, f) in units {
        if let Some(n) = s.strip_suffix(u) {
            return n.parse::<f64>().unwrap() * f;
        }
    }
    s.parse().unwrap_or_else(|_| panic!("memory quantity {s}"))
}

/// The config file of the ConfigMap (its one key).
fn configmap_config(docs: &[(String, Value)]) -> (String, String) {
    let cm = the(docs, "ConfigMap");
    let data = cm["data"].as_mapping().expect("ConfigMap data");
    assert_eq!(data.len(), 1, "the ConfigMap holds one file, the config");
    let (k, v) = data.iter().next().unwrap();
    (text(k, "ConfigMap key"), text(v, "ConfigMap value"))
}

/// `section.key` (`probes#2.name` for the third `[[probes]]`) to value, of
/// a TOML config written one `key = value` a line, comments dropped.
fn flatten(toml: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut section = String::new();
    let mut arrays: BTreeMap<String, usize> = BTreeMap::new();
    for raw in toml.lines() {
        let line = strip_comment(raw).trim().to_owned();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let n = arrays.entry(name.to_owned()).or_insert(0);
            section = format!("{name}#{n}");
            *n += 1;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not `key = value`: {raw}"));
            out.insert(format!("{section}.{}", k.trim()), v.trim().to_owned());
        }
    }
    out
}

/// `line` without a `#` comment (a `#` inside a "string" is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(v: &str) -> &str {
    v.trim_matches('"')
}

/// What the DaemonSet's container needs from the rest of the manifests.
#[derive(Debug)]
struct PodSpec {
    command: Vec<String>,
    /// (mount path, source, read-only).
    mounts: Vec<(String, Source, bool)>,
    /// CAP_ names.
    add: BTreeSet<String>,
    no_new_privs: bool,
    read_only_root: bool,
}

#[derive(Debug, Clone)]
enum Source {
    HostPath(String),
    /// The files of a ConfigMap: (file name, content).
    ConfigMap(Vec<(String, String)>),
}

fn pod_spec(docs: &[(String, Value)]) -> PodSpec {
    let ds = the(docs, "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    let mut command = strings(&c["command"], "container command");
    command.extend(strings(&c["args"], "container args"));
    let volumes = spec["volumes"].as_sequence().expect("volumes");
    let mut mounts = Vec::new();
    for m in c["volumeMounts"].as_sequence().expect("volumeMounts") {
        let name = text(&m["name"], "volumeMount name");
        let vol = volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("volumeMount {name} has no volume"));
        let src = if let Some(p) = vol["hostPath"]["path"].as_str() {
            Source::HostPath(p.to_owned())
        } else if let Some(cm_name) = vol["configMap"]["name"].as_str() {
            let cm = docs
                .iter()
                .map(|(_, v)| v)
                .find(|v| kind(v) == "ConfigMap" && v["metadata"]["name"].as_str() == Some(cm_name))
                .unwrap_or_else(|| panic!("volume {name}: no ConfigMap {cm_name} in deploy/k8s"));
            let files = cm["data"]
                .as_mapping()
                .expect("ConfigMap data")
                .iter()
                .map(|(k, v)| (text(k, "key"), text(v, "value")))
                .collect();
            Source::ConfigMap(files)
        } else {
            panic!("volume {name}: only hostPath and configMap volumes are expected");
        };
        mounts.push((
            text(&m["mountPath"], "mountPath"),
            src,
            m["readOnly"].as_bool() == Some(true),
        ));
    }
    let sc = &c["securityContext"];
    PodSpec {
        command,
        mounts,
        add: strings(&sc["capabilities"]["add"], "capabilities.add")
            .iter()
            .map(|c| format!("CAP_{c}"))
            .collect(),
        no_new_privs: sc["allowPrivilegeEscalation"].as_bool() == Some(false),
        read_only_root: sc["readOnlyRootFilesystem"].as_bool() == Some(true),
    }
}

#[test]
fn manifests_parse_and_the_daemonset_holds_what_the_agent_needs_and_no_more() {
    let docs = documents();
    let kinds: BTreeSet<&str> = docs.iter().map(|(_, v)| kind(v)).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "Namespace",
            "ServiceAccount",
            "ConfigMap",
            "DaemonSet",
            "Service"
        ]),
        "the kinds of deploy/k8s"
    );

    // One namespace for everything; labelled so that Pod Security
    // Admission lets the host namespaces, hostPaths and capabilities in.
    let ns = the(&docs, "Namespace");
    let ns_name = text(&ns["metadata"]["name"], "Namespace name");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str(),
        Some("privileged"),
        "the namespace must admit the agent's pod"
    );
    for (file, v) in &docs {
        if kind(v) != "Namespace" {
            assert_eq!(
                v["metadata"]["namespace"].as_str(),
                Some(ns_name.as_str()),
                "{file}: {} is not in namespace {ns_name}",
                kind(v)
            );
        }
    }

    // A ServiceAccount with no API permissions: nothing binds a role to it
    // (checked above: no Role, ClusterRole or binding among the kinds), no
    // token in the pod.
    let sa = the(&docs, "ServiceAccount");
    assert_eq!(sa["automountServiceAccountToken"].as_bool(), Some(false));

    let ds = the(&docs, "DaemonSet");
    assert_eq!(ds["apiVersion"].as_str(), Some("apps/v1"));
    let tpl = &ds["spec"]["template"];
    let spec = &tpl["spec"];
    assert_eq!(spec["hostPID"].as_bool(), Some(true), "hostPID");
    assert_eq!(spec["hostNetwork"].as_bool(), Some(true), "hostNetwork");
    assert_eq!(
        spec["dnsPolicy"].as_str(),
        Some("ClusterFirstWithHostNet"),
        "with hostNetwork, cluster names resolve only with ClusterFirstWithHostNet"
    );
    assert_eq!(spec["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(spec["automountServiceAccountToken"].as_bool(), Some(false));
    let labels = tpl["metadata"]["labels"].as_mapping().expect("pod labels");
    for (k, v) in ds["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("selector")
    {
        assert_eq!(
            labels.get(k),
            Some(v),
            "the selector matches the pod's labels"
        );
    }
    assert!(
        spec["securityContext"]["privileged"].is_null(),
        "no pod-level privileged"
    );

    let containers = spec["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_ne!(
        sc["privileged"].as_bool(),
        Some(true),
        "no privileged: true"
    );
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(
        strings(&sc["capabilities"]["drop"], "capabilities.drop"),
        ["ALL"],
        "drop ALL, then add the table's"
    );
    let add = strings(&sc["capabilities"]["add"], "capabilities.add");
    let add_set: BTreeSet<String> = add.iter().map(|c| format!("CAP_{c}")).collect();
    assert_eq!(add.len(), add_set.len(), "duplicates in {add:?}");
    assert_eq!(
        add_set,
        documented_capabilities(),
        "capabilities.add must be exactly the table of docs/install.md"
    );
    assert_eq!(
        sc["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );

    // Resources: requests and limits of both, requests within limits, and
    // memory above the agent's idle RSS (about 11 MB).
    let res = &c["resources"];
    for what in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(!res[what][r].is_null(), "resources.{what}.{r} is missing");
        }
    }
    assert!(cpu(&res["requests"]["cpu"]) <= cpu(&res["limits"]["cpu"]));
    assert!(bytes(&res["requests"]["memory"]) <= bytes(&res["limits"]["memory"]));
    assert!(bytes(&res["requests"]["memory"]) >= 32.0 * 1024.0 * 1024.0);

    // Port 8888, named "metrics", and the probes on /metrics there.
    let ports = c["ports"].as_sequence().expect("ports");
    let metrics_port = ports
        .iter()
        .find(|p| p["name"].as_str() == Some("metrics"))
        .expect("a port named metrics");
    assert_eq!(metrics_port["containerPort"].as_u64(), Some(8888));
    let resolve = |p: &Value| -> u64 {
        p.as_u64().unwrap_or_else(|| {
            let name = text(p, "probe port");
            ports
                .iter()
                .find(|q| q["name"].as_str() == Some(name.as_str()))
                .and_then(|q| q["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("no port named {name}"))
        })
    };
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some("/metrics"), "{probe} path");
        assert_eq!(resolve(&get["port"]), 8888, "{probe} port");
        assert!(
            get["host"].is_null(),
            "{probe}: the kubelet's GET goes to the pod's IP"
        );
    }

    // Prometheus: annotations on the pods, a headless Service over them.
    let ann = &tpl["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(ann["prometheus.io/port"].as_str(), Some("8888"));
    assert_eq!(ann["prometheus.io/path"].as_str(), Some("/metrics"));
    let svc = the(&docs, "Service");
    assert_eq!(svc["spec"]["clusterIP"].as_str(), Some("None"), "headless");
    for (k, v) in svc["spec"]["selector"]
        .as_mapping()
        .expect("Service selector")
    {
        assert_eq!(
            labels.get(k),
            Some(v),
            "the Service selects the agent's pods"
        );
    }
    let sp = &svc["spec"]["ports"][0];
    assert_eq!(sp["port"].as_u64(), Some(8888));
    assert_eq!(resolve(&sp["targetPort"]), 8888);
    assert!(
        svc["metadata"]["annotations"]["prometheus.io/scrape"].is_null(),
        "the pods carry the scrape annotations; on the Service too, they would be scraped twice"
    );

    // The mounts: the host's bpffs, debugfs and tracefs read-only; no /proc
    // (hostPID gives the container a procfs of the host's PID namespace);
    // the config from the ConfigMap, read-only, where the args point; the
    // only writable mounts are where the config writes.
    let pod = pod_spec(&docs);
    let (cm_key, config) = configmap_config(&docs);
    for host in ["/sys/fs/bpf", "/sys/kernel/debug"] {
        let m = pod
            .mounts
            .iter()
            .find(|(path, src, _)| path == host && matches!(src, Source::HostPath(p) if p == host))
            .unwrap_or_else(|| panic!("the host's {host} is not mounted at {host}"));
        assert!(m.2, "{host} must be mounted read-only");
    }
    for (path, _, _) in &pod.mounts {
        assert!(
            !(path == "/proc" || path.starts_with("/proc/")),
            "{path}: nothing is mounted over the container's /proc; with hostPID it is already the host's"
        );
    }
    let config_mount = pod
        .mounts
        .iter()
        .find(|(_, src, _)| matches!(src, Source::ConfigMap(_)))
        .expect("the ConfigMap is mounted");
    assert!(config_mount.2, "the config is mounted read-only");
    let config_path = format!("{}/{cm_key}", config_mount.0);
    assert_eq!(
        pod.command,
        ["/usr/bin/gala-gopher", "--config", config_path.as_str()],
        "the container runs the agent on the ConfigMap's file"
    );
    let flat = flatten(&config);
    let mut written: Vec<String> = [
        "global.state_dir",
        "logs.metric_dir",
        "logs.event_dir",
        "logs.meta_dir",
        "logs.debug_dir",
    ]
    .iter()
    .map(|k| unquote(&flat[*k]).to_owned())
    .collect();
    // The control socket of gopher-ctl, always served (gopher/src/rest).
    written.push("/run/gala-gopher".to_owned());
    for (path, src, ro) in &pod.mounts {
        if !ro {
            assert!(
                matches!(src, Source::HostPath(_)),
                "{path}: only hostPath volumes are writable"
            );
            assert!(
                written
                    .iter()
                    .any(|w| w == path || w.starts_with(&format!("{path}/"))),
                "{path} is mounted writable but the config writes nothing there ({written:?})"
            );
        }
    }
    for w in &written {
        assert!(
            pod.mounts
                .iter()
                .any(|(p, _, ro)| !ro && (w == p || w.starts_with(&format!("{p}/")))),
            "the config writes to {w}, which is on the read-only root file system"
        );
    }
}

#[test]
fn configmap_config_passes_check_config_and_differs_from_the_default_only_where_kubernetes_needs() {
    let docs = documents();
    let (name, config) = configmap_config(&docs);
    assert_eq!(name, "gala-gopher.toml");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(&name);
    std::fs::write(&path, &config).unwrap();
    let out = Command::new(bin())
        .arg("check-config")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("run gala-gopher check-config");
    assert!(
        out.status.success(),
        "gala-gopher check-config refuses the ConfigMap's config ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let default =
        flatten(&std::fs::read_to_string(repo().join("config/gala-gopher.toml")).unwrap());
    let ours = flatten(&config);
    // The image has no shell or Python (deploy/image/build-root.sh): the
    // probes switched "auto" by the default cannot run their start check
    // there, so the ConfigMap switches them on or off.
    let changed: BTreeMap<&str, &str> = BTreeMap::from([
        ("web_server.bind_addr", "\"0.0.0.0\""),
        ("probes#5.switch", "\"on\""),
        ("probes#6.switch", "\"on\""),
        ("probes#7.switch", "\"off\""),
        ("probes#8.switch", "\"off\""),
        ("extend_probes#0.switch", "\"off\""),
        ("extend_probes#1.switch", "\"off\""),
    ]);
    for (k, v) in &default {
        let want = changed.get(k.as_str()).copied().unwrap_or(v.as_str());
        assert_eq!(
            ours.get(k).map(String::as_str),
            Some(want),
            "{k}: the ConfigMap must keep config/gala-gopher.toml's value (or the change made for Kubernetes)"
        );
    }
    for k in ours.keys() {
        assert!(
            default.contains_key(k),
            "{k} is in the ConfigMap's config but not in config/gala-gopher.toml"
        );
    }
    assert_eq!(
        ours["web_server.port"], "8888",
        "the probes and annotations use 8888"
    );
}

#[test]
fn the_containerfile_makes_its_image_with_build_root_sh() {
    let cf = std::fs::read_to_string(repo().join("deploy/Containerfile")).unwrap();
    let lines: Vec<&str> = cf
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("COPY deploy/image/build-root.sh ")),
        "the build stage copies deploy/image/build-root.sh"
    );
    assert!(
        cf.contains("/build/build-root.sh /build/rpms /rootfs"),
        "the build stage runs build-root.sh into /rootfs"
    );
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(
        froms.last().map(|l| l.trim()),
        Some("FROM scratch"),
        "the image is the root alone"
    );
    let final_stage = &cf[cf.rfind("FROM scratch").unwrap()..];
    let copies: Vec<&str> = final_stage
        .lines()
        .filter(|l| l.starts_with("COPY") || l.starts_with("ADD") || l.starts_with("RUN"))
        .collect();
    assert_eq!(
        copies,
        ["COPY --from=root /rootfs/ /"],
        "the final stage holds build-root.sh's tree and nothing else"
    );
    assert!(final_stage.contains("ENTRYPOINT [\"/usr/bin/gala-gopher\"]"));
    assert!(final_stage.contains("CMD [\"--config\", \"/etc/gala-gopher/gala-gopher.toml\"]"));
}

// ---------------------------------------------------------------------------
// The image's root file system, started as the DaemonSet's pod.

/// Runs deploy/image/build-root.sh on `rpm` into `root`.
fn build_root(rpm: &Path, root: &Path) {
    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg(repo().join("deploy/image/build-root.sh"))
        .arg(rpm)
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .expect("run deploy/image/build-root.sh");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "build-root.sh failed ({}):\n{log}",
        out.status
    );
    println!("build-root.sh: {:.1?}\n{log}", t0.elapsed());
}

/// Files of the tree under `root`, as absolute paths inside it.
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let inside = format!("/{}", p.strip_prefix(root).unwrap().display());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(inside);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// One step of the container's setup, run in the child between fork and
/// exec: no allocation there, so every path is a CString made before.
#[derive(Debug)]
enum Step {
    /// mount(2) of a file system.
    Fs {
        fstype: CString,
        target: CString,
        flags: libc::c_ulong,
        data: CString,
    },
    /// A recursive bind mount, then made read-only if `ro`.
    Bind {
        source: CString,
        target: CString,
        ro: bool,
    },
    /// A character device node, mode 0666.
    Dev {
        path: CString,
        major: u32,
        minor: u32,
    },
}

/// What the runtime does for the pod, prepared in the parent.
#[derive(Debug)]
struct Setup {
    netns: File,
    root: CString,
    steps: Vec<Step>,
    last_cap: u32,
    keep: Vec<u32>,
    no_new_privs: bool,
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// In the child: writes `what` to stderr (the agent's log) and returns the
/// errno of the failed call.
fn fail(what: &CStr) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    let msg = b"pod setup failed at ";
    // SAFETY: write(2) of valid buffers to fd 2; async-signal-safe.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::write(2, what.as_ptr().cast(), what.to_bytes().len());
        libc::write(2, b"\n".as_ptr().cast(), 1);
    }
    e
}

/// Between fork and exec: the mount namespace, the pod's network
/// namespace, the mounts, chroot, no_new_privs and the bounding set.
fn enter(s: &Setup) -> std::io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: plain system calls on CStrings that outlive them; nothing
    // here allocates or takes a lock (this runs between fork and exec).
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(fail(c"unshare(CLONE_NEWNS)"));
        }
        if libc::mount(
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            null.cast(),
        ) != 0
        {
            return Err(fail(c"mount --make-rprivate /"));
        }
        if libc::setns(s.netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(fail(c"setns(the pod's network namespace)"));
        }
        for step in &s.steps {
            match step {
                Step::Fs {
                    fstype,
                    target,
                    flags,
                    data,
                } => {
                    if libc::mount(
                        fstype.as_ptr(),
                        target.as_ptr(),
                        fstype.as_ptr(),
                        *flags,
                        data.as_ptr().cast(),
                    ) != 0
                    {
                        return Err(fail(target));
                    }
                }
                Step::Bind { source, target, ro } => {
                    if libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        null,
                        libc::MS_BIND | libc::MS_REC,
                        null.cast(),
                    ) != 0
                    {
                        return Err(fail(target));
                    }
                    if *ro
                        && libc::mount(
                            null,
                            target.as_ptr(),
                            null,
                            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                            null.cast(),
                        ) != 0
                    {
                        return Err(fail(target));
                    }
                }
                Step::Dev { path, major, minor } => {
                    if libc::mknod(
                        path.as_ptr(),
                        libc::S_IFCHR | 0o666,
                        libc::makedev(*major, *minor),
                    ) != 0
                        || libc::chmod(path.as_ptr(), 0o666) != 0
                    {
                        return Err(fail(path));
                    }
                }
            }
        }
        if libc::chroot(s.root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
            return Err(fail(c"chroot"));
        }
        if s.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(fail(c"PR_SET_NO_NEW_PRIVS"));
        }
        for cap in 0..=s.last_cap {
            if !s.keep.contains(&cap)
                && libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) != 0
            {
                return Err(fail(c"PR_CAPBSET_DROP"));
            }
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ) != 0
        {
            return Err(fail(c"PR_CAP_AMBIENT_CLEAR_ALL"));
        }
    }
    Ok(())
}

/// A network namespace standing in for the node's network: loopback and a
/// veth with the "node address". Removed on drop.
#[derive(Debug)]
struct NodeNet {
    name: String,
    addr: String,
}

impl NodeNet {
    fn new() -> Self {
        let n = Self {
            name: format!("ggdeploy{}", std::process::id()),
            addr: "192.0.2.10".to_owned(),
        };
        let _ = Command::new("ip").args(["netns", "del", &n.name]).output();
        let ip = |args: &[&str]| {
            let o = Command::new("ip")
                .args(args)
                .output()
                .expect("ip (iproute2; scripts/deps.sh test installs it)");
            assert!(
                o.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr)
            );
        };
        ip(&["netns", "add", &n.name]);
        ip(&["-n", &n.name, "link", "set", "lo", "up"]);
        ip(&[
            "-n", &n.name, "link", "add", "node0", "type", "veth", "peer", "name", "node0p",
        ]);
        ip(&[
            "-n",
            &n.name,
            "addr",
            "add",
            &format!("{}/24", n.addr),
            "dev",
            "node0",
        ]);
        ip(&["-n", &n.name, "link", "set", "node0", "up"]);
        ip(&["-n", &n.name, "link", "set", "node0p", "up"]);
        n
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `f` on a thread that joined this network namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = File::open(self.path()).expect("open the network namespace");
        std::thread::spawn(move || {
            // SAFETY: setns(2) of this thread only, with a descriptor we own.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in the pod's network")
    }
}

impl Drop for NodeNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The agent started as the pod; killed (by its PID) on drop.
#[derive(Debug)]
struct Pod {
    child: Child,
    log: PathBuf,
}

impl Pod {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The status code of a GET of `path` from `addr`:`port`.
fn http_status(addr: &str, port: u16, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect((addr, port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    Ok(String::from_utf8_lossy(&head[..n])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// A capability set of /proc/<pid>/status (`CapBnd:` ...) as numbers.
fn cap_set(status: &str, field: &str) -> BTreeSet<u32> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in the status"))
        .trim();
    let bits = u64::from_str_radix(hex, 16).unwrap();
    (0..64).filter(|b| bits & (1 << b) != 0).collect()
}

fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or("")
        .trim()
}

/// What the image must hold: the agent, libgopher.so.1 in the loader's
/// cache, the tables, the default config, the license, the libraries and
/// the mount points; no shell.
fn check_image_files(root: &Path) {
    let files = tree(root);
    for f in [
        "/usr/bin/gala-gopher",
        "/etc/gala-gopher/gala-gopher.toml",
        "/etc/ld.so.cache",
        "/usr/share/licenses/gala-gopher/LICENSE",
    ] {
        assert!(files.contains(f), "the image lacks {f}:\n{files:#?}");
    }
    for e in std::fs::read_dir(repo().join("meta")).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        if n.ends_with(".meta") {
            assert!(
                files.contains(&format!("/opt/gala-gopher/meta/{n}")),
                "no table {n}"
            );
        }
    }
    assert!(
        files.iter().any(|f| f.ends_with("/libgopher.so.1")),
        "no libgopher.so.1"
    );
    assert!(
        files.iter().any(|f| f.contains("/ld-linux")),
        "no dynamic loader"
    );
    assert!(
        !files.contains("/bin/sh") && !files.contains("/usr/bin/sh"),
        "a shell in the image"
    );
    let cache = Command::new("ldconfig")
        .args(["-p", "-C"])
        .arg(root.join("etc/ld.so.cache"))
        .output()
        .expect("ldconfig");
    assert!(
        String::from_utf8_lossy(&cache.stdout).contains("libgopher.so.1 "),
        "libgopher.so.1 is not in the image's loader cache:\n{}",
        String::from_utf8_lossy(&cache.stdout)
    );
    for d in [
        "proc",
        "sys",
        "dev",
        "tmp",
        "var/log/gala-gopher",
        "var/lib/gala-gopher",
        "etc/gala-gopher",
        "run/gala-gopher",
    ] {
        assert!(
            root.join(d).is_dir(),
            "the image lacks the mount point /{d}"
        );
    }
}

/// What a container runtime does for the pod's container, ready for
/// [`enter`]; and the directories standing in for the writable hostPaths,
/// by mount path.
fn pod_setup(
    pod: &PodSpec,
    root: &Path,
    work: &Path,
    net: &NodeNet,
) -> (Setup, BTreeMap<String, PathBuf>) {
    let host = work.join("host");
    let mut steps = Vec::new();
    steps.push(Step::Bind {
        source: cstr(root),
        target: cstr(root),
        ro: pod.read_only_root,
    });
    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    steps.push(Step::Fs {
        fstype: c"proc".into(),
        target: cstr(&root.join("proc")),
        flags: nosuid_nodev_noexec,
        data: c"".into(),
    });
    steps.push(Step::Fs {
        fstype: c"sysfs".into(),
        target: cstr(&root.join("sys")),
        flags: nosuid_nodev_noexec | libc::MS_RDONLY,
        data: c"".into(),
    });
    steps.push(Step::Fs {
        fstype: c"tmpfs".into(),
        target: cstr(&root.join("dev")),
        flags: libc::MS_NOSUID | libc::MS_STRICTATIME,
        data: c"mode=755,size=65536k".into(),
    });
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        steps.push(Step::Dev {
            path: cstr(&root.join("dev").join(name)),
            major,
            minor,
        });
    }
    let mut writable: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (path, src, ro) in &pod.mounts {
        let target = root.join(path.trim_start_matches('/'));
        let source = match src {
            Source::HostPath(p) if *ro => {
                assert!(Path::new(p).is_dir(), "the host lacks {p}");
                PathBuf::from(p)
            }
            Source::HostPath(p) => {
                // Not this machine's /var: a directory of the test's.
                let d = host.join(p.trim_start_matches('/'));
                std::fs::create_dir_all(&d).unwrap();
                writable.insert(path.clone(), d.clone());
                d
            }
            Source::ConfigMap(files) => {
                let d = work.join("configmap").join(path.trim_start_matches('/'));
                std::fs::create_dir_all(&d).unwrap();
                for (name, content) in files {
                    std::fs::write(d.join(name), content).unwrap();
                }
                d
            }
        };
        if !path.starts_with("/sys/") {
            assert!(target.is_dir(), "the image lacks the mount point {path}");
        }
        steps.push(Step::Bind {
            source: cstr(&source),
            target: cstr(&target),
            ro: *ro,
        });
    }
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let setup = Setup {
        netns: File::open(net.path()).unwrap(),
        root: cstr(root),
        steps,
        last_cap,
        keep: pod.add.iter().map(|c| cap_number(c)).collect(),
        no_new_privs: pod.no_new_privs,
    };
    (setup, writable)
}

#[test]
fn the_image_root_runs_the_agent_with_the_daemonsets_capabilities_and_mounts() {
    require_root();
    let t_start = Instant::now();
    let rpm = crate::rpm::packages().gopher.clone();
    println!(
        "rpm ready after {:.1?}: {}",
        t_start.elapsed(),
        rpm.display()
    );
    let t_run = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    build_root(&rpm, &root);

    check_image_files(&root);

    // The pod: the DaemonSet's spec applied to the image's root.
    let docs = documents();
    let pod = pod_spec(&docs);
    let net = NodeNet::new();
    let (setup, writable) = pod_setup(&pod, &root, dir.path(), &net);
    let log = dir.path().join("agent.log");
    let mut cmd = Command::new(&pod.command[0]);
    cmd.args(&pod.command[1..])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null())
        .stdout(File::create(&log).unwrap())
        .stderr(File::options().append(true).open(&log).unwrap());
    // SAFETY: `enter` only makes system calls on memory prepared before the
    // fork (see its comment).
    unsafe {
        cmd.pre_exec(move || enter(&setup));
    }
    let mut pod_proc = Pod {
        child: cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "could not start the agent as the pod ({e}); the setup said:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        }),
        log,
    };
    let pid = pod_proc.pid();

    // Serving: :8888 on the node's address, where the kubelet's probes and
    // Prometheus go.
    let addr = net.addr.clone();
    wait_for(
        Duration::from_secs(30),
        "the agent to serve :8888 on the node's address",
        || {
            if let Ok(Some(st)) = pod_proc.child.try_wait() {
                panic!("the agent exited ({st}); its log:\n{}", pod_proc.log_text());
            }
            let a = addr.clone();
            net.run(move || http_status(&a, 8888, "/metrics").ok())
                .filter(|s| *s == 200)
        },
    );

    // The capabilities: exactly the DaemonSet's (as far as this machine's
    // own bounding set has them), nothing inheritable or ambient, and no
    // way to gain more.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let host_bnd = cap_set(
        &std::fs::read_to_string("/proc/self/status").unwrap(),
        "CapBnd:",
    );
    let keep: Vec<u32> = pod.add.iter().map(|c| cap_number(c)).collect();
    let expected: BTreeSet<u32> = keep
        .iter()
        .copied()
        .filter(|c| host_bnd.contains(c))
        .collect();
    let missing: Vec<&String> = pod
        .add
        .iter()
        .filter(|c| !host_bnd.contains(&cap_number(c)))
        .collect();
    if !missing.is_empty() {
        println!("note: this machine's own bounding set lacks {missing:?}, so the agent cannot have them here");
    }
    assert_eq!(
        cap_set(&status, "CapBnd:"),
        expected,
        "CapBnd of the agent:\n{status}"
    );
    assert_eq!(
        cap_set(&status, "CapPrm:"),
        expected,
        "CapPrm of the agent:\n{status}"
    );
    assert!(
        cap_set(&status, "CapEff:").is_subset(&expected),
        "CapEff:\n{status}"
    );
    assert!(cap_set(&status, "CapInh:").is_empty(), "CapInh:\n{status}");
    assert!(cap_set(&status, "CapAmb:").is_empty(), "CapAmb:\n{status}");
    if pod.no_new_privs {
        assert_eq!(status_field(&status, "NoNewPrivs:"), "1", "{status}");
    }

    // The default tables, tcp_link included: its server-side record of the
    // scrapes themselves, under the agent's own PID on the host (hostPID).
    // Every probe the ConfigMap switches on runs (nginx_link and haproxy_link
    // with no server on the node too: they wait for one).
    let flat = flatten(&configmap_config(&docs).1);
    let want_probes: Vec<String> = flat
        .iter()
        .filter(|(k, _)| k.starts_with("probes#") && k.ends_with(".name"))
        .filter(|(k, _)| {
            let switch = k.replace(".name", ".switch");
            flat.get(&switch).map(|v| unquote(v)) != Some("off")
        })
        .map(|(_, v)| unquote(v).to_owned())
        .collect();
    assert!(
        want_probes.iter().any(|p| p == "nginx_link"),
        "the ConfigMap runs nginx_link: {want_probes:?}"
    );
    let tcp_link_own = format!(
        "gala_gopher_tcp_link_link_count{{pid=\"{pid}\",process_name=\"gala-gopher\",role=\"0\""
    );
    // (what, a test of one exposition line).
    type LineTest = Box<dyn Fn(&str) -> bool>;
    let mut wanted: Vec<(String, LineTest)> = Vec::new();
    for p in &want_probes {
        let prefix = format!("gala_gopher_self_probe_state{{probe=\"{p}\",state=\"running\",");
        wanted.push((
            format!("probe {p} running"),
            Box::new(move |l: &str| l.starts_with(&prefix) && l.ends_with(" 1")),
        ));
    }
    for series in [
        "gala_gopher_system_meminfo_MemTotal{",
        "gala_gopher_system_vmstat_",
        "gala_gopher_system_tcp_",
        "gala_gopher_tcp_link_probe_stats_",
    ] {
        wanted.push((
            series.to_owned(),
            Box::new(move |l: &str| l.starts_with(series)),
        ));
    }
    wanted.push((
        "tcp_link's record of the agent serving :8888".to_owned(),
        Box::new(move |l: &str| l.starts_with(&tcp_link_own) && l.contains("server_port=\"8888\"")),
    ));
    let missing = |body: &str| -> Vec<&str> {
        wanted
            .iter()
            .filter(|(_, test)| !body.lines().any(test))
            .map(|(what, _)| what.as_str())
            .collect()
    };
    let t0 = Instant::now();
    let expo = loop {
        let body = net
            .run(|| http_get(8888, "/metrics"))
            .map(|(_, b)| b)
            .unwrap_or_default();
        let m = missing(&body);
        if m.is_empty() {
            break body;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "after 40 s the agent still lacks {m:?}; its log:\n{}\nlast scrape:\n{body}",
            pod_proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let log_text = pod_proc.log_text();
    assert!(log_text.contains("eBPF programs attached"), "{log_text}");
    assert!(
        !log_text.contains("Read-only file system"),
        "the agent tried to write outside its writable mounts:\n{log_text}"
    );
    println!(
        "{} series; probes running: {want_probes:?}",
        expo.lines().filter(|l| !l.starts_with('#')).count()
    );

    // The mounts as the agent sees them: its root and the read-only
    // volumes read-only, its writes landing in the writable hostPaths.
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mounts")).unwrap();
    let opts = |mp: &str| -> String {
        mounts
            .lines()
            .rfind(|l| l.split_whitespace().nth(1) == Some(mp))
            .and_then(|l| l.split_whitespace().nth(3))
            .unwrap_or_else(|| panic!("{mp} is not mounted for the agent:\n{mounts}"))
            .to_owned()
    };
    if pod.read_only_root {
        assert!(
            opts("/").starts_with("ro"),
            "the root is not read-only:\n{mounts}"
        );
    }
    for (path, _, ro) in &pod.mounts {
        let o = opts(path);
        assert_eq!(o.starts_with("ro"), *ro, "{path}: {o}");
    }
    let state = &writable["/var/lib/gala-gopher"];
    let machine_id = std::fs::read_to_string(state.join("machine_id"))
        .unwrap_or_else(|e| panic!("no machine_id in the state hostPath: {e}"));
    assert!(
        machine_id.trim().ends_with(&format!("-{}", net.addr)),
        "{machine_id}"
    );
    let logs = &writable["/var/log/gala-gopher"];
    assert!(
        logs.join("meta").is_dir(),
        "no table metadata log in the logs hostPath"
    );
    let control = &writable["/run/gala-gopher"];
    assert!(
        control.join("gopher-ctl.sock").exists(),
        "no control socket in the /run/gala-gopher hostPath"
    );

    // What the resources are measured against: RSS and the eBPF memory.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status_field(&status, "VmRSS:").to_owned();
    let mut memlock_kb = 0u64;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let info = std::fs::read_to_string(fd.unwrap().path()).unwrap_or_default();
        if let Some(v) = info.lines().find_map(|l| l.strip_prefix("memlock:")) {
            memlock_kb += v.trim().parse::<u64>().unwrap_or(0) / 1024;
        }
    }
    println!("agent: VmRSS {rss}, eBPF maps and programs {memlock_kb} kB (memlock)");

    // SIGTERM, as the kubelet stops a pod.
    crate::harness::signal_child(&pod_proc.child, libc::SIGTERM);
    let st = wait_for(
        Duration::from_secs(20),
        "the agent to stop on SIGTERM",
        || pod_proc.child.try_wait().ok().flatten(),
    );
    assert!(
        st.success(),
        "exit on SIGTERM: {st}; log:\n{}",
        pod_proc.log_text()
    );
    println!(
        "image test: {:.1?} without the rpm build ({:.1?} in all)",
        t_run.elapsed(),
        t_start.elapsed()
    );
}
