//! One finding per root cause: the regressions of a result grouped by their first bad patch,
//! over all arches. The JSON keeps every regression as it is (the contract); this is a view
//! computed from it for the report, the mail, the pull-request comment and the run page.
//!
//! A [`Finding`] names every test or rule that breaks at one patch and on which arches, the
//! strongest evidence first (a build break; an in-kernel shadow record says *why*; a hang says
//! *what the user sees*; a divergence gives the minimal scenario; LTP's tests quote their own
//! lines), and the blocked-task stacks of all of them, each distinct stack once with the names
//! of its tasks and how many there were. Regressions without a first bad patch (inconclusive
//! bisection) are one finding of their own, after the others.
//!
//! Everything is read from the regressions' `evidence` text as kbot-compare writes it: a first
//! block with the test's account, then blocks separated by blank lines (`the test's own
//! lines:`, `blocked tasks (sysrq-w):`, new splats with their excerpts, compiler errors).

use crate::{CheckResult, FirstBad, Regression, RegressionKind, TestFamily};
use serde::Serialize;

/// Lines of one arch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchText {
    pub arch: String,
    pub lines: Vec<String>,
}

/// One test or rule that breaks at the finding's patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Symptom {
    pub test: String,
    pub kind: RegressionKind,
    /// The arches it breaks on, in the result's order.
    pub arches: Vec<String>,
    /// How its first bad patch was found, each distinct text once ("bisected in 3 steps").
    pub bisect: Vec<String>,
    /// The test's account (the evidence's first block), per arch.
    pub accounts: Vec<ArchText>,
    /// What the test said itself (LTP's TFAIL/TBROK lines, or a hung test's last lines),
    /// from the first arch that has them.
    pub own_lines: Vec<String>,
}

/// One distinct blocked-task stack of a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stack {
    /// Task names, each once, in the order first seen.
    pub tasks: Vec<String>,
    /// How many tasks were blocked with it (over all arches; a task dumped twice counts once).
    pub count: usize,
    /// The pid when it is one task.
    pub pid: Option<u32>,
    pub arches: Vec<String>,
    /// The frames, innermost first, `a <- b <- c`.
    pub frames: String,
}

/// A block of evidence that is neither account nor stacks: a new splat with its excerpt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    pub arches: Vec<String>,
    pub lines: Vec<String>,
}

/// The regressions that share a first bad patch (or all that have none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `None`: the regressions whose first bad patch was not determined.
    pub first_bad: Option<FirstBad>,
    /// The arches any of its symptoms breaks on.
    pub arches: Vec<String>,
    /// How the first bad patch was found, each distinct text once.
    pub bisect: Vec<String>,
    /// Every test and rule, the strongest evidence first.
    pub symptoms: Vec<Symptom>,
    /// The one line a short report quotes: the strongest symptom's account.
    pub headline: String,
    /// Blocked-task stacks, each distinct one once; the notification core's first.
    pub stacks: Vec<Stack>,
    /// New splats and other evidence, each once.
    pub blocks: Vec<Block>,
    /// How many regressions of the JSON it stands for (symptoms x arches).
    pub regressions: usize,
}

/// How strong a symptom's evidence is, strongest (lowest) first: a build break (nothing else
/// ran), an in-kernel shadow record (why), a hang (what the user sees), a divergence (the
/// minimal scenario), LTP's tests (their own lines), other failures.
pub fn strength(test: &str, kind: RegressionKind) -> u8 {
    match (kind, TestFamily::of(test)) {
        (RegressionKind::Build, _) => 0,
        (_, TestFamily::Shadow) => 1,
        (RegressionKind::Hang, TestFamily::Own | TestFamily::Scenario) => 2,
        (_, TestFamily::Scenario) => 3,
        (_, TestFamily::Ltp) => 4,
        _ => 5,
    }
}

/// The evidence text of a regression, taken apart.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parts {
    pub account: Vec<String>,
    pub own_lines: Vec<String>,
    /// `(who, frames)` of each line under `blocked tasks (sysrq-w):`.
    pub stacks: Vec<(String, String)>,
    pub blocks: Vec<Vec<String>>,
}

/// Takes an evidence text apart into its blocks.
pub fn parts(evidence: &str) -> Parts {
    let mut p = Parts::default();
    let mut blocks: Vec<Vec<&str>> = vec![Vec::new()];
    for l in evidence.lines() {
        if l.trim().is_empty() {
            if !blocks.last().is_some_and(|b| b.is_empty()) {
                blocks.push(Vec::new());
            }
        } else if let Some(b) = blocks.last_mut() {
            b.push(l);
        }
    }
    blocks.retain(|b| !b.is_empty());
    for (i, b) in blocks.iter().enumerate() {
        match b[0] {
            "blocked tasks (sysrq-w):" => {
                for l in &b[1..] {
                    let l = l.trim_start();
                    match l.split_once(": ") {
                        Some((who, frames)) => p.stacks.push((who.to_string(), frames.to_string())),
                        None => p.stacks.push((String::new(), l.to_string())),
                    }
                }
            }
            "the test's own lines:" => p.own_lines.extend(b[1..].iter().map(|l| l.trim_start().to_string())),
            _ if i == 0 => p.account = b.iter().map(|l| l.to_string()).collect(),
            _ => p.blocks.push(b.iter().map(|l| l.to_string()).collect()),
        }
    }
    p
}

/// Who is blocked with a stack: `name (pid N)` (one task) or `a, b (xN)` (N tasks of these
/// names), as (names, pid, count).
fn who(s: &str) -> (Vec<String>, Option<u32>, usize) {
    if let Some((name, rest)) = s.rsplit_once(" (pid ") {
        if let Some(pid) = rest.strip_suffix(')').and_then(|p| p.parse().ok()) {
            return (vec![name.to_string()], Some(pid), 1);
        }
    }
    if let Some((names, rest)) = s.rsplit_once(" (x") {
        if let Some(n) = rest.strip_suffix(')').and_then(|n| n.parse().ok()) {
            return (names.split(", ").map(String::from).collect(), None, n);
        }
    }
    (vec![s.to_string()], None, 1)
}

fn add<T: PartialEq + Clone>(v: &mut Vec<T>, x: &T) {
    if !v.contains(x) {
        v.push(x.clone());
    }
}

/// The findings of a result: one per first bad patch (by patch index, over all arches), then
/// one for the regressions without one. Empty when there is no regression.
pub fn findings(r: &CheckResult) -> Vec<Finding> {
    // Group keys in order: patch index ascending, inconclusive (None) last.
    let mut keys: Vec<Option<u32>> = Vec::new();
    for g in r.arches.iter().flat_map(|a| &a.regressions) {
        add(&mut keys, &g.first_bad.as_ref().map(|f| f.index));
    }
    keys.sort_by_key(|k| k.unwrap_or(u32::MAX));
    keys.into_iter()
        .map(|key| {
            let regs: Vec<(&str, &Regression)> = r
                .arches
                .iter()
                .flat_map(|a| a.regressions.iter().map(move |g| (a.arch.as_str(), g)))
                .filter(|(_, g)| g.first_bad.as_ref().map(|f| f.index) == key)
                .collect();
            finding(&regs)
        })
        .collect()
}

/// Per stack: its tasks, and per arch the (task, pid) pairs seen and the largest `(xN)`.
struct StackAcc {
    frames: String,
    tasks: Vec<String>,
    arches: Vec<PerArch>,
}

struct PerArch {
    arch: String,
    pids: Vec<(String, u32)>,
    most: usize,
}

fn finding(regs: &[(&str, &Regression)]) -> Finding {
    let first_bad = regs.iter().find_map(|(_, g)| g.first_bad.clone());
    let mut arches: Vec<String> = Vec::new();
    let mut bisect: Vec<String> = Vec::new();
    let mut symptoms: Vec<Symptom> = Vec::new();
    let mut stacks: Vec<StackAcc> = Vec::new();
    let mut blocks: Vec<Block> = Vec::new();
    // The strongest symptoms' stacks first: stacks are collected in the symptoms' order.
    let mut order: Vec<usize> = (0..regs.len()).collect();
    order.sort_by_key(|&i| strength(&regs[i].1.test, regs[i].1.kind));
    for i in order {
        let (arch, g) = regs[i];
        let arch = arch.to_string();
        add(&mut arches, &arch);
        if !g.bisect.is_empty() {
            add(&mut bisect, &g.bisect);
        }
        let p = parts(&g.evidence);
        let s = match symptoms.iter_mut().find(|s| s.test == g.test) {
            Some(s) => s,
            None => {
                symptoms.push(Symptom {
                    test: g.test.clone(),
                    kind: g.kind,
                    arches: Vec::new(),
                    bisect: Vec::new(),
                    accounts: Vec::new(),
                    own_lines: Vec::new(),
                });
                symptoms.last_mut().expect("just pushed")
            }
        };
        add(&mut s.arches, &arch);
        if !g.bisect.is_empty() {
            add(&mut s.bisect, &g.bisect);
        }
        if !p.account.is_empty() {
            s.accounts.push(ArchText { arch: arch.clone(), lines: p.account });
        }
        if s.own_lines.is_empty() {
            s.own_lines = p.own_lines;
        }
        for (w, frames) in &p.stacks {
            let (names, pid, n) = who(w);
            let acc = match stacks.iter_mut().find(|x| x.frames == *frames) {
                Some(x) => x,
                None => {
                    stacks.push(StackAcc { frames: frames.clone(), tasks: Vec::new(), arches: Vec::new() });
                    stacks.last_mut().expect("just pushed")
                }
            };
            for t in &names {
                add(&mut acc.tasks, t);
            }
            let per = match acc.arches.iter_mut().find(|x| x.arch == arch) {
                Some(x) => x,
                None => {
                    acc.arches.push(PerArch { arch: arch.clone(), pids: Vec::new(), most: 0 });
                    acc.arches.last_mut().expect("just pushed")
                }
            };
            match pid {
                Some(pid) => add(&mut per.pids, &(names[0].clone(), pid)),
                None => per.most = per.most.max(n),
            }
        }
        for b in p.blocks {
            match blocks.iter_mut().find(|x| x.lines == b) {
                Some(x) => add(&mut x.arches, &arch),
                None => blocks.push(Block { arches: vec![arch.clone()], lines: b }),
            }
        }
    }
    // Arches in the result's order, not the symptoms'.
    let arch_order: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for (a, _) in regs {
            add(&mut v, a);
        }
        v
    };
    let sort = |v: &mut Vec<String>| v.sort_by_key(|a| arch_order.iter().position(|x| x == a));
    sort(&mut arches);
    for s in &mut symptoms {
        sort(&mut s.arches);
        s.accounts.sort_by_key(|t| arch_order.iter().position(|x| *x == t.arch));
    }
    for b in &mut blocks {
        sort(&mut b.arches);
    }
    let headline = symptoms.first().map(headline).unwrap_or_default();
    let stacks = stacks
        .into_iter()
        .map(|x| {
            let mut a: Vec<String> = x.arches.iter().map(|p| p.arch.clone()).collect();
            sort(&mut a);
            let count = x.arches.iter().map(|p| p.pids.len().max(p.most)).sum();
            let pids: Vec<u32> = x.arches.iter().flat_map(|p| p.pids.iter().map(|(_, pid)| *pid)).collect();
            Stack {
                count,
                pid: if let (1, [pid]) = (count, pids.as_slice()) { Some(*pid) } else { None },
                tasks: x.tasks,
                arches: a,
                frames: x.frames,
            }
        })
        .collect();
    Finding { first_bad, arches, bisect, symptoms, headline, stacks, blocks, regressions: regs.len() }
}

/// The one line that says most about a symptom: a build's first compiler error, else the
/// first line of the test's account (on the first arch).
pub fn headline(s: &Symptom) -> String {
    let lines = s.accounts.first().map(|a| a.lines.as_slice()).unwrap_or_default();
    let line = if s.kind == RegressionKind::Build {
        lines.iter().find(|l| l.starts_with(">> ")).or(lines.first())
    } else {
        lines.first()
    };
    line.cloned().unwrap_or_else(|| format!("{}: {}", s.test, s.kind))
}

impl Finding {
    /// The evidence in brief, at most `max` lines: the strongest symptom's account on its
    /// first arch and its own lines, then every stack once (`tasks (xN): frames`).
    pub fn brief(&self, max: usize) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        if let Some(y) = self.symptoms.first() {
            v.extend(y.accounts.first().map(|a| a.lines.clone()).unwrap_or_default());
            if !y.own_lines.is_empty() {
                v.push(String::new());
                v.push("the test's own lines:".into());
                v.extend(y.own_lines.iter().map(|l| format!("  {l}")));
            }
        }
        if !self.stacks.is_empty() {
            v.push(String::new());
            v.push("blocked tasks (sysrq-w), each stack once:".into());
            v.extend(self.stacks.iter().map(|k| format!("  {}", k.line())));
        }
        v.truncate(max);
        v
    }
}

impl Stack {
    /// `tasks (xN): frames`, or `task: frames` for one task.
    pub fn line(&self) -> String {
        if self.count > 1 {
            format!("{} (x{}): {}", self.tasks.join(", "), self.count, self.frames)
        } else if let Some(pid) = self.pid {
            format!("{} (pid {pid}): {}", self.tasks.join(", "), self.frames)
        } else {
            format!("{}: {}", self.tasks.join(", "), self.frames)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ArchResult, SeriesInfo};

    fn reg(test: &str, kind: RegressionKind, first_bad: Option<u32>, evidence: &str) -> Regression {
        Regression {
            test: test.into(),
            kind,
            first_bad: first_bad.map(|i| FirstBad {
                index: i,
                subject: format!("patch {i}"),
                message_id: format!("p{i}@x"),
                commit: format!("c{i}"),
            }),
            evidence: evidence.into(),
            bisect: if first_bad.is_some() { "bisected in 3 steps".into() } else { "inconclusive: flaky".into() },
        }
    }

    fn result(arches: &[(&str, Vec<Regression>)]) -> CheckResult {
        let mut r = CheckResult::new(SeriesInfo::default());
        for (a, regs) in arches {
            r.arches.push(ArchResult { arch: a.to_string(), regressions: regs.clone(), ..Default::default() });
        }
        r
    }

    #[test]
    fn evidence_text_comes_apart_into_its_blocks() {
        let e = "t: hang: blocked\nmore\n\nblocked tasks (sysrq-w):\n  init (pid 3): a <- b\n  kworker/u4:0, kworker/u4:1 (x2): c <- d\n\nthe test's own lines:\n  x.c:1: TFAIL: no\n\nkernel BUG at x.c:1!\n  line";
        let p = parts(e);
        assert_eq!(p.account, ["t: hang: blocked", "more"]);
        assert_eq!(
            p.stacks,
            [
                ("init (pid 3)".to_string(), "a <- b".to_string()),
                ("kworker/u4:0, kworker/u4:1 (x2)".into(), "c <- d".into())
            ]
        );
        assert_eq!(p.own_lines, ["x.c:1: TFAIL: no"]);
        assert_eq!(p.blocks, [vec!["kernel BUG at x.c:1!".to_string(), "  line".into()]]);
        assert_eq!(who("kworker/u4:0 (pid 10)"), (vec!["kworker/u4:0".to_string()], Some(10), 1));
        assert_eq!(who("a, b (x3)"), (vec!["a".to_string(), "b".into()], None, 3));
        assert_eq!(parts(""), Parts::default());
    }

    #[test]
    fn one_finding_per_first_bad_patch_strongest_first_inconclusive_last() {
        let stack = "\n\nblocked tasks (sysrq-w):\n  init (pid 3): close <- release\n  init (pid 3): close <- release\n  kworker/u4:0 (pid 9): srcu <- work";
        let r = result(&[
            (
                "x86_64",
                vec![
                    reg("ltp/fanotify07", RegressionKind::Hang, Some(3), "ltp/fanotify07: hang: D state"),
                    reg("close_hang", RegressionKind::Hang, Some(2), &format!("close_hang: hang: 3000 ms{stack}")),
                    reg("scenario/s", RegressionKind::Divergence, Some(2), &format!("scenario/s: fail: step 7{stack}")),
                    reg("shadow/wait-in-srcu", RegressionKind::Divergence, Some(2), "shadow/wait-in-srcu: fail: why"),
                    reg("perm", RegressionKind::Fail, None, "perm: fail: denied"),
                ],
            ),
            (
                "arm64",
                vec![
                    reg("close_hang", RegressionKind::Hang, Some(2), "close_hang: hang: 3050 ms\n\nblocked tasks (sysrq-w):\n  kworker/u9:0, kworker/u9:1 (x2): srcu <- work"),
                    reg("shadow/wait-in-srcu", RegressionKind::Divergence, Some(2), "shadow/wait-in-srcu: fail: why arm"),
                ],
            ),
        ]);
        let f = findings(&r);
        assert_eq!(f.len(), 3);
        assert_eq!(
            f.iter().map(|x| x.first_bad.as_ref().map(|b| b.index)).collect::<Vec<_>>(),
            [Some(2), Some(3), None]
        );
        let two = &f[0];
        assert_eq!(two.arches, ["x86_64", "arm64"]);
        assert_eq!(two.regressions, 5);
        assert_eq!(
            two.symptoms.iter().map(|s| format!("{} {}", s.test, s.arches.join(","))).collect::<Vec<_>>(),
            ["shadow/wait-in-srcu x86_64,arm64", "close_hang x86_64,arm64", "scenario/s x86_64"]
        );
        assert_eq!(two.headline, "shadow/wait-in-srcu: fail: why");
        assert_eq!(
            two.symptoms[0].accounts[1],
            ArchText { arch: "arm64".into(), lines: vec!["shadow/wait-in-srcu: fail: why arm".into()] }
        );
        // Each stack once: the same dump quoted by two tests and listed twice counts its task once.
        assert_eq!(
            two.stacks,
            [
                Stack {
                    tasks: vec!["init".into()],
                    count: 1,
                    pid: Some(3),
                    arches: vec!["x86_64".into()],
                    frames: "close <- release".into()
                },
                Stack {
                    tasks: vec!["kworker/u4:0".into(), "kworker/u9:0".into(), "kworker/u9:1".into()],
                    count: 3,
                    pid: None,
                    arches: vec!["x86_64".into(), "arm64".into()],
                    frames: "srcu <- work".into()
                },
            ]
        );
        assert_eq!(two.stacks[1].line(), "kworker/u4:0, kworker/u9:0, kworker/u9:1 (x3): srcu <- work");
        assert_eq!(two.stacks[0].line(), "init (pid 3): close <- release");
        assert_eq!(f[2].symptoms[0].test, "perm");
        assert_eq!(f[2].bisect, ["inconclusive: flaky"]);
        assert!(findings(&result(&[("x86_64", vec![])])).is_empty());
    }

    #[test]
    fn strength_orders_build_shadow_hang_scenario_ltp_fail() {
        use RegressionKind::*;
        let order = [
            strength("build", Build),
            strength("shadow/x", Divergence),
            strength("close", Hang),
            strength("scenario/x", Divergence),
            strength("ltp/fanotify07", Hang),
            strength("ltp/fanotify01", Fail),
            strength("perm", Fail),
        ];
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
        let s = Symptom {
            test: "build".into(),
            kind: Build,
            arches: vec![],
            bisect: vec![],
            accounts: vec![ArchText {
                arch: "arm64".into(),
                lines: vec!["build of arm64 failed:".into(), ">> x.c:1: error: no".into()],
            }],
            own_lines: vec![],
        };
        assert_eq!(headline(&s), ">> x.c:1: error: no");
    }
}
