//! Log-file export (`out_channel = "logs"`): JSON lines under a directory,
//! rotated by size and count, so the files never take more than
//! `max_file_size * max_files` of disk.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// A size-bounded, rotating log file: `<name>`, `<name>.1`, ...,
/// `<name>.<max_files-1>`.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    out: Option<BufWriter<File>>,
    written: u64,
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
        };
        f.reopen()?;
        Ok(f)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
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

    /// Writes one line (a newline is added), rotating first if it would not
    /// fit. A line longer than the whole file limit is still written alone.
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
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

/// Logs an I/O failure once per burst: the first error after a success.
#[derive(Debug, Default)]
pub struct ErrorBurst {
    failing: bool,
}

impl ErrorBurst {
    /// Reports a result; logs only the first error of a run of errors.
    pub fn report(&mut self, what: &str, path: &Path, r: &std::io::Result<()>) {
        match r {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(path = %path.display(), "{what}: writing again");
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::error!(path = %path.display(), error = %e, "{what}: cannot write, records are dropped and counted until it recovers");
            }
            Err(_) => {}
        }
    }
}

/// Drains `rx`, formatting each item with `format` into `file`; flushes
/// after a second of quiet and at the end. Write failures are counted on
/// `errors` (one record each) and logged once per burst.
pub fn run_writer<T>(
    what: &str,
    rx: Receiver<T>,
    mut file: RotatingFile,
    errors: Arc<AtomicU64>,
    mut format: impl FnMut(&mut String, &T),
) {
    let mut line = String::with_capacity(1024);
    let mut burst = ErrorBurst::default();
    let path = file.path.clone();
    // With nothing buffered, block without a timeout: an idle agent does
    // not wake up once a second per log file.
    let mut pending = false;
    loop {
        let next = if pending {
            rx.recv_timeout(Duration::from_secs(1))
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match next {
            Ok(item) => {
                pending = true;
                line.clear();
                format(&mut line, &item);
                let r = file.write_line(&line);
                if r.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                burst.report(what, &path, &r);
            }
            Err(RecvTimeoutError::Timeout) => {
                let r = file.flush();
                burst.report(what, &path, &r);
                pending = false;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let r = file.flush();
    burst.report(what, &path, &r);
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
    fn writer_thread_formats_and_flushes_at_end() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = RotatingFile::open(dir.path(), "w.log", 4096, 2).expect("open");
        let (tx, rx) = std::sync::mpsc::sync_channel(10);
        for i in 0..3 {
            tx.send(i).expect("send");
        }
        drop(tx);
        let errors = Arc::new(AtomicU64::new(0));
        run_writer("test", rx, f, Arc::clone(&errors), |out, i: &i32| {
            out.push_str(&format!("{{\"n\":{i}}}"))
        });
        assert_eq!(
            std::fs::read_to_string(dir.path().join("w.log")).expect("r"),
            "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n"
        );
        assert_eq!(errors.load(Ordering::Relaxed), 0);
    }
}
