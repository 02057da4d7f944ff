//! The include server (distcc 3.4's `include_server.py`, reference §5.2), run in threads of
//! the `pump` process: one request per unix-socket connection, `CDIR` + `ARGC`/`ARGV` in,
//! `ARGC`/`ARGV` of mirror paths out (`ARGC 0`: "preprocess this one locally").
//!
//! The answer names files under a *client root* of exactly three path components, as 3.4's
//! client expects (it drops three components to get the real path back):
//! * `<root><file>.lzo`: the file, LZO1X-compressed, sent verbatim as a FILE;
//! * `<root><link>`: a symlink whose target is what the LINK carries;
//! * `<root><dir>/forcing_technique_271828`: an empty file that makes the server create `<dir>`.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::analyser::{Analyser, Closure};
use super::{PumpError, defaults};
use crate::protocol::{Limits, ProtocolError, include};

/// The placeholder file name 3.4 uses (the client prints such entries as `DIRECTORY`).
pub const FORCING_NAME: &str = "forcing_technique_271828";

/// A request that takes longer than this to arrive is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The directory holding the mirrors; removed when dropped.
#[derive(Debug)]
pub struct ClientRoot {
    /// The 3-component root that reply paths start with.
    root: PathBuf,
    /// What to remove at the end (the root itself, or its parent when padded).
    top: PathBuf,
}

impl ClientRoot {
    /// Make a fresh root under `DISTCC_CLIENT_TMP`, else `/dev/shm`, else `/tmp`; the base
    /// must have at most two components, and the root is padded with `/padding` to three.
    pub fn create() -> Result<ClientRoot, PumpError> {
        static GEN: AtomicU32 = AtomicU32::new(0);
        let mut bases: Vec<PathBuf> = Vec::new();
        if let Some(b) = std::env::var_os("DISTCC_CLIENT_TMP") {
            bases.push(b.into());
        }
        bases.extend([PathBuf::from("/dev/shm"), PathBuf::from("/tmp")]);
        let mut last = String::from("no usable directory");
        for base in bases {
            let n = base.components().count().saturating_sub(1);
            if !base.is_absolute() || n > 2 || n == 0 {
                last = format!(
                    "{} must be an absolute path of 1 or 2 components",
                    base.display()
                );
                continue;
            }
            remove_stale(&base);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let top = base.join(format!(
                "tmp{nanos:08x}.include_server-{}-{}",
                std::process::id(),
                GEN.fetch_add(1, Ordering::Relaxed)
            ));
            let mut builder = fs::DirBuilder::new();
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            match builder.create(&top) {
                Ok(()) => {}
                Err(e) => {
                    last = format!("can't create {}: {e}", top.display());
                    continue;
                }
            }
            let root = if n == 1 {
                top.join("padding")
            } else {
                top.clone()
            };
            if let Err(e) = fs::create_dir_all(&root) {
                last = format!("can't create {}: {e}", root.display());
                continue;
            }
            return Ok(ClientRoot { root, top });
        }
        Err(PumpError::ClientRoot(last))
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    fn under(&self, p: &Path) -> PathBuf {
        let rel = p.strip_prefix("/").unwrap_or(p);
        self.root.join(rel)
    }

    /// Write the mirrors of a closure (once per file: later jobs reuse them) and return the
    /// reply paths: files (the source first), symlinks, system dirs, placeholders.
    pub fn mirror(&self, c: &Closure) -> Result<Vec<String>, PumpError> {
        let io = |what: &Path| {
            let what = what.display().to_string();
            move |source| PumpError::Io { what, source }
        };
        let mut reply = Vec::new();
        for f in &c.files {
            let line_name = c.line_names.get(f);
            let mut m = self.under(f).into_os_string();
            m.push(if line_name.is_some() {
                ".lzo.abs"
            } else {
                ".lzo"
            });
            let m = PathBuf::from(m);
            if !m.exists() {
                let mut data = fs::read(f).map_err(io(f))?;
                if let Some(name) = line_name {
                    data.splice(0..0, line_directive(name).into_bytes());
                }
                let lzo = crate::compress::compress(&data)
                    .map_err(|e| PumpError::Compress(f.display().to_string(), e))?;
                write_atomically(&m, &lzo).map_err(io(&m))?;
            }
            reply.push(m.display().to_string());
        }
        let links = c
            .links
            .iter()
            .map(|(l, t)| (l.clone(), t.display().to_string()))
            .chain(
                c.system_links
                    .iter()
                    .map(|d| (d.clone(), defaults::climbing_target(d))),
            );
        for (link, target) in links {
            let m = self.under(&link);
            if fs::symlink_metadata(&m).is_err() {
                if let Some(parent) = m.parent() {
                    fs::create_dir_all(parent).map_err(io(parent))?;
                }
                match std::os::unix::fs::symlink(&target, &m) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io(&m)(e)),
                }
            }
            reply.push(m.display().to_string());
        }
        for d in &c.dirs {
            let m = self.under(d).join(FORCING_NAME);
            if !m.exists() {
                write_atomically(&m, &[]).map_err(io(&m))?;
            }
            reply.push(m.display().to_string());
        }
        Ok(reply)
    }
}

impl Drop for ClientRoot {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.top) {
            log::debug!("can't remove {}: {e}", self.top.display());
        }
    }
}

/// Remove the client roots that include servers which no longer run left in `base` (a
/// killed `pump` can't clean up after itself), as 3.4's include server does at startup.
pub fn remove_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((_, tail)) = name.split_once(".include_server-") else {
            continue;
        };
        let Some(pid) = tail.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let gone = pid > 0
            && unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone && e.file_type().is_ok_and(|t| t.is_dir()) {
            log::debug!("removing {} of a dead include server", e.path().display());
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// `#line 1 "<name>"`, quoted as a C string literal.
fn line_directive(name: &Path) -> String {
    let mut quoted = String::new();
    for ch in name.to_string_lossy().chars() {
        if ch == '"' || ch == '\\' {
            quoted.push('\\');
        }
        quoted.push(ch);
    }
    format!("#line 1 \"{quoted}\"\n")
}

/// Write via a temp name and rename, so concurrent jobs never read half a mirror.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    static N: AtomicU32 = AtomicU32::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", N.fetch_add(1, Ordering::Relaxed)));
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}

/// The include server: one analyser and one client root for the whole process.
pub struct IncludeServer {
    analyser: Mutex<Analyser>,
    root: ClientRoot,
}

impl IncludeServer {
    pub fn new() -> Result<IncludeServer, PumpError> {
        Ok(IncludeServer {
            analyser: Mutex::new(Analyser::new()),
            root: ClientRoot::create()?,
        })
    }

    pub fn root(&self) -> &ClientRoot {
        &self.root
    }

    /// The reply for one request: mirror paths, or empty for "not covered".
    pub fn answer(&self, req: &include::IncludeRequest) -> Vec<String> {
        let closure = {
            let mut an = match self.analyser.lock() {
                Ok(a) => a,
                Err(poisoned) => poisoned.into_inner(),
            };
            an.analyse(Path::new(&req.cwd), &req.argv)
        };
        let result = closure
            .map_err(PumpError::from)
            .and_then(|c| self.root.mirror(&c));
        match result {
            Ok(paths) => paths,
            Err(e) => {
                log::warn!("{e}; the client will preprocess {:?} locally", req.argv);
                Vec::new()
            }
        }
    }

    /// Serve one connection: read a request, write the answer.
    pub fn handle(&self, mut stream: UnixStream) -> Result<(), PumpError> {
        let io = |source| PumpError::Io {
            what: "include-server connection".into(),
            source,
        };
        stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(io)?;
        let mut buf = Vec::new();
        let req = loop {
            match include::decode_request(&buf, Limits::default()) {
                Ok((req, _)) => break req,
                Err(ProtocolError::Incomplete) => {}
                Err(e) => return Err(PumpError::Protocol(e)),
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = stream.read(&mut chunk).map_err(io)?;
            if n == 0 {
                return Err(PumpError::Protocol(ProtocolError::Incomplete));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let paths = self.answer(&req);
        log::debug!("{} paths for {:?}", paths.len(), req.argv);
        stream.write_all(&include::encode_reply(&paths)).map_err(io)
    }

    /// Accept connections forever, one thread each.
    pub fn serve(self: Arc<Self>, listener: UnixListener) {
        for conn in listener.incoming() {
            match conn {
                Ok(stream) => {
                    let me = self.clone();
                    std::thread::spawn(move || {
                        if let Err(e) = me.handle(stream) {
                            log::warn!("include server: {e}");
                        }
                    });
                }
                Err(e) => {
                    log::warn!("include server: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pump::analyser::Closure;

    #[test]
    fn stale_roots_of_dead_servers_go() {
        let t = tempfile::tempdir().unwrap();
        let dead = t.path().join("tmpa.include_server-2147483646-0");
        let alive = t
            .path()
            .join(format!("tmpb.include_server-{}-0", std::process::id()));
        let other = t.path().join("unrelated");
        for d in [&dead, &alive, &other] {
            fs::create_dir_all(d.join("x")).unwrap();
        }
        remove_stale(t.path());
        assert!(!dead.exists());
        assert!(alive.exists());
        assert!(other.exists());
    }

    #[test]
    fn root_has_three_components_and_mirrors() {
        let root = ClientRoot::create().unwrap();
        assert_eq!(root.path().components().count(), 4); // "/" + 3
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("a.h");
        fs::write(&f, "int x;\n").unwrap();
        let c = Closure {
            files: vec![f.clone()],
            system_links: vec![PathBuf::from("/usr/include")],
            dirs: [t.path().to_path_buf()].into(),
            ..Closure::default()
        };
        let paths = root.mirror(&c).unwrap();
        assert_eq!(paths.len(), 3);
        assert!(paths[0].ends_with("/a.h.lzo"));
        let lzo = fs::read(&paths[0]).unwrap();
        assert_eq!(
            crate::compress::decompress(&lzo, 1 << 20).unwrap(),
            b"int x;\n"
        );
        let target = fs::read_link(&paths[1]).unwrap();
        assert_eq!(
            target,
            PathBuf::from(defaults::climbing_target(Path::new("/usr/include")))
        );
        assert!(paths[2].ends_with(FORCING_NAME));
        let top = root.top.clone();
        drop(root);
        assert!(!top.exists());
    }
}
