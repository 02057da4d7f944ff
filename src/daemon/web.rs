//! The stats port beyond distcc 3.4's page: `/metrics` (Prometheus text format),
//! `/status.json`, and a live monitor page at `/` for browsers; plus the client side of
//! `/status.json` that `distccmon-text --cluster` uses.
//!
//! Everything is read-only and served from a fixed table of paths: no request names a
//! file. The port obeys `--allow` like the job port. It shares the daemon's one executor
//! thread with the jobs, so each connection is bounded: a few at once (more are closed
//! at once), a short deadline for the request and for the reply, and small requests.
//!
//! A connection that sends no HTTP request line, and a `GET /` that does not ask for
//! HTML (curl, scripts, Munin plugins), still get 3.4's text page byte for byte; browsers
//! (`Accept: text/html`) get the monitor.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::lock::Semaphore;
use thiserror::Error;

use super::serve::{Shared, peer_name};
use super::stats::{COMPILE_BUCKETS, Snapshot};

/// Stats connections served at once; more are closed at once. Jobs reserve descriptors
/// beside these (see `fd_reserve`), so a crowd of monitors never starves a compile.
pub(crate) const MAX_STATS_CONNECTIONS: usize = 16;
/// How long a client may take to send its request. 3.4 serves its page whatever
/// arrives; so do we once this passes.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// How long a client may take to read the reply.
const REPLY_DEADLINE: Duration = Duration::from_secs(5);
/// The most of a request read: a request line and a browser's headers.
const MAX_REQUEST: usize = 8192;

const MONITOR_HTML: &str = include_str!("monitor.html");
const MONITOR_JS: &str = include_str!("monitor.js");

/// The stats port: same access list as the job port; each allowed connection is served
/// by its own task, at most [`MAX_STATS_CONNECTIONS`] at once.
pub(crate) async fn stats_loop(
    ex: Rc<smol::LocalExecutor<'static>>,
    shared: Rc<Shared>,
    listener: async_net::TcpListener,
    tmp: std::path::PathBuf,
) {
    let permits = Arc::new(Semaphore::new(MAX_STATS_CONNECTIONS));
    let tmp = Rc::new(tmp);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, say: wait instead of spinning the executor.
                log::error!("stats port: accept failed: {e}");
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !shared.acl.allows(peer.ip()) {
            log::error!(
                "stats connection from '{}' denied by access list",
                peer_name(Some(peer))
            );
            continue;
        }
        let Some(permit) = permits.try_acquire_arc() else {
            log::warn!(
                "stats port: {MAX_STATS_CONNECTIONS} connections open; closing the one from {}",
                peer_name(Some(peer))
            );
            continue;
        };
        let shared = shared.clone();
        let tmp = tmp.clone();
        ex.spawn(async move {
            serve_stats(&shared, stream, &tmp).await;
            drop(permit);
        })
        .detach();
    }
}

/// One stats connection: read what request arrives in time, answer, close.
async fn serve_stats(shared: &Shared, mut stream: async_net::TcpStream, tmp: &std::path::Path) {
    let mut buf = Vec::new();
    let _ = smol::future::or(
        async {
            let mut chunk = [0u8; 1024];
            while buf.len() < MAX_REQUEST && !head_complete(&buf) {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                }
            }
        },
        async {
            smol::Timer::after(REQUEST_DEADLINE).await;
        },
    )
    .await;
    let reply = respond(&parse_request(&buf), shared, tmp);
    let _ = smol::future::or(
        async {
            let _ = stream.write_all(&reply).await;
            let _ = stream.flush().await;
        },
        async {
            smol::Timer::after(REPLY_DEADLINE).await;
        },
    )
    .await;
}

fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

/// What a stats request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// No HTTP request line (nothing, or not HTTP): 3.4's page, as 3.4 answers anything.
    Legacy,
    Get {
        path: String,
        /// The client takes HTML (a browser).
        html: bool,
        /// HEAD: headers only.
        head: bool,
    },
    /// Another method (the port is read-only).
    Method,
}

pub(crate) fn parse_request(buf: &[u8]) -> Request {
    let text = String::from_utf8_lossy(buf);
    let mut lines = text.lines();
    let Some(first) = lines.next() else {
        return Request::Legacy;
    };
    let mut words = first.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Request::Legacy;
    };
    if !version.starts_with("HTTP/") {
        return Request::Legacy;
    }
    let html = lines.any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("accept") && value.contains("text/html")
        })
    });
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_owned();
    match method {
        "GET" => Request::Get {
            path,
            html,
            head: false,
        },
        "HEAD" => Request::Get {
            path,
            html,
            head: true,
        },
        _ => Request::Method,
    }
}

/// The full reply to `req`, headers included.
fn respond(req: &Request, shared: &Shared, tmp: &std::path::Path) -> Vec<u8> {
    let legacy = || shared.stats.page(free_space_mb(tmp)).into_bytes();
    let (path, html, head) = match req {
        Request::Legacy => return legacy(),
        Request::Method => {
            return http(
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                "read-only: GET or HEAD\n".into(),
                false,
            );
        }
        Request::Get { path, html, head } => (path.as_str(), *html, *head),
    };
    let (ctype, body) = match path {
        "/" | "/index.html" if html || path == "/index.html" => {
            ("text/html; charset=utf-8", MONITOR_HTML.to_owned())
        }
        "/" | "/stats" => return legacy(),
        "/monitor.js" => ("text/javascript; charset=utf-8", MONITOR_JS.to_owned()),
        "/metrics" => (
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(&shared.stats.snapshot()),
        ),
        "/status.json" => (
            "application/json",
            status_json(&shared.stats.snapshot(), SystemTime::now()),
        ),
        _ => {
            return http(
                "404 Not Found",
                "text/plain; charset=utf-8",
                "no such page: try /, /metrics, /status.json or /stats\n".into(),
                head,
            );
        }
    };
    http("200 OK", ctype, body, head)
}

fn http(status: &str, ctype: &str, body: String, head: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: default-src 'none'; script-src 'self'; connect-src 'self'; \
         style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn free_space_mb(dir: &std::path::Path) -> i64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return -1;
    };
    // SAFETY: statvfs fills the zeroed struct for a valid path.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) != 0 {
            return -1;
        }
        (s.f_bavail as i64).saturating_mul(s.f_frsize as i64) / (1024 * 1024)
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `/metrics`: the Prometheus text exposition format (0.0.4).
pub(crate) fn metrics(s: &Snapshot) -> String {
    fn family(m: &mut String, name: &str, kind: &str, help: &str) {
        let _ = write!(m, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }
    let mut m = String::new();
    family(
        &mut m,
        "distccd_connections_total",
        "counter",
        "Connections accepted on the job port (dcc_tcp_accept).",
    );
    let _ = writeln!(m, "distccd_connections_total {}", s.tcp_accept);
    family(
        &mut m,
        "distccd_jobs_total",
        "counter",
        "Jobs by how they ended (compile_ok, compile_error, compile_timeout, client_disconnect, bad_request, overload, other).",
    );
    for (outcome, n) in &s.outcomes {
        let _ = writeln!(m, "distccd_jobs_total{{outcome=\"{outcome}\"}} {n}");
    }
    family(
        &mut m,
        "distccd_refused_total",
        "counter",
        "Connections and requests refused, by reason.",
    );
    for (reason, n) in &s.refused {
        let _ = writeln!(
            m,
            "distccd_refused_total{{reason=\"{}\"}} {n}",
            label(reason)
        );
    }
    family(
        &mut m,
        "distccd_slots",
        "gauge",
        "Compilers allowed at once (--jobs).",
    );
    let _ = writeln!(m, "distccd_slots {}", s.max_kids);
    family(
        &mut m,
        "distccd_busy_slots",
        "gauge",
        "Compilers running now.",
    );
    let _ = writeln!(m, "distccd_busy_slots {}", s.running.len());
    family(
        &mut m,
        "distccd_queued_jobs",
        "gauge",
        "Received jobs waiting for a compiler slot.",
    );
    let _ = writeln!(m, "distccd_queued_jobs {}", s.queued);
    family(
        &mut m,
        "distccd_compile_duration_seconds",
        "histogram",
        "How long compilers ran.",
    );
    for (bound, n) in COMPILE_BUCKETS.iter().zip(&s.buckets) {
        let _ = writeln!(
            m,
            "distccd_compile_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
        );
    }
    let _ = writeln!(
        m,
        "distccd_compile_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        s.compiles
    );
    let _ = writeln!(
        m,
        "distccd_compile_duration_seconds_sum {}",
        s.compile_seconds
    );
    let _ = writeln!(m, "distccd_compile_duration_seconds_count {}", s.compiles);
    family(
        &mut m,
        "distccd_received_bytes_total",
        "counter",
        "Bytes of sources and files received in requests.",
    );
    let _ = writeln!(m, "distccd_received_bytes_total {}", s.received);
    family(
        &mut m,
        "distccd_sent_bytes_total",
        "counter",
        "Bytes of replies sent.",
    );
    let _ = writeln!(m, "distccd_sent_bytes_total {}", s.sent);
    family(
        &mut m,
        "distccd_client_connections_total",
        "counter",
        "Connections per client address (after 256 addresses, the rest count as \"other\").",
    );
    for (client, n) in &s.clients {
        let _ = writeln!(
            m,
            "distccd_client_connections_total{{client=\"{}\"}} {n}",
            label(client)
        );
    }
    m
}

/// A JSON string literal.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // `<` too: the text can never close a script or open a tag where it lands.
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This machine's name, for the page's title and the cluster view.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    if ok {
        String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned()
    } else {
        "localhost".to_owned()
    }
}

/// `/status.json`: slots, running jobs, recent failures, counters.
pub(crate) fn status_json(s: &Snapshot, now: SystemTime) -> String {
    let mut o = String::from("{\"version\":");
    json_str(&mut o, crate::VERSION);
    o.push_str(",\"hostname\":");
    json_str(&mut o, &hostname());
    let _ = write!(
        o,
        ",\"time\":{},\"slots\":{{\"limit\":{},\"busy\":{},\"queued\":{}}},\"running\":[",
        unix_secs(now),
        s.max_kids,
        s.running.len(),
        s.queued
    );
    for (i, j) in s.running.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(o, "{{\"slot\":{},\"client\":", j.slot);
        json_str(&mut o, &j.client);
        o.push_str(",\"compiler\":");
        json_str(&mut o, &j.compiler);
        o.push_str(",\"file\":");
        json_str(&mut o, &j.file);
        let _ = write!(o, ",\"elapsed_ms\":{}}}", j.started.elapsed().as_millis());
    }
    o.push_str("],\"recent_failures\":[");
    for (i, f) in s.failures.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(o, "{{\"time\":{},\"client\":", unix_secs(f.at));
        json_str(&mut o, &f.client);
        o.push_str(",\"outcome\":");
        json_str(&mut o, f.outcome);
        o.push_str(",\"compiler\":");
        json_str(&mut o, &f.compiler);
        o.push_str(",\"file\":");
        json_str(&mut o, &f.file);
        o.push_str(",\"detail\":");
        json_str(&mut o, &f.detail);
        o.push('}');
    }
    let _ = write!(
        o,
        "],\"counters\":{{\"connections\":{},\"compiles\":{},\"received_bytes\":{},\"sent_bytes\":{}",
        s.tcp_accept, s.compiles, s.received, s.sent
    );
    for (outcome, n) in &s.outcomes {
        let _ = write!(o, ",\"{outcome}\":{n}");
    }
    o.push_str("}}");
    o
}

// ---------------------------------------------------------------------------------------
// The client side: `distccmon-text --cluster`.

/// A JSON value (only what `/status.json` needs; numbers as f64).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A non-negative whole number.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Num(n) if *n >= 0.0 && n.is_finite() => Some(*n as u64),
            _ => None,
        }
    }

    pub fn as_array(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }

    /// `key` as a string, or "" (for display).
    pub fn text(&self, key: &str) -> &str {
        self.get(key).and_then(Json::as_str).unwrap_or_default()
    }

    /// `key` as a number, or 0 (for display).
    pub fn num(&self, key: &str) -> u64 {
        self.get(key).and_then(Json::as_u64).unwrap_or(0)
    }
}

/// Why a status could not be fetched or read.
#[derive(Debug, Error)]
pub enum StatusError {
    #[error("{host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("{host}:{port}: no stats page there ({status})")]
    Status {
        host: String,
        port: u16,
        status: String,
    },
    #[error("{host}:{port}: bad /status.json: {problem}")]
    Json {
        host: String,
        port: u16,
        problem: String,
    },
}

/// The largest status accepted from a host.
const MAX_STATUS: u64 = 1 << 20;

/// GET `/status.json` from `host:port`, each step within `timeout`.
pub fn fetch_status(host: &str, port: u16, timeout: Duration) -> Result<Json, StatusError> {
    let io = |source| StatusError::Connect {
        host: host.to_owned(),
        port,
        source,
    };
    let addrs: Vec<_> = (host, port).to_socket_addrs().map_err(io)?.collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let stream = stream.ok_or(last).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut w = &stream;
    w.write_all(
        format!("GET /status.json HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n\r\n")
            .as_bytes(),
    )
    .map_err(io)?;
    let mut reply = Vec::new();
    (&stream)
        .take(MAX_STATUS)
        .read_to_end(&mut reply)
        .map_err(io)?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.") || !status.contains(" 200 ") {
        return Err(StatusError::Status {
            host: host.to_owned(),
            port,
            status: status.chars().take(80).collect(),
        });
    }
    parse_json(body).map_err(|problem| StatusError::Json {
        host: host.to_owned(),
        port,
        problem,
    })
}

/// Parse a JSON document (nesting at most 32 deep: the input is another machine's).
pub fn parse_json(text: &str) -> Result<Json, String> {
    let mut p = Parser {
        chars: text.chars().collect(),
        at: 0,
    };
    let v = p.value(0)?;
    p.space();
    if p.at != p.chars.len() {
        return Err(format!("trailing text at {}", p.at));
    }
    Ok(v)
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.at += 1;
        c
    }

    fn space(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn expect(&mut self, want: char) -> Result<(), String> {
        match self.next() {
            Some(c) if c == want => Ok(()),
            other => Err(format!("expected {want:?} at {}, found {other:?}", self.at)),
        }
    }

    fn word(&mut self, word: &str, v: Json) -> Result<Json, String> {
        for w in word.chars() {
            self.expect(w)?;
        }
        Ok(v)
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > 32 {
            return Err("nested too deeply".into());
        }
        self.space();
        match self.peek() {
            Some('{') => {
                self.at += 1;
                let mut members = Vec::new();
                self.space();
                if self.peek() == Some('}') {
                    self.at += 1;
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.space();
                    let key = self.string()?;
                    self.space();
                    self.expect(':')?;
                    members.push((key, self.value(depth + 1)?));
                    self.space();
                    match self.next() {
                        Some(',') => continue,
                        Some('}') => return Ok(Json::Obj(members)),
                        other => return Err(format!("expected , or }} but found {other:?}")),
                    }
                }
            }
            Some('[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.peek() == Some(']') {
                    self.at += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.space();
                    match self.next() {
                        Some(',') => continue,
                        Some(']') => return Ok(Json::Arr(items)),
                        other => return Err(format!("expected , or ] but found {other:?}")),
                    }
                }
            }
            Some('"') => Ok(Json::Str(self.string()?)),
            Some('t') => self.word("true", Json::Bool(true)),
            Some('f') => self.word("false", Json::Bool(false)),
            Some('n') => self.word("null", Json::Null),
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(c))
                {
                    self.at += 1;
                }
                let s: String = self
                    .chars
                    .get(start..self.at)
                    .unwrap_or_default()
                    .iter()
                    .collect();
                s.parse()
                    .map(Json::Num)
                    .map_err(|_| format!("bad number {s:?}"))
            }
            other => Err(format!("unexpected {other:?} at {}", self.at)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect('"')?;
        let mut s = String::new();
        loop {
            match self.next() {
                None => return Err("unterminated string".into()),
                Some('"') => return Ok(s),
                Some('\\') => match self.next() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some('b') => s.push('\u{8}'),
                    Some('f') => s.push('\u{c}'),
                    Some('u') => {
                        let mut code = 0u32;
                        for _ in 0..4 {
                            let d = self
                                .next()
                                .and_then(|c| c.to_digit(16))
                                .ok_or("bad \\u escape")?;
                            code = code * 16 + d;
                        }
                        s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                    Some(c) => s.push(c),
                    None => return Err("unterminated string".into()),
                },
                Some(c) => s.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::stats::{JobResult, Stats};
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(parse_request(b""), Request::Legacy);
        assert_eq!(parse_request(b"hello\n"), Request::Legacy);
        assert_eq!(
            parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Request::Get {
                path: "/metrics".into(),
                html: false,
                head: false
            }
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nACCEPT: text/html,*/*\r\n\r\n"),
            Request::Get {
                path: "/".into(),
                html: true,
                head: false
            }
        );
        assert_eq!(parse_request(b"POST / HTTP/1.1\r\n\r\n"), Request::Method);
        // Not UTF-8, no panic.
        assert_eq!(parse_request(&[0xff, 0xfe, b'\n']), Request::Legacy);
    }

    #[test]
    fn status_json_round_trips_through_our_parser_and_escapes_names() {
        let stats = Stats::new(3);
        let _c = stats.compiling("10.0.0.1:5", "gcc", "a\"<b>\n.c");
        stats.outcome(
            "10.0.0.2:6",
            JobResult::CompileError,
            0x100,
            Some(("cc", "x.c")),
        );
        let text = status_json(&stats.snapshot(), SystemTime::now());
        assert!(!text.contains('<') && !text.contains('\n'), "{text}");
        let j = parse_json(&text).unwrap();
        assert_eq!(j.get("slots").unwrap().num("limit"), 3);
        assert_eq!(j.get("slots").unwrap().num("busy"), 1);
        let run = j.get("running").unwrap().as_array();
        assert_eq!(run.len(), 1);
        assert_eq!(run[0].text("file"), "a\"<b>\n.c");
        let f = j.get("recent_failures").unwrap().as_array();
        assert_eq!(f[0].text("outcome"), "COMPILE_ERROR");
        assert_eq!(f[0].text("detail"), "exit 1");
        assert!(
            parse_json(
                "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
            )
            .is_err()
        );
        assert!(parse_json("{\"a\":1} x").is_err());
        assert!(parse_json("\"\\u12").is_err());
    }

    #[test]
    fn histogram_is_cumulative_and_metrics_label_values_are_escaped() {
        let stats = Stats::new(2);
        drop(stats.compiling("h:1", "gcc", "a.c"));
        stats.client(Some("::ffff:10.1.2.3".parse().unwrap()));
        stats.refused("access_list");
        let m = metrics(&stats.snapshot());
        assert!(
            m.contains("distccd_compile_duration_seconds_bucket{le=\"0.1\"} 1\n"),
            "{m}"
        );
        assert!(
            m.contains("distccd_compile_duration_seconds_bucket{le=\"+Inf\"} 1\n"),
            "{m}"
        );
        assert!(
            m.contains("distccd_compile_duration_seconds_count 1\n"),
            "{m}"
        );
        assert!(
            m.contains("distccd_client_connections_total{client=\"10.1.2.3\"} 1\n"),
            "{m}"
        );
        assert!(
            m.contains("distccd_refused_total{reason=\"access_list\"} 1\n"),
            "{m}"
        );
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn client_addresses_are_bounded() {
        let stats = Stats::new(1);
        for i in 0..300u32 {
            stats.client(Some(std::net::IpAddr::V4(i.into())));
        }
        let s = stats.snapshot();
        assert_eq!(s.clients.len(), 257);
        assert_eq!(
            s.clients
                .iter()
                .find(|(c, _)| c == "other")
                .map(|(_, n)| *n),
            Some(44)
        );
    }
}
