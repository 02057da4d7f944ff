//! Our daemon never runs a program the client chose, never writes outside the job's
//! directory and never sends a server file back, whatever the command line says.
//!
//! Each case sends a crafted request (plain protocol 1, or pump protocol 3 with shipped
//! files) and then checks the effects, not just the answer: a marker that the attack's
//! program would create does not exist, nothing appeared in `outside/` or stayed in the
//! daemon's TMPDIR, no secret bytes came back, and the daemon's log names the refused
//! option. The "server" is this machine: a plugin `.so`, response files and a secret
//! header sit in the test's directory, where an attacker would point.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, Kind, world_writable_dir};
use distcc::protocol::{self, Body, FileEntry, FileKind, Limits, Payload, Request};

const SECRET: &str = "distcc_trust_secret_5a17";

use common::exchange;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn plain(argv: &[String], source: &[u8]) -> Vec<u8> {
    protocol::encode_request(&Request {
        version: 1,
        cwd: None,
        argv: argv.to_vec(),
        body: Body::Source(Payload::Plain(source.to_vec())),
    })
    .unwrap()
}

fn pump(argv: &[String], files: Vec<FileEntry>) -> Vec<u8> {
    protocol::encode_request(&Request {
        version: 3,
        cwd: Some("/w".into()),
        argv: argv.to_vec(),
        body: Body::Files(files),
    })
    .unwrap()
}

fn file(name: &str, data: &[u8]) -> FileEntry {
    FileEntry {
        name: name.into(),
        kind: FileKind::File(Payload::Plain(data.to_vec())),
    }
}

fn link(name: &str, target: &str) -> FileEntry {
    FileEntry {
        name: name.into(),
        kind: FileKind::Link(target.into()),
    }
}

/// The test's "server": a daemon whose TMPDIR we watch, and what an attacker aims at.
struct World {
    _work: tempfile::TempDir,
    d: Daemon,
    outside: PathBuf,
    dtmp: PathBuf,
    marker: PathBuf,
    secret_h: PathBuf,
    evil_so: PathBuf,
    plugin_rsp: PathBuf,
    leak_rsp: PathBuf,
}

fn world() -> World {
    let work = tempfile::tempdir().unwrap();
    // The daemon runs compilers as its unprivileged user (never root): it must be able to
    // reach what an attacker aims at, so that a missed refusal shows.
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let outside = world_writable_dir(work.path(), "outside");
    let dtmp = world_writable_dir(work.path(), "dtmp");
    let flags = world_writable_dir(work.path(), "flags");
    let marker = flags.join("marker");
    let secret_h = flags.join("secret.h");
    std::fs::write(&secret_h, format!("int {SECRET} = 1;\n")).unwrap();
    // A "plugin" whose constructor creates the marker: it runs as soon as anything
    // dlopens it, before gcc checks that it is a plugin at all.
    let evil_c = flags.join("evil.c");
    std::fs::write(
        &evil_c,
        format!(
            "#include <fcntl.h>\n#include <unistd.h>\n__attribute__((constructor)) static void f(void) {{ close(open(\"{}\", O_CREAT | O_WRONLY, 0644)); }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let evil_so = flags.join("evil.so");
    let st = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&evil_so)
        .arg(&evil_c)
        .status()
        .unwrap();
    assert!(st.success(), "building the test plugin");
    let plugin_rsp = flags.join("plugin.rsp");
    std::fs::write(&plugin_rsp, format!("-fplugin={}\n", evil_so.display())).unwrap();
    let leak_rsp = flags.join("leak.rsp");
    std::fs::write(&leak_rsp, format!("{SECRET}\n")).unwrap();
    let d = Daemon::start(
        Kind::Ours,
        work.path(),
        &[],
        &[("TMPDIR", dtmp.to_str().unwrap())],
    );
    World {
        _work: work,
        d,
        outside,
        dtmp,
        marker,
        secret_h,
        evil_so,
        plugin_rsp,
        leak_rsp,
    }
}

/// What the daemon must do with a case.
enum Expect {
    /// Send nothing back, and log a refusal naming this option.
    Refused(String),
    /// Compile (or fail to) without any of the attack's effects.
    Harmless,
    /// Send nothing back, and log that the source holds a directive that reads a file.
    UnsafeSource,
}

const UNSAFE_SOURCE: &str = "the preprocessed source has";

struct Case {
    name: &'static str,
    request: Vec<u8>,
    expect: Expect,
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Lines of the log saying a request was refused and naming `needle`.
fn refusals_naming(d: &Daemon, needle: &str) -> usize {
    d.log_text()
        .lines()
        .filter(|l| l.contains("refused, closing") && l.contains(needle))
        .count()
}

fn run_cases(w: &World, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let needle = match &case.expect {
            Expect::Refused(opt) => format!("option {opt} "),
            Expect::UnsafeSource => UNSAFE_SOURCE.to_string(),
            Expect::Harmless => String::new(),
        };
        let before = refusals_naming(&w.d, &needle);
        let bytes = exchange(w.d.port, &case.request);
        let name = case.name;
        let mut fail = |what: String| failures.push(format!("{name}: {what}"));
        if bytes
            .windows(SECRET.len())
            .any(|win| win == SECRET.as_bytes())
        {
            fail("the server's secret came back in the reply".into());
        }
        match &case.expect {
            Expect::Refused(_) | Expect::UnsafeSource => {
                if !bytes.is_empty() {
                    fail(format!(
                        "answered ({} bytes) instead of refused",
                        bytes.len()
                    ));
                }
                let deadline = Instant::now() + Duration::from_secs(5);
                while refusals_naming(&w.d, &needle) <= before && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if refusals_naming(&w.d, &needle) <= before {
                    fail(format!("the log names no refusal with {needle:?}"));
                }
            }
            Expect::Harmless => {
                if let Err(e) = protocol::decode_reply(&bytes, 1, Limits::default())
                    .or_else(|_| protocol::decode_reply(&bytes, 3, Limits::default()))
                {
                    fail(format!("no reply: {e}"));
                }
            }
        }
        if w.marker.exists() {
            fail("the attack's program ran".into());
            let _ = std::fs::remove_file(&w.marker);
        }
        let out = entries(&w.outside);
        if !out.is_empty() {
            fail(format!("files appeared outside the job: {out:?}"));
            for e in out {
                let p = w.outside.join(e);
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            }
        }
        // The job's directory goes just after the reply.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !entries(&w.dtmp).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = entries(&w.dtmp);
        if !left.is_empty() {
            fail(format!("left in the daemon's TMPDIR: {left:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n--- daemon log ---\n{}",
        failures.join("\n"),
        w.d.log_text()
    );
}

/// A real job still succeeds.
fn assert_serves(d: &Daemon) {
    let bytes = exchange(
        d.port,
        &plain(
            &strings(&["gcc", "-c", "ok.c", "-o", "ok.o"]),
            b"int ok(void){return 1;}\n",
        ),
    );
    let (reply, _) = protocol::decode_reply(&bytes, 1, Limits::default())
        .unwrap_or_else(|e| panic!("daemon stopped serving: {e}: {}", d.log_text()));
    assert_eq!(
        reply.status,
        0,
        "{}",
        String::from_utf8_lossy(&reply.stderr)
    );
    assert!(reply.object.starts_with(b"\x7fELF"));
}

#[test]
fn plain_requests_run_nothing_write_nothing_read_nothing() {
    let w = world();
    let out = |name: &str| w.outside.join(name).display().to_string();
    let dir = format!("{}/", w.outside.display());
    let gcc = |extra: &[&str]| {
        let mut v = strings(&["gcc", "-c", "a.c", "-o", "a.o"]);
        v.extend(strings(extra));
        v
    };
    // `-x` only applies to inputs after it.
    let pre = |extra: &[&str]| {
        let mut v = strings(&["gcc"]);
        v.extend(strings(extra));
        v.extend(strings(&["-c", "a.c", "-o", "a.o"]));
        v
    };
    let code = b"int x;\n".as_slice();
    let specs = format!("@c:\n/bin/touch {}\n\n", w.marker.display());
    let include_secret = format!("#include \"{}\"\nint x;\n", w.secret_h.display());
    let clang = |extra: &[&str]| {
        let mut v = strings(&["clang", "-c", "a.c", "-o", "a.o"]);
        v.extend(strings(extra));
        v
    };
    let secret = w.secret_h.display();
    let skipped_then_secret = format!("#if 0\nint y;\n#else\n#include \"{secret}\"\n#endif\n");
    let probe_secret = format!("#if 0\n#elif __has_include(\"{secret}\")\nint y;\n#endif\n");
    let dependency = format!("#pragma GCC dependency \"{secret}\"\nint x;\n");
    let pragma_operator = format!("_Pragma(\"GCC dependency \\\"{secret}\\\"\")\nint x;\n");
    let pch = format!("#pragma GCC pch_preprocess \"{secret}\"\nint x;\n");
    let rewritten = format!(
        "#if 0 /* expanded by -frewrite-includes */\n#include \"{secret}\"\n\
         #endif /* expanded by -frewrite-includes */\n#define X 1\nint x = X;\n"
    );
    let evil = std::fs::read(&w.evil_so).unwrap();
    let touch = format!("/bin/sh,-c,touch {}", w.marker.display());
    let cases = vec![
        Case {
            name: "-wrapper runs a shell",
            request: plain(&gcc(&["-wrapper", &touch]), code),
            expect: Expect::Refused("-wrapper".into()),
        },
        Case {
            name: "--specs as a separate word",
            request: plain(
                &strings(&[
                    "gcc",
                    "--specs",
                    "a.c",
                    "-x",
                    "c",
                    "/dev/null",
                    "-c",
                    "-o",
                    "a.o",
                ]),
                specs.as_bytes(),
            ),
            expect: Expect::Refused("--specs".into()),
        },
        Case {
            name: "the received source loaded as a plugin",
            request: plain(&pre(&["-x", "c", "-Wp,-fplugin=./distccd_in.i"]), &evil),
            expect: Expect::Refused("-Wp,-fplugin=".into()),
        },
        Case {
            name: "@file holding -fplugin=",
            request: plain(&gcc(&[&format!("@{}", w.plugin_rsp.display())]), code),
            expect: Expect::Refused(format!("@{}", w.plugin_rsp.display())),
        },
        Case {
            name: "@file read back in an error message",
            request: plain(&gcc(&[&format!("@{}", w.leak_rsp.display())]), code),
            expect: Expect::Refused(format!("@{}", w.leak_rsp.display())),
        },
        Case {
            name: "-x c turns #include back on",
            request: plain(&pre(&["-x", "c"]), include_secret.as_bytes()),
            expect: Expect::UnsafeSource,
        },
        Case {
            name: "clang obeys #include in a .i",
            request: plain(&clang(&[]), include_secret.as_bytes()),
            expect: Expect::UnsafeSource,
        },
        Case {
            name: "clang: #include in the branch after #if 0",
            request: plain(&clang(&[]), skipped_then_secret.as_bytes()),
            expect: Expect::UnsafeSource,
        },
        Case {
            name: "clang: __has_include probes a server file",
            request: plain(&clang(&[]), probe_secret.as_bytes()),
            expect: Expect::UnsafeSource,
        },
        Case {
            name: "#pragma GCC dependency stats a server file",
            request: plain(&gcc(&[]), dependency.as_bytes()),
            expect: Expect::UnsafeSource,
        },
        Case {
            name: "gcc directives-only: _Pragma(\"GCC dependency\")",
            request: plain(
                &gcc(&["-fpreprocessed", "-fdirectives-only"]),
                pragma_operator.as_bytes(),
            ),
            expect: Expect::UnsafeSource,
        },
        Case {
            name: "clang: #pragma GCC pch_preprocess loads a server file",
            request: plain(&clang(&[]), pch.as_bytes()),
            expect: Expect::UnsafeSource,
        },
        Case {
            name: "clang: #include inside #if 0, as -frewrite-includes writes it",
            request: plain(&clang(&[]), rewritten.as_bytes()),
            expect: Expect::Harmless,
        },
        Case {
            name: "clang -traditional-cpp",
            request: plain(&clang(&["-traditional-cpp"]), rewritten.as_bytes()),
            expect: Expect::Refused("-traditional-cpp".into()),
        },
        Case {
            name: "-fdirectives-only turns #include back on",
            request: plain(&pre(&["-fdirectives-only"]), include_secret.as_bytes()),
            expect: Expect::Refused("-fdirectives-only".into()),
        },
        Case {
            name: "-include reads a server file",
            request: plain(
                &pre(&["-x", "c", "-include", &w.secret_h.display().to_string()]),
                code,
            ),
            expect: Expect::Refused("-include".into()),
        },
        Case {
            name: "--output= after -o",
            request: plain(&gcc(&[&format!("--output={}", out("o1.o"))]), code),
            expect: Expect::Refused("--output=".into()),
        },
        Case {
            name: "--output F after -o",
            request: plain(&gcc(&["--output", &out("o2.o")]), code),
            expect: Expect::Refused("--output".into()),
        },
        Case {
            name: "--output= alone is the object",
            request: plain(
                &strings(&["gcc", "-c", "a.c", &format!("--output={}", out("o3.o"))]),
                code,
            ),
            expect: Expect::Harmless,
        },
        Case {
            name: "-MD -MF F",
            request: plain(&pre(&["-x", "c", "-MD", "-MF", &out("dep.d")]), code),
            expect: Expect::Refused("-MF".into()),
        },
        Case {
            name: "-aux-info F",
            request: plain(&gcc(&["-aux-info", &out("aux.txt")]), code),
            expect: Expect::Refused("-aux-info".into()),
        },
        Case {
            name: "-fdump-tree-original=F",
            request: plain(&gcc(&[&format!("-fdump-tree-original={}", out("t"))]), code),
            expect: Expect::Refused("-fdump-".into()),
        },
        Case {
            name: "-fdump-rtl-expand=F",
            request: plain(&gcc(&[&format!("-fdump-rtl-expand={}", out("r"))]), code),
            expect: Expect::Refused("-fdump-".into()),
        },
        Case {
            name: "-fdump-ipa-all=F",
            request: plain(&gcc(&[&format!("-fdump-ipa-all={}", out("ipa"))]), code),
            expect: Expect::Refused("-fdump-".into()),
        },
        Case {
            name: "-fdump-tree-all -dumpdir D",
            request: plain(&gcc(&["-fdump-tree-all", "-dumpdir", &dir]), code),
            expect: Expect::Refused("-fdump-".into()),
        },
        Case {
            name: "-save-temps -dumpdir D",
            request: plain(&gcc(&["-save-temps", "-dumpdir", &dir]), code),
            expect: Expect::Refused("-save-temps".into()),
        },
        Case {
            name: "-dumpbase D/base",
            request: plain(
                &gcc(&["-dumpbase", &out("base"), "-fdump-tree-original"]),
                code,
            ),
            expect: Expect::Refused("-dumpbase".into()),
        },
        Case {
            name: "-fstack-usage",
            request: plain(&gcc(&["-fstack-usage", "-dumpdir", &dir]), code),
            expect: Expect::Refused("-fstack-usage".into()),
        },
        Case {
            name: "-fcallgraph-info",
            request: plain(&gcc(&["-fcallgraph-info", "-dumpdir", &dir]), code),
            expect: Expect::Refused("-fcallgraph-info".into()),
        },
        Case {
            name: "-gsplit-dwarf",
            request: plain(&gcc(&["-gsplit-dwarf", "-dumpdir", &dir]), code),
            expect: Expect::Refused("-gsplit-dwarf".into()),
        },
        Case {
            name: "-fopt-info-all=F",
            request: plain(
                &gcc(&["-O2", &format!("-fopt-info-all={}", out("opt"))]),
                code,
            ),
            expect: Expect::Refused("-fopt-info-".into()),
        },
        Case {
            name: "-fsave-optimization-record",
            request: plain(
                &gcc(&["-fsave-optimization-record", "-dumpdir", &dir]),
                code,
            ),
            expect: Expect::Refused("-fsave-optimization-record".into()),
        },
        Case {
            name: "-ftest-coverage -fprofile-note=F",
            request: plain(
                &gcc(&[
                    "-ftest-coverage",
                    &format!("-fprofile-note={}", out("n.gcno")),
                ]),
                code,
            ),
            expect: Expect::Refused("-ftest-coverage".into()),
        },
        Case {
            name: "-Wa,-aln=F",
            request: plain(&gcc(&[&format!("-Wa,-aln={}", out("l1"))]), code),
            expect: Expect::Refused(format!("-Wa,-aln={}", out("l1"))),
        },
        Case {
            name: "-Xassembler -aln=F",
            request: plain(&gcc(&["-Xassembler", &format!("-aln={}", out("l2"))]), code),
            expect: Expect::Refused(format!("-Xassembler -aln={}", out("l2"))),
        },
        Case {
            name: "-Wa,--MD,F",
            request: plain(&gcc(&[&format!("-Wa,--MD,{}", out("asdeps"))]), code),
            expect: Expect::Refused("-Wa,--MD".into()),
        },
    ];
    run_cases(&w, cases);
    assert_serves(&w.d);
}

#[test]
fn pump_requests_run_nothing_write_nothing_read_nothing() {
    let w = world();
    let gcc = |extra: &[&str]| {
        let mut v = strings(&["gcc", "-c", "a.c", "-o", "a.o"]);
        v.extend(strings(extra));
        v
    };
    let evil = std::fs::read(&w.evil_so).unwrap();
    let specs = format!("@c:\n/bin/touch {}\n\n", w.marker.display());
    let src = || file("/w/a.c", b"int x;\n");
    let escape = format!("{}{}", "../".repeat(30), w.outside.display());
    let climb = format!(
        "{}{}",
        "../".repeat(30),
        w.secret_h.display().to_string().trim_start_matches('/')
    );
    let cases = vec![
        Case {
            name: "shipped @x.rsp",
            request: pump(
                &gcc(&["@x.rsp"]),
                vec![
                    src(),
                    file("/w/x.rsp", b"-fplugin=./evil.so\n"),
                    file("/w/evil.so", &evil),
                ],
            ),
            expect: Expect::Refused("@x.rsp".into()),
        },
        Case {
            name: "shipped .so with -Wp,-fplugin",
            request: pump(
                &gcc(&["-Wp,-fplugin=./evil.so"]),
                vec![src(), file("/w/evil.so", &evil)],
            ),
            expect: Expect::Refused("-Wp,-fplugin=".into()),
        },
        Case {
            name: "shipped specs file",
            request: pump(
                &gcc(&["-specs", "sp.txt"]),
                vec![src(), file("/w/sp.txt", specs.as_bytes())],
            ),
            expect: Expect::Refused("-specs".into()),
        },
        Case {
            name: "bin/specs with -B ./bin/",
            request: pump(
                &gcc(&["-B", "./bin/"]),
                vec![src(), file("/w/bin/specs", specs.as_bytes())],
            ),
            expect: Expect::Refused("-B".into()),
        },
        Case {
            name: "a trailing -MT swallows the server's -MF",
            request: pump(
                &gcc(&[
                    "-MD",
                    "-MF",
                    &w.outside.join("dep.d").display().to_string(),
                    "-MT",
                ]),
                vec![src()],
            ),
            expect: Expect::Refused("-MT".into()),
        },
        Case {
            name: "a LINK out of the root and a relative -aux-info",
            request: pump(
                &gcc(&["-aux-info", "out/aux.txt"]),
                vec![src(), link("/w/out", &escape)],
            ),
            expect: Expect::Refused("-aux-info".into()),
        },
        Case {
            name: "-include climbing out of the root",
            request: pump(&gcc(&["-include", &climb]), vec![src()]),
            expect: Expect::Refused("-include".into()),
        },
    ];
    run_cases(&w, cases);
    // An honest pump job with the client's own -MD -MF -MT still works.
    let bytes = exchange(
        w.d.port,
        &pump(
            &gcc(&["-MD", "-MF", "/w/a.d", "-MT", "a.o", "-I", "inc"]),
            vec![
                file("/w/a.c", b"#include \"h.h\"\nint x = H;\n"),
                file("/w/inc/h.h", b"#define H 1\n"),
            ],
        ),
    );
    let (reply, _) = protocol::decode_reply(&bytes, 3, Limits::default())
        .unwrap_or_else(|e| panic!("honest pump job: {e}: {}", w.d.log_text()));
    assert_eq!(
        reply.status,
        0,
        "{}",
        String::from_utf8_lossy(&reply.stderr)
    );
    let dotd = String::from_utf8(reply.dotd.unwrap_or_default()).unwrap();
    assert!(dotd.starts_with("a.o: a.c"), "{dotd}");
    assert!(dotd.contains("inc/h.h"), "{dotd}");
}

#[test]
fn multi_byte_compiler_names_are_refused_and_the_daemon_serves_on() {
    let w = world();
    for name in ["/binéé", "/usr/bin日本", "/usr/bin/日本", "é"] {
        // (The log names what was checked: `/usr/bin/日本` is refused as `日本`.)
        let tail = name.rsplit('/').next().unwrap_or(name);
        let before = refusals_naming(&w.d, tail);
        let bytes = exchange(
            w.d.port,
            &plain(&strings(&[name, "-c", "a.c", "-o", "a.o"]), b"int x;\n"),
        );
        assert!(bytes.is_empty(), "{name} was answered");
        let deadline = Instant::now() + Duration::from_secs(5);
        while refusals_naming(&w.d, tail) <= before {
            assert!(
                Instant::now() < deadline,
                "no refusal logged for {name}: {}",
                w.d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_serves(&w.d);
    }
    assert!(w.d.log_text().lines().all(|l| !l.contains("panicked")));
}

/// Debian's distcc 3.4 client keeps `-x c`, `-iquote` and `-idirafter DIR`… in what it
/// sends (its strip list lacks them): our daemon must still compile such jobs, as
/// preprocessed input, rather than refuse them.
#[test]
fn debian_client_with_x_c_and_include_dirs_still_compiles_remotely() {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let d = Daemon::start(Kind::Ours, work.path(), &[], &[]);
    let dir = work.path().join("src");
    std::fs::create_dir_all(dir.join("inc")).unwrap();
    std::fs::write(dir.join("inc/q.h"), "#define Q 42\n").unwrap();
    std::fs::write(dir.join("a.c"), "#include \"q.h\"\nint q = Q;\n").unwrap();
    let out = common::client_cmd(
        Path::new("/usr/bin/distcc"),
        &work.path().join("distcc-dir"),
        &format!("127.0.0.1:{}", d.port),
    )
    .current_dir(&dir)
    .env("DISTCC_FALLBACK", "0")
    .env("DISTCC_SKIP_LOCAL_RETRY", "1")
    .env("DISTCC_BACKOFF_PERIOD", "0")
    .args([
        "gcc",
        "-x",
        "c",
        "-iquote",
        "inc",
        "-idirafter",
        "inc",
        "-O2",
    ])
    .args(["-c", "a.c", "-o", "a.o"])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log_text()
    );
    assert!(
        std::fs::read(dir.join("a.o"))
            .unwrap()
            .starts_with(b"\x7fELF")
    );
    let log = common::wait_for_log(&d.log, "COMPILE_OK");
    assert!(log.contains("COMPILE_OK"), "compiled remotely: {log}");
}

/// Reads no option names: `.incbin` in inline assembly and a pump symlink out of the
/// root. The compiler's confinement (Landlock) keeps both from server files; the job may
/// fail, but nothing of the file comes back.
#[test]
fn server_files_cannot_be_read_through_the_assembler_or_pump_links() {
    let w = world();
    let secret = w.secret_h.display().to_string();
    let gcc = strings(&["gcc", "-c", "a.c", "-o", "a.o"]);
    let incbin =
        format!("__asm__(\".section .rodata\\n.incbin \\\"{secret}\\\"\\n.text\");\nint x;\n");
    let climb = format!("{}{}", "../".repeat(30), secret.trim_start_matches('/'));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("plain .incbin", plain(&gcc, incbin.as_bytes())),
        (
            "pump .incbin",
            pump(&gcc, vec![file("/w/a.c", incbin.as_bytes())]),
        ),
        (
            "pump LINK out of the root",
            pump(
                &gcc,
                vec![
                    file("/w/a.c", b"#include \"leak.h\"\n"),
                    link("/w/leak.h", &climb),
                ],
            ),
        ),
    ];
    for (name, request) in cases {
        let bytes = exchange(w.d.port, &request);
        let version = if name.starts_with("plain") { 1 } else { 3 };
        let reply = protocol::decode_reply(&bytes, version, Limits::default())
            .map(|(r, _)| r)
            .unwrap_or_default();
        let everything = [&reply.object[..], &reply.stderr, &reply.stdout].concat();
        assert!(
            !everything
                .windows(SECRET.len())
                .any(|w| w == SECRET.as_bytes()),
            "{name}: the server file came back (status {})",
            reply.status
        );
        assert_ne!(
            reply.status, 0,
            "{name}: the read must fail, not be skipped"
        );
        assert_serves(&w.d);
    }
}

/// A preprocessed source's line markers name files; with caret diagnostics gcc would read
/// the file of that name on the server to quote the line of an error, and send it back.
#[test]
fn diagnostics_quote_no_server_file() {
    let secret = "PRETTY_NAME";
    assert!(
        std::fs::read_to_string("/etc/os-release")
            .unwrap()
            .starts_with(secret),
        "the test needs /etc/os-release to start with {secret}"
    );
    let t = tempfile::tempdir().unwrap();
    let d = Daemon::start(Kind::Ours, t.path(), &[], &[]);
    let argv = strings(&["gcc", "-c", "x.c", "-o", "x.o"]);
    let bytes = exchange(
        d.port,
        &plain(&argv, b"# 1 \"/etc/os-release\"\nint x = ;\n"),
    );
    let (reply, _) = protocol::decode_reply(&bytes, 1, Limits::default()).unwrap();
    let text = String::from_utf8_lossy(&reply.stderr);
    assert!(
        text.contains("/etc/os-release:1"),
        "the error is reported: {text}"
    );
    assert!(
        !text.contains(secret),
        "no line of the server's file: {text}"
    );
}

/// Pump jobs reuse the job dir of an earlier one (src/daemon/pool.rs): a header the earlier
/// job had and this one has not must be gone — found first on the include path, or by
/// `__has_include`, it would give another object with a status of success. A header that
/// changed must be the new one, and the dir must really be the reused one.
#[test]
fn a_pump_job_never_sees_an_earlier_jobs_files() {
    let w = world();
    let gcc = strings(&["gcc", "-c", "a.c", "-o", "a.o", "-I", "inc1", "-I", "inc2"]);
    let job_dirs = || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let dirs = entries(&w.dtmp);
            // The dir goes back once the reply is out: wait for it to be tidied.
            let tidy =
                dirs.len() == 1 && entries(&w.dtmp.join(&dirs[0])) == vec!["root".to_string()];
            if tidy || Instant::now() > deadline {
                return dirs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let compile = |files: Vec<FileEntry>| {
        let bytes = exchange(w.d.port, &pump(&gcc, files));
        let (reply, _) = protocol::decode_reply(&bytes, 3, Limits::default())
            .unwrap_or_else(|e| panic!("no reply: {e}: {}", w.d.log_text()));
        (
            reply.status,
            String::from_utf8_lossy(&reply.stderr).into_owned(),
        )
    };
    let (status, err) = compile(vec![
        file("/w/a.c", b"#include \"h.h\"\nint x = H;\n"),
        file("/w/inc1/h.h", b"#define H 1\n"),
        file("/w/inc1/only1.h", b"\n"),
        file("/w/inc2/h.h", b"#define H 2\n"),
        file("/w/inc2/changed.h", b"#define C 1\n"),
    ]);
    assert_eq!(status, 0, "{err}");
    let first = job_dirs();
    assert_eq!(first.len(), 1, "one job dir kept: {first:?}");
    let (status, err) = compile(vec![
        file(
            "/w/a.c",
            b"#include \"h.h\"\n#include \"changed.h\"\n\
              #if H != 2\n#error a header of the earlier job was found\n#endif\n\
              #if __has_include(\"only1.h\")\n#error an earlier job's header is there\n#endif\n\
              #if C != 2\n#error the earlier job's version of a header\n#endif\n\
              int x = H;\n",
        ),
        file("/w/inc2/h.h", b"#define H 2\n"),
        file("/w/inc2/changed.h", b"#define C 2\n"),
    ]);
    assert_eq!(status, 0, "{err}");
    assert_eq!(
        job_dirs(),
        first,
        "the second job reused the first one's dir"
    );
}
