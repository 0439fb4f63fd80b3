//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .status()
        .unwrap();
    assert!(st.success(), "git {args:?}");
}

/// A one-commit tree under `dir` whose fs/notify/mark.c holds `content`.
pub fn tiny_tree(dir: &Path, content: &str) -> PathBuf {
    let t = dir.join("tree");
    std::fs::create_dir_all(t.join("fs/notify")).unwrap();
    std::fs::write(t.join("fs/notify/mark.c"), content).unwrap();
    git(&t, &["init", "-q", "-b", "main"]);
    git(&t, &["add", "-A"]);
    git(&t, &["commit", "-q", "-m", "base"]);
    t
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}
