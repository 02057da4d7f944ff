//! The server's view of a received command line: where the source and output words are,
//! whether it is a compile at all, and how to point it at the job's temp files
//! (distcc 3.4 `serve.c`, `arg.c`, `srvrpc.c`; reference §1.7, §1.8).

use thiserror::Error;

use crate::options::{self, Class, Opt, Tool};

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum ArgvError {
    #[error("empty command line")]
    Empty,
    #[error("not a compile job (no -c or -S)")]
    NotCompile,
    #[error("{0} must run on the client")]
    LocalOnly(String),
    #[error("no source file in the command line")]
    NoSource,
    #[error("more than one source file: {0} and {1}")]
    TwoSources(String, String),
    #[error("-o needs an argument")]
    MissingOutput,
    /// The word names the option, so the daemon's log says what was refused and why.
    #[error("option {option} is refused on a distcc server: {why}")]
    Refused { option: String, why: String },
    #[error("option {0} needs an argument and has none")]
    MissingArgument(String),
    #[error("argument {0:?} is neither an option nor the source file")]
    Operand(String),
    /// A directives-only source (`-fpreprocessed -fdirectives-only`) that could make the
    /// server's compiler read a file, or that gcc might lex otherwise than the check.
    #[error("the directives-only source has {why} near line {line}")]
    UnsafeSource { line: u32, why: String },
}

fn refused(option: impl Into<String>, why: impl Into<String>) -> ArgvError {
    ArgvError::Refused {
        option: option.into(),
        why: why.into(),
    }
}

/// Which protocol the request came with: what the server can promise differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Protocols 1 and 2: one preprocessed source, nothing else.
    Plain,
    /// Protocol 3: a tree of sources under a private root, the client's `cwd` inside it.
    Pump,
}

fn extension(word: &str) -> Option<&str> {
    let name = word.rsplit('/').next().unwrap_or(word);
    name.rsplit_once('.').map(|(_, e)| e)
}

/// Is this word a source file by its extension? (The client's table.)
pub(crate) use crate::args::is_source;

/// The extension the server gives the received preprocessed source (reference §1.8).
pub(crate) fn temp_input_extension(source: &str) -> &'static str {
    match extension(source).unwrap_or("") {
        "c" | "i" => ".i",
        "cc" | "cpp" | "cxx" | "cp" | "c++" | "C" | "ii" => ".ii",
        "m" | "mi" => ".mi",
        "mm" | "M" | "mii" => ".mii",
        "s" | "S" => ".s",
        _ => ".tmp",
    }
}

use crate::options::preprocessed_language;

/// Languages a pump-mode request may name: real sources of the C family.
fn pump_language(lang: &str) -> bool {
    preprocessed_language(lang).is_some()
}

/// Does `path`, taken from `cwd` (both client paths, `cwd` absolute), stay inside the
/// client's `/` — that is, inside the job's root once re-rooted? Purely lexical: the
/// tree code never lets a received file be created through a symlink.
fn stays_in_root(cwd: &str, path: &str) -> bool {
    let mut depth: usize = 0;
    let base = if path.starts_with('/') { "" } else { cwd };
    for part in base.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

/// Vet every word of a received command line against [`crate::options`]: refuse what
/// runs or loads a program, writes a file other than the object (distcc only returns the
/// object, so such jobs belong on the client), reads a server file, or is a response
/// file; confine what may stay. Gives the command line to run (plain mode: `-x LANG`
/// mapped to its preprocessed form; pump mode: the client's `-MF` dropped, since the
/// server's own always comes last).
pub(crate) fn vet(argv: &[String], mode: Mode, cwd: &str) -> Result<Vec<String>, ArgvError> {
    let Some(first) = argv.first() else {
        return Err(ArgvError::Empty);
    };
    let mut out = vec![first.clone()];
    let mut directives_only: Vec<&str> = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let word = argv[i].as_str();
        let hit = options::lookup(word, argv.get(i + 1).map(String::as_str));
        if hit.response_file {
            return Err(refused(
                word,
                "a response file would be read on the server; expand it on the client",
            ));
        }
        let words = &argv[i..(i + hit.consumed).min(argv.len())];
        i += hit.consumed;
        let Some(opt) = hit.opt else {
            if hit.is_operand(word) && mode == Mode::Pump && !stays_in_root(cwd, word) {
                return Err(refused(word, "it climbs out of the job's root"));
            }
            out.extend_from_slice(words);
            continue;
        };
        if hit.missing {
            return Err(ArgvError::MissingArgument(opt.name.to_owned()));
        }
        let value = hit.value.unwrap_or("");
        if options::writes(opt.class, hit.value) {
            return Err(refused(opt.name, opt.why));
        }
        match opt.class {
            Class::Runs | Class::Reads | Class::Writes => {
                return Err(refused(opt.name, opt.why));
            }
            // What our client sends with a directives-only source: allowed as the pair
            // only, and the source is checked ([`check_plain_source`]).
            Class::CppMode if mode == Mode::Plain && DIRECTIVES_ONLY_FLAGS.contains(&word) => {
                directives_only.push(word);
            }
            Class::CppMode if mode == Mode::Plain => return Err(refused(opt.name, opt.why)),
            Class::IncludeFile if mode == Mode::Plain => {
                return Err(refused(opt.name, opt.why));
            }
            Class::DepsFile if mode == Mode::Plain => {
                return Err(refused(opt.name, "it writes a dependency file"));
            }
            // The server's own `-MF` comes last and wins; the client's is dropped so no
            // later word can ever make it the one gcc uses.
            Class::DepsFile => continue,
            Class::IncludeDir | Class::IncludeFile
                if mode == Mode::Pump && !stays_in_root(cwd, value) =>
            {
                return Err(refused(
                    opt.name,
                    format!("its path {value:?} climbs out of the job's root"),
                ));
            }
            Class::Language => {
                let mapped = match mode {
                    Mode::Plain => preprocessed_language(value),
                    Mode::Pump => pump_language(value).then_some(value),
                };
                let Some(lang) = mapped else {
                    return Err(refused(
                        format!("{} {value}", opt.name),
                        "distcc compiles only C, C++ and Objective-C remotely",
                    ));
                };
                out.push("-x".into());
                out.push(lang.into());
                continue;
            }
            Class::Pass(tool) => vet_items(opt, tool, value, mode)?,
            _ => {}
        }
        out.extend_from_slice(words);
    }
    if !directives_only.is_empty() {
        vet_directives_only(&out, &directives_only)?;
    }
    Ok(out)
}

/// A plain-mode command line with [`DIRECTIVES_ONLY_FLAGS`]: both, once each, and
/// nothing that changes how gcc reads the source's bytes (which would let a directive
/// hide from [`check_directives_only_source`]) or that brings in other files.
fn vet_directives_only(out: &[String], flags: &[&str]) -> Result<(), ArgvError> {
    let mut sorted = flags.to_vec();
    sorted.sort_unstable();
    if sorted != ["-fdirectives-only", "-fpreprocessed"] {
        let name = flags.first().copied().unwrap_or("-fdirectives-only");
        return Err(refused(
            name,
            "-fpreprocessed and -fdirectives-only are allowed only together, once each",
        ));
    }
    let mut i = 1;
    while i < out.len() {
        let word = out[i].as_str();
        let hit = options::lookup(word, out.get(i + 1).map(String::as_str));
        i += hit.consumed;
        let why = if [
            "-traditional",
            "-traditional-cpp",
            "-fmodules-ts",
            "-fmodules",
        ]
        .contains(&word)
            || word.starts_with("-fmodule-")
        {
            "it changes what the preprocessor does with a directives-only source"
        } else if word.starts_with("-finput-charset=") {
            "it changes how the directives-only source's bytes are read"
        } else if hit.class() == Class::Pass(Tool::Preprocessor) {
            "preprocessor options are the client's business"
        } else {
            continue;
        };
        return Err(refused(hit.name(word), why));
    }
    Ok(())
}

/// Vet the items a pass-through option hands to another tool (`-Wp,a,b`,
/// `-Xassembler X`, `-Xclang X`).
fn vet_items(outer: &Opt, tool: Tool, value: &str, mode: Mode) -> Result<(), ArgvError> {
    let items = options::pass_items(outer, value);
    let name = |item: &str| {
        format!(
            "{}{}{item}",
            outer.name,
            if outer.name.ends_with(',') || outer.name.ends_with('=') {
                ""
            } else {
                " "
            }
        )
    };
    match tool {
        Tool::Linker => Ok(()),
        Tool::Assembler => match items
            .iter()
            .find_map(|it| options::assembler_item_hazard(it).map(|why| (it, why)))
        {
            Some((it, why)) => Err(refused(name(it), why)),
            None => Ok(()),
        },
        Tool::Clang => match items.iter().find(|it| !options::clang_item_is_safe(it)) {
            Some(it) => Err(refused(
                name(it),
                "only a few -Xclang options that shape diagnostics are allowed",
            )),
            None => Ok(()),
        },
        Tool::Preprocessor => {
            let mut j = 0;
            while j < items.len() {
                let item = items[j].as_str();
                let hit = options::lookup(item, items.get(j + 1).map(String::as_str));
                j += hit.consumed;
                if hit.response_file {
                    return Err(refused(
                        name(item),
                        "a response file would be read on the server",
                    ));
                }
                let Some(opt) = hit.opt else {
                    if hit.is_operand(item) {
                        return Err(refused(name(item), "it names a file for the preprocessor"));
                    }
                    continue;
                };
                if hit.missing {
                    return Err(ArgvError::MissingArgument(name(opt.name)));
                }
                let why = match opt.class {
                    Class::Runs | Class::Reads | Class::Writes | Class::IncludeFile => opt.why,
                    _ if options::writes(opt.class, hit.value) => opt.why,
                    // cc1's `-MD F`/`-MMD F` name the file the dependencies go to.
                    Class::DepsOn | Class::DepsFile => "it writes a dependency file",
                    Class::Output => "it writes another output file",
                    Class::CppMode if mode == Mode::Plain => opt.why,
                    Class::IncludeDir if mode == Mode::Pump => {
                        "include paths must be separate words in pump mode"
                    }
                    Class::Language | Class::Pass(_) | Class::PreprocessOnly | Class::DepsOnly => {
                        "the client handles it"
                    }
                    _ => continue,
                };
                return Err(refused(name(opt.name), why));
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------
// Plain mode with `-fpreprocessed -fdirectives-only`.
//
// The client preprocessed with `gcc -E -fdirectives-only`: includes and conditionals are
// resolved, macros are left for the server, so the object's line tables and the
// diagnostics' macro notes are a local build's. But gcc compiling with
// `-fpreprocessed -fdirectives-only` obeys *every* directive again, `#include` included:
// a request could read the server's files. So the server compiles such a source only
// when no directive in it, as gcc will lex it, does anything but define macros, mark
// lines or pass a pragma (what gcc's own directives-only output holds; pragmas are obeyed
// on a plain `.i` too), and no `__has_include` can probe a file. The client runs the same
// check before sending, so a source that fails it is compiled locally instead of refused.

/// The two words the client adds to a plain-mode command line for a directives-only
/// source, in this order; a server accepts them only together.
pub(crate) const DIRECTIVES_ONLY_FLAGS: [&str; 2] = ["-fpreprocessed", "-fdirectives-only"];

/// Directives a directives-only source may hold: none reads a file.
const HARMLESS_DIRECTIVES: &[&[u8]] = &[
    b"define",
    b"undef",
    b"pragma",
    b"ident",
    b"sccs",
    b"line",
    b"assert",
    b"unassert",
    b"error",
    b"warning",
];

/// Identifiers that make the preprocessor look for a file even outside `#if`.
const FILE_PROBES: &[&[u8]] = &[b"__has_include", b"__has_include_next", b"__has_embed"];

/// A lexer setting gcc may or may not use for this command line: both are tried when
/// the command line does not say, and the source must pass under each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    On,
    Off,
    Either,
}

impl Tri {
    fn values(self) -> &'static [bool] {
        match self {
            Tri::On => &[true],
            Tri::Off => &[false],
            Tri::Either => &[false, true],
        }
    }
}

/// How gcc lexes the source, as far as the command line tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LexSettings {
    /// `R"d(…)d"` raw strings (C++11 and later, GNU C99 and later).
    raw_strings: Tri,
    /// `1'000` (C++14 and later, C23).
    digit_separators: Tri,
    /// `??/` is a backslash (`-trigraphs`, the ISO `-std=` modes).
    trigraphs: Tri,
    /// `//` comments (all but C90).
    line_comments: Tri,
}

fn lex_settings(argv: &[String]) -> LexSettings {
    let mut cxx = None;
    let mut std: Option<&str> = None;
    let mut trigraphs = false;
    let mut i = 1;
    while i < argv.len() {
        let word = argv[i].as_str();
        let hit = options::lookup(word, argv.get(i + 1).map(String::as_str));
        i += hit.consumed;
        if hit.class() == Class::Language {
            let lang = hit.value.unwrap_or("");
            cxx = (lang != "none").then(|| lang.contains("++"));
        } else if let Some(s) = word.strip_prefix("-std=") {
            std = Some(s);
        } else if word == "-ansi" {
            std = Some("ansi");
        } else if word == "-trigraphs" {
            trigraphs = true;
        } else if hit.is_operand(word) && cxx.is_none() && is_source(word) {
            let e = extension(word).unwrap_or("");
            cxx = Some(!matches!(e, "c" | "i" | "m" | "mi"));
        }
    }
    let cxx = cxx.unwrap_or(false);
    use Tri::*;
    let Some(std) = std else {
        // The compiler's default standard, which differs between gcc versions.
        return LexSettings {
            raw_strings: Either,
            digit_separators: Either,
            trigraphs: if trigraphs { On } else { Off },
            line_comments: On,
        };
    };
    let gnu = std.starts_with("gnu");
    let year = std
        .rsplit(':')
        .next()
        .unwrap_or(std)
        .trim_start_matches(|c: char| !c.is_ascii_digit());
    let old_cxx = cxx && ["98", "03"].contains(&year);
    let c90 = !cxx && (std == "ansi" || ["89", "90", "1990", "199409"].contains(&year));
    LexSettings {
        raw_strings: match (cxx, gnu) {
            (true, _) if old_cxx => Off,
            (true, _) => On,
            (false, true) if c90 => Off,
            (false, true) => Either,
            (false, false) => Off,
        },
        digit_separators: if cxx && (old_cxx || year == "11" || year == "0x") {
            Off
        } else {
            Either
        },
        trigraphs: if trigraphs || !gnu { Either } else { Off },
        line_comments: if c90 && !gnu { Either } else { On },
    }
}

/// Check a received plain-mode source before compiling it: when the command line has
/// [`DIRECTIVES_ONLY_FLAGS`], the source must hold no directive that reads a file.
pub(crate) fn check_plain_source(argv: &[String], source: &[u8]) -> Result<(), ArgvError> {
    if !argv.iter().any(|w| w == DIRECTIVES_ONLY_FLAGS[1]) {
        return Ok(());
    }
    check_directives_only_source(argv, source)
}

/// The check itself (see the notes above [`DIRECTIVES_ONLY_FLAGS`]); `argv` is the
/// command line the server runs, which says how gcc lexes.
pub(crate) fn check_directives_only_source(
    argv: &[String],
    source: &[u8],
) -> Result<(), ArgvError> {
    let s = lex_settings(argv);
    let has_trigraph = source
        .windows(3)
        .any(|w| w.starts_with(b"??") && trigraph(w[2]).is_some());
    let trigraphs = if has_trigraph {
        s.trigraphs.values()
    } else {
        &[false]
    };
    for &trig in trigraphs {
        let logical = Logical::new(source, trig);
        for &raw in s.raw_strings.values() {
            for &sep in s.digit_separators.values() {
                for &lc in s.line_comments.values() {
                    let opts = Opts {
                        raw,
                        sep,
                        line_comments: lc,
                    };
                    scan_source(&logical, opts).map_err(|(line, why)| ArgvError::UnsafeSource {
                        line,
                        why: why.to_owned(),
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// The source after translation phases 1 and 2 (trigraphs, line splices), remembering
/// where a splice or trigraph was undone (a raw string's body keeps them) and which
/// physical line each byte came from.
struct Logical {
    bytes: Vec<u8>,
    line: Vec<u32>,
    /// Positions in `bytes` right after which a splice was removed or before a replaced
    /// trigraph.
    edits: Vec<usize>,
}

fn is_nvspace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | 0x0b | 0x0c | 0)
}

fn is_newline(c: u8) -> bool {
    c == b'\n' || c == b'\r'
}

impl Logical {
    fn new(src: &[u8], trigraphs: bool) -> Logical {
        let mut bytes = Vec::with_capacity(src.len());
        let mut line = Vec::with_capacity(src.len());
        let mut edits = Vec::new();
        let mut ln: u32 = 1;
        let mut i = 0;
        while i < src.len() {
            let (c, width) = match (src[i], src.get(i + 1), src.get(i + 2)) {
                (b'?', Some(b'?'), Some(&t)) if trigraphs => match trigraph(t) {
                    Some(c) => (c, 3),
                    None => (b'?', 1),
                },
                (c, _, _) => (c, 1),
            };
            if c == b'\\' {
                // A splice: backslash, blanks, newline.
                let mut j = i + width;
                while j < src.len() && is_nvspace(src[j]) {
                    j += 1;
                }
                let nl = match (src.get(j), src.get(j + 1)) {
                    (Some(b'\r'), Some(b'\n')) => 2,
                    (Some(b'\n' | b'\r'), _) => 1,
                    _ => 0,
                };
                if nl > 0 {
                    edits.push(bytes.len());
                    ln = ln.saturating_add(1);
                    i = j + nl;
                    continue;
                }
            }
            if width == 3 {
                edits.push(bytes.len());
            }
            bytes.push(c);
            line.push(ln);
            if c == b'\n' || (c == b'\r' && src.get(i + 1) != Some(&b'\n')) {
                ln = ln.saturating_add(1);
            }
            i += width;
        }
        Logical { bytes, line, edits }
    }

    fn edited_within(&self, from: usize, to: usize) -> bool {
        let k = self.edits.partition_point(|&e| e < from);
        self.edits.get(k).is_some_and(|&e| e <= to)
    }
}

fn trigraph(c: u8) -> Option<u8> {
    Some(match c {
        b'=' => b'#',
        b'/' => b'\\',
        b'\'' => b'^',
        b'(' => b'[',
        b')' => b']',
        b'!' => b'|',
        b'<' => b'{',
        b'>' => b'}',
        b'-' => b'~',
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy)]
struct Opts {
    raw: bool,
    sep: bool,
    line_comments: bool,
}

fn ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'\\' || c >= 0x80
}

type Unsafe = (u32, &'static str);

/// Lex like gcc (tokens only as far as they decide where comments, literals and lines
/// begin and end) and stop at the first directive or identifier that could read a file,
/// or at any spelling gcc might lex differently from us.
fn scan_source(src: &Logical, o: Opts) -> Result<(), Unsafe> {
    let b = &src.bytes;
    let n = b.len();
    let at = |i: usize| b.get(i).copied();
    let line = |i: usize| {
        src.line
            .get(i.min(n.saturating_sub(1)))
            .copied()
            .unwrap_or(1)
    };
    let mut i = 0;
    let mut bol = true;
    while i < n {
        let c = b[i];
        if is_newline(c) {
            bol = true;
            i += 1;
            continue;
        }
        if is_nvspace(c) {
            i += 1;
            continue;
        }
        if c == b'/' && at(i + 1) == Some(b'*') {
            let (end, had_newline) = skip_block_comment(b, i + 2);
            // gcc takes a `#` after a comment that began a line, or that held a line
            // break, for a directive.
            bol = bol || had_newline;
            i = end;
            continue;
        }
        if c == b'/' && at(i + 1) == Some(b'/') && o.line_comments {
            let mut j = i + 2;
            while j < n && !is_newline(b[j]) {
                j += 1;
            }
            // In C90 this is `/` and maybe a block comment: refuse the ambiguity.
            if b[i + 1..j].windows(2).any(|w| w == b"/*") {
                return Err((line(i), "a // comment that holds /*"));
            }
            i = j;
            continue;
        }
        if bol && (c == b'#' || (c == b'%' && at(i + 1) == Some(b':'))) {
            let start = if c == b'#' { i + 1 } else { i + 2 };
            i = check_directive(b, start).map_err(|why| (line(i), why))?;
            bol = false;
            continue;
        }
        bol = false;
        if c == b'"' || c == b'\'' {
            i = skip_literal(b, i + 1, c);
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && at(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let mut j = i + 1;
            while j < n {
                let d = b[j];
                let sign =
                    (d == b'+' || d == b'-') && matches!(b[j - 1], b'e' | b'E' | b'p' | b'P');
                if d.is_ascii_alphanumeric() || d == b'_' || d == b'.' || sign {
                    j += 1;
                } else if d == b'\'' && o.sep {
                    match at(j + 1) {
                        Some(e) if e.is_ascii_alphanumeric() || e == b'_' => j += 2,
                        Some(e) if e == b'$' || e == b'\\' || e >= 0x80 => {
                            return Err((line(i), "a number gcc may lex differently"));
                        }
                        _ => break,
                    }
                } else if o.sep && (d == b'$' || d == b'\\' || d >= 0x80) {
                    return Err((line(i), "a number gcc may lex differently"));
                } else {
                    break;
                }
            }
            i = j;
            continue;
        }
        if ident_byte(c) {
            let mut j = i + 1;
            while j < n && ident_byte(b[j]) {
                j += 1;
            }
            let word = &b[i..j];
            if FILE_PROBES.iter().any(|p| word.ends_with(p)) {
                return Err((line(i), "__has_include probes the server's files"));
            }
            if o.raw && at(j) == Some(b'"') && word.ends_with(b"R") {
                if ![&b"R"[..], b"u8R", b"uR", b"UR", b"LR"].contains(&word) {
                    return Err((line(i), "a raw string gcc may lex differently"));
                }
                i = skip_raw_string(src, j + 1).map_err(|why| (line(i), why))?;
                continue;
            }
            i = j;
            continue;
        }
        i += 1;
    }
    Ok(())
}

/// From just inside `/*`: the index after `*/` (or the end) and whether a line ended.
fn skip_block_comment(b: &[u8], mut j: usize) -> (usize, bool) {
    let mut had_newline = false;
    while j < b.len() {
        if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
            return (j + 2, had_newline);
        }
        had_newline |= is_newline(b[j]);
        j += 1;
    }
    (j, had_newline)
}

/// From just inside a quote: the index after the closing quote, or of the line's end
/// (gcc ends an unterminated literal there).
fn skip_literal(b: &[u8], mut j: usize, quote: u8) -> usize {
    while j < b.len() {
        match b[j] {
            c if c == quote => return j + 1,
            b'\\' if b.get(j + 1).is_some_and(|&c| !is_newline(c)) => j += 2,
            c if is_newline(c) => return j,
            _ => j += 1,
        }
    }
    j
}

/// From just inside `R"`: the index after the closing `)delim"`. gcc reads a raw string
/// with splices and trigraphs undone; one that holds either is refused, not guessed.
fn skip_raw_string(src: &Logical, start: usize) -> Result<usize, &'static str> {
    let b = &src.bytes;
    let mut j = start;
    while j < b.len() && j - start <= 16 && b[j] != b'(' {
        if matches!(
            b[j],
            b' ' | b')' | b'\\' | b'\t' | 0x0b | 0x0c | b'\n' | b'\r'
        ) {
            return Err("a malformed raw string");
        }
        j += 1;
    }
    if b.get(j) != Some(&b'(') {
        return Err("a malformed raw string");
    }
    let delim = &b[start..j];
    let body = j + 1;
    let mut k = body;
    while k < b.len() {
        if b[k] == b')'
            && b[k + 1..].starts_with(delim)
            && b.get(k + 1 + delim.len()) == Some(&b'"')
        {
            let end = k + 2 + delim.len();
            if src.edited_within(start, end) {
                return Err("a raw string with a line splice or trigraph");
            }
            return Ok(end);
        }
        k += 1;
    }
    Err("an unterminated raw string")
}

/// From just after `#`: check the directive's name; gives where its name ends.
fn check_directive(b: &[u8], mut j: usize) -> Result<usize, &'static str> {
    loop {
        match b.get(j) {
            Some(&c) if is_nvspace(c) => j += 1,
            Some(b'/') if b.get(j + 1) == Some(&b'*') => j = skip_block_comment(b, j + 2).0,
            _ => break,
        }
    }
    match b.get(j) {
        // `#` alone, or a line marker `# 12 "file" 1 3`.
        None => return Ok(j),
        Some(&c) if is_newline(c) || c.is_ascii_digit() => return Ok(j),
        Some(b'/') if b.get(j + 1) == Some(&b'/') => return Ok(j),
        _ => {}
    }
    let start = j;
    while b
        .get(j)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        j += 1;
    }
    let name = &b[start..j];
    if !name.is_empty() && HARMLESS_DIRECTIVES.contains(&name) {
        Ok(j)
    } else {
        Err("a directive other than #define, #undef, #pragma or a line marker")
    }
}

/// Where the interesting words of a compile command are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    pub source: usize,
    /// The output option: `-oX`/`--output=X` (joined) or the word after `-o`/`--output`.
    pub output: Option<Output>,
    /// The client's output name, as it gave it.
    pub output_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Output {
    Separate(usize),
    Joined(usize),
}

/// Check that `argv` is a distributable compile and find its source and output.
pub(crate) fn scan(argv: &[String]) -> Result<Scan, ArgvError> {
    if argv.is_empty() {
        return Err(ArgvError::Empty);
    }
    let mut compile = false;
    let mut source: Option<usize> = None;
    let mut output = None;
    let mut output_name: Option<String> = None;
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].as_str();
        let hit = options::lookup(a, argv.get(i + 1).map(String::as_str));
        match hit.class() {
            Class::Compile => compile = true,
            Class::PreprocessOnly | Class::DepsOnly => {
                return Err(ArgvError::LocalOnly(a.into()));
            }
            Class::Output => {
                if hit.missing {
                    return Err(ArgvError::MissingOutput);
                }
                let value = hit.value.unwrap_or("").to_owned();
                if output_name.replace(value.clone()).is_some() {
                    return Err(refused(
                        hit.name(a),
                        format!(
                            "a second output ({value:?}) would be written where the client said"
                        ),
                    ));
                }
                output = Some(if hit.consumed == 2 {
                    Output::Separate(i + 1)
                } else {
                    Output::Joined(i)
                });
            }
            _ if hit.opt.is_none() && !a.starts_with('-') && is_source(a) => {
                if let Some(s) = source {
                    return Err(ArgvError::TwoSources(argv[s].clone(), a.into()));
                }
                source = Some(i);
            }
            // A bare `.o` is a linker input `-c` ignores (distcc 3.4 takes it for the output).
            _ if hit.is_operand(a) && !crate::args::is_object(a) => {
                return Err(ArgvError::Operand(a.into()));
            }
            _ => {}
        }
        i += hit.consumed;
    }
    if !compile {
        return Err(ArgvError::NotCompile);
    }
    let source = source.ok_or(ArgvError::NoSource)?;
    Ok(Scan {
        source,
        output,
        output_name,
    })
}

/// Point a protocol-1/2 command at the temp input and output (reference §1.8).
///
/// Diagnostics show no source lines: a preprocessed source's line markers name the
/// client's files, and gcc would read whatever file has that name *here* to quote a line
/// of it (`# 1 "/etc/os-release"` before an error sends this server's file back).
pub(crate) fn rewrite_plain(
    argv: &[String],
    scan: &Scan,
    input: &str,
    output: &str,
) -> Vec<String> {
    let mut out = argv.to_vec();
    out[scan.source] = input.to_owned();
    set_output(&mut out, scan, output);
    let clang = argv
        .first()
        .is_some_and(|c| crate::paths::basename(c).contains("clang"));
    out.push(
        if clang {
            "-fno-caret-diagnostics"
        } else {
            "-fno-diagnostics-show-caret"
        }
        .into(),
    );
    out
}

fn set_output(argv: &mut Vec<String>, scan: &Scan, output: &str) {
    match scan.output {
        Some(Output::Separate(i)) => argv[i] = output.to_owned(),
        Some(Output::Joined(i)) => argv[i] = format!("-o{output}"),
        None => {
            argv.push("-o".into());
            argv.push(output.into());
        }
    }
}

/// What the pump-mode rewrite produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PumpArgv {
    pub argv: Vec<String>,
    /// The `.d` target the client asked for with `-MT` (None: the client's output name).
    pub dotd_target: Option<String>,
}

/// Rewrite a protocol-3 command (already [`vet`]ted) to run inside the temp root
/// (reference §1.7): output and deps file to our temp names, `-MT X` removed (X becomes
/// the `.d` target), `-MMD` added when no `-MD`/`-MMD`, absolute include paths and
/// source re-rooted, and debug/macro paths mapped back so the object names the client's
/// files. The server's `-MF` goes last, after every client word, so nothing can take it
/// as its argument.
pub(crate) fn rewrite_pump(
    argv: &[String],
    scan: &Scan,
    root: &str,
    output: &str,
    deps: &str,
) -> PumpArgv {
    let mut rooted = argv.to_vec();
    set_output(&mut rooted, scan, output);
    if rooted[scan.source].starts_with('/') {
        rooted[scan.source] = format!("{root}{}", rooted[scan.source]);
    }
    let mut out = Vec::with_capacity(rooted.len() + 6);
    let mut dotd_target = None;
    let mut has_md = false;
    if let Some(first) = rooted.first() {
        out.push(first.clone());
    }
    let mut i = 1;
    while i < rooted.len() {
        let a = rooted[i].as_str();
        let hit = options::lookup(a, rooted.get(i + 1).map(String::as_str));
        let words = &rooted[i..(i + hit.consumed).min(rooted.len())];
        i += hit.consumed;
        let (Some(opt), Some(value)) = (hit.opt, hit.value) else {
            if hit.class() == Class::DepsOn {
                has_md = true;
            }
            out.extend_from_slice(words);
            continue;
        };
        match opt.class {
            Class::DepsTarget if opt.name == "-MT" => dotd_target = Some(value.to_owned()),
            Class::DepsFile => {}
            Class::IncludeDir | Class::IncludeFile if value.starts_with('/') => {
                if hit.consumed == 2 {
                    out.push(a.to_owned());
                    out.push(reroot(value, root));
                } else {
                    out.push(format!("{}{}", opt.name, reroot(value, root)));
                }
            }
            _ => out.extend_from_slice(words),
        }
    }
    if !has_md {
        out.push("-MMD".into());
    }
    out.push(format!("-fdebug-prefix-map={root}="));
    out.push(format!("-fmacro-prefix-map={root}="));
    out.push("-MF".into());
    out.push(deps.into());
    PumpArgv {
        argv: out,
        dotd_target,
    }
}

fn reroot(path: &str, root: &str) -> String {
    if path.starts_with('/') {
        format!("{root}{path}")
    } else {
        path.to_owned()
    }
}

/// Rewrite the compiler's `.d` for the client: the temp object name becomes the target the
/// client wanted, and the temp root disappears from every path (reference §1.7 step 5).
pub(crate) fn rewrite_dotd(dotd: &str, root: &str, temp_output: &str, target: &str) -> String {
    let mut out = String::with_capacity(dotd.len());
    for line in dotd.split_inclusive('\n') {
        let line = line.replacen(temp_output, target, 1);
        out.push_str(&line.replace(root, ""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn finds_source_and_output() {
        let a = v("gcc -O2 -c hello.c -o hello.o");
        let s = scan(&a).unwrap();
        assert_eq!(a[s.source], "hello.c");
        assert_eq!(s.output, Some(Output::Separate(5)));
        let a = v("g++ -c -x c++ a.cc -ofoo.o");
        let s = scan(&a).unwrap();
        assert_eq!(a[s.source], "a.cc");
        assert_eq!(s.output, Some(Output::Joined(5)));
        let a = v("gcc -c -MF x.c -o y.o real.c");
        assert_eq!(
            a[scan(&a).unwrap().source],
            "real.c",
            "an option's argument is not a source"
        );
    }

    #[test]
    fn refuses_non_compiles() {
        assert_eq!(scan(&v("gcc hello.c -o hello")), Err(ArgvError::NotCompile));
        assert!(matches!(
            scan(&v("gcc -E hello.c")),
            Err(ArgvError::LocalOnly(_))
        ));
        assert!(matches!(
            scan(&v("gcc -c a.c b.c")),
            Err(ArgvError::TwoSources(..))
        ));
        assert_eq!(scan(&v("gcc -c")), Err(ArgvError::NoSource));
        assert_eq!(scan(&v("gcc -c a.c -o")), Err(ArgvError::MissingOutput));
        assert_eq!(scan(&[]), Err(ArgvError::Empty));
    }

    #[test]
    fn plain_rewrite() {
        let a = v("gcc -O2 -c hello.c -o hello.o");
        let s = scan(&a).unwrap();
        assert_eq!(
            rewrite_plain(&a, &s, "/tmp/d/in.i", "/tmp/d/out.o"),
            v("gcc -O2 -c /tmp/d/in.i -o /tmp/d/out.o -fno-diagnostics-show-caret")
        );
        let a = v("clang -c hello.c");
        let s = scan(&a).unwrap();
        assert_eq!(
            rewrite_plain(&a, &s, "i.i", "o.o"),
            v("clang -c i.i -o o.o -fno-caret-diagnostics")
        );
    }

    #[test]
    fn extensions() {
        assert_eq!(temp_input_extension("a.c"), ".i");
        assert_eq!(temp_input_extension("a.C"), ".ii");
        assert_eq!(temp_input_extension("dir.x/a.cpp"), ".ii");
        assert_eq!(temp_input_extension("a.mm"), ".mii");
        assert_eq!(temp_input_extension("a.m"), ".mi");
        assert_eq!(temp_input_extension("a.zz"), ".tmp");
    }

    #[test]
    fn pump_rewrite() {
        let a =
            v("gcc -O2 -MD -I/usr/local/inc -I rel -isystem /opt/x -c /src/hello.c -o h.o -MT h.o");
        let s = scan(&a).unwrap();
        let p = rewrite_pump(&a, &s, "/tmp/R", "/tmp/out.o", "/tmp/d.deps");
        assert_eq!(p.dotd_target.as_deref(), Some("h.o"));
        assert_eq!(
            p.argv,
            v(
                "gcc -O2 -MD -I/tmp/R/usr/local/inc -I rel -isystem /tmp/R/opt/x -c /tmp/R/src/hello.c -o /tmp/out.o -fdebug-prefix-map=/tmp/R= -fmacro-prefix-map=/tmp/R= -MF /tmp/d.deps"
            )
        );
        let a = v("gcc -c a.c");
        let p = rewrite_pump(&a, &scan(&a).unwrap(), "/R", "/o.o", "/d");
        assert!(p.argv.contains(&"-MMD".to_string()));
        assert_eq!(p.dotd_target, None);
    }

    fn refusal(r: Result<Vec<String>, ArgvError>) -> String {
        match r {
            Err(ArgvError::Refused { option, .. }) => option,
            other => panic!("not refused by option: {other:?}"),
        }
    }

    #[test]
    fn vet_refuses_by_option_name() {
        let plain = |s: &str| refusal(vet(&v(s), Mode::Plain, "/"));
        let pump = |s: &str| refusal(vet(&v(s), Mode::Pump, "/w"));
        assert_eq!(plain("gcc -wrapper /bin/sh,-c,x -c a.c"), "-wrapper");
        assert_eq!(plain("gcc --specs x.c -c a.c"), "--specs");
        assert_eq!(plain("gcc -specs=x -c a.c"), "-specs=");
        assert_eq!(plain("gcc -c a.c -Wp,-fplugin=./in.i"), "-Wp,-fplugin=");
        assert_eq!(plain("gcc -c a.c @args"), "@args");
        assert_eq!(plain("gcc -c a.c -MD -MF /tmp/x"), "-MF");
        assert_eq!(plain("gcc -c a.c -aux-info /tmp/x"), "-aux-info");
        assert_eq!(plain("gcc -c a.c -fdump-tree-original=/tmp/x"), "-fdump-");
        assert_eq!(
            plain("gcc -c a.c -save-temps -dumpdir /tmp/"),
            "-save-temps"
        );
        assert_eq!(plain("gcc -c a.c -dumpbase x"), "-dumpbase");
        assert_eq!(plain("gcc -c a.c -fopt-info-all=/tmp/x"), "-fopt-info-");
        assert_eq!(plain("gcc -c a.c -Wa,-aln=/tmp/x"), "-Wa,-aln=/tmp/x");
        assert_eq!(
            plain("gcc -c a.c -Xassembler -aln=/tmp/x"),
            "-Xassembler -aln=/tmp/x"
        );
        assert_eq!(plain("gcc -c a.c -Wa,--MD,/tmp/x"), "-Wa,--MD");
        assert_eq!(plain("gcc -c a.c -include /etc/passwd"), "-include");
        assert_eq!(plain("gcc -c a.c -fno-preprocessed"), "-fno-preprocessed");
        assert_eq!(
            plain("gcc -c a.c -Xclang -load -Xclang x.so"),
            "-Xclang -load"
        );
        assert_eq!(plain("gcc -c a.c -x assembler"), "-x assembler");
        assert_eq!(pump("gcc -c a.c -Bbin/"), "-B");
        assert_eq!(pump("gcc -c a.c -I ../../.."), "-I");
        assert_eq!(pump("gcc -c a.c -include /../../etc/passwd"), "-include");
        assert_eq!(pump("gcc -c ../../x/a.c"), "../../x/a.c");
        assert_eq!(
            vet(&v("gcc -c a.c -MT"), Mode::Pump, "/w"),
            Err(ArgvError::MissingArgument("-MT".into()))
        );
    }

    #[test]
    fn vet_confines_what_may_stay() {
        assert_eq!(
            vet(
                &v("gcc -x c -iquote q -I/x -O2 -c a.c -o a.o"),
                Mode::Plain,
                "/"
            )
            .unwrap(),
            v("gcc -x cpp-output -iquote q -I/x -O2 -c a.c -o a.o")
        );
        assert_eq!(
            vet(&v("g++ -xc++ -c a.cc"), Mode::Plain, "/").unwrap(),
            v("g++ -x c++-cpp-output -c a.cc")
        );
        assert_eq!(
            vet(
                &v("gcc -MD -MF x.d -MT t -I ../inc -c a.c"),
                Mode::Pump,
                "/w/s"
            )
            .unwrap(),
            v("gcc -MD -MT t -I ../inc -c a.c")
        );
        assert!(vet(&v("gcc -x c -c a.c -include /w/x.h"), Mode::Pump, "/w").is_ok());
    }

    fn gate(argv: &str, src: &str) -> Result<(), ArgvError> {
        check_directives_only_source(&v(argv), src.as_bytes())
    }

    #[test]
    fn directives_only_sources_that_read_files_are_refused() {
        let c = "gcc -c a.c -fpreprocessed -fdirectives-only";
        for src in [
            "#include \"/etc/passwd\"\n",
            "int a;\n  #  include_next <x.h>\n",
            "#inc\\\nlude \"/etc/passwd\"\n",
            "%:include \"/etc/passwd\"\n",
            "/* a */ /* b\n */ #include \"/etc/passwd\"\n",
            "int a; /* b\n */ #include \"/etc/passwd\"\n",
            "# /*x\n*/ include \"/etc/passwd\"\n",
            "int a;\r#include \"/etc/passwd\"\n",
            "\0#include \"/etc/passwd\"\n",
            "\x0c\x0b #embed \"/etc/passwd\"\n",
            "#if __has_include(\"/etc/shadow\")\nint x;\n#endif\n",
            "int x = __has_include(\"/etc/shadow\");\n",
            "#import \"/etc/passwd\"\n",
            "#!\n",
            // Raw-string games: gcc's answer depends on -std, so both are checked.
            "const char *s = R\"x(\n)x\";\n#include \"/etc/passwd\"\n",
            "const char *s = R\"x(\n/*\n)x\";\n#include \"/etc/passwd\"\n// */\n",
            "const char *s = R\"x(\n)x\\\n\"/*\n)x\";\n#include \"/etc/passwd\"\n*/\n",
            // A string or char that hides a comment start.
            "char *s = \"/*\";\n#include \"/etc/passwd\"\n/* */\n",
            "int a = 1'0/*';\n#include \"/etc/passwd\"\n// */\n",
            "int a = 1$'a/*\n#include \"/etc/passwd\"\n*/\n",
            // C90 lexes `//*` as `/` and a comment.
            "int a = 1 //* x\n#include \"/etc/passwd\"\n*/\n",
        ] {
            assert!(
                matches!(gate(c, src), Err(ArgvError::UnsafeSource { .. })),
                "{src:?}"
            );
        }
        // Trigraphs count where gcc would read them.
        let t = "??=include \"/etc/passwd\"\n";
        assert!(gate("gcc -trigraphs -c a.c", t).is_err());
        assert!(gate("gcc -std=c99 -c a.c", t).is_err());
        let t = "int a; ??/\n#include \"/etc/passwd\"\n";
        assert!(
            gate("gcc -c a.c", t).is_err(),
            "a splice or not, a line start"
        );
    }

    #[test]
    fn what_gcc_directives_only_output_holds_passes() {
        let src = "# 0 \"a.c\"\n# 0 \"<built-in>\"\n#define __STDC__ 1\n\
            # 1 \"/usr/include/stdio.h\" 1 3 4\n/* Copyright\n#if in a comment\n */\n\
            #define SQ(x) ((x) * \\\n  (x))\n#define STR(x) \\\n   #x\n#undef SQ\n\
            # 3 \"a.c\" 2\n// line comment #include\n#pragma GCC diagnostic ignored \"-Wunused\"\n\
            _Pragma(\"GCC diagnostic push\")\n#ident \"x\"\nchar *s = \"#include /*\";\n\
            char c = '\\'', d = '#'; int n = 0x1p-3 + 1e+5;\n  # 7 \"a.c\"\n#\n";
        assert_eq!(
            gate("gcc -c a.c -fpreprocessed -fdirectives-only", src),
            Ok(())
        );
        // C++: raw strings and digit separators, lexed as the -std says.
        let cxx = "auto s = R\"gl(\n#version 330\n/*)gl\";\nint n = 1'000'000;\n";
        assert_eq!(gate("g++ -std=c++17 -c a.cc", cxx), Ok(()));
        assert!(
            gate("g++ -c a.cc", cxx).is_err(),
            "the default -std differs by version"
        );
    }

    #[test]
    fn vet_allows_only_the_directives_only_pair() {
        let plain = |s: &str| vet(&v(s), Mode::Plain, "/");
        let ok = plain("gcc -O2 -c a.c -o a.o -fpreprocessed -fdirectives-only").unwrap();
        assert_eq!(
            ok,
            v("gcc -O2 -c a.c -o a.o -fpreprocessed -fdirectives-only")
        );
        assert_eq!(
            refusal(plain("gcc -c a.c -fdirectives-only")),
            "-fdirectives-only"
        );
        assert_eq!(
            refusal(plain("gcc -c a.c -fpreprocessed")),
            "-fpreprocessed"
        );
        assert_eq!(
            refusal(plain(
                "gcc -c a.c -fpreprocessed -fdirectives-only -fdirectives-only"
            )),
            "-fpreprocessed"
        );
        assert_eq!(
            refusal(plain(
                "gcc -c a.c -fno-preprocessed -fpreprocessed -fdirectives-only"
            )),
            "-fno-preprocessed"
        );
        for (cmd, option) in [
            ("-traditional-cpp", "-traditional-cpp"),
            ("-finput-charset=UTF-16", "-finput-charset=UTF-16"),
            ("-fmodules-ts", "-fmodules-ts"),
            ("-Xpreprocessor -C", "-Xpreprocessor"),
        ] {
            let line = format!("gcc -c a.c -fpreprocessed -fdirectives-only {cmd}");
            assert_eq!(refusal(plain(&line)), option, "{line}");
        }
        // The source is checked only with the pair.
        let inc = b"#include \"/etc/passwd\"\n";
        assert!(check_plain_source(&v("gcc -c a.c"), inc).is_ok());
        assert!(
            check_plain_source(&v("gcc -c a.c -fpreprocessed -fdirectives-only"), inc).is_err()
        );
    }

    #[test]
    fn scan_finds_every_output_spelling() {
        let a = v("gcc -c a.c --output=x.o");
        assert_eq!(scan(&a).unwrap().output_name.as_deref(), Some("x.o"));
        let a = v("gcc -c a.c --output x.o");
        assert_eq!(scan(&a).unwrap().output, Some(Output::Separate(4)));
        assert!(matches!(
            scan(&v("gcc -c a.c -o a.o --output=b.o")),
            Err(ArgvError::Refused { .. })
        ));
        assert!(matches!(
            scan(&v("gcc -c a.c /etc/passwd")),
            Err(ArgvError::Operand(_))
        ));
    }

    #[test]
    fn dotd_rewrite() {
        let d = "/tmp/out.o: /tmp/R/src/a.c /tmp/R/src/a.h \\\n /usr/include/stdio.h\n";
        assert_eq!(
            rewrite_dotd(d, "/tmp/R", "/tmp/out.o", "a.o"),
            "a.o: /src/a.c /src/a.h \\\n /usr/include/stdio.h\n"
        );
    }
}
