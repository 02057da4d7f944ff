//! The `distccd` applet: options as distcc 3.4's distccd takes them, then
//! [`distcc::daemon::run`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;
use distcc::daemon::{self, Config};
use distcc::exitcode::ExitCode;
use distcc::settings::{DaemonEnv, ProcessEnv};
use distcc::trace::{self, Destination, LogConfig};

/// distccd — the distcc build server.
#[derive(FromArgs, Debug, Default)]
struct Options {
    /// serve on a TCP port (the default when stdin is not a socket)
    #[argh(switch)]
    daemon: bool,
    /// serve one job on stdin/stdout (inetd, or ssh clients)
    #[argh(switch)]
    inetd: bool,
    /// stay in the foreground (still writes the pid file)
    #[argh(switch)]
    no_detach: bool,
    /// accepted for compatibility (one process serves every job)
    #[argh(switch)]
    no_fork: bool,
    /// accepted for compatibility
    #[argh(switch)]
    no_fifo: bool,
    /// TCP port to listen on (3632)
    #[argh(option, short = 'p')]
    port: Option<String>,
    /// address to listen on, repeatable (default: all, IPv6 and IPv4)
    #[argh(option)]
    listen: Vec<String>,
    /// allow clients from ADDR[/BITS] (repeatable)
    #[argh(option, short = 'a')]
    allow: Vec<String>,
    /// allow the private networks, loopback included
    #[argh(switch)]
    allow_private: bool,
    /// most compilers at once (CPUs + 2)
    #[argh(option, short = 'j')]
    jobs: Option<String>,
    /// niceness of compilers (5)
    #[argh(option, short = 'N')]
    nice: Option<String>,
    /// user to run as when started as root (distcc, else distccd, else nobody; never root)
    #[argh(option)]
    user: Option<String>,
    /// write the daemon's pid here
    #[argh(option, short = 'P')]
    pid_file: Option<PathBuf>,
    /// log to this file (default: syslog)
    #[argh(option)]
    log_file: Option<PathBuf>,
    /// log to stderr
    #[argh(switch)]
    log_stderr: bool,
    /// emerg, alert, crit, err, warning, notice, info or debug (notice)
    #[argh(option)]
    log_level: Option<String>,
    /// log everything (debug)
    #[argh(switch)]
    verbose: bool,
    /// the same as --daemon --no-detach --log-stderr --verbose
    #[argh(switch, short = 'W')]
    wizard: bool,
    /// exit after this many seconds
    #[argh(option)]
    lifetime: Option<String>,
    /// kill a compile after this many seconds (0: never)
    #[argh(option)]
    job_lifetime: Option<String>,
    /// serve distcc's statistics page
    #[argh(switch)]
    stats: bool,
    /// port of the statistics page (3633)
    #[argh(option)]
    stats_port: Option<String>,
    /// run any compiler a client names (dangerous)
    #[argh(switch)]
    enable_tcp_insecure: bool,
    /// the same as --enable-tcp-insecure
    #[argh(switch)]
    make_me_a_botnet: bool,
    /// publish this server over mDNS/DNS-SD (`_distcc._tcp`)
    #[argh(switch)]
    zeroconf: bool,
    /// run compilers without the namespace sandbox
    #[argh(switch)]
    no_sandbox: bool,
    /// where the daemon's key pair, authorized_keys and pairing codes live (/etc/distcc)
    #[argh(option)]
    key_dir: Option<PathBuf>,
    /// serve only clients whose key is in authorized_keys, over the encrypted channel
    #[argh(switch)]
    require_auth: bool,
    /// print a one-time pairing code for `distcc-config --pair`, then exit
    #[argh(switch)]
    pairing_code: bool,
    /// how long a pairing code stays valid, in minutes (10)
    #[argh(option)]
    pairing_minutes: Option<String>,
    /// print the version
    #[argh(switch)]
    version: bool,
    /// GSS-API authentication in distcc 3.4: refused here (see `gssapi_refusal`)
    #[argh(switch)]
    auth: bool,
    /// GSS-API principals to refuse, in distcc 3.4: refused here
    #[argh(option)]
    blacklist: Option<String>,
    /// GSS-API principals to allow, in distcc 3.4: refused here
    #[argh(option)]
    whitelist: Option<String>,
}

/// distcc 3.4's GSS-API options (`--auth`, `--blacklist FILE`, `--whitelist FILE`) name a
/// security feature this build lacks. Starting without it would serve clients the operator
/// meant to keep out, so the daemon refuses to start and says what restricts clients here.
fn gssapi_refusal(o: &Options) -> Option<String> {
    let opt = if o.auth {
        "--auth"
    } else if o.blacklist.is_some() {
        "--blacklist"
    } else if o.whitelist.is_some() {
        "--whitelist"
    } else {
        return None;
    };
    Some(format!(
        "{opt}: GSS-API authentication is not supported by this distccd; restrict clients \
         with --allow ADDR[/BITS] and compilers with the /usr/lib/distcc whitelist \
         (key-based client authentication is planned)"
    ))
}

const USAGE: &str = "Usage:
   distccd [OPTIONS]

Options:
    --help                     explain usage and exit
    --version                  show version and exit
    -P, --pid-file FILE        save daemon process id to file
    -N, --nice LEVEL           lower priority, 20=most nice (default 5)
    --user USER                if run by root, change to this persona (default distcc,
                               then distccd, then nobody; root or an unknown user: exit 112)
    --jobs, -j LIMIT           maximum tasks at any time (default CPUs+2)
    --job-lifetime SECONDS     maximum lifetime of a compile request
  Networking:
    -p, --port PORT            TCP port to listen on (default 3632)
    --listen ADDRESS           IP address to listen on (repeatable; default: every
                               address, IPv6 and IPv4 on one dual-stack socket)
    -a, --allow IP[/BITS]      client address access control
    --allow-private            allow RFC 1918 and loopback addresses
                               (without --allow or --allow-private only loopback
                               clients are served; distcc 3.4 served everyone)
    --stats                    serve statistics over HTTP: 3.4's page (/stats), /metrics
                               (Prometheus), /status.json, and a live page at / for browsers
    --stats-port PORT          port of the statistics pages (default 3633; obeys --allow)
    --zeroconf                 publish this server over mDNS/DNS-SD (_distcc._tcp)
    --auth, --blacklist=FILE, --whitelist=FILE
                               distcc 3.4's GSS-API options: not supported, the
                               daemon refuses to start (use --allow)
  Debug and trace:
    --log-level=LEVEL          set detail level for log file
      levels: critical, error, warning, notice (job summaries),
      info (and per-job detail), debug
    --verbose                  set log level to \"debug\"
    --no-detach                don't detach from parent (for daemontools, etc)
    --log-file=FILE            send messages here instead of syslog
    --log-stderr               send messages to stderr
    --wizard                   for running under gdb
  Mode of operation:
    --inetd                    serve client connected to stdin
    --daemon                   bind and listen on socket
    --enable-tcp-insecure      run any compiler a client names (no whitelist)
    --no-sandbox               run compilers without their namespace sandbox
                               (own user, mount and network namespaces: no network,
                               system read-only, only the job's dir writable)
  Keys (ours; our clients only, distcc 3.4 peers stay plain):
    --key-dir DIR              the daemon's key pair, authorized_keys and pairing
                               codes (default /etc/distcc, or DISTCCD_KEY_DIR); the
                               key is made on first start
    --require-auth             serve only clients whose key is in authorized_keys,
                               over the encrypted channel; others are refused
    --pairing-code             print a one-time code for a client's
                               distcc-config --pair HOST --code CODE, then exit
    --pairing-minutes N        how long that code is valid (default 10)

distccd runs either from inetd or as a standalone daemon to compile files
submitted by the distcc client.

Only compilers that are links in /usr/lib/distcc (the masquerade dir that
distcc-config --update-masquerade maintains) or listed in DISTCC_CMDLIST run.
Options that run a program, write a file other than the object or read a
server file (-wrapper, -B, -specs, -fplugin, @file, -save-temps, -include, ...)
are refused, and where the kernel has Landlock compilers may read only the
system, their PATH, the masquerade dirs, CCACHE_DIR and their job's dir.

Environment: DISTCCD_PATH (PATH for compilers), DISTCC_CMDLIST,
DISTCC_CMDLIST_NUMWORDS, DISTCC_SAVE_TEMPS, TMPDIR, DISTCC_IO_TIMEOUT,
DISTCCD_MASQUERADE_DIRS (ours: colon-separated whitelist dirs instead of
/usr/lib/distcc and /usr/local/lib/distcc), DISTCCD_READ_DIRS (ours: more
dirs compilers may read, e.g. a toolchain kept elsewhere) and
DISTCCD_ACCEPT_OTHER_BUILDS=1 (ours: serve the client's compiler version when this
host's is another build of it, e.g. each Gentoo host's own gcc).
";

/// Options that take a value, for normalising `--opt=value` and `-j4`.
const VALUED_LONG: &[&str] = &[
    "--port",
    "--listen",
    "--allow",
    "--jobs",
    "--nice",
    "--user",
    "--pid-file",
    "--log-file",
    "--log-level",
    "--lifetime",
    "--job-lifetime",
    "--stats-port",
    "--blacklist",
    "--whitelist",
    "--key-dir",
    "--pairing-minutes",
];
const VALUED_SHORT: &[&str] = &["-p", "-a", "-j", "-N", "-P"];
const SWITCHES: &[&str] = &[
    "--daemon",
    "--inetd",
    "--no-detach",
    "--no-fork",
    "--no-fifo",
    "--allow-private",
    "--log-stderr",
    "--verbose",
    "--wizard",
    "-W",
    "--stats",
    "--enable-tcp-insecure",
    "--make-me-a-botnet",
    "--zeroconf",
    "--no-sandbox",
    "--require-auth",
    "--pairing-code",
    "--version",
    "--help",
    "--auth",
];

/// popt-style argv → argh-style argv: `--x=y` → `--x y`, `-j4` → `-j 4`. Unknown options
/// are reported the way distccd does.
fn normalise(args: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some((name, value)) = a.split_once('=')
            && VALUED_LONG.contains(&name)
        {
            out.push(name.to_owned());
            out.push(value.to_owned());
        } else if VALUED_LONG.contains(&a.as_str()) || VALUED_SHORT.contains(&a.as_str()) {
            out.push(a.clone());
            out.push(
                it.next()
                    .ok_or_else(|| format!("{a}: missing argument"))?
                    .clone(),
            );
        } else if SWITCHES.contains(&a.as_str()) {
            out.push(a.clone());
        } else if let Some(short) = VALUED_SHORT.iter().find(|s| a.starts_with(*s)) {
            out.push((*short).to_owned());
            out.push(a[short.len()..].to_owned());
        } else if a.starts_with('-') {
            return Err(format!("{a}: unknown option"));
        } else {
            return Err(format!("{a}: unexpected argument"));
        }
    }
    Ok(last_wins(out))
}

/// popt lets a later `--port 1` override an earlier `--port 2` (conf.d files build
/// DISTCCD_OPTS up line by line); argh refuses duplicates. Keep the last of each valued
/// option except the repeatable `--allow`.
fn last_wins(args: Vec<String>) -> Vec<String> {
    let long = |a: &str| -> String {
        match a {
            "-p" => "--port",
            "-j" => "--jobs",
            "-N" => "--nice",
            "-P" => "--pid-file",
            "-a" => "--allow",
            other => other,
        }
        .to_owned()
    };
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let name = long(&a);
        if VALUED_LONG.contains(&name.as_str()) {
            let value = it.next();
            if name != "--allow" {
                pairs.retain(|(n, _)| *n != name);
            }
            pairs.push((name, value));
        } else if !pairs.iter().any(|(n, _)| *n == name) {
            pairs.push((name, None));
        }
    }
    pairs
        .into_iter()
        .flat_map(|(n, v)| std::iter::once(n).chain(v))
        .collect()
}

fn number<T: std::str::FromStr>(opt: &str, v: &Option<String>) -> Result<Option<T>, String> {
    match v {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| format!("{opt}: bad number {s:?}")),
    }
}

fn config(o: &Options, env: DaemonEnv) -> Result<Config, String> {
    if let Some(msg) = gssapi_refusal(o) {
        return Err(msg);
    }
    let port = number::<u64>("--port", &o.port)?.unwrap_or(u64::from(distcc::DEFAULT_PORT));
    if port == 0 || port > 65535 {
        return Err("port number out of range".into());
    }
    let jobs = number::<usize>("--jobs", &o.jobs)?.unwrap_or_else(daemon::default_jobs);
    if jobs == 0 {
        return Err("--jobs argument must be more than 0".into());
    }
    let stats_port = number::<u16>("--stats-port", &o.stats_port)?.unwrap_or(3633);
    let job_lifetime = number::<u64>("--job-lifetime", &o.job_lifetime)?
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    let lifetime = number::<u64>("--lifetime", &o.lifetime)?
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    // Neither --daemon nor --inetd: a socket on stdin means inetd.
    let inetd = o.inetd || (!o.daemon && !o.wizard && stdin_is_socket());
    Ok(Config {
        inetd,
        detach: !(o.no_detach || o.wizard),
        port: port as u16,
        listen: o.listen.clone(),
        allow: o.allow.clone(),
        allow_private: o.allow_private,
        jobs,
        nice: number::<i32>("--nice", &o.nice)?.unwrap_or(5),
        user: o.user.clone(),
        pid_file: o.pid_file.clone(),
        lifetime,
        job_lifetime,
        stats_port: o.stats.then_some(stats_port),
        insecure: o.enable_tcp_insecure || o.make_me_a_botnet,
        zeroconf: o.zeroconf,
        sandbox: !o.no_sandbox,
        key_dir: key_dir(o, &env),
        require_auth: o.require_auth,
        env,
    })
}

/// `--key-dir`, else `DISTCCD_KEY_DIR`, else `/etc/distcc`.
fn key_dir(o: &Options, env: &DaemonEnv) -> PathBuf {
    o.key_dir
        .clone()
        .or_else(|| env.key_dir.clone())
        .unwrap_or_else(|| PathBuf::from(distcc::keys::DEFAULT_SERVER_DIR))
}

/// `--pairing-code`: make a one-time code (and the daemon's key, if it has none yet) and
/// say what the client's user types. The code file is handed to whoever owns the pairing
/// dir, which a running root daemon gave to its persona.
fn pairing_code(o: &Options, env: &DaemonEnv) -> Result<(), String> {
    let minutes = number::<u64>("--pairing-minutes", &o.pairing_minutes)?.unwrap_or(10);
    if minutes == 0 {
        return Err("--pairing-minutes must be more than 0".into());
    }
    let dir = key_dir(o, env);
    let (server, _) =
        distcc::keys::ServerKeys::open(&dir, None).map_err(|e| format!("--pairing-code: {e}"))?;
    let code = distcc::keys::create_pairing_code(&dir, Duration::from_secs(minutes * 60))
        .map_err(|e| format!("--pairing-code: {e}"))?;
    println!("Pairing code: {code}  (valid {minutes} minutes, once)");
    println!("This server's key: {}", server.keys.public.fingerprint());
    println!("On the client, run:  distcc-config --pair THIS-HOST --code {code}");
    println!("and check that it shows the key above before answering yes.");
    Ok(())
}

fn stdin_is_socket() -> bool {
    // SAFETY: fstat on fd 0 into a zeroed struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(0, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}

fn log_config(o: &Options) -> Result<LogConfig, String> {
    // distccd's default, notice: job summaries, warnings and errors.
    let notice = trace::Verbosity {
        level: log::LevelFilter::Info,
        detail: false,
    };
    let mut verbosity = match &o.log_level {
        Some(l) => match trace::parse_level(l) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("distccd: Warning: {e}");
                notice
            }
        },
        None => notice,
    };
    if o.verbose || o.wizard {
        verbosity = trace::Verbosity {
            level: log::LevelFilter::Debug,
            detail: true,
        };
    }
    let destination = if o.log_stderr || o.wizard {
        Destination::Stderr
    } else if let Some(f) = &o.log_file {
        Destination::File(f.clone())
    } else {
        Destination::Syslog
    };
    Ok(LogConfig {
        program: "distccd",
        level: verbosity.level,
        detail: verbosity.detail,
        destination,
    })
}

/// Entry point; returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let args = crate::text_args(&args);
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}{USAGE}", distcc::version_text("distccd"));
        return 0;
    }
    let fail = |msg: String| {
        eprintln!("distccd: ERROR: {msg}");
        ExitCode::BadArguments.code()
    };
    let normal = match normalise(&args) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let refs: Vec<&str> = normal.iter().map(String::as_str).collect();
    let opts = match Options::from_args(&["distccd"], &refs) {
        Ok(o) => o,
        Err(e) => return fail(e.output.trim().to_owned()),
    };
    if opts.version {
        print!("{}", distcc::version_text("distccd"));
        return 0;
    }
    let (env, problems) = DaemonEnv::from_env(&ProcessEnv);
    if let Some(p) = problems.iter().find(|p| p.fatal) {
        return fail(p.to_string());
    }
    if opts.pairing_code {
        return match pairing_code(&opts, &env) {
            Ok(()) => 0,
            Err(e) => fail(e),
        };
    }
    let config = match config(&opts, env) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match log_config(&opts) {
        Ok(l) => trace::init(&l),
        Err(e) => return fail(e),
    }
    for p in &problems {
        p.report();
    }
    if opts.no_fork || opts.no_fifo {
        log::debug!("--no-fork/--no-fifo: accepted; one process serves every job anyway");
    }
    daemon::run(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn parse(v: &[&str]) -> Result<Config, String> {
        let n = normalise(&s(v))?;
        let refs: Vec<&str> = n.iter().map(String::as_str).collect();
        let o = Options::from_args(&["distccd"], &refs).map_err(|e| e.output)?;
        config(&o, DaemonEnv::default())
    }

    #[test]
    fn popt_forms_are_accepted() {
        let c = parse(&[
            "--daemon",
            "--port=4000",
            "-j4",
            "-N",
            "15",
            "--allow",
            "10.0.0.0/8",
            "-a192.168.0.0/24",
            "--log-level=critical",
            "--no-detach",
        ])
        .unwrap();
        assert_eq!(c.port, 4000);
        assert_eq!(c.jobs, 4);
        assert_eq!(c.nice, 15);
        assert_eq!(c.allow, s(&["10.0.0.0/8", "192.168.0.0/24"]));
        assert!(!c.detach);
        assert!(!c.inetd);
    }

    #[test]
    fn defaults() {
        let c = parse(&["--daemon"]).unwrap();
        assert_eq!(c.port, 3632);
        assert_eq!(c.nice, 5);
        assert_eq!(c.jobs, daemon::default_jobs());
        assert!(c.detach);
        assert_eq!(c.stats_port, None);
        assert_eq!(
            parse(&["--daemon", "--stats"]).unwrap().stats_port,
            Some(3633)
        );
    }

    #[test]
    fn later_values_win_like_popt() {
        let c = parse(&[
            "--port",
            "1234",
            "--allow",
            "10.0.0.1",
            "-p",
            "4321",
            "--allow=10.0.0.2",
            "--log-stderr",
            "--log-stderr",
        ])
        .unwrap();
        assert_eq!(c.port, 4321);
        assert_eq!(c.allow, s(&["10.0.0.1", "10.0.0.2"]));
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(
            normalise(&s(&["--bogus"])).unwrap_err(),
            "--bogus: unknown option"
        );
        assert_eq!(
            parse(&["--port", "80000"]).unwrap_err(),
            "port number out of range"
        );
        assert!(parse(&["--jobs", "0"]).is_err());
        assert!(parse(&["--jobs", "many"]).is_err());
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["stray"]).is_err());
    }

    #[test]
    fn gssapi_options_are_refused_with_advice() {
        for argv in [
            &["--auth"][..],
            &["--blacklist", "/etc/distcc/deny"],
            &["--whitelist=/etc/distcc/principals"],
        ] {
            let e = parse(argv).unwrap_err();
            assert!(e.starts_with(argv[0].split('=').next().unwrap()), "{e}");
            assert!(e.contains("--allow") && e.contains("whitelist"), "{e}");
        }
    }
}
