//! What identifies a file's content without reading it, and how to read a file so that the
//! bytes belong to one version of it.
//!
//! The include server lives as long as a build (or longer, with `pump --startup`) while
//! the user edits and `make` regenerates files, so every fact it remembers about a file —
//! a parse, a mirror — is kept with the [`FileId`] of the version it came from and reused
//! only while a fresh `stat` gives the same one. Path alone is not enough (the bug this
//! module exists for), and neither is mtime at 1 s: an edit keeping size and mtime still
//! moves the ctime, which nobody can set back, and a file replaced by `mv` has a new inode.

use std::fs::{Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many times a file that changes while being read is read again before giving up.
pub(crate) const READ_TRIES: u32 = 3;

/// (device, inode, size, mtime, ctime in nanoseconds) of a regular file: two reads with
/// the same `FileId` saw the same bytes (see [`FileId::settled`] for the one exception).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    pub(crate) fn of(m: &Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// The stamp of the regular file at `p` (symlinks followed), `None` if there is none.
    pub(crate) fn stat(p: &Path) -> Option<FileId> {
        std::fs::metadata(p)
            .ok()
            .filter(Metadata::is_file)
            .map(|m| FileId::of(&m))
    }

    /// Must any change made after `now` move this stamp? File times come
    /// from a coarse clock (a kernel tick, or whole seconds on some filesystems), so a
    /// same-size write within the tick of the last change keeps every field. Like git's
    /// "racy clean" rule, a stamp is trusted for reuse only once its ctime lies further in
    /// the past than that granularity: then any later change must move the ctime. A
    /// ctime with no nanoseconds suggests a whole-second filesystem, so the window is
    /// wider there.
    pub(crate) fn settled(&self, now: SystemTime) -> bool {
        let (sec, nsec) = self.ctime;
        let window = if nsec == 0 {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(100)
        };
        let Ok(sec) = u64::try_from(sec) else {
            return true; // before 1970: long settled
        };
        let nsec = u32::try_from(nsec).unwrap_or(0);
        let changed = UNIX_EPOCH + Duration::new(sec, nsec);
        now.duration_since(changed).is_ok_and(|age| age >= window)
    }
}

impl FileId {
    /// The fields as text, one per line (`dev`, `ino`, `size`, `mtime`, `ctime` in ns):
    /// what a cache written to disk stores as its key.
    pub(crate) fn describe(&self) -> String {
        format!(
            "dev {}\nino {}\nsize {}\nmtime {}.{:09}\nctime {}.{:09}\n",
            self.dev, self.ino, self.size, self.mtime.0, self.mtime.1, self.ctime.0, self.ctime.1
        )
    }
}

/// What identifies an executable as it is run under `program` (a path as found on PATH):
/// the length-prefixed names (`program`, then the canonical file it resolves to, because
/// a multicall binary such as ccache or distcc behaves by the name it is run under) and
/// the canonical file's [`FileId`]. A cache of what a compiler answers (its target, its
/// include dirs) is keyed by both, never by the name alone, so an upgraded or replaced
/// compiler is asked again. `None` when the executable can't be examined.
pub(crate) fn exe_identity(program: &Path) -> Option<(Vec<u8>, FileId)> {
    use std::os::unix::ffi::OsStrExt;
    let canonical = std::fs::canonicalize(program).ok()?;
    let id = FileId::stat(&canonical)?;
    let mut names = Vec::new();
    for (label, p) in [("program", program), ("canonical", canonical.as_path())] {
        let bytes = p.as_os_str().as_bytes();
        // Length-prefixed, so that no path can be spelt to look like another field.
        names.extend(format!("{label} {} ", bytes.len()).as_bytes());
        names.extend(bytes);
        names.push(b'\n');
    }
    Some((names, id))
}

/// A file's bytes together with the stamp it had before and after they were read.
#[derive(Debug)]
pub(crate) struct Stable {
    pub id: FileId,
    pub data: Vec<u8>,
    /// The stamp may be trusted for reuse later ([`FileId::settled`] when the read began).
    pub settled: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("can't read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a regular file")]
    NotFile(PathBuf),
    #[error("{path} kept changing while being read ({tries} tries)")]
    Unstable { path: PathBuf, tries: u32 },
}

/// Read `p` so that the bytes are one version of it: fstat, read, fstat the same fd; if
/// the stamp moved (or the length read differs from the size), read again, up to
/// [`READ_TRIES`] times.
pub(crate) fn read_stable(p: &Path) -> Result<Stable, ReadError> {
    read_stable_with(p, READ_TRIES, |_| {})
}

/// [`read_stable`] with `between(attempt)` called after each read, before the second
/// fstat: the tests change the file there.
pub(crate) fn read_stable_with(
    p: &Path,
    tries: u32,
    mut between: impl FnMut(u32),
) -> Result<Stable, ReadError> {
    let io = |source| ReadError::Io {
        path: p.to_path_buf(),
        source,
    };
    for attempt in 0..tries {
        // Sampled before the first fstat: a change after this instant gets a later ctime.
        let now = SystemTime::now();
        // O_NONBLOCK: should a FIFO have replaced the file since it was stat'ed, opening
        // it must not hang the include server (no effect on regular files).
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(p)
            .map_err(io)?;
        let before = f.metadata().map_err(io)?;
        if !before.is_file() {
            return Err(ReadError::NotFile(p.to_path_buf()));
        }
        let before = FileId::of(&before);
        let mut data = Vec::with_capacity(usize::try_from(before.size).unwrap_or(0));
        f.read_to_end(&mut data).map_err(io)?;
        between(attempt);
        let after = FileId::of(&f.metadata().map_err(io)?);
        if before == after && u64::try_from(data.len()).is_ok_and(|n| n == after.size) {
            return Ok(Stable {
                id: after,
                data,
                settled: after.settled(now),
            });
        }
        log::debug!(
            "{} changed while being read (attempt {})",
            p.display(),
            attempt + 1
        );
    }
    Err(ReadError::Unstable {
        path: p.to_path_buf(),
        tries,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;

    /// Rewrite `p` in place and put its mtime back: only the ctime (and maybe the size)
    /// can tell the versions apart.
    pub(crate) fn rewrite_keeping_mtime(p: &Path, text: &str) {
        let old = fs::metadata(p).unwrap().modified().unwrap();
        fs::write(p, text).unwrap();
        let f = fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_modified(old).unwrap();
    }

    #[test]
    fn same_size_same_mtime_rewrite_changes_the_stamp() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("b.c");
        fs::write(&p, "int w = 1;\n").unwrap();
        let a = FileId::stat(&p).unwrap();
        assert_eq!(FileId::stat(&p), Some(a), "a stat of an unchanged file");
        rewrite_keeping_mtime(&p, "int w = 3;\n");
        let b = FileId::stat(&p).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().len(), 11);
        assert_eq!((a.size, a.mtime, a.ino), (b.size, b.mtime, b.ino));
        assert_ne!(a, b, "only the ctime differs, and it must count");
        // A new inode renamed over it, same size and mtime.
        let n = t.path().join("new");
        fs::write(&n, "int w = 4;\n").unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(&n)
            .unwrap()
            .set_modified(fs::metadata(&p).unwrap().modified().unwrap())
            .unwrap();
        fs::rename(&n, &p).unwrap();
        let c = FileId::stat(&p).unwrap();
        assert_ne!(b.ino, c.ino);
        assert_ne!(b, c);
        assert_eq!(FileId::stat(t.path()), None, "a directory has no stamp");
        assert_eq!(FileId::stat(&t.path().join("gone")), None);
    }

    #[test]
    fn a_fresh_change_is_not_settled_yet() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("h.h");
        fs::write(&p, "x").unwrap();
        let id = FileId::stat(&p).unwrap();
        let now = SystemTime::now();
        assert!(!id.settled(now));
        assert!(id.settled(now + Duration::from_secs(3)));
        let whole_second = FileId {
            ctime: (1_600_000_000, 0),
            ..id
        };
        let at = UNIX_EPOCH + Duration::from_millis(1_600_000_000_500);
        assert!(!whole_second.settled(at));
        assert!(whole_second.settled(at + Duration::from_secs(2)));
    }

    #[test]
    fn a_file_changed_during_the_read_is_read_again() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("b.c");
        fs::write(&p, "int w = 1;\n").unwrap();
        let mut calls = 0;
        let st = read_stable_with(&p, READ_TRIES, |attempt| {
            calls += 1;
            if attempt == 0 {
                // Between the read and the second fstat: the bytes read are torn.
                rewrite_keeping_mtime(&p, "int w = 3;\n");
            }
        })
        .unwrap();
        assert_eq!(calls, 2);
        assert_eq!(st.data, b"int w = 3;\n");
        assert_eq!(Some(st.id), FileId::stat(&p));
        assert!(!st.settled, "just written");
    }

    #[test]
    fn a_file_that_keeps_changing_is_given_up() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("b.c");
        fs::write(&p, "int w = 0;\n").unwrap();
        let r = read_stable_with(&p, READ_TRIES, |attempt| {
            rewrite_keeping_mtime(&p, &format!("int w = {};\n", attempt + 1));
        });
        assert!(
            matches!(
                r,
                Err(ReadError::Unstable {
                    tries: READ_TRIES,
                    ..
                })
            ),
            "{r:?}"
        );
        assert!(matches!(
            read_stable(t.path()),
            Err(ReadError::NotFile(_) | ReadError::Io { .. })
        ));
    }
}
