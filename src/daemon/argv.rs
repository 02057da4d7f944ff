//! The server's view of a received command line: where the source and output words are,
//! whether it is a compile at all, and how to point it at the job's temp files
//! (distcc 3.4 `serve.c`, `arg.c`, `srvrpc.c`; reference §1.7, §1.8).

use thiserror::Error;

use super::source_check::{self, Rules, UnsafeSource};
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
    /// A plain-mode source that could make the server's compiler read a file, or that the
    /// compiler might lex otherwise than the check ([`source_check`]).
    #[error(transparent)]
    UnsafeSource(#[from] UnsafeSource),
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
    if mode == Mode::Plain {
        vet_plain_lexing(&out)?;
    }
    if !directives_only.is_empty() {
        vet_directives_only(&out, &directives_only)?;
    }
    Ok(out)
}

/// A plain-mode command line: nothing that changes which directives the compiler obeys
/// in the source or how it finds them, which would let one hide from
/// [`source_check::check`] (clang obeys the directives of a `.i`). The modules options,
/// which do too, are refused by the table already (they read and write module files);
/// our client never sends these (`-traditional-cpp` is a preprocessor option).
fn vet_plain_lexing(out: &[String]) -> Result<(), ArgvError> {
    match out
        .iter()
        .skip(1)
        .find(|w| ["-traditional", "-traditional-cpp"].contains(&w.as_str()))
    {
        Some(w) => Err(refused(
            w.as_str(),
            "it changes what the compiler does with a preprocessed source's directives",
        )),
        None => Ok(()),
    }
}

/// A plain-mode command line with [`DIRECTIVES_ONLY_FLAGS`]: both, once each, and
/// nothing that changes how gcc reads the source's bytes (which would let a directive
/// hide from [`source_check::check`]) or that brings in other files.
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
        let why = if word.starts_with("-finput-charset=") {
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

/// The two words the client adds to a plain-mode command line for a directives-only
/// source, in this order; a server accepts them only together.
pub(crate) use source_check::DIRECTIVES_ONLY_FLAGS;

/// Check a received plain-mode source before compiling it: no directive the compiler
/// will obey may read a file ([`source_check`]). Every source is checked, whatever the
/// compiler's name: clang obeys `#include` in a `.i`, and `cc` or `gcc` may be a clang.
pub(crate) fn check_plain_source(argv: &[String], source: &[u8]) -> Result<(), ArgvError> {
    Ok(source_check::check(source_rules(argv), argv, source)?)
}

/// The rules a plain-mode command line's source is checked under.
pub(crate) fn source_rules(argv: &[String]) -> Rules {
    if argv.iter().any(|w| w == DIRECTIVES_ONLY_FLAGS[1]) {
        Rules::DirectivesOnly
    } else {
        Rules::Preprocessed
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
        // Every plain source is checked, with or without the pair.
        let inc = b"#include \"/etc/passwd\"\n";
        assert!(check_plain_source(&v("clang -c a.c"), inc).is_err());
        assert!(check_plain_source(&v("gcc -c a.c"), inc).is_err());
        let skipped = b"#if 0\n#include \"/etc/passwd\"\n#endif\n";
        assert!(check_plain_source(&v("clang -c a.c"), skipped).is_ok());
        assert!(
            check_plain_source(&v("gcc -c a.c -fpreprocessed -fdirectives-only"), skipped).is_err()
        );
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
