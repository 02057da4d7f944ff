//! A small LAN of network namespaces for tests: one namespace holds a bridge, every host is a
//! namespace of its own joined to the bridge by a veth pair, with an IPv4 and an IPv6 address
//! and a hosts file that names every machine of the LAN. Nothing is created in the root
//! namespace, so the machine's real network is never touched. Needs root (as the project's
//! machines and CI have).
//!
//! ```ignore
//! let mut lan = Lan::new("ab");
//! let a = lan.host("alpha", "10.77.0.2/24", "fd00:77::2/64");
//! let b = lan.host("bravo", "10.77.0.3/24", "fd00:77::3/64");
//! let daemon = a.spawn(a.cmd("some-daemon").arg("--flag"));
//! b.wait_connect("alpha", 3632);
//! let out = b.run(b.cmd("getent").args(["hosts", "alpha"]));
//! ```
//!
//! Dropping the [`Lan`] (also while a test panics) kills every process still running in its
//! namespaces by PID, deletes the namespaces and the `/etc/netns/<ns>` directories. Names
//! carry the test process's PID and the LAN's tag, so tests running in parallel, in one
//! process or several, don't collide. Self-contained (std and libc only) so that a test may
//! also include it with `#[path]`.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Every host's interface on the LAN.
pub const IFACE: &str = "eth0";
/// The bridge, inside the bridge namespace.
const BRIDGE: &str = "br0";
/// `ip netns exec` bind-mounts `/etc/netns/<ns>/<file>` over `/etc/<file>`.
const ETC_NETNS: &str = "/etc/netns";

/// Serialises creating and removing directories under /etc/netns among the tests of one
/// process (one LAN removing an empty /etc/netns while another creates its directory).
static ETC_LOCK: Mutex<()> = Mutex::new(());

/// Run `ip ARGS`; panics with ip's message on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("can't run ip {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A LAN: a bridge namespace and the hosts joined to it. See the module docs.
pub struct Lan {
    /// `dcc<pid><tag>`: the start of every namespace name.
    prefix: String,
    /// The namespace that holds the bridge.
    bridge_ns: String,
    hosts: Vec<Host>,
    /// Every namespace created so far, for Drop.
    namespaces: Vec<String>,
}

/// One machine of a [`Lan`]: a namespace with interface [`IFACE`] on the bridge.
#[derive(Debug, Clone)]
pub struct Host {
    /// The name other hosts resolve (via their hosts file).
    pub name: String,
    /// The network namespace.
    pub ns: String,
    /// IPv4 address, without the prefix length.
    pub v4: String,
    /// IPv6 address, without the prefix length.
    pub v6: String,
    /// Addresses as given, with prefix lengths.
    pub v4_cidr: String,
    pub v6_cidr: String,
}

impl Lan {
    /// An empty LAN: the bridge namespace with its bridge up. `tag` (a few letters or
    /// digits) tells this LAN from the others of the same test process.
    pub fn new(tag: &str) -> Lan {
        assert!(
            !tag.is_empty() && tag.len() <= 12 && tag.chars().all(|c| c.is_ascii_alphanumeric()),
            "a LAN tag is 1–12 letters or digits: {tag:?}"
        );
        let prefix = format!("dcc{}{tag}", std::process::id());
        let mut lan = Lan {
            bridge_ns: format!("{prefix}-br"),
            prefix,
            hosts: Vec::new(),
            namespaces: Vec::new(),
        };
        let ns = lan.bridge_ns.clone();
        lan.add_namespace(&ns);
        // Snooping off: the bridge floods multicast (IPv6 neighbour discovery, mDNS) to every
        // port instead of learning who listens, like a plain switch.
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &ns, "link", "set", BRIDGE, "up"]);
        lan
    }

    /// A new host `name` (letters, digits, '-') with addresses `v4` and `v6` given with
    /// prefix lengths (`10.77.0.2/24`, `fd00:77::2/64`). Every host's hosts file is rewritten
    /// to name every host of the LAN.
    pub fn host(&mut self, name: &str, v4: &str, v6: &str) -> Host {
        assert!(
            !name.is_empty()
                && name.len() <= 20
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "a host name is 1–20 letters, digits or '-': {name:?}"
        );
        assert!(
            self.hosts.iter().all(|h| h.name != name),
            "two hosts named {name}"
        );
        let addr = |cidr: &str| match cidr.split_once('/') {
            Some((a, _)) => a.to_string(),
            None => panic!("{cidr}: an address with a prefix length expected"),
        };
        let host = Host {
            name: name.to_string(),
            ns: format!("{}-{name}", self.prefix),
            v4: addr(v4),
            v6: addr(v6),
            v4_cidr: v4.to_string(),
            v6_cidr: v6.to_string(),
        };
        self.add_namespace(&host.ns);
        // The bridge's end: p0, p1, … (interface names are at most 15 bytes).
        let port = format!("p{}", self.hosts.len());
        // Both ends are created right in their namespaces, never in the root one.
        ip(&[
            "link",
            "add",
            IFACE,
            "netns",
            &host.ns,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.bridge_ns,
        ]);
        ip(&[
            "-n",
            &self.bridge_ns,
            "link",
            "set",
            &port,
            "master",
            BRIDGE,
            "up",
        ]);
        ip(&["-n", &host.ns, "link", "set", "lo", "up"]);
        ip(&["-n", &host.ns, "addr", "add", v4, "dev", IFACE]);
        // nodad: usable at once, not after duplicate address detection.
        ip(&["-n", &host.ns, "addr", "add", v6, "dev", IFACE, "nodad"]);
        ip(&["-n", &host.ns, "link", "set", IFACE, "up"]);
        self.hosts.push(host.clone());
        self.write_hosts_files();
        host
    }

    /// The hosts so far.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The namespace holding the bridge (e.g. to watch traffic with tcpdump).
    pub fn bridge_ns(&self) -> &str {
        &self.bridge_ns
    }

    fn add_namespace(&mut self, ns: &str) {
        // A leftover of a crashed run with the same PID would make `add` fail.
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", ns]);
        self.namespaces.push(ns.to_string());
    }

    /// `/etc/netns/<ns>/hosts` for every host: localhost and every host's two addresses.
    /// Written in place, so processes already running in a namespace see the new list too.
    fn write_hosts_files(&self) {
        let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n");
        for h in &self.hosts {
            text.push_str(&format!("{}\t{}\n{}\t{}\n", h.v4, h.name, h.v6, h.name));
        }
        let _guard = ETC_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for h in &self.hosts {
            let dir = etc_dir(&h.ns);
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let path = dir.join("hosts");
            fs::write(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Hosts first, the bridge last. Nothing here may panic: this also runs while a
        // failed test unwinds.
        for ns in self.namespaces.iter().rev() {
            stop_processes_in(ns);
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _guard = ETC_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for ns in &self.namespaces {
            let _ = fs::remove_dir_all(etc_dir(ns));
        }
        // Only if no other LAN (of any process) still uses it.
        let _ = fs::remove_dir(ETC_NETNS);
    }
}

fn etc_dir(ns: &str) -> PathBuf {
    Path::new(ETC_NETNS).join(ns)
}

/// PIDs of the processes in namespace `ns` (`ip netns pids`). Zombies have no namespace any
/// more and are not listed.
fn pids_in(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Stop every process of namespace `ns` by PID: SIGTERM, then SIGKILL for what is left
/// after a few seconds. These are processes the tests started there (and their children,
/// e.g. a daemon's compilers), whether or not their guards were dropped.
fn stop_processes_in(ns: &str) {
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let pids = pids_in(ns);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: kill(2) on a PID just listed as living in our own namespace.
            unsafe { libc::kill(pid, signal) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pids_in(ns).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Host {
    /// `ip netns exec <ns> <program>`: add arguments, environment and a directory as to any
    /// command. `ip` execs the program, so the child's PID is the program's.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Run a command made by [`Host::cmd`] to its end (no stdin); its output.
    pub fn run(&self, cmd: &mut Command) -> Output {
        cmd.stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("on {}: can't run {cmd:?}: {e}", self.name))
    }

    /// Run a shell script on this host; its output.
    pub fn sh(&self, script: &str) -> Output {
        self.run(self.cmd("sh").args(["-c", script]))
    }

    /// Start a command made by [`Host::cmd`] in the background (no stdin). Stopped by PID
    /// when the [`Proc`] drops, or at the latest when the LAN drops.
    pub fn spawn(&self, cmd: &mut Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("on {}: can't start {cmd:?}: {e}", self.name));
        Proc { child }
    }

    /// Can this host open a TCP connection to `addr` (a name or an address) on `port`?
    pub fn can_connect(&self, addr: &str, port: u16) -> bool {
        self.run(
            self.cmd("bash")
                .args(["-c", &format!("exec 3<>/dev/tcp/{addr}/{port}")])
                .stderr(Stdio::null()),
        )
        .status
        .success()
    }

    /// Wait (up to 10 s) until this host can connect to `addr:port`.
    pub fn wait_connect(&self, addr: &str, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.can_connect(addr, port) {
            assert!(
                Instant::now() < deadline,
                "{}: nothing answers on {addr} port {port}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Take this host's link down, as when a machine is unplugged or switched off: its
    /// connections go silent, nothing is reset.
    pub fn link_down(&self) {
        ip(&["-n", &self.ns, "link", "set", IFACE, "down"]);
    }

    /// Bring the link back up.
    pub fn link_up(&self) {
        ip(&["-n", &self.ns, "link", "set", IFACE, "up"]);
    }
}

/// A process started on a host, stopped by PID (SIGTERM, then SIGKILL) and reaped when
/// dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, once it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait until it exits or `deadline` passes (then `None`; it keeps running).
    pub fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        self.try_wait().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_wait().is_some() {
            return;
        }
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child, not reaped yet, so the PID is still its.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if self
            .wait_until(Instant::now() + Duration::from_secs(5))
            .is_none()
        {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}
