//! Debian's distcc 3.4 client against our daemon, and captured distcc 3.4 requests replayed
//! to it: objects must be byte-identical to what Debian's own distccd returns, warnings and
//! errors must reach the user, exit codes must match.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;

use common::{Daemon, Kind, client_cmd, fixture};
use distcc::protocol::{self, Limits};

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Compile `file` with Debian's client through `daemon`; returns the output and the object.
fn compile(
    daemon: &Daemon,
    work: &Path,
    lzo: bool,
    compiler: &str,
    flags: &[&str],
    file: &str,
) -> (Output, Option<Vec<u8>>) {
    let hosts = format!("127.0.0.1:{}{}", daemon.port, if lzo { ",lzo" } else { "" });
    // The same directory for both daemons: with -g the client's cwd is in the object.
    let dir = work.join(format!("{lzo}-{file}"));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["hello.c", "hello.h", "warn.c", "broken.c", "shapes.cc"] {
        std::fs::copy(data(f), dir.join(f)).unwrap();
    }
    let out = client_cmd(
        Path::new("/usr/bin/distcc"),
        &work.join("distcc-dir"),
        &hosts,
    )
    .current_dir(&dir)
    .env("DISTCC_FALLBACK", "0")
    .env("DISTCC_SKIP_LOCAL_RETRY", "1")
    .env("DISTCC_BACKOFF_PERIOD", "0")
    .arg(compiler)
    .args(flags)
    .args(["-c", file, "-o", "out.o"])
    .output()
    .unwrap();
    let obj = std::fs::read(dir.join("out.o")).ok();
    let _ = std::fs::remove_file(dir.join("out.o"));
    (out, obj)
}

#[test]
fn debian_client_gets_identical_results_from_our_daemon() {
    let work = tempfile::tempdir().unwrap();
    let ours = Daemon::start(Kind::Ours, work.path(), &[], &[]);
    let theirs = Daemon::start(Kind::Debian, work.path(), &[], &[]);
    let cases: &[(&str, &[&str], &str)] = &[
        ("gcc", &["-O2"], "hello.c"),
        ("gcc", &["-O2", "-g", "-MD"], "hello.c"),
        ("gcc", &["-Wall"], "warn.c"),
        ("gcc", &[], "broken.c"),
        ("g++", &["-O2", "-g"], "shapes.cc"),
    ];
    for lzo in [false, true] {
        for (cc, flags, file) in cases {
            let (o1, obj1) = compile(&ours, work.path(), lzo, cc, flags, file);
            let (o2, obj2) = compile(&theirs, work.path(), lzo, cc, flags, file);
            let what = format!("{cc} {flags:?} {file} lzo={lzo}");
            assert_eq!(o1.status.code(), o2.status.code(), "{what}: exit codes");
            // Debian's client adds its own lines on failure; the compiler's text must match.
            let e1 = String::from_utf8_lossy(&o1.stderr);
            let e2 = String::from_utf8_lossy(&o2.stderr);
            let compiler_lines = |e: &str| {
                e.lines()
                    .filter(|l| !l.starts_with("distcc["))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            assert_eq!(compiler_lines(&e1), compiler_lines(&e2), "{what}: stderr");
            if *file == "warn.c" {
                assert!(
                    e1.contains("unused variable"),
                    "{what}: the warning reaches the user: {e1}"
                );
            }
            if *file == "broken.c" {
                assert_ne!(o1.status.code(), Some(0));
                assert!(
                    e1.contains("undeclared_thing"),
                    "{what}: the error reaches the user: {e1}"
                );
                continue;
            }
            assert_eq!(o1.status.code(), Some(0), "{what}: {e1}");
            assert!(obj1.is_some(), "{what}: object written");
            assert!(
                obj1 == obj2,
                "{what}: objects differ between our daemon and Debian's"
            );
        }
    }
    assert_eq!(ours.compile_ok_count(), 8, "{}", ours.log_text());
    let log = ours.log_text();
    assert_eq!(log.matches("COMPILE_ERROR").count(), 2, "{log}");
    assert!(
        log.contains("COMPILE_OK exit:0 sig:0 core:0 ret:0 time:"),
        "{log}"
    );
    assert!(log.contains("x86_64-linux-gnu-gcc hello.c"), "{log}");
}

/// Send raw request bytes; return everything the daemon sends back before closing.
pub fn exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let _ = s.write_all(request);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    reply
}

#[test]
fn captured_distcc_requests_replay() {
    let work = tempfile::tempdir().unwrap();
    let ours = Daemon::start(Kind::Ours, work.path(), &[], &[]);
    for (name, object) in [
        ("p1-hello", Some("p1-hello.o")),
        ("p2-hello", None),
        ("p2-warn-cxx", Some("p2-warn-cxx.o")),
        ("p1-broken", None),
        ("p3-hello", Some("p3-hello.o")),
    ] {
        let req = fixture(&format!("{name}.req"));
        let version = protocol::decode_request(&req, Limits::default())
            .unwrap()
            .0
            .version;
        let want = protocol::decode_reply(
            &fixture(&format!("{name}.resp")),
            version,
            Limits::default(),
        )
        .unwrap()
        .0;
        let bytes = exchange(ours.port, &req);
        let (got, used) = protocol::decode_reply(&bytes, version, Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", ours.log_text()));
        assert_eq!(used, bytes.len(), "{name}: nothing after the reply");
        assert_eq!(
            got.status,
            want.status,
            "{name}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(got.stderr.is_empty(), want.stderr.is_empty(), "{name}");
        if let Some(o) = object {
            assert!(
                got.object == fixture(o),
                "{name}: object differs from distcc 3.4's"
            );
        }
        if name == "p2-hello" {
            // Built with -g in /build/hello: ours must equal what distcc 3.4 returned.
            assert!(got.object == want.object, "{name}: object differs");
        }
        if name == "p3-hello" {
            let dotd = String::from_utf8(got.dotd.clone().unwrap()).unwrap();
            assert_eq!(
                dotd.as_bytes(),
                fixture("p3-hello.d"),
                "the .d equals distcc 3.4's"
            );
            assert!(
                !dotd.contains("distccd"),
                "no server temp path in the .d: {dotd}"
            );
        }
    }
}
