//! The include server (distcc 3.4's `include_server.py`, reference §5.2), run in threads of
//! the `pump` process: one request per unix-socket connection, `CDIR` + `ARGC`/`ARGV` in,
//! `ARGC`/`ARGV` of mirror paths out (`ARGC 0`: "preprocess this one locally").
//!
//! The answer names files under a *client root* of exactly three path components, as 3.4's
//! client expects (it drops three components to get the real path back):
//! * `<root><file>.lzo`: the file, LZO1X-compressed, sent verbatim as a FILE;
//! * `<root><link>`: a symlink whose target is what the LINK carries;
//! * `<root><dir>/forcing_technique_271828`: an empty file that makes the server create `<dir>`.
//!
//! A mirror is made from one version of its file ([`FileId`]) and remade, in place, when
//! the file's version differs. The version is kept in memory next to the mirror's path,
//! not in the mirror's name: the name is fixed by the protocol (3.4's client maps a mirror
//! back to the file by dropping the root and `.lzo`), and in-place replacement by rename
//! keeps the client root at one copy per file however often it is edited.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io::{IoSlice, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::analyser::{Analyser, Closure, Fx, Probes};
use super::stamp::{self, FileId, ReadError};
use super::{PumpError, defaults};
use crate::protocol::{Limits, ProtocolError, include};

/// The placeholder file name 3.4 uses (the client prints such entries as `DIRECTORY`).
pub(crate) const FORCING_NAME: &str = "forcing_technique_271828";

/// A request that takes longer than this to arrive is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times a job is analysed and mirrored afresh when a file changes in between.
const ANSWER_TRIES: u32 = 3;

/// What the client root holds, as written. Kept in memory so that reusing a mirror costs
/// no syscall, and changed under one lock together with the rename that changes the disk,
/// so that it always describes what is there.
#[derive(Debug, Default)]
struct Made {
    /// Mirror path → what it holds.
    files: HashMap<OsString, MirrorFile, Fx>,
    /// Link mirror path → its target.
    links: HashMap<PathBuf, String>,
    /// Placeholder files made.
    dirs: HashSet<PathBuf>,
}

/// One file's mirror as written.
#[derive(Debug, Clone)]
struct MirrorFile {
    /// The version of the file it holds.
    id: FileId,
    /// Whether that version's stamp had settled ([`FileId::settled`]) when it was read:
    /// only then is the mirror reused.
    settled: bool,
    /// Its bytes (LZO), for the answers that carry the files themselves.
    lzo: Arc<Vec<u8>>,
    /// The mirror's path and the client's path, as the answers spell them.
    path: Arc<str>,
    name: Arc<str>,
}

/// One entry of a job's answer.
#[derive(Debug, Clone)]
pub(crate) struct Mirrored {
    /// The mirror's path (3.4's answer).
    pub path: Arc<str>,
    /// The client's path it stands for.
    pub name: Arc<str>,
    pub content: Content,
}

/// What the client sends for a [`Mirrored`] entry.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// A file's LZO bytes (empty for a directory's placeholder).
    File(Arc<Vec<u8>>),
    /// A symlink's target.
    Link(String),
}

impl Mirrored {
    fn inline(&self) -> include::InlineEntry<'_> {
        match &self.content {
            Content::File(lzo) => include::InlineEntry::File {
                name: &self.name,
                lzo,
            },
            Content::Link(target) => include::InlineEntry::Link {
                name: &self.name,
                target,
            },
        }
    }
}

/// The directory holding the mirrors; removed when dropped.
#[derive(Debug)]
pub(crate) struct ClientRoot {
    /// The 3-component root that reply paths start with.
    root: PathBuf,
    /// What to remove at the end (the root itself, or its parent when padded).
    top: PathBuf,
    made: Mutex<Made>,
    /// Tests: trust stamps at once, so that only the stamp comparison decides.
    trust_fresh_stamps: bool,
}

impl ClientRoot {
    /// Make a fresh root under `client_tmp` (`DISTCC_CLIENT_TMP`), else `/dev/shm`, else
    /// `/tmp`; the base must have at most two components, and the root is padded with
    /// `/padding` to three.
    pub(crate) fn create(client_tmp: Option<&Path>) -> Result<ClientRoot, PumpError> {
        static GEN: AtomicU32 = AtomicU32::new(0);
        let mut bases: Vec<PathBuf> = Vec::new();
        if let Some(b) = client_tmp {
            bases.push(b.to_path_buf());
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
            return Ok(ClientRoot {
                root,
                top,
                made: Mutex::default(),
                trust_fresh_stamps: false,
            });
        }
        Err(PumpError::ClientRoot(last))
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.root
    }

    fn under(&self, p: &Path) -> PathBuf {
        let rel = p.strip_prefix("/").unwrap_or(p);
        self.root.join(rel)
    }

    fn made(&self) -> MutexGuard<'_, Made> {
        self.made.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    pub(crate) fn trust_fresh_stamps(&mut self) {
        self.trust_fresh_stamps = true;
    }

    /// Write the mirrors of a closure and return the reply paths: files (the source
    /// first), symlinks, system dirs, placeholders. A file's mirror is reused while it
    /// holds the version the analysis read (`c.stamps`); otherwise that version is read
    /// again and mirrored. If the file is no longer that version, the closure may be wrong
    /// for it: [`PumpError::Changed`], and the caller analyses again.
    pub(crate) fn mirror(&self, c: &Closure) -> Result<Vec<Mirrored>, PumpError> {
        let mut reply = Vec::new();
        for (i, f) in c.files.iter().enumerate() {
            let line_name = c.line_names.get(f);
            let mut m = self.under(f).into_os_string();
            m.push(if line_name.is_some() {
                ".lzo.abs"
            } else {
                ".lzo"
            });
            let m = PathBuf::from(m);
            let Some(want) = c.stamps.get(i).copied().flatten() else {
                return Err(PumpError::Changed(format!(
                    "{} (not read by the analysis)",
                    f.display()
                )));
            };
            let made = self
                .made()
                .files
                .get(m.as_os_str())
                .filter(|mf| mf.id == want && mf.settled)
                .cloned();
            let mf = match made {
                Some(mf) => mf,
                None => self.mirror_file(f, want, line_name.map(PathBuf::as_path), &m)?,
            };
            reply.push(Mirrored {
                path: mf.path,
                name: mf.name,
                content: Content::File(mf.lzo),
            });
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
            let mut made = self.made();
            if made.links.get(&m) != Some(&target) {
                // A link retargeted since (`current -> v2`) is replaced, or the server
                // would read the old target's files.
                unlink_links_above(&mut made, &m, &self.root);
                if fs::symlink_metadata(&m).is_ok_and(|md| md.is_dir()) {
                    // A directory in earlier jobs: its mirrors go.
                    fs::remove_dir_all(&m).map_err(io(&m))?;
                    made.files.retain(|p, _| !Path::new(p).starts_with(&m));
                    made.dirs.retain(|p| !p.starts_with(&m));
                    made.links.retain(|p, _| !p.starts_with(&m));
                }
                replace_with_symlink(&m, &target).map_err(io(&m))?;
                made.links.insert(m.clone(), target.clone());
            }
            reply.push(Mirrored {
                path: m.display().to_string().into(),
                name: link.display().to_string().into(),
                content: Content::Link(target),
            });
        }
        for d in &c.dirs {
            let m = self.under(d).join(FORCING_NAME);
            let mut made = self.made();
            if !made.dirs.contains(&m) {
                unlink_links_above(&mut made, &m, &self.root);
                write_atomically(&m, &[]).map_err(io(&m))?;
                made.dirs.insert(m.clone());
            }
            reply.push(Mirrored {
                path: m.display().to_string().into(),
                name: d.join(FORCING_NAME).display().to_string().into(),
                content: Content::File(Arc::default()),
            });
        }
        Ok(reply)
    }

    /// Mirror version `want` of `f` at `m`, giving its bytes. Reading and compressing
    /// happen without the lock; the rename into place happens under it, and only if `f` is
    /// still `want`: a job slower than one that mirrored a newer version must not put the
    /// older one back.
    fn mirror_file(
        &self,
        f: &Path,
        want: FileId,
        line_name: Option<&Path>,
        m: &Path,
    ) -> Result<MirrorFile, PumpError> {
        let st = match stamp::read_stable(f) {
            Ok(st) => st,
            Err(ReadError::Io { path, source }) => {
                return Err(PumpError::Io {
                    what: path.display().to_string(),
                    source,
                });
            }
            Err(e) => return Err(PumpError::Changed(e.to_string())),
        };
        if st.id != want {
            return Err(PumpError::Changed(f.display().to_string()));
        }
        let mut data = st.data;
        if let Some(name) = line_name {
            data.splice(0..0, line_directive(name).into_bytes());
        }
        let lzo = crate::compress::compress(&data)
            .map_err(|e| PumpError::Compress(f.display().to_string(), e))?;
        unlink_links_above(&mut self.made(), m, &self.root);
        let tmp = write_tmp(m, &lzo).map_err(io(m))?;
        let mut made = self.made();
        if FileId::stat(f) != Some(want) {
            let _ = fs::remove_file(&tmp);
            return Err(PumpError::Changed(f.display().to_string()));
        }
        if let Err(e) = fs::rename(&tmp, m) {
            let _ = fs::remove_file(&tmp);
            return Err(io(m)(e));
        }
        let mf = MirrorFile {
            id: want,
            settled: st.settled || self.trust_fresh_stamps,
            lzo: Arc::new(lzo),
            path: m.display().to_string().into(),
            name: f.display().to_string().into(),
        };
        made.files.insert(m.as_os_str().to_owned(), mf.clone());
        Ok(mf)
    }
}

fn io(what: &Path) -> impl FnOnce(std::io::Error) -> PumpError + use<> {
    let what = what.display().to_string();
    move |source| PumpError::Io { what, source }
}

/// A directory that was a symlink when an earlier job mirrored it must not be written
/// through: that link points into the client's real tree. Remove such links above `m`.
fn unlink_links_above(made: &mut Made, m: &Path, root: &Path) {
    for a in m.ancestors().skip(1) {
        if a == root {
            break;
        }
        if made.links.remove(a).is_some() {
            log::debug!("{} is no longer a symlink", a.display());
            let _ = fs::remove_file(a);
        }
    }
}

/// Put a symlink to `target` at `path`, replacing what is there atomically.
fn replace_with_symlink(path: &Path, target: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = tmp_name(path);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
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
pub(crate) fn remove_stale(base: &Path) {
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

/// Write `parts` in turn with as few system calls as the kernel allows.
fn write_all_vectored(stream: &mut UnixStream, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match stream.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

/// A fresh name next to `path` for what will be renamed onto it.
fn tmp_name(path: &Path) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", N.fetch_add(1, Ordering::Relaxed)));
    PathBuf::from(tmp)
}

/// Write `data` under a temp name next to `path` (to be renamed there).
fn write_tmp(path: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = tmp_name(path);
    fs::write(&tmp, data).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    Ok(tmp)
}

/// Write via a temp name and rename, so concurrent jobs never read half a mirror.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = write_tmp(path, data)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// The include server: one analyser and one client root for the whole process.
pub struct IncludeServer {
    analyser: Mutex<Analyser>,
    /// The analyser's compiler probes, reachable without its lock.
    probes: Arc<Probes>,
    /// The `PATH` compilers are probed with.
    path: Option<std::ffi::OsString>,
    root: ClientRoot,
    /// Tests: run between a job's analysis and its mirrors (with the attempt number).
    #[cfg(test)]
    after_analysis: Option<Box<dyn Fn(u32) + Send + Sync>>,
}

impl IncludeServer {
    /// An include server mirroring client files under `client_tmp` (see
    /// [`ClientRoot::create`]) and probing compilers on `path`.
    pub fn new(
        client_tmp: Option<&Path>,
        path: Option<std::ffi::OsString>,
    ) -> Result<IncludeServer, PumpError> {
        let analyser = Analyser::with_path(path);
        Ok(IncludeServer {
            probes: analyser.probes(),
            path: analyser.path(),
            analyser: Mutex::new(analyser),
            root: ClientRoot::create(client_tmp)?,
            #[cfg(test)]
            after_analysis: None,
        })
    }

    /// The answer to one request: its entries, or none for "not covered". The mirrors
    /// are made outside the analyser's lock; a file that changes between analysis and
    /// mirror makes the job start over, a few times at most.
    pub(crate) fn answer(&self, req: &include::IncludeRequest) -> Vec<Mirrored> {
        let mut attempt = 1;
        loop {
            // A compiler seen for the first time is probed before the analyser's lock
            // is taken, so other jobs go on meanwhile.
            let probed = self
                .probes
                .warm(Path::new(&req.cwd), &req.argv, self.path.as_deref());
            let closure = {
                let mut an = match self.analyser.lock() {
                    Ok(a) => a,
                    Err(poisoned) => poisoned.into_inner(),
                };
                an.analyse_probed(Path::new(&req.cwd), &req.argv, probed)
            };
            #[cfg(test)]
            if let Some(hook) = &self.after_analysis {
                hook(attempt);
            }
            let result = closure
                .map_err(PumpError::from)
                .and_then(|c| self.root.mirror(&c));
            match result {
                Ok(paths) => return paths,
                Err(PumpError::Changed(what)) if attempt < ANSWER_TRIES => {
                    log::debug!("{what} changed under the job; analysing it again");
                    // A change no watch reported (a hard link's new ctime) must not make
                    // every retry reuse the stamp the mirror just found wrong.
                    match self.analyser.lock() {
                        Ok(mut a) => a.distrust(),
                        Err(poisoned) => poisoned.into_inner().distrust(),
                    }
                    attempt += 1;
                }
                Err(e) => {
                    log::warn!("{e}; the client will preprocess {:?} locally", req.argv);
                    return Vec::new();
                }
            }
        }
    }

    /// Serve one connection: read a request, write the answer.
    pub(crate) fn handle(&self, mut stream: UnixStream) -> Result<(), PumpError> {
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
        let answer = self.answer(&req);
        log::debug!("{} paths for {:?}", answer.len(), req.argv);
        if req.inline {
            let entries: Vec<include::InlineEntry> = answer.iter().map(Mirrored::inline).collect();
            let parts = include::inline_reply_parts(&entries);
            return write_all_vectored(&mut stream, &parts.slices()).map_err(io);
        }
        let paths: Vec<String> = answer.into_iter().map(|m| m.path.to_string()).collect();
        stream.write_all(&include::encode_reply(&paths)).map_err(io)
    }

    /// Accept connections forever. Each is served by an idle worker thread, or a new one
    /// when none is idle (a slow client or a compiler probe never holds up the others);
    /// workers stay for the next job, because starting a thread per job (its stack's page
    /// faults included) cost a tenth of the include server's time.
    pub fn serve(self: Arc<Self>, listener: UnixListener) {
        let (tx, rx) = std::sync::mpsc::channel::<UnixStream>();
        let rx = Arc::new(Mutex::new(rx));
        // Workers waiting for a connection that no connection was sent to yet.
        let idle = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for conn in listener.incoming() {
            match conn {
                Ok(stream) => {
                    // Reserve an idle worker, or start one with this connection.
                    let reserved = idle
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                        .is_ok();
                    if reserved {
                        // Can't fail: `rx` lives as long as this loop.
                        let _ = tx.send(stream);
                        continue;
                    }
                    let (me, rx, idle) = (self.clone(), rx.clone(), idle.clone());
                    std::thread::spawn(move || {
                        let mut next = Some(stream);
                        while let Some(stream) = next.take() {
                            if let Err(e) = me.handle(stream) {
                                log::warn!("include server: {e}");
                            }
                            idle.fetch_add(1, Ordering::AcqRel);
                            let got = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                            next = got.ok();
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

    fn mirror_paths(answer: Vec<Mirrored>) -> Vec<String> {
        answer.into_iter().map(|m| m.path.to_string()).collect()
    }

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
        let root = ClientRoot::create(None).unwrap();
        assert_eq!(root.path().components().count(), 4); // "/" + 3
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("a.h");
        fs::write(&f, "int x;\n").unwrap();
        let c = Closure {
            files: vec![f.clone()],
            system_links: vec![PathBuf::from("/usr/include")],
            dirs: [t.path().to_path_buf()].into(),
            stamps: vec![FileId::stat(&f)],
            ..Closure::default()
        };
        let paths = mirror_paths(root.mirror(&c).unwrap());
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

    fn unlzo(path: &str) -> Vec<u8> {
        crate::compress::decompress(&fs::read(path).unwrap(), 1 << 20).unwrap()
    }

    fn closure_of(f: &Path) -> Closure {
        Closure {
            files: vec![f.to_path_buf()],
            stamps: vec![FileId::stat(f)],
            ..Closure::default()
        }
    }

    #[test]
    fn a_mirror_is_remade_for_a_new_version() {
        let mut root = ClientRoot::create(None).unwrap();
        // Only the stamp comparison decides (no re-reading of fresh files).
        root.trust_fresh_stamps();
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("b.c");
        fs::write(&f, "int w = 1;\n").unwrap();
        let first = mirror_paths(root.mirror(&closure_of(&f)).unwrap());
        assert_eq!(unlzo(&first[0]), b"int w = 1;\n");
        // The analysis read a version the file no longer is: analyse again.
        crate::pump::stamp::tests::rewrite_keeping_mtime(&f, "int w = 3;\n");
        let c = closure_of(&f);
        crate::pump::stamp::tests::rewrite_keeping_mtime(&f, "int w = 4;\n");
        assert!(matches!(root.mirror(&c), Err(PumpError::Changed(_))));
        assert_eq!(unlzo(&first[0]), b"int w = 1;\n", "nothing installed");
        // Same size, same mtime: only the ctime tells.
        let second = mirror_paths(root.mirror(&closure_of(&f)).unwrap());
        assert_eq!(second, first, "the mirror keeps its name");
        assert_eq!(unlzo(&second[0]), b"int w = 4;\n");
        // No stamp from the analysis: nothing is shipped unchecked.
        let unchecked = Closure {
            files: vec![f.clone()],
            ..Closure::default()
        };
        assert!(matches!(
            root.mirror(&unchecked),
            Err(PumpError::Changed(_))
        ));
    }

    #[test]
    fn a_retargeted_link_is_replaced() {
        let root = ClientRoot::create(None).unwrap();
        let mut c = Closure::default();
        c.links
            .insert(PathBuf::from("/p/current"), PathBuf::from("/p/v1"));
        let paths = mirror_paths(root.mirror(&c).unwrap());
        assert_eq!(fs::read_link(&paths[0]).unwrap(), PathBuf::from("/p/v1"));
        c.links
            .insert(PathBuf::from("/p/current"), PathBuf::from("/p/v2"));
        let paths = mirror_paths(root.mirror(&c).unwrap());
        assert_eq!(fs::read_link(&paths[0]).unwrap(), PathBuf::from("/p/v2"));
        // The link became a directory with a file: the mirror must not write through
        // the old link (into the client's /p/v2).
        let t = tempfile::tempdir().unwrap();
        let real = t.path().canonicalize().unwrap();
        fs::create_dir(real.join("v2")).unwrap();
        let mut c = Closure::default();
        c.links.insert(real.join("cur"), real.join("v2"));
        let link = mirror_paths(root.mirror(&c).unwrap()).remove(0);
        assert_eq!(fs::read_link(&link).unwrap(), real.join("v2"));
        fs::create_dir(real.join("cur")).unwrap();
        let f = real.join("cur/x.h");
        fs::write(&f, "int x;\n").unwrap();
        let paths = mirror_paths(root.mirror(&closure_of(&f)).unwrap());
        assert!(fs::symlink_metadata(&link).unwrap().is_dir());
        assert_eq!(unlzo(&paths[0]), b"int x;\n");
        assert_eq!(fs::read_dir(real.join("v2")).unwrap().count(), 0);
        // And back to a link.
        let link2 = mirror_paths(root.mirror(&c).unwrap()).remove(0);
        assert_eq!(link2, link);
        assert_eq!(fs::read_link(&link).unwrap(), real.join("v2"));
    }

    /// A dir with `m.c` including `a.h`, an unused `b.h`, and the request to compile it.
    fn m_c_with_two_headers() -> (tempfile::TempDir, PathBuf, PathBuf, include::IncludeRequest) {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().canonicalize().unwrap();
        let f = dir.join("m.c");
        fs::write(&f, "#include \"a.h\"\n").unwrap();
        fs::write(dir.join("a.h"), "").unwrap();
        fs::write(dir.join("b.h"), "").unwrap();
        let req = include::IncludeRequest {
            cwd: dir.display().to_string(),
            argv: ["gcc", "-c", "m.c", "-o", "m.o"].map(String::from).to_vec(),
            inline: false,
        };
        (t, dir, f, req)
    }

    #[test]
    fn a_file_changed_between_analysis_and_mirror_restarts_the_job() {
        use crate::pump::stamp::tests::rewrite_keeping_mtime;
        let (_t, dir, f, req) = m_c_with_two_headers();
        // Changed once, after the first analysis: the second attempt sees the new text.
        let mut server = IncludeServer::new(None, std::env::var_os("PATH")).unwrap();
        let f2 = f.clone();
        server.after_analysis = Some(Box::new(move |attempt| {
            if attempt == 1 {
                rewrite_keeping_mtime(&f2, "#include \"b.h\"\n");
            }
        }));
        let paths = mirror_paths(server.answer(&req));
        assert_eq!(unlzo(&paths[0]), b"#include \"b.h\"\n");
        let b_h = format!("{}.lzo", dir.join("b.h").display());
        assert!(paths.iter().any(|p| p.ends_with(&b_h)), "{paths:?}");
        // Changed after every analysis: given up, the client preprocesses locally.
        let mut server = IncludeServer::new(None, std::env::var_os("PATH")).unwrap();
        let f2 = f.clone();
        server.after_analysis = Some(Box::new(move |attempt| {
            rewrite_keeping_mtime(&f2, &format!("#include \"a.h\" // {attempt}\n"));
        }));
        assert!(mirror_paths(server.answer(&req)).is_empty());
    }

    #[test]
    fn a_changed_source_reaches_the_reply() {
        let (_t, dir, f, req) = m_c_with_two_headers();
        let server = IncludeServer::new(None, std::env::var_os("PATH")).unwrap();
        let names = |paths: &[String]| -> Vec<String> {
            paths
                .iter()
                .filter_map(|p| crate::pump::client::original_name(p))
                .collect()
        };
        let first = mirror_paths(server.answer(&req));
        assert!(names(&first).contains(&dir.join("a.h").display().to_string()));
        crate::pump::stamp::tests::rewrite_keeping_mtime(&f, "#include \"b.h\"\n");
        let second = mirror_paths(server.answer(&req));
        assert_eq!(unlzo(&second[0]), b"#include \"b.h\"\n");
        let second = names(&second);
        assert!(second.contains(&dir.join("b.h").display().to_string()));
        assert!(!second.contains(&dir.join("a.h").display().to_string()));
    }

    /// An `INLN` request is answered with the files themselves: the same entries a client
    /// makes from the mirror paths of a 3.4-style answer.
    #[test]
    fn an_inline_answer_carries_what_the_mirrors_hold() {
        let (_t, dir, _f, mut req) = m_c_with_two_headers();
        let server = Arc::new(IncludeServer::new(None, std::env::var_os("PATH")).unwrap());
        let ask = |req: &include::IncludeRequest| {
            let (mut ours, theirs) = UnixStream::pair().unwrap();
            let s2 = server.clone();
            let t = std::thread::spawn(move || s2.handle(theirs));
            ours.write_all(&include::encode_request(req)).unwrap();
            let mut reply = Vec::new();
            ours.read_to_end(&mut reply).unwrap();
            t.join().unwrap().unwrap();
            reply
        };
        let (paths, _) = include::decode_reply(&ask(&req), Limits::default()).unwrap();
        let from_paths = crate::pump::client::entries(&paths).unwrap();
        req.inline = true;
        let reply = ask(&req);
        let (header, section) = reply.split_at(crate::protocol::HEADER_LEN);
        let len = include::decode_inline_header(header, Limits::default()).unwrap();
        assert_eq!(len, section.len());
        let inline = include::decode_files(section, Limits::default()).unwrap();
        assert_eq!(inline, from_paths);
        let names: Vec<&str> = inline.iter().map(|e| e.name.as_str()).collect();
        assert!(
            names.contains(&dir.join("a.h").to_str().unwrap()),
            "{names:?}"
        );
        assert!(
            !names.contains(&dir.join("b.h").to_str().unwrap()),
            "{names:?}"
        );
        let m_c = inline.iter().find(|e| e.name.ends_with("/m.c")).unwrap();
        let crate::protocol::FileKind::File(crate::protocol::Payload::Lzo(lzo)) = &m_c.kind else {
            panic!("{m_c:?}")
        };
        let text = crate::compress::decompress(lzo, 1 << 20).unwrap();
        assert!(text.ends_with(b"#include \"a.h\"\n"), "{text:?}");
    }
}
