//! Golden-file table tests in the manner of syzkaller's `pkg/report`: every `NAME.<ext>` in a
//! directory is turned into text by the code under test and compared with `NAME.txt`.
//! After a reviewed change, `KBOT_BLESS=1 cargo test` rewrites the expected files.

use std::path::Path;

/// Runs the table; returns how many cases ran. Panics on the first mismatch, naming the file.
pub fn run(dir: &Path, ext: &str, render: impl Fn(&[u8]) -> String) -> usize {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    let mut n = 0;
    for path in entries.into_iter().filter(|p| p.extension().is_some_and(|x| x == ext)) {
        n += 1;
        let got = render(&std::fs::read(&path).unwrap());
        let want_path = path.with_extension("txt");
        if std::env::var_os("KBOT_BLESS").is_some() {
            std::fs::write(&want_path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&want_path).unwrap_or_else(|_| panic!("missing {}", want_path.display()));
        assert_eq!(got, want, "{}", path.display());
    }
    n
}
