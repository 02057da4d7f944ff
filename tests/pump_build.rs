//! Pump mode end to end: `pump make -j` over tests/pump-project/ through our client and our
//! distccd, and through our client and Debian's distccd; objects and .d files must equal a
//! local build's, and the jobs must have run remotely as protocol 3.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Daemon, Kind, PumpStartup, client_cmd, distcc};

/// Stops a `pump --startup` include server by PID even when an assertion fails first.
const SOURCES: &[&str] = &["src/main.c", "src/util.cc", "src/comp.c", "src/sub/deep.c"];

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A fresh copy of the project, with the symlinked header the test must create.
fn project(parent: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pump-project");
    let dst = parent.join(name);
    copy_dir(&src, &dst);
    let _ = fs::remove_file(dst.join("include/link.h"));
    std::os::unix::fs::symlink("app/linked_target.h", dst.join("include/link.h")).unwrap();
    dst.canonicalize().unwrap()
}

/// Every `.o` and `.d` under `dir`, by relative path.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "o" || x == "d") {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A make rule's words, line continuations undone.
fn words(d: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(d)
        .replace("\\\n", " ")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn local_build(dir: &Path, cflags: &str) {
    let st = Command::new("make")
        .args(["-s", "CC=gcc", "CXX=g++"])
        .arg(format!("CFLAGS={cflags}"))
        .arg(format!("CXXFLAGS={cflags}"))
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

/// `distcc pump make -j4 CC="distcc gcc" …`; returns the client log.
fn pump_build(dir: &Path, work: &Path, port: u16, cflags: &str) -> String {
    let log = work.join(format!("client-{port}-{}.log", cflags.len()));
    let d = distcc();
    let out = client_cmd(
        &d,
        &work.join("distcc-dir"),
        &format!("127.0.0.1:{port},cpp,lzo"),
    )
    .args(["pump", "make", "-s", "-j4"])
    .arg(format!("CC={} gcc", d.display()))
    .arg(format!("CXX={} g++", d.display()))
    .arg(format!("CFLAGS={cflags}"))
    .arg(format!("CXXFLAGS={cflags}"))
    .env("DISTCC_LOG", &log)
    .env("DISTCC_VERBOSE", "1")
    .current_dir(dir)
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pump make failed: {stderr}");
    assert!(
        stderr.contains("__________Using 1 distcc server in pump mode"),
        "{stderr}"
    );
    fs::read_to_string(&log).unwrap_or_default()
}

fn check_same_as_local(kind: Kind, extra: &[&str]) -> (Daemon, String) {
    let work = tempfile::tempdir().unwrap();
    let local = project(work.path(), "local");
    let remote = project(work.path(), "remote");
    local_build(&local, "-O2 -MD");
    let daemon = Daemon::start(kind, work.path(), extra, &[]);
    let log = pump_build(&remote, work.path(), daemon.port, "-O2 -MD");
    let (a, b) = (outputs(&local), outputs(&remote));
    assert_eq!(a.len(), 8, "{:?}", a.keys());
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "different outputs"
    );
    for (k, v) in &a {
        if k.ends_with(".d") {
            // Same rule, but the server's gcc wrapped its lines around a longer temp
            // target name before the rewrite (distcc 3.4 does the same): compare words.
            assert_eq!(words(v), words(&b[k]), "{k} differs from the local build's");
        } else {
            assert!(b[k] == *v, "{k} differs from the local build's");
        }
    }
    assert_eq!(
        log.matches("completed ok (pump)").count(),
        SOURCES.len(),
        "not every job went as protocol 3: {log}"
    );
    assert!(!log.contains("using protocol 2"), "{log}");
    // Keep the work dir alive as long as the daemon (its log lives there).
    std::mem::forget(work);
    (daemon, log)
}

/// The daemon's log once it shows every job: daemons log a job's summary after replying.
fn wait_for_jobs(daemon: &Daemon) -> String {
    for _ in 0..100 {
        if daemon.compile_ok_count() >= SOURCES.len() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    daemon.log_text()
}

#[test]
fn pump_make_with_our_daemon_matches_local_build() {
    let (daemon, _) = check_same_as_local(Kind::Ours, &[]);
    let text = wait_for_jobs(&daemon);
    assert_eq!(text.matches("COMPILE_OK").count(), SOURCES.len(), "{text}");
}

#[test]
fn pump_make_with_debian_distccd_matches_local_build() {
    let (daemon, _) = check_same_as_local(Kind::Debian, &["--log-level", "debug"]);
    let text = wait_for_jobs(&daemon);
    assert_eq!(text.matches("COMPILE_OK").count(), SOURCES.len(), "{text}");
    // At debug level 3.4 logs the request header it read: protocol 3 for every job.
    assert_eq!(
        text.matches("got DIST00000003").count(),
        SOURCES.len(),
        "{text}"
    );
    // And it received the headers as files (nothing was preprocessed on the client).
    assert!(text.contains("include/app/comp_impl.h"), "{text}");
}

#[test]
fn pump_debug_info_names_client_paths() {
    let work = tempfile::tempdir().unwrap();
    let remote = project(work.path(), "remote");
    let daemon = Daemon::start(Kind::Ours, work.path(), &[], &[]);
    pump_build(&remote, work.path(), daemon.port, "-O2 -MD -g");
    let out = Command::new("readelf")
        .args(["--debug-dump=info", "src/main.o"])
        .current_dir(&remote)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let comp_dir = text
        .lines()
        .find(|l| l.contains("DW_AT_comp_dir"))
        .expect("a comp_dir");
    assert!(
        comp_dir.trim_end().ends_with(remote.to_str().unwrap()),
        "{comp_dir}"
    );
    assert!(
        !text.contains("distccd_"),
        "server temp paths left in the object"
    );
    let text = wait_for_jobs(&daemon);
    assert_eq!(text.matches("COMPILE_OK").count(), SOURCES.len(), "{text}");
}

#[test]
fn absolute_include_falls_back_and_still_builds() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    fs::write(dir.join("abs.h"), "#define ABS_VALUE 5\n").unwrap();
    fs::write(
        dir.join("abs.c"),
        format!(
            "#include \"{}\"\nint abs_value(void) {{ return ABS_VALUE; }}\n",
            dir.join("abs.h").display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(Kind::Ours, &dir, &[], &[]);
    let log = dir.join("client.log");
    let d = distcc();
    let st = client_cmd(
        &d,
        &dir.join("distcc-dir"),
        &format!("127.0.0.1:{},cpp,lzo", daemon.port),
    )
    .args([
        "pump",
        d.to_str().unwrap(),
        "gcc",
        "-O2",
        "-c",
        "abs.c",
        "-o",
        "abs.o",
    ])
    .env("DISTCC_LOG", &log)
    .env("DISTCC_VERBOSE", "1")
    .current_dir(&dir)
    .status()
    .unwrap();
    assert!(st.success());
    assert!(dir.join("abs.o").exists());
    let log = fs::read_to_string(&log).unwrap();
    assert!(log.contains("include server gave up analyzing"), "{log}");
    assert!(log.contains("using protocol 2"), "{log}");
    // Still distributed, as plain protocol 2 with local preprocessing.
    for _ in 0..100 {
        if daemon.compile_ok_count() >= 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(daemon.compile_ok_count(), 1, "{}", daemon.log_text());
}

#[test]
fn pump_needs_a_cpp_host_and_has_help() {
    let work = tempfile::tempdir().unwrap();
    let d = distcc();
    let out = client_cmd(&d, &work.path().join("dd"), "127.0.0.1:1,lzo")
        .args(["pump", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not contain any hosts with ',cpp'")
    );
    let out = Command::new(&d).args(["pump", "--help"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("pump COMMAND"));
}

#[test]
fn pump_startup_and_shutdown() {
    let work = tempfile::tempdir().unwrap();
    let d = distcc();
    let pump = PumpStartup::run(
        client_cmd(&d, &work.path().join("dd"), "127.0.0.1:1,cpp,lzo").env("TMPDIR", work.path()),
    );
    let (pid, dir, port) = (pump.pid.clone(), pump.dir.clone(), pump.port.clone());
    assert!(Path::new(&port).exists());
    let st = Command::new(&d)
        .args(["pump", "--shutdown"])
        .env("INCLUDE_SERVER_PID", &pid)
        .env("INCLUDE_SERVER_DIR", &dir)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(!Path::new(&dir).exists());
    let pid: i32 = pid.parse().unwrap();
    // The server has exited (and been reaped by init, or is a zombie of ours: no — it is
    // not our child), so signal 0 fails soon.
    let mut gone = false;
    for _ in 0..100 {
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(gone, "include server {pid} still running");
}

/// The analyser's set includes everything `gcc -M` lists, for every file of the project.
#[test]
fn analyser_covers_gcc_m() {
    let work = tempfile::tempdir().unwrap();
    let dir = project(work.path(), "p");
    let mut an = distcc::pump::Analyser::with_path(std::env::var_os("PATH"));
    let flags = [
        "-Iinclude",
        "-Iinclude/wrap",
        "-Iinclude2",
        "-include",
        "config.h",
        "-O2",
    ];
    for src in SOURCES {
        let cc = if src.ends_with(".cc") { "g++" } else { "gcc" };
        let out = Command::new(cc)
            .args(flags)
            .args(["-M", src])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).replace("\\\n", " ");
        let deps: Vec<PathBuf> = text
            .split_once(':')
            .unwrap()
            .1
            .split_whitespace()
            .map(|p| dir.join(p).canonicalize().unwrap())
            .collect();
        let mut argv: Vec<String> = vec![cc.into()];
        argv.extend(flags.iter().map(|s| s.to_string()));
        argv.extend(["-c".into(), src.to_string()]);
        let closure = an.analyse(&dir, &argv).unwrap();
        let mut have: Vec<PathBuf> = closure
            .files
            .iter()
            .chain(closure.system_files.iter())
            .filter_map(|p| p.canonicalize().ok())
            .collect();
        have.sort();
        for dep in &deps {
            assert!(
                have.binary_search(dep).is_ok(),
                "{src}: analyser misses {}",
                dep.display()
            );
        }
        // The user headers are shipped; system headers are not.
        assert!(
            closure.files.iter().all(|f| f.starts_with(&dir)),
            "{:?}",
            closure.files
        );
        assert!(deps.iter().any(|d| d.starts_with("/usr")));
    }
}

/// Absolute -I dirs and source paths (CMake's style): `__FILE__` must name the client's
/// paths, so the object equals a local build's (3.4's `#line` fix, `.lzo.abs`).
fn absolute_paths_keep_file_names(kind: Kind, extra: &[&str]) {
    let work = tempfile::tempdir().unwrap();
    let dir = project(work.path(), "p");
    let inc = format!("-I{}", dir.join("include").display());
    let src = dir.join("src/where.c").display().to_string();
    let args = [
        "gcc",
        inc.as_str(),
        "-O2",
        "-MD",
        "-c",
        src.as_str(),
        "-o",
        "where.o",
    ];
    let st = Command::new("gcc")
        .args(&args[1..])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let local_o = fs::read(dir.join("where.o")).unwrap();
    let local_d = fs::read(dir.join("where.d")).unwrap();
    fs::remove_file(dir.join("where.o")).unwrap();
    fs::remove_file(dir.join("where.d")).unwrap();

    let daemon = Daemon::start(kind, work.path(), extra, &[]);
    let log = work.path().join("client.log");
    let d = distcc();
    let st = client_cmd(
        &d,
        &work.path().join("dd"),
        &format!("127.0.0.1:{},cpp,lzo", daemon.port),
    )
    .args(["pump", d.to_str().unwrap()])
    .args(args)
    .env("DISTCC_LOG", &log)
    .env("DISTCC_VERBOSE", "1")
    .current_dir(&dir)
    .status()
    .unwrap();
    assert!(st.success());
    let log = fs::read_to_string(&log).unwrap();
    assert!(log.contains("completed ok (pump)"), "{log}");
    let remote_o = fs::read(dir.join("where.o")).unwrap();
    let text = String::from_utf8_lossy(&remote_o);
    assert!(text.contains(&src), "__FILE__ of the source lost");
    assert!(
        text.contains(&dir.join("include/app/where.h").display().to_string()),
        "__FILE__ of the header lost"
    );
    assert!(remote_o == local_o, "object differs from the local build's");
    assert_eq!(
        words(&fs::read(dir.join("where.d")).unwrap()),
        words(&local_d)
    );
}

#[test]
fn absolute_paths_keep_file_names_with_our_daemon() {
    absolute_paths_keep_file_names(Kind::Ours, &[]);
}

/// Debian's distccd has no prefix maps: only the `#line` in the shipped files saves
/// `__FILE__` there.
#[test]
fn absolute_paths_keep_file_names_with_debian_distccd() {
    absolute_paths_keep_file_names(Kind::Debian, &[]);
}

/// No include server behind INCLUDE_SERVER_PORT: the job goes protocol 2, still remote.
#[test]
fn missing_include_server_means_protocol_2() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    fs::write(dir.join("x.c"), "int x(void) { return 3; }\n").unwrap();
    let daemon = Daemon::start(Kind::Ours, &dir, &[], &[]);
    let out = client_cmd(
        &distcc(),
        &dir.join("dd"),
        &format!("127.0.0.1:{},cpp,lzo", daemon.port),
    )
    .env("INCLUDE_SERVER_PORT", dir.join("no-such-socket"))
    .env("DISTCC_VERBOSE", "1")
    .env("DISTCC_FALLBACK", "0")
    .args(["gcc", "-c", "x.c"])
    .current_dir(&dir)
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("failed to get includes from include server"),
        "{err}"
    );
    assert!(err.contains("using protocol 2 for x.c"), "{err}");
    assert!(dir.join("x.o").exists());
}

/// Once DISTCC_MAX_DISCREPANCY pump jobs failed remotely but compiled locally (the `@`s in
/// `<socket dir>/discrepancy_counter`), jobs go protocol 2 (reference §5.4).
#[test]
fn discrepancies_turn_pump_mode_off() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    fs::write(dir.join("x.c"), "int x(void) { return 3; }\n").unwrap();
    let daemon = Daemon::start(Kind::Ours, &dir, &[], &[]);
    let hosts = format!("127.0.0.1:{},cpp,lzo", daemon.port);
    let d = distcc();
    let pump = PumpStartup::run(client_cmd(&d, &dir.join("dd"), &hosts).env("TMPDIR", &dir));
    let (pid, sdir, port) = (pump.pid.clone(), pump.dir.clone(), pump.port.clone());
    let compile = |max: &str| -> String {
        let out = client_cmd(&d, &dir.join("dd"), &hosts)
            .env("INCLUDE_SERVER_PORT", &port)
            .env("DISTCC_MAX_DISCREPANCY", max)
            .env("DISTCC_VERBOSE", "1")
            .args(["gcc", "-c", "x.c"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = compile("2");
    assert!(err.contains("completed ok (pump)"), "{err}");
    fs::write(Path::new(&sdir).join("discrepancy_counter"), "@").unwrap();
    let err = compile("2");
    assert!(
        err.contains("completed ok (pump)"),
        "one is below the limit: {err}"
    );
    let err = compile("1");
    assert!(err.contains("pump mode is off"), "{err}");
    assert!(!err.contains("completed ok (pump)"), "{err}");
    let st = Command::new(&d)
        .args(["pump", "--shutdown"])
        .env("INCLUDE_SERVER_PID", &pid)
        .env("INCLUDE_SERVER_DIR", &sdir)
        .output()
        .unwrap();
    assert!(st.status.success());
    assert!(String::from_utf8_lossy(&st.stderr).contains("1 pump-mode compilation(s) failed"));
}

/// A command line our server's vetting refuses in pump mode goes protocol 2 before any
/// file is shipped: here an include dir whose `..`s climb past `/` (gcc stops there, so
/// it reads the client's dir; the server refuses a path that leaves the job's root). It
/// still compiles remotely, and no discrepancy is counted against pump mode.
#[test]
fn a_job_the_server_would_refuse_goes_protocol_2() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap();
    fs::create_dir(dir.join("inc")).unwrap();
    fs::write(dir.join("inc/h.h"), "#define H 7\n").unwrap();
    fs::write(
        dir.join("x.c"),
        "#include \"h.h\"\nint x(void) { return H; }\n",
    )
    .unwrap();
    let daemon = Daemon::start(Kind::Ours, &dir, &[], &[]);
    let hosts = format!("127.0.0.1:{},cpp,lzo", daemon.port);
    let d = distcc();
    let pump = PumpStartup::run(client_cmd(&d, &dir.join("dd"), &hosts).env("TMPDIR", &dir));
    let (sdir, port) = (pump.dir.clone(), pump.port.clone());
    let ups = "../".repeat(dir.components().count() + 1);
    let inc = format!(
        "-I{ups}{}",
        dir.join("inc").strip_prefix("/").unwrap().display()
    );
    let out = client_cmd(&d, &dir.join("dd"), &hosts)
        .env("INCLUDE_SERVER_PORT", &port)
        .env("DISTCC_VERBOSE", "1")
        .args(["gcc", &inc, "-c", "x.c"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("a distcc server would refuse this job in pump mode"),
        "{err}"
    );
    assert!(err.contains("using protocol 2 for x.c"), "{err}");
    assert!(!err.contains("completed ok (pump)"), "{err}");
    assert!(!err.contains("backing off"), "{err}");
    assert!(dir.join("x.o").exists());
    let counter = Path::new(&sdir).join("discrepancy_counter");
    assert_eq!(
        fs::read(&counter).unwrap_or_default(),
        b"",
        "a discrepancy was counted"
    );
    // The server compiled it (as protocol 2) and refused nothing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while daemon.compile_ok_count() < 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = daemon.log_text();
    assert_eq!(daemon.compile_ok_count(), 1, "{log}");
    assert!(!log.contains("climbs out"), "{log}");
}

/// `distcc --scan-includes`: without a `,cpp` host, or without an include server, the
/// same words and exit status as Debian's distcc 3.4; under `pump`, 3.4's `KIND path`
/// lines for the job's include closure, and no compile.
#[test]
fn scan_includes_prints_the_closure_and_fails_like_34() {
    let work = tempfile::tempdir().unwrap();
    let dir = project(work.path(), "proj");
    let ours = distcc();
    let debian = Path::new("/usr/bin/distcc");
    let args = [
        "--scan-includes",
        "gcc",
        "-Iinclude",
        "-c",
        "src/main.c",
        "-o",
        "m.o",
    ];
    for (hosts, code, needle) in [
        (
            "127.0.0.1:1,lzo",
            100,
            "'--scan_includes' specified, but distcc wouldn't have used include server \
             (make sure hosts list includes ',cpp' option?)",
        ),
        (
            "127.0.0.1:1,cpp,lzo",
            1,
            "failed to get includes from include server",
        ),
    ] {
        for program in [ours.as_path(), debian] {
            let out = client_cmd(program, &work.path().join("dd"), hosts)
                .args(args)
                .env_remove("INCLUDE_SERVER_PORT")
                .current_dir(&dir)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(code), "{program:?} {hosts}: {err}");
            assert!(err.contains(needle), "{program:?} {hosts}: {err}");
            assert!(out.stdout.is_empty(), "{program:?} {hosts}");
        }
    }
    assert!(!dir.join("m.o").exists(), "nothing was compiled");
    // Under pump, with our include server; Debian's client asks the same server and must
    // print the same lines.
    let job = "--scan-includes gcc -Iinclude -Iinclude/wrap -Iinclude2 -include config.h \
               -c src/main.c -o m.o";
    // Ours asks for the files themselves (INCLUDE_SERVER_INLINE, set by our pump to the
    // socket); without it, or with it naming another socket, it reads the mirrors as 3.4.
    let o = ours.display();
    let script = format!(
        "test \"$INCLUDE_SERVER_INLINE\" = \"$INCLUDE_SERVER_PORT\" && \
         DISTCC_VERBOSE=1 {o} {job} > ours.txt 2> ours.err && \
         DISTCC_VERBOSE=1 INCLUDE_SERVER_INLINE= {o} {job} > paths.txt 2> paths.err && \
         INCLUDE_SERVER_INLINE=/elsewhere {o} {job} > stale.txt && \
         /usr/bin/distcc {job} > theirs.txt"
    );
    let out = client_cmd(&ours, &work.path().join("dd"), "127.0.0.1:1,cpp,lzo")
        .args(["pump", "sh", "-c", &script])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(dir.join("ours.txt")).unwrap();
    assert_eq!(text, fs::read_to_string(dir.join("theirs.txt")).unwrap());
    assert_eq!(text, fs::read_to_string(dir.join("paths.txt")).unwrap());
    assert_eq!(text, fs::read_to_string(dir.join("stale.txt")).unwrap());
    let said = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
    assert!(
        said("ours.err").contains("their contents in its answer"),
        "{}",
        said("ours.err")
    );
    assert!(
        said("paths.err").contains("read from its mirrors"),
        "{}",
        said("paths.err")
    );
    let lines: Vec<&str> = text.lines().collect();
    let d = dir.display();
    for want in [
        format!("FILE      {d}/src/main.c"),
        format!("FILE      {d}/include/config.h"),
        format!("FILE      {d}/include/app/util.h"),
        format!("FILE      {d}/include/app/linked_target.h"),
        format!("SYMLINK   {d}/include/link.h"),
        "SYSTEMDIR /usr/include".to_owned(),
    ] {
        assert!(lines.contains(&want.as_str()), "{want} missing:\n{text}");
    }
    for l in &lines {
        let (kind, path) = l.split_at(10);
        assert!(
            ["FILE      ", "SYMLINK   ", "DIRECTORY ", "SYSTEMDIR "].contains(&kind),
            "{l}"
        );
        assert!(path.starts_with('/'), "{l}");
    }
    assert!(!dir.join("m.o").exists(), "nothing was compiled");
}

/// `INCLUDE_SERVER_ARGS`: `-d` debug bits raise the include server's logging, the options
/// ours has no need for are accepted quietly, the rest get one warning naming them.
#[test]
fn include_server_args_are_mapped_or_warned_once() {
    let work = tempfile::tempdir().unwrap();
    let dir = project(work.path(), "proj");
    let d = distcc();
    let run = |args: &str| {
        let out = client_cmd(&d, &work.path().join("dd"), "127.0.0.1:1,cpp,lzo")
            .arg("pump")
            .arg(&d)
            .args(["--scan-includes", "gcc", "-Iinclude", "-c", "src/main.c"])
            .env("INCLUDE_SERVER_ARGS", args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let quiet = run("--stat_reset_triggers=include/config.h --no_force_dirs");
    assert!(!quiet.contains("INCLUDE_SERVER_ARGS"), "{quiet}");
    assert!(!quiet.contains("paths for"), "no debug by default: {quiet}");
    let debug = run("-d2 --no_force_dirs");
    assert!(debug.contains("paths for"), "-d2 turns on debug: {debug}");
    let warned = run("-s --email_bound 3 -t --unsafe_absolute_includes");
    let warnings: Vec<&str> = warned
        .lines()
        .filter(|l| l.contains("INCLUDE_SERVER_ARGS"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warned}");
    for name in ["-s", "--email_bound", "-t", "--unsafe_absolute_includes"] {
        assert!(warnings[0].contains(name), "{name}: {warned}");
    }
}
