//! Patches that try to write outside the worktree, through the real `git am` kbot uses:
//! `../` and absolute paths, a symlink followed by a write through it, and binary patches
//! (which must apply like any other).

use kbot_kernel::git::{Tree, Worktree};
use kbot_testdata::git;
use std::path::Path;
use std::process::Command;

fn setup(d: &Path) -> (Tree, Worktree) {
    let t = d.join("tree");
    std::fs::create_dir_all(t.join("fs")).unwrap();
    std::fs::write(t.join("fs/a.c"), "int a;\n").unwrap();
    git(&t, &["init", "-q", "-b", "main"]);
    git(&t, &["add", "-A"]);
    git(&t, &["commit", "-q", "-m", "base"]);
    let tree = Tree::open(&t).unwrap();
    let head = tree.resolve("HEAD").unwrap();
    let wt = tree.worktree(&d.join("wt"), &head).unwrap();
    (tree, wt)
}

fn mail(subject: &str, diff: &str) -> String {
    format!(
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: M <m@example.org>\nDate: Tue, 24 Nov 2026 10:00:00 +0000\nSubject: [PATCH] {subject}\n\nbody\n\nSigned-off-by: M <m@example.org>\n---\n{diff}-- \n2.39.5\n\n"
    )
}

fn am(wt: &Worktree, d: &Path, m: &str) -> Result<String, String> {
    let f = d.join("p.mbox");
    std::fs::write(&f, m).unwrap();
    wt.am(&f).unwrap().map_err(|e| e.detail)
}

fn new_file_diff(path: &str, line: &str) -> String {
    format!(
        "diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+{line}\n"
    )
}

#[test]
fn dot_dot_and_absolute_paths_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let (_, wt) = setup(d.path());
    for path in ["../escape", "fs/../../escape", "/tmp/kbot-abs-escape"] {
        let diff = new_file_diff(path, "pwned");
        let e = am(&wt, d.path(), &mail("escape", &diff)).unwrap_err();
        assert!(!e.is_empty());
        assert!(!d.path().join("escape").exists(), "{path}: wrote outside the worktree");
        assert!(!Path::new("/tmp/kbot-abs-escape").exists(), "{path}");
    }
}

#[test]
fn a_symlink_cannot_be_used_to_write_outside() {
    let d = tempfile::tempdir().unwrap();
    let (_, wt) = setup(d.path());
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let target = outside.display().to_string();
    let link = format!(
        "diff --git a/fs/link b/fs/link\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n+++ b/fs/link\n@@ -0,0 +1 @@\n+{target}\n\\ No newline at end of file\n"
    );
    // A symlink in a tree is legitimate; it is what is done through it that is not.
    am(&wt, d.path(), &mail("add a link", &link)).unwrap();
    assert!(std::fs::symlink_metadata(wt.path.join("fs/link")).unwrap().file_type().is_symlink());
    let through = new_file_diff("fs/link/pwned", "pwned");
    let e = am(&wt, d.path(), &mail("write through it", &through)).unwrap_err();
    assert!(e.contains("Patch failed at 0001"), "{e}");
    assert!(!outside.join("pwned").exists(), "wrote through the symlink");
}

#[test]
fn binary_patches_apply() {
    let d = tempfile::tempdir().unwrap();
    let (_, wt) = setup(d.path());
    // git format-patch --binary of a new 4-byte file "\0\x01\x02\x03".
    let src = d.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(src.join("fs")).unwrap();
    std::fs::write(src.join("fs/a.c"), "int a;\n").unwrap();
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "base"]);
    std::fs::write(src.join("fs/blob.bin"), [0u8, 1, 2, 3, 0xff]).unwrap();
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "add a blob"]);
    let out = Command::new("git")
        .arg("-C")
        .arg(&src)
        .args(["format-patch", "--binary", "--stdout", "HEAD~1"])
        .output()
        .unwrap();
    let m = String::from_utf8(out.stdout).unwrap();
    assert!(m.contains("GIT binary patch"));
    am(&wt, d.path(), &m).unwrap();
    assert_eq!(std::fs::read(wt.path.join("fs/blob.bin")).unwrap(), [0u8, 1, 2, 3, 0xff]);
}
