//! The log-file source: follows `metrics.log` in a local gala-gopher's
//! `[logs] metric_dir` (JSON lines, rotated to `metrics.log.1`, ...), like
//! `tail -F`: what is already there is read first (records older than the
//! expiry window are skipped as stale), then new lines as they come. At a
//! rotation the rest of the old file is read before the new one.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config;
use crate::service::{now_ms, Shared};

/// The file gala-gopher writes metric records to.
pub const FILE: &str = "metrics.log";
/// Longest line kept; a longer one is dropped as bad input.
const MAX_LINE: usize = 1 << 20;

/// Follows one file by name across rotation and truncation.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: Option<(File, u64)>,
    pos: u64,
    partial: Vec<u8>,
    buf: Vec<u8>,
}

impl Follower {
    /// Follows `path` (which may not exist yet).
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            file: None,
            pos: 0,
            partial: Vec::new(),
            buf: vec![0; 64 * 1024],
        }
    }

    /// Reads what is new; calls `line` with every complete line. Returns
    /// whether anything was read.
    pub fn poll(&mut self, mut line: impl FnMut(&[u8])) -> std::io::Result<bool> {
        let mut any = false;
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => {
                    let ino = f.metadata()?.ino();
                    self.file = Some((f, ino));
                    self.pos = 0;
                    self.partial.clear();
                }
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        any |= self.drain(&mut line)?;
        let Some((f, ino)) = self.file.as_mut() else {
            return Ok(any);
        };
        match std::fs::metadata(&self.path) {
            Ok(m) if m.ino() != *ino => {
                // Rotated: the old file was drained above; the rest of it
                // may still come until the writer reopens, so drain once
                // more, then switch.
                any |= self.drain(&mut line)?;
                self.file = None;
                self.partial.clear();
                return Ok(self.poll(line)? || any);
            }
            Ok(m) if m.len() < self.pos => {
                f.seek(SeekFrom::Start(0))?;
                self.pos = 0;
                self.partial.clear();
                any |= self.drain(&mut line)?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(any)
    }

    fn drain(&mut self, line: &mut impl FnMut(&[u8])) -> std::io::Result<bool> {
        let Some((f, _)) = self.file.as_mut() else {
            return Ok(false);
        };
        let mut any = false;
        loop {
            let n = f.read(&mut self.buf)?;
            if n == 0 {
                return Ok(any);
            }
            any = true;
            self.pos += n as u64;
            let mut chunk = &self.buf[..n];
            while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
                if self.partial.is_empty() {
                    line(&chunk[..i]);
                } else {
                    self.partial.extend_from_slice(&chunk[..i]);
                    if self.partial.len() <= MAX_LINE {
                        line(&self.partial);
                    }
                    self.partial.clear();
                }
                chunk = &chunk[i + 1..];
            }
            if self.partial.len() + chunk.len() <= MAX_LINE + 1 {
                self.partial.extend_from_slice(chunk);
            }
        }
    }
}

/// Follows `<metric_dir>/metrics.log` until shutdown.
pub fn run(cfg: &config::Logfile, shared: &Shared) {
    let path = cfg.metric_dir.join(FILE);
    tracing::info!(path = %path.display(), "logfile: following");
    let mut f = Follower::new(&path);
    let mut failing = false;
    let mut lines: Vec<Vec<u8>> = Vec::new();
    while !shared.stopping() {
        let got = f.poll(|l| lines.push(l.to_vec()));
        if !lines.is_empty() {
            shared.ingest(lines.iter().map(Vec::as_slice), now_ms());
            lines.clear();
        }
        match got {
            Ok(true) => {
                failing = false;
                continue;
            }
            Ok(false) => {}
            Err(e) => {
                shared
                    .stats
                    .source_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !failing {
                    tracing::warn!(path = %path.display(), error = %e, "logfile: cannot read; retrying");
                    failing = true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(cfg.poll_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(f: &mut Follower) -> Vec<String> {
        let mut out = Vec::new();
        f.poll(|l| out.push(String::from_utf8_lossy(l).into_owned()))
            .expect("poll");
        out
    }

    #[test]
    fn follows_appends_rotation_and_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join(FILE);
        let mut f = Follower::new(&p);
        assert!(lines(&mut f).is_empty(), "no file yet");
        let mut w = File::create(&p).expect("create");
        write!(w, "a\nb\npart").expect("write");
        assert_eq!(lines(&mut f), ["a", "b"]);
        writeln!(w, "ial").expect("write");
        assert_eq!(lines(&mut f), ["partial"]);
        // Rotation: a last line lands in the old file after the rename.
        std::fs::rename(&p, dir.path().join("metrics.log.1")).expect("rotate");
        writeln!(w, "last-old").expect("write");
        let mut w = File::create(&p).expect("new file");
        writeln!(w, "new").expect("write");
        assert_eq!(lines(&mut f), ["last-old", "new"]);
        // Truncation in place.
        w.set_len(0).expect("truncate");
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .expect("open");
        writeln!(w, "x").expect("write");
        assert_eq!(lines(&mut f), ["x"]);
        assert!(lines(&mut f).is_empty());
    }
}
