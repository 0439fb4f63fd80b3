//! Per-patch checks in the spirit of patchwork/NIPA, reported as success / warning / fail.
//! Pure: whether a commit exists is asked through a callback.

use crate::{Patch, Series};
pub use kbot_report::CheckState;

/// A check's result, as in `kbot.result/v1`.
pub use kbot_report::CheckInfo as CheckItem;

fn item(name: &str, state: CheckState, detail: impl Into<String>) -> CheckItem {
    CheckItem { name: name.into(), state, detail: detail.into() }
}

/// The address in `Name <addr>` (or a bare address), lower-cased.
pub fn address(s: &str) -> String {
    let a = match (s.rfind('<'), s.rfind('>')) {
        (Some(i), Some(j)) if i < j => &s[i + 1..j],
        _ => s.trim(),
    };
    a.trim().to_ascii_lowercase()
}

/// The patch's own trailer lines of a kind (from the commit message, before `---`).
fn own_trailers<'a>(body: &'a str, kind: &str) -> Vec<&'a str> {
    body.lines()
        .take_while(|l| *l != "---")
        .filter_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(kind)).map(|(_, v)| v.trim()))
        .collect()
}

pub fn patch_checks(p: &Patch, commit_exists: &dyn Fn(&str) -> bool) -> Vec<CheckItem> {
    let mut v = Vec::new();
    let body = &p.mail.body;
    let sobs = own_trailers(body, "Signed-off-by");
    let from = address(&p.author);
    v.push(if sobs.is_empty() {
        item("signed-off-by", CheckState::Fail, "no Signed-off-by: line")
    } else if sobs.iter().any(|s| address(s) == from) {
        item("signed-off-by", CheckState::Success, format!("Signed-off-by matches From <{from}>"))
    } else {
        item(
            "signed-off-by",
            CheckState::Warning,
            format!("no Signed-off-by from the author <{from}>: {}", sobs.join(", ")),
        )
    });
    for f in own_trailers(body, "Fixes") {
        let sha = f.split_whitespace().next().unwrap_or("");
        let well_formed = sha.len() >= 12 && sha.chars().all(|c| c.is_ascii_hexdigit()) && f.contains("(\"");
        v.push(if !commit_exists(sha) {
            item("fixes", CheckState::Fail, format!("Fixes: {f}: no such commit in the tree"))
        } else if !well_formed {
            item(
                "fixes",
                CheckState::Warning,
                format!("Fixes: {f}: use at least 12 characters of the id and (\"subject\")"),
            )
        } else {
            item("fixes", CheckState::Success, format!("Fixes: {f}"))
        });
    }
    let s = &p.subject;
    v.push(match s.split_once(": ") {
        _ if s.chars().count() > 75 => item(
            "subject",
            CheckState::Warning,
            format!("subject is {} characters long (at most 75)", s.chars().count()),
        ),
        Some((prefix, rest)) if !prefix.is_empty() && !rest.trim().is_empty() => {
            item("subject", CheckState::Success, "subsystem: summary")
        }
        _ => item("subject", CheckState::Warning, "subject lacks a 'subsystem: ' prefix"),
    });
    v
}

/// Checks of the series as a whole.
pub fn series_checks(s: &Series) -> Vec<CheckItem> {
    let mut v = Vec::new();
    if s.total > 2 && s.cover.is_none() {
        v.push(item(
            "cover-letter",
            CheckState::Warning,
            format!("a series of {} patches has no cover letter", s.total),
        ));
    } else if s.cover.is_some() {
        v.push(item("cover-letter", CheckState::Success, "cover letter present"));
    }
    v.push(match &s.base_commit {
        Some(b) => item("base-commit", CheckState::Success, format!("base-commit: {b}")),
        None => item("base-commit", CheckState::Warning, "no base-commit: footer (git format-patch --base)"),
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(author: &str, subject: &str, body: &str) -> Patch {
        let raw = format!("From: {author}\nSubject: [PATCH] {subject}\nMessage-ID: <m@x>\n\n{body}\n");
        let mail = kbot_mbox::parse_mail(raw.into_bytes(), 1).unwrap();
        Patch { index: 1, subject: subject.into(), message_id: "m@x".into(), author: author.into(), mail }
    }

    fn states(v: &[CheckItem]) -> Vec<(&str, &str)> {
        v.iter().map(|c| (c.name.as_str(), c.state.as_str())).collect()
    }

    #[test]
    fn signed_off_fixes_and_subject() {
        let exists = |sha: &str| sha.starts_with("3e8ed0ead64c");
        let good = patch(
            "Ann <ann@x.org>",
            "fsnotify: fix it",
            "Fixes: 3e8ed0ead64c (\"base\")\nSigned-off-by: Ann <ANN@x.org>\n---\n",
        );
        assert_eq!(
            states(&patch_checks(&good, &exists)),
            [("signed-off-by", "success"), ("fixes", "success"), ("subject", "success")]
        );
        let bad = patch(
            "Ann <ann@x.org>",
            "fix it",
            "Fixes: deadbeef0000 (\"x\")\nSigned-off-by: Bob <bob@x.org>\n---\nSigned-off-by: Ann <ann@x.org>\n",
        );
        assert_eq!(
            states(&patch_checks(&bad, &exists)),
            [("signed-off-by", "warning"), ("fixes", "fail"), ("subject", "warning")]
        );
        let none = patch("Ann <ann@x.org>", "fsnotify: x", "no trailers\n");
        assert_eq!(patch_checks(&none, &exists)[0].state, CheckState::Fail);
        let short = patch("Ann <ann@x.org>", "fsnotify: x", "Fixes: 3e8ed0ead64c\nSigned-off-by: Ann <ann@x.org>\n");
        assert_eq!(patch_checks(&short, &exists)[1].state, CheckState::Warning);
    }

    #[test]
    fn addresses() {
        assert_eq!(address("Jörg <J@X.org>"), "j@x.org");
        assert_eq!(address(" j@x.org "), "j@x.org");
    }
}
