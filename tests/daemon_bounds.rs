//! Our daemon under more connections than it has descriptors for: it raises its soft
//! `RLIMIT_NOFILE` to the hard limit (systemd starts services at 1024 soft), and it takes a
//! connection permit before `accept`, so idle clients can never use the descriptors that
//! jobs need, and `accept` never fails with EMFILE.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{distcc, free_port, world_writable_dir};
use distcc::protocol::{self, Body, Limits, Payload, Request};

struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own unreaped child (prlimit execs the daemon).
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// Our distccd under `prlimit --nofile=SOFT:HARD`, with one compiler slot.
fn daemon(dir: &Path, nofile: &str, env: &[(&str, &str)]) -> (Stopped, u16, std::path::PathBuf) {
    daemon_with_jobs(dir, nofile, env, 1)
}

fn daemon_with_jobs(
    dir: &Path,
    nofile: &str,
    env: &[(&str, &str)],
    jobs: usize,
) -> (Stopped, u16, std::path::PathBuf) {
    // A port another test's daemon took first makes ours exit: try another one.
    for _ in 0..3 {
        if let Some(started) = try_daemon(dir, nofile, env, jobs) {
            return started;
        }
    }
    panic!("our distccd could not bind a free port three times");
}

/// One start of the daemon on a free port; `None` if it could not bind it.
fn try_daemon(
    dir: &Path,
    nofile: &str,
    env: &[(&str, &str)],
    jobs: usize,
) -> Option<(Stopped, u16, std::path::PathBuf)> {
    let port = free_port();
    let logdir = world_writable_dir(dir, "log");
    let log = logdir.join("distccd.log");
    let child = Command::new("prlimit")
        .arg(format!("--nofile={nofile}"))
        .arg("--")
        .arg(distcc())
        .args([
            "distccd",
            "--daemon",
            "--no-detach",
            "--listen",
            "127.0.0.1",
            "--no-sandbox", // waitcc's markers are outside its job dir
        ])
        .args([
            "--allow",
            "127.0.0.1",
            "--jobs",
            &jobs.to_string(),
            "--port",
        ])
        .arg(port.to_string())
        .arg("--log-file")
        .arg(&log)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit distccd");
    let mut d = Stopped(child);
    match common::wait_until_listening(&mut d.0, port) {
        Ok(()) => Some((d, port, log)),
        Err(status) if status.code() == Some(common::BIND_FAILED) => None,
        Err(status) => panic!(
            "distccd exited with {status}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ),
    }
}

fn good_request() -> Vec<u8> {
    common::plain_request(
        &["gcc", "-c", "ok.c", "-o", "ok.o"],
        b"int ok(void) { return 1; }\n",
    )
}

/// An honest job's reply, or `None` if none came within `within`.
fn served_within(port: u16, within: Duration) -> Option<protocol::Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.write_all(&good_request()).ok()?;
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    protocol::decode_reply(&bytes, 1, Limits::default())
        .ok()
        .map(|(r, _)| r)
}

/// Open `n` connections that never send anything; a refused one says whether the daemon
/// is still running and what it logged.
fn idle_clients(d: &mut Stopped, log: &Path, port: u16, n: usize) -> Vec<TcpStream> {
    let mut idle = Vec::with_capacity(n);
    for i in 0..n {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => idle.push(s),
            Err(e) => panic!(
                "idle client {i} of {n}: {e}; daemon {:?}, still listening: {}; log: {}",
                d.0.try_wait(),
                common::holds_listener(d.0.id(), port),
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
    }
    idle
}

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let work = tempfile::tempdir().unwrap();
    // Soft 128 would be exhausted by the 300 idle clients below; hard 4096 is not.
    let (mut d, port, log) = daemon(work.path(), "128:4096", &[]);
    let _idle = idle_clients(&mut d, &log, port, 300);
    let reply = served_within(port, Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let reply = reply.unwrap_or_else(|| panic!("a good client was locked out: {text}"));
    assert_eq!(
        reply.status,
        0,
        "{}",
        String::from_utf8_lossy(&reply.stderr)
    );
    assert!(!text.contains("accept failed"), "{text}");
}

#[test]
fn connections_never_take_the_descriptors_jobs_need() {
    let work = tempfile::tempdir().unwrap();
    // Hard = soft = 128: more idle clients than descriptors. Idle ones time out after 3 s.
    let (mut d, port, log) = daemon(work.path(), "128:128", &[("DISTCC_IO_TIMEOUT", "3")]);
    let _idle = idle_clients(&mut d, &log, port, 200);
    let started = Instant::now();
    let reply = served_within(port, Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let reply = reply.unwrap_or_else(|| {
        panic!(
            "no reply after {:?} with idle clients holding connections: {text}",
            started.elapsed()
        )
    });
    assert_eq!(
        reply.status,
        0,
        "{}",
        String::from_utf8_lossy(&reply.stderr)
    );
    assert!(
        !text.contains("Too many open files"),
        "the daemon ran out of descriptors: {text}"
    );
}

/// Peak RSS of a process, in KiB.
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn many_large_requests_wait_for_the_budget_instead_of_exhausting_memory() {
    let work = tempfile::tempdir().unwrap();
    let (d, port, log) = daemon(work.path(), "4096:4096", &[]);
    // Twelve clients each send a 100 MiB protocol-1 source at once (for a compiler the
    // daemon will refuse, after reading it). Buffered all at once that is well over 1 GiB.
    let source = std::sync::Arc::new(vec![b' '; 100 << 20]);
    let senders: Vec<_> = (0..12)
        .map(|_| {
            let source = source.clone();
            std::thread::spawn(move || {
                let head = {
                    let mut buf = Vec::new();
                    protocol::encode_request_head(
                        &mut buf,
                        1,
                        None,
                        &["nocc", "-c", "big.c", "-o", "big.o"].map(String::from),
                    );
                    protocol::encode_int(&mut buf, &protocol::tok::DOTI, source.len() as u32);
                    buf
                };
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                    return;
                };
                let _ = s.set_write_timeout(Some(Duration::from_secs(60)));
                let _ = s.write_all(&head);
                let _ = s.write_all(&source);
                let mut sink = Vec::new();
                let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                let _ = s.read_to_end(&mut sink);
            })
        })
        .collect();
    // Meanwhile a small honest job is served.
    let reply = served_within(port, Duration::from_secs(60));
    for s in senders {
        let _ = s.join();
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let reply = reply.unwrap_or_else(|| panic!("the honest job got no reply: {text}"));
    assert_eq!(
        reply.status,
        0,
        "{}",
        String::from_utf8_lossy(&reply.stderr)
    );
    let peak = peak_rss_kb(d.0.id());
    // Two large requests at a time (2 × a 128 MiB buffer, plus decoding): ~260 MB here;
    // all twelve at once came to ~680 MB.
    assert!(
        peak < 450 * 1024,
        "the daemon's peak RSS was {} MB for 12 × 100 MiB requests",
        peak / 1024
    );
    assert_eq!(
        text.matches("nocc not in").count(),
        12,
        "every large request was read and refused: {text}"
    );
}

#[test]
fn a_client_that_never_reads_its_reply_holds_no_compiler_slot() {
    let work = tempfile::tempdir().unwrap();
    // One slot. The first client's object (32 MiB) is more than the socket buffers hold,
    // and that client never reads it.
    let (_d, port, log) = daemon(work.path(), "4096:4096", &[]);
    let big = protocol::encode_request(&Request {
        version: 1,
        cwd: None,
        argv: ["gcc", "-c", "big.c", "-o", "big.o"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        body: Body::Source(Payload::Plain(b"char big[32 << 20] = { 1 };\n".to_vec())),
    })
    .unwrap();
    let mut stuck = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stuck.write_all(&big).unwrap();
    // Wait until its compile is done and the daemon is trying to send.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending = {
            let mut peek = [0u8; 1];
            stuck.set_nonblocking(true).unwrap();
            let n = stuck.peek(&mut peek).unwrap_or(0);
            stuck.set_nonblocking(false).unwrap();
            n
        };
        if pending > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the big job never replied");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Another client is served at once, though the first still holds its connection (which
    // TCP_USER_TIMEOUT would only end after 20 s of a zero window).
    let reply = served_within(port, Duration::from_secs(8));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let reply = reply.unwrap_or_else(|| panic!("the second client waited for the slot: {text}"));
    assert_eq!(reply.status, 0);
    drop(stuck);
}

/// Send `bytes` from a thread, then wait for the daemon to close; returns the thread.
fn send_in_background(port: u16, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return;
        };
        let _ = s.set_write_timeout(Some(Duration::from_secs(60)));
        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
        let _ = s.write_all(&bytes);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    })
}

#[test]
fn sixty_thousand_tiny_pump_files_cost_little_memory() {
    let work = tempfile::tempdir().unwrap();
    let (d, port, log) = daemon(work.path(), "4096:4096", &[]);
    let tiny = distcc::compress::compress(b"int x;\n").unwrap();
    let files: Vec<protocol::FileEntry> = (0..60_000)
        .map(|i| protocol::FileEntry {
            name: format!("/src/d{}/h{i}.h", i % 100),
            kind: protocol::FileKind::File(Payload::Lzo(tiny.clone())),
        })
        .collect();
    let req = protocol::encode_request(&Request {
        version: 3,
        cwd: Some("/src".into()),
        argv: ["gcc", "-c", "/src/d0/h0.h", "-o", "x.o"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        body: Body::Files(files),
    })
    .unwrap();
    let sender = send_in_background(port, req);
    let reply = served_within(port, Duration::from_secs(30));
    let _ = sender.join();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(reply.map(|r| r.status), Some(0), "{text}");
    let peak = peak_rss_kb(d.0.id());
    assert!(peak < 150 * 1024, "peak RSS {} MB: {text}", peak / 1024);
}

#[test]
fn huge_argv_words_do_not_stall_other_clients() {
    let work = tempfile::tempdir().unwrap();
    let (_d, port, log) = daemon(work.path(), "4096:4096", &[]);
    // 100 words of 1 MiB, sent in small pieces: a decoder that re-walks the request from
    // its start after every read does ~10^4 passes over up to 100 MiB.
    let word = "-DX=".to_string() + &"y".repeat((1 << 20) - 16);
    let mut argv: Vec<String> = ["gcc", "-c", "w.c", "-o", "w.o"].map(String::from).to_vec();
    argv.extend(std::iter::repeat_n(word, 100));
    let mut head = Vec::new();
    protocol::encode_request_head(&mut head, 1, None, &argv);
    let sender = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        for chunk in head.chunks(16 * 1024) {
            s.write_all(chunk)
                .expect("the daemon reads the huge request");
        }
        // Keep the connection open: the request is incomplete (no source follows).
        s
    });
    // While it arrives, honest jobs are served promptly, one after another.
    let mut served = 0;
    while served < 5 || !sender.is_finished() {
        let started = Instant::now();
        let reply = served_within(port, Duration::from_secs(20));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(reply.map(|r| r.status), Some(0), "{text}");
        assert!(
            // ~0.05 s here; 3.7 s with a decoder that re-walks the request after each read.
            started.elapsed() < Duration::from_secs(2),
            "an honest job took {:?} while a huge request arrived",
            started.elapsed()
        );
        served += 1;
    }
    let _open = sender.join().expect("sender");
    assert!(served >= 5);
}

#[test]
fn large_jobs_give_their_place_back_once_they_compile() {
    let work = tempfile::tempdir().unwrap();
    let masq = world_writable_dir(work.path(), "masq");
    let flag = world_writable_dir(work.path(), "flag");
    // Each compile says it started, then waits for `go`.
    common::script(
        &masq.join("waitcc"),
        &format!(
            "touch {f}/started.$$\nwhile [ ! -e {f}/go ]; do sleep 0.05; done\nexec gcc \"$@\"",
            f = flag.display()
        ),
    );
    let path = format!("{}:/usr/bin:/bin", masq.display());
    let env = [
        ("DISTCCD_MASQUERADE_DIRS", masq.to_str().unwrap()),
        ("DISTCCD_PATH", path.as_str()),
    ];
    let (_d, port, log) = daemon_with_jobs(work.path(), "4096:4096", &env, 4);
    // Three requests over 1 MiB (two places): all three must be compiling at once.
    let mut source = vec![b' '; 2 << 20];
    source.extend_from_slice(b"int big;\n");
    let senders: Vec<_> = (0..3)
        .map(|_| {
            send_in_background(
                port,
                common::plain_request(&["waitcc", "-c", "b.c", "-o", "b.o"], &source),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let started = || std::fs::read_dir(&flag).map(|d| d.count()).unwrap_or(0);
    while started() < 3 {
        if Instant::now() > deadline {
            let n = started();
            let _ = std::fs::write(flag.join("go"), "");
            panic!(
                "only {n} of 3 large jobs compiled at once: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(flag.join("go"), "").unwrap();
    for s in senders {
        let _ = s.join();
    }
}
