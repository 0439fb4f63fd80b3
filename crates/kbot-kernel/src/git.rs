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
    pub fn open(path: &Path) -> Result<Tree, String> {
        if !path.is_dir() {
            return Err(format!("{} is not a directory", path.display()));
        }
        match git(path, &["rev-parse", "--show-toplevel"]) {
            Ok(top) => Ok(Tree { path: PathBuf::from(top) }),
            Err(GitError::Spawn(e)) => Err(format!("cannot run git: {e}")),
            Err(_) => Err(format!("{} is not a git repository", path.display())),
        }
    }

    /// The commit `rev` names, if the tree has it.
    pub fn resolve(&self, rev: &str) -> Option<String> {
        git(&self.path, &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")]).ok()
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
        git(&self.path, &["worktree", "add", "--detach", "--force", &path.to_string_lossy(), at])?;
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
