//! One arch's part of a check, as decisions over a [`Lab`]: test the base, test the tip,
//! compare, confirm what regressed, bisect it over the series' prefixes, and write the
//! findings with their evidence. No I/O of its own: the unit tests below drive it with a fake
//! lab in milliseconds.

use crate::lab::{label, Boot, Kernel, Lab};
use kbot_bisect::Found;
use kbot_report::{
    short_commit, ArchResult, BisectStep, BootState, BuildState, FirstBad, Outcome, PatchInfo, Regression,
    RegressionKind, Run, SplatInfo, TestFamily, TestResult, Verdict,
};
use std::collections::BTreeMap;
use std::time::Instant;

/// What can regress: the build, the boot (the agent never started), or a test by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Build,
    Boot,
    Test(String),
}

impl Check {
    /// The name in the result (`regressions[].test`) and in bisection verdicts.
    pub fn name(&self) -> &str {
        match self {
            Check::Build => "build",
            Check::Boot => "boot",
            Check::Test(t) => t,
        }
    }

    /// Whether a bad verdict is a direct observation (an in-kernel shadow rule's record of
    /// what the kernel did) rather than a timing or a comparison that a slow machine could
    /// fake: such a verdict needs no rerun to count.
    pub fn observed(&self) -> bool {
        matches!(self, Check::Test(t) if TestFamily::of(t).observed())
    }

    pub fn from_name(name: &str) -> Check {
        match name {
            "build" => Check::Build,
            "boot" => Check::Boot,
            t => Check::Test(t.to_string()),
        }
    }
}

/// The series as the lab sees it: `commits[0]` is the base, `commits[i]` the series applied
/// up to patch `i`; `patches[i - 1]` describes patch `i`.
pub struct Prefixes<'a> {
    pub commits: &'a [String],
    pub patches: &'a [PatchInfo],
}

impl Prefixes<'_> {
    /// The number of patches.
    pub fn n(&self) -> usize {
        self.commits.len() - 1
    }
}

/// The `Run` of one kernel and (when it built) its boot.
pub fn run_of(k: &Kernel, b: Option<&Boot>, commit: &str) -> Run {
    Run {
        build: if k.image.is_some() { BuildState::Pass } else { BuildState::Fail },
        tests: b.map(|b| b.tests.clone()).unwrap_or_default(),
        commit: commit.to_string(),
        boot: match b {
            None => BootState::Skip,
            Some(b) if b.finished => BootState::Pass,
            Some(b) if b.timed_out => BootState::Timeout,
            Some(_) => BootState::Fail,
        },
        splats: b.map(|b| b.console.splats.iter().map(SplatInfo::from).collect()).unwrap_or_default(),
        build_errors: k.errors.clone(),
        build_s: k.seconds,
        boot_s: b.map_or(0.0, |b| b.seconds),
        cached: k.cached,
        console_log: b.map(|b| b.log.display().to_string()).unwrap_or_default(),
        build_log: if k.cached { String::new() } else { k.log.display().to_string() },
    }
}

/// Tests one arch: base, tip, confirmation, bisection, findings. Lab trouble ends the arch
/// with `error` set and whatever was learned until then.
pub fn test_arch(lab: &mut dyn Lab, s: &Prefixes) -> ArchResult {
    let mut r = ArchResult { arch: lab.arch().name().into(), ..Default::default() };
    let base = match base(lab, s) {
        Ok(b) => b,
        Err(f) => {
            r.base = f.run.unwrap_or_default();
            return failed(lab, r, f.why);
        }
    };
    r.base = run_of(&base.0, Some(&base.1), &s.commits[0]);
    let n = s.n();
    let kt = match lab.kernel(n) {
        Ok(k) => k,
        Err(e) => return failed(lab, r, e.0),
    };
    let Some(tip_img) = kt.image.clone() else {
        r.tip = run_of(&kt, None, &s.commits[n]);
        return bisect_and_report(lab, s, r, vec![Check::Build], &base.1, None);
    };
    if let Some(p) = kbot_bisect::first_probe(n) {
        let bad: Vec<String> = base
            .1
            .tests
            .iter()
            .filter(|t| matches!(t.result, Outcome::Fail | Outcome::Hang))
            .map(|t| t.name.clone())
            .collect();
        lab.build_ahead(p, &bad);
    }
    let tb = match lab.boot(n, &tip_img, None, true) {
        Ok(b) => b,
        Err(e) => return failed(lab, r, e.0),
    };
    r.tip = run_of(&kt, Some(&tb), &s.commits[n]);
    let mut regressed: Vec<Check> =
        kbot_compare::regressions(&base.1.tests, &tb.tests).into_iter().map(|(t, _)| Check::Test(t)).collect();
    if !tb.console.started {
        // The tip did not even reach the agent: that is a regression of its own.
        regressed.push(Check::Boot);
    }
    if regressed.is_empty() {
        lab.say("result", "no regression against the base");
        return r;
    }
    let base_img = base.0.image.clone().expect("base() returns a kernel that built");
    match control(lab, &base_img, &regressed) {
        Ok(flaky) => {
            regressed.retain(|c| !flaky.iter().any(|f| f == c.name()));
            r.flaky.extend(flaky);
        }
        // The regressions are known: without the control they are judged by reruns alone.
        Err(e) => lab.say("control", &format!("the base's control did not run ({e}): going on without it")),
    }
    if regressed.is_empty() {
        return r;
    }
    if n > 1 {
        // No separate rerun of the tip: bisection reruns the prefix it blames, the tip too
        // when every earlier prefix is good, and a failure that does not come back there is
        // flaky. One boot less per arch for every regression.
        return bisect_and_report(lab, s, r, regressed, &base.1, Some(&tb));
    }
    match confirm(lab, n, &tip_img, regressed) {
        Ok((checks, flaky)) => {
            r.flaky.extend(flaky);
            if checks.is_empty() {
                return r;
            }
            bisect_and_report(lab, s, r, checks, &base.1, Some(&tb))
        }
        Err(e) => failed(lab, r, e),
    }
}

fn failed(lab: &dyn Lab, mut r: ArchResult, e: String) -> ArchResult {
    lab.say("error", &e);
    r.error = Some(e);
    r
}

/// Why the base cannot serve as the reference, with what is known of its run.
struct BaseFailure {
    run: Option<Run>,
    why: String,
}

fn base_failure(run: Option<Run>, why: String) -> Box<BaseFailure> {
    Box::new(BaseFailure { run, why })
}

/// The base must build and run the tests to the end, or nothing can be compared.
fn base(lab: &mut dyn Lab, s: &Prefixes) -> Result<(Kernel, Boot), Box<BaseFailure>> {
    let base = &s.commits[0];
    let kb = lab.kernel(0).map_err(|e| base_failure(None, e.0))?;
    let Some(img) = kb.image.clone() else {
        let why = format!("the base {} does not build; see {}", short_commit(base), kb.log.display());
        return Err(base_failure(Some(run_of(&kb, None, base)), why));
    };
    let bb = lab.boot(0, &img, None, false).map_err(|e| base_failure(Some(run_of(&kb, None, base)), e.0))?;
    if !bb.finished {
        let why = format!(
            "the base kernel did not run the tests to the end ({}); see {}",
            if bb.timed_out { "VM timed out" } else { "VM stopped early" },
            bb.log.display()
        );
        return Err(base_failure(Some(run_of(&kb, Some(&bb), base)), why));
    }
    Ok((kb, bb))
}

/// LTP's tests pass up to five times in a row in the reruns that follow (a race the kernel
/// has can go unhit in one run): a test that fails now and then on the base would then look
/// like a regression more often. So the base runs the regressed ones first, repeated twice as
/// often; one that does not pass there is flaky, not a regression (nor can pass/fail runs tell
/// a real regression of it from its flakiness: it is listed, not bisected).
/// Returns the flaky tests.
fn control(lab: &mut dyn Lab, base_img: &std::path::Path, regressed: &[Check]) -> Result<Vec<String>, String> {
    let names: Vec<String> = regressed
        .iter()
        .filter_map(|c| match c {
            Check::Test(t) if TestFamily::of(t) == TestFamily::Ltp => Some(t.clone()),
            _ => None,
        })
        .collect();
    if names.is_empty() || lab.ltp_repeat() <= 1 {
        return Ok(Vec::new());
    }
    lab.say("control", &format!("the base again for {}", names.join(", ")));
    let again = lab.boot(0, base_img, Some(&names), false).map_err(|e| e.0)?;
    // A control without a verdict (a budget spent) keeps the check.
    let flaky: Vec<String> =
        names.into_iter().filter(|t| kbot_compare::verdict(&again.tests, t) == Verdict::Bad).collect();
    for t in &flaky {
        lab.say("result", &format!("{t}: does not pass every run on the base either: flaky, not a regression"));
    }
    Ok(flaky)
}

/// A result counts only when it reproduces: the tip is booted again for the regressed tests,
/// and once more for those that passed the rerun (two runs of three decide).
/// Returns the confirmed checks and the flaky tests.
fn confirm(
    lab: &mut dyn Lab,
    n: usize,
    tip_img: &std::path::Path,
    regressed: Vec<Check>,
) -> Result<(Vec<Check>, Vec<String>), String> {
    let names: Vec<String> = regressed
        .iter()
        .filter(|c| !c.observed())
        .filter_map(|c| if let Check::Test(t) = c { Some(t.clone()) } else { None })
        .collect();
    if names.is_empty() {
        return Ok((regressed, Vec::new()));
    }
    lab.say("confirm", &format!("rerunning the tip for {}", names.join(", ")));
    let again = lab.boot(n, tip_img, Some(&names), false).map_err(|e| e.0)?;
    let passed: Vec<String> =
        names.into_iter().filter(|t| kbot_compare::verdict(&again.tests, t) == Verdict::Good).collect();
    // One failure and one pass: a third run decides (a race the kernel has can go unhit for
    // one boot, as in bisection).
    let flaky = if passed.is_empty() {
        passed
    } else {
        lab.say("confirm", &format!("the tip once more for {}", passed.join(", ")));
        let third = lab.boot(n, tip_img, Some(&passed), false).map_err(|e| e.0)?;
        passed.into_iter().filter(|t| kbot_compare::verdict(&third.tests, t) == Verdict::Good).collect()
    };
    let confirmed = regressed.into_iter().filter(|c| !flaky.iter().any(|f| f == c.name())).collect();
    Ok((confirmed, flaky))
}

/// What bisection learned: the first bad patch per check, its steps, and the kernels and
/// boots of the prefixes it tried (for the evidence).
struct Bisection {
    found: BTreeMap<String, Found>,
    steps: Vec<BisectStep>,
    builds: BTreeMap<usize, Kernel>,
    boots: BTreeMap<usize, Boot>,
}

/// The verdicts of one bisection step: build the prefix, boot it for the checks in question
/// (only when a test is in question), read each check's verdict.
fn step(lab: &mut dyn Lab, n: usize, prefix: usize, checks: &[Check], b: &mut Bisection) -> BTreeMap<String, Verdict> {
    let mut v = BTreeMap::new();
    let k = match lab.kernel(prefix) {
        Ok(k) => k,
        Err(e) => {
            lab.say("bisect", &format!("{}: {e}", label(prefix, n)));
            return v;
        }
    };
    let img = k.image.clone();
    b.builds.insert(prefix, k);
    let tests: Vec<String> =
        checks.iter().filter_map(|c| if let Check::Test(t) = c { Some(t.clone()) } else { None }).collect();
    let boot = match &img {
        // A prefix that does not build says nothing about the tests; one that builds, when
        // only the build is in question, needs no boot.
        None => None,
        Some(_) if checks.iter().all(|c| *c == Check::Build) => None,
        Some(img) => match lab.boot(prefix, img, Some(&tests), false) {
            Ok(boot) => Some(boot),
            Err(e) => {
                lab.say("bisect", &format!("{}: {e}", label(prefix, n)));
                return v;
            }
        },
    };
    for c in checks {
        let verdict = match (c, &img, &boot) {
            (Check::Build, None, _) => Verdict::Bad,
            (Check::Build, Some(_), _) => Verdict::Good,
            (_, None, _) | (_, Some(_), None) => Verdict::Unknown,
            (Check::Boot, _, Some(boot)) if boot.console.started => Verdict::Good,
            (Check::Boot, _, Some(_)) => Verdict::Bad,
            (Check::Test(t), _, Some(boot)) => kbot_compare::verdict(&boot.tests, t),
        };
        v.insert(c.name().to_string(), verdict);
    }
    if let Some(boot) = boot {
        b.boots.insert(prefix, boot);
    }
    v
}

fn bisect(lab: &mut dyn Lab, n: usize, checks: &[Check]) -> Bisection {
    let mut b =
        Bisection { found: BTreeMap::new(), steps: Vec::new(), builds: BTreeMap::new(), boots: BTreeMap::new() };
    if n == 1 {
        b.found = checks.iter().map(|c| (c.name().to_string(), Found::FirstBad { first_bad: 1 })).collect();
        return b;
    }
    let names: Vec<String> = checks.iter().map(|c| c.name().to_string()).collect();
    let how = if n > 2 { "binary search" } else { "one step" };
    lab.say("bisect", &format!("{how} over {n} patches: {}", names.join(", ")));
    let mut times = Vec::new();
    let mut tester = |prefix: usize, cs: &[String]| -> BTreeMap<String, Verdict> {
        let t = Instant::now();
        let cs: Vec<Check> = cs.iter().map(|c| Check::from_name(c)).collect();
        let v = step(lab, n, prefix, &cs, &mut b);
        let summary: Vec<String> = v.iter().map(|(k, x)| format!("{k}={x}")).collect();
        lab.say("bisect", &format!("{}: {}", label(prefix, n), summary.join(" ")));
        times.push(t.elapsed().as_secs_f64());
        v
    };
    let observed = checks.iter().filter(|c| c.observed()).map(|c| c.name().to_string()).collect();
    let opts = kbot_bisect::Options { confirm_tip: true, observed, ..kbot_bisect::Options::default() };
    let out = kbot_bisect::bisect(n, &names, &mut tester, &opts);
    b.steps = out
        .steps
        .iter()
        .zip(&times)
        .map(|(s, secs)| BisectStep {
            prefix: s.prefix as u32,
            reason: s.reason,
            verdicts: s.verdicts.clone(),
            seconds: *secs,
        })
        .collect();
    b.found = out.found;
    b
}

/// Bisects the confirmed checks and adds one regression per check to the result.
fn bisect_and_report(
    lab: &mut dyn Lab,
    s: &Prefixes,
    mut r: ArchResult,
    checks: Vec<Check>,
    base: &Boot,
    tip: Option<&Boot>,
) -> ArchResult {
    let b = bisect(lab, s.n(), &checks);
    for c in &checks {
        if let Some(Found::Flaky { .. }) = b.found.get(c.name()) {
            lab.say("result", &format!("{}: did not fail again on the tip: flaky, not a regression", c.name()));
            r.flaky.push(c.name().to_string());
            continue;
        }
        let g = finding(lab.arch().name(), s, c, &b, base, tip, &r.tip);
        let fb = g.first_bad.as_ref().map_or("unknown".into(), |f| format!("{}/{} {:?}", f.index, s.n(), f.subject));
        lab.say("result", &format!("{}: {}; first bad patch {fb}", g.test, g.kind));
        r.regressions.push(g);
    }
    r.bisect_steps = b.steps;
    r
}

/// One regression: its kind, first bad patch, how that was found, and the evidence.
fn finding(
    arch: &str,
    s: &Prefixes,
    c: &Check,
    b: &Bisection,
    base: &Boot,
    tip: Option<&Boot>,
    tip_run: &Run,
) -> Regression {
    let n = s.n();
    let steps = b.steps.len();
    let (first_bad, how) = match b.found.get(c.name()) {
        Some(Found::FirstBad { first_bad }) if n == 1 => (Some(*first_bad), "the only patch".to_string()),
        Some(Found::FirstBad { first_bad }) => {
            (Some(*first_bad), format!("bisected in {steps} step{}", if steps == 1 { "" } else { "s" }))
        }
        Some(Found::Inconclusive { good, bad, why }) => {
            (None, format!("inconclusive: between patch {} and {bad}: {why}", good + 1))
        }
        Some(Found::Flaky { prefix }) => (None, format!("did not reproduce at {}", label(*prefix, n))),
        None => (None, "not bisected".into()),
    };
    let kind = match c {
        Check::Build => RegressionKind::Build,
        Check::Boot => RegressionKind::Fail,
        Check::Test(name) => tip
            .and_then(|t| t.tests.iter().find(|x| x.name == *name))
            .map_or(RegressionKind::Fail, |t| kbot_compare::kind_of(name, t.result)),
    };
    let evidence = match c {
        Check::Build => {
            let errs = first_bad
                .and_then(|f| b.builds.get(&f))
                .map(|k| k.errors.clone())
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| tip_run.build_errors.clone());
            let lines: Vec<String> = errs.iter().map(|e| format!(">> {e}")).collect();
            format!("build of {arch} failed:\n{}", lines.join("\n"))
        }
        _ => test_evidence(c, first_bad, b, base, tip, kind),
    };
    let first_bad = first_bad.map(|i| {
        let p = &s.patches[i - 1];
        FirstBad {
            index: p.index,
            subject: p.subject.clone(),
            message_id: p.message_id.clone(),
            commit: s.commits[i].clone(),
        }
    });
    Regression { test: c.name().to_string(), kind, first_bad, evidence, bisect: how }
}

/// The evidence of a failed test or boot: from the first bad prefix's boot when it showed the
/// failure, else from the tip's. A scenario's minimal form was shrunk on the tip's first boot
/// only, so scenarios always quote the tip.
fn test_evidence(
    c: &Check,
    first_bad: Option<usize>,
    b: &Bisection,
    base: &Boot,
    tip: Option<&Boot>,
    kind: RegressionKind,
) -> String {
    let name = c.name();
    let boot = first_bad
        .and_then(|f| b.boots.get(&f))
        .filter(|x| x.tests.iter().any(|t| t.name == name && t.result != Outcome::Pass))
        .filter(|_| TestFamily::of(name) != TestFamily::Scenario)
        .or(tip);
    let Some(boot) = boot else { return String::new() };
    let t = boot.tests.iter().find(|t| t.name == name).cloned().unwrap_or(TestResult {
        name: name.into(),
        result: if kind == RegressionKind::Hang { Outcome::Hang } else { Outcome::Fail },
        detail: "the kernel did not reach the agent".into(),
    });
    let mut e = kbot_compare::evidence(&t, &boot.console, &base.console);
    if *c == Check::Boot {
        let tail: Vec<&str> =
            boot.console.splats.iter().flat_map(|s| s.excerpt.iter().map(String::as_str)).take(20).collect();
        e += &format!("\n{}", tail.join("\n"));
    }
    e
}

#[cfg(test)]
mod tests;
