//! distccd: the build server (distcc 3.4 `daemon.c`, `dparent.c`, `serve.c`, `access.c`,
//! `stats.c`).
//!
//! One process, one thread running a smol executor: an accept loop hands each connection
//! to a task, a semaphore bounds the compilers running at once (`--jobs`), and each compiler
//! is a child process in its own process group. The applet (`applets/distccd.rs`) parses
//! options into a [`Config`]; [`run`] does the rest.

pub(crate) mod acl;
pub(crate) mod argv;
pub(crate) mod job;
mod pool;
mod sandbox;
pub(crate) mod serve;
pub(crate) mod source_check;
pub(crate) mod stats;
pub(crate) mod tree;
pub mod web;
pub(crate) mod whitelist;

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use smol::lock::Semaphore;
use thiserror::Error;

use crate::connection::Duplex;
use crate::exitcode::ExitCode;
use crate::settings::DaemonEnv;
use acl::Acl;
use job::JobSettings;
use serve::Shared;
use stats::Stats;

use crate::trace::DETAIL;
use whitelist::Policy;

/// Everything `distccd`'s options and environment decide.
#[derive(Debug, Clone)]
pub struct Config {
    pub inetd: bool,
    pub detach: bool,
    pub port: u16,
    /// `--listen` addresses; none means every address, IPv6 and IPv4.
    pub listen: Vec<String>,
    pub allow: Vec<String>,
    pub allow_private: bool,
    pub jobs: usize,
    pub nice: i32,
    pub user: Option<String>,
    pub pid_file: Option<PathBuf>,
    pub lifetime: Option<Duration>,
    pub job_lifetime: Option<Duration>,
    pub stats_port: Option<u16>,
    pub insecure: bool,
    /// `--zeroconf`: publish `_distcc._tcp` over mDNS while serving.
    pub zeroconf: bool,
    /// Run compilers in a namespace sandbox where the kernel allows (not `--no-sandbox`).
    pub sandbox: bool,
    /// `--key-dir`: the daemon's key pair, `authorized_keys`, pairing codes.
    pub key_dir: PathBuf,
    /// `--require-auth`: serve only authorised keys over the encrypted channel.
    pub require_auth: bool,
    /// What the environment says (`TMPDIR`, `DISTCCD_PATH`, `DISTCC_CMDLIST`, …).
    pub env: DaemonEnv,
}

/// Descriptors kept back from client connections: the log, listeners, the stats port, and
/// per running job its files and its compiler's pipes.
fn fd_reserve(jobs: usize) -> u64 {
    64 + 8 * jobs as u64
}

/// Raise the soft `RLIMIT_NOFILE` to the hard one (systemd starts services at 1024 soft,
/// far below its hard limit) and say how many client connections fit beside the reserve.
fn connection_limit(jobs: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    let soft = if lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur == 0 {
        65536
    } else {
        lim.rlim_cur
    };
    let n = soft.saturating_sub(fd_reserve(jobs)).clamp(4, 65536);
    log::debug!("up to {n} client connections ({soft} descriptors)");
    n as usize
}

/// The default `--jobs`: CPUs + 2.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) + 2
}

/// Run the daemon; returns the exit status.
pub fn run(config: Config) -> i32 {
    // A panic's message can quote request text: send it through our logger (which
    // escapes it) instead of the default hook's raw multi-line stderr output. A panic in
    // a job is then also logged as a refused job by `serve::guarded`.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        match info.location() {
            Some(l) => log::error!("internal error at {}:{}: {what}", l.file(), l.line()),
            None => log::error!("internal error: {what}"),
        }
    }));
    if config.nice != 0 {
        // SAFETY: nice(2) has no memory effects.
        unsafe { libc::nice(config.nice) };
    }
    let tmp_dir = config.env.tmpdir.clone();
    if let Err(e) = std::env::set_current_dir(&tmp_dir) {
        log::warn!("can't chdir to {}: {e}", tmp_dir.display());
    }
    match &config.env.distccd_path {
        Some(p) => log::debug!("DISTCCD_PATH: {}", p.to_string_lossy()),
        None => log::debug!(
            "PATH: {}",
            config
                .env
                .path
                .as_deref()
                .unwrap_or_default()
                .to_string_lossy()
        ),
    }
    let policy = match Policy::new(&config.env, config.insecure) {
        Ok(p) => p,
        Err(e) => {
            log::error!("can't read DISTCC_CMDLIST: {e}");
            return ExitCode::BadArguments.code();
        }
    };
    if let Some(dirs) = policy.missing_masquerade_dirs() {
        log::error!(
            "{dirs} not found. You must set up masquerade (see distcc-config --update-masquerade) \
             or pass --enable-tcp-insecure"
        );
        return ExitCode::CompilerMissing.code();
    }
    // Decide whom to become before anything forks, so a bad --user stops the daemon with
    // an exit status its starter sees.
    let persona = match choose_persona(&Os, config.user.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::Setuid.code();
        }
    };
    let acl = match Acl::new(&config.allow, config.allow_private) {
        Ok(a) => a,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::BadArguments.code();
        }
    };
    // Before dropping root: the private key stays root's.
    let auth = match open_keys(&config, persona.as_ref()) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let shared = Shared {
        settings: Arc::new(JobSettings {
            policy,
            job_lifetime: config.job_lifetime,
            env: config.env.clone(),
            inventory: Arc::new(whitelist::Inventory::new(&config.env)),
            // `--inetd` serves one job and exits: nothing to keep a dir for.
            trees: Arc::new(pool::Pool::new(if config.inetd { 0 } else { config.jobs })),
        }),
        acl,
        slots: Semaphore::new(config.jobs.max(1)),
        connections: Arc::new(Semaphore::new(connection_limit(config.jobs))),
        budget: crate::connection::Budget::new(serve::LARGE_REQUESTS),
        io_timeout: config.env.io_timeout,
        stats: Stats::new(config.jobs as u64),
        auth,
    };
    if config.inetd {
        return serve_inetd(shared, persona.as_ref(), config.sandbox);
    }
    serve_tcp(config, shared, tmp_dir, persona.as_ref())
}

/// The daemon's key (made on first start) for the encrypted channel with our clients.
/// Without one the daemon serves as before, unless `--require-auth` needs it.
fn open_keys(
    config: &Config,
    persona: Option<&Persona>,
) -> Result<Option<Arc<crate::noise::DaemonAuth>>, i32> {
    let owner = persona.map(|p| (p.uid, p.gid));
    match crate::keys::ServerKeys::open(&config.key_dir, owner) {
        Ok((server, new)) => {
            let fp = server.keys.public.fingerprint();
            if new {
                log::warn!(
                    "made this server's key {fp} in {}",
                    config.key_dir.display()
                );
            } else {
                log::info!(target: DETAIL, "server key {fp}");
            }
            Ok(Some(Arc::new(crate::noise::DaemonAuth {
                server,
                require_auth: config.require_auth,
            })))
        }
        Err(e) if config.require_auth => {
            log::error!("--require-auth needs the server's key: {e}");
            Err(ExitCode::BadArguments.code())
        }
        Err(e) => {
            log::warn!(
                "no server key, so no encrypted channel for our clients: {e} (see --key-dir)"
            );
            Ok(None)
        }
    }
}

/// `--inetd`: one job on stdin/stdout (SSH clients run `distccd --inetd`).
fn serve_inetd(shared: Shared, persona: Option<&Persona>, sandbox: bool) -> i32 {
    let peer = stdin_peer();
    if !inetd_admits(&shared.acl, peer) {
        log::error!(
            "connection from client '{}' denied by access list",
            serve::peer_name(peer)
        );
        return ExitCode::AccessDenied.code();
    }
    if let Err(code) = drop_privileges(persona) {
        return code;
    }
    sandbox::start(sandbox, &shared.settings.env.tmpdir, true);
    let stream = Duplex {
        reader: smol::Unblock::new(std::io::stdin()),
        writer: smol::Unblock::new(std::io::stdout()),
    };
    smol::block_on(serve::serve(&shared, stream, peer));
    0
}

/// May `--inetd` serve the peer on stdin? The same access list as daemon mode, default
/// (loopback only) included — inetd hands us any peer that reached its port. Without a
/// socket peer (ssh: stdin is a pipe) there is no address to check, and ssh has already
/// authenticated the client.
pub(crate) fn inetd_admits(acl: &Acl, peer: Option<SocketAddr>) -> bool {
    peer.is_none_or(|p| acl.allows(p.ip()))
}

/// The peer of stdin when it is a socket (inetd); None for pipes (ssh).
fn stdin_peer() -> Option<SocketAddr> {
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let sock = socket2::SockRef::from(&fd);
    sock.peer_addr().ok().and_then(|a| a.as_socket())
}

/// Listening sockets for `port`: one per `--listen` address, or without any, one
/// dual-stack `[::]` socket (IPv6 and, v4-mapped, IPv4), or `0.0.0.0` where the kernel has
/// no IPv6.
fn bind(config: &Config, port: u16) -> std::io::Result<Vec<std::net::TcpListener>> {
    if config.listen.is_empty() {
        return match listen_on(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)) {
            Ok(l) => Ok(vec![l]),
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                log::info!(target: DETAIL, "no IPv6 here: listening on IPv4 only");
                Ok(vec![listen_on(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    port,
                ))?])
            }
            Err(e) => Err(e),
        };
    }
    let mut listeners = Vec::new();
    for h in &config.listen {
        let host = h.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = match host.parse() {
            Ok(ip) => ip,
            Err(_) => (host, port)
                .to_socket_addrs()?
                .next()
                .map(|a| a.ip())
                .ok_or_else(|| std::io::Error::other(format!("can't resolve --listen {h}")))?,
        };
        listeners.push(
            listen_on(SocketAddr::new(ip, port))
                .map_err(|e| std::io::Error::new(e.kind(), format!("--listen {h}: {e}")))?,
        );
    }
    Ok(listeners)
}

fn listen_on(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `[::]` serves IPv4 clients too (as ::ffff:a.b.c.d, which the ACL matches against
        // its IPv4 rules); a specific IPv6 address only itself.
        sock.set_only_v6(!addr.ip().is_unspecified())?;
    }
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock.into())
}

fn serve_tcp(config: Config, shared: Shared, tmp_dir: PathBuf, persona: Option<&Persona>) -> i32 {
    let listener = match bind(&config, config.port) {
        Ok(l) => l,
        Err(e) => {
            log::error!("failed to bind port {}: {e}", config.port);
            return ExitCode::BindFailed.code();
        }
    };
    let stats_listener = match config.stats_port.map(|p| bind(&config, p)) {
        Some(Err(e)) => {
            log::error!("failed to bind the stats port: {e}");
            return ExitCode::BindFailed.code();
        }
        Some(Ok(l)) => Some(l),
        None => None,
    };
    if shared.acl.is_default() {
        log::warn!(
            "no --allow or --allow-private given: serving loopback clients only \
             (distcc 3.4 would have served everyone)"
        );
    }
    log::info!(
        target: DETAIL,
        "{} CPUs online; allowing up to {} active jobs",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        config.jobs
    );
    if config.detach {
        // Fork before any thread exists: the executor and its helpers start in the child.
        // SAFETY: single-threaded at this point.
        match unsafe { libc::fork() } {
            -1 => {
                log::error!("fork failed: {}", std::io::Error::last_os_error());
                return ExitCode::Failed.code();
            }
            0 => {
                // SAFETY: plain syscalls in the child.
                unsafe { libc::setsid() };
                redirect_stdio_to_null();
            }
            child => {
                write_pid_file(&config, child as u32);
                // SAFETY: leave without running destructors twice.
                unsafe { libc::_exit(0) };
            }
        }
    } else {
        // SAFETY: make ourselves a process group leader, as distccd does.
        unsafe { libc::setpgid(0, 0) };
        write_pid_file(&config, std::process::id());
    }
    if let Err(code) = drop_privileges(persona) {
        if let Some(p) = &config.pid_file {
            let _ = std::fs::remove_file(p);
        }
        return code;
    }
    // As the unprivileged persona that will make the compilers' namespaces.
    sandbox::start(config.sandbox, &tmp_dir, false);
    log::info!(
        target: DETAIL,
        "distccd {} started on port {} (protocols 1, 2 and 3)",
        crate::VERSION,
        config.port
    );
    // Publish only now: bound, detached and unprivileged, so the responder's thread starts
    // in the process that serves, and clients find a port that answers.
    let publisher = config.zeroconf.then(|| publish(&config)).flatten();
    let ex = Rc::new(smol::LocalExecutor::new());
    let shared = Rc::new(shared);
    let result = smol::block_on(ex.run(async {
        let mut accepting = Vec::new();
        for l in listener {
            match async_net::TcpListener::try_from(l) {
                Ok(l) => accepting.push(l),
                Err(e) => {
                    log::error!("listener: {e}");
                    return ExitCode::BindFailed.code();
                }
            }
        }
        for l in stats_listener.into_iter().flatten() {
            if let Ok(l) = async_net::TcpListener::try_from(l) {
                ex.spawn(web::stats_loop(
                    ex.clone(),
                    shared.clone(),
                    l,
                    tmp_dir.clone(),
                ))
                .detach();
            }
        }
        let accept = async {
            let loops: Vec<_> = accepting
                .into_iter()
                .map(|l| ex.spawn(serve::accept_loop(ex.clone(), shared.clone(), l)))
                .collect();
            for l in loops {
                l.await;
            }
            0
        };
        let stop = async {
            let why = wait_for_stop(config.lifetime).await;
            log::info!(target: DETAIL, "{why}: no longer accepting connections");
            // Let running compiles finish, for a while; then end them, never orphan them.
            for _ in 0..200 {
                if shared.stats.running() == 0 {
                    break;
                }
                smol::Timer::after(Duration::from_millis(50)).await;
            }
            let ended = job::end_running_compilers(Duration::from_secs(2)).await;
            if ended > 0 {
                log::warn!("stopped {ended} compiler(s) still running after 10 s");
            }
            0
        };
        smol::future::or(accept, stop).await
    }));
    // Pump job dirs kept for the next job: there is none.
    shared.settings.trees.clear();
    // Say goodbye over mDNS before the port closes for good.
    drop(publisher);
    if let Some(p) = &config.pid_file {
        let _ = std::fs::remove_file(p);
    }
    result
}

/// `--zeroconf`: start publishing; a failure is logged and the daemon serves anyway
/// (3.4 exits instead, but clients that list the host explicitly still need it).
fn publish(config: &Config) -> Option<crate::zeroconf::Publisher> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let path = config
        .env
        .distccd_path
        .as_deref()
        .or(config.env.path.as_deref());
    match crate::zeroconf::publish(
        config.port,
        u32::try_from(cpus).unwrap_or(u32::MAX),
        u32::try_from(config.jobs).unwrap_or(u32::MAX),
        path,
    ) {
        Ok(p) => Some(p),
        Err(e) => {
            log::error!("--zeroconf: {e}; serving without publishing");
            None
        }
    }
}

/// Resolve on SIGTERM/SIGINT/SIGHUP or when `--lifetime` runs out; says which.
async fn wait_for_stop(lifetime: Option<Duration>) -> String {
    use smol::stream::StreamExt;
    let signals = async {
        match async_signal::Signals::new([
            async_signal::Signal::Term,
            async_signal::Signal::Int,
            async_signal::Signal::Hup,
        ]) {
            Ok(mut s) => match s.next().await {
                Some(Ok(sig)) => format!("caught signal {sig:?}"),
                _ => "signal stream ended".to_owned(),
            },
            Err(e) => {
                log::error!("can't watch signals: {e}");
                std::future::pending().await
            }
        }
    };
    let timer = async {
        match lifetime {
            Some(d) => {
                smol::Timer::after(d).await;
                format!("lifetime of {}s expired", d.as_secs())
            }
            None => std::future::pending().await,
        }
    };
    smol::future::or(signals, timer).await
}

fn write_pid_file(config: &Config, pid: u32) {
    if let Some(path) = &config.pid_file
        && let Err(e) = std::fs::write(path, format!("{pid}\n"))
    {
        log::error!("failed to write pid file {}: {e}", path.display());
    }
}

fn redirect_stdio_to_null() {
    // SAFETY: open and dup2 on fds 0-2.
    unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            for target in 0..3 {
                libc::dup2(fd, target);
            }
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}

/// Why the daemon cannot become an unprivileged user. Every one of these stops the daemon
/// with distcc's setuid exit code (112): serving compilers as root, or as a half-dropped
/// user, would hand any client that passes the access list a root shell.
#[derive(Debug, Error)]
pub(crate) enum PrivError {
    #[error("no such user {0:?} (--user): refusing to start rather than run compilers as root")]
    NoSuchUser(String),
    #[error("--user {0} is uid 0: distccd does not run compilers as root")]
    RootUser(String),
    #[error("failed to discard root privileges: {call}({id}) failed: {source}")]
    Call {
        call: &'static str,
        id: u32,
        source: std::io::Error,
    },
    #[error("still have root privileges after trying to discard them: {0}")]
    StillRoot(String),
}

/// The user the daemon becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Persona {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// The credential calls [`become_persona`] makes, behind a trait so that a test can make
/// any one of them fail and see the daemon refuse to go on.
pub(crate) trait Credentials {
    /// Real or effective uid 0.
    fn is_root(&self) -> bool;
    fn lookup(&self, name: &str) -> Option<(libc::uid_t, libc::gid_t)>;
    fn setgid(&mut self, gid: libc::gid_t) -> std::io::Result<()>;
    fn setgroups(&mut self, gid: libc::gid_t) -> std::io::Result<()>;
    fn setuid(&mut self, uid: libc::uid_t) -> std::io::Result<()>;
    /// (real, effective, saved) uids and gids.
    fn ids(&self) -> std::io::Result<([libc::uid_t; 3], [libc::gid_t; 3])>;
    fn no_new_privs(&mut self) -> std::io::Result<()>;
}

/// The real calls.
pub(crate) struct Os;

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Credentials for Os {
    fn is_root(&self) -> bool {
        // SAFETY: getuid and geteuid have no preconditions.
        unsafe { libc::getuid() == 0 || libc::geteuid() == 0 }
    }

    fn lookup(&self, name: &str) -> Option<(libc::uid_t, libc::gid_t)> {
        lookup_user(name)
    }

    fn setgid(&mut self, gid: libc::gid_t) -> std::io::Result<()> {
        // SAFETY: plain credential syscall.
        check(unsafe { libc::setgid(gid) })
    }

    fn setgroups(&mut self, gid: libc::gid_t) -> std::io::Result<()> {
        let groups = [gid];
        // SAFETY: one gid from a live array.
        check(unsafe { libc::setgroups(1, groups.as_ptr()) })
    }

    fn setuid(&mut self, uid: libc::uid_t) -> std::io::Result<()> {
        // SAFETY: plain credential syscall.
        check(unsafe { libc::setuid(uid) })
    }

    fn ids(&self) -> std::io::Result<([libc::uid_t; 3], [libc::gid_t; 3])> {
        let (mut u, mut g) = ([0; 3], [0; 3]);
        // SAFETY: each pointer is to a live local.
        unsafe {
            check(libc::getresuid(&mut u[0], &mut u[1], &mut u[2]))?;
            check(libc::getresgid(&mut g[0], &mut g[1], &mut g[2]))?;
        }
        Ok((u, g))
    }

    fn no_new_privs(&mut self) -> std::io::Result<()> {
        // SAFETY: prctl with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
    }
}

/// The personas tried, in order, when root starts the daemon without `--user`: Gentoo's
/// user, Debian's, then nobody.
const DEFAULT_PERSONAS: &[&str] = &["distcc", "distccd", "nobody"];

/// Whom to become. `None` when not started as root (then there is nothing to drop, and a
/// `--user` is only worth a warning). A `--user` that does not exist or is uid 0 is an error
/// (distcc 3.4 falls back to `nobody` for an unknown user; a typo should not go unnoticed).
pub(crate) fn choose_persona(
    creds: &impl Credentials,
    user: Option<&str>,
) -> Result<Option<Persona>, PrivError> {
    if !creds.is_root() {
        if let Some(u) = user {
            log::warn!("--user {u} is ignored: not running as root");
        }
        return Ok(None);
    }
    let persona = match user {
        Some(name) => {
            let (uid, gid) = creds
                .lookup(name)
                .ok_or_else(|| PrivError::NoSuchUser(name.to_owned()))?;
            Persona {
                name: name.to_owned(),
                uid,
                gid,
            }
        }
        None => DEFAULT_PERSONAS
            .iter()
            .find_map(|name| {
                creds.lookup(name).map(|(uid, gid)| Persona {
                    name: (*name).to_owned(),
                    uid,
                    gid,
                })
            })
            .unwrap_or(Persona {
                name: "65534".to_owned(),
                uid: 65534,
                gid: 65534,
            }),
    };
    if persona.uid == 0 {
        return Err(PrivError::RootUser(persona.name));
    }
    Ok(Some(persona))
}

/// Become `persona` for good: group, supplementary groups, user, then check that no uid
/// is 0 any more, and forbid gaining privileges through exec. Any failure is an error:
/// carrying on would serve as (part) root.
pub(crate) fn become_persona(
    creds: &mut impl Credentials,
    persona: &Persona,
) -> Result<(), PrivError> {
    let call = |call: &'static str, id: u32| move |source| PrivError::Call { call, id, source };
    creds
        .setgid(persona.gid)
        .map_err(call("setgid", persona.gid))?;
    creds
        .setgroups(persona.gid)
        .map_err(call("setgroups", persona.gid))?;
    creds
        .setuid(persona.uid)
        .map_err(call("setuid", persona.uid))?;
    let (uids, gids) = creds
        .ids()
        .map_err(|e| PrivError::StillRoot(format!("can't read our ids: {e}")))?;
    if uids.contains(&0) || gids.iter().any(|g| *g != persona.gid) {
        return Err(PrivError::StillRoot(format!(
            "uids {uids:?}, gids {gids:?}"
        )));
    }
    creds
        .no_new_privs()
        .map_err(call("prctl(PR_SET_NO_NEW_PRIVS)", 1))?;
    log::debug!(
        "running as {} (uid {}, gid {})",
        persona.name,
        persona.uid,
        persona.gid
    );
    Ok(())
}

/// [`become_persona`] for the daemon: the exit status to leave with on failure.
fn drop_privileges(persona: Option<&Persona>) -> Result<(), i32> {
    let Some(p) = persona else {
        return Ok(());
    };
    become_persona(&mut Os, p).map_err(|e| {
        log::error!("{e}");
        ExitCode::Setuid.code()
    })
}

fn lookup_user(name: &str) -> Option<(libc::uid_t, libc::gid_t)> {
    let c = CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer to static storage or null; we copy out at once.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        if pw.is_null() {
            return None;
        }
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fake credentials: `fail` names the call that fails; `stuck` keeps uid 0 after setuid.
    #[derive(Default)]
    struct Fake {
        root: bool,
        fail: Option<&'static str>,
        stuck: bool,
        calls: Vec<&'static str>,
        uid: libc::uid_t,
        gid: libc::gid_t,
        /// When set, the only users that exist (name, uid); else root, distccd, nobody.
        users: Option<Vec<(&'static str, libc::uid_t)>>,
    }

    impl Fake {
        fn step(&mut self, name: &'static str) -> std::io::Result<()> {
            self.calls.push(name);
            if self.fail == Some(name) {
                Err(std::io::Error::from_raw_os_error(libc::EPERM))
            } else {
                Ok(())
            }
        }
    }

    impl Credentials for Fake {
        fn is_root(&self) -> bool {
            self.root
        }
        fn lookup(&self, name: &str) -> Option<(libc::uid_t, libc::gid_t)> {
            if let Some(users) = &self.users {
                return users
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, uid)| (*uid, 65534));
            }
            match name {
                "root" => Some((0, 0)),
                "distccd" => Some((102, 65534)),
                "nobody" => Some((65534, 65534)),
                _ => None,
            }
        }
        fn setgid(&mut self, gid: libc::gid_t) -> std::io::Result<()> {
            self.step("setgid")?;
            self.gid = gid;
            Ok(())
        }
        fn setgroups(&mut self, _: libc::gid_t) -> std::io::Result<()> {
            self.step("setgroups")
        }
        fn setuid(&mut self, uid: libc::uid_t) -> std::io::Result<()> {
            self.step("setuid")?;
            if !self.stuck {
                self.uid = uid;
            }
            Ok(())
        }
        fn ids(&self) -> std::io::Result<([libc::uid_t; 3], [libc::gid_t; 3])> {
            Ok(([self.uid; 3], [self.gid; 3]))
        }
        fn no_new_privs(&mut self) -> std::io::Result<()> {
            self.step("no_new_privs")
        }
    }

    fn root() -> Fake {
        Fake {
            root: true,
            ..Fake::default()
        }
    }

    #[test]
    fn inetd_applies_the_default_access_list() {
        let default = Acl::new(&[], false).unwrap();
        let peer = |s: &str| Some(SocketAddr::new(s.parse().unwrap(), 4000));
        for far in [
            "10.1.2.3",
            "192.168.0.2",
            "fd00::5",
            "2001:db8::1",
            "::ffff:10.1.2.3",
        ] {
            assert!(!inetd_admits(&default, peer(far)), "{far} admitted");
        }
        for near in ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"] {
            assert!(inetd_admits(&default, peer(near)), "{near} refused");
        }
        assert!(inetd_admits(&default, None), "ssh (a pipe) is served");
        let listed = Acl::new(&["10.0.0.0/8".to_owned()], false).unwrap();
        assert!(inetd_admits(&listed, peer("10.1.2.3")));
        assert!(!inetd_admits(&listed, peer("127.0.0.1")));
    }

    #[test]
    fn default_persona_order_is_distcc_distccd_nobody() {
        let with = |users: Vec<(&'static str, libc::uid_t)>| Fake {
            root: true,
            users: Some(users),
            ..Fake::default()
        };
        let pick = |f: Fake| {
            choose_persona(&f, None)
                .unwrap()
                .map(|p| (p.name, p.uid))
                .unwrap()
        };
        let all = vec![("nobody", 65534), ("distccd", 102), ("distcc", 101)];
        assert_eq!(
            pick(with(all)),
            ("distcc".to_owned(), 101),
            "Gentoo's first"
        );
        let debian = vec![("nobody", 65534), ("distccd", 102)];
        assert_eq!(
            pick(with(debian)),
            ("distccd".to_owned(), 102),
            "then Debian's"
        );
        assert_eq!(pick(with(vec![("nobody", 65534)])).0, "nobody");
        assert_eq!(
            pick(with(vec![])).1,
            65534,
            "uid 65534 when nobody is missing"
        );
    }

    #[test]
    fn personas() {
        let p = choose_persona(&root(), None).unwrap().unwrap();
        assert_eq!((p.name.as_str(), p.uid), ("distccd", 102));
        let p = choose_persona(&root(), Some("nobody")).unwrap().unwrap();
        assert_eq!(p.uid, 65534);
        assert!(matches!(
            choose_persona(&root(), Some("root")),
            Err(PrivError::RootUser(_))
        ));
        assert!(matches!(
            choose_persona(&root(), Some("nosuch")),
            Err(PrivError::NoSuchUser(_))
        ));
        assert_eq!(
            choose_persona(&Fake::default(), Some("root")).unwrap(),
            None
        );
    }

    #[test]
    fn every_failed_step_is_an_error() {
        let persona = choose_persona(&root(), None).unwrap().unwrap();
        let mut ok = root();
        become_persona(&mut ok, &persona).unwrap();
        assert_eq!(ok.calls, ["setgid", "setgroups", "setuid", "no_new_privs"]);
        for step in ["setgid", "setgroups", "setuid", "no_new_privs"] {
            let mut f = Fake {
                fail: Some(step),
                ..root()
            };
            let e = become_persona(&mut f, &persona).unwrap_err();
            assert!(
                matches!(e, PrivError::Call { call, .. } if call.starts_with(step) || step == "no_new_privs"),
                "{step}: {e}"
            );
            assert_eq!(f.calls.last(), Some(&step), "stopped at the failure");
        }
        let mut stuck = Fake {
            stuck: true,
            ..root()
        };
        assert!(matches!(
            become_persona(&mut stuck, &persona),
            Err(PrivError::StillRoot(_))
        ));
    }
}
