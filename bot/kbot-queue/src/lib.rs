//! The service's state, in one SQLite database (WAL, every change a transaction), so a
//! service killed at any point resumes where it was:
//!
//! - `jobs`: one row per (series, revision) or tested branch range, keyed so the same work is
//!   never queued twice; `running` rows of a dead service go back to `queued` on start.
//! - `mails`: the outbox. A report is inserted in the same transaction that finishes its job,
//!   under a stable Message-ID (unique), so a job run again after a crash cannot add a second
//!   copy. A mail is marked `sending` before SMTP and `sent` after; one left `sending` by a
//!   crash is `uncertain` on restart and is not sent again (never twice), but listed.
//! - `pending`: threads seen but not yet queued (waiting for the rest of the series, or, after
//!   a failed fetch, for their retry time: attempts and the last error are kept).
//! - `gaps`: stretches of an inbox that scrolled past its feed between two polls, until they
//!   are backfilled; `lost`: threads and gaps given up on, with the reason (`kbot status`).
//! - `commands`: `#kbot` commands acted on, keyed by the command mail's Message-ID (acted on
//!   once, across polls and restarts); `tracked`: the message ids of each series job's thread
//!   (what a command may reply to); `families`: a series job's revision family (b4 change-id
//!   or subject, and author) for follow-ups across revisions; `invalid`: findings a
//!   `#kbot invalid` dropped for a family; `optout`: addresses that sent `#kbot stop`.
//! - `cursors`: small named values (last tested branch tips, first start, the last feed).
//!
//! The closed vocabularies of the rows ([`JobKind`], [`JobState`], [`MailState`]) are enums
//! here and the same words as always in the database. [`JobDir`] is the layout of one job's
//! files (`jobs/<id>/`).

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};

mod jobdir;
pub use jobdir::{queue_path, JobDir};

/// An error of the queue, one line.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("queue database: {0}")]
    Db(#[from] rusqlite::Error),
}

pub use kbot_report::UnknownWord;

/// The database stores a vocabulary's words as TEXT.
macro_rules! sql_words {
    ($($name:ident),+) => {$(
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<$name> {
                v.as_str()?.parse().map_err(|e: UnknownWord| FromSqlError::Other(Box::new(e)))
            }
        }
    )+};
}

kbot_report::closed_words! {
    /// What a job tests.
    JobKind {
        /// A patch series from an inbox (`input` is the mbox path).
        Series = "series",
        /// New commits of a tree's branch (`input` is `BASE..TIP`).
        Range = "range",
    }
}

kbot_report::closed_words! {
    /// Where a job is.
    JobState { Queued = "queued", Running = "running", Done = "done" }
}

kbot_report::closed_words! {
    /// Where a mail of the outbox is.
    MailState {
        /// Waiting to be sent (at `next_try`).
        Pending = "pending",
        /// Handed to SMTP; left so by a crash it becomes `Uncertain`.
        Sending = "sending",
        Sent = "sent",
        /// Caught mid-send by a crash: not sent again (it may have arrived).
        Uncertain = "uncertain",
        /// Given up.
        Failed = "failed",
    }
}

sql_words!(JobKind, JobState, MailState);

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub key: String,
    pub kind: JobKind,
    /// The inbox or tree it came from.
    pub source: String,
    pub title: String,
    /// The mbox path (series) or `BASE..TIP` (range).
    pub input: String,
    /// The tree name it is tested on.
    pub tree: String,
    pub state: JobState,
    pub attempts: i64,
    /// kbot.result/v1 status once done (`clean`, `regression`, `error`, ...).
    pub status: Option<String>,
    /// The result file's path once done, when the job wrote one.
    pub result: Option<String>,
    pub error: Option<String>,
    pub created: i64,
    pub updated: i64,
}

impl Job {
    /// Its files in the service's state directory `state`.
    pub fn dir(&self, state: &Path) -> JobDir {
        JobDir::new(state, self.id)
    }

    /// Its result, parsed, once it is done and `kbot check` wrote one (`None` before, as the
    /// queue records it, even when a file is left from an interrupted attempt).
    pub fn load_result(&self, state: &Path) -> Option<kbot_report::CheckResult> {
        self.result.as_ref()?;
        self.dir(state).load_result()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub id: i64,
    pub job: i64,
    pub message_id: String,
    pub sender: String,
    /// Envelope recipients, comma separated.
    pub rcpt: String,
    pub raw: Vec<u8>,
    pub state: MailState,
    pub attempts: i64,
    pub next_try: i64,
    pub error: Option<String>,
}

/// A thread seen in an inbox and not yet queued.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub source: String,
    pub msgid: String,
    pub first_seen: i64,
    /// Failed fetches so far, the next try and the last error.
    pub attempts: i64,
    pub next_try: i64,
    pub error: Option<String>,
}

/// A stretch of an inbox's messages that scrolled past its feed between two polls: those
/// received from `from_ts` to `to_ts` (Unix seconds), between the message `low` (the newest
/// seen before) and `high` (the oldest of the feed now).
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    pub id: i64,
    pub source: String,
    pub from_ts: i64,
    pub to_ts: i64,
    pub low: String,
    pub high: String,
    pub attempts: i64,
    pub next_try: i64,
    pub error: Option<String>,
    pub created: i64,
}

/// Something of an inbox that was given up on (a thread, a gap), and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Lost {
    pub source: String,
    pub what: String,
    pub error: String,
    pub at: i64,
}

/// A mail to queue with a finished job.
pub struct NewMail<'a> {
    pub message_id: &'a str,
    pub sender: &'a str,
    pub rcpt: &'a [String],
    pub raw: &'a [u8],
}

pub struct Queue {
    db: Connection,
}

type R<T> = Result<T, QueueError>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, source TEXT NOT NULL,
    title TEXT NOT NULL, input TEXT NOT NULL, tree TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, status TEXT, result TEXT, error TEXT,
    created INTEGER NOT NULL, updated INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mails (
    id INTEGER PRIMARY KEY, job INTEGER NOT NULL, message_id TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL, rcpt TEXT NOT NULL, raw BLOB NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_try INTEGER NOT NULL DEFAULT 0, error TEXT);
CREATE TABLE IF NOT EXISTS pending (
    source TEXT NOT NULL, msgid TEXT NOT NULL, first_seen INTEGER NOT NULL,
    PRIMARY KEY (source, msgid));
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, from_ts INTEGER NOT NULL, to_ts INTEGER NOT NULL,
    low TEXT NOT NULL, high TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_try INTEGER NOT NULL DEFAULT 0, error TEXT, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS lost (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, what TEXT NOT NULL, error TEXT NOT NULL,
    at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    msgid TEXT PRIMARY KEY, source TEXT NOT NULL, sender TEXT NOT NULL, command TEXT NOT NULL,
    outcome TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tracked (msgid TEXT PRIMARY KEY, job INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS families (
    job INTEGER PRIMARY KEY, family TEXT NOT NULL, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS invalid (
    family TEXT NOT NULL, test TEXT NOT NULL, kind TEXT NOT NULL, by TEXT NOT NULL,
    PRIMARY KEY (family, test, kind));
CREATE TABLE IF NOT EXISTS optout (addr TEXT PRIMARY KEY, by TEXT NOT NULL, at INTEGER NOT NULL);
";

/// Columns added to `pending` after its first release (a thread's failed fetches).
const PENDING_RETRY_COLS: [(&str, &str); 3] =
    [("attempts", "INTEGER NOT NULL DEFAULT 0"), ("next_try", "INTEGER NOT NULL DEFAULT 0"), ("error", "TEXT")];

const JOB_COLS: &str =
    "id, key, kind, source, title, input, tree, state, attempts, status, result, error, created, updated";
const MAIL_COLS: &str = "id, job, message_id, sender, rcpt, raw, state, attempts, next_try, error";

fn job_row(r: &rusqlite::Row) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        key: r.get(1)?,
        kind: r.get(2)?,
        source: r.get(3)?,
        title: r.get(4)?,
        input: r.get(5)?,
        tree: r.get(6)?,
        state: r.get(7)?,
        attempts: r.get(8)?,
        status: r.get(9)?,
        result: r.get(10)?,
        error: r.get(11)?,
        created: r.get(12)?,
        updated: r.get(13)?,
    })
}

fn mail_row(r: &rusqlite::Row) -> rusqlite::Result<Mail> {
    Ok(Mail {
        id: r.get(0)?,
        job: r.get(1)?,
        message_id: r.get(2)?,
        sender: r.get(3)?,
        rcpt: r.get(4)?,
        raw: r.get(5)?,
        state: r.get(6)?,
        attempts: r.get(7)?,
        next_try: r.get(8)?,
        error: r.get(9)?,
    })
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Queue {
    pub fn open(path: &Path) -> R<Queue> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|source| QueueError::CreateDir { dir: d.to_path_buf(), source })?;
        }
        let db = Connection::open(path).map_err(|source| QueueError::Open { path: path.to_path_buf(), source })?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(SCHEMA)?;
        let cols: Vec<String> = db
            .prepare("SELECT name FROM pragma_table_info('pending')")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for (name, decl) in PENDING_RETRY_COLS {
            if !cols.iter().any(|c| c == name) {
                db.execute_batch(&format!("ALTER TABLE pending ADD COLUMN {name} {decl}"))?;
            }
        }
        Ok(Queue { db })
    }

    /// After a crash: running jobs are queued again; mails caught mid-send are uncertain.
    /// Returns (jobs requeued, mails made uncertain).
    pub fn recover(&self) -> R<(usize, usize)> {
        let t = now();
        let j = self.db.execute(
            "UPDATE jobs SET state=?2, updated=?1 WHERE state=?3",
            params![t, JobState::Queued, JobState::Running],
        )?;
        let m = self
            .db
            .execute(
                "UPDATE mails SET state=?1, error='the service stopped during SMTP; not resent (it may have arrived)' WHERE state=?2",
                params![MailState::Uncertain, MailState::Sending],
            )
            ?;
        // GitHub posts caught mid-way: not posted again either.
        self.db.execute("UPDATE cursors SET value='uncertain' WHERE name LIKE 'gh:%' AND value='posting'", [])?;
        Ok((j, m))
    }

    /// Queues a job unless one with `key` exists. Returns its id when it was added.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &self,
        key: &str,
        kind: JobKind,
        source: &str,
        title: &str,
        input: &str,
        tree: &str,
    ) -> R<Option<i64>> {
        let t = now();
        let n = self
            .db
            .execute(
                "INSERT OR IGNORE INTO jobs (key, kind, source, title, input, tree, state, created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8, ?7, ?7)",
                params![key, kind, source, title, input, tree, t, JobState::Queued],
            )
            ?;
        Ok((n == 1).then(|| self.db.last_insert_rowid()))
    }

    pub fn has_job(&self, key: &str) -> R<bool> {
        self.db
            .query_row("SELECT 1 FROM jobs WHERE key=?1", params![key], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
            .map_err(QueueError::from)
    }

    /// Takes the oldest queued job and marks it running.
    pub fn claim(&mut self) -> R<Option<Job>> {
        let tx = self.db.transaction()?;
        let job = tx
            .query_row(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE state=?1 ORDER BY id LIMIT 1"),
                params![JobState::Queued],
                job_row,
            )
            .optional()?;
        if let Some(j) = &job {
            tx.execute(
                "UPDATE jobs SET state=?3, attempts=attempts+1, updated=?2 WHERE id=?1",
                params![j.id, now(), JobState::Running],
            )?;
        }
        tx.commit()?;
        Ok(job.map(|j| Job { state: JobState::Running, attempts: j.attempts + 1, ..j }))
    }

    /// Finishes a job and, in the same transaction, queues its report mail (ignored when a
    /// mail with that Message-ID exists: a job run twice mails once).
    pub fn finish(
        &mut self,
        id: i64,
        status: &str,
        result: Option<&str>,
        error: Option<&str>,
        mail: Option<NewMail>,
    ) -> R<bool> {
        let tx = self.db.transaction()?;
        tx.execute(
            "UPDATE jobs SET state=?6, status=?2, result=?3, error=?4, updated=?5 WHERE id=?1",
            params![id, status, result, error, now(), JobState::Done],
        )?;
        let mut queued = false;
        if let Some(m) = mail {
            queued = tx
                .execute(
                    "INSERT OR IGNORE INTO mails (job, message_id, sender, rcpt, raw, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![id, m.message_id, m.sender, m.rcpt.join(","), m.raw, MailState::Pending],
                )
                ?
                == 1;
        }
        tx.commit()?;
        Ok(queued)
    }

    /// Puts a running job back (a graceful stop interrupted it).
    pub fn requeue(&self, id: i64) -> R<()> {
        self.db.execute("UPDATE jobs SET state=?3, updated=?2 WHERE id=?1", params![id, now(), JobState::Queued])?;
        Ok(())
    }

    pub fn jobs(&self, limit: usize) -> R<Vec<Job>> {
        let mut st = self.db.prepare(&format!("SELECT {JOB_COLS} FROM jobs ORDER BY id DESC LIMIT ?1"))?;
        let rows = st.query_map(params![limit as i64], job_row)?;
        rows.collect::<Result<_, _>>().map_err(QueueError::from)
    }

    pub fn job(&self, id: i64) -> R<Option<Job>> {
        self.db
            .query_row(&format!("SELECT {JOB_COLS} FROM jobs WHERE id=?1"), params![id], job_row)
            .optional()
            .map_err(QueueError::from)
    }

    pub fn count(&self, state: JobState) -> R<i64> {
        self.db
            .query_row("SELECT COUNT(*) FROM jobs WHERE state=?1", params![state], |r| r.get(0))
            .map_err(QueueError::from)
    }

    /// Mails to send now: pending with their retry time reached (`all`: regardless of it).
    pub fn mails_due(&self, all: bool) -> R<Vec<Mail>> {
        let mut st = self
            .db
            .prepare(&format!("SELECT {MAIL_COLS} FROM mails WHERE state=?3 AND (?1 OR next_try <= ?2) ORDER BY id"))?;
        let rows = st.query_map(params![all, now(), MailState::Pending], mail_row)?;
        rows.collect::<Result<_, _>>().map_err(QueueError::from)
    }

    pub fn mails(&self) -> R<Vec<Mail>> {
        let mut st = self.db.prepare(&format!("SELECT {MAIL_COLS} FROM mails ORDER BY id"))?;
        let rows = st.query_map([], mail_row)?;
        rows.collect::<Result<_, _>>().map_err(QueueError::from)
    }

    /// The mails of one job.
    pub fn mails_of(&self, job: i64) -> R<Vec<Mail>> {
        let mut st = self.db.prepare(&format!("SELECT {MAIL_COLS} FROM mails WHERE job=?1 ORDER BY id"))?;
        let rows = st.query_map(params![job], mail_row)?;
        rows.collect::<Result<_, _>>().map_err(QueueError::from)
    }

    pub fn mail_sending(&self, id: i64) -> R<()> {
        self.db
            .execute("UPDATE mails SET state=?2, attempts=attempts+1 WHERE id=?1", params![id, MailState::Sending])?;
        Ok(())
    }

    pub fn mail_sent(&self, id: i64) -> R<()> {
        self.db.execute("UPDATE mails SET state=?2, error=NULL WHERE id=?1", params![id, MailState::Sent])?;
        Ok(())
    }

    /// SMTP did not take it: try again at `next_try`, or give up (`failed`) when `give_up`.
    pub fn mail_retry(&self, id: i64, next_try: i64, error: &str, give_up: bool) -> R<()> {
        self.db.execute(
            "UPDATE mails SET state=?4, next_try=?2, error=?3 WHERE id=?1",
            params![id, next_try, error, if give_up { MailState::Failed } else { MailState::Pending }],
        )?;
        Ok(())
    }

    /// Remembers a thread to look at again until it is complete and its grace is over.
    pub fn pending_add(&self, source: &str, msgid: &str) -> R<()> {
        self.db.execute(
            "INSERT OR IGNORE INTO pending (source, msgid, first_seen) VALUES (?1, ?2, ?3)",
            params![source, msgid, now()],
        )?;
        Ok(())
    }

    /// The threads of `source` to look at now (id, first seen): those whose retry time
    /// (after a failed fetch) has come, oldest first.
    pub fn pending(&self, source: &str) -> R<Vec<(String, i64)>> {
        let mut st = self.db.prepare(
            "SELECT msgid, first_seen FROM pending WHERE source=?1 AND next_try <= ?2 ORDER BY first_seen, rowid",
        )?;
        let rows = st.query_map(params![source, now()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>().map_err(QueueError::from)
    }

    /// Every waiting thread, of all sources, with its failed fetches.
    pub fn pending_all(&self) -> R<Vec<Pending>> {
        let mut st = self.db.prepare(
            "SELECT source, msgid, first_seen, attempts, next_try, error FROM pending ORDER BY first_seen, rowid",
        )?;
        let rows = st.query_map([], |r| {
            Ok(Pending {
                source: r.get(0)?,
                msgid: r.get(1)?,
                first_seen: r.get(2)?,
                attempts: r.get(3)?,
                next_try: r.get(4)?,
                error: r.get(5)?,
            })
        })?;
        rows.collect::<Result<_, _>>().map_err(QueueError::from)
    }

    /// A thread could not be fetched: counts the attempt, keeps the error, and waits until
    /// `next_try(attempts so far)`. Returns the attempts so far (0: no such thread).
    pub fn pending_failed(&self, source: &str, msgid: &str, error: &str, next_try: impl Fn(i64) -> i64) -> R<i64> {
        let Some(n) = self
            .db
            .query_row("SELECT attempts FROM pending WHERE source=?1 AND msgid=?2", params![source, msgid], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
        else {
            return Ok(0);
        };
        self.db.execute(
            "UPDATE pending SET attempts=?3, next_try=?4, error=?5 WHERE source=?1 AND msgid=?2",
            params![source, msgid, n + 1, next_try(n + 1), error],
        )?;
        Ok(n + 1)
    }

    pub fn pending_remove(&self, source: &str, msgid: &str) -> R<()> {
        self.db.execute("DELETE FROM pending WHERE source=?1 AND msgid=?2", params![source, msgid])?;
        Ok(())
    }

    /// Gives up on something of `source` (a thread, a range of an inbox) and says why; it
    /// stays listed (`lost`), nothing is dropped without a word.
    pub fn lose(&self, source: &str, what: &str, error: &str) -> R<()> {
        self.db.execute(
            "INSERT INTO lost (source, what, error, at) VALUES (?1, ?2, ?3, ?4)",
            params![source, what, error, now()],
        )?;
        Ok(())
    }

    /// What was given up, newest first.
    pub fn lost(&self, limit: usize) -> R<Vec<Lost>> {
        let mut st = self.db.prepare("SELECT source, what, error, at FROM lost ORDER BY id DESC LIMIT ?1")?;
        let rows = st.query_map(params![limit as i64], |r| {
            Ok(Lost { source: r.get(0)?, what: r.get(1)?, error: r.get(2)?, at: r.get(3)? })
        })?;
        rows.collect::<Result<_, _>>().map_err(QueueError::from)
    }

    /// Records a stretch of an inbox that its feed scrolled past, to backfill.
    pub fn gap_add(&self, source: &str, from_ts: i64, to_ts: i64, low: &str, high: &str) -> R<i64> {
        self.db.execute(
            "INSERT INTO gaps (source, from_ts, to_ts, low, high, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![source, from_ts, to_ts, low, high, now()],
        )?;
        Ok(self.db.last_insert_rowid())
    }

    /// The gaps of `source` (all of them, or with `due` only those whose retry time has come).
    pub fn gaps(&self, source: Option<&str>, due: bool) -> R<Vec<Gap>> {
        let mut st = self.db.prepare(
            "SELECT id, source, from_ts, to_ts, low, high, attempts, next_try, error, created FROM gaps
             WHERE (?1 IS NULL OR source=?1) AND (NOT ?2 OR next_try <= ?3) ORDER BY id",
        )?;
        let rows = st.query_map(params![source, due, now()], |r| {
            Ok(Gap {
                id: r.get(0)?,
                source: r.get(1)?,
                from_ts: r.get(2)?,
                to_ts: r.get(3)?,
                low: r.get(4)?,
                high: r.get(5)?,
                attempts: r.get(6)?,
                next_try: r.get(7)?,
                error: r.get(8)?,
                created: r.get(9)?,
            })
        })?;
        rows.collect::<Result<_, _>>().map_err(QueueError::from)
    }

    /// A backfill failed: counts the attempt and waits until `next_try`.
    pub fn gap_failed(&self, id: i64, error: &str, next_try: i64) -> R<()> {
        self.db.execute(
            "UPDATE gaps SET attempts=attempts+1, next_try=?2, error=?3 WHERE id=?1",
            params![id, next_try, error],
        )?;
        Ok(())
    }

    /// A gap is backfilled (or given up, with [`Queue::lose`]).
    pub fn gap_remove(&self, id: i64) -> R<()> {
        self.db.execute("DELETE FROM gaps WHERE id=?1", params![id])?;
        Ok(())
    }

    /// A mail of the outbox that belongs to no job's finish (a command's answer, a follow-up
    /// note); `job` is the job it is about (0: none). Ignored when its Message-ID exists.
    pub fn queue_mail(&self, job: i64, m: &NewMail) -> R<bool> {
        Ok(self.db.execute(
            "INSERT OR IGNORE INTO mails (job, message_id, sender, rcpt, raw, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![job, m.message_id, m.sender, m.rcpt.join(","), m.raw, MailState::Pending],
        )? == 1)
    }

    /// The outbox mail with this Message-ID (with or without the angle brackets).
    pub fn mail_by_msgid(&self, msgid: &str) -> R<Option<Mail>> {
        let id = format!("<{}>", msgid.trim_matches(['<', '>']));
        self.db
            .query_row(&format!("SELECT {MAIL_COLS} FROM mails WHERE message_id=?1"), params![id], mail_row)
            .optional()
            .map_err(QueueError::from)
    }

    /// Whether the command mail `msgid` was acted on already, and what came of it.
    pub fn command_outcome(&self, msgid: &str) -> R<Option<String>> {
        self.db
            .query_row("SELECT outcome FROM commands WHERE msgid=?1", params![msgid], |r| r.get(0))
            .optional()
            .map_err(QueueError::from)
    }

    /// Records a command as acted on; `false` when it was already.
    pub fn command_done(&self, msgid: &str, source: &str, sender: &str, command: &str, outcome: &str) -> R<bool> {
        Ok(self.db.execute(
            "INSERT OR IGNORE INTO commands (msgid, source, sender, command, outcome, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![msgid, source, sender, command, outcome, now()],
        )? == 1)
    }

    /// Remembers the message ids of a series job's thread (the first job keeps a message id).
    pub fn track(&self, job: i64, msgids: &[String]) -> R<()> {
        for m in msgids {
            self.db.execute("INSERT OR IGNORE INTO tracked (msgid, job) VALUES (?1, ?2)", params![m, job])?;
        }
        Ok(())
    }

    /// The series job whose thread holds `msgid`.
    pub fn tracked_job(&self, msgid: &str) -> R<Option<i64>> {
        self.db
            .query_row("SELECT job FROM tracked WHERE msgid=?1", params![msgid], |r| r.get(0))
            .optional()
            .map_err(QueueError::from)
    }

    /// Records the revision family and version of a series job.
    pub fn set_family(&self, job: i64, family: &str, version: u32) -> R<()> {
        self.db.execute(
            "INSERT INTO families (job, family, version) VALUES (?1, ?2, ?3) ON CONFLICT(job) DO UPDATE SET family=?2, version=?3",
            params![job, family, version],
        )?;
        Ok(())
    }

    /// The finished jobs of `family` (job, version), newest version first, then newest job.
    pub fn family_jobs(&self, family: &str) -> R<Vec<(i64, u32)>> {
        let mut st = self.db.prepare(
            "SELECT f.job, f.version FROM families f JOIN jobs j ON j.id=f.job WHERE f.family=?1 AND j.state=?2 ORDER BY f.version DESC, f.job DESC",
        )?;
        let rows = st.query_map(params![family, JobState::Done], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>().map_err(QueueError::from)
    }

    /// The family of a job, when it is a series job that finished.
    pub fn family_of(&self, job: i64) -> R<Option<String>> {
        self.db
            .query_row("SELECT family FROM families WHERE job=?1", params![job], |r| r.get(0))
            .optional()
            .map_err(QueueError::from)
    }

    /// Marks a finding (test and kind) of a family invalid: not reported again.
    pub fn invalid_add(&self, family: &str, test: &str, kind: &str, by: &str) -> R<()> {
        self.db.execute(
            "INSERT OR IGNORE INTO invalid (family, test, kind, by) VALUES (?1, ?2, ?3, ?4)",
            params![family, test, kind, by],
        )?;
        Ok(())
    }

    pub fn is_invalid(&self, family: &str, test: &str, kind: &str) -> R<bool> {
        self.db
            .query_row(
                "SELECT 1 FROM invalid WHERE family=?1 AND test=?2 AND kind=?3",
                params![family, test, kind],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(QueueError::from)
    }

    /// Adds an address (lowercase) that gets no further mail.
    pub fn optout_add(&self, addr: &str, by: &str) -> R<()> {
        self.db.execute(
            "INSERT OR IGNORE INTO optout (addr, by, at) VALUES (?1, ?2, ?3)",
            params![addr.to_ascii_lowercase(), by, now()],
        )?;
        Ok(())
    }

    pub fn optouts(&self) -> R<Vec<String>> {
        let mut st = self.db.prepare("SELECT addr FROM optout ORDER BY addr")?;
        let rows = st.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>().map_err(QueueError::from)
    }

    pub fn cursor(&self, name: &str) -> R<Option<String>> {
        self.db
            .query_row("SELECT value FROM cursors WHERE name=?1", params![name], |r| r.get(0))
            .optional()
            .map_err(QueueError::from)
    }

    pub fn set_cursor(&self, name: &str, value: &str) -> R<()> {
        self.db.execute(
            "INSERT INTO cursors (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value=?2",
            params![name, value],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> (tempfile::TempDir, Queue) {
        let d = tempfile::tempdir().unwrap();
        let q = Queue::open(&d.path().join("q.db")).unwrap();
        (d, q)
    }

    #[test]
    fn a_key_is_queued_once_and_claimed_in_order() {
        let (_d, mut q) = q();
        assert!(q.enqueue("a", JobKind::Series, "fsdevel", "A", "/a.mbox", "default").unwrap().is_some());
        assert!(q.enqueue("a", JobKind::Series, "fsdevel", "A again", "/a.mbox", "default").unwrap().is_none());
        q.enqueue("b", JobKind::Range, "linux", "B", "x..y", "linux").unwrap();
        let j = q.claim().unwrap().unwrap();
        assert_eq!((j.key.as_str(), j.state, j.attempts), ("a", JobState::Running, 1));
        assert_eq!(q.claim().unwrap().unwrap().key, "b");
        assert!(q.claim().unwrap().is_none());
    }

    #[test]
    fn a_crash_requeues_running_jobs_and_never_resends_a_mail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("q.db");
        {
            let mut q = Queue::open(&p).unwrap();
            q.enqueue("a", JobKind::Series, "s", "A", "/a", "t").unwrap();
            q.enqueue("b", JobKind::Series, "s", "B", "/b", "t").unwrap();
            let a = q.claim().unwrap().unwrap();
            let m = NewMail { message_id: "<r1@k>", sender: "k@x", rcpt: &["a@x".into()], raw: b"mail" };
            assert!(q.finish(a.id, "regression", None, None, Some(m)).unwrap());
            let mail = &q.mails_due(false).unwrap()[0];
            q.mail_sending(mail.id).unwrap();
            let _b = q.claim().unwrap().unwrap();
            // SIGKILL here: b running, the mail mid-send.
        }
        let mut q = Queue::open(&p).unwrap();
        assert_eq!(q.recover().unwrap(), (1, 1));
        let b = q.claim().unwrap().unwrap();
        assert_eq!((b.key.as_str(), b.attempts), ("b", 2));
        assert!(q.mails_due(true).unwrap().is_empty(), "an uncertain mail is not sent again");
        assert_eq!(q.mails().unwrap()[0].state, MailState::Uncertain);
        // The same report from a job run again is not queued twice.
        let m = NewMail { message_id: "<r1@k>", sender: "k@x", rcpt: &["a@x".into()], raw: b"mail" };
        assert!(!q.finish(b.id, "regression", None, None, Some(m)).unwrap());
        assert_eq!(q.mails().unwrap().len(), 1);
    }

    #[test]
    fn failed_sends_wait_for_their_retry_time() {
        let (_d, mut q) = q();
        q.enqueue("a", JobKind::Series, "s", "A", "/a", "t").unwrap();
        let a = q.claim().unwrap().unwrap();
        let m = NewMail { message_id: "<r@k>", sender: "k@x", rcpt: &["a@x".into(), "l@x".into()], raw: b"m" };
        q.finish(a.id, "regression", None, None, Some(m)).unwrap();
        let id = q.mails_due(false).unwrap()[0].id;
        q.mail_sending(id).unwrap();
        q.mail_retry(id, now() + 60, "connection refused", false).unwrap();
        assert!(q.mails_due(false).unwrap().is_empty());
        let due = q.mails_due(true).unwrap();
        assert_eq!((due[0].attempts, due[0].rcpt.as_str()), (1, "a@x,l@x"));
        q.mail_sent(id).unwrap();
        assert!(q.mails_due(true).unwrap().is_empty());
    }

    #[test]
    fn pending_threads_and_cursors() {
        let (_d, q) = q();
        q.pending_add("fsdevel", "m1@x").unwrap();
        q.pending_add("fsdevel", "m1@x").unwrap();
        assert_eq!(q.pending("fsdevel").unwrap().len(), 1);
        q.pending_remove("fsdevel", "m1@x").unwrap();
        assert!(q.pending("fsdevel").unwrap().is_empty());
        assert_eq!(q.cursor("tip:linux:master").unwrap(), None);
        q.set_cursor("tip:linux:master", "abc").unwrap();
        q.set_cursor("tip:linux:master", "def").unwrap();
        assert_eq!(q.cursor("tip:linux:master").unwrap().as_deref(), Some("def"));
    }

    #[test]
    fn a_thread_that_cannot_be_fetched_waits_for_its_retry_and_is_listed() {
        let (_d, q) = q();
        q.pending_add("fsdevel", "a'b@x").unwrap();
        q.pending_add("fsdevel", "c@x").unwrap();
        assert_eq!(q.pending_failed("fsdevel", "a'b@x", "HTTP 404", |n| now() + 60 * n).unwrap(), 1);
        let due: Vec<String> = q.pending("fsdevel").unwrap().into_iter().map(|p| p.0).collect();
        assert_eq!(due, ["c@x"], "not before its retry time");
        let all = q.pending_all().unwrap();
        assert_eq!((all[0].msgid.as_str(), all[0].attempts, all[0].error.as_deref()), ("a'b@x", 1, Some("HTTP 404")));
        assert_eq!(q.pending_failed("fsdevel", "a'b@x", "HTTP 404", |_| now() - 1).unwrap(), 2);
        assert_eq!(q.pending("fsdevel").unwrap().len(), 2, "due again");
        assert_eq!(q.pending_failed("fsdevel", "gone@x", "x", |_| 0).unwrap(), 0);
        q.lose("fsdevel", "thread <a'b@x>", "HTTP 404 after 12 tries").unwrap();
        let lost = q.lost(10).unwrap();
        assert_eq!((lost[0].what.as_str(), lost[0].error.as_str()), ("thread <a'b@x>", "HTTP 404 after 12 tries"));
    }

    #[test]
    fn gaps_are_kept_until_backfilled() {
        let (_d, q) = q();
        let id = q.gap_add("fsdevel", 100, 200, "low@x", "high@x").unwrap();
        q.gap_add("other", 1, 2, "l", "h").unwrap();
        assert_eq!(q.gaps(Some("fsdevel"), true).unwrap().len(), 1);
        q.gap_failed(id, "HTTP 501", now() + 60).unwrap();
        assert!(q.gaps(Some("fsdevel"), true).unwrap().is_empty(), "waits for its retry time");
        let g = &q.gaps(None, false).unwrap()[0];
        assert_eq!((g.from_ts, g.to_ts, g.low.as_str(), g.attempts), (100, 200, "low@x", 1));
        q.gap_remove(id).unwrap();
        assert_eq!(q.gaps(None, false).unwrap().len(), 1);
    }

    #[test]
    fn a_pending_table_of_an_older_service_gets_its_retry_columns() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("q.db");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch(
                "CREATE TABLE pending (source TEXT NOT NULL, msgid TEXT NOT NULL, first_seen INTEGER NOT NULL, PRIMARY KEY (source, msgid));
                 INSERT INTO pending VALUES ('fsdevel', 'old@x', 5);",
            )
            .unwrap();
        }
        let q = Queue::open(&p).unwrap();
        assert_eq!(q.pending("fsdevel").unwrap(), [("old@x".to_string(), 5)]);
        assert_eq!(q.pending_failed("fsdevel", "old@x", "e", |_| 0).unwrap(), 1);
        drop(q);
        Queue::open(&p).unwrap();
    }

    #[test]
    fn words_are_the_database_text() {
        for k in JobKind::ALL {
            assert_eq!(k.as_str().parse::<JobKind>().unwrap(), *k);
        }
        for k in JobState::ALL {
            assert_eq!(JobState::parse(k.as_str()), Some(*k));
        }
        for k in MailState::ALL {
            assert_eq!(MailState::parse(&k.to_string()), Some(*k));
        }
        assert_eq!(format!("[{:<8}]", JobState::Done), "[done    ]");
        assert_eq!("bogus".parse::<MailState>().unwrap_err().to_string(), "MailState: unknown value \"bogus\"");
    }

    #[test]
    fn a_database_written_as_text_loads() {
        // Rows as an older service (strings everywhere) left them.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("q.db");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch(SCHEMA).unwrap();
            c.execute_batch(
                "INSERT INTO jobs (key, kind, source, title, input, tree, state, attempts, status, created, updated)
                   VALUES ('k1', 'series', 's', 'T', '/a', 't', 'done', 1, 'clean', 1, 2),
                          ('k2', 'range', 't', 'R', 'a..b', 't', 'running', 1, NULL, 1, 2);
                 INSERT INTO mails (job, message_id, sender, rcpt, raw, state) VALUES (1, '<m@k>', 'k@x', 'a@x', X'00', 'sent');",
            )
            .unwrap();
        }
        let q = Queue::open(&p).unwrap();
        let jobs = q.jobs(10).unwrap();
        assert_eq!((jobs[1].kind, jobs[1].state), (JobKind::Series, JobState::Done));
        assert_eq!((jobs[0].kind, jobs[0].state), (JobKind::Range, JobState::Running));
        assert_eq!(q.mails().unwrap()[0].state, MailState::Sent);
        assert_eq!((q.count(JobState::Done).unwrap(), q.count(JobState::Queued).unwrap()), (1, 0));
        q.recover().unwrap();
        let state: String = q.db.query_row("SELECT state FROM jobs WHERE key='k2'", [], |r| r.get(0)).unwrap();
        assert_eq!(state, "queued", "stored as the same word");
        q.db.execute("UPDATE jobs SET kind='other' WHERE key='k1'", []).unwrap();
        let e = q.job(1).unwrap_err().to_string();
        assert!(e.starts_with("queue database: ") && e.contains("\"other\""), "{e}");
    }

    #[test]
    fn commands_families_invalid_findings_and_optouts_persist() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("q.db");
        {
            let mut q = Queue::open(&p).unwrap();
            let a = q.enqueue("a", JobKind::Series, "s", "A", "/a", "t").unwrap().unwrap();
            q.track(a, &["cover@x".into(), "p1@x".into()]).unwrap();
            q.claim().unwrap();
            q.finish(a, "regression", None, None, None).unwrap();
            q.set_family(a, "change-id:x|a@x", 1).unwrap();
            assert!(q.command_done("c1@x", "s", "b@x", "#kbot test", "done: job 2").unwrap());
            assert!(!q.command_done("c1@x", "s", "b@x", "#kbot test", "again").unwrap());
            q.invalid_add("change-id:x|a@x", "t1", "hang", "c2@x").unwrap();
            q.optout_add("Bob@X", "c3@x").unwrap();
            let m = NewMail { message_id: "<ans@k>", sender: "k@x", rcpt: &["b@x".into()], raw: b"m" };
            assert!(q.queue_mail(0, &m).unwrap());
            assert!(!q.queue_mail(0, &m).unwrap());
        }
        let q = Queue::open(&p).unwrap();
        assert_eq!(q.command_outcome("c1@x").unwrap().as_deref(), Some("done: job 2"));
        assert_eq!(q.command_outcome("c9@x").unwrap(), None);
        assert_eq!(q.tracked_job("p1@x").unwrap(), Some(1));
        assert_eq!(q.family_jobs("change-id:x|a@x").unwrap(), [(1, 1)]);
        assert_eq!(q.family_of(1).unwrap().as_deref(), Some("change-id:x|a@x"));
        assert!(q.is_invalid("change-id:x|a@x", "t1", "hang").unwrap());
        assert!(!q.is_invalid("change-id:x|a@x", "t1", "oops").unwrap());
        assert_eq!(q.optouts().unwrap(), ["bob@x"]);
        assert_eq!(q.mail_by_msgid("ans@k").unwrap().unwrap().rcpt, "b@x");
    }

    #[test]
    fn errors_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), "").unwrap();
        let e = Queue::open(&d.path().join("f/sub/q.db")).err().unwrap().to_string();
        assert!(e.starts_with(&format!("cannot create {}: ", d.path().join("f/sub").display())), "{e}");
    }
}
