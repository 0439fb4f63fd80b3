//! `kbot setup`: system packages, rustup targets, the guest agents, the tools LTP calls in
//! the guest, the embedded default tree (Debian's linux-source-6.12 imported into git) and,
//! with `--ltp`, static builds of LTP's fanotify and inotify tests. Idempotent and quick when
//! done.

use crate::home::Home;
use crate::progress::Progress;
use crate::{agent, Fail};
use kbot_kernel::git::git;
use kbot_kernel::Arch;
use kbot_ltp_build::{LtpBuild, LtpError};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub const TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";

/// Debian packages kbot needs (QEMU is special-cased below).
const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "qemu-system-arm",
    "ipxe-qemu",
    "gcc",
    "make",
    "git",
    "perl",
    "flex",
    "bison",
    "bc",
    "libelf-dev",
    "libssl-dev",
    "cpio",
    "ccache",
    "xz-utils",
    // The x86_64 test kernel is LZ4-compressed (fast to build and to boot).
    "lz4",
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
    "linux-source-6.12",
    // Rust for Linux (the in-kernel shadow checks): bindgen needs libclang.
    "libclang-dev",
    // A real lore on loopback for the tests of --msgid, and b4 to compare with.
    "public-inbox",
    "b4",
    // The sandbox for everything that runs code from a series (setpriv is in util-linux).
    "bubblewrap",
    "util-linux",
    // A real SMTP server on loopback and a real browser for the tests of kbot serve.
    "python3-aiosmtpd",
    "chromium",
    // LTP's static build (`kbot setup --ltp`) and the tools its tests call in the guest
    // (mkfs.ext2/3/4 through /bin/sh); the other arch's come as Debian multiarch packages.
    "autoconf",
    "automake",
    "pkg-config",
    "busybox-static",
    "e2fsprogs",
    // `executor: slurm` of kbot serve, and its tests' one-node cluster on 127.0.0.1: the
    // Slurm client commands (sbatch, squeue, scancel), the daemons and munge. Installed
    // with no service started (see `NoServiceStarts`): kbot never configures a cluster.
    "slurm-client",
    "slurmctld",
    "slurmd",
    "munge",
];

/// While it lives, Debian's maintainer scripts start no service (`invoke-rc.d` and
/// `deb-systemd-invoke` ask `/usr/sbin/policy-rc.d`; 101 is "action forbidden"): installing
/// munge, slurmctld and slurmd must not start a system cluster. A policy-rc.d already in
/// place (containers ship one) is left as it is.
struct NoServiceStarts(Option<PathBuf>);

impl NoServiceStarts {
    fn new() -> NoServiceStarts {
        let p = PathBuf::from("/usr/sbin/policy-rc.d");
        if p.exists() {
            return NoServiceStarts(None);
        }
        use std::os::unix::fs::PermissionsExt;
        let ok =
            std::fs::write(&p, "#!/bin/sh\n# kbot setup: no service starts while it installs packages\nexit 101\n")
                .and_then(|()| std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)));
        NoServiceStarts(ok.is_ok().then_some(p))
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn dpkg_version(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query").args(["-W", "-f=${Status}|${Version}", pkg]).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let (status, version) = s.split_once('|')?;
    status.ends_with("installed").then(|| version.to_string()).filter(|_| status.starts_with("install ok"))
}

fn apt_candidate(pkg: &str) -> Option<String> {
    let out = Command::new("apt-cache").args(["policy", pkg]).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:").map(|v| v.trim().to_string()))
        .filter(|v| v != "(none)")
}

/// Packages to install; qemu-utils must match qemu-system's version (the machine may carry
/// a newer qemu-utils from backports that breaks QEMU 7.2).
fn wanted(installed: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut v: Vec<String> = PACKAGES.iter().filter(|p| installed(p).is_none()).map(|p| p.to_string()).collect();
    let sys = installed("qemu-system-x86");
    let utils = installed("qemu-utils");
    if sys.is_none() || utils.is_none() || sys != utils {
        v.push("qemu-utils".into());
    }
    v
}

fn apt(progress: &Progress) -> Result<(), Fail> {
    let need = wanted(dpkg_version);
    if need.is_empty() {
        progress.say("setup", "packages", "all installed");
        return Ok(());
    }
    if !is_root() {
        return Err(Fail::env(format!(
            "packages missing: {}; run `kbot setup` as root, or install them with apt-get",
            need.join(" ")
        )));
    }
    progress.say("setup", "packages", &format!("apt-get install {}", need.join(" ")));
    let run = |args: &[&str]| -> Result<(), Fail> {
        let st = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| Fail::env(format!("cannot run apt-get: {e}")))?;
        if !st.success() {
            return Err(Fail::env(format!(
                "apt-get {} failed; check the network to the Debian mirror and /etc/apt/sources.list",
                args.join(" ")
            )));
        }
        Ok(())
    };
    run(&["update", "-q"])?;
    let mut args: Vec<String> = ["install", "-y", "-q", "--no-install-recommends", "--allow-downgrades"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for p in &need {
        if p == "qemu-utils" {
            let v = dpkg_version("qemu-system-x86").or_else(|| apt_candidate("qemu-system-x86"));
            args.push(v.map_or_else(|| p.clone(), |v| format!("qemu-utils={v}")));
        } else {
            args.push(p.clone());
        }
    }
    let _quiet = NoServiceStarts::new();
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The guest tools of the arch that is not the host's come from Debian's multiarch packages:
/// dpkg needs that architecture and apt its package lists (root, once).
fn foreign_archs(progress: &Progress) -> Result<(), Fail> {
    let have = Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .map_err(|e| Fail::env(format!("cannot run dpkg ({e}); kbot needs a Debian system")))?;
    let native = Command::new("dpkg").arg("--print-architecture").output().ok();
    let native = native.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let missing: Vec<&str> = Arch::ALL
        .iter()
        .map(|a| kbot_ltp_build::guest::deb_arch(*a))
        .filter(|d| *d != native && !have.iter().any(|h| h == d))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        return Err(Fail::env(format!(
            "dpkg has no {} architecture (needed for the guest tools); run `kbot setup` as root",
            missing.join(" ")
        )));
    }
    for d in &missing {
        progress.say("setup", "packages", &format!("dpkg --add-architecture {d}"));
        let ok = Command::new("dpkg").args(["--add-architecture", d]).status().is_ok_and(|s| s.success());
        if !ok {
            return Err(Fail::env(format!("dpkg --add-architecture {d} failed; run it by hand as root")));
        }
    }
    progress.say("setup", "packages", "apt-get update");
    let ok = Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(Fail::env(
            "apt-get update failed; check the network to the Debian mirror and /etc/apt/sources.list",
        ));
    }
    Ok(())
}

fn ltp_fail(e: LtpError) -> Fail {
    match e {
        LtpError::Source(m) => Fail::usage(m),
        e => Fail::env(e.to_string()),
    }
}

/// Rust for Linux needs the standard library's source and a bindgen newer than Debian's.
/// Missing pieces only turn the shadow checks off, so failures here are notes, not errors.
fn rust_for_linux(progress: &Progress) {
    let have_src = Command::new("rustup")
        .args(["component", "list", "--installed"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.starts_with("rust-src")));
    if !have_src {
        progress.say("setup", "rust", "rustup component add rust-src");
        let _ = Command::new("rustup").args(["component", "add", "rust-src"]).status();
    }
    let bindgen_ok = Command::new("bindgen").arg("--version").output().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .nth(1)
            .is_some_and(|v| !v.starts_with("0.6") && !v.starts_with("0.5"))
    });
    if !bindgen_ok {
        progress.say("setup", "rust", "cargo install --locked bindgen-cli (a minute or two)");
        let ok = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["install", "--locked", "--quiet", "bindgen-cli"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            progress.say("setup", "rust", "bindgen-cli did not install: the shadow checks will be off");
        }
    } else {
        progress.say("setup", "rust", "rust-src and bindgen present");
    }
}

/// Python packages from PyPI that the tests use (Debian has no package for them): kcidb-io,
/// KCIDB's own schema, validates the export. Installed for the `python3` on PATH.
pub const PYPI: &[(&str, &str)] = &[("kcidb-io", "kcidb_io")];

fn pypi(progress: &Progress) -> Result<(), Fail> {
    let missing: Vec<&str> = PYPI
        .iter()
        .filter(|(_, module)| {
            !Command::new("python3")
                .args(["-c", &format!("import {module}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    progress.say("setup", "pypi", &format!("python3 -m pip install {}", missing.join(" ")));
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(extra)
            .args(&missing)
            .status()
            .is_ok_and(|s| s.success())
    };
    // Debian's own python3 refuses system-wide pip installs (PEP 668): then into the user's site.
    if pip(&[]) || pip(&["--user", "--break-system-packages"]) {
        Ok(())
    } else {
        Err(Fail::env(format!(
            "python3 -m pip install {} failed; check the network to PyPI (or install it by hand)",
            missing.join(" ")
        )))
    }
}

fn rustup_targets(progress: &Progress) -> Result<(), Fail> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| Fail::env(format!("cannot run rustup ({e}); install Rust with rustup")))?;
    let have = String::from_utf8_lossy(&out.stdout).to_string();
    let missing: Vec<&str> =
        Arch::ALL.iter().map(|a| a.rust_target()).filter(|t| !have.lines().any(|l| l.trim() == *t)).collect();
    if missing.is_empty() {
        progress.say("setup", "rustup", "targets installed");
        return Ok(());
    }
    progress.say("setup", "rustup", &format!("rustup target add {}", missing.join(" ")));
    let st =
        Command::new("rustup").args(["target", "add"]).args(&missing).status().map_err(|e| Fail::env(e.to_string()))?;
    if !st.success() {
        return Err(Fail::env(format!("rustup target add {} failed", missing.join(" "))));
    }
    Ok(())
}

/// Identity of the tarball a tree was imported from.
fn tarball_id(tarball: &Path) -> Result<String, Fail> {
    let md = std::fs::metadata(tarball).map_err(|e| {
        Fail::env(format!("{}: {e}; install linux-source-6.12 (kbot setup as root)", tarball.display()))
    })?;
    let version = dpkg_version("linux-source-6.12").unwrap_or_else(|| "unknown".into());
    Ok(format!("linux-source-6.12 {version} size={}", md.len()))
}

/// Imports the tarball as a commit with fixed identity and date, so every machine gets the
/// same commit id for the same Debian version. A newer tarball becomes a new commit on top.
pub fn import_tree(dir: &Path, tarball: &Path, progress: &Progress) -> Result<PathBuf, Fail> {
    let id = tarball_id(tarball)?;
    let marker = dir.join(".git/kbot-import");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == id) && git(dir, &["rev-parse", "HEAD"]).is_ok() {
        progress.say("setup", "tree", &format!("default tree up to date ({id})"));
        return Ok(dir.to_path_buf());
    }
    let fresh = !dir.join(".git").exists();
    let work = if fresh { dir.with_extension(format!("tmp-{}", std::process::id())) } else { dir.to_path_buf() };
    progress.say("setup", "tree", &format!("importing {} into {}", tarball.display(), dir.display()));
    let fail = |what: &str, e: String| Fail::env(format!("importing the default tree: {what}: {e}"));
    if fresh {
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(|e| fail("mkdir", e.to_string()))?;
        git(&work, &["init", "-q", "-b", "main"]).map_err(|e| fail("git init", e.to_string()))?;
        git(&work, &["config", "feature.manyFiles", "true"]).map_err(|e| fail("git config", e.to_string()))?;
    } else {
        // Replace the files, keep the history: the old base stays reachable.
        for e in std::fs::read_dir(&work).map_err(|e| fail("read", e.to_string()))?.flatten() {
            if e.file_name() != ".git" {
                let p = e.path();
                let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            }
        }
    }
    let st = Command::new("tar")
        .arg("-C")
        .arg(&work)
        .args(["--strip-components=1", "-xf"])
        .arg(tarball)
        .status()
        .map_err(|e| fail("tar", e.to_string()))?;
    if !st.success() {
        return Err(fail("tar", format!("cannot extract {}", tarball.display())));
    }
    // Debian's tarball ignores itself in .gitignore: force-add everything.
    git(&work, &["add", "-f", "-A"]).map_err(|e| fail("git add", e.to_string()))?;
    let out = Command::new("git")
        .arg("-C")
        .arg(&work)
        .args(["commit", "-q", "--allow-empty", "-m", &format!("Import Debian {id}")])
        .envs([
            ("GIT_AUTHOR_NAME", "kbot"),
            ("GIT_AUTHOR_EMAIL", "kbot@localhost"),
            ("GIT_COMMITTER_NAME", "kbot"),
            ("GIT_COMMITTER_EMAIL", "kbot@localhost"),
            ("GIT_AUTHOR_DATE", "2000-01-01T00:00:00Z"),
            ("GIT_COMMITTER_DATE", "2000-01-01T00:00:00Z"),
        ])
        .output()
        .map_err(|e| fail("git commit", e.to_string()))?;
    if !out.status.success() {
        return Err(fail("git commit", String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    std::fs::write(work.join(".git/kbot-import"), &id).map_err(|e| fail("marker", e.to_string()))?;
    if fresh {
        if let Some(p) = dir.parent() {
            std::fs::create_dir_all(p).map_err(|e| fail("mkdir", e.to_string()))?;
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&work, dir).map_err(|e| fail("rename", e.to_string()))?;
    }
    Ok(dir.to_path_buf())
}

pub struct SetupOpts {
    pub packages: bool,
    pub tree: bool,
    /// An LTP checkout or `git archive` tarball to build for both arches.
    pub ltp: Option<PathBuf>,
}

/// What setup prepared.
pub struct SetupDone {
    /// The default tree.
    pub tree: PathBuf,
    /// The tools LTP calls in the guest: arch, number of guest files, seconds.
    pub guest_tools: Vec<(Arch, usize, f64)>,
    /// With `--ltp`: the build per arch and the seconds it took (near 0 when cached).
    pub ltp: Vec<(LtpBuild, f64)>,
}

pub fn run(home: &Home, opts: &SetupOpts, progress: &Progress) -> Result<SetupDone, Fail> {
    if opts.packages {
        apt(progress)?;
        foreign_archs(progress)?;
    }
    rustup_targets(progress)?;
    rust_for_linux(progress);
    pypi(progress)?;
    for arch in Arch::ALL {
        progress.say(arch.name(), "agent", "building the guest agent");
        agent::build(arch)?;
    }
    let mut guest_tools = Vec::new();
    for arch in Arch::ALL {
        let t = Instant::now();
        let files =
            kbot_ltp_build::guest_tools(arch, &home.guest_tools_cache(), &|l| progress.say(arch.name(), "guest", l))
                .map_err(ltp_fail)?;
        let secs = t.elapsed().as_secs_f64();
        progress.say(arch.name(), "guest", &format!("guest tools: {} files ({secs:.1}s)", files.len()));
        guest_tools.push((arch, files.len(), secs));
    }
    let tree = home.default_tree();
    if opts.tree {
        import_tree(&tree, Path::new(TARBALL), progress)?;
    }
    let mut ltp = Vec::new();
    if let Some(path) = &opts.ltp {
        let src = kbot_ltp_build::locate(path).map_err(ltp_fail)?;
        for arch in Arch::ALL {
            let t = Instant::now();
            let b = kbot_ltp_build::build(&src, arch, &home.ltp_cache(), &|l| progress.say(arch.name(), "ltp", l))
                .map_err(ltp_fail)?;
            ltp.push((b, t.elapsed().as_secs_f64()));
        }
    }
    Ok(SetupDone { tree, guest_tools, ltp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_utils_is_pinned_to_qemu_system() {
        let all =
            |v: &'static str| move |p: &str| Some(if p == "qemu-utils" { v.to_string() } else { "1:7.2".to_string() });
        assert!(wanted(all("1:7.2")).is_empty());
        assert_eq!(wanted(all("1:10.0")), ["qemu-utils"]);
        let none = |_: &str| None;
        assert_eq!(wanted(none).len(), PACKAGES.len() + 1);
    }
}
