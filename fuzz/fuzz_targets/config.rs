#![no_main]
//! The config loader (YAML, then validation) on arbitrary text.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = kbot_config::parse(text) {
            // What was accepted is valid: every inbox names a known tree.
            for b in &c.inboxes {
                assert!(c.trees.iter().any(|t| t.name == b.tree) || b.tree == "default");
            }
        }
    }
});
