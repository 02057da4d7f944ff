//! `cargo bench -- --suite wire`: LZO (protocols 2/3, what distcc 3.4 peers get) against
//! zstd (our protocol extension, src/ext.rs) on a real tree, Lua 5.4's sources.
//!
//! Two views:
//! * **codec**: every `.c` file preprocessed (`gcc -E`, the DOTI body) and compiled
//!   (`gcc -O2 -c`, the DOTO body), each compressed and decompressed in this process —
//!   bytes on the wire and the client's CPU per job for the codec alone (compress the
//!   source, decompress the object), median over rounds;
//! * **end to end**: the same jobs through our client and daemon, once with the extension
//!   (zstd) and once with `DISTCC_EXTENSIONS=0` (LZO), through a counting relay: bytes in
//!   both directions and the client processes' CPU (user + system) per job.

use crate::harness::lua_sources;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One job's bodies.
struct Job {
    source: Vec<u8>,
    object: Vec<u8>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Preprocess and compile every Lua `.c` file here, as a client and a server would.
fn jobs(lua: &Path, work: &Path) -> Result<Vec<(String, Job)>, String> {
    let src = lua.to_path_buf();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&src)
        .map_err(|e| format!("{}: {e}", src.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for c in names {
        let name = c.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        let obj = work.join(format!("{name}.o"));
        let pre = Command::new("gcc")
            .args(["-O2", "-E"])
            .arg(&c)
            .output()
            .map_err(|e| e.to_string())?;
        let cc = Command::new("gcc")
            .args(["-O2", "-c"])
            .arg(&c)
            .arg("-o")
            .arg(&obj)
            .status()
            .map_err(|e| e.to_string())?;
        if !pre.status.success() || !cc.success() {
            return Err(format!("gcc failed on {name}"));
        }
        let object = std::fs::read(&obj).map_err(|e| e.to_string())?;
        out.push((
            name,
            Job {
                source: pre.stdout,
                object,
            },
        ));
    }
    Ok(out)
}

/// Bytes on the wire and codec CPU for one codec over all jobs.
struct CodecCost {
    source_bytes: usize,
    object_bytes: usize,
    /// Client side per job: compress the source, decompress the object (µs, median round).
    client_us: f64,
    /// Server side per job: decompress the source, compress the object.
    server_us: f64,
}

fn codec_cost(
    jobs: &[(String, Job)],
    rounds: usize,
    pack: &dyn Fn(&[u8]) -> Vec<u8>,
    unpack: &dyn Fn(&[u8]) -> Vec<u8>,
) -> CodecCost {
    let source_bytes = jobs.iter().map(|(_, j)| pack(&j.source).len()).sum();
    let object_bytes = jobs.iter().map(|(_, j)| pack(&j.object).len()).sum();
    let packed: Vec<(Vec<u8>, Vec<u8>)> = jobs
        .iter()
        .map(|(_, j)| (pack(&j.source), pack(&j.object)))
        .collect();
    let (mut client, mut server) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        for ((_, j), (_, obj)) in jobs.iter().zip(&packed) {
            std::hint::black_box(pack(&j.source));
            std::hint::black_box(unpack(obj));
        }
        client.push(t.elapsed().as_secs_f64() * 1e6 / jobs.len() as f64);
        let t = Instant::now();
        for ((_, j), (src, _)) in jobs.iter().zip(&packed) {
            std::hint::black_box(unpack(src));
            std::hint::black_box(pack(&j.object));
        }
        server.push(t.elapsed().as_secs_f64() * 1e6 / jobs.len() as f64);
    }
    CodecCost {
        source_bytes,
        object_bytes,
        client_us: median(client),
        server_us: median(server),
    }
}

fn lzo_pack(d: &[u8]) -> Vec<u8> {
    distcc::compress::compress(d).unwrap_or_default()
}
fn lzo_unpack(d: &[u8]) -> Vec<u8> {
    distcc::compress::decompress(d, 1 << 30).unwrap_or_default()
}
fn zstd_pack(d: &[u8]) -> Vec<u8> {
    distcc::compress::zstd_compress(d).unwrap_or_default()
}
fn zstd_unpack(d: &[u8]) -> Vec<u8> {
    distcc::compress::zstd_decompress(d, 1 << 30).unwrap_or_default()
}

/// A relay in front of a daemon that counts bytes each way.
struct Relay {
    port: u16,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

fn pipe(mut from: TcpStream, mut to: TcpStream, count: Arc<AtomicU64>) {
    let mut buf = [0u8; 65536];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(buf.get(..n).unwrap_or_default()).is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Relay {
    fn start(target: u16) -> Result<Relay, String> {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = l.local_addr().map_err(|e| e.to_string())?.port();
        let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (u, d) = (up.clone(), down.clone());
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let Ok(s) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (c.try_clone(), s.try_clone()) else {
                    continue;
                };
                let (u, d) = (u.clone(), d.clone());
                std::thread::spawn(move || pipe(c, s, u));
                std::thread::spawn(move || pipe(s2, c2, d));
            }
        });
        Ok(Relay { port, up, down })
    }

    fn take(&self) -> (u64, u64) {
        (
            self.up.swap(0, Ordering::SeqCst),
            self.down.swap(0, Ordering::SeqCst),
        )
    }
}

/// CPU (user + system) of this process's reaped children so far, in seconds.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the zeroed struct.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct EndToEnd {
    up: u64,
    down: u64,
    cpu_ms_per_job: f64,
    jobs: usize,
}

/// Run every Lua file through our client, sequentially, `rounds` times; bytes of the last
/// round, CPU per job as the median round.
fn end_to_end(
    ours: &Path,
    lua: &Path,
    work: &Path,
    relay: &Relay,
    extensions: bool,
    rounds: usize,
) -> Result<EndToEnd, String> {
    let src = lua.to_path_buf();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    files.sort();
    let dd = work.join(if extensions { "dd-ext" } else { "dd-plain" });
    let hosts = format!("127.0.0.1:{}/4,lzo", relay.port);
    let mut cpu = Vec::new();
    let (mut up, mut down) = (0, 0);
    for _ in 0..rounds {
        relay.take();
        let before = children_cpu();
        for f in &files {
            let obj = work.join("e2e.o");
            let mut cmd = Command::new(ours);
            cmd.arg("gcc")
                .args(["-O2", "-c"])
                .arg(f)
                .arg("-o")
                .arg(&obj)
                .env("DISTCC_HOSTS", &hosts)
                .env("DISTCC_DIR", &dd)
                .env("DISTCC_RACE", "0")
                .env("DISTCC_FALLBACK", "0")
                .env_remove("DISTCC_VERBOSE")
                .env_remove("DISTCC_LOG")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if !extensions {
                cmd.env("DISTCC_EXTENSIONS", "0");
            }
            let st = cmd.status().map_err(|e| e.to_string())?;
            if !st.success() {
                return Err(format!("distcc failed on {}", f.display()));
            }
        }
        cpu.push((children_cpu() - before) * 1000.0 / files.len() as f64);
        // The relay's threads may lag the client's exit by a moment.
        std::thread::sleep(Duration::from_millis(200));
        (up, down) = relay.take();
    }
    Ok(EndToEnd {
        up,
        down,
        cpu_ms_per_job: median(cpu),
        jobs: files.len(),
    })
}

/// Start our daemon on a free port; killed by the caller.
fn daemon(ours: &Path, work: &Path) -> Result<(std::process::Child, u16), String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(ours)
        .arg("distccd")
        .args([
            "--daemon",
            "--no-detach",
            "--listen",
            "127.0.0.1",
            "--allow",
            "127.0.0.1",
        ])
        .args(["--port", &port.to_string(), "--jobs", "4"])
        .arg("--log-file")
        .arg(work.join("distccd.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("our daemon did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, port))
}

fn kb(n: usize) -> String {
    format!("{:.0} KiB", n as f64 / 1024.0)
}

/// Run the suite and print its table (markdown).
pub fn run(ours: &Path, work: &Path, quick: bool) -> Result<String, String> {
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let (lua, version) = lua_sources(work)?;
    let objs = work.join("wire-objs");
    std::fs::create_dir_all(&objs).map_err(|e| e.to_string())?;
    let jobs = jobs(&lua, &objs)?;
    let rounds = if quick { 3 } else { 9 };
    let plain_src: usize = jobs.iter().map(|(_, j)| j.source.len()).sum();
    let plain_obj: usize = jobs.iter().map(|(_, j)| j.object.len()).sum();
    let lzo = codec_cost(&jobs, rounds, &lzo_pack, &lzo_unpack);
    let zstd = codec_cost(&jobs, rounds, &zstd_pack, &zstd_unpack);
    // Other levels, for the choice of distcc::compress::ZSTD_LEVEL.
    let others: Vec<(String, CodecCost)> = [-5, -1, 3]
        .iter()
        .map(|&level| {
            let pack = move |d: &[u8]| zstd::bulk::compress(d, level).unwrap_or_default();
            (
                format!("zstd level {level} (not used)"),
                codec_cost(&jobs, rounds, &pack, &zstd_unpack),
            )
        })
        .collect();
    let mut t = format!(
        "## Wire: LZO vs zstd on {} ({} jobs, gcc -O2)\n\n\
         | codec | sources (DOTI) | objects (DOTO) | total | client codec CPU/job | server codec CPU/job |\n\
         |---|---|---|---|---|---|\n\
         | none | {} | {} | {} | – | – |\n",
        version,
        jobs.len(),
        kb(plain_src),
        kb(plain_obj),
        kb(plain_src + plain_obj)
    );
    let mut all = vec![
        ("LZO1X-1 (3.4 peers)".to_string(), &lzo),
        ("zstd level 1 (extension)".to_string(), &zstd),
    ];
    all.extend(others.iter().map(|(n, c)| (n.clone(), c)));
    for (name, c) in all {
        t.push_str(&format!(
            "| {name} | {} | {} | {} ({:.1}%) | {:.0} µs | {:.0} µs |\n",
            kb(c.source_bytes),
            kb(c.object_bytes),
            kb(c.source_bytes + c.object_bytes),
            100.0 * (c.source_bytes + c.object_bytes) as f64 / (plain_src + plain_obj) as f64,
            c.client_us,
            c.server_us
        ));
    }
    let (mut child, port) = daemon(ours, work)?;
    let result = (|| -> Result<(EndToEnd, EndToEnd), String> {
        let relay = Relay::start(port)?;
        let e2e_rounds = if quick { 1 } else { 3 };
        let plain = end_to_end(ours, &lua, work, &relay, false, e2e_rounds)?;
        let ext = end_to_end(ours, &lua, work, &relay, true, e2e_rounds)?;
        Ok((plain, ext))
    })();
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let (plain, ext) = result?;
    t.push_str(&format!(
        "\nEnd to end, our client and daemon on 127.0.0.1 ({} jobs one after another):\n\n\
         | connection | client → server | server → client | client CPU/job (cpp included) |\n\
         |---|---|---|---|\n",
        plain.jobs
    ));
    for (name, e) in [
        ("DISTCC_EXTENSIONS=0 (LZO)", &plain),
        ("extension (zstd)", &ext),
    ] {
        t.push_str(&format!(
            "| {name} | {} | {} | {:.1} ms |\n",
            kb(e.up as usize),
            kb(e.down as usize),
            e.cpu_ms_per_job
        ));
    }
    Ok(t)
}
