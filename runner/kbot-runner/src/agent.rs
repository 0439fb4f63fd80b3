//! Builds the static guest agent for an arch from this workspace (`images/agent`).

use crate::Fail;
use kbot_kernel::Arch;
use std::path::PathBuf;
use std::process::Command;

/// The kbot workspace this binary was built from.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds (incrementally) and returns the agent binary for `arch`.
/// `KBOT_AGENT_<ARCH>` (e.g. `KBOT_AGENT_X86_64`) points at a prebuilt one instead.
pub fn build(arch: Arch) -> Result<PathBuf, Fail> {
    let var = format!("KBOT_AGENT_{}", arch.name().to_ascii_uppercase());
    if let Some(p) = std::env::var_os(&var) {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(Fail::env(format!("{var}={} is not a file", p.display()))) };
    }
    let ws = workspace();
    if !ws.join("images/agent/Cargo.toml").is_file() {
        return Err(Fail::env(format!(
            "the kbot source tree is not at {}; set {var} to a prebuilt agent",
            ws.display()
        )));
    }
    let target = arch.rust_target();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&ws)
        .args(["build", "--quiet", "--release", "-p", "kbot-agent", "--target", target, "--target-dir"])
        .arg(ws.join("target"))
        .output()
        .map_err(|e| Fail::env(format!("cannot run cargo: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().find(|l| l.contains("error")).unwrap_or("").trim().to_string();
        return Err(Fail::env(format!(
            "building the {arch} guest agent failed ({first}); run `kbot setup` (rustup target {target}, cross linker)"
        )));
    }
    let bin = ws.join("target").join(target).join("release/kbot-agent");
    if !bin.is_file() {
        return Err(Fail::env(format!("the agent build left no {}", bin.display())));
    }
    Ok(bin)
}
