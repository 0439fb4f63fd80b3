//! The config file as `kbot` reads it: [`kbot_config`] parses and checks; this names the file.

pub use kbot_config::{Config, DEFAULT_LORE};
use kbot_runner::Fail;
use std::path::{Path, PathBuf};

/// `--config` / `KBOT_CONFIG`, else the repository's `config/kbot.yaml` when it exists.
pub fn default_path() -> Option<PathBuf> {
    let p = kbot_runner::agent::workspace().join("config/kbot.yaml");
    p.is_file().then_some(p)
}

/// Reads a config file; an error names the file, the key and the problem.
pub fn load(path: &Path) -> Result<Config, Fail> {
    let text = std::fs::read_to_string(path).map_err(|e| Fail::usage(format!("config {}: {e}", path.display())))?;
    kbot_config::parse(&text).map_err(|e| Fail::usage(format!("config {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(s: &str) -> Result<Config, Fail> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.yaml");
        std::fs::write(&p, s).unwrap();
        load(&p)
    }

    #[test]
    fn errors_name_the_file_and_key() {
        assert_eq!(load_str("lore: http://127.0.0.1:1/x/\n").unwrap().lore.as_deref(), Some("http://127.0.0.1:1/x/"));
        let e = load_str("lore: ftp://x\n").unwrap_err().to_string();
        assert!(e.starts_with("config ") && e.contains("k.yaml: lore: expected an http(s) URL"), "{e}");
        assert!(load_str("lroe: x\n").unwrap_err().msg().contains("unknown field `lroe`"));
    }

    #[test]
    fn the_shipped_file_loads() {
        let c = load(&kbot_runner::agent::workspace().join("config/kbot.yaml")).unwrap();
        assert_eq!(c.lore.as_deref(), Some(DEFAULT_LORE));
    }
}
