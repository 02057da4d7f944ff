//! Tests for the host-list grammar and sources. Every example of reference §2.3 is here,
//! including upstream's 16-host `ParseHostSpec_Case` and its `InvalidHostSpec_Case` list.

use super::*;
use std::collections::HashMap;

/// Render hosts the way upstream's `h_hosts` helper does, so the expected text below is
/// the one from upstream's test suite.
fn h_hosts(list: &HostList) -> String {
    let mut out = format!("{}\n", list.hosts.len());
    for h in &list.hosts {
        let line = match &h.kind {
            HostKind::Local => "LOCAL".to_string(),
            HostKind::Tcp { host, port } => format!("TCP {host} {port}"),
            HostKind::Ssh {
                user,
                host,
                command,
            } => format!(
                "SSH {} {host} {}",
                user.as_deref().unwrap_or("(no-user)"),
                command.as_deref().unwrap_or("(no-command)")
            ),
        };
        out.push_str(&format!("{:4} {line}\n", h.slots));
    }
    out
}

#[test]
fn upstream_parse_host_spec_case() {
    let spec = "localhost 127.0.0.1 @angry   ted@angry
        \t@angry:/home/mbp/bin/distccd  angry:4204
        ipv4-localhost
        angry/44
        angry:300/44
        angry/44:300
        angry,lzo
        angry:3000,lzo    # some comment
        angry/44,lzo
        @angry,lzo#asdasd
        # oh yeah nothing here
        @angry:/usr/sbin/distccd,lzo
        localhostbutnotreally
        ";
    let expected = "16
   2 LOCAL
   4 TCP 127.0.0.1 3632
   4 SSH (no-user) angry (no-command)
   4 SSH ted angry (no-command)
   4 SSH (no-user) angry /home/mbp/bin/distccd
   4 TCP angry 4204
   4 TCP ipv4-localhost 3632
  44 TCP angry 3632
  44 TCP angry 300
  44 TCP angry 300
   4 TCP angry 3632
   4 TCP angry 3000
  44 TCP angry 3632
   4 SSH (no-user) angry (no-command)
   4 SSH (no-user) angry /usr/sbin/distccd
   4 TCP localhostbutnotreally 3632
";
    let list = parse(spec).unwrap();
    assert_eq!(h_hosts(&list), expected);
    // Protocols follow the options.
    let protos: Vec<u8> = list.hosts.iter().map(|h| h.protocol).collect();
    assert_eq!(protos, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 1]);
    // Verbatim specs; the comment cuts `@angry,lzo#asdasd`.
    assert_eq!(list.hosts[13].spec, "@angry,lzo");
    assert_eq!(list.hosts[4].spec, "@angry:/home/mbp/bin/distccd");
    assert_eq!(list.total_slots(), 2 + 4 * 11 + 44 * 4);
    assert!(!list.randomize);
    assert_eq!(list.local_slots, 4);
    assert_eq!(list.local_slots_cpp, 8);
}

#[test]
fn upstream_invalid_host_specs() {
    for spec in ["", "    ", "\t", "  @ ", ":", "mbp@", "angry::", ":4200"] {
        assert!(parse(spec).is_err(), "{spec:?} should be rejected");
        assert!(validate(spec).is_err(), "{spec:?} should be rejected");
    }
}

#[test]
fn empty_list_is_no_hosts_error() {
    match parse_named("", "$DISTCC_HOSTS") {
        Err(e @ HostsError::NoHosts { .. }) => assert_eq!(
            e.to_string(),
            "$DISTCC_HOSTS contained no hosts; can't distribute work"
        ),
        other => panic!("unexpected {other:?}"),
    }
    // Comments only.
    assert!(matches!(
        parse("# nothing\n  # here"),
        Err(HostsError::NoHosts { .. })
    ));
}

fn one(spec: &str) -> HostSpec {
    let list = parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    assert_eq!(list.hosts.len(), 1, "{spec}");
    list.hosts.into_iter().next().unwrap()
}

fn tcp(host: &str, port: u16) -> HostKind {
    HostKind::Tcp {
        host: host.into(),
        port,
    }
}

#[test]
fn localhost_forms() {
    let h = one("localhost");
    assert_eq!((h.kind.clone(), h.slots), (HostKind::Local, 2));
    assert_eq!(h.lock_key(), "localhost");
    let h = one("localhost/3");
    assert_eq!((h.kind, h.slots), (HostKind::Local, 3));
    // Only the exact forms are local; these are TCP hosts called localhost.
    let h = one("localhost:3632");
    assert_eq!((h.kind, h.slots), (tcp("localhost", 3632), 4));
    let h = one("localhost,lzo");
    assert_eq!((h.kind, h.protocol), (tcp("localhost", 3632), 2));
}

#[test]
fn tcp_forms() {
    let h = one("angry/44:300");
    assert_eq!((h.kind, h.slots), (tcp("angry", 300), 44));
    let h = one("angry:300=7");
    assert_eq!((h.kind, h.slots), (tcp("angry", 300), 7));
    let h = one("angry=5");
    assert_eq!((h.kind, h.slots), (tcp("angry", 3632), 5));
    let h = one("[::1]:4000/3");
    assert_eq!((h.kind.clone(), h.slots), (tcp("::1", 4000), 3));
    assert_eq!(h.lock_key(), "tcp_::1_4000");
    assert_eq!(h.hostname(), "::1");
    let h = one("[fe80::1]");
    assert_eq!(h.kind, tcp("fe80::1", 3632));
    let h = one("red,lzo");
    assert_eq!((h.protocol, h.lzo, h.cpp), (2, true, false));
    assert_eq!(h.lock_key(), "tcp_red_3632");
    let h = one("red:3633,cpp,lzo");
    assert_eq!((h.protocol, h.lzo, h.cpp), (3, true, true));
    let h = one("red,lzo,cpp,down");
    assert!(h.down);
    assert_eq!(h.to_string(), "red,lzo,cpp,down");
}

#[test]
fn ssh_forms() {
    let h = one("ted@angry/6:/opt/distccd,lzo");
    assert_eq!(
        h.kind,
        HostKind::Ssh {
            user: Some("ted".into()),
            host: "angry".into(),
            command: Some("/opt/distccd".into())
        }
    );
    assert_eq!((h.slots, h.protocol), (6, 2));
    assert_eq!(h.lock_key(), "ssh_angry");
    assert_eq!(h.hostname(), "angry");
}

#[test]
fn auth_is_accepted_and_kept() {
    let h = one("red,auth");
    assert_eq!(h.auth.as_deref(), Some(""));
    let h = one("red,lzo,auth=distccd");
    assert_eq!(h.auth.as_deref(), Some("distccd"));
}

#[test]
fn keywords() {
    let list = parse("--randomize --localslots=3 --localslots_cpp/12 a b").unwrap();
    assert!(list.randomize);
    assert_eq!((list.local_slots, list.local_slots_cpp), (3, 12));
    let list = parse("--localslots/2 --localslots_cpp=1 a").unwrap();
    assert_eq!((list.local_slots, list.local_slots_cpp), (2, 1));
    // +zeroconf marks where load() puts the mDNS hosts; alone it is a valid list.
    let list = parse("a +zeroconf b +zeroconf").unwrap();
    assert_eq!(list.hosts.len(), 2);
    assert_eq!(list.zeroconf_at, Some(1));
    let list = parse("+zeroconf").unwrap();
    assert!(list.hosts.is_empty());
    assert_eq!(list.zeroconf_at, Some(0));
    assert_eq!(parse("a").unwrap().zeroconf_at, None);
}

fn syntax(spec: &str) -> SyntaxError {
    match parse(spec) {
        Err(HostsError::Syntax(e)) => e,
        other => panic!("{spec:?}: expected a syntax error, got {other:?}"),
    }
}

#[test]
fn invalid_specs_name_line_column_and_text() {
    let e = syntax("a b\n  red,lzox");
    assert_eq!((e.line, e.column), (2, 7));
    assert_eq!(e.token, "red,lzox");
    assert!(e.problem.contains("unrecognized option \"lzox\""), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("host list:2:7: bad host specification \"red,lzox\""),
        "{msg}"
    );

    let e = syntax("red,lzo,cppfoo");
    assert_eq!(e.column, 9);
    assert!(e.problem.contains("\"cppfoo\""), "{e}");

    let e = syntax("red,cpp");
    assert!(
        e.problem
            .contains("pump mode (',cpp') requires compression (',lzo')"),
        "{e}"
    );

    for bad in [
        "angry/0",
        "angry:300/0",
        "localhost/0",
        "angry/",
        "angry=x",
        "@angry/0",
    ] {
        assert!(syntax(bad).problem.contains("bad multiplier"), "{bad}");
    }
    assert!(syntax("fe80::1").problem.contains("needs brackets"));
    let e = syntax("[::1:4000");
    assert!(
        e.problem.contains("IPv6 Hostname requires closing ']'"),
        "{e}"
    );

    for bad in [
        "angry:",
        "angry:0",
        "angry:70000",
        "angry:12x",
        "angry::",
        ":4200",
        ":",
        "@",
        "mbp@",
        "a@b@c",
        "@angry:",
        "angry,",
        "angry,,lzo",
        "angry/4:300/5",
        "localhost/2,lzo",
        "localhost/2x",
        "--localslots",
        "--localslots=0",
        "--localslots=3x",
        "--bogus",
        "[]",
        "[::1]x",
    ] {
        let e = syntax(bad);
        assert_eq!(e.token, bad);
        assert_eq!(e.line, 1);
    }
}

#[test]
fn lenient_parse_keeps_good_hosts() {
    let (list, errors) = parse_lenient("a red,lzox\n b,cpp c:0 d");
    let names: Vec<&str> = list.hosts.iter().map(|h| h.hostname()).collect();
    assert_eq!(names, ["a", "d"]);
    assert_eq!(errors.len(), 3);
    let (list, errors) = parse_lenient("red,lzox");
    assert!(list.hosts.is_empty());
    assert!(matches!(errors.last(), Some(HostsError::NoHosts { .. })));
    // validate reports every problem.
    assert_eq!(validate("x:0 y:0 z").unwrap_err().len(), 2);
}

#[test]
fn comments_and_whitespace() {
    let list = parse("a#b c\r\nd\x0ce\tf # g h\n#i\nj").unwrap();
    let names: Vec<&str> = list.hosts.iter().map(|h| h.hostname()).collect();
    assert_eq!(names, ["a", "d", "e", "f", "j"]);
}

#[test]
fn total_slots_counts_down_hosts_like_distcc() {
    let list = parse("localhost/3 a/5 b,down c").unwrap();
    assert_eq!(list.total_slots(), 3 + 5 + 4 + 4);
}

#[test]
fn randomize_permutes_only_when_asked() {
    let text = "a b c d e f g h i j";
    let mut l = parse(text).unwrap();
    l.apply_randomize(42);
    assert_eq!(l, parse(text).unwrap());
    let text = format!("--randomize {text}");
    let orig = parse(&text).unwrap();
    let mut seen_change = false;
    for seed in 1..20u64 {
        let mut l = orig.clone();
        l.apply_randomize(seed);
        let mut a: Vec<_> = l.hosts.iter().map(|h| h.spec.clone()).collect();
        if l.hosts != orig.hosts {
            seen_change = true;
        }
        a.sort();
        let mut b: Vec<_> = orig.hosts.iter().map(|h| h.spec.clone()).collect();
        b.sort();
        assert_eq!(a, b, "a permutation");
    }
    assert!(seen_change);
}

/// [`load`] and [`find_source`] with the variables the client would read from `e`.
fn load_env(e: &HashMap<String, String>, sysconf: &Path) -> Result<HostList, HostsError> {
    let (c, _) = crate::settings::ClientEnv::from_env(e);
    load(c.hosts.as_deref(), &c.dirs, sysconf)
}

fn find_source_env(
    e: &HashMap<String, String>,
    sysconf: &Path,
) -> Result<HostListSource, HostsError> {
    let (c, _) = crate::settings::ClientEnv::from_env(e);
    find_source(c.hosts.as_deref(), &c.dirs, sysconf)
}

use crate::settings::test_env as env;

#[test]
fn sources_and_precedence() {
    let t = tempfile::tempdir().unwrap();
    let sysconf = t.path().join("etc");
    std::fs::create_dir_all(sysconf.join("distcc")).unwrap();
    let home = t.path().join("home");
    std::fs::create_dir_all(home.join(".distcc")).unwrap();
    let ddir = t.path().join("ddir");
    std::fs::create_dir_all(&ddir).unwrap();
    let home_s = home.to_str().unwrap();
    let ddir_s = ddir.to_str().unwrap();

    // Nothing anywhere.
    let e = load_env(&env(&[("HOME", home_s)]), &sysconf).unwrap_err();
    assert!(matches!(e, HostsError::NoHostList { .. }));
    assert!(
        e.to_string()
            .starts_with("no hostlist is set; can't distribute work")
    );

    std::fs::write(sysconf.join("distcc/hosts"), "sys1 sys2\n").unwrap();
    let l = load_env(&env(&[("HOME", home_s)]), &sysconf).unwrap();
    assert_eq!(l.hosts[0].hostname(), "sys1");
    assert_eq!(
        l.source_name,
        sysconf.join("distcc/hosts").display().to_string()
    );

    std::fs::write(home.join(".distcc/hosts"), "homehost").unwrap();
    let l = load_env(&env(&[("HOME", home_s)]), &sysconf).unwrap();
    assert_eq!(l.hosts[0].hostname(), "homehost");

    // DISTCC_DIR replaces ~/.distcc: without DISTCC_DIR/hosts we fall to sysconf.
    let l = load_env(&env(&[("HOME", home_s), ("DISTCC_DIR", ddir_s)]), &sysconf).unwrap();
    assert_eq!(l.hosts[0].hostname(), "sys1");
    std::fs::write(ddir.join("hosts"), "ddirhost/3").unwrap();
    let l = load_env(&env(&[("HOME", home_s), ("DISTCC_DIR", ddir_s)]), &sysconf).unwrap();
    assert_eq!(l.hosts[0].hostname(), "ddirhost");

    // DISTCC_HOSTS wins, even when empty.
    let e = env(&[("HOME", home_s), ("DISTCC_HOSTS", "envhost,lzo")]);
    let l = load_env(&e, &sysconf).unwrap();
    assert_eq!(l.hosts[0].hostname(), "envhost");
    assert_eq!(l.source_name, "$DISTCC_HOSTS");
    let e = env(&[("HOME", home_s), ("DISTCC_HOSTS", "")]);
    let err = load_env(&e, &sysconf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "$DISTCC_HOSTS contained no hosts; can't distribute work"
    );

    // Lenient when loading: a bad token is skipped.
    let e = env(&[("DISTCC_HOSTS", "bad,lzox good")]);
    let l = load_env(&e, &sysconf).unwrap();
    assert_eq!(l.hosts.len(), 1);
    assert_eq!(l.hosts[0].hostname(), "good");
}

#[test]
fn find_source_reports_which() {
    let t = tempfile::tempdir().unwrap();
    let e = env(&[("DISTCC_HOSTS", "x")]);
    assert_eq!(
        find_source_env(&e, t.path()).unwrap(),
        HostListSource::Env("x".into())
    );
    std::fs::write(t.path().join("hosts"), "y").unwrap();
    let e = env(&[("DISTCC_DIR", t.path().to_str().unwrap())]);
    assert_eq!(
        find_source_env(&e, Path::new("/nonexistent")).unwrap(),
        HostListSource::File(t.path().join("hosts"))
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn opt_list() -> impl Strategy<Value = (bool, bool, bool)> {
        (any::<bool>(), any::<bool>(), any::<bool>())
    }

    proptest! {
        /// Any text: no panic, and every host's verbatim spec appears in the input.
        #[test]
        fn lenient_parse_never_panics(text in "[ -~\t\n]{0,80}") {
            let (list, errors) = parse_lenient(&text);
            for h in &list.hosts {
                prop_assert!(text.contains(&h.spec));
                prop_assert!(h.slots > 0);
            }
            prop_assert_eq!(list.hosts.is_empty(), errors.iter().any(|e| matches!(e, HostsError::NoHosts { .. })));
        }

        /// Generated TCP specs parse back to their parts.
        #[test]
        fn tcp_round_trip(
            host in "[a-z][a-z0-9.-]{0,12}",
            port in proptest::option::of(1u16..),
            slots in proptest::option::of(1u32..1000),
            slots_after in any::<bool>(),
            (lzo, cpp, down) in opt_list(),
        ) {
            prop_assume!(host != "localhost");
            let mut spec = host.clone();
            let mult = slots.map(|n| format!("/{n}")).unwrap_or_default();
            if !slots_after { spec.push_str(&mult); }
            if let Some(p) = port { spec.push_str(&format!(":{p}")); }
            if slots_after { spec.push_str(&mult); }
            let cpp = cpp && lzo;
            if lzo { spec.push_str(",lzo"); }
            if cpp { spec.push_str(",cpp"); }
            if down { spec.push_str(",down"); }
            let list = parse(&spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let h = &list.hosts[0];
            prop_assert_eq!(&h.spec, &spec);
            prop_assert_eq!(&h.kind, &HostKind::Tcp { host: host.clone(), port: port.unwrap_or(3632) });
            prop_assert_eq!(h.slots, slots.unwrap_or(4));
            prop_assert_eq!((h.lzo, h.cpp, h.down), (lzo, cpp, down));
            prop_assert_eq!(h.protocol, if cpp { 3 } else if lzo { 2 } else { 1 });
        }
    }
}
