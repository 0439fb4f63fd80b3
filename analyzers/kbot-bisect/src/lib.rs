//! Bisection inside a patch series. Prefix 0 is the base (known good), prefix `n` the tip
//! (known bad). Every step tests one prefix for all the checks still being bisected, so one
//! build and boot serves them all; results are cached per prefix. A step whose verdict is
//! `Unknown` (the VM did not boot, the agent did not report) is rerun; the first bad prefix
//! is confirmed by testing it again, like 0-day counts a result only when it reproduces.

use serde::Serialize;
use std::collections::BTreeMap;

/// A check's verdict at one step: the result vocabulary's.
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
    /// Why this step ran: "bisect", "retry" or "confirm".
    pub reason: &'static str,
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
    /// Test the first bad prefix once more before naming it.
    pub confirm: bool,
    /// Confirm it even when it is the whole series (the tip): for callers that did not rerun
    /// the tip before bisecting. The rerun then also tells a flaky failure from a regression.
    pub confirm_tip: bool,
    /// Checks whose bad verdict is a direct observation, not a timing (an in-kernel rule's
    /// record of what the kernel did): named at their first bad prefix without a rerun. A
    /// rerun guards against a watchdog that fired on a slow machine; a record cannot be that.
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
    known: BTreeMap<usize, BTreeMap<String, Verdict>>,
    confirmed: BTreeMap<usize, BTreeMap<String, Verdict>>,
    steps: Vec<Step>,
    retries: u32,
}

impl<T: Tester> Runner<'_, T> {
    fn run(&mut self, prefix: usize, reason: &'static str) -> BTreeMap<String, Verdict> {
        let checks = self.checks.clone();
        self.run_these(prefix, reason, &checks)
    }

    fn run_these(&mut self, prefix: usize, reason: &'static str, checks: &[String]) -> BTreeMap<String, Verdict> {
        let v = self.tester.test(prefix, checks);
        self.steps.push(Step { prefix, verdicts: v.clone(), reason });
        v
    }

    /// The verdict of `check` at `prefix`, testing (and retrying) when not known yet.
    fn verdict(&mut self, prefix: usize, check: &str) -> Verdict {
        if let Some(v) = self.known.get(&prefix).and_then(|m| m.get(check)) {
            return *v;
        }
        let mut v = self.run(prefix, "bisect");
        let mut tries = 0;
        while v.get(check).is_none_or(|x| *x == Verdict::Unknown) && tries < self.retries {
            tries += 1;
            v = self.run(prefix, "retry");
        }
        let entry = self.known.entry(prefix).or_default();
        for (k, x) in v {
            if x != Verdict::Unknown {
                entry.insert(k, x);
            }
        }
        *entry.get(check).unwrap_or(&Verdict::Unknown)
    }
}

/// The prefix [`bisect`] tests first over `n` patches (None: one patch, nothing to bisect):
/// a lab can build it ahead while the tip still boots.
pub fn first_probe(n: usize) -> Option<usize> {
    (n > 1).then_some(n / 2)
}

/// Bisects each of `checks` over prefixes 0..=n (0 good, n bad for every check).
pub fn bisect<T: Tester>(n: usize, checks: &[String], tester: &mut T, opts: &Options) -> Bisection {
    let mut r = Runner {
        tester,
        checks: checks.to_vec(),
        known: BTreeMap::new(),
        confirmed: BTreeMap::new(),
        steps: Vec::new(),
        retries: opts.retries,
    };
    let mut found = BTreeMap::new();
    for check in checks {
        let (mut lo, mut hi) = (0usize, n);
        let mut stuck = None;
        while hi - lo > 1 {
            // The first probe is [`first_probe`]'s.
            let mid = lo + (hi - lo) / 2;
            match r.verdict(mid, check) {
                Verdict::Good => lo = mid,
                Verdict::Bad => hi = mid,
                Verdict::Unknown => {
                    stuck = Some(format!("no verdict for patch prefix {mid} after {} tries", opts.retries + 1));
                    break;
                }
            }
        }
        let f = match stuck {
            Some(why) => Found::Inconclusive { good: lo, bad: hi, why },
            None if opts.confirm && !opts.observed.contains(check) && (hi < n || opts.confirm_tip) => {
                // One confirmation run per prefix serves every check that blames it; it runs
                // the checks that need one.
                let again = match r.confirmed.get(&hi) {
                    Some(v) => v.clone(),
                    None => {
                        let these: Vec<String> =
                            checks.iter().filter(|c| !opts.observed.contains(c)).cloned().collect();
                        let v = r.run_these(hi, "confirm", &these);
                        r.confirmed.insert(hi, v.clone());
                        v
                    }
                };
                match again.get(check) {
                    Some(Verdict::Bad) => Found::FirstBad { first_bad: hi },
                    // The whole series did not fail again: nothing reproduces.
                    Some(Verdict::Good) if hi == n => Found::Flaky { prefix: hi },
                    other => Found::Inconclusive {
                        good: lo,
                        bad: n,
                        why: format!(
                            "patch {hi} was bad once, then {:?} on the rerun: flaky",
                            other.copied().unwrap_or(Verdict::Unknown)
                        ),
                    },
                }
            }
            None => Found::FirstBad { first_bad: hi },
        };
        found.insert(check.clone(), f);
    }
    Bisection { found, steps: r.steps }
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
        // prefix 1 (good), then 2 (bad), then 2 again to confirm.
        assert_eq!(calls, [1, 2, 2]);
    }

    #[test]
    fn last_patch_needs_no_confirmation() {
        let mut t = |p: usize, cs: &[String]| {
            cs.iter().map(|c| (c.clone(), if p >= 4 { Verdict::Bad } else { Verdict::Good })).collect()
        };
        let b = bisect(4, &names(1), &mut t, &Options::default());
        assert_eq!(b.found["c0"], Found::FirstBad { first_bad: 4 });
        assert!(b.steps.iter().all(|s| s.reason == "bisect"));
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
        assert_eq!(calls, [1, 2, 2]);
    }

    #[test]
    fn unknown_is_retried_then_inconclusive() {
        let mut t = |_p: usize, cs: &[String]| cs.iter().map(|c| (c.clone(), Verdict::Unknown)).collect();
        let b = bisect(4, &names(1), &mut t, &Options { retries: 2, ..Options::default() });
        assert!(matches!(b.found["c0"], Found::Inconclusive { good: 0, bad: 4, .. }));
        assert_eq!(b.steps.len(), 3);
    }

    #[test]
    fn flaky_first_bad_is_not_named() {
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
        assert!(matches!(b.found["c0"], Found::Inconclusive { .. }), "{:?}", b.found);
    }

    proptest! {
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
            let bisect_steps: Vec<usize> = b.steps.iter().filter(|s| s.reason == "bisect").map(|s| s.prefix).collect();
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
        assert_eq!(boots, [1, 2, 3], "steps, then the tip once more");
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
        // The confirmation reruns prefix 2 for the timed check only.
        assert_eq!(calls.last().unwrap(), &(2, vec!["hang".to_string()]));
        assert_eq!(b.steps.last().unwrap().reason, "confirm");
        // With only observed checks there is no confirmation run at all, not even of the tip.
        let mut calls = Vec::new();
        let mut t = |p: usize, cs: &[String]| {
            calls.push(p);
            cs.iter().map(|c| (c.clone(), if p >= 4 { Verdict::Bad } else { Verdict::Good })).collect()
        };
        let b = bisect(4, &checks[..1], &mut t, &opts);
        assert_eq!(b.found["shadow/rule"], Found::FirstBad { first_bad: 4 });
        assert_eq!(calls, [2, 3]);
        assert!(b.steps.iter().all(|s| s.reason == "bisect"));
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
