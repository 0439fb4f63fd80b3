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
