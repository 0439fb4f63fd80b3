//! kbot's data directory: the default tree, worktrees and build directories per tree and
//! arch (stable paths keep builds incremental and ccache warm), the kernel cache, run logs.

use kbot_kernel::{fnv64, Arch};
use std::path::{Path, PathBuf};

/// How many run directories (logs of past checks) are kept.
pub const KEEP_RUNS: usize = 50;

#[derive(Debug, Clone)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    /// `$KBOT_HOME`, else `$XDG_DATA_HOME/kbot`, else `~/.local/share/kbot`.
    pub fn locate() -> Result<Home, crate::Fail> {
        let root = if let Some(h) = std::env::var_os("KBOT_HOME").filter(|v| !v.is_empty()) {
            PathBuf::from(h)
        } else if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            PathBuf::from(x).join("kbot")
        } else if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            PathBuf::from(h).join(".local/share/kbot")
        } else {
            return Err(crate::Fail::env("cannot find a data directory: set KBOT_HOME"));
        };
        Ok(Home { root })
    }

    pub fn default_tree(&self) -> PathBuf {
        self.root.join("trees/default")
    }

    /// Per tree: a name from its path plus a hash, so two trees never share work dirs.
    fn tree_key(tree: &Path) -> String {
        let name = tree.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "tree".into());
        let name: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        format!("{name}-{:08x}", fnv64(tree.to_string_lossy().as_bytes()) as u32)
    }

    pub fn worktree(&self, tree: &Path, arch: Arch) -> PathBuf {
        self.root.join("work").join(Self::tree_key(tree)).join(arch.name()).join("src")
    }

    pub fn build_dir(&self, tree: &Path, arch: Arch) -> PathBuf {
        self.root.join("work").join(Self::tree_key(tree)).join(arch.name()).join("out")
    }

    pub fn lock_file(&self, tree: &Path) -> PathBuf {
        self.key_lock(&Self::tree_key(tree))
    }

    /// The lock of the tree whose work dir is `work/<key>`.
    fn key_lock(&self, key: &str) -> PathBuf {
        self.root.join("locks").join(format!("{key}.lock"))
    }

    /// Removes the work dirs of trees that are gone (a deleted clone, a CI job's or a test's
    /// temporary tree): each holds worktrees and build dirs of about 2 GB per arch that no
    /// check can use again. A dir is stale when every arch's worktree names a git dir that
    /// no longer exists; it is removed under its tree's lock, so a check using it is never
    /// disturbed. Returns what was removed.
    pub fn prune_stale_work(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.root.join("work")) else { return Vec::new() };
        let mut removed = Vec::new();
        for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            let Some(key) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
            if !work_dir_is_stale(&dir) {
                continue;
            }
            let Ok(Ok(_held)) = Lock::try_take(&self.key_lock(&key)) else { continue };
            // Checked again under the lock: a check may have recreated it meanwhile.
            if work_dir_is_stale(&dir) && std::fs::remove_dir_all(&dir).is_ok() {
                removed.push(dir);
            }
        }
        removed
    }

    /// Cached kernel images by arch, commit and configuration.
    pub fn kernel_cache(&self, arch: Arch, commit: &str, config_key: &str) -> PathBuf {
        self.root.join("cache/kernels").join(arch.name()).join(format!("{commit}-{config_key}"))
    }

    /// Static LTP builds by LTP commit and arch (`kbot_ltp_build::build`).
    pub fn ltp_cache(&self) -> PathBuf {
        self.root.join("cache/ltp")
    }

    /// The tools LTP calls in the guest, per arch (`kbot_ltp_build::guest_tools`).
    pub fn guest_tools_cache(&self) -> PathBuf {
        self.root.join("cache/guest-tools")
    }

    /// Cached boots of base kernels (their console), by content key.
    pub fn boot_cache(&self, arch: Arch, key: &str) -> PathBuf {
        self.root.join("cache/boots").join(arch.name()).join(key)
    }

    pub fn ccache_dir(&self) -> PathBuf {
        self.root.join("ccache")
    }

    /// A new directory for one run's patches and logs; only the newest [`KEEP_RUNS`] are kept.
    pub fn new_run_dir(&self) -> std::io::Result<PathBuf> {
        let runs = self.root.join("runs");
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let p = runs.join(format!("{secs}-{}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        let mut old: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&runs)?
            .flatten()
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .filter(|(_, d)| *d != p)
            .collect();
        old.sort();
        // The new run counts as one of those kept.
        let excess = (old.len() + 1).saturating_sub(KEEP_RUNS);
        for (_, dir) in old.into_iter().take(excess) {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(p)
    }
}

/// True when the dir has at least one arch's worktree and each names a git dir that is
/// gone. Anything else (a worktree being made, an unknown layout) is kept.
fn work_dir_is_stale(dir: &Path) -> bool {
    let Ok(arches) = std::fs::read_dir(dir) else { return false };
    let mut seen = 0;
    for a in arches.flatten() {
        let Ok(link) = std::fs::read_to_string(a.path().join("src/.git")) else { return false };
        let Some(gitdir) = link.trim().strip_prefix("gitdir:").map(str::trim) else { return false };
        if Path::new(gitdir).exists() {
            return false;
        }
        seen += 1;
    }
    seen > 0
}

/// An exclusive lock on a file, held until drop (flock: released by the kernel if we die).
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    /// Takes the lock, calling `waiting` once if another kbot holds it.
    pub fn take(path: &Path, waiting: impl FnOnce()) -> std::io::Result<Lock> {
        use std::os::fd::AsRawFd;
        match Lock::try_take(path)? {
            Ok(l) => Ok(l),
            Err(file) => {
                waiting();
                // SAFETY: flock on a descriptor we own.
                if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(Lock { _file: file })
            }
        }
    }

    /// Takes the lock if it is free; else gives the file back (to wait on, or not).
    pub fn try_take(path: &Path) -> std::io::Result<Result<Lock, std::fs::File>> {
        use std::os::fd::AsRawFd;
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Ok(Err(file));
        }
        Ok(Ok(Lock { _file: file }))
    }
}

/// Writes a file atomically: a reader sees the old content or the new, never half of it.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.kbot-tmp-{}",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_runs_are_pruned() {
        let d = tempfile::tempdir().unwrap();
        let home = Home { root: d.path().to_path_buf() };
        for i in 0..KEEP_RUNS + 5 {
            std::fs::create_dir_all(d.path().join("runs").join(format!("old-{i:03}"))).unwrap();
        }
        let new = home.new_run_dir().unwrap();
        let left = std::fs::read_dir(d.path().join("runs")).unwrap().count();
        assert_eq!(left, KEEP_RUNS);
        assert!(new.is_dir());
    }

    #[test]
    fn work_dirs_of_deleted_trees_are_pruned_and_live_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        let home = Home { root: d.path().join("home") };
        let live_repo = d.path().join("live/.git/worktrees/src");
        std::fs::create_dir_all(&live_repo).unwrap();
        let mk = |tree: &str, arch: Arch, gitdir: &Path| {
            let wt = home.worktree(Path::new(tree), arch);
            std::fs::create_dir_all(&wt).unwrap();
            std::fs::write(wt.join(".git"), format!("gitdir: {}\n", gitdir.display())).unwrap();
            std::fs::create_dir_all(home.build_dir(Path::new(tree), arch)).unwrap();
        };
        mk("/gone/linux", Arch::X86_64, &d.path().join("gone/.git/worktrees/src"));
        mk("/gone/linux", Arch::Arm64, &d.path().join("gone/.git/worktrees/src1"));
        mk("/live", Arch::X86_64, &live_repo);
        // Half gone: one arch's repo still exists, so the dir is kept.
        mk("/half", Arch::X86_64, &d.path().join("gone/.git/worktrees/src2"));
        mk("/half", Arch::Arm64, &live_repo);
        // A worktree being created (no .git yet) is never taken.
        std::fs::create_dir_all(home.worktree(Path::new("/new"), Arch::X86_64)).unwrap();
        let gone = home.root.join("work").join(Home::tree_key(Path::new("/gone/linux")));
        assert_eq!(home.prune_stale_work(), vec![gone.clone()]);
        assert!(!gone.exists());
        for t in ["/live", "/half", "/new"] {
            assert!(home.worktree(Path::new(t), Arch::X86_64).exists(), "{t} kept");
        }
        // A stale dir whose tree is locked by a running check is left alone.
        mk("/gone/linux", Arch::X86_64, &d.path().join("gone/.git/worktrees/src"));
        let _held = Lock::take(&home.lock_file(Path::new("/gone/linux")), || {}).unwrap();
        assert!(home.prune_stale_work().is_empty());
        assert!(gone.exists());
    }
}
