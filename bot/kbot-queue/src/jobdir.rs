//! The layout of the service's state directory on disk, in one place for the service that
//! writes it and the dashboard that reads it.

use kbot_report::CheckResult;
use std::path::{Path, PathBuf};

/// The queue's database in a state directory.
pub fn queue_path(state: &Path) -> PathBuf {
    state.join("queue.db")
}

/// The files of one job, `<state>/jobs/<id>/`: what `kbot check` wrote (`result.json`,
/// `report.md`), its output (`log`) and what the service derived from them (`kcidb.json`).
/// The mail of a job is in the queue ([`crate::Queue::mails_of`]), not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDir {
    dir: PathBuf,
}

impl JobDir {
    /// The folder of every job's files (and of the series' mbox copies): `<state>/jobs`.
    pub fn root(state: &Path) -> PathBuf {
        state.join("jobs")
    }

    /// Job `id` of the service whose state directory is `state`.
    pub fn new(state: &Path, id: i64) -> JobDir {
        JobDir { dir: JobDir::root(state).join(id.to_string()) }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The kbot.result/v1 document (`kbot check --json`).
    pub fn result_json(&self) -> PathBuf {
        self.dir.join("result.json")
    }

    /// The Markdown report (`kbot check --report`).
    pub fn report_md(&self) -> PathBuf {
        self.dir.join("report.md")
    }

    /// Standard output and error of `kbot check`.
    pub fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The run as KCIDB data.
    pub fn kcidb_json(&self) -> PathBuf {
        self.dir.join("kcidb.json")
    }

    /// The job's result, parsed; `None` when there is none (yet) or it does not parse.
    pub fn load_result(&self) -> Option<CheckResult> {
        CheckResult::load(self.result_json())
    }

    /// The job's output so far.
    pub fn read_log(&self) -> Option<String> {
        std::fs::read_to_string(self.log()).ok()
    }

    /// The last `n` lines of the job's output.
    pub fn log_tail(&self, n: usize) -> Option<String> {
        let log = self.read_log()?;
        let mut last: Vec<&str> = log.lines().rev().take(n).collect();
        last.reverse();
        Some(last.join("\n"))
    }

    /// The line of the output that says why a job failed: its last error line, else its last
    /// line that is not blank.
    pub fn last_error_line(&self) -> Option<String> {
        let l = self.read_log()?;
        let last = l.lines().rev().find(|l| l.starts_with("kbot: error:") || l.starts_with("error:"));
        last.or_else(|| l.lines().rev().find(|l| !l.trim().is_empty())).map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_log_reading() {
        let d = tempfile::tempdir().unwrap();
        let j = JobDir::new(d.path(), 7);
        assert_eq!(j.path(), d.path().join("jobs/7"));
        assert_eq!(j.result_json(), d.path().join("jobs/7/result.json"));
        assert_eq!(j.report_md(), d.path().join("jobs/7/report.md"));
        assert_eq!(j.kcidb_json(), d.path().join("jobs/7/kcidb.json"));
        assert_eq!(queue_path(d.path()), d.path().join("queue.db"));
        assert!(j.load_result().is_none() && j.read_log().is_none() && j.last_error_line().is_none());
        std::fs::create_dir_all(j.path()).unwrap();
        std::fs::write(j.log(), "a\nerror: first\nb\nkbot: error: second\nc\n\n").unwrap();
        assert_eq!(j.last_error_line().as_deref(), Some("kbot: error: second"));
        assert_eq!(j.log_tail(2).as_deref(), Some("c\n"));
        std::fs::write(j.log(), "x\ny\n  \n").unwrap();
        assert_eq!(j.last_error_line().as_deref(), Some("y"));
        std::fs::write(j.result_json(), "{").unwrap();
        assert!(j.load_result().is_none());
    }
}
