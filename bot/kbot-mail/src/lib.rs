//! Report mails. A regression gets one reply, threaded under the first bad patch
//! (`In-Reply-To`/`References`, `Re:` its subject), to its author, Cc the list and the patch's
//! Cc, in the 0-day robot's style, with a ready `Reported-by:` trailer. Everything taken from
//! the series (subjects, names, addresses, message ids) is checked before it becomes a header:
//! no line breaks, no second address hidden in one, no control characters.

use kbot_mbox::Mail;
use kbot_report::CheckResult;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use std::str::FromStr;

/// A mail ready for the outbox: the exact bytes go to SMTP, on every attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct OutMail {
    pub message_id: String,
    pub sender: String,
    pub rcpt: Vec<String>,
    pub raw: Vec<u8>,
}

pub struct Settings<'a> {
    /// `Name <addr>` of kbot.
    pub from: &'a str,
    /// Extra Cc on every report.
    pub cc: &'a [String],
    /// The run's page on the dashboard, for `Closes:` and the footer.
    pub link: Option<&'a str>,
    /// Also a short note for a series that passed (`mail.send_clean`).
    pub send_clean: bool,
}

/// What the report is about.
pub enum Subject<'a> {
    /// A series from a list: reply to the first bad patch's mail (or the cover / first patch).
    Series { mails: &'a [Mail] },
    /// Commits of a tree's branch (CI): a new mail to the first bad commit's author, Cc its
    /// committer (`Name <addr>`, looked up by the caller).
    Range { tree: &'a str, branch: &'a str, committer: Option<&'a str> },
}

/// FNV-1a 64, the hash of `kbot_kernel::fnv64`: report Message-IDs derive from job keys and
/// must stay what they were. Here so the mail crate (and the fuzzers) do not build the
/// kernel crate.
pub(crate) fn fnv64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

mod reply;
pub use reply::{reply, without};

/// What a mail takes of untrusted text as is: not a control character (CR, LF, NUL, ESC, ...)
/// and not an invisible or reordering one (bidi overrides and isolates such as U+202E and
/// U+2066..U+2069, zero-width characters, the other Unicode format characters, U+2028/2029).
fn shown_as_is(c: char) -> bool {
    !c.is_control() && !kbot_templates::is_invisible(c)
}

/// A header value from untrusted text: control characters (CR, LF, NUL, ...) and invisible
/// or reordering ones (bidi, zero-width, other Unicode format characters) become spaces, runs
/// of spaces one, at most `max` characters. Only ever a space replaces a character, so no
/// address can be formed from pieces that were apart.
pub fn clean_header(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = if shown_as_is(c) { c } else { ' ' };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        if out.chars().count() >= max {
            break;
        }
        out.push(c);
    }
    out.trim_end().to_string()
}

/// A body line: control characters (but tabs) and invisible or reordering characters become
/// spaces, at most 900 characters.
fn body_line(l: &str) -> String {
    if l == "-- " {
        return l.to_string(); // the signature separator keeps its space
    }
    l.chars()
        .map(|c| if shown_as_is(c) || c == '\t' { c } else { ' ' })
        .take(900)
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// A message id usable in In-Reply-To/References (without brackets), or `None`.
pub fn clean_msgid(id: &str) -> Option<String> {
    let ok = !id.is_empty()
        && id.len() <= 250
        && id.contains('@')
        && id.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '\\' | ',' | ';'));
    ok.then(|| id.to_string())
}

/// One address from untrusted text, or `None` (a list, a line break, garbage, an address
/// with invisible characters). The display name is cleaned like a header value.
pub fn mailbox(s: &str) -> Option<Mailbox> {
    if s.contains(|c: char| c.is_control()) || s.len() > 320 {
        return None;
    }
    let mut m = Mailbox::from_str(s.trim()).ok()?;
    // Exactly one address: "a@x, b@y" must not pass as one.
    let addr = m.email.to_string();
    let one = !addr.contains([',', ';', ' ']) && addr.matches('@').count() == 1 && addr.chars().all(shown_as_is);
    // The address as the sender wrote it, not one the parser joined across spaces ("x@ y").
    let written = s.to_lowercase().contains(&addr.to_lowercase());
    m.name = m.name.map(|n| clean_header(&n, 200)).filter(|n| !n.is_empty());
    (one && written).then_some(m)
}

/// One finding (the regressions at one first bad patch) as the mail shows it: short enough to
/// read on a phone, the full detail only when there is no run page to link to.
#[derive(serde::Serialize)]
struct MailFinding {
    /// `[2/3] subject`, `<commit> ("subject")`, or that none was found.
    title: String,
    /// Whether it has a first bad patch.
    found: bool,
    arches: String,
    bisect: String,
    /// `test (kind)`, with the arches when not all of the finding's.
    tests: Vec<String>,
    /// The strongest symptom's account, one line.
    headline: String,
    /// The first blocked-task stack, and how many others there are.
    stack: Option<String>,
    more_stacks: usize,
    /// Every symptom's account per arch, its own lines, every stack once, new splats.
    detail: Vec<String>,
}

fn mail_finding(f: &kbot_report::group::Finding, r: &CheckResult, range: bool) -> MailFinding {
    let title = match &f.first_bad {
        Some(b) if range => format!("{} (\"{}\")", kbot_report::short_commit(&b.commit), clean_header(&b.subject, 150)),
        Some(b) => format!("[{}/{}] {}", b.index, r.series.total, clean_header(&b.subject, 150)),
        None => format!("first bad {} not determined", if range { "commit" } else { "patch" }),
    };
    let tests = f
        .symptoms
        .iter()
        .map(|y| {
            let mut t = format!("{} ({})", y.test, y.kind);
            if y.arches != f.arches {
                t += &format!(" on {}", y.arches.join(", "));
            }
            if f.first_bad.is_none() {
                t += &format!(": {}", y.bisect.join("; "));
            }
            body_line(&t)
        })
        .collect();
    let several = f.arches.len() > 1;
    let mut detail = vec![format!("=== {title}")];
    for y in &f.symptoms {
        detail.push(format!("--- {} ({}; {})", y.test, y.kind, y.arches.join(", ")));
        for a in &y.accounts {
            for (i, l) in a.lines.iter().take(40).enumerate() {
                detail.push(match (several, i) {
                    (true, 0) => format!("  [{}] {l}", a.arch),
                    _ => format!("  {l}"),
                });
            }
        }
        if !y.own_lines.is_empty() {
            detail.push("  the test's own lines:".into());
            detail.extend(y.own_lines.iter().take(20).map(|l| format!("    {l}")));
        }
    }
    if !f.stacks.is_empty() {
        detail.push("--- blocked tasks (sysrq-w), each stack once".into());
        for k in &f.stacks {
            let arches = if several { format!("[{}] ", k.arches.join(", ")) } else { String::new() };
            detail.push(format!("  {arches}{}", k.line()));
        }
    }
    for b in &f.blocks {
        detail.push(format!("--- new on the tip ({})", b.arches.join(", ")));
        detail.extend(b.lines.iter().take(20).map(|l| format!("  {l}")));
    }
    MailFinding {
        title,
        found: f.first_bad.is_some(),
        arches: f.arches.join(", "),
        bisect: f.bisect.join("; "),
        tests,
        headline: body_line(&f.headline),
        stack: f.stacks.first().map(|k| body_line(&k.line())),
        more_stacks: f.stacks.len().saturating_sub(1),
        detail: detail.iter().map(|l| body_line(l)).collect(),
    }
}

fn domain(from: &str) -> String {
    mailbox(from).map(|m| m.email.domain().to_string()).unwrap_or_else(|| "kbot.invalid".into())
}

/// The report for a job's regression, or `None` when the result has none.
/// Why a report mail cannot be written (config or input trouble, never a transient one).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("mail.from {0:?} is not an address")]
    BadFrom(String),
    #[error("the series has no mails")]
    NoMails,
    #[error("a range regression without a first bad commit")]
    NoFirstBad,
    #[error("no valid recipient address in the series")]
    NoRecipient,
    #[error("report template: {0}")]
    Template(#[from] minijinja::Error),
    #[error("cannot build the mail: {0}")]
    Build(String),
}

pub fn report(r: &CheckResult, job_key: &str, about: &Subject, s: &Settings) -> Result<Option<OutMail>, ReportError> {
    let groups = kbot_report::group::findings(r);
    let count: usize = groups.iter().map(|f| f.regressions).sum();
    let clean = groups.is_empty();
    if clean && !(s.send_clean && r.status == kbot_report::Status::Clean && matches!(about, Subject::Series { .. })) {
        return Ok(None);
    }
    let first = r.first_bad();
    let from = mailbox(s.from).ok_or_else(|| ReportError::BadFrom(s.from.to_string()))?;
    let message_id = format!("kbot-{:016x}@{}", fnv64(job_key.as_bytes()), domain(s.from));
    let mut b = Message::builder().from(from.clone()).message_id(Some(format!("<{message_id}>")));
    let mut rcpt: Vec<Mailbox> = Vec::new();
    let mut cc: Vec<Mailbox> = Vec::new();
    let (subject, what, unit, greet, first_bad);
    match about {
        Subject::Series { mails } => {
            // Reply to the first bad patch's mail; the cover letter, then the first patch, else.
            let patch = first.and_then(|f| r.series.patches.iter().find(|p| p.index == f.index));
            let target = patch
                .and_then(|p| mails.iter().find(|m| m.message_id == p.message_id))
                .or_else(|| mails.iter().find(|m| m.message_id == r.series.message_id))
                .or_else(|| mails.first())
                .ok_or(ReportError::NoMails)?;
            let subj = clean_header(&target.subject, 200);
            subject = if subj.to_ascii_lowercase().starts_with("re:") { subj } else { format!("Re: {subj}") };
            if let Some(id) = clean_msgid(&target.message_id) {
                b = b.in_reply_to(format!("<{id}>"));
                let mut refs: Vec<String> = target.references.iter().filter_map(|x| clean_msgid(x)).collect();
                refs.push(id);
                refs.dedup();
                b = b.references(refs.iter().map(|x| format!("<{x}>")).collect::<Vec<_>>().join(" "));
            }
            if let Some(a) = mailbox(&target.from) {
                rcpt.push(a);
            }
            cc.extend(target.to.iter().chain(target.cc.iter()).filter_map(|x| mailbox(x)));
            greet = rcpt.first().and_then(|m| m.name.clone()).unwrap_or_else(|| "there".into());
            what = format!(
                "\"{}\" (v{}, {} patches)",
                clean_header(&r.series.subject, 120),
                r.series.version,
                r.series.total
            );
            unit = "patch";
            first_bad = first.map(|f| format!("[{}/{}] {}", f.index, r.series.total, clean_header(&f.subject, 150)));
        }
        Subject::Range { tree, branch, committer } => {
            let f = first.ok_or(ReportError::NoFirstBad)?;
            let author =
                r.series.patches.iter().find(|p| p.index == f.index).map(|p| p.author.clone()).unwrap_or_default();
            if let Some(a) = mailbox(&author) {
                rcpt.push(a);
            }
            cc.extend(committer.and_then(mailbox));
            let short = kbot_report::short_commit(&f.commit);
            subject = format!("[kbot] {tree}/{branch}: regression at {short} (\"{}\")", clean_header(&f.subject, 100));
            greet = rcpt.first().and_then(|m| m.name.clone()).unwrap_or_else(|| "there".into());
            what = format!("{} new commits on {tree}/{branch}", r.series.total);
            unit = "commit";
            first_bad = Some(format!("{short} (\"{}\")", clean_header(&f.subject, 150)));
        }
    }
    cc.extend(s.cc.iter().filter_map(|x| mailbox(x)));
    // No copies to kbot itself, and each address once.
    let own = from.email.to_string().to_ascii_lowercase();
    let mut seen: Vec<String> = vec![own];
    rcpt.retain(|m| {
        let k = m.email.to_string().to_ascii_lowercase();
        let new = !seen.contains(&k);
        seen.push(k);
        new
    });
    cc.retain(|m| {
        let k = m.email.to_string().to_ascii_lowercase();
        let new = !seen.contains(&k);
        seen.push(k);
        new
    });
    if rcpt.is_empty() {
        // No usable author address: send to the list (Cc) only.
        if cc.is_empty() {
            return Err(ReportError::NoRecipient);
        }
        rcpt.push(cc.remove(0));
    }
    for m in &rcpt {
        b = b.to(m.clone());
    }
    for m in &cc {
        b = b.cc(m.clone());
    }
    let arches: Vec<String> = r.arches.iter().map(|a| a.arch.clone()).collect();
    let range = matches!(about, Subject::Range { .. });
    let findings: Vec<MailFinding> = groups.iter().map(|f| mail_finding(f, r, range)).collect();
    let ctx = minijinja::context! {
        greet => clean_header(&greet, 80),
        what, unit, first_bad, count,
        symptoms => groups.iter().map(|f| f.symptoms.len()).sum::<usize>(),
        findings => minijinja::Value::from(minijinja::value::Serde(&findings)),
        base => format!("{} ({})", kbot_report::short_commit(&r.series.base), clean_header(&r.environment.tree, 150)),
        arches => arches.join(", "),
        config => r.environment.config.clone(),
        compiler => r.environment.compiler.clone(),
        qemu => r.environment.qemu.clone(),
        reported_by => clean_header(&r.reported_by, 200),
        clean,
        tests => r.arches.iter().flat_map(|a| &a.tip.tests).filter(|t| t.result == kbot_report::Outcome::Pass).count(),
        link => s.link,
        reproduce => r.reproduce.clone(),
        kbot => r.environment.kbot.clone(),
    };
    let env = kbot_templates::text_environment(&[("report", kbot_templates::MAIL_REPORT)])?;
    let body = env.get_template("report").and_then(|t| t.render(ctx))?;
    // SMTP wants CRLF; no line may pass 998 octets.
    let body: String = body.lines().map(|l| format!("{}\r\n", body_line(l))).collect();
    let msg = b
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .header(lettre::message::header::UserAgent::from(r.environment.kbot.clone()))
        // Plain 8bit text as kernel lists expect: lettre would pick quoted-printable for any
        // line of 76 or more, which console excerpts have. Lines are CRLF and below 998 above.
        .body(lettre::message::Body::dangerous_pre_encoded(
            body.into_bytes(),
            lettre::message::header::ContentTransferEncoding::EightBit,
        ))
        .map_err(|e| ReportError::Build(e.to_string()))?;
    let envelope = msg.envelope();
    Ok(Some(OutMail {
        message_id: format!("<{message_id}>"),
        sender: envelope.from().map(|a| a.to_string()).unwrap_or_default(),
        rcpt: envelope.to().iter().map(|a| a.to_string()).collect(),
        raw: msg.formatted(),
    }))
}

/// Why a send failed, and whether trying later may help.
#[derive(Debug)]
pub struct SendError {
    pub transient: bool,
    pub message: String,
}

/// Where and how report mails are sent.
pub struct Smtp<'a> {
    /// `smtp://host:port` (plain, e.g. a local MTA), `smtp+starttls://host:port` (STARTTLS,
    /// required: a server that does not offer it gets nothing) or `smtps://host:port` (TLS from
    /// the start). Default ports 25, 587, 465.
    pub url: &'a str,
    /// User and password for SMTP AUTH. When given, the mail is only sent after a successful
    /// login (a server that offers no AUTH gets nothing).
    pub creds: Option<(String, String)>,
    /// PEM certificates the server's certificate must chain to, instead of the built-in
    /// public roots (`mail.ca_file`).
    pub ca_pem: Option<&'a [u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Plain,
    StartTls,
    Tls,
}

/// Sends the exact bytes `raw` by SMTP.
pub fn send(smtp: &Smtp, sender: &str, rcpt: &[String], raw: &[u8]) -> Result<(), SendError> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
    use lettre::{Address, SmtpTransport, Transport};
    let url = smtp.url;
    let bad = |m: String| SendError { transient: false, message: m };
    let (security, rest) = if let Some(r) = url.strip_prefix("smtp://") {
        (Security::Plain, r)
    } else if let Some(r) = url.strip_prefix("smtp+starttls://") {
        (Security::StartTls, r)
    } else if let Some(r) = url.strip_prefix("smtps://") {
        (Security::Tls, r)
    } else {
        return Err(bad(format!("mail.smtp {url:?}: expected smtp://, smtp+starttls:// or smtps://")));
    };
    let rest = rest.trim_end_matches('/');
    let default_port = match security {
        Security::Plain => 25,
        Security::StartTls => 587,
        Security::Tls => 465,
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad(format!("mail.smtp {url:?}: bad port")))?),
        None => (rest, default_port),
    };
    let mut t = SmtpTransport::builder_dangerous(host).port(port);
    if security != Security::Plain {
        let mut p = TlsParameters::builder(host.trim_matches(['[', ']']).to_string());
        if let Some(pem) = smtp.ca_pem {
            // lettre takes a PEM without any certificate as an empty list: nothing trusted.
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(bad("mail.ca_file: no PEM certificate in it".into()));
            }
            let cert = Certificate::from_pem(pem).map_err(|e| bad(format!("mail.ca_file: {e}")))?;
            p = p.certificate_store(CertificateStore::None).add_root_certificate(cert);
        }
        let p = p.build().map_err(|e| bad(format!("TLS for {host}: {e}")))?;
        t = t.tls(if security == Security::Tls { Tls::Wrapper(p) } else { Tls::Required(p) });
    }
    t = t.timeout(Some(std::time::Duration::from_secs(30)));
    if let Some((u, p)) = &smtp.creds {
        t = t.credentials(Credentials::new(u.clone(), p.clone()));
    }
    let from = Address::from_str(sender).map_err(|e| bad(format!("sender {sender:?}: {e}")))?;
    let to: Vec<Address> = rcpt.iter().filter_map(|r| Address::from_str(r).ok()).collect();
    let env = lettre::address::Envelope::new(Some(from), to).map_err(|e| bad(e.to_string()))?;
    t.build().send_raw(&env, raw).map(|_| ()).map_err(|e| SendError {
        // A server that answered 5xx will answer it again; anything else (refused, timed out,
        // 4xx, TLS) may pass later.
        transient: !e.is_permanent(),
        message: format!("SMTP {host}:{port}: {}", error_chain(&e)),
    })
}

/// An error with its causes (lettre's own text omits them, e.g. why a certificate failed).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s = format!("{s}: {t}");
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests;

/// Properties of the cleaning, over many generated hostile strings (a small xorshift
/// generator: deterministic, no dependency).
#[cfg(test)]
mod cleaning_properties {
    use super::*;

    /// Letters and what separates addresses, line breaks and other controls, bidi and
    /// other invisible characters, non-ASCII letters.
    const ALPHABET: &str = "abx.@@,;:<>\"  \t\r\n\0\x1b\u{85}\u{7f}\u{202A}\u{202B}\u{202C}\u{202D}\u{202E}\u{2066}\u{2067}\u{2068}\u{2069}\u{200B}\u{200D}\u{200E}\u{FEFF}\u{00AD}\u{061C}\u{E0041}\u{2028}\u{2029}é中";

    fn strings(n: usize) -> impl Iterator<Item = String> {
        let alphabet: Vec<char> = ALPHABET.chars().collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..n).map(move |_| {
            let len = (next() % 60) as usize;
            (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect()
        })
    }

    /// What must never leave the cleaning (but tabs in a body): controls, and invisible or
    /// reordering characters, the bidi ones named on their own.
    fn hidden(c: char) -> bool {
        c.is_control()
            || kbot_templates::is_invisible(c)
            || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }

    /// Every run of non-spaces in `out` is a piece of `input` as it was: nothing was joined.
    fn only_pieces_of(out: &str, input: &str) -> bool {
        out.split([' ', '\t']).filter(|w| !w.is_empty()).all(|w| input.contains(w))
    }

    #[test]
    fn header_values_have_no_line_break_no_invisible_character_and_no_new_address() {
        for (i, s) in strings(20_000).enumerate() {
            let max = 1 + i % 80;
            let h = clean_header(&s, max);
            assert!(h.chars().all(|c| c != '\r' && c != '\n' && !hidden(c)), "{s:?} -> {h:?}");
            assert!(h.chars().count() <= max, "{s:?} -> {h:?}");
            assert!(only_pieces_of(&h, &s), "{s:?} -> {h:?}");
            assert!(h.matches('@').count() <= s.matches('@').count());
            let b = body_line(&s);
            assert!(b.chars().all(|c| c == '\t' || !hidden(c)), "{s:?} -> {b:?}");
            assert!(only_pieces_of(&b, &s), "{s:?} -> {b:?}");
        }
    }

    #[test]
    fn a_mailbox_is_one_address_of_the_input_with_a_clean_name() {
        let mut some = 0;
        for s in strings(20_000).map(|s| format!("{s} <u{}@example.org>", s.len())).chain(strings(5_000)) {
            let Some(m) = mailbox(&s) else { continue };
            some += 1;
            let addr = m.email.to_string();
            assert!(s.contains(&addr) && addr.matches('@').count() == 1, "{s:?} -> {addr:?}");
            assert!(!addr.contains(hidden), "{s:?} -> {addr:?}");
            if let Some(n) = &m.name {
                assert!(!n.contains(hidden), "{s:?} -> {n:?}");
            }
        }
        assert!(some > 500, "the generator must reach valid mailboxes: {some}");
        let m = mailbox("Eve \u{202E}gnirts\u{2066} <eve@example.org>").unwrap();
        assert_eq!((m.name.as_deref(), m.email.to_string().as_str()), (Some("Eve gnirts"), "eve@example.org"));
        assert_eq!(clean_header("fix\u{202E}@evil.example\u{2069}.org", 100), "fix @evil.example .org");
    }
}
