//! What identifies a compiler, so that a server runs the same one the client would (issue
//! 14). distcc 3.4 compares compiler *names* only: a host whose `gcc` is another version
//! silently builds different objects, which is why every distcc guide starts with "use
//! the same compiler everywhere".
//!
//! An [`Identity`] is what decides the code a compiler makes:
//! * its family (`gcc`, `clang`) and full version (`gcc -v`'s `gcc version 12.2.0`, the
//!   string `-dumpfullversion` prints; `clang version 14.0.6`);
//! * its target triple (`-dumpmachine`);
//! * a fingerprint: a hash of gcc's `cc1` (and `cc1plus` for a C++ driver) as
//!   `-print-prog-name` finds them, or of clang's driver binary (found past a ccache-style
//!   wrapper), and of the lines of `-v` that describe the
//!   build (`Target:`, `Configured with:`, `Thread model:`, the version line, clang's
//!   `Selected GCC installation:`). The lines that name the path it was run under
//!   (`COLLECT_GCC=`, `InstalledDir:`) are left out, so `gcc` and `gcc-12` linking to one
//!   binary have one identity. Two builds of one version differ in their fingerprint
//!   (another distribution's patches, `--enable-default-pie`, …), and those do make
//!   different objects.
//!
//! The fingerprint is two FNV-1a lanes (128 bits): it tells builds apart, it is not a
//! security boundary — a client that wants to lie about its compiler could anyway.
//!
//! The client computes its identity once per executable and keeps it in
//! `$DISTCC_DIR/cache/identity-…` (see [`crate::client::rewrite::CacheEntry`]: keyed by
//! the path run and the binary's device, inode, size, mtime and ctime), with the stamps of
//! the `cc1`s it hashed, so that a job pays a `stat` or three, not a probe.
//!
//! On the wire the identity is one line of `key=value` words (the `CIDN` packet's body,
//! see [`Identity::to_text`]); unknown keys are ignored, so later versions can add some:
//!
//! ```text
//! CIDN00000060compiler=gcc version=12.2.0 target=x86_64-linux-gnu fingerprint=<32 hex digits>
//! ```
//!
//! An empty body says the client could not tell (an unknown compiler): the daemon then
//! goes by the name alone, as for a distcc 3.4 client. The daemon reads at most
//! [`MAX_TEXT`] bytes of it, [`MAX_FIELDS`] fields of at most [`MAX_VALUE`] characters
//! from `[A-Za-z0-9._+~-]`; anything else is a `bad-request` refusal.
//!
//! A host that refused a compiler's identity is skipped for that compiler only, for a
//! while ([`Skips`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::pump::stamp::FileId;

/// The longest identity text accepted from the network.
pub(crate) const MAX_TEXT: usize = 512;
/// The longest value of one field.
const MAX_VALUE: usize = 64;
/// The most fields one identity text may have (known and unknown).
const MAX_FIELDS: usize = 16;
/// Hex digits of a fingerprint.
const FINGERPRINT_LEN: usize = 32;
/// A skip memo lives at least this long: a compiler mismatch is not a passing fault.
const MIN_SKIP: Duration = Duration::from_secs(600);

/// Errors reading an identity text (the daemon's `CIDN` packet: untrusted).
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum ParseError {
    #[error("compiler identity longer than {MAX_TEXT} bytes")]
    TooLong,
    #[error("compiler identity is not one line of UTF-8 text")]
    NotText,
    #[error("compiler identity has more than {MAX_FIELDS} fields")]
    TooManyFields,
    #[error("compiler identity field {0:?} is not key=value")]
    BadField(String),
    #[error("compiler identity field {0} has a bad value")]
    BadValue(String),
    #[error("compiler identity gives {0} twice")]
    Duplicate(String),
    #[error("compiler identity lacks {0}")]
    Missing(&'static str),
}

/// Errors finding out a compiler's identity.
#[derive(Debug, Error)]
pub(crate) enum IdentityError {
    #[error("failed to run {program} {arg}: {source}")]
    Run {
        program: PathBuf,
        arg: &'static str,
        source: std::io::Error,
    },
    #[error("{program} {arg} failed ({status})")]
    Failed {
        program: PathBuf,
        arg: &'static str,
        status: std::process::ExitStatus,
    },
    #[error("{program} -v names no gcc or clang version")]
    Unrecognised { program: PathBuf },
    #[error("{program} -dumpmachine gave no target triple")]
    NoTarget { program: PathBuf },
    #[error("failed to read {path} for its fingerprint: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{program} gave a version or target that can't be sent ({what:?})")]
    Unsendable { program: PathBuf, what: String },
}

/// What identifies a compiler: two with equal identities make the same objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    /// `gcc` or `clang`.
    pub(crate) family: String,
    /// The full version: `12.2.0`.
    pub(crate) version: String,
    /// The target triple: `x86_64-linux-gnu`.
    pub(crate) target: String,
    /// 32 lowercase hex digits (see the module docs).
    pub(crate) fingerprint: String,
}

/// How two identities differ, from the server's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    /// The same compiler.
    Same,
    /// Same family, version and target, another build: refused too (see
    /// [`crate::daemon::whitelist`]), because it may make other code.
    OtherBuild,
    /// Another family, version or target.
    Other,
}

/// A value as it may travel: printable ASCII without spaces or `=`, at most
/// [`MAX_VALUE`] bytes.
fn valid_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_VALUE
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'~'))
}

impl Identity {
    /// The wire form (the `CIDN` body) and the cached form: one line,
    /// `compiler=gcc version=12.2.0 target=x86_64-linux-gnu fingerprint=<32 hex>`.
    pub(crate) fn to_text(&self) -> String {
        format!(
            "compiler={} version={} target={} fingerprint={}",
            self.family, self.version, self.target, self.fingerprint
        )
    }

    /// Read the wire form. Bounded (length, fields, characters), because the daemon gets
    /// it from anyone who may connect; unknown keys are ignored, known ones must be valid.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Identity, ParseError> {
        if bytes.len() > MAX_TEXT {
            return Err(ParseError::TooLong);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ParseError::NotText)?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        if text.contains(['\n', '\r', '\0']) {
            return Err(ParseError::NotText);
        }
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for (n, word) in text.split(' ').filter(|w| !w.is_empty()).enumerate() {
            if n >= MAX_FIELDS {
                return Err(ParseError::TooManyFields);
            }
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| ParseError::BadField(word.chars().take(MAX_VALUE).collect()))?;
            if !valid_value(key) {
                return Err(ParseError::BadField(key.chars().take(MAX_VALUE).collect()));
            }
            if !valid_value(value) {
                return Err(ParseError::BadValue(key.to_string()));
            }
            if fields.insert(key, value).is_some() {
                return Err(ParseError::Duplicate(key.to_string()));
            }
        }
        let get = |k: &'static str| {
            fields
                .get(k)
                .map(|v| v.to_string())
                .ok_or(ParseError::Missing(k))
        };
        let id = Identity {
            family: get("compiler")?,
            version: get("version")?,
            target: get("target")?,
            fingerprint: get("fingerprint")?,
        };
        let hex = id.fingerprint.len() == FINGERPRINT_LEN
            && id
                .fingerprint
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(ParseError::BadValue("fingerprint".into()));
        }
        Ok(id)
    }

    /// `gcc 12.2.0 x86_64-linux-gnu`: how messages name it.
    pub(crate) fn describe(&self) -> String {
        format!("{} {} {}", self.family, self.version, self.target)
    }

    /// The major version (`12` of `12.2.0`): the `gcc-12` name a host may have.
    pub(crate) fn major(&self) -> &str {
        self.version.split('.').next().unwrap_or(&self.version)
    }

    /// The first 8 digits of the fingerprint, for messages.
    pub(crate) fn short_fingerprint(&self) -> &str {
        self.fingerprint.get(..8).unwrap_or(&self.fingerprint)
    }

    /// A short stable key naming this identity in file names (the skip memo).
    pub(crate) fn key(&self) -> String {
        format!(
            "{:016x}",
            crate::client::rewrite::fnv1a(self.to_text().as_bytes())
        )
    }

    /// How `other` (a server's compiler) compares with `self` (the client's).
    pub(crate) fn compare(&self, other: &Identity) -> Match {
        if self == other {
            Match::Same
        } else if self.family == other.family
            && self.version == other.version
            && self.target == other.target
        {
            Match::OtherBuild
        } else {
            Match::Other
        }
    }

    /// The refusal's message when the server's compiler `theirs` is not `self`:
    /// "client gcc 12.2.0 x86_64-linux-gnu; this host has 11.3.0".
    pub(crate) fn mismatch_message(&self, theirs: &Identity) -> String {
        let mine = self.describe();
        match self.compare(theirs) {
            Match::Same => format!("client {mine}; this host has the same"),
            Match::OtherBuild => format!(
                "client {mine} (build {}); this host has {} of another build ({}), which \
                 may make other code (if it is the same compiler built on that host, set \
                 DISTCCD_ACCEPT_OTHER_BUILDS=1 there)",
                self.short_fingerprint(),
                theirs.version,
                theirs.short_fingerprint()
            ),
            Match::Other if self.family == theirs.family && self.target == theirs.target => {
                format!("client {mine}; this host has {}", theirs.version)
            }
            Match::Other => format!("client {mine}; this host has {}", theirs.describe()),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A probed identity with the stamps of the other files it hashed (the `cc1`s): it holds
/// while they do.
#[derive(Debug, Clone)]
pub(crate) struct Probed {
    pub(crate) identity: Identity,
    deps: Vec<(PathBuf, Option<FileId>)>,
}

impl Probed {
    /// Are the files it depends on still the ones hashed?
    fn fresh(&self) -> bool {
        self.deps.iter().all(|(p, id)| FileId::stat(p) == *id)
    }
}

/// Two FNV-1a lanes with different offsets: 128 bits of "is this the same build".
struct Hasher {
    a: u64,
    b: u64,
}

impl Hasher {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Hasher {
        Hasher {
            a: 0xcbf2_9ce4_8422_2325,
            b: 0x6c62_272e_07bb_0142,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        for &x in bytes {
            self.a = (self.a ^ u64::from(x)).wrapping_mul(Self::PRIME);
            self.b = (self.b ^ u64::from(x.rotate_left(3))).wrapping_mul(Self::PRIME);
        }
    }

    /// A labelled, length-prefixed item, so that no two inputs run together alike.
    fn item(&mut self, label: &str, bytes: &[u8]) {
        self.update(format!("{label} {} ", bytes.len()).as_bytes());
        self.update(bytes);
    }

    fn file(&mut self, label: &str, path: &Path) -> Result<(), IdentityError> {
        let err = |source| IdentityError::Read {
            path: path.to_owned(),
            source,
        };
        let mut f = std::fs::File::open(path).map_err(err)?;
        let len = f.metadata().map_err(err)?.len();
        self.update(format!("{label} {len} ").as_bytes());
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(err)?;
            if n == 0 {
                return Ok(());
            }
            self.update(buf.get(..n).unwrap_or_default());
        }
    }

    fn hex(&self) -> String {
        format!("{:016x}{:016x}", self.a, self.b)
    }
}

/// Run `program arg`; its stdout and stderr.
fn run(
    program: &Path,
    arg: &'static str,
    child_env: &[(OsString, OsString)],
) -> Result<(String, String), IdentityError> {
    let out = Command::new(program)
        .arg(arg)
        .envs(child_env.iter().map(|(k, v)| (k, v)))
        // The words of `-v` must not depend on the user's language.
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| IdentityError::Run {
            program: program.to_owned(),
            arg,
            source,
        })?;
    if !out.status.success() {
        return Err(IdentityError::Failed {
            program: program.to_owned(),
            arg,
            status: out.status,
        });
    }
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The family and version in `-v`'s output, and the lines that describe the build.
fn read_v(text: &str) -> (Option<(String, String)>, Vec<&str>) {
    let mut found = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("gcc version ") {
            if found.is_none() {
                let v = rest.split(' ').next().unwrap_or("");
                found = Some(("gcc".to_string(), v.to_string()));
            }
            lines.push(line);
        } else if let Some(at) = line.find("clang version ") {
            if found.is_none() {
                let rest = line.get(at + "clang version ".len()..).unwrap_or("");
                let v = rest.split(' ').next().unwrap_or("");
                found = Some(("clang".to_string(), v.to_string()));
            }
            lines.push(line);
        } else if [
            "Target:",
            "Configured with:",
            "Thread model:",
            "Selected GCC installation:",
            "Selected multilib:",
        ]
        .iter()
        .any(|p| line.starts_with(p))
        {
            lines.push(line);
        }
    }
    (found, lines)
}

/// Probe `program` (a path): run `-v`, `-dumpmachine` and for gcc `-print-prog-name`, and
/// hash what decides the code. A C++ driver (a name with `++`) has `cc1plus` hashed too.
pub(crate) fn probe(
    program: &Path,
    child_env: &[(OsString, OsString)],
) -> Result<Probed, IdentityError> {
    let (_, verbose) = run(program, "-v", child_env)?;
    let (found, lines) = read_v(&verbose);
    let Some((family, version)) = found else {
        return Err(IdentityError::Unrecognised {
            program: program.to_owned(),
        });
    };
    let (out, _) = run(program, "-dumpmachine", child_env)?;
    let target = out.trim().to_string();
    if target.is_empty() {
        return Err(IdentityError::NoTarget {
            program: program.to_owned(),
        });
    }
    for what in [&version, &target] {
        if !valid_value(what) {
            return Err(IdentityError::Unsendable {
                program: program.to_owned(),
                what: what.chars().take(MAX_VALUE).collect(),
            });
        }
    }
    let mut h = Hasher::new();
    h.item("family", family.as_bytes());
    h.item("version", version.as_bytes());
    h.item("target", target.as_bytes());
    for l in &lines {
        h.item("v", l.as_bytes());
    }
    // gcc's driver only passes the job to cc1/cc1plus (hashed below); what it adds is its
    // version and configuration, which are the `-v` lines above. Hashing the binary would
    // make a driver reached through ccache (the wiki's server-side ccache, a client PATH
    // with /usr/lib/ccache) look like another compiler and send every job home. clang's
    // driver is the compiler: hash it, found past such a wrapper through `InstalledDir:`.
    if family != "gcc" {
        let driver = clang_driver(program, &verbose).map_err(|source| IdentityError::Read {
            path: program.to_owned(),
            source,
        })?;
        h.file("driver", &driver)?;
    }
    let mut deps = Vec::new();
    if family == "gcc" {
        let name = crate::paths::basename(program);
        let mut progs = vec!["-print-prog-name=cc1"];
        if name.contains("++") {
            progs.push("-print-prog-name=cc1plus");
        }
        for arg in progs {
            let (out, _) = run(program, arg, child_env)?;
            let p = PathBuf::from(out.trim());
            // A bare name means the driver did not find it (no such language installed).
            if p.is_absolute() && p.is_file() {
                h.file(arg, &p)?;
                let id = FileId::stat(&p);
                deps.push((p, id));
            } else {
                h.item(arg, b"-");
            }
        }
    }
    Ok(Probed {
        identity: Identity {
            family,
            version,
            target,
            fingerprint: h.hex(),
        },
        deps,
    })
}

/// Programs that stand in front of a compiler and run the real one (a masquerade link
/// to one of these is not the compiler).
pub(crate) const WRAPPERS: [&str; 5] = ["ccache", "sccache", "distcc", "icecc", "buildcache"];

/// The binary that is `program`'s compiler: `program` itself (links resolved), or, when
/// that is a [`WRAPPERS`] program, the same name in the directory `-v` reports as
/// `InstalledDir:`.
fn clang_driver(program: &Path, verbose: &str) -> std::io::Result<PathBuf> {
    let resolved = std::fs::canonicalize(program)?;
    let is_wrapper = resolved
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| WRAPPERS.contains(&n));
    if !is_wrapper {
        return Ok(resolved);
    }
    let dir = verbose
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("InstalledDir: "))
        .ok_or_else(|| {
            std::io::Error::other("a compiler wrapper whose -v names no InstalledDir")
        })?;
    let name = program
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    std::fs::canonicalize(Path::new(dir).join(name))
}

/// The client's cache of identities (`$DISTCC_DIR/cache/identity-…`): the identity line,
/// then a `dep <FileId hash> <path>` line per other file hashed.
const IDENTITY_KIND: crate::client::rewrite::Kind = crate::client::rewrite::Kind {
    // "-2": the fingerprint no longer hashes gcc's driver; older entries are not believed.
    name: "identity-2",
    label: "identity",
    valid: valid_cached,
};

/// The cached answer for a program that is not a compiler we can identify (a script, a
/// compiler of another family): kept too, so such a job does not run the probes again.
const UNKNOWN: &str = "unknown";

fn valid_cached(answer: &str) -> bool {
    if answer.trim_end() == UNKNOWN {
        return true;
    }
    let mut lines = answer.lines();
    lines
        .next()
        .is_some_and(|l| Identity::parse(l.as_bytes()).is_ok())
        && lines.all(|l| l.starts_with("dep "))
}

fn stamp_hash(id: Option<FileId>) -> String {
    let text = id.map_or_else(|| "none".to_string(), |i| i.describe());
    format!("{:016x}", crate::client::rewrite::fnv1a(text.as_bytes()))
}

fn cached_text(p: &Probed) -> Option<String> {
    let mut s = p.identity.to_text();
    for (path, id) in &p.deps {
        let path = path.to_str()?;
        if path.contains('\n') {
            return None;
        }
        s.push_str(&format!("\ndep {} {path}", stamp_hash(*id)));
    }
    Some(s)
}

/// A cache entry's answer: `Some(None)` for [`UNKNOWN`], `None` when it must be probed
/// again (unreadable, or a `cc1` it hashed has changed).
fn from_cached(text: &str) -> Option<Option<Identity>> {
    if text.trim_end() == UNKNOWN {
        return Some(None);
    }
    let mut lines = text.lines();
    let identity = Identity::parse(lines.next()?.as_bytes()).ok()?;
    for l in lines {
        let (hash, path) = l.strip_prefix("dep ")?.split_once(' ')?;
        if stamp_hash(FileId::stat(Path::new(path))) != hash {
            return None;
        }
    }
    Some(Some(identity))
}

/// The identity of `program`, from `cache_dir` when it holds one for this very executable
/// (and its `cc1` is unchanged), else probed and stored there.
pub(crate) fn of_program(
    program: &Path,
    child_env: &[(OsString, OsString)],
    cache_dir: Option<&Path>,
) -> Result<Identity, IdentityError> {
    use crate::client::rewrite::CacheEntry;
    let entry = cache_dir.and_then(|d| CacheEntry::new(d, program, IDENTITY_KIND, &[]));
    match entry
        .as_ref()
        .and_then(CacheEntry::read)
        .and_then(|t| from_cached(&t))
    {
        Some(Some(id)) => return Ok(id),
        Some(None) => {
            return Err(IdentityError::Unrecognised {
                program: program.to_owned(),
            });
        }
        None => {}
    }
    let probed = match probe(program, child_env) {
        Ok(p) => p,
        Err(e) => {
            // What the program answered is as fixed as its binary: remember it. Not being
            // able to run or read it may pass (fork failed, a file being replaced).
            let answered = !matches!(e, IdentityError::Run { .. } | IdentityError::Read { .. });
            if let (true, Some(entry)) = (answered, &entry) {
                entry.write(UNKNOWN);
            }
            return Err(e);
        }
    };
    if let (Some(entry), Some(text)) = (&entry, cached_text(&probed)) {
        entry.write(&text);
    }
    Ok(probed.identity)
}

/// The identity of the compiler a client job runs (`compiler` as on its command line,
/// found on the invocation's PATH); `None` (logged) when it can't be found out, and then
/// the job goes without one, as to a distcc 3.4 host.
pub(crate) fn for_client(
    inv: &crate::client::invocation::Invocation,
    env: &crate::settings::ClientEnv,
    compiler: &str,
) -> Option<Identity> {
    let program = crate::paths::which_once(compiler, inv.path.as_deref())?;
    let cache = crate::temp::sub_dir_path(&env.dirs, "cache").ok();
    match of_program(&program, &inv.child_env(), cache.as_deref()) {
        Ok(id) => Some(id),
        Err(e) => {
            log::info!("no compiler identity for {compiler}: {e}");
            None
        }
    }
}

/// The daemon's memory of its compilers' identities, keyed by what identifies the
/// executable ([`crate::pump::stamp::exe_identity`]): probed once per executable, again
/// only if it or its `cc1` changes.
#[derive(Debug, Default)]
pub(crate) struct Known {
    map: Mutex<HashMap<ExeKey, Result<Probed, String>>>,
}

/// What identifies an executable: [`crate::pump::stamp::exe_identity`].
type ExeKey = (Vec<u8>, FileId);

/// The daemon keeps at most this many compilers' identities (a bound on memory; a
/// host has a handful).
const MAX_KNOWN: usize = 256;

impl Known {
    /// The identity of `program` (a path), probed with `child_env` if not known.
    pub(crate) fn get(
        &self,
        program: &Path,
        child_env: &[(OsString, OsString)],
    ) -> Result<Identity, String> {
        let Some(key) = crate::pump::stamp::exe_identity(program) else {
            return Err(format!("can't examine {}", program.display()));
        };
        {
            let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(Ok(p)) if p.fresh() => return Ok(p.identity.clone()),
                Some(Err(e)) => return Err(e.clone()),
                _ => {}
            }
        }
        // Probed without the lock: two jobs may probe at once, which only costs time.
        let probed = probe(program, child_env);
        // What the compiler said is kept; a failure to run or read it (no memory for a
        // fork, a file being replaced) is asked again next time.
        let lasting = match &probed {
            Ok(_) => true,
            Err(e) => !matches!(e, IdentityError::Run { .. } | IdentityError::Read { .. }),
        };
        let probed = probed.map_err(|e| e.to_string());
        if lasting {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= MAX_KNOWN {
                map.clear();
            }
            map.insert(key, probed.clone());
        }
        probed.map(|p| p.identity)
    }
}

/// The client's memo of hosts that refused a compiler's identity:
/// `$DISTCC_DIR/identity/<host key>_<identity key>`, holding the server's message; its
/// mtime says when. Like a backoff file, but for one compiler only: the host still takes
/// jobs for other compilers.
#[derive(Debug, Clone)]
pub(crate) struct Skips {
    dir: PathBuf,
    period: Duration,
}

impl Skips {
    /// The memo in `$DISTCC_DIR/identity`, kept `max(DISTCC_BACKOFF_PERIOD, 600 s)`.
    pub(crate) fn for_client(env: &crate::settings::ClientEnv) -> Option<Skips> {
        // Not looked at: made when a refusal is first remembered ([`Skips::mark`]).
        let dir = crate::temp::sub_dir_path(&env.dirs, "identity").ok()?;
        Some(Skips::new(&dir, env.backoff_period))
    }

    pub(crate) fn new(dir: &Path, backoff_period: Duration) -> Skips {
        Skips {
            dir: dir.to_owned(),
            period: backoff_period.max(MIN_SKIP),
        }
    }

    fn file(&self, host_key: &str, id: &Identity) -> PathBuf {
        self.dir.join(format!("{host_key}_{}", id.key()))
    }

    /// Is there any memo at all? (Then the job needs its identity to check.)
    pub(crate) fn any(&self) -> bool {
        std::fs::read_dir(&self.dir).is_ok_and(|mut d| d.next().is_some())
    }

    /// Remember that `host_key` refused compiler `id`, saying `message`.
    pub(crate) fn mark(&self, host_key: &str, id: &Identity, message: &str) {
        let path = self.file(host_key, id);
        let tmp = self
            .dir
            .join(format!(".{}.{}", id.key(), std::process::id()));
        let r = crate::temp::in_dir(&self.dir, || std::fs::write(&tmp, message))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = r {
            log::debug!("can't write {}: {e}", path.display());
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// The message `host_key` refused `id` with, while that is recent.
    pub(crate) fn refused(&self, host_key: &str, id: &Identity) -> Option<String> {
        self.refused_at(host_key, id, SystemTime::now())
    }

    pub(crate) fn refused_at(
        &self,
        host_key: &str,
        id: &Identity,
        now: SystemTime,
    ) -> Option<String> {
        let path = self.file(host_key, id);
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        let recent = match now.duration_since(mtime) {
            Ok(age) => age < self.period,
            // Dated in the future (the clock went back): believed for one period at most.
            Err(e) => e.duration() < self.period,
        };
        if !recent {
            return None;
        }
        let mut text = String::new();
        std::fs::File::open(&path)
            .ok()?
            .take(1024)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(family: &str, version: &str, target: &str, fp: char) -> Identity {
        Identity {
            family: family.into(),
            version: version.into(),
            target: target.into(),
            fingerprint: fp.to_string().repeat(32),
        }
    }

    #[test]
    fn text_round_trips() {
        let a = id("gcc", "12.2.0", "x86_64-linux-gnu", 'a');
        let t = a.to_text();
        assert_eq!(
            t,
            format!(
                "compiler=gcc version=12.2.0 target=x86_64-linux-gnu fingerprint={}",
                "a".repeat(32)
            )
        );
        assert_eq!(Identity::parse(t.as_bytes()), Ok(a.clone()));
        assert_eq!(Identity::parse(format!("{t}\n").as_bytes()), Ok(a.clone()));
        // Unknown keys are ignored, order does not matter.
        let t2 = format!(
            "future=1 fingerprint={} target=x86_64-linux-gnu version=12.2.0 compiler=gcc",
            "a".repeat(32)
        );
        assert_eq!(Identity::parse(t2.as_bytes()), Ok(a));
    }

    #[test]
    fn the_cidn_packet_is_as_documented() {
        let a = id("gcc", "12.2.0", "x86_64-linux-gnu", 'a');
        let mut buf = Vec::new();
        crate::ext::encode_cidn(&mut buf, &a.to_text());
        assert!(buf.starts_with(b"CIDN00000060compiler=gcc version=12.2.0 "));
        let (text, used) =
            crate::ext::decode_cidn(&buf, crate::protocol::Limits::default()).unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(Identity::parse(text.as_bytes()), Ok(a));
    }

    #[test]
    fn hostile_text_is_refused() {
        let fp = "a".repeat(32);
        let good = format!("compiler=gcc version=1 target=t fingerprint={fp}");
        let cases: Vec<(Vec<u8>, ParseError)> = vec![
            (vec![b'x'; MAX_TEXT + 1], ParseError::TooLong),
            (b"compiler=gcc\xff".to_vec(), ParseError::NotText),
            (format!("{good}\nx=y").into_bytes(), ParseError::NotText),
            (
                format!("{good} x").into_bytes(),
                ParseError::BadField("x".into()),
            ),
            (
                format!("{good} compiler=gcc").into_bytes(),
                ParseError::Duplicate("compiler".into()),
            ),
            (
                format!("compiler=g;cc version=1 target=t fingerprint={fp}").into_bytes(),
                ParseError::BadValue("compiler".into()),
            ),
            (
                format!("compiler= version=1 target=t fingerprint={fp}").into_bytes(),
                ParseError::BadValue("compiler".into()),
            ),
            (
                b"compiler=gcc version=1 target=t fingerprint=xyz".to_vec(),
                ParseError::BadValue("fingerprint".into()),
            ),
            (
                format!("version=1 target=t fingerprint={fp}").into_bytes(),
                ParseError::Missing("compiler"),
            ),
            (
                (0..20)
                    .map(|i| format!("k{i}=v "))
                    .collect::<String>()
                    .into_bytes(),
                ParseError::TooManyFields,
            ),
            (
                format!(
                    "compiler=gcc version={} target=t fingerprint={fp}",
                    "9".repeat(65)
                )
                .into_bytes(),
                ParseError::BadValue("version".into()),
            ),
            (
                format!("compiler=gcc version=é target=t fingerprint={fp}").into_bytes(),
                ParseError::BadValue("version".into()),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                Identity::parse(&bytes),
                Err(want),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
        assert!(Identity::parse(good.as_bytes()).is_ok());
    }

    #[test]
    fn messages_name_both_identities() {
        let client = id("gcc", "12.2.0", "x86_64-linux-gnu", 'a');
        let host = id("gcc", "11.3.0", "x86_64-linux-gnu", 'b');
        assert_eq!(client.compare(&host), Match::Other);
        assert_eq!(
            client.mismatch_message(&host),
            "client gcc 12.2.0 x86_64-linux-gnu; this host has 11.3.0"
        );
        let clang = id("clang", "14.0.6", "x86_64-pc-linux-gnu", 'c');
        assert_eq!(
            client.mismatch_message(&clang),
            "client gcc 12.2.0 x86_64-linux-gnu; this host has clang 14.0.6 x86_64-pc-linux-gnu"
        );
        let rebuilt = id("gcc", "12.2.0", "x86_64-linux-gnu", 'd');
        assert_eq!(client.compare(&rebuilt), Match::OtherBuild);
        let m = client.mismatch_message(&rebuilt);
        assert!(m.contains("aaaaaaaa") && m.contains("dddddddd"), "{m}");
        assert_eq!(client.compare(&client.clone()), Match::Same);
        assert_eq!(client.major(), "12");
    }

    #[test]
    fn v_output_is_read() {
        let gcc = "Using built-in specs.\nCOLLECT_GCC=gcc-12\nTarget: x86_64-linux-gnu\n\
                   Configured with: ../src/configure -v --enable-default-pie\n\
                   Thread model: posix\nSupported LTO compression algorithms: zlib zstd\n\
                   gcc version 12.2.0 (Debian 12.2.0-14)\n";
        let (found, lines) = read_v(gcc);
        assert_eq!(found, Some(("gcc".into(), "12.2.0".into())));
        assert_eq!(lines.len(), 4);
        assert!(!lines.iter().any(|l| l.contains("COLLECT_GCC")));
        let clang = "Debian clang version 14.0.6\nTarget: x86_64-pc-linux-gnu\n\
                     InstalledDir: /usr/bin\nSelected GCC installation: /usr/lib/gcc/x/12\n";
        let (found, lines) = read_v(clang);
        assert_eq!(found, Some(("clang".into(), "14.0.6".into())));
        assert_eq!(lines.len(), 3);
        assert_eq!(read_v("tcc version 0.9").0, None);
    }

    /// The wiki's server-side ccache (`/usr/lib/ccache` first on distccd's PATH) and a
    /// client PATH with ccache's links: gcc through ccache is the same compiler as gcc.
    /// ccache is installed with the interop peer (`make check-peer`).
    #[test]
    fn gcc_through_ccache_is_the_same_compiler() {
        let via = Path::new("/usr/lib/ccache/gcc");
        assert!(
            via.exists(),
            "ccache's gcc link is missing: run `make check-peer`"
        );
        let t = tempfile::tempdir().unwrap();
        let env = vec![(
            OsString::from("CCACHE_DIR"),
            t.path().as_os_str().to_owned(),
        )];
        let direct = probe(Path::new("/usr/bin/gcc"), &env).unwrap().identity;
        let wrapped = probe(via, &env).unwrap().identity;
        assert_eq!(direct, wrapped);
    }

    /// A fake compiler: a script answering like gcc does.
    fn fake_gcc(dir: &Path, name: &str, version: &str, cc1: &Path) -> PathBuf {
        let p = dir.join(name);
        let src = dir.join(format!("{name}.src"));
        std::fs::write(
            &src,
            format!(
                "#!/bin/sh\ncase \"$1\" in\n-v) echo 'Target: x86_64-linux-gnu' >&2; \
                 echo 'gcc version {version} (Test)' >&2;;\n-dumpmachine) echo x86_64-linux-gnu;;\n\
                 -print-prog-name=cc1) echo {};;\nesac\necho run >> {}/runs\n",
                cc1.display(),
                dir.display()
            ),
        )
        .unwrap();
        // Copied by a child process, so no descriptor open for writing leaks into a
        // sibling test's fork (ETXTBSY).
        assert!(
            Command::new("cp")
                .arg(&src)
                .arg(&p)
                .status()
                .unwrap()
                .success()
        );
        assert!(
            Command::new("chmod")
                .arg("755")
                .arg(&p)
                .status()
                .unwrap()
                .success()
        );
        p
    }

    fn runs(dir: &Path) -> usize {
        std::fs::read_to_string(dir.join("runs")).map_or(0, |s| s.lines().count())
    }

    #[test]
    fn probed_once_and_again_when_cc1_changes() {
        let t = tempfile::tempdir().unwrap();
        let cache = t.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let cc1 = t.path().join("cc1");
        std::fs::write(&cc1, "one").unwrap();
        let gcc = fake_gcc(t.path(), "gcc", "12.2.0", &cc1);
        let a = of_program(&gcc, &[], Some(&cache)).unwrap();
        assert_eq!(a.describe(), "gcc 12.2.0 x86_64-linux-gnu");
        let probes = runs(t.path());
        assert!(probes >= 3, "{probes}");
        assert_eq!(of_program(&gcc, &[], Some(&cache)).unwrap(), a);
        assert_eq!(
            runs(t.path()),
            probes,
            "the second lookup must come from the cache"
        );
        // Another cc1 of the same size: its stamp (ctime) moves, so it is probed again
        // and the fingerprint changes.
        std::fs::write(&cc1, "two").unwrap();
        let b = of_program(&gcc, &[], Some(&cache)).unwrap();
        assert!(runs(t.path()) > probes);
        assert_eq!(a.compare(&b), Match::OtherBuild);
    }

    /// A program that is no gcc or clang (the bench's no-op compiler, tcc, a script) is
    /// probed once, not at every job.
    #[test]
    fn an_unknown_compiler_is_probed_once() {
        let t = tempfile::tempdir().unwrap();
        let cache = t.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let cc1 = t.path().join("cc1");
        std::fs::write(&cc1, "one").unwrap();
        let tcc = fake_gcc(t.path(), "tcc", "0.9", &cc1);
        // Make it say no gcc version: rewrite its -v answer.
        let text = std::fs::read_to_string(&tcc)
            .unwrap()
            .replace("gcc version", "tcc version");
        std::fs::write(t.path().join("tcc.src"), text).unwrap();
        assert!(
            Command::new("cp")
                .arg(t.path().join("tcc.src"))
                .arg(&tcc)
                .status()
                .unwrap()
                .success()
        );
        assert!(matches!(
            of_program(&tcc, &[], Some(&cache)),
            Err(IdentityError::Unrecognised { .. })
        ));
        let probes = runs(t.path());
        assert!(probes >= 1, "{probes}");
        assert!(of_program(&tcc, &[], Some(&cache)).is_err());
        assert_eq!(
            runs(t.path()),
            probes,
            "the second lookup must come from the cache"
        );
    }

    #[test]
    fn the_daemon_probes_once_per_executable() {
        let t = tempfile::tempdir().unwrap();
        let cc1 = t.path().join("cc1");
        std::fs::write(&cc1, "one").unwrap();
        let gcc = fake_gcc(t.path(), "gcc", "11.3.0", &cc1);
        let known = Known::default();
        let a = known.get(&gcc, &[]).unwrap();
        let probes = runs(t.path());
        assert_eq!(known.get(&gcc, &[]).unwrap(), a);
        assert_eq!(runs(t.path()), probes);
        assert_eq!(a.version, "11.3.0");
    }

    #[test]
    fn skips_are_per_host_and_compiler_and_expire() {
        let t = tempfile::tempdir().unwrap();
        let s = Skips::new(t.path(), Duration::from_secs(60));
        let a = id("gcc", "12.2.0", "x86_64-linux-gnu", 'a');
        let b = id("gcc", "11.3.0", "x86_64-linux-gnu", 'b');
        assert!(!s.any());
        s.mark("tcp_h_1", &a, "client gcc 12.2.0; this host has 11.3.0");
        assert!(s.any());
        assert_eq!(
            s.refused("tcp_h_1", &a).as_deref(),
            Some("client gcc 12.2.0; this host has 11.3.0")
        );
        assert_eq!(s.refused("tcp_h_1", &b), None);
        assert_eq!(s.refused("tcp_h_2", &a), None);
        let later = SystemTime::now() + MIN_SKIP + Duration::from_secs(1);
        assert_eq!(s.refused_at("tcp_h_1", &a, later), None);
    }
}
