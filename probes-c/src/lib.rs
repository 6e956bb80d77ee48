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
    // Each C global exists only when its probe's C file is compiled (the
    // cargo feature of its name, see build.rs).
    extern "C" {
        #[cfg(feature = "system_cpu")]
        pub static gopher_probe_system_cpu: gopher::gopher_probe_desc;
        #[cfg(feature = "system_net")]
        pub static gopher_probe_system_net: gopher::gopher_probe_desc;
        #[cfg(feature = "system_cpu")]
        #[cfg_attr(
            not(all(test, feature = "system_cpu", feature = "system_net")),
            expect(dead_code, reason = "used by the tests only")
        )]
        pub fn gopher_probe_system_cpu_fields() -> *const *const std::ffi::c_char;
        #[cfg(feature = "system_net")]
        #[cfg_attr(
            not(all(test, feature = "system_cpu", feature = "system_net")),
            expect(dead_code, reason = "used by the tests only")
        )]
        pub fn gopher_probe_system_net_fields() -> *const *const std::ffi::c_char;
    }
}

#[cfg(feature = "system_cpu")]
fn system_cpu_desc() -> &'static gopher_probe_desc {
    // SAFETY: a constant C global, initialised at load time and never
    // written (it is `const` in system_cpu.c).
    unsafe { &c::gopher_probe_system_cpu }
}

#[cfg(feature = "system_net")]
fn system_net_desc() -> &'static gopher_probe_desc {
    // SAFETY: as above, for system_net.c.
    unsafe { &c::gopher_probe_system_net }
}

/// Every C probe compiled into this build, each behind the cargo feature of
/// its name (all on by default); each has a test below.
pub static BUILTIN: &[BuiltinCProbe] = &[
    #[cfg(feature = "system_cpu")]
    BuiltinCProbe {
        name: "system_cpu",
        tables: &["system_cpu"],
        desc: system_cpu_desc,
    },
    #[cfg(feature = "system_net")]
    BuiltinCProbe {
        name: "system_net",
        tables: &["system_net"],
        desc: system_net_desc,
    },
];

/// The name of every C probe of this crate, compiled into this build or
/// not: each is also the name of its cargo feature. A configured name found
/// here but not in [`BUILTIN`] was trimmed out of the build.
pub static ALL_BUILTIN: &[&str] = &["system_cpu", "system_net"];

/// Finds a built-in C probe by name.
pub fn builtin(name: &str) -> Option<&'static BuiltinCProbe> {
    BUILTIN.iter().find(|p| p.name == name)
}

/// Whether `name` is a C probe of this crate that this build left out (its
/// cargo feature is off).
pub fn builtin_trimmed(name: &str) -> bool {
    ALL_BUILTIN.contains(&name) && builtin(name).is_none()
}

// The tests run both probes (the default build).
#[cfg(all(test, feature = "system_cpu", feature = "system_net"))]
mod tests;

#[cfg(test)]
mod registry_tests {
    use super::*;

    #[test]
    fn every_compiled_probe_is_listed_and_the_rest_are_trimmed() {
        for p in BUILTIN {
            assert!(
                ALL_BUILTIN.contains(&p.name),
                "{} is not in ALL_BUILTIN",
                p.name
            );
            assert!(!builtin_trimmed(p.name));
        }
        let compiled = ALL_BUILTIN.iter().filter(|n| builtin(n).is_some()).count();
        assert_eq!(compiled, BUILTIN.len());
        assert_eq!(
            compiled == ALL_BUILTIN.len(),
            cfg!(all(feature = "system_cpu", feature = "system_net"))
        );
        assert!(!builtin_trimmed("no_such_probe"));
    }
}
