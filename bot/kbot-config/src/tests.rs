use super::*;

/// Each `testdata/<case>.yaml` beside `<case>.expect`: `ok`, or a piece of the error.
#[test]
fn config_cases() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let expect = std::fs::read_to_string(p.with_extension("expect")).unwrap();
        let expect = expect.trim_end();
        match parse(&text) {
            Ok(_) => assert_eq!(expect, "ok", "{}: parsed, expected an error", p.display()),
            Err(err) => {
                let err = err.to_string();
                assert!(!err.contains('\n'), "{}: errors are one line: {err}", p.display());
                assert!(expect != "ok" && err.contains(expect), "{}: got {err:?}, expected {expect:?}", p.display());
            }
        }
        n += 1;
    }
    assert!(n >= 10, "only {n} cases");
}

#[test]
fn full_config_values() {
    let c =
        parse(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/full.yaml")).unwrap()).unwrap();
    assert_eq!(c.trees[1].branches, ["master", "next"]);
    assert_eq!(c.job_timeout.unwrap().0.as_secs(), 7200);
    assert_eq!(c.poll_interval.unwrap().0.as_secs(), 90);
    assert_eq!(c.inboxes[0].since.as_deref().and_then(parse_rfc3339), Some(1_793_491_200));
    assert_eq!(
        c.trees[1].url.as_deref(),
        Some("https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git master")
    );
    assert!(!c.inboxes[0].mail_apply_failed && c.inboxes[1].mail_apply_failed);
    let m = c.mail.unwrap();
    assert!(!m.cc_maintainers && !m.send_fixed);
    assert_eq!(m.optout, ["Bob <bob@example.org>", "carol@example.org"]);
    let m = parse("mail:\n  smtp: smtp://127.0.0.1:25\n  from: k@x.org\n").unwrap().mail.unwrap();
    assert!(m.cc_maintainers && m.send_fixed && m.optout.is_empty(), "the defaults");
}

#[test]
fn times_and_addresses() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339("2000-03-01T00:00:00+01:00"), Some(951_865_200));
    assert_eq!(parse_rfc3339("2026-11-25T16:05:29.123Z"), Some(1_795_622_729));
    assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
    assert!(looks_like_mailbox("A B <a@b.c>"));
    assert!(looks_like_mailbox("a@b.c"));
    assert!(!looks_like_mailbox("a@b.c\r\nBcc: x@y"));
    assert!(!looks_like_mailbox("a@b.c, x@y.z"));
    assert!(!looks_like_mailbox("nobody"));
}

#[test]
fn shipped_files_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    for f in ["kbot.yaml", "kbot.example.yaml"] {
        let p = root.join(f);
        if p.exists() || f == "kbot.yaml" {
            parse(&std::fs::read_to_string(&p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
    }
}

#[test]
fn error_texts() {
    let e = parse("workers: 0\n").unwrap_err();
    assert_eq!(e, ConfigError::Invalid { key: "workers".into(), problem: "must be at least 1".into() });
    assert_eq!(e.to_string(), "workers: must be at least 1");
    assert_eq!(
        parse("trees:\n  - name: a b\n").unwrap_err().to_string(),
        "trees[0].name: \"a b\" is not a name (letters, digits, - and _)"
    );
    assert_eq!(parse_duration("10x").unwrap_err().to_string(), "unknown unit \"x\" in \"10x\" (use s, m, h or d)");
    assert_eq!(parse_duration("x").unwrap_err().to_string(), "expected a duration like 90, 30s, 10m or 2h, not \"x\"");
    assert_eq!(parse_duration("99999999999999999d").unwrap_err().to_string(), "\"99999999999999999d\" is too long");
    assert!(matches!(parse("[").unwrap_err(), ConfigError::Syntax(_)));
}

fn mail(yaml: &str) -> MailConfig {
    parse(yaml).unwrap().mail.unwrap()
}

#[test]
fn mail_tls_keys() {
    let m = mail(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/mail-tls.yaml")).unwrap());
    assert_eq!(m.ca_file.as_deref(), Some(std::path::Path::new("/etc/kbot/smtp-ca.pem")));
    assert_eq!(smtp_host(&m.smtp), Some((true, "mail.example.org")));
    assert_eq!(smtp_host("smtps://[::1]:465"), Some((true, "[::1]")));
    assert_eq!(smtp_host("smtp://127.0.0.1:2525/"), Some((false, "127.0.0.1")));
    assert_eq!(smtp_host("smtp+tls://x:1"), None);
    assert_eq!(smtp_host("smtp://user@x:1"), None);
    // Credentials over plain SMTP to this machine (a local MTA) are fine.
    parse("mail:\n  smtp: smtp://localhost:25\n  from: k@x.org\n  user_env: U\n  password_env: P\n").unwrap();
    parse("mail:\n  smtp: smtp://[::1]:25\n  from: k@x.org\n  user_env: U\n  password_env: P\n").unwrap();
}

/// A credential variable named in the config but missing from the environment is an error
/// naming the key and the variable, never "no credentials" (a send without AUTH).
#[test]
fn mail_credentials_come_from_the_named_variables_or_fail() {
    let m =
        mail("mail:\n  smtp: smtps://mail.example.org\n  from: k@x.org\n  user_env: K_USER\n  password_env: K_PASS\n");
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    };
    assert_eq!(
        m.credentials(env(&[("K_USER", "kbot"), ("K_PASS", "s3cret")])).unwrap(),
        Some(("kbot".to_string(), "s3cret".to_string()))
    );
    let e = m.credentials(env(&[("K_USER", "kbot")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "mail.password_env: the environment variable K_PASS is not set (kbot serve reads the SMTP password from it)"
    );
    let e = m.credentials(env(&[("K_PASS", "s3cret")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "mail.user_env: the environment variable K_USER is not set (kbot serve reads the SMTP user name from it)"
    );
    let e = m.credentials(env(&[("K_USER", "kbot"), ("K_PASS", "")])).unwrap_err();
    assert_eq!(e.to_string(), "mail.password_env: the environment variable K_PASS is empty");
    // No variables named: no credentials, and the environment is not looked at.
    let m = mail("mail:\n  smtp: smtp://127.0.0.1:25\n  from: k@x.org\n");
    assert_eq!(m.credentials(|_| panic!("looked up a variable")).unwrap(), None);
}

#[test]
fn mail_ca_file_must_hold_a_certificate() {
    let d = std::env::temp_dir().join(format!("kbot-config-ca-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let with = |p: &std::path::Path| {
        mail(&format!("mail:\n  smtp: smtps://mail.example.org\n  from: k@x.org\n  ca_file: {}\n", p.display()))
    };
    let missing = d.join("missing.pem");
    let e = with(&missing).ca_pem().unwrap_err().to_string();
    assert!(e.starts_with(&format!("mail.ca_file: {}: ", missing.display())) && e.contains("No such file"), "{e}");
    let empty = d.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    assert_eq!(
        with(&empty).ca_pem().unwrap_err().to_string(),
        format!("mail.ca_file: {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it", empty.display())
    );
    let good = d.join("ca.pem");
    std::fs::write(&good, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
    assert!(with(&good).ca_pem().unwrap().unwrap().starts_with(b"-----BEGIN"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn executor_local_by_default_or_slurm() {
    assert_eq!(parse("{}").unwrap().executor, Executor::Local);
    let c =
        parse(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/slurm.yaml")).unwrap()).unwrap();
    let Executor::Slurm(s) = c.executor else { panic!("not slurm") };
    assert_eq!((s.partition.as_str(), s.shared_dir.to_str(), s.attempts), ("kbot", Some("/srv/kbot"), Some(2)));
    assert_eq!(s.constraints["arm64"], "arm64&kvm");
    for (yaml, err) in [
        ("executor: slurm", "slurm needs its settings"),
        ("executor: {slurm: {partition: kbot, shared_dir: /x, nodes: 3}}", "unknown field `nodes`"),
        ("executor: {slurm: {partition: 'a b', shared_dir: /x}}", "executor.slurm.partition"),
    ] {
        let e = parse(yaml).unwrap_err().to_string();
        assert!(e.contains(err), "{yaml}: {e}");
    }
}
