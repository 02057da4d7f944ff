//! Monitor state files: `$DISTCC_DIR/state/binstate_<pid>` (distcc 3.4 `state.c`, `mon.c`;
//! reference §3).
//!
//! Each client process keeps one 296-byte record there, in distcc's exact native layout, so
//! Debian's `distccmon-text` shows our jobs and ours shows theirs. The writer rewrites the
//! record on every phase change and removes it when the job ends; the reader applies
//! distcc's rules for stale, foreign and dead entries.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Size of `struct dcc_task_state` on LP64.
pub(crate) const RECORD_SIZE: usize = 296;
/// `"DIH\0"` as distcc stores it.
pub(crate) const MAGIC: u64 = 0x4449_4800;
/// The file name prefix distccmon-text looks for.
pub(crate) const PREFIX: &str = "binstate_";
/// A record untouched for this long is a leftover: the monitor deletes it.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(60);

const NAME_LEN: usize = 128;

/// Where a job is, in distcc's order (the numbers are on disk).
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

/// The name distccmon-text prints for a phase number; unknown numbers show as Compile,
/// as distcc does.
pub(crate) fn phase_name(phase: i32) -> &'static str {
    match phase {
        0 => "Startup",
        1 => "Blocked",
        2 => "Connect",
        3 => "Preprocess",
        4 => "Send",
        6 => "Receive",
        7 => "Done",
        _ => "Compile",
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    pub pid: u64,
    pub file: Vec<u8>,
    pub host: Vec<u8>,
    pub slot: i32,
    pub phase: i32,
}

impl TaskState {
    /// The 296 bytes distcc writes.
    pub fn encode(&self) -> [u8; RECORD_SIZE] {
        let mut rec = [0u8; RECORD_SIZE];
        rec[0..8].copy_from_slice(&(RECORD_SIZE as u64).to_ne_bytes());
        rec[8..16].copy_from_slice(&MAGIC.to_ne_bytes());
        rec[16..24].copy_from_slice(&self.pid.to_ne_bytes());
        for (off, s) in [(24, &self.file), (24 + NAME_LEN, &self.host)] {
            let n = s.len().min(NAME_LEN - 1);
            rec[off..off + n].copy_from_slice(&s[..n]);
        }
        rec[280..284].copy_from_slice(&self.slot.to_ne_bytes());
        rec[284..288].copy_from_slice(&self.phase.to_ne_bytes());
        rec
    }

    /// Decode a record; `None` if it is short, or its size or magic is wrong.
    pub(crate) fn decode(bytes: &[u8]) -> Option<TaskState> {
        let word = |off: usize| -> Option<u64> {
            Some(u64::from_ne_bytes(
                bytes.get(off..off + 8)?.try_into().ok()?,
            ))
        };
        let int = |off: usize| -> Option<i32> {
            Some(i32::from_ne_bytes(
                bytes.get(off..off + 4)?.try_into().ok()?,
            ))
        };
        if bytes.len() < RECORD_SIZE || word(0)? != RECORD_SIZE as u64 || word(8)? != MAGIC {
            return None;
        }
        let text = |off: usize| {
            let field = &bytes[off..off + NAME_LEN];
            let end = field.iter().position(|b| *b == 0).unwrap_or(NAME_LEN - 1);
            field[..end].to_vec()
        };
        Some(TaskState {
            pid: word(16)?,
            file: text(24),
            host: text(24 + NAME_LEN),
            slot: int(280)?,
            phase: int(284)?,
        })
    }

    /// distccmon-text's line: `"%6ld  %-10.10s  %-30.30s %24.24s[%d]\n"`.
    pub fn monitor_line(&self) -> Vec<u8> {
        let mut out = format!("{:>6}  {:<10.10}  ", self.pid, phase_name(self.phase)).into_bytes();
        pad(&mut out, &self.file, 30, false);
        out.push(b' ');
        pad(&mut out, &self.host, 24, true);
        out.extend_from_slice(format!("[{}]\n", self.slot).as_bytes());
        out
    }
}

/// printf's `%-W.Ws` / `%W.Ws` on bytes.
fn pad(out: &mut Vec<u8>, s: &[u8], width: usize, right: bool) {
    let s = &s[..s.len().min(width)];
    let fill = std::iter::repeat_n(b' ', width - s.len());
    if right {
        out.extend(fill);
        out.extend_from_slice(s);
    } else {
        out.extend_from_slice(s);
        out.extend(fill);
    }
}

/// This process's state file; removed on drop.
///
/// The file stays open and each phase change rewrites its 296 bytes in place (one
/// `pwrite`): a client changes phase half a dozen times per job, and reopening with
/// `O_TRUNC` every time cost more than the rest of the bookkeeping.
pub struct StateFile {
    path: PathBuf,
    file: Option<std::fs::File>,
    state: TaskState,
}

impl StateFile {
    pub fn new(state_dir: &Path, pid: u32) -> StateFile {
        StateFile {
            path: state_dir.join(format!("{PREFIX}{pid}")),
            file: None,
            state: TaskState {
                pid: u64::from(pid),
                file: Vec::new(),
                host: Vec::new(),
                slot: 0,
                phase: Phase::Startup as i32,
            },
        }
    }

    /// Record a phase. `None` keeps the previous file, host or slot, as distcc does; the
    /// file is shown by its base name.
    pub fn set(&mut self, phase: Phase, file: Option<&str>, host: Option<&str>, slot: Option<u32>) {
        if let Some(f) = file {
            self.state.file = Path::new(f)
                .file_name()
                .map(|s| s.as_encoded_bytes().to_vec())
                .unwrap_or_default();
        }
        if let Some(h) = host {
            self.state.host = h.as_bytes().to_vec();
        }
        if let Some(s) = slot {
            self.state.slot = s as i32;
        }
        self.state.phase = phase as i32;
        if let Err(e) = self.write() {
            log::debug!("failed to write state file {}: {e}", self.path.display());
        }
    }

    fn write(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        if self.file.is_none() {
            // The directory is made only if it is missing (see `crate::temp::in_dir`).
            let dir = self.path.parent().unwrap_or(Path::new("."));
            self.file = Some(crate::temp::in_dir(dir, || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o666)
                    .open(&self.path)
            })?);
        }
        match &self.file {
            Some(f) => f.write_all_at(&self.state.encode(), 0),
            None => Ok(()),
        }
    }
}

impl Drop for StateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Is this process alive (or alive but not ours to signal)?
fn alive(pid: u64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

/// Read every job in `state_dir` with distcc's rules: only `binstate_*` files; those
/// untouched for 60 s are deleted; bad size or magic is skipped with a warning; entries of
/// dead processes are skipped (unless Done); sorted by host, then slot.
pub fn read_states(state_dir: &Path, now: SystemTime) -> std::io::Result<Vec<TaskState>> {
    let mut states = Vec::new();
    for entry in std::fs::read_dir(state_dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        if !name.as_encoded_bytes().starts_with(PREFIX.as_bytes()) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > STALE_AFTER)
        {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if bytes.len() < RECORD_SIZE {
            continue;
        }
        let Some(state) = TaskState::decode(&bytes) else {
            log::warn!(
                "{}: wrong size or magic; not a distcc state file",
                path.display()
            );
            continue;
        };
        if state.phase != Phase::Done as i32 && !alive(state.pid) {
            continue;
        }
        states.push(state);
    }
    states.sort_by(|a, b| a.host.cmp(&b.host).then(a.slot.cmp(&b.slot)));
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> u64 {
        u64::from(std::process::id())
    }

    #[test]
    fn layout_matches_distcc() {
        let s = TaskState {
            pid: 0x0102_0304,
            file: b"hello.c".to_vec(),
            host: b"red".to_vec(),
            slot: 3,
            phase: 5,
        };
        let rec = s.encode();
        assert_eq!(rec.len(), 296);
        assert_eq!(&rec[0..8], &296u64.to_le_bytes());
        assert_eq!(&rec[8..16], &[0x00, 0x48, 0x49, 0x44, 0, 0, 0, 0]);
        assert_eq!(&rec[24..31], b"hello.c");
        assert_eq!(&rec[152..155], b"red");
        assert_eq!(&rec[280..284], &3i32.to_le_bytes());
        assert_eq!(&rec[284..288], &5i32.to_le_bytes());
        assert_eq!(TaskState::decode(&rec), Some(s));
        let mut bad = rec;
        bad[8] = 1;
        assert_eq!(TaskState::decode(&bad), None);
        assert_eq!(TaskState::decode(&rec[..200]), None);
    }

    #[test]
    fn monitor_line_is_printf_shaped() {
        let s = TaskState {
            pid: 1,
            file: b"bar_with_a_really_long_name_exceeding_thirty.c".to_vec(),
            host: b"localhost".to_vec(),
            slot: 0,
            phase: 3,
        };
        assert_eq!(
            String::from_utf8(s.monitor_line()).unwrap(),
            "     1  Preprocess  bar_with_a_really_long_name_ex                localhost[0]\n"
        );
    }

    #[test]
    fn reader_rules() {
        let dir = tempfile::tempdir().unwrap();
        let write =
            |name: &str, s: &TaskState| std::fs::write(dir.path().join(name), s.encode()).unwrap();
        let live = |host: &str, slot: i32| TaskState {
            pid: me(),
            file: b"a.c".to_vec(),
            host: host.as_bytes().to_vec(),
            slot,
            phase: Phase::Compile as i32,
        };
        write("binstate_1", &live("zed", 0));
        write("binstate_2", &live("alpha", 2));
        write("binstate_3", &live("alpha", 1));
        write("other_4", &live("alpha", 0));
        let dead = TaskState {
            pid: 999_999_999,
            ..live("dead", 0)
        };
        write("binstate_5", &dead);
        std::fs::write(dir.path().join("binstate_6"), b"short").unwrap();
        let got = read_states(dir.path(), SystemTime::now()).unwrap();
        let keys: Vec<(String, i32)> = got
            .iter()
            .map(|s| (String::from_utf8_lossy(&s.host).into_owned(), s.slot))
            .collect();
        assert_eq!(
            keys,
            vec![("alpha".into(), 1), ("alpha".into(), 2), ("zed".into(), 0)]
        );
        // Seen from two minutes in the future, everything is stale and deleted.
        let later = SystemTime::now() + Duration::from_secs(120);
        assert!(read_states(dir.path(), later).unwrap().is_empty());
        assert!(!dir.path().join("binstate_1").exists());
        assert!(dir.path().join("other_4").exists());
    }

    /// The client no longer makes `state` before a job: the first write makes it.
    #[test]
    fn the_first_write_makes_a_missing_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("dd/state");
        let mut f = StateFile::new(&state, std::process::id());
        f.set(Phase::Cpp, Some("x.c"), Some("localhost"), Some(0));
        let path = state.join(format!("binstate_{}", std::process::id()));
        let s = TaskState::decode(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(s.file, b"x.c");
    }

    #[test]
    fn writer_keeps_previous_values_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("binstate_{}", std::process::id()));
        {
            let mut f = StateFile::new(dir.path(), std::process::id());
            f.set(Phase::Cpp, Some("/src/dir/x.c"), Some("localhost"), Some(2));
            f.set(Phase::Send, None, Some("red"), None);
            let s = TaskState::decode(&std::fs::read(&path).unwrap()).unwrap();
            assert_eq!(
                (s.file.as_slice(), s.host.as_slice(), s.slot, s.phase),
                (&b"x.c"[..], &b"red"[..], 2, 4)
            );
        }
        assert!(!path.exists(), "removed on drop");
    }
}
