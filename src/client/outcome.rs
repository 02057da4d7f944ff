//! Why a job compiled where it did (issue #15, "why local"): one [`LocalReason`] code for
//! every job that does not compile remotely, a per-build record of every job's outcome in
//! `$DISTCC_DIR/record/<build id>`, and the summary `distccmon-text --summary` and
//! `DISTCC_SUMMARY=1 pump …` print from it.
//!
//! The most common distcc complaint is "everything runs locally and I don't know why":
//! the reasons were scattered over log lines at levels nobody enables. Here each has one
//! short, stable code, meant for scripts and for counting.
//!
//! The record is one text line per job, appended with a single `write` on an `O_APPEND`
//! descriptor: lines shorter than `PIPE_BUF` from concurrent clients never interleave, so
//! no lock is needed. Fields are separated by one space, the input file name comes last
//! (it may hold spaces):
//!
//! `<unix time> <pid> <where> <reason> <milliseconds> <status> <input>`
//!
//! `where` is the host's spec as written in the host list, `local`, or `none` (nothing
//! compiled: `DISTCC_FALLBACK=0`); `reason` is `-` for a remote job. A record stops
//! growing at [`MAX_RECORD`] bytes, with one last line saying so.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::settings::Dirs;

/// A record stops growing here (some 40 000 jobs): a runaway loop of compiles must not
/// fill the disk. The line that says so is written once.
pub const MAX_RECORD: u64 = 4 << 20;
/// The last line of a full record.
const FULL_MARK: &str = "# record full: later jobs are not recorded";
/// Records untouched for this long are removed when a new build starts one.
const KEEP_RECORDS: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest build id kept (a file name).
const MAX_ID: usize = 64;

/// Why a job compiled here (or, with `DISTCC_FALLBACK=0`, nowhere) instead of remotely.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LocalReason {
    // --- the command line ([`crate::args::scan`]) ---
    /// Not a compile: linking, or no `-c`/`-S`.
    Linking,
    /// An autoconf test (`conftest.c`): cheap, and its failures must be local ones.
    Conftest,
    /// `-E`: preprocessing only.
    PreprocessOnly,
    /// `-M`/`-MM` without `-MD`: dependency output only.
    DepsOnly,
    /// No source file on the command line.
    NoSource,
    /// More than one source file.
    TwoInputs,
    /// An operand that is not a source file distcc knows.
    NotSource,
    /// `-o -`.
    OutputStdout,
    /// `-x` with a language distcc doesn't distribute.
    Language,
    /// A response file (`@file`) the server would have to read.
    ResponseFile,
    /// An option that only works here or that a server refuses (`-march=native`, `-flto`,
    /// `-fplugin=…`, …); carries the option's name.
    LocalOnlyOption(String),
    // --- the client's situation ---
    /// A distcc started by a distcc's compiler: the outer job holds the slot.
    Nested,
    /// A word of the command line is not UTF-8.
    NotUtf8,
    /// No host list, or an empty one (or every host `,down`).
    NoHosts,
    /// The host list does not parse.
    BadHostList,
    /// Every host is backed off after recent failures.
    BackedOff,
    /// The host list chose `localhost`.
    Localhost,
    /// No lock directory: distcc compiles locally, unlocked.
    NoLock,
    /// Something on this machine failed (temp dir, writing the output).
    ClientTrouble,
    // --- the host ---
    /// The connection was refused, or failed (DNS, unreachable, ssh, SOCKS proxy).
    ConnectFailed,
    /// Connecting took longer than 4 s.
    ConnectTimeout,
    /// The server closed the connection without an answer: its `--allow` list or its
    /// compiler whitelist refused us (its log says which).
    RefusedByServer,
    /// The server refused with a reason (our protocol extension's `RFSE`); carries its
    /// code: `not-whitelisted`, `compiler-identity`, `auth-required`, ….
    Refused(String),
    /// The server has no such compiler.
    CompilerMissing,
    /// The server has no compiler with this compiler's identity (version, target, build:
    /// [`crate::identity`]), now or recently: skipped for this compiler only.
    CompilerIdentity,
    /// The host went quiet for `DISTCC_IO_TIMEOUT`.
    IoTimeout,
    /// The host broke the protocol, or the connection broke.
    HostFailed,
    /// The compiler crashed on the host, or the host's job timeout hit.
    HostCrashed,
    // --- the source ---
    /// The local preprocessor failed (the source's fault): compiled here for its messages.
    CppError,
    /// The host's compile failed; compiled again here for the local compiler's messages.
    RemoteErrorThenLocal,
    /// The job ran late on its host, and a local compile raced it and won.
    RacedLocalWon,
}

impl LocalReason {
    /// The stable short code (`linking`, `connect-failed`, `local-only-option:-flto`, …).
    pub fn code(&self) -> String {
        let s = match self {
            LocalReason::Linking => "linking",
            LocalReason::Conftest => "conftest",
            LocalReason::PreprocessOnly => "preprocess-only",
            LocalReason::DepsOnly => "deps-only",
            LocalReason::NoSource => "no-source",
            LocalReason::TwoInputs => "two-inputs",
            LocalReason::NotSource => "not-source",
            LocalReason::OutputStdout => "output-stdout",
            LocalReason::Language => "language",
            LocalReason::ResponseFile => "response-file",
            LocalReason::LocalOnlyOption(o) => return format!("local-only-option:{o}"),
            LocalReason::Nested => "nested",
            LocalReason::NotUtf8 => "not-utf8",
            LocalReason::NoHosts => "no-hosts",
            LocalReason::BadHostList => "bad-host-list",
            LocalReason::BackedOff => "backed-off",
            LocalReason::Localhost => "localhost",
            LocalReason::NoLock => "no-lock",
            LocalReason::ClientTrouble => "client-trouble",
            LocalReason::ConnectFailed => "connect-failed",
            LocalReason::ConnectTimeout => "connect-timeout",
            LocalReason::RefusedByServer => "refused-by-server",
            LocalReason::Refused(code) => return format!("refused:{code}"),
            LocalReason::CompilerMissing => "compiler-missing",
            LocalReason::CompilerIdentity => "compiler-identity",
            LocalReason::IoTimeout => "io-timeout",
            LocalReason::HostFailed => "host-failed",
            LocalReason::HostCrashed => "host-crashed",
            LocalReason::CppError => "cpp-error",
            LocalReason::RemoteErrorThenLocal => "remote-error-then-local",
            LocalReason::RacedLocalWon => "raced-local-won",
        };
        s.to_string()
    }

    /// The reason for the words [`crate::args::scan`] gives: the scan stays a pure
    /// function with its own messages, and its messages map onto codes here (tested
    /// below against the scanner itself, so a reworded message is noticed).
    pub(crate) fn from_scan(why: &str) -> LocalReason {
        match why {
            "-E: preprocessing only" => LocalReason::PreprocessOnly,
            "autoconf test" => LocalReason::Conftest,
            "compiler apparently called not for compile" | "called for link? (two outputs)" => {
                LocalReason::Linking
            }
            "no source file" => LocalReason::NoSource,
            "do we have two inputs?" => LocalReason::TwoInputs,
            "output to stdout" => LocalReason::OutputStdout,
            "-M without -MD: dependency output only" => LocalReason::DepsOnly,
            "-x with a language distcc doesn't distribute" => LocalReason::Language,
            "assembler listing" => LocalReason::LocalOnlyOption("-Wa".into()),
            w if w.ends_with(": an input that is not a source file") => LocalReason::NotSource,
            w if w.ends_with(": response file") => LocalReason::ResponseFile,
            // An option: `-march=native`, `-fplugin: runs a program`, `-o needs an argument`.
            w => {
                let word = w.split([':', ' ']).next().unwrap_or(w);
                if word.starts_with('-') {
                    LocalReason::LocalOnlyOption(word.to_string())
                } else {
                    LocalReason::LocalOnlyOption(w.to_string())
                }
            }
        }
    }
}

impl std::fmt::Display for LocalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.code())
    }
}

/// Where a job's result came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    /// Compiled on this host (its spec as in the host list).
    Remote(String),
    /// Compiled here.
    Local,
    /// Not compiled at all (`DISTCC_FALLBACK=0`).
    Nowhere,
}

impl Where {
    fn text(&self) -> &str {
        match self {
            Where::Remote(h) => h,
            Where::Local => "local",
            Where::Nowhere => "none",
        }
    }
}

/// One job's line in the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// Seconds since the epoch when the job ended.
    pub time: u64,
    pub pid: u32,
    pub input: String,
    pub at: Where,
    /// `None` for a job compiled remotely.
    pub reason: Option<LocalReason>,
    pub took: Duration,
    /// The job's exit status.
    pub status: i32,
}

/// A record line's `where` and `reason` as read back (codes are kept as text: a newer
/// client may write codes this reader does not know).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLine {
    pub at: String,
    pub reason: Option<String>,
    pub took: Duration,
    pub status: i32,
    pub input: String,
}

/// A word safe in a one-line, space-separated record.
fn field(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    if s.is_empty() { "-".into() } else { s }
}

impl JobRecord {
    /// The record line, newline included.
    pub fn line(&self) -> String {
        let reason = self.reason.as_ref().map_or("-".into(), LocalReason::code);
        let input: String = self
            .input
            .chars()
            .map(|c| if c == '\n' || c == '\r' { '?' } else { c })
            .collect();
        format!(
            "{} {} {} {} {} {} {}\n",
            self.time,
            self.pid,
            field(self.at.text()),
            field(&reason),
            self.took.as_millis(),
            self.status,
            input
        )
    }
}

/// Parse one record line; `None` for comments and garbage.
pub fn parse_line(line: &str) -> Option<RecordLine> {
    if line.starts_with('#') {
        return None;
    }
    let mut f = line.splitn(7, ' ');
    let _time: u64 = f.next()?.parse().ok()?;
    let _pid: u32 = f.next()?.parse().ok()?;
    let at = f.next()?.to_string();
    let reason = f.next()?;
    let ms: u64 = f.next()?.parse().ok()?;
    let status: i32 = f.next()?.parse().ok()?;
    let input = f.next().unwrap_or("").to_string();
    Some(RecordLine {
        at,
        reason: (reason != "-").then(|| reason.to_string()),
        took: Duration::from_millis(ms),
        status,
        input,
    })
}

/// Errors reading or writing records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Dir(#[from] crate::temp::TempError),
    #[error("failed to write the build record {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("failed to read the build records in {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("no build record in {0} (run a build with distcc first)")]
    NoRecord(PathBuf),
    #[error("no record of build {id:?} in {dir}")]
    NoSuchBuild { id: String, dir: PathBuf },
}

/// A build id as a file name: `[A-Za-z0-9._-]`, others become `_`, no leading dot,
/// at most [`MAX_ID`] characters.
pub fn sanitize_id(id: &str) -> String {
    let mut s: String = id
        .chars()
        .take(MAX_ID)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') || s.is_empty() {
        s.insert(0, '_');
    }
    s
}

/// The build id of this client: `DISTCC_BUILD_ID` when set (pump and wrappers set it),
/// else the session id, which every job of one `make` run from one terminal or script
/// shares.
pub(crate) fn build_id(given: Option<&str>) -> String {
    match given {
        Some(id) => sanitize_id(id),
        None => {
            // SAFETY: getsid(0) only reads our own session id.
            let sid = unsafe { libc::getsid(0) };
            format!("sid-{sid}")
        }
    }
}

/// `$DISTCC_DIR/record`, created on demand.
fn record_dir(dirs: &Dirs) -> Result<PathBuf, RecordError> {
    Ok(crate::temp::sub_dir(dirs, "record")?)
}

/// Append one job's line to its build's record; past [`MAX_RECORD`], nothing (once, a
/// line that says so, and a warning).
pub(crate) fn append(dirs: &Dirs, build: &str, rec: &JobRecord) -> Result<(), RecordError> {
    // Opened first; the directory is made only when that fails (one stat less a job).
    let dir = crate::temp::sub_dir_path(dirs, "record")?;
    let path = dir.join(sanitize_id(build));
    let werr = |source| RecordError::Write {
        path: path.clone(),
        source,
    };
    let mut file = crate::temp::in_dir(&dir, || {
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o666)
            .open(&path)
    })
    .map_err(werr)?;
    let size = file.metadata().map_err(werr)?.len();
    if size == 0 {
        prune(&dir, &path);
    }
    let line = rec.line();
    if size >= MAX_RECORD {
        return Ok(());
    }
    if size + line.len() as u64 > MAX_RECORD {
        log::warn!(
            "build record {} reached {} bytes; later jobs are not recorded",
            path.display(),
            MAX_RECORD
        );
        return file
            .write_all(format!("{FULL_MARK}\n").as_bytes())
            .map_err(werr);
    }
    // One write: O_APPEND makes it atomic against other clients' lines.
    file.write_all(line.as_bytes()).map_err(werr)
}

/// Remove records nobody has written to for [`KEEP_RECORDS`] (best effort).
fn prune(dir: &Path, keep: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let p = e.path();
        if p == keep {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > KEEP_RECORDS);
        if old {
            let _ = fs::remove_file(&p);
        }
    }
}

/// Now, as seconds since the epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The record of build `id`, or of the most recently written one.
fn find_record(dirs: &Dirs, id: Option<&str>) -> Result<(String, PathBuf), RecordError> {
    let dir = record_dir(dirs)?;
    if let Some(id) = id {
        let name = sanitize_id(id);
        let p = dir.join(&name);
        if !p.is_file() {
            return Err(RecordError::NoSuchBuild {
                id: id.to_string(),
                dir,
            });
        }
        return Ok((name, p));
    }
    let entries = fs::read_dir(&dir).map_err(|source| RecordError::Read {
        path: dir.clone(),
        source,
    })?;
    let newest = entries
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file().then_some((m.modified().ok()?, e.path()))
        })
        .max_by_key(|(t, _)| *t);
    match newest {
        Some((_, p)) => {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((name, p))
        }
        None => Err(RecordError::NoRecord(dir)),
    }
}

/// What one build's record adds up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub build: String,
    pub remote: usize,
    pub local: usize,
    /// Not compiled at all (`DISTCC_FALLBACK=0`).
    pub none: usize,
    /// Jobs that exited non-zero.
    pub failed: usize,
    /// Reason code → jobs.
    pub reasons: BTreeMap<String, usize>,
    /// Where (a host spec, or `local`) → (jobs, total time).
    pub hosts: BTreeMap<String, (usize, Duration)>,
    /// The record is full: later jobs are missing.
    pub full: bool,
}

impl Summary {
    /// Add up a record's text.
    pub fn from_text(build: &str, text: &str) -> Summary {
        let mut s = Summary {
            build: build.to_string(),
            ..Summary::default()
        };
        for line in text.lines() {
            if line == FULL_MARK {
                s.full = true;
            }
            let Some(r) = parse_line(line) else {
                continue;
            };
            match r.at.as_str() {
                "local" => s.local += 1,
                "none" => s.none += 1,
                _ => s.remote += 1,
            }
            if r.status != 0 {
                s.failed += 1;
            }
            if let Some(reason) = r.reason {
                *s.reasons.entry(reason).or_default() += 1;
            }
            if r.at != "none" {
                let e = s.hosts.entry(r.at).or_default();
                e.0 += 1;
                e.1 += r.took;
            }
        }
        s
    }

    /// The text `distccmon-text --summary` prints.
    pub fn render(&self) -> String {
        let total = self.remote + self.local + self.none;
        let mut out = format!(
            "build {}: {total} job(s), {} remote, {} local",
            self.build, self.remote, self.local
        );
        if self.none > 0 {
            out.push_str(&format!(", {} not compiled", self.none));
        }
        if self.failed > 0 {
            out.push_str(&format!(", {} failed", self.failed));
        }
        out.push('\n');
        if !self.reasons.is_empty() {
            out.push_str("why not remote:\n");
            let mut reasons: Vec<_> = self.reasons.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (code, n) in reasons {
                out.push_str(&format!("  {code:<28} {n:>6}\n"));
            }
        }
        if !self.hosts.is_empty() {
            out.push_str("where:\n");
            for (host, (n, took)) in &self.hosts {
                out.push_str(&format!(
                    "  {host:<28} {n:>6} job(s) {:>10.2}s\n",
                    took.as_secs_f64()
                ));
            }
        }
        if self.full {
            out.push_str("(the record is full: later jobs are not counted)\n");
        }
        out
    }
}

/// The summary of build `id`, or of the newest build in `$DISTCC_DIR/record`.
pub fn summary(dirs: &Dirs, id: Option<&str>) -> Result<Summary, RecordError> {
    let (name, path) = find_record(dirs, id)?;
    let bytes = fs::read(&path).map_err(|source| RecordError::Read {
        path: path.clone(),
        source,
    })?;
    Ok(Summary::from_text(&name, &String::from_utf8_lossy(&bytes)))
}

/// How long `--explain` waits for a probe's reply.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The probe: a protocol-1 compile of a one-line source (`lsdistcc`'s shape).
const PROBE_SOURCE: &[u8] = b"int distcc_probe;\n";

/// What `--explain` found about one host.
enum HostCheck {
    /// It would take the job: the compiler's name and version there (from the probe's
    /// object, if it tells), and how the client talks to the host ([`link_text`]).
    Ok(Option<String>, String),
    /// `localhost` in the list: the job compiles here.
    Local,
    /// `,down`: never used.
    Down,
    /// Not usable: why.
    No(LocalReason, String),
}

/// `distcc --explain COMPILER ARGS…`: where the command would compile and why, without
/// compiling it — the scan's verdict, then each host of the list: `,down`, backed off,
/// reachable (the same connect, 4 s timeout), and whether its whitelist takes this
/// compiler (a tiny probe compile, with the compiler's identity compared to ours).
pub(crate) fn explain(
    inv: &super::invocation::Invocation,
    env: &crate::settings::ClientEnv,
) -> String {
    use crate::args::{argv_to_string, scan};
    let mut out = String::new();
    let job = super::rewrite::for_job(inv, env);
    let scanned = scan(&job);
    out.push_str(&format!("command: {}\n", argv_to_string(&job.argv)));
    if let Some(why) = scanned.local_reason {
        out.push_str(&format!(
            "verdict: local ({why}): the command line is not a distributable compile\n"
        ));
        return out;
    }
    let list = match crate::hosts::load_default(env.hosts.as_deref(), &env.dirs) {
        Ok(l) => l,
        Err(e) => {
            let why = match e {
                crate::hosts::HostsError::Syntax(_) => LocalReason::BadHostList,
                _ => LocalReason::NoHosts,
            };
            out.push_str(&format!("hosts: {e}\nverdict: local ({why})\n"));
            return out;
        }
    };
    out.push_str(&format!(
        "hosts: {} ({} host(s))\n",
        list.source_name,
        list.hosts.len()
    ));
    let backoff = crate::temp::lock_dir(&env.dirs)
        .ok()
        .map(|d| crate::backoff::Backoff::new(&d, env.backoff_period));
    let compiler = job.argv.first().cloned().unwrap_or_default();
    let mine = local_identity(inv, &compiler);
    let ident = crate::identity::for_client(inv, env, &compiler);
    if let Some(id) = &ident {
        out.push_str(&format!(
            "compiler identity: {id} (build {})\n",
            id.short_fingerprint()
        ));
    }
    let skips = ident
        .as_ref()
        .and_then(|id| Some((crate::identity::Skips::for_client(env)?, id)));
    let mut verdict: Option<String> = None;
    let mut first_no: Option<LocalReason> = None;
    for host in &list.hosts {
        let refused = skips
            .as_ref()
            .and_then(|(s, id)| s.refused(&host.lock_key(), id));
        let check = match refused {
            Some(msg) if !host.down && host.kind != crate::hosts::HostKind::Local => HostCheck::No(
                LocalReason::CompilerIdentity,
                format!("refused this compiler recently: {msg}"),
            ),
            _ => check_host(host, backoff.as_ref(), &compiler, ident.as_ref(), env),
        };
        let line = match &check {
            HostCheck::Ok(theirs, link) => {
                let id = match (theirs, &mine) {
                    (Some(t), Some(m)) if t != m => {
                        format!("; compiler-mismatch: theirs is {t:?}, ours {m:?}")
                    }
                    (Some(t), _) => format!("; {t}"),
                    _ => String::new(),
                };
                format!("ok: accepts {compiler}{id}; {link}")
            }
            HostCheck::Local => "localhost: compiles here".to_string(),
            HostCheck::Down => "down (,down in the host list)".to_string(),
            HostCheck::No(why, detail) => format!("{why}: {detail}"),
        };
        out.push_str(&format!("  {}: {line}\n", host.spec));
        if verdict.is_some() {
            continue;
        }
        match check {
            HostCheck::Ok(..) => verdict = Some(format!("verdict: remote on {}\n", host.spec)),
            // As the client does: a host that fails is skipped for the next one.
            HostCheck::Local => {
                verdict = Some(format!("verdict: local ({})\n", LocalReason::Localhost))
            }
            HostCheck::No(why, _) if first_no.is_none() => first_no = Some(why),
            _ => {}
        }
    }
    let verdict = verdict.unwrap_or_else(|| {
        let why = first_no.unwrap_or(LocalReason::NoHosts);
        format!("verdict: local ({why})\n")
    });
    out.push_str(&verdict);
    out
}

/// One host as `--explain` sees it: the probe goes the way a job would (over the protocol
/// extension and a paired host's channel where they apply, with the compiler's identity
/// when the host asks for it).
fn check_host(
    host: &crate::hosts::HostSpec,
    backoff: Option<&crate::backoff::Backoff>,
    compiler: &str,
    ident: Option<&crate::identity::Identity>,
    env: &crate::settings::ClientEnv,
) -> HostCheck {
    use crate::connection::ConnError;
    if host.down {
        return HostCheck::Down;
    }
    if host.kind == crate::hosts::HostKind::Local {
        return HostCheck::Local;
    }
    if backoff.is_some_and(|b| b.is_backed_off(&host.lock_key())) {
        return HostCheck::No(
            LocalReason::BackedOff,
            format!(
                "failed recently; skipped for up to {} s",
                env.backoff_period.as_secs()
            ),
        );
    }
    let mut session = match super::remote::open(host, env, PROBE_TIMEOUT, true) {
        Ok(s) => s,
        Err(e) => return HostCheck::No(super::compile::fault_reason(&e), e.to_string()),
    };
    let link = link_text(session.agreed.as_ref());
    let request = crate::protocol::Request {
        version: 1,
        cwd: None,
        argv: [compiler, "-c", "distcc_probe.c", "-o", "distcc_probe.o"]
            .iter()
            .map(|w| w.to_string())
            .collect(),
        body: crate::protocol::Body::Source(crate::protocol::Payload::Plain(PROBE_SOURCE.to_vec())),
    };
    let mut bytes = Vec::new();
    session.preamble(&request.argv, ident, &mut bytes);
    match crate::protocol::encode_request(&request) {
        Ok(b) => bytes.extend_from_slice(&b),
        Err(e) => return HostCheck::No(LocalReason::ClientTrouble, e.to_string()),
    }
    let conn = &mut session.wire;
    let reply = conn.send(&bytes).and_then(|()| conn.read_reply(1));
    match reply {
        Ok(r) => {
            let ret = super::local::critique_raw(r.status);
            if ret == 0 {
                return HostCheck::Ok(identity(&r.object), link);
            }
            let why = if ret == crate::exitcode::ExitCode::CompilerMissing.code() {
                LocalReason::CompilerMissing
            } else {
                LocalReason::HostFailed
            };
            let serr = String::from_utf8_lossy(&r.stderr);
            let first = serr.lines().next().unwrap_or("");
            HostCheck::No(
                why,
                format!("the probe compile failed with status {ret}: {first}"),
            )
        }
        Err(ConnError::NoAnswer) => HostCheck::No(
            LocalReason::RefusedByServer,
            format!(
                "closed the connection without an answer: its --allow list or its compiler \
                 whitelist refuses {compiler} (the server's log says which)"
            ),
        ),
        Err(e) => {
            let e = super::remote::RemoteError::from(e);
            HostCheck::No(super::compile::fault_reason(&e), e.to_string())
        }
    }
}

/// How a job talks to a host, for `--explain`: distcc 3.4's protocols, or our extension
/// with what it agreed (an encrypted channel only with a host paired by
/// `distcc-config --pair`).
fn link_text(agreed: Option<&crate::ext::Agreed>) -> String {
    let Some(a) = agreed else {
        return "speaks distcc 3.4's protocols (no extension)".to_string();
    };
    let uses = a
        .answer
        .get("use")
        .filter(|u| !u.is_empty())
        .unwrap_or("nothing");
    let channel = if a.noise {
        "paired: encrypted channel"
    } else {
        "not paired: clear channel"
    };
    format!(
        "speaks {} {} (using {uses}); {channel}",
        crate::ext::EXT_NAME,
        a.answer.version
    )
}

/// The compiler's name and version as it stamps them into objects (ELF `.comment`:
/// `GCC: (Debian 12.2.0-14) 12.2.0`, `clang version 14.0.6`).
fn identity(object: &[u8]) -> Option<String> {
    for needle in [&b"GCC: ("[..], &b"clang version "[..]] {
        if let Some(at) = object.windows(needle.len()).position(|w| w == needle) {
            let rest = object.get(at..)?;
            let end = rest
                .iter()
                .position(|b| *b == 0)
                .unwrap_or(rest.len())
                .min(200);
            return Some(String::from_utf8_lossy(rest.get(..end)?).into_owned());
        }
    }
    None
}

/// Our compiler's identity: the probe compiled here (`None` if that fails).
fn local_identity(inv: &super::invocation::Invocation, compiler: &str) -> Option<String> {
    let dir = tempfile::tempdir().ok()?;
    let src = dir.path().join("distcc_probe.c");
    fs::write(&src, PROBE_SOURCE).ok()?;
    let obj = dir.path().join("distcc_probe.o");
    let argv = [
        compiler.to_string(),
        "-c".into(),
        src.to_string_lossy().into_owned(),
        "-o".into(),
        obj.to_string_lossy().into_owned(),
    ];
    let status = super::local::command(inv, &argv)
        .ok()?
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    identity(&fs::read(&obj).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::scan;

    fn reason(cmd: &str) -> Option<String> {
        let v: Vec<String> = cmd.split(' ').map(String::from).collect();
        scan(&v).local_reason.map(|r| r.code())
    }

    #[test]
    fn scan_reasons_have_codes() {
        for (cmd, code) in [
            ("gcc a.o -o a", "linking"),
            ("gcc -c conftest.c", "conftest"),
            ("gcc -E a.c", "preprocess-only"),
            ("gcc -M a.c", "deps-only"),
            ("gcc -c", "no-source"),
            ("gcc -c a.c b.c", "two-inputs"),
            ("gcc -c a.c -o -", "output-stdout"),
            (
                "gcc -march=native -c a.c",
                "local-only-option:-march=native",
            ),
            ("gcc -flto -c a.c", "local-only-option:-flto"),
            ("gcc -c a.c x.h", "not-source"),
        ] {
            assert_eq!(reason(cmd).as_deref(), Some(code), "{cmd}");
        }
        assert_eq!(reason("gcc -c a.c -o a.o"), None);
    }

    #[test]
    fn lines_round_trip_and_sum_up() {
        let rec = |at: Where, reason: Option<LocalReason>, ms: u64, input: &str| JobRecord {
            time: 1,
            pid: 2,
            input: input.into(),
            at,
            reason,
            took: Duration::from_millis(ms),
            status: 0,
        };
        let a = rec(
            Where::Remote("h:1/4,lzo".into()),
            None,
            1500,
            "dir with space/a.c",
        );
        let line = a.line();
        let back = parse_line(line.trim_end()).unwrap();
        assert_eq!(back.at, "h:1/4,lzo");
        assert_eq!(back.reason, None);
        assert_eq!(back.input, "dir with space/a.c");
        let b = rec(
            Where::Local,
            Some(LocalReason::PreprocessOnly),
            500,
            "b\nc.c",
        );
        assert_eq!(b.line().lines().count(), 1);
        let c = rec(Where::Local, Some(LocalReason::ConnectFailed), 250, "c.c");
        let text = format!("{line}{}{}# comment\ngarbage\n", b.line(), c.line());
        let s = Summary::from_text("x", &text);
        assert_eq!((s.remote, s.local, s.none), (1, 2, 0));
        assert_eq!(s.reasons.get("preprocess-only"), Some(&1));
        assert_eq!(s.reasons.get("connect-failed"), Some(&1));
        assert_eq!(s.hosts.get("local"), Some(&(2, Duration::from_millis(750))));
        let shown = s.render();
        assert!(shown.contains("3 job(s), 1 remote, 2 local"), "{shown}");
    }

    #[test]
    fn record_stops_at_its_bound_and_says_so_once() {
        let t = tempfile::tempdir().unwrap();
        let dirs = Dirs::at(t.path());
        let rec = JobRecord {
            time: 1,
            pid: 2,
            input: "a.c".into(),
            at: Where::Local,
            reason: Some(LocalReason::Linking),
            took: Duration::ZERO,
            status: 0,
        };
        append(&dirs, "b", &rec).unwrap();
        let path = t.path().join("record/b");
        assert_eq!(fs::read_to_string(&path).unwrap(), rec.line());
        // Nearly full: the next line does not fit, the mark does.
        let pad = MAX_RECORD as usize - 5 - rec.line().len();
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(format!("#{}\n", "x".repeat(pad - 2)).as_bytes())
            .unwrap();
        append(&dirs, "b", &rec).unwrap();
        append(&dirs, "b", &rec).unwrap();
        let text = fs::read(&path).unwrap();
        let tail = String::from_utf8_lossy(&text[(MAX_RECORD - 5) as usize..]).into_owned();
        assert_eq!(tail, format!("{FULL_MARK}\n"));
        let s = summary(&dirs, Some("b")).unwrap();
        assert!(s.full);
        assert_eq!(s.local, 1);
    }

    #[test]
    fn ids_are_file_names() {
        assert_eq!(sanitize_id("../x y"), "_.._x_y");
        assert_eq!(sanitize_id(""), "_");
        assert_eq!(sanitize_id("pump-12.3"), "pump-12.3");
    }
}
