//! "Why local" (issue #15): `distcc --explain` says where a command would compile and why
//! without compiling it, every job leaves one line in its build's record, and
//! `distccmon-text --summary` (or `DISTCC_SUMMARY=1 pump …`) adds the record up.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::*;

const SRC: &str = "int add(int a, int b) { return a + b; }\n";

fn setup() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("a.c"), SRC).unwrap();
    fs::write(t.path().join("b.c"), SRC).unwrap();
    fs::write(t.path().join("c.c"), SRC).unwrap();
    t
}

fn distcc_in(t: &Path, hosts: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = client_cmd(&distcc(), &t.join("dd"), hosts);
    cmd.args(args).current_dir(t);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn explain(t: &Path, hosts: &str, args: &[&str]) -> String {
    let mut words = vec!["--explain"];
    words.extend_from_slice(args);
    let o = distcc_in(t, hosts, &[], &words);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn explain_a_link_says_linking() {
    let t = setup();
    let out = explain(t.path(), "127.0.0.1:1", &["gcc", "a.o", "-o", "a"]);
    assert!(out.contains("verdict: local (linking)"), "{out}");
}

#[test]
fn explain_a_compile_with_a_good_host_says_it_runs_there_and_compiles_nothing() {
    let t = setup();
    let d = Daemon::start(Kind::Ours, t.path(), &[], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);
    let out = explain(t.path(), &hosts, &["gcc", "-c", "a.c", "-o", "a.o"]);
    assert!(
        out.contains(&format!("verdict: remote on {hosts}")),
        "{out}"
    );
    assert!(out.contains(&format!("  {hosts}: ok: accepts ")), "{out}");
    // The probe compiled, the command did not.
    assert!(!t.path().join("a.o").exists());
    assert!(
        fs::read_dir(t.path().join("dd"))
            .unwrap()
            .all(|e| e.unwrap().file_name() != "record"),
        "--explain is not a job: no record"
    );
}

#[test]
fn explain_says_how_the_client_talks_to_each_host() {
    let t = setup();
    let ours = Daemon::start(Kind::Ours, t.path(), &[], &[]);
    let theirs = Daemon::start(Kind::Debian, t.path(), &[], &[]);
    let (o, d) = (
        format!("127.0.0.1:{}", ours.port),
        format!("127.0.0.1:{}", theirs.port),
    );
    let out = explain(t.path(), &format!("{o} {d}"), &["gcc", "-c", "a.c"]);
    let line = |host: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("  {host}: ")))
            .unwrap_or_else(|| panic!("no line for {host}: {out}"))
            .to_owned()
    };
    let ours_line = line(&o);
    assert!(ours_line.contains("ok: accepts "), "{out}");
    assert!(
        ours_line.contains("; speaks distcc-rs 1 (using ")
            && ours_line.ends_with("; not paired: clear channel"),
        "{out}"
    );
    assert!(
        line(&d).ends_with("; speaks distcc 3.4's protocols (no extension)"),
        "{out}"
    );
    // DISTCC_EXTENSIONS=0: our daemon is spoken to as distcc 3.4 would.
    let o2 = distcc_in(
        t.path(),
        &o,
        &[("DISTCC_EXTENSIONS", "0")],
        &["--explain", "gcc", "-c", "a.c"],
    );
    assert!(
        text(&o2).contains("; speaks distcc 3.4's protocols (no extension)"),
        "{}",
        text(&o2)
    );
}

#[test]
fn explain_with_a_dead_port_says_connect_failed() {
    let t = setup();
    let hosts = format!("127.0.0.1:{}", free_port());
    let out = explain(t.path(), &hosts, &["gcc", "-c", "a.c"]);
    assert!(
        out.contains(&format!("  {hosts}: connect-failed: ")),
        "{out}"
    );
    assert!(out.contains("verdict: local (connect-failed)"), "{out}");
    // A dead host then localhost: the client goes on to localhost.
    let out = explain(
        t.path(),
        &format!("{hosts} localhost"),
        &["gcc", "-c", "a.c"],
    );
    assert!(out.contains("verdict: local (localhost)"), "{out}");
}

#[test]
fn explain_with_a_whitelist_that_refuses_the_compiler_says_refused_by_server() {
    let t = setup();
    let empty = t.path().join("no-compilers");
    fs::create_dir(&empty).unwrap();
    let d = Daemon::start(
        Kind::Ours,
        t.path(),
        &[],
        &[("DISTCCD_MASQUERADE_DIRS", empty.to_str().unwrap())],
    );
    let hosts = format!("127.0.0.1:{}", d.port);
    // Over the protocol extension (as a job goes) our daemon says why it refuses …
    let out = explain(t.path(), &hosts, &["gcc", "-c", "a.c"]);
    assert!(
        out.contains(&format!("  {hosts}: refused:not-whitelisted: ")),
        "{out}"
    );
    assert!(out.contains(" whitelist (add a link there: "), "{out}");
    assert!(
        out.contains("verdict: local (refused:not-whitelisted)"),
        "{out}"
    );
    // … while as distcc 3.4 (no extension) it just closes: the reason is in its log.
    let o = distcc_in(
        t.path(),
        &hosts,
        &[("DISTCC_EXTENSIONS", "0")],
        &["--explain", "gcc", "-c", "a.c"],
    );
    let out = text(&o);
    assert!(
        out.contains(&format!("  {hosts}: refused-by-server: ")),
        "{out}"
    );
    assert!(out.contains("verdict: local (refused-by-server)"), "{out}");
    // The daemon logged why: the whitelist.
    let log = wait_for_log(&d.log, "whitelist");
    assert!(log.contains("whitelist"), "{log}");
}

#[test]
fn a_build_leaves_a_record_that_the_summary_adds_up() {
    let t = setup();
    let d = Daemon::start(Kind::Ours, t.path(), &[], &[]);
    let good = format!("127.0.0.1:{}", d.port);
    let dead = format!("127.0.0.1:{}", free_port());
    let id = [("DISTCC_BUILD_ID", "build-1")];
    let o = distcc_in(t.path(), &good, &id, &["gcc", "-c", "a.c", "-o", "a.o"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = distcc_in(t.path(), &good, &id, &["gcc", "-E", "b.c", "-o", "b.i"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = distcc_in(t.path(), &dead, &id, &["gcc", "-c", "c.c", "-o", "c.o"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(d.compile_ok_count(), 1, "only a.c went to the daemon");

    let record = fs::read_to_string(t.path().join("dd/record/build-1")).unwrap();
    let lines: Vec<&str> = record.lines().collect();
    assert_eq!(lines.len(), 3, "{record}");
    assert!(lines[0].contains(&format!(" {good} - ")) && lines[0].ends_with(" a.c"));
    assert!(lines[1].contains(" local preprocess-only ") && lines[1].ends_with(" b.c"));
    assert!(lines[2].contains(" local connect-failed ") && lines[2].ends_with(" c.c"));

    // A later build elsewhere in the same DISTCC_DIR: named, build-1 is still found.
    let o = distcc_in(
        t.path(),
        &good,
        &[("DISTCC_BUILD_ID", "build-2")],
        &["gcc", "a.o", "-o", "a"],
    );
    let _ = o;
    let o = distcc_in(
        t.path(),
        &good,
        &[],
        &["distccmon-text", "--summary", "build-1"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        s.contains("build build-1: 3 job(s), 1 remote, 2 local"),
        "{s}"
    );
    let count = |code: &str| {
        s.lines()
            .find(|l| l.trim_start().starts_with(code))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    assert_eq!(count("preprocess-only").as_deref(), Some("1"), "{s}");
    assert_eq!(count("connect-failed").as_deref(), Some("1"), "{s}");
    assert_eq!(count(&good).as_deref(), Some("1"), "{s}");
    assert_eq!(count("local").as_deref(), Some("2"), "{s}");

    // Without a name: the newest build.
    let o = distcc_in(t.path(), &good, &[], &["distccmon-text", "--summary"]);
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        s.contains("build build-2: 1 job(s), 0 remote, 1 local"),
        "{s}"
    );
    assert!(s.contains("linking"), "{s}");
    // An unknown build is an error that names it.
    let o = distcc_in(
        t.path(),
        &good,
        &[],
        &["distccmon-text", "--summary", "nope"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("\"nope\""), "{}", text(&o));
}

#[test]
fn pump_prints_the_summary_with_distcc_summary() {
    let t = setup();
    let d = Daemon::start(Kind::Ours, t.path(), &[], &[]);
    let hosts = format!("127.0.0.1:{},cpp,lzo", d.port);
    let dc = distcc();
    let script = format!(
        "{0} gcc -c a.c -o a.o && {0} gcc -E b.c -o b.i",
        dc.display()
    );
    let o = distcc_in(
        t.path(),
        &hosts,
        &[("DISTCC_SUMMARY", "1")],
        &["pump", "sh", "-c", &script],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains(": 2 job(s), 1 remote, 1 local"), "{err}");
    assert!(err.contains("preprocess-only"), "{err}");
    // Without DISTCC_SUMMARY: no summary.
    let o = distcc_in(t.path(), &hosts, &[], &["pump", "sh", "-c", &script]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!text(&o).contains("job(s)"), "{}", text(&o));
}
