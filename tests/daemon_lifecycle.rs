//! distccd's life: the pid file, SIGTERM with a job in flight, `--lifetime`, `--stats`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{distcc, free_port, wait_for_port, world_writable_dir};
use distcc::protocol::{self, Body, Limits, Payload, Request};

fn hello_request() -> Vec<u8> {
    protocol::encode_request(&Request {
        version: 2,
        cwd: None,
        argv: ["gcc", "-c", "a.c", "-o", "a.o"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        body: Body::Source(Payload::Plain(b"int a(void){return 1;}\n".to_vec())),
    })
    .unwrap()
}

fn wait_exit(
    child: &mut std::process::Child,
    within: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn sigterm_finishes_the_running_job_and_removes_the_pid_file() {
    let work = tempfile::tempdir().unwrap();
    let dir = world_writable_dir(work.path(), "run");
    let masq = world_writable_dir(work.path(), "masq");
    // The compiler runs as the daemon's unprivileged user: its marker goes in `masq`, which
    // everybody can write.
    let started = masq.join("started");
    common::script(
        &masq.join("slowcc"),
        &format!("touch {}; sleep 1; exec gcc \"$@\"", started.display()),
    );
    let pid_file = dir.join("distccd.pid");
    let port = free_port();
    let mut child = Command::new(distcc())
        .args([
            "distccd",
            "--daemon",
            "--no-detach",
            "--listen",
            "127.0.0.1",
            "--allow",
            "127.0.0.1",
            "--no-sandbox", // slowcc's marker is outside its job dir
        ])
        .args([
            "--port",
            &port.to_string(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--log-stderr",
        ])
        .env("DISTCCD_MASQUERADE_DIRS", &masq)
        .env("DISTCCD_PATH", format!("{}:/usr/bin:/bin", masq.display()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_until_listening(&mut child, port).expect("the daemon listens");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, child.id(), "the pid file names the daemon");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let req = protocol::encode_request(&Request {
        version: 1,
        cwd: None,
        argv: ["slowcc", "-c", "a.c", "-o", "a.o"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        body: Body::Source(Payload::Plain(b"int a;\n".to_vec())),
    })
    .unwrap();
    s.write_all(&req).unwrap();
    // SIGTERM while the job's compiler runs.
    common::wait_for_file(&started);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut reply = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.read_to_end(&mut reply);
    let (r, _) = protocol::decode_reply(&reply, 1, Limits::default())
        .expect("the running job still got its reply");
    assert_eq!(r.status, 0);
    assert!(
        wait_exit(&mut child, Duration::from_secs(15)).is_some(),
        "daemon exited after SIGTERM"
    );
    assert!(!pid_file.exists(), "pid file removed");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no longer accepting"
    );
}

#[test]
fn lifetime_ends_the_daemon() {
    let port = free_port();
    let mut child = Command::new(distcc())
        .args([
            "distccd",
            "--daemon",
            "--no-detach",
            "--listen",
            "127.0.0.1",
            "--lifetime",
            "1",
        ])
        .args(["--port", &port.to_string(), "--log-stderr"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_until_listening(&mut child, port).expect("the daemon listens");
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn detached_daemon_writes_its_pid_file_before_the_parent_returns() {
    let work = tempfile::tempdir().unwrap();
    let dir = world_writable_dir(work.path(), "run");
    let pid_file = dir.join("d.pid");
    let port = free_port();
    let status = Command::new(distcc())
        .args([
            "distccd",
            "--daemon",
            "--listen",
            "127.0.0.1",
            "--lifetime",
            "30",
        ])
        .args([
            "--port",
            &port.to_string(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--log-file",
            dir.join("log").to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file exists when the parent returns")
        .trim()
        .parse()
        .unwrap();
    wait_for_port(port);
    // SAFETY: the detached daemon we just started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    // SAFETY: probing with signal 0.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(Instant::now() < deadline, "detached daemon did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stats_page_counts_jobs() {
    let work = tempfile::tempdir().unwrap();
    let stats_port = free_port();
    let d = common::Daemon::start(
        common::Kind::Ours,
        work.path(),
        &["--stats", "--stats-port", &stats_port.to_string()],
        &[],
    );
    for _ in 0..2 {
        let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
        s.write_all(&hello_request()).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        assert_eq!(
            protocol::decode_reply(&reply, 2, Limits::default())
                .unwrap()
                .0
                .status,
            0
        );
    }
    let mut s = TcpStream::connect(("127.0.0.1", stats_port)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    assert!(
        page.starts_with("HTTP/1.0 200 OK\nContent-Type: text/plain\n"),
        "{page}"
    );
    assert!(page.contains("\ndcc_compile_ok 2\n"), "{page}");
    assert!(page.contains("\ndcc_longest_job a.c\n"), "{page}");
    assert!(page.trim_end().ends_with("</distccstats>"), "{page}");
}

#[test]
fn sigterm_ends_a_compiler_that_outlives_the_grace_period() {
    let work = tempfile::tempdir().unwrap();
    let masq = world_writable_dir(work.path(), "masq");
    let flag = world_writable_dir(work.path(), "flag");
    common::script(
        &masq.join("hangcc"),
        &format!("echo $$ > {}/pid; exec sleep 600", flag.display()),
    );
    let path = format!("{}:/usr/bin:/bin", masq.display());
    let mut d = common::Daemon::start(
        common::Kind::Ours,
        work.path(),
        &["--no-sandbox"], // hangcc writes its pid outside its job dir
        &[
            ("DISTCCD_MASQUERADE_DIRS", masq.to_str().unwrap()),
            ("DISTCCD_PATH", &path),
        ],
    );
    let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    let req = common::plain_request(&["hangcc", "-c", "a.c", "-o", "a.o"], b"int a;\n");
    s.write_all(&req).unwrap();
    let pid_file = flag.join("pid");
    common::wait_for_file(&pid_file);
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid: i32 = loop {
        if let Ok(p) = std::fs::read_to_string(&pid_file).unwrap().trim().parse() {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the compiler never wrote its pid"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // SAFETY: signalling the daemon we started.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    assert!(
        wait_exit(&mut d.child, Duration::from_secs(30)).is_some(),
        "the daemon stops after its grace period"
    );
    // Running, not a zombie waiting for init to reap it.
    let alive = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the compiler {pid} was orphaned, not ended");
    assert!(
        d.log_text().contains("stopped 1 compiler"),
        "{}",
        d.log_text()
    );
}

/// 3.4's GSS-API options are refused (not silently ignored, which would serve clients the
/// operator meant to keep out) with 3.4's bad-argument status and advice on what to use.
#[test]
fn gssapi_options_refuse_to_start_with_advice() {
    // Debian's distccd, given a bad combination of the same options, exits with this status.
    let debian = Command::new("/usr/bin/distccd")
        .args(["--blacklist=/nonexistent", "--whitelist=/nonexistent"])
        .args(["--daemon", "--no-detach", "--log-stderr", "--lifetime", "5"])
        .output()
        .unwrap();
    let bad_args = debian.status.code();
    assert_eq!(bad_args, Some(101), "Debian's bad-argument status");
    for opts in [
        &["--auth"][..],
        &["--blacklist", "/etc/distcc/deny"],
        &["--whitelist=/etc/distcc/principals"],
    ] {
        let port = free_port();
        let mut child = Command::new(distcc())
            .arg("distccd")
            .args(opts)
            .args(["--daemon", "--no-detach", "--listen", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--lifetime", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(10));
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.and_then(|s| s.code()), bad_args, "{opts:?}: {err}");
        assert!(
            err.contains("not supported") && err.contains("--allow"),
            "{opts:?}: {err}"
        );
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "{opts:?}: nothing listens"
        );
    }
}

/// The stats page's body: (field, value) per line between the tags, and the lines before.
fn stats_page(port: u16) -> (Vec<String>, Vec<(String, String)>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    let (head, body) = page.split_once("<distccstats>\n").expect("the stats tag");
    let fields = body
        .lines()
        .take_while(|l| *l != "</distccstats>")
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    (head.lines().map(str::to_owned).collect(), fields)
}

/// Our stats page has Debian's distccd 3.4's fields in its order, `dcc_max_kids` is the
/// configured limit as there, and the figures 3.4 measures are measured.
#[test]
fn stats_page_matches_debians_fields_and_fills_them() {
    let work = tempfile::tempdir().unwrap();
    let start = |kind| {
        let port = free_port();
        let d = common::Daemon::start(
            kind,
            work.path(),
            &["--stats", "--stats-port", &port.to_string(), "--jobs", "3"],
            &[],
        );
        wait_for_port(port);
        (d, port)
    };
    let (_debian, debian_port) = start(common::Kind::Debian);
    let (ours, our_port) = start(common::Kind::Ours);
    let (debian_head, debian_fields) = stats_page(debian_port);
    let mut s = TcpStream::connect(("127.0.0.1", ours.port)).unwrap();
    s.write_all(&hello_request()).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    assert_eq!(
        protocol::decode_reply(&reply, 2, Limits::default())
            .unwrap()
            .0
            .status,
        0
    );
    let (our_head, our_fields) = stats_page(our_port);
    assert_eq!(our_head, debian_head);
    let names = |f: &[(String, String)]| f.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(names(&our_fields), names(&debian_fields));
    let get = |f: &[(String, String)], k: &str| {
        f.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(get(&debian_fields, "dcc_max_kids"), "3", "3.4: the limit");
    assert_eq!(get(&our_fields, "dcc_max_kids"), "3");
    assert_eq!(get(&our_fields, "dcc_compile_ok"), "1");
    for k in [
        "dcc_num_compiles1",
        "dcc_num_compiles2",
        "dcc_num_compiles3",
    ] {
        assert_eq!(get(&our_fields, k), "1", "{k}");
    }
    let rss: u64 = get(&our_fields, "dcc_max_RSS").parse().unwrap();
    assert!(rss > 0, "the compiler's peak RSS");
    assert_eq!(get(&our_fields, "dcc_max_RSS_name"), "(gcc)");
    let io: i64 = get(&our_fields, "dcc_io_rate").parse().unwrap();
    assert!(io >= 0, "measured from daemon start: {io}");
    for k in ["dcc_avg_kids1", "dcc_avg_kids2", "dcc_avg_kids3"] {
        let v: u64 = get(&our_fields, k).parse().unwrap();
        assert!(v <= 3, "{k} {v}");
    }
}

/// `--log-level notice` (distccd's default) logs the job summary only; `info` adds the
/// per-job detail (the connection, `job complete`); `--verbose` shows all of it. The same
/// holds for Debian's distccd 3.4, checked side by side.
#[test]
fn notice_logs_summaries_and_info_adds_job_detail() {
    let work = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], bool)] = &[
        (&["--log-level", "notice"], false),
        (&["--log-level", "info"], true),
        (&["--verbose"], true),
    ];
    for kind in [common::Kind::Debian, common::Kind::Ours] {
        for (opts, detail) in cases {
            let d = common::Daemon::start(kind, work.path(), opts, &[]);
            let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
            s.write_all(&hello_request()).unwrap();
            let mut reply = Vec::new();
            s.read_to_end(&mut reply).unwrap();
            let log = common::wait_for_log(&d.log, "COMPILE_OK");
            let log = if *detail {
                common::wait_for_log(&d.log, "job complete")
            } else {
                log
            };
            assert!(
                log.contains("COMPILE_OK exit:0"),
                "{kind:?} {opts:?}: {log}"
            );
            for line in ["job complete", "connection from 127.0.0.1"] {
                assert_eq!(
                    log.contains(line),
                    *detail,
                    "{kind:?} {opts:?}: {line:?} in\n{log}"
                );
            }
            if !detail {
                // Besides summaries (the start-up probe's too), only warnings and errors.
                let others: Vec<&str> = log
                    .lines()
                    .filter(|l| {
                        !l.contains(" client: ") && !l.contains("ERROR") && !l.contains("Warning")
                    })
                    .collect();
                assert!(
                    others.is_empty(),
                    "{kind:?} {opts:?}: only summaries: {others:?}"
                );
            }
        }
    }
}
