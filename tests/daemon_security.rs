//! Our daemon under hostile or broken clients: the access list, the compiler whitelist,
//! code-loading arguments, garbage, absurd lengths, stalled clients and hanging compilers.
//! Whatever happens, nothing unvetted runs and the next honest job is served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Daemon, Kind, script, world_writable_dir};
use distcc::protocol::{self, Body, Limits, Payload, Request};

use common::plain_request as request;

/// Send bytes, read until the daemon closes; what it sent back.
fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    exchange_then(port, bytes, false)
}

/// Like [`exchange`]; `hang_up` closes our sending side after the bytes, as a client that
/// gives up mid-request would.
fn exchange_then(port: u16, bytes: &[u8], hang_up: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(bytes);
    if hang_up {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    reply
}

/// A real job succeeds: the daemon is still serving.
fn assert_serves(d: &Daemon) {
    let bytes = exchange(
        d.port,
        &request(
            &["gcc", "-c", "ok.c", "-o", "ok.o"],
            b"int ok(void){return 1;}\n",
        ),
    );
    let (reply, _) = protocol::decode_reply(&bytes, 1, Limits::default())
        .unwrap_or_else(|e| panic!("daemon stopped serving: {e}: {}", d.log_text()));
    assert_eq!(
        reply.status,
        0,
        "{}",
        String::from_utf8_lossy(&reply.stderr)
    );
    assert!(reply.object.starts_with(b"\x7fELF"));
}

#[test]
fn clients_outside_the_access_list_get_nothing() {
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start(Kind::Ours, work.path(), &["--allow", "10.9.9.9/32"], &[]);
    let bytes = exchange(
        d.port,
        &request(&["gcc", "-c", "ok.c", "-o", "ok.o"], b"int x;\n"),
    );
    assert!(
        bytes.is_empty(),
        "a denied client got {} bytes",
        bytes.len()
    );
    let log = common::wait_for_log(&d.log, "denied by access list");
    assert!(log.contains("denied by access list"), "{log}");
    assert!(!log.contains("COMPILE_OK"));
}

#[test]
fn unvetted_commands_run_nothing() {
    let work = tempfile::tempdir().unwrap();
    let shared = world_writable_dir(work.path(), "shared");
    let bad = world_writable_dir(work.path(), "x");
    script(
        &bad.join("cc"),
        &format!("touch {}/cc-ran", shared.display()),
    );
    let d = Daemon::start(Kind::Ours, work.path(), &[], &[]);
    let touch = format!("touch {}/sh-ran", shared.display());
    let cc = bad.join("cc").display().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec!["sh", "-c", &touch, "-c", "x.c", "-o", "x.o"],
        vec![&cc, "-c", "x.c", "-o", "x.o"],
        vec![
            "gcc",
            "-fplugin=/nonexistent/evil.so",
            "-c",
            "x.c",
            "-o",
            "x.o",
        ],
        vec![
            "gcc",
            "-specs=/nonexistent/evil.specs",
            "-c",
            "x.c",
            "-o",
            "x.o",
        ],
    ];
    for argv in &cases {
        let reply = exchange(d.port, &request(argv, b"int x;\n"));
        assert!(
            reply.is_empty(),
            "{argv:?} was answered: nothing may run for it"
        );
    }
    assert!(!shared.join("sh-ran").exists(), "sh ran");
    assert!(!shared.join("cc-ran").exists(), "/tmp/x/cc ran");
    let log = d.log_text();
    assert!(log.contains("sh not in"), "{log}");
    assert!(log.contains("cannot be an absolute path"), "{log}");
    assert!(log.contains("-fplugin="), "{log}");
    assert_eq!(
        log.matches("refused, closing").count(),
        cases.len(),
        "one line per refusal: {log}"
    );
    assert_serves(&d);
}

#[test]
fn garbage_and_absurd_lengths_leave_the_daemon_serving() {
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start(Kind::Ours, work.path(), &[], &[]);
    let mut huge_argv = b"DIST00000001ARGC00000001".to_vec();
    huge_argv.extend_from_slice(b"ARGVffffffff");
    let mut huge_doti = b"DIST00000002ARGC00000001ARGV00000003gcc".to_vec();
    huge_doti.extend_from_slice(b"DOTIfffffff0");
    let cases: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        b"DIST00000009".to_vec(),
        huge_argv,
        huge_doti,
        b"DIST0000000".to_vec(), // truncated, then closed
        (0u8..=255).cycle().take(5000).collect(),
    ];
    for c in &cases {
        assert!(exchange_then(d.port, c, true).is_empty());
    }
    assert_serves(&d);
}

#[test]
fn a_stalled_client_holds_no_slot() {
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        Kind::Ours,
        work.path(),
        &["--jobs", "1"],
        &[("DISTCC_IO_TIMEOUT", "2")],
    );
    let mut stalled = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    stalled.write_all(b"DIST00000001ARGC0000000").unwrap(); // never finished
    let start = Instant::now();
    assert_serves(&d);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the honest job waited for the stalled one"
    );
    // And the stalled one is dropped after DISTCC_IO_TIMEOUT.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        stalled.read(&mut buf).unwrap_or(0),
        0,
        "stalled client is disconnected"
    );
    assert!(d.log_text().contains("timed out"), "{}", d.log_text());
}

/// Our daemon whitelisting `slowcc`, a compiler that writes its pid to `<flag>/pid` and
/// hangs; returns the daemon and the flag dir. Callers pass `--no-sandbox`: the flag dir
/// is outside the job dir (tests/daemon_sandbox.rs kills a sandboxed one).
fn daemon_with_hanging_compiler(work: &Path, extra: &[&str]) -> (Daemon, std::path::PathBuf) {
    let masq = world_writable_dir(work, "masq");
    let flag = world_writable_dir(work, "flag");
    script(
        &masq.join("slowcc"),
        &format!("echo $$ > {}/pid; exec sleep 60", flag.display()),
    );
    let path = format!("{}:/usr/bin:/bin", masq.display());
    let d = Daemon::start(
        Kind::Ours,
        work,
        extra,
        &[
            ("DISTCCD_MASQUERADE_DIRS", masq.to_str().unwrap()),
            ("DISTCCD_PATH", &path),
        ],
    );
    (d, flag)
}

#[test]
fn job_lifetime_kills_a_hanging_compiler() {
    let work = tempfile::tempdir().unwrap();
    let (d, flag) =
        daemon_with_hanging_compiler(work.path(), &["--job-lifetime", "1", "--no-sandbox"]);
    let start = Instant::now();
    let bytes = exchange(
        d.port,
        &request(&["slowcc", "-c", "x.c", "-o", "x.o"], b"int x;\n"),
    );
    let (reply, _) = protocol::decode_reply(&bytes, 1, Limits::default()).unwrap();
    assert_eq!(reply.status >> 8, 118, "timeout status");
    assert!(start.elapsed() < Duration::from_secs(10));
    let pid: i32 = std::fs::read_to_string(flag.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The reply came after the kill; the kernel may take a moment to reap it (its parent
    // is the daemon, which waits for it).
    let deadline = Instant::now() + Duration::from_secs(10);
    // SAFETY: probing a pid with signal 0.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(
            Instant::now() < deadline,
            "the hanging compiler {pid} was not killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = common::wait_for_log(&d.log, "COMPILE_TIMEOUT");
    assert!(log.contains("COMPILE_TIMEOUT"), "{log}");
}

#[test]
fn a_client_that_leaves_kills_its_compiler() {
    let work = tempfile::tempdir().unwrap();
    let (d, flag) = daemon_with_hanging_compiler(work.path(), &["--no-sandbox"]);
    let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.write_all(&request(&["slowcc", "-c", "x.c", "-o", "x.o"], b"int x;\n"))
        .unwrap();
    let pid_file = flag.join("pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pid_file.exists() {
        assert!(
            Instant::now() < deadline,
            "compiler never started: {}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(s);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // SAFETY: probing a pid with signal 0.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(Instant::now() < deadline, "compiler survived its client");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = common::wait_for_log(&d.log, "CLI_DISCONN");
    assert!(log.contains("CLI_DISCONN"), "{log}");
}

#[test]
fn bad_options_exit_101_like_distccd() {
    for (args, msg) in [
        (&["--bogus"][..], "distccd: ERROR: --bogus: unknown option"),
        (&["--port", "80000"][..], "port number out of range"),
        (&["--jobs", "lots"][..], "--jobs"),
    ] {
        let out = std::process::Command::new(common::distcc())
            .arg("distccd")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(101), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(msg),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = std::process::Command::new(common::distcc())
        .args(["distccd", "--version"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("distccd "), "{text}");
    assert!(
        text.contains("(protocols 1, 2 and 3) (default port 3632)"),
        "{text}"
    );
}

#[test]
fn pump_requests_cannot_write_outside_their_root() {
    use distcc::protocol::{FileEntry, FileKind};
    let work = tempfile::tempdir().unwrap();
    let outside = world_writable_dir(work.path(), "outside");
    let d = Daemon::start(Kind::Ours, work.path(), &[], &[]);
    let file = |name: &str| FileEntry {
        name: name.into(),
        kind: FileKind::File(Payload::Plain(b"int x;\n".to_vec())),
    };
    let link = |name: &str, t: &str| FileEntry {
        name: name.into(),
        kind: FileKind::Link(t.into()),
    };
    let escape = format!("{}{}", "../".repeat(30), outside.display());
    let attacks: Vec<Vec<FileEntry>> = vec![
        vec![
            file("/w/a.c"),
            file("/../../../../../../../../../..//tmp/x"),
        ],
        vec![
            file("/w/a.c"),
            link("/w/etc", "/etc"),
            file("/w/etc/passwd-distcc-test"),
        ],
        vec![
            file("/w/a.c"),
            link("/w/out", &escape),
            file("/w/out/pwned"),
        ],
        vec![
            file("/w/a.c"),
            link("/w/out", outside.to_str().unwrap()),
            file("/w/out/pwned"),
        ],
    ];
    for files in attacks {
        let req = protocol::encode_request(&Request {
            version: 3,
            cwd: Some("/w".into()),
            argv: vec![
                "gcc".into(),
                "-c".into(),
                "a.c".into(),
                "-o".into(),
                "a.o".into(),
            ],
            body: Body::Files(files),
        })
        .unwrap();
        assert!(
            exchange(d.port, &req).is_empty(),
            "an escaping request was served"
        );
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "something was written outside"
    );
    assert!(!Path::new("/etc/passwd-distcc-test").exists());
    assert!(
        !Path::new("/tmp/x").exists()
            || std::fs::read("/tmp/x")
                .map(|b| b != b"int x;\n")
                .unwrap_or(true)
    );
    assert_serves(&d);
}

#[test]
fn compilers_keep_their_temporaries_in_the_job_dir() {
    let work = tempfile::tempdir().unwrap();
    let masq = world_writable_dir(work.path(), "masq");
    let dtmp = world_writable_dir(work.path(), "dtmp");
    script(
        &masq.join("tmpcc"),
        "echo \"TMPDIR=$TMPDIR\" >&2; exec gcc \"$@\"",
    );
    let path = format!("{}:/usr/bin:/bin", masq.display());
    let d = Daemon::start(
        Kind::Ours,
        work.path(),
        &[],
        &[
            ("DISTCCD_MASQUERADE_DIRS", masq.to_str().unwrap()),
            ("DISTCCD_PATH", &path),
            ("TMPDIR", dtmp.to_str().unwrap()),
        ],
    );
    let bytes = exchange(
        d.port,
        &request(&["tmpcc", "-c", "t.c", "-o", "t.o"], b"int t;\n"),
    );
    let (reply, _) = protocol::decode_reply(&bytes, 1, Limits::default()).unwrap();
    assert_eq!(reply.status, 0);
    let err = String::from_utf8_lossy(&reply.stderr);
    let tmpdir = err
        .lines()
        .find_map(|l| l.strip_prefix("TMPDIR="))
        .unwrap_or_else(|| panic!("no TMPDIR line: {err}"));
    let job_dir = Path::new(tmpdir);
    assert_eq!(
        job_dir.parent(),
        Some(dtmp.as_path()),
        "the compiler's TMPDIR is the job's own dir inside the daemon's: {tmpdir}"
    );
}
