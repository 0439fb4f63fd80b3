//! End to end on real kernels: the example series are applied to the default tree, built,
//! booted in QEMU and tested. They need `kbot setup` first and minutes of CPU, so they are
//! ignored by default; run them with `cargo test --release -- --include-ignored`.
//! KBOT_E2E_ARCH picks the arches (default x86_64).

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn arches() -> String {
    std::env::var("KBOT_E2E_ARCH").unwrap_or_else(|_| "x86_64".into())
}

fn check(mbox: &str, dir: &Path) -> (i32, serde_json::Value, String) {
    let json = dir.join("r.json");
    let md = dir.join("r.md");
    let o = Command::new(env!("CARGO_BIN_EXE_kbot"))
        .args(["check", "--mbox"])
        .arg(examples().join(mbox))
        .args(["--arch", &arches(), "--json"])
        .arg(&json)
        .arg("--report")
        .arg(&md)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(json.exists(), "no JSON written; kbot said:\n{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    eprintln!("{}", String::from_utf8_lossy(&o.stdout));
    (
        o.status.code().unwrap_or(-1),
        v,
        std::fs::read_to_string(&md).unwrap(),
    )
}

const ALL_TESTS: usize = 8;

#[test]
#[ignore = "needs `kbot setup`, builds and boots real kernels"]
fn srcu_stall_series_is_bisected_to_patch_2() {
    let d = tempfile::tempdir().unwrap();
    let (code, v, md) = check("srcu-stall-regression.mbox", d.path());
    assert_eq!(code, 1);
    assert_eq!(v["schema"], "kbot.result/v1");
    assert_eq!(v["status"], "regression");
    assert_eq!(v["apply"]["ok"], true);
    assert_eq!(v["series"]["total"], 3);
    let results = v["arches"].as_array().unwrap();
    assert_eq!(results.len(), arches().split(',').count());
    for a in results {
        let base = a["base"]["tests"].as_array().unwrap();
        assert_eq!(base.len(), ALL_TESTS, "{a}");
        assert!(
            base.iter().all(|t| t["result"] == "pass"),
            "base must pass: {a}"
        );
        let regs = a["regressions"].as_array().unwrap();
        let names: Vec<&str> = regs.iter().map(|r| r["test"].as_str().unwrap()).collect();
        assert!(
            names.contains(&"inotify_close_with_pending_perm"),
            "{names:?}"
        );
        for r in regs {
            assert_eq!(r["kind"], "hang");
            assert_eq!(r["first_bad"]["index"], 2, "{r}");
            assert!(r["first_bad"]["subject"]
                .as_str()
                .unwrap()
                .contains("avoid SRCU round trip"));
            let ev = r["evidence"].as_str().unwrap();
            assert!(
                ev.contains("synchronize_srcu"),
                "the evidence must show the SRCU wait: {ev}"
            );
        }
        // Only the seed's class regresses; the other tests still pass on the tip.
        let tip_pass = a["tip"]["tests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["result"] == "pass")
            .count();
        assert_eq!(tip_pass, ALL_TESTS - regs.len());
    }
    assert!(
        md.contains("first bad patch: **[PATCH 2/3] fsnotify: avoid SRCU round trip"),
        "{md}"
    );
    assert!(md.contains("Reported-by:"));
}

#[test]
#[ignore = "needs `kbot setup`, builds and boots real kernels"]
fn clean_series_passes() {
    let d = tempfile::tempdir().unwrap();
    let (code, v, md) = check("clean-series.mbox", d.path());
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "clean");
    for a in v["arches"].as_array().unwrap() {
        for run in ["base", "tip"] {
            assert_eq!(a[run]["build"], "pass");
            assert_eq!(a[run]["boot"], "pass");
            let tests = a[run]["tests"].as_array().unwrap();
            assert_eq!(tests.len(), ALL_TESTS);
            assert!(tests.iter().all(|t| t["result"] == "pass"), "{a}");
        }
        assert_eq!(a["regressions"], serde_json::json!([]));
    }
    assert!(md.contains("no test regressed"));
}

/// A series whose patch 2 uses an x86-only header: arm64 must report a build regression
/// bisected to patch 2 with the compiler's error line, and x86_64 must still run its tests.
#[test]
#[ignore = "needs `kbot setup`, builds and boots real kernels on both arches"]
fn arm64_only_build_break_is_bisected() {
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("r.json");
    let o = Command::new(env!("CARGO_BIN_EXE_kbot"))
        .args(["check", "--mbox"])
        .arg(examples().join("arm64-build-break.mbox"))
        .args(["--arch", "x86_64,arm64", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["status"], "regression");
    assert_eq!(v["series"]["version"], 2);
    let arch = |name: &str| {
        v["arches"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["arch"] == name)
            .cloned()
            .unwrap()
    };
    let x86 = arch("x86_64");
    assert_eq!(x86["regressions"], serde_json::json!([]), "{x86}");
    assert_eq!(x86["tip"]["build"], "pass");
    assert!(x86["tip"]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["result"] == "pass"));
    let arm = arch("arm64");
    assert_eq!(arm["base"]["build"], "pass");
    assert_eq!(arm["tip"]["build"], "fail");
    let regs = arm["regressions"].as_array().unwrap();
    assert_eq!(regs.len(), 1, "{arm}");
    assert_eq!(regs[0]["kind"], "build");
    assert_eq!(regs[0]["first_bad"]["index"], 2);
    let ev = regs[0]["evidence"].as_str().unwrap();
    assert!(
        ev.contains("fs/notify/fanotify/fanotify.c:") && ev.contains("asm/tsc.h"),
        "{ev}"
    );
}
