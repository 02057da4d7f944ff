//! When a host lets the client down, the build still gets a correct object: a dead host, a
//! host that refuses us, a daemon killed in the middle of a job, a server that answers
//! garbage or a truncated object. Host faults leave a backoff file; the user's own compile
//! errors do not (distcc 3.4 backs off a healthy host there; we deliberately don't).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const SRC: &str = "int add(int a, int b) { return a + b; }\n";

fn setup() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("x.c"), SRC).unwrap();
    let ok = run(Command::new("gcc")
        .args(["-c", "x.c", "-o", "ref.o"])
        .current_dir(t.path()));
    assert!(ok.status.success());
    t
}

fn compile(t: &Path, hosts: &str, env: &[(&str, &str)], compiler: &str) -> Output {
    let mut cmd = client_cmd(&distcc(), &t.join("dd"), hosts);
    cmd.args([compiler, "-c", "x.c", "-o", "x.o"])
        .current_dir(t);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn assert_good_object(t: &Path) {
    assert_eq!(
        fs::read(t.join("x.o")).unwrap(),
        fs::read(t.join("ref.o")).unwrap(),
        "the object must be what a local compile gives"
    );
}

fn backoff_file(t: &Path, port: u16) -> std::path::PathBuf {
    t.join(format!("dd/lock/backoff_tcp_127.0.0.1_{port}_0"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn host_down_falls_back_locally_and_backs_off() {
    let t = setup();
    let port = free_port();
    let o = compile(t.path(), &format!("127.0.0.1:{port}"), &[], "gcc");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "failed to distribute x.c to 127.0.0.1:{port}, running locally instead"
        )),
        "{}",
        stderr(&o)
    );
    assert_good_object(t.path());
    assert_eq!(fs::read(backoff_file(t.path(), port)).unwrap(), b"x");
    // While backed off, the host is not even tried.
    let o = compile(
        t.path(),
        &format!("127.0.0.1:{port}"),
        &[("DISTCC_VERBOSE", "1")],
        "gcc",
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(!stderr(&o).contains("failed to connect"), "{}", stderr(&o));
}

#[test]
fn fallback_disabled_gives_distccs_exit_code() {
    let t = setup();
    let port = free_port();
    let o = compile(
        t.path(),
        &format!("127.0.0.1:{port}"),
        &[("DISTCC_FALLBACK", "0")],
        "gcc",
    );
    assert_eq!(o.status.code(), Some(116), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("fallbacks are disabled"),
        "{}",
        stderr(&o)
    );
    assert!(!t.path().join("x.o").exists());
    // Without backoff the real cause shows: connect failed (103), after bounded retries.
    let o = compile(
        t.path(),
        &format!("127.0.0.1:{port}"),
        &[("DISTCC_FALLBACK", "0"), ("DISTCC_BACKOFF_PERIOD", "0")],
        "gcc",
    );
    assert_eq!(o.status.code(), Some(103), "{}", stderr(&o));
}

#[test]
fn backoff_disabled_does_not_loop_forever() {
    let t = setup();
    let port = free_port();
    let o = compile(
        t.path(),
        &format!("127.0.0.1:{port}"),
        &[("DISTCC_BACKOFF_PERIOD", "0")],
        "gcc",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_good_object(t.path());
    assert!(!backoff_file(t.path(), port).exists());
}

#[test]
fn refusing_daemon() {
    refusing(Kind::Debian);
}

#[test]
fn refusing_daemon_ours() {
    refusing(Kind::Ours);
}

fn refusing(kind: Kind) {
    let t = setup();
    let d = Daemon::start(kind, t.path(), &["--allow", "10.9.9.9"], &[]);
    let o = compile(t.path(), &format!("127.0.0.1:{},lzo", d.port), &[], "gcc");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("failed to distribute"),
        "{}",
        stderr(&o)
    );
    assert_good_object(t.path());
    assert!(backoff_file(t.path(), d.port).exists());
}

#[test]
fn daemon_killed_mid_job() {
    let t = setup();
    let slow = t.path().join("slowcc");
    // Slow only on the server side (not for -E, and not for our local fallback, which
    // runs in the test's cwd with x.c present: it sleeps there too, which is fine).
    // The server's compiler runs as distccd's unprivileged user: the marker dir is writable.
    let started = world_writable_dir(t.path(), "mark").join("compiling");
    script(
        &slow,
        &format!(
            "case \" $* \" in *\" -E \"*) ;; *) touch {}; sleep 3 ;; esac\nexec gcc \"$@\"",
            started.display()
        ),
    );
    let mut d = Daemon::start(Kind::Debian, t.path(), &["--enable-tcp-insecure"], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);
    let tp = t.path().to_path_buf();
    let slow_s = slow.to_str().unwrap().to_string();
    let client = std::thread::spawn(move || compile(&tp, &hosts, &[], &slow_s));
    // The server's compiler is running: now the daemon dies mid-job.
    common::wait_for_file(&started);
    assert!(d.log_text().is_empty() || !d.log_text().contains("COMPILE_OK"));
    d.kill();
    let o = client.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("failed to distribute"),
        "{}",
        stderr(&o)
    );
    assert_good_object(t.path());
    assert!(backoff_file(t.path(), d.port).exists());
}

/// A fake server that reads the request head and answers with `reply`, then closes.
fn fake_server(reply: Vec<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { break };
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let _ = s.write_all(&reply);
        }
    });
    port
}

#[test]
fn garbage_reply() {
    let t = setup();
    let port = fake_server(b"HTTP/1.0 400 Bad Request\r\n\r\nnot distcc at all".to_vec());
    let o = compile(t.path(), &format!("127.0.0.1:{port}"), &[], "gcc");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("failed to distribute"),
        "{}",
        stderr(&o)
    );
    assert_good_object(t.path());
    assert!(backoff_file(t.path(), port).exists());
}

#[test]
fn truncated_object_is_never_left_behind() {
    let t = setup();
    // A valid reply head announcing a 1000-byte object, then only 10 bytes of it.
    let mut reply = b"DONE00000001STAT00000000SERR00000000SOUT00000000DOTO000003e8".to_vec();
    reply.extend_from_slice(b"0123456789");
    let port = fake_server(reply);
    let o = compile(
        t.path(),
        &format!("127.0.0.1:{port}"),
        &[("DISTCC_FALLBACK", "0"), ("DISTCC_BACKOFF_PERIOD", "0")],
        "gcc",
    );
    assert_eq!(o.status.code(), Some(108), "{}", stderr(&o));
    assert!(!t.path().join("x.o").exists(), "no partial object");
    let leftovers: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("x.o"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // With fallback on, the build gets a good object anyway.
    let o = compile(t.path(), &format!("127.0.0.1:{port}"), &[], "gcc");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_good_object(t.path());
}

#[test]
fn users_compile_error_is_not_the_hosts_fault() {
    let t = setup();
    fs::write(t.path().join("x.c"), "int broken( { return 1; }\n").unwrap();
    let d = Daemon::start(Kind::Debian, t.path(), &[], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);
    let o = compile(t.path(), &hosts, &[], "gcc");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("remote compilation of 'x.c' failed, retrying locally"),
        "{e}"
    );
    assert!(e.contains("error:"), "{e}");
    assert!(
        !backoff_file(t.path(), d.port).exists(),
        "no backoff for a user error"
    );
    assert!(!t.path().join("x.o").exists());
    // DISTCC_SKIP_LOCAL_RETRY: the server's diagnostics are final.
    let o = compile(t.path(), &hosts, &[("DISTCC_SKIP_LOCAL_RETRY", "1")], "gcc");
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("error:"), "{e}");
    assert!(!e.contains("retrying locally"), "{e}");
    assert_eq!(d.settled_count("COMPILE_ERROR"), 1 + 1, "{}", d.log_text());
}

#[test]
fn interrupted_client_leaves_no_temp_files() {
    use std::os::unix::process::ExitStatusExt;
    let t = setup();
    let tmp = t.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let slow = t.path().join("slowcc");
    // The server's compiler runs as distccd's unprivileged user: the marker dir is writable.
    let started = world_writable_dir(t.path(), "mark").join("compiling");
    script(
        &slow,
        &format!(
            "case \" $* \" in *\" -E \"*) ;; *) touch {}; sleep 3 ;; esac\nexec gcc \"$@\"",
            started.display()
        ),
    );
    let d = Daemon::start(Kind::Debian, t.path(), &["--enable-tcp-insecure"], &[]);
    let mut child = client_cmd(
        &distcc(),
        &t.path().join("dd"),
        &format!("127.0.0.1:{}", d.port),
    )
    .env("TMPDIR", &tmp)
    .args([slow.to_str().unwrap(), "-c", "x.c", "-o", "x.o"])
    .current_dir(t.path())
    .spawn()
    .unwrap();
    // Wait until the job is on the server (the client's temp files exist meanwhile).
    common::wait_for_file(&started);
    assert!(
        fs::read_dir(&tmp).unwrap().count() > 0,
        "the client's temp files should exist while the server compiles"
    );
    // SAFETY: signalling a child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGINT));
    let left: Vec<_> = fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!t.path().join("x.o").exists());
}

#[test]
fn missing_output_directory_fails_like_gcc() {
    let t = setup();
    let d = Daemon::start(Kind::Debian, t.path(), &[], &[]);
    let mut cmd = client_cmd(
        &distcc(),
        &t.path().join("dd"),
        &format!("127.0.0.1:{}", d.port),
    );
    let o = cmd
        .args(["gcc", "-c", "x.c", "-o", "nodir/x.o"])
        .current_dir(t.path())
        .output()
        .unwrap();
    let local = Command::new("gcc")
        .args(["-c", "x.c", "-o", "nodir/x.o"])
        .current_dir(t.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), local.status.code());
    assert!(!t.path().join("nodir").exists());
    assert!(
        !backoff_file(t.path(), d.port).exists(),
        "not the host's fault"
    );
}

#[test]
fn a_dead_host_is_skipped_for_the_next_one() {
    let t = setup();
    let dead = free_port();
    let d = Daemon::start(Kind::Debian, t.path(), &[], &[]);
    let o = compile(
        t.path(),
        &format!("127.0.0.1:{dead} 127.0.0.1:{}", d.port),
        &[("DISTCC_FALLBACK", "0")],
        "gcc",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_good_object(t.path());
    assert_eq!(d.compile_ok_count(), 1, "{}", d.log_text());
    assert!(backoff_file(t.path(), dead).exists());
    assert!(!backoff_file(t.path(), d.port).exists());
}

#[test]
fn user_error_without_fallback_shows_the_servers_diagnostics() {
    let t = setup();
    fs::write(t.path().join("x.c"), "int broken( { return 1; }\n").unwrap();
    let d = Daemon::start(Kind::Debian, t.path(), &[], &[]);
    let o = compile(
        t.path(),
        &format!("127.0.0.1:{},lzo", d.port),
        &[("DISTCC_FALLBACK", "0")],
        "gcc",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("error:"), "{}", stderr(&o));
    // distcc 3.4 leaves the host backed off for 60 s here; a typo is not the host's fault.
    assert!(!backoff_file(t.path(), d.port).exists());
    assert_eq!(d.settled_count("COMPILE_ERROR"), 1);
}

#[test]
fn missing_ssh_program_falls_back() {
    let t = setup();
    let o = compile(
        t.path(),
        "@box",
        &[("DISTCC_SSH", "/nonexistent/ssh")],
        "gcc",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("failed to distribute x.c to @box"),
        "{}",
        stderr(&o)
    );
    assert_good_object(t.path());
    assert!(t.path().join("dd/lock/backoff_ssh_box_0").exists());
}

#[test]
fn save_temps_keeps_the_servers_stderr() {
    // The Gentoo wiki's way to see a remote error that the local retry hides.
    let t = setup();
    fs::write(t.path().join("x.c"), "int broken( { return 1; }\n").unwrap();
    let tmp = t.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let d = Daemon::start(Kind::Ours, t.path(), &[], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);
    let tmp_s = tmp.to_str().unwrap();
    let o = compile(
        t.path(),
        &hosts,
        &[("DISTCC_SAVE_TEMPS", "1"), ("TMPDIR", tmp_s)],
        "gcc",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let kept: Vec<_> = fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("distcc_server_stderr_") && name.ends_with(".txt")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let text = fs::read_to_string(&kept[0]).unwrap();
    assert!(text.contains("error:"), "the server's diagnostics: {text}");
    // Without DISTCC_SAVE_TEMPS nothing more is left behind (the first run also kept its
    // preprocessed source, as it should).
    let before = fs::read_dir(&tmp).unwrap().count();
    let o = compile(t.path(), &hosts, &[("TMPDIR", tmp_s)], "gcc");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), before);
}

#[test]
fn a_cpp_host_outside_pump_is_warned_about() {
    let t = setup();
    let d = Daemon::start(Kind::Ours, t.path(), &[], &[]);
    let o = compile(
        t.path(),
        &format!("127.0.0.1:{},cpp,lzo", d.port),
        &[],
        "gcc",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("INCLUDE_SERVER_PORT is not set (did you forget to run pump?)"),
        "{}",
        stderr(&o)
    );
    assert_good_object(t.path());
    assert_eq!(d.settled_count("COMPILE_OK"), 1, "{}", d.log_text());
}

#[test]
fn no_host_list_at_all_is_warned_about() {
    // Hide the system's /etc/distcc (Debian's package has one) in a private mount namespace.
    let t = setup();
    let home = t.path().join("home");
    fs::create_dir(&home).unwrap();
    let o = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs none /etc/distcc && exec \"$0\" \"$@\"",
        ])
        .arg(distcc())
        .args(["gcc", "-c", "x.c", "-o", "x.o"])
        .env_remove("DISTCC_HOSTS")
        .env_remove("DISTCC_DIR")
        .env("HOME", &home)
        .current_dir(t.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no hostlist is set; can't distribute work"),
        "{}",
        stderr(&o)
    );
    assert_good_object(t.path());
    // With fallbacks off, the exit status Debian's distcc gives in the same place.
    let status = |program: &std::path::Path| {
        Command::new("unshare")
            .args([
                "-m",
                "sh",
                "-c",
                "mount -t tmpfs none /etc/distcc && exec \"$0\" \"$@\"",
            ])
            .arg(program)
            .args(["gcc", "-c", "x.c", "-o", "x.o"])
            .env_remove("DISTCC_HOSTS")
            .env_remove("DISTCC_DIR")
            .env("HOME", &home)
            .env("DISTCC_FALLBACK", "0")
            .current_dir(t.path())
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(status(&distcc()), Some(116));
    assert_eq!(status(std::path::Path::new("/usr/bin/distcc")), Some(116));
}
