//! End to end with LTP's inotify/fanotify tests in the guest, on real kernels, with the
//! unmodified LTP source the machine provides (`KBOT_LTP`, else `../shared/ltp/*.tar*` beside
//! the repository or `/work/shared/ltp`). Ignored by default like the other e2e tests.
//! KBOT_E2E_ARCH picks the arches (default both); KBOT_E2E_LTP_ARM64 lists the LTP tests
//! arm64 runs (default: a subset, to keep CI short; `all` for every test).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The LTP source for the tests; a missing one fails the test with what to do.
fn ltp_source() -> PathBuf {
    if let Some(p) = std::env::var_os("KBOT_LTP") {
        return PathBuf::from(p);
    }
    for dir in [workspace().join("../shared/ltp"), PathBuf::from("/work/shared/ltp")] {
        let found = std::fs::read_dir(&dir).ok().and_then(|d| {
            d.flatten().map(|e| e.path()).find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(".tar")))
        });
        if let Some(p) = found {
            return p;
        }
    }
    panic!("no LTP source: set KBOT_LTP to an LTP checkout or tarball (the machine's ../shared/ltp has one)");
}

fn arches() -> Vec<String> {
    std::env::var("KBOT_E2E_ARCH").unwrap_or_else(|_| "x86_64,arm64".into()).split(',').map(str::to_string).collect()
}

/// The subset arm64 runs by default: the seed's hang test, a device-needing test, and tests of
/// each area (the whole list runs on x86_64).
const ARM64_SUBSET: &str = "fanotify07,fanotify01,fanotify10,inotify01,inotify12";

/// `kbot check` of an example with LTP, one arch per call (so each arch can get its own test
/// list); returns exit code and JSON.
fn check(mbox: &str, arch: &str, dir: &Path) -> (i32, Value) {
    let json = dir.join(format!("{arch}.json"));
    let mut c = Command::new(env!("CARGO_BIN_EXE_kbot"));
    c.args(["check", "--mbox"])
        .arg(workspace().join("examples").join(mbox))
        .args(["--seed", "1", "--arch", arch, "--json"])
        .arg(&json)
        .arg("--ltp")
        .arg(ltp_source());
    let subset = std::env::var("KBOT_E2E_LTP_ARM64").unwrap_or_else(|_| ARM64_SUBSET.into());
    if arch == "arm64" && subset != "all" {
        c.args(["--ltp-tests", &subset]);
    }
    let t = Instant::now();
    let o = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    eprintln!("{mbox} on {arch} with LTP: {:.0} s\n{}", t.elapsed().as_secs_f64(), String::from_utf8_lossy(&o.stdout));
    assert!(json.exists(), "no JSON written; kbot said:\n{stderr}");
    (o.status.code().unwrap_or(-1), serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap())
}

fn ltp_tests(run: &Value) -> Vec<&Value> {
    run["tests"].as_array().unwrap().iter().filter(|t| t["name"].as_str().unwrap().starts_with("ltp/")).collect()
}

fn time_ms(detail: &str) -> Option<u64> {
    detail.split("time_ms=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[test]
#[ignore = "needs `kbot setup`, LTP, builds and boots real kernels"]
fn ltp_fanotify07_hangs_at_the_first_bad_patch_in_seconds() {
    let d = tempfile::tempdir().unwrap();
    for arch in arches() {
        let (code, v) = check("srcu-stall-regression.mbox", &arch, d.path());
        assert_eq!(code, 1, "{v}");
        let a = &v["arches"][0];
        let base = ltp_tests(&a["base"]);
        let passed = base.iter().filter(|t| t["result"] == "pass").count();
        eprintln!("{arch}: LTP on the base: {passed} of {} pass", base.len());
        for t in &base {
            eprintln!("  {} {}: {}", t["name"], t["result"], t["detail"]);
        }
        if arch == "x86_64" {
            // Proof that the device-needing tests run: 31 of 37 pass on Debian's 6.12 here.
            assert!(base.len() >= 37 && passed >= 30, "{passed} of {} LTP tests pass on the base", base.len());
        } else {
            assert!(passed >= 3, "{passed} of {} LTP tests pass on the base", base.len());
        }
        let tip = ltp_tests(&a["tip"]);
        let f07 = tip.iter().find(|t| t["name"] == "ltp/fanotify07").expect("ltp/fanotify07 ran on the tip");
        assert_eq!(f07["result"], "hang", "{f07}");
        let detail = f07["detail"].as_str().unwrap();
        // kbot's watchdog, not LTP's own timeout (30 s and more), gave the verdict.
        assert!(detail.contains("D state"), "{detail}");
        let regs = a["regressions"].as_array().unwrap();
        let r = regs.iter().find(|r| r["test"] == "ltp/fanotify07").unwrap_or_else(|| panic!("{regs:?}"));
        assert_eq!(r["kind"], "hang", "{r}");
        assert_eq!(r["first_bad"]["index"], 2, "{r}");
        let ev = r["evidence"].as_str().unwrap();
        assert!(ev.contains("blocked tasks") || ev.contains("the test's own lines"), "{ev}");
        let stuck = console_time(a, "ltp/fanotify07");
        eprintln!("{arch}: ltp/fanotify07 verdict after {stuck:?} ms on the tip; evidence:\n{ev}");
        // kbot's own verdicts are not lost next to LTP's.
        assert!(regs.iter().any(|r| r["test"] == "inotify_close_with_pending_perm"), "{regs:?}");
    }
}

/// The time the agent took for one test on the tip (from its detail line).
fn console_time(a: &Value, name: &str) -> Option<u64> {
    let tests = a["tip"]["tests"].as_array()?;
    time_ms(tests.iter().find(|t| t["name"] == name)?["detail"].as_str()?)
}

#[test]
#[ignore = "needs `kbot setup`, LTP, builds and boots real kernels"]
fn clean_series_has_no_ltp_regression() {
    let d = tempfile::tempdir().unwrap();
    for arch in arches() {
        let (code, v) = check("clean-series.mbox", &arch, d.path());
        let a = &v["arches"][0];
        let regs: Vec<&str> =
            a["regressions"].as_array().unwrap().iter().map(|r| r["test"].as_str().unwrap()).collect();
        assert_eq!(code, 0, "{arch}: {regs:?}");
        assert!(!ltp_tests(&a["tip"]).is_empty(), "LTP ran on the tip");
        // The base's LTP run came from the cache (the test above, or an earlier run, made it).
        assert_eq!(ltp_tests(&a["base"]).len(), ltp_tests(&a["tip"]).len());
    }
}
