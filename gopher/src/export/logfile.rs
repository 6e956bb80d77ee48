//! Log files (`out_channel = "logs"`, and the agent's own log): lines under
//! a directory, rotated by size and count, so the files never take more than
//! `max_file_size * max_files` of disk. The sink that writes records into
//! them is [`crate::export::sink::LogSink`].

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A request to reopen log files by their path (SIGHUP, after logrotate
/// moved them away). Each [`RotatingFile`] that follows it reopens its path
/// before its next write once the request is made; clones share requests.
#[derive(Debug, Clone, Default)]
pub struct ReopenSignal(Arc<AtomicU64>);

impl ReopenSignal {
    /// A signal no file has been asked to follow yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every file that follows this signal to reopen its path.
    pub fn trigger(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn generation(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A size-bounded, rotating log file: `<name>`, `<name>.1`, ...,
/// `<name>.<max_files-1>`.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    out: Option<BufWriter<File>>,
    written: u64,
    /// The reopen requests followed, and the last one acted on.
    reopen: Option<(ReopenSignal, u64)>,
}

impl RotatingFile {
    /// Opens (creating the directory) `dir/name` for appending.
    pub fn open(dir: &Path, name: &str, max_bytes: u64, max_files: u32) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut f = Self {
            path: dir.join(name),
            max_bytes: max_bytes.max(1024),
            max_files: max_files.max(1),
            out: None,
            written: 0,
            reopen: None,
        };
        f.reopen()?;
        Ok(f)
    }

    /// Reopens the path before the next write whenever `signal` is
    /// triggered.
    pub fn follow(mut self, signal: &ReopenSignal) -> Self {
        self.reopen = Some((signal.clone(), signal.generation()));
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes what is buffered to the file open now, then opens the path
    /// again (creating it): after the file was moved away, writing goes on
    /// in a new file of the same name.
    pub fn reopen(&mut self) -> std::io::Result<()> {
        if let Some(mut out) = self.out.take() {
            // Lines buffered for the old file still belong there; a failure
            // must not stop the new file from being opened.
            let _ = out.flush();
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.written = file.metadata()?.len();
        self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
        }
        if self.max_files == 1 {
            std::fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            std::fs::remove_file(self.rotated(self.max_files - 1)).or_else(ignore_missing)?;
            for n in (1..self.max_files - 1).rev() {
                std::fs::rename(self.rotated(n), self.rotated(n + 1)).or_else(ignore_missing)?;
            }
            std::fs::rename(&self.path, self.rotated(1)).or_else(ignore_missing)?;
        }
        self.reopen()
    }

    /// Reopens the path if a reopen was requested since the last look.
    fn reopen_if_asked(&mut self) -> std::io::Result<()> {
        let asked = match &mut self.reopen {
            Some((signal, seen)) => {
                let now = signal.generation();
                let asked = now != *seen;
                *seen = now;
                asked
            }
            None => false,
        };
        if asked {
            self.reopen()?;
        }
        Ok(())
    }

    /// Writes one line (a newline is added), rotating first if it would not
    /// fit. A line longer than the whole file limit is still written alone.
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.reopen_if_asked()?;
        let len = line.len() as u64 + 1;
        if self.written > 0 && self.written + len > self.max_bytes {
            self.rotate()?;
        }
        if self.out.is_none() {
            self.reopen()?;
        }
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| std::io::Error::other("log file not open"))?;
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        self.written += len;
        Ok(())
    }

    /// Flushes buffered lines to the file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut() {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

/// Appends raw bytes (the agent's own log lines), rotating by size and
/// flushing each write so nothing waits in a buffer.
impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.reopen_if_asked()?;
        let len = buf.len() as u64;
        if self.written > 0 && self.written + len > self.max_bytes {
            self.rotate()?;
        }
        if self.out.is_none() {
            self.reopen()?;
        }
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| std::io::Error::other("log file not open"))?;
        out.write_all(buf)?;
        out.flush()?;
        self.written += len;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        RotatingFile::flush(self)
    }
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_bounds_disk_use() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut f = RotatingFile::open(dir.path(), "m.log", 1024, 3).expect("open");
        let line = "x".repeat(99);
        for _ in 0..1000 {
            f.write_line(&line).expect("write");
        }
        f.flush().expect("flush");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["m.log", "m.log.1", "m.log.2"]);
        let total: u64 = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("e").metadata().expect("md").len())
            .sum();
        assert!(total <= 3 * 1024, "{total} bytes on disk");
        let full = std::fs::read_to_string(dir.path().join("m.log.1")).expect("read");
        assert_eq!(full.lines().count(), 10, "whole lines only");
        assert!(full.lines().all(|l| l == line));
    }

    #[test]
    fn reopening_appends_and_counts_existing_size() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let mut f = RotatingFile::open(dir.path(), "a.log", 4096, 2).expect("open");
            f.write_line("one").expect("w");
            f.flush().expect("f");
        }
        let mut f = RotatingFile::open(dir.path(), "a.log", 4096, 2).expect("open");
        f.write_line("two").expect("w");
        f.flush().expect("f");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.log")).expect("r"),
            "one\ntwo\n"
        );
    }

    #[test]
    fn a_reopen_request_starts_a_new_file_after_a_rename() {
        let dir = tempfile::tempdir().expect("tmp");
        let signal = ReopenSignal::new();
        let mut f = RotatingFile::open(dir.path(), "r.log", 4096, 2)
            .expect("open")
            .follow(&signal);
        f.write_line("before").expect("w");
        f.flush().expect("f");
        std::fs::rename(dir.path().join("r.log"), dir.path().join("r.log.old")).expect("mv");
        f.write_line("still old").expect("w");
        signal.trigger();
        f.write_line("after").expect("w");
        f.flush().expect("f");
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).expect("read");
        assert_eq!(read("r.log.old"), "before\nstill old\n");
        assert_eq!(read("r.log"), "after\n");
        // Write (the agent's own log) follows the signal too.
        std::fs::rename(dir.path().join("r.log"), dir.path().join("r.log.old")).expect("mv");
        signal.trigger();
        f.write_all(b"raw\n").expect("w");
        assert_eq!(read("r.log"), "raw\n");
        // An explicit reopen needs no signal.
        std::fs::remove_file(dir.path().join("r.log")).expect("rm");
        f.reopen().expect("reopen");
        assert!(dir.path().join("r.log").exists());
    }
}
