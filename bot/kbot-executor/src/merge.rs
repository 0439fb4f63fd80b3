//! One `kbot.result/v1` from the results of one job's arches, each checked by its own
//! `kbot check --arch <arch>` (a Slurm job each): the same document, verdicts and first bad
//! patch as one `kbot check --arch x86_64,arm64` gives.

use kbot_report::{CheckResult, Status};

/// Merges the per-arch results of one job, given in the order of the service's `arches`.
/// `None` when there are none.
///
/// - An apply failure or an incomplete series is the same on every arch (both are decided
///   before anything is built): the first such result is the job's.
/// - Otherwise the arches are put side by side and the status is decided as `kbot check`
///   decides it ([`kbot_runner::check::status_of`]): any regression wins, else an arch's error,
///   else clean. A part that is an error without arches (it stopped before testing) makes the
///   job an error with that part's reason.
/// - Series, patches and their checks, environment, reproduce lines and scenarios are the first
///   part's; the kernel configs of all arches are named; the total time is the longest part's
///   (they ran side by side), the stages are the first part's and each other part's own arch
///   stages.
pub fn merge(parts: Vec<CheckResult>) -> Option<CheckResult> {
    let mut parts = parts.into_iter();
    let mut out = parts.next()?;
    let rest: Vec<CheckResult> = parts.collect();
    if matches!(out.status, Status::ApplyFailed | Status::Incomplete) {
        return Some(out);
    }
    if let Some(r) = rest.iter().find(|r| matches!(r.status, Status::ApplyFailed | Status::Incomplete)) {
        return Some(r.clone());
    }
    let mut armless_error = (out.status == Status::Error && out.arches.is_empty()).then(|| out.error.clone());
    for r in rest {
        if armless_error.is_none() && r.status == Status::Error && r.arches.is_empty() {
            armless_error = Some(r.error.clone());
        }
        out.timings.total_s = out.timings.total_s.max(r.timings.total_s);
        for a in &r.arches {
            let own = format!("{}.", a.arch);
            out.timings.stages.extend(r.timings.stages.iter().filter(|(n, _)| n.starts_with(&own)).cloned());
        }
        out.environment.config = merge_config(&out.environment.config, &r.environment.config);
        out.arches.extend(r.arches);
    }
    let (status, error) = kbot_runner::check::status_of(&out.arches);
    (out.status, out.error) = match (status, armless_error) {
        (Status::Regression, _) => (Status::Regression, None),
        (_, Some(e)) => (Status::Error, e),
        (s, None) => (s, error),
    };
    Some(out)
}

/// `"tinyconfig + ... (x86_64:k1)"` and `"tinyconfig + ... (arm64:k2)"` as
/// `"tinyconfig + ... (x86_64:k1, arm64:k2)"`; different texts are joined with `; `.
fn merge_config(a: &str, b: &str) -> String {
    match (a.rsplit_once(" ("), b.rsplit_once(" (")) {
        (Some((ha, ta)), Some((hb, tb))) if ha == hb => {
            format!("{ha} ({}, {}", ta.trim_end_matches(')'), tb)
        }
        _ if a.is_empty() || a == b => b.to_string(),
        _ if b.is_empty() => a.to_string(),
        _ => format!("{a}; {b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbot_report::{ArchResult, FirstBad, Regression, RegressionKind, SeriesInfo};

    fn part(arch: &str, regression_at: Option<u32>, error: Option<&str>) -> CheckResult {
        let mut r = CheckResult::new(SeriesInfo { subject: "s".into(), total: 3, ..Default::default() });
        let mut a = ArchResult { arch: arch.into(), error: error.map(str::to_string), ..Default::default() };
        if let Some(i) = regression_at {
            a.regressions.push(Regression {
                test: "fanotify_close_with_pending_perm".into(),
                kind: RegressionKind::Hang,
                first_bad: Some(FirstBad {
                    index: i,
                    subject: format!("patch {i}"),
                    message_id: String::new(),
                    commit: String::new(),
                }),
                evidence: String::new(),
                bisect: String::new(),
            });
        }
        (r.status, r.error) = kbot_runner::check::status_of(std::slice::from_ref(&a));
        r.arches.push(a);
        r.timings.total_s = 10.0 * f64::from(regression_at.unwrap_or(1));
        r.timings.stages =
            vec![("parse".into(), 0.1), (format!("{arch}.build.base"), 5.0), (format!("{arch}.boot.tip"), 2.0)];
        r.environment.config = format!("tinyconfig + frag ({arch}:k-{arch})");
        r
    }

    /// What one `kbot check` of both arches would say, for every combination of verdicts.
    #[test]
    fn same_verdicts_as_one_check_of_both_arches() {
        // (x86_64 regression at, x86_64 error, arm64 regression at, arm64 error)
        type Case<'a> = (Option<u32>, Option<&'a str>, Option<u32>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (None, None, None, None),
            (Some(2), None, None, None),
            (None, None, Some(2), None),
            (Some(3), None, Some(2), None),
            (None, Some("build failed"), None, None),
            (None, None, None, Some("boot timed out")),
            (Some(2), None, None, Some("boot timed out")),
        ];
        for (xr, xe, ar, ae) in cases {
            let x = part("x86_64", xr, xe);
            let a = part("arm64", ar, ae);
            let both = [x.arches[0].clone(), a.arches[0].clone()];
            let (want, want_error) = kbot_runner::check::status_of(&both);
            let m = merge(vec![x, a]).unwrap();
            assert_eq!((m.status, m.error.clone()), (want, want_error), "{xr:?} {xe:?} {ar:?} {ae:?}");
            let arches: Vec<&str> = m.arches.iter().map(|a| a.arch.as_str()).collect();
            assert_eq!(arches, ["x86_64", "arm64"]);
            let expect_first = [xr, ar].into_iter().flatten().min();
            assert_eq!(m.first_bad().map(|f| f.index), expect_first);
        }
    }

    #[test]
    fn times_stages_and_configs() {
        let m = merge(vec![part("x86_64", Some(3), None), part("arm64", Some(2), None)]).unwrap();
        assert_eq!(m.timings.total_s, 30.0, "the longest part: they ran side by side");
        let names: Vec<&str> = m.timings.stages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["parse", "x86_64.build.base", "x86_64.boot.tip", "arm64.build.base", "arm64.boot.tip"]);
        assert_eq!(m.environment.config, "tinyconfig + frag (x86_64:k-x86_64, arm64:k-arm64)");
        assert_eq!(merge_config("", "b"), "b");
        assert_eq!(merge_config("a", "b"), "a; b");
    }

    #[test]
    fn apply_failures_incomplete_series_and_early_errors() {
        let mut failed = part("arm64", None, None);
        failed.status = Status::ApplyFailed;
        failed.arches.clear();
        let m = merge(vec![part("x86_64", None, None), failed]).unwrap();
        assert_eq!((m.status, m.arches.len()), (Status::ApplyFailed, 0));

        let mut early = part("arm64", None, None);
        (early.status, early.error) = (Status::Error, Some("no tree".into()));
        early.arches.clear();
        let m = merge(vec![part("x86_64", None, None), early.clone()]).unwrap();
        assert_eq!((m.status, m.error.as_deref()), (Status::Error, Some("no tree")));
        // A regression still wins (as in one check: what was found is reported).
        let m = merge(vec![part("x86_64", Some(2), None), early]).unwrap();
        assert_eq!(m.status, Status::Regression);
        assert!(merge(Vec::new()).is_none());
    }
}
