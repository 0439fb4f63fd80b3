//! Pure decisions: test results from a console, base-vs-tip regressions, bisection verdicts,
//! and the evidence text for a report. No I/O, so it is tested without QEMU.

use kbot_bisect::Verdict;
use kbot_console::Console;
use kbot_report::{Outcome, RegressionKind, TestFamily, TestResult};

/// Frames that show a task stuck in the notification core: what a hang's evidence quotes.
pub const NOTIFY_FRAMES: &[&str] = &[
    "synchronize_srcu",
    "__synchronize_srcu",
    "fsnotify_destroy_group",
    "fsnotify_wait_marks_destroyed",
    "fsnotify_mark_destroy_workfn",
    "fsnotify_connector_destroy_workfn",
    "fanotify_handle_event",
    "fanotify_get_response",
    "fsnotify_prepare_user_wait",
];

/// Test results of one boot. Tests that were asked for (`expected`) but never reported count
/// as a hang when the VM had to be killed, else as a failure.
pub fn tests_of(console: &Console, expected: &[String], vm_timed_out: bool) -> Vec<TestResult> {
    let mut v: Vec<TestResult> = console
        .tests
        .iter()
        .map(|t| TestResult { name: t.name.clone(), result: t.outcome, detail: t.detail.clone() })
        .collect();
    for name in expected {
        if !v.iter().any(|t| &t.name == name) {
            let (result, why) = if vm_timed_out {
                (Outcome::Hang, "no result: the VM did not finish in time")
            } else if !console.started {
                (Outcome::Fail, "no result: the guest agent never started (kernel did not boot?)")
            } else {
                (Outcome::Fail, "no result: the guest agent stopped before this test")
            };
            v.push(TestResult { name: name.clone(), result, detail: why.into() });
        }
    }
    v
}

/// Why a boot's shadow rules have no verdict when no violation was seen, or `None` when the
/// boot ran what they watch (the agent's tests and scenarios) to the end. The rules watch
/// whatever runs: "no violation" on a kernel that never reached user space, or whose agent
/// stopped early, says nothing about the tests that did not run.
pub fn shadow_unseen(console: &Console, vm_timed_out: bool) -> Option<&'static str> {
    if !console.started {
        Some("not run: the kernel did not reach user space")
    } else if !console.shadow {
        Some("not run: the kernel's shadow checks did not start")
    } else if !console.done {
        Some(if vm_timed_out {
            "not run to the end: the VM did not finish in time (no violation until then)"
        } else {
            "not run to the end: the guest agent stopped early (no violation until then)"
        })
    } else {
        None
    }
}

/// One test per rule of the in-kernel shadow checks: failed when the kernel reported a
/// violation of it (with the record and the stack as detail); passed when the boot ran to its
/// end without one; skipped, with the reason, when the boot did not get that far.
pub fn shadow_tests(console: &Console, vm_timed_out: bool) -> Vec<TestResult> {
    let unseen = shadow_unseen(console, vm_timed_out);
    kbot_refcore::rules::Rule::ALL
        .iter()
        .map(|r| r.name())
        .map(|rule| match console.violations.iter().find(|v| v.rule == rule) {
            Some(v) => TestResult {
                name: format!("shadow/{rule}"),
                result: Outcome::Fail,
                detail: format!(
                    "kernel reported {rule} in pid {} after hooks {}; stack: {}",
                    v.pid,
                    v.hooks.join(" -> "),
                    v.frames.iter().take(8).cloned().collect::<Vec<_>>().join(" <- ")
                ),
            },
            None => match unseen {
                Some(why) => TestResult { name: format!("shadow/{rule}"), result: Outcome::Skip, detail: why.into() },
                None => {
                    TestResult { name: format!("shadow/{rule}"), result: Outcome::Pass, detail: "no violation".into() }
                }
            },
        })
        .collect()
}

/// The kind of finding a bad result of test `name` is: a failed differential scenario or
/// in-kernel shadow rule is a divergence from refcore; other tests hang or fail.
pub fn kind_of(name: &str, result: Outcome) -> RegressionKind {
    if TestFamily::of(name).diverges() {
        RegressionKind::Divergence
    } else if result == Outcome::Hang {
        RegressionKind::Hang
    } else {
        RegressionKind::Fail
    }
}

/// Tests that pass on the base and fail or hang on the tip, with their kind.
pub fn regressions(base: &[TestResult], tip: &[TestResult]) -> Vec<(String, RegressionKind)> {
    tip.iter()
        .filter(|t| t.result.is_bad())
        .filter(|t| base.iter().any(|b| b.name == t.name && b.result == Outcome::Pass))
        .map(|t| (t.name.clone(), kind_of(&t.name, t.result)))
        .collect()
}

/// Verdict for one check at one bisection step.
pub fn verdict(tests: &[TestResult], check: &str) -> Verdict {
    match tests.iter().find(|t| t.name == check).map(|t| t.result) {
        Some(Outcome::Pass) => Verdict::Good,
        Some(Outcome::Fail | Outcome::Hang) => Verdict::Bad,
        Some(Outcome::Skip) | None => Verdict::Unknown,
    }
}

/// Whether the base had a splat like `title`: titles are compared without what varies between
/// runs of the same bug (addresses, line numbers, pids, exit codes).
pub fn base_had_splat(base: &Console, title: &str) -> bool {
    let key = kbot_console::title_key(title);
    base.splats.iter().any(|b| kbot_console::title_key(&b.title) == key)
}

/// The words of LTP's result lines that explain a failure.
const OWN_WORDS: &[&str] = &["TFAIL", "TBROK", "TWARN", "Test timeouted", "Test killed"];

/// The blocked tasks of a sysrq-w dump (or of several: the watchdog dumps once per hang) as
/// evidence lines, one per distinct stack: tasks with the same frames (scheduler plumbing
/// left out, at most 10) are shown once with their names and, when there are several, how
/// many (`"  kworker/u4:0, kworker/u4:1 (x3): a <- b"`); a single task keeps its pid
/// (`"  init (pid 26): a <- b"`). Tasks blocked in the notification core come first, in the
/// order they were dumped, then at most `others` stacks of the other blocked tasks.
pub fn blocked_stacks(console: &Console, others: usize) -> Vec<String> {
    struct Stack {
        tasks: Vec<(String, u32)>,
        frames: Vec<String>,
    }
    let mut notify: Vec<Stack> = Vec::new();
    let mut rest: Vec<Stack> = Vec::new();
    for b in &console.blocked {
        let frames: Vec<String> = b
            .frames
            .iter()
            .filter(|f| !["__switch_to", "__schedule", "schedule"].contains(&f.as_str()))
            .take(10)
            .cloned()
            .collect();
        let in_core = b.frames.iter().any(|f| NOTIFY_FRAMES.contains(&f.as_str()));
        let list = if in_core { &mut notify } else { &mut rest };
        match list.iter_mut().find(|s| s.frames == frames) {
            Some(s) => {
                if !s.tasks.iter().any(|(t, p)| *t == b.task && *p == b.pid) {
                    s.tasks.push((b.task.clone(), b.pid));
                }
            }
            None => list.push(Stack { tasks: vec![(b.task.clone(), b.pid)], frames }),
        }
    }
    let line = |s: &Stack| {
        let who = if let [(task, pid)] = s.tasks.as_slice() {
            format!("{task} (pid {pid})")
        } else {
            let mut names: Vec<&str> = Vec::new();
            for (t, _) in &s.tasks {
                if !names.contains(&t.as_str()) {
                    names.push(t);
                }
            }
            format!("{} (x{})", names.join(", "), s.tasks.len())
        };
        format!("  {who}: {}", s.frames.join(" <- "))
    };
    notify.iter().chain(rest.iter().take(others)).map(line).collect()
}

/// The evidence for a failed or hung test: the agent's account, the stacks of tasks blocked
/// in the notification core (each distinct stack once; for a hang right after the account,
/// as what the user sees), the test's own lines (LTP's), and splats the base did not have
/// (each once, by [`kbot_console::title_key`]).
pub fn evidence(test: &TestResult, tip: &Console, base: &Console) -> String {
    let mut s = format!("{}: {}: {}\n", test.name, test.result, test.detail);
    // What the test said itself (LTP's TFAIL/TBROK lines), as it said it.
    let output = tip.test(&test.name).map(|t| t.output.as_slice()).unwrap_or_default();
    let mut own: Vec<&String> = output.iter().filter(|l| OWN_WORDS.iter().any(|w| l.contains(w))).take(20).collect();
    if own.is_empty() {
        // A hung test has no verdict lines: where it was when it stopped talking.
        own = output.iter().rev().filter(|l| !l.trim().is_empty()).take(3).collect();
        own.reverse();
    }
    let mut own_text = String::new();
    if !own.is_empty() {
        own_text += "\nthe test's own lines:\n";
        for l in own {
            own_text += &format!("  {l}\n");
        }
    }
    let stacks: Vec<String> = blocked_stacks(tip, 0);
    let mut stack_text = String::new();
    if !stacks.is_empty() {
        stack_text += "\nblocked tasks (sysrq-w):\n";
        for l in stacks {
            stack_text += &format!("{l}\n");
        }
    }
    if test.result == Outcome::Hang {
        s += &stack_text;
        s += &own_text;
    } else {
        s += &own_text;
        s += &stack_text;
    }
    let mut shown: Vec<String> = Vec::new();
    for sp in tip.splats.iter().filter(|sp| !base_had_splat(base, &sp.title)) {
        let key = kbot_console::title_key(&sp.title);
        if shown.contains(&key) {
            continue;
        }
        shown.push(key);
        s += &format!("\n{}\n", sp.title);
        for l in sp.excerpt.iter().take(15) {
            s += &format!("  {l}\n");
        }
    }
    s.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, result: &str) -> TestResult {
        TestResult { name: name.into(), result: Outcome::parse(result).unwrap(), detail: String::new() }
    }

    #[test]
    fn only_pass_to_bad_is_a_regression() {
        let base = [t("a", "pass"), t("b", "fail"), t("c", "pass"), t("d", "skip"), t("e", "pass")];
        let tip = [t("a", "hang"), t("b", "fail"), t("c", "pass"), t("d", "fail"), t("e", "fail")];
        assert_eq!(
            regressions(&base, &tip),
            [("a".to_string(), RegressionKind::Hang), ("e".into(), RegressionKind::Fail)]
        );
    }

    #[test]
    fn missing_results_depend_on_how_the_vm_ended() {
        let c = kbot_console::parse("KTAP version 1\n1..2\nok 1 a\n");
        let want = vec!["a".to_string(), "b".to_string()];
        assert_eq!(tests_of(&c, &want, true)[1].result, Outcome::Hang);
        assert_eq!(tests_of(&c, &want, false)[1].result, Outcome::Fail);
        let none = kbot_console::parse("garbage\n");
        assert!(tests_of(&none, &want, false)[0].detail.contains("never started"));
    }

    #[test]
    fn scenario_failures_are_divergences() {
        let base = [t("scenario/priority-order", "pass"), t("perm_allow_deny", "pass")];
        let tip = [t("scenario/priority-order", "fail"), t("perm_allow_deny", "fail")];
        assert_eq!(
            regressions(&base, &tip),
            [
                ("scenario/priority-order".to_string(), RegressionKind::Divergence),
                ("perm_allow_deny".into(), RegressionKind::Fail)
            ]
        );
    }

    #[test]
    fn shadow_violations_become_failed_rules() {
        let c = kbot_console::parse("kbot-shadow: active rules=...\nkbot-shadow: VIOLATION rule=wait-in-srcu pid=9 hooks=srcu-enter,pin,wait-start\nCall Trace:\n fanotify_handle_event+0x1/0x2\n");
        let c = kbot_console::Console { started: true, done: true, ..c };
        let t = shadow_tests(&c, false);
        assert_eq!(t.len(), 6);
        assert_eq!(t[0].name, "shadow/wait-in-srcu");
        assert_eq!(t[0].result, Outcome::Fail);
        assert!(
            t[0].detail.contains("srcu-enter -> pin -> wait-start") && t[0].detail.contains("fanotify_handle_event"),
            "{}",
            t[0].detail
        );
        assert!(t[1..].iter().all(|x| x.result == Outcome::Pass));
        assert_eq!(kind_of("shadow/wait-in-srcu", Outcome::Fail), RegressionKind::Divergence);
    }

    /// The boot of a patch whose initcall oopses: the shadow component started, the kernel
    /// never reached user space. No rule passed: none of what it watches ran.
    #[test]
    fn shadow_rules_of_a_kernel_that_never_reached_user_space_are_skipped() {
        let log = include_str!("../../kbot-console/testdata/oops-x86-null-initcall.log");
        let c = kbot_console::parse(log);
        assert!(c.shadow && !c.started && c.violations.is_empty());
        let t = shadow_tests(&c, false);
        assert_eq!(t.len(), kbot_refcore::rules::Rule::ALL.len());
        for x in &t {
            assert_eq!(x.result, Outcome::Skip, "{x:?}");
            assert_eq!(x.detail, "not run: the kernel did not reach user space");
        }
        assert!(t.iter().all(|x| verdict(&t, &x.name) == Verdict::Unknown));
        // A violation still fails whatever came after it; a stopped agent or a component that
        // never started gives no pass either.
        let v = kbot_console::parse(
            "kbot-shadow: active rules=x\nKTAP version 1\nkbot-shadow: VIOLATION rule=wait-in-srcu pid=9 hooks=pin\n",
        );
        let t = shadow_tests(&v, true);
        assert_eq!(t[0].result, Outcome::Fail);
        assert!(t[1..].iter().all(|x| x.result == Outcome::Skip && x.detail.contains("did not finish in time")));
        let off = kbot_console::parse("KTAP version 1\n1..0\n# kbot-agent done in 1 ms\n");
        assert!(shadow_tests(&off, false)
            .iter()
            .all(|x| x.result == Outcome::Skip && x.detail.contains("did not start")));
        let full =
            kbot_console::parse("kbot-shadow: active rules=x\nKTAP version 1\n1..0\n# kbot-agent done in 1 ms\n");
        assert!(shadow_tests(&full, false).iter().all(|x| x.result == Outcome::Pass));
    }

    #[test]
    fn a_splat_the_base_had_is_not_new_though_its_numbers_differ() {
        let base = kbot_console::parse("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009\n");
        let tip = kbot_console::parse(
            "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b\nkernel BUG at fs/notify/mark.c:120!\n",
        );
        let e = evidence(&t("boot", "fail"), &tip, &base);
        assert!(!e.contains("Attempted to kill init"), "{e}");
        assert!(e.contains("kernel BUG at fs/notify/mark.c:120!"), "{e}");
        assert!(base_had_splat(&base, "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000001"));
    }

    #[test]
    fn verdicts() {
        let r = [t("a", "pass"), t("b", "hang"), t("c", "skip")];
        assert_eq!(verdict(&r, "a"), Verdict::Good);
        assert_eq!(verdict(&r, "b"), Verdict::Bad);
        assert_eq!(verdict(&r, "c"), Verdict::Unknown);
        assert_eq!(verdict(&r, "zz"), Verdict::Unknown);
    }

    #[test]
    fn evidence_quotes_blocked_notify_stacks_once() {
        let log = "task:kworker/u4:1 state:D stack:0 pid:23 tgid:23 ppid:2 flags:0x0\nCall Trace:\n <TASK>\n __schedule+0x1/0x2\n schedule+0x1/0x2\n __synchronize_srcu+0x1/0x2\n fsnotify_mark_destroy_workfn+0x1/0x2\n </TASK>\ntask:kworker/u4:1 state:D stack:0 pid:23 tgid:23 ppid:2 flags:0x0\nCall Trace:\n __schedule+0x1/0x2\n schedule+0x1/0x2\n __synchronize_srcu+0x1/0x2\n fsnotify_mark_destroy_workfn+0x1/0x2\ntask:sh state:D stack:0 pid:9 tgid:9 ppid:1 flags:0x0\nCall Trace:\n schedule+0x1/0x2\n pipe_read+0x1/0x2\n";
        let tip = kbot_console::parse(log);
        let e = evidence(&t("x", "hang"), &tip, &Console::default());
        assert_eq!(e.matches("__synchronize_srcu <- fsnotify_mark_destroy_workfn").count(), 1, "{e}");
        assert!(e.contains("  kworker/u4:1 (pid 23): __synchronize_srcu"), "one task keeps its pid: {e}");
        assert!(!e.contains("pipe_read"));
    }

    /// The watchdog dumps the blocked tasks once per hang, so one boot's console lists the same
    /// stacks twice, under other pids on arm64: each distinct stack is shown once, with the
    /// names of its tasks and how many there were; the notification core's come first.
    #[test]
    fn identical_stacks_are_shown_once_with_a_count() {
        let task = |name: &str, pid: u32, frames: &[&str]| {
            let mut s = format!("task:{name} state:D stack:0 pid:{pid} tgid:{pid} ppid:2 flags:0x0\nCall Trace:\n");
            for f in frames {
                s += &format!(" {f}+0x1/0x2\n");
            }
            s
        };
        let srcu = ["__schedule", "schedule", "__synchronize_srcu", "fsnotify_mark_destroy_workfn"];
        let close = ["schedule", "fsnotify_wait_marks_destroyed", "fsnotify_destroy_group", "inotify_release"];
        let pipe = ["schedule", "pipe_read"];
        let log = [
            task("sh", 9, &pipe),
            task("kworker/u9:0", 23, &srcu),
            task("init", 45, &close),
            task("kworker/u10:1", 29, &srcu),
            // The second dump: the same tasks again, one with another stack now.
            task("kworker/u9:0", 23, &srcu),
            task("init", 45, &close),
            task("kworker/u10:1", 29, &srcu),
            task("kworker/u9:1", 32, &srcu),
        ]
        .concat();
        let c = kbot_console::parse(&log);
        assert_eq!(
            blocked_stacks(&c, 5),
            [
                "  kworker/u9:0, kworker/u10:1, kworker/u9:1 (x3): __synchronize_srcu <- fsnotify_mark_destroy_workfn",
                "  init (pid 45): fsnotify_wait_marks_destroyed <- fsnotify_destroy_group <- inotify_release",
                "  sh (pid 9): pipe_read",
            ]
        );
        let e = evidence(&t("inotify_close_with_pending_perm", "hang"), &c, &Console::default());
        assert_eq!(e.matches(" <- ").count(), 3, "each stack once, only the notification core's: {e}");
        assert!(e.contains("(x3): __synchronize_srcu"), "{e}");
        // The same task name twice (two pids, one stack) is named once and counted twice.
        let twice = kbot_console::parse(&[task("init", 3, &close), task("init", 4, &close)].concat());
        assert_eq!(
            blocked_stacks(&twice, 0),
            ["  init (x2): fsnotify_wait_marks_destroyed <- fsnotify_destroy_group <- inotify_release"]
        );
    }

    #[test]
    fn a_splat_seen_twice_on_the_tip_is_quoted_once() {
        let tip = kbot_console::parse(
            "kernel BUG at fs/notify/mark.c:120!\nline a\n\nkernel BUG at fs/notify/mark.c:121!\nline b\n",
        );
        let e = evidence(&t("boot", "fail"), &tip, &Console::default());
        assert!(e.contains("mark.c:120!") && !e.contains("mark.c:121!") && !e.contains("line b"), "{e}");
    }

    #[test]
    fn ltp_evidence_quotes_the_tests_own_lines() {
        let log = "KTAP version 1\n1..2\n# ltp/fanotify01| tst_test.c:2048: TINFO: LTP version: 20260529\n# ltp/fanotify01| fanotify01.c:123: TFAIL: got event mask 0x20\n# ltp/fanotify01| fanotify01.c:140: TPASS: ok\n# ltp/fanotify01: failed (time_ms=5)\nnot ok 1 ltp/fanotify01\n# ltp/fanotify07| tst_test.c:1876: TINFO: Overall timeout per run is 0h 00m 30s\n# ltp/fanotify07| fanotify07.c:90: TINFO: started\nnot ok 2 ltp/fanotify07 # TIMEOUT task fanotify07 (pid 9) in D state for 5000 ms\n";
        let c = kbot_console::parse(log);
        let base = kbot_console::parse("");
        let t = |name: &str| tests_of(&c, &[], false).into_iter().find(|t| t.name == name).unwrap();
        let e = evidence(&t("ltp/fanotify01"), &c, &base);
        assert!(e.contains("the test's own lines:\n  fanotify01.c:123: TFAIL: got event mask 0x20"), "{e}");
        assert!(!e.contains("TPASS") && !e.contains("TINFO"), "{e}");
        // A hang has no verdict line: the last lines show where it stopped.
        let e = evidence(&t("ltp/fanotify07"), &c, &base);
        assert!(e.contains("hang") && e.contains("fanotify07.c:90: TINFO: started"), "{e}");
    }
}
