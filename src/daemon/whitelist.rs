//! Which compilers the daemon will run (distcc 3.4 `serve.c`; CVE-2004-2687).
//!
//! A client names a program and distccd executes it, so the name must be vetted:
//! * with `DISTCC_CMDLIST=<file>`, the last `DISTCC_CMDLIST_NUMWORDS` (default 1) path words
//!   of the requested name must match a listed command, which is what then runs;
//! * otherwise a leading `/usr/bin/` or `/bin/` is dropped, any other path is refused, and the
//!   name must be an executable entry of a masquerade dir (`/usr/lib/distcc`: the links
//!   `distcc-config --update-masquerade` makes);
//! * `--enable-tcp-insecure` turns the check off.
//!
//! What the arguments may ask for is decided in [`super::argv::vet`].

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::settings::DaemonEnv;

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum WhitelistError {
    #[error(
        "compiler name <{0}> cannot be an absolute path (or must set DISTCC_CMDLIST or pass --enable-tcp-insecure)"
    )]
    AbsolutePath(String),
    #[error("{name} not in {dirs} whitelist (add a link there: distcc-config --update-masquerade)")]
    NotWhitelisted { name: String, dirs: String },
    #[error("{0} not in DISTCC_CMDLIST")]
    NotInCmdlist(String),
    #[error("empty compiler name")]
    Empty,
}

/// The compiler policy, fixed at start-up.
#[derive(Debug, Clone)]
pub(crate) enum Policy {
    /// `--enable-tcp-insecure`: run what is asked.
    Insecure,
    /// `DISTCC_CMDLIST`: full commands, matched on their last `words` path words.
    Cmdlist { commands: Vec<String>, words: usize },
    /// Executables in these masquerade dirs.
    Masquerade(Vec<PathBuf>),
}

impl Policy {
    /// The policy the environment (`DISTCC_CMDLIST`, the masquerade dirs) and
    /// `--enable-tcp-insecure` ask for.
    pub(crate) fn new(env: &DaemonEnv, insecure: bool) -> std::io::Result<Policy> {
        if let Some(path) = &env.cmdlist {
            let text = std::fs::read_to_string(path)?;
            let words = env.cmdlist_numwords;
            let commands = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect();
            return Ok(Policy::Cmdlist { commands, words });
        }
        if insecure {
            return Ok(Policy::Insecure);
        }
        Ok(Policy::Masquerade(env.masquerade_dirs.clone()))
    }

    /// Decide on a requested compiler; gives the command to execute.
    pub(crate) fn check(&self, requested: &str) -> Result<String, WhitelistError> {
        if requested.is_empty() {
            return Err(WhitelistError::Empty);
        }
        match self {
            Policy::Insecure => Ok(requested.to_owned()),
            Policy::Cmdlist { commands, words } => {
                let want = last_words(requested, *words);
                commands
                    .iter()
                    .find(|c| last_words(c, *words) == want)
                    .cloned()
                    .ok_or_else(|| WhitelistError::NotInCmdlist(requested.to_owned()))
            }
            Policy::Masquerade(dirs) => {
                let name = strip_bin_prefix(requested);
                if name.contains('/') {
                    return Err(WhitelistError::AbsolutePath(requested.to_owned()));
                }
                if name == "." || name == ".." {
                    return Err(WhitelistError::AbsolutePath(requested.to_owned()));
                }
                if dirs.iter().any(|d| is_executable(&d.join(name))) {
                    Ok(name.to_owned())
                } else {
                    Err(WhitelistError::NotWhitelisted {
                        name: name.to_owned(),
                        dirs: dirs
                            .iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(":"),
                    })
                }
            }
        }
    }

    /// Is at least one masquerade dir there? (distccd refuses to start otherwise.)
    pub(crate) fn missing_masquerade_dirs(&self) -> Option<String> {
        match self {
            Policy::Masquerade(dirs) if !dirs.iter().any(|d| d.is_dir()) => Some(
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and "),
            ),
            _ => None,
        }
    }
}

/// QtCreator sends `/usr/bin/gcc`; those two prefixes are allowed (case-insensitively).
fn strip_bin_prefix(name: &str) -> &str {
    for prefix in ["/usr/bin/", "/bin/"] {
        // `get` rather than slicing: a multi-byte name (`/binéé`) has no char boundary
        // where the prefix would end, and must not panic the job.
        if let (Some(head), Some(rest)) = (name.get(..prefix.len()), name.get(prefix.len()..))
            && !rest.is_empty()
            && head.eq_ignore_ascii_case(prefix)
        {
            return rest;
        }
    }
    name
}

fn last_words(path: &str, n: usize) -> Vec<&str> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    parts[parts.len().saturating_sub(n)..].to_vec()
}

fn is_executable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn masq() -> (tempfile::TempDir, Policy) {
        let d = tempfile::tempdir().unwrap();
        symlink("/usr/bin/gcc", d.path().join("gcc")).unwrap();
        std::fs::write(d.path().join("notexec"), "").unwrap();
        let p = Policy::Masquerade(vec![d.path().to_owned()]);
        (d, p)
    }

    #[test]
    fn masquerade_dir_decides() {
        let (_d, p) = masq();
        assert_eq!(p.check("gcc"), Ok("gcc".into()));
        assert_eq!(p.check("/usr/bin/gcc"), Ok("gcc".into()));
        assert_eq!(p.check("/BIN/gcc"), Ok("gcc".into()));
        assert!(matches!(
            p.check("sh"),
            Err(WhitelistError::NotWhitelisted { .. })
        ));
        assert!(matches!(
            p.check("notexec"),
            Err(WhitelistError::NotWhitelisted { .. })
        ));
        assert!(matches!(
            p.check("/tmp/x/cc"),
            Err(WhitelistError::AbsolutePath(_))
        ));
        assert!(matches!(
            p.check("../gcc"),
            Err(WhitelistError::AbsolutePath(_))
        ));
        assert!(matches!(
            p.check("/usr/bin/../gcc"),
            Err(WhitelistError::AbsolutePath(_))
        ));
        assert!(matches!(p.check(""), Err(WhitelistError::Empty)));
        assert_eq!(p.missing_masquerade_dirs(), None);
        assert!(
            Policy::Masquerade(vec!["/nonexistent/x".into()])
                .missing_masquerade_dirs()
                .is_some()
        );
    }

    #[test]
    fn cmdlist_matches_last_words() {
        let p = Policy::Cmdlist {
            commands: vec!["/usr/bin/gcc".into(), "/opt/cross/bin/arm-gcc".into()],
            words: 1,
        };
        assert_eq!(p.check("gcc"), Ok("/usr/bin/gcc".into()));
        assert_eq!(
            p.check("/somewhere/arm-gcc"),
            Ok("/opt/cross/bin/arm-gcc".into())
        );
        assert!(p.check("sh").is_err());
        let p = Policy::Cmdlist {
            commands: vec!["/opt/cross/bin/arm-gcc".into()],
            words: 2,
        };
        assert!(p.check("arm-gcc").is_err());
        assert!(p.check("/x/bin/arm-gcc").is_ok());
    }

    #[test]
    fn multi_byte_names_do_not_panic() {
        let (_d, p) = masq();
        for name in [
            "/binéé",
            "/usr/bin日本",
            "/usr/biné/gcc",
            "é",
            "/bin/é",
            "/usr/bin/日本",
        ] {
            assert!(p.check(name).is_err(), "{name}");
        }
        let c = Policy::Cmdlist {
            commands: vec!["/usr/bin/gcc".into()],
            words: 2,
        };
        assert!(c.check("/usr/bin日本").is_err());
    }
}
