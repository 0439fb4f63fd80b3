//! Bisection inside a patch series. Prefix 0 is the base (known good), prefix `n` the tip
//! (known bad). Every step tests one prefix for all the checks still being bisected, so one
//! build and boot serves them all; results are kept per prefix. A step whose verdict is
//! `Unknown` (the VM did not boot, the agent did not report) is rerun.
//!
//! A single run can be wrong both ways: a watchdog can fire on a slow machine (a false bad),
//! and a race the kernel has can go unhit for one boot (a false good: LTP's fanotify07 and the
//! seed's close tests do pass now and then on a kernel that stalls). So before a patch is named
//! both ends are settled: the first bad prefix is rerun (like 0-day, a result counts when it
//! reproduces) and so is the last good one (when it is not the base). A prefix is settled when
//! two runs agree; when the first two disagree a third decides. A last good prefix that turns
//! out bad moves the search below it.

use serde::Serialize;
use std::collections::BTreeMap;

/// A check's verdict at one step: the result vocabulary's.
pub use kbot_report::StepReason;
pub use kbot_report::Verdict;

/// Runs the checks on the series applied up to `prefix` patches.
pub trait Tester {
    fn test(&mut self, prefix: usize, checks: &[String]) -> BTreeMap<String, Verdict>;
}

impl<F: FnMut(usize, &[String]) -> BTreeMap<String, Verdict>> Tester for F {
    fn test(&mut self, prefix: usize, checks: &[String]) -> BTreeMap<String, Verdict> {
        self(prefix, checks)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub prefix: usize,
    pub verdicts: BTreeMap<String, Verdict>,
    pub reason: StepReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Found {
    /// The first prefix where the check is bad: patch number `first_bad` broke it.
    FirstBad { first_bad: usize },
    /// The culprit lies in (good, bad] but could not be pinned down.
    Inconclusive { good: usize, bad: usize, why: String },
    /// The tip, blamed by bisection (every earlier prefix good), was good when tested again
    /// (with `confirm_tip`): the failure does not reproduce, so no patch is blamed.
    Flaky { prefix: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bisection {
    pub found: BTreeMap<String, Found>,
    pub steps: Vec<Step>,
}

pub struct Options {
    /// How often a step with an `Unknown` verdict is rerun.
    pub retries: u32,
    /// Settle both ends (the first bad prefix, the last good one above the base) by reruns
    /// before naming a patch.
    pub confirm: bool,
    /// Confirm it even when it is the whole series (the tip): for callers that did not rerun
    /// the tip before bisecting. The rerun then also tells a flaky failure from a regression.
    pub confirm_tip: bool,
    /// Checks whose verdict is a direct observation, not a timing (an in-kernel rule's record
    /// of what the kernel did): named at their first bad prefix without reruns. A rerun guards
    /// against a watchdog that fired on a slow machine or a race that went unhit; a record of
    /// a path every permission wait takes can be neither.
    pub observed: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { retries: 1, confirm: true, confirm_tip: false, observed: Vec::new() }
    }
}

struct Runner<'a, T: Tester> {
    tester: &'a mut T,
    checks: Vec<String>,
    /// Every verdict seen, per prefix and check (Unknown left out).
    samples: BTreeMap<usize, BTreeMap<String, Vec<Verdict>>>,
    steps: Vec<Step>,
    retries: u32,
}

impl<T: Tester> Runner<'_, T> {
    fn run(&mut self, prefix: usize, reason: StepReason, checks: &[String]) {
        let v = self.tester.test(prefix, checks);
        let at = self.samples.entry(prefix).or_default();
        for (k, x) in &v {
            if *x != Verdict::Unknown {
                at.entry(k.clone()).or_default().push(*x);
            }
        }
        self.steps.push(Step { prefix, verdicts: v, reason });
    }

    fn counts(&self, prefix: usize, check: &str) -> (usize, usize) {
        let s = self.samples.get(&prefix).and_then(|m| m.get(check)).map_or(&[][..], |v| v.as_slice());
        (s.iter().filter(|x| **x == Verdict::Good).count(), s.iter().filter(|x| **x == Verdict::Bad).count())
    }

    /// The majority of the samples; Unknown when there are none or they tie.
    fn majority(&self, prefix: usize, check: &str) -> Verdict {
        match self.counts(prefix, check) {
            (g, b) if g > b => Verdict::Good,
            (g, b) if b > g => Verdict::Bad,
            _ => Verdict::Unknown,
        }
    }

    /// The verdict of `check` at `prefix` for the search: tested (and retried) when not known
    /// yet, one more run when what is known ties.
    fn verdict(&mut self, prefix: usize, check: &str) -> Verdict {
        let checks = self.checks.clone();
        let mut tries = 0;
        while self.majority(prefix, check) == Verdict::Unknown && tries <= self.retries {
            let first = tries == 0 && self.counts(prefix, check) == (0, 0);
            self.run(prefix, if first { StepReason::Bisect } else { StepReason::Retry }, &checks);
            tries += 1;
        }
        self.majority(prefix, check)
    }

    /// The verdict at `prefix` when two runs of `check` agree and outnumber the others.
    fn settled(&self, prefix: usize, check: &str) -> Option<Verdict> {
        match self.counts(prefix, check) {
            (g, b) if g >= 2 && g > b => Some(Verdict::Good),
            (g, b) if b >= 2 && b > g => Some(Verdict::Bad),
            _ => None,
        }
    }

    /// Reruns `prefix` (for `checks`) until two runs of `check` agree, at most three verdicts
    /// (plus retries for runs without one); Unknown if they never do.
    fn settle(&mut self, prefix: usize, check: &str, reason: StepReason, checks: &[String]) -> Verdict {
        let mut unknown = 0;
        loop {
            if let Some(v) = self.settled(prefix, check) {
                return v;
            }
            let (g, b) = self.counts(prefix, check);
            if g + b >= 3 || unknown > self.retries {
                return Verdict::Unknown;
            }
            self.run(prefix, reason, checks);
            if self.counts(prefix, check) == (g, b) {
                unknown += 1;
            }
        }
    }

    /// The lowest prefix above `above` whose verdict for `check` is bad (`n`, the tip, when
    /// none was tested).
    fn first_bad_above(&self, above: usize, n: usize, check: &str) -> usize {
        (above + 1..n).find(|p| self.majority(*p, check) == Verdict::Bad).unwrap_or(n)
    }

    /// "failed in 1 of 3 runs", for a report.
    fn tally(&self, prefix: usize, check: &str) -> String {
        let (g, b) = self.counts(prefix, check);
        format!("failed in {b} of {} runs", g + b)
    }

    /// Why [`Runner::settle`] could not settle `prefix`: its runs kept disagreeing, or they
    /// gave no verdict (the kernel did not boot, the agent did not report).
    fn unsettled(&self, prefix: usize, check: &str) -> String {
        let (g, b) = self.counts(prefix, check);
        if g + b >= 2 {
            format!("patch {prefix} {}: flaky", self.tally(prefix, check))
        } else {
            format!("no verdict for patch prefix {prefix} on its reruns ({})", self.tally(prefix, check))
        }
    }

    /// An inconclusive result between the highest prefix at or below `good` that two runs
    /// showed good (a single pass may be a race not hit) and the lowest at or above `bad` that
    /// two runs showed bad (the tip when none).
    fn inconclusive(&self, good: usize, bad: usize, n: usize, check: &str, why: String) -> Found {
        let good = (1..=good).rev().find(|p| self.settled(*p, check) == Some(Verdict::Good)).unwrap_or(0);
        let bad = (bad..n).find(|p| self.settled(*p, check) == Some(Verdict::Bad)).unwrap_or(n);
        Found::Inconclusive { good, bad, why }
    }

    /// The highest prefix below `below` whose verdict for `check` is good (0, the base, when
    /// none was tested).
    fn last_good_below(&self, below: usize, check: &str) -> usize {
        (1..below).rev().find(|p| self.majority(*p, check) == Verdict::Good).unwrap_or(0)
    }
}

/// The prefix [`bisect`] tests first over `n` patches (None: one patch, nothing to bisect):
/// a lab can build it ahead while the tip still boots.
pub fn first_probe(n: usize) -> Option<usize> {
    (n > 1).then_some(n / 2)
}

/// Bisects each of `checks` over prefixes 0..=n (0 good, n bad for every check).
pub fn bisect<T: Tester>(n: usize, checks: &[String], tester: &mut T, opts: &Options) -> Bisection {
    // The tip failed once before bisection (the caller's run): with `confirm_tip` that run
    // counts, and two more passes are needed to outvote it.
    let tip = checks.iter().map(|c| (c.clone(), vec![Verdict::Bad])).collect();
    let mut r = Runner {
        tester,
        checks: checks.to_vec(),
        samples: BTreeMap::from([(n, tip)]),
        steps: Vec::new(),
        retries: opts.retries,
    };
    // Reruns serve every check that needs one at that prefix: they run the checks that can
    // need one.
    let rerun: Vec<String> = checks.iter().filter(|c| !opts.observed.contains(c)).cloned().collect();
    let mut found = BTreeMap::new();
    for check in checks {
        let f = bisect_one(&mut r, n, check, &rerun, opts);
        found.insert(check.clone(), f);
    }
    Bisection { found, steps: r.steps }
}

fn bisect_one<T: Tester>(r: &mut Runner<'_, T>, n: usize, check: &str, rerun: &[String], opts: &Options) -> Found {
    let settle = opts.confirm && !opts.observed.iter().any(|c| c == check);
    let (mut lo, mut hi) = (0usize, n);
    // Every round settles one more prefix or ends, so n + 1 rounds always suffice.
    for _ in 0..=n {
        while hi - lo > 1 {
            // The first probe is [`first_probe`]'s.
            let mid = lo + (hi - lo) / 2;
            match r.verdict(mid, check) {
                Verdict::Good => lo = mid,
                Verdict::Bad => hi = mid,
                Verdict::Unknown => {
                    let why = format!("no verdict for patch prefix {mid} after {} tries", opts.retries + 1);
                    return r.inconclusive(lo, hi, n, check, why);
                }
            }
        }
        if !settle {
            return Found::FirstBad { first_bad: hi };
        }
        if hi < n || opts.confirm_tip {
            match r.settle(hi, check, StepReason::Confirm, rerun) {
                Verdict::Bad => {}
                // The whole series did not fail again: nothing reproduces.
                Verdict::Good if hi == n => return Found::Flaky { prefix: hi },
                // Its failure was the fluke: the culprit is above it.
                Verdict::Good => {
                    lo = hi;
                    hi = r.first_bad_above(lo, n, check);
                    continue;
                }
                Verdict::Unknown => {
                    let why = r.unsettled(hi, check);
                    return r.inconclusive(lo, n, n, check, why);
                }
            }
        }
        if lo == 0 {
            return Found::FirstBad { first_bad: hi };
        }
        match r.settle(lo, check, StepReason::Verify, rerun) {
            Verdict::Good => return Found::FirstBad { first_bad: hi },
            // Its pass was a race not hit: the culprit is at or below it.
            Verdict::Bad => {
                hi = lo;
                lo = r.last_good_below(hi, check);
            }
            Verdict::Unknown => {
                let why = r.unsettled(lo, check);
                return r.inconclusive(0, hi, n, check, why);
            }
        }
    }
    Found::Inconclusive { good: lo, bad: hi, why: "the verdicts kept changing: flaky".into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn single_check_three_patches() {
        let mut calls = Vec::new();
        let mut t = |p: usize, cs: &[String]| {
            calls.push(p);
            cs.iter().map(|c| (c.clone(), if p >= 2 { Verdict::Bad } else { Verdict::Good })).collect()
        };
        let b = bisect(3, &names(1), &mut t, &Options::default());
        assert_eq!(b.found["c0"], Found::FirstBad { first_bad: 2 });
        // prefix 1 (good), then 2 (bad), then 2 again to confirm, then 1 again to verify.
        assert_eq!(calls, [1, 2, 2, 1]);
        let reasons: Vec<StepReason> = b.steps.iter().map(|s| s.reason).collect();
        assert_eq!(reasons, [StepReason::Bisect, StepReason::Bisect, StepReason::Confirm, StepReason::Verify]);
    }

    #[test]
    fn the_tip_needs_no_confirmation() {
        let mut t = |p: usize, cs: &[String]| {
            cs.iter().map(|c| (c.clone(), if p >= 4 { Verdict::Bad } else { Verdict::Good })).collect()
        };
        let b = bisect(4, &names(1), &mut t, &Options::default());
        assert_eq!(b.found["c0"], Found::FirstBad { first_bad: 4 });
        // Only the last good prefix is run again.
        let steps: Vec<(usize, StepReason)> = b.steps.iter().map(|s| (s.prefix, s.reason)).collect();
        assert_eq!(steps, [(2, StepReason::Bisect), (3, StepReason::Bisect), (3, StepReason::Verify)]);
    }

    #[test]
    fn checks_with_the_same_culprit_share_one_confirmation() {
        let mut calls = Vec::new();
        let mut t = |p: usize, cs: &[String]| {
            calls.push(p);
            cs.iter().map(|c| (c.clone(), if p >= 2 { Verdict::Bad } else { Verdict::Good })).collect()
        };
        let b = bisect(3, &names(2), &mut t, &Options::default());
        assert_eq!(b.found["c0"], Found::FirstBad { first_bad: 2 });
        assert_eq!(b.found["c1"], Found::FirstBad { first_bad: 2 });
        assert_eq!(calls, [1, 2, 2, 1]);
    }

    #[test]
    fn unknown_is_retried_then_inconclusive() {
        let mut t = |_p: usize, cs: &[String]| cs.iter().map(|c| (c.clone(), Verdict::Unknown)).collect();
        let b = bisect(4, &names(1), &mut t, &Options { retries: 2, ..Options::default() });
        assert!(matches!(b.found["c0"], Found::Inconclusive { good: 0, bad: 4, .. }));
        assert_eq!(b.steps.len(), 3);
    }

    #[test]
    fn a_failure_that_does_not_reproduce_is_outvoted() {
        let mut seen = 0;
        let mut t = |p: usize, cs: &[String]| {
            let v = if p == 2 {
                seen += 1;
                if seen == 1 {
                    Verdict::Bad
                } else {
                    Verdict::Good
                }
            } else if p > 2 {
                Verdict::Bad
            } else {
                Verdict::Good
            };
            cs.iter().map(|c| (c.clone(), v)).collect()
        };
        let b = bisect(4, &names(1), &mut t, &Options::default());
        // Prefix 2 failed once and passed twice: good; the culprit is patch 3.
        assert_eq!(b.found["c0"], Found::FirstBad { first_bad: 3 });
        assert_eq!(b.steps.iter().filter(|s| s.prefix == 2).count(), 3);
    }

    /// The CI failure that made both ends settled: LTP's fanotify07 passed once on the stalled
    /// prefix 2 and bisection blamed patch 3.
    #[test]
    fn a_pass_that_was_a_race_not_hit_is_caught() {
        let mut calls = Vec::new();
        let mut t = |p: usize, cs: &[String]| {
            calls.push(p);
            let missed = p == 2 && calls.iter().filter(|x| **x == 2).count() == 1;
            cs.iter().map(|c| (c.clone(), if p >= 2 && !missed { Verdict::Bad } else { Verdict::Good })).collect()
        };
        let b = bisect(3, &names(1), &mut t, &Options::default());
        assert_eq!(b.found["c0"], Found::FirstBad { first_bad: 2 });
        // 1 good, 2 good (the miss); verifying 2: bad, bad; then 1 verified good.
        assert_eq!(calls, [1, 2, 2, 2, 1]);
    }

    #[test]
    fn a_bad_good_bad_prefix_is_bad() {
        let mut runs = 0;
        let mut t = |p: usize, cs: &[String]| {
            if p == 2 {
                runs += 1;
            }
            let v = if p > 2 || (p == 2 && runs != 2) { Verdict::Bad } else { Verdict::Good };
            cs.iter().map(|c| (c.clone(), v)).collect()
        };
        let b = bisect(4, &names(1), &mut t, &Options::default());
        assert_eq!(b.found["c0"], Found::FirstBad { first_bad: 2 });
        assert_eq!(runs, 3);
    }

    /// Reruns that give no verdict (the kernel stopped booting) are not "flaky", and the range
    /// reported rests only on settled prefixes: prefix 1 passed once, so it is not named good.
    #[test]
    fn reruns_without_a_verdict_are_inconclusive_between_settled_prefixes() {
        let mut at2 = 0;
        let mut t = |p: usize, cs: &[String]| {
            let v = match p {
                2 => {
                    at2 += 1;
                    if at2 == 1 {
                        Verdict::Bad
                    } else {
                        Verdict::Unknown
                    }
                }
                p if p > 2 => Verdict::Bad,
                _ => Verdict::Good,
            };
            cs.iter().map(|c| (c.clone(), v)).collect()
        };
        let b = bisect(4, &names(1), &mut t, &Options::default());
        match &b.found["c0"] {
            Found::Inconclusive { good, bad, why } => {
                assert_eq!((*good, *bad), (0, 4), "{why}");
                assert!(why.starts_with("no verdict for patch prefix 2"), "{why}");
            }
            f => panic!("{f:?}"),
        }
    }

    #[test]
    fn a_third_run_breaks_a_tie_and_an_unbreakable_tie_is_inconclusive() {
        // Prefix 2 alternates: bad, good, bad. The third run settles it as bad for c0, and c1
        // finds those three samples and needs no run of its own.
        let mut runs = 0;
        let mut t = |p: usize, cs: &[String]| {
            if p == 2 {
                runs += 1;
            }
            let v = if p > 2 || (p == 2 && runs % 2 == 1) { Verdict::Bad } else { Verdict::Good };
            cs.iter().map(|c| (c.clone(), v)).collect()
        };
        let b = bisect(4, &names(2), &mut t, &Options::default());
        // c0 settles 2 as bad (bad, good, bad); c1 then sees (2 bad, 1 good): same.
        assert_eq!(b.found["c0"], Found::FirstBad { first_bad: 2 });
        assert_eq!(b.found["c1"], Found::FirstBad { first_bad: 2 });
        let mut t = |_: usize, _: &[String]| -> BTreeMap<String, Verdict> { panic!("no more runs") };
        // Four runs that tie are not run further: inconclusive.
        let mut r =
            Runner { tester: &mut t, checks: names(1), samples: BTreeMap::new(), steps: Vec::new(), retries: 0 };
        r.samples.insert(
            2,
            BTreeMap::from([("c0".to_string(), vec![Verdict::Good, Verdict::Bad, Verdict::Good, Verdict::Bad])]),
        );
        assert_eq!(r.settle(2, "c0", StepReason::Confirm, &names(1)), Verdict::Unknown);
        assert!(r.tally(2, "c0").contains("2 of 4"));
    }

    proptest! {
        /// Every prefix between base and tip may give one wrong verdict (a race not hit, a
        /// watchdog on a slow machine), on any of its runs: the first bad patch is still found.
        #[test]
        fn one_wrong_run_per_prefix_does_not_move_the_culprit(n in 2usize..24, first in 1usize..24, wrong in proptest::collection::vec(0usize..4, 24)) {
            let first = first.min(n);
            let mut runs = std::collections::BTreeMap::<usize, usize>::new();
            let mut t = |p: usize, cs: &[String]| {
                let k = runs.entry(p).or_default();
                *k += 1;
                let right = p >= first;
                // wrong[p] = k: the k-th run at p is wrong (0: none).
                let bad = if wrong[p] == *k { !right } else { right };
                cs.iter().map(|c| (c.clone(), if bad { Verdict::Bad } else { Verdict::Good })).collect()
            };
            let b = bisect(n, &names(1), &mut t, &Options::default());
            prop_assert_eq!(&b.found["c0"], &Found::FirstBad { first_bad: first }, "{:?}", b.steps);
        }

        /// Monotone checks with arbitrary first-bad points, some steps failing once to give a
        /// verdict: every check is pinned exactly, and no prefix is bisected twice.
        #[test]
        fn finds_every_first_bad(n in 1usize..40, firsts in proptest::collection::vec(1usize..40, 1..4), flaky in proptest::collection::vec(any::<bool>(), 40)) {
            let firsts: Vec<usize> = firsts.into_iter().map(|f| f.min(n)).collect();
            let checks = names(firsts.len());
            let mut tried = std::collections::BTreeMap::<usize, usize>::new();
            let mut t = |p: usize, cs: &[String]| {
                let k = tried.entry(p).or_default();
                *k += 1;
                cs.iter().map(|c| {
                    let i: usize = c[1..].parse().unwrap();
                    let v = if flaky[p] && *k == 1 { Verdict::Unknown } else if p >= firsts[i] { Verdict::Bad } else { Verdict::Good };
                    (c.clone(), v)
                }).collect()
            };
            let b = bisect(n, &checks, &mut t, &Options::default());
            for (i, f) in firsts.iter().enumerate() {
                prop_assert_eq!(&b.found[&checks[i]], &Found::FirstBad { first_bad: *f });
            }
            let bisect_steps: Vec<usize> = b.steps.iter().filter(|s| s.reason == StepReason::Bisect).map(|s| s.prefix).collect();
            let mut dedup = bisect_steps.clone();
            dedup.sort_unstable();
            dedup.dedup();
            prop_assert_eq!(dedup.len(), bisect_steps.len());
        }
    }

    #[test]
    fn with_confirm_tip_a_tip_that_does_not_fail_again_is_flaky() {
        let mut boots = Vec::new();
        let mut t = |p: usize, cs: &[String]| {
            boots.push(p);
            // Only the tip's first boot (before bisection, not seen here) failed: every step
            // is good, the rerun of the tip too.
            cs.iter().map(|c| (c.clone(), Verdict::Good)).collect()
        };
        let opts = Options { confirm_tip: true, ..Options::default() };
        let b = bisect(3, &names(1), &mut t, &opts);
        assert_eq!(b.found["c0"], Found::Flaky { prefix: 3 });
        assert_eq!(boots, [1, 2, 3, 3], "steps, then the tip twice more (two passes outvote its failure)");
        // A real regression at the tip is confirmed there and named.
        let mut t = |p: usize, cs: &[String]| {
            cs.iter().map(|c| (c.clone(), if p >= 3 { Verdict::Bad } else { Verdict::Good })).collect()
        };
        assert_eq!(bisect(3, &names(1), &mut t, &opts).found["c0"], Found::FirstBad { first_bad: 3 });
        // Without confirm_tip the tip is never rerun.
        let mut calls = Vec::new();
        let mut t = |p: usize, cs: &[String]| {
            calls.push(p);
            cs.iter().map(|c| (c.clone(), if p >= 3 { Verdict::Bad } else { Verdict::Good })).collect()
        };
        bisect(3, &names(1), &mut t, &Options::default());
        assert!(!calls.contains(&3), "{calls:?}");
    }

    #[test]
    fn observed_checks_are_named_without_a_rerun() {
        let mut calls: Vec<(usize, Vec<String>)> = Vec::new();
        let mut t = |p: usize, cs: &[String]| {
            calls.push((p, cs.to_vec()));
            cs.iter().map(|c| (c.clone(), if p >= 2 { Verdict::Bad } else { Verdict::Good })).collect()
        };
        let checks = vec!["shadow/rule".to_string(), "hang".to_string()];
        let opts = Options { confirm_tip: true, observed: vec!["shadow/rule".into()], ..Options::default() };
        let b = bisect(4, &checks, &mut t, &opts);
        assert_eq!(b.found["shadow/rule"], Found::FirstBad { first_bad: 2 });
        assert_eq!(b.found["hang"], Found::FirstBad { first_bad: 2 });
        // The reruns (2 to confirm, 1 to verify) run the timed check only.
        let hang = vec!["hang".to_string()];
        assert_eq!(calls[2..], [(2, hang.clone()), (1, hang)]);
        assert_eq!(b.steps[2].reason, StepReason::Confirm);
        assert_eq!(b.steps[3].reason, StepReason::Verify);
        // With only observed checks there is no confirmation run at all, not even of the tip.
        let mut calls = Vec::new();
        let mut t = |p: usize, cs: &[String]| {
            calls.push(p);
            cs.iter().map(|c| (c.clone(), if p >= 4 { Verdict::Bad } else { Verdict::Good })).collect()
        };
        let b = bisect(4, &checks[..1], &mut t, &opts);
        assert_eq!(b.found["shadow/rule"], Found::FirstBad { first_bad: 4 });
        assert_eq!(calls, [2, 3]);
        assert!(b.steps.iter().all(|s| s.reason == StepReason::Bisect));
    }

    #[test]
    fn the_first_probe_is_the_first_step() {
        for n in 1..20 {
            let mut first = None;
            let mut t = |p: usize, cs: &[String]| {
                first.get_or_insert(p);
                cs.iter().map(|c| (c.clone(), if p >= n { Verdict::Bad } else { Verdict::Good })).collect()
            };
            bisect(n, &names(1), &mut t, &Options::default());
            assert_eq!(first, first_probe(n), "n={n}");
        }
    }
}
