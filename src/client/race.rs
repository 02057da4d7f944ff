//! Racing a remote job that takes far too long with a local compile (issue #12): a host
//! that is overloaded, swapping or half-dead still answers keepalives, so nothing times
//! out, and the build waits for one slow job. When a job has run well past what its host
//! usually needs, and a local compile slot is free right now, we start the same compile
//! here too and take whichever finishes first.
//!
//! Trust comes first, so:
//! * the local compile runs the user's own command from source (its messages are exactly
//!   a local build's), writing to private names beside the real outputs; only the winner's
//!   files are ever put in place, by a rename in the same directory — the remote result
//!   through [`super::output::write_output`] as always, the local one here;
//! * the local compile runs in a process group of its own, killed and reaped whenever it
//!   loses (or we are interrupted: [`super::cleanup`]), and its files are removed;
//! * no history, no race: a host needs [`MIN_JOBS`] successful jobs on record first.
//!
//! The history is one small text file per host (its lock key) in `$DISTCC_DIR/race`,
//! replaced atomically (a temp file renamed over it), so concurrent clients only ever read
//! a whole file; two clients updating at the same instant may lose one sample, which
//! does not matter for an average. Garbage reads as "no history".

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::cleanup::{self, Registered, RegisteredGroup};
use super::cpp::TempFile;
use super::invocation::Invocation;
use super::local::{command, critique};
use super::wire::{Duplex, Wire};
use crate::args::{argv_to_string, is_object};
use crate::connection::ConnError;
use crate::options::{self, Class, Tool};
use crate::protocol::Reply;
use crate::scheduler::LocalSlot;
use crate::settings::ClientEnv;
use crate::temp::TempError;

/// Successful remote jobs a host needs on record before any of its jobs is raced.
pub(crate) const MIN_JOBS: u32 = 5;
/// A job is late at `FACTOR` × the host's average…
const FACTOR: u32 = 3;
/// …and never before average + `SLACK`: for jobs of a fraction of a second, 3× is within
/// the jitter of a busy network or an oversubscribed build machine (`make -j` on loaded
/// cores delays single jobs by seconds), and a race costs a local CPU for a whole
/// compile. For long jobs the factor decides: a 20 s average races at 60 s, not 25 s,
/// since some sources simply take longer than others.
const SLACK: Duration = Duration::from_secs(5);
/// Local wins in a row that shorten the wait (each halves it, down to the average).
const MAX_STRIKES: u32 = 3;
/// Weight of a new sample in the moving average: 1/`WEIGHT` (a plain mean before that).
const WEIGHT: u32 = 4;
const MAX_COUNT: u32 = 1_000_000;
/// How often to look at the local compile when no pidfd can wake us for it.
const POLL_TICK: Duration = Duration::from_millis(100);

/// Problems setting up a race (each means only "don't race this job").
#[derive(Debug, thiserror::Error)]
pub(crate) enum RaceError {
    #[error(transparent)]
    Dir(#[from] TempError),
    #[error("failed to write race history {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Unsuitable(String),
    #[error("failed to start the local compile ({cmd}): {source}")]
    Spawn { cmd: String, source: io::Error },
    #[error(transparent)]
    Client(#[from] super::ClientError),
}

/// What one host's recent jobs say.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Record {
    /// Successful remote jobs seen (capped).
    pub count: u32,
    /// Moving average of their durations (from the source sent to the reply received).
    pub avg: Duration,
    /// Recent races the local compile won (0..=[`MAX_STRIKES`]).
    pub strikes: u32,
}

impl Record {
    /// `v1 COUNT AVG_MICROS STRIKES`; anything else is `None`.
    fn parse(text: &str) -> Option<Record> {
        let mut words = text.split_ascii_whitespace();
        if words.next()? != "v1" {
            return None;
        }
        let count = words.next()?.parse::<u32>().ok()?;
        let micros = words.next()?.parse::<u64>().ok()?;
        let strikes = words.next()?.parse::<u32>().ok()?;
        if words.next().is_some() {
            return None;
        }
        Some(Record {
            count: count.min(MAX_COUNT),
            avg: Duration::from_micros(micros),
            strikes: strikes.min(MAX_STRIKES),
        })
    }

    fn to_text(self) -> String {
        format!(
            "v1 {} {} {}\n",
            self.count,
            u64::try_from(self.avg.as_micros()).unwrap_or(u64::MAX),
            self.strikes
        )
    }

    /// After a remote job that took `took` and was accepted.
    pub(crate) fn with_remote(self, took: Duration) -> Record {
        let count = self.count.saturating_add(1).min(MAX_COUNT);
        let n = f64::from(count.min(WEIGHT));
        let avg = self.avg.as_secs_f64() + (took.as_secs_f64() - self.avg.as_secs_f64()) / n;
        Record {
            count,
            avg: Duration::try_from_secs_f64(avg.max(0.0)).unwrap_or(self.avg),
            strikes: self.strikes.saturating_sub(1),
        }
    }

    /// After a race the local compile won. Its time is not a sample (the host's real time
    /// is unknown, only longer), but the host is now late: race it sooner.
    pub(crate) fn with_local_win(self) -> Record {
        Record {
            strikes: (self.strikes + 1).min(MAX_STRIKES),
            ..self
        }
    }

    /// How long after the source went out a job on this host is late enough to race:
    /// `max(FACTOR × avg, avg + SLACK)`, halved for each strike but never below the
    /// average. `None`: too little history.
    pub(crate) fn race_after(&self) -> Option<Duration> {
        if self.count < MIN_JOBS {
            return None;
        }
        let base = (self.avg * FACTOR).max(self.avg + SLACK);
        let shrunk = base / (1u32 << self.strikes.min(MAX_STRIKES));
        Some(shrunk.max(self.avg))
    }
}

/// The hosts' records, in one directory.
#[derive(Debug, Clone)]
pub(crate) struct History {
    dir: PathBuf,
}

impl History {
    pub(crate) fn new(dir: &Path) -> History {
        History {
            dir: dir.to_path_buf(),
        }
    }

    /// `$DISTCC_DIR/race` (created when a record is first written).
    pub(crate) fn for_client(env: &ClientEnv) -> Result<History, RaceError> {
        Ok(History::new(&crate::temp::sub_dir_path(&env.dirs, "race")?))
    }

    fn path(&self, key: &str) -> PathBuf {
        // Lock keys are `tcp_HOST_PORT` / `ssh_HOST`; keep any odd byte out of the path.
        let name: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_-.:[]".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("host_{name}"))
    }

    /// The record for `key`; an empty one if there is none or it is unreadable.
    pub(crate) fn load(&self, key: &str) -> Record {
        fs::read(self.path(key))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| Record::parse(&t))
            .unwrap_or_default()
    }

    /// Replace the record for `key` with `change(old)`, atomically.
    pub(crate) fn update(
        &self,
        key: &str,
        change: impl FnOnce(Record) -> Record,
    ) -> Result<Record, RaceError> {
        let new = change(self.load(key));
        let path = self.path(key);
        // One create (O_EXCL), written through the descriptor it gave, then renamed over
        // the record: readers see the old record or the new one, never half of one.
        let create = || {
            crate::temp::create_temp_file_in(&self.dir, ".tmp_", ".new").map_err(|e| match e {
                TempError::CreateTemp { source, .. } => source,
                other => io::Error::other(other.to_string()),
            })
        };
        let (tmp, mut file) =
            crate::temp::in_dir(&self.dir, create).map_err(|source| RaceError::Write {
                path: path.clone(),
                source,
            })?;
        let _cleanup = cleanup::register(&tmp);
        let written = file
            .write_all(new.to_text().as_bytes())
            .and_then(|()| fs::rename(&tmp, &path));
        drop(file);
        if let Err(source) = written {
            let _ = fs::remove_file(&tmp);
            return Err(RaceError::Write { path, source });
        }
        Ok(new)
    }
}

/// A file the local compile may create beside a real output: removed when dropped unless
/// it was moved into place.
#[derive(Debug)]
struct Sibling {
    path: PathBuf,
    moved: bool,
    _cleanup: Registered,
}

impl Sibling {
    /// `<dir of target>/.<name of target>.distcc-race-<pid>-<random>` — not created: the
    /// compiler creates it with the mode a local compile gives its output.
    fn beside(target: &Path) -> Sibling {
        let name = crate::paths::basename(target);
        let unique = format!(
            ".{name}.distcc-race-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        );
        let path = target.with_file_name(unique);
        let _cleanup = cleanup::register(&path);
        Sibling {
            path,
            moved: false,
            _cleanup,
        }
    }

    fn text(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    fn move_to(&mut self, target: &Path) -> io::Result<()> {
        fs::rename(&self.path, target)?;
        self.moved = true;
        Ok(())
    }
}

impl Drop for Sibling {
    fn drop(&mut self) {
        if !self.moved {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Does the command write a `.d` file (`-MD`, `-MMD` and their long spellings)?
fn wants_dotd(argv: &[String]) -> bool {
    argv.iter().enumerate().skip(1).any(|(i, w)| {
        options::lookup(w, argv.get(i + 1).map(String::as_str)).class() == Class::DepsOn
    })
}

/// The local command with its outputs redirected: every `-o` replaced by `-o obj`; when
/// it writes a `.d`, `-MF dotd` last (gcc and clang use the last one) and, unless a target
/// is named, `-MQ output` — the target gcc would derive from the real `-o`. `None` when
/// the command could write elsewhere in a way we can't redirect.
fn redirected_argv(
    argv: &[String],
    output: &str,
    obj: &str,
    dotd: Option<&str>,
) -> Option<Vec<String>> {
    let mut out: Vec<String> = argv.first().cloned().into_iter().collect();
    let mut has_target = false;
    let mut i = 1;
    while i < argv.len() {
        let word = argv.get(i)?;
        let hit = options::lookup(word, argv.get(i + 1).map(String::as_str));
        let words = argv.get(i..(i + hit.consumed).min(argv.len()))?;
        i += hit.consumed;
        match hit.class() {
            Class::Output => continue,
            Class::DepsTarget => has_target = true,
            // cpp options handed over whole could name a .d file we don't see.
            Class::Pass(Tool::Preprocessor) => return None,
            _ if hit.response_file => return None,
            // An object operand: the scan took it for the output, gcc would not.
            _ if hit.is_operand(word) && is_object(word) => return None,
            _ => {}
        }
        out.extend_from_slice(words);
    }
    out.extend(["-o".to_string(), obj.to_string()]);
    if let Some(d) = dotd {
        out.extend(["-MF".to_string(), d.to_string()]);
        if !has_target {
            out.extend(["-MQ".to_string(), output.to_string()]);
        }
    }
    Some(out)
}

/// Open a pidfd for `pid`: readable once the process has exited. `None` on kernels
/// without `pidfd_open` (5.3+); then we look every [`POLL_TICK`].
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A local compile racing a remote job. Dropping it kills and reaps the compile (its
/// whole process group) and removes its files.
#[derive(Debug)]
pub(crate) struct Race {
    child: Child,
    reaped: bool,
    pidfd: Option<OwnedFd>,
    group: Option<RegisteredGroup>,
    object: Sibling,
    /// The local compile's `.d`, and where it goes if it wins (`None`: it is thrown away,
    /// because the local preprocessor already wrote the user's `.d`).
    dotd: Option<(Sibling, Option<PathBuf>)>,
    output: PathBuf,
    stdout: TempFile,
    stderr: TempFile,
    started: Instant,
    _slot: Option<LocalSlot>,
}

impl Race {
    /// Start `argv` (the job's own local command) writing `output` under private names.
    /// `dotd_to`: where the `.d` goes if the local compile wins (pump mode, where the
    /// server would have sent it); `None` in plain mode, where it is already written.
    pub(crate) fn start(
        inv: &Invocation,
        argv: &[String],
        output: &str,
        dotd_to: Option<&Path>,
        env: &ClientEnv,
        slot: Option<LocalSlot>,
    ) -> Result<Race, RaceError> {
        let target = Path::new(output);
        match fs::metadata(target) {
            Ok(m) if !m.is_file() => {
                return Err(RaceError::Unsuitable(format!(
                    "{output} is not a regular file"
                )));
            }
            _ => {}
        }
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(RaceError::Unsuitable(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let object = Sibling::beside(target);
        let dotd = wants_dotd(argv).then(|| {
            let base = dotd_to.map_or_else(|| target.with_extension("d"), Path::to_path_buf);
            (Sibling::beside(&base), dotd_to.map(Path::to_path_buf))
        });
        let dotd_text = dotd.as_ref().map(|(s, _)| s.text());
        let words = redirected_argv(argv, output, &object.text(), dotd_text.as_deref())
            .ok_or_else(|| RaceError::Unsuitable("its outputs can't be redirected".into()))?;
        let (stdout, out_file) = TempFile::create("stdout", env)?;
        let (stderr, err_file) = TempFile::create("stderr", env)?;
        let mut cmd = command(inv, &words)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out_file))
            .stderr(Stdio::from(err_file))
            // Its own group: one kill stops the driver, cc1 and as together.
            .process_group(0)
            // The preprocessor already wrote those (and pump mode does not run with them).
            .env_remove(OsString::from("DEPENDENCIES_OUTPUT"))
            .env_remove(OsString::from("SUNPRO_DEPENDENCIES"));
        log::debug!("racing locally: {}", argv_to_string(&words));
        let child = cmd.spawn().map_err(|source| RaceError::Spawn {
            cmd: argv_to_string(&words),
            source,
        })?;
        let group = i32::try_from(child.id()).ok().map(cleanup::register_group);
        let pidfd = pidfd_open(child.id());
        Ok(Race {
            child,
            reaped: false,
            pidfd,
            group,
            object,
            dotd,
            output: target.to_path_buf(),
            stdout,
            stderr,
            started: Instant::now(),
            _slot: slot,
        })
    }

    /// The local compile's exit as distcc reports it, if it has ended.
    fn try_wait(&mut self) -> io::Result<Option<i32>> {
        let status = self.child.try_wait()?;
        if status.is_some() {
            self.reaped = true;
        }
        Ok(status.map(critique))
    }

    fn wait(&mut self) -> io::Result<i32> {
        let status = self.child.wait()?;
        self.reaped = true;
        Ok(critique(status))
    }

    fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|f| f.as_fd())
    }

    /// How long the local compile has run.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The local compile won with `ret`: put its outputs in place (the `.d` first, then
    /// the object, each by a rename in its own directory) and show what it printed.
    /// `Err`: the outputs could not be moved (nothing was shown).
    pub(crate) fn adopt(mut self: Box<Self>, ret: i32) -> Result<i32, String> {
        if ret == 0 {
            if let Some((tmp, Some(to))) = self.dotd.as_mut() {
                tmp.move_to(to)
                    .map_err(|e| format!("failed to write {}: {e}", to.display()))?;
            }
            let output = self.output.clone();
            self.object
                .move_to(&output)
                .map_err(|e| format!("failed to write {}: {e}", output.display()))?;
        }
        let out = fs::read(&self.stdout.path).unwrap_or_default();
        let err = fs::read(&self.stderr.path).unwrap_or_default();
        let _ = std::io::stdout().write_all(&out);
        let _ = std::io::stderr().write_all(&err);
        Ok(ret)
    }
}

impl Drop for Race {
    fn drop(&mut self) {
        if !self.reaped {
            if let Ok(pgid) = i32::try_from(self.child.id()) {
                // SAFETY: the group we created for this child, whose leader we have not
                // reaped, so the id cannot belong to anyone else.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
            let _ = self.child.wait();
            self.reaped = true;
        }
        self.group = None;
        // The siblings and temp files remove themselves as the fields drop.
    }
}

/// How the wait for a reply ended.
pub(crate) enum Finish {
    /// The host answered first (any local compile has been stopped).
    Remote(Reply),
    /// The local compile ended first with this status; `Some` error when the host failed
    /// while it ran.
    Local(Box<Race>, i32, Option<ConnError>),
}

/// Wait for the reply on `conn`. At `race_at`, ask `start` for a local compile; while it
/// runs, wait for the socket and for the compile at once, and return whichever ends
/// first. Only a local compile that succeeds wins: one that fails (or dies of a signal)
/// may fail for a reason of this machine's, so we go on waiting for the host, whose
/// answer is then handled as without a race (a remote error is retried locally anyway).
pub(crate) fn await_reply<S: Duplex>(
    conn: &mut Wire<S>,
    version: u8,
    race_at: Option<Instant>,
    start: impl FnOnce() -> Option<Race>,
) -> Result<Finish, ConnError> {
    let Some(at) = race_at else {
        return conn.read_reply(version).map(Finish::Remote);
    };
    if let Some(reply) = conn.read_reply_until(version, Some(at), None)? {
        return Ok(Finish::Remote(reply));
    }
    if let Some(mut race) = start() {
        loop {
            let tick = race.pidfd().is_none().then(|| Instant::now() + POLL_TICK);
            match conn.read_reply_until(version, tick, race.pidfd()) {
                Ok(Some(reply)) => {
                    drop(race);
                    return Ok(Finish::Remote(reply));
                }
                Ok(None) => {}
                Err(e) => {
                    // The host failed, and the local compile is the job now.
                    log::warn!("{e}; waiting for the local compile");
                    return match race.wait() {
                        Ok(ret) if ret < 128 => Ok(Finish::Local(Box::new(race), ret, Some(e))),
                        _ => Err(e),
                    };
                }
            }
            match race.try_wait() {
                Ok(None) => {}
                Ok(Some(0)) => return Ok(Finish::Local(Box::new(race), 0, None)),
                Ok(Some(ret)) => {
                    log::info!(
                        "the local compile racing the host failed (status {ret}); waiting for the host"
                    );
                    break;
                }
                Err(e) => {
                    log::warn!("waiting for the local compile racing the host: {e}");
                    break;
                }
            }
        }
    }
    loop {
        if let Some(reply) = conn.read_reply_until(version, None, None)? {
            return Ok(Finish::Remote(reply));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    fn rec(count: u32, avg_ms: u64, strikes: u32) -> Record {
        Record {
            count,
            avg: Duration::from_millis(avg_ms),
            strikes,
        }
    }

    #[test]
    fn no_history_no_race() {
        assert_eq!(Record::default().race_after(), None);
        assert_eq!(rec(MIN_JOBS - 1, 100, 0).race_after(), None);
        assert!(rec(MIN_JOBS, 100, 0).race_after().is_some());
    }

    #[test]
    fn the_rule() {
        // Short jobs: average + slack.
        assert_eq!(
            rec(10, 100, 0).race_after(),
            Some(Duration::from_millis(5100))
        );
        // Long jobs: 3 × average.
        assert_eq!(
            rec(10, 20_000, 0).race_after(),
            Some(Duration::from_secs(60))
        );
        // A host that lost races is raced sooner, never before its average.
        assert_eq!(
            rec(10, 20_000, 1).race_after(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            rec(10, 100, 3).race_after(),
            Some(Duration::from_micros(637_500))
        );
        assert_eq!(
            rec(10, 4000, 3).race_after(),
            Some(Duration::from_millis(4000))
        );
    }

    #[test]
    fn the_average_moves() {
        let mut r = Record::default();
        for _ in 0..3 {
            r = r.with_remote(Duration::from_millis(100));
        }
        assert_eq!(r.count, 3);
        assert!((r.avg.as_secs_f64() - 0.1).abs() < 1e-6, "{r:?}");
        // One slow job moves it by a quarter of the difference.
        r = r.with_remote(Duration::from_millis(500));
        assert!((r.avg.as_secs_f64() - 0.2).abs() < 1e-6, "{r:?}");
        // Wins count against the host; accepted jobs work them off.
        r = r.with_local_win().with_local_win();
        assert_eq!((r.strikes, r.count), (2, 4));
        r = r.with_remote(Duration::from_millis(200));
        assert_eq!(r.strikes, 1);
        for _ in 0..10 {
            r = r.with_local_win();
        }
        assert_eq!(r.strikes, MAX_STRIKES);
    }

    #[test]
    fn history_round_trips_and_tolerates_garbage() {
        let t = tempfile::tempdir().unwrap();
        let h = History::new(t.path());
        assert_eq!(h.load("tcp_a_1"), Record::default());
        let r = h
            .update("tcp_a_1", |r| r.with_remote(Duration::from_millis(250)))
            .unwrap();
        assert_eq!(h.load("tcp_a_1"), r);
        assert_eq!(r.count, 1);
        for junk in [
            &b""[..],
            b"v1 3",
            b"v1 x 1 0",
            b"v2 3 100 0",
            b"v1 3 100 0 extra",
            b"\xff\xfe",
            b"v1 -3 100 0",
        ] {
            fs::write(h.path("tcp_a_1"), junk).unwrap();
            assert_eq!(h.load("tcp_a_1"), Record::default(), "{junk:?}");
        }
        // Garbage is simply replaced.
        h.update("tcp_a_1", |r| r.with_remote(Duration::from_millis(10)))
            .unwrap();
        assert_eq!(h.load("tcp_a_1").count, 1);
        // Odd characters in a key stay inside the directory.
        h.update("ssh_../../x", |r| r).unwrap();
        assert!(h.path("ssh_../../x").starts_with(t.path()));
        assert_eq!(
            h.path("ssh_../../x").parent().unwrap(),
            t.path(),
            "one level only"
        );
    }

    /// `$DISTCC_DIR/race` is not looked at before a job; the first update makes it.
    #[test]
    fn the_first_update_makes_a_missing_dir() {
        let t = tempfile::tempdir().unwrap();
        let h = History::new(&t.path().join("dd/race"));
        assert_eq!(h.load("k"), Record::default());
        let r = rec(500, 123_456, 2);
        h.update("k", |_| r).unwrap();
        assert_eq!(h.load("k"), r);
        let names: Vec<_> = fs::read_dir(t.path().join("dd/race"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("host_k")]);
    }

    /// Readers racing a writer only ever see whole records, and no temp files are left.
    #[test]
    fn updates_are_atomic() {
        let t = tempfile::tempdir().unwrap();
        let h = History::new(t.path());
        let seed = rec(500, 123_456, 2);
        h.update("k", |_| seed).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (h2, stop2) = (h.clone(), stop.clone());
        let writer = std::thread::spawn(move || {
            let mut n = 0;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                // Alternate between two long, distinct records.
                let r = if n % 2 == 0 {
                    rec(900_000, 999_999_999, 1)
                } else {
                    seed
                };
                h2.update("k", |_| r).unwrap();
                n += 1;
            }
        });
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut reads = 0;
        while Instant::now() < deadline {
            let r = h.load("k");
            assert!(
                r == seed || r == rec(900_000, 999_999_999, 1),
                "a torn or missing record: {r:?}"
            );
            reads += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        assert!(reads > 0);
        let names: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("host_k")]);
    }

    #[test]
    fn outputs_are_redirected() {
        assert_eq!(
            redirected_argv(&v("gcc -O2 -c a.c -o out/a.o"), "out/a.o", "T", None),
            Some(v("gcc -O2 -c a.c -o T"))
        );
        assert_eq!(
            redirected_argv(&v("gcc -c a.c -oout/a.o"), "out/a.o", "T", None),
            Some(v("gcc -c a.c -o T"))
        );
        // No -o: gcc's own default is what `output` says.
        assert_eq!(
            redirected_argv(&v("gcc -c a.c"), "a.o", "T", None),
            Some(v("gcc -c a.c -o T"))
        );
        // A .d: last -MF wins, and the target is the real output.
        assert_eq!(
            redirected_argv(&v("gcc -MD -MF x.d -c a.c -o a.o"), "a.o", "T", Some("D")),
            Some(v("gcc -MD -MF x.d -c a.c -o T -MF D -MQ a.o"))
        );
        assert_eq!(
            redirected_argv(&v("gcc -MMD -MT t -c a.c -o a.o"), "a.o", "T", Some("D")),
            Some(v("gcc -MMD -MT t -c a.c -o T -MF D"))
        );
        assert_eq!(
            redirected_argv(&v("gcc -Xpreprocessor -MD -c a.c"), "a.o", "T", None),
            None
        );
        assert_eq!(
            redirected_argv(&v("gcc -c a.c b.o"), "b.o", "T", None),
            None
        );
        assert!(wants_dotd(&v("gcc -MD -c a.c")));
        assert!(wants_dotd(&v("gcc --write-user-dependencies -c a.c")));
        assert!(!wants_dotd(&v("gcc -MF x.d -c a.c")));
    }

    #[test]
    fn gcc_writes_only_the_redirected_files() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("a.c"), "int a;\n").unwrap();
        let argv = v("gcc -MD -c a.c -o a.o");
        let dotd = Sibling::beside(&t.path().join("a.d"));
        let obj = Sibling::beside(&t.path().join("a.o"));
        let words = redirected_argv(&argv, "a.o", &obj.text(), Some(&dotd.text())).unwrap();
        let st = std::process::Command::new("gcc")
            .args(&words[1..])
            .current_dir(t.path())
            .status()
            .unwrap();
        assert!(st.success());
        assert!(obj.path.exists() && dotd.path.exists());
        let d = fs::read_to_string(&dotd.path).unwrap();
        assert!(d.starts_with("a.o: a.c"), "{d}");
        drop((obj, dotd));
        let names: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("a.c")]);
    }
}
