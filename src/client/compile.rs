//! The job pipeline (distcc 3.4 `compile.c` `dcc_build_somewhere`): pick a host, preprocess,
//! send, receive, and when a host lets us down, try another host and finally compile here.
//!
//! Who is to blame decides what happens:
//! * the **host** (refused, timed out, garbage, truncated, crashed, no answer): remember it
//!   in its backoff file, try another host (at most [`MAX_REMOTE_TRIES`] in all), then local;
//! * the **user** (the source does not compile): no backoff — unlike distcc 3.4, which backs
//!   off a healthy host for 60 s because of a typo — and a local retry so that the error
//!   messages come from the local compiler, exactly as without distcc.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cpp::{Preprocess, Preprocessed};
use super::invocation::Invocation;
use super::local;
use super::outcome::{self, JobRecord, LocalReason, Where};
use super::output::write_output;
use super::race::{self, Finish, History, Race};
use super::remote::{self, RemoteError};
use super::wire::{Duplex, Wire};
use crate::args::{self, Scan, argv_to_string};
use crate::connection::ConnError;
use crate::exitcode::ExitCode;
use crate::hosts::{self, HostKind, HostList, HostSpec};
use crate::protocol::{self, Payload, Reply, tok};
use crate::scheduler::{HostSlot, LocalKind, LocalSlot, SchedError, Scheduler};
use crate::settings::{ClientEnv, DirectivesOnly};
use crate::state::{Phase, StateFile};

/// How many hosts one job tries before compiling locally. Also what stops a dead host
/// from being retried forever when backoff is disabled (`DISTCC_BACKOFF_PERIOD=0`, an
/// endless loop in distcc 3.4).
pub(crate) const MAX_REMOTE_TRIES: usize = 3;

/// Everything a job carries between its steps.
struct Job<'a> {
    inv: &'a Invocation,
    /// Every variable the client reads, read once.
    env: &'a ClientEnv,
    scan: Scan,
    /// The scan that keeps macros (gcc's `-fdirectives-only`, clang's
    /// `-frewrite-includes`: [`args::CppStrategy`]), when the compiler can and the command
    /// line allows: it replaces `scan` if the host the first cpp run is for may get it
    /// ([`Job::choose_cpp`]). Both scans differ only in `cpp_argv`, `server_argv` and
    /// `cpp`.
    dirs_scan: Option<Scan>,
    /// `None` when there is no lock directory: compile locally, unlocked (as distcc does).
    sched: Option<Scheduler>,
    /// The host list (an empty one with default local slots if none could be loaded).
    hosts: HostList,
    state: Option<StateFile>,
    /// The preprocessor, started on the first remote attempt and reused by later ones.
    cpp: Option<Preprocess>,
    pre: Option<Preprocessed>,
    /// The last remote attempt was pump mode (for discrepancy counting, reference §5.4).
    pumped: bool,
    start: Instant,
    /// The command line with the user's exact bytes, when a word is not UTF-8: such a job
    /// only runs here, with these words (see [`build_somewhere_exact`]).
    exact: Option<Vec<OsString>>,
    /// Hosts' recent job times, for racing a late job locally; `None`: never race.
    history: Option<History>,
    /// How long the last accepted reply took (from the source sent), for the history.
    took: Option<Duration>,
    /// Where the job compiled and, if not remotely, why: for the build record.
    verdict: Option<(Where, Option<LocalReason>)>,
    /// The compiler's identity ([`crate::identity`]), found out when first needed:
    /// `None` not yet, `Some(None)` unknown.
    identity: Option<Option<crate::identity::Identity>>,
    /// Some host was skipped because it refused this compiler's identity.
    identity_skipped: bool,
}

/// What one remote attempt came to.
enum Outcome {
    /// The result is written and shown: the job is done (exit 0).
    Accepted,
    /// The user's source failed to compile (remotely, or in our local cpp: `cpp`).
    UserError { ret: i32, serr: Vec<u8>, cpp: bool },
    /// The host failed; try another one.
    HostFault(RemoteError),
    /// The host answered, but with a crash or a distcc-level failure: go local.
    HostCrash { ret: i32, serr: Vec<u8> },
    /// Something on our side (temp dir, writing the output): go local, host is fine.
    LocalTrouble(String),
    /// The job ran late, a local compile raced it and finished first: its result (written
    /// and shown) is the job's. `fault`: the host also failed meanwhile.
    RacedLocally {
        ret: i32,
        fault: Option<RemoteError>,
    },
}

impl Job<'_> {
    fn phase(&mut self, phase: Phase, file: Option<&str>, host: Option<&str>, slot: Option<u32>) {
        if let Some(s) = self.state.as_mut() {
            s.set(phase, file, host, slot);
        }
    }

    /// Lock a slot on a usable host not in `exclude` (indices into the host list),
    /// waiting while all are busy. `Ok(None)`: no lock directory, run unlocked.
    fn pick(&mut self, exclude: &[usize]) -> Result<Option<HostSlot>, SchedError> {
        let Some(sched) = self.sched.clone() else {
            return Ok(None);
        };
        if let Some(slot) = sched.try_lock_host(&self.hosts, exclude)? {
            return Ok(Some(slot));
        }
        log::debug!("all slots busy; waiting");
        self.phase(Phase::Blocked, None, None, None);
        sched.lock_host(&self.hosts, exclude).map(Some)
    }

    /// Lock a local slot of pool `kind`; `None` (logged) when we can't lock at all.
    fn lock_local(&mut self, kind: LocalKind) -> Option<LocalSlot> {
        let sched = self.sched.clone()?;
        match sched.lock_local(&self.hosts, kind) {
            Ok(l) => Some(l),
            Err(e) => {
                log::warn!("{e}; running without a lock");
                None
            }
        }
    }

    fn mark_backoff(&self, host: &HostSpec) {
        if let Some(s) = &self.sched
            && let Err(e) = s.backoff().mark(&host.lock_key())
        {
            log::warn!("{e}");
        }
    }

    fn backoff_enabled(&self) -> bool {
        self.sched
            .as_ref()
            .is_some_and(|s| !s.backoff().is_disabled())
    }

    /// Compile here with inherited stdio, under a local slot unless `held` is given;
    /// `why`: the reason recorded for the build summary.
    fn run_local(&mut self, held: Option<HostSlot>, why: LocalReason) -> i32 {
        log::info!("compiling {} locally: {why}", self.scan.input);
        self.verdict = Some((Where::Local, Some(why)));
        // A preprocessor still running for a remote attempt writes the .d file too: let it
        // finish before the local compiler writes the same file.
        self.finish_cpp_quietly();
        let (held, local) = match held {
            Some(h) => (Some(h), None),
            None => {
                let kind = if self.scan.cpp_only {
                    LocalKind::Cpp
                } else {
                    LocalKind::Compile
                };
                (None, self.lock_local(kind))
            }
        };
        let slot = held
            .as_ref()
            .map(|h| h.slot)
            .or(local.as_ref().map(|l| l.slot));
        let input = self.scan.input.clone();
        self.phase(Phase::Compile, Some(&input), Some("localhost"), slot);
        let ret = match self.local_run() {
            Ok(r) => r,
            Err(e) => {
                log::error!("{e}");
                e.exit_code().code()
            }
        };
        drop((held, local));
        ret
    }

    /// Run the compiler here: the exact command line if there is one, else the scanned one.
    fn local_run(&self) -> Result<i32, super::ClientError> {
        match &self.exact {
            Some(argv) => local::run(self.inv, argv),
            None => local::run(self.inv, &self.scan.local_argv),
        }
    }

    fn finish_cpp_quietly(&mut self) {
        if let Some(p) = self.cpp.take() {
            if let Ok(Ok(pre)) = p.finish() {
                self.pre = Some(pre);
            }
        }
    }

    /// Give up on distribution: compile locally, unless `DISTCC_FALLBACK=0`.
    fn fallback(
        &mut self,
        host: Option<&HostSpec>,
        ret: i32,
        serr: &[u8],
        why: LocalReason,
    ) -> i32 {
        if !self.env.fallback {
            self.verdict = Some((Where::Nowhere, Some(why)));
            log::warn!("failed to distribute and fallbacks are disabled");
            let _ = std::io::stderr().write_all(serr);
            self.finish_cpp_quietly();
            return ret;
        }
        match host {
            Some(h) => log::warn!(
                "failed to distribute {} to {}, running locally instead",
                self.scan.input,
                h.spec
            ),
            None => log::warn!("failed to distribute, running locally instead"),
        }
        self.run_local(None, why)
    }

    /// One attempt on a remote host whose slot we hold.
    fn remote_attempt(&mut self, host: &HostSpec, slot: u32) -> Outcome {
        let mut version = protocol_for(host, self.env);
        let input = self.scan.input.clone();
        // PUMP HOOK: protocol 3 when the include server can cover this job, else protocol 2.
        if version == 3 {
            let scan = &self.scan;
            match crate::pump::client::prepare(
                &scan.local_argv,
                &scan.input,
                &scan.output,
                scan.preprocessed,
                self.env,
            ) {
                Ok(job) => return self.pump_attempt(host, slot, job),
                Err(why) => {
                    log::warn!("{why}; using protocol 2 for {input}");
                    version = 2;
                }
            }
        }
        self.phase(
            Phase::Connect,
            Some(&input),
            Some(host.hostname()),
            Some(slot),
        );

        let cpp_lock = match self.start_cpp(host) {
            Ok(l) => l,
            Err(outcome) => return outcome,
        };
        let (reply, cpp_stderr, n_source, sent_at) =
            match self.exchange(host, slot, version, cpp_lock) {
                Ok(x) => x,
                Err(outcome) => return outcome,
            };
        self.phase(Phase::Receive, None, None, None);
        let outcome = self.judge(reply, cpp_stderr);
        if matches!(outcome, Outcome::Accepted) {
            let secs = sent_at.elapsed().as_secs_f64();
            log::info!(
                "{} bytes from {} compiled on {} in {:.4}s, rate {:.0}kB/s",
                n_source,
                self.scan.input,
                host.spec,
                secs,
                n_source as f64 / 1024.0 / secs.max(1e-6)
            );
            log::info!("compile {} on {} completed ok", self.scan.input, host.spec);
        }
        outcome
    }

    /// Pump mode: send the sources and headers (protocol 3), the server preprocesses.
    fn pump_attempt(
        &mut self,
        host: &HostSpec,
        slot: u32,
        job: crate::pump::client::PumpJob,
    ) -> Outcome {
        let input = self.scan.input.clone();
        self.pumped = true;
        self.phase(Phase::Send, Some(&input), Some(host.hostname()), Some(slot));
        let session = match remote::open(host, self.env, self.env.io_timeout, false) {
            Ok(s) => s,
            Err(e) => return Outcome::HostFault(e),
        };
        log::info!(
            "exec on {} (pump): {}",
            host.spec,
            argv_to_string(&job.argv)
        );
        let identity = session.wants_identity().then(|| self.identity()).flatten();
        let mut bytes = Vec::new();
        session.preamble(&job.argv, identity.as_ref(), &mut bytes);
        let mut conn = session.wire;
        // The file list goes as the include server gave it: bodies LZO, as protocol 3
        // has them without the extension's zstd (pump sessions don't ask for it).
        debug_assert!(!conn.zstd(), "a pump session asked for zstd");
        protocol::encode_request_head(&mut bytes, 3, Some(&job.cwd), &job.argv);
        if let Err(e) = conn.send_parts(&[&bytes, &job.files]) {
            return Outcome::HostFault(e.into());
        }
        self.phase(Phase::Compile, None, Some(host.hostname()), Some(slot));
        let reply = match self.await_reply(&mut conn, host, 3, Instant::now(), job.dotd.as_deref())
        {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        self.phase(Phase::Receive, None, None, None);
        let dotd = reply.dotd.clone();
        let outcome = self.judge(reply, Vec::new());
        if !matches!(outcome, Outcome::Accepted) {
            return outcome;
        }
        if let Some(path) = &job.dotd {
            let Some(text) = dotd else {
                return Outcome::LocalTrouble(format!("{} sent no .d file", host.spec));
            };
            if let Err(e) = write_output(path, &text) {
                return Outcome::LocalTrouble(format!("failed to write {}: {e}", path.display()));
            }
        }
        log::info!("compile {input} on {} completed ok (pump)", host.spec);
        outcome
    }

    /// Start preprocessing unless a previous attempt did. Lock order as distcc: the remote
    /// slot first (held by our caller), then a local cpp slot, which [`Self::exchange`]
    /// releases as soon as cpp is done.
    fn start_cpp(&mut self, host: &HostSpec) -> Result<Option<LocalSlot>, Outcome> {
        if self.pre.is_some() || self.cpp.is_some() {
            return Ok(None);
        }
        self.choose_cpp(host);
        if self.scan.preprocessed {
            self.cpp = Some(Preprocess::Ready(PathBuf::from(&self.scan.input)));
            return Ok(None);
        }
        let cpp_lock = self.lock_local(LocalKind::Cpp);
        let cslot = cpp_lock.as_ref().map(|l| l.slot);
        self.phase(Phase::Cpp, None, Some("localhost"), cslot);
        match Preprocess::start(
            self.inv,
            &self.scan.cpp_argv,
            &self.scan.input,
            self.scan.cpp_ext,
            self.env,
        ) {
            Ok(p) => self.cpp = Some(p),
            Err(e) => return Err(Outcome::LocalTrouble(e.to_string())),
        }
        Ok(cpp_lock)
    }

    /// How to preprocess, for the host of the first cpp run: with `-fdirectives-only`
    /// (when the compiler can, [`Self::dirs_scan`]) if `DISTCC_DIRECTIVES_ONLY=1`, or by
    /// default if the host's memo says it compiles such a source right
    /// ([`crate::ext::offers_directives_only`]); else a full `-E`: a distcc 3.4 host, a host
    /// not asked yet (the job's connection comes after cpp has started, so a host's first
    /// job is preprocessed in full), a daemon with ccache in front of its gcc.
    ///
    /// Decided once: a retry on another host reuses the output and sends the same command
    /// line. A host that can't compile it fails the job, which then goes local
    /// (`run_job`), so the object is always the compiler's.
    fn choose_cpp(&mut self, host: &HostSpec) {
        let Some(dirs) = self.dirs_scan.take() else {
            return;
        };
        let why = match self.env.directives_only {
            DirectivesOnly::Always => Some("DISTCC_DIRECTIVES_ONLY=1"),
            DirectivesOnly::Never => None,
            DirectivesOnly::Auto if host_keeps_macros(host, self.env, dirs.cpp) => {
                Some("the host compiles it right")
            }
            DirectivesOnly::Auto => None,
        };
        match why {
            Some(why) => {
                log::debug!(
                    "preprocessing {} keeping macros ({:?}) for {} ({why})",
                    self.scan.input,
                    dirs.cpp,
                    host.spec
                );
                self.scan = dirs;
            }
            None => log::debug!(
                "preprocessing {} in full for {}",
                self.scan.input,
                host.spec
            ),
        }
    }

    /// Connect, send the request head while cpp may still run, then the preprocessed
    /// source, and read the reply. Returns the reply, cpp's stderr, the source size and
    /// when the source went out.
    fn exchange(
        &mut self,
        host: &HostSpec,
        slot: u32,
        version: u8,
        cpp_lock: Option<LocalSlot>,
    ) -> Result<(Reply, Vec<u8>, usize, Instant), Outcome> {
        let session =
            remote::open(host, self.env, self.env.io_timeout, true).map_err(Outcome::HostFault)?;
        log::info!(
            "exec on {}: {}",
            host.spec,
            argv_to_string(&self.scan.server_argv)
        );
        let identity = session.wants_identity().then(|| self.identity()).flatten();
        let mut head = Vec::new();
        session.preamble(&self.scan.server_argv, identity.as_ref(), &mut head);
        let mut conn = session.wire;
        protocol::encode_request_head(&mut head, version, None, &self.scan.server_argv);
        self.phase(Phase::Send, None, Some(host.hostname()), Some(slot));
        conn.send(&head).map_err(|e| Outcome::HostFault(e.into()))?;

        if let Some(p) = self.cpp.take() {
            match p.finish() {
                Ok(Ok(pre)) => self.pre = Some(pre),
                Ok(Err(failed)) => {
                    return Err(Outcome::UserError {
                        ret: failed.status,
                        serr: failed.stderr,
                        cpp: true,
                    });
                }
                Err(e) => return Err(Outcome::LocalTrouble(e.to_string())),
            }
        }
        drop(cpp_lock);
        let pre = self
            .pre
            .as_mut()
            .ok_or_else(|| Outcome::LocalTrouble("no preprocessed source".into()))?;
        let cpp_stderr = pre.stderr.clone();
        let source = pre
            .take_text()
            .map_err(|e| Outcome::LocalTrouble(e.to_string()))?;
        let n_source = source.len();
        let mut body = Vec::new();
        let codec = protocol::Codec::of(version, conn.zstd());
        protocol::encode_bulk_in(&mut body, &tok::DOTI, codec, &Payload::Plain(source))
            .map_err(|e| Outcome::LocalTrouble(e.to_string()))?;
        let sent_at = Instant::now();
        conn.send(&body).map_err(|e| Outcome::HostFault(e.into()))?;
        self.phase(Phase::Compile, None, Some(host.hostname()), Some(slot));
        // Plain mode: the local preprocessor has written the `.d` already.
        let reply = self.await_reply(&mut conn, host, version, sent_at, None)?;
        Ok((reply, cpp_stderr, n_source, sent_at))
    }

    /// Wait for `host`'s reply to a job whose input went out at `sent_at`, racing it with
    /// a local compile if it runs far past the host's usual time ([`race`]). `Err`: the
    /// outcome without a reply — the host failed, or the local compile won.
    fn await_reply<S: Duplex>(
        &mut self,
        conn: &mut Wire<S>,
        host: &HostSpec,
        version: u8,
        sent_at: Instant,
        dotd_to: Option<&Path>,
    ) -> Result<Reply, Outcome> {
        let usual = self.history.as_ref().map(|h| h.load(&host.lock_key()));
        let after = usual.and_then(|r| r.race_after());
        let race_at = after.map(|a| sent_at + a);
        let start = || self.start_race(host, usual.map(|r| r.avg), dotd_to, sent_at);
        let finish = race::await_reply(conn, version, race_at, start);
        match finish {
            Ok(Finish::Remote(reply)) => {
                self.took = Some(sent_at.elapsed());
                if after.is_some_and(|a| sent_at.elapsed() > a) {
                    log::info!("race for {}: {} answered first", self.scan.input, host.spec);
                }
                Ok(reply)
            }
            Ok(Finish::Local(race, ret, err)) => {
                log::info!(
                    "race for {}: the local compile won (status {ret}) after {:.1}s; {} took \
                     {:.1}s so far",
                    self.scan.input,
                    race.elapsed().as_secs_f64(),
                    host.spec,
                    sent_at.elapsed().as_secs_f64()
                );
                match race.adopt(ret) {
                    Ok(ret) => Err(Outcome::RacedLocally {
                        ret,
                        fault: err.map(remote_error),
                    }),
                    Err(msg) => Err(Outcome::LocalTrouble(msg)),
                }
            }
            Err(e) => Err(Outcome::HostFault(remote_error(e))),
        }
    }

    /// Start the local compile that races a late job, if a local slot is free right now.
    fn start_race(
        &self,
        host: &HostSpec,
        usual: Option<Duration>,
        dotd_to: Option<&Path>,
        sent_at: Instant,
    ) -> Option<Race> {
        let sched = self.sched.as_ref()?;
        let input = &self.scan.input;
        let slot = match sched.try_lock_local(&self.hosts, LocalKind::Compile) {
            Ok(Some(s)) => s,
            Ok(None) => {
                log::info!(
                    "{input} is late on {}, but no local slot is free",
                    host.spec
                );
                return None;
            }
            Err(e) => {
                log::debug!("{e}; not racing");
                return None;
            }
        };
        let argv = &self.scan.local_argv;
        match Race::start(
            self.inv,
            argv,
            &self.scan.output,
            dotd_to,
            self.env,
            Some(slot),
        ) {
            Ok(r) => {
                log::info!(
                    "{input} has run {:.1}s on {} (usually {:.2}s): racing it with a local \
                     compile",
                    sent_at.elapsed().as_secs_f64(),
                    host.spec,
                    usual.unwrap_or_default().as_secs_f64()
                );
                Some(r)
            }
            Err(e) => {
                log::info!("not racing {input} locally: {e}");
                None
            }
        }
    }

    /// Record in the history how this host's job went.
    fn remember(&self, host: &HostSpec, change: impl FnOnce(race::Record) -> race::Record) {
        if let Some(h) = &self.history
            && let Err(e) = h.update(&host.lock_key(), change)
        {
            log::debug!("{e}");
        }
    }

    /// Decide what a reply means; on success write the object and show the output.
    fn judge(&self, reply: Reply, cpp_stderr: Vec<u8>) -> Outcome {
        if self.env.save_temps {
            self.keep_server_stderr(&reply.stderr);
        }
        let ret = local::critique_raw(reply.status);
        // A signal, a compiler missing on the server, or the server's job timeout: the
        // host's problem, not the source's.
        if ret >= 128 || ret == ExitCode::CompilerMissing.code() || ret == ExitCode::Timeout.code()
        {
            return Outcome::HostCrash {
                ret,
                serr: reply.stderr,
            };
        }
        // What a local compile would have printed: cpp's warnings, then the compiler's.
        let mut serr = cpp_stderr;
        serr.extend_from_slice(&reply.stderr);
        if ret != 0 {
            return Outcome::UserError {
                ret,
                serr,
                cpp: false,
            };
        }
        if let Err(e) = write_output(Path::new(&self.scan.output), &reply.object) {
            return Outcome::LocalTrouble(format!("failed to write {}: {e}", self.scan.output));
        }
        let _ = std::io::stdout().write_all(&reply.stdout);
        let _ = std::io::stderr().write_all(&serr);
        Outcome::Accepted
    }
}

impl Job<'_> {
    /// The compiler's identity, found out (from the cache, normally) on first use.
    fn identity(&mut self) -> Option<crate::identity::Identity> {
        if self.identity.is_none() {
            let compiler = self.scan.server_argv.first().cloned().unwrap_or_default();
            self.identity = Some(crate::identity::for_client(self.inv, self.env, &compiler));
        }
        self.identity.clone().flatten()
    }

    /// Remember that `host` refused this compiler's identity (see [`crate::identity::Skips`]).
    fn skip_for_identity(&mut self, host: &HostSpec, e: &RemoteError) {
        let message = match e {
            RemoteError::Conn(ConnError::Refused(r)) => r.message.clone(),
            e => e.to_string(),
        };
        if let (Some(skips), Some(id)) = (
            crate::identity::Skips::for_client(self.env),
            self.identity(),
        ) {
            skips.mark(&host.lock_key(), &id, &message);
        }
        self.identity_skipped = true;
    }

    /// The hosts (indices) that refused this compiler's identity recently: not tried.
    fn identity_skips(&mut self) -> Vec<usize> {
        let Some(skips) = crate::identity::Skips::for_client(self.env) else {
            return Vec::new();
        };
        if !skips.any() {
            return Vec::new();
        }
        let Some(id) = self.identity() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, h) in self.hosts.hosts.iter().enumerate() {
            if let Some(msg) = skips.refused(&h.lock_key(), &id) {
                log::info!(
                    "skipping {} for {}: it refused it recently: {msg}",
                    h.spec,
                    id
                );
                out.push(i);
            }
        }
        self.identity_skipped = !out.is_empty();
        out
    }

    /// `DISTCC_SAVE_TEMPS=1`: keep what the server printed in
    /// `$TMPDIR/distcc_server_stderr_XXXXXXXX.txt`, as distcc 3.4 does — the way to see a
    /// remote error that the local retry's own messages replace.
    fn keep_server_stderr(&self, text: &[u8]) {
        let kept = crate::temp::tmp_dir(&self.env.dirs)
            .and_then(|dir| crate::temp::make_temp_file_in(&dir, "distcc_server_stderr_", ".txt"));
        match kept {
            Ok(path) => match std::fs::write(&path, text) {
                Ok(()) => log::info!("server stderr kept in {}", path.display()),
                Err(e) => log::warn!("failed to write {}: {e}", path.display()),
            },
            Err(e) => log::warn!("can't keep the server's stderr: {e}"),
        }
    }
}

/// Append the job's outcome to its build's record (`$DISTCC_DIR/record`). A nested
/// distcc is part of the outer job, which records it.
fn record(job: &Job, status: i32) {
    if job.inv.nested() {
        return;
    }
    let Some((at, reason)) = job.verdict.clone() else {
        return;
    };
    let rec = JobRecord {
        time: outcome::now_secs(),
        pid: std::process::id(),
        input: job.scan.input.clone(),
        at,
        reason,
        took: job.start.elapsed(),
        status,
    };
    let build = outcome::build_id(job.env.build_id.as_deref());
    if let Err(e) = outcome::append(&job.env.dirs, &build, &rec) {
        log::debug!("{e}");
    }
}

/// A refusal that concerns the job's compiler, not the host (`compiler-identity`).
fn is_compiler_refusal(e: &RemoteError) -> bool {
    matches!(e, RemoteError::Conn(ConnError::Refused(r))
        if r.code == crate::ext::code::COMPILER_IDENTITY)
}

/// Why a host failure sends a job elsewhere (and finally here).
pub(crate) fn fault_reason(e: &RemoteError) -> LocalReason {
    match e {
        RemoteError::Conn(ConnError::Refused(r))
            if r.code == crate::ext::code::COMPILER_IDENTITY =>
        {
            LocalReason::CompilerIdentity
        }
        RemoteError::Conn(ConnError::Refused(r)) => LocalReason::Refused(r.code.clone()),
        RemoteError::Connect { .. } | RemoteError::Proxy { .. } | RemoteError::Ssh { .. } => {
            LocalReason::ConnectFailed
        }
        RemoteError::ConnectTimeout(_) => LocalReason::ConnectTimeout,
        RemoteError::NoAnswer | RemoteError::Conn(ConnError::NoAnswer) => {
            LocalReason::RefusedByServer
        }
        RemoteError::Conn(ConnError::Timeout(_)) => LocalReason::IoTimeout,
        RemoteError::Conn(_) => LocalReason::HostFailed,
    }
}

/// Why a reply that is the host's fault (see [`Job::judge`]) sends a job here.
fn crash_reason(ret: i32) -> LocalReason {
    if ret == ExitCode::CompilerMissing.code() {
        LocalReason::CompilerMissing
    } else {
        LocalReason::HostCrashed
    }
}

/// A connection failure as the host's fault.
fn remote_error(e: ConnError) -> RemoteError {
    match e {
        ConnError::NoAnswer => RemoteError::NoAnswer,
        e => e.into(),
    }
}

/// Whether `host`'s last extension answer (the memo, [`crate::ext::Memo`]) says it compiles
/// sources preprocessed with `cpp` right. Not with `DISTCC_EXTENSIONS=0`: the memo is then
/// not kept up to date.
fn host_keeps_macros(host: &HostSpec, env: &ClientEnv, cpp: args::CppStrategy) -> bool {
    if !env.extensions {
        return false;
    }
    match crate::ext::Memo::for_client(env).map(|m| m.read(&host.lock_key())) {
        Some(crate::ext::Known::Ours(answer)) => match cpp {
            args::CppStrategy::GccDirectivesOnly => crate::ext::offers_directives_only(&answer),
            args::CppStrategy::ClangRewriteIncludes => crate::ext::offers_rewrite_includes(&answer),
            args::CppStrategy::Full => false,
        },
        _ => false,
    }
}

/// The protocol for a host: 3 (pump) only for a `,cpp,lzo` host while an include server
/// runs (`INCLUDE_SERVER_PORT`); a `,cpp` host without one is used with protocol 2.
// PUMP HOOK: `remote_attempt` asks `crate::pump::client` whether this job can go as 3.
fn protocol_for(host: &HostSpec, env: &ClientEnv) -> u8 {
    let v = host.protocol;
    if v == 3 && env.include_server.is_none() {
        log::warn!(
            "{} has ',cpp' but INCLUDE_SERVER_PORT is not set (did you forget to run pump?); \
             preprocessing locally",
            host.spec
        );
        return 2;
    }
    v
}

/// Compile `inv` somewhere: remotely if we can, locally if we must; returns the exit
/// status. `exact` is the command line with the user's own bytes when
/// some word is not UTF-8 (`inv` then holds a lossy copy). Such a job runs locally with
/// exactly those words: our scanning and the protocol work on text, and a lossy name
/// would make the compiler look for a file that does not exist.
pub(crate) fn build_somewhere_exact(
    inv: &Invocation,
    exact: Option<Vec<OsString>>,
    env: &ClientEnv,
) -> i32 {
    super::cleanup::install();
    let argv = super::rewrite::for_job(inv, env);
    // Full preprocessing until a host is picked (`Job::choose_cpp`); scanning is pure.
    let scan = args::scan(&argv.argv);
    let dirs_scan = (argv.cpp != args::CppStrategy::Full)
        .then(|| args::scan(&argv))
        .filter(Scan::keeps_macros);
    // Not looked at: the state file makes it when it is first written.
    let state = match crate::temp::sub_dir_path(&env.dirs, "state") {
        Ok(d) => Some(StateFile::new(&d, std::process::id())),
        Err(e) => {
            log::debug!("no monitor state: {e}");
            None
        }
    };
    let sched = match Scheduler::for_client(env) {
        Ok(s) => Some(s),
        Err(e) => {
            // distcc 3.4 goes on unlocked (and local) here too.
            log::warn!("{e}");
            log::warn!("failed to lock");
            None
        }
    };
    let loaded = hosts::load_default(env.hosts.as_deref(), &env.dirs);
    let host_list = match &loaded {
        Ok(l) => l.clone(),
        Err(_) => hosts::parse_lenient("").0,
    };
    let mut job = Job {
        inv,
        env,
        scan,
        dirs_scan,
        sched,
        hosts: host_list,
        state,
        cpp: None,
        pre: None,
        pumped: false,
        start: Instant::now(),
        exact,
        history: None,
        took: None,
        verdict: None,
        identity: None,
        identity_skipped: false,
    };
    // A race is a local compile: not when the user turned those off.
    if env.race && env.fallback && job.sched.is_some() {
        job.history = match History::for_client(env) {
            Ok(h) => Some(h),
            Err(e) => {
                log::debug!("no race history: {e}");
                None
            }
        };
    }
    let ret = run_job(&mut job, loaded.map(|_| ()));
    job.phase(Phase::Done, None, None, None);
    record(&job, ret);
    log::info!(
        "elapsed compilation time {:.6}s",
        job.start.elapsed().as_secs_f64()
    );
    ret
}

fn run_job(job: &mut Job, loaded: Result<(), hosts::HostsError>) -> i32 {
    if job.inv.nested() {
        // A distcc started by a distcc: the outer one already holds a slot.
        log::debug!("nested distcc invocation; compiling locally without a lock");
        let input = job.scan.input.clone();
        job.verdict = Some((Where::Local, Some(LocalReason::Nested)));
        job.phase(Phase::Compile, Some(&input), Some("localhost"), Some(0));
        return job.local_run().unwrap_or_else(|e| {
            log::error!("{e}");
            e.exit_code().code()
        });
    }
    if job.exact.is_some() {
        log::info!(
            "argument is not UTF-8; compiling locally: {}",
            argv_to_string(&job.scan.local_argv)
        );
        return job.run_local(None, LocalReason::NotUtf8);
    }
    if let Some(reason) = job.scan.local_reason.clone() {
        log::debug!(
            "{reason}; compiling locally: {}",
            argv_to_string(&job.scan.local_argv)
        );
        return job.run_local(None, reason);
    }
    log::info!("compile from {} to {}", job.scan.input, job.scan.output);
    if let Err(e) = loaded {
        match &e {
            // The other errors were logged where they were found.
            hosts::HostsError::NoHostList { .. } => log::warn!("{e}"),
            _ => log::debug!("{e}"),
        }
        {
            // (hosts::load already logged why.)
            // What distcc 3.4 exits with when fallbacks are off: 116 for no list at all
            // too (its 106 is only internal there), 106 for a list it can't parse.
            let (code, why) = match e {
                hosts::HostsError::Syntax(_) => (ExitCode::BadHostspec, LocalReason::BadHostList),
                _ => (ExitCode::NoHosts, LocalReason::NoHosts),
            };
            return job.fallback(None, code.code(), &[], why);
        }
    }
    let mut tried: Vec<usize> = job.identity_skips();
    let mut last: Option<(HostSpec, i32, LocalReason)> = None;
    for _ in 0..MAX_REMOTE_TRIES {
        let slot = match job.pick(&tried) {
            Ok(Some(s)) => s,
            Ok(None) => return job.run_local(None, LocalReason::NoLock),
            Err(SchedError::NoUsableHost) => break,
            Err(e) => {
                log::warn!("{e}; compiling locally without a lock");
                job.sched = None;
                return job.run_local(None, LocalReason::NoLock);
            }
        };
        let host = slot.host(&job.hosts).clone();
        if host.kind == HostKind::Local {
            return job.run_local(Some(slot), LocalReason::Localhost);
        }
        let outcome = job.remote_attempt(&host, slot.slot);
        let index = slot.host_index;
        drop(slot);
        match outcome {
            Outcome::Accepted => {
                job.verdict = Some((Where::Remote(host.spec.clone()), None));
                if let Some(s) = &job.sched
                    && let Err(e) = s.backoff().clear(&host.lock_key())
                {
                    log::debug!("{e}");
                }
                if let Some(took) = job.took.take() {
                    job.remember(&host, |r| r.with_remote(took));
                }
                return 0;
            }
            Outcome::RacedLocally { ret, fault } => {
                job.verdict = Some((Where::Local, Some(LocalReason::RacedLocalWon)));
                // Late is not dead: no backoff for that, but race this host sooner.
                job.remember(&host, race::Record::with_local_win);
                if let Some(e) = fault {
                    log::warn!("{e}");
                    job.mark_backoff(&host);
                }
                return ret;
            }
            Outcome::UserError { ret, serr, cpp } => {
                // A directives-only source the server failed may be the server's doing
                // (a wrapper we could not see drops the switch): retried here even so.
                if job.env.skip_local_retry && (cpp || !job.scan.keeps_macros()) {
                    let at = if cpp {
                        (Where::Nowhere, Some(LocalReason::CppError))
                    } else {
                        (Where::Remote(host.spec.clone()), None)
                    };
                    job.verdict = Some(at);
                    let _ = std::io::stderr().write_all(&serr);
                    return ret;
                }
                let why = if cpp {
                    LocalReason::CppError
                } else {
                    LocalReason::RemoteErrorThenLocal
                };
                log::warn!(
                    "remote compilation of '{}' failed, retrying locally",
                    job.scan.input
                );
                let pumped = job.pumped;
                let ret = job.fallback(Some(&host), ret, &serr, why);
                // PUMP HOOK: a pump job that only compiles locally is a discrepancy.
                if pumped && ret == 0 {
                    crate::pump::client::note_discrepancy(job.env);
                }
                return ret;
            }
            Outcome::HostCrash { ret, serr } => {
                log::warn!("{} failed the job with status {ret}", host.spec);
                job.mark_backoff(&host);
                return job.fallback(Some(&host), ret, &serr, crash_reason(ret));
            }
            Outcome::LocalTrouble(msg) => {
                log::warn!("{msg}");
                return job.fallback(
                    Some(&host),
                    ExitCode::Failed.code(),
                    &[],
                    LocalReason::ClientTrouble,
                );
            }
            Outcome::HostFault(e) => {
                // Every message names the host: a stalled or reset connection's own text
                // ("Connection timed out") does not.
                match e {
                    RemoteError::Conn(_) | RemoteError::NoAnswer => {
                        log::warn!("{}: {e}", host.spec)
                    }
                    _ => log::warn!("{e}"),
                }
                // A host without this compiler is fine for other compilers: no backoff,
                // but it is skipped for this compiler for a while.
                if is_compiler_refusal(&e) {
                    job.skip_for_identity(&host, &e);
                } else {
                    job.mark_backoff(&host);
                }
                tried.push(index);
                let why = fault_reason(&e);
                last = Some((host, e.exit_code().code(), why));
            }
        }
    }
    match last {
        // distcc 3.4 reports a dead host as "no hosts" (116) when backoff is on, because the
        // failed host is backed off and re-choosing finds nothing; scripts see that code.
        Some((host, _, why)) if job.backoff_enabled() => {
            job.fallback(Some(&host), ExitCode::NoHosts.code(), &[], why)
        }
        Some((host, code, why)) => job.fallback(Some(&host), code, &[], why),
        None => {
            let why = no_host_reason(job);
            job.fallback(None, ExitCode::NoHosts.code(), &[], why)
        }
    }
}

/// Why no host could even be tried: none listed (or all `,down`), all refused this
/// compiler's identity recently, or all backed off.
fn no_host_reason(job: &Job) -> LocalReason {
    if job.identity_skipped {
        return LocalReason::CompilerIdentity;
    }
    let backed_off = job.sched.as_ref().is_some_and(|s| {
        job.hosts
            .hosts
            .iter()
            .any(|h| !h.down && s.backoff().is_backed_off(&h.lock_key()))
    });
    if backed_off {
        LocalReason::BackedOff
    } else {
        LocalReason::NoHosts
    }
}
