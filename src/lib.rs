//! distcc in Rust: the shared library behind the `distcc`, `distccd`, `distcc-config`,
//! `distccmon-text` and `pump` applets.
//!
//! The modules follow distcc 3.4's own split of concerns (one C file per concern), so that
//! anyone who knows distcc's sources finds their way:
//!
//! | module        | distcc 3.4 file(s)                 | job                                          |
//! |---------------|------------------------------------|----------------------------------------------|
//! | [`settings`]  | (getenv calls everywhere)          | every environment variable, read once        |
//! | `options`     | arg.c, strip.c                     | one table of gcc/clang options and effects   |
//! | `args`        | arg.c, strip.c, dotd.c             | the client's argv scan (pure: no env, no I/O)|
//! | [`paths`]     | filename.c, climasq.c (in part)    | base names, extensions, PATH lookup (bottom) |
//! | [`protocol`]  | rpc.c, clirpc.c, srvrpc.c          | sans-IO codec of protocols 1, 2, 3           |
//! | [`compress`]  | compress.c                         | LZO1X-1 and zstd, bounded decompression      |
//! | [`ext`]       | —                                  | our protocol extension: hello, memo, refusal |
//! | `connection`  | io.c, bulk.c                       | the daemon's async edge: codec over a socket |
//! | [`exitcode`]  | exitcode.h                         | exit codes 100–120                           |
//! | [`trace`]     | trace.c                            | `distcc[PID] …` logging, DISTCC_LOG, syslog  |
//! | [`temp`]      | tempfile.c                         | DISTCC_DIR's sub-dirs, temp files and dirs   |
//! | [`hosts`]     | hosts.c                            | host-list grammar and sources                |
//! | `identity`    | —                                  | what identifies a compiler (issue 14)        |
//! | [`lock`]      | lock.c                             | slot lock files (POSIX record locks)         |
//! | [`backoff`]   | backoff.c, timefile.c              | backoff files                                |
//! | [`keys`]      | (GSS-API's auth.c, in spirit)      | key pairs, pins, authorised keys, pairing    |
//! | [`noise`]     | —                                  | the encrypted transport between our peers    |
//! | [`scheduler`] | where.c                            | pick a host and a slot                       |
//! | [`state`]     | state.c, mon.c                     | `binstate_<pid>` files for distccmon-text    |
//! | [`client`]    | compile.c, remote.c, cpp.c, …      | the client's job pipeline and fallback       |
//! | [`daemon`]    | dparent.c, serve.c, access.c, …    | distccd: ACL, whitelist, jobs, serve loop    |
//! | [`pump`]      | include_server/, include_server_if.c | pump mode's include analyser              |
//! | `fuzz`        | —                                  | entry points for `make fuzz`                 |
//!
//! Only what the applets, the integration tests and the benchmarks use is public; the
//! rest is `pub(crate)`.

pub(crate) mod args;
pub mod backoff;
pub mod client;
pub mod compress;
pub(crate) mod connection;
pub mod daemon;
pub mod exitcode;
pub mod ext;
#[doc(hidden)]
pub mod fuzz;
pub mod hosts;
pub(crate) mod identity;
pub mod keys;
pub mod lock;
pub mod noise;
pub(crate) mod options;
pub mod paths;
pub mod protocol;
pub mod pump;
pub mod scheduler;
pub mod settings;
pub mod state;
pub mod temp;
pub mod trace;
pub mod zeroconf;

/// The version we report: `--version` starts with `distcc <VERSION> <triple>`; tools
/// (Portage's `emerge --info`) read that first line.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// distcc's default TCP port.
pub const DEFAULT_PORT: u16 = 3632;

/// The platform triple we report in `--version`, like distcc's `GNU_HOST`, in GNU shape:
/// the vendor is `pc` only on x86 (`x86_64-pc-linux-gnu`, `aarch64-unknown-linux-gnu`).
pub(crate) fn host_triple() -> String {
    let arch = std::env::consts::ARCH;
    let vendor = if arch == "x86_64" || arch == "x86" {
        "pc"
    } else {
        "unknown"
    };
    match std::env::consts::OS {
        "linux" => format!("{arch}-{vendor}-linux-gnu"),
        os => format!("{arch}-{vendor}-{os}"),
    }
}

/// `--version` in distcc 3.4's shape, which scripts split on: the name, version and triple
/// line (the one `emerge --info` keeps), the protocols line, a `  built …` line, then the
/// copyright, warranty and bug-report paragraphs — our words, of course.
pub fn version_text(program: &str) -> String {
    format!(
        "{program} {VERSION} {triple}
  (protocols 1, 2 and 3) (default port {DEFAULT_PORT})
  built {VERSION} from the distcc-rs sources (Rust)
Copyright (C) 2026 the distcc-rs authors.
Includes miniLZO (C) 1996-2017 by Markus Franz Xaver Johannes Oberhumer (minilzo-rs).
Wire-compatible with distcc 3.4 by Martin Pool and others.

This distcc comes with ABSOLUTELY NO WARRANTY.  It is free software, and
you may use, modify and redistribute it under the terms of the GNU
General Public License version 3 or later.

Please report bugs to the distcc-rs issue tracker.

",
        triple = host_triple()
    )
}
