//! What this build of gala-gopher left out, and the words for a config that
//! asks for it.
//!
//! A build holds Kafka (cargo feature `kafka`) and every built-in probe
//! (`probe-<name>`, forwarding to the probe crates' features) by default. A
//! build from a legacy `tail.conf` (`make build TAIL=tail.conf`,
//! scripts/tail-features.sh) turns off the features of what the file names:
//! the probes of `PROBES` and `EXTEND_PROBES`, and the `FEATURES` (kafka).
//! The config still parses `[kafka]`, `out_channel = "kafka"` and the
//! trimmed probes' entries; [`super::Config::validate`] refuses them with
//! the messages here, which name the build option, so that they are not
//! mistaken for a typo (an unknown probe).

/// Whether this build holds the Kafka exporter (cargo feature `kafka`).
pub const KAFKA: bool = cfg!(feature = "kafka");

/// The message for `<section>.out_channel = "kafka"` in a build without
/// Kafka.
pub fn kafka_left_out() -> String {
    "this gala-gopher was built without Kafka, so out_channel = \"kafka\" cannot be used (cargo feature \
     `kafka` of gala-gopher is off; a tail.conf build leaves it out when FEATURES names kafka): build it \
     with Kafka, or choose another out_channel"
        .into()
}

/// Whether `name` is a built-in probe (native or C) that this build left out.
pub fn probe_left_out(name: &str) -> bool {
    gopher_probes::native_probe_trimmed(name) || gopher_probes_c::builtin_trimmed(name)
}

/// The message for a probe switched on that this build left out; `None`
/// when `name` is not such a probe (it is compiled in, or unknown).
pub fn probe_left_out_message(name: &str) -> Option<String> {
    probe_left_out(name).then(|| {
        format!(
            "probe `{name}` was left out of this build of gala-gopher (cargo feature `probe-{name}` is off; a \
             tail.conf build leaves it out when PROBES or EXTEND_PROBES names it): build it with the probe, or \
             set switch = \"off\""
        )
    })
}

/// The built-in probes this build left out, in registry order.
pub fn probes_left_out() -> Vec<&'static str> {
    gopher_probes::ALL_NATIVE_PROBES
        .iter()
        .chain(gopher_probes_c::ALL_BUILTIN)
        .copied()
        .filter(|n| probe_left_out(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_out_probes_are_those_not_compiled_in() {
        for name in gopher_probes::ALL_NATIVE_PROBES
            .iter()
            .chain(gopher_probes_c::ALL_BUILTIN)
        {
            let compiled = gopher_probes::native_probe(name).is_some()
                || gopher_probes_c::builtin(name).is_some();
            assert_eq!(probe_left_out(name), !compiled, "{name}");
            assert_eq!(probe_left_out_message(name).is_some(), !compiled, "{name}");
        }
        assert!(!probe_left_out("no_such_probe"));
        assert!(probe_left_out_message("no_such_probe").is_none());
    }

    /// What the build holds decides whether a config asking for Kafka or
    /// tcp_link loads, and a refusal names the file, line, key and option.
    #[test]
    fn a_config_asking_for_what_was_left_out_is_refused_at_its_line() {
        let src = "[metric]\nout_channel = \"kafka\"\n\n[[probes]]\nname = \"tcp_link\"\nswitch = \"on\"\n";
        let file = std::path::Path::new("/cfg/gala-gopher.toml");
        let problems = match crate::config::Config::from_toml_str(src, file) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        };
        let kafka = format!(
            "/cfg/gala-gopher.toml:2: key `metric.out_channel`: {}",
            kafka_left_out()
        );
        assert_eq!(problems.contains(&kafka), !KAFKA, "{problems:?}");
        let probe = probe_left_out_message("tcp_link")
            .map(|m| format!("/cfg/gala-gopher.toml:5: key `probes[0].name`: {m}"));
        assert_eq!(
            problems.len(),
            usize::from(!KAFKA) + usize::from(probe.is_some()),
            "{problems:?}"
        );
        if let Some(probe) = probe {
            assert!(problems.contains(&probe), "{problems:?}");
        }
    }

    #[test]
    fn messages_name_the_build_option() {
        let m = kafka_left_out();
        assert!(
            m.contains("without Kafka") && m.contains("cargo feature `kafka`"),
            "{m}"
        );
        assert!(m.contains("tail.conf"), "{m}");
    }

    /// Every probe of the probe crates has its `probe-<name>` feature in
    /// gala-gopher's Cargo.toml, on by default (the names tail.conf takes).
    #[test]
    fn every_probe_has_a_gopher_feature() {
        let manifest = include_str!("../../Cargo.toml");
        let default = manifest
            .split("default = [")
            .nth(1)
            .and_then(|s| s.split(']').next())
            .expect("a default feature list");
        for name in gopher_probes::ALL_NATIVE_PROBES {
            let line = format!("probe-{name} = [\"gopher-probes/{name}\"]");
            assert!(manifest.contains(&line), "gopher/Cargo.toml lacks `{line}`");
            assert!(
                default.contains(&format!("\"probe-{name}\"")),
                "probe-{name} not default"
            );
        }
        for name in gopher_probes_c::ALL_BUILTIN {
            let line = format!("probe-{name} = [\"gopher-probes-c/{name}\"]");
            assert!(manifest.contains(&line), "gopher/Cargo.toml lacks `{line}`");
            assert!(
                default.contains(&format!("\"probe-{name}\"")),
                "probe-{name} not default"
            );
        }
        assert!(default.contains("\"kafka\""));
    }
}
