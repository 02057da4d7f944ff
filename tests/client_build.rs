//! The client builds tests/project/ through a real server and gets what a local compile
//! gives: every object and .d file byte-equal, the jobs visibly run on the server.
//!
//! Byte equality holds because the project builds without `-g`: with `-g`, the object's
//! DW_AT_comp_dir would name the server's working directory (distccd's temp dir), which is
//! the one known, expected difference of plain (non-pump) distcc.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use common::*;

fn make_with(
    dir: &std::path::Path,
    distcc_dir: &std::path::Path,
    hosts: &str,
    vars: &[&str],
    path: Option<&str>,
) {
    copy_project(dir);
    let mut cmd = client_cmd(std::path::Path::new("make"), distcc_dir, hosts);
    cmd.args(["-s", "-j4"]).args(vars).current_dir(dir);
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let out = run(&mut cmd);
    assert!(out.status.success());
    let app = Command::new(dir.join("app")).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&app.stdout),
        "scale=22 area=12 shapes=30 vec=15.0\n"
    );
}

fn explicit_build(kind: Kind, hosts_opts: &str) {
    let t = tempfile::tempdir().unwrap();
    let d = Daemon::start(kind, t.path(), &[], &[]);
    reference_build(&t.path().join("ref"));
    let cc = format!("CC={} gcc", distcc().display());
    let cxx = format!("CXX={} g++", distcc().display());
    let hosts = format!("127.0.0.1:{}{hosts_opts}", d.port);
    make_with(
        &t.path().join("b"),
        &t.path().join("dd"),
        &hosts,
        &[&cc, &cxx],
        None,
    );
    assert_same_outputs(&t.path().join("ref"), &t.path().join("b"));
    assert_eq!(
        d.compile_ok_count(),
        5,
        "all 5 compiles ran on the server:\n{}",
        d.log_text()
    );
    // Compiler rewriting: the server was asked for the host-triple compiler.
    let out = Command::new("gcc").arg("-dumpmachine").output().unwrap();
    let triple = String::from_utf8(out.stdout).unwrap().trim().to_string();
    if std::path::Path::new("/usr/bin")
        .join(format!("{triple}-gcc"))
        .exists()
    {
        let log = d.log_text();
        assert!(log.contains(&format!("{triple}-gcc src/util.c")), "{log}");
        assert!(
            log.contains(&format!("{triple}-g++ src/shapes.cpp")),
            "{log}"
        );
    }
}

#[test]
fn explicit_mode_plain_protocol_against_debian_distccd() {
    explicit_build(Kind::Debian, "");
}

#[test]
fn explicit_mode_lzo_against_debian_distccd() {
    explicit_build(Kind::Debian, ",lzo");
}

#[test]
fn explicit_mode_plain_protocol_against_our_distccd() {
    explicit_build(Kind::Ours, "");
}

#[test]
fn explicit_mode_lzo_against_our_distccd() {
    explicit_build(Kind::Ours, ",lzo");
}

#[test]
fn masquerade_mode_against_debian_distccd() {
    masquerade_build(Kind::Debian);
}

#[test]
fn masquerade_mode_against_our_distccd() {
    masquerade_build(Kind::Ours);
}

fn masquerade_build(kind: Kind) {
    let t = tempfile::tempdir().unwrap();
    let d = Daemon::start(kind, t.path(), &[], &[]);
    reference_build(&t.path().join("ref"));
    let masq = t.path().join("masq");
    fs::create_dir(&masq).unwrap();
    for name in ["gcc", "g++", "cc", "c++"] {
        symlink(distcc(), masq.join(name)).unwrap();
    }
    let path = format!("{}:{}", masq.display(), std::env::var("PATH").unwrap());
    let hosts = format!("127.0.0.1:{},lzo", d.port);
    // cc and g++: one implicit-default name and one C++ name through the links.
    make_with(
        &t.path().join("b"),
        &t.path().join("dd"),
        &hosts,
        &["CC=cc", "CXX=g++"],
        Some(&path),
    );
    assert_same_outputs(&t.path().join("ref"), &t.path().join("b"));
    assert_eq!(d.compile_ok_count(), 5, "{}", d.log_text());
}

#[test]
fn ccache_in_front_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let d = Daemon::start(Kind::Debian, t.path(), &[], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);
    reference_build(&t.path().join("ref"));
    let masq = t.path().join("masq");
    fs::create_dir(&masq).unwrap();
    for name in ["gcc", "g++"] {
        symlink(distcc(), masq.join(name)).unwrap();
    }
    // 1: CCACHE_PREFIX=distcc.
    let dir = t.path().join("b1");
    copy_project(&dir);
    let mut cmd = client_cmd(std::path::Path::new("make"), &t.path().join("dd"), &hosts);
    cmd.args(["-s", "-j2", "CC=ccache gcc", "CXX=ccache g++"])
        .env("CCACHE_DIR", t.path().join("ccache1"))
        .env("CCACHE_PREFIX", distcc())
        .current_dir(&dir);
    assert!(run(&mut cmd).status.success());
    assert_same_outputs(&t.path().join("ref"), &dir);
    let after_first = d.compile_ok_count();
    assert_eq!(after_first, 5, "{}", d.log_text());
    // 2: PATH order ccache's links → our masquerade links → the real compilers.
    let cc_links = t.path().join("cclinks");
    fs::create_dir(&cc_links).unwrap();
    for name in ["gcc", "g++"] {
        symlink("/usr/bin/ccache", cc_links.join(name)).unwrap();
    }
    let path = format!(
        "{}:{}:{}",
        cc_links.display(),
        masq.display(),
        std::env::var("PATH").unwrap()
    );
    let dir = t.path().join("b2");
    copy_project(&dir);
    let mut cmd = client_cmd(std::path::Path::new("make"), &t.path().join("dd"), &hosts);
    cmd.args(["-s", "-j2", "CC=gcc", "CXX=g++"])
        .env("CCACHE_DIR", t.path().join("ccache2"))
        .env("PATH", path)
        .current_dir(&dir);
    assert!(run(&mut cmd).status.success());
    assert_same_outputs(&t.path().join("ref"), &dir);
    assert_eq!(d.compile_ok_count(), 10, "{}", d.log_text());
}

#[test]
fn implicit_mode_and_response_file() {
    let t = tempfile::tempdir().unwrap();
    let d = Daemon::start(Kind::Debian, t.path(), &[], &[]);
    let src = t.path().join("x.c");
    fs::write(&src, "int twice(int x) { return 2 * x; }\n").unwrap();
    fs::write(t.path().join("rsp"), "-O2 -c x.c").unwrap();
    // `distcc @rsp …` is implicit mode: the response file is expanded before the mode
    // is decided, so its leading `-O2` counts.
    let out = run(client_cmd(
        &distcc(),
        &t.path().join("dd"),
        &format!("127.0.0.1:{}", d.port),
    )
    .args(["@rsp", "-o", "x.o"])
    .current_dir(t.path()));
    assert!(out.status.success());
    let out = run(client_cmd(
        &distcc(),
        &t.path().join("dd"),
        &format!("127.0.0.1:{}", d.port),
    )
    .args(["-O2", "@rsp", "-o", "y.o"])
    .current_dir(t.path()));
    assert!(out.status.success());
    let local = run(Command::new("cc")
        .args(["-O2", "-O2", "-c", "x.c", "-o", "z.o"])
        .current_dir(t.path()));
    assert!(local.status.success());
    assert_eq!(
        fs::read(t.path().join("y.o")).unwrap(),
        fs::read(t.path().join("z.o")).unwrap()
    );
    assert_eq!(
        fs::read(t.path().join("x.o")).unwrap(),
        fs::read(t.path().join("z.o")).unwrap()
    );
    assert_eq!(d.compile_ok_count(), 2, "{}", d.log_text());
}

#[test]
fn ssh_host_through_a_stand_in_ssh() {
    ssh_host("/usr/bin/distccd");
}

#[test]
fn ssh_host_running_our_distccd_inetd() {
    let bin = tempfile::tempdir().unwrap();
    let ours = bin.path().join("distccd");
    symlink(distcc(), &ours).unwrap();
    ssh_host(ours.to_str().unwrap());
}

fn ssh_host(daemon: &str) {
    let t = tempfile::tempdir().unwrap();
    let logdir = world_writable_dir(t.path(), "log");
    let marker = t.path().join("ssh-was-used");
    let fake_ssh = t.path().join("fake-ssh");
    // Our stand-in ssh: `fake-ssh [-l USER] HOST COMMAND ARGS…` runs COMMAND ARGS here.
    script(
        &fake_ssh,
        &format!(
            "if [ \"$1\" = -l ]; then echo \"user=$2\" >> {m}; shift 2; fi\n\
             echo \"host=$1 cmd=$2 $3 $4\" >> {m}; shift\n\
             cmd=$1; shift\n\
             exec \"$cmd\" \"$@\" --log-file {l}/d.log --log-level info",
            m = marker.display(),
            l = logdir.display()
        ),
    );
    fs::write(t.path().join("x.c"), "int f(void) { return 42; }\n").unwrap();
    let out = run(client_cmd(
        &distcc(),
        &t.path().join("dd"),
        &format!("bob@box:{daemon},lzo"),
    )
    .env("DISTCC_SSH", format!("{} ", fake_ssh.display()))
    .env("DISTCC_FALLBACK", "0")
    // An absolute compiler: over ssh the daemon is told (as by distcc 3.4) that any
    // compiler may run, so this is compiled there, not refused by the TCP whitelist.
    .args(["/usr/bin/gcc", "-c", "x.c", "-o", "x.o"])
    .current_dir(t.path()));
    assert!(out.status.success());
    let m = fs::read_to_string(&marker).unwrap();
    assert!(m.contains("user=bob"), "{m}");
    assert!(
        m.contains(&format!(
            "host=box cmd={daemon} --inetd --enable-tcp-insecure"
        )),
        "{m}"
    );
    let log = wait_for_log(&logdir.join("d.log"), "COMPILE_OK");
    assert!(
        log.contains("COMPILE_OK"),
        "the job ran on the ssh host's daemon: {log}"
    );
    assert!(
        run(Command::new("gcc")
            .args(["-c", "x.c", "-o", "y.o"])
            .current_dir(t.path()))
        .status
        .success()
    );
    assert_eq!(
        fs::read(t.path().join("x.o")).unwrap(),
        fs::read(t.path().join("y.o")).unwrap()
    );
}

#[test]
fn version_help_and_missing_operand() {
    let out = Command::new(distcc()).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // distcc 3.4's shape, which scripts split on: name/version/triple, protocols, `built`,
    // then paragraphs ending with the bug-report line.
    let theirs = Command::new("/usr/bin/distcc")
        .arg("--version")
        .output()
        .unwrap();
    let theirs = String::from_utf8(theirs.stdout).unwrap();
    let their_lines: Vec<&str> = theirs.lines().collect();
    assert!(lines[2].starts_with("  built ") && their_lines[2].starts_with("  built "));
    assert!(lines[3].starts_with("Copyright (C) ") && their_lines[3].starts_with("Copyright (C) "));
    assert!(lines.contains(&"") && their_lines.contains(&""), "{text}");
    assert!(
        lines
            .iter()
            .rev()
            .find(|l| !l.is_empty())
            .unwrap()
            .starts_with("Please report bugs to"),
        "{text}"
    );
    assert!(
        their_lines
            .iter()
            .rev()
            .find(|l| !l.is_empty())
            .unwrap()
            .starts_with("Please report bugs to"),
        "{theirs}"
    );
    assert!(
        lines[0].starts_with(&format!("distcc {} ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert_eq!(
        lines[0].split(' ').nth(2).unwrap().split('-').count(),
        4,
        "{text}"
    );
    assert_eq!(lines[1], "  (protocols 1, 2 and 3) (default port 3632)");

    let out = Command::new(distcc()).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&text));

    let out = Command::new(distcc()).output().unwrap();
    assert_eq!(out.status.code(), Some(101));
    assert!(String::from_utf8_lossy(&out.stderr).contains("distcc: missing option/operand"));

    // --show-principal, side by side with Debian's distcc 3.4 (built with GSS-API).
    for principal in [None, Some(""), Some("distccd@build.example")] {
        let show = |program: &Path| {
            let mut cmd = Command::new(program);
            cmd.arg("--show-principal").env_remove("DISTCC_PRINCIPAL");
            if let Some(p) = principal {
                cmd.env("DISTCC_PRINCIPAL", p);
            }
            let out = cmd.output().unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        let ours = show(&distcc());
        assert_eq!(ours, show(Path::new("/usr/bin/distcc")), "{principal:?}");
        if let Some(p) = principal {
            assert_eq!(ours.1, format!("Principal is\t: {p}\n"));
        } else {
            assert_eq!(ours.1, "Principal\t: Not Set.\n");
        }
    }
}

#[test]
fn show_hosts_and_jobs() {
    let t = tempfile::tempdir().unwrap();
    let list = "localhost red/8,lzo @blue [::1]:4000/3,cpp,lzo";
    let out = client_cmd(&distcc(), t.path(), list)
        .arg("--show-hosts")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "localhost\nred/8,lzo\n@blue\n[::1]:4000/3,cpp,lzo\n"
    );
    let out = client_cmd(&distcc(), t.path(), list)
        .arg("-j")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "17\n");
    // `,down` hosts count, as in Debian's distcc.
    for program in [distcc(), "/usr/bin/distcc".into()] {
        let out = client_cmd(&program, t.path(), "a/3 b/5,down localhost")
            .arg("-j")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "10\n", "{program:?}");
    }
    // A bad entry is reported and skipped; the command still succeeds.
    let out = client_cmd(&distcc(), t.path(), "red,zzz blue/2")
        .arg("--show-hosts")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "blue/2\n");
    assert!(!out.stderr.is_empty());
    // From $DISTCC_DIR/hosts when DISTCC_HOSTS is not set.
    fs::write(
        t.path().join("hosts"),
        "# comment\nred/5 # more\n localhost/3\n",
    )
    .unwrap();
    let out = client_cmd(&distcc(), t.path(), "")
        .env_remove("DISTCC_HOSTS")
        .arg("-j")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "8\n");
}

#[test]
fn recursion_guard() {
    let t = tempfile::tempdir().unwrap();
    let out = client_cmd(&distcc(), t.path(), "127.0.0.1:1")
        .env("_DISTCC_SAFEGUARD", "1")
        .args(["gcc", "-c", "x.c"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(111));
    assert!(String::from_utf8_lossy(&out.stderr).contains("recursively"));
    // A masquerade link whose PATH leads back to itself: the inner level (safeguard 1,
    // PATH trimmed) compiles locally instead of looping, like distcc 3.4.
    let masq = t.path().join("masq");
    fs::create_dir(&masq).unwrap();
    symlink(distcc(), masq.join("gcc")).unwrap();
    let path = format!("{m}:{m}:/usr/bin", m = masq.display());
    fs::write(t.path().join("x.c"), "int x;\n").unwrap();
    let out = client_cmd(&masq.join("gcc"), t.path(), "localhost")
        .env("PATH", &path)
        .args(["-c", "x.c", "-o", "x.o"])
        .current_dir(t.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.path().join("x.o").exists());
    // One level deeper than masquerading explains is a loop.
    let out = client_cmd(&masq.join("gcc"), t.path(), "localhost")
        .env("PATH", &path)
        .env("_DISTCC_SAFEGUARD", "2")
        .args(["-c", "x.c", "-o", "y.o"])
        .current_dir(t.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(111));
    assert!(String::from_utf8_lossy(&out.stderr).contains("recursively"));
}

/// stderr without our own `distcc[PID] …` log lines.
fn compiler_stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| !l.starts_with("distcc["))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn stderr_is_what_a_local_compile_prints() {
    let t = tempfile::tempdir().unwrap();
    let d = Daemon::start(Kind::Debian, t.path(), &[], &[]);
    let hosts = format!("127.0.0.1:{},lzo", d.port);
    // A preprocessor warning on a job that is accepted remotely: printed once, as locally.
    fs::write(t.path().join("w.c"), "#warning careful\nint w;\n").unwrap();
    // A preprocessor error: cpp fails, the local retry prints the error, once.
    fs::write(t.path().join("e.c"), "#include \"nonexistent.h\"\nint e;\n").unwrap();
    for src in ["w.c", "e.c"] {
        let ours = client_cmd(&distcc(), &t.path().join("dd"), &hosts)
            .args(["gcc", "-c", src, "-o", "ours.o"])
            .current_dir(t.path())
            .output()
            .unwrap();
        let local = Command::new("gcc")
            .args(["-c", src, "-o", "local.o"])
            .current_dir(t.path())
            .output()
            .unwrap();
        assert_eq!(ours.status.code(), local.status.code(), "{src}");
        assert_eq!(
            compiler_stderr(&ours),
            String::from_utf8_lossy(&local.stderr),
            "{src}"
        );
        assert!(!compiler_stderr(&ours).is_empty());
    }
    assert_eq!(
        d.compile_ok_count(),
        1,
        "w.c was compiled remotely: {}",
        d.log_text()
    );
}

#[test]
fn localhost_in_the_list_compiles_here_and_logs_go_to_distcc_log() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("x.c"), "int x(void) { return 1; }\n").unwrap();
    let log = t.path().join("client.log");
    let out = client_cmd(&distcc(), &t.path().join("dd"), "localhost/1")
        .env("DISTCC_LOG", &log)
        .args(["gcc", "-c", "x.c"])
        .current_dir(t.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.path().join("x.o").exists());
    // The slot lock file of localhost slot 0 is the one distcc 3.4 uses.
    assert!(t.path().join("dd/lock/cpu_localhost_0").exists());
    let text = fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("compile from x.c to x.o"))
        .unwrap();
    assert!(
        line.starts_with(&format!("distcc[{}] ", out_pid_hint(&text))),
        "{text}"
    );
}

/// The pid in the first log line (the client's), for checking the `distcc[PID]` shape.
fn out_pid_hint(text: &str) -> String {
    let first = text.lines().next().unwrap();
    let inner = first.strip_prefix("distcc[").unwrap();
    let pid = &inner[..inner.find(']').unwrap()];
    assert!(pid.parse::<u32>().is_ok(), "{first}");
    pid.to_string()
}

#[test]
fn bad_io_timeout_is_a_usage_error() {
    let t = tempfile::tempdir().unwrap();
    let out = client_cmd(&distcc(), t.path(), "127.0.0.1:1")
        .env("DISTCC_IO_TIMEOUT", "0")
        .args(["gcc", "-c", "x.c"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(101));
}

#[test]
fn uncached_err_fd_and_save_temps() {
    let t = tempfile::tempdir().unwrap();
    let d = Daemon::start(Kind::Debian, t.path(), &[], &[]);
    fs::write(t.path().join("x.c"), "int x(void) { return 1; }\n").unwrap();
    let tmp = t.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    // ccache passes its log descriptor in UNCACHED_ERR_FD; our log lines go there.
    let out = client_cmd(
        std::path::Path::new("/bin/sh"),
        &t.path().join("dd"),
        &format!("127.0.0.1:{}", d.port),
    )
    .args([
        "-c",
        &format!("exec {} gcc -c x.c 3>fd3.log", distcc().display()),
    ])
    .env("UNCACHED_ERR_FD", "3")
    .env("DISTCC_VERBOSE", "1")
    .env("DISTCC_SAVE_TEMPS", "1")
    .env("TMPDIR", &tmp)
    .current_dir(t.path())
    .output()
    .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = fs::read_to_string(t.path().join("fd3.log")).unwrap();
    assert!(log.contains("compile x.c on 127.0.0.1"), "{log}");
    // DISTCC_SAVE_TEMPS=1 keeps the preprocessed source.
    let kept: Vec<String> = fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        kept.iter()
            .any(|n| n.starts_with("distcc_") && n.ends_with(".i")),
        "{kept:?}"
    );
}
