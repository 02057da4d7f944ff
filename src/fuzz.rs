//! Entry points for fuzzing every parser that reads untrusted bytes (`make fuzz`, and a short
//! smoke run in `make test`; the driver is `tests/fuzz/main.rs`).
//!
//! They live in the library so that the parsers themselves can stay `pub(crate)`: each target
//! takes raw bytes, feeds them to one parser with the limits the daemon or client really uses,
//! and ignores the result. A target must never panic, never allocate past those limits and
//! never take long; the driver checks all three.

use crate::protocol::{self, Limits};

/// One fuzz target: a name for the command line and findings, and the function.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    /// What kind of seeds suit it (the driver picks seed files by this).
    pub seeds: Seeds,
}

/// Which seed corpus a target starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeds {
    /// Captured distcc 3.4 requests (`*.req`).
    Requests,
    /// Captured distcc 3.4 replies (`*.resp`).
    Replies,
    /// LZO-compressed bodies.
    Lzo,
    /// zstd frames.
    Zstd,
    /// Lines of text: host lists, command lines, C sources.
    Text,
}

/// Limits small enough that a fuzz case cannot make the driver swap, with the same shape as
/// the daemon's: every length is checked against them before anything is allocated.
fn limits() -> Limits {
    Limits {
        max_string: 1 << 16,
        max_bulk: 1 << 22,
        max_unpacked: 1 << 24,
        max_argc: 4096,
        max_files: 4096,
        max_request: 1 << 24,
    }
}

/// Words of a command line: NUL or whitespace separated, lossily decoded.
fn words(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .split(|c: char| c == '\0' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn request(data: &[u8]) {
    let decoded = protocol::decode_request(data, limits());
    // The resumable framer, fed in pieces, must agree with the one-shot decoder.
    let mut framer = protocol::RequestFramer::new();
    let mut framed = Ok(None);
    for end in (0..=data.len()).step_by(97).chain([data.len()]) {
        framed = framer.advance(&data[..end], limits());
        if !matches!(framed, Ok(None)) {
            break;
        }
    }
    match (&decoded, &framed) {
        (Ok((_, used)), Ok(Some(end))) => assert_eq!(used, end, "framer and decoder disagree"),
        (Ok(_), other) => panic!("decoder took a request the framer did not: {other:?}"),
        (Err(protocol::ProtocolError::Incomplete), Ok(Some(_))) => {
            panic!("framer found a whole request the decoder calls incomplete")
        }
        _ => {}
    }
}

fn reply(data: &[u8]) {
    for version in 1..=3 {
        let _ = protocol::decode_reply(data, version, limits());
    }
}

fn include_framing(data: &[u8]) {
    let _ = protocol::include::decode_request(data, limits());
    let _ = protocol::include::decode_reply(data, limits());
}

fn lzo(data: &[u8]) {
    let _ = crate::compress::decompress(data, 1 << 24);
}

fn hosts(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::hosts::parse(&text);
    let _ = crate::hosts::parse_lenient(&text);
}

fn client_args(data: &[u8]) {
    let mut argv = words(data);
    if argv.is_empty() {
        return;
    }
    argv[0] = "gcc".into();
    let _ = crate::args::scan(&argv);
}

fn server_argv(data: &[u8]) {
    let argv = words(data);
    if let Ok(scan) = crate::daemon::argv::scan(&argv) {
        let _ = crate::daemon::argv::rewrite_plain(&argv, &scan, "in.i", "out.o");
        let _ = crate::daemon::argv::rewrite_pump(&argv, &scan, "/R", "/o.o", "/d");
    }
}

fn pump_directives(data: &[u8]) {
    let parsed = crate::pump::parse::parse(data);
    for (_, value) in &parsed.defines {
        let _ = crate::pump::parse::parse_form(value);
    }
}

/// A received plain-mode source (src/daemon/source_check.rs), under both rules and with
/// command lines that leave the lexer settings open or fix them.
fn plain_source(data: &[u8]) {
    use crate::daemon::source_check::{Rules, check};
    for argv in [["clang", "-c", "a.c"], ["g++", "-std=c++17", "a.cc"]] {
        let argv: Vec<String> = argv.iter().map(|w| w.to_string()).collect();
        for rules in [Rules::DirectivesOnly, Rules::Preprocessed] {
            let _ = check(rules, &argv, data);
        }
    }
}

/// The protocol extension's hello, answer and refusal (src/ext.rs): as packets as they
/// arrive, and the text wrapped in a packet, so that mutations reach the line parser.
fn ext_hello(data: &[u8]) {
    let _ = crate::ext::decode_answer(data, limits());
    let _ = crate::ext::decode_cidn(data, limits());
    for token in [b"EXTN", b"RFSE"] {
        let mut packet = Vec::new();
        protocol::encode_str(&mut packet, token, data);
        let _ = crate::ext::decode_extn(&packet, limits());
        let _ = crate::ext::decode_answer(&packet, limits());
    }
    let hello = crate::ext::Hello::parse(&String::from_utf8_lossy(data));
    if let Ok(h) = hello {
        let _ = crate::ext::Agreed::from_answer(h, &["zstd"]);
    }
}

fn zstd(data: &[u8]) {
    let _ = crate::compress::zstd_decompress(data, 1 << 24);
}

/// What a peer sends around the encrypted channel (src/noise.rs): `NOIS` frames, the
/// packets inside the channel, a pairing request, and a handshake's first message as the
/// daemon reads it from an unauthenticated client.
fn noise_frames(data: &[u8]) {
    static KEYS: std::sync::OnceLock<Option<crate::keys::KeyPair>> = std::sync::OnceLock::new();
    let _ = crate::noise::parse_frame(data);
    let _ = crate::noise::decode_nois(data, limits());
    let _ = crate::noise::decode_packet(data, limits());
    let _ = crate::noise::split_packet(data);
    let _ = crate::noise::parse_pair_request(data);
    let Some(keys) = KEYS
        .get_or_init(|| crate::keys::KeyPair::generate().ok())
        .as_ref()
    else {
        return;
    };
    if let Ok(mut hs) = crate::noise::Handshake::responder(keys, b"fuzz") {
        let _ = hs.read(data);
        let mut out = Vec::new();
        let _ = hs.write(&mut out);
    }
}

/// Every target, in the order `make fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "request",
        run: request,
        seeds: Seeds::Requests,
    },
    Target {
        name: "reply",
        run: reply,
        seeds: Seeds::Replies,
    },
    Target {
        name: "include-framing",
        run: include_framing,
        seeds: Seeds::Requests,
    },
    Target {
        name: "lzo",
        run: lzo,
        seeds: Seeds::Lzo,
    },
    Target {
        name: "hosts",
        run: hosts,
        seeds: Seeds::Text,
    },
    Target {
        name: "client-args",
        run: client_args,
        seeds: Seeds::Text,
    },
    Target {
        name: "server-argv",
        run: server_argv,
        seeds: Seeds::Text,
    },
    Target {
        name: "pump-directives",
        run: pump_directives,
        seeds: Seeds::Text,
    },
    Target {
        name: "plain-source",
        run: plain_source,
        seeds: Seeds::Text,
    },
    Target {
        name: "ext-hello",
        run: ext_hello,
        seeds: Seeds::Text,
    },
    Target {
        name: "zstd",
        run: zstd,
        seeds: Seeds::Zstd,
    },
    Target {
        name: "noise-frames",
        run: noise_frames,
        seeds: Seeds::Text,
    },
];

/// Edge coverage for the driver, from LLVM's SanitizerCoverage `trace-pc-guard` callbacks.
/// `make fuzz` builds with `--cfg fuzzing` and the sancov pass, so every edge of our code (and
/// our dependencies') bumps a counter here; a plain build has neither, and the driver then
/// mutates blindly. No nightly toolchain is needed: these are stable `-C` flags.
#[cfg(fuzzing)]
pub(crate) mod coverage {
    use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

    /// Size of the edge map; guards beyond it share slots (rare, and harmless).
    pub(crate) const MAP_SIZE: usize = 1 << 16;
    static MAP: [AtomicU8; MAP_SIZE] = [const { AtomicU8::new(0) }; MAP_SIZE];
    static NEXT: AtomicU32 = AtomicU32::new(1);

    /// Called once per instrumented module with its guards: number them.
    ///
    /// # Safety
    /// Called by the instrumentation with a valid `[start, stop)` range of guards.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn __sanitizer_cov_trace_pc_guard_init(start: *mut u32, stop: *mut u32) {
        let mut g = start;
        while g < stop {
            // SAFETY: `g` is inside the module's guard array.
            unsafe {
                if *g == 0 {
                    *g = NEXT.fetch_add(1, Ordering::Relaxed);
                }
                g = g.add(1);
            }
        }
    }

    /// Called on every instrumented edge.
    ///
    /// # Safety
    /// Called by the instrumentation with a pointer to one of its guards.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn __sanitizer_cov_trace_pc_guard(guard: *mut u32) {
        // SAFETY: the guard was numbered by the init callback above.
        let id = unsafe { *guard } as usize;
        MAP[id % MAP_SIZE].fetch_add(1, Ordering::Relaxed);
    }

    /// Take the map: the slots hit since the last call, as AFL-style hit-count buckets.
    pub(crate) fn take(out: &mut Vec<(u32, u8)>) {
        out.clear();
        for (i, c) in MAP.iter().enumerate() {
            let n = c.swap(0, Ordering::Relaxed);
            if n != 0 {
                let bucket = match n {
                    1 => 1,
                    2 => 2,
                    3 => 4,
                    4..=7 => 8,
                    8..=15 => 16,
                    16..=31 => 32,
                    32..=127 => 64,
                    _ => 128,
                };
                out.push((i as u32, bucket));
            }
        }
    }
}

/// Is this a coverage-instrumented build (`make fuzz`)?
pub const GUIDED: bool = cfg!(fuzzing);

/// Take the coverage of the last run (empty in a plain build).
pub fn take_coverage(out: &mut Vec<(u32, u8)>) {
    out.clear();
    #[cfg(fuzzing)]
    coverage::take(out);
}
