//! The Slurm driver against a real one-node cluster (munged, slurmctld, slurmd on 127.0.0.1,
//! under a temp dir): submit by name with constraints, find by name, results written under a
//! temporary name and renamed, cancel. Trivial commands only (seconds, no kernels).

use kbot_executor::slurm::{step, Cluster, Step, Submit};
use kbot_executor::testcluster::{self, TestCluster};
use std::path::Path;
use std::time::{Duration, Instant};

fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{name}.sh"));
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    p
}

#[test]
fn submits_finds_by_name_and_cancels_on_a_real_cluster() {
    if !testcluster::available() {
        eprintln!("skipped: Slurm is not installed (kbot setup installs it)");
        return;
    }
    let t0 = Instant::now();
    let tc = TestCluster::start().unwrap();
    eprintln!("cluster up in {:.1}s", t0.elapsed().as_secs_f64());
    let cl = Cluster::find(Some(tc.conf.clone())).unwrap();
    cl.check_partition("kbot").unwrap();
    let e = cl.check_partition("nope").unwrap_err().to_string();
    assert!(e.contains("no partition \"nope\""), "{e}");
    let shared = tc.shared_dir();

    // One job per arch, each with its constraint; each writes its result under a temporary
    // name and renames it; the service's secret is not in the job's environment.
    std::env::set_var("KBOT_TEST_SECRET", "s3cret");
    let mut ids = Vec::new();
    for arch in ["x86_64", "arm64"] {
        let body = format!(
            "echo secret=${{KBOT_TEST_SECRET:-none}} node=$SLURMD_NODENAME\nsleep 1\necho '{{\"arch\":\"{arch}\"}}' > .{arch}.json.tmp && mv .{arch}.json.tmp {arch}.json"
        );
        let s = script(&shared, arch, &body);
        let name = format!("kbot-test-{arch}");
        let out = shared.join(format!("{arch}.log"));
        let id = cl
            .submit(&Submit {
                name: &name,
                partition: "kbot",
                constraint: Some(arch),
                time_min: 2,
                script: &s,
                output: &out,
                workdir: &shared,
                env_remove: &["KBOT_TEST_SECRET".to_string()],
            })
            .unwrap();
        ids.push((arch, id, name));
    }
    // Found by name, as a restarted service finds them.
    let jobs = cl.jobs().unwrap();
    for (_, id, name) in &ids {
        let j = jobs.iter().find(|j| &j.name == name).expect("listed by name");
        assert_eq!(j.id, *id);
        assert_eq!(step(false, Some(j), 1, 3), Step::Wait, "{j:?}");
    }
    let t = Instant::now();
    while !ids.iter().all(|(a, _, _)| shared.join(format!("{a}.json")).exists()) {
        assert!(t.elapsed() < Duration::from_secs(60), "jobs did not finish: {:?}", cl.jobs());
        std::thread::sleep(Duration::from_millis(200));
    }
    for (a, _, _) in &ids {
        let log = std::fs::read_to_string(shared.join(format!("{a}.log"))).unwrap();
        assert!(log.contains("secret=none node=localhost"), "{log}");
        assert_eq!(step(true, None, 1, 3), Step::Done);
    }
    eprintln!("two jobs ran in {:.1}s", t.elapsed().as_secs_f64());

    // A constraint no node has: sbatch refuses at once, with Slurm's reason.
    let s = script(&shared, "never", "true");
    let e = cl
        .submit(&Submit {
            name: "kbot-test-never",
            partition: "kbot",
            constraint: Some("riscv"),
            time_min: 1,
            script: &s,
            output: &shared.join("never.log"),
            workdir: &shared,
            env_remove: &[],
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("sbatch") && e.to_lowercase().contains("feature"), "{e}");

    // scancel: the job ends CANCELLED and the decision is an error with the reason.
    let s = script(&shared, "long", "sleep 120");
    let id = cl
        .submit(&Submit {
            name: "kbot-test-long",
            partition: "kbot",
            constraint: None,
            time_min: 5,
            script: &s,
            output: &shared.join("long.log"),
            workdir: &shared,
            env_remove: &[],
        })
        .unwrap();
    cl.cancel(id).unwrap();
    let t = Instant::now();
    let j = loop {
        let j = cl.jobs().unwrap().into_iter().find(|j| j.id == id).unwrap();
        if !j.is_live() {
            break j;
        }
        assert!(t.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(j.state, "CANCELLED");
    assert!(matches!(step(false, Some(&j), 1, 3), Step::Fail(w) if w.contains("cancelled")));
}
