//! Real C trees for tests and the benchmark: Lua 5.4's sources as the `lua-src` crate ships
//! them (and any -sys crate's vendored library, see [`crate_root`]), fetched through cargo (so nothing is vendored here and CI's cargo cache holds it).
//! Self-contained (std only) so that it can be included both as `common::lua` and with
//! `#[path]` from tests/bench/harness.rs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The root of crate `name` (version requirement `req`), fetched through cargo into a
/// scratch project under `work`: how the tests and the bench get real C trees that -sys
/// crates vendor, without vendoring them here. An error says what failed, with cargo's own
/// words, so that a test can fail with them.
pub fn crate_root(work: &Path, name: &str, req: &str) -> Result<PathBuf, String> {
    let proj = work.join(format!("{name}-fetch"));
    fs::create_dir_all(proj.join("src")).map_err(|e| e.to_string())?;
    fs::write(
        proj.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}-fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\n{name} = {{ version = \"{req}\", default-features = false }}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    fs::write(proj.join("src/lib.rs"), "").map_err(|e| e.to_string())?;
    let fetched = Command::new("cargo")
        .arg("fetch")
        .current_dir(&proj)
        .output()
        .map_err(|e| format!("cargo fetch of {name} could not run: {e}"))?;
    if !fetched.status.success() {
        return Err(format!(
            "cargo fetch of {name} failed ({}): {}",
            fetched.status,
            String::from_utf8_lossy(&fetched.stderr).trim()
        ));
    }
    let meta = Command::new("cargo")
        .args(["metadata", "--format-version", "1"])
        .current_dir(&proj)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&meta.stdout);
    // The crate's manifest path, without a JSON parser: the quoted string that ends in
    // `/NAME-VERSION/Cargo.toml`.
    let marker = format!("/{name}-");
    let manifest = text
        .split('"')
        .find(|s| s.ends_with("/Cargo.toml") && s.contains(&marker))
        .ok_or(format!("{name} not in cargo metadata"))?;
    Ok(PathBuf::from(manifest.trim_end_matches("/Cargo.toml")))
}

/// Locate the Lua sources that the `lua-src` crate ships: the `lua-5.4.*` directory and a
/// version string.
pub fn lua_sources(work: &Path) -> Result<(PathBuf, String), String> {
    let root = crate_root(work, "lua-src", "=551.1.0")?;
    let version = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lua = fs::read_dir(&root)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("lua-5.4"))
        })
        .ok_or("no lua-5.4 dir in lua-src")?;
    let lua_version = lua
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((lua, format!("{version} ({lua_version})")))
}
