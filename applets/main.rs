//! One executable, busybox style: the name we were started under picks the applet.
//!
//! `distccd`, `distcc-config`, `distccmon-text`, `pump`/`distcc-pump`, `lsdistcc`,
//! `update-distcc-symlinks` are exact
//! names (and the hidden `distcc-zeroconf-browser`); any
//! other name containing `distcc` is the client; any other name at all (`gcc`, `cc`, `c++`,
//! `x86_64-pc-linux-gnu-gcc-13`, …) is the client masquerading as that compiler. `distcc
//! <applet> ARGS…` also runs an applet by name — only under the multicall name `distcc`
//! itself, so that `distcc-config distccd …` or `distcc-pump distccd …` never start a daemon.

use std::ffi::OsString;

use ::distcc::paths::basename;

mod distcc;
mod distcc_config;
mod distccd;
mod distccmon_text;
mod lsdistcc;
mod pump;
mod update_distcc_symlinks;

/// The words after argv[0] as text, for the applets whose options and values are text
/// (a word that is not UTF-8 shows up with U+FFFD and fails their checks).
fn text_args(args: &[OsString]) -> Vec<String> {
    args.iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// An applet's entry point: the full argv (argv[0] included); returns the exit status.
type AppletMain = fn(Vec<OsString>) -> i32;

/// The applet table. Names are matched exactly against basename(argv[0]).
const APPLETS: &[(&str, AppletMain)] = &[
    ("distccd", distccd::main),
    ("distcc-config", distcc_config::main),
    ("distccmon-text", distccmon_text::main),
    ("pump", pump::main),
    ("distcc-pump", pump::main),
    ("lsdistcc", lsdistcc::main),
    ("update-distcc-symlinks", update_distcc_symlinks::main),
    // Hidden: the `+zeroconf` background browser, started by clients (src/zeroconf.rs).
    (::distcc::zeroconf::BROWSER_APPLET, lsdistcc::browser_main),
    ("distcc", distcc::main),
];

/// Which applet serves a given basename of argv[0].
fn lookup(name: &str) -> AppletMain {
    if let Some((_, f)) = APPLETS.iter().find(|(n, _)| *n == name) {
        return *f;
    }
    // Anything else is the client: `distcc`-something explicitly, or masquerading as a compiler.
    distcc::main
}

/// The applet for a whole command line, and the argv it gets. `distcc <applet> ARGS…` runs
/// the applet (busybox style) when started as exactly `distcc`; `distcc distcc …` and
/// `distcc gcc -c x.c` stay the client.
fn dispatch(mut args: Vec<OsString>) -> (AppletMain, Vec<OsString>) {
    if args.is_empty() {
        args.push(OsString::from("distcc"));
    }
    let name = basename(&args[0]);
    if name == "distcc"
        && let Some(sub) = args.get(1).and_then(|a| a.to_str())
        && sub != "distcc"
        && let Some((_, f)) = APPLETS.iter().find(|(n, _)| *n == sub)
    {
        args.remove(0);
        return (*f, args);
    }
    (lookup(&name), args)
}

fn main() {
    let (f, args) = dispatch(std::env::args_os().collect());
    std::process::exit(f(args));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: AppletMain, b: AppletMain) -> bool {
        std::ptr::fn_addr_eq(a, b)
    }

    #[test]
    fn dispatch_by_name() {
        assert!(same(lookup("distccd"), distccd::main));
        assert!(same(lookup("distcc-config"), distcc_config::main));
        assert!(same(lookup("distccmon-text"), distccmon_text::main));
        assert!(same(lookup("pump"), pump::main));
        assert!(same(lookup("distcc-pump"), pump::main));
        assert!(same(lookup("lsdistcc"), lsdistcc::main));
        assert!(same(
            lookup("update-distcc-symlinks"),
            update_distcc_symlinks::main
        ));
        assert!(same(
            lookup("distcc-zeroconf-browser"),
            lsdistcc::browser_main
        ));
        assert!(same(lookup("distcc"), distcc::main));
        assert!(same(lookup("x86_64-pc-linux-gnu-gcc-13"), distcc::main));
        assert!(same(lookup("gcc"), distcc::main));
    }

    fn argv(words: &str) -> Vec<OsString> {
        words.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn only_the_multicall_name_takes_an_applet_argument() {
        let (f, a) = dispatch(argv("/usr/bin/distcc distccd --version"));
        assert!(same(f, distccd::main));
        assert_eq!(a, argv("distccd --version"));
        let (f, a) = dispatch(argv("distcc distcc gcc -c x.c"));
        assert!(same(f, distcc::main));
        assert_eq!(a.len(), 5, "the client gets its argv untouched");
        for cmd in [
            "distcc-config distccd --version",
            "distcc-pump distccd --daemon",
            "/usr/bin/pump distccd --daemon",
            "distccmon-text distccd",
            "gcc distccd",
        ] {
            let (f, a) = dispatch(argv(cmd));
            assert!(!same(f, distccd::main), "{cmd} must not start the daemon");
            assert_eq!(a, argv(cmd), "{cmd}");
        }
        assert!(same(dispatch(Vec::new()).0, distcc::main));
    }
}
