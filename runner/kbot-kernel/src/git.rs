//! Trees and worktrees through the `git` command line (no library implements `am`).

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    #[error("git {args} failed in {dir}: {msg}")]
    Failed { args: String, dir: String, msg: String },
}

/// Why a path is not a usable tree.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    #[error("{} is not a git repository", .0.display())]
    NotARepository(PathBuf),
}

fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C").arg(dir);
    // Commits made by `git am` get kbot as committer and the author's date, so the same
    // series on the same base gives the same commit ids (and cache hits).
    c.env("GIT_COMMITTER_NAME", "kbot").env("GIT_COMMITTER_EMAIL", "kbot@localhost");
    c.env("GIT_TERMINAL_PROMPT", "0");
    c
}

pub fn git(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    let out = git_cmd(dir).args(args).output().map_err(GitError::Spawn)?;
    if !out.status.success() {
        let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if msg.is_empty() {
            msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return Err(GitError::Failed { args: args.join(" "), dir: dir.display().to_string(), msg });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A git repository holding a kernel tree.
#[derive(Debug, Clone)]
pub struct Tree {
    pub path: PathBuf,
}

impl Tree {
    /// Opens a repository; the error says what is wrong with `path`.
    pub fn open(path: &Path) -> Result<Tree, OpenError> {
        if !path.is_dir() {
            return Err(OpenError::NotADirectory(path.to_path_buf()));
        }
        match git(path, &["rev-parse", "--show-toplevel"]) {
            Ok(top) => Ok(Tree { path: PathBuf::from(top) }),
            Err(GitError::Spawn(e)) => Err(OpenError::Spawn(e)),
            Err(_) => Err(OpenError::NotARepository(path.to_path_buf())),
        }
    }

    /// The commit `rev` names, if the tree has it.
    pub fn resolve(&self, rev: &str) -> Option<String> {
        git(&self.path, &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")]).ok()
    }

    /// Stable patch ids of the last `n` commits reachable from `rev`: (patch id, commit).
    pub fn patch_ids(&self, rev: &str, n: usize) -> Vec<(String, String)> {
        use std::io::Write;
        // Without the root commit: for an imported tree it is the whole source as one diff.
        let Ok(mut log) = git_cmd(&self.path)
            .args(["-c", "log.showRoot=false", "log", "-p", "--no-color", &format!("-n{n}"), rev])
            .output()
        else {
            return Vec::new();
        };
        // Bound the work: ids of commits past 256 MB of diff are not looked for.
        log.stdout.truncate(256 << 20);
        let Ok(mut child) = git_cmd(&self.path)
            .args(["patch-id", "--stable"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            return Vec::new();
        };
        let mut stdin = child.stdin.take().expect("piped");
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&log.stdout);
        });
        let out = child.wait_with_output().map(|o| o.stdout).unwrap_or_default();
        let _ = feeder.join();
        String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(p, c)| (p.to_string(), c.to_string())))
            .collect()
    }

    pub fn subject(&self, commit: &str) -> Option<String> {
        git(&self.path, &["log", "-1", "--format=%s", commit]).ok()
    }

    /// A detached worktree at `path` owned by kbot, created if needed. Reusing the same path
    /// keeps file mtimes, so kernel builds in it stay incremental.
    pub fn worktree(&self, path: &Path, at: &str) -> Result<Worktree, GitError> {
        let wt = Worktree { path: path.to_path_buf() };
        if path.join(".git").exists() && git(path, &["rev-parse", "HEAD"]).is_ok() {
            wt.clean_up_am();
            return Ok(wt);
        }
        if path.exists() {
            let _ = std::fs::remove_dir_all(path);
        }
        let _ = git(&self.path, &["worktree", "prune"]);
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        git(&self.path, &["worktree", "add", "--detach", "--force", "--no-checkout", &path.to_string_lossy(), at])?;
        // git copies the sparse-checkout of the tree's own checkout into a new worktree; a
        // kernel build needs every file.
        if git(path, &["config", "--get", "core.sparseCheckout"]).is_ok_and(|v| v == "true") {
            git(path, &["sparse-checkout", "disable"])?;
        }
        git(path, &["reset", "-q", "--hard"])?;
        Ok(wt)
    }
}

#[derive(Debug, Clone)]
pub struct Worktree {
    pub path: PathBuf,
}

/// Why a patch did not apply, in git's words.
#[derive(Debug, Clone)]
pub struct AmFailure {
    pub detail: String,
}

impl Worktree {
    pub fn head(&self) -> Result<String, GitError> {
        git(&self.path, &["rev-parse", "HEAD"])
    }

    /// Aborts an `am` left over by an interrupted run.
    fn clean_up_am(&self) {
        if let Ok(dir) = git(&self.path, &["rev-parse", "--git-path", "rebase-apply"]) {
            let p = self.path.join(dir);
            if p.exists() {
                let _ = git(&self.path, &["am", "--abort"]);
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }

    /// Checks out `commit`. Only files that differ are rewritten, so the build directory's
    /// objects for the others stay valid.
    pub fn checkout(&self, commit: &str) -> Result<(), GitError> {
        if self.head().ok().as_deref() == Some(commit)
            && git(&self.path, &["status", "--porcelain", "--untracked-files=no"]).is_ok_and(|s| s.is_empty())
        {
            return Ok(());
        }
        git(&self.path, &["checkout", "-q", "-f", "--detach", commit])?;
        Ok(())
    }

    /// Applies one patch mail (an mbox file) with `git am -3`; returns the new commit.
    pub fn am(&self, mbox: &Path) -> Result<Result<String, AmFailure>, GitError> {
        let out = git_cmd(&self.path)
            .args(["am", "-3", "--committer-date-is-author-date", "--quiet"])
            .arg(mbox)
            .output()
            .map_err(GitError::Spawn)?;
        if out.status.success() {
            return Ok(Ok(self.head()?));
        }
        let mut detail = String::from_utf8_lossy(&out.stdout).to_string();
        detail.push_str(&String::from_utf8_lossy(&out.stderr));
        let detail =
            detail.lines().filter(|l| !l.starts_with("hint:") && !l.trim().is_empty()).collect::<Vec<_>>().join("\n");
        let _ = git(&self.path, &["am", "--abort"]);
        Ok(Err(AmFailure { detail }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbot_testdata::git as run;

    #[test]
    fn patch_ids_skip_the_root_and_find_applied_patches() {
        let d = tempfile::tempdir().unwrap();
        run(d.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(d.path().join("f"), "a\n").unwrap();
        run(d.path(), &["add", "f"]);
        run(d.path(), &["commit", "-q", "-m", "root"]);
        std::fs::write(d.path().join("f"), "b\n").unwrap();
        run(d.path(), &["commit", "-q", "-am", "change"]);
        let t = Tree::open(d.path()).unwrap();
        let ids = t.patch_ids("HEAD", 10);
        assert_eq!(ids.len(), 1, "the root commit is not listed: {ids:?}");
        assert_eq!(ids[0].1, t.resolve("HEAD").unwrap());
        assert_eq!(ids[0].0.len(), 40);
    }

    #[test]
    fn worktrees_are_full_even_from_a_sparse_checkout() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("repo");
        std::fs::create_dir_all(repo.join("fs")).unwrap();
        std::fs::create_dir_all(repo.join("mm")).unwrap();
        std::fs::write(repo.join("fs/a.c"), "a\n").unwrap();
        std::fs::write(repo.join("mm/b.c"), "b\n").unwrap();
        run(&repo, &["init", "-q", "-b", "main"]);
        run(&repo, &["add", "-A"]);
        run(&repo, &["commit", "-q", "-m", "root"]);
        run(&repo, &["sparse-checkout", "set", "fs"]);
        assert!(!repo.join("mm/b.c").exists(), "the user's checkout is sparse");
        let t = Tree::open(&repo).unwrap();
        let wt = t.worktree(&d.path().join("wt"), "HEAD").unwrap();
        assert_eq!(std::fs::read_to_string(wt.path.join("mm/b.c")).unwrap(), "b\n");
        assert_eq!(std::fs::read_to_string(wt.path.join("fs/a.c")).unwrap(), "a\n");
        assert_eq!(wt.head().unwrap(), t.resolve("HEAD").unwrap());
    }

    #[test]
    fn open_says_what_is_wrong() {
        let d = tempfile::tempdir().unwrap();
        let e = Tree::open(d.path()).unwrap_err();
        assert_eq!(e.to_string(), format!("{} is not a git repository", d.path().display()));
        let f = d.path().join("f");
        std::fs::write(&f, "").unwrap();
        assert_eq!(Tree::open(&f).unwrap_err().to_string(), format!("{} is not a directory", f.display()));
    }
}
