//! What haproxy_link needs to know about one haproxy binary: its version
//! (the `haproxy_version` symbol), the hooked function, and the offsets
//! of the few fields it reads, from the table of versions checked here
//! ([`KNOWN`]) or an override file ([`OVERRIDE_ENV`]).
//!
//! docs/haproxy_link.md says how to find the offsets of another build.

use std::fmt;
use std::path::Path;

use crate::lb_common::elf::Elf;

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;

/// The function hooked: `void back_handle_st_rdy(struct stream *s)`,
/// called once per stream whose backend connection is ready.
pub const HOOK: &str = "back_handle_st_rdy";
/// The symbol holding the version string (`char haproxy_version[]`).
pub const VERSION_SYMBOL: &str = "haproxy_version";
/// Environment variable naming a layout override file.
pub const OVERRIDE_ENV: &str = "GALA_GOPHER_HAPROXY_LAYOUT";
/// Where the refusal points to.
pub const DOC: &str = "docs/haproxy_link.md";

/// Offsets of the fields read, per binary (`struct hap_layout` in
/// haproxy_link.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `struct stream`: `scf` (frontend `struct stconn *`).
    pub stream_scf: u32,
    /// `struct stream`: `scb` (backend `struct stconn *`).
    pub stream_scb: u32,
    /// `struct stconn`: `sedesc`.
    pub sc_sedesc: u32,
    /// `struct sedesc`: `conn`.
    pub sedesc_conn: u32,
    /// `struct connection`: `handle.fd`.
    pub conn_fd: u32,
    /// `OBJ_TYPE_SC` (first byte of a `struct stconn`).
    pub sc_type: u8,
    /// `OBJ_TYPE_CONN` (first byte of a `struct connection`).
    pub conn_type: u8,
}

impl Layout {
    /// As the kernel map's value (`struct hap_layout`).
    pub fn encode(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        for (i, v) in [
            self.stream_scf,
            self.stream_scb,
            self.sc_sedesc,
            self.sedesc_conn,
            self.conn_fd,
        ]
        .iter()
        .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b[20] = self.sc_type;
        b[21] = self.conn_type;
        b
    }
}

/// A verified layout: upstream version, architecture, offsets.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    /// Upstream version (the part of `haproxy_version` before any `-`).
    pub version: &'static str,
    /// `std::env::consts::ARCH`.
    pub arch: &'static str,
    /// The offsets.
    pub layout: Layout,
}

/// Layouts checked against a real binary (disassembly of the functions
/// that read each field, then the probe's own test on that binary).
pub const KNOWN: &[Known] = &[
    // Debian 12 haproxy 2.6.12-1+deb12u*: back_handle_st_rdy loads scb at
    // 0x2b8, sets sc->state at 1 and tests sc->sedesc(0x20)->flags(0x18);
    // sock_conn_check reads conn->flags at 4 and handle.fd at 0x68;
    // obj_type: OBJ_TYPE_APPLET = 4 (tested on s->target), so CONN = 6, SC = 8.
    Known {
        version: "2.6.12",
        arch: "x86_64",
        layout: Layout {
            stream_scf: 0x2b0,
            stream_scb: 0x2b8,
            sc_sedesc: 0x20,
            sedesc_conn: 0x8,
            conn_fd: 0x68,
            sc_type: 8,
            conn_type: 6,
        },
    },
];

/// Why a binary is not hooked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The file cannot be read or is no ELF64 little-endian file.
    NotElf(String),
    /// No `haproxy_version` symbol (stripped of .dynsym and .symtab, or not haproxy).
    NoVersion,
    /// No symbol for the hooked function.
    NoHook(String),
    /// A version neither in [`KNOWN`] nor in the override file.
    UnknownVersion(String),
    /// The override file is unreadable or malformed.
    BadOverride(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotElf(e) => write!(f, "not a readable 64-bit little-endian ELF file: {e}"),
            Self::NoVersion => write!(
                f,
                "no symbol {VERSION_SYMBOL} in .dynsym or .symtab (a fully stripped build, or not haproxy); its version cannot be checked"
            ),
            Self::NoHook(v) => write!(
                f,
                "haproxy {v} has no symbol {HOOK} in .dynsym or .symtab (stripped build)"
            ),
            Self::UnknownVersion(v) => {
                let known: Vec<String> = KNOWN
                    .iter()
                    .map(|k| format!("{} ({})", k.version, k.arch))
                    .collect();
                write!(
                    f,
                    "haproxy version {v} on {} has no known struct layout (known: {}); find its offsets as {DOC} says and name the file in {OVERRIDE_ENV}",
                    std::env::consts::ARCH,
                    known.join(", ")
                )
            }
            Self::BadOverride(e) => write!(f, "{e}"),
        }
    }
}

/// What [`inspect`] found out about a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// `haproxy_version` as written in the binary.
    pub version: String,
    /// File offset of [`HOOK`] (where the uprobe goes).
    pub hook_offset: u64,
    /// The layout to use.
    pub layout: Layout,
    /// Where it came from: `built-in` or the override file.
    pub source: String,
}

/// Reads the binary at `path` (any path that opens it, `/proc/<pid>/exe`
/// included) and [`inspect`]s it.
pub fn inspect_path(path: &Path, override_file: Option<&Path>) -> Result<Inspected, Refusal> {
    let data = std::fs::read(path).map_err(|e| Refusal::NotElf(e.to_string()))?;
    inspect(&data, override_file)
}

/// Finds the version, the hooked function and the layout of the binary
/// `data`: the override file, when set and for this version, else [`KNOWN`].
pub fn inspect(data: &[u8], override_file: Option<&Path>) -> Result<Inspected, Refusal> {
    let elf = Elf::parse(data).map_err(|e| Refusal::NotElf(e.to_string()))?;
    let (off, size) = object_symbol(data, VERSION_SYMBOL).ok_or(Refusal::NoVersion)?;
    let raw = data
        .get(off..off.saturating_add(size.min(64)))
        .ok_or(Refusal::NoVersion)?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let version = String::from_utf8_lossy(&raw[..end]).into_owned();
    if version.is_empty() {
        return Err(Refusal::NoVersion);
    }
    let hook_offset = elf
        .function(HOOK)
        .ok_or_else(|| Refusal::NoHook(version.clone()))?
        .file_offset;
    if let Some(file) = override_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Refusal::BadOverride(format!("{OVERRIDE_ENV} file {}: {e}", file.display()))
        })?;
        let o = parse_override(&text).map_err(|e| {
            Refusal::BadOverride(format!("{OVERRIDE_ENV} file {}: {e}", file.display()))
        })?;
        if o.version == version || o.version == upstream(&version) || o.version == "*" {
            return Ok(Inspected {
                version,
                hook_offset,
                layout: o.layout,
                source: file.display().to_string(),
            });
        }
    }
    let up = upstream(&version);
    KNOWN
        .iter()
        .find(|k| k.version == up && k.arch == std::env::consts::ARCH)
        .map(|k| Inspected {
            version: version.clone(),
            hook_offset,
            layout: k.layout,
            source: "built-in".into(),
        })
        .ok_or(Refusal::UnknownVersion(version))
}

/// The upstream part of a version string (`2.6.12-1+deb12u4` → `2.6.12`).
pub fn upstream(v: &str) -> &str {
    v.split(['-', '+', ' ']).next().unwrap_or(v)
}

/// An override file: the version it is for and the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// `version`: exact, upstream, or `*`.
    pub version: String,
    /// The offsets.
    pub layout: Layout,
}

/// Parses `key = value` lines (`#` comments; numbers decimal or 0x hex).
/// Every key is required: version, stream_scf, stream_scb, sc_sedesc,
/// sedesc_conn, conn_fd, sc_type, conn_type.
pub fn parse_override(text: &str) -> Result<Override, String> {
    let mut version = None;
    let mut nums: [Option<u32>; 7] = [None; 7];
    const KEYS: [&str; 7] = [
        "stream_scf",
        "stream_scb",
        "sc_sedesc",
        "sedesc_conn",
        "conn_fd",
        "sc_type",
        "conn_type",
    ];
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {n}: expected `key = value`, got {line:?}"))?;
        let (k, v) = (k.trim(), v.trim().trim_matches('"'));
        if k == "version" {
            version = Some(v.to_owned());
            continue;
        }
        let Some(slot) = KEYS.iter().position(|&x| x == k) else {
            return Err(format!(
                "line {n}: unknown key {k:?} (expected version or one of {})",
                KEYS.join(", ")
            ));
        };
        let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(h) => u32::from_str_radix(h, 16),
            None => v.parse::<u32>(),
        }
        .map_err(|_| format!("line {n}: {k}: expected a number (decimal or 0x hex), got {v:?}"))?;
        let limit = if slot >= 5 { 255 } else { 1 << 16 };
        if parsed > limit {
            return Err(format!(
                "line {n}: {k}: {parsed} is out of range (at most {limit})"
            ));
        }
        nums[slot] = Some(parsed);
    }
    let version = version.ok_or("missing key version")?;
    let mut vals = [0u32; 7];
    for (i, v) in nums.iter().enumerate() {
        vals[i] = v.ok_or_else(|| format!("missing key {}", KEYS[i]))?;
    }
    let byte = |v: u32| u8::try_from(v).unwrap_or(u8::MAX);
    Ok(Override {
        version,
        layout: Layout {
            stream_scf: vals[0],
            stream_scb: vals[1],
            sc_sedesc: vals[2],
            sedesc_conn: vals[3],
            conn_fd: vals[4],
            sc_type: byte(vals[5]),
            conn_type: byte(vals[6]),
        },
    })
}

/// File offset and size of the defined data symbol `name` (`.dynsym`, then
/// `.symtab`), through its section. lb_common's ELF reader finds functions;
/// the version is a `char[]` in `.data`, so this reads section headers
/// itself. Every read is bounds-checked.
fn object_symbol(d: &[u8], name: &str) -> Option<(usize, usize)> {
    fn rd<const N: usize>(d: &[u8], off: usize) -> Option<[u8; N]> {
        d.get(off..off.checked_add(N)?)?.try_into().ok()
    }
    let u16_at = |o: usize| rd::<2>(d, o).map(u16::from_le_bytes);
    let u32_at = |o: usize| rd::<4>(d, o).map(u32::from_le_bytes);
    let u64_at = |o: usize| {
        rd::<8>(d, o)
            .map(u64::from_le_bytes)
            .and_then(|v| usize::try_from(v).ok())
    };
    let shoff = u64_at(0x28)?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    if shentsize < 64 {
        return None;
    }
    // (type, addr, offset, size, link, entsize)
    let sec = |i: usize| {
        let o = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            u32_at(o + 4)?,
            u64_at(o + 0x10)?,
            u64_at(o + 0x18)?,
            u64_at(o + 0x20)?,
            u32_at(o + 0x28)?,
            u64_at(o + 0x38)?,
        ))
    };
    for kind in [SHT_DYNSYM, SHT_SYMTAB] {
        for i in 0..shnum {
            let (ty, _, off, size, link, ent) = sec(i)?;
            if ty != kind || ent < 24 {
                continue;
            }
            let strtab = sec(link as usize)?;
            for j in 0..size / ent {
                let s = off.checked_add(j.checked_mul(ent)?)?;
                let Some(n) = u32_at(s) else { break };
                let shndx = usize::from(u16_at(s + 6)?);
                if shndx == 0 || shndx >= 0xff00 {
                    continue;
                }
                let start = strtab.2.checked_add(n as usize)?;
                let Some(sym) = d.get(start..start.saturating_add(name.len() + 1)) else {
                    continue;
                };
                if sym.len() != name.len() + 1
                    || &sym[..name.len()] != name.as_bytes()
                    || sym[name.len()] != 0
                {
                    continue;
                }
                let value = u64_at(s + 8)?;
                let ssize = u64_at(s + 16)?;
                let (_, addr, soff, ..) = sec(shndx)?;
                return Some((value.checked_sub(addr)?.checked_add(soff)?, ssize));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOCK: &str = "/usr/sbin/haproxy";

    #[test]
    fn override_files_parse_and_name_the_faulty_line() {
        let o = parse_override(
            "# for my build\nversion = 2.8.3\nstream_scf = 0x2c0\nstream_scb=0x2c8\nsc_sedesc = 32\nsedesc_conn = 8\nconn_fd = 0x68\nsc_type = 8\nconn_type = 6\n",
        )
        .expect("valid");
        assert_eq!(o.version, "2.8.3");
        assert_eq!(o.layout.stream_scb, 0x2c8);
        assert_eq!(o.layout.sc_sedesc, 32);
        let e = parse_override("version = 1\nstream_scf = zz\n").expect_err("bad number");
        assert!(e.contains("line 2") && e.contains("stream_scf"), "{e}");
        let e = parse_override("version = 1\nfoo = 1\n").expect_err("bad key");
        assert!(e.contains("unknown key \"foo\""), "{e}");
        let e = parse_override("version = 1\nstream_scf = 1\n").expect_err("missing");
        assert!(e.contains("missing key stream_scb"), "{e}");
        let e = parse_override("stream_scf 1\n").expect_err("no =");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn the_layout_encodes_as_the_kernel_struct() {
        let b = KNOWN[0].layout.encode();
        assert_eq!(&b[0..4], &0x2b0u32.to_ne_bytes());
        assert_eq!(&b[16..20], &0x68u32.to_ne_bytes());
        assert_eq!((b[20], b[21]), (8, 6));
    }

    #[test]
    fn upstream_versions() {
        assert_eq!(upstream("2.6.12-1+deb12u4"), "2.6.12");
        assert_eq!(upstream("2.8.3"), "2.8.3");
    }

    #[test]
    fn non_elf_and_missing_files_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("haproxy");
        std::fs::write(&p, b"#!/bin/sh\n").expect("write");
        assert!(matches!(inspect_path(&p, None), Err(Refusal::NotElf(_))));
        assert!(matches!(
            inspect_path(&d.path().join("none"), None),
            Err(Refusal::NotElf(_))
        ));
        // An ELF without the version symbol: this test binary.
        let me = std::env::current_exe().expect("exe");
        assert_eq!(inspect_path(&me, None), Err(Refusal::NoVersion));
    }

    /// The stock binary of this machine (scripts/deps.sh installs it): its
    /// version is found and has the built-in layout; a copy with a patched
    /// version is refused with a message naming the version and the doc,
    /// unless an override file names that version.
    #[test]
    fn the_stock_haproxy_and_a_patched_copy() {
        let Ok(data) = std::fs::read(STOCK) else {
            panic!("{STOCK} is missing: install haproxy (scripts/deps.sh)");
        };
        let got = inspect(&data, None).expect("stock haproxy is known");
        assert!(got.version.starts_with("2.6.12"), "{}", got.version);
        assert_eq!(got.layout, KNOWN[0].layout);
        let d = tempfile::tempdir().expect("tempdir");
        let copy = d.path().join("haproxy");
        let patched = patch_version(&data, b"2.6.12", b"2.6.99");
        std::fs::write(&copy, patched).expect("write copy");
        let e = inspect_path(&copy, None).expect_err("unknown version");
        let msg = e.to_string();
        assert!(
            msg.contains("2.6.99") && msg.contains(DOC) && msg.contains(OVERRIDE_ENV),
            "{msg}"
        );
        let o = d.path().join("layout.conf");
        std::fs::write(
            &o,
            "version = 2.6.99\nstream_scf = 0x2b0\nstream_scb = 0x2b8\nsc_sedesc = 0x20\nsedesc_conn = 8\nconn_fd = 0x68\nsc_type = 8\nconn_type = 6\n",
        )
        .expect("write override");
        let got = inspect_path(&copy, Some(&o)).expect("override applies");
        assert_eq!(got.source, o.display().to_string());
        std::fs::write(&o, "version = 2.6.99\n").expect("write bad override");
        let e = inspect_path(&copy, Some(&o)).expect_err("bad override");
        assert!(e.to_string().contains("missing key stream_scf"), "{e}");
    }

    fn patch_version(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        let mut i = 0;
        while let Some(p) = out[i..].windows(from.len()).position(|w| w == from) {
            out[i + p..i + p + to.len()].copy_from_slice(to);
            i += p + from.len();
        }
        out
    }
}
