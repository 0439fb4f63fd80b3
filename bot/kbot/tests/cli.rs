//! The `kbot` binary on bad input and on series that stop before any build: exit status,
//! a one-line error, and nothing half-written. Uses small git trees and a private KBOT_HOME.

mod common;

use common::{examples, tiny_tree};
use std::path::Path;
use std::process::{Command, Output};

fn kbot(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kbot"));
    c.env("KBOT_HOME", home).env_remove("KBOT_TREE").arg("--quiet");
    c
}

fn one_line_error(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "expected a one-line error, got: {err}");
    assert!(err.starts_with("kbot: error: "), "{err}");
    err
}

#[test]
fn garbage_mbox_is_a_usage_error_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("junk.mbox");
    std::fs::write(&f, b"\x7fELF\x02\x01\x01\0garbage").unwrap();
    let json = d.path().join("out.json");
    let o = kbot(d.path()).args(["check", "--mbox"]).arg(&f).arg("--json").arg(&json).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("not an mbox"));
    assert!(!json.exists());
}

#[test]
fn missing_file_unknown_arch_and_no_input_are_usage_errors() {
    let d = tempfile::tempdir().unwrap();
    let o = kbot(d.path()).args(["check", "--mbox", "/nonexistent/x.mbox"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("cannot read /nonexistent/x.mbox"));
    let o = kbot(d.path()).args(["check", "--mbox", "x", "--arch", "sparc"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("unknown architecture"));
    let o = kbot(d.path()).args(["check"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("--mbox"));
    let o = kbot(d.path()).args(["check", "--mbox", "x", "--json", "/nonexistent/dir/r.json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("does not exist"));
}

#[test]
fn a_bad_ltp_source_is_a_usage_error_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let mbox = examples().join("srcu-stall-regression.mbox");
    let o = kbot(d.path()).args(["check", "--mbox"]).arg(&mbox).args(["--ltp", "/nonexistent/ltp"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = one_line_error(&o);
    assert!(e.contains("--ltp") && e.contains("/nonexistent/ltp"), "{e}");
    // A directory that is not LTP, through the environment.
    let o = kbot(d.path()).args(["check", "--mbox"]).arg(&mbox).env("KBOT_LTP", d.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("--ltp"));
    // --no-ltp wins over the environment.
    let o = kbot(d.path())
        .args(["check", "--no-ltp", "--mbox", "/nonexistent/x.mbox"])
        .env("KBOT_LTP", "/nonexistent/ltp")
        .output()
        .unwrap();
    assert!(one_line_error(&o).contains("cannot read /nonexistent/x.mbox"));
}

#[test]
fn a_thread_without_patches_is_not_a_series() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("t.mbox");
    std::fs::write(&f, "From x\nFrom: a@x\nSubject: Re: [PATCH] x\n\nlooks fine\n").unwrap();
    let tree = tiny_tree(d.path(), "x\n");
    let o = kbot(d.path()).args(["check", "--mbox"]).arg(&f).arg("--tree").arg(&tree).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("none of the 1 mails is a patch"));
}

#[test]
fn tree_that_is_not_git_and_unknown_base() {
    let d = tempfile::tempdir().unwrap();
    let mbox = examples().join("clean-series.mbox");
    let o = kbot(d.path()).args(["check", "--mbox"]).arg(&mbox).arg("--tree").arg(d.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("is not a git repository"));
    let tree = tiny_tree(d.path(), "x\n");
    let o = kbot(d.path())
        .args(["check", "--mbox"])
        .arg(&mbox)
        .arg("--tree")
        .arg(&tree)
        .args(["--base", "v9.99"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("has no such commit"));
}

#[test]
fn no_default_tree_says_run_setup() {
    let d = tempfile::tempdir().unwrap();
    let o = kbot(d.path()).args(["check", "--mbox"]).arg(examples().join("clean-series.mbox")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("kbot setup"));
}

#[test]
fn incomplete_series_builds_nothing() {
    let d = tempfile::tempdir().unwrap();
    let full = std::fs::read_to_string(examples().join("srcu-stall-regression.mbox")).unwrap();
    // Drop patch 2/3.
    let mails: Vec<&str> = full.split("\nFrom ").collect();
    let kept: Vec<&str> = mails.iter().copied().filter(|m| !m.contains("Subject: [PATCH 2/3]")).collect();
    assert_eq!(kept.len(), 3);
    let f = d.path().join("partial.mbox");
    std::fs::write(&f, kept.join("\nFrom ")).unwrap();
    let tree = tiny_tree(d.path(), "x\n");
    let json = d.path().join("r.json");
    let o = kbot(d.path())
        .args(["check", "--mbox"])
        .arg(&f)
        .arg("--tree")
        .arg(&tree)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["series"]["missing"], serde_json::json!([2]));
    assert_eq!(v["arches"], serde_json::json!([]));
    assert!(!d.path().join("work").exists(), "nothing may be checked out for an incomplete series");
}

#[test]
fn patch_that_does_not_apply_is_reported_with_gits_reason() {
    let d = tempfile::tempdir().unwrap();
    // A tree whose mark.c has none of the context the series expects.
    let tree = tiny_tree(d.path(), "int unrelated;\n");
    let json = d.path().join("r.json");
    let md = d.path().join("r.md");
    let o = kbot(d.path())
        .args(["check", "--mbox"])
        .arg(examples().join("srcu-stall-regression.mbox"))
        .arg("--tree")
        .arg(&tree)
        .arg("--json")
        .arg(&json)
        .arg("--report")
        .arg(&md)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["status"], "apply-failed");
    assert_eq!(v["apply"]["ok"], false);
    assert_eq!(v["apply"]["failed_patch"], 1);
    let detail = v["apply"]["detail"].as_str().unwrap();
    assert!(detail.contains("fs/notify/mark.c"), "{detail}");
    assert!(v["series"]["notes"].to_string().contains("base-commit"), "the missing base-commit must be noted");
    let report = std::fs::read_to_string(&md).unwrap();
    assert!(report.contains("Patch 1 does not apply"), "{report}");
    // The user's tree is untouched: still one commit, clean.
    let log = Command::new("git").arg("-C").arg(&tree).args(["rev-list", "--count", "HEAD"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout).trim(), "1");
}

#[test]
fn a_series_without_base_commit_is_applied_to_the_branch_that_takes_it() {
    let d = tempfile::tempdir().unwrap();
    // next has the line the patch changes; main (HEAD, newer) changed it since.
    let tree = tiny_tree(d.path(), "int marks = 1;\n");
    common::git(&tree, &["branch", "next"]);
    std::fs::write(tree.join("fs/notify/mark.c"), "int marks = 2;\n").unwrap();
    common::git(&tree, &["commit", "-q", "-am", "main moves on"]);
    let next = common::git(&tree, &["rev-parse", "next"]);
    let mbox = d.path().join("s.mbox");
    std::fs::write(
        &mbox,
        "From kbot Mon Sep 17 00:00:00 2001\nFrom: Alice <alice@example.org>\nDate: Wed, 25 Nov 2026 10:00:00 +0000\n\
         Subject: [PATCH] fsnotify: three marks\nMessage-ID: <m1@example.org>\n\nThree.\n\n\
         Signed-off-by: Alice <alice@example.org>\n---\n\
         diff --git a/fs/notify/mark.c b/fs/notify/mark.c\n--- a/fs/notify/mark.c\n+++ b/fs/notify/mark.c\n\
         @@ -1 +1 @@\n-int marks = 1;\n+int marks = 3;\n-- \n2.39.5\n",
    )
    .unwrap();
    let json = d.path().join("r.json");
    let md = d.path().join("r.md");
    // `kbot check` of the series on the tiny tree with these extra arguments.
    let check = |extra: &[&str]| {
        kbot(d.path())
            .args(["check", "--arch", "x86_64", "--no-ltp", "--mbox"])
            .arg(&mbox)
            .arg("--tree")
            .arg(&tree)
            .arg("--json")
            .arg(&json)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = check(&["--report", md.to_str().unwrap()]);
    // The tiny tree is no kernel: what comes after the apply fails; the base is the point.
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&json).unwrap_or_else(|_| panic!("no JSON; kbot said: {}", String::from_utf8_lossy(&o.stderr))),
    )
    .unwrap();
    assert_eq!(v["series"]["base"], next.as_str(), "{v:#}");
    assert_eq!(v["series"]["base_source"], "newest candidate it applies to: next");
    let tried = v["series"]["base_candidates"].as_array().unwrap();
    assert_eq!(tried.len(), 2, "HEAD and main are one commit, listed once: {tried:?}");
    assert_eq!((tried[0]["name"].as_str(), tried[0]["applies"].as_bool()), (Some("HEAD"), Some(false)));
    assert_eq!(tried[0]["failed_patch"], 1);
    assert_eq!((tried[1]["name"].as_str(), tried[1]["applies"].as_bool()), (Some("next"), Some(true)));
    assert_eq!(v["apply"]["ok"], true, "{v:#}");
    let report = std::fs::read_to_string(&md).unwrap();
    assert!(report.contains("| next | `") && report.contains("| yes |"), "{report}");
    // Only `--base-from main` offered: nothing takes it, so HEAD and git's reason.
    let o = check(&["--base-from", "main"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["status"], "apply-failed");
    assert_eq!(v["series"]["base_source"], "tree HEAD");
    assert_eq!(v["series"]["base_candidates"][0]["name"], "main");
    assert!(v["series"]["notes"].to_string().contains("applies to none of the 1 candidate bases"), "{v:#}");
    // A ref the tree does not have is a typo: a usage error before any work, nothing written.
    std::fs::remove_file(&json).unwrap();
    let o = check(&["--base-from", "nxt"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("--base-from nxt: the tree"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!json.exists());
}

#[test]
fn lore_url_comes_from_the_config_file_unless_given() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("k.yaml");
    std::fs::write(&cfg, "lore: http://127.0.0.1:9/fromconfig/\n").unwrap();
    let tree = tiny_tree(d.path(), "x\n");
    let run = |extra: &[&str]| {
        let mut c = kbot(d.path());
        c.env_remove("KBOT_LORE")
            .args(["check", "--msgid", "a@b", "--tree"])
            .arg(&tree)
            .arg("--config")
            .arg(&cfg)
            .args(extra);
        c.output().unwrap()
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("127.0.0.1:9/fromconfig/a@b/t.mbox.gz"));
    let o = run(&["--lore", "http://127.0.0.1:9/fromoption/"]);
    assert!(one_line_error(&o).contains("/fromoption/"));
    std::fs::write(&cfg, "lroe: x\n").unwrap();
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("unknown field `lroe`"));
}

#[test]
fn a_kernel_image_that_is_garbage_gives_qemus_reason() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("garbage.img");
    std::fs::write(&img, (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<u8>>())
        .unwrap();
    let o = kbot(d.path())
        .args(["scenario", "replay", "--name", "seed-stall-inotify", "--arch", "x86_64", "--kernel"])
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let e = one_line_error(&o);
    assert!(e.contains("qemu-system-x86_64 said: "), "{e}");
}

#[test]
fn serve_refuses_a_bad_config_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (
            "inboxes:\n  - name: x\n    lore: https://lore.kernel.org/x/\n    tree: nope\n",
            "inboxes[0].tree: no tree named \"nope\"",
        ),
        ("mail:\n  smtp: 127.0.0.1:25\n  from: k@x.org\n", "mail.smtp: expected smtp://host:port"),
        ("workers: many\n", "workers: invalid type"),
        ("trees:\n  - name: default\n", "nothing to watch"),
    ];
    for (yaml, want) in cases {
        let cfg = d.path().join("k.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let o = kbot(d.path()).args(["serve", "--once", "--config"]).arg(&cfg).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{yaml}");
        let e = one_line_error(&o);
        assert!(e.contains(want) && e.contains("k.yaml"), "{yaml}: {e}");
        assert!(!d.path().join("serve").exists(), "nothing may be written for a bad config");
    }
}

#[test]
fn a_second_service_on_the_same_state_dir_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let tree = tiny_tree(d.path(), "x\n");
    let cfg = d.path().join("k.yaml");
    let yaml = format!(
        "state_dir: {}\ntrees:\n  - name: t\n    path: {}\n    branches: [main]\npoll_interval: 1h\n",
        d.path().join("state").display(),
        tree.display()
    );
    std::fs::write(&cfg, yaml).unwrap();
    let mut first = kbot(d.path()).args(["serve", "--config"]).arg(&cfg).spawn().unwrap();
    let t = std::time::Instant::now();
    while !d.path().join("state/queue.db").exists() {
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "the first service did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let o = kbot(d.path()).args(["serve", "--config"]).arg(&cfg).output().unwrap();
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    assert_eq!(first.wait().unwrap().code(), Some(0), "SIGTERM drains and exits 0");
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("another kbot serve is using state_dir"), "{}", one_line_error(&o));
}

/// `kbot check --range` on bad ranges: each is a usage error (exit 2) on one line that names
/// the range, before anything is checked out, and no JSON or report is written.
#[test]
fn range_errors_are_one_line_usage_errors_that_write_nothing() {
    let d = tempfile::tempdir().unwrap();
    let tree = tiny_tree(d.path(), "x\n");
    let json = d.path().join("r.json");
    let md = d.path().join("r.md");
    let cases: &[(&str, &[&str])] = &[
        ("HEAD", &["--range HEAD: expected BASE..TIP"]),
        ("main", &["--range main: expected BASE..TIP"]),
        ("main...HEAD", &["--range main...HEAD: expected BASE..TIP"]),
        ("v9.99..HEAD", &["--range v9.99..HEAD: v9.99 is not a commit of ", "give BASE..TIP of commits in the tree"]),
        ("HEAD..nope", &["--range HEAD..nope: nope is not a commit of "]),
        ("--all..HEAD", &["--range --all..HEAD: --all is not a commit of "]),
        ("HEAD..HEAD", &["--range HEAD..HEAD has no commits: HEAD is HEAD or an ancestor of it"]),
        ("main..", &["--range main.. has no commits: HEAD is main or an ancestor of it"]),
        ("HEAD..HEAD~0", &["--range HEAD..HEAD~0 has no commits"]),
    ];
    for (range, want) in cases {
        let o = kbot(d.path())
            .args(["check", &format!("--range={range}"), "--tree"])
            .arg(&tree)
            .arg("--json")
            .arg(&json)
            .arg("--report")
            .arg(&md)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{range}: {}", String::from_utf8_lossy(&o.stderr));
        let e = one_line_error(&o);
        for w in *want {
            assert!(e.contains(w), "{range}: {e:?} lacks {w:?}");
        }
        assert!(!json.exists() && !md.exists(), "{range}: nothing may be written");
    }
    assert!(!d.path().join("work").exists() && !d.path().join("runs").exists(), "nothing may be checked out");
}

/// A range of a tree that is not a git repository, and a range without a tree when the
/// default tree is not set up: usage and environment errors on one line, nothing written.
#[test]
fn range_without_a_usable_tree_is_one_line_error() {
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("r.json");
    let o = kbot(d.path())
        .args(["check", "--range", "a..b", "--tree"])
        .arg(d.path())
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("is not a git repository"));
    let o = kbot(d.path()).args(["check", "--range", "a..b", "--json"]).arg(&json).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(one_line_error(&o).contains("kbot setup"));
    assert!(!json.exists());
}

/// checkpatch that gives no verdict is a check in state `error` with the reason, not a
/// silently missing check: a base tree without scripts/checkpatch.pl, and one whose
/// checkpatch.pl dies. The series does not apply to these trees, so nothing is built.
#[test]
fn checkpatch_without_a_verdict_is_an_error_check_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let tree = tiny_tree(d.path(), "int unrelated;\n");
    let run = |name: &str| {
        let json = d.path().join(format!("{name}.json"));
        let o = kbot(d.path())
            .args(["check", "--no-sandbox", "--mbox"])
            .arg(examples().join("srcu-stall-regression.mbox"))
            .arg("--tree")
            .arg(&tree)
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(v["status"], "apply-failed");
        let patches = v["series"]["patches"].as_array().unwrap().clone();
        assert_eq!(patches.len(), 3);
        patches
            .iter()
            .map(|p| {
                let cs: Vec<&serde_json::Value> =
                    p["checks"].as_array().unwrap().iter().filter(|c| c["name"] == "checkpatch").collect();
                assert_eq!(cs.len(), 1, "one checkpatch check per patch: {p}");
                (cs[0]["state"].as_str().unwrap().to_string(), cs[0]["detail"].as_str().unwrap().to_string())
            })
            .collect::<Vec<_>>()
    };
    for (state, detail) in run("none") {
        assert_eq!((state.as_str(), detail.as_str()), ("error", "not run: the base tree has no scripts/checkpatch.pl"));
    }
    std::fs::create_dir_all(tree.join("scripts")).unwrap();
    std::fs::write(
        tree.join("scripts/checkpatch.pl"),
        "print STDERR \"Can't locate Term/ANSIColor.pm in \\@INC\\n\"; exit 2;\n",
    )
    .unwrap();
    common::git(&tree, &["add", "-A"]);
    common::git(&tree, &["commit", "-q", "-m", "a checkpatch.pl that dies"]);
    for (state, detail) in run("dies") {
        assert_eq!(state, "error");
        assert!(
            detail.starts_with("checkpatch.pl gave no verdict: Can't locate Term/ANSIColor.pm in @INC; see "),
            "{detail}"
        );
        assert!(detail.ends_with(".checkpatch"), "{detail}");
    }
}

/// Bidi overrides and isolates and other invisible characters in a series' subjects and
/// names are shown in the Markdown report as `<U+XXXX>`, never passed on as they are.
#[test]
fn invisible_characters_from_a_series_are_shown_in_the_report() {
    let d = tempfile::tempdir().unwrap();
    let tree = tiny_tree(d.path(), "int unrelated;\n");
    let mbox = std::fs::read_to_string(examples().join("srcu-stall-regression.mbox"))
        .unwrap()
        .replace(
            "Subject: [PATCH 0/3] fsnotify: permission",
            "Subject: [PATCH 0/3] fsnotify: \u{202E}noissimrep\u{202C}",
        )
        .replace("From: Alice Developer <", "From: Alice \u{2066}Developer\u{2069}\u{200B} <");
    let f = d.path().join("s.mbox");
    std::fs::write(&f, mbox).unwrap();
    let md = d.path().join("r.md");
    let o = kbot(d.path())
        .args(["check", "--no-sandbox", "--mbox"])
        .arg(&f)
        .arg("--tree")
        .arg(&tree)
        .arg("--report")
        .arg(&md)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let report = std::fs::read_to_string(&md).unwrap();
    assert!(report.contains("fsnotify: <U+202E>noissimrep<U+202C> event wait cleanups"), "{report}");
    assert!(report.contains("Alice <U+2066>Developer<U+2069><U+200B>"), "{report}");
    let hidden: Vec<char> = report.chars().filter(|&c| kbot_templates_is_invisible(c)).collect();
    assert!(hidden.is_empty(), "{hidden:?} in {report}");
}

/// The characters the report must never pass on (a copy of the ranges, so that this test
/// does not trust the code it checks): bidi controls, zero-width ones, BOM, tags.
fn kbot_templates_is_invisible(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{E0000}'..='\u{E007F}')
}
