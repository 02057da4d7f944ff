//! The host list: its grammar (reference §2.3) and where it comes from (§2.2).
//!
//! A host list is whitespace-separated tokens; `#` starts a comment to the end of the line,
//! also in the middle of a token. Each token is a keyword (`--randomize`,
//! `--localslots=N`, `--localslots_cpp=N`, `+zeroconf`) or a host:
//!
//! ```text
//! localhost[/N]                                  run here, default 2 slots
//! HOST[/N|=N][:PORT][/N|=N][,OPTION]...           TCP, default port 3632, 4 slots
//! [IPV6ADDR][/N][:PORT][/N][,OPTION]...           TCP over IPv6
//! [USER]@HOST[/N][:COMMAND][,OPTION]...           SSH, 4 slots
//! OPTION = lzo | cpp | down | auth | auth=NAME    (cpp needs lzo)
//! ```
//!
//! Differences from distcc 3.4, all on purpose:
//! * 3.4 matches options by prefix and ignores trailing junk (`red,lzox` is accepted);
//!   here an unknown option, a missing port number, a zero or repeated slot count, an empty
//!   SSH command or any leftover text is an error that names the source, line, column and
//!   the offending text.
//! * 3.4 rejects the whole list on the first bad token. [`parse_lenient`] (used by
//!   [`load`], i.e. when compiling) skips bad tokens with a warning so the other hosts still
//!   work; [`parse`] and [`validate`] (used by `distcc-config --set-hosts`) are strict.
//! * `auth` is accepted but GSS-API is not supported, so it only warns.
//!
//! `+zeroconf` stands for the servers mDNS finds: [`parse`] only notes where it was
//! ([`HostList::zeroconf_at`]; a list with it counts as having hosts), and [`load`]
//! puts the hosts of `$DISTCC_DIR/zeroconf/hosts` there (kept current by a background
//! browser, see [`crate::zeroconf`]), like 3.4 does while reading the list.
//!
//! `--randomize` is recorded in [`HostList::randomize`]; [`load`] applies it (like 3.4,
//! which shuffles while loading) while [`parse`] keeps the written order.

use crate::settings::Dirs;
use std::fmt;
use std::path::{Path, PathBuf};

/// Default slots for `localhost`.
pub(crate) const DEFAULT_LOCALHOST_SLOTS: u32 = 2;
/// Default slots for a remote (TCP or SSH) host.
pub(crate) const DEFAULT_REMOTE_SLOTS: u32 = 4;
/// Default `--localslots`: jobs that must run here (links, non-distributable compiles).
pub(crate) const DEFAULT_LOCAL_SLOTS: u32 = 4;
/// Default `--localslots_cpp`: local preprocessing or include scanning for remote jobs.
pub(crate) const DEFAULT_LOCAL_SLOTS_CPP: u32 = 8;

/// A parse problem at a known place in the host list text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{source_name}:{line}:{column}: bad host specification \"{token}\": {problem}; \
     see `man distcc`, section HOST SPECIFICATIONS"
)]
pub struct SyntaxError {
    /// Where the text came from: `$DISTCC_HOSTS`, a file path, or "host list".
    pub source_name: String,
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column (in characters) of the offending text.
    pub column: usize,
    /// The whole token that was rejected.
    pub token: String,
    /// What is wrong, quoting the offending part.
    pub problem: String,
}

/// Errors from parsing or finding the host list.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// A token is malformed.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// The text has no usable hosts (this is also what an empty `$DISTCC_HOSTS` gives).
    #[error("{source_name} contained no hosts; can't distribute work")]
    NoHosts {
        /// `$DISTCC_HOSTS` or the file path.
        source_name: String,
    },
    /// None of `$DISTCC_HOSTS`, `$DISTCC_DIR/hosts` (or `~/.distcc/hosts`) and
    /// `SYSCONFDIR/distcc/hosts` exists.
    #[error(
        "no hostlist is set; can't distribute work (set DISTCC_HOSTS, or write ~/.distcc/hosts \
         or {sysconf_hosts}, e.g. with `distcc-config --set-hosts`)"
    )]
    NoHostList {
        /// The system-wide file that was tried.
        sysconf_hosts: PathBuf,
    },
    /// A hosts file exists but could not be read.
    #[error("failed to read host list {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// How a host is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// `localhost`: compile in this machine, no network.
    Local,
    /// A distccd over TCP. `host` has no brackets for IPv6 (`::1`).
    Tcp {
        /// Name or address, as written (without IPv6 brackets).
        host: String,
        /// TCP port, default 3632.
        port: u16,
    },
    /// A distccd started over ssh (`distccd --inetd` on the other end).
    Ssh {
        /// User before `@`, if any.
        user: Option<String>,
        /// Host name after `@`.
        host: String,
        /// Remote command after `:`, if any (default: `distccd`).
        command: Option<String>,
    },
}

/// One host from the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// The token exactly as written; `--show-hosts` and log lines print it.
    pub spec: String,
    /// How to reach the host.
    pub kind: HostKind,
    /// How many jobs may run there at once.
    pub slots: u32,
    /// Protocol version: 1 plain, 2 with `lzo`, 3 with `cpp,lzo` (pump mode).
    pub protocol: u8,
    /// `,lzo`: compress bulk data.
    pub lzo: bool,
    /// `,cpp`: preprocess on the server (pump mode).
    pub cpp: bool,
    /// `,down`: never use this host.
    pub down: bool,
    /// `,auth` or `,auth=NAME`: GSS-API requested (not supported; kept for display).
    pub auth: Option<String>,
}

impl HostSpec {
    /// The host name as distcc shows it: `localhost` for local, else the name or address.
    pub(crate) fn hostname(&self) -> &str {
        match &self.kind {
            HostKind::Local => "localhost",
            HostKind::Tcp { host, .. } | HostKind::Ssh { host, .. } => host,
        }
    }

    /// The middle part of lock and backoff file names, identical to distcc 3.4's so both
    /// share slots: `localhost`, `tcp_<host>_<port>` or `ssh_<host>`.
    /// Lock files are `cpu_<key>_<slot>`, backoff files `backoff_<key>_0`.
    pub(crate) fn lock_key(&self) -> String {
        match &self.kind {
            HostKind::Local => "localhost".to_string(),
            HostKind::Tcp { host, port } => format!("tcp_{host}_{port}"),
            HostKind::Ssh { host, .. } => format!("ssh_{host}"),
        }
    }
}

/// A parsed host list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostList {
    /// Hosts in list order (after `--randomize` if [`load`] applied it).
    pub hosts: Vec<HostSpec>,
    /// `--randomize` was given.
    pub randomize: bool,
    /// `--localslots`, default 4.
    pub local_slots: u32,
    /// `--localslots_cpp`, default 8.
    pub local_slots_cpp: u32,
    /// Where the list came from (`$DISTCC_HOSTS`, a path, or "host list").
    pub source_name: String,
    /// `+zeroconf` was given: the index in `hosts` where [`load`] inserts the servers
    /// mDNS found (the first `+zeroconf` counts; 3.4 would add them twice).
    pub zeroconf_at: Option<usize>,
}

impl HostList {
    fn empty(source_name: &str) -> Self {
        HostList {
            hosts: Vec::new(),
            randomize: false,
            local_slots: DEFAULT_LOCAL_SLOTS,
            local_slots_cpp: DEFAULT_LOCAL_SLOTS_CPP,
            source_name: source_name.to_string(),
            zeroconf_at: None,
        }
    }

    /// Sum of the slots of all hosts, `,down` ones included: what `distcc -j` prints, as
    /// distcc 3.4 does (scripts feed it to `make -j`, and a host marked down for a while
    /// usually comes back).
    pub fn total_slots(&self) -> u32 {
        self.hosts
            .iter()
            .map(|h| h.slots)
            .fold(0u32, u32::saturating_add)
    }

    /// Shuffle the hosts if `--randomize` was given (Fisher–Yates driven by `seed`), so that
    /// many clients spread their first choices over the hosts. No-op otherwise.
    pub(crate) fn apply_randomize(&mut self, seed: u64) {
        if !self.randomize {
            return;
        }
        let mut state = seed | 1;
        for i in (1..self.hosts.len()).rev() {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let j = (r % (i as u64 + 1)) as usize;
            self.hosts.swap(i, j);
        }
    }
}

/// Strict parse: the first bad token is an error, and so is a list without hosts.
/// Warnings (for `auth`) are logged.
pub fn parse(text: &str) -> Result<HostList, HostsError> {
    parse_named(text, "host list")
}

/// [`parse`] with a source name for messages (`$DISTCC_HOSTS`, a path).
pub(crate) fn parse_named(text: &str, source_name: &str) -> Result<HostList, HostsError> {
    let (list, mut errors) = parse_lenient_named(text, source_name);
    if errors.is_empty() {
        Ok(list)
    } else {
        Err(errors.swap_remove(0))
    }
}

/// Validate a host list for `distcc-config --set-hosts`: every problem, not just the first.
pub fn validate(text: &str) -> Result<HostList, Vec<HostsError>> {
    let (list, errors) = parse_lenient_named(text, "host list");
    if errors.is_empty() {
        Ok(list)
    } else {
        Err(errors)
    }
}

/// Lenient parse: bad tokens are skipped and returned as errors; the good hosts are kept.
/// If no host is left the errors end with [`HostsError::NoHosts`].
pub(crate) fn parse_lenient(text: &str) -> (HostList, Vec<HostsError>) {
    parse_lenient_named(text, "host list")
}

/// [`parse_lenient`] with a source name for messages.
pub(crate) fn parse_lenient_named(text: &str, source_name: &str) -> (HostList, Vec<HostsError>) {
    let mut list = HostList::empty(source_name);
    let mut errors = Vec::new();
    for tok in tokens(text) {
        let at = |offset: usize, problem: String| -> HostsError {
            let prefix = &tok.text[..offset.min(tok.text.len())];
            HostsError::Syntax(SyntaxError {
                source_name: source_name.to_string(),
                line: tok.line,
                column: tok.column + prefix.chars().count(),
                token: tok.text.to_string(),
                problem,
            })
        };
        match parse_token(tok.text) {
            Ok(Item::Host(h)) => list.hosts.push(h),
            Ok(Item::Randomize) => list.randomize = true,
            Ok(Item::LocalSlots(n)) => list.local_slots = n,
            Ok(Item::LocalSlotsCpp(n)) => list.local_slots_cpp = n,
            Ok(Item::Zeroconf) => {
                list.zeroconf_at.get_or_insert(list.hosts.len());
            }
            Err(e) => errors.push(at(e.offset, e.problem)),
        }
    }
    for h in &list.hosts {
        if h.auth.is_some() {
            log::warn!(
                "host {}: GSS-API authentication (',auth') is not supported by this distcc; \
                 connecting without it",
                h.spec
            );
        }
    }
    if list.hosts.is_empty() && list.zeroconf_at.is_none() {
        errors.push(HostsError::NoHosts {
            source_name: source_name.to_string(),
        });
    }
    (list, errors)
}

/// Where the host list is read from, per reference §2.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostListSource {
    /// `$DISTCC_HOSTS` (set, possibly empty).
    Env(String),
    /// A readable file.
    File(PathBuf),
}

/// Find the host list text: `$DISTCC_HOSTS` (`hosts_var`) if set (even empty), else
/// `$DISTCC_DIR/hosts` if `DISTCC_DIR` is set, otherwise `$HOME/.distcc/hosts`
/// (alternatives, not a chain), else `<sysconf_dir>/distcc/hosts` (`/etc/distcc/hosts` in
/// production).
pub(crate) fn find_source(
    hosts_var: Option<&str>,
    dirs: &Dirs,
    sysconf_dir: &Path,
) -> Result<HostListSource, HostsError> {
    if let Some(v) = hosts_var {
        return Ok(HostListSource::Env(v.to_owned()));
    }
    let user_file = match &dirs.distcc_dir {
        Some(dir) => Some(dir.join("hosts")),
        None => dirs.home.as_ref().map(|h| h.join(".distcc").join("hosts")),
    };
    let sys_file = sysconf_dir.join("distcc").join("hosts");
    for path in user_file
        .into_iter()
        .chain(std::iter::once(sys_file.clone()))
    {
        if readable_file(&path) {
            return Ok(HostListSource::File(path));
        }
        log::trace!("not reading {}: missing or unreadable", path.display());
    }
    Err(HostsError::NoHostList {
        sysconf_hosts: sys_file,
    })
}

fn readable_file(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    path.is_file() && unsafe { libc::access(c.as_ptr(), libc::R_OK) } == 0
}

/// Load the host list for compiling: [`find_source`], then a lenient parse (bad tokens are
/// logged as warnings and skipped), then `--randomize` with a per-process seed.
/// Fails only when no usable host is left (the client then compiles locally).
pub(crate) fn load(
    hosts_var: Option<&str>,
    dirs: &Dirs,
    sysconf_dir: &Path,
) -> Result<HostList, HostsError> {
    let (text, name) = match find_source(hosts_var, dirs, sysconf_dir)? {
        HostListSource::Env(text) => (text, "$DISTCC_HOSTS".to_string()),
        HostListSource::File(path) => {
            let text = std::fs::read(&path).map_err(|source| HostsError::Read {
                path: path.clone(),
                source,
            })?;
            (
                String::from_utf8_lossy(&text).into_owned(),
                path.display().to_string(),
            )
        }
    };
    let (mut list, errors) = parse_lenient_named(&text, &name);
    let mut no_hosts = None;
    for e in errors {
        match e {
            HostsError::NoHosts { .. } => no_hosts = Some(e),
            other => log::warn!("{other}; skipping it"),
        }
    }
    if let Some(at) = list.zeroconf_at {
        add_zeroconf_hosts(&mut list, at, dirs);
        if list.hosts.is_empty() {
            no_hosts = Some(HostsError::NoHosts { source_name: name });
        }
    }
    if let Some(e) = no_hosts {
        log::warn!("{e}");
        return Err(e);
    }
    let seed = fastrand::u64(..);
    list.apply_randomize(seed);
    Ok(list)
}

/// Insert the servers of the zeroconf cache at `at` (the place of `+zeroconf`). Problems
/// are warnings: the other hosts of the list still work.
fn add_zeroconf_hosts(list: &mut HostList, at: usize, dirs: &Dirs) {
    let (text, path) = match crate::zeroconf::cached_hosts(dirs) {
        Ok(t) => t,
        Err(e) => {
            log::warn!("+zeroconf: {e}");
            return;
        }
    };
    let (found, errors) = parse_lenient_named(&text, &path.display().to_string());
    for e in errors {
        if !matches!(e, HostsError::NoHosts { .. }) {
            log::warn!("{e}; skipping it");
        }
    }
    if found.hosts.is_empty() {
        log::info!("+zeroconf: no distcc servers found by mDNS yet");
    }
    let at = at.min(list.hosts.len());
    list.hosts.splice(at..at, found.hosts);
}

/// [`load`] with `/etc/distcc/hosts` as the system list.
pub fn load_default(hosts_var: Option<&str>, dirs: &Dirs) -> Result<HostList, HostsError> {
    load(hosts_var, dirs, Path::new("/etc"))
}

// ---------------------------------------------------------------------------------------
// Tokenizer

struct Token<'a> {
    text: &'a str,
    line: usize,
    column: usize,
}

/// Bytes that separate tokens (C `isspace`). `#` also ends a token and starts a comment.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut column = 1;
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c == '#' {
            // Comment to end of line; the newline itself is handled as space below.
            while let Some(&(_, c)) = chars.peek() {
                if c == '\n' || c == '\r' {
                    break;
                }
                chars.next();
                column += 1;
            }
        } else if is_space(c) {
            chars.next();
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        } else {
            let start = i;
            let start_col = column;
            let mut end = text.len();
            while let Some(&(j, c)) = chars.peek() {
                if is_space(c) || c == '#' {
                    end = j;
                    break;
                }
                chars.next();
                column += 1;
            }
            out.push(Token {
                text: &text[start..end],
                line,
                column: start_col,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Token grammar

enum Item {
    Host(HostSpec),
    Randomize,
    LocalSlots(u32),
    LocalSlotsCpp(u32),
    Zeroconf,
}

/// A problem at a byte offset inside a token.
struct TokenError {
    offset: usize,
    problem: String,
}

fn err<T>(offset: usize, problem: impl Into<String>) -> Result<T, TokenError> {
    Err(TokenError {
        offset,
        problem: problem.into(),
    })
}

/// A cursor over one token.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    /// Take text up to (not including) the first char in `stops`.
    fn take_until(&mut self, stops: &[char]) -> &'a str {
        let rest = self.rest();
        let n = rest.find(|c| stops.contains(&c)).unwrap_or(rest.len());
        self.pos += n;
        &rest[..n]
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }
}

fn parse_token(tok: &str) -> Result<Item, TokenError> {
    if tok == "--randomize" {
        return Ok(Item::Randomize);
    }
    if let Some(rest) = tok.strip_prefix("--localslots_cpp") {
        return keyword_count(tok, rest).map(Item::LocalSlotsCpp);
    }
    if let Some(rest) = tok.strip_prefix("--localslots") {
        return keyword_count(tok, rest).map(Item::LocalSlots);
    }
    if tok.starts_with("--") {
        return err(
            0,
            format!(
                "unknown keyword \"{tok}\" (known: --randomize, --localslots=N, \
                 --localslots_cpp=N)"
            ),
        );
    }
    if tok == "+zeroconf" {
        return Ok(Item::Zeroconf);
    }
    if tok == "localhost" || tok.starts_with("localhost/") {
        return parse_localhost(tok).map(Item::Host);
    }
    if tok.contains('@') {
        return parse_ssh(tok).map(Item::Host);
    }
    parse_tcp(tok).map(Item::Host)
}

/// `--localslots=N` / `--localslots/N` (and `_cpp`): `rest` is what follows the keyword.
fn keyword_count(tok: &str, rest: &str) -> Result<u32, TokenError> {
    let mut c = Cursor { s: tok, pos: 0 };
    c.pos = tok.len() - rest.len();
    match multiplier(&mut c)? {
        Some(n) if c.rest().is_empty() => Ok(n),
        Some(_) => err(
            c.pos,
            format!("unexpected text \"{}\" after the slot count", c.rest()),
        ),
        None => err(
            c.pos,
            "expected '=N' or '/N' with a slot count N > 0 after the keyword",
        ),
    }
}

/// An optional `/N` or `=N` with N > 0.
fn multiplier(c: &mut Cursor<'_>) -> Result<Option<u32>, TokenError> {
    let start = c.pos;
    if !(c.eat('/') || c.eat('=')) {
        return Ok(None);
    }
    let digits = c.take_until(&[]);
    let n_digits = digits
        .find(|ch: char| !ch.is_ascii_digit())
        .unwrap_or(digits.len());
    c.pos = c.pos - digits.len() + n_digits;
    let digits = &digits[..n_digits];
    match digits.parse::<u32>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => err(
            start,
            format!(
                "bad multiplier \"{}\": the slot count after '{}' must be a number > 0",
                &c.s[start..c.pos],
                &c.s[start..start + 1]
            ),
        ),
    }
}

fn parse_localhost(tok: &str) -> Result<HostSpec, TokenError> {
    let mut c = Cursor {
        s: tok,
        pos: "localhost".len(),
    };
    let slots = multiplier(&mut c)?.unwrap_or(DEFAULT_LOCALHOST_SLOTS);
    if !c.rest().is_empty() {
        return err(
            c.pos,
            format!(
                "unexpected text \"{}\" after localhost (localhost takes no port or options; \
                 write 127.0.0.1 for a TCP connection to this machine)",
                c.rest()
            ),
        );
    }
    Ok(HostSpec {
        spec: tok.to_string(),
        kind: HostKind::Local,
        slots,
        protocol: 1,
        lzo: false,
        cpp: false,
        down: false,
        auth: None,
    })
}

fn parse_ssh(tok: &str) -> Result<HostSpec, TokenError> {
    let mut c = Cursor { s: tok, pos: 0 };
    let user = c.take_until(&['@']);
    c.eat('@');
    let host_start = c.pos;
    let host = c.take_until(&['/', '=', ':', ',', '@']);
    if host.is_empty() {
        return err(
            host_start,
            "hostname is required in SSH host specification ([USER]@HOST)",
        );
    }
    if c.peek() == Some('@') {
        return err(c.pos, "more than one '@' in SSH host specification");
    }
    let slots = multiplier(&mut c)?;
    let mut command = None;
    if c.eat(':') {
        let cmd_start = c.pos;
        let cmd = c.take_until(&[',']);
        if cmd.is_empty() {
            return err(
                cmd_start,
                "empty command after ':' (write @HOST:/path/to/distccd)",
            );
        }
        command = Some(cmd.to_string());
    }
    let opts = options(&mut c)?;
    finish(
        tok,
        HostKind::Ssh {
            user: (!user.is_empty()).then(|| user.to_string()),
            host: host.to_string(),
            command,
        },
        slots.unwrap_or(DEFAULT_REMOTE_SLOTS),
        opts,
    )
}

fn parse_tcp(tok: &str) -> Result<HostSpec, TokenError> {
    let mut c = Cursor { s: tok, pos: 0 };
    let host = if c.eat('[') {
        let start = c.pos;
        let h = c.take_until(&[']', '/', ',']);
        if !c.eat(']') {
            return err(
                start - 1,
                "IPv6 Hostname requires closing ']' (write [ADDR]:PORT)",
            );
        }
        if h.is_empty() {
            return err(start, "empty IPv6 address between '[' and ']'");
        }
        h
    } else {
        let h = c.take_until(&['/', ':', ',', '=']);
        if h.is_empty() {
            return err(0, "hostname is required in TCP host specification");
        }
        h
    };
    let mut slots = multiplier(&mut c)?;
    let mut port = crate::DEFAULT_PORT;
    if c.eat(':') {
        let start = c.pos;
        let digits = c.take_until(&['/', '=', ',']);
        port = match digits.parse::<u16>() {
            Ok(p) if p > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => p,
            _ if digits.len() > 1 && digits.contains(':') => {
                return err(0, "an IPv6 address needs brackets: [ADDR] or [ADDR]:PORT");
            }
            _ => {
                return err(
                    start,
                    format!("invalid tcp port \"{digits}\" (expected a number from 1 to 65535)"),
                );
            }
        };
    }
    let slot_pos = c.pos;
    if let Some(n) = multiplier(&mut c)? {
        if slots.is_some() {
            return err(slot_pos, "slot count given twice");
        }
        slots = Some(n);
    }
    let opts = options(&mut c)?;
    finish(
        tok,
        HostKind::Tcp {
            host: host.to_string(),
            port,
        },
        slots.unwrap_or(DEFAULT_REMOTE_SLOTS),
        opts,
    )
}

#[derive(Default)]
struct Options {
    lzo: bool,
    cpp: bool,
    down: bool,
    auth: Option<String>,
    end: usize,
    cpp_at: usize,
}

/// `,opt,opt…` to the end of the token; anything else left over is an error.
fn options(c: &mut Cursor<'_>) -> Result<Options, TokenError> {
    let mut o = Options::default();
    if !c.rest().is_empty() && c.peek() != Some(',') {
        return err(
            c.pos,
            format!(
                "unexpected text \"{}\" (options start with ',', e.g. HOST,lzo)",
                c.rest()
            ),
        );
    }
    while c.eat(',') {
        let start = c.pos;
        let opt = c.take_until(&[',']);
        match opt {
            "lzo" => o.lzo = true,
            "cpp" => {
                o.cpp = true;
                o.cpp_at = start;
            }
            "down" => o.down = true,
            "auth" => o.auth = Some(String::new()),
            _ if opt.starts_with("auth=") && opt.len() > 5 => o.auth = Some(opt[5..].to_string()),
            "" => return err(start, "empty option (two commas, or a trailing comma)"),
            _ => {
                return err(
                    start,
                    format!(
                        "unrecognized option \"{opt}\" (known options: lzo, cpp, down, auth, \
                         auth=NAME)"
                    ),
                );
            }
        }
    }
    o.end = c.pos;
    Ok(o)
}

fn finish(tok: &str, kind: HostKind, slots: u32, o: Options) -> Result<HostSpec, TokenError> {
    debug_assert_eq!(o.end, tok.len());
    if o.cpp && !o.lzo {
        return err(o.cpp_at, "pump mode (',cpp') requires compression (',lzo')");
    }
    let protocol = match (o.lzo, o.cpp) {
        (true, true) => 3,
        (true, false) => 2,
        _ => 1,
    };
    Ok(HostSpec {
        spec: tok.to_string(),
        kind,
        slots,
        protocol,
        lzo: o.lzo,
        cpp: o.cpp,
        down: o.down,
        auth: o.auth,
    })
}

impl fmt::Display for HostSpec {
    /// The verbatim spec, as distcc prints hosts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

#[cfg(test)]
mod tests;
