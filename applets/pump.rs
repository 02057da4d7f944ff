//! The `pump` / `distcc-pump` applet (distcc 3.4's `pump` script, reference §5.1), with the
//! include server running in threads of this process instead of a Python child.
//!
//! * `pump COMMAND [ARG…]`: start the include server, run COMMAND with
//!   `INCLUDE_SERVER_PORT` exported and our directory first on `PATH`, then shut down;
//! * `pump --startup`: start a background include server and print `export` lines;
//! * `pump --shutdown`: stop the one named by `INCLUDE_SERVER_PID`/`INCLUDE_SERVER_DIR`.

use std::ffi::OsString;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use distcc::pump::server::IncludeServer;
use distcc::settings::{ProcessEnv, PumpEnv};

const USAGE: &str = "Usage:
  pump COMMAND [ARG...]
or
  pump --startup
  pump --shutdown

Description:
  Pump, also known as distcc-pump, accelerates remote compilation with
  distcc by also distributing preprocessing to the servers.

  The first form starts an include server, runs COMMAND with INCLUDE_SERVER_PORT
  set (for example 'pump make -j40'), and shuts the include server down after.
  INCLUDE_SERVER_INLINE names the same socket: it tells our distcc client that
  this include server answers with the files themselves (distcc 3.4's client
  ignores it and reads the mirror files as before).

  The second form prints shell 'export' lines for a background include server;
  use it as eval `pump --startup`, and stop it with 'pump --shutdown'.

  Pump mode needs hosts with the ',cpp,lzo' options in the distcc host list,
  and the same system headers on the client and the servers.
";

/// Print a `__________`-prefixed message on stderr, like the pump script.
fn say(msg: &str) {
    eprintln!("__________{msg}");
}

/// Where our executable lives (`DISTCC_LOCATION`): it goes first on the command's PATH.
fn location() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.parent().map(Path::to_path_buf)
}

/// `${TMPDIR-/tmp}/distcc-pump.XXXXXXXX`, mode 0700.
fn make_dir(env: &PumpEnv) -> Result<PathBuf, String> {
    distcc::temp::make_temp_dir_in(&env.dirs.tmp(), "distcc-pump.").map_err(|e| e.to_string())
}

/// How many `,cpp` hosts the host list has; an error message if none.
fn count_cpp_hosts(env: &PumpEnv) -> Result<usize, String> {
    if env.potential_hosts {
        say("DISTCC_POTENTIAL_HOSTS (lsdistcc) is not supported; using the distcc host list");
    }
    let list =
        distcc::hosts::load_default(env.hosts.as_deref(), &env.dirs).map_err(|e| e.to_string())?;
    let n = list.hosts.iter().filter(|h| h.protocol == 3).count();
    if n == 0 {
        return Err(
            "pump mode requested, but distcc hosts list does not contain any hosts \
                    with ',cpp' option"
                .into(),
        );
    }
    Ok(n)
}

/// What every start needs: the number of `,cpp` hosts (there must be one) and a fresh
/// directory for the socket; the error is the message to show.
fn hosts_and_dir(env: &PumpEnv) -> Result<(usize, PathBuf), String> {
    let n = count_cpp_hosts(env)?;
    let dir = make_dir(env).map_err(|e| format!("Could not start include server: {e}"))?;
    Ok((n, dir))
}

/// Bind the socket and serve it from a thread of this process.
fn start_server(dir: &Path, env: &PumpEnv) -> Result<(PathBuf, Arc<IncludeServer>), String> {
    let socket = dir.join("socket");
    let listener = UnixListener::bind(&socket)
        .map_err(|e| format!("can't listen on {}: {e}", socket.display()))?;
    let server = Arc::new(
        IncludeServer::new(env.client_tmp.as_deref(), env.path.clone())
            .map_err(|e| e.to_string())?,
    );
    let s = server.clone();
    std::thread::spawn(move || s.serve(listener));
    Ok((socket, server))
}

fn path_with(loc: Option<&Path>, env: &PumpEnv) -> OsString {
    let old = env.path.clone().unwrap_or_default();
    match loc {
        Some(l) => {
            let mut p = l.as_os_str().to_owned();
            p.push(":");
            p.push(old);
            p
        }
        None => old,
    }
}

/// The `__________Warning: N pump-mode compilation(s) failed …` report (§5.1, §5.4).
fn report_discrepancies(dir: &Path, env: &PumpEnv) {
    let n = std::fs::metadata(dir.join("discrepancy_counter")).map_or(0, |m| m.len());
    if n > 0 {
        say(&format!(
            "Warning: {n} pump-mode compilation(s) failed on server, but succeeded locally."
        ));
        if n >= env.max_discrepancy {
            say(
                "Distcc-pump was demoted to plain mode.  See the Distcc Discrepancy Symptoms section in the include_server(1) man page.",
            );
        }
    }
}

/// `pump COMMAND…`.
fn run_command(cmd: &[OsString], env: &PumpEnv) -> i32 {
    let (n, dir) = match hosts_and_dir(env) {
        Ok(x) => x,
        Err(e) => {
            say(&e);
            return 1;
        }
    };
    let (socket, server) = match start_server(&dir, env) {
        Ok(x) => x,
        Err(e) => {
            say(&format!("Could not start include server: {e}"));
            let _ = std::fs::remove_dir_all(&dir);
            return 1;
        }
    };
    let loc = location();
    if let Some(l) = &loc {
        say(&format!("Using distcc-pump from {}", l.display()));
    }
    say(&format!(
        "Using {n} distcc server{} in pump mode",
        if n == 1 { "" } else { "s" }
    ));
    // One id for every job of this build: its record is the summary's.
    let build = env.build_id.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("pump-{}-{secs}", std::process::id())
    });
    let status = Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("INCLUDE_SERVER_PORT", &socket)
        .env("INCLUDE_SERVER_INLINE", &socket)
        .env("PATH", path_with(loc.as_deref(), env))
        .env("DISTCC_BUILD_ID", &build)
        .status();
    report_discrepancies(&dir, env);
    if env.summary {
        match distcc::client::outcome::summary(&env.dirs, Some(&build)) {
            Ok(s) => eprint!("{}", s.render()),
            Err(e) => say(&format!("no summary: {e}")),
        }
    }
    say("Shutting down distcc-pump include server");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    match status {
        Ok(s) => s.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
        }),
        Err(e) => {
            say(&format!("can't run {}: {e}", cmd[0].to_string_lossy()));
            127
        }
    }
}

/// The hidden `--serve DIR` mode behind `--startup`: serve until SIGTERM/SIGINT.
fn serve_forever(dir: &Path, env: &PumpEnv) -> i32 {
    use smol::stream::StreamExt;
    let signals =
        async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int]);
    let (_, server) = match start_server(dir, env) {
        Ok(x) => x,
        Err(e) => {
            say(&format!("Could not start include server: {e}"));
            return 1;
        }
    };
    match signals {
        Ok(mut s) => {
            smol::block_on(s.next());
        }
        Err(e) => {
            log::warn!("can't watch signals ({e}); serving until killed");
            loop {
                std::thread::park();
            }
        }
    }
    drop(server);
    0
}

/// `pump --startup`: a background include server and the `export` lines for it.
fn startup(env: &PumpEnv) -> i32 {
    let dir = match hosts_and_dir(env) {
        Ok((_, dir)) => dir,
        Err(e) => {
            say(&e);
            return 1;
        }
    };
    let Ok(exe) = std::env::current_exe() else {
        say("Could not start include server: can't find our own executable");
        return 1;
    };
    let log = match std::fs::File::create(dir.join("stderr")) {
        Ok(f) => std::process::Stdio::from(f),
        Err(_) => std::process::Stdio::null(),
    };
    let child = Command::new(exe)
        .arg0("pump")
        .arg("--serve")
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        // Not our stderr: whoever reads our output (`eval \`pump --startup\``) would
        // otherwise wait for the server to exit. Like 3.4, its log is `<dir>/stderr`.
        .stderr(log)
        .spawn();
    let pid = match child {
        Ok(c) => c.id(),
        Err(e) => {
            say(&format!("Could not start include server: {e}"));
            return 1;
        }
    };
    let socket = dir.join("socket");
    for _ in 0..200 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if !socket.exists() {
        say("Could not start include server");
        return 1;
    }
    println!("export INCLUDE_SERVER_PID='{pid}'");
    println!("export INCLUDE_SERVER_DIR='{}'", dir.display());
    println!("export INCLUDE_SERVER_PORT='{}'", socket.display());
    println!("export INCLUDE_SERVER_INLINE='{}'", socket.display());
    if let Some(h) = &env.hosts {
        println!("export DISTCC_HOSTS='{h}'");
    }
    if let Some(l) = location() {
        println!("export PATH='{}':$PATH", l.display());
    }
    0
}

/// `pump --shutdown`.
fn shutdown(env: &PumpEnv) -> i32 {
    let (Some(pid), Some(dir)) = (env.include_server_pid, env.include_server_dir.clone()) else {
        say("INCLUDE_SERVER_PID and INCLUDE_SERVER_DIR must be set (from 'pump --startup')");
        return 1;
    };
    // SAFETY: kill(2) with a plain pid and signal number has no memory effects.
    if pid > 0 && unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        say(&format!("include server {pid} is not running"));
    }
    for _ in 0..100 {
        // SAFETY: signal 0 only checks that the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    report_discrepancies(&dir, env);
    // Show what the include server logged, as the pump script does.
    if let Ok(text) = std::fs::read_to_string(dir.join("stderr")) {
        eprint!("{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    0
}

use std::os::unix::process::CommandExt;

/// What `INCLUDE_SERVER_ARGS` (3.4's include-server options) comes to here.
#[derive(Debug, Default, PartialEq, Eq)]
struct IncludeServerArgs {
    /// `-dPAT`/`--debug_pattern=PAT`: bit 1 is warnings (our default), any higher bit
    /// (traces, data) is our debug log.
    level: Option<log::LevelFilter>,
    /// Options understood and not needed here, with why (for one debug line each).
    not_needed: Vec<String>,
    /// Options of 3.4's include server that ours does not have (one warning for all).
    unsupported: Vec<String>,
}

/// 3.4's include-server options that take a value (as a separate word or after `=`).
const VALUED: &[&str] = &[
    "--debug_pattern",
    "--email_bound",
    "--path_observation_re",
    "--pid_file",
    "--port",
    "--stat_reset_triggers",
];

/// Read `INCLUDE_SERVER_ARGS` the way the include server's getopt did.
fn include_server_args(text: &str) -> IncludeServerArgs {
    let mut out = IncludeServerArgs::default();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        let (name, mut value) = match w.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (w, None),
        };
        let name = match name.strip_prefix("-d") {
            Some(v) if !name.starts_with("--") => {
                if !v.is_empty() {
                    value = Some(v.to_owned());
                }
                "--debug_pattern"
            }
            _ => name,
        };
        if VALUED.contains(&name) && value.is_none() {
            value = words.next().map(str::to_owned);
        }
        match name {
            "--debug_pattern" => {
                let bits = value.as_deref().and_then(|v| v.trim().parse::<u32>().ok());
                match bits {
                    Some(b) if b & !1 != 0 => out.level = Some(log::LevelFilter::Debug),
                    Some(b) if b & 1 != 0 => out.level = Some(log::LevelFilter::Warn),
                    Some(_) => out.level = Some(log::LevelFilter::Error),
                    None => out.unsupported.push(format!("{w} (not a number)")),
                }
            }
            "--stat_reset_triggers" => out.not_needed.push(
                "--stat_reset_triggers: every file is checked by identity (device, inode, \
                 size, times) on every request, so changed files are always seen"
                    .into(),
            ),
            "--no_force_dirs" => out
                .not_needed
                .push("--no_force_dirs: directory placeholders cost nothing here; kept".into()),
            "--no-email" => out
                .not_needed
                .push("--no-email: this include server never sends email".into()),
            "--unsafe_absolute_includes" => out.unsupported.push(format!(
                "{name} (a job with an absolute #include is still preprocessed locally, \
                 which is always correct)"
            )),
            "-e"
            | "--email"
            | "--email_bound"
            | "--path_observation_re"
            | "-s"
            | "--statistics"
            | "-t"
            | "--time"
            | "-v"
            | "--verify"
            | "-w"
            | "--write_include_closure"
            | "-x"
            | "--exact_analysis"
            | "--pid_file"
            | "--port" => out.unsupported.push(name.to_owned()),
            other => out.unsupported.push(format!("{other} (unknown)")),
        }
    }
    out
}

/// Entry point; returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let (mut env, problems) = PumpEnv::from_env(&ProcessEnv);
    let isa = include_server_args(env.include_server_args.as_deref().unwrap_or(""));
    if let Some(level) = isa.level {
        env.log.level = env.log.level.max(level);
    }
    distcc::trace::init(&env.log);
    for p in &problems {
        p.report();
    }
    let rest = &args[1.min(args.len())..];
    // Once per build: the `--serve` child of `--startup` inherits the same variable.
    if rest.first().and_then(|a| a.to_str()) != Some("--serve") {
        for why in &isa.not_needed {
            log::debug!("INCLUDE_SERVER_ARGS {why}");
        }
        if !isa.unsupported.is_empty() {
            log::warn!(
                "INCLUDE_SERVER_ARGS: ignoring {}: not supported by this include server",
                isa.unsupported.join(", ")
            );
        }
    }
    match rest.first().and_then(|a| a.to_str()) {
        None | Some("-h") | Some("--help") => {
            print!("{USAGE}");
            0
        }
        Some("--version") => {
            print!("{}", distcc::version_text("pump"));
            0
        }
        Some("--startup") => startup(&env),
        Some("--shutdown") => shutdown(&env),
        Some("--serve") if rest.len() == 2 => serve_forever(Path::new(&rest[1]), &env),
        Some(_) => run_command(rest, &env),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_server_args_map_onto_ours() {
        let a = include_server_args(
            "-d3 --stat_reset_triggers=include/a.h:gen/*.h --no_force_dirs --no-email",
        );
        assert_eq!(a.level, Some(log::LevelFilter::Debug));
        assert!(a.unsupported.is_empty(), "{a:?}");
        assert_eq!(a.not_needed.len(), 3);
        assert_eq!(
            include_server_args("-d 1").level,
            Some(log::LevelFilter::Warn)
        );
        assert_eq!(
            include_server_args("--debug_pattern=16").level,
            Some(log::LevelFilter::Debug)
        );
        let a = include_server_args(
            "--stat_reset_triggers x.h -s --email_bound 3 --unsafe_absolute_includes -v --bogus",
        );
        assert_eq!(a.level, None);
        assert_eq!(
            a.not_needed.len(),
            1,
            "the trigger list was its value: {a:?}"
        );
        assert_eq!(a.unsupported.len(), 5, "{a:?}");
        assert!(
            a.unsupported
                .iter()
                .any(|u| u.starts_with("--unsafe_absolute_includes"))
        );
        assert!(a.unsupported.iter().any(|u| u == "--bogus (unknown)"));
        assert_eq!(include_server_args(""), IncludeServerArgs::default());
    }
}
