//! The compile client's side of pump mode (reference §5.4, §1.5): decide whether a job may
//! use protocol 3, ask the include server which files to ship, and turn its answer into
//! the request's FILE/LINK entries. Any failure here only demotes the job to protocol 2.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::PumpError;
use crate::client::wire::{Wire, connect_unix};
use crate::daemon::argv::{Mode, vet};
use crate::options::{self, Class};
use crate::paths::{basename, with_ext};
use crate::protocol::{
    Codec, FileEntry, FileKind, HEADER_LEN, Limits, Payload, encode_files, include,
};
use crate::settings::ClientEnv;

/// How long the include server may take to answer one job.
const ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// A job ready to go out as protocol 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PumpJob {
    pub cwd: String,
    /// The full argv the server gets (with `-o` and, when needed, `-MT`).
    pub argv: Vec<String>,
    /// The request's file list as it goes on the wire (`NFIL`, `NAME` + `FILE`/`LINK`
    /// each, bodies LZO): our include server's answer as it came, or made from the
    /// mirrors a 3.4-style answer names.
    pub files: Vec<u8>,
    /// Where the server's `.d` must be written, when the compile makes one.
    pub dotd: Option<PathBuf>,
}

/// The include server's socket, if this job may use pump mode at all (the environment
/// part of §5.4; the host's `,cpp,lzo` is the caller's check).
pub(crate) fn socket_for(preprocessed: bool, env: &ClientEnv) -> Result<PathBuf, String> {
    let Some(sock) = env.include_server.clone() else {
        return Err("INCLUDE_SERVER_PORT is not set".into());
    };
    if preprocessed {
        return Err("the input is already preprocessed".into());
    }
    if let Some(var) = env.pump_blocker {
        return Err(format!("{var} is set"));
    }
    let count = discrepancies(&sock);
    let max = env.max_discrepancy;
    if count >= max {
        return Err(format!(
            "{count} pump-mode compilation(s) failed on a server but succeeded locally \
             (DISTCC_MAX_DISCREPANCY={max}): pump mode is off for this build"
        ));
    }
    Ok(sock)
}

/// `<dir of the socket>/discrepancy_counter`: one `@` per pump job that failed remotely
/// but compiled locally (distcc 3.4's file, read by the `pump` applet at the end).
fn counter_path(socket: &Path) -> Option<PathBuf> {
    socket.parent().map(|d| d.join("discrepancy_counter"))
}

fn discrepancies(socket: &Path) -> u64 {
    counter_path(socket)
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len())
}

/// Count one discrepancy: a pump-mode job failed on the server but succeeded locally —
/// usually the server's system headers differ, or the analysis missed a file.
pub(crate) fn note_discrepancy(env: &ClientEnv) {
    let Some(path) = env.include_server.as_deref().and_then(counter_path) else {
        return;
    };
    log::warn!("pump-mode compilation failed on the server but succeeded locally");
    let r = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"@"));
    if let Err(e) = r {
        log::warn!("can't count the discrepancy in {}: {e}", path.display());
    }
}

/// The argv for the server and the local `.d` path (reference §1.5, §2.8): `-o` made
/// explicit; if a `.d` is wanted and no `-MT`/`-MQ` given, `-MT <output>` appended (the
/// target gcc would use locally). `argv` is already `-Wp,`-expanded. The words are read
/// with [`crate::options`]' table, so every spelling counts (`--output=F`, `-MFfile`) and
/// a word that is another option's argument (`-Xlinker -ofoo`) does not.
pub(crate) fn server_argv(
    argv: &[String],
    input: &str,
    output: &str,
) -> (Vec<String>, Option<PathBuf>) {
    let mut out = argv.to_vec();
    let mut explicit_o = false;
    let mut wants_dotd = false;
    let mut mf: Option<String> = None;
    let mut has_mt = false;
    let mut i = 1;
    while i < argv.len() {
        let hit = options::lookup(&argv[i], argv.get(i + 1).map(String::as_str));
        i += hit.consumed;
        match hit.class() {
            Class::Output => explicit_o = true,
            Class::DepsFile => mf = hit.value.map(str::to_owned),
            Class::DepsTarget => has_mt = true,
            // Only these make `gcc -c` write a .d file (-MP/-MG alone change nothing).
            Class::DepsOn => wants_dotd = true,
            _ => {}
        }
    }
    if !explicit_o {
        out.extend(["-o".to_string(), output.to_string()]);
    }
    if !wants_dotd {
        return (out, None);
    }
    let dotd = mf.unwrap_or_else(|| {
        if explicit_o {
            with_ext(output, "d")
        } else {
            basename(&with_ext(input, "d"))
        }
    });
    if !has_mt {
        out.extend(["-MT".to_string(), output.to_string()]);
    }
    (out, Some(PathBuf::from(dotd)))
}

/// Would a distcc server of ours run `argv` as a pump job from `cwd`? The client asks the
/// server's own vetting ([`crate::daemon::argv::vet`]) before sending: a job it refuses
/// would come back refused after its files were shipped, be compiled locally and counted
/// as a discrepancy. Such jobs go protocol 2, which needs none of the pump-only rules.
pub(crate) fn server_accepts(argv: &[String], cwd: &str) -> Result<(), String> {
    vet(argv, Mode::Pump, cwd)
        .map(drop)
        .map_err(|e| format!("a distcc server would refuse this job in pump mode ({e})"))
}

/// Connect to the include server at `socket` and send it a request (blocking, within
/// [`ASK_TIMEOUT`]).
fn send_request(
    socket: &Path,
    cwd: &str,
    argv: &[String],
    inline: bool,
) -> Result<std::os::unix::net::UnixStream, PumpError> {
    let can_not = |source| PumpError::Io {
        what: format!(
            "can't connect to the include server at {}",
            socket.display()
        ),
        source,
    };
    let mut stream = connect_unix(socket, ASK_TIMEOUT).map_err(can_not)?;
    let req = include::IncludeRequest {
        cwd: cwd.to_string(),
        argv: argv.to_vec(),
        inline,
    };
    stream
        .set_write_timeout(Some(ASK_TIMEOUT))
        .map_err(can_not)?;
    stream
        .write_all(&include::encode_request(&req))
        .map_err(|e| PumpError::Server(e.to_string()))?;
    Ok(stream)
}

/// Ask the include server at `socket` which files `argv` needs (§5.2).
/// Blocking: connecting, sending and each wait for the answer within [`ASK_TIMEOUT`].
pub(crate) fn ask(socket: &Path, cwd: &str, argv: &[String]) -> Result<Vec<String>, PumpError> {
    let stream = send_request(socket, cwd, argv, false)?;
    Wire::new(stream, ASK_TIMEOUT)
        .map_err(|e| PumpError::Server(e.to_string()))?
        .read_include_reply()
        .map_err(|e| PumpError::Server(e.to_string()))
}

/// Ask our include server for the files `argv` needs, contents included
/// ([`crate::protocol::include`]): the request's file list as it is sent, and its number
/// of files. Read into one buffer of the announced size, checked without a copy.
pub(crate) fn ask_inline(
    socket: &Path,
    cwd: &str,
    argv: &[String],
) -> Result<(usize, Vec<u8>), PumpError> {
    let mut stream = send_request(socket, cwd, argv, true)?;
    let io = |source| PumpError::Io {
        what: format!("the include server's answer on {}", socket.display()),
        source,
    };
    stream.set_read_timeout(Some(ASK_TIMEOUT)).map_err(io)?;
    let limits = Limits::default();
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).map_err(io)?;
    let len = include::decode_inline_header(&header, limits)
        .map_err(|e| PumpError::Server(e.to_string()))?;
    let mut files = vec![0u8; len];
    stream.read_exact(&mut files).map_err(io)?;
    let count = include::check_inline_files(&files, limits)
        .map_err(|e| PumpError::Server(e.to_string()))?;
    Ok((count, files))
}

/// The client path of a mirror path: drop the root's 3 components, then `.abs`, then `.lzo`.
pub(crate) fn original_name(mirror: &str) -> Option<String> {
    let rest = mirror.strip_prefix('/')?;
    let mut parts = rest.splitn(4, '/');
    let (_, _, _, tail) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let name = format!("/{tail}");
    let name = name.strip_suffix(".abs").unwrap_or(&name);
    let name = name.strip_suffix(".lzo").unwrap_or(name);
    Some(name.to_string())
}

/// Turn the include server's answer into request entries: symlinks as LINK (their
/// `readlink` text), files as FILE carrying the mirror's LZO bytes as they are.
pub(crate) fn entries(paths: &[String]) -> Result<Vec<FileEntry>, PumpError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source| PumpError::Io { what, source }
    };
    let mut out = Vec::with_capacity(paths.len());
    // One buffer for every read: a job reads a hundred mirrors, and a stat of each long
    // path plus a buffer per file was most of this step's time.
    let mut buf = vec![0u8; 64 * 1024];
    for p in paths {
        let name = original_name(p)
            .ok_or_else(|| PumpError::Server(format!("path outside a client root: {p}")))?;
        // O_NOFOLLOW: a symlink fails with ELOOP, and is sent as a LINK.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(p);
        let kind = match opened {
            Ok(mut f) => {
                let mut n = 0;
                loop {
                    if n == buf.len() {
                        buf.resize(buf.len() * 2, 0);
                    }
                    match f.read(buf.get_mut(n..).unwrap_or_default()) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(io(p)(e)),
                    }
                }
                FileKind::File(Payload::Lzo(buf.get(..n).unwrap_or_default().to_vec()))
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                let t = std::fs::read_link(p).map_err(io(p))?;
                FileKind::Link(t.to_string_lossy().into_owned())
            }
            Err(e) => return Err(io(p)(e)),
        };
        out.push(FileEntry { name, kind });
    }
    Ok(out)
}

/// Everything before sending: eligibility, the include server's answer, the entries.
/// `Err` carries the reason this job goes protocol 2 instead.
pub(crate) fn prepare(
    argv: &[String],
    input: &str,
    output: &str,
    preprocessed: bool,
    env: &ClientEnv,
) -> Result<PumpJob, String> {
    let socket = socket_for(preprocessed, env)?;
    let cwd = std::env::current_dir()
        .map_err(|e| format!("can't get the current directory: {e}"))?
        .display()
        .to_string();
    let (argv, dotd) = server_argv(argv, input, output);
    server_accepts(&argv, &cwd)?;
    let failed =
        |e| format!("failed to get includes from include server ({e}), preprocessing locally");
    let (count, files) = if env.include_server_inline {
        ask_inline(&socket, &cwd, &argv).map_err(failed)?
    } else {
        let paths = ask(&socket, &cwd, &argv).map_err(failed)?;
        let entries = entries(&paths).map_err(|e| e.to_string())?;
        let mut files = Vec::new();
        encode_files(&mut files, &entries, Codec::Lzo).map_err(|e| e.to_string())?;
        (entries.len(), files)
    };
    if count == 0 {
        return Err("include server gave up analyzing".into());
    }
    log::debug!(
        "{count} files from the include server ({})",
        if env.include_server_inline {
            "their contents in its answer"
        } else {
            "read from its mirrors"
        }
    );
    Ok(PumpJob {
        cwd,
        argv,
        files,
        dotd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn maps_mirror_paths_back() {
        assert_eq!(
            original_name("/dev/shm/tmpX.include_server-1-0/home/u/a.h.lzo").as_deref(),
            Some("/home/u/a.h")
        );
        assert_eq!(
            original_name("/tmp/x.include_server-1-0/padding/p/b.c.lzo.abs").as_deref(),
            Some("/p/b.c")
        );
        assert_eq!(original_name("/dev/shm/x").as_deref(), None);
    }

    #[test]
    fn argv_gets_output_and_target() {
        let (argv, dotd) = server_argv(&s(&["gcc", "-MD", "-c", "a.c"]), "a.c", "a.o");
        assert_eq!(
            argv,
            s(&["gcc", "-MD", "-c", "a.c", "-o", "a.o", "-MT", "a.o"])
        );
        assert_eq!(dotd, Some(PathBuf::from("a.d")));
        let (argv, dotd) = server_argv(
            &s(&[
                "gcc", "-MMD", "-MF", "x/y.d", "-MT", "t", "-c", "a.c", "-o", "o/a.o",
            ]),
            "a.c",
            "o/a.o",
        );
        assert_eq!(argv.len(), 10);
        assert_eq!(dotd, Some(PathBuf::from("x/y.d")));
        let (_, dotd) = server_argv(
            &s(&["gcc", "-MD", "-c", "a.c", "-o", "o/a.o"]),
            "a.c",
            "o/a.o",
        );
        assert_eq!(dotd, Some(PathBuf::from("o/a.d")));
        let (_, dotd) = server_argv(&s(&["gcc", "-c", "a.c"]), "a.c", "a.o");
        assert_eq!(dotd, None);
        let (argv, dotd) = server_argv(&s(&["gcc", "-MP", "-c", "a.c"]), "a.c", "a.o");
        assert_eq!(dotd, None);
        assert!(!argv.contains(&"-MT".to_string()));
    }

    #[test]
    fn argv_is_read_with_the_options_table() {
        // A linker item that looks like `-o` is not the output option.
        let (argv, _) = server_argv(&s(&["gcc", "-c", "a.c", "-Xlinker", "-omap"]), "a.c", "a.o");
        assert_eq!(argv.get(5..), Some(&s(&["-o", "a.o"])[..]), "{argv:?}");
        // The long spelling of -o is explicit: no second -o, the .d beside it.
        let (argv, dotd) = server_argv(
            &s(&["gcc", "-MD", "-c", "a.c", "--output=o/b.o"]),
            "a.c",
            "o/b.o",
        );
        assert_eq!(
            argv,
            s(&["gcc", "-MD", "-c", "a.c", "--output=o/b.o", "-MT", "o/b.o"])
        );
        assert_eq!(dotd, Some(PathBuf::from("o/b.d")));
        // Joined -MF and -MQ, and the long -MD.
        let (argv, dotd) = server_argv(
            &s(&[
                "gcc",
                "--write-dependencies",
                "-MFdep/x.d",
                "-MQt",
                "-c",
                "a.c",
            ]),
            "a.c",
            "a.o",
        );
        assert_eq!(dotd, Some(PathBuf::from("dep/x.d")));
        assert!(!argv.contains(&"-MT".to_string()), "{argv:?}");
    }

    #[test]
    fn only_jobs_the_server_accepts_go_as_pump_jobs() {
        let ok = |v: &[&str]| server_accepts(&s(v), "/home/u/p");
        let (argv, _) = server_argv(
            &s(&["gcc", "-O2", "-MD", "-Iinclude", "-c", "src/main.c"]),
            "src/main.c",
            "main.o",
        );
        assert_eq!(server_accepts(&argv, "/home/u/p"), Ok(()));
        assert_eq!(
            ok(&["gcc", "-c", "a.c", "-MF", "a.d", "-I/usr/local/include"]),
            Ok(())
        );
        // gcc reads /etc/x from here (`..` stops at `/`), the server would refuse it.
        let e = ok(&["gcc", "-c", "a.c", "-I../../../../etc/x"]).unwrap_err();
        assert!(e.contains("climbs out of the job's root"), "{e}");
        let e = ok(&["gcc", "-c", "a.c", "-Xpreprocessor", "-Iinc"]).unwrap_err();
        assert!(e.contains("-Xpreprocessor -I "), "{e}");
    }

    #[test]
    fn asks_a_real_include_server() {
        use crate::pump::server::IncludeServer;
        use std::sync::Arc;
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().canonicalize().unwrap();
        std::fs::write(dir.join("m.c"), "#include \"h.h\"\n#include <stdio.h>\n").unwrap();
        std::fs::write(dir.join("h.h"), "int h;\n").unwrap();
        let sock = dir.join("socket");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = Arc::new(IncludeServer::new(None, std::env::var_os("PATH")).unwrap());
        let s2 = server.clone();
        std::thread::spawn(move || s2.serve(listener));
        let argv = s(&["gcc", "-c", "m.c", "-o", "m.o"]);
        let paths = ask(&sock, &dir.display().to_string(), &argv).unwrap();
        let files = entries(&paths).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names[0], dir.join("m.c").to_str().unwrap());
        assert!(names.contains(&dir.join("h.h").to_str().unwrap()));
        assert!(files.iter().any(|f| f.name == "/usr/include"
            && matches!(&f.kind, FileKind::Link(t) if t.ends_with("../usr/include"))));
        assert!(!names.iter().any(|n| n.ends_with("stdio.h")));
        // A job the analyser can't cover: ARGC 0.
        std::fs::write(dir.join("abs.c"), "#include \"/etc/passwd\"\n").unwrap();
        let argv = s(&["gcc", "-c", "abs.c", "-o", "abs.o"]);
        let paths = ask(&sock, &dir.display().to_string(), &argv).unwrap();
        assert!(paths.is_empty());
    }
}
