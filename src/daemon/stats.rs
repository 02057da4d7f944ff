//! Job accounting: the one summary line per job that people grep, and the counters behind
//! `--stats` (distcc 3.4 `serve.c` `dcc_job_summary`, `stats.c`).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
    max_running: AtomicU64,
    longest: Mutex<Option<(u128, String, String)>>,
}

impl Stats {
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
        self.max_running.fetch_max(n, Ordering::Relaxed);
        n
    }

    /// A compiler is no longer running (serve.rs calls this from a guard, so that a job
    /// that unwinds is not counted forever).
    pub(crate) fn job_stopped(&self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
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

    /// The HTTP page distccd serves on the stats port (distcc 3.4's layout; figures we do
    /// not track are reported as distcc reports "unknown").
    pub(crate) fn page(&self, free_space_mb: i64) -> String {
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
             dcc_max_kids {}\ndcc_avg_kids1 0\ndcc_avg_kids2 0\ndcc_avg_kids3 0\n\
             dcc_current_load {}\n",
            g(&self.tcp_accept),
            g(&self.rej_bad_req),
            g(&self.rej_overload),
            g(&self.compile_ok),
            g(&self.compile_error),
            g(&self.compile_timeout),
            g(&self.cli_disconn),
            g(&self.other),
            g(&self.max_running),
            g(&self.running),
        );
        let load = load_average();
        let _ = write!(
            s,
            "dcc_load1 {:.2}\ndcc_load2 {:.2}\ndcc_load3 {:.2}\n\
             dcc_num_compiles1 0\ndcc_num_compiles2 0\ndcc_num_compiles3 0\n\
             dcc_num_procstate_D 0\ndcc_max_RSS 0\ndcc_max_RSS_name (none)\n\
             dcc_io_rate -1\ndcc_free_space {free_space_mb} MB\n</distccstats>\n",
            load[0], load[1], load[2]
        );
        s
    }
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
        assert!(page.contains("\ndcc_max_kids 1\n"));
        assert!(page.ends_with("dcc_free_space 100 MB\n</distccstats>\n"));
        assert!(page.contains("\ndcc_current_load 0\n"));
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
