//! Shared helpers for integration tests: free ports, our distccd or Debian's on 127.0.0.1
//! (stopped by PID when dropped), scripts, client commands with a clean distcc environment.
#![allow(dead_code)]

pub mod lan;
pub mod lua;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Our binary; applets are picked by argv[0] or by `distcc <applet>`.
pub fn distcc() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_distcc"))
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A directory everybody can write: a daemon started as root drops to `distcc`/`nobody`,
/// which must be able to write its log.
pub fn world_writable_dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    fs::create_dir_all(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// Write an executable shell script.
pub fn script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Which distccd to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ours,
    Debian,
}

/// A distccd on 127.0.0.1 at a free port, killed by PID when dropped.
pub struct Daemon {
    pub kind: Kind,
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Daemon {
    /// Start a daemon with extra options and environment. `--allow 127.0.0.1` is added
    /// unless `extra` has its own `--allow`.
    pub fn start(kind: Kind, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_on(kind, dir, extra, env, 3)
    }

    fn start_on(
        kind: Kind,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        tries: u32,
    ) -> Daemon {
        let port = free_port();
        let logdir = world_writable_dir(dir, &format!("dlog{port}"));
        let log = logdir.join("distccd.log");
        fs::write(&log, "").unwrap();
        fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).unwrap();
        let mut cmd = match kind {
            Kind::Ours => {
                let mut c = Command::new(distcc());
                c.arg("distccd");
                // Its key pair goes to the test's dir, not the machine's /etc/distcc.
                if !extra.contains(&"--key-dir")
                    && !env.iter().any(|(k, _)| *k == "DISTCCD_KEY_DIR")
                {
                    c.env("DISTCCD_KEY_DIR", dir.join(format!("keys{port}")));
                }
                c
            }
            Kind::Debian => Command::new("/usr/bin/distccd"),
        };
        cmd.args(["--daemon", "--no-detach", "--listen", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--log-file", log.to_str().unwrap(), "--log-level", "info"]);
        if !extra.contains(&"--allow") {
            cmd.args(["--allow", "127.0.0.1"]);
        }
        if !extra.contains(&"--jobs") {
            cmd.args(["--jobs", "8"]);
        }
        cmd.args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start distccd");
        let mut d = Daemon {
            kind,
            child,
            port,
            log,
        };
        match wait_until_listening(&mut d.child, port) {
            Ok(()) => d,
            // Another test's daemon took the port first: try another one.
            Err(status) if status.code() == Some(BIND_FAILED) && tries > 1 => {
                Self::start_on(kind, dir, extra, env, tries - 1)
            }
            Err(status) => panic!("{kind:?} distccd exited with {status}: {}", d.log_text()),
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Jobs the daemon logged as compiled successfully. A daemon logs a job's summary just
    /// after sending its reply, so wait until the count holds still for a moment.
    pub fn compile_ok_count(&self) -> usize {
        self.settled_count("COMPILE_OK")
    }

    /// How many times `needle` is in the log, once that number holds still for a moment.
    pub fn settled_count(&self, needle: &str) -> usize {
        let count = || self.log_text().matches(needle).count();
        let mut last = count();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(50));
            let now = count();
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }

    /// Is the process still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill(&mut self) {
        // SAFETY: kill(2) on the PID of a child we started and have not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client command with a clean distcc environment of its own.
pub fn client_cmd(program: &Path, distcc_dir: &Path, hosts: &str) -> Command {
    let mut cmd = Command::new(program);
    client_env(&mut cmd, distcc_dir, hosts);
    cmd
}

/// Give `cmd` (e.g. one that runs on a [`lan::Host`]) the clean distcc environment of
/// [`client_cmd`]: no inherited DISTCC_*/CCACHE* variables, its own DISTCC_DIR and hosts.
pub fn client_env(cmd: &mut Command, distcc_dir: &Path, hosts: &str) {
    // Made here so tests can put files in it before the first client runs.
    fs::create_dir_all(distcc_dir).unwrap();
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("DISTCC_") || k == "_DISTCC_SAFEGUARD" || k.starts_with("CCACHE") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("DISTCC_DIR", distcc_dir)
        .env("DISTCC_HOSTS", hosts)
        .env("DISTCC_PAUSE_TIME_MSEC", "50")
        // No racing a late job locally: tests count which machine compiled what.
        .env("DISTCC_RACE", "0");
}

/// The captured distcc 3.4 conversations (tests/fixtures/wire-distcc-3.4, see its README).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wire-distcc-3.4")
        .join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A child process killed (SIGTERM) and reaped when dropped.
pub struct Pid(pub Child);

impl Drop for Pid {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// distccd's exit status (ours and 3.4's) when it can't bind its port.
pub const BIND_FAILED: i32 = 102;

/// Wait (up to 10 s) until `child` itself listens on `port`; `Err` with its status if it
/// exits first. A connect alone is not enough: [`free_port`] can give two tests running at
/// once the same port, and then the second daemon exits while the first one answers.
pub fn wait_until_listening(child: &mut Child, port: u16) -> Result<(), ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !holds_listener(child.id(), port) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(status);
        }
        assert!(
            Instant::now() < deadline,
            "process {} did not start listening on port {port}",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Does process `pid` have open the TCP socket listening on `port` (any address)?
pub fn holds_listener(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && *state == "0A" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
    })
}

/// Wait (up to 10 s) until something listens on 127.0.0.1:port.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// A log file's text once it contains `needle` (daemons log a job's summary just after
/// the reply, so the client may finish first); gives up after 5 s and returns what is there.
pub fn wait_for_log(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait (up to 20 s) until `path` exists: a marker a script touches when it reaches the state
/// a test needs, instead of a sleep that is long enough on a quiet machine.
pub fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A protocol-1 request: `argv` and the (already preprocessed) source.
pub fn plain_request(argv: &[&str], source: &[u8]) -> Vec<u8> {
    distcc::protocol::encode_request(&distcc::protocol::Request {
        version: 1,
        cwd: None,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        body: distcc::protocol::Body::Source(distcc::protocol::Payload::Plain(source.to_vec())),
    })
    .expect("encode a request")
}

/// Send bytes to a daemon on 127.0.0.1, read until it closes; what it sent back.
pub fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the daemon");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set a read timeout");
    let _ = s.write_all(bytes);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    reply
}

/// A background include server started by `pump --startup` (its `export` lines read back),
/// sent SIGTERM by PID when dropped.
pub struct PumpStartup {
    pub pid: String,
    pub dir: String,
    pub port: String,
}

impl PumpStartup {
    /// Run `cmd` (a client command, e.g. from [`client_cmd`]) as `pump --startup`.
    pub fn run(cmd: &mut Command) -> PumpStartup {
        let out = cmd.args(["pump", "--startup"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let var = |name: &str| -> String {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("export {name}='")))
                .unwrap_or_else(|| panic!("{name} missing: {text}"));
            line.split('\'').nth(1).unwrap().to_string()
        };
        PumpStartup {
            pid: var("INCLUDE_SERVER_PID"),
            dir: var("INCLUDE_SERVER_DIR"),
            port: var("INCLUDE_SERVER_PORT"),
        }
    }
}

impl Drop for PumpStartup {
    fn drop(&mut self) {
        if let Ok(pid) = self.pid.parse::<i32>() {
            // SAFETY: kill(2) on the PID `pump --startup` printed for the server it started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// `program ARGS` run in `dir` (a local compile), which must succeed.
pub fn compile_here(program: &str, dir: &Path, args: &[&str]) -> Output {
    let o = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// `distcc program ARGS` in `dir` with `DISTCC_DIR=dir/dd`, no fallback, verbose (its stderr
/// shows how it preprocessed and what it sent) and `env`; it must succeed.
pub fn distcc_here(
    dir: &Path,
    hosts: &str,
    env: &[(&str, &str)],
    program: &str,
    args: &[&str],
) -> Output {
    let o = client_cmd(&distcc(), &dir.join("dd"), hosts)
        .env("DISTCC_FALLBACK", "0")
        .env("DISTCC_VERBOSE", "1")
        .envs(env.iter().copied())
        .arg(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// stderr without our own `distcc[PID] …` log lines: what the compiler said.
pub fn compiler_stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| !l.starts_with("distcc["))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The memo a client with `DISTCC_DIR=dir/dd` keeps of the daemon at 127.0.0.1:`port`
/// (its last extension answer), or "" before it has one.
pub fn ext_memo(dir: &Path, port: u16) -> String {
    fs::read_to_string(dir.join("dd/ext").join(format!("tcp_127.0.0.1_{port}"))).unwrap_or_default()
}

/// A C++ source using libstdc++, whose c++config.h defines a macro as
/// `__has_include(<tbb/tbb.h>)`: what a check that keeps macros must let through.
pub const LIBSTDCXX_SOURCE: &str = "#include <string>\n#include <vector>\n#include <algorithm>\n\
    int n(std::vector<std::string> v) { std::sort(v.begin(), v.end()); return v.size(); }\n";
