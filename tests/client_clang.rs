//! Plain mode with clang: the client preprocesses with `clang -E -frewrite-includes`
//! (includes inlined inside `#if 0` groups, every `#if` evaluated here, macros kept), our
//! daemon checks that no directive clang will obey reads a file, and clang expands the
//! macros there: an object built with `-g` has a local build's line table (a full `-E`
//! moves the columns), and a warning from a macro keeps its expansion note.
//! By default only for a host whose extension answer said `rewrite-includes yes` (our
//! daemon); Debian's distccd 3.4 gets a full `-E`. What the server can't expand as this
//! machine would (`__BASE_FILE__`) is preprocessed in full.

mod common;

use common::{
    Daemon, Kind, LIBSTDCXX_SOURCE, compile_here, compiler_stderr, distcc_here, ext_memo,
};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn clang_local(dir: &Path, args: &[&str]) -> Output {
    compile_here("clang", dir, args)
}

/// `distcc clang ARGS` with the client's defaults and `env`.
fn through_distcc(dir: &Path, hosts: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    distcc_here(dir, hosts, env, "clang", args)
}

/// Macros on lines that go on after them: a full `-E` moves every later column. The
/// `#if` needs a header's macro, the `#ifdef` one that is never defined; glibc's
/// <unistd.h> asks `#ifdef __has_include`.
const SOURCE: &str = r#"#include <stdio.h>
#include <limits.h>
#include <unistd.h>
#define LESS(a,b) ((a) < (b))
#define TWICE(x) ((x) + (x))
#if INT_MAX > 30000
#define BIG 1
#endif
#ifdef NOT_DEFINED_HERE
#include <not-there.h>
#endif
#ifdef FROM_COMMAND_LINE
int from_command_line(void) { return PRE; }
#endif
int f(int a, unsigned b) {
  int y = TWICE(a); if (LESS(a, b)) y += BIG; printf("%d\n", y);
  return y;
}
"#;

/// Whether the job's cpp kept macros (its `running cpp:` log line).
fn rewrote_includes(o: &Output) -> bool {
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("running cpp: "))
        .unwrap_or_else(|| panic!("no cpp run: {err}"));
    line.contains(" -frewrite-includes ")
}

/// The rows of the decoded line table (line, column-sensitive address, view) without
/// the lines naming files: a local build's file table holds the source's MD5 and the
/// directory, which a preprocessed source can't give.
fn line_rows(obj: &Path) -> String {
    let o = Command::new("objdump")
        .arg("--dwarf=decodedline")
        .arg(obj)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: String = String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(2)
        .filter(|l| !l.trim().is_empty() && !l.trim_end().ends_with(':'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(rows.contains("w.c"), "no rows for w.c: {rows}");
    rows
}

/// The compilation unit's name (the first `DW_AT_name`): the source's, not `<built-in>`.
fn unit_name(obj: &Path) -> String {
    let o = Command::new("readelf")
        .arg("--debug-dump=info")
        .arg(obj)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&o.stdout).into_owned();
    info.lines()
        .find(|l| l.contains("DW_AT_name"))
        .and_then(|l| l.rsplit(": ").next())
        .unwrap_or_else(|| panic!("no DW_AT_name: {info}"))
        .trim()
        .to_string()
}

/// A macro from the command line (clang's output leaves `#ifdef`s to the server) and a
/// header from `-include` (clang's output starts with it).
const G: [&str; 6] = [
    "-g",
    "-DFROM_COMMAND_LINE",
    "-include",
    "pre.h",
    "-c",
    "w.c",
];

/// Whether `obj` defines `symbol`.
fn defines(obj: &Path, symbol: &str) -> bool {
    let o = Command::new("nm").arg(obj).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .any(|l| l.ends_with(&format!(" T {symbol}")))
}

#[test]
fn by_default_our_distccd_gets_rewritten_includes_once_it_said_so() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    fs::write(dir.join("w.c"), SOURCE).unwrap();
    fs::write(dir.join("pre.h"), "#define PRE 7\n").unwrap();
    clang_local(dir, &[&G[..], &["-o", "local.o"]].concat());
    assert!(defines(&dir.join("local.o"), "from_command_line"));
    clang_local(dir, &[&G[..4], &["-E", "w.c", "-o", "w.i"]].concat());
    clang_local(dir, &["-g", "-c", "w.i", "-o", "full_e.o"]);
    let local = line_rows(&dir.join("local.o"));
    assert_ne!(
        line_rows(&dir.join("full_e.o")),
        local,
        "a full -E must show in the line table"
    );
    let d = Daemon::start(Kind::Ours, dir, &[], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);

    // The host's first job is preprocessed in full: no memo yet.
    let first = through_distcc(dir, &hosts, &[], &[&G[..], &["-o", "first.o"]].concat());
    assert!(!rewrote_includes(&first));
    assert!(
        ext_memo(dir, d.port).contains("\nrewrite-includes yes\n"),
        "{}",
        ext_memo(dir, d.port)
    );
    // From the second on: macros expanded on the server, the line table a local build's.
    let second = through_distcc(dir, &hosts, &[], &[&G[..], &["-o", "second.o"]].concat());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(rewrote_includes(&second), "{err}");
    assert!(!err.contains("preprocessing in full"), "{err}");
    assert_eq!(line_rows(&dir.join("second.o")), local);
    assert_eq!(unit_name(&dir.join("second.o")), "w.c");
    assert!(defines(&dir.join("second.o"), "from_command_line"));
    // DISTCC_DIRECTIVES_ONLY=0: a full -E, whatever the host said.
    let off = through_distcc(
        dir,
        &hosts,
        &[("DISTCC_DIRECTIVES_ONLY", "0")],
        &[&G[..], &["-o", "off.o"]].concat(),
    );
    assert!(!rewrote_includes(&off));
    assert_eq!(
        line_rows(&dir.join("off.o")),
        line_rows(&dir.join("full_e.o"))
    );
    assert_eq!(d.compile_ok_count(), 3, "{}", d.log_text());
}

#[test]
fn a_warning_from_a_macro_keeps_its_expansion_note() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let src = "#define LESS(a,b) ((a) < (b))\nint f(int a, unsigned b) { return LESS(a, b); }\n";
    fs::write(dir.join("m.c"), src).unwrap();
    let d = Daemon::start(Kind::Ours, dir, &[], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);
    let args = ["-Wsign-compare", "-c", "m.c", "-o", "m.o"];
    // The server quotes no source line (-fno-caret-diagnostics); the rest is the same.
    let local = clang_local(dir, &[&args[..], &["-fno-caret-diagnostics"]].concat());
    let want = String::from_utf8_lossy(&local.stderr).into_owned();
    let note = "m.c:1:24: note: expanded from macro 'LESS'";
    assert!(want.contains(note), "{want}");
    // Forced (no memo needed): the server's diagnostics are the local ones.
    let o = through_distcc(dir, &hosts, &[("DISTCC_DIRECTIVES_ONLY", "1")], &args);
    assert!(rewrote_includes(&o));
    let got = compiler_stderr(&o);
    for line in want.lines().filter(|l| l.starts_with("m.c:")) {
        assert!(got.contains(line), "{line:?} missing from {got}");
    }
    // A full -E loses the note.
    let full = through_distcc(dir, &hosts, &[("DISTCC_DIRECTIVES_ONLY", "0")], &args);
    assert!(!compiler_stderr(&full).contains(note));
    assert_eq!(d.compile_ok_count(), 2, "{}", d.log_text());
}

#[test]
fn what_the_server_would_expand_otherwise_is_preprocessed_in_full() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    fs::write(
        dir.join("base_file.c"),
        "const char *base = __BASE_FILE__;\nint g(void) { return 1; }\n",
    )
    .unwrap();
    let d = Daemon::start(Kind::Ours, dir, &[], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);
    let o = through_distcc(
        dir,
        &hosts,
        &[("DISTCC_DIRECTIVES_ONLY", "1")],
        &["-c", "base_file.c", "-o", "b.o"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not used (it uses __BASE_FILE__)"), "{err}");
    let strings = Command::new("strings")
        .arg(dir.join("b.o"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&strings.stdout).contains("base_file.c"),
        "__BASE_FILE__ is the client's name"
    );
    assert_eq!(d.compile_ok_count(), 1, "{}", d.log_text());
}

#[test]
fn by_default_debian_distccd_gets_a_full_e() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    fs::write(dir.join("w.c"), SOURCE).unwrap();
    let d = Daemon::start(Kind::Debian, dir, &[], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);
    fs::write(dir.join("pre.h"), "#define PRE 7\n").unwrap();
    for name in ["a.o", "b.o"] {
        let o = through_distcc(dir, &hosts, &[], &[&G[..], &["-o", name]].concat());
        assert!(!rewrote_includes(&o), "{name}");
    }
    assert_eq!(d.compile_ok_count(), 2, "{}", d.log_text());
}

#[test]
fn cxx_with_libstdcxx_keeps_its_macros() {
    // libstdc++'s c++config.h defines a macro as `__has_include(<tbb/tbb.h>)`: harmless
    // for clang, which evaluates it only in an `#if` (all literals by then).
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    fs::write(dir.join("v.cc"), LIBSTDCXX_SOURCE).unwrap();
    let d = Daemon::start(Kind::Ours, dir, &[], &[]);
    let o = distcc_here(
        dir,
        &format!("127.0.0.1:{}", d.port),
        &[("DISTCC_DIRECTIVES_ONLY", "1")],
        "clang++",
        &["-std=c++17", "-c", "v.cc", "-o", "v.o"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(rewrote_includes(&o), "{err}");
    assert!(!err.contains("preprocessing in full"), "{err}");
    assert_eq!(d.compile_ok_count(), 1, "{}", d.log_text());
}
