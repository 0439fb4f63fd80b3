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
        // Bytes, not str slices: a `%` may precede a multi-byte character.
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes a message id for a URL path segment: everything but RFC 3986's unreserved
/// characters, its sub-delimiters, `:` and `@` becomes `%XX` (so `/ % ? #`, `< > " [ ] \ ^
/// ` { | }` and all that is not printable ASCII, which an HTTP client refuses in a URL).
pub fn escape_mid(mid: &str) -> String {
    let mut out = String::new();
    for b in mid.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
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

/// What one HTTP GET gave: its status and body (up to a limit), or why there was none (no
/// connection, a timeout, a body cut short). The decisions below take this, so the blocking
/// client of the CLI and the async one of the service behave the same.
pub type Got = Result<(u16, Vec<u8>), String>;

/// The User-Agent kbot sends.
pub const USER_AGENT: &str = concat!("kbot/", env!("CARGO_PKG_VERSION"));

/// After try `n` (1-based) of `attempts` to fetch a thread.
#[derive(Debug, PartialEq, Eq)]
pub enum ThreadStep {
    Done(Result<Vec<u8>, FetchError>),
    /// Try again after [`retry_pause`]; the reason, for the error if no try succeeds.
    Retry(String),
}

/// The pause before try `n`: server errors and network failures are retried with a growing
/// pause, never a 404.
pub fn retry_pause(n: u32) -> Duration {
    Duration::from_millis(500 * u64::from(n.saturating_sub(1)))
}

/// Decides what one try of a thread fetch means.
pub fn thread_step(url: &str, got: Got, n: u32, attempts: u32) -> ThreadStep {
    let url = url.to_string();
    let (status, body) = match got {
        Ok(g) => g,
        Err(e) if n >= attempts => {
            return ThreadStep::Done(Err(FetchError::Unreachable { url, attempts: n, detail: e }))
        }
        Err(e) => return ThreadStep::Retry(e),
    };
    match status {
        404 | 410 => ThreadStep::Done(Err(FetchError::NotFound { url })),
        500.. if n < attempts => ThreadStep::Retry(format!("HTTP {status}")),
        200 => ThreadStep::Done(gunzip(&body).map_err(|e| FetchError::BadGzip { url, detail: e.to_string() })),
        _ => ThreadStep::Done(Err(FetchError::Http { url, status, attempts: n })),
    }
}

/// A blocking HTTP client that reports every status (kbot decides) and names itself.
fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(USER_AGENT)
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str, max_bytes: u64) -> Got {
    let resp = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    resp.into_body().into_reader().take(max_bytes).read_to_end(&mut body).map_err(|e| e.to_string())?;
    Ok((status, body))
}

pub fn gunzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}

/// Fetches and decompresses the thread (blocking); see [`thread_step`]. At most
/// `max_bytes` are read.
pub fn fetch_thread(t: &Target, attempts: u32, timeout: Duration, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
    let url = t.thread_url();
    let agent = agent(timeout);
    let attempts = attempts.max(1);
    for n in 1..=attempts {
        std::thread::sleep(retry_pause(n));
        if let ThreadStep::Done(r) = thread_step(&url, get(&agent, &url, max_bytes), n, attempts) {
            return r;
        }
    }
    unreachable!("the last try is always done")
}

/// One entry of an inbox's Atom feed (`new.atom` or a search with `x=A`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// The message id, exactly: XML entities (`&#39;`, `&amp;`, ...) and the link's `%XX`
    /// escapes decoded.
    pub msgid: String,
    /// `<updated>` in Unix seconds: public-inbox writes when it received the message (the
    /// `Received:` time, else `Date:`), the order of `new.atom` and of `rt:` searches.
    pub updated: Option<i64>,
}

/// A feed that is not an Atom feed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AtomError {
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("not an Atom feed (the root element is <{0}>)")]
    NotAFeed(String),
}

/// Reads an Atom feed of public-inbox: each entry's message id (from its link
/// `<inbox URL><escaped message id>/`) and `<updated>` time, in feed order, each id once.
/// An entry without a link is skipped. DTDs are refused (no entity expansion bombs).
pub fn parse_atom(xml: &str) -> Result<Vec<FeedEntry>, AtomError> {
    let opts = roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 4_000_000, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(xml, opts).map_err(|e| AtomError::Xml(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() != "feed" {
        return Err(AtomError::NotAFeed(root.tag_name().name().chars().take(64).collect()));
    }
    let mut out: Vec<FeedEntry> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in root.children().filter(|n| n.has_tag_name("entry")) {
        let href = entry
            .children()
            .filter(|n| n.has_tag_name("link"))
            .filter(|n| n.attribute("rel").is_none_or(|r| r == "alternate"))
            .find_map(|n| n.attribute("href"));
        let Some(msgid) = href.and_then(link_msgid) else { continue };
        let updated = entry.children().find(|n| n.has_tag_name("updated")).and_then(|n| n.text()).and_then(rfc3339_utc);
        if seen.insert(msgid.clone()) {
            out.push(FeedEntry { msgid, updated });
        }
    }
    Ok(out)
}

/// The message id of a message link `<inbox URL><escaped id>/[...]`: its last path segment
/// (an escaped id holds no `/`), `%XX` decoded.
fn link_msgid(href: &str) -> Option<String> {
    let path = href.split_once("://").map_or(href, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
    let seg = path.split('/').rfind(|s| !s.is_empty())?;
    let id = unescape(seg);
    (!id.is_empty() && !id.contains(char::is_whitespace)).then_some(id)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` in Unix seconds.
pub fn rfc3339_utc(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && rest.as_bytes()[3] == b':' => {
            let (oh, om) = (rest.get(1..3)?.parse::<i64>().ok()?, rest.get(4..6)?.parse::<i64>().ok()?);
            let o = oh * 3600 + om * 60;
            if rest.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    // Days from the civil date (proleptic Gregorian), H. Hinnant's algorithm.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_string(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// An inbox's feed that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// No answer, or a body cut short.
    #[error("{url}: {detail}")]
    Request { url: String, detail: String },
    #[error("{url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: {source}")]
    Atom { url: String, source: AtomError },
    #[error("{url}: search is not available on this inbox (HTTP 501)")]
    NoSearch { url: String },
    #[error("{url}: more than {pages} pages of results; the rest is not read")]
    TooMany { url: String, pages: u32 },
}

/// The most of a feed that is read.
pub const FEED_MAX_BYTES: u64 = 16 << 20;

/// What a feed's GET means: `Ok(None)` for a 404 (public-inbox's "no results" of a search).
pub fn feed_result(url: &str, got: Got) -> Result<Option<Vec<FeedEntry>>, FeedError> {
    let url = url.to_string();
    let (status, body) = got.map_err(|detail| FeedError::Request { url: url.clone(), detail })?;
    match status {
        200 => {}
        404 => return Ok(None),
        501 => return Err(FeedError::NoSearch { url }),
        _ => return Err(FeedError::Http { url, status }),
    }
    match parse_atom(&String::from_utf8_lossy(&body)) {
        Ok(v) => Ok(Some(v)),
        Err(source) => Err(FeedError::Atom { url, source }),
    }
}

fn get_feed(agent: &ureq::Agent, url: &str) -> Result<Option<Vec<FeedEntry>>, FeedError> {
    feed_result(url, get(agent, url, FEED_MAX_BYTES))
}

/// `<base>new.atom`: the newest messages of the inbox, newest first.
pub fn new_url(base: &str) -> String {
    format!("{base}new.atom")
}

/// `new.atom` must exist: its 404 is an error, not "no results".
pub fn new_result(url: &str, feed: Option<Vec<FeedEntry>>) -> Result<Vec<FeedEntry>, FeedError> {
    feed.ok_or_else(|| FeedError::Http { url: url.to_string(), status: 404 })
}

/// Fetches `<base>new.atom` (blocking).
pub fn fetch_new(base: &str, timeout: Duration) -> Result<Vec<FeedEntry>, FeedError> {
    let url = new_url(base);
    new_result(&url, get_feed(&agent(timeout), &url)?)
}

/// Results per page of public-inbox's search (its `SearchQuery::LIM`; `l=` may only lower it).
pub const SEARCH_PAGE: usize = 200;

/// The search URL of the messages received from `from` to `to` (Unix seconds, both
/// included) as Atom, results `offset` on: `<base>?q=rt:FROM..TO&x=A&o=OFFSET`.
pub fn received_url(base: &str, from: i64, to: i64, offset: usize) -> String {
    let o = if offset > 0 { format!("&o={offset}") } else { String::new() };
    format!("{base}?q=rt:{from}..{to}&x=A{o}")
}

/// Every message the inbox received from `from` to `to` (Unix seconds, both included),
/// through its search (`rt:`, Xapian; public-inbox answers [`SEARCH_PAGE`] results a page,
/// newest first), paged with `o=` until a page is short; at most `max_pages` pages.
pub fn fetch_received(
    base: &str,
    from: i64,
    to: i64,
    timeout: Duration,
    max_pages: u32,
) -> Result<Vec<FeedEntry>, FeedError> {
    let agent = agent(timeout);
    let mut pages = Pages::default();
    for _ in 0..max_pages {
        let page = get_feed(&agent, &received_url(base, from, to, pages.offset))?;
        if !pages.add(page) {
            return Ok(pages.out);
        }
    }
    Err(FeedError::TooMany { url: received_url(base, from, to, 0), pages: max_pages })
}

/// The pages of a search read so far.
#[derive(Default)]
pub struct Pages {
    pub out: Vec<FeedEntry>,
    seen: std::collections::HashSet<String>,
    /// Where the next page starts.
    pub offset: usize,
}

impl Pages {
    /// Adds a page (None: the search's 404, no results); false when it was the last: a short
    /// page (past the end public-inbox answers an HTML page).
    pub fn add(&mut self, page: Option<Vec<FeedEntry>>) -> bool {
        let page = page.unwrap_or_default();
        let n = page.len();
        self.offset += n;
        let seen = &mut self.seen;
        self.out.extend(page.into_iter().filter(|e| seen.insert(e.msgid.clone())));
        n >= SEARCH_PAGE
    }
}

/// The async client of `kbot serve` (reqwest, rustls): the same requests and decisions as
/// the blocking functions above.
#[cfg(feature = "async")]
pub mod nonblocking {
    use super::*;

    pub struct Client {
        http: reqwest::Client,
    }

    impl Client {
        /// A client whose requests each end within `timeout`.
        pub fn new(timeout: Duration) -> Result<Client, String> {
            let http = reqwest::Client::builder()
                .timeout(timeout)
                .user_agent(USER_AGENT)
                .build()
                .map_err(|e| format!("HTTP client: {e}"))?;
            Ok(Client { http })
        }

        async fn get(&self, url: &str, max_bytes: u64) -> Got {
            let mut resp = self.http.get(url).send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
                let room = (max_bytes as usize).saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() as u64 >= max_bytes {
                    break;
                }
            }
            Ok((status, body))
        }

        async fn feed(&self, url: &str) -> Result<Option<Vec<FeedEntry>>, FeedError> {
            feed_result(url, self.get(url, FEED_MAX_BYTES).await)
        }

        /// [`super::fetch_thread`], without blocking the service.
        pub async fn fetch_thread(&self, t: &Target, attempts: u32, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
            let url = t.thread_url();
            let attempts = attempts.max(1);
            for n in 1..=attempts {
                tokio::time::sleep(retry_pause(n)).await;
                if let ThreadStep::Done(r) = thread_step(&url, self.get(&url, max_bytes).await, n, attempts) {
                    return r;
                }
            }
            unreachable!("the last try is always done")
        }

        /// [`super::fetch_new`].
        pub async fn fetch_new(&self, base: &str) -> Result<Vec<FeedEntry>, FeedError> {
            let url = new_url(base);
            new_result(&url, self.feed(&url).await?)
        }

        /// [`super::fetch_received`].
        pub async fn fetch_received(
            &self,
            base: &str,
            from: i64,
            to: i64,
            max_pages: u32,
        ) -> Result<Vec<FeedEntry>, FeedError> {
            let mut pages = Pages::default();
            for _ in 0..max_pages {
                if !pages.add(self.feed(&received_url(base, from, to, pages.offset)).await?) {
                    return Ok(pages.out);
                }
            }
            Err(FeedError::TooMany { url: received_url(base, from, to, 0), pages: max_pages })
        }
    }
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
        assert_eq!(escape_mid("o'brien&co<x\"y>[1]{|}^`\\ @z"), "o'brien&co%3Cx%22y%3E%5B1%5D%7B%7C%7D%5E%60%5C%20@z");
        assert_eq!(escape_mid("caf\u{e9}"), "caf%C3%A9");
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

    /// The service's async client on the same closed port: the same errors.
    #[cfg(feature = "async")]
    #[test]
    fn async_client_reports_as_the_blocking_one() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let c = nonblocking::Client::new(Duration::from_secs(5)).unwrap();
            let t = parse_target("x@y", "http://127.0.0.1:9/inbox/").unwrap();
            let e = c.fetch_thread(&t, 2, 1 << 20).await.unwrap_err();
            assert!(matches!(e, FetchError::Unreachable { attempts: 2, .. }), "{e}");
            let e = c.fetch_new("http://127.0.0.1:9/inbox/").await.unwrap_err();
            assert!(e.to_string().starts_with("http://127.0.0.1:9/inbox/new.atom: "), "{e}");
        });
    }

    /// What each answer to a thread fetch means, try by try.
    #[test]
    fn thread_steps() {
        let url = "http://x/i/m/t.mbox.gz";
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, b"From x\n").unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(thread_step(url, Ok((200, gz)), 1, 3), ThreadStep::Done(Ok(b"From x\n".to_vec())));
        assert_eq!(
            thread_step(url, Ok((404, vec![])), 1, 3),
            ThreadStep::Done(Err(FetchError::NotFound { url: url.into() }))
        );
        assert_eq!(thread_step(url, Ok((502, vec![])), 1, 3), ThreadStep::Retry("HTTP 502".into()));
        assert_eq!(
            thread_step(url, Ok((502, vec![])), 3, 3),
            ThreadStep::Done(Err(FetchError::Http { url: url.into(), status: 502, attempts: 3 }))
        );
        assert_eq!(
            thread_step(url, Ok((403, vec![])), 1, 3),
            ThreadStep::Done(Err(FetchError::Http { url: url.into(), status: 403, attempts: 1 }))
        );
        assert_eq!(thread_step(url, Err("reset".into()), 2, 3), ThreadStep::Retry("reset".into()));
        assert!(matches!(
            thread_step(url, Err("reset".into()), 3, 3),
            ThreadStep::Done(Err(FetchError::Unreachable { attempts: 3, .. }))
        ));
        assert!(matches!(
            thread_step(url, Ok((200, b"plain".to_vec())), 1, 3),
            ThreadStep::Done(Err(FetchError::BadGzip { .. }))
        ));
        assert_eq!(retry_pause(1), Duration::ZERO);
        assert_eq!(retry_pause(3), Duration::from_millis(1000));
    }

    #[test]
    fn atom_feed_entries() {
        let xml = r#"<?xml version="1.0" encoding="us-ascii"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>fsdevel</title>
<link rel="alternate" type="text/html" href="http://127.0.0.1:8080/fsdevel/"/>
<entry><author><name>A</name></author><title>[PATCH 1/2] x</title><updated>2026-11-25T13:40:32Z</updated>
<link href="http://127.0.0.1:8080/fsdevel/20261125.a%2Fb@x.org/"/><id>urn:uuid:1</id></entry>
<entry><title>Re: y</title><link href="http://127.0.0.1:8080/fsdevel/c&amp;d@x.org/"/></entry>
<entry><title>elsewhere</title><link href="http://other/list/e@x.org/"/></entry>
</feed>"#;
        let ids: Vec<String> = parse_atom(xml).unwrap().into_iter().map(|e| e.msgid).collect();
        assert_eq!(ids, ["20261125.a/b@x.org", "c&d@x.org", "e@x.org"]);
        assert_eq!(parse_atom(xml).unwrap()[0].updated, rfc3339_utc("2026-11-25T13:40:32Z"));
        assert_eq!(unescape("a%2Fb%"), "a/b%");
        assert_eq!(unescape(&escape_mid("x/y%z?#@q")), "x/y%z?#@q");
    }
    /// A new.atom written by Debian's public-inbox 1.9 for ids with characters it escapes:
    /// `'` and `&` as numeric entities (`&#39;`, `&#38;`), `<`, `"`, `/`, `%`, `?`, `#` as `%XX`.
    #[test]
    fn real_public_inbox_feed_decodes_entities_and_escapes() {
        let xml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/new.atom")).unwrap();
        let got = parse_atom(&xml).unwrap();
        let ids: Vec<&str> = got.iter().map(|e| e.msgid.as_str()).collect();
        assert_eq!(
            ids,
            [
                "20261130052242.yiFJ6dmLgAmNKlIVgqfTbbTkISg5bkT_5inBFAWyYFg@z",
                "sl/as%h?q#f@example.org",
                "caf\u{c3}\u{a9}@example.org",
                "x<y\"z@example.org",
                "a&b&amp;c@example.org",
                "it's-o'brien@example.org",
                "20261125100000.1-1-a@example.org",
            ]
        );
        assert_eq!(got[1].updated, Some(1_795_601_220), "2026-11-25T10:07:00Z");
        assert_eq!(utc_string(got[1].updated.unwrap()), "2026-11-25T10:07:00Z");
    }

    #[test]
    fn feeds_that_are_not_atom_are_errors() {
        assert!(matches!(parse_atom("<feed><entry>"), Err(AtomError::Xml(_))));
        assert!(
            matches!(parse_atom("<html><body>No results</body></html>"), Err(AtomError::NotAFeed(n)) if n == "html")
        );
        // No DTDs: no entity expansion.
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><feed><entry><link href="http://x/l/&b;/"/></entry></feed>"#;
        assert!(matches!(parse_atom(bomb), Err(AtomError::Xml(_))));
        assert_eq!(parse_atom("<feed/>").unwrap(), []);
    }

    #[test]
    fn utc_times() {
        for t in [0, 951_782_400, 1_795_601_220, 4_102_444_799, -86_400] {
            assert_eq!(rfc3339_utc(&utc_string(t)), Some(t), "{t}");
        }
        assert_eq!(rfc3339_utc("2026-11-25T11:07:00.5+01:00"), Some(1_795_601_220));
        assert_eq!(rfc3339_utc("2026-13-25T10:07:00Z"), None);
        assert_eq!(rfc3339_utc("2026-11-25T10:07:00"), None);
        assert_eq!(rfc3339_utc("２０２６-11-25T10:07:00Z"), None);
    }

    #[test]
    fn search_urls() {
        assert_eq!(received_url("http://h/l/", 10, 20, 0), "http://h/l/?q=rt:10..20&x=A");
        assert_eq!(received_url("http://h/l/", 10, 20, 200), "http://h/l/?q=rt:10..20&x=A&o=200");
    }

    /// XML-escapes `s` as a feed writer may: named, decimal or hex entities, or as is.
    fn xml_escape(s: &str, style: &[u8]) -> String {
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            let pick = style.get(i % style.len().max(1)).copied().unwrap_or(0) % 4;
            let named = match c {
                '&' => Some("&amp;"),
                '<' => Some("&lt;"),
                '>' => Some("&gt;"),
                '"' => Some("&quot;"),
                '\'' => Some("&apos;"),
                _ => None,
            };
            match (pick, named) {
                (0, Some(n)) => out.push_str(n),
                (1, _) => out.push_str(&format!("&#{};", c as u32)),
                (2, _) => out.push_str(&format!("&#x{:X};", c as u32)),
                (_, Some(_)) => out.push_str(&format!("&#{};", c as u32)),
                (_, None) => out.push(c),
            }
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any input: an error or entries, never a panic.
        #[test]
        fn never_panics(s in ".{0,400}", raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_atom(&s);
            let _ = parse_atom(&String::from_utf8_lossy(&raw));
            let _ = parse_atom(&format!("<feed><entry><link href=\"{s}\"/><updated>{s}</updated></entry></feed>"));
        }

        /// Every message id comes back exactly, however its link was escaped in the XML.
        #[test]
        fn ids_round_trip_xml_escaping(
            ids in proptest::collection::vec("[!-~\u{a1}-\u{167f}]{1,40}", 1..6),
            style in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..8),
            t in 0i64..4_102_444_800,
        ) {
            let mut xml = String::from("<?xml version=\"1.0\" encoding=\"us-ascii\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">");
            for id in &ids {
                let href = format!("http://127.0.0.1:8080/fsdevel/{}/", escape_mid(id));
                xml += &format!("<entry><title>{}</title><updated>{}</updated><link href=\"{}\"/></entry>",
                    xml_escape(id, &style), utc_string(t), xml_escape(&href, &style));
            }
            xml += "</feed>";
            let got = parse_atom(&xml).unwrap();
            let mut want: Vec<&String> = Vec::new();
            for id in &ids {
                if !want.contains(&id) {
                    want.push(id);
                }
            }
            proptest::prop_assert_eq!(got.iter().map(|e| &e.msgid).collect::<Vec<_>>(), want);
            proptest::prop_assert!(got.iter().all(|e| e.updated == Some(t)));
        }
    }
}
