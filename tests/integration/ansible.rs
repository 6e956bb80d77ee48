//! The A-Ops deployment (ansible/) run the way A-Ops runs it: the task file
//! tasks/deploy_gala.yml read by ansible/run_task.py, which for every
//! enabled step runs `ansible-playbook -i inventory/<step>
//! playbooks/<step>.yml`, here against a Debian system booted with a real
//! systemd (tests/integration/container.rs), reached with the
//! `community.docker.nsenter` connection of Debian's ansible.
//!
//! One scenario, in order:
//! 1. the first run installs the rpms of `make rpm`, renders both configs
//!    (the agent's Kafka settings and the vault-encrypted Neo4j password come
//!    from the variables) and starts both services: :8888 and :11115 answer;
//! 2. a second run changes nothing (`changed=0` for every host);
//! 3. one probe switch off: only the config changes, the agent is reloaded
//!    once (same process) and the probe's series vanish;
//! 4. a bad variable (a port of 0) fails the play at the config step with
//!    check-config's message, and the agent keeps running its old config;
//! 5. the switch back on: the series come back.
//!
//! Not real here, and why: the container has no network and no openEuler
//! repository, so the role's `dnf` path cannot run; the test sets
//! `gala_*_rpm` to the local rpms instead, with `gala_*_rpm_nodeps` (the
//! Debian rpm database lists none of their dependencies). It has no sudo
//! either: the inventory becomes root with `su` (the connection is root
//! already). Everything else is the real thing.
//!
//! Needs root (systemd-nspawn), Debian's ansible (scripts/deps.sh ansible)
//! and the rpms (built once per run by scripts/rpm.sh, shared with the rpm
//! and service tests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::container::{self, Container};
use crate::harness::repo;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the deployment test boots a container with systemd-nspawn: run `make test` as root"
    );
}

/// Debian's ansible on the host (scripts/deps.sh ansible).
fn install_ansible() {
    let st = Command::new("bash")
        .arg(repo().join("scripts/deps.sh"))
        .arg("ansible")
        .stdin(Stdio::null())
        .status()
        .expect("run scripts/deps.sh ansible");
    assert!(st.success(), "scripts/deps.sh ansible failed");
}

/// What one step of a run_task.py run printed and how it ended.
#[derive(Debug, Default)]
struct Step {
    /// "ok", "failed (exit N)", or "" when it never ended (not run).
    result: String,
    /// Every (task or handler header, result line) of the step, in order.
    results: Vec<(String, String)>,
    /// PLAY RECAP counters by host: name -> (counter -> value).
    recap: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Step {
    /// The headers of the tasks and handlers that reported `changed`.
    fn changed(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|(_, r)| r.starts_with("changed:"))
            .map(|(h, _)| h.as_str())
            .collect()
    }

    fn counter(&self, host: &str, name: &str) -> u64 {
        self.recap
            .get(host)
            .and_then(|c| c.get(name))
            .copied()
            .unwrap_or_else(|| panic!("no {name}= for {host} in the PLAY RECAP: {:?}", self.recap))
    }
}

/// A run of the task file: exit code, all the output, and its steps.
#[derive(Debug)]
struct TaskRun {
    code: i32,
    text: String,
    steps: BTreeMap<String, Step>,
}

impl TaskRun {
    fn step(&self, name: &str) -> &Step {
        self.steps
            .get(name)
            .unwrap_or_else(|| panic!("step {name} did not run:\n{}", self.text))
    }
}

/// Splits run_task.py's output into its steps (`run_task: step <name>: ...`
/// lines) and each step's ansible-playbook output into task results and
/// the PLAY RECAP.
fn parse(text: &str) -> BTreeMap<String, Step> {
    let mut steps: BTreeMap<String, Step> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut header = String::new();
    let mut in_recap = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("run_task: step ") {
            if let Some((name, what)) = rest.split_once(": ") {
                if what.starts_with("ansible-playbook ") {
                    current = Some(name.to_owned());
                    steps.entry(name.to_owned()).or_default();
                    in_recap = false;
                } else if let Some(step) = steps.get_mut(name) {
                    step.result = what.to_owned();
                    current = None;
                }
            }
            continue;
        }
        let Some(step) = current.as_ref().and_then(|n| steps.get_mut(n)) else {
            continue;
        };
        let t = line.trim_end();
        if t.starts_with("PLAY RECAP") {
            in_recap = true;
        } else if let Some(h) = t
            .strip_prefix("TASK [")
            .or_else(|| t.strip_prefix("RUNNING HANDLER ["))
        {
            let kind = if t.starts_with("TASK") {
                "TASK"
            } else {
                "HANDLER"
            };
            let name = h.rsplit_once(']').map_or(h, |(n, _)| n);
            header = format!("{kind} {name}");
            in_recap = false;
        } else if [
            "changed: [",
            "ok: [",
            "fatal: [",
            "skipping: [",
            "failed: [",
        ]
        .iter()
        .any(|p| t.starts_with(p))
        {
            step.results.push((header.clone(), t.to_owned()));
        } else if in_recap {
            if let Some((host, counters)) = t.split_once(" : ") {
                let map = counters
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
                    .collect();
                step.recap.insert(host.trim().to_owned(), map);
            }
        }
    }
    steps
}

/// The deployment folder as the test runs it: a copy of ansible/ whose
/// inventories point at the container (as A-Ops writes them from its host
/// list), with the test's variables and vault password beside it.
struct Deploy {
    dir: PathBuf,
    vars: PathBuf,
    vault_pass: PathBuf,
}

impl Deploy {
    fn new(work: &Path, leader: u32) -> Self {
        let dir = work.join("ansible");
        let st = Command::new("cp")
            .arg("-a")
            .arg(repo().join("ansible"))
            .arg(&dir)
            .status()
            .expect("cp -a ansible/");
        assert!(st.success(), "copy ansible/");
        for step in ["gala_gopher", "gala_spider"] {
            // No sudo in the container: su, as root, to root.
            let inv = format!(
                "# Written by tests/integration/ansible.rs: the test's container.\n\
                 {step}_hosts:\n  hosts:\n    ct:\n\
                 \x20     ansible_connection: community.docker.nsenter\n\
                 \x20     ansible_nsenter_pid: {leader}\n\
                 \x20     ansible_python_interpreter: /usr/bin/python3\n\
                 \x20     ansible_become_method: su\n"
            );
            std::fs::write(dir.join("inventory").join(step), inv).expect("write inventory");
        }

        // The vault password file, and the Neo4j password encrypted with it
        // as the vars file tells users to (ansible-vault encrypt_string).
        let vault_pass = work.join("vault-pass");
        std::fs::write(&vault_pass, "gala-test-vault\n").expect("vault password file");
        let out = Command::new("ansible-vault")
            .args(["encrypt_string", "--vault-password-file"])
            .arg(&vault_pass)
            .args([NEO4J_PASSWORD, "--name", "gala_spider_neo4j_password"])
            .stdin(Stdio::null())
            .output()
            .expect("ansible-vault");
        assert!(
            out.status.success(),
            "ansible-vault encrypt_string: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vaulted = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(vaulted.contains("!vault"), "{vaulted}");

        let vars = work.join("test_vars.yml");
        let text = format!(
            "# The test's variables (tests/integration/ansible.rs), given with -e @file.\n\
             # The local rpms: no openEuler repository here (--nodeps: the Debian\n\
             # rpm database lists none of their dependencies).\n\
             gala_gopher_rpm: /rpms/{gopher}\n\
             gala_gopher_rpm_nodeps: true\n\
             gala_spider_rpm: /rpms/{spider}\n\
             gala_spider_rpm_nodeps: true\n\
             gala_gopher_kafka_host: {KAFKA_HOST}\n\
             gala_gopher_listening_kafka_port: {KAFKA_PORT}\n\
             gala_gopher_kafka_compression_codec: lz4\n\
             gala_spider_kafka_host: {KAFKA_HOST}\n\
             gala_spider_kafka_port: {KAFKA_PORT}\n\
             exclude_addr: [\"10.9.9.9\", \"192.168.0.0/16\"]\n\
             {vaulted}\n",
            gopher = file_name(&crate::rpm::packages().gopher),
            spider = file_name(&crate::rpm::packages().spider),
        );
        std::fs::write(&vars, text).expect("test vars");
        Self {
            dir,
            vars,
            vault_pass,
        }
    }

    /// ansible/run_task.py tasks/deploy_gala.yml with the test's variables
    /// and `extra` (`-e name=value` overrides).
    fn run(&self, what: &str, extra: &[&str]) -> TaskRun {
        let t0 = Instant::now();
        let out = Command::new("python3")
            .arg(self.dir.join("run_task.py"))
            .arg(self.dir.join("tasks/deploy_gala.yml"))
            .arg("-e")
            .arg(format!("@{}", self.vars.display()))
            .arg("--vault-password-file")
            .arg(&self.vault_pass)
            .args(extra)
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .env("ANSIBLE_LOCAL_TEMP", self.dir.join(".ansible-tmp"))
            .stdin(Stdio::null())
            .output()
            .expect("python3 ansible/run_task.py");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "ansible: {what}: run_task.py exited {:?} after {:.1?}",
            out.status.code(),
            t0.elapsed()
        );
        TaskRun {
            code: out.status.code().unwrap_or(-1),
            steps: parse(&text),
            text,
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .expect("rpm file name")
        .to_string_lossy()
        .into_owned()
}

const KAFKA_HOST: &str = "kafka.gala.test";
const KAFKA_PORT: u16 = 19092;
const NEO4J_PASSWORD: &str = "n3o4j \"vaulted\" secret";
const CONF: &str = "/etc/gala-gopher/gala-gopher.toml";
const SPIDER_CONF: &str = "/etc/gala-spider/gala-spider.toml";

fn main_pid(c: &Container, unit: &str) -> String {
    let pid = c.ok(&format!("systemctl show -p MainPID --value {unit}"));
    let pid = pid.trim().to_owned();
    assert_ne!(pid, "0", "{unit} has no main process");
    pid
}

fn scrape(c: &Container) -> String {
    c.ok("curl -sf http://127.0.0.1:8888/metrics")
}

/// How many reloads the agent has logged so far.
fn reloads(c: &Container) -> usize {
    c.ok("journalctl -u gala-gopher --no-pager -o cat")
        .lines()
        .filter(|l| l.contains("SIGHUP: reopening the log files and reloading"))
        .count()
}

/// Both steps ran and succeeded, with no failed host.
fn assert_ok(run: &TaskRun) {
    assert_eq!(run.code, 0, "the task failed:\n{}", run.text);
    for name in ["gala_gopher", "gala_spider"] {
        let s = run.step(name);
        assert_eq!(s.result, "ok", "step {name}:\n{}", run.text);
        assert_eq!(s.counter("ct", "failed"), 0, "{}", run.text);
        assert_eq!(s.counter("ct", "unreachable"), 0, "{}", run.text);
    }
}

#[test]
fn the_aops_task_deploys_gopher_and_spider_into_a_systemd_container() {
    require_root();
    let t0 = Instant::now();
    install_ansible();
    let work = tempfile::tempdir().expect("tempdir");
    // The rpms, copied so that a later build cannot change them under the
    // container.
    let p = crate::rpm::packages();
    let rpms = work.path().join("rpms");
    std::fs::create_dir_all(&rpms).expect("rpm dir");
    for src in [&p.gopher, &p.spider] {
        std::fs::copy(src, rpms.join(file_name(src))).expect("copy rpm");
    }
    let root = container::root();
    let c = Container::boot(&root, &[(rpms.as_path(), "/rpms")]);
    eprintln!("ansible: container booted ({:.0?} so far)", t0.elapsed());
    let deploy = Deploy::new(work.path(), c.leader);
    let t_deploy = Instant::now();

    // 1. First run: installed, configured from the variables, running.
    // --diff: the new files' content is shown, but not the ones holding a
    // password.
    let first = deploy.run("first run", &["--diff"]);
    assert_ok(&first);
    for unit in ["gala-gopher", "gala-spider"] {
        assert_eq!(
            c.ok(&format!("systemctl is-active {unit}")).trim(),
            "active",
            "{unit}:\n{}",
            first.text
        );
        assert_eq!(
            c.ok(&format!("systemctl is-enabled {unit}")).trim(),
            "enabled"
        );
    }
    let expo = scrape(&c);
    for t in ["system_meminfo", "system_inode", "system_tcp"] {
        assert!(
            expo.contains(&format!("gala_gopher_{t}_")),
            "no {t} series on :8888 after the deployment:\n{expo}"
        );
    }
    let status = c.ok("curl -sf http://127.0.0.1:11115/gala-spider/api/v1/get_status");
    assert!(status.contains("code"), "gala-spider status: {status}");

    // The agent's Kafka settings and probes come from the variables.
    let conf = c.ok(&format!("cat {CONF}"));
    assert!(
        conf.contains(&format!("kafka_broker = \"{KAFKA_HOST}:{KAFKA_PORT}\""))
            && conf.contains("compression_codec = \"lz4\"")
            && conf.contains("meta_dir = \"/opt/gala-gopher/meta\""),
        "{CONF} does not hold the variables' Kafka settings:\n{conf}"
    );
    assert_eq!(c.ok(&format!("stat -c %a {CONF}")).trim(), "640");
    c.ok(&format!("gala-gopher check-config {CONF}"));
    // The spider's: its broker, its exclusions, and the vault-encrypted
    // password decrypted into a file that root alone reads (the service
    // gets it as a credential).
    let sconf = c.ok(&format!("cat {SPIDER_CONF}"));
    assert!(
        sconf.contains(&format!("broker = \"{KAFKA_HOST}:{KAFKA_PORT}\""))
            && sconf.contains("exclude_addr = [\"10.9.9.9\", \"192.168.0.0/16\"]")
            && sconf.contains("password = \"n3o4j \\\"vaulted\\\" secret\""),
        "{SPIDER_CONF} does not hold the variables:\n{sconf}"
    );
    assert!(
        !first.text.contains("n3o4j"),
        "the vaulted password showed in ansible's output"
    );
    assert_eq!(c.ok(&format!("stat -c %a {SPIDER_CONF}")).trim(), "600");
    let cmdline = c.ok(&format!(
        "tr '\\0' ' ' < /proc/{}/cmdline",
        main_pid(&c, "gala-spider")
    ));
    assert!(
        cmdline.contains("/run/credentials/gala-spider.service/gala-spider.toml"),
        "gala-spider should read the credential copy: {cmdline}"
    );

    // 2. Second run: nothing to do.
    let second = deploy.run("second run", &[]);
    assert_ok(&second);
    for name in ["gala_gopher", "gala_spider"] {
        let s = second.step(name);
        for (host, counters) in &s.recap {
            assert_eq!(
                counters.get("changed"),
                Some(&0),
                "second run, step {name}: {host} changed {:?}:\n{}",
                s.changed(),
                second.text
            );
        }
        assert!(!s.recap.is_empty(), "no PLAY RECAP:\n{}", second.text);
    }

    // 3. One probe switch off: the config changes, the agent reloads once,
    // in place, and the probe's series vanish.
    let pid = main_pid(&c, "gala-gopher");
    let reloads_before = reloads(&c);
    let off = deploy.run(
        "system_inode off",
        &["-e", "probes_system_inode=off", "--diff"],
    );
    assert_ok(&off);
    // The config's diff: one line, the probe's switch.
    let diff: Vec<&str> = off
        .text
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert_eq!(
        diff,
        ["-switch = \"on\"", "+switch = \"off\""],
        "{}",
        off.text
    );
    assert!(
        off.text.contains(
            " name = \"system_inode\"\n param = \"-t 5\"\n-switch = \"on\"\n+switch = \"off\"\n"
        ),
        "the switch that changed should be system_inode's:\n{}",
        off.text
    );
    let changed = off.step("gala_gopher").changed();
    assert!(
        changed.len() == 2
            && changed[0].starts_with(&format!("TASK ../roles/gala_gopher : Render {CONF}"))
            && changed[1] == "HANDLER ../roles/gala_gopher : apply the gala-gopher config",
        "only the config and one reload should change: {changed:?}\n{}",
        off.text
    );
    assert_eq!(
        off.step("gala_spider").counter("ct", "changed"),
        0,
        "{}",
        off.text
    );
    assert_eq!(main_pid(&c, "gala-gopher"), pid, "a reload, not a restart");
    c.wait_ok(
        Duration::from_secs(10),
        "the reload to be logged",
        &format!(
            "test $(journalctl -u gala-gopher --no-pager -o cat | grep -c 'SIGHUP: reopening the log files and reloading') -eq {}",
            reloads_before + 1
        ),
    );
    c.wait_ok(
        Duration::from_secs(20),
        "system_inode's series to vanish",
        "! curl -sf http://127.0.0.1:8888/metrics | grep -q '^gala_gopher_system_inode_'",
    );
    let expo = scrape(&c);
    assert!(
        expo.contains("gala_gopher_system_meminfo_"),
        "the other probes run on:\n{expo}"
    );
    assert_eq!(reloads(&c), reloads_before + 1, "exactly one reload");

    // 4. A bad variable: the play fails at the config step with
    // check-config's message; the agent runs on, untouched.
    let conf_before = c.ok(&format!("cat {CONF}"));
    let bad = deploy.run(
        "web port 0",
        &[
            "-e",
            "probes_system_inode=off",
            "-e",
            "gala_gopher_prometheus_port=0",
        ],
    );
    assert_ne!(bad.code, 0, "a port of 0 should fail:\n{}", bad.text);
    let g = bad.step("gala_gopher");
    assert!(g.result.starts_with("failed"), "{}", bad.text);
    let fatal: Vec<&(String, String)> = g
        .results
        .iter()
        .filter(|(_, r)| r.starts_with("fatal:"))
        .collect();
    assert!(
        fatal.len() == 1
            && fatal[0]
                .0
                .starts_with(&format!("TASK ../roles/gala_gopher : Render {CONF}"))
            && fatal[0].1.contains("web_server.port")
            && fatal[0].1.contains("expected a port 1..65535, got 0"),
        "the play should fail at the config step with check-config's message: {fatal:?}\n{}",
        bad.text
    );
    assert!(
        !bad.steps.contains_key("gala_spider") && bad.text.contains("continue: false"),
        "the task should stop after the failed step:\n{}",
        bad.text
    );
    assert_eq!(
        c.ok(&format!("cat {CONF}")),
        conf_before,
        "config untouched"
    );
    assert_eq!(c.ok("systemctl is-active gala-gopher").trim(), "active");
    assert_eq!(
        main_pid(&c, "gala-gopher"),
        pid,
        "the agent was not restarted"
    );
    assert_eq!(reloads(&c), reloads_before + 1, "nor reloaded");
    let expo = scrape(&c);
    assert!(
        expo.contains("gala_gopher_system_meminfo_") && !expo.contains("gala_gopher_system_inode_"),
        "the agent should serve its old config on :8888:\n{expo}"
    );

    // 5. The switch back on: the series come back, again by one reload.
    let on = deploy.run("system_inode on again", &[]);
    assert_ok(&on);
    assert_eq!(on.step("gala_gopher").changed().len(), 2, "{}", on.text);
    c.wait_ok(
        Duration::from_secs(20),
        "system_inode's series to come back",
        "curl -sf http://127.0.0.1:8888/metrics | grep -q '^gala_gopher_system_inode_'",
    );
    assert_eq!(main_pid(&c, "gala-gopher"), pid);
    assert_eq!(reloads(&c), reloads_before + 2);

    eprintln!(
        "ansible: five runs of the task in {:.0?}; whole test {:.0?}",
        t_deploy.elapsed(),
        t0.elapsed()
    );
}

/// The static side, no container: the playbooks pass
/// `ansible-playbook --syntax-check`, each role's defaults hold the values
/// of its vars file, the task file enables both steps as A-Ops writes
/// them, and run_task.py skips a disabled step.
#[test]
fn the_ansible_folder_is_consistent() {
    install_ansible();
    let dir = repo().join("ansible");
    for step in ["gala_gopher", "gala_spider"] {
        let out = Command::new("ansible-playbook")
            .args(["--syntax-check", "-i"])
            .arg(format!("inventory/{step}"))
            .arg(format!("playbooks/{step}.yml"))
            .current_dir(&dir)
            .env("ANSIBLE_NOCOLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("ansible-playbook");
        assert!(
            out.status.success(),
            "syntax check of playbooks/{step}.yml:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Python with PyYAML (it comes with ansible): every variable of the
    // vars file has the same value in the role's defaults.
    let script = r#"
import sys, yaml
d = sys.argv[1]
bad = []
for name in ("gala_gopher", "gala_spider"):
    v = yaml.safe_load(open(f"{d}/vars/{name}_vars.yml"))
    r = yaml.safe_load(open(f"{d}/roles/{name}/defaults/main.yml"))
    for k, x in v.items():
        if r.get(k, object()) != x:
            bad.append(f"{name}: {k}: vars file {x!r}, role defaults {r.get(k)!r}")
    for k in ("install_" + name, "config_" + name, "start_" + name):
        if r.get(k) is not True:
            bad.append(f"{name}: role defaults lack {k}: true")
t = yaml.safe_load(open(f"{d}/tasks/deploy_gala.yml"))
steps = t["step_list"]
if list(steps) != ["gala_gopher", "gala_spider"]:
    bad.append(f"tasks/deploy_gala.yml: steps {list(steps)}")
for s, info in steps.items():
    if info != {"enable": True, "continue": False}:
        bad.append(f"tasks/deploy_gala.yml: {s}: {info}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "ansible/ is not consistent:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // run_task.py: disabled steps are skipped, not run.
    let work = tempfile::tempdir().expect("tempdir");
    let task = work.path().join("none.yml");
    std::fs::write(
        &task,
        "step_list:\n  gala_gopher:\n    enable: false\n    continue: false\n  gala_spider:\n    enable: false\n    continue: true\n",
    )
    .expect("task file");
    let out = Command::new("python3")
        .arg(dir.join("run_task.py"))
        .arg(&task)
        .stdin(Stdio::null())
        .output()
        .expect("run_task.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains("run_task: step gala_gopher: skipped")
            && text.contains("run_task: step gala_spider: skipped")
            && !text.contains("ansible-playbook"),
        "run_task.py with every step disabled:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_output_parser_reads_steps_tasks_and_the_recap() {
    let text = "run_task: step gala_gopher: ansible-playbook -i inventory/gala_gopher playbooks/gala_gopher.yml\n\
                \n\
                PLAY [gala_gopher_hosts] *****\n\
                \n\
                TASK [../roles/gala_gopher : Render /etc/x] *****\n\
                changed: [ct]\n\
                \n\
                RUNNING HANDLER [../roles/gala_gopher : apply] *****\n\
                changed: [ct]\n\
                \n\
                TASK [../roles/gala_gopher : Wait] *****\n\
                ok: [ct]\n\
                \n\
                PLAY RECAP *****\n\
                ct                         : ok=3    changed=2    unreachable=0    failed=0    skipped=0\n\
                \n\
                run_task: step gala_gopher: ok\n\
                run_task: step gala_spider: skipped (enable: false)\n";
    let steps = parse(text);
    let g = &steps["gala_gopher"];
    assert_eq!(g.result, "ok");
    assert_eq!(
        g.changed(),
        [
            "TASK ../roles/gala_gopher : Render /etc/x",
            "HANDLER ../roles/gala_gopher : apply"
        ]
    );
    assert_eq!(g.counter("ct", "changed"), 2);
    assert_eq!(g.counter("ct", "ok"), 3);
    assert!(!steps.contains_key("gala_spider"));
}
