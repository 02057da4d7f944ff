//! The client's side of a connection, blocking (distcc 3.4 `io.c`, `bulk.c`, client half).
//!
//! A client process runs one job, one conversation at a time, between steps that block
//! anyway (slot locks, waiting for cpp, reading files): an async executor buys it nothing
//! and costs CPU on every job. So the client talks plainly: every read and write first waits
//! for readiness with `poll(2)` up to the I/O timeout (`DISTCC_IO_TIMEOUT`), on a
//! non-blocking descriptor, which times out sockets and pipes (ssh) alike.
//!
//! Messages are decoded with the sans-IO codecs of [`crate::protocol`] exactly as the
//! daemon's [`crate::connection::Connection`] does, and failures mean the same
//! [`ConnError`]: EOF before any byte is `NoAnswer`, EOF mid-message `Truncated`, silence
//! past the timeout `Timeout` — [`super::compile`] decides whom to blame from them.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use crate::connection::ConnError;
use crate::protocol::{self, Limits, ProtocolError, Reply, include};

/// A two-way byte stream whose two directions can be waited for: one socket, or a child's
/// stdout (read) and stdin (write) ([`super::remote::SshStream`]).
pub(crate) trait Duplex: Read + Write {
    /// What becomes readable when a read would not block.
    fn read_fd(&self) -> BorrowedFd<'_>;
    /// What becomes writable when a write would not block.
    fn write_fd(&self) -> BorrowedFd<'_>;
}

impl Duplex for std::net::TcpStream {
    fn read_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn write_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

impl Duplex for UnixStream {
    fn read_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn write_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

/// Make both directions non-blocking: after `poll` says "ready", a write may still take
/// only part of the buffer, and must not then wait past the deadline for the rest.
pub(crate) fn set_nonblocking(stream: &impl Duplex) -> io::Result<()> {
    rustix::io::ioctl_fionbio(stream.read_fd(), true)?;
    rustix::io::ioctl_fionbio(stream.write_fd(), true)?;
    Ok(())
}

/// Wait until `fd` is ready for `events` (or has hung up or failed, which the next read or
/// write reports), or until `deadline`. `false`: the deadline passed.
fn ready(fd: BorrowedFd<'_>, events: PollFlags, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        match poll(&mut [PollFd::new(&fd, events)], Some(&timeout)) {
            Ok(0) if left.is_zero() => return Ok(false),
            // Woken early (the clock's granularity): wait out the rest.
            Ok(0) | Err(rustix::io::Errno::INTR) => {}
            Ok(_) => return Ok(true),
            Err(e) => return Err(e.into()),
        }
    }
}

/// One `op` on `stream` (a read or a write) that first waits for `fd_of(stream)` to be
/// ready for `events`, no later than `deadline`. `Ok(None)`: the deadline passed.
fn by_deadline<S: Duplex>(
    stream: &mut S,
    fd_of: fn(&S) -> BorrowedFd<'_>,
    events: PollFlags,
    deadline: Instant,
    mut op: impl FnMut(&mut S) -> io::Result<usize>,
) -> io::Result<Option<usize>> {
    loop {
        if !ready(fd_of(stream), events, deadline)? {
            return Ok(None);
        }
        match op(stream) {
            Ok(n) => return Ok(Some(n)),
            // Spurious readiness, or a signal: wait again.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// One read that waits for data no later than `deadline`. `Ok(None)`: the deadline passed.
fn read_by<S: Duplex>(
    stream: &mut S,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<Option<usize>> {
    by_deadline(stream, S::read_fd, PollFlags::IN, deadline, |s| s.read(buf))
}

/// One write that waits for room no later than `deadline`. `Ok(None)`: the deadline passed.
fn write_by<S: Duplex>(stream: &mut S, buf: &[u8], deadline: Instant) -> io::Result<Option<usize>> {
    by_deadline(stream, S::write_fd, PollFlags::OUT, deadline, |s| {
        s.write(buf)
    })
}

/// A stream whose reads and writes fail with `TimedOut` once `deadline` has passed: for
/// short exchanges with `Read`/`Write` code, such as the SOCKS handshake.
pub(crate) struct ByDeadline<'a, S> {
    pub stream: &'a mut S,
    pub deadline: Instant,
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

impl<S: Duplex> Read for ByDeadline<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_by(self.stream, buf, self.deadline)?.ok_or_else(timed_out)
    }
}

impl<S: Duplex> Write for ByDeadline<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_by(self.stream, buf, self.deadline)?.ok_or_else(timed_out)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Connect to a UNIX socket (the include server, a SOCKS proxy) within `timeout`: a
/// listener whose backlog is full makes `connect` wait, bounded by the socket's send
/// timeout, which is cleared again afterwards.
pub(crate) fn connect_unix(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    sock.set_write_timeout(Some(timeout))?;
    sock.connect(&socket2::SockAddr::unix(path)?)?;
    sock.set_write_timeout(None)?;
    Ok(sock.into())
}

/// What woke [`wait_either`].
enum Woke {
    /// The stream is readable (or hung up, which the next read reports).
    Stream,
    /// The other descriptor is readable.
    Other,
    /// The deadline passed.
    Deadline,
}

/// Wait until `fd` or `other` is readable, or until `deadline`.
fn wait_either(
    fd: BorrowedFd<'_>,
    other: Option<BorrowedFd<'_>>,
    deadline: Instant,
) -> io::Result<Woke> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = vec![PollFd::new(&fd, PollFlags::IN)];
        if let Some(o) = &other {
            fds.push(PollFd::new(o, PollFlags::IN));
        }
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) if left.is_zero() => return Ok(Woke::Deadline),
            Ok(0) | Err(rustix::io::Errno::INTR) => {}
            Ok(_) => {
                let fired = |p: &PollFd<'_>| !p.revents().is_empty();
                if fds.first().is_some_and(fired) {
                    return Ok(Woke::Stream);
                }
                return Ok(Woke::Other);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A blocking protocol conversation over one stream (see the module doc).
pub(crate) struct Wire<S> {
    stream: S,
    buf: Vec<u8>,
    limits: Limits,
    timeout: Duration,
    /// When [`Wire::read_reply_until`] last saw the peer make progress (or began to wait):
    /// the I/O timeout counts from here across its calls, so pausing to look at something
    /// else neither shortens nor stretches the silence a host is allowed.
    quiet_since: Option<Instant>,
    /// The protocol extension is on: the server may answer `RFSE` instead of a reply.
    ext: bool,
    /// The extension agreed on zstd bodies.
    zstd: bool,
    /// The secure channel, once its handshake is done; `raw` holds received bytes that
    /// are not yet a whole record.
    transform: Option<Box<dyn crate::ext::Transform>>,
    raw: Vec<u8>,
}

impl<S: Duplex> Wire<S> {
    /// Take over `stream` (made non-blocking) with `timeout` for each wait on the peer.
    pub(crate) fn new(stream: S, timeout: Duration) -> io::Result<Self> {
        set_nonblocking(&stream)?;
        Ok(Wire {
            stream,
            buf: Vec::new(),
            limits: Limits::default(),
            timeout,
            quiet_since: None,
            ext: false,
            zstd: false,
            transform: None,
            raw: Vec::new(),
        })
    }

    /// The extension is on, with zstd bodies or not: replies are decoded accordingly, and
    /// a refusal (`RFSE`) in a reply's place is [`ConnError::Refused`].
    pub(crate) fn set_ext(&mut self, zstd: bool) {
        self.ext = true;
        self.zstd = zstd;
    }

    /// Whether bulk bodies go as zstd frames on this connection.
    pub(crate) fn zstd(&self) -> bool {
        self.zstd
    }

    /// Carry every later byte through `layer` (after its handshake, done with plain
    /// packets through [`Self::send`] and [`Self::receive`]).
    #[allow(dead_code, reason = "the keys layer's hook")]
    pub(crate) fn set_transform(
        &mut self,
        layer: Box<dyn crate::ext::Transform>,
    ) -> Result<(), ConnError> {
        if !self.buf.is_empty() {
            return Err(ConnError::Protocol(ProtocolError::BadHello(
                "plaintext after the secure channel's handshake".into(),
            )));
        }
        self.transform = Some(layer);
        Ok(())
    }

    /// Decode a reply to a `version` request as this connection's codec and extension say.
    fn decode_reply(&self, version: u8) -> Result<(Reply, usize), ConnError> {
        if !self.ext {
            return protocol::decode_reply(&self.buf, version, self.limits)
                .map_err(ConnError::Protocol);
        }
        let zstd = self.zstd;
        match crate::ext::or_refusal(&self.buf, self.limits, |b, l| {
            protocol::decode_reply_in(b, version, zstd, l)
        }) {
            Ok((Ok(reply), used)) => Ok((reply, used)),
            Ok((Err(refusal), _)) => Err(ConnError::Refused(refusal)),
            Err(e) => Err(ConnError::Protocol(e)),
        }
    }

    /// One read from the stream into the buffer, through the secure channel if there is
    /// one. Returns the bytes read from the stream (0: EOF), `None` at the deadline.
    fn pull(
        &mut self,
        read: impl FnOnce(&mut S, &mut [u8]) -> io::Result<Option<usize>>,
    ) -> io::Result<Option<usize>> {
        let into_raw = self.transform.is_some();
        let target = if into_raw {
            &mut self.raw
        } else {
            &mut self.buf
        };
        // Steps grow with what has arrived: a large object comes in few reads, and the
        // codec is re-run once per step, not once per packet.
        let old = target.len();
        target.resize(old + old.clamp(16 * 1024, 1024 * 1024), 0);
        let result = match target.get_mut(old..) {
            Some(space) => read(&mut self.stream, space),
            None => Ok(Some(0)),
        };
        let n = match &result {
            Ok(Some(n)) => *n,
            _ => 0,
        };
        target.truncate(old + n);
        if into_raw
            && n > 0
            && let Some(t) = self.transform.as_mut()
        {
            let used = t
                .open(&self.raw, &mut self.buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            self.raw.drain(..used.min(self.raw.len()));
        }
        result
    }

    #[cfg(test)]
    fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Send all of `bytes` within the timeout (as a whole, as the daemon's `send`).
    pub(crate) fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.send_parts(&[bytes])
    }

    /// Send `parts` one after the other, as one message: a large part (a pump job's file
    /// list) is written from where it lies instead of being copied behind the rest first.
    /// An encrypted channel seals them together.
    pub(crate) fn send_parts(&mut self, parts: &[&[u8]]) -> Result<(), ConnError> {
        let sealed;
        let one;
        let parts = match self.transform.as_mut() {
            Some(t) => {
                let len = parts.iter().map(|p| p.len()).sum::<usize>();
                let mut out = Vec::with_capacity(len + 64);
                t.seal(&parts.concat(), &mut out)?;
                sealed = out;
                one = [&sealed[..]];
                &one[..]
            }
            None => parts,
        };
        let deadline = Instant::now() + self.timeout;
        for part in parts {
            let mut rest = *part;
            while !rest.is_empty() {
                match write_by(&mut self.stream, rest, deadline)? {
                    None => return Err(ConnError::Timeout(self.timeout)),
                    Some(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                    Some(n) => rest = rest.get(n..).unwrap_or_default(),
                }
            }
        }
        self.stream.flush()?;
        Ok(())
    }

    /// Read one message with `decode`, which returns `Incomplete` until the buffer holds a
    /// whole message. Each wait for more bytes has the whole timeout: a long reply that
    /// keeps arriving is fine, a peer that goes quiet is not.
    pub(crate) fn receive<T>(
        &mut self,
        decode: impl Fn(&[u8], Limits) -> Result<(T, usize), ProtocolError>,
    ) -> Result<T, ConnError> {
        loop {
            match decode(&self.buf, self.limits) {
                Ok((value, used)) => {
                    self.buf.drain(..used);
                    if self.buf.is_empty() {
                        self.buf = Vec::new();
                    }
                    return Ok(value);
                }
                Err(ProtocolError::Incomplete) => {}
                Err(e) => return Err(ConnError::Protocol(e)),
            }
            if self.fill()? == 0 {
                return Err(if self.buf.is_empty() {
                    ConnError::NoAnswer
                } else {
                    ConnError::Truncated {
                        got: self.buf.len(),
                    }
                });
            }
        }
    }

    /// Read more bytes into the buffer; 0 means EOF.
    fn fill(&mut self) -> Result<usize, ConnError> {
        let deadline = Instant::now() + self.timeout;
        match self.pull(|s, space| read_by(s, space, deadline)) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(ConnError::Timeout(self.timeout)),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                Err(crate::ext::TransformError(e.to_string()).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The compile's reply (protocol `version`).
    pub(crate) fn read_reply(&mut self, version: u8) -> Result<Reply, ConnError> {
        loop {
            match self.decode_reply(version) {
                Ok((value, used)) => {
                    self.buf.drain(..used);
                    if self.buf.is_empty() {
                        self.buf = Vec::new();
                    }
                    return Ok(value);
                }
                Err(ConnError::Protocol(ProtocolError::Incomplete)) => {}
                Err(e) => return Err(e),
            }
            if self.fill()? == 0 {
                return Err(if self.buf.is_empty() {
                    ConnError::NoAnswer
                } else {
                    ConnError::Truncated {
                        got: self.buf.len(),
                    }
                });
            }
        }
    }

    /// The compile's reply, but give up waiting — `Ok(None)`, nothing lost, call again to
    /// go on — at `until` or as soon as `other` becomes readable (a child's pidfd): for a
    /// client that watches a local compile while the host works ([`super::race`]). The
    /// I/O timeout applies as in [`Self::read_reply`], counted across calls.
    pub(crate) fn read_reply_until(
        &mut self,
        version: u8,
        until: Option<Instant>,
        other: Option<BorrowedFd<'_>>,
    ) -> Result<Option<Reply>, ConnError> {
        let mut quiet_since = *self.quiet_since.get_or_insert_with(Instant::now);
        loop {
            match self.decode_reply(version) {
                Ok((value, used)) => {
                    self.buf.drain(..used);
                    self.quiet_since = None;
                    return Ok(Some(value));
                }
                Err(ConnError::Protocol(ProtocolError::Incomplete)) => {}
                Err(e) => return Err(e),
            }
            let silent_until = quiet_since + self.timeout;
            let deadline = until.map_or(silent_until, |u| u.min(silent_until));
            match wait_either(self.stream.read_fd(), other, deadline)? {
                Woke::Other => return Ok(None),
                Woke::Deadline if Instant::now() >= silent_until => {
                    return Err(ConnError::Timeout(self.timeout));
                }
                Woke::Deadline => return Ok(None),
                Woke::Stream => {}
            }
            let result = self.pull(|s, space| s.read(space).map(Some));
            let result = match result {
                Ok(n) => Ok(n.unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(crate::ext::TransformError(e.to_string()).into());
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(0) => {
                    return Err(if self.buf.is_empty() {
                        ConnError::NoAnswer
                    } else {
                        ConnError::Truncated {
                            got: self.buf.len(),
                        }
                    });
                }
                Ok(_) => {
                    quiet_since = Instant::now();
                    self.quiet_since = Some(quiet_since);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The include server's list of files.
    pub(crate) fn read_include_reply(&mut self) -> Result<Vec<String>, ConnError> {
        self.receive(include::decode_reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exitcode::ExitCode;

    /// Two one-way pipes as one stream, as an ssh child's stdout and stdin are.
    struct Pipes<R, W> {
        reader: R,
        writer: W,
    }

    impl<R: Read, W> Read for Pipes<R, W> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reader.read(buf)
        }
    }

    impl<R, W: Write> Write for Pipes<R, W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writer.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.writer.flush()
        }
    }

    impl<R: Read + AsFd, W: Write + AsFd> Duplex for Pipes<R, W> {
        fn read_fd(&self) -> BorrowedFd<'_> {
            self.reader.as_fd()
        }
        fn write_fd(&self) -> BorrowedFd<'_> {
            self.writer.as_fd()
        }
    }

    fn reply() -> Reply {
        Reply {
            version: 1,
            status: 0,
            stderr: b"warning: x\n".to_vec(),
            stdout: Vec::new(),
            object: b"\x7fELF".repeat(20_000),
            dotd: None,
        }
    }

    #[test]
    fn a_silent_peer_times_out() {
        let (_peer, ours) = UnixStream::pair().unwrap();
        let mut wire = Wire::new(ours, Duration::from_millis(50)).unwrap();
        let started = Instant::now();
        let e = wire.read_reply(1).unwrap_err();
        assert!(matches!(e, ConnError::Timeout(_)), "{e}");
        assert_eq!(e.exit_code(), ExitCode::Timeout);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn read_reply_until_pauses_and_resumes_without_losing_bytes() {
        let bytes = protocol::encode_reply(&reply()).unwrap();
        let (mut peer, ours) = UnixStream::pair().unwrap();
        let mut wire = Wire::new(ours, Duration::from_secs(10)).unwrap();
        // Nothing yet: a pause at `until`, not an error.
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(
            wire.read_reply_until(1, Some(soon), None)
                .unwrap()
                .is_none()
        );
        // Half the reply, then a pause; then the rest.
        let (a, b) = bytes.split_at(bytes.len() / 2);
        peer.write_all(a).unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(
            wire.read_reply_until(1, Some(soon), None)
                .unwrap()
                .is_none()
        );
        let writer = std::thread::spawn({
            let b = b.to_vec();
            move || {
                peer.write_all(&b).unwrap();
                peer
            }
        });
        assert_eq!(wire.read_reply_until(1, None, None).unwrap(), Some(reply()));
        drop(writer.join().unwrap());
    }

    #[test]
    fn read_reply_until_wakes_for_the_other_descriptor() {
        let (_peer, ours) = UnixStream::pair().unwrap();
        let (mut other_w, other_r) = UnixStream::pair().unwrap();
        other_w.write_all(b"x").unwrap();
        let mut wire = Wire::new(ours, Duration::from_secs(30)).unwrap();
        let started = Instant::now();
        let got = wire
            .read_reply_until(1, None, Some(other_r.as_fd()))
            .unwrap();
        assert!(got.is_none());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn read_reply_until_still_times_a_silent_host_out() {
        let (_peer, ours) = UnixStream::pair().unwrap();
        let mut wire = Wire::new(ours, Duration::from_millis(100)).unwrap();
        let started = Instant::now();
        // Short pauses do not restart the silence allowance.
        let e = loop {
            let tick = Instant::now() + Duration::from_millis(10);
            match wire.read_reply_until(1, Some(tick), None) {
                Ok(None) => assert!(started.elapsed() < Duration::from_secs(10)),
                Ok(Some(r)) => panic!("{r:?}"),
                Err(e) => break e,
            }
        };
        assert!(matches!(e, ConnError::Timeout(_)), "{e}");
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn a_silent_pipe_times_out_too() {
        // What ssh looks like: a child's pipes, on which SO_RCVTIMEO would do nothing. `cat`
        // answers nothing until it is sent something.
        let mut cat = std::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pipes = Pipes {
            reader: cat.stdout.take().unwrap(),
            writer: cat.stdin.take().unwrap(),
        };
        let mut wire = Wire::new(pipes, Duration::from_millis(50)).unwrap();
        let e = wire.read_reply(1).unwrap_err();
        assert!(matches!(e, ConnError::Timeout(_)), "{e}");
        // The pipes work: what goes in comes back (small enough for the pipes' buffers).
        let small = Reply {
            object: b"obj".to_vec(),
            ..reply()
        };
        wire.send(&protocol::encode_reply(&small).unwrap()).unwrap();
        wire.timeout = Duration::from_secs(10);
        assert_eq!(wire.read_reply(1).unwrap(), small);
        drop(wire);
        cat.wait().unwrap();
    }

    #[test]
    fn a_peer_that_does_not_read_times_the_send_out() {
        let (_peer, ours) = UnixStream::pair().unwrap();
        let mut wire = Wire::new(ours, Duration::from_millis(50)).unwrap();
        // Far more than a socket buffer holds, and nobody reads it.
        let e = wire.send(&vec![0u8; 64 << 20]).unwrap_err();
        assert!(matches!(e, ConnError::Timeout(_)), "{e}");
    }

    #[test]
    fn eof_mid_message_is_truncated_and_silence_then_eof_no_answer() {
        let bytes = protocol::encode_reply(&reply()).unwrap();
        let (mut peer, ours) = UnixStream::pair().unwrap();
        peer.write_all(&bytes[..100]).unwrap();
        drop(peer);
        let mut wire = Wire::new(ours, Duration::from_secs(5)).unwrap();
        let e = wire.read_reply(1).unwrap_err();
        assert!(matches!(e, ConnError::Truncated { got: 100 }), "{e}");
        assert_eq!(e.exit_code(), ExitCode::Truncated);

        let (peer, ours) = UnixStream::pair().unwrap();
        drop(peer);
        let mut wire = Wire::new(ours, Duration::from_secs(5)).unwrap();
        assert!(matches!(wire.read_reply(1), Err(ConnError::NoAnswer)));
    }

    #[test]
    fn a_reply_in_small_pieces_decodes() {
        let bytes = protocol::encode_reply(&reply()).unwrap();
        let (mut peer, ours) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            for chunk in bytes.chunks(7) {
                peer.write_all(chunk).unwrap();
            }
            // Keep the connection open until the reader has decoded: EOF plays no part.
            let mut end = [0u8; 1];
            let _ = peer.read(&mut end);
        });
        let mut wire = Wire::new(ours, Duration::from_secs(10)).unwrap();
        assert_eq!(wire.read_reply(1).unwrap(), reply());
        drop(wire);
        writer.join().unwrap();
    }

    #[test]
    fn garbage_is_a_protocol_error_and_limits_hold() {
        let (mut peer, ours) = UnixStream::pair().unwrap();
        peer.write_all(b"HELO00000001").unwrap();
        let mut wire = Wire::new(ours, Duration::from_secs(5)).unwrap();
        let e = wire.read_reply(1).unwrap_err();
        assert_eq!(e.exit_code(), ExitCode::ProtocolError, "{e}");

        let bytes = protocol::encode_reply(&reply()).unwrap();
        let (mut peer, ours) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = peer.write_all(&bytes);
        });
        let small = Limits {
            max_bulk: 1000,
            ..Limits::default()
        };
        let mut wire = Wire::new(ours, Duration::from_secs(5))
            .unwrap()
            .with_limits(small);
        let e = wire.read_reply(1).unwrap_err();
        assert!(matches!(e, ConnError::Protocol(_)), "{e}");
        drop(wire);
        writer.join().unwrap();
    }

    /// A stand-in for the Noise channel: `NOIS<len>` records of XOR-ed bytes, opened only
    /// when whole.
    struct Xor;

    impl crate::ext::Transform for Xor {
        fn seal(
            &mut self,
            plain: &[u8],
            out: &mut Vec<u8>,
        ) -> Result<(), crate::ext::TransformError> {
            for chunk in plain.chunks(1000) {
                let body: Vec<u8> = chunk.iter().map(|b| b ^ 0x5a).collect();
                protocol::encode_int(out, &protocol::tok::NOIS, body.len() as u32);
                out.extend_from_slice(&body);
            }
            Ok(())
        }

        fn open(
            &mut self,
            wire: &[u8],
            out: &mut Vec<u8>,
        ) -> Result<usize, crate::ext::TransformError> {
            let mut used = 0;
            while let Some(header) = wire.get(used..used + 12) {
                if !header.starts_with(b"NOIS") {
                    return Err(crate::ext::TransformError("not a record".into()));
                }
                let hex = std::str::from_utf8(&header[4..]).unwrap();
                let len = usize::from_str_radix(hex, 16).unwrap();
                let Some(body) = wire.get(used + 12..used + 12 + len) else {
                    break;
                };
                out.extend(body.iter().map(|b| b ^ 0x5a));
                used += 12 + len;
            }
            Ok(used)
        }
    }

    #[test]
    fn a_transform_carries_every_byte_both_ways() {
        // Our client's Wire and our daemon's Connection, both through the layer: a request
        // and a zstd reply cross, and nothing readable is on the socket.
        let (ours, theirs) = UnixStream::pair().unwrap();
        let spy = theirs.try_clone().unwrap();
        let request = protocol::Request {
            version: 2,
            cwd: None,
            argv: vec!["gcc".into(), "-c".into(), "x.c".into()],
            body: protocol::Body::Source(protocol::Payload::Plain(b"int x;\n".repeat(5000))),
        };
        let sent = request.clone();
        let server = std::thread::spawn(move || {
            smol::block_on(async move {
                let stream = smol::Async::new(theirs).unwrap();
                let mut conn = crate::connection::Connection::new(stream, Duration::from_secs(10));
                conn.set_zstd(true);
                conn.set_transform(Box::new(Xor)).unwrap();
                let got = conn.read_request().await.unwrap();
                let bytes = protocol::encode_reply_in(&reply(), true).unwrap();
                conn.send(&bytes).await.unwrap();
                got
            })
        });
        let mut wire = Wire::new(ours, Duration::from_secs(10)).unwrap();
        wire.set_ext(true);
        wire.set_transform(Box::new(Xor)).unwrap();
        wire.send(&protocol::encode_request_in(&sent, true).unwrap())
            .unwrap();
        assert_eq!(wire.read_reply(1).unwrap(), reply());
        let got = server.join().unwrap();
        let protocol::Body::Source(protocol::Payload::Zstd(packed)) = &got.body else {
            panic!("{:?}", got.body);
        };
        let plain = crate::compress::zstd_decompress(packed, 1 << 20).unwrap();
        assert_eq!(plain, b"int x;\n".repeat(5000));
        drop(spy);
    }

    #[test]
    fn a_refusal_in_place_of_the_reply_is_refused() {
        let (mut peer, ours) = UnixStream::pair().unwrap();
        let mut bytes = Vec::new();
        crate::ext::encode_refusal(
            &mut bytes,
            &crate::ext::Refusal::new("not-whitelisted", "no cc here"),
        );
        peer.write_all(&bytes).unwrap();
        let mut wire = Wire::new(ours, Duration::from_secs(5)).unwrap();
        wire.set_ext(false);
        let e = wire.read_reply(2).unwrap_err();
        let ConnError::Refused(r) = e else {
            panic!("{e}")
        };
        assert_eq!(
            (r.code.as_str(), r.message.as_str()),
            ("not-whitelisted", "no cc here")
        );
        // Without the extension it is garbage, as it would be to distcc 3.4.
        let (mut peer, ours) = UnixStream::pair().unwrap();
        peer.write_all(&bytes).unwrap();
        let mut wire = Wire::new(ours, Duration::from_secs(5)).unwrap();
        let e = wire.read_reply(2).unwrap_err();
        assert!(matches!(e, ConnError::Protocol(_)), "{e}");
    }

    #[test]
    fn a_request_goes_out_whole() {
        let (mut peer, ours) = UnixStream::pair().unwrap();
        let bytes = b"DIST00000001".repeat(50_000);
        let expected = bytes.clone();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got
        });
        let mut wire = Wire::new(ours, Duration::from_secs(10)).unwrap();
        wire.send(&bytes).unwrap();
        drop(wire);
        assert_eq!(reader.join().unwrap(), expected);
    }
}
