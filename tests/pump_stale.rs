//! Pump mode must never compile stale text: a source or header changed between two compiles
//! served by the same include server must reach the distcc server in its new version, even
//! when the change keeps the file's size and its mtime (only the ctime, or the inode, tells).
//! Every job must still run remotely as protocol 3.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Daemon, Kind, PumpStartup, client_cmd, distcc};

/// Stops a `pump --startup` include server by PID even when an assertion fails first.
/// A fixed mtime every version of a file gets back, so that mtime alone can't tell them
/// apart (and neither can a 1-second clock).
const MTIME: &str = "@1600000000";

/// The 4-byte little-endian `int` in an object's `.data` (the file defines exactly one
/// initialised, non-zero `int`).
fn data_int(obj: &Path) -> i32 {
    let bin = obj.with_extension("data");
    let st = Command::new("objcopy")
        .args(["-O", "binary", "-j", ".data"])
        .arg(obj)
        .arg(&bin)
        .status()
        .unwrap();
    assert!(st.success(), "objcopy {}", obj.display());
    let b = fs::read(&bin).unwrap();
    assert_eq!(b.len(), 4, "{}: .data is {:?}", obj.display(), b);
    i32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The work dir: `b.c` defines `w`, `c.c` defines `v` from `h.h`'s `HV`.
fn sources(dir: &Path) {
    fs::write(dir.join("b.c"), "int w = 1;\n").unwrap();
    fs::write(dir.join("h.h"), "#define HV 10\n").unwrap();
    fs::write(dir.join("c.c"), "#include \"h.h\"\nint v = HV;\n").unwrap();
    let st = Command::new("touch")
        .args(["-d", MTIME, "b.c", "h.h", "c.c"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

/// How many jobs our daemon ran as protocol 3, once that number holds still.
fn protocol3_jobs(daemon: &Daemon, want: usize) -> usize {
    for _ in 0..100 {
        if daemon.settled_count("job complete (protocol 3)") >= want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    daemon.settled_count("job complete (protocol 3)")
}

/// The script's compiles (`$CC` is `distcc gcc`): after each change, put the mtime back.
const SCRIPT: &str = r#"set -e
cc() { $CC -O2 -c "$1" -o "$2"; }
cc b.c b1.o
cc c.c c1.o
# Same size, same mtime: only the ctime differs (written in place, same inode).
printf 'int w = 3;\n' > b.c; touch -d "$MTIME" b.c
cc b.c b2.o
# Another size.
printf 'int w = 4242;\n' > b.c; touch -d "$MTIME" b.c
cc b.c b3.o
# The header, same size and mtime, in place.
printf '#define HV 20\n' > h.h; touch -d "$MTIME" h.h
cc c.c c2.o
# The header replaced by a new file (another inode), same size and mtime.
printf '#define HV 30\n' > h.new; touch -d "$MTIME" h.new; mv h.new h.h
cc c.c c3.o
"#;

const WANT: &[(&str, i32)] = &[
    ("b1.o", 1),
    ("c1.o", 10),
    ("b2.o", 3),
    ("b3.o", 4242),
    ("c2.o", 20),
    ("c3.o", 30),
];

fn check_objects(dir: &Path, client_log: &Path, daemon: &Daemon) {
    for (obj, want) in WANT {
        assert_eq!(data_int(&dir.join(obj)), *want, "{obj} holds a stale value");
    }
    let log = fs::read_to_string(client_log).unwrap_or_default();
    assert_eq!(
        log.matches("completed ok (pump)").count(),
        WANT.len(),
        "not every job went as protocol 3: {log}"
    );
    assert!(!log.contains("using protocol 2"), "{log}");
    assert_eq!(
        protocol3_jobs(daemon, WANT.len()),
        WANT.len(),
        "{}",
        daemon.log_text()
    );
}

fn workdir() -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().canonicalize().unwrap().join("w");
    fs::create_dir(&dir).unwrap();
    sources(&dir);
    (work, dir)
}

/// One `pump sh -c …`: compile, change, compile, all served by one include server.
#[test]
fn one_pump_command_sees_every_change() {
    let (work, dir) = workdir();
    let daemon = Daemon::start(Kind::Ours, work.path(), &["--log-level", "debug"], &[]);
    let log = work.path().join("client.log");
    let d = distcc();
    let out = client_cmd(
        &d,
        &work.path().join("distcc-dir"),
        &format!("127.0.0.1:{},cpp,lzo", daemon.port),
    )
    .args(["pump", "sh", "-c", SCRIPT])
    .env("CC", format!("{} gcc", d.display()))
    .env("MTIME", MTIME)
    .env("DISTCC_LOG", &log)
    .env("DISTCC_VERBOSE", "1")
    .current_dir(&dir)
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_objects(&dir, &log, &daemon);
}

/// `pump --startup`, compiles run one by one from here with changes in between, then
/// `pump --shutdown`.
#[test]
fn a_background_include_server_sees_every_change() {
    let (work, dir) = workdir();
    let daemon = Daemon::start(Kind::Ours, work.path(), &["--log-level", "debug"], &[]);
    let hosts = format!("127.0.0.1:{},cpp,lzo", daemon.port);
    let d = distcc();
    let pump = PumpStartup::run(
        client_cmd(&d, &work.path().join("distcc-dir"), &hosts).env("TMPDIR", work.path()),
    );
    let (pid, server_dir, port) = (pump.pid.clone(), pump.dir.clone(), pump.port.clone());
    let log = work.path().join("client.log");
    let compile = |src: &str, obj: &str| {
        let out = client_cmd(&d, &work.path().join("distcc-dir"), &hosts)
            .args(["gcc", "-O2", "-c", src, "-o", obj])
            .env("INCLUDE_SERVER_PORT", &port)
            .env("DISTCC_LOG", &log)
            .env("DISTCC_VERBOSE", "1")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Write in place (same inode), then put the mtime back.
    let change = |name: &str, text: &str| {
        fs::write(dir.join(name), text).unwrap();
        let st = Command::new("touch")
            .args(["-d", MTIME, name])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(st.success());
    };
    compile("b.c", "b1.o");
    compile("c.c", "c1.o");
    change("b.c", "int w = 3;\n");
    compile("b.c", "b2.o");
    change("b.c", "int w = 4242;\n");
    compile("b.c", "b3.o");
    change("h.h", "#define HV 20\n");
    compile("c.c", "c2.o");
    // A new inode, renamed over the header.
    change("h.new", "#define HV 30\n");
    fs::rename(dir.join("h.new"), dir.join("h.h")).unwrap();
    compile("c.c", "c3.o");
    let st = Command::new(&d)
        .args(["pump", "--shutdown"])
        .env("INCLUDE_SERVER_PID", &pid)
        .env("INCLUDE_SERVER_DIR", &server_dir)
        .status()
        .unwrap();
    assert!(st.success());
    check_objects(&dir, &log, &daemon);
}
