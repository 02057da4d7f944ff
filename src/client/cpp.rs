//! Local preprocessing (distcc 3.4 `cpp.c`): run `cc -E` with stdout into a temp file in
//! `$TMPDIR`, in the background, so that connecting to the server overlaps with it.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};

use super::ClientError;
use super::invocation::Invocation;
use super::local::{command, critique};
use crate::args::argv_to_string;
use crate::daemon::source_check::{self, Rules};
use crate::settings::ClientEnv;

/// A temp file that is deleted when dropped, unless `DISTCC_SAVE_TEMPS=1` asked to keep it.
#[derive(Debug)]
pub(crate) struct TempFile {
    pub path: PathBuf,
    keep: bool,
    _cleanup: super::cleanup::Registered,
}

impl TempFile {
    /// Create `$TMPDIR/distcc_XXXXXXXX.<ext>` exclusively, open for writing.
    pub(crate) fn create(ext: &str, env: &ClientEnv) -> Result<(TempFile, File), ClientError> {
        let dir = crate::temp::tmp_dir(&env.dirs)?;
        let (path, file) = crate::temp::create_temp_file_in(&dir, "distcc_", &format!(".{ext}"))?;
        let _cleanup = super::cleanup::register(&path);
        Ok((
            TempFile {
                path,
                keep: env.save_temps,
                _cleanup,
            },
            file,
        ))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.keep {
            log::debug!("keeping {} (DISTCC_SAVE_TEMPS)", self.path.display());
            return;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A preprocessor run in progress (or an already-preprocessed input).
///
/// cpp's stderr is captured, not shown: if the job is accepted remotely it is printed
/// before the server's diagnostics (so `#warning`s appear once, as in a local compile); if
/// the job falls back to a local compile, the local compiler prints everything itself, and
/// showing cpp's messages too would print each error twice (as distcc 3.4 does).
pub(crate) enum Preprocess {
    Running {
        child: Child,
        out: TempFile,
        err: TempFile,
        /// A run that keeps macros: what to run in full if its output won't do.
        full: Option<Box<FullRun>>,
    },
    /// The input needs no preprocessing; send it as it is.
    Ready(PathBuf),
}

/// The full `-E` to fall back on when a run that keeps macros fails or its output would
/// differ from a local build's (see [`Preprocess::finish`]). The server's command line
/// stays: a fully preprocessed source compiles the same with `-fpreprocessed
/// -fdirectives-only`, as it holds no macro and no directive but line markers and pragmas.
#[derive(Debug)]
pub(crate) struct FullRun {
    inv: Invocation,
    argv: Vec<String>,
    ext: String,
    env: ClientEnv,
    /// The rules the server checks the source under.
    rules: Rules,
    /// The source's name as the command line gives it.
    input: String,
}

/// Macros whose value depends on where they are expanded: the server's temp file and
/// clock, not the client's (`__DATE__` ignores the client's `SOURCE_DATE_EPOCH` there).
const WHERE_DEPENDENT_MACROS: &[&[u8]] = &[
    b"__BASE_FILE__",
    b"__TIMESTAMP__",
    b"__DATE__",
    b"__TIME__",
    b"__INCLUDE_LEVEL__",
];

/// Why an output that keeps macros must not be sent as it is, if it must not.
fn keeping_macros_unfit(rules: Rules, cpp_argv: &[String], source: &[u8]) -> Option<String> {
    if let Some(m) = WHERE_DEPENDENT_MACROS
        .iter()
        .find(|m| memchr::memmem::find(source, m).is_some())
    {
        return Some(format!("it uses {}", String::from_utf8_lossy(m)));
    }
    source_check::check(rules, cpp_argv, source)
        .err()
        .map(|e| e.to_string())
}

/// The line `clang -E -frewrite-includes` starts with. The first line marker names the
/// object's compilation unit, so it is replaced by one naming the source as the command
/// line does ([`source_marker`]), as a local build names it, and the command line's
/// `-D` and `-U` as `#define`s and `#undef`s ([`crate::args::command_line_macros`]).
const CLANG_BUILTIN_MARKER: &[u8] = b"# 1 \"<built-in>\"\n";

/// `# 1 "NAME"` for the source `name`, quoted as a line marker's string (clang reads its
/// escapes, so a name with a line break stays on one line).
fn source_marker(name: &str) -> Vec<u8> {
    let mut m = b"# 1 \"".to_vec();
    for c in name.bytes() {
        match c {
            b'"' | b'\\' => m.extend_from_slice(&[b'\\', c]),
            b'\n' => m.extend_from_slice(b"\\n"),
            b'\r' => m.extend_from_slice(b"\\r"),
            _ => m.push(c),
        }
    }
    m.extend_from_slice(b"\"\n");
    m
}

/// cpp failed: its status and what it printed.
#[derive(Debug)]
pub(crate) struct CppFailed {
    pub status: i32,
    pub stderr: Vec<u8>,
}

impl Preprocess {
    /// Start `cpp_argv` with stdout into a fresh temp file and stdin from /dev/null.
    pub(crate) fn start(
        inv: &Invocation,
        cpp_argv: &[String],
        input: &str,
        ext: &str,
        env: &ClientEnv,
    ) -> Result<Self, ClientError> {
        let (out, file) = TempFile::create(ext, env)?;
        let (err, err_file) = TempFile::create("cpp_stderr", env)?;
        log::debug!(
            "running cpp: {} > {}",
            argv_to_string(cpp_argv),
            out.path.display()
        );
        let mut cmd = command(inv, cpp_argv)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err_file));
        let child = cmd
            .spawn()
            .map_err(|e| ClientError::Exec(argv_to_string(cpp_argv), e))?;
        let keeps = [
            (crate::args::DIRECTIVES_ONLY_FLAGS[1], Rules::DirectivesOnly),
            (crate::args::REWRITE_INCLUDES_FLAG, Rules::Preprocessed),
        ]
        .into_iter()
        .find(|(flag, _)| cpp_argv.iter().any(|w| w == flag));
        let full = keeps.map(|(flag, rules)| {
            Box::new(FullRun {
                inv: inv.clone(),
                argv: cpp_argv.iter().filter(|w| *w != flag).cloned().collect(),
                ext: ext.to_string(),
                env: env.clone(),
                rules,
                input: input.to_string(),
            })
        });
        Ok(Preprocess::Running {
            child,
            out,
            err,
            full,
        })
    }

    /// Wait for cpp. `Ok(Err(_))` when it failed (the user's source has errors).
    ///
    /// A run that keeps macros is redone in full (and the full run's result given) when
    /// it fails — gcc refuses `__COUNTER__` in `#if` there, for one — or when its output
    /// uses a macro whose value the server would get wrong, or would not pass the server's
    /// check ([`source_check::check`]).
    pub(crate) fn finish(self) -> Result<Result<Preprocessed, CppFailed>, ClientError> {
        match self {
            Preprocess::Ready(p) => Ok(Ok(Preprocessed {
                path: p,
                stderr: Vec::new(),
                text: None,
                lead: None,
                _temp: None,
            })),
            Preprocess::Running {
                mut child,
                out,
                err,
                full,
            } => {
                let status = child
                    .wait()
                    .map_err(|e| ClientError::Exec("cpp".into(), e))?;
                let ret = critique(status);
                let stderr = std::fs::read(&err.path).unwrap_or_default();
                // An output that keeps macros is read once, for the check, and kept for
                // the request: a megabyte read twice shows in the client's CPU per job.
                let mut text = None;
                let mut lead = None;
                if let Some(full) = full {
                    let why = if ret != 0 {
                        Some(format!("it failed with status {ret}"))
                    } else {
                        let mut bytes = std::fs::read(&out.path)
                            .map_err(|e| ClientError::ReadInput(out.path.clone(), e))?;
                        if full.rules == Rules::Preprocessed
                            && bytes.starts_with(CLANG_BUILTIN_MARKER)
                        {
                            // Then the command line's macros, which clang leaves out here
                            // and ignores for a `.i` there, before any `-include`d file.
                            let mut marker = source_marker(&full.input);
                            marker.extend_from_slice(
                                crate::args::command_line_macros(&full.argv).as_bytes(),
                            );
                            bytes.splice(..CLANG_BUILTIN_MARKER.len(), marker.iter().copied());
                            lead = Some((CLANG_BUILTIN_MARKER.len(), marker));
                        }
                        let why = keeping_macros_unfit(full.rules, &full.argv, &bytes);
                        text = Some(bytes);
                        why
                    };
                    if let Some(why) = why {
                        log::info!(
                            "the output that keeps macros is not used ({why}); \
                             preprocessing in full"
                        );
                        drop((out, err));
                        let result = Preprocess::start(
                            &full.inv,
                            &full.argv,
                            &full.input,
                            &full.ext,
                            &full.env,
                        )?
                        .finish()?;
                        // The server still checks it: one it would refuse (a raw string
                        // whose lexing depends on the default -std) is compiled here.
                        if let Ok(pre) = &result
                            && let Err(e) =
                                source_check::check(full.rules, &full.argv, &pre.read()?)
                        {
                            return Err(ClientError::Unsendable(format!(
                                "sending {} to a server that checks it ({e})",
                                pre.path.display()
                            )));
                        }
                        return Ok(result);
                    }
                }
                if ret != 0 {
                    log::debug!("cpp failed with status {ret}");
                    return Ok(Err(CppFailed {
                        status: ret,
                        stderr,
                    }));
                }
                Ok(Ok(Preprocessed {
                    path: out.path.clone(),
                    stderr,
                    text,
                    lead,
                    _temp: Some(out),
                }))
            }
        }
    }
}

/// The preprocessed source, kept until the job is over.
#[derive(Debug)]
pub(crate) struct Preprocessed {
    pub path: PathBuf,
    /// What cpp printed (warnings); shown only if the remote result is accepted.
    pub stderr: Vec<u8>,
    /// Its bytes, when they were read already.
    text: Option<Vec<u8>>,
    /// How many bytes at the file's start are sent as what instead
    /// ([`CLANG_BUILTIN_MARKER`]).
    lead: Option<(usize, Vec<u8>)>,
    _temp: Option<TempFile>,
}

impl Preprocessed {
    pub(crate) fn read(&self) -> Result<Vec<u8>, ClientError> {
        let mut bytes =
            std::fs::read(&self.path).map_err(|e| ClientError::ReadInput(self.path.clone(), e))?;
        if let Some((n, with)) = &self.lead {
            bytes.splice(..(*n).min(bytes.len()), with.iter().copied());
        }
        Ok(bytes)
    }

    /// Its bytes, read from the file unless they were kept (a second call reads the file).
    pub(crate) fn take_text(&mut self) -> Result<Vec<u8>, ClientError> {
        match self.text.take() {
            Some(t) => Ok(t),
            None => self.read(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_marker_quotes_the_name() {
        assert_eq!(source_marker("lib/a.c"), b"# 1 \"lib/a.c\"\n");
        assert_eq!(
            source_marker("we\"ird\\x\ny.c"),
            b"# 1 \"we\\\"ird\\\\x\\ny.c\"\n".to_vec()
        );
    }
}
