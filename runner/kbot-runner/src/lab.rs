//! The per-arch lab: builds the kernel of a series prefix (or takes it from the cache) and
//! boots it with the guest agent. The pipeline's decisions only see the [`Lab`] trait, so they
//! are tested with a fake lab (as syzkaller fakes `instance.Env`); [`QemuLab`] is the real one.

use crate::home::Home;
use crate::progress::Progress;
use kbot_console::Console;
use kbot_kernel::git::Worktree;
use kbot_kernel::qemu::{self, Accel, VmSpec};
use kbot_kernel::{build, kconfig, shadow, Arch};
use kbot_report::{short_commit, TestResult};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A kernel for one prefix of the series: built now or taken from the cache.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// None: the build failed (see `errors`).
    pub image: Option<PathBuf>,
    pub errors: Vec<String>,
    pub log: PathBuf,
    pub seconds: f64,
    pub cached: bool,
}

/// One boot of a kernel with the guest agent.
#[derive(Debug, Clone)]
pub struct Boot {
    pub console: Console,
    pub tests: Vec<TestResult>,
    pub log: PathBuf,
    /// The agent reported its end.
    pub finished: bool,
    pub timed_out: bool,
    pub seconds: f64,
}

/// Trouble of the lab itself (not a verdict on the series): QEMU would not start, a build
/// hit its time limit, a checkout failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LabError(pub String);

/// Where the pipeline builds and boots one arch's kernels. `prefix` counts the patches
/// applied: 0 is the base, `n` the tip.
pub trait Lab {
    fn arch(&self) -> Arch;
    /// A progress line for this arch.
    fn say(&self, stage: &str, msg: &str);
    fn kernel(&mut self, prefix: usize) -> Result<Kernel, LabError>;
    /// Boots `image`; `only`: just these tests; `shrink`: diverging scenarios are shrunk to a
    /// minimal one (for the evidence of the tip's first boot; later boots only need verdicts).
    fn boot(&mut self, prefix: usize, image: &Path, only: Option<&[String]>, shrink: bool) -> Result<Boot, LabError>;
}

/// How a prefix is named in progress lines and errors.
pub fn label(prefix: usize, n: usize) -> String {
    match prefix {
        0 => "base".to_string(),
        p if p == n => format!("tip ({p}/{n} patches)"),
        p => format!("{p}/{n} patches"),
    }
}

/// What every boot of a check shares.
pub struct BootParams {
    pub watchdog_ms: u64,
    pub seed: u64,
    pub random: u32,
    pub vm_timeout: Duration,
    pub jobs: usize,
    pub build_timeout: Duration,
}

/// The real lab: a stable worktree and build directory per tree and arch, kbot's kernel
/// cache, QEMU in the sandbox.
pub struct QemuLab<'a> {
    pub home: &'a Home,
    pub progress: &'a Progress,
    pub sandbox: &'a kbot_sandbox::Policy,
    pub params: &'a BootParams,
    pub arch: Arch,
    pub wt: &'a Worktree,
    /// commits[0] is the base, commits[i] the series applied up to patch i.
    pub commits: &'a [String],
    /// This arch's logs: `<run>/<arch>/`.
    pub dir: PathBuf,
    pub out: PathBuf,
    pub initrd: PathBuf,
    pub accel: Option<Accel>,
    pub boots: usize,
    /// The shadow checks are built into the kernels of this arch.
    pub shadow: bool,
    /// Per prefix: files whose shadow hooks did not apply (that kernel's shadow results are unused).
    pub rejects: BTreeMap<usize, Vec<String>>,
    /// Stage timings, shared by the arches.
    pub stages: &'a Mutex<Vec<(String, f64)>>,
}

impl QemuLab<'_> {
    fn n(&self) -> usize {
        self.commits.len() - 1
    }

    fn stage(&self, name: String, secs: f64) {
        self.stages.lock().unwrap_or_else(|e| e.into_inner()).push((name, secs));
    }

    fn extra_config(&self) -> String {
        if self.shadow {
            shadow::config_extra()
        } else {
            String::new()
        }
    }

    fn cached(&mut self, prefix: usize, cache: &Path, log: PathBuf) -> Option<Kernel> {
        let image = cache.join(self.arch.image_target());
        if !image.is_file() {
            return None;
        }
        if let Ok(r) = std::fs::read_to_string(cache.join("shadow-rejects")) {
            self.rejects.insert(prefix, r.lines().map(str::to_string).collect());
        }
        let commit = short_commit(&self.commits[prefix]);
        self.say("build", &format!("{}: cached kernel {commit}", label(prefix, self.n())));
        Some(Kernel { image: Some(image), errors: vec![], log, seconds: 0.0, cached: true })
    }

    /// Publishes a built image to the cache atomically (copy, then rename the directory);
    /// returns where the image now is.
    fn publish(&self, prefix: usize, img: PathBuf, cache: &Path) -> PathBuf {
        let tmp = cache.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let rejects = self.rejects.get(&prefix).map(|r| r.join("\n")).unwrap_or_default();
        let copied = std::fs::create_dir_all(&tmp)
            .and_then(|_| std::fs::copy(&img, tmp.join(self.arch.image_target())))
            .and_then(|_| std::fs::write(tmp.join("shadow-rejects"), &rejects))
            .and_then(|_| {
                let _ = std::fs::remove_dir_all(cache);
                std::fs::rename(&tmp, cache)
            });
        if copied.is_ok() {
            cache.join(self.arch.image_target())
        } else {
            img
        }
    }

    fn accel(&mut self, image: &Path) -> Accel {
        if let Some(a) = self.accel {
            return a;
        }
        let kvm = match std::env::var("KBOT_ACCEL").as_deref() {
            Ok("tcg") => false,
            Ok("kvm") => true,
            _ => {
                let probe_log = self.dir.join("kvm-probe.log");
                let ok = qemu::kvm_works(self.sandbox, self.arch, image, &self.initrd, &probe_log);
                if self.arch.kvm_possible() {
                    self.say("boot", if ok { "KVM works: using it" } else { "KVM probe failed: using TCG" });
                }
                ok
            }
        };
        let a = if kvm { Accel::Kvm } else { Accel::Tcg };
        self.accel = Some(a);
        a
    }
}

impl Lab for QemuLab<'_> {
    fn arch(&self) -> Arch {
        self.arch
    }

    fn say(&self, stage: &str, msg: &str) {
        self.progress.say(self.arch.name(), stage, msg);
    }

    fn kernel(&mut self, prefix: usize) -> Result<Kernel, LabError> {
        let commit = self.commits[prefix].clone();
        let key = kconfig::config_key(self.arch, &self.extra_config());
        let cache = self.home.kernel_cache(self.arch, &commit, &key);
        let log = self.dir.join(format!("build-{prefix}-{}.log", short_commit(&commit)));
        if let Some(k) = self.cached(prefix, &cache, log.clone()) {
            return Ok(k);
        }
        let what = label(prefix, self.n());
        self.wt.checkout(&commit).map_err(|e| LabError(format!("checkout {commit}: {e}")))?;
        if self.shadow {
            let rejected = shadow::instrument(&self.wt.path).map_err(|e| LabError(format!("shadow checks: {e}")))?;
            if !rejected.is_empty() {
                self.say("shadow", &format!("{what}: hooks did not apply in {}", rejected.join(", ")));
            }
            self.rejects.insert(prefix, rejected);
        }
        let t = Instant::now();
        let fresh = kconfig::ensure(self.sandbox, &self.wt.path, &self.out, self.arch, &self.extra_config(), &log)
            .map_err(|e| LabError(format!("kconfig: {e}")))?;
        if fresh {
            self.say("config", &format!("tinyconfig + kbot fragment in {:.1}s", t.elapsed().as_secs_f64()));
        }
        let p = self.params;
        self.say("build", &format!("{what} ({}), make -j{}", short_commit(&commit), p.jobs));
        let live = |s: build::BuildProgress| self.progress.live(self.arch.name(), "build", &format!("{what}: {s}"));
        let b = build::build(self.sandbox, &self.wt.path, &self.out, self.arch, p.jobs, &log, p.build_timeout, &live)
            .map_err(|e| LabError(format!("cannot run make: {e}")))?;
        self.stage(format!("{}.build.{}", self.arch, prefix), b.seconds);
        self.say("build", &format!("{what}: {} in {:.1}s", if b.ok { "ok" } else { "FAILED" }, b.seconds));
        if b.timed_out {
            // A limit says nothing about the patch being good or bad: an error, not a regression.
            return Err(LabError(format!(
                "the build of {what} was stopped by its time limit ({} s); see {}",
                p.build_timeout.as_secs(),
                log.display()
            )));
        }
        let image = b.image.map(|img| self.publish(prefix, img, &cache));
        Ok(Kernel { image, errors: b.errors, log, seconds: b.seconds, cached: false })
    }

    fn boot(&mut self, prefix: usize, image: &Path, only: Option<&[String]>, shrink: bool) -> Result<Boot, LabError> {
        let accel = self.accel(image);
        self.boots += 1;
        let commit = short_commit(&self.commits[prefix]).to_string();
        let log = self.dir.join(format!("console-{prefix}-{commit}-{}.log", self.boots));
        let p = self.params;
        let mut append = format!(
            "kbot.watchdog_ms={} kbot.seed={} kbot.random={}{}",
            p.watchdog_ms,
            p.seed,
            p.random,
            if shrink { "" } else { " kbot.shrink_ms=0" }
        );
        // Shadow rules are not tests of the agent: they watch whatever runs. When only they are
        // in question, run everything so the same activity happens.
        let agent_only: Option<Vec<String>> = only
            .map(|o| o.iter().filter(|n| !n.starts_with("shadow/")).cloned().collect())
            .filter(|o: &Vec<String>| !o.is_empty());
        if let Some(o) = &agent_only {
            append += &format!(" kbot.only={}", o.join(","));
        }
        let spec = VmSpec {
            arch: self.arch,
            kernel: image,
            initrd: &self.initrd,
            append,
            timeout: p.vm_timeout,
            accel,
            mem_mb: 512,
            smp: 2,
        };
        self.say("boot", &format!("{} ({})", label(prefix, self.n()), spec.accel.name()));
        let (arch, progress) = (self.arch.name(), self.progress);
        let vm = qemu::run(self.sandbox, &spec, &log, 16 << 20, |line| {
            if line.starts_with("not ok ") || line.starts_with("ok ") {
                progress.say(arch, "test", line);
            }
        })
        .map_err(|e| LabError(format!("cannot start {}: {e}", self.arch.qemu())))?;
        self.stage(format!("{}.boot.{}", self.arch, prefix), vm.seconds);
        let console = kbot_console::parse(&vm.console);
        if !console.started && !vm.qemu_stderr.trim().is_empty() {
            return Err(LabError(format!(
                "{} failed: {}",
                self.arch.qemu(),
                vm.qemu_stderr.lines().next().unwrap_or("")
            )));
        }
        let expected: Vec<String> = match &agent_only {
            Some(o) => o.clone(),
            None => console.tests.iter().map(|t| t.name.clone()).collect(),
        };
        let mut tests = kbot_compare::tests_of(&console, &expected, vm.timed_out);
        // The shadow rules count only for a kernel whose hooks all applied. A boot that did not
        // run what they watch (no user space, agent stopped, component never started) skips
        // them with the reason: "no violation" there is not a pass.
        if self.shadow && self.rejects.get(&prefix).is_none_or(|r| r.is_empty()) {
            tests.extend(kbot_compare::shadow_tests(&console, vm.timed_out));
        }
        Ok(Boot { finished: console.done, timed_out: vm.timed_out, console, tests, log, seconds: vm.seconds })
    }
}
