//! Serving connections: the per-connection flow and the accept loop (distcc 3.4
//! `serve.c`, `dparent.c`, `prefork.c` — but one process, an async executor, and a
//! semaphore instead of preforked children).
//!
//! The request is read *before* a compiler slot is taken, so a client that connects and
//! stalls holds nothing and is dropped after the I/O timeout. A refused or malformed
//! request gets nothing back — distcc has no error packet — and one log line naming the
//! client and the reason; over the protocol extension ([`crate::ext`]), which our own
//! client opens with `DIST 4`, it gets an `RFSE` packet with that reason first.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::io::{AsyncRead, AsyncWrite};
use smol::lock::Semaphore;

use super::acl::Acl;
use super::job::{self, Ending, JobSettings};
use super::stats::{JobResult, Stats, summary_line};
use crate::connection::{ConnError, Connection};
use crate::exitcode::ExitCode;
use crate::ext;
use crate::protocol;
use crate::trace::DETAIL;

/// What every connection shares.
pub(crate) struct Shared {
    pub settings: Arc<JobSettings>,
    pub acl: Acl,
    pub slots: Semaphore,
    /// One permit per open client connection, taken before `accept`: connections can
    /// never use the descriptors that jobs (their files, their compilers' pipes) need.
    pub connections: Arc<Semaphore>,
    /// What received requests, and the jobs they become, may hold in memory and on disk.
    pub budget: Arc<crate::connection::Budget>,
    pub io_timeout: Duration,
    pub stats: Stats,
    /// The daemon's key and `--require-auth` (`None`: no key, no channel offered).
    pub auth: Option<Arc<crate::noise::DaemonAuth>>,
}

/// `IP:PORT` as distcc prints it (IPv4-mapped addresses shown as IPv4).
pub(crate) fn peer_name(peer: Option<SocketAddr>) -> String {
    match peer {
        Some(SocketAddr::V6(v6)) if v6.ip().to_ipv4_mapped().is_some() => {
            format!(
                "{}:{}",
                v6.ip()
                    .to_ipv4_mapped()
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                v6.port()
            )
        }
        Some(p) => p.to_string(),
        None => "(inetd)".to_owned(),
    }
}

/// The largest request on the wire (a preprocessed source, or a pump request's files,
/// compressed).
pub(crate) const MAX_REQUEST: usize = 128 << 20;
/// How many requests over 1 MiB are received, and kept as jobs, at once: with receive
/// buffers of up to twice [`MAX_REQUEST`], at most 512 MiB between them.
pub(crate) const LARGE_REQUESTS: usize = 2;

/// Jobs smaller than this do their file work on the executor thread.
const INLINE_LIMIT: usize = 256 * 1024;
/// The same for compressed requests: at most a few MiB once unpacked, so an LZO bomb
/// unpacks on the blocking pool, never on the thread that serves every other client.
const INLINE_LZO_LIMIT: usize = 16 * 1024;

/// What a zstd body unpacks to at most, as far as the daemon will let it: its declared
/// size, or (no size) as much as a file may.
fn zstd_unpacked(p: &protocol::Payload) -> usize {
    match p {
        protocol::Payload::Zstd(d) => {
            crate::compress::zstd_declared_size(d).unwrap_or(job::MAX_FILE)
        }
        other => other.held_len(),
    }
}

/// Whether a request's file work is small enough for the executor thread: its bytes
/// under [`INLINE_LIMIT`] — for LZO, whose bodies unpack up to ~255×, under
/// [`INLINE_LZO_LIMIT`]; for zstd, whose frames declare their size, what they unpack to.
fn is_small(req: &protocol::Request) -> bool {
    let mut zstd = false;
    let mut unpacked = 0usize;
    let mut visit = |p: &protocol::Payload| {
        zstd |= matches!(p, protocol::Payload::Zstd(_));
        unpacked = unpacked.saturating_add(zstd_unpacked(p));
    };
    match &req.body {
        protocol::Body::Source(p) => visit(p),
        protocol::Body::Files(files) => {
            for f in files {
                if let protocol::FileKind::File(p) = &f.kind {
                    visit(p);
                }
            }
        }
    }
    if zstd {
        unpacked.saturating_add(request_size(req)) < INLINE_LIMIT
    } else if protocol::uses_lzo(req.version) {
        request_size(req) < INLINE_LZO_LIMIT
    } else {
        request_size(req) < INLINE_LIMIT
    }
}

/// The bytes a request carries.
fn request_size(req: &protocol::Request) -> usize {
    match &req.body {
        protocol::Body::Source(p) => p.held_len(),
        protocol::Body::Files(files) => files
            .iter()
            .map(|f| match &f.kind {
                protocol::FileKind::File(p) => p.held_len(),
                protocol::FileKind::Link(t) => t.len(),
            })
            .sum(),
    }
}

/// Serve one job on one connection, start to finish. Nothing a client sends should make
/// the job panic; if it still does, the panic stops at this connection: it is logged as a
/// refused job (`REJ_BAD_REQ`, `ret:109`) with the client's address, the job's files are
/// removed as the stack unwinds, and the daemon goes on serving.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    stream: S,
    peer: Option<SocketAddr>,
) {
    let start = Instant::now();
    let who = peer_name(peer);
    shared.stats.client(peer.map(|p| p.ip()));
    guarded(
        &shared.stats,
        &who,
        start,
        serve_job(shared, stream, &who, start),
    )
    .await;
}

/// Run one connection's job, catching a panic in it (or in blocking work it awaits: the
/// blocking pool hands a panic back to the awaiting task). Returns the summary line
/// logged for a panicked job.
pub(crate) async fn guarded(
    stats: &Stats,
    who: &str,
    start: Instant,
    job: impl Future<Output = ()>,
) -> Option<String> {
    use smol::future::FutureExt;
    let payload = AssertUnwindSafe(job).catch_unwind().await.err()?;
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    stats.record(JobResult::RejBadReq);
    log::error!("client {who}: the job panicked, closing: {what}");
    let line = summary_line(
        who,
        JobResult::RejBadReq,
        0,
        ExitCode::ProtocolError.code(),
        start.elapsed().as_millis(),
        None,
    );
    log::info!("{line}");
    Some(line)
}

async fn serve_job<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    stream: S,
    who: &str,
    start: Instant,
) {
    shared.stats.record(JobResult::TcpAccept);
    log::info!(target: DETAIL, "connection from {who}");
    let limits = protocol::Limits {
        max_request: MAX_REQUEST,
        ..protocol::Limits::default()
    };
    let mut conn = Connection::new(stream, shared.io_timeout)
        .with_limits(limits)
        .with_budget(shared.budget.clone());
    let auth = shared.auth.as_deref();
    // The whole opening within the I/O timeout, as a request (a client that drips a
    // byte at a time holds nothing for long).
    let timeout = shared.io_timeout;
    let opening = negotiate(&mut conn, who, auth, &shared.settings);
    let extension = match crate::connection::with_timeout(timeout, opening).await {
        Ok(x) => x,
        Err(e) => {
            let result = match e {
                ConnError::NoAnswer | ConnError::Truncated { .. } => JobResult::CliDisconn,
                ConnError::Timeout(_) | ConnError::Io(_) => JobResult::Other,
                _ => JobResult::RejBadReq,
            };
            shared.stats.record(result);
            if let ConnError::Refused(r) = &e {
                // Already logged, in one line, where it was decided.
                refuse(&mut conn, r).await;
            } else {
                log::error!("client {who}: extension handshake failed, closing: {e}");
            }
            return;
        }
    };
    match &extension {
        Some(x) if x.paired => return,
        // KEYS: a distcc 3.4 client, under --require-auth: closed on without a byte, as
        // 3.4 does to a client it refuses.
        None if crate::noise::check_plain(auth, who, false).is_err() => {
            shared.stats.record(JobResult::RejBadReq);
            return;
        }
        _ => {}
    }
    let req = match conn.read_request().await {
        Ok(r) => r,
        Err(e) => {
            if extension.is_some()
                && let ConnError::Protocol(p) = &e
            {
                let why = ext::Refusal::new(ext::code::BAD_REQUEST, p.to_string());
                refuse(&mut conn, &why).await;
            }
            let result = match e {
                ConnError::Protocol(_) => JobResult::RejBadReq,
                ConnError::NoAnswer | ConnError::Truncated { .. } => JobResult::CliDisconn,
                _ => JobResult::Other,
            };
            shared.stats.record(result);
            shared.stats.bad_request(who, result, &e);
            if matches!(e, ConnError::NoAnswer) {
                // A port probe (or a client that changed its mind): nothing to report.
                log::debug!("client {who} connected and left without a request");
            } else {
                log::error!("client {who}: bad request, closing: {e}");
            }
            return;
        }
    };
    shared.stats.received(request_size(&req));
    // A large request keeps its place in the budget while its job waits for a compiler
    // slot: what may wait for a slot, in memory or on disk, stays bounded.
    let mut held = conn.take_reservation();
    let version = req.version;
    let settings = shared.settings.clone();
    // File work goes to the blocking pool, except for small jobs, where the hand-off to
    // another thread would cost more than the work itself.
    let identity = extension.as_ref().and_then(|x| x.identity.clone());
    // Resolving a compiler identity may probe compilers: never on the executor.
    let small = is_small(&req) && identity.is_none();
    let prepared = if small {
        job::prepare(req, &settings)
    } else {
        smol::unblock(move || job::prepare_for(req, &settings, identity.as_deref())).await
    };
    let prepared = match prepared {
        Ok(p) => p,
        Err(refusal) => {
            shared.stats.record(JobResult::RejBadReq);
            shared.stats.refusal(who, &refusal);
            log::error!("client {who}: refused, closing: {refusal}");
            if extension.is_some() {
                refuse(&mut conn, &refusal.to_ext()).await;
            }
            log::info!(
                "{}",
                summary_line(
                    who,
                    JobResult::RejBadReq,
                    0,
                    refusal.exit_code().code(),
                    start.elapsed().as_millis(),
                    None
                )
            );
            return;
        }
    };
    // The compiler slot is held while the compiler runs, not while the reply goes out: a
    // client that never reads its reply must not keep others from compiling.
    let (status, ending, serr) = {
        let _slot = {
            let _queued = shared.stats.queued();
            shared.slots.acquire().await
        };
        // Compiling: the request is on disk, its memory gone; let the next large one in.
        held.take();
        let (cc, file) = prepared.names();
        let _running = shared.stats.compiling(who, cc, file);
        prepared.run(&shared.settings, conn.wait_for_eof()).await
    };
    // A large object is read into memory (and sent) only with a place in the budget.
    let _reply_place = if prepared.object_len() > crate::connection::SMALL {
        Some(shared.budget.place().await)
    } else {
        None
    };
    let (finished, prepared) = if small {
        (prepared.finish(status, ending, serr), prepared)
    } else {
        smol::unblock(move || (prepared.finish(status, ending, serr), prepared)).await
    };
    let millis = start.elapsed().as_millis();
    shared
        .stats
        .job_ended(millis, &finished.compiler, &finished.input);
    shared
        .stats
        .compiler_rss(job::children_peak_rss_kb(), &finished.compiler);
    let job = Some((finished.compiler.as_str(), finished.input.as_str()));
    match finished.ending {
        Ending::Finished if status == 0 => log::info!(
            target: DETAIL,
            "{} {} on localhost completed ok",
            finished.compiler,
            finished.input
        ),
        Ending::Finished => log::info!(
            target: DETAIL,
            "{} {} on localhost failed with wait status {status:#x}",
            finished.compiler,
            finished.input
        ),
        _ => {}
    }
    let result = match finished.ending {
        Ending::ClientGone => {
            log::warn!("client {who} disconnected, compiler killed");
            JobResult::CliDisconn
        }
        Ending::TimedOut => JobResult::CompileTimeout,
        Ending::Finished if status == 0 => JobResult::CompileOk,
        Ending::Finished => JobResult::CompileError,
    };
    if finished.ending != Ending::ClientGone {
        let reply = finished.reply;
        let zstd = conn.zstd();
        let encoded = if reply.object.len() < INLINE_LIMIT {
            protocol::encode_reply_in(&reply, zstd)
        } else {
            smol::unblock(move || protocol::encode_reply_in(&reply, zstd)).await
        };
        match encoded {
            Ok(bytes) => {
                shared.stats.sent(bytes.len());
                if let Err(e) = conn.send(&bytes).await {
                    log::warn!("client {who}: failed to send the reply: {e}");
                    shared.stats.record(JobResult::CliDisconn);
                    log::info!(
                        "{}",
                        summary_line(who, JobResult::CliDisconn, status, 107, millis, job)
                    );
                    return;
                }
            }
            Err(e) => log::error!("client {who}: failed to encode the reply: {e}"),
        }
    }
    let kept = match prepared.files_kept() {
        Some((all, kept)) => format!("; {kept} of its {all} files kept from an earlier job"),
        None => String::new(),
    };
    // The reply is out: now remove the job's files.
    if small {
        drop(prepared);
    } else {
        smol::unblock(move || drop(prepared)).await;
    }
    shared.stats.record(result);
    shared.stats.outcome(who, result, status, job);
    // The line distcc 3.4 logs, as it is (scripts grep it), then how it travelled.
    let over = match &extension {
        Some(x) if x.agreed.zstd => " over the extension, zstd",
        Some(_) => " over the extension",
        None => "",
    };
    log::info!(target: DETAIL, "job complete (protocol {version}){over}{kept}");
    log::info!("{}", summary_line(who, result, status, 0, millis, job));
}

/// What the protocol extension agreed for one connection.
#[allow(dead_code, reason = "read by the identity and keys layers' hooks")]
pub(crate) struct Extension {
    pub agreed: ext::Agreed,
    /// The client's compiler identity (`CIDN`), when `identity` was agreed.
    pub identity: Option<String>,
    /// A pairing (`distcc-config --pair`), done: no job follows.
    pub paired: bool,
}

/// The protocol extension's opening ([`crate::ext`]): `None` for a distcc 3.4 client
/// (nothing read beyond what [`Connection::read_request`] reads anyway). A refusal to
/// go on is `Err(ConnError::Refused)`, which the caller sends.
async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    who: &str,
    auth: Option<&crate::noise::DaemonAuth>,
    settings: &JobSettings,
) -> Result<Option<Extension>, ConnError> {
    if !conn.opens_extension().await? {
        return Ok(None);
    }
    let hello = conn.receive(ext::decode_extn).await?;
    let mut offer = ext::daemon_offer();
    if auth.is_some() {
        offer.extend(crate::noise::daemon_offers());
    }
    // Informational: what the client may act on (`directives-only yes`).
    let env = &settings.env;
    let info = ext::daemon_info(env.distccd_path.as_deref().or(env.path.as_deref()));
    let answer = ext::answer_for(&hello, &offer, &info);
    let agreed =
        ext::Agreed::from_answer(answer, &offer).map_err(|e| ConnError::Protocol(e.into()))?;
    // KEYS: no channel agreed under --require-auth: refused instead of an answer (the
    // client sends nothing more until it has one).
    if !agreed.noise {
        crate::noise::check_plain(auth, who, true)?;
    }
    let mut bytes = Vec::new();
    ext::encode_answer(&mut bytes, &agreed.answer);
    conn.send(&bytes).await?;
    log::info!(
        "client {who} speaks {} {}; using: {}",
        ext::EXT_NAME,
        hello.version,
        agreed
            .answer
            .get("use")
            .filter(|u| !u.is_empty())
            .unwrap_or("(nothing)")
    );
    // KEYS: the Noise channel, and the client's key checked (or a pairing, answered).
    if let Some(auth) = auth.filter(|_| agreed.noise)
        && crate::noise::serve_secure(conn, auth, &hello, &agreed, who).await?
            == crate::noise::Secured::Paired
    {
        return Ok(Some(Extension {
            agreed,
            identity: None,
            paired: true,
        }));
    }
    conn.set_zstd(agreed.zstd);
    // IDENTITY HOOK: the identity layer resolves this to one of our compilers (or
    // refuses with `compiler-identity`) before the job is prepared.
    let identity = if agreed.identity {
        Some(conn.receive(ext::decode_cidn).await?)
    } else {
        None
    };
    Ok(Some(Extension {
        agreed,
        identity,
        paired: false,
    }))
}

/// Tell an extension client why it is refused (best effort: the connection closes next).
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    refusal: &ext::Refusal,
) {
    let mut bytes = Vec::new();
    ext::encode_refusal(&mut bytes, refusal);
    if let Err(e) = conn.send(&bytes).await {
        log::debug!("failed to send the refusal: {e}");
        return;
    }
    // Let the client read it: closing on bytes it is still sending (a request right
    // behind the channel's handshake) would reset the connection and lose the refusal.
    let _ = smol::future::or(
        async {
            conn.wait_for_eof().await;
        },
        async {
            smol::Timer::after(REFUSAL_LINGER).await;
        },
    )
    .await;
}

/// How long a refusal waits for the client to hang up.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

/// Accept connections until `stop` resolves; each runs as its own task.
pub(crate) async fn accept_loop(
    ex: Rc<smol::LocalExecutor<'static>>,
    shared: Rc<Shared>,
    listener: async_net::TcpListener,
) {
    loop {
        let permit = shared.connections.acquire_arc().await;
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::error!("accept failed: {e}");
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !shared.acl.allows(peer.ip()) {
            shared.stats.refused("access_list");
            log::error!(
                "connection from client '{}' denied by access list",
                peer_name(Some(peer))
            );
            continue;
        }
        let _ = stream.set_nodelay(true);
        // A client machine that vanishes mid-job frees its slot in seconds.
        if let Err(e) = crate::connection::watch_peer(socket2::SockRef::from(&stream)) {
            log::debug!("can't set keepalive for {}: {e}", peer_name(Some(peer)));
        }
        let shared = shared.clone();
        ex.spawn(async move {
            serve(&shared, stream, Some(peer)).await;
            drop(permit);
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_job_is_a_refused_job() {
        let stats = Stats::default();
        let line = smol::block_on(guarded(&stats, "10.0.0.7:4321", Instant::now(), async {
            smol::future::yield_now().await;
            let name = std::hint::black_box("/usr/bin\u{20ac}gcc");
            let _ = &name[..9];
        }))
        .expect("the panic is caught and reported");
        assert!(
            line.starts_with("client: 10.0.0.7:4321 REJ_BAD_REQ "),
            "{line}"
        );
        assert!(line.contains(" ret:109 "), "{line}");
        assert!(stats.page(0).contains("\ndcc_rej_bad_req 1\n"));
        // A job that does not panic is left alone.
        let quiet = smol::block_on(guarded(&stats, "x:1", Instant::now(), async {}));
        assert_eq!(quiet, None);
    }

    #[test]
    fn a_panic_in_blocking_work_is_caught_too() {
        let stats = Stats::default();
        let line = smol::block_on(guarded(&stats, "h:1", Instant::now(), async {
            smol::unblock(|| panic!("in the pool")).await
        }));
        assert!(line.is_some_and(|l| l.contains("REJ_BAD_REQ")));
    }

    #[test]
    fn running_count_survives_a_panic() {
        let stats = Stats::default();
        let _ = smol::block_on(guarded(&stats, "h:1", Instant::now(), async {
            let _r = stats.compiling("h:1", "gcc", "a.c");
            panic!("mid-compile");
        }));
        assert_eq!(stats.running(), 0);
        assert!(stats.snapshot().running.is_empty(), "not shown running");
    }
}
