//! The per-arch lab: builds the kernel of a series prefix (or takes it from the cache) and
//! boots it with the guest agent. The pipeline's decisions only see the [`Lab`] trait, so they
//! are tested with a fake lab (as syzkaller fakes `instance.Env`); [`QemuLab`] is the real one.

use crate::home::Home;
use crate::progress::Progress;
use kbot_console::Console;
use kbot_kernel::git::Worktree;
use kbot_kernel::qemu::{self, Accel, VmSpec};
use kbot_kernel::{build, kconfig, shadow, Arch};
use kbot_report::{short_commit, TestFamily, TestResult};
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
    /// The next boot is the tip's: should it show a failure that is not among `bad_on_base`
    /// (tests and `shadow/` rules), `prefix` (bisection's first probe) will be wanted next, so
    /// a lab may build it ahead meanwhile.
    fn build_ahead(&mut self, _prefix: usize, _bad_on_base: &[String]) {}
    /// How often a rerun (`boot` with `only`) runs an LTP test that passes; the base's rerun
    /// runs it twice as often. 1: reruns are single runs, and the base needs no control.
    fn ltp_repeat(&self) -> u32 {
        1
    }
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
    /// LTP in the guest (None: the initramfs has no LTP).
    pub ltp: Option<LtpBoot>,
}

/// How the agent runs LTP's tests (see the agent's `kbot.ltp_*` words).
#[derive(Debug, Clone)]
pub struct LtpBoot {
    pub hang_ms: u64,
    pub budget_ms: u64,
    pub timeout_mul: String,
    /// LTP_RUNTIME_MUL: race tests (fuzzy sync) run for their nominal time times this.
    pub runtime_mul: String,
    pub limit_ms: u64,
    /// LTP's per-filesystem tests (`.all_filesystems`) also on ext2 and ext3. Off: the
    /// kernel's one ext4 driver serves all three, so they repeat the same fsnotify paths
    /// (ext4 and tmpfs are the kernel's two filesystems) at double the suite's cost.
    pub all_fs: bool,
    /// Runs of a passing LTP test in the boots of bisection and confirmation (the first that
    /// fails or hangs decides; the base's control runs twice as many): one pass of fanotify07
    /// on a kernel with the seed's stall is not rare, and there a pass can name the wrong patch.
    pub repeat: u32,
}

impl Default for LtpBoot {
    /// The defaults of `kbot check` (see its `--ltp-*` options).
    fn default() -> Self {
        LtpBoot {
            hang_ms: 5000,
            budget_ms: 600_000,
            timeout_mul: "1".into(),
            runtime_mul: "0.1".into(),
            limit_ms: 300_000,
            all_fs: false,
            repeat: 5,
        }
    }
}

impl LtpBoot {
    fn words(&self) -> String {
        format!(
            " kbot.ltp_hang_ms={} kbot.ltp_budget_ms={} kbot.ltp_timeout_mul={} kbot.ltp_runtime_mul={} kbot.ltp_limit_ms={}",
            self.hang_ms, self.budget_ms, self.timeout_mul, self.runtime_mul, self.limit_ms
        ) + if self.all_fs { "" } else { " kbot.ltp_fs=ext4" }
    }
}

/// Which of the agent's tests one VM runs.
enum Selection {
    All,
    /// kbot's own tests and scenarios, no LTP.
    Own,
    /// The base's LTP tests.
    Only(Vec<String>),
    /// These tests again (bisection, confirmation, the base's control): LTP's passes are
    /// repeated.
    Rerun(Vec<String>),
}

/// One VM run before its console is read.
struct RawBoot {
    text: String,
    log: PathBuf,
    timed_out: bool,
    seconds: f64,
    /// The tests asked for by name (None: whatever the agent ran).
    expected: Option<Vec<String>>,
    cached: bool,
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
    /// LTP's tests in this arch's initramfs (`ltp/<name>`); empty without LTP.
    pub ltp_tests: Vec<String>,
    /// The kernel's .config was appended to the initramfs (or could not be).
    pub kconfig_in_initrd: bool,
    /// The prefix to build ahead during the next boot, once that boot shows a failure that
    /// is not among these (the base's).
    pub ahead: Option<(usize, Vec<String>)>,
    /// A prefix built ahead: what [`Lab::kernel`] returns for it (the image is also in the
    /// kernel cache).
    pub built_ahead: Option<(usize, Kernel)>,
}

/// What a build ahead needs, owned or shared, so it can run beside the VM.
struct Ahead<'a> {
    prefix: usize,
    what: String,
    commit: String,
    wt: &'a Worktree,
    sandbox: &'a kbot_sandbox::Policy,
    shadow_extra: Option<String>,
    arch: Arch,
    out: PathBuf,
    log: PathBuf,
    jobs: usize,
    timeout: Duration,
}

/// What a build ahead left: the files whose shadow hooks did not apply, and the build.
type AheadResult = Result<(Vec<String>, build::BuildResult), String>;

impl Ahead<'_> {
    /// Checks the prefix out and builds it at the lowest CPU priority (the VM beside it keeps
    /// its timing: its tests watch for operations that take too long).
    fn run(&self) -> AheadResult {
        // SAFETY: lowers this thread's own priority; make and the compilers inherit it.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        let extra = self.shadow_extra.as_deref();
        let (rejected, _) = prepare(self.wt, &self.commit, extra, self.sandbox, &self.out, self.arch, &self.log)?;
        let b = build::build(
            self.sandbox,
            &self.wt.path,
            &self.out,
            self.arch,
            self.jobs,
            &self.log,
            self.timeout,
            &|_| {},
        )
        .map_err(|e| format!("cannot run make: {e}"))?;
        Ok((rejected, b))
    }
}

/// Everything before `make` for one commit, the same for a build in sequence and one ahead:
/// check it out, add the shadow checks' hooks when `shadow_extra` (their kconfig) is given,
/// make sure the build directory's configuration is current. Returns the files whose hooks did
/// not apply, and how long the configuration took when it had to be made afresh.
fn prepare(
    wt: &Worktree,
    commit: &str,
    shadow_extra: Option<&str>,
    sandbox: &kbot_sandbox::Policy,
    out: &Path,
    arch: Arch,
    log: &Path,
) -> Result<(Vec<String>, Option<f64>), String> {
    wt.checkout(commit).map_err(|e| format!("checkout {commit}: {e}"))?;
    let rejected = match shadow_extra {
        Some(_) => shadow::instrument(&wt.path).map_err(|e| format!("shadow checks: {e}"))?,
        None => Vec::new(),
    };
    let t = Instant::now();
    let fresh = kconfig::ensure(sandbox, &wt.path, out, arch, shadow_extra.unwrap_or_default(), log)
        .map_err(|e| format!("kconfig: {e}"))?;
    Ok((rejected, fresh.then(|| t.elapsed().as_secs_f64())))
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

    fn ltp_repeat(&self) -> u32 {
        self.params.ltp.as_ref().map_or(1, |l| l.repeat)
    }

    fn say(&self, stage: &str, msg: &str) {
        self.progress.say(self.arch.name(), stage, msg);
    }

    fn build_ahead(&mut self, prefix: usize, bad_on_base: &[String]) {
        self.ahead = Some((prefix, bad_on_base.to_vec()));
    }

    fn kernel(&mut self, prefix: usize) -> Result<Kernel, LabError> {
        if let Some((p, k)) = self.built_ahead.take() {
            if p == prefix {
                return Ok(k);
            }
        }
        let commit = self.commits[prefix].clone();
        let key = kconfig::config_key(self.arch, &self.extra_config());
        let cache = self.home.kernel_cache(self.arch, &commit, &key);
        let log = self.dir.join(format!("build-{prefix}-{}.log", short_commit(&commit)));
        if let Some(k) = self.cached(prefix, &cache, log.clone()) {
            return Ok(k);
        }
        let what = label(prefix, self.n());
        let extra = self.shadow.then(|| self.extra_config());
        let (rejected, fresh) =
            prepare(self.wt, &commit, extra.as_deref(), self.sandbox, &self.out, self.arch, &log).map_err(LabError)?;
        if self.shadow {
            if !rejected.is_empty() {
                self.say("shadow", &format!("{what}: hooks did not apply in {}", rejected.join(", ")));
            }
            self.rejects.insert(prefix, rejected);
        }
        if let Some(secs) = fresh {
            self.say("config", &format!("tinyconfig + kbot fragment in {secs:.1}s"));
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
        if prefix == 0 && only.is_none() && !self.ltp_tests.is_empty() {
            // The base in two VMs: kbot's own tests (seeded, so run every time) and LTP, whose
            // result depends only on the kernel and the initramfs and is cached across series.
            let own = self.run_vm(0, image, Selection::Own, shrink)?;
            let ltp = self.run_vm(0, image, Selection::Only(self.ltp_tests.clone()), false)?;
            return Ok(self.finish(prefix, vec![own, ltp]));
        }
        let sel = only.map_or(Selection::All, |o| Selection::Rerun(o.to_vec()));
        let raw = self.run_vm(prefix, image, sel, shrink)?;
        Ok(self.finish(prefix, vec![raw]))
    }
}

/// The agent's words on a boot's command line, and what the boot runs.
struct AgentWords {
    append: String,
    /// The agent's selection (`kbot.only`), shadow rules left out.
    agent_only: Option<Vec<String>>,
    with_ltp: bool,
    only_ltp: bool,
}

fn agent_words(p: &BootParams, sel: &Selection, prefix: usize, shrink: bool, ltp_tests: &[String]) -> AgentWords {
    // Shadow rules are not tests of the agent: they watch whatever runs. When only they are
    // in question, run everything so the same activity happens.
    let agent_only: Option<Vec<String>> = match sel {
        Selection::Only(o) | Selection::Rerun(o) => {
            Some(o.iter().filter(|n| !TestFamily::of(n).observed()).cloned().collect::<Vec<_>>())
                .filter(|o| !o.is_empty())
        }
        _ => None,
    };
    let is_ltp = |n: &String| TestFamily::of(n) == TestFamily::Ltp;
    let only_ltp = agent_only.as_ref().is_some_and(|o| o.iter().all(is_ltp));
    let with_ltp = match sel {
        Selection::All => !ltp_tests.is_empty(),
        Selection::Own => false,
        Selection::Only(_) | Selection::Rerun(_) => agent_only.as_ref().is_some_and(|o| o.iter().any(is_ltp)),
    };
    // Only LTP: the scenario words would change nothing but the cache key.
    let mut append = if only_ltp {
        "kbot.random=0 kbot.shrink_ms=0".to_string()
    } else {
        format!(
            "kbot.watchdog_ms={} kbot.seed={} kbot.random={}{}",
            p.watchdog_ms,
            p.seed,
            p.random,
            if shrink { "" } else { " kbot.shrink_ms=0" }
        )
    };
    if let Some(l) = &p.ltp {
        append += &l.words();
        // A rerun of the base is the control for the tip's reruns: twice as many runs, so a
        // test that fails now and then on the base is seen to.
        if with_ltp && matches!(sel, Selection::Rerun(_)) && l.repeat > 1 {
            append += &format!(" kbot.ltp_repeat={}", if prefix == 0 { 2 * l.repeat } else { l.repeat });
        }
    }
    if matches!(sel, Selection::Own) {
        append += " kbot.ltp=off";
    }
    if let Some(o) = &agent_only {
        append += &format!(" kbot.only={}", o.join(","));
    }
    AgentWords { append, agent_only, with_ltp, only_ltp }
}

impl QemuLab<'_> {
    /// LTP's tests that check kernel options read the .config (KCONFIG_PATH): it goes into
    /// the initramfs as a second cpio archive before the first boot. Every prefix of a check
    /// shares the build directory's configuration.
    fn add_kconfig(&mut self) {
        if self.ltp_tests.is_empty() || self.kconfig_in_initrd {
            return;
        }
        self.kconfig_in_initrd = true;
        let key = kconfig::config_key(self.arch, &self.extra_config());
        let stamp = std::fs::read_to_string(self.out.join(".kbot-config-key")).unwrap_or_default();
        let Ok(config) = std::fs::read(self.out.join(".config")) else { return };
        if stamp.trim() != key {
            return;
        }
        let more = kbot_kernel::cpio::archive(&[kbot_kernel::cpio::Entry::File {
            name: "ltp/kernel.config",
            mode: 0o644,
            data: &config,
        }]);
        let appended = std::fs::OpenOptions::new().append(true).open(&self.initrd).and_then(|mut f| {
            use std::io::Write;
            f.write_all(&more)
        });
        if let Err(e) = appended {
            self.say(
                "ltp",
                &format!("the kernel config is not in the initramfs ({e}): tests that read it will say so"),
            );
        }
    }

    fn run_vm(&mut self, prefix: usize, image: &Path, sel: Selection, shrink: bool) -> Result<RawBoot, LabError> {
        self.add_kconfig();
        let accel = self.accel(image);
        self.boots += 1;
        let commit = short_commit(&self.commits[prefix]).to_string();
        let log = self.dir.join(format!("console-{prefix}-{commit}-{}.log", self.boots));
        let p = self.params;
        let AgentWords { append, agent_only, with_ltp, only_ltp } =
            agent_words(p, &sel, prefix, shrink, &self.ltp_tests);
        let ltp_time = match (&p.ltp, with_ltp) {
            (Some(l), true) => Duration::from_millis(l.budget_ms + l.limit_ms.min(l.budget_ms)),
            _ => Duration::ZERO,
        };
        let spec = VmSpec {
            arch: self.arch,
            kernel: image,
            initrd: &self.initrd,
            append,
            timeout: p.vm_timeout + ltp_time,
            accel,
            mem_mb: if p.ltp.is_some() { 1024 } else { 512 },
            smp: 2,
        };
        let what = match &sel {
            Selection::Own if prefix == 0 => format!("{} (kbot's tests)", label(prefix, self.n())),
            Selection::Only(_) if only_ltp && prefix == 0 => format!("{} (LTP)", label(prefix, self.n())),
            Selection::Rerun(_) if prefix == 0 => format!("{} (control)", label(prefix, self.n())),
            _ => label(prefix, self.n()),
        };
        // Only the base's boots are cached: content-addressed by kernel, initramfs and command
        // line, so a new agent, LTP build or parameter is a new key.
        // The base's control is a fresh sample each time, not a cached one.
        let fresh = matches!(sel, Selection::Rerun(_));
        let cache = (prefix == 0 && !fresh).then(|| self.boot_cache_dir(&spec)).flatten();
        if let Some(c) = &cache {
            if let Some(raw) = cached_boot(c, &log, agent_only.clone()) {
                self.say("boot", &format!("{what}: cached result ({:.0}s when it ran)", raw.seconds));
                return Ok(raw);
            }
        }
        self.say("boot", &format!("{what} ({})", spec.accel.name()));
        let (arch, progress) = (self.arch.name(), self.progress);
        let started = Instant::now();
        // The first bad news of this boot, as it is printed: a failed test or an in-kernel
        // rule's violation (which comes long before any test result).
        let mut first_verdict: Option<f64> = None;
        let mut rules_seen: Vec<String> = Vec::new();
        // The tip's first boot: at its first bad news, bisection's first probe is built beside
        // the VM (most of a boot with a regression is watchdogs waiting).
        let (ahead, bad_on_base) = match self.ahead.take().filter(|_| prefix == self.n()) {
            Some((p, bad)) => (Some(p), bad),
            None => (None, Vec::new()),
        };
        // News that is bad only when the base did not have it too.
        let new_bad = |name: &str| !bad_on_base.iter().any(|b| b == name);
        let mut bad_news = false;
        let ahead = ahead.map(|p| Ahead {
            prefix: p,
            what: label(p, self.n()),
            commit: self.commits[p].clone(),
            wt: self.wt,
            sandbox: self.sandbox,
            shadow_extra: self.shadow.then(shadow::config_extra),
            arch: self.arch,
            out: self.out.clone(),
            log: self.dir.join(format!("build-{p}-{}.log", short_commit(&self.commits[p]))),
            jobs: self.params.jobs,
            timeout: self.params.build_timeout,
        });
        let mut ahead_out: Option<AheadResult> = None;
        let vm = std::thread::scope(|s| {
            let mut building = None;
            let vm = qemu::run(self.sandbox, &spec, &log, 16 << 20, |line| {
                let l = kbot_console::strip_timestamp(line);
                if l.starts_with("not ok ") || l.starts_with("ok ") {
                    progress.say(arch, "test", l);
                    if let Some(rest) = l.strip_prefix("not ok ") {
                        first_verdict.get_or_insert(started.elapsed().as_secs_f64());
                        let name = rest.split_whitespace().nth(1).unwrap_or("");
                        bad_news |= new_bad(name);
                    }
                } else if let Some(rest) = l.strip_prefix("kbot-shadow: VIOLATION rule=") {
                    let rule = rest.split_whitespace().next().unwrap_or("").to_string();
                    bad_news |= new_bad(&format!("shadow/{rule}"));
                    if !rules_seen.contains(&rule) {
                        progress.say(arch, "verdict", &format!("in-kernel rule shadow/{rule} violated"));
                        rules_seen.push(rule);
                    }
                    first_verdict.get_or_insert(started.elapsed().as_secs_f64());
                }
                if building.is_none() && bad_news {
                    if let Some(a) = &ahead {
                        let msg = format!("{}: building it ahead, at idle priority, while the tip boots", a.what);
                        progress.say(arch, "build", &msg);
                        building = Some(s.spawn(move || a.run()));
                    }
                }
            });
            if let Some(h) = building {
                ahead_out = Some(h.join().unwrap_or_else(|_| Err("the build ahead panicked".into())));
            }
            vm
        })
        .map_err(|e| LabError(format!("cannot start {}: {e}", self.arch.qemu())))?;
        if let (Some(a), Some(out)) = (&ahead, ahead_out) {
            self.keep_ahead(a, out);
        }
        self.stage(format!("{}.boot.{}", self.arch, prefix), vm.seconds);
        if let Some(t) = first_verdict {
            self.stage(format!("{}.first_verdict.{}", self.arch, prefix), t);
        }
        let console = kbot_console::parse(&vm.console);
        if !console.started && !vm.qemu_stderr.trim().is_empty() {
            return Err(LabError(format!(
                "{} failed: {}",
                self.arch.qemu(),
                vm.qemu_stderr.lines().next().unwrap_or("")
            )));
        }
        let raw = RawBoot {
            text: vm.console,
            log,
            timed_out: vm.timed_out,
            seconds: vm.seconds,
            expected: agent_only,
            cached: false,
        };
        if let Some(c) = &cache {
            if console.done && !raw.timed_out {
                store_boot(c, &raw);
            }
        }
        Ok(raw)
    }

    /// Files a build made ahead: a kernel goes to the cache (the step that wants it finds it
    /// there), a failed build is kept for [`Lab::kernel`]; trouble is only said (the step
    /// builds it again).
    fn keep_ahead(&mut self, a: &Ahead, out: AheadResult) {
        let (rejected, b) = match out {
            Ok(x) => x,
            Err(e) => {
                self.say("build", &format!("{}: the build ahead did not run ({e}); it is built when needed", a.what));
                return;
            }
        };
        if !rejected.is_empty() {
            self.say("shadow", &format!("{}: hooks did not apply in {}", a.what, rejected.join(", ")));
        }
        self.rejects.insert(a.prefix, rejected);
        self.stage(format!("{}.build.{}", self.arch, a.prefix), b.seconds);
        self.say("build", &format!("{}: {} in {:.1}s (ahead)", a.what, if b.ok { "ok" } else { "FAILED" }, b.seconds));
        if b.timed_out {
            return;
        }
        let key = kconfig::config_key(self.arch, &self.extra_config());
        let cache = self.home.kernel_cache(self.arch, &a.commit, &key);
        let image = b.image.map(|img| self.publish(a.prefix, img, &cache));
        let k = Kernel { image, errors: b.errors, log: b.log, seconds: b.seconds, cached: false };
        self.built_ahead = Some((a.prefix, k));
    }

    fn boot_cache_dir(&self, spec: &VmSpec) -> Option<PathBuf> {
        let mut key = Vec::new();
        key.extend_from_slice(&std::fs::read(spec.kernel).ok()?);
        key.extend_from_slice(&std::fs::read(spec.initrd).ok()?);
        key.extend_from_slice(
            format!("\n{}\n{}\n{}\n{}", spec.append, spec.accel.name(), spec.mem_mb, spec.smp).as_bytes(),
        );
        Some(self.home.boot_cache(self.arch, &format!("{:016x}", kbot_kernel::fnv64(&key))))
    }

    /// The tests and console of one or more VM runs of the same kernel.
    fn finish(&mut self, prefix: usize, raws: Vec<RawBoot>) -> Boot {
        let mut tests = Vec::new();
        let mut done = true;
        let mut started = true;
        for r in &raws {
            let c = kbot_console::parse(&r.text);
            let expected: Vec<String> = match &r.expected {
                Some(o) => o.clone(),
                None => c.tests.iter().map(|t| t.name.clone()).collect(),
            };
            tests.extend(kbot_compare::tests_of(&c, &expected, r.timed_out));
            done &= c.done;
            started &= c.started;
        }
        let timed_out = raws.iter().any(|r| r.timed_out);
        let seconds = raws.iter().filter(|r| !r.cached).map(|r| r.seconds).sum();
        let (text, log) = if raws.len() == 1 {
            (raws[0].text.clone(), raws[0].log.clone())
        } else {
            // One log for the boot as a whole, the runs one after the other.
            let text: String = raws.iter().map(|r| r.text.as_str()).collect::<Vec<_>>().join("\n");
            let commit = short_commit(&self.commits[prefix]);
            let log = self.dir.join(format!("console-{prefix}-{commit}-all.log"));
            let _ = std::fs::write(&log, &text);
            (text, log)
        };
        let mut console = kbot_console::parse(&text);
        console.done = done;
        console.started = started;
        // The shadow rules count only for a kernel whose hooks all applied. A boot that did not
        // run what they watch (no user space, agent stopped, component never started) skips
        // them with the reason: "no violation" there is not a pass.
        if self.shadow && self.rejects.get(&prefix).is_none_or(|r| r.is_empty()) {
            tests.extend(kbot_compare::shadow_tests(&console, timed_out));
        }
        Boot { finished: console.done, timed_out, console, tests, log, seconds }
    }
}

/// A cached boot of the base, copied to this run's `log`.
fn cached_boot(dir: &Path, log: &Path, expected: Option<Vec<String>>) -> Option<RawBoot> {
    let text = std::fs::read_to_string(dir.join("console.log")).ok()?;
    let seconds: f64 = std::fs::read_to_string(dir.join("seconds")).ok()?.trim().parse().ok()?;
    std::fs::write(log, &text).ok()?;
    Some(RawBoot { text, log: log.to_path_buf(), timed_out: false, seconds, expected, cached: true })
}

/// Stores a finished boot atomically (a half-written entry is never read).
fn store_boot(dir: &Path, raw: &RawBoot) {
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let ok = std::fs::create_dir_all(&tmp)
        .and_then(|_| std::fs::write(tmp.join("console.log"), &raw.text))
        .and_then(|_| std::fs::write(tmp.join("seconds"), format!("{:.1}", raw.seconds)))
        .and_then(|_| {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::rename(&tmp, dir)
        });
    if ok.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> BootParams {
        BootParams {
            watchdog_ms: 3000,
            seed: 1,
            random: 8,
            vm_timeout: Duration::from_secs(60),
            jobs: 2,
            build_timeout: Duration::from_secs(60),
            ltp: Some(LtpBoot::default()),
        }
    }

    fn rerun(names: &[&str]) -> Selection {
        Selection::Rerun(names.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn ltp_passes_repeat_only_in_reruns() {
        let p = params();
        let ltp = ["ltp/fanotify07".to_string()];
        let w = agent_words(&p, &rerun(&["inotify_close_with_pending_perm", "ltp/fanotify07"]), 2, false, &ltp);
        assert!(w.append.contains(" kbot.ltp_repeat=5 "), "{}", w.append);
        assert!(w.append.ends_with(" kbot.only=inotify_close_with_pending_perm,ltp/fanotify07"));
        // The base's control runs twice as many.
        let control = agent_words(&p, &rerun(&["ltp/fanotify07"]), 0, false, &ltp);
        assert!(control.append.contains(" kbot.ltp_repeat=10 "), "{}", control.append);
        // The tip's first boot and the base's LTP boot run each test once.
        let base_ltp = Selection::Only(ltp.to_vec());
        for (sel, prefix) in [(Selection::All, 3), (base_ltp, 0)] {
            let w = agent_words(&p, &sel, prefix, true, &ltp);
            assert!(w.with_ltp && !w.append.contains("ltp_repeat"), "{}", w.append);
        }
        // A rerun without an LTP test in question has nothing to repeat.
        let own = agent_words(&p, &rerun(&["inotify_close_with_pending_perm"]), 2, false, &ltp);
        assert!(!own.with_ltp && !own.append.contains("ltp_repeat"), "{}", own.append);
        let once = BootParams { ltp: Some(LtpBoot { repeat: 1, ..LtpBoot::default() }), ..params() };
        assert!(!agent_words(&once, &rerun(&["ltp/fanotify07"]), 2, false, &ltp).append.contains("ltp_repeat"));
    }

    #[test]
    fn shadow_rules_alone_rerun_everything() {
        let w = agent_words(&params(), &rerun(&["shadow/wait-in-srcu"]), 2, false, &[]);
        assert!(w.agent_only.is_none() && !w.append.contains("kbot.only"), "{}", w.append);
        let l = agent_words(&params(), &rerun(&["shadow/wait-in-srcu", "ltp/fanotify07"]), 2, false, &[]);
        assert!(l.only_ltp && l.append.starts_with("kbot.random=0 kbot.shrink_ms=0"), "{}", l.append);
    }
}
