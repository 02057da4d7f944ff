//! The compiler's built-in `#include <...>` directories. They are never shipped: the
//! server uses its own copies (pump mode's core assumption, reference §5.5), and the request
//! only carries a LINK per directory so that `dir/../x` paths resolve on the server.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::paths::normalise;

/// Run `COMPILER [flags] -x LANG -v -c /dev/null -o /dev/null` with only `PATH` in the
/// environment (so `CPATH` and friends can't leak in) and read the search list from stderr.
pub(crate) fn probe(
    compiler: &Path,
    flags: &[String],
    lang: &str,
    path: Option<&OsStr>,
) -> Result<Vec<PathBuf>, String> {
    let mut cmd = Command::new(compiler);
    cmd.args(flags)
        .args(["-x", lang, "-v", "-c", "/dev/null", "-o", "/dev/null"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let out = cmd.output().map_err(|e| {
        format!(
            "Couldn't determine default system include directories: can't run {}: {e}",
            compiler.display()
        )
    })?;
    let dirs = parse_search_list(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || dirs.is_empty() {
        return Err(format!(
            "Couldn't determine default system include directories of {} for {lang}",
            compiler.display()
        ));
    }
    Ok(dirs)
}

/// The directories between `#include <...> search starts here:` and `End of search list.`
pub(crate) fn parse_search_list(stderr: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut inside = false;
    for line in stderr.lines() {
        if line.starts_with("#include <...> search starts here:") {
            inside = true;
        } else if line.starts_with("End of search list.") {
            break;
        } else if inside && line.starts_with(' ') {
            // Darwin's " (framework directory)" suffix is not part of the path.
            let dir = line.trim().trim_end_matches(" (framework directory)");
            dirs.push(normalise(Path::new(dir)));
        }
    }
    dirs
}

/// The directories that get a LINK: the system dirs not inside another one.
pub(crate) fn link_roots(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if dirs.iter().any(|o| o != d && d.starts_with(o)) || roots.contains(d) {
            continue;
        }
        roots.push(d.clone());
    }
    roots
}

/// The relative LINK target distcc 3.4 sends for a system dir: `../` × (20 + depth), then the
/// dir without its leading `/`, so that on the server it climbs out of any temp root of up to
/// 20 components and lands on the server's own directory.
pub(crate) fn climbing_target(dir: &Path) -> String {
    let rel = dir.strip_prefix("/").unwrap_or(dir);
    let depth = rel.components().count();
    format!("{}{}", "../".repeat(20 + depth), rel.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gcc_v_block() {
        let text = "ignoring nonexistent directory \"/x\"\n#include \"...\" search starts here:\n \
                    /q\n#include <...> search starts here:\n /usr/lib/gcc/x86_64-linux-gnu/12/include\n \
                    /usr/local/include\n /usr/include/x86_64-linux-gnu\n /usr/include\nEnd of search list.\n /not\n";
        let dirs = parse_search_list(text);
        assert_eq!(dirs.len(), 4);
        assert_eq!(
            dirs[0],
            Path::new("/usr/lib/gcc/x86_64-linux-gnu/12/include")
        );
        let roots = link_roots(&dirs);
        assert_eq!(
            roots,
            vec![
                PathBuf::from("/usr/lib/gcc/x86_64-linux-gnu/12/include"),
                PathBuf::from("/usr/local/include"),
                PathBuf::from("/usr/include")
            ]
        );
    }

    #[test]
    fn climbing_target_matches_capture() {
        // From the 3.4 capture p3-hello.req: 22 steps for /usr/include, 26 for gcc's dir.
        assert_eq!(
            climbing_target(Path::new("/usr/include")),
            format!("{}usr/include", "../".repeat(22))
        );
        assert!(
            climbing_target(Path::new("/usr/lib/gcc/x86_64-linux-gnu/12/include"))
                .starts_with(&"../".repeat(26))
        );
    }

    #[test]
    fn probes_the_real_compiler() {
        let dirs = probe(
            Path::new("gcc"),
            &[],
            "c",
            std::env::var_os("PATH").as_deref(),
        )
        .expect("gcc is installed");
        assert!(dirs.iter().any(|d| d == Path::new("/usr/include")));
    }
}
