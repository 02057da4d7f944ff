//! The `distccmon-text` applet: `distccmon-text [DELAY]` lists the running jobs of
//! `$DISTCC_DIR/state`, once or every DELAY seconds, in distcc 3.4's exact format.
//!
//! Beyond distcc, and only when stdout is a terminal (scripts parse the plain output): a
//! summary line per host after each listing.
//!
//! `distccmon-text --summary [BUILD]` (ours) prints what a finished build's record in
//! `$DISTCC_DIR/record` adds up to: jobs compiled remotely and locally, why local (one
//! code per reason), jobs and time per host; for the newest build, or the one named.
//!
//! `distccmon-text --cluster [--stats-port PORT] [DELAY]` (ours) shows the whole farm, not
//! just this client's jobs: it reads `/status.json` from the stats port of every host in
//! the host list (`distccd --stats`; port from `--stats-port`, `DISTCC_STATS_PORT`, else
//! 3633) and prints each host's slots and running jobs on one screen.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use distcc::daemon::web::{self, Json};
use distcc::exitcode::ExitCode;
use distcc::hosts::HostKind;
use distcc::settings::{Dirs, Env, ProcessEnv};
use distcc::state::{self, TaskState};
use distcc::temp;

const USAGE: &str = "usage: distccmon-text [DELAY]
       distccmon-text --summary [BUILD]
       distccmon-text --cluster [--stats-port PORT] [DELAY]

Displays current compilation jobs in text form.

If delay is specified, repeatedly updates after that many (fractional)
seconds.  Otherwise, runs just once.

With --summary, prints the record of the newest build (or of BUILD, its
DISTCC_BUILD_ID): remote and local jobs, why local, jobs and time per host.

With --cluster, shows every host of the host list whose distccd serves a
stats port (distccd --stats): its slots, running jobs and counters. The
port is --stats-port, else $DISTCC_STATS_PORT, else 3633.
";

/// The stats port when neither `--stats-port` nor `DISTCC_STATS_PORT` says (distccd's).
const DEFAULT_STATS_PORT: u16 = 3633;
/// How long one host may take to connect, and then to answer.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(2);

/// `--cluster`'s options.
#[derive(Debug, PartialEq)]
struct ClusterArgs {
    port: Option<u16>,
    delay: Option<Duration>,
}

fn parse_cluster(args: &[String]) -> Option<ClusterArgs> {
    let mut out = ClusterArgs {
        port: None,
        delay: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--cluster" {
            continue;
        }
        if let Some(v) = a.strip_prefix("--stats-port=") {
            out.port = Some(v.parse().ok()?);
        } else if a == "--stats-port" {
            out.port = Some(it.next()?.parse().ok()?);
        } else if out.delay.is_none() {
            out.delay = Some(parse_delay(a)?);
        } else {
            return None;
        }
    }
    Some(out)
}

/// The hosts to ask: TCP and ssh hosts of the list, once each (localhost has no daemon).
fn cluster_hosts() -> Result<Vec<String>, String> {
    let hosts_var = ProcessEnv
        .var_os("DISTCC_HOSTS")
        .map(|v| v.to_string_lossy().into_owned());
    let list = distcc::hosts::load_default(hosts_var.as_deref(), &Dirs::from_process())
        .map_err(|e| e.to_string())?;
    let mut names: Vec<String> = Vec::new();
    for h in &list.hosts {
        let name = match &h.kind {
            HostKind::Local => continue,
            HostKind::Tcp { host, .. } | HostKind::Ssh { host, .. } => host,
        };
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    Ok(names)
}

/// The stats port: the option, else `DISTCC_STATS_PORT`, else 3633.
fn stats_port(option: Option<u16>) -> Result<u16, String> {
    if let Some(p) = option {
        return Ok(p);
    }
    match ProcessEnv.var_os("DISTCC_STATS_PORT") {
        None => Ok(DEFAULT_STATS_PORT),
        Some(v) => {
            let v = v.to_string_lossy();
            v.trim()
                .parse()
                .map_err(|_| format!("DISTCC_STATS_PORT={v:?} is not a port number"))
        }
    }
}

/// `host:port` in brackets for IPv6 addresses.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Display text from another machine: control characters shown escaped, so a name
/// cannot move the cursor or clear the screen.
fn clean(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// One host's part of the screen.
fn render_host(name: &str, status: &Result<Json, String>) -> String {
    let mut out = String::new();
    let s = match status {
        Ok(s) => s,
        Err(e) => {
            out.push_str(&format!("{name:<24} unavailable: {}\n", clean(e)));
            return out;
        }
    };
    let slots = s.get("slots");
    let limit = slots.map_or(0, |j| j.num("limit"));
    let busy = slots.map_or(0, |j| j.num("busy"));
    let queued = slots.map_or(0, |j| j.num("queued"));
    let bar: String = (0..limit.min(64))
        .map(|i| if i < busy { '#' } else { '-' })
        .collect();
    let c = s.get("counters");
    let count = |k: &str| c.map_or(0, |j| j.num(k));
    let failed = count("compile_error")
        + count("compile_timeout")
        + count("client_disconnect")
        + count("bad_request")
        + count("other");
    let label = format!("{name} ({})", clean(s.text("hostname")));
    out.push_str(&format!(
        "{label:<24} [{bar}] {busy}/{limit} busy, {queued} queued, {} ok, {failed} failed\n",
        count("compile_ok")
    ));
    for j in s.get("running").map(Json::as_array).unwrap_or_default() {
        out.push_str(&format!(
            "  slot {:<3} {:<22} {:<12} {:<30} {:.1} s\n",
            j.num("slot"),
            clean(j.text("client")),
            clean(j.text("compiler")),
            clean(j.text("file")),
            j.num("elapsed_ms") as f64 / 1000.0
        ));
    }
    out
}

/// `--cluster`: one screen of every host's slots and jobs, once or every DELAY.
fn cluster(args: &ClusterArgs) -> i32 {
    let port = match stats_port(args.port) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("distccmon-text[{}] ERROR: {e}", std::process::id());
            return 1;
        }
    };
    let hosts = match cluster_hosts() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("distccmon-text[{}] ERROR: {e}", std::process::id());
            return 1;
        }
    };
    loop {
        // Every host at once: one that does not answer costs its timeout, not everyone's.
        let statuses: Vec<_> = std::thread::scope(|scope| {
            let asks: Vec<_> = hosts
                .iter()
                .map(|h| {
                    scope.spawn(move || {
                        web::fetch_status(h, port, CLUSTER_TIMEOUT).map_err(|e| match e {
                            web::StatusError::Connect { source, .. } => source.to_string(),
                            e => e.to_string(),
                        })
                    })
                })
                .collect();
            asks.into_iter()
                .map(|a| a.join().unwrap_or_else(|_| Err("internal error".into())))
                .collect()
        });
        let mut out = String::new();
        if hosts.is_empty() {
            out.push_str("no distcc servers in the host list\n");
        }
        for (h, s) in hosts.iter().zip(&statuses) {
            out.push_str(&render_host(&host_port(h, port), s));
        }
        out.push('\n');
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(out.as_bytes())
            .and_then(|_| stdout.flush())
            .is_err()
        {
            return 0;
        }
        drop(stdout);
        match args.delay {
            None => return 0,
            Some(d) => std::thread::sleep(d),
        }
    }
}

/// `--summary [BUILD]`.
fn print_summary(build: Option<&str>) -> i32 {
    match distcc::client::outcome::summary(&Dirs::from_process(), build) {
        Ok(s) => {
            print!("{}", s.render());
            0
        }
        Err(e) => {
            eprintln!("distccmon-text[{}] ERROR: {e}", std::process::id());
            1
        }
    }
}

/// Parse DELAY like strtod with nothing after the number: a positive decimal.
fn parse_delay(s: &str) -> Option<Duration> {
    let v: f64 = s.trim_start().parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| Duration::from_secs_f64(v))
}

/// The per-host summary for terminals: `host: N jobs (phases…)`.
fn summary(states: &[TaskState]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < states.len() {
        let host = &states[i].host;
        let group: Vec<&TaskState> = states[i..].iter().take_while(|s| &s.host == host).collect();
        let running = group
            .iter()
            .filter(|s| s.phase != state::Phase::Done as i32)
            .count();
        out.push_str(&format!(
            "  {}: {running} job(s)\n",
            String::from_utf8_lossy(host)
        ));
        i += group.len();
    }
    out
}

/// Entry point; returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let args = crate::text_args(&args);
    let delay = match args.as_slice() {
        [v] if v == "--version" => {
            print!("{}", distcc::version_text("distccmon-text"));
            return 0;
        }
        [v] if v == "--summary" => return print_summary(None),
        [v, b] if v == "--summary" => return print_summary(Some(b)),
        a if a.iter().any(|x| x == "--cluster") => {
            return match parse_cluster(a) {
                Some(c) => cluster(&c),
                None => {
                    eprint!("{USAGE}");
                    1
                }
            };
        }
        [] => None,
        [d] => match parse_delay(d) {
            Some(d) => Some(d),
            None => {
                eprint!("{USAGE}");
                return 1;
            }
        },
        _ => {
            eprint!("{USAGE}");
            return 1;
        }
    };
    let dir = match temp::state_dir(&Dirs::from_process()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("distccmon-text[{}] ERROR: {e}", std::process::id());
            return ExitCode::IoError.code();
        }
    };
    let tty = std::io::stdout().is_terminal();
    loop {
        let states = match state::read_states(&dir, SystemTime::now()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "distccmon-text[{}] ERROR: {}: {e}",
                    std::process::id(),
                    dir.display()
                );
                return ExitCode::IoError.code();
            }
        };
        let mut out = Vec::new();
        for s in states
            .iter()
            .filter(|s| s.phase != state::Phase::Done as i32)
        {
            out.extend_from_slice(&s.monitor_line());
        }
        if tty && !states.is_empty() {
            out.extend_from_slice(summary(&states).as_bytes());
        }
        out.push(b'\n');
        let mut stdout = std::io::stdout().lock();
        if stdout.write_all(&out).and_then(|_| stdout.flush()).is_err() {
            return 0; // the reader went away (e.g. `| head`)
        }
        drop(stdout);
        match delay {
            None => return 0,
            Some(d) => std::thread::sleep(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays() {
        assert_eq!(parse_delay("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_delay("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_delay("1x"), None);
        assert_eq!(parse_delay("-1"), None);
        assert_eq!(parse_delay(""), None);
    }

    #[test]
    fn cluster_options() {
        let a = |v: &[&str]| parse_cluster(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            a(&["--cluster"]),
            Some(ClusterArgs {
                port: None,
                delay: None
            })
        );
        assert_eq!(
            a(&["--cluster", "--stats-port", "4000", "2"]),
            Some(ClusterArgs {
                port: Some(4000),
                delay: Some(Duration::from_secs(2))
            })
        );
        assert_eq!(a(&["--cluster", "--stats-port=99"]).unwrap().port, Some(99));
        assert_eq!(a(&["--cluster", "--stats-port"]), None);
        assert_eq!(a(&["--cluster", "1", "2"]), None);
    }

    #[test]
    fn a_host_line_shows_slots_and_jobs_and_hostile_names_stay_on_their_line() {
        let s = web::parse_json(
            r#"{"hostname":"b[2J","slots":{"limit":4,"busy":1,"queued":2},
            "running":[{"slot":0,"client":"10.0.0.1:5","compiler":"gcc","file":"x
slot 9.c","elapsed_ms":1500}],
            "counters":{"compile_ok":7,"compile_error":1}}"#,
        )
        .unwrap();
        let text = render_host("b:3633", &Ok(s));
        assert!(text.starts_with("b:3633 (b\\u{1b}[2J)"), "{text}");
        assert!(
            text.contains("[#---] 1/4 busy, 2 queued, 7 ok, 1 failed"),
            "{text}"
        );
        assert!(text.contains("slot 0 "), "{text}");
        assert!(text.contains("x\\nslot 9.c"), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(render_host("c:1", &Err("refused".into())).contains("unavailable: refused"));
    }
}
