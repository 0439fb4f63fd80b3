//! `config/kbot.yaml`: the settings `kbot check` reads (see the file for every key).

use crate::Fail;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_LORE: &str = "https://lore.kernel.org/all/";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Inbox base URL for `--msgid`.
    pub lore: Option<String>,
}

/// `--config` / `KBOT_CONFIG`, else the repository's `config/kbot.yaml` when it exists.
pub fn default_path() -> Option<PathBuf> {
    let p = crate::agent::workspace().join("config/kbot.yaml");
    p.is_file().then_some(p)
}

/// Reads a config file; an error names the file and what is wrong (key and problem).
pub fn load(path: &Path) -> Result<Config, Fail> {
    let text = std::fs::read_to_string(path).map_err(|e| Fail::usage(format!("config {}: {e}", path.display())))?;
    let c: Config =
        serde_norway::from_str(&text).map_err(|e| Fail::usage(format!("config {}: {e}", path.display())))?;
    if let Some(l) = &c.lore {
        if !(l.starts_with("http://") || l.starts_with("https://")) {
            return Err(Fail::usage(format!("config {}: lore: expected an http(s) URL, not {l:?}", path.display())));
        }
    }
    Ok(c)
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
    fn keys_and_errors() {
        assert_eq!(load_str("lore: http://127.0.0.1:1/x/\n").unwrap().lore.as_deref(), Some("http://127.0.0.1:1/x/"));
        assert!(load_str("").unwrap().lore.is_none());
        assert!(load_str("lore: ftp://x\n").unwrap_err().msg.contains("lore: expected an http(s) URL"));
        assert!(load_str("lroe: x\n").unwrap_err().msg.contains("unknown field `lroe`"));
        assert!(load_str("lore: [1, 2]\n").is_err());
    }

    #[test]
    fn the_shipped_file_loads() {
        let c = load(&crate::agent::workspace().join("config/kbot.yaml")).unwrap();
        assert_eq!(c.lore.as_deref(), Some(DEFAULT_LORE));
    }
}
