//! `kbot check`: parse, apply, build, boot and test base and tip per arch, bisect
//! regressions inside the series, and fill in a `kbot.result/v1`.

use crate::home::{Home, Lock};
use crate::progress::Progress;
use crate::{agent, Fail};
use kbot_bisect::{Found, Verdict};
use kbot_console::Console;
use kbot_kernel::git::{Tree, Worktree};
use kbot_kernel::qemu::{self, Accel, VmSpec};
use kbot_kernel::{build, cpio, kconfig, shadow, Arch};
use kbot_report::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether kernels get kbot's in-kernel shadow checks (Rust for Linux).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ShadowMode {
    /// On when Rust for Linux works for the tree and arch, else off with a note.
    Auto,
    /// Required: a missing Rust toolchain is an error.
    On,
    Off,
}

impl std::str::FromStr for ShadowMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ShadowMode::Auto),
            "on" => Ok(ShadowMode::On),
            "off" => Ok(ShadowMode::Off),
            _ => Err(format!("{s}: use auto, on or off")),
        }
    }
}

/// What is tested. Fetching a series (lore, a local inbox) happens before the engine: it
/// gets the bytes.
pub enum Input {
    /// An mbox of the series, and where it came from (a path, a thread URL) for messages.
    Mbox { data: Vec<u8>, source: String },
    /// `BASE..TIP` in the tree: its commits are the series.
    Range(String),
}

pub struct CheckArgs {
    pub input: Input,
    pub tree: Option<PathBuf>,
    pub base: Option<String>,
    pub arches: Vec<Arch>,
    pub jobs: usize,
    pub watchdog_ms: u64,
    pub vm_timeout: Duration,
    pub build_timeout: Duration,
    pub reporter: String,
    /// The command line as given, for the report's reproduce section.
    pub command: String,
    /// Seed and number of the random differential scenarios (same for base and tip).
    pub seed: u64,
    pub random: u32,
    pub shadow: ShadowMode,
    /// Which version of the series to test when the input holds several (default: newest).
    pub version: Option<u32>,
    /// How make, checkpatch and QEMU run (the series is untrusted code).
    pub sandbox: kbot_sandbox::Policy,
}

/// Everything an arch's check needs, shared by the arch threads.
struct Ctx<'a> {
    home: &'a Home,
    tree: &'a Tree,
    args: &'a CheckArgs,
    progress: &'a Progress,
    run_dir: PathBuf,
    /// commits[0] is the base, commits[i] the series applied up to patch i.
    commits: Vec<String>,
    patches: Vec<PatchInfo>,
    stages: Mutex<Vec<(String, f64)>>,
}

impl Ctx<'_> {
    fn stage(&self, name: String, secs: f64) {
        self.stages.lock().unwrap_or_else(|e| e.into_inner()).push((name, secs));
    }
}

fn read_input(args: &CheckArgs, tree: Option<&Tree>) -> Result<(Vec<u8>, String), Fail> {
    match &args.input {
        Input::Mbox { data, source } => Ok((data.clone(), source.clone())),
        Input::Range(r) => {
            let tree = tree.ok_or_else(|| Fail::usage("--range needs a tree"))?;
            if !r.contains("..") {
                return Err(Fail::usage(format!("--range {r}: expected BASE..TIP")));
            }
            let out =
                kbot_kernel::git::git(&tree.path, &["format-patch", "--stdout", "--no-signature", r]).map_err(|e| {
                    let msg = e.to_string();
                    let fatal = msg.lines().find(|l| l.contains("fatal:")).unwrap_or(msg.lines().next().unwrap_or(""));
                    Fail::usage(format!("--range {r}: {}; give BASE..TIP of commits in the tree", fatal.trim()))
                })?;
            if out.trim().is_empty() {
                return Err(Fail::usage(format!("--range {r} has no commits")));
            }
            Ok((out.into_bytes(), format!("range {r}")))
        }
    }
}

fn open_tree(home: &Home, args: &CheckArgs) -> Result<Tree, Fail> {
    match &args.tree {
        Some(t) => {
            Tree::open(t).map_err(|e| Fail::usage(format!("--tree: {e}; give a git repository with a kernel tree")))
        }
        None => {
            let d = home.default_tree();
            if !d.join(".git").exists() {
                return Err(Fail::env(format!(
                    "the default tree {} is not set up; run `kbot setup` first (or pass --tree)",
                    d.display()
                )));
            }
            Tree::open(&d).map_err(|e| Fail::env(format!("default tree: {e}; run `kbot setup` again")))
        }
    }
}

fn check_environment(arches: &[Arch]) -> Result<(), Fail> {
    for a in arches {
        if !kbot_kernel::proc::have(a.qemu()) {
            return Err(Fail::env(format!("{} not found; run `kbot setup` (as root) to install QEMU", a.qemu())));
        }
        let missing = build::missing_tools(*a);
        if !missing.is_empty() {
            return Err(Fail::env(format!(
                "{a} build tools missing: {}; run `kbot setup` (as root)",
                missing.join(", ")
            )));
        }
    }
    Ok(())
}

fn first_line_of(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_else(|| format!("{cmd}: not found"))
}

pub fn run(home: &Home, args: &CheckArgs, progress: &Progress) -> Result<CheckResult, Fail> {
    let t0 = Instant::now();
    let mut stages: Vec<(String, f64)> = Vec::new();
    // Bad input is reported before anything slow happens.
    let tree_first = if matches!(args.input, Input::Range(_)) { Some(open_tree(home, args)?) } else { None };
    let (data, source) = read_input(args, tree_first.as_ref())?;
    let mails = kbot_mbox::parse_mbox(&data).map_err(|e| {
        Fail::usage(format!("{source}: {e}; give an mbox of patch mails (git format-patch, b4 am, a lore t.mbox)"))
    })?;
    let series = kbot_series::assemble(&mails, args.version).map_err(|e| Fail::usage(format!("{source}: {e}")))?;
    stages.push(("parse".into(), t0.elapsed().as_secs_f64()));
    progress.say(
        "series",
        "parse",
        &format!(
            "{:?}: v{}, {} of {} patches{}",
            series.subject,
            series.version,
            series.patches.len(),
            series.total,
            if series.cover.is_some() { ", cover letter" } else { "" }
        ),
    );

    let tree = match tree_first {
        Some(t) => t,
        None => open_tree(home, args)?,
    };
    let mut notes = Vec::new();
    if !series.duplicates.is_empty() {
        notes.push(format!("patches sent more than once: {:?}; the first copy of each was used", series.duplicates));
    }
    if !series.without_diff.is_empty() {
        notes.push(format!("patches without a diff: {:?}", series.without_diff));
    }
    if !series.other_versions.is_empty() {
        notes.push(format!("the input also holds version(s) {:?}; tested v{}", series.other_versions, series.version));
    }
    let range_base = match &args.input {
        Input::Range(r) => r.split("..").next().map(str::to_string),
        _ => None,
    };
    let (base, base_source) = if let Some(b) = &args.base {
        let c = tree
            .resolve(b)
            .ok_or_else(|| Fail::usage(format!("--base {b}: the tree {} has no such commit", tree.path.display())))?;
        (c, "--base".to_string())
    } else if let Some(b) = range_base {
        let c = tree.resolve(&b).ok_or_else(|| Fail::usage(format!("--range: the tree has no commit {b}")))?;
        (c, "--range".to_string())
    } else if let Some(c) = series.base_commit.as_deref().and_then(|b| tree.resolve(b)) {
        (c, "base-commit".to_string())
    } else {
        if let Some(b) = &series.base_commit {
            notes.push(format!("base-commit {b} is not in the tree; applied to the tree's HEAD instead"));
        } else {
            notes.push("the series names no base-commit; applied to the tree's HEAD".into());
        }
        let c = tree
            .resolve("HEAD")
            .ok_or_else(|| Fail::usage(format!("the tree {} has no commits", tree.path.display())))?;
        (c, "tree HEAD".to_string())
    };
    let mut trailers = kbot_series::trailers::collect(&mails, &series);
    let exists = |sha: &str| !sha.is_empty() && tree.resolve(sha).is_some();
    let info = |c: kbot_series::checks::CheckItem| CheckInfo { name: c.name, state: c.state, detail: c.detail };
    if !series.from_older.is_empty() {
        let from: Vec<String> = series.from_older.iter().map(|(i, v)| format!("{i} (v{v})")).collect();
        notes.push(format!(
            "partial reroll: v{} resends only some patches; the others come from older versions: {}",
            series.version,
            from.join(", ")
        ));
    }
    if !series.prerequisites.is_empty() {
        let known = tree.patch_ids(&base, 200);
        for p in &series.prerequisites {
            match known.iter().find(|(id, _)| id.starts_with(p.as_str()) || p.starts_with(id.as_str())) {
                Some((_, c)) => notes.push(format!("prerequisite-patch-id {p} is in the base (commit {})", &c[..12.min(c.len())])),
                None => notes.push(format!("prerequisite-patch-id {p} is not among the last 200 commits of the base: the series may need it first")),
            }
        }
    }
    let patches: Vec<PatchInfo> = series
        .patches
        .iter()
        .map(|p| PatchInfo {
            index: p.index,
            subject: p.subject.clone(),
            message_id: p.message_id.clone(),
            author: p.author.clone(),
            commit: None,
            trailers: trailers.remove(&p.index).unwrap_or_default(),
            checks: kbot_series::checks::patch_checks(p, &exists).into_iter().map(info).collect(),
        })
        .collect();
    let mut result = CheckResult::new(SeriesInfo {
        subject: series.subject.clone(),
        version: series.version,
        total: series.total,
        message_id: series.message_id.clone(),
        base: base.clone(),
        base_source,
        missing: series.missing.clone(),
        duplicates: series.duplicates.clone(),
        patches,
        notes,
        checks: kbot_series::checks::series_checks(&series).into_iter().map(info).collect(),
    });
    result.reported_by = format!("Reported-by: {}", args.reporter);
    result.scenarios =
        ScenarioInfo { seed: args.seed, random: args.random, corpus: kbot_scenario::corpus().len() as u32 };
    result.environment = Environment {
        kbot: format!("kbot {}", env!("CARGO_PKG_VERSION")),
        tree: format!("{} ({})", tree.path.display(), tree.subject(&base).unwrap_or_default()),
        compiler: first_line_of("gcc", &["--version"]),
        qemu: first_line_of(args.arches.first().map_or("qemu-system-x86_64", |a| a.qemu()), &["--version"]),
        config: format!(
            "tinyconfig + images/kconfig/common.config + images/kconfig/<arch>.config (+ CONFIG_RUST, CONFIG_KBOT_SHADOW with the shadow checks) ({})",
            args.arches.iter().map(|a| format!("{a}:{}", kconfig::config_key(*a, ""))).collect::<Vec<_>>().join(", ")
        ),
    };
    result.reproduce = vec![
        "kbot setup".into(),
        format!(
            "{} --base {} --seed {} --scenarios {}",
            args.command,
            &base[..12.min(base.len())],
            args.seed,
            args.random
        ),
    ];
    let finish = |mut r: CheckResult, stages: Vec<(String, f64)>| {
        r.timings = Timings { total_s: t0.elapsed().as_secs_f64(), stages };
        r
    };
    if !series.is_complete() {
        result.status = Status::Incomplete;
        progress.say(
            "series",
            "missing",
            &format!("patches {:?} of {} are missing: nothing built", series.missing, series.total),
        );
        return Ok(finish(result, stages));
    }

    let _lock = Lock::take(&home.lock_file(&tree.path), || {
        progress.say("tree", "lock", "another kbot is using this tree; waiting")
    })
    .map_err(|e| Fail::env(format!("cannot lock {}: {e}", home.lock_file(&tree.path).display())))?;
    let run_dir = home
        .new_run_dir()
        .map_err(|e| Fail::env(format!("cannot create a run directory under {}: {e}", home.root.display())))?;

    // Worktrees are created one after the other: git locks its worktree list.
    let t = Instant::now();
    let mut worktrees = BTreeMap::new();
    for a in &args.arches {
        let p = home.worktree(&tree.path, *a);
        if !p.join(".git").exists() {
            progress.say(a.name(), "worktree", &format!("creating {} (first run on this tree only)", p.display()));
        }
        let wt = tree
            .worktree(&p, &base)
            .map_err(|e| Fail::env(format!("cannot create the worktree {}: {e}", p.display())))?;
        worktrees.insert(*a, wt);
    }
    stages.push(("worktrees".into(), t.elapsed().as_secs_f64()));

    // Apply once, in the first arch's worktree; the commits are shared by all worktrees.
    let t = Instant::now();
    let wt0 = &worktrees[&args.arches[0]];
    wt0.checkout(&base).map_err(|e| Fail::env(format!("cannot check out the base: {e}")))?;
    let patch_dir = run_dir.join("patches");
    std::fs::create_dir_all(&patch_dir).map_err(|e| Fail::env(e.to_string()))?;
    let mut commits = vec![base.clone()];
    let files: Vec<PathBuf> = series.patches.iter().map(|p| patch_dir.join(format!("{:04}.mbox", p.index))).collect();
    for (p, f) in series.patches.iter().zip(&files) {
        std::fs::write(f, p.mail.to_mbox()).map_err(|e| Fail::env(e.to_string()))?;
    }
    // checkpatch.pl of the base tree, before anything is applied: a series cannot change the
    // checker it is judged by. Long series only get their first 50 patches checked.
    let tc = Instant::now();
    for (i, f) in files.iter().enumerate().take(50) {
        let log = f.with_extension("checkpatch");
        if let Some(c) = kbot_kernel::checkpatch::run(&args.sandbox, &wt0.path, f, &log) {
            let state = if c.errors > 0 {
                "fail"
            } else if c.warnings > 0 {
                "warning"
            } else {
                "success"
            };
            let mut detail = format!("{} errors, {} warnings", c.errors, c.warnings);
            if !c.lines.is_empty() {
                detail += &format!(": {}", c.lines.join("; "));
            }
            result.series.patches[i].checks.push(CheckInfo { name: "checkpatch".into(), state: state.into(), detail });
        }
    }
    stages.push(("checkpatch".into(), tc.elapsed().as_secs_f64()));
    // A range tests the tree's own commits (first-parent history), so patches[].commit and
    // the first bad commit are the ids the branch has. With merges in the range the linear
    // history cannot be matched to format-patch's mails: then it is applied like a series.
    let own: Option<Vec<String>> = match &args.input {
        Input::Range(r) => kbot_kernel::git::git(&tree.path, &["rev-list", "--reverse", "--first-parent", r])
            .ok()
            .map(|o| o.lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|c| c.len() == series.patches.len()),
        _ => None,
    };
    if let Some(own) = &own {
        for (i, c) in own.iter().enumerate() {
            result.series.patches[i].commit = Some(c.clone());
            commits.push(c.clone());
        }
    }
    for (i, (p, f)) in series.patches.iter().zip(&files).enumerate() {
        if own.is_some() {
            break;
        }
        progress.say("series", "apply", &format!("[{}/{}] {}", p.index, series.total, p.subject));
        match wt0.am(f).map_err(|e| Fail::env(format!("git am: {e}")))? {
            Ok(c) => {
                result.series.patches[i].commit = Some(c.clone());
                commits.push(c);
            }
            Err(fail) => {
                result.status = Status::ApplyFailed;
                result.apply = Apply { ok: false, failed_patch: Some(p.index), detail: fail.detail };
                stages.push(("apply".into(), t.elapsed().as_secs_f64()));
                progress.say("series", "apply", &format!("patch {} does not apply to {}", p.index, &base[..12]));
                return Ok(finish(result, stages));
            }
        }
    }
    result.apply = Apply {
        ok: true,
        failed_patch: None,
        detail: if own.is_some() {
            format!("{} commits of the tree", series.patches.len())
        } else {
            format!("{} patches applied with git am -3", series.patches.len())
        },
    };
    stages.push(("apply".into(), t.elapsed().as_secs_f64()));

    // Only now the build and boot tools matter: apply failures need none of them.
    check_environment(&args.arches)?;
    let agents: Vec<(Arch, PathBuf)> = args
        .arches
        .iter()
        .map(|a| {
            progress.say(a.name(), "agent", "building the guest agent");
            agent::build(*a).map(|p| (*a, p))
        })
        .collect::<Result<_, _>>()?;
    let ctx = Ctx {
        home,
        tree: &tree,
        args,
        progress,
        run_dir,
        commits,
        patches: result.series.patches.clone(),
        stages: Mutex::new(Vec::new()),
    };
    // Arches run side by side, each with its share of the cores.
    let arches: Vec<ArchResult> = std::thread::scope(|s| {
        let handles: Vec<_> = agents
            .iter()
            .map(|(a, agent)| {
                let (ctx, wt) = (&ctx, &worktrees[a]);
                s.spawn(move || check_arch(ctx, *a, wt, agent))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("arch thread panicked")).collect()
    });
    stages.extend(ctx.stages.into_inner().unwrap_or_else(|e| e.into_inner()));
    result.arches = arches;
    result.status = if result.arches.iter().any(|a| !a.regressions.is_empty()) {
        Status::Regression
    } else if let Some(a) = result.arches.iter().find(|a| a.error.is_some()) {
        result.error = Some(format!("{}: {}", a.arch, a.error.clone().unwrap_or_default()));
        Status::Error
    } else {
        Status::Clean
    };
    Ok(finish(result, stages))
}

/// A kernel for one commit: built now or taken from the cache.
struct Kernel {
    image: Option<PathBuf>,
    errors: Vec<String>,
    log: PathBuf,
    seconds: f64,
    cached: bool,
    timed_out: bool,
}

struct Boot {
    console: Console,
    tests: Vec<TestResult>,
    log: PathBuf,
    finished: bool,
    timed_out: bool,
    seconds: f64,
}

struct ArchRunner<'a> {
    ctx: &'a Ctx<'a>,
    arch: Arch,
    wt: &'a Worktree,
    out: PathBuf,
    initrd: PathBuf,
    accel: Option<Accel>,
    boots: usize,
    /// The shadow checks are built into the kernels of this arch.
    shadow: bool,
    /// Per patch prefix: files whose shadow hooks did not apply (their results are unused).
    rejects: BTreeMap<usize, Vec<String>>,
}

impl ArchRunner<'_> {
    fn say(&self, stage: &str, msg: &str) {
        self.ctx.progress.say(self.arch.name(), stage, msg);
    }

    fn label(&self, prefix: usize) -> String {
        let n = self.ctx.commits.len() - 1;
        match prefix {
            0 => "base".to_string(),
            p if p == n => format!("tip ({p}/{n} patches)"),
            p => format!("{p}/{n} patches"),
        }
    }

    fn extra_config(&self) -> String {
        if self.shadow {
            shadow::config_extra()
        } else {
            String::new()
        }
    }

    fn kernel(&mut self, prefix: usize) -> Result<Kernel, String> {
        let commit = &self.ctx.commits[prefix];
        let key = kconfig::config_key(self.arch, &self.extra_config());
        let cache = self.ctx.home.kernel_cache(self.arch, commit, &key);
        let image = cache.join(self.arch.image_target());
        let log = self.ctx.run_dir.join(self.arch.name()).join(format!("build-{prefix}-{}.log", &commit[..12]));
        let rejects_file = cache.join("shadow-rejects");
        if image.is_file() {
            if let Ok(r) = std::fs::read_to_string(&rejects_file) {
                self.rejects.insert(prefix, r.lines().map(str::to_string).collect());
            }
            self.say("build", &format!("{}: cached kernel {}", self.label(prefix), &commit[..12]));
            return Ok(Kernel {
                image: Some(image),
                errors: vec![],
                log,
                seconds: 0.0,
                cached: true,
                timed_out: false,
            });
        }
        self.wt.checkout(commit).map_err(|e| format!("checkout {commit}: {e}"))?;
        if self.shadow {
            let rejected = shadow::instrument(&self.wt.path).map_err(|e| format!("shadow checks: {e}"))?;
            if !rejected.is_empty() {
                self.say("shadow", &format!("{}: hooks did not apply in {}", self.label(prefix), rejected.join(", ")));
            }
            self.rejects.insert(prefix, rejected);
        }
        let t = Instant::now();
        let fresh =
            kconfig::ensure(&self.ctx.args.sandbox, &self.wt.path, &self.out, self.arch, &self.extra_config(), &log)
                .map_err(|e| format!("kconfig: {e}"))?;
        if fresh {
            self.say("config", &format!("tinyconfig + kbot fragment in {:.1}s", t.elapsed().as_secs_f64()));
        }
        self.say("build", &format!("{} ({}), make -j{}", self.label(prefix), &commit[..12], self.ctx.args.jobs));
        let b = build::build(
            &self.ctx.args.sandbox,
            &self.wt.path,
            &self.out,
            self.arch,
            self.ctx.args.jobs,
            &log,
            self.ctx.args.build_timeout,
        )
        .map_err(|e| format!("cannot run make: {e}"))?;
        self.ctx.stage(format!("{}.build.{}", self.arch, prefix), b.seconds);
        self.say(
            "build",
            &format!("{}: {} in {:.1}s", self.label(prefix), if b.ok { "ok" } else { "FAILED" }, b.seconds),
        );
        if b.timed_out {
            // A limit says nothing about the patch being good or bad: an error, not a regression.
            return Err(format!(
                "the build of {} was stopped by its time limit ({} s); see {}",
                self.label(prefix),
                self.ctx.args.build_timeout.as_secs(),
                log.display()
            ));
        }
        let image = match b.image {
            Some(img) => {
                // Publish to the cache atomically: copy, then rename the directory.
                let tmp = cache.with_extension(format!("tmp-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&tmp);
                let rejects = self.rejects.get(&prefix).map(|r| r.join("\n")).unwrap_or_default();
                let copied = std::fs::create_dir_all(&tmp)
                    .and_then(|_| std::fs::copy(&img, tmp.join(self.arch.image_target())))
                    .and_then(|_| std::fs::write(tmp.join("shadow-rejects"), &rejects))
                    .and_then(|_| {
                        let _ = std::fs::remove_dir_all(&cache);
                        std::fs::rename(&tmp, &cache)
                    });
                if copied.is_ok() {
                    Some(image)
                } else {
                    Some(img)
                }
            }
            None => None,
        };
        Ok(Kernel { image, errors: b.errors, log, seconds: b.seconds, cached: false, timed_out: b.timed_out })
    }

    /// Boots `image`; `shrink`: diverging scenarios are shrunk to a minimal one (for the
    /// evidence of the tip's first boot; bisection steps only need verdicts).
    fn boot(&mut self, prefix: usize, image: &Path, only: Option<&[String]>, shrink: bool) -> Result<Boot, String> {
        if self.accel.is_none() {
            let probe_log = self.ctx.run_dir.join(self.arch.name()).join("kvm-probe.log");
            let kvm = match std::env::var("KBOT_ACCEL").as_deref() {
                Ok("tcg") => false,
                Ok("kvm") => true,
                _ => {
                    let ok = qemu::kvm_works(&self.ctx.args.sandbox, self.arch, image, &self.initrd, &probe_log);
                    if self.arch.kvm_possible() {
                        self.say("boot", if ok { "KVM works: using it" } else { "KVM probe failed: using TCG" });
                    }
                    ok
                }
            };
            self.accel = Some(if kvm { Accel::Kvm } else { Accel::Tcg });
        }
        self.boots += 1;
        let commit = &self.ctx.commits[prefix];
        let log = self.ctx.run_dir.join(self.arch.name()).join(format!(
            "console-{prefix}-{}-{}.log",
            &commit[..12],
            self.boots
        ));
        let mut append = format!(
            "kbot.watchdog_ms={} kbot.seed={} kbot.random={}{}",
            self.ctx.args.watchdog_ms,
            self.ctx.args.seed,
            self.ctx.args.random,
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
            timeout: self.ctx.args.vm_timeout,
            accel: self.accel.unwrap_or(Accel::Tcg),
            mem_mb: 512,
            smp: 2,
        };
        self.say("boot", &format!("{} ({})", self.label(prefix), spec.accel.name()));
        let arch = self.arch.name();
        let progress = self.ctx.progress;
        let vm = qemu::run(&self.ctx.args.sandbox, &spec, &log, 16 << 20, |line| {
            if line.starts_with("not ok ") || line.starts_with("ok ") {
                progress.say(arch, "test", line);
            }
        })
        .map_err(|e| format!("cannot start {}: {e}", self.arch.qemu()))?;
        self.ctx.stage(format!("{}.boot.{}", self.arch, prefix), vm.seconds);
        let console = kbot_console::parse(&vm.console);
        if !console.started && !vm.qemu_stderr.trim().is_empty() {
            return Err(format!("{} failed: {}", self.arch.qemu(), vm.qemu_stderr.lines().next().unwrap_or("")));
        }
        let expected: Vec<String> = match &agent_only {
            Some(o) => o.clone(),
            None => console.tests.iter().map(|t| t.name.clone()).collect(),
        };
        let mut tests = kbot_compare::tests_of(&console, &expected, vm.timed_out);
        // The shadow rules count only for a kernel whose hooks all applied and whose component ran.
        if self.shadow && self.rejects.get(&prefix).is_none_or(|r| r.is_empty()) && console.shadow {
            tests.extend(kbot_compare::shadow_tests(&console));
        }
        Ok(Boot { finished: console.done, timed_out: vm.timed_out, console, tests, log, seconds: vm.seconds })
    }
}

fn run_of(k: &Kernel, b: Option<&Boot>, commit: &str) -> Run {
    Run {
        build: if k.image.is_some() { "pass" } else { "fail" }.into(),
        tests: b.map(|b| b.tests.clone()).unwrap_or_default(),
        commit: commit.to_string(),
        boot: match b {
            None => "skip",
            Some(b) if b.finished => "pass",
            Some(b) if b.timed_out => "timeout",
            Some(_) => "fail",
        }
        .into(),
        splats: b
            .map(|b| {
                b.console
                    .splats
                    .iter()
                    .map(|s| SplatInfo { kind: s.kind.into(), title: s.title.clone(), excerpt: s.excerpt.clone() })
                    .collect()
            })
            .unwrap_or_default(),
        build_errors: k.errors.clone(),
        build_s: k.seconds,
        boot_s: b.map_or(0.0, |b| b.seconds),
        cached: k.cached,
        console_log: b.map(|b| b.log.display().to_string()).unwrap_or_default(),
        build_log: if k.cached { String::new() } else { k.log.display().to_string() },
    }
}

fn check_arch(ctx: &Ctx, arch: Arch, wt: &Worktree, agent: &Path) -> ArchResult {
    let mut r = ArchResult { arch: arch.name().into(), ..Default::default() };
    let dir = ctx.run_dir.join(arch.name());
    let initrd = dir.join("initramfs.cpio");
    let made = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::read(agent))
        .and_then(|a| std::fs::write(&initrd, cpio::initramfs(&a)));
    if let Err(e) = made {
        r.error = Some(format!("cannot write the initramfs: {e}"));
        return r;
    }
    let out = ctx.home.build_dir(&ctx.tree.path, arch);
    // The worktree still holds whatever the previous job tested (maybe a hostile Makefile):
    // the toolchain probe below must see the base.
    if let Err(e) = wt.checkout(&ctx.commits[0]) {
        r.error = Some(format!("checkout of the base: {e}"));
        return r;
    }
    let shadow_on = match ctx.args.shadow {
        ShadowMode::Off => {
            r.shadow = "off (--shadow off)".into();
            false
        }
        mode => match shadow::available(&ctx.args.sandbox, &wt.path, &out, arch, &dir.join("rustavailable.log")) {
            Ok(()) => {
                r.shadow = "on".into();
                true
            }
            Err(e) if mode == ShadowMode::Auto => {
                ctx.progress.say(arch.name(), "shadow", &format!("off: {e}"));
                r.shadow = format!("off: {e}");
                false
            }
            Err(e) => {
                r.error = Some(e.to_string());
                return r;
            }
        },
    };
    let mut ar =
        ArchRunner { ctx, arch, wt, out, initrd, accel: None, boots: 0, shadow: shadow_on, rejects: BTreeMap::new() };
    if let Err(e) = check_arch_inner(&mut ar, &mut r) {
        ar.say("error", &e);
        r.error = Some(e);
    }
    let partial: Vec<String> = ar
        .rejects
        .iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(p, f)| format!("{} ({})", ar.label(*p), f.join(", ")))
        .collect();
    if !partial.is_empty() {
        r.shadow = format!("on, but hooks did not apply (results unused) at: {}", partial.join("; "));
    }
    r.accel = ar.accel.map(|a| a.name().to_string()).unwrap_or_default();
    r
}

fn check_arch_inner(ar: &mut ArchRunner, r: &mut ArchResult) -> Result<(), String> {
    let ctx = ar.ctx;
    let n = ctx.commits.len() - 1;
    // Base.
    let kb = ar.kernel(0)?;
    let Some(base_img) = kb.image.clone() else {
        r.base = run_of(&kb, None, &ctx.commits[0]);
        return Err(format!(
            "the base {} does not build{}; see {}",
            &ctx.commits[0][..12],
            if kb.timed_out { " (timed out)" } else { "" },
            kb.log.display()
        ));
    };
    let bb = ar.boot(0, &base_img, None, false)?;
    r.base = run_of(&kb, Some(&bb), &ctx.commits[0]);
    if !bb.finished {
        return Err(format!(
            "the base kernel did not run the tests to the end ({}); see {}",
            if bb.timed_out { "VM timed out" } else { "VM stopped early" },
            bb.log.display()
        ));
    }
    // Tip.
    let kt = ar.kernel(n)?;
    let Some(tip_img) = kt.image.clone() else {
        r.tip = run_of(&kt, None, &ctx.commits[n]);
        let checks = vec!["build".to_string()];
        bisect_and_report(ar, r, &checks, &bb, None);
        return Ok(());
    };
    let tb = ar.boot(n, &tip_img, None, true)?;
    r.tip = run_of(&kt, Some(&tb), &ctx.commits[n]);
    let mut regressed = kbot_compare::regressions(&bb.tests, &tb.tests);
    if !tb.console.started {
        // The tip did not even reach the agent: that is a regression of its own.
        regressed.push(("boot".into(), "fail".into()));
    }
    if regressed.is_empty() {
        ar.say("result", "no regression against the base");
        return Ok(());
    }
    // A result counts only when it reproduces: rerun the tip for the regressed tests.
    let names: Vec<String> = regressed.iter().map(|(n, _)| n.clone()).filter(|n| n != "boot").collect();
    if !names.is_empty() {
        ar.say("confirm", &format!("rerunning the tip for {}", names.join(", ")));
        let again = ar.boot(n, &tip_img, Some(&names), false)?;
        for name in &names {
            if kbot_compare::verdict(&again.tests, name) == Verdict::Good {
                r.flaky.push(name.clone());
            }
        }
        regressed.retain(|(name, _)| !r.flaky.contains(name));
    }
    let checks: Vec<String> = regressed.iter().map(|(n, _)| n.clone()).collect();
    if !checks.is_empty() {
        bisect_and_report(ar, r, &checks, &bb, Some(&tb));
    }
    Ok(())
}

/// Bisects the regressed checks over the series' prefixes and writes the regressions.
fn bisect_and_report(ar: &mut ArchRunner, r: &mut ArchResult, checks: &[String], base: &Boot, tip: Option<&Boot>) {
    let n = ar.ctx.commits.len() - 1;
    let mut last_boot: BTreeMap<usize, Boot> = BTreeMap::new();
    let mut last_build: BTreeMap<usize, Kernel> = BTreeMap::new();
    let mut times: Vec<f64> = Vec::new();
    let found = if n == 1 {
        checks.iter().map(|c| (c.clone(), Found::FirstBad { first_bad: 1 })).collect()
    } else {
        ar.say(
            "bisect",
            &format!("{} over {n} patches: {}", if n > 2 { "binary search" } else { "one step" }, checks.join(", ")),
        );
        let mut tester = |prefix: usize, cs: &[String]| -> BTreeMap<String, Verdict> {
            let t = Instant::now();
            let mut v = BTreeMap::new();
            match ar.kernel(prefix) {
                Err(e) => {
                    ar.say("bisect", &format!("{}: {e}", ar.label(prefix)));
                }
                Ok(k) => {
                    let built = k.image.clone();
                    last_build.insert(prefix, k);
                    match built {
                        None => {
                            for c in cs {
                                // A prefix that does not build says nothing about the tests.
                                v.insert(c.clone(), if c == "build" { Verdict::Bad } else { Verdict::Unknown });
                            }
                        }
                        Some(_) if cs.iter().all(|c| c == "build") => {
                            // Only the build is in question: no need to boot.
                            v.insert("build".to_string(), Verdict::Good);
                        }
                        Some(img) => {
                            let tests: Vec<String> =
                                cs.iter().filter(|c| *c != "build" && *c != "boot").cloned().collect();
                            match ar.boot(prefix, &img, Some(&tests), false) {
                                Ok(b) => {
                                    for c in cs {
                                        let verdict = match c.as_str() {
                                            "build" => Verdict::Good,
                                            "boot" => {
                                                if b.console.started {
                                                    Verdict::Good
                                                } else {
                                                    Verdict::Bad
                                                }
                                            }
                                            _ => kbot_compare::verdict(&b.tests, c),
                                        };
                                        v.insert(c.clone(), verdict);
                                    }
                                    last_boot.insert(prefix, b);
                                }
                                Err(e) => ar.say("bisect", &format!("{}: {e}", ar.label(prefix))),
                            }
                        }
                    }
                }
            }
            let summary: Vec<String> =
                v.iter().map(|(k, x)| format!("{k}={}", format!("{x:?}").to_lowercase())).collect();
            ar.say("bisect", &format!("{}: {}", ar.label(prefix), summary.join(" ")));
            times.push(t.elapsed().as_secs_f64());
            v
        };
        let b = kbot_bisect::bisect(n, checks, &mut tester, &kbot_bisect::Options::default());
        r.bisect_steps = b
            .steps
            .iter()
            .zip(times.iter())
            .map(|(s, secs)| BisectStep {
                prefix: s.prefix as u32,
                reason: s.reason.into(),
                verdicts: s.verdicts.iter().map(|(k, v)| (k.clone(), format!("{v:?}").to_lowercase())).collect(),
                seconds: *secs,
            })
            .collect();
        b.found
    };
    for check in checks {
        let (first_bad, how) = match found.get(check) {
            Some(Found::FirstBad { first_bad }) => (
                Some(*first_bad),
                if n == 1 {
                    "the only patch".to_string()
                } else {
                    format!(
                        "bisected in {} step{}",
                        r.bisect_steps.len(),
                        if r.bisect_steps.len() == 1 { "" } else { "s" }
                    )
                },
            ),
            Some(Found::Inconclusive { good, bad, why }) => {
                (None, format!("inconclusive: between patch {} and {bad}: {why}", good + 1))
            }
            None => (None, "not bisected".into()),
        };
        let kind = match check.as_str() {
            "build" => "build".to_string(),
            "boot" => "fail".to_string(),
            name => tip
                .and_then(|t| t.tests.iter().find(|x| x.name == name))
                .map_or("fail".into(), |t| kbot_compare::kind_of(name, &t.result)),
        };
        let evidence = match check.as_str() {
            "build" => {
                let errs = first_bad
                    .and_then(|f| last_build.get(&f))
                    .map(|k| k.errors.clone())
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| r.tip.build_errors.clone());
                format!(
                    "build of {} failed:\n{}",
                    ar.arch,
                    errs.iter().map(|e| format!(">> {e}")).collect::<Vec<_>>().join("\n")
                )
            }
            name => {
                // A scenario's minimal form was shrunk on the tip's first boot only.
                let boot = first_bad
                    .and_then(|f| last_boot.get(&f))
                    .filter(|b| b.tests.iter().any(|t| t.name == name && t.result != "pass"))
                    .filter(|_| !name.starts_with("scenario/"))
                    .or(tip);
                match boot {
                    Some(b) => {
                        let t = b.tests.iter().find(|t| t.name == name).cloned().unwrap_or(TestResult {
                            name: name.into(),
                            result: kind.clone(),
                            detail: "the kernel did not reach the agent".into(),
                        });
                        let mut e = kbot_compare::evidence(&t, &b.console, &base.console);
                        if name == "boot" {
                            let tail: Vec<&str> = b
                                .console
                                .splats
                                .iter()
                                .flat_map(|s| s.excerpt.iter().map(String::as_str))
                                .take(20)
                                .collect();
                            e += &format!("\n{}", tail.join("\n"));
                        }
                        e
                    }
                    None => String::new(),
                }
            }
        };
        let fb = first_bad.map(|i| {
            let p = &ar.ctx.patches[i - 1];
            FirstBad {
                index: p.index,
                subject: p.subject.clone(),
                message_id: p.message_id.clone(),
                commit: ar.ctx.commits[i].clone(),
            }
        });
        ar.say(
            "result",
            &format!(
                "{check}: {kind}; first bad patch {}",
                fb.as_ref().map_or("unknown".into(), |f| format!("{}/{n} {:?}", f.index, f.subject))
            ),
        );
        r.regressions.push(Regression { test: check.clone(), kind, first_bad: fb, evidence, bisect: how });
    }
}
