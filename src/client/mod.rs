//! The distcc client (distcc 3.4 `distcc.c`, `compile.c`, `remote.c`, `cpp.c`, …).
//!
//! A compile travels: [`invocation`] (which compiler, which mode) → argument scan (can it
//! be distributed?) → [`compile`] (pick and lock a host slot; preprocess with [`cpp`];
//! [`remote`] send and receive; on a host failure try another host, then [`local`]) →
//! [`output`] (write the object without ever leaving a partial file).

pub mod cleanup;
pub mod compile;
pub mod cpp;
pub mod invocation;
pub mod local;
pub mod output;
pub mod remote;
pub mod socks;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use thiserror::Error;

use crate::exitcode::ExitCode;
use invocation::Action;

/// Failures of the client itself (not of a host, not of the user's compile).
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("distcc seems to have invoked itself recursively!")]
    Recursion,
    #[error("{0} is not supported by this distcc")]
    Unsupported(String),
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
    #[error("{0}")]
    BadArgs(String),
}

impl ClientError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ClientError::Recursion => ExitCode::Recursion,
            ClientError::Unsupported(_) | ClientError::NoCompiler | ClientError::BadArgs(_) => {
                ExitCode::BadArguments
            }
            ClientError::CompilerMissing(_) | ClientError::Exec(..) => ExitCode::CompilerMissing,
            ClientError::Temp(_) => ExitCode::Failed,
            ClientError::ReadInput(..) => ExitCode::IoError,
        }
    }
}

/// distcc's `--version` text.
pub fn version_text() -> String {
    format!(
        "distcc {} {}\n  (protocols 1, 2 and 3) (default port {})\n",
        crate::VERSION,
        invocation::host_triple(),
        crate::DEFAULT_PORT
    )
}

fn help_text() -> String {
    format!(
        "{}
Usage:
   distcc [--option]
   distcc [COMPILER] [compile options] -o OBJECT -c SOURCE
   COMPILER [compile options] -o OBJECT -c SOURCE   (with distcc linked as COMPILER)

Options:
   --help                 explain usage and exit
   --version              show version and exit
   --show-hosts           show the host list and exit
   -j                     print the number of job slots the host list offers
   --show-principal       show the GSS-API principal (not supported here)

The host list comes from $DISTCC_HOSTS, else $DISTCC_DIR/hosts (default ~/.distcc/hosts),
else /etc/distcc/hosts. Each entry is one of:
   localhost[/LIMIT]
   HOST[:PORT][/LIMIT][,lzo][,cpp]
   [USER]@HOST[/LIMIT][:COMMAND][,lzo][,cpp]    (over ssh; $DISTCC_SSH, default ssh)
   --localslots=N  --localslots_cpp=N

Environment: DISTCC_VERBOSE=1, DISTCC_LOG=FILE, DISTCC_FALLBACK=0|1, DISTCC_SKIP_LOCAL_RETRY,
DISTCC_BACKOFF_PERIOD=SECS, DISTCC_IO_TIMEOUT=SECS, DISTCC_PAUSE_TIME_MSEC, DISTCC_SAVE_TEMPS=1,
DISTCC_DIR, TMPDIR.
",
        version_text().trim_end()
    )
}

/// The client's entry point: full argv (argv[0] included); returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    crate::trace::init(&crate::trace::client_config_from_env());
    let argv: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let action = match invocation::classify(&argv) {
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
            let _ = out.write_all(version_text().as_bytes());
            0
        }
        Action::MissingOperand => {
            eprintln!("distcc: missing option/operand\nTry `distcc --help' for more information.");
            ExitCode::BadArguments.code()
        }
        Action::ShowPrincipal => {
            let _ = writeln!(out, "Principal\t: Not Set.");
            0
        }
        Action::ShowHosts | Action::Jobs => {
            // Bad tokens are logged and skipped; like distcc, this always exits 0.
            if let Ok(list) = crate::hosts::load_default() {
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
        Action::Compile(inv) => compile::build_somewhere(&inv),
    }
}
