//! Debian's /usr/bin/distccmon-text shows a job of ours while it runs: our
//! `binstate_<pid>` files have distcc 3.4's layout.

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn distccmon_text_lists_our_running_job() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("slow_unit.c"), "int s(void) { return 1; }\n").unwrap();
    // The compile waits until the test has seen it listed (or 60 s): no race with the
    // monitor on a busy machine.
    let release = t.path().join("release");
    // The compiler runs as the daemon's unprivileged user, which must see the file.
    fs::set_permissions(
        t.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    fs::write(&release, "").unwrap();
    let slow = t.path().join("slowcc");
    script(
        &slow,
        &format!(
            "case \" $* \" in *\" -E \"*) ;; *) i=0; while [ -e {} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done ;; esac\nexec gcc \"$@\"",
            release.display()
        ),
    );
    let d = Daemon::start(Kind::Debian, t.path(), &["--enable-tcp-insecure"], &[]);
    let dd = t.path().join("dd");
    let mut child = client_cmd(&distcc(), &dd, &format!("127.0.0.1:{}", d.port))
        .args([
            slow.to_str().unwrap(),
            "-c",
            "slow_unit.c",
            "-o",
            "slow_unit.o",
        ])
        .current_dir(t.path())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    while Instant::now() < deadline {
        let out = Command::new("/usr/bin/distccmon-text")
            .env("DISTCC_DIR", &dd)
            .output()
            .unwrap();
        seen = String::from_utf8_lossy(&out.stdout).into_owned();
        if seen.contains("Compile") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = seen
        .lines()
        .find(|l| l.contains("slow_unit.c"))
        .unwrap_or_else(|| panic!("job not listed: {seen:?}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], pid.to_string(), "{line}");
    assert_eq!(words[1], "Compile", "{line}");
    assert_eq!(words[3], "127.0.0.1[0]", "{line}");
    fs::remove_file(&release).unwrap();
    assert!(child.wait().unwrap().success());
    // The state file goes away with the process.
    let left: Vec<_> = fs::read_dir(dd.join("state")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
