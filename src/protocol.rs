//! The distcc wire protocol, versions 1, 2 and 3, as a pure codec over byte buffers
//! (distcc 3.4 `rpc.c`, `clirpc.c`, `srvrpc.c`; reference §1).
//!
//! Every packet is a 12-byte header — a 4-letter token and 8 hex digits — optionally
//! followed by a body whose length the hex value gives. The receiver always knows which token
//! comes next, so decoding is a fixed sequence; a wrong token is a "protocol derailment" and
//! the job is abandoned. No sockets here: decoders take `&[u8]` and either return a value
//! with the number of bytes consumed, or [`ProtocolError::Incomplete`] to ask for more bytes
//! (the mini-redis `frame.rs` pattern). [`crate::connection`] owns the sockets.
//!
//! Every length and count that comes off the wire is checked against [`Limits`] before it is
//! used, so a peer announcing 4 GiB gets an error, not an allocation.
//!
//! Our own client and daemon may first agree on a protocol extension (`DIST 00000004`,
//! `EXTN`, `RFSE`, …; exact bytes in [`crate::ext`]). The job inside it is still one of
//! the requests here, with its bulk bodies in zstd instead of LZO when agreed
//! ([`Codec::Zstd`]).

use thiserror::Error;

use crate::compress::{self, CompressError};

/// A 4-letter protocol token such as `DIST` or `DOTO`.
pub(crate) type Token = [u8; 4];

/// The tokens of protocols 1–3 and of the include-server socket protocol.
pub mod tok {
    use super::Token;
    pub(crate) const DIST: Token = *b"DIST";
    pub(crate) const ARGC: Token = *b"ARGC";
    pub(crate) const ARGV: Token = *b"ARGV";
    pub const DOTI: Token = *b"DOTI";
    pub(crate) const DONE: Token = *b"DONE";
    pub(crate) const STAT: Token = *b"STAT";
    pub(crate) const SERR: Token = *b"SERR";
    pub(crate) const SOUT: Token = *b"SOUT";
    pub(crate) const DOTO: Token = *b"DOTO";
    pub(crate) const DOTD: Token = *b"DOTD";
    pub(crate) const CDIR: Token = *b"CDIR";
    pub(crate) const NFIL: Token = *b"NFIL";
    pub(crate) const NAME: Token = *b"NAME";
    pub(crate) const FILE: Token = *b"FILE";
    pub(crate) const LINK: Token = *b"LINK";
    // The protocol extension between our client and daemon ([`crate::ext`]).
    /// The hello (client) and its answer (daemon): `key value` lines.
    pub(crate) const EXTN: Token = *b"EXTN";
    /// A refusal with a reason: `<code> <message>`, then the daemon closes.
    pub(crate) const RFSE: Token = *b"RFSE";
    /// One Noise handshake message or one encrypted record (the keys layer).
    #[allow(dead_code, reason = "the keys layer's token")]
    pub(crate) const NOIS: Token = *b"NOIS";
    /// The client's compiler identity, before `DIST` (the identity layer).
    pub(crate) const CIDN: Token = *b"CIDN";
    /// Include-server socket, ours: "answer with the files themselves" (before `CDIR`).
    pub(crate) const INLN: Token = *b"INLN";
}

/// Length of a packet header: 4 token bytes + 8 hex digits.
pub(crate) const HEADER_LEN: usize = 12;

/// Why bytes could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// Not an error: the buffer ends before the message does; read more and try again.
    #[error("incomplete message")]
    Incomplete,
    #[error("protocol derailment: expected token {expected:?}, got {got:?}")]
    Mismatch { expected: String, got: String },
    #[error("bad packet header {0:?}: expected 8 hex digits")]
    BadHeader(String),
    #[error("{token} length {len} exceeds the limit of {max} bytes")]
    TooLong { token: String, len: u64, max: usize },
    #[error("{token} count {count} exceeds the limit of {max}")]
    TooMany { token: String, count: u32, max: u32 },
    #[error("unsupported protocol version {0} (this distcc speaks 1, 2 and 3)")]
    BadVersion(u32),
    #[error("{token} string contains a NUL byte or is not UTF-8")]
    BadString { token: String },
    #[error("bad extension hello or refusal: {0}")]
    BadHello(String),
    #[error("got version {got} reply to a version {sent} request")]
    VersionMismatch { sent: u8, got: u32 },
    #[error(transparent)]
    Compress(#[from] CompressError),
}

/// Bounds on what a peer may make us accept. The defaults are far above any real compile
/// job and far below what would hurt a build machine.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest string packet (one argv word, a path, a link target).
    pub max_string: usize,
    /// Longest bulk body on the wire (compressed size for protocols ≥ 2).
    pub max_bulk: usize,
    /// Largest decompressed body.
    pub max_unpacked: usize,
    /// Most argv words.
    pub max_argc: u32,
    /// Most files in a pump (protocol 3) request.
    pub max_files: u32,
    /// Most bytes of one whole request on the wire (argv, names, bodies, headers).
    pub max_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_string: 1 << 20,
            max_bulk: 1 << 30,
            max_unpacked: 2 << 30,
            max_argc: 100_000,
            max_files: 1_000_000,
            max_request: 4 << 30,
        }
    }
}

/// A body that may already be compressed. Pump mode's include server stores headers
/// LZO-compressed, and those bytes go on the wire as they are; the daemon receives them
/// compressed ([`decode_request_compressed`]) and unpacks each into its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Plain(Vec<u8>),
    /// Raw LZO1X data, exactly as it travels in protocols 2 and 3.
    Lzo(Vec<u8>),
    /// A zstd frame, as bulk bodies travel when the extension agreed on `zstd`.
    Zstd(Vec<u8>),
}

impl Payload {
    /// The bytes as they are held (compressed or not).
    pub(crate) fn held_len(&self) -> usize {
        match self {
            Payload::Plain(d) | Payload::Lzo(d) | Payload::Zstd(d) => d.len(),
        }
    }
}

/// How a protocol's bulk bodies (DOTI, FILE, SERR, SOUT, DOTO, DOTD) travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Protocol 1: as they are.
    Plain,
    /// Protocols 2 and 3: raw LZO1X-1.
    Lzo,
    /// Protocols 2 and 3 inside the extension with `zstd` agreed: one zstd frame each.
    Zstd,
}

impl Codec {
    /// The codec of protocol `version`, with `zstd` when the extension agreed on it
    /// (protocol 1 stays uncompressed either way).
    pub fn of(version: u8, zstd: bool) -> Codec {
        match (uses_lzo(version), zstd) {
            (false, _) => Codec::Plain,
            (true, false) => Codec::Lzo,
            (true, true) => Codec::Zstd,
        }
    }
}

/// A file in a protocol-3 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The client-side absolute path.
    pub name: String,
    pub kind: FileKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file's contents. Decoding always gives [`Payload::Plain`].
    File(Payload),
    /// A symlink: the raw `readlink()` text.
    Link(String),
}

/// What a request carries after its argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Protocols 1 and 2: the preprocessed source (`DOTI`). Decoding gives `Plain`.
    Source(Payload),
    /// Protocol 3: sources and headers (`NFIL`, then `NAME` + `FILE`/`LINK` each).
    Files(Vec<FileEntry>),
}

/// A compile request, client to server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// 1 (plain), 2 (LZO) or 3 (LZO, preprocessing on the server).
    pub version: u8,
    /// The client's working directory; protocol 3 only.
    pub cwd: Option<String>,
    pub argv: Vec<String>,
    pub body: Body,
}

/// A compile result, server to client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub version: u8,
    /// The compiler's Unix wait status: `exit << 8 | signal`.
    pub status: u32,
    pub stderr: Vec<u8>,
    pub stdout: Vec<u8>,
    /// The object file; empty when the compile failed.
    pub object: Vec<u8>,
    /// The rewritten `.d` file: protocol 3, successful compiles only.
    pub dotd: Option<Vec<u8>>,
}

/// Whether bulk data in this protocol version is LZO-compressed.
pub(crate) fn uses_lzo(version: u8) -> bool {
    version >= 2
}

// ---------------------------------------------------------------------------------------
// Encoding

/// Append a header carrying a number (a version, a count, a status).
pub fn encode_int(buf: &mut Vec<u8>, token: &Token, value: u32) {
    buf.extend_from_slice(token);
    buf.extend_from_slice(format!("{value:08x}").as_bytes());
}

/// Append a header whose value is the body's length, then the body.
pub(crate) fn encode_str(buf: &mut Vec<u8>, token: &Token, body: &[u8]) {
    encode_int(buf, token, body.len() as u32);
    buf.extend_from_slice(body);
}

/// Append a bulk packet in `codec`, converting a body held in another one. Zero plain
/// bytes travel as a length-0 packet, never as a 3-byte LZO end marker (distcc's rule).
pub(crate) fn encode_bulk_in(
    buf: &mut Vec<u8>,
    token: &Token,
    codec: Codec,
    body: &Payload,
) -> Result<(), CompressError> {
    // Our own bodies: no limit on what they unpack to.
    const OURS: usize = usize::MAX >> 1;
    match (body, codec) {
        (Payload::Plain(data), Codec::Plain)
        | (Payload::Lzo(data), Codec::Lzo)
        | (Payload::Zstd(data), Codec::Zstd) => encode_str(buf, token, data),
        (Payload::Plain(data), Codec::Lzo) => encode_str(buf, token, &compress::compress(data)?),
        (Payload::Plain(data), Codec::Zstd) => {
            encode_str(buf, token, &compress::zstd_compress(data)?)
        }
        (Payload::Lzo(data), other) => {
            let plain = compress::decompress(data, OURS)?;
            return encode_bulk_in(buf, token, other, &Payload::Plain(plain));
        }
        (Payload::Zstd(data), other) => {
            let plain = compress::zstd_decompress(data, OURS)?;
            return encode_bulk_in(buf, token, other, &Payload::Plain(plain));
        }
    }
    Ok(())
}

/// Append the part of a request that precedes its body: DIST, CDIR (v3), ARGC, ARGV….
/// The client sends this while its preprocessor is still running.
pub fn encode_request_head(buf: &mut Vec<u8>, version: u8, cwd: Option<&str>, argv: &[String]) {
    encode_int(buf, &tok::DIST, u32::from(version));
    if version >= 3
        && let Some(cwd) = cwd
    {
        encode_str(buf, &tok::CDIR, cwd.as_bytes());
    }
    encode_argv(buf, argv);
}

/// Append `ARGC n` and `ARGV word` × n.
pub(crate) fn encode_argv(buf: &mut Vec<u8>, argv: &[String]) {
    encode_int(buf, &tok::ARGC, argv.len() as u32);
    for a in argv {
        encode_str(buf, &tok::ARGV, a.as_bytes());
    }
}

/// Append a protocol-3 file list, bodies in `codec`.
pub(crate) fn encode_files(
    buf: &mut Vec<u8>,
    files: &[FileEntry],
    codec: Codec,
) -> Result<(), CompressError> {
    encode_int(buf, &tok::NFIL, files.len() as u32);
    for f in files {
        encode_str(buf, &tok::NAME, f.name.as_bytes());
        match &f.kind {
            FileKind::File(p) => encode_bulk_in(buf, &tok::FILE, codec, p)?,
            FileKind::Link(target) => encode_str(buf, &tok::LINK, target.as_bytes()),
        }
    }
    Ok(())
}

/// Encode a whole request.
pub fn encode_request(req: &Request) -> Result<Vec<u8>, CompressError> {
    encode_request_in(req, false)
}

/// Encode a whole request, its bodies in zstd if `zstd` (the extension agreed on it).
pub fn encode_request_in(req: &Request, zstd: bool) -> Result<Vec<u8>, CompressError> {
    let mut buf = Vec::new();
    let codec = Codec::of(req.version, zstd);
    encode_request_head(&mut buf, req.version, req.cwd.as_deref(), &req.argv);
    match &req.body {
        Body::Source(p) => encode_bulk_in(&mut buf, &tok::DOTI, codec, p)?,
        Body::Files(files) => encode_files(&mut buf, files, codec)?,
    }
    Ok(buf)
}

/// Encode a whole reply. A failed compile sends `DOTO 0` and, in protocol 3, no `DOTD`.
pub fn encode_reply(reply: &Reply) -> Result<Vec<u8>, CompressError> {
    encode_reply_in(reply, false)
}

/// Encode a whole reply, its bodies in zstd if `zstd`.
pub fn encode_reply_in(reply: &Reply, zstd: bool) -> Result<Vec<u8>, CompressError> {
    let v = reply.version;
    let codec = Codec::of(v, zstd);
    let mut buf = Vec::with_capacity(reply.object.len() / 2 + 256);
    encode_int(&mut buf, &tok::DONE, u32::from(v));
    encode_int(&mut buf, &tok::STAT, reply.status);
    encode_bulk_in(
        &mut buf,
        &tok::SERR,
        codec,
        &Payload::Plain(reply.stderr.clone()),
    )?;
    encode_bulk_in(
        &mut buf,
        &tok::SOUT,
        codec,
        &Payload::Plain(reply.stdout.clone()),
    )?;
    if reply.status == 0 {
        encode_bulk_in(
            &mut buf,
            &tok::DOTO,
            codec,
            &Payload::Plain(reply.object.clone()),
        )?;
        if v >= 3 {
            let dotd = reply.dotd.clone().unwrap_or_default();
            encode_bulk_in(&mut buf, &tok::DOTD, codec, &Payload::Plain(dotd))?;
        }
    } else {
        encode_int(&mut buf, &tok::DOTO, 0);
    }
    Ok(buf)
}

// ---------------------------------------------------------------------------------------
// Decoding

/// A cursor over received bytes. Each `read_*` either consumes a whole packet or fails,
/// leaving the position where the packet started.
#[derive(Debug)]
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: Limits,
    /// Walk the framing only: bulk bodies are skipped, not decompressed. Used to learn
    /// whether a whole message has arrived before paying for decompression.
    frame_only: bool,
    /// Leave LZO bodies compressed ([`Payload::Lzo`]): the daemon decompresses each one
    /// into its job file, off the executor and under a cap, instead of holding them all.
    keep_compressed: bool,
    /// Bulk bodies of protocols ≥ 2 are zstd frames (the extension agreed on `zstd`).
    zstd: bool,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8], limits: Limits) -> Self {
        Decoder {
            buf,
            pos: 0,
            limits,
            frame_only: false,
            keep_compressed: false,
            zstd: false,
        }
    }

    /// The codec of this decoder's bulk bodies in protocol `version`.
    fn codec(&self, version: u8) -> Codec {
        Codec::of(version, self.zstd)
    }

    /// A decoder that checks framing and limits but skips decompression.
    pub(crate) fn frame_only(buf: &'a [u8], limits: Limits) -> Self {
        Decoder {
            frame_only: true,
            ..Decoder::new(buf, limits)
        }
    }

    /// A framing-only decoder that starts at `pos` (where an earlier walk stopped).
    fn frame_at(buf: &'a [u8], pos: usize, limits: Limits) -> Self {
        Decoder {
            pos,
            ..Decoder::frame_only(buf, limits)
        }
    }

    /// Check a string packet without copying it (framing only).
    fn skip_string(&mut self, token: &Token) -> Result<(), ProtocolError> {
        let start = self.pos;
        let body = self.read_body(token, self.limits.max_string)?;
        if body.contains(&0) || std::str::from_utf8(body).is_err() {
            self.pos = start;
            return Err(ProtocolError::BadString {
                token: tok_name(token),
            });
        }
        Ok(())
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Peek at the next header: its token and value.
    pub(crate) fn peek_header(&self) -> Result<(Token, u32), ProtocolError> {
        let Some(h) = self.buf.get(self.pos..self.pos + HEADER_LEN) else {
            return Err(ProtocolError::Incomplete);
        };
        let mut token = [0u8; 4];
        token.copy_from_slice(&h[..4]);
        let hex = &h[4..];
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(ProtocolError::BadHeader(printable(h)));
        }
        // All 8 bytes are hex digits, so this parse cannot fail; map it anyway.
        let value = std::str::from_utf8(hex)
            .ok()
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .ok_or_else(|| ProtocolError::BadHeader(printable(h)))?;
        Ok((token, value))
    }

    fn expect_header(&self, expected: &Token) -> Result<u32, ProtocolError> {
        // Compare the token as soon as its 4 bytes are here, so a derailed peer is caught
        // without waiting for bytes that may never come.
        let have = &self.buf[self.pos.min(self.buf.len())..];
        let n = have.len().min(4);
        if have[..n] != expected[..n] {
            return Err(ProtocolError::Mismatch {
                expected: String::from_utf8_lossy(expected).into_owned(),
                got: printable(&have[..have.len().min(40)]),
            });
        }
        let (_, value) = self.peek_header()?;
        Ok(value)
    }

    /// Read a header whose value is a number.
    pub(crate) fn read_int(&mut self, token: &Token) -> Result<u32, ProtocolError> {
        let v = self.expect_header(token)?;
        self.pos += HEADER_LEN;
        Ok(v)
    }

    /// Read a header and a body of at most `max` bytes.
    fn read_body(&mut self, token: &Token, max: usize) -> Result<&'a [u8], ProtocolError> {
        let len = self.expect_header(token)?;
        if len as usize > max {
            return Err(ProtocolError::TooLong {
                token: tok_name(token),
                len: u64::from(len),
                max,
            });
        }
        let start = self.pos + HEADER_LEN;
        let Some(body) = self.buf.get(start..start + len as usize) else {
            return Err(ProtocolError::Incomplete);
        };
        self.pos = start + len as usize;
        Ok(body)
    }

    /// Read a string packet (argv word, path, link target): no NUL, valid UTF-8.
    pub(crate) fn read_string(&mut self, token: &Token) -> Result<String, ProtocolError> {
        let start = self.pos;
        let max = self.limits.max_string;
        let body = self.read_body(token, max)?;
        if body.contains(&0) {
            self.pos = start;
            return Err(ProtocolError::BadString {
                token: tok_name(token),
            });
        }
        match std::str::from_utf8(body) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => {
                self.pos = start;
                Err(ProtocolError::BadString {
                    token: tok_name(token),
                })
            }
        }
    }

    /// Read a bulk packet, decompressing it when the protocol version says so.
    pub(crate) fn read_bulk(
        &mut self,
        token: &Token,
        version: u8,
    ) -> Result<Vec<u8>, ProtocolError> {
        let start = self.pos;
        let body = self.read_body(token, self.limits.max_bulk)?;
        if self.frame_only {
            return Ok(Vec::new());
        }
        let unpacked = match self.codec(version) {
            Codec::Plain => return Ok(body.to_vec()),
            Codec::Lzo => compress::decompress(body, self.limits.max_unpacked),
            Codec::Zstd => compress::zstd_decompress(body, self.limits.max_unpacked),
        };
        unpacked.map_err(|e| {
            self.pos = start;
            e.into()
        })
    }

    /// Read a bulk packet as a [`Payload`]: compressed bodies stay compressed when the
    /// decoder keeps them so.
    fn read_payload(&mut self, token: &Token, version: u8) -> Result<Payload, ProtocolError> {
        let codec = self.codec(version);
        if self.keep_compressed && codec != Codec::Plain && !self.frame_only {
            let body = self.read_body(token, self.limits.max_bulk)?.to_vec();
            return Ok(if codec == Codec::Zstd {
                Payload::Zstd(body)
            } else {
                Payload::Lzo(body)
            });
        }
        self.read_bulk(token, version).map(Payload::Plain)
    }

    /// Read `ARGC n` and n `ARGV` words.
    pub(crate) fn read_argv(&mut self) -> Result<Vec<String>, ProtocolError> {
        let start = self.pos;
        let result = self.read_argv_inner();
        if result.is_err() {
            self.pos = start;
        }
        result
    }

    fn read_argv_inner(&mut self) -> Result<Vec<String>, ProtocolError> {
        let argc = self.read_count(&tok::ARGC, self.limits.max_argc)?;
        let mut argv = Vec::with_capacity(argc.min(1024) as usize);
        for _ in 0..argc {
            argv.push(self.read_string(&tok::ARGV)?);
        }
        Ok(argv)
    }

    fn read_count(&mut self, token: &Token, max: u32) -> Result<u32, ProtocolError> {
        let n = self.expect_header(token)?;
        if n > max {
            return Err(ProtocolError::TooMany {
                token: tok_name(token),
                count: n,
                max,
            });
        }
        self.pos += HEADER_LEN;
        Ok(n)
    }

    fn read_version(&mut self, token: &Token) -> Result<u8, ProtocolError> {
        let v = self.expect_header(token)?;
        if !(1..=3).contains(&v) {
            return Err(ProtocolError::BadVersion(v));
        }
        self.pos += HEADER_LEN;
        Ok(v as u8)
    }

    /// Read a protocol-3 file list.
    pub(crate) fn read_files(&mut self) -> Result<Vec<FileEntry>, ProtocolError> {
        let n = self.read_count(&tok::NFIL, self.limits.max_files)?;
        let mut files = Vec::with_capacity(n.min(4096) as usize);
        for _ in 0..n {
            let name = self.read_string(&tok::NAME)?;
            let (token, _) = self.peek_header()?;
            let kind = if token == tok::LINK {
                FileKind::Link(self.read_string(&tok::LINK)?)
            } else {
                FileKind::File(self.read_payload(&tok::FILE, 3)?)
            };
            files.push(FileEntry { name, kind });
        }
        Ok(files)
    }
}

fn tok_name(t: &Token) -> String {
    String::from_utf8_lossy(t).into_owned()
}

/// Up to the given bytes as text, with unprintables escaped, for error messages.
pub(crate) fn printable(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Where a resumable walk over a request's framing stands: the next packet it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Expect {
    #[default]
    Version,
    Cwd,
    Argc,
    /// This many `ARGV` words still to come.
    Argv(u32),
    Source,
    Nfil,
    /// This many files still to come; `named` once the current file's `NAME` is read.
    Files {
        left: u32,
        named: bool,
    },
    Done,
}

/// Learns, read by read, where a whole request ends, walking each byte once: a request
/// that arrives in thousands of reads is not re-walked from its start after each of them
/// (a few large argv words made that quadratic). Limits are checked as each header
/// arrives, before its body does. Sans-IO like the rest of the codec: give it the buffer
/// after every read.
#[derive(Debug, Default)]
pub(crate) struct RequestFramer {
    /// End of the last whole packet walked.
    pos: usize,
    version: u8,
    expect: Expect,
}

impl RequestFramer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Where the next [`RequestFramer::advance`] starts walking: the end of the last whole
    /// packet.
    #[cfg(test)]
    pub(crate) fn resume_at(&self) -> usize {
        self.pos
    }

    /// `Some(len)` once `buf[..len]` holds a whole request; `None` to read more.
    pub(crate) fn advance(
        &mut self,
        buf: &[u8],
        limits: Limits,
    ) -> Result<Option<usize>, ProtocolError> {
        loop {
            if self.expect == Expect::Done {
                return Ok(Some(self.pos));
            }
            let mut d = Decoder::frame_at(buf, self.pos, limits);
            // A header that announces more than the request may hold is refused now (not
            // once the last file is in: what follows is not this request's).
            let last = matches!(self.expect, Expect::Files { left: 0, .. });
            if !last && let Ok((token, len)) = d.peek_header() {
                let end = self.pos.saturating_add(HEADER_LEN);
                let body = if [
                    tok::ARGV,
                    tok::CDIR,
                    tok::NAME,
                    tok::LINK,
                    tok::DOTI,
                    tok::FILE,
                ]
                .contains(&token)
                {
                    len as usize
                } else {
                    0
                };
                if end.saturating_add(body) > limits.max_request {
                    return Err(ProtocolError::TooLong {
                        token: "request".into(),
                        len: (end.saturating_add(body)) as u64,
                        max: limits.max_request,
                    });
                }
            }
            let step = match self.expect {
                Expect::Version => d.read_version(&tok::DIST).map(|v| {
                    self.version = v;
                    if v >= 3 { Expect::Cwd } else { Expect::Argc }
                }),
                Expect::Cwd => d.skip_string(&tok::CDIR).map(|()| Expect::Argc),
                Expect::Argc => d.read_count(&tok::ARGC, limits.max_argc).map(Expect::Argv),
                Expect::Argv(0) => Ok(if self.version >= 3 {
                    Expect::Nfil
                } else {
                    Expect::Source
                }),
                Expect::Argv(n) => d.skip_string(&tok::ARGV).map(|()| Expect::Argv(n - 1)),
                Expect::Source => d.read_bulk(&tok::DOTI, self.version).map(|_| Expect::Done),
                Expect::Nfil => d
                    .read_count(&tok::NFIL, limits.max_files)
                    .map(|left| Expect::Files { left, named: false }),
                Expect::Files { left: 0, .. } => Ok(Expect::Done),
                Expect::Files { left, named: false } => d
                    .skip_string(&tok::NAME)
                    .map(|()| Expect::Files { left, named: true }),
                Expect::Files { left, named: true } => {
                    let done = Expect::Files {
                        left: left - 1,
                        named: false,
                    };
                    match d.peek_header() {
                        Ok((t, _)) if t == tok::LINK => d.skip_string(&tok::LINK).map(|()| done),
                        Ok(_) => d.read_bulk(&tok::FILE, 3).map(|_| done),
                        Err(e) => Err(e),
                    }
                }
                Expect::Done => Ok(Expect::Done),
            };
            match step {
                Ok(next) => {
                    self.pos = d.position();
                    self.expect = next;
                }
                Err(ProtocolError::Incomplete) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Decode a whole request. Returns it with the number of bytes it took.
pub fn decode_request(buf: &[u8], limits: Limits) -> Result<(Request, usize), ProtocolError> {
    // First make sure the whole request is here, so that a request arriving in many reads
    // is decompressed once, not once per read.
    request_with(Decoder::frame_only(buf, limits))?;
    request_with(Decoder::new(buf, limits))
}

/// Decode a whole request whose framing is known to be complete, leaving LZO bodies
/// compressed ([`Payload::Lzo`]): nothing is decompressed, so a small request that would
/// unpack to gigabytes costs no more than its size here.
pub(crate) fn decode_request_compressed(
    buf: &[u8],
    limits: Limits,
    zstd: bool,
) -> Result<(Request, usize), ProtocolError> {
    request_with(Decoder {
        keep_compressed: true,
        zstd,
        ..Decoder::new(buf, limits)
    })
}

fn request_with(mut d: Decoder) -> Result<(Request, usize), ProtocolError> {
    let version = d.read_version(&tok::DIST)?;
    let cwd = if version >= 3 {
        Some(d.read_string(&tok::CDIR)?)
    } else {
        None
    };
    let argv = d.read_argv()?;
    let body = if version >= 3 {
        Body::Files(d.read_files()?)
    } else {
        Body::Source(d.read_payload(&tok::DOTI, version)?)
    };
    let req = Request {
        version,
        cwd,
        argv,
        body,
    };
    Ok((req, d.position()))
}

/// Decode a reply to a request of `version`. When the compile failed but the server still
/// announces an object (distcc logs "remote compiler failed but also returned output"),
/// the object is dropped without being read, as distcc does.
pub fn decode_reply(
    buf: &[u8],
    version: u8,
    limits: Limits,
) -> Result<(Reply, usize), ProtocolError> {
    decode_reply_in(buf, version, false, limits)
}

/// Decode a reply whose bodies are zstd frames if `zstd` (the extension agreed on it).
pub fn decode_reply_in(
    buf: &[u8],
    version: u8,
    zstd: bool,
    limits: Limits,
) -> Result<(Reply, usize), ProtocolError> {
    reply_with(Decoder::frame_only(buf, limits), version)?;
    reply_with(
        Decoder {
            zstd,
            ..Decoder::new(buf, limits)
        },
        version,
    )
}

fn reply_with(mut d: Decoder, version: u8) -> Result<(Reply, usize), ProtocolError> {
    let got = d.read_int(&tok::DONE)?;
    if got != u32::from(version) {
        return Err(ProtocolError::VersionMismatch { sent: version, got });
    }
    let status = d.read_int(&tok::STAT)?;
    let stderr = d.read_bulk(&tok::SERR, version)?;
    let stdout = d.read_bulk(&tok::SOUT, version)?;
    let mut reply = Reply {
        version,
        status,
        stderr,
        stdout,
        object: Vec::new(),
        dotd: None,
    };
    if status != 0 {
        let announced = d.read_int(&tok::DOTO)?;
        if announced != 0 && !d.frame_only {
            log::warn!("remote compiler failed but also returned output");
        }
        return Ok((reply, d.position()));
    }
    reply.object = d.read_bulk(&tok::DOTO, version)?;
    if version >= 3 {
        reply.dotd = Some(d.read_bulk(&tok::DOTD, version)?);
    }
    Ok((reply, d.position()))
}

/// The include-server socket protocol (pump mode, reference §5.2): same framing,
/// uncompressed. The client sends its cwd and argv; the server answers with the paths of
/// the files to ship (`ARGC 0` = "cannot handle this one, preprocess locally").
///
/// Ours adds one form, asked for with `INLN 1` before `CDIR`: the answer is then the
/// request's own file list (`NFIL`, then `NAME` + `FILE`/`LINK` each, bodies LZO as the
/// daemon takes them; `NFIL 0` = "preprocess locally") after an `INLN` header that gives
/// its length. The client then sends what it got
/// instead of opening a hundred mirror files per job: those opens were the largest part of
/// a pump job's client CPU. Only our `pump` says (`INCLUDE_SERVER_INLINE`) that its server
/// understands it; 3.4's include server is asked the 3.4 way.
pub(crate) mod include {
    use super::*;

    /// What the client asks the include server.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct IncludeRequest {
        pub cwd: String,
        pub argv: Vec<String>,
        /// Answer with the files' contents ([`encode_inline_reply`]), not their paths.
        pub inline: bool,
    }

    pub(crate) fn encode_request(req: &IncludeRequest) -> Vec<u8> {
        let mut buf = Vec::new();
        if req.inline {
            encode_int(&mut buf, &tok::INLN, 1);
        }
        encode_str(&mut buf, &tok::CDIR, req.cwd.as_bytes());
        encode_argv(&mut buf, &req.argv);
        buf
    }

    pub(crate) fn decode_request(
        buf: &[u8],
        limits: Limits,
    ) -> Result<(IncludeRequest, usize), ProtocolError> {
        let mut d = Decoder::new(buf, limits);
        let inline = d.peek_header()?.0 == tok::INLN;
        if inline && d.read_int(&tok::INLN)? != 1 {
            return Err(ProtocolError::Mismatch {
                expected: "INLN 1".into(),
                got: "another INLN value".into(),
            });
        }
        let cwd = d.read_string(&tok::CDIR)?;
        let argv = d.read_argv()?;
        Ok((IncludeRequest { cwd, argv, inline }, d.position()))
    }

    pub(crate) fn encode_reply(paths: &[String]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_argv(&mut buf, paths);
        buf
    }

    pub(crate) fn decode_reply(
        buf: &[u8],
        limits: Limits,
    ) -> Result<(Vec<String>, usize), ProtocolError> {
        let mut d = Decoder::new(buf, limits);
        let paths = d.read_argv()?;
        Ok((paths, d.position()))
    }

    /// One entry of an `INLN` answer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum InlineEntry<'a> {
        /// A file (or a directory's empty placeholder) and its LZO bytes.
        File {
            name: &'a str,
            lzo: &'a [u8],
        },
        Link {
            name: &'a str,
            target: &'a str,
        },
    }

    /// The answer to an `INLN` request: `INLN <length>`, then the files as a protocol-3
    /// request carries them (`NFIL`, `NAME` + `FILE`/`LINK` each), which the client sends
    /// on as they are. The length lets it read them into one buffer of the right size.
    /// (The include server writes [`inline_reply_parts`] instead.)
    #[cfg(test)]
    pub(crate) fn encode_inline_reply(entries: &[InlineEntry<'_>]) -> Vec<u8> {
        let parts = inline_reply_parts(entries);
        parts.slices().concat()
    }

    /// An `INLN` answer as pieces to write in turn ([`InlineParts::slices`]): the framing
    /// in one small buffer, the files' bytes where they lie. The include server writes a
    /// job's few hundred kilobytes of headers without copying them into an answer first.
    pub(crate) fn inline_reply_parts<'a>(entries: &[InlineEntry<'a>]) -> InlineParts<'a> {
        let size: usize = entries
            .iter()
            .map(|e| match e {
                InlineEntry::File { name, lzo } => 2 * HEADER_LEN + name.len() + lzo.len(),
                InlineEntry::Link { name, target } => 2 * HEADER_LEN + name.len() + target.len(),
            })
            .sum::<usize>()
            + HEADER_LEN;
        let mut head = Vec::with_capacity(HEADER_LEN + 64 * entries.len());
        let mut pieces = Vec::with_capacity(2 * entries.len() + 1);
        encode_int(
            &mut head,
            &tok::INLN,
            u32::try_from(size).unwrap_or(u32::MAX),
        );
        encode_int(&mut head, &tok::NFIL, entries.len() as u32);
        let mut from = 0;
        for e in entries {
            match e {
                InlineEntry::File { name, lzo } => {
                    encode_str(&mut head, &tok::NAME, name.as_bytes());
                    encode_int(&mut head, &tok::FILE, lzo.len() as u32);
                    pieces.push(Piece::Head(from..head.len()));
                    pieces.push(Piece::Body(lzo));
                    from = head.len();
                }
                InlineEntry::Link { name, target } => {
                    encode_str(&mut head, &tok::NAME, name.as_bytes());
                    encode_str(&mut head, &tok::LINK, target.as_bytes());
                }
            }
        }
        pieces.push(Piece::Head(from..head.len()));
        InlineParts { head, pieces }
    }

    /// See [`inline_reply_parts`].
    #[derive(Debug)]
    pub(crate) struct InlineParts<'a> {
        head: Vec<u8>,
        pieces: Vec<Piece<'a>>,
    }

    #[derive(Debug)]
    enum Piece<'a> {
        Head(std::ops::Range<usize>),
        Body(&'a [u8]),
    }

    impl InlineParts<'_> {
        /// The answer's bytes, in order, for `write_vectored`.
        pub(crate) fn slices(&self) -> Vec<&[u8]> {
            self.pieces
                .iter()
                .map(|p| match p {
                    Piece::Head(r) => self.head.get(r.clone()).unwrap_or_default(),
                    Piece::Body(b) => *b,
                })
                .filter(|s| !s.is_empty())
                .collect()
        }
    }

    /// The length an `INLN` answer's header announces.
    pub(crate) fn decode_inline_header(
        header: &[u8],
        limits: Limits,
    ) -> Result<usize, ProtocolError> {
        let n = Decoder::new(header, limits).read_int(&tok::INLN)? as usize;
        if n > limits.max_request {
            return Err(ProtocolError::TooLong {
                token: "INLN".into(),
                len: n as u64,
                max: limits.max_request,
            });
        }
        Ok(n)
    }

    /// Decode a protocol-3 file list (an `INLN` answer's section), bodies left compressed.
    pub(crate) fn decode_files(
        section: &[u8],
        limits: Limits,
    ) -> Result<Vec<FileEntry>, ProtocolError> {
        Decoder {
            keep_compressed: true,
            ..Decoder::new(section, limits)
        }
        .read_files()
    }

    /// Check that `section` (what followed an `INLN` header) is exactly one protocol-3
    /// file list, without copying it; gives its number of files.
    pub(crate) fn check_inline_files(
        section: &[u8],
        limits: Limits,
    ) -> Result<usize, ProtocolError> {
        let mut d = Decoder::frame_only(section, limits);
        let n = d.read_files()?.len();
        if d.position() != section.len() {
            return Err(ProtocolError::Mismatch {
                expected: "the end of the file list".into(),
                got: format!("{} more bytes", section.len() - d.position()),
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/wire-distcc-3.4/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn header_is_lowercase_hex() {
        let mut buf = Vec::new();
        encode_int(&mut buf, &tok::STAT, 0x6e00);
        assert_eq!(buf, b"STAT00006e00");
        let mut d = Decoder::new(b"STAT00006E00", Limits::default());
        assert_eq!(d.read_int(&tok::STAT), Ok(0x6e00), "upper case is accepted");
    }

    #[test]
    fn lsdistcc_probe_golden_bytes() {
        // lsdistcc's fixed protocol-1 probe (reference §1.3).
        let src = b"int foo(){return 0;}";
        let req = Request {
            version: 1,
            cwd: None,
            argv: s(&["cc", "-c", "hello.c", "-o", "hello.o"]),
            body: Body::Source(Payload::Plain(src.to_vec())),
        };
        let bytes = encode_request(&req).unwrap();
        let mut expect = b"DIST00000001ARGC00000005ARGV00000002ccARGV00000002-cARGV00000007hello.c\
ARGV00000002-oARGV00000007hello.oDOTI00000014"
            .to_vec();
        expect.extend_from_slice(src);
        assert_eq!(bytes, expect);
        assert_eq!(
            decode_request(&bytes, Limits::default()),
            Ok((req, bytes.len()))
        );
    }

    #[test]
    fn fixtures_decode_and_reencode() {
        for name in [
            "p1-hello",
            "p1-broken",
            "p2-hello",
            "p2-warn-cxx",
            "p3-hello",
        ] {
            let req_bytes = fixture(&format!("{name}.req"));
            let (req, used) = decode_request(&req_bytes, Limits::default()).unwrap();
            assert_eq!(used, req_bytes.len(), "{name}: whole request consumed");
            assert!(req.argv[0].contains("x86_64-linux-gnu-g"));
            let resp_bytes = fixture(&format!("{name}.resp"));
            let (reply, used) = decode_reply(&resp_bytes, req.version, Limits::default()).unwrap();
            assert_eq!(used, resp_bytes.len(), "{name}: whole reply consumed");
            // Our encoder is byte-identical for uncompressed traffic (protocol 1); with LZO a
            // different (equally valid) encoder may be used, so compare decoded content.
            let again = encode_reply(&reply).unwrap();
            if req.version == 1 {
                assert_eq!(again, resp_bytes, "{name}");
                assert_eq!(encode_request(&req).unwrap(), req_bytes, "{name}");
            }
            assert_eq!(
                decode_reply(&again, req.version, Limits::default())
                    .unwrap()
                    .0,
                reply
            );
        }
    }

    #[test]
    fn fixture_objects_match() {
        for (name, obj) in [
            ("p1-hello", "p1-hello.o"),
            ("p2-hello", "p2-hello.o"),
            ("p3-hello", "p3-hello.o"),
        ] {
            let v = decode_request(&fixture(&format!("{name}.req")), Limits::default())
                .unwrap()
                .0
                .version;
            let (reply, _) =
                decode_reply(&fixture(&format!("{name}.resp")), v, Limits::default()).unwrap();
            assert_eq!(reply.status, 0);
            assert_eq!(reply.object, fixture(obj), "{name}");
        }
        let (reply, _) = decode_reply(&fixture("p3-hello.resp"), 3, Limits::default()).unwrap();
        assert_eq!(reply.dotd, Some(fixture("p3-hello.d")));
    }

    #[test]
    fn p1_broken_is_exit_1_with_stderr() {
        let (reply, _) = decode_reply(&fixture("p1-broken.resp"), 1, Limits::default()).unwrap();
        assert_eq!(reply.status, 0x100);
        assert_eq!(reply.stderr.len(), 224);
        assert!(reply.object.is_empty());
    }

    #[test]
    fn p3_request_shape() {
        let (req, _) = decode_request(&fixture("p3-hello.req"), Limits::default()).unwrap();
        assert_eq!(req.cwd.as_deref(), Some("/build/hello"));
        let Body::Files(files) = req.body else {
            panic!("not a pump request")
        };
        assert_eq!(files.len(), 6);
        assert_eq!(files[0].name, "/build/hello/hello.c");
        let FileKind::File(Payload::Plain(src)) = &files[0].kind else {
            panic!()
        };
        assert!(src.starts_with(b"#include <stdio.h>"));
        assert!(
            matches!(&files[2].kind, FileKind::Link(t) if t.ends_with("/usr/lib/gcc/x86_64-linux-gnu/12/include"))
        );
        let last = files.last().unwrap();
        assert_eq!(last.name, "/build/hello/forcing_technique_271828");
        assert_eq!(last.kind, FileKind::File(Payload::Plain(Vec::new())));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let bytes = fixture("p2-warn-cxx.req");
        for cut in (0..bytes.len()).step_by(97) {
            assert_eq!(
                decode_request(&bytes[..cut], Limits::default()).unwrap_err(),
                ProtocolError::Incomplete,
                "cut at {cut}"
            );
        }
        let resp = fixture("p3-hello.resp");
        for cut in 0..resp.len() {
            assert_eq!(
                decode_reply(&resp[..cut], 3, Limits::default()).unwrap_err(),
                ProtocolError::Incomplete
            );
        }
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocation() {
        let mut buf = Vec::new();
        encode_int(&mut buf, &tok::DIST, 1);
        encode_int(&mut buf, &tok::ARGC, 1);
        encode_int(&mut buf, &tok::ARGV, 0xffff_ffff);
        assert!(matches!(
            decode_request(&buf, Limits::default()),
            Err(ProtocolError::TooLong { .. })
        ));
        let mut buf = Vec::new();
        encode_int(&mut buf, &tok::DIST, 1);
        encode_int(&mut buf, &tok::ARGC, 0xffff_ffff);
        assert!(matches!(
            decode_request(&buf, Limits::default()),
            Err(ProtocolError::TooMany { .. })
        ));
        let mut buf = Vec::new();
        encode_int(&mut buf, &tok::DIST, 2);
        encode_argv(&mut buf, &s(&["gcc"]));
        encode_int(&mut buf, &tok::DOTI, 0xffff_fff0);
        assert!(matches!(
            decode_request(&buf, Limits::default()),
            Err(ProtocolError::TooLong { .. })
        ));
    }

    #[test]
    fn the_framer_stops_at_the_end_of_the_request() {
        // Found by `make fuzz`: a pump request followed by the next one's header that
        // announces a huge body was refused as too long, though it is not this request's.
        let mut bytes = fixture("p3-hello.req");
        let len = bytes.len();
        encode_int(&mut bytes, &tok::FILE, 0xe000_0093);
        let limits = Limits {
            max_request: 1 << 24,
            ..Limits::default()
        };
        assert_eq!(RequestFramer::new().advance(&bytes, limits), Ok(Some(len)));
        // The request's own oversized header is still refused.
        let mut big = Vec::new();
        encode_int(&mut big, &tok::DIST, 1);
        encode_int(&mut big, &tok::ARGC, 1);
        encode_int(&mut big, &tok::ARGV, 0xe000_0093);
        assert!(matches!(
            RequestFramer::new().advance(&big, limits),
            Err(ProtocolError::TooLong { .. })
        ));
    }

    #[test]
    fn garbage_is_rejected() {
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.0\r\n\r\n",
            b"DIST0000000g",
            b"DIST00000004",
            b"DIST00000000",
            b"DIST00000001ARGV00000002",
            b"DIST00000001ARGC00000001ARGV00000002a\0",
            b"D\xffST",
        ];
        for c in cases {
            let e = decode_request(c, Limits::default()).unwrap_err();
            assert_ne!(e, ProtocolError::Incomplete, "{:?}", printable(c));
        }
    }

    #[test]
    fn failed_reply_has_no_object_and_no_dotd() {
        let reply = Reply {
            version: 3,
            status: 0x100,
            stderr: b"error: x".to_vec(),
            object: Vec::new(),
            ..Reply::default()
        };
        let bytes = encode_reply(&reply).unwrap();
        assert!(bytes.ends_with(b"DOTO00000000"));
        assert_eq!(
            decode_reply(&bytes, 3, Limits::default()).unwrap(),
            (reply, bytes.len())
        );
    }

    #[test]
    fn reply_version_is_checked() {
        let bytes = encode_reply(&Reply {
            version: 2,
            ..Reply::default()
        })
        .unwrap();
        assert_eq!(
            decode_reply(&bytes, 1, Limits::default()).unwrap_err(),
            ProtocolError::VersionMismatch { sent: 1, got: 2 }
        );
    }

    #[test]
    fn precompressed_payload_passes_through() {
        let lzo = compress::compress(b"#define X 1\n").unwrap();
        let req = Request {
            version: 3,
            cwd: Some("/w".into()),
            argv: s(&["gcc", "-c", "a.c"]),
            body: Body::Files(vec![
                FileEntry {
                    name: "/w/a.h".into(),
                    kind: FileKind::File(Payload::Lzo(lzo.clone())),
                },
                FileEntry {
                    name: "/w/l.h".into(),
                    kind: FileKind::Link("/w/a.h".into()),
                },
            ]),
        };
        let bytes = encode_request(&req).unwrap();
        assert!(bytes.windows(lzo.len()).any(|w| w == lzo));
        let (back, _) = decode_request(&bytes, Limits::default()).unwrap();
        let Body::Files(files) = back.body else {
            panic!()
        };
        assert_eq!(
            files[0].kind,
            FileKind::File(Payload::Plain(b"#define X 1\n".to_vec()))
        );
        assert_eq!(files[1].kind, FileKind::Link("/w/a.h".into()));
    }

    #[test]
    fn zstd_bodies_replace_lzo_ones_and_protocol_1_stays_plain() {
        let src = b"int x;\n".repeat(1000);
        let lzo = compress::compress(b"#define X 1\n").unwrap();
        let req = Request {
            version: 3,
            cwd: Some("/w".into()),
            argv: s(&["gcc", "-c", "a.c"]),
            body: Body::Files(vec![
                FileEntry {
                    name: "/w/a.c".into(),
                    kind: FileKind::File(Payload::Plain(src.clone())),
                },
                FileEntry {
                    name: "/w/a.h".into(),
                    kind: FileKind::File(Payload::Lzo(lzo)),
                },
            ]),
        };
        let bytes = encode_request_in(&req, true).unwrap();
        // Every FILE body is a zstd frame, the include server's LZO one re-packed too.
        let frames = bytes
            .windows(16)
            .filter(|w| w.starts_with(b"FILE") && w.ends_with(&[0x28, 0xb5, 0x2f, 0xfd]))
            .count();
        assert_eq!(frames, 2);
        let (back, used) = decode_request_compressed(&bytes, Limits::default(), true).unwrap();
        assert_eq!(used, bytes.len());
        let Body::Files(files) = back.body else {
            panic!()
        };
        assert!(matches!(&files[0].kind, FileKind::File(Payload::Zstd(_))));
        // Read as LZO, a zstd frame is garbage: the codec must be agreed by both.
        assert!(decode_request(&bytes, Limits::default()).is_err());

        let reply = Reply {
            version: 2,
            object: src.clone(),
            stderr: b"warning: x".to_vec(),
            ..Reply::default()
        };
        let bytes = encode_reply_in(&reply, true).unwrap();
        assert_eq!(
            decode_reply_in(&bytes, 2, true, Limits::default()).unwrap(),
            (reply, bytes.len())
        );
        // Protocol 1 inside the extension: as it is, byte for byte.
        let p1 = Reply {
            version: 1,
            object: src,
            ..Reply::default()
        };
        assert_eq!(
            encode_reply_in(&p1, true).unwrap(),
            encode_reply(&p1).unwrap()
        );
    }

    #[test]
    fn include_server_round_trip() {
        let mut req = include::IncludeRequest {
            cwd: "/home/u".into(),
            argv: s(&["gcc", "-c", "x.c"]),
            inline: false,
        };
        let bytes = include::encode_request(&req);
        assert!(bytes.starts_with(b"CDIR00000007/home/uARGC00000003"));
        assert_eq!(
            include::decode_request(&bytes, Limits::default()),
            Ok((req.clone(), bytes.len()))
        );
        req.inline = true;
        let bytes = include::encode_request(&req);
        assert!(bytes.starts_with(b"INLN00000001CDIR00000007/home/u"));
        for cut in 0..bytes.len() {
            assert_eq!(
                include::decode_request(&bytes[..cut], Limits::default()),
                Err(ProtocolError::Incomplete),
                "{cut}"
            );
        }
        assert_eq!(
            include::decode_request(&bytes, Limits::default()),
            Ok((req, bytes.len()))
        );
        let files = vec![
            FileEntry {
                name: "/w/a.h".into(),
                kind: FileKind::File(Payload::Lzo(compress::compress(b"int a;\n").unwrap())),
            },
            FileEntry {
                name: "/w/l".into(),
                kind: FileKind::Link("a.h".into()),
            },
        ];
        let lzo = compress::compress(b"int a;\n").unwrap();
        let entries = [
            include::InlineEntry::File {
                name: "/w/a.h",
                lzo: &lzo,
            },
            include::InlineEntry::Link {
                name: "/w/l",
                target: "a.h",
            },
        ];
        let inline = include::encode_inline_reply(&entries);
        assert!(inline.starts_with(b"INLN"));
        let (header, section) = inline.split_at(HEADER_LEN);
        assert_eq!(
            include::decode_inline_header(header, Limits::default()),
            Ok(section.len())
        );
        assert!(section.starts_with(b"NFIL00000002NAME00000006/w/a.hFILE"));
        assert_eq!(
            include::check_inline_files(section, Limits::default()),
            Ok(2)
        );
        for cut in 0..section.len() {
            assert!(include::check_inline_files(&section[..cut], Limits::default()).is_err());
        }
        let mut longer = section.to_vec();
        longer.push(b'x');
        assert!(include::check_inline_files(&longer, Limits::default()).is_err());
        // The section is what a protocol-3 request carries: it decodes as one.
        assert_eq!(include::decode_files(section, Limits::default()), Ok(files));
        let reply = include::encode_reply(&[]);
        assert_eq!(reply, b"ARGC00000000");
        assert_eq!(
            include::decode_reply(&reply, Limits::default()),
            Ok((vec![], 12))
        );
    }

    fn arb_word() -> impl Strategy<Value = String> {
        "[ -~]{0,40}"
    }

    proptest! {
        #[test]
        fn request_round_trip(
            version in 1u8..=3,
            argv in proptest::collection::vec(arb_word(), 0..8),
            src in proptest::collection::vec(any::<u8>(), 0..3000),
            names in proptest::collection::vec(arb_word(), 0..4),
        ) {
            let body = if version == 3 {
                Body::Files(names.iter().enumerate().map(|(i, n)| FileEntry {
                    name: n.clone(),
                    kind: if i % 2 == 0 { FileKind::File(Payload::Plain(src.clone())) } else { FileKind::Link(n.clone()) },
                }).collect())
            } else {
                Body::Source(Payload::Plain(src.clone()))
            };
            let req = Request { version, cwd: (version == 3).then(|| "/tmp/w".to_string()), argv, body };
            let bytes = encode_request(&req).unwrap();
            prop_assert_eq!(decode_request(&bytes, Limits::default()).unwrap(), (req, bytes.len()));
        }

        #[test]
        fn reply_round_trip(
            version in 1u8..=3,
            status in prop_oneof![Just(0u32), 1u32..0xffff],
            stderr in proptest::collection::vec(any::<u8>(), 0..500),
            object in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let ok = status == 0;
            let reply = Reply {
                version, status, stderr, stdout: Vec::new(),
                object: if ok { object.clone() } else { Vec::new() },
                dotd: (ok && version == 3).then(|| object.clone()),
            };
            let bytes = encode_reply(&reply).unwrap();
            prop_assert_eq!(decode_reply(&bytes, version, Limits::default()).unwrap(), (reply, bytes.len()));
        }

        #[test]
        fn decoder_never_panics(junk in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_request(&junk, Limits::default());
            let _ = decode_reply(&junk, 2, Limits::default());
            let mut prefixed = b"DIST00000002ARGC00000001".to_vec();
            prefixed.extend_from_slice(&junk);
            let _ = decode_request(&prefixed, Limits::default());
        }
    }
}
