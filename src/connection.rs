//! The I/O edge of the protocol: a [`crate::protocol`] codec driven over a socket or pipe
//! (distcc 3.4 `io.c`, `bulk.c`).
//!
//! A [`Connection`] owns a stream and a receive buffer. It reads until the codec says a
//! whole message is there, under the I/O timeout (`DISTCC_IO_TIMEOUT`, default 300 s), and
//! maps every failure to one of distcc's outcomes: EOF mid-message is "truncated" (108), a
//! bad token is a protocol error (109), a stall is a timeout.

use std::io;
use std::time::Duration;

use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use thiserror::Error;

use crate::exitcode::ExitCode;
use crate::protocol::{self, Limits, ProtocolError, Request, RequestFramer};

/// How soon a silent peer is probed: a compile may run for minutes with nothing on the
/// wire, and the peer's kernel answers keepalive probes whatever its compiler is doing, so
/// probes tell a dead machine from a long compile.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// Probe spacing and count: a machine that left is noticed ~10 + 3×3 s after it went quiet.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(3);
pub(crate) const KEEPALIVE_PROBES: u32 = 3;
/// Data (or a probe) unacknowledged this long closes the connection (`TCP_USER_TIMEOUT`).
pub(crate) const USER_TIMEOUT: Duration = Duration::from_secs(20);

/// Watch a TCP peer with keepalive probes and `TCP_USER_TIMEOUT`, on both ends of a job's
/// connection: a build host that is powered off or loses its link mid-job is noticed in
/// seconds, not after `DISTCC_IO_TIMEOUT` (300 s) as in distcc 3.4.
pub(crate) fn watch_peer(sock: socket2::SockRef<'_>) -> io::Result<()> {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    sock.set_tcp_keepalive(&keepalive)?;
    sock.set_tcp_user_timeout(Some(USER_TIMEOUT))
}

/// Why a message could not be sent or received.
#[derive(Debug, Error)]
pub(crate) enum ConnError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("timed out after {0:?} waiting for the peer (DISTCC_IO_TIMEOUT)")]
    Timeout(Duration),
    #[error("connection closed by the peer after {got} bytes, in the middle of a message")]
    Truncated { got: usize },
    #[error("the peer closed the connection without sending anything")]
    NoAnswer,
    #[error(transparent)]
    Protocol(ProtocolError),
    /// The server refused with a reason (protocol extension only).
    #[error("{0}")]
    Refused(crate::ext::Refusal),
    /// The secure channel failed (a record that does not decrypt).
    #[error(transparent)]
    Layer(#[from] crate::ext::TransformError),
}

impl ConnError {
    /// distcc's exit code for this failure.
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            ConnError::Io(_) => ExitCode::IoError,
            ConnError::Timeout(_) => ExitCode::Timeout,
            ConnError::Truncated { .. } | ConnError::NoAnswer => ExitCode::Truncated,
            ConnError::Protocol(_) | ConnError::Layer(_) => ExitCode::ProtocolError,
            // What distcc 3.4 reports for a server that closes without an answer.
            ConnError::Refused(_) => ExitCode::Truncated,
        }
    }
}

/// How many large requests a whole daemon receives — and keeps as jobs — at once. A
/// request whose receive buffer passes [`SMALL`] must hold a place here first; the others
/// wait without reading, and TCP pushes back on their clients. Places are all or nothing,
/// so receivers never deadlock holding parts of a byte budget: memory for large requests
/// stays under places × (twice the largest request).
pub(crate) struct Budget {
    places: std::sync::Arc<smol::lock::Semaphore>,
}

/// What a request may buffer without a place in the [`Budget`].
pub(crate) const SMALL: usize = 1 << 20;

impl Budget {
    pub(crate) fn new(places: usize) -> std::sync::Arc<Budget> {
        std::sync::Arc::new(Budget {
            places: std::sync::Arc::new(smol::lock::Semaphore::new(places.max(1))),
        })
    }

    /// Wait for a place (a large reply about to be read into memory, say).
    pub(crate) async fn place(self: &std::sync::Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            place: Some(self.places.acquire_arc().await),
        }
    }
}

/// A connection's place in the [`Budget`], if it needed one; given back when dropped.
pub(crate) struct Reservation {
    budget: std::sync::Arc<Budget>,
    place: Option<smol::lock::SemaphoreGuardArc>,
}

impl Reservation {
    fn empty(budget: std::sync::Arc<Budget>) -> Reservation {
        Reservation {
            budget,
            place: None,
        }
    }

    /// Make room for a buffer of `bytes`: beyond [`SMALL`], wait for a place.
    async fn cover(&mut self, bytes: usize) {
        if bytes > SMALL && self.place.is_none() {
            self.place = Some(self.budget.places.acquire_arc().await);
        }
    }

    /// Does this request hold a place?
    #[cfg(test)]
    pub(crate) fn is_large(&self) -> bool {
        self.place.is_some()
    }
}

/// A protocol conversation over one stream.
pub(crate) struct Connection<S> {
    stream: S,
    buf: Vec<u8>,
    limits: Limits,
    timeout: Duration,
    /// The daemon's budget for received bytes, and what this connection holds of it.
    reservation: Option<Reservation>,
    /// The extension agreed on zstd bodies.
    zstd: bool,
    /// The secure channel, once its handshake is done; `raw` holds received bytes that
    /// are not yet a whole record.
    transform: Option<Box<dyn crate::ext::Transform>>,
    raw: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(crate) fn new(stream: S, timeout: Duration) -> Self {
        Connection {
            stream,
            buf: Vec::new(),
            limits: Limits::default(),
            timeout,
            reservation: None,
            zstd: false,
            transform: None,
            raw: Vec::new(),
        }
    }

    /// Bulk bodies are zstd frames from now on (the extension agreed on it).
    pub(crate) fn set_zstd(&mut self, on: bool) {
        self.zstd = on;
    }

    pub(crate) fn zstd(&self) -> bool {
        self.zstd
    }

    /// Carry every later byte through `layer` (after its handshake, which used plain
    /// packets). Bytes already received and not yet used came right behind the
    /// handshake's last message (a client sends its request without waiting): they are
    /// the channel's first records, opened here.
    pub(crate) fn set_transform(
        &mut self,
        mut layer: Box<dyn crate::ext::Transform>,
    ) -> Result<(), ConnError> {
        let early = std::mem::take(&mut self.buf);
        let used = layer.open(&early, &mut self.buf)?;
        self.raw = early.get(used..).unwrap_or_default().to_vec();
        self.transform = Some(layer);
        Ok(())
    }

    /// Count what this connection buffers against `budget` (the daemon's requests).
    pub(crate) fn with_budget(mut self, budget: std::sync::Arc<Budget>) -> Self {
        self.reservation = Some(Reservation::empty(budget));
        self
    }

    /// Take what this connection holds of its budget, to keep it while the request's job
    /// (its files on disk) lives; the connection then starts afresh.
    pub(crate) fn take_reservation(&mut self) -> Option<Reservation> {
        let budget = self.reservation.as_ref()?.budget.clone();
        self.reservation.replace(Reservation::empty(budget))
    }

    pub(crate) fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Send bytes, all of them, within the timeout.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        let sealed;
        let bytes = match self.transform.as_mut() {
            Some(t) => {
                let mut out = Vec::with_capacity(bytes.len() + 64);
                t.seal(bytes, &mut out)?;
                sealed = out;
                &sealed[..]
            }
            None => bytes,
        };
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await?;
            Ok(())
        };
        with_timeout(self.timeout, write).await
    }

    /// The peer closed before a whole message: nothing at all, or part of one.
    fn ended_early(&self) -> ConnError {
        if self.buf.is_empty() {
            ConnError::NoAnswer
        } else {
            ConnError::Truncated {
                got: self.buf.len(),
            }
        }
    }

    /// Read more bytes into the buffer; 0 means EOF. Through a secure channel, reads
    /// until a whole record has been opened (or EOF).
    async fn fill(&mut self) -> Result<usize, ConnError> {
        if self.transform.is_none() {
            return self.fill_raw().await;
        }
        loop {
            let mut chunk = vec![0u8; 64 * 1024];
            let read = async {
                let n = self.stream.read(&mut chunk).await?;
                Ok::<usize, ConnError>(n)
            };
            let n = with_timeout(self.timeout, read).await?;
            if n == 0 {
                return Ok(0);
            }
            self.raw
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
            let before = self.buf.len();
            if let Some(t) = self.transform.as_mut() {
                let used = t.open(&self.raw, &mut self.buf)?;
                self.raw.drain(..used.min(self.raw.len()));
            }
            if let Some(r) = self.reservation.as_mut() {
                r.cover(self.buf.capacity()).await;
            }
            if self.buf.len() > before {
                return Ok(self.buf.len() - before);
            }
        }
    }

    /// [`Self::fill`] without a secure channel.
    async fn fill_raw(&mut self) -> Result<usize, ConnError> {
        // Read in steps that grow with what has arrived: a small request costs a small
        // buffer (a daemon holds one per waiting client), a large one arrives in few system
        // calls, and the codec is re-run once per step, not once per packet.
        const MIN_STEP: usize = 16 * 1024;
        const MAX_STEP: usize = 1024 * 1024;
        let old = self.buf.len();
        let step = old.clamp(MIN_STEP, MAX_STEP);
        if old + step > self.buf.capacity() {
            // Grow as a Vec would (doubling), but decide the size here, so that it can be
            // counted against the budget before it is allocated.
            let cap = (old + step).max(self.buf.capacity() * 2);
            if let Some(r) = self.reservation.as_mut() {
                r.cover(cap).await;
            }
            self.buf.reserve_exact(cap - old);
        }
        self.buf.resize(old + step, 0);
        let read = async {
            let n = self.stream.read(&mut self.buf[old..]).await?;
            Ok::<usize, ConnError>(n)
        };
        let result = with_timeout(self.timeout, read).await;
        let n = *result.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        result
    }

    /// Resolve when the peer closes its end (or the connection fails). Used while a compile
    /// runs: distcc clients send nothing more after the request, so EOF means they left.
    pub(crate) async fn wait_for_eof(&mut self) {
        let mut scratch = [0u8; 512];
        loop {
            match self.stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Read one message with `decode` (the extension's packets), under the I/O timeout.
    pub(crate) async fn receive<T>(
        &mut self,
        decode: impl Fn(&[u8], Limits) -> Result<(T, usize), ProtocolError>,
    ) -> Result<T, ConnError> {
        loop {
            match decode(&self.buf, self.limits) {
                Ok((value, used)) => {
                    self.buf.drain(..used);
                    return Ok(value);
                }
                Err(ProtocolError::Incomplete) => {}
                Err(e) => return Err(ConnError::Protocol(e)),
            }
            if self.fill().await? == 0 {
                return Err(self.ended_early());
            }
        }
    }

    /// Whether the peer opens with `DIST00000004`: our client asking for the extension.
    /// Reads at most the 12 bytes of that header (fewer at EOF, which [`Self::read_request`]
    /// then reports as before); consumes them only when they are that header.
    pub(crate) async fn opens_extension(&mut self) -> Result<bool, ConnError> {
        let mut want = Vec::new();
        protocol::encode_int(
            &mut want,
            &protocol::tok::DIST,
            crate::ext::EXT_DIST_VERSION,
        );
        while self.buf.len() < want.len() {
            let have = &self.buf[..];
            if !want.starts_with(have) {
                return Ok(false);
            }
            if self.fill().await? == 0 {
                return Ok(false);
            }
        }
        if self.buf.starts_with(&want) {
            self.buf.drain(..want.len());
            return Ok(true);
        }
        Ok(false)
    }

    /// Read one request. Its framing is walked once as bytes arrive ([`RequestFramer`]),
    /// it is decoded once when whole (LZO bodies left compressed for the job to unpack), and the whole request must arrive within the I/O
    /// timeout: a client that drips a byte at a time cannot hold a connection for ever.
    pub(crate) async fn read_request(&mut self) -> Result<Request, ConnError> {
        let deadline = std::time::Instant::now() + self.timeout;
        let mut framer = RequestFramer::new();
        let end = loop {
            match framer.advance(&self.buf, self.limits) {
                Ok(Some(end)) => break end,
                Ok(None) => {}
                Err(e) => return Err(ConnError::Protocol(e)),
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(ConnError::Timeout(self.timeout));
            }
            let n = match with_timeout(left, self.fill()).await {
                Err(ConnError::Timeout(_)) => return Err(ConnError::Timeout(self.timeout)),
                other => other?,
            };
            if n == 0 {
                return Err(self.ended_early());
            }
        };
        let (req, used) =
            protocol::decode_request_compressed(&self.buf[..end], self.limits, self.zstd)
                .map_err(ConnError::Protocol)?;
        self.buf.drain(..used);
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
        Ok(req)
    }
}

/// Two one-way streams as one two-way stream: stdin/stdout of `distccd --inetd`, or an SSH
/// child's pipes on the client side.
pub(crate) struct Duplex<R, W> {
    pub reader: R,
    pub writer: W,
}

impl<R: AsyncRead + Unpin, W: Unpin> AsyncRead for Duplex<R, W> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl<R: Unpin, W: AsyncWrite + Unpin> AsyncWrite for Duplex<R, W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.writer).poll_close(cx)
    }
}

/// Run an I/O future under a timeout.
pub(crate) async fn with_timeout<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, ConnError>>,
) -> Result<T, ConnError> {
    smol::future::or(fut, async {
        smol::Timer::after(timeout).await;
        Err(ConnError::Timeout(timeout))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Body, Payload};

    fn req() -> Request {
        Request {
            version: 2,
            cwd: None,
            argv: vec![
                "gcc".into(),
                "-c".into(),
                "x.c".into(),
                "-o".into(),
                "x.o".into(),
            ],
            body: Body::Source(Payload::Plain(b"int x;\n".repeat(100_000))),
        }
    }

    #[test]
    fn request_over_a_socket_pair_in_small_pieces() {
        smol::block_on(async {
            let (a, b) = smol::net::unix::UnixStream::pair().unwrap();
            let bytes = protocol::encode_request(&req()).unwrap();
            let writer = smol::spawn(async move {
                let mut a = a;
                for chunk in bytes.chunks(1000) {
                    a.write_all(chunk).await.unwrap();
                }
            });
            let mut conn = Connection::new(b, Duration::from_secs(5));
            let got = conn.read_request().await.unwrap();
            // The LZO body arrives compressed; unpacked, it is what was sent.
            let Body::Source(Payload::Lzo(packed)) = &got.body else {
                panic!("protocol 2 source should stay compressed: {:?}", got.body);
            };
            let unpacked = crate::compress::decompress(packed, 1 << 30).unwrap();
            assert_eq!(
                Request {
                    body: Body::Source(Payload::Plain(unpacked)),
                    ..got
                },
                req()
            );
            writer.await;
        });
    }

    #[test]
    fn eof_mid_message_is_truncated_and_silence_is_no_answer() {
        smol::block_on(async {
            let (mut a, b) = smol::net::unix::UnixStream::pair().unwrap();
            let bytes = protocol::encode_request(&req()).unwrap();
            a.write_all(&bytes[..100]).await.unwrap();
            drop(a);
            let mut conn = Connection::new(b, Duration::from_secs(5));
            let e = conn.read_request().await.unwrap_err();
            assert!(matches!(e, ConnError::Truncated { got: 100 }), "{e}");
            assert_eq!(e.exit_code(), ExitCode::Truncated);

            let (a, b) = smol::net::unix::UnixStream::pair().unwrap();
            drop(a);
            let mut conn = Connection::new(b, Duration::from_secs(5));
            assert!(matches!(
                conn.read_request().await,
                Err(ConnError::NoAnswer)
            ));
        });
    }

    #[test]
    fn stall_times_out() {
        smol::block_on(async {
            let (_a, b) = smol::net::unix::UnixStream::pair().unwrap();
            let mut conn = Connection::new(b, Duration::from_millis(50));
            let e = conn.read_request().await.unwrap_err();
            assert!(matches!(e, ConnError::Timeout(_)), "{e}");
        });
    }

    #[test]
    fn a_drip_fed_request_times_out_as_a_whole() {
        smol::block_on(async {
            let (mut a, b) = smol::net::unix::UnixStream::pair().unwrap();
            let bytes = protocol::encode_request(&req()).unwrap();
            // One byte every 20 ms: each read is well within the 150 ms I/O timeout, but
            // the request as a whole is not.
            let writer = smol::spawn(async move {
                for byte in bytes.iter().take(100) {
                    if a.write_all(std::slice::from_ref(byte)).await.is_err() {
                        return;
                    }
                    smol::Timer::after(Duration::from_millis(20)).await;
                }
            });
            let mut conn = Connection::new(b, Duration::from_millis(150));
            let started = std::time::Instant::now();
            let e = conn.read_request().await.unwrap_err();
            assert!(matches!(e, ConnError::Timeout(_)), "{e}");
            assert!(started.elapsed() < Duration::from_secs(1));
            drop(conn);
            writer.await;
        });
    }

    #[test]
    fn large_words_in_many_reads_are_walked_once() {
        // 64 words of 256 KiB in 4 KiB pieces: re-walking from the start after each read
        // copies ~2 GB; walking once, ~16 MB. Count the framer's work through its position.
        let big = "x".repeat(256 * 1024);
        let mut r = req();
        r.argv.extend(std::iter::repeat_n(big, 64));
        let bytes = protocol::encode_request(&r).unwrap();
        let mut framer = RequestFramer::new();
        let mut end = None;
        for n in (4096..=bytes.len()).step_by(4096).chain([bytes.len()]) {
            if let Some(e) = framer.advance(&bytes[..n], Limits::default()).unwrap() {
                end = Some(e);
                break;
            }
            // The next call resumes at the packet the buffer ends in: never further back.
            assert!(framer.resume_at() + 256 * 1024 + 2 * protocol::HEADER_LEN >= n);
        }
        assert_eq!(end, Some(bytes.len()));
        let (back, used) = protocol::decode_request(&bytes, Limits::default()).unwrap();
        assert_eq!((back, used), (r, bytes.len()));
    }

    #[test]
    fn a_large_request_waits_for_a_place_and_its_job_keeps_it() {
        smol::block_on(async {
            let budget = Budget::new(1);
            let plain = Request {
                version: 1,
                body: Body::Source(Payload::Plain(vec![b' '; 2 * SMALL])),
                ..req()
            };
            let bytes = protocol::encode_request(&plain).unwrap();
            // Another large job holds the only place.
            let mut other = Reservation::empty(budget.clone());
            other.cover(SMALL + 1).await;
            assert!(other.is_large());
            let (mut a, b) = smol::net::unix::UnixStream::pair().unwrap();
            let writer = smol::spawn(async move {
                let _ = a.write_all(&bytes).await;
                a
            });
            let mut conn = Connection::new(b, Duration::from_secs(5)).with_budget(budget.clone());
            let read = smol::spawn(async move {
                let r = conn.read_request().await.map(|_| ());
                (r, conn)
            });
            // It cannot finish while the other job holds the place...
            smol::Timer::after(Duration::from_millis(200)).await;
            assert!(!read.is_finished(), "read a large request without a place");
            // ...and does once it is given back, then keeps it for its own job.
            drop(other);
            let (r, mut conn) = read.await;
            r.unwrap();
            let held = conn.take_reservation().unwrap();
            assert!(held.is_large());
            assert!(
                budget.places.try_acquire().is_none(),
                "the job holds the place"
            );
            drop(held);
            assert!(budget.places.try_acquire().is_some());
            drop(writer.await);
        });
    }

    #[test]
    fn small_requests_need_no_place() {
        smol::block_on(async {
            let budget = Budget::new(1);
            let mut other = Reservation::empty(budget.clone());
            other.cover(SMALL + 1).await;
            let (mut a, b) = smol::net::unix::UnixStream::pair().unwrap();
            let bytes = protocol::encode_request(&req()).unwrap();
            a.write_all(&bytes).await.unwrap();
            let mut conn = Connection::new(b, Duration::from_secs(5)).with_budget(budget);
            conn.read_request().await.unwrap();
            assert!(!conn.take_reservation().unwrap().is_large());
        });
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        smol::block_on(async {
            let (mut a, b) = smol::net::unix::UnixStream::pair().unwrap();
            a.write_all(b"HELO00000001").await.unwrap();
            let mut conn = Connection::new(b, Duration::from_secs(5));
            let e = conn.read_request().await.unwrap_err();
            assert_eq!(e.exit_code(), ExitCode::ProtocolError, "{e}");
        });
    }
}
