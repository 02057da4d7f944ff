//! Logging in distcc's shapes and destinations (distcc 3.4 `trace.c`).
//!
//! Lines look like `distcc[1234] ERROR: message` (distcc's "no function name" form; the
//! severity prefix is empty for notice/info/debug), because people grep distcc logs.
//! Destinations: stderr, a file opened for append (`DISTCC_LOG`, `distccd --log-file`), an
//! inherited file descriptor (`UNCACHED_ERR_FD`, used by ccache), or syslog (distccd's
//! default, facility daemon).

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::path::PathBuf;

use log::{Level, LevelFilter, Log, Metadata, Record};
use thiserror::Error;

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    /// Append to this file.
    File(PathBuf),
    /// Write to this already-open descriptor.
    Fd(i32),
    Syslog,
}

#[derive(Debug, Error)]
pub enum TraceError {
    #[error("failed to open logfile {path}: {source}")]
    OpenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "unknown log level {0:?} (use emerg, alert, crit, err, warning, notice, info or debug)"
    )]
    BadLevel(String),
}

/// The program name and where/how much to log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub program: &'static str,
    pub level: LevelFilter,
    pub destination: Destination,
}

/// The severity prefix distcc prints after `prog[pid] `.
fn severity(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR: ",
        Level::Warn => "Warning: ",
        _ => "",
    }
}

/// distccd's `--log-level` names (syslog's). Notice has no `log` crate equivalent and maps to
/// info, which is where job summaries are logged.
pub fn parse_level(name: &str) -> Result<LevelFilter, TraceError> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "emerg" | "emergency" | "alert" | "crit" | "critical" | "err" | "error" => {
            LevelFilter::Error
        }
        "warn" | "warning" => LevelFilter::Warn,
        "note" | "notice" | "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        _ => return Err(TraceError::BadLevel(name.to_owned())),
    })
}

/// The client's logging from its environment: `DISTCC_VERBOSE=1` means debug;
/// `DISTCC_LOG=file` logs there at info (debug if verbose); else `UNCACHED_ERR_FD=n`; else
/// stderr at warning level.
pub fn client_config_from_env() -> LogConfig {
    let verbose = std::env::var("DISTCC_VERBOSE").is_ok_and(|v| v.trim() == "1");
    let (destination, quiet_level) = if let Some(path) = std::env::var_os("DISTCC_LOG")
        && !path.is_empty()
    {
        (Destination::File(PathBuf::from(path)), LevelFilter::Info)
    } else if let Some(fd) = std::env::var("UNCACHED_ERR_FD")
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|fd| *fd > 2)
    {
        (Destination::Fd(fd), LevelFilter::Warn)
    } else {
        (Destination::Stderr, LevelFilter::Warn)
    };
    LogConfig {
        program: "distcc",
        level: if verbose {
            LevelFilter::Debug
        } else {
            quiet_level
        },
        destination,
    }
}

/// Install the global logger. If the log file cannot be opened, log to stderr instead and
/// say so (distcc's behaviour) — a bad log path must never stop a compile.
pub fn init(config: &LogConfig) {
    let LogConfig {
        program,
        level,
        destination,
    } = config.clone();
    if destination == Destination::Syslog {
        let logger = SyslogLogger::open(program, level);
        if log::set_boxed_logger(Box::new(logger)).is_ok() {
            log::set_max_level(level);
        }
        return;
    }
    let mut open_error = None;
    let target: Box<dyn Write + Send> = match &destination {
        Destination::File(path) => match OpenOptions::new().append(true).create(true).open(path) {
            Ok(f) => Box::new(f),
            Err(source) => {
                open_error = Some(TraceError::OpenFile {
                    path: path.clone(),
                    source,
                });
                Box::new(std::io::stderr())
            }
        },
        // SAFETY: the user told us this descriptor is open for us to write; we never close it
        // (the File is leaked into the logger for the life of the process).
        Destination::Fd(fd) => Box::new(unsafe { std::fs::File::from_raw_fd(*fd) }),
        Destination::Stderr | Destination::Syslog => Box::new(std::io::stderr()),
    };
    let pid = std::process::id();
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .format(move |buf, record| {
            writeln!(
                buf,
                "{program}[{pid}] {}{}",
                severity(record.level()),
                record.args()
            )
        })
        .target(env_logger::Target::Pipe(target))
        .try_init();
    if let Some(e) = open_error {
        log::error!("{e}");
    }
}

/// A logger that sends each record to syslog(3), facility daemon, with our pid.
struct SyslogLogger {
    level: LevelFilter,
}

impl SyslogLogger {
    fn open(program: &'static str, level: LevelFilter) -> Self {
        // openlog keeps the ident pointer, so it must live forever.
        let ident: &'static CString = Box::leak(Box::new(
            CString::new(program).unwrap_or_else(|_| CString::from(c"distccd")),
        ));
        // SAFETY: ident is a valid, NUL-terminated, never-freed string.
        unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
        SyslogLogger { level }
    }
}

impl Log for SyslogLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let priority = match record.level() {
            Level::Error => libc::LOG_ERR,
            Level::Warn => libc::LOG_WARNING,
            Level::Info => libc::LOG_NOTICE,
            Level::Debug | Level::Trace => libc::LOG_DEBUG,
        };
        let text = format!("{}{}", severity(record.level()), record.args()).replace('\0', " ");
        if let Ok(msg) = CString::new(text) {
            // SAFETY: "%s" with one valid C string argument.
            unsafe { libc::syslog(priority, c"%s".as_ptr(), msg.as_ptr()) };
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_like_distccd() {
        assert_eq!(parse_level("critical").unwrap(), LevelFilter::Error);
        assert_eq!(parse_level("warning").unwrap(), LevelFilter::Warn);
        assert_eq!(parse_level("notice").unwrap(), LevelFilter::Info);
        assert_eq!(parse_level("DEBUG").unwrap(), LevelFilter::Debug);
        assert!(matches!(parse_level("loud"), Err(TraceError::BadLevel(_))));
    }

    #[test]
    fn severity_prefixes() {
        assert_eq!(severity(Level::Error), "ERROR: ");
        assert_eq!(severity(Level::Warn), "Warning: ");
        assert_eq!(severity(Level::Info), "");
    }
}
