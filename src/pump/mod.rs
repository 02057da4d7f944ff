//! Pump mode without Python: the include analyser, the include server that serves it over
//! a unix socket (distcc 3.4's `include_server.py`, reference §5.2–5.3), and the client side
//! that turns its answer into a protocol-3 request (§1.5, §5.4).
//!
//! * [`parse`]: directives-only scanner;
//! * [`defaults`]: the compiler's built-in include dirs;
//! * [`analyser`]: command line + scanner → the files a compile may read;
//! * [`server`]: the include server and its client root of LZO mirrors;
//! * [`stamp`]: what identifies a file's version, and reading one version whole;
//! * [`watch`]: inotify watches that tell when a remembered stat no longer holds;
//! * [`client`]: the compile client's side: ask, map back, build the protocol-3 request.

pub(crate) mod analyser;
pub(crate) mod client;
pub(crate) mod defaults;
pub(crate) mod parse;
pub mod server;
pub(crate) mod stamp;
pub(crate) mod watch;

pub use analyser::{Analyser, Closure, NotCovered};

/// What can go wrong in pump mode. Every one of them means "this job goes protocol 2".
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error(transparent)]
    NotCovered(#[from] NotCovered),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("can't compress {0}: {1}")]
    Compress(String, crate::compress::CompressError),
    #[error("include server protocol error: {0}")]
    Protocol(#[from] crate::protocol::ProtocolError),
    #[error(
        "can't make the include server's client root: {0}; set DISTCC_CLIENT_TMP to a directory like /dev/shm"
    )]
    ClientRoot(String),
    #[error("include server: {0}")]
    Server(String),
    /// A file changed between its analysis and its mirror (or kept changing while being
    /// read): the job is analysed again, and after a few tries goes protocol 2.
    #[error("{0} changed while this job was being prepared")]
    Changed(String),
}
