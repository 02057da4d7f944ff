//! Compiler rewriting (distcc 3.4 §2.7, with upstream HEAD's `-dumpmachine`): so that the
//! server runs the same compiler we would, not whatever `cc` or `gcc` means there.
//! * `cc`/`c++` → the gcc/g++/clang/clang++ that PATH's `cc` links to;
//! * `gcc`, `g++`, `gcc-N`, `g++-N` → `<triple>-<name>` if that is on PATH;
//! * `clang…` without `-target`/`--target=` → `-target <triple>` appended.
//!
//! It lives in the client, not in the argument scanner, because it looks at the disk and
//! runs the compiler. The `-dumpmachine` answer is cached per compiler executable under
//! `$DISTCC_DIR/cache`, so that a build does not start the compiler once more for every
//! job: the key is the executable's identity (its canonical path and its inode, size and
//! times), never its name alone, so an upgraded compiler is asked again.
//!
//! `-march=native`, `-mtune=native` and `-mcpu=native` are resolved here too
//! ([`resolve_native`]): a server would read its own CPU, so the client asks its gcc
//! what the word stands for on this machine and sends that instead.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::invocation::Invocation;
use crate::args::{CppStrategy, JobArgv};
use crate::paths::{basename, which_once as which};
use crate::settings::{ClientEnv, DirectivesOnly};

/// The command line to scan for `inv`: the user's, with the compiler rewritten unless
/// `DISTCC_NO_REWRITE_CROSS` is set (any value) or we are a nested distcc (safeguard > 0),
/// which runs what the outer one already rewrote; and how its compiler can preprocess
/// ([`cpp_strategy`], unless `DISTCC_DIRECTIVES_ONLY=0`). Whether a job does so is the
/// picked host's to decide ([`crate::client::compile`]): this is only what the compiler
/// can do, found before a host is picked.
pub(crate) fn for_job(inv: &Invocation, env: &ClientEnv) -> JobArgv {
    let mut argv = inv.argv.clone();
    if inv.nested() {
        return JobArgv {
            argv,
            cpp: CppStrategy::Full,
        };
    }
    // Not looked at: made when an answer is first stored ([`CacheEntry::write`]).
    let cache = match crate::temp::sub_dir_path(&env.dirs, "cache") {
        Ok(d) => Some(d),
        Err(e) => {
            log::debug!("no compiler cache: {e}");
            None
        }
    };
    if env.rewrite_cross
        && let Some(triple) = rewrite_compiler(
            &mut argv,
            inv.path.as_deref(),
            &inv.child_env(),
            cache.as_deref(),
        )
        && argv.first().is_some_and(|c| c.starts_with("clang"))
    {
        argv.extend(["-target".to_string(), triple]);
    }
    if has_native(&argv)
        && let Err(e) = resolve_native(
            &mut argv,
            inv.path.as_deref(),
            &inv.child_env(),
            cache.as_deref(),
        )
    {
        log::info!("{e}: the job is compiled here");
    }
    let cpp = if env.directives_only != DirectivesOnly::Never {
        cpp_strategy(
            &argv,
            inv.path.as_deref(),
            &inv.child_env(),
            cache.as_deref(),
        )
    } else {
        CppStrategy::Full
    };
    JobArgv { argv, cpp }
}

/// The first gcc whose `-fdirectives-only` output is safe to compile again (GCC 11
/// rewrote that mode: raw strings, idempotence — GCC PR 88475).
const MIN_DIRECTIVES_ONLY_GCC: u32 = 11;

/// The first clang whose `-frewrite-includes` evaluates `#if __has_include(…)` (older
/// ones leave it for the server, whose check then refuses the source).
const MIN_REWRITE_INCLUDES_CLANG: u32 = 10;

/// How to preprocess for `argv[0]`: [`CppStrategy::GccDirectivesOnly`] for a gcc of
/// version [`MIN_DIRECTIVES_ONLY_GCC`] or later, [`CppStrategy::ClangRewriteIncludes`]
/// for a clang of [`MIN_REWRITE_INCLUDES_CLANG`] or later, else full `-E`. A name that is
/// neither a gcc's nor a clang's is never probed; one that is is confirmed by asking the
/// compiler for its predefined macros once per executable (cached like `-dumpmachine`),
/// because `gcc` can be a clang, an old gcc or a wrapper.
pub(crate) fn cpp_strategy(
    argv: &[String],
    path: Option<&OsStr>,
    child_env: &[(OsString, OsString)],
    cache_dir: Option<&Path>,
) -> CppStrategy {
    let Some(name) = argv.first() else {
        return CppStrategy::Full;
    };
    let base = basename(name);
    let known_name = base == "cc"
        || base == "c++"
        || base.contains("gcc")
        || base.contains("g++")
        || base.contains("clang");
    if !known_name {
        return CppStrategy::Full;
    }
    let program = if name.contains('/') {
        Some(PathBuf::from(name))
    } else {
        which(name, path)
    };
    let Some(program) = program else {
        return CppStrategy::Full;
    };
    let entry = cache_dir.and_then(|dir| CacheEntry::new(dir, &program, CPP_KIND, &[]));
    let answer = match entry.as_ref().and_then(CacheEntry::read) {
        Some(a) => a,
        None => {
            let a = probe_cpp(&program, child_env);
            if let Some(entry) = &entry {
                entry.write(&a);
            }
            a
        }
    };
    match answer.as_str() {
        "directives-only" => CppStrategy::GccDirectivesOnly,
        "rewrite-includes" => CppStrategy::ClangRewriteIncludes,
        _ => CppStrategy::Full,
    }
}

const CPP_KIND: Kind = Kind {
    name: "cppmode",
    label: "cpp",
    valid: valid_triple,
};
const DUMPMACHINE_KIND: Kind = Kind {
    name: "dumpmachine",
    label: "triple",
    valid: valid_triple,
};
const NATIVE_KIND: Kind = Kind {
    name: "native",
    label: "native",
    valid: valid_native_answer,
};

/// `program -E -dM -x c /dev/null`: `directives-only` for a gcc (not a clang) of a
/// version that has a working `-fdirectives-only`, else `full`.
fn probe_cpp(program: &Path, child_env: &[(OsString, OsString)]) -> String {
    let out = Command::new(program)
        .args(["-E", "-dM", "-x", "c", "/dev/null"])
        .envs(child_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let text = match &out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => String::new(),
    };
    let mut gnuc: Option<u32> = None;
    let mut clang: Option<u32> = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("#define") {
            continue;
        }
        match (words.next(), words.next()) {
            (Some("__GNUC__"), Some(v)) => gnuc = v.parse().ok(),
            (Some("__clang_major__"), Some(v)) => clang = v.parse().ok(),
            _ => {}
        }
    }
    let answer = match clang {
        Some(v) if v >= MIN_REWRITE_INCLUDES_CLANG => "rewrite-includes",
        Some(_) => "full",
        None if gnuc.is_some_and(|v| v >= MIN_DIRECTIVES_ONLY_GCC) => "directives-only",
        None => "full",
    };
    log::debug!(
        "{}: __GNUC__ {gnuc:?}, __clang_major__ {clang:?}: {answer}",
        program.display()
    );
    answer.to_string()
}

/// Rewrite `argv[0]` (see the module notes) and return the compiler's target triple, when
/// it is a gcc or a clang without an explicit target. `path` is the PATH children see.
///
/// `child_env` must carry `_DISTCC_SAFEGUARD`: the `-dumpmachine` probe may start a
/// masquerading distcc, which without it would probe again, forever. `cache_dir` holds
/// the probe's answers; `None` probes every time.
pub(crate) fn rewrite_compiler(
    argv: &mut [String],
    path: Option<&OsStr>,
    child_env: &[(OsString, OsString)],
    cache_dir: Option<&Path>,
) -> Option<String> {
    let name = argv.first()?.clone();
    if name == "cc" || name == "c++" {
        let mut p = which(&name, path)?;
        for _ in 0..8 {
            let Ok(target) = std::fs::read_link(&p) else {
                break;
            };
            p = p.parent().map(|d| d.join(&target)).unwrap_or(target);
            let base = basename(&p);
            if ["gcc", "g++", "clang", "clang++"].contains(&base.as_str()) {
                log::debug!("rewriting {name} to {base}");
                argv[0] = base;
                break;
            }
        }
    }
    let name = argv[0].clone();
    let versioned = |stem: &str| {
        name == stem
            || name
                .strip_prefix(stem)
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
    };
    let is_gcc = versioned("gcc") || versioned("g++");
    let is_clang = versioned("clang") || versioned("clang++");
    if !is_gcc && !is_clang {
        return None;
    }
    if is_clang
        && argv
            .iter()
            .any(|a| a == "-target" || a.starts_with("--target="))
    {
        return None;
    }
    let program = which(&name, path)?;
    let triple = dumpmachine(&program, child_env, cache_dir)?;
    if is_gcc {
        let full = format!("{triple}-{name}");
        if which(&full, path).is_some() {
            log::debug!("rewriting {name} to {full}");
            argv[0] = full;
        }
    }
    Some(triple)
}

/// `program -dumpmachine`, from the cache when it holds an answer for this very executable.
fn dumpmachine(
    program: &Path,
    child_env: &[(OsString, OsString)],
    cache_dir: Option<&Path>,
) -> Option<String> {
    let entry = cache_dir.and_then(|dir| CacheEntry::new(dir, program, DUMPMACHINE_KIND, &[]));
    if let Some(triple) = entry.as_ref().and_then(CacheEntry::read) {
        return Some(triple);
    }
    let triple = probe(program, child_env)?;
    if let Some(entry) = &entry {
        entry.write(&triple);
    }
    Some(triple)
}

/// Run `program -dumpmachine`; `None` unless it succeeds with one word.
fn probe(program: &Path, child_env: &[(OsString, OsString)]) -> Option<String> {
    let out = Command::new(program)
        .arg("-dumpmachine")
        .envs(child_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let triple = String::from_utf8_lossy(&out.stdout).trim().to_string();
    valid_triple(&triple)
        .then_some(triple)
        .filter(|_| out.status.success())
}

fn valid_triple(t: &str) -> bool {
    !t.is_empty() && !t.contains(char::is_whitespace)
}

/// The words that make gcc look at the CPU it runs on.
const NATIVE_WORDS: [&str; 3] = ["-march=native", "-mtune=native", "-mcpu=native"];

fn is_native(word: &str) -> bool {
    NATIVE_WORDS.contains(&word)
}

/// Does the command line ask for this machine's CPU?
pub(crate) fn has_native(argv: &[String]) -> bool {
    argv.iter().skip(1).any(|w| is_native(w))
}

/// Why a `-march=native` job could not be resolved (and so is compiled here).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NativeError {
    /// clang's driver hands cc1 `-target-cpu`/`-target-feature` lists that have no
    /// driver spelling we could send; not resolved (no clang to test against here).
    #[error("{0}: -march=native is not resolved for clang")]
    Clang(String),
    #[error("{0}: not found on PATH, can't ask it what -march=native means")]
    NotFound(String),
    #[error("{program}: can't run it to resolve -march=native: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program}: can't tell what {words} stands for: {why}")]
    Unresolved {
        program: String,
        words: String,
        why: String,
    },
}

/// Replace `-march=native`, `-mtune=native` and `-mcpu=native` by what the compiler
/// itself makes of them on this machine (`-march=znver3 -mmmx … --param
/// l1-cache-size=32 … -mtune=znver3`), so that any server — ours or a distcc 3.4 —
/// compiles for the client's CPU, and the object is the one a local compile gives.
///
/// The answer is asked once per compiler executable and set of `-m` flags (they decide
/// the expansion: `-mtune=X` suppresses the native tune, `-m32` picks another default
/// arch), and cached like `-dumpmachine`, negative answers included. The words go right
/// after the compiler name ([`splice_native`]), where gcc's driver puts them for cc1, so
/// that every flag of the user's still comes later and still wins (`-march=native
/// -mno-avx` keeps AVX off). argv is left alone on error.
pub(crate) fn resolve_native(
    argv: &mut Vec<String>,
    path: Option<&OsStr>,
    child_env: &[(OsString, OsString)],
    cache_dir: Option<&Path>,
) -> Result<(), NativeError> {
    let Some(name) = argv.first().cloned() else {
        return Ok(());
    };
    if basename(&name).contains("clang") {
        return Err(NativeError::Clang(name));
    }
    let program = which(&name, path).ok_or_else(|| NativeError::NotFound(name.clone()))?;
    let flags = target_flags(argv);
    let words = flags
        .iter()
        .filter(|w| is_native(w))
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let unresolved = |why: String| NativeError::Unresolved {
        program: program.display().to_string(),
        words: words.clone(),
        why,
    };
    let entry = cache_dir.and_then(|dir| CacheEntry::new(dir, &program, NATIVE_KIND, &flags));
    let answer = match entry.as_ref().and_then(CacheEntry::read) {
        Some(a) => a,
        None => {
            let a = match probe_native(&program, &flags, child_env)? {
                Ok(block) => block.join(" "),
                Err(why) => {
                    log::debug!("{}: {why}", program.display());
                    UNRESOLVED.to_string()
                }
            };
            if let Some(entry) = &entry {
                entry.write(&a);
            }
            a
        }
    };
    if answer == UNRESOLVED {
        return Err(unresolved("the compiler did not expand it".to_string()));
    }
    let block: Vec<String> = answer.split(' ').map(str::to_string).collect();
    *argv = splice_native(argv, &block);
    log::debug!("{words} → {answer}");
    Ok(())
}

/// The cached answer for a compiler that can't resolve the words.
const UNRESOLVED: &str = "-";

fn valid_native_answer(a: &str) -> bool {
    a == UNRESOLVED || (!a.is_empty() && !a.contains(['\n', '\t']) && !a.contains("  "))
}

/// The words of `argv` that decide what `native` expands to, in order: every `-m…`
/// word (the native ones included).
fn target_flags(argv: &[String]) -> Vec<String> {
    argv.iter()
        .skip(1)
        .filter(|w| w.starts_with("-m"))
        .cloned()
        .collect()
}

/// `argv` with its native words dropped and `block` right after the compiler name.
pub(crate) fn splice_native(argv: &[String], block: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len() + block.len());
    out.extend(argv.first().cloned());
    out.extend(block.iter().cloned());
    out.extend(argv.iter().skip(1).filter(|w| !is_native(w)).cloned());
    out
}

/// `program <flags> -E -v -x c /dev/null -o /dev/null`, whose stderr shows the cc1
/// command line with the expansion. The outer error: the compiler could not be run
/// (not cached); the inner one: it ran and gave no usable answer (cached).
fn probe_native(
    program: &Path,
    flags: &[String],
    child_env: &[(OsString, OsString)],
) -> Result<Result<Vec<String>, String>, NativeError> {
    let out = Command::new(program)
        .args(flags)
        .args(["-E", "-v", "-x", "c", "/dev/null", "-o", "/dev/null"])
        .envs(child_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| NativeError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Ok(Err(format!("{program:?} -E -v failed: {}", out.status)));
    }
    let user: Vec<String> = flags.iter().filter(|w| !is_native(w)).cloned().collect();
    Ok(parse_native_expansion(
        &String::from_utf8_lossy(&out.stderr),
        &user,
    ))
}

/// From the `-E -v` stderr of a probe run with the native words and the job's other
/// `-m` flags `user`: the words gcc's driver gave cc1 in their place.
///
/// cc1's options start with one run of target words (`-m…`, `--param X`): the
/// expansion, then the user's flags in their order, then the driver's configured
/// defaults that nothing overrode (`-march=x86-64` next to `-mtune=native`). The
/// answer is that run without the user's flags: the defaults are kept, so that a server
/// configured with other defaults still compiles for the client's.
pub(crate) fn parse_native_expansion(stderr: &str, user: &[String]) -> Result<Vec<String>, String> {
    let words: Vec<&str> = stderr
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| {
            w.first()
                .is_some_and(|c| ["cc1", "cc1plus"].contains(&basename(c).as_str()))
        })
        .ok_or("no cc1 command line in its -v output")?;
    let mut run: Vec<&str> = Vec::new();
    let mut i = words
        .iter()
        .position(|w| w.starts_with("-m") || w.starts_with("--param"));
    while let Some(at) = i {
        let Some(&w) = words.get(at) else { break };
        if w == "--param" {
            let Some(&v) = words.get(at + 1) else {
                return Err("--param without a value".to_string());
            };
            run.extend([w, v]);
            i = Some(at + 2);
        } else if w.starts_with("-m") || w.starts_with("--param=") {
            run.push(w);
            i = Some(at + 1);
        } else {
            break;
        }
    }
    // The user's flags: their last whole occurrence, right after the expansion.
    let at = if user.is_empty() {
        Some(run.len())
    } else {
        (0..=run.len().saturating_sub(user.len()))
            .rev()
            .find(|&s| run.get(s..s + user.len()).is_some_and(|r| r == user))
    };
    let Some(at) = at else {
        return Err(format!(
            "the flags {} are not where expected in cc1's command line",
            user.join(" ")
        ));
    };
    let block: Vec<String> = run
        .iter()
        .take(at)
        .chain(run.iter().skip(at + user.len()))
        .map(|w| w.to_string())
        .collect();
    if block.iter().any(|w| is_native(w) || w.ends_with("=native")) {
        return Err("cc1 was given `native` itself".to_string());
    }
    let resolved = block.iter().any(|w| {
        ["-march=", "-mtune=", "-mcpu="]
            .iter()
            .any(|p| w.starts_with(p))
    });
    if !resolved {
        return Err("no -march=, -mtune= or -mcpu= in cc1's command line".to_string());
    }
    Ok(block)
}

/// Cache files are small; anything bigger is not ours.
const MAX_CACHE_FILE: u64 = 16 * 1024;

/// One question asked of compilers: the cache file's name prefix, the answer's label,
/// and what a believable answer looks like.
#[derive(Clone, Copy)]
pub(crate) struct Kind {
    pub(crate) name: &'static str,
    pub(crate) label: &'static str,
    pub(crate) valid: fn(&str) -> bool,
}

/// One compiler's cache file for one question: `<kind>-<hash of its paths and flags>`
/// (kinds: `dumpmachine`, whose answer is `triple <triple>`; `cppmode`, `cpp <strategy>`;
/// `native`, `native <words>|-`), holding the full key (paths, the flags the answer
/// depends on, device, inode, size, mtime and ctime in ns) and then the answer. The name
/// depends on the paths and flags only, so an upgraded compiler overwrites its own file;
/// the stored key must match in full, so a stale or foreign file is never believed.
pub(crate) struct CacheEntry {
    file: PathBuf,
    key: Vec<u8>,
    kind: Kind,
}

impl CacheEntry {
    /// The entry for `program` (as found on PATH: a multicall binary such as ccache or
    /// distcc behaves by the name it is run under, so that name is part of the identity
    /// along with the file it resolves to), for a question whose answer also depends on
    /// `flags` (empty for most). `None` when the executable can't be examined.
    pub(crate) fn new(
        dir: &Path,
        program: &Path,
        kind: Kind,
        flags: &[String],
    ) -> Option<CacheEntry> {
        let (names, id) = exe_identity_once(program)?;
        let mut key = format!("distcc -{} cache 1\n", kind.name).into_bytes();
        key.extend(names);
        // Length-prefixed, so that no two flag lists give the same bytes.
        for f in flags {
            key.extend(format!("flag {} {f}\n", f.len()).as_bytes());
        }
        let name = format!("{}-{:016x}", kind.name, fnv1a(&key));
        key.extend(id.describe().as_bytes());
        Some(CacheEntry {
            file: dir.join(name),
            key,
            kind,
        })
    }

    /// The stored answer, if the file is whole and was written for exactly this key.
    pub(crate) fn read(&self) -> Option<String> {
        let mut bytes = Vec::new();
        std::fs::File::open(&self.file)
            .ok()?
            .take(MAX_CACHE_FILE)
            .read_to_end(&mut bytes)
            .ok()?;
        let rest = bytes.strip_prefix(self.key.as_slice())?;
        let rest = rest.strip_prefix(self.kind.label.as_bytes())?;
        let answer = rest.strip_prefix(b" ")?.strip_suffix(b"\n")?;
        let answer = std::str::from_utf8(answer).ok()?;
        (self.kind.valid)(answer).then(|| answer.to_string())
    }

    /// Store `answer`: written to a temp file in the same directory and renamed into place,
    /// so that a concurrent client reads the old file or the new one, never half of one.
    /// Failures only cost a probe next time.
    pub(crate) fn write(&self, answer: &str) {
        let Some(dir) = self.file.parent() else {
            return;
        };
        if !(self.kind.valid)(answer) {
            return;
        }
        let create = || {
            crate::temp::create_temp_file_in(dir, ".answer", ".tmp").map_err(|e| match e {
                crate::temp::TempError::CreateTemp { source, .. } => source,
                other => std::io::Error::other(other.to_string()),
            })
        };
        let (tmp, mut file) = match crate::temp::in_dir(dir, create) {
            Ok(t) => t,
            Err(e) => {
                log::debug!("can't cache the -{} answer: {e}", self.kind.name);
                return;
            }
        };
        // Removed if a signal stops us before the rename.
        let _cleanup = super::cleanup::register(&tmp);
        let mut body = self.key.clone();
        body.extend(format!("{} {answer}\n", self.kind.label).as_bytes());
        let r = file
            .write_all(&body)
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        drop(file);
        if let Err(e) = r {
            log::debug!("can't write {}: {e}", self.file.display());
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// What [`exe_identity_once`] found, by program path.
type Examined = Vec<(PathBuf, (Vec<u8>, crate::pump::stamp::FileId))>;

/// [`exe_identity_once`]'s answers so far.
static EXAMINED: std::sync::Mutex<Examined> = std::sync::Mutex::new(Vec::new());

/// Bound on [`EXAMINED`]: a client job runs one or two compiler names.
const MAX_EXAMINED: usize = 32;

/// [`crate::pump::stamp::exe_identity`], resolved once per process for each program: a
/// job keys three cache entries (`-dumpmachine`, the preprocessor's mode, the identity) by
/// the same compiler, and resolving its links costs a readlink per path component each
/// time. A later call only stats `program` (following links, as the canonical file is
/// stat-ed): if that file changed (an upgrade, a touch) it is resolved again.
fn exe_identity_once(program: &Path) -> Option<(Vec<u8>, crate::pump::stamp::FileId)> {
    use crate::pump::stamp::{FileId, exe_identity};
    {
        let seen = EXAMINED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, (names, id))) = seen.iter().find(|(p, _)| p == program)
            && FileId::stat(program) == Some(*id)
        {
            return Some((names.clone(), *id));
        }
    }
    let found = exe_identity(program)?;
    let mut seen = EXAMINED.lock().unwrap_or_else(|p| p.into_inner());
    seen.retain(|(p, _)| p != program);
    if seen.len() >= MAX_EXAMINED {
        seen.clear();
    }
    seen.push((program.to_path_buf(), found.clone()));
    Some(found)
}

/// FNV-1a, 64 bits: a stable hash for file names (std's hasher may change between Rust
/// releases, which would only cost probes, but a fixed one keeps the names meaningful).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime};

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    /// Make `p` a shell script. The bytes go in through `cp`, a child process: had this
    /// (multithreaded) test process held `p` open for writing, a sibling test forking at
    /// that moment could inherit the descriptor, and running `p` would fail with ETXTBSY.
    fn exe(p: &Path, body: &str) {
        let src = p.with_extension("src");
        std::fs::write(&src, format!("#!/bin/sh\n{body}\n")).unwrap();
        let ok = Command::new("cp").arg(&src).arg(p).status().unwrap();
        assert!(ok.success());
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn compiler_rewriting() {
        let dir = tempfile::tempdir().unwrap();
        let exe = |name: &str, body: &str| exe(&dir.path().join(name), body);
        exe("gcc", "echo mips-linux-gnu");
        exe("mips-linux-gnu-gcc", "");
        exe("clang", "echo arm-none-eabi");
        std::os::unix::fs::symlink("gcc", dir.path().join("cc")).unwrap();
        let path = dir.path().as_os_str();
        let mut a = v("cc -c x.c");
        rewrite_compiler(&mut a, Some(path), &[], None);
        assert_eq!(a[0], "mips-linux-gnu-gcc");
        let mut a = v("clang -c x.c");
        assert_eq!(
            rewrite_compiler(&mut a, Some(path), &[], None).as_deref(),
            Some("arm-none-eabi")
        );
        let mut a = v("clang -target x -c x.c");
        assert_eq!(rewrite_compiler(&mut a, Some(path), &[], None), None);
        let mut a = v("/usr/bin/gcc -c x.c");
        rewrite_compiler(&mut a, Some(path), &[], None);
        assert_eq!(a[0], "/usr/bin/gcc", "only bare names are rewritten");
    }

    /// A fake gcc that prints `triple` and counts its runs in `<dir>/runs`.
    struct Fake {
        dir: tempfile::TempDir,
        cache: PathBuf,
    }

    impl Fake {
        fn new() -> Fake {
            let dir = tempfile::tempdir().unwrap();
            let cache = dir.path().join("cache");
            std::fs::create_dir(&cache).unwrap();
            let f = Fake { dir, cache };
            f.set_triple("mips-linux-gnu");
            f
        }
        fn gcc(&self) -> PathBuf {
            self.dir.path().join("gcc")
        }
        fn set_triple(&self, triple: &str) {
            let runs = self.dir.path().join("runs");
            exe(
                &self.gcc(),
                &format!("echo x >> '{}'\necho {triple}", runs.display()),
            );
        }
        fn runs(&self) -> usize {
            std::fs::read_to_string(self.dir.path().join("runs"))
                .map(|s| s.lines().count())
                .unwrap_or(0)
        }
        /// `gcc -c x.c` rewritten with this PATH and cache; the triple found.
        fn rewrite(&self, cache: bool) -> Option<String> {
            let mut a = v("gcc -c x.c");
            let path = self.dir.path().as_os_str();
            rewrite_compiler(
                &mut a,
                Some(path),
                &[],
                cache.then_some(self.cache.as_path()),
            )
        }
        fn cache_files(&self) -> Vec<PathBuf> {
            std::fs::read_dir(&self.cache)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect()
        }
    }

    #[test]
    fn dumpmachine_runs_once_per_compiler() {
        let f = Fake::new();
        assert_eq!(f.rewrite(true).as_deref(), Some("mips-linux-gnu"));
        assert_eq!(f.runs(), 1);
        assert_eq!(f.rewrite(true).as_deref(), Some("mips-linux-gnu"));
        assert_eq!(f.runs(), 1, "the second lookup must come from the cache");
        let files = f.cache_files();
        assert_eq!(files.len(), 1, "one file, no temp files left: {files:?}");
        let body = std::fs::read_to_string(&files[0]).unwrap();
        assert!(body.ends_with("triple mips-linux-gnu\n"), "{body}");
        assert!(body.contains(f.gcc().to_str().unwrap()), "{body}");
        // Without a cache directory, every lookup probes.
        f.rewrite(false);
        f.rewrite(false);
        assert_eq!(f.runs(), 3);
    }

    /// A job keys several cache entries by its compiler: the links are resolved once,
    /// and later only the file is stat-ed. Seen here through a link moved to another
    /// name of the same file (a hard link: same inode, size and times), which keeps the
    /// first resolution; a link to a different file is resolved again.
    #[test]
    fn compiler_links_are_resolved_once() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
        exe(&a, "echo x86_64-linux-gnu");
        std::fs::hard_link(&a, &b).unwrap();
        let gcc = t.path().join("gcc");
        std::os::unix::fs::symlink(&a, &gcc).unwrap();
        let canonical = |names: &[u8]| String::from_utf8_lossy(names).into_owned();
        let (first, _) = exe_identity_once(&gcc).unwrap();
        assert!(canonical(&first).contains(a.to_str().unwrap()));
        std::fs::remove_file(&gcc).unwrap();
        std::os::unix::fs::symlink(&b, &gcc).unwrap();
        let (second, _) = exe_identity_once(&gcc).unwrap();
        assert_eq!(canonical(&second), canonical(&first), "resolved again");
        // Another file behind the same name is noticed.
        exe(&c, "echo aarch64-linux-gnu; true");
        std::fs::remove_file(&gcc).unwrap();
        std::os::unix::fs::symlink(&c, &gcc).unwrap();
        let (third, _) = exe_identity_once(&gcc).unwrap();
        assert!(canonical(&third).contains(c.to_str().unwrap()));
    }

    #[test]
    fn an_upgraded_compiler_is_asked_again() {
        let f = Fake::new();
        assert_eq!(f.rewrite(true).as_deref(), Some("mips-linux-gnu"));
        // Replaced by a different compiler (new size and times).
        f.set_triple("aarch64-linux-gnu");
        assert_eq!(f.rewrite(true).as_deref(), Some("aarch64-linux-gnu"));
        assert_eq!(f.runs(), 2);
        assert_eq!(f.cache_files().len(), 1, "its own file is overwritten");
        // Same bytes, only touched: asked again too.
        // (Read-only: a writable descriptor could make running it fail, see `exe`.)
        let file = std::fs::File::open(f.gcc()).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        drop(file);
        assert_eq!(f.rewrite(true).as_deref(), Some("aarch64-linux-gnu"));
        assert_eq!(f.runs(), 3);
        assert_eq!(f.rewrite(true).as_deref(), Some("aarch64-linux-gnu"));
        assert_eq!(f.runs(), 3);
    }

    #[test]
    fn a_corrupt_or_foreign_cache_file_is_ignored_and_rewritten() {
        let f = Fake::new();
        f.rewrite(true);
        let files = f.cache_files();
        let good = std::fs::read(&files[0]).unwrap();
        let bad: [Vec<u8>; 4] = [
            b"garbage".to_vec(),
            // Cut short, as a half-written file would be.
            good[..good.len() - 5].to_vec(),
            // Another compiler's key (another inode) with its triple.
            String::from_utf8(good.clone())
                .unwrap()
                .replace("\nino ", "\nino 1")
                .replace("mips-linux-gnu", "x86_64-evil")
                .into_bytes(),
            // Our key with a triple that is not one word.
            String::from_utf8(good.clone())
                .unwrap()
                .replace("mips-linux-gnu", "two words")
                .into_bytes(),
        ];
        for (i, b) in bad.iter().enumerate() {
            std::fs::write(&files[0], b).unwrap();
            assert_eq!(f.rewrite(true).as_deref(), Some("mips-linux-gnu"), "{i}");
            assert_eq!(f.runs(), i + 2, "case {i} must probe again");
            assert_eq!(
                std::fs::read(&files[0]).unwrap(),
                good,
                "case {i} rewritten"
            );
        }
    }

    #[test]
    fn the_cpp_strategy_is_probed_once_per_compiler() {
        let f = Fake::new();
        let path = f.dir.path().as_os_str();
        let strategy = |name: &str| {
            cpp_strategy(
                &v(&format!("{name} -c x.c")),
                Some(path),
                &[],
                Some(&f.cache),
            )
        };
        let runs = f.dir.path().join("runs");
        let gcc = |defines: &str| {
            exe(
                &f.gcc(),
                &format!("echo x >> '{}'\nprintf '{defines}'", runs.display()),
            )
        };
        gcc("#define __GNUC__ 12\\n#define __GNUC_MINOR__ 2\\n");
        assert_eq!(strategy("gcc"), CppStrategy::GccDirectivesOnly);
        assert_eq!(strategy("gcc"), CppStrategy::GccDirectivesOnly);
        assert_eq!(f.runs(), 1, "the second answer comes from the cache");
        // Replaced: asked again. Too old, or a clang behind the name: full -E.
        gcc("#define __GNUC__ 10\\n");
        assert_eq!(strategy("gcc"), CppStrategy::Full);
        gcc("#define __clang__ 1\\n#define __clang_major__ 9\\n#define __GNUC__ 4\\n");
        assert_eq!(strategy("gcc"), CppStrategy::Full);
        gcc("#define __clang__ 1\\n#define __clang_major__ 14\\n#define __GNUC__ 4\\n");
        assert_eq!(strategy("gcc"), CppStrategy::ClangRewriteIncludes);
        assert_eq!(f.runs(), 4);
        // Names that are neither a gcc's nor a clang's are never run.
        assert_eq!(strategy("tcc"), CppStrategy::Full);
        assert_eq!(f.runs(), 4);
    }

    #[test]
    fn a_multicall_binary_is_told_apart_by_its_name() {
        let f = Fake::new();
        let clang = f.dir.path().join("clang");
        std::os::unix::fs::symlink(f.gcc(), &clang).unwrap();
        f.rewrite(true);
        let mut a = v("clang -c x.c");
        let path = f.dir.path().as_os_str();
        rewrite_compiler(&mut a, Some(path), &[], Some(&f.cache));
        assert_eq!(
            f.runs(),
            2,
            "clang → the same file as gcc, but its own entry"
        );
        assert_eq!(f.cache_files().len(), 2);
    }

    /// The stderr of `gcc -march=native -mno-avx -E -v -x c /dev/null -o /dev/null`
    /// (Debian gcc 12.2.0 on an AMD Zen 3), verbatim.
    const GCC12_MARCH_NATIVE_NO_AVX: &str = r#"Using built-in specs.
COLLECT_GCC=gcc
OFFLOAD_TARGET_NAMES=nvptx-none:amdgcn-amdhsa
OFFLOAD_TARGET_DEFAULT=1
Target: x86_64-linux-gnu
Configured with: ../src/configure -v --with-pkgversion='Debian 12.2.0-14+deb12u1' --with-bugurl=file:///usr/share/doc/gcc-12/README.Bugs --enable-languages=c,ada,c++,go,d,fortran,objc,obj-c++,m2 --prefix=/usr --with-gcc-major-version-only --program-suffix=-12 --program-prefix=x86_64-linux-gnu- --enable-shared --enable-linker-build-id --libexecdir=/usr/lib --without-included-gettext --enable-threads=posix --libdir=/usr/lib --enable-nls --enable-clocale=gnu --enable-libstdcxx-debug --enable-libstdcxx-time=yes --with-default-libstdcxx-abi=new --enable-gnu-unique-object --disable-vtable-verify --enable-plugin --enable-default-pie --with-system-zlib --enable-libphobos-checking=release --with-target-system-zlib=auto --enable-objc-gc=auto --enable-multiarch --disable-werror --enable-cet --with-arch-32=i686 --with-abi=m64 --with-multilib-list=m32,m64,mx32 --enable-multilib --with-tune=generic --enable-offload-targets=nvptx-none=/build/reproducible-path/gcc-12-12.2.0/debian/tmp-nvptx/usr,amdgcn-amdhsa=/build/reproducible-path/gcc-12-12.2.0/debian/tmp-gcn/usr --enable-offload-defaulted --without-cuda-driver --enable-checking=release --build=x86_64-linux-gnu --host=x86_64-linux-gnu --target=x86_64-linux-gnu
Thread model: posix
Supported LTO compression algorithms: zlib zstd
gcc version 12.2.0 (Debian 12.2.0-14+deb12u1) 
COLLECT_GCC_OPTIONS='-march=native' '-mno-avx' '-E' '-v' '-o' '/dev/null'
 /usr/lib/gcc/x86_64-linux-gnu/12/cc1 -E -quiet -v -imultiarch x86_64-linux-gnu /dev/null -o /dev/null -march=znver3 -mmmx -mpopcnt -msse -msse2 -msse3 -mssse3 -msse4.1 -msse4.2 -mavx -mavx2 -msse4a -mno-fma4 -mno-xop -mfma -mavx512f -mbmi -mbmi2 -maes -mpclmul -mavx512vl -mavx512bw -mavx512dq -mavx512cd -mno-avx512er -mno-avx512pf -mavx512vbmi -mavx512ifma -mno-avx5124vnniw -mno-avx5124fmaps -mavx512vpopcntdq -mavx512vbmi2 -mgfni -mvpclmulqdq -mavx512vnni -mavx512bitalg -mavx512bf16 -mno-avx512vp2intersect -mno-3dnow -madx -mabm -mno-cldemote -mclflushopt -mclwb -mclzero -mcx16 -mno-enqcmd -mf16c -mfsgsbase -mfxsr -mno-hle -msahf -mno-lwp -mlzcnt -mmovbe -mno-movdir64b -mno-movdiri -mno-mwaitx -mno-pconfig -mno-pku -mno-prefetchwt1 -mprfchw -mno-ptwrite -mrdpid -mrdrnd -mrdseed -mno-rtm -mno-serialize -mno-sgx -msha -mshstk -mno-tbm -mno-tsxldtrk -mvaes -mno-waitpkg -mno-wbnoinvd -mxsave -mxsavec -mxsaveopt -mxsaves -mno-amx-tile -mno-amx-int8 -mno-amx-bf16 -mno-uintr -mno-hreset -mno-kl -mno-widekl -mno-avxvnni -mno-avx512fp16 --param l1-cache-size=32 --param l1-cache-line-size=64 --param l2-cache-size=1024 -mtune=znver3 -mno-avx -fasynchronous-unwind-tables -dumpbase null
ignoring nonexistent directory "/usr/local/include/x86_64-linux-gnu"
ignoring nonexistent directory "/usr/lib/gcc/x86_64-linux-gnu/12/include-fixed"
ignoring nonexistent directory "/usr/lib/gcc/x86_64-linux-gnu/12/../../../../x86_64-linux-gnu/include"
#include "..." search starts here:
#include <...> search starts here:
 /usr/lib/gcc/x86_64-linux-gnu/12/include
 /usr/local/include
 /usr/include/x86_64-linux-gnu
 /usr/include
End of search list.
COMPILER_PATH=/usr/lib/gcc/x86_64-linux-gnu/12/:/usr/lib/gcc/x86_64-linux-gnu/12/:/usr/lib/gcc/x86_64-linux-gnu/:/usr/lib/gcc/x86_64-linux-gnu/12/:/usr/lib/gcc/x86_64-linux-gnu/
LIBRARY_PATH=/usr/lib/gcc/x86_64-linux-gnu/12/:/usr/lib/gcc/x86_64-linux-gnu/12/../../../x86_64-linux-gnu/:/usr/lib/gcc/x86_64-linux-gnu/12/../../../../lib/:/lib/x86_64-linux-gnu/:/lib/../lib/:/usr/lib/x86_64-linux-gnu/:/usr/lib/../lib/:/usr/lib/gcc/x86_64-linux-gnu/12/../../../:/lib/:/usr/lib/
COLLECT_GCC_OPTIONS='-march=native' '-mno-avx' '-E' '-v' '-o' '/dev/null'
"#;

    /// The stderr of `gcc -mtune=native -E -v -x c /dev/null -o /dev/null`, same machine.
    const GCC12_MTUNE_NATIVE: &str = r#"Using built-in specs.
COLLECT_GCC=gcc
OFFLOAD_TARGET_NAMES=nvptx-none:amdgcn-amdhsa
OFFLOAD_TARGET_DEFAULT=1
Target: x86_64-linux-gnu
Configured with: ../src/configure -v --with-pkgversion='Debian 12.2.0-14+deb12u1' --with-bugurl=file:///usr/share/doc/gcc-12/README.Bugs --enable-languages=c,ada,c++,go,d,fortran,objc,obj-c++,m2 --prefix=/usr --with-gcc-major-version-only --program-suffix=-12 --program-prefix=x86_64-linux-gnu- --enable-shared --enable-linker-build-id --libexecdir=/usr/lib --without-included-gettext --enable-threads=posix --libdir=/usr/lib --enable-nls --enable-clocale=gnu --enable-libstdcxx-debug --enable-libstdcxx-time=yes --with-default-libstdcxx-abi=new --enable-gnu-unique-object --disable-vtable-verify --enable-plugin --enable-default-pie --with-system-zlib --enable-libphobos-checking=release --with-target-system-zlib=auto --enable-objc-gc=auto --enable-multiarch --disable-werror --enable-cet --with-arch-32=i686 --with-abi=m64 --with-multilib-list=m32,m64,mx32 --enable-multilib --with-tune=generic --enable-offload-targets=nvptx-none=/build/reproducible-path/gcc-12-12.2.0/debian/tmp-nvptx/usr,amdgcn-amdhsa=/build/reproducible-path/gcc-12-12.2.0/debian/tmp-gcn/usr --enable-offload-defaulted --without-cuda-driver --enable-checking=release --build=x86_64-linux-gnu --host=x86_64-linux-gnu --target=x86_64-linux-gnu
Thread model: posix
Supported LTO compression algorithms: zlib zstd
gcc version 12.2.0 (Debian 12.2.0-14+deb12u1) 
COLLECT_GCC_OPTIONS='-mtune=native' '-E' '-v' '-o' '/dev/null' '-march=x86-64'
 /usr/lib/gcc/x86_64-linux-gnu/12/cc1 -E -quiet -v -imultiarch x86_64-linux-gnu /dev/null -o /dev/null --param l1-cache-size=32 --param l1-cache-line-size=64 --param l2-cache-size=1024 -mtune=znver3 -march=x86-64 -fasynchronous-unwind-tables -dumpbase null
ignoring nonexistent directory "/usr/local/include/x86_64-linux-gnu"
ignoring nonexistent directory "/usr/lib/gcc/x86_64-linux-gnu/12/include-fixed"
ignoring nonexistent directory "/usr/lib/gcc/x86_64-linux-gnu/12/../../../../x86_64-linux-gnu/include"
#include "..." search starts here:
#include <...> search starts here:
 /usr/lib/gcc/x86_64-linux-gnu/12/include
 /usr/local/include
 /usr/include/x86_64-linux-gnu
 /usr/include
End of search list.
COMPILER_PATH=/usr/lib/gcc/x86_64-linux-gnu/12/:/usr/lib/gcc/x86_64-linux-gnu/12/:/usr/lib/gcc/x86_64-linux-gnu/:/usr/lib/gcc/x86_64-linux-gnu/12/:/usr/lib/gcc/x86_64-linux-gnu/
LIBRARY_PATH=/usr/lib/gcc/x86_64-linux-gnu/12/:/usr/lib/gcc/x86_64-linux-gnu/12/../../../x86_64-linux-gnu/:/usr/lib/gcc/x86_64-linux-gnu/12/../../../../lib/:/lib/x86_64-linux-gnu/:/lib/../lib/:/usr/lib/x86_64-linux-gnu/:/usr/lib/../lib/:/usr/lib/gcc/x86_64-linux-gnu/12/../../../:/lib/:/usr/lib/
COLLECT_GCC_OPTIONS='-mtune=native' '-E' '-v' '-o' '/dev/null' '-march=x86-64'
"#;

    #[test]
    fn the_expansion_is_read_from_cc1s_command_line() {
        let block = parse_native_expansion(GCC12_MARCH_NATIVE_NO_AVX, &v("-mno-avx")).unwrap();
        assert_eq!(block.first().map(String::as_str), Some("-march=znver3"));
        assert_eq!(block.last().map(String::as_str), Some("-mtune=znver3"));
        assert_eq!(block.len(), 96, "{block:?}");
        for w in ["-mavx", "-mavx2", "-mno-3dnow", "-mno-avx512fp16"] {
            assert!(block.contains(&w.to_string()), "{w}");
        }
        // `--param` keeps its value as the next word, as cc1 got it.
        let at = block.iter().position(|w| w == "--param").unwrap();
        assert_eq!(
            block[at..at + 6].join(" "),
            "--param l1-cache-size=32 --param l1-cache-line-size=64 --param l2-cache-size=1024"
        );
        // The user's own flag is not part of it: it stays where the user put it.
        assert!(!block.contains(&"-mno-avx".to_string()));
        // -mtune=native alone: the tune and the cache sizes, and the compiler's own
        // default -march pinned, which a server configured otherwise would not use.
        let block = parse_native_expansion(GCC12_MTUNE_NATIVE, &[]).unwrap();
        assert_eq!(
            block.join(" "),
            "--param l1-cache-size=32 --param l1-cache-line-size=64 \
             --param l2-cache-size=1024 -mtune=znver3 -march=x86-64"
        );
    }

    #[test]
    fn what_is_not_an_expansion_is_refused() {
        // A clang behind the name: no cc1 line.
        let clang = " \"/usr/bin/clang\" -cc1 -triple x86_64-pc-linux-gnu -E \
                     -target-cpu znver3 -target-feature +avx\n";
        assert!(parse_native_expansion(clang, &[]).is_err());
        // A compiler that passes `native` on to cc1 as it is.
        let raw = " /usr/lib/gcc/x/12/cc1 -E -quiet /dev/null -o /dev/null -march=native\n";
        assert!(parse_native_expansion(raw, &[]).is_err());
        // The user's flags are not where gcc puts them: no guessing.
        assert!(parse_native_expansion(GCC12_MARCH_NATIVE_NO_AVX, &v("-m32")).is_err());
        assert!(parse_native_expansion("", &[]).is_err());
    }

    #[test]
    fn the_expansion_goes_first_so_later_flags_still_win() {
        let block = v("-march=znver3 -mavx --param l1-cache-size=32 -mtune=znver3");
        let argv = v("gcc -O2 -march=native -mno-avx -c x.c");
        assert_eq!(
            splice_native(&argv, &block),
            v("gcc -march=znver3 -mavx --param l1-cache-size=32 -mtune=znver3 -O2 -mno-avx -c x.c")
        );
        // A flag before `-march=native` still comes after the expansion, as in cc1's
        // command line: gcc's `-mno-avx -march=native` has no AVX either.
        let argv = v("gcc -mno-avx -O2 -march=native -mtune=native -c x.c");
        assert_eq!(
            splice_native(&argv, &block),
            v("gcc -march=znver3 -mavx --param l1-cache-size=32 -mtune=znver3 -mno-avx -O2 -c x.c")
        );
        assert!(!has_native(&splice_native(&argv, &block)));
        assert!(has_native(&v("gcc -mcpu=native -c x.c")));
        assert!(!has_native(&v("gcc -march=znver3 -c x.c")));
    }

    #[test]
    fn the_rewritten_job_is_distributed_and_a_server_accepts_it() {
        let block = parse_native_expansion(GCC12_MARCH_NATIVE_NO_AVX, &v("-mno-avx")).unwrap();
        let argv = splice_native(&v("gcc -O2 -march=native -mno-avx -c x.c"), &block);
        let scan = crate::args::scan(&argv);
        assert_eq!(scan.local_reason, None);
        assert!(scan.server_argv.contains(&"l2-cache-size=1024".to_string()));
        assert!(scan.cpp_argv.contains(&"-mavx512f".to_string()));
        let vetted =
            crate::daemon::argv::vet(&scan.server_argv, crate::daemon::argv::Mode::Plain, "/");
        assert_eq!(vetted.as_ref(), Ok(&scan.server_argv));
        // Unresolved, it stays local.
        let scan = crate::args::scan(&v("gcc -O2 -mcpu=native -c x.c"));
        assert!(scan.local_reason.is_some());
    }

    /// Make `f`'s gcc a fake that counts its runs, prints `stderr_text` on stderr and
    /// exits with `status`.
    fn fake_native_gcc(f: &Fake, stderr_text: &str, status: i32) {
        let text = f.dir.path().join("stderr.txt");
        std::fs::write(&text, stderr_text).unwrap();
        exe(
            &f.gcc(),
            &format!(
                "echo x >> '{}'\ncat '{}' >&2\nexit {status}",
                f.dir.path().join("runs").display(),
                text.display()
            ),
        );
    }

    #[test]
    fn native_is_probed_once_per_compiler_and_flags() {
        let f = Fake::new();
        fake_native_gcc(&f, GCC12_MARCH_NATIVE_NO_AVX, 0);
        let path = f.dir.path().as_os_str();
        let resolve = |cmd: &str| {
            let mut a = v(cmd);
            resolve_native(&mut a, Some(path), &[], Some(&f.cache)).map(|()| a)
        };
        let a = resolve("gcc -O2 -march=native -mno-avx -c x.c").unwrap();
        assert_eq!(a[1], "-march=znver3");
        assert_eq!(a[a.len() - 4..].join(" "), "-O2 -mno-avx -c x.c");
        let b = resolve("gcc -O2 -march=native -mno-avx -c y.c").unwrap();
        assert_eq!(a[..a.len() - 1], b[..b.len() - 1]);
        assert_eq!(f.runs(), 1, "the second job's answer comes from the cache");
        let files = f.cache_files();
        assert_eq!(files.len(), 1, "{files:?}");
        let body = std::fs::read_to_string(&files[0]).unwrap();
        assert!(body.contains("flag 8 -mno-avx\n"), "{body}");
        assert!(body.ends_with(" -mtune=znver3\n"), "{body}");
        // Other -m flags: another question (this fake's answer does not fit them:
        // refused, and the refusal is cached too).
        assert!(resolve("gcc -march=native -m32 -c x.c").is_err());
        assert!(resolve("gcc -march=native -m32 -c x.c").is_err());
        assert_eq!(f.runs(), 2);
        assert_eq!(f.cache_files().len(), 2);
        let argv = v("gcc -march=native -m32 -c x.c");
        let mut a = argv.clone();
        let _ = resolve_native(&mut a, Some(path), &[], Some(&f.cache));
        assert_eq!(a, argv, "left alone when unresolved");
        // A compiler that fails: not resolved; clang: never run.
        fake_native_gcc(&f, "gcc: error: unrecognized option\n", 1);
        assert!(resolve("gcc -march=native -c x.c").is_err());
        assert_eq!(f.runs(), 3);
        assert!(matches!(
            resolve("clang -march=native -c x.c"),
            Err(NativeError::Clang(_))
        ));
        assert_eq!(f.runs(), 3);
    }
}
