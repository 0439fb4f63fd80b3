//! `#kbot` commands in replies to a kbot report or to a series kbot tracks, read from the
//! inboxes the service already polls (like syzbot's `#syz test`):
//!
//! - `#kbot test`: test the series again (e.g. after a fix to the base);
//! - `#kbot test <tree> <branch-or-commit>`: test it on another configured tree, on that base;
//! - `#kbot invalid` (in reply to a report): its findings are not reported again on later
//!   revisions of the series;
//! - `#kbot stop`: the sender gets no further mail from kbot.
//!
//! A command is a line of its own beginning with `#kbot` (a quoted `> #kbot test` is none,
//! nor anything below the signature `-- `); a mail's first command counts. Every command gets
//! a threaded answer (done, or refused and why) and is acted on once: the command mail's
//! Message-ID is recorded in the queue with its outcome, and each action is keyed so that
//! doing it again after a crash changes nothing.

use crate::{PollError, Service};
use kbot_mbox::Mail;
use kbot_queue::JobKind;

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `#kbot test`, or `#kbot test <tree> <rev>`.
    Test {
        on: Option<(String, String)>,
    },
    Invalid,
    Stop,
    /// Not a command kbot knows, or one with the wrong arguments: refused with `why`.
    Bad {
        line: String,
        why: String,
    },
}

pub const USAGE: &str = "kbot knows: #kbot test | #kbot test <tree> <branch-or-commit> | #kbot invalid | #kbot stop";

/// The first command of a mail's body (pure).
pub fn parse(body: &str) -> Option<Command> {
    for l in body.lines() {
        if l == "-- " {
            break; // the signature: nothing below counts
        }
        let t = l.trim_end();
        // Not quoted, and at the line's start (leading blanks allowed, '>' not).
        let t = t.trim_start_matches([' ', '\t']);
        let Some(rest) = t.strip_prefix("#kbot") else { continue };
        if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
            continue; // "#kbotfoo" is not a command
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        let bad = |why: &str| Some(Command::Bad { line: t.chars().take(200).collect(), why: why.to_string() });
        return match words.as_slice() {
            ["test"] => Some(Command::Test { on: None }),
            ["test", tree, rev] => {
                if !name_ok(tree) {
                    return bad("the tree must be a configured tree's name");
                }
                if !rev_ok(rev) {
                    return bad("the branch or commit must be a plain git name (letters, digits, . _ / -)");
                }
                Some(Command::Test { on: Some((tree.to_string(), rev.to_string())) })
            }
            ["test", ..] => bad("#kbot test takes no argument, or a tree and a branch or commit"),
            ["invalid"] => Some(Command::Invalid),
            ["stop"] => Some(Command::Stop),
            ["invalid" | "stop", ..] => bad("this command takes no argument"),
            [] => bad("no command after #kbot"),
            _ => bad("unknown command"),
        };
    }
    None
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A branch, tag or commit name safe to hand to git (no option, no range, no revision syntax).
fn rev_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && !s.starts_with(['-', '.', '/'])
        && !s.contains("..")
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
}

/// What a command replies to.
enum Referent {
    /// A report (or note) kbot mailed about this job.
    Report(i64),
    /// A mail of the thread of this series job.
    Series(i64),
}

/// The bare address of a `Name <addr>` (lowercase).
pub fn address(s: &str) -> Option<String> {
    kbot_mail::mailbox(s).map(|m| m.email.to_string().to_ascii_lowercase())
}

impl Service {
    /// The commands of a thread's mails: each new one acted on and answered once.
    pub(crate) fn handle_commands(&mut self, inbox: &str, mails: &[Mail]) -> Result<(), PollError> {
        let Some(mc) = self.cfg.mail.clone() else { return Ok(()) };
        let own = address(&mc.from);
        for m in mails {
            if m.message_id.is_empty() || address(&m.from).is_none() || address(&m.from) == own {
                continue;
            }
            let Some(cmd) = parse(&m.body) else { continue };
            if self.q.command_outcome(&m.message_id)?.is_some() {
                continue;
            }
            // Only replies to kbot's mail or to a tracked series count.
            let mut ids: Vec<&String> = m.in_reply_to.iter().collect();
            ids.extend(m.references.iter().rev());
            let mut referent = None;
            for id in ids {
                if let Some(k) = self.q.mail_by_msgid(id)?.filter(|k| k.job > 0) {
                    referent = Some(Referent::Report(k.job));
                    break;
                }
                if let Some(j) = self.q.tracked_job(id)? {
                    referent = Some(Referent::Series(j));
                    break;
                }
            }
            let Some(referent) = referent else { continue };
            let sender = address(&m.from).unwrap_or_default();
            let (outcome, to_sender) = self.act(&cmd, &referent, m, &sender)?;
            let body = format!(
                "Hi,\n\n> {}\n\n{outcome}\n\n-- \nkbot, catching fsnotify/SRCU regressions before they are merged\n",
                command_text(&cmd)
            );
            let to = if to_sender { vec![m.from.clone()] } else { Vec::new() };
            let cc: Vec<String> = m.to.iter().chain(m.cc.iter()).cloned().collect();
            let job = match referent {
                Referent::Report(j) | Referent::Series(j) => j,
            };
            let agent = format!("kbot {}", env!("CARGO_PKG_VERSION"));
            match kbot_mail::reply(&mc.from, m, &format!("answer:{}", m.message_id), &to, &cc, &body, &agent) {
                Ok(out) => {
                    let new = kbot_queue::NewMail {
                        message_id: &out.message_id,
                        sender: &out.sender,
                        rcpt: &out.rcpt,
                        raw: &out.raw,
                    };
                    self.q.queue_mail(job, &new)?;
                }
                Err(e) => self.say(&format!("command <{}>: no answer: {e}", m.message_id)),
            }
            self.q.command_done(&m.message_id, inbox, &sender, &command_text(&cmd), &outcome)?;
            self.say(&format!("{inbox}: command <{}> from {sender}: {}: {outcome}", m.message_id, command_text(&cmd)));
        }
        Ok(())
    }

    /// Does what a command asks; the answer's text and whether it goes to the sender.
    fn act(&mut self, cmd: &Command, to: &Referent, m: &Mail, sender: &str) -> Result<(String, bool), PollError> {
        let job_id = match to {
            Referent::Report(j) | Referent::Series(j) => *j,
        };
        let job = self.q.job(job_id)?;
        Ok(match cmd {
            Command::Bad { line, why } => (format!("Refused: {why}: {line:?}. {USAGE}."), true),
            Command::Stop => {
                self.q.optout_add(sender, &m.message_id)?;
                (format!("Done: {sender} gets no further mail from kbot."), false)
            }
            Command::Test { on } => {
                let Some(job) = job.filter(|j| j.kind == JobKind::Series) else {
                    return Ok(("Refused: #kbot test answers a report of a series or a series' mail.".into(), true));
                };
                let (tree, base) = match on {
                    None => (job.tree.clone(), None),
                    Some((tree, rev)) => {
                        let Some(path) = self.configured_tree(tree) else {
                            let names: Vec<&str> = self.cfg.trees.iter().map(|t| t.name.as_str()).collect();
                            return Ok((
                                format!(
                                    "Refused: no tree named {tree:?} is configured here (configured: {}).",
                                    if names.is_empty() { "default".into() } else { names.join(", ") }
                                ),
                                true,
                            ));
                        };
                        let commit = kbot_kernel::git::git(
                            &path,
                            &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")],
                        )
                        .ok()
                        .or_else(|| {
                            kbot_kernel::git::git(
                                &path,
                                &["rev-parse", "--verify", "--quiet", &format!("refs/remotes/origin/{rev}^{{commit}}")],
                            )
                            .ok()
                        })
                        .filter(|c| !c.is_empty());
                        let Some(commit) = commit else {
                            return Ok((format!("Refused: the tree {tree} has no branch or commit {rev:?}."), true));
                        };
                        (tree.clone(), Some(commit))
                    }
                };
                let base_job = job.key.split("+test:").next().unwrap_or(&job.key).to_string();
                let key = format!("{base_job}+test:{:016x}", kbot_kernel::fnv64(m.message_id.as_bytes()));
                if let Some(b) = &base {
                    self.q.set_cursor(&format!("base:{key}"), b)?;
                }
                let on_what = match (&base, on) {
                    (Some(b), Some((t, r))) => format!(" on {t} {r} ({})", kbot_report::short_commit(b)),
                    _ => String::new(),
                };
                let title = format!("{} [#kbot test{}]", job.title.split(" [#kbot test").next().unwrap_or(""), on_what);
                let id = match self.q.enqueue(&key, JobKind::Series, &job.source, &title, &job.input, &tree)? {
                    Some(id) => id,
                    None => self.q.jobs(100_000)?.into_iter().find(|j| j.key == key).map_or(0, |j| j.id),
                };
                self.say(&format!("job {id} queued by #kbot test: {title}"));
                let link = crate::run_link(&self.cfg, id).map(|l| format!(" Results: {l}")).unwrap_or_default();
                (format!("Done: the series is queued for testing again{on_what} (run {id}).{link}"), true)
            }
            Command::Invalid => {
                let report = matches!(to, Referent::Report(_));
                let family = self.q.family_of(job_id)?;
                let result = job.as_ref().and_then(|j| j.load_result(&self.state));
                match (report, family, result) {
                    (true, Some(fam), Some(r)) if r.arches.iter().any(|a| !a.regressions.is_empty()) => {
                        let mut names = Vec::new();
                        for a in &r.arches {
                            for x in &a.regressions {
                                self.q.invalid_add(&fam, &x.test, x.kind.as_str(), &m.message_id)?;
                                let n = format!("{} ({})", x.test, x.kind.as_str());
                                if !names.contains(&n) {
                                    names.push(n);
                                }
                            }
                        }
                        (
                            format!(
                                "Done: marked invalid; kbot will not report these again on later revisions of this series: {}.",
                                names.join(", ")
                            ),
                            true,
                        )
                    }
                    _ => ("Refused: #kbot invalid answers a kbot report of a regression in a series.".into(), true),
                }
            }
        })
    }

    /// The path of a tree a command may name: one in the config (or `default`).
    fn configured_tree(&self, name: &str) -> Option<std::path::PathBuf> {
        let configured =
            self.cfg.trees.iter().any(|t| t.name == name) || (name == "default" && self.cfg.trees.is_empty());
        configured.then(|| self.tree_path(name)).flatten()
    }
}

fn command_text(c: &Command) -> String {
    match c {
        Command::Test { on: None } => "#kbot test".into(),
        Command::Test { on: Some((t, r)) } => format!("#kbot test {t} {r}"),
        Command::Invalid => "#kbot invalid".into(),
        Command::Stop => "#kbot stop".into(),
        Command::Bad { line, .. } => line.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `testdata/commands/<case>.txt`: a mail body; `<case>.expect`: the parsed command
    /// (`{:?}`) or `none`.
    #[test]
    fn command_cases() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/commands");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "txt") {
                continue;
            }
            let body = std::fs::read_to_string(&p).unwrap();
            let expect = std::fs::read_to_string(p.with_extension("expect")).unwrap();
            let got = parse(&body).map_or("none".to_string(), |c| format!("{c:?}"));
            assert_eq!(got, expect.trim_end(), "{}", p.display());
            n += 1;
        }
        assert!(n >= 10, "only {n} cases");
    }
}
