//! Gives back the memory that only the start needed, once, after the agent
//! has settled.
//!
//! - **Heap:** `malloc_trim(0)` returns the free pages of every malloc arena
//!   (the config and meta parsing, the eBPF object's relocation, the probes'
//!   first buffers) to the kernel.
//! - **Read-only file pages:** the code and constants of the binary and its
//!   libraries that ran only at the start (argument and config parsing, the
//!   eBPF object bytes embedded in `.rodata` once loaded into the kernel)
//!   stay mapped and count in the RSS although nothing touches them again.
//!   Each read-only or executable private file mapping that holds no private
//!   (copy-on-write) page is dropped with `MADV_DONTNEED`: the pages stay in
//!   the page cache, and a page used again is mapped back by a minor fault.
//!   Mappings with private pages (relocated data, `RELRO`) are left alone,
//!   as dropping them would lose their content.
//!
//! Measured in bench/RESULTS.md ("gala-gopher beside node_exporter").

use std::time::Duration;

/// How long after the start: the probes have started, loaded their eBPF
/// objects and run their first periods.
pub const AFTER: Duration = Duration::from_secs(15);

/// What [`settle`] gave back, in kB.
#[derive(Debug, Default, Clone, Copy)]
pub struct Settled {
    /// Mappings dropped.
    pub mappings: usize,
    /// Their resident kB before.
    pub file_kb: u64,
}

/// One mapping of /proc/self/smaps that may be dropped.
#[derive(Debug, PartialEq, Eq)]
struct Droppable {
    start: usize,
    end: usize,
    rss_kb: u64,
}

/// The read-only or executable private file mappings of a smaps text with
/// no anonymous (copy-on-write) page and a resident page at least.
fn droppable(smaps: &str) -> Vec<Droppable> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, usize, bool)> = None;
    let (mut rss, mut anon) = (0u64, 0u64);
    let mut flush = |cur: &mut Option<(usize, usize, bool)>, rss: u64, anon: u64| {
        if let Some((start, end, ok)) = cur.take() {
            if ok && anon == 0 && rss > 0 {
                out.push(Droppable {
                    start,
                    end,
                    rss_kb: rss,
                });
            }
        }
    };
    for line in smaps.lines() {
        let mut w = line.split_whitespace();
        let Some(first) = w.next() else { continue };
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                flush(&mut cur, rss, anon);
                (rss, anon) = (0, 0);
                let perms = w.next().unwrap_or("");
                let _offset = w.next();
                let _dev = w.next();
                let inode = w.next().unwrap_or("0");
                let path = w.next().unwrap_or("");
                // r--p or r-xp, backed by a file (not [vdso], not memfd).
                let ok = (perms == "r--p" || perms == "r-xp")
                    && inode != "0"
                    && path.starts_with('/')
                    && w.next().is_none();
                cur = Some((start, end, ok));
                continue;
            }
        }
        let val = || {
            line.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if line.starts_with("Rss:") {
            rss = val();
        } else if line.starts_with("Anonymous:") || line.starts_with("Private_Dirty:") {
            anon += val();
        }
    }
    flush(&mut cur, rss, anon);
    out
}

/// How often the heap is trimmed after [`settle`]: a burst (thousands of
/// sockets for a minute, a queue overflowing) leaves free memory spread over
/// glibc's per-thread arenas, which glibc gives back only from the top of
/// each heap; without a trim the RSS keeps each burst's peak (the soak in
/// bench/RESULTS.md rose in steps at each burst and never came down).
/// One trim of the default agent's heap took 0.17 and 1.5 ms (measured with
/// its debug log, which prints each trim's time): at most 0.003 % of a core.
pub const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Returns the free pages of every malloc arena to the kernel.
pub fn trim_heap() {
    // SAFETY: malloc_trim has no precondition.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trims the heap and drops the resident pages of clean read-only file
/// mappings (see the module text).
pub fn settle() -> Settled {
    trim_heap();
    let mut s = Settled::default();
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return s;
    };
    for m in droppable(&smaps) {
        // SAFETY: the range is a whole mapping of this process, read-only,
        // backed by a file and without private pages: dropping it loses
        // nothing, and a later access faults the file's page back in.
        let r = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            )
        };
        if r == 0 {
            s.mappings += 1;
            s.file_kb += m.rss_kb;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_are_dropped() {
        let smaps = "\
5600000000-5600001000 r--p 00000000 fd:01 123 /usr/bin/gala-gopher
Rss:                   4 kB
Anonymous:             0 kB
Private_Dirty:         0 kB
5600001000-5600009000 r-xp 00001000 fd:01 123 /usr/bin/gala-gopher
Rss:                  32 kB
Anonymous:             0 kB
5600009000-560000a000 r--p 00009000 fd:01 123 /usr/bin/gala-gopher
Rss:                   4 kB
Anonymous:             4 kB
Private_Dirty:         4 kB
560000a000-560000b000 rw-p 0000a000 fd:01 123 /usr/bin/gala-gopher
Rss:                   4 kB
Anonymous:             4 kB
7f00000000-7f00001000 r--p 00000000 00:00 0 
Rss:                   4 kB
7f00001000-7f00002000 r-xp 00000000 00:00 0 [vdso]
Rss:                   4 kB
7f00002000-7f00003000 r--p 00000000 fd:01 77 /usr/lib/libc.so.6
Rss:                   0 kB
7f00003000-7f00004000 r-xp 00000000 00:01 88 /memfd:x (deleted)
Rss:                   4 kB
7f00005000-7f00006000 r-xp 00000000 fd:01 78 /usr/lib/libm.so.6
Rss:                   4 kB
";
        assert_eq!(
            droppable(smaps),
            vec![
                Droppable {
                    start: 0x56_0000_0000,
                    end: 0x56_0000_1000,
                    rss_kb: 4
                },
                Droppable {
                    start: 0x56_0000_1000,
                    end: 0x56_0000_9000,
                    rss_kb: 32
                },
                Droppable {
                    start: 0x7f_0000_5000,
                    end: 0x7f_0000_6000,
                    rss_kb: 4
                },
            ]
        );
    }

    #[test]
    fn settling_this_process_keeps_it_working() {
        let before = std::fs::read_to_string("/proc/self/status").expect("status");
        let s = settle();
        assert!(s.mappings > 0, "the test binary's own text at least");
        // Code and constants run again after the drop (faulted back in).
        let after = std::fs::read_to_string("/proc/self/status").expect("status");
        assert!(after.contains("VmRSS") && before.contains("VmRSS"));
        assert_eq!(format!("{:?}", droppable("")), "[]");
    }
}
