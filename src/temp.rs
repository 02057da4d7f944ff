//! Where distcc keeps its files: `DISTCC_DIR` (lock and state sub-directories) and the
//! temporary directory, plus a temp-file maker shaped like distcc 3.4's `tempfile.c`.
//!
//! The directories come from [`Dirs`] (read once from the environment by each applet), so
//! tests pass explicit values instead of touching the real `$HOME` or `$TMPDIR`.
//!
//! Compatibility notes (reference §2.2, Gentoo notes):
//! * `DISTCC_DIR` (or the default `$HOME/.distcc`) is created on demand, with its parents.
//!   distcc 3.4 creates only the default, and with a missing explicit one fails to lock and
//!   compiles everything locally; users set `DISTCC_DIR` in make.conf and expect it to work.
//! * Sub-directories (`lock`, `state`, …) are created with mode `0777` filtered by the umask
//!   and an existing directory is never chmod-ed: Portage prepares them group-writable for
//!   the `portage` group and a chmod would break sharing.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::settings::Dirs;

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

/// `DISTCC_DIR`, or `$HOME/.distcc`; created (with its parents) if missing.
pub(crate) fn distcc_dir(dirs: &Dirs) -> Result<PathBuf, TempError> {
    let dir = distcc_dir_path(dirs)?;
    ensure_dir(&dir)?;
    Ok(dir)
}

/// `$DISTCC_DIR/lock`, created on demand: slot locks and backoff files live here.
pub(crate) fn lock_dir(dirs: &Dirs) -> Result<PathBuf, TempError> {
    sub_dir(dirs, "lock")
}

/// `$DISTCC_DIR/state`, created on demand: `binstate_<pid>` files for distccmon-text.
pub fn state_dir(dirs: &Dirs) -> Result<PathBuf, TempError> {
    sub_dir(dirs, "state")
}

/// `$DISTCC_DIR/<name>`, created on demand.
///
/// Only the sub-directory is looked at: creating it creates `DISTCC_DIR` too (with the
/// same mode rule), and when it exists so does its parent, so a job does not stat
/// `DISTCC_DIR` once more for each sub-directory it uses.
pub(crate) fn sub_dir(dirs: &Dirs, name: &str) -> Result<PathBuf, TempError> {
    let parent = distcc_dir_path(dirs)?;
    let dir = parent.join(name);
    ensure_dir(&dir)?;
    // Its parent is there too: a later `distcc_dir` need not look.
    remember_ensured(&parent);
    Ok(dir)
}

/// `$DISTCC_DIR/<name>`, not looked at: for a directory whose files are opened first
/// and which is made only when that fails ([`in_dir`]), so the usual job (the directory
/// is there) spends no `stat` on it.
pub(crate) fn sub_dir_path(dirs: &Dirs, name: &str) -> Result<PathBuf, TempError> {
    Ok(distcc_dir_path(dirs)?.join(name))
}

/// Run `op`, which creates a file in `dir`; if it fails because `dir` (or its parent) is
/// missing, make `dir` ([`ensure_dir`]) and run it once more.
pub(crate) fn in_dir<T>(dir: &Path, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    match op() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            ensure_dir(dir).map_err(|e| match e {
                TempError::CreateDir { source, .. } => source,
                other => io::Error::other(other.to_string()),
            })?;
            op()
        }
        r => r,
    }
}

/// `DISTCC_DIR`, or `$HOME/.distcc`, without looking at the disk.
fn distcc_dir_path(dirs: &Dirs) -> Result<PathBuf, TempError> {
    match &dirs.distcc_dir {
        Some(dir) => Ok(dir.clone()),
        None => Ok(dirs.home.as_ref().ok_or(TempError::NoHome)?.join(".distcc")),
    }
}

/// The directories this process has already made sure of ([`ensure_dir`]): a client job
/// asks for `DISTCC_DIR`'s sub-directories from several places (state, lock, cache, ext,
/// race, record…), and one `stat` per directory per process is enough. Not for a
/// directory removed under a running process; the open that follows then fails and says
/// so, as it would have if the directory went a moment after the check.
static ENSURED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Bound on [`ENSURED`] (a job uses a handful of directories; a daemon's temporary
/// directories are not ensured through here, but a bound keeps any caller's memory flat).
const MAX_ENSURED: usize = 64;

/// Create `dir` with mode 0777 (the kernel applies the umask) unless it already exists.
/// Never changes the mode of an existing directory (see the module notes). Looked at once
/// per process ([`ENSURED`]).
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), TempError> {
    let ensured = |d: &Path| {
        ENSURED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|e| e == d)
    };
    if ensured(dir) {
        return Ok(());
    }
    let made = if dir.is_dir() {
        Ok(())
    } else {
        match DirBuilder::new().mode(0o777).recursive(true).create(dir) {
            Ok(()) => Ok(()),
            // Another process won the race; that is fine.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
            Err(source) => Err(TempError::CreateDir {
                path: dir.to_path_buf(),
                source,
            }),
        }
    };
    if made.is_ok() {
        remember_ensured(dir);
    }
    made
}

fn remember_ensured(dir: &Path) {
    let mut list = ENSURED.lock().unwrap_or_else(|p| p.into_inner());
    if list.iter().any(|e| e == dir) {
        return;
    }
    if list.len() >= MAX_ENSURED {
        list.clear();
    }
    list.push(dir.to_path_buf());
}

/// `TMPDIR` (if set and non-empty) or `/tmp`, checked to be a writable directory.
/// Checked once per process: a client job makes two or three temporary files there.
pub(crate) fn tmp_dir(dirs: &Dirs) -> Result<PathBuf, TempError> {
    static CHECKED: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let dir = dirs.tmp();
    if CHECKED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|c| *c == dir)
    {
        return Ok(dir);
    }
    check_writable_dir(&dir).map_err(|source| TempError::BadTmpDir {
        path: dir.clone(),
        source,
    })?;
    *CHECKED.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir.clone());
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

/// Make a new empty file `<dir>/<prefix>XXXXXXXX<suffix>` (8 random characters) with
/// `O_EXCL` and mode 0600. The suffix matters: compilers choose the language from it (`.i`,
/// `.ii`, `.o`). The caller owns the file and must delete it.
pub(crate) fn make_temp_file_in(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> Result<PathBuf, TempError> {
    create_temp_file_in(dir, prefix, suffix).map(|(path, _)| path)
}

/// [`make_temp_file_in`], with the descriptor it was created with (open for reading and
/// writing): a caller that writes the file uses it instead of opening the name again.
pub(crate) fn create_temp_file_in(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> Result<(PathBuf, std::fs::File), TempError> {
    let named = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .rand_bytes(8)
        .tempfile_in(dir)
        .map_err(|source| TempError::CreateTemp {
            what: "file",
            dir: dir.to_path_buf(),
            source,
        })?;
    let (file, path) = named.keep().map_err(|e| TempError::CreateTemp {
        what: "file",
        dir: dir.to_path_buf(),
        source: e.error,
    })?;
    log::trace!("created temporary file {}", path.display());
    Ok((path, file))
}

/// Make a new directory `<dir>/<prefix>XXXXXXXX` with mode 0700 (the daemon keeps a job's
/// files in one, the pump applet its socket). The caller owns it and must remove it.
pub fn make_temp_dir_in(dir: &Path, prefix: &str) -> Result<PathBuf, TempError> {
    // tempfile makes directories with the umask's default mode; ours are private.
    let made = tempfile::Builder::new()
        .prefix(prefix)
        .rand_bytes(8)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(dir)
        .map_err(|source| TempError::CreateTemp {
            what: "directory",
            dir: dir.to_path_buf(),
            source,
        })?;
    let path = made.keep();
    log::trace!("created temporary directory {}", path.display());
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A job asks for `DISTCC_DIR`'s sub-directories from several places; each is looked
    /// at once per process. (A directory removed afterwards is not made again: the open
    /// that follows fails and says so.)
    #[test]
    fn sub_dirs_are_looked_at_once_per_process() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("dd");
        let dirs = Dirs::at(&d);
        let ext = sub_dir(&dirs, "ext").unwrap();
        assert!(ext.is_dir(), "made with its parent");
        std::fs::remove_dir(&ext).unwrap();
        assert_eq!(sub_dir(&dirs, "ext").unwrap(), ext);
        assert!(!ext.exists(), "not looked at again");
        assert_eq!(distcc_dir(&dirs).unwrap(), d);
        // Another sub-directory is still made.
        assert!(sub_dir(&dirs, "race").unwrap().is_dir());
    }

    /// A file is created first; its directory (with parents) only when that fails.
    #[test]
    fn in_dir_makes_the_directory_only_when_missing() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("dd/record");
        let mut tries = 0;
        let f = in_dir(&dir, || {
            tries += 1;
            std::fs::File::create(dir.join("sid"))
        });
        assert!(f.is_ok());
        assert_eq!(tries, 2);
        assert!(dir.join("sid").is_file());
        // Another error is not a missing directory: no retry, nothing made.
        let mut tries = 0;
        let r: io::Result<()> = in_dir(&t.path().join("other"), || {
            tries += 1;
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        });
        assert!(r.is_err());
        assert_eq!(tries, 1);
        assert!(!t.path().join("other").exists());
    }

    /// The descriptor a temp file was created with is the caller's to write through.
    #[test]
    fn temp_files_come_with_their_descriptor() {
        use std::io::Write;
        let t = tempfile::tempdir().unwrap();
        let (path, mut file) = create_temp_file_in(t.path(), "x_", ".i").unwrap();
        file.write_all(b"int x;\n").unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"int x;\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(path.file_name().unwrap().to_str().unwrap().ends_with(".i"));
    }

    #[test]
    fn explicit_distcc_dir_is_created_with_its_parents() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("var/tmp/portage/.distcc");
        let dirs = Dirs {
            home: Some("/nowhere".into()),
            ..Dirs::at(&d)
        };
        assert_eq!(lock_dir(&dirs).unwrap(), d.join("lock"));
        assert!(d.join("lock").is_dir());
    }

    #[test]
    fn home_distcc_is_created() {
        let t = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            home: Some(t.path().to_path_buf()),
            ..Dirs::default()
        };
        let d = distcc_dir(&dirs).unwrap();
        assert_eq!(d, t.path().join(".distcc"));
        assert!(d.is_dir());
    }

    #[test]
    fn no_home_no_dir_is_an_error() {
        assert!(matches!(
            distcc_dir(&Dirs::default()),
            Err(TempError::NoHome)
        ));
        assert!(matches!(lock_dir(&Dirs::default()), Err(TempError::NoHome)));
    }

    #[test]
    fn lock_and_state_dirs_are_created_without_chmod_of_existing() {
        let t = tempfile::tempdir().unwrap();
        let dirs = Dirs::at(t.path());
        let lock = lock_dir(&dirs).unwrap();
        assert_eq!(lock, t.path().join("lock"));
        assert!(lock.is_dir());
        // A pre-existing group-writable (setgid) state dir keeps its mode.
        let state = t.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o2775)).unwrap();
        assert_eq!(state_dir(&dirs).unwrap(), state);
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o2775);
    }

    #[test]
    fn tmp_dir_must_exist() {
        let t = tempfile::tempdir().unwrap();
        let with = |p: &str| Dirs {
            tmpdir: Some(p.into()),
            ..Dirs::default()
        };
        assert_eq!(
            tmp_dir(&with(t.path().to_str().unwrap())).unwrap(),
            t.path()
        );
        assert!(matches!(
            tmp_dir(&with("/nonexistent/for/sure")),
            Err(TempError::BadTmpDir { .. })
        ));
        assert_eq!(tmp_dir(&Dirs::default()).unwrap(), PathBuf::from("/tmp"));
    }

    #[test]
    fn temp_files_are_unique_private_and_named_like_distcc() {
        let t = tempfile::tempdir().unwrap();
        let a = make_temp_file_in(t.path(), "distcc_", ".i").unwrap();
        let b = make_temp_file_in(t.path(), "distcc_", ".i").unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        let random = name
            .strip_prefix("distcc_")
            .and_then(|r| r.strip_suffix(".i"))
            .unwrap();
        assert_eq!(random.len(), 8, "{name}");
        let meta = std::fs::metadata(&a).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 0);
        // Kept: the caller owns it.
        assert!(a.exists() && b.exists());
    }

    #[test]
    fn temp_dirs_are_private_and_kept() {
        let t = tempfile::tempdir().unwrap();
        let d = make_temp_dir_in(t.path(), "distccd_").unwrap();
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
}
