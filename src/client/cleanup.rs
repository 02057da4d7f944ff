//! Removing our temporary files when the user interrupts a build (distcc 3.4
//! `dcc_client_catch_signals` + `tempfile.c` cleanup).
//!
//! Ctrl-C on `make -j` kills every distcc with SIGINT. Without this, each would leave a
//! `$TMPDIR/distcc_*.i` and perhaps a half-written `.x.o.distcc-*.tmp` behind. The handler
//! unlinks the registered paths, then dies of the same signal with the default action (so
//! make sees "interrupted").
//!
//! Why this is sound: a signal handler may run on any thread, at any moment — also while
//! another thread registers or unregisters a path. So the handler never follows a pointer
//! to memory that someone could free: the paths live in a fixed static table that is
//! never freed, and every byte of it is an atomic, so a read racing a write is not
//! undefined behaviour, only possibly torn. Torn reads are detected with a sequence count
//! per slot (a seqlock): the owner makes the count odd, changes the bytes, makes it even
//! again; the handler copies the bytes between two reads of the count and uses the copy
//! only if both reads are the same even number. Otherwise it skips the slot — the path was
//! being registered or unregistered at that instant, and so is either not created yet or
//! already being removed by its owner. The handler allocates nothing, takes no lock, and
//! calls only `unlink`, `signal` and `raise`, which are async-signal-safe.

use std::ffi::CStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering, fence};

/// How many paths can be registered at once (a job has at most a few).
const SLOTS: usize = 16;
/// Room for one path and its NUL (Linux's PATH_MAX); longer paths are not registered.
const CAP: usize = 4096;

/// One registered path.
struct Slot {
    /// Claimed by a [`Registered`]; only the claimant writes `bytes`.
    taken: AtomicBool,
    /// Even: `bytes` are stable; odd: the claimant is changing them.
    seq: AtomicUsize,
    /// The path, NUL-terminated; empty (a leading NUL) when unused.
    bytes: [AtomicU8; CAP],
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            taken: AtomicBool::new(false),
            seq: AtomicUsize::new(0),
            bytes: [const { AtomicU8::new(0) }; CAP],
        }
    }

    /// Replace the path (by the claimant only): seqlock write side.
    fn store(&self, path: &[u8]) {
        self.seq.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (cell, b) in self.bytes.iter().zip(path.iter().chain(&[0])) {
            cell.store(*b, Ordering::Relaxed);
        }
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// Copy the path into `buf` (NUL-terminated) if it was stable while copied: seqlock
    /// read side. Async-signal-safe: atomics and a caller's buffer only.
    fn snapshot<'b>(&self, buf: &'b mut [u8; CAP]) -> Option<&'b CStr> {
        let before = self.seq.load(Ordering::Acquire);
        if before % 2 == 1 {
            return None;
        }
        let mut len = None;
        for (i, cell) in self.bytes.iter().enumerate() {
            let b = cell.load(Ordering::Relaxed);
            buf[i] = b;
            if b == 0 {
                len = Some(i);
                break;
            }
        }
        fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) != before {
            return None;
        }
        match len {
            Some(0) | None => None,
            Some(n) => CStr::from_bytes_with_nul(&buf[..=n]).ok(),
        }
    }
}

static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// A registered path; dropping it unregisters it (it does not delete the file).
#[derive(Debug)]
pub(crate) struct Registered {
    slot: Option<usize>,
}

/// Remember `path` for removal if we are killed by a signal.
pub(crate) fn register(path: &Path) -> Registered {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= CAP || bytes.contains(&0) {
        return Registered { slot: None };
    }
    for (i, slot) in TABLE.iter().enumerate() {
        if slot
            .taken
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            slot.store(bytes);
            return Registered { slot: Some(i) };
        }
    }
    // Table full: not fatal, the file just isn't cleaned up on a signal.
    Registered { slot: None }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.and_then(|i| TABLE.get(i)) {
            slot.store(&[]);
            slot.taken.store(false, Ordering::Release);
        }
    }
}

/// Call `f` on every path registered (and stable) right now. Async-signal-safe when `f`
/// is: the copy lives on the stack.
fn for_each_registered(mut f: impl FnMut(&CStr)) {
    let mut buf = [0u8; CAP];
    for slot in TABLE.iter() {
        if let Some(path) = slot.snapshot(&mut buf) {
            f(path);
        }
    }
}

/// Process groups to kill on a signal: a local compile racing a remote job
/// ([`super::race`]) runs in a group of its own, so a Ctrl-C meant for the build does not
/// reach it directly, and it must not outlive us and write its temp files after we
/// removed them. 0: unused.
static GROUPS: [AtomicI32; 4] = [const { AtomicI32::new(0) }; 4];

/// A registered process group; dropping it unregisters it (it does not kill the group).
#[derive(Debug)]
pub(crate) struct RegisteredGroup {
    slot: Option<usize>,
}

/// Remember process group `pgid` to be killed if we are killed by a signal.
pub(crate) fn register_group(pgid: i32) -> RegisteredGroup {
    if pgid <= 0 {
        return RegisteredGroup { slot: None };
    }
    for (i, g) in GROUPS.iter().enumerate() {
        if g.compare_exchange(0, pgid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return RegisteredGroup { slot: Some(i) };
        }
    }
    RegisteredGroup { slot: None }
}

impl Drop for RegisteredGroup {
    fn drop(&mut self) {
        if let Some(g) = self.slot.and_then(|i| GROUPS.get(i)) {
            g.store(0, Ordering::Release);
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    // Stop racing compilers first, so they cannot recreate a file removed below.
    for g in GROUPS.iter() {
        let pgid = g.load(Ordering::Acquire);
        if pgid > 0 {
            // SAFETY: kill is async-signal-safe; the group is one we started and still wait for.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
    // SAFETY: unlink is async-signal-safe; the path is a NUL-terminated copy on our stack.
    for_each_registered(|p| unsafe {
        libc::unlink(p.as_ptr());
    });
    // SAFETY: signal and raise are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Install the handler for the signals that end a build.
pub(crate) fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: installing a handler that only performs async-signal-safe calls.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered() -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        for_each_registered(|p| v.push(p.to_bytes().to_vec()));
        v
    }

    #[test]
    fn groups_register_and_unregister() {
        let held = |p: i32| GROUPS.iter().any(|g| g.load(Ordering::Acquire) == p);
        let r = register_group(987_654);
        assert!(r.slot.is_some() && held(987_654));
        drop(r);
        assert!(!held(987_654));
        assert!(register_group(0).slot.is_none());
    }

    #[test]
    fn register_and_unregister() {
        let r = register(Path::new("/tmp/some-file-cleanup-test"));
        assert!(r.slot.is_some());
        assert!(registered().contains(&b"/tmp/some-file-cleanup-test".to_vec()));
        drop(r);
        assert!(!registered().contains(&b"/tmp/some-file-cleanup-test".to_vec()));
        assert!(register(Path::new(&"x".repeat(CAP))).slot.is_none());
    }

    /// The handler's view of the table while another thread registers and unregisters
    /// paths as fast as it can: it only ever sees whole registered paths. (Under the old
    /// design — leaked `CString` pointers freed on unregister — this read freed memory and
    /// saw paths that were never registered.)
    #[test]
    fn handler_reads_only_registered_paths() {
        let a = format!("/tmp/distcc-stress/{}", "a".repeat(100));
        let b = format!("/tmp/distcc-stress/{}", "b".repeat(100));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (a2, b2, stop2) = (a.clone(), b.clone(), stop.clone());
        let writer = std::thread::spawn(move || {
            // A few registrations live at a time, so the reader also sees stable ones.
            let mut held = std::collections::VecDeque::new();
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let p = if i % 2 == 0 { &a2 } else { &b2 };
                held.push_back(register(Path::new(p)));
                if held.len() > 3 {
                    held.pop_front();
                }
                i += 1;
            }
        });
        let mut seen = 0;
        let mut bad = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::time::Instant::now() < deadline && bad.is_empty() {
            for_each_registered(|p| {
                let s = p.to_bytes();
                if s.starts_with(b"/tmp/distcc-stress/") {
                    seen += 1;
                    if s != a.as_bytes() && s != b.as_bytes() {
                        bad.push(String::from_utf8_lossy(s).into_owned());
                    }
                }
            });
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(
            bad.is_empty(),
            "{seen} reads; the handler saw {:?}",
            &bad[..bad.len().min(3)]
        );
        assert!(seen > 0, "the reader never saw a registration");
    }
}
