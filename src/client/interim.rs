//! Stand-ins for the modules other branches are building (`hosts`, `lock`, `backoff`,
//! `scheduler`, `state`, `args`, `temp`), reduced to what the client pipeline needs.
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

use thiserror::Error;

/// Errors from the host list.
#[derive(Debug, Error)]
pub enum HostsError {
    #[error(
        "bad host specification {0:?}: use HOST[/LIMIT][:PORT][,lzo][,cpp], @HOST or localhost[/N]"
    )]
    BadSpec(String),
    #[error(
        "no hostlist is set; can't distribute work (set DISTCC_HOSTS or write ~/.distcc/hosts)"
    )]
    NoList,
}

/// How a host is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// Run on this machine, in-process, under a `cpu_localhost_N` lock.
    Local,
    Tcp {
        host: String,
        port: u16,
    },
    Ssh {
        user: Option<String>,
        host: String,
        command: Option<String>,
    },
}

/// One entry of the host list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDef {
    /// The entry as written, for `--show-hosts` and messages.
    pub spec: String,
    pub kind: HostKind,
    pub slots: u32,
    pub lzo: bool,
    pub cpp: bool,
    pub down: bool,
}

impl HostDef {
    /// The host name shown by distccmon-text and used in lock/backoff names.
    pub fn hostname(&self) -> &str {
        match &self.kind {
            HostKind::Local => "localhost",
            HostKind::Tcp { host, .. } | HostKind::Ssh { host, .. } => host,
        }
    }

    /// distcc 3.4's lock-file name stem for this host (without `cpu_` and `_<slot>`).
    pub fn lock_stem(&self) -> String {
        match &self.kind {
            HostKind::Local => "localhost".into(),
            HostKind::Tcp { host, port } => format!("tcp_{host}_{port}"),
            HostKind::Ssh { host, .. } => format!("ssh_{host}"),
        }
    }

    /// Protocol version this host speaks: 1 plain, 2 with `,lzo`, 3 with `,cpp,lzo`.
    pub fn protocol(&self) -> u8 {
        match (self.lzo, self.cpp) {
            (true, true) => 3,
            (true, false) => 2,
            _ => 1,
        }
    }

    /// A pseudo-host for jobs that must run locally.
    pub fn local(slots: u32) -> HostDef {
        HostDef {
            spec: "localhost".into(),
            kind: HostKind::Local,
            slots,
            lzo: false,
            cpp: false,
            down: false,
        }
    }
}

/// A parsed host list with its local slot counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostList {
    pub hosts: Vec<HostDef>,
    pub local_slots: u32,
    pub local_slots_cpp: u32,
}

fn parse_limit(s: &str, spec: &str) -> Result<u32, HostsError> {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    match digits.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(HostsError::BadSpec(spec.into())),
    }
}

/// Parse the options after the first `,`.
fn parse_options(opts: &str, def: &mut HostDef) -> Result<(), HostsError> {
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        if o.starts_with("lzo") {
            def.lzo = true;
        } else if o.starts_with("cpp") {
            def.cpp = true;
        } else if o.starts_with("down") {
            def.down = true;
        } else {
            return Err(HostsError::BadSpec(def.spec.clone()));
        }
    }
    if def.cpp && !def.lzo {
        return Err(HostsError::BadSpec(def.spec.clone()));
    }
    Ok(())
}

fn parse_one(tok: &str) -> Result<HostDef, HostsError> {
    let bad = || HostsError::BadSpec(tok.to_string());
    let mut def = HostDef::local(2);
    def.spec = tok.to_string();
    if tok == "localhost" {
        return Ok(def);
    }
    if let Some(n) = tok.strip_prefix("localhost/") {
        def.slots = parse_limit(n, tok)?;
        return Ok(def);
    }
    let (main, opts) = match tok.find(',') {
        Some(i) => (&tok[..i], &tok[i + 1..]),
        None => (tok, ""),
    };
    if let Some(at) = main.find('@') {
        let user = &main[..at];
        let rest = &main[at + 1..];
        let end = rest.find(['/', ':']).unwrap_or(rest.len());
        let host = &rest[..end];
        if host.is_empty() {
            return Err(bad());
        }
        let mut slots = 4;
        let mut command = None;
        let mut tail = &rest[end..];
        if let Some(t) = tail.strip_prefix('/') {
            slots = parse_limit(t, tok)?;
            let n = t.find(':').unwrap_or(t.len());
            tail = &t[n..];
        }
        if let Some(c) = tail.strip_prefix(':') {
            command = Some(c.to_string());
        }
        def.kind = HostKind::Ssh {
            user: (!user.is_empty()).then(|| user.to_string()),
            host: host.to_string(),
            command,
        };
        def.slots = slots;
    } else {
        let (host, mut rest) = if let Some(r) = main.strip_prefix('[') {
            let close = r.find(']').ok_or_else(bad)?;
            (&r[..close], &r[close + 1..])
        } else {
            let end = main.find(['/', ':']).unwrap_or(main.len());
            (&main[..end], &main[end..])
        };
        if host.is_empty() {
            return Err(bad());
        }
        let mut slots = 4;
        let mut port = crate::DEFAULT_PORT;
        while !rest.is_empty() {
            if let Some(t) = rest.strip_prefix(['/', '=']) {
                slots = parse_limit(t, tok)?;
                rest = &t[t.find(':').unwrap_or(t.len())..];
            } else if let Some(t) = rest.strip_prefix(':') {
                let end = t.find('/').unwrap_or(t.len());
                port = t[..end].parse().map_err(|_| bad())?;
                rest = &t[end..];
            } else {
                return Err(bad());
            }
        }
        def.kind = HostKind::Tcp {
            host: host.to_string(),
            port,
        };
        def.slots = slots;
    }
    parse_options(opts, &mut def)?;
    Ok(def)
}

/// Parse a host list text (distcc 3.4 grammar, reference §2.3, the common subset).
pub fn parse_hosts(text: &str) -> Result<HostList, HostsError> {
    let mut list = HostList {
        hosts: Vec::new(),
        local_slots: 4,
        local_slots_cpp: 8,
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        for tok in line.split_whitespace() {
            if let Some(v) = tok
                .strip_prefix("--localslots_cpp=")
                .or_else(|| tok.strip_prefix("--localslots_cpp/"))
            {
                list.local_slots_cpp = parse_limit(v, tok)?;
            } else if let Some(v) = tok
                .strip_prefix("--localslots=")
                .or_else(|| tok.strip_prefix("--localslots/"))
            {
                list.local_slots = parse_limit(v, tok)?;
            } else if tok == "--randomize" || tok == "+zeroconf" {
                log::debug!("host list keyword {tok} ignored");
            } else {
                list.hosts.push(parse_one(tok)?);
            }
        }
    }
    Ok(list)
}

/// `$DISTCC_DIR`, else `$HOME/.distcc`.
pub fn distcc_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DISTCC_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME").filter(|d| !d.is_empty())?;
    let dir = PathBuf::from(home).join(".distcc");
    let _ = std::fs::create_dir_all(&dir);
    Some(dir)
}

/// A subdirectory of the distcc directory, created on demand.
pub fn sub_dir(name: &str) -> Option<PathBuf> {
    let dir = distcc_dir()?.join(name);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// The host list from its sources in distcc's order (reference §2.2).
pub fn load_hosts() -> Result<HostList, HostsError> {
    if let Ok(text) = std::env::var("DISTCC_HOSTS") {
        let list = parse_hosts(&text)?;
        if list.hosts.is_empty() {
            log::warn!("$DISTCC_HOSTS contained no hosts; can't distribute work");
        }
        return Ok(list);
    }
    let mut candidates = Vec::new();
    if let Some(d) = distcc_dir() {
        candidates.push(d.join("hosts"));
    }
    candidates.push(PathBuf::from("/etc/distcc/hosts"));
    for c in candidates {
        if let Ok(text) = std::fs::read_to_string(&c) {
            return parse_hosts(&text);
        }
    }
    Err(HostsError::NoList)
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

fn backoff_path(host: &HostDef) -> Option<PathBuf> {
    Some(sub_dir("lock")?.join(format!("backoff_{}_0", host.lock_stem())))
}

/// Whether a host failed less than the backoff period ago.
pub fn is_backed_off(host: &HostDef) -> bool {
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
pub fn mark_backoff(host: &HostDef) {
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
pub fn clear_backoff(host: &HostDef) {
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
