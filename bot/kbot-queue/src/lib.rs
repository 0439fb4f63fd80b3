//! The service's state, in one SQLite database (WAL, every change a transaction), so a
//! service killed at any point resumes where it was:
//!
//! - `jobs`: one row per (series, revision) or tested branch range, keyed so the same work is
//!   never queued twice; `running` rows of a dead service go back to `queued` on start.
//! - `mails`: the outbox. A report is inserted in the same transaction that finishes its job,
//!   under a stable Message-ID (unique), so a job run again after a crash cannot add a second
//!   copy. A mail is marked `sending` before SMTP and `sent` after; one left `sending` by a
//!   crash is `uncertain` on restart and is not sent again (never twice), but listed.
//! - `pending`: threads seen but not yet queued (waiting for the rest of the series).
//! - `cursors`: small named values (last tested branch tips, first start).

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub key: String,
    /// `series` or `range`.
    pub kind: String,
    /// The inbox or tree it came from.
    pub source: String,
    pub title: String,
    /// The mbox path (series) or `BASE..TIP` (range).
    pub input: String,
    /// The tree name it is tested on.
    pub tree: String,
    /// `queued`, `running`, `done`.
    pub state: String,
    pub attempts: i64,
    /// kbot.result/v1 status once done (`clean`, `regression`, `error`, ...).
    pub status: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub created: i64,
    pub updated: i64,
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
    /// `pending`, `sending`, `sent`, `uncertain`, `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_try: i64,
    pub error: Option<String>,
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

type R<T> = Result<T, String>;

fn e(x: rusqlite::Error) -> String {
    format!("queue database: {x}")
}

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
";

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
            std::fs::create_dir_all(d).map_err(|x| format!("cannot create {}: {x}", d.display()))?;
        }
        let db = Connection::open(path).map_err(|x| format!("cannot open {}: {x}", path.display()))?;
        db.busy_timeout(std::time::Duration::from_secs(10)).map_err(e)?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(e)?;
        db.pragma_update(None, "synchronous", "FULL").map_err(e)?;
        db.execute_batch(SCHEMA).map_err(e)?;
        Ok(Queue { db })
    }

    /// After a crash: running jobs are queued again; mails caught mid-send are uncertain.
    /// Returns (jobs requeued, mails made uncertain).
    pub fn recover(&self) -> R<(usize, usize)> {
        let t = now();
        let j = self
            .db
            .execute("UPDATE jobs SET state='queued', updated=?1 WHERE state='running'", params![t])
            .map_err(e)?;
        let m = self
            .db
            .execute(
                "UPDATE mails SET state='uncertain', error='the service stopped during SMTP; not resent (it may have arrived)' WHERE state='sending'",
                [],
            )
            .map_err(e)?;
        // GitHub posts caught mid-way: not posted again either.
        self.db
            .execute("UPDATE cursors SET value='uncertain' WHERE name LIKE 'gh:%' AND value='posting'", [])
            .map_err(e)?;
        Ok((j, m))
    }

    /// Queues a job unless one with `key` exists. Returns its id when it was added.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(&self, key: &str, kind: &str, source: &str, title: &str, input: &str, tree: &str) -> R<Option<i64>> {
        let t = now();
        let n = self
            .db
            .execute(
                "INSERT OR IGNORE INTO jobs (key, kind, source, title, input, tree, state, created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?7)",
                params![key, kind, source, title, input, tree, t],
            )
            .map_err(e)?;
        Ok((n == 1).then(|| self.db.last_insert_rowid()))
    }

    pub fn has_job(&self, key: &str) -> R<bool> {
        self.db
            .query_row("SELECT 1 FROM jobs WHERE key=?1", params![key], |_| Ok(()))
            .optional()
            .map_err(e)
            .map(|o| o.is_some())
    }

    /// Takes the oldest queued job and marks it running.
    pub fn claim(&mut self) -> R<Option<Job>> {
        let tx = self.db.transaction().map_err(e)?;
        let job = tx
            .query_row(&format!("SELECT {JOB_COLS} FROM jobs WHERE state='queued' ORDER BY id LIMIT 1"), [], job_row)
            .optional()
            .map_err(e)?;
        if let Some(j) = &job {
            tx.execute(
                "UPDATE jobs SET state='running', attempts=attempts+1, updated=?2 WHERE id=?1",
                params![j.id, now()],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)?;
        Ok(job.map(|j| Job { state: "running".into(), attempts: j.attempts + 1, ..j }))
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
        let tx = self.db.transaction().map_err(e)?;
        tx.execute(
            "UPDATE jobs SET state='done', status=?2, result=?3, error=?4, updated=?5 WHERE id=?1",
            params![id, status, result, error, now()],
        )
        .map_err(e)?;
        let mut queued = false;
        if let Some(m) = mail {
            queued = tx
                .execute(
                    "INSERT OR IGNORE INTO mails (job, message_id, sender, rcpt, raw, state) VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
                    params![id, m.message_id, m.sender, m.rcpt.join(","), m.raw],
                )
                .map_err(e)?
                == 1;
        }
        tx.commit().map_err(e)?;
        Ok(queued)
    }

    /// Puts a running job back (a graceful stop interrupted it).
    pub fn requeue(&self, id: i64) -> R<()> {
        self.db.execute("UPDATE jobs SET state='queued', updated=?2 WHERE id=?1", params![id, now()]).map_err(e)?;
        Ok(())
    }

    pub fn jobs(&self, limit: usize) -> R<Vec<Job>> {
        let mut st = self.db.prepare(&format!("SELECT {JOB_COLS} FROM jobs ORDER BY id DESC LIMIT ?1")).map_err(e)?;
        let rows = st.query_map(params![limit as i64], job_row).map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    pub fn job(&self, id: i64) -> R<Option<Job>> {
        self.db
            .query_row(&format!("SELECT {JOB_COLS} FROM jobs WHERE id=?1"), params![id], job_row)
            .optional()
            .map_err(e)
    }

    pub fn count(&self, state: &str) -> R<i64> {
        self.db.query_row("SELECT COUNT(*) FROM jobs WHERE state=?1", params![state], |r| r.get(0)).map_err(e)
    }

    /// Mails to send now: pending with their retry time reached (`all`: regardless of it).
    pub fn mails_due(&self, all: bool) -> R<Vec<Mail>> {
        let mut st = self
            .db
            .prepare(&format!(
                "SELECT {MAIL_COLS} FROM mails WHERE state='pending' AND (?1 OR next_try <= ?2) ORDER BY id"
            ))
            .map_err(e)?;
        let rows = st.query_map(params![all, now()], mail_row).map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    pub fn mails(&self) -> R<Vec<Mail>> {
        let mut st = self.db.prepare(&format!("SELECT {MAIL_COLS} FROM mails ORDER BY id")).map_err(e)?;
        let rows = st.query_map([], mail_row).map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    /// The mails of one job.
    pub fn mails_of(&self, job: i64) -> R<Vec<Mail>> {
        let mut st = self.db.prepare(&format!("SELECT {MAIL_COLS} FROM mails WHERE job=?1 ORDER BY id")).map_err(e)?;
        let rows = st.query_map(params![job], mail_row).map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    pub fn mail_sending(&self, id: i64) -> R<()> {
        self.db.execute("UPDATE mails SET state='sending', attempts=attempts+1 WHERE id=?1", params![id]).map_err(e)?;
        Ok(())
    }

    pub fn mail_sent(&self, id: i64) -> R<()> {
        self.db.execute("UPDATE mails SET state='sent', error=NULL WHERE id=?1", params![id]).map_err(e)?;
        Ok(())
    }

    /// SMTP did not take it: try again at `next_try`, or give up (`failed`) when `give_up`.
    pub fn mail_retry(&self, id: i64, next_try: i64, error: &str, give_up: bool) -> R<()> {
        self.db
            .execute(
                "UPDATE mails SET state=?4, next_try=?2, error=?3 WHERE id=?1",
                params![id, next_try, error, if give_up { "failed" } else { "pending" }],
            )
            .map_err(e)?;
        Ok(())
    }

    /// Remembers a thread to look at again until it is complete and its grace is over.
    pub fn pending_add(&self, source: &str, msgid: &str) -> R<()> {
        self.db
            .execute(
                "INSERT OR IGNORE INTO pending (source, msgid, first_seen) VALUES (?1, ?2, ?3)",
                params![source, msgid, now()],
            )
            .map_err(e)?;
        Ok(())
    }

    pub fn pending(&self, source: &str) -> R<Vec<(String, i64)>> {
        let mut st =
            self.db.prepare("SELECT msgid, first_seen FROM pending WHERE source=?1 ORDER BY first_seen").map_err(e)?;
        let rows = st.query_map(params![source], |r| Ok((r.get(0)?, r.get(1)?))).map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    pub fn pending_remove(&self, source: &str, msgid: &str) -> R<()> {
        self.db.execute("DELETE FROM pending WHERE source=?1 AND msgid=?2", params![source, msgid]).map_err(e)?;
        Ok(())
    }

    pub fn cursor(&self, name: &str) -> R<Option<String>> {
        self.db.query_row("SELECT value FROM cursors WHERE name=?1", params![name], |r| r.get(0)).optional().map_err(e)
    }

    pub fn set_cursor(&self, name: &str, value: &str) -> R<()> {
        self.db
            .execute(
                "INSERT INTO cursors (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value=?2",
                params![name, value],
            )
            .map_err(e)?;
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
        assert!(q.enqueue("a", "series", "fsdevel", "A", "/a.mbox", "default").unwrap().is_some());
        assert!(q.enqueue("a", "series", "fsdevel", "A again", "/a.mbox", "default").unwrap().is_none());
        q.enqueue("b", "range", "linux", "B", "x..y", "linux").unwrap();
        let j = q.claim().unwrap().unwrap();
        assert_eq!((j.key.as_str(), j.state.as_str(), j.attempts), ("a", "running", 1));
        assert_eq!(q.claim().unwrap().unwrap().key, "b");
        assert!(q.claim().unwrap().is_none());
    }

    #[test]
    fn a_crash_requeues_running_jobs_and_never_resends_a_mail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("q.db");
        {
            let mut q = Queue::open(&p).unwrap();
            q.enqueue("a", "series", "s", "A", "/a", "t").unwrap();
            q.enqueue("b", "series", "s", "B", "/b", "t").unwrap();
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
        assert_eq!(q.mails().unwrap()[0].state, "uncertain");
        // The same report from a job run again is not queued twice.
        let m = NewMail { message_id: "<r1@k>", sender: "k@x", rcpt: &["a@x".into()], raw: b"mail" };
        assert!(!q.finish(b.id, "regression", None, None, Some(m)).unwrap());
        assert_eq!(q.mails().unwrap().len(), 1);
    }

    #[test]
    fn failed_sends_wait_for_their_retry_time() {
        let (_d, mut q) = q();
        q.enqueue("a", "series", "s", "A", "/a", "t").unwrap();
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
}
