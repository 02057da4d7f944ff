//! Removing our temporary files when the user interrupts a build (distcc 3.4
//! `dcc_client_catch_signals` + `tempfile.c` cleanup).
//!
//! Ctrl-C on `make -j` kills every distcc with SIGINT. Without this, each would leave a
//! `$TMPDIR/distcc_*.i` and perhaps a half-written `.x.o.distcc-*.tmp` behind. A signal
//! handler may only do async-signal-safe things, so the paths are kept as raw C strings in
//! a fixed table of atomic pointers: the handler just unlinks whatever is there, then
//! dies of the same signal with the default action (so make sees "interrupted").

use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, Ordering};

const SLOTS: usize = 16;

static PATHS: [AtomicPtr<libc::c_char>; SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];

/// A registered path; dropping it unregisters it (it does not delete the file).
#[derive(Debug)]
pub struct Registered {
    slot: Option<usize>,
}

/// Remember `path` for removal if we are killed by a signal.
pub fn register(path: &Path) -> Registered {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return Registered { slot: None };
    };
    let raw = c.into_raw();
    for (i, p) in PATHS.iter().enumerate() {
        if p.compare_exchange(
            std::ptr::null_mut(),
            raw,
            Ordering::SeqCst,
            Ordering::SeqCst,
        )
        .is_ok()
        {
            return Registered { slot: Some(i) };
        }
    }
    // Table full: not fatal, the file just isn't cleaned up on a signal.
    // SAFETY: raw came from CString::into_raw just above and was not shared.
    drop(unsafe { CString::from_raw(raw) });
    Registered { slot: None }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let raw = PATHS[i].swap(std::ptr::null_mut(), Ordering::SeqCst);
            if !raw.is_null() {
                // SAFETY: the pointer came from CString::into_raw in `register`, and the
                // swap made us its only owner.
                drop(unsafe { CString::from_raw(raw) });
            }
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    for p in PATHS.iter() {
        let raw = p.load(Ordering::SeqCst);
        if !raw.is_null() {
            // SAFETY: unlink is async-signal-safe; raw is a valid C string we leaked.
            unsafe { libc::unlink(raw) };
        }
    }
    // SAFETY: signal and raise are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Install the handler for the signals that end a build.
pub fn install() {
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

    #[test]
    fn register_and_unregister() {
        let r = register(Path::new("/tmp/some-file"));
        let slot = r.slot.unwrap();
        assert!(!PATHS[slot].load(Ordering::SeqCst).is_null());
        drop(r);
        assert!(PATHS[slot].load(Ordering::SeqCst).is_null());
    }
}
