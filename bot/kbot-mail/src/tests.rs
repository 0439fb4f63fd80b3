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
    assert!(t.contains("--- x86_64: fanotify_close_with_pending_perm (hang), bisected in 4 steps"), "{t}");
    assert!(t.contains("\r\n    kworker/u4:1 (pid 23): schedule_timeout"), "indentation kept: {t}");
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
}

#[test]
fn unreachable_smtp_is_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = send(&format!("smtp://127.0.0.1:{port}"), None, "k@x.org", &["a@x.org".into()], b"Subject: x\r\n\r\nx\r\n")
        .unwrap_err();
    assert!(e.transient, "{}", e.message);
    assert!(send("http://x", None, "k@x.org", &[], b"").is_err_and(|e| !e.transient));
}
