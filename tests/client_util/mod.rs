//! Shared helpers for the client's integration tests: free ports, Debian's distccd as a
//! server (started on 127.0.0.1, stopped by PID), the test project, byte comparisons.
#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Our binary.
pub fn distcc() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_distcc"))
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A directory everybody can write: Debian's distccd, started as root, runs jobs as
/// `nobody`, which must be able to write its log.
pub fn world_writable_dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    fs::create_dir_all(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// An executable shell script.
pub fn script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    let _ = fs::set_permissions(path.parent().unwrap(), fs::Permissions::from_mode(0o755));
}

/// Debian's /usr/bin/distccd on 127.0.0.1, killed by PID when dropped.
pub struct DebianDaemon {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl DebianDaemon {
    /// Start with extra options (e.g. `--allow 10.9.9.9`, `--enable-tcp-insecure`).
    /// `--allow 127.0.0.1` is added unless `extra` has an `--allow`.
    pub fn start(dir: &Path, extra: &[&str]) -> DebianDaemon {
        let port = free_port();
        let logdir = world_writable_dir(dir, &format!("dlog{port}"));
        let log = logdir.join("distccd.log");
        fs::write(&log, "").unwrap();
        fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).unwrap();
        let mut cmd = Command::new("/usr/bin/distccd");
        cmd.args([
            "--daemon",
            "--no-detach",
            "--listen",
            "127.0.0.1",
            "--jobs",
            "8",
        ])
        .args(["--port", &port.to_string()])
        .args(["--log-file", log.to_str().unwrap(), "--log-level", "info"]);
        if !extra.contains(&"--allow") {
            cmd.args(["--allow", "127.0.0.1"]);
        }
        cmd.args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start /usr/bin/distccd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "distccd did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        DebianDaemon { child, port, log }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Number of jobs the daemon logged as compiled successfully.
    pub fn compile_ok_count(&self) -> usize {
        self.log_text().matches("COMPILE_OK").count()
    }

    pub fn kill(&mut self) {
        // SAFETY: kill(2) on the PID of a child we started and have not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for DebianDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client command with a clean distcc environment of its own.
pub fn client_cmd(program: &Path, distcc_dir: &Path, hosts: &str) -> Command {
    // distcc never creates an explicit DISTCC_DIR (only its lock/ and state/ inside).
    fs::create_dir_all(distcc_dir).unwrap();
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("DISTCC_") || k == "_DISTCC_SAFEGUARD" || k.starts_with("CCACHE") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("DISTCC_DIR", distcc_dir)
        .env("DISTCC_HOSTS", hosts)
        .env("DISTCC_PAUSE_TIME_MSEC", "50");
    cmd
}

/// Copy tests/project into `dest`.
pub fn copy_project(dest: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/project");
    let st = Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(dest)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Every file under `dir/obj` ending in one of `exts`, relative, sorted.
pub fn outputs(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    fn walk(base: &Path, d: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, exts, out);
            } else if exts.iter().any(|x| p.extension().is_some_and(|e| e == *x)) {
                out.push(p.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &dir.join("obj"), exts, &mut out);
    out.sort();
    out
}

/// Assert two project builds produced the same objects and .d files, byte for byte.
pub fn assert_same_outputs(reference: &Path, built: &Path) {
    let want = outputs(reference, &["o", "d"]);
    let got = outputs(built, &["o", "d"]);
    assert_eq!(want, got, "different sets of outputs");
    assert_eq!(
        want.len(),
        10,
        "5 objects and 5 .d files expected: {want:?}"
    );
    for f in &want {
        let a = fs::read(reference.join(f)).unwrap();
        let b = fs::read(built.join(f)).unwrap();
        assert!(a == b, "{} differs from a local compile's", f.display());
    }
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    if !out.status.success() {
        eprintln!(
            "command failed: {:?}\nstdout: {}\nstderr: {}",
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Build the project locally (no distcc) as the reference.
pub fn reference_build(dir: &Path) {
    copy_project(dir);
    let out = run(Command::new("make")
        .args(["-s", "-j4", "CC=gcc", "CXX=g++"])
        .current_dir(dir));
    assert!(out.status.success());
}
