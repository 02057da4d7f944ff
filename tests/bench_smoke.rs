//! The benchmark harness itself runs (tiny sizes, one round): every suite produces its rows
//! and their numbers parse. Not a benchmark — `make bench` is.

#[path = "bench/harness.rs"]
mod harness;

#[test]
fn harness_runs_with_tiny_sizes() {
    let work = tempfile::tempdir().unwrap();
    let opts = harness::Options {
        ours: std::path::PathBuf::from(env!("CARGO_BIN_EXE_distcc")),
        work: work.path().join("bench"),
        jobs: 3,
        rounds: 1,
        ks: vec![1],
        real_build: false,
        mem_jobs: 4,
    };
    let rows = harness::run(&opts, &[]);
    let table = harness::table(&rows);
    assert!(
        !rows
            .iter()
            .any(|r| r.suite == "error" || r.suite == "setup"),
        "{table}"
    );
    let find = |suite: &str, metric: &str| {
        rows.iter()
            .find(|r| r.suite == suite && r.metric.contains(metric))
            .unwrap_or_else(|| panic!("no {suite}/{metric} row in\n{table}"))
    };
    for (suite, metric) in [
        ("per-job", "no-op compiler: ms/job"),
        ("per-job", "gcc hello.c: ms/job"),
        ("per-job", "jobs/s, concurrency 8"),
        ("scheduler", "K=1 "),
    ] {
        let r = find(suite, metric);
        assert!(
            r.ours.parse::<f64>().is_ok_and(|v| v > 0.0),
            "{suite}/{metric}: {}",
            r.ours
        );
        assert!(
            r.theirs.parse::<f64>().is_ok_and(|v| v > 0.0),
            "{suite}/{metric}: {}",
            r.theirs
        );
        assert!(
            !r.verdict.contains("failed"),
            "{suite}/{metric}: {}",
            r.verdict
        );
    }
    let mem = find("memory", "daemon peak RSS");
    assert!(
        mem.ours
            .split(" / ")
            .all(|v| v.parse::<f64>().is_ok_and(|v| v > 0.0)),
        "{}",
        mem.ours
    );
}
