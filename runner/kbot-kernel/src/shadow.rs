//! kbot's shadow checks in the kernel under test: the reference core's rules (the same
//! `rules.rs` as the `kbot-refcore` crate) built into the kernel as a Rust component, fed by
//! hooks that kbot adds to the notification core and to SRCU after checking out a commit.
//!
//! Why hooks in the source: fs/notify has no tracepoints in 6.12, kprobes on inlined static
//! functions are unreliable, and a small patch is cheap to rebuild incrementally. The SRCU
//! hook sits in `__srcu_read_lock`/`__srcu_read_unlock` (filtered on `fsnotify_mark_srcu`),
//! not at fs/notify's call sites, so a series that moves or drops those calls — the bug
//! class itself — is still observed. Hunks that do not apply are reported, and the shadow
//! results of that kernel are not used.

use crate::git::git;
use crate::proc::{run_logged, Exit};
use crate::Arch;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use kbot_images::{SHADOW_GLUE as GLUE, SHADOW_HEADER as HEADER, SHADOW_HOOKS_PATCH as HOOKS_PATCH};
pub use kbot_refcore::RULES_SOURCE as RULES;
pub const FRAGMENT: &str = "CONFIG_RUST=y\nCONFIG_KBOT_SHADOW=y\n";

/// How the hooks are applied. One line of context: hooks still go in when a series edits
/// the lines around them.
const APPLY: &[&str] = &["apply", "--reject", "-C1", "--whitespace=nowarn"];

/// The kconfig addition for shadow kernels, with a hash of the component's sources as a
/// comment: it is part of the kernel cache key, so changed hooks or rules mean new kernels.
pub fn config_extra() -> String {
    let h = crate::fnv64(format!("{HOOKS_PATCH}{HEADER}{GLUE}{RULES}{}", APPLY.join(" ")).as_bytes());
    format!("{FRAGMENT}# kbot-shadow sources {h:016x}\n")
}

/// Why the shadow checks cannot be built into this kernel.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    #[error("cannot run make: {0}")]
    Make(std::io::Error),
    #[error("make rustavailable timed out")]
    RustAvailableTimedOut,
    /// `why` is make's `***` line.
    #[error("Rust for Linux is not available ({why}); `kbot setup` installs rust-src, bindgen-cli and libclang-dev")]
    NoRust { why: String },
    #[error("cannot write {}: {err}", .path.display())]
    Write { path: PathBuf, err: std::io::Error },
    #[error("{0}")]
    Io(std::io::Error),
    #[error("cannot run git apply: {0}")]
    Spawn(std::io::Error),
    #[error("the shadow component's build glue did not apply ({})", .0.join(", "))]
    GlueRejected(Vec<String>),
    /// `first` is the first line of git apply's standard error.
    #[error("git apply of the shadow hooks failed: {first}")]
    ApplyFailed { first: String },
}

/// Whether Rust for Linux works for this tree and arch: `make rustavailable`.
pub fn available(
    sandbox: &kbot_sandbox::Policy,
    src: &Path,
    out: &Path,
    arch: Arch,
    log: &Path,
) -> Result<(), ShadowError> {
    let mut jail = sandbox.jail();
    let (mut cmd, _, _) = crate::build::make_cmd(&mut jail, src, out, arch, 1, false).map_err(ShadowError::Make)?;
    cmd.arg("rustavailable");
    match run_logged(&mut cmd, log, Duration::from_secs(120), 1 << 20) {
        Ok(e) if e.success() => Ok(()),
        Ok(Exit::TimedOut) => Err(ShadowError::RustAvailableTimedOut),
        Ok(_) => {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let why = text
                .lines()
                .find(|l| l.contains("***"))
                .unwrap_or("make rustavailable failed")
                .trim_start_matches("*** ")
                .trim();
            Err(ShadowError::NoRust { why: why.to_string() })
        }
        Err(e) => Err(ShadowError::Make(e)),
    }
}

fn write_if_changed(path: &Path, content: &str) -> Result<(), ShadowError> {
    if std::fs::read_to_string(path).is_ok_and(|c| c == content) {
        return Ok(());
    }
    std::fs::write(path, content).map_err(|err| ShadowError::Write { path: path.to_path_buf(), err })
}

/// Instruments a checked-out worktree. Returns the files whose hooks did not apply (their
/// hunks are left out); an error when the component itself cannot be added.
pub fn instrument(wt: &Path) -> Result<Vec<String>, ShadowError> {
    write_if_changed(&wt.join("include/linux/kbot_shadow.h"), HEADER)?;
    write_if_changed(&wt.join("fs/notify/kbot_shadow.rs"), GLUE)?;
    write_if_changed(&wt.join("fs/notify/kbot_rules.rs"), RULES)?;
    let patch = wt.join(".kbot-shadow-hooks.patch");
    std::fs::write(&patch, HOOKS_PATCH).map_err(ShadowError::Io)?;
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(wt)
        .args(APPLY)
        .arg(&patch)
        .output()
        .map_err(ShadowError::Spawn)?;
    let _ = std::fs::remove_file(&patch);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rejected = rejected_files(&stderr);
    for f in &rejected {
        let _ = std::fs::remove_file(wt.join(format!("{f}.rej")));
    }
    if rejected.iter().any(|f| f.ends_with("Kconfig") || f.ends_with("Makefile")) {
        // Leave the tree as it was checked out.
        let _ = git(wt, &["checkout", "-q", "--", "."]);
        return Err(ShadowError::GlueRejected(rejected));
    }
    if !out.status.success() && rejected.is_empty() {
        let _ = git(wt, &["checkout", "-q", "--", "."]);
        return Err(ShadowError::ApplyFailed { first: stderr.lines().next().unwrap_or("").to_string() });
    }
    keep_mtimes(wt, &hooked_files(HOOKS_PATCH));
    Ok(rejected)
}

/// The files a patch changes (`+++ b/...`).
pub fn hooked_files(patch: &str) -> Vec<String> {
    patch.lines().filter_map(|l| l.strip_prefix("+++ b/")).map(|p| p.trim().to_string()).collect()
}

/// Where the last instrumented version of each hooked file is remembered (untracked, beside
/// the tree's files; a lost file only costs a rebuild).
const STATE: &str = ".kbot-shadow-state";

/// Every checkout rewrites the hooked files and applying the hooks writes them again, so make
/// would recompile all of them for every prefix. A file whose instrumented content is exactly
/// what it was the last time gets that time's mtime back: its object was built from that
/// content (or is older and rebuilt anyway). Only the last version counts, never an older one.
pub fn keep_mtimes(wt: &Path, files: &[String]) {
    let state_path = wt.join(STATE);
    let old = std::fs::read_to_string(&state_path).unwrap_or_default();
    let last = parse_state(&old);
    let mut next = String::new();
    for f in files {
        let p = wt.join(f);
        let Ok(content) = std::fs::read(&p) else { continue };
        let hash = crate::fnv64(&content);
        let restored = last
            .iter()
            .find(|(path, h, _)| path == f && *h == hash)
            .and_then(|(_, _, t)| set_mtime(&p, *t).ok().map(|_| *t));
        let mtime = match restored {
            Some(t) => t,
            None => match mtime_of(&p) {
                Some(t) => t,
                None => continue,
            },
        };
        next += &format!("{hash:016x} {}.{:09} {f}\n", mtime.0, mtime.1);
    }
    let _ = std::fs::write(&state_path, next);
}

/// `(path, content hash, (secs, nanos))` per line of the state file; junk lines are skipped.
fn parse_state(text: &str) -> Vec<(String, u64, (u64, u32))> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.splitn(3, ' ');
            let hash = u64::from_str_radix(w.next()?, 16).ok()?;
            let (secs, nanos) = w.next()?.split_once('.')?;
            let path = w.next()?.to_string();
            Some((path, hash, (secs.parse().ok()?, nanos.parse().ok()?)))
        })
        .collect()
}

fn mtime_of(p: &Path) -> Option<(u64, u32)> {
    let d = std::fs::metadata(p).ok()?.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some((d.as_secs(), d.subsec_nanos()))
}

fn set_mtime(p: &Path, (secs, nanos): (u64, u32)) -> std::io::Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
    std::fs::File::options().write(true).open(p)?.set_modified(t)
}

/// Files with rejected hunks, from `git apply --reject`'s report.
pub fn rejected_files(stderr: &str) -> Vec<String> {
    let mut v: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("Applying patch ").or_else(|| l.strip_prefix("Applied patch ")))
        .filter(|l| l.contains("reject"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_git_apply_rejects() {
        let err = "Checking patch fs/notify/mark.c...\nerror: while searching for:\nApplying patch fs/notify/mark.c with 1 reject...\nRejected hunk #1.\nApplied patch fs/notify/group.c cleanly.\nApplying patch kernel/rcu/srcutree.c with 2 rejects...\n";
        assert_eq!(rejected_files(err), ["fs/notify/mark.c", "kernel/rcu/srcutree.c"]);
        assert!(rejected_files("").is_empty());
    }

    #[test]
    fn errors_read_as_before() {
        assert_eq!(
            ShadowError::NoRust { why: "Rust compiler 'rustc' could not be found.".into() }.to_string(),
            "Rust for Linux is not available (Rust compiler 'rustc' could not be found.); `kbot setup` installs \
             rust-src, bindgen-cli and libclang-dev"
        );
        assert_eq!(
            ShadowError::GlueRejected(vec!["fs/notify/Kconfig".into(), "fs/notify/Makefile".into()]).to_string(),
            "the shadow component's build glue did not apply (fs/notify/Kconfig, fs/notify/Makefile)"
        );
        assert_eq!(ShadowError::RustAvailableTimedOut.to_string(), "make rustavailable timed out");
    }

    #[test]
    fn the_component_uses_the_reference_core_source() {
        assert!(GLUE.contains("#[path = \"kbot_rules.rs\"]"));
        assert!(RULES.contains("pub struct Monitor"));
        // The rules are copied into the kernel as fs/notify/kbot_rules.rs: nothing in them may
        // name files beside them.
        assert!(!RULES.contains("include_str!") && !RULES.contains("#[path"), "rules.rs must stand alone");
        for r in kbot_refcore::rules::Rule::ALL.map(|r| r.name()) {
            assert!(RULES.contains(&format!("\"{r}\"")), "{r}");
            assert!(GLUE.contains(r), "{r}");
        }
        assert!(HOOKS_PATCH.contains("kernel/rcu/srcutree.c"));
    }

    #[test]
    fn hooked_files_keep_their_mtime_only_for_the_same_content() {
        let d = tempfile::tempdir().unwrap();
        let wt = d.path();
        std::fs::create_dir_all(wt.join("fs/notify")).unwrap();
        let f = wt.join("fs/notify/group.c");
        let files = vec!["fs/notify/group.c".to_string()];
        let old = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
        std::fs::write(&f, "instrumented A").unwrap();
        std::fs::File::options().write(true).open(&f).unwrap().set_modified(old).unwrap();
        keep_mtimes(wt, &files);
        // A checkout and the hooks write the same content again, now.
        std::fs::write(&f, "instrumented A").unwrap();
        keep_mtimes(wt, &files);
        assert_eq!(std::fs::metadata(&f).unwrap().modified().unwrap(), old, "same content: the old mtime is back");
        // Different content keeps its new mtime and becomes the one remembered.
        std::fs::write(&f, "instrumented B").unwrap();
        keep_mtimes(wt, &files);
        let b = std::fs::metadata(&f).unwrap().modified().unwrap();
        assert!(b > old);
        // Back to A: not the last version, so no going back to A's old time (its object may be B's).
        std::fs::write(&f, "instrumented A").unwrap();
        keep_mtimes(wt, &files);
        assert!(std::fs::metadata(&f).unwrap().modified().unwrap() > old);
        assert_eq!(hooked_files(HOOKS_PATCH).iter().filter(|p| p.ends_with(".c")).count(), 5);
    }
}
