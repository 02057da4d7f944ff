//! Pick a host and lock one of its slots, like distcc 3.4's `where.c` (reference §2.4).
//!
//! Order: for slot 0, 1, 2, … and within each slot for each usable host in list order, try
//! a non-blocking lock on `cpu_<key>_<slot>`; the first success wins. So slot 0 of every
//! host fills first, then slot 1, and earlier hosts are preferred. A host is usable when it
//! is not `,down`, not excluded by the caller (hosts that already failed this job), not
//! backed off ([`crate::backoff`]) and the slot number is below its slot count.
//!
//! Local work (`--localslots`, `--localslots_cpp`) uses the same `cpu_localhost_<N>`
//! files as a `localhost` host, so all local kinds share one pool, as in 3.4.
//!
//! Better than 3.4: when every slot is busy, 3.4 sleeps `DISTCC_PAUSE_TIME_MSEC` (1 s) and
//! polls again. We watch the lock directory with inotify for `IN_CLOSE_WRITE`: every holder
//! (ours or C distcc's) opened its lock file for writing, so its release (or death, when
//! the kernel closes its files) produces that event and the waiter retries at once. The
//! pause remains as a fallback timeout in case an event is missed (e.g. no inotify).
//! While waiting we keep our lock files open between retries, because closing them would
//! itself be an event and make waiters wake each other in a loop.

use crate::backoff::Backoff;
use crate::hosts::{HostList, HostSpec};
use crate::lock::{LockError, SlotLock, lock_file_name};
use crate::settings::{ClientEnv, MIN_PAUSE};
use crate::temp::TempError;
use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors from the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    /// No host can take the job at all (all down, excluded or backed off, or no hosts):
    /// the client should compile locally.
    #[error("no usable host (all are down, backed off or already failed); compile locally")]
    NoUsableHost,
    /// A lock file could not be used.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The lock directory is unavailable.
    #[error(transparent)]
    Dir(#[from] TempError),
}

/// Which local pool to draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKind {
    /// Jobs that must run here (`--localslots`, default 4).
    Compile,
    /// Local preprocessing or include scanning for a remote job (`--localslots_cpp`,
    /// default 8). Take it *after* the remote lock and release it first (3.4's rule).
    Cpp,
}

/// A locked slot on a host of the list. Dropping it releases the slot.
#[derive(Debug)]
pub struct HostSlot {
    /// Index into [`HostList::hosts`].
    pub host_index: usize,
    /// Slot number, 0-based (for the monitor's `host[slot]`).
    pub slot: u32,
    /// Held for its `Drop`, which releases the slot.
    _lock: SlotLock,
}

impl HostSlot {
    /// The host this slot belongs to.
    pub(crate) fn host<'a>(&self, list: &'a HostList) -> &'a HostSpec {
        &list.hosts[self.host_index]
    }

    /// The lock file held.
    #[cfg(test)]
    pub(crate) fn lock_path(&self) -> &Path {
        self._lock.path()
    }
}

/// A locked local slot (`cpu_localhost_<slot>`). Dropping it releases the slot.
#[derive(Debug)]
pub struct LocalSlot {
    /// Slot number, 0-based.
    pub slot: u32,
    /// Held for its `Drop`, which releases the slot.
    _lock: SlotLock,
}

#[cfg(test)]
impl LocalSlot {
    /// The lock file held.
    pub(crate) fn lock_path(&self) -> &Path {
        self._lock.path()
    }
}

/// Slot picking in one lock directory.
#[derive(Debug, Clone)]
pub struct Scheduler {
    lock_dir: PathBuf,
    backoff: Backoff,
    pause: Duration,
}

impl Scheduler {
    /// A scheduler using `lock_dir` (which must exist), `backoff` to skip failed hosts, and
    /// `pause` as the fallback re-check interval while waiting.
    pub fn new(lock_dir: &Path, backoff: Backoff, pause: Duration) -> Scheduler {
        Scheduler {
            lock_dir: lock_dir.to_path_buf(),
            backoff,
            pause: pause.max(MIN_PAUSE),
        }
    }

    /// The client's scheduler: `$DISTCC_DIR/lock` (created), with the backoff period and
    /// pause its settings name.
    pub(crate) fn for_client(env: &ClientEnv) -> Result<Scheduler, SchedError> {
        let dir = crate::temp::lock_dir(&env.dirs)?;
        let backoff = Backoff::new(&dir, env.backoff_period);
        Ok(Scheduler::new(&dir, backoff, env.pause))
    }

    /// The backoff bookkeeping (same directory), for marking and clearing hosts.
    pub(crate) fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Indices of hosts that may take a job now, in list order.
    fn usable_hosts(&self, list: &HostList, exclude: &[usize]) -> Vec<usize> {
        (0..list.hosts.len())
            .filter(|i| {
                let h = &list.hosts[*i];
                if h.down || exclude.contains(i) {
                    return false;
                }
                if self.backoff.is_backed_off(&h.lock_key()) {
                    log::debug!("skipping {}: backed off", h.spec);
                    return false;
                }
                true
            })
            .collect()
    }

    /// One pass over the slots, no waiting. `Ok(None)`: all usable slots are busy.
    /// `Err(NoUsableHost)`: there is nothing to wait for.
    pub fn try_lock_host(
        &self,
        list: &HostList,
        exclude: &[usize],
    ) -> Result<Option<HostSlot>, SchedError> {
        self.lock_host_inner(list, exclude, false)
    }

    /// Lock a slot on the best usable host, waiting as long as it takes for one to free.
    /// Fails with [`SchedError::NoUsableHost`] if no host is usable at all (checked again
    /// after every wakeup, since hosts can become backed off while we wait).
    pub fn lock_host(&self, list: &HostList, exclude: &[usize]) -> Result<HostSlot, SchedError> {
        match self.lock_host_inner(list, exclude, true)? {
            Some(s) => Ok(s),
            None => Err(SchedError::NoUsableHost), // unreachable when waiting
        }
    }

    fn lock_host_inner(
        &self,
        list: &HostList,
        exclude: &[usize],
        wait: bool,
    ) -> Result<Option<HostSlot>, SchedError> {
        let keys: Vec<String> = list.hosts.iter().map(HostSpec::lock_key).collect();
        let mut pool = LockPool::new(&self.lock_dir);
        let found = self.wait_loop(&mut pool, wait, || {
            let usable = self.usable_hosts(list, exclude);
            if usable.is_empty() {
                return None;
            }
            let mut order = Vec::new();
            let max = usable
                .iter()
                .map(|i| list.hosts[*i].slots)
                .max()
                .unwrap_or(0);
            for slot in 0..max {
                for &i in &usable {
                    if slot < list.hosts[i].slots {
                        order.push((i, keys[i].clone(), slot));
                    }
                }
            }
            Some(order)
        })?;
        Ok(found.map(|(i, slot, lock)| {
            log::debug!("locked {} slot {slot}", list.hosts[i].spec);
            HostSlot {
                host_index: i,
                slot,
                _lock: lock,
            }
        }))
    }

    /// One pass over the local pool `kind`, no waiting.
    pub fn try_lock_local(
        &self,
        list: &HostList,
        kind: LocalKind,
    ) -> Result<Option<LocalSlot>, SchedError> {
        self.lock_local_inner(list, kind, false)
    }

    /// Lock a local slot of the pool `kind` (`cpu_localhost_<N>`), waiting for one to free.
    pub fn lock_local(&self, list: &HostList, kind: LocalKind) -> Result<LocalSlot, SchedError> {
        match self.lock_local_inner(list, kind, true)? {
            Some(s) => Ok(s),
            None => Err(SchedError::NoUsableHost),
        }
    }

    fn lock_local_inner(
        &self,
        list: &HostList,
        kind: LocalKind,
        wait: bool,
    ) -> Result<Option<LocalSlot>, SchedError> {
        let n = match kind {
            LocalKind::Compile => list.local_slots,
            LocalKind::Cpp => list.local_slots_cpp,
        }
        .max(1);
        let mut pool = LockPool::new(&self.lock_dir);
        let candidates: Vec<(usize, String, u32)> = (0..n)
            .map(|slot| (usize::MAX, "localhost".to_string(), slot))
            .collect();
        if let Some((_, slot, lock)) =
            self.wait_loop(&mut pool, false, || Some(candidates.clone()))?
        {
            return Ok(Some(LocalSlot { slot, _lock: lock }));
        }
        if !wait {
            return Ok(None);
        }
        // All local slots are busy. Local slots are interchangeable and held briefly, so
        // queue on one of them in the kernel (spread by pid) rather than waking every waiter
        // on every release, which with `make -j256` and 8 cpp slots cost more CPU than the
        // jobs themselves.
        let slot = std::process::id() % n;
        let mut lock = SlotLock::open(&self.lock_dir.join(lock_file_name("localhost", slot)))?;
        log::debug!("all local slots busy; queueing for slot {slot}");
        lock.lock_blocking()?;
        Ok(Some(LocalSlot { slot, _lock: lock }))
    }

    /// Try the candidates that `order` lists (None: nothing usable), and if `wait`, keep
    /// retrying whenever the lock directory reports a close (or the pause elapses).
    fn wait_loop(
        &self,
        pool: &mut LockPool,
        wait: bool,
        order: impl Fn() -> Option<Vec<(usize, String, u32)>>,
    ) -> Result<Option<(usize, u32, SlotLock)>, SchedError> {
        let mut watch: Option<DirWatch> = None;
        let mut announced = false;
        loop {
            let Some(candidates) = order() else {
                return Err(SchedError::NoUsableHost);
            };
            if candidates.is_empty() {
                return Err(SchedError::NoUsableHost);
            }
            for (i, key, slot) in &candidates {
                if let Some(lock) = pool.try_take(key, *slot)? {
                    return Ok(Some((*i, *slot, lock)));
                }
            }
            if !wait {
                return Ok(None);
            }
            match &watch {
                None => {
                    // Register the watch *before* the next pass, so a release between that
                    // pass and the wait is not missed; then go round once more at once.
                    watch = match DirWatch::new(&self.lock_dir) {
                        Ok(w) => Some(w),
                        Err(e) => {
                            log::debug!(
                                "inotify unavailable ({e}); polling every {:?}",
                                self.pause
                            );
                            std::thread::sleep(self.pause);
                            None
                        }
                    };
                }
                Some(w) => {
                    if !announced {
                        log::debug!("all slots busy; waiting for one to be released");
                        announced = true;
                    }
                    if let Err(e) = w.wait(self.pause) {
                        log::debug!("inotify wait failed ({e}); sleeping {:?}", self.pause);
                        std::thread::sleep(self.pause);
                    }
                }
            }
        }
    }
}

/// Lock files opened during one pick, kept open across retries (see the module notes).
struct LockPool {
    dir: PathBuf,
    open: HashMap<(String, u32), SlotLock>,
}

impl LockPool {
    fn new(dir: &Path) -> LockPool {
        LockPool {
            dir: dir.to_path_buf(),
            open: HashMap::new(),
        }
    }

    /// Try to lock `cpu_<key>_<slot>`; on success the lock leaves the pool.
    fn try_take(&mut self, key: &str, slot: u32) -> Result<Option<SlotLock>, LockError> {
        let id = (key.to_string(), slot);
        let lock = match self.open.get_mut(&id) {
            Some(l) => l,
            None => {
                let l = SlotLock::open(&self.dir.join(lock_file_name(key, slot)))?;
                self.open.entry(id.clone()).or_insert(l)
            }
        };
        if lock.try_lock()? {
            Ok(self.open.remove(&id))
        } else {
            Ok(None)
        }
    }
}

/// An inotify watch for `IN_CLOSE_WRITE` on one directory.
struct DirWatch {
    fd: OwnedFd,
}

impl DirWatch {
    fn new(dir: &Path) -> io::Result<DirWatch> {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)?;
        inotify::add_watch(&fd, dir, inotify::WatchFlags::CLOSE_WRITE)?;
        Ok(DirWatch { fd })
    }

    /// Wait up to `timeout` for at least one event, then drain all pending events.
    fn wait(&self, timeout: Duration) -> io::Result<()> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let timeout = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match poll(&mut [PollFd::new(&self.fd, PollFlags::IN)], Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let mut buf = [0u8; 4096];
        // Drained when the read would block (or fails).
        while matches!(rustix::io::read(&self.fd, &mut buf), Ok(n) if n > 0) {}
        Ok(())
    }
}

#[cfg(test)]
mod tests;
