//! Backoff files: remember for a while that a host failed, so that other jobs skip it
//! (reference §2.5). Same files as distcc 3.4, so both clients see each other's marks:
//! `$DISTCC_DIR/lock/backoff_<key>_0`, where `<key>` is
//! [`crate::hosts::HostSpec::lock_key`] (`tcp_HOST_PORT`, `ssh_HOST`, `localhost`).
//!
//! * [`Backoff::mark`] (3.4's `dcc_disliked_host`) writes the byte `x` into the file, which
//!   sets its mtime to now (merely opening it would not).
//! * [`Backoff::clear`] (`dcc_enjoyed_host`) unlinks it.
//! * [`Backoff::is_backed_off`] is true while `now - mtime < DISTCC_BACKOFF_PERIOD`.
//!
//! `DISTCC_BACKOFF_PERIOD=0` turns all three into no-ops. In 3.4 that made a dead host be
//! retried forever; here the client caps its tries, so disabling backoff is safe.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Errors writing or removing backoff files. Callers normally log these and carry on: a
/// missing backoff mark only costs a retry.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackoffError {
    /// The file could not be written.
    #[error(
        "failed to mark backoff file {path}: {source} (check permissions of the lock directory)"
    )]
    Mark {
        /// The backoff file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file could not be removed.
    #[error("failed to remove backoff file {path}: {source}")]
    Clear {
        /// The backoff file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// `backoff_<key>_0`.
pub(crate) fn backoff_file_name(key: &str) -> String {
    format!("backoff_{key}_0")
}

/// Backoff bookkeeping in one lock directory.
#[derive(Debug, Clone)]
pub struct Backoff {
    lock_dir: PathBuf,
    period: Duration,
}

impl Backoff {
    /// Backoff files in `lock_dir` with the given period (zero disables).
    pub fn new(lock_dir: &Path, period: Duration) -> Backoff {
        Backoff {
            lock_dir: lock_dir.to_path_buf(),
            period,
        }
    }

    /// True when `DISTCC_BACKOFF_PERIOD=0`.
    pub(crate) fn is_disabled(&self) -> bool {
        self.period.is_zero()
    }

    /// The backoff file of a host.
    pub(crate) fn path(&self, key: &str) -> PathBuf {
        self.lock_dir.join(backoff_file_name(key))
    }

    /// Record that the host failed just now.
    pub(crate) fn mark(&self, key: &str) -> Result<(), BackoffError> {
        if self.is_disabled() {
            return Ok(());
        }
        let path = self.path(key);
        let r = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(&path)
            .and_then(|mut f| f.write_all(b"x"));
        match r {
            Ok(()) => {
                log::debug!("backing off {key} for {}s", self.period.as_secs());
                Ok(())
            }
            Err(source) => Err(BackoffError::Mark { path, source }),
        }
    }

    /// Record that the host worked: remove its mark. A missing file is fine.
    pub(crate) fn clear(&self, key: &str) -> Result<(), BackoffError> {
        if self.is_disabled() {
            return Ok(());
        }
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                log::trace!("removed {}", path.display());
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(BackoffError::Clear { path, source }),
        }
    }

    /// Is the host backed off at `now`? A mark dated in the future (clock went back) counts
    /// only while it is less than one period ahead, so a clock jump can't ban a host forever.
    pub(crate) fn is_backed_off_at(&self, key: &str, now: SystemTime) -> bool {
        if self.is_disabled() {
            return false;
        }
        let mtime = match std::fs::metadata(self.path(key)).and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    log::warn!("can't check backoff of {key}: {e}");
                }
                return false;
            }
        };
        match now.duration_since(mtime) {
            Ok(age) => age < self.period,
            Err(ahead) => ahead.duration() < self.period,
        }
    }

    /// [`Backoff::is_backed_off_at`] now.
    pub(crate) fn is_backed_off(&self, key: &str) -> bool {
        self.is_backed_off_at(key, SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_distcc() {
        assert_eq!(backoff_file_name("tcp_red_3632"), "backoff_tcp_red_3632_0");
        assert_eq!(backoff_file_name("ssh_angry"), "backoff_ssh_angry_0");
        assert_eq!(backoff_file_name("localhost"), "backoff_localhost_0");
    }

    #[test]
    fn mark_check_clear() {
        let t = tempfile::tempdir().unwrap();
        let b = Backoff::new(t.path(), Duration::from_secs(60));
        assert!(!b.is_backed_off("tcp_red_3632"));
        b.mark("tcp_red_3632").unwrap();
        assert_eq!(std::fs::read(b.path("tcp_red_3632")).unwrap(), b"x");
        assert!(b.is_backed_off("tcp_red_3632"));
        assert!(!b.is_backed_off("tcp_blue_3632"));
        let now = SystemTime::now();
        assert!(!b.is_backed_off_at("tcp_red_3632", now + Duration::from_secs(61)));
        assert!(b.is_backed_off_at("tcp_red_3632", now + Duration::from_secs(30)));
        // Clock went back a little: still backed off; a lot: not.
        assert!(b.is_backed_off_at("tcp_red_3632", now - Duration::from_secs(30)));
        assert!(!b.is_backed_off_at("tcp_red_3632", now - Duration::from_secs(3600)));
        b.clear("tcp_red_3632").unwrap();
        assert!(!b.path("tcp_red_3632").exists());
        assert!(!b.is_backed_off("tcp_red_3632"));
        b.clear("tcp_red_3632").unwrap(); // clearing twice is fine
    }

    #[test]
    fn mark_refreshes_old_files() {
        let t = tempfile::tempdir().unwrap();
        let b = Backoff::new(t.path(), Duration::from_secs(60));
        let p = b.path("ssh_x");
        std::fs::write(&p, b"x").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(!b.is_backed_off("ssh_x"), "an hour-old mark has expired");
        b.mark("ssh_x").unwrap();
        assert!(b.is_backed_off("ssh_x"));
    }

    #[test]
    fn zero_period_disables_reading_and_writing() {
        let t = tempfile::tempdir().unwrap();
        let on = Backoff::new(t.path(), Duration::from_secs(60));
        on.mark("localhost").unwrap();
        let off = Backoff::new(t.path(), Duration::ZERO);
        assert!(off.is_disabled());
        assert!(!off.is_backed_off("localhost"), "not read");
        off.clear("localhost").unwrap();
        assert!(off.path("localhost").exists(), "not removed");
        off.mark("tcp_a_1").unwrap();
        assert!(!off.path("tcp_a_1").exists(), "not written");
    }
}
