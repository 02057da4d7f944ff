//! Job accounting: the one summary line per job that people grep, and the counters behind
//! `--stats` (distcc 3.4 `serve.c` `dcc_job_summary`, `stats.c`).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::job::Refusal;

/// How a job ended, in distcc's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobResult {
    TcpAccept,
    RejBadReq,
    CompileOk,
    CompileError,
    CompileTimeout,
    CliDisconn,
    Other,
}

impl JobResult {
    pub(crate) fn name(self) -> &'static str {
        match self {
            JobResult::TcpAccept => "TCP_ACCEPT",
            JobResult::RejBadReq => "REJ_BAD_REQ",
            JobResult::CompileOk => "COMPILE_OK",
            JobResult::CompileError => "COMPILE_ERROR",
            JobResult::CompileTimeout => "COMPILE_TIMEOUT",
            JobResult::CliDisconn => "CLI_DISCONN",
            JobResult::Other => "OTHER",
        }
    }
}

/// distcc's summary line: `client: IP:PORT RESULT exit:N sig:N core:N ret:N time:Nms [cc file]`.
/// The compiler and input follow only for COMPILE_OK and COMPILE_ERROR; otherwise the line
/// ends in a space, exactly like distccd's.
pub(crate) fn summary_line(
    peer: &str,
    result: JobResult,
    wait_status: u32,
    ret: i32,
    millis: u128,
    job: Option<(&str, &str)>,
) -> String {
    let exit = (wait_status >> 8) & 0xff;
    let sig = wait_status & 0x7f;
    let core = u32::from(wait_status & 0x80 != 0);
    let what = match (result, job) {
        (JobResult::CompileOk | JobResult::CompileError, Some((cc, file))) => {
            format!("{cc} {file}")
        }
        _ => String::new(),
    };
    format!(
        "client: {peer} {} exit:{exit} sig:{sig} core:{core} ret:{ret} time:{millis}ms {what}",
        result.name()
    )
}

/// The page's three windows (1, 5 and 15 minutes), as in distcc 3.4.
const WINDOWS: [Duration; 3] = [
    Duration::from_secs(60),
    Duration::from_secs(300),
    Duration::from_secs(900),
];

/// How often `dcc_io_rate` is re-measured at most (3.4: every 50 s); a page asked for
/// sooner shows the last rate.
const IO_INTERVAL: Duration = Duration::from_secs(50);

/// Time series behind the page's averages, kept for the longest window.
#[derive(Debug, Default)]
struct History {
    /// When the number of running compilers changed, and to what; the first entry is the
    /// last change before the longest window (or daemon start).
    running: VecDeque<(Instant, u64)>,
    /// When jobs' compilers stopped, however the job ended (3.4's `dcc_num_compiles*` count
    /// OK, error, timeout and client-gone jobs: those that taxed the CPU; a connection that
    /// never ran a compiler is not one).
    ended: VecDeque<Instant>,
    /// The largest peak RSS (kB) of a compiler we waited for, and that job's compiler.
    max_rss: Option<(u64, String)>,
    /// The last disk-traffic sample (sectors read + written) and the rate it gave.
    io: Option<(Instant, u64)>,
    io_rate: Option<i64>,
}

impl History {
    fn forget_before(&mut self, now: Instant) {
        let Some(cutoff) = now.checked_sub(WINDOWS[2]) else {
            return;
        };
        while self.running.len() > 1 && self.running.get(1).is_some_and(|(t, _)| *t <= cutoff) {
            self.running.pop_front();
        }
        while self.ended.front().is_some_and(|t| *t < cutoff) {
            self.ended.pop_front();
        }
    }

    /// The time-average number of running compilers over the `window` before `now`, in
    /// whole jobs as 3.4 prints it (its `kids_avg`, there sampled from finished jobs).
    fn average_running(&self, now: Instant, window: Duration) -> u64 {
        let start = now.checked_sub(window);
        let mut area = 0f64;
        let mut it = self.running.iter().peekable();
        while let Some((t, n)) = it.next() {
            let end = it.peek().map_or(now, |(next, _)| *next);
            let from = match start {
                Some(s) if *t < s => s,
                _ => *t,
            };
            if end > from {
                area += (end - from).as_secs_f64() * *n as f64;
            }
        }
        (area / window.as_secs_f64()) as u64
    }

    fn ended_within(&self, now: Instant, window: Duration) -> usize {
        self.ended
            .iter()
            .filter(|t| now.saturating_duration_since(**t) <= window)
            .count()
    }

    fn set_running(&mut self, now: Instant, n: u64) {
        self.running.push_back((now, n));
        self.forget_before(now);
    }

    /// `dcc_io_rate`: sectors read and written per second on this machine's disks since
    /// the previous sample (at least [`IO_INTERVAL`] apart; the first page measures from
    /// daemon start). -1 when /proc/diskstats cannot be read.
    fn io_rate(&mut self, now: Instant, sectors: Option<u64>) -> i64 {
        let Some(sectors) = sectors else {
            return -1;
        };
        match self.io {
            Some((then, before)) if self.io_rate.is_none() || now - then >= IO_INTERVAL => {
                let secs = (now - then).as_secs_f64().max(0.001);
                let rate = (sectors.saturating_sub(before) as f64 / secs) as i64;
                self.io = Some((now, sectors));
                self.io_rate = Some(rate);
                rate
            }
            Some(_) => self.io_rate.unwrap_or(-1),
            None => {
                self.io = Some((now, sectors));
                -1
            }
        }
    }
}

/// Counters for the `--stats` page.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    tcp_accept: AtomicU64,
    rej_bad_req: AtomicU64,
    rej_overload: AtomicU64,
    compile_ok: AtomicU64,
    compile_error: AtomicU64,
    compile_timeout: AtomicU64,
    cli_disconn: AtomicU64,
    other: AtomicU64,
    running: AtomicU64,
    /// The configured limit (`--jobs`): 3.4's `dcc_max_kids`.
    max_kids: u64,
    longest: Mutex<Option<(u128, String, String)>>,
    history: Mutex<History>,
    /// What `/metrics`, `/status.json` and the monitor page add to 3.4's page.
    live: Mutex<Live>,
}

/// Upper bounds (seconds) of the compile-time histogram's buckets; `+Inf` follows.
pub(crate) const COMPILE_BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// How many failures the status page remembers: enough to see a pattern, small enough
/// that a flood of bad requests costs nothing.
const RECENT_FAILURES: usize = 20;

/// Distinct client addresses counted one by one; later ones share [`OTHER_CLIENTS`], so a
/// scan from many addresses cannot grow the daemon's memory or the metrics page.
const MAX_CLIENTS: usize = 256;
pub(crate) const OTHER_CLIENTS: &str = "other";

/// A compiler running now.
#[derive(Debug, Clone)]
pub(crate) struct RunningJob {
    /// Which of the `--jobs` slots it holds (the lowest free one: slots are a picture for
    /// people, the semaphore does the real counting).
    pub slot: usize,
    /// `IP:PORT` of the client.
    pub client: String,
    pub compiler: String,
    pub file: String,
    pub started: Instant,
}

/// A job that did not compile cleanly, for the monitor's "recent failures".
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub at: SystemTime,
    pub client: String,
    /// A [`JobResult`] name or `REFUSED`.
    pub outcome: &'static str,
    pub compiler: String,
    pub file: String,
    pub detail: String,
}

/// The live state beyond 3.4's counters.
#[derive(Debug, Default)]
struct Live {
    next_id: u64,
    running: BTreeMap<u64, RunningJob>,
    queued: u64,
    failures: VecDeque<Failure>,
    clients: BTreeMap<String, u64>,
    refused: BTreeMap<&'static str, u64>,
    /// Per bucket of [`COMPILE_BUCKETS`] (not cumulative), then the overflow.
    buckets: [u64; COMPILE_BUCKETS.len() + 1],
    compile_seconds: f64,
    compiles: u64,
    received: u64,
    sent: u64,
}

/// Everything the new pages show, copied out under one lock.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub max_kids: u64,
    pub running: Vec<RunningJob>,
    pub queued: u64,
    pub failures: Vec<Failure>,
    /// (outcome in lower case, count), every outcome present even at 0.
    pub outcomes: Vec<(&'static str, u64)>,
    pub tcp_accept: u64,
    pub refused: Vec<(&'static str, u64)>,
    pub clients: Vec<(String, u64)>,
    /// Cumulative counts per bucket of [`COMPILE_BUCKETS`], then `+Inf`.
    pub buckets: Vec<u64>,
    pub compile_seconds: f64,
    pub compiles: u64,
    pub received: u64,
    pub sent: u64,
}

/// Why a request was refused, as a metrics label.
pub(crate) fn refusal_reason(r: &Refusal) -> &'static str {
    match r {
        Refusal::Whitelist(_) => "compiler_not_allowed",
        Refusal::Argv(_) => "bad_command_line",
        Refusal::Tree(_) => "bad_file_list",
        Refusal::NoCwd => "no_cwd",
        Refusal::TooLarge { .. } => "too_large",
        Refusal::Server(_) => "server_trouble",
        Refusal::Identity(_) => "compiler_identity",
        Refusal::BadIdentity(_) => "bad_identity",
    }
}

/// Marks a job as waiting for a compiler slot until dropped.
pub(crate) struct Queued<'a>(&'a Stats);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Ok(mut l) = self.0.live.lock() {
            l.queued = l.queued.saturating_sub(1);
        }
    }
}

/// Counts a compiler as running, and shows it on the status page, until dropped — also
/// when the job unwinds, so that a panicked job is not shown running forever.
pub(crate) struct Compiling<'a> {
    stats: &'a Stats,
    id: u64,
}

impl Drop for Compiling<'_> {
    fn drop(&mut self) {
        if let Ok(mut l) = self.stats.live.lock()
            && let Some(job) = l.running.remove(&self.id)
        {
            let secs = job.started.elapsed().as_secs_f64();
            let i = COMPILE_BUCKETS
                .iter()
                .position(|b| secs <= *b)
                .unwrap_or(COMPILE_BUCKETS.len());
            if let Some(b) = l.buckets.get_mut(i) {
                *b += 1;
            }
            l.compile_seconds += secs;
            l.compiles += 1;
        }
        self.stats.job_stopped();
    }
}

impl Stats {
    /// Counters for a daemon allowing `max_kids` compilers at once; the disk-traffic
    /// baseline is taken now, so the first page already has a rate.
    pub(crate) fn new(max_kids: u64) -> Stats {
        let stats = Stats {
            max_kids,
            ..Stats::default()
        };
        if let Ok(mut h) = stats.history.lock() {
            let now = Instant::now();
            h.running.push_back((now, 0));
            h.io_rate(now, disk_sectors());
        }
        stats
    }

    pub(crate) fn record(&self, result: JobResult) {
        let c = match result {
            JobResult::TcpAccept => &self.tcp_accept,
            JobResult::RejBadReq => &self.rej_bad_req,
            JobResult::CompileOk => &self.compile_ok,
            JobResult::CompileError => &self.compile_error,
            JobResult::CompileTimeout => &self.compile_timeout,
            JobResult::CliDisconn => &self.cli_disconn,
            JobResult::Other => &self.other,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A compiler started; returns the number now running.
    pub(crate) fn job_started(&self) -> u64 {
        let n = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut h) = self.history.lock() {
            h.set_running(Instant::now(), n);
        }
        n
    }

    /// A compiler is no longer running (serve.rs calls this from a guard, so that a job
    /// that unwinds is not counted forever).
    pub(crate) fn job_stopped(&self) {
        let n = self
            .running
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        if let Ok(mut h) = self.history.lock() {
            let now = Instant::now();
            h.ended.push_back(now);
            h.set_running(now, n);
        }
    }

    /// The peak RSS (kB) of the compilers waited for so far, after `compiler`'s job: if it
    /// grew, this job's compiler set it.
    pub(crate) fn compiler_rss(&self, peak_kb: u64, compiler: &str) {
        if let Ok(mut h) = self.history.lock()
            && h.max_rss.as_ref().is_none_or(|(kb, _)| peak_kb > *kb)
        {
            h.max_rss = Some((peak_kb, compiler.to_owned()));
        }
    }

    /// A job finished in `millis`: remember it if it is the longest so far.
    pub(crate) fn job_ended(&self, millis: u128, compiler: &str, file: &str) {
        if let Ok(mut l) = self.longest.lock()
            && l.as_ref().is_none_or(|(m, _, _)| millis > *m)
        {
            *l = Some((millis, file.to_owned(), compiler.to_owned()));
        }
    }

    pub(crate) fn running(&self) -> u64 {
        self.running.load(Ordering::Relaxed)
    }

    /// A connection from `peer` (None: inetd over a pipe) was accepted.
    pub(crate) fn client(&self, peer: Option<IpAddr>) {
        let name = match peer {
            Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some() => v6
                .to_ipv4_mapped()
                .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
            Some(ip) => ip.to_string(),
            None => "inetd".to_owned(),
        };
        if let Ok(mut l) = self.live.lock() {
            let key = if l.clients.len() < MAX_CLIENTS || l.clients.contains_key(&name) {
                name
            } else {
                OTHER_CLIENTS.to_owned()
            };
            *l.clients.entry(key).or_default() += 1;
        }
    }

    /// A request of `bytes` (its source or files, as sent) was received.
    pub(crate) fn received(&self, bytes: usize) {
        if let Ok(mut l) = self.live.lock() {
            l.received = l.received.saturating_add(bytes as u64);
        }
    }

    /// A reply of `bytes` was sent.
    pub(crate) fn sent(&self, bytes: usize) {
        if let Ok(mut l) = self.live.lock() {
            l.sent = l.sent.saturating_add(bytes as u64);
        }
    }

    /// A connection or request was refused for `reason` (a metrics label).
    pub(crate) fn refused(&self, reason: &'static str) {
        if let Ok(mut l) = self.live.lock() {
            *l.refused.entry(reason).or_default() += 1;
        }
    }

    /// Remember a job that failed, for the monitor; only the newest few are kept.
    pub(crate) fn failed(
        &self,
        client: &str,
        outcome: &'static str,
        job: Option<(&str, &str)>,
        detail: &str,
    ) {
        let (compiler, file) = job.unwrap_or_default();
        if let Ok(mut l) = self.live.lock() {
            if l.failures.len() >= RECENT_FAILURES {
                l.failures.pop_front();
            }
            l.failures.push_back(Failure {
                at: SystemTime::now(),
                client: client.to_owned(),
                outcome,
                compiler: compiler.to_owned(),
                file: file.to_owned(),
                // Error texts can quote a request: keep a bounded part.
                detail: detail.chars().take(300).collect(),
            });
        }
    }

    /// A request refused before anything ran: counted by reason, shown as a failure.
    pub(crate) fn refusal(&self, client: &str, refusal: &Refusal) {
        self.refused(refusal_reason(refusal));
        self.failed(client, "REFUSED", None, &refusal.to_string());
    }

    /// A request that could not be read. A client that connected and left without a
    /// word (a port probe) is no failure.
    pub(crate) fn bad_request(
        &self,
        client: &str,
        result: JobResult,
        error: &crate::connection::ConnError,
    ) {
        if matches!(error, crate::connection::ConnError::NoAnswer) {
            return;
        }
        if result == JobResult::RejBadReq {
            self.refused("bad_request");
        }
        self.failed(client, result.name(), None, &error.to_string());
    }

    /// How a job that ran its compiler ended; all but a clean compile are shown as
    /// failures, with the compiler's exit status or signal.
    pub(crate) fn outcome(
        &self,
        client: &str,
        result: JobResult,
        wait_status: u32,
        job: Option<(&str, &str)>,
    ) {
        if result == JobResult::CompileOk {
            return;
        }
        let detail = match (wait_status & 0x7f, (wait_status >> 8) & 0xff) {
            (0, code) => format!("exit {code}"),
            (sig, _) => format!("signal {sig}"),
        };
        self.failed(client, result.name(), job, &detail);
    }

    /// A prepared job waits for a compiler slot until the guard is dropped.
    pub(crate) fn queued(&self) -> Queued<'_> {
        if let Ok(mut l) = self.live.lock() {
            l.queued += 1;
        }
        Queued(self)
    }

    /// `client`'s compiler for `file` starts now (the job holds a slot); counted and shown
    /// until the guard is dropped.
    pub(crate) fn compiling(&self, client: &str, compiler: &str, file: &str) -> Compiling<'_> {
        self.job_started();
        let mut id = 0;
        if let Ok(mut l) = self.live.lock() {
            id = l.next_id;
            l.next_id += 1;
            let slot = (0..)
                .find(|s| l.running.values().all(|j| j.slot != *s))
                .unwrap_or(0);
            l.running.insert(
                id,
                RunningJob {
                    slot,
                    client: client.to_owned(),
                    compiler: compiler.to_owned(),
                    file: file.to_owned(),
                    started: Instant::now(),
                },
            );
        }
        Compiling { stats: self, id }
    }

    /// A consistent copy of the counters and live state for `/metrics` and `/status.json`.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let outcomes = vec![
            ("compile_ok", g(&self.compile_ok)),
            ("compile_error", g(&self.compile_error)),
            ("compile_timeout", g(&self.compile_timeout)),
            ("client_disconnect", g(&self.cli_disconn)),
            ("bad_request", g(&self.rej_bad_req)),
            ("overload", g(&self.rej_overload)),
            ("other", g(&self.other)),
        ];
        let live = self.live.lock();
        let empty = Live::default();
        let l = match &live {
            Ok(l) => &**l,
            Err(_) => &empty,
        };
        let mut running: Vec<RunningJob> = l.running.values().cloned().collect();
        running.sort_by_key(|j| j.slot);
        let mut acc = 0;
        let buckets = l
            .buckets
            .iter()
            .map(|b| {
                acc += b;
                acc
            })
            .collect();
        Snapshot {
            max_kids: self.max_kids,
            running,
            queued: l.queued,
            failures: l.failures.iter().rev().cloned().collect(),
            outcomes,
            tcp_accept: g(&self.tcp_accept),
            refused: l.refused.iter().map(|(k, v)| (*k, *v)).collect(),
            clients: l.clients.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            buckets,
            compile_seconds: l.compile_seconds,
            compiles: l.compiles,
            received: l.received,
            sent: l.sent,
        }
    }

    /// The HTTP page distccd serves on the stats port (distcc 3.4's fields, in its order).
    pub(crate) fn page(&self, free_space_mb: i64) -> String {
        self.page_at(Instant::now(), free_space_mb, disk_sectors())
    }

    fn page_at(&self, now: Instant, free_space_mb: i64, sectors: Option<u64>) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (longest, longest_cc, longest_ms) =
            match self.longest.lock().ok().and_then(|l| l.clone()) {
                // Request text: escaped, so that a name cannot add lines to the page.
                Some((ms, file, cc)) => (
                    crate::trace::escape(&file).into_owned(),
                    crate::trace::escape(&cc).into_owned(),
                    ms as i64,
                ),
                None => ("none".into(), "none".into(), -1),
            };
        let (kids, compiles, (rss, rss_name), io_rate) = match self.history.lock() {
            Ok(mut h) => {
                h.forget_before(now);
                let kids = WINDOWS.map(|w| h.average_running(now, w));
                let compiles = WINDOWS.map(|w| h.ended_within(now, w));
                let rss = match &h.max_rss {
                    Some((kb, cc)) => (*kb, format!("({})", crate::trace::escape(cc))),
                    None => (0, "(none)".to_owned()),
                };
                (kids, compiles, rss, h.io_rate(now, sectors))
            }
            Err(_) => ([0; 3], [0; 3], (0, "(none)".to_owned()), -1),
        };
        let mut s =
            String::from("HTTP/1.0 200 OK\nContent-Type: text/plain\nConnection: close\n\n");
        let _ = write!(
            s,
            "argv /distccd\n<distccstats>\n\
             dcc_tcp_accept {}\ndcc_rej_bad_req {}\ndcc_rej_overload {}\n\
             dcc_compile_ok {}\ndcc_compile_error {}\ndcc_compile_timeout {}\n\
             dcc_cli_disconnect {}\ndcc_other {}\n\
             dcc_longest_job {longest}\ndcc_longest_job_compiler {longest_cc}\n\
             dcc_longest_job_time_msecs {longest_ms}\n\
             dcc_max_kids {}\ndcc_avg_kids1 {}\ndcc_avg_kids2 {}\ndcc_avg_kids3 {}\n\
             dcc_current_load {}\n",
            g(&self.tcp_accept),
            g(&self.rej_bad_req),
            g(&self.rej_overload),
            g(&self.compile_ok),
            g(&self.compile_error),
            g(&self.compile_timeout),
            g(&self.cli_disconn),
            g(&self.other),
            self.max_kids,
            kids[0],
            kids[1],
            kids[2],
            g(&self.running),
        );
        let load = load_average();
        let _ = write!(
            s,
            "dcc_load1 {:.2}\ndcc_load2 {:.2}\ndcc_load3 {:.2}\n\
             dcc_num_compiles1 {}\ndcc_num_compiles2 {}\ndcc_num_compiles3 {}\n\
             dcc_num_procstate_D 0\ndcc_max_RSS {rss}\ndcc_max_RSS_name {rss_name}\n\
             dcc_io_rate {io_rate}\ndcc_free_space {free_space_mb} MB\n</distccstats>\n",
            load[0], load[1], load[2], compiles[0], compiles[1], compiles[2],
        );
        s
    }
}

/// Sectors read and written so far on the machine's whole disks (`/proc/diskstats`,
/// fields 6 and 10; partitions are skipped so that nothing counts twice).
fn disk_sectors() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/diskstats").ok()?;
    Some(sum_disk_sectors(&text, |name| {
        std::path::Path::new("/sys/block").join(name).exists()
    }))
}

fn sum_disk_sectors(text: &str, whole_disk: impl Fn(&str) -> bool) -> u64 {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = f.get(2)?;
            if !whole_disk(name) {
                return None;
            }
            let read: u64 = f.get(5)?.parse().ok()?;
            let written: u64 = f.get(9)?.parse().ok()?;
            Some(read.saturating_add(written))
        })
        .fold(0u64, u64::saturating_add)
}

fn load_average() -> [f64; 3] {
    let mut l = [0f64; 3];
    // SAFETY: writes at most 3 doubles into l.
    unsafe { libc::getloadavg(l.as_mut_ptr(), 3) };
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_match_distcc() {
        assert_eq!(
            summary_line(
                "127.0.0.1:53686",
                JobResult::CompileOk,
                0,
                0,
                23,
                Some(("x86_64-linux-gnu-gcc", "hello.c"))
            ),
            "client: 127.0.0.1:53686 COMPILE_OK exit:0 sig:0 core:0 ret:0 time:23ms x86_64-linux-gnu-gcc hello.c"
        );
        assert_eq!(
            summary_line("10.0.0.1:1", JobResult::Other, 0, 0, 3, None),
            "client: 10.0.0.1:1 OTHER exit:0 sig:0 core:0 ret:0 time:3ms "
        );
        assert_eq!(
            summary_line(
                "h:1",
                JobResult::CompileError,
                0x100,
                0,
                5,
                Some(("gcc", "b.c"))
            ),
            "client: h:1 COMPILE_ERROR exit:1 sig:0 core:0 ret:0 time:5ms gcc b.c"
        );
        assert_eq!(
            summary_line(
                "h:1",
                JobResult::CompileError,
                0x8b,
                0,
                5,
                Some(("gcc", "b.c"))
            ),
            "client: h:1 COMPILE_ERROR exit:0 sig:11 core:1 ret:0 time:5ms gcc b.c"
        );
    }

    #[test]
    fn stats_page_counts() {
        let s = Stats::default();
        s.record(JobResult::CompileOk);
        s.record(JobResult::CompileOk);
        s.record(JobResult::RejBadReq);
        assert_eq!(s.job_started(), 1);
        s.job_ended(42, "gcc", "a.c");
        s.job_stopped();
        let page = s.page(100);
        assert!(page.starts_with("HTTP/1.0 200 OK\nContent-Type: text/plain\n"));
        assert!(page.contains("\ndcc_compile_ok 2\n"));
        assert!(page.contains("\ndcc_rej_bad_req 1\n"));
        assert!(page.contains("\ndcc_longest_job a.c\n"));
        assert!(page.contains("\ndcc_longest_job_time_msecs 42\n"));
        assert!(
            page.contains("\ndcc_max_kids 0\n"),
            "the limit, not the peak"
        );
        assert!(Stats::new(6).page(1).contains("\ndcc_max_kids 6\n"));
        assert!(page.ends_with("dcc_free_space 100 MB\n</distccstats>\n"));
        assert!(page.contains("\ndcc_current_load 0\n"));
    }

    fn field(page: &str, name: &str) -> String {
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing: {page}"))
            .to_owned()
    }

    #[test]
    fn averages_count_running_jobs_and_finished_compiles_per_window() {
        let t0 = Instant::now();
        let s = Stats::new(4);
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        {
            let mut h = s.history.lock().unwrap();
            h.running.clear();
            h.running.push_back((t0, 0));
            // Two compilers for the whole of minutes 0-10, a third for minute 9 only.
            h.set_running(at(0), 2);
            h.set_running(at(540), 3);
            h.set_running(at(600), 0);
            for m in [0u64, 4, 8, 9, 9] {
                h.ended.push_back(at(m * 60 + 30));
            }
        }
        let page = s.page_at(at(600), 1, Some(0));
        assert_eq!(field(&page, "dcc_avg_kids1"), "3", "{page}");
        assert_eq!(field(&page, "dcc_avg_kids2"), "2", "{page}");
        // 15 minutes: 2×540 s + 3×60 s = 1260 job-seconds over 900 s.
        assert_eq!(field(&page, "dcc_avg_kids3"), "1", "{page}");
        assert_eq!(field(&page, "dcc_num_compiles1"), "2", "{page}");
        assert_eq!(field(&page, "dcc_num_compiles2"), "3", "{page}");
        assert_eq!(field(&page, "dcc_num_compiles3"), "5", "{page}");
        // Five minutes later with nothing running, minute averages fall to zero.
        let page = s.page_at(at(900), 1, Some(0));
        assert_eq!(field(&page, "dcc_avg_kids1"), "0", "{page}");
        assert_eq!(field(&page, "dcc_num_compiles1"), "0", "{page}");
        assert_eq!(field(&page, "dcc_num_compiles3"), "5", "{page}");
    }

    #[test]
    fn peak_rss_and_io_rate() {
        let t0 = Instant::now();
        let s = Stats::new(2);
        assert_eq!(field(&s.page_at(t0, 1, None), "dcc_max_RSS_name"), "(none)");
        s.compiler_rss(9000, "gcc");
        s.compiler_rss(9000, "g++");
        s.compiler_rss(100, "cc");
        let page = s.page_at(t0, 1, None);
        assert_eq!(field(&page, "dcc_max_RSS"), "9000");
        assert_eq!(field(&page, "dcc_max_RSS_name"), "(gcc)");
        assert_eq!(field(&page, "dcc_io_rate"), "-1", "no diskstats");
        let s = Stats::default();
        s.history.lock().unwrap().io_rate(t0, Some(1000));
        let page = s.page_at(t0 + Duration::from_secs(10), 1, Some(3000));
        assert_eq!(field(&page, "dcc_io_rate"), "200", "{page}");
        // Within the interval, the last rate stands.
        let page = s.page_at(t0 + Duration::from_secs(20), 1, Some(9000));
        assert_eq!(field(&page, "dcc_io_rate"), "200", "{page}");
        let page = s.page_at(t0 + Duration::from_secs(70), 1, Some(9000));
        assert_eq!(field(&page, "dcc_io_rate"), "100", "{page}");
        let diskstats = "   8       0 sda 10 0 100 5 20 0 300 9 0 0 0\n   8       1 sda1 1 0 50 1 2 0 60 1 0 0 0\n";
        assert_eq!(sum_disk_sectors(diskstats, |n| n == "sda"), 400);
    }

    #[test]
    fn names_cannot_add_lines_to_the_page() {
        let s = Stats::default();
        s.job_started();
        s.job_ended(7, "gcc\ndcc_compile_ok 5", "a.c\ndcc_compile_ok 999\r\n");
        s.job_stopped();
        let page = s.page(1);
        assert!(
            page.contains("\ndcc_longest_job a.c\\ndcc_compile_ok 999\\r\\n\n"),
            "{page}"
        );
        assert!(
            page.contains("\ndcc_longest_job_compiler gcc\\ndcc_compile_ok 5\n"),
            "{page}"
        );
        assert_eq!(
            page.lines()
                .filter(|l| l.starts_with("dcc_compile_ok"))
                .count(),
            1,
            "{page}"
        );
    }
}
