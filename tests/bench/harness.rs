//! The benchmark harness: our distcc against Debian's distcc 3.4, side by side, in one run.
//!
//! The machines this runs on are shared and noisy, so every figure is a median over
//! interleaved rounds (ours, theirs, ours, theirs, …) and is reported as a ratio to its
//! counterpart; an absolute time on its own means little. Everything listens on loopback,
//! on free ports; every daemon is stopped by its pid when its guard drops.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// Shared with the integration tests (tests/common/lua.rs): the Lua tree from `lua-src`.
#[path = "../common/lua.rs"]
mod lua;
pub use lua::{crate_root, lua_sources};

/// How big a run is.
#[derive(Debug, Clone)]
pub struct Options {
    /// Our binary (target/release/distcc).
    pub ours: PathBuf,
    /// Where scratch files go (tests/bench/work).
    pub work: PathBuf,
    /// Jobs per round in the per-job suite.
    pub jobs: usize,
    /// Interleaved rounds per measurement.
    pub rounds: usize,
    /// Daemon counts for the scheduler suite.
    pub ks: Vec<usize>,
    /// Build Lua (needs `cargo fetch` of lua-src).
    pub real_build: bool,
    /// In-flight jobs for the memory suite.
    pub mem_jobs: usize,
}

/// One line of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    pub suite: &'static str,
    pub metric: String,
    pub ours: String,
    pub theirs: String,
    pub ratio: String,
    pub target: String,
    pub verdict: String,
}

fn row(suite: &'static str, metric: impl Into<String>) -> Row {
    Row {
        suite,
        metric: metric.into(),
        ours: "-".into(),
        theirs: "-".into(),
        ratio: "-".into(),
        target: "-".into(),
        verdict: "-".into(),
    }
}

fn pass(ok: bool) -> String {
    if ok { "PASS" } else { "FAIL" }.into()
}

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Which distcc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Ours,
    Theirs,
}

/// A daemon on `addr:port`, stopped by pid when dropped.
pub struct Daemon {
    child: Child,
    pub port: u16,
    pub addr: String,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(
        opts: &Options,
        side: Side,
        addr: &str,
        jobs: usize,
        env: &[(&str, String)],
    ) -> Result<Daemon, String> {
        let port = free_port();
        let log = opts
            .work
            .join(format!("distccd-{side:?}-{addr}-{port}.log"));
        let _ = fs::write(&log, "");
        let _ = fs::set_permissions(&log, fs::Permissions::from_mode(0o666));
        let mut cmd = match side {
            Side::Ours => {
                let mut c = Command::new(&opts.ours);
                c.arg("distccd");
                c
            }
            Side::Theirs => Command::new("/usr/bin/distccd"),
        };
        cmd.args([
            "--daemon",
            "--no-detach",
            "--listen",
            addr,
            "--allow",
            "127.0.0.0/8",
        ])
        .args(["--port", &port.to_string(), "--jobs", &jobs.to_string()])
        .args([
            "--log-file",
            log.to_str().unwrap_or_default(),
            "--log-level",
            "info",
        ])
        .args(["-N", "0"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("start {side:?} distccd: {e}"))?;
        let mut d = Daemon {
            child,
            port,
            addr: addr.to_owned(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((addr, port)).is_err() {
            if Instant::now() > deadline || matches!(d.child.try_wait(), Ok(Some(_))) {
                return Err(format!("{side:?} distccd on {addr}:{port} did not start"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(d)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn compile_ok(&self) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("COMPILE_OK")
            .count()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The scratch world: compilers, whitelist, sources.
pub struct World {
    pub opts: Options,
    pub bin: PathBuf,
    pub cmdlist: PathBuf,
    pub src: PathBuf,
    pub path: String,
}

fn write_exec(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
}

fn gcc(args: &[&str]) -> Result<(), String> {
    let ok = Command::new("gcc")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(format!("gcc {args:?} failed"))
    }
}

impl World {
    pub fn new(opts: &Options) -> Result<World, String> {
        let _ = fs::remove_dir_all(&opts.work);
        // Daemons started as root run jobs as `distcc`: it must reach the work dir.
        if let Some(parent) = opts.work.parent() {
            let _ = fs::set_permissions(parent, fs::Permissions::from_mode(0o755));
        }
        let bin = opts.work.join("bin");
        let src = opts.work.join("src");
        for d in [&opts.work, &bin, &src] {
            fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            let _ = fs::set_permissions(d, fs::Permissions::from_mode(0o777));
        }
        // The no-op compiler writes an empty object; the sleeping one waits 200 ms first
        // (and only when compiling, not for `-E`).
        let noop = r#"#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int compile = 0; const char *out = 0; int ms = SLEEP_MS;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c")) compile = 1;
        if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[i + 1];
    }
    if (compile && ms) usleep(ms * 1000);
    if (out) { FILE *f = fopen(out, "w"); if (f) { fputs("o", f); fclose(f); } }
    return 0;
}
"#;
        let c = opts.work.join("noop.c");
        fs::write(&c, noop).map_err(|e| e.to_string())?;
        gcc(&[
            "-O2",
            "-DSLEEP_MS=0",
            "-o",
            bin.join("noopcc").to_str().unwrap_or_default(),
            c.to_str().unwrap_or_default(),
        ])?;
        gcc(&[
            "-O2",
            "-DSLEEP_MS=200",
            "-o",
            bin.join("sleepcc").to_str().unwrap_or_default(),
            c.to_str().unwrap_or_default(),
        ])?;
        gcc(&[
            "-O2",
            "-DSLEEP_MS=2000",
            "-o",
            bin.join("slowcc").to_str().unwrap_or_default(),
            c.to_str().unwrap_or_default(),
        ])?;
        let triple = String::from_utf8(
            Command::new("gcc")
                .arg("-dumpmachine")
                .output()
                .map_err(|e| e.to_string())?
                .stdout,
        )
        .unwrap_or_default()
        .trim()
        .to_owned();
        let mut list = String::new();
        for name in ["noopcc", "sleepcc", "slowcc"] {
            let _ = writeln!(list, "{}", bin.join(name).display());
        }
        for name in ["gcc", "cc", &format!("{triple}-gcc"), "clang"] {
            let _ = writeln!(list, "/usr/bin/{name}");
        }
        let cmdlist = opts.work.join("cmdlist");
        fs::write(&cmdlist, list).map_err(|e| e.to_string())?;
        fs::write(src.join("x.c"), "int x;\n").map_err(|e| e.to_string())?;
        fs::write(
            src.join("hello.c"),
            "#include <stdio.h>\nint main(void) { printf(\"Hallo distcc!\\n\"); return 0; }\n",
        )
        .map_err(|e| e.to_string())?;
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Ok(World {
            opts: opts.clone(),
            bin,
            cmdlist,
            src,
            path,
        })
    }

    pub fn daemon(&self, side: Side, addr: &str, jobs: usize) -> Result<Daemon, String> {
        Daemon::start(
            &self.opts,
            side,
            addr,
            jobs,
            &[("DISTCC_CMDLIST", self.cmdlist.display().to_string())],
        )
    }

    /// A client command for `side` with its own DISTCC_DIR.
    pub fn client(&self, side: Side, hosts: &str, tag: &str) -> Command {
        let dir = self.opts.work.join(format!("dd-{side:?}-{tag}"));
        let _ = fs::create_dir_all(&dir);
        let mut c = match side {
            Side::Ours => Command::new(&self.opts.ours),
            Side::Theirs => Command::new("/usr/bin/distcc"),
        };
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("DISTCC") || k == "_DISTCC_SAFEGUARD" {
                c.env_remove(&k);
            }
        }
        c.env("DISTCC_DIR", &dir)
            .env("DISTCC_HOSTS", hosts)
            .env("DISTCC_FALLBACK", "0")
            .env("DISTCC_BACKOFF_PERIOD", "0")
            .env("PATH", &self.path)
            .current_dir(&self.src)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }
}

/// A command for `program` with the environment a client command for `side` would get.
fn with_client_env(world: &World, side: Side, hosts: &str, tag: &str, program: &Path) -> Command {
    let client = world.client(side, hosts, tag);
    let mut cmd = Command::new(program);
    for (k, v) in client.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

/// Run `n` jobs of `args` one after another; seconds taken, and failures.
fn sequential(
    world: &World,
    side: Option<Side>,
    hosts: &str,
    args: &[&str],
    n: usize,
    tag: &str,
) -> (f64, usize) {
    let start = Instant::now();
    let mut failed = 0;
    for i in 0..n {
        let out = format!("{tag}-{i}.o");
        let status = match side {
            Some(s) => world
                .client(s, hosts, tag)
                .args(args)
                .args(["-o", &out])
                .status(),
            None => Command::new(args[0])
                .args(&args[1..])
                .args(["-o", &out])
                .current_dir(&world.src)
                .env("PATH", &world.path)
                .status(),
        };
        if !status.map(|s| s.success()).unwrap_or(false) {
            failed += 1;
        }
    }
    (start.elapsed().as_secs_f64(), failed)
}

/// `threads` loops of `per` jobs each, at once; jobs per second.
fn concurrent(
    world: &World,
    side: Side,
    hosts: &str,
    args: &[&str],
    threads: usize,
    per: usize,
) -> (f64, usize) {
    let start = Instant::now();
    let failed: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || sequential(world, Some(side), hosts, args, per, &format!("c{t}")).1)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(per)).sum()
    });
    (
        (threads * per) as f64 / start.elapsed().as_secs_f64(),
        failed,
    )
}

/// Suite 1: the cost of distcc itself, per job.
pub fn per_job(world: &World, rows: &mut Vec<Row>) -> Result<(), String> {
    let ours = world.daemon(Side::Ours, "127.0.0.1", 8)?;
    let theirs = world.daemon(Side::Theirs, "127.0.0.1", 8)?;
    let hosts = |d: &Daemon| format!("127.0.0.1:{}/8", d.port);
    let n = world.opts.jobs;
    for (label, args) in [
        ("no-op compiler", &["noopcc", "-c", "x.c"][..]),
        ("gcc hello.c", &["gcc", "-c", "hello.c"][..]),
    ] {
        let (mut o, mut t, mut l) = (Vec::new(), Vec::new(), Vec::new());
        let mut failures = 0;
        for _ in 0..world.opts.rounds {
            let (s, f) = sequential(world, Some(Side::Ours), &hosts(&ours), args, n, "seq");
            o.push(s * 1000.0 / n as f64);
            failures += f;
            let (s, f) = sequential(world, Some(Side::Theirs), &hosts(&theirs), args, n, "seq");
            t.push(s * 1000.0 / n as f64);
            failures += f;
            let (s, _) = sequential(world, None, "", args, n, "local");
            l.push(s * 1000.0 / n as f64);
        }
        let (o, t, l) = (median(&mut o), median(&mut t), median(&mut l));
        let mut r = row("per-job", format!("{label}: ms/job, concurrency 1"));
        r.ours = format!("{o:.2}");
        r.theirs = format!("{t:.2}");
        r.ratio = format!("{:.2}", o / t);
        if label == "no-op compiler" {
            r.target = "≤ 2 ms and ≤ 0.33".into();
            r.verdict = pass(o <= 2.0 && o / t <= 0.34);
        }
        if failures > 0 {
            r.verdict = format!("{failures} jobs failed");
        }
        rows.push(r);
        let mut r = row("per-job", format!("{label}: local, ms/job"));
        r.ours = format!("{l:.2}");
        r.theirs = format!("{l:.2}");
        rows.push(r);
        if label == "gcc hello.c" {
            let mut r = row("per-job", "gcc hello.c: overhead over local, ms/job");
            r.ours = format!("{:.2}", o - l);
            r.theirs = format!("{:.2}", t - l);
            r.ratio = format!("{:.2}", (o - l) / (t - l));
            r.target = "≤ 0.33".into();
            r.verdict = pass((o - l) / (t - l) <= 0.34);
            rows.push(r);
        }
    }
    // Throughput with 8 clients at once.
    let per = (n / 2).max(2);
    let (mut o, mut t) = (Vec::new(), Vec::new());
    let mut failures = 0;
    for _ in 0..world.opts.rounds {
        let (r, f) = concurrent(
            world,
            Side::Ours,
            &hosts(&ours),
            &["noopcc", "-c", "x.c"],
            8,
            per,
        );
        o.push(r);
        failures += f;
        let (r, f) = concurrent(
            world,
            Side::Theirs,
            &hosts(&theirs),
            &["noopcc", "-c", "x.c"],
            8,
            per,
        );
        t.push(r);
        failures += f;
    }
    let (o, t) = (median(&mut o), median(&mut t));
    let mut r = row("per-job", "no-op compiler: jobs/s, concurrency 8");
    r.ours = format!("{o:.0}");
    r.theirs = format!("{t:.0}");
    r.ratio = format!("{:.2}", o / t);
    r.target = "≥ 1000 jobs/s".into();
    r.verdict = if failures > 0 {
        format!("{failures} jobs failed")
    } else {
        pass(o >= 1000.0)
    };
    rows.push(r);
    Ok(())
}

/// Build every Lua .c with make -j; seconds.
fn lua_build(
    world: &World,
    lua: &Path,
    dir: &Path,
    cc: &str,
    hosts: &str,
    side: Option<Side>,
    pump: bool,
) -> Result<f64, String> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut objs = Vec::new();
    let mut mk = String::from("CFLAGS = -O2 -Wall -DLUA_COMPAT_5_3\n");
    for e in fs::read_dir(lua).map_err(|e| e.to_string())?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".c") {
            objs.push(format!("{stem}.o"));
            let _ = writeln!(
                mk,
                "{stem}.o: {}\n\t$(CC) $(CFLAGS) -c $< -o $@",
                e.path().display()
            );
        }
    }
    objs.sort();
    mk = format!("all: {}\n{mk}", objs.join(" "));
    fs::write(dir.join("Makefile"), mk).map_err(|e| e.to_string())?;
    let mut cmd = match (side, pump) {
        (Some(s), false) => with_client_env(world, s, hosts, "lua", Path::new("make")),
        (Some(s), true) => {
            let mut c = with_client_env(world, s, hosts, "lua", &world.opts.ours);
            c.args(["pump", "make"]);
            c
        }
        (None, _) => Command::new("make"),
    };
    cmd.env_remove("DISTCC_FALLBACK");
    let start = Instant::now();
    let ok = cmd
        .args(["-s", "-j8", &format!("CC={cc}")])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        return Err(format!("lua build with {cc} failed"));
    }
    Ok(start.elapsed().as_secs_f64())
}

fn same_objects(a: &Path, b: &Path) -> (usize, usize) {
    let (mut same, mut total) = (0, 0);
    for e in fs::read_dir(a).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "o") {
            total += 1;
            if fs::read(&p).ok() == fs::read(b.join(e.file_name())).ok() {
                same += 1;
            }
        }
    }
    (same, total)
}

/// What of an object's debug info and code a local build must match, with what only
/// names the compiler's command line (`DW_AT_producer`) left out: `readelf`'s decoded
/// DWARF info and line tables, string and DIE offsets blanked (a longer producer string
/// moves them), then the disassembly with relocations. `None` if a tool failed.
fn debug_view(p: &Path) -> Option<String> {
    let run = |cmd: &str, args: &[&str]| -> Option<String> {
        let out = Command::new(cmd).args(args).arg(p).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mut view = String::new();
    for line in run("readelf", &["-wi", "-wl"])?.lines() {
        if line.contains("DW_AT_producer") {
            continue;
        }
        // Leading `<level><offset>` / `<offset>` of a DIE line.
        let mut rest = line.trim_start();
        while let Some(r) = rest.strip_prefix('<')
            && let Some((inner, after)) = r.split_once('>')
            && inner.bytes().all(|c| c.is_ascii_hexdigit())
        {
            rest = after.trim_start();
        }
        // `(indirect string, offset: 0x1234)` and the like.
        let mut out = String::new();
        let mut text = rest;
        while let Some(i) = text.find("offset: 0x") {
            let (head, tail) = text.split_at(i + "offset: 0x".len());
            out.push_str(head);
            out.push('X');
            text = tail.trim_start_matches(|c: char| c.is_ascii_hexdigit());
        }
        out.push_str(text);
        view.push_str(&out);
        view.push('\n');
    }
    // Skip objdump's header (it names the file).
    for line in run("objdump", &["-d", "-r"])?.lines().skip(3) {
        view.push_str(line);
        view.push('\n');
    }
    Some(view)
}

/// Objects of `a` byte-identical in `b`, identical but for `DW_AT_producer`, and all.
fn same_objects_but_producer(a: &Path, b: &Path) -> (usize, usize, usize) {
    let (mut same, mut producer, mut total) = (0, 0, 0);
    for e in fs::read_dir(a).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "o") {
            total += 1;
            let q = b.join(e.file_name());
            if fs::read(&p).ok() == fs::read(&q).ok() {
                same += 1;
            } else if let (Some(x), Some(y)) = (debug_view(&p), debug_view(&q))
                && x == y
            {
                producer += 1;
            }
        }
    }
    (same, producer, total)
}

/// Suite 2: a real C code base over loopback.
pub fn real_build(world: &World, rows: &mut Vec<Row>) -> Result<(), String> {
    let (lua, version) = lua_sources(&world.opts.work)?;
    let ours = world.daemon(Side::Ours, "127.0.0.1", 4)?;
    let theirs = world.daemon(Side::Theirs, "127.0.0.1", 4)?;
    let w = &world.opts.work;
    let oc = format!("{} gcc", world.opts.ours.display());
    let tc = "/usr/bin/distcc gcc".to_string();
    let (mut o, mut t, mut l) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..world.opts.rounds.min(3) {
        l.push(lua_build(
            world,
            &lua,
            &w.join("lua-local"),
            "gcc",
            "",
            None,
            false,
        )?);
        o.push(lua_build(
            world,
            &lua,
            &w.join("lua-ours"),
            &oc,
            &format!("127.0.0.1:{}/4,lzo", ours.port),
            Some(Side::Ours),
            false,
        )?);
        t.push(lua_build(
            world,
            &lua,
            &w.join("lua-theirs"),
            &tc,
            &format!("127.0.0.1:{}/4,lzo", theirs.port),
            Some(Side::Theirs),
            false,
        )?);
    }
    let (o, t, l) = (median(&mut o), median(&mut t), median(&mut l));
    let (same, total) = same_objects(&w.join("lua-local"), &w.join("lua-ours"));
    let remote = ours.compile_ok();
    let mut r = row(
        "real build",
        format!("{version} make -j8: s (ours/theirs), vs local"),
    );
    r.ours = format!("{o:.2}");
    r.theirs = format!("{t:.2}");
    r.ratio = format!("{:.2}", o / t);
    r.target = "ours/distcc ≤ 1.00".into();
    r.verdict = pass(o / t <= 1.0);
    rows.push(r);
    let mut r = row("real build", "ours/local (local gcc make -j8)");
    r.ours = format!("{o:.2}");
    r.theirs = format!("{l:.2} (local)");
    r.ratio = format!("{:.2}", o / l);
    r.target = "≤ 1.00".into();
    r.verdict = pass(o / l <= 1.0);
    rows.push(r);
    let mut r = row("real build", "objects equal to local / compiled remotely");
    r.ours = format!("{same}/{total} equal, {remote} remote");
    r.verdict = pass(same == total && total > 0 && remote >= total);
    rows.push(r);
    // Compatibility: each client with the other's daemon.
    let before_t = theirs.compile_ok();
    let x1 = lua_build(
        world,
        &lua,
        &w.join("lua-ours-theirs"),
        &oc,
        &format!("127.0.0.1:{}/4,lzo", theirs.port),
        Some(Side::Ours),
        false,
    )?;
    let (s1, n1) = same_objects(&w.join("lua-local"), &w.join("lua-ours-theirs"));
    let before_o = ours.compile_ok();
    let x2 = lua_build(
        world,
        &lua,
        &w.join("lua-theirs-ours"),
        &tc,
        &format!("127.0.0.1:{}/4,lzo", ours.port),
        Some(Side::Theirs),
        false,
    )?;
    let (s2, n2) = same_objects(&w.join("lua-local"), &w.join("lua-theirs-ours"));
    let mut r = row(
        "real build",
        "mixed: our client→their daemon / their client→our daemon",
    );
    r.ours = format!(
        "{x1:.2}s, {s1}/{n1} equal, {} remote",
        theirs.compile_ok() - before_t
    );
    r.theirs = format!(
        "{x2:.2}s, {s2}/{n2} equal, {} remote",
        ours.compile_ok() - before_o
    );
    r.verdict = pass(s1 == n1 && s2 == n2 && n1 > 0);
    rows.push(r);
    Ok(())
}

/// Suite 3: K daemons of 4 slots, a 200 ms compiler, make -j(4K) of 10×4K jobs.
pub fn scheduler(world: &World, rows: &mut Vec<Row>) -> Result<(), String> {
    for &k in &world.opts.ks {
        let jobs = 10 * 4 * k;
        let ideal = 10.0 * 0.2;
        let mut eff = [0.0f64; 2];
        for (i, side) in [Side::Ours, Side::Theirs].into_iter().enumerate() {
            let daemons: Vec<Daemon> = (0..k)
                .map(|j| world.daemon(side, &format!("127.0.0.{}", j + 2), 4))
                .collect::<Result<_, _>>()?;
            let hosts: Vec<String> = daemons
                .iter()
                .map(|d| format!("{}:{}/4", d.addr, d.port))
                .collect();
            let dir = world.opts.work.join(format!("sched-{side:?}-{k}"));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let mut mk = String::from("all:");
            for j in 0..jobs {
                let _ = write!(mk, " j{j}.o");
            }
            mk.push_str("\n%.o: x.c\n\t$(CC) -c x.c -o $@\n");
            // x.c first, and `make -r`: with make's built-in `%: %.o` and our `%.o: x.c`,
            // an x.c newer than the Makefile (its mtime a clock tick later) made make
            // "remake" the Makefile through the fake compiler, which wrote "o" into it.
            fs::write(dir.join("x.c"), "int x;\n").map_err(|e| e.to_string())?;
            fs::write(dir.join("Makefile"), mk).map_err(|e| e.to_string())?;
            let mut m = with_client_env(
                world,
                side,
                &hosts.join(" "),
                &format!("sched{k}"),
                Path::new("make"),
            );
            let cc = match side {
                Side::Ours => format!("{} sleepcc", world.opts.ours.display()),
                Side::Theirs => "/usr/bin/distcc sleepcc".into(),
            };
            let start = Instant::now();
            let log = dir.join("make.log");
            let ok = m
                .args(["-r", "-s", &format!("-j{}", 4 * k), &format!("CC={cc}")])
                .env("DISTCC_PAUSE_TIME_MSEC", "1000")
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).map_err(|e| e.to_string())?)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                // Say why on the bench's stderr: the row only says "build failed".
                let text = fs::read_to_string(&log).unwrap_or_default();
                eprintln!("scheduler K={k} {side:?}: build failed:\n{text}");
            }
            let took = start.elapsed().as_secs_f64();
            // A failed build (some job failed with fallbacks off) is reported, not fatal.
            eff[i] = if ok { ideal / took } else { f64::NAN };
        }
        let mut r = row(
            "scheduler",
            format!("efficiency, K={k} daemons × 4 slots, {jobs} jobs of 200 ms"),
        );
        let show = |e: f64| {
            if e.is_nan() {
                "build failed".to_owned()
            } else {
                format!("{e:.2}")
            }
        };
        r.ours = show(eff[0]);
        r.theirs = show(eff[1]);
        r.ratio = format!("{:.2}", eff[0] / eff[1]);
        match k {
            16 => {
                r.target = "≥ 0.95".into();
                r.verdict = pass(eff[0] >= 0.95);
            }
            64 => {
                r.target = "≥ 0.90".into();
                r.verdict = pass(eff[0] >= 0.90);
            }
            _ => {}
        }
        rows.push(r);
    }
    Ok(())
}

/// `VmHWM` of a process, kB.
fn hwm_kb(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// Pids whose process group is `pgid` (Debian's distccd preforks into its group).
fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the `(comm)`: state ppid pgrp …
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            out.push(pid);
        }
    }
    out
}

/// Suite 4: memory.
pub fn memory(world: &World, rows: &mut Vec<Row>) -> Result<(), String> {
    let n = world.opts.mem_jobs;
    let mut daemon_kb = [(0u64, 0u64); 2];
    for (i, side) in [Side::Ours, Side::Theirs].into_iter().enumerate() {
        let d = world.daemon(side, "127.0.0.1", n)?;
        let hosts = format!("127.0.0.1:{}/{n}", d.port);
        let clients: Vec<Child> = (0..n)
            .filter_map(|j| {
                world
                    .client(side, &hosts, &format!("mem{j}"))
                    .args(["slowcc", "-c", "x.c", "-o", &format!("m{j}.o")])
                    .spawn()
                    .ok()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: getpgid on a live child.
        let pgid = unsafe { libc::getpgid(d.pid() as i32) } as u32;
        let members: Vec<u32> = group_members(pgid)
            .into_iter()
            .filter(|p| {
                fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim().starts_with("distcc"))
            })
            .collect();
        let own = hwm_kb(d.pid()).unwrap_or(0);
        let sum: u64 = members.iter().filter_map(|p| hwm_kb(*p)).sum();
        daemon_kb[i] = (own, sum.max(own));
        for mut c in clients {
            let _ = c.wait();
        }
    }
    let mut r = row(
        "memory",
        format!("daemon peak RSS with {n} jobs in flight, MB (own process / whole group)"),
    );
    r.ours = format!(
        "{:.1} / {:.1}",
        daemon_kb[0].0 as f64 / 1024.0,
        daemon_kb[0].1 as f64 / 1024.0
    );
    r.theirs = format!(
        "{:.1} / {:.1}",
        daemon_kb[1].0 as f64 / 1024.0,
        daemon_kb[1].1 as f64 / 1024.0
    );
    r.ratio = format!(
        "{:.2}",
        daemon_kb[0].1 as f64 / daemon_kb[1].1.max(1) as f64
    );
    r.target = "≤ 20 MB".into();
    r.verdict = pass(daemon_kb[0].1 <= 20 * 1024);
    rows.push(r);
    // A client's peak RSS for one job: /usr/bin/time's %M.
    let d_ours = world.daemon(Side::Ours, "127.0.0.1", 4)?;
    let d_theirs = world.daemon(Side::Theirs, "127.0.0.1", 4)?;
    let mut kb = [0u64; 2];
    for (i, (side, d)) in [(Side::Ours, &d_ours), (Side::Theirs, &d_theirs)]
        .into_iter()
        .enumerate()
    {
        let client = world.client(side, &format!("127.0.0.1:{}", d.port), "rss");
        let mut t = Command::new("/usr/bin/time");
        t.arg("-f")
            .arg("%M")
            .arg(client.get_program())
            .args(client.get_args())
            .args(["gcc", "-c", "hello.c", "-o", "rss.o"]);
        for (key, v) in client.get_envs() {
            match v {
                Some(v) => t.env(key, v),
                None => t.env_remove(key),
            };
        }
        let out = t
            .current_dir(&world.src)
            .output()
            .map_err(|e| format!("/usr/bin/time: {e}"))?;
        kb[i] = String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
    }
    let mut r = row("memory", "client peak RSS per job (gcc hello.c), MB");
    r.ours = format!("{:.1}", kb[0] as f64 / 1024.0);
    r.theirs = format!("{:.1}", kb[1] as f64 / 1024.0);
    r.ratio = format!("{:.2}", kb[0] as f64 / kb[1].max(1) as f64);
    rows.push(r);
    Ok(())
}

/// gcc -M's dependencies of `file` (compiled in `dir`), canonicalised.
fn gcc_m(dir: &Path, file: &str) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("gcc")
        .args(["-O2", "-M", file])
        .current_dir(dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("gcc -M {file} failed"));
    }
    let text = String::from_utf8_lossy(&out.stdout).replace("\\\n", " ");
    Ok(text
        .split_once(':')
        .map(|(_, deps)| deps)
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|p| dir.join(p).canonicalize().ok())
        .collect())
}

/// The Lua sources' names, sorted.
fn lua_files(lua: &Path) -> Result<Vec<String>, String> {
    let mut files: Vec<String> = fs::read_dir(lua)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".c"))
        .collect();
    files.sort();
    Ok(files)
}

/// Include analysis of every Lua file: (seconds for our analyser in one process, seconds
/// for `gcc -M` per file, files whose set ⊇ gcc -M's, files analysed).
pub fn analysis_vs_gcc_m(lua: &Path) -> Result<(f64, f64, usize, usize), String> {
    let files = lua_files(lua)?;
    let mut analyser = distcc::pump::Analyser::with_path(std::env::var_os("PATH"));
    let start = Instant::now();
    let mut closures = Vec::new();
    for f in &files {
        let argv: Vec<String> = ["gcc", "-O2", "-c", f.as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        closures.push(
            analyser
                .analyse(lua, &argv)
                .map_err(|e| format!("{f}: not covered: {}", e.0))?,
        );
    }
    let ours = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut deps = Vec::new();
    for f in &files {
        deps.push(gcc_m(lua, f)?);
    }
    let theirs = start.elapsed().as_secs_f64();
    let mut superset = 0;
    for (c, d) in closures.iter().zip(&deps) {
        let have: std::collections::BTreeSet<PathBuf> = c
            .files
            .iter()
            .chain(c.system_files.iter())
            .filter_map(|p| p.canonicalize().ok())
            .collect();
        if d.iter().all(|p| have.contains(p)) {
            superset += 1;
        }
    }
    Ok((ours, theirs, superset, files.len()))
}

/// Suite 5: pump mode — include analysis against gcc -M, and a pump build against a plain
/// one, both through our client and daemon.
pub fn pump(world: &World, rows: &mut Vec<Row>) -> Result<(), String> {
    let (lua, version) = lua_sources(&world.opts.work)?;
    let (ours, gcc, superset, n) = analysis_vs_gcc_m(&lua)?;
    let mut r = row(
        "pump",
        format!("include analysis of {version}, {n} files: ms (ours in-process / gcc -M per file)"),
    );
    r.ours = format!("{:.1}", ours * 1000.0);
    r.theirs = format!("{:.1} (gcc -M)", gcc * 1000.0);
    r.ratio = format!("{:.2}", ours / gcc);
    rows.push(r);
    let mut r = row("pump", "analyser's file set ⊇ gcc -M's");
    r.ours = format!("{superset}/{n} files");
    r.verdict = pass(superset == n);
    rows.push(r);
    let d = world.daemon(Side::Ours, "127.0.0.1", 4)?;
    let oc = format!("{} gcc", world.opts.ours.display());
    let w = &world.opts.work;
    let (mut plain, mut pumped) = (Vec::new(), Vec::new());
    for _ in 0..world.opts.rounds.min(3) {
        plain.push(lua_build(
            world,
            &lua,
            &w.join("lua-plain"),
            &oc,
            &format!("127.0.0.1:{}/4,lzo", d.port),
            Some(Side::Ours),
            false,
        )?);
        pumped.push(lua_build(
            world,
            &lua,
            &w.join("lua-pump"),
            &oc,
            &format!("127.0.0.1:{}/4,cpp,lzo", d.port),
            Some(Side::Ours),
            true,
        )?);
    }
    let (plain, pumped) = (median(&mut plain), median(&mut pumped));
    let (same, total) = same_objects(&w.join("lua-plain"), &w.join("lua-pump"));
    let mut r = row(
        "pump",
        format!("{version} make -j8 through our client+daemon: s (pump / plain)"),
    );
    r.ours = format!("{pumped:.2}");
    r.theirs = format!("{plain:.2} (plain)");
    r.ratio = format!("{:.2}", pumped / plain);
    r.verdict = if same == total && total > 0 {
        format!("{same}/{total} objects equal")
    } else {
        format!("FAIL: {same}/{total} objects equal")
    };
    rows.push(r);
    Ok(())
}

/// The big tree of the pump-scale suite: libcurl as the `curl-sys` crate vendors it, every
/// `.c` under `curl/lib` (about 200 files, 250 headers, configuration macros nested many
/// `#if`s deep), built with the Linux configuration of curl-sys's build script as plain
/// `-D` flags (no generated header).
pub struct Tree {
    /// Directory every path below is relative to.
    pub root: PathBuf,
    /// Sources, relative to `root`, sorted.
    pub files: Vec<String>,
    /// Compiler flags of every compile (before `-c`), as argv words.
    pub flags: Vec<String>,
    pub version: String,
}

const CURL_DEFINES: &[&str] = &[
    "BUILDING_LIBCURL",
    "CURL_DISABLE_DICT",
    "CURL_DISABLE_GOPHER",
    "CURL_DISABLE_IMAP",
    "CURL_DISABLE_LDAP",
    "CURL_DISABLE_LDAPS",
    "CURL_DISABLE_POP3",
    "CURL_DISABLE_RTSP",
    "CURL_DISABLE_SMB",
    "CURL_DISABLE_SMTP",
    "CURL_DISABLE_TELNET",
    "CURL_DISABLE_TFTP",
    "CURL_DISABLE_NTLM",
    "CURL_STATICLIB",
    "ENABLE_IPV6",
    "HAVE_SOCKADDR_IN6_SIN6_SCOPE_ID",
    "HAVE_ASSERT_H",
    "CURL_OS=\"unknown\"",
    "HAVE_ZLIB_H",
    "HAVE_LONGLONG",
    "HAVE_LIBZ",
    "HAVE_BOOL_T",
    "HAVE_STDBOOL_H",
    "HAVE_STDINT_H",
    "USE_RESOLV_THREADED",
    "HAVE_GETADDRINFO",
    "HAVE_GETPEERNAME",
    "HAVE_GETSOCKNAME",
    "RECV_TYPE_ARG1=int",
    "HAVE_PTHREAD_H",
    "HAVE_ARPA_INET_H",
    "HAVE_ERRNO_H",
    "HAVE_FCNTL_H",
    "HAVE_NETDB_H",
    "HAVE_NETINET_IN_H",
    "HAVE_NETINET_TCP_H",
    "HAVE_POLL_H",
    "HAVE_FCNTL_O_NONBLOCK",
    "HAVE_SYS_SELECT_H",
    "HAVE_SYS_STAT_H",
    "HAVE_SYS_TIME_H",
    "HAVE_UNISTD_H",
    "HAVE_RECV",
    "HAVE_SELECT",
    "HAVE_SEND",
    "HAVE_SOCKET",
    "HAVE_SOCKETPAIR",
    "HAVE_STRUCT_TIMEVAL",
    "HAVE_SYS_UN_H",
    "HAVE_THREADS_POSIX",
    "USE_UNIX_SOCKETS",
    "RECV_TYPE_ARG2=void*",
    "RECV_TYPE_ARG3=size_t",
    "RECV_TYPE_ARG4=int",
    "RECV_TYPE_RETV=ssize_t",
    "SEND_QUAL_ARG2=const",
    "SEND_TYPE_ARG1=int",
    "SEND_TYPE_ARG2=void*",
    "SEND_TYPE_ARG3=size_t",
    "SEND_TYPE_ARG4=int",
    "SEND_TYPE_RETV=ssize_t",
    "SIZEOF_CURL_OFF_T=8",
    "SIZEOF_INT=4",
    "SIZEOF_SHORT=2",
    "HAVE_CLOCK_GETTIME_MONOTONIC",
    "HAVE_GETTIMEOFDAY",
    "HAVE_POLL_FINE",
    "SIZEOF_SSIZE_T=8",
    "SIZEOF_SIZE_T=8",
    "SIZEOF_LONG=8",
];

/// Fetch curl-sys and describe its libcurl as a [`Tree`].
pub fn curl_tree(work: &Path) -> Result<Tree, String> {
    let krate = crate_root(work, "curl-sys", "=0.4.91")?;
    let root = krate.join("curl");
    let mut files = Vec::new();
    let mut dirs = vec![root.join("lib")];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d)
            .map_err(|e| format!("{}: {e}", d.display()))?
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "c")
                && let Ok(rel) = p.strip_prefix(&root)
            {
                files.push(rel.display().to_string());
            }
        }
    }
    files.sort();
    if files.len() < 150 {
        return Err(format!(
            "only {} .c files in {}",
            files.len(),
            root.display()
        ));
    }
    let mut flags: Vec<String> = ["-O2", "-g", "-fvisibility=hidden", "-Iinclude", "-Ilib"]
        .map(String::from)
        .to_vec();
    flags.extend(CURL_DEFINES.iter().map(|d| format!("-D{d}")));
    let version = krate
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Tree {
        root,
        files,
        flags,
        version,
    })
}

/// `'word'` for sh.
fn sh_quote(w: &str) -> String {
    format!("'{}'", w.replace('\'', "'\\''"))
}

/// What one `make -jN` of a [`Tree`] cost on the client side.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildCost {
    pub wall: f64,
    /// User+sys seconds of every process of the build (make, shells, distcc clients, their
    /// cpp, the pump process); the daemons are not children of the build and don't count.
    pub client_cpu: f64,
    /// The pump process's own user+sys seconds (pump builds).
    pub pump_cpu: f64,
    /// The pump process's peak RSS, kB (pump builds).
    pub pump_rss_kb: u64,
}

fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Has `pid` exited (without reaping it)?
fn exited(pid: u32, block: bool) -> bool {
    // SAFETY: waitid on our own child with WNOWAIT leaves it to be reaped by Child::wait.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOWAIT | if block { 0 } else { libc::WNOHANG };
    let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
    // SAFETY: si_pid is set when waitid reported a child.
    r == 0 && unsafe { info.si_pid() } != 0
}

/// A process's own user+sys seconds (readable while it is a zombie).
fn own_cpu(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // Fields after `(comm)`: state is 3, utime 14, stime 15 (1-based in proc(5)).
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // SAFETY: sysconf has no memory effects.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Build every file of `tree` with `make -j{jobs}` in `dir` (always the same dir for one
/// tree, so `-g` objects can be compared byte for byte), then move the objects to `keep`.
#[allow(clippy::too_many_arguments)]
pub fn tree_build(
    world: &World,
    tree: &Tree,
    dir: &Path,
    keep: &Path,
    cc: &str,
    hosts: &str,
    side: Option<Side>,
    pump: bool,
    jobs: usize,
) -> Result<BuildCost, String> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let flags: Vec<String> = tree.flags.iter().map(|f| sh_quote(f)).collect();
    let mut mk = format!("CFLAGS = {}\n", flags.join(" "));
    let mut objs = Vec::new();
    for f in &tree.files {
        let obj = format!("{}.o", f.trim_end_matches(".c").replace('/', "_"));
        let _ = writeln!(
            mk,
            "{}: {}\n\tcd {} && $(CC) $(CFLAGS) -c {f} -o {}",
            obj,
            tree.root.join(f).display(),
            tree.root.display(),
            dir.join(&obj).display()
        );
        objs.push(obj);
    }
    mk = format!("all: {}\n{mk}", objs.join(" "));
    fs::write(dir.join("Makefile"), mk).map_err(|e| e.to_string())?;
    let mut cmd = match (side, pump) {
        (Some(s), false) => with_client_env(world, s, hosts, "tree", Path::new("make")),
        (Some(s), true) => {
            let mut c = with_client_env(world, s, hosts, "tree", &world.opts.ours);
            c.args(["pump", "make"]);
            c
        }
        (None, _) => Command::new("make"),
    };
    let before = children_cpu();
    let start = Instant::now();
    let mut child = cmd
        .args(["-s", &format!("-j{jobs}"), &format!("CC={cc}")])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("make: {e}"))?;
    let pid = child.id();
    let mut hwm = 0;
    while !exited(pid, !pump) {
        hwm = hwm_kb(pid).unwrap_or(0).max(hwm);
        std::thread::sleep(Duration::from_millis(50));
    }
    let own = own_cpu(pid);
    let ok = child.wait().map(|s| s.success()).unwrap_or(false);
    let wall = start.elapsed().as_secs_f64();
    let client_cpu = children_cpu() - before;
    if !ok {
        return Err(format!("{} build with {cc} failed", tree.version));
    }
    let _ = fs::remove_dir_all(keep);
    fs::create_dir_all(keep).map_err(|e| e.to_string())?;
    for o in &objs {
        fs::rename(dir.join(o), keep.join(o)).map_err(|e| format!("{o}: {e}"))?;
    }
    Ok(BuildCost {
        wall,
        client_cpu,
        pump_cpu: if pump { own } else { 0.0 },
        pump_rss_kb: hwm,
    })
}

/// Include analysis of every file of `tree`: as [`analysis_vs_gcc_m`].
pub fn tree_analysis_vs_gcc_m(tree: &Tree) -> Result<(f64, f64, usize, usize), String> {
    let argv_of = |f: &str, m: bool| -> Vec<String> {
        let mut v = vec!["gcc".to_string()];
        v.extend(tree.flags.iter().cloned());
        v.extend([if m { "-M" } else { "-c" }.to_string(), f.to_string()]);
        v
    };
    let mut analyser = distcc::pump::Analyser::with_path(std::env::var_os("PATH"));
    let start = Instant::now();
    let mut closures = Vec::new();
    for f in &tree.files {
        closures.push(
            analyser
                .analyse(&tree.root, &argv_of(f, false))
                .map_err(|e| format!("{f}: not covered: {}", e.0))?,
        );
    }
    let ours = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut deps = Vec::new();
    for f in &tree.files {
        let argv = argv_of(f, true);
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(&tree.root)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("gcc -M {f} failed"));
        }
        let text = String::from_utf8_lossy(&out.stdout).replace("\\\n", " ");
        deps.push(
            text.split_once(':')
                .map(|(_, d)| d)
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|p| tree.root.join(p).canonicalize().ok())
                .collect::<Vec<_>>(),
        );
    }
    let theirs = start.elapsed().as_secs_f64();
    let superset = closures
        .iter()
        .zip(&deps)
        .filter(|(c, d)| {
            let have: std::collections::BTreeSet<PathBuf> = c
                .files
                .iter()
                .chain(c.system_files.iter())
                .filter_map(|p| p.canonicalize().ok())
                .collect();
            d.iter().all(|p| have.contains(p))
        })
        .count();
    Ok((ours, theirs, superset, tree.files.len()))
}

/// Jobs a daemon compiled since `before` lines of its log, and how many of them were
/// protocol 3 (the server got the `.c` itself, not a preprocessed `.i`).
fn jobs_since(d: &Daemon, before: usize) -> (usize, usize) {
    let text = fs::read_to_string(&d.log).unwrap_or_default();
    let ok: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("COMPILE_OK"))
        .skip(before)
        .collect();
    let p3 = ok.iter().filter(|l| l.trim_end().ends_with(".c")).count();
    (ok.len(), p3)
}

/// Our daemon's pump jobs so far: files (and links) sent, those kept from an earlier
/// job, and the jobs, from its `job complete` lines.
fn pump_files_kept(d: &Daemon) -> (usize, usize, usize) {
    let text = fs::read_to_string(&d.log).unwrap_or_default();
    let mut totals = (0, 0, 0);
    for line in text.lines() {
        let Some(tail) = line.split("; ").nth(1) else {
            continue;
        };
        let words: Vec<&str> = tail.split_whitespace().collect();
        if let (Some(kept), Some(all)) = (
            words.first().and_then(|w| w.parse::<usize>().ok()),
            words.get(3).and_then(|w| w.parse::<usize>().ok()),
        ) && tail.contains("files kept from an earlier job")
        {
            totals = (totals.0 + all, totals.1 + kept, totals.2 + 1);
        }
    }
    totals
}

/// Suite 6, pump at scale: libcurl (see [`curl_tree`]) through distcc 3.4 plain, ours plain
/// and ours pump, `make -j4` each, on loopback, rounds interleaved; client CPU per
/// distributed job, wall, the pump process's CPU and RSS, analysis against gcc -M, objects
/// against a local `-g` build made in the same directory.
pub fn pump_scale(world: &World, rows: &mut Vec<Row>) -> Result<(), String> {
    let tree = curl_tree(&world.opts.work)?;
    let n = tree.files.len();
    let (ours_t, gcc_t, superset, _) = tree_analysis_vs_gcc_m(&tree)?;
    let mut r = row(
        "pump-scale",
        format!(
            "include analysis of {} ({n} files): ms (ours in-process / gcc -M per file)",
            tree.version
        ),
    );
    r.ours = format!("{:.0}", ours_t * 1000.0);
    r.theirs = format!("{:.0} (gcc -M)", gcc_t * 1000.0);
    r.ratio = format!("{:.3}", ours_t / gcc_t);
    r.target = "≤ 0.20".into();
    r.verdict = pass(ours_t / gcc_t <= 0.2);
    rows.push(r);
    let mut r = row("pump-scale", "analyser's file set ⊇ gcc -M's");
    r.ours = format!("{superset}/{n} files");
    r.verdict = pass(superset == n);
    rows.push(r);

    let w = &world.opts.work;
    let build = w.join("tree-build");
    let jobs = 4;
    tree_build(
        world,
        &tree,
        &build,
        &w.join("tree-local"),
        "gcc",
        "",
        None,
        false,
        jobs,
    )?;
    let ours = world.daemon(Side::Ours, "127.0.0.1", jobs)?;
    let theirs = world.daemon(Side::Theirs, "127.0.0.1", jobs)?;
    let oc = format!("{} gcc", world.opts.ours.display());
    // Plain mode as distcc 3.4 does it (a full -E on the client), for the like-for-like
    // figure; `oc` preprocesses with -fdirectives-only for our daemon, our default.
    let oc_full = format!("DISTCC_DIRECTIVES_ONLY=0 {oc}");
    let tc = "/usr/bin/distcc gcc".to_string();
    // Per variant: costs per round, remote jobs, protocol-3 jobs.
    let mut costs: [Vec<BuildCost>; 4] = Default::default();
    let mut remote = [(0usize, 0usize); 4];
    for _ in 0..world.opts.rounds.min(3) {
        for (i, (d, cc, hosts, side, pump, tag)) in [
            (
                &theirs,
                &tc,
                format!("127.0.0.1:{}/{jobs},lzo", theirs.port),
                Side::Theirs,
                false,
                "theirs",
            ),
            (
                &ours,
                &oc,
                format!("127.0.0.1:{}/{jobs},lzo", ours.port),
                Side::Ours,
                false,
                "plain",
            ),
            (
                &ours,
                &oc,
                format!("127.0.0.1:{}/{jobs},cpp,lzo", ours.port),
                Side::Ours,
                true,
                "pump",
            ),
            (
                &ours,
                &oc_full,
                format!("127.0.0.1:{}/{jobs},lzo", ours.port),
                Side::Ours,
                false,
                "plain-full",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let before = jobs_since(d, 0).0;
            let c = tree_build(
                world,
                &tree,
                &build,
                &w.join(format!("tree-{tag}")),
                cc,
                &hosts,
                Some(side),
                pump,
                jobs,
            )?;
            costs[i].push(c);
            // The daemon logs a job after its client has its object: wait for the lines.
            let deadline = Instant::now() + Duration::from_secs(5);
            while jobs_since(d, before).0 < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let (k, p3) = jobs_since(d, before);
            remote[i] = (remote[i].0 + k, remote[i].1 + p3);
        }
    }
    let rounds = costs[0].len().max(1);
    let med = |v: &[BuildCost], f: fn(&BuildCost) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        median(&mut x)
    };
    // Client CPU per distributed job, ms.
    let per_job: Vec<f64> = (0..4)
        .map(|i| {
            let jobs_per_round = remote[i].0 as f64 / rounds as f64;
            med(&costs[i], |c| c.client_cpu) * 1000.0 / jobs_per_round.max(1.0)
        })
        .collect();
    // Client CPU per job of variant `i` against 3.4 plain (`per_job[0]`), held to `bound`.
    let mut cpu_row = |metric: String, i: usize, bound: f64| {
        let mut r = row("pump-scale", metric);
        r.ours = format!("{:.1}", per_job[i]);
        r.theirs = format!("{:.1}", per_job[0]);
        r.ratio = format!("{:.2}", per_job[i] / per_job[0]);
        r.target = format!("≤ {bound:.2}");
        r.verdict = pass(per_job[i] <= per_job[0] * bound);
        rows.push(r);
    };
    cpu_row(
        format!(
            "{} make -j{jobs}: client CPU per distributed job, ms (ours plain with a full -E as 3.4 / 3.4 plain)",
            tree.version
        ),
        3,
        1.0,
    );
    cpu_row(
        "client CPU per distributed job, ms (ours plain by default: -fdirectives-only / 3.4 plain)"
            .into(),
        1,
        1.0,
    );
    cpu_row(
        "client CPU per distributed job, ms (ours pump / 3.4 plain)".into(),
        2,
        0.2,
    );
    let (pw, ow, tw) = (
        med(&costs[2], |c| c.wall),
        med(&costs[1], |c| c.wall),
        med(&costs[0], |c| c.wall),
    );
    let mut r = row(
        "pump-scale",
        "wall, s (ours pump / ours plain; 3.4 plain in brackets)",
    );
    r.ours = format!("{pw:.1}");
    r.theirs = format!("{ow:.1} ({tw:.1})");
    r.ratio = format!("{:.2}", pw / ow);
    r.target = "≤ 1.10".into();
    r.verdict = pass(pw / ow <= 1.1);
    rows.push(r);
    let rss = costs[2].iter().map(|c| c.pump_rss_kb).max().unwrap_or(0) as f64 / 1024.0;
    let mut r = row(
        "pump-scale",
        "pump process: own CPU per job, ms; peak RSS, MB",
    );
    r.ours = format!(
        "{:.2} ms; {rss:.1} MB",
        med(&costs[2], |c| c.pump_cpu) * 1000.0 * rounds as f64 / remote[2].0.max(1) as f64
    );
    r.target = "≤ 100 MB".into();
    r.verdict = pass(rss > 0.0 && rss <= 100.0);
    rows.push(r);
    // What a pump job writes on the server: distcc 3.4 creates and deletes every file of
    // every job; our daemon keeps a job dir for the next job (src/daemon/pool.rs).
    let (files, kept, pump_jobs) = pump_files_kept(&ours);
    let mut r = row(
        "pump-scale",
        "server: files per pump job, written anew / kept from an earlier job (bytes compared)",
    );
    let per = |x: usize| x as f64 / pump_jobs.max(1) as f64;
    r.ours = format!(
        "{:.1} / {:.1} of {:.1}",
        per(files - kept),
        per(kept),
        per(files)
    );
    r.theirs = "every file, every job".into();
    r.verdict = "reported".into();
    rows.push(r);
    let local = w.join("tree-local");
    let (sp, pp, np) = same_objects_but_producer(&local, &w.join("tree-pump"));
    let (so, po, _) = same_objects_but_producer(&local, &w.join("tree-plain"));
    let (sf, pf, _) = same_objects_but_producer(&local, &w.join("tree-plain-full"));
    let (st, pt, _) = same_objects_but_producer(&local, &w.join("tree-theirs"));
    let mut r = row(
        "pump-scale",
        "objects equal to a local -g build; jobs remote / protocol 3 (pump)",
    );
    r.ours = format!(
        "pump {sp}/{np}; {} remote, {} protocol 3",
        remote[2].0, remote[2].1
    );
    r.theirs = format!("plain: ours {so}/{np}, 3.4 {st}/{np}");
    r.target = "pump: all equal, all protocol 3".into();
    r.verdict = pass(sp == np && np == n && remote[2].1 == n * rounds && remote[2].0 == n * rounds);
    rows.push(r);
    // Plain mode preprocesses on the client; pump mode leaves that to the server. What
    // that buys in debug-info fidelity, next to the client CPU it costs or saves.
    let mut r = row(
        "pump-scale",
        "objects identical to a local -g build / identical but for DW_AT_producer; \
         client CPU per job, ms (its local preprocessing)",
    );
    r.ours = format!(
        "pump {sp}/{np} + {pp}, {:.1} ms; plain (directives-only) {so}/{np} + {po}, {:.1} ms; \
         plain (full -E) {sf}/{np} + {pf}, {:.1} ms",
        per_job[2], per_job[1], per_job[3]
    );
    r.theirs = format!("plain {st}/{np} + {pt}, {:.1} ms", per_job[0]);
    r.ratio = format!("pump saves {:.1} ms/job", per_job[1] - per_job[2]);
    r.target = "pump: all identical".into();
    r.verdict = pass(sp + pp == np && np == n);
    rows.push(r);
    Ok(())
}

/// The rows of an object's decoded line table (file, line, address, view), without the
/// lines naming files and with each row's file as its base name: a local build's file
/// table holds the source's MD5 and splits its path otherwise than a preprocessed
/// source's line markers do. `None` if objdump failed.
fn line_rows(p: &Path) -> Option<String> {
    let out = Command::new("objdump")
        .arg("--dwarf=decodedline")
        .arg(p)
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(2)
            .filter(|l| !l.trim().is_empty() && !l.trim_end().ends_with(':'))
            .map(|l| {
                let mut words = l.split_whitespace();
                let file = words.next().unwrap_or("");
                let base = file.rsplit('/').next().unwrap_or(file);
                let rest: Vec<&str> = words.collect();
                format!("{base} {}\n", rest.join(" "))
            })
            .collect()
    })
}

/// Objects of `a` whose line table rows are `b`'s, and all.
fn same_line_rows(a: &Path, b: &Path) -> (usize, usize) {
    let (mut same, mut total) = (0, 0);
    for e in fs::read_dir(a).into_iter().flatten().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "o") {
            total += 1;
            let q = b.join(e.file_name());
            if line_rows(&p).is_some_and(|x| Some(x) == line_rows(&q)) {
                same += 1;
            }
        }
    }
    (same, total)
}

/// The big tree with clang, plain mode against our daemon: by default the client
/// preprocesses with `-frewrite-includes` (macros kept for the server); against a full
/// `-E` (ours with `DISTCC_DIRECTIVES_ONLY=0`, and distcc 3.4's client). What that buys
/// in line tables equal to a local build's, and what the client's check costs.
pub fn clang_plain(world: &World, rows: &mut Vec<Row>) -> Result<(), String> {
    if !Path::new("/usr/bin/clang").exists() {
        let mut r = row("clang", "clang is missing: apt-get install -y clang");
        r.verdict = "not measured".into();
        rows.push(r);
        return Ok(());
    }
    let tree = curl_tree(&world.opts.work)?;
    let n = tree.files.len();
    let w = &world.opts.work;
    let build = w.join("clang-build");
    let jobs = 4;
    tree_build(
        world,
        &tree,
        &build,
        &w.join("clang-local"),
        "clang",
        "",
        None,
        false,
        jobs,
    )?;
    let ours = world.daemon(Side::Ours, "127.0.0.1", jobs)?;
    let hosts = format!("127.0.0.1:{}/{jobs},lzo", ours.port);
    let oc = format!("{} clang", world.opts.ours.display());
    // The host's first job fills the client's memo (its extension answer): from the
    // second on, `oc` keeps macros.
    let mut warm = world.client(Side::Ours, &hosts, "tree");
    warm.args(["clang", "-c", "x.c", "-o", "x.o"]);
    let _ = warm.status();
    let oc_full = format!("DISTCC_DIRECTIVES_ONLY=0 {oc}");
    let tc = "/usr/bin/distcc clang".to_string();
    let mut per_job = [0.0f64; 3];
    for (i, (cc, side, tag)) in [
        (&tc, Side::Theirs, "clang-theirs"),
        (&oc, Side::Ours, "clang-plain"),
        (&oc_full, Side::Ours, "clang-full"),
    ]
    .into_iter()
    .enumerate()
    {
        let before = jobs_since(&ours, 0).0;
        let c = tree_build(
            world,
            &tree,
            &build,
            &w.join(tag),
            cc,
            &hosts,
            Some(side),
            false,
            jobs,
        )?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while jobs_since(&ours, before).0 < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let remote = jobs_since(&ours, before).0;
        if remote < n {
            return Err(format!("{tag}: only {remote}/{n} jobs remote"));
        }
        per_job[i] = c.client_cpu * 1000.0 / remote as f64;
    }
    let mut r = row(
        "clang",
        format!(
            "{} make -j{jobs} with clang: client CPU per distributed job, ms \
             (ours with a full -E, as 3.4 / 3.4's client)",
            tree.version
        ),
    );
    r.ours = format!("{:.1}", per_job[2]);
    r.theirs = format!("{:.1}", per_job[0]);
    r.ratio = format!("{:.2}", per_job[2] / per_job[0]);
    r.target = "≤ 1.00".into();
    r.verdict = pass(per_job[2] <= per_job[0]);
    rows.push(r);
    // What local line tables cost: clang's -frewrite-includes output keeps every
    // header's text and comments (several times a full -E's), and the check reads it.
    let mut r = row(
        "clang",
        "client CPU per distributed job, ms (ours by default: -frewrite-includes / 3.4's client)",
    );
    r.ours = format!("{:.1}", per_job[1]);
    r.theirs = format!("{:.1}", per_job[0]);
    r.ratio = format!("{:.2}", per_job[1] / per_job[0]);
    r.target = "reported: the price of the line tables below".into();
    r.verdict = "reported".into();
    rows.push(r);
    let local = w.join("clang-local");
    let (sr, nr) = same_line_rows(&local, &w.join("clang-plain"));
    let (sf, _) = same_line_rows(&local, &w.join("clang-full"));
    let (st, _) = same_line_rows(&local, &w.join("clang-theirs"));
    let mut r = row(
        "clang",
        "objects whose -g line table equals a local build's (clang records the source's \
         MD5, which no preprocessed source gives: byte-identical objects are out of reach)",
    );
    r.ours = format!("{sr}/{nr} by default; {sf}/{nr} with a full -E");
    r.theirs = format!("{st}/{nr}");
    r.target = "by default: all".into();
    r.verdict = pass(sr == nr && nr == n);
    rows.push(r);
    Ok(())
}

/// Render the table.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| suite | metric | ours | distcc 3.4 | ours/theirs | target | verdict |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.suite, r.metric, r.ours, r.theirs, r.ratio, r.target, r.verdict
        );
    }
    s
}

/// A suite: measures and appends its rows.
type Suite = fn(&World, &mut Vec<Row>) -> Result<(), String>;

/// Run the suites named in `which` (all when empty); a failing suite becomes a row saying so.
pub fn run(opts: &Options, which: &[String]) -> Vec<Row> {
    let mut rows = Vec::new();
    if !Path::new("/usr/bin/distccd").exists() {
        let mut r = row(
            "setup",
            "Debian's distcc 3.4 is missing: apt-get install -y distcc distcc-pump",
        );
        r.verdict = "theirs not measured".into();
        rows.push(r);
    }
    let world = match World::new(opts) {
        Ok(w) => w,
        Err(e) => {
            let mut r = row("setup", e);
            r.verdict = "FAIL".into();
            rows.push(r);
            return rows;
        }
    };
    let want = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let suites: [(&str, Suite); 4] = [
        ("per-job", per_job),
        ("real", real_build),
        ("scheduler", scheduler),
        ("memory", memory),
    ];
    for (name, f) in suites {
        if !want(name) || (name == "real" && !opts.real_build) {
            continue;
        }
        if let Err(e) = f(&world, &mut rows) {
            let mut r = row("error", format!("{name}: {e}"));
            r.verdict = "FAIL".into();
            rows.push(r);
        }
    }
    let big: [(&str, Suite); 3] = [
        ("pump", pump),
        ("pump-scale", pump_scale),
        ("clang", clang_plain),
    ];
    for (name, f) in big {
        if want(name)
            && opts.real_build
            && let Err(e) = f(&world, &mut rows)
        {
            let mut r = row("error", format!("{name}: {e}"));
            r.verdict = "FAIL".into();
            rows.push(r);
        }
    }
    rows
}
