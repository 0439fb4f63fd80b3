#![no_main]
//! The console parser (KTAP, oops/splat table, blocked-task stacks, shadow records) on
//! arbitrary console text, as a hostile kernel may print anything.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let c = kbot_console::parse(&text);
    for t in &c.tests {
        let _ = c.test(&t.name);
    }
});
