//! Who a report goes to besides the author and the series' own To/Cc: the maintainers and
//! lists `scripts/get_maintainer.pl` of the base tree names for the first bad patch (as
//! 0-day does). The script is the tree's (trusted), the patch is not: it runs in kbot's
//! bubblewrap sandbox, like checkpatch.pl, with the tree's MAINTAINERS read-only.

use kbot_sandbox::proc::{run_logged, Exit};
use std::path::Path;
use std::time::Duration;

/// The addresses (`Name <addr>` or a list's `addr`) get_maintainer.pl of `tree` gives for
/// `patch` (a mail or a `git format-patch` text). `work` is a scratch directory. An error
/// says why none could be had (no script, no MAINTAINERS, it failed).
pub fn get_maintainer(
    sandbox: &kbot_sandbox::Policy,
    tree: &Path,
    patch: &[u8],
    work: &Path,
) -> Result<Vec<String>, String> {
    let script = tree.join("scripts/get_maintainer.pl");
    let maintainers = tree.join("MAINTAINERS");
    if !script.is_file() || !maintainers.is_file() {
        return Err(format!("the tree {} has no scripts/get_maintainer.pl or MAINTAINERS", tree.display()));
    }
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let file = work.join("first-bad.patch");
    std::fs::write(&file, patch).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut jail = sandbox.jail();
    let io = |e: std::io::Error| e.to_string();
    let script = jail.ro(&script, "get_maintainer.pl").map_err(io)?;
    let maintainers = jail.ro(&maintainers, "MAINTAINERS").map_err(io)?;
    let patch = jail.ro(&file, "patch.mbox").map_err(io)?;
    let mut cmd = jail.command("perl", kbot_sandbox::Limits::TOOL);
    // --no-tree: no top-of-tree check (the tree is not the working directory inside);
    // --no-git*: no history walk (slow, and names people who touched a file once).
    cmd.arg(&script)
        .args(["--no-tree", "--no-git", "--no-git-fallback", "--no-rolestats", "--no-multiline"])
        .arg("--mpath")
        .arg(&maintainers)
        .arg(&patch);
    let log = work.join("get_maintainer.log");
    match run_logged(&mut cmd, &log, Duration::from_secs(60), 1 << 20) {
        Ok(Exit::TimedOut) => Err("get_maintainer.pl timed out".into()),
        Err(e) => Err(format!("get_maintainer.pl: {e}")),
        Ok(exit) => {
            let out = std::fs::read_to_string(&log).unwrap_or_default();
            if !exit.success() {
                let last = out.lines().last().unwrap_or("").to_string();
                return Err(format!("get_maintainer.pl failed: {last}"));
            }
            Ok(parse(&out))
        }
    }
}

/// The addresses of get_maintainer.pl's output (one per line, `--no-multiline` joins them
/// with ", "); anything that is not one address is left out.
pub fn parse(out: &str) -> Vec<String> {
    out.lines()
        .flat_map(|l| l.split(", "))
        .map(str::trim)
        .filter(|a| kbot_mail::mailbox(a).is_some())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_are_addresses() {
        let out = "Jan Kara <jack@suse.cz>, Amir Goldstein <amir73il@gmail.com>, linux-fsdevel@vger.kernel.org\nperl: warning: x\n";
        assert_eq!(
            parse(out),
            ["Jan Kara <jack@suse.cz>", "Amir Goldstein <amir73il@gmail.com>", "linux-fsdevel@vger.kernel.org"]
        );
    }

    /// The real get_maintainer.pl of the default tree (when `kbot setup` prepared it) on a
    /// small tree whose MAINTAINERS names a maintainer for fs/notify/, in the sandbox.
    #[test]
    fn the_real_script_names_the_maintainer_of_the_patched_files() {
        let Some(home) = std::env::var_os("HOME").map(std::path::PathBuf::from) else { return };
        let real = home.join(".local/share/kbot/trees/default/scripts/get_maintainer.pl");
        if !real.is_file() {
            eprintln!("skipped: no default tree ({})", real.display());
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        std::fs::create_dir_all(tree.join("scripts")).unwrap();
        std::fs::copy(&real, tree.join("scripts/get_maintainer.pl")).unwrap();
        std::fs::write(tree.join("MAINTAINERS"), "FSNOTIFY\nM:\tNora Notify <nora@example.org>\nL:\tnotify-list@example.org\nS:\tMaintained\nF:\tfs/notify/\n\nOTHER\nM:\tOtto <otto@example.org>\nS:\tMaintained\nF:\tmm/\n").unwrap();
        let patch = b"From: A <a@example.org>\nSubject: [PATCH] x\n\n---\ndiff --git a/fs/notify/mark.c b/fs/notify/mark.c\n--- a/fs/notify/mark.c\n+++ b/fs/notify/mark.c\n@@ -1 +1 @@\n-a\n+b\n";
        let policy = kbot_sandbox::Policy::detect(&[]).unwrap_or_else(|_| kbot_sandbox::Policy::off());
        let got = get_maintainer(&policy, &tree, patch, &d.path().join("work")).unwrap();
        assert_eq!(got, ["Nora Notify <nora@example.org>", "notify-list@example.org"]);
    }
}
