//! The fuzz driver: mutates seeds through every target of `distcc::fuzz::TARGETS` and fails
//! on a panic, a slow case or runaway memory.
//!
//! * `make test` runs it as a plain test binary: a short, seeded, blind run of every target
//!   (`FUZZ_RUNS` cases each, default 3000), so the targets never rot.
//! * `make fuzz` builds it with SanitizerCoverage on the stable toolchain and runs each target
//!   for `FUZZ_SECONDS` (default 60), keeping every case that reaches new edges (a small
//!   libFuzzer-style loop; see `distcc::fuzz::coverage`).
//!
//! * The `daemon` target mutates the captured requests against a live distccd of ours
//!   (`daemon.rs`): after each case it must still serve, clean up and stay bounded
//!   (`FUZZ_DAEMON_RUNS` cases in `make test`, default 300).
//!
//! Findings are written to `target/fuzz-findings/<target>-<n>` so they can be replayed with
//! `FUZZ_REPLAY=<file> FUZZ_TARGETS=<target>`.
//!
//! Environment: `FUZZ_TARGETS` (comma-separated names), `FUZZ_RUNS`, `FUZZ_SECONDS`,
//! `FUZZ_SEED` (default 1, so the smoke run is the same every time).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use distcc::fuzz::{GUIDED, Seeds, TARGETS, Target, take_coverage};

mod daemon;

/// One case longer than this is a finding: nothing a parser does may stall the daemon.
const SLOW: Duration = Duration::from_secs(1);
/// Largest case the mutator builds.
const MAX_LEN: usize = 1 << 18;
/// Peak RSS above this fails the run (the targets' limits allow ~40 MB at most).
const MAX_RSS_KB: u64 = 512 * 1024;

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_dir_files(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("seed dir {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// Seeds for a target: the distcc 3.4 captures, or text that looks like its input.
fn seeds(kind: Seeds) -> Vec<Vec<u8>> {
    let wire = manifest().join("tests/fixtures/wire-distcc-3.4");
    let text = || {
        let mut v = read_dir_files(&wire.join("src"), |_| true);
        v.extend(read_dir_files(&manifest().join("tests/data"), |_| true));
        for s in [
            "gcc -O2 -c hello.c -o hello.o",
            "gcc -MD -MF dep/x.d -MT t -Wp,-MD,x.d -x c++ -include a.h -I/usr/inc -c a.cc",
            "cc -c -o x.o -Xclang -load -Xclang p.so @rsp --specs=s -B./bin -wrapper /bin/sh x.c",
            "localhost/2 192.168.0.2:3632/8,lzo,cpp @build1/4 [fd00::2]:4000/3,lzo --randomize",
            "red,lzo blue/3 --localslots=2 --localslots_cpp=4 +zeroconf",
            "distcc-rs 1\nwant zstd noise identity\nuse zstd\ndirectives-only yes\n",
            "not-whitelisted gcc-99 is not on this host's whitelist",
            "NOIS00000020\0\x01abcdefghijklmnopqrstuvwxyz012345",
            "PAIR00000054proof 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\ncomment u@h\n",
            "#define X \"a.h\"\n#include X\n#if 0\n#include <b.h>\n#endif\n#include_next <c.h>\n",
            "#if 0 /* expanded by -frewrite-includes */\n#include \"h.h\"\n#endif\n#elif 1\n%:if 0\n",
            "R\"x(\n#include\n)x\" 1'0 ??=if 0\n/*\n*/ #else\n__has_include(<a>)\n",
        ] {
            v.push(s.as_bytes().to_vec());
        }
        v
    };
    match kind {
        Seeds::Requests => read_dir_files(&wire, |n| n.ends_with(".req")),
        Seeds::Replies => read_dir_files(&wire, |n| n.ends_with(".resp")),
        Seeds::Lzo => text()
            .iter()
            .chain(read_dir_files(&wire, |n| n.ends_with(".o")).iter())
            .filter_map(|d| distcc::compress::compress(d).ok())
            .collect(),
        Seeds::Zstd => text()
            .iter()
            .chain(read_dir_files(&wire, |n| n.ends_with(".o")).iter())
            .filter_map(|d| distcc::compress::zstd_compress(d).ok())
            .collect(),
        Seeds::Text => text(),
    }
}

const INTERESTING: &[u32] = &[
    0,
    1,
    2,
    3,
    0x7f,
    0x80,
    0xff,
    0x100,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

/// Offsets of distcc's 12-byte headers (four capitals, eight hex digits) in `data`.
fn headers(data: &[u8]) -> Vec<usize> {
    (0..data.len().saturating_sub(11))
        .filter(|&i| {
            data[i..i + 4].iter().all(u8::is_ascii_uppercase)
                && data[i + 4..i + 12].iter().all(u8::is_ascii_hexdigit)
        })
        .collect()
}

/// One random change, protocol-aware where it helps: length fields get boundary values.
fn mutate(rng: &mut fastrand::Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = data.len();
    match rng.u8(0..10) {
        0 if len > 0 => {
            let i = rng.usize(0..len);
            data[i] ^= 1 << rng.u8(0..8);
        }
        1 if len > 0 => {
            let i = rng.usize(0..len);
            data[i] = rng.u8(..);
        }
        2 => {
            let i = rng.usize(0..=len);
            let n = rng.usize(1..=16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            data.splice(i..i, bytes);
        }
        3 if len > 0 => {
            let i = rng.usize(0..len);
            let n = rng.usize(1..=(len - i).min(64));
            data.drain(i..i + n);
        }
        4 if len > 0 => {
            // Duplicate a chunk somewhere else (repeated tokens, files, words).
            let i = rng.usize(0..len);
            let n = rng.usize(1..=(len - i).min(256));
            let chunk = data[i..i + n].to_vec();
            let at = rng.usize(0..=len);
            data.splice(at..at, chunk);
        }
        5 | 6 => {
            let hs = headers(data);
            if let Some(&h) = hs.get(rng.usize(0..hs.len().max(1))) {
                let v = if rng.bool() {
                    INTERESTING[rng.usize(0..INTERESTING.len())]
                } else {
                    rng.u32(0..4096)
                };
                data[h + 4..h + 12].copy_from_slice(format!("{v:08x}").as_bytes());
            } else if len > 0 {
                data.truncate(rng.usize(0..len));
            }
        }
        7 if !corpus.is_empty() => {
            // Splice: our head, another case's tail.
            let other = &corpus[rng.usize(0..corpus.len())];
            let cut = rng.usize(0..=len);
            let from = rng.usize(0..=other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        8 if len > 0 => {
            data.truncate(rng.usize(0..len));
        }
        _ => {
            let i = rng.usize(0..=len);
            let words: &[&[u8]] = &[
                b"-o",
                b" -x c ",
                b"\0",
                b"\n",
                b"/",
                b"..",
                b"@",
                b"#include ",
                b"#define ",
                b"\\\n",
                b"/*",
                b",",
                b"[",
                b"]:",
                b"-Wp,",
                b"-Xclang ",
            ];
            let w = words[rng.usize(0..words.len())];
            data.splice(i..i, w.iter().copied());
        }
    }
    data.truncate(MAX_LEN);
}

struct Finding {
    target: &'static str,
    what: String,
    file: PathBuf,
}

fn save(target: &str, n: usize, data: &[u8]) -> PathBuf {
    let dir = manifest().join("target/fuzz-findings");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{target}-{n}"));
    if let Err(e) = std::fs::write(&file, data) {
        eprintln!("can't save {}: {e}", file.display());
    }
    file
}

/// Run one case; `Err` names the problem.
fn exec(t: &Target, data: &[u8]) -> Result<Duration, String> {
    let start = Instant::now();
    let r = std::panic::catch_unwind(|| (t.run)(data));
    let took = start.elapsed();
    match r {
        Err(p) => Err(format!(
            "panic: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
        Ok(()) if took > SLOW => Err(format!("slow: {took:?}")),
        Ok(()) => Ok(took),
    }
}

struct Stats {
    execs: u64,
    corpus: usize,
    edges: usize,
}

fn fuzz_target(
    t: &Target,
    runs: Option<u64>,
    deadline: Option<Duration>,
    rng: &mut fastrand::Rng,
    findings: &mut Vec<Finding>,
) -> Stats {
    let mut corpus = seeds(t.seeds);
    assert!(!corpus.is_empty(), "{}: no seeds", t.name);
    let mut seen: HashSet<(u32, u8)> = HashSet::new();
    let mut cov = Vec::new();
    let report = |what: String, data: &[u8], findings: &mut Vec<Finding>| {
        let file = save(t.name, findings.len(), data);
        eprintln!("fuzz {}: {what} (saved to {})", t.name, file.display());
        findings.push(Finding {
            target: t.name,
            what,
            file,
        });
    };
    for s in corpus.clone() {
        if let Err(what) = exec(t, &s) {
            report(what, &s, findings);
        }
        take_coverage(&mut cov);
        seen.extend(cov.iter().copied());
    }
    let start = Instant::now();
    let mut execs = 0u64;
    let mut found_here = 0;
    loop {
        if runs.is_some_and(|r| execs >= r) || deadline.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        let mut data = corpus[rng.usize(0..corpus.len())].clone();
        for _ in 0..rng.usize(1..=4) {
            mutate(rng, &mut data, &corpus);
        }
        execs += 1;
        if let Err(what) = exec(t, &data) {
            found_here += 1;
            report(what, &data, findings);
            if found_here >= 10 {
                eprintln!("fuzz {}: ten findings, moving on", t.name);
                break;
            }
        }
        take_coverage(&mut cov);
        let before = seen.len();
        seen.extend(cov.iter().copied());
        if seen.len() > before {
            corpus.push(data);
        }
    }
    Stats {
        execs,
        corpus: corpus.len(),
        edges: seen.len(),
    }
}

/// Mutated captures against a live daemon; returns the cases run.
fn fuzz_daemon(
    runs: Option<u64>,
    deadline: Option<Duration>,
    rng: &mut fastrand::Rng,
    findings: &mut Vec<Finding>,
) -> u64 {
    let work = std::env::temp_dir().join(format!("distcc-fuzz-daemon-{}", std::process::id()));
    let mut d = daemon::LiveDaemon::start(Path::new(env!("CARGO_BIN_EXE_distcc")), work);
    let corpus = seeds(Seeds::Requests);
    let good = std::fs::read(manifest().join("tests/fixtures/wire-distcc-3.4/p2-hello.req"))
        .unwrap_or_else(|e| panic!("p2-hello.req: {e}"));
    let report = |what: String, data: &[u8], findings: &mut Vec<Finding>| {
        let file = save("daemon", findings.len(), data);
        eprintln!("fuzz daemon: {what} (saved to {})", file.display());
        findings.push(Finding {
            target: "daemon",
            what,
            file,
        });
    };
    if let Err(e) = d.check_serves(&good) {
        report(e, &good, findings);
        return 0;
    }
    let start = Instant::now();
    let mut execs = 0;
    loop {
        if runs.is_some_and(|r| execs >= r) || deadline.is_some_and(|t| start.elapsed() >= t) {
            break;
        }
        let mut data = corpus[rng.usize(0..corpus.len())].clone();
        for _ in 0..rng.usize(1..=3) {
            mutate(rng, &mut data, &corpus);
        }
        execs += 1;
        d.send(&data, true);
        let mut problem = d.check_clean().err();
        if !d.alive() {
            problem = Some(format!("daemon died: {}", d.log()));
        } else if problem.is_none() && execs % 25 == 0 {
            problem = d.check_serves(&good).and_then(|()| d.check_bounded()).err();
        }
        if let Some(what) = problem {
            report(what, &data, findings);
            if !d.alive() {
                break;
            }
        }
    }
    if d.alive()
        && let Err(e) = d.check_serves(&good).and_then(|()| d.check_bounded())
    {
        report(e, b"", findings);
    }
    execs
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    // Panics are findings, reported once each by the driver, not by the default hook.
    std::panic::set_hook(Box::new(|_| {}));
    let wanted: Option<Vec<String>> = std::env::var("FUZZ_TARGETS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    let targets: Vec<&Target> = TARGETS
        .iter()
        .filter(|t| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|n| n == t.name))
        })
        .collect();
    let with_daemon = wanted
        .as_ref()
        .is_none_or(|w| w.iter().any(|n| n == "daemon"));
    assert!(
        !targets.is_empty() || with_daemon,
        "FUZZ_TARGETS names no known target"
    );

    if let Some(file) = std::env::var_os("FUZZ_REPLAY") {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        let _ = std::panic::take_hook();
        for t in &targets {
            (t.run)(&data);
            println!("fuzz {}: replay ok", t.name);
        }
        return;
    }

    let seconds = env_num("FUZZ_SECONDS");
    let runs = env_num("FUZZ_RUNS").or(if seconds.is_none() { Some(3000) } else { None });
    let deadline = seconds.map(Duration::from_secs);
    let mut rng = fastrand::Rng::with_seed(env_num("FUZZ_SEED").unwrap_or(1));
    println!(
        "fuzz: {} targets, {} ({}), seed {}",
        targets.len(),
        match (runs, seconds) {
            (Some(r), _) => format!("{r} cases each"),
            (None, Some(s)) => format!("{s} s each"),
            _ => String::new(),
        },
        if GUIDED {
            "coverage-guided"
        } else {
            "blind: build with `make fuzz` for coverage guidance"
        },
        env_num("FUZZ_SEED").unwrap_or(1)
    );
    let mut findings = Vec::new();
    let mut passed = 0;
    for t in &targets {
        let before = findings.len();
        let s = fuzz_target(t, runs, deadline, &mut rng, &mut findings);
        let ok = findings.len() == before;
        passed += usize::from(ok);
        println!(
            "fuzz {:<16} {:>9} execs, corpus {:>5}, edges {:>6}: {}",
            t.name,
            s.execs,
            s.corpus,
            s.edges,
            if ok { "ok" } else { "FINDINGS" }
        );
    }
    let mut total = targets.len();
    if with_daemon {
        total += 1;
        let before = findings.len();
        let daemon_runs =
            env_num("FUZZ_DAEMON_RUNS").or(if seconds.is_none() { Some(300) } else { None });
        let n = fuzz_daemon(daemon_runs, deadline, &mut rng, &mut findings);
        let ok = findings.len() == before;
        passed += usize::from(ok);
        println!(
            "fuzz {:<16} {:>9} cases against a live distccd: {}",
            "daemon",
            n,
            if ok { "ok" } else { "FINDINGS" }
        );
    }
    let rss = peak_rss_kb();
    println!("fuzz: peak RSS {} MB", rss / 1024);
    for f in &findings {
        println!("finding: {} {} ({})", f.target, f.what, f.file.display());
    }
    let mut failed = total - passed;
    if rss > MAX_RSS_KB {
        println!("fuzz: peak RSS {rss} kB is over {MAX_RSS_KB} kB");
        failed += 1;
    }
    println!("fuzz: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
