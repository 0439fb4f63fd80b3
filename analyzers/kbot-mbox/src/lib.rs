//! Splits an mbox (mboxo or mboxrd, LF or CRLF line ends) into mails and parses each one's
//! headers (folded, RFC 2047 encoded) and text (MIME parts decoded).
//!
//! Each [`Mail`] keeps its raw bytes, unescaped and with LF line ends, because `git am`
//! does its own MIME decoding and must see the message as it was sent.

use mailparse::{MailHeaderMap, ParsedMail};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MboxError {
    #[error("no mail found: the input is empty")]
    Empty,
    #[error("not an mbox: line {line} should start a mail with 'From ' or a header, found {found:?}")]
    NotMbox { line: usize, found: String },
    #[error("mail {index} (line {line}) cannot be parsed: {reason}")]
    BadMail { index: usize, line: usize, reason: MailError },
}

/// Why one message cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum MailError {
    /// mailparse's own message (its error type is neither `Clone` nor `PartialEq`).
    #[error("{0}")]
    Parse(String),
    #[error("it has no headers")]
    NoHeaders,
}

/// One mail of an mbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The message as sent (headers and body), LF line ends, mboxrd quoting removed.
    pub raw: Vec<u8>,
    /// Line in the mbox where this mail starts (1-based), for error messages.
    pub line: usize,
    pub subject: String,
    pub from: String,
    /// Without the angle brackets; empty when the mail has none.
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub date: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// Decoded text of the mail: every text/plain part and every patch attachment.
    pub body: String,
}

/// Splits and parses an mbox.
pub fn parse_mbox(data: &[u8]) -> Result<Vec<Mail>, MboxError> {
    split(data)?
        .into_iter()
        .enumerate()
        .map(|(i, (line, raw))| {
            parse_mail(raw, line).map_err(|reason| MboxError::BadMail { index: i + 1, line, reason })
        })
        .collect()
}

fn is_from_line(l: &[u8]) -> bool {
    l.starts_with(b"From ")
}

/// A header line: a name of printable ASCII without ':' or space, then ':'.
fn is_header_line(l: &[u8]) -> bool {
    match l.iter().position(|&b| b == b':') {
        Some(0) | None => false,
        Some(n) => l[..n].iter().all(|&b| b.is_ascii_graphic()),
    }
}

/// Undoes mboxrd quoting: `>From `, `>>From `, ... lose one `>`.
fn unquote(l: &[u8]) -> &[u8] {
    let n = l.iter().take_while(|&&b| b == b'>').count();
    if n > 0 && l[n..].starts_with(b"From ") {
        &l[1..]
    } else {
        l
    }
}

/// Returns (start line, raw message) pairs. A mail starts at a `From ` line that begins the
/// file or follows an empty line. A file without `From ` lines that starts with headers is one
/// mail (what a mail client saves).
pub fn split(data: &[u8]) -> Result<Vec<(usize, Vec<u8>)>, MboxError> {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect();
    let first = lines.iter().position(|l| !l.iter().all(u8::is_ascii_whitespace));
    let Some(first) = first else {
        return Err(MboxError::Empty);
    };
    if !is_from_line(lines[first]) && !is_header_line(lines[first]) {
        return Err(MboxError::NotMbox {
            line: first + 1,
            found: String::from_utf8_lossy(&lines[first][..lines[first].len().min(60)]).into_owned(),
        });
    }
    let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut cur: Option<(usize, Vec<u8>)> = None;
    let mut prev_blank = true;
    for (i, l) in lines.iter().enumerate().skip(first) {
        if is_from_line(l) && prev_blank {
            if let Some(m) = cur.take() {
                out.push(m);
            }
            cur = Some((i + 2, Vec::new()));
            prev_blank = false;
            continue;
        }
        let m = cur.get_or_insert_with(|| (i + 1, Vec::new()));
        m.1.extend_from_slice(unquote(l));
        m.1.push(b'\n');
        prev_blank = l.is_empty();
    }
    out.extend(cur);
    // The separator's blank line belongs to the mbox, not the mail; trailing blank lines of the
    // file too.
    for (_, m) in &mut out {
        while m.ends_with(b"\n\n") {
            m.pop();
        }
    }
    out.retain(|(_, m)| !m.iter().all(u8::is_ascii_whitespace));
    if out.is_empty() {
        return Err(MboxError::Empty);
    }
    Ok(out)
}

fn strip_angles(s: &str) -> String {
    s.trim().trim_start_matches('<').trim_end_matches('>').trim().to_string()
}

/// All `<id>` tokens of a Message-ID/References/In-Reply-To value (the whole value when it
/// has no angle brackets).
pub fn msg_ids(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = v;
    while let Some(s) = rest.find('<') {
        let Some(e) = rest[s..].find('>') else { break };
        let id = rest[s + 1..s + e].trim();
        if !id.is_empty() {
            out.push(id.to_string());
        }
        rest = &rest[s + e + 1..];
    }
    if out.is_empty() && !v.trim().is_empty() {
        out.push(strip_angles(v));
    }
    out
}

fn addr_list(m: &ParsedMail, name: &str) -> Vec<String> {
    m.headers.get_all_values(name).iter().flat_map(|v| split_addresses(v)).collect()
}

/// Splits an address list on commas outside quotes and angle brackets.
fn split_addresses(v: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut angle) = (Vec::new(), String::new(), false, false);
    for c in v.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|s| !s.is_empty()).collect()
}

fn collect_text(m: &ParsedMail, out: &mut String) {
    if !m.subparts.is_empty() {
        for p in &m.subparts {
            collect_text(p, out);
        }
        return;
    }
    let ct = m.ctype.mimetype.to_ascii_lowercase();
    let filename = m.get_content_disposition().params.get("filename").cloned().unwrap_or_default();
    let patchy =
        ct.contains("patch") || ct.contains("diff") || filename.ends_with(".patch") || filename.ends_with(".diff");
    if ct == "text/plain" || patchy {
        if let Ok(b) = m.get_body() {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&b.replace("\r\n", "\n"));
        }
    }
}

/// Parses one message.
pub fn parse_mail(raw: Vec<u8>, line: usize) -> Result<Mail, MailError> {
    let m = mailparse::parse_mail(&raw).map_err(|e| MailError::Parse(e.to_string()))?;
    if m.headers.is_empty() {
        return Err(MailError::NoHeaders);
    }
    let h = |name: &str| m.headers.get_first_value(name).map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "));
    let mut body = String::new();
    collect_text(&m, &mut body);
    let mail = Mail {
        subject: h("Subject").unwrap_or_default(),
        from: h("From").unwrap_or_default(),
        message_id: h("Message-ID").map(|v| strip_angles(&v)).unwrap_or_default(),
        in_reply_to: h("In-Reply-To").and_then(|v| msg_ids(&v).into_iter().next()),
        references: h("References").map(|v| msg_ids(&v)).unwrap_or_default(),
        date: h("Date"),
        to: addr_list(&m, "To"),
        cc: addr_list(&m, "Cc"),
        body,
        line,
        raw: Vec::new(),
    };
    Ok(Mail { raw, ..mail })
}

/// Appends one message to an mboxrd: a `From ` separator line, then the message with
/// `From ` lines (however many `>` they already carry) quoted once more.
pub fn append_mboxrd(out: &mut Vec<u8>, separator: &[u8], raw: &[u8]) {
    out.extend_from_slice(separator);
    out.push(b'\n');
    for l in raw.split_inclusive(|&b| b == b'\n') {
        let n = l.iter().take_while(|&&b| b == b'>').count();
        if l[n..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(l);
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
}

impl Mail {
    /// The mail as a one-message mbox, ready for `git am`.
    pub fn to_mbox(&self) -> Vec<u8> {
        let mut out = Vec::new();
        append_mboxrd(&mut out, b"From kbot Mon Sep 17 00:00:00 2001", &self.raw);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "From 1234 Mon Sep 17 00:00:00 2001\nFrom: A <a@x>\nSubject: [PATCH 1/2] one\nMessage-ID: <1@x>\n\nbody\n>From the start\n\nFrom 5678 Mon Sep 17 00:00:00 2001\nFrom: B <b@x>\nSubject: [PATCH 2/2] two\nMessage-Id: <2@x>\nIn-Reply-To: <1@x>\nReferences: <0@x>\n <1@x>\n\nbody2\n";

    #[test]
    fn splits_and_unquotes() {
        let m = parse_mbox(TWO.as_bytes()).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].subject, "[PATCH 1/2] one");
        assert_eq!(m[0].message_id, "1@x");
        assert_eq!(m[0].body, "body\nFrom the start\n");
        assert_eq!(m[1].in_reply_to.as_deref(), Some("1@x"));
        assert_eq!(m[1].references, vec!["0@x", "1@x"]);
        assert_eq!(m[1].line, 10);
    }

    #[test]
    fn a_mail_without_headers_is_explained() {
        assert_eq!(parse_mail(b"\nbody only\n".to_vec(), 3), Err(MailError::NoHeaders));
        let e = MboxError::BadMail { index: 2, line: 3, reason: MailError::NoHeaders };
        assert_eq!(e.to_string(), "mail 2 (line 3) cannot be parsed: it has no headers");
    }

    #[test]
    fn crlf_is_the_same_as_lf() {
        let crlf = TWO.replace('\n', "\r\n");
        assert_eq!(parse_mbox(crlf.as_bytes()).unwrap(), parse_mbox(TWO.as_bytes()).unwrap());
    }

    #[test]
    fn from_inside_a_paragraph_does_not_split() {
        let s = "From x\nSubject: a\n\nline\nFrom here on\n";
        let m = parse_mbox(s.as_bytes()).unwrap();
        assert_eq!(m.len(), 1);
        assert!(m[0].body.contains("From here on"));
    }

    #[test]
    fn encoded_folded_subject() {
        let s = "From x\nSubject: =?UTF-8?q?=5BPATCH=5D_fanotify=3A_d=C3=A9j=C3=A0?=\n =?UTF-8?q?_vu?=\nFrom: =?UTF-8?B?SsO2cmc=?= <j@x>\n\nb\n";
        let m = parse_mbox(s.as_bytes()).unwrap();
        assert_eq!(m[0].subject, "[PATCH] fanotify: déjà vu");
        assert_eq!(m[0].from, "Jörg <j@x>");
    }

    #[test]
    fn single_mail_without_from_line() {
        let m = parse_mbox(b"Subject: hi\nFrom: a@x\n\nbody\n").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].subject, "hi");
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(parse_mbox(b"  \n\n"), Err(MboxError::Empty));
        assert!(matches!(parse_mbox(b"\x7fELF\x02\x01"), Err(MboxError::NotMbox { line: 1, .. })));
        assert!(matches!(parse_mbox(b"hello world\n"), Err(MboxError::NotMbox { .. })));
    }

    #[test]
    fn to_mbox_round_trips() {
        let m = parse_mbox(TWO.as_bytes()).unwrap();
        let again = parse_mbox(&m[0].to_mbox()).unwrap();
        assert_eq!(again[0].body, m[0].body);
        assert_eq!(again[0].raw, m[0].raw);
    }

    #[test]
    fn mime_multipart_patch_attachment() {
        let s = "From x\nSubject: [PATCH] a\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nintro\n--b\nContent-Type: text/x-patch; name=\"a.patch\"\nContent-Transfer-Encoding: base64\n\nZGlmZiAtLWdpdCBhL3ggYi94Cg==\n--b--\n";
        let m = parse_mbox(s.as_bytes()).unwrap();
        assert!(m[0].body.contains("intro"));
        assert!(m[0].body.contains("diff --git a/x b/x"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_mbox(&data);
        }

        #[test]
        fn split_keeps_every_mail(bodies in proptest::collection::vec("[a-z >\n]{0,40}", 1..5)) {
            let mut s = String::new();
            for (i, b) in bodies.iter().enumerate() {
                s.push_str(&format!("From x\nSubject: m{i}\n\n{b}\n\n"));
            }
            let m = parse_mbox(s.as_bytes()).unwrap();
            proptest::prop_assert_eq!(m.len(), bodies.len());
        }
    }
}
