//! Does a series apply to a commit? Checked in memory with libgit2 (`apply_to_tree` into an
//! in-memory object store): no worktree and no object of the repository is touched, so trying
//! many candidate bases costs no rebuild. (`git am` in kbot's worktree would check out each
//! candidate and dirty the incremental build.)

use git2::{Diff, Oid, Repository};
use std::path::Path;

/// Why a series does not apply to a base: the first patch that fails (0-based) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyFailure {
    pub patch: usize,
    pub detail: String,
}

/// A repository opened for apply checks; the objects the checks write stay in memory.
pub struct ApplyChecker {
    repo: Repository,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckError(#[from] git2::Error);

/// One ref a base may be taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// How the user names it: `HEAD`, `next`, `origin/master`, `v6.12`.
    pub name: String,
    pub commit: String,
    /// The commit's committer time (seconds since the epoch): newer wins.
    pub time: i64,
}

/// The body's diff: from the first `diff --git` (or `--- `) line to the signature.
pub fn diff_of(body: &str) -> Option<&str> {
    let start = ["\ndiff --git ", "\n--- "]
        .iter()
        .filter_map(|m| body.find(m).map(|i| i + 1))
        .min()
        .or_else(|| (body.starts_with("diff --git ") || body.starts_with("--- ")).then_some(0))?;
    let d = &body[start..];
    Some(d.find("\n-- \n").map(|end| &d[..end + 1]).unwrap_or(d))
}

impl ApplyChecker {
    pub fn open(path: &Path) -> Result<ApplyChecker, CheckError> {
        let repo = Repository::open(path)?;
        // Written trees go to this backend (highest priority) and are never dumped.
        repo.odb()?.add_new_mempack_backend(1000)?;
        Ok(ApplyChecker { repo })
    }

    /// `HEAD`, local and remote-tracking branches and the `tags` newest tags, one per commit
    /// (the first name found wins: HEAD, then branches), newest commit first. With `only`,
    /// just those refs (a name or a full ref; unknown ones are skipped).
    pub fn candidates(&self, only: Option<&[String]>, tags: usize) -> Result<Vec<Candidate>, CheckError> {
        let mut out: Vec<Candidate> = Vec::new();
        let add = |name: String, oid: Oid, out: &mut Vec<Candidate>| -> Result<(), CheckError> {
            let c = self.repo.find_commit(oid)?;
            if !out.iter().any(|x| x.commit == c.id().to_string()) {
                out.push(Candidate { name, commit: c.id().to_string(), time: c.time().seconds() });
            }
            Ok(())
        };
        if let Some(only) = only {
            for name in only {
                if let Ok(obj) = self.repo.revparse_single(name) {
                    if let Ok(c) = obj.peel_to_commit() {
                        add(name.clone(), c.id(), &mut out)?;
                    }
                }
            }
        } else {
            if let Ok(c) = self.repo.head().and_then(|h| h.peel_to_commit()) {
                add("HEAD".into(), c.id(), &mut out)?;
            }
            for b in self.repo.branches(None)? {
                let (b, _) = b?;
                let Some(name) = b.name()?.map(str::to_string) else { continue };
                if name.ends_with("/HEAD") {
                    continue;
                }
                if let Ok(c) = b.get().peel_to_commit() {
                    add(name, c.id(), &mut out)?;
                }
            }
            let mut tagged: Vec<Candidate> = Vec::new();
            for name in self.repo.tag_names(None)?.iter().flatten() {
                if let Ok(c) = self.repo.revparse_single(&format!("refs/tags/{name}")).and_then(|o| o.peel_to_commit())
                {
                    tagged.push(Candidate {
                        name: name.to_string(),
                        commit: c.id().to_string(),
                        time: c.time().seconds(),
                    });
                }
            }
            tagged.sort_by(|a, b| b.time.cmp(&a.time).then(a.name.cmp(&b.name)));
            for t in tagged.into_iter().take(tags) {
                if !out.iter().any(|x| x.commit == t.commit) {
                    out.push(t);
                }
            }
        }
        // Stable: equal times keep HEAD and branches before tags.
        out.sort_by_key(|c| std::cmp::Reverse(c.time));
        Ok(out)
    }

    /// Applies the diffs one after the other to `base`'s tree, in memory.
    pub fn check(&self, base: &str, diffs: &[&str]) -> Result<Result<(), ApplyFailure>, CheckError> {
        let mut tree = self.repo.revparse_single(base)?.peel_to_commit()?.tree()?;
        for (i, d) in diffs.iter().enumerate() {
            let diff = match Diff::from_buffer(d.as_bytes()) {
                Ok(d) => d,
                Err(e) => {
                    return Ok(Err(ApplyFailure { patch: i, detail: format!("unreadable diff: {}", e.message()) }))
                }
            };
            let mut index = match self.repo.apply_to_tree(&tree, &diff, None) {
                Ok(ix) => ix,
                Err(e) => return Ok(Err(ApplyFailure { patch: i, detail: e.message().to_string() })),
            };
            let oid = index.write_tree_to(&self.repo)?;
            tree = self.repo.find_tree(oid)?;
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbot_testdata::git as run;

    fn patch(path: &str, old: &str, new: &str) -> String {
        format!(
            "Subject: change\n\n---\ndiff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-{old}\n+{new}\n-- \n2.39.5\n"
        )
    }

    #[test]
    fn diff_of_cuts_the_message_and_the_signature() {
        let body = patch("f", "a", "b");
        let d = diff_of(&body).unwrap();
        assert!(d.starts_with("diff --git a/f b/f\n") && d.ends_with("+b\n"), "{d:?}");
        assert_eq!(diff_of("no diff here\n"), None);
        assert!(diff_of("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n").unwrap().starts_with("--- a/f"));
    }

    #[test]
    fn picks_the_branch_the_series_applies_to_and_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        run(r, &["init", "-q", "-b", "main"]);
        std::fs::write(r.join("f"), "a\n").unwrap();
        run(r, &["add", "f"]);
        run(r, &["commit", "-q", "-m", "root", "--date", "2020-01-01T00:00:00Z"]);
        run(r, &["checkout", "-q", "-b", "next"]);
        std::fs::write(r.join("f"), "n\n").unwrap();
        run(r, &["commit", "-q", "-am", "next", "--date", "2020-01-02T00:00:00Z"]);
        run(r, &["checkout", "-q", "main"]);
        run(r, &["tag", "v1"]);
        let objects = || run(r, &["count-objects", "-v"]);
        let before = objects();
        let c = ApplyChecker::open(r).unwrap();
        let names: Vec<String> = c.candidates(None, 5).unwrap().into_iter().map(|c| c.name).collect();
        // v1 is the commit HEAD is at: listed once, by the first name.
        assert_eq!(names, ["HEAD", "next"].map(String::from).to_vec());
        let on_next = patch("f", "n", "m");
        let second = patch("f", "m", "z");
        assert_eq!(c.check("next", &[diff_of(&on_next).unwrap(), diff_of(&second).unwrap()]).unwrap(), Ok(()));
        let e = c.check("main", &[diff_of(&on_next).unwrap()]).unwrap().unwrap_err();
        assert_eq!(e.patch, 0);
        // The second patch fails on next when the first is left out.
        assert_eq!(c.check("next", &[diff_of(&second).unwrap()]).unwrap().unwrap_err().patch, 0);
        let only = c.candidates(Some(&["next".into(), "nope".into()]), 5).unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].name, "next");
        assert_eq!(objects(), before, "the checks wrote objects into the repository");
        assert_eq!(std::fs::read_to_string(r.join("f")).unwrap(), "a\n");
    }
}
