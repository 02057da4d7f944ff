//! One table of gcc and clang options: how each takes its argument and what it does with
//! the world outside the compile — the client's scanner ([`crate::args`]) and the server's
//! policy ([`crate::daemon::argv`]) both read it, so they can never disagree on whether a
//! word is an option's argument or an input, nor on what a distcc server may run.
//!
//! The facts come from gcc 12's own option lists (`gcc --help=common,joined`,
//! `gcc --help=c,separate`, `gcc --help=undocumented,common`, the driver's `--help`),
//! from trying the driver's long aliases (`--output=F`, `--prefix=D`, `--language=L`,
//! `-time=F`, `-aux-info=F`), and from clang's driver documentation. They are recorded
//! here, not probed at run time: a server must decide the same way whichever compiler
//! it has installed.
//!
//! Options the table does not know are treated as flags without an argument. That is
//! safe for the server's policy because a word that follows an unknown option is then
//! classified on its own (an unknown option cannot hide a dangerous word from us; at
//! worst a harmless argument is taken for an operand and refused).

/// How an option takes its argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// Exactly the spelling, no argument (`-c`, `-save-temps`).
    Flag,
    /// The argument follows in the same word (`-fplugin=F`, `-dumpdir` is *not* this).
    /// The spelling is a prefix; the value may be empty (`-fdump-` families).
    Joined,
    /// The argument is the next word (`-wrapper CMD`, `-aux-info F`).
    Separate,
    /// Either (`-I dir`, `-Idir`, `-o f`, `-of`, `-MF f`).
    JoinedOrSeparate,
}

/// Which tool a pass-through option hands its items to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    /// `-Wp,…`, `-Xpreprocessor X`: cc1's own options.
    Preprocessor,
    /// `-Wa,…`, `-Xassembler X`, `--for-assembler`: as's options.
    Assembler,
    /// `-Xclang X`: clang's cc1 options.
    Clang,
    /// `-Wl,…`, `-Xlinker X`: the linker, which a `-c`/`-S` compile never runs.
    Linker,
}

/// What an option does, from the point of view of a server running it for a stranger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Changes only the code generated (`-O2`, `-std=`, `--param`, `-march=`).
    Plain,
    /// `-c`, `-S`: compile.
    Compile,
    /// `-E`: preprocess only; always local.
    PreprocessOnly,
    /// `-M`, `-MM`: dependency output only; always local.
    DepsOnly,
    /// Matters only to the preprocessor and names no file (`-D`, `-U`, `-undef`, `-P`).
    Cpp,
    /// Preprocessor: a directory searched for headers (`-I`, `-isystem`, `--sysroot`).
    IncludeDir,
    /// Preprocessor: a file read before the source (`-include`, `-imacros`).
    IncludeFile,
    /// Switches the preprocessor on or off for `.i` input (`-fpreprocessed`,
    /// `-fdirectives-only`): on a server's preprocessed input it would let `#include`
    /// read the server's files.
    CppMode,
    /// `-MD`, `-MMD`: a `.d` beside the output.
    DepsOn,
    /// `-MF F`: where the `.d` goes.
    DepsFile,
    /// `-MT T`, `-MQ T`: the `.d` target, not a path.
    DepsTarget,
    /// `-o F`, `--output F`: the object.
    Output,
    /// `-x LANG`.
    Language,
    /// Hands its items to another tool; each item is classified too.
    Pass(Tool),
    /// Runs or loads a program or reads options from a file that may say to.
    Runs,
    /// Writes a file the client never gets back.
    Writes,
    /// Writes a file only when its value asks for one (`-fopt-info-…=F`,
    /// `-fdiagnostics-format=…-file`).
    WritesIfFile,
    /// Reads a file other than the source and headers (profiles, ignore lists).
    Reads,
    /// `-d<letters>`: a few letters annotate, the rest write RTL dumps.
    DumpLetters,
    /// Linker-only: no effect on `-c`/`-S` (`-l`, `-L`, `-T`, `-u`).
    Link,
}

/// What an option means to pump mode's include analysis ([`crate::pump::analyser`]),
/// which must know every way a command line changes where the preprocessor looks: an
/// option it cannot model sends the job back to local preprocessing rather than let
/// the server miss a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Search {
    /// Nothing the analysis needs.
    Nothing,
    /// `-iquote D`: searched for `"…"` includes only.
    QuoteDir,
    /// `-I D`: searched for both kinds of include.
    BracketDir,
    /// `-isystem D`: before the compiler's own dirs.
    SystemDir,
    /// `-idirafter D`: after the compiler's own dirs.
    AfterDir,
    /// `--sysroot D`: moves the compiler's own dirs (the probe must see it).
    Sysroot,
    /// `-isysroot D`: moves the compiler's own header dirs (the probe must see it).
    Isysroot,
    /// `-include F`, `-imacros F`: read before the source.
    Preinclude,
    /// `-D NAME=VALUE`: a value a computed `#include NAME` may take.
    Define,
    /// `-nostdinc`: no default dirs at all.
    NoStdinc,
    /// `-ffreestanding`: no implicit `<stdc-predef.h>`.
    Freestanding,
    /// Changes the compiler's default dirs: passed to the probe as it is
    /// (`-m32`, `-stdlib=libc++`, `-nostdinc++`).
    Probe,
    /// Changes the search in a way the analysis does not model (`-iprefix`, `-I-`,
    /// `-iframework`, `-Xpreprocessor`, a precompiled header).
    Unsupported,
}

/// One spelling of an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Opt {
    pub name: &'static str,
    pub form: Form,
    pub class: Class,
    /// Why a server refuses it, in words for its log ("it runs a program").
    pub why: &'static str,
    /// What the include analysis does with it.
    pub search: Search,
}

const fn o(name: &'static str, form: Form, class: Class, why: &'static str) -> Opt {
    Opt {
        name,
        form,
        class,
        why,
        search: Search::Nothing,
    }
}

impl Opt {
    /// The same entry with its meaning to the include analysis.
    const fn s(mut self, search: Search) -> Opt {
        self.search = search;
        self
    }
}

use Class::*;
use Form::*;
use Search as S;

const SPECS: &str = "it reads a specs file, which can run any program";
const CONFIG: &str = "it reads a file of options, which can run any program";
const WRITES: &str = "it writes a file the client never gets back";
const DUMPS: &str = "it writes compiler dumps the client never gets back";
const READS: &str = "it reads a file on the server";
const CPP: &str = "it matters only to the preprocessor";
const INC: &str = "it reads a header directory";
const INCF: &str = "it reads a file on the server before the source";
const CPPMODE: &str = "it turns the preprocessor back on for the server's preprocessed input";
const NONE: &str = "";

/// The table. Longest matching spelling wins, so `-fdump-noaddr` (a modifier) beats the
/// `-fdump-` family and `-MF` beats `-M`.
pub(crate) static OPTIONS: &[Opt] = &[
    // Mode and output.
    o("-c", Flag, Compile, NONE),
    o("--compile", Flag, Compile, NONE),
    o("-S", Flag, Compile, NONE),
    o("--assemble", Flag, Compile, NONE),
    o("-E", Flag, PreprocessOnly, NONE),
    o("--preprocess", Flag, PreprocessOnly, NONE),
    o("-o", JoinedOrSeparate, Output, NONE),
    o("--output", Separate, Output, NONE),
    o("--output=", Joined, Output, NONE),
    o("-x", JoinedOrSeparate, Language, NONE),
    o("--language", Separate, Language, NONE),
    o("--language=", Joined, Language, NONE),
    // Dependencies.
    o("-M", Flag, DepsOnly, NONE),
    o("--dependencies", Flag, DepsOnly, NONE),
    o("-MM", Flag, DepsOnly, NONE),
    o("--user-dependencies", Flag, DepsOnly, NONE),
    o("-MD", Flag, DepsOn, NONE),
    o("--write-dependencies", Flag, DepsOn, NONE),
    o("-MMD", Flag, DepsOn, NONE),
    o("--write-user-dependencies", Flag, DepsOn, NONE),
    o(
        "-MF",
        JoinedOrSeparate,
        DepsFile,
        "it writes a dependency file",
    ),
    o("-MT", JoinedOrSeparate, DepsTarget, NONE),
    o("-MQ", JoinedOrSeparate, DepsTarget, NONE),
    o("-MG", Flag, Cpp, CPP),
    o("--print-missing-file-dependencies", Flag, Cpp, CPP),
    o("-MP", Flag, Cpp, CPP),
    o(
        "-MJ",
        JoinedOrSeparate,
        Writes,
        "it writes a compilation database entry",
    ),
    // Preprocessor only, no file.
    o("-D", JoinedOrSeparate, Cpp, CPP).s(S::Define),
    o("--define-macro", Separate, Cpp, CPP).s(S::Define),
    o("--define-macro=", Joined, Cpp, CPP).s(S::Define),
    o("-U", JoinedOrSeparate, Cpp, CPP),
    o("--undefine-macro", Separate, Cpp, CPP),
    o("--undefine-macro=", Joined, Cpp, CPP),
    o("-A", JoinedOrSeparate, Cpp, CPP),
    o("--assert", Separate, Cpp, CPP),
    o("--assert=", Joined, Cpp, CPP),
    o("-undef", Flag, Cpp, CPP),
    o("-nostdinc", Flag, Cpp, CPP).s(S::NoStdinc),
    o("--no-standard-includes", Flag, Cpp, CPP).s(S::NoStdinc),
    o("-nostdinc++", Flag, Cpp, CPP).s(S::Probe),
    o("-stdlib=", Joined, Cpp, CPP).s(S::Probe),
    o("-P", Flag, Cpp, CPP),
    o("-C", Flag, Cpp, CPP),
    o("-CC", Flag, Cpp, CPP),
    o("-H", Flag, Cpp, CPP),
    o("-remap", Flag, Cpp, CPP),
    o("-trigraphs", Flag, Cpp, CPP),
    o("-traditional-cpp", Flag, Cpp, CPP),
    o("-I-", Flag, Cpp, CPP).s(S::Unsupported),
    o("--include-barrier", Flag, Cpp, CPP).s(S::Unsupported),
    // Preprocessor modes that would undo "the input is preprocessed".
    o("-fpreprocessed", Flag, CppMode, CPPMODE),
    o("-fno-preprocessed", Flag, CppMode, CPPMODE),
    o("-fdirectives-only", Flag, CppMode, CPPMODE),
    o("-fno-directives-only", Flag, CppMode, CPPMODE),
    o("-no-integrated-cpp", Flag, CppMode, CPPMODE),
    o("--no-integrated-cpp", Flag, CppMode, CPPMODE),
    // Header directories.
    o("-I", JoinedOrSeparate, IncludeDir, INC).s(S::BracketDir),
    o("--include-directory", Separate, IncludeDir, INC).s(S::BracketDir),
    o("--include-directory=", Joined, IncludeDir, INC).s(S::BracketDir),
    o("-iquote", JoinedOrSeparate, IncludeDir, INC).s(S::QuoteDir),
    o("-isystem", JoinedOrSeparate, IncludeDir, INC).s(S::SystemDir),
    o("-idirafter", JoinedOrSeparate, IncludeDir, INC).s(S::AfterDir),
    o("--include-directory-after", Separate, IncludeDir, INC).s(S::AfterDir),
    o("--include-directory-after=", Joined, IncludeDir, INC).s(S::AfterDir),
    o("-iprefix", JoinedOrSeparate, IncludeDir, INC).s(S::Unsupported),
    o("--include-prefix", Separate, IncludeDir, INC).s(S::Unsupported),
    o("--include-prefix=", Joined, IncludeDir, INC).s(S::Unsupported),
    o("-iwithprefix", JoinedOrSeparate, IncludeDir, INC).s(S::Unsupported),
    o("--include-with-prefix", Separate, IncludeDir, INC).s(S::Unsupported),
    o("--include-with-prefix=", Joined, IncludeDir, INC).s(S::Unsupported),
    o("--include-with-prefix-after", Separate, IncludeDir, INC).s(S::Unsupported),
    o("--include-with-prefix-after=", Joined, IncludeDir, INC).s(S::Unsupported),
    o("-iwithprefixbefore", JoinedOrSeparate, IncludeDir, INC).s(S::Unsupported),
    o("--include-with-prefix-before", Separate, IncludeDir, INC).s(S::Unsupported),
    o("--include-with-prefix-before=", Joined, IncludeDir, INC).s(S::Unsupported),
    o("-isysroot", JoinedOrSeparate, IncludeDir, INC).s(S::Isysroot),
    o("--sysroot", Separate, IncludeDir, INC).s(S::Sysroot),
    o("--sysroot=", Joined, IncludeDir, INC).s(S::Sysroot),
    o("-imultilib", JoinedOrSeparate, IncludeDir, INC).s(S::Unsupported),
    o("-imultiarch", JoinedOrSeparate, IncludeDir, INC).s(S::Unsupported),
    o("-iwithsysroot", JoinedOrSeparate, IncludeDir, INC).s(S::Unsupported),
    o("-cxx-isystem", JoinedOrSeparate, IncludeDir, INC).s(S::Unsupported),
    o("-isystem-after", JoinedOrSeparate, IncludeDir, INC).s(S::Unsupported),
    o("-iframework", JoinedOrSeparate, IncludeDir, INC).s(S::Unsupported),
    o("-iframeworkwithsysroot", JoinedOrSeparate, IncludeDir, INC).s(S::Unsupported),
    o("-F", JoinedOrSeparate, IncludeDir, INC).s(S::Unsupported),
    o("--embed-dir=", Joined, IncludeDir, INC).s(S::Unsupported),
    // Files read before the source.
    o("-include", JoinedOrSeparate, IncludeFile, INCF).s(S::Preinclude),
    o("--include", Separate, IncludeFile, INCF).s(S::Preinclude),
    o("--include=", Joined, IncludeFile, INCF).s(S::Preinclude),
    o("-imacros", JoinedOrSeparate, IncludeFile, INCF).s(S::Preinclude),
    o("--imacros", Separate, IncludeFile, INCF).s(S::Preinclude),
    o("--imacros=", Joined, IncludeFile, INCF).s(S::Preinclude),
    o("-include-pch", Separate, IncludeFile, INCF).s(S::Unsupported),
    o("-fpre-include=", Joined, IncludeFile, INCF).s(S::Unsupported),
    // Pass-throughs.
    o("-Wp,", Joined, Pass(Tool::Preprocessor), NONE).s(S::Unsupported),
    o("-Xpreprocessor", Separate, Pass(Tool::Preprocessor), NONE).s(S::Unsupported),
    o("-Wa,", Joined, Pass(Tool::Assembler), NONE),
    o("-Xassembler", Separate, Pass(Tool::Assembler), NONE),
    o("--for-assembler", Separate, Pass(Tool::Assembler), NONE),
    o("--for-assembler=", Joined, Pass(Tool::Assembler), NONE),
    o("-Xclang", Separate, Pass(Tool::Clang), NONE),
    o("-Wl,", Joined, Pass(Tool::Linker), NONE),
    o("-Xlinker", Separate, Pass(Tool::Linker), NONE),
    o("--for-linker", Separate, Pass(Tool::Linker), NONE),
    o("--for-linker=", Joined, Pass(Tool::Linker), NONE),
    // Running and loading programs.
    o("-wrapper", Separate, Runs, "it runs a program"),
    o(
        "-B",
        JoinedOrSeparate,
        Runs,
        "it chooses where the compiler's programs come from",
    ),
    o(
        "--prefix",
        Separate,
        Runs,
        "it chooses where the compiler's programs come from",
    ),
    o(
        "--prefix=",
        Joined,
        Runs,
        "it chooses where the compiler's programs come from",
    ),
    o("-no-canonical-prefixes", Flag, Plain, NONE),
    o("-specs=", Joined, Runs, SPECS),
    o("-specs", Separate, Runs, SPECS),
    o("--specs=", Joined, Runs, SPECS),
    o("--specs", Separate, Runs, SPECS),
    o("-fplugin=", Joined, Runs, "it loads a compiler plugin"),
    o(
        "-fplugin-arg-",
        Joined,
        Runs,
        "it configures a compiler plugin",
    ),
    o(
        "-iplugindir=",
        Joined,
        Runs,
        "it chooses where plugins come from",
    ),
    o("-fpass-plugin=", Joined, Runs, "it loads a compiler plugin"),
    o("-fuse-ld=", Joined, Runs, "it chooses the linker program"),
    o("--ld-path=", Joined, Runs, "it chooses the linker program"),
    o(
        "-fmodule-mapper=",
        Joined,
        Runs,
        "its mapper can be a program to run",
    ),
    o("--config", Separate, Runs, CONFIG),
    o("--config=", Joined, Runs, CONFIG),
    o(
        "-mllvm",
        Separate,
        Runs,
        "LLVM's internal options can load and write files",
    ),
    o("-load", Separate, Runs, "it loads a compiler plugin"),
    o("-plugin", Separate, Runs, "it runs a compiler plugin"),
    o("-add-plugin", Separate, Runs, "it runs a compiler plugin"),
    o("-fprofile-sample-use=", Joined, Reads, READS),
    // Side files.
    o("-save-temps", Flag, Writes, "it keeps intermediate files"),
    o(
        "-save-temps=",
        Joined,
        Writes,
        "it keeps intermediate files",
    ),
    o("--save-temps", Flag, Writes, "it keeps intermediate files"),
    o("-time=", Joined, Writes, WRITES),
    o("-aux-info", Separate, Writes, WRITES),
    o("-aux-info=", Joined, Writes, WRITES),
    o("-dumpdir", Separate, Writes, "it says where dump files go"),
    o("--dumpdir", Separate, Writes, "it says where dump files go"),
    o("-dumpbase", Separate, Writes, "it names dump files"),
    o("--dumpbase", Separate, Writes, "it names dump files"),
    o("-dumpbase-ext", Separate, Writes, "it names dump files"),
    o("--dumpbase-ext", Separate, Writes, "it names dump files"),
    o("-dumpmachine", Flag, Plain, NONE),
    o("-dumpversion", Flag, Plain, NONE),
    o("-dumpfullversion", Flag, Plain, NONE),
    o("-dumpspecs", Flag, Plain, NONE),
    o("-d", Joined, DumpLetters, DUMPS),
    o("--dump", Separate, DumpLetters, DUMPS),
    o("--dump=", Joined, DumpLetters, DUMPS),
    o("-fdump-", Joined, Writes, DUMPS),
    o("-fdump-noaddr", Flag, Plain, NONE),
    o("-fdump-unnumbered", Flag, Plain, NONE),
    o("-fdump-unnumbered-links", Flag, Plain, NONE),
    o("-fdump-passes", Flag, Plain, NONE),
    o("-fdump-analyzer-stderr", Flag, Plain, NONE),
    o("-fopt-info", Flag, Plain, NONE),
    o("-fopt-info-", Joined, WritesIfFile, WRITES),
    o("-fstack-usage", Flag, Writes, WRITES),
    o("-fcallgraph-info", Flag, Writes, WRITES),
    o("-fcallgraph-info=", Joined, Writes, WRITES),
    o(
        "-gsplit-dwarf",
        Flag,
        Writes,
        "it writes a .dwo file the client never gets back",
    ),
    o(
        "-gsplit-dwarf=",
        Joined,
        Writes,
        "it writes a .dwo file the client never gets back",
    ),
    o("-gen-cdb-fragment-path", Separate, Writes, WRITES),
    o("-fsave-optimization-record", Flag, Writes, WRITES),
    o("-fsave-optimization-record=", Joined, Writes, WRITES),
    o("-foptimization-record-file=", Joined, Writes, WRITES),
    o("-ftest-coverage", Flag, Writes, WRITES),
    o("--coverage", Flag, Writes, WRITES),
    o(
        "-fprofile-arcs",
        Flag,
        Writes,
        "its profile data names the server's paths",
    ),
    o(
        "-fprofile",
        Joined,
        Writes,
        "profiling files belong on the client",
    ),
    o("-fbranch-probabilities", Flag, Reads, READS),
    o("-fauto-profile", Flag, Reads, READS),
    o("-fauto-profile=", Joined, Reads, READS),
    o("-fcs-profile-generate", Flag, Writes, WRITES),
    o("-fcs-profile-generate=", Joined, Writes, WRITES),
    o("-fcoverage-data-file=", Joined, Writes, WRITES),
    o("-fcoverage-notes-file=", Joined, Writes, WRITES),
    o("-fcompare-debug", Joined, Writes, WRITES),
    o("-fdeps-file=", Joined, Writes, WRITES),
    o("-fdeps-target=", Joined, Writes, WRITES),
    o("-fdeps-format=", Joined, Writes, WRITES),
    o("-fdiagnostics-format=", Joined, WritesIfFile, WRITES),
    o("-fdiagnostics-add-output=", Joined, Writes, WRITES),
    o("-fdiagnostics-set-output=", Joined, Writes, WRITES),
    o("-fmodules-ts", Flag, Writes, "it writes module files"),
    o("-fmodules", Flag, Writes, "it writes module files"),
    o("-fmodule-header", Flag, Writes, "it writes module files"),
    o("-fmodule-header=", Joined, Writes, "it writes module files"),
    o(
        "-fmodules-cache-path=",
        Joined,
        Writes,
        "it writes module files",
    ),
    o("-fmodule-output", Flag, Writes, "it writes module files"),
    o("-fmodule-output=", Joined, Writes, "it writes module files"),
    o("-fmodule-file=", Joined, Reads, READS),
    o("-fprebuilt-module-path=", Joined, Reads, READS),
    o("-ivfsoverlay", JoinedOrSeparate, Reads, READS).s(S::Unsupported),
    o("-gen-decls", Flag, Writes, WRITES),
    o("-freport-bug", Flag, Writes, WRITES),
    o("-fself-test=", Joined, Reads, READS),
    o("--output-pch=", Joined, Writes, WRITES),
    o("-frepo", Flag, Writes, WRITES),
    o("-ftime-trace", Flag, Writes, WRITES),
    o("-ftime-trace=", Joined, Writes, WRITES),
    o("-fcrash-diagnostics-dir=", Joined, Writes, WRITES),
    o("-fcrash-diagnostics=", Joined, Writes, WRITES),
    o("-gen-reproducer", Flag, Writes, WRITES),
    o("-gen-reproducer=", Joined, Writes, WRITES),
    o("--serialize-diagnostics", Separate, Writes, WRITES),
    o("-serialize-diagnostics", Separate, Writes, WRITES),
    o("-save-stats", Flag, Writes, WRITES),
    o("-save-stats=", Joined, Writes, WRITES),
    o("-fgo-c-header=", Joined, Writes, WRITES),
    o("-fgo-embedcfg=", Joined, Reads, READS),
    o("-fsave-mixins=", Joined, Writes, WRITES),
    o("-fdoc-dir=", Joined, Writes, WRITES),
    o("-fdoc-file=", Joined, Writes, WRITES),
    o("-fdoc-inc=", Joined, Reads, READS),
    o("-fsanitize-blacklist=", Joined, Reads, READS),
    o("-fsanitize-ignorelist=", Joined, Reads, READS),
    o("-fsanitize-system-ignorelist=", Joined, Reads, READS),
    o("-fsanitize-coverage-allowlist=", Joined, Reads, READS),
    o("-fsanitize-coverage-ignorelist=", Joined, Reads, READS),
    o("-fxray-always-instrument=", Joined, Reads, READS),
    o("-fxray-never-instrument=", Joined, Reads, READS),
    o("-fxray-attr-list=", Joined, Reads, READS),
    o("-fthinlto-index=", Joined, Reads, READS),
    o("-fembed-offload-object=", Joined, Reads, READS),
    // Response files: `@F` is matched by [`lookup`] itself.
    // Options with an argument that is not a path.
    o("--param", Separate, Plain, NONE),
    o("-target", Separate, Plain, NONE),
    o("-arch", Separate, Plain, NONE),
    o("-G", JoinedOrSeparate, Plain, NONE),
    o("-V", Separate, Plain, NONE),
    o("-b", Separate, Plain, NONE),
    // Flags that move the compiler's own header dirs, which pump mode's analysis
    // probes (`-m32`, `-mx32`, `-march=`…: every `-m` word is a joined flag to gcc).
    o("-m", Joined, Plain, NONE).s(S::Probe),
    o("-ffreestanding", Flag, Plain, NONE).s(S::Freestanding),
    // Linker-only.
    o("-l", JoinedOrSeparate, Link, NONE),
    o("-L", JoinedOrSeparate, Link, NONE),
    o("--library-directory", Separate, Link, NONE),
    o("--library-directory=", Joined, Link, NONE),
    o("-T", JoinedOrSeparate, Link, NONE),
    o("-u", JoinedOrSeparate, Link, NONE),
    o("--force-link", Separate, Link, NONE),
    o("--force-link=", Joined, Link, NONE),
    o("-z", JoinedOrSeparate, Link, NONE),
    // Separate only: `-emit-llvm` and friends must not read as `-e mit-llvm`.
    o("-e", Separate, Link, NONE),
    o("--entry", Separate, Link, NONE),
    o("--entry=", Joined, Link, NONE),
];

/// One argv word (with the next one when it is the option's argument), classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit<'a> {
    /// The table entry; `None` for an operand (input file) or an unknown option.
    pub opt: Option<&'static Opt>,
    /// The option's argument, joined or separate (`None` for a flag or a missing one).
    pub value: Option<&'a str>,
    /// Words used: 1, or 2 for a separate argument.
    pub consumed: usize,
    /// A separate argument is needed and there is no next word.
    pub missing: bool,
    /// `@FILE`: a response file.
    pub response_file: bool,
}

impl Hit<'_> {
    /// The class, `Plain` for unknown options and operands.
    pub(crate) fn class(&self) -> Class {
        self.opt.map(|o| o.class).unwrap_or(Plain)
    }

    /// The option's spelling, or the word itself when the table does not know it.
    pub(crate) fn name<'w>(&self, word: &'w str) -> &'w str
    where
        'static: 'w,
    {
        self.opt.map(|o| o.name).unwrap_or(word)
    }

    /// Is this word an operand (input file, not an option)?
    pub(crate) fn is_operand(&self, word: &str) -> bool {
        self.opt.is_none() && !self.response_file && !word.starts_with('-')
    }
}

/// [`OPTIONS`]' entries by the byte after their dash: a client reads its argv with the
/// table several times per job, and a build's argv is mostly `-D`/`-I` words.
fn by_second_byte() -> &'static [Vec<&'static Opt>] {
    static INDEX: std::sync::OnceLock<Vec<Vec<&'static Opt>>> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index = vec![Vec::new(); 256];
        for o in OPTIONS {
            if let Some(list) = o
                .name
                .as_bytes()
                .get(1)
                .and_then(|&b| index.get_mut(usize::from(b)))
            {
                list.push(o);
            }
        }
        index
    })
}

/// The entry a word matches, longest spelling first.
fn find(word: &str) -> Option<&'static Opt> {
    let second = usize::from(*word.as_bytes().get(1)?);
    by_second_byte()
        .get(second)?
        .iter()
        .copied()
        .filter(|o| match o.form {
            Flag | Separate => word == o.name,
            Joined => word.starts_with(o.name),
            JoinedOrSeparate => word.starts_with(o.name),
        })
        .max_by_key(|o| o.name.len())
}

/// Classify `word` (an argv word) given the `next` one.
pub(crate) fn lookup<'a>(word: &'a str, next: Option<&'a str>) -> Hit<'a> {
    let mut hit = Hit {
        opt: None,
        value: None,
        consumed: 1,
        missing: false,
        response_file: false,
    };
    if word.starts_with('@') {
        hit.response_file = true;
        hit.value = word.strip_prefix('@');
        return hit;
    }
    if !word.starts_with('-') || word == "-" {
        return hit;
    }
    let Some(opt) = find(word) else {
        return hit;
    };
    hit.opt = Some(opt);
    let rest = word.strip_prefix(opt.name).unwrap_or("");
    match opt.form {
        Flag => {}
        Joined => hit.value = Some(rest),
        Separate => separate(&mut hit, next),
        JoinedOrSeparate if rest.is_empty() => separate(&mut hit, next),
        JoinedOrSeparate => hit.value = Some(rest),
    }
    hit
}

fn separate<'a>(hit: &mut Hit<'a>, next: Option<&'a str>) {
    match next {
        Some(n) => {
            hit.value = Some(n);
            hit.consumed = 2;
        }
        None => hit.missing = true,
    }
}

/// Does this class of option write a file, given its value?
pub(crate) fn writes(class: Class, value: Option<&str>) -> bool {
    match class {
        Writes => true,
        WritesIfFile => value.is_some_and(|v| v.contains('=') || v.ends_with("-file")),
        DumpLetters => value.is_some_and(|v| !dump_letters_are_harmless(v)),
        _ => false,
    }
}

/// `-dA -dD -dI -dM -dN -dp -dP -dU -dx` annotate or shape output; every other letter
/// asks for RTL dump files.
fn dump_letters_are_harmless(letters: &str) -> bool {
    !letters.is_empty() && letters.chars().all(|c| "ADIMNUpPx".contains(c))
}

/// The language a `-x LANG` request is compiled as on a server that receives the
/// client's preprocessor output: `-x c` there would let `#include` read the server's
/// files again. `None`: a language distcc does not distribute (the client compiles it).
pub(crate) fn preprocessed_language(lang: &str) -> Option<&'static str> {
    Some(match lang {
        "c" | "cpp-output" => "cpp-output",
        "c++" | "c++-cpp-output" => "c++-cpp-output",
        "objective-c" | "objective-c-cpp-output" | "objc-cpp-output" => "objective-c-cpp-output",
        "objective-c++" | "objective-c++-cpp-output" => "objective-c++-cpp-output",
        "none" => "none",
        _ => return None,
    })
}

/// Split a pass-through option's value into the items the tool receives: `-Wp,a,b` gives
/// `a`, `b`; `-Xpreprocessor X` gives `X`.
pub(crate) fn pass_items(opt: &Opt, value: &str) -> Vec<String> {
    if opt.name.ends_with(',') || opt.name.ends_with('=') {
        value.split(',').map(str::to_owned).collect()
    } else {
        vec![value.to_owned()]
    }
}

/// Why an assembler item is dangerous on a server, if it is: as's `-a…[=F]` listings,
/// `--MD F`, `-o F`, `@F`, `-I dir` (`.include`), and any item that is not an option
/// (a file name).
pub(crate) fn assembler_item_hazard(item: &str) -> Option<&'static str> {
    if item.is_empty() {
        return None;
    }
    if item.starts_with('@') {
        return Some("the assembler would read a response file");
    }
    if !item.starts_with('-') {
        return Some("it names a file for the assembler");
    }
    if item.starts_with("-a") || item.starts_with("--a") {
        return Some("the assembler would write a listing file");
    }
    if item == "--MD" || item.starts_with("--MD=") || item.starts_with("-MD") {
        return Some("the assembler would write a dependency file");
    }
    if item.starts_with("-o") || item.starts_with("--o") {
        return Some("the assembler would write another output file");
    }
    if item.starts_with("-I") || item.starts_with("--include") {
        return Some("the assembler would read server files");
    }
    if item.starts_with("--defsym") || item.starts_with("--listing") {
        return None;
    }
    None
}

/// `-Xclang` items a server allows: a few that only shape diagnostics or optimisation.
pub(crate) fn clang_item_is_safe(item: &str) -> bool {
    const SAFE: &[&str] = &[
        "-fcolor-diagnostics",
        "-fno-color-diagnostics",
        "-disable-O0-optnone",
        "-disable-llvm-passes",
        "-disable-llvm-optzns",
        "-fno-pch-timestamp",
        "-fno-validate-pch",
        "-fdiagnostics-show-template-tree",
        "-fexperimental-new-pass-manager",
        "-flegacy-pass-manager",
        "-fno-legacy-pass-manager",
        "-emit-llvm",
        "-mno-constructor-aliases",
        "-fno-sized-deallocation",
    ];
    SAFE.contains(&item)
        || (item.starts_with("-W") && !item.starts_with("-Wp,") && !item.starts_with("-Wa,"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(word: &str) -> Class {
        lookup(word, Some("next")).class()
    }

    #[test]
    fn forms_and_consumed_words() {
        let h = lookup("-o", Some("x.o"));
        assert_eq!((h.value, h.consumed, h.class()), (Some("x.o"), 2, Output));
        let h = lookup("-ox.o", Some("y"));
        assert_eq!((h.value, h.consumed), (Some("x.o"), 1));
        let h = lookup("--output=F", None);
        assert_eq!((h.value, h.consumed, h.class()), (Some("F"), 1, Output));
        let h = lookup("--output", Some("F"));
        assert_eq!((h.value, h.consumed, h.class()), (Some("F"), 2, Output));
        let h = lookup("-MT", None);
        assert!(h.missing, "a trailing -MT has no argument");
        let h = lookup("-wrapper", Some("/bin/sh,-c,touch x"));
        assert_eq!((h.consumed, h.class()), (2, Runs));
        assert_eq!(h.opt.map(|o| o.name), Some("-wrapper"));
        let h = lookup("-Ifoo", None);
        assert_eq!((h.value, h.class()), (Some("foo"), IncludeDir));
        let h = lookup("-x", Some("c"));
        assert_eq!((h.value, h.consumed, h.class()), (Some("c"), 2, Language));
        let h = lookup("-xc++", None);
        assert_eq!(h.value, Some("c++"));
        let h = lookup("@args.rsp", None);
        assert!(h.response_file);
        assert!(lookup("a.c", None).is_operand("a.c"));
        assert!(!lookup("-O2", None).is_operand("-O2"));
        assert_eq!(lookup("-O2", None).opt, None);
    }

    #[test]
    fn longest_spelling_wins() {
        assert_eq!(class("-MF"), DepsFile);
        assert_eq!(class("-MD"), DepsOn);
        assert_eq!(class("-MMD"), DepsOn);
        assert_eq!(class("-M"), DepsOnly);
        assert_eq!(class("-fdump-noaddr"), Plain);
        assert_eq!(class("-fdump-tree-all"), Writes);
        assert_eq!(class("-fdump-noaddr=x"), Writes);
        assert_eq!(class("-include"), IncludeFile);
        assert_eq!(class("-imacros"), IncludeFile);
        assert_eq!(class("-iquote"), IncludeDir);
        assert_eq!(class("-dumpdir"), Writes);
        assert_eq!(class("-dumpbase-ext"), Writes);
        assert_eq!(class("-dumpmachine"), Plain);
        assert_eq!(class("-specs"), Runs);
        assert_eq!(class("--specs=x"), Runs);
        assert_eq!(class("-fplugin=x.so"), Runs);
        assert_eq!(class("-fplugin-arg-x-y"), Runs);
        assert_eq!(class("-Bbin/"), Runs);
        assert_eq!(class("-fprofile-generate"), Writes);
        assert_eq!(class("-fprofile-note=x"), Writes);
        assert_eq!(class("-ftime-trace-granularity=5"), Plain);
        assert_eq!(class("-fpreprocessed"), CppMode);
        assert_eq!(class("-Wp,-MD,x"), Pass(Tool::Preprocessor));
        assert_eq!(class("-Wall"), Plain);
        assert_eq!(class("-emit-llvm"), Plain);
        assert_eq!(class("-undef"), Cpp);
        assert_eq!(class("-isystem-after"), IncludeDir);
    }

    #[test]
    fn writes_depends_on_value() {
        let w = |word: &str| {
            let h = lookup(word, Some("n"));
            writes(h.class(), h.value)
        };
        assert!(!w("-fopt-info"));
        assert!(!w("-fopt-info-vec-missed"));
        assert!(w("-fopt-info-all=F"));
        assert!(!w("-fdiagnostics-format=json"));
        assert!(w("-fdiagnostics-format=sarif-file"));
        assert!(!w("-dA"));
        assert!(!w("-dp"));
        assert!(w("-dr"));
        assert!(w("-da"));
        assert!(w("-fstack-usage"));
        assert!(w("-gsplit-dwarf"));
        assert!(w("-aux-info"));
        assert!(w("-save-temps"));
        assert!(w("-time=/tmp/t"));
    }

    #[test]
    fn pass_through_items() {
        let h = lookup("-Wp,-MD,x.d", None);
        let opt = h.opt.unwrap();
        assert_eq!(pass_items(opt, h.value.unwrap()), vec!["-MD", "x.d"]);
        let h = lookup("-Xassembler", Some("-aln=F"));
        assert_eq!(pass_items(h.opt.unwrap(), h.value.unwrap()), vec!["-aln=F"]);
        assert!(assembler_item_hazard("-aln=F").is_some());
        assert!(assembler_item_hazard("--MD").is_some());
        assert!(assembler_item_hazard("F").is_some());
        assert!(assembler_item_hazard("-I/etc").is_some());
        assert!(assembler_item_hazard("@x").is_some());
        assert!(assembler_item_hazard("--noexecstack").is_none());
        assert!(clang_item_is_safe("-fno-color-diagnostics"));
        assert!(!clang_item_is_safe("-load"));
        assert!(!clang_item_is_safe("-plugin"));
    }

    #[test]
    fn every_spelling_finds_itself_once() {
        let mut names: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a spelling is in the table twice");
        for opt in OPTIONS {
            let h = lookup(opt.name, Some("arg"));
            assert_eq!(h.opt, Some(opt), "{}", opt.name);
            let refused = matches!(opt.class, Runs | Reads | Writes);
            if refused {
                assert!(!opt.why.is_empty(), "{} needs a reason", opt.name);
            }
        }
    }

    #[test]
    fn include_search_facts() {
        let search = |word: &str| lookup(word, Some("next")).opt.map(|o| o.search);
        assert_eq!(search("-Idir"), Some(Search::BracketDir));
        assert_eq!(search("--include-directory=d"), Some(Search::BracketDir));
        assert_eq!(search("-iquote"), Some(Search::QuoteDir));
        assert_eq!(search("-isystem"), Some(Search::SystemDir));
        assert_eq!(search("-idirafter"), Some(Search::AfterDir));
        assert_eq!(search("--sysroot=/s"), Some(Search::Sysroot));
        assert_eq!(search("-isysroot"), Some(Search::Isysroot));
        assert_eq!(search("-imacros"), Some(Search::Preinclude));
        assert_eq!(search("-DX=1"), Some(Search::Define));
        assert_eq!(search("--no-standard-includes"), Some(Search::NoStdinc));
        assert_eq!(search("-ffreestanding"), Some(Search::Freestanding));
        assert_eq!(search("-m32"), Some(Search::Probe));
        assert_eq!(search("-stdlib=libc++"), Some(Search::Probe));
        assert_eq!(search("-iwithprefixbefore"), Some(Search::Unsupported));
        assert_eq!(search("-include-pch"), Some(Search::Unsupported));
        assert_eq!(search("-I-"), Some(Search::Unsupported));
        // `-m` words are plain to the server, `-mllvm` still runs LLVM's options.
        assert_eq!(class("-march=native"), Plain);
        assert_eq!(class("-mllvm"), Runs);
        // Every option that changes where headers come from says how, so the analysis
        // can never skip one as if it were a flag.
        for opt in OPTIONS {
            if matches!(
                opt.class,
                IncludeDir | IncludeFile | Pass(Tool::Preprocessor)
            ) {
                assert_ne!(opt.search, Search::Nothing, "{}", opt.name);
            }
        }
    }

    #[test]
    fn odd_bytes_do_not_panic() {
        for w in ["-", "", "-é", "-o日本", "@", "-Wp,", "-d", "--", "-x"] {
            let _ = lookup(w, None);
            let _ = lookup(w, Some("日本"));
        }
    }
}
