//! The Gentoo wiki's distcc page, replayed command by command against our binary in a
//! temporary root: distcc-config, the "Hallo distcc!" test, the page's DISTCCD_OPTS, the
//! masquerade PATH, and the server-side ccache set-up.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Daemon, Kind, distcc, world_writable_dir};

/// Our applet under its own name, in `dir`.
fn applet(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    if !p.exists() {
        symlink(distcc(), &p).unwrap();
    }
    p
}

fn clean(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("DISTCC") || k.starts_with("CCACHE") || k == "_DISTCC_SAFEGUARD" {
            cmd.env_remove(&k);
        }
    }
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A staging root with Gentoo's 02distcc and a /usr/bin holding a few compilers.
fn staging_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::create_dir_all(r.join("etc/env.d")).unwrap();
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/gentoo/02distcc"),
        r.join("etc/env.d/02distcc"),
    )
    .unwrap();
    fs::create_dir_all(r.join("usr/bin")).unwrap();
    for c in [
        "gcc",
        "g++",
        "cc",
        "c++",
        "x86_64-pc-linux-gnu-gcc",
        "x86_64-pc-linux-gnu-gcc-13",
        "x86_64-pc-linux-gnu-g++",
        "ld",
    ] {
        fs::write(r.join("usr/bin").join(c), "").unwrap();
    }
    root
}

fn config(root: &Path, home: &Path, args: &[&str], as_user: bool) -> Output {
    let bin = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(applet(bin.path(), "distcc-config"));
    clean(&mut cmd)
        .args(args)
        .env("DISTCC_CONFIG_ROOT", root)
        .env("HOME", home);
    if as_user {
        cmd.env("DISTCC_CONFIG_AS_USER", "1");
    }
    cmd.output().unwrap()
}

#[test]
fn distcc_config_hosts_env_and_masquerade() {
    let root = staging_root();
    let r = root.path();
    let home = tempfile::tempdir().unwrap();
    // As root: /etc/distcc/hosts.
    let o = config(
        r,
        home.path(),
        &["--set-hosts", "192.168.0.1 192.168.0.2 192.168.0.3"],
        false,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        fs::read_to_string(r.join("etc/distcc/hosts")).unwrap(),
        "192.168.0.1 192.168.0.2 192.168.0.3\n"
    );
    let o = config(r, home.path(), &["--get-hosts"], false);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "192.168.0.1 192.168.0.2 192.168.0.3\n",
        "the hosts, not a path"
    );
    // The pump form of the page.
    let o = config(
        r,
        home.path(),
        &[
            "--set-hosts",
            "192.168.0.1,cpp,lzo 192.168.0.2,cpp,lzo 192.168.0.3,cpp,lzo",
        ],
        false,
    );
    assert!(o.status.success(), "{}", text(&o));
    // A bad list is refused with the parser's message, and nothing is written.
    let o = config(r, home.path(), &["--set-hosts", "red,lzox blue"], false);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("lzox"), "{}", text(&o));
    assert!(
        text(&o).contains(":1:5:"),
        "names line and column: {}",
        text(&o)
    );
    assert!(
        fs::read_to_string(r.join("etc/distcc/hosts"))
            .unwrap()
            .contains(",cpp,lzo")
    );
    // As a user: ~/.distcc/hosts, and --get-hosts prints it.
    let o = config(
        r,
        home.path(),
        &["--set-hosts", "localhost host1 host2"],
        true,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        fs::read_to_string(home.path().join(".distcc/hosts")).unwrap(),
        "localhost host1 host2\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&config(r, home.path(), &["--get-hosts"], true).stdout),
        "localhost host1 host2\n"
    );
    // Environment file.
    assert!(
        config(r, home.path(), &["--set-verbose", "1"], false)
            .status
            .success()
    );
    assert_eq!(
        String::from_utf8_lossy(&config(r, home.path(), &["--get-verbose"], false).stdout),
        "DISTCC_VERBOSE=1\n"
    );
    let o = config(r, home.path(), &["--set-log", "/var/log/distcc.log"], false);
    assert!(
        o.status.success(),
        "--set-log works (Gentoo's did nothing): {}",
        text(&o)
    );
    assert_eq!(
        String::from_utf8_lossy(&config(r, home.path(), &["--get-log"], false).stdout),
        "DISTCC_LOG=/var/log/distcc.log\n"
    );
    assert!(
        config(
            r,
            home.path(),
            &["--set-env", "DISTCC_FALLBACK", "0"],
            false
        )
        .status
        .success()
    );
    assert_eq!(
        String::from_utf8_lossy(
            &config(r, home.path(), &["--get-env", "DISTCC_FALLBACK"], false).stdout
        ),
        "DISTCC_FALLBACK=0\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&config(r, home.path(), &["--get-env", "NOPE"], false).stdout),
        "NOPE not set.\n"
    );
    assert!(
        text(&config(r, home.path(), &["--set-env", "ONLYONE"], false))
            .contains("Awaiting two parameters.")
    );
    assert!(
        text(&config(r, home.path(), &["--get-env", "A", "B"], false))
            .contains("Specify only one variable.")
    );
    let o = config(r, home.path(), &["--set-verbose", "1"], true);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("must be run as root"));
    let o = config(r, home.path(), &["--bogus"], false);
    assert_eq!(
        (o.status.code(), text(&o).trim()),
        (Some(1), "!!! Error: --bogus is an invalid option.")
    );
    // Masquerade links.
    let o = config(r, home.path(), &["--update-masquerade"], false);
    assert!(o.status.success(), "{}", text(&o));
    let masq = r.join("usr/lib/distcc");
    let mut names: Vec<String> = fs::read_dir(&masq)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bin",
            "c++",
            "cc",
            "g++",
            "gcc",
            "x86_64-pc-linux-gnu-g++",
            "x86_64-pc-linux-gnu-gcc",
            "x86_64-pc-linux-gnu-gcc-13"
        ]
    );
    assert_eq!(fs::read_link(masq.join("bin")).unwrap(), Path::new("."));
    assert_eq!(
        fs::read_link(masq.join("gcc")).unwrap(),
        Path::new("/usr/bin/distcc")
    );
    assert!(text(&o).contains("Creating symlinks..."));
    let o = config(
        r,
        home.path(),
        &["--update-masquerade-with-crossdev"],
        false,
    );
    assert!(o.status.success());
    assert!(!masq.join("gcc").exists() && masq.join("x86_64-pc-linux-gnu-gcc").exists());
}

#[test]
fn hallo_distcc_with_the_pages_daemon_options() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let logdir = world_writable_dir(w, "log");
    // The page's DISTCCD_OPTS, with a free port, a log file we can read, and loopback
    // (the page allows 192.168.0.4 and .5; we add 127.0.0.1 and listen on it only).
    let port = common::free_port();
    let opts = "--port 3632 --log-level notice --log-file /var/log/distccd.log -N 15 --allow 192.168.0.4 --allow 192.168.0.5"
        .replace("3632", &port.to_string())
        .replace("/var/log/distccd.log", logdir.join("distccd.log").to_str().unwrap());
    let mut daemon = Command::new(distcc());
    daemon
        .arg("distccd")
        .args(["--daemon", "--no-detach"])
        .args(opts.split_whitespace())
        .args(["--allow", "127.0.0.1", "--listen", "127.0.0.1"]);
    let child = daemon.spawn().unwrap();
    let _guard = common::Pid(child);
    common::wait_for_port(port);
    // distcc-config --set-hosts as the user, then the page's test.
    let home = tempfile::tempdir().unwrap();
    let root = staging_root();
    assert!(
        config(
            root.path(),
            home.path(),
            &["--set-hosts", &format!("127.0.0.1:{port}")],
            true
        )
        .status
        .success()
    );
    let src = w.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("main.c"), "#include <stdio.h>\n \nint main() {\n    printf(\"Hallo distcc!\\n\");\n    return 0;\n}\n").unwrap();
    let bin = w.join("bin");
    fs::create_dir(&bin).unwrap();
    let mut cmd = Command::new(applet(&bin, "distcc"));
    let o = clean(&mut cmd)
        .current_dir(&src)
        .env("HOME", home.path())
        .env("DISTCC_VERBOSE", "1")
        .args(["gcc", "-c", "main.c", "-o", "main.o"])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains(&format!("compile main.c on 127.0.0.1:{port} completed ok")),
        "{t}"
    );
    assert!(
        Command::new("gcc")
            .current_dir(&src)
            .args(["main.o", "-o", "main"])
            .status()
            .unwrap()
            .success()
    );
    let run = Command::new(src.join("main")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "Hallo distcc!\n");
    let log = common::wait_for_log(&logdir.join("distccd.log"), "COMPILE_OK");
    assert!(
        log.contains("COMPILE_OK exit:0 sig:0 core:0 ret:0") && log.contains("gcc main.c"),
        "{log}"
    );

    // The masquerade PATH (Portage's way): `gcc` in a dir of links to distcc, first in PATH.
    let masq = w.join("masq");
    fs::create_dir(&masq).unwrap();
    for c in ["gcc", "cc"] {
        symlink(distcc(), masq.join(c)).unwrap();
    }
    let path = format!(
        "{}:{}",
        masq.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("gcc");
    let o = clean(&mut cmd)
        .current_dir(&src)
        .env("PATH", &path)
        .env("HOME", home.path())
        .env("DISTCC_VERBOSE", "1")
        .args(["-c", "main.c", "-o", "main2.o"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("completed ok"), "{}", text(&o));
    assert_eq!(
        fs::read(src.join("main.o")).unwrap(),
        fs::read(src.join("main2.o")).unwrap()
    );
}

#[test]
fn server_side_ccache_hits_the_second_time() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let cache = world_writable_dir(w, "ccache");
    // The page: distccd's PATH starts with ccache's masquerade dir.
    let path = format!(
        "/usr/lib/ccache:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let d = Daemon::start(
        Kind::Ours,
        w,
        &[],
        &[
            ("DISTCCD_PATH", &path),
            ("CCACHE_DIR", cache.to_str().unwrap()),
        ],
    );
    let src = w.join("src");
    fs::create_dir(&src).unwrap();
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hello.c"),
        src.join("hello.c"),
    )
    .unwrap();
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hello.h"),
        src.join("hello.h"),
    )
    .unwrap();
    for _ in 0..2 {
        let o = common::client_cmd(&distcc(), &w.join("dd"), &format!("127.0.0.1:{}", d.port))
            .current_dir(&src)
            .env("DISTCC_FALLBACK", "0")
            .args(["gcc", "-O2", "-c", "hello.c", "-o", "hello.o"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    assert_eq!(d.compile_ok_count(), 2, "{}", d.log_text());
    let stats = Command::new("ccache")
        .arg("-s")
        .arg("-v")
        .env("CCACHE_DIR", &cache)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&stats.stdout);
    let hits = s
        .lines()
        .find(|l| l.trim_start().starts_with("Hits:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u32>().ok());
    assert_eq!(hits, Some(1), "one ccache hit on the server: {s}");
}
