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

/// Make text safe for a one-line log record or a line of the stats page: backslash and
/// every control character (newline, carriage return, escape, NUL, C1 controls, and the
/// Unicode line and paragraph separators) become a visible escape (`\\`, `\n`, `\r`,
/// `\t`, `\x1b`, `\u{2028}`). Request text (file and compiler names, arguments) is under a
/// client's control; unescaped, a newline in a source name would write a forged summary
/// line into the daemon's log, and a terminal escape would rewrite the screen of whoever
/// reads it. Backslash is escaped too, so an escape in the log always means one character.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    fn special(c: char) -> bool {
        c == '\\' || c.is_control() || c == '\u{2028}' || c == '\u{2029}'
    }
    if !text.contains(special) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if special(c) && u32::from(c) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c if special(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A log record's message, escaped (see [`escape`]): every record is exactly one line,
/// whatever request text it quotes. Call sites pass request text as it is.
fn message(record: &Record) -> String {
    match record.args().as_str() {
        Some(s) => escape(s).into_owned(),
        None => {
            let text = record.args().to_string();
            match escape(&text) {
                std::borrow::Cow::Borrowed(_) => text,
                std::borrow::Cow::Owned(o) => o,
            }
        }
    }
}

/// The target of distcc 3.4's info-level records: start-up facts and per-job progress
/// (`connection from`, `… completed ok`, `job complete`), logged with
/// `log::info!(target: trace::DETAIL, …)`. syslog has a level between warning and info,
/// notice, which is distccd's default and shows job summaries only; the `log` crate has
/// not, so notice is `Info` without these records and info is `Info` with them.
pub const DETAIL: &str = "distcc::detail";

/// The program name and where/how much to log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub program: &'static str,
    pub level: LevelFilter,
    /// Whether [`DETAIL`] records are shown at `Info` (`--log-level info`); they always
    /// are at `Debug`.
    pub detail: bool,
    pub destination: Destination,
}

/// A `--log-level`: the `log` filter and whether info's [`DETAIL`] records pass it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verbosity {
    pub level: LevelFilter,
    pub detail: bool,
}

/// The severity prefix distcc prints after `prog[pid] `.
fn severity(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR: ",
        Level::Warn => "Warning: ",
        _ => "",
    }
}

/// distccd's `--log-level` names (syslog's). Notice (job summaries) and info (summaries
/// and [`DETAIL`]) are both the `log` crate's `Info`, told apart by `detail`.
pub fn parse_level(name: &str) -> Result<Verbosity, TraceError> {
    let (level, detail) = match name.to_ascii_lowercase().as_str() {
        "emerg" | "emergency" | "alert" | "crit" | "critical" | "err" | "error" => {
            (LevelFilter::Error, false)
        }
        "warn" | "warning" => (LevelFilter::Warn, false),
        "note" | "notice" => (LevelFilter::Info, false),
        "info" => (LevelFilter::Info, true),
        "debug" => (LevelFilter::Debug, true),
        _ => return Err(TraceError::BadLevel(name.to_owned())),
    };
    Ok(Verbosity { level, detail })
}

/// Whether a record of `level` for `target` is shown under `level`/`detail` filters.
fn shown(metadata: &Metadata, level: LevelFilter, detail: bool) -> bool {
    metadata.level() <= level && (detail || metadata.target() != DETAIL)
}

/// Largest descriptor number `UNCACHED_ERR_FD` may name; anything above is a mistake.
const MAX_ERR_FD: i32 = 1 << 20;

/// Can we log to the inherited descriptor `fd`? It must be above stderr, of a sane size,
/// open, and open for writing. A stale `UNCACHED_ERR_FD` (set by a ccache far up the
/// process tree, its descriptor long closed) must not be adopted: the number would later
/// be reused by a file we open — a lock, a temp file, an object — and log lines written
/// into it.
pub(crate) fn usable_fd(fd: i32) -> Result<(), String> {
    if !(3..=MAX_ERR_FD).contains(&fd) {
        return Err(format!("{fd} is not a descriptor above stderr"));
    }
    // SAFETY: F_GETFL only reads the descriptor's flags; an invalid fd gives -1/EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags == -1 {
        return Err(format!(
            "descriptor {fd} is not open: {}",
            std::io::Error::last_os_error()
        ));
    }
    match flags & libc::O_ACCMODE {
        libc::O_WRONLY | libc::O_RDWR => Ok(()),
        _ => Err(format!("descriptor {fd} is not open for writing")),
    }
}

/// Install the global logger. If the log file cannot be opened, log to stderr instead and
/// say so (distcc's behaviour) — a bad log path must never stop a compile.
pub fn init(config: &LogConfig) {
    let LogConfig {
        program,
        level,
        detail,
        destination,
    } = config.clone();
    // Debug shows everything info does.
    let detail = detail || level >= LevelFilter::Debug;
    if destination == Destination::Syslog {
        let logger = SyslogLogger::open(program, level, detail);
        if log::set_boxed_logger(Box::new(logger)).is_ok() {
            log::set_max_level(level);
        }
        return;
    }
    let mut open_error = None;
    let mut fd_note = None;
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
        Destination::Fd(fd) => match usable_fd(*fd) {
            // SAFETY: checked just above to be open for writing; we never close it (the File
            // lives in the logger for the life of the process).
            Ok(()) => Box::new(unsafe { std::fs::File::from_raw_fd(*fd) }),
            Err(why) => {
                fd_note = Some(why);
                Box::new(std::io::stderr())
            }
        },
        Destination::Stderr | Destination::Syslog => Box::new(std::io::stderr()),
    };
    let pid = std::process::id();
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    if !detail {
        builder.filter_module(DETAIL, LevelFilter::Warn);
    }
    let _ = builder
        .format(move |buf, record| {
            writeln!(
                buf,
                "{program}[{pid}] {}{}",
                severity(record.level()),
                message(record)
            )
        })
        .target(env_logger::Target::Pipe(target))
        .try_init();
    if let Some(e) = open_error {
        log::error!("{e}");
    }
    if let Some(why) = fd_note {
        log::debug!("UNCACHED_ERR_FD ignored: {why}; logging to stderr");
    }
}

/// A logger that sends each record to syslog(3), facility daemon, with our pid.
struct SyslogLogger {
    level: LevelFilter,
    detail: bool,
}

impl SyslogLogger {
    fn open(program: &'static str, level: LevelFilter, detail: bool) -> Self {
        // openlog keeps the ident pointer, so it must live forever.
        let ident: &'static CString = Box::leak(Box::new(
            CString::new(program).unwrap_or_else(|_| CString::from(c"distccd")),
        ));
        // SAFETY: ident is a valid, NUL-terminated, never-freed string.
        unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
        SyslogLogger { level, detail }
    }
}

impl Log for SyslogLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        shown(metadata, self.level, self.detail)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let priority = match record.level() {
            Level::Error => libc::LOG_ERR,
            Level::Warn => libc::LOG_WARNING,
            Level::Info if record.target() == DETAIL => libc::LOG_INFO,
            Level::Info => libc::LOG_NOTICE,
            Level::Debug | Level::Trace => libc::LOG_DEBUG,
        };
        let text = format!("{}{}", severity(record.level()), message(record));
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
        let v = |l| parse_level(l).unwrap();
        assert_eq!(v("critical").level, LevelFilter::Error);
        assert_eq!(v("warning").level, LevelFilter::Warn);
        assert_eq!(
            v("notice"),
            Verbosity {
                level: LevelFilter::Info,
                detail: false
            }
        );
        assert_eq!(
            v("info"),
            Verbosity {
                level: LevelFilter::Info,
                detail: true
            }
        );
        assert_eq!(v("DEBUG").level, LevelFilter::Debug);
        assert!(matches!(parse_level("loud"), Err(TraceError::BadLevel(_))));
    }

    #[test]
    fn detail_records_only_at_info_and_below() {
        let meta = |level, target| Metadata::builder().level(level).target(target).build();
        let summary = meta(Level::Info, "distcc::daemon::serve");
        let detail = meta(Level::Info, DETAIL);
        assert!(shown(&summary, LevelFilter::Info, false));
        assert!(!shown(&detail, LevelFilter::Info, false), "notice");
        assert!(shown(&detail, LevelFilter::Info, true), "info");
        assert!(!shown(&summary, LevelFilter::Warn, true));
    }

    #[test]
    fn escapes_control_characters_and_backslash() {
        assert!(matches!(
            escape("plain a.c"),
            std::borrow::Cow::Borrowed("plain a.c")
        ));
        assert_eq!(
            escape("x.c\nclient: 6.6.6.6 COMPILE_OK"),
            "x.c\\nclient: 6.6.6.6 COMPILE_OK"
        );
        assert_eq!(
            escape("a\\n\r\t\u{1b}[2J\0\u{7f}"),
            "a\\\\n\\r\\t\\x1b[2J\\x00\\x7f"
        );
        assert_eq!(escape("\u{85}\u{2028}caf\u{e9}"), "\\x85\\u{2028}caf\u{e9}");
        assert!(!escape("a\nb\rc\u{2029}d").contains(['\n', '\r', '\u{2029}']));
    }

    #[test]
    fn only_open_writable_descriptors_are_adopted() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let w = std::fs::File::create(dir.path().join("w")).unwrap();
        assert_eq!(usable_fd(w.as_raw_fd()), Ok(()));
        let r = std::fs::File::open(dir.path().join("w")).unwrap();
        assert!(usable_fd(r.as_raw_fd()).is_err(), "read-only");
        // A number in range that nothing has open (other tests' files come and go in
        // parallel, so not the number just closed).
        assert!(usable_fd(999_999).is_err(), "closed");
        for bad in [-1, 0, 1, 2, i32::MAX] {
            assert!(usable_fd(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn severity_prefixes() {
        assert_eq!(severity(Level::Error), "ERROR: ");
        assert_eq!(severity(Level::Warn), "Warning: ");
        assert_eq!(severity(Level::Info), "");
    }
}
