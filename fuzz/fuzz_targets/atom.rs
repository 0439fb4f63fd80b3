#![no_main]
//! The inbox feed parser (Atom from public-inbox: `new.atom`, search results) on arbitrary
//! text: an error or entries, never a panic; every id it returns is a usable message id that
//! survives the URL escaping of a thread link.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(entries) = kbot_lore::parse_atom(&text) {
        for e in entries {
            assert!(!e.msgid.is_empty() && !e.msgid.contains(char::is_whitespace), "{:?}", e.msgid);
            let t = kbot_lore::parse_target(&format!("http://h/l/{}/", kbot_lore::escape_mid(&e.msgid)), "http://h/l/")
                .expect("a link of a returned id parses");
            assert_eq!(t.msgid, e.msgid);
            if let Some(u) = e.updated {
                assert_eq!(kbot_lore::rfc3339_utc(&kbot_lore::utc_string(u)), Some(u));
            }
        }
    }
});
