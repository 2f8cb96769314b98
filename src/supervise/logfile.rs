//! The files of `ipc-run run --log-dir DIR`: each instance's stdout and
//! stderr appended, unprefixed, to `DIR/<instance>.stdout.log` and
//! `DIR/<instance>.stderr.log`, rotated by size, optionally timestamped.
//!
//! Two files per instance, as supervisord keeps `stdout_logfile` and
//! `stderr_logfile`: each file is then the byte-exact stream the process
//! wrote, which one merged file (process-compose's `log_location`) cannot be
//! without a marker on every line.
//!
//! Writing a regular file cannot be made non-blocking, so its cost on the
//! relay is bounded instead: records are gathered in a buffer per file and
//! written with one `write(2)` when the buffer reaches [`FLUSH_AT`] or when
//! the event loop flushes its outputs before waiting again (per batch of
//! reads, never per line). Rotation happens only between lines, so a line is
//! never split across two files: before a line that would take a file past
//! `max_size`, the buffer is written, `name.log.K-1` … `name.log.1` are
//! renamed one up (the oldest beyond `keep` is replaced), `name.log`
//! becomes `name.log.1`, and a fresh `name.log` is created, as
//! supervisord's `stdout_logfile_maxbytes`/`stdout_logfile_backups` and
//! logrotate's `rotate N` do. A file exceeds `max_size` only when one line is
//! longer than that.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::logs::{CHUNK, Record};

/// Bytes gathered for one file before they are written without waiting
/// for the event loop's flush.
const FLUSH_AT: usize = 64 * 1024;

/// How the files of a log directory are rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a line that would take the file past this many
    /// bytes; 0 never rotates.
    pub max_size: u64,
    /// Rotated files kept (`name.log.1` … `name.log.KEEP`); with 0 the file
    /// is started afresh.
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_size: 0,
            keep: 5,
        }
    }
}

/// One stream's log file and what waits to be written to it.
#[derive(Debug)]
struct LogFile {
    fd: OwnedFd,
    /// The file's name in the directory.
    name: String,
    /// Bytes in the file (written, not counting `buf`).
    size: u64,
    buf: Vec<u8>,
    /// The last record was a full [`CHUNK`]: the line may go on in the
    /// next record, so its newline waits for it.
    line_open: bool,
}

/// Every log file of a run, in its directory.
#[derive(Debug)]
pub struct LogFiles {
    dir: OwnedFd,
    path: PathBuf,
    rotation: Rotation,
    /// Per name: its stdout and stderr files.
    files: Vec<[LogFile; 2]>,
    /// Per instance: its name's entry in `files`. A name a reload adds
    /// back, in a slot of its own, writes to the files the name has open,
    /// so it neither opens them again (an fd per reload) nor has two
    /// handles on one file, which would rotate it twice.
    of: Vec<usize>,
    /// Files with bytes in their buffer, as (entry in `files`, stream).
    dirty: Vec<(usize, usize)>,
    /// Writes, renames or opens that failed (the bytes are dropped).
    pub errors: u64,
}

/// Why the log directory or a file in it could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", .path.display())]
pub struct LogDirError {
    /// What was being done.
    pub action: &'static str,
    /// The directory or file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

impl LogFiles {
    /// Opens (creating 0600, or appending to a file of ours) the two files
    /// of each of `names` in `dir`, which must exist and be ours or root's
    /// and writable by nobody else (see [`crate::safe_file`]).
    pub fn open(dir: &Path, names: &[&str], rotation: Rotation) -> Result<Self, LogDirError> {
        let refused = |path: &Path, action, e: crate::safe_file::SafeFileError| LogDirError {
            action,
            path: path.to_owned(),
            source: match e {
                crate::safe_file::SafeFileError::Sys { errno, .. } => errno.into(),
                other => std::io::Error::other(other),
            },
        };
        let dir_fd = crate::safe_file::open_checked_dir(dir)
            .map_err(|e| refused(dir, "use log directory", e))?;
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let open = |stream: &str| {
                let file_name = format!("{name}.{stream}.log");
                LogFile::open(dir_fd.as_fd(), dir, file_name)
                    .map_err(|(path, e)| refused(&path, "open log file", e))
            };
            files.push([open("stdout")?, open("stderr")?]);
        }
        Ok(LogFiles {
            dir: dir_fd,
            path: dir.to_owned(),
            rotation,
            of: (0..files.len()).collect(),
            files,
            dirty: Vec::new(),
            errors: 0,
        })
    }

    /// Opens the files of one more instance, `name`, the next index (an
    /// instance a reload adds), unless the name has them open already.
    pub fn add(&mut self, name: &str) -> Result<(), LogDirError> {
        let stdout = format!("{name}.stdout.log");
        if let Some(k) = self.files.iter().position(|pair| pair[0].name == stdout) {
            self.of.push(k);
            return Ok(());
        }
        let open = |stream: &str| {
            LogFile::open(self.dir.as_fd(), &self.path, format!("{name}.{stream}.log")).map_err(
                |(path, e)| LogDirError {
                    action: "open log file",
                    path,
                    source: match e {
                        crate::safe_file::SafeFileError::Sys { errno, .. } => errno.into(),
                        other => std::io::Error::other(other),
                    },
                },
            )
        };
        let pair = [open("stdout")?, open("stderr")?];
        self.of.push(self.files.len());
        self.files.push(pair);
        Ok(())
    }

    /// Adds a record of `instance`'s stream `slot` (0 stdout, 1 stderr),
    /// behind `stamp` (a timestamp and a space) when it starts a line.
    #[inline]
    pub fn write(&mut self, instance: usize, slot: usize, record: Record<'_>, stamp: &[u8]) {
        let Some(&k) = self.of.get(instance) else {
            return;
        };
        let file = &mut self.files[k][slot];
        if file.buf.is_empty() {
            self.dirty.push((k, slot));
        }
        if record.starts_line {
            if file.line_open {
                file.buf.push(b'\n');
                file.line_open = false;
            }
            let need = (stamp.len() + record.bytes.len() + 1) as u64;
            let held = file.size + file.buf.len() as u64;
            if self.rotation.max_size > 0 && held > 0 && held + need > self.rotation.max_size {
                self.errors += file.rotate(self.dir.as_fd(), &self.path, self.rotation);
            }
            file.buf.extend_from_slice(stamp);
        }
        file.buf.extend_from_slice(record.bytes);
        if record.bytes.len() == CHUNK {
            file.line_open = true;
        } else {
            file.buf.push(b'\n');
            file.line_open = false;
        }
        if file.buf.len() >= FLUSH_AT {
            self.errors += file.flush();
        }
    }

    /// Writes what every file's buffer holds; called by the event loop
    /// before it waits again.
    pub fn flush(&mut self) {
        for (k, slot) in self.dirty.drain(..) {
            self.errors += self.files[k][slot].flush();
        }
    }

    /// At the end: writes the buffers and ends a line left open.
    pub fn finish(&mut self) {
        self.flush();
        for file in self.files.iter_mut().flatten() {
            if file.line_open {
                file.buf.push(b'\n');
                file.line_open = false;
                self.errors += file.flush();
            }
        }
    }
}

impl Drop for LogFiles {
    fn drop(&mut self) {
        self.finish();
    }
}

impl LogFile {
    fn open(
        dir: BorrowedFd<'_>,
        dir_path: &Path,
        name: String,
    ) -> Result<LogFile, (PathBuf, crate::safe_file::SafeFileError)> {
        let path = dir_path.join(&name);
        let fd = crate::safe_file::open_in(
            dir,
            Path::new(&name),
            &path,
            crate::safe_file::Existing::Append,
        )
        .map_err(|e| (path.clone(), e))?;
        let size = nix::sys::stat::fstat(&fd).map_or(0, |st| st.st_size as u64);
        Ok(LogFile {
            fd,
            name,
            size,
            buf: Vec::new(),
            line_open: false,
        })
    }

    /// Writes the buffer; returns 1 if that failed (the bytes are dropped).
    fn flush(&mut self) -> u64 {
        if self.buf.is_empty() {
            return 0;
        }
        let result = write_all(self.fd.as_fd(), &self.buf);
        self.size += self.buf.len() as u64;
        self.buf.clear();
        u64::from(result.is_err())
    }

    /// Writes the buffer, shifts the rotated files one up and starts a
    /// fresh file; returns the number of steps that failed. Should the
    /// fresh file not be created, writing goes on in the old one.
    fn rotate(&mut self, dir: BorrowedFd<'_>, dir_path: &Path, rotation: Rotation) -> u64 {
        let mut errors = self.flush();
        let numbered = |k: u32| format!("{}.{k}", self.name);
        let rename = |from: &str, to: &str| match nix::fcntl::renameat(dir, from, dir, to) {
            Ok(()) | Err(Errno::ENOENT) => 0,
            Err(_) => 1,
        };
        if rotation.keep == 0 {
            errors += u64::from(
                nix::unistd::unlinkat(
                    dir,
                    self.name.as_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                )
                .is_err(),
            );
        } else {
            for k in (1..rotation.keep).rev() {
                errors += rename(&numbered(k), &numbered(k + 1));
            }
            errors += rename(&self.name, &numbered(1));
        }
        match LogFile::open(dir, dir_path, std::mem::take(&mut self.name)) {
            Ok(fresh) => {
                self.fd = fresh.fd;
                self.name = fresh.name;
                self.size = fresh.size;
            }
            Err((path, _)) => {
                self.name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                self.size = 0;
                errors += 1;
            }
        }
        errors
    }
}

/// Writes all of `buf` to the regular file `fd`.
fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// `time` (since the epoch) as RFC 3339 in UTC with milliseconds,
/// `2026-01-31T23:59:59.123Z`: 24 bytes.
pub fn rfc3339_ms(time: std::time::Duration) -> [u8; 24] {
    let secs = time.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, value: u64, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, rem / 3600, 2);
    put(14, rem % 3600 / 60, 2);
    put(17, rem % 60, 2);
    put(20, u64::from(time.subsec_millis()), 3);
    out
}

/// The Gregorian (year, month, day) of `days` since 1970-01-01, by
/// counting 400-year eras from 0000-03-01 (the leap day then ends a year).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stamp(secs: u64, ms: u32) -> String {
        let d = Duration::from_secs(secs) + Duration::from_millis(u64::from(ms));
        String::from_utf8(rfc3339_ms(d).to_vec()).unwrap()
    }

    #[test]
    fn formats_rfc3339_with_milliseconds() {
        assert_eq!(stamp(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(stamp(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(stamp(1_798_761_599, 999), "2026-12-31T23:59:59.999Z");
        assert_eq!(stamp(4_107_542_400, 120), "2100-03-01T00:00:00.120Z");
    }

    fn scratch(case: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ipc-run-logfile-{case}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        dir
    }

    fn line(bytes: &[u8]) -> Record<'_> {
        Record {
            bytes,
            starts_line: true,
        }
    }

    #[test]
    fn rotates_between_lines_and_keeps_keep_files() {
        let dir = scratch("rotate");
        let rotation = Rotation {
            max_size: 25,
            keep: 2,
        };
        let mut files = LogFiles::open(&dir, &["a"], rotation).unwrap();
        for i in 0..10 {
            files.write(0, 0, line(format!("line {i:02}").as_bytes()), b"");
            files.flush();
        }
        drop(files);
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(read("a.stdout.log"), "line 09\n");
        assert_eq!(read("a.stdout.log.1"), "line 06\nline 07\nline 08\n");
        assert_eq!(read("a.stdout.log.2"), "line 03\nline 04\nline 05\n");
        assert!(!dir.join("a.stdout.log.3").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_line_cut_into_chunks_is_rejoined() {
        let dir = scratch("chunks");
        let mut files = LogFiles::open(&dir, &["a"], Rotation::default()).unwrap();
        let long = vec![b'x'; CHUNK];
        files.write(0, 1, line(&long), b"T ");
        let rest = Record {
            bytes: &long,
            starts_line: false,
        };
        files.write(0, 1, rest, b"T ");
        files.write(0, 1, line(b"next"), b"T ");
        drop(files);
        let got = std::fs::read(dir.join("a.stderr.log")).unwrap();
        let mut want = b"T ".to_vec();
        want.extend(vec![b'x'; 2 * CHUNK]);
        want.extend_from_slice(b"\nT next\n");
        assert_eq!(got, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
