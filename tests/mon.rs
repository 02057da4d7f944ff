//! distccmon-text: ours prints exactly what Debian's prints, for state files written by our
//! client, by Debian's distcc 3.4, and by hand.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Daemon, Kind, client_cmd, distcc};
use distcc::state::{Phase, StateFile, TaskState};

fn monitor(program: &Path, distcc_dir: &Path, args: &[&str]) -> Output {
    let mut cmd = if program == Path::new("/usr/bin/distccmon-text") {
        Command::new(program)
    } else {
        let mut c = Command::new(program);
        c.arg("distccmon-text");
        c
    };
    cmd.args(args)
        .env("DISTCC_DIR", distcc_dir)
        .output()
        .unwrap()
}

fn both(distcc_dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let ours = monitor(&distcc(), distcc_dir, &[]);
    let theirs = monitor(Path::new("/usr/bin/distccmon-text"), distcc_dir, &[]);
    assert!(ours.status.success() && theirs.status.success());
    (ours.stdout, theirs.stdout)
}

#[test]
fn hand_made_and_our_state_files_list_identically() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let pid = std::process::id();
    for phase in 0..9 {
        let s = TaskState {
            pid: u64::from(pid),
            file: format!("a_source_file_with_a_long_name_{phase}.c").into_bytes(),
            host: format!("host{}.with.a.rather.long.domain", phase % 3).into_bytes(),
            slot: 8 - phase,
            phase,
        };
        std::fs::write(state.join(format!("binstate_{}", 1000 + phase)), s.encode()).unwrap();
    }
    // A dead process's record, a foreign file and a short one are skipped by both.
    let dead = TaskState {
        pid: 999_999_999,
        file: b"x.c".to_vec(),
        host: b"h".to_vec(),
        slot: 0,
        phase: 5,
    };
    std::fs::write(state.join("binstate_dead"), dead.encode()).unwrap();
    std::fs::write(state.join("notes.txt"), b"hello").unwrap();
    std::fs::write(state.join("binstate_short"), b"abc").unwrap();
    let mut ours = StateFile::new(&state, pid);
    ours.set(
        Phase::Cpp,
        Some("/some/dir/main.c"),
        Some("localhost"),
        Some(1),
    );
    ours.set(Phase::Compile, None, Some("192.168.0.2"), Some(3));
    let (a, b) = both(dir.path());
    assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
    assert!(
        String::from_utf8_lossy(&a).contains("  Compile     main.c"),
        "{}",
        String::from_utf8_lossy(&a)
    );
    assert_eq!(
        a.iter().filter(|c| **c == b'\n').count(),
        8 + 1 + 1,
        "8 live jobs + ours + blank line"
    );
}

#[test]
fn running_jobs_of_both_clients_list_identically() {
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start(Kind::Debian, work.path(), &[], &[]);
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // A translation unit that takes gcc a few seconds at -O2.
    let mut big = String::new();
    for i in 0..3000 {
        big.push_str(&format!("int f{i}(int x) {{ int y = x * {i}; for (int j = 0; j < x; j++) y += j ^ {i}; return y; }}\n"));
    }
    std::fs::write(src.join("big.c"), &big).unwrap();
    std::fs::write(src.join("big2.c"), &big).unwrap();
    let dd = work.path().join("dd");
    let hosts = format!("127.0.0.1:{}/4", d.port);
    let mut theirs = client_cmd(Path::new("/usr/bin/distcc"), &dd, &hosts)
        .current_dir(&src)
        .args(["gcc", "-O2", "-c", "big.c", "-o", "big.o"])
        .spawn()
        .unwrap();
    let mut ours = client_cmd(&distcc(), &dd, &hosts)
        .current_dir(&src)
        .args(["gcc", "-O2", "-c", "big2.c", "-o", "big2.o"])
        .spawn()
        .unwrap();
    // Wait until both clients have a state file, then compare the two monitors.
    let state = dd.join("state");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut compared = false;
    while Instant::now() < deadline {
        let n = std::fs::read_dir(&state).map(|r| r.count()).unwrap_or(0);
        if n >= 2 {
            let (a, b) = both(&dd);
            let text = String::from_utf8_lossy(&a).into_owned();
            if a == b && text.contains("big.c") && text.contains("big2.c") {
                compared = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(theirs.wait().unwrap().success());
    assert!(ours.wait().unwrap().success());
    assert!(
        compared,
        "never saw both jobs listed identically by both monitors"
    );
}

#[test]
fn usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["1", "2"][..], &["soon"][..], &["1x"][..]] {
        let o = monitor(&distcc(), dir.path(), args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stderr).starts_with("usage: distccmon-text [DELAY]"));
    }
    // With a delay it repeats: a second poll comes (a blank line each, no jobs here).
    let mut child = Command::new(distcc())
        .args(["distccmon-text", "0.2"])
        .env("DISTCC_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while seen.iter().filter(|&&b| b == b'\n').count() < 2 {
            match std::io::Read::read(&mut stdout, &mut byte) {
                Ok(1) => seen.push(byte[0]),
                _ => break,
            }
        }
        let _ = tx.send(seen);
    });
    let seen = rx.recv_timeout(Duration::from_secs(20));
    child.kill().unwrap();
    let _ = child.wait();
    let seen = seen.expect("a second poll within 20 s");
    assert_eq!(seen, b"\n\n", "two blank-line polls");
}
