#![no_main]
//! The mbox splitter and mail parser on arbitrary bytes: no panic, and a mail it returns,
//! written back as a one-message mbox (as kbot hands it to `git am`), parses as one mail with
//! the same Message-ID.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kbot_mbox::msg_ids(&String::from_utf8_lossy(data));
    if let Ok(mails) = kbot_mbox::parse_mbox(data) {
        for m in &mails {
            let again = kbot_mbox::parse_mbox(&m.to_mbox()).expect("a mail kbot wrote must parse");
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].message_id, m.message_id);
        }
    }
});
