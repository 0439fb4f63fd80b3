//! Golden-file table tests in the manner of syzkaller's `pkg/report`: every `NAME.<ext>` in a
//! directory is turned into text by the code under test and compared with `NAME.txt`.
//! After a reviewed change, `KBOT_BLESS=1 cargo test` rewrites the expected files.
//!
//! Also what several crates' tests share: the fixtures in `testdata/` ([`fixture`]) and a
//! `git` runner ([`git`]). A dev-dependency only.

use std::path::{Path, PathBuf};

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

/// A fixture shared by several crates' tests: `analyzers/kbot-testdata/testdata/<name>`, e.g.
/// `srcu-stall-regression.json` (a kbot.result/v1 with regressions on both arches) and
/// `srcu-stall-regression.mbox` (the series it is the result of).
pub fn fixture(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name);
    assert!(p.is_file(), "no fixture {}", p.display());
    p
}

/// The bytes of a shared [`fixture`].
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let p = fixture(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs `git -C dir args...` and returns its standard output, trimmed; panics (with git's
/// standard error) when it fails. Commits get a fixed identity: the committer is the one kbot
/// commits with (`git am`), so commit ids match kbot's; new commits' author is the same.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "kbot")
        .env("GIT_AUTHOR_EMAIL", "kbot@localhost")
        .env("GIT_COMMITTER_NAME", "kbot")
        .env("GIT_COMMITTER_EMAIL", "kbot@localhost")
        .output()
        .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_and_git() {
        assert!(fixture_bytes("srcu-stall-regression.json").starts_with(b"{"));
        assert!(fixture("srcu-stall-regression.mbox").is_file());
        let d = std::env::temp_dir().join(format!("kbot-testdata-git-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        git(&d, &["init", "-q", "-b", "main"]);
        git(&d, &["commit", "-q", "--allow-empty", "-m", "a"]);
        assert_eq!(git(&d, &["log", "-1", "--format=%an %ce %s"]), "kbot kbot@localhost a");
        assert_eq!(git(&d, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    #[should_panic(expected = "no fixture")]
    fn a_missing_fixture_is_named() {
        fixture("nope.json");
    }
}
