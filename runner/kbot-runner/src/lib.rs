//! The check engine: everything between "here is a series" and "here is a `kbot.result/v1`".
//!
//! Stages, each a function of plain data in and out (see [`check`]): input (mbox bytes or a
//! range of the tree) → apply → per-arch lab (build, boot, kernel cache; behind the [`lab::Lab`]
//! trait) → compare → bisect → result. The decisions between the stages live in
//! [`pipeline`] and are unit-tested with a fake lab, without QEMU.

pub mod agent;
pub mod bench;
pub mod check;
pub mod home;
pub mod lab;
pub mod pipeline;
pub mod progress;
pub mod replay;
pub mod setup;

pub use home::{write_atomic, Home, Lock};
pub use progress::Progress;
use std::path::{Path, PathBuf};

/// An error that ends a kbot command: a message for one line and what kind it is. Both kinds
/// exit with status 2; the kind says whether the user or the machine must change.
#[derive(Debug, thiserror::Error)]
pub enum Fail {
    /// Bad input or a bad option: the command must change.
    #[error("{0}")]
    Usage(String),
    /// The environment: missing tools, an unreachable server, a full disk.
    #[error("{0}")]
    Env(String),
}

impl Fail {
    pub fn usage(msg: impl Into<String>) -> Fail {
        Fail::Usage(msg.into())
    }
    pub fn env(msg: impl Into<String>) -> Fail {
        Fail::Env(msg.into())
    }
    /// The message.
    pub fn msg(&self) -> &str {
        match self {
            Fail::Usage(m) | Fail::Env(m) => m,
        }
    }
    /// The exit status of the command.
    pub fn code(&self) -> i32 {
        2
    }
}

/// The number of cores: every arch gets all of them (`make -j`).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A fresh seed for the random scenarios, small enough to type.
pub fn new_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (t as u64 ^ u64::from(std::process::id()).rotate_left(32)) % 1_000_000
}

/// The sandbox for untrusted steps: bubblewrap, hiding kbot's data directory and the config's
/// directory (credentials) from what runs inside.
pub fn sandbox_policy(off: bool, home: &Home, config: Option<&Path>) -> Result<kbot_sandbox::Policy, Fail> {
    if off {
        return Ok(kbot_sandbox::Policy::off());
    }
    let mut hide = vec![home.root.clone()];
    if let Some(dir) = config.and_then(|c| std::fs::canonicalize(c).ok()).and_then(|c| c.parent().map(PathBuf::from)) {
        hide.push(dir);
    }
    kbot_sandbox::Policy::detect(&hide).map_err(|e| Fail::env(e.to_string()))
}

/// ccache lives in kbot's data directory unless the user chose one.
pub fn set_ccache_dir(home: &Home) {
    if std::env::var_os("CCACHE_DIR").is_none() {
        std::env::set_var("CCACHE_DIR", home.ccache_dir());
    }
}
