//! Portage's network sandbox: the client runs in a network namespace with no network
//! (`unshare -n`), and reaches the build host only through a SOCKS5 proxy on a UNIX socket
//! outside it (`DISTCC_SOCKS_PROXY`), as Portage's `socks5-server.py` offers it.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use common::*;

/// What the proxy was asked for: (address type, address, port).
type Asked = Arc<Mutex<Vec<(u8, String, u16)>>>;

/// A minimal SOCKS5 server (no authentication, CONNECT) on a UNIX socket. It "resolves"
/// every DOMAINNAME to 127.0.0.1 — the host names in the test exist only for it — except
/// `refused`, which gets reply 5.
fn socks_server(sock: &Path) -> Asked {
    let listener = UnixListener::bind(sock).expect("bind the proxy socket");
    let asked: Asked = Arc::default();
    let log = asked.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let log = log.clone();
            std::thread::spawn(move || {
                let _ = serve_one(conn, &log);
            });
        }
    });
    asked
}

fn serve_one(mut c: UnixStream, asked: &Asked) -> std::io::Result<()> {
    let mut greet = [0u8; 2];
    c.read_exact(&mut greet)?;
    let mut methods = vec![0u8; usize::from(greet[1])];
    c.read_exact(&mut methods)?;
    assert_eq!(greet[0], 5);
    assert!(methods.contains(&0), "the client offers no-authentication");
    c.write_all(&[5, 0])?;
    let mut head = [0u8; 4];
    c.read_exact(&mut head)?;
    assert_eq!(&head[..3], &[5, 1, 0], "CONNECT");
    let addr = match head[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a)?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        4 => {
            let mut a = [0u8; 16];
            c.read_exact(&mut a)?;
            std::net::Ipv6Addr::from(a).to_string()
        }
        3 => {
            let mut n = [0u8; 1];
            c.read_exact(&mut n)?;
            let mut name = vec![0u8; usize::from(n[0])];
            c.read_exact(&mut name)?;
            String::from_utf8_lossy(&name).into_owned()
        }
        t => panic!("address type {t}"),
    };
    let mut port = [0u8; 2];
    c.read_exact(&mut port)?;
    let port = u16::from_be_bytes(port);
    asked.lock().unwrap().push((head[3], addr.clone(), port));
    if addr == "refused" {
        return c.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
    }
    let upstream = TcpStream::connect(("127.0.0.1", port))?;
    c.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
    let (mut c2, mut u2) = (c.try_clone()?, upstream.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let (mut u, mut c) = (upstream, c);
    let _ = std::io::copy(&mut u, &mut c);
    let _ = c.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// `distcc gcc -c NAME.c` inside a namespace with only (down) loopback.
fn sandboxed_compile(t: &Path, hosts: &str, proxy: Option<&Path>, name: &str) -> Output {
    let mut cmd = client_cmd(Path::new("/usr/bin/unshare"), &t.join("dd"), hosts);
    cmd.arg("-n")
        .arg(distcc())
        .args(["gcc", "-O2", "-c", &format!("{name}.c"), "-o"])
        .arg(format!("{name}.o"))
        .current_dir(t)
        .env("DISTCC_VERBOSE", "1")
        .env("DISTCC_BACKOFF_PERIOD", "0");
    if let Some(p) = proxy {
        cmd.env("DISTCC_SOCKS_PROXY", p);
    }
    cmd.output().expect("run unshare -n distcc")
}

fn local_object(t: &Path, name: &str) -> Vec<u8> {
    let out = std::process::Command::new("gcc")
        .args(["-O2", "-c", &format!("{name}.c"), "-o"])
        .arg(format!("{name}.ref.o"))
        .current_dir(t)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::read(t.join(format!("{name}.ref.o"))).unwrap()
}

#[test]
fn a_build_in_a_network_sandbox_reaches_the_daemon_through_the_socks_proxy() {
    let work = tempfile::tempdir().unwrap();
    let t = work.path();
    let d = Daemon::start(Kind::Ours, t, &[], &[]);
    let sock = t.join("net.sock");
    let asked = socks_server(&sock);
    let hosts = format!("buildhost:{}/4", d.port);
    for i in 0..3 {
        std::fs::write(
            t.join(format!("u{i}.c")),
            format!("int u{i}(int x) {{ return x * {i}; }}\n"),
        )
        .unwrap();
        let o = sandboxed_compile(t, &hosts, Some(&sock), &format!("u{i}"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(!err.contains("failed to distribute"), "{err}");
        assert_eq!(
            std::fs::read(t.join(format!("u{i}.o"))).unwrap(),
            local_object(t, &format!("u{i}")),
            "the object equals a local build's"
        );
    }
    assert_eq!(d.compile_ok_count(), 3, "every job compiled by the daemon");
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 3);
    for (atyp, addr, port) in asked {
        assert_eq!(
            (atyp, addr.as_str(), port),
            (3, "buildhost", d.port),
            "the host goes as a DOMAINNAME: the proxy resolves it"
        );
    }

    // Without the proxy the same sandbox has no network: the job runs locally.
    std::fs::write(t.join("v.c"), "int v;\n").unwrap();
    let o = sandboxed_compile(t, &hosts, None, "v");
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("failed to distribute"));
    assert_eq!(d.compile_ok_count(), 3);
}

#[test]
fn a_proxy_refusal_names_the_proxy_and_falls_back_locally() {
    let work = tempfile::tempdir().unwrap();
    let t = work.path();
    let sock = t.join("net.sock");
    let asked = socks_server(&sock);
    std::fs::write(t.join("w.c"), "int w = 3;\n").unwrap();
    let o = sandboxed_compile(t, "refused:3632", Some(&sock), "w");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("SOCKS proxy {}", sock.display()))
            && err.contains("reply 5 (connection refused)"),
        "{err}"
    );
    assert!(err.contains("failed to distribute"), "{err}");
    assert_eq!(std::fs::read(t.join("w.o")).unwrap(), local_object(t, "w"));
    assert_eq!(asked.lock().unwrap().len(), 1);

    // An IPv4 literal goes as an IPv4 address, not a name.
    let o = sandboxed_compile(t, "127.0.0.9:1", Some(&sock), "w");
    assert!(o.status.success());
    let last = asked.lock().unwrap().last().cloned();
    assert_eq!(last, Some((1, "127.0.0.9".to_string(), 1)));
}
