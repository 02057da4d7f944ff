//! How we were called (distcc 3.4 `distcc.c`, `implicit.c`, `climasq.c`, `safeguard.c`):
//! explicit (`distcc gcc -c x.c`), implicit (`distcc -c x.c`, meaning `cc`), or masquerade
//! (the binary linked as `gcc` in a directory early in PATH). Masquerade mode must find
//! the *real* compiler, so it drops every PATH entry up to and including our own directory;
//! the `_DISTCC_SAFEGUARD` counter catches the loops that remain (a distcc link found again).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::ClientError;
use crate::args;
use crate::paths::{basename, is_executable, normalise};
use crate::settings::{ClientEnv, SAFEGUARD_VAR};

/// How the compiler was named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Explicit,
    Implicit,
    Masquerade,
}

/// A compile request as the user made it, with what children of ours need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invocation {
    pub mode: Mode,
    /// The compiler command line: argv[0] is the compiler; response files are expanded.
    pub argv: Vec<String>,
    /// The PATH compilers are found on and children see: ours, trimmed in masquerade mode
    /// up to and including our own directory.
    pub path: Option<OsString>,
    /// The recursion level we were started with (`_DISTCC_SAFEGUARD`).
    pub safeguard_level: u32,
}

impl Invocation {
    /// Whether distribution and locking must be skipped: we are a masquerading distcc
    /// called by another distcc (distcc's rule: run it locally, unlocked).
    pub(crate) fn nested(&self) -> bool {
        self.safeguard_level > 0
    }

    /// Environment additions for every compiler or cpp we start.
    pub(crate) fn child_env(&self) -> Vec<(OsString, OsString)> {
        let mut env = vec![(
            OsString::from(SAFEGUARD_VAR),
            OsString::from((self.safeguard_level + 1).to_string()),
        )];
        if let Some(p) = &self.path {
            env.push((OsString::from("PATH"), p.clone()));
        }
        env
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Help,
    Version,
    ShowHosts,
    Jobs,
    ShowPrincipal,
    /// `distcc` with nothing after it.
    MissingOperand,
    Compile(Invocation),
    /// `--explain COMPILER ARGS…`: say where the command would compile and why.
    Explain(Invocation),
    /// `distcc --scan-includes COMPILER ARGS`: show the pump include closure, compile nothing.
    ScanIncludes(Invocation),
}

/// Decide what to do from argv (argv[0] included) and the environment.
pub(crate) fn classify(argv: &[String], env: &ClientEnv) -> Result<Action, ClientError> {
    let arg0 = argv.first().map(String::as_str).unwrap_or("distcc");
    let level = env.safeguard_level;
    if basename(arg0).contains("distcc") {
        // Response files are expanded first, as distcc 3.4 (libiberty) does on its whole
        // argv: `distcc @args` can be an implicit-mode compile.
        let mut rest = expand_response_files(&argv[1..])?;
        let Some(mut first) = rest.first().cloned() else {
            return Ok(Action::MissingOperand);
        };
        match first.as_str() {
            "--help" => return Ok(Action::Help),
            "--version" => return Ok(Action::Version),
            "--show-hosts" => return Ok(Action::ShowHosts),
            "-j" => return Ok(Action::Jobs),
            "--show-principal" => return Ok(Action::ShowPrincipal),
            "--explain" => {
                let mut inner = vec![arg0.to_string()];
                inner.extend(rest.iter().skip(1).cloned());
                return match classify(&inner, env)? {
                    Action::Compile(inv) => Ok(Action::Explain(inv)),
                    Action::MissingOperand => Ok(Action::MissingOperand),
                    _ => Err(ClientError::NoCompiler),
                };
            }
            _ => {}
        }
        // `--scan-includes` is followed by the compile it is about.
        let scan_includes = first == "--scan-includes";
        if scan_includes {
            rest.remove(0);
            first = match rest.first() {
                Some(f) => f.clone(),
                None => return Err(ClientError::NoCompiler),
            };
        }
        let implicit = first.starts_with('-') || args::is_source(&first) || args::is_object(&first);
        let (mode, argv) = if implicit {
            let mut v = vec!["cc".to_string()];
            v.extend(rest);
            (Mode::Implicit, v)
        } else {
            (Mode::Explicit, rest)
        };
        if level > 0 {
            return Err(ClientError::Recursion);
        }
        let inv = Invocation {
            mode,
            argv,
            path: env.path.clone(),
            safeguard_level: level,
        };
        return Ok(if scan_includes {
            Action::ScanIncludes(inv)
        } else {
            Action::Compile(inv)
        });
    }
    // Masquerade: we are `gcc`, `cc`, `x86_64-linux-gnu-g++-12`, …
    let path = env.path.clone().unwrap_or_default();
    let trimmed = trim_path(arg0, &path, std::env::current_dir().ok().as_deref());
    let did_masquerade = u32::from(trimmed.is_some());
    if level.saturating_sub(did_masquerade) > 0 {
        return Err(ClientError::Recursion);
    }
    let mut v = vec![basename(arg0)];
    v.extend(expand_response_files(&argv[1..])?);
    Ok(Action::Compile(Invocation {
        mode: Mode::Masquerade,
        argv: v,
        path: trimmed.or_else(|| env.path.clone()),
        safeguard_level: level,
    }))
}

/// The PATH that remains after our own directory, or `None` if our directory is not on it.
///
/// If argv[0] has a `/`, our directory is its absolute dirname, compared as a string with
/// each PATH entry; otherwise it is the first PATH entry holding an executable of our name.
pub(crate) fn trim_path(
    arg0: &str,
    path: &std::ffi::OsStr,
    cwd: Option<&Path>,
) -> Option<OsString> {
    let entries: Vec<PathBuf> = std::env::split_paths(path).collect();
    let pos = if arg0.contains('/') {
        let dir = Path::new(arg0).parent().unwrap_or(Path::new("."));
        let abs = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            cwd?.join(dir)
        };
        let abs = normalise(&abs);
        entries.iter().position(|e| {
            let e = if e.is_absolute() {
                normalise(e)
            } else {
                cwd.map(|c| normalise(&c.join(e))).unwrap_or_default()
            };
            e == abs
        })?
    } else {
        entries.iter().position(|e| is_executable(&e.join(arg0)))?
    };
    std::env::join_paths(&entries[pos + 1..]).ok()
}

/// Expand `@file` words (gcc/libiberty response files): whitespace-separated words with
/// single/double quotes and backslash escapes; nested `@file`s expand too.
pub(crate) fn expand_response_files(args: &[String]) -> Result<Vec<String>, ClientError> {
    fn go(args: &[String], depth: u32, out: &mut Vec<String>) -> Result<(), ClientError> {
        for a in args {
            match a.strip_prefix('@') {
                Some(file) if depth < 10 && !file.is_empty() => match std::fs::read(file) {
                    Ok(bytes) => {
                        let text = String::from_utf8_lossy(&bytes);
                        go(&split_response(&text), depth + 1, out)?;
                    }
                    // libiberty leaves the word alone when the file cannot be read.
                    Err(_) => out.push(a.clone()),
                },
                _ => out.push(a.clone()),
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(args, 0, &mut out)?;
    Ok(out)
}

fn split_response(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', _) => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (q, Some(open)) if q == open => quote = None,
            (_, Some(_)) => cur.push(c),
            ('\'' | '"', None) => {
                quote = Some(c);
                in_word = true;
            }
            (w, None) if w.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            _ => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn response_file_words() {
        assert_eq!(
            split_response("-c  'a b.c' \"-DX=\\\"y\\\"\"\n-o\tx\\ y.o"),
            vec!["-c", "a b.c", "-DX=\"y\"", "-o", "x y.o"]
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rsp");
        std::fs::write(&f, "-O2 -c").unwrap();
        let got = expand_response_files(&[format!("@{}", f.display()), "a.c".into()]).unwrap();
        assert_eq!(got, vec!["-O2", "-c", "a.c"]);
        let missing = expand_response_files(&["@/nonexistent/x".into()]).unwrap();
        assert_eq!(missing, vec!["@/nonexistent/x"]);
    }

    #[test]
    fn trims_path_after_our_directory() {
        let dir = tempfile::tempdir().unwrap();
        let masq = dir.path().join("masq");
        std::fs::create_dir(&masq).unwrap();
        let gcc = masq.join("gcc");
        std::fs::write(&gcc, "").unwrap();
        std::fs::set_permissions(&gcc, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path =
            std::env::join_paths(["/a", masq.to_str().unwrap(), "/usr/bin", "/bin"]).unwrap();
        // By name: the first PATH entry holding an executable `gcc` is ours.
        let t = trim_path("gcc", &path, None).unwrap();
        assert_eq!(t, "/usr/bin:/bin");
        // By path, including a `./`-relative spelling.
        let t = trim_path(gcc.to_str().unwrap(), &path, None).unwrap();
        assert_eq!(t, "/usr/bin:/bin");
        let t = trim_path("./masq/gcc", &path, Some(dir.path())).unwrap();
        assert_eq!(t, "/usr/bin:/bin");
        // Not on PATH at all: nothing trimmed.
        assert_eq!(trim_path("/elsewhere/gcc", &path, None), None);
    }
}
