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

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::invocation::Invocation;
use crate::args::{CppStrategy, JobArgv};
use crate::paths::{basename, which};
use crate::settings::ClientEnv;

/// The command line to scan for `inv`: the user's, with the compiler rewritten unless
/// `DISTCC_NO_REWRITE_CROSS` is set (any value) or we are a nested distcc (safeguard > 0),
/// which runs what the outer one already rewrote; and how to preprocess for it
/// ([`cpp_strategy`], unless `DISTCC_DIRECTIVES_ONLY=0`).
pub(crate) fn for_job(inv: &Invocation, env: &ClientEnv) -> JobArgv {
    let mut argv = inv.argv.clone();
    if inv.nested() {
        return JobArgv {
            argv,
            cpp: CppStrategy::Full,
        };
    }
    let cache = match crate::temp::sub_dir(&env.dirs, "cache") {
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
    let cpp = if env.directives_only {
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

/// How to preprocess for `argv[0]`: [`CppStrategy::GccDirectivesOnly`] for a gcc of
/// version [`MIN_DIRECTIVES_ONLY_GCC`] or later, else full `-E`. A name that is not a
/// gcc's is never probed; a gcc's is confirmed by asking the compiler for its
/// predefined macros once per executable (cached like `-dumpmachine`), because `gcc` can
/// be a clang, an old gcc or a wrapper.
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
    let gcc_name = base == "cc" || base == "c++" || base.contains("gcc") || base.contains("g++");
    if !gcc_name || base.contains("clang") {
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
    let entry = cache_dir.and_then(|dir| CacheEntry::new(dir, &program, CPP_KIND));
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
    if answer == "directives-only" {
        CppStrategy::GccDirectivesOnly
    } else {
        CppStrategy::Full
    }
}

const CPP_KIND: (&str, &str) = ("cppmode", "cpp");
const DUMPMACHINE_KIND: (&str, &str) = ("dumpmachine", "triple");

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
    let mut clang = false;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("#define") {
            continue;
        }
        match (words.next(), words.next()) {
            (Some("__GNUC__"), Some(v)) => gnuc = v.parse().ok(),
            (Some("__clang__"), _) => clang = true,
            _ => {}
        }
    }
    let ok = !clang && gnuc.is_some_and(|v| v >= MIN_DIRECTIVES_ONLY_GCC);
    log::debug!(
        "{}: __GNUC__ {gnuc:?}, clang {clang}: {}",
        program.display(),
        if ok { "-fdirectives-only" } else { "full -E" }
    );
    if ok { "directives-only" } else { "full" }.to_string()
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
    let entry = cache_dir.and_then(|dir| CacheEntry::new(dir, program, DUMPMACHINE_KIND));
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

/// Cache files are small; anything bigger is not ours.
const MAX_CACHE_FILE: u64 = 16 * 1024;

/// One compiler's cache file for one question: `<kind>-<hash of its paths>` (kinds:
/// `dumpmachine`, whose answer is `triple <triple>`; `cppmode`, `cpp <strategy>`),
/// holding the full key (paths, device, inode, size, mtime and ctime in ns) and then the
/// answer. The name depends on the paths only, so an upgraded compiler overwrites its own
/// file; the stored key must match in full, so a stale or foreign file is never believed.
struct CacheEntry {
    file: PathBuf,
    key: Vec<u8>,
    /// The answer's label (`triple`, `cpp`).
    label: &'static str,
}

impl CacheEntry {
    /// The entry for `program` (as found on PATH: a multicall binary such as ccache or
    /// distcc behaves by the name it is run under, so that name is part of the identity
    /// along with the file it resolves to). `None` when the executable can't be examined.
    fn new(dir: &Path, program: &Path, kind: (&str, &'static str)) -> Option<CacheEntry> {
        let (kind, label) = kind;
        let (names, id) = crate::pump::stamp::exe_identity(program)?;
        let mut key = format!("distcc -{kind} cache 1\n").into_bytes();
        key.extend(names);
        let name = format!("{kind}-{:016x}", fnv1a(&key));
        key.extend(id.describe().as_bytes());
        Some(CacheEntry {
            file: dir.join(name),
            key,
            label,
        })
    }

    /// The stored answer, if the file is whole and was written for exactly this key.
    fn read(&self) -> Option<String> {
        let mut bytes = Vec::new();
        std::fs::File::open(&self.file)
            .ok()?
            .take(MAX_CACHE_FILE)
            .read_to_end(&mut bytes)
            .ok()?;
        let rest = bytes.strip_prefix(self.key.as_slice())?;
        let rest = rest.strip_prefix(self.label.as_bytes())?;
        let triple = rest.strip_prefix(b" ")?.strip_suffix(b"\n")?;
        let triple = std::str::from_utf8(triple).ok()?;
        valid_triple(triple).then(|| triple.to_string())
    }

    /// Store the answer `triple`: written to a temp file in the same directory and renamed into place,
    /// so that a concurrent client reads the old file or the new one, never half of one.
    /// Failures only cost a probe next time.
    fn write(&self, triple: &str) {
        let Some(dir) = self.file.parent() else {
            return;
        };
        let tmp = match crate::temp::make_temp_file_in(dir, ".answer", ".tmp") {
            Ok(t) => t,
            Err(e) => {
                log::debug!("can't cache the -dumpmachine answer: {e}");
                return;
            }
        };
        // Removed if a signal stops us before the rename.
        let _cleanup = super::cleanup::register(&tmp);
        let mut body = self.key.clone();
        body.extend(format!("{} {triple}\n", self.label).as_bytes());
        let r = std::fs::OpenOptions::new()
            .write(true)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&body))
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(e) = r {
            log::debug!("can't write {}: {e}", self.file.display());
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// FNV-1a, 64 bits: a stable hash for file names (std's hasher may change between Rust
/// releases, which would only cost probes, but a fixed one keeps the names meaningful).
fn fnv1a(bytes: &[u8]) -> u64 {
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
        gcc("#define __clang__ 1\\n#define __GNUC__ 12\\n");
        assert_eq!(strategy("gcc"), CppStrategy::Full);
        assert_eq!(f.runs(), 3);
        // Names that are not a gcc's are never run.
        assert_eq!(strategy("tcc"), CppStrategy::Full);
        assert_eq!(strategy("clang"), CppStrategy::Full);
        assert_eq!(f.runs(), 3);
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
}
