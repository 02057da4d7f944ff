//! How a compiler on a distcc server is fenced in: a namespace sandbox (where the kernel
//! lets an unprivileged user make one) and Landlock read confinement (where the kernel has
//! it).
//!
//! **Namespaces.** Each compiler gets its own user, mount, network and IPC namespaces,
//! made by the daemon's unprivileged persona between fork and exec (no root needed where
//! unprivileged user namespaces are allowed). Inside, the whole mount tree is read-only
//! (`mount_setattr(MOUNT_ATTR_RDONLY, AT_RECURSIVE)`, Linux 5.12) except the job's dir
//! and an existing ccache cache, each bound read-write over itself; the network namespace
//! has only a loopback that is down, so nothing can be reached over IP (abstract Unix
//! sockets are per namespace too). The compiler keeps its uid (mapped to itself) and, once
//! it execs, has no capabilities in its namespace, so it cannot undo any of this. A
//! start-up probe ([`start`]) decides once whether this works and says so; where it does
//! not, compilers run as before. A job whose sandbox cannot be made runs without it
//! ([`super::job`]): the sandbox never fails a job that would have worked without it.
//!
//! **Landlock.** The option table keeps a request from *naming* a server file, but a
//! source can still ask the assembler for one (`asm(".incbin \"/home/x/secret\"")`), and
//! a pump request's symlinks may point anywhere. So each compiler runs under a Landlock
//! ruleset that lets it read only the system (`/usr`, `/lib*`, `/bin`, `/sbin`, `/etc`,
//! `/opt`, `/proc`, `/sys`, `/dev`), the dirs its programs come from (`PATH`,
//! `DISTCCD_PATH`, the masquerade dirs, an absolute compiler's own dir), `CCACHE_DIR` (or
//! ccache's default caches under `HOME`), any dirs in `DISTCCD_READ_DIRS` (ours, colon
//! separated), and its own job dir. Everything else — home dirs, other jobs' files under
//! the daemon's TMPDIR, /srv, /var — is unreadable to it. On a kernel without Landlock
//! nothing is restricted this way.
//!
//! Everything the child needs (paths as C strings, the id maps, the ruleset) is made in
//! the daemon before the fork; the child only makes system calls, which are safe between
//! fork and exec.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::settings::DaemonEnv;
use landlock::{AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr};

/// The system's read-only places a compiler needs.
const SYSTEM: &[&str] = &[
    "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/opt", "/nix", "/gnu",
    "/proc", "/sys", "/dev",
];

/// The dirs a compiler of this job may read: see the module doc. `program` is what runs;
/// an absolute one (`DISTCC_CMDLIST`, `--enable-tcp-insecure`) adds its own dir, since
/// the kernel reads a program to exec it.
pub(crate) fn readable(job_dir: &Path, env: &DaemonEnv, program: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = SYSTEM.iter().map(PathBuf::from).collect();
    if let Some(dir) = Path::new(program).parent().filter(|d| d.is_absolute()) {
        dirs.push(dir.to_path_buf());
    }
    for var in [&env.distccd_path, &env.path].into_iter().flatten() {
        dirs.extend(std::env::split_paths(var).filter(|p| p.is_absolute()));
    }
    dirs.extend(env.read_dirs.iter().cloned());
    dirs.extend(env.ccache_dirs.iter().cloned());
    dirs.extend(env.masquerade_dirs.iter().cloned());
    dirs.push(job_dir.to_path_buf());
    dirs
}

/// A Landlock ruleset, created for one compiler; `None` where the kernel has none.
pub(crate) struct Confinement(Option<OwnedFd>);

impl Confinement {
    /// Build the ruleset: reads are allowed beneath `dirs` only.
    pub(crate) fn reads_beneath(dirs: &[PathBuf]) -> Confinement {
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        let built = Ruleset::default()
            .handle_access(read)
            .and_then(|r| r.create())
            .and_then(|r| r.add_rules(landlock::path_beneath_rules(dirs, read)));
        match built {
            Ok(created) => Confinement(created.into()),
            Err(e) => {
                log::debug!("no Landlock confinement for compilers: {e}");
                Confinement(None)
            }
        }
    }

    /// In the child between fork and exec: restrict it for good. Only system calls here.
    pub(crate) fn enter(&self) -> std::io::Result<()> {
        let Some(fd) = &self.0 else {
            return Ok(());
        };
        // SAFETY: prctl and landlock_restrict_self take integers and a descriptor we own;
        // both are async-signal-safe system calls.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::syscall(libc::SYS_landlock_restrict_self, fd.as_raw_fd(), 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// How compilers are isolated, decided once at start by [`start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isolation {
    /// `--no-sandbox`, or the kernel (or its settings) would not let us.
    None,
    /// Own user, mount, network and IPC namespaces; `read_only`: the system is read-only
    /// (false on kernels before 5.12, which lack `mount_setattr`).
    Namespaces { read_only: bool },
}

/// [`Isolation`] as a number: 0 none, 1 namespaces, 2 namespaces with a read-only system.
static ISOLATION: AtomicU8 = AtomicU8::new(0);

/// What [`start`] decided (none until it ran: unit tests run compilers as before).
pub(crate) fn isolation() -> Isolation {
    match ISOLATION.load(Ordering::Relaxed) {
        0 => Isolation::None,
        n => Isolation::Namespaces { read_only: n == 2 },
    }
}

/// Where a compiler may write inside its namespace: its job dir, and a ccache cache that
/// exists (a masqueraded ccache keeps caching).
pub(crate) fn writable(job_dir: &Path, env: &DaemonEnv) -> Vec<PathBuf> {
    let mut dirs = vec![job_dir.to_path_buf()];
    dirs.extend(env.ccache_dirs.iter().filter(|d| d.is_dir()).cloned());
    dirs
}

/// The steps a child takes to enter its sandbox, named for the log.
const STEPS: &[&str] = &[
    "unshare",
    "prctl(PR_SET_DUMPABLE)",
    "write /proc/self/setgroups",
    "write /proc/self/uid_map",
    "write /proc/self/gid_map",
    "make mounts private",
    "mount_setattr (read-only system)",
    "bind a writable dir",
    "make a writable dir writable",
    "chdir",
];
const MOUNT_SETATTR_STEP: usize = 6;

/// A step that failed in the child, and its errno.
#[derive(Debug, Clone, Copy)]
struct Failed {
    step: usize,
    errno: i32,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = STEPS.get(self.step).copied().unwrap_or("?");
        write!(f, "{step}: {}", io::Error::from_raw_os_error(self.errno))
    }
}

/// `struct mount_attr` of `mount_setattr(2)` (its first version, 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const MOUNT_ATTR_RDONLY: u64 = 1;

/// One compiler's namespaces, prepared before the fork.
pub(crate) struct Namespace {
    /// `"<uid> <uid> 1"`: the compiler keeps its uid inside.
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    writable: Vec<CString>,
    /// The compiler's working dir, entered again once the job dir is bound over itself
    /// (the old working dir is on the read-only mount beneath).
    cwd: CString,
    read_only: bool,
}

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::other(format!("{}: a NUL in the path", p.display())))
}

impl Namespace {
    /// Prepare a sandbox where only `writable` may be written and the compiler runs in
    /// `cwd`; `None` when [`start`] found none to be had.
    pub(crate) fn prepare(writable: &[PathBuf], cwd: &Path) -> io::Result<Option<Namespace>> {
        match isolation() {
            Isolation::None => Ok(None),
            Isolation::Namespaces { read_only } => {
                Namespace::new(writable, cwd, read_only).map(Some)
            }
        }
    }

    fn new(writable: &[PathBuf], cwd: &Path, read_only: bool) -> io::Result<Namespace> {
        // SAFETY: getuid and getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Ok(Namespace {
            uid_map: format!("{uid} {uid} 1").into_bytes(),
            gid_map: format!("{gid} {gid} 1").into_bytes(),
            writable: writable
                .iter()
                .map(|p| c_path(p))
                .collect::<io::Result<_>>()?,
            cwd: c_path(cwd)?,
            read_only,
        })
    }

    /// In the child between fork and exec: enter the sandbox. Only system calls here.
    pub(crate) fn enter(&self) -> io::Result<()> {
        self.steps()
            .map_err(|f| io::Error::from_raw_os_error(f.errno))
    }

    fn steps(&self) -> Result<(), Failed> {
        let fail = |step: usize| Failed {
            step,
            errno: io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        };
        let ok = |rc: libc::c_long, step: usize| if rc == 0 { Ok(()) } else { Err(fail(step)) };
        let flags =
            libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC;
        // SAFETY: unshare, open, write, close, mount, mount_setattr and chdir with
        // pointers to C strings and buffers made before the fork; no allocation.
        unsafe {
            ok(libc::unshare(flags).into(), 0)?;
            // A daemon that dropped root is not dumpable, which leaves its /proc files
            // (and its children's) owned by root: the persona could not write its own id
            // maps. The compiler's exec sets this flag again anyway.
            ok(libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0).into(), 1)?;
            write_proc(c"/proc/self/setgroups", b"deny").map_err(|()| fail(2))?;
            write_proc(c"/proc/self/uid_map", &self.uid_map).map_err(|()| fail(3))?;
            write_proc(c"/proc/self/gid_map", &self.gid_map).map_err(|()| fail(4))?;
            if self.read_only {
                // One call: every mount read-only and private (nothing we do here reaches
                // the daemon's namespace, nothing mounted there later reaches us).
                let attr = MountAttr {
                    attr_set: MOUNT_ATTR_RDONLY,
                    attr_clr: 0,
                    propagation: libc::MS_PRIVATE,
                    userns_fd: 0,
                };
                ok(
                    mount_setattr(c"/", libc::AT_RECURSIVE, &attr),
                    MOUNT_SETATTR_STEP,
                )?;
                let writable = MountAttr {
                    attr_set: 0,
                    attr_clr: MOUNT_ATTR_RDONLY,
                    propagation: 0,
                    userns_fd: 0,
                };
                for dir in &self.writable {
                    let bind = libc::mount(
                        dir.as_ptr(),
                        dir.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    );
                    ok(bind.into(), 7)?;
                    ok(mount_setattr(dir, 0, &writable), 8)?;
                }
            } else {
                let private = libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                );
                ok(private.into(), 5)?;
            }
            ok(libc::chdir(self.cwd.as_ptr()).into(), 9)?;
        }
        Ok(())
    }
}

/// `mount_setattr(2)` on `path` (libc has no wrapper).
///
/// # Safety
/// A plain system call; `path` and `attr` live for the call.
unsafe fn mount_setattr(
    path: &std::ffi::CStr,
    flags: libc::c_int,
    attr: &MountAttr,
) -> libc::c_long {
    // SAFETY: see above.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags as libc::c_uint,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    }
}

/// Write `data` to a /proc file in one `write`, as the id-map files require.
///
/// # Safety
/// Only system calls; safe between fork and exec.
unsafe fn write_proc(path: &std::ffi::CStr, data: &[u8]) -> Result<(), ()> {
    // SAFETY: see above.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let errno = *libc::__errno_location();
        libc::close(fd);
        if n != data.len() as isize {
            *libc::__errno_location() = if n < 0 { errno } else { libc::EIO };
            return Err(());
        }
    }
    Ok(())
}

/// Try the sandbox in a throw-away child: what the first step to fail was, if one did.
fn probe(scratch: &Path, read_only: bool) -> Result<(), String> {
    let ns =
        Namespace::new(&[scratch.to_path_buf()], scratch, read_only).map_err(|e| e.to_string())?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 into a local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", io::Error::last_os_error()));
    }
    let [r, w] = fds;
    // SAFETY: the child only makes system calls (`steps`, write, _exit) and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let report = match ns.steps() {
            Ok(()) => [0i32, 0],
            Err(f) => [f.step as i32 + 1, f.errno],
        };
        // SAFETY: write from a local array, then leave without running destructors.
        unsafe {
            libc::write(w, report.as_ptr().cast(), std::mem::size_of_val(&report));
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the write end, then reading into a local array and
    // reaping our own child.
    let report = unsafe {
        libc::close(w);
        if pid < 0 {
            libc::close(r);
            return Err(format!("fork: {}", io::Error::last_os_error()));
        }
        let mut report = [-1i32; 2];
        let n = libc::read(
            r,
            report.as_mut_ptr().cast(),
            std::mem::size_of_val(&report),
        );
        libc::close(r);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        if n != std::mem::size_of_val(&report) as isize {
            return Err("the probe died".to_owned());
        }
        report
    };
    match report {
        [0, _] => Ok(()),
        [step, errno] => Err(Failed {
            step: (step - 1).max(0) as usize,
            errno,
        }
        .to_string()),
    }
}

/// Decide, once at start and after dropping root, how compilers will be isolated, and say
/// so: the daemon's unprivileged persona tries the sandbox in a throw-away child, with
/// `scratch` (the daemon's TMPDIR, where job dirs go) as the writable dir. `quiet` logs
/// the outcome at debug level (`--inetd` starts once per job).
pub(crate) fn start(enabled: bool, scratch: &Path, quiet: bool) -> Isolation {
    let say = |msg: String| {
        if quiet {
            log::debug!("{msg}");
        } else {
            // A start-up line: shown from `--log-level info`, like 3.4's, not at notice.
            log::info!(target: crate::trace::DETAIL, "{msg}");
        }
    };
    let isolation = if !enabled {
        say("--no-sandbox: compilers run without a namespace sandbox".to_owned());
        Isolation::None
    } else {
        match probe(scratch, true) {
            Ok(()) => {
                say(
                    "compilers run in a namespace sandbox (no network, system read-only, \
                     only their job dir writable)"
                        .to_owned(),
                );
                Isolation::Namespaces { read_only: true }
            }
            Err(full) => match probe(scratch, false) {
                Ok(()) => {
                    say(format!(
                        "compilers run in a namespace sandbox without network; the system \
                         stays writable to them ({full})"
                    ));
                    Isolation::Namespaces { read_only: false }
                }
                Err(why) => {
                    say(format!(
                        "namespaces unavailable ({why}): compilers run without a sandbox"
                    ));
                    Isolation::None
                }
            },
        }
    };
    ISOLATION.store(
        match isolation {
            Isolation::None => 0,
            Isolation::Namespaces { read_only: false } => 1,
            Isolation::Namespaces { read_only: true } => 2,
        },
        Ordering::Relaxed,
    );
    isolation
}

/// A job whose sandbox could not be made ran without one: warn the first time, then
/// only at debug level (one broken setting would otherwise log every job).
pub(crate) fn ran_without(why: &io::Error) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if WARNED.swap(true, Ordering::Relaxed) {
        log::debug!("a compiler ran without its namespace sandbox: {why}");
    } else {
        log::warn!(
            "a compiler ran without its namespace sandbox: {why} (further ones are logged \
             at debug level)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_their_step() {
        let f = Failed {
            step: MOUNT_SETATTR_STEP,
            errno: libc::ENOSYS,
        };
        assert!(
            f.to_string()
                .starts_with("mount_setattr (read-only system): "),
            "{f}"
        );
    }

    #[test]
    fn writable_dirs_are_the_job_dir_and_existing_caches() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("ccache");
        std::fs::create_dir(&cache).unwrap();
        let env = DaemonEnv {
            ccache_dirs: vec![cache.clone(), tmp.path().join("missing")],
            ..DaemonEnv::default()
        };
        let job = tmp.path().join("job");
        assert_eq!(writable(&job, &env), vec![job.clone(), cache]);
    }
}
