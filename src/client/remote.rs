//! Talking to a server (distcc 3.4 `clinet.c`, `ssh.c`, `remote.c`, `clirpc.c`): open a TCP
//! connection (4 s connect timeout, not configurable, as in distcc) or start
//! `ssh HOST distccd --inetd`, then drive the protocol codec over it.
//!
//! [`open`] first tries our protocol extension ([`crate::ext`]) unless the host is known
//! not to speak it, and falls back to a fresh plain connection when a distcc 3.4 daemon
//! hangs up on it.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::wire::{ByDeadline, Duplex, Wire, connect_unix};
use crate::connection::ConnError;
use crate::exitcode::ExitCode;
use crate::ext::{self, Agreed, Hello, Known, Memo};
use crate::hosts::{HostKind, HostSpec};
use crate::settings::ClientEnv;

/// distcc's fixed connect timeout.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// How long ssh may take to finish once we are done with it, before it is killed.
const SSH_GRACE: Duration = Duration::from_secs(2);
/// Why a host could not do a job. All of these are the host's fault (backoff), none the
/// user's.
#[derive(Debug, Error)]
pub(crate) enum RemoteError {
    #[error("failed to connect to {host}: {source}")]
    Connect { host: String, source: io::Error },
    #[error("failed to reach {host} through DISTCC_SOCKS_PROXY: {source}")]
    Proxy { host: String, source: io::Error },
    #[error("timed out connecting to {0} after 4 s; is distccd running there?")]
    ConnectTimeout(String),
    #[error("failed to start ssh for {host} ({cmd}): {source}")]
    Ssh {
        host: String,
        cmd: String,
        source: io::Error,
    },
    #[error(
        "server provided no answer. Is the server configured to allow access from your IP address? Is the compiler on the server's whitelist?"
    )]
    NoAnswer,
    #[error("{0}")]
    Conn(#[from] ConnError),
}

impl RemoteError {
    /// distcc's exit code for this failure (used when fallback is disabled).
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            RemoteError::Connect { .. } | RemoteError::Proxy { .. } | RemoteError::Ssh { .. } => {
                ExitCode::ConnectFailed
            }
            RemoteError::ConnectTimeout(_) => ExitCode::Timeout,
            RemoteError::NoAnswer => ExitCode::Truncated,
            RemoteError::Conn(e) => e.exit_code(),
        }
    }
}

/// An ssh child and its stdin and stdout. Dropping it closes ssh's stdin (distccd sees
/// the end of the request), gives ssh a moment to finish, then kills and reaps it: no ssh
/// outlives the job, none is left a zombie.
pub(crate) struct SshStream {
    child: Child,
    reader: ChildStdout,
    /// `None` once closed, which only [`Drop`] does.
    writer: Option<ChildStdin>,
}

impl Read for SshStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Write for SshStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.writer {
            Some(w) => w.write(buf),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Duplex for SshStream {
    fn read_fd(&self) -> BorrowedFd<'_> {
        self.reader.as_fd()
    }

    fn write_fd(&self) -> BorrowedFd<'_> {
        // With stdin closed, writes fail at once (NotConnected); any descriptor will do
        // for the wait before them.
        match &self.writer {
            Some(w) => w.as_fd(),
            None => self.reader.as_fd(),
        }
    }
}

impl Drop for SshStream {
    fn drop(&mut self) {
        self.writer = None;
        // ssh closes its stdout when it exits: wait for that, a little.
        let mut drain = ByDeadline {
            deadline: Instant::now() + SSH_GRACE,
            stream: &mut *self,
        };
        let mut scratch = [0u8; 4096];
        while matches!(drain.read(&mut scratch), Ok(n) if n > 0) {}
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A connection to a server, by either transport.
pub(crate) enum Stream {
    Tcp(TcpStream),
    /// A tunnel through a SOCKS proxy on a UNIX socket (Portage's network sandbox).
    Unix(UnixStream),
    Ssh(Box<SshStream>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Ssh(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Ssh(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Ssh(s) => s.flush(),
        }
    }
}

impl Duplex for Stream {
    fn read_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.read_fd(),
            Stream::Unix(s) => s.read_fd(),
            Stream::Ssh(s) => s.read_fd(),
        }
    }

    fn write_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.write_fd(),
            Stream::Unix(s) => s.write_fd(),
            Stream::Ssh(s) => s.write_fd(),
        }
    }
}

/// The ssh command line for a host: `ssh` (`DISTCC_SSH`, already split),
/// `[-l USER] HOST COMMAND --inetd`.
pub(crate) fn ssh_argv(
    ssh: &[String],
    user: Option<&str>,
    host: &str,
    command: Option<&str>,
) -> Vec<String> {
    let mut argv = ssh.to_vec();
    if let Some(u) = user {
        argv.extend(["-l".into(), u.into()]);
    }
    argv.push(host.into());
    argv.push(command.unwrap_or("distccd").into());
    // As distcc 3.4: whoever may log in over ssh may run any compiler there, so the
    // daemon's TCP whitelist does not apply (its argument vetting still does).
    argv.extend(["--inetd".into(), "--enable-tcp-insecure".into()]);
    argv
}

/// A connection ready for a job.
pub(crate) struct Session {
    pub wire: Wire<Stream>,
    /// What the protocol extension agreed, when the host speaks it.
    #[allow(dead_code, reason = "read by the identity and keys layers' hooks")]
    pub agreed: Option<Agreed>,
}

impl Session {
    /// Does the host want our compiler's identity before the job?
    pub(crate) fn wants_identity(&self) -> bool {
        self.agreed.as_ref().is_some_and(|a| a.identity)
    }

    /// Append the packets that go before the job's `DIST` (over the extension only):
    /// `CIDN` with the identity of the compiler `argv[0]` names ([`crate::identity`];
    /// empty when the client can't tell).
    pub(crate) fn preamble(
        &self,
        _argv: &[String],
        identity: Option<&crate::identity::Identity>,
        buf: &mut Vec<u8>,
    ) {
        if self.wants_identity() {
            let text = identity.map(|i| i.to_text()).unwrap_or_default();
            ext::encode_cidn(buf, &text);
        }
    }
}

/// Whether a failure right after the hello is what a distcc 3.4 daemon does to
/// `DIST 4`: close without a byte (a reset, when our hello was still unread). A server
/// that answers with anything but `EXTN` or `RFSE` does not speak the extension either
/// (whatever it is, it then gets protocols 1–3, as from distcc 3.4).
fn is_plain_host(e: &ConnError) -> bool {
    match e {
        ConnError::NoAnswer => true,
        ConnError::Protocol(crate::protocol::ProtocolError::Mismatch { .. }) => true,
        ConnError::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionAborted
        ),
        _ => false,
    }
}

/// Connect to `host` for a job, with `timeout` for each wait on it: over the protocol
/// extension if the host speaks it (see [`crate::ext`] for the bytes), else plainly. A
/// refusal at the hello is `Err(RemoteError::Conn(ConnError::Refused))`.
///
/// `zstd`: ask for zstd bodies. Pump jobs don't: their headers come LZO-packed from the
/// include server's cache and go on the wire as they are, while re-packing each as zstd
/// would cost the client CPU at every job (the figure pump mode exists to cut) to save a
/// few bytes on a LAN.
pub(crate) fn open(
    host: &HostSpec,
    env: &ClientEnv,
    timeout: Duration,
    zstd: bool,
) -> Result<Session, RemoteError> {
    let plain = || -> Result<Session, RemoteError> {
        let stream = connect(host, env)?;
        let wire = Wire::new(stream, timeout).map_err(|e| RemoteError::Conn(e.into()))?;
        Ok(Session { wire, agreed: None })
    };
    if !env.extensions {
        return plain();
    }
    let key = host.lock_key();
    let memo = Memo::for_client(env);
    // KEYS: a host we paired with is always asked for the channel (never trusted to be
    // plain from the memo), and never served in clear.
    let secure = crate::noise::ClientSecure::for_host(host, env);
    let known = memo.as_ref().map(|m| m.read(&key));
    if secure.is_none() && known == Some(Known::Plain) {
        log::debug!("{} speaks no protocol extension (remembered)", host.spec);
        return plain();
    }
    let stream = connect(host, env)?;
    let mut wire = Wire::new(stream, timeout).map_err(|e| RemoteError::Conn(e.into()))?;
    let mut wants = ext::client_wants();
    if !zstd {
        wants.retain(|w| *w != ext::feature::ZSTD);
    }
    if secure.is_some() {
        wants.push(ext::feature::NOISE);
    }
    let hello = Hello::new().with("want", &wants.join(" "));
    let mut bytes = Vec::new();
    ext::encode_hello(&mut bytes, &hello);
    let answer = wire
        .send(&bytes)
        .and_then(|()| wire.receive(ext::decode_answer));
    match answer {
        Ok(Ok(answer)) => {
            let agreed = Agreed::from_answer(answer, &wants)
                .map_err(|e| RemoteError::Conn(ConnError::Protocol(e.into())))?;
            // The same answer as last time (the usual case) is not written again.
            let unchanged = matches!(&known, Some(Known::Ours(h)) if *h == agreed.answer);
            if let Some(m) = &memo
                && !unchanged
                && let Err(e) = m.remember(&key, &agreed.answer)
            {
                log::debug!("{e}");
            }
            wire.set_ext(agreed.zstd);
            // KEYS: the Noise channel with a host we paired with; its key checked
            // against the pin first.
            match &secure {
                Some(s) if agreed.noise => {
                    crate::noise::client_secure(&mut wire, s, &wants, &agreed)?
                }
                Some(s) => return Err(RemoteError::Conn(crate::noise::downgrade_refused(s))),
                None => {}
            }
            log::info!(
                "{} speaks {} {}; using: {}",
                host.spec,
                ext::EXT_NAME,
                agreed.answer.version,
                agreed
                    .answer
                    .get("use")
                    .filter(|u| !u.is_empty())
                    .unwrap_or("(nothing)")
            );
            Ok(Session {
                wire,
                agreed: Some(agreed),
            })
        }
        Ok(Err(refusal)) => Err(RemoteError::Conn(ConnError::Refused(refusal))),
        Err(e) if is_plain_host(&e) && secure.is_some() => match &secure {
            Some(s) => Err(RemoteError::Conn(crate::noise::downgrade_refused(s))),
            None => Err(RemoteError::Conn(e)),
        },
        Err(e) if is_plain_host(&e) => {
            drop(wire);
            match &memo {
                Some(m) => {
                    log::info!(
                        "{} speaks no protocol extension (distcc 3.4?): protocols 1-3 from now \
                         on, asked again in {} s",
                        host.spec,
                        env.backoff_period.max(ext::MEMO_MIN).as_secs()
                    );
                    if let Err(e) = m.remember_plain(&key) {
                        log::warn!("{e}");
                    }
                }
                None => log::info!("{} speaks no protocol extension", host.spec),
            }
            plain()
        }
        Err(e) => Err(RemoteError::Conn(e)),
    }
}

/// Connect to `host:port`, trying each address it resolves to for [`CONNECT_TIMEOUT`].
/// A timeout is an error of kind `TimedOut`. (Name resolution itself is not bounded.)
fn tcp_connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{host} resolves to no address"),
    );
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                // The request goes out in two writes (head, then the source once cpp is
                // done); don't let Nagle hold the second back.
                let _ = s.set_nodelay(true);
                if let Err(e) = crate::connection::watch_peer(socket2::SockRef::from(&s)) {
                    log::debug!("can't set keepalive on the connection to {host}:{port}: {e}");
                }
                return Ok(s);
            }
            Err(e) => {
                log::debug!("connecting to {addr} ({host}:{port}): {e}");
                last = e;
            }
        }
    }
    Err(last)
}

/// Connect through `DISTCC_SOCKS_PROXY`: to the proxy, then CONNECT to the host; the
/// handshake too must be done within [`CONNECT_TIMEOUT`].
fn via_proxy(proxy: &super::socks::Proxy, host: &str, port: u16) -> io::Result<Stream> {
    use super::socks::{Proxy, handshake};
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{proxy}: {e}"));
    let mut stream = match proxy {
        Proxy::Unix(path) => Stream::Unix(connect_unix(path, CONNECT_TIMEOUT).map_err(named)?),
        Proxy::Tcp {
            host: phost,
            port: pport,
        } => Stream::Tcp(tcp_connect(phost, *pport).map_err(named)?),
    };
    let mut timed = ByDeadline {
        stream: &mut stream,
        deadline: Instant::now() + CONNECT_TIMEOUT,
    };
    handshake(&mut timed, proxy, host, port).map_err(named)?;
    Ok(stream)
}

/// Open a connection to `host` (which must not be `localhost`), through the SOCKS proxy
/// and with the ssh command `env` names.
pub(crate) fn connect(host: &HostSpec, env: &ClientEnv) -> Result<Stream, RemoteError> {
    match &host.kind {
        HostKind::Tcp { host: name, port } => {
            let target = format!("{name}:{port}");
            let proxy = env.socks_proxy.as_ref().map_err(|e| RemoteError::Connect {
                host: target.clone(),
                source: io::Error::other(format!("DISTCC_SOCKS_PROXY: {e}")),
            })?;
            let connected = match &proxy {
                None => tcp_connect(name, *port).map(Stream::Tcp),
                Some(p) => via_proxy(p, name, *port),
            };
            connected.map_err(|source| {
                if source.kind() == io::ErrorKind::TimedOut {
                    RemoteError::ConnectTimeout(target)
                } else if proxy.is_some() {
                    RemoteError::Proxy {
                        host: target,
                        source,
                    }
                } else {
                    RemoteError::Connect {
                        host: target,
                        source,
                    }
                }
            })
        }
        HostKind::Ssh {
            user,
            host: name,
            command,
        } => {
            let argv = ssh_argv(&env.ssh, user.as_deref(), name, command.as_deref());
            log::debug!("starting ssh: {}", argv.join(" "));
            let mut child = Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|source| RemoteError::Ssh {
                    host: name.clone(),
                    cmd: argv.join(" "),
                    source,
                })?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(RemoteError::Ssh {
                    host: name.clone(),
                    cmd: argv.join(" "),
                    source: io::Error::other("no pipes to ssh"),
                });
            };
            Ok(Stream::Ssh(Box::new(SshStream {
                child,
                reader: stdout,
                writer: Some(stdin),
            })))
        }
        HostKind::Local => Err(RemoteError::Connect {
            host: "localhost".into(),
            source: io::Error::other("localhost is compiled locally, not connected to"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::Path;

    #[test]
    fn ssh_command_line() {
        let ssh = vec!["ssh".to_string()];
        assert_eq!(
            ssh_argv(&ssh, Some("bob"), "red", None),
            vec![
                "ssh",
                "-l",
                "bob",
                "red",
                "distccd",
                "--inetd",
                "--enable-tcp-insecure"
            ]
        );
        let ssh = vec!["ssh".to_string(), "-p".into(), "2222".into()];
        assert_eq!(
            ssh_argv(&ssh, None, "red", Some("/opt/distccd")),
            vec![
                "ssh",
                "-p",
                "2222",
                "red",
                "/opt/distccd",
                "--inetd",
                "--enable-tcp-insecure"
            ]
        );
    }

    fn ssh_stand_in(script: &str) -> (SshStream, u32) {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let (reader, writer) = (child.stdout.take().unwrap(), child.stdin.take());
        (
            SshStream {
                child,
                reader,
                writer,
            },
            pid,
        )
    }

    #[test]
    fn dropping_ssh_reaps_it_and_kills_one_that_hangs() {
        // Finishes when its stdin closes, as ssh does once distccd has answered.
        let (ssh, pid) = ssh_stand_in("exec cat");
        let started = Instant::now();
        drop(ssh);
        assert!(
            started.elapsed() < SSH_GRACE,
            "waited out the grace for a finished ssh"
        );
        // Reaped: not even a zombie is left.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        // Ignores the end of its input and never finishes: killed after the grace.
        let (ssh, pid) = ssh_stand_in("exec sleep 1000 </dev/null");
        drop(ssh);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn a_proxy_that_never_answers_times_out() {
        // It accepts (the kernel does, into the backlog) and then says nothing.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let started = Instant::now();
        let e = via_proxy(&super::super::socks::Proxy::Unix(path), "red", 3632)
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(started.elapsed() >= CONNECT_TIMEOUT);
        assert!(started.elapsed() < CONNECT_TIMEOUT * 3);
    }

    #[test]
    fn refused_connection_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let host = HostSpec {
            spec: format!("127.0.0.1:{port}"),
            kind: HostKind::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            slots: 1,
            protocol: 1,
            lzo: false,
            cpp: false,
            down: false,
            auth: None,
        };
        let (env, _) = ClientEnv::from_env(&std::collections::HashMap::new());
        let e = connect(&host, &env).err().unwrap();
        assert_eq!(e.exit_code(), ExitCode::ConnectFailed, "{e}");
    }
}
