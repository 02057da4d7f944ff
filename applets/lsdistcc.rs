//! `lsdistcc`: list the distcc servers that answer (distcc 3.4's `lsdistcc.c`, which
//! Debian ships and `pump` runs for `DISTCC_POTENTIAL_HOSTS`).
//!
//! Candidates are names made from a format (`distcc%d` → `distcc1`, `distcc2`, …, until
//! more than `-g` names in a row don't resolve) or the names given. Each one that resolves
//! is connected to (`-c`, ms) and, with `-pCOMPILER`, sent the fixed probe compile of
//! `int foo(){return 0;}` (`-P` protocol, `-k` ms), which must come back with `DONE` of
//! that protocol and `STAT` 0. A server that passes is printed as a host-list entry:
//! the name (or `-n` the address), `:PORT` when not 3632, `,lzo` / `,lzo,cpp` for
//! protocols 2 / 3, ` MS` with `-l`; with `-x` failures are printed too, with `,down`.
//! Exit status 0 when some server was listed, 1 when none.
//!
//! Our extension: `-z`/`--zeroconf` lists what mDNS sees (`_distcc._tcp`, every compiler
//! version) as `addr:port/jobs` lines, with `-v` also the instance name and TXT record.
//!
//! Differences from 3.4: names are resolved with the system resolver in threads (so `-h`
//! and `-o`, 3.4's own DNS retry timer and overlap, are accepted and ignored); `-m` and
//! `-d` are not supported; IPv6 addresses work.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEFAULT_FORMAT: &str = "distcc%d";
const DEFAULT_PORT: u16 = 3632;
/// 3.4 stops after 500 names.
const MAX_HOSTS: usize = 500;

#[derive(Debug, Clone)]
struct Opts {
    latency: bool,
    numeric: bool,
    bang_down: bool,
    big_timeout: Duration,
    conn_timeout_ms: u64,
    comp_timeout_ms: u64,
    dns_gap: usize,
    port: u16,
    protocol: u8,
    compiler: Option<String>,
    verbose: u32,
    zeroconf: bool,
    /// Set by `-t`: for `-z`, how long to listen (default 2 s).
    timeout_given: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            latency: false,
            numeric: false,
            bang_down: false,
            big_timeout: Duration::from_secs(7),
            conn_timeout_ms: 900,
            comp_timeout_ms: 1500,
            dns_gap: 0,
            port: DEFAULT_PORT,
            protocol: 1,
            compiler: None,
            verbose: 0,
            zeroconf: false,
            timeout_given: false,
        }
    }
}

const USAGE: &str = "Usage: lsdistcc [-tTIMEOUT] [-nvlx] [-pCOMPILER] [format | host...]
       lsdistcc -z [-tSECONDS] [-v]
Tries the names format%d for d = 1, 2, ... (default format distcc%d; stops at the
first name that does not resolve, see -g) or the hosts given, and prints those where
a distcc server listens, as host-list entries.
Options:
-l          print the latency in milliseconds after each host
-n          print the IP address instead of the name
-x          list hosts that failed too, with ,down
-tTIMEOUT   stop after TIMEOUT seconds [7]
-cCTIMEOUT  give up connecting after CTIMEOUT ms [900] (0: don't connect)
-kKTIMEOUT  give up the probe compile after KTIMEOUT ms [1500] (0: no compile)
-gDNSGAP    number of names that don't resolve to tolerate [0]
-rPORT      port to connect to [3632]
-PPROTOCOL  protocol version of the probe, 1-3 [1]
-pCOMPILER  compiler for the probe compile (without it only connect)
-hMS, -oN   accepted for compatibility, ignored
-v          verbose (repeat for more)
-z, --zeroconf  list the servers mDNS/DNS-SD sees instead (listen -t seconds, default 2)

Examples:
lsdistcc -l -pgcc
lsdistcc -pgcc hosta somehost hostx
";

fn usage() -> i32 {
    eprint!("{USAGE}");
    1
}

/// The number after a one-letter option (`-t7`), 3.4 style: glued to the letter.
fn num(arg: &str, rest: &str) -> Result<u64, String> {
    rest.parse::<u64>()
        .map_err(|_| format!("lsdistcc: bad number in {arg}"))
}

fn parse(args: &[String]) -> Result<(Opts, Vec<String>), String> {
    let mut o = Opts::default();
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if !arg.starts_with('-') || arg == "-" {
            break;
        }
        i += 1;
        if arg == "--zeroconf" {
            o.zeroconf = true;
            continue;
        }
        if arg == "--" {
            break;
        }
        let mut chars = arg.chars().skip(1);
        let Some(letter) = chars.next() else {
            return Err(format!("lsdistcc: bad option {arg}"));
        };
        let rest: String = chars.collect();
        match letter {
            't' => {
                o.big_timeout = Duration::from_secs(num(arg, &rest)?);
                o.timeout_given = true;
            }
            'c' => o.conn_timeout_ms = num(arg, &rest)?,
            'k' => o.comp_timeout_ms = num(arg, &rest)?,
            'g' => o.dns_gap = num(arg, &rest)? as usize,
            'h' | 'o' => {
                num(arg, &rest)?;
            }
            'r' => {
                o.port = rest
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("lsdistcc: bad port in {arg}"))?
            }
            'P' => {
                o.protocol = rest
                    .parse::<u8>()
                    .ok()
                    .filter(|p| (1..=3).contains(p))
                    .ok_or_else(|| format!("lsdistcc: protocol must be 1, 2 or 3: {arg}"))?
            }
            'p' if !rest.is_empty() => o.compiler = Some(rest),
            'l' | 'n' | 'x' | 'v' | 'z' if rest.chars().all(|c| "lnxvz".contains(c)) => {
                for c in std::iter::once(letter).chain(rest.chars()) {
                    match c {
                        'l' => o.latency = true,
                        'n' => o.numeric = true,
                        'x' => o.bang_down = true,
                        'v' => o.verbose += 1,
                        _ => o.zeroconf = true,
                    }
                }
            }
            'm' | 'd' => return Err(format!("lsdistcc: {arg} is not supported")),
            _ => return Err(format!("lsdistcc: unknown option {arg}")),
        }
    }
    Ok((o, args.get(i..).unwrap_or_default().to_vec()))
}

/// The probe request of 3.4's `generate_query`.
fn probe_request(protocol: u8, compiler: &str) -> Result<Vec<u8>, String> {
    const PROGRAM: &str = "int foo(){return 0;}";
    // DIST and ARGC carry a number as their value; the others a length and a body.
    let mut out = format!("DIST{protocol:08x}").into_bytes();
    let string = |out: &mut Vec<u8>, tok: &str, s: &[u8]| {
        out.extend_from_slice(format!("{tok}{:08x}", s.len()).as_bytes());
        out.extend_from_slice(s);
    };
    if protocol == 3 {
        string(&mut out, "CDIR", b"/");
    }
    let argv: [&[u8]; 5] = [compiler.as_bytes(), b"-c", b"hello.c", b"-o", b"hello.o"];
    out.extend_from_slice(format!("ARGC{:08x}", argv.len()).as_bytes());
    for a in argv {
        string(&mut out, "ARGV", a);
    }
    let body = if protocol == 1 {
        PROGRAM.as_bytes().to_vec()
    } else {
        distcc::compress::compress(PROGRAM.as_bytes()).map_err(|e| e.to_string())?
    };
    if protocol == 3 {
        out.extend_from_slice(b"NFIL00000001");
        out.extend_from_slice(b"NAME00000008/hello.c");
        out.extend_from_slice(format!("FILE{:08x}", body.len()).as_bytes());
    } else {
        out.extend_from_slice(format!("DOTI{:08x}", body.len()).as_bytes());
    }
    out.extend_from_slice(&body);
    Ok(out)
}

/// Read one 12-byte header; its token and value.
fn header(s: &mut TcpStream) -> std::io::Result<(String, u32)> {
    let mut h = [0u8; 12];
    s.read_exact(&mut h)?;
    let tok = String::from_utf8_lossy(h.get(..4).unwrap_or_default()).into_owned();
    let hex = std::str::from_utf8(h.get(4..).unwrap_or_default()).unwrap_or("");
    let val = u32::from_str_radix(hex, 16)
        .map_err(|_| std::io::Error::other(format!("bad header {tok}{hex}")))?;
    Ok((tok, val))
}

/// Is there a distcc server at `addr`? Connect, then with a compiler the probe compile.
fn probe(addr: SocketAddr, o: &Opts, request: Option<&[u8]>, name: &str) -> bool {
    if o.conn_timeout_ms == 0 {
        return true;
    }
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_millis(o.conn_timeout_ms)) {
        Ok(s) => s,
        Err(e) => {
            if o.verbose > 0 {
                eprintln!("lsdistcc: connecting to {name} ({addr}) failed: {e}");
            }
            return false;
        }
    };
    let Some(request) = request.filter(|_| o.comp_timeout_ms > 0) else {
        return true;
    };
    let deadline = Instant::now() + Duration::from_millis(o.comp_timeout_ms);
    let result = (|| -> std::io::Result<bool> {
        let left = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))
        };
        s.set_write_timeout(Some(left()?))?;
        s.write_all(request)?;
        s.set_read_timeout(Some(left()?))?;
        let (tok, v) = header(&mut s)?;
        if tok != "DONE" || v != u32::from(o.protocol) {
            if o.verbose > 1 {
                eprintln!(
                    "lsdistcc: {name}: expected DONE{:08x}, got {tok}{v:08x}",
                    o.protocol
                );
            }
            return Ok(false);
        }
        s.set_read_timeout(Some(left()?))?;
        let (tok, v) = header(&mut s)?;
        if tok != "STAT" || v != 0 {
            if o.verbose > 1 {
                eprintln!("lsdistcc: {name}: probe compile failed ({tok} {v:#x})");
            }
            return Ok(false);
        }
        // The rest, until the server closes.
        let mut sink = [0u8; 4096];
        loop {
            s.set_read_timeout(Some(left()?))?;
            if s.read(&mut sink)? == 0 {
                return Ok(true);
            }
        }
    })();
    match result {
        Ok(up) => up,
        Err(e) => {
            if o.verbose > 0 {
                eprintln!("lsdistcc: {name}: {e}");
            }
            false
        }
    }
}

/// What to print for one host.
fn line(name: &str, ip: IpAddr, up: bool, ms: u128, o: &Opts) -> String {
    let mut out = if o.numeric {
        match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        }
    } else {
        name.to_owned()
    };
    if o.port != DEFAULT_PORT {
        out.push_str(&format!(":{}", o.port));
    }
    out.push_str(match o.protocol {
        2 => ",lzo",
        3 => ",lzo,cpp",
        _ => "",
    });
    if !up {
        out.push_str(",down");
    }
    if o.latency {
        out.push_str(&format!(" {ms}"));
    }
    out
}

fn resolve(name: &str, port: u16) -> Option<SocketAddr> {
    let addrs: Vec<SocketAddr> = (name, port).to_socket_addrs().ok()?.collect();
    // 3.4 speaks IPv4 only; prefer it, fall back to IPv6.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
}

enum Event {
    /// A name that did not resolve.
    NoAddress,
    /// A host that was probed.
    Probed { line: Option<String> },
}

fn probe_names(o: &Opts, words: &[String]) -> i32 {
    let request = match &o.compiler {
        Some(cc) => match probe_request(o.protocol, cc) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("lsdistcc: can't build the probe: {e}");
                return 1;
            }
        },
        None => None,
    };
    let format = match words.first() {
        Some(w) if w.contains("%d") => Some(w.clone()),
        Some(_) => None,
        None => Some(DEFAULT_FORMAT.to_owned()),
    };
    let deadline = Instant::now() + o.big_timeout;
    let (tx, rx) = mpsc::channel::<Event>();
    let start = |name: String| {
        let tx = tx.clone();
        let o = o.clone();
        let request = request.clone();
        std::thread::spawn(move || {
            let event = match resolve(&name, o.port) {
                None => {
                    if o.verbose > 0 {
                        eprintln!("lsdistcc: {name} not found");
                    }
                    Event::NoAddress
                }
                Some(addr) => {
                    let t0 = Instant::now();
                    let up = probe(addr, &o, request.as_deref(), &name);
                    let ms = t0.elapsed().as_millis();
                    Event::Probed {
                        line: (up || o.bang_down).then(|| line(&name, addr.ip(), up, ms, &o)),
                    }
                }
            };
            let _ = tx.send(event);
        });
    };
    let mut listed = 0usize;
    let mut print = |l: Option<String>| {
        if let Some(l) = l {
            println!("{l}");
            let _ = std::io::stdout().flush();
            listed += 1;
        }
    };
    match format {
        None => {
            for w in words {
                start(w.clone());
            }
            for _ in words {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break;
                };
                match rx.recv_timeout(left) {
                    Ok(Event::Probed { line }) => print(line),
                    Ok(Event::NoAddress) => {}
                    Err(_) => break,
                }
            }
        }
        Some(fmt) => {
            // Two lookups in flight (3.4's default overlap of 1); stop starting new ones
            // once more than -g names did not resolve.
            let mut next = 1usize;
            let mut running = 0usize;
            let mut misses = 0usize;
            loop {
                while running < 2 && misses <= o.dns_gap && next <= MAX_HOSTS {
                    start(fmt.replacen("%d", &next.to_string(), 1));
                    next += 1;
                    running += 1;
                }
                if running == 0 {
                    break;
                }
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break;
                };
                match rx.recv_timeout(left) {
                    Ok(Event::Probed { line }) => print(line),
                    Ok(Event::NoAddress) => misses += 1,
                    Err(_) => break,
                }
                running -= 1;
            }
        }
    }
    if listed > 0 { 0 } else { 1 }
}

fn list_zeroconf(o: &Opts) -> i32 {
    let window = if o.timeout_given {
        o.big_timeout
    } else {
        Duration::from_secs(2)
    };
    match distcc::zeroconf::browse_for(window) {
        Ok(found) => {
            for f in &found {
                if o.verbose > 0 {
                    let txt: Vec<String> = f.txt.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!("{} {} {}", f.host_spec(), f.name, txt.join(" "));
                } else {
                    println!("{}", f.host_spec());
                }
            }
            if found.is_empty() { 1 } else { 0 }
        }
        Err(e) => {
            eprintln!("lsdistcc: {e}");
            1
        }
    }
}

/// Entry point; returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let args = crate::text_args(&args);
    if args.iter().any(|a| a == "--help") {
        print!("{USAGE}");
        return 0;
    }
    if args.iter().any(|a| a == "--version") {
        print!("{}", distcc::version_text("lsdistcc"));
        return 0;
    }
    let (o, words) = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return usage();
        }
    };
    if o.zeroconf {
        return list_zeroconf(&o);
    }
    probe_names(&o, &words)
}

/// The hidden `distcc-zeroconf-browser` applet: the background browser that keeps the
/// `+zeroconf` host cache current (see `distcc::zeroconf`). Clients start it; it takes
/// no arguments.
pub fn browser_main(_args: Vec<OsString>) -> i32 {
    distcc::zeroconf::browser_main()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_glue_their_values_like_3_4() {
        let (o, rest) = parse(&s(&[
            "-t3", "-c100", "-k0", "-r4000", "-P3", "-pgcc", "-lnx", "a",
        ]))
        .unwrap();
        assert_eq!(o.big_timeout, Duration::from_secs(3));
        assert_eq!((o.conn_timeout_ms, o.comp_timeout_ms), (100, 0));
        assert_eq!((o.port, o.protocol), (4000, 3));
        assert_eq!(o.compiler.as_deref(), Some("gcc"));
        assert!(o.latency && o.numeric && o.bang_down);
        assert_eq!(rest, s(&["a"]));
        assert!(parse(&s(&["-P4"])).is_err());
        assert!(parse(&s(&["-q"])).is_err());
        assert!(parse(&s(&["-p"])).is_err());
        assert!(parse(&s(&["--zeroconf"])).unwrap().0.zeroconf);
        assert!(parse(&s(&["-z"])).unwrap().0.zeroconf);
    }

    #[test]
    fn probe_is_3_4s_canned_query() {
        let q = probe_request(1, "gcc").unwrap();
        assert_eq!(
            String::from_utf8(q).unwrap(),
            "DIST00000001ARGC00000005ARGV00000003gccARGV00000002-cARGV00000007hello.c\
             ARGV00000002-oARGV00000007hello.oDOTI00000014int foo(){return 0;}"
        );
        let q = probe_request(3, "gcc").unwrap();
        let text = String::from_utf8_lossy(&q);
        assert!(
            text.starts_with("DIST00000003CDIR00000001/ARGC00000005ARGV00000003gcc"),
            "{text}"
        );
        assert!(
            text.contains("ARGV00000007hello.oNFIL00000001NAME00000008/hello.cFILE"),
            "{text}"
        );
    }

    #[test]
    fn output_lines() {
        let o = Opts {
            port: 4000,
            protocol: 3,
            ..Opts::default()
        };
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(line("distcc1", ip, true, 5, &o), "distcc1:4000,lzo,cpp");
        let o = Opts {
            numeric: true,
            latency: true,
            ..Opts::default()
        };
        assert_eq!(line("distcc1", ip, false, 5, &o), "10.0.0.2,down 5");
    }
}
