//! The pipeline's decisions on a fake lab: kernels "build" or not per prefix, boots print
//! KTAP that the real console parser reads, and every build and boot is recorded so the tests
//! can say what the pipeline asked for, not only what it concluded.

use super::*;
use crate::lab::LabError;
use kbot_kernel::Arch;
use kbot_report::{Status, StepReason};
use std::path::{Path, PathBuf};

/// A real x86_64 console of a patch whose initcall writes through NULL (fanotify_user_setup).
const INITCALL_OOPS: &str = include_str!("../../../../analyzers/kbot-console/testdata/oops-x86-null-initcall.log");

type OutcomeFn = Box<dyn Fn(usize, &str, usize) -> Outcome>;

struct FakeLab {
    tests: Vec<&'static str>,
    /// Per prefix: does it build?
    builds: Box<dyn Fn(usize) -> bool>,
    /// Per prefix: does the kernel reach the agent?
    starts: Box<dyn Fn(usize) -> bool>,
    /// (prefix, test, how many boots of that prefix came before) -> outcome.
    outcome: OutcomeFn,
    /// Boots whose QEMU fails to start (lab trouble), by prefix.
    qemu_fails: Vec<usize>,
    /// The kernels carry the shadow checks (as `QemuLab` with hooks applied): their rules are
    /// tests of every boot, and a kernel that does not reach the agent oopses in an initcall.
    shadow: bool,
    /// With `shadow`: the prefixes whose kernels break the rule `wait-in-srcu` in every boot.
    violates: Box<dyn Fn(usize) -> bool>,
    kernels: Vec<usize>,
    boots: Vec<(usize, Option<Vec<String>>)>,
    /// What `Lab::ltp_repeat` says (as `kbot check`'s default).
    repeat: u32,
    /// `build_ahead` calls, with how many boots came before each, and the last one's list of
    /// what failed on the base.
    ahead: Vec<(usize, usize)>,
    bad_on_base: Vec<String>,
}

impl FakeLab {
    fn new(outcome: impl Fn(usize, &str, usize) -> Outcome + 'static) -> FakeLab {
        FakeLab {
            tests: vec!["close_with_pending_perm", "perm_allow_deny", "scenario/seed-stall"],
            builds: Box::new(|_| true),
            starts: Box::new(|_| true),
            outcome: Box::new(outcome),
            qemu_fails: Vec::new(),
            shadow: false,
            violates: Box::new(|_| false),
            kernels: Vec::new(),
            boots: Vec::new(),
            repeat: 5,
            ahead: Vec::new(),
            bad_on_base: Vec::new(),
        }
    }

    fn boots_of(&self, prefix: usize) -> usize {
        self.boots.iter().filter(|(p, _)| *p == prefix).count()
    }
}

impl Lab for FakeLab {
    fn arch(&self) -> Arch {
        Arch::X86_64
    }

    fn say(&self, _stage: &str, _msg: &str) {}

    fn ltp_repeat(&self) -> u32 {
        self.repeat
    }

    fn build_ahead(&mut self, prefix: usize, bad_on_base: &[String]) {
        self.ahead.push((prefix, self.boots.len()));
        self.bad_on_base = bad_on_base.to_vec();
    }

    fn kernel(&mut self, prefix: usize) -> Result<Kernel, LabError> {
        self.kernels.push(prefix);
        let ok = (self.builds)(prefix);
        Ok(Kernel {
            image: ok.then(|| PathBuf::from(format!("/fake/bzImage-{prefix}"))),
            errors: if ok { vec![] } else { vec![format!("fs/notify/mark.c:5:1: error: broken at {prefix}")] },
            log: PathBuf::from(format!("/fake/build-{prefix}.log")),
            seconds: 1.0,
            cached: false,
        })
    }

    fn boot(&mut self, prefix: usize, _image: &Path, only: Option<&[String]>, _shrink: bool) -> Result<Boot, LabError> {
        if self.qemu_fails.contains(&prefix) {
            return Err(LabError("cannot start qemu-system-x86_64: no such file".into()));
        }
        let before = self.boots_of(prefix);
        self.boots.push((prefix, only.map(<[String]>::to_vec)));
        // As the real lab: shadow rules are no tests of the agent; with only them in question
        // the agent runs everything.
        let only: Option<Vec<String>> = only
            .map(|o| o.iter().filter(|n| !n.starts_with("shadow/")).cloned().collect::<Vec<_>>())
            .filter(|o| !o.is_empty());
        let only = only.as_deref();
        let names: Vec<String> = match only {
            Some(o) => o.to_vec(),
            None => self.tests.iter().map(|t| t.to_string()).collect(),
        };
        let mut log = String::new();
        if self.shadow {
            log += "kbot-shadow: active rules=wait-in-srcu\n";
            if (self.violates)(prefix) {
                log += "kbot-shadow: VIOLATION rule=wait-in-srcu pid=25 hooks=srcu-enter,pin,wait-start\nCall Trace:\n fsnotify_prepare_user_wait+0x1/0x2\n\n";
            }
        }
        if (self.starts)(prefix) {
            log += &format!("KTAP version 1\n1..{}\n", names.len());
            for (i, t) in names.iter().enumerate() {
                log += &match (self.outcome)(prefix, t, before) {
                    Outcome::Pass => format!("ok {} {t}\n", i + 1),
                    Outcome::Fail => format!("# {t}: permission answer lost\nnot ok {} {t}\n", i + 1),
                    Outcome::Hang => format!("not ok {} {t} # TIMEOUT blocked > 3000 ms\n", i + 1),
                    Outcome::Skip => format!("ok {} {t} # SKIP no fanotify\n", i + 1),
                };
            }
            log += "# kbot-agent done in 5 ms\n";
        } else if self.shadow {
            log += INITCALL_OOPS;
        } else {
            log += "Kernel panic - not syncing: VFS: Unable to mount root fs\n";
        }
        let console = kbot_console::parse(&log);
        // As the real lab: without `only`, what the agent reported is what was expected.
        let expected: Vec<String> = match only {
            Some(o) => o.to_vec(),
            None => console.tests.iter().map(|t| t.name.clone()).collect(),
        };
        let mut tests = kbot_compare::tests_of(&console, &expected, false);
        if self.shadow {
            tests.extend(kbot_compare::shadow_tests(&console, false));
        }
        Ok(Boot {
            finished: console.done,
            timed_out: false,
            console,
            tests,
            log: PathBuf::from(format!("/fake/console-{prefix}.log")),
            seconds: 1.0,
        })
    }
}

fn series(n: usize) -> (Vec<String>, Vec<PatchInfo>) {
    let commits = (0..=n).map(|i| format!("{i:040x}")).collect();
    let patches = (1..=n)
        .map(|i| PatchInfo {
            index: i as u32,
            subject: format!("fsnotify: step {i}"),
            message_id: format!("p{i}@x"),
            ..Default::default()
        })
        .collect();
    (commits, patches)
}

fn run(lab: &mut FakeLab, n: usize) -> ArchResult {
    let (commits, patches) = series(n);
    test_arch(lab, &Prefixes { commits: &commits, patches: &patches })
}

/// `test` hangs from patch `from` on; everything else passes.
fn hangs_from(test: &'static str, from: usize) -> impl Fn(usize, &str, usize) -> Outcome {
    move |p, t, _| if t == test && p >= from { Outcome::Hang } else { Outcome::Pass }
}

#[test]
fn a_clean_series_boots_base_and_tip_once_each() {
    let mut lab = FakeLab::new(|_, _, _| Outcome::Pass);
    let r = run(&mut lab, 3);
    assert!(r.regressions.is_empty() && r.error.is_none() && r.bisect_steps.is_empty(), "{r:?}");
    assert_eq!(lab.kernels, [0, 3]);
    assert_eq!(lab.boots.iter().map(|b| b.0).collect::<Vec<_>>(), [0, 3]);
    assert_eq!((r.base.build, r.base.boot, r.tip.boot), (BuildState::Pass, BootState::Pass, BootState::Pass));
    assert_eq!(r.tip.tests.len(), 3);
}

#[test]
fn a_hang_is_confirmed_bisected_to_its_first_bad_patch_with_evidence() {
    let mut lab = FakeLab::new(hangs_from("close_with_pending_perm", 3));
    let r = run(&mut lab, 5);
    assert_eq!(r.regressions.len(), 1, "{r:?}");
    let g = &r.regressions[0];
    assert_eq!((g.test.as_str(), g.kind), ("close_with_pending_perm", RegressionKind::Hang));
    let fb = g.first_bad.as_ref().expect("first bad");
    assert_eq!((fb.index, fb.subject.as_str(), fb.commit.as_str()), (3, "fsnotify: step 3", &*format!("{:040x}", 3)));
    assert!(
        g.bisect.starts_with("bisected in ") && g.bisect.contains(&r.bisect_steps.len().to_string()),
        "{}",
        g.bisect
    );
    assert!(g.evidence.starts_with("close_with_pending_perm: hang:"), "{}", g.evidence);
    // No rerun of the tip: bisection booted only prefixes between, for just that test, and
    // confirmed the first bad one by booting it again.
    assert!(lab.boots[2..].iter().all(|(p, only)| (1..5).contains(p) && only.is_some()), "{:?}", lab.boots);
    let steps: Vec<u32> = r.bisect_steps.iter().map(|s| s.prefix).collect();
    assert!(steps.contains(&2) && steps.contains(&3) && steps.iter().all(|p| (1..5).contains(p)), "{steps:?}");
    assert_eq!(lab.boots_of(3), 2, "first bad prefix confirmed by a rerun");
    assert_eq!(lab.boots_of(5), 1, "the tip booted once");
    let at3 = r.bisect_steps.iter().find(|s| s.prefix == 3).unwrap();
    assert_eq!(at3.verdicts["close_with_pending_perm"], Verdict::Bad);
}

/// The CI run that blamed patch 3: the hang needs a race that one boot of the culprit's prefix
/// did not hit. Settling the last good prefix finds it.
#[test]
fn a_hang_missed_once_at_the_culprit_is_still_bisected_to_it() {
    let mut lab = FakeLab::new(|p, t, before| {
        if t == "close_with_pending_perm" && p >= 2 && !(p == 2 && before == 0) {
            Outcome::Hang
        } else {
            Outcome::Pass
        }
    });
    let r = run(&mut lab, 3);
    let fb: Vec<(&str, Option<u32>)> =
        r.regressions.iter().map(|g| (g.test.as_str(), g.first_bad.as_ref().map(|f| f.index))).collect();
    assert_eq!(fb, [("close_with_pending_perm", Some(2))], "{:?}", r.bisect_steps);
    let steps: Vec<(u32, StepReason)> = r.bisect_steps.iter().map(|s| (s.prefix, s.reason)).collect();
    assert_eq!(
        steps,
        [
            (1, StepReason::Bisect),
            (2, StepReason::Bisect),
            (3, StepReason::Confirm),
            (2, StepReason::Verify),
            (2, StepReason::Verify),
            (1, StepReason::Verify)
        ]
    );
}

#[test]
fn a_failure_that_does_not_reproduce_is_flaky_not_a_regression() {
    // Fails only on the tip's first boot.
    let mut lab =
        FakeLab::new(
            |p, t, before| {
                if p == 2 && t == "perm_allow_deny" && before == 0 {
                    Outcome::Fail
                } else {
                    Outcome::Pass
                }
            },
        );
    let r = run(&mut lab, 2);
    assert!(r.regressions.is_empty(), "{r:?}");
    assert_eq!(r.flaky, ["perm_allow_deny"]);
    // Bisection found every earlier prefix good and booted the tip again: it passed twice,
    // which outvotes its one failure.
    let order: Vec<usize> = lab.boots.iter().map(|b| b.0).collect();
    assert_eq!(order, [0, 2, 1, 2, 2], "base, tip, the step before it, the tip twice more");
    assert_eq!(r.bisect_steps.last().map(|s| s.reason.as_str()), Some("confirm"));
}

/// LTP's reruns repeat a passing test; the base runs an LTP test that regressed again first,
/// as their control.
#[test]
fn an_ltp_hang_is_controlled_on_the_base_then_bisected() {
    let mut lab = FakeLab::new(hangs_from("ltp/fanotify07", 2));
    lab.tests.push("ltp/fanotify07");
    let r = run(&mut lab, 3);
    let fb: Vec<(&str, Option<u32>)> =
        r.regressions.iter().map(|g| (g.test.as_str(), g.first_bad.as_ref().map(|f| f.index))).collect();
    assert_eq!(fb, [("ltp/fanotify07", Some(2))]);
    assert!(r.flaky.is_empty());
    // Base, tip, then the base again for just the LTP test, before any bisection step.
    assert_eq!(lab.boots[2], (0, Some(vec!["ltp/fanotify07".to_string()])), "{:?}", lab.boots);
    assert!(lab.boots[3..].iter().all(|(p, _)| *p > 0));
    // kbot's own tests need no control: a hang of one is bisected with no base rerun.
    let mut own = FakeLab::new(hangs_from("close_with_pending_perm", 2));
    own.tests.push("ltp/fanotify07");
    run(&mut own, 3);
    assert_eq!(own.boots_of(0), 1, "{:?}", own.boots);
}

#[test]
fn an_ltp_test_that_fails_on_the_base_when_repeated_is_flaky() {
    // Passes the base's first boot, fails its control and every later boot.
    let mut lab =
        FakeLab::new(
            |p, t, before| if t == "ltp/fanotify10" && (p > 0 || before > 0) { Outcome::Fail } else { Outcome::Pass },
        );
    lab.tests.push("ltp/fanotify10");
    let r = run(&mut lab, 3);
    assert!(r.regressions.is_empty(), "{r:?}");
    assert_eq!(r.flaky, ["ltp/fanotify10"]);
    assert!(r.bisect_steps.is_empty(), "nothing to bisect: {:?}", r.bisect_steps);
    assert_eq!(lab.boots.iter().map(|b| b.0).collect::<Vec<_>>(), [0, 3, 0]);
    // Also in a one-patch series, whose tip is confirmed by reruns of its own.
    let mut one = FakeLab::new(|p, t, before| {
        if t == "ltp/fanotify10" && (p > 0 || before > 0) || t == "perm_allow_deny" && p == 1 && before == 0 {
            Outcome::Fail
        } else {
            Outcome::Pass
        }
    });
    one.tests.push("ltp/fanotify10");
    let r = run(&mut one, 1);
    assert!(r.regressions.is_empty(), "{r:?}");
    assert_eq!(r.flaky, ["ltp/fanotify10", "perm_allow_deny"]);
    // Single reruns need no control; an LTP failure is then judged by the reruns alone.
    let mut once = FakeLab::new(hangs_from("ltp/fanotify07", 2));
    once.tests.push("ltp/fanotify07");
    once.repeat = 1;
    let r = run(&mut once, 3);
    assert_eq!(once.boots_of(0), 1, "{:?}", once.boots);
    assert_eq!(r.regressions.len(), 1);
}

#[test]
fn a_test_broken_on_the_base_is_not_a_regression() {
    let mut lab = FakeLab::new(|_, t, _| if t == "perm_allow_deny" { Outcome::Fail } else { Outcome::Pass });
    let r = run(&mut lab, 3);
    assert!(r.regressions.is_empty() && r.flaky.is_empty(), "{r:?}");
}

#[test]
fn a_build_break_is_bisected_without_booting_the_steps() {
    let mut lab = FakeLab::new(|_, _, _| Outcome::Pass);
    lab.builds = Box::new(|p| p < 2);
    let r = run(&mut lab, 4);
    assert_eq!(r.tip.build, BuildState::Fail);
    assert_eq!(r.tip.boot, BootState::Skip);
    let g = &r.regressions[0];
    assert_eq!(
        (g.test.as_str(), g.kind, g.first_bad.as_ref().map(|f| f.index)),
        ("build", RegressionKind::Build, Some(2))
    );
    assert!(g.evidence.contains(">> fs/notify/mark.c:5:1: error: broken at 2"), "{}", g.evidence);
    assert_eq!(lab.boots.iter().map(|b| b.0).collect::<Vec<_>>(), [0], "only the base boots");
}

#[test]
fn a_base_that_does_not_build_is_an_error_and_nothing_else_is_built() {
    let mut lab = FakeLab::new(|_, _, _| Outcome::Pass);
    lab.builds = Box::new(|_| false);
    let r = run(&mut lab, 3);
    let e = r.error.as_deref().unwrap_or_default();
    assert!(e.starts_with("the base 000000000000 does not build; see /fake/build-0.log"), "{e}");
    assert_eq!(r.base.build, BuildState::Fail);
    assert_eq!(lab.kernels, [0]);
    assert!(r.regressions.is_empty());
}

#[test]
fn a_tip_that_never_reaches_the_agent_is_a_boot_regression() {
    let mut lab = FakeLab::new(|_, _, _| Outcome::Pass);
    lab.starts = Box::new(|p| p < 1);
    let r = run(&mut lab, 2);
    assert_eq!(r.tip.boot, BootState::Fail);
    let names: Vec<&str> = r.regressions.iter().map(|g| g.test.as_str()).collect();
    assert_eq!(names, ["boot"]);
    let boot = r.regressions.iter().find(|g| g.test == "boot").unwrap();
    assert_eq!((boot.kind, boot.first_bad.as_ref().map(|f| f.index)), (RegressionKind::Fail, Some(1)));
    assert!(
        boot.evidence.contains("did not reach the agent") || boot.evidence.contains("never started"),
        "{}",
        boot.evidence
    );
}

/// Issue #20: an initcall oops at patch 2/2 was found and bisected, but the summary said
/// "tip build pass tests 6/6 pass": the shadow rules of a kernel that never reached user space
/// counted as passed. They did not run: skipped, with the reason.
#[test]
fn an_initcall_oops_fails_the_boot_and_passes_no_test() {
    let mut lab = FakeLab::new(|_, _, _| Outcome::Pass);
    lab.shadow = true;
    lab.starts = Box::new(|p| p < 2);
    let r = run(&mut lab, 2);
    assert!(r.base.tests.iter().any(|t| t.name.starts_with("shadow/")), "{:?}", r.base.tests);
    assert!(r.base.tests.iter().all(|t| t.result == Outcome::Pass), "{:?}", r.base.tests);
    assert_eq!(r.tip.boot, BootState::Fail);
    assert!(!r.tip.tests.is_empty());
    for t in &r.tip.tests {
        assert_eq!(
            (t.result, t.detail.as_str()),
            (Outcome::Skip, "not run: the kernel did not reach user space"),
            "{t:?}"
        );
    }
    let names: Vec<&str> = r.regressions.iter().map(|g| g.test.as_str()).collect();
    assert_eq!(names, ["boot"]);
    let g = &r.regressions[0];
    // Step at 1 (good), the tip once more to confirm it (the boot failure reproduces), then 1
    // once more to verify it.
    assert_eq!((g.first_bad.as_ref().map(|f| f.index), g.bisect.as_str()), (Some(2), "bisected in 3 steps"));
    assert!(g.evidence.contains("BUG: kernel NULL pointer dereference in fanotify_user_setup"), "{}", g.evidence);
    assert!(!g.evidence.contains("general protection fault"), "{}", g.evidence);
    let titles: Vec<&str> = r.tip.splats.iter().map(|s| s.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "BUG: kernel NULL pointer dereference in fanotify_user_setup",
            "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009"
        ]
    );
}

#[test]
fn lab_trouble_on_the_tip_is_an_error_that_keeps_the_base() {
    let mut lab = FakeLab::new(|_, _, _| Outcome::Pass);
    lab.qemu_fails = vec![3];
    let r = run(&mut lab, 3);
    assert_eq!(r.error.as_deref(), Some("cannot start qemu-system-x86_64: no such file"));
    assert_eq!(r.base.boot, BootState::Pass);
    assert_eq!(r.tip.build, BuildState::Skip, "the tip's run is not recorded half-way");
}

#[test]
fn a_single_patch_needs_no_bisection() {
    let mut lab = FakeLab::new(hangs_from("scenario/seed-stall", 1));
    let r = run(&mut lab, 1);
    let g = &r.regressions[0];
    assert_eq!((g.kind, g.bisect.as_str()), (RegressionKind::Divergence, "the only patch"));
    assert!(r.bisect_steps.is_empty());
    assert_eq!(lab.boots.len(), 3, "base, tip, confirmation");
}

#[test]
fn two_checks_breaking_at_different_patches_get_their_own_first_bad() {
    let mut lab = FakeLab::new(|p, t, _| match t {
        "close_with_pending_perm" if p >= 2 => Outcome::Hang,
        "perm_allow_deny" if p >= 4 => Outcome::Fail,
        _ => Outcome::Pass,
    });
    let r = run(&mut lab, 6);
    let fb: Vec<(&str, Option<u32>)> =
        r.regressions.iter().map(|g| (g.test.as_str(), g.first_bad.as_ref().map(|f| f.index))).collect();
    assert_eq!(fb, [("close_with_pending_perm", Some(2)), ("perm_allow_deny", Some(4))]);
}

#[test]
fn status_prefers_regressions_over_errors() {
    let bad = ArchResult {
        arch: "arm64".into(),
        regressions: vec![Regression {
            test: "t".into(),
            kind: RegressionKind::Hang,
            first_bad: None,
            evidence: String::new(),
            bisect: String::new(),
        }],
        ..Default::default()
    };
    let broken = ArchResult { arch: "x86_64".into(), error: Some("VM timed out".into()), ..Default::default() };
    assert_eq!(crate::check::status_of(&[broken.clone(), bad]).0, Status::Regression);
    assert_eq!(crate::check::status_of(&[broken]), (Status::Error, Some("x86_64: VM timed out".into())));
    assert_eq!(crate::check::status_of(&[]).0, Status::Clean);
}

#[test]
fn an_in_kernel_rule_needs_no_rerun_to_be_named() {
    // The rule alone: bisected to patch 3 without a confirmation boot.
    let mut lab = FakeLab::new(|_, _, _| Outcome::Pass);
    lab.shadow = true;
    lab.violates = Box::new(|p| p >= 3);
    let r = run(&mut lab, 5);
    let fb: Vec<(&str, Option<u32>)> =
        r.regressions.iter().map(|g| (g.test.as_str(), g.first_bad.as_ref().map(|f| f.index))).collect();
    assert_eq!(fb, [("shadow/wait-in-srcu", Some(3))]);
    assert!(r.bisect_steps.iter().all(|s| s.reason == StepReason::Bisect), "{:?}", r.bisect_steps);
    assert!(lab.boots.iter().all(|(p, _)| lab.boots.iter().filter(|(q, _)| q == p).count() == 1), "{:?}", lab.boots);
    // With a hang at the same patch, the confirmation boot reruns the hang test only.
    let mut lab = FakeLab::new(hangs_from("close_with_pending_perm", 3));
    lab.shadow = true;
    lab.violates = Box::new(|p| p >= 3);
    let r = run(&mut lab, 5);
    assert_eq!(r.regressions.len(), 2, "{r:?}");
    assert!(r.regressions.iter().all(|g| g.first_bad.as_ref().map(|f| f.index) == Some(3)), "{r:?}");
    assert_eq!((lab.boots_of(3), lab.boots_of(2)), (2, 2));
    // The reruns: 3 to confirm it, 2 to verify the prefix before it.
    let hang = Some(vec!["close_with_pending_perm".to_string()]);
    assert_eq!(lab.boots[lab.boots.len() - 2..], [(3, hang.clone()), (2, hang)]);
    // A single patch whose only finding is the rule: base and tip, no rerun of the tip.
    let mut lab = FakeLab::new(|_, _, _| Outcome::Pass);
    lab.shadow = true;
    lab.violates = Box::new(|p| p >= 1);
    let r = run(&mut lab, 1);
    assert_eq!(r.regressions.len(), 1, "{r:?}");
    assert_eq!(lab.boots.len(), 2, "{:?}", lab.boots);
}

#[test]
fn bisections_first_probe_is_offered_for_building_ahead_before_the_tip_boots() {
    let mut lab = FakeLab::new(hangs_from("close_with_pending_perm", 3));
    let r = run(&mut lab, 5);
    // Offered once, after the base's boot and before the tip's; it is the first step's prefix.
    assert_eq!(lab.ahead, [(2, 1)]);
    assert_eq!(r.bisect_steps.first().map(|s| s.prefix), Some(2));
    assert_eq!(lab.boots[1].0, 5);
    assert!(lab.bad_on_base.is_empty());
    // What already fails on the base is named, so it does not start a build.
    let mut lab = FakeLab::new(|p, t, _| match t {
        "perm_allow_deny" => Outcome::Fail,
        "close_with_pending_perm" if p >= 3 => Outcome::Hang,
        _ => Outcome::Pass,
    });
    run(&mut lab, 5);
    assert_eq!(lab.bad_on_base, ["perm_allow_deny"]);
    // One patch: no bisection, nothing to build ahead.
    let mut lab = FakeLab::new(hangs_from("close_with_pending_perm", 1));
    run(&mut lab, 1);
    assert!(lab.ahead.is_empty());
}

/// A one-patch series has no bisection: the tip's rerun decides, and when the rerun passes a
/// third run breaks the tie (a race missed once is still a regression; a failure seen once in
/// three runs is flaky).
#[test]
fn a_single_patch_failure_is_decided_by_two_runs_of_three() {
    // Hangs on the tip's first and third boots, passes on the second.
    let mut lab = FakeLab::new(|p, t, before| {
        if p == 1 && t == "close_with_pending_perm" && before != 1 {
            Outcome::Hang
        } else {
            Outcome::Pass
        }
    });
    let r = run(&mut lab, 1);
    let fb: Vec<(&str, Option<u32>)> =
        r.regressions.iter().map(|g| (g.test.as_str(), g.first_bad.as_ref().map(|f| f.index))).collect();
    assert_eq!(fb, [("close_with_pending_perm", Some(1))]);
    assert_eq!(lab.boots_of(1), 3);
    // Hangs on the first boot only: flaky.
    let mut lab = FakeLab::new(|p, t, before| {
        if p == 1 && t == "close_with_pending_perm" && before == 0 {
            Outcome::Hang
        } else {
            Outcome::Pass
        }
    });
    let r = run(&mut lab, 1);
    assert!(r.regressions.is_empty(), "{:?}", r.regressions);
    assert_eq!(r.flaky, ["close_with_pending_perm"]);
    assert_eq!(lab.boots_of(1), 3);
}
