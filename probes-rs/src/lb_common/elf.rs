//! Just enough of ELF (64-bit, little endian) to find a function's symbol,
//! turn its address into the file offset a uprobe takes, and find version
//! strings. Every read is bounds-checked: a truncated or hostile file gives
//! an [`ElfError`], never a panic.

use std::fmt;

/// Why a file could not be read as the ELF this module handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfError(pub String);

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ElfError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ElfError> {
    Err(ElfError(msg.into()))
}

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;
const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const STT_FUNC: u8 = 2;

/// Which symbol table a symbol was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymTable {
    /// `.dynsym` (kept by `strip`).
    Dynsym,
    /// `.symtab` (removed by `strip`).
    Symtab,
}

/// A defined function symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol {
    /// Its virtual address in the file's own address space.
    pub vaddr: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The offset in the file of its first instruction (what a uprobe takes).
    pub file_offset: u64,
    /// Where it was found.
    pub table: SymTable,
}

#[derive(Debug, Clone, Copy)]
struct Section {
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
    entsize: u64,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// A parsed ELF file over its bytes.
#[derive(Debug)]
pub struct Elf<'a> {
    data: &'a [u8],
    sections: Vec<Section>,
    segments: Vec<Segment>,
}

fn u16_at(d: &[u8], off: u64) -> Option<u16> {
    let o = usize::try_from(off).ok()?;
    Some(u16::from_le_bytes(
        d.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(d: &[u8], off: u64) -> Option<u32> {
    let o = usize::try_from(off).ok()?;
    Some(u32::from_le_bytes(
        d.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(d: &[u8], off: u64) -> Option<u64> {
    let o = usize::try_from(off).ok()?;
    Some(u64::from_le_bytes(
        d.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

impl<'a> Elf<'a> {
    /// Reads the headers of a 64-bit little-endian ELF file.
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        if data.get(..4) != Some(b"\x7fELF") {
            return err("not an ELF file (no \\x7fELF magic)");
        }
        if data.get(4) != Some(&2) || data.get(5) != Some(&1) {
            return err("not a 64-bit little-endian ELF file");
        }
        let bad = || ElfError("ELF header truncated".into());
        let phoff = u64_at(data, 0x20).ok_or_else(bad)?;
        let shoff = u64_at(data, 0x28).ok_or_else(bad)?;
        let phentsize = u64::from(u16_at(data, 0x36).ok_or_else(bad)?);
        let phnum = u64::from(u16_at(data, 0x38).ok_or_else(bad)?);
        let shentsize = u64::from(u16_at(data, 0x3a).ok_or_else(bad)?);
        let shnum = u64::from(u16_at(data, 0x3c).ok_or_else(bad)?);
        let mut segments = Vec::new();
        for i in 0..phnum {
            let b = phoff.saturating_add(i.saturating_mul(phentsize));
            let (Some(kind), Some(flags), Some(offset), Some(vaddr), Some(filesz)) = (
                u32_at(data, b),
                u32_at(data, b.saturating_add(4)),
                u64_at(data, b.saturating_add(8)),
                u64_at(data, b.saturating_add(16)),
                u64_at(data, b.saturating_add(32)),
            ) else {
                return err(format!("program header {i} is out of the file"));
            };
            segments.push(Segment {
                kind,
                flags,
                offset,
                vaddr,
                filesz,
            });
        }
        let mut sections = Vec::new();
        for i in 0..shnum {
            let b = shoff.saturating_add(i.saturating_mul(shentsize));
            let (Some(kind), Some(offset), Some(size), Some(link), Some(entsize)) = (
                u32_at(data, b.saturating_add(4)),
                u64_at(data, b.saturating_add(24)),
                u64_at(data, b.saturating_add(32)),
                u32_at(data, b.saturating_add(40)),
                u64_at(data, b.saturating_add(56)),
            ) else {
                return err(format!("section header {i} is out of the file"));
            };
            sections.push(Section {
                kind,
                offset,
                size,
                link,
                entsize,
            });
        }
        Ok(Self {
            data,
            sections,
            segments,
        })
    }

    /// Whether the file has a `.symtab` (it was not stripped).
    pub fn has_symtab(&self) -> bool {
        self.sections.iter().any(|s| s.kind == SHT_SYMTAB)
    }

    /// The defined function `name`, from `.dynsym` first, then `.symtab`.
    pub fn function(&self, name: &str) -> Option<Symbol> {
        [
            (SHT_DYNSYM, SymTable::Dynsym),
            (SHT_SYMTAB, SymTable::Symtab),
        ]
        .into_iter()
        .find_map(|(kind, table)| self.find_in(kind, table, name))
    }

    /// Whether any symbol table defines `name` (a function or an object).
    pub fn defines(&self, name: &str) -> bool {
        [SHT_DYNSYM, SHT_SYMTAB]
            .into_iter()
            .any(|kind| self.lookup(kind, name, false).is_some())
    }

    fn find_in(&self, kind: u32, table: SymTable, name: &str) -> Option<Symbol> {
        let (vaddr, size) = self.lookup(kind, name, true)?;
        Some(Symbol {
            vaddr,
            size,
            file_offset: self.file_offset(vaddr)?,
            table,
        })
    }

    /// (value, size) of the defined symbol `name` in the table of `kind`.
    fn lookup(&self, kind: u32, name: &str, func_only: bool) -> Option<(u64, u64)> {
        let d = self.data;
        for sec in self.sections.iter().filter(|s| s.kind == kind) {
            let strtab = self.sections.get(usize::try_from(sec.link).ok()?)?;
            let ent = if sec.entsize == 0 { 24 } else { sec.entsize };
            for i in 0..sec.size / ent {
                let b = sec.offset.saturating_add(i.saturating_mul(ent));
                let (Some(st_name), Some(&info), Some(shndx), Some(value), Some(size)) = (
                    u32_at(d, b),
                    d.get(usize::try_from(b.saturating_add(4)).ok()?),
                    u16_at(d, b.saturating_add(6)),
                    u64_at(d, b.saturating_add(8)),
                    u64_at(d, b.saturating_add(16)),
                ) else {
                    break;
                };
                if shndx == 0 || (func_only && info & 0xf != STT_FUNC) {
                    continue;
                }
                if self.str_at(strtab, st_name) == Some(name.as_bytes()) {
                    return Some((value, size));
                }
            }
        }
        None
    }

    fn str_at(&self, strtab: &Section, off: u32) -> Option<&'a [u8]> {
        if u64::from(off) >= strtab.size {
            return None;
        }
        let start = usize::try_from(strtab.offset.saturating_add(u64::from(off))).ok()?;
        let end = usize::try_from(strtab.offset.saturating_add(strtab.size)).ok()?;
        let s = self.data.get(start..end.min(self.data.len()))?;
        let len = s.iter().position(|&b| b == 0)?;
        s.get(..len)
    }

    /// The file offset of virtual address `vaddr`, from the executable
    /// loadable segment holding it.
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .filter(|s| s.kind == PT_LOAD && s.flags & PF_X != 0)
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
            .map(|s| (vaddr - s.vaddr).saturating_add(s.offset))
    }
}

/// The first `<prefix><digits and dots>` in `data` (e.g. prefix `nginx/`
/// gives `1.22.1`), at least one digit, a dot and a digit; `None` if absent.
pub fn version_after(data: &[u8], prefix: &[u8]) -> Option<String> {
    let mut from = 0;
    while let Some(pos) = find(data.get(from..)?, prefix) {
        let start = from + pos + prefix.len();
        let rest = data.get(start..)?;
        let len = rest
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'.'))
            .unwrap_or(rest.len());
        let v = rest.get(..len)?;
        let ok = v.first().is_some_and(u8::is_ascii_digit)
            && v.contains(&b'.')
            && v.last().is_some_and(u8::is_ascii_digit);
        if ok {
            return String::from_utf8(v.to_vec()).ok();
        }
        from = start;
    }
    None
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `"1.22.1"` -> `[1, 22, 1]` (missing parts are absent; a non-number part
/// ends the list).
pub fn version_parts(v: &str) -> Vec<u32> {
    v.split('.').map_while(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_found_after_their_prefix() {
        let data = b"xx nginx/ nginx/a.b nginx/1.22.1\0 haproxy 2.6.12";
        assert_eq!(version_after(data, b"nginx/").as_deref(), Some("1.22.1"));
        assert_eq!(version_after(b"nginx/1.", b"nginx/"), None);
        assert_eq!(version_after(b"nginx/12", b"nginx/"), None);
        assert_eq!(version_after(b"", b"nginx/"), None);
        assert_eq!(version_parts("1.22.1"), vec![1, 22, 1]);
        assert_eq!(version_parts("1.x"), vec![1]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Elf::parse(b"").is_err());
        assert!(Elf::parse(b"\x7fELF\x01\x01").is_err());
        let mut h = vec![0u8; 64];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        // Headers pointing far out of the file.
        h[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        h[0x38..0x3a].copy_from_slice(&3u16.to_le_bytes());
        assert!(Elf::parse(&h).is_err());
        let mut h2 = vec![0u8; 64];
        h2[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let e = Elf::parse(&h2).expect("empty but valid headers");
        assert_eq!(e.function("main"), None);
        assert!(!e.has_symtab());
    }

    /// The agent's own test binary: a real ELF whose symbols we know.
    #[test]
    fn finds_a_function_of_a_real_binary() {
        let exe = std::fs::read("/proc/self/exe").expect("read /proc/self/exe");
        let elf = Elf::parse(&exe).expect("parse");
        // libc's functions are imported, not defined: never reported.
        assert_eq!(elf.function("malloc"), None);
        assert!(!elf.defines("no_such_symbol_anywhere"));
    }
}
