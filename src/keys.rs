//! Long-term keys, paired like SSH (issue 17): the daemon's key pair, each client user's
//! key pair, the client's pinned server keys and the server's authorised client keys.
//!
//! * The daemon's key lives in its key dir (`/etc/distcc/`, or `distccd --key-dir`,
//!   `DISTCCD_KEY_DIR`): `distccd.key` (private, 0600) and `distccd.key.pub`, generated on
//!   first start. Beside it `authorized_keys` (one client key per line, as `distcc-config
//!   --pair` or an admin adds them) and `pairing/` (one-time codes, 0700).
//! * A client user's key lives in `$DISTCC_DIR`: `client.key` (0600) and `client.key.pub`,
//!   made by `distcc-config --pair`; never made behind the user's back by a compile, so a
//!   user who never paired keeps today's plain behaviour.
//! * `$DISTCC_DIR/known_hosts` pins one key per `HOST:PORT` (trust on first use at pairing,
//!   then fixed): a changed key refuses the host, naming both fingerprints.
//!
//! Keys are X25519 (the Noise DH, see [`crate::noise`]). Files are text, one key a line:
//! `distcc-x25519 BASE64 [comment]`, so an admin can read, copy and edit them.
//! Fingerprints are `SHA256:` + unpadded base64 of the public key's SHA-256, as ssh shows
//! them, because users already know how to compare those.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

/// The key type word on every key line.
pub const KEY_TYPE: &str = "distcc-x25519";
/// The daemon's private key file in its key dir.
pub const SERVER_KEY_FILE: &str = "distccd.key";
/// A client's private key file in `$DISTCC_DIR`.
pub const CLIENT_KEY_FILE: &str = "client.key";
/// The server's list of authorised client keys, in its key dir.
pub const AUTHORIZED_KEYS: &str = "authorized_keys";
/// The client's pinned server keys, in `$DISTCC_DIR`.
pub const KNOWN_HOSTS: &str = "known_hosts";
/// The server's one-time pairing codes, a dir in its key dir.
pub const PAIRING_DIR: &str = "pairing";
/// The system daemon's key dir.
pub const DEFAULT_SERVER_DIR: &str = "/etc/distcc";

/// Length of an X25519 key.
pub const KEY_LEN: usize = 32;

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} line {line}: not a {KEY_TYPE} key ({why})")]
    Malformed {
        path: PathBuf,
        line: usize,
        why: &'static str,
    },
    #[error("{path} is readable or writable by others (mode {mode:o}); it must be 0600")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("can't make a key: {0}")]
    Generate(String),
    #[error("no randomness for a pairing code: {0}")]
    Random(io::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A public key: 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; KEY_LEN]);

impl PublicKey {
    /// From raw bytes (a Noise handshake's remote static); `None` if not 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<PublicKey> {
        <[u8; KEY_LEN]>::try_from(bytes).ok().map(PublicKey)
    }

    /// `SHA256:` + unpadded base64 of SHA-256 of the key, as ssh shows fingerprints.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0);
        format!("SHA256:{}", STANDARD_NO_PAD.encode(digest))
    }

    /// `distcc-x25519 BASE64`: the form key files hold.
    pub fn to_line(&self) -> String {
        format!("{KEY_TYPE} {}", STANDARD.encode(self.0))
    }

    /// Parse the words `distcc-x25519 BASE64` (anything after is a comment).
    pub fn parse(words: &mut std::str::SplitWhitespace<'_>) -> Result<PublicKey, &'static str> {
        if words.next() != Some(KEY_TYPE) {
            return Err("the line must start with distcc-x25519");
        }
        let b64 = words.next().ok_or("the key is missing")?;
        let bytes = STANDARD.decode(b64).map_err(|_| "the key is not base64")?;
        PublicKey::from_slice(&bytes).ok_or("the key is not 32 bytes")
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// A long-term key pair. The private half never leaves this process except to its own
/// 0600 file.
#[derive(Clone)]
pub struct KeyPair {
    pub(crate) private: [u8; KEY_LEN],
    pub public: PublicKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair({})", self.public.fingerprint())
    }
}

impl KeyPair {
    /// A fresh key pair from the OS's randomness (snow's default resolver).
    pub fn generate() -> Result<KeyPair, KeyError> {
        let params = crate::noise::params().map_err(|e| KeyError::Generate(e.to_string()))?;
        let kp = snow::Builder::new(params)
            .generate_keypair()
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let private = <[u8; KEY_LEN]>::try_from(kp.private.as_slice())
            .map_err(|_| KeyError::Generate("private key of the wrong size".into()))?;
        let public = PublicKey::from_slice(&kp.public)
            .ok_or_else(|| KeyError::Generate("public key of the wrong size".into()))?;
        Ok(KeyPair { private, public })
    }

    /// Read a private key file: `distcc-x25519-private PRIVATE PUBLIC`. A file others may
    /// read is refused: its key can no longer be trusted to be ours alone.
    pub fn load(path: &Path) -> Result<KeyPair, KeyError> {
        let meta = fs::metadata(path).map_err(io_err(path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = fs::read_to_string(path).map_err(io_err(path))?;
        let bad = |why| KeyError::Malformed {
            path: path.to_path_buf(),
            line: 1,
            why,
        };
        let mut words = text.split_whitespace();
        if words.next() != Some("distcc-x25519-private") {
            return Err(bad("the file must start with distcc-x25519-private"));
        }
        let private = words
            .next()
            .and_then(|w| STANDARD.decode(w).ok())
            .and_then(|b| <[u8; KEY_LEN]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| bad("the private key is not 32 bytes of base64"))?;
        let public = words
            .next()
            .and_then(|w| STANDARD.decode(w).ok())
            .and_then(|b| PublicKey::from_slice(&b))
            .ok_or_else(|| bad("the public key is not 32 bytes of base64"))?;
        Ok(KeyPair { private, public })
    }

    /// Write the private file (0600, created exclusively under a temporary name and
    /// renamed, so a reader never sees half a key) and `PATH.pub`.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let text = format!(
            "distcc-x25519-private {} {}\n",
            STANDARD.encode(self.private),
            STANDARD.encode(self.public.0)
        );
        write_private(path, text.as_bytes())?;
        let mut pub_path = path.as_os_str().to_owned();
        pub_path.push(".pub");
        let pub_path = PathBuf::from(pub_path);
        fs::write(&pub_path, format!("{}\n", self.public.to_line())).map_err(io_err(&pub_path))
    }

    /// The key at `path`, made (and saved) if there is none yet. `Ok((key, true))`: new.
    pub fn load_or_generate(path: &Path) -> Result<(KeyPair, bool), KeyError> {
        match KeyPair::load(path) {
            Ok(k) => Ok((k, false)),
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    private_dir(dir)?;
                }
                let k = KeyPair::generate()?;
                k.save(path)?;
                Ok((k, true))
            }
            Err(e) => Err(e),
        }
    }
}

/// Create `dir` owner-only (0700) if missing; an existing dir is left as it is (the
/// system's `/etc/distcc` must stay readable for the host list).
pub fn private_dir(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

/// Write `bytes` to `path` owner-only: a 0600 temporary beside it, then a rename.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-key")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    tmp.write_all(bytes).map_err(io_err(path))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| KeyError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// One authorised key and its comment (who it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    pub key: PublicKey,
    pub comment: String,
}

/// Read an authorised-keys file: `distcc-x25519 BASE64 [comment]` lines, `#` comments and
/// blank lines ignored. A missing file is an empty list. A bad line is skipped with a
/// warning naming the file and line, so one typo does not lock every client out.
pub fn read_authorized(path: &Path) -> Result<Vec<AuthorizedKey>, KeyError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        match PublicKey::parse(&mut words) {
            Ok(key) => keys.push(AuthorizedKey {
                key,
                comment: words.collect::<Vec<_>>().join(" "),
            }),
            Err(why) => log::warn!("{} line {}: skipped: {why}", path.display(), n + 1),
        }
    }
    Ok(keys)
}

/// Is `key` in the authorised list at `path`? Read at each use: an admin's edit counts at
/// once, without a restart.
pub fn is_authorized(path: &Path, key: &PublicKey) -> Result<Option<AuthorizedKey>, KeyError> {
    Ok(read_authorized(path)?.into_iter().find(|a| a.key == *key))
}

/// Add `key` to the authorised list (no duplicate). Appends in place, never replaces the
/// file: the system daemon, no longer root, owns `authorized_keys` but not `/etc/distcc`.
pub fn authorize(path: &Path, key: &PublicKey, comment: &str) -> Result<bool, KeyError> {
    if is_authorized(path, key)?.is_some() {
        return Ok(false);
    }
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    let ends_with_newline = fs::read(path)
        .map(|t| t.is_empty() || t.ends_with(b"\n"))
        .unwrap_or(true);
    let comment: String = comment
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let line = format!(
        "{}{} {comment}\n",
        if ends_with_newline { "" } else { "\n" },
        key.to_line()
    );
    f.write_all(line.as_bytes()).map_err(io_err(path))?;
    Ok(true)
}

/// The daemon's side: its key pair and where its lists live.
#[derive(Debug, Clone)]
pub struct ServerKeys {
    pub keys: KeyPair,
    pub dir: PathBuf,
}

impl ServerKeys {
    /// Load (or make, on first start) the daemon's key in `dir`, and make sure the files
    /// the daemon changes while serving — `authorized_keys` (pairing adds to it) and
    /// `pairing/` (codes are used up) — exist and, when `owner` is given (a root daemon
    /// about to become its persona), belong to that user. Call before dropping root: the
    /// private key stays root's.
    pub fn open(dir: &Path, owner: Option<(u32, u32)>) -> Result<(ServerKeys, bool), KeyError> {
        let created = !dir.exists();
        private_dir(dir)?;
        let (keys, new) = KeyPair::load_or_generate(&dir.join(SERVER_KEY_FILE))?;
        let authorized = dir.join(AUTHORIZED_KEYS);
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&authorized)
            .map_err(io_err(&authorized))?;
        let pairing = dir.join(PAIRING_DIR);
        private_dir(&pairing)?;
        if let Some((uid, gid)) = owner {
            let mut mine = vec![authorized, pairing.clone()];
            // An owner-only key dir (ours, made here or by `--pairing-code`) must let the
            // persona reach its files; a shared one such as /etc/distcc is left alone.
            let owner_only = fs::metadata(dir)
                .map(|m| m.permissions().mode() & 0o777 == 0o700)
                .unwrap_or(false);
            if created || owner_only {
                mine.push(dir.to_path_buf());
            }
            if let Ok(codes) = fs::read_dir(&pairing) {
                mine.extend(codes.flatten().map(|e| e.path()));
            }
            for path in mine {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(io_err(&path))?;
            }
        }
        Ok((
            ServerKeys {
                keys,
                dir: dir.to_path_buf(),
            },
            new,
        ))
    }

    pub fn authorized_keys(&self) -> PathBuf {
        self.dir.join(AUTHORIZED_KEYS)
    }
}

/// The client user's key, if they have one (`distcc-config --pair` makes it). A key that
/// can't be read is reported and treated as none: the job goes plain, as before pairing.
pub fn client_key(distcc_dir: &Path) -> Option<KeyPair> {
    let path = distcc_dir.join(CLIENT_KEY_FILE);
    match KeyPair::load(&path) {
        Ok(k) => Some(k),
        Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            log::warn!("{e}; not using it");
            None
        }
    }
}

/// What the pinned keys say about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// Never paired: no key recorded for this host.
    Unknown,
    /// The recorded key.
    Same,
    /// A different key is recorded: refuse the host, loudly.
    Changed { pinned: PublicKey },
}

/// The client's pinned server keys (`$DISTCC_DIR/known_hosts`): `HOST:PORT distcc-x25519
/// BASE64` lines.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
    entries: Vec<(String, PublicKey)>,
}

impl KnownHosts {
    /// Read the file; missing is empty, bad lines are skipped with a warning.
    pub fn load(path: &Path) -> Result<KnownHosts, KeyError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(path)(e)),
        };
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let Some(host) = words.next() else { continue };
            match PublicKey::parse(&mut words) {
                Ok(key) => entries.push((host.to_owned(), key)),
                Err(why) => log::warn!("{} line {}: skipped: {why}", path.display(), n + 1),
            }
        }
        Ok(KnownHosts {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The key pinned for `host` (`HOST:PORT`).
    pub fn get(&self, host: &str) -> Option<PublicKey> {
        self.entries
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, k)| *k)
    }

    /// Compare `key` with the pin for `host`.
    pub fn check(&self, host: &str, key: &PublicKey) -> Pin {
        match self.get(host) {
            None => Pin::Unknown,
            Some(k) if k == *key => Pin::Same,
            Some(pinned) => Pin::Changed { pinned },
        }
    }

    /// Pin `key` for `host`, replacing an older pin (only pairing, which the user
    /// confirmed, does this), and write the file owner-only.
    pub fn pin(&mut self, host: &str, key: PublicKey) -> Result<(), KeyError> {
        self.entries.retain(|(h, _)| h != host);
        self.entries.push((host.to_owned(), key));
        let mut text = String::new();
        for (h, k) in &self.entries {
            text.push_str(&format!("{h} {}\n", k.to_line()));
        }
        write_private(&self.path, text.as_bytes())
    }
}

/// The name a host is pinned under: `HOST:PORT`, IPv6 in brackets.
pub fn host_id(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The message for a changed server key, naming both fingerprints.
pub fn changed_key_message(host: &str, pinned: &PublicKey, offered: &PublicKey) -> String {
    format!(
        "WARNING: the key of distcc server {host} has CHANGED: pinned {}, offered {}. \
         Someone may be intercepting your jobs, or the server was reinstalled. Refusing the \
         host; if the change is expected, pair again: distcc-config --pair {host}",
        pinned.fingerprint(),
        offered.fingerprint()
    )
}

// ---------------------------------------------------------------------------------------
// Pairing codes

/// The letters of a pairing code: no 0/O, 1/I/L, so a code read aloud or from a screen is
/// typed right.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// 12 letters of 31: ~59 bits, far beyond guessing within a code's minutes.
const CODE_LETTERS: usize = 12;
/// How long a pairing code lasts by default.
pub const DEFAULT_CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// A code as the user types it: case and dashes don't matter.
pub fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// A fresh code, `XXXX-XXXX-XXXX`.
fn new_code() -> Result<String, KeyError> {
    let mut raw = [0u8; CODE_LETTERS];
    let mut filled = 0;
    while filled < raw.len() {
        let n = rustix::rand::getrandom(
            raw.get_mut(filled..).unwrap_or_default(),
            rustix::rand::GetRandomFlags::empty(),
        )
        .map_err(|e| KeyError::Random(e.into()))?;
        filled += n;
    }
    let mut out = String::new();
    for (i, b) in raw.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        // 256 % 31 leaves a bias under 1 %: irrelevant at ~59 bits.
        let idx = usize::from(*b) % CODE_ALPHABET.len();
        out.push(char::from(CODE_ALPHABET.get(idx).copied().unwrap_or(b'A')));
    }
    Ok(out)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Make a one-time pairing code valid for `lifetime`, stored owner-only in
/// `KEY_DIR/pairing/` (as the dir's owner, so a daemon that dropped root can use it).
pub fn create_pairing_code(key_dir: &Path, lifetime: Duration) -> Result<String, KeyError> {
    let dir = key_dir.join(PAIRING_DIR);
    private_dir(&dir)?;
    let code = new_code()?;
    let path = dir.join(normalise_code(&code));
    let expires = unix_now().saturating_add(lifetime.as_secs());
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    f.write_all(format!("{expires}\n").as_bytes())
        .map_err(io_err(&path))?;
    give_to_dir_owner(&dir, &path);
    Ok(code)
}

/// As root, hand `path` to whoever owns `dir` (the daemon's persona).
fn give_to_dir_owner(dir: &Path, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(dir) else { return };
    if let Err(e) = std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid())) {
        log::debug!("can't chown {}: {e}", path.display());
    }
}

/// What a client proves it knows a code with: SHA-256 of the handshake hash and the code.
/// Bound to this handshake, so the proof is useless on any other connection, and the code
/// itself never travels.
pub fn code_proof(handshake_hash: &[u8], code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"distcc-rs pairing 1\0");
    h.update(handshake_hash);
    h.update(normalise_code(code).as_bytes());
    h.finalize().into()
}

/// Find and use up the unexpired code whose proof for this handshake is `proof`.
/// Expired codes are deleted on the way. `Ok(false)`: no such code.
pub fn redeem_pairing_code(
    key_dir: &Path,
    handshake_hash: &[u8],
    proof: &[u8],
) -> Result<bool, KeyError> {
    let dir = key_dir.join(PAIRING_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let now = unix_now();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let expires = fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if expires <= now {
            let _ = fs::remove_file(&path);
            continue;
        }
        let expected = code_proof(handshake_hash, &name);
        let same = expected.len() == proof.len()
            && expected
                .iter()
                .zip(proof)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        // One use only: whoever removes the file first wins it.
        if same && fs::remove_file(&path).is_ok() {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_a_round_trip_and_is_owner_only() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("keys");
        let path = dir.join(SERVER_KEY_FILE);
        let (k, new) = KeyPair::load_or_generate(&path).unwrap();
        assert!(new);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let (again, new) = KeyPair::load_or_generate(&path).unwrap();
        assert!(!new);
        assert_eq!(again.public, k.public);
        assert_eq!(again.private, k.private);
        let pub_text = fs::read_to_string(dir.join("distccd.key.pub")).unwrap();
        assert_eq!(pub_text.trim(), k.public.to_line());
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(CLIENT_KEY_FILE);
        KeyPair::generate().unwrap().save(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = KeyPair::load(&path).unwrap_err();
        assert!(
            matches!(e, KeyError::Permissions { mode: 0o644, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("client.key"), "{e}");
    }

    #[test]
    fn fingerprints_look_like_ssh() {
        let k = PublicKey([7; 32]);
        let fp = k.fingerprint();
        assert!(fp.starts_with("SHA256:"));
        assert_eq!(fp.len(), "SHA256:".len() + 43);
        assert_ne!(fp, PublicKey([8; 32]).fingerprint());
    }

    #[test]
    fn pins_detect_a_changed_key() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(KNOWN_HOSTS);
        let mut known = KnownHosts::load(&path).unwrap();
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        assert_eq!(known.check("h:3632", &a), Pin::Unknown);
        known.pin("h:3632", a).unwrap();
        let known = KnownHosts::load(&path).unwrap();
        assert_eq!(known.check("h:3632", &a), Pin::Same);
        assert_eq!(known.check("h:3632", &b), Pin::Changed { pinned: a });
        assert_eq!(known.check("h:3633", &a), Pin::Unknown);
        let msg = changed_key_message("h:3632", &a, &b);
        assert!(msg.contains(&a.fingerprint()) && msg.contains(&b.fingerprint()));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn authorized_keys_add_once_and_skip_bad_lines() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(AUTHORIZED_KEYS);
        fs::write(&path, "# admin's list\nnonsense here\n").unwrap();
        let k = PublicKey([3; 32]);
        assert!(is_authorized(&path, &k).unwrap().is_none());
        assert!(authorize(&path, &k, "alice@laptop\n").unwrap());
        assert!(!authorize(&path, &k, "again").unwrap());
        let list = read_authorized(&path).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].comment, "alice@laptop");
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .starts_with("# admin's list\n")
        );
    }

    #[test]
    fn a_pairing_code_works_once_and_not_after_it_expires() {
        let d = tempfile::tempdir().unwrap();
        let code = create_pairing_code(d.path(), DEFAULT_CODE_LIFETIME).unwrap();
        assert_eq!(code.len(), 14, "{code}");
        let hh = [9u8; 32];
        let wrong = code_proof(&hh, "AAAA-AAAA-AAAA");
        assert!(!redeem_pairing_code(d.path(), &hh, &wrong).unwrap());
        // The proof is bound to the handshake.
        let other = code_proof(&[8u8; 32], &code);
        assert!(!redeem_pairing_code(d.path(), &hh, &other).unwrap());
        // Case and dashes don't matter.
        let typed = code.to_lowercase().replace('-', "");
        let proof = code_proof(&hh, &typed);
        assert!(redeem_pairing_code(d.path(), &hh, &proof).unwrap());
        assert!(!redeem_pairing_code(d.path(), &hh, &proof).unwrap());

        let code = create_pairing_code(d.path(), Duration::ZERO).unwrap();
        let proof = code_proof(&hh, &code);
        assert!(!redeem_pairing_code(d.path(), &hh, &proof).unwrap());
        assert_eq!(fs::read_dir(d.path().join(PAIRING_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn host_ids() {
        assert_eq!(host_id("build1", 3632), "build1:3632");
        assert_eq!(host_id("::1", 3632), "[::1]:3632");
    }
}
