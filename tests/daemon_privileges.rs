//! Our daemon's trust boundaries with real processes: it never serves as root, `--inetd`
//! applies the same default access list as daemon mode, a request cannot forge log lines
//! or stats counters, and a job that panics is logged as refused while the daemon serves on.
//!
//! Several tests need root (they start the daemon as root to see it drop privileges, or
//! create a network namespace); they say so and do nothing otherwise.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, Kind, distcc, free_port, script, wait_for_log, world_writable_dir};
use distcc::protocol::{self, Limits};

/// These tests start distccd as root (as a system daemon runs) and make network
/// namespaces; the project's machines and CI are root. Never skip silently.
fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() == 0 };
    assert!(
        root,
        "these tests need root: run `make test` as root (as CI does)"
    );
}

use common::{exchange, plain_request as request};

/// Wait (up to 10 s) for a child to exit; kills it and fails if it does not.
fn exit_code_within(child: &mut Child, what: &str) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: distccd still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start our distccd in the foreground with `extra`, stderr captured to a file.
fn start_foreground(dir: &Path, extra: &[&str]) -> (Child, std::path::PathBuf) {
    let err = dir.join(format!("stderr{}", free_port()));
    let child = Command::new(distcc())
        .arg("distccd")
        .args([
            "--daemon",
            "--no-detach",
            "--log-stderr",
            "--listen",
            "127.0.0.1",
        ])
        .args(["--port", &free_port().to_string(), "--allow", "127.0.0.1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    (child, err)
}

#[test]
fn user_root_is_refused_with_the_setuid_code() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let (mut child, err) = start_foreground(work.path(), &["--user", "root"]);
    let code = exit_code_within(&mut child, "--user root");
    let text = std::fs::read_to_string(&err).unwrap();
    assert_eq!(code, Some(112), "{text}");
    assert!(text.contains("root"), "the message says why: {text}");
}

#[test]
fn an_unknown_user_is_refused_with_the_setuid_code() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let (mut child, err) = start_foreground(work.path(), &["--user", "no-such-user-distcc-test"]);
    let code = exit_code_within(&mut child, "--user no-such-user");
    let text = std::fs::read_to_string(&err).unwrap();
    assert_eq!(code, Some(112), "{text}");
    assert!(text.contains("no-such-user-distcc-test"), "{text}");
}

/// The first of distcc, distccd, nobody that exists here.
fn expected_persona() -> String {
    for name in ["distcc", "distccd", "nobody"] {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: getpwnam with a valid C string; only the null check is used.
        if !unsafe { libc::getpwnam(c.as_ptr()) }.is_null() {
            return name.to_owned();
        }
    }
    "65534".to_owned()
}

#[test]
fn root_without_user_drops_to_the_distcc_persona() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    // The dropped daemon must be able to reach the compiler script.
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let masq = world_writable_dir(work.path(), "masq");
    let flag = world_writable_dir(work.path(), "flag");
    script(
        &masq.join("whocc"),
        &format!(
            "id -un > {0}/user.tmp; id -u >> {0}/user.tmp; mv {0}/user.tmp {0}/user\n\
             for a; do case $a in -o) o=1;; *) [ -n \"$o\" ] && : > \"$a\"; o=;; esac; done",
            flag.display()
        ),
    );
    let path = format!("{}:/usr/bin:/bin", masq.display());
    let d = Daemon::start(
        Kind::Ours,
        work.path(),
        &["--no-sandbox"], // whocc writes outside its job dir
        &[
            ("DISTCCD_MASQUERADE_DIRS", masq.to_str().unwrap()),
            ("DISTCCD_PATH", &path),
        ],
    );
    exchange(
        d.port,
        &request(&["whocc", "-c", "x.c", "-o", "x.o"], b"int x;\n"),
    );
    let text = std::fs::read_to_string(flag.join("user"))
        .unwrap_or_else(|e| panic!("the compiler did not run ({e}): {}", d.log_text()));
    let mut lines = text.lines();
    let (user, uid) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    assert_ne!(uid, "0", "the compiler ran as root");
    let want = expected_persona();
    assert!(
        user == want || uid == want,
        "compiler ran as {user} ({uid}), expected {want}"
    );
}

/// Run `f` in a fresh network namespace (on its own thread: unshare(CLONE_NEWNET) moves
/// only the calling thread) whose loopback device is up and also carries 10.1.2.3 and
/// fd00::5 — addresses that are not loopback addresses, but stay inside the namespace.
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare on this thread only; no memory effects.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "10.1.2.3/32", "dev", "lo"][..],
            &["-6", "addr", "add", "fd00::5/128", "dev", "lo", "nodad"][..],
        ] {
            let st = Command::new("ip").args(args).status().unwrap();
            assert!(st.success(), "ip {args:?}");
        }
        f()
    })
    .join()
    .unwrap()
}

/// Connect from `ip` to `ip`, hand the accepted socket to `distccd --inetd` (as inetd
/// would), send a compile request; the reply bytes and distccd's exit code.
fn inetd_exchange(ip: IpAddr, extra: &[&str]) -> (Vec<u8>, Option<i32>, String) {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), ip);
    let sock: OwnedFd = server.into();
    let out = sock.try_clone().unwrap();
    let errf = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(distcc())
        .args(["distccd", "--inetd", "--log-stderr"])
        .args(extra)
        .stdin(Stdio::from(sock))
        .stdout(Stdio::from(out))
        .stderr(errf.reopen().unwrap())
        .spawn()
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = client.write_all(&request(
        &["gcc", "-c", "ok.c", "-o", "ok.o"],
        b"int ok(void){return 1;}\n",
    ));
    let mut reply = Vec::new();
    let _ = client.read_to_end(&mut reply);
    let code = exit_code_within(&mut child, "--inetd");
    let log = std::fs::read_to_string(errf.path()).unwrap_or_default();
    (reply, code, log)
}

#[test]
fn inetd_without_allow_serves_loopback_only() {
    require_root();
    in_netns(|| {
        for ip in ["10.1.2.3", "fd00::5"] {
            let (reply, code, log) = inetd_exchange(ip.parse().unwrap(), &[]);
            assert!(reply.is_empty(), "{ip} was served: {log}");
            assert_eq!(code, Some(113), "{ip}: {log}");
            assert!(log.contains("denied by access list"), "{ip}: {log}");
        }
        // The same peer is served when the access list names it.
        let (reply, code, log) =
            inetd_exchange("10.1.2.3".parse().unwrap(), &["--allow", "10.0.0.0/8"]);
        assert_eq!(code, Some(0), "{log}");
        let (r, _) = protocol::decode_reply(&reply, 1, Limits::default()).unwrap();
        assert_eq!(r.status, 0, "{log}");
        // And loopback is served without --allow.
        let (reply, code, log) = inetd_exchange("127.0.0.1".parse().unwrap(), &[]);
        assert_eq!(code, Some(0), "{log}");
        let (r, _) = protocol::decode_reply(&reply, 1, Limits::default()).unwrap();
        assert_eq!(r.status, 0, "{log}");
        assert!(r.object.starts_with(b"\x7fELF"));
    });
}

/// The stats page's text.
fn stats_page(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut page = String::new();
    let _ = s.read_to_string(&mut page);
    page
}

const FORGED: &str =
    "client: 6.6.6.6:666 COMPILE_OK exit:0 sig:0 core:0 ret:0 time:1ms gcc forged.c";

#[test]
fn request_text_cannot_forge_log_lines_or_stats_counters() {
    let work = tempfile::tempdir().unwrap();
    let stats_port = free_port();
    let d = Daemon::start(
        Kind::Ours,
        work.path(),
        &["--stats", "--stats-port", &stats_port.to_string()],
        &[],
    );
    // A source name carrying a forged summary line and a forged counter.
    let name = format!("x.c\ndcc_compile_ok 999\n{FORGED}");
    let reply = exchange(
        d.port,
        &request(&["gcc", "-c", &name, "-o", "x.o"], b"int x;\n"),
    );
    let (r, _) = protocol::decode_reply(&reply, 1, Limits::default())
        .unwrap_or_else(|e| panic!("{e}: {}", d.log_text()));
    assert_eq!(r.status, 0);
    // A compiler name carrying one (refused by the whitelist, but logged).
    let cc = format!("gcc\n{FORGED}");
    exchange(
        d.port,
        &request(&[&cc, "-c", "y.c", "-o", "y.o"], b"int y;\n"),
    );
    wait_for_log(&d.log, "COMPILE_OK");
    let log = wait_for_log(&d.log, "refused");
    for line in log.lines() {
        assert!(
            !line.starts_with("client: 6.6.6.6") && !line.starts_with("dcc_compile_ok"),
            "forged line {line:?} in the log:\n{log}"
        );
    }
    let ok_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("] client: 127.0.0.1:") && l.contains(" COMPILE_OK "))
        .collect();
    assert_eq!(ok_lines.len(), 1, "one line for the one job: {log}");
    assert!(
        ok_lines[0].contains("x.c\\ndcc_compile_ok 999\\nclient: 6.6.6.6"),
        "{log}"
    );
    let page = stats_page(stats_port);
    assert!(page.contains("\ndcc_compile_ok 1\n"), "{page}");
    assert_eq!(
        page.lines()
            .filter(|l| l.starts_with("dcc_compile_ok"))
            .count(),
        1,
        "forged counter on the stats page:\n{page}"
    );
    assert!(!page.lines().any(|l| l.starts_with("client:")), "{page}");
}

#[test]
fn a_request_that_panics_is_logged_as_refused_and_the_daemon_serves_on() {
    let work = tempfile::tempdir().unwrap();
    let d = Daemon::start(Kind::Ours, work.path(), &[], &[]);
    // A compiler name whose byte 9 is inside a multi-byte character: slicing it at the
    // length of "/usr/bin/" panicked in the whitelist. Whether or not that is fixed, the
    // job must end in one summary line as a refused request (ret:109).
    let reply = exchange(
        d.port,
        &request(&["/usr/bin€gcc", "-c", "x.c", "-o", "x.o"], b"int x;\n"),
    );
    assert!(reply.is_empty());
    let log = wait_for_log(&d.log, "REJ_BAD_REQ");
    let line = log
        .lines()
        .find(|l| l.contains("REJ_BAD_REQ"))
        .unwrap_or_else(|| panic!("no summary line for the job: {log}"));
    assert!(line.contains("client: 127.0.0.1:"), "{line}");
    assert!(line.contains("ret:109"), "{line}");
    // Still serving.
    let bytes = exchange(
        d.port,
        &request(&["gcc", "-c", "ok.c", "-o", "ok.o"], b"int ok;\n"),
    );
    let (r, _) = protocol::decode_reply(&bytes, 1, Limits::default())
        .unwrap_or_else(|e| panic!("daemon stopped serving: {e}: {}", d.log_text()));
    assert_eq!(r.status, 0);
}
