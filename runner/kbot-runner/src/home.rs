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
        self.root.join("locks").join(format!("{}.lock", Self::tree_key(tree)))
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
}
