//! `config/kbot.yaml`: what `kbot check` and `kbot serve` read. Every key is optional for
//! `check`; `serve` needs trees or inboxes to watch. Errors name the key and the problem.
//! `config/kbot.example.yaml` documents every key.

use serde::Deserialize;
use std::path::PathBuf;

pub const DEFAULT_LORE: &str = "https://lore.kernel.org/all/";
pub const ARCHES: [&str; 2] = ["x86_64", "arm64"];

#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Inbox base URL for `kbot check --msgid`.
    pub lore: Option<String>,
    /// Queue, reports and logs of the service (default: kbot's data directory).
    pub state_dir: Option<PathBuf>,
    /// Arches every job tests (default: both).
    pub arches: Option<Vec<String>>,
    #[serde(default)]
    pub trees: Vec<TreeConfig>,
    #[serde(default)]
    pub inboxes: Vec<InboxConfig>,
    pub mail: Option<MailConfig>,
    pub web: Option<WebConfig>,
    /// Jobs run at the same time (default: 1; each uses all cores for make).
    pub workers: Option<u32>,
    /// Hard limit of one job (default: 2h).
    pub job_timeout: Option<Duration>,
    /// How often trees and inboxes are polled (default: 5m).
    pub poll_interval: Option<Duration>,
    /// How long a series waits after its newest message for the rest of its thread (default: 10m).
    pub grace: Option<Duration>,
    /// LTP checkout or source tarball: its inotify/fanotify tests run in every boot.
    pub ltp: Option<PathBuf>,
    /// Where jobs run: `local` child processes (the default) or a Slurm cluster.
    #[serde(default)]
    pub executor: Executor,
}

/// Where `kbot serve` runs its jobs: `executor: local` or `executor: {slurm: {...}}`.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Executor {
    /// `kbot check` child processes of the service, on this machine.
    #[default]
    Local,
    /// One Slurm job per arch on an existing cluster (found as Slurm's own commands find it:
    /// `SLURM_CONF`, else `/etc/slurm/slurm.conf`).
    Slurm(SlurmConfig),
}

impl<'de> Deserialize<'de> for Executor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const WHAT: &str = "`local` or a map `slurm: {partition, shared_dir, constraints}`";
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Executor;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(WHAT)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Executor, E> {
                match s {
                    "local" => Ok(Executor::Local),
                    "slurm" => Err(E::custom("slurm needs its settings: `slurm: {partition: ..., shared_dir: ...}`")),
                    _ => Err(E::custom(format!("unknown executor {s:?}; expected {WHAT}"))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Executor, A::Error> {
                let Some(k) = m.next_key::<String>()? else {
                    return Err(serde::de::Error::custom(format!("empty; expected {WHAT}")));
                };
                let e = match k.as_str() {
                    "local" => {
                        m.next_value::<serde::de::IgnoredAny>()?;
                        Executor::Local
                    }
                    "slurm" => Executor::Slurm(m.next_value()?),
                    _ => return Err(serde::de::Error::custom(format!("unknown executor {k:?}; expected {WHAT}"))),
                };
                if m.next_key::<String>()?.is_some() {
                    return Err(serde::de::Error::custom("name one executor"));
                }
                Ok(e)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// The partition the jobs are submitted to (`sbatch --partition`).
    pub partition: String,
    /// Job directories every node sees (NFS in production): input in, results and logs out.
    pub shared_dir: PathBuf,
    /// Per arch, the node features a job of that arch needs (`sbatch --constraint`).
    #[serde(default)]
    pub constraints: std::collections::BTreeMap<String, String>,
    /// Submissions of one arch's job before the kbot job ends as an error, when Slurm lost it
    /// or it ended without a result (default 3).
    pub attempts: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TreeConfig {
    pub name: String,
    /// A git repository; omitted for `default`: the tree `kbot setup` prepared.
    pub path: Option<PathBuf>,
    /// CI mode: new commits on these branches are tested.
    #[serde(default)]
    pub branches: Vec<String>,
    /// The tree is on GitHub: results go there too (commit status and PR comment).
    pub github: Option<GithubConfig>,
    /// How public mail names the tree: its git URL and branch (e.g.
    /// `https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git master`). Mail
    /// never shows `path`; without `url` it shows only the tree's name.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// `owner/name`.
    pub repo: String,
    /// The environment variable holding the token (never the token itself).
    pub token_env: String,
    /// REST API base (GitHub Enterprise: `https://host/api/v3`). Default: https://api.github.com
    pub api: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    pub name: String,
    /// A public-inbox over HTTP (its Atom feed `new.atom` is polled).
    pub lore: Option<String>,
    /// A public-inbox v2 mirror on disk.
    pub git: Option<PathBuf>,
    /// The tree series of this list apply to.
    pub tree: String,
    /// Ignore older messages (RFC 3339). Default: the service's first start.
    pub since: Option<String>,
    /// Also mail a short note when a series of this list does not apply (default: no mail;
    /// the run page has it).
    #[serde(default)]
    pub mail_apply_failed: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// `smtp://host:port` (plain, for a local MTA), `smtp+starttls://host:port` (STARTTLS,
    /// required) or `smtps://host:port` (TLS from the start).
    pub smtp: String,
    pub from: String,
    /// Environment variables holding SMTP credentials (never the secrets themselves). Both or
    /// neither; a variable named here but not set stops `kbot serve` at startup.
    pub user_env: Option<String>,
    pub password_env: Option<String>,
    /// PEM file with the certificates the server's must chain to, instead of the built-in
    /// public roots (a private CA, or a self-signed server). Only with TLS.
    pub ca_file: Option<PathBuf>,
    /// Also mail a short note for series that pass (default: no mail).
    #[serde(default)]
    pub send_clean: bool,
    /// Extra Cc on every report (e.g. an archive list).
    #[serde(default)]
    pub cc: Vec<String>,
    /// Cc the maintainers and lists `scripts/get_maintainer.pl` of the base tree names for the
    /// first bad patch (default: true).
    #[serde(default = "yes")]
    pub cc_maintainers: bool,
    /// A follow-up revision of a reported series in which a regression is gone gets a short
    /// "no longer reproduces" note (default: true).
    #[serde(default = "yes")]
    pub send_fixed: bool,
    /// Addresses that never get mail from kbot (besides those who sent `#kbot stop`).
    #[serde(default)]
    pub optout: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    pub listen: Option<String>,
    /// Public base URL used in mails and `Closes:` links.
    pub url: Option<String>,
}

/// A duration written as seconds (`90`) or with a unit (`30s`, `10m`, `2h`, `1d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub std::time::Duration);

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Duration(std::time::Duration::from_secs(n))),
            Raw::S(s) => parse_duration(&s).map(Duration).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("expected a duration like 90, 30s, 10m or 2h, not {0:?}")]
    NotADuration(String),
    #[error("unknown unit {unit:?} in {text:?} (use s, m, h or d)")]
    UnknownUnit { unit: String, text: String },
    #[error("{0:?} is too long")]
    TooLong(String),
}

/// Why a config is not accepted: one line naming the key and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not YAML, or not the shape of a config (the parser's message, on one line).
    #[error("{0}")]
    Syntax(String),
    /// A value that is not valid for its key.
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

fn bad(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), problem: problem.into() }
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, DurationError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| DurationError::NotADuration(s.to_string()))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        u => return Err(DurationError::UnknownUnit { unit: u.to_string(), text: s.to_string() }),
    };
    n.checked_mul(mult).map(std::time::Duration::from_secs).ok_or_else(|| DurationError::TooLong(s.to_string()))
}

/// Parses and checks a config. `Err` is one line naming the key and the problem.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let c: Config = serde_norway::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string().replace('\n', " ")))?;
    validate(&c)?;
    Ok(c)
}

fn http_url(key: &str, u: &str) -> Result<(), ConfigError> {
    if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 10 || u.contains(char::is_whitespace) {
        return Err(bad(key, format!("expected an http(s) URL, not {u:?}")));
    }
    Ok(())
}

fn validate(c: &Config) -> Result<(), ConfigError> {
    if let Some(l) = &c.lore {
        http_url("lore", l)?;
    }
    if let Some(a) = &c.arches {
        if a.is_empty() {
            return Err(bad("arches", "name at least one of x86_64, arm64"));
        }
        if let Some(x) = a.iter().find(|x| !ARCHES.contains(&x.as_str())) {
            return Err(bad("arches", format!("unknown architecture {x:?}; use x86_64 and/or arm64")));
        }
    }
    for (i, t) in c.trees.iter().enumerate() {
        if !valid_name(&t.name) {
            return Err(bad(
                format!("trees[{i}].name"),
                format!("{:?} is not a name (letters, digits, - and _)", t.name),
            ));
        }
        if c.trees[..i].iter().any(|o| o.name == t.name) {
            return Err(bad(format!("trees[{i}].name"), format!("{:?} is used twice", t.name)));
        }
        if t.path.is_none() && t.name != "default" {
            return Err(bad(format!("trees[{i}].path"), "missing (only the tree named default may omit it)"));
        }
        if let Some(u) = &t.url {
            if u.trim().is_empty() || u.len() > 300 || u.contains(char::is_control) || u.starts_with(['/', '.', '~']) {
                return Err(bad(
                    format!("trees[{i}].url"),
                    format!("expected a public git URL and branch (never a path on this host), not {u:?}"),
                ));
            }
        }
        if let Some(b) = t.branches.iter().find(|b| b.is_empty() || b.starts_with('-') || b.contains("..")) {
            return Err(bad(format!("trees[{i}].branches"), format!("{b:?} is not a branch name")));
        }
        if let Some(g) = &t.github {
            let parts: Vec<&str> = g.repo.split('/').collect();
            if parts.len() != 2 || !parts.iter().all(|p| valid_name(&p.replace('.', "_"))) {
                return Err(bad(format!("trees[{i}].github.repo"), format!("expected owner/name, not {:?}", g.repo)));
            }
            if !valid_name(&g.token_env) {
                return Err(bad(
                    format!("trees[{i}].github.token_env"),
                    format!("expected an environment variable name, not {:?}", g.token_env),
                ));
            }
            if let Some(a) = &g.api {
                http_url(&format!("trees[{i}].github.api"), a)?;
            }
        }
    }
    for (i, b) in c.inboxes.iter().enumerate() {
        if !valid_name(&b.name) {
            return Err(bad(
                format!("inboxes[{i}].name"),
                format!("{:?} is not a name (letters, digits, - and _)", b.name),
            ));
        }
        if c.inboxes[..i].iter().any(|o| o.name == b.name) {
            return Err(bad(format!("inboxes[{i}].name"), format!("{:?} is used twice", b.name)));
        }
        match (&b.lore, &b.git) {
            (Some(l), None) => http_url(&format!("inboxes[{i}].lore"), l)?,
            (None, Some(_)) => {}
            _ => {
                return Err(bad(
                    format!("inboxes[{i}]"),
                    "give exactly one of lore (URL) or git (a public-inbox mirror)",
                ))
            }
        }
        let known = c.trees.iter().any(|t| t.name == b.tree) || (b.tree == "default" && c.trees.is_empty());
        if !known {
            return Err(bad(format!("inboxes[{i}].tree"), format!("no tree named {:?} in trees", b.tree)));
        }
        if let Some(s) = &b.since {
            parse_rfc3339(s).ok_or_else(|| {
                bad(format!("inboxes[{i}].since"), format!("expected a time like 2026-11-01T00:00:00Z, not {s:?}"))
            })?;
        }
    }
    if let Some(m) = &c.mail {
        let Some((tls, host)) = smtp_host(&m.smtp) else {
            return Err(bad(
                "mail.smtp",
                format!("expected smtp://host:port, smtp+starttls://host:port or smtps://host:port, not {:?}", m.smtp),
            ));
        };
        for (k, v) in [("mail.user_env", &m.user_env), ("mail.password_env", &m.password_env)] {
            if let Some(v) = v {
                if !env_name(v) {
                    return Err(bad(k, format!("expected an environment variable name, not {v:?}")));
                }
            }
        }
        match (&m.user_env, &m.password_env) {
            (Some(_), None) => return Err(bad("mail.password_env", "missing (user_env is set; give both or neither)")),
            (None, Some(_)) => return Err(bad("mail.user_env", "missing (password_env is set; give both or neither)")),
            (Some(_), Some(_)) if !tls && !loopback(host) => {
                return Err(bad(
                    "mail.smtp",
                    format!(
                        "{:?} is plain SMTP to another host: the password would cross the network unencrypted; \
                         use smtp+starttls:// or smtps://",
                        m.smtp
                    ),
                ))
            }
            _ => {}
        }
        if m.ca_file.is_some() && !tls {
            return Err(bad("mail.ca_file", format!("only used with TLS, and {:?} is plain SMTP", m.smtp)));
        }
        if !looks_like_mailbox(&m.from) {
            return Err(bad("mail.from", format!("expected \"Name <addr@host>\" or addr@host, not {:?}", m.from)));
        }
        if let Some(x) = m.cc.iter().find(|x| !looks_like_mailbox(x)) {
            return Err(bad("mail.cc", format!("{x:?} is not an address")));
        }
        if let Some(x) = m.optout.iter().find(|x| !looks_like_mailbox(x)) {
            return Err(bad("mail.optout", format!("{x:?} is not an address")));
        }
    }
    if let Some(w) = &c.web {
        if let Some(l) = &w.listen {
            l.parse::<std::net::SocketAddr>()
                .map_err(|_| bad("web.listen", format!("expected host:port like 127.0.0.1:8080, not {l:?}")))?;
        }
        if let Some(u) = &w.url {
            http_url("web.url", u)?;
        }
    }
    if let Executor::Slurm(s) = &c.executor {
        if !valid_name(&s.partition) {
            return Err(bad(
                "executor.slurm.partition",
                format!("{:?} is not a partition name (letters, digits, - and _)", s.partition),
            ));
        }
        if !s.shared_dir.is_absolute() {
            return Err(bad(
                "executor.slurm.shared_dir",
                format!("{:?} is not an absolute path (every node must find it)", s.shared_dir.display().to_string()),
            ));
        }
        for (arch, c) in &s.constraints {
            if !ARCHES.contains(&arch.as_str()) {
                return Err(bad(
                    format!("executor.slurm.constraints.{arch}"),
                    "unknown architecture; use x86_64 and/or arm64",
                ));
            }
            if c.is_empty() || c.contains(|ch: char| ch.is_whitespace() || ch.is_control()) {
                return Err(bad(
                    format!("executor.slurm.constraints.{arch}"),
                    format!("{c:?} is not a Slurm constraint (node features like x86_64 or kvm&arm64)"),
                ));
            }
        }
        if s.attempts == Some(0) {
            return Err(bad("executor.slurm.attempts", "must be at least 1"));
        }
    }
    if c.workers == Some(0) {
        return Err(bad("workers", "must be at least 1"));
    }
    for (k, d) in [("job_timeout", c.job_timeout), ("poll_interval", c.poll_interval)] {
        if d.is_some_and(|d| d.0.is_zero()) {
            return Err(bad(k, "must be more than 0"));
        }
    }
    Ok(())
}

/// Whether `mail.smtp` uses TLS (STARTTLS or TLS from the start), and its host; `None` when it
/// is not an SMTP URL kbot can use.
pub fn smtp_host(url: &str) -> Option<(bool, &str)> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("smtp://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("smtp+starttls://").or_else(|| url.strip_prefix("smtps://")) {
        (true, r)
    } else {
        return None;
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "25"));
    (!host.is_empty() && !host.contains(['/', '@', '?', '#']) && !host.contains(char::is_whitespace))
        .then_some(())
        .and(port.parse::<u16>().ok())
        .map(|_| (tls, host))
}

fn loopback(host: &str) -> bool {
    host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

fn env_name(s: &str) -> bool {
    s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why `kbot serve` cannot use its mail settings in this environment (checked at startup).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailEnvError {
    #[error("mail.{key}: the environment variable {var} is not set (kbot serve reads the SMTP {what} from it)")]
    Unset { key: &'static str, var: String, what: &'static str },
    #[error("mail.{key}: the environment variable {var} is empty")]
    Empty { key: &'static str, var: String },
    #[error("mail.ca_file: {path}: {problem}")]
    CaFile { path: String, problem: String },
}

impl MailConfig {
    /// The SMTP user and password from the environment variables `user_env`/`password_env`
    /// (`env` looks a variable up: `|v| std::env::var(v).ok()`). A variable named but not set
    /// is an error, never a silent send without authentication.
    pub fn credentials(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<(String, String)>, MailEnvError> {
        let get =
            |key: &'static str, var: &Option<String>, what: &'static str| -> Result<Option<String>, MailEnvError> {
                let Some(var) = var else { return Ok(None) };
                match env(var) {
                    None => Err(MailEnvError::Unset { key, var: var.clone(), what }),
                    Some(v) if v.is_empty() => Err(MailEnvError::Empty { key, var: var.clone() }),
                    Some(v) => Ok(Some(v)),
                }
            };
        let user = get("user_env", &self.user_env, "user name")?;
        let password = get("password_env", &self.password_env, "password")?;
        Ok(user.zip(password))
    }

    /// The certificates of `ca_file` (PEM), read and checked to hold at least one.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, MailEnvError> {
        let Some(p) = &self.ca_file else { return Ok(None) };
        let fail = |problem: String| MailEnvError::CaFile { path: p.display().to_string(), problem };
        let pem = std::fs::read(p).map_err(|e| fail(e.to_string()))?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(fail("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into()));
        }
        Ok(Some(pem))
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A single address, bare or `Name <addr>`, without line breaks (header injection).
pub fn looks_like_mailbox(s: &str) -> bool {
    if s.contains(['\r', '\n', '\0']) || s.len() > 320 {
        return false;
    }
    let addr = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b && b == s.len() - 1 => &s[a + 1..b],
        (None, None) => s.trim(),
        _ => return false,
    };
    let Some((local, domain)) = addr.split_once('@') else { return false };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !addr.contains(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '<' || c == '>')
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-11-01T00:00:00Z`, or with `+hh:mm`).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) && &r[3..4] == ":" => {
            let v = r[1..3].parse::<i64>().ok()? * 3600 + r[4..6].parse::<i64>().ok()? * 60;
            if r.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests;
