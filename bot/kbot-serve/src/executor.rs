//! Where a job runs: a `kbot check` child process of the service (`executor: local`), or one
//! Slurm job per arch on an existing cluster (`executor: slurm`). The service's loop is the
//! same for both: it starts a job ([`Work`]), polls it until it is finished, then reads
//! `jobs/<id>/result.json` (or the log's last error line) and finishes it in the queue.
//!
//! Slurm: each arch's job runs `kbot check --arch <arch> --json <shared>/<name>/<arch>.json`
//! (written under a temporary name and renamed) with its output in `<arch>.log`, named
//! `<name>-<arch>` where `<name>` is derived from the kbot job's key. Every poll decides per
//! arch with [`kbot_executor::slurm::step`]: a result is never rerun; a job Slurm still has
//! (also one submitted by a service that was killed and restarted) is waited for, never
//! submitted twice; a job Slurm lost or that ended without a result is submitted again up to
//! `attempts` (counted in `<arch>.submits` on the shared storage, so a restart keeps the
//! count); a cancelled or timed-out one is an error with its reason. When every arch is
//! settled, the results are merged ([`kbot_executor::merge`]) into `result.json` and
//! `report.md` of the job, as one `kbot check` of all arches would have written them.

use kbot_config::SlurmConfig;
use kbot_executor::slurm::{step, Cluster, SlurmJob, Step, Submit};
use kbot_queue::{Job, JobDir, Queue};
use kbot_report::{ArchResult, CheckResult};
use kbot_runner::write_atomic;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// A started job.
pub(crate) enum Work {
    Local(Child),
    Slurm(SlurmRun),
}

/// One kbot job on Slurm: its name and shared directory, its arches.
pub(crate) struct SlurmRun {
    name: String,
    dir: PathBuf,
    arches: Vec<String>,
    last_where: String,
}

/// The Slurm executor of a service: the cluster, the settings, the last `squeue`.
pub(crate) struct SlurmExec {
    cluster: Cluster,
    cfg: SlurmConfig,
    time_min: u64,
    seen: Vec<SlurmJob>,
    seen_at: Option<Instant>,
}

/// How often `squeue --json` is asked while jobs run.
const SQUEUE_EVERY: Duration = Duration::from_secs(2);

impl SlurmExec {
    /// The cluster as Slurm's commands find it, checked to answer and to have the partition.
    pub fn open(cfg: &SlurmConfig, job_timeout: Duration) -> Result<SlurmExec, String> {
        let cluster = Cluster::find(std::env::var_os("SLURM_CONF").map(PathBuf::from))
            .map_err(|e| format!("executor.slurm: {e}"))?;
        cluster.check_partition(&cfg.partition).map_err(|e| format!("executor.slurm: {e}"))?;
        std::fs::create_dir_all(&cfg.shared_dir)
            .map_err(|e| format!("executor.slurm.shared_dir {}: {e}", cfg.shared_dir.display()))?;
        Ok(SlurmExec {
            cluster,
            cfg: cfg.clone(),
            time_min: job_timeout.as_secs().div_ceil(60).max(1),
            seen: Vec::new(),
            seen_at: None,
        })
    }

    /// The Slurm name of a kbot job (its arches' jobs are `<name>-<arch>`): the same after a
    /// restart, different for another service (state directory) with the same key.
    pub fn name(state: &Path, key: &str) -> String {
        let mut id = state.display().to_string().into_bytes();
        id.push(0);
        id.extend_from_slice(key.as_bytes());
        format!("kbot-{:016x}", kbot_kernel::fnv64(&id))
    }

    /// Prepares the job's shared directory and its arches' batch scripts; nothing is
    /// submitted here (the first [`SlurmExec::poll`] looks the names up first).
    /// `argv(arch, input, json)` is the `kbot check` command line of one arch.
    pub fn start(
        &mut self,
        job: &Job,
        state: &Path,
        arches: &[String],
        argv: impl Fn(&str, &str, &Path) -> Result<Vec<String>, String>,
    ) -> Result<SlurmRun, String> {
        let name = SlurmExec::name(state, &job.key);
        let dir = self.cfg.shared_dir.join(&name);
        let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
        // A series' mbox goes with the job: the nodes see the shared storage, not the state.
        let input = match job.kind {
            kbot_queue::JobKind::Series => {
                let copy = dir.join("series.mbox");
                let data = std::fs::read(&job.input).map_err(|e| err(Path::new(&job.input), e))?;
                write_atomic(&copy, &data).map_err(|e| err(&copy, e))?;
                copy.display().to_string()
            }
            kbot_queue::JobKind::Range => job.input.clone(),
        };
        for a in arches {
            let words = argv(a, &input, &dir.join(format!("{a}.json")))?;
            let script = format!(
                "#!/bin/sh\n# kbot job {} ({}), arch {a}\nexec {}\n",
                job.id,
                job.key.replace('\n', " "),
                kbot_report::shell_line(&words)
            );
            let p = dir.join(format!("{a}.sh"));
            write_atomic(&p, script.as_bytes()).map_err(|e| err(&p, e))?;
        }
        Ok(SlurmRun { name, dir, arches: arches.to_vec(), last_where: String::new() })
    }

    fn refresh(&mut self) -> Result<(), String> {
        if self.seen_at.is_some_and(|t| t.elapsed() < SQUEUE_EVERY) {
            return Ok(());
        }
        self.seen = self.cluster.jobs().map_err(|e| e.to_string())?;
        self.seen_at = Some(Instant::now());
        Ok(())
    }

    /// The newest Slurm job of that name.
    fn newest(&self, name: &str) -> Option<&SlurmJob> {
        self.seen.iter().filter(|j| j.name == name).max_by_key(|j| j.id)
    }

    /// One look at the job: submits what must be (again), and once every arch is settled
    /// writes the merged result and report into `dir` and returns `Some(exit code)`; with it
    /// what changed (submissions, where the arches run), also written to the job's log. Where
    /// each arch runs is kept in the queue (`where:<job id>`) for `kbot status`.
    pub fn poll(
        &mut self,
        run: &mut SlurmRun,
        job: &Job,
        dir: &JobDir,
        q: &Queue,
        env_remove: &[String],
    ) -> Result<(Option<i32>, Vec<String>), String> {
        self.refresh()?;
        // A result that appeared since the last `squeue`: look again, so what is kept of
        // where it ran is its end, not its start.
        let stale = run.arches.iter().any(|a| {
            run.dir.join(format!("{a}.json")).is_file()
                && self.newest(&format!("{}-{a}", run.name)).is_some_and(SlurmJob::is_live)
        });
        if stale {
            self.seen_at = None;
            self.refresh()?;
        }
        let attempts = self.cfg.attempts.unwrap_or(3);
        let mut settled = Vec::new();
        let mut where_ = Vec::new();
        let mut log = Vec::new();
        for a in &run.arches {
            let json = run.dir.join(format!("{a}.json"));
            let counter = run.dir.join(format!("{a}.submits"));
            let submits: u32 = std::fs::read_to_string(&counter).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            let sname = format!("{}-{a}", run.name);
            let sj = self.newest(&sname).cloned();
            let at = |s: &SlurmJob| format!("{a}: {} (attempt {submits})", s.describe());
            // Why the last attempt ended without a result, in its own words.
            let said = || {
                let out = std::fs::read_to_string(run.dir.join(format!("{a}.log"))).unwrap_or_default();
                let mut lines = out.lines().rev();
                let error = lines.clone().find(|l| l.starts_with("kbot: error:") || l.starts_with("error:"));
                error
                    .or_else(|| lines.find(|l| !l.trim().is_empty()))
                    .map(|l| format!(": {}", l.trim_start_matches("kbot: error:").trim()))
                    .unwrap_or_default()
            };
            match step(json.is_file(), sj.as_ref(), submits, attempts) {
                Step::Done => {
                    // Its state is the exit of `kbot check` (1: findings), the result says more.
                    let on = |s: &SlurmJob| if s.node.is_empty() { String::new() } else { format!(" on {}", s.node) };
                    where_.push(sj.map_or(format!("{a}: result in"), |s| {
                        format!("{a}: job {} ended{} (attempt {submits}), result in", s.id, on(&s))
                    }));
                    settled.push((a.clone(), Ok(json)));
                }
                Step::Wait => where_.push(sj.as_ref().map(at).unwrap_or_default()),
                Step::Submit(n) => {
                    write_atomic(&counter, n.to_string().as_bytes())
                        .map_err(|e| format!("{}: {e}", counter.display()))?;
                    let script = run.dir.join(format!("{a}.sh"));
                    let output = run.dir.join(format!("{a}.log"));
                    let id = self
                        .cluster
                        .submit(&Submit {
                            name: &sname,
                            partition: &self.cfg.partition,
                            constraint: self.cfg.constraints.get(a).map(String::as_str),
                            time_min: self.time_min,
                            script: &script,
                            output: &output,
                            workdir: &run.dir,
                            env_remove,
                        })
                        .map_err(|e| format!("{a}: {e}"))?;
                    self.seen_at = None;
                    let why = sj.map(|s| format!(" ({} before{})", s.describe(), said())).unwrap_or_default();
                    log.push(format!(
                        "[slurm] {a}: submitted Slurm job {id} as {sname}, attempt {n} of {attempts}{why}"
                    ));
                    where_.push(format!("{a}: job {id} submitted (attempt {n})"));
                }
                Step::Fail(why) => {
                    let why = format!("{why}{}", said());
                    where_.push(format!("{a}: {why}"));
                    settled.push((a.clone(), Err(why)));
                }
            }
        }
        let w = format!("slurm {}", where_.join("; "));
        if w != run.last_where {
            q.set_cursor(&format!("where:{}", job.id), &w).map_err(|e| e.to_string())?;
            log.push(format!("[slurm] {w}"));
            run.last_where = w;
        }
        append(&dir.log(), &log);
        if settled.len() < run.arches.len() {
            return Ok((None, log));
        }
        // Every arch settled: the arches' output, then one result as one check would give.
        let mut parts = Vec::new();
        let mut failed = Vec::new();
        for (a, s) in settled {
            let out = std::fs::read_to_string(run.dir.join(format!("{a}.log"))).unwrap_or_default();
            append(&dir.log(), &[format!("==== {a}: output of its Slurm job ===="), out]);
            match s.map(|p| CheckResult::load(&p).ok_or_else(|| format!("{}: not a kbot.result/v1", p.display()))) {
                Ok(Ok(r)) => parts.push(r),
                Ok(Err(why)) | Err(why) => failed.push((a, why)),
            }
        }
        // An arch without a result is that arch's error in the merged result, as when one
        // arch of a local check fails; with no result at all the job is an error.
        if let Some(first) = parts.first().cloned() {
            for (a, why) in &failed {
                let mut r = first.clone();
                r.arches = vec![ArchResult { arch: a.clone(), error: Some(why.clone()), ..Default::default() }];
                r.timings.stages.clear();
                parts.push(r);
            }
            parts.sort_by_key(|r| run.arches.iter().position(|a| r.arches.first().is_some_and(|x| &x.arch == a)));
        }
        let Some(merged) = kbot_executor::merge(parts) else {
            let why: Vec<String> = failed.iter().map(|(a, w)| format!("{a}: {w}")).collect();
            append(&dir.log(), &[format!("kbot: error: {}", why.join("; "))]);
            return Ok((Some(2), log));
        };
        let md = kbot_report::markdown(&merged).map_err(|e| format!("report template: {e}"))?;
        write_atomic(&dir.report_md(), md.as_bytes()).map_err(|e| e.to_string())?;
        write_atomic(&dir.result_json(), merged.to_json().as_bytes()).map_err(|e| e.to_string())?;
        Ok((Some(merged.status.exit_code()), log))
    }
}

fn append(path: &Path, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        for l in lines {
            let _ = writeln!(f, "{}", l.trim_end());
        }
    }
}
