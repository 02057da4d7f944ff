//! Every environment variable distcc reads — its parser, its default and what it means — in
//! this one file. Each applet reads its environment once, at start, into its own typed
//! struct ([`ClientEnv`], [`DaemonEnv`], [`PumpEnv`], [`ConfigEnv`], and the [`Dirs`] they
//! share) and passes it down; no other module calls `std::env::var`. To find where a
//! variable is interpreted, search for its name here.
//!
//! A value that cannot be understood is never silently ignored: it becomes a [`Problem`]
//! naming the variable, which the applet logs once its logging is set up (a warning when a
//! default is used instead, an error that stops the applet when distcc 3.4 stops too).
//!
//! Reading goes through [`Env`], so tests pass a `HashMap` instead of touching the real
//! environment.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use log::LevelFilter;

use crate::client::socks::Proxy;
use crate::trace::{Destination, LogConfig};

/// A source of environment variables: [`ProcessEnv`] (the real environment) or a
/// `HashMap<String, String>` (explicit values, for tests).
pub trait Env {
    /// The value of `name`, or `None` when it is unset.
    fn var_os(&self, name: &str) -> Option<OsString>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var_os(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }
}

impl Env for HashMap<String, String> {
    fn var_os(&self, name: &str) -> Option<OsString> {
        self.get(name).map(OsString::from)
    }
}

/// A variable whose value could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} {message}")]
pub struct Problem {
    /// The variable's name.
    pub var: &'static str,
    /// Its value, as text.
    pub value: String,
    /// What is wrong and what was done instead.
    pub message: String,
    /// The applet must stop (distcc 3.4 stops here too); otherwise it is a warning.
    pub fatal: bool,
}

impl Problem {
    /// Log it: an error when fatal, else a warning. Returns whether it was fatal.
    pub fn report(&self) -> bool {
        if self.fatal {
            log::error!("{self}");
        } else {
            log::warn!("{self}");
        }
        self.fatal
    }
}

/// Reads variables from one [`Env`] and collects what could not be used.
struct Reader<'a> {
    env: &'a dyn Env,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    fn new(env: &'a dyn Env) -> Reader<'a> {
        Reader {
            env,
            problems: Vec::new(),
        }
    }

    fn raw(&self, var: &str) -> Option<OsString> {
        self.env.var_os(var)
    }

    /// Set at all, to any value (distcc's `getenv(…) != NULL` tests).
    fn is_set(&self, var: &str) -> bool {
        self.raw(var).is_some()
    }

    /// Set and not empty.
    fn non_empty(&self, var: &str) -> Option<OsString> {
        self.raw(var).filter(|v| !v.is_empty())
    }

    fn path(&self, var: &str) -> Option<PathBuf> {
        self.non_empty(var).map(PathBuf::from)
    }

    /// A colon-separated list of absolute directories (relative entries are dropped: they
    /// would mean a different place in every working directory).
    fn dir_list(&self, var: &str) -> Vec<PathBuf> {
        self.non_empty(var)
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| p.is_absolute())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn text(&self, var: &str) -> Option<String> {
        self.raw(var).map(|v| v.to_string_lossy().into_owned())
    }

    /// `1` (surrounding blanks allowed) means yes; anything else, or unset, no.
    fn is_one(&self, var: &str) -> bool {
        self.text(var).is_some_and(|v| v.trim() == "1")
    }

    /// A whole number at least `min`; `default` when unset. A bad value is a problem
    /// (`fatal` decides which kind) and gives `default`.
    fn number(&mut self, var: &'static str, default: u64, min: u64, fatal: bool) -> u64 {
        let Some(value) = self.text(var) else {
            return default;
        };
        match value.trim().parse::<u64>() {
            Ok(n) if n >= min => n,
            _ => {
                let message = if fatal {
                    format!("must be a whole number ≥ {min}")
                } else {
                    format!("is not a whole number ≥ {min}; using {default}")
                };
                self.problems.push(Problem {
                    var,
                    value,
                    message,
                    fatal,
                });
                default
            }
        }
    }

    fn problem(&mut self, var: &'static str, message: String) {
        let value = self.text(var).unwrap_or_default();
        self.problems.push(Problem {
            var,
            value,
            message,
            fatal: false,
        });
    }
}

/// Where distcc keeps its files, shared by every applet that locks, logs state or reads a
/// host list (see [`crate::temp`] for what lives where).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dirs {
    /// `DISTCC_DIR`, when set and not empty (created on demand, see [`crate::temp`]).
    pub distcc_dir: Option<PathBuf>,
    /// `HOME`: the default distcc dir is `$HOME/.distcc`.
    pub home: Option<PathBuf>,
    /// `TMPDIR`, when set and not empty (else `/tmp`).
    pub tmpdir: Option<PathBuf>,
}

impl Dirs {
    fn read(r: &Reader) -> Dirs {
        Dirs {
            distcc_dir: r.path("DISTCC_DIR"),
            home: r.path("HOME"),
            tmpdir: r.path("TMPDIR"),
        }
    }

    /// From the real environment.
    pub fn from_process() -> Dirs {
        Dirs::read(&Reader::new(&ProcessEnv))
    }

    /// Explicit directories (tests): `DISTCC_DIR` set, no `HOME`, `TMPDIR` default.
    #[cfg(test)]
    pub(crate) fn at(distcc_dir: &std::path::Path) -> Dirs {
        Dirs {
            distcc_dir: Some(distcc_dir.to_path_buf()),
            ..Dirs::default()
        }
    }

    /// `TMPDIR` or `/tmp`, unchecked.
    pub fn tmp(&self) -> PathBuf {
        self.tmpdir.clone().unwrap_or_else(|| PathBuf::from("/tmp"))
    }
}

/// Default `DISTCC_BACKOFF_PERIOD`.
pub(crate) const DEFAULT_BACKOFF_PERIOD: Duration = Duration::from_secs(60);
/// Default `DISTCC_PAUSE_TIME_MSEC`.
pub(crate) const DEFAULT_PAUSE: Duration = Duration::from_millis(1000);
/// The shortest pause between re-checks we accept: `DISTCC_PAUSE_TIME_MSEC=0` meant
/// busy-looping in 3.4.
pub(crate) const MIN_PAUSE: Duration = Duration::from_millis(10);
/// Default `DISTCC_IO_TIMEOUT`: distcc 3.4's 300 s.
pub(crate) const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(300);
/// The recursion-guard variable, passed (plus one) to every compiler and cpp we start.
pub(crate) const SAFEGUARD_VAR: &str = "_DISTCC_SAFEGUARD";
/// Variables that change what the preprocessor reads or writes behind the command line's
/// back; pump mode can't see their effect, so any of them makes a job use plain mode.
pub(crate) const PUMP_BLOCKERS: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "DEPENDENCIES_OUTPUT",
    "SUNPRO_DEPENDENCIES",
];

/// `_DISTCC_SAFEGUARD` as distcc reads it: atoi, and 1 when set but not a number.
fn safeguard_level(r: &Reader) -> u32 {
    r.text(SAFEGUARD_VAR)
        .map(|v| v.trim().parse::<u32>().unwrap_or(1))
        .unwrap_or(0)
}

fn seconds(
    r: &mut Reader,
    var: &'static str,
    default: Duration,
    min: u64,
    fatal: bool,
) -> Duration {
    Duration::from_secs(r.number(var, default.as_secs(), min, fatal))
}

fn io_timeout(r: &mut Reader) -> Duration {
    // distcc 3.4 exits 101 on a bad value; so do we.
    seconds(r, "DISTCC_IO_TIMEOUT", DEFAULT_IO_TIMEOUT, 1, true)
}

/// `DISTCC_SAVE_TEMPS=1`: keep temporary files (client: the preprocessed source; daemon:
/// the job directory) for debugging.
fn save_temps(r: &Reader) -> bool {
    r.is_one("DISTCC_SAVE_TEMPS")
}

/// `DISTCC_MAX_DISCREPANCY`: pump-mode failures tolerated before a build falls back to
/// plain mode; at least 1, default 1.
fn max_discrepancy(r: &mut Reader) -> u64 {
    r.number("DISTCC_MAX_DISCREPANCY", 1, 1, false)
}

/// `DISTCC_BUILD_ID`, when set and not empty.
fn build_id(r: &Reader) -> Option<String> {
    r.text("DISTCC_BUILD_ID").filter(|v| !v.trim().is_empty())
}

/// `DISTCC_DIRECTIVES_ONLY`: when the client preprocesses keeping macros (gcc's
/// `-fdirectives-only`, clang's `-frewrite-includes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum DirectivesOnly {
    /// Unset (or any other value): for a host whose memo says it compiles such a source
    /// right ([`crate::ext::offers_directives_only`],
    /// [`crate::ext::offers_rewrite_includes`]), else a full `-E`.
    #[default]
    Auto,
    /// `1`: for every host, as before hosts could say (one that can't compile such a
    /// source fails the job, which is then compiled here).
    Always,
    /// `0`: never; every job sends a fully preprocessed source, as distcc 3.4 does.
    Never,
}

impl DirectivesOnly {
    fn from_value(value: Option<String>) -> DirectivesOnly {
        match value.as_deref().map(str::trim) {
            Some("1") => DirectivesOnly::Always,
            Some("0") => DirectivesOnly::Never,
            _ => DirectivesOnly::Auto,
        }
    }
}

/// The client (`distcc`, and distcc masquerading as a compiler).
#[derive(Debug, Clone)]
pub(crate) struct ClientEnv {
    pub dirs: Dirs,
    /// `DISTCC_VERBOSE=1` → debug; `DISTCC_LOG=FILE` → that file at info; else
    /// `UNCACHED_ERR_FD=N` (ccache's) when it is a usable descriptor; else stderr at warning.
    pub log: LogConfig,
    /// `DISTCC_HOSTS`, when set (even empty: an empty list, not "look in files").
    pub hosts: Option<String>,
    /// `DISTCC_BACKOFF_PERIOD` (seconds, default 60; 0 disables backoff).
    pub backoff_period: Duration,
    /// `DISTCC_PAUSE_TIME_MSEC`: how often a client waiting for a slot re-checks when no
    /// wake-up arrives (default 1000 ms, at least [`MIN_PAUSE`]).
    pub pause: Duration,
    /// `DISTCC_IO_TIMEOUT` (seconds > 0, default 300): how long a host may stay silent.
    pub io_timeout: Duration,
    /// `DISTCC_FALLBACK=0` turns off compiling locally when distribution fails.
    pub fallback: bool,
    /// `DISTCC_SKIP_LOCAL_RETRY` (any value): a compile error from a host is final, not
    /// retried locally.
    pub skip_local_retry: bool,
    /// `DISTCC_SAVE_TEMPS=1`: keep the preprocessed source.
    pub save_temps: bool,
    /// `DISTCC_SSH` split on blanks (default `ssh`): the command for `@host` entries.
    pub ssh: Vec<String>,
    /// `DISTCC_SOCKS_PROXY` (`HOST[:PORT]` or a socket path): connect through a SOCKS5
    /// proxy, as Portage's network sandbox asks. A bad value makes every remote attempt
    /// fail with its message (so jobs compile locally).
    pub socks_proxy: Result<Option<Proxy>, String>,
    /// `DISTCC_NO_REWRITE_CROSS` unset: rewrite `gcc` to `<triple>-gcc`, `cc` to the
    /// compiler it links to, and give clang a `-target`.
    pub rewrite_cross: bool,
    /// `_DISTCC_SAFEGUARD`: how deep in distcc-calls-distcc we are.
    pub safeguard_level: u32,
    /// `PATH`.
    pub path: Option<OsString>,
    /// `INCLUDE_SERVER_PORT`: the pump include server's socket; pump mode only with it.
    pub include_server: Option<PathBuf>,
    /// `INCLUDE_SERVER_INLINE` names the same socket: our `pump` started that include
    /// server, which answers with the files themselves ([`crate::protocol::include`]).
    /// Naming the socket, not just being set, keeps a value left over from our `pump`
    /// from applying to another include server.
    pub include_server_inline: bool,
    /// The first of [`PUMP_BLOCKERS`] that is set.
    pub pump_blocker: Option<&'static str>,
    /// `DISTCC_MAX_DISCREPANCY`.
    pub max_discrepancy: u64,
    /// `DISTCC_RACE=0` turns off racing a remote job that runs far longer than its host's
    /// recent jobs with a local compile ([`crate::client::race`]); on by default.
    pub race: bool,
    /// `DISTCC_DIRECTIVES_ONLY`: whether to preprocess with gcc's `-fdirectives-only` or
    /// clang's `-frewrite-includes` (macros left for the server, so `-g` line tables and
    /// diagnostics match a local build). By default ([`DirectivesOnly::Auto`]) only for a
    /// host whose last protocol extension answer says `directives-only yes` (gcc) or
    /// `rewrite-includes yes` (clang): our daemon says the first when its gcc is not
    /// reached through a wrapper such as ccache, which compiles such a source without the
    /// switch and fails (Gentoo's `FEATURES=ccache`, Debian's masquerade), and always the
    /// second. A distcc 3.4 host, or one not asked yet, gets a full `-E`, as distcc 3.4
    /// sends.
    pub directives_only: DirectivesOnly,
    /// `DISTCC_BUILD_ID` (set and not empty): the build whose record in
    /// `$DISTCC_DIR/record` this job's outcome goes to (`pump` sets it); else the session
    /// id ([`crate::client::outcome`]).
    pub build_id: Option<String>,
    /// `DISTCC_PRINCIPAL` (even empty): the GSS-API service name of 3.4. GSS-API is not
    /// built, but `--show-principal` shows it as 3.4 does, for scripts that check it.
    pub principal: Option<String>,
    /// `DISTCC_EXTENSIONS=0`: never open the protocol extension ([`crate::ext`]) — not
    /// even the one probe per host and period that finds a distcc 3.4 daemon. On by
    /// default.
    pub extensions: bool,
}

impl ClientEnv {
    /// Read the client's variables; the problems are for [`Problem::report`] once logging
    /// is set up from `log`.
    pub(crate) fn from_env(env: &dyn Env) -> (ClientEnv, Vec<Problem>) {
        let mut r = Reader::new(env);
        let socks_proxy = match r.non_empty("DISTCC_SOCKS_PROXY") {
            None => Ok(None),
            Some(v) => Proxy::parse(&v).map(Some).map_err(|e| e.to_string()),
        };
        if let Err(e) = &socks_proxy {
            r.problem(
                "DISTCC_SOCKS_PROXY",
                format!("is unusable ({e}); jobs will compile locally"),
            );
        }
        let ssh: Vec<String> = r
            .text("DISTCC_SSH")
            .unwrap_or_default()
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect();
        let pause = Duration::from_millis(r.number(
            "DISTCC_PAUSE_TIME_MSEC",
            DEFAULT_PAUSE.as_millis() as u64,
            0,
            false,
        ))
        .max(MIN_PAUSE);
        let settings = ClientEnv {
            dirs: Dirs::read(&r),
            log: client_log(&mut r),
            hosts: r.text("DISTCC_HOSTS"),
            backoff_period: seconds(
                &mut r,
                "DISTCC_BACKOFF_PERIOD",
                DEFAULT_BACKOFF_PERIOD,
                0,
                false,
            ),
            pause,
            io_timeout: io_timeout(&mut r),
            fallback: r.text("DISTCC_FALLBACK").is_none_or(|v| v.trim() != "0"),
            skip_local_retry: r.is_set("DISTCC_SKIP_LOCAL_RETRY"),
            save_temps: save_temps(&r),
            ssh: if ssh.is_empty() {
                vec!["ssh".into()]
            } else {
                ssh
            },
            socks_proxy,
            rewrite_cross: !r.is_set("DISTCC_NO_REWRITE_CROSS"),
            safeguard_level: safeguard_level(&r),
            path: r.raw("PATH"),
            include_server: r.path("INCLUDE_SERVER_PORT"),
            include_server_inline: r
                .path("INCLUDE_SERVER_INLINE")
                .is_some_and(|p| Some(p) == r.path("INCLUDE_SERVER_PORT")),
            pump_blocker: PUMP_BLOCKERS.iter().copied().find(|v| r.is_set(v)),
            max_discrepancy: max_discrepancy(&mut r),
            race: r.text("DISTCC_RACE").is_none_or(|v| v.trim() != "0"),
            directives_only: DirectivesOnly::from_value(r.text("DISTCC_DIRECTIVES_ONLY")),
            build_id: build_id(&r),
            principal: r.text("DISTCC_PRINCIPAL"),
            extensions: r.text("DISTCC_EXTENSIONS").is_none_or(|v| v.trim() != "0"),
        };
        (settings, r.problems)
    }

    /// From the real environment.
    pub(crate) fn from_process() -> (ClientEnv, Vec<Problem>) {
        ClientEnv::from_env(&ProcessEnv)
    }
}

fn client_log(r: &mut Reader) -> LogConfig {
    let verbose = r.is_one("DISTCC_VERBOSE");
    let (destination, quiet_level) = if let Some(path) = r.path("DISTCC_LOG") {
        (Destination::File(path), LevelFilter::Info)
    } else if let Some(value) = r.text("UNCACHED_ERR_FD") {
        match value.trim().parse::<i32>() {
            Ok(fd) => match crate::trace::usable_fd(fd) {
                Ok(()) => (Destination::Fd(fd), LevelFilter::Warn),
                Err(why) => {
                    // A stale descriptor from far up the process tree: see usable_fd.
                    log::debug!("not logging to UNCACHED_ERR_FD: {why}");
                    (Destination::Stderr, LevelFilter::Warn)
                }
            },
            _ => {
                r.problem("UNCACHED_ERR_FD", "is not a descriptor number".into());
                (Destination::Stderr, LevelFilter::Warn)
            }
        }
    } else {
        (Destination::Stderr, LevelFilter::Warn)
    };
    LogConfig {
        program: "distcc",
        detail: false,
        level: if verbose {
            LevelFilter::Debug
        } else {
            quiet_level
        },
        destination,
    }
}

/// The daemon (`distccd`); its command-line options are in its applet.
#[derive(Debug, Clone, Default)]
pub struct DaemonEnv {
    /// `TMPDIR`: where job directories go (default `/tmp`).
    pub tmpdir: PathBuf,
    /// `DISTCCD_PATH`: the PATH compilers are looked up on and run with (else `PATH`).
    pub distccd_path: Option<OsString>,
    /// `PATH`.
    pub path: Option<OsString>,
    /// `DISTCC_SAVE_TEMPS=1`: keep job directories.
    pub save_temps: bool,
    /// `DISTCCD_MASQUERADE_DIRS` (ours; colon-separated): the whitelist directories, instead
    /// of `/usr/lib/distcc` and `/usr/local/lib/distcc`.
    pub masquerade_dirs: Vec<PathBuf>,
    /// `DISTCC_CMDLIST`: a file listing the only commands that may run.
    pub cmdlist: Option<PathBuf>,
    /// `DISTCC_CMDLIST_NUMWORDS`: how many trailing words of a command must match (≥ 1).
    pub cmdlist_numwords: usize,
    /// `DISTCCD_READ_DIRS` (ours; colon-separated): more directories compilers may read
    /// under the Landlock confinement.
    pub read_dirs: Vec<PathBuf>,
    /// ccache's cache: `CCACHE_DIR`, else its defaults under `HOME` and `XDG_CACHE_HOME`
    /// (a masqueraded ccache must keep working under the confinement).
    pub ccache_dirs: Vec<PathBuf>,
    /// `DISTCC_IO_TIMEOUT`: how long a client may stay silent mid-request.
    pub io_timeout: Duration,
    /// `_DISTCC_SAFEGUARD` of the daemon itself (compilers get one more).
    pub safeguard_level: u32,
    /// `DISTCCD_KEY_DIR` (ours): where the daemon's key pair, `authorized_keys` and
    /// pairing codes live, instead of `/etc/distcc` (`--key-dir` wins over it).
    pub key_dir: Option<PathBuf>,
    /// `DISTCCD_ACCEPT_OTHER_BUILDS=1` (ours): serve a client's compiler with another build
    /// of the same family, version and target (the fingerprints differ: a gcc each Gentoo
    /// host built itself, say), which is refused by default.
    pub accept_other_builds: bool,
}

impl DaemonEnv {
    /// Read the daemon's variables.
    pub fn from_env(env: &dyn Env) -> (DaemonEnv, Vec<Problem>) {
        let mut r = Reader::new(env);
        let masquerade_dirs = match r.non_empty("DISTCCD_MASQUERADE_DIRS") {
            Some(v) => std::env::split_paths(&v).collect(),
            None => vec![
                PathBuf::from("/usr/lib/distcc"),
                PathBuf::from("/usr/local/lib/distcc"),
            ],
        };
        let mut ccache_dirs = r.dir_list("CCACHE_DIR");
        if let Some(home) = r.path("HOME") {
            ccache_dirs.push(home.join(".ccache"));
            ccache_dirs.push(home.join(".cache/ccache"));
        }
        if let Some(cache) = r.path("XDG_CACHE_HOME") {
            ccache_dirs.push(cache.join("ccache"));
        }
        let settings = DaemonEnv {
            tmpdir: Dirs::read(&r).tmp(),
            distccd_path: r.raw("DISTCCD_PATH"),
            path: r.raw("PATH"),
            save_temps: save_temps(&r),
            masquerade_dirs,
            cmdlist: r.path("DISTCC_CMDLIST"),
            cmdlist_numwords: usize::try_from(r.number("DISTCC_CMDLIST_NUMWORDS", 1, 1, false))
                .unwrap_or(1),
            read_dirs: r.dir_list("DISTCCD_READ_DIRS"),
            ccache_dirs,
            io_timeout: io_timeout(&mut r),
            safeguard_level: safeguard_level(&r),
            key_dir: r.path("DISTCCD_KEY_DIR"),
            accept_other_builds: r.is_one("DISTCCD_ACCEPT_OTHER_BUILDS"),
        };
        (settings, r.problems)
    }
}

/// The `pump` applet (and the include server it runs in-process).
#[derive(Debug, Clone)]
pub struct PumpEnv {
    pub dirs: Dirs,
    /// Logging, read as the client reads it (`DISTCC_VERBOSE`, `DISTCC_LOG`, …).
    pub log: LogConfig,
    /// `DISTCC_HOSTS`, when set.
    pub hosts: Option<String>,
    /// `PATH`: our directory goes first on the build command's PATH.
    pub path: Option<OsString>,
    /// `DISTCC_POTENTIAL_HOSTS` is set (lsdistcc's list; not supported, said so).
    pub potential_hosts: bool,
    /// `DISTCC_MAX_DISCREPANCY`.
    pub max_discrepancy: u64,
    /// `DISTCC_CLIENT_TMP`: the base of the include server's mirror of client files.
    pub client_tmp: Option<PathBuf>,
    /// `INCLUDE_SERVER_PID` (`pump --shutdown`).
    pub include_server_pid: Option<i32>,
    /// `INCLUDE_SERVER_DIR` (`pump --shutdown`).
    pub include_server_dir: Option<PathBuf>,
    /// `DISTCC_BUILD_ID`: the build's id for its record; `pump COMMAND` makes one up and
    /// exports it when unset.
    pub build_id: Option<String>,
    /// `DISTCC_SUMMARY=1`: `pump COMMAND` prints the build's summary (remote and local
    /// jobs, why local, time per host) when COMMAND ends.
    pub summary: bool,
    /// `INCLUDE_SERVER_ARGS`: options 3.4's pump passed to its include server (the pump
    /// applet maps what applies to ours).
    pub include_server_args: Option<String>,
}

impl PumpEnv {
    /// Read the pump applet's variables.
    pub fn from_env(env: &dyn Env) -> (PumpEnv, Vec<Problem>) {
        let mut r = Reader::new(env);
        let settings = PumpEnv {
            dirs: Dirs::read(&r),
            log: client_log(&mut r),
            hosts: r.text("DISTCC_HOSTS"),
            path: r.raw("PATH"),
            potential_hosts: r.is_set("DISTCC_POTENTIAL_HOSTS"),
            max_discrepancy: max_discrepancy(&mut r),
            client_tmp: r.path("DISTCC_CLIENT_TMP"),
            include_server_pid: r
                .text("INCLUDE_SERVER_PID")
                .and_then(|p| p.trim().parse::<i32>().ok()),
            include_server_dir: r.path("INCLUDE_SERVER_DIR"),
            build_id: build_id(&r),
            summary: r.is_one("DISTCC_SUMMARY"),
            include_server_args: r.text("INCLUDE_SERVER_ARGS"),
        };
        (settings, r.problems)
    }
}

/// The `distcc-config` applet.
#[derive(Debug, Clone, Default)]
pub struct ConfigEnv {
    /// `DISTCC_CONFIG_ROOT` (ours): a staging root prefixed to every system path.
    pub root: PathBuf,
    /// `DISTCC_CONFIG_AS_USER=1` (ours): root behaves as a user would (tests).
    pub as_user: bool,
    /// `HOME`: a user's host list is `~/.distcc/hosts`.
    pub home: Option<PathBuf>,
    /// `DISTCC_HOSTS`: `--get-hosts` shows it first, as Gentoo's script does.
    pub hosts: Option<String>,
    /// `DISTCC_DIR` and friends: `--pair` keeps the user's key and pinned server keys
    /// there, where the client looks for them.
    pub dirs: Dirs,
}

impl ConfigEnv {
    /// Read distcc-config's variables.
    pub fn from_env(env: &dyn Env) -> ConfigEnv {
        let r = Reader::new(env);
        ConfigEnv {
            root: r
                .path("DISTCC_CONFIG_ROOT")
                .unwrap_or_else(|| PathBuf::from("/")),
            as_user: r.is_one("DISTCC_CONFIG_AS_USER"),
            home: r.path("HOME"),
            hosts: r.text("DISTCC_HOSTS"),
            dirs: Dirs::read(&r),
        }
    }
}

/// An environment of explicit `(name, value)` pairs, for tests.
#[cfg(test)]
pub(crate) fn test_env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_env as env;

    #[test]
    fn client_defaults() {
        let (c, problems) = ClientEnv::from_env(&env(&[]));
        assert!(problems.is_empty());
        assert_eq!(c.backoff_period, DEFAULT_BACKOFF_PERIOD);
        assert_eq!(c.pause, DEFAULT_PAUSE);
        assert_eq!(c.io_timeout, DEFAULT_IO_TIMEOUT);
        assert!(c.fallback && c.rewrite_cross && !c.save_temps && !c.skip_local_retry);
        assert!(c.race);
        assert_eq!(c.directives_only, DirectivesOnly::Auto);
        assert_eq!(c.ssh, vec!["ssh"]);
        assert_eq!(c.socks_proxy, Ok(None));
        assert_eq!(c.hosts, None);
        assert_eq!(c.build_id, None);
        assert_eq!(c.safeguard_level, 0);
        assert_eq!(c.max_discrepancy, 1);
        assert_eq!(c.log.level, LevelFilter::Warn);
        assert_eq!(c.log.destination, Destination::Stderr);
    }

    #[test]
    fn directives_only_values() {
        for (value, want) in [
            (" 1 ", DirectivesOnly::Always),
            ("0", DirectivesOnly::Never),
            ("", DirectivesOnly::Auto),
            ("yes", DirectivesOnly::Auto),
        ] {
            let (c, _) = ClientEnv::from_env(&env(&[("DISTCC_DIRECTIVES_ONLY", value)]));
            assert_eq!(c.directives_only, want, "{value:?}");
        }
    }

    #[test]
    fn client_values() {
        let (c, problems) = ClientEnv::from_env(&env(&[
            ("DISTCC_BACKOFF_PERIOD", "0"),
            ("DISTCC_PAUSE_TIME_MSEC", "1"),
            ("DISTCC_IO_TIMEOUT", " 7 "),
            ("DISTCC_FALLBACK", "0"),
            ("DISTCC_SKIP_LOCAL_RETRY", ""),
            ("DISTCC_SAVE_TEMPS", "1"),
            ("DISTCC_SSH", "ssh  -p 2222"),
            ("DISTCC_SOCKS_PROXY", "proxy:1080"),
            ("DISTCC_NO_REWRITE_CROSS", ""),
            ("_DISTCC_SAFEGUARD", "x"),
            ("DISTCC_HOSTS", ""),
            ("CPATH", "/x"),
            ("DISTCC_MAX_DISCREPANCY", "3"),
            ("DISTCC_VERBOSE", "1"),
            ("DISTCC_LOG", "/tmp/l"),
            ("DISTCC_RACE", " 0"),
            ("DISTCC_DIRECTIVES_ONLY", "1"),
            ("DISTCC_BUILD_ID", "b1"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.build_id.as_deref(), Some("b1"));
        assert!(!c.race);
        assert_eq!(c.directives_only, DirectivesOnly::Always);
        assert!(c.backoff_period.is_zero());
        assert_eq!(c.pause, MIN_PAUSE);
        assert_eq!(c.io_timeout, Duration::from_secs(7));
        assert!(!c.fallback && !c.rewrite_cross && c.save_temps && c.skip_local_retry);
        assert_eq!(c.ssh, vec!["ssh", "-p", "2222"]);
        assert!(matches!(
            c.socks_proxy,
            Ok(Some(Proxy::Tcp { port: 1080, .. }))
        ));
        assert_eq!(c.safeguard_level, 1);
        assert_eq!(c.hosts.as_deref(), Some(""));
        assert_eq!(c.pump_blocker, Some("CPATH"));
        assert_eq!(c.max_discrepancy, 3);
        assert_eq!(c.log.level, LevelFilter::Debug);
        assert_eq!(c.log.destination, Destination::File("/tmp/l".into()));
    }

    #[test]
    fn bad_values_are_problems_that_name_the_variable() {
        let (c, problems) = ClientEnv::from_env(&env(&[
            ("DISTCC_BACKOFF_PERIOD", "soon"),
            ("DISTCC_IO_TIMEOUT", "0"),
            ("DISTCC_MAX_DISCREPANCY", "0"),
            ("DISTCC_SOCKS_PROXY", "host:notaport"),
            ("UNCACHED_ERR_FD", "two"),
        ]));
        assert_eq!(c.backoff_period, DEFAULT_BACKOFF_PERIOD);
        assert_eq!(c.max_discrepancy, 1);
        assert!(c.socks_proxy.is_err());
        let vars: Vec<_> = problems.iter().map(|p| (p.var, p.fatal)).collect();
        assert!(vars.contains(&("DISTCC_BACKOFF_PERIOD", false)));
        assert!(vars.contains(&("DISTCC_IO_TIMEOUT", true)));
        assert!(vars.contains(&("DISTCC_MAX_DISCREPANCY", false)));
        assert!(vars.contains(&("DISTCC_SOCKS_PROXY", false)));
        assert!(vars.contains(&("UNCACHED_ERR_FD", false)));
        let text = problems[0].to_string();
        assert!(text.starts_with("DISTCC_"), "{text}");
    }

    #[test]
    fn daemon_values() {
        let (d, problems) = DaemonEnv::from_env(&env(&[
            ("TMPDIR", "/var/tmp"),
            ("DISTCCD_MASQUERADE_DIRS", "/a:/b"),
            ("DISTCC_CMDLIST_NUMWORDS", "0"),
            ("DISTCCD_READ_DIRS", "/opt/x:relative"),
            ("HOME", "/home/d"),
            ("PATH", "/usr/bin"),
        ]));
        assert_eq!(d.tmpdir, PathBuf::from("/var/tmp"));
        assert_eq!(
            d.masquerade_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(d.cmdlist_numwords, 1);
        assert_eq!(problems.len(), 1);
        assert_eq!(d.read_dirs, vec![PathBuf::from("/opt/x")]);
        assert!(d.ccache_dirs.contains(&PathBuf::from("/home/d/.ccache")));
        let (d, _) = DaemonEnv::from_env(&env(&[]));
        assert_eq!(d.tmpdir, PathBuf::from("/tmp"));
        assert_eq!(d.masquerade_dirs.len(), 2);
    }

    #[test]
    fn dirs_ignore_empty_values() {
        let (c, _) =
            ClientEnv::from_env(&env(&[("DISTCC_DIR", ""), ("HOME", "/h"), ("TMPDIR", "")]));
        assert_eq!(c.dirs.distcc_dir, None);
        assert_eq!(c.dirs.home, Some(PathBuf::from("/h")));
        assert_eq!(c.dirs.tmp(), PathBuf::from("/tmp"));
    }
}
