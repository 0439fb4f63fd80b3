//! GitHub reporting for trees hosted there: the tested commit gets a commit status
//! (`kbot`: success, failure or error, linking to the dashboard) and, for a regression, each
//! open pull request containing it gets one comment with the summary. Works with a personal
//! or app token; the API base is configurable (GitHub Enterprise). Rate limits (403/429) and
//! server errors are retried with a growing pause; the caller records what was posted so a
//! result is never posted twice.

use kbot_report::CheckResult;
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
    let (state, text) = match r.status.as_str() {
        "clean" => ("success", "kbot: no regression".to_string()),
        "regression" => ("failure", format!("kbot: {} regression(s): {}", regs.len(), regs.join(", "))),
        "error" => ("error", format!("kbot: {}", r.error.clone().unwrap_or_else(|| "error".into()))),
        s => ("failure", format!("kbot: {s}")),
    };
    (state, text.chars().take(140).collect())
}

/// The pull request comment for a regression (Markdown).
pub fn comment_of(r: &CheckResult, link: Option<&str>) -> String {
    let mut s = String::from("**kbot found a regression** in the commits of this pull request.\n\n");
    s += "| arch | test | kind | first bad commit |\n|---|---|---|---|\n";
    for a in &r.arches {
        for g in &a.regressions {
            let fb = g
                .first_bad
                .as_ref()
                .map(|f| format!("`{}` {}", &f.commit[..f.commit.len().min(12)], f.subject.replace('|', "\\|")))
                .unwrap_or_else(|| "not found".into());
            s += &format!("| {} | `{}` | {} | {} |\n", a.arch, g.test, g.kind, fb);
        }
    }
    if let Some(first) = r.arches.iter().flat_map(|a| &a.regressions).next() {
        s += "\n<details><summary>evidence</summary>\n\n```\n";
        s += &first.evidence.lines().take(30).collect::<Vec<_>>().join("\n");
        s += "\n```\n</details>\n";
    }
    s += &format!("\n{}\n", r.reported_by);
    if let Some(l) = link {
        s += &format!("Closes: {l}\n\nFull results, logs and the bisection: {l}\n");
    }
    s
}

fn client(t: &Target) -> Result<Octocrab, String> {
    Octocrab::builder()
        .base_uri(t.api)
        .map_err(|e| format!("github api {}: {e}", t.api))?
        .personal_token(t.token.clone())
        .set_connect_timeout(Some(Duration::from_secs(20)))
        .set_read_timeout(Some(Duration::from_secs(30)))
        .build()
        .map_err(|e| format!("github client: {e}"))
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

async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, String>
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
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
    unreachable!()
}

/// Sets the `kbot` commit status on `sha`.
pub async fn post_status(t: &Target<'_>, sha: &str, r: &CheckResult, link: Option<&str>) -> Result<(), String> {
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
pub async fn pulls_of(t: &Target<'_>, sha: &str) -> Result<Vec<u64>, String> {
    let gh = client(t)?;
    let route = format!("/repos/{}/commits/{sha}/pulls", t.repo);
    let v: Value = retry("pull requests", || gh.get::<Value, _, ()>(route.clone(), None)).await?;
    Ok(v.as_array()
        .map(|a| a.iter().filter(|p| p["state"] == "open").filter_map(|p| p["number"].as_u64()).collect())
        .unwrap_or_default())
}

/// Comments on pull request `number`.
pub async fn post_comment(t: &Target<'_>, number: u64, body: &str) -> Result<(), String> {
    let gh = client(t)?;
    let route = format!("/repos/{}/issues/{number}/comments", t.repo);
    let b = json!({"body": body});
    retry("pull request comment", || gh.post::<_, Value>(route.clone(), Some(&b))).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_comment_text() {
        let r =
            CheckResult::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../kbot-mail/testdata/srcu-stall-regression.json"))
                .unwrap();
        let (state, d) = status_of(&r);
        assert_eq!(state, "failure");
        assert!(
            d.starts_with("kbot: 2 regression(s): x86_64 inotify_close_with_pending_perm") && d.chars().count() <= 140,
            "{d}"
        );
        let c = comment_of(&r, Some("https://k/runs/3"));
        assert!(c.contains("| x86_64 | `fanotify_close_with_pending_perm` | hang | `de9d78b04111`"), "{c}");
        assert!(c.contains("Closes: https://k/runs/3"));
    }
}
