//! What a finished job mails, and to whom: follow-ups across revisions of a series, the noise
//! policy, the recipients (maintainers from get_maintainer.pl, opt-outs left out) and what a
//! public mail may show of this host (nothing: trees by name and `url:`, logs by link).
//!
//! A series' revisions are one *family*: the same b4 `change-id:` or the same subject (without
//! prefix and version), from the same author. When v2 of a family kbot reported arrives, its
//! findings (test and kind) are related to the newest earlier revision's: one still present
//! gets a short reply in v2's thread naming where it was first reported, one that is gone a
//! short "no longer reproduces" (`mail.send_fixed`), a new one the full report. Findings a
//! `#kbot invalid` dropped are never mailed again. At most one mail per revision (a `#kbot
//! test` asked for its own run), none for an incomplete series, none for `apply-failed`
//! unless the inbox opts in (`mail_apply_failed`).

use crate::{run_link, series_msgid, Service};
use kbot_mbox::Mail;
use kbot_queue::{Job, JobKind};
use kbot_report::CheckResult;

/// A finding: (test, kind).
pub type Finding = (String, String);

/// The revision family of a series: `change-id:<id>|<author>` or `subject:<subject>|<author>`.
pub fn family(mails: &[Mail], subject: &str, cover_or_first: Option<&Mail>) -> String {
    let author = cover_or_first.and_then(|m| crate::commands::address(&m.from)).unwrap_or_default();
    let change = mails.iter().find_map(|m| {
        m.body
            .lines()
            .find_map(|l| l.strip_prefix("change-id:").map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty())
    });
    match change {
        Some(c) => format!("change-id:{c}|{author}"),
        None => format!("subject:{}|{author}", subject.trim().to_lowercase()),
    }
}

/// The findings of a result, each once.
pub fn findings(r: &CheckResult) -> Vec<Finding> {
    let mut v: Vec<Finding> = Vec::new();
    for a in &r.arches {
        for x in &a.regressions {
            let f = (x.test.clone(), x.kind.as_str().to_string());
            if !v.contains(&f) {
                v.push(f);
            }
        }
    }
    v
}

/// What to mail for a revision.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// The full report (of the findings not marked invalid); it may still decide on no mail
    /// (a clean result without `send_clean`).
    Full,
    /// Only findings the previous revision had: a short "still present" reply.
    Still(Vec<Finding>),
    /// The previous revision's findings are gone: a short "no longer reproduces" note.
    Fixed(Vec<Finding>),
    /// No mail, and why.
    Nothing(String),
}

/// Pure: the mail of a revision with findings `cur`, given the previous revision's (`prev`),
/// which findings are invalid, and `mail.send_fixed`.
pub fn plan(cur: &[Finding], prev: Option<&[Finding]>, invalid: &dyn Fn(&Finding) -> bool, send_fixed: bool) -> Plan {
    let valid: Vec<&Finding> = cur.iter().filter(|f| !invalid(f)).collect();
    if !cur.is_empty() && valid.is_empty() {
        return Plan::Nothing("every finding was marked invalid (#kbot invalid)".into());
    }
    let Some(prev) = prev else { return Plan::Full };
    if valid.iter().any(|f| !prev.contains(f)) {
        return Plan::Full;
    }
    if !valid.is_empty() {
        return Plan::Still(valid.into_iter().cloned().collect());
    }
    let gone: Vec<Finding> = prev.iter().filter(|f| !invalid(f) && !cur.contains(f)).cloned().collect();
    match (gone.is_empty(), send_fixed) {
        (false, true) => Plan::Fixed(gone),
        (false, false) => Plan::Nothing("the earlier revision's findings are gone (mail.send_fixed is off)".into()),
        (true, _) => Plan::Full,
    }
}

/// Replaces every host path in `s` by the name it has in public.
fn scrub(s: &str, paths: &[(String, String)]) -> String {
    let mut s = s.to_string();
    for (p, name) in paths {
        if !p.is_empty() && p != "/" {
            s = s.replace(p.as_str(), name);
        }
    }
    s
}

impl Service {
    /// How public mail names a tree: its config name and `url:`.
    pub(crate) fn tree_label(&self, name: &str) -> String {
        match self.cfg.trees.iter().find(|t| t.name == name).and_then(|t| t.url.as_ref()) {
            Some(u) => format!("{name} ({u})"),
            None => name.to_string(),
        }
    }

    /// Host paths that must not leave the host, each with what public mail says instead.
    fn host_paths(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = Vec::new();
        let mut trees: Vec<String> = self.cfg.trees.iter().map(|t| t.name.clone()).collect();
        trees.push("default".into());
        for t in trees {
            if let Some(p) = self.tree_path(&t) {
                v.push((p.display().to_string(), t.clone()));
            }
        }
        for i in &self.cfg.inboxes {
            if let Some(g) = &i.git {
                v.push((g.display().to_string(), format!("<inbox {}>", i.name)));
            }
        }
        v.push((self.state.display().to_string(), "<kbot state>".into()));
        v.push((self.home.root.display().to_string(), "<kbot home>".into()));
        // Longest first: a tree inside the home is named as the tree.
        v.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        v
    }

    /// The result as public mail may show it: the tree by name and URL, no host path.
    fn public(&self, job: &Job, r: &CheckResult) -> CheckResult {
        let mut r = r.clone();
        let paths = self.host_paths();
        let subject = r.environment.tree.split_once(" (").map(|(_, s)| format!(" ({s}")).unwrap_or_default();
        r.environment.tree = format!("{}{}", self.tree_label(&job.tree), scrub(&subject, &paths));
        r.reproduce = r.reproduce.iter().map(|l| scrub(l, &paths)).collect();
        for a in &mut r.arches {
            for x in &mut a.regressions {
                x.evidence = scrub(&x.evidence, &paths);
            }
        }
        r.error = r.error.as_deref().map(|e| scrub(e, &paths));
        r
    }

    /// Maintainers and lists of the first bad patch or commit (`mail.cc_maintainers`).
    fn maintainers(&self, job: &Job, r: &CheckResult, mails: Option<&[Mail]>) -> Vec<String> {
        let (Some(sandbox), Some(f), Some(tree)) = (&self.sandbox, r.first_bad(), self.tree_path(&job.tree)) else {
            return Vec::new();
        };
        let patch: Option<Vec<u8>> = match (job.kind, mails) {
            (JobKind::Series, Some(mails)) => r
                .series
                .patches
                .iter()
                .find(|p| p.index == f.index)
                .and_then(|p| mails.iter().find(|m| m.message_id == p.message_id))
                .map(|m| m.raw.clone()),
            (JobKind::Range, _) if !f.commit.is_empty() => {
                kbot_kernel::git::git(&tree, &["format-patch", "-1", "--stdout", &f.commit])
                    .ok()
                    .map(String::into_bytes)
            }
            _ => None,
        };
        let Some(patch) = patch else { return Vec::new() };
        let work = job.dir(&self.state).path().join("get_maintainer");
        match crate::recipients::get_maintainer(sandbox, &tree, &patch, &work) {
            Ok(v) => {
                self.say(&format!(
                    "job {}: get_maintainer.pl: {}",
                    job.id,
                    if v.is_empty() { "nobody".into() } else { v.join(", ") }
                ));
                v
            }
            Err(e) => {
                self.say(&format!("job {}: no maintainers on Cc: {e}", job.id));
                Vec::new()
            }
        }
    }

    /// Addresses that never get mail: `mail.optout` and every `#kbot stop`.
    pub(crate) fn optouts(&self) -> Vec<String> {
        let mut v: Vec<String> = self.q.optouts().unwrap_or_default();
        if let Some(mc) = &self.cfg.mail {
            v.extend(mc.optout.iter().filter_map(|a| crate::commands::address(a)));
        }
        v
    }

    /// The mail of a finished job, if any (the noise policy, follow-ups, recipients).
    pub(crate) fn compose(
        &self,
        job: &Job,
        res: &CheckResult,
        mails: Option<&[Mail]>,
        mc: &kbot_config::MailConfig,
    ) -> Result<Option<kbot_mail::OutMail>, String> {
        let link = run_link(&self.cfg, job.id);
        let public = self.public(job, res);
        let mut cc = mc.cc.clone();
        let out = match (job.kind, mails) {
            (JobKind::Range, _) => {
                if mc.cc_maintainers {
                    cc.extend(self.maintainers(job, res, None));
                }
                let s =
                    kbot_mail::Settings { from: &mc.from, cc: &cc, link: link.as_deref(), send_clean: mc.send_clean };
                let committer = match (res.first_bad(), self.tree_path(&job.tree)) {
                    (Some(f), Some(t)) if !f.commit.is_empty() => {
                        kbot_kernel::git::git(&t, &["log", "-1", "--format=%cn <%ce>", &f.commit]).ok()
                    }
                    _ => None,
                };
                let branch = crate::range_branch(&job.key);
                let about = kbot_mail::Subject::Range { tree: &job.tree, branch, committer: committer.as_deref() };
                kbot_mail::report(&public, &job.key, &about, &s).map_err(|e| e.to_string())?
            }
            (JobKind::Series, Some(mails)) => self.series_mail(job, res, public, mails, mc, link.as_deref())?,
            (JobKind::Series, None) => return Err(format!("{}: the series' mails were not read", job.input)),
        };
        Ok(out.and_then(|m| {
            let o = kbot_mail::without(&m, &self.optouts());
            if o.is_none() {
                self.say(&format!("job {}: no mail: every recipient opted out", job.id));
            }
            o
        }))
    }

    fn series_mail(
        &self,
        job: &Job,
        res: &CheckResult,
        mut public: CheckResult,
        mails: &[Mail],
        mc: &kbot_config::MailConfig,
        link: Option<&str>,
    ) -> Result<Option<kbot_mail::OutMail>, String> {
        let quiet = |why: &str| {
            self.say(&format!("job {}: no mail: {why}", job.id));
            Ok(None)
        };
        if !res.series.missing.is_empty() {
            return quiet("the series is incomplete");
        }
        let cover = mails
            .iter()
            .find(|m| m.message_id == res.series.message_id)
            .or_else(|| res.series.patches.first().and_then(|p| mails.iter().find(|m| m.message_id == p.message_id)))
            .or_else(|| mails.first());
        let fam = family(mails, &res.series.subject, cover);
        self.q.set_family(job.id, &fam, res.series.version).map_err(|e| e.to_string())?;
        let requested = job.key.contains("+test:");
        let once = format!("mailed:{fam}:v{}", res.series.version);
        if !requested && self.q.cursor(&once).map_err(|e| e.to_string())?.is_some() {
            return quiet(&format!(
                "v{} of this series was mailed already (one mail per revision)",
                res.series.version
            ));
        }
        let agent = public.environment.kbot.clone();
        let inbox = self.cfg.inboxes.iter().find(|i| i.name == job.source);
        if res.status == kbot_report::Status::ApplyFailed {
            if !inbox.is_some_and(|i| i.mail_apply_failed) {
                return quiet("apply-failed (the inbox's mail_apply_failed is off; the run page has it)");
            }
            let Some(target) = cover else { return quiet("no mail to reply to") };
            let why = public.error.clone().unwrap_or_else(|| "git am failed".into());
            let body = format!(
                "Hi,\n\nkbot could not apply \"{}\" (v{}) to {}: {why}\n{}\n-- \nkbot\n",
                res.series.subject,
                res.series.version,
                public.environment.tree,
                link.map(|l| format!("\nDetails: {l}\n")).unwrap_or_default()
            );
            let out = self.note(job, target, "apply-failed", &body, mc, &agent)?;
            self.q.set_cursor(&once, &job.id.to_string()).map_err(|e| e.to_string())?;
            return Ok(out);
        }
        let cur = findings(res);
        // The newest earlier revision that has a result.
        let family_jobs = self.q.family_jobs(&fam).map_err(|e| e.to_string())?;
        let earlier: Vec<(i64, u32, CheckResult)> = family_jobs
            .iter()
            .filter(|(j, v)| *v < res.series.version && *j != job.id)
            .filter_map(|(j, v)| Some((*j, *v, self.q.job(*j).ok()??.load_result(&self.state)?)))
            .collect();
        let prev = earlier.first().map(|(_, _, r)| findings(r));
        let invalid = |f: &Finding| self.q.is_invalid(&fam, &f.0, &f.1).unwrap_or(false);
        let p = plan(&cur, prev.as_deref(), &invalid, mc.send_fixed);
        let out = match &p {
            Plan::Nothing(why) => return quiet(why),
            Plan::Full => {
                for a in &mut public.arches {
                    a.regressions.retain(|x| !invalid(&(x.test.clone(), x.kind.as_str().to_string())));
                }
                let mut cc = mc.cc.clone();
                if mc.cc_maintainers && !cur.is_empty() {
                    cc.extend(self.maintainers(job, res, Some(mails)));
                }
                let s = kbot_mail::Settings { from: &mc.from, cc: &cc, link, send_clean: mc.send_clean };
                kbot_mail::report(&public, &job.key, &kbot_mail::Subject::Series { mails }, &s)
                    .map_err(|e| e.to_string())?
            }
            Plan::Still(fs) | Plan::Fixed(fs) => {
                let still = matches!(p, Plan::Still(_));
                let Some(target) = cover else { return quiet("no mail to reply to") };
                let v = res.series.version;
                let mut lines = String::new();
                for f in fs {
                    // Where it was first reported: the oldest earlier revision with it.
                    let first = earlier.iter().rev().find(|(_, _, r)| findings(r).contains(f));
                    let at = first.map(|(j, fv, _)| {
                        let where_ = run_link(&self.cfg, *j)
                            .or_else(|| self.q.mails_of(*j).ok()?.first().map(|m| m.message_id.clone()))
                            .unwrap_or_else(|| format!("run {j}"));
                        format!("v{fv}: {where_}")
                    });
                    lines += &format!(
                        "  {} ({}){}\n",
                        f.0,
                        f.1,
                        at.map(|a| format!(", first reported on {a}")).unwrap_or_default()
                    );
                }
                let body = if still {
                    format!(
                        "Hi,\n\nkbot tested v{v} of \"{}\": still present in v{v}:\n\n{lines}{}\n-- \nkbot\n",
                        res.series.subject,
                        link.map(|l| format!("\nThis run: {l}\n")).unwrap_or_default()
                    )
                } else {
                    let pv = earlier.first().map_or(0, |e| e.1);
                    format!(
                        "Hi,\n\nkbot tested v{v} of \"{}\": no longer reproduces in v{v} (reported on v{pv}):\n\n{lines}{}\n-- \nkbot\n",
                        res.series.subject,
                        link.map(|l| format!("\nThis run: {l}\n")).unwrap_or_default()
                    )
                };
                self.note(job, target, if still { "still" } else { "fixed" }, &body, mc, &agent)?
            }
        };
        if out.is_some() {
            self.q.set_cursor(&once, &job.id.to_string()).map_err(|e| e.to_string())?;
        }
        Ok(out)
    }

    /// A short note in the series' thread: to the author, Cc the list and the series' Cc.
    fn note(
        &self,
        job: &Job,
        target: &Mail,
        what: &str,
        body: &str,
        mc: &kbot_config::MailConfig,
        agent: &str,
    ) -> Result<Option<kbot_mail::OutMail>, String> {
        let to = vec![target.from.clone()];
        let cc: Vec<String> = target.to.iter().chain(target.cc.iter()).chain(mc.cc.iter()).cloned().collect();
        let key = format!("{what}:{}", job.key);
        let _ = series_msgid;
        kbot_mail::reply(&mc.from, target, &key, &to, &cc, body, agent).map(Some).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(t: &str) -> Finding {
        (t.to_string(), "hang".to_string())
    }

    #[test]
    fn revisions_relate_to_the_previous_one() {
        let none = |_: &Finding| false;
        let a = [f("a")];
        assert_eq!(plan(&a, None, &none, true), Plan::Full);
        assert_eq!(plan(&a, Some(&a), &none, true), Plan::Still(vec![f("a")]));
        assert_eq!(plan(&[f("a"), f("b")], Some(&a), &none, true), Plan::Full, "a new one: the full report");
        assert_eq!(plan(&[], Some(&a), &none, true), Plan::Fixed(vec![f("a")]));
        assert!(matches!(plan(&[], Some(&a), &none, false), Plan::Nothing(_)));
        assert_eq!(plan(&[], Some(&[]), &none, true), Plan::Full, "clean after clean: the report decides");
        let a_invalid = |x: &Finding| x.0 == "a";
        assert!(matches!(plan(&a, None, &a_invalid, true), Plan::Nothing(_)));
        assert!(matches!(plan(&a, Some(&a), &a_invalid, true), Plan::Nothing(_)));
        assert_eq!(plan(&[f("a"), f("b")], Some(&a), &a_invalid, true), Plan::Full);
        assert_eq!(plan(&[], Some(&a), &a_invalid, true), Plan::Full, "an invalid finding gone is no news");
    }

    #[test]
    fn family_is_change_id_or_subject_and_author() {
        let m = |body: &str| {
            let raw = format!(
                "From x\nFrom: Alice <Alice@example.org>\nSubject: [PATCH v2 0/2] x\nMessage-ID: <c@x>\n\n{body}\n"
            );
            kbot_mbox::parse_mbox(raw.as_bytes()).unwrap().remove(0)
        };
        let with = [m("text\n\n---\nchange-id: 20261120-perm-wait-abc123\n")];
        assert_eq!(family(&with, "x", with.first()), "change-id:20261120-perm-wait-abc123|alice@example.org");
        let without = [m("text")];
        assert_eq!(family(&without, " Fsnotify: X ", without.first()), "subject:fsnotify: x|alice@example.org");
    }

    #[test]
    fn host_paths_are_scrubbed() {
        let p = vec![("/srv/linux".to_string(), "linux".to_string())];
        assert_eq!(scrub("kbot check --tree /srv/linux --range a..b", &p), "kbot check --tree linux --range a..b");
    }
}
