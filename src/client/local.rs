//! Running the compiler on this machine (distcc 3.4 `exec.c`): for jobs that cannot be
//! distributed, for `localhost` slots, and as the fallback when remote compilation fails.
//! stdin/stdout/stderr are inherited, so the user sees exactly what a plain compile shows.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use super::ClientError;
use super::invocation::Invocation;
use crate::args::argv_to_string;
use crate::paths::which_once as which;

/// A wait status as distcc reports it: the exit code, or 128+signal.
pub(crate) fn critique(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 100,
    }
}

/// A raw Unix wait status (as the protocol's `STAT` carries it) the same way.
pub(crate) fn critique_raw(wait_status: u32) -> i32 {
    let sig = (wait_status & 0x7f) as i32;
    if sig != 0 {
        128 + sig
    } else {
        ((wait_status >> 8) & 0xff) as i32
    }
}

/// A `Command` for `argv` with our children's environment (trimmed PATH, safeguard).
/// The words go to the compiler byte for byte (they may be `OsString`s that are not UTF-8).
pub(crate) fn command<S: AsRef<OsStr>>(
    inv: &Invocation,
    argv: &[S],
) -> Result<Command, ClientError> {
    let name = argv.first().ok_or(ClientError::NoCompiler)?.as_ref();
    let path = inv.path.as_deref();
    let program = if name.as_bytes().contains(&b'/') {
        Some(PathBuf::from(name))
    } else {
        name.to_str().and_then(|n| which(n, path))
    }
    .ok_or_else(|| ClientError::CompilerMissing(name.to_string_lossy().into_owned()))?;
    let mut cmd = Command::new(program);
    cmd.arg0(name);
    cmd.args(&argv[1..]);
    cmd.envs(inv.child_env());
    Ok(cmd)
}

use std::os::unix::process::CommandExt;

/// `argv` as one line of text for messages (lossy for words that are not UTF-8).
fn display<S: AsRef<OsStr>>(argv: &[S]) -> String {
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    argv_to_string(&words)
}

/// Run `argv` here with inherited stdio; returns distcc's view of its status.
pub(crate) fn run<S: AsRef<OsStr>>(inv: &Invocation, argv: &[S]) -> Result<i32, ClientError> {
    log::debug!("exec locally: {}", display(argv));
    let mut cmd = command(inv, argv)?;
    let status = cmd
        .status()
        .map_err(|e| ClientError::Exec(display(argv), e))?;
    Ok(critique(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses() {
        assert_eq!(critique_raw(0), 0);
        assert_eq!(critique_raw(1 << 8), 1);
        assert_eq!(critique_raw(11), 139);
        assert_eq!(critique_raw(0x6e00), 110);
    }
}
