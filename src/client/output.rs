//! Writing what came back from the server (distcc 3.4 `bulk.c` `dcc_r_file`, done safer).
//!
//! A build tool that sees an object file assumes it is complete, so we never leave a partial
//! one: the bytes go to a temporary file in the same directory, which is renamed over the
//! target only once fully written. Outputs that are not regular files (`-o /dev/null`, a
//! fifo) are written in place, as a local compile would. Missing directories are *not*
//! created (distcc 3.4 creates them): a local compile would fail there, and the local retry
//! that follows our failure then shows the user the compiler's own message.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Write `bytes` to `path` atomically (regular files) or in place (anything else).
pub(crate) fn write_output(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Ok(meta) = fs::metadata(path)
        && !meta.is_file()
    {
        let mut f = OpenOptions::new().write(true).open(path)?;
        return f.write_all(bytes);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = crate::paths::basename(path);
    let mut n = 0u32;
    let (tmp, mut f) = loop {
        let tmp = dir.join(format!(".{name}.distcc-{}-{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(e),
        }
    };
    let _cleanup = super::cleanup::register(&tmp);
    let result = f
        .write_all(bytes)
        .and_then(|_| f.flush())
        .and_then(|_| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_output(&dir.path().join("missing/x.o"), b"x").is_err());
        let p = dir.path().join("x.o");
        write_output(&p, b"first").unwrap();
        write_output(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn dev_null_is_written_in_place() {
        write_output(Path::new("/dev/null"), b"abc").unwrap();
        assert!(
            fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device_like()
        );
    }

    trait CharDev {
        fn is_char_device_like(&self) -> bool;
    }
    impl CharDev for fs::FileType {
        fn is_char_device_like(&self) -> bool {
            use std::os::unix::fs::FileTypeExt;
            self.is_char_device()
        }
    }

    #[test]
    fn failure_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way makes the rename fail.
        let p = dir.path().join("x.o");
        fs::create_dir(p.join("")).unwrap();
        fs::write(p.join("f"), b"").unwrap();
        // metadata says "not a regular file", so it tries in-place and fails to open a dir.
        assert!(write_output(&p, b"zzz").is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.o")]);
    }
}
