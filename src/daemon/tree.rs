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
//!
//! A tree may serve one job after another ([`super::pool`]): [`Tree::start_job`] first
//! removes whatever the next job will not have, and keeps files it will have again for
//! [`Tree::write_file`] to compare byte for byte, so the filled tree holds exactly what a
//! fresh one would. [`Tree::is_unchanged`] tells whether anything but what the daemon made
//! appeared in it meanwhile.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
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

/// What a name in the tree is, as the daemon made it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    File,
    /// A symlink and its target as written on disk (absolute ones re-rooted).
    Link(String),
    Dir,
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
    /// Everything the daemon made below the root and has not removed, by its components
    /// joined with `/`. Directories in it are known to exist: not `mkdirat` again.
    held: RefCell<HashMap<String, Held>>,
    /// Files and links of an earlier job that the job being filled has again: a file is
    /// kept if its bytes are the new ones, a link if its target is. Each is taken out when
    /// its name comes, so a name sent twice is still refused as a duplicate.
    kept: RefCell<HashSet<String>>,
    /// This job's files and links so far: how many, and how many were kept from the last.
    count: std::cell::Cell<(usize, usize)>,
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
            held: RefCell::default(),
            kept: RefCell::default(),
            count: std::cell::Cell::default(),
        })
    }

    /// Ready a tree that served an earlier job for the next one: `wanted` is its file list
    /// (each name with, for a link, the target as sent) and `cwd` its working directory.
    /// Whatever that job will not have — files, links with another target, directories
    /// nothing of it is in — is removed now; files and links it will have again are kept
    /// for [`Tree::write_file`] and [`Tree::make_link`] to check. On an error the tree is
    /// half pruned: the caller starts a fresh one instead.
    pub(crate) fn start_job<'a>(
        &self,
        wanted: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
        cwd: &str,
    ) -> Result<(), TreeError> {
        self.recent.borrow_mut().clear();
        self.kept.borrow_mut().clear();
        self.count.set((0, 0));
        let mut files = HashSet::new();
        let mut links = HashMap::new();
        let mut dirs = HashSet::new();
        let mut note_dirs = |parts: &[&str]| {
            for k in 1..=parts.len() {
                dirs.insert(parts.get(..k).unwrap_or_default().join("/"));
            }
        };
        let cwd_parts = components(cwd)?;
        note_dirs(&cwd_parts);
        for (name, link) in wanted {
            let parts = components(name)?;
            note_dirs(parts.get(..parts.len() - 1).unwrap_or_default());
            let key = parts.join("/");
            match link {
                None => {
                    files.insert(key);
                }
                Some(target) => {
                    links.insert(key, self.on_disk_target(target));
                }
            }
        }
        let mut gone: Vec<(String, Held)> = Vec::new();
        {
            let held = self.held.borrow();
            let mut kept = self.kept.borrow_mut();
            for (key, what) in held.iter() {
                let stays = match what {
                    Held::File => files.contains(key),
                    Held::Link(t) => links.get(key) == Some(t),
                    Held::Dir => dirs.contains(key),
                };
                if !stays {
                    gone.push((key.clone(), what.clone()));
                } else if what != &Held::Dir {
                    kept.insert(key.clone());
                }
            }
        }
        // Files and links first, then directories from the deepest up: each is empty by
        // then, as nothing but what the daemon made is in a tree it reuses.
        gone.sort_by_key(|(key, what)| {
            (
                *what == Held::Dir,
                std::cmp::Reverse(key.split('/').count()),
            )
        });
        for (key, what) in gone {
            let parts: Vec<&str> = key.split('/').collect();
            let (last, up) = parts
                .split_last()
                .ok_or_else(|| TreeError::Empty(key.clone()))?;
            let flags = if what == Held::Dir {
                rustix::fs::AtFlags::REMOVEDIR
            } else {
                rustix::fs::AtFlags::empty()
            };
            self.with_dir(&key, up, |dir| {
                rustix::fs::unlinkat(dir, *last, flags).map_err(|e| TreeError::Create {
                    path: key.clone(),
                    source: e.into(),
                })
            })?;
            self.held.borrow_mut().remove(&key);
            if what == Held::Dir {
                // A descriptor of the removed directory must not serve a new one.
                self.recent.borrow_mut().clear();
            }
        }
        Ok(())
    }

    /// Does the tree hold exactly what the daemon made in it — no entry more, none
    /// missing, each of the kind it was made as? A job's compiler may write in the job's
    /// dir; a tree that changed is not used again.
    pub(crate) fn is_unchanged(&self) -> bool {
        // An idle tree holds one descriptor, its root's.
        self.recent.borrow_mut().clear();
        if !self.kept.borrow().is_empty() {
            return false;
        }
        let held = self.held.borrow();
        let mut seen = 0;
        let root = match rustix::fs::openat(&self.root_fd, ".", DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(_) => return false,
        };
        let mut todo = vec![(String::new(), root)];
        while let Some((prefix, fd)) = todo.pop() {
            let Ok(entries) = rustix::fs::Dir::read_from(&fd) else {
                return false;
            };
            for entry in entries {
                let Ok(entry) = entry else { return false };
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let Ok(name) = std::str::from_utf8(name) else {
                    return false;
                };
                let key = if prefix.is_empty() {
                    name.to_owned()
                } else {
                    format!("{prefix}/{name}")
                };
                let mut kind = entry.file_type();
                if kind == rustix::fs::FileType::Unknown {
                    match rustix::fs::statat(&fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) => kind = rustix::fs::FileType::from_raw_mode(st.st_mode),
                        Err(_) => return false,
                    }
                }
                let fits = match held.get(&key) {
                    Some(Held::File) => kind == rustix::fs::FileType::RegularFile,
                    Some(Held::Link(_)) => kind == rustix::fs::FileType::Symlink,
                    Some(Held::Dir) if kind == rustix::fs::FileType::Directory => {
                        match rustix::fs::openat(&fd, name, DIR_FLAGS, Mode::empty()) {
                            Ok(sub) => {
                                todo.push((key, sub));
                                true
                            }
                            Err(_) => false,
                        }
                    }
                    _ => false,
                };
                if !fits {
                    return false;
                }
                seen += 1;
            }
        }
        seen == held.len()
    }

    /// Count one file or link of this job, `reused` if it was kept from the last.
    fn tally(&self, reused: bool) {
        let (all, kept) = self.count.get();
        self.count.set((all + 1, kept + usize::from(reused)));
    }

    /// This job's files and links, and how many of them were kept from the last job
    /// rather than written (for the daemon's log).
    pub(crate) fn files_kept(&self) -> (usize, usize) {
        self.count.get()
    }

    /// Is the directory at `path` this tree's root (not another put in its place)?
    pub(crate) fn is_at(&self, path: &Path) -> bool {
        let here = rustix::fs::statat(rustix::fs::CWD, path, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
        match (here, rustix::fs::fstat(&self.root_fd)) {
            // A removed directory has no links left, whatever took its inode number.
            (Ok(a), Ok(b)) => b.st_nlink > 0 && (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
            _ => false,
        }
    }

    /// An absolute link target lands in the root (as distcc does); a relative one is kept.
    fn on_disk_target(&self, target: &str) -> String {
        if target.starts_with('/') {
            format!("{}{target}", self.root.display())
        } else {
            target.to_owned()
        }
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
            let mut held = self.held.borrow_mut();
            if held.get(&key) != Some(&Held::Dir) {
                // A NUL inside a component is EINVAL here, a Create error naming `name`.
                match rustix::fs::mkdirat(dir, *part, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(err(e.into())),
                }
            }
            let next = rustix::fs::openat(dir, *part, DIR_FLAGS, Mode::empty())
                .map_err(|e| err(e.into()))?;
            held.insert(key, Held::Dir);
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

    /// A file or link's name split into components, its key in `held`, and whether the
    /// last job left one there to check (taken out of `kept`: a second one is a duplicate).
    fn claim<'n>(&self, name: &'n str) -> Result<(Vec<&'n str>, String, bool), TreeError> {
        let parts = components(name)?;
        let key = parts.join("/");
        let kept = self.kept.borrow_mut().remove(&key);
        Ok((parts, key, kept))
    }

    /// Write a regular file at `root + name`.
    pub(crate) fn write_file(&self, name: &str, contents: &[u8]) -> Result<PathBuf, TreeError> {
        let (parts, key, kept) = self.claim(name)?;
        let (last, dirs) = parts
            .split_last()
            .ok_or_else(|| TreeError::Empty(name.into()))?;
        let err = |source| TreeError::Create {
            path: name.to_owned(),
            source,
        };
        // O_EXCL|O_NOFOLLOW refuses existing entries, a planted symlink included.
        let fd = self.with_dir(name, dirs, |dir| {
            if kept {
                if same_contents(dir, last, contents) {
                    return Ok(None);
                }
                unlink_if_there(dir, last).map_err(err)?;
            }
            rustix::fs::openat(
                dir,
                *last,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map(Some)
            .map_err(|e| err(e.into()))
        })?;
        self.tally(fd.is_none());
        if let Some(fd) = fd {
            let mut file = std::fs::File::from(fd);
            file.write_all(contents).map_err(err)?;
            self.held.borrow_mut().insert(key, Held::File);
        }
        Ok(self.path_of(&parts))
    }

    /// Create a symlink at `root + name` pointing at `target` (absolute targets re-rooted).
    pub(crate) fn make_link(&self, name: &str, target: &str) -> Result<PathBuf, TreeError> {
        let (parts, key, kept) = self.claim(name)?;
        let (last, dirs) = parts
            .split_last()
            .ok_or_else(|| TreeError::Empty(name.into()))?;
        let target = self.on_disk_target(target);
        let err = |source| TreeError::Create {
            path: name.to_owned(),
            source,
        };
        let reused = self.with_dir(name, dirs, |dir| {
            if kept {
                let now = rustix::fs::readlinkat(dir, *last, Vec::new());
                if now.is_ok_and(|t| t.as_bytes() == target.as_bytes()) {
                    return Ok(true);
                }
                unlink_if_there(dir, last).map_err(err)?;
            }
            rustix::fs::symlinkat(target.as_str(), dir, *last).map_err(|e| err(e.into()))?;
            Ok(false)
        })?;
        self.tally(reused);
        self.held.borrow_mut().insert(key, Held::Link(target));
        Ok(self.path_of(&parts))
    }
}

/// Is the file `name` in `dir` a regular file holding exactly `contents`? Anything odd
/// (gone, a symlink, a FIFO, unreadable, another size) is a no: the caller writes it anew.
fn same_contents(dir: BorrowedFd<'_>, name: &str, contents: &[u8]) -> bool {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::openat(dir, name, flags, Mode::empty()) else {
        return false;
    };
    match rustix::fs::fstat(&fd) {
        Ok(st)
            if rustix::fs::FileType::from_raw_mode(st.st_mode)
                == rustix::fs::FileType::RegularFile
                && u64::try_from(st.st_size).ok() == Some(contents.len() as u64) => {}
        _ => return false,
    }
    let mut file = std::fs::File::from(fd);
    let mut buf = vec![0u8; contents.len().clamp(1, 64 << 10)];
    let mut at = 0;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return at == contents.len(),
            Ok(n) => {
                let end = at + n;
                match (contents.get(at..end), buf.get(..n)) {
                    (Some(want), Some(got)) if want == got => at = end,
                    _ => return false,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Remove the file or link `name` in `dir`; one already gone is fine.
fn unlink_if_there(dir: BorrowedFd<'_>, name: &str) -> std::io::Result<()> {
    match rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
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

    /// Everything below `root` as (name, what): "f:<bytes>", "l:<target>" or "d".
    fn listing(root: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let name = p.strip_prefix(root).unwrap().display().to_string();
                let m = p.symlink_metadata().unwrap();
                let what = if m.is_symlink() {
                    format!("l:{}", std::fs::read_link(&p).unwrap().display())
                } else if m.is_dir() {
                    todo.push(p.clone());
                    "d".to_owned()
                } else {
                    format!("f:{}", String::from_utf8_lossy(&std::fs::read(&p).unwrap()))
                };
                out.push((name, what));
            }
        }
        out.sort();
        out
    }

    type Job<'a> = (&'a [(&'a str, &'a [u8])], &'a [(&'a str, &'a str)], &'a str);

    fn fill(tree: &Tree, (files, links, cwd): Job<'_>) -> Result<(), TreeError> {
        for (n, c) in files {
            tree.write_file(n, c)?;
        }
        for (n, t) in links {
            tree.make_link(n, t)?;
        }
        tree.make_dir(cwd).map(|_| ())
    }

    fn start(tree: &Tree, (files, links, cwd): Job<'_>) -> Result<(), TreeError> {
        let wanted = files
            .iter()
            .map(|(n, _)| (*n, None))
            .chain(links.iter().map(|(n, t)| (*n, Some(*t))));
        tree.start_job(wanted, cwd)
    }

    /// A tree filled for one job and then for another holds exactly what a fresh tree
    /// filled for the second holds; files the second has again are the same inodes.
    #[test]
    fn a_reused_tree_holds_what_a_fresh_one_would() {
        use std::os::unix::fs::MetadataExt;
        let first: Job<'_> = (
            &[
                ("/w/a.c", b"int a;"),
                ("/w/inc1/h.h", b"#define H 1"),
                ("/w/inc2/h.h", b"#define H 2"),
                ("/usr/include/s.h", b"same"),
                ("/p/q/r/x.h", b"x"),
                ("/w/was_file", b"f"),
                ("/w/same_size.h", b"aaaa"),
            ],
            &[("/w/l.h", "/w/inc1/h.h"), ("/w/kept.h", "inc2/h.h")],
            "/w/build",
        );
        let second: Job<'_> = (
            &[
                ("/w/a.c", b"int a; int b;"),
                ("/w/inc2/h.h", b"#define H 2"),
                ("/usr/include/s.h", b"same"),
                ("/w/was_file/now_dir.h", b"d"),
                ("/w/same_size.h", b"bbbb"),
                ("/w/l.h", b"a file now"),
            ],
            &[("/w/kept.h", "inc2/h.h"), ("/w/inc1", "../elsewhere")],
            "/w/other",
        );
        let (_o, job, tree) = setup();
        fill(&tree, first).unwrap();
        assert!(tree.is_unchanged());
        let ino = |n: &str| std::fs::symlink_metadata(job.path().join(n)).unwrap().ino();
        let kept_inodes = (ino("usr/include/s.h"), ino("w/inc2/h.h"));
        start(&tree, second).unwrap();
        fill(&tree, second).unwrap();
        assert!(tree.is_unchanged());
        assert_eq!(kept_inodes, (ino("usr/include/s.h"), ino("w/inc2/h.h")));
        assert_eq!(
            tree.files_kept(),
            (8, 3),
            "two files and a link kept of eight"
        );

        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh_root = fresh_dir.path().join("r");
        std::fs::create_dir(&fresh_root).unwrap();
        // Same length of root path, so re-rooted link targets compare.
        let reused_root = fresh_dir.path().join("s");
        std::fs::rename(job.path(), &reused_root).unwrap_or_else(|_| {
            std::process::Command::new("cp")
                .args([
                    "-a",
                    job.path().to_str().unwrap(),
                    reused_root.to_str().unwrap(),
                ])
                .status()
                .unwrap();
        });
        let fresh = Tree::open(&fresh_root).unwrap();
        fill(&fresh, second).unwrap();
        let strip = |v: Vec<(String, String)>, root: &Path| -> Vec<(String, String)> {
            let r = root.display().to_string();
            v.into_iter()
                .map(|(n, w)| (n, w.replace(&r, "ROOT")))
                .collect()
        };
        assert_eq!(
            strip(listing(&reused_root), job.path()),
            strip(listing(&fresh_root), &fresh_root)
        );
    }

    /// What changed in a kept file between jobs — same size, other bytes; a FIFO in its
    /// place — is found by the comparison and written anew, without blocking.
    #[test]
    fn kept_files_are_compared_not_trusted() {
        let (_o, job, tree) = setup();
        let one: Job<'_> = (&[("/w/a.h", b"1234"), ("/w/f.h", b"fifo")], &[], "/w");
        fill(&tree, one).unwrap();
        std::fs::write(job.path().join("w/a.h"), b"9999").unwrap();
        std::fs::remove_file(job.path().join("w/f.h")).unwrap();
        let fifo = std::ffi::CString::new(job.path().join("w/f.h").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        assert!(!tree.is_unchanged(), "a FIFO is not what the daemon made");
        start(&tree, one).unwrap();
        fill(&tree, one).unwrap();
        assert_eq!(std::fs::read(job.path().join("w/a.h")).unwrap(), b"1234");
        assert_eq!(std::fs::read(job.path().join("w/f.h")).unwrap(), b"fifo");
        assert!(tree.is_unchanged());
    }

    /// Checks that hold for a fresh tree hold for a reused one: duplicates, files under a
    /// link, traversal.
    #[test]
    fn a_reused_tree_refuses_what_a_fresh_one_refuses() {
        let (outside, _job, tree) = setup();
        let one: Job<'_> = (&[("/w/a.h", b"1"), ("/w/d/b.h", b"2")], &[], "/w");
        fill(&tree, one).unwrap();
        start(&tree, one).unwrap();
        tree.write_file("/w/a.h", b"1").unwrap();
        assert!(tree.write_file("/w//a.h", b"1").is_err(), "a duplicate");
        let rel = format!("{}{}", "../".repeat(40), outside.path().display());
        let evil: Job<'_> = (&[("/w/d/b.h", b"2")], &[("/w/d", &rel)], "/w");
        assert!(start(&tree, evil).is_ok());
        assert!(
            tree.make_link("/w/d", &rel).is_err(),
            "a dir of the last job"
        );
        let (_o2, _j2, tree) = setup();
        fill(&tree, one).unwrap();
        let evil: Job<'_> = (&[("/x/pwned", b"x")], &[("/x", &rel)], "/w");
        start(&tree, evil).unwrap();
        tree.make_link("/x", &rel).unwrap();
        assert!(tree.write_file("/x/pwned", b"x").is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(matches!(
            tree.start_job([("/../etc/x", None)], "/w"),
            Err(TreeError::DotDot(_))
        ));
    }

    #[test]
    fn duplicates_are_refused() {
        let (_o, _j, tree) = setup();
        tree.write_file("/a/b.h", b"1").unwrap();
        assert!(tree.write_file("/a/b.h", b"2").is_err());
    }
}
