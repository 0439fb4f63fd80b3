//! `kbot check` as stages: input → series → base → apply (or the range's own commits) →
//! per-arch lab ([`pipeline::test_arch`] on a [`QemuLab`], arches side by side) → status.
//! Each stage takes plain data and returns plain data; the result is a `kbot.result/v1`.

use crate::home::{Home, Lock};
use crate::lab::{BootParams, QemuLab};
use crate::pipeline::{self, Prefixes};
use crate::progress::Progress;
use crate::{agent, Fail};
use kbot_kernel::git::{Tree, Worktree};
use kbot_kernel::{build, cpio, kconfig, shadow, Arch};
use kbot_mbox::Mail;
use kbot_report::*;
use kbot_series::Series;
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
    /// `BASE..TIP` in the tree: its first-parent commits are the series, tested as they are.
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
    /// LTP's inotify/fanotify tests in every boot (None: kbot's own tests only).
    pub ltp: Option<LtpArgs>,
    /// Refs to try as the base when the series names no usable one (None: HEAD, every
    /// branch and the newest tags).
    pub base_candidates: Option<Vec<String>>,
}

/// Where LTP comes from and how the agent runs it.
pub struct LtpArgs {
    /// An LTP checkout or source tarball.
    pub source: PathBuf,
    /// Which of LTP's tests run, on every arch or per arch.
    pub tests: LtpTests,
    pub boot: crate::lab::LtpBoot,
}

/// Which LTP tests run: `None` is all of them, else these names (LTP's, e.g. `fanotify07`);
/// an arch may have a list of its own (a slow arch a subset, say).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LtpTests {
    pub default: Option<Vec<String>>,
    pub per_arch: BTreeMap<Arch, Option<Vec<String>>>,
}

impl LtpTests {
    pub fn for_arch(&self, a: Arch) -> Option<&Vec<String>> {
        self.per_arch.get(&a).unwrap_or(&self.default).as_ref()
    }

    /// `--ltp-tests`: `all`, a list (`fanotify07,inotify01`; an `ltp/` prefix is dropped), or
    /// lists per arch separated by `;` (`x86_64=fanotify07,inotify01;arm64=all`), arches not
    /// named running all.
    pub fn parse(s: &str) -> Result<LtpTests, String> {
        let list = |l: &str| -> Option<Vec<String>> {
            let v: Vec<String> = l
                .split(',')
                .map(|t| t.trim().trim_start_matches(TestFamily::Ltp.prefix()).to_string())
                .filter(|t| !t.is_empty())
                .collect();
            (!v.is_empty() && v.iter().all(|t| t != "all")).then_some(v)
        };
        if !s.contains('=') {
            return Ok(LtpTests { default: list(s), per_arch: BTreeMap::new() });
        }
        let mut per_arch = BTreeMap::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, l) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected ARCH=TESTS"))?;
            let arch = Arch::parse(a.trim()).ok_or_else(|| format!("unknown architecture {:?}", a.trim()))?;
            per_arch.insert(arch, list(l));
        }
        Ok(LtpTests { default: None, per_arch })
    }
}

/// Checks `--ltp` before any work: an LTP checkout or source tarball.
pub fn check_ltp_source(path: &Path) -> Result<(), Fail> {
    kbot_ltp_build::locate(path).map(|_| ()).map_err(|e| Fail::usage(format!("--ltp: {e}")))
}

/// One arch's guest extras when LTP runs: what goes into the initramfs, and the test names.
struct LtpGuest {
    files: Vec<kbot_ltp_build::GuestFile>,
    tests: Vec<String>,
}

/// The series as read: its mails (for trailers from replies), the assembled series, and for
/// a range the tree's commits of its patches.
struct Parsed {
    mails: Vec<Mail>,
    series: Series,
    own_commits: Option<Vec<String>>,
}

fn git_usage(r: &str, e: impl std::fmt::Display) -> Fail {
    let msg = e.to_string();
    let fatal = msg.lines().find(|l| l.contains("fatal:")).unwrap_or(msg.lines().next().unwrap_or(""));
    Fail::usage(format!("--range {r}: {}; give BASE..TIP of commits in the tree", fatal.trim()))
}

/// A range's first-parent commits, each with its mail as `git format-patch` writes it (a
/// merge's has only the message): the series is read from the commits, never re-applied.
fn read_range(tree: &Tree, r: &str) -> Result<Parsed, Fail> {
    // Two dots: `A...B` (symmetric difference) is not a series.
    let Some((base, tip)) = r.split_once("..").filter(|(_, t)| !t.starts_with('.')) else {
        return Err(Fail::usage(format!("--range {r}: expected BASE..TIP")));
    };
    // Each side must name a commit (git's empty side is HEAD). Checked as a revision, never as
    // an option, before the range reaches rev-list.
    for side in [base, tip] {
        let side = if side.is_empty() { "HEAD" } else { side };
        let rev = format!("{side}^{{commit}}");
        if kbot_kernel::git::git(&tree.path, &["rev-parse", "--verify", "--quiet", "--end-of-options", &rev]).is_err() {
            return Err(Fail::usage(format!(
                "--range {r}: {side} is not a commit of {}; give BASE..TIP of commits in the tree",
                tree.path.display()
            )));
        }
    }
    let list = kbot_kernel::git::git(&tree.path, &["rev-list", "--reverse", "--first-parent", r])
        .map_err(|e| git_usage(r, e))?;
    let commits: Vec<String> = list.lines().map(str::to_string).collect();
    if commits.is_empty() {
        return Err(Fail::usage(format!(
            "--range {r} has no commits: {tip} is {base} or an ancestor of it; give BASE..TIP with TIP ahead of BASE",
            tip = if tip.is_empty() { "HEAD" } else { tip },
            base = if base.is_empty() { "HEAD" } else { base },
        )));
    }
    let mut mails = Vec::new();
    for c in &commits {
        let merge = kbot_kernel::git::git(&tree.path, &["rev-parse", "--verify", "--quiet", &format!("{c}^2")]).is_ok();
        let args: &[&str] = if merge {
            &["show", "-s", "--format=email", c]
        } else {
            &["format-patch", "-1", "--stdout", "--no-signature", c]
        };
        let text = kbot_kernel::git::git(&tree.path, args).map_err(|e| git_usage(r, e))?;
        let mail = kbot_mbox::parse_mbox(text.as_bytes())
            .ok()
            .and_then(|m| m.into_iter().next())
            .ok_or_else(|| Fail::env(format!("--range {r}: git gave no mail for commit {}", short_commit(c))))?;
        mails.push(mail);
    }
    let series = kbot_series::from_commits(&mails).map_err(|e| Fail::usage(format!("--range {r}: {e}")))?;
    Ok(Parsed { mails, series, own_commits: Some(commits) })
}

fn read_mbox(data: &[u8], source: &str, version: Option<u32>) -> Result<Parsed, Fail> {
    let mails = kbot_mbox::parse_mbox(data).map_err(|e| {
        Fail::usage(format!("{source}: {e}; give an mbox of patch mails (git format-patch, b4 am, a lore t.mbox)"))
    })?;
    let series = kbot_series::assemble(&mails, version).map_err(|e| Fail::usage(format!("{source}: {e}")))?;
    Ok(Parsed { mails, series, own_commits: None })
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

/// Notes on how the series was read: duplicates, mails without a diff, other versions,
/// a partial reroll.
fn series_notes(series: &Series) -> Vec<String> {
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
    if !series.from_older.is_empty() {
        let from: Vec<String> = series.from_older.iter().map(|(i, v)| format!("{i} (v{v})")).collect();
        notes.push(format!(
            "partial reroll: v{} resends only some patches; the others come from older versions: {}",
            series.version,
            from.join(", ")
        ));
    }
    notes
}

/// Where the series goes: `--base`, the range's start, the series' `base-commit:`, else the
/// tree's HEAD (with a note saying so). Returns the commit and where it came from.
/// How many of the newest tags are tried as bases (besides HEAD and the branches).
const BASE_TAGS: usize = 20;

/// The commit to apply to and where it came from; for a series without a usable
/// `base-commit:`, also the candidates tried.
fn pick_base(
    args: &CheckArgs,
    tree: &Tree,
    series: &Series,
    notes: &mut Vec<String>,
) -> Result<(String, String, Vec<BaseCandidate>), Fail> {
    if let Some((c, from)) = pick_named_base(args, tree, series)? {
        return Ok((c, from, Vec::new()));
    }
    // A ref the user names that the tree does not have is a typo, not a candidate.
    if let Some(r) = args.base_candidates.iter().flatten().find(|r| tree.resolve(r).is_none()) {
        return Err(Fail::usage(format!(
            "--base-from {r}: the tree {} has no such branch, tag or commit",
            tree.path.display()
        )));
    }
    let why = match &series.base_commit {
        Some(b) => format!("base-commit {b} is not in the tree"),
        None => "the series names no base-commit".into(),
    };
    let head =
        tree.resolve("HEAD").ok_or_else(|| Fail::usage(format!("the tree {} has no commits", tree.path.display())))?;
    match try_bases(tree, series, args.base_candidates.as_deref()) {
        Ok(tried) => {
            if let Some(ok) = tried.iter().find(|c| c.applies) {
                let n = tried.len();
                notes.push(format!(
                    "{why}; applied to {} ({}), the newest of {n} candidate base{} it applies to",
                    ok.name,
                    short_commit(&ok.commit),
                    if n == 1 { "" } else { "s" }
                ));
                let from = format!("newest candidate it applies to: {}", ok.name);
                return Ok((ok.commit.clone(), from, tried));
            }
            notes.push(format!(
                "{why}, and it applies to none of the {} candidate bases tried (see the list); applied to the tree's HEAD",
                tried.len()
            ));
            Ok((head, "tree HEAD".into(), tried))
        }
        Err(e) => {
            notes.push(format!("{why}; candidate bases could not be checked ({e}); applied to the tree's HEAD"));
            Ok((head, "tree HEAD".into(), Vec::new()))
        }
    }
}

/// Checks the series on each candidate base in memory (newest first), stopping at the first
/// that takes it whole; the rest are listed as not tried.
fn try_bases(tree: &Tree, series: &Series, only: Option<&[String]>) -> Result<Vec<BaseCandidate>, String> {
    let checker = kbot_kernel::apply_check::ApplyChecker::open(&tree.path).map_err(|e| e.to_string())?;
    let diffs: Vec<&str> =
        series.patches.iter().filter_map(|p| kbot_kernel::apply_check::diff_of(&p.mail.body)).collect();
    let mut out = Vec::new();
    let mut found = false;
    for c in checker.candidates(only, BASE_TAGS).map_err(|e| e.to_string())? {
        let mut b = BaseCandidate { name: c.name, commit: c.commit, ..Default::default() };
        if found {
            b.detail = "not tried: a newer base takes the series".into();
        } else {
            match checker.check(&b.commit, &diffs).map_err(|e| e.to_string())? {
                Ok(()) => {
                    b.applies = true;
                    found = true;
                }
                Err(f) => {
                    b.failed_patch = series.patches.get(f.patch).map(|p| p.index);
                    b.detail = f.detail;
                }
            }
        }
        out.push(b);
    }
    Ok(out)
}

/// A base the user or the series names (`--base`, a range's start, or a `base-commit:` that
/// the tree has) and where it came from. None when there is none to use.
fn pick_named_base(args: &CheckArgs, tree: &Tree, series: &Series) -> Result<Option<(String, String)>, Fail> {
    if let Some(b) = &args.base {
        let c = tree
            .resolve(b)
            .ok_or_else(|| Fail::usage(format!("--base {b}: the tree {} has no such commit", tree.path.display())))?;
        return Ok(Some((c, "--base".into())));
    }
    if let Input::Range(r) = &args.input {
        let b = r.split("..").next().unwrap_or_default();
        let c = tree.resolve(b).ok_or_else(|| Fail::usage(format!("--range: the tree has no commit {b}")))?;
        return Ok(Some((c, "--range".into())));
    }
    Ok(series.base_commit.as_deref().and_then(|b| tree.resolve(b)).map(|c| (c, "base-commit".into())))
}

/// The series part of the result: patches with their trailers and checks, notes, base.
fn series_info(
    p: &Parsed,
    tree: &Tree,
    base: (String, String, Vec<BaseCandidate>),
    mut notes: Vec<String>,
) -> SeriesInfo {
    let series = &p.series;
    if !series.prerequisites.is_empty() {
        let known = tree.patch_ids(&base.0, 200);
        for id in &series.prerequisites {
            match known.iter().find(|(k, _)| k.starts_with(id.as_str()) || id.starts_with(k.as_str())) {
                Some((_, c)) => notes.push(format!("prerequisite-patch-id {id} is in the base (commit {})", short_commit(c))),
                None => notes.push(format!("prerequisite-patch-id {id} is not among the last 200 commits of the base: the series may need it first")),
            }
        }
    }
    let mut trailers = kbot_series::trailers::collect(&p.mails, series);
    let exists = |sha: &str| !sha.is_empty() && tree.resolve(sha).is_some();
    let patches = series
        .patches
        .iter()
        .map(|patch| PatchInfo {
            trailers: trailers.remove(&patch.index).unwrap_or_default(),
            checks: kbot_series::checks::patch_checks(patch, &exists),
            ..PatchInfo::from(patch)
        })
        .collect();
    SeriesInfo {
        subject: series.subject.clone(),
        version: series.version,
        total: series.total,
        message_id: series.message_id.clone(),
        base: base.0,
        base_source: base.1,
        missing: series.missing.clone(),
        duplicates: series.duplicates.clone(),
        patches,
        notes,
        checks: kbot_series::checks::series_checks(series),
        base_candidates: base.2,
    }
}

/// The result before anything is built: series, environment, how to reproduce.
fn skeleton(args: &CheckArgs, tree: &Tree, info: SeriesInfo) -> CheckResult {
    let base = info.base.clone();
    let mut result = CheckResult::new(info);
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
        format!("{} --base {} --seed {} --scenarios {}", args.command, short_commit(&base), args.seed, args.random),
    ];
    result
}

/// Stage timings of a check.
struct Clock {
    t0: Instant,
    stages: Vec<(String, f64)>,
}

impl Clock {
    fn lap(&mut self, name: &str, since: Instant) {
        self.stages.push((name.into(), since.elapsed().as_secs_f64()));
    }

    fn finish(self, mut r: CheckResult) -> CheckResult {
        r.timings = Timings { total_s: self.t0.elapsed().as_secs_f64(), stages: self.stages };
        r
    }
}

pub fn run(home: &Home, args: &CheckArgs, progress: &Progress) -> Result<CheckResult, Fail> {
    let mut clock = Clock { t0: Instant::now(), stages: Vec::new() };
    // Bad input is reported before anything slow happens.
    let (parsed, tree) = match &args.input {
        Input::Range(r) => {
            let tree = open_tree(home, args)?;
            (read_range(&tree, r)?, tree)
        }
        Input::Mbox { data, source } => (read_mbox(data, source, args.version)?, open_tree(home, args)?),
    };
    clock.lap("parse", clock.t0);
    let series = &parsed.series;
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
    let mut notes = series_notes(series);
    let base = pick_base(args, &tree, series, &mut notes)?;
    let mut result = skeleton(args, &tree, series_info(&parsed, &tree, base, notes));
    if !series.is_complete() {
        result.status = Status::Incomplete;
        progress.say(
            "series",
            "missing",
            &format!("patches {:?} of {} are missing: nothing built", series.missing, series.total),
        );
        return Ok(clock.finish(result));
    }
    for gone in home.prune_stale_work() {
        progress.say("home", "prune", &format!("removed {} (its tree is gone)", gone.display()));
    }
    let lock_file = home.lock_file(&tree.path);
    let _lock = Lock::take(&lock_file, || progress.say("tree", "lock", "another kbot is using this tree; waiting"))
        .map_err(|e| Fail::env(format!("cannot lock {}: {e}", lock_file.display())))?;
    let run_dir = home
        .new_run_dir()
        .map_err(|e| Fail::env(format!("cannot create a run directory under {}: {e}", home.root.display())))?;
    let t = Instant::now();
    let worktrees = worktrees(home, &tree, &args.arches, &result.series.base, progress)?;
    clock.lap("worktrees", t);
    let wt0 = &worktrees[&args.arches[0]];
    let t = Instant::now();
    let files = write_patches(&run_dir, series)?;
    checkpatch(args, wt0, &result.series.base, &files, series, &mut result.series.patches)?;
    clock.lap("checkpatch", t);
    let t = Instant::now();
    let commits = match apply(wt0, &parsed, &files, &mut result, progress)? {
        Some(c) => c,
        None => {
            clock.lap("apply", t);
            return Ok(clock.finish(result));
        }
    };
    clock.lap("apply", t);
    // Only now the build and boot tools matter: apply failures need none of them.
    check_environment(&args.arches)?;
    let lab = Labs { home, tree: &tree, args, progress, run_dir, commits, stages: Mutex::new(Vec::new()) };
    result.arches = lab.test_arches(&worktrees, &result.series.patches)?;
    clock.stages.extend(lab.stages.into_inner().unwrap_or_else(|e| e.into_inner()));
    let (status, error) = status_of(&result.arches);
    result.status = status;
    result.error = error;
    Ok(clock.finish(result))
}

/// The check's status from the arches: any regression wins; else an arch's error; else clean.
pub fn status_of(arches: &[ArchResult]) -> (Status, Option<String>) {
    if arches.iter().any(|a| !a.regressions.is_empty()) {
        (Status::Regression, None)
    } else if let Some(a) = arches.iter().find(|a| a.error.is_some()) {
        (Status::Error, Some(format!("{}: {}", a.arch, a.error.clone().unwrap_or_default())))
    } else {
        (Status::Clean, None)
    }
}

/// One stable worktree per tree and arch, at the base. Created one after the other: git
/// locks its worktree list.
fn worktrees(
    home: &Home,
    tree: &Tree,
    arches: &[Arch],
    base: &str,
    progress: &Progress,
) -> Result<BTreeMap<Arch, Worktree>, Fail> {
    let mut out = BTreeMap::new();
    for a in arches {
        let p = home.worktree(&tree.path, *a);
        if !p.join(".git").exists() {
            progress.say(a.name(), "worktree", &format!("creating {} (first run on this tree only)", p.display()));
        }
        let wt = tree
            .worktree(&p, base)
            .map_err(|e| Fail::env(format!("cannot create the worktree {}: {e}", p.display())))?;
        out.insert(*a, wt);
    }
    Ok(out)
}

/// Each patch as a mail file of its own, for checkpatch and `git am`.
fn write_patches(run_dir: &Path, series: &Series) -> Result<Vec<PathBuf>, Fail> {
    let dir = run_dir.join("patches");
    std::fs::create_dir_all(&dir).map_err(|e| Fail::env(format!("{}: {e}", dir.display())))?;
    series
        .patches
        .iter()
        .map(|p| {
            let f = dir.join(format!("{:04}.mbox", p.index));
            std::fs::write(&f, p.mail.to_mbox()).map_err(|e| Fail::env(format!("{}: {e}", f.display())))?;
            Ok(f)
        })
        .collect()
}

/// checkpatch.pl of the base tree, before anything is applied: a series cannot change the
/// checker it is judged by. Long series only get their first 50 patches checked; a merge
/// (no diff) is not checked.
fn checkpatch(
    args: &CheckArgs,
    wt0: &Worktree,
    base: &str,
    files: &[PathBuf],
    series: &Series,
    patches: &mut [PatchInfo],
) -> Result<(), Fail> {
    wt0.checkout(base).map_err(|e| Fail::env(format!("cannot check out the base: {e}")))?;
    for ((f, info), p) in files.iter().zip(patches.iter_mut()).zip(&series.patches).take(50) {
        if !kbot_series::has_diff(&p.mail.body) {
            continue;
        }
        let log = f.with_extension("checkpatch");
        let Some(c) = kbot_kernel::checkpatch::run(&args.sandbox, &wt0.path, f, &log) else {
            // No verdict is not a pass: the check is reported as an error, with the reason.
            let has_script = wt0.path.join("scripts/checkpatch.pl").is_file();
            let text = std::fs::read(&log).ok().map(|b| String::from_utf8_lossy(&b).into_owned());
            let detail = checkpatch_failure(has_script, text.as_deref(), &log);
            info.checks.push(CheckInfo { name: "checkpatch".into(), state: CheckState::Error, detail });
            continue;
        };
        let state = if c.errors > 0 {
            CheckState::Fail
        } else if c.warnings > 0 {
            CheckState::Warning
        } else {
            CheckState::Success
        };
        let mut detail = format!("{} errors, {} warnings", c.errors, c.warnings);
        if !c.lines.is_empty() {
            detail += &format!(": {}", c.lines.join("; "));
        }
        info.checks.push(CheckInfo { name: "checkpatch".into(), state, detail });
    }
    Ok(())
}

/// Why checkpatch gave no verdict, from what it left: no script in the base tree, no log (the
/// sandbox could not be set up), the time limit's note, an empty log (perl did not start), or
/// the last line it printed (a Perl error, output without checkpatch's `total:` line).
fn checkpatch_failure(has_script: bool, log_text: Option<&str>, log: &Path) -> String {
    if !has_script {
        return "not run: the base tree has no scripts/checkpatch.pl".into();
    }
    let Some(text) = log_text else {
        return "not run: checkpatch.pl could not be set up in the sandbox".into();
    };
    let last = text.lines().map(str::trim).rfind(|l| !l.is_empty());
    let why = match last {
        Some(l) if l.starts_with("[kbot: killed after") => {
            format!("was stopped by its time limit ({})", l.trim_start_matches('[').trim_end_matches(']'))
        }
        None => "gave no output (perl could not be started)".to_string(),
        Some(l) => {
            let l: String = l.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
            format!("gave no verdict: {l}")
        }
    };
    format!("checkpatch.pl {why}; see {}", log.display())
}

/// The commits to test: `commits[0]` the base, `commits[i]` the series up to patch `i`. A
/// range brings its own; a series is applied with `git am` in the first arch's worktree (the
/// commits are shared by all worktrees). None: a patch does not apply (the result says which).
fn apply(
    wt0: &Worktree,
    p: &Parsed,
    files: &[PathBuf],
    result: &mut CheckResult,
    progress: &Progress,
) -> Result<Option<Vec<String>>, Fail> {
    let base = result.series.base.clone();
    let mut commits = vec![base.clone()];
    if let Some(own) = &p.own_commits {
        commits.extend(own.iter().cloned());
        result.apply = Apply { ok: true, failed_patch: None, detail: format!("{} commits of the tree", own.len()) };
    } else {
        for (patch, f) in p.series.patches.iter().zip(files) {
            progress.say("series", "apply", &format!("[{}/{}] {}", patch.index, p.series.total, patch.subject));
            match wt0.am(f).map_err(|e| Fail::env(format!("git am: {e}")))? {
                Ok(c) => commits.push(c),
                Err(fail) => {
                    result.status = Status::ApplyFailed;
                    result.apply = Apply { ok: false, failed_patch: Some(patch.index), detail: fail.detail };
                    let msg = format!("patch {} does not apply to {}", patch.index, short_commit(&base));
                    progress.say("series", "apply", &msg);
                    return Ok(None);
                }
            }
        }
        let detail = format!("{} patches applied with git am -3", p.series.patches.len());
        result.apply = Apply { ok: true, failed_patch: None, detail };
    }
    for (info, c) in result.series.patches.iter_mut().zip(&commits[1..]) {
        info.commit = Some(c.clone());
    }
    Ok(Some(commits))
}

/// What every arch's lab shares.
struct Labs<'a> {
    home: &'a Home,
    tree: &'a Tree,
    args: &'a CheckArgs,
    progress: &'a Progress,
    run_dir: PathBuf,
    commits: Vec<String>,
    stages: Mutex<Vec<(String, f64)>>,
}

impl Labs<'_> {
    /// The arches side by side, each on all cores.
    fn test_arches(
        &self,
        worktrees: &BTreeMap<Arch, Worktree>,
        patches: &[PatchInfo],
    ) -> Result<Vec<ArchResult>, Fail> {
        let agents: Vec<(Arch, PathBuf)> = self
            .args
            .arches
            .iter()
            .map(|a| {
                self.progress.say(a.name(), "agent", "building the guest agent");
                agent::build(*a).map(|p| (*a, p))
            })
            .collect::<Result<_, _>>()?;
        let ltp = self.ltp_guests()?;
        let params = BootParams {
            watchdog_ms: self.args.watchdog_ms,
            seed: self.args.seed,
            random: self.args.random,
            vm_timeout: self.args.vm_timeout,
            jobs: self.args.jobs,
            build_timeout: self.args.build_timeout,
            ltp: self.args.ltp.as_ref().map(|l| l.boot.clone()),
        };
        Ok(std::thread::scope(|s| {
            let handles: Vec<_> = agents
                .iter()
                .map(|(a, agent)| {
                    let (wt, params, ltp) = (&worktrees[a], &params, ltp.get(a));
                    s.spawn(move || self.test_arch(*a, wt, agent, params, patches, ltp))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("arch thread panicked")).collect()
        }))
    }

    /// Prepares one arch's lab (initramfs, the base checked out, the shadow checks decided)
    /// and runs the pipeline on it.
    fn test_arch(
        &self,
        arch: Arch,
        wt: &Worktree,
        agent: &Path,
        params: &BootParams,
        patches: &[PatchInfo],
        ltp: Option<&LtpGuest>,
    ) -> ArchResult {
        let dir = self.run_dir.join(arch.name());
        let initrd = dir.join("initramfs.cpio");
        let fail = |e: String| ArchResult { arch: arch.name().into(), error: Some(e), ..Default::default() };
        let made = std::fs::create_dir_all(&dir).and_then(|_| std::fs::read(agent)).and_then(|a| {
            let cpio = match ltp {
                None => cpio::initramfs(&a),
                Some(l) => kbot_ltp_build::initramfs(&a, &[], &l.files).map_err(std::io::Error::other)?,
            };
            std::fs::write(&initrd, cpio)
        });
        if let Err(e) = made {
            return fail(format!("cannot write the initramfs: {e}"));
        }
        let out = self.home.build_dir(&self.tree.path, arch);
        // The worktree still holds whatever the previous job tested (maybe a hostile Makefile):
        // the toolchain probe below must see the base.
        if let Err(e) = wt.checkout(&self.commits[0]) {
            return fail(format!("checkout of the base: {e}"));
        }
        let (shadow_on, shadow_note) = match self.shadow(arch, wt, &out, &dir) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let mut lab = QemuLab {
            home: self.home,
            progress: self.progress,
            sandbox: &self.args.sandbox,
            params,
            arch,
            wt,
            commits: &self.commits,
            dir,
            out,
            initrd,
            accel: None,
            boots: 0,
            shadow: shadow_on,
            rejects: BTreeMap::new(),
            stages: &self.stages,
            ltp_tests: ltp.map(|l| l.tests.clone()).unwrap_or_default(),
            kconfig_in_initrd: false,
            ahead: None,
            built_ahead: None,
        };
        let mut r = pipeline::test_arch(&mut lab, &Prefixes { commits: &self.commits, patches });
        r.shadow = shadow_note;
        let n = self.commits.len() - 1;
        let partial: Vec<String> = lab
            .rejects
            .iter()
            .filter(|(_, f)| !f.is_empty())
            .map(|(p, f)| format!("{} ({})", crate::lab::label(*p, n), f.join(", ")))
            .collect();
        if !partial.is_empty() {
            r.shadow = format!("on, but hooks did not apply (results unused) at: {}", partial.join("; "));
        }
        r.accel = lab.accel.map(|a| a.name().to_string()).unwrap_or_default();
        r
    }

    /// LTP's static build and the tools it calls, per arch (built once per LTP commit).
    fn ltp_guests(&self) -> Result<BTreeMap<Arch, LtpGuest>, Fail> {
        let Some(l) = &self.args.ltp else {
            self.progress.say(
                "-",
                "ltp",
                "no LTP given (--ltp PATH, KBOT_LTP or ltp: in the config): kbot's own tests only",
            );
            return Ok(BTreeMap::new());
        };
        let src = kbot_ltp_build::locate(&l.source).map_err(|e| Fail::usage(format!("--ltp: {e}")))?;
        let mut out = BTreeMap::new();
        for &arch in &self.args.arches {
            let say = |m: &str| self.progress.say(arch.name(), "ltp", m);
            let b = kbot_ltp_build::build(&src, arch, &self.home.ltp_cache(), &say)
                .map_err(|e| Fail::env(format!("LTP for {arch}: {e}")))?;
            let mut files = kbot_ltp_build::guest_tools(arch, &self.home.guest_tools_cache(), &say)
                .map_err(|e| Fail::env(format!("guest tools for LTP on {arch}: {e}")))?;
            files.extend(kbot_ltp_build::ltp_files(&b));
            let only = l.tests.for_arch(arch);
            if let Some(only) = only {
                // The guest runs what its list names: a subset gets a list of its own.
                let entries = b.entries().map_err(|e| Fail::env(e.to_string()))?;
                let text: String = entries
                    .iter()
                    .filter(|e| only.contains(&e.name))
                    .map(|e| format!("{} {}\n", e.name, e.command))
                    .collect();
                let list = self.run_dir.join(format!("{arch}-ltp-tests.txt"));
                std::fs::write(&list, text).map_err(|e| Fail::env(format!("{}: {e}", list.display())))?;
                for f in files.iter_mut() {
                    if let kbot_ltp_build::GuestFile::File { path, src, .. } = f {
                        if path == "ltp/tests.txt" {
                            *src = list.clone();
                        }
                    }
                }
            }
            if let Some(unknown) = only.into_iter().flatten().find(|t| !b.tests.contains(t)) {
                return Err(Fail::usage(format!(
                    "--ltp-tests: {unknown} is not one of LTP's inotify/fanotify tests ({} ...)",
                    b.tests.iter().take(4).cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            let tests: Vec<String> = b
                .tests
                .iter()
                .filter(|t| only.is_none_or(|only| only.contains(t)))
                .map(|t| format!("ltp/{t}"))
                .collect();
            say(&format!("LTP {}: {} tests in every boot", kbot_ltp_build::dir_name(&b.id), tests.len()));
            out.insert(arch, LtpGuest { files, tests });
        }
        Ok(out)
    }

    /// Whether this arch's kernels get the shadow checks, and the note for the result.
    fn shadow(&self, arch: Arch, wt: &Worktree, out: &Path, dir: &Path) -> Result<(bool, String), String> {
        match self.args.shadow {
            ShadowMode::Off => Ok((false, "off (--shadow off)".into())),
            mode => match shadow::available(&self.args.sandbox, &wt.path, out, arch, &dir.join("rustavailable.log")) {
                Ok(()) => Ok((true, "on".into())),
                Err(e) if mode == ShadowMode::Auto => {
                    self.progress.say(arch.name(), "shadow", &format!("off: {e}"));
                    Ok((false, format!("off: {e}")))
                }
                Err(e) => Err(e.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod checkpatch_tests {
    use super::checkpatch_failure;
    use std::path::Path;

    #[test]
    fn a_checkpatch_without_verdict_says_why() {
        let log = Path::new("/run/patches/0001.checkpatch");
        assert_eq!(checkpatch_failure(false, None, log), "not run: the base tree has no scripts/checkpatch.pl");
        assert!(checkpatch_failure(true, None, log).contains("could not be set up"));
        assert_eq!(
            checkpatch_failure(true, Some(""), log),
            "checkpatch.pl gave no output (perl could not be started); see /run/patches/0001.checkpatch"
        );
        let e = checkpatch_failure(true, Some("p.mbox:3: WARNING: x\n\n[kbot: killed after 60 s]\n"), log);
        assert!(e.starts_with("checkpatch.pl was stopped by its time limit (kbot: killed after 60 s)"), "{e}");
        let e = checkpatch_failure(true, Some("Can't locate Foo.pm in @INC\x1b[31m\nBEGIN failed\n"), log);
        assert!(e.starts_with("checkpatch.pl gave no verdict: BEGIN failed; see "), "{e}");
    }
}

#[cfg(test)]
mod ltp_tests_tests {
    use super::*;

    #[test]
    fn ltp_test_lists_for_all_arches_or_each() {
        let p = |s: &str| LtpTests::parse(s).unwrap();
        assert_eq!(p("all"), LtpTests::default());
        let l = p("fanotify07, ltp/inotify01");
        assert_eq!(l.for_arch(Arch::Arm64).unwrap(), &["fanotify07", "inotify01"]);
        let l = p("x86_64=fanotify07,inotify01;arm64=all");
        assert_eq!(l.for_arch(Arch::X86_64).unwrap(), &["fanotify07", "inotify01"]);
        assert_eq!(l.for_arch(Arch::Arm64), None, "all");
        // An arch not named runs all of them.
        assert_eq!(p("x86_64=fanotify07").for_arch(Arch::Arm64), None);
        assert!(LtpTests::parse("mips=fanotify07").unwrap_err().contains("unknown architecture"));
        assert!(LtpTests::parse("x86_64=a;arm64").unwrap_err().contains("expected ARCH=TESTS"));
    }
}
