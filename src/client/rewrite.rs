//! Compiler rewriting (distcc 3.4 §2.7, with upstream HEAD's `-dumpmachine`): so that the
//! server runs the same compiler we would, not whatever `cc` or `gcc` means there.
//! * `cc`/`c++` → the gcc/g++/clang/clang++ that PATH's `cc` links to;
//! * `gcc`, `g++`, `gcc-N`, `g++-N` → `<triple>-<name>` if that is on PATH;
//! * `clang…` without `-target`/`--target=` → `-target <triple>` appended.
//!
//! It lives in the client, not in the argument scanner, because it looks at the disk and
//! runs the compiler.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{Command, Stdio};

use super::invocation::Invocation;
use crate::paths::{basename, which};

/// The command line to scan for `inv`: the user's, with the compiler rewritten unless
/// `DISTCC_NO_REWRITE_CROSS` is set (any value) or we are a nested distcc (safeguard > 0),
/// which runs what the outer one already rewrote.
pub(crate) fn for_job(inv: &Invocation) -> Vec<String> {
    let mut argv = inv.argv.clone();
    if inv.nested() || std::env::var_os("DISTCC_NO_REWRITE_CROSS").is_some() {
        return argv;
    }
    if let Some(triple) = rewrite_compiler(&mut argv, inv.path.as_deref(), &inv.child_env())
        && argv.first().is_some_and(|c| c.starts_with("clang"))
    {
        argv.extend(["-target".to_string(), triple]);
    }
    argv
}

/// Rewrite `argv[0]` (see the module notes) and return the compiler's target triple, when
/// it is a gcc or a clang without an explicit target. `path` is the PATH children see.
///
/// `child_env` must carry `_DISTCC_SAFEGUARD`: the `-dumpmachine` probe may start a
/// masquerading distcc, which without it would probe again, forever.
pub(crate) fn rewrite_compiler(
    argv: &mut [String],
    path: Option<&OsStr>,
    child_env: &[(OsString, OsString)],
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
    let triple = probe(&program, child_env)?;
    if is_gcc {
        let full = format!("{triple}-{name}");
        if which(&full, path).is_some() {
            log::debug!("rewriting {name} to {full}");
            argv[0] = full;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
        rewrite_compiler(&mut a, Some(path), &[]);
        assert_eq!(a[0], "mips-linux-gnu-gcc");
        let mut a = v("clang -c x.c");
        assert_eq!(
            rewrite_compiler(&mut a, Some(path), &[]).as_deref(),
            Some("arm-none-eabi")
        );
        let mut a = v("clang -target x -c x.c");
        assert_eq!(rewrite_compiler(&mut a, Some(path), &[]), None);
        let mut a = v("/usr/bin/gcc -c x.c");
        rewrite_compiler(&mut a, Some(path), &[]);
        assert_eq!(a[0], "/usr/bin/gcc", "only bare names are rewritten");
    }
}
