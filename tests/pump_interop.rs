//! Debian's distcc 3.4 client with our built-in include server (started by `pump
//! --startup`): `--scan-includes` lists what our analyser found, and a real pump-mode
//! compile goes from their client, through our include server, to our daemon.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use common::{Daemon, Kind, client_cmd, distcc};

/// Run `pump --startup` and parse its `export NAME='value'` lines.
fn startup(bin: &Path, hosts: &str) -> Vec<(String, String)> {
    let out = Command::new(bin.join("pump"))
        .arg("--startup")
        .env("DISTCC_HOSTS", hosts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

#[test]
fn debian_client_uses_our_include_server() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let d = Daemon::start(Kind::Ours, w, &[], &[]);
    let hosts = format!("127.0.0.1:{},cpp,lzo", d.port);
    let bin = w.join("bin");
    fs::create_dir(&bin).unwrap();
    symlink(distcc(), bin.join("pump")).unwrap();
    let src = w.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("m.c"), "#include <stdio.h>\n#include \"h.h\"\nint main(void) { printf(\"%d\\n\", H); return 0; }\n").unwrap();
    fs::write(src.join("h.h"), "#define H 42\n").unwrap();
    let env = startup(&bin, &hosts);
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let port = get("INCLUDE_SERVER_PORT");
    assert!(!port.is_empty(), "{env:?}");

    let scan = client_cmd(Path::new("/usr/bin/distcc"), &w.join("dd"), &hosts)
        .env("INCLUDE_SERVER_PORT", &port)
        .current_dir(&src)
        .args(["--scan-includes", "gcc", "-c", "m.c"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&scan.stdout).into_owned();
    let compile = client_cmd(Path::new("/usr/bin/distcc"), &w.join("dd"), &hosts)
        .env("INCLUDE_SERVER_PORT", &port)
        .env("DISTCC_VERBOSE", "1")
        .env("DISTCC_FALLBACK", "0")
        .current_dir(&src)
        .args(["gcc", "-O2", "-c", "m.c", "-o", "m.o"])
        .output()
        .unwrap();
    let shutdown = Command::new(bin.join("pump"))
        .arg("--shutdown")
        .env("INCLUDE_SERVER_PID", get("INCLUDE_SERVER_PID"))
        .env("INCLUDE_SERVER_DIR", get("INCLUDE_SERVER_DIR"))
        .env("INCLUDE_SERVER_PORT", &port)
        .output()
        .unwrap();
    assert!(shutdown.status.success());

    assert!(
        scan.status.success(),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    assert!(
        listing.contains(&format!("FILE      {}", src.join("m.c").display())),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("FILE      {}", src.join("h.h").display())),
        "{listing}"
    );
    assert!(listing.contains("SYSTEMDIR /usr/include"), "{listing}");
    let log = String::from_utf8_lossy(&compile.stderr);
    assert!(compile.status.success(), "{log}");
    assert!(
        log.contains("got response") || log.contains("compiled on"),
        "{log}"
    );
    assert!(
        !log.contains("failed to get includes"),
        "their client used our include server: {log}"
    );
    assert_eq!(d.compile_ok_count(), 1, "{}", d.log_text());
    let local = Command::new("gcc")
        .args(["-O2", "-c", "m.c", "-o", "local.o"])
        .current_dir(&src)
        .status()
        .unwrap();
    assert!(local.success());
    assert_eq!(
        fs::read(src.join("m.o")).unwrap(),
        fs::read(src.join("local.o")).unwrap()
    );
}
