//! Threads from a local public-inbox v2 mirror (what `git clone <lore>/<list>/0` gives: the
//! inbox directory holds `git/N.git` epochs; every commit adds one message as the blob `m`).
//! Read with gix, no network. Searching every commit for each lookup is too slow for a big
//! list, so an index (message id → epoch and blob, and the ids each message refers to) is
//! kept and brought up to date from the last commit seen in each epoch.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    epoch: usize,
    blob: String,
    refs: Vec<String>,
}

/// The message index of one inbox.
#[derive(Debug, Default)]
pub struct Index {
    msgs: HashMap<String, Entry>,
    /// Per epoch, the newest commit indexed.
    tips: HashMap<usize, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// Messages added by this update.
    pub new: usize,
    /// Their message ids.
    pub new_ids: Vec<String>,
    pub total: usize,
    pub seconds: f64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An inbox that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("{} is not a public-inbox v2 mirror: it has no git/N.git epochs", .0.display())]
    NoGitDir(PathBuf),
    #[error("{} is not a public-inbox v2 mirror: git/ holds no N.git epoch", .0.display())]
    NoEpoch(PathBuf),
    /// An epoch's repository that cannot be opened or walked.
    #[error("{}: {source}", path.display())]
    Epoch { path: PathBuf, source: BoxError },
    /// A commit, tree or blob of an epoch that cannot be read.
    #[error(transparent)]
    Object(BoxError),
    #[error("no message <{mid}> in the inbox {}", dir.display())]
    NoMessage { mid: String, dir: PathBuf },
    #[error("epoch {0} is gone")]
    EpochGone(usize),
    #[error("message <{id}>: {source}")]
    Message { id: String, source: BoxError },
    #[error("cannot write the index {}: {source}", path.display())]
    WriteIndex { path: PathBuf, source: std::io::Error },
}

fn epoch_error(path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> InboxError {
    InboxError::Epoch { path: path.to_path_buf(), source: Box::new(e) }
}

fn object_error(e: impl std::error::Error + Send + Sync + 'static) -> InboxError {
    InboxError::Object(Box::new(e))
}

/// The epochs of an inbox, in order.
pub fn epochs(dir: &Path) -> Result<Vec<(usize, PathBuf)>, InboxError> {
    let git = dir.join("git");
    let rd = std::fs::read_dir(&git).map_err(|_| InboxError::NoGitDir(dir.to_path_buf()))?;
    let mut v: Vec<(usize, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_suffix(".git")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(InboxError::NoEpoch(dir.to_path_buf()));
    }
    Ok(v)
}

/// Message id and referenced ids (In-Reply-To, References) from a raw message's headers.
fn headers(raw: &[u8]) -> Option<(String, Vec<String>)> {
    let (hs, _) = mailparse::parse_headers(raw).ok()?;
    let mut mid = None;
    let mut refs = Vec::new();
    for h in hs {
        let key = h.get_key_ref().to_ascii_lowercase();
        match key.as_str() {
            "message-id" => mid = kbot_mbox::msg_ids(&h.get_value()).into_iter().next(),
            "in-reply-to" | "references" => {
                for r in kbot_mbox::msg_ids(&h.get_value()) {
                    if !refs.contains(&r) {
                        refs.push(r);
                    }
                }
            }
            _ => {}
        }
    }
    Some((mid?, refs))
}

impl Index {
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Loads an index file (missing or unreadable: empty index, rebuilt by `update`).
    pub fn load(path: &Path) -> Index {
        let mut ix = Index::default();
        let Ok(text) = std::fs::read_to_string(path) else { return ix };
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["t", epoch, commit] => {
                    if let Ok(e) = epoch.parse() {
                        ix.tips.insert(e, commit.to_string());
                    }
                }
                ["m", mid, epoch, blob, refs] => {
                    if let Ok(e) = epoch.parse() {
                        let refs = refs.split(' ').filter(|r| !r.is_empty()).map(str::to_string).collect();
                        ix.msgs.insert(mid.to_string(), Entry { epoch: e, blob: blob.to_string(), refs });
                    }
                }
                _ => {}
            }
        }
        ix
    }

    /// Writes the index atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut out = String::new();
        for (e, c) in &self.tips {
            out += &format!("t\t{e}\t{c}\n");
        }
        for (mid, en) in &self.msgs {
            if mid.contains(['\t', '\n']) {
                continue;
            }
            out += &format!("m\t{mid}\t{}\t{}\t{}\n", en.epoch, en.blob, en.refs.join(" "));
        }
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, out)?;
        std::fs::rename(&tmp, path)
    }

    /// Indexes the commits added to each epoch since the last update.
    pub fn update(&mut self, dir: &Path) -> Result<Update, InboxError> {
        let t = Instant::now();
        let before = self.msgs.len();
        let mut new_ids = Vec::new();
        for (n, path) in epochs(dir)? {
            let repo = gix::open(&path).map_err(|e| epoch_error(&path, e))?;
            let Ok(head) = repo.head_id() else { continue };
            let head = head.detach();
            let stop = self.tips.get(&n).and_then(|t| gix::ObjectId::from_hex(t.as_bytes()).ok());
            if stop == Some(head) {
                continue;
            }
            let walk = repo.rev_walk([head]).all().map_err(|e| epoch_error(&path, e))?;
            for info in walk {
                let info = info.map_err(|e| epoch_error(&path, e))?;
                if Some(info.id) == stop {
                    break;
                }
                let commit = info.object().map_err(object_error)?;
                let tree = commit.tree().map_err(object_error)?;
                // A commit that removes a message has no `m` (public-inbox writes `d`).
                let Some(entry) = tree.find_entry("m") else { continue };
                let blob = entry.object().map_err(object_error)?;
                if let Some((mid, refs)) = headers(&blob.data) {
                    // The newest copy of a message id wins; walking newest first, keep the first.
                    if let std::collections::hash_map::Entry::Vacant(v) = self.msgs.entry(mid) {
                        new_ids.push(v.key().clone());
                        v.insert(Entry { epoch: n, blob: entry.oid().to_string(), refs });
                    }
                }
            }
            self.tips.insert(n, head.to_string());
        }
        Ok(Update {
            new: self.msgs.len() - before,
            new_ids,
            total: self.msgs.len(),
            seconds: t.elapsed().as_secs_f64(),
        })
    }

    /// Message ids of the thread `mid` belongs to (linked by In-Reply-To/References either way).
    pub fn thread_ids(&self, mid: &str) -> Vec<String> {
        let mut back: HashMap<&str, Vec<&str>> = HashMap::new();
        for (m, e) in &self.msgs {
            for r in &e.refs {
                back.entry(r.as_str()).or_default().push(m.as_str());
            }
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut q: VecDeque<&str> = VecDeque::from([mid]);
        while let Some(m) = q.pop_front() {
            if !seen.insert(m) {
                continue;
            }
            if let Some(e) = self.msgs.get(m) {
                q.extend(e.refs.iter().map(String::as_str));
            }
            if let Some(b) = back.get(m) {
                q.extend(b.iter().copied());
            }
        }
        let mut v: Vec<String> = seen.into_iter().filter(|m| self.msgs.contains_key(*m)).map(str::to_string).collect();
        v.sort();
        v
    }

    /// The thread of `mid` as an mboxrd, or an error when the inbox does not have `mid`.
    pub fn thread_mbox(&self, dir: &Path, mid: &str) -> Result<Vec<u8>, InboxError> {
        if !self.msgs.contains_key(mid) {
            return Err(InboxError::NoMessage { mid: mid.to_string(), dir: dir.to_path_buf() });
        }
        let repos: HashMap<usize, gix::Repository> =
            epochs(dir)?.into_iter().filter_map(|(n, p)| gix::open(&p).ok().map(|r| (n, r))).collect();
        let mut out = Vec::new();
        for id in self.thread_ids(mid) {
            let e = &self.msgs[&id];
            let repo = repos.get(&e.epoch).ok_or(InboxError::EpochGone(e.epoch))?;
            let oid = gix::ObjectId::from_hex(e.blob.as_bytes()).map_err(object_error)?;
            let blob =
                repo.find_object(oid).map_err(|x| InboxError::Message { id: id.clone(), source: Box::new(x) })?;
            kbot_mbox::append_mboxrd(&mut out, b"From mboxrd@z Thu Jan  1 00:00:00 1970", &blob.data);
            out.push(b'\n');
        }
        Ok(out)
    }
}

/// Loads the index at `index_path`, updates it from `dir` and saves it.
pub fn open_indexed(dir: &Path, index_path: &Path) -> Result<(Index, Update), InboxError> {
    let mut ix = Index::load(index_path);
    let u = ix.update(dir)?;
    if u.new > 0 || !index_path.exists() {
        ix.save(index_path).map_err(|source| InboxError::WriteIndex { path: index_path.to_path_buf(), source })?;
    }
    Ok((ix, u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_ids() {
        let raw = b"Message-ID: <a@x>\nIn-Reply-To: <b@x>\nReferences: <c@x>\n <b@x>\nSubject: s\n\nbody\n";
        assert_eq!(headers(raw), Some(("a@x".into(), vec!["b@x".into(), "c@x".into()])));
        assert_eq!(headers(b"Subject: no id\n\n"), None);
    }

    #[test]
    fn not_an_inbox() {
        let d = tempfile::tempdir().unwrap();
        let e = epochs(d.path()).unwrap_err();
        assert!(matches!(e, InboxError::NoGitDir(_)), "{e}");
        assert_eq!(
            e.to_string(),
            format!("{} is not a public-inbox v2 mirror: it has no git/N.git epochs", d.path().display())
        );
        std::fs::create_dir(d.path().join("git")).unwrap();
        let e = epochs(d.path()).unwrap_err().to_string();
        assert!(e.ends_with("is not a public-inbox v2 mirror: git/ holds no N.git epoch"), "{e}");
        let ix = Index::load(&d.path().join("none.idx"));
        let e = ix.thread_mbox(d.path(), "a@b").unwrap_err().to_string();
        assert_eq!(e, format!("no message <a@b> in the inbox {}", d.path().display()));
    }
}
