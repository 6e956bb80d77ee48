//! The probe on the real kernel, in this process: a [`Watch`] changed while
//! the probe runs takes effect without a restart (what the agent's REST API
//! and gopher-ctl do through the daemon). Needs root (eBPF): not being root
//! is a failure saying so.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::api::{Emitted, Payload, Shutdown};

/// Listens on loopback; on a line from stdin opens argv[1] connections to
/// itself and holds them until stdin closes.
const PEER: &str = r#"
import socket, sys
n = int(sys.argv[1])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
print(srv.getsockname()[1], flush=True)
sys.stdin.readline()
cs = [socket.create_connection(("127.0.0.1", srv.getsockname()[1])) for _ in range(n)]
acc = [srv.accept()[0] for _ in range(n)]
print("connected", flush=True)
sys.stdin.read()
"#;

struct Peer {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    port: String,
}

impl Peer {
    fn start(conns: usize) -> Self {
        let mut child = Command::new("python3")
            .args(["-c", PEER, &conns.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed by this test");
        let stdin = child.stdin.take().expect("stdin");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut port = String::new();
        out.read_line(&mut port).expect("port");
        Self {
            child,
            stdin,
            out,
            port: port.trim().to_owned(),
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn connect(&mut self) {
        self.stdin.write_all(b"go\n").expect("write");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.out.read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "connected");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One period's records: the stats record and the `(pid, role)` of the
/// tcp_link records on `ports`.
struct Period {
    stats: Vec<String>,
    series: HashSet<(String, String)>,
}

impl Period {
    fn stat(&self, name: &str) -> &str {
        let i = STATS_FIELDS
            .iter()
            .position(|f| *f == name)
            .expect("stats field");
        self.stats.get(i).map_or("", String::as_str)
    }
}

/// Records up to the next stats record (the last of each period).
fn next_period(rx: &Receiver<Emitted>, ports: &[&str]) -> Period {
    let mut series = HashSet::new();
    loop {
        let e = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a record from the probe");
        let Payload::Record { table, values } = e.payload else {
            continue;
        };
        if table == STATS_TABLE {
            return Period {
                stats: values,
                series,
            };
        }
        if ports.contains(&values[5].as_str()) {
            series.insert((values[0].clone(), values[2].clone()));
        }
    }
}

fn until(rx: &Receiver<Emitted>, ports: &[&str], what: &str, ok: impl Fn(&Period) -> bool) {
    let t0 = Instant::now();
    loop {
        let p = next_period(rx, ports);
        if ok(&p) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{what}: last stats {:?}, series {:?}",
            p.stats,
            p.series
        );
    }
}

#[test]
fn a_running_probe_takes_a_new_selection_without_a_restart() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads eBPF programs and needs root; run the tests as root"
    );
    let watch = Watch::default();
    let (tx, rx) = sync_channel(1 << 16);
    let shutdown = Shutdown::new();
    let cx = ProbeContext {
        emitter: Emitter::new(Arc::from(PROBE), tx, Arc::new(AtomicU64::new(0))),
        params: Params::parse("-t 1").expect("params"),
        shutdown: shutdown.clone(),
    };
    let probe = with_watch(watch.clone());
    let running = std::thread::spawn(move || probe.run(cx));

    let mut a = Peer::start(2);
    let mut b = Peer::start(3);
    let ports = [a.port.clone(), b.port.clone()];
    let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
    // Every process first; then only `a`, set while the probe runs.
    until(&rx, &ports, "the probe reports", |p| {
        p.stat("watched_tgids") == "0"
    });
    watch
        .set(Selection {
            proc_id: vec![a.child.id()],
            ..Selection::default()
        })
        .expect("valid");
    until(&rx, &ports, "a is watched", |p| {
        p.stat("watched_tgids") == "1"
    });
    a.connect();
    b.connect();
    let want: HashSet<(String, String)> =
        [(a.pid(), "0".to_owned()), (a.pid(), "1".to_owned())].into();
    until(&rx, &ports, "a's series and entries only", |p| {
        p.series == want && p.stat("conn_entries") == "4"
    });
    for _ in 0..2 {
        let p = next_period(&rx, &ports);
        assert_eq!(p.series, want, "b ({}) never shows", b.pid());
        assert_eq!(p.stat("conn_entries"), "4", "no entry for b's connections");
    }
    // Back to every process: the map empties and the flag is cleared.
    watch.set(Selection::default()).expect("valid");
    until(&rx, &ports, "every process again", |p| {
        p.stat("watched_tgids") == "0"
    });

    shutdown.trigger();
    let result = running.join().expect("probe thread");
    assert!(result.is_ok(), "{result:?}");
}
