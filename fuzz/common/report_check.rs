//! What must hold of the report mail kbot writes in reply to a series, whatever its headers
//! held (shared by the `inbox_headers` and `mail_headers` targets; the same check as
//! kbot-mail's property test): the header section is CRLF lines (no CR or LF anywhere else)
//! of the headers kbot writes, each once; To and Cc name exactly the envelope's recipients;
//! each recipient is one whole address field of the input (`addr` or `Name <addr>`, without
//! control characters): header cleaning never makes up an address.

use kbot_mail::{OutMail, Settings, Subject};
use kbot_mbox::Mail;
use kbot_report::CheckResult;
use std::sync::OnceLock;

/// A result with regressions on both arches (kbot-testdata's fixture), so a report is written.
fn result() -> &'static CheckResult {
    static R: OnceLock<CheckResult> = OnceLock::new();
    R.get_or_init(|| {
        serde_json::from_str(include_str!("../../analyzers/kbot-testdata/testdata/srcu-stall-regression.json"))
            .expect("the fixture parses")
    })
}

const SETTINGS: Settings = Settings { from: "kbot <kbot@example.org>", cc: &[], link: None, send_clean: false };

/// The series report for `mails`, and the range report with `committer`, both checked.
pub fn check_reports(mails: &[Mail], committer: &str) {
    let mut fields: Vec<&str> = Vec::new();
    for m in mails {
        fields.push(&m.from);
        fields.extend(m.to.iter().chain(&m.cc).map(String::as_str));
    }
    match kbot_mail::report(result(), "k", &Subject::Series { mails }, &SETTINGS) {
        Ok(Some(m)) => check_mail(&m, &fields),
        Ok(None) => panic!("a result with regressions gave no report"),
        Err(kbot_mail::ReportError::NoRecipient) | Err(kbot_mail::ReportError::NoMails) => {}
        Err(e) => panic!("{e}"),
    }
    let mut r = result().clone();
    let author = mails.first().map(|m| m.from.clone()).unwrap_or_default();
    for p in &mut r.series.patches {
        p.author = author.clone();
    }
    let about = Subject::Range { tree: "linux", branch: "master", committer: Some(committer) };
    let fields = [author.as_str(), committer];
    match kbot_mail::report(&r, "k", &about, &SETTINGS) {
        Ok(Some(m)) => check_mail(&m, &fields),
        Ok(None) => panic!("a result with regressions gave no report"),
        Err(kbot_mail::ReportError::NoRecipient) => {}
        Err(e) => panic!("{e}"),
    }
}

pub fn check_mail(m: &OutMail, fields: &[&str]) {
    let end = m.raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an end of headers") + 2;
    let head = &m.raw[..end];
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(head.get(i + 1), Some(&b'\n'), "a bare CR in the headers at byte {i}"),
            b'\n' => assert!(i > 0 && head[i - 1] == b'\r', "a bare LF in the headers at byte {i}"),
            _ => {}
        }
    }
    const KNOWN: [&str; 12] = [
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
        "mime-version",
    ];
    let (hs, _) = mailparse::parse_headers(&m.raw).expect("kbot's headers parse");
    let mut seen = Vec::new();
    let mut addrs = Vec::new();
    for h in &hs {
        let key = h.get_key().to_ascii_lowercase();
        assert!(KNOWN.contains(&key.as_str()), "unexpected header {key:?}");
        assert!(!seen.contains(&key), "header {key:?} twice");
        seen.push(key.clone());
        if key == "to" || key == "cc" {
            for a in mailparse::addrparse_header(h).expect("To/Cc parse").iter() {
                match a {
                    mailparse::MailAddr::Single(s) => addrs.push(s.addr.to_ascii_lowercase()),
                    mailparse::MailAddr::Group(g) => panic!("{key}: a group {g}"),
                }
            }
        }
    }
    let mut rcpt: Vec<String> = m.rcpt.iter().map(|a| a.to_ascii_lowercase()).collect();
    rcpt.sort();
    addrs.sort();
    assert_eq!(rcpt, addrs, "the envelope and To/Cc differ");
    for a in &rcpt {
        let whole = |f: &&str| {
            // Spaces aside (`< a@x >` is that address too).
            let t: String = f.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
            !f.contains(char::is_control) && (t == *a || t.ends_with(&format!("<{a}>")))
        };
        assert!(fields.iter().any(whole), "recipient {a:?} is not one whole address field of {fields:?}");
    }
}
