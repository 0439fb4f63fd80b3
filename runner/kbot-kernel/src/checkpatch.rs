//! `scripts/checkpatch.pl` of the base tree (trusted: the user's tree, not the series') on one
//! patch mail.

use crate::proc::{run_logged, Exit};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpatch {
    pub errors: usize,
    pub warnings: usize,
    /// The ERROR/WARNING lines, file name removed.
    pub lines: Vec<String>,
}

/// Parses checkpatch's `--terse` output.
pub fn parse(out: &str) -> Option<Checkpatch> {
    let total = out.lines().find(|l| l.starts_with("total: "))?;
    let num = |word: &str| {
        total.split(", ").find(|p| p.contains(word)).and_then(|p| p.split_whitespace().find_map(|w| w.parse().ok()))
    };
    let lines = out
        .lines()
        .filter(|l| {
            l.contains(": ERROR:") || l.contains(": WARNING:") || l.contains(": ERROR") || l.contains(": WARNING")
        })
        .map(|l| l.split_once(": ").map_or(l, |(_, rest)| rest).to_string())
        .take(10)
        .collect();
    Some(Checkpatch { errors: num("error")?, warnings: num("warning")?, lines })
}

/// Runs checkpatch from `base` on `patch`; `None` when it cannot run here.
/// Sandboxed: the patch is hostile input to a large Perl script.
pub fn run(sandbox: &kbot_sandbox::Policy, base: &Path, patch: &Path, log: &Path) -> Option<Checkpatch> {
    let script = base.join("scripts/checkpatch.pl");
    if !script.is_file() {
        return None;
    }
    let mut jail = sandbox.jail();
    let script = jail.ro(&script, "checkpatch.pl").ok()?;
    let patch = jail.ro(patch, "patch.mbox").ok()?;
    let mut cmd = jail.command("perl", kbot_sandbox::Limits::TOOL);
    cmd.arg(&script).args(["--no-tree", "--terse", "--no-color"]).arg(&patch);
    match run_logged(&mut cmd, log, Duration::from_secs(60), 1 << 20) {
        Ok(Exit::TimedOut) | Err(_) => None,
        Ok(exit) => {
            let out = std::fs::read_to_string(log).ok()?;
            // --terse prints nothing at all for a clean patch.
            if exit.success() && out.trim().is_empty() {
                return Some(Checkpatch { errors: 0, warnings: 0, lines: Vec::new() });
            }
            parse(&out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_terse_output() {
        let out = "p.mbox:8: WARNING: Prefer a maximum 75 chars per line\np.mbox:40: ERROR: Missing Signed-off-by: line by nominal patch author\ntotal: 1 errors, 1 warnings, 23 lines checked\n";
        let c = parse(out).unwrap();
        assert_eq!((c.errors, c.warnings), (1, 1));
        assert_eq!(c.lines[1], "ERROR: Missing Signed-off-by: line by nominal patch author");
        assert!(parse("perl: not found").is_none());
    }
}
