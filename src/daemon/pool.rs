//! Pump-mode job dirs kept from one job to the next.
//!
//! A pump job lays out the client's source and every header it includes, about a hundred
//! files for a real C file, and distcc 3.4 creates and deletes them all for every job. On a
//! disk-backed TMPDIR that churn is much of what a pump job costs the server: ext4 grows
//! slower at allocating inodes the more it freed lately (a hundred 20 KB files made and
//! removed 600 times took 1.7 ms a round at first and 4.1 ms five runs later, here). So a
//! finished pump job's dir goes back to this pool with its [`Tree`], and the next pump job
//! starts from it: [`Tree::start_job`] removes what that job will not have, and the files it
//! has again stay where their bytes are the same.
//!
//! A dir goes back only when the job's compiler left nothing in its tree but what the
//! daemon made (it may write in the job's dir: everything next to the tree is removed), and
//! only as many as jobs may run at once; any other dir is removed whole, as before.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::tree::Tree;

/// A job dir and the tree in its `root`, between two jobs.
pub(crate) struct Warm {
    pub dir: PathBuf,
    pub tree: Tree,
}

/// The name of the tree's directory inside a job dir. Its length is fixed: pump mode's
/// `.d` output must wrap where distcc 3.4's does.
pub(crate) const ROOT: &str = "root";

/// Idle job dirs; at most `cap` (the daemon's job slots).
pub(crate) struct Pool {
    idle: Mutex<Vec<Warm>>,
    cap: usize,
}

impl Pool {
    /// A pool of up to `cap` idle dirs; 0 keeps none (`--inetd` serves one job and exits).
    pub(crate) fn new(cap: usize) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            cap,
        }
    }

    /// An idle dir whose tree is still where it was left, if there is one.
    pub(crate) fn take(&self) -> Option<Warm> {
        loop {
            let warm = self.lock().pop()?;
            if warm.tree.is_at(&warm.dir.join(ROOT)) {
                return Some(warm);
            }
            // Removed or replaced behind our back (a TMPDIR cleaner): forget it, and leave
            // whatever is at its name now alone.
            log::debug!(
                "job dir {} changed while idle: not reused",
                warm.dir.display()
            );
        }
    }

    /// A finished job's dir: tidied and kept if its tree is as the daemon left it and
    /// there is room, else removed.
    pub(crate) fn give_back(&self, warm: Warm) {
        if !(tidy(&warm.dir) && warm.tree.is_at(&warm.dir.join(ROOT)) && warm.tree.is_unchanged()) {
            log::debug!(
                "job dir {} holds more than the daemon made: not reused",
                warm.dir.display()
            );
            discard(&warm.dir);
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.cap {
            idle.push(warm);
        } else {
            drop(idle);
            discard(&warm.dir);
        }
    }

    /// Remove every idle dir (the daemon is stopping).
    pub(crate) fn clear(&self) {
        let all = std::mem::take(&mut *self.lock());
        for warm in all {
            discard(&warm.dir);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Warm>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Pool {{ idle: {}, cap: {} }}",
            self.lock().len(),
            self.cap
        )
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Remove everything in a job dir but its tree: the object, the compiler's output and
/// anything else it wrote there. False if something could not be removed.
fn tidy(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut clean = true;
    for entry in entries {
        let Ok(entry) = entry else { return false };
        if entry.file_name() == ROOT {
            continue;
        }
        let path = entry.path();
        // Not following links: `file_type` is the entry's own, and `remove_dir_all`
        // removes a link, never what it points to.
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        clean &= removed.is_ok();
    }
    clean
}

fn discard(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warm(tmp: &Path) -> Warm {
        let dir = crate::temp::make_temp_dir_in(tmp, "distccd_").unwrap();
        std::fs::create_dir(dir.join(ROOT)).unwrap();
        let tree = Tree::open(&dir.join(ROOT)).unwrap();
        tree.write_file("/w/a.h", b"int a;\n").unwrap();
        tree.make_dir("/w").unwrap();
        Warm { dir, tree }
    }

    #[test]
    fn a_clean_dir_comes_back_without_the_jobs_outputs() {
        let t = tempfile::tempdir().unwrap();
        let pool = Pool::new(2);
        let w = warm(t.path());
        let dir = w.dir.clone();
        std::fs::write(dir.join("o123.o"), b"obj").unwrap();
        std::fs::create_dir(dir.join("ccXYZ")).unwrap();
        std::fs::write(dir.join("ccXYZ/tmp.s"), b"s").unwrap();
        pool.give_back(w);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![ROOT]);
        let again = pool.take().expect("kept");
        assert_eq!(again.dir, dir);
        assert!(pool.take().is_none());
        drop(again);
    }

    #[test]
    fn a_tree_with_anything_more_is_removed_not_kept() {
        let t = tempfile::tempdir().unwrap();
        let pool = Pool::new(2);
        for planted in ["w/b.h", "w/sub", "x.h"] {
            let w = warm(t.path());
            let dir = w.dir.clone();
            let p = dir.join(ROOT).join(planted);
            if planted.ends_with(".h") {
                std::fs::write(&p, b"stale").unwrap();
            } else {
                std::fs::create_dir(&p).unwrap();
            }
            pool.give_back(w);
            assert!(!dir.exists(), "{planted}: dir kept");
            assert!(pool.take().is_none());
        }
        // A file of the daemon's turned into something else.
        let w = warm(t.path());
        let dir = w.dir.clone();
        let h = dir.join(ROOT).join("w/a.h");
        std::fs::remove_file(&h).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &h).unwrap();
        pool.give_back(w);
        assert!(!dir.exists());
        // One missing.
        let w = warm(t.path());
        let dir = w.dir.clone();
        std::fs::remove_file(dir.join(ROOT).join("w/a.h")).unwrap();
        pool.give_back(w);
        assert!(!dir.exists());
    }

    #[test]
    fn no_more_than_the_cap_idle_and_clear_removes_them() {
        let t = tempfile::tempdir().unwrap();
        let pool = Pool::new(1);
        let (a, b) = (warm(t.path()), warm(t.path()));
        let (da, db) = (a.dir.clone(), b.dir.clone());
        pool.give_back(a);
        pool.give_back(b);
        assert!(da.exists() && !db.exists());
        pool.clear();
        assert!(!da.exists());
        let none = Pool::new(0);
        let c = warm(t.path());
        let dc = c.dir.clone();
        none.give_back(c);
        assert!(!dc.exists());
    }

    #[test]
    fn a_dir_removed_while_idle_is_not_handed_out() {
        let t = tempfile::tempdir().unwrap();
        let pool = Pool::new(2);
        let w = warm(t.path());
        let dir = w.dir.clone();
        pool.give_back(w);
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(dir.join(ROOT)).unwrap();
        assert!(
            pool.take().is_none(),
            "a new dir at the old name is not the tree"
        );
    }
}
