//! The result of a check as plain data (`kbot.result/v1`, the JSON other tools rely on) and
//! its Markdown rendering from `templates/`.
//!
//! Field meanings are a contract (see DESIGN.md): fields may be added, none may change.

use serde::{Deserialize, Serialize};

pub mod group;
mod vocab;
pub use vocab::{
    BootState, BuildState, CheckState, Outcome, RegressionKind, SplatKind, StepReason, TestFamily, UnknownWord, Verdict,
};

pub const SCHEMA: &str = "kbot.result/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Clean,
    Regression,
    ApplyFailed,
    Incomplete,
    Error,
}

/// The first 12 characters of a commit id (or all of a shorter string): how kbot names commits.
pub fn short_commit(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// A command line from its words, each quoted for a POSIX shell where needed, so a pasted
/// reproduce line runs exactly this command whatever a Message-ID or path holds. A word with
/// a NUL byte (which no shell can pass) is replaced by `<invalid>`.
pub fn shell_line<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| shlex::try_quote(w.as_ref()).map_or_else(|_| "'<invalid>'".to_string(), |q| q.into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Seconds since the epoch as UTC (year, month, day, hour, minute, second), by Howard
/// Hinnant's civil_from_days.
pub fn utc(t: i64) -> [i64; 6] {
    let (days, secs) = (t.div_euclid(86400), t.rem_euclid(86400));
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    [y, m, d, secs / 3600, secs % 3600 / 60, secs % 60]
}

impl Status {
    /// The name as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Clean => "clean",
            Status::Regression => "regression",
            Status::ApplyFailed => "apply-failed",
            Status::Incomplete => "incomplete",
            Status::Error => "error",
        }
    }

    /// Exit status of `kbot check`: 0 clean, 1 findings, 2 error.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Clean => 0,
            Status::Regression | Status::ApplyFailed | Status::Incomplete => 1,
            Status::Error => 2,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PatchInfo {
    pub index: u32,
    pub subject: String,
    pub message_id: String,
    pub author: String,
    /// The commit `git am` made for it (absent when it was not applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Trailers given in replies to it (or to the cover letter), e.g. "Reviewed-by: A <a@x>".
    #[serde(default)]
    pub trailers: Vec<String>,
    /// Per-patch checks (Signed-off-by, Fixes:, subject).
    #[serde(default)]
    pub checks: Vec<CheckInfo>,
}

/// One patchwork-style check: success, warning or fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInfo {
    pub name: String,
    pub state: CheckState,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeriesInfo {
    pub subject: String,
    pub version: u32,
    pub total: u32,
    pub message_id: String,
    /// The commit the series was applied to.
    pub base: String,
    /// Where the base came from: "--base", "base-commit", or "tree HEAD".
    #[serde(default)]
    pub base_source: String,
    pub missing: Vec<u32>,
    #[serde(default)]
    pub duplicates: Vec<u32>,
    pub patches: Vec<PatchInfo>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// Checks of the series as a whole (cover letter, base-commit).
    #[serde(default)]
    pub checks: Vec<CheckInfo>,
    /// When the series named no usable base: the refs tried, newest first, and whether the
    /// whole series applies to each (checked in memory); the base is the first that applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_candidates: Vec<BaseCandidate>,
}

/// One ref tried as the base of a series without a usable `base-commit:`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BaseCandidate {
    /// As the tree names it: `HEAD`, `next`, `origin/master`, `v6.12`.
    pub name: String,
    pub commit: String,
    pub applies: bool,
    /// The first patch (1-based) that does not apply, and git's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_patch: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Apply {
    pub ok: bool,
    pub failed_patch: Option<u32>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestResult {
    pub name: String,
    pub result: Outcome,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplatInfo {
    pub kind: SplatKind,
    pub title: String,
    pub excerpt: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Run {
    pub build: BuildState,
    pub tests: Vec<TestResult>,
    /// The commit built and booted.
    #[serde(default)]
    pub commit: String,
    /// Whether the agent ran to its end.
    #[serde(default)]
    pub boot: BootState,
    #[serde(default)]
    pub splats: Vec<SplatInfo>,
    #[serde(default)]
    pub build_errors: Vec<String>,
    #[serde(default)]
    pub build_s: f64,
    #[serde(default)]
    pub boot_s: f64,
    /// The kernel image came from kbot's cache.
    #[serde(default)]
    pub cached: bool,
    #[serde(default)]
    pub console_log: String,
    #[serde(default)]
    pub build_log: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstBad {
    pub index: u32,
    pub subject: String,
    #[serde(default)]
    pub message_id: String,
    #[serde(default)]
    pub commit: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Regression {
    pub test: String,
    pub kind: RegressionKind,
    /// The first patch of the series that shows the regression; null when bisection was
    /// inconclusive (see `bisect`).
    pub first_bad: Option<FirstBad>,
    pub evidence: String,
    /// How the first bad patch was found: "bisected", "only patch", or "inconclusive: ...".
    #[serde(default)]
    pub bisect: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BisectStep {
    /// Patches applied (0 = base).
    pub prefix: u32,
    pub reason: StepReason,
    /// check name -> verdict
    pub verdicts: std::collections::BTreeMap<String, Verdict>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ArchResult {
    pub arch: String,
    pub base: Run,
    pub tip: Run,
    pub regressions: Vec<Regression>,
    /// Tests that failed on the tip once but not on its reruns, or (LTP) not every repeated
    /// run on the base either: not regressions.
    #[serde(default)]
    pub flaky: Vec<String>,
    #[serde(default)]
    pub bisect_steps: Vec<BisectStep>,
    /// tcg or kvm
    #[serde(default)]
    pub accel: String,
    /// The in-kernel shadow checks: "on", "off: <why>", or which kernels lacked hooks.
    #[serde(default)]
    pub shadow: String,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub total_s: f64,
    /// stage name -> seconds (parse, apply, <arch>.build.base, ...)
    #[serde(default)]
    pub stages: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Environment {
    pub kbot: String,
    pub tree: String,
    pub compiler: String,
    pub qemu: String,
    pub config: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    pub schema: String,
    pub status: Status,
    /// For status "error": what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub series: SeriesInfo,
    pub apply: Apply,
    pub arches: Vec<ArchResult>,
    pub timings: Timings,
    #[serde(default)]
    pub environment: Environment,
    /// The trailer a fix should carry.
    #[serde(default)]
    pub reported_by: String,
    /// Commands that reproduce this result.
    #[serde(default)]
    pub reproduce: Vec<String>,
    /// The differential scenarios run in every boot.
    #[serde(default)]
    pub scenarios: ScenarioInfo,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// Seed of the random scenarios: `scenario/random-<seed>-<i>` replays anywhere.
    pub seed: u64,
    pub random: u32,
    pub corpus: u32,
}

impl CheckResult {
    /// Reads a `kbot.result/v1` file; `None` when it is missing or not one.
    pub fn load(path: impl AsRef<std::path::Path>) -> Option<CheckResult> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// The earliest first bad patch over all arches and regressions.
    pub fn first_bad(&self) -> Option<&FirstBad> {
        self.arches.iter().flat_map(|a| &a.regressions).filter_map(|x| x.first_bad.as_ref()).min_by_key(|f| f.index)
    }

    pub fn new(series: SeriesInfo) -> Self {
        CheckResult {
            schema: SCHEMA.into(),
            status: Status::Clean,
            error: None,
            series,
            apply: Apply::default(),
            arches: Vec::new(),
            timings: Timings::default(),
            environment: Environment::default(),
            reported_by: String::new(),
            reproduce: Vec::new(),
            scenarios: ScenarioInfo::default(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serializes") + "\n"
    }
}

pub use kbot_templates::REPORT_MD as MARKDOWN_TEMPLATE;

/// Renders the Markdown report.
/// One row of the results table: a test and its result per arch on base and tip.
#[derive(Serialize)]
struct Row {
    test: String,
    cells: Vec<String>,
}

fn result_rows(r: &CheckResult) -> Vec<Row> {
    let mut names: Vec<String> = Vec::new();
    for a in &r.arches {
        for t in a.base.tests.iter().chain(&a.tip.tests) {
            if !names.contains(&t.name) {
                names.push(t.name.clone());
            }
        }
    }
    let cell = |run: &Run, name: &str| {
        run.tests.iter().find(|t| t.name == name).map_or("-".to_string(), |t| t.result.to_string())
    };
    names
        .into_iter()
        .map(|n| Row { cells: r.arches.iter().flat_map(|a| [cell(&a.base, &n), cell(&a.tip, &n)]).collect(), test: n })
        .collect()
}

pub fn markdown(r: &CheckResult) -> Result<String, minijinja::Error> {
    let env = kbot_templates::text_environment(&[("report.md", MARKDOWN_TEMPLATE)])?;
    env.get_template("report.md")?.render(minijinja::context! {
        r => minijinja::Value::from(minijinja::value::Serde(r)),
        rows => minijinja::Value::from(minijinja::value::Serde(result_rows(r))),
        findings => minijinja::Value::from(minijinja::value::Serde(group::findings(r))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CheckResult {
        let mut r = CheckResult::new(SeriesInfo {
            subject: "fsnotify: things".into(),
            version: 2,
            total: 2,
            message_id: "c@x".into(),
            base: "cb0fbf0941b05b9cbdc3bce17f27e4caf29ab28b".into(),
            patches: vec![
                PatchInfo {
                    index: 1,
                    subject: "one".into(),
                    message_id: "p1@x".into(),
                    author: "A <a@x>".into(),
                    trailers: vec!["Reviewed-by: R <r@x>".into()],
                    ..Default::default()
                },
                PatchInfo {
                    index: 2,
                    subject: "two".into(),
                    message_id: "p2@x".into(),
                    author: "A <a@x>".into(),
                    trailers: vec!["Reviewed-by: R <r@x>".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        r.status = Status::Regression;
        r.apply.ok = true;
        r.reported_by = "Reported-by: kbot <kbot@localhost>".into();
        r.arches.push(ArchResult {
            arch: "x86_64".into(),
            base: Run {
                build: BuildState::Pass,
                tests: vec![TestResult { name: "t".into(), result: Outcome::Pass, detail: "7 ms".into() }],
                ..Default::default()
            },
            tip: Run {
                build: BuildState::Pass,
                tests: vec![TestResult { name: "t".into(), result: Outcome::Hang, detail: "blocked".into() }],
                ..Default::default()
            },
            regressions: vec![Regression {
                test: "t".into(),
                kind: RegressionKind::Hang,
                first_bad: Some(FirstBad {
                    index: 2,
                    subject: "two".into(),
                    message_id: "p2@x".into(),
                    commit: "abc".into(),
                }),
                evidence: "close() blocked".into(),
                bisect: "bisected".into(),
            }],
            ..Default::default()
        });
        r
    }

    #[test]
    fn json_has_the_contract_fields() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(v["schema"], "kbot.result/v1");
        assert_eq!(v["status"], "regression");
        assert_eq!(v["series"]["patches"][1]["index"], 2);
        assert_eq!(v["apply"]["failed_patch"], serde_json::Value::Null);
        assert_eq!(v["arches"][0]["tip"]["tests"][0]["result"], "hang");
        assert_eq!(v["arches"][0]["regressions"][0]["first_bad"]["index"], 2);
        assert!(v["timings"]["total_s"].is_number());
        // Each status is exactly its word, in the JSON and in `as_str`, and reads back; the
        // exit status of `kbot check` is part of the contract too.
        let statuses = [
            (Status::Clean, "clean", 0),
            (Status::Regression, "regression", 1),
            (Status::ApplyFailed, "apply-failed", 1),
            (Status::Incomplete, "incomplete", 1),
            (Status::Error, "error", 2),
        ];
        for (s, word, code) in statuses {
            // No wildcard: a new status stops this test compiling until it is given its word here.
            match s {
                Status::Clean | Status::Regression | Status::ApplyFailed | Status::Incomplete | Status::Error => {}
            }
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::Value::from(word), "{s:?}");
            assert_eq!(s.as_str(), word, "{s:?}");
            assert_eq!(serde_json::from_value::<Status>(word.into()).unwrap(), s);
            assert_eq!(s.exit_code(), code, "{s:?}");
            let mut r = sample();
            r.status = s;
            let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
            assert_eq!(v["status"], word, "{s:?}");
        }
        assert!(serde_json::from_value::<Status>("apply_failed".into()).is_err());
        assert!(serde_json::from_value::<Status>("Clean".into()).is_err());
    }

    #[test]
    fn shell_lines_quote_what_a_shell_would_run() {
        // Pasted into a real shell, each line gives back exactly its words and runs nothing.
        let dir = std::env::temp_dir().join(format!("kbot-shell-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("x");
        let hostile = [
            format!("c9'$(touch${{IFS}}{})'@example.org", marker.display()),
            format!("a`touch {}`b@x", marker.display()),
            "x\"; touch /dev/null; \"y".to_string(),
            "sp ace\ttab\nnewline!*?[a]~{a,b}".to_string(),
            String::new(),
        ];
        for w in &hostile {
            let words = ["--msgid", w.as_str(), "--lore", "http://127.0.0.1:8/x/"];
            let line = shell_line(&words);
            let out =
                std::process::Command::new("bash").arg("-c").arg(format!("printf '%s\\0' {line}")).output().unwrap();
            let got: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().split_terminator('\0').collect();
            assert_eq!(got, words, "{line}");
        }
        assert!(!marker.exists(), "a reproduce line ran a command");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(shell_line(&["a\0b"]), "'<invalid>'");
        // Plain ids and URLs stay readable.
        assert_eq!(
            shell_line(&["--msgid", "cover.1795614032.git.alice@example.org"]),
            "--msgid cover.1795614032.git.alice@example.org"
        );
    }

    #[test]
    fn markdown_names_first_bad_patch_and_trailer() {
        let md = markdown(&sample()).unwrap();
        assert!(md.contains("[PATCH v2 2/2] two"), "{md}");
        assert!(md.contains("Reported-by: kbot <kbot@localhost>"), "{md}");
        assert!(md.contains("close() blocked"), "{md}");
        assert!(md.contains("REGRESSION"), "{md}");
        assert!(md.contains("| Reviewed-by: R <r@x> |"), "{md}");
    }
}
