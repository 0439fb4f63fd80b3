//! GitHub reporting for trees hosted there: the tested commit gets a commit status
//! (`kbot`: success, failure or error, linking to the dashboard) and, for a regression, each
//! open pull request containing it gets one comment with the summary. Works with a personal
//! or app token; the API base is configurable (GitHub Enterprise). Rate limits (403/429) and
//! server errors are retried with a growing pause; the caller records what was posted so a
//! result is never posted twice.

use kbot_report::{CheckResult, Status};
use octocrab::Octocrab;
use serde_json::{json, Value};
use std::time::Duration;

pub struct Target<'a> {
    /// `owner/name`.
    pub repo: &'a str,
    pub api: &'a str,
    pub token: String,
}

/// The commit status for a result: (state, description of at most 140 characters).
pub fn status_of(r: &CheckResult) -> (&'static str, String) {
    let regs: Vec<String> =
        r.arches.iter().flat_map(|a| a.regressions.iter().map(move |g| format!("{} {}", a.arch, g.test))).collect();
    let (state, text) = match r.status {
        Status::Clean => ("success", "kbot: no regression".to_string()),
        Status::Regression => ("failure", format!("kbot: {} regression(s): {}", regs.len(), regs.join(", "))),
        Status::Error => ("error", format!("kbot: {}", r.error.clone().unwrap_or_else(|| "error".into()))),
        s @ (Status::ApplyFailed | Status::Incomplete) => ("failure", format!("kbot: {}", s.as_str())),
    };
    (state, text.chars().take(140).collect())
}

/// The pull request comment for a regression (Markdown), from `templates/github-comment.md.j2`.
pub fn comment_of(r: &CheckResult, link: Option<&str>) -> String {
    let env = kbot_templates::text_environment(&[("github-comment.md", kbot_templates::GITHUB_COMMENT)])
        .expect("the comment template parses");
    let findings: Vec<Value> = kbot_report::group::findings(r)
        .iter()
        .map(|f| {
            let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
            v["brief"] = json!(f.brief(30));
            v
        })
        .collect();
    let ctx = minijinja::context! {
        r => minijinja::Value::from(minijinja::value::Serde(r)),
        findings => minijinja::Value::from(minijinja::value::Serde(findings)),
        link,
    };
    env.get_template("github-comment.md").and_then(|t| t.render(ctx)).expect("the comment template renders")
}

/// A GitHub request that failed (after its retries).
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("github api {api}: {source}")]
    Api { api: String, source: octocrab::Error },
    #[error("github client: {0}")]
    Client(octocrab::Error),
    /// `what` is the request: `commit status`, `pull requests`, `pull request comment`.
    #[error("{what}: {source}")]
    Request { what: &'static str, source: octocrab::Error },
}

fn client(t: &Target) -> Result<Octocrab, GithubError> {
    Octocrab::builder()
        .base_uri(t.api)
        .map_err(|source| GithubError::Api { api: t.api.to_string(), source })?
        .personal_token(t.token.clone())
        .set_connect_timeout(Some(Duration::from_secs(20)))
        .set_read_timeout(Some(Duration::from_secs(30)))
        .build()
        .map_err(GithubError::Client)
}

/// Whether an error is worth trying again: rate limits, server errors, the network.
fn transient(e: &octocrab::Error) -> bool {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let code = source.status_code.as_u16();
            code == 403 && source.message.to_ascii_lowercase().contains("rate limit") || code == 429 || code >= 500
        }
        octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. } => true,
        _ => false,
    }
}

async fn retry<T, F, Fut>(what: &'static str, mut f: F) -> Result<T, GithubError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, octocrab::Error>>,
{
    let mut pause = Duration::from_millis(500);
    for attempt in 1..=5 {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 5 && transient(&e) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(source) => return Err(GithubError::Request { what, source }),
        }
    }
    unreachable!()
}

/// Sets the `kbot` commit status on `sha`.
pub async fn post_status(t: &Target<'_>, sha: &str, r: &CheckResult, link: Option<&str>) -> Result<(), GithubError> {
    let gh = client(t)?;
    let (state, description) = status_of(r);
    let mut body = json!({"state": state, "description": description, "context": "kbot"});
    if let Some(l) = link {
        body["target_url"] = json!(l);
    }
    let route = format!("/repos/{}/statuses/{sha}", t.repo);
    retry("commit status", || gh.post::<_, Value>(route.clone(), Some(&body))).await.map(|_| ())
}

/// The open pull requests that contain `sha`.
pub async fn pulls_of(t: &Target<'_>, sha: &str) -> Result<Vec<u64>, GithubError> {
    let gh = client(t)?;
    let route = format!("/repos/{}/commits/{sha}/pulls", t.repo);
    let v: Value = retry("pull requests", || gh.get::<Value, _, ()>(route.clone(), None)).await?;
    Ok(v.as_array()
        .map(|a| a.iter().filter(|p| p["state"] == "open").filter_map(|p| p["number"].as_u64()).collect())
        .unwrap_or_default())
}

/// Comments on pull request `number`.
pub async fn post_comment(t: &Target<'_>, number: u64, body: &str) -> Result<(), GithubError> {
    let gh = client(t)?;
    let route = format!("/repos/{}/issues/{number}/comments", t.repo);
    let b = json!({"body": body});
    retry("pull request comment", || gh.post::<_, Value>(route.clone(), Some(&b))).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> CheckResult {
        CheckResult::load(kbot_testdata::fixture("srcu-stall-regression.json")).unwrap()
    }

    #[test]
    fn status_and_comment_text() {
        let r = fixture();
        let (state, d) = status_of(&r);
        assert_eq!(state, "failure");
        assert!(
            d.starts_with("kbot: 2 regression(s): x86_64 inotify_close_with_pending_perm") && d.chars().count() <= 140,
            "{d}"
        );
        let c = comment_of(&r, Some("https://k/runs/3"));
        assert!(c.contains("### First bad commit `de9d78b04111` fsnotify: avoid SRCU round trip"), "{c}");
        assert!(c.contains("2 tests break on x86_64 (bisected in 4 steps):"), "{c}");
        assert!(c.contains("| `fanotify_close_with_pending_perm` | hang | x86_64 |"), "{c}");
        assert!(c.contains("Closes: https://k/runs/3"));
    }

    /// The whole comment for the shared fixture, as `testdata/srcu-stall-regression.comment.md`
    /// (`KBOT_BLESS=1` rewrites it after a reviewed change of the template).
    #[test]
    fn comment_golden() {
        let got = comment_of(&fixture(), Some("https://k/runs/3"));
        let want = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/srcu-stall-regression.comment.md");
        if std::env::var_os("KBOT_BLESS").is_some() {
            std::fs::write(&want, &got).unwrap();
        }
        assert_eq!(got, std::fs::read_to_string(&want).unwrap());
    }

    #[test]
    fn comment_edge_cases() {
        let r = fixture();
        let plain = comment_of(&r, None);
        assert!(!plain.contains("Closes:") && plain.ends_with("\n\nReported-by: kbot <kbot@localhost>\n"), "{plain}");
        let mut r2 = r.clone();
        r2.arches[0].regressions[0].first_bad = None;
        if let Some(f) = r2.arches[0].regressions[1].first_bad.as_mut() {
            f.subject = "a | b <c> & {{ d }}".into();
        }
        r2.arches[0].regressions[0].evidence = (0..50).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n");
        let c = comment_of(&r2, None);
        // One group per first bad commit, the one without last.
        let found = c.find("### First bad commit `de9d78b04111` a | b <c> & {{ d }}\n").expect(&c);
        let lost = c.find("### First bad commit not found\n").expect(&c);
        assert!(found < lost, "{c}");
        assert!(c[lost..].contains("| `inotify_close_with_pending_perm` | hang | x86_64 |\n"), "{c}");
        assert!(
            c.contains("```\nline 0\n") && c.contains("\nline 29\n```\n</details>\n") && !c.contains("line 30"),
            "{c}"
        );
        r2.arches[0].regressions[0].evidence = String::new();
        assert!(comment_of(&r2, None).contains("```\n\n```"));
        for a in &mut r2.arches {
            a.regressions.clear();
        }
        assert_eq!(
            comment_of(&r2, Some("u")),
            "**kbot found a regression** in the commits of this pull request.\n\n\
             Reported-by: kbot <kbot@localhost>\nCloses: u\n\nFull results, logs and the bisection: u\n"
        );
    }
}
