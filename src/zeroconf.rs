//! Zeroconf (mDNS/DNS-SD) discovery of distcc servers, like distcc 3.4's Avahi support
//! (`zeroconf.c`, `zeroconf-reg.c`, `gcc-id.c`), but with the pure-Rust `mdns-sd` responder
//! in-process, so neither avahi-daemon nor libavahi is needed.
//!
//! * **Publishing** (`distccd --zeroconf`): [`Publisher`] announces the instance
//!   `distcc@<hostname>` of `_distcc._tcp` on the daemon's port with the TXT record built by
//!   [`txt_records`] (`txtvers=1 cpus=N jobs=N distcc=<our version> gnuhost=<triple>
//!   cc_version=… cc_machine=…`), plus the DNS-SD subtype [`subtype`]
//!   `_<machine>--<version>._sub._distcc._tcp` when `cc -dumpversion`/`-dumpmachine` work.
//!   That subtype is what 3.4 clients browse for, so they (and we) only see servers whose
//!   `cc` is the same version for the same target.
//! * **Browsing** (`+zeroconf` in a host list): clients live for one compile, so browsing
//!   per job would add the mDNS round trip to every compile. As in 3.4, one background
//!   browser per `DISTCC_DIR` keeps `$DISTCC_DIR/zeroconf/hosts` up to date (format:
//!   [`format_hosts`]) while it holds an fcntl write lock on `$DISTCC_DIR/zeroconf/lock`;
//!   [`cached_hosts`] reads that file and starts the browser when nobody holds the lock.
//!   The browser is this same executable started under the hidden applet name
//!   [`BROWSER_APPLET`] (not forked from the client: the client may be any program name,
//!   has open build files and may have threads; a fresh exec of `/proc/self/exe` in its own
//!   session starts clean). It exits after [`BROWSER_IDLE`] without clients.
//!
//! Differences from 3.4, on purpose:
//! * Clients mark their use by setting the hosts file's access time explicitly; 3.4 relied
//!   on `read()` updating atime, which `relatime`/`noatime` mounts do not do, so its browser
//!   quit every 20 s during a build. An explicit atime update also keeps a 3.4 browser
//!   sharing the directory alive.
//! * The file is replaced atomically (write + rename), so readers need no lock and never
//!   see a half-written list.
//! * A client that starts the browser waits until the first server is listed, at most
//!   [`FIRST_WAIT`], instead of a fixed second.
//! * Slots: TXT `jobs`, else `cpus`+2, else 4 (3.4 takes 4 whenever `jobs` is missing and
//!   uses `cpus`+2 only for a `jobs` value <= 0).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use mdns_sd::{ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::settings::Dirs;
use crate::temp::TempError;

/// The DNS-SD service type distcc servers publish.
pub const SERVICE_TYPE: &str = "_distcc._tcp.local.";
/// The hidden applet name the background browser runs under.
pub const BROWSER_APPLET: &str = "distcc-zeroconf-browser";
/// The browser exits when no client has read the list for this long (3.4: 20 s; longer
/// here so a build's link phase does not cost the next compile a restart).
pub(crate) const BROWSER_IDLE: Duration = Duration::from_secs(60);
/// How long a client that started the browser waits for the first server.
pub(crate) const FIRST_WAIT: Duration = Duration::from_secs(1);
/// A hosts file larger than this is refused (3.4: 100 KiB).
const MAX_FILE_SIZE: u64 = 100 * 1024;
/// Slots when the TXT record says neither `jobs` nor `cpus`.
const DEFAULT_JOBS: u32 = 4;

/// Errors of zeroconf publishing and browsing; each names the file or the operation.
#[derive(Debug, thiserror::Error)]
pub enum ZeroconfError {
    /// `$DISTCC_DIR/zeroconf` is unusable.
    #[error("zeroconf directory: {0}")]
    Dir(#[from] TempError),
    /// A file in it could not be used.
    #[error("{what} {path}: {source}")]
    File {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The mDNS responder refused something.
    #[error("mDNS: {what}: {message}")]
    Mdns {
        /// What was being done.
        what: &'static str,
        /// The responder's message.
        message: String,
    },
    /// The background browser could not be started.
    #[error("can't start the zeroconf browser {exe}: {source}")]
    Spawn {
        /// The executable.
        exe: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

fn mdns_err(what: &'static str) -> impl FnOnce(mdns_sd::Error) -> ZeroconfError {
    move |e| ZeroconfError::Mdns {
        what,
        message: e.to_string(),
    }
}

fn file_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ZeroconfError + 'a {
    move |source| ZeroconfError::File {
        what,
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------
// TXT record and subtype

/// What a server says about itself in its TXT record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Advert {
    /// CPUs online.
    pub cpus: u32,
    /// Jobs it accepts at once (`--jobs`).
    pub jobs: u32,
    /// `cc -dumpversion`, when it ran.
    pub cc_version: Option<String>,
    /// `cc -dumpmachine`, when it ran.
    pub cc_machine: Option<String>,
}

/// The TXT record of a server, in 3.4's order: `txtvers`, `cpus`, `jobs`, `distcc` (our
/// version), `gnuhost`, then `cc_version` and `cc_machine` when known.
pub(crate) fn txt_records(ad: &Advert) -> Vec<(String, String)> {
    let mut txt = vec![
        ("txtvers".to_owned(), "1".to_owned()),
        ("cpus".to_owned(), ad.cpus.to_string()),
        ("jobs".to_owned(), ad.jobs.to_string()),
        ("distcc".to_owned(), crate::VERSION.to_owned()),
        ("gnuhost".to_owned(), crate::host_triple()),
    ];
    if let Some(v) = &ad.cc_version {
        txt.push(("cc_version".to_owned(), v.clone()));
    }
    if let Some(m) = &ad.cc_machine {
        txt.push(("cc_machine".to_owned(), m.clone()));
    }
    txt
}

/// Slots for a server from its TXT values (`get` looks a key up): `jobs` when it is a
/// positive number, else `cpus`+2 when `cpus` is, else 4.
pub(crate) fn jobs_from_txt<'a>(get: impl Fn(&str) -> Option<&'a str>) -> u32 {
    let positive = |key: &str| {
        get(key)
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|n| *n > 0)
    };
    positive("jobs")
        .or_else(|| positive("cpus").map(|c| c.saturating_add(2)))
        .unwrap_or(DEFAULT_JOBS)
}

/// A DNS label from compiler output, as 3.4 makes it: ASCII letters lowercased, digits
/// kept, anything else `-`.
fn label(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect()
}

/// The DNS-SD subtype for a compiler: `_<machine>--<version>._sub._distcc._tcp.local.`
/// (3.4's `dcc_make_dnssd_subtype`), e.g. `_x86-64-linux-gnu--12._sub._distcc._tcp.local.`.
pub(crate) fn subtype(cc_version: &str, cc_machine: &str) -> String {
    format!(
        "_{}--{}._sub.{SERVICE_TYPE}",
        label(cc_machine),
        label(cc_version)
    )
}

/// The first word of `cc <flag>`'s output (`-dumpversion`, `-dumpmachine`), as 3.4 asks
/// the compiler named `cc` on `path` (the caller's `PATH` when None).
pub(crate) fn cc_says(flag: &str, path: Option<&OsStr>) -> Option<String> {
    let mut cmd = Command::new("cc");
    cmd.arg(flag).stdin(Stdio::null()).stderr(Stdio::null());
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let out = match cmd.output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            log::warn!("cc {flag} failed: {}", o.status);
            return None;
        }
        Err(e) => {
            log::warn!("can't run cc {flag}: {e}");
            return None;
        }
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------------
// Cache file

/// One server in the cache file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    /// Its address.
    pub addr: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its slots.
    pub jobs: u32,
}

/// The cache file's text: one host per line, `a.b.c.d:port/jobs` or `[v6]:port/jobs`,
/// which is host-list syntax (plain TCP hosts: no lzo, no cpp, like 3.4).
pub(crate) fn format_hosts(entries: &[Entry]) -> String {
    let mut out = String::new();
    for e in entries {
        match e.addr {
            IpAddr::V4(a) => out.push_str(&format!("{a}:{}/{}\n", e.port, e.jobs)),
            IpAddr::V6(a) => out.push_str(&format!("[{a}]:{}/{}\n", e.port, e.jobs)),
        }
    }
    out
}

/// The address a client should use among those a server announced: a routable IPv4 one
/// first, then IPv4 loopback (same machine), then a global IPv6 one. Link-local IPv6 needs
/// a scope that host lists cannot express, so it is never chosen.
pub(crate) fn pick_address(addrs: impl IntoIterator<Item = IpAddr>) -> Option<IpAddr> {
    let rank = |a: &IpAddr| match a {
        IpAddr::V4(v4) if v4.is_loopback() => Some(1),
        IpAddr::V4(v4) if v4.is_unspecified() => None,
        IpAddr::V4(_) => Some(0),
        IpAddr::V6(v6) if v6.is_loopback() => Some(3),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 || v6.is_unspecified() => None,
        IpAddr::V6(_) => Some(2),
    };
    addrs
        .into_iter()
        .filter_map(|a| rank(&a).map(|r| (r, a)))
        .min()
        .map(|(_, a)| a)
}

/// A resolved service as a cache entry, or None when it has no usable address.
fn entry_of(svc: &ResolvedService) -> Option<Entry> {
    let addr = pick_address(svc.get_addresses().iter().map(|a| a.to_ip_addr()))?;
    Some(Entry {
        addr,
        port: svc.get_port(),
        jobs: jobs_from_txt(|k| svc.get_property_val_str(k)),
    })
}

/// Paths of the cache: `(hosts, lock)` in `$DISTCC_DIR/zeroconf`.
fn cache_paths(dirs: &Dirs) -> Result<(PathBuf, PathBuf), ZeroconfError> {
    let dir = crate::temp::sub_dir(dirs, "zeroconf")?;
    Ok((dir.join("hosts"), dir.join("lock")))
}

/// Try to take (`F_SETLK`, no waiting) a write lock on the whole of `file`.
fn try_write_lock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed flock is valid; fcntl only reads it.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fcntl on a descriptor we own with a valid flock.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

fn open_lock(path: &Path) -> Result<File, ZeroconfError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(path)
        .map_err(file_err("can't open", path))
}

/// Replace `path` with `text` atomically (a temp file in the same directory, renamed).
fn write_atomically(path: &Path, text: &str) -> Result<(), ZeroconfError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".hosts.")
        .tempfile_in(dir)
        .map_err(file_err("can't create a temporary file for", path))?;
    tmp.write_all(text.as_bytes())
        .map_err(file_err("can't write", path))?;
    // Readable by everyone sharing the directory, like 3.4's 0666 & ~umask.
    let _ = tmp
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644));
    tmp.persist(path)
        .map_err(|e| ZeroconfError::File {
            what: "can't replace",
            path: path.to_path_buf(),
            source: e.error,
        })
        .map(drop)
}

/// Mark the list as used now (its access time), so the browser keeps running.
fn mark_used(path: &Path) {
    let now = SystemTime::now();
    if let Ok(f) = File::open(path) {
        let _ = f.set_times(std::fs::FileTimes::new().set_accessed(now));
    }
}

fn read_limited(path: &Path) -> Result<Option<String>, ZeroconfError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_err("can't open", path)(e)),
    };
    let mut buf = Vec::new();
    (&mut f)
        .take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(file_err("can't read", path))?;
    if buf.len() as u64 > MAX_FILE_SIZE {
        return Err(ZeroconfError::File {
            what: "refusing to read",
            path: path.to_path_buf(),
            source: io::Error::other(format!("larger than {MAX_FILE_SIZE} bytes")),
        });
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// The zeroconf host list for a client: the text of `$DISTCC_DIR/zeroconf/hosts` and its
/// path (for messages). Starts the background browser when none runs (nobody holds the
/// lock), then waits up to [`FIRST_WAIT`] for it to list a server.
pub(crate) fn cached_hosts(dirs: &Dirs) -> Result<(String, PathBuf), ZeroconfError> {
    let (hosts, lock) = cache_paths(dirs)?;
    let lock_file = open_lock(&lock)?;
    let free = try_write_lock(&lock_file).map_err(file_err("can't lock", &lock))?;
    if free {
        // Whatever is there was written by a browser that is gone: drop it so we don't
        // hand out servers that may have left, then let a new browser take the lock.
        let _ = std::fs::remove_file(&hosts);
        drop(lock_file);
        spawn_browser(dirs)?;
        let deadline = Instant::now() + FIRST_WAIT;
        while Instant::now() < deadline {
            if std::fs::metadata(&hosts).is_ok_and(|m| m.len() > 0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    } else {
        drop(lock_file);
    }
    mark_used(&hosts);
    let text = read_limited(&hosts)?.unwrap_or_default();
    Ok((text, hosts))
}

/// Start the browser: this executable under [`BROWSER_APPLET`], in its own session (so a
/// Ctrl-C to the build does not stop it), with stdio on /dev/null, in `/`. It inherits the
/// environment, hence `DISTCC_DIR`, `HOME` and the client's logging variables.
fn spawn_browser(dirs: &Dirs) -> Result<(), ZeroconfError> {
    let exe = PathBuf::from("/proc/self/exe");
    if cfg!(test) {
        // A unit-test binary is not distcc: re-running it would run the tests again.
        return Err(ZeroconfError::Spawn {
            exe,
            source: io::Error::other("not from unit tests"),
        });
    }
    let mut cmd = Command::new(&exe);
    cmd.arg0(BROWSER_APPLET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    // The child must see the directories we saw, also when DISTCC_DIR came from HOME.
    if let Some(d) = &dirs.distcc_dir {
        cmd.env("DISTCC_DIR", d);
    }
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    log::info!("starting the zeroconf browser");
    cmd.spawn()
        .map(drop)
        .map_err(|source| ZeroconfError::Spawn { exe, source })
}

// ---------------------------------------------------------------------------------------
// Browser

/// What the browser knows: resolved services by full name.
#[derive(Default)]
struct Seen {
    services: BTreeMap<String, Entry>,
}

impl Seen {
    /// Apply one event; true when the list changed.
    fn apply(&mut self, event: ServiceEvent) -> bool {
        match event {
            ServiceEvent::ServiceResolved(svc) => match entry_of(&svc) {
                Some(e) => {
                    let name = svc.get_fullname().to_owned();
                    log::info!(
                        "zeroconf: {name} is {}",
                        format_hosts(std::slice::from_ref(&e)).trim()
                    );
                    self.services.insert(name, e.clone()) != Some(e)
                }
                None => false,
            },
            ServiceEvent::ServiceRemoved(_, name) => {
                log::info!("zeroconf: {name} left");
                self.services.remove(&name).is_some()
            }
            _ => false,
        }
    }

    fn entries(&self) -> Vec<Entry> {
        self.services.values().cloned().collect()
    }
}

/// The service type to browse: the subtype of our `cc` (what 3.4 does), or every distcc
/// server when `cc` can't tell its version and target.
fn browse_type(path: Option<&OsStr>) -> String {
    match (cc_says("-dumpversion", path), cc_says("-dumpmachine", path)) {
        (Some(v), Some(m)) => subtype(&v, &m),
        _ => {
            log::warn!("can't get cc's version and target; listing every distcc server");
            SERVICE_TYPE.to_owned()
        }
    }
}

/// The hidden [`BROWSER_APPLET`]: keep `$DISTCC_DIR/zeroconf/hosts` current while clients
/// use it. Exits 0 at once when another browser holds the lock.
pub fn browser_main() -> i32 {
    let (env, problems) = crate::settings::ClientEnv::from_process();
    crate::trace::init(&env.log);
    for p in &problems {
        p.report();
    }
    match run_browser(&env.dirs, env.path.as_deref()) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("zeroconf browser: {e}");
            crate::exitcode::ExitCode::Failed.code()
        }
    }
}

fn run_browser(dirs: &Dirs, path: Option<&OsStr>) -> Result<(), ZeroconfError> {
    let (hosts, lock) = cache_paths(dirs)?;
    let lock_file = open_lock(&lock)?;
    if !try_write_lock(&lock_file).map_err(file_err("can't lock", &lock))? {
        log::debug!("another zeroconf browser runs for {}", lock.display());
        return Ok(());
    }
    write_atomically(&hosts, "")?;
    let started = SystemTime::now();
    let mdns = ServiceDaemon::new().map_err(mdns_err("can't start the responder"))?;
    let ty = browse_type(path);
    log::info!("zeroconf browser running: browsing {ty}");
    let events = mdns.browse(&ty).map_err(mdns_err("can't browse"))?;
    let mut seen = Seen::default();
    let result = loop {
        match events.recv_timeout(Duration::from_secs(1)) {
            Ok(event) => {
                if seen.apply(event)
                    && let Err(e) = write_atomically(&hosts, &format_hosts(&seen.entries()))
                {
                    break Err(e);
                }
            }
            Err(mdns_sd::RecvTimeoutError::Timeout) => {}
            Err(mdns_sd::RecvTimeoutError::Disconnected) => {
                break Err(ZeroconfError::Mdns {
                    what: "browsing",
                    message: "the responder stopped".into(),
                });
            }
        }
        let last_use = std::fs::metadata(&hosts)
            .and_then(|m| m.accessed())
            .unwrap_or(started)
            .max(started);
        if last_use.elapsed().unwrap_or_default() > BROWSER_IDLE {
            log::info!("zeroconf browser unused for {BROWSER_IDLE:?}; exiting");
            break Ok(());
        }
    };
    let _ = mdns.shutdown();
    drop(lock_file);
    result
}

/// Browse every `_distcc._tcp` server for `window` and return what resolved, with its TXT
/// record (for `lsdistcc --zeroconf`), sorted by name.
pub fn browse_for(window: Duration) -> Result<Vec<Found>, ZeroconfError> {
    let mdns = ServiceDaemon::new().map_err(mdns_err("can't start the responder"))?;
    let events = mdns
        .browse(SERVICE_TYPE)
        .map_err(mdns_err("can't browse"))?;
    let deadline = Instant::now() + window;
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(svc)) => {
                if let Some(entry) = entry_of(&svc) {
                    let txt = svc
                        .get_properties()
                        .iter()
                        .map(|p| (p.key().to_owned(), p.val_str().to_owned()))
                        .collect();
                    let name = svc.get_fullname().to_owned();
                    found.insert(name.clone(), Found { name, entry, txt });
                }
            }
            Ok(ServiceEvent::ServiceRemoved(_, name)) => {
                found.remove(&name);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = mdns.shutdown();
    Ok(found.into_values().collect())
}

/// A server seen by [`browse_for`].
#[derive(Debug, Clone)]
pub struct Found {
    /// Its DNS-SD instance name (`distcc@host._distcc._tcp.local.`).
    pub name: String,
    /// Where to reach it.
    entry: Entry,
    /// Its TXT record.
    pub txt: Vec<(String, String)>,
}

impl Found {
    /// Its host-list entry, `addr:port/jobs`.
    pub fn host_spec(&self) -> String {
        format_hosts(std::slice::from_ref(&self.entry))
            .trim_end()
            .to_owned()
    }
}

// ---------------------------------------------------------------------------------------
// Publisher

/// A published `_distcc._tcp` service; unpublished (with a goodbye) when dropped.
pub struct Publisher {
    mdns: ServiceDaemon,
    fullname: String,
}

/// This machine's name, for the instance name and the `.local.` host name.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned();
    if ok && !name.is_empty() {
        name
    } else {
        "localhost".to_owned()
    }
}

/// Publish a server on `port` (`distccd --zeroconf`), asking `cc` on `path` for its version
/// and target. The responder runs on its own thread until the [`Publisher`] is dropped.
pub fn publish(
    port: u16,
    cpus: u32,
    jobs: u32,
    path: Option<&OsStr>,
) -> Result<Publisher, ZeroconfError> {
    let ad = Advert {
        cpus,
        jobs,
        cc_version: cc_says("-dumpversion", path),
        cc_machine: cc_says("-dumpmachine", path),
    };
    let ty = match (&ad.cc_version, &ad.cc_machine) {
        (Some(v), Some(m)) => subtype(v, m),
        _ => {
            log::warn!("can't get cc's version and target; not publishing the DNS-SD subtype");
            SERVICE_TYPE.to_owned()
        }
    };
    let host = hostname();
    // Only the first DNS label: `host.example.com` becomes `host.local.`.
    let short = host.split('.').next().unwrap_or("localhost");
    let instance = format!("distcc@{host}");
    let txt = txt_records(&ad);
    let props: Vec<(&str, &str)> = txt.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let info = ServiceInfo::new(
        &ty,
        &instance,
        &format!("{}.local.", label(short)),
        "",
        port,
        &props[..],
    )
    .map_err(mdns_err("bad service description"))?
    .enable_addr_auto();
    let fullname = info.get_fullname().to_owned();
    let mdns = ServiceDaemon::new().map_err(mdns_err("can't start the responder"))?;
    mdns.register(info).map_err(mdns_err("can't publish"))?;
    log::info!("zeroconf: publishing {fullname} ({ty}) on port {port}");
    Ok(Publisher { mdns, fullname })
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Ok(rx) = self.mdns.unregister(&self.fullname) {
            // Wait briefly for the goodbye packets, so browsers drop us at once.
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
        if let Ok(rx) = self.mdns.shutdown() {
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ad() -> Advert {
        Advert {
            cpus: 8,
            jobs: 10,
            cc_version: Some("12".into()),
            cc_machine: Some("x86_64-linux-gnu".into()),
        }
    }

    #[test]
    fn txt_has_3_4_keys_in_order() {
        let txt = txt_records(&ad());
        let keys: Vec<&str> = txt.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "txtvers",
                "cpus",
                "jobs",
                "distcc",
                "gnuhost",
                "cc_version",
                "cc_machine"
            ]
        );
        let map: HashMap<_, _> = txt.iter().cloned().collect();
        assert_eq!(map["txtvers"], "1");
        assert_eq!(map["cpus"], "8");
        assert_eq!(map["jobs"], "10");
        assert_eq!(map["distcc"], crate::VERSION);
        assert_eq!(map["gnuhost"], crate::host_triple());
        assert_eq!(map["cc_version"], "12");
        assert_eq!(map["cc_machine"], "x86_64-linux-gnu");
        // Without cc, those two keys are left out.
        let bare = txt_records(&Advert {
            cc_version: None,
            cc_machine: None,
            ..ad()
        });
        assert_eq!(bare.len(), 5);
        // Every entry fits a TXT string (key=value under 256 bytes).
        assert!(txt.iter().all(|(k, v)| k.len() + 1 + v.len() < 256));
    }

    #[test]
    fn slots_from_txt() {
        let txt = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
        };
        assert_eq!(jobs_from_txt(txt(&[("jobs", "10"), ("cpus", "8")])), 10);
        assert_eq!(jobs_from_txt(txt(&[("cpus", "8")])), 10);
        assert_eq!(jobs_from_txt(txt(&[("jobs", "0"), ("cpus", "3")])), 5);
        assert_eq!(jobs_from_txt(txt(&[("jobs", "many"), ("cpus", "x")])), 4);
        assert_eq!(jobs_from_txt(txt(&[])), 4);
        // Our own record parses back to what we advertised.
        let ours = txt_records(&ad());
        assert_eq!(
            jobs_from_txt(|k| ours
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())),
            10
        );
    }

    #[test]
    fn subtype_like_3_4() {
        assert_eq!(
            subtype("12", "x86_64-linux-gnu"),
            "_x86-64-linux-gnu--12._sub._distcc._tcp.local."
        );
        assert_eq!(
            subtype("4.2.1 (Apple)", "I686-Apple.darwin"),
            "_i686-apple-darwin--4-2-1--apple-._sub._distcc._tcp.local."
        );
    }

    #[test]
    fn cache_file_is_host_list_syntax() {
        let entries = [
            Entry {
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                port: 3632,
                jobs: 10,
            },
            Entry {
                addr: IpAddr::V6("fd00::2".parse::<Ipv6Addr>().unwrap()),
                port: 4000,
                jobs: 3,
            },
        ];
        let text = format_hosts(&entries);
        assert_eq!(text, "10.0.0.2:3632/10\n[fd00::2]:4000/3\n");
        let list = crate::hosts::parse(&text).unwrap();
        assert_eq!(list.hosts.len(), 2);
        let h = &list.hosts[0];
        assert_eq!(
            h.kind,
            crate::hosts::HostKind::Tcp {
                host: "10.0.0.2".into(),
                port: 3632
            }
        );
        assert_eq!((h.slots, h.lzo, h.cpp, h.protocol), (10, false, false, 1));
        let h = &list.hosts[1];
        assert_eq!(
            h.kind,
            crate::hosts::HostKind::Tcp {
                host: "fd00::2".into(),
                port: 4000
            }
        );
        assert_eq!(h.slots, 3);
        assert_eq!(format_hosts(&[]), "");
    }

    #[test]
    fn address_choice() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            pick_address([
                ip("fe80::1"),
                ip("127.0.0.1"),
                ip("192.168.1.5"),
                ip("fd00::5")
            ]),
            Some(ip("192.168.1.5"))
        );
        assert_eq!(
            pick_address([ip("fe80::1"), ip("fd00::5"), ip("127.0.0.1")]),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            pick_address([ip("fe80::1"), ip("fd00::5")]),
            Some(ip("fd00::5"))
        );
        assert_eq!(pick_address([ip("fe80::1")]), None);
        // Deterministic among equals.
        assert_eq!(
            pick_address([ip("10.0.0.9"), ip("10.0.0.3")]),
            Some(ip("10.0.0.3"))
        );
    }

    #[test]
    fn seen_services_track_removals() {
        let mut seen = Seen::default();
        seen.services.insert(
            "distcc@a._distcc._tcp.local.".into(),
            Entry {
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                port: 3632,
                jobs: 4,
            },
        );
        assert!(!seen.apply(ServiceEvent::ServiceRemoved(
            SERVICE_TYPE.into(),
            "distcc@b._distcc._tcp.local.".into()
        )));
        assert!(seen.apply(ServiceEvent::ServiceRemoved(
            SERVICE_TYPE.into(),
            "distcc@a._distcc._tcp.local.".into()
        )));
        assert!(seen.entries().is_empty());
    }

    #[test]
    fn cached_hosts_reads_the_file_a_running_browser_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs::at(dir.path());
        let (hosts, lock) = cache_paths(&dirs).unwrap();
        let _holder = hold_lock(&lock);
        std::fs::write(&hosts, "10.0.0.2:3632/10\n").unwrap();
        // Make the atime old, then read: the text comes back and the atime is now.
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::open(&hosts)
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_accessed(old))
            .unwrap();
        let (text, path) = cached_hosts(&dirs).unwrap();
        assert_eq!(text, "10.0.0.2:3632/10\n");
        assert_eq!(path, hosts);
        let atime = std::fs::metadata(&hosts).unwrap().accessed().unwrap();
        assert!(atime.elapsed().unwrap() < Duration::from_secs(60));
    }

    /// Play the running browser: another process holds the lock (fcntl locks of our own
    /// process would not conflict). Returns once it does.
    fn hold_lock(lock: &Path) -> KillOnDrop {
        std::fs::write(lock, "").unwrap();
        let holder = Command::new("python3")
            .args([
                "-c",
                "import fcntl,sys,time; f=open(sys.argv[1],'r+'); \
                 fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)",
            ])
            .arg(lock)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut holder = KillOnDrop(holder);
        let mut line = String::new();
        io::BufRead::read_line(
            &mut io::BufReader::new(holder.0.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked");
        holder
    }

    #[test]
    fn plus_zeroconf_in_a_host_list_inserts_the_cached_servers_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs::at(dir.path());
        let (hosts, lock) = cache_paths(&dirs).unwrap();
        let _holder = hold_lock(&lock);
        std::fs::write(&hosts, "10.0.0.2:3632/10\n[fd00::2]:3632/6\n").unwrap();
        let list = crate::hosts::load(Some("a +zeroconf b,lzo"), &dirs, dir.path()).unwrap();
        let specs: Vec<(&str, u32, u8)> = list
            .hosts
            .iter()
            .map(|h| (h.spec.as_str(), h.slots, h.protocol))
            .collect();
        assert_eq!(
            specs,
            [
                ("a", 4, 1),
                ("10.0.0.2:3632/10", 10, 1),
                ("[fd00::2]:3632/6", 6, 1),
                ("b,lzo", 4, 2)
            ]
        );
        // Alone, with nothing found yet, it is "no hosts" (the client compiles locally).
        std::fs::write(&hosts, "").unwrap();
        assert!(matches!(
            crate::hosts::load(Some("+zeroconf"), &dirs, dir.path()),
            Err(crate::hosts::HostsError::NoHosts { .. })
        ));
    }

    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
