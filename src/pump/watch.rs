//! Knowing that nothing changed without asking the file system again.
//!
//! The analyser used to `stat` every header of a job's closure, and every candidate path
//! of every search, once per job: on a real tree that is a thousand system calls per job,
//! most of the include server's time. With inotify watches on the directories the analysis
//! looked into (and on every directory above them), a cached answer stays true until an
//! event names it: the kernel queues the event inside the system call that made the change,
//! so a job that drains the queue after its request arrived sees every change that finished
//! before the compile was started (what `make` guarantees for generated headers).
//!
//! Only directories reached without symlinks, on local file systems, are covered: a change
//! behind a symlink or on a network file system may produce no event here, and such paths
//! keep the per-job `stat`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::inotify::{self, ReadFlags, WatchFlags};

/// What the watches say about a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cover {
    /// An existing directory, reached without symlinks, watched with all its ancestors:
    /// any change to its entries is reported.
    Watched,
    /// Not there (or not a directory), and its creation would be reported.
    Absent,
    /// Changes may go unreported: `stat` as before.
    No,
}

/// What changed since the last [`Watcher::changes`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Changes {
    /// These paths (and, for the `true` ones, which were directories the analysis went
    /// through, everything under them).
    Paths(Vec<(OsString, bool)>),
    /// Events were lost: forget everything.
    All,
}

/// File systems whose changes always reach inotify (local ones).
const LOCAL_FS: &[u64] = &[
    0xEF53,      // ext2/3/4
    0x0102_1994, // tmpfs
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
    0xF2F5_2010, // f2fs
    0x2FC1_2FC1, // zfs
    0x794C_7630, // overlayfs
];

/// The events that mean an entry of a watched directory (or the directory) changed.
fn mask() -> WatchFlags {
    WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MODIFY
        | WatchFlags::ATTRIB
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::DONT_FOLLOW
        | WatchFlags::ONLYDIR
}

/// Directory watches of one include server.
pub(crate) struct Watcher {
    fd: OwnedFd,
    /// Directory (its path's bytes) → what is known of it, and its watch.
    dirs: HashMap<OsString, (Cover, Option<i32>)>,
    /// Watch descriptor → the directory it watches.
    wds: HashMap<i32, OsString>,
}

/// An absolute path without `.`, `..`, empty components or a trailing `/`: its own
/// normal form, so its byte prefixes at a `/` are its ancestors.
pub(crate) fn plain(p: &Path) -> bool {
    let b = p.as_os_str().as_bytes();
    b.first() == Some(&b'/')
        && (b.len() == 1
            || !b
                .split(|&c| c == b'/')
                .skip(1)
                .any(|s| s.is_empty() || s == b"." || s == b".."))
}

/// Is `p` `dir` or under it (both plain)?
fn within(p: &[u8], dir: &[u8]) -> bool {
    p.starts_with(dir)
        && (p.len() == dir.len() || dir.ends_with(b"/") || p.get(dir.len()) == Some(&b'/'))
}

impl Watcher {
    /// A watcher, or `None` when inotify is not available (then nothing is covered).
    pub(crate) fn new() -> Option<Watcher> {
        match inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC) {
            Ok(fd) => Some(Watcher {
                fd,
                dirs: HashMap::new(),
                wds: HashMap::new(),
            }),
            Err(e) => {
                log::debug!("inotify unavailable ({e}): every file is stat'ed per job");
                None
            }
        }
    }

    /// Is a change to an entry of `dir` reported? Adds the watches needed (on `dir` and
    /// every directory above it) the first time. Call it *before* looking at the entry, so
    /// that a change made after the look is reported.
    pub(crate) fn cover(&mut self, dir: &Path) -> Cover {
        if let Some(&(c, _)) = self.dirs.get(dir.as_os_str()) {
            return c;
        }
        if !plain(dir) {
            return Cover::No;
        }
        let parent = match dir.parent() {
            Some(p) => self.cover(p),
            None => Cover::Watched, // "/": its own watch decides below
        };
        let (c, wd) = match parent {
            Cover::No => (Cover::No, None),
            Cover::Absent => (Cover::Absent, None),
            Cover::Watched => self.add(dir),
        };
        self.dirs.insert(dir.as_os_str().to_owned(), (c, wd));
        c
    }

    fn add(&mut self, dir: &Path) -> (Cover, Option<i32>) {
        match inotify::add_watch(&self.fd, dir, mask()) {
            Ok(wd) => {
                let local = rustix::fs::statfs(dir).is_ok_and(|s| {
                    u64::try_from(s.f_type).is_ok_and(|t| LOCAL_FS.contains(&(t & 0xFFFF_FFFF)))
                });
                let same = self
                    .wds
                    .get(&wd)
                    .is_none_or(|d| d.as_os_str() == dir.as_os_str());
                if !local || !same {
                    // Not ours to remove when another path shares it.
                    if !self.wds.contains_key(&wd) {
                        let _ = inotify::remove_watch(&self.fd, wd);
                    }
                    return (Cover::No, None);
                }
                self.wds.insert(wd, dir.as_os_str().to_owned());
                (Cover::Watched, Some(wd))
            }
            Err(rustix::io::Errno::NOENT) => (Cover::Absent, None),
            // A symlink (IN_DONT_FOLLOW | IN_ONLYDIR) is not covered; a file is no dir.
            Err(rustix::io::Errno::NOTDIR) => match std::fs::symlink_metadata(dir) {
                Ok(m) if m.file_type().is_symlink() => (Cover::No, None),
                Ok(_) => (Cover::Absent, None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Cover::Absent, None),
                Err(_) => (Cover::No, None),
            },
            Err(e) => {
                log::debug!("can't watch {}: {e}", dir.display());
                (Cover::No, None)
            }
        }
    }

    /// Forget what is known of `p` and the directories under it; their watches go.
    fn drop_dirs(&mut self, p: &[u8]) -> bool {
        if !self.dirs.contains_key(OsStr::from_bytes(p)) {
            return false;
        }
        let gone: Vec<OsString> = self
            .dirs
            .keys()
            .filter(|k| within(k.as_bytes(), p))
            .cloned()
            .collect();
        for k in gone {
            if let Some((_, Some(wd))) = self.dirs.remove(&k) {
                self.wds.remove(&wd);
                let _ = inotify::remove_watch(&self.fd, wd);
            }
        }
        true
    }

    /// Drain the events queued so far: what changed.
    pub(crate) fn changes(&mut self) -> Changes {
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        let mut events: Vec<(i32, ReadFlags, Option<Vec<u8>>)> = Vec::new();
        {
            let mut reader = inotify::Reader::new(&self.fd, &mut buf);
            loop {
                match reader.next() {
                    Ok(e) => events.push((
                        e.wd(),
                        e.events(),
                        e.file_name().map(|n| n.to_bytes().to_vec()),
                    )),
                    Err(rustix::io::Errno::INTR) => {}
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(e) => {
                        log::debug!("inotify read failed ({e}): forgetting everything");
                        events.push((-1, ReadFlags::QUEUE_OVERFLOW, None));
                        break;
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (wd, flags, name) in events {
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                self.forget_all();
                return Changes::All;
            }
            let Some(dir) = self.wds.get(&wd).cloned() else {
                continue; // a watch already dropped
            };
            let path = match name {
                Some(n) if !n.is_empty() => {
                    let mut p = dir.as_bytes().to_vec();
                    if !p.ends_with(b"/") {
                        p.push(b'/');
                    }
                    p.extend_from_slice(&n);
                    p
                }
                // The directory itself went, moved or was unmounted.
                _ => dir.as_bytes().to_vec(),
            };
            if flags.contains(ReadFlags::IGNORED) {
                self.wds.remove(&wd);
            }
            let was_dir = self.drop_dirs(&path);
            out.push((OsStr::from_bytes(&path).to_owned(), was_dir));
        }
        Changes::Paths(out)
    }

    /// Drop every watch (after lost events).
    pub(crate) fn forget_all(&mut self) {
        for (_, wd) in self.dirs.values() {
            if let Some(wd) = wd {
                let _ = inotify::remove_watch(&self.fd, *wd);
            }
        }
        self.dirs.clear();
        self.wds.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn changes_under_watched_dirs_are_reported() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().canonicalize().unwrap();
        fs::create_dir(r.join("inc")).unwrap();
        fs::write(r.join("inc/a.h"), "").unwrap();
        let mut w = Watcher::new().unwrap();
        assert_eq!(w.cover(&r.join("inc")), Cover::Watched);
        assert_eq!(w.cover(&r.join("inc/sub")), Cover::Absent);
        assert_eq!(w.changes(), Changes::Paths(vec![]));
        fs::write(r.join("inc/a.h"), "x").unwrap();
        fs::create_dir(r.join("inc/sub")).unwrap();
        let Changes::Paths(p) = w.changes() else {
            panic!("overflow")
        };
        let a_h = r.join("inc/a.h").into_os_string();
        assert!(p.contains(&(a_h, false)), "{p:?}");
        assert!(
            p.contains(&(r.join("inc/sub").into_os_string(), true)),
            "{p:?}"
        );
        // Known again only once asked again: now a directory.
        assert_eq!(w.cover(&r.join("inc/sub")), Cover::Watched);
        // A dir reached through a symlink is not covered.
        std::os::unix::fs::symlink(r.join("inc"), r.join("link")).unwrap();
        assert_eq!(w.cover(&r.join("link")), Cover::No);
        assert_eq!(w.cover(&r.join("link/sub")), Cover::No);
        assert_eq!(w.cover(Path::new("/a/../b")), Cover::No);
    }
}
