//! `-march=native` is distributed: the client asks its gcc what `native` means on this
//! machine (once per compiler and set of `-m` flags, cached in `DISTCC_DIR`), sends the
//! expanded words, and the object from our daemon and from Debian's distccd 3.4 is byte
//! for byte the one a local `gcc -march=native` gives — with `-mno-avx` after it too.

mod common;

use common::{Daemon, Kind, client_cmd, distcc, script};
use std::fs;
use std::path::Path;
use std::process::Command;

/// What the CPU flags decide shows in the object: macros picked by the preprocessor
/// (so the local cpp must see the expansion) and a loop the vectoriser widens.
const SOURCE: &str = r#"#ifdef __AVX__
int has_avx = 1;
#else
int has_avx = 0;
#endif
#ifdef __AVX512F__
int has_avx512f = 1;
#endif
#ifdef __SSE4_2__
int has_sse42 = 1;
#endif
void add(float *restrict a, const float *restrict b, int n) {
  for (int i = 0; i < n; i++) a[i] += b[i] * 3.0f;
}
"#;

const TRIPLE_GCC: &str = "/usr/bin/x86_64-linux-gnu-gcc";

fn gcc_local(dir: &Path, args: &[&str], out: &str) -> Vec<u8> {
    let o = Command::new("gcc")
        .args(args)
        .args(["-c", "x.c", "-o", out])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    fs::read(dir.join(out)).unwrap()
}

/// `distcc gcc ARGS -c x.c -o OUT` with `bin` first on PATH and no local fallback.
fn through_distcc(dir: &Path, bin: &Path, hosts: &str, args: &[&str], out: &str) -> Vec<u8> {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let o = client_cmd(&distcc(), &dir.join("dd"), hosts)
        .env("DISTCC_FALLBACK", "0")
        .env("DISTCC_SKIP_LOCAL_RETRY", "1")
        .env("DISTCC_VERBOSE", "1")
        .env("PATH", path)
        .arg("gcc")
        .args(args)
        .args(["-c", "x.c", "-o", out])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    fs::read(dir.join(out)).unwrap()
}

fn probes(count: &Path) -> usize {
    fs::read_to_string(count)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn native_through(kind: Kind) {
    if !Path::new(TRIPLE_GCC).exists() {
        eprintln!("skipped: no {TRIPLE_GCC}");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    fs::write(dir.join("x.c"), SOURCE).unwrap();
    // The client rewrites `gcc` to the triple's name; on the client that name is this
    // wrapper, which counts the native probes and runs the real compiler. The server runs
    // its own x86_64-linux-gnu-gcc.
    let bin = dir.join("bin");
    fs::create_dir(&bin).unwrap();
    let count = dir.join("probes");
    script(
        &bin.join("x86_64-linux-gnu-gcc"),
        &format!(
            // `-E -v`: the native probe; a bare `-v` is the compiler-identity probe.
            "e=; v=; for a; do [ \"$a\" = -E ] && e=1; [ \"$a\" = -v ] && v=1; done\n\
             if [ -n \"$e\" ] && [ -n \"$v\" ]; then echo probe \"$@\" >> '{}'; fi\n\
             exec {TRIPLE_GCC} \"$@\"",
            count.display()
        ),
    );
    let d = Daemon::start(kind, dir, &[], &[]);
    let hosts = format!("127.0.0.1:{}", d.port);

    let want = gcc_local(dir, &["-O2", "-march=native"], "want.o");
    let generic = gcc_local(dir, &["-O2"], "generic.o");
    assert_ne!(want, generic, "-march=native must show in this object");
    let got = through_distcc(dir, &bin, &hosts, &["-O2", "-march=native"], "got.o");
    assert_eq!(
        d.compile_ok_count(),
        1,
        "compiled remotely:\n{}",
        d.log_text()
    );
    assert!(got == want, "differs from a local -march=native compile");
    assert!(!d.log_text().contains("-march=native"), "{}", d.log_text());
    assert_eq!(probes(&count), 1, "one probe for this compiler");

    // A second job: the answer comes from DISTCC_DIR's cache.
    let again = through_distcc(dir, &bin, &hosts, &["-O2", "-march=native"], "again.o");
    assert!(again == want);
    assert_eq!(d.compile_ok_count(), 2);
    assert_eq!(probes(&count), 1, "the second job must not probe again");
    let cached = fs::read_dir(dir.join("dd/cache"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("native-"))
        })
        .count();
    assert_eq!(cached, 1);

    // The user's later flag still wins over the expansion.
    let want = gcc_local(dir, &["-O2", "-march=native", "-mno-avx"], "want2.o");
    let avx = gcc_local(dir, &["-O2", "-march=native"], "avx.o");
    assert_ne!(want, avx, "-mno-avx must show in this object");
    let got = through_distcc(
        dir,
        &bin,
        &hosts,
        &["-O2", "-march=native", "-mno-avx"],
        "got2.o",
    );
    assert_eq!(d.compile_ok_count(), 3, "{}", d.log_text());
    assert!(
        got == want,
        "differs from a local -march=native -mno-avx compile"
    );
    assert_eq!(probes(&count), 2, "other -m flags: asked once more");

    // -mtune=native alone.
    let want = gcc_local(dir, &["-O2", "-mtune=native"], "want3.o");
    let got = through_distcc(dir, &bin, &hosts, &["-O2", "-mtune=native"], "got3.o");
    assert_eq!(d.compile_ok_count(), 4, "{}", d.log_text());
    assert!(got == want, "differs from a local -mtune=native compile");
}

#[test]
fn march_native_through_our_daemon() {
    native_through(Kind::Ours);
}

#[test]
fn march_native_through_debian_distccd() {
    native_through(Kind::Debian);
}
