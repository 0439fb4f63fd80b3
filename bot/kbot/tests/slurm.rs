//! `kbot serve` with `executor: slurm` against real parts: a real one-node Slurm cluster
//! (munged, slurmctld, slurmd on 127.0.0.1 under a temp dir, `kbot_executor::testcluster`),
//! a real public-inbox on loopback. The fast tests build no kernel: the series patches a file
//! the small tree lacks, so each arch's job ends at `git am` (apply-failed) in seconds.
//! Needs Debian's public-inbox and Slurm (`kbot setup` installs both).

mod common;

use common::{free_port, tiny_tree, Inbox, Smtp};
use kbot_executor::testcluster::TestCluster;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn config(dir: &Path, lore: &str, shared: &Path, extra: &str) -> PathBuf {
    let tree = tiny_tree(dir, "int unrelated;\n");
    let p = dir.join("kbot.yaml");
    let yaml = format!(
        "state_dir: {}\narches: [x86_64, arm64]\ntrees:\n  - name: tiny\n    path: {}\ninboxes:\n  - name: fsdevel\n    lore: {lore}\n    tree: tiny\n    since: 2020-01-01T00:00:00Z\ngrace: 0\npoll_interval: 1s\nexecutor:\n  slurm:\n    partition: kbot\n    shared_dir: {}\n    constraints: {{x86_64: x86_64, arm64: arm64}}\n{extra}",
        dir.join("state").display(),
        tree.display(),
        shared.display()
    );
    std::fs::write(&p, yaml).unwrap();
    p
}

fn kbot(dir: &Path, tc: &TestCluster) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kbot"));
    c.env("KBOT_HOME", dir.join("home")).env("SLURM_CONF", &tc.conf).env_remove("KBOT_TREE");
    c
}

fn run(dir: &Path, tc: &TestCluster, args: &[&str], cfg: &Path) -> Output {
    kbot(dir, tc).args(args).arg("--config").arg(cfg).output().unwrap()
}

fn status(dir: &Path, tc: &TestCluster, cfg: &Path) -> String {
    let o = run(dir, tc, &["status"], cfg);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn mail(subject: &str, id: &str, irt: Option<&str>, body: &str) -> String {
    let irt = irt.map(|i| format!("In-Reply-To: <{i}>\nReferences: <{i}>\n")).unwrap_or_default();
    format!("From: A <a@example.org>\nTo: fsdevel@example.org\nSubject: {subject}\nMessage-ID: <{id}>\n{irt}Date: Mon, 30 Nov 2026 08:00:00 +0000\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n")
}

/// A cover letter and two patches to a file the tiny tree does not have.
fn deliver_series(ib: &Inbox, prefix: &str) {
    let cover = format!("{prefix}-0@example.org");
    ib.deliver(&mail("[PATCH 0/2] x: slurm", &cover, None, "cover"));
    for i in 1..=2 {
        let diff = format!("x\n\nSigned-off-by: A <a@example.org>\n---\ndiff --git a/nowhere.c b/nowhere.c\n--- a/nowhere.c\n+++ b/nowhere.c\n@@ -1 +1 @@\n-a\n+{i}\n");
        ib.deliver(&mail(
            &format!("[PATCH {i}/2] x: slurm {i}"),
            &format!("{prefix}-{i}@example.org"),
            Some(&cover),
            &diff,
        ));
    }
}

/// `submitted Slurm job N as NAME` lines of a text: (arch, id).
fn submissions(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("[slurm] ")?;
            let (arch, rest) = rest.split_once(": submitted Slurm job ")?;
            Some((arch.to_string(), rest.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

#[test]
#[ignore = "needs Debian's public-inbox and Slurm (kbot setup)"]
fn once_runs_one_slurm_job_per_arch_and_merges_their_results() {
    let t0 = Instant::now();
    let tc = TestCluster::start().unwrap();
    let ib = Inbox::start();
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), &ib.url(), &tc.shared_dir(), "");
    deliver_series(&ib, "s1");

    let o = run(d.path(), &tc, &["serve", "--once"], &cfg);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "{err}");
    eprintln!("{err}");
    let st = status(d.path(), &tc, &cfg);
    eprintln!("{st}");
    assert!(st.contains("queued: 0  running: 0  done: 1"), "{st}");
    assert!(st.contains("apply-failed"), "{st}");
    // Both arches ran as separate Slurm jobs, each with its constraint, on the node.
    let log = std::fs::read_to_string(d.path().join("state/jobs/1/log")).unwrap();
    let subs = submissions(&log);
    assert_eq!(subs.len(), 2, "{log}");
    assert_eq!((subs[0].0.as_str(), subs[1].0.as_str()), ("x86_64", "arm64"));
    assert_ne!(subs[0].1, subs[1].1);
    let w = st.lines().find(|l| l.contains("runs on:")).unwrap_or_default();
    assert!(
        w.contains("slurm x86_64: job") && w.contains("ended on localhost (attempt 1), result in; arm64: job"),
        "{st}"
    );
    // The job records of the cluster (jobcomp/filetxt) name both.
    let records = std::fs::read_to_string(tc.dir.path().join("jobcomp.txt")).unwrap_or_default();
    for (arch, id) in &subs {
        assert!(records.contains(&format!("JobId={id} ")) && records.contains(&format!("-{arch} ")), "{records}");
        assert!(records.contains(" Name=kbot-"), "{records}");
    }
    // One merged kbot.result/v1 and report, as one check of both arches gives.
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("state/jobs/1/result.json")).unwrap()).unwrap();
    assert_eq!(v["schema"], "kbot.result/v1");
    assert_eq!(v["status"], "apply-failed", "{v:#}");
    assert_eq!(v["series"]["message_id"], "s1-0@example.org");
    assert_eq!(v["apply"]["failed_patch"], 1, "{v:#}");
    assert!(d.path().join("state/jobs/1/report.md").is_file());

    // Run again: the result exists, nothing is submitted or tested again.
    let o = run(d.path(), &tc, &["serve", "--once"], &cfg);
    assert_eq!(o.status.code(), Some(0));
    let log2 = std::fs::read_to_string(d.path().join("state/jobs/1/log")).unwrap();
    assert_eq!(submissions(&log2).len(), 2, "{log2}");
    eprintln!("done in {:.1}s", t0.elapsed().as_secs_f64());
}

/// The node busy with another user's job: kbot's jobs wait in Slurm's queue. The service is
/// SIGKILLed and restarted: it finds its jobs by name and submits nothing twice. Then
/// `scancel` of both: the job ends as an error that says so, without resubmission.
#[test]
#[ignore = "needs Debian's public-inbox and Slurm (kbot setup)"]
fn killed_service_adopts_its_slurm_jobs_and_scancel_is_an_error() {
    let tc = TestCluster::start().unwrap();
    let ib = Inbox::start();
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), &ib.url(), &tc.shared_dir(), "");
    let blocker = tc
        .command("sbatch")
        .args([
            "--parsable",
            "--exclusive",
            "--job-name=blocker",
            "--partition=kbot",
            "--output=/dev/null",
            "--wrap=sleep 300",
        ])
        .output()
        .unwrap();
    assert!(blocker.status.success(), "{}", String::from_utf8_lossy(&blocker.stderr));
    let blocker = String::from_utf8_lossy(&blocker.stdout).trim().to_string();
    deliver_series(&ib, "s2");

    // First service: submits both arches' jobs, which wait; then it is killed.
    let errf = d.path().join("serve1.err");
    let mut svc = kbot(d.path(), &tc)
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errf).unwrap())
        .spawn()
        .unwrap();
    let jlog = d.path().join("state/jobs/1/log");
    let t = Instant::now();
    while submissions(&std::fs::read_to_string(&jlog).unwrap_or_default()).len() < 2 {
        assert!(t.elapsed() < Duration::from_secs(60), "{}", std::fs::read_to_string(&errf).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Slurm holds them: the node is busy.
    while !status(d.path(), &tc, &cfg).contains("PENDING") {
        assert!(t.elapsed() < Duration::from_secs(60), "{}", std::fs::read_to_string(&errf).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    svc.kill().unwrap();
    svc.wait().unwrap();
    let subs = submissions(&std::fs::read_to_string(&jlog).unwrap());

    // Restarted: the same jobs, found by name; nothing submitted again.
    let errf2 = d.path().join("serve2.err");
    let mut svc = kbot(d.path(), &tc)
        .args(["serve", "--once", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errf2).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !status(d.path(), &tc, &cfg).contains("attempts 2") {
        assert!(t.elapsed() < Duration::from_secs(30), "{}", std::fs::read_to_string(&errf2).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(submissions(&std::fs::read_to_string(&jlog).unwrap()), subs, "nothing submitted twice");

    // scancel both (an operator): the job ends as an error with the reason, not resubmitted.
    for (_, id) in &subs {
        assert!(tc.command("scancel").arg(id.to_string()).status().unwrap().success());
    }
    let t = Instant::now();
    while svc.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(60), "{}", std::fs::read_to_string(&errf2).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    let st = status(d.path(), &tc, &cfg);
    eprintln!("{st}");
    assert!(st.contains("done: 1") && st.contains("error"), "{st}");
    assert!(st.contains("was cancelled (scancel or an administrator)"), "{st}");
    assert!(st.contains("attempts 2"), "the restart shows in the attempts: {st}");
    assert_eq!(submissions(&std::fs::read_to_string(&jlog).unwrap()), subs, "a cancelled job is not resubmitted");
    let _ = tc.command("scancel").arg(&blocker).status();
}

/// slurmctld SIGKILLed while kbot's jobs wait in its queue, the service polling on (it says
/// the cluster does not answer and tries again), then slurmctld started again from its saved
/// state: the jobs run or, when the controller forgot them, are submitted once more; the job
/// finishes with its result.
/// Then the controller loses a job (its state wiped): the service submits it again (attempt 2).
#[test]
#[ignore = "needs Debian's public-inbox and Slurm (kbot setup)"]
fn slurmctld_killed_and_restarted_mid_run_loses_nothing() {
    let mut tc = TestCluster::start().unwrap();
    let ib = Inbox::start();
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), &ib.url(), &tc.shared_dir(), "");
    let blocker = |tc: &TestCluster| {
        let o = tc
            .command("sbatch")
            .args([
                "--parsable",
                "--exclusive",
                "--job-name=blocker",
                "--partition=kbot",
                "--output=/dev/null",
                "--wrap=sleep 300",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let b = blocker(&tc);
    deliver_series(&ib, "s3");
    let errf = d.path().join("serve.err");
    let mut svc = kbot(d.path(), &tc)
        .args(["serve", "--once", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errf).unwrap())
        .spawn()
        .unwrap();
    let jlog = d.path().join("state/jobs/1/log");
    let t = Instant::now();
    while !std::fs::read_to_string(&jlog).unwrap_or_default().contains("PENDING") {
        assert!(t.elapsed() < Duration::from_secs(60), "{}", std::fs::read_to_string(&errf).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    let subs = submissions(&std::fs::read_to_string(&jlog).unwrap());
    tc.kill_slurmctld();
    let t = Instant::now();
    while !std::fs::read_to_string(&errf).unwrap().contains("(will retry)") {
        assert!(t.elapsed() < Duration::from_secs(30), "{}", std::fs::read_to_string(&errf).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    tc.start_slurmctld().unwrap();
    let after = tc.command("squeue").args(["--noheader", "--format=%i %j %T"]).output().unwrap();
    let after = String::from_utf8_lossy(&after.stdout).into_owned();
    eprintln!("after the restart of slurmctld:\n{after}");
    assert!(tc.command("scancel").arg(&b).status().unwrap().success());
    let t = Instant::now();
    while svc.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(90), "{}", std::fs::read_to_string(&errf).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    let err = std::fs::read_to_string(&errf).unwrap();
    eprintln!("{err}");
    // slurmctld saves its state in the background: killed, it may have forgotten jobs it
    // took just before (measured: it does). Either it still has them and nothing is submitted
    // again, or they are gone from squeue and each arch is submitted once more (attempt 2),
    // never while the controller is unreachable (that is not a lost job) and never as a
    // second live job of the same name.
    let log = std::fs::read_to_string(&jlog).unwrap();
    let again = submissions(&log);
    assert!(again == subs || (again.len() == 4 && log.contains("attempt 2 of 3")), "{log}");
    assert!(!log.contains("attempt 3"), "{log}");
    let mut names: Vec<&str> = after.lines().filter_map(|l| l.split_whitespace().nth(1)).collect();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n, "one live job per name: {after}");
    let st = status(d.path(), &tc, &cfg);
    assert!(st.contains("done: 1") && st.contains("apply-failed"), "{st}");

    // A job the controller lost: its saved state wiped while the job waits.
    deliver_series(&ib, "s4");
    let b = blocker(&tc);
    let errf = d.path().join("serve2.err");
    let mut svc = kbot(d.path(), &tc)
        .args(["serve", "--once", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errf).unwrap())
        .spawn()
        .unwrap();
    let jlog = d.path().join("state/jobs/2/log");
    let t = Instant::now();
    while !std::fs::read_to_string(&jlog).unwrap_or_default().contains("PENDING") {
        assert!(t.elapsed() < Duration::from_secs(60), "{}", std::fs::read_to_string(&errf).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    tc.kill_slurmctld();
    let ctld = tc.dir.path().join("ctld");
    for e in std::fs::read_dir(&ctld).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap()
        } else {
            std::fs::remove_file(&p).unwrap()
        }
    }
    tc.start_slurmctld().unwrap();
    let _ = tc.command("scancel").arg(&b).status();
    let t = Instant::now();
    while svc.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(90), "{}", std::fs::read_to_string(&errf).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(&jlog).unwrap();
    eprintln!("{}", std::fs::read_to_string(&errf).unwrap());
    let s = submissions(&log);
    assert_eq!(s.len(), 4, "each arch lost once and submitted again: {log}");
    assert!(log.contains("attempt 2 of 3"), "{log}");
    let st = status(d.path(), &tc, &cfg);
    eprintln!("{st}");
    assert!(st.contains("done: 2") && !st.contains("error"), "{st}");
}

const BAD_PATCH: &str = "d4beaa0b6dce675866cce3d0d2f856abb4e70f42.1795614032.git.alice@example.org";

/// The serve tests' set-up with `executor: slurm`: the SRCU-stall series and the clean one on
/// the default tree, both arches, real kernels built and booted by the Slurm jobs. The
/// regression gets exactly one mail (threaded under the first bad patch), the clean series
/// none; each arch of each series ran as its own Slurm job.
#[test]
#[ignore = "needs public-inbox, python3-aiosmtpd, Slurm and real kernel builds of both arches (many minutes)"]
fn once_with_slurm_mails_the_regression_once_from_both_arches() {
    let t0 = Instant::now();
    let tc = TestCluster::start().unwrap();
    let ib = Inbox::start();
    // One series: the clean one's path through the service is the same (the serve tests
    // send nothing for it), and each series costs two kernels' boots per arch.
    for m in common::split(&std::fs::read_to_string(common::examples().join("srcu-stall-regression.mbox")).unwrap()) {
        ib.deliver(&m);
    }
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let smtp = Smtp::start(&d.path().join("maildir"), port);
    let cfg = d.path().join("kbot.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\narches: [x86_64, arm64]\ntrees:\n  - name: default\ninboxes:\n  - name: fsdevel\n    lore: {}\n    tree: default\n    since: 2020-01-01T00:00:00Z\nmail:\n  smtp: smtp://127.0.0.1:{port}\n  from: \"kbot <kbot@example.org>\"\ngrace: 0\npoll_interval: 2s\nexecutor:\n  slurm:\n    partition: kbot\n    shared_dir: {}\n    constraints: {{x86_64: x86_64, arm64: arm64}}\n",
            d.path().join("state").display(),
            ib.url(),
            tc.shared_dir().display()
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kbot"))
        .env("SLURM_CONF", &tc.conf)
        .args(["serve", "--once", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    eprintln!("{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
    let st = Command::new(env!("CARGO_BIN_EXE_kbot")).args(["status", "--config"]).arg(&cfg).output().unwrap();
    let st = String::from_utf8_lossy(&st.stdout).into_owned();
    eprintln!("{st}");
    assert!(st.contains("done: 1") && st.contains("regression"), "{st}");
    let job = d.path().join("state/jobs/1");
    let log = std::fs::read_to_string(job.join("log")).unwrap_or_default();
    eprintln!(
        "---- job log (last lines) ----\n{}",
        log.lines().rev().take(25).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains(&format!("In-Reply-To: <{BAD_PATCH}>")), "{}", mails[0]);
    let s = submissions(&log);
    assert_eq!(s.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["x86_64", "arm64"], "{log}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(job.join("result.json")).unwrap()).unwrap();
    let arches: Vec<&str> = v["arches"].as_array().unwrap().iter().map(|a| a["arch"].as_str().unwrap()).collect();
    assert_eq!(arches, ["x86_64", "arm64"]);
    assert_eq!(v["status"], "regression", "{v:#}");
    // Both arches blame patch 2/3 for the SRCU stall (as the local executor does); a random
    // scenario may also diverge, with a bisection of its own (possibly flaky).
    for a in v["arches"].as_array().unwrap() {
        let regs = a["regressions"].as_array().unwrap();
        assert!(
            regs.iter().any(|r| r["first_bad"]["index"] == 2
                && r["test"].as_str().unwrap_or("").ends_with("close_with_pending_perm")),
            "{}: {a:#}",
            a["arch"]
        );
        assert!(regs.iter().all(|r| r["first_bad"]["index"].as_u64().is_none_or(|i| i >= 2)), "{a:#}");
    }
    assert!(mails[0].contains("fanotify_close_with_pending_perm"), "{}", mails[0]);
    let records = std::fs::read_to_string(tc.dir.path().join("jobcomp.txt")).unwrap_or_default();
    assert_eq!(records.lines().filter(|l| l.contains("JobId=") && l.contains(" Name=kbot-")).count(), 2, "{records}");
    eprintln!("done in {:.0}s", t0.elapsed().as_secs_f64());
}
