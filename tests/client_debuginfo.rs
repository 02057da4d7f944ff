//! Plain mode with gcc's `-fdirectives-only`: the client resolves includes and
//! conditionals, the server expands the macros, so an object built with `-g` is a local
//! build's and a warning from inside a macro carries its "in expansion of macro" note —
//! through our daemon and through Debian's distccd 3.4, which just runs the command line.
//! By default only for a host whose extension answer said `directives-only yes` (our
//! daemon, unless ccache stands in front of its gcc); `DISTCC_DIRECTIVES_ONLY=1` forces
//! it for every host, `0` turns it off.
//! What directives-only can't do (`__COUNTER__` in `#if`, `__BASE_FILE__`,
//! `-traditional-cpp`) is preprocessed in full and still builds right; and our daemon
//! refuses a directives-only source that would read the server's files.

mod common;

use common::{
    Daemon, Kind, LIBSTDCXX_SOURCE, compile_here, compiler_stderr, distcc_here, exchange, ext_memo,
    plain_request,
};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn gcc_local(dir: &Path, args: &[&str]) -> Output {
    compile_here("gcc", dir, args)
}

/// `distcc gcc ARGS`, directives-only forced for every host, whatever its memo says (see
/// settings.rs).
fn through_distcc(dir: &Path, hosts: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let env = [&[("DISTCC_DIRECTIVES_ONLY", "1")], env].concat();
    distcc_here(dir, hosts, &env, "gcc", args)
}

/// `distcc gcc ARGS` with the client's defaults (no `DISTCC_DIRECTIVES_ONLY`) and `env`.
fn by_default(dir: &Path, hosts: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    distcc_here(dir, hosts, env, "gcc", args)
}

/// Macros on lines that go on after them: a full `-E` moves every later column.
const SOURCE: &str = r#"#include <stdio.h>
#define LESS(a,b) ((a) < (b))
#define TWICE(x) ((x) + (x))
int f(int a, unsigned b) {
  int y = TWICE(a); if (LESS(a, b)) y++; printf("%d\n", y);
  return y;
}
"#;

/// The bytes of one section of an object, as `readelf -x` dumps them.
fn section(obj: &Path, name: &str) -> String {
    let o = Command::new("readelf")
        .args(["-x", name])
        .arg(obj)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dump = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        dump.contains("0x00000000"),
        "{name} of {}: {dump}",
        obj.display()
    );
    dump
}

/// The decoded line table (file, line, address, view), without objdump's header that
/// names the object.
fn decoded_lines(obj: &Path) -> String {
    let o = Command::new("objdump")
        .arg("--dwarf=decodedline")
        .arg(obj)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(2)
        .map(|l| format!("{l}\n"))
        .collect()
}

fn debug_info_is_a_local_builds(kind: Kind) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    fs::write(dir.join("w.c"), SOURCE).unwrap();
    let d = Daemon::start(kind, dir, &[], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);

    // `-g`: the line table is a local build's, byte for byte.
    gcc_local(dir, &["-g", "-c", "w.c", "-o", "local.o"]);
    through_distcc(dir, &hosts, &[], &["-g", "-c", "w.c", "-o", "remote.o"]);
    assert_eq!(
        decoded_lines(&dir.join("remote.o")),
        decoded_lines(&dir.join("local.o"))
    );
    assert_eq!(
        section(&dir.join("remote.o"), ".debug_line"),
        section(&dir.join("local.o"), ".debug_line")
    );
    // Only DW_AT_producer, which records the command line, can tell them apart: without
    // it (`-gno-record-gcc-switches`) the whole object is a local build's.
    let g = ["-g", "-gno-record-gcc-switches", "-c", "w.c"];
    gcc_local(dir, &[&g[..], &["-o", "local2.o"]].concat());
    through_distcc(dir, &hosts, &[], &[&g[..], &["-o", "remote2.o"]].concat());
    assert_eq!(
        fs::read(dir.join("remote2.o")).unwrap(),
        fs::read(dir.join("local2.o")).unwrap(),
        "an object compiled from a directives-only source"
    );
    // As distcc 3.4 (a full -E), the columns move: the comparison above can fail.
    through_distcc(
        dir,
        &hosts,
        &[("DISTCC_DIRECTIVES_ONLY", "0")],
        &[&g[..], &["-o", "full.o"]].concat(),
    );
    assert_ne!(
        fs::read(dir.join("full.o")).unwrap(),
        fs::read(dir.join("local2.o")).unwrap(),
        "a fully preprocessed source gives other columns"
    );
    assert_eq!(d.compile_ok_count(), 3, "{}", d.log_text());
}

#[test]
fn debug_info_is_a_local_builds_through_our_distccd() {
    debug_info_is_a_local_builds(Kind::Ours);
}

#[test]
fn debug_info_is_a_local_builds_through_debian_distccd() {
    debug_info_is_a_local_builds(Kind::Debian);
}

#[test]
fn a_warning_from_a_macro_keeps_its_expansion_note() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    fs::write(dir.join("w.c"), SOURCE).unwrap();
    let d = Daemon::start(Kind::Ours, dir, &[], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);
    // No caret lines: the server would print them from its own copy of the file.
    let args = [
        "-Wall",
        "-Wextra",
        "-fno-diagnostics-show-caret",
        "-c",
        "w.c",
        "-o",
    ];
    let local = gcc_local(dir, &[&args[..], &["local.o"]].concat());
    let ours = through_distcc(dir, &hosts, &[], &[&args[..], &["remote.o"]].concat());
    let local_err = String::from_utf8_lossy(&local.stderr).into_owned();
    assert!(
        local_err.contains("w.c:5:25: note: in expansion of macro"),
        "{local_err}"
    );
    assert_eq!(compiler_stderr(&ours), local_err);
    let full = through_distcc(
        dir,
        &hosts,
        &[("DISTCC_DIRECTIVES_ONLY", "0")],
        &[&args[..], &["full.o"]].concat(),
    );
    assert!(
        !compiler_stderr(&full).contains("in expansion of macro"),
        "a full -E loses the note: {}",
        compiler_stderr(&full)
    );
    assert_eq!(d.compile_ok_count(), 2, "{}", d.log_text());
}

#[test]
fn what_directives_only_cannot_do_is_preprocessed_in_full() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // gcc refuses `__COUNTER__` in `#if` with -fdirectives-only; `__BASE_FILE__` would
    // name the server's temp file.
    fs::write(
        dir.join("c.c"),
        "#if __COUNTER__ == 0\nint first = __COUNTER__;\n#endif\n\
         int second = __COUNTER__;\nconst char *base = __BASE_FILE__;\n",
    )
    .unwrap();
    // Traditional token pasting.
    fs::write(
        dir.join("t.c"),
        "#define CAT(a,b) a/**/b\nint CAT(x,y) = 1;\n",
    )
    .unwrap();
    for kind in [Kind::Ours, Kind::Debian] {
        let d = Daemon::start(kind, dir, &[], &[]);
        let hosts = format!("127.0.0.1:{}", d.port);
        for (src, extra) in [("c.c", None), ("t.c", Some("-traditional-cpp"))] {
            let mut args = vec!["-c", src];
            args.extend(extra);
            gcc_local(dir, &[&args[..], &["-o", "local.o"]].concat());
            through_distcc(dir, &hosts, &[], &[&args[..], &["-o", "remote.o"]].concat());
            assert_eq!(
                fs::read(dir.join("remote.o")).unwrap(),
                fs::read(dir.join("local.o")).unwrap(),
                "{kind:?} {src}"
            );
        }
        assert_eq!(d.compile_ok_count(), 2, "{kind:?}: {}", d.log_text());
    }
}

#[test]
fn our_distccd_refuses_a_directives_only_source_that_includes() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let secret = dir.join("secret.h");
    fs::write(&secret, "int secret_marker = 42;\n").unwrap();
    let d = Daemon::start(Kind::Ours, dir, &[], &[]);
    let argv = [
        "gcc",
        "-c",
        "a.c",
        "-o",
        "a.o",
        "-fpreprocessed",
        "-fdirectives-only",
    ];
    let evil = format!("int a;\n#include \"{}\"\n", secret.display());
    let reply = exchange(d.port, &plain_request(&argv, evil.as_bytes()));
    assert!(
        !reply.windows(13).any(|w| w == b"secret_marker"),
        "the server's file came back"
    );
    assert!(
        !reply.windows(4).any(|w| w == b"DOTO"),
        "an object came back"
    );
    // The same request without the directive is compiled, macros expanded there.
    let fine = b"#define N 3\nint a = N;\n";
    let reply = exchange(d.port, &plain_request(&argv, fine));
    assert!(reply.windows(4).any(|w| w == b"DOTO"), "no object");
    assert_eq!(d.compile_ok_count(), 1, "{}", d.log_text());
    assert!(
        d.log_text().contains("preprocessed source"),
        "{}",
        d.log_text()
    );
}

/// Whether the job's command line (its `exec on HOST:` log line) was a directives-only
/// one.
fn sent_directives_only(o: &Output) -> bool {
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("exec on 127.0.0.1:"))
        .unwrap_or_else(|| panic!("no command line sent: {err}"));
    line.ends_with(" -fpreprocessed -fdirectives-only")
}

/// `-g` without the command line in DW_AT_producer: an object from a directives-only
/// source is then a local build's, byte for byte.
const G: [&str; 4] = ["-g", "-gno-record-gcc-switches", "-c", "w.c"];

/// `w.c` written, a local build's object (`local.o`) and one from a full `-E` source, as
/// distcc 3.4 sends (`full_e.o`); they differ (columns).
fn references(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    fs::write(dir.join("w.c"), SOURCE).unwrap();
    gcc_local(dir, &[&G[..], &["-o", "local.o"]].concat());
    gcc_local(
        dir,
        &["-g", "-gno-record-gcc-switches", "-E", "w.c", "-o", "w.i"],
    );
    gcc_local(
        dir,
        &[
            "-g",
            "-gno-record-gcc-switches",
            "-c",
            "w.i",
            "-o",
            "full_e.o",
        ],
    );
    let local = fs::read(dir.join("local.o")).unwrap();
    let full_e = fs::read(dir.join("full_e.o")).unwrap();
    assert_ne!(local, full_e, "a full -E must show in the object");
    (local, full_e)
}

fn object(dir: &Path, name: &str) -> Vec<u8> {
    fs::read(dir.join(name)).unwrap()
}

#[test]
fn by_default_our_distccd_gets_directives_only_once_it_said_so() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let (local, full_e) = references(dir);
    let d = Daemon::start(Kind::Ours, dir, &[], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);

    // The host's first job: cpp starts before the connection that asks the host, so
    // with no memo yet it is preprocessed in full (as distcc 3.4 would).
    let first = by_default(dir, &hosts, &[], &[&G[..], &["-o", "first.o"]].concat());
    assert!(!sent_directives_only(&first));
    assert_eq!(object(dir, "first.o"), full_e);
    assert!(
        ext_memo(dir, d.port).contains("\ndirectives-only yes\n"),
        "{}",
        ext_memo(dir, d.port)
    );
    // From the second on: directives-only, and the object is a local build's.
    let second = by_default(dir, &hosts, &[], &[&G[..], &["-o", "second.o"]].concat());
    assert!(sent_directives_only(&second));
    assert_eq!(object(dir, "second.o"), local, "the second job's object");
    // Plain -g (DW_AT_producer then names the extra switches): the line table is a
    // local build's.
    gcc_local(dir, &["-g", "-c", "w.c", "-o", "local_g.o"]);
    by_default(dir, &hosts, &[], &["-g", "-c", "w.c", "-o", "remote_g.o"]);
    assert_eq!(
        section(&dir.join("remote_g.o"), ".debug_line"),
        section(&dir.join("local_g.o"), ".debug_line")
    );
    // DISTCC_DIRECTIVES_ONLY=0: a full -E, whatever the host said.
    let off = by_default(
        dir,
        &hosts,
        &[("DISTCC_DIRECTIVES_ONLY", "0")],
        &[&G[..], &["-o", "off.o"]].concat(),
    );
    assert!(!sent_directives_only(&off));
    assert_eq!(object(dir, "off.o"), full_e);
    assert_eq!(d.compile_ok_count(), 4, "{}", d.log_text());
}

#[test]
fn by_default_debian_distccd_gets_a_full_e() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let (_, full_e) = references(dir);
    let d = Daemon::start(Kind::Debian, dir, &[], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);
    for name in ["first.o", "second.o"] {
        let o = by_default(dir, &hosts, &[], &[&G[..], &["-o", name]].concat());
        assert!(!sent_directives_only(&o), "{name}");
        assert_eq!(object(dir, name), full_e, "{name}");
    }
    assert_eq!(ext_memo(dir, d.port), "none\n");
    assert_eq!(d.compile_ok_count(), 2, "{}", d.log_text());
}

#[test]
fn a_distccd_with_ccache_in_front_of_gcc_gets_a_full_e() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let (local, full_e) = references(dir);
    let cache = common::world_writable_dir(dir, "ccache");
    // The wiki's server-side ccache: distccd's PATH starts with ccache's masquerade dir.
    let path = format!(
        "/usr/lib/ccache:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let plain = Daemon::start(Kind::Ours, dir, &[], &[]);
    let cached = Daemon::start(
        Kind::Ours,
        dir,
        &[],
        &[
            ("DISTCCD_PATH", &path),
            ("CCACHE_DIR", cache.to_str().unwrap()),
        ],
    );
    let plain_hosts = format!("127.0.0.1:{}", plain.port);
    let cached_hosts = format!("127.0.0.1:{}", cached.port);
    by_default(
        dir,
        &plain_hosts,
        &[],
        &[&G[..], &["-o", "plain.o"]].concat(),
    );
    by_default(
        dir,
        &cached_hosts,
        &[],
        &[&G[..], &["-o", "first.o"]].concat(),
    );
    assert!(
        ext_memo(dir, plain.port).contains("\ndirectives-only yes\n"),
        "{}",
        ext_memo(dir, plain.port)
    );
    let said = ext_memo(dir, cached.port);
    assert!(said.starts_with("distcc-rs "), "{said}");
    assert!(!said.contains("directives-only"), "{said}");
    // Its memo present, the ccache host still gets a full -E, and compiles it right.
    let second = by_default(
        dir,
        &cached_hosts,
        &[],
        &[&G[..], &["-o", "second.o"]].concat(),
    );
    assert!(!sent_directives_only(&second));
    assert_eq!(object(dir, "first.o"), full_e);
    assert_eq!(object(dir, "second.o"), full_e);
    assert_eq!(cached.compile_ok_count(), 2, "{}", cached.log_text());
    // Forced, the job fails there (ccache drops the switch) and is compiled here: the
    // user still gets the right object.
    let forced = by_default(
        dir,
        &cached_hosts,
        &[("DISTCC_DIRECTIVES_ONLY", "1"), ("DISTCC_FALLBACK", "1")],
        &[&G[..], &["-o", "forced.o"]].concat(),
    );
    assert!(sent_directives_only(&forced));
    assert_eq!(object(dir, "forced.o"), local);
    assert_eq!(cached.compile_ok_count(), 2, "{}", cached.log_text());
}

#[test]
fn a_retry_on_another_host_sends_the_same_directives_only_source() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let (local, _) = references(dir);
    let mut ours = Daemon::start(Kind::Ours, dir, &[], &[]);
    let debian = Daemon::start(Kind::Debian, dir, &[], &[]);
    let ours_host = format!("127.0.0.1:{}", ours.port);
    by_default(dir, &ours_host, &[], &[&G[..], &["-o", "first.o"]].concat());
    assert!(ext_memo(dir, ours.port).contains("\ndirectives-only yes\n"));
    // Preprocessed for our daemon, which is gone by the time the job connects: the next
    // host gets the same source and command line, and compiles it right.
    ours.kill();
    let hosts = format!("{ours_host} 127.0.0.1:{}", debian.port);
    let o = by_default(dir, &hosts, &[], &[&G[..], &["-o", "retried.o"]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("exec on 127.0.0.1:{}:", debian.port)),
        "{err}"
    );
    assert!(sent_directives_only(&o), "{err}");
    assert_eq!(object(dir, "retried.o"), local);
    assert_eq!(debian.compile_ok_count(), 1, "{}", debian.log_text());
}

#[test]
fn cxx_with_libstdcxx_is_a_local_builds_too() {
    // libstdc++'s c++config.h defines a macro as `__has_include(<tbb/tbb.h>)`, used only
    // in `#if`s the client resolved: the source is sent as it is, not preprocessed again.
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    fs::write(dir.join("v.cc"), LIBSTDCXX_SOURCE).unwrap();
    let args = ["-g", "-gno-record-gcc-switches", "-std=c++17", "-c", "v.cc"];
    compile_here("g++", dir, &[&args[..], &["-o", "local.o"]].concat());
    let d = Daemon::start(Kind::Ours, dir, &[], &[]);
    let remote = [&args[..], &["-o", "remote.o"]].concat();
    let o = distcc_here(
        dir,
        &format!("127.0.0.1:{}", d.port),
        &[("DISTCC_DIRECTIVES_ONLY", "1")],
        "g++",
        &remote,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(sent_directives_only(&o), "{err}");
    assert!(!err.contains("preprocessing in full"), "{err}");
    assert_eq!(object(dir, "remote.o"), object(dir, "local.o"));
    assert_eq!(d.compile_ok_count(), 1, "{}", d.log_text());
}
