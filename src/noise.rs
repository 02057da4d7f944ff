//! The encrypted, mutually authenticated transport between our peers (issue 17): a Noise
//! session, sans-IO at its core, with a blocking adapter for the client and an async one
//! for the daemon.
//!
//! **Why Noise (`snow`), not TLS (`rustls`).** Our peers authenticate each other with raw
//! long-term keys pinned like SSH's ([`crate::keys`]): there is no certificate authority,
//! no host names to validate, no certificate parsing. Noise is exactly that — a handshake
//! over static DH keys with a few hundred lines of state machine — and `snow` is a small
//! pure-Rust implementation with its own default crypto (no C, no build-time assembler),
//! where rustls would bring X.509, a crypto provider and self-signed certificate plumbing
//! to say the same thing.
//!
//! **Why pattern XX.** `Noise_XX_25519_ChaChaPoly_BLAKE2s`: both statics travel encrypted,
//! the server's first (message 2), the client's last (message 3). One pattern serves both
//! pairing, where the client does not yet know the server's key, and every job after it,
//! where it does: the client compares the key it is shown with its pin *before* it reveals
//! its own key or sends a byte of source, so a changed key is reported with both
//! fingerprints (IK or XK, which build the pinned key into the first message, would just
//! fail to decrypt and could not say what changed). XX costs one round trip, like the
//! others. ChaCha20-Poly1305 is fast without AES instructions; BLAKE2s is snow's usual
//! partner for it.
//!
//! **Where it runs.** The core is sans-IO ([`Handshake`], [`Transport`]); the transport
//! plugs into the protocol extension's record hook ([`crate::ext::Transform`]), through
//! which the client's blocking [`crate::client::wire::Wire`] and the daemon's async
//! [`crate::connection::Connection`] already seal and open every byte, at the points
//! [`client_secure`] and [`serve_secure`]. Pairing (`distcc-config --pair`) drives the
//! same core over a plain blocking socket ([`pair`]).
//!
//! **Wire.** Each handshake message is one `NOIS <len><msg>` packet; after the handshake
//! every byte in both directions travels in `NOIS <len><ciphertext>` packets of at most
//! 65535 bytes of ciphertext (the Noise maximum), i.e. 65519 bytes of plaintext each.
//! The handshake's prologue binds it to the extension hello and answer that preceded it,
//! so a man in the middle cannot strip an offer without the handshake failing.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use smol::io::{AsyncRead, AsyncWrite};

use crate::keys::{KeyPair, PublicKey};

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// The packet token.
pub(crate) const NOIS: [u8; 4] = *b"NOIS";
/// Header: token + 8 hex digits.
const HEADER_LEN: usize = 12;
/// Largest ciphertext in one packet (Noise's message limit).
pub(crate) const MAX_FRAME: usize = 65535;
/// AEAD tag.
const TAG_LEN: usize = 16;
/// Largest plaintext in one packet.
pub(crate) const MAX_PLAIN: usize = MAX_FRAME - TAG_LEN;

/// Why a secure session failed.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    #[error("bad NOIS packet header {0:?}")]
    BadHeader(String),
    #[error("expected a NOIS packet, got {0:?}")]
    NotNoise(String),
    #[error("NOIS packet of {0} bytes is over the limit of {MAX_FRAME}")]
    TooLong(u32),
    #[error("Noise handshake failed: {0}")]
    Handshake(snow::Error),
    #[error("an encrypted packet failed to authenticate (altered, or not from the peer)")]
    Decrypt,
    #[error("the peer sent no static key")]
    NoStatic,
    #[error("the peer closed the connection during the Noise handshake")]
    Closed,
    #[error("timed out after {0:?} during the Noise handshake")]
    Timeout(Duration),
    #[error("I/O error during the Noise handshake: {0}")]
    Io(#[from] io::Error),
    /// The peer's key is not the one we may talk to (a changed pin, an unknown client).
    #[error("{0}")]
    Refused(String),
}

/// `Noise_XX_25519_ChaChaPoly_BLAKE2s`, parsed.
pub(crate) fn params() -> Result<snow::params::NoiseParams, snow::Error> {
    NOISE_PARAMS.parse()
}

/// Append one `NOIS` packet carrying `body` (at most [`MAX_FRAME`] bytes).
pub(crate) fn encode_frame(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&NOIS);
    out.extend_from_slice(format!("{:08x}", body.len()).as_bytes());
    out.extend_from_slice(body);
}

fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(16)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// The `NOIS` packet at the start of `buf`: `Ok(None)` until it is whole, then its body's
/// range and the bytes it takes.
pub(crate) fn parse_frame(
    buf: &[u8],
) -> Result<Option<(std::ops::Range<usize>, usize)>, NoiseError> {
    let have = buf.len().min(4);
    if buf.get(..have) != NOIS.get(..have) {
        return Err(NoiseError::NotNoise(printable(buf)));
    }
    let Some(hex) = buf.get(4..HEADER_LEN) else {
        return Ok(None);
    };
    let len = std::str::from_utf8(hex)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or_else(|| NoiseError::BadHeader(printable(buf.get(..HEADER_LEN).unwrap_or(buf))))?;
    if len as usize > MAX_FRAME {
        return Err(NoiseError::TooLong(len));
    }
    let end = HEADER_LEN + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((HEADER_LEN..end, end)))
}

/// A handshake in progress (sans-IO: bytes in, bytes out).
pub(crate) struct Handshake {
    state: snow::HandshakeState,
}

impl Handshake {
    fn build(keys: &KeyPair, prologue: &[u8], initiator: bool) -> Result<Handshake, NoiseError> {
        let params = params().map_err(NoiseError::Handshake)?;
        let builder = snow::Builder::new(params)
            .local_private_key(&keys.private)
            .and_then(|b| b.prologue(prologue))
            .map_err(NoiseError::Handshake)?;
        let state = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(NoiseError::Handshake)?;
        Ok(Handshake { state })
    }

    /// The client's side.
    pub(crate) fn initiator(keys: &KeyPair, prologue: &[u8]) -> Result<Handshake, NoiseError> {
        Handshake::build(keys, prologue, true)
    }

    /// The daemon's side.
    pub(crate) fn responder(keys: &KeyPair, prologue: &[u8]) -> Result<Handshake, NoiseError> {
        Handshake::build(keys, prologue, false)
    }

    /// Append our next handshake message, as a `NOIS` packet, to `out`.
    pub(crate) fn write(&mut self, out: &mut Vec<u8>) -> Result<(), NoiseError> {
        let mut msg = vec![0u8; MAX_FRAME];
        let n = self
            .state
            .write_message(&[], &mut msg)
            .map_err(NoiseError::Handshake)?;
        encode_frame(out, msg.get(..n).unwrap_or_default());
        Ok(())
    }

    /// Take the peer's next handshake message (a `NOIS` packet's body).
    pub(crate) fn read(&mut self, body: &[u8]) -> Result<(), NoiseError> {
        let mut payload = vec![0u8; MAX_FRAME];
        self.state
            .read_message(body, &mut payload)
            .map_err(NoiseError::Handshake)?;
        Ok(())
    }

    /// The peer's long-term key, once its message carrying it was read.
    pub(crate) fn remote_static(&self) -> Option<PublicKey> {
        self.state
            .get_remote_static()
            .and_then(PublicKey::from_slice)
    }

    #[cfg(test)]
    pub(crate) fn is_finished(&self) -> bool {
        self.state.is_handshake_finished()
    }

    /// Switch to transport mode once the handshake is finished.
    pub(crate) fn into_transport(self) -> Result<Transport, NoiseError> {
        let remote = self.remote_static().ok_or(NoiseError::NoStatic)?;
        let hash = self.state.get_handshake_hash().to_vec();
        let state = self
            .state
            .into_transport_mode()
            .map_err(NoiseError::Handshake)?;
        Ok(Transport {
            state,
            remote,
            hash,
        })
    }
}

/// An established session: seal plaintext into packets, open packets into plaintext.
pub(crate) struct Transport {
    state: snow::TransportState,
    remote: PublicKey,
    hash: Vec<u8>,
}

impl Transport {
    /// The peer's authenticated long-term key.
    pub(crate) fn remote(&self) -> PublicKey {
        self.remote
    }

    /// The handshake hash: unique to this session (pairing proofs are bound to it).
    pub(crate) fn handshake_hash(&self) -> &[u8] {
        &self.hash
    }

    /// Encrypt `plain` into as many packets as it needs, appended to `out`.
    pub(crate) fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), NoiseError> {
        for chunk in plain.chunks(MAX_PLAIN) {
            let start = out.len();
            out.extend_from_slice(&NOIS);
            out.extend_from_slice(b"00000000");
            let body = out.len();
            out.resize(body + chunk.len() + TAG_LEN, 0);
            let n = self
                .state
                .write_message(chunk, out.get_mut(body..).unwrap_or_default())
                .map_err(NoiseError::Handshake)?;
            out.truncate(body + n);
            let hex = format!("{n:08x}");
            if let Some(h) = out.get_mut(start + 4..start + HEADER_LEN) {
                h.copy_from_slice(hex.as_bytes());
            }
        }
        Ok(())
    }

    /// Decrypt the whole packets at the start of `buf` into `out`; returns the bytes used
    /// (a trailing partial packet is left for later).
    pub(crate) fn open(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<usize, NoiseError> {
        let mut used = 0;
        while let Some((body, len)) = parse_frame(buf.get(used..).unwrap_or_default())? {
            let cipher = buf
                .get(used + body.start..used + body.end)
                .unwrap_or_default();
            let start = out.len();
            out.resize(start + cipher.len(), 0);
            let n = self
                .state
                .read_message(cipher, out.get_mut(start..).unwrap_or_default())
                .map_err(|_| NoiseError::Decrypt)?;
            out.truncate(start + n);
            used += len;
        }
        Ok(used)
    }
}

// ---------------------------------------------------------------------------------------
// The client: blocking

/// Read one whole `NOIS` packet from `io` (blocking, bounded by `deadline`), keeping any
/// bytes after it in `buf`. Returns the body.
fn read_frame_blocking<S: Read>(
    io: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<u8>, NoiseError> {
    loop {
        if let Some((body, used)) = parse_frame(buf)? {
            let out = buf.get(body).unwrap_or_default().to_vec();
            buf.drain(..used);
            return Ok(out);
        }
        if Instant::now() >= deadline {
            return Err(NoiseError::Timeout(timeout));
        }
        let mut chunk = [0u8; 4096];
        match io.read(&mut chunk) {
            Ok(0) => return Err(NoiseError::Closed),
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                return Err(NoiseError::Timeout(timeout));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Run the client's half of the handshake over a blocking `io` (one that times out its
/// own reads, e.g. [`crate::client::wire::ByDeadline`]). `check` sees the server's key
/// before we reveal ours or send anything else: it decides (pin, fingerprint prompt).
pub(crate) fn client_handshake<S: Read + Write>(
    io: &mut S,
    keys: &KeyPair,
    prologue: &[u8],
    timeout: Duration,
    check: impl FnOnce(&PublicKey) -> Result<(), NoiseError>,
) -> Result<Transport, NoiseError> {
    let deadline = Instant::now() + timeout;
    let mut hs = Handshake::initiator(keys, prologue)?;
    let mut out = Vec::new();
    hs.write(&mut out)?;
    io.write_all(&out)?;
    io.flush()?;
    let mut buf = Vec::new();
    let msg2 = read_frame_blocking(io, &mut buf, deadline, timeout)?;
    hs.read(&msg2)?;
    let server = hs.remote_static().ok_or(NoiseError::NoStatic)?;
    check(&server)?;
    out.clear();
    hs.write(&mut out)?;
    io.write_all(&out)?;
    io.flush()?;
    hs.into_transport()
}

// ---------------------------------------------------------------------------------------
// What both sides bind the handshake to, and the packets inside the channel

/// The Noise prologue: what the extension hello asked for and what the answer agreed,
/// canonically (sorted words), so that both sides compute it from what they parsed. A
/// man in the middle who edits the hello or the answer makes the handshake fail.
pub(crate) fn prologue(wants: &[&str], used: &[&str]) -> Vec<u8> {
    let sorted = |words: &[&str]| {
        let mut w: Vec<&str> = words.to_vec();
        w.sort_unstable();
        w.dedup();
        w.join(" ")
    };
    format!(
        "distcc-rs noise 1\nwant {}\nuse {}\n",
        sorted(wants),
        sorted(used)
    )
    .into_bytes()
}

/// The extension word a client adds to `want` to pair, beside `noise`.
pub const PAIR_FEATURE: &str = "pair";
/// The pairing request and answer, inside the channel.
pub(crate) const PAIR: [u8; 4] = *b"PAIR";

/// The packet at the start of `buf` (any token, string body): token, body, bytes used.
pub(crate) fn split_packet(buf: &[u8]) -> Option<([u8; 4], &[u8], usize)> {
    let token: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let len = std::str::from_utf8(buf.get(4..HEADER_LEN)?)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())? as usize;
    let body = buf.get(HEADER_LEN..HEADER_LEN + len)?;
    Some((token, body, HEADER_LEN + len))
}

/// A packet with a string body.
pub(crate) fn packet(token: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(token);
    out.extend_from_slice(format!("{:08x}", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// The body of a pairing request: the proof that the user was given a code, bound to
/// this handshake, and who is asking (a comment for the admin's `authorized_keys`).
pub(crate) fn pair_request(proof: &[u8; 32], comment: &str) -> Vec<u8> {
    let hex: String = proof.iter().map(|b| format!("{b:02x}")).collect();
    let comment: String = comment.chars().filter(|c| !c.is_control()).collect();
    format!("proof {hex}\ncomment {comment}\n").into_bytes()
}

/// The daemon reads a pairing request: (proof, comment). `None`: malformed.
pub(crate) fn parse_pair_request(body: &[u8]) -> Option<(Vec<u8>, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut proof = None;
    let mut comment = String::new();
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("proof", hex)) if hex.len() == 64 => {
                let bytes: Option<Vec<u8>> = (0..32)
                    .map(|i| {
                        hex.get(2 * i..2 * i + 2)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                    })
                    .collect();
                proof = bytes;
            }
            Some(("comment", c)) => comment = c.chars().take(200).collect(),
            _ => {}
        }
    }
    Some((proof?, comment))
}

/// A `NOIS` packet's body, for the protocol connections' `receive` (the handshake's
/// messages travel as plain packets before the channel is installed).
pub(crate) fn decode_nois(
    buf: &[u8],
    _limits: crate::protocol::Limits,
) -> Result<(Vec<u8>, usize), crate::protocol::ProtocolError> {
    use crate::protocol::ProtocolError;
    match parse_frame(buf) {
        Ok(None) => Err(ProtocolError::Incomplete),
        Ok(Some((body, used))) => Ok((buf.get(body).unwrap_or_default().to_vec(), used)),
        Err(NoiseError::TooLong(len)) => Err(ProtocolError::TooLong {
            token: "NOIS".into(),
            len: u64::from(len),
            max: MAX_FRAME,
        }),
        Err(NoiseError::BadHeader(h)) => Err(ProtocolError::BadHeader(h)),
        Err(_) => Err(ProtocolError::Mismatch {
            expected: "NOIS".into(),
            got: printable(buf),
        }),
    }
}

/// A packet's token and body.
pub(crate) type Packet = ([u8; 4], Vec<u8>);

/// A packet with a string body of at most 4 KiB (any token), for `receive` inside the
/// channel.
pub(crate) fn decode_packet(
    buf: &[u8],
    _limits: crate::protocol::Limits,
) -> Result<(Packet, usize), crate::protocol::ProtocolError> {
    use crate::protocol::ProtocolError;
    if let Some(hex) = buf.get(4..HEADER_LEN)
        && !hex.iter().all(u8::is_ascii_hexdigit)
    {
        return Err(ProtocolError::BadHeader(printable(buf)));
    }
    if let Some(len) = buf
        .get(4..HEADER_LEN)
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        && len as usize > 4096
    {
        return Err(ProtocolError::TooLong {
            token: printable(buf.get(..4).unwrap_or_default()),
            len: u64::from(len),
            max: 4096,
        });
    }
    match split_packet(buf) {
        Some((token, body, used)) => Ok(((token, body.to_vec()), used)),
        None => Err(ProtocolError::Incomplete),
    }
}

/// What our client brings to a host it paired with: its key and the host's pinned key.
/// `None` (no key, not a TCP host, never paired): the job goes as before, unencrypted.
#[derive(Debug, Clone)]
pub(crate) struct ClientSecure {
    pub keys: KeyPair,
    /// `HOST:PORT`, as pinned.
    pub id: String,
    pub pinned: PublicKey,
}

impl ClientSecure {
    pub(crate) fn for_host(
        host: &crate::hosts::HostSpec,
        env: &crate::settings::ClientEnv,
    ) -> Option<ClientSecure> {
        let crate::hosts::HostKind::Tcp { host, port } = &host.kind else {
            return None;
        };
        let dir = crate::temp::distcc_dir(&env.dirs).ok()?;
        let keys = crate::keys::client_key(&dir)?;
        let id = crate::keys::host_id(host, *port);
        let known = match crate::keys::KnownHosts::load(&dir.join(crate::keys::KNOWN_HOSTS)) {
            Ok(k) => k,
            Err(e) => {
                log::warn!("{e}");
                return None;
            }
        };
        let pinned = known.get(&id)?;
        Some(ClientSecure { keys, id, pinned })
    }

    /// The handshake's check of the server's key against the pin: a changed key is
    /// refused, loudly, naming both fingerprints.
    pub(crate) fn check(&self, offered: &PublicKey) -> Result<(), NoiseError> {
        if *offered == self.pinned {
            Ok(())
        } else {
            Err(NoiseError::Refused(crate::keys::changed_key_message(
                &self.id,
                &self.pinned,
                offered,
            )))
        }
    }
}

impl crate::ext::Transform for Transport {
    fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), crate::ext::TransformError> {
        Transport::seal(self, plain, out).map_err(|e| crate::ext::TransformError(e.to_string()))
    }

    fn open(
        &mut self,
        wire: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, crate::ext::TransformError> {
        Transport::open(self, wire, out).map_err(|e| crate::ext::TransformError(e.to_string()))
    }
}

fn layer(e: NoiseError) -> crate::connection::ConnError {
    crate::connection::ConnError::Layer(crate::ext::TransformError(e.to_string()))
}

// ---------------------------------------------------------------------------------------
// The daemon's side of the hook in `daemon::serve`

/// The daemon's keys and policy.
#[derive(Debug)]
pub(crate) struct DaemonAuth {
    pub server: crate::keys::ServerKeys,
    /// `--require-auth`: only authorised keys, only over the channel.
    pub require_auth: bool,
}

/// What the secure step leaves to do on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secured {
    /// The job follows, inside the channel.
    Job,
    /// A pairing, answered: close.
    Paired,
}

/// The words the daemon offers when it has a key.
pub(crate) fn daemon_offers() -> [&'static str; 2] {
    [crate::ext::feature::NOISE, PAIR_FEATURE]
}

/// Refuse `who` with `code`, in one clear log line (the caller sends the `RFSE`).
fn refused(who: &str, code: &str, message: String) -> crate::connection::ConnError {
    log::error!("client {who} refused ({code}): {message}");
    crate::connection::ConnError::Refused(crate::ext::Refusal::new(code, message))
}

/// A connection that agreed on no channel: fine, unless the daemon requires one.
/// `extension`: whether the client spoke the extension (ours) or not (distcc 3.4).
pub(crate) fn check_plain(
    auth: Option<&DaemonAuth>,
    who: &str,
    extension: bool,
) -> Result<(), crate::connection::ConnError> {
    if !auth.is_some_and(|a| a.require_auth) {
        return Ok(());
    }
    let message = if extension {
        "unauthenticated client: this server requires a paired key (run `distcc-config \
         --pair HOST` with a code from `distccd --pairing-code`)"
    } else {
        "unauthenticated client (distcc 3.4 protocol, no key); --require-auth is set"
    };
    Err(refused(
        who,
        crate::ext::code::AUTH_REQUIRED,
        message.into(),
    ))
}

/// The daemon's half, right after the `EXTN` answer agreed on `noise`: the handshake,
/// the channel installed on `conn`, then the client's key checked against
/// `authorized_keys` (or, for `pair`, a one-time code redeemed and the key added).
pub(crate) async fn serve_secure<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut crate::connection::Connection<S>,
    auth: &DaemonAuth,
    hello: &crate::ext::Hello,
    agreed: &crate::ext::Agreed,
    who: &str,
) -> Result<Secured, crate::connection::ConnError> {
    use crate::ext::code;
    let wants: Vec<&str> = hello.words("want").collect();
    let used: Vec<&str> = agreed.answer.words("use").collect();
    let mut hs =
        Handshake::responder(&auth.server.keys, &prologue(&wants, &used)).map_err(layer)?;
    let m1 = conn.receive(decode_nois).await?;
    hs.read(&m1).map_err(layer)?;
    let mut out = Vec::new();
    hs.write(&mut out).map_err(layer)?;
    conn.send(&out).await?;
    let m3 = conn.receive(decode_nois).await?;
    hs.read(&m3).map_err(layer)?;
    let transport = hs.into_transport().map_err(layer)?;
    let client = transport.remote();
    let hash = transport.handshake_hash().to_vec();
    conn.set_transform(Box::new(transport))?;
    let fp = client.fingerprint();
    let authorized = auth.server.authorized_keys();
    if agreed.answer.has("use", PAIR_FEATURE) {
        let (token, body) = conn.receive(decode_packet).await?;
        let Some((proof, comment)) = parse_pair_request(&body).filter(|_| token == PAIR) else {
            return Err(refused(
                who,
                code::BAD_REQUEST,
                "malformed pairing request".into(),
            ));
        };
        let redeemed = crate::keys::redeem_pairing_code(&auth.server.dir, &hash, &proof);
        match redeemed {
            Ok(true) => {}
            Ok(false) => {
                return Err(refused(
                    who,
                    code::NOT_AUTHORIZED,
                    format!("pairing of key {fp}: wrong, used or expired pairing code"),
                ));
            }
            Err(e) => {
                log::error!("{e}");
                return Err(refused(
                    who,
                    code::SERVER_ERROR,
                    "can't read pairing codes".into(),
                ));
            }
        }
        if let Err(e) = crate::keys::authorize(&authorized, &client, &comment) {
            log::error!("{e}");
            return Err(refused(
                who,
                code::SERVER_ERROR,
                "can't write authorized_keys".into(),
            ));
        }
        log::warn!(
            "client {who} paired: key {fp} ({comment}) added to {}",
            authorized.display()
        );
        let answer = format!("ok authorized {fp}");
        conn.send(&packet(&PAIR, answer.as_bytes())).await?;
        return Ok(Secured::Paired);
    }
    match crate::keys::is_authorized(&authorized, &client) {
        Ok(Some(a)) => {
            log::info!(target: crate::trace::DETAIL, "client {who} authenticated as {fp} ({})", a.comment);
            Ok(Secured::Job)
        }
        Ok(None) if auth.require_auth => Err(refused(
            who,
            code::NOT_AUTHORIZED,
            format!("key {fp} is not authorised on this server (pair with `distcc-config --pair`)"),
        )),
        Ok(None) => {
            log::info!(
                target: crate::trace::DETAIL,
                "client {who}: encrypted; its key {fp} is not in {} (served: no --require-auth)",
                authorized.display()
            );
            Ok(Secured::Job)
        }
        Err(e) => {
            log::error!("{e}");
            if auth.require_auth {
                Err(refused(
                    who,
                    code::SERVER_ERROR,
                    "can't read authorized_keys".into(),
                ))
            } else {
                Ok(Secured::Job)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The client's side of the hook in `client::remote`

/// The client's half, right after the `EXTN` answer agreed on `noise` with a host it
/// paired with: the handshake (the server's key checked against the pin before ours is
/// revealed), then the channel installed on `wire`.
pub(crate) fn client_secure<S: crate::client::wire::Duplex>(
    wire: &mut crate::client::wire::Wire<S>,
    secure: &ClientSecure,
    wants: &[&str],
    agreed: &crate::ext::Agreed,
) -> Result<(), crate::connection::ConnError> {
    let used: Vec<&str> = agreed.answer.words("use").collect();
    let mut hs = Handshake::initiator(&secure.keys, &prologue(wants, &used)).map_err(layer)?;
    let mut out = Vec::new();
    hs.write(&mut out).map_err(layer)?;
    wire.send(&out)?;
    let m2 = wire.receive(|b, l| crate::ext::or_refusal(b, l, decode_nois))?;
    let m2 = m2.map_err(crate::connection::ConnError::Refused)?;
    hs.read(&m2).map_err(layer)?;
    let server = hs
        .remote_static()
        .ok_or(NoiseError::NoStatic)
        .map_err(layer)?;
    secure.check(&server).map_err(layer)?;
    out.clear();
    hs.write(&mut out).map_err(layer)?;
    wire.send(&out)?;
    let transport = hs.into_transport().map_err(layer)?;
    wire.set_transform(Box::new(transport))?;
    log::info!(
        "{}: encrypted, server key {}",
        secure.id,
        server.fingerprint()
    );
    Ok(())
}

/// A host the client paired with that did not agree to the channel: a downgrade is
/// refused like a changed key (the job runs elsewhere or here, never in clear).
pub(crate) fn downgrade_refused(secure: &ClientSecure) -> crate::connection::ConnError {
    layer(NoiseError::Refused(format!(
        "WARNING: distcc server {} is paired (key {}) but did not agree to the encrypted \
         channel; refusing to send it jobs in clear",
        secure.id,
        secure.pinned.fingerprint()
    )))
}

// ---------------------------------------------------------------------------------------
// Pairing, the client's side (`distcc-config --pair`)

/// Why pairing failed.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    #[error("can't connect to {host}: {source}")]
    Connect { host: String, source: io::Error },
    #[error("{host}: {source}")]
    Io { host: String, source: io::Error },
    #[error(
        "{host} closed the connection without answering: not a distcc-rs daemon (distcc 3.4 can't pair)"
    )]
    NotOurs { host: String },
    #[error(
        "{host} does not offer pairing (its answer: {answer:?}); is it our distccd with a key?"
    )]
    NoPairing { host: String, answer: String },
    #[error("{host} refused: {code} {message}")]
    Refused {
        host: String,
        code: String,
        message: String,
    },
    #[error("{host}: {source}")]
    Noise { host: String, source: NoiseError },
    #[error("{host}: unexpected answer {what:?}")]
    Unexpected { host: String, what: String },
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error("pairing with {host} cancelled: the server's key was not confirmed")]
    NotConfirmed { host: String },
}

/// What pairing did.
#[derive(Debug, Clone)]
pub struct Paired {
    /// `HOST:PORT`, as pinned.
    pub host: String,
    pub server_key: PublicKey,
    pub client_key: PublicKey,
    /// The server's words (e.g. `ok authorized SHA256:…`).
    pub message: String,
}

/// The hello that asks to pair: `DIST 4`, then `EXTN` wanting `noise pair`.
fn pair_hello() -> Vec<u8> {
    let mut out = b"DIST00000004".to_vec();
    out.extend(packet(b"EXTN", b"distcc-rs 1\nwant noise pair\n"));
    out
}

/// Read until one whole plain packet is there.
fn read_packet(
    io: &mut std::net::TcpStream,
    buf: &mut Vec<u8>,
    host: &str,
) -> Result<([u8; 4], Vec<u8>), PairError> {
    loop {
        if let Some((token, body, used)) = split_packet(buf) {
            let body = body.to_vec();
            buf.drain(..used);
            return Ok((token, body));
        }
        let mut chunk = [0u8; 4096];
        match io.read(&mut chunk) {
            Ok(0) if buf.is_empty() => {
                return Err(PairError::NotOurs {
                    host: host.to_owned(),
                });
            }
            Ok(0) => {
                return Err(PairError::Unexpected {
                    host: host.to_owned(),
                    what: String::from_utf8_lossy(buf).into_owned(),
                });
            }
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(PairError::Io {
                    host: host.to_owned(),
                    source,
                });
            }
        }
    }
}

fn refusal(host: &str, body: &[u8]) -> PairError {
    let text = String::from_utf8_lossy(body);
    let (code, message) = text.split_once(' ').unwrap_or((&text, ""));
    PairError::Refused {
        host: host.to_owned(),
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// Pair with our daemon at `host:port`: make this user's key if needed (in
/// `distcc_dir`), show the server's key to `confirm` (with the key pinned before, if
/// any: a changed key is shown as such), prove the one-time `code` inside the
/// encrypted channel, and pin the server's key once the server has authorised ours.
pub fn pair(
    host: &str,
    port: u16,
    distcc_dir: &Path,
    code: &str,
    comment: &str,
    timeout: Duration,
    confirm: &mut dyn FnMut(&str, &PublicKey, Option<&PublicKey>) -> bool,
) -> Result<Paired, PairError> {
    use std::net::ToSocketAddrs;
    let id = crate::keys::host_id(host, port);
    crate::keys::private_dir(distcc_dir)?;
    let (keys, _) = KeyPair::load_or_generate(&distcc_dir.join(crate::keys::CLIENT_KEY_FILE))?;
    let known_path = distcc_dir.join(crate::keys::KNOWN_HOSTS);
    let mut known = crate::keys::KnownHosts::load(&known_path)?;
    let io_err = |source| PairError::Io {
        host: id.clone(),
        source,
    };
    let connect_err = |source| PairError::Connect {
        host: id.clone(),
        source,
    };
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(connect_err)?
        .next()
        .ok_or_else(|| connect_err(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
    let mut sock =
        std::net::TcpStream::connect_timeout(&addr, crate::client::remote::CONNECT_TIMEOUT)
            .map_err(connect_err)?;
    sock.set_read_timeout(Some(timeout)).map_err(io_err)?;
    sock.set_write_timeout(Some(timeout)).map_err(io_err)?;
    sock.write_all(&pair_hello()).map_err(io_err)?;
    let mut buf = Vec::new();
    let (token, body) = read_packet(&mut sock, &mut buf, &id)?;
    match &token {
        b"EXTN" => {}
        b"RFSE" => return Err(refusal(&id, &body)),
        _ => {
            return Err(PairError::Unexpected {
                host: id,
                what: String::from_utf8_lossy(&token).into_owned(),
            });
        }
    }
    let answer = String::from_utf8_lossy(&body).into_owned();
    let used: Vec<&str> = answer
        .lines()
        .find_map(|l| l.strip_prefix("use "))
        .map(|u| u.split_whitespace().collect())
        .unwrap_or_default();
    if !used.contains(&"noise") || !used.contains(&PAIR_FEATURE) {
        return Err(PairError::NoPairing { host: id, answer });
    }
    let noise_err = |source| PairError::Noise {
        host: id.clone(),
        source,
    };
    let mut confirmed = true;
    let transport = client_handshake(
        &mut sock,
        &keys,
        &prologue(&["noise", PAIR_FEATURE], &used),
        timeout,
        |server| {
            confirmed = confirm(&id, server, known.get(&id).as_ref());
            if confirmed {
                Ok(())
            } else {
                Err(NoiseError::Refused("not confirmed".into()))
            }
        },
    );
    let mut transport = match transport {
        Ok(t) => t,
        Err(_) if !confirmed => return Err(PairError::NotConfirmed { host: id }),
        Err(e) => return Err(noise_err(e)),
    };
    let proof = crate::keys::code_proof(transport.handshake_hash(), code);
    let mut out = Vec::new();
    transport
        .seal(&packet(&PAIR, &pair_request(&proof, comment)), &mut out)
        .map_err(noise_err)?;
    sock.write_all(&out).map_err(io_err)?;
    // The answer: one plain packet inside the channel.
    let mut cipher = Vec::new();
    let mut plain = Vec::new();
    let (token, body) = loop {
        if let Some((token, body, _)) = split_packet(&plain) {
            break (token, body.to_vec());
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).map_err(io_err)?;
        if n == 0 {
            return Err(PairError::Unexpected {
                host: id,
                what: "the connection closed".into(),
            });
        }
        cipher.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let used = transport.open(&cipher, &mut plain).map_err(noise_err)?;
        cipher.drain(..used);
    };
    match &token {
        b"PAIR" => {
            let server_key = transport.remote();
            known.pin(&id, server_key)?;
            Ok(Paired {
                host: id,
                server_key,
                client_key: keys.public,
                message: String::from_utf8_lossy(&body).into_owned(),
            })
        }
        b"RFSE" => Err(refusal(&id, &body)),
        _ => Err(PairError::Unexpected {
            host: id,
            what: String::from_utf8_lossy(&token).into_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (KeyPair, KeyPair) {
        (KeyPair::generate().unwrap(), KeyPair::generate().unwrap())
    }

    /// Run a whole handshake on bytes: (client transport, server transport).
    fn handshake(
        c: &KeyPair,
        s: &KeyPair,
        cp: &[u8],
        sp: &[u8],
    ) -> Result<(Transport, Transport), NoiseError> {
        let mut ci = Handshake::initiator(c, cp)?;
        let mut si = Handshake::responder(s, sp)?;
        let mut wire = Vec::new();
        ci.write(&mut wire)?;
        let (b, used) = parse_frame(&wire)?.unwrap();
        si.read(&wire[b])?;
        wire.drain(..used);
        si.write(&mut wire)?;
        let (b, used) = parse_frame(&wire)?.unwrap();
        ci.read(&wire[b])?;
        wire.drain(..used);
        assert_eq!(ci.remote_static(), Some(s.public));
        ci.write(&mut wire)?;
        let (b, _) = parse_frame(&wire)?.unwrap();
        si.read(&wire[b])?;
        assert!(ci.is_finished() && si.is_finished());
        Ok((ci.into_transport()?, si.into_transport()?))
    }

    #[test]
    fn both_sides_learn_the_other_key_and_exchange_bytes() {
        let (c, s) = pair();
        let (mut ct, mut st) = handshake(&c, &s, b"p", b"p").unwrap();
        assert_eq!(ct.remote(), s.public);
        assert_eq!(st.remote(), c.public);
        assert_eq!(ct.handshake_hash(), st.handshake_hash());
        // Large enough to need several packets; a marker that must not show on the wire.
        let mut plain = b"int secret_marker_42;".repeat(10_000);
        plain.push(b'!');
        let mut wire = Vec::new();
        ct.seal(&plain, &mut wire).unwrap();
        assert!(wire.len() > plain.len());
        assert!(!wire.windows(16).any(|w| w == b"secret_marker_42"));
        let mut frames = 0;
        let mut rest = &wire[..];
        while let Some((b, used)) = parse_frame(rest).unwrap() {
            assert!(b.len() <= MAX_FRAME);
            frames += 1;
            rest = &rest[used..];
        }
        assert_eq!(frames, plain.len().div_ceil(MAX_PLAIN));
        // Opened piecewise, as bytes arrive.
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for piece in wire.chunks(7777) {
            buf.extend_from_slice(piece);
            let used = st.open(&buf, &mut out).unwrap();
            buf.drain(..used);
        }
        assert!(buf.is_empty());
        assert_eq!(out, plain);
        // And back.
        let mut wire = Vec::new();
        st.seal(b"reply", &mut wire).unwrap();
        let mut out = Vec::new();
        assert_eq!(ct.open(&wire, &mut out).unwrap(), wire.len());
        assert_eq!(out, b"reply");
    }

    #[test]
    fn a_flipped_bit_is_caught() {
        let (c, s) = pair();
        let (mut ct, mut st) = handshake(&c, &s, b"", b"").unwrap();
        let mut wire = Vec::new();
        ct.seal(b"hello", &mut wire).unwrap();
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert!(matches!(
            st.open(&wire, &mut Vec::new()),
            Err(NoiseError::Decrypt)
        ));
    }

    #[test]
    fn different_prologues_fail_the_handshake() {
        let (c, s) = pair();
        assert!(handshake(&c, &s, b"want zstd noise", b"want noise").is_err());
    }

    #[test]
    fn frames_are_checked() {
        assert!(parse_frame(b"NOI").unwrap().is_none());
        assert!(parse_frame(b"NOIS0000").unwrap().is_none());
        assert!(parse_frame(b"NOIS00000002a").unwrap().is_none());
        assert_eq!(parse_frame(b"NOIS00000002ab").unwrap(), Some((12..14, 14)));
        assert!(matches!(
            parse_frame(b"DIST00000001"),
            Err(NoiseError::NotNoise(_))
        ));
        assert!(matches!(
            parse_frame(b"NOISzzzzzzzz"),
            Err(NoiseError::BadHeader(_))
        ));
        assert!(matches!(
            parse_frame(b"NOIS00010000"),
            Err(NoiseError::TooLong(65536))
        ));
    }

    /// The hooks on both sides talk over a real socket pair: the client's blocking wire,
    /// the daemon's async connection, a reply large enough to need many records, and the
    /// request sent right behind the handshake's last message.
    #[test]
    fn the_hooks_carry_a_conversation() {
        use crate::ext::{Agreed, Hello, answer_for};
        let d = tempfile::tempdir().unwrap();
        let (server, _) = crate::keys::ServerKeys::open(d.path(), None).unwrap();
        let client = KeyPair::generate().unwrap();
        crate::keys::authorize(&server.authorized_keys(), &client.public, "test").unwrap();
        let server_pub = server.keys.public;
        let wants = ["zstd", "noise"];
        let hello = Hello::new().with("want", &wants.join(" "));
        let agreed = Agreed::from_answer(answer_for(&hello, &wants, &[]), &wants).unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let timeout = Duration::from_secs(10);
        let (h, ag) = (hello.clone(), agreed.clone());
        let daemon = std::thread::spawn(move || {
            smol::block_on(async move {
                let auth = DaemonAuth {
                    server,
                    require_auth: true,
                };
                let io = smol::Async::new(b).unwrap();
                let mut conn = crate::connection::Connection::new(io, timeout);
                let secured = serve_secure(&mut conn, &auth, &h, &ag, "test")
                    .await
                    .unwrap();
                assert_eq!(secured, Secured::Job);
                let got = conn
                    .receive(|buf, _| match buf.get(..5) {
                        Some(p) => Ok((p.to_vec(), 5)),
                        None => Err(crate::protocol::ProtocolError::Incomplete),
                    })
                    .await
                    .unwrap();
                assert_eq!(got, b"ping!");
                conn.send(&vec![0xab; 300_000]).await.unwrap();
            })
        });
        let mut wire = crate::client::wire::Wire::new(a, timeout).unwrap();
        let secure = ClientSecure {
            keys: client,
            id: "test:1".into(),
            pinned: server_pub,
        };
        client_secure(&mut wire, &secure, &wants, &agreed).unwrap();
        wire.send(b"ping!").unwrap();
        let got = wire
            .receive(|buf, _| match buf.get(..300_000) {
                Some(p) => Ok((p.to_vec(), 300_000)),
                None => Err(crate::protocol::ProtocolError::Incomplete),
            })
            .unwrap();
        assert!(got.iter().all(|&b| b == 0xab));
        daemon.join().unwrap();
    }

    /// A rough cost figure for the report: one handshake, and sealing + opening 1 MiB.
    #[test]
    fn cost_figures() {
        let (c, s) = pair();
        let n = 50;
        let start = std::time::Instant::now();
        for _ in 0..n {
            handshake(&c, &s, b"", b"").unwrap();
        }
        let hs = start.elapsed() / n;
        let (mut ct, mut st) = handshake(&c, &s, b"", b"").unwrap();
        let plain = vec![7u8; 1 << 20];
        let start = std::time::Instant::now();
        let mut wire = Vec::new();
        let mut out = Vec::new();
        for _ in 0..20 {
            wire.clear();
            out.clear();
            ct.seal(&plain, &mut wire).unwrap();
            st.open(&wire, &mut out).unwrap();
        }
        let per_mib = start.elapsed() / 20;
        assert_eq!(out, plain);
        eprintln!("noise cost: handshake {hs:?} (both sides), seal+open 1 MiB {per_mib:?}");
    }
}
