//! distccd: the build server (distcc 3.4 `daemon.c`, `dparent.c`, `serve.c`, `access.c`,
//! `stats.c`).
//!
//! One process, one thread running a smol executor: an accept loop hands each connection
//! to a task, a semaphore bounds the compilers running at once (`--jobs`), and each compiler
//! is a child process in its own process group. The applet (`applets/distccd.rs`) parses
//! options into a [`Config`]; [`run`] does the rest.

pub mod acl;
pub mod argv;
pub mod job;
pub mod serve;
pub mod stats;
pub mod tree;
pub mod whitelist;

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use smol::lock::Semaphore;

use crate::connection::Duplex;
use crate::exitcode::ExitCode;
use acl::Acl;
use job::JobSettings;
use serve::Shared;
use stats::Stats;
use whitelist::Policy;

/// Everything `distccd`'s options and environment decide.
#[derive(Debug, Clone)]
pub struct Config {
    pub inetd: bool,
    pub detach: bool,
    pub port: u16,
    pub listen: Option<String>,
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
    pub io_timeout: Duration,
}

/// The default `--jobs`: CPUs + 2.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) + 2
}

/// Run the daemon; returns the exit status.
pub fn run(config: Config) -> i32 {
    if config.nice != 0 {
        // SAFETY: nice(2) has no memory effects.
        unsafe { libc::nice(config.nice) };
    }
    let tmp_dir = job::default_tmp_dir();
    if let Err(e) = std::env::set_current_dir(&tmp_dir) {
        log::warn!("can't chdir to {}: {e}", tmp_dir.display());
    }
    match std::env::var_os("DISTCCD_PATH") {
        Some(p) => log::debug!("DISTCCD_PATH: {}", p.to_string_lossy()),
        None => log::debug!("PATH: {}", std::env::var("PATH").unwrap_or_default()),
    }
    let policy = match Policy::from_env(config.insecure) {
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
    let acl = match Acl::new(&config.allow, config.allow_private) {
        Ok(a) => a,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::BadArguments.code();
        }
    };
    let shared = Shared {
        settings: Arc::new(JobSettings {
            policy,
            tmp_dir: tmp_dir.clone(),
            path: std::env::var_os("DISTCCD_PATH"),
            job_lifetime: config.job_lifetime,
            save_temps: std::env::var("DISTCC_SAVE_TEMPS").is_ok_and(|v| v == "1"),
        }),
        acl,
        slots: Semaphore::new(config.jobs.max(1)),
        io_timeout: config.io_timeout,
        stats: Stats::default(),
    };
    if config.inetd {
        return serve_inetd(config, shared);
    }
    serve_tcp(config, shared, tmp_dir)
}

/// `--inetd`: one job on stdin/stdout (SSH clients run `distccd --inetd`).
fn serve_inetd(config: Config, shared: Shared) -> i32 {
    let peer = stdin_peer();
    if let Some(p) = peer
        && !shared.acl.is_default()
        && !shared.acl.allows(p.ip())
    {
        log::error!(
            "connection from client '{}' denied by access list",
            serve::peer_name(peer)
        );
        return ExitCode::AccessDenied.code();
    }
    drop_privileges(config.user.as_deref());
    let stream = Duplex {
        reader: smol::Unblock::new(std::io::stdin()),
        writer: smol::Unblock::new(std::io::stdout()),
    };
    smol::block_on(serve::serve(&shared, stream, peer));
    0
}

/// The peer of stdin when it is a socket (inetd); None for pipes (ssh).
fn stdin_peer() -> Option<SocketAddr> {
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let sock = socket2::SockRef::from(&fd);
    sock.peer_addr().ok().and_then(|a| a.as_socket())
}

fn bind(config: &Config, port: u16) -> std::io::Result<std::net::TcpListener> {
    let ip: IpAddr = match &config.listen {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(h) => match h.parse() {
            Ok(ip) => ip,
            Err(_) => (h.as_str(), port)
                .to_socket_addrs()?
                .next()
                .map(|a| a.ip())
                .ok_or_else(|| std::io::Error::other(format!("can't resolve {h}")))?,
        },
    };
    let addr = SocketAddr::new(ip, port);
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock.into())
}

fn serve_tcp(config: Config, shared: Shared, tmp_dir: PathBuf) -> i32 {
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
    drop_privileges(config.user.as_deref());
    log::info!(
        "distccd {} started on port {} (protocols 1, 2 and 3)",
        crate::VERSION,
        config.port
    );
    let ex = Rc::new(smol::LocalExecutor::new());
    let shared = Rc::new(shared);
    let result = smol::block_on(ex.run(async {
        let listener = match async_net::TcpListener::try_from(listener) {
            Ok(l) => l,
            Err(e) => {
                log::error!("listener: {e}");
                return ExitCode::BindFailed.code();
            }
        };
        if let Some(l) = stats_listener.and_then(|l| async_net::TcpListener::try_from(l).ok()) {
            ex.spawn(serve::stats_loop(shared.clone(), l, tmp_dir.clone()))
                .detach();
        }
        let accept = async {
            serve::accept_loop(&ex, shared.clone(), listener).await;
            0
        };
        let stop = async {
            let why = wait_for_stop(config.lifetime).await;
            log::info!("{why}: no longer accepting connections");
            // Let running compiles finish, for a while.
            for _ in 0..200 {
                if shared.stats.running() == 0 {
                    break;
                }
                smol::Timer::after(Duration::from_millis(50)).await;
            }
            0
        };
        smol::future::or(accept, stop).await
    }));
    if let Some(p) = &config.pid_file {
        let _ = std::fs::remove_file(p);
    }
    result
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

/// When started as root, become `--user` (default `distcc`, then `nobody`, then 65534).
fn drop_privileges(user: Option<&str>) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if let Some(u) = user {
            log::warn!("--user {u} is ignored: not running as root");
        }
        return;
    }
    let candidates: Vec<&str> = match user {
        Some(u) => vec![u],
        None => vec!["distcc", "nobody"],
    };
    let found = candidates.iter().find_map(|name| lookup_user(name));
    let (uid, gid) = match found {
        Some(ids) => ids,
        None if user.is_some() => {
            log::error!(
                "no such user {:?}; staying as root is not safe, using 65534",
                user
            );
            (65534, 65534)
        }
        None => (65534, 65534),
    };
    if uid == 0 {
        return;
    }
    // SAFETY: plain credential syscalls; failures are logged.
    unsafe {
        let groups = [gid];
        if libc::setgid(gid) != 0
            || libc::setgroups(1, groups.as_ptr()) != 0
            || libc::setuid(uid) != 0
        {
            log::error!(
                "failed to drop privileges: {}",
                std::io::Error::last_os_error()
            );
            return;
        }
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
    log::debug!("running as uid {uid}, gid {gid}");
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
