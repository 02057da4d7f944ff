//! Argument scanning for the client (distcc 3.4 `arg.c`, `strip.c`, `filename.c`, `dotd.c`;
//! reference §2.7): what must run locally and why, the input and output, the local
//! preprocessor's command and the command sent to the server — plus the one place where we
//! deliberately do better than 3.4: the local preprocessor writes the `.d` file exactly
//! where and with the target gcc itself would use.
//!
//! A pure function of the words: no environment, no files, no processes, so that the
//! client, the daemon and the fuzzer can all call it. Compiler rewriting, which looks at
//! PATH and runs the compiler, is the client's ([`crate::client::rewrite`]).
//!
//! The server's view of a received command line is in [`crate::daemon::argv`].

use crate::client::outcome::LocalReason;
use std::fmt::Write as _;

use crate::options::{self, Class, Tool};
use crate::paths::{basename, extension as ext, with_ext};

/// The result of scanning a compiler command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    /// The command to run for a local compile (after `-Wp,` expansion and compiler rewriting).
    pub local_argv: Vec<String>,
    /// Why the job must run locally; `None` means it can be distributed.
    pub local_reason: Option<LocalReason>,
    /// `-E`: a local preprocessing-only job (takes the cpp lock, exit 120 semantics).
    pub cpp_only: bool,
    pub input: String,
    pub output: String,
    /// Command that preprocesses `input` to stdout, writing the `.d` file if one is wanted.
    pub cpp_argv: Vec<String>,
    /// Command sent to the server: local-only options stripped, `-o output` explicit.
    pub server_argv: Vec<String>,
    /// The input is already preprocessed (`.i`, `.ii`, …): no cpp step.
    pub preprocessed: bool,
    /// Extension of the preprocessed temp file (`i`, `ii`, `mi`, `mii`).
    pub cpp_ext: &'static str,
    /// How `cpp_argv` preprocesses: [`CppStrategy::Full`] unless the compiler can keep
    /// macros for the server and nothing on the command line stands in the way
    /// (`server_argv` then ends with [`DIRECTIVES_ONLY_FLAGS`] for gcc).
    pub cpp: CppStrategy,
}

impl Scan {
    /// Whether macros are expanded on the server, as in a local build.
    pub(crate) fn keeps_macros(&self) -> bool {
        self.cpp != CppStrategy::Full
    }
}

/// How the client preprocesses for a plain-mode server, which the client decides from
/// the compiler itself ([`crate::client::rewrite`]), so that the scan stays a function
/// of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CppStrategy {
    /// `cc -E`: a fully preprocessed source, as distcc 3.4 sends.
    #[default]
    Full,
    /// gcc 11 or later: `-E -fdirectives-only` here (includes and conditionals resolved,
    /// macros kept), `-fpreprocessed -fdirectives-only` on the server, so that line
    /// tables, columns and macro notes are a local build's. gcc 11 is the first whose
    /// directives-only mode lexes raw strings and is idempotent (GCC PR 88475).
    GccDirectivesOnly,
    /// clang 10 or later: `-E -frewrite-includes` here (includes inlined, each `#if`
    /// evaluated and rewritten to its value, macros kept), and the server compiles the
    /// `.i` as it is: clang obeys its directives, and our server checks that none reads a
    /// file ([`crate::daemon::source_check`]). clang 10 is the first that rewrites
    /// `__has_include` conditions.
    ClangRewriteIncludes,
}

/// What `clang -E` is given for [`CppStrategy::ClangRewriteIncludes`].
pub(crate) const REWRITE_INCLUDES_FLAG: &str = "-frewrite-includes";

/// A command line and the cpp strategy for its compiler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobArgv {
    pub argv: Vec<String>,
    pub cpp: CppStrategy,
}

/// What [`scan`] reads: a bare command line (full preprocessing) or a [`JobArgv`].
pub(crate) trait Words {
    fn words(&self) -> &[String];
    fn cpp(&self) -> CppStrategy {
        CppStrategy::Full
    }
}

impl Words for [String] {
    fn words(&self) -> &[String] {
        self
    }
}

impl Words for Vec<String> {
    fn words(&self) -> &[String] {
        self
    }
}

impl Words for JobArgv {
    fn words(&self) -> &[String] {
        &self.argv
    }
    fn cpp(&self) -> CppStrategy {
        self.cpp
    }
}

pub(crate) use crate::daemon::argv::DIRECTIVES_ONLY_FLAGS;

/// Why this command line is preprocessed in full even with a compiler that can keep
/// macros: options that shape cpp's output (`-C`, `-P`, `-dD`, `-traditional-cpp`), that a
/// server refuses next to `-fdirectives-only`, a precompiled header (its declarations are
/// no text to inline), or a language other than C and C++.
fn keep_macros_blocker(argv: &[String], cpp: CppStrategy) -> Option<String> {
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].as_str();
        let hit = options::lookup(a, argv.get(i + 1).map(String::as_str));
        i += hit.consumed;
        let blocked = ["-traditional", "-traditional-cpp", "-C", "-CC", "-P"].contains(&a)
            || [
                "-fpch-preprocess",
                "-fmodules-ts",
                "-fmodules",
                "-include-pch",
            ]
            .contains(&a)
            || a.starts_with("-frewrite-")
            // clang's predefines, which -frewrite-includes leaves out: the client writes
            // the command line's macros as `#define`s ([`command_line_macros`]), but
            // these it can't.
            || (cpp == CppStrategy::ClangRewriteIncludes
                && (["-imacros", "-undef"].contains(&hit.name(a))
                    || (hit.name(a) == "-D" && hit.value.is_some_and(|v| v.contains(['\n', '\r'])))))
            || a.starts_with("-fmodule-")
            || a.starts_with("-finput-charset=")
            || matches!(
                hit.class(),
                Class::DumpLetters | Class::CppMode | Class::Pass(Tool::Preprocessor)
            )
            || (hit.class() == Class::Language
                && !matches!(
                    hit.value,
                    Some("c" | "c++" | "cpp-output" | "c++-cpp-output")
                ));
        if blocked {
            return Some(hit.name(a).to_string());
        }
    }
    None
}

const SOURCE_EXTS: &[&str] = &[
    "c", "cc", "cpp", "cxx", "cp", "c++", "C", "i", "ii", "m", "mm", "mi", "mii", "M",
];

/// Whether a word names a source file distcc can compile.
pub(crate) fn is_source(word: &str) -> bool {
    ext(word).is_some_and(|e| SOURCE_EXTS.contains(&e))
}

/// Whether a word is an object file (which makes it look like a link).
pub(crate) fn is_object(word: &str) -> bool {
    ext(word) == Some("o")
}

fn preprocessed_ext(input: &str) -> (&'static str, bool) {
    match ext(input).unwrap_or("") {
        "i" => ("i", true),
        "ii" => ("ii", true),
        "mi" => ("mi", true),
        "mii" => ("mii", true),
        "c" => ("i", false),
        "m" => ("mi", false),
        "mm" | "M" => ("mii", false),
        _ => ("ii", false),
    }
}

/// `-Wp,-MD,f` → `-MD -MF f`; other `-Wp,` items become words (distcc's expansion).
fn expand_wp(argv: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for a in argv {
        if let Some(rest) = a.strip_prefix("-Wp,") {
            let items: Vec<&str> = rest.split(',').collect();
            if items.len() == 2 && (items[0] == "-MD" || items[0] == "-MMD") {
                out.extend([items[0].to_string(), "-MF".into(), items[1].to_string()]);
                continue;
            }
            out.extend(items.iter().map(|s| s.to_string()));
        } else {
            out.push(a.clone());
        }
    }
    out
}

/// Is this option only the preprocessor's business, so the server never needs it
/// ([`crate::options`]' classes; distcc 3.4's `dcc_strip_local_args` list and more)?
fn local_only(class: Class) -> bool {
    matches!(
        class,
        Class::Cpp
            | Class::IncludeDir
            | Class::IncludeFile
            | Class::DepsOn
            | Class::DepsFile
            | Class::DepsTarget
            | Class::Link
            | Class::Pass(Tool::Preprocessor)
            | Class::Pass(Tool::Linker)
    )
}

fn strip_local_args(argv: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(first) = argv.first() {
        out.push(first.clone());
    }
    let mut i = 1;
    while i < argv.len() {
        let hit = options::lookup(&argv[i], argv.get(i + 1).map(String::as_str));
        if !local_only(hit.class()) {
            out.extend_from_slice(&argv[i..(i + hit.consumed).min(argv.len())]);
        }
        i += hit.consumed;
    }
    out
}

/// Why a distcc server would refuse this option (see [`crate::daemon::argv::vet`]), so
/// that the client compiles such jobs itself instead of sending them to be refused.
fn server_refuses(word: &str, hit: &options::Hit<'_>) -> Option<String> {
    if hit.response_file {
        return Some(format!("{word}: response file"));
    }
    let opt = hit.opt?;
    if hit.missing {
        return Some(format!("{} needs an argument", opt.name));
    }
    let value = hit.value.unwrap_or("");
    let named = |why: &str| Some(format!("{}: {why}", opt.name));
    match opt.class {
        Class::Runs | Class::Reads | Class::Writes | Class::CppMode => named(opt.why),
        c if options::writes(c, hit.value) => named(opt.why),
        Class::Pass(Tool::Assembler) => {
            let items = options::pass_items(opt, value);
            items
                .iter()
                .any(|it| options::assembler_item_hazard(it).is_some())
                .then(|| "assembler listing".to_string())
        }
        Class::Pass(Tool::Clang) => (!options::clang_item_is_safe(value))
            .then(|| format!("-Xclang {value}: not allowed on a server")),
        _ => None,
    }
}

/// Scan a compiler command line (argv[0] is the compiler).
pub(crate) fn scan<W: Words + ?Sized>(job: &W) -> Scan {
    let argv = expand_wp(job.words());
    let mut local_reason: Option<LocalReason> = None;
    let mut reason = |r: &str| {
        if local_reason.is_none() {
            local_reason = Some(LocalReason::from_scan(r));
        }
    };
    let (mut seen_c, mut seen_s, mut cpp_only) = (false, false, false);
    let mut input: Option<String> = None;
    let mut output: Option<String> = None;
    let mut wants_dotd = false;
    let mut has_mf = false;
    let mut has_mt = false;
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].as_str();
        let next = argv.get(i + 1).map(String::as_str);
        let hit = options::lookup(a, next);
        if let Some(why) = server_refuses(a, &hit) {
            reason(&why);
        }
        match a {
            "-E" => cpp_only = true,
            "-c" => seen_c = true,
            "-S" => seen_s = true,
            "-MD" | "-MMD" => wants_dotd = true,
            "-MG" | "-MP" => {}
            "-MF" => has_mf = true,
            "-MT" | "-MQ" => has_mt = true,
            "-march=native"
            | "-mtune=native"
            | "-mcpu=native"
            | "-flto"
            | "-fprofile-correction" => reason(a),
            _ => {}
        }
        match hit.class() {
            Class::Compile if a == "--compile" => seen_c = true,
            Class::Compile if a == "--assemble" => seen_s = true,
            Class::PreprocessOnly => cpp_only = true,
            Class::DepsOn => wants_dotd = true,
            Class::Language => {
                let lang = hit.value.unwrap_or("");
                if options::preprocessed_language(lang).is_none() {
                    reason("-x with a language distcc doesn't distribute");
                }
            }
            _ => {}
        }
        if a.starts_with("-MF") && a.len() > 3 {
            has_mf = true;
        }
        if (a.starts_with("-MT") || a.starts_with("-MQ")) && a.len() > 3 {
            has_mt = true;
        }
        if a.starts_with("-M")
            && !["-MD", "-MMD", "-MG", "-MP", "-MJ"].contains(&a)
            && !a.starts_with("-MF")
            && !a.starts_with("-MT")
            && !a.starts_with("-MQ")
            && !a.starts_with("-MJ")
        {
            reason("-M without -MD: dependency output only");
        }
        if hit.class() == Class::DepsOnly {
            reason("-M without -MD: dependency output only");
        }
        if hit.class() == Class::Output {
            if output.is_some() {
                reason("called for link? (two outputs)");
            }
            output = hit.value.map(str::to_string);
            if hit.value == Some("-") {
                reason("output to stdout");
            }
        } else if hit.is_operand(a) {
            if is_source(a) {
                if input.is_some() {
                    reason("do we have two inputs?");
                }
                input = Some(a.to_string());
            } else if is_object(a) {
                if output.is_some() {
                    reason("called for link? (two outputs)");
                }
                output = Some(a.to_string());
            } else {
                reason(&format!("{a}: an input that is not a source file"));
            }
        }
        i += hit.consumed;
    }
    if cpp_only {
        reason("-E: preprocessing only");
    } else if !seen_c && !seen_s {
        reason("compiler apparently called not for compile");
    }
    let input_s = match &input {
        Some(s) => s.clone(),
        None => {
            reason("no source file");
            String::new()
        }
    };
    if basename(&input_s).starts_with("conftest.")
        || basename(&input_s).starts_with("tmp.conftest.")
    {
        reason("autoconf test");
    }
    let explicit_output = output.is_some();
    let out =
        output.unwrap_or_else(|| basename(&with_ext(&input_s, if seen_s { "s" } else { "o" })));
    let (cpp_ext, preprocessed) = preprocessed_ext(&input_s);
    let keeps_macros = job.cpp() != CppStrategy::Full
        && local_reason.is_none()
        && !preprocessed
        && matches!(cpp_ext, "i" | "ii")
        && match keep_macros_blocker(&argv, job.cpp()) {
            Some(why) => {
                log::debug!("{why}: preprocessing {input_s} in full");
                false
            }
            None => true,
        };
    let cpp = if keeps_macros {
        job.cpp()
    } else {
        CppStrategy::Full
    };

    // Preprocessor: drop -o, -c/-S become -E; the .d goes exactly where gcc would put it.
    let mut cpp_argv = Vec::new();
    if let Some(first) = argv.first() {
        cpp_argv.push(first.clone());
    }
    let mut j = 1;
    while j < argv.len() {
        let a = argv[j].as_str();
        let hit = options::lookup(a, argv.get(j + 1).map(String::as_str));
        let words = &argv[j..(j + hit.consumed).min(argv.len())];
        j += hit.consumed;
        match hit.class() {
            Class::Output => {}
            Class::Compile => {
                if !cpp_argv.iter().any(|w| w == "-E") {
                    cpp_argv.push("-E".to_string());
                    match cpp {
                        CppStrategy::Full => {}
                        CppStrategy::GccDirectivesOnly => {
                            cpp_argv.push(DIRECTIVES_ONLY_FLAGS[1].to_string());
                        }
                        CppStrategy::ClangRewriteIncludes => {
                            cpp_argv.push(REWRITE_INCLUDES_FLAG.to_string());
                        }
                    }
                }
            }
            _ => cpp_argv.extend_from_slice(words),
        }
    }
    if wants_dotd {
        if !has_mf {
            let dotd = if explicit_output {
                with_ext(&out, "d")
            } else {
                basename(&with_ext(&input_s, "d"))
            };
            cpp_argv.extend(["-MF".to_string(), dotd]);
        }
        if !has_mt {
            // gcc's default target: the -o file, or else the input's basename with `.o`
            // (even with -S).
            let target = if explicit_output {
                out.clone()
            } else {
                basename(&with_ext(&input_s, "o"))
            };
            cpp_argv.extend(["-MQ".to_string(), target]);
        }
    }

    let mut server_argv = strip_local_args(&argv);
    if !explicit_output {
        server_argv.extend(["-o".to_string(), out.clone()]);
    }
    if cpp == CppStrategy::GccDirectivesOnly {
        server_argv.extend(DIRECTIVES_ONLY_FLAGS.iter().map(|w| w.to_string()));
    }
    Scan {
        local_argv: argv,
        local_reason,
        cpp_only,
        input: input_s,
        output: out,
        cpp_argv,
        server_argv,
        preprocessed,
        cpp_ext,
        cpp,
    }
}

/// The macros a command line defines and undefines (`-D`, `-U`), as the `#define` and
/// `#undef` lines clang makes of them, in order: what `clang -E -frewrite-includes` leaves
/// out of its output, and clang ignores for a `.i`.
pub(crate) fn command_line_macros(argv: &[String]) -> String {
    let mut out = String::new();
    let mut i = 1;
    while i < argv.len() {
        let hit = options::lookup(&argv[i], argv.get(i + 1).map(String::as_str));
        i += hit.consumed;
        let value = hit.value.unwrap_or("");
        match hit.opt.map(|o| o.name) {
            Some("-D") => match value.split_once('=') {
                Some((name, body)) => {
                    let _ = writeln!(out, "#define {name} {body}");
                }
                None => {
                    let _ = writeln!(out, "#define {value} 1");
                }
            },
            Some("-U") => {
                let _ = writeln!(out, "#undef {value}");
            }
            _ => {}
        }
    }
    out
}

/// Quote a word for logs like distcc's `dcc_argv_tostr`.
pub(crate) fn argv_to_string(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains([' ', '\t', '\n', '"', '\'', ';']) {
                format!("\"{a}\"")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn plain_compile_is_distributable() {
        let s = scan(&v("gcc -O2 -DX=1 -Iinc -c a.c -o out/a.o"));
        assert_eq!(s.local_reason, None);
        assert_eq!(s.input, "a.c");
        assert_eq!(s.output, "out/a.o");
        assert_eq!(s.cpp_argv, v("gcc -O2 -DX=1 -Iinc -E a.c"));
        assert_eq!(s.server_argv, v("gcc -O2 -c a.c -o out/a.o"));
    }

    #[test]
    fn implied_output_and_dotd_like_gcc() {
        let s = scan(&v("gcc -MD -c sub/a.c"));
        assert_eq!(s.output, "a.o");
        assert_eq!(s.server_argv, v("gcc -c sub/a.c -o a.o"));
        assert_eq!(s.cpp_argv, v("gcc -MD -E sub/a.c -MF a.d -MQ a.o"));
        let s = scan(&v("gcc -Wp,-MD,dep/x.d -c a.c -o out/b.o"));
        assert_eq!(s.cpp_argv, v("gcc -MD -MF dep/x.d -E a.c -MQ out/b.o"));
        let s = scan(&v("gcc -MD -S sub/a.c"));
        assert_eq!(s.output, "a.s");
        assert_eq!(s.cpp_argv, v("gcc -MD -E sub/a.c -MF a.d -MQ a.o"));
        let s = scan(&v("gcc -MMD -MT t -c a.c -o out/b.o"));
        assert_eq!(s.cpp_argv, v("gcc -MMD -MT t -E a.c -MF out/b.d"));
    }

    #[test]
    fn local_reasons() {
        for cmd in [
            "gcc a.c -o a",
            "gcc -E a.c",
            "gcc -M -c a.c",
            "gcc -c a.s",
            "gcc -c conftest.c",
            "gcc -c a.c -o -",
            "gcc -march=native -c a.c",
            "gcc -mcpu=native -c a.c",
            "gcc -c a.c b.c",
        ] {
            assert!(scan(&v(cmd)).local_reason.is_some(), "{cmd}");
        }
        assert!(scan(&v("gcc -E a.c")).cpp_only);
    }

    #[test]
    fn what_a_server_refuses_is_compiled_here() {
        for cmd in [
            "gcc -save-temps -c a.c",
            "gcc -fdump-tree-all -c a.c",
            "gcc -wrapper /bin/sh,-c,x -c a.c",
            "gcc -B bin/ -c a.c",
            "gcc --specs x -c a.c",
            "gcc -c a.c @missing.rsp",
            "gcc -c a.c -aux-info x",
            "gcc -c a.c -Wp,-fplugin=x.so",
            "gcc -c a.c -Xassembler -aln=x",
            "gcc -c a.c -Xclang -load",
            "gcc -c a.c -fstack-usage",
            "gcc -c a.c -gsplit-dwarf",
            "gcc -c a.c -x c-header",
            "gcc -c a.c -MT",
            "gcc -c a.c --output",
            "gcc -c a.c foo.h",
            "gcc -c a.c -fdirectives-only",
        ] {
            assert!(scan(&v(cmd)).local_reason.is_some(), "{cmd}");
        }
        for cmd in [
            "gcc -c a.c -x c -fopt-info-vec -dA -Wa,--noexecstack",
            "gcc -c a.c -iquote q -include x.h -MD -MF d -MT t",
        ] {
            assert_eq!(scan(&v(cmd)).local_reason, None, "{cmd}");
        }
        let s = scan(&v(
            "gcc -c a.c --output=out/a.o -iquote q -Xpreprocessor -DX",
        ));
        assert_eq!(s.output, "out/a.o");
        assert_eq!(s.cpp_argv, v("gcc -E a.c -iquote q -Xpreprocessor -DX"));
        assert_eq!(s.server_argv, v("gcc -c a.c --output=out/a.o"));
    }

    #[test]
    fn preprocessed_input() {
        let s = scan(&v("g++ -c x.ii"));
        assert!(s.preprocessed);
        assert_eq!(s.cpp_ext, "ii");
        assert_eq!(scan(&v("g++ -c x.cc")).cpp_ext, "ii");
    }

    fn dir(s: &str) -> Scan {
        scan(&JobArgv {
            argv: v(s),
            cpp: CppStrategy::GccDirectivesOnly,
        })
    }

    #[test]
    fn directives_only_for_gcc() {
        let s = dir("gcc -O2 -DX=1 -Iinc -MD -c a.c -o out/a.o");
        assert!(s.keeps_macros());
        assert_eq!(
            s.cpp_argv,
            v("gcc -O2 -DX=1 -Iinc -MD -E -fdirectives-only a.c -MF out/a.d -MQ out/a.o")
        );
        assert_eq!(
            s.server_argv,
            v("gcc -O2 -c a.c -o out/a.o -fpreprocessed -fdirectives-only")
        );
        // What our server accepts, and its check passes on the flags' own words.
        let vetted =
            crate::daemon::argv::vet(&s.server_argv, crate::daemon::argv::Mode::Plain, "/");
        assert_eq!(vetted.as_ref(), Ok(&s.server_argv));
        let s = dir("g++ -std=c++17 -c a.cc");
        assert!(s.keeps_macros());
        assert_eq!(
            s.server_argv,
            v("g++ -std=c++17 -c a.cc -o a.o -fpreprocessed -fdirectives-only")
        );
        // Full preprocessing: a bare command line, and what directives-only can't do.
        assert!(!scan(&v("gcc -c a.c")).keeps_macros());
        for cmd in [
            "gcc -traditional-cpp -c a.c",
            "gcc -C -c a.c",
            "gcc -dD -c a.c",
            "gcc -Xpreprocessor -P -c a.c",
            "gcc -Wp,-C -c a.c",
            "gcc -finput-charset=latin1 -c a.c",
            "gcc -x objective-c -c a.m",
            "gcc -c a.m",
            "gcc -c a.i",
        ] {
            let s = dir(cmd);
            assert!(!s.keeps_macros(), "{cmd}");
            assert!(
                !s.cpp_argv.contains(&"-fdirectives-only".to_string()),
                "{cmd}"
            );
            assert!(
                !s.server_argv.contains(&"-fpreprocessed".to_string()),
                "{cmd}"
            );
        }
        // An explicit switch of the user's is not ours to keep: compiled here.
        assert!(
            dir("gcc -fno-directives-only -c a.c")
                .local_reason
                .is_some()
        );
        assert!(dir("gcc -fdirectives-only -c a.c").local_reason.is_some());
    }

    #[test]
    fn rewrite_includes_for_clang() {
        let s = scan(&JobArgv {
            argv: v("clang -O2 -DX=1 -MD -c a.c -o out/a.o"),
            cpp: CppStrategy::ClangRewriteIncludes,
        });
        assert_eq!(s.cpp, CppStrategy::ClangRewriteIncludes);
        assert_eq!(
            s.cpp_argv,
            v("clang -O2 -DX=1 -MD -E -frewrite-includes a.c -MF out/a.d -MQ out/a.o")
        );
        // The server compiles the `.i` as it is: no switch a distcc 3.4 server refuses.
        // (clang ignores -D for a `.i`: the client writes them into it.)
        assert_eq!(s.server_argv, v("clang -O2 -c a.c -o out/a.o"));
        assert_eq!(
            command_line_macros(&v("clang -DA -U B -D C=2 -DF(x)=x -DE= -c a.c")),
            "#define A 1\n#undef B\n#define C 2\n#define F(x) x\n#define E \n"
        );
        for cmd in [
            "clang -include-pch p.pch -c a.c",
            "clang -imacros x.h -c a.c",
            "clang -undef -c a.c",
            "clang -DX=a\nb -c a.c",
            "clang -C -c a.c",
            "clang -c a.i",
        ] {
            // Split on spaces only: a -D value may hold a line break.
            let argv: Vec<String> = cmd.split(' ').map(String::from).collect();
            let s = scan(&JobArgv {
                argv,
                cpp: CppStrategy::ClangRewriteIncludes,
            });
            assert_eq!(s.cpp, CppStrategy::Full, "{cmd}");
            assert!(!s.cpp_argv.contains(&"-frewrite-includes".to_string()));
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(
            argv_to_string(&["a b".into(), "c".into(), "".into()]),
            "\"a b\" c \"\""
        );
    }
}
