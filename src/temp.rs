//! Where distcc keeps its files: `DISTCC_DIR` (lock and state sub-directories) and the
//! temporary directory, plus a temp-file maker shaped like distcc 3.4's `tempfile.c`.
//!
//! Every function that depends on the environment takes an [`Env`], so tests (and callers
//! that already captured the environment) pass explicit values instead of touching the real
//! `$HOME` or `$TMPDIR`. [`ProcessEnv`] is the real process environment.
//!
//! Compatibility notes (reference §2.2, Gentoo notes):
//! * An explicit `DISTCC_DIR` is used as is and never created; the default `$HOME/.distcc`
//!   is created on demand, like distcc 3.4 does.
//! * Sub-directories (`lock`, `state`, …) are created with mode `0777` filtered by the umask
//!   and an existing directory is never chmod-ed: Portage prepares them group-writable for
//!   the `portage` group and a chmod would break sharing.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Errors about distcc's directories and temporary files.
#[derive(Debug, thiserror::Error)]
pub enum TempError {
    /// Neither `DISTCC_DIR` nor `HOME` is set, so there is nowhere for locks and state.
    #[error("HOME is not set; can't find distcc directory (set DISTCC_DIR or HOME)")]
    NoHome,
    /// A directory could not be created.
    #[error(
        "failed to create directory {path}: {source} (check its parent's permissions or set DISTCC_DIR)"
    )]
    CreateDir {
        /// The directory we tried to create.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The temporary directory is missing or not writable.
    #[error("can't use TMPDIR \"{path}\": {source} (point TMPDIR at a writable directory)")]
    BadTmpDir {
        /// The directory from `TMPDIR` (or `/tmp`).
        path: PathBuf,
        /// Why it is unusable.
        source: io::Error,
    },
    /// A temporary file or directory could not be created.
    #[error("failed to create temporary {what} in {dir}: {source}")]
    CreateTemp {
        /// "file" or "directory".
        what: &'static str,
        /// The directory it was to be created in.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// A source of environment variables. Implemented by [`ProcessEnv`] (the real environment)
/// and by `HashMap<String, String>` (explicit values, for tests and for callers that have
/// already captured what they need).
pub trait Env {
    /// The value of `name`, or `None` when it is unset.
    fn var_os(&self, name: &str) -> Option<OsString>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var_os(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }
}

impl Env for HashMap<String, String> {
    fn var_os(&self, name: &str) -> Option<OsString> {
        self.get(name).map(OsString::from)
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn var_os(&self, name: &str) -> Option<OsString> {
        (**self).var_os(name)
    }
}

/// `DISTCC_DIR`, or `$HOME/.distcc` (created if missing). An explicit `DISTCC_DIR` is not
/// created: a typo there should show up as an error, not as a stray directory.
/// An empty `DISTCC_DIR` counts as unset.
pub fn distcc_dir(env: &dyn Env) -> Result<PathBuf, TempError> {
    if let Some(dir) = env.var_os("DISTCC_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = env
        .var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or(TempError::NoHome)?;
    let dir = Path::new(&home).join(".distcc");
    ensure_dir(&dir)?;
    Ok(dir)
}

/// `$DISTCC_DIR/lock`, created on demand: slot locks and backoff files live here.
pub fn lock_dir(env: &dyn Env) -> Result<PathBuf, TempError> {
    sub_dir(env, "lock")
}

/// `$DISTCC_DIR/state`, created on demand: `binstate_<pid>` files for distccmon-text.
pub fn state_dir(env: &dyn Env) -> Result<PathBuf, TempError> {
    sub_dir(env, "state")
}

/// `$DISTCC_DIR/<name>`, created on demand.
pub fn sub_dir(env: &dyn Env, name: &str) -> Result<PathBuf, TempError> {
    let dir = distcc_dir(env)?.join(name);
    ensure_dir(&dir)?;
    Ok(dir)
}

/// Create `dir` with mode 0777 (the kernel applies the umask) unless it already exists.
/// Never changes the mode of an existing directory (see the module notes).
pub fn ensure_dir(dir: &Path) -> Result<(), TempError> {
    if dir.is_dir() {
        return Ok(());
    }
    match DirBuilder::new().mode(0o777).create(dir) {
        Ok(()) => Ok(()),
        // Another process won the race; that is fine.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(source) => Err(TempError::CreateDir {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// `TMPDIR` (if set and non-empty) or `/tmp`, checked to be a writable directory.
pub fn tmp_dir(env: &dyn Env) -> Result<PathBuf, TempError> {
    let dir = env
        .var_os("TMPDIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    check_writable_dir(&dir).map_err(|source| TempError::BadTmpDir {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

fn check_writable_dir(dir: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Make a new empty file `$TMPDIR/<prefix>_XXXXXXXX<suffix>` (8 random hex digits) with
/// `O_EXCL` and mode 0600, in the real process environment's temp dir. The suffix matters:
/// compilers choose the language from it (`.i`, `.ii`, `.o`). The caller owns the file and
/// must delete it.
pub fn make_temp_file(prefix: &str, suffix: &str) -> Result<PathBuf, TempError> {
    make_temp_file_in(&tmp_dir(&ProcessEnv)?, prefix, suffix)
}

/// [`make_temp_file`] in an explicit directory.
pub fn make_temp_file_in(dir: &Path, prefix: &str, suffix: &str) -> Result<PathBuf, TempError> {
    create_unique(dir, prefix, suffix, "file", |path| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map(drop)
    })
}

/// Make a new directory `$TMPDIR/<prefix>_XXXXXXXX` with mode 0700 (pump mode and the
/// daemon keep whole trees of received files in one).
pub fn make_temp_dir(prefix: &str) -> Result<PathBuf, TempError> {
    make_temp_dir_in(&tmp_dir(&ProcessEnv)?, prefix)
}

/// [`make_temp_dir`] in an explicit directory.
pub fn make_temp_dir_in(dir: &Path, prefix: &str) -> Result<PathBuf, TempError> {
    create_unique(dir, prefix, "", "directory", |path| {
        DirBuilder::new().mode(0o700).create(path)
    })
}

/// Try random names until `create` succeeds; `create` must fail with `AlreadyExists` when
/// the name is taken (O_EXCL / mkdir semantics), which is what makes this race-free.
fn create_unique(
    dir: &Path,
    prefix: &str,
    suffix: &str,
    what: &'static str,
    create: impl Fn(&Path) -> io::Result<()>,
) -> Result<PathBuf, TempError> {
    let mut last_err = io::Error::new(io::ErrorKind::AlreadyExists, "no free name found");
    for _ in 0..1000 {
        let mut name = OsString::from(prefix);
        name.push(format!("_{:08x}", random_u32()));
        name.push(OsStr::new(suffix));
        let path = dir.join(name);
        match create(&path) {
            Ok(()) => {
                log::trace!("created temporary {what} {}", path.display());
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = e,
            Err(source) => {
                return Err(TempError::CreateTemp {
                    what,
                    dir: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
    Err(TempError::CreateTemp {
        what,
        dir: dir.to_path_buf(),
        source: last_err,
    })
}

/// A cheap non-cryptographic random number: the names only need to be unlikely to
/// collide (O_EXCL handles the rest), so pid, clock and a counter mixed by SplitMix64 do.
pub(crate) fn random_u32() -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) as u32
}

/// Temporary files and directories of one job, removed when this is dropped (or by
/// [`TempCleanup::cleanup`]) unless `DISTCC_SAVE_TEMPS=1` asked to keep them, like
/// distcc 3.4's cleanup list. Directories are removed recursively.
#[derive(Debug, Default)]
pub struct TempCleanup {
    paths: Vec<PathBuf>,
    keep: bool,
}

impl TempCleanup {
    /// An empty list; `keep` is true when temp files must be left for debugging.
    pub fn new(keep: bool) -> TempCleanup {
        TempCleanup {
            paths: Vec::new(),
            keep,
        }
    }

    /// [`TempCleanup::new`] with `keep` from `DISTCC_SAVE_TEMPS` (set to `1`).
    pub fn from_env(env: &dyn Env) -> TempCleanup {
        TempCleanup::new(env.var_os("DISTCC_SAVE_TEMPS").is_some_and(|v| v == "1"))
    }

    /// Remember `path` for removal.
    pub fn add(&mut self, path: PathBuf) {
        self.paths.push(path);
    }

    /// [`make_temp_file_in`] and remember the result.
    pub fn temp_file_in(
        &mut self,
        dir: &Path,
        prefix: &str,
        suffix: &str,
    ) -> Result<PathBuf, TempError> {
        let p = make_temp_file_in(dir, prefix, suffix)?;
        self.add(p.clone());
        Ok(p)
    }

    /// [`make_temp_dir_in`] and remember the result.
    pub fn temp_dir_in(&mut self, dir: &Path, prefix: &str) -> Result<PathBuf, TempError> {
        let p = make_temp_dir_in(dir, prefix)?;
        self.add(p.clone());
        Ok(p)
    }

    /// The remembered paths, oldest first.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Remove everything remembered (newest first, so files go before their directories),
    /// or with `DISTCC_SAVE_TEMPS` just log what is kept. Errors are logged, not returned:
    /// a leftover temp file must never fail a build.
    pub fn cleanup(&mut self) {
        for p in self.paths.drain(..).rev() {
            if self.keep {
                log::info!("keeping temporary {}", p.display());
                continue;
            }
            let r = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            match r {
                Ok(()) => log::trace!("removed {}", p.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("failed to remove {}: {e}", p.display()),
            }
        }
    }
}

impl Drop for TempCleanup {
    fn drop(&mut self) {
        self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn explicit_distcc_dir_is_used_and_not_created() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("nonexistent");
        let e = env(&[("DISTCC_DIR", d.to_str().unwrap()), ("HOME", "/nowhere")]);
        assert_eq!(distcc_dir(&e).unwrap(), d);
        assert!(!d.exists());
    }

    #[test]
    fn home_distcc_is_created() {
        let t = tempfile::tempdir().unwrap();
        let e = env(&[("HOME", t.path().to_str().unwrap())]);
        let d = distcc_dir(&e).unwrap();
        assert_eq!(d, t.path().join(".distcc"));
        assert!(d.is_dir());
    }

    #[test]
    fn no_home_no_dir_is_an_error() {
        let e = env(&[]);
        assert!(matches!(distcc_dir(&e), Err(TempError::NoHome)));
        let e = env(&[("DISTCC_DIR", ""), ("HOME", "")]);
        assert!(matches!(lock_dir(&e), Err(TempError::NoHome)));
    }

    #[test]
    fn lock_and_state_dirs_are_created_without_chmod_of_existing() {
        let t = tempfile::tempdir().unwrap();
        let e = env(&[("DISTCC_DIR", t.path().to_str().unwrap())]);
        let lock = lock_dir(&e).unwrap();
        assert_eq!(lock, t.path().join("lock"));
        assert!(lock.is_dir());
        // A pre-existing group-writable (setgid) state dir keeps its mode.
        let state = t.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o2775)).unwrap();
        assert_eq!(state_dir(&e).unwrap(), state);
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o2775);
    }

    #[test]
    fn tmp_dir_must_exist() {
        let t = tempfile::tempdir().unwrap();
        let e = env(&[("TMPDIR", t.path().to_str().unwrap())]);
        assert_eq!(tmp_dir(&e).unwrap(), t.path());
        let e = env(&[("TMPDIR", "/nonexistent/for/sure")]);
        assert!(matches!(tmp_dir(&e), Err(TempError::BadTmpDir { .. })));
        let e = env(&[]);
        assert_eq!(tmp_dir(&e).unwrap(), PathBuf::from("/tmp"));
    }

    #[test]
    fn temp_files_are_unique_private_and_named_like_distcc() {
        let t = tempfile::tempdir().unwrap();
        let a = make_temp_file_in(t.path(), "distcc", ".i").unwrap();
        let b = make_temp_file_in(t.path(), "distcc", ".i").unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("distcc_") && name.ends_with(".i"),
            "{name}"
        );
        let hex = &name["distcc_".len()..name.len() - 2];
        assert_eq!(hex.len(), 8);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
        let meta = std::fs::metadata(&a).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 0);
    }

    #[test]
    fn temp_dirs_are_private() {
        let t = tempfile::tempdir().unwrap();
        let d = make_temp_dir_in(t.path(), "distccd").unwrap();
        let meta = std::fs::metadata(&d).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert!(
            d.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("distccd_")
        );
    }

    #[test]
    fn temp_file_in_missing_dir_fails() {
        let r = make_temp_file_in(Path::new("/nonexistent/dir"), "x", ".o");
        assert!(matches!(r, Err(TempError::CreateTemp { .. })));
    }

    #[test]
    fn cleanup_removes_or_keeps() {
        let t = tempfile::tempdir().unwrap();
        let (f, d);
        {
            let mut c = TempCleanup::new(false);
            f = c.temp_file_in(t.path(), "distcc", ".i").unwrap();
            d = c.temp_dir_in(t.path(), "distcc").unwrap();
            std::fs::write(d.join("inner.h"), "x").unwrap();
            assert!(f.exists() && d.exists());
        }
        assert!(!f.exists() && !d.exists());
        let e = env(&[("DISTCC_SAVE_TEMPS", "1")]);
        let kept;
        {
            let mut c = TempCleanup::from_env(&e);
            kept = c.temp_file_in(t.path(), "distcc", ".o").unwrap();
        }
        assert!(kept.exists());
    }
}
