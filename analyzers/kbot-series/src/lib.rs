//! Turns the mails of a thread or mbox into a patch series: subject tags (`[PATCH v3 2/7]`,
//! `[RFC PATCH]`, `[PATCH net-next v2 1/3]`), version choice, order by index, cover letter,
//! missing and duplicate patches, and the `base-commit:` footer.

pub mod checks;
pub mod trailers;

pub use kbot_mbox::Mail;
use serde::Serialize;

/// What the bracketed tags of a subject say.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SubjectTags {
    /// `Re:`/`Fwd:` in front: a reply, not a patch.
    pub reply: bool,
    pub is_patch: bool,
    pub rfc: bool,
    pub version: u32,
    pub index: Option<u32>,
    pub total: Option<u32>,
    /// Other tags, e.g. `net-next`.
    pub prefixes: Vec<String>,
    /// The subject without tags.
    pub title: String,
}

fn strip_reply(s: &str) -> Option<&str> {
    for p in ["re:", "fwd:", "fw:", "aw:"] {
        if s.len() >= p.len() && s.is_char_boundary(p.len()) && s[..p.len()].eq_ignore_ascii_case(p) {
            return Some(s[p.len()..].trim_start());
        }
    }
    None
}

fn parse_n_of_m(tok: &str) -> Option<(u32, u32)> {
    let (a, b) = tok.split_once('/')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn parse_version(tok: &str) -> Option<u32> {
    tok.strip_prefix(['v', 'V'])?.parse().ok()
}

pub fn parse_subject(subject: &str) -> SubjectTags {
    let mut t = SubjectTags { version: 1, ..Default::default() };
    let mut s = subject.trim();
    while let Some(rest) = strip_reply(s) {
        t.reply = true;
        s = rest;
    }
    while let Some(inner) = s.strip_prefix('[') {
        let Some(end) = inner.find(']') else { break };
        for tok in inner[..end].split(|c: char| c.is_whitespace() || c == ',').filter(|t| !t.is_empty()) {
            let up = tok.to_ascii_uppercase();
            if up == "PATCH" {
                t.is_patch = true;
            } else if up == "RFC" {
                t.rfc = true;
                t.is_patch = true;
            } else if let Some(v) = up.strip_prefix("PATCH").and_then(parse_version) {
                t.is_patch = true;
                t.version = v;
            } else if let Some(v) = parse_version(tok) {
                t.version = v;
            } else if let Some((i, n)) = parse_n_of_m(tok) {
                t.index = Some(i);
                t.total = Some(n);
            } else {
                t.prefixes.push(tok.to_string());
            }
        }
        s = inner[end + 1..].trim_start();
        while let Some(rest) = strip_reply(s) {
            t.reply = true;
            s = rest;
        }
    }
    t.title = s.trim().to_string();
    t
}

/// Whether the text carries a diff `git am` can apply.
pub fn has_diff(body: &str) -> bool {
    body.lines().any(|l| l.starts_with("diff --git ") || l.starts_with("Index: "))
        || body.lines().zip(body.lines().skip(1)).any(|(a, b)| a.starts_with("--- ") && b.starts_with("+++ "))
}

#[derive(Debug, Clone, Serialize)]
pub struct Patch {
    pub index: u32,
    /// The subject without tags, as `git am` will record it.
    pub subject: String,
    pub message_id: String,
    pub author: String,
    #[serde(skip)]
    pub mail: Mail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub subject: String,
    pub version: u32,
    pub total: u32,
    pub message_id: String,
    pub rfc: bool,
    pub prefixes: Vec<String>,
    #[serde(skip)]
    pub cover: Option<Mail>,
    pub patches: Vec<Patch>,
    /// Indices in 1..=total that no mail carries.
    pub missing: Vec<u32>,
    /// Indices sent more than once in this version; the first copy is used.
    pub duplicates: Vec<u32>,
    /// Indices whose mail has no diff (so they cannot be applied); also in `missing`.
    pub without_diff: Vec<u32>,
    /// `base-commit:` from the cover letter or a patch.
    pub base_commit: Option<String>,
    /// Other versions of the series found in the same input.
    pub other_versions: Vec<u32>,
    /// A partial reroll: (index, version) of the patches taken from an older version.
    pub from_older: Vec<(u32, u32)>,
    /// `prerequisite-patch-id:` footers (patches the series expects below it).
    pub prerequisites: Vec<String>,
}

/// `prerequisite-patch-id:` values of a mail.
fn prerequisites(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("prerequisite-patch-id:").map(|v| v.trim().to_string()))
        .filter(|v| v.len() >= 7 && v.chars().all(|c| c.is_ascii_hexdigit()))
        .collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeriesError {
    #[error("none of the {mails} mails is a patch (no '[PATCH ...]' subject without 'Re:')")]
    NoPatches { mails: usize },
    #[error("version {want} of the series is not in the input; it has {have:?}")]
    NoSuchVersion { want: u32, have: Vec<u32> },
}

fn base_commit(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("base-commit:")?.trim();
        (v.len() >= 7 && v.chars().all(|c| c.is_ascii_hexdigit())).then(|| v.to_string())
    })
}

/// Assembles the series; `want_version` picks a version, else the newest is used.
pub fn assemble(mails: &[Mail], want_version: Option<u32>) -> Result<Series, SeriesError> {
    let tagged: Vec<(SubjectTags, &Mail)> =
        mails.iter().map(|m| (parse_subject(&m.subject), m)).filter(|(t, _)| t.is_patch && !t.reply).collect();
    let mut versions: Vec<u32> = tagged.iter().map(|(t, _)| t.version).collect();
    versions.sort_unstable();
    versions.dedup();
    let version = match (want_version, versions.last()) {
        (_, None) => return Err(SeriesError::NoPatches { mails: mails.len() }),
        (Some(w), _) if !versions.contains(&w) => return Err(SeriesError::NoSuchVersion { want: w, have: versions }),
        (Some(w), _) => w,
        (None, Some(&v)) => v,
    };
    let mine: Vec<&(SubjectTags, &Mail)> = tagged.iter().filter(|(t, _)| t.version == version).collect();
    let total = mine.iter().filter_map(|(t, _)| t.total).max().unwrap_or(1);
    let cover = mine.iter().find(|(t, _)| t.index == Some(0)).map(|(t, m)| (t.clone(), (*m).clone()));
    let mut patches: Vec<Patch> = Vec::new();
    let (mut duplicates, mut without_diff) = (Vec::new(), Vec::new());
    for (t, m) in &mine {
        let index = t.index.unwrap_or(1);
        if index == 0 {
            continue;
        }
        if !has_diff(&m.body) {
            without_diff.push(index);
            continue;
        }
        if patches.iter().any(|p| p.index == index) {
            duplicates.push(index);
            continue;
        }
        patches.push(Patch {
            index,
            subject: t.title.clone(),
            message_id: m.message_id.clone(),
            author: m.from.clone(),
            mail: (*m).clone(),
        });
    }
    // A partial reroll (b4's term): a new version of only some patches, each sent in reply to
    // the thread of an older version, and no cover letter of its own. The other patches come
    // from the newest older version that has them.
    let mut rerolled = Vec::new();
    let partial = cover.is_none()
        && !patches.is_empty()
        && patches.len() < total as usize
        && patches.iter().all(|p| {
            p.mail
                .in_reply_to
                .as_ref()
                .is_some_and(|irt| tagged.iter().any(|(t, m)| t.version < version && &m.message_id == irt))
        });
    if partial {
        let mut older: Vec<&(SubjectTags, &Mail)> =
            tagged.iter().filter(|(t, _)| t.version < version && t.total == Some(total)).collect();
        older.sort_by_key(|(t, _)| std::cmp::Reverse(t.version));
        for i in 1..=total {
            if patches.iter().any(|p| p.index == i) {
                continue;
            }
            if let Some((t, m)) = older.iter().find(|(t, m)| t.index == Some(i) && has_diff(&m.body)) {
                patches.push(Patch {
                    index: i,
                    subject: t.title.clone(),
                    message_id: m.message_id.clone(),
                    author: m.from.clone(),
                    mail: (*m).clone(),
                });
                rerolled.push((i, t.version));
            }
        }
    }
    let cover = if partial {
        tagged
            .iter()
            .filter(|(t, _)| t.index == Some(0) && t.total == Some(total))
            .max_by_key(|(t, _)| t.version)
            .map(|(t, m)| (t.clone(), (*m).clone()))
    } else {
        cover
    };
    patches.sort_by_key(|p| p.index);
    duplicates.dedup();
    without_diff.sort_unstable();
    without_diff.dedup();
    let missing: Vec<u32> = (1..=total).filter(|i| !patches.iter().any(|p| p.index == *i)).collect();
    let first = mine.iter().min_by_key(|(t, _)| t.index.unwrap_or(1)).expect("a version has mails");
    let (head_tags, head_mail) = match &cover {
        Some((t, m)) => (t.clone(), m.clone()),
        None => (first.0.clone(), first.1.clone()),
    };
    let base = cover
        .as_ref()
        .and_then(|(_, m)| base_commit(&m.body))
        .or_else(|| patches.iter().find_map(|p| base_commit(&p.mail.body)));
    Ok(Series {
        subject: head_tags.title.clone(),
        version,
        total,
        message_id: head_mail.message_id.clone(),
        rfc: head_tags.rfc,
        prefixes: head_tags.prefixes.clone(),
        cover: cover.map(|(_, m)| m),
        patches,
        missing,
        duplicates,
        without_diff,
        base_commit: base,
        other_versions: versions.into_iter().filter(|v| *v != version).collect(),
        from_older: rerolled,
        prerequisites: mails.iter().flat_map(|m| prerequisites(&m.body)).fold(Vec::new(), |mut v, p| {
            if !v.contains(&p) {
                v.push(p);
            }
            v
        }),
    })
}

/// A series made of commits of a tree, in order (patch `i` is the `i`-th mail, as
/// `git format-patch -1` gives each commit): version 1, no cover letter, nothing missing.
pub fn from_commits(mails: &[Mail]) -> Result<Series, SeriesError> {
    let first = mails.first().ok_or(SeriesError::NoPatches { mails: 0 })?;
    let tags = parse_subject(&first.subject);
    let patches: Vec<Patch> = mails
        .iter()
        .zip(1..)
        .map(|(m, index)| Patch {
            index,
            subject: parse_subject(&m.subject).title,
            message_id: m.message_id.clone(),
            author: m.from.clone(),
            mail: m.clone(),
        })
        .collect();
    Ok(Series {
        subject: tags.title,
        version: 1,
        total: patches.len() as u32,
        message_id: first.message_id.clone(),
        rfc: false,
        prefixes: Vec::new(),
        cover: None,
        patches,
        missing: Vec::new(),
        duplicates: Vec::new(),
        without_diff: Vec::new(),
        base_commit: None,
        other_versions: Vec::new(),
        from_older: Vec::new(),
        prerequisites: Vec::new(),
    })
}

impl From<&Patch> for kbot_report::PatchInfo {
    /// The patch as the result names it; its commit, trailers and checks come later.
    fn from(p: &Patch) -> Self {
        kbot_report::PatchInfo {
            index: p.index,
            subject: p.subject.clone(),
            message_id: p.message_id.clone(),
            author: p.author.clone(),
            commit: None,
            trailers: Vec::new(),
            checks: Vec::new(),
        }
    }
}

impl Series {
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// A stable plain-text account of the series, used by the table tests in `testdata/`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "subject: {}\nversion: {}\ntotal: {}\nmessage_id: {}\nrfc: {}\nprefixes: {:?}\ncover: {}\nbase_commit: {}\n",
            self.subject,
            self.version,
            self.total,
            self.message_id,
            self.rfc,
            self.prefixes,
            self.cover.is_some(),
            self.base_commit.as_deref().unwrap_or("-"),
        );
        for p in &self.patches {
            s += &format!("patch {}: {} | {} | {}\n", p.index, p.subject, p.message_id, p.author);
        }
        s += &format!(
            "missing: {:?}\nduplicates: {:?}\nwithout_diff: {:?}\nother_versions: {:?}\n",
            self.missing, self.duplicates, self.without_diff, self.other_versions
        );
        if !self.from_older.is_empty() {
            s += &format!("from_older: {:?}\n", self.from_older);
        }
        if !self.prerequisites.is_empty() {
            s += &format!("prerequisites: {:?}\n", self.prerequisites);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// subject, is a patch, version, index/total, other tags, title
    type Case<'a> = (&'a str, bool, u32, Option<(u32, u32)>, &'a [&'a str], &'a str);

    #[test]
    fn subject_tags() {
        let cases: &[Case] = &[
            ("[PATCH v3 2/7] fanotify: x", true, 3, Some((2, 7)), &[], "fanotify: x"),
            ("[RFC PATCH] a: b", true, 1, None, &[], "a: b"),
            ("[PATCH net-next v2 1/3] net: y", true, 2, Some((1, 3)), &["net-next"], "net: y"),
            ("[PATCHv4 0/2] z", true, 4, Some((0, 2)), &[], "z"),
            ("[PATCH 01/10] [media] m", true, 1, Some((1, 10)), &["media"], "m"),
            ("[GIT PULL] fsnotify", false, 1, None, &["GIT", "PULL"], "fsnotify"),
            ("plain subject", false, 1, None, &[], "plain subject"),
        ];
        for (s, patch, v, nm, prefixes, title) in cases {
            let t = parse_subject(s);
            assert_eq!(t.is_patch, *patch, "{s}");
            assert_eq!(t.version, *v, "{s}");
            assert_eq!(t.index.zip(t.total), *nm, "{s}");
            assert_eq!(t.prefixes, *prefixes, "{s}");
            assert_eq!(t.title, *title, "{s}");
        }
        assert!(parse_subject("Re: [PATCH 1/2] x").reply);
        assert!(parse_subject("[PATCH 1/2] RE: x").reply);
        assert!(parse_subject("[RFC v2 1/2] x").rfc);
    }

    /// Each `testdata/NAME.mbox` is assembled and compared with `testdata/NAME.txt`
    /// (regenerate after a reviewed change with `KBOT_BLESS=1 cargo test`).
    #[test]
    fn testdata_table() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let n = kbot_testdata::run(&dir, "mbox", |data| match kbot_mbox::parse_mbox(data) {
            Err(e) => format!("error: {e}\n"),
            Ok(mails) => match assemble(&mails, None) {
                Ok(s) => s.describe(),
                Err(e) => format!("error: {e}\n"),
            },
        });
        assert!(n >= 5, "testdata cases missing");
    }
}
