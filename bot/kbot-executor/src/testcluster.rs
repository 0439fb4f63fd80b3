//! A real one-node Slurm cluster for tests: munged with its own key and socket, slurmctld and
//! slurmd on 127.0.0.1 with ports of their own, every file under a temp dir, from a generated
//! `slurm.conf` (`auth/munge` on the private socket, `proctrack/linuxproc`, `task/none`, no
//! accounting, `jobcomp/filetxt`). Started from Debian's packages (`kbot setup` installs
//! them); stopped by pid when dropped. Runs jobs as root, as the measured set-up does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    /// The generated slurm.conf: give it as `SLURM_CONF`.
    pub conf: PathBuf,
    pub partition: String,
    munged: Option<Child>,
    slurmctld: Option<Child>,
    slurmd: Option<Child>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether the Slurm and munge daemons are installed (tests skip with a note otherwise).
pub fn available() -> bool {
    ["/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch"]
        .iter()
        .all(|p| Path::new(p).exists())
}

impl TestCluster {
    /// Starts the cluster: one node `localhost` with 2 CPUs and the features `x86_64,arm64`,
    /// partition `kbot`; returns once `sinfo` shows the node idle (about 3 s).
    pub fn start() -> Result<TestCluster, String> {
        let dir = tempfile::Builder::new().prefix("kbot-slurm-").tempdir().map_err(|e| e.to_string())?;
        let d = dir.path().to_path_buf();
        let err = |what: &str, e: std::io::Error| format!("{what}: {e}");
        for sub in ["ctld", "spool", "out"] {
            std::fs::create_dir_all(d.join(sub)).map_err(|e| err(sub, e))?;
        }
        // munged wants a key only its user reads, and the socket's directory searchable.
        use std::os::unix::fs::PermissionsExt;
        let key = d.join("munge.key");
        let mut bytes = vec![0u8; 1024];
        let mut f = std::fs::File::open("/dev/urandom").map_err(|e| err("/dev/urandom", e))?;
        std::io::Read::read_exact(&mut f, &mut bytes).map_err(|e| err("/dev/urandom", e))?;
        std::fs::write(&key, &bytes).map_err(|e| err("munge.key", e))?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).map_err(|e| err("munge.key", e))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711)).map_err(|e| err("tempdir", e))?;
        let sock = d.join("munge.sock");
        let (ctld_port, d_port) = (free_port().map_err(|e| err("port", e))?, free_port().map_err(|e| err("port", e))?);
        let p = |s: &str| d.join(s).display().to_string();
        let conf = format!(
            "ClusterName=kbottest\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort={ctld_port}\nSlurmdPort={d_port}\n\
             SlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\nAuthInfo=socket={sock}\nCredType=cred/munge\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n\
             StateSaveLocation={ctld}\nSlurmdSpoolDir={spool}\nSlurmctldPidFile={ctldpid}\nSlurmdPidFile={dpid}\n\
             SlurmctldLogFile={ctldlog}\nSlurmdLogFile={dlog}\n\
             JobCompType=jobcomp/filetxt\nJobCompLoc={jobcomp}\nAccountingStorageType=accounting_storage/none\n\
             JobAcctGatherType=jobacct_gather/none\nSchedulerType=sched/backfill\nSelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\nReturnToService=2\nSlurmdTimeout=30\nMinJobAge=600\n\
             NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 Feature=x86_64,arm64 State=UNKNOWN\n\
             PartitionName=kbot Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n",
            sock = sock.display(),
            ctld = p("ctld"),
            spool = p("spool"),
            ctldpid = p("slurmctld.pid"),
            dpid = p("slurmd.pid"),
            ctldlog = p("slurmctld.log"),
            dlog = p("slurmd.log"),
            jobcomp = p("jobcomp.txt"),
        );
        let conf_path = d.join("slurm.conf");
        std::fs::write(&conf_path, conf).map_err(|e| err("slurm.conf", e))?;
        let mut c = TestCluster {
            conf: conf_path.clone(),
            partition: "kbot".into(),
            dir,
            munged: None,
            slurmctld: None,
            slurmd: None,
        };
        let spawn = |mut cmd: Command, log: &str| -> Result<Child, String> {
            let out = std::fs::File::create(d.join(log)).map_err(|e| err(log, e))?;
            cmd.stdin(Stdio::null())
                .stdout(out.try_clone().map_err(|e| err(log, e))?)
                .stderr(out)
                .env("SLURM_CONF", &conf_path)
                .spawn()
                .map_err(|e| {
                    format!("{:?}: {e} (install munge, slurmctld, slurmd: `kbot setup` as root)", cmd.get_program())
                })
        };
        let mut m = Command::new("munged");
        m.args(["--foreground", "--force"])
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--pid-file={}", p("munged.pid")))
            .arg(format!("--log-file={}", p("munged.log")))
            .arg(format!("--seed-file={}", p("munged.seed")));
        c.munged = Some(spawn(m, "munged.out")?);
        wait_for(Duration::from_secs(10), || sock.exists())
            .map_err(|_| "munged did not create its socket".to_string())?;
        c.start_slurmctld()?;
        let mut s = Command::new("slurmd");
        s.args(["-D", "-N", "localhost", "-f"]).arg(&c.conf);
        c.slurmd = Some(spawn(s, "slurmd.out")?);
        let conf = c.conf.clone();
        wait_for(Duration::from_secs(30), || {
            Command::new("sinfo")
                .args(["--noheader", "--format=%t"])
                .env("SLURM_CONF", &conf)
                .output()
                .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim().starts_with("idle"))
        })
        .map_err(|_| format!("the node did not come up idle; see {}", c.dir.path().display()))?;
        Ok(c)
    }

    /// Starts slurmctld (again, after [`TestCluster::kill_slurmctld`]: it reads its saved state).
    pub fn start_slurmctld(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("slurmctld.out"))
            .map_err(|e| e.to_string())?;
        let child = Command::new("slurmctld")
            .args(["-D", "-f"])
            .arg(&self.conf)
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("slurmctld: {e} (install slurmctld: `kbot setup` as root)"))?;
        self.slurmctld = Some(child);
        let conf = self.conf.clone();
        wait_for(Duration::from_secs(20), || {
            Command::new("squeue").arg("--noheader").env("SLURM_CONF", &conf).output().is_ok_and(|o| o.status.success())
        })
        .map_err(|_| format!("slurmctld did not answer; see {}", d.join("slurmctld.log").display()))
    }

    /// SIGKILLs slurmctld (its pid only): the controller crashes mid-run.
    pub fn kill_slurmctld(&mut self) {
        if let Some(mut c) = self.slurmctld.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A client command against this cluster.
    pub fn command(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// A directory for job files under the cluster's temp dir.
    pub fn shared_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }
}

fn wait_for(limit: Duration, mut ok: impl FnMut() -> bool) -> Result<(), ()> {
    let t = Instant::now();
    while !ok() {
        if t.elapsed() > limit {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

impl Drop for TestCluster {
    /// Stops the daemons by their pids (SIGTERM, then SIGKILL after 5 s): slurmd first, so its
    /// jobs are ended, then the controller and munged.
    fn drop(&mut self) {
        // Jobs still running end first (their processes are slurmstepd's, not slurmd's).
        if self.slurmctld.is_some() {
            let _ = self.command("scancel").args(["--partition", &self.partition]).output();
            let conf = self.conf.clone();
            let _ = wait_for(Duration::from_secs(10), || {
                Command::new("squeue")
                    .args(["--noheader", "--states=RUNNING,COMPLETING"])
                    .env("SLURM_CONF", &conf)
                    .output()
                    .is_ok_and(|o| o.stdout.is_empty())
            });
        }
        for c in [self.slurmd.take(), self.slurmctld.take(), self.munged.take()].into_iter().flatten() {
            let mut c = c;
            // SAFETY: kill(2) on the pid of a child we started and have not reaped.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // A job step whose slurmd is gone (e.g. after the controller was killed and forgot
        // it) lingers: end this cluster's, found by its own slurm.conf in their environment.
        for pid in self.stray_steps() {
            // SAFETY: kill(2) on a pid of this cluster's slurmstepd.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl TestCluster {
    /// Pids of the `slurmstepd` processes of this cluster (its slurm.conf in their environment).
    fn stray_steps(&self) -> Vec<i32> {
        let want = format!("SLURM_CONF={}", self.conf.display()).into_bytes();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if !cmd.starts_with(b"slurmstepd") {
                continue;
            }
            let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
            if env.split(|b| *b == 0).any(|v| v == want.as_slice()) {
                out.push(pid);
            }
        }
        out
    }
}
