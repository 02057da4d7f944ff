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
//!
//! A client of ours also says which compiler it means ([`crate::identity`], the `CIDN`
//! packet): [`Inventory::resolve`] then runs the named compiler only if it is that one, else
//! another whitelisted compiler on the PATH with that identity (`gcc-12`,
//! `x86_64-linux-gnu-gcc-12`, `clang-14`, …), else refuses with a message naming both.
//! A compiler of the same version and target but another build (the fingerprints differ)
//! is refused too: distributions patch and configure gcc differently
//! (`--enable-default-pie`, default `-fstack-protector`), and an object that differs from
//! the local one is the very thing this check exists to prevent. The message says so, so
//! the user can install the same build. Where every host builds its own compiler from the
//! same sources (Gentoo: one gcc version, each host's own CFLAGS, so no two `cc1`s are the
//! same bytes), the admin can set `DISTCCD_ACCEPT_OTHER_BUILDS=1` to serve them.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::identity::{Identity, Known, Match};
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

/// Why a job with a compiler identity can't run here.
#[derive(Debug, Error)]
pub(crate) enum ResolveError {
    /// The requested name itself is not allowed.
    #[error(transparent)]
    Whitelist(#[from] WhitelistError),
    /// No compiler here has the client's identity: the `compiler-identity` refusal.
    #[error("{0}")]
    Identity(String),
}

/// The compilers this daemon has: found on the PATH compilers run with (`DISTCCD_PATH`,
/// else `PATH`), each vetted by the [`Policy`], their identities probed once per
/// executable.
#[derive(Debug)]
pub(crate) struct Inventory {
    path: Option<OsString>,
    known: Known,
    /// `DISTCCD_ACCEPT_OTHER_BUILDS`: another build of the client's version serves too.
    accept_other_builds: bool,
}

impl Inventory {
    pub(crate) fn new(env: &DaemonEnv) -> Inventory {
        Inventory {
            path: env.distccd_path.clone().or_else(|| env.path.clone()),
            known: Known::default(),
            accept_other_builds: env.accept_other_builds,
        }
    }

    /// May a compiler with identity `theirs` run the job of a client with `client`?
    fn serves(&self, client: &Identity, theirs: &Identity) -> bool {
        match client.compare(theirs) {
            Match::Same => true,
            Match::OtherBuild => self.accept_other_builds,
            Match::Other => false,
        }
    }

    /// The identity of the command `run_as` (a name on the PATH or a path).
    fn identity_of(&self, run_as: &str) -> Result<Identity, String> {
        let Some(program) = crate::paths::which(run_as, self.path.as_deref()) else {
            return Err(format!("no {run_as} on its PATH"));
        };
        let env: Vec<(OsString, OsString)> = self
            .path
            .iter()
            .map(|p| (OsString::from("PATH"), p.clone()))
            .collect();
        self.known.get(&program, &env)
    }

    /// The names a compiler with identity `client` may have here, most specific first:
    /// `<triple>-gcc-<version>`, `<triple>-gcc-<major>`, `gcc-<version>`, `gcc-<major>`,
    /// `<triple>-gcc`, `gcc` (`g++` for a C++ driver, `clang`/`clang++` for clang). Values
    /// in an [`Identity`] have no `/`, so these are plain names.
    fn candidates(requested: &str, client: &Identity) -> Vec<String> {
        let cxx = crate::paths::basename(requested).contains("++");
        let (t, v, m) = (&client.target, &client.version, client.major());
        let names = match (client.family.as_str(), cxx) {
            ("gcc", false) => gnu_names("gcc", t, v, m),
            ("gcc", true) => gnu_names("g++", t, v, m),
            ("clang", false) => clang_names("clang", t, m),
            ("clang", true) => clang_names("clang++", t, m),
            _ => Vec::new(),
        };
        let mut out: Vec<String> = Vec::new();
        for n in names {
            if n != requested && !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }

    /// The command to run for `requested` from a client whose compiler is `client`: the
    /// named one if it has that identity, else another with it, else
    /// [`ResolveError::Identity`] naming both identities.
    pub(crate) fn resolve(
        &self,
        policy: &Policy,
        requested: &str,
        client: &Identity,
    ) -> Result<String, ResolveError> {
        // The requested name is a hint: a name the whitelist does not take (`gcc-11` where
        // only `gcc` is listed) may still be served by a listed compiler with the identity.
        let (named, refused) = match policy.check(requested) {
            Ok(run_as) => {
                let named = self.identity_of(&run_as);
                if let Ok(theirs) = &named
                    && self.serves(client, theirs)
                {
                    return Ok(run_as);
                }
                (Some(named), None)
            }
            Err(e @ (WhitelistError::NotWhitelisted { .. } | WhitelistError::NotInCmdlist(_))) => {
                (None, Some(e))
            }
            Err(e) => return Err(e.into()),
        };
        // The first other compiler of the family found: what the refusal names when the
        // requested name itself is not allowed here.
        let mut other: Option<Identity> = None;
        for name in Inventory::candidates(requested, client) {
            let Ok(cmd) = policy.check(&name) else {
                continue;
            };
            match self.identity_of(&cmd) {
                Ok(theirs) if self.serves(client, &theirs) => {
                    log::info!("client compiler {client}: running {cmd} for {requested}");
                    return Ok(cmd);
                }
                Ok(theirs) => {
                    other.get_or_insert(theirs);
                }
                Err(_) => {}
            }
        }
        match (named, refused) {
            (Some(Ok(theirs)), _) => Err(ResolveError::Identity(client.mismatch_message(&theirs))),
            (None, Some(_)) if let Some(theirs) = other => {
                Err(ResolveError::Identity(client.mismatch_message(&theirs)))
            }
            (Some(Err(why)), _) => Err(ResolveError::Identity(format!(
                "client {client}; this host has {why}"
            ))),
            (None, Some(e)) => Err(e.into()),
            (None, None) => Err(WhitelistError::Empty.into()),
        }
    }
}

fn gnu_names(driver: &str, t: &str, v: &str, m: &str) -> Vec<String> {
    vec![
        format!("{t}-{driver}-{v}"),
        format!("{t}-{driver}-{m}"),
        format!("{driver}-{v}"),
        format!("{driver}-{m}"),
        format!("{t}-{driver}"),
        driver.to_string(),
    ]
}

fn clang_names(driver: &str, t: &str, m: &str) -> Vec<String> {
    vec![
        format!("{t}-{driver}-{m}"),
        format!("{driver}-{m}"),
        format!("{t}-{driver}"),
        driver.to_string(),
    ]
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

    /// A fake gcc `name` in `dir` that answers `-v` with `version`.
    fn fake_gcc(dir: &Path, name: &str, version: &str) {
        let src = dir.join(format!("{name}.src"));
        std::fs::write(
            &src,
            format!(
                "#!/bin/sh\ncase \"$1\" in\n-v) echo 'gcc version {version} (Test)' >&2;;\n\
                 -dumpmachine) echo x86_64-linux-gnu;;\n-print-prog-name=*) echo cc1;;\nesac\n"
            ),
        )
        .unwrap();
        // Copied by a child process: no descriptor open for writing leaks into a sibling
        // test's fork (ETXTBSY).
        let p = dir.join(name);
        let cp = std::process::Command::new("cp").arg(&src).arg(&p).status();
        assert!(cp.unwrap().success());
        let chmod = std::process::Command::new("chmod")
            .arg("755")
            .arg(&p)
            .status();
        assert!(chmod.unwrap().success());
    }

    fn inventory(dir: &Path) -> Inventory {
        Inventory {
            path: Some(dir.as_os_str().to_owned()),
            known: Known::default(),
            accept_other_builds: false,
        }
    }

    fn client(dir: &Path, name: &str) -> Identity {
        crate::identity::of_program(&dir.join(name), &[], None).unwrap()
    }

    #[test]
    fn the_named_compiler_or_another_with_the_identity_or_a_refusal() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fake_gcc(p, "gcc", "11.3.0");
        fake_gcc(p, "gcc-12", "12.2.0");
        fake_gcc(p, "x86_64-linux-gnu-gcc-12", "12.2.0");
        fake_gcc(p, "g++-11", "11.3.0");
        let elsewhere = tempfile::tempdir().unwrap();
        fake_gcc(elsewhere.path(), "gcc", "12.2.0");
        fake_gcc(elsewhere.path(), "gcc-13", "13.1.0");
        let twelve = client(p, "gcc-12");
        let eleven = client(p, "gcc");
        let inv = inventory(p);
        let open = Policy::Insecure;
        assert_eq!(inv.resolve(&open, "gcc", &eleven).unwrap(), "gcc");
        // The most specific name first.
        assert_eq!(
            inv.resolve(&open, "gcc", &twelve).unwrap(),
            "x86_64-linux-gnu-gcc-12"
        );
        assert_eq!(inv.resolve(&open, "gcc-12", &twelve).unwrap(), "gcc-12");
        // Only names the whitelist allows are candidates.
        let masq = Policy::Masquerade(vec![p.to_owned()]);
        assert_eq!(
            inv.resolve(&masq, "gcc", &twelve).unwrap(),
            "x86_64-linux-gnu-gcc-12"
        );
        let links = tempfile::tempdir().unwrap();
        symlink("/bin/true", links.path().join("gcc")).unwrap();
        let masq = Policy::Masquerade(vec![links.path().to_owned()]);
        let err = inv.resolve(&masq, "gcc", &twelve).unwrap_err();
        assert_eq!(
            err.to_string(),
            "client gcc 12.2.0 x86_64-linux-gnu; this host has 11.3.0"
        );
        assert!(matches!(
            inv.resolve(&masq, "cc", &twelve),
            Err(ResolveError::Identity(_))
        ));
        // A name the whitelist lacks is served by a listed one with the identity.
        let masq = Policy::Masquerade(vec![p.to_owned()]);
        let only_gcc = tempfile::tempdir().unwrap();
        symlink(p.join("gcc"), only_gcc.path().join("gcc")).unwrap();
        let inv_a = inventory(only_gcc.path());
        let masq_a = Policy::Masquerade(vec![only_gcc.path().to_owned()]);
        assert_eq!(inv_a.resolve(&masq_a, "gcc-11", &eleven).unwrap(), "gcc");
        // Not listed, and what is listed is another version: that is what it says.
        let err = inv_a.resolve(&masq_a, "gcc-12", &twelve).unwrap_err();
        assert_eq!(
            err.to_string(),
            "client gcc 12.2.0 x86_64-linux-gnu; this host has 11.3.0"
        );
        let clang = Identity {
            family: "clang".into(),
            ..twelve.clone()
        };
        assert!(matches!(
            inv_a.resolve(&masq_a, "clang-12", &clang),
            Err(ResolveError::Whitelist(_))
        ));
        assert!(matches!(
            inv_a.resolve(&masq_a, "/tmp/gcc", &eleven),
            Err(ResolveError::Whitelist(WhitelistError::AbsolutePath(_)))
        ));
        drop(masq);
        // A C++ driver is looked for as g++.
        let plus = Identity {
            version: "11.3.0".into(),
            ..eleven.clone()
        };
        let err = inv.resolve(&open, "g++", &plus).unwrap_err();
        assert!(err.to_string().contains("no g++ on its PATH"), "{err}");
        // Nothing with that version here.
        let thirteen = client(elsewhere.path(), "gcc-13");
        let err = inv.resolve(&open, "gcc", &thirteen).unwrap_err();
        assert_eq!(
            err.to_string(),
            "client gcc 13.1.0 x86_64-linux-gnu; this host has 11.3.0"
        );
    }

    #[test]
    fn same_version_of_another_build_is_refused() {
        let d = tempfile::tempdir().unwrap();
        fake_gcc(d.path(), "gcc", "12.2.0");
        let other = tempfile::tempdir().unwrap();
        // Another driver binary (one more byte): another build of the same version.
        fake_gcc(other.path(), "gcc", "12.2.0 ");
        let theirs = client(d.path(), "gcc");
        let ours = client(other.path(), "gcc");
        assert_eq!(ours.describe(), theirs.describe());
        let err = inventory(d.path())
            .resolve(&Policy::Insecure, "gcc", &ours)
            .unwrap_err();
        let m = err.to_string();
        assert!(m.contains("another build"), "{m}");
        assert!(m.contains(ours.short_fingerprint()), "{m}");
        assert!(m.contains(theirs.short_fingerprint()), "{m}");
        assert!(m.contains("DISTCCD_ACCEPT_OTHER_BUILDS=1"), "{m}");
        // Where the admin said other builds of a version are welcome, it serves them, and
        // still nothing of another version.
        let welcoming = Inventory {
            accept_other_builds: true,
            ..inventory(d.path())
        };
        assert_eq!(
            welcoming.resolve(&Policy::Insecure, "gcc", &ours).unwrap(),
            "gcc"
        );
        let newer = tempfile::tempdir().unwrap();
        fake_gcc(newer.path(), "gcc", "12.3.0");
        let err = welcoming
            .resolve(&Policy::Insecure, "gcc", &client(newer.path(), "gcc"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "client gcc 12.3.0 x86_64-linux-gnu; this host has 12.2.0"
        );
    }

    #[test]
    fn real_gcc_names_share_one_identity() {
        let bin = Path::new("/usr/bin");
        if !bin.join("gcc-12").exists() {
            return;
        }
        let gcc = client(bin, "gcc");
        let twelve = client(bin, "gcc-12");
        assert_eq!(gcc, twelve);
        assert_eq!(gcc.family, "gcc");
        if bin.join("gcc-11").exists() {
            let eleven = client(bin, "gcc-11");
            assert_eq!(gcc.compare(&eleven), Match::Other);
            let inv = Inventory {
                path: Some("/usr/bin".into()),
                ..inventory(bin)
            };
            assert_eq!(
                inv.resolve(&Policy::Insecure, "gcc", &eleven).unwrap(),
                "x86_64-linux-gnu-gcc-11"
            );
        }
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
