//! The compiler sandbox with real processes: our daemon, started as root, drops to its
//! persona and runs each compiler in its own user, mount and network namespaces. A
//! "compiler" script tries to reach a listener on 127.0.0.1, write outside its job dir and
//! read a file Landlock does not allow; in the sandbox all three fail, with `--no-sandbox`
//! the first two succeed. A real gcc still compiles, byte for byte as locally.
//!
//! These tests start the daemon as root (to see the sandbox made by the unprivileged
//! persona, as a system daemon does) and need unprivileged user namespaces; they fail,
//! never skip, where either is missing.

mod common;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use common::{Daemon, Kind, exchange, plain_request as request, script, world_writable_dir};
use distcc::protocol::{self, Limits, Reply};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() == 0 };
    assert!(
        root,
        "these tests need root: run `make test` as root (as CI does)"
    );
}

/// A work dir the daemon's persona can traverse, with its places.
struct Setup {
    _work: tempfile::TempDir,
    work: PathBuf,
    /// The daemon's TMPDIR: job dirs go here.
    dtmp: PathBuf,
    /// World-writable, outside any job dir: the script tries to write a marker here.
    outside: PathBuf,
    /// A world-readable file in a dir not on the compiler's read list.
    secret: PathBuf,
    /// The script that plays the compiler.
    probe: PathBuf,
    listener: TcpListener,
}

fn setup() -> Setup {
    require_root();
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path().to_path_buf();
    fs::set_permissions(&work, fs::Permissions::from_mode(0o755)).unwrap();
    let dtmp = world_writable_dir(&work, "dtmp");
    let outside = world_writable_dir(&work, "outside");
    let hidden = work.join("hidden");
    fs::create_dir(&hidden).unwrap();
    fs::set_permissions(&hidden, fs::Permissions::from_mode(0o755)).unwrap();
    let secret = hidden.join("secret.txt");
    fs::write(&secret, "the secret\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
    let bin = work.join("bin");
    fs::create_dir(&bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = bin.join("probecc");
    // Each attempt reports on stdout; a control read of /etc/hostname shows that reading
    // in general still works, so a refused read means the confinement.
    script(
        &probe,
        &format!(
            r#"
if bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2>/dev/null; then echo net:yes; else echo net:no; fi
if echo x > {outside}/marker 2>/dev/null; then echo write:yes; else echo write:no; fi
if cat {secret} >/dev/null 2>&1; then echo read:yes; else echo read:no; fi
if cat /etc/hostname >/dev/null 2>&1; then echo control:yes; else echo control:no; fi
echo uid:$(id -u)
exit 0"#,
            outside = outside.display(),
            secret = secret.display(),
        ),
    );
    Setup {
        _work: work_dir,
        work,
        dtmp,
        outside,
        secret,
        probe,
        listener,
    }
}

fn start(s: &Setup, extra: &[&str]) -> Daemon {
    let mut opts = vec!["--enable-tcp-insecure"];
    opts.extend_from_slice(extra);
    Daemon::start(
        Kind::Ours,
        &s.work,
        &opts,
        &[
            ("TMPDIR", s.dtmp.to_str().unwrap()),
            ("DISTCCD_PATH", "/usr/bin:/bin"),
        ],
    )
}

fn run_probe(s: &Setup, d: &Daemon) -> (Reply, String) {
    let probe = s.probe.to_str().unwrap();
    let bytes = exchange(
        d.port,
        &request(&[probe, "-c", "p.c", "-o", "p.o"], b"int p;\n"),
    );
    let (reply, _) = protocol::decode_reply(&bytes, 1, Limits::default())
        .unwrap_or_else(|e| panic!("no reply: {e}: {}", d.log_text()));
    let out = String::from_utf8_lossy(&reply.stdout).into_owned();
    (reply, out)
}

/// Did anything connect to the listener? (A connection the kernel completed waits in its
/// backlog; the script has exited by now.)
fn connected(l: &TcpListener) -> bool {
    l.set_nonblocking(true).unwrap();
    l.accept().is_ok()
}

/// The uid of the persona a daemon started as root becomes: the first of its defaults
/// that exists.
fn persona_uid() -> String {
    for name in ["distcc", "distccd", "nobody"] {
        let out = Command::new("id").args(["-u", name]).output().unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
    }
    "65534".to_owned()
}

#[test]
fn a_sandboxed_compiler_reaches_no_network_and_writes_only_its_job_dir() {
    let s = setup();
    let d = start(&s, &[]);
    let log = common::wait_for_log(&d.log, "namespace sandbox");
    assert!(
        log.contains("compilers run in a namespace sandbox (no network, system read-only"),
        "the daemon says once at start that it sandboxes compilers: {log}"
    );
    let (reply, out) = run_probe(&s, &d);
    assert_eq!(
        reply.status,
        0,
        "{out} {}",
        String::from_utf8_lossy(&reply.stderr)
    );
    assert!(out.contains("control:yes"), "{out}");
    assert!(out.contains("net:no"), "no network inside: {out}");
    assert!(!connected(&s.listener), "nothing reached the listener");
    assert!(out.contains("write:no"), "{out}");
    assert!(
        !s.outside.join("marker").exists(),
        "nothing written outside the job dir"
    );
    assert!(
        out.contains("read:no"),
        "{} unreadable: {out}",
        s.secret.display()
    );
    // The persona keeps its uid inside (mapped to itself), so its files are its own.
    assert!(out.contains(&format!("uid:{}", persona_uid())), "{out}");
    assert_eq!(
        d.settled_count("without its namespace sandbox"),
        0,
        "{}",
        d.log_text()
    );
}

#[test]
fn without_the_sandbox_the_same_compiler_reaches_both() {
    let s = setup();
    let d = start(&s, &["--no-sandbox"]);
    let log = common::wait_for_log(&d.log, "--no-sandbox");
    assert!(
        log.contains("--no-sandbox: compilers run without a namespace sandbox"),
        "{log}"
    );
    let (reply, out) = run_probe(&s, &d);
    assert_eq!(reply.status, 0, "{out}");
    assert!(out.contains("net:yes"), "{out}");
    assert!(connected(&s.listener), "the script reached the listener");
    assert!(out.contains("write:yes"), "{out}");
    assert_eq!(fs::read_to_string(s.outside.join("marker")).unwrap(), "x\n");
    // Landlock's read confinement is a layer of its own: it stays.
    assert!(out.contains("read:no"), "{out}");
}

#[test]
fn gcc_in_the_sandbox_makes_the_same_object_as_locally() {
    let s = setup();
    let d = start(&s, &[]);
    let log = common::wait_for_log(&d.log, "namespace sandbox");
    assert!(
        log.contains("compilers run in a namespace sandbox ("),
        "{log}"
    );
    let source: &[u8] =
        b"# 1 \"t.c\"\nint twice(int x) { return 2 * x; }\nconst char *s = \"sandboxed\";\n";
    let bytes = exchange(
        d.port,
        &request(&["gcc", "-O2", "-c", "t.c", "-o", "t.o"], source),
    );
    let (reply, _) = protocol::decode_reply(&bytes, 1, Limits::default())
        .unwrap_or_else(|e| panic!("no reply: {e}: {}", d.log_text()));
    assert_eq!(
        reply.status,
        0,
        "{}",
        String::from_utf8_lossy(&reply.stderr)
    );
    let local = s.work.join("local");
    fs::create_dir(&local).unwrap();
    fs::write(local.join("t.i"), source).unwrap();
    let st = Command::new("gcc")
        .args(["-O2", "-c", "t.i", "-o", "t.o"])
        .current_dir(&local)
        .status()
        .unwrap();
    assert!(st.success());
    let want = fs::read(local.join("t.o")).unwrap();
    assert!(
        reply.object == want,
        "the sandboxed object differs from a local one ({} vs {} bytes)",
        reply.object.len(),
        want.len()
    );
    assert_eq!(
        d.settled_count("without its namespace sandbox"),
        0,
        "{}",
        d.log_text()
    );
    // The job dir is gone afterwards, as without the sandbox.
    assert_eq!(
        fs::read_dir(&s.dtmp).unwrap().count(),
        0,
        "job dirs left behind"
    );
}

#[test]
fn a_job_whose_sandbox_cannot_be_made_runs_without_it() {
    let s = setup();
    // A ccache dir is bound writable into each compiler's namespace; /dev has mounts
    // beneath it, which a non-recursive bind in a user namespace may not leave behind, so
    // every job's sandbox fails (the start-up probe binds only TMPDIR, and succeeds).
    let d = Daemon::start(
        Kind::Ours,
        &s.work,
        &["--enable-tcp-insecure"],
        &[
            ("TMPDIR", s.dtmp.to_str().unwrap()),
            ("DISTCCD_PATH", "/usr/bin:/bin"),
            ("CCACHE_DIR", "/dev"),
        ],
    );
    let log = common::wait_for_log(&d.log, "namespace sandbox");
    assert!(
        log.contains("compilers run in a namespace sandbox ("),
        "{log}"
    );
    for _ in 0..2 {
        let (reply, out) = run_probe(&s, &d);
        assert_eq!(reply.status, 0, "the job still ran: {out} {}", d.log_text());
        assert!(out.contains("write:yes"), "without the sandbox: {out}");
    }
    assert_eq!(
        d.settled_count("a compiler ran without its namespace sandbox"),
        1,
        "warned once, not per job: {}",
        d.log_text()
    );
}

/// Processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

#[test]
fn a_sandboxed_compiler_that_hangs_is_still_killed() {
    let s = setup();
    let hang = s.work.join("bin/hangcc");
    // An odd duration names this test's sleep among the machine's processes.
    script(&hang, "exec sleep 4321.5");
    let d = start(&s, &["--job-lifetime", "1"]);
    let log = common::wait_for_log(&d.log, "namespace sandbox");
    assert!(
        log.contains("compilers run in a namespace sandbox ("),
        "{log}"
    );
    let bytes = exchange(
        d.port,
        &request(
            &[hang.to_str().unwrap(), "-c", "h.c", "-o", "h.o"],
            b"int h;\n",
        ),
    );
    let (reply, _) = protocol::decode_reply(&bytes, 1, Limits::default()).unwrap();
    assert_eq!(reply.status >> 8, 118, "timeout status");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !processes_running(&["sleep", "4321.5"]).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandboxed compiler outlived its job"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Helper for the report: `SANDBOX_BENCH=N cargo test --release --test daemon_sandbox
/// -- --ignored --nocapture` times N no-op jobs with and without the sandbox.
#[test]
#[ignore]
fn cost_per_job() {
    let n: usize = std::env::var("SANDBOX_BENCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let s = setup();
    let noop = s.work.join("bin/noopcc");
    script(&noop, "exit 0");
    let noop = noop.to_str().unwrap().to_owned();
    for extra in [&[][..], &["--no-sandbox"][..]] {
        let d = start(&s, extra);
        let cpu = |d: &Daemon| {
            let stat = fs::read_to_string(format!("/proc/{}/stat", d.child.id())).unwrap();
            let f: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            // utime, stime, cutime, cstime (fields 14–17, here 11–14 after the name).
            f[11..15]
                .iter()
                .map(|v| v.parse::<u64>().unwrap())
                .sum::<u64>()
        };
        let req = request(&[&noop, "-c", "n.c", "-o", "n.o"], b"int n;\n");
        let before = cpu(&d);
        let t = std::time::Instant::now();
        for _ in 0..n {
            let (reply, _) =
                protocol::decode_reply(&exchange(d.port, &req), 1, Limits::default()).unwrap();
            assert_eq!(reply.status, 0);
        }
        let wall = t.elapsed();
        let ticks = cpu(&d) - before;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        println!(
            "{}: {n} jobs, {:.2} ms wall per job, {:.2} ms daemon+children CPU per job",
            if extra.is_empty() {
                "sandbox"
            } else {
                "--no-sandbox"
            },
            wall.as_secs_f64() * 1000.0 / n as f64,
            ticks as f64 / hz * 1000.0 / n as f64,
        );
    }
}
