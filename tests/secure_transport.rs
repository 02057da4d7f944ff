//! Keys, pairing and the encrypted transport between our client and our daemon (issue 17),
//! with real processes: `distccd --pairing-code`, `distcc-config --pair`, compiles through
//! a relay in this test that records every byte both ways, a server whose key changes
//! behind the relay, `--require-auth` against Debian's client and an unpaired one of ours,
//! and Debian's daemon serving a client that has keys.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, Kind, client_cmd, distcc, run, wait_for_log};

/// In the source, and so in the preprocessed text a plain job carries.
const MARKER: &str = "secure_transport_marker_7f3a";

/// A TCP relay on 127.0.0.1 that forwards to `target` (changeable between connections)
/// and records every byte, both ways.
struct Relay {
    port: u16,
    target: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(AtomicU16::new(target));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (t, s) = (target.clone(), seen.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", t.load(Ordering::SeqCst))) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    s.lock().unwrap().extend_from_slice(&buf[..n]);
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Relay { port, target, seen }
    }

    fn seen(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }

    fn contains(&self, needle: &str) -> bool {
        self.seen()
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }
}

/// A test's directories: the work dir is world-readable, because a daemon started as
/// root serves as its own unprivileged user, which must reach its key dir's files.
struct World {
    t: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(
            t.path().join("m.c"),
            format!("int {MARKER} = 42;\nint f(void) {{ return {MARKER}; }}\n"),
        )
        .unwrap();
        World { t }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.t.path().join(name)
    }

    /// Our daemon with its keys in `keys` (made by it on first start).
    fn daemon(&self, keys: &str, extra: &[&str]) -> Daemon {
        let dir = self.path(keys);
        let mut args = vec!["--key-dir", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        Daemon::start(Kind::Ours, self.t.path(), &args, &[])
    }

    fn pairing_code(&self, keys: &str) -> String {
        let out = run(Command::new(distcc()).args([
            "distccd",
            "--pairing-code",
            "--key-dir",
            self.path(keys).to_str().unwrap(),
        ]));
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("Pairing code: "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no code in {text}"))
            .to_owned()
    }

    fn pair(&self, client: &str, port: u16, code: &str) -> Output {
        let mut cmd = Command::new(distcc());
        cmd.args(["distcc-config", "--pair", &format!("127.0.0.1:{port}")])
            .args(["--code", code, "--yes"])
            .env("DISTCC_DIR", self.path(client))
            .env("HOME", self.t.path());
        cmd.output().unwrap()
    }

    /// `distcc gcc -c m.c -o OUT` with the client's own DISTCC_DIR.
    fn compile(&self, client: &str, port: u16, out: &str) -> Output {
        let mut cmd = client_cmd(&distcc(), &self.path(client), &format!("127.0.0.1:{port}"));
        // No backoff: a refused host is asked again at once when the test pairs it.
        cmd.args(["gcc", "-c", "m.c", "-o", out])
            .env("DISTCC_BACKOFF_PERIOD", "0")
            .current_dir(self.t.path());
        cmd.output().unwrap()
    }

    /// `distcc pump distcc gcc -c m.c -o OUT` (protocol 3) with the client's DISTCC_DIR.
    fn compile_pump(&self, client: &str, port: u16, out: &str) -> Output {
        let d = distcc();
        let mut cmd = client_cmd(&d, &self.path(client), &format!("127.0.0.1:{port},cpp,lzo"));
        cmd.arg("pump")
            .arg(&d)
            .args(["gcc", "-c", "m.c", "-o", out])
            .env("DISTCC_BACKOFF_PERIOD", "0")
            .env("DISTCC_VERBOSE", "1")
            .env("DISTCC_FALLBACK", "0")
            .current_dir(self.t.path());
        cmd.output().unwrap()
    }

    fn local_object(&self) -> Vec<u8> {
        let st = Command::new("gcc")
            .args(["-c", "m.c", "-o", "local.o"])
            .current_dir(self.t.path())
            .status()
            .unwrap();
        assert!(st.success());
        fs::read(self.path("local.o")).unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn key_line(path: &Path) -> String {
    fs::read_to_string(path).unwrap().trim().to_owned()
}

/// Poll for `cond` (a state written by another process) until a deadline.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pairing_pins_the_server_and_authorises_the_client_once() {
    let w = World::new();
    let d = w.daemon("keys", &[]);
    let code = w.pairing_code("keys");
    // The user says no to the fingerprint: nothing is pinned, nothing authorised, and
    // the code (never sent) still works.
    let mut no = Command::new(distcc())
        .args(["distcc-config", "--pair", &format!("127.0.0.1:{}", d.port)])
        .args(["--code", &code])
        .env("DISTCC_DIR", w.path("client"))
        .env("HOME", w.t.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    no.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let no = no.wait_with_output().unwrap();
    assert!(!no.status.success(), "{}", text(&no));
    assert!(
        text(&no).contains("Pin this key and pair?"),
        "{}",
        text(&no)
    );
    assert!(!w.path("client/known_hosts").exists());
    assert_eq!(
        fs::read_to_string(w.path("keys/authorized_keys")).unwrap(),
        ""
    );

    let out = w.pair("client", d.port, &code);
    assert!(out.status.success(), "{}", text(&out));
    let server_pub = key_line(&w.path("keys/distccd.key.pub"));
    let client_pub = key_line(&w.path("client/client.key.pub"));
    // The client pinned the server's key under HOST:PORT …
    let known = fs::read_to_string(w.path("client/known_hosts")).unwrap();
    assert_eq!(known.trim(), format!("127.0.0.1:{} {server_pub}", d.port));
    // … the server authorised the client's key …
    let authorized = fs::read_to_string(w.path("keys/authorized_keys")).unwrap();
    assert!(authorized.contains(&client_pub), "{authorized}");
    // … the fingerprint was shown, and both private keys are owner-only.
    let fp = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(fp.contains("SHA256:"), "{fp}");
    for f in ["keys/distccd.key", "client/client.key"] {
        let mode = fs::metadata(w.path(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    // `--explain` says the host is paired, and that its jobs go over the channel.
    let explain = client_cmd(
        &distcc(),
        &w.path("client"),
        &format!("127.0.0.1:{}", d.port),
    )
    .args(["--explain", "gcc", "-c", "m.c"])
    .env("HOME", w.t.path())
    .current_dir(w.t.path())
    .output()
    .unwrap();
    assert!(
        text(&explain).contains("; paired: encrypted channel"),
        "{}",
        text(&explain)
    );
    // The code is used up: a second client with it is refused, and not authorised.
    let again = w.pair("client2", d.port, &code);
    assert!(!again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("not-authorized"), "{}", text(&again));
    let authorized = fs::read_to_string(w.path("keys/authorized_keys")).unwrap();
    let client2_pub = key_line(&w.path("client2/client.key.pub"));
    assert!(!authorized.contains(&client2_pub), "{authorized}");
    assert!(!w.path("client2/known_hosts").exists());
}

#[test]
fn paired_jobs_are_encrypted_and_give_the_local_object() {
    let w = World::new();
    let d = w.daemon("keys", &[]);
    let local = w.local_object();
    let relay = Relay::start(d.port);

    // Before pairing: plain, the marker is on the wire (so the check below can fail).
    let out = w.compile("client", relay.port, "plain.o");
    assert!(out.status.success(), "{}", text(&out));
    assert!(relay.contains(MARKER), "a plain job carries the source");
    assert_eq!(d.compile_ok_count(), 1, "{}", d.log_text());

    let code = w.pairing_code("keys");
    let out = w.pair("client", relay.port, &code);
    assert!(out.status.success(), "{}", text(&out));
    relay.seen.lock().unwrap().clear();

    let out = w.compile("client", relay.port, "secure.o");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        d.compile_ok_count(),
        2,
        "ran on the server:\n{}",
        d.log_text()
    );
    assert_eq!(fs::read(w.path("secure.o")).unwrap(), local);
    let seen = relay.seen();
    assert!(!seen.is_empty());
    assert!(
        !relay.contains(MARKER),
        "the source's text crossed the wire in clear"
    );
    assert!(
        !relay.contains("m.c"),
        "the command line crossed the wire in clear"
    );
    assert!(relay.contains("NOIS"));
    let log = d.log_text();
    assert!(log.contains("authenticated"), "{log}");

    // A pump job: its file list is sent apart from the request's head, sealed with it.
    relay.seen.lock().unwrap().clear();
    let out = w.compile_pump("client", relay.port, "pump.o");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("completed ok (pump)"), "{}", text(&out));
    assert_eq!(fs::read(w.path("pump.o")).unwrap(), local);
    assert!(relay.contains("NOIS"));
    assert!(
        !relay.contains(MARKER),
        "the source crossed the wire in clear"
    );
    assert!(
        !relay.contains("NFIL"),
        "the file list crossed the wire in clear"
    );
}

#[test]
fn a_changed_server_key_is_refused_loudly_and_the_job_runs_locally() {
    let w = World::new();
    let a = w.daemon("keys-a", &[]);
    let relay = Relay::start(a.port);
    let code = w.pairing_code("keys-a");
    let out = w.pair("client", relay.port, &code);
    assert!(out.status.success(), "{}", text(&out));
    let old_fp = fingerprint_of(&w.path("keys-a/distccd.key.pub"));

    // Another server, another key, behind the same HOST:PORT; it even knows the client.
    let b = w.daemon("keys-b", &[]);
    fs::copy(
        w.path("keys-a/authorized_keys"),
        w.path("keys-b/authorized_keys"),
    )
    .unwrap();
    let new_fp = fingerprint_of(&w.path("keys-b/distccd.key.pub"));
    relay.target.store(b.port, Ordering::SeqCst);

    let local = w.local_object();
    let out = w.compile("client", relay.port, "changed.o");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("CHANGED"), "{all}");
    assert!(all.contains(&old_fp) && all.contains(&new_fp), "{all}");
    assert_eq!(fs::read(w.path("changed.o")).unwrap(), local);
    assert_eq!(b.compile_ok_count(), 0, "{}", b.log_text());
    assert!(!relay.contains(MARKER), "no source went to the impostor");
    // The pin is unchanged.
    let known = fs::read_to_string(w.path("client/known_hosts")).unwrap();
    assert!(known.contains(&key_line(&w.path("keys-a/distccd.key.pub"))));
}

fn fingerprint_of(pub_file: &Path) -> String {
    let line = key_line(pub_file);
    let mut words = line.split_whitespace();
    distcc::keys::PublicKey::parse(&mut words)
        .unwrap()
        .fingerprint()
}

#[test]
fn require_auth_refuses_debians_client_and_an_unpaired_one_of_ours() {
    let w = World::new();
    let d = w.daemon("keys", &["--require-auth"]);
    let local = w.local_object();

    // Debian's distcc 3.4 client: closed on, it compiles locally.
    let mut cmd = client_cmd(
        Path::new("/usr/bin/distcc"),
        &w.path("deb"),
        &format!("127.0.0.1:{}", d.port),
    );
    cmd.args(["gcc", "-c", "m.c", "-o", "deb.o"])
        .current_dir(w.t.path());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read(w.path("deb.o")).unwrap(), local);
    wait_for_log(&d.log, "unauthenticated");

    // Ours, unpaired: refused with the reason, compiles locally.
    let out = w.compile("ours", d.port, "ours.o");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("auth-required"), "{all}");
    assert_eq!(fs::read(w.path("ours.o")).unwrap(), local);
    assert_eq!(d.compile_ok_count(), 0, "{}", d.log_text());
    eventually("two refusals in the log", || {
        d.log_text().matches("unauthenticated").count() >= 2
    });

    // Paired, it is served.
    let code = w.pairing_code("keys");
    let out = w.pair("ours", d.port, &code);
    assert!(out.status.success(), "{}", text(&out));
    let out = w.compile("ours", d.port, "paired.o");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(d.compile_ok_count(), 1, "{}", d.log_text());
    assert_eq!(fs::read(w.path("paired.o")).unwrap(), local);

    // The admin takes the key back: refused inside the channel, with the reason.
    fs::write(w.path("keys/authorized_keys"), "").unwrap();
    let out = w.compile("ours", d.port, "revoked.o");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("not-authorized"), "{all}");
    assert_eq!(fs::read(w.path("revoked.o")).unwrap(), local);
    assert_eq!(d.compile_ok_count(), 1, "{}", d.log_text());
}

#[test]
fn debians_daemon_still_serves_a_client_that_has_keys() {
    let w = World::new();
    let ours = w.daemon("keys", &[]);
    let code = w.pairing_code("keys");
    let out = w.pair("client", ours.port, &code);
    assert!(out.status.success(), "{}", text(&out));
    assert!(w.path("client/client.key").exists());

    let deb = Daemon::start(Kind::Debian, w.t.path(), &[], &[]);
    let local = w.local_object();
    let out = w.compile("client", deb.port, "deb.o");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read(w.path("deb.o")).unwrap(), local);
    eventually("Debian's daemon compiled it", || {
        deb.log_text().contains("COMPILE_OK")
    });
}

/// The cost per job of the encrypted channel: the same small job, many times, plain and
/// encrypted, against the same daemon. Prints the figures (`--nocapture`).
#[test]
fn cost_per_job() {
    let w = World::new();
    let d = w.daemon("keys", &[]);
    let jobs = 20;
    let time = |client: &str| {
        let start = Instant::now();
        for i in 0..jobs {
            let out = w.compile(client, d.port, &format!("{client}{i}.o"));
            assert!(out.status.success(), "{}", text(&out));
        }
        start.elapsed() / jobs
    };
    let plain = time("plain");
    let code = w.pairing_code("keys");
    assert!(w.pair("secure", d.port, &code).status.success());
    let secure = time("secure");
    assert_eq!(d.compile_ok_count(), 2 * jobs as usize, "{}", d.log_text());
    eprintln!(
        "cost per job: plain {:.1} ms, encrypted {:.1} ms ({:+.1} ms)",
        plain.as_secs_f64() * 1e3,
        secure.as_secs_f64() * 1e3,
        (secure.as_secs_f64() - plain.as_secs_f64()) * 1e3
    );
}
