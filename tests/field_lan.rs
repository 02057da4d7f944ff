//! A LAN of network namespaces: a client machine and a build host joined by a veth pair,
//! as on a real network (not 127.0.0.1). Needs root, as the project's machines and CI are.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Two namespaces `<tag>c` (client, 10.251.N.1) and `<tag>s` (server, 10.251.N.2) joined by
/// a veth pair; removed when dropped.
struct Lan {
    client: String,
    server: String,
    server_v4: String,
    server_v6: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lan {
    fn new(net: u8) -> Lan {
        let tag = format!("dcc{}n{net}", std::process::id());
        let (client, server) = (format!("{tag}c"), format!("{tag}s"));
        ip(&["netns", "add", &client]);
        ip(&["netns", "add", &server]);
        let lan = Lan {
            client,
            server,
            server_v4: format!("10.251.{net}.2"),
            server_v6: format!("fd00:251:{net}::2"),
        };
        ip(&[
            "link",
            "add",
            "vc",
            "netns",
            &lan.client,
            "type",
            "veth",
            "peer",
            "name",
            "vs",
            "netns",
            &lan.server,
        ]);
        for (ns, dev, addr) in [
            (&lan.client, "vc", format!("10.251.{net}.1/24")),
            (&lan.server, "vs", format!("10.251.{net}.2/24")),
        ] {
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        for (ns, dev, addr) in [
            (&lan.client, "vc", format!("fd00:251:{net}::1/64")),
            (&lan.server, "vs", format!("fd00:251:{net}::2/64")),
        ] {
            // nodad: usable at once, not after duplicate address detection.
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev, "nodad"]);
        }
        lan
    }

    /// A command that runs inside namespace `ns`.
    fn exec(ns: &str, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }

    /// The build host's link goes away, as when a laptop leaves or a box is switched off.
    fn cut(&self) {
        ip(&["-n", &self.server, "link", "set", "vs", "down"]);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Our distccd in the server namespace; stopped by PID when dropped.
struct NsDaemon(Child);

impl Drop for NsDaemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own unreaped child (`ip netns exec` execs the daemon).
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn start_daemon(lan: &Lan, masq: &Path, log: &Path, port: u16, env: &[(&str, &str)]) -> NsDaemon {
    let child = Lan::exec(&lan.server, &distcc())
        .args([
            "distccd",
            "--daemon",
            "--no-detach",
            "--allow",
            "10.251.0.0/16",
            "--allow",
            "fd00:251::/32",
        ])
        .args([
            "--port",
            &port.to_string(),
            "--log-level",
            "info",
            "--log-file",
        ])
        .arg(log)
        .env("DISTCCD_MASQUERADE_DIRS", masq)
        .env("DISTCCD_PATH", format!("{}:/usr/bin:/bin", masq.display()))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start distccd in the server namespace");
    let d = NsDaemon(child);
    // Listening: a probe from the client namespace connects.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = Lan::exec(&lan.client, Path::new("/bin/bash"))
            .args(["-c", &format!("exec 3<>/dev/tcp/{}/{port}", lan.server_v4)])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return d;
        }
        assert!(Instant::now() < deadline, "distccd never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn work_dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    // The daemon drops to an unprivileged user: its log and the compiler's marker go here.
    let shared = world_writable_dir(work.path(), "shared");
    let masq = world_writable_dir(work.path(), "masq");
    (work, shared, masq)
}

#[test]
fn a_build_host_that_vanishes_mid_job_is_noticed_in_seconds() {
    let lan = Lan::new(1);
    let (work, shared, masq) = work_dirs();
    let t = work.path();
    let started = shared.join("started");
    // Slow only on the build host (its daemon sets ON_SERVER): the local fallback is quick.
    script(
        &masq.join("slowcc"),
        &format!(
            "if [ -n \"$ON_SERVER\" ]; then touch {}; sleep 120; fi\nexec gcc \"$@\"",
            started.display()
        ),
    );
    let port = free_port();
    let log = shared.join("distccd.log");
    let _d = start_daemon(&lan, &masq, &log, port, &[("ON_SERVER", "1")]);
    std::fs::write(t.join("x.c"), "int x(void) { return 42; }\n").unwrap();

    let began = Instant::now();
    let mut client = client_cmd(
        Path::new("/usr/bin/ip"),
        &t.join("dd"),
        &format!("{}:{port}", lan.server_v4),
    )
    .args(["netns", "exec", &lan.client])
    .arg(distcc())
    .args(["slowcc", "-c", "x.c", "-o", "x.o"])
    .current_dir(t)
    // distcc 3.4's default: without keepalive the client would wait all of it.
    .env("DISTCC_IO_TIMEOUT", "300")
    .env("PATH", format!("{}:/usr/bin:/bin", masq.display()))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for_file(&started);
    lan.cut();

    // The client must give up on the host and compile locally well within a minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = client.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = client.kill();
            let _ = client.wait();
            panic!(
                "the client still waits {} s after its build host vanished",
                began.elapsed().as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = client.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "{err}");
    assert!(err.contains("failed to distribute"), "{err}");
    assert!(
        t.join("x.o").exists(),
        "the local fallback wrote the object"
    );
}

#[test]
fn the_daemon_serves_ipv4_and_ipv6_clients_on_one_default_socket() {
    let lan = Lan::new(2);
    let (work, shared, masq) = work_dirs();
    let t = work.path();
    // The client sends gcc as x86_64-linux-gnu-gcc (cross rewriting): whitelist both.
    for name in ["gcc", "x86_64-linux-gnu-gcc"] {
        std::os::unix::fs::symlink("/usr/bin/gcc", masq.join(name)).unwrap();
    }
    let port = free_port();
    let log = shared.join("distccd.log");
    // No --listen: one dual-stack socket.
    let _d = start_daemon(&lan, &masq, &log, port, &[]);
    for (i, host) in [
        format!("{}:{port}", lan.server_v4),
        format!("[{}]:{port}", lan.server_v6),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(t.join(format!("y{i}.c")), format!("int yy{i};\n")).unwrap();
        let out = client_cmd(Path::new("/usr/bin/ip"), &t.join("dd"), host)
            .args(["netns", "exec", &lan.client])
            .arg(distcc())
            .args(["gcc", "-c", &format!("y{i}.c"), "-o", &format!("y{i}.o")])
            .current_dir(t)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{host}: {err}");
        assert!(
            !err.contains("failed to distribute"),
            "{host}: {err}; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let text = wait_for_log(&log, "fd00:251:2::1");
    assert_eq!(text.matches("COMPILE_OK").count(), 2, "{text}");
    assert!(
        text.contains("10.251.2.1"),
        "the IPv4 client, as IPv4: {text}"
    );
    assert!(text.contains("fd00:251:2::1"), "the IPv6 client: {text}");

    // A client outside --allow, v4 or v6, is refused: an address of the server's own
    // namespace that the allow lists don't cover.
    ip(&[
        "-n",
        &lan.server,
        "addr",
        "add",
        "192.0.2.9/32",
        "dev",
        "lo",
    ]);
    let out = client_cmd(
        Path::new("/usr/bin/ip"),
        &t.join("dd2"),
        &format!("192.0.2.9:{port}"),
    )
    .args(["netns", "exec", &lan.server])
    .arg(distcc())
    .args(["gcc", "-c", "y0.c", "-o", "z.o"])
    .current_dir(t)
    .output()
    .unwrap();
    assert!(out.status.success(), "falls back locally");
    let text = wait_for_log(&log, "denied by access list");
    assert!(text.contains("denied by access list"), "{text}");
}
