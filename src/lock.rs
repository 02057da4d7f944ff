//! Slot lock files, shared with distcc 3.4 (reference §2.4).
//!
//! Each (host, slot) pair is a zero-byte file `$DISTCC_DIR/lock/cpu_<key>_<slot>` where
//! `<key>` is [`crate::hosts::HostSpec::lock_key`] (`localhost`, `tcp_<host>_<port>`,
//! `ssh_<host>`). Holding a write record lock on the whole file means "this slot is busy".
//! Files are opened `O_WRONLY|O_CREAT` with mode 0666 (filtered by the umask, so a shared
//! lock directory stays usable) and never deleted: deleting would race with other clients.
//!
//! ## Which kind of lock, and why
//! distcc 3.4 uses classic POSIX `fcntl(F_SETLK, F_WRLCK)` locks. Those belong to the
//! *process*: a second lock on the same file from the same process always succeeds, and
//! closing *any* descriptor of the file drops all of the process's locks on it.
//! We use Linux "open file description" locks (`F_OFD_SETLK`, Linux 3.15+) instead: they
//! belong to the open file, so two [`SlotLock`]s in one process exclude each other and
//! dropping one never releases another. OFD locks and classic POSIX locks on the same file
//! conflict with each other, so a C distcc client and this one still share slots (tested
//! below against Python's `fcntl.lockf` and Debian's `/usr/bin/distcc`).
//! If the kernel rejects OFD locks (`EINVAL`), we fall back to classic `F_SETLK`, and then
//! the per-process caveat above applies again.
//!
//! The lock is released by `F_UNLCK` and then `close`, in that order, like distcc 3.4; the
//! kernel also releases it when the process dies. Either way the close of a descriptor that
//! was opened for writing produces an inotify `IN_CLOSE_WRITE` event on the lock directory,
//! which [`crate::scheduler`] uses to wake waiters without polling.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Errors from lock files. "Busy" is not an error: it is `Ok(false)` / `Ok(None)`.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file could not be created or opened.
    #[error(
        "failed to create lock file {path}: {source} (check permissions of the lock directory, or set DISTCC_DIR)"
    )]
    Open {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `fcntl` failed for a reason other than "somebody else holds it".
    #[error("lock {path} failed: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// `cpu_<key>_<slot>`: the lock file name distcc 3.4 uses for slot `slot` of a host.
pub fn lock_file_name(key: &str, slot: u32) -> String {
    format!("cpu_{key}_{slot}")
}

/// An open lock file that may or may not hold its lock. Dropping it releases the lock (if
/// held) and closes the file.
///
/// Keeping one open across retries (instead of reopening) matters for the scheduler: every
/// close of a write-opened file is an inotify event that would wake other waiters.
#[derive(Debug)]
pub struct SlotLock {
    file: File,
    path: PathBuf,
    locked: bool,
}

/// Set once the kernel has told us it doesn't know OFD locks.
static NO_OFD: AtomicBool = AtomicBool::new(false);

impl SlotLock {
    /// Open (creating if needed) the lock file at `path`, without locking it.
    pub fn open(path: &Path) -> Result<SlotLock, LockError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(path)
            .map_err(|source| LockError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(SlotLock {
            file,
            path: path.to_path_buf(),
            locked: false,
        })
    }

    /// Try once, without blocking, to take the write lock. `Ok(true)`: we hold it now (or
    /// already did). `Ok(false)`: somebody else holds it.
    pub fn try_lock(&mut self) -> Result<bool, LockError> {
        if self.locked {
            return Ok(true);
        }
        match set_lock(&self.file, libc::F_WRLCK as libc::c_short) {
            Ok(()) => {
                self.locked = true;
                log::trace!("got lock {}", self.path.display());
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    // EWOULDBLOCK equals EAGAIN on Linux; EACCES is what some systems use.
                    Some(libc::EAGAIN) | Some(libc::EACCES)
                ) =>
            {
                log::trace!("{} is busy", self.path.display());
                Ok(false)
            }
            Err(source) => Err(LockError::Lock {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Wait until the lock is ours (`F_OFD_SETLKW`). The kernel queues waiters on one file
    /// and wakes them one at a time, which matters when hundreds of clients wait for a few
    /// local preprocessing slots.
    pub(crate) fn lock_blocking(&mut self) -> Result<(), LockError> {
        if self.locked {
            return Ok(());
        }
        loop {
            match set_lock_wait(&self.file) {
                Ok(()) => {
                    self.locked = true;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LockError::Lock {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// True while this object holds the lock.
    #[cfg(test)]
    pub(crate) fn is_locked(&self) -> bool {
        self.locked
    }

    /// The lock file.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SlotLock {
    fn drop(&mut self) {
        if self.locked {
            if let Err(e) = set_lock(&self.file, libc::F_UNLCK as libc::c_short) {
                log::error!("unlock {} failed: {e}", self.path.display());
            } else {
                log::trace!("released lock {}", self.path.display());
            }
        }
        // The File closes itself after this.
    }
}

/// Open `<lock_dir>/cpu_<key>_<slot>` and try to lock it: `Ok(None)` when it is busy.
#[cfg(test)]
pub(crate) fn try_lock_slot(
    lock_dir: &Path,
    key: &str,
    slot: u32,
) -> Result<Option<SlotLock>, LockError> {
    let mut lock = SlotLock::open(&lock_dir.join(lock_file_name(key, slot)))?;
    Ok(if lock.try_lock()? { Some(lock) } else { None })
}

/// Blocking whole-file write lock: OFD when available, else classic.
fn set_lock_wait(file: &File) -> io::Result<()> {
    // SAFETY: an all-zero `flock` is valid; the fields we use are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    let cmd = if NO_OFD.load(Ordering::Relaxed) {
        libc::F_SETLKW
    } else {
        libc::F_OFD_SETLKW
    };
    // SAFETY: `file` owns an open descriptor; `fl` outlives the call.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Non-blocking whole-file record lock or unlock: OFD when available, else classic.
fn set_lock(file: &File, l_type: libc::c_short) -> io::Result<()> {
    // SAFETY: an all-zero `flock` is a valid value; we then fill the fields we use.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0; // whole file
    fl.l_pid = 0; // required for OFD locks
    let fd = file.as_raw_fd();
    if !NO_OFD.load(Ordering::Relaxed) {
        // SAFETY: `fd` is an open descriptor owned by `file`; `fl` outlives the call.
        let r = unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &mut fl) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
        log::debug!("kernel has no OFD locks; using classic POSIX record locks");
        NO_OFD.store(true, Ordering::Relaxed);
    }
    // SAFETY: as above.
    let r = unsafe { libc::fcntl(fd, libc::F_SETLK, &mut fl) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    #[test]
    fn names_match_distcc() {
        assert_eq!(lock_file_name("localhost", 0), "cpu_localhost_0");
        assert_eq!(lock_file_name("tcp_red_3632", 3), "cpu_tcp_red_3632_3");
        assert_eq!(lock_file_name("ssh_angry", 1), "cpu_ssh_angry_1");
    }

    #[test]
    fn lock_file_is_created_empty_and_kept() {
        let t = tempfile::tempdir().unwrap();
        let l = try_lock_slot(t.path(), "localhost", 0).unwrap().unwrap();
        let p = l.path().to_path_buf();
        assert_eq!(p, t.path().join("cpu_localhost_0"));
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.len(), 0);
        // 0666 filtered by the umask: at least owner rw, never executable.
        assert_eq!(meta.permissions().mode() & 0o700, 0o600);
        drop(l);
        assert!(p.exists(), "lock files are never deleted");
    }

    #[test]
    fn two_guards_in_one_process_exclude_each_other() {
        let t = tempfile::tempdir().unwrap();
        let a = try_lock_slot(t.path(), "localhost", 0).unwrap();
        assert!(a.is_some());
        // With OFD locks a second open file is refused even in the same process.
        assert!(try_lock_slot(t.path(), "localhost", 0).unwrap().is_none());
        // Another slot is independent.
        assert!(try_lock_slot(t.path(), "localhost", 1).unwrap().is_some());
        drop(a);
        assert!(try_lock_slot(t.path(), "localhost", 0).unwrap().is_some());
    }

    // Exclusion of another process using this API: tests/lock_processes.rs (with the
    // distcc-test-helper binary as the other process).

    #[test]
    fn retry_on_the_same_open_file() {
        let t = tempfile::tempdir().unwrap();
        let holder = try_lock_slot(t.path(), "k", 0).unwrap().unwrap();
        let mut waiter = SlotLock::open(holder.path()).unwrap();
        assert!(!waiter.try_lock().unwrap());
        assert!(!waiter.is_locked());
        drop(holder);
        assert!(waiter.try_lock().unwrap());
        assert!(waiter.is_locked());
    }

    fn python_lockf(path: &Path) -> String {
        let out = Command::new("python3")
            .args([
                "-c",
                "import fcntl,sys\nf=open(sys.argv[1],'w')\ntry:\n fcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB);print('free')\nexcept OSError:\n print('busy')",
            ])
            .arg(path)
            .output()
            .expect("python3");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn conflicts_with_classic_posix_locks_of_other_processes() {
        assert!(
            Command::new("python3").arg("-V").output().is_ok(),
            "this test needs python3 (its fcntl.lockf is the classic-lock peer): \
             sudo apt-get install -y python3"
        );
        let t = tempfile::tempdir().unwrap();
        let l = try_lock_slot(t.path(), "tcp_red_3632", 0).unwrap().unwrap();
        assert_eq!(python_lockf(l.path()), "busy");
        let p = l.path().to_path_buf();
        drop(l);
        assert_eq!(python_lockf(&p), "free");

        // And the other way round: a classic lock held by python blocks us.
        let mut py = Command::new("python3")
            .args([
                "-c",
                "import fcntl,sys\nf=open(sys.argv[1],'w')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\nsys.stdin.read()",
            ])
            .arg(&p)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(py.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        assert!(
            try_lock_slot(t.path(), "tcp_red_3632", 0)
                .unwrap()
                .is_none()
        );
        drop(py.stdin.take());
        py.wait().unwrap();
        assert!(
            try_lock_slot(t.path(), "tcp_red_3632", 0)
                .unwrap()
                .is_some()
        );
    }

    /// Interop with Debian's distcc 3.4: it runs a non-compile command (`sleep`) locally
    /// under a `cpu_localhost_N` lock, and it must wait for a slot that we hold.
    #[test]
    fn shares_slots_with_real_distcc() {
        let distcc = Path::new("/usr/bin/distcc");
        assert!(
            distcc.exists(),
            "this test needs Debian's distcc 3.4: sudo apt-get install -y distcc distcc-pump"
        );
        let t = tempfile::tempdir().unwrap();
        let lock_dir = t.path().join("lock");
        std::fs::create_dir(&lock_dir).unwrap();
        let run = |args: &[&str]| {
            Command::new(distcc)
                .args(args)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("DISTCC_DIR", t.path())
                .env("DISTCC_HOSTS", "localhost --localslots=1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };

        // C distcc holds the slot: we see it busy.
        let mut c = run(&["sleep", "3"]);
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut saw_busy = false;
        while Instant::now() < deadline {
            let path = lock_dir.join("cpu_localhost_0");
            if path.exists() && try_lock_slot(&lock_dir, "localhost", 0).unwrap().is_none() {
                saw_busy = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(saw_busy, "distcc's lock on cpu_localhost_0 was not visible");
        c.wait().unwrap();
        assert!(try_lock_slot(&lock_dir, "localhost", 0).unwrap().is_some());

        // We hold the slot: C distcc waits until we release it.
        let held = try_lock_slot(&lock_dir, "localhost", 0).unwrap().unwrap();
        let mut c = run(&["true"]);
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            c.try_wait().unwrap().is_none(),
            "distcc ran although we hold the only local slot"
        );
        drop(held);
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "distcc never got the slot");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
