//! `make install` / `make uninstall` into a staging DESTDIR, the applet links, and the man
//! pages' rendering.

mod common;

use std::path::Path;
use std::process::Command;

use distcc::protocol::{self, Limits};

fn top() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn make(target: &str, destdir: &Path) -> std::process::Output {
    Command::new("make")
        .current_dir(top())
        .args(["-s", target, "PREFIX=/usr"])
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg(format!("BIN={}", env!("CARGO_BIN_EXE_distcc")))
        .output()
        .unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(".")
        .arg("-not")
        .arg("-type")
        .arg("d")
        .current_dir(dir)
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[test]
fn install_tree_links_versions_and_uninstall() {
    let dest = tempfile::tempdir().unwrap();
    let o = make("install", dest.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tree = files(dest.path());
    for want in [
        "./usr/bin/distcc",
        "./usr/bin/distccd",
        "./usr/bin/distcc-config",
        "./usr/bin/distccmon-text",
        "./usr/bin/pump",
        "./usr/bin/distcc-pump",
        "./usr/lib/distcc/bin",
        "./usr/lib/distcc/gcc",
        "./usr/share/man/man1/distcc.1",
        "./usr/share/man/man1/distccd.1",
        "./usr/share/man/man1/distcc-config.1",
        "./usr/share/man/man1/distccmon-text.1",
        "./usr/share/man/man1/pump.1",
        "./usr/sbin/update-distcc-symlinks",
        "./usr/share/man/man8/update-distcc-symlinks.8",
        "./etc/init.d/distccd",
        "./etc/conf.d/distccd",
        "./etc/env.d/02distcc",
        "./usr/lib/systemd/system/distccd.service",
        "./usr/lib/systemd/system/distccd.service.d/00gentoo.conf",
    ] {
        assert!(
            tree.contains(&want.to_string()),
            "{want} missing from {tree:#?}"
        );
    }
    let bin = dest.path().join("usr/bin");
    assert!(
        !bin.join("distccd").symlink_metadata().unwrap().is_file(),
        "applets are links"
    );
    for applet in [
        "distcc",
        "distccd",
        "distcc-config",
        "distccmon-text",
        "pump",
        "distcc-pump",
    ] {
        let o = Command::new(bin.join(applet))
            .arg("--version")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{applet} --version");
        let name = if applet == "distcc-pump" {
            "pump"
        } else {
            applet
        };
        assert!(out.starts_with(&format!("{name} ")), "{applet}: {out}");
        assert!(
            out.contains("(protocols 1, 2 and 3) (default port 3632)"),
            "{applet}: {out}"
        );
    }
    let o = Command::new(dest.path().join("usr/sbin/update-distcc-symlinks"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("/usr/lib/distcc"),
        "the sbin link runs the applet"
    );
    let o = make("uninstall", dest.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        files(dest.path()),
        Vec::<String>::new(),
        "uninstall leaves no files"
    );
}

#[test]
fn man_pages_render_cleanly() {
    for page in [
        "distcc.1",
        "distccd.1",
        "distcc-config.1",
        "distccmon-text.1",
        "pump.1",
        "update-distcc-symlinks.8",
    ] {
        let path = top().join("packaging/man").join(page);
        let o = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let o = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0")
            .output()
            .unwrap();
        assert!(o.status.success(), "{page}: man -l failed");
        // Drop man's overstrike bold ("N\x08N") before looking at the text.
        let mut plain = Vec::new();
        for &b in &o.stdout {
            if b == 8 {
                plain.pop();
            } else {
                plain.push(b);
            }
        }
        let text = String::from_utf8_lossy(&plain);
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{page}: {text}"
        );
    }
}

#[test]
fn service_files_match_gentoo() {
    let init = std::fs::read_to_string(top().join("packaging/openrc/distccd.initd")).unwrap();
    assert!(init.contains(r#"command_args="--user distcc --daemon --no-detach ${DISTCCD_OPTS}""#));
    assert!(init.contains(r#"command="${DISTCCD_EXEC:-/usr/bin/distccd}""#));
    assert!(init.contains("command_background=\"true\""));
    let unit = std::fs::read_to_string(top().join("packaging/systemd/distccd.service")).unwrap();
    assert!(unit.contains("--allow $ALLOWED_SERVERS"));
    // The conf.d's options are accepted by our daemon's parser: run them with --help
    // replaced by a bad port to get a quick, deterministic exit after parsing.
    let confd = std::fs::read_to_string(top().join("packaging/openrc/distccd.confd")).unwrap();
    let mut opts = Vec::new();
    for line in confd.lines().filter(|l| l.starts_with("DISTCCD_OPTS=")) {
        let v = line
            .trim_start_matches("DISTCCD_OPTS=")
            .trim_matches('"')
            .replace("${DISTCCD_OPTS}", "");
        opts.extend(v.split_whitespace().map(str::to_owned));
    }
    assert!(opts.contains(&"--allow".to_string()));
    let o = Command::new(env!("CARGO_BIN_EXE_distcc"))
        .arg("distccd")
        .args(&opts)
        .args(["--port", "70000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("port number out of range"),
        "options parsed up to the port check: {err}"
    );
}

/// The compiler links in a masquerade dir: the symlinks' names, sorted (not `bin -> .`).
fn masquerade_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "bin")
        .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `make install` links the compiler names Debian's distcc 3.4 package links (its
/// /usr/lib/distcc, made by its update-distcc-symlinks on this very machine), and a daemon
/// using that dir as its whitelist runs every one of them.
#[test]
fn install_links_the_compilers_debian_links_and_the_daemon_accepts_them() {
    let debian = masquerade_names(Path::new("/usr/lib/distcc"));
    assert!(
        debian.iter().any(|n| n.starts_with("gcc-")) && debian.contains(&"c89-gcc".to_owned()),
        "Debian's set has versioned and c89 names: {debian:?}"
    );
    let work = tempfile::tempdir().unwrap();
    let dest = common::world_writable_dir(work.path(), "stage");
    let o = make("install", &dest);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let masq = dest.join("usr/lib/distcc");
    assert_eq!(masquerade_names(&masq), debian);
    assert_eq!(
        std::fs::read_link(masq.join("gcc")).unwrap(),
        Path::new("../../bin/distcc")
    );
    assert_eq!(
        std::fs::read_link(masq.join("bin")).unwrap(),
        Path::new(".")
    );
    let masq_var = masq.to_str().unwrap();
    let daemon = common::Daemon::start(
        common::Kind::Ours,
        work.path(),
        &[],
        &[("DISTCCD_MASQUERADE_DIRS", masq_var)],
    );
    for name in &debian {
        let reply = common::exchange(
            daemon.port,
            &common::plain_request(
                &[name, "-c", "a.c", "-o", "a.o"],
                b"int a(void){return 1;}\n",
            ),
        );
        let decoded = protocol::decode_reply(&reply, 1, Limits::default());
        let ok = decoded
            .as_ref()
            .is_ok_and(|(r, _)| r.status == 0 && !r.object.is_empty());
        assert!(ok, "{name} refused: {decoded:?}\n{}", daemon.log_text());
    }
    drop(daemon);
    let o = make("uninstall", &dest);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
