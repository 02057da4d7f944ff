//! The include analyser on a larger real C tree (Lua 5.4, from the `lua-src` crate): for
//! every file, its set covers what `gcc -M` reports.

#[path = "bench/harness.rs"]
mod harness;

#[test]
fn analyser_covers_gcc_m_on_lua() {
    let work = tempfile::tempdir().unwrap();
    let (lua, version) = harness::lua_sources(work.path()).expect("fetch lua-src with cargo");
    let (_, _, superset, n) = harness::analysis_vs_gcc_m(&lua).unwrap();
    assert!(n >= 30, "{version}: only {n} files");
    assert_eq!(
        superset, n,
        "{version}: files whose analysis misses a gcc -M dependency"
    );
}
