//! gala-gopher's own C probes, written in C against `include/gopher.h` (the
//! new ABI) and built by cargo with the `cc` crate (`build.rs`).
//!
//! | probe        | table        | source                        | meta                     |
//! |--------------|--------------|-------------------------------|--------------------------|
//! | `system_cpu` | `system_cpu` | `/proc/stat`                  | `meta/system_cpu.meta`   |
//! | `system_net` | `system_net` | `/proc/net/dev`               | `meta/system_net.meta`   |
//!
//! Each C file exports a `const struct gopher_probe_desc
//! gopher_probe_<name>`; [`BUILTIN`] lists them for the daemon's probe host,
//! which calls a probe's entry once per period in a child process whose
//! stdout is the record pipe. The probes read `/proc`, or the directory in
//! the environment variable [`GOPHER_PROC_ROOT_ENV`] when it is set.

use gopher::gopher_probe_desc;

/// Environment variable that replaces `/proc` as the C probes' proc root.
pub const GOPHER_PROC_ROOT_ENV: &str = "GOPHER_PROC_ROOT";

/// A C probe compiled into this build.
#[derive(Debug)]
pub struct BuiltinCProbe {
    /// The probe's name in the config, equal to its descriptor's name.
    pub name: &'static str,
    /// The tables it emits (each has a `.meta` in `meta/`).
    pub tables: &'static [&'static str],
    /// Its descriptor (the C global `gopher_probe_<name>`).
    pub desc: fn() -> &'static gopher_probe_desc,
}

mod c {
    use std::ffi::c_char;

    use gopher::gopher_probe_desc;

    extern "C" {
        pub static gopher_probe_system_cpu: gopher_probe_desc;
        pub static gopher_probe_system_net: gopher_probe_desc;
        #[cfg_attr(not(test), expect(dead_code, reason = "used by the tests only"))]
        pub fn gopher_probe_system_cpu_fields() -> *const *const c_char;
        #[cfg_attr(not(test), expect(dead_code, reason = "used by the tests only"))]
        pub fn gopher_probe_system_net_fields() -> *const *const c_char;
    }
}

fn system_cpu_desc() -> &'static gopher_probe_desc {
    // SAFETY: a constant C global, initialised at load time and never
    // written (it is `const` in system_cpu.c).
    unsafe { &c::gopher_probe_system_cpu }
}

fn system_net_desc() -> &'static gopher_probe_desc {
    // SAFETY: as above, for system_net.c.
    unsafe { &c::gopher_probe_system_net }
}

/// Every C probe compiled into this build; each has a test below.
pub static BUILTIN: &[BuiltinCProbe] = &[
    BuiltinCProbe {
        name: "system_cpu",
        tables: &["system_cpu"],
        desc: system_cpu_desc,
    },
    BuiltinCProbe {
        name: "system_net",
        tables: &["system_net"],
        desc: system_net_desc,
    },
];

/// Finds a built-in C probe by name.
pub fn builtin(name: &str) -> Option<&'static BuiltinCProbe> {
    BUILTIN.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests;
