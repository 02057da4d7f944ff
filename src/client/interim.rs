//! Stand-ins for the modules other branches are building (`lock`, `backoff`,
//! `scheduler`, `state`), reduced to what the client pipeline needs.
//!
//! WHY this exists: the client was written while those modules were still empty, and a
//! pipeline that cannot run cannot be tested. Everything here follows distcc 3.4's file
//! names and formats (reference §2.2–§2.7, §3) so it interoperates with Debian's distcc
//! (shared lock directory, backoff files, `binstate_<pid>` for distccmon-text). Once the
//! real modules land, the client switches to them and this file shrinks or goes away.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::hosts::{HostKind, HostSpec};

/// A pseudo-host for jobs that must run locally (`n` slots of `cpu_localhost_*`).
pub fn local_host(slots: u32) -> HostSpec {
    HostSpec {
        spec: "localhost".into(),
        kind: HostKind::Local,
        slots,
        protocol: 1,
        lzo: false,
        cpp: false,
        down: false,
        auth: None,
    }
}

/// `$DISTCC_DIR/<name>`, created on demand; `None` (logged) when there is no distcc dir.
pub fn sub_dir(name: &str) -> Option<PathBuf> {
    match crate::temp::sub_dir(&crate::temp::ProcessEnv, name) {
        Ok(d) => Some(d),
        Err(e) => {
            log::debug!("{e}");
            None
        }
    }
}

/// A held slot lock: a POSIX record lock on `cpu_<stem>_<slot>`, shared-compatible with
/// distcc 3.4. Dropping it closes the file, which releases the lock.
#[derive(Debug)]
pub struct SlotLock {
    _file: File,
    pub slot: u32,
}

/// Try to lock one slot without waiting; `Ok(None)` when it is busy.
pub fn try_lock(lock_dir: &Path, stem: &str, slot: u32) -> io::Result<Option<SlotLock>> {
    let path = lock_dir.join(format!("cpu_{stem}_{slot}"));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    // SAFETY: flock struct zero-initialised, then the fields fcntl reads are set.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    // SAFETY: valid fd and pointer to an initialised flock.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) };
    if rc == 0 {
        return Ok(Some(SlotLock { _file: file, slot }));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(None),
        _ => Err(e),
    }
}

/// `DISTCC_BACKOFF_PERIOD` in seconds (default 60; 0 disables backoff).
pub fn backoff_period() -> Duration {
    let secs = std::env::var("DISTCC_BACKOFF_PERIOD")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

fn backoff_path(host: &HostSpec) -> Option<PathBuf> {
    Some(sub_dir("lock")?.join(format!("backoff_{}_0", host.lock_key())))
}

/// Whether a host failed less than the backoff period ago.
pub fn is_backed_off(host: &HostSpec) -> bool {
    let period = backoff_period();
    if period.is_zero() {
        return false;
    }
    let Some(path) = backoff_path(host) else {
        return false;
    };
    let Ok(mtime) = std::fs::metadata(&path).and_then(|m| m.modified()) else {
        return false;
    };
    SystemTime::now()
        .duration_since(mtime)
        .map(|age| age < period)
        .unwrap_or(true)
}

/// Remember that a host failed (writes `x` so the mtime changes, as distcc does).
pub fn mark_backoff(host: &HostSpec) {
    if backoff_period().is_zero() {
        return;
    }
    if let Some(path) = backoff_path(host) {
        log::debug!("backing off {} ({})", host.spec, path.display());
        let r = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"x"));
        if let Err(e) = r {
            log::warn!("failed to write backoff file {}: {e}", path.display());
        }
    }
}

/// Forget a host's failure.
pub fn clear_backoff(host: &HostSpec) {
    if backoff_period().is_zero() {
        return;
    }
    if let Some(path) = backoff_path(host) {
        let _ = std::fs::remove_file(path);
    }
}

/// Monitor phases (reference §3), in distcc's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Startup = 0,
    Blocked = 1,
    Connect = 2,
    Cpp = 3,
    Send = 4,
    Compile = 5,
    Receive = 6,
    Done = 7,
}

/// This process's `binstate_<pid>` file for distccmon-text; removed on drop.
pub struct StateFile {
    path: PathBuf,
    file: String,
    host: String,
    slot: i32,
}

impl StateFile {
    pub fn new(state_dir: &Path, pid: u32) -> StateFile {
        StateFile {
            path: state_dir.join(format!("binstate_{pid}")),
            file: String::new(),
            host: String::new(),
            slot: 0,
        }
    }

    /// Record a phase; `None` keeps the previous file or host, as distcc does.
    pub fn set(&mut self, phase: Phase, file: Option<&str>, host: Option<&str>, slot: Option<u32>) {
        if let Some(f) = file {
            self.file = Path::new(f)
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        if let Some(h) = host {
            self.host = h.to_string();
        }
        if let Some(s) = slot {
            self.slot = s as i32;
        }
        let mut rec = Vec::with_capacity(296);
        rec.extend_from_slice(&296u64.to_ne_bytes());
        rec.extend_from_slice(&0x4449_4800u64.to_ne_bytes());
        rec.extend_from_slice(&u64::from(std::process::id()).to_ne_bytes());
        for s in [&self.file, &self.host] {
            let mut field = [0u8; 128];
            let b = s.as_bytes();
            let n = b.len().min(127);
            field[..n].copy_from_slice(&b[..n]);
            rec.extend_from_slice(&field);
        }
        rec.extend_from_slice(&self.slot.to_ne_bytes());
        rec.extend_from_slice(&(phase as i32).to_ne_bytes());
        rec.extend_from_slice(&0u64.to_ne_bytes());
        if let Err(e) = std::fs::write(&self.path, &rec) {
            log::debug!("failed to write state file {}: {e}", self.path.display());
        }
    }
}

impl Drop for StateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
