//! What the benchmark binaries share: ports and the agent's base config.

use std::net::TcpListener;
use std::path::Path;

use anyhow::Context as _;

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind an ephemeral port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

/// The agent's config without probes: metrics on 127.0.0.1:`port`, events
/// and meta to log files under `dir`, the repo's meta files. Sections may be
/// appended (`[imdb]`, `[[probes]]`).
pub fn base_config(dir: &Path, port: u16) -> String {
    let meta = Path::new(env!("CARGO_MANIFEST_DIR")).join("../meta");
    let (meta, d) = (meta.display(), dir.display());
    format!(
        r#"[global]
log_level = "info"
meta_dir = "{meta}"
state_dir = "{d}/state"

[metric]
out_channel = "web_server"

[event]
out_channel = "logs"

[meta]
out_channel = "logs"

[web_server]
port = {port}
bind_addr = "127.0.0.1"

[logs]
metric_dir = "{d}/logs/metrics"
event_dir = "{d}/logs/event"
meta_dir = "{d}/logs/meta"
debug_dir = "{d}/logs/debug"
"#
    )
}
