//! `struct probe_params`: the legacy V1 parameter block (docs/compat.md §3), and
//! `gopher_params_get`, which fills it from the probe's `param` string.

use std::ffi::{c_char, c_uchar, c_uint};
use std::fmt;

use gopher_probe_api::Params;

use crate::boundary::guard;
use crate::log::{gopher_log_level, write_log};
use crate::status::gopher_status;
use crate::GOPHER_PARAM_ENV;

/// The parameters of a probe, in the exact layout of the legacy V1
/// `struct probe_params` so that legacy sources compile and run unchanged.
/// Strings are NUL-terminated within their arrays.
///
/// The probe host owns the struct it passes to a probe's entry; the probe
/// may read it during the call and must not keep the pointer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct probe_params {
    /// `-t`: report period in seconds (default 5).
    pub period: c_uint,
    /// `-s`: sampling period in ms (default 100).
    pub sample_period: c_uint,
    /// `-T`: latency threshold.
    pub latency_thr: c_uint,
    /// `-J`: jitter threshold.
    pub jitter_thr: c_uint,
    /// `-O`: offline threshold.
    pub offline_thr: c_uint,
    /// `-D`: drops-count threshold.
    pub drops_count_thr: c_uint,
    /// `-F <pid>`: only this process (0: all).
    pub filter_pid: c_uint,
    /// `-P`: bitmask of sub-probes to load (default 0xFFFFFFFF).
    pub load_probe: c_uint,
    /// `-l`: 1 if the probe may print debug logs.
    pub logs: c_char,
    /// Unused, zero.
    pub pad: [c_char; 3],
    /// `-F task`: 1 to filter by the task probe's process list.
    pub filter_task_probe: c_char,
    /// `-U`: resource usage upper bound, percent.
    pub res_percent_upper: c_char,
    /// `-L`: resource usage lower bound, percent.
    pub res_percent_lower: c_char,
    /// `-c`: client-port flag (0 or 1).
    pub cport_flag: c_uchar,
    /// `-C`: cycle-sampling flag (0 or 1).
    pub cycle_sampling_flag: c_char,
    /// `-d`: target device.
    pub target_dev: [c_char; 32],
    /// `-p`: ELF path.
    pub elf_path: [c_char; 512],
    /// `-w`: task whitelist path.
    pub task_whitelist: [c_char; 512],
    /// `-n`: network card list.
    pub netcard_list: [c_char; 512],
    /// `-m`: target comm.
    pub target_comm: [c_char; 17],
}

/// Copies `s` into `dst` NUL-terminated, cut to fit (at a byte boundary:
/// the legacy fields are byte arrays), the rest zero-filled.
fn copy_str(dst: &mut [c_char], s: &str) {
    dst.fill(0);
    let room = dst.len().saturating_sub(1);
    for (d, b) in dst.iter_mut().zip(s.bytes().take(room)) {
        *d = b as c_char;
    }
}

/// The bytes of a NUL-terminated array field, up to the first NUL.
pub fn field_bytes(field: &[c_char]) -> Vec<u8> {
    field
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect()
}

impl probe_params {
    /// The C struct for parsed params. Strings longer than their legacy
    /// field (which `Params::parse` already refuses) are cut to fit.
    pub fn from_params(p: &Params) -> Self {
        let mut out = Self {
            period: p.period,
            sample_period: p.sample_period,
            latency_thr: p.latency_thr,
            jitter_thr: p.jitter_thr,
            offline_thr: p.offline_thr,
            drops_count_thr: p.drops_count_thr,
            filter_pid: p.filter_pid,
            load_probe: p.load_probe,
            logs: c_char::from(p.logs),
            pad: [0; 3],
            filter_task_probe: c_char::from(p.filter_task_probe),
            // Percentages are at most 100 and flags 0 or 1: they fit a char.
            res_percent_upper: p.res_percent_upper as c_char,
            res_percent_lower: p.res_percent_lower as c_char,
            cport_flag: p.cport_flag,
            cycle_sampling_flag: p.cycle_sampling_flag as c_char,
            target_dev: [0; 32],
            elf_path: [0; 512],
            task_whitelist: [0; 512],
            netcard_list: [0; 512],
            target_comm: [0; 17],
        };
        copy_str(&mut out.target_dev, &p.target_dev);
        copy_str(&mut out.elf_path, &p.elf_path);
        copy_str(&mut out.task_whitelist, &p.task_whitelist);
        copy_str(&mut out.netcard_list, &p.netcard_list);
        copy_str(&mut out.target_comm, &p.target_comm);
        out
    }
}

impl Default for probe_params {
    /// The legacy defaults (`period` 5, `sample_period` 100, `load_probe`
    /// all bits, the rest zero).
    fn default() -> Self {
        Self::from_params(&Params::default())
    }
}

impl fmt::Debug for probe_params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |field: &[c_char]| String::from_utf8_lossy(&field_bytes(field)).into_owned();
        f.debug_struct("probe_params")
            .field("period", &self.period)
            .field("sample_period", &self.sample_period)
            .field("latency_thr", &self.latency_thr)
            .field("jitter_thr", &self.jitter_thr)
            .field("offline_thr", &self.offline_thr)
            .field("drops_count_thr", &self.drops_count_thr)
            .field("filter_pid", &self.filter_pid)
            .field("load_probe", &self.load_probe)
            .field("logs", &self.logs)
            .field("filter_task_probe", &self.filter_task_probe)
            .field("res_percent_upper", &self.res_percent_upper)
            .field("res_percent_lower", &self.res_percent_lower)
            .field("cport_flag", &self.cport_flag)
            .field("cycle_sampling_flag", &self.cycle_sampling_flag)
            .field("target_dev", &s(&self.target_dev))
            .field("elf_path", &s(&self.elf_path))
            .field("task_whitelist", &s(&self.task_whitelist))
            .field("netcard_list", &s(&self.netcard_list))
            .field("target_comm", &s(&self.target_comm))
            .finish()
    }
}

/// The params in the environment variable `GOPHER_PROBE_PARAM` (the
/// defaults when it is unset). Invalid UTF-8 is `GOPHER_ERR_INVALID_UTF8`;
/// a string that does not parse is `GOPHER_ERR_INVALID_VALUE`, and the
/// parse error is logged.
pub fn params_from_env() -> Result<Params, gopher_status> {
    let Some(raw) = std::env::var_os(GOPHER_PARAM_ENV) else {
        return Ok(Params::default());
    };
    let text = raw.to_str().ok_or(gopher_status::GOPHER_ERR_INVALID_UTF8)?;
    Params::parse(text).map_err(|e| {
        let msg = format!("{GOPHER_PARAM_ENV}=`{text}`: {e}");
        // Best effort: the status tells the caller in any case.
        let _ = write_log(gopher_log_level::GOPHER_LOG_WARN, msg.as_bytes());
        gopher_status::GOPHER_ERR_INVALID_VALUE
    })
}

/// Fills `*out` with the probe's params, parsed from the environment
/// variable `GOPHER_PROBE_PARAM` that the probe host sets to the probe's
/// `param` string (legacy getopt letters: `-t 5 -d eth0 ...`). When it is
/// unset, `*out` gets the defaults.
///
/// `out` is owned by the caller and written only on `GOPHER_OK`. Returns
/// `GOPHER_ERR_NULL` if `out` is NULL, `GOPHER_ERR_INVALID_UTF8` or
/// `GOPHER_ERR_INVALID_VALUE` (the reason is logged) if the string does not
/// parse.
///
/// # Safety
/// `out` must be NULL or point to writable memory for one
/// `struct probe_params`.
#[no_mangle]
pub unsafe extern "C" fn gopher_params_get(out: *mut probe_params) -> gopher_status {
    guard(|| {
        if out.is_null() {
            return gopher_status::GOPHER_ERR_NULL;
        }
        match params_from_env() {
            Ok(p) => {
                // SAFETY: non-NULL, and the caller promises room for one
                // probe_params; `write` does not read the old contents.
                unsafe { out.write(probe_params::from_params(&p)) };
                gopher_status::GOPHER_OK
            }
            Err(s) => s,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::*;

    /// Offsets worked out by hand with the C rules: eight 4-byte unsigned
    /// ints (0..32), then chars, which need no alignment, packed from 32 on;
    /// the size is rounded up to the struct's alignment of 4.
    #[test]
    fn layout_is_the_legacy_v1_layout() {
        assert_eq!(offset_of!(probe_params, period), 0);
        assert_eq!(offset_of!(probe_params, sample_period), 4);
        assert_eq!(offset_of!(probe_params, latency_thr), 8);
        assert_eq!(offset_of!(probe_params, jitter_thr), 12);
        assert_eq!(offset_of!(probe_params, offline_thr), 16);
        assert_eq!(offset_of!(probe_params, drops_count_thr), 20);
        assert_eq!(offset_of!(probe_params, filter_pid), 24);
        assert_eq!(offset_of!(probe_params, load_probe), 28);
        assert_eq!(offset_of!(probe_params, logs), 32);
        assert_eq!(offset_of!(probe_params, pad), 33);
        assert_eq!(offset_of!(probe_params, filter_task_probe), 36);
        assert_eq!(offset_of!(probe_params, res_percent_upper), 37);
        assert_eq!(offset_of!(probe_params, res_percent_lower), 38);
        assert_eq!(offset_of!(probe_params, cport_flag), 39);
        assert_eq!(offset_of!(probe_params, cycle_sampling_flag), 40);
        assert_eq!(offset_of!(probe_params, target_dev), 41);
        assert_eq!(offset_of!(probe_params, elf_path), 73); // 41 + 32
        assert_eq!(offset_of!(probe_params, task_whitelist), 585); // 73 + 512
        assert_eq!(offset_of!(probe_params, netcard_list), 1097); // 585 + 512
        assert_eq!(offset_of!(probe_params, target_comm), 1609); // 1097 + 512
                                                                 // 1609 + 17 = 1626 bytes of fields, padded to a multiple of 4.
        assert_eq!(size_of::<probe_params>(), 1628);
        assert_eq!(align_of::<probe_params>(), 4);
    }

    #[test]
    fn defaults_are_the_legacy_defaults() {
        let p = probe_params::default();
        assert_eq!(
            (p.period, p.sample_period, p.load_probe),
            (5, 100, 0xFFFF_FFFF)
        );
        assert_eq!((p.logs, p.filter_task_probe, p.cport_flag), (0, 0, 0));
        assert!(p.target_dev.iter().all(|&c| c == 0));
    }

    #[test]
    fn copies_every_field() {
        let parsed = Params::parse(
            "-t 7 -s 50 -T 1 -J 2 -O 3 -D 4 -F 99 -P 6 -l 1 -U 90 -L 10 -c 1 -C 1 \
             -d eth0 -p /bin/x -w /etc/wl -n eth0,eth1 -m nginx",
        )
        .expect("parses");
        let p = probe_params::from_params(&parsed);
        assert_eq!(
            (p.period, p.sample_period, p.latency_thr, p.jitter_thr),
            (7, 50, 1, 2)
        );
        assert_eq!(
            (p.offline_thr, p.drops_count_thr, p.filter_pid, p.load_probe),
            (3, 4, 99, 6)
        );
        assert_eq!(
            (p.logs, p.res_percent_upper, p.res_percent_lower),
            (1, 90, 10)
        );
        assert_eq!((p.cport_flag, p.cycle_sampling_flag), (1, 1));
        assert_eq!(field_bytes(&p.target_dev), b"eth0");
        assert_eq!(field_bytes(&p.elf_path), b"/bin/x");
        assert_eq!(field_bytes(&p.task_whitelist), b"/etc/wl");
        assert_eq!(field_bytes(&p.netcard_list), b"eth0,eth1");
        assert_eq!(field_bytes(&p.target_comm), b"nginx");
        let task = probe_params::from_params(&Params::parse("-F task").expect("parses"));
        assert_eq!((task.filter_task_probe, task.filter_pid), (1, 0));
    }

    #[test]
    fn long_strings_are_cut_and_terminated() {
        let p = Params {
            target_dev: "d".repeat(100),
            target_comm: "c".repeat(17),
            ..Params::default()
        };
        let c = probe_params::from_params(&p);
        assert_eq!(field_bytes(&c.target_dev), "d".repeat(31).as_bytes());
        assert_eq!(c.target_dev.last(), Some(&0));
        assert_eq!(field_bytes(&c.target_comm), "c".repeat(16).as_bytes());
        let dbg = format!("{c:?}");
        assert!(dbg.contains("target_comm: \"cccccccccccccccc\""), "{dbg}");
    }

    #[test]
    fn get_refuses_null() {
        // SAFETY: NULL is allowed and checked.
        let got = unsafe { gopher_params_get(std::ptr::null_mut()) };
        assert_eq!(got, gopher_status::GOPHER_ERR_NULL);
    }
}
