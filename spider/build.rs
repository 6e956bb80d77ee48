//! Checks that the topology page's layout library was vendored
//! (scripts/web-vendor.sh) before `src/web.rs` embeds it.

const VENDORED: [&str; 3] = [
    "web/vendor/elk-api.js",
    "web/vendor/elk-worker.min.js",
    "web/vendor/LICENSE.md",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-changed=web/vendor");
    for f in VENDORED {
        println!("cargo:rerun-if-changed={f}");
        let ok = std::fs::metadata(f).is_ok_and(|m| m.len() > 0);
        if !ok {
            eprintln!(
                "error: spider/{f} is missing: run scripts/web-vendor.sh (it installs the layout library pinned by spider/web/package-lock.json from the npm registry)"
            );
            std::process::exit(1);
        }
    }
}
