//! The haproxy_link uprobe cost benchmark (placeholder until the probe lands).

fn main() {
    eprintln!("haproxy_link: not written yet");
    std::process::exit(2);
}
