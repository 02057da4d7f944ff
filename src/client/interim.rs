//! Stand-in for the `state` module (being written on another branch): this process's
//! `binstate_<pid>` file for distccmon-text, in distcc 3.4's layout (reference §3).
//!
//! WHY this exists: the client was written while that module was still empty, and the
//! monitor test needs the file. Once `state` lands, the client switches to it and this file
//! goes away.

use std::path::{Path, PathBuf};

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
