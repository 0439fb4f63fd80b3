//! Everything that runs code from a series (make and the scripts it calls, checkpatch, QEMU
//! with the series' kernel) runs through a [`Jail`]: bubblewrap with every namespace unshared
//! (no network at all, own PIDs, own /tmp), the host read-only, writable only the directories
//! the step was given, kbot's state, config and home directories hidden, the environment
//! emptied (no SMTP or GitHub credentials), as the unprivileged user `nobody` when kbot runs as
//! root, under rlimits (address space, processes, file size, no core dumps).
//!
//! Paths given to a jail appear inside at fixed places under `/mnt/kbot/`, so commands see
//! the same paths wherever kbot's data lives (builds and ccache stay incremental).

pub mod proc;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where bound directories appear inside the sandbox.
pub const INSIDE: &str = "/mnt/kbot";

/// Per-process resource limits of a sandboxed step (the wall-clock limit is the caller's:
/// it kills the process group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Address space per process, bytes.
    pub memory: u64,
    /// Processes of the sandbox user (only enforced for a real unprivileged user).
    pub processes: u64,
    /// Largest file a process may write, bytes.
    pub file_size: u64,
}

impl Limits {
    /// make, the compilers and rustc: cc1 on a big file uses well under 2 GiB.
    pub const BUILD: Limits = Limits { memory: 4 << 30, processes: 4096, file_size: 2 << 30 };
    /// QEMU: guest RAM plus TCG's translation buffer plus threads.
    pub const VM: Limits = Limits { memory: 8 << 30, processes: 4096, file_size: 256 << 20 };
    /// Small tools (checkpatch).
    pub const TOOL: Limits = Limits { memory: 2 << 30, processes: 256, file_size: 64 << 20 };
}

/// How untrusted steps are run; one per kbot process.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `false`: run directly on the host (trusted input only, `--no-sandbox`).
    pub enabled: bool,
    /// The bwrap binary.
    pub bwrap: PathBuf,
    /// util-linux's setpriv, for dropping to `drop_to` inside the sandbox.
    pub setpriv: PathBuf,
    /// Drop to this uid/gid (kbot runs as root), making writable directories theirs.
    pub drop_to: Option<(u32, u32)>,
    /// Host paths hidden behind an empty tmpfs (kbot's state and config, home directories).
    pub hide: Vec<PathBuf>,
    /// Read-only extras bound at `/mnt/kbot/<name>` in every jail, with environment variables
    /// pointing at them (the Rust toolchain for CONFIG_RUST builds).
    pub toolchain: Vec<(PathBuf, String, String)>,
    /// Directories prepended to PATH inside (already inside paths).
    pub path_extra: Vec<PathBuf>,
}

/// Why this host cannot run the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(
        "bubblewrap (bwrap) is not installed: run `kbot setup` (or apt-get install bubblewrap), or pass \
         --no-sandbox for a series you trust"
    )]
    NoBwrap,
    #[error("setpriv (util-linux) is not installed: kbot needs it to drop root in the sandbox")]
    NoSetpriv,
}

/// The uid/gid kbot drops to when it runs as root: Debian's `nobody`/`nogroup`.
pub const NOBODY: (u32, u32) = (65534, 65534);

impl Policy {
    /// No sandbox: commands run as they are.
    pub fn off() -> Policy {
        Policy {
            enabled: false,
            bwrap: PathBuf::new(),
            setpriv: PathBuf::new(),
            drop_to: None,
            hide: vec![],
            toolchain: vec![],
            path_extra: vec![],
        }
    }

    /// The sandbox for this host: bwrap from PATH, `nobody` when root, the given paths hidden,
    /// the rustup toolchain of the current user made visible read-only.
    pub fn detect(hide: &[PathBuf]) -> Result<Policy, DetectError> {
        let bwrap = find_in_path("bwrap").ok_or(DetectError::NoBwrap)?;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let setpriv = find_in_path("setpriv").unwrap_or_default();
        if root && setpriv.as_os_str().is_empty() {
            return Err(DetectError::NoSetpriv);
        }
        let mut hide: Vec<PathBuf> = hide.to_vec();
        let home = std::env::var_os("HOME").map(PathBuf::from);
        if let Some(h) = &home {
            hide.push(h.clone());
        }
        hide.push("/root".into());
        hide.push("/home".into());
        let mut toolchain = Vec::new();
        let mut path_extra = Vec::new();
        let rustup =
            std::env::var_os("RUSTUP_HOME").map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".rustup")));
        let cargo =
            std::env::var_os("CARGO_HOME").map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".cargo")));
        if let (Some(r), Some(c)) = (rustup, cargo) {
            if r.is_dir() && c.join("bin").is_dir() {
                toolchain.push((r, "rustup".to_string(), "RUSTUP_HOME".to_string()));
                toolchain.push((c.join("bin"), "cargo-bin".to_string(), String::new()));
                path_extra.push(Path::new(INSIDE).join("cargo-bin"));
            }
        }
        hide.sort();
        hide.dedup();
        Ok(Policy { enabled: true, bwrap, setpriv, drop_to: root.then_some(NOBODY), hide, toolchain, path_extra })
    }

    pub fn describe(&self) -> String {
        if !self.enabled {
            return "off (--no-sandbox)".into();
        }
        format!(
            "bubblewrap: no network, host read-only, {}",
            match self.drop_to {
                Some((u, _)) => format!("uid {u}"),
                None => "kbot's own uid".into(),
            }
        )
    }

    pub fn jail(&self) -> Jail<'_> {
        Jail { policy: self, binds: Vec::new(), devs: Vec::new(), gid: None }
    }
}

struct Bind {
    host: PathBuf,
    inside: PathBuf,
    write: bool,
}

/// One sandboxed command's view of the host: what it may read and write.
pub struct Jail<'a> {
    policy: &'a Policy,
    binds: Vec<Bind>,
    devs: Vec<PathBuf>,
    gid: Option<u32>,
}

impl Jail<'_> {
    fn add(&mut self, host: &Path, name: &str, write: bool) -> std::io::Result<PathBuf> {
        if !self.policy.enabled {
            return Ok(host.to_path_buf());
        }
        let inside = Path::new(INSIDE).join(name);
        // Fail here, with the path, rather than in bwrap.
        std::fs::metadata(host).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", host.display())))?;
        self.binds.push(Bind { host: host.to_path_buf(), inside: inside.clone(), write });
        Ok(inside)
    }

    /// `host` readable inside; returns its inside path. A file or a directory.
    pub fn ro(&mut self, host: &Path, name: &str) -> std::io::Result<PathBuf> {
        self.add(host, name, false)
    }

    /// `host` (a directory) writable inside; returns its inside path. When dropping to an
    /// unprivileged user, the directory is given to that user first.
    pub fn rw(&mut self, host: &Path, name: &str) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(host)?;
        if self.policy.enabled {
            if let Some((uid, gid)) = self.policy.drop_to {
                give(host, uid, gid)?;
            }
        }
        self.add(host, name, true)
    }

    /// A device node (e.g. /dev/kvm); its group becomes the sandbox's group so it can open it.
    pub fn dev(&mut self, dev: &Path) {
        if self.policy.enabled {
            use std::os::unix::fs::MetadataExt;
            if let Ok(m) = std::fs::metadata(dev) {
                self.gid = Some(m.gid());
            }
            self.devs.push(dev.to_path_buf());
        }
    }

    /// A command running `prog` in the jail with `limits`, in its own process group. Its
    /// environment is empty but for PATH, HOME=/tmp, LC_ALL=C and the toolchain's variables;
    /// callers add what the step needs with `.env()`.
    pub fn command(&self, prog: &str, limits: Limits) -> Command {
        let p = self.policy;
        let mut path = p.path_extra.iter().map(|d| d.display().to_string()).collect::<Vec<_>>();
        path.extend(["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(String::from));
        let mut c;
        if p.enabled {
            c = Command::new(&p.bwrap);
            match p.drop_to {
                // As root, bwrap sets the sandbox up with real privileges (it can bind paths under
                // private directories) and setpriv then becomes a real unprivileged user, so
                // RLIMIT_NPROC applies and a mount-namespace escape still finds no root.
                Some(_) => {
                    c.args(["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup"])
                }
                None => c.arg("--unshare-all"),
            };
            c.args(["--die-with-parent", "--new-session", "--cap-drop", "ALL"]);
            if p.drop_to.is_some() {
                c.args(["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]);
            }
            c.args(["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]);
            c.args(["--perms", "1777", "--tmpfs", "/var/tmp", "--tmpfs", "/run", "--tmpfs", "/mnt"]);
            c.args(["--perms", "0755", "--dir", INSIDE]);
            for h in &p.hide {
                if h.is_dir() {
                    c.arg("--tmpfs").arg(h);
                }
            }
            for (host, name, var) in &p.toolchain {
                let inside = Path::new(INSIDE).join(name);
                c.arg("--ro-bind").arg(host).arg(&inside);
                if !var.is_empty() {
                    c.arg("--setenv").arg(var).arg(&inside);
                }
            }
            for b in &self.binds {
                c.arg(if b.write { "--bind" } else { "--ro-bind" }).arg(&b.host).arg(&b.inside);
            }
            for d in &self.devs {
                c.arg("--dev-bind").arg(d).arg(d);
            }
            c.args(["--chdir", "/tmp", "--"]);
            if let Some((uid, gid)) = p.drop_to {
                c.arg(&p.setpriv).arg(format!("--reuid={uid}")).arg(format!("--regid={}", self.gid.unwrap_or(gid)));
                c.args(["--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"]);
            }
            c.arg(prog);
        } else {
            c = Command::new(prog);
        }
        c.env_clear();
        c.env("PATH", path.join(":")).env("HOME", "/tmp").env("LC_ALL", "C").env("TERM", "dumb");
        if !p.enabled {
            // Unsandboxed, the toolchain is where it is.
            for v in ["RUSTUP_HOME", "CARGO_HOME", "CCACHE_DIR"] {
                if let Some(x) = std::env::var_os(v) {
                    c.env(v, x);
                }
            }
            if let Some(h) = std::env::var_os("HOME") {
                c.env("HOME", &h);
                let cargo_bin = Path::new(&h).join(".cargo/bin");
                c.env("PATH", format!("{}:{}", cargo_bin.display(), path.join(":")));
            }
        }
        let unprivileged = p.enabled && p.drop_to.is_some();
        // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
        unsafe {
            c.pre_exec(move || {
                set_limit(libc::RLIMIT_AS, limits.memory)?;
                set_limit(libc::RLIMIT_FSIZE, limits.file_size)?;
                set_limit(libc::RLIMIT_CORE, 0)?;
                if unprivileged {
                    set_limit(libc::RLIMIT_NPROC, limits.processes)?;
                }
                Ok(())
            });
        }
        c.process_group(0);
        c
    }
}

fn set_limit(what: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: a plain setrlimit on the calling (child) process.
    if unsafe { libc::setrlimit(what, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `dir` and everything under it owned by `uid:gid`, once (skipped when the top already is).
fn give(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(dir)?;
    if m.uid() == uid && m.gid() == gid {
        return Ok(());
    }
    fn walk(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
        let m = std::fs::symlink_metadata(p)?;
        if m.is_dir() {
            for e in std::fs::read_dir(p)? {
                walk(&e?.path(), uid, gid)?;
            }
        }
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))
    }
    walk(dir, uid, gid)
}

fn find_in_path(prog: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(prog)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_runs_the_program_itself() {
        let p = Policy::off();
        let mut j = p.jail();
        assert_eq!(j.ro(Path::new("/x/src"), "src").unwrap(), Path::new("/x/src"));
        let c = j.command("make", Limits::BUILD);
        assert_eq!(c.get_program(), "make");
    }

    #[test]
    fn binds_appear_at_fixed_inside_paths() {
        let p = Policy {
            enabled: true,
            bwrap: "/usr/bin/bwrap".into(),
            setpriv: "/usr/bin/setpriv".into(),
            drop_to: None,
            hide: vec![],
            toolchain: vec![],
            path_extra: vec![],
        };
        let mut j = p.jail();
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(j.ro(Path::new("/usr/share"), "src").unwrap(), Path::new("/mnt/kbot/src"));
        assert_eq!(j.rw(dir.path(), "out").unwrap(), Path::new("/mnt/kbot/out"));
        let c = j.command("make", Limits::BUILD);
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let s = args.join(" ");
        assert!(s.contains("--unshare-all"), "{s}");
        assert!(s.contains("--ro-bind /usr/share /mnt/kbot/src"), "{s}");
        assert!(s.contains(&format!("--bind {} /mnt/kbot/out", dir.path().display())), "{s}");
        assert!(s.ends_with("-- make"), "{s}");
        // The credentials kbot may hold never reach the sandbox.
        assert!(c.get_envs().all(|(k, _)| k != "KBOT_SMTP_PASSWORD" && k != "GITHUB_TOKEN"));
    }
}
