//! Scheduler tests. Contention between our own processes (how distcc clients meet in real
//! builds) is tested in tests/scheduler_processes.rs, with the distcc-test-helper binary as
//! the other process; here only threads of this process and Debian's distcc 3.4.

use super::*;
use crate::hosts::parse;
use crate::settings::DEFAULT_PAUSE;

fn sched(dir: &Path, pause: Duration) -> Scheduler {
    Scheduler::new(dir, Backoff::new(dir, Duration::from_secs(60)), pause)
}

#[test]
fn fills_slot_zero_of_every_host_first() {
    let t = tempfile::tempdir().unwrap();
    let s = sched(t.path(), DEFAULT_PAUSE);
    let list = parse("a/2 b/3 c/1").unwrap();
    let mut held = Vec::new();
    let mut got = Vec::new();
    while let Some(slot) = s.try_lock_host(&list, &[]).unwrap() {
        got.push((slot.host(&list).hostname().to_string(), slot.slot));
        held.push(slot);
    }
    let want: Vec<(String, u32)> = [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("b", 2)]
        .iter()
        .map(|(h, n)| (h.to_string(), *n))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        held[0].lock_path(),
        t.path().join("cpu_tcp_a_3632_0").as_path()
    );
    // Releasing one slot makes exactly that one available again.
    let b1 = held.remove(4);
    assert_eq!((b1.host_index, b1.slot), (1, 1));
    drop(b1);
    let again = s.try_lock_host(&list, &[]).unwrap().unwrap();
    assert_eq!((again.host_index, again.slot), (1, 1));
}

#[test]
fn skips_down_excluded_and_backed_off_hosts() {
    let t = tempfile::tempdir().unwrap();
    let s = sched(t.path(), DEFAULT_PAUSE);
    let list = parse("a,down b c @d").unwrap();
    let first = s.try_lock_host(&list, &[]).unwrap().unwrap();
    assert_eq!(first.host_index, 1, "a is down");
    drop(first);
    let x = s.try_lock_host(&list, &[1]).unwrap().unwrap();
    assert_eq!(x.host_index, 2, "b is excluded");
    drop(x);
    s.backoff().mark("tcp_b_3632").unwrap();
    s.backoff().mark("tcp_c_3632").unwrap();
    let x = s.try_lock_host(&list, &[]).unwrap().unwrap();
    assert_eq!(x.host_index, 3, "b and c backed off");
    assert_eq!(x.lock_path(), t.path().join("cpu_ssh_d_0").as_path());
    drop(x);
    assert!(matches!(
        s.try_lock_host(&list, &[3]),
        Err(SchedError::NoUsableHost)
    ));
    // Waiting with nothing usable must not hang.
    assert!(matches!(
        s.lock_host(&list, &[3]),
        Err(SchedError::NoUsableHost)
    ));
}

#[test]
fn local_pools_share_localhost_files() {
    let t = tempfile::tempdir().unwrap();
    let s = sched(t.path(), DEFAULT_PAUSE);
    let list = parse("--localslots=2 --localslots_cpp=3 localhost/1 a").unwrap();
    let a = s
        .try_lock_local(&list, LocalKind::Compile)
        .unwrap()
        .unwrap();
    let b = s
        .try_lock_local(&list, LocalKind::Compile)
        .unwrap()
        .unwrap();
    assert_eq!((a.slot, b.slot), (0, 1));
    assert_eq!(a.lock_path(), t.path().join("cpu_localhost_0").as_path());
    assert!(
        s.try_lock_local(&list, LocalKind::Compile)
            .unwrap()
            .is_none()
    );
    let c = s.try_lock_local(&list, LocalKind::Cpp).unwrap().unwrap();
    assert_eq!(c.slot, 2);
    // localhost's only slot (cpu_localhost_0) is taken by the local pool, so a goes first.
    let h = s.try_lock_host(&list, &[]).unwrap().unwrap();
    assert_eq!(h.host(&list).hostname(), "a");
    assert!(s.try_lock_local(&list, LocalKind::Cpp).unwrap().is_none());
}

#[test]
fn waiter_in_another_thread_wakes_on_release() {
    let t = tempfile::tempdir().unwrap();
    // A 60 s fallback pause: only the inotify wakeup can make this finish quickly.
    let s = sched(t.path(), Duration::from_secs(60));
    let list = parse("a/1").unwrap();
    let held = s.try_lock_host(&list, &[]).unwrap().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (s2, l2) = (s.clone(), list.clone());
    std::thread::spawn(move || {
        let got = s2.lock_host(&l2, &[]).map(|g| g.slot);
        let _ = tx.send(got.map_err(|e| e.to_string()));
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        rx.try_recv().is_err(),
        "the waiter must block while the slot is held"
    );
    drop(held); // closes our write-opened lock file: IN_CLOSE_WRITE
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("waiter did not wake (inotify wakeup missing?)");
    assert_eq!(got, Ok(0));
}

// Tests with other processes (helper binaries, Debian's distcc): tests/scheduler_processes.rs.
