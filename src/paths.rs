//! Path facts and PATH lookup, said once: base names, extensions, gcc's rule for derived
//! `.o`/`.d` names, lexical normalisation, and finding an executable on a PATH.
//!
//! It exists so that the argument scanner, the client, the pump and the applets share one
//! answer to each of these questions instead of each keeping a copy that drifts. It is the
//! bottom layer: every module may import it, and it imports nothing of ours, so it can never
//! be part of an import cycle.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

/// The last component of `path` as text (lossy for names that are not UTF-8), or the whole
/// of `path` when it has none (`/`, `..`, the empty string).
pub fn basename<P: AsRef<Path> + ?Sized>(path: &P) -> String {
    let p = path.as_ref();
    p.file_name()
        .unwrap_or(p.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// The extension of `path`'s last component, without the dot. A leading dot does not start
/// an extension (`.c` has none), as in [`Path::extension`]; unlike it, text only.
pub(crate) fn extension(path: &str) -> Option<&str> {
    let name = Path::new(path).file_name()?.to_str()?;
    let dot = name.rfind('.')?;
    (dot > 0).then(|| name.get(dot + 1..)).flatten()
}

/// Replace `path`'s extension with `new` (or add one): gcc's rule for the `.o` and `.d`
/// names it derives from a source or an output (`sub/a.c` → `sub/a.d`, `a` → `a.d`).
pub(crate) fn with_ext(path: &str, new: &str) -> String {
    let stem = extension(path)
        .and_then(|e| path.strip_suffix(e))
        .and_then(|p| p.strip_suffix('.'))
        .unwrap_or(path);
    format!("{stem}.{new}")
}

/// Remove `.` and resolve `..` lexically, without touching the disk (gcc prints e.g.
/// `…/12/../../../../include`; masquerade mode compares PATH entries spelled differently).
pub(crate) fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether `p` is a regular file with an execute bit set (what a PATH search accepts).
pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Find an executable on a PATH string (nothing is found without one). A name with a `/`
/// is taken as it is, as execvp does. A directory listed twice on PATH is looked in once
/// (the first time decides).
pub(crate) fn which(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let mut seen: Vec<PathBuf> = Vec::new();
    std::env::split_paths(path?)
        .filter(|d| {
            let new = !seen.contains(d);
            if new {
                seen.push(d.clone());
            }
            new
        })
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// What [`which_once`] found, by name and PATH.
type Found = Vec<((String, Option<std::ffi::OsString>), Option<PathBuf>)>;

/// [`which_once`]'s answers so far.
static FOUND: std::sync::Mutex<Found> = std::sync::Mutex::new(Vec::new());

/// Bound on [`FOUND`]: a client job asks about two or three names.
const MAX_FOUND: usize = 32;

/// [`which`], answered once per process for each name and PATH, misses included. For
/// the client, whose job asks for its compiler from several places (the rewriting of
/// `gcc` to `<triple>-gcc`, the preprocessor's mode, the identity, running cpp), each of
/// which would otherwise walk PATH again — a failed stat per directory before the hit.
/// Not for a long-lived process (the daemon), which must see a compiler installed under it.
pub(crate) fn which_once(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let key = (name.to_string(), path.map(OsStr::to_os_string));
    {
        let found = FOUND.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, answer)) = found.iter().find(|(k, _)| *k == key) {
            return answer.clone();
        }
    }
    let answer = which(name, path);
    let mut found = FOUND.lock().unwrap_or_else(|p| p.into_inner());
    if found.len() >= MAX_FOUND {
        found.clear();
    }
    found.push((key, answer.clone()));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn base_names() {
        assert_eq!(basename("sub/a.c"), "a.c");
        assert_eq!(basename("a.c"), "a.c");
        assert_eq!(basename("/usr/bin/distcc"), "distcc");
        assert_eq!(basename("dir/"), "dir");
        assert_eq!(basename("/"), "/");
        assert_eq!(basename(""), "");
        let latin1 = OsString::from_vec(b"/x/caf\xe9".to_vec());
        assert_eq!(basename(&latin1), "caf\u{fffd}");
        assert_eq!(basename(Path::new("/a/b")), "b");
    }

    #[test]
    fn extensions_and_derived_names() {
        assert_eq!(extension("sub.d/a.c"), Some("c"));
        assert_eq!(extension("sub.d/a"), None);
        assert_eq!(extension(".c"), None);
        assert_eq!(extension("a."), Some(""));
        assert_eq!(with_ext("sub/a.c", "d"), "sub/a.d");
        assert_eq!(with_ext("sub.x/a", "o"), "sub.x/a.o");
        assert_eq!(with_ext("a.tar.gz", "d"), "a.tar.d");
        assert_eq!(with_ext(".c", "d"), ".c.d");
        assert_eq!(with_ext("a.", "d"), "a.d");
    }

    /// The pump kept its own `with_ext` built on [`Path::with_extension`]; ours must give
    /// the same names for what it is used on (outputs and source names).
    #[test]
    fn with_ext_agrees_with_path_with_extension() {
        for p in [
            "a.c",
            "sub/a.c",
            "./a.c",
            "o/a.o",
            "a",
            "sub.x/a",
            "a.tar.gz",
            ".c",
            "x/.hidden",
            "a..c",
            "a.",
            "dir/a.C",
            "a.c++",
        ] {
            let std = Path::new(p).with_extension("d").display().to_string();
            assert_eq!(with_ext(p, "d"), std, "{p}");
        }
    }

    #[test]
    fn lexical_normalisation() {
        assert_eq!(
            normalise(Path::new("/usr/lib/gcc/x/12/../../../../include")),
            Path::new("/usr/include")
        );
        assert_eq!(normalise(Path::new("a/./b/../c")), Path::new("a/c"));
    }

    #[test]
    fn finds_executables_on_a_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("cc"), "").unwrap();
        std::fs::write(b.join("cc"), "").unwrap();
        std::fs::set_permissions(b.join("cc"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(which("cc", Some(&path)), Some(b.join("cc")));
        assert_eq!(which("nope", Some(&path)), None);
        assert_eq!(which("./cc", Some(&path)), Some(PathBuf::from("./cc")));
        assert!(!is_executable(&a.join("cc")));
        assert!(!is_executable(&a));
    }

    /// A client job asks for its compiler several times; the PATH is walked once per name
    /// (misses too), so a compiler installed meanwhile is not seen by `which_once`.
    #[test]
    fn which_once_walks_path_once_per_name() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().as_os_str().to_os_string();
        let cc = dir.path().join("memo-cc");
        let other = dir.path().join("memo-cc-2");
        assert_eq!(which_once("memo-cc", Some(&path)), None);
        for p in [&cc, &other] {
            std::fs::write(p, "").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(which("memo-cc", Some(&path)), Some(cc.clone()));
        assert_eq!(
            which_once("memo-cc", Some(&path)),
            None,
            "the miss is remembered"
        );
        assert_eq!(which_once("memo-cc-2", Some(&path)), Some(other.clone()));
        std::fs::remove_file(&other).unwrap();
        assert_eq!(which_once("memo-cc-2", Some(&path)), Some(other));
        // Another PATH is another question.
        let twice = std::env::join_paths([dir.path(), dir.path()]).unwrap();
        assert_eq!(which_once("memo-cc", Some(&twice)), Some(cc));
    }
}
