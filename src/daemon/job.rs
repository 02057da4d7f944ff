//! One compile job on the server: lay out its files in a private temp dir, run the
//! compiler in its own process group, and collect status, output and object
//! (distcc 3.4 `serve.c` `dcc_run_job`, `exec.c`).
//!
//! The job watches its client while the compiler runs: if the client goes away, or the job
//! outlives `--job-lifetime`, the whole process group is killed.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use thiserror::Error;

use super::argv::{self, ArgvError};
use super::pool::{self, Pool, Warm};
use super::tree::{Tree, TreeError};
use super::whitelist::{Policy, ResolveError, WhitelistError};
use crate::exitcode::ExitCode;
use crate::protocol::{Body, FileKind, Payload, Reply, Request};
use crate::settings::{DaemonEnv, SAFEGUARD_VAR};
use crate::temp;

/// Most bytes one received file (a preprocessed source, one pump file) may unpack to.
pub(crate) const MAX_FILE: usize = 256 << 20;
/// Most bytes all the files of one request may unpack to: what a job may put on disk.
pub(crate) const MAX_UNPACKED: usize = 1 << 30;

/// What all jobs together may be unpacking at one moment. Each LZO body reserves the most
/// it could unpack to (LZO1X grows at most ~256×) before it is unpacked, so many small
/// bombs at once wait their turn instead of each taking hundreds of MiB.
const UNPACKING: usize = 1 << 30;

/// A process-wide count of reserved bytes, waited on with a condvar: unpacking runs on
/// blocking-pool threads (or, for requests under 16 KiB, briefly on the executor).
struct Reserve {
    used: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
    cap: usize,
}

static UNPACK_RESERVE: Reserve = Reserve::new(UNPACKING);

impl Reserve {
    const fn new(cap: usize) -> Reserve {
        Reserve {
            used: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
            cap,
        }
    }

    /// Wait until `bytes` (at most the cap) fit, and take them.
    fn take(&self, bytes: usize) -> Reserved<'_> {
        let bytes = bytes.min(self.cap);
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used + bytes > self.cap {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += bytes;
        Reserved {
            reserve: self,
            bytes,
        }
    }
}

/// Bytes taken from a [`Reserve`]; given back when dropped.
struct Reserved<'a> {
    reserve: &'a Reserve,
    bytes: usize,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        let mut used = self.reserve.used.lock().unwrap_or_else(|p| p.into_inner());
        *used -= self.bytes;
        self.reserve.freed.notify_all();
    }
}

/// Unpack (or take) one received body, counting it against the request's total and,
/// while it lives, against what all jobs may be unpacking: an LZO bomb stops at the cap,
/// not when memory or disk runs out. Keep the guard until the data is written.
fn unpack(
    payload: Payload,
    total: &mut usize,
) -> Result<(Vec<u8>, Option<Reserved<'static>>), Refusal> {
    let left = MAX_UNPACKED.saturating_sub(*total).min(MAX_FILE);
    let (data, guard) = match payload {
        Payload::Plain(d) => (d, None),
        Payload::Lzo(d) => {
            let worst = d
                .len()
                .saturating_mul(256)
                .saturating_add(64 << 10)
                .min(left);
            let guard = UNPACK_RESERVE.take(worst);
            let data =
                crate::compress::decompress(&d, worst).map_err(|e| unpack_error(e, worst))?;
            (data, Some(guard))
        }
        Payload::Zstd(d) => {
            // zstd has no useful worst ratio (a frame of zeros unpacks ~30 000×), but our
            // client's frames declare their size: reserve that and stop there (a frame
            // that lies is refused). One without a size may take what is left.
            let limit = crate::compress::zstd_declared_size(&d).map_or(left, |n| n.min(left));
            let guard = UNPACK_RESERVE.take(limit);
            let data =
                crate::compress::zstd_decompress(&d, limit).map_err(|e| unpack_error(e, limit))?;
            (data, Some(guard))
        }
    };
    if data.len() > left {
        return Err(Refusal::TooLarge { limit: left });
    }
    *total += data.len();
    Ok((data, guard))
}

/// A body that does not unpack: too large, or corrupt (the client's doing either way).
fn unpack_error(e: crate::compress::CompressError, limit: usize) -> Refusal {
    match e {
        crate::compress::CompressError::TooLarge { .. } => Refusal::TooLarge { limit },
        e => Refusal::Server(e.to_string()),
    }
}

/// Why a request is refused without running anything (the connection is then closed).
#[derive(Debug, Error)]
pub(crate) enum Refusal {
    #[error(transparent)]
    Whitelist(#[from] WhitelistError),
    #[error("bad command line: {0}")]
    Argv(#[from] ArgvError),
    #[error("bad file list: {0}")]
    Tree(#[from] TreeError),
    #[error("pump request without a working directory (CDIR)")]
    NoCwd,
    #[error(
        "request unpacks to more than {limit} bytes (a file may unpack to {MAX_FILE}, a request to {MAX_UNPACKED})"
    )]
    TooLarge { limit: usize },
    #[error("server trouble: {0}")]
    Server(String),
    /// No compiler here has the client's compiler identity (the message names both).
    #[error("{0}")]
    Identity(String),
    #[error(transparent)]
    BadIdentity(#[from] crate::identity::ParseError),
}

impl Refusal {
    /// The refusal as the protocol extension tells it to the client (`RFSE`): a code the
    /// client maps to an outcome, and this refusal's own text.
    pub(crate) fn to_ext(&self) -> crate::ext::Refusal {
        use crate::ext::code;
        let c = match self {
            Refusal::Whitelist(WhitelistError::Empty) | Refusal::BadIdentity(_) => {
                code::BAD_REQUEST
            }
            Refusal::Identity(_) => code::COMPILER_IDENTITY,
            Refusal::Whitelist(_) => code::NOT_WHITELISTED,
            Refusal::Server(_) => code::SERVER_ERROR,
            Refusal::Argv(_) | Refusal::Tree(_) | Refusal::NoCwd | Refusal::TooLarge { .. } => {
                code::BAD_REQUEST
            }
        };
        crate::ext::Refusal::new(c, self.to_string())
    }

    /// distcc's return code for the summary line.
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            Refusal::Server(_) => ExitCode::IoError,
            _ => ExitCode::ProtocolError,
        }
    }
}

/// Settings every job shares.
#[derive(Debug, Clone)]
pub(crate) struct JobSettings {
    pub policy: Policy,
    pub job_lifetime: Option<Duration>,
    /// `TMPDIR` (job dirs), `DISTCCD_PATH`, `DISTCC_SAVE_TEMPS`, the dirs compilers may read.
    pub env: DaemonEnv,
    /// The compilers here and their identities, for clients that say which they mean.
    pub inventory: std::sync::Arc<super::whitelist::Inventory>,
    /// Pump-mode job dirs kept between jobs ([`super::pool`]).
    pub trees: std::sync::Arc<Pool>,
}

/// How the compile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Finished,
    TimedOut,
    ClientGone,
}

/// The outcome of running a job.
pub(crate) struct Finished {
    pub reply: Reply,
    pub ending: Ending,
    /// The compiler as requested and the input's name, for the summary line.
    pub compiler: String,
    pub input: String,
}

/// A prepared job: files written, command ready.
pub(crate) struct Prepared {
    dir: PathBuf,
    argv: Vec<String>,
    cwd: PathBuf,
    output: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Pump mode: the deps file, the temp root and the `.d` target.
    dotd: Option<(PathBuf, String, String)>,
    version: u8,
    compiler: String,
    input: String,
    save_temps: bool,
    /// A pump job's filled tree and the pool its dir goes back to.
    warm: Option<(Tree, std::sync::Arc<Pool>)>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if self.save_temps {
            return;
        }
        match self.warm.take() {
            Some((tree, pool)) => pool.give_back(Warm {
                dir: self.dir.clone(),
                tree,
            }),
            None => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }
}

/// Vet a request and lay out its files; nothing runs yet.
pub(crate) fn prepare(req: Request, settings: &JobSettings) -> Result<Prepared, Refusal> {
    prepare_for(req, settings, None)
}

/// [`prepare`] for a client that sent its compiler's identity (`CIDN`, [`crate::identity`]):
/// the compiler run is one with that identity ([`super::whitelist::Inventory::resolve`]).
/// An empty identity text means the client could not tell: the name decides, as for
/// any client.
pub(crate) fn prepare_for(
    req: Request,
    settings: &JobSettings,
    identity: Option<&str>,
) -> Result<Prepared, Refusal> {
    let compiler = req.argv.first().cloned().unwrap_or_default();
    let run_as = match identity.filter(|t| !t.is_empty()) {
        None => settings.policy.check(&compiler)?,
        Some(text) => {
            let client = crate::identity::Identity::parse(text.as_bytes())?;
            settings
                .inventory
                .resolve(&settings.policy, &compiler, &client)
                .map_err(|e| match e {
                    ResolveError::Whitelist(w) => Refusal::Whitelist(w),
                    ResolveError::Identity(m) => Refusal::Identity(m),
                })?
        }
    };
    let (mode, cwd) = match (&req.body, &req.cwd) {
        (Body::Source(_), _) => (argv::Mode::Plain, "/"),
        (Body::Files(_), Some(cwd)) => (argv::Mode::Pump, cwd.as_str()),
        (Body::Files(_), None) => return Err(Refusal::NoCwd),
    };
    let vetted = argv::vet(&req.argv, mode, cwd)?;
    let scan = argv::scan(&vetted)?;
    let input = vetted[scan.source].clone();
    let save_temps = settings.env.save_temps;
    let warm = match &req.body {
        Body::Files(_) if !save_temps => settings.trees.take(),
        _ => None,
    };
    let dir = match &warm {
        Some(w) => w.dir.clone(),
        None => temp::make_temp_dir_in(&settings.env.tmpdir, "distccd_")
            .map_err(|e| Refusal::Server(e.to_string()))?,
    };
    // Names nobody can guess: the received input is data, and a command line that
    // could name it (`-fplugin=./in.i`, `-specs=…`) must not find it.
    let tag = unguessable();
    // The output keeps the 13 characters of its old name `distccd_out.o`: gcc wraps the
    // `.d` lines by length, and pump mode's `.d` must stay byte-identical to distcc 3.4's.
    let short = tag.get(..10).unwrap_or("0000000000");
    let mut job = Prepared {
        output: dir.join(format!("o{short}.o")),
        stdout: dir.join("distcc.stdout"),
        stderr: dir.join("distcc.stderr"),
        cwd: dir.clone(),
        dir,
        argv: Vec::new(),
        dotd: None,
        version: req.version,
        compiler,
        input,
        save_temps,
        warm: None,
    };
    let output = job.output.display().to_string();
    match req.body {
        Body::Source(payload) => {
            let (data, _unpacking) = unpack(payload, &mut 0)?;
            argv::check_plain_source(&vetted, &data)?;
            let ext = argv::temp_input_extension(&job.input);
            let input_path = job.dir.join(format!("in_{tag}{ext}"));
            std::fs::write(&input_path, data).map_err(|e| Refusal::Server(e.to_string()))?;
            job.argv =
                argv::rewrite_plain(&vetted, &scan, &input_path.display().to_string(), &output);
        }
        Body::Files(files) => {
            let cwd = cwd.to_owned();
            // The client knows every name in the tree anyway; the root's name keeps its
            // length for the same `.d` reason as the output's.
            let root_path = job.dir.join(pool::ROOT);
            let wanted = files.iter().map(|f| match &f.kind {
                FileKind::File(_) => (f.name.as_str(), None),
                FileKind::Link(target) => (f.name.as_str(), Some(target.as_str())),
            });
            let reused = warm.and_then(|w| match w.tree.start_job(wanted, &cwd) {
                Ok(()) => Some(w.tree),
                Err(e) => {
                    log::debug!("job dir {} not reused: {e}", w.dir.display());
                    let _ = std::fs::remove_dir_all(&root_path);
                    None
                }
            });
            let tree = match reused {
                Some(tree) => tree,
                None => {
                    std::fs::create_dir(&root_path).map_err(|e| Refusal::Server(e.to_string()))?;
                    Tree::open(&root_path).map_err(|e| Refusal::Server(e.to_string()))?
                }
            };
            // One file unpacked at a time, written, and dropped.
            let mut total = 0;
            for f in files {
                match f.kind {
                    FileKind::File(payload) => {
                        let (data, _unpacking) = unpack(payload, &mut total)?;
                        tree.write_file(&f.name, &data)?
                    }
                    FileKind::Link(target) => tree.make_link(&f.name, &target)?,
                };
            }
            job.cwd = tree.make_dir(&cwd)?;
            let root = root_path.display().to_string();
            let deps = job.dir.join(format!("deps_{tag}.d"));
            let p = argv::rewrite_pump(&vetted, &scan, &root, &output, &deps.display().to_string());
            let target = p
                .dotd_target
                .or_else(|| scan.output_name.clone())
                .unwrap_or_else(|| "a.o".to_owned());
            job.argv = p.argv;
            job.dotd = Some((deps, root, target));
            if !save_temps {
                job.warm = Some((tree, settings.trees.clone()));
            }
        }
    }
    job.argv[0] = run_as;
    Ok(job)
}

/// 128 random bits in hex from the kernel (`getrandom`), for names in the job's dir.
fn unguessable() -> String {
    let mut buf = [0u8; 16];
    let filled = rustix::rand::getrandom(&mut buf, rustix::rand::GetRandomFlags::empty());
    if filled.ok() != Some(buf.len()) {
        // No getrandom (or a short read): still unlikely to guess, and the names are only
        // defence in depth (the options that could name them are refused).
        fastrand::fill(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl Prepared {
    /// Run the compiler; `client_gone` resolves if the client disconnects. Returns the wait
    /// status, how it ended, and any message of ours for the client's stderr.
    pub(crate) async fn run(
        &self,
        settings: &JobSettings,
        client_gone: impl Future<Output = ()>,
    ) -> (u32, Ending, Vec<u8>) {
        match self.spawn(settings) {
            Err(e) => {
                let msg = format!("distccd: failed to exec {}: {e}\n", self.argv[0]);
                log::warn!("{}", msg.trim_end());
                let status = u32::from(ExitCode::CompilerMissing.code() as u8) << 8;
                (status, Ending::Finished, msg.into_bytes())
            }
            Ok(child) => {
                let (status, ending) = wait(child, settings.job_lifetime, client_gone).await;
                (status, ending, Vec::new())
            }
        }
    }

    /// A pump job's files and links, and how many were kept from an earlier job.
    pub(crate) fn files_kept(&self) -> Option<(usize, usize)> {
        self.warm.as_ref().map(|(tree, _)| tree.files_kept())
    }

    /// The compiler as requested and the input's name: the monitor shows them while the
    /// job runs, before [`Prepared::finish`] hands them over.
    pub(crate) fn names(&self) -> (&str, &str) {
        (&self.compiler, &self.input)
    }

    /// The size of the object the compiler wrote (0 if none).
    pub(crate) fn object_len(&self) -> usize {
        std::fs::metadata(&self.output).map_or(0, |m| m.len() as usize)
    }

    /// Collect the results into a reply. The job's files stay until `self` is dropped, so
    /// the caller can send the reply first and clean up after.
    pub(crate) fn finish(&self, status: u32, ending: Ending, extra_stderr: Vec<u8>) -> Finished {
        let mut reply = Reply {
            version: self.version,
            status,
            stderr: std::fs::read(&self.stderr).unwrap_or_default(),
            stdout: std::fs::read(&self.stdout).unwrap_or_default(),
            ..Reply::default()
        };
        reply.stderr.extend_from_slice(&extra_stderr);
        if status == 0 {
            reply.object = std::fs::read(&self.output).unwrap_or_default();
            if let Some((deps, root, target)) = &self.dotd {
                let text = std::fs::read_to_string(deps).unwrap_or_default();
                let out = self.output.display().to_string();
                reply.dotd = Some(argv::rewrite_dotd(&text, root, &out, target).into_bytes());
            }
        }
        Finished {
            reply,
            ending,
            compiler: self.compiler.clone(),
            input: self.input.clone(),
        }
    }

    /// Start the compiler: in its namespace sandbox where the daemon has one, else (or
    /// when this job's sandbox cannot be made) as before.
    fn spawn(&self, settings: &JobSettings) -> std::io::Result<smol::process::Child> {
        use super::sandbox::{self, Namespace};
        let namespace = Namespace::prepare(&sandbox::writable(&self.dir, &settings.env), &self.cwd);
        match namespace {
            Ok(None) => self.spawn_in(settings, None),
            Ok(Some(ns)) => match self.spawn_in(settings, Some(ns)) {
                Ok(child) => Ok(child),
                // A compiler that is missing fails again here, with its own error.
                Err(first) => self
                    .spawn_in(settings, None)
                    .inspect(|_| sandbox::ran_without(&first)),
            },
            Err(e) => self
                .spawn_in(settings, None)
                .inspect(|_| sandbox::ran_without(&e)),
        }
    }

    fn spawn_in(
        &self,
        settings: &JobSettings,
        namespace: Option<super::sandbox::Namespace>,
    ) -> std::io::Result<smol::process::Child> {
        let mut cmd = std::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .current_dir(&self.cwd)
            .process_group(0)
            .env(
                SAFEGUARD_VAR,
                (settings.env.safeguard_level + 1).to_string(),
            )
            // gcc's own temporaries (cc*.s between cc1 and as) go in the job's dir, which
            // is removed whole, or emptied but for its checked tree (src/daemon/pool.rs):
            // a compiler killed mid-job leaves nothing behind (found by `make fuzz`), and
            // no job sees another's files.
            .env("TMPDIR", &self.dir);
        if let Some(path) = &settings.env.distccd_path {
            cmd.env("PATH", path);
        }
        // Reads confined to the system, the compiler's own dirs and this job's dir.
        let confinement = super::sandbox::Confinement::reads_beneath(&super::sandbox::readable(
            &self.dir,
            &settings.env,
            &self.argv[0],
        ));
        // SAFETY: the closure only makes async-signal-safe system calls (see `enter`).
        unsafe {
            cmd.pre_exec(move || {
                if let Some(ns) = &namespace {
                    ns.enter()?;
                }
                confinement.enter()
            });
        }
        // Converting to smol's Command keeps the program, args, env, cwd and process group,
        // but not stdio: set that on the converted command.
        let mut cmd = smol::process::Command::from(cmd);
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&self.stdout)?)
            .stderr(std::fs::File::create(&self.stderr)?);
        cmd.spawn()
    }
}

/// Process groups of the compilers running now. A compiler runs in its own group, so one
/// that is still running when the daemon stops would outlive it: the daemon ends them all
/// ([`end_running_compilers`]) before it exits.
static RUNNING: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<libc::pid_t>> {
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A compiler's group in [`RUNNING`] while its job waits for it.
struct Registered(libc::pid_t);

impl Registered {
    fn new(pid: libc::pid_t) -> Registered {
        running().push(pid);
        Registered(pid)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        running().retain(|p| *p != self.0);
    }
}

/// Is anything left of process group `pgid`?
fn group_alive(pgid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// Stop every compiler still running: SIGTERM their groups, SIGKILL what is left after
/// `grace`. Returns how many groups there were.
pub(crate) async fn end_running_compilers(grace: Duration) -> usize {
    let groups = running().clone();
    for &pgid in &groups {
        // SAFETY: signalling process groups we created for compilers.
        unsafe { libc::killpg(pgid, libc::SIGTERM) };
    }
    let deadline = std::time::Instant::now() + grace;
    while groups.iter().any(|&g| group_alive(g)) && std::time::Instant::now() < deadline {
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    for &pgid in groups.iter().filter(|&&g| group_alive(g)) {
        // SAFETY: as above.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }
    groups.len()
}

/// The largest peak RSS (kB) among the compilers this daemon has waited for: the kernel
/// folds each reaped child's wait4 rusage `ru_maxrss` into `RUSAGE_CHILDREN`. (The
/// executor reaps our compilers, so a single child's rusage is not ours to read; the running
/// maximum, read just after a job's compiler is reaped, is what `dcc_max_RSS` reports.)
pub(crate) fn children_peak_rss_kb() -> u64 {
    // SAFETY: getrusage fills the zeroed struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage struct.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0;
    }
    u64::try_from(usage.ru_maxrss).unwrap_or(0)
}

/// Wait for the compiler, killing its process group on timeout or disconnect.
async fn wait(
    mut child: smol::process::Child,
    lifetime: Option<Duration>,
    client_gone: impl Future<Output = ()>,
) -> (u32, Ending) {
    let pid = child.id() as libc::pid_t;
    let _registered = Registered::new(pid);
    enum Event {
        Exited(std::io::Result<std::process::ExitStatus>),
        Timeout,
        Gone,
    }
    let exited = async { Event::Exited(child.status().await) };
    let timeout = async {
        match lifetime {
            Some(d) => {
                smol::Timer::after(d).await;
                Event::Timeout
            }
            None => std::future::pending().await,
        }
    };
    let gone = async {
        client_gone.await;
        Event::Gone
    };
    let event = smol::future::or(exited, smol::future::or(timeout, gone)).await;
    let ending = match event {
        Event::Exited(Ok(status)) => return (status.into_raw() as u32, Ending::Finished),
        Event::Exited(Err(e)) => {
            log::error!("waiting for compiler {pid}: {e}");
            return (
                u32::from(ExitCode::CompilerCrashed.code() as u8) << 8,
                Ending::Finished,
            );
        }
        Event::Timeout => Ending::TimedOut,
        Event::Gone => Ending::ClientGone,
    };
    // SIGTERM the compiler's process group; SIGKILL it if it is still there in a moment.
    // SAFETY: signalling the process group we created for this compiler.
    unsafe { libc::killpg(pid, libc::SIGTERM) };
    let grace = async {
        smol::Timer::after(Duration::from_secs(2)).await;
        None
    };
    if smol::future::or(async { Some(child.status().await) }, grace)
        .await
        .is_none()
    {
        // SAFETY: as above; the leader has not been reaped, so the group id is still ours.
        unsafe { libc::killpg(pid, libc::SIGKILL) };
        let _ = child.status().await;
    }
    let status = match ending {
        Ending::TimedOut => u32::from(ExitCode::Timeout.code() as u8) << 8,
        _ => u32::from(ExitCode::Gone.code() as u8) << 8,
    };
    (status, ending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacking_waits_for_room_beside_other_jobs() {
        let reserve = Reserve::new(1000);
        let first = reserve.take(600);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let _second = reserve.take(600);
                let _ = tx.send(());
            });
            assert!(
                rx.recv_timeout(std::time::Duration::from_millis(200))
                    .is_err(),
                "600 + 600 fit in 1000"
            );
            drop(first);
            rx.recv_timeout(std::time::Duration::from_secs(10))
                .expect("room once the first is given back");
        });
        assert_eq!(*reserve.used.lock().unwrap(), 0);
    }

    #[test]
    fn unpacking_stops_at_the_caps() {
        // Within the file cap but past what the request has left.
        let mut total = MAX_UNPACKED - 1000;
        let bomb = crate::compress::compress(&vec![0u8; 1 << 20]).unwrap();
        assert!(bomb.len() < 16 * 1024, "a megabyte of zeros packs small");
        assert!(matches!(
            unpack(Payload::Lzo(bomb.clone()), &mut total),
            Err(Refusal::TooLarge { limit: 1000 })
        ));
        assert!(matches!(
            unpack(Payload::Plain(vec![1; 1001]), &mut total),
            Err(Refusal::TooLarge { .. })
        ));
        assert_eq!(
            total,
            MAX_UNPACKED - 1000,
            "nothing counted for refused files"
        );
        let mut total = 0;
        assert_eq!(
            unpack(Payload::Lzo(bomb), &mut total).unwrap().0.len(),
            1 << 20
        );
        assert_eq!(total, 1 << 20);
    }

    #[test]
    fn zstd_bodies_stop_at_the_caps_too() {
        let bomb = crate::compress::zstd_compress(&vec![0u8; 4 << 20]).unwrap();
        assert!(bomb.len() < 1024, "4 MiB of zeros packs tiny");
        let mut total = MAX_UNPACKED - 1000;
        assert!(matches!(
            unpack(Payload::Zstd(bomb.clone()), &mut total),
            Err(Refusal::TooLarge { limit: 1000 })
        ));
        let mut total = 0;
        let (data, guard) = unpack(Payload::Zstd(bomb), &mut total).unwrap();
        assert_eq!((data.len(), total), (4 << 20, 4 << 20));
        // It reserved what the frame declared, not what a file may hold.
        assert_eq!(guard.map(|g| g.bytes), Some(4 << 20));
    }

    fn settings(tmp: &std::path::Path) -> JobSettings {
        JobSettings {
            policy: Policy::Insecure,
            job_lifetime: None,
            env: DaemonEnv {
                tmpdir: tmp.to_owned(),
                ..DaemonEnv::default()
            },
            inventory: std::sync::Arc::new(super::super::whitelist::Inventory::new(
                &DaemonEnv::default(),
            )),
            trees: std::sync::Arc::new(Pool::new(4)),
        }
    }

    fn plain(argv: &[&str]) -> Request {
        Request {
            version: 1,
            cwd: None,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            body: Body::Source(Payload::Plain(b"int x;\n".to_vec())),
        }
    }

    #[test]
    fn received_files_have_names_nobody_can_guess() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path());
        let a = prepare(plain(&["gcc", "-c", "a.c", "-o", "a.o"]), &s).unwrap();
        let b = prepare(plain(&["gcc", "-c", "a.c", "-o", "a.o"]), &s).unwrap();
        let input = |p: &Prepared| p.argv[2].clone();
        assert_ne!(input(&a), input(&b));
        for p in [&a, &b] {
            let name = std::path::Path::new(&input(p))
                .file_name()
                .unwrap()
                .to_owned();
            let name = name.to_string_lossy();
            assert!(name.starts_with("in_") && name.ends_with(".i"), "{name}");
            assert_eq!(name.len(), "in_".len() + 32 + ".i".len(), "{name}");
            assert!(!p.argv.iter().any(|w| w.contains("distccd_in")));
        }
        assert_ne!(a.output, b.output);
    }

    #[test]
    fn refusals_name_the_option() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path());
        let err = prepare(plain(&["gcc", "-wrapper", "/bin/sh,-c,x", "-c", "a.c"]), &s)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "bad command line: option -wrapper is refused on a distcc server: it runs a program"
        );
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "no job dir left"
        );
    }
}
