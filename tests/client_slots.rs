//! Two different clients — ours and Debian's /usr/bin/distcc — sharing one DISTCC_DIR never
//! run more jobs on a host than its slot limit: our slot locks are the same files, with the
//! same POSIX record locks, as distcc 3.4's.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::*;

#[test]
fn ours_and_debians_share_slot_limits() {
    let t = tempfile::tempdir().unwrap();
    let running = world_writable_dir(t.path(), "running");
    let counts = t.path().join("counts");
    fs::write(&counts, "").unwrap();
    fs::set_permissions(&counts, fs::Permissions::from_mode(0o666)).unwrap();
    let cc = t.path().join("countcc");
    // On the server, record how many compiles run at once; preprocessing (-E) passes through.
    script(
        &cc,
        &format!(
            "case \" $* \" in *\" -E \"*) exec gcc \"$@\";; esac\n\
             touch {r}/$$\n\
             ls {r} | wc -l >> {c}\n\
             sleep 1\n\
             rm -f {r}/$$\n\
             exec gcc \"$@\"",
            r = running.display(),
            c = counts.display()
        ),
    );
    let d = Daemon::start(Kind::Debian, t.path(), &["--enable-tcp-insecure"], &[]);
    let hosts = format!("127.0.0.1:{}/2", d.port);
    let dd = t.path().join("dd");
    let mut children = Vec::new();
    for i in 0..8 {
        let src = format!("f{i}.c");
        fs::write(
            t.path().join(&src),
            format!("int f{i}(void) {{ return {i}; }}\n"),
        )
        .unwrap();
        let program = if i % 2 == 0 {
            distcc()
        } else {
            PathBuf::from("/usr/bin/distcc")
        };
        let child = client_cmd(&program, &dd, &hosts)
            .args([cc.to_str().unwrap(), "-c", &src, "-o", &format!("f{i}.o")])
            .current_dir(t.path())
            .spawn()
            .unwrap();
        children.push(child);
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    for i in 0..8 {
        assert!(t.path().join(format!("f{i}.o")).exists());
    }
    let text = fs::read_to_string(&counts).unwrap();
    let seen: Vec<usize> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(
        seen.len(),
        8,
        "every job ran on the server: {text}\n{}",
        d.log_text()
    );
    let max = seen.iter().copied().max().unwrap();
    assert!(max <= 2, "slot limit 2 exceeded: {seen:?}");
    assert_eq!(d.compile_ok_count(), 8, "{}", d.log_text());
}
