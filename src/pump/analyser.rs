//! The include analyser: from a compile command line, the set of files the preprocessor may
//! read. It must never miss a file (the remote compile would fail), and it may report extra
//! ones. What it cannot be sure about is [`NotCovered`]: that job is preprocessed locally.
//!
//! One [`Analyser`] lives for the whole include server, so parses, search results and
//! compiler probes are memoised across jobs. Unlike distcc 3.4's include server it does
//! not assume that sources stay put: every file is stat'ed once per job, and a parse is
//! reused only while the file's [`FileId`] is the one it was parsed at (see [`stamp`]).
//! What is assumed stable is the compiler's own dirs' *missing* files.
//!
//! [`stamp`]: super::stamp

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::defaults;
use super::parse::{self, Form, Parsed};
use super::stamp::{self, FileId};
use super::watch::{Changes, Cover, Watcher};
use crate::options::{self, Class, Search, Tool};

/// A fast hash for the analyser's maps, keyed by path bytes and small numbers (FxHash's
/// mixing). SipHash's resistance to chosen keys buys nothing here — the keys are the
/// user's own file names — and hashing them was a fifth of the include server's time.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type Fx = std::hash::BuildHasherDefault<FxHasher>;
type FxMap<K, V> = HashMap<K, V, Fx>;
type FxSet<K> = HashSet<K, Fx>;

/// Why a job can't be analysed; it is then preprocessed locally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("include analysis not covered: {0}")]
pub struct NotCovered(pub String);

fn nc<T>(msg: impl Into<String>) -> Result<T, NotCovered> {
    Err(NotCovered(msg.into()))
}

/// How many times one job is analysed afresh when files change under the analysis.
const ANALYSE_TRIES: u32 = 3;

/// Why one analysis pass stopped.
enum Fail {
    NotCovered(NotCovered),
    /// A file changed while being read, or two names of one file were read as different
    /// versions: analyse again.
    Changed(String),
}

impl From<NotCovered> for Fail {
    fn from(e: NotCovered) -> Fail {
        Fail::NotCovered(e)
    }
}

/// The search configuration of one compile: what gcc derives from the command line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Config {
    /// `-iquote`, `-I`, `-isystem`, default dirs, `-idirafter`, in search order.
    pub chain: Vec<PathBuf>,
    /// Where the bracket (`<...>`) search starts in `chain`.
    pub angle_start: usize,
    /// The compiler's default dirs (never shipped).
    pub system: Vec<PathBuf>,
    /// Per `chain` entry: it was given as an absolute path, so gcc names files found there
    /// absolutely (and `__FILE__` must not become the server's temp path).
    pub chain_abs: Vec<bool>,
}

/// What [`parse_command`] finds in an argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    pub source: PathBuf,
    pub lang: &'static str,
    pub quote: Vec<PathBuf>,
    pub bracket: Vec<PathBuf>,
    pub system_user: Vec<PathBuf>,
    pub after: Vec<PathBuf>,
    /// `-include` and `-imacros` files, in order.
    pub preincludes: Vec<String>,
    pub nostdinc: bool,
    /// `-ffreestanding`: no implicit `stdc-predef.h`.
    pub freestanding: bool,
    /// Flags that change the compiler's default dirs (passed to the probe).
    pub probe_flags: Vec<String>,
    /// `-D NAME=VALUE` pairs: candidate values for computed includes.
    pub defines: Vec<(String, String)>,
    /// The source was named by an absolute path.
    pub source_abs: bool,
    /// Search dirs that were given as absolute paths.
    pub named_abs: HashSet<PathBuf>,
}

fn lang_of(source: &str) -> Option<&'static str> {
    let ext = source.rsplit_once('.')?.1;
    Some(match ext {
        "c" => "c",
        "cc" | "cpp" | "cxx" | "cp" | "c++" | "C" | "CPP" | "CXX" => "c++",
        "m" => "objective-c",
        "mm" | "M" => "objective-c++",
        _ => return None,
    })
}

/// Read the options that decide where the preprocessor looks (reference §5.3). Walks
/// the argv with [`crate::options`]' table, the one the client and the server use, so
/// every option spans the words gcc gives it; an option that changes the search in a way
/// not modelled here ([`Search::Unsupported`]) makes the job [`NotCovered`].
pub(crate) fn parse_command(cwd: &Path, argv: &[String]) -> Result<Command, NotCovered> {
    let mut named_abs = HashSet::new();
    let mut abs = |d: &str| -> PathBuf {
        if Path::new(d).is_absolute() {
            named_abs.insert(PathBuf::from(d));
        }
        cwd.join(d)
    };
    let mut cmd = Command {
        source: PathBuf::new(),
        lang: "c",
        quote: vec![],
        bracket: vec![],
        system_user: vec![],
        after: vec![],
        preincludes: vec![],
        nostdinc: false,
        freestanding: false,
        probe_flags: vec![],
        defines: vec![],
        source_abs: false,
        named_abs: HashSet::new(),
    };
    let mut source: Option<String> = None;
    let mut lang: Option<&'static str> = None;
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].as_str();
        // The shared table decides how many words an option spans, so an option's
        // separate argument is never taken for a source (nor the reverse).
        let hit = options::lookup(a, argv.get(i + 1).map(String::as_str));
        i += hit.consumed;
        if hit.response_file {
            return nc(format!("the response file {a} is not supported"));
        }
        let Some(opt) = hit.opt else {
            if hit.is_operand(a) && (lang_of(a).is_some() || lang.is_some()) {
                if source.is_some() {
                    return nc("more than one source file");
                }
                source = Some(a.to_string());
            }
            continue;
        };
        if hit.missing {
            return nc(format!("{} needs an argument", opt.name));
        }
        let v = hit.value.unwrap_or("");
        let dir = matches!(
            opt.search,
            Search::QuoteDir | Search::BracketDir | Search::SystemDir | Search::AfterDir
        );
        if dir && (v.starts_with('=') || v.starts_with("$SYSROOT")) {
            // gcc puts the sysroot in front, which the analysis does not know.
            return nc(format!(
                "{} {v}: a dir under the sysroot is not supported",
                opt.name
            ));
        }
        match opt.search {
            Search::Unsupported => return nc(format!("{} is not supported", opt.name)),
            Search::QuoteDir => cmd.quote.push(abs(v)),
            Search::BracketDir => cmd.bracket.push(abs(v)),
            Search::SystemDir => cmd.system_user.push(abs(v)),
            Search::AfterDir => cmd.after.push(abs(v)),
            Search::Preinclude => cmd.preincludes.push(v.to_string()),
            Search::Isysroot => cmd
                .probe_flags
                .extend(["-isysroot".to_string(), v.to_string()]),
            Search::Sysroot => cmd.probe_flags.push(format!("--sysroot={v}")),
            Search::Define => {
                if let Some((name, value)) = v.split_once('=') {
                    cmd.defines.push((name.to_string(), value.to_string()));
                }
            }
            Search::NoStdinc => cmd.nostdinc = true,
            Search::Freestanding => cmd.freestanding = true,
            Search::Probe => cmd.probe_flags.push(a.to_string()),
            Search::Nothing => match opt.class {
                Class::Language => {
                    lang = Some(match v {
                        "c" | "c-header" => "c",
                        "c++" | "c++-header" => "c++",
                        "objective-c" => "objective-c",
                        "objective-c++" => "objective-c++",
                        other => return nc(format!("language {other} is not supported")),
                    });
                }
                // clang's cc1 could be told to read more files (`-Xclang -include`).
                Class::Pass(Tool::Clang) if !options::clang_item_is_safe(v) => {
                    return nc(format!("{} {v} is not supported", opt.name));
                }
                _ => {}
            },
        }
    }
    let Some(source) = source else {
        return nc("no source file with a known language");
    };
    cmd.lang = match lang.or_else(|| lang_of(&source)) {
        Some(l) => l,
        None => return nc(format!("unknown language of {source}")),
    };
    cmd.source = cwd.join(&source);
    cmd.source_abs = Path::new(&source).is_absolute();
    cmd.named_abs = named_abs;
    Ok(cmd)
}

/// One file of the closure, found by a search. Compared and hashed by the path's bytes
/// (`Path`'s own impls walk its components, for every node of every job).
#[derive(Debug, Clone)]
struct Node {
    /// The path as the preprocessor names it (lexical, may contain `..`).
    path: PathBuf,
    /// Index in the chain where it was found (for `#include_next`).
    found: Option<usize>,
    /// gcc names it by an absolute path: ship it with a `#line` naming that path.
    abs_name: bool,
}

impl PartialEq for Node {
    fn eq(&self, o: &Node) -> bool {
        self.path.as_os_str() == o.path.as_os_str()
            && self.found == o.found
            && self.abs_name == o.abs_name
    }
}

impl Eq for Node {}

impl std::hash::Hash for Node {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.path.as_os_str().hash(h);
        self.found.hash(h);
        self.abs_name.hash(h);
    }
}

/// What a compile needs shipped, as the server must recreate it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closure {
    /// Regular files to send, by their physical (symlink-free) absolute paths; the source
    /// first.
    pub files: Vec<PathBuf>,
    /// Symlinks met along the paths: link path → the absolute physical path it resolves to.
    pub links: BTreeMap<PathBuf, PathBuf>,
    /// Directories that must exist on the server although no file is sent into them
    /// (the cwd, search dirs, dirs climbed out of with `..`).
    pub dirs: BTreeSet<PathBuf>,
    /// The compiler's default dirs that get a LINK (never shipped).
    pub system_links: Vec<PathBuf>,
    /// Files seen under the default dirs (not shipped; reported for checking).
    /// As the analysis named them (not normalised: the server never reads this list, and
    /// keeping a sorted set of them cost a tenth of a job's analysis).
    pub system_files: Vec<PathBuf>,
    /// Files of `files` that gcc names by an absolute path, with that name: they are sent
    /// with `#line 1 "<name>"` first (3.4's `.lzo.abs`), because on the server that path
    /// lies under a temp dir and `__FILE__` would name it.
    pub line_names: BTreeMap<PathBuf, PathBuf>,
    /// Per file of `files`, in that order: the version the analysis read. The mirror must
    /// be of that version, or the closure may miss what a newer one includes.
    pub stamps: Vec<Option<FileId>>,
}

impl Closure {
    /// The version of `f` (one of `files`) the analysis read.
    pub fn stamp(&self, f: &Path) -> Option<FileId> {
        let i = self.files.iter().position(|p| p == f)?;
        self.stamps.get(i).copied().flatten()
    }
}

/// A parse, with the version of the file it was made from.
struct CachedParse {
    id: FileId,
    /// The stamp can be trusted to change with the content ([`FileId::settled`]), or a
    /// watch reports any change ([`FileState::watched`] when it was read).
    settled: bool,
    parsed: Arc<Parsed>,
}

/// What the analyser knows about a path that was a file once. One entry (one lookup)
/// answers both "what is it now" and "what did it say", which keeps the per-job stat
/// cheap next to the rest of the analysis.
struct FileState {
    /// The job ([`Analyser::job`]) that last stat'ed it, and what that found.
    stat_job: u64,
    id: Option<FileId>,
    /// Its directory was watched before that stat, and it is no symlink: `id` holds until
    /// the watcher names this path (no stat per job).
    watched: bool,
    /// The job that last asked for its parse: `parse` is then that job's version
    /// (`None`: unreadable, parsed as empty).
    parse_job: u64,
    parse: Option<CachedParse>,
}

/// Object-like `#define`s that a computed include may expand to: those of the job's `-D`s
/// and of the files of its closure (the only ones gcc can see). Looked up by scanning the
/// files' lists: computed includes are rare, and building a map of every definition for
/// every job cost more than the rest of the analysis.
struct Defs<'c> {
    cmd: &'c [(String, String)],
    /// Parses with definitions visited by this job (this pass and the ones before), once
    /// each (`known_ids`: their addresses; a job holds one parse per file).
    known: Vec<Arc<Parsed>>,
    known_ids: HashSet<usize>,
    /// Every lookup of this pass: (name, how many of `known` it saw).
    consulted: Vec<(String, usize)>,
}

impl<'c> Defs<'c> {
    fn new(cmd: &'c [(String, String)]) -> Self {
        Defs {
            cmd,
            known: Vec::new(),
            known_ids: HashSet::new(),
            consulted: Vec::new(),
        }
    }

    fn learn(&mut self, p: &Arc<Parsed>) {
        if !p.defines.is_empty() && self.known_ids.insert(Arc::as_ptr(p) as usize) {
            self.known.push(p.clone());
        }
    }

    /// The values of `name` in the `-D`s and the first `upto` known files.
    fn values<'a>(&'a self, name: &'a str, upto: usize) -> impl Iterator<Item = &'a str> {
        let files = self.known.get(..upto).unwrap_or(&self.known);
        self.cmd
            .iter()
            .chain(files.iter().flat_map(|p| p.defines.iter()))
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The values of `name` known now; the lookup is remembered for [`Defs::stale`].
    fn lookup(&mut self, name: &str) -> BTreeSet<String> {
        self.consulted.push((name.to_string(), self.known.len()));
        self.values(name, self.known.len())
            .map(str::to_string)
            .collect()
    }

    /// Did a file learnt after a lookup bring a value that lookup did not see?
    fn stale(&self) -> bool {
        self.consulted.iter().any(|(name, upto)| {
            self.known
                .get(*upto..)
                .unwrap_or_default()
                .iter()
                .flat_map(|p| p.defines.iter())
                .any(|(n, v)| n == name && !self.values(name, *upto).any(|w| w == v))
        })
    }
}

/// One pass over a job's includes.
struct Pass {
    nodes: Vec<Node>,
    /// The version each node's path was read at.
    stamps: FxMap<OsString, FileId>,
    unresolved: Option<String>,
    /// A computed include was decided before every definition of the closure of its
    /// macro was known: run another pass with them all.
    again: bool,
}

/// (compiler's names and file identity, see [`stamp::exe_identity`], probe flags, language).
type ProbeKey = (Vec<u8>, FileId, Vec<String>, String);

/// One probe's answer, filled once.
type ProbeCell = Arc<OnceLock<Result<Vec<PathBuf>, String>>>;

/// The compilers' default dirs, shared by the analyser and the include server's request
/// threads. Keyed by the executable's identity, not its name: a compiler upgraded while
/// `pump --startup` runs is probed again. The map's lock is held only to find an entry;
/// the probe (a compiler start, tens of ms) runs under that entry's own once-cell, so
/// concurrent jobs of other compilers, or already probed ones, never wait for it.
#[derive(Default)]
pub(crate) struct Probes {
    cells: Mutex<HashMap<ProbeKey, ProbeCell>>,
}

impl Probes {
    /// The default dirs of `compiler` (as in the job's argv, found on `path`, or relative
    /// to `cwd` when it has a `/`) with `flags` for `lang`.
    pub(crate) fn dirs(
        &self,
        compiler: &str,
        cwd: &Path,
        flags: &[String],
        lang: &str,
        path: Option<&OsStr>,
    ) -> Result<Vec<PathBuf>, String> {
        let cant = || {
            format!("Couldn't determine default system include directories: can't find {compiler}")
        };
        let program = crate::paths::which(compiler, path)
            .map(|p| cwd.join(p))
            .ok_or_else(cant)?;
        let (names, id) = stamp::exe_identity(&program).ok_or_else(cant)?;
        let key = (names, id, flags.to_vec(), lang.to_string());
        let cell = self
            .cells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone();
        cell.get_or_init(|| defaults::probe(&program, flags, lang, path))
            .clone()
    }

    /// Probe what the job `argv` run in `cwd` needs, before the caller takes a lock the
    /// analysis holds; the answer goes to [`Analyser::analyse_probed`], so the job finds
    /// and identifies its compiler once (`None`: nothing to probe, or no command).
    pub(crate) fn warm(
        &self,
        cwd: &Path,
        argv: &[String],
        path: Option<&OsStr>,
    ) -> Option<Result<Vec<PathBuf>, String>> {
        let cmd = parse_command(cwd, argv).ok()?;
        if cmd.nostdinc {
            return None;
        }
        let compiler = argv.first().map(String::as_str).unwrap_or("cc");
        Some(self.dirs(compiler, cwd, &cmd.probe_flags, cmd.lang, path))
    }
}
/// (config's number in [`Analyser::configs`], quote dir's number + 1 or 0, chain start),
/// then the name in an inner map; a found index of `usize::MAX` means "quote dir".
/// Numbers, not the config and `Path`s themselves: hashing those walked every path
/// component at every lookup, and a lookup allocates nothing.
type SearchKey = (usize, usize, usize);

/// The memoising analyser; share one per process.
#[derive(Default)]
pub struct Analyser {
    /// Paths that were files once (by their bytes: `Path`'s own hash walks components).
    files: FxMap<OsString, FileState>,
    /// Paths under the compiler's own dirs that are not files: never stat'ed again.
    system_misses: FxSet<OsString>,
    /// Other paths that were not files for this job.
    job_misses: FxSet<OsString>,
    /// Paths that were not files, in watched directories: until the watcher names them.
    watched_misses: FxSet<OsString>,
    /// Directory watches (`None`: inotify unavailable, every file is stat'ed per job).
    watcher: Option<Watcher>,
    /// The current job's number (each analysis attempt is a job).
    job: u64,
    /// (compiler identity, probe flags, language) → default dirs.
    probes: Arc<Probes>,
    /// (config, quote dir, start, name) → where it is found. Only results that no
    /// unwatched user file's absence went into; a hit is re-checked by the job's stat of it.
    searches: FxMap<SearchKey, FxMap<String, Option<(PathBuf, usize)>>>,
    /// Every config seen, with its number.
    configs: HashMap<Arc<Config>, usize>,
    /// The number of the current job's config (hashing a config walks all its paths).
    cfg_id: usize,
    /// Quote dirs (an includer's dir) by number, for [`SearchKey`].
    quote_dirs: FxMap<OsString, usize>,
    /// Tests: trust stamps at once, so that only the stamp comparison decides.
    trust_fresh_stamps: bool,
    /// Tests: how many times a path was looked at (stat or lstat).
    #[cfg(test)]
    looks: u64,
    /// The `PATH` compilers are probed with (the include server's own).
    path: Option<OsString>,
}

/// Is `p` inside one of `dirs` (lexically)?
fn under(p: &Path, dirs: &[PathBuf]) -> bool {
    let b = p.as_os_str().as_bytes();
    // An absolute path without `.`, `..` or empty components is its own normal form, and
    // a component-wise prefix is then a byte prefix ending at a `/`: no allocation, no
    // component walk (this runs for every file and candidate of every job).
    let plain = b.first() == Some(&b'/')
        && !b
            .split(|&c| c == b'/')
            .skip(1)
            .any(|s| s.is_empty() || s == b"." || s == b"..");
    if !plain {
        let n = crate::paths::normalise(p);
        return dirs.iter().any(|d| n.starts_with(d));
    }
    dirs.iter().any(|d| {
        let d = d.as_os_str().as_bytes();
        b.starts_with(d)
            && (b.len() == d.len() || d.ends_with(b"/") || b.get(d.len()) == Some(&b'/'))
    })
}

impl Analyser {
    /// An analyser that probes compilers on `path` (the include server's `PATH`).
    pub fn with_path(path: Option<OsString>) -> Self {
        Analyser {
            path,
            watcher: Watcher::new(),
            ..Self::default()
        }
    }

    /// Apply what the watcher saw since the last job: forget those paths (and what lies
    /// under the directories among them), and every search if any of it was known.
    fn apply_changes(&mut self) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        match w.changes() {
            Changes::All => self.distrust(),
            Changes::Paths(paths) => {
                let mut known = false;
                for (p, dir) in paths {
                    known |= self.files.remove(&p).is_some();
                    known |= self.watched_misses.remove(&p);
                    if dir {
                        let b = p.as_bytes();
                        let below = |k: &OsString| {
                            k.as_bytes().starts_with(b) && k.as_bytes().get(b.len()) == Some(&b'/')
                        };
                        self.files.retain(|k, _| !below(k));
                        self.watched_misses.retain(|k| !below(k));
                        // A dir the analysis went through (or missed) changed.
                        known = true;
                    }
                }
                if known {
                    self.searches.clear();
                }
            }
        }
    }

    /// Forget every stat and search (the next job looks at every file again): after lost
    /// events, or when a mirror found a file other than the analysis said.
    pub(crate) fn distrust(&mut self) {
        for st in self.files.values_mut() {
            st.watched = false;
            st.stat_job = 0;
            if let Some(c) = st.parse.as_mut() {
                c.settled = false;
            }
        }
        self.watched_misses.clear();
        self.searches.clear();
        if let Some(w) = self.watcher.as_mut() {
            w.forget_all();
        }
    }

    /// Is `p` (a plain path) in a watched directory, as an entry of it? Asked before `p`
    /// is looked at.
    fn watched_dir_of(&mut self, p: &Path) -> Cover {
        match (self.watcher.as_mut(), p.parent()) {
            (Some(w), Some(dir)) if super::watch::plain(p) => w.cover(dir),
            _ => Cover::No,
        }
    }

    /// The version of the file at `p` now, `None` if it is not a file: stat'ed once per
    /// job. Only misses under the compiler's own dirs are remembered across jobs, because
    /// `make -j` generates user headers while other jobs run: a header missing for one job
    /// may exist for the next.
    fn stat(&mut self, p: &Path, system: &[PathBuf]) -> Option<FileId> {
        self.stat_stable(p, system).0
    }

    /// [`Analyser::stat`], and whether the answer holds beyond this job without a stat
    /// (a watched path, or a miss under the compiler's dirs).
    fn stat_stable(&mut self, p: &Path, system: &[PathBuf]) -> (Option<FileId>, bool) {
        let key = p.as_os_str();
        if let Some(st) = self.files.get(key) {
            if st.watched {
                return (st.id, true);
            }
            if st.stat_job == self.job {
                return (st.id, false);
            }
        } else if self.watched_misses.contains(key) || self.system_misses.contains(key) {
            return (None, true);
        } else if self.job_misses.contains(key) {
            return (None, false);
        }
        // The watch first: a change after the look below is then reported.
        let cover = self.watched_dir_of(p);
        #[cfg(test)]
        {
            self.looks += 1;
        }
        let (id, watched) = if cover == Cover::Watched {
            // lstat: a symlink's target may change unseen, so it is not trusted.
            match fs::symlink_metadata(p) {
                Ok(m) if m.is_file() => (Some(FileId::of(&m)), true),
                Ok(m) if m.file_type().is_symlink() => (FileId::stat(p), false),
                _ => (None, true),
            }
        } else {
            (FileId::stat(p), cover == Cover::Absent)
        };
        let job = self.job;
        if let Some(st) = self.files.get_mut(key) {
            st.stat_job = job;
            st.id = id;
            st.watched = watched && id.is_some();
            return (id, st.watched);
        }
        if id.is_some() {
            self.files.insert(
                key.to_owned(),
                FileState {
                    stat_job: job,
                    id,
                    watched,
                    parse_job: 0,
                    parse: None,
                },
            );
        } else if under(p, system) {
            self.system_misses.insert(key.to_owned());
            return (None, true);
        } else if watched {
            self.watched_misses.insert(key.to_owned());
        } else {
            self.job_misses.insert(key.to_owned());
        }
        (id, watched)
    }

    fn is_file(&mut self, p: &Path, system: &[PathBuf]) -> bool {
        self.stat(p, system).is_some()
    }

    /// Did the job's walk reach `p` without symlinks (a watched regular file)?
    fn plain_file(&self, p: &Path) -> bool {
        self.files.get(p.as_os_str()).is_some_and(|st| st.watched)
    }

    /// The parse of the version of `p` this job sees, and that version (`None`: not
    /// readable, parsed as empty). A path is read at most once per job, so all of a job's
    /// passes see one version of it. A parse is reused across jobs only for the same
    /// [`FileId`], and only if that stamp had settled when it was read.
    fn parse(
        &mut self,
        p: &Path,
        system: &[PathBuf],
    ) -> Result<(Option<FileId>, Arc<Parsed>), Fail> {
        let now = self.stat(p, system);
        let (job, trust) = (self.job, self.trust_fresh_stamps);
        let Some(st) = self.files.get_mut(p.as_os_str()) else {
            return Ok((None, Arc::default())); // not a file: nothing gcc could read
        };
        let unchanged = st
            .parse
            .as_ref()
            .is_some_and(|c| Some(c.id) == now && c.settled);
        if st.parse_job != job && !unchanged {
            let watched = st.watched;
            st.parse = match stamp::read_stable(p) {
                Ok(r) => Some(CachedParse {
                    id: r.id,
                    settled: r.settled || trust || watched,
                    parsed: Arc::new(parse::parse(&r.data)),
                }),
                Err(e @ stamp::ReadError::Unstable { .. }) => {
                    return Err(Fail::Changed(e.to_string()));
                }
                Err(e) => {
                    log::debug!("{e}");
                    None
                }
            };
        }
        st.parse_job = job;
        Ok(match &st.parse {
            Some(c) => (Some(c.id), c.parsed.clone()),
            None => (None, Arc::default()),
        })
    }

    /// The compiler's default include dirs, memoised per (compiler identity, flags,
    /// language).
    pub(crate) fn system_dirs(
        &mut self,
        compiler: &str,
        cwd: &Path,
        flags: &[String],
        lang: &str,
    ) -> Result<Vec<PathBuf>, NotCovered> {
        self.probes
            .dirs(compiler, cwd, flags, lang, self.path.as_deref())
            .map_err(NotCovered)
    }

    /// The probe cache, to warm it outside the lock around this analyser.
    pub(crate) fn probes(&self) -> Arc<Probes> {
        self.probes.clone()
    }

    /// The `PATH` compilers are probed with.
    pub(crate) fn path(&self) -> Option<OsString> {
        self.path.clone()
    }

    /// Find `name` like gcc: `quote_dir` first (quote includes), then `chain[start..]`.
    fn search(
        &mut self,
        cfg: &Arc<Config>,
        quote_dir: Option<&Path>,
        start: usize,
        name: &str,
    ) -> Option<(PathBuf, Option<usize>)> {
        let cfg_id = self.cfg_id;
        let qd = match quote_dir {
            None => 0,
            Some(d) => match self.quote_dirs.get(d.as_os_str()) {
                Some(&n) => n + 1,
                None => {
                    let n = self.quote_dirs.len();
                    self.quote_dirs.insert(d.as_os_str().to_owned(), n);
                    n + 1
                }
            },
        };
        let key = (cfg_id, qd, start);
        let cached = self.searches.get(&key).and_then(|m| m.get(name)).cloned();
        match cached {
            // Nothing before the hit can have appeared (those were misses under the
            // compiler's dirs), but the hit itself may have gone.
            Some(Some((p, i))) => {
                if self.is_file(&p, &cfg.system) {
                    return Some((p, (i != usize::MAX).then_some(i)));
                }
                if let Some(m) = self.searches.get_mut(&key) {
                    m.remove(name);
                }
            }
            Some(None) => return None,
            None => {}
        }
        let mut hit = None;
        // A result that depends on a user file being absent is not remembered unless a
        // watch would report its creation (see `stat`).
        let mut user_miss = false;
        let candidates = quote_dir
            .map(|d| (d.join(name), usize::MAX))
            .into_iter()
            .chain((start..cfg.chain.len()).map(|i| (cfg.chain[i].join(name), i)));
        for (p, i) in candidates {
            let (id, stable) = self.stat_stable(&p, &cfg.system);
            if id.is_some() {
                hit = Some((p, i));
                break;
            }
            user_miss |= !stable;
        }
        if !user_miss {
            self.searches
                .entry(key)
                .or_default()
                .insert(name.to_string(), hit.clone());
        }
        hit.map(|(p, i)| (p, (i != usize::MAX).then_some(i)))
    }

    /// Is this computed include a bare macro name that nothing defines?
    fn never_defined(text: &str, defs: &mut Defs<'_>) -> bool {
        match parse::parse_form(text) {
            Some(Form::Computed(t)) => {
                let t = t.trim();
                if t.is_empty() || !t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    return false;
                }
                defs.lookup(t).is_empty()
            }
            _ => false,
        }
    }

    /// Candidate `"x"`/`<x>` forms of a computed include, over every definition known.
    fn expand(text: &str, defs: &mut Defs<'_>, depth: u32, out: &mut BTreeSet<Form>) -> bool {
        if depth > 8 {
            return false;
        }
        match parse::parse_form(text) {
            Some(f @ (Form::Quote(_) | Form::Angle(_))) => {
                out.insert(f);
                true
            }
            Some(Form::Computed(t)) => {
                let t = t.trim();
                if t.is_empty() || !t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    return false;
                }
                let mut ok = false;
                for v in defs.lookup(t) {
                    ok |= Self::expand(&v, defs, depth + 1, out);
                }
                ok
            }
            None => false,
        }
    }

    /// Analyse one compile. `argv[0]` is the compiler, run once per language to find its
    /// default dirs. Every file is stat'ed afresh; if files change under the analysis it
    /// starts over, and gives up (not covered) after a few tries.
    pub fn analyse(&mut self, cwd: &Path, argv: &[String]) -> Result<Closure, NotCovered> {
        self.analyse_probed(cwd, argv, None)
    }

    /// [`Analyser::analyse`] with the compiler's default dirs already probed for this job
    /// ([`Probes::warm`]).
    pub(crate) fn analyse_probed(
        &mut self,
        cwd: &Path,
        argv: &[String],
        probed: Option<Result<Vec<PathBuf>, String>>,
    ) -> Result<Closure, NotCovered> {
        let mut why = String::new();
        for _ in 0..ANALYSE_TRIES {
            self.job += 1;
            self.job_misses.clear();
            self.apply_changes();
            let r = self.analyse_once(cwd, argv, probed.as_ref());
            match r {
                Ok(c) => return Ok(c),
                Err(Fail::NotCovered(e)) => return Err(e),
                Err(Fail::Changed(w)) => {
                    log::debug!("{w}; analysing again");
                    why = w;
                }
            }
        }
        nc(format!("{why} (gave up after {ANALYSE_TRIES} tries)"))
    }

    #[cfg(test)]
    pub(crate) fn trust_fresh_stamps(&mut self) {
        self.trust_fresh_stamps = true;
    }

    fn analyse_once(
        &mut self,
        cwd: &Path,
        argv: &[String],
        probed: Option<&Result<Vec<PathBuf>, String>>,
    ) -> Result<Closure, Fail> {
        let cmd = parse_command(cwd, argv)?;
        let compiler = argv.first().map(String::as_str).unwrap_or("cc");
        let system = match probed {
            _ if cmd.nostdinc => vec![],
            Some(dirs) => dirs.clone().map_err(NotCovered)?,
            None => self.system_dirs(compiler, cwd, &cmd.probe_flags, cmd.lang)?,
        };
        let mut chain = cmd.quote.clone();
        let angle_start = chain.len();
        chain.extend(cmd.bracket.iter().cloned());
        chain.extend(cmd.system_user.iter().cloned());
        chain.extend(system.iter().cloned());
        chain.extend(cmd.after.iter().cloned());
        let chain_abs = chain.iter().map(|d| cmd.named_abs.contains(d)).collect();
        let cfg = Arc::new(Config {
            chain,
            angle_start,
            system: system.clone(),
            chain_abs,
        });
        let cfg = match self.configs.get_key_value(&cfg) {
            Some((c, &n)) => {
                self.cfg_id = n;
                c.clone()
            }
            None => {
                self.cfg_id = self.configs.len();
                self.configs.insert(cfg.clone(), self.cfg_id);
                cfg
            }
        };
        let mut defs = Defs::new(&cmd.defines);

        // Computed includes may depend on #defines met later: repeat until every one was
        // decided knowing all the definitions of the closure.
        let (nodes, stamps) = loop {
            let pass = self.closure(cwd, &cmd, &cfg, &mut defs)?;
            if !pass.again {
                if let Some(why) = pass.unresolved {
                    return Err(Fail::NotCovered(NotCovered(why)));
                }
                break (pass.nodes, pass.stamps);
            }
        };

        let mut out = Closure {
            system_links: defaults::link_roots(&system),
            ..Closure::default()
        };
        let mut seen_files: FxSet<OsString> = FxSet::default();
        // Per physical file: the version read, whatever name it was read by.
        let mut versions: FxMap<OsString, FileId> = FxMap::default();
        let mut dir_memo = HashMap::new();
        for n in &nodes {
            if under(&n.path, &system) {
                out.system_files.push(n.path.clone());
                continue;
            }
            // A watched file was reached without symlinks: it is its own physical path.
            let phys = if self.plain_file(&n.path) {
                Some(n.path.clone())
            } else {
                physical_memo(
                    &n.path,
                    &system,
                    &mut out.links,
                    &mut out.dirs,
                    &mut dir_memo,
                )
            };
            let Some(phys) = phys else {
                continue;
            };
            if under(&phys, &system) {
                out.system_files.push(phys);
                continue;
            }
            let stamp = stamps.get(n.path.as_os_str()).copied();
            if let Some(id) = stamp
                && let Some(old) = versions.insert(phys.as_os_str().to_owned(), id)
                && old != id
            {
                return Err(Fail::Changed(format!(
                    "{} was read as two versions",
                    phys.display()
                )));
            }
            if seen_files.insert(phys.as_os_str().to_owned()) {
                if n.abs_name {
                    out.line_names.insert(phys.clone(), n.path.clone());
                }
                out.files.push(phys);
                out.stamps.push(stamp);
            }
        }
        // Directories the compile may look into: they must exist on the server.
        let mut wanted_dirs = vec![cwd.to_path_buf()];
        wanted_dirs.extend(cfg.chain.iter().filter(|d| !under(d, &system)).cloned());
        for d in wanted_dirs {
            let cover = match self.watcher.as_mut() {
                Some(w) => w.cover(&d),
                None => Cover::No,
            };
            if cover == Cover::Watched {
                // An existing dir reached without symlinks.
                if !under(&d, &system) && d != Path::new("/") {
                    out.dirs.insert(d);
                }
                continue;
            }
            if cover == Cover::Absent {
                continue;
            }
            if let Some(p) = physical(&d, &system, &mut out.links, &mut out.dirs, 0)
                && fs::metadata(&p).is_ok_and(|m| m.is_dir())
                && !under(&p, &system)
            {
                out.dirs.insert(p);
            }
        }
        out.dirs
            .retain(|d| !under(d, &system) && d != Path::new("/"));
        Ok(out)
    }

    /// The files reachable from the source (and the `-include` files). `defs` starts with
    /// what earlier passes knew and gains the definitions of every file visited.
    fn closure(
        &mut self,
        cwd: &Path,
        cmd: &Command,
        cfg: &Arc<Config>,
        defs: &mut Defs<'_>,
    ) -> Result<Pass, Fail> {
        let mut unresolved = None;
        let mut stamps = FxMap::default();
        defs.consulted.clear();
        let mut order = Vec::new();
        let mut seen: FxSet<Node> = FxSet::default();
        let mut queue = VecDeque::new();
        queue.push_back(Node {
            path: cmd.source.clone(),
            found: None,
            abs_name: cmd.source_abs,
        });
        let chain_abs = |found: Option<usize>| found.is_some_and(|i| cfg.chain_abs[i]);
        // gcc reads `<stdc-predef.h>` before anything else unless told not to.
        if !cmd.nostdinc
            && !cmd.freestanding
            && let Some((path, found)) = self.search(cfg, None, cfg.angle_start, "stdc-predef.h")
        {
            queue.push_back(Node {
                path,
                found,
                abs_name: false,
            });
        }
        for pre in &cmd.preincludes {
            let found = if Path::new(pre).is_absolute() {
                Some((PathBuf::from(pre), None, true))
            } else {
                self.search(cfg, Some(cwd), 0, pre)
                    .map(|(p, f)| (p, f, chain_abs(f)))
            };
            if let Some((path, found, abs_name)) = found {
                queue.push_back(Node {
                    path,
                    found,
                    abs_name,
                });
            }
        }
        while let Some(node) = queue.pop_front() {
            if !seen.insert(node.clone()) {
                continue;
            }
            let in_system = under(&node.path, &cfg.system);
            let (id, parsed) = self.parse(&node.path, &cfg.system)?;
            if let Some(id) = id {
                stamps.insert(node.path.as_os_str().to_owned(), id);
            }
            defs.learn(&parsed);
            let dir = node.path.parent().unwrap_or(Path::new("/")).to_path_buf();
            for inc in &parsed.includes {
                let forms = match &inc.form {
                    Form::Computed(text) => {
                        let mut forms = BTreeSet::new();
                        if Self::never_defined(text, defs) {
                            // `#include MACRO` with MACRO defined nowhere (not in any file
                            // seen, not with -D): gcc could not process it either, so it
                            // sits in a dead branch (Lua's `#include LUA_USER_H`). If a
                            // later file defines it, the fixpoint loop comes back here.
                            continue;
                        }
                        if !Self::expand(text, defs, 0, &mut forms) {
                            // Its #define may be in a file not scanned yet: the caller
                            // decides once no new definitions turn up.
                            if !in_system && unresolved.is_none() {
                                unresolved = Some(format!(
                                    "can't resolve the computed include `{text}` in {}",
                                    node.path.display()
                                ));
                            }
                            continue;
                        }
                        forms
                    }
                    f => BTreeSet::from([f.clone()]),
                };
                for form in forms {
                    let (name, quote) = match &form {
                        Form::Quote(n) => (n.clone(), true),
                        Form::Angle(n) => (n.clone(), false),
                        Form::Computed(_) => continue,
                    };
                    if Path::new(&name).is_absolute() {
                        if in_system {
                            continue;
                        }
                        return Err(Fail::NotCovered(NotCovered(format!(
                            "Filepath must be relative but isn't: {name} in {}",
                            node.path.display()
                        ))));
                    }
                    let hit = if inc.next {
                        // Continue after where the includer was found; a file not found
                        // through the chain (the source, or via its own dir) searches it all.
                        let start = node.found.map_or(0, |i| i + 1);
                        self.search(cfg, None, start, &name)
                    } else if quote {
                        self.search(cfg, Some(&dir), 0, &name)
                    } else {
                        self.search(cfg, None, cfg.angle_start, &name)
                    };
                    if let Some((path, found)) = hit {
                        // Found in the includer's own dir: named like the includer.
                        let abs_name = match found {
                            None => node.abs_name,
                            f => chain_abs(f),
                        };
                        queue.push_back(Node {
                            path,
                            found,
                            abs_name,
                        });
                    }
                }
            }
            order.push(node);
        }
        Ok(Pass {
            nodes: order,
            stamps,
            unresolved,
            again: defs.stale(),
        })
    }
}

/// Walk `p` component by component as the kernel would, recording symlinks met (and the
/// directories climbed out of with `..`, which must exist on the server). Returns the
/// physical path, or `None` if it doesn't exist.
fn physical(
    p: &Path,
    system: &[PathBuf],
    links: &mut BTreeMap<PathBuf, PathBuf>,
    dirs: &mut BTreeSet<PathBuf>,
    depth: u32,
) -> Option<PathBuf> {
    if depth > 32 {
        return None;
    }
    let mut cur = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                dirs.insert(cur.clone());
                cur.pop();
            }
            Component::Normal(name) => cur = step(cur, name, system, links, dirs, depth)?,
        }
    }
    Some(cur)
}

/// One name below the physical dir `cur`: resolved if it is a symlink.
fn step(
    cur: PathBuf,
    name: &OsStr,
    system: &[PathBuf],
    links: &mut BTreeMap<PathBuf, PathBuf>,
    dirs: &mut BTreeSet<PathBuf>,
    depth: u32,
) -> Option<PathBuf> {
    let next = cur.join(name);
    if under(&next, system) {
        return Some(next);
    }
    let meta = fs::symlink_metadata(&next).ok()?;
    if !meta.file_type().is_symlink() {
        return Some(next);
    }
    let target = fs::read_link(&next).ok()?;
    let target = if target.is_absolute() {
        target
    } else {
        cur.join(target)
    };
    let resolved = physical(&target, system, links, dirs, depth + 1)?;
    links.insert(next, resolved.clone());
    Some(resolved)
}

/// [`physical`] for many files of one job: each directory is walked once per job (a
/// job's files share a few dirs, and walking every component of every file was most of
/// the include server's system time). The links and climbed dirs a walk records go into
/// the job's sets the first time, so a memo hit needs nothing more. Per job only: a dir
/// may become a symlink between jobs.
fn physical_memo(
    p: &Path,
    system: &[PathBuf],
    links: &mut BTreeMap<PathBuf, PathBuf>,
    dirs: &mut BTreeSet<PathBuf>,
    memo: &mut HashMap<PathBuf, Option<PathBuf>>,
) -> Option<PathBuf> {
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        return physical(p, system, links, dirs, 0);
    };
    let dir = match memo.get(parent) {
        Some(d) => d.clone(),
        None => {
            let d = physical(parent, system, links, dirs, 0);
            memo.insert(parent.to_path_buf(), d.clone());
            d
        }
    }?;
    step(dir, name, system, links, dirs, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn write(p: &Path, text: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn command_options_joined_and_separate() {
        let cwd = Path::new("/w");
        let c = parse_command(
            cwd,
            &s(&[
                "gcc",
                "-Ia",
                "-I",
                "b",
                "-iquote",
                "q",
                "-isystem/s",
                "-idirafter",
                "z",
                "-include",
                "p.h",
                "-DX=\"y.h\"",
                "-c",
                "m.cc",
            ]),
        )
        .unwrap();
        assert_eq!(
            c.bracket,
            vec![PathBuf::from("/w/a"), PathBuf::from("/w/b")]
        );
        assert_eq!(c.quote, vec![PathBuf::from("/w/q")]);
        assert_eq!(c.system_user, vec![PathBuf::from("/s")]);
        assert_eq!(c.after, vec![PathBuf::from("/w/z")]);
        assert_eq!(c.preincludes, vec!["p.h".to_string()]);
        assert_eq!(c.lang, "c++");
        assert_eq!(c.source, PathBuf::from("/w/m.cc"));
        assert_eq!(c.defines, vec![("X".into(), "\"y.h\"".into())]);
        for bad in [
            "-I-",
            "-imultilib",
            "-Xpreprocessor",
            "-iprefix",
            "-iwithprefix",
            "-iwithprefixbefore",
        ] {
            let e = parse_command(cwd, &s(&["gcc", bad, "x", "-c", "a.c"]));
            assert_eq!(e, Err(NotCovered(format!("{bad} is not supported"))));
        }
        assert!(parse_command(cwd, &s(&["gcc", "-c", "a.c", "b.c"])).is_err());
        assert!(parse_command(cwd, &s(&["gcc", "-x", "ada", "-c", "a.c"])).is_err());
        assert!(parse_command(cwd, &s(&["gcc", "-c", "a.f90"])).is_err());
    }

    #[test]
    fn separate_arguments_are_not_sources() {
        let cwd = Path::new("/w");
        // Options whose argument is the next word, which the old list of options with
        // an argument did not know: their argument was taken for a second source.
        for opt in [
            "-MJ",
            "-dumpbase",
            "-Xlinker",
            "--serialize-diagnostics",
            "-e",
        ] {
            let c = parse_command(cwd, &s(&["gcc", opt, "other.c", "-c", "m.c"]));
            assert_eq!(
                c.map(|c| c.source),
                Ok(PathBuf::from("/w/m.c")),
                "{opt} other.c"
            );
        }
        // Long and joined spellings of the search options.
        let c = parse_command(
            cwd,
            &s(&[
                "gcc",
                "--include-directory",
                "b",
                "--include-directory=c",
                "--include-directory-after=z",
                "--include",
                "p.h",
                "--sysroot",
                "/sr",
                "-c",
                "m.c",
            ]),
        )
        .unwrap();
        assert_eq!(
            c.bracket,
            vec![PathBuf::from("/w/b"), PathBuf::from("/w/c")]
        );
        assert_eq!(c.after, vec![PathBuf::from("/w/z")]);
        assert_eq!(c.preincludes, vec!["p.h".to_string()]);
        assert_eq!(c.probe_flags, vec!["--sysroot=/sr".to_string()]);
        // Search options the analysis does not model are refused, not skipped (their
        // headers would be missing on the server).
        for argv in [
            &["gcc", "-iframework", "fw", "-c", "m.c"][..],
            &["gcc", "-cxx-isystem", "inc", "-c", "m.cc"],
            &["gcc", "-iwithsysroot", "/inc", "-c", "m.c"],
            &["gcc", "--include-prefix=/p", "-c", "m.c"],
            &["gcc", "-include-pch", "p.h.pch", "-c", "m.c"],
            &["gcc", "-Xclang", "-include", "-Xclang", "p.h", "-c", "m.c"],
            &["gcc", "@more.rsp", "-c", "m.c"],
            &["gcc", "-I=/inc", "-c", "m.c"],
            &["gcc", "-c", "m.c", "-I"],
        ] {
            assert!(parse_command(cwd, &s(argv)).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn follows_includes_next_computed_and_links() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().canonicalize().unwrap();
        write(
            &r.join("main.c"),
            "#include \"a.h\"\n#include <b.h>\n#include COMP\n",
        );
        write(&r.join("a.h"), "#define COMP \"c.h\"\n");
        write(&r.join("c.h"), "");
        write(&r.join("i1/b.h"), "#include_next <b.h>\n");
        write(&r.join("i2/b.h"), "#include \"../sub/d.h\"\n");
        write(&r.join("real/d.h"), "");
        std::os::unix::fs::symlink(r.join("real"), r.join("sub")).unwrap();
        let mut an = Analyser::with_path(std::env::var_os("PATH"));
        let cl = an
            .analyse(&r, &s(&["gcc", "-Ii1", "-Ii2", "-c", "main.c"]))
            .unwrap();
        for f in ["main.c", "a.h", "c.h", "i1/b.h", "i2/b.h", "real/d.h"] {
            assert!(cl.files.contains(&r.join(f)), "{f} missing: {:?}", cl.files);
        }
        assert_eq!(cl.files[0], r.join("main.c"));
        assert_eq!(cl.links.get(&r.join("sub")), Some(&r.join("real")));
        assert!(cl.dirs.contains(&r.join("i2")));
        assert!(cl.system_links.contains(&PathBuf::from("/usr/include")));
    }

    #[test]
    fn a_header_made_later_is_found_by_the_next_job() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().canonicalize().unwrap();
        write(&r.join("m.c"), "#include \"gen.h\"\n");
        write(&r.join("src/gen.h"), "");
        let argv = s(&["gcc", "-Ibuild", "-Isrc", "-c", "m.c"]);
        let mut an = Analyser::with_path(std::env::var_os("PATH"));
        let first = an.analyse(&r, &argv).unwrap();
        assert!(first.files.contains(&r.join("src/gen.h")));
        // make generates build/gen.h, which shadows src/gen.h from now on.
        write(&r.join("build/gen.h"), "");
        let second = an.analyse(&r, &argv).unwrap();
        assert!(
            second.files.contains(&r.join("build/gen.h")),
            "{:?}",
            second.files
        );
    }

    #[test]
    fn an_unchanged_tree_is_not_stat_again_and_new_dirs_are_seen() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().canonicalize().unwrap();
        write(
            &r.join("m.c"),
            "#include \"h.h\"\n#include <sub/x.h>\n#include <stdio.h>\n",
        );
        write(&r.join("h.h"), "#include \"g.h\"\n");
        write(&r.join("g.h"), "");
        write(&r.join("b/sub/x.h"), "");
        fs::create_dir(r.join("a")).unwrap();
        let argv = s(&["gcc", "-Ia", "-Ib", "-c", "m.c"]);
        let mut an = Analyser::with_path(std::env::var_os("PATH"));
        let first = an.analyse(&r, &argv).unwrap();
        assert!(first.files.contains(&r.join("b/sub/x.h")));
        assert!(an.looks > 5, "{}", an.looks);
        // Nothing changed: the watches say so, no file is looked at again.
        an.looks = 0;
        let second = an.analyse(&r, &argv).unwrap();
        assert_eq!(second.files, first.files);
        assert_eq!(an.looks, 0);
        // A dir that did not exist appears in front of the one the header was found in,
        // and a header is replaced by a rename: both are seen by the next job.
        write(&r.join("a/sub/x.h"), "");
        write(&r.join("g.new"), "#include \"k.h\"\n");
        write(&r.join("k.h"), "");
        fs::rename(r.join("g.new"), r.join("g.h")).unwrap();
        let third = an.analyse(&r, &argv).unwrap();
        assert!(
            third.files.contains(&r.join("a/sub/x.h")),
            "{:?}",
            third.files
        );
        assert!(
            !third.files.contains(&r.join("b/sub/x.h")),
            "{:?}",
            third.files
        );
        assert!(third.files.contains(&r.join("k.h")), "{:?}", third.files);
    }

    #[test]
    fn a_changed_file_is_parsed_again() {
        use crate::pump::stamp::tests::rewrite_keeping_mtime;
        let t = tempfile::tempdir().unwrap();
        let r = t.path().canonicalize().unwrap();
        write(&r.join("m.c"), "#include \"h.h\"\n");
        write(&r.join("h.h"), "#include \"x.h\"\n");
        write(&r.join("x.h"), "");
        write(&r.join("y.h"), "");
        let argv = s(&["gcc", "-c", "m.c"]);
        let mut an = Analyser::with_path(std::env::var_os("PATH"));
        // Only the stamp comparison decides (no re-reading of fresh files).
        an.trust_fresh_stamps();
        let first = an.analyse(&r, &argv).unwrap();
        assert!(first.files.contains(&r.join("x.h")));
        assert_eq!(first.stamp(&r.join("h.h")), FileId::stat(&r.join("h.h")));
        // Same size, same mtime, same inode: only the ctime differs.
        rewrite_keeping_mtime(&r.join("h.h"), "#include \"y.h\"\n");
        let second = an.analyse(&r, &argv).unwrap();
        assert!(second.files.contains(&r.join("y.h")), "{:?}", second.files);
        assert!(!second.files.contains(&r.join("x.h")), "{:?}", second.files);
        assert_eq!(second.stamp(&r.join("h.h")), FileId::stat(&r.join("h.h")));
        // A header that went away is no longer found through the remembered search.
        fs::remove_file(r.join("y.h")).unwrap();
        let third = an.analyse(&r, &argv).unwrap();
        assert!(!third.files.contains(&r.join("y.h")), "{:?}", third.files);
    }

    #[test]
    fn an_old_definition_does_not_outlive_its_file_version() {
        use crate::pump::stamp::tests::rewrite_keeping_mtime;
        let t = tempfile::tempdir().unwrap();
        let r = t.path().canonicalize().unwrap();
        write(&r.join("m.c"), "#include \"conf.h\"\n#include HDR\n");
        write(&r.join("conf.h"), "#define HDR \"c.h\"\n");
        write(&r.join("c.h"), "");
        write(&r.join("d.h"), "");
        // Another compile's file defines HDR too: not part of m.c's translation unit.
        write(&r.join("o.c"), "#define HDR \"/etc/hostname\"\n");
        let mut an = Analyser::with_path(std::env::var_os("PATH"));
        an.trust_fresh_stamps();
        assert!(an.analyse(&r, &s(&["gcc", "-c", "o.c"])).is_ok());
        let argv = s(&["gcc", "-c", "m.c"]);
        let first = an.analyse(&r, &argv).unwrap();
        assert!(first.files.contains(&r.join("c.h")));
        rewrite_keeping_mtime(&r.join("conf.h"), "#define HDR \"d.h\"\n");
        let second = an.analyse(&r, &argv).unwrap();
        assert!(second.files.contains(&r.join("d.h")), "{:?}", second.files);
        assert!(!second.files.contains(&r.join("c.h")), "{:?}", second.files);
    }

    #[test]
    fn a_replaced_compiler_is_probed_again() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let r = t.path().canonicalize().unwrap();
        write(&r.join("m.c"), "int m;\n");
        // A compiler whose search list names `dir`. The bytes go in through `cp`, a child:
        // had this multithreaded process held the script open for writing, a sibling
        // test forking then could inherit it, and running it would fail with ETXTBSY.
        let install = |dir: &str| {
            let src = r.join("cc.src");
            write(
                &src,
                &format!(
                    "#!/bin/sh\necho '#include <...> search starts here:' >&2\n\
                     echo ' {}' >&2\necho 'End of search list.' >&2\n",
                    r.join(dir).display()
                ),
            );
            fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).unwrap();
            let _ = fs::remove_file(r.join("bin/fakecc"));
            fs::create_dir_all(r.join("bin")).unwrap();
            let ok = std::process::Command::new("cp")
                .arg(&src)
                .arg(r.join("bin/fakecc"))
                .status()
                .unwrap();
            assert!(ok.success());
        };
        install("sys-one");
        let mut an = Analyser::with_path(Some(r.join("bin").into_os_string()));
        let argv = s(&["fakecc", "-c", "m.c"]);
        let first = an.analyse(&r, &argv).unwrap();
        assert_eq!(first.system_links, vec![r.join("sys-one")]);
        // Upgraded under the same name: its dirs are asked again, not remembered by name.
        install("sys-two");
        let second = an.analyse(&r, &argv).unwrap();
        assert_eq!(second.system_links, vec![r.join("sys-two")]);
    }

    #[test]
    fn absolute_and_unresolvable_includes_are_not_covered() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().canonicalize().unwrap();
        write(&r.join("abs.c"), "#include \"/etc/hostname\"\n");
        write(&r.join("mac.c"), "#define HDR(x) #x\n#include HDR(foo.h)\n");
        write(
            &r.join("dead.c"),
            "#if defined(USER_H)\n#include USER_H\n#endif\n",
        );
        let mut an = Analyser::with_path(std::env::var_os("PATH"));
        assert!(an.analyse(&r, &s(&["gcc", "-c", "abs.c"])).is_err());
        assert!(an.analyse(&r, &s(&["gcc", "-c", "mac.c"])).is_err());
        // A macro nothing defines can only sit in a dead branch: covered, nothing to add.
        let dead = an.analyse(&r, &s(&["gcc", "-c", "dead.c"])).unwrap();
        assert_eq!(dead.files, vec![r.join("dead.c")]);
        // …unless the command line defines it.
        write(&r.join("user.h"), "int u;\n");
        let live = an
            .analyse(&r, &s(&["gcc", "-DUSER_H=\"user.h\"", "-c", "dead.c"]))
            .unwrap();
        assert!(live.files.contains(&r.join("user.h")), "{:?}", live.files);
    }
}
