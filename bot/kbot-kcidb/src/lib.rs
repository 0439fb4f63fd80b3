//! KCIDB export (schema v5.3, validated in the tests with the `kcidb-io` package): one
//! checkout per run (the base plus the series' patches, `patchset_hash` and `message_id`; for a
//! tree range the tip commit), one build per arch of the tip, the tip's tests with dotted
//! paths under `kbot.`, and one issue with its incident per regression (culprit: the code).
//! Ids are `kbot:<run>[-...]`.

use kbot_queue::JobKind;
use kbot_report::{BootState, BuildState, CheckResult, Outcome, Run};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const ORIGIN: &str = "kbot";

/// What the export needs to know about a run besides its result.
pub struct RunInfo<'a> {
    pub id: i64,
    pub kind: JobKind,
    pub tree: &'a str,
    /// Start time, seconds since the epoch.
    pub started: i64,
    /// The patches as applied (each a git-apply-able mail), in order; empty for a range.
    pub patches: &'a [Vec<u8>],
    /// The dashboard's page of the run, when the dashboard has a public URL.
    pub url: Option<&'a str>,
}

/// KCIDB's patchset hash: sha256 over the newline-terminated sha256 hex of each patch.
pub fn patchset_hash(patches: &[Vec<u8>]) -> String {
    if patches.is_empty() {
        return String::new();
    }
    let mut all = String::new();
    for p in patches {
        all.push_str(&format!("{:x}\n", Sha256::digest(p)));
    }
    format!("{:x}", Sha256::digest(all.as_bytes()))
}

/// A test name as a KCIDB path component: `[a-zA-Z0-9_-]`, `/` becoming `.`.
pub fn path_of(name: &str) -> String {
    let parts: Vec<String> = name
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| p.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect())
        .collect();
    format!("kbot.{}", parts.join("."))
}

/// kbot's test results as KCIDB statuses.
/// KCIDB's status of a test outcome.
pub fn status_of(result: Outcome) -> &'static str {
    match result {
        Outcome::Pass => "PASS",
        Outcome::Skip => "SKIP",
        Outcome::Fail | Outcome::Hang => "FAIL",
    }
}

fn rfc3339(t: i64) -> String {
    let [y, m, d, h, mi, se] = kbot_report::utc(t);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{se:02}+00:00")
}

fn id_part(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).collect()
}

fn log_url(run: &RunInfo, arch: &str, path: &str) -> Option<String> {
    let name = std::path::Path::new(path).file_name()?.to_string_lossy().into_owned();
    run.url.map(|u| format!("{u}/logs/{arch}/{name}"))
}

/// The run as one KCIDB document.
pub fn export(run: &RunInfo, r: &CheckResult) -> Value {
    let checkout_id = format!("{ORIGIN}:{}", run.id);
    let start = rfc3339(run.started);
    let mut checkout = json!({
        "id": checkout_id, "origin": ORIGIN, "tree_name": run.tree,
        "patchset_hash": if run.kind == JobKind::Range { String::new() } else { patchset_hash(run.patches) },
        "start_time": start, "valid": r.apply.ok,
        "comment": r.series.subject,
        "misc": {"kbot_status": r.status.as_str(), "base": r.series.base},
    });
    let tip_commit = r.series.patches.last().and_then(|p| p.commit.clone());
    let head = if run.kind == JobKind::Range {
        tip_commit.unwrap_or_else(|| r.series.base.clone())
    } else {
        r.series.base.clone()
    };
    if head.len() == 40 {
        checkout["git_commit_hash"] = json!(head);
    }
    if run.kind != JobKind::Range && !r.series.message_id.is_empty() {
        checkout["message_id"] = json!(r.series.message_id);
    }
    if let Some(u) = run.url {
        checkout["log_url"] = json!(u);
    }
    let mut builds = Vec::new();
    let mut tests = Vec::new();
    let mut issues = Vec::new();
    let mut incidents = Vec::new();
    for a in &r.arches {
        let build_id = format!("{checkout_id}-{}", id_part(&a.arch));
        let tip: &Run = &a.tip;
        let mut b = json!({
            "id": build_id, "checkout_id": checkout_id, "origin": ORIGIN, "architecture": a.arch,
            "compiler": r.environment.compiler, "config_name": "tinyconfig+kbot",
            "start_time": start, "duration": tip.build_s,
            "status": match tip.build { BuildState::Pass => "PASS", BuildState::Fail => "FAIL", BuildState::Skip => "MISS" },
        });
        if let Some(u) = log_url(run, &a.arch, &tip.build_log) {
            b["log_url"] = json!(u);
        }
        if let Some(e) = &a.error {
            b["comment"] = json!(e);
        }
        builds.push(b);
        let console = log_url(run, &a.arch, &tip.console_log);
        let mut test_ids = std::collections::BTreeMap::new();
        let boot_id = format!("{build_id}-boot");
        let mut boot = json!({
            "id": boot_id, "build_id": build_id, "origin": ORIGIN, "path": "kbot.boot",
            "status": match tip.boot {
                BootState::Pass => "PASS",
                BootState::Skip => "MISS",
                BootState::Timeout => "ERROR",
                BootState::Fail => "FAIL",
            },
            "start_time": start, "duration": tip.boot_s,
        });
        if let Some(u) = &console {
            boot["log_url"] = json!(u);
        }
        tests.push(boot);
        test_ids.insert("boot".to_string(), boot_id);
        for (n, t) in tip.tests.iter().enumerate() {
            let id = format!("{build_id}-t{n}");
            let mut x = json!({
                "id": id, "build_id": build_id, "origin": ORIGIN, "path": path_of(&t.name),
                "status": status_of(t.result), "start_time": start,
                "misc": {"kbot_result": t.result},
            });
            if !t.detail.is_empty() {
                x["comment"] = json!(t.detail.chars().take(1000).collect::<String>());
            }
            if let Some(u) = &console {
                x["log_url"] = json!(u);
            }
            tests.push(x);
            test_ids.insert(t.name.clone(), id);
        }
        for g in &a.regressions {
            let issue_id = format!("{checkout_id}-{}-{}", id_part(&a.arch), id_part(&g.test));
            let culprit = g
                .first_bad
                .as_ref()
                .map(|f| format!(" at [{}/{}] {}", f.index, r.series.total, f.subject))
                .unwrap_or_default();
            let mut issue = json!({
                "id": issue_id, "version": 1, "origin": ORIGIN,
                "report_subject": format!("{}: {} ({}){culprit}", a.arch, g.test, g.kind),
                "culprit": {"code": true, "tool": false, "harness": false},
                "comment": g.evidence.lines().next().unwrap_or("").chars().take(500).collect::<String>(),
            });
            if let Some(u) = run.url {
                issue["report_url"] = json!(u);
            }
            issues.push(issue);
            let mut inc = json!({
                "id": format!("{issue_id}-tip"), "origin": ORIGIN, "issue_id": issue_id, "issue_version": 1, "present": true,
            });
            match test_ids.get(&g.test) {
                Some(t) if g.test != "build" => inc["test_id"] = json!(t),
                _ => inc["build_id"] = json!(build_id),
            }
            incidents.push(inc);
        }
    }
    json!({
        "version": {"major": 5, "minor": 3},
        "checkouts": [checkout], "builds": builds, "tests": tests, "issues": issues, "incidents": incidents,
    })
}

/// Several runs as one document.
pub fn merge(docs: Vec<Value>) -> Value {
    let mut out = json!({"version": {"major": 5, "minor": 3}, "checkouts": [], "builds": [], "tests": [], "issues": [], "incidents": []});
    for d in docs {
        for k in ["checkouts", "builds", "tests", "issues", "incidents"] {
            if let (Some(dst), Some(src)) = (out[k].as_array_mut(), d[k].as_array()) {
                dst.extend(src.iter().cloned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regression_run() {
        let r = CheckResult::load(kbot_testdata::fixture("srcu-stall-regression.json")).unwrap();
        let patches = vec![b"a".to_vec(), b"b".to_vec()];
        let run = RunInfo {
            id: 7,
            kind: JobKind::Series,
            tree: "default",
            started: 0,
            patches: &patches,
            url: Some("https://k/runs/7"),
        };
        let v = export(&run, &r);
        assert_eq!(v["checkouts"][0]["id"], "kbot:7");
        assert_eq!(v["checkouts"][0]["message_id"], "cover.1795614032.git.alice@example.org");
        assert_eq!(v["checkouts"][0]["start_time"], "1970-01-01T00:00:00+00:00");
        assert_eq!(v["builds"][0]["id"], "kbot:7-x86_64");
        let tests = v["tests"].as_array().unwrap();
        assert!(tests.iter().any(|t| t["path"] == "kbot.fanotify_close_with_pending_perm" && t["status"] == "FAIL"));
        assert!(tests.iter().all(|t| t["id"].as_str().unwrap().starts_with("kbot:7-x86_64-")));
        assert_eq!(v["issues"].as_array().unwrap().len(), 2);
        let inc = &v["incidents"][0];
        assert!(tests.iter().any(|t| t["id"] == inc["test_id"]), "{inc}");
    }

    #[test]
    fn hashes_and_paths() {
        // sha256sum of "a" and "b", newline-terminated, hashed again (KCIDB's recipe).
        // `sha256sum a b | cut -c-64 | sha256sum | cut -c-64` with files holding "a" and "b".
        assert_eq!(
            patchset_hash(&[b"a".to_vec(), b"b".to_vec()]),
            "bf75fafab8e46555836b92f1b04106b795a9ed36bd39b351f103b28819895f33"
        );
        assert_eq!(patchset_hash(&[]), "");
        assert_eq!(path_of("scenario/random-7-3"), "kbot.scenario.random-7-3");
        assert_eq!(path_of("shadow/wait-in-srcu"), "kbot.shadow.wait-in-srcu");
        assert_eq!(path_of("a b/c:d"), "kbot.a_b.c_d");
        assert_eq!(status_of(Outcome::Hang), "FAIL");
        assert_eq!(status_of(Outcome::Skip), "SKIP");
    }
}
