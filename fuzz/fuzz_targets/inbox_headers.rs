#![no_main]
//! One message as `kbot serve` gets it from an inbox (a public-inbox mirror's blob, a mail of a
//! lore thread) on arbitrary bytes: its headers read as kbot-inbox indexes them (Message-ID,
//! In-Reply-To and References through `kbot_mbox::msg_ids`) and as kbot-mbox parses the mail;
//! no panic, no line break in a parsed header value; then the report kbot would mail in reply
//! is checked (`common/report_check.rs`): no CR/LF and no new address out of header cleaning.
use libfuzzer_sys::fuzz_target;

#[path = "../common/report_check.rs"]
mod report_check;

fuzz_target!(|data: &[u8]| {
    // kbot-inbox's index: the ids of a blob's headers.
    if let Ok((hs, _)) = mailparse::parse_headers(data) {
        for h in hs {
            let key = h.get_key_ref().to_ascii_lowercase();
            if matches!(key.as_str(), "message-id" | "in-reply-to" | "references") {
                let _ = kbot_mbox::msg_ids(&h.get_value());
            }
        }
    }
    let Ok(mail) = kbot_mbox::parse_mail(data.to_vec(), 1) else { return };
    let values = [&mail.subject, &mail.from, &mail.message_id]
        .into_iter()
        .chain(&mail.to)
        .chain(&mail.cc)
        .chain(&mail.references)
        .chain(&mail.in_reply_to);
    for v in values {
        assert!(!v.contains(['\r', '\n']), "a line break in a parsed header value: {v:?}");
    }
    report_check::check_reports(std::slice::from_ref(&mail), &mail.subject);
});
