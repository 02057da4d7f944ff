//! `make bench`: our distcc against Debian's distcc 3.4, side by side (see harness.rs).
//!
//! Options: `--quick` (smaller sizes, K up to 16), `--suite NAME` (repeatable: per-job,
//! real, scheduler, memory, pump, pump-scale, clang, wire), `--rounds N`, `--no-write` (don't rewrite
//! tests/bench/results.md).

#[path = "harness.rs"]
mod harness;
#[path = "wire.rs"]
mod wire;

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut suites = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--suite"
            && let Some(s) = it.next()
        {
            suites.push(s.clone());
        }
    }
    let top = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let opts = harness::Options {
        ours: top.join("target/release/distcc"),
        work: top.join("tests/bench/work"),
        jobs: if quick { 40 } else { 100 },
        rounds: args
            .iter()
            .position(|a| a == "--rounds")
            .and_then(|i| args.get(i + 1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(if quick { 3 } else { 5 }),
        ks: if quick {
            vec![1, 4, 16]
        } else {
            vec![1, 4, 16, 64]
        },
        real_build: true,
        mem_jobs: 64,
    };
    if !opts.ours.exists() {
        eprintln!(
            "bench: {} is missing; run `cargo build --release` first",
            opts.ours.display()
        );
        std::process::exit(1);
    }
    if suites.iter().any(|s| s == "wire") {
        // Its own table (LZO vs zstd), printed, not merged into results.md's.
        match wire::run(&opts.ours, &opts.work, quick) {
            Ok(table) => println!("{table}"),
            Err(e) => {
                eprintln!("bench: wire: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let started = std::time::Instant::now();
    let rows = harness::run(&opts, &suites);
    let table = harness::table(&rows);
    println!("{table}");
    if args.iter().any(|a| a == "--no-write") {
        return;
    }
    let version = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .unwrap_or_default()
    };
    let date = version("date", "-u");
    let text = format!(
        "# Benchmarks: distcc (Rust) vs Debian's distcc 3.4\n\n\
         Run by `make bench`{} on {date}, {} s in all, on a shared 2-core machine: every figure \
         is a median over interleaved rounds (ours, theirs, …); compare the ratios, not the \
         absolute times.\n\n\
         - ours: `{}`\n- theirs: `{}`\n- gcc: `{}`\n\n{table}\n",
        if quick { " --quick" } else { "" },
        started.elapsed().as_secs(),
        version(opts.ours.to_str().unwrap_or_default(), "--version"),
        version("/usr/bin/distcc", "--version"),
        version("gcc", "--version"),
    );
    let path = top.join("tests/bench/results.md");
    let notes = std::fs::read_to_string(&path)
        .ok()
        .and_then(|old| old.find("\n## ").map(|i| old[i..].to_owned()))
        .unwrap_or_default();
    if let Err(e) = std::fs::write(&path, format!("{text}{notes}")) {
        eprintln!("bench: can't write {}: {e}", path.display());
    }
}
