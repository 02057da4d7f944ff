//! Materialising a pump-mode (protocol 3) file list inside the job's private root
//! (distcc 3.4 `srvrpc.c` `dcc_r_many_files`, which has no such checks).
//!
//! Each NAME is a client absolute path that lands at `root + NAME`. A hostile client could
//! try to write outside the root: with `..` components, or by first sending a LINK and then a
//! file "under" it. So every NAME must be absolute and free of `..`, and every directory on
//! the way is opened relative to the previous one with `O_NOFOLLOW`: our own writes never
//! follow a symlink, whatever the client sent earlier. LINK targets are data for the
//! compiler: an absolute target is re-rooted (as distcc does), a relative one kept verbatim
//! (pump mode's system-dir links climb `../` out of the root on purpose).

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum TreeError {
    #[error("file name {0:?} must be absolute")]
    NotAbsolute(String),
    #[error("file name {0:?} contains a '..' component")]
    DotDot(String),
    #[error("file name {0:?} names the root itself")]
    Empty(String),
    #[error(
        "file name of {len} bytes in {depth} components is deeper than the {MAX_DEPTH} allowed"
    )]
    TooDeep { len: usize, depth: usize },
    #[error("{path:?}: {source} (a symlink or duplicate in the file list?)")]
    Create {
        path: String,
        source: std::io::Error,
    },
}

/// The job's private root, and what has been created in it.
pub(crate) struct Tree {
    root: PathBuf,
    root_fd: OwnedFd,
    /// Directories opened lately (their components, their descriptor), most recent last. A
    /// job's hundred headers sit in a few directories, and walking to each from the root
    /// again (`mkdirat` + `openat` per component) was ~1500 system calls per curl job.
    /// Nothing is removed from a tree while it is filled, so a directory opened once is
    /// still the one at that name.
    recent: RefCell<Vec<(Vec<String>, OwnedFd)>>,
    /// Directories known to exist (made or opened by a walk): not `mkdirat` again.
    made: RefCell<HashSet<String>>,
}

/// How many directory descriptors a tree keeps open (per job in flight).
const RECENT: usize = 4;

/// How every directory on the way is opened: a symlink planted by the client fails with
/// `ELOOP` or `ENOTDIR` instead of being followed.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Most components a client path may have. Real trees are a few dozen deep; without a
/// bound one NAME of `a/a/a/…` makes the daemon create hundreds of thousands of dirs.
pub(crate) const MAX_DEPTH: usize = 256;

/// Split a client path into its components, refusing anything that could climb out.
fn components(name: &str) -> Result<Vec<&str>, TreeError> {
    if !name.starts_with('/') {
        return Err(TreeError::NotAbsolute(name.to_owned()));
    }
    let depth = name.split('/').filter(|p| !p.is_empty()).count();
    if depth > MAX_DEPTH {
        return Err(TreeError::TooDeep {
            len: name.len(),
            depth,
        });
    }
    let parts: Vec<&str> = name
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(TreeError::DotDot(name.to_owned()));
    }
    if parts.is_empty() {
        return Err(TreeError::Empty(name.to_owned()));
    }
    Ok(parts)
}

impl Tree {
    /// Open an existing, empty, private directory as the root.
    pub(crate) fn open(root: &Path) -> std::io::Result<Tree> {
        // A NUL in the path is EINVAL (ErrorKind::InvalidInput), as before.
        let root_fd = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Tree {
            root: root.to_owned(),
            root_fd,
            recent: RefCell::default(),
            made: RefCell::default(),
        })
    }

    /// Run `f` on the directory `parts` below the root, opened (and created as needed)
    /// component by component from the root or from a recently opened directory above
    /// it, never following a symlink.
    fn with_dir<T>(
        &self,
        name: &str,
        parts: &[&str],
        f: impl FnOnce(BorrowedFd<'_>) -> Result<T, TreeError>,
    ) -> Result<T, TreeError> {
        let err = |source| TreeError::Create {
            path: name.to_owned(),
            source,
        };
        if parts.is_empty() {
            return f(self.root_fd.as_fd());
        }
        let mut recent = self.recent.borrow_mut();
        let above =
            |p: &[String]| p.len() <= parts.len() && p.iter().zip(parts).all(|(a, b)| a == b);
        let best = (0..recent.len())
            .filter(|&i| recent.get(i).is_some_and(|(p, _)| above(p)))
            .max_by_key(|&i| recent.get(i).map_or(0, |(p, _)| p.len()));
        // The one it starts from, taken out and put back last (most recent).
        let base = best.map(|i| recent.remove(i));
        let start = base.as_ref().map_or(0, |(p, _)| p.len());
        let mut opened: Option<OwnedFd> = None;
        for (k, part) in parts.iter().enumerate().skip(start) {
            let dir = match (&opened, &base) {
                (Some(fd), _) => fd.as_fd(),
                (None, Some((_, fd))) => fd.as_fd(),
                (None, None) => self.root_fd.as_fd(),
            };
            let key = parts.get(..=k).unwrap_or_default().join("/");
            let mut made = self.made.borrow_mut();
            if !made.contains(&key) {
                // A NUL inside a component is EINVAL here, a Create error naming `name`.
                match rustix::fs::mkdirat(dir, *part, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(err(e.into())),
                }
            }
            let next = rustix::fs::openat(dir, *part, DIR_FLAGS, Mode::empty())
                .map_err(|e| err(e.into()))?;
            made.insert(key);
            opened = Some(next);
        }
        if let Some(b) = base {
            recent.push(b);
        }
        if let Some(fd) = opened {
            recent.push((parts.iter().map(|p| p.to_string()).collect(), fd));
        }
        while recent.len() > RECENT {
            recent.remove(0);
        }
        match recent.last() {
            Some((_, fd)) => f(fd.as_fd()),
            None => f(self.root_fd.as_fd()),
        }
    }

    /// Create the directory `name` (for the client's working directory).
    pub(crate) fn make_dir(&self, name: &str) -> Result<PathBuf, TreeError> {
        let parts = components(name)?;
        self.with_dir(name, &parts, |_| Ok(()))?;
        Ok(self.path_of(&parts))
    }

    fn path_of(&self, parts: &[&str]) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(parts);
        p
    }

    /// Write a regular file at `root + name`.
    pub(crate) fn write_file(&self, name: &str, contents: &[u8]) -> Result<PathBuf, TreeError> {
        let parts = components(name)?;
        let (last, dirs) = parts
            .split_last()
            .ok_or_else(|| TreeError::Empty(name.into()))?;
        let err = |source| TreeError::Create {
            path: name.to_owned(),
            source,
        };
        // O_EXCL|O_NOFOLLOW refuses existing entries, a planted symlink included.
        let fd = self.with_dir(name, dirs, |dir| {
            rustix::fs::openat(
                dir,
                *last,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map_err(|e| err(e.into()))
        })?;
        let mut file = std::fs::File::from(fd);
        file.write_all(contents).map_err(err)?;
        Ok(self.path_of(&parts))
    }

    /// Create a symlink at `root + name` pointing at `target` (absolute targets re-rooted).
    pub(crate) fn make_link(&self, name: &str, target: &str) -> Result<PathBuf, TreeError> {
        let parts = components(name)?;
        let (last, dirs) = parts
            .split_last()
            .ok_or_else(|| TreeError::Empty(name.into()))?;
        let target = if target.starts_with('/') {
            format!("{}{target}", self.root.display())
        } else {
            target.to_owned()
        };
        self.with_dir(name, dirs, |dir| {
            rustix::fs::symlinkat(target.as_str(), dir, *last).map_err(|e| TreeError::Create {
                path: name.to_owned(),
                source: e.into(),
            })
        })?;
        Ok(self.path_of(&parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_names_are_refused_before_anything_is_made() {
        let t = tempfile::tempdir().unwrap();
        let tree = Tree::open(t.path()).unwrap();
        let deep = "/a".repeat(MAX_DEPTH + 1) + "/x.h";
        assert!(matches!(
            tree.write_file(&deep, b"x"),
            Err(TreeError::TooDeep { .. })
        ));
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
        let ok = "/a".repeat(MAX_DEPTH - 1) + "/x.h";
        assert!(tree.write_file(&ok, b"x").is_ok());
    }

    fn setup() -> (tempfile::TempDir, tempfile::TempDir, Tree) {
        let outside = tempfile::tempdir().unwrap();
        let job = tempfile::tempdir().unwrap();
        let tree = Tree::open(job.path()).unwrap();
        (outside, job, tree)
    }

    #[test]
    fn files_and_links_land_inside() {
        let (_o, job, tree) = setup();
        let p = tree.write_file("/home/u/proj/a.c", b"int x;").unwrap();
        assert_eq!(p, job.path().join("home/u/proj/a.c"));
        assert_eq!(std::fs::read(&p).unwrap(), b"int x;");
        tree.make_link("/home/u/proj/l.h", "/home/u/proj/a.c")
            .unwrap();
        let t = std::fs::read_link(job.path().join("home/u/proj/l.h")).unwrap();
        assert_eq!(t, job.path().join("home/u/proj/a.c"));
        tree.make_link("/usr/include", "../../../../usr/include")
            .unwrap();
        assert!(tree.make_dir("/home/u/proj/sub").unwrap().is_dir());
    }

    #[test]
    fn traversal_is_refused_and_writes_nothing_outside() {
        let (outside, job, tree) = setup();
        let out = outside.path().display().to_string();
        assert!(matches!(
            tree.write_file("/../../etc/x", b"x"),
            Err(TreeError::DotDot(_))
        ));
        assert!(matches!(
            tree.write_file("relative/x", b"x"),
            Err(TreeError::NotAbsolute(_))
        ));
        assert!(matches!(
            tree.write_file("/", b"x"),
            Err(TreeError::Empty(_))
        ));
        // A link to a directory outside, then a file "under" it.
        let rel = format!("{}{out}", "../".repeat(40));
        tree.make_link("/evil", &rel).unwrap();
        assert!(tree.write_file("/evil/pwned", b"x").is_err());
        tree.make_link("/evil2", &out).unwrap(); // absolute: re-rooted, stays inside
        assert!(tree.write_file("/evil2/pwned", b"x").is_err());
        // A link as the file itself.
        tree.make_link("/f", &format!("{rel}/pwned2")).unwrap();
        assert!(tree.write_file("/f", b"x").is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(
            job.path()
                .join("evil")
                .symlink_metadata()
                .unwrap()
                .is_symlink()
        );
    }

    /// Files spread over more directories than a tree keeps open, in an order that
    /// returns to evicted ones, all land where they belong; a link made next to an open
    /// directory is still not followed.
    #[test]
    fn recently_opened_dirs_are_reused_without_following_links() {
        let (outside, job, tree) = setup();
        let dirs = [
            "/p/a", "/p/a/b", "/p/c", "/q", "/p/a/b/d", "/r/s/t", "/p/c/e",
        ];
        for round in 0..3 {
            for (i, d) in dirs.iter().enumerate() {
                let name = format!("{d}/f{round}_{i}.h");
                let p = tree.write_file(&name, name.as_bytes()).unwrap();
                assert_eq!(p, job.path().join(name.trim_start_matches('/')));
                assert_eq!(std::fs::read(&p).unwrap(), name.as_bytes());
            }
        }
        let out = outside.path().display().to_string();
        let rel = format!("{}{out}", "../".repeat(40));
        tree.make_link("/p/a/b/evil", &rel).unwrap();
        assert!(tree.write_file("/p/a/b/evil/pwned", b"x").is_err());
        assert!(tree.make_dir("/p/a/b/evil/sub").is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(tree.make_dir("/p/a/b/d/cwd").unwrap().is_dir());
    }

    #[test]
    fn duplicates_are_refused() {
        let (_o, _j, tree) = setup();
        tree.write_file("/a/b.h", b"1").unwrap();
        assert!(tree.write_file("/a/b.h", b"2").is_err());
    }
}
