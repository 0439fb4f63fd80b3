//! Where `kbot check` gets the series: a file, lore / a public-inbox over HTTP, a local inbox
//! mirror, or a range of the tree. Fetching is I/O at the edge; the engine gets bytes.

use kbot_runner::{check, Fail, Home, Progress};
use std::path::PathBuf;
use std::time::Duration;

pub enum Source {
    Mbox(PathBuf),
    /// A message id (or lore link) of any message of the thread, and the inbox base URL.
    Msgid {
        id: String,
        lore: String,
    },
    /// A message id looked up in a local public-inbox v2 mirror.
    Inbox {
        id: String,
        dir: PathBuf,
    },
    /// `BASE..TIP` in the tree.
    Range(String),
}

impl Source {
    /// The options that name this input again, for the report's reproduce line, quoted for
    /// a shell (a Message-ID is the sender's text).
    pub fn reproduce(&self) -> String {
        let words: Vec<String> = match self {
            Source::Mbox(m) => vec!["--mbox".into(), m.display().to_string()],
            Source::Range(r) => vec!["--range".into(), r.clone()],
            Source::Msgid { id, lore } => vec!["--msgid".into(), id.clone(), "--lore".into(), lore.clone()],
            Source::Inbox { id, dir } => {
                vec!["--msgid".into(), id.clone(), "--inbox".into(), dir.display().to_string()]
            }
        };
        kbot_report::shell_line(&words)
    }

    /// Reads or fetches the series for the engine.
    pub fn fetch(self, home: &Home, progress: &Progress) -> Result<check::Input, Fail> {
        match self {
            Source::Mbox(p) => {
                let data = std::fs::read(&p).map_err(|e| Fail::usage(format!("cannot read {}: {e}", p.display())))?;
                Ok(check::Input::Mbox { data, source: p.display().to_string() })
            }
            Source::Range(r) => Ok(check::Input::Range(r)),
            Source::Inbox { id, dir } => {
                let mid = id.trim().trim_start_matches('<').trim_end_matches('>');
                let canon = dir.canonicalize().map_err(|e| Fail::usage(format!("--inbox {}: {e}", dir.display())))?;
                let index = home
                    .root
                    .join("inbox-index")
                    .join(format!("{:016x}.tsv", kbot_kernel::fnv64(canon.to_string_lossy().as_bytes())));
                let (ix, u) = kbot_inbox::open_indexed(&canon, &index).map_err(|e| Fail::usage(e.to_string()))?;
                progress.say(
                    "inbox",
                    "index",
                    &format!("indexed {} new message(s) in {:.2}s ({} in all)", u.new, u.seconds, u.total),
                );
                let data = ix.thread_mbox(&canon, mid).map_err(|e| Fail::usage(e.to_string()))?;
                Ok(check::Input::Mbox { data, source: format!("{} <{mid}>", canon.display()) })
            }
            Source::Msgid { id, lore } => {
                let target = kbot_lore::parse_target(&id, &lore).map_err(|e| Fail::usage(e.to_string()))?;
                let url = target.thread_url();
                let data =
                    kbot_lore::fetch_thread(&target, 3, Duration::from_secs(30), 100 << 20).map_err(|e| match e {
                        kbot_lore::FetchError::NotFound { .. } => Fail::usage(e.to_string()),
                        _ => Fail::env(e.to_string()),
                    })?;
                Ok(check::Input::Mbox { data, source: url })
            }
        }
    }
}
