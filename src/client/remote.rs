//! Talking to a server (distcc 3.4 `clinet.c`, `ssh.c`, `remote.c`, `clirpc.c`): open a TCP
//! connection (4 s connect timeout, not configurable, as in distcc) or start
//! `ssh HOST distccd --inetd`, then drive the protocol codec over it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use smol::io::{AsyncRead, AsyncWrite};
use smol::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use thiserror::Error;

use crate::connection::ConnError;
use crate::exitcode::ExitCode;
use crate::hosts::{HostKind, HostSpec};

/// distcc's fixed connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// Why a host could not do a job. All of these are the host's fault (backoff), none the
/// user's.
#[derive(Debug, Error)]
pub enum RemoteError {
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
    pub fn exit_code(&self) -> ExitCode {
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

/// An ssh child's stdin and stdout as one duplex stream.
pub struct SshStream {
    // Kept so that the child is reaped (smol's reaper) and not orphaned early.
    _child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

/// A connection to a server, by either transport.
pub enum Stream {
    Tcp(async_net::TcpStream),
    /// A tunnel through a SOCKS proxy on a UNIX socket (Portage's network sandbox).
    Unix(async_net::unix::UnixStream),
    Ssh(Box<SshStream>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Ssh(s) => Pin::new(&mut s.stdout).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Ssh(s) => Pin::new(&mut s.stdin).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Ssh(s) => Pin::new(&mut s.stdin).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_close(cx),
            Stream::Unix(s) => Pin::new(s).poll_close(cx),
            Stream::Ssh(s) => Pin::new(&mut s.stdin).poll_close(cx),
        }
    }
}

/// The ssh command line for a host: `$DISTCC_SSH` (split on spaces, default `ssh`),
/// `[-l USER] HOST COMMAND --inetd`.
pub fn ssh_argv(user: Option<&str>, host: &str, command: Option<&str>) -> Vec<String> {
    let ssh = std::env::var("DISTCC_SSH")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "ssh".into());
    let mut argv: Vec<String> = ssh
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect();
    if let Some(u) = user {
        argv.extend(["-l".into(), u.into()]);
    }
    argv.push(host.into());
    argv.push(command.unwrap_or("distccd").into());
    argv.push("--inetd".into());
    argv
}

async fn tcp_connect(host: &str, port: u16) -> io::Result<async_net::TcpStream> {
    let s = async_net::TcpStream::connect((host, port)).await?;
    // The request goes out in two writes (head, then the source once cpp is done);
    // don't let Nagle hold the second back.
    let _ = s.set_nodelay(true);
    if let Err(e) = crate::connection::watch_peer(socket2::SockRef::from(&s)) {
        log::debug!("can't set keepalive on the connection to {host}:{port}: {e}");
    }
    Ok(s)
}

/// Connect through `DISTCC_SOCKS_PROXY`: to the proxy, then CONNECT to the host.
async fn via_proxy(proxy: &super::socks::Proxy, host: &str, port: u16) -> io::Result<Stream> {
    use super::socks::{Proxy, handshake};
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{proxy}: {e}"));
    match proxy {
        Proxy::Unix(path) => {
            let mut s = async_net::unix::UnixStream::connect(path)
                .await
                .map_err(named)?;
            handshake(&mut s, proxy, host, port).await.map_err(named)?;
            Ok(Stream::Unix(s))
        }
        Proxy::Tcp {
            host: phost,
            port: pport,
        } => {
            let mut s = tcp_connect(phost, *pport).await.map_err(named)?;
            handshake(&mut s, proxy, host, port).await.map_err(named)?;
            Ok(Stream::Tcp(s))
        }
    }
}

/// Open a connection to `host` (which must not be `localhost`).
pub async fn connect(host: &HostSpec) -> Result<Stream, RemoteError> {
    match &host.kind {
        HostKind::Tcp { host: name, port } => {
            let target = format!("{name}:{port}");
            let proxy = super::socks::Proxy::from_env().map_err(|e| RemoteError::Connect {
                host: target.clone(),
                source: io::Error::other(e.to_string()),
            })?;
            let connect = async {
                match &proxy {
                    None => tcp_connect(name, *port)
                        .await
                        .map(Stream::Tcp)
                        .map_err(|source| RemoteError::Connect {
                            host: target.clone(),
                            source,
                        }),
                    Some(p) => {
                        via_proxy(p, name, *port)
                            .await
                            .map_err(|source| RemoteError::Proxy {
                                host: target.clone(),
                                source,
                            })
                    }
                }
            };
            let timeout = async {
                smol::Timer::after(CONNECT_TIMEOUT).await;
                Err(RemoteError::ConnectTimeout(target.clone()))
            };
            smol::future::or(connect, timeout).await
        }
        HostKind::Ssh {
            user,
            host: name,
            command,
        } => {
            let argv = ssh_argv(user.as_deref(), name, command.as_deref());
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
                _child: child,
                stdin,
                stdout,
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

    #[test]
    fn ssh_command_line() {
        // DISTCC_SSH is not set in the test environment of this crate.
        if std::env::var_os("DISTCC_SSH").is_none() {
            assert_eq!(
                ssh_argv(Some("bob"), "red", None),
                vec!["ssh", "-l", "bob", "red", "distccd", "--inetd"]
            );
            assert_eq!(
                ssh_argv(None, "red", Some("/opt/distccd")),
                vec!["ssh", "red", "/opt/distccd", "--inetd"]
            );
        }
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
        let e = smol::block_on(connect(&host)).err().unwrap();
        assert_eq!(e.exit_code(), ExitCode::ConnectFailed, "{e}");
    }
}
