//! Slot locks across processes: a second process (`distcc-test-helper lock-hold`) takes a
//! lock through our `SlotLock` API, as another distcc client would, and we must be refused
//! until it exits.

use distcc::lock::{SlotLock, lock_file_name};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Start a helper that locks `path` and wait until it says it holds the lock.
fn spawn_child_holder(path: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_distcc-test-helper"))
        .arg("lock-hold")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child died early");
        if line.trim_end() == "locked" {
            break;
        }
    }
    child
}

#[test]
fn excludes_another_process_using_this_api() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join(lock_file_name("localhost", 0));
    let mut child = spawn_child_holder(&path);
    let mut mine = SlotLock::open(&path).unwrap();
    assert!(!mine.try_lock().unwrap(), "child holds it");
    drop(child.stdin.take()); // child exits, the kernel releases its lock
    assert!(child.wait().unwrap().success(), "the helper failed");
    assert!(mine.try_lock().unwrap());
}
