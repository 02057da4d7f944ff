//! The `update-distcc-symlinks` applet: Debian's tool (shipped with distcc 3.4) that keeps
//! the masquerade dir `/usr/lib/distcc` in step with the compilers installed in `/usr/bin`.
//! distccd's compiler whitelist is that dir, so a compiler without a link there is refused.
//!
//! The names are the ones Debian's tool considers, each linked only when `/usr/bin/NAME` is
//! executable: `cc`, `c++`, `gcc`, `g++`, `c89-gcc`, `c89-g++`, `c99-gcc`, `c99-g++`; for
//! every entry KIND of `/usr/lib/gcc`, `/usr/lib/gcc-cross` and `/usr/lib/*/gcc`,
//! `KIND-gcc`/`KIND-g++`, and for every real directory VERSION below it, `gcc-VERSION`,
//! `g++-VERSION`, `KIND-gcc-VERSION`, `KIND-g++-VERSION`; `[llvm-]clang[++][-N]` found in
//! `/usr/bin`; `nvcc`. Links are `../../bin/distcc`; links to distcc whose compiler is gone
//! from `/usr/bin` are removed (other entries, such as `bin -> .`, are left alone).
//!
//! Ours: `--dir DIR` maintains DIR instead of `/usr/lib/distcc` (`make install` uses it on
//! its staging dir), `-v`/`--verbose` says what changes, and `DISTCC_CONFIG_ROOT` prefixes
//! every system path as it does for `distcc-config`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use distcc::settings::{ConfigEnv, ProcessEnv};

/// What the links point at, relative to `PREFIX/lib/distcc`.
const TARGET: &str = "../../bin/distcc";

const USAGE: &str = "Usage: update-distcc-symlinks [-v|--verbose] [--dir DIR]
Link every compiler installed in /usr/bin that distcc can stand in for into
/usr/lib/distcc (or DIR), and remove links whose compiler is gone. distccd only
runs compilers that have a link there.
";

fn executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Entries of `dir`, sorted; nothing when it cannot be read.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `[llvm-]clang[++][-N[.N…]]`.
fn is_clang_name(name: &str) -> bool {
    let rest = name.strip_prefix("llvm-").unwrap_or(name);
    let Some(rest) = rest.strip_prefix("clang") else {
        return false;
    };
    let rest = rest.strip_prefix("++").unwrap_or(rest);
    match rest.strip_prefix('-') {
        None => rest.is_empty(),
        Some(v) => !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'),
    }
}

/// The compiler names that should have a link: those Debian's tool considers that are
/// executable in `root/usr/bin`.
pub(crate) fn wanted(root: &Path) -> BTreeSet<String> {
    let bin = root.join("usr/bin");
    let mut candidates: Vec<String> = vec!["cc".into(), "c++".into()];
    let mut gcc = |prefix: &str, suffix: &str| {
        candidates.push(format!("{prefix}gcc{suffix}"));
        candidates.push(format!("{prefix}g++{suffix}"));
    };
    gcc("", "");
    gcc("c89-", "");
    gcc("c99-", "");
    let mut gcc_dirs = vec![root.join("usr/lib/gcc"), root.join("usr/lib/gcc-cross")];
    // Debian names its own multiarch dir (`/usr/lib/x86_64-linux-gnu/gcc`); any arch's counts.
    gcc_dirs.extend(
        entries(&root.join("usr/lib"))
            .into_iter()
            .map(|d| d.join("gcc"))
            .filter(|d| d.is_dir()),
    );
    for gcc_dir in gcc_dirs {
        for kind_dir in entries(&gcc_dir) {
            let kind = name_of(&kind_dir);
            gcc(&format!("{kind}-"), "");
            for v in entries(&kind_dir) {
                let real_dir = fs::symlink_metadata(&v).is_ok_and(|m| m.is_dir());
                if real_dir {
                    let version = name_of(&v);
                    gcc("", &format!("-{version}"));
                    gcc(&format!("{kind}-"), &format!("-{version}"));
                }
            }
        }
    }
    candidates.extend(
        entries(&bin)
            .iter()
            .map(|p| name_of(p))
            .filter(|n| n.contains("clang") && is_clang_name(n)),
    );
    candidates.push("nvcc".into());
    candidates
        .into_iter()
        .filter(|n| executable(&bin.join(n)))
        .collect()
}

/// Whether `link` is one of ours: a symlink whose target's last component is `distcc`.
fn links_to_distcc(link: &Path) -> bool {
    fs::read_link(link).is_ok_and(|t| t.file_name().is_some_and(|n| n == "distcc"))
}

/// Bring `dir` in step with `root/usr/bin`; returns what changed, for `--verbose`.
pub(crate) fn update(root: &Path, dir: &Path) -> Result<Vec<String>, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let want = wanted(root);
    let bin = root.join("usr/bin");
    let mut changes = Vec::new();
    for entry in entries(dir) {
        let name = name_of(&entry);
        if links_to_distcc(&entry) && !bin.join(&name).exists() {
            fs::remove_file(&entry).map_err(|e| format!("{}: {e}", entry.display()))?;
            changes.push(format!("Removing {}", entry.display()));
        }
    }
    for name in want {
        let link = dir.join(&name);
        if fs::symlink_metadata(&link).is_ok() {
            continue;
        }
        symlink(TARGET, &link).map_err(|e| format!("{}: {e}", link.display()))?;
        changes.push(format!("Adding {}", link.display()));
    }
    Ok(changes)
}

/// Entry point; returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let args = crate::text_args(&args);
    let env = ConfigEnv::from_env(&ProcessEnv);
    let mut verbose = false;
    let mut dir: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return 0;
            }
            "--version" => {
                print!("{}", distcc::version_text("update-distcc-symlinks"));
                return 0;
            }
            "-v" | "--verbose" => verbose = true,
            "--dir" => match it.next() {
                Some(d) => dir = Some(PathBuf::from(d)),
                None => {
                    eprintln!("update-distcc-symlinks: --dir needs a directory\n{USAGE}");
                    return 1;
                }
            },
            other => match other.strip_prefix("--dir=") {
                Some(d) => dir = Some(PathBuf::from(d)),
                None => {
                    eprintln!("update-distcc-symlinks: unknown argument {other:?}\n{USAGE}");
                    return 1;
                }
            },
        }
    }
    let dir = dir.unwrap_or_else(|| env.root.join("usr/lib/distcc"));
    match update(&env.root, &dir) {
        Ok(changes) => {
            if verbose {
                for c in changes {
                    println!("{c}");
                }
            }
            0
        }
        Err(e) => {
            eprintln!("update-distcc-symlinks: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "").unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn clang_names() {
        for yes in ["clang", "clang++", "clang-17", "clang++-14.0", "llvm-clang"] {
            assert!(is_clang_name(yes), "{yes}");
        }
        for no in [
            "clang-tidy",
            "clang-format-17",
            "clangd",
            "clang-",
            "xclang",
        ] {
            assert!(!is_clang_name(no), "{no}");
        }
    }

    #[test]
    fn links_debians_set_and_prunes_stale_links() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for n in [
            "cc",
            "gcc",
            "gcc-13",
            "aarch64-linux-gnu-gcc",
            "aarch64-linux-gnu-gcc-13",
            "c89-gcc",
            "clang-17",
            "clang-format",
            "c99",
            "ld",
        ] {
            exe(&r.join("usr/bin").join(n));
        }
        fs::create_dir_all(r.join("usr/lib/gcc/x86_64-linux-gnu/13")).unwrap();
        fs::create_dir_all(r.join("usr/lib/gcc-cross/aarch64-linux-gnu/13")).unwrap();
        symlink("13", r.join("usr/lib/gcc/x86_64-linux-gnu/13.2")).unwrap();
        let dir = r.join("usr/lib/distcc");
        fs::create_dir_all(&dir).unwrap();
        symlink(TARGET, dir.join("g++-9")).unwrap();
        symlink(".", dir.join("bin")).unwrap();
        let changes = update(r, &dir).unwrap();
        assert!(
            changes
                .iter()
                .any(|c| c.starts_with("Removing") && c.ends_with("g++-9"))
        );
        let mut names: Vec<String> = entries(&dir).iter().map(|p| name_of(p)).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "aarch64-linux-gnu-gcc",
                "aarch64-linux-gnu-gcc-13",
                "bin",
                "c89-gcc",
                "cc",
                "clang-17",
                "gcc",
                "gcc-13"
            ]
        );
        assert_eq!(fs::read_link(dir.join("gcc")).unwrap(), Path::new(TARGET));
        // Idempotent.
        assert!(update(r, &dir).unwrap().is_empty());
    }
}
