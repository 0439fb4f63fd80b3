//! Short threaded replies (a command's answer, a follow-up note across revisions) and the
//! opt-out filter every outgoing mail passes at send time.

use crate::fnv64;
use crate::{clean_header, clean_msgid, domain, mailbox, OutMail, ReportError};
use kbot_mbox::Mail;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};

/// A short plain-text reply in `target`'s thread, to `to`, Cc `cc` (kbot itself and
/// duplicates left out), under a Message-ID made from `key` (the same key, the same mail: the
/// outbox keeps one).
pub fn reply(
    from: &str,
    target: &Mail,
    key: &str,
    to: &[String],
    cc: &[String],
    body: &str,
    agent: &str,
) -> Result<OutMail, ReportError> {
    let me = mailbox(from).ok_or_else(|| ReportError::BadFrom(from.to_string()))?;
    let message_id = format!("kbot-{:016x}@{}", fnv64(key.as_bytes()), domain(from));
    let subj = clean_header(&target.subject, 200);
    let subject = if subj.to_ascii_lowercase().starts_with("re:") { subj } else { format!("Re: {subj}") };
    let mut b = Message::builder().from(me.clone()).message_id(Some(format!("<{message_id}>"))).subject(subject);
    if let Some(id) = clean_msgid(&target.message_id) {
        b = b.in_reply_to(format!("<{id}>"));
        let mut refs: Vec<String> = target.references.iter().filter_map(|x| clean_msgid(x)).collect();
        refs.push(id);
        refs.dedup();
        b = b.references(refs.iter().map(|x| format!("<{x}>")).collect::<Vec<_>>().join(" "));
    }
    let mut seen = vec![me.email.to_string().to_ascii_lowercase()];
    let mut pick = |list: &[String]| -> Vec<Mailbox> {
        list.iter()
            .filter_map(|x| mailbox(x))
            .filter(|m| {
                let k = m.email.to_string().to_ascii_lowercase();
                let new = !seen.contains(&k);
                seen.push(k);
                new
            })
            .collect()
    };
    let mut to = pick(to);
    let mut cc = pick(cc);
    if to.is_empty() {
        if cc.is_empty() {
            return Err(ReportError::NoRecipient);
        }
        to.push(cc.remove(0));
    }
    for m in to {
        b = b.to(m);
    }
    for m in cc {
        b = b.cc(m);
    }
    let text: String = body.lines().map(|l| format!("{}\r\n", crate::body_line(l))).collect();
    let msg = b
        .header(ContentType::TEXT_PLAIN)
        .header(lettre::message::header::UserAgent::from(agent.to_string()))
        .body(lettre::message::Body::dangerous_pre_encoded(
            text.into_bytes(),
            lettre::message::header::ContentTransferEncoding::EightBit,
        ))
        .map_err(|e| ReportError::Build(e.to_string()))?;
    let envelope = msg.envelope();
    Ok(OutMail {
        message_id: format!("<{message_id}>"),
        sender: envelope.from().map(|a| a.to_string()).unwrap_or_default(),
        rcpt: envelope.to().iter().map(|a| a.to_string()).collect(),
        raw: msg.formatted(),
    })
}

/// The address of one entry of an address header (`"Name" <a@x>` or `a@x`), lowercase.
fn address_of(entry: &str) -> String {
    let e = entry.trim();
    match (e.rfind('<'), e.rfind('>')) {
        (Some(a), Some(b)) if a < b => e[a + 1..b].trim().to_ascii_lowercase(),
        _ => e.to_ascii_lowercase(),
    }
}

/// Splits an address header's value at the commas outside quotes.
fn entries(v: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut esc) = (Vec::new(), String::new(), false, false);
    for c in v.chars() {
        match c {
            _ if esc => esc = false,
            '\\' if quoted => esc = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// The mail without the addresses in `drop` (lowercase bare addresses): out of the envelope
/// and out of its To and Cc headers. `None` when no recipient is left.
pub fn without(m: &OutMail, drop: &[String]) -> Option<OutMail> {
    let gone = |a: &str| drop.iter().any(|d| d.eq_ignore_ascii_case(a.trim()));
    let rcpt: Vec<String> = m.rcpt.iter().filter(|r| !gone(r)).cloned().collect();
    if rcpt.is_empty() {
        return None;
    }
    if rcpt.len() == m.rcpt.len() {
        return Some(m.clone());
    }
    let split = m.raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(m.raw.len(), |p| p + 2);
    let head = String::from_utf8_lossy(&m.raw[..split]).into_owned();
    // Whole header fields (a field and its folded continuation lines).
    let mut fields: Vec<String> = Vec::new();
    for l in head.split_inclusive("\r\n") {
        match fields.last_mut() {
            Some(f) if l.starts_with([' ', '\t']) => f.push_str(l),
            _ => fields.push(l.to_string()),
        }
    }
    let mut out = String::new();
    for f in fields {
        let name = f.split(':').next().unwrap_or("").to_ascii_lowercase();
        if name == "to" || name == "cc" {
            let value = f[name.len() + 1..].replace("\r\n", "");
            let keep: Vec<String> = entries(&value).into_iter().filter(|e| !gone(&address_of(e))).collect();
            if !keep.is_empty() {
                out += &format!("{}: {}\r\n", &f[..name.len()], keep.join(",\r\n "));
            }
        } else {
            out += &f;
        }
    }
    let mut raw = out.into_bytes();
    raw.extend_from_slice(&m.raw[split..]);
    Some(OutMail { message_id: m.message_id.clone(), sender: m.sender.clone(), rcpt, raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Mail {
        let raw = b"From: Bob <bob@example.org>\nTo: list@example.org\nCc: alice@example.org\nSubject: Re: [PATCH 2/3] x: y\nMessage-ID: <cmd1@example.org>\nIn-Reply-To: <p2@example.org>\nReferences: <p0@example.org> <p2@example.org>\n\n#kbot test\n";
        kbot_mbox::parse_mbox(&[b"From x\n".as_slice(), raw].concat()).unwrap().remove(0)
    }

    #[test]
    fn a_reply_is_threaded_and_filtered_at_send_time() {
        let t = target();
        let to = vec!["Bob <bob@example.org>".to_string()];
        let cc =
            vec!["list@example.org".into(), "\"Dev, Alice\" <alice@example.org>".into(), "kbot@example.org".into()];
        let m = reply("kbot <kbot@example.org>", &t, "answer:cmd1", &to, &cc, "done: queued\n", "kbot 0").unwrap();
        let text = String::from_utf8(m.raw.clone()).unwrap();
        assert!(text.contains("In-Reply-To: <cmd1@example.org>"), "{text}");
        assert!(text.contains("References: <p0@example.org> <p2@example.org> <cmd1@example.org>"), "{text}");
        assert!(text.contains("Subject: Re: [PATCH 2/3] x: y"), "{text}");
        assert_eq!(m.rcpt, ["bob@example.org", "list@example.org", "alice@example.org"]);
        let again = reply("kbot <kbot@example.org>", &t, "answer:cmd1", &to, &cc, "x", "kbot 0").unwrap();
        assert_eq!(again.message_id, m.message_id, "the same key, the same Message-ID");
        let f = without(&m, &["alice@example.org".into(), "BOB@example.org".into()]).unwrap();
        assert_eq!(f.rcpt, ["list@example.org"]);
        let text = String::from_utf8(f.raw.clone()).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap();
        assert!(!head.contains("alice@") && !head.contains("bob@"), "{head}");
        assert!(head.contains("To: list@example.org") || head.contains("Cc: list@example.org"), "{head}");
        assert!(text.ends_with("done: queued\r\n"), "{text}");
        assert!(
            without(&m, &["list@example.org".into(), "alice@example.org".into(), "bob@example.org".into()]).is_none()
        );
        assert_eq!(without(&m, &[]).unwrap(), m);
    }

    #[test]
    fn address_entries_split_outside_quotes() {
        assert_eq!(entries(" \"A, B\" <a@x>, c@x ,"), ["\"A, B\" <a@x>", "c@x"]);
        assert_eq!(address_of("\"A, B\" <A@X>"), "a@x");
    }
}
