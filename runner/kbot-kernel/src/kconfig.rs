//! The test kernel's configuration: tinyconfig plus kbot's fragment, regenerated only when
//! the fragment changes (so incremental builds stay incremental), and checked afterwards.

use crate::build::make_cmd;
use crate::proc::{run_logged, Exit};
use crate::{fnv64, Arch};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why kbot's configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KconfigError {
    #[error("cannot create {}: {err}", .path.display())]
    CreateDir { path: PathBuf, err: std::io::Error },
    /// Reading or writing the fragment, `.config` or the key stamp.
    #[error("{0}")]
    Io(std::io::Error),
    #[error("cannot set up kconfig: {0}")]
    Setup(std::io::Error),
    #[error("kconfig step {step} timed out; see {}", .log.display())]
    TimedOut { step: &'static str, log: PathBuf },
    #[error("kconfig step {step} failed; see {}", .log.display())]
    Failed { step: &'static str, log: PathBuf },
    #[error("cannot run kconfig step {step}: {err}")]
    Run { step: &'static str, err: std::io::Error },
    #[error(
        "the kernel config lacks {} from kbot's fragment (a dependency is missing or the tree does not know it)",
        .0.join(", ")
    )]
    Unmet(Vec<String>),
}

/// Options of the fragment that did not end up in `.config` (a missing dependency, or an
/// option the tree does not know).
pub fn unmet(fragment: &str, config: &str) -> Vec<String> {
    let have: std::collections::HashSet<&str> = config.lines().map(str::trim).collect();
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .filter(|l| !have.contains(l))
        .map(str::to_string)
        .collect()
}

/// Key of the configuration: the fragment (plus `extra`, e.g. the shadow checks) and the arch.
pub fn config_key(arch: Arch, extra: &str) -> String {
    format!("{:016x}", fnv64(format!("{}\n{}{}", arch.name(), arch.fragment(), extra).as_bytes()))
}

/// Makes sure `out/.config` is kbot's configuration for `arch`. Returns whether it was
/// (re)generated.
pub fn ensure(
    sandbox: &kbot_sandbox::Policy,
    src: &Path,
    out: &Path,
    arch: Arch,
    extra: &str,
    log: &Path,
) -> Result<bool, KconfigError> {
    let key = config_key(arch, extra);
    let stamp = out.join(".kbot-config-key");
    if out.join(".config").exists() && std::fs::read_to_string(&stamp).is_ok_and(|k| k.trim() == key) {
        return Ok(false);
    }
    std::fs::create_dir_all(out).map_err(|err| KconfigError::CreateDir { path: out.to_path_buf(), err })?;
    let fragment = format!("{}{extra}", arch.fragment());
    let frag_path = out.join("kbot.fragment");
    std::fs::write(&frag_path, &fragment).map_err(KconfigError::Io)?;
    let steps: [(&str, Vec<String>); 3] =
        [("tinyconfig", vec!["tinyconfig".into()]), ("merge", vec![]), ("olddefconfig", vec!["olddefconfig".into()])];
    for (name, args) in steps {
        let mut jail = sandbox.jail();
        let (mut cmd, src_in, out_in) = make_cmd(&mut jail, src, out, arch, 1, false).map_err(KconfigError::Setup)?;
        if name == "merge" {
            // The tree's own script, so it runs sandboxed like make.
            cmd = jail.command("sh", kbot_sandbox::Limits::BUILD);
            cmd.arg(src_in.join("scripts/kconfig/merge_config.sh")).arg("-m").arg("-O").arg(&out_in);
            cmd.arg(out_in.join(".config")).arg(out_in.join("kbot.fragment"));
            cmd.env("ARCH", arch.make_arch());
        }
        cmd.args(&args);
        let step_log = log.with_extension(format!("{name}.log"));
        match run_logged(&mut cmd, &step_log, Duration::from_secs(300), 1 << 20) {
            Ok(e) if e.success() => {}
            Ok(Exit::TimedOut) => return Err(KconfigError::TimedOut { step: name, log: step_log }),
            Ok(_) => return Err(KconfigError::Failed { step: name, log: step_log }),
            Err(err) => return Err(KconfigError::Run { step: name, err }),
        }
    }
    let config = std::fs::read_to_string(out.join(".config")).map_err(KconfigError::Io)?;
    let missing = unmet(&fragment, &config);
    if !missing.is_empty() {
        return Err(KconfigError::Unmet(missing));
    }
    std::fs::write(&stamp, &key).map_err(KconfigError::Io)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmet_lists_what_did_not_stick() {
        let frag = "# c\nCONFIG_A=y\nCONFIG_B=y\nCONFIG_N=20\n";
        let cfg = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_N=20\n";
        assert_eq!(unmet(frag, cfg), ["CONFIG_B=y"]);
    }

    #[test]
    fn errors_read_as_before() {
        let log = PathBuf::from("/o/k.merge.log");
        assert_eq!(
            KconfigError::TimedOut { step: "merge", log: log.clone() }.to_string(),
            "kconfig step merge timed out; see /o/k.merge.log"
        );
        assert_eq!(
            KconfigError::Failed { step: "merge", log }.to_string(),
            "kconfig step merge failed; see /o/k.merge.log"
        );
        assert_eq!(
            KconfigError::Unmet(vec!["CONFIG_A=y".into(), "CONFIG_B=y".into()]).to_string(),
            "the kernel config lacks CONFIG_A=y, CONFIG_B=y from kbot's fragment (a dependency is missing or the tree \
             does not know it)"
        );
    }

    #[test]
    fn fragments_name_the_subsystem_under_test() {
        for a in Arch::ALL {
            let f = a.fragment();
            assert!(f.contains("CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y"));
            assert_ne!(config_key(a, ""), config_key(a, "CONFIG_RUST=y\n"));
        }
        assert_ne!(config_key(Arch::X86_64, ""), config_key(Arch::Arm64, ""));
    }
}
