//! The nginx_link uprobe cost benchmark (placeholder until the probe lands).

fn main() {
    eprintln!("nginx_link: not written yet");
    std::process::exit(2);
}
