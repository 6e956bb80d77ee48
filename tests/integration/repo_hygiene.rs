//! Repository hygiene: no tracked file points outside the repository.
//!
//! Users get this repository and nothing else, so a tracked Markdown or
//! source file must not name the private design notes (the `shared`
//! directory beside the checkout), the build machine's absolute paths, or a
//! relative Markdown link that leaves the repository or leads nowhere.
//! Files come from `git ls-files`, so untracked build outputs do not count.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use crate::harness::repo;

/// Generated files that are not ours to word (the pinned kernel header).
const EXCLUDED: &[&str] = &["probes-rs/src/bpf/vmlinux.h"];

/// Extensions of the source files that are scanned for forbidden text.
const SOURCE_EXTS: &[&str] = &["rs", "c", "h", "sh", "toml", "py", "spec", "yml", "yaml"];

/// Known offenders in files owned elsewhere, tolerated until fixed there:
/// (file, start of the offending line, why). Each must still match a
/// finding, so an allowance that is no longer needed fails the test too.
const TOLERATED: &[(&str, &str, &str)] = &[];

/// Text that names a place outside the repository. Built at run time so
/// that this file does not hold the very strings it looks for.
fn forbidden_texts() -> [String; 2] {
    [format!("..{}shared", '/'), format!("/{}/", "work")]
}

/// What kind of scan a tracked path gets, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Markdown,
    Source,
}

fn kind_of(path: &str) -> Option<Kind> {
    if EXCLUDED.contains(&path) {
        return None;
    }
    let p = Path::new(path);
    let name = p.file_name()?.to_str()?;
    if name == "Makefile" {
        return Some(Kind::Source);
    }
    match p.extension().and_then(|e| e.to_str()) {
        Some("md") => Some(Kind::Markdown),
        Some(e) if SOURCE_EXTS.contains(&e) => Some(Kind::Source),
        _ => None,
    }
}

/// Tracked files, relative to the repository root.
fn tracked_files(root: &Path) -> Vec<String> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("run git ls-files (git must be installed)");
    assert!(
        out.status.success(),
        "git ls-files failed in {}: {}",
        root.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// Drops inline code spans (`` `...` ``), where `](` is not a link.
fn strip_code_spans(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        if b[i] != b'`' {
            i += 1;
            continue;
        }
        let open = i;
        while i < b.len() && b[i] == b'`' {
            i += 1;
        }
        let n = i - open;
        // Find a closing run of exactly n backticks.
        let mut j = i;
        let mut close = None;
        while j < b.len() {
            if b[j] == b'`' {
                let s = j;
                while j < b.len() && b[j] == b'`' {
                    j += 1;
                }
                if j - s == n {
                    close = Some(j);
                    break;
                }
            } else {
                j += 1;
            }
        }
        if let Some(end) = close {
            out.push_str(&line[copied..open]);
            copied = end;
            i = end;
        }
    }
    out.push_str(&line[copied..]);
    out
}

/// Link targets of one Markdown line: inline `[text](target "title")` and
/// reference definitions `[label]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() <= 3 && trimmed.starts_with('[') {
        if let Some(end) = trimmed.find("]:") {
            if let Some(t) = trimmed[end + 2..].split_whitespace().next() {
                out.push(t.trim_start_matches('<').trim_end_matches('>').to_owned());
            }
        }
    }
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let target = if let Some(inner) = after.strip_prefix('<') {
            inner.split('>').next().unwrap_or("").to_owned()
        } else {
            let mut depth = 0usize;
            let mut end = after.len();
            for (i, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = i;
                        break;
                    }
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            after[..end]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned()
        };
        out.push(target);
        rest = after;
    }
    out
}

/// Decodes `%XX` escapes of a link target.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What is wrong with a relative link `target` found in `file` (a path
/// relative to `root`), if anything.
fn check_link(root: &Path, file: &str, target: &str) -> Option<String> {
    if target.is_empty() || target.starts_with('#') {
        return None;
    }
    // A URL (`https:`, `mailto:`): a scheme before any `/`, `#` or `?`.
    let head = target.split(['/', '#', '?']).next().unwrap_or("");
    if head.contains(':') {
        return None;
    }
    let path = target.split(['#', '?']).next().unwrap_or("");
    if path.is_empty() {
        return None;
    }
    let path = percent_decode(path);
    // A leading `/` is the repository root, as the Git forges render it.
    let mut parts: Vec<String> = if path.starts_with('/') {
        Vec::new()
    } else {
        Path::new(file)
            .parent()
            .map(|d| {
                d.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    for c in Path::new(&path).components() {
        match c {
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Some(format!("link `{target}` leaves the repository"));
                }
            }
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    let resolved: PathBuf = parts.iter().collect();
    if root.join(&resolved).exists() {
        None
    } else {
        Some(format!(
            "link `{target}` leads to {}, which does not exist",
            resolved.display()
        ))
    }
}

/// Every finding in one file's text, as `file:line: what`.
fn scan(root: &Path, file: &str, kind: Kind, text: &str) -> Vec<(String, usize, String, String)> {
    let forbidden = forbidden_texts();
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        for f in &forbidden {
            if line.contains(f.as_str()) {
                out.push((
                    file.to_owned(),
                    n,
                    format!("names `{f}`, a path outside the repository"),
                    line.to_owned(),
                ));
            }
        }
        if kind != Kind::Markdown {
            continue;
        }
        let t = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| t.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => {
                fence = Some(m);
                continue;
            }
            (Some(open), Some(m)) if open == m => {
                fence = None;
                continue;
            }
            (Some(_), _) => continue,
            (None, None) => {}
        }
        for target in link_targets(&strip_code_spans(line)) {
            if let Some(why) = check_link(root, file, &target) {
                out.push((file.to_owned(), n, why, line.to_owned()));
            }
        }
    }
    out
}

#[test]
fn no_tracked_file_points_outside_the_repository() {
    let root = repo();
    let files = tracked_files(&root);
    assert!(
        files.iter().any(|f| f == "README.md"),
        "git ls-files in {} did not list README.md",
        root.display()
    );
    let mut findings = Vec::new();
    let mut scanned = 0;
    for file in &files {
        let Some(kind) = kind_of(file) else { continue };
        let bytes = match std::fs::read(root.join(file)) {
            Ok(b) => b,
            // Tracked but deleted in the working tree: nothing to scan.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("cannot read {file}: {e}"),
        };
        scanned += 1;
        findings.extend(scan(&root, file, kind, &String::from_utf8_lossy(&bytes)));
    }
    assert!(
        scanned > 50,
        "only {scanned} files scanned; is git ls-files right?"
    );

    let mut used = vec![false; TOLERATED.len()];
    let offending: Vec<String> = findings
        .into_iter()
        .filter(|(file, _, _, line)| {
            let hit = TOLERATED
                .iter()
                .position(|(f, start, _)| f == file && line.trim_start().starts_with(start));
            if let Some(i) = hit {
                used[i] = true;
            }
            hit.is_none()
        })
        .map(|(file, n, why, _)| format!("{file}:{n}: {why}"))
        .collect();
    assert!(
        offending.is_empty(),
        "tracked files point outside the repository (users have only the repository):\n{}",
        offending.join("\n")
    );
    let stale: Vec<String> = TOLERATED
        .iter()
        .zip(&used)
        .filter(|(_, &u)| !u)
        .map(|((f, start, why), _)| format!("{f}: `{start}...` ({why})"))
        .collect();
    assert!(
        stale.is_empty(),
        "these allowances in repo_hygiene.rs match nothing any more; remove them:\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_scanner_catches_what_it_should() {
    let root = repo();
    let [shared, work] = forbidden_texts();
    let md = format!(
        "See [notes]({shared}/design/X.md).\n\
         Built in {work}main.\n\
         [ok](../README.md) [gone](../no-such-file.md) [out](../../etc/passwd)\n\
         [web](https://example.com/a) [anchor](#layout) [`code`](how_to_add_probe.md#3-a-c-probe)\n\
         `[not a link](nowhere.md)`\n\
         ```\n[in a fence](nowhere.md)\n```\n\
         [ref]: ./missing.md\n"
    );
    let found: Vec<(usize, String)> = scan(&root, "docs/x.md", Kind::Markdown, &md)
        .into_iter()
        .map(|(_, n, why, _)| (n, why))
        .collect();
    let lines: Vec<usize> = found.iter().map(|(n, _)| *n).collect();
    // Line 1: the text and the link; 2: the text; 3: two bad links; 9: the reference.
    assert_eq!(lines, vec![1, 1, 2, 3, 3, 9], "{found:#?}");
    assert!(found[2].1.contains("names"), "{found:#?}");
    assert!(found[3].1.contains("does not exist"), "{found:#?}");
    assert!(found[4].1.contains("leaves the repository"), "{found:#?}");

    // Source files: text only, links are not parsed.
    let rs = format!("// see {shared}/design\nlet s = \"[a](nowhere.md)\";\n");
    let found = scan(&root, "gopher/src/x.rs", Kind::Source, &rs);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].1, 1);

    assert_eq!(kind_of("probes-rs/src/bpf/vmlinux.h"), None);
    assert_eq!(kind_of("Makefile"), Some(Kind::Source));
    assert_eq!(kind_of("docs/compat.md"), Some(Kind::Markdown));
    assert_eq!(kind_of("tests/data/x.meta"), None);
}
