//! distccd's stats port beyond 3.4's page: `/metrics` is valid Prometheus text whose
//! counters follow real jobs, `/status.json` shows a compile while it runs, the port obeys
//! `--allow`, and a crowd of idle stats clients neither piles up nor holds up a compile.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, Kind, free_port, world_writable_dir};
use distcc::daemon::web::{Json, parse_json};
use distcc::protocol::{self, Limits};

/// One HTTP/1.0 exchange with the stats port: (status line, body).
fn get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the stats port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    // 3.4's page ends its headers with bare newlines.
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .or_else(|| reply.split_once("\n\n"))
        .unwrap_or_else(|| panic!("no end of headers: {reply:?}"));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

fn status(port: u16) -> Json {
    let (line, body) = get(port, "/status.json");
    assert!(line.contains(" 200 "), "{line}: {body}");
    parse_json(&body).unwrap_or_else(|e| panic!("/status.json is not JSON ({e}): {body}"))
}

/// The Prometheus text exposition format, checked strictly: every sample belongs to a
/// family with one `# TYPE` (and a `# HELP`) before it, names and labels are well formed,
/// label values are quoted with only the three escapes, values are numbers, no series
/// appears twice, a family's samples are together, and histograms are cumulative with
/// `+Inf` equal to `_count`. Returns each series (`name{a="b",…}`) and its value.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    fn is_name(s: &str, colon: bool) -> bool {
        let mut cs = s.chars();
        cs.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    assert!(text.ends_with('\n'), "the text ends in a newline");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut series: BTreeMap<String, f64> = BTreeMap::new();
    let mut finished_families: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    // Histogram checks: family → [(le, count)], and _count.
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "no blank lines expected:\n{text}");
        if let Some(rest) = line.strip_prefix("# ") {
            let mut w = rest.splitn(3, ' ');
            let (kind, name, value) = (w.next(), w.next(), w.next());
            match (kind, name, value) {
                (Some("TYPE"), Some(name), Some(t)) => {
                    assert!(is_name(name, true), "bad family name {name:?}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "bad type {t:?}"
                    );
                    assert!(
                        types.insert(name.to_owned(), t.to_owned()).is_none(),
                        "TYPE twice for {name}"
                    );
                }
                (Some("HELP"), Some(name), Some(h)) => {
                    assert!(is_name(name, true), "bad family name {name:?}");
                    assert!(!h.is_empty(), "empty HELP for {name}");
                    assert!(
                        helps.insert(name.to_owned(), h.to_owned()).is_none(),
                        "HELP twice for {name}"
                    );
                }
                _ => {}
            }
            continue;
        }
        assert!(!line.starts_with('#'), "bad comment {line:?}");
        // name{labels} value
        let (name, after_name) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("sample without a value: {line:?}"),
        };
        assert!(is_name(name, true), "bad metric name in {line:?}");
        let mut labels: Vec<(String, String)> = Vec::new();
        let value_text = if let Some(mut rest) = after_name.strip_prefix('{') {
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let eq = rest
                    .find('=')
                    .unwrap_or_else(|| panic!("label without = in {line:?}"));
                let (lname, r) = rest.split_at(eq);
                assert!(
                    is_name(lname, false),
                    "bad label name {lname:?} in {line:?}"
                );
                let mut chars = r.strip_prefix("=\"").expect("quoted label value").chars();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => panic!("bad escape {other:?} in {line:?}"),
                        },
                        Some('\n') | None => panic!("unterminated label value in {line:?}"),
                        Some(c) => value.push(c),
                    }
                }
                labels.push((lname.to_owned(), value));
                rest = chars.as_str();
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
            rest
        } else {
            after_name
        };
        let mut words = value_text.split(' ').filter(|w| !w.is_empty());
        let value_word = words.next().unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = match value_word {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        if let Some(ts) = words.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("bad timestamp in {line:?}"));
        }
        assert!(words.next().is_none(), "trailing text in {line:?}");
        // Which family: a histogram's samples carry suffixes.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                (types.get(base).map(String::as_str) == Some("histogram")).then(|| base.to_owned())
            })
            .unwrap_or_else(|| name.to_owned());
        let t = types
            .get(&family)
            .unwrap_or_else(|| panic!("no TYPE before {line:?}"));
        assert!(helps.contains_key(&family), "no HELP before {line:?}");
        if current.as_deref() != Some(family.as_str()) {
            assert!(
                !finished_families.contains(&family),
                "{family}'s samples are not together"
            );
            if let Some(c) = current.take() {
                finished_families.push(c);
            }
            current = Some(family.clone());
        }
        if t == "histogram" {
            if name.ends_with("_bucket") {
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .unwrap_or_else(|| panic!("bucket without le: {line:?}"));
                let bound = if le.1 == "+Inf" {
                    f64::INFINITY
                } else {
                    le.1.parse().unwrap()
                };
                buckets
                    .entry(family.clone())
                    .or_default()
                    .push((bound, value));
            } else if name.ends_with("_count") {
                counts.insert(family.clone(), value);
            }
        } else if t == "counter" {
            assert!(value >= 0.0, "negative counter {line:?}");
        }
        labels.sort();
        let key = format!(
            "{name}{{{}}}",
            labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(
            series.insert(key, value).is_none(),
            "series twice: {line:?}"
        );
    }
    for (family, b) in &buckets {
        assert!(
            b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{family}: buckets not increasing and cumulative: {b:?}"
        );
        let last = b.last().unwrap();
        assert!(last.0.is_infinite(), "{family}: no +Inf bucket");
        assert_eq!(
            Some(&last.1),
            counts.get(family),
            "{family}: +Inf != _count"
        );
    }
    series
}

#[test]
fn the_validating_parser_rejects_what_prometheus_would() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\"} 3\n";
    assert_eq!(parse_prometheus(ok)["a_total{x=\"q\"\"}"], 3.0);
    for bad in [
        "a_total 3\n",                                      // no TYPE
        "# HELP a A.\n# TYPE a gauge\na{x=q} 1\n",          // unquoted
        "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",          // twice
        "# HELP a A.\n# TYPE a gauge\na one\n",             // not a number
        "argv /distccd\n<distccstats>\ndcc_tcp_accept 0\n", // 3.4's page
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_prometheus(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

fn metric(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("{key} missing from {m:#?}"))
}

fn metrics(port: u16) -> BTreeMap<String, f64> {
    let (line, body) = get(port, "/metrics");
    assert!(line.contains(" 200 "), "{line}: {body}");
    parse_prometheus(&body)
}

/// A compile on the job port; the reply's status (None: the daemon closed without one).
fn compile(port: u16, argv: &[&str], source: &[u8]) -> Option<i32> {
    let reply = common::exchange(port, &common::plain_request(argv, source));
    protocol::decode_reply(&reply, 1, Limits::default())
        .ok()
        .map(|(r, _)| r.status as i32)
}

#[test]
fn metrics_are_prometheus_text_and_follow_real_jobs() {
    let work = tempfile::tempdir().unwrap();
    let stats_port = free_port();
    let d = Daemon::start(
        Kind::Ours,
        work.path(),
        &[
            "--stats",
            "--stats-port",
            &stats_port.to_string(),
            "--jobs",
            "3",
        ],
        &[],
    );
    let before = metrics(stats_port);
    assert_eq!(metric(&before, "distccd_slots{}"), 3.0);
    assert_eq!(
        metric(&before, "distccd_jobs_total{outcome=\"compile_ok\"}"),
        0.0
    );
    assert_eq!(
        metric(&before, "distccd_compile_duration_seconds_count{}"),
        0.0
    );

    let good = b"int a(void){return 1;}\n";
    for _ in 0..2 {
        assert_eq!(
            compile(d.port, &["gcc", "-c", "a.c", "-o", "a.o"], good),
            Some(0)
        );
    }
    let failed = compile(
        d.port,
        &["gcc", "-c", "broken.c", "-o", "broken.o"],
        b"int x = ;\n",
    );
    assert!(failed.is_some_and(|s| s != 0), "{failed:?}");
    // Not on the whitelist: refused without a reply.
    assert_eq!(
        compile(d.port, &["notacompiler", "-c", "r.c", "-o", "r.o"], good),
        None
    );
    common::wait_for_log(&d.log, "COMPILE_ERROR");
    assert_eq!(d.settled_count("client: 127.0.0.1:"), 4, "{}", d.log_text());

    let after = metrics(stats_port);
    assert_eq!(
        metric(&after, "distccd_jobs_total{outcome=\"compile_ok\"}"),
        2.0
    );
    assert_eq!(
        metric(&after, "distccd_jobs_total{outcome=\"compile_error\"}"),
        1.0
    );
    assert_eq!(
        metric(&after, "distccd_jobs_total{outcome=\"bad_request\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            "distccd_refused_total{reason=\"compiler_not_allowed\"}"
        ),
        1.0
    );
    // Daemon::start's probe of the job port is a connection too, one that left without
    // a request (client_disconnect), whenever the daemon got to it.
    let connections = metric(&after, "distccd_connections_total{}");
    let probes = metric(&after, "distccd_jobs_total{outcome=\"client_disconnect\"}");
    assert_eq!(connections - probes, 4.0);
    assert_eq!(
        metric(
            &after,
            "distccd_client_connections_total{client=\"127.0.0.1\"}"
        ),
        connections
    );
    assert_eq!(
        metric(&after, "distccd_compile_duration_seconds_count{}"),
        3.0
    );
    assert!(metric(&after, "distccd_compile_duration_seconds_sum{}") > 0.0);
    assert!(metric(&after, "distccd_received_bytes_total{}") >= (3 * good.len()) as f64);
    assert!(
        metric(&after, "distccd_sent_bytes_total{}") > 100.0,
        "three replies, two with objects"
    );
    assert_eq!(metric(&after, "distccd_busy_slots{}"), 0.0);
    assert_eq!(metric(&after, "distccd_queued_jobs{}"), 0.0);

    // The same jobs on the status page, and the failures among them.
    let s = status(stats_port);
    let counters = s.get("counters").unwrap();
    assert_eq!(counters.num("compile_ok"), 2);
    let failures = s.get("recent_failures").unwrap().as_array();
    assert_eq!(failures.len(), 2, "{s:?}");
    assert_eq!(failures[0].text("outcome"), "REFUSED", "newest first");
    assert!(failures[0].text("detail").contains("notacompiler"), "{s:?}");
    assert_eq!(failures[1].text("outcome"), "COMPILE_ERROR");
    assert_eq!(failures[1].text("file"), "broken.c");
    assert_eq!(failures[1].text("detail"), "exit 1");

    // 3.4's page is still there for what is not a browser.
    let (_, page) = get(stats_port, "/stats");
    assert!(page.contains("\ndcc_compile_ok 2\n"), "{page}");
    let (line, _) = get(stats_port, "/etc/passwd");
    assert!(line.contains(" 404 "), "{line}");
}

/// A compiler on the whitelist that holds its job until `release` appears.
fn slow_compiler(work: &Path) -> (PathBuf, PathBuf, Vec<(String, String)>) {
    let masq = world_writable_dir(work, "masq");
    let flags = world_writable_dir(work, "flags");
    let release = flags.join("release");
    common::script(
        &masq.join("slowcc"),
        &format!(
            "while [ ! -e {} ]; do sleep 0.05; done\nexec gcc \"$@\"",
            release.display()
        ),
    );
    let path = format!("{}:/usr/bin:/bin", masq.display());
    let env = vec![
        (
            "DISTCCD_MASQUERADE_DIRS".to_owned(),
            masq.display().to_string(),
        ),
        ("DISTCCD_PATH".to_owned(), path),
    ];
    (masq, release, env)
}

/// Poll `/status.json` until `ready` holds (20 s at most).
fn wait_status(port: u16, what: &str, ready: impl Fn(&Json) -> bool) -> Json {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(port);
        if ready(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never {what}: {s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn running_file(s: &Json, file: &str) -> bool {
    s.get("running")
        .map(Json::as_array)
        .unwrap_or_default()
        .iter()
        .any(|j| j.text("file") == file)
}

/// A daemon with a stats port and 2 slots, and a job of the slow compiler running on it
/// (writing `release` lets it finish; the handle gives its exit status).
struct SlowJob {
    work: tempfile::TempDir,
    stats_port: u16,
    release: PathBuf,
    job: std::thread::JoinHandle<Option<i32>>,
    port: u16,
    _daemon: Daemon,
}

fn start_slow_job(file: &'static str, source: &'static [u8]) -> SlowJob {
    let work = tempfile::tempdir().unwrap();
    let stats_port = free_port();
    let (_masq, release, env) = slow_compiler(work.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = Daemon::start(
        Kind::Ours,
        work.path(),
        // slowcc reads its release flag outside the job's directory.
        &[
            "--stats",
            "--stats-port",
            &stats_port.to_string(),
            "--jobs",
            "2",
            "--no-sandbox",
        ],
        &env,
    );
    let port = d.port;
    let object = file.replace(".c", ".o");
    let job =
        std::thread::spawn(move || compile(port, &["slowcc", "-c", file, "-o", &object], source));
    SlowJob {
        work,
        stats_port,
        release,
        job,
        port,
        _daemon: d,
    }
}

#[test]
fn status_json_shows_a_running_job() {
    // Bound, not `..`: the daemon and its dir must live to the test's end.
    let SlowJob {
        work: _work,
        stats_port,
        release,
        job,
        port: _,
        _daemon,
    } = start_slow_job("running_job.c", b"int r(void){return 2;}\n");
    let s = wait_status(stats_port, "showed the job running", |s| {
        running_file(s, "running_job.c")
    });
    let slots = s.get("slots").unwrap();
    assert_eq!((slots.num("limit"), slots.num("busy")), (2, 1), "{s:?}");
    let run = &s.get("running").unwrap().as_array()[0];
    assert_eq!(run.text("compiler"), "slowcc");
    assert!(run.text("client").starts_with("127.0.0.1:"), "{s:?}");
    assert_eq!(run.num("slot"), 0);
    assert!(run.get("elapsed_ms").and_then(Json::as_u64).is_some());
    let m = metrics(stats_port);
    assert_eq!(metric(&m, "distccd_busy_slots{}"), 1.0);

    std::fs::write(&release, "").unwrap();
    assert_eq!(job.join().unwrap(), Some(0));
    let s = wait_status(stats_port, "showed the job finished", |s| {
        s.get("counters").unwrap().num("compile_ok") == 1
    });
    assert!(!running_file(&s, "running_job.c"), "{s:?}");
    assert_eq!(s.get("slots").unwrap().num("busy"), 0);
}

/// A connection to 127.0.0.1:`port` from the source address 127.0.0.2.
fn connect_from_127_0_0_2(port: u16) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = "127.0.0.2:0".parse().unwrap();
    sock.bind(&from.into()).unwrap();
    let to: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    sock.connect(&to.into()).unwrap();
    sock.into()
}

#[test]
fn the_stats_port_obeys_allow() {
    let work = tempfile::tempdir().unwrap();
    let stats_port = free_port();
    let d = Daemon::start(
        Kind::Ours,
        work.path(),
        &[
            "--allow",
            "127.0.0.1/32",
            "--stats",
            "--stats-port",
            &stats_port.to_string(),
        ],
        &[],
    );
    for path in ["/", "/metrics", "/status.json", "/monitor.js", "/stats"] {
        let mut s = connect_from_127_0_0_2(stats_port);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(format!("GET {path} HTTP/1.0\r\nAccept: text/html\r\n\r\n").as_bytes());
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(
            got.is_empty(),
            "{path} answered 127.0.0.2: {}",
            String::from_utf8_lossy(&got)
        );
        // The same request from an allowed address is answered.
        let (line, _) = get(stats_port, path);
        assert!(line.contains(" 200 "), "{path}: {line}");
    }
    let log = common::wait_for_log(&d.log, "stats connection from '127.0.0.2:");
    assert_eq!(
        log.matches("stats connection from '127.0.0.2:").count(),
        5,
        "{log}"
    );
    // The job port, refused the same way, is counted by reason.
    let mut s = connect_from_127_0_0_2(d.port);
    let _ = s.write_all(&common::plain_request(&["gcc", "-c", "a.c"], b"int a;\n"));
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty());
    common::wait_for_log(&d.log, "connection from client '127.0.0.2:");
    let m = metrics(stats_port);
    assert_eq!(
        metric(&m, "distccd_refused_total{reason=\"access_list\"}"),
        1.0
    );
    assert!(
        !m.keys().any(|k| k.contains("127.0.0.2")),
        "a refused connection is no client's: {m:#?}"
    );
}

#[test]
fn idle_stats_clients_are_bounded_and_do_not_hold_up_jobs() {
    let work = tempfile::tempdir().unwrap();
    let stats_port = free_port();
    let d = Daemon::start(
        Kind::Ours,
        work.path(),
        &["--stats", "--stats-port", &stats_port.to_string()],
        &[],
    );
    // 40 clients that connect and say nothing (or half a request) and keep the line open.
    let mut idle: Vec<TcpStream> = (0..40)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", stats_port)).unwrap();
            if i % 2 == 0 {
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
            }
            s
        })
        .collect();
    // The ones beyond the limit are closed at once, without an answer; the rest are held.
    let started = Instant::now();
    let mut closed_at_once = 0;
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        // Closed with our half request unread, the kernel resets the connection.
        match s.read(&mut buf) {
            Ok(0) => closed_at_once += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed_at_once += 1,
            _ => {}
        }
    }
    assert!(
        closed_at_once >= 40 - 16,
        "{closed_at_once} of 40 idle stats clients closed within {:?}",
        started.elapsed()
    );
    // Meanwhile a compile goes through as usual.
    let t = Instant::now();
    assert_eq!(
        compile(d.port, &["gcc", "-c", "a.c", "-o", "a.o"], b"int a;\n"),
        Some(0)
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the compile took {:?}",
        t.elapsed()
    );
    // Held clients are answered (3.4's page: no complete request) once their time is up,
    // and the port serves newcomers again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = TcpStream::connect(("127.0.0.1", stats_port))
            .ok()
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
                s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
                let mut r = String::new();
                s.read_to_string(&mut r).ok()?;
                Some(r.contains("distccd_jobs_total{outcome=\"compile_ok\"} 1"))
            })
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the stats port never recovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(idle);
}

#[test]
fn distccmon_text_cluster_shows_every_hosts_slots_and_jobs() {
    let SlowJob {
        work,
        stats_port,
        release,
        job,
        port,
        _daemon,
    } = start_slow_job("cluster_job.c", b"int c(void){return 4;}\n");
    wait_status(stats_port, "showed the job running", |s| {
        running_file(s, "cluster_job.c")
    });
    // 127.0.0.3 runs no daemon; localhost compiles here and has no stats port to ask.
    let hosts = format!("127.0.0.1:{port}/2 127.0.0.3 localhost");
    let out = common::client_cmd(&common::distcc(), &work.path().join("client"), &hosts)
        .args(["distccmon-text", "--cluster"])
        .env("DISTCC_STATS_PORT", stats_port.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!("127.0.0.1:{stats_port} (")),
        "{text}"
    );
    assert!(lines[0].contains("[#-] 1/2 busy, 0 queued, 0 ok"), "{text}");
    assert!(
        lines[1].contains("slot 0")
            && lines[1].contains("slowcc")
            && lines[1].contains("cluster_job.c"),
        "{text}"
    );
    assert!(
        lines[2].starts_with(&format!("127.0.0.3:{stats_port}"))
            && lines[2].contains("unavailable"),
        "{text}"
    );
    assert!(!text.contains("localhost:"), "{text}");
    // The option wins over the variable.
    let out = common::client_cmd(&common::distcc(), &work.path().join("client"), &hosts)
        .args([
            "distccmon-text",
            "--cluster",
            "--stats-port",
            &port.to_string(),
        ])
        .env("DISTCC_STATS_PORT", stats_port.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.contains("unavailable")),
        "the job port has no status page: {text}"
    );
    std::fs::write(&release, "").unwrap();
    assert_eq!(job.join().unwrap(), Some(0));
}
