use super::*;

fn fixture() -> (CheckResult, Vec<Mail>) {
    let r = CheckResult::load(kbot_testdata::fixture("srcu-stall-regression.json")).unwrap();
    let mut mails = kbot_mbox::parse_mbox(&kbot_testdata::fixture_bytes("srcu-stall-regression.mbox")).unwrap();
    for m in &mut mails {
        m.to = vec!["linux-fsdevel@vger.kernel.org".into()];
        m.cc = vec!["Jan Kara <jack@suse.cz>".into(), "kbot@example.org".into()];
    }
    (r, mails)
}

const SETTINGS: Settings = Settings {
    from: "kbot <kbot@example.org>",
    cc: &[],
    link: Some("https://kbot.example.org/runs/7"),
    send_clean: false,
};

fn text(m: &OutMail) -> String {
    String::from_utf8(m.raw.clone()).unwrap()
}

/// The header lines, unfolded.
fn headers(raw: &str) -> Vec<String> {
    raw.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ").split("\r\n").map(String::from).collect()
}

fn header(raw: &str, name: &str) -> Vec<String> {
    headers(raw)
        .into_iter()
        .filter(|l| l.to_ascii_lowercase().starts_with(&format!("{}: ", name.to_ascii_lowercase())))
        .collect()
}

#[test]
fn a_regression_is_a_threaded_reply_to_the_first_bad_patch() {
    let (r, mails) = fixture();
    let m = report(
        &r,
        "series:fsdevel:cover.1795614032.git.alice@example.org:v1",
        &Subject::Series { mails: &mails },
        &SETTINGS,
    )
    .unwrap()
    .unwrap();
    let t = text(&m);
    let bad = "d4beaa0b6dce675866cce3d0d2f856abb4e70f42.1795614032.git.alice@example.org";
    assert_eq!(header(&t, "In-Reply-To"), [format!("In-Reply-To: <{bad}>")]);
    assert!(header(&t, "References")[0].contains(bad), "{t}");
    assert_eq!(
        header(&t, "Subject"),
        ["Subject: Re: [PATCH 2/3] fsnotify: avoid SRCU round trip around permission event waits"]
    );
    assert_eq!(header(&t, "To"), ["To: \"Alice Developer\" <alice@example.org>"]);
    let cc = header(&t, "Cc").join(" ");
    assert!(cc.contains("linux-fsdevel@vger.kernel.org") && cc.contains("jack@suse.cz"), "{cc}");
    assert!(!cc.contains("kbot@example.org"), "no copy to kbot itself: {cc}");
    assert_eq!(m.rcpt.len(), 3);
    assert!(t.contains("Reported-by: kbot"), "{t}");
    assert!(t.contains("| Closes: https://kbot.example.org/runs/7"), "{t}");
    assert!(t.contains("[2/3] fsnotify: avoid SRCU round trip"), "{t}");
    assert!(t.contains("\r\n=== [2/3] fsnotify: avoid SRCU round trip"), "{t}");
    assert!(t.contains("\r\non x86_64, bisected in 4 steps:\r\n  inotify_close_with_pending_perm (hang)\r\n  fanotify_close_with_pending_perm (hang)\r\n"), "{t}");
    assert!(t.contains("\r\nstack:    init (pid 25): fanotify_handle_event <- fsnotify"), "indentation kept: {t}");
    assert!(t.contains("\r\n-- \r\n"), "signature separator: {t}");
    // Stable: the same job gives the same Message-ID (a rerun after a crash mails once).
    let again = report(
        &r,
        "series:fsdevel:cover.1795614032.git.alice@example.org:v1",
        &Subject::Series { mails: &mails },
        &SETTINGS,
    )
    .unwrap()
    .unwrap();
    assert_eq!(again.message_id, m.message_id);
    assert!(m.message_id.ends_with("@example.org>"));
}

/// The body of a mail, with LF line ends.
fn body(m: &OutMail) -> String {
    text(m).split_once("\r\n\r\n").unwrap().1.replace("\r\n", "\n")
}

/// Compares `got` with `testdata/<name>`, or writes it there with `KBOT_BLESS`.
fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name);
    if std::env::var_os("KBOT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing {}", path.display()));
    assert_eq!(got, want, "{} (KBOT_BLESS=1 rewrites it)", path.display());
}

/// The recorded check of the 3-patch example (both arches, six tests and rules each, all at
/// patch 2) is one group in the mail: every test once with both arches, one line of evidence
/// (the shadow record: why), one stack, then the link; without a link, the full detail with
/// each stack once.
#[test]
fn the_mail_groups_the_recorded_run_by_first_bad_patch() {
    let r = CheckResult::load(kbot_testdata::fixture("recorded-run-55f6523.json")).unwrap();
    let (_, mails) = fixture();
    let key = "series:fsdevel:cover.1795614032.git.alice@example.org:v1";
    let m = report(&r, key, &Subject::Series { mails: &mails }, &SETTINGS).unwrap().unwrap();
    let b = body(&m);
    assert_eq!(b.matches("\n=== ").count(), 1, "{b}");
    assert!(b.contains("=== [2/3] fsnotify: avoid SRCU round trip around permission event waits\non x86_64, arm64, bisected in 3 steps:\n  shadow/wait-in-srcu (divergence)\n"), "{b}");
    for t in [
        "inotify_close_with_pending_perm",
        "fanotify_close_with_pending_perm",
        "scenario/seed-stall-inotify",
        "scenario/seed-stall-fanotify",
        "shadow/grace-period-waits-for-listener",
    ] {
        assert_eq!(b.matches(&format!("  {t} (")).count(), 1, "{t}: {b}");
    }
    assert!(b.contains("\nevidence: shadow/wait-in-srcu: fail: kernel reported wait-in-srcu"), "{b}");
    assert_eq!(b.matches("\nstack:").count(), 1, "{b}");
    assert!(!b.contains("sysrq-w"), "no dump in the short mail: {b}");
    assert!(b.lines().count() < 45, "short enough for a phone: {} lines\n{b}", b.lines().count());
    golden("recorded-run-55f6523.mail.txt", &b);
    // Without a run page, the full detail follows, each stack once.
    let s = Settings { link: None, ..SETTINGS };
    let m = report(&r, key, &Subject::Series { mails: &mails }, &s).unwrap().unwrap();
    let b = body(&m);
    assert!(b.contains("\nFull report:\n") && !b.contains("Closes:"), "{b}");
    assert_eq!(b.matches("--- blocked tasks (sysrq-w), each stack once").count(), 1, "{b}");
    assert_eq!(
        b.matches("schedule_timeout <- __wait_for_common <- wait_for_completion <- __flush_work <- flush_work <- flush_delayed_work <- fsnotify_wait_marks_destroyed <- fsnotify_destroy_group <- inotify_release <- __fput").count(),
        2,
        "once as the short stack, once in the detail: {b}"
    );
    golden("recorded-run-55f6523.mail-without-link.txt", &b);
}

#[test]
fn headers_from_the_series_cannot_inject() {
    let (r, mut mails) = fixture();
    for m in &mut mails {
        m.subject = format!("{}\r\nBcc: victim@evil.example\r\n", m.subject);
        m.from = "Alice <alice@example.org>\r\nBcc: victim@evil.example".into();
        m.to = vec!["a@x.example, b@y.example".into(), "list@vger.kernel.org".into()];
        m.cc = vec!["Eve <eve@evil.example>\nX-Injected: 1".into()];
        m.message_id =
            "d4beaa0b6dce675866cce3d0d2f856abb4e70f42.1795614032.git.alice@example.org>\r\nX-Injected: 1".into();
    }
    let m = report(&r, "k", &Subject::Series { mails: &mails }, &SETTINGS).unwrap().unwrap();
    let t = text(&m);
    // The text stays inside the Subject; no header of its own appears.
    let hs = headers(&t);
    assert!(hs.iter().all(|l| !l.to_ascii_lowercase().starts_with("bcc:") && !l.starts_with("X-Injected")), "{hs:?}");
    assert!(header(&t, "Subject")[0].contains("Bcc: victim"), "{hs:?}");
    assert!(!m.rcpt.iter().any(|a| a.contains("evil") || a.contains("x.example")), "{:?}", m.rcpt);
    assert_eq!(m.rcpt, ["list@vger.kernel.org"]);
    assert!(header(&t, "In-Reply-To").is_empty(), "a broken message id is left out");
}

#[test]
fn clean_results_have_no_report() {
    let (mut r, mails) = fixture();
    for a in &mut r.arches {
        a.regressions.clear();
    }
    assert!(report(&r, "k", &Subject::Series { mails: &mails }, &SETTINGS).unwrap().is_none());
    // With send_clean, a short note threaded under the cover letter.
    r.status = kbot_report::Status::Clean;
    let s = Settings { send_clean: true, ..SETTINGS };
    let m = report(&r, "k", &Subject::Series { mails: &mails }, &s).unwrap().unwrap();
    let t = text(&m);
    assert_eq!(header(&t, "In-Reply-To"), ["In-Reply-To: <cover.1795614032.git.alice@example.org>"]);
    assert!(t.contains("found no regression") && !t.contains("Reported-by"), "{t}");
}

#[test]
fn header_cleaning() {
    assert_eq!(clean_header("a\r\nb\t c\0", 100), "a b c");
    assert_eq!(clean_header(&"x".repeat(300), 10).len(), 10);
    assert_eq!(clean_msgid("a@b"), Some("a@b".into()));
    assert_eq!(clean_msgid("a@b> <c@d"), None);
    assert_eq!(clean_msgid("nope"), None);
    assert!(mailbox("A <a@b.c>").is_some());
    assert!(mailbox("a@b.c, d@e.f").is_none());
    assert!(mailbox("a@b.c\r\nBcc: x@y").is_none());
    // Found by the mail_headers fuzz target: the parser joined "r%@ cks" into one address.
    assert!(mailbox("\u{fffd}r%\u{fffd}@ cks\u{fffd}good").is_none());
    assert!(mailbox("x @ y.org").is_none());
    assert_eq!(mailbox("Ann <Ann@Example.org>").unwrap().email.to_string(), "Ann@Example.org");
}

#[test]
fn unreachable_smtp_is_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for scheme in ["smtp", "smtp+starttls", "smtps"] {
        let url = format!("{scheme}://127.0.0.1:{port}");
        let smtp = Smtp { url: &url, creds: None, ca_pem: None };
        let e = send(&smtp, "k@x.org", &["a@x.org".into()], b"Subject: x\r\n\r\nx\r\n").unwrap_err();
        assert!(e.transient, "{}", e.message);
        assert!(e.message.starts_with(&format!("SMTP 127.0.0.1:{port}: ")), "{}", e.message);
    }
    let e = send(&Smtp { url: "http://x", creds: None, ca_pem: None }, "k@x.org", &[], b"").unwrap_err();
    assert!(!e.transient);
    assert_eq!(e.message, "mail.smtp \"http://x\": expected smtp://, smtp+starttls:// or smtps://");
    // A CA file that holds no certificate is a permanent error, not a silent fallback to the
    // built-in roots.
    let url = format!("smtps://127.0.0.1:{port}");
    let e = send(&Smtp { url: &url, creds: None, ca_pem: Some(b"garbage") }, "k@x.org", &["a@x.org".into()], b"")
        .unwrap_err();
    assert!(!e.transient && e.message.starts_with("mail.ca_file: "), "{}", e.message);
}

/// Checks a report mail against the series' header fields it was made from: the header
/// section is CRLF lines (no CR or LF anywhere else) of the headers kbot writes, each once;
/// To and Cc name exactly the envelope's recipients; and each recipient is one whole address
/// field of the input (`addr` or `Name <addr>`, without control characters): header cleaning
/// never makes up an address, nor takes one out of a list or from across a line break.
pub(crate) fn check_mail(m: &OutMail, fields: &[&str]) -> Result<(), String> {
    let end = m.raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")? + 2;
    let head = &m.raw[..end];
    for (i, &b) in head.iter().enumerate() {
        let ok = match b {
            b'\r' => head.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && head[i - 1] == b'\r',
            _ => true,
        };
        if !ok {
            return Err(format!("a bare CR or LF in the headers at byte {i}: {:?}", String::from_utf8_lossy(head)));
        }
    }
    const KNOWN: [&str; 11] = [
        "from",
        "message-id",
        "in-reply-to",
        "references",
        "to",
        "cc",
        "subject",
        "content-type",
        "user-agent",
        "content-transfer-encoding",
        "date",
    ];
    let (hs, _) = mailparse::parse_headers(&m.raw).map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    let mut addrs = Vec::new();
    for h in &hs {
        let key = h.get_key().to_ascii_lowercase();
        if !KNOWN.contains(&key.as_str()) && key != "mime-version" {
            return Err(format!("unexpected header {key:?}"));
        }
        if seen.contains(&key) {
            return Err(format!("header {key:?} twice"));
        }
        seen.push(key.clone());
        if key == "to" || key == "cc" {
            for a in mailparse::addrparse_header(h).map_err(|e| format!("{key}: {e}"))?.iter() {
                match a {
                    mailparse::MailAddr::Single(s) => addrs.push(s.addr.to_ascii_lowercase()),
                    mailparse::MailAddr::Group(g) => return Err(format!("{key}: a group {g}")),
                }
            }
        }
    }
    let mut rcpt: Vec<String> = m.rcpt.iter().map(|a| a.to_ascii_lowercase()).collect();
    rcpt.sort();
    addrs.sort();
    if rcpt != addrs {
        return Err(format!("envelope {rcpt:?} but To/Cc {addrs:?}"));
    }
    for a in &rcpt {
        let whole = |f: &&str| {
            // Spaces aside (`< a@x >` is that address too).
            let t: String = f.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
            !f.contains(char::is_control) && (t == *a || t.ends_with(&format!("<{a}>")))
        };
        if !fields.iter().any(whole) {
            return Err(format!("recipient {a:?} is not one whole address field of {fields:?}"));
        }
    }
    Ok(())
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// What hostile header values are made of: address syntax, line breaks and other control
    /// characters, header names, encoded words, non-ASCII.
    const PIECES: &[&str] = &[
        "alice",
        "eve",
        "@",
        "example.org",
        "evil.example",
        ".",
        ",",
        ";",
        ":",
        "<",
        ">",
        "\"",
        " ",
        "\t",
        "\r",
        "\n",
        "\r\n",
        "\r\n ",
        "\0",
        "\x0b",
        "\x1b",
        "\u{7f}",
        "\u{85}",
        "\u{2028}",
        "Bcc: ",
        "To: ",
        "=?utf-8?q?",
        "=0D=0A",
        "?=",
        "Name",
        "\\",
        "(",
        ")",
        "ü",
        "[PATCH 1/2] x",
    ];

    fn hostile() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(PIECES), 0..10).prop_map(|v| v.concat())
    }

    /// Line breaks and other characters that end or split a header line somewhere.
    const BREAKS: &[&str] = &["\r\n", "\n", "\r", "\r\n ", "\r\n\t", "\0", "\u{85}", "\u{2028}"];

    /// An address field: hostile, a real address with hostile parts around it, or one split
    /// or followed by a line break (which, joined, would be an address or a header).
    fn field() -> impl Strategy<Value = String> {
        let name = "[a-z]{1,6}";
        prop_oneof![
            hostile(),
            (name, name).prop_map(|(l, d)| format!("{l}@{d}.example")),
            (hostile(), name, name, hostile()).prop_map(|(n, l, d, tail)| format!("{n} <{l}@{d}.example>{tail}")),
            (name, name, prop::sample::select(BREAKS), 0..4usize).prop_map(|(l, d, b, at)| match at {
                0 => format!("{l}@{b}{d}.example"),
                1 => format!("{l}{b}@{d}.example"),
                2 => format!("Alice <{l}@{d}.example>{b}Bcc: eve@evil.example"),
                _ => format!("{l}@{d}.example{b}"),
            }),
        ]
    }

    fn msgid() -> impl Strategy<Value = String> {
        prop_oneof![hostile(), "[a-z0-9.]{1,10}@[a-z]{1,6}\\.example", hostile().prop_map(|h| format!("a@b{h}"))]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn clean_header_leaves_no_control_character(s in hostile(), max in 0usize..40) {
            let c = clean_header(&s, max);
            prop_assert!(!c.contains(char::is_control), "{c:?}");
            prop_assert!(c.chars().count() <= max);
            prop_assert!(!c.starts_with(' ') && !c.ends_with(' ') && !c.contains("  "), "{c:?}");
            prop_assert!(c.chars().all(|x| x == ' ' || s.contains(x)), "{c:?} from {s:?}");
        }

        #[test]
        fn one_address_or_none(s in field()) {
            if let Some(m) = mailbox(&s) {
                let text = m.to_string();
                prop_assert!(!text.contains(char::is_control), "{text:?}");
                let addr = m.email.to_string().to_ascii_lowercase();
                prop_assert_eq!(addr.matches('@').count(), 1);
                prop_assert!(s.to_ascii_lowercase().contains(&addr), "{addr:?} is not in {s:?}");
            }
            if let Some(id) = clean_msgid(&s) {
                prop_assert_eq!(&id, &s);
                prop_assert!(id.chars().all(|c| c.is_ascii_graphic() && c != '<' && c != '>'), "{id:?}");
            }
        }

        /// The whole report mail made from a series whose headers are hostile.
        #[test]
        fn a_report_has_no_injected_header_and_no_new_address(
            subject in hostile(),
            from in field(),
            to in prop::collection::vec(field(), 0..3),
            cc in prop::collection::vec(field(), 0..3),
            message_id in msgid(),
            references in prop::collection::vec(msgid(), 0..3),
            extra_cc in prop::collection::vec(field(), 0..2),
        ) {
            let (r, mut mails) = fixture();
            for m in &mut mails {
                m.subject = subject.clone();
                m.from = from.clone();
                m.to = to.clone();
                m.cc = cc.clone();
                m.message_id = message_id.clone();
                m.references = references.clone();
            }
            let s = Settings { cc: &extra_cc, ..SETTINGS };
            let mut fields: Vec<&str> = vec![&from];
            fields.extend(to.iter().chain(&cc).chain(&extra_cc).map(String::as_str));
            match report(&r, "k", &Subject::Series { mails: &mails }, &s) {
                Ok(Some(m)) => {
                    if let Err(e) = check_mail(&m, &fields) {
                        return Err(TestCaseError::fail(format!("{e}\n{}", text(&m))));
                    }
                }
                Err(ReportError::NoRecipient) => {}
                other => prop_assert!(false, "{other:?}"),
            }
            // A range report: the author from the result, Cc a hostile committer.
            let mut r = r;
            for p in &mut r.series.patches {
                p.author = from.clone();
            }
            let about = Subject::Range { tree: "linux", branch: "master", committer: Some(&subject) };
            fields.push(&subject);
            match report(&r, "k", &about, &s) {
                Ok(Some(m)) => {
                    if let Err(e) = check_mail(&m, &fields) {
                        return Err(TestCaseError::fail(format!("{e}\n{}", text(&m))));
                    }
                }
                Err(ReportError::NoRecipient) => {}
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}

/// The published FNV-1a 64 vectors, as kbot-kernel's: Message-IDs of reports stay stable.
#[test]
fn message_id_hash_is_fnv1a() {
    assert_eq!(crate::fnv64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(crate::fnv64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(crate::fnv64(b"foobar"), 0x8594_4171_f739_67e8);
}
