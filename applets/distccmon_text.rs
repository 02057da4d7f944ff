//! The `distccmon-text` applet: `distccmon-text [DELAY]` lists the running jobs of
//! `$DISTCC_DIR/state`, once or every DELAY seconds, in distcc 3.4's exact format.
//!
//! Beyond distcc, and only when stdout is a terminal (scripts parse the plain output): a
//! summary line per host after each listing.
//!
//! `distccmon-text --summary [BUILD]` (ours) prints what a finished build's record in
//! `$DISTCC_DIR/record` adds up to: jobs compiled remotely and locally, why local (one
//! code per reason), jobs and time per host; for the newest build, or the one named.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use distcc::exitcode::ExitCode;
use distcc::settings::Dirs;
use distcc::state::{self, TaskState};
use distcc::temp;

const USAGE: &str = "usage: distccmon-text [DELAY]
       distccmon-text --summary [BUILD]

Displays current compilation jobs in text form.

If delay is specified, repeatedly updates after that many (fractional)
seconds.  Otherwise, runs just once.

With --summary, prints the record of the newest build (or of BUILD, its
DISTCC_BUILD_ID): remote and local jobs, why local, jobs and time per host.
";

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
}
