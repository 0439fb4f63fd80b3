#![no_main]
//! kbot-mail's header cleaning on arbitrary header values: the input is split at 0xff bytes
//! into subject, From, To, Cc, Message-ID, References and a committer, read as lossy UTF-8
//! (the lists split again at each invalid byte, e.g. 0xfe). `clean_header`, `mailbox` and
//! `clean_msgid` keep their promises, and the report mails built from a series with these
//! headers (series and range) pass `common/report_check.rs`: no CR/LF and no new address.
use kbot_mail::{clean_header, clean_msgid, mailbox};
use libfuzzer_sys::fuzz_target;

#[path = "../common/report_check.rs"]
mod report_check;

/// The series the values are put into (kbot-testdata's regression series).
fn series() -> Vec<kbot_mbox::Mail> {
    static S: std::sync::OnceLock<Vec<kbot_mbox::Mail>> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        kbot_mbox::parse_mbox(include_bytes!("../../analyzers/kbot-testdata/testdata/srcu-stall-regression.mbox"))
            .expect("the fixture parses")
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let parts: Vec<String> = data.split(|&b| b == 0xff).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    let part = |i: usize| parts.get(i).cloned().unwrap_or_default();
    let list = |i: usize| -> Vec<String> {
        match parts.get(i) {
            Some(p) => p.split('\u{fffd}').map(str::to_string).collect(),
            None => Vec::new(),
        }
    };
    let (subject, from, to, cc, message_id, references, committer) =
        (part(0), part(1), list(2), list(3), part(4), list(5), part(6));

    for s in [&subject, &from, &message_id, &committer] {
        for max in [0, 1, 10, 200] {
            let c = clean_header(s, max);
            assert!(!c.contains(char::is_control), "{c:?}");
            assert!(c.chars().count() <= max);
            assert!(c.chars().all(|x| x == ' ' || s.contains(x)), "{c:?} from {s:?}");
        }
        if let Some(m) = mailbox(s) {
            assert!(!m.to_string().contains(char::is_control), "{m}");
            let addr = m.email.to_string().to_ascii_lowercase();
            assert!(s.to_ascii_lowercase().contains(&addr), "{addr:?} is not in {s:?}");
        }
        if let Some(id) = clean_msgid(s) {
            assert!(id.chars().all(|c| c.is_ascii_graphic() && c != '<' && c != '>'), "{id:?}");
        }
    }

    let mut mails = series();
    for m in &mut mails {
        m.subject = subject.clone();
        m.from = from.clone();
        m.to = to.clone();
        m.cc = cc.clone();
        m.message_id = message_id.clone();
        m.references = references.clone();
    }
    report_check::check_reports(&mails, &committer);
});
