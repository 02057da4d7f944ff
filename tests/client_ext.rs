//! The protocol extension between our client and our daemon (src/ext.rs), with real
//! processes: jobs between ours go over it (zstd bodies, seen on the wire through a relay
//! and in the daemon's log), a distcc 3.4 daemon costs one extra connection per period
//! and then none, `DISTCC_EXTENSIONS=0` never tries, and a refusal's reason reaches the
//! user and the build record.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const SRC: &str =
    "int add(int a, int b) { return a + b; }\nint twice(int a) { return add(a, a); }\n";

/// What one connection's client sent, growing while it runs.
type Sent = Arc<Mutex<Vec<u8>>>;

/// A TCP relay on 127.0.0.1 in front of a daemon: counts the connections it accepted
/// (each is one connection the daemon accepted) and keeps what each client sent.
struct Relay {
    port: u16,
    accepted: Arc<AtomicUsize>,
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl Relay {
    fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
        let (count, log) = (accepted.clone(), sent.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let record = Arc::new(Mutex::new(Vec::new()));
                log.lock().unwrap().push(record.clone());
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pipe(client, server, Some(record)));
                std::thread::spawn(move || pipe(s2, c2, None));
            }
        });
        Relay {
            port,
            accepted,
            sent,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// What the clients sent, connection by connection.
    fn sent(&self) -> Vec<Vec<u8>> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.lock().unwrap().clone())
            .collect()
    }
}

/// Copy `from` to `to` until EOF or an error, then end `to`'s writing side.
fn pipe(mut from: TcpStream, mut to: TcpStream, record: Option<Sent>) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(r) = &record {
                    r.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn setup() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("x.c"), SRC).unwrap();
    let ok = run(Command::new("gcc")
        .args(["-c", "x.c", "-o", "ref.o"])
        .current_dir(t.path()));
    assert!(ok.status.success());
    t
}

fn compile(t: &Path, dd: &str, hosts: &str, env: &[(&str, &str)]) -> Output {
    let _ = fs::remove_file(t.join("x.o"));
    let mut cmd = client_cmd(&distcc(), &t.join(dd), hosts);
    cmd.args(["gcc", "-c", "x.c", "-o", "x.o"])
        .env("DISTCC_VERBOSE", "1")
        .current_dir(t);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        fs::read(t.join("x.o")).unwrap(),
        fs::read(t.join("ref.o")).unwrap(),
        "the object must be what a local compile gives"
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Wait until the relay has seen `n` connections (the client is done with them when it
/// exits, but the relay's accept thread may lag behind).
fn wait_accepted(relay: &Relay, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.accepted() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    relay.accepted()
}

/// The body of the first `token` packet in `bytes`.
fn body_of<'a>(bytes: &'a [u8], token: &[u8; 4]) -> Option<&'a [u8]> {
    let at = bytes.windows(4).position(|w| w == token)?;
    let hex = std::str::from_utf8(bytes.get(at + 4..at + 12)?).ok()?;
    let len = usize::from_str_radix(hex, 16).ok()?;
    bytes.get(at + 12..at + 12 + len)
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

#[test]
fn ours_to_ours_goes_over_the_extension_with_zstd() {
    let t = setup();
    let d = Daemon::start(Kind::Ours, t.path(), &[], &[]);
    let relay = Relay::start(d.port);
    // Protocol 2 (`,lzo`): the source travels as one zstd frame, not LZO.
    let out = compile(
        t.path(),
        "dd",
        &format!("127.0.0.1:{},lzo", relay.port),
        &[],
    );
    assert!(
        stderr(&out).contains("speaks distcc-rs 1; using: zstd"),
        "{}",
        stderr(&out)
    );
    assert_eq!(wait_accepted(&relay, 1), 1, "one connection for one job");
    let sent = relay.sent();
    let first = sent.first().unwrap();
    assert!(
        first.starts_with(b"DIST00000004EXTN"),
        "{:?}",
        String::from_utf8_lossy(first.get(..40).unwrap_or(first))
    );
    assert!(
        first.windows(14).any(|w| w == b"DIST00000002AR"),
        "the job inside is protocol 2"
    );
    let doti = body_of(first, b"DOTI").unwrap();
    assert!(doti.starts_with(&ZSTD_MAGIC), "DOTI is not a zstd frame");
    let log = wait_for_log(&d.log, "job complete (protocol 2) over the extension, zstd");
    assert!(log.contains("speaks distcc-rs 1; using: zstd"), "{log}");
    assert!(
        log.contains("job complete (protocol 2) over the extension, zstd"),
        "{log}"
    );
    // The answer is remembered for later jobs.
    let memo = t
        .path()
        .join(format!("dd/ext/tcp_127.0.0.1_{}", relay.port));
    assert_eq!(
        fs::read_to_string(&memo).unwrap(),
        "distcc-rs 1\nuse zstd identity\nrewrite-includes yes\ndirectives-only yes\n"
    );

    // Protocol 1 (no `,lzo`) inside the extension stays uncompressed.
    compile(t.path(), "dd", &format!("127.0.0.1:{}", relay.port), &[]);
    let log = wait_for_log(&d.log, "job complete (protocol 1) over the extension, zstd");
    assert!(
        log.contains("job complete (protocol 1) over the extension, zstd"),
        "{log}"
    );
    let sent = relay.sent();
    let doti = body_of(sent.get(1).unwrap(), b"DOTI").unwrap();
    assert!(
        doti.windows(13).any(|w| w == b"int add(int a"),
        "protocol 1 sends the preprocessed source as it is"
    );
}

#[test]
fn pump_jobs_go_over_the_extension_too() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    fs::write(
        dir.join("x.c"),
        "#include <stdio.h>\nint x(void) { return 3; }\n",
    )
    .unwrap();
    let ok = run(Command::new("gcc")
        .args(["-c", "x.c", "-o", "ref.o"])
        .current_dir(&dir));
    assert!(ok.status.success());
    let daemon = Daemon::start(Kind::Ours, &dir, &[], &[]);
    let relay = Relay::start(daemon.port);
    let hosts = format!("127.0.0.1:{},cpp,lzo", relay.port);
    let d = distcc();
    let pump = PumpStartup::run(client_cmd(&d, &dir.join("dd"), &hosts).env("TMPDIR", &dir));
    let out = client_cmd(&d, &dir.join("dd"), &hosts)
        .env("INCLUDE_SERVER_PORT", &pump.port)
        .env("DISTCC_VERBOSE", "1")
        .args(["gcc", "-c", "x.c", "-o", "x.o"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("completed ok (pump)"), "{err}");
    assert_eq!(
        fs::read(dir.join("x.o")).unwrap(),
        fs::read(dir.join("ref.o")).unwrap()
    );
    // Over the extension, without zstd: the include server's LZO copies of the headers
    // go on the wire as they are (re-packing them would cost client CPU at every job).
    let log = wait_for_log(&daemon.log, "job complete (protocol 3) over the extension");
    assert!(
        !log.contains("job complete (protocol 3) over the extension, zstd"),
        "{log}"
    );
    assert!(log.contains("using: identity"), "{log}");
    let sent = relay.sent();
    let first = sent.first().unwrap();
    assert!(
        first.windows(12).any(|w| w == b"want identit"),
        "a pump job's hello asks for no zstd"
    );
    assert!(
        !first
            .windows(16)
            .any(|w| w.starts_with(b"FILE") && w.ends_with(&ZSTD_MAGIC)),
        "a FILE body went as a zstd frame"
    );
}

#[test]
fn a_distcc_3_4_daemon_costs_one_connection_per_period() {
    const N: usize = 3;
    let t = setup();
    let d = Daemon::start(Kind::Debian, t.path(), &[], &[]);
    let relay = Relay::start(d.port);
    let hosts = format!("127.0.0.1:{},lzo", relay.port);
    for i in 0..N {
        let out = compile(t.path(), "dd", &hosts, &[]);
        let err = stderr(&out);
        assert!(
            err.contains("completed ok"),
            "job {i} not compiled remotely: {err}"
        );
    }
    // One probe, then N jobs: N + 1, not 2N.
    assert_eq!(wait_accepted(&relay, N + 1), N + 1);
    let memo = t
        .path()
        .join(format!("dd/ext/tcp_127.0.0.1_{}", relay.port));
    assert_eq!(fs::read_to_string(&memo).unwrap(), "none\n");
    // No backoff: the probe's hang-up is not a host failure.
    assert!(
        !t.path()
            .join(format!("dd/lock/backoff_tcp_127.0.0.1_{}_0", relay.port))
            .exists()
    );
    // While the memo is fresh: N connections for N jobs.
    for _ in 0..N {
        compile(t.path(), "dd", &hosts, &[]);
    }
    assert_eq!(wait_accepted(&relay, 2 * N + 1), 2 * N + 1);
    assert_eq!(d.settled_count("COMPILE_OK"), 2 * N, "{}", d.log_text());
    // A stale memo (older than max(backoff period, 600 s)) is asked again.
    fs::File::options()
        .write(true)
        .open(&memo)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(601))
        .unwrap();
    compile(t.path(), "dd", &hosts, &[]);
    assert_eq!(wait_accepted(&relay, 2 * N + 3), 2 * N + 3);
}

#[test]
fn extensions_off_never_probes() {
    const N: usize = 2;
    let t = setup();
    let d = Daemon::start(Kind::Debian, t.path(), &[], &[]);
    let relay = Relay::start(d.port);
    let hosts = format!("127.0.0.1:{},lzo", relay.port);
    for _ in 0..N {
        compile(t.path(), "dd", &hosts, &[("DISTCC_EXTENSIONS", "0")]);
    }
    assert_eq!(wait_accepted(&relay, N), N);
    assert!(relay.sent().iter().all(|s| s.starts_with(b"DIST00000002")));
    assert!(
        !t.path()
            .join("dd/ext")
            .join(format!("tcp_127.0.0.1_{}", relay.port))
            .exists()
    );
    // And our daemon sees a plain protocol-2 job.
    let ours = Daemon::start(Kind::Ours, t.path(), &[], &[]);
    compile(
        t.path(),
        "dd",
        &format!("127.0.0.1:{},lzo", ours.port),
        &[("DISTCC_EXTENSIONS", "0")],
    );
    let log = wait_for_log(&ours.log, "job complete (protocol 2)");
    assert!(log.contains("job complete (protocol 2)"), "{log}");
    assert!(!log.contains("speaks distcc-rs"), "{log}");
}

#[test]
fn a_refusal_is_shown_recorded_and_the_job_falls_back() {
    let t = setup();
    let empty = t.path().join("no-compilers");
    fs::create_dir(&empty).unwrap();
    let d = Daemon::start(
        Kind::Ours,
        t.path(),
        &[],
        &[("DISTCCD_MASQUERADE_DIRS", empty.to_str().unwrap())],
    );
    let hosts = format!("127.0.0.1:{},lzo", d.port);
    let mut cmd = client_cmd(&distcc(), &t.path().join("dd"), &hosts);
    cmd.args(["gcc", "-c", "x.c", "-o", "x.o"])
        .env("DISTCC_BUILD_ID", "refused")
        .current_dir(t.path());
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        fs::read(t.path().join("x.o")).unwrap(),
        fs::read(t.path().join("ref.o")).unwrap()
    );
    // The server's own reason, on the user's terminal without DISTCC_VERBOSE.
    assert!(
        err.contains("refused by the server (not-whitelisted): ")
            && err.contains("whitelist (add a link there"),
        "{err}"
    );
    assert!(err.contains("running locally instead"), "{err}");
    let record = fs::read_to_string(t.path().join("dd/record/refused")).unwrap();
    assert!(
        record.contains(" local refused:not-whitelisted "),
        "{record}"
    );
    // A whitelist refusal is a host failure: backed off, as before.
    assert!(
        t.path()
            .join(format!("dd/lock/backoff_tcp_127.0.0.1_{}_0", d.port))
            .exists()
    );
}
