//! The Rust half of the legacy 1.x headers in `include/legacy/`
//! (docs/compat.md §3): the event record of `report_logs`, the object
//! registry of `object.h` and the whitelist parser of `whitelist_config.h`.
//! The variadic functions and the small helpers are C, `csrc/legacy.c`.
//!
//! None of this is part of `gopher.h`: the module is hidden from cbindgen
//! (see lib.rs) and the hand-written legacy headers declare it.
//!
//! Unlike the rest of the library this module keeps state, each piece
//! behind its own mutex: the event de-duplication table, the object counts,
//! and the once-only notes in the log.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, CStr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::boundary::guard_or;
use crate::log::{gopher_log_level, write_log};
use crate::record::{build_record, write_record_line};

pub(crate) fn log(level: gopher_log_level, msg: &str) {
    let _ = write_log(level, msg.as_bytes());
}

/// The text of a C string argument; NULL is `""`, invalid UTF-8 replaced.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that outlives the result.
unsafe fn text<'a>(p: *const c_char) -> std::borrow::Cow<'a, str> {
    if p.is_null() {
        return "".into();
    }
    // SAFETY: promised by the caller.
    String::from_utf8_lossy(unsafe { CStr::from_ptr(p) }.to_bytes())
}

// ---- events ---------------------------------------------------------------

/// `(SeverityText, SeverityNumber)` of `enum evt_sec_e` values 0..=3.
const SEVERITIES: [(&str, &str); 4] = [
    ("INFO", "9"),
    ("WARN", "13"),
    ("ERROR", "17"),
    ("FATAL", "21"),
];

/// Most entities remembered for the report period (1.x `MAX_EVT_NUM`).
const MAX_EVT_NUM: usize = 1000;

/// `init_event_mgr`'s period in seconds; 0 reports every event.
static EVENT_PERIOD: AtomicU32 = AtomicU32::new(0);

/// When each entity id last reported, while a period is set.
static EVENT_SEEN: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);

static LANG_NOTE: Once = Once::new();

/// A value of the event record: `|` and control characters, which a record
/// cannot carry, become spaces.
fn event_value(s: &str) -> String {
    s.chars()
        .map(|c| if c == '|' || c.is_control() { ' ' } else { c })
        .collect()
}

/// Whether an event of `entity_id` passes the period at `now` (and records
/// it when it does).
fn event_due(entity_id: &str, now: Instant) -> bool {
    let period = Duration::from_secs(u64::from(EVENT_PERIOD.load(Ordering::Relaxed)));
    if period.is_zero() {
        return true;
    }
    let mut seen = EVENT_SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashMap::new);
    if let Some(last) = seen.get(entity_id) {
        if now.saturating_duration_since(*last) < period {
            return false;
        }
    }
    if seen.len() >= MAX_EVT_NUM && !seen.contains_key(entity_id) {
        seen.retain(|_, t| now.saturating_duration_since(*t) < period);
        if seen.len() >= MAX_EVT_NUM {
            seen.clear();
        }
    }
    seen.insert(entity_id.to_owned(), now);
    true
}

/// The 12 values of the reserved `event` table for one report, the body cut
/// so that the line fits.
fn event_values(name: &str, id: &str, metric: &str, sec: usize, body: &str) -> Option<Vec<String>> {
    let (sev_text, sev_num) = SEVERITIES.get(sec)?;
    let mut v: Vec<String> = vec![
        event_value(name),
        event_value(id),
        event_value(metric),
        String::new(), // pid
        String::new(), // comm
        String::new(), // ip
        String::new(), // container_id
        String::new(), // pod_id
        String::new(), // dev
        (*sev_text).to_owned(),
        (*sev_num).to_owned(),
    ];
    let used: usize = "|event|".len() + v.iter().map(|s| s.len() + 1).sum::<usize>() + 1;
    let room = crate::GOPHER_MAX_LINE_LEN.saturating_sub(used);
    let mut body = event_value(body.trim_end());
    if body.len() > room {
        let mut cut = room;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    v.push(body);
    Some(v)
}

/// Emits the event record of one `report_logs` call (called by
/// `csrc/legacy.c`). Returns 0, or -1 when nothing was emitted: the
/// reason is logged, except for an event held back by the period.
///
/// # Safety
/// Each pointer is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn gopher_legacy_event_emit(
    entity_name: *const c_char,
    entity_id: *const c_char,
    metric: *const c_char,
    sec: c_int,
    body: *const c_char,
) -> c_int {
    guard_or(-1, || {
        // SAFETY: the caller passes NULL or C strings.
        let (name, id, metric, body) =
            unsafe { (text(entity_name), text(entity_id), text(metric), text(body)) };
        if name.trim().is_empty() {
            log(
                gopher_log_level::GOPHER_LOG_ERROR,
                &format!("report_logs: no entity name (metric `{metric}`): event dropped"),
            );
            return -1;
        }
        let Some(values) = usize::try_from(sec)
            .ok()
            .and_then(|s| event_values(&name, &id, &metric, s, &body))
        else {
            log(
                gopher_log_level::GOPHER_LOG_ERROR,
                &format!("report_logs: unknown level {sec}: event of {name} dropped"),
            );
            return -1;
        };
        if !event_due(&id, Instant::now()) {
            return 0;
        }
        let mut line = Vec::new();
        let built = build_record(
            b"event",
            values.iter().map(|v| Some(v.as_bytes())),
            &mut line,
        );
        match built.and_then(|()| write_record_line(&line)) {
            Ok(()) => 0,
            Err(st) => {
                log(
                    gopher_log_level::GOPHER_LOG_WARN,
                    &format!("report_logs: event of {name} not sent: {}", st.as_str()),
                );
                -1
            }
        }
    })
}

/// `init_event_mgr(time_out, lang_type)`: an entity id reports at most once
/// per `time_out` seconds (0: always). Translated event texts
/// (`lang_type`) are not supported; asking for them is logged once.
///
/// # Safety
/// `lang_type` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn init_event_mgr(time_out: c_uint, lang_type: *mut c_char) {
    guard_or((), || {
        EVENT_PERIOD.store(time_out, Ordering::Relaxed);
        // SAFETY: the caller passes NULL or a C string.
        let lang = unsafe { text(lang_type) };
        if !lang.is_empty() {
            LANG_NOTE.call_once(|| {
                log(
                    gopher_log_level::GOPHER_LOG_WARN,
                    &format!(
                        "init_event_mgr: event texts in language `{lang}` are not supported; \
                         events keep the probe's own text"
                    ),
                );
            });
        }
    });
}

// ---- object.h ---------------------------------------------------------------

/// `struct proc_s`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct proc_s {
    /// Process id.
    pub proc_id: c_uint,
}

/// `struct cgroup_s`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cgroup_s {
    /// Inode of the cgroup.
    pub knid: c_uint,
    /// `enum cgp_type_e`.
    pub type_: c_uint,
}

/// `struct nm_s`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct nm_s {
    /// Namespace id.
    pub id: c_uint,
    /// `enum nm_type_e`.
    pub type_: c_uint,
}

#[derive(Clone, Copy)]
enum Kind {
    Proc,
    Cgroup,
    Namespace,
}

impl Kind {
    /// The 1.x map sizes (`*_MAP_MAX_ENTRIES`).
    fn capacity(self) -> usize {
        match self {
            Self::Proc => 1000,
            Self::Cgroup | Self::Namespace => 100,
        }
    }
}

#[derive(Default)]
struct Objects {
    init: bool,
    counts: [HashMap<(u32, u32), u32>; 3],
}

static OBJECTS: Mutex<Option<Objects>> = Mutex::new(None);
static OBJECT_NOTE: Once = Once::new();

/// The text logged once, at the first object.h call.
pub const OBJECT_NOTE_TEXT: &str =
    "object.h: processes, cgroups and namespaces added by this probe \
     are counted in its own process only; 1.x shared them between probes in eBPF maps under \
     /sys/fs/bpf/probe, which this agent does not have";

fn with_objects<T>(f: impl FnOnce(&mut Objects) -> T) -> T {
    OBJECT_NOTE.call_once(|| log(gopher_log_level::GOPHER_LOG_WARN, OBJECT_NOTE_TEXT));
    let mut g = OBJECTS.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Objects::default))
}

fn obj_add(kind: Kind, key: Option<(u32, u32)>) -> c_int {
    let Some(key) = key else { return -1 };
    guard_or(-1, || {
        with_objects(|o| {
            let map = &mut o.counts[kind as usize];
            if let Some(n) = map.get_mut(&key) {
                *n = n.saturating_add(1);
                return 0;
            }
            if map.len() >= kind.capacity() {
                return -1;
            }
            map.insert(key, 1);
            0
        })
    })
}

fn obj_put(kind: Kind, key: Option<(u32, u32)>) -> c_int {
    let Some(key) = key else { return -1 };
    guard_or(-1, || {
        with_objects(|o| {
            let map = &mut o.counts[kind as usize];
            match map.get_mut(&key) {
                None => -1,
                Some(n) if *n > 1 => {
                    *n -= 1;
                    0
                }
                Some(_) => {
                    map.remove(&key);
                    0
                }
            }
        })
    })
}

fn obj_exists(kind: Kind, key: Option<(u32, u32)>) -> c_char {
    let Some(key) = key else { return 0 };
    guard_or(0, || {
        with_objects(|o| c_char::from(o.counts[kind as usize].contains_key(&key)))
    })
}

/// # Safety
/// `p` is NULL or points to a readable `T`.
unsafe fn key_of<T: Copy>(p: *const T, f: impl Fn(T) -> (u32, u32)) -> Option<(u32, u32)> {
    // SAFETY: promised by the caller.
    (!p.is_null()).then(|| f(unsafe { *p }))
}

macro_rules! object_fns {
    ($ty:ty, $kind:expr, $key:expr, $add:ident, $put:ident, $exist:ident) => {
        /// One more reference of the object: 0, or -1 for NULL or a full
        /// table. See include/legacy/object.h.
        ///
        /// # Safety
        /// `obj` is NULL or points to the legacy struct.
        #[no_mangle]
        pub unsafe extern "C" fn $add(obj: *mut $ty) -> c_int {
            // SAFETY: promised by the caller.
            obj_add($kind, unsafe { key_of(obj.cast_const(), $key) })
        }

        /// One reference less, forgotten at zero: 0, or -1 for NULL or an
        /// unknown object.
        ///
        /// # Safety
        /// `obj` is NULL or points to the legacy struct.
        #[no_mangle]
        pub unsafe extern "C" fn $put(obj: *mut $ty) -> c_int {
            // SAFETY: promised by the caller.
            obj_put($kind, unsafe { key_of(obj.cast_const(), $key) })
        }

        /// 1 while the object has references, else 0 (also for NULL).
        ///
        /// # Safety
        /// `obj` is NULL or points to the legacy struct.
        #[no_mangle]
        pub unsafe extern "C" fn $exist(obj: *mut $ty) -> c_char {
            // SAFETY: promised by the caller.
            obj_exists($kind, unsafe { key_of(obj.cast_const(), $key) })
        }
    };
}

object_fns!(
    proc_s,
    Kind::Proc,
    |o: proc_s| (o.proc_id, 0),
    proc_add,
    proc_put,
    is_proc_exist
);
object_fns!(
    cgroup_s,
    Kind::Cgroup,
    |o: cgroup_s| (o.knid, o.type_),
    cgrp_add,
    cgrp_put,
    is_cgrp_exist
);
object_fns!(
    nm_s,
    Kind::Namespace,
    |o: nm_s| (o.id, o.type_),
    nm_add,
    nm_put,
    is_nm_exist
);

/// 1 after `obj_module_init` (until `obj_module_exit`), else 0.
#[no_mangle]
pub extern "C" fn obj_module_init_ok() -> c_char {
    guard_or(0, || with_objects(|o| c_char::from(o.init)))
}

/// Nothing to look up: there are no shared maps here.
#[no_mangle]
pub extern "C" fn obj_module_set_maps_fd() {
    guard_or((), || with_objects(|_| ()));
}

/// Marks the registry ready (it works without this call too).
#[no_mangle]
pub extern "C" fn obj_module_init() {
    guard_or((), || with_objects(|o| o.init = true));
}

/// Forgets every object.
#[no_mangle]
pub extern "C" fn obj_module_exit() {
    guard_or((), || with_objects(|o| *o = Objects::default()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_values_map_the_level_and_clean_the_text() {
        let v = event_values("proc", "42", "cpu", 2, "a|b\nc\n").expect("valid level");
        assert_eq!(v.len(), 12);
        assert_eq!(v[0], "proc");
        assert_eq!(v[9], "ERROR");
        assert_eq!(v[10], "17");
        assert_eq!(v[11], "a b c");
        for (sec, num) in [(0, "9"), (1, "13"), (2, "17"), (3, "21")] {
            assert_eq!(event_values("e", "", "", sec, "").expect("level")[10], num);
        }
        assert!(event_values("e", "", "", 4, "").is_none());
        // A long body is cut so that the whole line fits.
        let v = event_values("e", "1", "m", 0, &"é".repeat(9000)).expect("level");
        let mut line = Vec::new();
        build_record(b"event", v.iter().map(|s| Some(s.as_bytes())), &mut line).expect("fits");
        assert!(line.len() <= crate::GOPHER_MAX_LINE_LEN + 1);
    }

    #[test]
    fn objects_are_reference_counted() {
        let mut p = proc_s { proc_id: 77 };
        // SAFETY: valid pointers to local structs, and NULL.
        unsafe {
            assert_eq!(is_proc_exist(&mut p), 0);
            assert_eq!(proc_add(&mut p), 0);
            assert_eq!(proc_add(&mut p), 0);
            assert_eq!(proc_put(&mut p), 0);
            assert_eq!(is_proc_exist(&mut p), 1);
            assert_eq!(proc_put(&mut p), 0);
            assert_eq!(is_proc_exist(&mut p), 0);
            assert_eq!(proc_put(&mut p), -1);
            assert_eq!(proc_add(std::ptr::null_mut()), -1);
            assert_eq!(is_nm_exist(std::ptr::null_mut()), 0);
            let mut c = cgroup_s { knid: 5, type_: 1 };
            let mut c2 = cgroup_s { knid: 5, type_: 2 };
            assert_eq!(cgrp_add(&mut c), 0);
            assert_eq!(is_cgrp_exist(&mut c2), 0);
            assert_eq!(cgrp_put(&mut c), 0);
        }
    }
}

// ---- exports of csrc/legacy.c ----------------------------------------------

/// The public names of the C functions in `csrc/legacy.c`. A cdylib exports
/// only Rust symbols, so each is a naked tail jump to the C definition
/// `gopher_legacy_<name>` (as `nprobe_fprintf` is, see nprobe.rs): no
/// register or stack slot is touched, so variadic arguments arrive intact.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod trampolines {
    macro_rules! trampolines {
        ($($name:ident => $target:ident),* $(,)?) => {
            extern "C" {
                $(
                    /// The C definition (csrc/legacy.c).
                    fn $target();
                )*
            }
            $(
                /// See include/legacy/; the C definition is in
                /// csrc/legacy.c.
                ///
                /// # Safety
                /// Called from C with the arguments the legacy header
                /// declares.
                #[no_mangle]
                #[unsafe(naked)]
                pub unsafe extern "C" fn $name() {
                    #[cfg(target_arch = "x86_64")]
                    core::arch::naked_asm!("jmp {}", sym $target);
                    #[cfg(target_arch = "aarch64")]
                    core::arch::naked_asm!("b {}", sym $target);
                }
            )*
        };
    }

    trampolines! {
        debug_logs => gopher_legacy_debug_logs,
        info_logs => gopher_legacy_info_logs,
        warn_logs => gopher_legacy_warn_logs,
        error_logs => gopher_legacy_error_logs,
        split_newline_symbol => gopher_legacy_split_newline_symbol,
        __snprintf => gopher_legacy___snprintf,
        is_digit_str => gopher_legacy_is_digit_str,
        check_path_for_security => gopher_legacy_check_path_for_security,
        is_str_match_pattern => gopher_legacy_is_str_match_pattern,
        get_cur_date => gopher_legacy_get_cur_date,
        get_cur_time => gopher_legacy_get_cur_time,
        ip_str => gopher_legacy_ip_str,
        exec_cmd => gopher_legacy_exec_cmd,
        is_exist_mod => gopher_legacy_is_exist_mod,
        get_system_uuid => gopher_legacy_get_system_uuid,
        get_system_ip => gopher_legacy_get_system_ip,
        get_comm => gopher_legacy_get_comm,
        get_proc_startup_ts => gopher_legacy_get_proc_startup_ts,
        copy_file => gopher_legacy_copy_file,
        report_logs => gopher_legacy_report_logs,
    }
}
