//! A remote job that runs far longer than its host's recent jobs is raced by a local
//! compile when a local slot is free, and whichever finishes first is the job's result:
//! the other is stopped, and nothing of it is left behind.

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SRC: &str = "int add(int a, int b) { return a + b; }\n";

struct Setup {
    t: tempfile::TempDir,
    /// The sources and outputs, and nothing else.
    src: PathBuf,
    /// The client's TMPDIR.
    tmp: PathBuf,
    /// Marker files the wrapper scripts look at and write.
    flag: PathBuf,
    masq: PathBuf,
}

fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("x.c"), SRC).unwrap();
    let refdir = t.path().join("ref");
    fs::create_dir(&refdir).unwrap();
    fs::write(refdir.join("x.c"), SRC).unwrap();
    let ok = run(Command::new("gcc")
        .args(["-c", "x.c", "-o", "x.o"])
        .current_dir(&refdir));
    assert!(ok.status.success());
    let tmp = t.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let flag = world_writable_dir(t.path(), "flag");
    let masq = world_writable_dir(t.path(), "masq");
    Setup {
        t,
        src,
        tmp,
        flag,
        masq,
    }
}

impl Setup {
    fn daemon(&self) -> Daemon {
        let path = format!("{}:/usr/bin:/bin", self.masq.display());
        // The stand-in compiler leaves its pid in the flag dir, outside its job dir: the
        // namespace sandbox would make that read-only.
        Daemon::start(
            Kind::Ours,
            self.t.path(),
            &["--no-sandbox"],
            &[
                ("DISTCCD_MASQUERADE_DIRS", self.masq.to_str().unwrap()),
                ("DISTCCD_PATH", &path),
            ],
        )
    }

    fn log(&self) -> PathBuf {
        self.t.path().join("client.log")
    }

    fn client(&self, port: u16, extra: &[&str], path: Option<&Path>) -> Command {
        let mut cmd = client_cmd(
            &distcc(),
            &self.t.path().join("dd"),
            &format!("127.0.0.1:{port}"),
        );
        cmd.arg("gcc")
            .args(extra)
            .args(["-c", "x.c", "-o", "x.o"])
            .current_dir(&self.src)
            .env("TMPDIR", &self.tmp)
            .env("DISTCC_LOG", self.log())
            .env("DISTCC_NO_REWRITE_CROSS", "1")
            // (client_cmd turns racing off, for the other tests' determinism.)
            .env("DISTCC_RACE", "1");
        if let Some(dir) = path {
            cmd.env("PATH", format!("{}:/usr/bin:/bin", dir.display()));
        }
        cmd
    }

    fn history(&self, port: u16) -> String {
        let p = self
            .t
            .path()
            .join(format!("dd/race/host_tcp_127.0.0.1_{port}"));
        fs::read_to_string(&p).unwrap_or_default()
    }

    fn assert_object_is_local_gccs(&self) {
        assert_eq!(
            fs::read(self.src.join("x.o")).unwrap(),
            fs::read(self.t.path().join("ref/x.o")).unwrap(),
            "the object must be what a local gcc gives"
        );
    }

    /// Only `want` in the source dir, nothing in TMPDIR.
    fn assert_no_leftovers(&self, want: &[&str]) {
        let mut names: Vec<String> = fs::read_dir(&self.src)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, want, "temp files left next to the output");
        let tmp: Vec<_> = fs::read_dir(&self.tmp).unwrap().collect();
        assert!(tmp.is_empty(), "temp files left in TMPDIR: {tmp:?}");
    }

    /// Five fast, successful jobs on the host: enough history to race.
    fn build_history(&self, port: u16, extra: &[&str], path: Option<&Path>) {
        for _ in 0..5 {
            let o = run(&mut self.client(port, extra, path));
            assert!(o.status.success());
        }
        let h = self.history(port);
        assert!(h.starts_with("v1 5 "), "history after five jobs: {h:?}");
        let log = fs::read_to_string(self.log()).unwrap();
        assert!(!log.contains("racing"), "{log}");
    }
}

/// Run `cmd`, killing it (and failing) if it runs past `limit`.
fn output_within(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish_within(child, started, limit)
}

fn finish_within(mut child: Child, started: Instant, limit: Duration) -> (Output, Duration) {
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the client still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    (
        Output {
            status,
            stdout,
            stderr,
        },
        took,
    )
}

/// The pid a wrapper script wrote into `file`.
fn read_pid(file: &Path) -> i32 {
    wait_for_file(file);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(p) = fs::read_to_string(file).unwrap_or_default().trim().parse() {
            return p;
        }
        assert!(Instant::now() < deadline, "no pid in {}", file.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Is `pid` running (not gone, not a zombie)?
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn wait_gone(pid: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "{what} ({pid}) still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_hung_server_loses_to_the_local_compile() {
    let s = setup();
    // The server's gcc hangs for ten minutes once `hang` exists.
    script(
        &s.masq.join("gcc"),
        &format!(
            "if [ -e {f}/hang ]; then echo $$ > {f}/remote.pid; exec sleep 600; fi\n\
             exec /usr/bin/gcc \"$@\"",
            f = s.flag.display()
        ),
    );
    let d = s.daemon();
    s.build_history(d.port, &["-MD"], None);
    fs::write(s.flag.join("hang"), "").unwrap();
    fs::remove_file(s.src.join("x.o")).unwrap();
    fs::remove_file(s.src.join("x.d")).unwrap();

    let (o, took) = output_within(s.client(d.port, &["-MD"], None), Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    s.assert_object_is_local_gccs();
    let dotd = fs::read_to_string(s.src.join("x.d")).unwrap();
    assert!(dotd.starts_with("x.o: x.c"), "{dotd}");
    let log = fs::read_to_string(s.log()).unwrap();
    assert!(log.contains("racing it with a local compile"), "{log}");
    assert!(
        log.contains("race for x.c: the local compile won (status 0)"),
        "{log}"
    );
    // The server noticed the client leave and killed its compiler.
    let remote = read_pid(&s.flag.join("remote.pid"));
    wait_gone(remote, "the server's compiler");
    let dlog = wait_for_log(&d.log, "disconnected, compiler killed");
    assert!(dlog.contains("disconnected, compiler killed"), "{dlog}");
    s.assert_no_leftovers(&["x.c", "x.d", "x.o"]);
    // Late is not dead: no backoff, but the host is raced sooner next time.
    let backoff =
        s.t.path()
            .join(format!("dd/lock/backoff_tcp_127.0.0.1_{}_0", d.port));
    assert!(!backoff.exists(), "a late host was backed off");
    let h = s.history(d.port);
    assert!(
        h.starts_with("v1 5 ") && h.trim_end().ends_with(" 1"),
        "{h:?}"
    );
}

#[test]
fn a_remote_reply_during_the_race_wins_and_stops_the_local_compile() {
    let s = setup();
    // The server's gcc waits for `release` once `slow` exists (a minute at most).
    script(
        &s.masq.join("gcc"),
        &format!(
            "if [ -e {f}/slow ]; then\n\
               n=0; while [ ! -e {f}/release ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done\n\
             fi\n\
             exec /usr/bin/gcc \"$@\"",
            f = s.flag.display()
        ),
    );
    // The client's own gcc never finishes a compile (-c) once `localslow` exists; the
    // preprocessor (-E) runs normally.
    let bin = s.t.path().join("bin");
    fs::create_dir(&bin).unwrap();
    script(
        &bin.join("gcc"),
        &format!(
            "case \" $* \" in *\" -c \"*) if [ -e {f}/localslow ]; then \
               echo $$ > {f}/local.pid; exec sleep 600; fi;; esac\n\
             exec /usr/bin/gcc \"$@\"",
            f = s.flag.display()
        ),
    );
    let d = s.daemon();
    s.build_history(d.port, &[], Some(&bin));
    fs::write(s.flag.join("slow"), "").unwrap();
    fs::write(s.flag.join("localslow"), "").unwrap();
    fs::remove_file(s.src.join("x.o")).unwrap();

    let started = Instant::now();
    let mut cmd = s.client(d.port, &[], Some(&bin));
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The race has started: let the server answer.
    let local = read_pid(&s.flag.join("local.pid"));
    assert!(alive(local));
    fs::write(s.flag.join("release"), "").unwrap();
    let (o, took) = finish_within(child, started, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    s.assert_object_is_local_gccs();
    let log = fs::read_to_string(s.log()).unwrap();
    assert!(log.contains("racing it with a local compile"), "{log}");
    assert!(
        log.contains(&format!(
            "race for x.c: 127.0.0.1:{} answered first",
            d.port
        )),
        "{log}"
    );
    assert!(!log.contains("the local compile won"), "{log}");
    wait_gone(local, "the local compile");
    s.assert_no_leftovers(&["x.c", "x.o"]);
    let h = s.history(d.port);
    assert!(
        h.starts_with("v1 6 ") && h.trim_end().ends_with(" 0"),
        "{h:?}"
    );
}
