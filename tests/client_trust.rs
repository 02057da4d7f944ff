//! The client with hostile or odd surroundings: a signal in the middle of a compile, a
//! stale `UNCACHED_ERR_FD`, and file names that are not UTF-8.

mod common;

use std::ffi::OsStr;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, Kind, client_cmd, distcc, run};

/// Files in `dir` whose names start with `prefix`.
fn files_starting(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn sigterm_during_a_compile_removes_the_temp_files() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let tmp = w.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::write(w.join("x.c"), "int x(void) { return 42; }\n").unwrap();
    // A "server" that takes the request and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = client_cmd(&distcc(), &w.join("dir"), &format!("127.0.0.1:{port}"))
        .args(["gcc", "-c", "x.c", "-o", "x.o"])
        .env("TMPDIR", &tmp)
        .env("DISTCC_IO_TIMEOUT", "60")
        .env("DISTCC_EXTENSIONS", "0") // the "server" must get the request, not a hello
        .current_dir(w)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    // Read until the preprocessed source (the request's last part) has arrived: the client
    // then waits for the reply with its temp files in place.
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"DOTI") || !got.ends_with(b"}\n") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "the client hung up");
        got.extend_from_slice(&buf[..n]);
    }
    let before = files_starting(&tmp, "distcc");
    assert!(!before.is_empty(), "no temp files while the job is out");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the client ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "dies of the signal");
    assert_eq!(
        files_starting(&tmp, "distcc"),
        Vec::<String>::new(),
        "left behind (there were {before:?})"
    );
    assert!(!w.join("x.o").exists());
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn a_closed_uncached_err_fd_is_not_written_to() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let d = Daemon::start(Kind::Ours, w, &[], &[]);
    let src = w.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("y.c"), "int y(void) { return 7; }\n").unwrap();
    let tmp = w.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // Descriptor 3 is closed in the client (std opens everything close-on-exec), so the
    // first file the client opens gets number 3: a lock, a state file, a temp file.
    let out = run(
        client_cmd(&distcc(), &w.join("dir"), &format!("127.0.0.1:{}", d.port))
            .args(["gcc", "-c", "y.c", "-o", "y.o"])
            .env("UNCACHED_ERR_FD", "3")
            .env("DISTCC_VERBOSE", "1")
            .env("DISTCC_SAVE_TEMPS", "1")
            .env("TMPDIR", &tmp)
            .current_dir(&src),
    );
    assert!(out.status.success());
    let mut files = Vec::new();
    all_files(w, &mut files);
    for f in files {
        if f.starts_with(d.log.parent().unwrap()) {
            continue;
        }
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(7).any(|x| x == b"distcc["),
            "log lines were written into {}",
            f.display()
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("distcc["),
        "the log goes to stderr instead: {stderr}"
    );
    let object = std::fs::read(src.join("y.o")).unwrap();
    assert!(object.starts_with(b"\x7fELF"));
}

#[test]
fn a_source_name_that_is_not_utf8_compiles_locally_with_its_exact_bytes() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let d = Daemon::start(Kind::Ours, w, &[], &[]);
    let src = w.join("src");
    std::fs::create_dir(&src).unwrap();
    let name = OsStr::from_bytes(b"caf\xe9.c");
    std::fs::write(src.join(name), "int cafe(void) { return 3; }\n").unwrap();
    let reference = run(Command::new("gcc")
        .arg("-c")
        .arg(name)
        .args(["-o", "ref.o"])
        .current_dir(&src));
    assert!(reference.status.success());
    let out = run(
        client_cmd(&distcc(), &w.join("dir"), &format!("127.0.0.1:{}", d.port))
            .arg("gcc")
            .arg("-c")
            .arg(name)
            .args(["-o", "out.o"])
            .env("DISTCC_VERBOSE", "1")
            .current_dir(&src),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let object = std::fs::read(src.join("out.o")).expect("the object was written");
    assert!(
        object == std::fs::read(src.join("ref.o")).unwrap(),
        "differs from a local compile"
    );
    assert!(stderr.contains("not UTF-8"), "{stderr}");
    assert_eq!(d.settled_count("COMPILE_OK"), 0, "{}", d.log_text());
}
