//! The distcc client (distcc 3.4 `distcc.c`, `compile.c`, `remote.c`, `cpp.c`, …).
//!
//! A compile travels: [`invocation`] (which compiler, which mode) → [`rewrite`] (name the
//! compiler so the server runs the same one) → argument scan (can it be distributed?) →
//! [`compile`] (pick and lock a host slot; preprocess with [`cpp`];
//! [`remote`] send and receive; on a host failure try another host, then [`local`]) →
//! [`output`] (write the object without ever leaving a partial file).

pub(crate) mod cleanup;
pub(crate) mod compile;
pub(crate) mod cpp;
pub(crate) mod invocation;
pub(crate) mod local;
pub mod outcome;
pub(crate) mod output;
pub(crate) mod race;
pub(crate) mod remote;
pub(crate) mod rewrite;
pub(crate) mod socks;
pub(crate) mod wire;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use thiserror::Error;

use crate::exitcode::ExitCode;
use crate::settings::ClientEnv;
use invocation::Action;

/// Failures of the client itself (not of a host, not of the user's compile).
#[derive(Debug, Error)]
pub(crate) enum ClientError {
    #[error("distcc seems to have invoked itself recursively!")]
    Recursion,
    #[error("no compiler given: use `distcc COMPILER ARGS…`")]
    NoCompiler,
    #[error("compiler {0:?} not found on PATH")]
    CompilerMissing(String),
    #[error("failed to run {0}: {1}")]
    Exec(String, std::io::Error),
    #[error(transparent)]
    Temp(#[from] crate::temp::TempError),
    #[error("failed to read {0}: {1}")]
    ReadInput(PathBuf, std::io::Error),
    /// The preprocessed source is one a server would refuse: the job compiles here.
    #[error("not {0}; compiling here")]
    Unsendable(String),
}

impl ClientError {
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            ClientError::Recursion => ExitCode::Recursion,
            ClientError::NoCompiler => ExitCode::BadArguments,
            ClientError::CompilerMissing(_) | ClientError::Exec(..) => ExitCode::CompilerMissing,
            ClientError::Temp(_) | ClientError::Unsendable(_) => ExitCode::Failed,
            ClientError::ReadInput(..) => ExitCode::IoError,
        }
    }
}

fn help_text() -> String {
    format!(
        "{}Usage:
   distcc [--option]
   distcc [COMPILER] [compile options] -o OBJECT -c SOURCE
   COMPILER [compile options] -o OBJECT -c SOURCE   (with distcc linked as COMPILER)

Options:
   --help                 explain usage and exit
   --version              show version and exit
   --show-hosts           show the host list and exit
   -j                     print the number of job slots the host list offers
   --scan-includes COMPILER ARGS
                          (pump) show the files the include server would send
                          for this compile, and compile nothing
   --show-principal       show $DISTCC_PRINCIPAL, distcc 3.4's GSS-API principal
                          (GSS-API itself is not supported here)
   --explain COMPILER ARGS...
                          say where that command would compile and why (the local
                          reason, or each host: backed off, reachable, whitelist,
                          compiler version, extension and pairing), without compiling it

The host list comes from $DISTCC_HOSTS, else $DISTCC_DIR/hosts (default ~/.distcc/hosts),
else /etc/distcc/hosts. Each entry is one of:
   localhost[/LIMIT]
   HOST[:PORT][/LIMIT][,lzo][,cpp]
   [USER]@HOST[/LIMIT][:COMMAND][,lzo][,cpp]    (over ssh; $DISTCC_SSH, default ssh)
   --localslots=N  --localslots_cpp=N

Environment: DISTCC_VERBOSE=1, DISTCC_LOG=FILE, DISTCC_FALLBACK=0|1, DISTCC_SKIP_LOCAL_RETRY,
DISTCC_BACKOFF_PERIOD=SECS, DISTCC_IO_TIMEOUT=SECS, DISTCC_PAUSE_TIME_MSEC, DISTCC_SAVE_TEMPS=1,
DISTCC_DIR, TMPDIR, DISTCC_SOCKS_PROXY=PATH|HOST[:PORT] (a SOCKS5 proxy, as Portage's
network sandbox sets it), DISTCC_RACE=0 (never race a late remote job with a local compile),
DISTCC_BUILD_ID=ID (the build record each job's outcome goes to, in $DISTCC_DIR/record; see
distccmon-text --summary), DISTCC_DIRECTIVES_ONLY=0|1 (gcc >= 11 with -fdirectives-only
and clang >= 10 with -frewrite-includes keep macros for the server, so -g line tables match
a local build: by default for hosts that say they can, distccd of this distcc (for gcc,
without ccache in front of it); 1: for all hosts; 0: never).
",
        crate::version_text("distcc")
    )
}

/// `--show-principal`'s output, in distcc 3.4's words: `DISTCC_PRINCIPAL` when it is set
/// (even empty), else "Not Set.".
fn principal_text(principal: Option<&str>) -> String {
    match principal {
        Some(p) => format!("Principal is\t: {p}\n"),
        None => "Principal\t: Not Set.\n".to_owned(),
    }
}

/// `distcc --scan-includes COMPILER ARGS` (pump mode, distcc 3.4's option): print the
/// files the include server says the job needs, one `KIND      path` line each, and
/// compile nothing. No host is contacted or locked: the question is only what a pump job
/// would carry, which needs a `,cpp` host in the list and a running include server.
fn scan_includes(inv: &invocation::Invocation, env: &ClientEnv, out: &mut impl Write) -> i32 {
    let hosts = crate::hosts::load_default(env.hosts.as_deref(), &env.dirs)
        .map(|l| l.hosts)
        .unwrap_or_default();
    if !hosts.iter().any(|h| h.cpp) {
        log::error!(
            "'--scan_includes' specified, but distcc wouldn't have used include server \
             (make sure hosts list includes ',cpp' option?)"
        );
        return ExitCode::Failed.code();
    }
    // distcc 3.4's words and status (1) when there is no include server to ask.
    if env.include_server.is_none() {
        log::warn!("INCLUDE_SERVER_PORT not set - did you forget to run under 'distcc-pump'?");
        log::error!("failed to get includes from include server");
        return 1;
    }
    let scan = crate::args::scan(&inv.argv);
    if let Some(why) = &scan.local_reason {
        log::error!("'--scan_includes' specified, but this job would run locally: {why}");
        return ExitCode::Failed.code();
    }
    match crate::pump::client::prepare(
        &scan.local_argv,
        &scan.input,
        &scan.output,
        scan.preprocessed,
        env,
    ) {
        Ok(job) => {
            match crate::protocol::include::decode_files(
                &job.files,
                crate::protocol::Limits::default(),
            ) {
                Ok(files) => {
                    for entry in &files {
                        let _ = writeln!(out, "{}", scan_line(entry));
                    }
                    0
                }
                Err(e) => {
                    log::error!("the include server's answer does not decode: {e}");
                    1
                }
            }
        }
        Err(why) => {
            log::error!("failed to get includes from include server: {why}");
            1
        }
    }
}

/// One `--scan-includes` line in distcc 3.4's shape (`%-9s %s`): `FILE` for a source or
/// header, `DIRECTORY` for a directory the server must create (a forcing placeholder, shown
/// without its file name), `SYSTEMDIR` for a system include dir (a link that climbs out
/// of the mirror root back to the same path: the server uses its own), `SYMLINK` for
/// other links.
fn scan_line(entry: &crate::protocol::FileEntry) -> String {
    use crate::protocol::FileKind;
    let name = entry.name.as_str();
    let (kind, shown) = match &entry.kind {
        FileKind::File(_) => match name
            .strip_suffix(crate::pump::server::FORCING_NAME)
            .and_then(|d| d.strip_suffix('/'))
        {
            Some(dir) => ("DIRECTORY", if dir.is_empty() { "/" } else { dir }),
            None => ("FILE", name),
        },
        FileKind::Link(target) if is_system_dir_link(name, target) => ("SYSTEMDIR", name),
        FileKind::Link(_) => ("SYMLINK", name),
    };
    format!("{kind:<9} {shown}")
}

/// Whether a LINK for `name` points at `name` itself from above the mirror root: `../`
/// repeated at least as often as the link's directory is deep (in the mirror, under a
/// 3-component root), then the path without its leading `/`.
fn is_system_dir_link(name: &str, target: &str) -> bool {
    let mut rest = target;
    let mut ups = 0usize;
    while let Some(r) = rest.strip_prefix("../") {
        rest = r;
        ups += 1;
    }
    let depth = 3 + name.trim_matches('/').split('/').count().saturating_sub(1);
    ups >= depth && rest.trim_end_matches('/') == name.trim_matches('/')
}

/// The client's entry point: full argv (argv[0] included); returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let (env, problems) = ClientEnv::from_process();
    crate::trace::init(&env.log);
    let mut fatal = false;
    for p in &problems {
        fatal |= p.report();
    }
    // Text for classifying; a word that is not UTF-8 makes the job local, with the
    // original bytes (`exact_argv`).
    let argv: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let action = match invocation::classify(&argv, &env) {
        Ok(a) => a,
        Err(e) => {
            log::error!("{e}");
            return e.exit_code().code();
        }
    };
    let mut out = std::io::stdout();
    match action {
        Action::Help => {
            let _ = out.write_all(help_text().as_bytes());
            0
        }
        Action::Version => {
            let _ = out.write_all(crate::version_text("distcc").as_bytes());
            0
        }
        Action::MissingOperand => {
            eprintln!("distcc: missing option/operand\nTry `distcc --help' for more information.");
            ExitCode::BadArguments.code()
        }
        Action::ShowPrincipal => {
            let _ = out.write_all(principal_text(env.principal.as_deref()).as_bytes());
            0
        }
        Action::ShowHosts | Action::Jobs => {
            // Bad tokens are logged and skipped; like distcc, this always exits 0.
            if let Ok(list) = crate::hosts::load_default(env.hosts.as_deref(), &env.dirs) {
                if action == Action::Jobs {
                    let _ = writeln!(out, "{}", list.total_slots());
                } else {
                    for h in &list.hosts {
                        let _ = writeln!(out, "{}", h.spec);
                    }
                }
            }
            0
        }
        // A setting distcc 3.4 refuses (DISTCC_IO_TIMEOUT) stops a compile, as there.
        Action::Compile(_) | Action::ScanIncludes(_) if fatal => ExitCode::BadArguments.code(),
        Action::ScanIncludes(inv) => scan_includes(&inv, &env, &mut out),
        Action::Compile(inv) => compile::build_somewhere_exact(&inv, exact_argv(&inv, &args), &env),
        Action::Explain(inv) => {
            let _ = out.write_all(outcome::explain(&inv, &env).as_bytes());
            0
        }
    }
}

/// The compiler's command line with the user's exact bytes, when some word of `args` (our
/// whole argv) is not UTF-8; `None` when all are. It is the compiler `inv` names followed
/// by the original words after it; response files are left for the compiler, which reads
/// `@file` itself. When the compiler itself came out of a response file (`distcc @f`),
/// the words cannot be lined up, and the lossy command line is used.
fn exact_argv(inv: &invocation::Invocation, args: &[OsString]) -> Option<Vec<OsString>> {
    use invocation::Mode;
    // (Our own argv[0] is not passed on: a directory name that is not UTF-8 is fine.)
    if args.iter().skip(1).all(|a| a.to_str().is_some()) {
        return None;
    }
    let compiler = inv.argv.first()?;
    let (first, rest) = match inv.mode {
        Mode::Masquerade | Mode::Implicit => (OsString::from(compiler), args.get(1..)?),
        Mode::Explicit => {
            let given = args.get(1)?;
            if given.to_string_lossy() != compiler.as_str() {
                log::warn!("argument is not UTF-8, and the compiler came from a response file");
                return None;
            }
            (given.clone(), args.get(2..)?)
        }
    };
    let mut v = vec![first];
    v.extend(rest.iter().cloned());
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use invocation::{Invocation, Mode};
    use std::os::unix::ffi::OsStringExt;

    fn inv(mode: Mode, argv: &[&str]) -> Invocation {
        Invocation {
            mode,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            path: None,
            safeguard_level: 0,
        }
    }

    fn os(words: &[&[u8]]) -> Vec<OsString> {
        words
            .iter()
            .map(|w| OsString::from_vec(w.to_vec()))
            .collect()
    }

    #[test]
    fn scan_include_lines_in_34s_shape() {
        use crate::protocol::{FileEntry, FileKind, Payload};
        let e = |name: &str, kind: FileKind| FileEntry {
            name: name.into(),
            kind,
        };
        let file = || FileKind::File(Payload::Lzo(Vec::new()));
        let link = |t: &str| FileKind::Link(t.into());
        assert_eq!(
            scan_line(&e("/home/u/proj/hello3.c", file())),
            "FILE      /home/u/proj/hello3.c"
        );
        assert_eq!(
            scan_line(&e("/home/u/proj/sub/forcing_technique_271828", file())),
            "DIRECTORY /home/u/proj/sub"
        );
        assert_eq!(
            scan_line(&e("/usr/include", link("../../../../usr/include"))),
            "SYSTEMDIR /usr/include"
        );
        assert_eq!(
            scan_line(&e("/home/u/proj/sub/lnk.h", link("../a.h"))),
            "SYMLINK   /home/u/proj/sub/lnk.h"
        );
        // Climbing, but not out of the root, or to another path: an ordinary link.
        assert_eq!(
            scan_line(&e("/usr/include", link("../usr/include"))),
            "SYMLINK   /usr/include"
        );
        assert_eq!(
            scan_line(&e("/usr/include", link("../../../../opt/include"))),
            "SYMLINK   /usr/include"
        );
    }

    #[test]
    fn exact_words_for_arguments_that_are_not_utf8() {
        let latin1: &[u8] = b"caf\xe9.c";
        let lossy = String::from_utf8_lossy(latin1).into_owned();
        // All UTF-8: nothing to do.
        let args = os(&[b"distcc", b"gcc", b"-c", b"a.c"]);
        assert_eq!(
            exact_argv(&inv(Mode::Explicit, &["gcc", "-c", "a.c"]), &args),
            None
        );
        // Explicit.
        let args = os(&[b"/usr/bin/distcc", b"gcc", b"-c", latin1]);
        let i = inv(Mode::Explicit, &["gcc", "-c", &lossy]);
        assert_eq!(exact_argv(&i, &args), Some(os(&[b"gcc", b"-c", latin1])));
        // Implicit: `distcc -c café.c` means cc.
        let args = os(&[b"distcc", b"-c", latin1]);
        let i = inv(Mode::Implicit, &["cc", "-c", &lossy]);
        assert_eq!(exact_argv(&i, &args), Some(os(&[b"cc", b"-c", latin1])));
        // Masquerade: argv[0] is the link; the compiler is its base name.
        let args = os(&[b"/usr/lib/distcc/gcc", b"-c", latin1, b"-o", b"x.o"]);
        let i = inv(Mode::Masquerade, &["gcc", "-c", &lossy, "-o", "x.o"]);
        assert_eq!(
            exact_argv(&i, &args),
            Some(os(&[b"gcc", b"-c", latin1, b"-o", b"x.o"]))
        );
    }
}
