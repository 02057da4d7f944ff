//! The `distcc-config` applet: Gentoo's host-list and masquerade tool, with the same
//! options, files, messages and exit codes as Gentoo's `distcc-config` — except its two
//! bugs (`--get-hosts` printed a path, `--set-log` did nothing) — and host lists checked with
//! the same parser the client uses before anything is written.
//!
//! `DISTCC_CONFIG_ROOT` (ours) is prefixed to every system path (`/etc/distcc/hosts`,
//! `/etc/env.d/02distcc`, `/usr/lib/distcc`, `/usr/bin`), so tests and image builders can work
//! on a staging root. `DISTCC_CONFIG_AS_USER=1` makes a root process behave as a user would
//! (for tests of the per-user paths).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use distcc::settings::{ConfigEnv, ProcessEnv};

const OPTIONS: &[&str] = &[
    "--set-hosts",
    "--get-hosts",
    "--set-verbose",
    "--get-verbose",
    "--set-log",
    "--get-log",
    "--set-env",
    "--get-env",
    "--update-masquerade",
    "--update-masquerade-with-crossdev",
    "--pair",
    "--code",
    "--yes",
    "--help",
    "--version",
];

/// The compilers `--update-masquerade` links when they exist in `/usr/bin`.
/// (`c89-gcc`/`c99-gcc` are Debian's names for the standard-mode wrappers, which
/// `update-distcc-symlinks` links too.)
const COMPILERS: &[&str] = &[
    "gcc", "g++", "cc", "c++", "c89", "c99", "c89-gcc", "c99-gcc", "clang", "clang++",
];

fn usage(prog: &str) -> String {
    format!(
        "Usage: {prog} --set-hosts HOSTS | --get-hosts
       {prog} --set-verbose {{0|1}} | --get-verbose
       {prog} --set-log FILE | --get-log
       {prog} --set-env VARIABLE VALUE | --get-env [VARIABLE]
       {prog} --update-masquerade | --update-masquerade-with-crossdev
       {prog} --pair HOST[:PORT] [--code CODE] [--yes]
       {prog} --help
Hosts are checked with distcc's own parser before they are written; as root they go to
/etc/distcc/hosts, otherwise to ~/.distcc/hosts. Environment settings live in
/etc/env.d/02distcc. DISTCC_CONFIG_ROOT=DIR works on a staging root instead of /.
--pair makes your key (in DISTCC_DIR, default ~/.distcc) if you have none, shows the
server's key fingerprint to confirm (--yes: don't ask), and has the server authorise
your key with the one-time CODE its admin got from `distccd --pairing-code`; the
server's key is then pinned in DISTCC_DIR/known_hosts and your jobs to it are encrypted.
"
    )
}

/// Paths under the configured root.
struct Root(ConfigEnv);

impl Root {
    fn path(&self, abs: &str) -> PathBuf {
        self.0.root.join(abs.trim_start_matches('/'))
    }

    fn is_real_root(&self) -> bool {
        self.0.root == Path::new("/")
    }

    /// Root writes the system files; a user (or root with `DISTCC_CONFIG_AS_USER=1`)
    /// their own.
    fn as_root(&self) -> bool {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        euid == 0 && !self.0.as_user
    }

    fn user_hosts(&self) -> Option<PathBuf> {
        self.0.home.as_ref().map(|h| h.join(".distcc/hosts"))
    }

    fn hosts(&self) -> PathBuf {
        self.path("/etc/distcc/hosts")
    }

    fn env_file(&self) -> PathBuf {
        self.path("/etc/env.d/02distcc")
    }

    fn masq_dir(&self) -> PathBuf {
        self.path("/usr/lib/distcc")
    }

    fn bin_dir(&self) -> PathBuf {
        self.path("/usr/bin")
    }
}

/// A failure: the message and the exit status.
type Outcome = Result<(), (String, i32)>;

fn fail(msg: impl Into<String>) -> Outcome {
    Err((msg.into(), 1))
}

fn need_root(root: &Root, prog: &str, opt: &str) -> Outcome {
    if root.as_root() {
        Ok(())
    } else {
        fail(format!("!!! {prog} {opt} must be run as root"))
    }
}

fn set_hosts(root: &Root, value: Option<&str>) -> Outcome {
    let Some(hosts) = value else {
        return fail(
            "!!! Error: --set-hosts needs a host list, e.g. \"192.168.0.2/8,lzo localhost\"",
        );
    };
    if let Err(errors) = distcc::hosts::validate(hosts) {
        let mut msg = String::from("!!! Error: invalid host list, nothing written:");
        for e in errors {
            msg.push_str(&format!("\n!!!   {e}"));
        }
        return fail(msg);
    }
    let path = if root.as_root() {
        root.hosts()
    } else {
        root.user_hosts()
            .ok_or(("!!! Error: HOME is not set".to_owned(), 1))?
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| (format!("!!! Error: {}: {e}", dir.display()), 1))?;
    }
    fs::write(&path, format!("{hosts}\n"))
        .map_err(|e| (format!("!!! Error: {}: {e}", path.display()), 1))
}

fn get_hosts(root: &Root) -> Outcome {
    if let Some(h) = &root.0.hosts {
        println!("{h}");
        return Ok(());
    }
    for path in root.user_hosts().into_iter().chain([root.hosts()]) {
        if let Ok(text) = fs::read_to_string(&path)
            && !text.trim().is_empty()
        {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            return Ok(());
        }
    }
    fail("No configuration file found. Setup your hosts with --set-hosts.")
}

/// `VAR="value"` lines of 02distcc.
fn env_lines(root: &Root) -> Result<Vec<String>, (String, i32)> {
    match fs::read_to_string(root.env_file()) {
        Ok(t) => Ok(t.lines().map(str::to_owned).collect()),
        Err(e) => Err((format!("!!! Error: {}: {e}", root.env_file().display()), 1)),
    }
}

fn env_value(lines: &[String], var: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == var).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Replace `VAR="…"`; `append` adds the line when missing (Gentoo's script never did, which
/// is why its `--set-log` silently did nothing).
fn set_env(root: &Root, var: &str, value: &str, append: bool) -> Outcome {
    let mut lines = env_lines(root)?;
    let new = format!("{var}=\"{value}\"");
    let mut found = false;
    for l in lines.iter_mut() {
        if l.split_once('=').is_some_and(|(k, _)| k.trim() == var) {
            *l = new.clone();
            found = true;
        }
    }
    if !found {
        if !append {
            return fail(format!(
                "!!! Error: {var} is not set in {}; nothing changed",
                root.env_file().display()
            ));
        }
        lines.push(new);
    }
    fs::write(root.env_file(), lines.join("\n") + "\n")
        .map_err(|e| (format!("!!! Error: {}: {e}", root.env_file().display()), 1))?;
    env_update(root);
    Ok(())
}

/// Run env-update on the real system, as Gentoo's script does.
fn env_update(root: &Root) {
    let tool = Path::new("/usr/sbin/env-update");
    if root.is_real_root() && tool.exists() {
        let _ = std::process::Command::new(tool).status();
        println!("Remember to run: source /etc/profile");
    }
}

fn print_env(root: &Root, var: &str) -> Outcome {
    let lines = env_lines(root)?;
    match env_value(&lines, var) {
        Some(v) => println!("{var}={v}"),
        None => println!("{var} not set."),
    }
    Ok(())
}

/// `<triple>-name[-N]` and `name-N` variants of our compilers present in `bin`.
fn variants(bin: &Path, crossdev: bool) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let Ok(entries) = fs::read_dir(bin) else {
        return names;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let base = name
            .rsplit_once('-')
            .filter(|(_, v)| v.chars().all(|c| c.is_ascii_digit() || c == '.') && !v.is_empty())
            .map_or(name.as_str(), |(b, _)| b);
        let (prefixed, tool) = match base.rsplit_once('-') {
            Some((triple, tool)) if triple.matches('-').count() >= 1 => (true, tool),
            _ => (false, base),
        };
        if !COMPILERS.contains(&tool) {
            continue;
        }
        if crossdev && !prefixed {
            continue;
        }
        if !prefixed && name == tool {
            continue; // the plain names are handled separately
        }
        names.push(name);
    }
    names.sort();
    names
}

fn update_masquerade(root: &Root, crossdev: bool) -> Outcome {
    let dir = root.masq_dir();
    fs::create_dir_all(&dir).map_err(|e| (format!("!!! Error: {}: {e}", dir.display()), 1))?;
    for e in fs::read_dir(&dir)
        .map_err(|e| (format!("!!! Error: {}: {e}", dir.display()), 1))?
        .flatten()
    {
        if e.file_name() == "bin" {
            continue;
        }
        if e.file_type().is_ok_and(|t| !t.is_dir()) {
            let _ = fs::remove_file(e.path());
        }
    }
    if fs::symlink_metadata(dir.join("bin")).is_err() {
        let _ = symlink(".", dir.join("bin"));
    }
    println!("Creating symlinks...");
    let bin = root.bin_dir();
    let mut names: Vec<String> = if crossdev {
        Vec::new()
    } else {
        COMPILERS
            .iter()
            .filter(|c| bin.join(c).exists())
            .map(|c| c.to_string())
            .collect()
    };
    names.extend(variants(&bin, crossdev));
    for name in names {
        let link = dir.join(&name);
        println!("Creating {} symlink...", link.display());
        symlink("/usr/bin/distcc", &link)
            .map_err(|e| (format!("!!! Error: {}: {e}", link.display()), 1))?;
    }
    Ok(())
}

/// The word after `opt`, if any (and not another option).
fn value_of<'a>(args: &'a [String], opt: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == opt)?;
    args.get(i + 1)
        .map(String::as_str)
        .filter(|v| !v.starts_with("--"))
}

/// `HOST[:PORT]` or `[V6]:PORT`.
fn host_port(spec: &str) -> Result<(String, u16), String> {
    let bad = || format!("!!! Error: --pair: bad host {spec:?} (HOST or HOST:PORT)");
    if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => distcc::DEFAULT_PORT,
            None => return Err(bad()),
        };
        return Ok((host.to_owned(), port));
    }
    match spec.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            Ok((host.to_owned(), port.parse().map_err(|_| bad())?))
        }
        _ if !spec.is_empty() => Ok((spec.to_owned(), distcc::DEFAULT_PORT)),
        _ => Err(bad()),
    }
}

fn ask(question: &str) -> Option<String> {
    use std::io::Write;
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(n) if n > 0 => Some(line.trim().to_owned()),
        _ => None,
    }
}

/// `--pair HOST[:PORT] [--code CODE] [--yes]`.
fn pair(root: &Root, args: &[String]) -> Outcome {
    let Some(spec) = value_of(args, "--pair") else {
        return fail("!!! Error: --pair needs a host: --pair HOST[:PORT]");
    };
    let (host, port) = host_port(spec).map_err(|e| (e, 1))?;
    let yes = args.iter().any(|a| a == "--yes");
    let code = match value_of(args, "--code") {
        Some(c) => c.to_owned(),
        None => ask("Pairing code (from `distccd --pairing-code` on the server): ")
            .filter(|c| !c.is_empty())
            .ok_or((
                "!!! Error: --pair needs the server's pairing code (--code CODE)".to_owned(),
                1,
            ))?,
    };
    let dir = match (&root.0.dirs.distcc_dir, &root.0.home) {
        (Some(d), _) => d.clone(),
        (None, Some(h)) => h.join(".distcc"),
        (None, None) => return fail("!!! Error: neither DISTCC_DIR nor HOME is set"),
    };
    let comment = format!(
        "{}@{}",
        std::env::var("USER").unwrap_or_else(|_| "user".into()),
        hostname()
    );
    let mut confirm =
        |id: &str, key: &distcc::keys::PublicKey, pinned: Option<&distcc::keys::PublicKey>| {
            match pinned {
                Some(p) if p == key => println!("{id}: key {} (already pinned)", key.fingerprint()),
                Some(p) => println!("{}", distcc::keys::changed_key_message(id, p, key)),
                None => println!("{id}: the server's key is {}", key.fingerprint()),
            }
            if yes {
                return true;
            }
            println!("Compare it with what `distccd --pairing-code` printed on the server.");
            ask("Pin this key and pair? [y/N] ")
                .is_some_and(|a| a.eq_ignore_ascii_case("y") || a.eq_ignore_ascii_case("yes"))
        };
    match distcc::noise::pair(
        &host,
        port,
        &dir,
        &code,
        &comment,
        std::time::Duration::from_secs(300),
        &mut confirm,
    ) {
        Ok(p) => {
            println!(
                "Paired with {}: its key {} is pinned in {}; your key {} is authorised there.",
                p.host,
                p.server_key.fingerprint(),
                dir.join(distcc::keys::KNOWN_HOSTS).display(),
                p.client_key.fingerprint()
            );
            Ok(())
        }
        Err(e) => fail(format!("!!! Error: {e}")),
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned()
}

fn run(prog: &str, args: &[String]) -> Outcome {
    if let Some(bad) = args
        .iter()
        .find(|a| a.starts_with("--") && !OPTIONS.contains(&a.as_str()))
    {
        return fail(format!("!!! Error: {bad} is an invalid option."));
    }
    let Some(opt) = args.iter().find(|a| a.starts_with("--")) else {
        print!("{}", usage(prog));
        return Ok(());
    };
    let values: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let root = Root(ConfigEnv::from_env(&ProcessEnv));
    if args.iter().any(|a| a == "--pair") {
        return pair(&root, args);
    }
    match opt.as_str() {
        "--help" => {
            print!("{}", usage(prog));
            Ok(())
        }
        "--version" => {
            print!("{}", distcc::version_text("distcc-config"));
            Ok(())
        }
        "--set-hosts" => set_hosts(&root, values.last().copied()),
        "--get-hosts" => get_hosts(&root),
        "--set-verbose" => {
            need_root(&root, prog, opt)?;
            match values.last().copied() {
                Some(v @ ("0" | "1")) => set_env(&root, "DISTCC_VERBOSE", v, true),
                _ => fail("!!! Error: --set-verbose takes 0 or 1"),
            }
        }
        "--get-verbose" => print_env(&root, "DISTCC_VERBOSE"),
        "--set-log" => {
            need_root(&root, prog, opt)?;
            match values.last() {
                Some(v) => set_env(&root, "DISTCC_LOG", v, true),
                None => fail("!!! Error: --set-log needs a file name"),
            }
        }
        "--get-log" => print_env(&root, "DISTCC_LOG"),
        "--set-env" => {
            need_root(&root, prog, opt)?;
            match values.as_slice() {
                [var, value] => set_env(&root, var, value, false),
                _ => fail("!!! Error: Awaiting two parameters."),
            }
        }
        "--get-env" => match values.as_slice() {
            [] => {
                let text = fs::read_to_string(root.env_file())
                    .map_err(|e| (format!("!!! Error: {}: {e}", root.env_file().display()), 1))?;
                print!("{text}");
                Ok(())
            }
            [var] => print_env(&root, var),
            _ => fail("!!! Error: Specify only one variable."),
        },
        "--update-masquerade" | "--update-masquerade-with-crossdev" => {
            need_root(&root, prog, opt)?;
            update_masquerade(&root, opt == "--update-masquerade-with-crossdev")
        }
        _ => fail(format!("!!! Error: {opt} is an invalid option.")),
    }
}

/// Entry point; returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let prog = args
        .first()
        .map_or("distcc-config".to_owned(), distcc::paths::basename);
    let args = crate::text_args(&args);
    match run(&prog, &args) {
        Ok(()) => 0,
        Err((msg, code)) => {
            eprintln!("{msg}");
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_found() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "gcc",
            "gcc-12",
            "x86_64-pc-linux-gnu-gcc",
            "x86_64-pc-linux-gnu-g++-13",
            "x86_64-pc-linux-gnu-ld",
            "clang++-17",
            "aarch64-unknown-linux-gnu-gcc",
            "python3",
        ] {
            fs::write(d.path().join(n), "").unwrap();
        }
        assert_eq!(
            variants(d.path(), false),
            vec![
                "aarch64-unknown-linux-gnu-gcc",
                "clang++-17",
                "gcc-12",
                "x86_64-pc-linux-gnu-g++-13",
                "x86_64-pc-linux-gnu-gcc"
            ]
        );
        assert_eq!(
            variants(d.path(), true),
            vec![
                "aarch64-unknown-linux-gnu-gcc",
                "x86_64-pc-linux-gnu-g++-13",
                "x86_64-pc-linux-gnu-gcc"
            ]
        );
    }

    #[test]
    fn masquerade_links_the_standard_mode_compilers() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("usr/bin");
        fs::create_dir_all(&bin).unwrap();
        for n in ["gcc", "c89", "c99", "c89-gcc", "c99-gcc"] {
            fs::write(bin.join(n), "").unwrap();
        }
        let root = Root(ConfigEnv {
            root: d.path().to_path_buf(),
            ..ConfigEnv::default()
        });
        update_masquerade(&root, false).unwrap();
        let mut names: Vec<String> = fs::read_dir(root.masq_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["bin", "c89", "c89-gcc", "c99", "c99-gcc", "gcc"]);
    }

    #[test]
    fn pair_hosts() {
        assert_eq!(host_port("b1").unwrap(), ("b1".into(), 3632));
        assert_eq!(host_port("b1:4000").unwrap(), ("b1".into(), 4000));
        assert_eq!(host_port("[::1]:4000").unwrap(), ("::1".into(), 4000));
        assert_eq!(host_port("::1").unwrap(), ("::1".into(), 3632));
        assert!(host_port("b1:x").is_err());
    }

    #[test]
    fn env_values() {
        let lines = vec!["# comment".to_owned(), "DISTCC_VERBOSE=\"1\"".to_owned()];
        assert_eq!(env_value(&lines, "DISTCC_VERBOSE").as_deref(), Some("1"));
        assert_eq!(env_value(&lines, "DISTCC_LOG"), None);
    }
}
