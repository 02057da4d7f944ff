//! What a compiler may read on a distcc server (Landlock, where the kernel has it).
//!
//! The option table keeps a request from *naming* a server file, but a source can still
//! ask the assembler for one (`asm(".incbin \"/home/x/secret\"")`), and a pump request's
//! symlinks may point anywhere. So each compiler runs under a Landlock ruleset that lets
//! it read only the system (`/usr`, `/lib*`, `/bin`, `/sbin`, `/etc`, `/opt`, `/proc`,
//! `/sys`, `/dev`), the dirs its programs come from (`PATH`, `DISTCCD_PATH`, the
//! masquerade dirs, an absolute compiler's own dir), `CCACHE_DIR` (or ccache's default
//! caches under `HOME`), any dirs in `DISTCCD_READ_DIRS` (ours, colon
//! separated), and its own job dir. Everything else — home dirs, other jobs' files under
//! the daemon's TMPDIR, /srv, /var — is unreadable to it. Writes are not restricted here
//! (the daemon's unprivileged user and the job dir do that).
//!
//! The ruleset is built in the daemon before the fork; the child only makes two system
//! calls (`prctl(PR_SET_NO_NEW_PRIVS)` and `landlock_restrict_self`), which are safe
//! between fork and exec. On a kernel without Landlock nothing is restricted.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

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
