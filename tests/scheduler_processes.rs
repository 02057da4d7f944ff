//! Scheduler lock contention across processes, because that is how distcc clients meet in
//! real builds. The other processes are `distcc-test-helper sched-hold` / `sched-work`,
//! which use the same public scheduler API as a distcc client.

use distcc::backoff::Backoff;
use distcc::hosts::parse;
use distcc::scheduler::{LocalKind, Scheduler};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sched(dir: &Path, pause: Duration) -> Scheduler {
    Scheduler::new(dir, Backoff::new(dir, Duration::from_secs(60)), pause)
}

/// Start the helper in `mode` (`sched-hold` or `sched-work`) on lock dir `dir`.
fn spawn_child(dir: &Path, mode: &str, hosts: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_distcc-test-helper"))
        .arg(mode)
        .arg(dir)
        .arg(hosts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn wait_with_deadline(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not finish within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn waiter_wakes_when_another_process_releases() {
    let t = tempfile::tempdir().unwrap();
    let mut child = spawn_child(t.path(), "sched-hold", "a/1");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child died early");
        if line.trim_end() == "locked" {
            break;
        }
    }
    let s = sched(t.path(), Duration::from_secs(60));
    let list = parse("a/1").unwrap();
    assert!(
        s.try_lock_host(&list, &[]).unwrap().is_none(),
        "child holds it"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let (s2, l2) = (s.clone(), list.clone());
    std::thread::spawn(move || {
        let got = s2.lock_host(&l2, &[]).map(|g| g.slot);
        let _ = tx.send(got.map_err(|e| e.to_string()));
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        rx.try_recv().is_err(),
        "waiter must block while the child holds the slot"
    );
    let released = Instant::now();
    drop(child.stdin.take()); // the child exits; the kernel closes and unlocks its file
    // The fallback pause is 60 s: only the inotify wakeup can succeed within 20 s.
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("waiter did not wake");
    assert_eq!(got, Ok(0));
    assert!(released.elapsed() < Duration::from_secs(20));
    let st = wait_with_deadline(&mut child, Duration::from_secs(10));
    assert!(st.success(), "the holder failed: {st}");
}

#[test]
fn processes_never_exceed_the_slot_count() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("marks")).unwrap();
    let hosts = "a/1 b/1";
    let mut kids: Vec<Child> = (0..4)
        .map(|_| spawn_child(t.path(), "sched-work", hosts))
        .collect();
    for k in &mut kids {
        // 4 processes × 3 rounds × 50 ms over 2 slots is ~0.3 s of work; with a 60 s
        // fallback pause a missed wakeup would blow the limit.
        let st = wait_with_deadline(k, Duration::from_secs(40));
        assert!(
            st.success(),
            "a worker saw too many holders or failed: {st}"
        );
    }
}

/// Debian's distcc 3.4 holds `cpu_localhost_0` while it runs a non-compile command; our
/// waiter (60 s fallback pause) must wake as soon as that C client lets go.
#[test]
fn waiter_wakes_when_real_distcc_releases() {
    let distcc = Path::new("/usr/bin/distcc");
    assert!(
        distcc.exists(),
        "this test needs Debian's distcc 3.4: sudo apt-get install -y distcc distcc-pump"
    );
    let t = tempfile::tempdir().unwrap();
    let lock_dir = t.path().join("lock");
    std::fs::create_dir(&lock_dir).unwrap();
    let mut c = Command::new(distcc)
        .args(["sleep", "1"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("DISTCC_DIR", t.path())
        .env("DISTCC_HOSTS", "localhost --localslots=1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = sched(&lock_dir, Duration::from_secs(60));
    let list = parse("--localslots=1 a").unwrap();
    // Wait until the C client holds the slot.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(
            Instant::now() < deadline,
            "distcc never took cpu_localhost_0"
        );
        if lock_dir.join("cpu_localhost_0").exists()
            && s.try_lock_local(&list, LocalKind::Compile)
                .unwrap()
                .is_none()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (s2, l2) = (s.clone(), list.clone());
    std::thread::spawn(move || {
        let got = s2.lock_local(&l2, LocalKind::Compile).map(|g| g.slot);
        let _ = tx.send(got.map_err(|e| e.to_string()));
    });
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("waiter did not wake after distcc released its slot");
    assert_eq!(got, Ok(0));
    wait_with_deadline(&mut c, Duration::from_secs(10));
}
