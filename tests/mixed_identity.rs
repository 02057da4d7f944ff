//! A mixed fleet (issue 14): hosts with other compiler versions. Daemon A's compilers are
//! gcc 11 only (as on a Debian host whose default gcc is 11: `gcc` and
//! `x86_64-linux-gnu-gcc` are gcc-11); daemon B has gcc 12 as its default and gcc-11 too.
//! A client whose gcc is 12 must never get an object from A — A refuses with both
//! identities named, the client goes to B or compiles here, and remembers A's refusal for
//! that compiler only — while a client asking for gcc-11 is served by both. Every object
//! must be byte-identical to the local compiler's.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const SRC: &str = "int add(int a, int b) { return a * 3 + b; }\n";

fn have_both_gccs() -> bool {
    Path::new("/usr/bin/gcc-11").exists() && Path::new("/usr/bin/gcc-12").exists()
}

/// A dir of symlinks: a host's PATH (and its whitelist) with exactly these compilers.
fn bin_dir(parent: &Path, name: &str, links: &[(&str, &str)]) -> PathBuf {
    let d = parent.join(name);
    fs::create_dir_all(&d).unwrap();
    for (link, target) in links.iter().chain(&[("as", "/usr/bin/as")]) {
        symlink(target, d.join(link)).unwrap();
    }
    d
}

/// Our daemon whose compilers are those in `bin`.
fn daemon(t: &Path, bin: &Path) -> Daemon {
    let bin = bin.to_str().unwrap();
    Daemon::start(
        Kind::Ours,
        t,
        &[],
        &[("DISTCCD_PATH", bin), ("DISTCCD_MASQUERADE_DIRS", bin)],
    )
}

struct Fleet {
    t: tempfile::TempDir,
    a: Daemon,
    b: Daemon,
}

fn fleet() -> Fleet {
    let t = tempfile::tempdir().unwrap();
    let eleven = "/usr/bin/gcc-11";
    let twelve = "/usr/bin/gcc-12";
    let a_bin = bin_dir(
        t.path(),
        "a-bin",
        &[
            ("gcc", eleven),
            ("x86_64-linux-gnu-gcc", eleven),
            ("gcc-11", eleven),
        ],
    );
    let b_bin = bin_dir(
        t.path(),
        "b-bin",
        &[
            ("gcc", twelve),
            ("x86_64-linux-gnu-gcc", twelve),
            ("gcc-12", twelve),
            ("x86_64-linux-gnu-gcc-12", twelve),
            ("gcc-11", eleven),
            ("x86_64-linux-gnu-gcc-11", eleven),
        ],
    );
    let a = daemon(t.path(), &a_bin);
    let b = daemon(t.path(), &b_bin);
    fs::write(t.path().join("x.c"), SRC).unwrap();
    for (cc, out) in [("gcc", "ref12.o"), ("gcc-11", "ref11.o")] {
        let o = run(Command::new(cc)
            .args(["-c", "x.c", "-o", out])
            .current_dir(t.path()));
        assert!(o.status.success());
    }
    assert_ne!(
        fs::read(t.path().join("ref11.o")).unwrap(),
        fs::read(t.path().join("ref12.o")).unwrap(),
        "gcc 11 and 12 must make different objects for this test to mean anything"
    );
    Fleet { t, a, b }
}

impl Fleet {
    fn host(d: &Daemon) -> String {
        format!("127.0.0.1:{}/2", d.port)
    }

    fn compile(&self, hosts: &str, compiler: &str, build: &str) -> Output {
        let t = self.t.path();
        let _ = fs::remove_file(t.join("x.o"));
        let mut cmd = client_cmd(&distcc(), &t.join("dd"), hosts);
        cmd.args([compiler, "-c", "x.c", "-o", "x.o"])
            .env("DISTCC_BUILD_ID", build)
            .env("DISTCC_VERBOSE", "1")
            .current_dir(t);
        let o = cmd.output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    fn object_is(&self, reference: &str) {
        let t = self.t.path();
        assert!(
            fs::read(t.join("x.o")).unwrap() == fs::read(t.join(reference)).unwrap(),
            "the object must be what the local compiler makes ({reference})"
        );
    }

    /// The reason codes recorded for build `id`.
    fn reasons(&self, id: &str) -> Vec<String> {
        let text = fs::read_to_string(self.t.path().join("dd/record").join(id)).unwrap();
        text.lines()
            .filter_map(|l| l.split(' ').nth(3).map(str::to_string))
            .collect()
    }

    fn skip_memos(&self) -> Vec<String> {
        fs::read_dir(self.t.path().join("dd/identity"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[test]
fn a_gcc12_client_never_gets_an_object_from_a_gcc11_host() {
    if !have_both_gccs() {
        eprintln!("skipped: needs gcc-11 and gcc-12");
        return;
    }
    let f = fleet();
    // Only A: refused for this compiler, compiled here.
    let o = f.compile(&Fleet::host(&f.a), "gcc", "only-a");
    f.object_is("ref12.o");
    assert_eq!(f.a.compile_ok_count(), 0, "A must not compile a gcc 12 job");
    assert_eq!(f.reasons("only-a"), ["compiler-identity"]);
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        said.contains("client gcc 12.2.0 x86_64-linux-gnu; this host has 11.3.0"),
        "{said}"
    );
    assert!(
        f.a.log_text()
            .contains("client gcc 12.2.0 x86_64-linux-gnu; this host has 11.3.0"),
        "{}",
        f.a.log_text()
    );
    let memos = f.skip_memos();
    assert_eq!(memos.len(), 1, "{memos:?}");
    assert!(
        memos[0].starts_with(&format!("tcp_127.0.0.1_{}_", f.a.port)),
        "{memos:?}"
    );
    // `--explain` says why A is skipped.
    let mut explain = client_cmd(&distcc(), &f.t.path().join("dd"), &Fleet::host(&f.a));
    explain
        .args(["--explain", "gcc", "-c", "x.c", "-o", "x.o"])
        .current_dir(f.t.path());
    let shown = String::from_utf8_lossy(&run(&mut explain).stdout).into_owned();
    assert!(
        shown.contains("compiler-identity: refused this compiler recently"),
        "{shown}"
    );
    assert!(
        shown.contains("verdict: local (compiler-identity)"),
        "{shown}"
    );
    // A refusal for one compiler is no backoff: the host stays usable.
    assert!(
        !f.t.path()
            .join(format!("dd/lock/backoff_tcp_127.0.0.1_{}_0", f.a.port))
            .exists()
    );

    // A first, then B: B compiles it; A is not even asked again (remembered).
    let refusals = f.a.settled_count("this host has");
    let hosts = format!("{} {}", Fleet::host(&f.a), Fleet::host(&f.b));
    f.compile(&hosts, "gcc", "a-then-b");
    f.object_is("ref12.o");
    assert_eq!(f.b.compile_ok_count(), 1);
    assert_eq!(f.a.compile_ok_count(), 0);
    assert_eq!(f.a.settled_count("this host has"), refusals);
    assert_eq!(f.reasons("a-then-b"), ["-"]);

    // The same host still serves another compiler: gcc-11.
    f.compile(&Fleet::host(&f.a), "gcc-11", "eleven-on-a");
    f.object_is("ref11.o");
    assert_eq!(f.a.compile_ok_count(), 1);
    assert_eq!(f.reasons("eleven-on-a"), ["-"]);
}

#[test]
fn a_fresh_gcc12_client_is_refused_by_a_and_served_by_b() {
    if !have_both_gccs() {
        eprintln!("skipped: needs gcc-11 and gcc-12");
        return;
    }
    let f = fleet();
    // With /1 on A and B listed after it, the first job goes to A first, hears the
    // refusal, and moves on to B within the same job.
    let hosts = format!("127.0.0.1:{}/1 {}", f.a.port, Fleet::host(&f.b));
    f.compile(&hosts, "gcc", "fresh");
    f.object_is("ref12.o");
    assert_eq!(
        f.a.settled_count("this host has"),
        1,
        "A was asked and refused"
    );
    assert_eq!(f.a.compile_ok_count(), 0);
    assert_eq!(f.b.compile_ok_count(), 1);
    assert_eq!(f.reasons("fresh"), ["-"]);
}

#[test]
fn a_gcc11_client_is_served_by_both_hosts() {
    if !have_both_gccs() {
        eprintln!("skipped: needs gcc-11 and gcc-12");
        return;
    }
    let f = fleet();
    f.compile(&Fleet::host(&f.a), "gcc-11", "on-a");
    f.object_is("ref11.o");
    assert_eq!(f.a.compile_ok_count(), 1);
    f.compile(&Fleet::host(&f.b), "gcc-11", "on-b");
    f.object_is("ref11.o");
    assert_eq!(f.b.compile_ok_count(), 1);
    assert!(f.skip_memos().is_empty());
}

#[test]
fn a_distcc_34_host_in_the_list_still_works() {
    if !have_both_gccs() {
        eprintln!("skipped: needs gcc-11 and gcc-12");
        return;
    }
    let f = fleet();
    let old = Daemon::start(Kind::Debian, f.t.path(), &["--enable-tcp-insecure"], &[]);
    f.compile(&Fleet::host(&old), "gcc", "old");
    f.object_is("ref12.o");
    assert_eq!(old.compile_ok_count(), 1);
    assert_eq!(f.reasons("old"), ["-"]);
    assert!(f.skip_memos().is_empty());
}

/// gcc 12 rebuilt, as a Gentoo host builds its own: the same version, configuration and
/// code, but a `cc1` of other bytes (here the real one and one byte more, found first
/// through `-B`). Such a host is refused by default, and serves once its admin sets
/// `DISTCCD_ACCEPT_OTHER_BUILDS=1`; its objects are the local compiler's.
#[test]
fn a_host_with_another_build_of_the_same_gcc_serves_only_when_its_admin_says_so() {
    if !have_both_gccs() {
        panic!("this test needs gcc-12 (make check-peer installs it)");
    }
    let t = tempfile::tempdir().unwrap();
    // The daemon's unprivileged user runs the compilers from here.
    fs::set_permissions(
        t.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let bin = t.path().join("rebuilt");
    fs::create_dir(&bin).unwrap();
    let real_cc1 = run(Command::new("/usr/bin/gcc-12").arg("-print-prog-name=cc1"));
    let real_cc1 = String::from_utf8_lossy(&real_cc1.stdout).trim().to_owned();
    let mut cc1 = fs::read(&real_cc1).unwrap();
    cc1.push(0);
    fs::write(bin.join("cc1"), cc1).unwrap();
    fs::set_permissions(
        bin.join("cc1"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for name in ["gcc", "x86_64-linux-gnu-gcc"] {
        script(
            &bin.join(name),
            &format!("exec /usr/bin/gcc-12 -B{}/ \"$@\"", bin.display()),
        );
    }
    symlink("/usr/bin/as", bin.join("as")).unwrap();
    let b = bin.to_str().unwrap();
    let env = [("DISTCCD_PATH", b), ("DISTCCD_MASQUERADE_DIRS", b)];
    let strict = Daemon::start(Kind::Ours, t.path(), &[], &env);
    let welcoming = Daemon::start(
        Kind::Ours,
        t.path(),
        &[],
        &[env[0], env[1], ("DISTCCD_ACCEPT_OTHER_BUILDS", "1")],
    );
    fs::write(t.path().join("x.c"), SRC).unwrap();
    let o = run(Command::new("gcc-12")
        .args(["-c", "x.c", "-o", "ref.o"])
        .current_dir(t.path()));
    assert!(o.status.success());
    let compile = |d: &Daemon, dd: &str| {
        let _ = fs::remove_file(t.path().join("x.o"));
        let o = client_cmd(
            &distcc(),
            &t.path().join(dd),
            &format!("127.0.0.1:{}", d.port),
        )
        .args(["gcc-12", "-c", "x.c", "-o", "x.o"])
        .current_dir(t.path())
        .output()
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            fs::read(t.path().join("x.o")).unwrap(),
            fs::read(t.path().join("ref.o")).unwrap(),
            "the local compiler's object"
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // By default: refused, naming the way out; the job compiles here.
    let said = compile(&strict, "dd-strict");
    assert_eq!(strict.compile_ok_count(), 0, "{}", strict.log_text());
    let log = wait_for_log(&strict.log, "another build");
    assert!(log.contains("another build"), "{log}");
    assert!(log.contains("DISTCCD_ACCEPT_OTHER_BUILDS=1"), "{log}");
    // The user sees it too, not only the server's log.
    assert!(said.contains("DISTCCD_ACCEPT_OTHER_BUILDS=1"), "{said}");
    // Told to: served there.
    compile(&welcoming, "dd-welcoming");
    assert_eq!(welcoming.compile_ok_count(), 1, "{}", welcoming.log_text());
}
