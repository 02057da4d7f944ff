//! The live-daemon target: captured distcc 3.4 requests, mutated, sent to our real distccd.
//! After every case the daemon must still be running, its job directories must be gone (but
//! for the pump job dirs it keeps for the next job: no more than its job slots, each holding
//! nothing but its tree) and nothing may have appeared in its working directory; every few
//! cases (and at the end) an
//! honest request must still compile, and the daemon's RSS and open descriptors must stay
//! bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use distcc::protocol::{self, Limits};

/// The daemon's RSS may not pass this (ours holds 64 jobs in ~5 MB).
const MAX_RSS_KB: u64 = 200 * 1024;
/// Nor its open descriptors (listening sockets, log, a few in-flight jobs).
const MAX_FDS: usize = 64;
/// The daemon's job slots: as many pump job dirs may stay between jobs.
const JOBS: usize = 4;

pub struct LiveDaemon {
    child: Child,
    port: u16,
    work: PathBuf,
}

impl Drop for LiveDaemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a child we started and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

impl LiveDaemon {
    pub fn start(bin: &Path, work: PathBuf) -> LiveDaemon {
        let masq = work.join("masq");
        let (cwd, tmp) = (work.join("cwd"), work.join("tmp"));
        // Started as root, distccd drops to an unprivileged user, which must be able to
        // write its log and job dirs here.
        for d in [&work, &masq, &cwd, &tmp] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            let mode = std::os::unix::fs::PermissionsExt::from_mode(0o777);
            let _ = std::fs::set_permissions(d, mode);
        }
        // The captures name Debian's triple compilers; gcc and g++ are whitelisted too.
        for name in ["gcc", "g++", "x86_64-linux-gnu-gcc", "x86_64-linux-gnu-g++"] {
            let _ = std::os::unix::fs::symlink("/usr/bin/gcc", masq.join(name));
        }
        let port = free_port();
        let child = Command::new(bin)
            .arg("distccd")
            .args(["--daemon", "--no-detach", "--listen", "127.0.0.1"])
            .args([
                "--allow",
                "127.0.0.1",
                "--jobs",
                &JOBS.to_string(),
                "--port",
            ])
            .arg(port.to_string())
            .arg("--log-file")
            .arg(work.join("distccd.log"))
            .args(["--log-level", "warning"])
            .current_dir(&cwd)
            .env("TMPDIR", &tmp)
            .env("DISTCCD_MASQUERADE_DIRS", &masq)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut d = LiveDaemon { child, port, work };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(d.alive(), "distccd exited at start");
            assert!(Instant::now() < deadline, "distccd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Send a case and read what comes back until the daemon closes (or 20 s pass).
    /// `hang_up` half-closes after the bytes, so a truncated case ends at once instead of
    /// waiting out the daemon's I/O timeout (the daemon takes that for a client that left).
    pub fn send(&self, bytes: &[u8], hang_up: bool) -> Vec<u8> {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return Vec::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
        let _ = s.write_all(bytes);
        if hang_up {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        reply
    }

    /// An honest protocol-2 job (the p2-hello capture) still compiles.
    pub fn check_serves(&self, good: &[u8]) -> Result<(), String> {
        let bytes = self.send(good, false);
        match protocol::decode_reply(&bytes, 2, Limits::default()) {
            Ok((r, _)) if r.status == 0 && !r.object.is_empty() => Ok(()),
            Ok((r, _)) => Err(format!(
                "honest job failed: status {} {}",
                r.status,
                String::from_utf8_lossy(&r.stderr)
            )),
            Err(e) => Err(format!("honest job got no reply: {e}; log: {}", self.log())),
        }
    }

    fn proc_status(&self, key: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// RSS, descriptors: within bounds?
    pub fn check_bounded(&self) -> Result<(), String> {
        let rss = self.proc_status("VmRSS:");
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0);
        if rss > MAX_RSS_KB {
            return Err(format!("daemon RSS {rss} kB"));
        }
        if fds > MAX_FDS {
            return Err(format!("daemon holds {fds} descriptors"));
        }
        Ok(())
    }

    /// The job's temp dirs are removed (or, for a pump job, tidied down to its tree and
    /// kept) and nothing landed in the daemon's cwd: wait for it.
    pub fn check_clean(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let names = |d: &Path| -> Vec<String> {
            std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        };
        loop {
            let kept = |p: &Path| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("distccd_"))
                    && names(p) == ["root"]
            };
            let all: Vec<PathBuf> = ["tmp", "cwd"]
                .iter()
                .flat_map(|d| std::fs::read_dir(self.work.join(d)).into_iter().flatten())
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            let pooled = all
                .iter()
                .filter(|p| p.parent() == Some(&self.work.join("tmp")) && kept(p))
                .count();
            let left: Vec<String> = all
                .iter()
                .filter(|p| !(p.parent() == Some(&self.work.join("tmp")) && kept(p)))
                .map(|p| p.display().to_string())
                .collect();
            if left.is_empty() && pooled <= JOBS {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "left behind: {left:?}, {pooled} pump job dirs kept"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.work.join("distccd.log")).unwrap_or_default()
    }
}
