//! A fast, directives-only scanner: it finds `#include`, `#include_next`, `#import`,
//! `__has_include` and object-like `#define`s without preprocessing anything. Every `#if`
//! branch counts, so what it reports is a superset of what the real preprocessor reads —
//! which is what pump mode needs: a missing header breaks the remote compile, an extra one
//! only costs bytes.

/// How an include names its file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Form {
    /// `#include "name"`: the includer's directory first, then the quote chain.
    Quote(String),
    /// `#include <name>`: the bracket chain only.
    Angle(String),
    /// `#include MACRO` (a computed include): the text after the directive.
    Computed(String),
}

/// One include directive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Include {
    /// `#include_next` (or `__has_include_next`): continue after the includer's directory.
    pub next: bool,
    /// From `__has_include`: a missing file is not an error.
    pub optional: bool,
    pub form: Form,
}

/// What a file can contribute to the include closure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub includes: Vec<Include>,
    /// Object-like `#define NAME VALUE` pairs: candidate values for computed includes.
    pub defines: Vec<(String, String)>,
}

/// Remove comments and backslash-newlines, keeping line structure close enough for
/// directive scanning. String and character literals are respected within a line so that
/// `"/*"` does not open a comment.
fn clean(src: &[u8]) -> String {
    let text = String::from_utf8_lossy(src);
    // Most files have no continuation lines: no copy for them (this runs for every
    // job's source).
    let text = if text.contains("\\\n") || text.contains("\\\r\n") {
        std::borrow::Cow::Owned(text.replace("\\\r\n", "").replace("\\\n", ""))
    } else {
        text
    };
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            out.push(c);
            if c == b'\\' && i + 1 < b.len() && b[i + 1] != b'\n' {
                out.push(b[i + 1]);
                i += 2;
                continue;
            }
            if c == q || c == b'\n' {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..].find("*/").map(|p| i + 2 + p + 2);
                let stop = end.unwrap_or(b.len());
                // Keep the newlines so directives after the comment stay at line starts.
                out.push(b' ');
                out.extend(b[i..stop].iter().filter(|&&x| x == b'\n'));
                i = stop;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' => {
                // An apostrophe between digits is a C++14 digit separator, not a literal.
                let digit_sep = c == b'\'' && i > 0 && b[i - 1].is_ascii_alphanumeric();
                if !digit_sep {
                    quote = Some(c);
                }
                out.push(c);
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Only whole ASCII-delimited runs were dropped from valid UTF-8: still valid.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn ident_len(s: &str) -> usize {
    s.bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
        .count()
}

/// Parse the name part of an include: `"x"`, `<x>` or anything else (computed).
pub(crate) fn parse_form(rest: &str) -> Option<Form> {
    let rest = rest.trim();
    if let Some(r) = rest.strip_prefix('"') {
        return r.find('"').map(|e| Form::Quote(r[..e].to_string()));
    }
    if let Some(r) = rest.strip_prefix('<') {
        return r.find('>').map(|e| Form::Angle(r[..e].to_string()));
    }
    (!rest.is_empty()).then(|| Form::Computed(rest.to_string()))
}

/// `__has_include("x")` / `__has_include_next(<x>)` operands in a `#if`/`#elif` line.
fn has_includes(line: &str, out: &mut Vec<Include>) {
    let mut rest = line;
    while let Some(p) = rest.find("__has_include") {
        let after = &rest[p + "__has_include".len()..];
        let (next, after) = match after.strip_prefix("_next") {
            Some(a) => (true, a),
            None => (false, after),
        };
        let after = after.trim_start();
        if let Some(arg) = after.strip_prefix('(')
            && let Some(form @ (Form::Quote(_) | Form::Angle(_))) = parse_form(arg)
        {
            out.push(Include {
                next,
                optional: true,
                form,
            });
        }
        rest = after;
    }
}

/// Scan a file's bytes.
pub(crate) fn parse(src: &[u8]) -> Parsed {
    let text = clean(src);
    let mut parsed = Parsed::default();
    for line in text.lines() {
        let Some(d) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        let d = d.trim_start();
        let n = ident_len(d);
        let (word, rest) = d.split_at(n);
        match word {
            "include" | "import" | "include_next" => {
                if let Some(form) = parse_form(rest) {
                    parsed.includes.push(Include {
                        next: word == "include_next",
                        optional: false,
                        form,
                    });
                }
            }
            "define" => {
                let rest = rest.trim_start();
                let n = ident_len(rest);
                if n == 0 {
                    continue;
                }
                let (name, value) = rest.split_at(n);
                // Function-like macros can't be evaluated here; leave them out, so a
                // computed include that needs one is reported as not covered.
                if !value.starts_with('(') {
                    parsed
                        .defines
                        .push((name.to_string(), value.trim().to_string()));
                }
            }
            "if" | "elif" => has_includes(rest, &mut parsed.includes),
            // `#pragma GCC dependency "file"` makes cc1 open the file (fatal if missing).
            "pragma" => {
                let rest = rest.trim_start();
                if let Some(r) = rest.strip_prefix("GCC")
                    && let Some(r) = r.trim_start().strip_prefix("dependency")
                    && let Some(form @ (Form::Quote(_) | Form::Angle(_))) = parse_form(r)
                {
                    parsed.includes.push(Include {
                        next: false,
                        optional: false,
                        form,
                    });
                }
            }
            _ => {}
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(next: bool, form: Form) -> Include {
        Include {
            next,
            optional: false,
            form,
        }
    }

    #[test]
    fn finds_all_directive_kinds() {
        let p = parse(
            b"#include \"a.h\"\n  #  include <b/c.h>\n#include_next <d.h>\n#import \"e.h\"\n\
              #include HDR\n#define HDR \"f.h\"\n#define F(x) x\n#if __has_include(<g.h>)\n#endif\n",
        );
        assert_eq!(
            p.includes,
            vec![
                inc(false, Form::Quote("a.h".into())),
                inc(false, Form::Angle("b/c.h".into())),
                inc(true, Form::Angle("d.h".into())),
                inc(false, Form::Quote("e.h".into())),
                inc(false, Form::Computed("HDR".into())),
                Include {
                    next: false,
                    optional: true,
                    form: Form::Angle("g.h".into())
                },
            ]
        );
        assert_eq!(p.defines, vec![("HDR".into(), "\"f.h\"".into())]);
    }

    #[test]
    fn comments_and_continuations() {
        let p = parse(
            b"/* #include \"no1.h\"\n#include \"no2.h\" */ #include \"x.h\"\n\
              // #include \"no3.h\"\n#inc\\\nlude \"yes.h\"\nchar *s = \"/*\";\n#include \"after.h\"\n",
        );
        let names: Vec<_> = p.includes.iter().map(|i| i.form.clone()).collect();
        assert_eq!(
            names,
            vec![
                // A directive may follow a comment that ends on its line.
                Form::Quote("x.h".into()),
                Form::Quote("yes.h".into()),
                Form::Quote("after.h".into())
            ]
        );
    }

    #[test]
    fn pragma_dependency_is_read_too() {
        let p = parse(b"#pragma GCC dependency \"dep.txt\" extra words\n#pragma once\n");
        assert_eq!(p.includes, vec![inc(false, Form::Quote("dep.txt".into()))]);
    }

    #[test]
    fn all_branches_count() {
        let p = parse(b"#if 0\n#include \"a.h\"\n#else\n#include \"b.h\"\n#endif\n");
        assert_eq!(p.includes.len(), 2);
    }
}
