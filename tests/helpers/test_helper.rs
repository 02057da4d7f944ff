//! `distcc-test-helper`: a second process for the cross-process tests
//! (tests/lock_processes.rs, tests/scheduler_processes.rs). Only the test suite uses it;
//! `make install` installs target/release/distcc alone, never this binary.
//!
//! Lock sharing is between processes in real builds (many distcc clients, C distcc too),
//! and OFD locks already exclude a second open file in the same process, so only another
//! process proves that the kernel sees our locks as other clients do. It uses the library's
//! public API exactly as a distcc client does.
//!
//! Usage:
//! * `distcc-test-helper lock-hold PATH`: lock the file PATH (`SlotLock`), print "locked",
//!   hold the lock until stdin closes.
//! * `distcc-test-helper sched-hold DIR HOSTS`: take a slot of HOSTS with lock dir DIR
//!   (waiting, 60 s fallback pause), print "locked", hold it until stdin closes.
//! * `distcc-test-helper sched-work DIR HOSTS`: 3 times: take a slot (waiting), create a
//!   marker in DIR/marks, fail if more markers exist than HOSTS has slots, sleep 50 ms,
//!   remove the marker, release the slot.
//!
//! Exit status 0 on success, 1 with a message on stderr on any failure, 2 on bad usage.

use distcc::backoff::Backoff;
use distcc::hosts::{HostList, parse};
use distcc::lock::SlotLock;
use distcc::scheduler::Scheduler;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Fallback pause and backoff period: long, so that only the inotify wakeup can make a
/// waiter finish within the tests' deadlines.
const LONG: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["lock-hold", path] => lock_hold(Path::new(path)),
        ["sched-hold", dir, hosts] => sched_hold(Path::new(dir), hosts),
        ["sched-work", dir, hosts] => sched_work(Path::new(dir), hosts),
        _ => {
            eprintln!(
                "usage: distcc-test-helper lock-hold PATH | sched-hold DIR HOSTS | sched-work DIR HOSTS"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("distcc-test-helper {}: {e}", args.join(" "));
            ExitCode::FAILURE
        }
    }
}

/// Tell the test we hold the lock, then keep it until the test closes our stdin (or dies).
fn announce_and_hold() -> Result<(), String> {
    let mut out = std::io::stdout();
    writeln!(out, "locked")
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing \"locked\": {e}"))?;
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(())
}

fn lock_hold(path: &Path) -> Result<(), String> {
    let mut l = SlotLock::open(path).map_err(|e| e.to_string())?;
    if !l.try_lock().map_err(|e| e.to_string())? {
        return Err(format!("could not lock {}", path.display()));
    }
    announce_and_hold()
}

fn scheduler(dir: &Path, hosts: &str) -> Result<(Scheduler, HostList), String> {
    let list = parse(hosts).map_err(|e| e.to_string())?;
    Ok((Scheduler::new(dir, Backoff::new(dir, LONG), LONG), list))
}

fn sched_hold(dir: &Path, hosts: &str) -> Result<(), String> {
    let (s, list) = scheduler(dir, hosts)?;
    let _slot = s.lock_host(&list, &[]).map_err(|e| e.to_string())?;
    announce_and_hold()
}

fn sched_work(dir: &Path, hosts: &str) -> Result<(), String> {
    let (s, list) = scheduler(dir, hosts)?;
    let marks = dir.join("marks");
    for _ in 0..3 {
        let slot = s.lock_host(&list, &[]).map_err(|e| e.to_string())?;
        let me = marks.join(format!("{}_{}", std::process::id(), slot.slot));
        std::fs::write(&me, b"").map_err(|e| format!("creating {}: {e}", me.display()))?;
        let n = std::fs::read_dir(&marks)
            .map_err(|e| format!("reading {}: {e}", marks.display()))?
            .count() as u32;
        if n > list.total_slots() {
            return Err(format!("{n} holders for {} slots", list.total_slots()));
        }
        std::thread::sleep(Duration::from_millis(50));
        std::fs::remove_file(&me).map_err(|e| format!("removing {}: {e}", me.display()))?;
        drop(slot);
    }
    Ok(())
}
