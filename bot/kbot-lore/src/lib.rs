//! Fetches a whole thread by message id from lore.kernel.org or any public-inbox, the way b4
//! does: `<inbox URL><message id>/t.mbox.gz`, from any message of the thread.

use std::io::Read;
use std::time::Duration;

/// Where to fetch: the inbox's base URL (ends with `/`) and the bare message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub base: String,
    pub msgid: String,
}

/// A message id or lore link that cannot be fetched as given.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("{0}: a lore link looks like https://lore.kernel.org/<list>/<message-id>/")]
    BadLink(String),
    #[error("{0:?} is not a message id")]
    NotAMessageId(String),
    #[error("--lore {0}: expected an http(s) URL of an inbox, e.g. https://lore.kernel.org/all/")]
    BadLore(String),
}

/// Reads `ID`, `<ID>` or a lore link `https://host/<list>/<ID>/[...]`; `lore` is the base
/// URL used for a bare id.
pub fn parse_target(id: &str, lore: &str) -> Result<Target, TargetError> {
    let id = id.trim();
    if id.starts_with("http://") || id.starts_with("https://") {
        let (scheme, rest) = id.split_once("://").expect("checked");
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        // host / list / msgid [/ t.mbox.gz ...]
        if parts.len() < 3 {
            return Err(TargetError::BadLink(id.to_string()));
        }
        let msgid = unescape(parts[2]);
        return Ok(Target { base: format!("{scheme}://{}/{}/", parts[0], parts[1]), msgid });
    }
    let msgid = id.trim_start_matches('<').trim_end_matches('>').trim().to_string();
    if msgid.is_empty() || msgid.contains(char::is_whitespace) {
        return Err(TargetError::NotAMessageId(id.to_string()));
    }
    if !(lore.starts_with("http://") || lore.starts_with("https://")) {
        return Err(TargetError::BadLore(lore.to_string()));
    }
    let base = if lore.ends_with('/') { lore.to_string() } else { format!("{lore}/") };
    Ok(Target { base, msgid })
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes a message id for a URL path segment as public-inbox does (`/`, `%`, `?`, `#`
/// and anything not printable ASCII).
pub fn escape_mid(mid: &str) -> String {
    let mut out = String::new();
    for b in mid.bytes() {
        if b.is_ascii_graphic() && !matches!(b, b'/' | b'%' | b'?' | b'#') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Target {
    pub fn thread_url(&self) -> String {
        format!("{}{}/t.mbox.gz", self.base, escape_mid(&self.msgid))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("{url}: no such message on the server (HTTP 404); check the message id and the inbox URL (--lore)")]
    NotFound { url: String },
    #[error("{url}: server unreachable after {attempts} tries ({detail}); check the URL and the network")]
    Unreachable { url: String, attempts: u32, detail: String },
    #[error("{url}: the server answered HTTP {status} after {attempts} tries")]
    Http { url: String, status: u16, attempts: u32 },
    #[error("{url}: the thread is not valid gzip ({detail}): truncated or not a t.mbox.gz")]
    BadGzip { url: String, detail: String },
}

/// An HTTP client that reports every status (kbot decides) and names itself.
fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("kbot/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

pub fn gunzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}

/// Fetches and decompresses the thread; retries server errors and network failures with a
/// growing pause, never a 404. At most `max_bytes` are read.
pub fn fetch_thread(t: &Target, attempts: u32, timeout: Duration, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
    let url = t.thread_url();
    let agent = agent(timeout);
    let mut last = String::new();
    for n in 1..=attempts.max(1) {
        if n > 1 {
            std::thread::sleep(Duration::from_millis(500 * u64::from(n - 1)));
        }
        match agent.get(&url).call() {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if status == 404 || status == 410 {
                    return Err(FetchError::NotFound { url });
                }
                if status >= 500 {
                    last = format!("HTTP {status}");
                    if n == attempts.max(1) {
                        return Err(FetchError::Http { url, status, attempts: n });
                    }
                    continue;
                }
                if status != 200 {
                    return Err(FetchError::Http { url, status, attempts: n });
                }
                let mut body = Vec::new();
                let read = resp.into_body().into_reader().take(max_bytes).read_to_end(&mut body);
                if let Err(e) = read {
                    last = e.to_string();
                    continue;
                }
                return gunzip(&body).map_err(|e| FetchError::BadGzip { url, detail: e.to_string() });
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(FetchError::Unreachable { url, attempts: attempts.max(1), detail: last })
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// The message ids of an inbox's Atom feed (`new.atom`): each entry's link is
/// `<base><escaped message id>/`. Entries whose link is not under `base` are skipped.
pub fn atom_msgids(xml: &str, base: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in xml.split("<entry").skip(1) {
        let entry = entry.split("</entry>").next().unwrap_or("");
        let Some(at) = entry.find("<link") else { continue };
        let link = &entry[at..];
        let Some(h) = link.find("href=\"") else { continue };
        let href = xml_unescape(link[h + 6..].split('"').next().unwrap_or(""));
        let Some(rest) = href.strip_prefix(base) else { continue };
        let seg = rest.trim_end_matches('/').split('/').next().unwrap_or("");
        if !seg.is_empty() {
            let id = unescape(seg);
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

/// An inbox's feed that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("{url}: {source}")]
    Request { url: String, source: ureq::Error },
    #[error("{url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: {source}")]
    Read { url: String, source: std::io::Error },
}

/// Fetches `<base>new.atom` (the newest messages of the inbox) and returns their ids.
pub fn fetch_new(base: &str, timeout: Duration) -> Result<Vec<String>, FeedError> {
    let url = format!("{base}new.atom");
    let agent = agent(timeout);
    let resp = match agent.get(&url).call() {
        Ok(r) => r,
        Err(source) => return Err(FeedError::Request { url, source }),
    };
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(FeedError::Http { url, status });
    }
    let mut body = Vec::new();
    if let Err(source) = resp.into_body().into_reader().take(16 << 20).read_to_end(&mut body) {
        return Err(FeedError::Read { url, source });
    }
    Ok(atom_msgids(&String::from_utf8_lossy(&body), base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let lore = "https://lore.kernel.org/all/";
        assert_eq!(parse_target("<a.b@c>", lore).unwrap(), Target { base: lore.into(), msgid: "a.b@c".into() });
        assert_eq!(
            parse_target("a.b@c", "http://127.0.0.1:8080/fsdevel").unwrap().base,
            "http://127.0.0.1:8080/fsdevel/"
        );
        let t = parse_target("https://lore.kernel.org/linux-fsdevel/20170315130158.1234-1-jack@suse.cz/T/#u", lore)
            .unwrap();
        assert_eq!(
            t,
            Target {
                base: "https://lore.kernel.org/linux-fsdevel/".into(),
                msgid: "20170315130158.1234-1-jack@suse.cz".into()
            }
        );
        assert_eq!(
            t.thread_url(),
            "https://lore.kernel.org/linux-fsdevel/20170315130158.1234-1-jack@suse.cz/t.mbox.gz"
        );
        assert_eq!(parse_target("https://lore.kernel.org/l/a%2Fb@c/", lore).unwrap().msgid, "a/b@c");
        assert_eq!(parse_target("", lore).unwrap_err().to_string(), "\"\" is not a message id");
        assert_eq!(parse_target("a b", lore).unwrap_err(), TargetError::NotAMessageId("a b".into()));
        assert_eq!(
            parse_target("x@y", "ftp://x").unwrap_err().to_string(),
            "--lore ftp://x: expected an http(s) URL of an inbox, e.g. https://lore.kernel.org/all/"
        );
        assert_eq!(
            parse_target("https://lore.kernel.org/x", lore).unwrap_err().to_string(),
            "https://lore.kernel.org/x: a lore link looks like https://lore.kernel.org/<list>/<message-id>/"
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_mid("a/b%c?d#e@f"), "a%2Fb%25c%3Fd%23e@f");
        assert_eq!(escape_mid("plain.id+tag=1@host"), "plain.id+tag=1@host");
    }

    #[test]
    fn gzip_errors_are_reported() {
        assert!(gunzip(b"not gzip").is_err());
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, b"From x\n").unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(&gz).unwrap(), b"From x\n");
        assert!(gunzip(&gz[..gz.len() - 6]).is_err(), "truncated");
    }

    #[test]
    fn unreachable_server_is_an_error_not_a_hang() {
        // Port 9 (discard) is closed on loopback here; connection refused at once.
        let t = parse_target("x@y", "http://127.0.0.1:9/inbox/").unwrap();
        let e = fetch_thread(&t, 2, Duration::from_secs(5), 1 << 20).unwrap_err();
        assert!(matches!(e, FetchError::Unreachable { attempts: 2, .. }), "{e}");
        let e = fetch_new("http://127.0.0.1:9/inbox/", Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, FeedError::Request { .. }), "{e}");
        assert!(e.to_string().starts_with("http://127.0.0.1:9/inbox/new.atom: "), "{e}");
    }

    #[test]
    fn atom_feed_entries() {
        let base = "http://127.0.0.1:8080/fsdevel/";
        let xml = r#"<?xml version="1.0" encoding="us-ascii"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>fsdevel</title>
<link rel="alternate" type="text/html" href="http://127.0.0.1:8080/fsdevel/"/>
<entry><author><name>A</name></author><title>[PATCH 1/2] x</title><updated>2026-11-25T13:40:32Z</updated>
<link href="http://127.0.0.1:8080/fsdevel/20261125.a%2Fb@x.org/"/><id>urn:uuid:1</id></entry>
<entry><title>Re: y</title><link href="http://127.0.0.1:8080/fsdevel/c&amp;d@x.org/"/></entry>
<entry><title>elsewhere</title><link href="http://other/list/e@x.org/"/></entry>
</feed>"#;
        assert_eq!(atom_msgids(xml, base), ["20261125.a/b@x.org", "c&d@x.org"]);
        assert_eq!(unescape("a%2Fb%"), "a/b%");
        assert_eq!(unescape(&escape_mid("x/y%z?#@q")), "x/y%z?#@q");
    }
}
