//! Zeroconf discovery between machines: network namespaces joined by a bridge (which
//! lives in its own namespace), with multicast on the links. A daemon started with
//! `--zeroconf` in one namespace is found by a client with `DISTCC_HOSTS=+zeroconf` in
//! another, which compiles there; `lsdistcc --zeroconf` and `lsdistcc`'s name probe list it.
//!
//! Needs root and `ip` (iproute2); without them the test says so and passes vacuously.
//! Every namespace, the `/etc/netns` files and every process inside the namespaces are
//! removed, by PID, when the test ends, also on panic.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SERVER_IP: &str = "10.77.0.1";
const CLIENT_IP: &str = "10.77.0.2";

fn distcc() -> &'static str {
    env!("CARGO_BIN_EXE_distcc")
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two hosts on a bridge: namespaces `<p>-br` (the bridge), `<p>-srv`, `<p>-cli`.
struct Lan {
    prefix: String,
    names: Vec<String>,
    children: Vec<Child>,
}

impl Lan {
    fn new() -> Lan {
        let pid = std::process::id();
        let prefix = format!("zc{pid}");
        let lan = Lan {
            names: ["br", "srv", "cli"]
                .iter()
                .map(|n| format!("{prefix}-{n}"))
                .collect(),
            prefix,
            children: Vec::new(),
        };
        for ns in lan.names.clone() {
            must(&["ip", "netns", "add", &ns]);
        }
        let br = lan.ns("br");
        must(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"]);
        // No IGMP snooping: mDNS packets reach every port without membership reports.
        must(&[
            "ip",
            "-n",
            &br,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        must(&["ip", "-n", &br, "link", "set", "br0", "up"]);
        for (host, ip) in [("srv", SERVER_IP), ("cli", CLIENT_IP)] {
            let ns = lan.ns(host);
            let port = format!("{host}0");
            must(&[
                "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &br,
            ]);
            must(&["ip", "-n", &br, "link", "set", &port, "master", "br0", "up"]);
            must(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]);
            must(&[
                "ip",
                "-n",
                &ns,
                "link",
                "set",
                "eth0",
                "multicast",
                "on",
                "up",
            ]);
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        lan
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// `ip netns exec NS` + argv, as a command to finish configuring.
    fn cmd(&self, host: &str, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)]).args(argv);
        c
    }

    /// `/etc/hosts` as seen in `host`'s namespace (`ip netns exec` bind-mounts it).
    fn set_hosts_file(&self, host: &str, text: &str) {
        let dir = PathBuf::from("/etc/netns").join(self.ns(host));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("hosts"), text).unwrap();
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Whatever else runs in a namespace (the client's zeroconf browser): by PID.
        for ns in &self.names {
            let out = run(&["ip", "netns", "pids", ns]);
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: kill(2) on a PID listed in our own namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            let _ = run(&["ip", "netns", "del", ns]);
            let _ = fs::remove_dir_all(PathBuf::from("/etc/netns").join(ns));
        }
    }
}

fn can_run() -> bool {
    // SAFETY: geteuid has no side effects.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn world_writable(dir: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
}

#[test]
fn zeroconf_between_namespaces() {
    // Never a silent skip: `make test` runs as root (see the README).
    assert!(
        can_run(),
        "this test needs root and iproute2 to make network namespaces"
    );
    let tmp = tempfile::tempdir().unwrap();
    world_writable(tmp.path());
    let mut lan = Lan::new();

    // The server: publishes itself, serves the LAN.
    let log = tmp.path().join("distccd.log");
    fs::write(&log, "").unwrap();
    fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).unwrap();
    let daemon = lan
        .cmd(
            "srv",
            &[
                distcc(),
                "distccd",
                "--daemon",
                "--no-detach",
                "--zeroconf",
                "--jobs",
                "7",
                "--allow",
                "10.77.0.0/24",
                "--log-file",
                log.to_str().unwrap(),
                "--log-level",
                "info",
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lan.children.push(daemon);
    let log_text = || fs::read_to_string(&log).unwrap_or_default();
    poll("the daemon to publish", Duration::from_secs(20), || {
        log_text().contains("zeroconf: publishing").then_some(())
    });

    // lsdistcc --zeroconf in the client's namespace lists it, with the TXT slots.
    let want = format!("{SERVER_IP}:3632/7");
    let listed = poll(
        "lsdistcc --zeroconf to list the server",
        Duration::from_secs(30),
        || {
            let out = lan
                .cmd("cli", &[distcc(), "lsdistcc", "--zeroconf", "-t1", "-v"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains(&want).then_some((text, out.status))
        },
    );
    assert!(listed.1.success(), "{listed:?}");
    assert!(listed.0.contains("distcc@"), "{}", listed.0);
    assert!(listed.0.contains("txtvers=1"), "{}", listed.0);
    assert!(listed.0.contains("cc_version="), "{}", listed.0);

    // A client with +zeroconf compiles there.
    let work = tmp.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::write(work.join("hello.c"), "int hello(void) { return 42; }\n").unwrap();
    let distcc_dir = tmp.path().join("dccdir");
    fs::create_dir(&distcc_dir).unwrap();
    let client_log = tmp.path().join("client.log");
    let compile = || {
        let _ = fs::remove_file(work.join("hello.o"));
        lan.cmd(
            "cli",
            &[
                "env",
                "DISTCC_HOSTS=+zeroconf",
                &format!("DISTCC_DIR={}", distcc_dir.display()),
                &format!("DISTCC_LOG={}", client_log.display()),
                "DISTCC_VERBOSE=1",
                distcc(),
                "gcc",
                "-c",
                "hello.c",
                "-o",
                "hello.o",
            ],
        )
        .current_dir(&work)
        .output()
        .unwrap()
    };
    poll(
        "a +zeroconf compile to reach the daemon",
        Duration::from_secs(30),
        || {
            let out = compile();
            assert!(
                out.status.success(),
                "{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                fs::read_to_string(&client_log).unwrap_or_default()
            );
            log_text().contains("COMPILE_OK").then_some(())
        },
    );
    assert!(work.join("hello.o").is_file());
    let d = log_text();
    assert!(d.contains("hello"), "{d}");
    // The cache the browser keeps, in host-list form with the advertised slots.
    let cache = fs::read_to_string(distcc_dir.join("zeroconf/hosts")).unwrap();
    assert_eq!(cache, format!("{want}\n"));
    let c = fs::read_to_string(&client_log).unwrap_or_default();
    assert!(c.contains(SERVER_IP), "{c}");

    // lsdistcc's name probe: the address given, and the distcc%d form through the
    // namespace's /etc/hosts (zcsrv1 is the server; zcsrv2 does not resolve, so it stops).
    let out = lan
        .cmd("cli", &[distcc(), "lsdistcc", "-pgcc", SERVER_IP])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{SERVER_IP}\n")
    );
    lan.set_hosts_file(
        "cli",
        &format!("127.0.0.1 localhost\n{SERVER_IP} zcsrv1\n{CLIENT_IP} zccli\n"),
    );
    let out = lan
        .cmd("cli", &[distcc(), "lsdistcc", "-pgcc", "-P2", "zcsrv%d"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "zcsrv1,lzo\n");
    // A name with no server behind it is not listed (and with -x listed as down).
    let out = lan
        .cmd("cli", &[distcc(), "lsdistcc", "-x", "-c300", "zccli"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "zccli,down\n");
}
