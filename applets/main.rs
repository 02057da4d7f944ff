//! One executable, busybox style: the name we were started under picks the applet.
//!
//! `distccd`, `distcc-config`, `distccmon-text`, `pump`/`distcc-pump` are exact names; any
//! other name containing `distcc` is the client; any other name at all (`gcc`, `cc`, `c++`,
//! `x86_64-pc-linux-gnu-gcc-13`, …) is the client masquerading as that compiler. `distcc
//! <applet> ARGS…` also runs an applet by name.

use std::ffi::OsString;
use std::path::Path;

mod distcc;
mod distcc_config;
mod distccd;
mod distccmon_text;
mod pump;

/// An applet's entry point: the full argv (argv[0] included); returns the exit status.
type AppletMain = fn(Vec<OsString>) -> i32;

/// The applet table. Names are matched exactly against basename(argv[0]).
const APPLETS: &[(&str, AppletMain)] = &[
    ("distccd", distccd::main),
    ("distcc-config", distcc_config::main),
    ("distccmon-text", distccmon_text::main),
    ("pump", pump::main),
    ("distcc-pump", pump::main),
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

fn basename(arg0: &OsString) -> String {
    Path::new(arg0)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args.is_empty() {
        args.push(OsString::from("distcc"));
    }
    let name = basename(&args[0]);
    // `distcc distccd --daemon …` runs the daemon, busybox style. Only exact applet names other
    // than the client itself count, so `distcc gcc -c x.c` stays a compile.
    if name.contains("distcc") && name != "distccd" && args.len() > 1 {
        let sub = args[1].to_string_lossy().into_owned();
        if sub != "distcc" && APPLETS.iter().any(|(n, _)| *n == sub) {
            args.remove(0);
            let f = lookup(&sub);
            std::process::exit(f(args));
        }
    }
    let f = lookup(&name);
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
        assert!(same(lookup("distcc"), distcc::main));
        assert!(same(lookup("x86_64-pc-linux-gnu-gcc-13"), distcc::main));
        assert!(same(lookup("gcc"), distcc::main));
    }
}
