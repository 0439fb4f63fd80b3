#![no_main]
//! Series assembly (subject tags, versions, partial rerolls, trailers, checks) on whatever
//! the mbox parser accepts.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mails) = kbot_mbox::parse_mbox(data) else { return };
    for version in [None, Some(1), Some(2)] {
        if let Ok(s) = kbot_series::assemble(&mails, version) {
            let _ = kbot_series::trailers::collect(&mails, &s);
            let _ = kbot_series::checks::series_checks(&s);
            for p in &s.patches {
                let _ = kbot_series::checks::patch_checks(p, &|_: &str| false);
            }
        }
    }
});
