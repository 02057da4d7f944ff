//! The monitor page at `/` in a real browser: headless Chromium (Debian's `chromium`, which
//! `make test` installs) loads it while a job runs; the page's script fetches
//! `/status.json` and the rendered DOM shows the job. A screenshot is kept in
//! `target/tmp/monitor_browser/` for people to look at.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, Kind, free_port, world_writable_dir};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium with a profile of its own; `what` is `--dump-dom` or
/// `--screenshot=…`. Fails the test (never skips) when Chromium is missing.
fn chromium(profile: &Path, what: &str, url: &str) -> Output {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium package (make test's check-peer does)"
    );
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--window-size=1100,750", "--hide-scrollbars"])
        // Let the page's timers and its fetch of /status.json run before the dump.
        .arg("--virtual-time-budget=4000")
        .arg(what)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn status_body(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /status.json HTTP/1.0\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    r
}

/// The text between `<tbody>` and `</tbody>` of the table with id `id`.
fn table_body<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let rest = &dom[start..];
    let body = rest.find("<tbody>").expect("tbody") + "<tbody>".len();
    let end = rest.find("</tbody>").expect("/tbody");
    &rest[body..end]
}

#[test]
fn chromium_shows_a_running_job_on_the_monitor_page() {
    let work = tempfile::tempdir().unwrap();
    let masq = world_writable_dir(work.path(), "masq");
    let flags = world_writable_dir(work.path(), "flags");
    let release = flags.join("release");
    common::script(
        &masq.join("slowcc"),
        &format!(
            "while [ ! -e {} ]; do sleep 0.05; done\nexec gcc \"$@\"",
            release.display()
        ),
    );
    let path = format!("{}:/usr/bin:/bin", masq.display());
    let stats_port = free_port();
    let d = Daemon::start(
        Kind::Ours,
        work.path(),
        &[
            "--stats",
            "--stats-port",
            &stats_port.to_string(),
            "--jobs",
            "4",
            // slowcc reads its release flag outside the job's directory.
            "--no-sandbox",
        ],
        &[
            ("DISTCCD_MASQUERADE_DIRS", masq.to_str().unwrap()),
            ("DISTCCD_PATH", &path),
        ],
    );
    // Release the job however the test ends, so that the daemon's drop is quick.
    struct Release(PathBuf);
    impl Drop for Release {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.0, "");
        }
    }
    let _release = Release(release.clone());
    let port = d.port;
    let job = std::thread::spawn(move || {
        common::exchange(
            port,
            &common::plain_request(
                &["slowcc", "-c", "browser_job.c", "-o", "browser_job.o"],
                b"int b(void){return 3;}\n",
            ),
        )
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !status_body(stats_port).contains("\"file\":\"browser_job.c\"") {
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(20));
    }

    let url = format!("http://127.0.0.1:{stats_port}/");
    let profile = tempfile::tempdir().unwrap();
    let dom = String::from_utf8(chromium(profile.path(), "--dump-dom", &url).stdout).unwrap();
    let slots = table_body(&dom, "slots");
    assert!(slots.contains("browser_job.c"), "the job's file: {slots}");
    assert!(slots.contains("slowcc"), "its compiler: {slots}");
    assert!(slots.contains("127.0.0.1:"), "its client: {slots}");
    assert_eq!(slots.matches("<tr").count(), 4, "one row per slot: {slots}");
    assert_eq!(slots.matches("class=\"busy\"").count(), 1, "{slots}");
    assert!(dom.contains("1 of 4 slots busy"), "the summary line: {dom}");

    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("monitor_browser");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("monitor.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        profile.path(),
        &format!("--screenshot={}", shot.display()),
        &url,
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "a blank page? {} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());

    std::fs::write(&release, "").unwrap();
    let reply = job.join().unwrap();
    let (r, _) = distcc::protocol::decode_reply(&reply, 1, distcc::protocol::Limits::default())
        .expect("the job's reply");
    assert_eq!(r.status, 0);
}
