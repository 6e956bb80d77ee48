//! The daemon's side of the legacy 2.x probe IPC (docs/compat.md §10).
//!
//! A 2.x probe binary reads its parameters and the processes it watches
//! ("snoopers") from a SysV message queue keyed on
//! `ftok("/usr/bin/gala-gopher", 'g')`, once at start (it drains the queue
//! without waiting and keeps the last message of its type) and then every
//! time it polls. It has no defaults of its own: the message must be queued
//! before it starts. So, for an extend probe with an `ipc` block:
//!
//! - [`prepare`] runs before every start and restart of the probe: it opens
//!   (or creates, mode 0600) the queue, resolves the snoopers and queues the
//!   probe's message;
//! - [`rescan`] runs every [`RESCAN`] while the probe lives and queues a new
//!   message (flag "snoopers changed") when the set of processes changed;
//! - [`update`] replaces a probe's params and snoopers at run time (a config
//!   reload; later the REST API) and queues the message when anything changed;
//! - [`release`] forgets every probe and removes the queue if this process
//!   created it (the daemon calls it when it stops).
//!
//! Message (after the `long` mtype, which is the probe type): `u32
//! msg_flag`, `u32 msg_len`, then `msg_len` bytes of TLVs `{u16 type, u16
//! len, value}`: 100 the range flags (u32), 101 the 2.x `struct
//! probe_params` ([`PARAMS_SIZE`] bytes), 102 the snooper count (u32), then
//! one TLV per snooper: a process `{0, 4, u32 pid}` or a container `{1, len,
//! u32 cgroup inode, sub-TLV 1000 holding the NUL-terminated id}`. Native
//! byte order, as the C structs are. Everything here is written from the
//! documented layout; nothing on any input panics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::config::ipc::{Ere, LegacyIpcConf, LegacyParams, ProcName, Snoopers};

/// The path the 2.x probes key the queue on (hard-coded in them).
pub const KEY_PATH: &str = "/usr/bin/gala-gopher";
/// The `ftok` project id.
pub const KEY_PROJECT: u8 = b'g';
/// Queue permissions.
pub const QUEUE_MODE: libc::c_int = 0o600;
/// The queue size the 2.x agent asked for (bytes).
pub const QUEUE_BYTES: u64 = 4 * 1024 * 1024;
/// Most snoopers in one message.
pub const MAX_SNOOPERS: usize = 1000;
/// How often the snoopers of a running probe are looked up again.
pub const RESCAN: Duration = Duration::from_secs(5);

/// `msg_flag`: the snoopers changed.
pub const FLAG_SNOOPERS_CHANGED: u32 = 0x1;
/// `msg_flag`: the params changed.
pub const FLAG_PARAMS_CHANGED: u32 = 0x2;

/// TLV types.
pub const TLV_RANGE: u16 = 100;
/// TLV: the params struct.
pub const TLV_PARAMS: u16 = 101;
/// TLV: the snooper count.
pub const TLV_SNOOPER_COUNT: u16 = 102;
/// Snooper TLV: a process.
pub const TLV_PROC: u16 = 0;
/// Snooper TLV: a container.
pub const TLV_CONTAINER: u16 = 1;
/// Container sub-TLV: its id.
pub const TLV_CONTAINER_ID: u16 = 1000;

/// Size of the 2.x (2.0.2) `struct probe_params`.
pub const PARAMS_SIZE: usize = 1184;

/// Every field of the 2.x `struct probe_params`: (name, offset, size).
/// Derived from the 2.x `src/common/args.h`: six `unsigned int`, ten
/// `char`, `target_dev[32]`, `elf_path[512]`, two bytes of padding, three
/// `unsigned int`, `pyroscope_server[64]`, `output_dir[256]`,
/// `flame_dir[256]`, four `unsigned int`.
pub const PARAMS_LAYOUT: &[(&str, usize, usize)] = &[
    ("period", 0, 4),
    ("sample_period", 4, 4),
    ("latency_thr", 8, 4),
    ("offline_thr", 12, 4),
    ("drops_count_thr", 16, 4),
    ("kafka_port", 20, 4),
    ("logs", 24, 1),
    ("metrics_flags", 25, 1),
    ("env_flags", 26, 1),
    ("support_ssl", 27, 1),
    ("res_percent_upper", 28, 1),
    ("res_percent_lower", 29, 1),
    ("continuous_sampling_flag", 30, 1),
    ("multi_instance_flag", 31, 1),
    ("native_stack_flag", 32, 1),
    ("cluster_ip_backend", 33, 1),
    ("target_dev", 34, 32),
    ("elf_path", 66, 512),
    ("l7_probe_proto_flags", 580, 4),
    ("svg_period", 584, 4),
    ("perf_sample_period", 588, 4),
    ("pyroscope_server", 592, 64),
    ("output_dir", 656, 256),
    ("flame_dir", 912, 256),
    ("cadvisor_port", 1168, 4),
    ("profiling_chan", 1172, 4),
    ("min_exec_dur", 1176, 4),
    ("min_aggr_dur", 1180, 4),
];

fn field(name: &str) -> (usize, usize) {
    PARAMS_LAYOUT
        .iter()
        .find(|(n, ..)| *n == name)
        .map_or((0, 0), |(_, o, s)| (*o, *s))
}

/// Encodes `p` as the 2.x `struct probe_params`, with the 2.x defaults for
/// what it leaves out (period 60 s, sample period 5000 ms, metrics raw and
/// telemetry, env node, kafka port 9092, cadvisor port 8083, svg period
/// 180 s, perf sample period 10 ms, pyroscope `localhost:4040`, flame dir
/// `/var/log/gala-gopher/flamegraph`; 0 or empty for the rest). Strings are
/// cut to fit with their NUL (the config reader refuses longer ones).
pub fn encode_params(p: &LegacyParams) -> [u8; PARAMS_SIZE] {
    let mut b = [0u8; PARAMS_SIZE];
    let mut u32_at = |name: &str, v: u32| {
        let (o, _) = field(name);
        if let Some(dst) = b.get_mut(o..o + 4) {
            dst.copy_from_slice(&v.to_ne_bytes());
        }
    };
    u32_at("period", p.report_period.unwrap_or(60));
    u32_at("sample_period", p.sample_period.unwrap_or(5000));
    u32_at("latency_thr", p.latency_thr.unwrap_or(0));
    u32_at("offline_thr", p.offline_thr.unwrap_or(0));
    u32_at("drops_count_thr", p.drops_thr.unwrap_or(0));
    u32_at("kafka_port", p.kafka_port.unwrap_or(9092));
    u32_at("l7_probe_proto_flags", p.l7_protocol.unwrap_or(0));
    u32_at("svg_period", p.svg_period.unwrap_or(180));
    u32_at("perf_sample_period", p.perf_sample_period.unwrap_or(10));
    u32_at("cadvisor_port", p.cadvisor_port.unwrap_or(8083));
    u32_at("profiling_chan", p.profiling_chan.unwrap_or(0));
    u32_at("min_exec_dur", p.min_exec_dur.unwrap_or(0));
    u32_at("min_aggr_dur", p.min_aggr_dur.unwrap_or(0));
    let mut byte_at = |name: &str, v: u8| {
        let (o, _) = field(name);
        if let Some(dst) = b.get_mut(o) {
            *dst = v;
        }
    };
    byte_at("logs", p.report_event.unwrap_or(0));
    byte_at(
        "metrics_flags",
        u8::try_from(p.metrics_type.unwrap_or(0x3)).unwrap_or(0x3),
    );
    byte_at(
        "env_flags",
        u8::try_from(p.env.unwrap_or(0x1)).unwrap_or(0x1),
    );
    byte_at("support_ssl", p.support_ssl.unwrap_or(0));
    byte_at("res_percent_upper", p.res_upper_thr.unwrap_or(0));
    byte_at("res_percent_lower", p.res_lower_thr.unwrap_or(0));
    byte_at(
        "continuous_sampling_flag",
        p.continuous_sampling.unwrap_or(0),
    );
    byte_at("multi_instance_flag", p.multi_instance.unwrap_or(0));
    byte_at("native_stack_flag", p.native_stack.unwrap_or(0));
    byte_at("cluster_ip_backend", p.cluster_ip_backend.unwrap_or(0));
    let mut str_at = |name: &str, v: &str| {
        let (o, size) = field(name);
        let n = v.len().min(size.saturating_sub(1));
        if let (Some(dst), Some(src)) = (b.get_mut(o..o + n), v.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
        }
    };
    str_at("target_dev", p.dev_name.as_deref().unwrap_or(""));
    str_at("elf_path", p.elf_path.as_deref().unwrap_or(""));
    str_at(
        "pyroscope_server",
        p.pyroscope_server.as_deref().unwrap_or("localhost:4040"),
    );
    str_at("output_dir", p.output_dir.as_deref().unwrap_or(""));
    str_at(
        "flame_dir",
        p.flame_dir
            .as_deref()
            .unwrap_or("/var/log/gala-gopher/flamegraph"),
    );
    b
}

/// One watched object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Snooper {
    /// A process, by pid.
    Proc(u32),
    /// A container: the inode of its cpu cgroup directory, and its id.
    Container {
        /// Inode of the container's cgroup directory (cpu controller).
        cgroup_inode: u32,
        /// The container id as configured.
        id: String,
    },
}

fn tlv(out: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(value.get(..usize::from(len)).unwrap_or(value));
}

fn snooper_tlv(s: &Snooper) -> Vec<u8> {
    let mut out = Vec::new();
    match s {
        Snooper::Proc(pid) => tlv(&mut out, TLV_PROC, &pid.to_ne_bytes()),
        Snooper::Container { cgroup_inode, id } => {
            let mut value = cgroup_inode.to_ne_bytes().to_vec();
            let mut id_z = id.as_bytes().iter().take(255).copied().collect::<Vec<u8>>();
            id_z.push(0);
            tlv(&mut value, TLV_CONTAINER_ID, &id_z);
            tlv(&mut out, TLV_CONTAINER, &value);
        }
    }
    out
}

/// The message body after the mtype: `msg_flag`, `msg_len`, the TLVs. At
/// most [`MAX_SNOOPERS`] snoopers, and no more than fit in `max_body`
/// bytes (the kernel's `msgmax`): the rest are left out, and the second
/// value says how many were.
pub fn encode_body(
    flag: u32,
    range_flags: u32,
    params: &[u8; PARAMS_SIZE],
    snoopers: &[Snooper],
    max_body: usize,
) -> (Vec<u8>, usize) {
    let mut head = Vec::with_capacity(PARAMS_SIZE + 64);
    tlv(&mut head, TLV_RANGE, &range_flags.to_ne_bytes());
    tlv(&mut head, TLV_PARAMS, params);
    let mut tail = Vec::new();
    let mut count: u32 = 0;
    // 8 bytes of msg_flag and msg_len, 8 of the count TLV.
    let fixed = 8 + head.len() + 8;
    for s in snoopers.iter().take(MAX_SNOOPERS) {
        let t = snooper_tlv(s);
        if fixed + tail.len() + t.len() > max_body {
            break;
        }
        tail.extend_from_slice(&t);
        count += 1;
    }
    tlv(&mut head, TLV_SNOOPER_COUNT, &count.to_ne_bytes());
    head.extend_from_slice(&tail);
    let mut body = Vec::with_capacity(8 + head.len());
    body.extend_from_slice(&flag.to_ne_bytes());
    body.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_ne_bytes());
    body.extend_from_slice(&head);
    let left_out = snoopers.len().saturating_sub(count as usize);
    (body, left_out)
}

/// Why a 2.x probe cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// The key path is missing: the probes cannot find the queue.
    #[error(
        "a legacy 2.x probe binary finds its message queue by the key ftok(\"{KEY_PATH}\", 'g'), which needs \
         {KEY_PATH} to exist, and it does not; install gala-gopher as {KEY_PATH} (or create that file) and \
         restart the probe"
    )]
    NoKeyPath,
    /// A system call failed.
    #[error("the legacy 2.x message queue: {0}")]
    Sys(String),
    /// The config of the probe is wrong.
    #[error("{0}")]
    Config(String),
}

#[derive(Debug)]
struct Queue {
    id: libc::c_int,
    created: bool,
}

#[derive(Debug)]
struct Entry {
    conf: LegacyIpcConf,
    /// The snoopers last sent.
    sent: Vec<Snooper>,
}

#[derive(Debug, Default)]
struct State {
    queue: Option<Queue>,
    probes: BTreeMap<String, Entry>,
}

static STATE: Mutex<State> = Mutex::new(State {
    queue: None,
    probes: BTreeMap::new(),
});

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn os_err(what: &str) -> IpcError {
    IpcError::Sys(format!("{what}: {}", std::io::Error::last_os_error()))
}

fn open_queue(key_path: &Path) -> Result<Queue, IpcError> {
    if !key_path.exists() {
        return Err(IpcError::NoKeyPath);
    }
    let c = std::ffi::CString::new(key_path.as_os_str().as_encoded_bytes())
        .map_err(|_| IpcError::Sys("the key path holds a NUL byte".into()))?;
    // SAFETY: ftok reads a NUL-terminated path.
    let key = unsafe { libc::ftok(c.as_ptr(), libc::c_int::from(KEY_PROJECT)) };
    if key == -1 {
        return Err(os_err(&format!("ftok({})", key_path.display())));
    }
    // SAFETY: plain msgget calls.
    let id = unsafe { libc::msgget(key, QUEUE_MODE | libc::IPC_CREAT | libc::IPC_EXCL) };
    if id >= 0 {
        grow_queue(id);
        tracing::info!(
            msqid = id,
            key = format!("{key:#x}"),
            "created the legacy 2.x message queue"
        );
        return Ok(Queue { id, created: true });
    }
    // SAFETY: as above.
    let id = unsafe { libc::msgget(key, QUEUE_MODE) };
    if id < 0 {
        return Err(os_err("msgget"));
    }
    tracing::info!(msqid = id, "using the existing legacy 2.x message queue");
    Ok(Queue { id, created: false })
}

/// Asks for the queue size the 2.x agent used; above the system's
/// `msgmnb` this needs CAP_SYS_RESOURCE, and the default size still works.
fn grow_queue(id: libc::c_int) {
    // SAFETY: msqid_ds is plain data; IPC_STAT fills it.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes into `ds` only.
    if unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) } != 0 {
        return;
    }
    #[allow(clippy::unnecessary_cast)]
    if (ds.msg_qbytes as u64) >= QUEUE_BYTES {
        return;
    }
    ds.msg_qbytes = QUEUE_BYTES as _;
    // SAFETY: IPC_SET reads `ds`.
    if unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) } != 0 {
        tracing::debug!(
            "the legacy message queue keeps the system's default size: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The largest message body the kernel accepts (`msgmax`).
fn msgmax() -> usize {
    std::fs::read_to_string("/proc/sys/kernel/msgmax")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(8192)
}

/// Drains the messages of `mtype` still queued (a probe that died before
/// reading them), returning their flags ORed.
fn drain(id: libc::c_int, mtype: u32) -> u32 {
    let mut flags = 0;
    let mut buf = vec![0u8; 8 + 64 * 1024];
    for _ in 0..10_000 {
        // SAFETY: msgrcv writes at most 64 KiB after the 8-byte mtype into
        // `buf`; MSG_NOERROR cuts longer messages.
        let n = unsafe {
            libc::msgrcv(
                id,
                buf.as_mut_ptr().cast(),
                64 * 1024,
                libc::c_long::from(mtype),
                libc::IPC_NOWAIT | libc::MSG_NOERROR,
            )
        };
        if n < 4 {
            break;
        }
        if let Some(f) = buf.get(8..12) {
            flags |= u32::from_ne_bytes([f[0], f[1], f[2], f[3]]);
        }
    }
    flags
}

fn send(q: &Queue, mtype: u32, body: &[u8]) -> Result<(), IpcError> {
    let mut msg = Vec::with_capacity(8 + body.len());
    msg.extend_from_slice(&libc::c_long::from(mtype).to_ne_bytes());
    msg.extend_from_slice(body);
    for _ in 0..3 {
        // SAFETY: `msg` is a long mtype followed by `body.len()` bytes.
        let rc = unsafe { libc::msgsnd(q.id, msg.as_ptr().cast(), body.len(), libc::IPC_NOWAIT) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) && e.raw_os_error() != Some(libc::EINTR) {
            return Err(IpcError::Sys(format!("msgsnd (type {mtype}): {e}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(IpcError::Sys(format!(
        "msgsnd (type {mtype}): the queue stays full (is another program filling it?)"
    )))
}

/// Resolves snoopers `s`: live `proc_id`s, the processes whose comm
/// matches a `proc_name` regex and whose command line holds its substring,
/// and the containers whose cgroup is found. Sorted, without duplicates.
/// `quiet` logs unresolved containers at debug level. Shared by the 2.x
/// message queue and by the snoopers given to C and extend probes
/// ([`super::snoopers`]).
pub fn resolve(s: &Snoopers, proc_root: &Path, quiet: bool) -> Vec<Snooper> {
    let mut out: Vec<Snooper> = s
        .proc_id
        .iter()
        .filter(|pid| proc_root.join(pid.to_string()).is_dir())
        .map(|pid| Snooper::Proc(*pid))
        .collect();
    if !s.proc_name.is_empty() {
        let matchers: Vec<(Ere, &ProcName)> = s
            .proc_name
            .iter()
            .filter_map(|p| Ere::new(&p.comm).ok().map(|e| (e, p)))
            .collect();
        for pid in pids(proc_root) {
            let dir = proc_root.join(pid.to_string());
            let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
                continue;
            };
            let comm = comm.trim_end_matches('\n');
            let cmdline = std::fs::read(dir.join("cmdline"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .replace('\0', " ")
                        .trim_end()
                        .to_owned()
                })
                .unwrap_or_default();
            if matchers
                .iter()
                .any(|(re, p)| re.is_match(comm) && cmdline.contains(&p.cmdline))
            {
                out.push(Snooper::Proc(pid));
            }
        }
    }
    for id in &s.container_id {
        match container_inode(proc_root, id) {
            Some(cgroup_inode) => out.push(Snooper::Container {
                cgroup_inode,
                id: id.clone(),
            }),
            None if quiet => tracing::debug!(container = %id, "container not found"),
            None => tracing::warn!(
                container = %id,
                "snooper container_id: no process runs in a cgroup naming this container, so it is not sent \
                 (looked again every {} s)",
                RESCAN.as_secs()
            ),
        }
    }
    out.sort();
    out.dedup();
    out
}

fn pids(proc_root: &Path) -> Vec<u32> {
    std::fs::read_dir(proc_root)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// The `(controllers, path)` of each line of `/proc/<pid>/cgroup` whose
/// path names container `id` (ids shorter than 4 characters name none).
fn cgroups_naming(proc_root: &Path, pid: u32, id: &str) -> Vec<(String, String)> {
    if id.len() < 4 {
        return Vec::new();
    }
    let Ok(text) = std::fs::read_to_string(proc_root.join(format!("{pid}/cgroup"))) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return None;
            };
            path.contains(id)
                .then(|| (controllers.to_owned(), path.to_owned()))
        })
        .collect()
}

/// The live processes in container `id` (their cgroup path names it).
pub fn container_pids(proc_root: &Path, id: &str) -> Vec<u32> {
    pids(proc_root)
        .into_iter()
        .filter(|pid| !cgroups_naming(proc_root, *pid, id).is_empty())
        .collect()
}

/// The inode of the cpu cgroup directory of a process whose cgroup path
/// names container `id` (cgroup v2, or the v1 cpu controller).
fn container_inode(proc_root: &Path, id: &str) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    for pid in pids(proc_root) {
        for (controllers, path) in cgroups_naming(proc_root, pid, id) {
            let rel = path.trim_start_matches('/');
            let dirs: Vec<PathBuf> = if controllers.is_empty() {
                vec![Path::new("/sys/fs/cgroup").join(rel)]
            } else if controllers.split(',').any(|c| c == "cpu") {
                ["cpu,cpuacct", "cpu", "cpuacct,cpu"]
                    .iter()
                    .map(|m| Path::new("/sys/fs/cgroup").join(m).join(rel))
                    .collect()
            } else {
                continue;
            };
            if let Some(ino) = dirs.iter().find_map(|d| std::fs::metadata(d).ok()) {
                return u32::try_from(ino.ino() & u64::from(u32::MAX)).ok();
            }
        }
    }
    None
}

fn send_for(
    st: &mut State,
    name: &str,
    key_path: &Path,
    flag: u32,
    quiet: bool,
) -> Result<Option<Vec<Snooper>>, IpcError> {
    if st.queue.is_none() {
        st.queue = Some(open_queue(key_path)?);
    }
    let Some(entry) = st.probes.get(name) else {
        return Ok(None);
    };
    let conf = entry.conf.clone();
    let range = conf.range_flags().map_err(IpcError::Config)?;
    let snoopers = resolve(&conf.snoopers, Path::new("/proc"), quiet);
    let params = encode_params(&conf.params);
    let Some(q) = st.queue.as_ref() else {
        return Ok(None);
    };
    let mtype = conf.probe_type.number();
    let flag = flag | drain(q.id, mtype);
    let (body, left_out) = encode_body(flag, range, &params, &snoopers, msgmax());
    if left_out > 0 {
        tracing::warn!(
            probe = %name,
            left_out,
            "too many snoopers for one message (at most {MAX_SNOOPERS}, and the kernel's msgmax): some are not sent"
        );
    }
    send(q, mtype, &body)?;
    tracing::debug!(probe = %name, mtype, flag, snoopers = snoopers.len(), bytes = body.len(), "queued the legacy 2.x message");
    Ok(Some(snoopers))
}

/// Before a start or restart of the probe `name`: registers `conf` unless
/// a newer one was given by [`update`], then queues its message (params
/// and snoopers both flagged as changed).
pub fn prepare(name: &str, conf: &LegacyIpcConf) -> Result<(), IpcError> {
    prepare_with_key(name, conf, Path::new(KEY_PATH))
}

fn prepare_with_key(name: &str, conf: &LegacyIpcConf, key_path: &Path) -> Result<(), IpcError> {
    let mut st = state();
    st.probes.entry(name.to_owned()).or_insert_with(|| Entry {
        conf: conf.clone(),
        sent: Vec::new(),
    });
    let sent = send_for(
        &mut st,
        name,
        key_path,
        FLAG_SNOOPERS_CHANGED | FLAG_PARAMS_CHANGED,
        false,
    )?;
    if let (Some(sent), Some(e)) = (sent, st.probes.get_mut(name)) {
        e.sent = sent;
    }
    Ok(())
}

/// While the probe `name` runs: looks its snoopers up again and queues a
/// message when they changed. Returns whether it sent one.
pub fn rescan(name: &str) -> Result<bool, IpcError> {
    let mut st = state();
    let Some(e) = st.probes.get(name) else {
        return Ok(false);
    };
    if st.queue.is_none() {
        return Ok(false);
    }
    let now = resolve(&e.conf.snoopers, Path::new("/proc"), true);
    if now == e.sent {
        return Ok(false);
    }
    let sent = send_for(
        &mut st,
        name,
        Path::new(KEY_PATH),
        FLAG_SNOOPERS_CHANGED,
        true,
    )?;
    if let (Some(sent), Some(e)) = (sent, st.probes.get_mut(name)) {
        e.sent = sent;
    }
    Ok(true)
}

/// Replaces the params, sub-probes and snoopers of the probe `name` at run
/// time, and queues its message when anything changed (flags say what).
/// Returns whether it sent one; a probe not started yet only keeps the
/// new conf for its start.
pub fn update(name: &str, conf: &LegacyIpcConf) -> Result<bool, IpcError> {
    conf.range_flags().map_err(IpcError::Config)?;
    let mut st = state();
    let Some(e) = st.probes.get_mut(name) else {
        st.probes.insert(
            name.to_owned(),
            Entry {
                conf: conf.clone(),
                sent: Vec::new(),
            },
        );
        return Ok(false);
    };
    let old = std::mem::replace(&mut e.conf, conf.clone());
    let mut flag = 0;
    if old.params != conf.params
        || old.probe != conf.probe
        || old.range_flags != conf.range_flags
        || old.probe_type != conf.probe_type
    {
        flag |= FLAG_PARAMS_CHANGED;
    }
    let sent_before = e.sent.clone();
    if st.queue.is_none() {
        return Ok(false);
    }
    if resolve(&conf.snoopers, Path::new("/proc"), true) != sent_before {
        flag |= FLAG_SNOOPERS_CHANGED;
    }
    if flag == 0 {
        return Ok(false);
    }
    let sent = send_for(&mut st, name, Path::new(KEY_PATH), flag, false)?;
    if let (Some(sent), Some(e)) = (sent, st.probes.get_mut(name)) {
        e.sent = sent;
    }
    tracing::info!(probe = %name, params_changed = flag & FLAG_PARAMS_CHANGED != 0, snoopers_changed = flag & FLAG_SNOOPERS_CHANGED != 0, "sent the new legacy 2.x message to the running probe");
    Ok(true)
}

/// Forgets every probe and removes the queue if this process created it.
pub fn release() {
    let mut st = state();
    st.probes.clear();
    if let Some(q) = st.queue.take() {
        if q.created {
            // SAFETY: IPC_RMID takes no buffer.
            let rc = unsafe { libc::msgctl(q.id, libc::IPC_RMID, std::ptr::null_mut()) };
            if rc == 0 {
                tracing::info!(msqid = q.id, "removed the legacy 2.x message queue");
            } else {
                tracing::warn!(
                    "cannot remove the legacy 2.x message queue: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ipc::ProbeType;

    fn conf() -> LegacyIpcConf {
        LegacyIpcConf {
            probe_type: ProbeType(8),
            probe: vec!["proc_syscall".into(), "proc_io".into()],
            range_flags: Some(0x100),
            params: LegacyParams::default(),
            snoopers: Snoopers::default(),
        }
    }

    /// The 2.x `struct probe_params` as its C declaration gives it (field
    /// types in order), so that the compiler, not this file, computes the
    /// offsets that [`PARAMS_LAYOUT`] states.
    #[repr(C)]
    struct Params2x {
        period: u32,
        sample_period: u32,
        latency_thr: u32,
        offline_thr: u32,
        drops_count_thr: u32,
        kafka_port: u32,
        logs: u8,
        metrics_flags: u8,
        env_flags: u8,
        support_ssl: u8,
        res_percent_upper: u8,
        res_percent_lower: u8,
        continuous_sampling_flag: u8,
        multi_instance_flag: u8,
        native_stack_flag: u8,
        cluster_ip_backend: u8,
        target_dev: [u8; 32],
        elf_path: [u8; 512],
        l7_probe_proto_flags: u32,
        svg_period: u32,
        perf_sample_period: u32,
        pyroscope_server: [u8; 64],
        output_dir: [u8; 256],
        flame_dir: [u8; 256],
        cadvisor_port: u32,
        profiling_chan: u32,
        min_exec_dur: u32,
        min_aggr_dur: u32,
    }

    #[test]
    fn the_params_layout_is_the_2x_one() {
        use std::mem::{offset_of, size_of};
        macro_rules! field {
            ($f:ident) => {{
                let size = {
                    fn size_of_field<T>(_: impl Fn(&Params2x) -> &T) -> usize {
                        size_of::<T>()
                    }
                    size_of_field(|p: &Params2x| &p.$f)
                };
                (stringify!($f), offset_of!(Params2x, $f), size)
            }};
        }
        let expect = [
            field!(period),
            field!(sample_period),
            field!(latency_thr),
            field!(offline_thr),
            field!(drops_count_thr),
            field!(kafka_port),
            field!(logs),
            field!(metrics_flags),
            field!(env_flags),
            field!(support_ssl),
            field!(res_percent_upper),
            field!(res_percent_lower),
            field!(continuous_sampling_flag),
            field!(multi_instance_flag),
            field!(native_stack_flag),
            field!(cluster_ip_backend),
            field!(target_dev),
            field!(elf_path),
            field!(l7_probe_proto_flags),
            field!(svg_period),
            field!(perf_sample_period),
            field!(pyroscope_server),
            field!(output_dir),
            field!(flame_dir),
            field!(cadvisor_port),
            field!(profiling_chan),
            field!(min_exec_dur),
            field!(min_aggr_dur),
        ];
        assert_eq!(PARAMS_LAYOUT, expect);
        // The size measured with a real 2.0.2 probe binary.
        assert_eq!(size_of::<Params2x>(), 1184);
        assert_eq!(PARAMS_SIZE, 1184);
        // Fields follow each other (with alignment padding only before a
        // u32), and the last ends the struct.
        for w in PARAMS_LAYOUT.windows(2) {
            let (end, next) = (w[0].1 + w[0].2, w[1].1);
            assert!(next >= end && next - end < 4, "{w:?}");
            if next > end {
                assert_eq!(w[1].2, 4, "padding only before a u32: {w:?}");
                assert_eq!(next % 4, 0);
            }
        }
        let last = PARAMS_LAYOUT.last().expect("fields");
        assert_eq!(last.1 + last.2, PARAMS_SIZE);
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
    }

    #[test]
    fn params_encode_values_and_2x_defaults() {
        let b = encode_params(&LegacyParams::default());
        assert_eq!(u32_at(&b, 0), 60);
        assert_eq!(u32_at(&b, 4), 5000);
        assert_eq!(u32_at(&b, 20), 9092);
        assert_eq!((b[25], b[26]), (3, 1));
        assert_eq!(&b[592..606], b"localhost:4040");
        assert_eq!(b[606], 0);
        assert_eq!(u32_at(&b, 1168), 8083);
        let p = LegacyParams {
            report_period: Some(7),
            sample_period: Some(250),
            latency_thr: Some(11),
            res_upper_thr: Some(90),
            report_event: Some(1),
            env: Some(0x6),
            dev_name: Some("eth0".into()),
            elf_path: Some("x".repeat(600)),
            l7_protocol: Some(0x21),
            min_aggr_dur: Some(42),
            ..LegacyParams::default()
        };
        let b = encode_params(&p);
        assert_eq!(u32_at(&b, 0), 7);
        assert_eq!(u32_at(&b, 4), 250);
        assert_eq!(u32_at(&b, 8), 11);
        assert_eq!(b[24], 1);
        assert_eq!(b[26], 6);
        assert_eq!(b[28], 90);
        assert_eq!(&b[34..39], b"eth0\0");
        // Cut to fit with its NUL; the padding after it stays zero.
        assert!(b[66..577].iter().all(|c| *c == b'x'));
        assert_eq!(&b[577..580], &[0, 0, 0]);
        assert_eq!(u32_at(&b, 580), 0x21);
        assert_eq!(u32_at(&b, 1180), 42);
    }

    #[test]
    fn a_full_message_has_the_documented_bytes() {
        let params = encode_params(&LegacyParams::default());
        let snoopers = [
            Snooper::Proc(4242),
            Snooper::Container {
                cgroup_inode: 77,
                id: "abcd".into(),
            },
        ];
        let (body, left) = encode_body(0x3, 0x109, &params, &snoopers, 8192);
        assert_eq!(left, 0);
        let ne16 = |v: u16| v.to_ne_bytes().to_vec();
        let ne32 = |v: u32| v.to_ne_bytes().to_vec();
        let mut want = Vec::new();
        want.extend(ne32(0x3));
        let tlvs_len = 8 + (4 + PARAMS_SIZE) + 8 + 8 + (4 + 4 + 4 + 5);
        want.extend(ne32(tlvs_len as u32));
        want.extend(ne16(100));
        want.extend(ne16(4));
        want.extend(ne32(0x109));
        want.extend(ne16(101));
        want.extend(ne16(1184));
        want.extend_from_slice(&params);
        want.extend(ne16(102));
        want.extend(ne16(4));
        want.extend(ne32(2));
        want.extend(ne16(0));
        want.extend(ne16(4));
        want.extend(ne32(4242));
        want.extend(ne16(1));
        want.extend(ne16(4 + 4 + 5));
        want.extend(ne32(77));
        want.extend(ne16(1000));
        want.extend(ne16(5));
        want.extend_from_slice(b"abcd\0");
        assert_eq!(body, want);
        assert_eq!(body.len(), 8 + tlvs_len);
    }

    #[test]
    fn snoopers_are_capped_by_count_and_by_size() {
        let params = encode_params(&LegacyParams::default());
        let many: Vec<Snooper> = (1..=1500).map(Snooper::Proc).collect();
        let (body, left) = encode_body(0, 0, &params, &many, usize::MAX);
        assert_eq!(left, 500);
        assert_eq!(u32_at(&body, 8 + 8 + 4 + PARAMS_SIZE + 4), 1000);
        let (body, left) = encode_body(0, 0, &params, &many, 2000);
        assert!(body.len() <= 2000, "{}", body.len());
        let count = u32_at(&body, 8 + 8 + 4 + PARAMS_SIZE + 4) as usize;
        assert_eq!(count + left, 1500);
        assert_eq!(body.len(), 8 + 8 + 4 + PARAMS_SIZE + 8 + count * 8);
        // A snooper list of nothing still has its count.
        let (body, _) = encode_body(0, 0, &params, &[], 0);
        assert_eq!(u32_at(&body, 4) as usize, 8 + 4 + PARAMS_SIZE + 8);
    }

    #[test]
    fn range_flags_or_sub_probes_with_raw_bits_and_unknown_names_are_errors() {
        assert_eq!(conf().range_flags(), Ok(0x1 | 0x8 | 0x100));
        let mut c = conf();
        c.probe.push("proc_nope".into());
        let e = c.range_flags().expect_err("unknown");
        assert!(e.contains("proc_nope") && e.contains("proc_syscall"), "{e}");
        c.probe_type = ProbeType(3);
        c.probe = vec!["oncpu".into()];
        let e = c.range_flags().expect_err("unknown bits");
        assert!(e.contains("range_flags"), "{e}");
    }

    #[test]
    fn snoopers_resolve_live_pids_names_and_drop_dead_ones() {
        let me = std::process::id();
        let mut c = conf();
        c.snoopers.proc_id = vec![me, u32::MAX - 1];
        let got = resolve(&c.snoopers, Path::new("/proc"), true);
        assert_eq!(got, vec![Snooper::Proc(me)]);
        let mut child = std::process::Command::new("sleep")
            .arg("30.4242")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        // Until the exec is done, the child still has our comm.
        for _ in 0..200 {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        c.snoopers.proc_id.clear();
        c.snoopers.proc_name = vec![ProcName {
            comm: "^sle+p$".into(),
            cmdline: "30.4242".into(),
            debugging_dir: crate::config::Ignored,
        }];
        let got = resolve(&c.snoopers, Path::new("/proc"), true);
        assert!(got.contains(&Snooper::Proc(pid)), "{got:?}");
        c.snoopers.proc_name[0].cmdline = "30.4243".into();
        let got = resolve(&c.snoopers, Path::new("/proc"), true);
        assert!(!got.contains(&Snooper::Proc(pid)), "{got:?}");
        let _ = child.kill();
        let _ = child.wait();
        c.snoopers.container_id = vec!["no-such-container".into()];
        c.snoopers.proc_name.clear();
        assert!(resolve(&c.snoopers, Path::new("/proc"), true).is_empty());
    }

    #[test]
    fn without_the_key_path_the_probe_is_refused_with_the_reason() {
        let e = prepare_with_key("x", &conf(), Path::new("/no/such/gala-gopher"))
            .expect_err("no key path");
        let text = e.to_string();
        assert!(
            text.contains("/usr/bin/gala-gopher") && text.contains("ftok"),
            "{text}"
        );
    }
}
