//! distcc on a LAN of network namespaces (tests/common/lan.rs): a client machine and build
//! hosts on one bridge, each with an IPv4 and an IPv6 address and a name, building a real C
//! tree (Lua 5.4 from the `lua-src` crate) with `make -j` — as on a real network, not
//! 127.0.0.1. Needs root, as the project's machines and CI have.
//!
//! Every object a distributed build writes must equal, byte for byte, the one a plain local
//! `gcc` writes with the same flags. The flags have no `-g`: debug info records the build
//! directory (DW_AT_comp_dir), and every build here runs in a directory of its own.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::lan::{Host, Lan, Proc};
use common::*;

/// distccd's default port: every host has a network of its own, so all can use it.
const PORT: u16 = 3632;
/// The flags of every build, distributed or local.
const CFLAGS: &str = "-O2 -Wall -DLUA_COMPAT_5_3";

/// The two full builds take turns: on a 2-core machine, a build sharing the CPUs with
/// another would measure the load rather than how long a vanished host costs.
static FULL_BUILD: Mutex<()> = Mutex::new(());

fn full_build_turn() -> MutexGuard<'static, ()> {
    FULL_BUILD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lua's directory: fetched once per test process. A failed fetch fails every test that
/// needs it, with cargo's message; it never skips.
fn lua_dir() -> PathBuf {
    static LUA: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = LUA.get_or_init(|| {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        lua::lua_sources(scratch.path()).map(|(dir, _version)| dir)
    });
    match found {
        Ok(dir) => dir.clone(),
        Err(e) => panic!("the Lua sources (crate lua-src, fetched with cargo) are needed: {e}"),
    }
}

/// Lua's library and interpreter sources: the `.c` files, sorted.
fn lua_files(lua: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(lua)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "{}: only {} .c files",
        lua.display(),
        files.len()
    );
    files
}

/// A directory with a Makefile that builds every Lua `.c` into `<stem>.o` with `$(CC)`.
/// Sources are named by absolute path, the same for every build, so that the file names
/// objects record are the same too.
fn lua_makefile(dir: &Path, lua: &Path) -> Vec<String> {
    fs::create_dir_all(dir).unwrap();
    let mut objs = Vec::new();
    let mut rules = String::new();
    for src in lua_files(lua) {
        let stem = src.file_stem().unwrap().to_string_lossy().into_owned();
        rules.push_str(&format!(
            "{stem}.o: {}\n\t$(CC) $(CFLAGS) -c $< -o $@\n",
            src.display()
        ));
        objs.push(format!("{stem}.o"));
    }
    let mk = format!("CFLAGS = {CFLAGS}\nall: {}\n{rules}", objs.join(" "));
    fs::write(dir.join("Makefile"), mk).unwrap();
    objs
}

/// The reference: Lua built here with plain gcc, no distcc. The object names.
fn local_build(dir: &Path, lua: &Path) -> Vec<String> {
    let objs = lua_makefile(dir, lua);
    let out = run(Command::new("make")
        .args(["-s", "-j2", "CC=gcc"])
        .current_dir(dir));
    assert!(out.status.success(), "the local reference build failed");
    objs
}

/// Every object of `built` equals the reference's, byte for byte.
fn assert_same_objects(reference: &Path, built: &Path, objs: &[String]) {
    for o in objs {
        let want = fs::read(reference.join(o)).unwrap_or_else(|e| panic!("reference {o}: {e}"));
        let got = fs::read(built.join(o)).unwrap_or_else(|e| panic!("{o} was not built: {e}"));
        assert!(want == got, "{o} differs from the local build's");
    }
}

/// Scratch space: `shared` and the per-daemon directories are writable by the unprivileged
/// user our daemon drops to.
struct Work {
    _dir: tempfile::TempDir,
    root: PathBuf,
    shared: PathBuf,
}

fn work() -> Work {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let shared = world_writable_dir(&root, "shared");
    Work {
        _dir: dir,
        root,
        shared,
    }
}

/// Our distccd running on a LAN host, and its log.
struct NsDaemon {
    host: Host,
    log: PathBuf,
    _proc: Proc,
}

impl NsDaemon {
    /// Start `distcc distccd` on `host` listening on one dual-stack socket (no `--listen`) at
    /// [`PORT`], with `--allow` for each of `allow`. Its compilers: `gcc` and
    /// `x86_64-linux-gnu-gcc` (the client's cross rewriting sends the latter) from a
    /// whitelist directory of its own; `compiler_script`, if given, is their body instead
    /// of a link to gcc. Returns once `prober` can connect to it.
    fn start(
        w: &Work,
        host: &Host,
        allow: &[&str],
        compiler_script: Option<&str>,
        prober: &Host,
    ) -> NsDaemon {
        let dir = world_writable_dir(&w.root, &format!("d-{}", host.name));
        let masq = dir.join("masq");
        fs::create_dir_all(&masq).unwrap();
        for name in ["gcc", "x86_64-linux-gnu-gcc"] {
            match compiler_script {
                Some(body) => script(&masq.join(name), body),
                None => std::os::unix::fs::symlink("/usr/bin/gcc", masq.join(name)).unwrap(),
            }
        }
        let log = dir.join("distccd.log");
        let stderr = fs::File::create(dir.join("stderr")).unwrap();
        let mut cmd = host.cmd(distcc());
        cmd.args(["distccd", "--daemon", "--no-detach"])
            // A script compiler leaves a marker outside its job dir.
            .args(compiler_script.map(|_| "--no-sandbox"))
            .args(["--port", &PORT.to_string()])
            .args(["--log-level", "info", "--log-file"])
            .arg(&log);
        for a in allow {
            cmd.args(["--allow", a]);
        }
        cmd.env("DISTCCD_MASQUERADE_DIRS", &masq)
            .env("DISTCCD_PATH", format!("{}:/usr/bin:/bin", masq.display()))
            .stdout(Stdio::null())
            .stderr(stderr);
        let proc = host.spawn(&mut cmd);
        let d = NsDaemon {
            host: host.clone(),
            log,
            _proc: proc,
        };
        prober.wait_connect(&host.v4, PORT);
        d
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn compiled(&self) -> usize {
        self.log_text().matches("COMPILE_OK").count()
    }
}

/// A LAN with a client and build hosts `names` at 10.251.`net`.2, .3, … (/24) and
/// fd00:251:`net`::2, ::3, … (/64); the client is .1 / ::1.
fn lan_with(tag: &str, net: u8, names: &[&str]) -> (Lan, Host, Vec<Host>) {
    let mut lan = Lan::new(tag);
    let client = lan.host(
        "client",
        &format!("10.251.{net}.1/24"),
        &format!("fd00:251:{net}::1/64"),
    );
    let hosts = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            lan.host(
                n,
                &format!("10.251.{net}.{}/24", i + 2),
                &format!("fd00:251:{net}::{}/64", i + 2),
            )
        })
        .collect();
    (lan, client, hosts)
}

/// `make -j6 CC="distcc gcc"` over Lua on `client`, in `dir`, hosts `hosts`; make's output
/// goes to `dir/make.out`. Started, not waited for.
fn start_distributed_build(
    client: &Host,
    dir: &Path,
    distcc_dir: &Path,
    hosts: &str,
    env: &[(&str, &str)],
) -> Proc {
    let out = fs::File::create(dir.join("make.out")).unwrap();
    let err = out.try_clone().unwrap();
    let mut cmd = client.cmd("make");
    client_env(&mut cmd, distcc_dir, hosts);
    cmd.args(["-s", "-j6"])
        .arg(format!("CC={} gcc", distcc().display()))
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdout(out)
        .stderr(err);
    client.spawn(&mut cmd)
}

/// Poll (up to 10 s) until `f` holds: daemons log a job's summary just after its reply, so
/// the client may be done first.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[test]
fn jobs_spread_over_hosts_named_by_ipv4_ipv6_and_name() {
    let _turn = full_build_turn();
    let lua = lua_dir();
    let w = work();
    let (_lan, client, hosts) = lan_with("spread", 1, &["alpha", "bravo", "charlie"]);
    // The names resolve on the client through its hosts file, as on a LAN with DNS.
    let out = client.run(client.cmd("getent").args(["ahosts", "charlie"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&hosts[2].v4),
        "charlie does not resolve: {text}"
    );

    let daemons: Vec<NsDaemon> = hosts
        .iter()
        .map(|h| NsDaemon::start(&w, h, &["10.251.1.0/24", "fd00:251:1::/64"], None, &client))
        .collect();
    let reference = w.root.join("reference");
    let objs = local_build(&reference, &lua);
    let built = w.root.join("built");
    lua_makefile(&built, &lua);

    // The first host by IPv4, the second by IPv6, the third by name (no port: 3632).
    let list = format!("{} [{}] {}", hosts[0].v4, hosts[1].v6, hosts[2].name);
    let mut make = start_distributed_build(&client, &built, &w.root.join("dd"), &list, &[]);
    let status = make.wait_until(Instant::now() + Duration::from_secs(240));
    let out = fs::read_to_string(built.join("make.out")).unwrap_or_default();
    assert!(status.is_some_and(|s| s.success()), "make failed: {out}");
    assert!(
        !out.contains("failed to distribute"),
        "every job should have been compiled remotely: {out}"
    );

    // Every job was compiled by one of the hosts, and each host had some.
    let total = || daemons.iter().map(NsDaemon::compiled).sum::<usize>();
    eventually(|| total() >= objs.len());
    for d in &daemons {
        assert!(
            d.compiled() > 0,
            "{} compiled nothing; its log: {}",
            d.host.name,
            d.log_text()
        );
    }
    assert_eq!(total(), objs.len(), "one COMPILE_OK per object");
    // One dual-stack socket: the IPv4 client logged as IPv4 (not ::ffff:…), the IPv6 one
    // as IPv6.
    let alpha = daemons[0].log_text();
    assert!(alpha.contains("client: 10.251.1.1:"), "{alpha}");
    let bravo = daemons[1].log_text();
    assert!(bravo.contains("fd00:251:1::1"), "{bravo}");
    assert_same_objects(&reference, &built, &objs);
}

#[test]
fn allow_admits_its_subnet_and_refuses_another_on_the_same_bridge() {
    let lua = lua_dir();
    let w = work();
    let mut lan = Lan::new("allow");
    // One /16 on the bridge, so every host reaches every other; the daemon allows only
    // 10.251.2.0/24.
    let server = lan.host("server", "10.251.2.2/16", "fd00:251:2::2/64");
    let inside = lan.host("inside", "10.251.2.10/16", "fd00:251:2::10/64");
    let outside = lan.host("outside", "10.251.9.10/16", "fd00:251:2::90/64");
    let d = NsDaemon::start(&w, &server, &["10.251.2.0/24"], None, &inside);
    let src = lua.join("lstrlib.c");
    let reference = w.root.join("ref.o");
    let out = run(Command::new("gcc")
        .args(CFLAGS.split(' '))
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&reference));
    assert!(out.status.success());

    let compile = |who: &Host, obj: &str| {
        let mut cmd = who.cmd(distcc());
        // By IPv4: the name would resolve to the IPv6 address first, which no --allow covers.
        client_env(
            &mut cmd,
            &w.root.join(format!("dd-{}", who.name)),
            &server.v4,
        );
        cmd.arg("gcc")
            .args(CFLAGS.split(' '))
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(w.root.join(obj));
        let out = who.run(&mut cmd);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{}: {err}", who.name);
        assert!(
            fs::read(w.root.join(obj)).unwrap() == fs::read(&reference).unwrap(),
            "{}: {obj} differs from the local build's",
            who.name
        );
        err
    };

    let err = compile(&inside, "inside.o");
    assert!(
        !err.contains("failed to distribute"),
        "inside: {err}\nthe daemon's log: {}",
        d.log_text()
    );
    assert!(
        eventually(|| d.compiled() == 1),
        "the job from inside the subnet was not compiled there: {}",
        d.log_text()
    );
    assert!(
        d.log_text().contains("client: 10.251.2.10:"),
        "{}",
        d.log_text()
    );

    let err = compile(&outside, "outside.o");
    assert!(
        err.contains("failed to distribute"),
        "outside: the refused job falls back to a local compile: {err}"
    );
    assert!(
        eventually(|| d.log_text().contains("denied by access list")),
        "no refusal logged: {}",
        d.log_text()
    );
    let log = d.log_text();
    let refusal = log
        .lines()
        .find(|l| l.contains("denied by access list"))
        .unwrap_or_default();
    assert!(refusal.contains("10.251.9.10"), "{refusal}");
    assert_eq!(d.compiled(), 1, "the refused job was compiled: {log}");
}

#[test]
fn a_host_whose_link_goes_down_mid_build_costs_seconds() {
    let _turn = full_build_turn();
    let lua = lua_dir();
    let w = work();
    let (_lan, client, hosts) = lan_with("cut", 3, &["alpha", "bravo", "victim"]);
    let allow = ["10.251.3.0/24", "fd00:251:3::/64"];
    let alpha = NsDaemon::start(&w, &hosts[0], &allow, None, &client);
    let bravo = NsDaemon::start(&w, &hosts[1], &allow, None, &client);
    // The victim's compiler says it has a job, then takes long: the test takes the link
    // down while jobs are surely in flight there.
    let started = w.shared.join("victim-started");
    let body = format!(
        "touch {}\nsleep 120\nexec /usr/bin/gcc \"$@\"",
        started.display()
    );
    let victim = NsDaemon::start(&w, &hosts[2], &allow, Some(&body), &client);

    let reference = w.root.join("reference");
    let objs = local_build(&reference, &lua);
    let built = w.root.join("built");
    lua_makefile(&built, &lua);
    let distcc_dir = w.root.join("dd");
    let list = format!("{} {} {}", hosts[2].v4, hosts[0].v4, hosts[1].name);
    let began = Instant::now();
    // distcc 3.4's I/O timeout: were the client to wait for it, the build would take
    // five minutes.
    let mut make = start_distributed_build(
        &client,
        &built,
        &distcc_dir,
        &list,
        &[("DISTCC_IO_TIMEOUT", "300")],
    );
    wait_for_file(&started);
    hosts[2].link_down();
    let cut_at = began.elapsed();

    let status = make.wait_until(began + Duration::from_secs(60));
    let out = fs::read_to_string(built.join("make.out")).unwrap_or_default();
    let Some(status) = status else {
        panic!(
            "the build still runs {} s after it started (link cut at {} s): {out}",
            began.elapsed().as_secs(),
            cut_at.as_secs()
        );
    };
    let took = began.elapsed();
    eprintln!(
        "link cut at {:.1} s, build done at {:.1} s",
        cut_at.as_secs_f64(),
        took.as_secs_f64()
    );
    assert!(status.success(), "make failed: {out}");
    assert!(
        took < Duration::from_secs(60),
        "the build took {took:?} with a vanished host"
    );
    // The jobs that were on the victim went elsewhere or fell back: it compiled nothing …
    assert_eq!(victim.compiled(), 0, "{}", victim.log_text());
    // … and it is backed off for the jobs after.
    let backoff = distcc_dir
        .join("lock")
        .join(format!("backoff_tcp_{}_{PORT}_0", hosts[2].v4));
    assert!(
        backoff.exists(),
        "{} missing; lock dir: {:?}",
        backoff.display(),
        fs::read_dir(distcc_dir.join("lock"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .unwrap_or_default()
    );
    // The others took the rest.
    assert!(
        eventually(|| alpha.compiled() > 0 && bravo.compiled() > 0),
        "alpha: {}\nbravo: {}",
        alpha.log_text(),
        bravo.log_text()
    );
    assert_same_objects(&reference, &built, &objs);
}

/// Is process `pid` gone (or a zombie no one has reaped yet: it runs nothing)?
fn gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[test]
fn the_lan_cleans_up_after_a_panicking_test() {
    const WHY: &str = "a test fails with processes running on its LAN";
    let (mut namespaces, mut pids) = (Vec::new(), Vec::new());
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut lan = Lan::new("panic");
        let a = lan.host("a", "10.251.4.1/24", "fd00:251:4::1/64");
        let b = lan.host("b", "10.251.4.2/24", "fd00:251:4::2/64");
        namespaces = vec![lan.bridge_ns().to_string(), a.ns.clone(), b.ns.clone()];
        // The hosts file names every host, on every host.
        let out = b.run(b.cmd("getent").args(["ahosts", "a"]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("10.251.4.1") && text.contains("fd00:251:4::1"),
            "{text}"
        );
        // A process whose guard is never dropped, and a grandchild nobody holds.
        let guarded = a.spawn(a.cmd("sleep").arg("300"));
        pids.push(guarded.pid() as i32);
        std::mem::forget(guarded);
        let out = b.sh("sleep 300 >/dev/null 2>&1 & echo $!");
        pids.push(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap());
        for &pid in &pids {
            assert!(!gone(pid), "process {pid} did not start");
        }
        panic!("{WHY}");
    }));
    // The panic is the one at the end, not an earlier failure.
    // (The closure always panics, so there is no Ok.)
    let Err(payload) = unwound;
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert_eq!(msg, WHY);
    assert_eq!((namespaces.len(), pids.len()), (3, 2));
    for ns in &namespaces {
        assert!(
            !Path::new("/run/netns").join(ns).exists(),
            "namespace {ns} left behind"
        );
        assert!(
            !Path::new("/etc/netns").join(ns).exists(),
            "/etc/netns/{ns} left behind"
        );
    }
    for pid in pids {
        assert!(gone(pid), "process {pid} still runs");
    }
}
