//! The protocol extension between our own client and daemon (issues 14 and 17): they
//! recognise each other and agree on extras — zstd bodies today, a Noise channel and a
//! compiler identity from the layers that plug in here — while a distcc 3.4 peer on either
//! side sees only protocols 1–3, exactly as before.
//!
//! # Bytes on the wire
//!
//! Every packet is the usual 12-byte header (4-letter token, 8 lowercase hex digits) and,
//! for string tokens, a body of that many bytes ([`crate::protocol`]).
//!
//! 1. Client → server: `DIST00000004`, then `EXTN<len><hello>`. The hello is UTF-8 text
//!    of at most [`HELLO_MAX`] bytes, `key value…` lines separated by `\n`, the first line
//!    naming the extension and its version:
//!    ```text
//!    distcc-rs 1
//!    want zstd
//!    ```
//!    Keys a side does not know are ignored. The client then waits for the answer before
//!    sending anything else.
//! 2. A distcc 3.4 daemon reads `DIST`, finds version 4 > 3 and closes the connection
//!    without a byte. The client sees EOF (or a reset, or any packet but `EXTN`/`RFSE`:
//!    whatever answers so does not speak the extension) before an answer: it writes `none`
//!    into `$DISTCC_DIR/ext/<hostkey>` (the host's backoff key, `tcp_HOST_PORT`), connects
//!    again at once and runs the job as protocol 1, 2 or 3, byte for byte as 3.4 would.
//!    While that file is younger than `max(DISTCC_BACKOFF_PERIOD, 600 s)` ([`MEMO_MIN`])
//!    the client goes straight to 1–3 for that host: a 3.4 host costs at most one extra
//!    connection per period. This is not a host failure (no backoff, no fallback).
//!    `DISTCC_EXTENSIONS=0` makes the client never try.
//! 3. Our daemon answers `EXTN<len><answer>`:
//!    ```text
//!    distcc-rs 1
//!    use zstd
//!    ```
//!    `use` is the subset of the client's `want` the daemon agrees to (a client drops the
//!    connection if it names anything it did not want); other keys are informational
//!    ([`info`]): `directives-only yes` when no wrapper such as ccache stands in front of
//!    the daemon's gcc, which makes the client preprocess for it with `-fdirectives-only`.
//!    The client stores the answer text in the same memo file, so later jobs know what the
//!    host speaks before connecting. Instead of answering, the daemon may refuse
//!    (`RFSE`, see 6).
//! 4. `noise` in `use`: the Noise handshake follows, each message a `NOIS<len><msg>`
//!    packet; after it every byte both ways travels in `NOIS<len><ciphertext>` records
//!    (at most 65535 bytes of ciphertext each), through a [`Transform`].
//! 5. The job: `CIDN<len><identity>` first if `identity` is in `use` (one line of
//!    `key=value` words, empty when the client can't tell: see [`crate::identity`]), then a normal
//!    protocol 1, 2 or 3 request (`DIST0000000N`…). With `zstd` in `use`, every body that
//!    protocol would LZO-compress (N ≥ 2: DOTI, FILE, SERR, SOUT, DOTO, DOTD) is one zstd
//!    frame instead, of [`crate::compress::ZSTD_LEVEL`]; protocol 1 stays uncompressed.
//! 6. Server → client: the normal protocol N reply, or `RFSE<len><code> <message>` and
//!    close, instead of the `EXTN` answer or instead of the reply. `<code>` is one word
//!    ([`code`]): `compiler-identity`, `not-whitelisted`, `auth-required`,
//!    `not-authorized`, `bad-request`, `busy`, `server-error`. The client shows the message
//!    and maps the code to an outcome: `compiler-identity` skips that host for that
//!    compiler only, the others are host failures.
//!
//! Why a new `DIST` version rather than a host-list option: nothing to configure, the
//! 3.4 daemon's reaction to it is fixed and silent (it logs one line and closes), and the
//! memo bounds the cost. Why the client waits for the answer: a 3.4 daemon must not see
//! the job's bytes after version 4, and our daemon must know the codec before the job.
//!
//! Everything here is sans-IO: codecs over byte buffers, the memo over files. The
//! sockets live in [`crate::client::remote`] (client) and [`crate::daemon`] (daemon).
//!
//! # Where the other layers plug in (grep `NOISE HOOK`, `IDENTITY HOOK`)
//!
//! * Feature words: [`client_wants`] and [`daemon_offer`].
//! * Client: `client::remote::open` runs the hello; after the answer, the Noise
//!   handshake goes where it says `NOISE HOOK` (packets through `Wire::send` and
//!   `Wire::receive`, then `Wire::set_transform`); `client::remote::Session::preamble`
//!   appends the `CIDN` packet before the job's `DIST` (both job paths call it).
//! * Daemon: `daemon::serve::negotiate` answers the hello; the handshake goes at its
//!   `NOISE HOOK` (`Connection::send`/`receive`/`set_transform`), and it reads `CIDN`
//!   into `Extension::identity` when `identity` was agreed. A layer refuses by returning
//!   `ConnError::Refused(Refusal)`: the daemon sends it as `RFSE` and closes, the client
//!   shows it and maps its code (`client::compile::fault_reason`).
//! * The record layer itself is a [`Transform`].

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::protocol::{self, Decoder, Limits, ProtocolError, tok};

/// The `DIST` version that opens the extension: one past what distcc 3.4 accepts.
pub const EXT_DIST_VERSION: u32 = 4;
/// The extension's own version, on the hello's first line.
pub const EXT_VERSION: u32 = 1;
/// The first word of a hello: whose extension this is.
pub const EXT_NAME: &str = "distcc-rs";
/// Longest hello, answer or refusal body.
pub const HELLO_MAX: usize = 4096;
/// The shortest time a "this host speaks no extension" memo is trusted.
pub const MEMO_MIN: Duration = Duration::from_secs(600);

/// Words of `want` and `use`.
pub mod feature {
    /// Bulk bodies as zstd frames.
    pub const ZSTD: &str = "zstd";
    /// A Noise channel (the keys layer).
    pub const NOISE: &str = "noise";
    /// A `CIDN` packet before the job (the identity layer).
    pub const IDENTITY: &str = "identity";
}

/// Informational keys of a daemon's answer (not negotiated: the client may act on them,
/// and a daemon that does not send one just doesn't get what it offers).
pub mod info {
    /// `directives-only yes`: this daemon compiles a plain-mode source the client
    /// preprocessed with gcc's `-E -fdirectives-only`, sent with `-fpreprocessed
    /// -fdirectives-only`, as a local build would (`compiles_directives_only`); the
    /// client then preprocesses that way by default (`DISTCC_DIRECTIVES_ONLY` unset).
    pub const DIRECTIVES_ONLY: &str = "directives-only";
    /// `rewrite-includes yes`: this daemon checks every plain-mode source for directives
    /// that read a file where clang obeys them ([`crate::daemon::source_check`]), so a
    /// client with a clang sends it the output of `clang -E -frewrite-includes` (macros
    /// kept) by default; what the client's own check passes, the daemon's does too.
    pub const REWRITE_INCLUDES: &str = "rewrite-includes";
}

/// Refusal codes (`RFSE`).
pub mod code {
    /// The daemon has no compiler of the client's compiler identity.
    pub const COMPILER_IDENTITY: &str = "compiler-identity";
    /// The compiler is not on the daemon's whitelist.
    pub const NOT_WHITELISTED: &str = "not-whitelisted";
    /// The daemon requires an authenticated (Noise) client.
    pub const AUTH_REQUIRED: &str = "auth-required";
    /// The client's key is not one the daemon accepts.
    pub const NOT_AUTHORIZED: &str = "not-authorized";
    /// The request is malformed or asks for what the daemon never runs.
    pub const BAD_REQUEST: &str = "bad-request";
    /// The daemon cannot take the job now.
    pub const BUSY: &str = "busy";
    /// Something failed on the daemon's side (its disk, its temp dir).
    pub const SERVER_ERROR: &str = "server-error";
}

/// Why bytes are not a valid hello or refusal.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HelloError {
    #[error("the hello does not start with '{EXT_NAME} <version>': {0:?}")]
    NotOurs(String),
    #[error("hello line {line} has no key")]
    NoKey { line: usize },
    #[error("the refusal code {0:?} is not one word of [a-z0-9-]")]
    BadCode(String),
    #[error("the server agreed to {0:?}, which this client did not ask for")]
    NotWanted(String),
}

impl From<HelloError> for ProtocolError {
    fn from(e: HelloError) -> ProtocolError {
        ProtocolError::BadHello(e.to_string())
    }
}

/// A hello or an answer: the extension's version and its `key value` lines, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    pub fields: Vec<(String, String)>,
}

impl Hello {
    /// A hello of our version with no fields.
    pub fn new() -> Hello {
        Hello {
            version: EXT_VERSION,
            fields: Vec::new(),
        }
    }

    /// Add a `key value` line.
    pub fn with(mut self, key: &str, value: &str) -> Hello {
        self.fields.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The value of the first `key` line.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The words of every `key` line (`want`, `use`).
    pub fn words<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| k == key)
            .flat_map(|(_, v)| v.split_whitespace())
    }

    /// Whether a `key` line holds `word`.
    pub fn has(&self, key: &str, word: &str) -> bool {
        self.words(key).any(|w| w == word)
    }

    /// The text that travels in `EXTN` (and is kept in the memo file).
    pub fn to_text(&self) -> String {
        let mut s = format!("{EXT_NAME} {}\n", self.version);
        for (k, v) in &self.fields {
            s.push_str(k);
            if !v.is_empty() {
                s.push(' ');
                s.push_str(v);
            }
            s.push('\n');
        }
        s
    }

    /// Parse hello text (untrusted: from the network or a memo file). Blank lines are
    /// skipped, values trimmed; control characters are refused by the caller's string
    /// check (NUL) or kept as text.
    pub fn parse(text: &str) -> Result<Hello, HelloError> {
        let mut lines = text.split('\n');
        let first = lines.next().unwrap_or_default().trim();
        let mut words = first.split_whitespace();
        let version = match (words.next(), words.next().map(str::parse::<u32>)) {
            (Some(EXT_NAME), Some(Ok(v))) if v >= 1 => v,
            _ => return Err(HelloError::NotOurs(first.chars().take(60).collect())),
        };
        let mut fields = Vec::new();
        for (i, line) in lines.enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            if key.is_empty() {
                return Err(HelloError::NoKey { line: i + 2 });
            }
            fields.push((key.to_owned(), value.trim().to_owned()));
        }
        Ok(Hello { version, fields })
    }
}

impl Default for Hello {
    fn default() -> Self {
        Hello::new()
    }
}

/// A daemon's refusal with its reason: `RFSE<len><code> <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// One word of [`code`] (a code this side does not know is still shown).
    pub code: String,
    /// For the user: what was refused and why.
    pub message: String,
}

impl Refusal {
    pub fn new(code: &str, message: impl Into<String>) -> Refusal {
        Refusal {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused by the server ({}): {}", self.code, self.message)
    }
}

/// Limits for hello and refusal bodies.
fn hello_limits(limits: Limits) -> Limits {
    Limits {
        max_string: HELLO_MAX,
        ..limits
    }
}

/// The opening of an extension request: `DIST00000004` and `EXTN<hello>`.
pub fn encode_hello(buf: &mut Vec<u8>, hello: &Hello) {
    protocol::encode_int(buf, &tok::DIST, EXT_DIST_VERSION);
    encode_answer(buf, hello);
}

/// `EXTN<answer>` (the daemon's side; the client's hello body is the same packet).
pub fn encode_answer(buf: &mut Vec<u8>, hello: &Hello) {
    protocol::encode_str(buf, &tok::EXTN, hello.to_text().as_bytes());
}

/// `RFSE<code> <message>`. Over-long messages are cut at a character boundary.
pub fn encode_refusal(buf: &mut Vec<u8>, refusal: &Refusal) {
    let mut text = format!("{} ", refusal.code);
    for c in refusal.message.chars() {
        if text.len() + c.len_utf8() > HELLO_MAX {
            break;
        }
        text.push(c);
    }
    protocol::encode_str(buf, &tok::RFSE, text.as_bytes());
}

/// Decode one `EXTN` packet (after `DIST00000004`, on the daemon's side).
pub fn decode_extn(buf: &[u8], limits: Limits) -> Result<(Hello, usize), ProtocolError> {
    let mut d = Decoder::new(buf, hello_limits(limits));
    let text = d.read_string(&tok::EXTN)?;
    Ok((Hello::parse(&text)?, d.position()))
}

/// Decode one `RFSE` packet. Control characters in the message become `?`: it is shown
/// on the user's terminal.
pub fn decode_refusal(buf: &[u8], limits: Limits) -> Result<(Refusal, usize), ProtocolError> {
    let mut d = Decoder::new(buf, hello_limits(limits));
    let text = d.read_string(&tok::RFSE)?;
    let (code, message) = text.split_once(' ').unwrap_or((text.as_str(), ""));
    let code_ok = !code.is_empty()
        && code.len() <= 40
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !code_ok {
        return Err(HelloError::BadCode(code.chars().take(40).collect()).into());
    }
    let message = message
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    Ok((
        Refusal {
            code: code.to_owned(),
            message,
        },
        d.position(),
    ))
}

/// `CIDN<identity>`: the client's compiler identity (its text is the identity layer's).
pub fn encode_cidn(buf: &mut Vec<u8>, identity: &str) {
    protocol::encode_str(buf, &tok::CIDN, identity.as_bytes());
}

/// Decode one `CIDN` packet.
pub fn decode_cidn(buf: &[u8], limits: Limits) -> Result<(String, usize), ProtocolError> {
    let mut d = Decoder::new(buf, hello_limits(limits));
    let text = d.read_string(&tok::CIDN)?;
    Ok((text, d.position()))
}

/// Either what the peer was expected to send, or its refusal.
pub fn or_refusal<T>(
    buf: &[u8],
    limits: Limits,
    decode: impl FnOnce(&[u8], Limits) -> Result<(T, usize), ProtocolError>,
) -> Result<(Result<T, Refusal>, usize), ProtocolError> {
    // No expected token starts with `R` (EXTN, DONE, NOIS): one byte decides.
    match buf.first() {
        None => Err(ProtocolError::Incomplete),
        Some(b'R') => decode_refusal(buf, limits).map(|(r, n)| (Err(r), n)),
        Some(_) => decode(buf, limits).map(|(t, n)| (Ok(t), n)),
    }
}

/// The daemon's answer to a hello: `EXTN`, or `RFSE`.
pub fn decode_answer(
    buf: &[u8],
    limits: Limits,
) -> Result<(Result<Hello, Refusal>, usize), ProtocolError> {
    or_refusal(buf, limits, decode_extn)
}

/// What one connection agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreed {
    /// The daemon's answer as it was sent.
    pub answer: Hello,
    pub zstd: bool,
    pub noise: bool,
    pub identity: bool,
}

impl Agreed {
    /// What an answer means to a client that wanted `wanted`; an answer that uses anything
    /// else is a protocol error (a daemon must not switch on what the client can't do).
    pub fn from_answer(answer: Hello, wanted: &[&str]) -> Result<Agreed, HelloError> {
        if let Some(extra) = answer.words("use").find(|w| !wanted.contains(w)) {
            return Err(HelloError::NotWanted(extra.to_owned()));
        }
        Ok(Agreed {
            zstd: answer.has("use", feature::ZSTD),
            noise: answer.has("use", feature::NOISE),
            identity: answer.has("use", feature::IDENTITY),
            answer,
        })
    }
}

/// The daemon's answer to `hello`: our version, and `use` with the words of the client's
/// `want` that `offer` holds (in the client's order), plus `info` lines.
pub fn answer_for(hello: &Hello, offer: &[&str], info: &[(&str, &str)]) -> Hello {
    let mut used: Vec<&str> = Vec::new();
    for w in hello.words("want") {
        if offer.contains(&w) && !used.contains(&w) {
            used.push(w);
        }
    }
    let mut answer = Hello::new().with("use", &used.join(" "));
    for (k, v) in info {
        answer = answer.with(k, v);
    }
    answer
}

/// Whether a daemon's answer (the memo's copy of it) says it compiles directives-only
/// sources right.
pub(crate) fn offers_directives_only(answer: &Hello) -> bool {
    answer.get(info::DIRECTIVES_ONLY) == Some("yes")
}

/// Whether a daemon's answer says it takes `clang -E -frewrite-includes` output
/// ([`info::REWRITE_INCLUDES`]).
pub(crate) fn offers_rewrite_includes(answer: &Hello) -> bool {
    answer.get(info::REWRITE_INCLUDES) == Some("yes")
}

/// What a daemon whose compilers are found on `path` (`DISTCCD_PATH`, else `PATH`) says
/// besides `use`.
pub(crate) fn daemon_info(path: Option<&OsStr>) -> Vec<(&'static str, &'static str)> {
    let mut info = vec![(info::REWRITE_INCLUDES, "yes")];
    if compiles_directives_only(path) {
        info.push((info::DIRECTIVES_ONLY, "yes"));
    }
    info
}

/// The names a directives-only job's compiler is asked by (the client rewrites `cc` to
/// the gcc it links to, but a 3.4-style client may send `cc` as it is).
const GCC_NAMES: [&str; 4] = ["gcc", "g++", "cc", "c++"];

/// Whether this daemon compiles directives-only sources as a local build would: it has a
/// `gcc`, and neither it nor [`GCC_NAMES`]' others are reached through a compiler wrapper
/// (the file they resolve to is `ccache`, `sccache`, …: [`crate::identity::WRAPPERS`]).
/// ccache, the wiki's server-side setup (`/usr/lib/ccache` first on distccd's PATH),
/// treats the `.i` as preprocessed and compiles it without `-fdirectives-only`: every
/// macro is then unknown and every job fails. A wrapper we can't see (a shell script
/// calling ccache) is not detected; the job then fails remotely and is compiled here.
/// Asked per connection, not once: installing ccache under a running daemon counts.
pub(crate) fn compiles_directives_only(path: Option<&OsStr>) -> bool {
    let wrapped = |p: &Path| {
        // A name that does not resolve is not trusted either.
        match std::fs::canonicalize(p) {
            Ok(real) => real
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| crate::identity::WRAPPERS.contains(&n)),
            Err(_) => true,
        }
    };
    let Some(gcc) = crate::paths::which(GCC_NAMES[0], path) else {
        return false;
    };
    !wrapped(&gcc)
        && GCC_NAMES
            .iter()
            .skip(1)
            .filter_map(|n| crate::paths::which(n, path))
            .all(|p| !wrapped(&p))
}

/// What a client asks for. The layers that plug in add their words here.
pub(crate) fn client_wants() -> Vec<&'static str> {
    // NOISE HOOK: the keys layer adds feature::NOISE when this client has a key.
    // The identity layer: a client always offers its compiler's identity (an empty `CIDN`
    // when it can't tell, see `crate::daemon::job::prepare_for`).
    vec![feature::ZSTD, feature::IDENTITY]
}

/// What a daemon agrees to. The layers that plug in add their words here.
pub(crate) fn daemon_offer() -> Vec<&'static str> {
    // NOISE HOOK: the keys layer adds feature::NOISE when the daemon has a key.
    // The identity layer: resolves the client's `CIDN` to one of our compilers.
    vec![feature::ZSTD, feature::IDENTITY]
}

/// A record layer under the protocol, installed after the extension's handshake (the
/// Noise channel): every byte sent goes through [`Transform::seal`], every byte received
/// through [`Transform::open`]. Sans-IO, so the client's blocking [`crate::client::wire`]
/// and the daemon's async [`crate::connection`] share one implementation.
pub trait Transform: Send {
    /// Append the wire bytes (whole records) that carry `plain` to `out`.
    fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), TransformError>;
    /// Consume whole records from the front of `wire`, appending their plaintext to `out`;
    /// return how many bytes of `wire` were consumed (0: no whole record yet).
    fn open(&mut self, wire: &[u8], out: &mut Vec<u8>) -> Result<usize, TransformError>;
}

/// A record that does not decrypt, or is not a record.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("secure channel: {0}")]
pub struct TransformError(pub String);

/// What the client knows about a host's extension support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Known {
    /// Never asked, or the memo is stale: try the extension.
    Unknown,
    /// Recently found to be a distcc 3.4 daemon: go straight to protocols 1–3.
    Plain,
    /// Our daemon, which last answered this.
    Ours(Hello),
}

/// Why a memo file could not be written (logged; the cost is one more probe).
#[derive(Debug, Error)]
pub(crate) enum MemoError {
    #[error("failed to write the extension memo {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The client's memo of hosts' extension support: `$DISTCC_DIR/ext/<hostkey>`, `none`
/// for a 3.4 host (its mtime says when), else the host's last answer.
#[derive(Debug, Clone)]
pub(crate) struct Memo {
    dir: PathBuf,
    /// How long a `none` is trusted: `max(DISTCC_BACKOFF_PERIOD, 600 s)`.
    period: Duration,
}

/// The memo text of a 3.4 host.
const NONE: &str = "none\n";

impl Memo {
    pub(crate) fn new(dir: &Path, backoff_period: Duration) -> Memo {
        Memo {
            dir: dir.to_path_buf(),
            period: backoff_period.max(MEMO_MIN),
        }
    }

    /// The memo of this client (`None`: no `DISTCC_DIR` to keep it in; then every job
    /// probes, which still works).
    pub(crate) fn for_client(env: &crate::settings::ClientEnv) -> Option<Memo> {
        // Not looked at: made when a memo is first written ([`Memo::write`]).
        match crate::temp::sub_dir_path(&env.dirs, "ext") {
            Ok(dir) => Some(Memo::new(&dir, env.backoff_period)),
            Err(e) => {
                log::debug!("no extension memo: {e}");
                None
            }
        }
    }

    pub(crate) fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// What the memo says about `key` now.
    pub(crate) fn read(&self, key: &str) -> Known {
        let path = self.path(key);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Known::Unknown;
        };
        if text == NONE {
            let age = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok());
            return match age {
                Some(age) if age < self.period => Known::Plain,
                _ => Known::Unknown,
            };
        }
        match Hello::parse(&text) {
            Ok(h) => Known::Ours(h),
            Err(_) => Known::Unknown,
        }
    }

    /// Remember that `key` is a 3.4 host, as of now.
    pub(crate) fn remember_plain(&self, key: &str) -> Result<(), MemoError> {
        self.write(key, NONE)
    }

    /// Remember `key`'s answer. An answer the memo already holds is not written again:
    /// it does not expire (only a `none` does, by its mtime, and that one is rewritten
    /// by [`Memo::remember_plain`] whenever it is found still true), so rewriting it would
    /// only cost every job a temp file and a rename.
    pub(crate) fn remember(&self, key: &str, answer: &Hello) -> Result<(), MemoError> {
        let text = answer.to_text();
        if self.holds(key, &text) {
            return Ok(());
        }
        self.write(key, &text)
    }

    /// Does the memo of `key` hold exactly `text`?
    fn holds(&self, key: &str, text: &str) -> bool {
        let mut held = Vec::new();
        std::fs::File::open(self.path(key))
            .and_then(|f| f.take(text.len() as u64 + 1).read_to_end(&mut held))
            .is_ok_and(|_| held == text.as_bytes())
    }

    /// Write by rename, so a client reading at the same moment sees the old or the new
    /// text, never half of one.
    fn write(&self, key: &str, text: &str) -> Result<(), MemoError> {
        let path = self.path(key);
        let err = |source| MemoError::Write {
            path: path.clone(),
            source,
        };
        let mut tmp = crate::temp::in_dir(&self.dir, || {
            tempfile::Builder::new()
                .prefix(".memo")
                .tempfile_in(&self.dir)
        })
        .map_err(err)?;
        tmp.write_all(text.as_bytes()).map_err(err)?;
        tmp.persist(&path).map_err(|e| err(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hello_golden_bytes() {
        let mut buf = Vec::new();
        encode_hello(&mut buf, &Hello::new().with("want", "zstd noise identity"));
        assert_eq!(
            buf,
            b"DIST00000004EXTN00000025distcc-rs 1\nwant zstd noise identity\n".to_vec()
        );
        let (hello, used) = decode_extn(buf.get(12..).unwrap(), Limits::default()).unwrap();
        assert_eq!(used, buf.len() - 12);
        assert_eq!(
            hello.words("want").collect::<Vec<_>>(),
            ["zstd", "noise", "identity"]
        );
    }

    #[test]
    fn the_answer_is_what_both_sides_have() {
        let hello =
            Hello::parse("distcc-rs 3\nwant noise zstd future-thing\nfrobnicate 7\n").unwrap();
        assert_eq!(hello.version, 3);
        let answer = answer_for(&hello, &["zstd", "identity"], &[("directives-only", "yes")]);
        assert_eq!(
            answer.to_text(),
            "distcc-rs 1\nuse zstd\ndirectives-only yes\n"
        );
        let agreed = Agreed::from_answer(answer, &["zstd", "noise"]).unwrap();
        assert!(agreed.zstd && !agreed.noise && !agreed.identity);
        // A daemon that switches on what was not asked for is refused.
        let pushy = Hello::new().with("use", "zstd noise");
        assert_eq!(
            Agreed::from_answer(pushy, &["zstd"]),
            Err(HelloError::NotWanted("noise".into()))
        );
    }

    #[test]
    fn bad_hellos_are_errors() {
        for text in [
            "",
            "distcc 1",
            "distcc-rs",
            "distcc-rs 0",
            "distcc-rs x",
            "GET / HTTP/1.0",
        ] {
            assert!(Hello::parse(text).is_err(), "{text:?}");
        }
        // Too long: refused before the body is awaited.
        let mut buf = Vec::new();
        protocol::encode_int(&mut buf, &tok::EXTN, HELLO_MAX as u32 + 1);
        assert!(matches!(
            decode_extn(&buf, Limits::default()),
            Err(ProtocolError::TooLong { .. })
        ));
        // Not UTF-8, or a NUL.
        let mut buf = Vec::new();
        protocol::encode_str(&mut buf, &tok::EXTN, b"distcc-rs 1\n\xff");
        assert!(decode_extn(&buf, Limits::default()).is_err());
    }

    #[test]
    fn refusals_round_trip_and_are_made_printable() {
        let r = Refusal::new(
            code::NOT_WHITELISTED,
            "/opt/cc is not on this host's whitelist",
        );
        let mut buf = Vec::new();
        encode_refusal(&mut buf, &r);
        assert!(buf.starts_with(b"RFSE"));
        assert_eq!(
            decode_refusal(&buf, Limits::default()).unwrap(),
            (r, buf.len())
        );
        let mut buf = Vec::new();
        protocol::encode_str(&mut buf, &tok::RFSE, b"busy try\x1b[2J later");
        let (r, _) = decode_refusal(&buf, Limits::default()).unwrap();
        assert_eq!(r.message, "try?[2J later");
        let mut buf = Vec::new();
        protocol::encode_str(&mut buf, &tok::RFSE, b"Not/A/Code x");
        assert!(decode_refusal(&buf, Limits::default()).is_err());
        // A long message is cut to fit, at a character boundary.
        let long = Refusal::new("busy", "é".repeat(HELLO_MAX));
        let mut buf = Vec::new();
        encode_refusal(&mut buf, &long);
        let (back, _) = decode_refusal(&buf, Limits::default()).unwrap();
        assert!(back.message.len() < HELLO_MAX && back.message.starts_with("éé"));
    }

    #[test]
    fn an_answer_or_a_refusal() {
        let mut buf = Vec::new();
        encode_answer(&mut buf, &Hello::new().with("use", "zstd"));
        let (got, n) = decode_answer(&buf, Limits::default()).unwrap();
        assert_eq!(n, buf.len());
        assert!(got.is_ok_and(|h| h.has("use", "zstd")));
        let mut buf = Vec::new();
        encode_refusal(&mut buf, &Refusal::new(code::AUTH_REQUIRED, "no key"));
        for cut in 0..buf.len() {
            assert_eq!(
                decode_answer(buf.get(..cut).unwrap(), Limits::default()),
                Err(ProtocolError::Incomplete)
            );
        }
        let (got, _) = decode_answer(&buf, Limits::default()).unwrap();
        assert_eq!(got.unwrap_err().code, code::AUTH_REQUIRED);
        assert!(decode_answer(b"DONE00000002", Limits::default()).is_err());
    }

    /// Set `path`'s mtime `secs` seconds back; gives the time set.
    fn backdate(path: &std::path::Path, secs: u64) -> SystemTime {
        let old = SystemTime::now() - Duration::from_secs(secs);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        old
    }

    /// Every job of a build gets the same answer from a host: the memo is not rewritten
    /// for it (same inode, same mtime), while a changed answer and a `none` are written.
    #[test]
    fn an_unchanged_answer_is_not_rewritten() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let memo = Memo::new(dir.path(), Duration::from_secs(60));
        let answer = Hello::new().with("use", "zstd identity");
        memo.remember("tcp_a_1", &answer).unwrap();
        let old = backdate(&memo.path("tcp_a_1"), 3600);
        let before = std::fs::metadata(memo.path("tcp_a_1")).unwrap();
        memo.remember("tcp_a_1", &answer).unwrap();
        let after = std::fs::metadata(memo.path("tcp_a_1")).unwrap();
        assert_eq!(after.ino(), before.ino(), "rewritten");
        assert_eq!(after.modified().unwrap(), old, "rewritten");
        assert_eq!(memo.read("tcp_a_1"), Known::Ours(answer));
        let changed = Hello::new().with("use", "zstd");
        memo.remember("tcp_a_1", &changed).unwrap();
        assert_eq!(memo.read("tcp_a_1"), Known::Ours(changed));
        // A `none` is dated by its mtime: written again each time it is found true.
        memo.remember_plain("tcp_a_1").unwrap();
        let plain = std::fs::metadata(memo.path("tcp_a_1")).unwrap();
        memo.remember_plain("tcp_a_1").unwrap();
        let again = std::fs::metadata(memo.path("tcp_a_1")).unwrap();
        assert_ne!(again.ino(), plain.ino());
        assert_eq!(memo.read("tcp_a_1"), Known::Plain);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp files left");
    }

    /// `$DISTCC_DIR/ext` is not looked at before a job; the first memo makes it.
    #[test]
    fn the_first_memo_makes_a_missing_dir() {
        let t = tempfile::tempdir().unwrap();
        let memo = Memo::new(&t.path().join("dd/ext"), Duration::from_secs(60));
        assert_eq!(memo.read("tcp_a_1"), Known::Unknown);
        memo.remember_plain("tcp_a_1").unwrap();
        assert_eq!(memo.read("tcp_a_1"), Known::Plain);
    }

    #[test]
    fn memo_none_expires_answers_stay() {
        let dir = tempfile::tempdir().unwrap();
        let memo = Memo::new(dir.path(), Duration::from_secs(60));
        assert_eq!(memo.period, MEMO_MIN, "never shorter than 600 s");
        assert_eq!(memo.read("tcp_a_1"), Known::Unknown);
        memo.remember_plain("tcp_a_1").unwrap();
        assert_eq!(memo.read("tcp_a_1"), Known::Plain);
        // An old `none` is not trusted: the host may have been upgraded.
        backdate(&memo.path("tcp_a_1"), 601);
        assert_eq!(memo.read("tcp_a_1"), Known::Unknown);
        let answer = Hello::new().with("use", "zstd");
        memo.remember("tcp_a_1", &answer).unwrap();
        assert_eq!(memo.read("tcp_a_1"), Known::Ours(answer));
        std::fs::write(memo.path("tcp_b_2"), "garbage").unwrap();
        assert_eq!(memo.read("tcp_b_2"), Known::Unknown);
    }

    #[test]
    fn directives_only_is_offered_without_a_wrapper_in_front_of_gcc() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let t = tempfile::tempdir().unwrap();
        let exe = |p: &Path| {
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let (plain, masq, none) = (
            t.path().join("bin"),
            t.path().join("masq"),
            t.path().join("e"),
        );
        for d in [&plain, &masq, &none] {
            std::fs::create_dir(d).unwrap();
        }
        exe(&plain.join("gcc-12"));
        symlink("gcc-12", plain.join("gcc")).unwrap();
        exe(&plain.join("g++"));
        exe(&t.path().join("ccache"));
        symlink("../ccache", masq.join("g++")).unwrap();
        let path = |dirs: &[&Path]| std::env::join_paths(dirs).unwrap();
        assert!(compiles_directives_only(Some(&path(&[&plain]))));
        assert_eq!(
            daemon_info(Some(&path(&[&plain]))),
            [
                (info::REWRITE_INCLUDES, "yes"),
                (info::DIRECTIVES_ONLY, "yes")
            ]
        );
        let answer = answer_for(&Hello::new(), &[], &daemon_info(Some(&path(&[&plain]))));
        assert!(offers_directives_only(
            &Hello::parse(&answer.to_text()).unwrap()
        ));
        // g++ first found through ccache: not offered, though gcc itself is fine.
        assert!(!compiles_directives_only(Some(&path(&[&masq, &plain]))));
        symlink("../ccache", masq.join("gcc")).unwrap();
        assert!(!compiles_directives_only(Some(&path(&[&masq, &plain]))));
        // Every plain source is checked for clang: that is offered whatever the PATH.
        assert_eq!(
            daemon_info(Some(&path(&[&masq, &plain]))),
            [(info::REWRITE_INCLUDES, "yes")]
        );
        assert!(offers_rewrite_includes(
            &Hello::parse(&answer.to_text()).unwrap()
        ));
        // No gcc at all, or no PATH: nothing to offer.
        assert!(!compiles_directives_only(Some(&path(&[&none]))));
        assert!(!compiles_directives_only(None));
        assert!(!offers_directives_only(&Hello::new().with("use", "zstd")));
        assert!(!offers_directives_only(
            &Hello::new().with(info::DIRECTIVES_ONLY, "no")
        ));
    }

    proptest! {
        #[test]
        fn hello_round_trip(fields in proptest::collection::vec(("[a-z-]{1,12}", "[ -~]{0,30}"), 0..8)) {
            let mut h = Hello::new();
            for (k, v) in &fields {
                h = h.with(k, v.trim());
            }
            let h2 = Hello::parse(&h.to_text()).unwrap();
            // Empty values and blank lines aside, the text is the hello.
            prop_assert_eq!(h2.to_text(), h.to_text());
        }

        #[test]
        fn decoders_never_panic(junk in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_extn(&junk, Limits::default());
            let _ = decode_answer(&junk, Limits::default());
            let _ = Hello::parse(&String::from_utf8_lossy(&junk));
        }
    }
}
