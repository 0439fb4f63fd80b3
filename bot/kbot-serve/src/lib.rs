//! `kbot serve`: the mailing-list reply bot and the CI service on kernel trees. One loop
//! (tokio, for the timers and signals) that
//!
//! 1. polls each inbox (lore's `new.atom` or a public-inbox v2 mirror) for new messages,
//!    waits out each thread's grace period, and queues every complete (series, revision) once;
//! 2. polls each configured branch and queues the commits since the last tested tip as a range
//!    (after a force-push: since the merge base);
//! 3. runs queued jobs as `kbot check` child processes (the same engine, sandboxed), at most
//!    `workers` at once, each under `job_timeout`;
//! 4. queues one report mail per regression, in the same transaction that finishes the job,
//!    and sends the outbox by SMTP, retrying later when the server is unreachable.
//!
//! All state is in `state_dir/queue.db` ([`kbot_queue`]): killed at any point and restarted,
//! the service resumes unfinished jobs and never mails a report twice. SIGTERM drains: no new
//! jobs, running ones finish, mail goes out, then it exits.

pub mod commands;
pub mod followups;
pub mod recipients;

mod executor;

use executor::{SlurmExec, Work};
use kbot_config::Config;
use kbot_queue::{now, Job, JobDir, JobKind, JobState, NewMail, Queue, QueueError};
use kbot_report::short_commit;
use kbot_runner::{write_atomic, Fail, Home, Lock};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long an incomplete thread is looked at before it is dropped.
const INCOMPLETE_GIVE_UP: i64 = 24 * 3600;
/// SMTP attempts before a mail is marked failed.
const MAIL_ATTEMPTS: i64 = 12;
/// Tries to fetch a thread, or to backfill a gap of a feed, before it is given up (listed).
const FETCH_ATTEMPTS: i64 = 12;

/// The pause after the `n`th failed fetch: 2 min, doubling, at most 64 min (12 tries: ~7 h).
fn backoff(n: i64) -> i64 {
    60 << n.clamp(1, 6)
}

pub struct Service {
    cfg: Config,
    home: Home,
    state: PathBuf,
    q: Queue,
    arches: Vec<String>,
    grace: i64,
    since_default: i64,
    running: Vec<Running>,
    log_quiet: bool,
    /// The sandbox get_maintainer.pl runs in (set by [`run`]; none: no maintainers on Cc).
    pub sandbox: Option<kbot_sandbox::Policy>,
    /// Threads waiting, by (inbox, message id): what they are and until when (`None`: for
    /// missing patches), as last said in the log.
    waiting: BTreeMap<(String, String), (String, Option<i64>)>,
    /// `executor: slurm`: the cluster the jobs run on (else child processes).
    slurm: Option<SlurmExec>,
}

struct Running {
    job: Job,
    work: Work,
    started: Instant,
    dir: JobDir,
}

/// What can go wrong while polling an inbox or a branch (said, and tried again next poll).
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Inbox(#[from] kbot_inbox::InboxError),
    #[error(transparent)]
    Feed(#[from] kbot_lore::FeedError),
    #[error(transparent)]
    Fetch(#[from] kbot_lore::FetchError),
    #[error("{0}")]
    Other(String),
}

impl From<String> for PollError {
    fn from(s: String) -> PollError {
        PollError::Other(s)
    }
}

/// A service error that stops the loop: the environment is not as it must be.
fn env(e: impl std::fmt::Display) -> Fail {
    Fail::env(e.to_string())
}

/// What to do with a thread seen in an inbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Enqueue,
    /// Wait: until this time (the grace after the thread's newest mail), or, `None`, for the
    /// rest of an incomplete series.
    Wait(Option<i64>),
    Drop(String),
}

/// Pure: the fate of a thread given what is known about it now. The grace is counted from
/// the thread's newest mail (a date in the future counts as now; a thread without dates
/// from when it was first seen), not from when the service first saw it.
pub fn decide(
    complete: bool,
    known: bool,
    newest_date: Option<i64>,
    since: i64,
    first_seen: i64,
    now: i64,
    grace: i64,
) -> Decision {
    if known {
        return Decision::Drop("already queued".into());
    }
    if newest_date.is_some_and(|d| d < since) {
        return Decision::Drop("older than the inbox's since".into());
    }
    if !complete {
        if now - first_seen > INCOMPLETE_GIVE_UP {
            return Decision::Drop("still incomplete after a day".into());
        }
        return Decision::Wait(None);
    }
    let newest = newest_date.map_or(first_seen, |d| d.min(now));
    if now - newest < grace {
        return Decision::Wait(Some(newest + grace));
    }
    Decision::Enqueue
}

/// Where a tested branch goes on from: the last tested tip when the branch only moved
/// forward, else (a force-push) the merge base of the old and new tips.
pub fn range_base(tree: &Path, last: &str, tip: &str) -> Option<String> {
    use kbot_kernel::git::git;
    if git(tree, &["merge-base", "--is-ancestor", last, tip]).is_ok() {
        return Some(last.to_string());
    }
    git(tree, &["merge-base", last, tip]).ok().filter(|s| !s.is_empty())
}

/// Job keys: what makes a job unique, and what can be read back from it.
fn series_key(inbox: &str, msgid: &str, version: u32) -> String {
    format!("series:{inbox}:{msgid}:v{version}")
}

/// The series' message id of a `series_key` (a message id may hold ':').
fn series_msgid<'a>(key: &'a str, inbox: &str) -> &'a str {
    let rest = key.strip_prefix(&format!("series:{inbox}:")).unwrap_or("");
    rest.rsplit_once(":v").map_or(rest, |(m, _)| m)
}

fn range_key(tree: &str, branch: &str, base: &str, tip: &str) -> String {
    format!("range:{tree}:{branch}:{base}..{tip}")
}

/// The branch of a `range_key` (git branch names hold no ':').
fn range_branch(key: &str) -> &str {
    key.split(':').nth(2).unwrap_or("")
}

/// An inbox URL with its trailing slash (threads and the feed hang below it).
fn inbox_base(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

fn mail_epoch(date: &str) -> Option<i64> {
    mailparse::dateparse(date).ok()
}

impl Service {
    pub fn open(cfg: Config, home: Home, quiet: bool) -> Result<(Service, Lock), Fail> {
        let state = state_dir(&cfg, &home);
        std::fs::create_dir_all(JobDir::root(&state))
            .map_err(|e| Fail::env(format!("state_dir {}: {e}", state.display())))?;
        let lock = Lock::try_take(&state.join("serve.lock"))
            .map_err(|e| Fail::env(format!("state_dir {}: {e}", state.display())))?
            .map_err(|_| {
                Fail::env(format!(
                    "another kbot serve is using state_dir {}; stop it or give this one its own state_dir",
                    state.display()
                ))
            })?;
        let q = Queue::open(&kbot_queue::queue_path(&state)).map_err(env)?;
        let first = match q.cursor("first_start").map_err(env)? {
            Some(v) => v.parse().unwrap_or_else(|_| now()),
            None => {
                let t = now();
                q.set_cursor("first_start", &t.to_string()).map_err(env)?;
                t
            }
        };
        let arches = cfg.arches.clone().unwrap_or_else(|| vec!["x86_64".into(), "arm64".into()]);
        let grace = cfg.grace.map_or(600, |d| d.0.as_secs() as i64);
        let slurm = match &cfg.executor {
            kbot_config::Executor::Local => None,
            kbot_config::Executor::Slurm(s) => {
                let timeout = cfg.job_timeout.map_or(Duration::from_secs(7200), |d| d.0);
                Some(SlurmExec::open(s, timeout).map_err(Fail::env)?)
            }
        };
        let running = Vec::new();
        Ok((
            Service {
                cfg,
                home,
                state,
                q,
                arches,
                grace,
                since_default: first,
                running,
                log_quiet: quiet,
                sandbox: None,
                waiting: BTreeMap::new(),
                slurm,
            },
            lock,
        ))
    }

    fn say(&self, what: &str) {
        if !self.log_quiet {
            eprintln!("[serve {}] {what}", now());
        }
    }

    fn tree_path(&self, name: &str) -> Option<PathBuf> {
        match self.cfg.trees.iter().find(|t| t.name == name) {
            Some(t) => Some(t.path.clone().unwrap_or_else(|| self.home.default_tree())),
            None if name == "default" => Some(self.home.default_tree()),
            None => None,
        }
    }

    /// After a crash: requeue running jobs; mails caught mid-send become uncertain.
    pub fn recover(&self) -> Result<(), Fail> {
        let (j, m) = self.q.recover().map_err(env)?;
        if j + m > 0 {
            self.say(&format!("recovered: {j} job(s) requeued, {m} mail(s) uncertain (not resent)"));
        }
        Ok(())
    }

    /// Polls every inbox and branch once; queues what is ready. Lore is read through the
    /// async client, so signals and the dashboard are served while a slow inbox answers.
    pub async fn poll(&mut self) {
        for i in 0..self.cfg.inboxes.len() {
            if let Err(e) = self.poll_inbox(i).await {
                self.say(&format!("inbox {}: {e} (will retry)", self.cfg.inboxes[i].name));
            }
        }
        for t in self.cfg.trees.clone() {
            for b in &t.branches {
                if let Err(e) = self.poll_branch(&t.name, b) {
                    self.say(&format!("tree {} branch {b}: {e} (will retry)", t.name));
                }
            }
        }
    }

    /// An HTTP client for lore whose requests end within `timeout`.
    fn lore(&self, timeout: Duration) -> Result<kbot_lore::nonblocking::Client, PollError> {
        Ok(kbot_lore::nonblocking::Client::new(timeout)?)
    }

    async fn poll_inbox(&mut self, i: usize) -> Result<(), PollError> {
        let ib = self.cfg.inboxes[i].clone();
        let since = ib.since.as_deref().and_then(kbot_config::parse_rfc3339).unwrap_or(self.since_default);
        // New message ids, and a way to fetch a thread. A git mirror yields every new commit,
        // so nothing scrolls past it; a feed holds only the newest messages (gaps below).
        let index = match &ib.git {
            Some(dir) => {
                let (ix, u) = kbot_inbox::open_indexed(dir, &self.state.join(format!("inbox-{}.idx", ib.name)))?;
                for id in &u.new_ids {
                    self.q.pending_add(&ib.name, id)?;
                }
                Some((ix, dir.clone()))
            }
            None => None,
        };
        if let Some(base) = &ib.lore {
            let base = inbox_base(base);
            self.read_feed(&ib.name, &base).await?;
            self.backfill(&ib.name, &base).await?;
        }
        let mut covered: HashSet<String> = HashSet::new();
        for (msgid, first_seen) in self.q.pending(&ib.name)? {
            if covered.contains(&msgid) {
                self.q.pending_remove(&ib.name, &msgid)?;
                continue;
            }
            let mbox = match (&index, &ib.lore) {
                (Some((ix, dir)), _) => match ix.thread_mbox(dir, &msgid) {
                    Ok(m) => m,
                    Err(e) => {
                        self.thread_failed(&ib.name, &msgid, &e.to_string())?;
                        continue;
                    }
                },
                (None, Some(base)) => {
                    let t = kbot_lore::Target { base: inbox_base(base), msgid: msgid.clone() };
                    match self.lore(Duration::from_secs(30))?.fetch_thread(&t, 3, 100 << 20).await {
                        Ok(m) => m,
                        Err(e) => {
                            // Not found, a server error, a bad gzip: this thread waits and is
                            // tried again later. Unreachable: so is every other; next poll.
                            self.thread_failed(&ib.name, &msgid, &e.to_string())?;
                            if matches!(e, kbot_lore::FetchError::Unreachable { .. }) {
                                break;
                            }
                            continue;
                        }
                    }
                }
                _ => unreachable!("config validation: one of lore or git"),
            };
            let mails = match kbot_mbox::parse_mbox(&mbox) {
                Ok(m) => m,
                Err(e) => {
                    let why = format!("the thread is not a readable mbox: {e}");
                    self.say(&format!("inbox {}: thread <{msgid}>: {why}; given up", ib.name));
                    self.q.lose(&ib.name, &format!("thread <{msgid}>"), &why)?;
                    self.q.pending_remove(&ib.name, &msgid)?;
                    continue;
                }
            };
            covered.extend(mails.iter().map(|m| m.message_id.clone()));
            // `#kbot` commands in replies, before the series' fate (a command is no patch).
            self.handle_commands(&ib.name, &mails)?;
            let series = match kbot_series::assemble(&mails, None) {
                Ok(s) => s,
                Err(_) => {
                    // A thread without patches (a discussion): nothing to test.
                    self.q.pending_remove(&ib.name, &msgid)?;
                    continue;
                }
            };
            let key = series_key(&ib.name, &series.message_id, series.version);
            let newest = mails.iter().filter_map(|m| m.date.as_deref().and_then(mail_epoch)).max();
            let d =
                decide(series.missing.is_empty(), self.q.has_job(&key)?, newest, since, first_seen, now(), self.grace);
            let wkey = (ib.name.clone(), msgid.clone());
            match d {
                Decision::Wait(until) => {
                    let what = format!("{:?} v{}", series.subject, series.version);
                    if self.waiting.get(&wkey) != Some(&(what.clone(), until)) {
                        self.say(&match until {
                            Some(t) => format!(
                                "{}: {what}: waiting until {} (grace {} s after its newest mail)",
                                ib.name,
                                kbot_lore::utc_string(t),
                                self.grace
                            ),
                            None => format!(
                                "{}: {what}: waiting for patch(es) {:?} (given up a day after first seen)",
                                ib.name, series.missing
                            ),
                        });
                        self.waiting.insert(wkey, (what, until));
                    }
                }
                Decision::Drop(why) => {
                    self.waiting.remove(&wkey);
                    if why != "already queued" {
                        self.say(&format!("{}: {:?} v{}: not queued: {why}", ib.name, series.subject, series.version));
                    }
                    self.q.pending_remove(&ib.name, &msgid)?;
                }
                Decision::Enqueue => {
                    let file = JobDir::root(&self.state)
                        .join(format!("series-{:016x}.mbox", kbot_kernel::fnv64(key.as_bytes())));
                    write_atomic(&file, &mbox).map_err(|e| format!("{}: {e}", file.display()))?;
                    let title = format!("[v{}] {} ({} patches)", series.version, series.subject, series.total);
                    if let Some(id) = self.q.enqueue(
                        &key,
                        JobKind::Series,
                        &ib.name,
                        &title,
                        &file.display().to_string(),
                        &ib.tree,
                    )? {
                        self.say(&format!("job {id} queued: {}: {title}", ib.name));
                        let ids: Vec<String> = mails.iter().map(|m| m.message_id.clone()).collect();
                        self.q.track(id, &ids)?;
                    }
                    self.waiting.remove(&wkey);
                    self.q.pending_remove(&ib.name, &msgid)?;
                }
            }
        }
        Ok(())
    }

    /// A pending thread that could not be fetched: said, and tried again with a growing pause
    /// (2 min to 1 h); after `FETCH_ATTEMPTS` tries given up, said and listed as lost.
    fn thread_failed(&self, inbox: &str, msgid: &str, error: &str) -> Result<(), PollError> {
        let n = self.q.pending_failed(inbox, msgid, error, |n| now() + backoff(n))?;
        if n >= FETCH_ATTEMPTS {
            self.say(&format!("inbox {inbox}: thread <{msgid}>: {error}; given up after {n} tries"));
            self.q.lose(inbox, &format!("thread <{msgid}>"), &format!("{error} ({n} tries)"))?;
            self.q.pending_remove(inbox, msgid)?;
        } else {
            self.say(&format!(
                "inbox {inbox}: thread <{msgid}>: {error}; try {n} of {FETCH_ATTEMPTS}, next in {} s",
                backoff(n)
            ));
        }
        Ok(())
    }

    /// Reads the inbox's `new.atom`: every message not in the previous feed is a pending
    /// thread. When none of the previous feed is left in it, more arrived between two polls
    /// than the feed holds: the messages received between the newest of then and the oldest
    /// of now are a gap, recorded before the feed is, and backfilled.
    async fn read_feed(&self, inbox: &str, base: &str) -> Result<(), PollError> {
        let key = format!("atom-feed:{inbox}");
        let prev: Vec<(String, Option<i64>)> = match self.q.cursor(&key)? {
            Some(v) => {
                v.lines().filter_map(|l| l.split_once('\t')).map(|(t, id)| (id.to_string(), t.parse().ok())).collect()
            }
            // A service from before the feed times: the ids it saw.
            None => self
                .q
                .cursor(&format!("atom-seen:{inbox}"))?
                .unwrap_or_default()
                .lines()
                .map(|id| (id.to_string(), None))
                .collect(),
        };
        let seen: HashSet<&str> = prev.iter().map(|(id, _)| id.as_str()).collect();
        let feed = self.lore(Duration::from_secs(30))?.fetch_new(base).await?;
        for e in &feed {
            if !seen.contains(e.msgid.as_str()) {
                self.q.pending_add(inbox, &e.msgid)?;
            }
        }
        if !prev.is_empty() && !feed.is_empty() && !feed.iter().any(|e| seen.contains(e.msgid.as_str())) {
            let low = prev.iter().max_by_key(|(_, t)| *t).expect("not empty");
            let high = feed.iter().min_by_key(|e| e.updated).expect("not empty");
            match (low.1, high.updated) {
                (Some(a), Some(b)) => {
                    let (from, to) = (a.min(b), a.max(b));
                    self.q.gap_add(inbox, from, to, &low.0, &high.msgid)?;
                    self.say(&format!(
                        "inbox {inbox}: more than the feed's {} messages arrived since the last poll; backfilling those received {}..{} through the inbox's search",
                        feed.len(),
                        kbot_lore::utc_string(from),
                        kbot_lore::utc_string(to)
                    ));
                }
                _ => {
                    let why = "the feed gives no times, so the range cannot be searched";
                    let what = format!("messages between <{}> and <{}>", low.0, high.msgid);
                    self.say(&format!("inbox {inbox}: the feed scrolled past {what}; {why}; given up"));
                    self.q.lose(inbox, &what, why)?;
                }
            }
        }
        let cursor: Vec<String> =
            feed.iter().map(|e| format!("{}\t{}", e.updated.map_or("-".into(), |t| t.to_string()), e.msgid)).collect();
        self.q.set_cursor(&key, &cursor.join("\n"))?;
        Ok(())
    }

    /// Backfills the inbox's gaps whose time has come through its search (`rt:` over the
    /// gap, as Atom). A gap is closed once the search returned both of its ends (then the
    /// index holds all between); else it is tried again later, and given up after
    /// `FETCH_ATTEMPTS` tries, said and listed as lost.
    async fn backfill(&self, inbox: &str, base: &str) -> Result<(), PollError> {
        for g in self.q.gaps(Some(inbox), true)? {
            let range = format!("{}..{}", kbot_lore::utc_string(g.from_ts), kbot_lore::utc_string(g.to_ts));
            let error = match self.lore(Duration::from_secs(60))?.fetch_received(base, g.from_ts, g.to_ts, 50).await {
                Ok(found) => {
                    let mut added = 0;
                    for e in &found {
                        if e.msgid != g.low && e.msgid != g.high {
                            self.q.pending_add(inbox, &e.msgid)?;
                            added += 1;
                        }
                    }
                    let has = |id: &str| found.iter().any(|e| e.msgid == id);
                    if has(&g.low) && has(&g.high) {
                        self.q.gap_remove(g.id)?;
                        self.say(&format!("inbox {inbox}: backfilled {added} message(s) received {range}"));
                        continue;
                    }
                    format!(
                        "the search for {range} returned {} message(s) but not <{}> (the search index may be behind)",
                        found.len(),
                        if has(&g.low) { &g.high } else { &g.low }
                    )
                }
                Err(e) => e.to_string(),
            };
            let n = g.attempts + 1;
            if n >= FETCH_ATTEMPTS {
                self.say(&format!("inbox {inbox}: messages received {range}: {error}; given up after {n} tries"));
                self.q.lose(inbox, &format!("messages received {range}"), &format!("{error} ({n} tries)"))?;
                self.q.gap_remove(g.id)?;
            } else {
                self.q.gap_failed(g.id, &error, now() + backoff(n))?;
                self.say(&format!(
                    "inbox {inbox}: messages received {range} not backfilled: {error}; try {n} of {FETCH_ATTEMPTS}, next in {} s",
                    backoff(n)
                ));
            }
        }
        Ok(())
    }

    fn poll_branch(&mut self, tree: &str, branch: &str) -> Result<(), PollError> {
        let path = self.tree_path(tree).ok_or_else(|| PollError::Other("no such tree".into()))?;
        let repo = kbot_kernel::git::Tree::open(&path).map_err(|e| e.to_string())?;
        let tip = repo
            .resolve(&format!("refs/heads/{branch}"))
            .or_else(|| repo.resolve(branch))
            .ok_or_else(|| format!("{}: no branch {branch}", path.display()))?;
        let cursor = format!("tip:{tree}:{branch}");
        match self.q.cursor(&cursor)? {
            None => {
                // First sight: this is the baseline, not a change to test.
                self.q.set_cursor(&cursor, &tip)?;
                self.say(&format!("watching {tree}/{branch} from {}", short_commit(&tip)));
            }
            Some(last) if last == tip => {}
            Some(last) => {
                let base = range_base(&path, &last, &tip).ok_or_else(|| {
                    format!("no common history between {} and {}", short_commit(&last), short_commit(&tip))
                })?;
                if base != tip {
                    let key = range_key(tree, branch, &base, &tip);
                    let title = format!("{tree}/{branch} {}..{}", short_commit(&base), short_commit(&tip));
                    if let Some(id) =
                        self.q.enqueue(&key, JobKind::Range, tree, &title, &format!("{base}..{tip}"), tree)?
                    {
                        self.say(&format!(
                            "job {id} queued: {title}{}",
                            if base != last { " (force-push)" } else { "" }
                        ));
                    }
                }
                self.q.set_cursor(&cursor, &tip)?;
            }
        }
        Ok(())
    }

    /// Default: one job per 8 cores (each job already runs make with every core and both
    /// arches side by side), at least one.
    fn workers(&self) -> usize {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        self.cfg.workers.map_or((cpus / 8).max(1), |w| w as usize)
    }

    /// Starts queued jobs while there is room.
    pub fn start_jobs(&mut self) -> Result<(), Fail> {
        while self.running.len() < self.workers() {
            let Some(job) = self.q.claim().map_err(env)? else { break };
            let dir = job.dir(&self.state);
            let _ = std::fs::create_dir_all(dir.path());
            match self.start(&job, &dir) {
                Ok(work) => {
                    self.say(&format!("job {} started (attempt {}): {}", job.id, job.attempts, job.title));
                    self.running.push(Running { job, work, started: Instant::now(), dir });
                }
                Err(e) => {
                    self.say(&format!("job {}: {e}", job.id));
                    self.q.finish(job.id, "error", None, Some(&e), None).map_err(env)?;
                }
            }
        }
        Ok(())
    }

    /// Starts a job where the config says: a child process, or Slurm jobs (one per arch).
    fn start(&mut self, job: &Job, dir: &JobDir) -> Result<Work, String> {
        let Some(slurm) = self.slurm.as_mut() else { return self.spawn(job, dir).map(Work::Local) };
        // The nodes run the kbot at the service's path (a rebuilt binary: the new one there).
        let exe = std::env::current_exe().map_err(|e| e.to_string())?.display().to_string();
        let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe).to_string();
        // Both arches' random scenarios from one seed, as in one check of both.
        let seed = (kbot_kernel::fnv64(job.key.as_bytes()) & 0xffff_ffff).to_string();
        let base = self.q.cursor(&format!("base:{}", job.key)).map_err(|e| e.to_string())?;
        let (cfg, home, arches) = (&self.cfg, &self.home, self.arches.clone());
        slurm
            .start(job, &self.state, &arches, |arch, input, json| {
                let mut v = vec![exe.clone()];
                v.extend(check_args(cfg, home, job, input, arch, json, None, base.as_deref())?);
                v.extend(["--seed".to_string(), seed.clone()]);
                Ok(v)
            })
            .map(Work::Slurm)
    }

    fn spawn(&self, job: &Job, dir: &JobDir) -> Result<Child, String> {
        // Test seam: KBOT_SERVE_CHECK names a program run instead of `kbot check`, with the
        // same arguments (it must write --json); the service's tests use it to give a job a
        // prepared result without building and booting kernels.
        let exe = match std::env::var_os("KBOT_SERVE_CHECK") {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe().map_err(|e| e.to_string())?,
        };
        let mut c = Command::new(exe);
        let arches = self.arches.join(",");
        // `#kbot test <tree> <branch-or-commit>`: the base it named.
        let base = self.q.cursor(&format!("base:{}", job.key)).map_err(|e| e.to_string())?;
        c.args(check_args(
            &self.cfg,
            &self.home,
            job,
            &job.input,
            &arches,
            &dir.result_json(),
            Some(&dir.report_md()),
            base.as_deref(),
        )?);
        let log = std::fs::File::create(dir.log()).map_err(|e| e.to_string())?;
        c.stdin(Stdio::null()).stdout(log.try_clone().map_err(|e| e.to_string())?).stderr(log);
        // Its own process group (a timeout kills all of it) that dies with the service: a job
        // of a service killed by SIGKILL must not run on beside the restarted one.
        {
            use std::os::unix::process::CommandExt;
            c.process_group(0);
            // SAFETY: prctl is async-signal-safe.
            unsafe {
                c.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        // Credentials (SMTP, GitHub) stay in the service.
        for var in secret_vars(&self.cfg) {
            c.env_remove(var);
        }
        c.spawn().map_err(|e| format!("cannot start kbot check: {e}"))
    }

    /// Collects finished jobs (and kills those over their time limit).
    pub fn reap(&mut self) -> Result<(), Fail> {
        let limit = self.cfg.job_timeout.map_or(Duration::from_secs(7200), |d| d.0);
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            // On Slurm, `--time` is the job's limit (the time it waits in the queue is not).
            let (child, timed_out) = match &mut r.work {
                Work::Local(child) => (child, r.started.elapsed() > limit),
                Work::Slurm(run) => {
                    let secrets = secret_vars(&self.cfg);
                    let slurm = self.slurm.as_mut().expect("Slurm work comes from the Slurm executor");
                    let polled = slurm.poll(run, &r.job, &r.dir, &self.q, &secrets);
                    let id = r.job.id;
                    match polled {
                        Ok((code, said)) => {
                            for l in said {
                                self.say(&format!("job {id}: {l}"));
                            }
                            match code {
                                Some(code) => {
                                    let r = self.running.remove(i);
                                    self.finish(r, Some(code), false, limit)?;
                                }
                                None => i += 1,
                            }
                        }
                        Err(e) => {
                            // The cluster did not answer or refused: said, tried again.
                            self.say(&format!("job {id}: slurm: {e} (will retry)"));
                            i += 1;
                        }
                    }
                    continue;
                }
            };
            if timed_out {
                kbot_kernel::proc::kill_group(child.id());
            }
            match child.try_wait() {
                Ok(Some(status)) => {
                    let r = self.running.remove(i);
                    self.finish(r, status.code(), timed_out, limit)?;
                }
                Ok(None) => i += 1,
                Err(e) => {
                    let id = r.job.id;
                    self.say(&format!("job {id}: {e}"));
                    i += 1;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, r: Running, code: Option<i32>, timed_out: bool, limit: Duration) -> Result<(), Fail> {
        // Read once, here: the result, and a series' mails for the report mail and KCIDB.
        let json = r.dir.result_json();
        let result = r.dir.load_result();
        let mails = match (&result, r.job.kind) {
            (Some(_), JobKind::Series) => series_mails(&r.job).map(Some),
            _ => Ok(None),
        };
        let (status, error) = match (&result, timed_out) {
            (_, true) => ("error".to_string(), Some(format!("the job hit its time limit ({} s)", limit.as_secs()))),
            (Some(res), _) => (res.status.as_str().to_string(), res.error.clone()),
            (None, _) => (
                "error".to_string(),
                Some(
                    r.dir.last_error_line().unwrap_or_else(|| format!("kbot check exited with {code:?} and no result")),
                ),
            ),
        };
        let mail = match (&result, &self.cfg.mail) {
            (Some(res), Some(mc)) if !timed_out => {
                mails.clone().and_then(|m| self.compose(&r.job, res, m.as_deref(), mc)).unwrap_or_else(|e| {
                    self.say(&format!("job {}: no report mail: {e}", r.job.id));
                    None
                })
            }
            _ => None,
        };
        let new =
            mail.as_ref().map(|m| NewMail { message_id: &m.message_id, sender: &m.sender, rcpt: &m.rcpt, raw: &m.raw });
        let queued = self
            .q
            .finish(
                r.job.id,
                &status,
                json.is_file().then(|| json.display().to_string()).as_deref(),
                error.as_deref(),
                new,
            )
            .map_err(env)?;
        if let Some(res) = &result {
            let doc = kcidb_of(&self.cfg, &r.job, res, mails.as_ref().ok().and_then(Option::as_deref).unwrap_or(&[]));
            let _ =
                write_atomic(&r.dir.kcidb_json(), serde_json::to_string_pretty(&doc).unwrap_or_default().as_bytes());
        }
        self.say(&format!(
            "job {} done: {status}{}{} in {:.0}s",
            r.job.id,
            error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default(),
            if queued { ", report queued" } else { "" },
            r.started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Sends the outbox (`all`: also mails whose retry time has not come, for --once).
    pub fn send_mail(&self, all: bool) -> Result<usize, Fail> {
        let Some(mc) = &self.cfg.mail else { return Ok(0) };
        let due = self.q.mails_due(all).map_err(env)?;
        if due.is_empty() {
            return Ok(0);
        }
        // Checked at startup too: a variable named but unset is never a send without AUTH.
        let (creds, ca_pem) = mail_env(mc)?;
        let mut left = 0;
        let optouts = self.optouts();
        for m in due {
            // Opt-outs (mail.optout, #kbot stop) never receive mail, even one queued before.
            let out = kbot_mail::OutMail {
                message_id: m.message_id.clone(),
                sender: m.sender.clone(),
                rcpt: m.rcpt.split(',').map(str::to_string).collect(),
                raw: m.raw.clone(),
            };
            let Some(out) = kbot_mail::without(&out, &optouts) else {
                self.q.mail_retry(m.id, now(), "not sent: every recipient opted out", true).map_err(env)?;
                self.say(&format!("mail {}: not sent: every recipient opted out", m.message_id));
                continue;
            };
            self.q.mail_sending(m.id).map_err(env)?;
            let rcpt = out.rcpt.clone();
            let m = kbot_queue::Mail { raw: out.raw, rcpt: rcpt.join(","), ..m };
            let smtp = kbot_mail::Smtp { url: &mc.smtp, creds: creds.clone(), ca_pem: ca_pem.as_deref() };
            match kbot_mail::send(&smtp, &m.sender, &rcpt, &m.raw) {
                Ok(()) => {
                    self.q.mail_sent(m.id).map_err(env)?;
                    self.say(&format!("mail {} sent to {}", m.message_id, m.rcpt));
                }
                Err(e) => {
                    let attempts = m.attempts + 1;
                    let give_up = !e.transient || attempts >= MAIL_ATTEMPTS;
                    let wait = 60i64 << attempts.min(6);
                    self.q.mail_retry(m.id, now() + wait, &e.message, give_up).map_err(env)?;
                    self.say(&format!(
                        "mail {}: {}; {}",
                        m.message_id,
                        e.message,
                        if give_up { "given up".to_string() } else { format!("retry in {wait} s") }
                    ));
                    if !give_up {
                        left += 1;
                    }
                }
            }
        }
        Ok(left)
    }

    /// Posts finished range results of GitHub-hosted trees: the commit status on the tip and,
    /// for a regression, a comment on its open pull requests. Each run is marked `posting`
    /// before and `done` after; one left `posting` by a crash is not posted again.
    pub async fn post_github(&self) -> Result<(), Fail> {
        for job in self.q.jobs(50).map_err(env)? {
            if job.state != JobState::Done || job.kind != JobKind::Range {
                continue;
            }
            let Some(gh) = self.cfg.trees.iter().find(|t| t.name == job.tree).and_then(|t| t.github.clone()) else {
                continue;
            };
            let key = format!("gh:{}", job.id);
            if self.q.cursor(&key).map_err(env)?.is_some() {
                continue;
            }
            let Some(r) = job.load_result(&self.state) else { continue };
            let Ok(token) = std::env::var(&gh.token_env) else {
                self.q.set_cursor(&key, &format!("failed: {} is not set", gh.token_env)).map_err(env)?;
                self.say(&format!(
                    "job {}: GitHub: the token variable {} is not set; not posted",
                    job.id, gh.token_env
                ));
                continue;
            };
            let tip = job.input.split("..").nth(1).unwrap_or("").to_string();
            let link = run_link(&self.cfg, job.id);
            let api = gh.api.clone().unwrap_or_else(|| "https://api.github.com".into());
            let t = kbot_github::Target { repo: &gh.repo, api: &api, token };
            self.q.set_cursor(&key, "posting").map_err(env)?;
            let mut outcome = kbot_github::post_status(&t, &tip, &r, link.as_deref()).await;
            let mut prs = Vec::new();
            if outcome.is_ok() && r.status == kbot_report::Status::Regression {
                match kbot_github::pulls_of(&t, &tip).await {
                    Ok(p) => {
                        let body = kbot_github::comment_of(&r, link.as_deref());
                        for n in p {
                            if let Err(e) = kbot_github::post_comment(&t, n, &body).await {
                                outcome = Err(e);
                                break;
                            }
                            prs.push(n);
                        }
                    }
                    Err(e) => outcome = Err(e),
                }
            }
            match outcome {
                Ok(()) => {
                    self.q.set_cursor(&key, "done").map_err(env)?;
                    self.say(&format!(
                        "job {}: GitHub status on {} posted, comments on PRs {prs:?}",
                        job.id,
                        short_commit(&tip)
                    ));
                }
                Err(e) => {
                    self.q.set_cursor(&key, &format!("failed: {e}")).map_err(env)?;
                    self.say(&format!("job {}: GitHub: {e}", job.id));
                }
            }
        }
        Ok(())
    }

    /// For --once: a thread is waiting for a grace period that ends within a minute.
    fn has_pending_soon(&self) -> Result<bool, Fail> {
        let t = now();
        Ok(self.waiting.values().any(|(_, until)| until.is_some_and(|u| u > t && u - t <= 60)))
    }

    /// For --once on leaving: what still waits, and until when.
    fn say_waiting(&self) {
        for ((inbox, _), (what, until)) in &self.waiting {
            self.say(&match until {
                Some(u) => format!("still waiting: {inbox}: {what} until {}", kbot_lore::utc_string(*u)),
                None => format!("still waiting: {inbox}: {what} for its missing patches"),
            });
        }
    }

    pub fn idle(&self) -> Result<bool, Fail> {
        Ok(self.running.is_empty() && self.q.count(JobState::Queued).map_err(env)? == 0)
    }
}

/// `kbot serve`: runs until SIGTERM/SIGINT (drains) or, with `once`, until everything pending
/// is done.
pub fn run(cfg: Config, home: Home, once: bool, quiet: bool) -> Result<i32, Fail> {
    // The SMTP credentials and CA file the config names must be there before anything starts.
    if let Some(mc) = &cfg.mail {
        mail_env(mc)?;
    }
    // No public mail is processed without the sandbox: refuse to start without it.
    let sandbox = kbot_runner::sandbox_policy(false, &home, None)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fail::env(format!("tokio: {e}")))?;
    // The handlers come first: a SIGTERM while the state opens must drain, not kill.
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _rt = rt.enter();
        let sig = |k| signal(k).map_err(|e| Fail::env(e.to_string()));
        (sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?)
    };
    let (mut svc, _lock) = Service::open(cfg, home, quiet)?;
    svc.sandbox = Some(sandbox);
    svc.recover()?;
    if svc.cfg.web.is_some() {
        let addr = web(&svc.cfg, &svc.home)?;
        svc.say(&format!("dashboard on http://{addr}/"));
    }
    rt.block_on(async move {
        let poll_every = svc.cfg.poll_interval.map_or(Duration::from_secs(300), |d| d.0);
        let mut next_poll = Instant::now();
        let mut draining = false;
        loop {
            if !draining && Instant::now() >= next_poll {
                svc.poll().await;
                next_poll = Instant::now() + poll_every;
            }
            svc.reap()?;
            if !draining {
                svc.start_jobs()?;
            }
            // Mail whose retry time has come; the rest waits (a loop that retried every second
            // would use up a mail's attempts in seconds while other jobs still run).
            svc.send_mail(false)?;
            svc.post_github().await?;
            if (once || draining) && svc.running.is_empty() && (draining || svc.idle()?) {
                // --once waits for the grace of threads seen in this run only if it is short.
                if once && !draining && svc.has_pending_soon()? {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    next_poll = Instant::now();
                    continue;
                }
                svc.say_waiting();
                // Leaving: one more try for every mail still waiting, due or not.
                let unsent = svc.send_mail(true)?;
                if unsent > 0 {
                    svc.say(&format!("{unsent} mail(s) not sent yet (SMTP); they stay queued and are retried"));
                }
                return Ok(0);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = term.recv() => { draining = true; svc.say("SIGTERM: draining (no new jobs; running ones finish)"); }
                _ = int.recv() => { draining = true; svc.say("SIGINT: draining (no new jobs; running ones finish)"); }
            }
        }
    })
}

/// The arguments of `kbot check` for a job: `input` is the mbox (series) or range, `arches`
/// the `--arch` list, `json`/`report` where its result goes.
#[allow(clippy::too_many_arguments)]
fn check_args(
    cfg: &Config,
    home: &Home,
    job: &Job,
    input: &str,
    arches: &str,
    json: &Path,
    report: Option<&Path>,
    base: Option<&str>,
) -> Result<Vec<String>, String> {
    let conf = cfg.trees.iter().find(|t| t.name == job.tree);
    let tree = match conf {
        Some(t) => t.path.clone().unwrap_or_else(|| home.default_tree()),
        None if job.tree == "default" => home.default_tree(),
        None => return Err(format!("no tree named {}", job.tree)),
    };
    let mut c: Vec<String> = vec!["check".into()];
    let mut arg = |a: &str, v: &str| c.extend([a.to_string(), v.to_string()]);
    match job.kind {
        JobKind::Range => arg("--range", input),
        JobKind::Series => arg("--mbox", input),
    };
    arg("--tree", &tree.display().to_string());
    arg("--arch", arches);
    match (base, conf.map(|t| &t.branches).filter(|b| !b.is_empty())) {
        (Some(b), _) => arg("--base", b),
        // A series without a usable base-commit: is tried on the tree's configured branches.
        (None, Some(branches)) if job.kind == JobKind::Series => arg("--base-from", &branches.join(",")),
        _ => {}
    }
    arg("--json", &json.display().to_string());
    if let Some(r) = report {
        arg("--report", &r.display().to_string());
    }
    if let Some(m) = &cfg.mail {
        arg("--reporter", &m.from);
    }
    if let Some(l) = &cfg.ltp {
        arg("--ltp", &l.display().to_string());
    }
    // Readers of the report reproduce from the list or the tree, not from kbot's files.
    let source = match job.kind {
        // The tree by its name (its url: in the config), never its path here.
        JobKind::Range => Some(kbot_report::shell_line(&["--range", &job.input, "--tree", &job.tree])),
        JobKind::Series => {
            let id = series_msgid(&job.key, &job.source);
            let ib = cfg.inboxes.iter().find(|i| i.name == job.source);
            match ib.and_then(|i| i.lore.clone()) {
                Some(l) => Some(kbot_report::shell_line(&["--msgid", id, "--lore", &l])),
                // A mirror on this host: the message id (lore has it), not the mirror's path.
                None => Some(kbot_report::shell_line(&["--msgid", id])),
            }
        }
    };
    if let Some(s) = source {
        // One argument: the value starts with "--".
        c.push(format!("--reproduce-as={s}"));
    }
    Ok(c)
}

/// Credentials (SMTP, GitHub) stay in the service: removed from the jobs' environment.
fn secret_vars(cfg: &Config) -> Vec<String> {
    let mail = cfg.mail.iter().flat_map(|m| [&m.user_env, &m.password_env]).flatten();
    mail.chain(cfg.trees.iter().filter_map(|t| t.github.as_ref().map(|g| &g.token_env))).cloned().collect()
}

/// The SMTP credentials (from the environment variables the config names) and CA
/// certificates (`mail.ca_file`); one line naming the key and the variable or file when missing.
type MailEnv = (Option<(String, String)>, Option<Vec<u8>>);
fn mail_env(mc: &kbot_config::MailConfig) -> Result<MailEnv, Fail> {
    let creds = mc.credentials(|v| std::env::var(v).ok()).map_err(|e| Fail::usage(format!("config: {e}")))?;
    let ca = mc.ca_pem().map_err(|e| Fail::usage(format!("config: {e}")))?;
    Ok((creds, ca))
}

/// The run's page on the dashboard, when it has a public URL (`web.url`).
fn run_link(cfg: &Config, id: i64) -> Option<String> {
    cfg.web.as_ref().and_then(|w| w.url.as_ref()).map(|u| format!("{}/runs/{id}", u.trim_end_matches('/')))
}

/// The mails of a series job, from the service's copy of its thread.
fn series_mails(job: &Job) -> Result<Vec<kbot_mbox::Mail>, String> {
    let data = std::fs::read(&job.input).map_err(|e| format!("{}: {e}", job.input))?;
    kbot_mbox::parse_mbox(&data).map_err(|e| e.to_string())
}

/// The KCIDB document of one finished run; `mails` are a series' mails (none for a range).
pub fn kcidb_of(cfg: &Config, job: &Job, r: &kbot_report::CheckResult, mails: &[kbot_mbox::Mail]) -> serde_json::Value {
    let patches: Vec<Vec<u8>> = match job.kind {
        JobKind::Series => kbot_series::assemble(mails, Some(r.series.version))
            .map(|s| s.patches.iter().map(|p| p.mail.to_mbox()).collect())
            .unwrap_or_default(),
        JobKind::Range => Vec::new(),
    };
    let url = run_link(cfg, job.id);
    let run = kbot_kcidb::RunInfo {
        id: job.id,
        kind: job.kind,
        tree: &job.tree,
        started: job.created,
        patches: &patches,
        url: url.as_deref(),
    };
    kbot_kcidb::export(&run, r)
}

/// The service's state directory: `state_dir`, else `$KBOT_HOME/serve`.
pub fn state_dir(cfg: &Config, home: &Home) -> PathBuf {
    cfg.state_dir.clone().unwrap_or_else(|| home.root.join("serve"))
}

/// The queue of a service that has run (for status, export).
fn existing_state(cfg: &Config, home: &Home) -> Result<Queue, Fail> {
    let state = state_dir(cfg, home);
    let db = kbot_queue::queue_path(&state);
    if !db.is_file() {
        return Err(Fail::usage(format!(
            "no service state in {} (has kbot serve run with this config?)",
            state.display()
        )));
    }
    Queue::open(&db).map_err(env)
}

/// `kbot export kcidb`: every finished run (or one) as one KCIDB v5 document.
pub fn export_kcidb(cfg: &Config, home: &Home, job: Option<i64>) -> Result<serde_json::Value, Fail> {
    let state = state_dir(cfg, home);
    let q = existing_state(cfg, home)?;
    let jobs: Vec<Job> = match job {
        Some(id) => {
            vec![q
                .job(id)
                .map_err(env)?
                .ok_or_else(|| Fail::usage(format!("--job {id}: no such run; `kbot status` lists the runs")))?]
        }
        None => q.jobs(100_000).map_err(env)?,
    };
    Ok(kbot_kcidb::merge(
        jobs.iter()
            .filter(|j| j.state == JobState::Done)
            .filter_map(|j| {
                let r = j.load_result(&state)?;
                let mails = if j.kind == JobKind::Series { series_mails(j).unwrap_or_default() } else { Vec::new() };
                Some(kcidb_of(cfg, j, &r, &mails))
            })
            .collect(),
    ))
}

/// Starts the dashboard (`web.listen`, default 127.0.0.1:8080) on its own thread.
pub fn web(cfg: &Config, home: &Home) -> Result<std::net::SocketAddr, Fail> {
    let listen = cfg.web.as_ref().and_then(|w| w.listen.clone()).unwrap_or_else(|| "127.0.0.1:8080".into());
    let addr: std::net::SocketAddr =
        listen.parse().map_err(|_| Fail::usage(format!("web.listen: {listen:?} is not host:port")))?;
    let state = state_dir(cfg, home);
    kbot_web::spawn(addr, kbot_web::Site { state })
        .map_err(|e| Fail::env(format!("web.listen {addr}: {e}; pick a free address")))?;
    Ok(addr)
}

/// `kbot status`: jobs (newest first) and the outbox.
pub fn status(cfg: &Config, home: &Home) -> Result<String, Fail> {
    let q = existing_state(cfg, home)?;
    let mut out = String::new();
    for s in JobState::ALL {
        out += &format!("{s}: {}  ", q.count(*s).map_err(env)?);
    }
    out.push('\n');
    for j in q.jobs(100).map_err(env)? {
        out += &format!(
            "job {:>4}  {:<8} {:<13} attempts {}  {}  [{}]{}\n",
            j.id,
            j.state,
            j.status.as_deref().unwrap_or("-"),
            j.attempts,
            j.title,
            j.source,
            j.error.as_deref().map(|e| format!("\n           error: {e}")).unwrap_or_default()
        );
        if let Some(w) = q.cursor(&format!("where:{}", j.id)).map_err(env)? {
            out += &format!("           runs on: {w}\n");
        }
    }
    for m in q.mails().map_err(env)? {
        out += &format!(
            "mail {:>3}  {:<9} job {} to {}  {}{}\n",
            m.id,
            m.state,
            m.job,
            m.rcpt,
            m.message_id,
            m.error.as_deref().map(|e| format!("\n           {e}")).unwrap_or_default()
        );
    }
    out += &intake_status(&q).map_err(env)?;
    Ok(out)
}

/// The inboxes' side of `kbot status`: threads waiting, those whose fetch failed (tried again),
/// gaps of a feed not yet backfilled, and what was given up.
fn intake_status(q: &Queue) -> Result<String, QueueError> {
    let t = |s: i64| kbot_lore::utc_string(s);
    let mut out = String::new();
    let pending = q.pending_all()?;
    let failing: Vec<_> = pending.iter().filter(|p| p.attempts > 0).collect();
    if !pending.is_empty() {
        out += &format!("threads: {} waiting, {} failing to fetch\n", pending.len() - failing.len(), failing.len());
    }
    for p in failing {
        out += &format!(
            "thread    {}  <{}>  attempts {}, next try {}\n           error: {}\n",
            p.source,
            p.msgid,
            p.attempts,
            t(p.next_try),
            p.error.as_deref().unwrap_or("-")
        );
    }
    for g in q.gaps(None, false)? {
        out += &format!(
            "gap       {}  messages received {}..{} not backfilled yet  attempts {}{}\n",
            g.source,
            t(g.from_ts),
            t(g.to_ts),
            g.attempts,
            g.error
                .as_deref()
                .map(|e| format!(", next try {}\n           error: {e}", t(g.next_try)))
                .unwrap_or_default()
        );
    }
    for l in q.lost(50)? {
        out += &format!("lost      {}  {} (given up {})\n           error: {}\n", l.source, l.what, t(l.at), l.error);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_wait_for_completion_and_grace() {
        let t = 1_000_000;
        assert_eq!(decide(true, false, Some(t), 0, t, t + 600, 600), Decision::Enqueue);
        assert_eq!(decide(true, false, Some(t), 0, t, t + 10, 600), Decision::Wait(Some(t + 600)));
        assert_eq!(decide(false, false, Some(t), 0, t, t + 10_000, 600), Decision::Wait(None));
        // A days-old thread seen for the first time now: its newest mail is long past the grace.
        assert_eq!(decide(true, false, Some(t - 3 * 86400), 0, t, t, 600), Decision::Enqueue);
        // A mail dated in the future counts as now.
        assert_eq!(decide(true, false, Some(t + 86400), 0, t, t, 600), Decision::Wait(Some(t + 600)));
        // No date: from first sight.
        assert_eq!(decide(true, false, None, 0, t, t + 10, 600), Decision::Wait(Some(t + 600)));
        assert!(matches!(decide(false, false, None, 0, t, t + 2 * 86400, 600), Decision::Drop(_)));
        assert!(matches!(decide(true, true, None, 0, t, t + 600, 600), Decision::Drop(_)));
        assert!(matches!(decide(true, false, Some(t - 5), t, t, t + 600, 0), Decision::Drop(_)));
    }

    #[test]
    fn job_keys_read_back() {
        let k = series_key("fsdevel", "a:b.v2@x", 3);
        assert_eq!(series_msgid(&k, "fsdevel"), "a:b.v2@x");
        assert_eq!(range_branch(&range_key("linux", "master", "a", "b")), "master");
        assert_eq!(inbox_base("http://x/l"), "http://x/l/");
        assert_eq!(inbox_base("http://x/l/"), "http://x/l/");
    }

    /// A series job on a tree with configured branches tries them as bases (when the series
    /// names none it has); a range job and an explicit base do not.
    #[test]
    fn series_jobs_offer_the_trees_branches_as_bases() {
        let d = tempfile::tempdir().unwrap();
        let cfg = kbot_config::parse(&format!(
            "state_dir: {}\ntrees:\n  - name: linux\n    path: /srv/linux\n    branches: [master, next]\ninboxes:\n  - name: fsdevel\n    lore: http://127.0.0.1:1/fsdevel/\n    tree: linux\n",
            d.path().display()
        ))
        .unwrap();
        let home = Home { root: d.path().to_path_buf() };
        let mut q = Queue::open(&d.path().join("q.db")).unwrap();
        q.enqueue("s", JobKind::Series, "fsdevel", "[PATCH] x", "/m.mbox", "linux").unwrap();
        q.enqueue("r", JobKind::Range, "linux", "linux/master a..b", "a..b", "linux").unwrap();
        let (series, range) = (q.claim().unwrap().unwrap(), q.claim().unwrap().unwrap());
        let json = d.path().join("r.json");
        let args = |job: &Job, base: Option<&str>| {
            check_args(&cfg, &home, job, &job.input, "x86_64", &json, None, base).unwrap()
        };
        let a = args(&series, None);
        let i = a.iter().position(|x| x == "--base-from").expect("--base-from");
        assert_eq!(a[i + 1], "master,next");
        assert!(!args(&series, Some("abc")).contains(&"--base-from".to_string()));
        assert!(args(&series, Some("abc")).windows(2).any(|w| w == ["--base", "abc"]));
        assert!(!args(&range, None).contains(&"--base-from".to_string()));
    }

    #[test]
    fn force_push_ranges_start_at_the_merge_base() {
        let d = tempfile::tempdir().unwrap();
        let g = |args: &[&str]| kbot_testdata::git(d.path(), args);
        g(&["init", "-q", "-b", "master"]);
        g(&["commit", "-q", "--allow-empty", "-m", "a"]);
        let a = g(&["rev-parse", "HEAD"]);
        g(&["commit", "-q", "--allow-empty", "-m", "b"]);
        let b = g(&["rev-parse", "HEAD"]);
        assert_eq!(range_base(d.path(), &a, &b).as_deref(), Some(a.as_str()));
        // Rewrite b as b' (force-push): the new range starts at a.
        g(&["reset", "-q", "--hard", &a]);
        g(&["commit", "-q", "--allow-empty", "-m", "b2"]);
        let b2 = g(&["rev-parse", "HEAD"]);
        assert_eq!(range_base(d.path(), &b, &b2).as_deref(), Some(a.as_str()));
    }
}
