//! A Slurm cluster through its command line: `sbatch --parsable` submits, `squeue --json`
//! lists (kbot filters by job name itself), `scancel` cancels. Every command gets the
//! cluster's `SLURM_CONF`; kbot never writes the cluster's configuration.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What went wrong talking to the cluster, one line.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("no Slurm cluster: {0}")]
    NoCluster(String),
    #[error("cannot run {cmd}: {source} (install slurm-client: `kbot setup` as root)")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd} failed: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error("{cmd}: unexpected output: {detail}")]
    Output { cmd: String, detail: String },
}

/// A cluster, as its client commands find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster's `slurm.conf` (read by the commands, never written by kbot).
    pub conf: PathBuf,
}

/// One job as `squeue --json` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmJob {
    pub id: u64,
    pub name: String,
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, `NODE_FAIL`, ...
    pub state: String,
    /// The node(s) it runs on; empty while pending.
    pub node: String,
    /// Why it waits or ended (`Resources`, `None`, ...).
    pub reason: String,
    /// How often Slurm requeued it (a node failed, `scontrol requeue`).
    pub restarts: u64,
}

impl SlurmJob {
    /// Still to run or running: not to be submitted again.
    pub fn is_live(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "REQUEUED"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESIZING"
                | "SUSPENDED"
                | "STOPPED"
                | "SIGNALING"
                | "STAGE_OUT"
                | "RESV_DEL_HOLD"
        )
    }

    /// `job 12 RUNNING on node1`, `job 13 PENDING (Resources)`.
    pub fn describe(&self) -> String {
        let mut s = format!("job {} {}", self.id, self.state);
        if !self.node.is_empty() {
            s += &format!(" on {}", self.node);
        }
        if !self.reason.is_empty() && self.reason != "None" {
            s += &format!(" ({})", self.reason);
        }
        if self.restarts > 0 {
            s += &format!(", requeued {}x by Slurm", self.restarts);
        }
        s
    }
}

/// What to submit: one arch of one kbot job.
#[derive(Debug, Clone)]
pub struct Submit<'a> {
    pub name: &'a str,
    pub partition: &'a str,
    pub constraint: Option<&'a str>,
    /// `--time`, in minutes (at least 1).
    pub time_min: u64,
    /// The batch script (on the shared storage).
    pub script: &'a Path,
    /// Standard output and error (appended to across requeues).
    pub output: &'a Path,
    pub workdir: &'a Path,
    /// Variables of the service's environment the job must not see (credentials).
    pub env_remove: &'a [String],
}

impl Cluster {
    /// The cluster as Slurm's commands find it: `SLURM_CONF` (given as `slurm_conf`), else
    /// `/etc/slurm/slurm.conf`.
    pub fn find(slurm_conf: Option<PathBuf>) -> Result<Cluster, SlurmError> {
        let (conf, from) = match slurm_conf {
            Some(p) => (p, "SLURM_CONF"),
            None => (PathBuf::from("/etc/slurm/slurm.conf"), "the default (SLURM_CONF is not set)"),
        };
        if !conf.is_file() {
            return Err(SlurmError::NoCluster(format!(
                "{} ({from}) is not a file; point SLURM_CONF at the cluster's slurm.conf",
                conf.display()
            )));
        }
        Ok(Cluster { conf })
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    fn run(&self, mut c: Command) -> Result<String, SlurmError> {
        let cmd = format!("{:?}", c.get_program());
        let o = c.output().map_err(|source| SlurmError::Spawn { cmd: cmd.clone(), source })?;
        if !o.status.success() {
            let stderr = String::from_utf8_lossy(&o.stderr);
            let line = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            return Err(SlurmError::Failed { cmd, stderr: format!("{line} ({})", o.status) });
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// The partition exists and the controller answers (at the service's start).
    pub fn check_partition(&self, partition: &str) -> Result<(), SlurmError> {
        let mut c = self.cmd("sinfo");
        c.args(["--noheader", "--format=%P", "--partition", partition]);
        let out = self.run(c)?;
        if !out.lines().any(|l| l.trim().trim_end_matches('*') == partition) {
            return Err(SlurmError::NoCluster(format!(
                "the cluster of {} has no partition {partition:?} (executor.slurm.partition)",
                self.conf.display()
            )));
        }
        Ok(())
    }

    /// Submits a batch job; its id.
    pub fn submit(&self, s: &Submit) -> Result<u64, SlurmError> {
        let mut c = self.cmd("sbatch");
        c.arg("--parsable")
            .arg(format!("--job-name={}", s.name))
            .arg(format!("--partition={}", s.partition))
            .arg(format!("--time={}", s.time_min.max(1)))
            .arg("--requeue")
            .arg("--open-mode=append")
            .arg("--nodes=1")
            .arg("--ntasks=1")
            .arg(format!("--output={}", s.output.display()))
            .arg(format!("--chdir={}", s.workdir.display()));
        if let Some(k) = s.constraint {
            c.arg(format!("--constraint={k}"));
        }
        c.arg(s.script);
        for v in s.env_remove {
            c.env_remove(v);
        }
        let out = self.run(c)?;
        // `--parsable`: `<id>` or `<id>;<cluster>`.
        let id = out.trim().split(';').next().unwrap_or("");
        id.parse().map_err(|_| SlurmError::Output { cmd: "sbatch".into(), detail: out.trim().to_string() })
    }

    /// Every job the controller knows (pending, running, and ended within `MinJobAge`).
    pub fn jobs(&self) -> Result<Vec<SlurmJob>, SlurmError> {
        let mut c = self.cmd("squeue");
        c.arg("--json");
        let out = self.run(c)?;
        parse_squeue(&out).map_err(|detail| SlurmError::Output { cmd: "squeue --json".into(), detail })
    }

    pub fn cancel(&self, id: u64) -> Result<(), SlurmError> {
        let mut c = self.cmd("scancel");
        c.arg(id.to_string());
        self.run(c).map(|_| ())
    }
}

/// The jobs of `squeue --json` (Slurm 22.05's shape; later releases' `job_state` lists and
/// `{number}` objects are read too).
pub fn parse_squeue(json: &str) -> Result<Vec<SlurmJob>, String> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        jobs: Vec<Raw>,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Raw {
        job_id: serde_json::Value,
        #[serde(default)]
        name: String,
        #[serde(default)]
        job_state: serde_json::Value,
        #[serde(default)]
        nodes: String,
        #[serde(default)]
        state_reason: String,
        #[serde(default)]
        restart_cnt: serde_json::Value,
    }
    fn number(v: &serde_json::Value) -> Option<u64> {
        v.as_u64().or_else(|| v.get("number").and_then(|n| n.as_u64()))
    }
    let doc: Doc = serde_json::from_str(json).map_err(|e| e.to_string())?;
    // A controller that does not answer gives an empty list and an error, with exit status 0:
    // never read as "no jobs" (that would resubmit every job).
    if let Some(e) = doc.errors.first() {
        let what =
            ["error", "description"].iter().find_map(|k| e.get(*k).and_then(|v| v.as_str()).filter(|s| !s.is_empty()));
        return Err(format!(
            "the controller answered with an error: {}",
            what.map_or_else(|| e.to_string(), str::to_string)
        ));
    }
    doc.jobs
        .into_iter()
        .map(|r| {
            let state = match &r.job_state {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) => a.first().and_then(|s| s.as_str()).unwrap_or("").to_string(),
                _ => String::new(),
            };
            Ok(SlurmJob {
                id: number(&r.job_id).ok_or_else(|| format!("job_id {}", r.job_id))?,
                name: r.name,
                state,
                node: r.nodes,
                reason: r.state_reason,
                restarts: number(&r.restart_cnt).unwrap_or(0),
            })
        })
        .collect()
}

/// What to do about one arch's Slurm job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Its result is there: never run again.
    Done,
    /// Slurm has it (pending, running, requeued): wait.
    Wait,
    /// Submit it (again): the attempt number.
    Submit(u32),
    /// It ended without a result and is not tried again: why.
    Fail(String),
}

/// The pure decision for one arch: `result` (its result file exists), `job` (what Slurm
/// shows under its name, the newest), `submits` (how often kbot submitted it so far) and
/// `attempts` (at most). A job Slurm lost, or that failed without a result, is submitted
/// again until `attempts`; one cancelled in Slurm or over its time limit is not (an
/// operator's decision; the same time limit again would end the same way).
pub fn step(result: bool, job: Option<&SlurmJob>, submits: u32, attempts: u32) -> Step {
    if result {
        return Step::Done;
    }
    let why = match job {
        Some(j) if j.is_live() => return Step::Wait,
        Some(j) if j.state == "CANCELLED" => {
            return Step::Fail(format!("Slurm job {} was cancelled (scancel or an administrator)", j.id))
        }
        Some(j) if j.state == "TIMEOUT" || j.state == "DEADLINE" => {
            return Step::Fail(format!("Slurm job {} hit its time limit", j.id))
        }
        Some(j) => format!("Slurm job {} ended {} without a result", j.id, j.state),
        None if submits == 0 => return Step::Submit(1),
        None => "Slurm lost the job (not in squeue) and it left no result".to_string(),
    };
    if submits < attempts {
        Step::Submit(submits + 1)
    } else {
        Step::Fail(format!("{why}; gave up after {submits} attempt(s)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from Slurm 22.05 (Debian 12) on the test cluster, trimmed.
    const SQUEUE: &str = r#"{"meta":{"plugin":{"type":"openapi\/dbv0.0.38"},"Slurm":{"version":{"major":22,"micro":8,"minor":5},"release":"22.05.8"}},"errors":[],
      "jobs":[{"job_id":1,"name":"kbot-0123456789abcdef-x86_64","job_state":"RUNNING","nodes":"localhost","state_reason":"None","restart_cnt":0,"partition":"kbot"},
              {"job_id":2,"name":"kbot-0123456789abcdef-arm64","job_state":"PENDING","nodes":"","state_reason":"Resources","restart_cnt":1}]}"#;

    #[test]
    fn squeue_json() {
        let j = parse_squeue(SQUEUE).unwrap();
        assert_eq!(j.len(), 2);
        assert_eq!(j[0].describe(), "job 1 RUNNING on localhost");
        assert_eq!(j[1].describe(), "job 2 PENDING (Resources), requeued 1x by Slurm");
        assert!(j[0].is_live() && j[1].is_live());
        let newer = r#"{"jobs":[{"job_id":{"set":true,"number":7},"name":"n","job_state":["COMPLETED"],"restart_cnt":{"number":0}}]}"#;
        let j = parse_squeue(newer).unwrap();
        assert_eq!((j[0].id, j[0].state.as_str(), j[0].is_live()), (7, "COMPLETED", false));
        assert!(parse_squeue("not json").is_err());
        let down =
            r#"{"errors":[{"error":"Unable to contact slurm controller (connect failure)","errno":1007}],"jobs":[]}"#;
        assert!(parse_squeue(down).unwrap_err().contains("Unable to contact slurm controller"));
    }

    fn job(state: &str) -> SlurmJob {
        SlurmJob {
            id: 5,
            name: "n".into(),
            state: state.into(),
            node: String::new(),
            reason: String::new(),
            restarts: 0,
        }
    }

    #[test]
    fn steps() {
        // A result is never rerun, whatever Slurm says.
        assert_eq!(step(true, None, 0, 3), Step::Done);
        assert_eq!(step(true, Some(&job("FAILED")), 3, 3), Step::Done);
        // Nothing yet: submit; Slurm has it: wait (a restarted service adopts it).
        assert_eq!(step(false, None, 0, 3), Step::Submit(1));
        assert_eq!(step(false, Some(&job("PENDING")), 1, 3), Step::Wait);
        assert_eq!(step(false, Some(&job("REQUEUED")), 1, 3), Step::Wait);
        // Lost, or ended without a result: again, up to the attempts.
        assert_eq!(step(false, None, 1, 3), Step::Submit(2));
        assert_eq!(step(false, Some(&job("NODE_FAIL")), 2, 3), Step::Submit(3));
        assert!(matches!(step(false, Some(&job("FAILED")), 3, 3), Step::Fail(w) if w.contains("gave up after 3")));
        // Cancelled or timed out: an error with the reason, not resubmitted.
        assert!(matches!(step(false, Some(&job("CANCELLED")), 1, 3), Step::Fail(w) if w.contains("cancelled")));
        assert!(matches!(step(false, Some(&job("TIMEOUT")), 1, 3), Step::Fail(w) if w.contains("time limit")));
    }

    #[test]
    fn no_cluster_is_one_clear_line() {
        let e = Cluster::find(Some("/nonexistent/slurm.conf".into())).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/slurm.conf (SLURM_CONF) is not a file"), "{e}");
    }
}
