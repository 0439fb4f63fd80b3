//! Trailers given in replies (`Reviewed-by:`, `Acked-by:`, `Tested-by:`, `Reported-by:`),
//! collected per patch the way b4 does: a reply counts for the patch it answers (directly or
//! deeper in the thread); a reply to the cover letter counts for every patch.

use crate::{Mail, Series};
use std::collections::BTreeMap;

const KINDS: [&str; 4] = ["Reviewed-by", "Acked-by", "Tested-by", "Reported-by"];

/// Trailer lines of a reply's own text (quoted lines are someone else's).
pub fn trailer_lines(body: &str) -> Vec<String> {
    body.lines()
        .map(str::trim_end)
        .filter(|l| !l.starts_with('>'))
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let k = KINDS.iter().find(|x| x.eq_ignore_ascii_case(k.trim()))?;
            let v = v.trim();
            (!v.is_empty() && v.contains('@')).then(|| format!("{k}: {v}"))
        })
        .collect()
}

/// Patch index -> trailers from replies. Index 0 is never used: cover replies are spread.
pub fn collect(mails: &[Mail], series: &Series) -> BTreeMap<u32, Vec<String>> {
    let by_id: BTreeMap<&str, &Mail> =
        mails.iter().filter(|m| !m.message_id.is_empty()).map(|m| (m.message_id.as_str(), m)).collect();
    let cover_id = series.cover.as_ref().map(|c| c.message_id.as_str());
    let patch_of = |id: &str| series.patches.iter().find(|p| p.message_id == id).map(|p| p.index);
    let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut add = |index: u32, t: &str| {
        let v = out.entry(index).or_default();
        if !v.iter().any(|x| x == t) {
            v.push(t.to_string());
        }
    };
    for m in mails {
        if series.patches.iter().any(|p| p.message_id == m.message_id) || Some(m.message_id.as_str()) == cover_id {
            continue;
        }
        let found = trailer_lines(&m.body);
        if found.is_empty() {
            continue;
        }
        // Walk up the thread: In-Reply-To first, then References from the nearest.
        let mut target = None;
        let mut cur = m.in_reply_to.clone();
        let mut hops = 0;
        while let Some(id) = cur.take() {
            if let Some(i) = patch_of(&id) {
                target = Some(Some(i));
                break;
            }
            if Some(id.as_str()) == cover_id {
                target = Some(None);
                break;
            }
            hops += 1;
            if hops > 50 {
                break;
            }
            cur = by_id.get(id.as_str()).and_then(|p| p.in_reply_to.clone());
        }
        if target.is_none() {
            target = m
                .references
                .iter()
                .rev()
                .find_map(|r| patch_of(r).map(Some).or_else(|| (Some(r.as_str()) == cover_id).then_some(None)));
        }
        match target {
            Some(Some(i)) => found.iter().for_each(|t| add(i, t)),
            Some(None) => {
                for p in &series.patches {
                    found.iter().for_each(|t| add(p.index, t));
                }
            }
            None => {}
        }
    }
    // A stable order whatever order the mails came in: by kind, then by text.
    let rank = |t: &String| KINDS.iter().position(|k| t.starts_with(k)).unwrap_or(KINDS.len());
    for v in out.values_mut() {
        v.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(id: &str, subject: &str, irt: Option<&str>, body: &str) -> String {
        let irt = irt.map(|i| format!("In-Reply-To: <{i}>\nReferences: <c@x> <{i}>\n")).unwrap_or_default();
        format!("From x\nFrom: A <a@x>\nSubject: {subject}\nMessage-ID: <{id}>\n{irt}\n{body}\n\n")
    }

    #[test]
    fn replies_give_trailers_to_their_patch_or_all() {
        let diff = "Signed-off-by: A <a@x>\n---\ndiff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n";
        let mbox = [
            mail("c@x", "[PATCH 0/2] s: t", None, "cover"),
            mail("p1@x", "[PATCH 1/2] s: one", Some("c@x"), diff),
            mail("p2@x", "[PATCH 2/2] s: two", Some("c@x"), diff),
            mail(
                "r1@x",
                "Re: [PATCH 1/2] s: one",
                Some("p1@x"),
                "> Reviewed-by: Quoted <q@x>\nReviewed-by: Rev <rev@x>\n",
            ),
            mail("r1b@x", "Re: [PATCH 1/2] s: one", Some("r1@x"), "Tested-by: Deep <deep@x>\n"),
            mail(
                "rc@x",
                "Re: [PATCH 0/2] s: t",
                Some("c@x"),
                "For the series:\nAcked-by: Maint <m@x>\nacked-by: nobody\n",
            ),
        ]
        .concat();
        let mails = kbot_mbox::parse_mbox(mbox.as_bytes()).unwrap();
        let series = crate::assemble(&mails, None).unwrap();
        let t = collect(&mails, &series);
        assert_eq!(t[&1], ["Reviewed-by: Rev <rev@x>", "Acked-by: Maint <m@x>", "Tested-by: Deep <deep@x>"]);
        assert_eq!(t[&2], ["Acked-by: Maint <m@x>"]);
    }
}
