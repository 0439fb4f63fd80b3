//! One finding per root cause, on the recorded check of the 3-patch example (both arches,
//! six tests and rules per arch, all at patch 2): one group naming both arches and every
//! test, each blocked-task stack once; the JSON still lists every regression; the Markdown
//! report of it is a golden file (`KBOT_BLESS=1 cargo test` rewrites it after a review).

use kbot_report::group::findings;
use kbot_report::CheckResult;

const RECORDED: &str = "recorded-run-55f6523.json";

fn recorded() -> (CheckResult, String) {
    let text = String::from_utf8(kbot_testdata::fixture_bytes(RECORDED)).unwrap();
    (serde_json::from_str(&text).unwrap(), text)
}

/// Compares `got` with `tests/golden/<name>`, or writes it there with `KBOT_BLESS`.
fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("KBOT_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing {}", path.display()));
    assert_eq!(got, want, "{} (KBOT_BLESS=1 rewrites it)", path.display());
}

#[test]
fn the_recorded_run_is_one_finding_on_both_arches() {
    let (r, _) = recorded();
    let f = findings(&r);
    assert_eq!(f.len(), 1, "{f:#?}");
    let f = &f[0];
    assert_eq!(f.first_bad.as_ref().unwrap().index, 2);
    assert_eq!(f.arches, ["x86_64", "arm64"]);
    assert_eq!(f.regressions, 12);
    let tests: Vec<&str> = f.symptoms.iter().map(|s| s.test.as_str()).collect();
    // Every test and rule, the shadow records (why) first, then the hangs (what the user
    // sees), then the divergences (the minimal scenario).
    assert_eq!(
        tests,
        [
            "shadow/wait-in-srcu",
            "shadow/grace-period-waits-for-listener",
            "inotify_close_with_pending_perm",
            "fanotify_close_with_pending_perm",
            "scenario/seed-stall-inotify",
            "scenario/seed-stall-fanotify",
        ]
    );
    assert!(f.symptoms.iter().all(|s| s.arches == ["x86_64", "arm64"] && s.accounts.len() == 2), "{f:#?}");
    assert!(f.headline.starts_with("shadow/wait-in-srcu: fail: kernel reported wait-in-srcu"), "{}", f.headline);
    assert_eq!(f.bisect, ["bisected in 3 steps"]);
    // Each stack once, over both arches and all six symptoms (each of which quoted the same
    // dump, which listed every task twice).
    let mut frames: Vec<&str> = f.stacks.iter().map(|s| s.frames.as_str()).collect();
    let n = frames.len();
    frames.sort();
    frames.dedup();
    assert_eq!(frames.len(), n, "a stack shown twice: {:#?}", f.stacks);
    let total_lines: usize = r
        .arches
        .iter()
        .flat_map(|a| &a.regressions)
        .map(|g| g.evidence.lines().filter(|l| l.contains(" (pid ")).count())
        .sum();
    assert!(n * 10 < total_lines, "{n} stacks from {total_lines} lines");
    let srcu = f.stacks.iter().find(|s| s.frames.contains("synchronize_srcu <- fsnotify_mark_destroy_workfn <- process_scheduled_works <- worker_thread <- kthread <- ret_from_fork")).unwrap();
    assert!(
        srcu.tasks.contains(&"kworker/u4:1".to_string()) && srcu.tasks.contains(&"kworker/u9:0".to_string()),
        "{srcu:?}"
    );
    assert!(srcu.count >= 4, "{srcu:?}");
    assert!(f.blocks.is_empty(), "no splat in this run: {:?}", f.blocks);
}

#[test]
fn the_json_keeps_every_regression() {
    let (r, text) = recorded();
    let md = kbot_report::markdown(&r).unwrap();
    // Rendering the grouped views changes nothing of the contract.
    let _ = findings(&r);
    assert_eq!(r.to_json(), text);
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    for a in v["arches"].as_array().unwrap() {
        let regs = a["regressions"].as_array().unwrap();
        assert_eq!(regs.len(), 6, "{}", a["arch"]);
        for g in regs {
            assert!(g["evidence"].as_str().unwrap().contains("blocked tasks (sysrq-w):"), "{g}");
            // And every one of them is named in the report.
            assert!(md.contains(&format!("`{}`", g["test"].as_str().unwrap())), "{}", g["test"]);
        }
    }
}

#[test]
fn the_report_of_the_recorded_run_has_one_section() {
    let (r, _) = recorded();
    let md = kbot_report::markdown(&r).unwrap();
    assert_eq!(md.matches("\n## 1. ").count(), 1, "{md}");
    assert!(!md.contains("\n## 2. "), "{md}");
    assert_eq!(md.matches("first bad patch: **").count(), 1, "{md}");
    assert!(md.contains("6 tests and rules break there on x86_64, arm64 (12 regressions in the JSON)"), "{md}");
    // The sysrq-w dump is not repeated per finding.
    assert_eq!(md.matches("### Blocked tasks").count(), 1, "{md}");
    golden("recorded-run-55f6523.report.md", &md);
}
