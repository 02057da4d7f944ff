//! The server's view of a received command line: where the source and output words are,
//! whether it is a compile at all, and how to point it at the job's temp files
//! (distcc 3.4 `serve.c`, `arg.c`, `srvrpc.c`; reference §1.7, §1.8).

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ArgvError {
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
}

use crate::args::TAKES_ARG;

/// Options that take a path argument that pump mode must re-root (separate or joined).
const PATH_OPTIONS: &[&str] = &[
    "-I",
    "-include",
    "-imacros",
    "-idirafter",
    "-iprefix",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-isystem",
    "-iquote",
];

fn extension(word: &str) -> Option<&str> {
    let name = word.rsplit('/').next().unwrap_or(word);
    name.rsplit_once('.').map(|(_, e)| e)
}

/// Is this word a source file by its extension? (The client's table.)
pub use crate::args::is_source;

/// The extension the server gives the received preprocessed source (reference §1.8).
pub fn temp_input_extension(source: &str) -> &'static str {
    match extension(source).unwrap_or("") {
        "c" | "i" => ".i",
        "cc" | "cpp" | "cxx" | "cp" | "c++" | "C" | "ii" => ".ii",
        "m" | "mi" => ".mi",
        "mm" | "M" | "mii" => ".mii",
        "s" | "S" => ".s",
        _ => ".tmp",
    }
}

/// Where the interesting words of a compile command are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub source: usize,
    /// The index of the output word: `-oX` (joined) or the word after `-o`.
    pub output: Option<Output>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Separate(usize),
    Joined(usize),
}

/// Check that `argv` is a distributable compile and find its source and output.
pub fn scan(argv: &[String]) -> Result<Scan, ArgvError> {
    if argv.is_empty() {
        return Err(ArgvError::Empty);
    }
    let mut compile = false;
    let mut source: Option<usize> = None;
    let mut output = None;
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].as_str();
        match a {
            "-c" | "-S" => compile = true,
            "-E" => return Err(ArgvError::LocalOnly("-E".into())),
            "-M" | "-MM" => return Err(ArgvError::LocalOnly(a.into())),
            "-o" => {
                if i + 1 >= argv.len() {
                    return Err(ArgvError::MissingOutput);
                }
                output = Some(Output::Separate(i + 1));
                i += 2;
                continue;
            }
            _ if a.starts_with("-o") => output = Some(Output::Joined(i)),
            _ if TAKES_ARG.contains(&a) => {
                i += 2;
                continue;
            }
            _ if !a.starts_with('-') && is_source(a) => {
                if let Some(s) = source {
                    return Err(ArgvError::TwoSources(argv[s].clone(), a.into()));
                }
                source = Some(i);
            }
            _ => {}
        }
        i += 1;
    }
    if !compile {
        return Err(ArgvError::NotCompile);
    }
    let source = source.ok_or(ArgvError::NoSource)?;
    Ok(Scan { source, output })
}

/// Point a protocol-1/2 command at the temp input and output (reference §1.8).
pub fn rewrite_plain(argv: &[String], scan: &Scan, input: &str, output: &str) -> Vec<String> {
    let mut out = argv.to_vec();
    out[scan.source] = input.to_owned();
    set_output(&mut out, scan, output);
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
pub struct PumpArgv {
    pub argv: Vec<String>,
    /// The `.d` target the client asked for with `-MT` (None: the client's output name).
    pub dotd_target: Option<String>,
}

/// Rewrite a protocol-3 command to run inside the temp root (reference §1.7): output and
/// deps file to our temp names, `-MT X` removed (X becomes the `.d` target), `-MMD` added
/// when no `-MD`/`-MMD`, absolute include paths and source re-rooted, and debug/macro
/// paths mapped back so the object names the client's files.
pub fn rewrite_pump(
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
    let mut i = 0;
    while i < rooted.len() {
        let a = &rooted[i];
        if a == "-MT" && i + 1 < rooted.len() {
            dotd_target = Some(rooted[i + 1].clone());
            i += 2;
            continue;
        }
        if let Some(t) = a.strip_prefix("-MT").filter(|t| !t.is_empty()) {
            dotd_target = Some(t.to_owned());
            i += 1;
            continue;
        }
        if a == "-MD" || a == "-MMD" {
            has_md = true;
        }
        if i > 0 && PATH_OPTIONS.contains(&a.as_str()) && i + 1 < rooted.len() {
            out.push(a.clone());
            out.push(reroot(&rooted[i + 1], root));
            i += 2;
            continue;
        }
        if let Some(opt) = PATH_OPTIONS
            .iter()
            .find(|o| a.len() > o.len() && a.starts_with(*o))
        {
            let path = &a[opt.len()..];
            if path.starts_with('/') {
                out.push(format!("{opt}{}", reroot(path, root)));
                i += 1;
                continue;
            }
        }
        out.push(a.clone());
        i += 1;
    }
    if !has_md {
        out.push("-MMD".into());
    }
    out.push("-MF".into());
    out.push(deps.into());
    out.push(format!("-fdebug-prefix-map={root}="));
    out.push(format!("-fmacro-prefix-map={root}="));
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
pub fn rewrite_dotd(dotd: &str, root: &str, temp_output: &str, target: &str) -> String {
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
            v("gcc -O2 -c /tmp/d/in.i -o /tmp/d/out.o")
        );
        let a = v("gcc -c hello.c");
        let s = scan(&a).unwrap();
        assert_eq!(rewrite_plain(&a, &s, "i.i", "o.o"), v("gcc -c i.i -o o.o"));
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
                "gcc -O2 -MD -I/tmp/R/usr/local/inc -I rel -isystem /tmp/R/opt/x -c /tmp/R/src/hello.c -o /tmp/out.o -MF /tmp/d.deps -fdebug-prefix-map=/tmp/R= -fmacro-prefix-map=/tmp/R="
            )
        );
        let a = v("gcc -c a.c");
        let p = rewrite_pump(&a, &scan(&a).unwrap(), "/R", "/o.o", "/d");
        assert!(p.argv.contains(&"-MMD".to_string()));
        assert_eq!(p.dotd_target, None);
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
