//! kbot: catches Linux kernel regressions in patch series before they are merged.

mod config;
mod input;

use clap::{Parser, Subcommand};
use kbot_kernel::Arch;
use kbot_runner::{agent, bench, check, cpus, new_seed, replay as scenario_cmd, sandbox_policy, set_ccache_dir, setup};
use kbot_runner::{write_atomic, Fail, Home, Progress};
use kbot_serve as serve;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "kbot",
    version,
    about = "Catches Linux kernel regressions in patch series: apply, build, boot in QEMU, fanotify hang tests, bisect, report"
)]
struct Cli {
    /// No progress lines on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what kbot needs (Debian packages as root, rustup targets, guest agents, the
    /// tools LTP calls in the guest) and import the default kernel tree. Idempotent. Prints the
    /// default tree's path last.
    Setup {
        /// Do not install Debian packages.
        #[arg(long)]
        no_packages: bool,
        /// Do not import the default tree.
        #[arg(long)]
        no_tree: bool,
        /// Also build LTP's fanotify and inotify tests statically for both arches from this
        /// LTP checkout or `git archive` tarball (cached by LTP commit; minutes the first time).
        #[arg(long, value_name = "PATH", env = "KBOT_LTP")]
        ltp: Option<PathBuf>,
    },
    /// Test one patch series: apply, build, boot, run the fanotify hang tests on base and tip,
    /// bisect regressions to the first bad patch. Exit 0 clean, 1 findings, 2 error.
    Check(Box<CheckCli>),
    /// Differential scenarios: show one with refcore's prediction, or replay it on a kernel.
    #[command(subcommand)]
    Scenario(ScenarioCmd),
    /// The mailing-list reply bot and CI service: polls the configured inboxes and branches,
    /// tests each new series / range once, mails one threaded report per regression.
    /// SIGTERM drains (running jobs finish). Exit 2 on a config or environment error.
    Serve {
        /// The config (see config/kbot.example.yaml).
        #[arg(long, value_name = "FILE", env = "KBOT_CONFIG")]
        config: PathBuf,
        /// Poll once, run everything pending, send the mail, exit (tests, cron).
        #[arg(long)]
        once: bool,
    },
    /// Serve only the dashboard of a service's state (`web.listen`, default 127.0.0.1:8080),
    /// without polling or running jobs.
    Web {
        #[arg(long, value_name = "FILE", env = "KBOT_CONFIG")]
        config: PathBuf,
    },
    /// Export the service's finished runs. `kbot export kcidb --config F [--job ID]` prints them
    /// as one KCIDB v5 document (also written as jobs/<id>/kcidb.json when each job finishes).
    Export {
        /// The format: kcidb.
        #[arg(value_parser = ["kcidb"])]
        format: String,
        #[arg(long, value_name = "FILE", env = "KBOT_CONFIG")]
        config: PathBuf,
        /// Only this run.
        #[arg(long, value_name = "ID")]
        job: Option<i64>,
    },
    /// The service's jobs (queued, running, done, with results) and its outbox.
    Status {
        #[arg(long, value_name = "FILE", env = "KBOT_CONFIG")]
        config: PathBuf,
    },
    /// Print the stage times of a cold and a warm check of a series (default: the shipped
    /// 4-patch series with a regression), for the README. Wipes kbot's kernel cache and the
    /// build directories of the tree first (not with --warm-only).
    Bench {
        /// The series (default: examples/bench-4-patches.mbox).
        #[arg(long, value_name = "FILE")]
        mbox: Option<PathBuf>,
        #[arg(long, value_name = "LIST", default_value = "x86_64,arm64")]
        arch: String,
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        /// LTP in every boot (its share is shown), from this checkout or tarball.
        #[arg(long, value_name = "PATH", env = "KBOT_LTP")]
        ltp: Option<PathBuf>,
        /// No LTP, even when KBOT_LTP names one.
        #[arg(long)]
        no_ltp: bool,
        /// Only the warm column: a check to fill the caches, then the measured one with the
        /// series' kernels rebuilt (a minute instead of ten).
        #[arg(long)]
        warm_only: bool,
    },
}

/// Which scenario: a corpus or random name, a seed and index, or a file.
#[derive(clap::Args)]
struct Which {
    /// A name from a report, e.g. scenario/priority-order or scenario/random-7-3.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The seed of a random scenario.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// The index of a random scenario of that seed.
    #[arg(long, value_name = "I", default_value_t = 0)]
    index: u32,
    /// A scenario in text form (steps separated by ';' or lines).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ScenarioCmd {
    /// Print the scenario and what refcore predicts for every step.
    Show(Which),
    /// Boot a kernel with only this scenario and say whether it behaves as refcore predicts.
    /// Exit 0 as predicted, 1 divergence, 2 error.
    Replay {
        #[command(flatten)]
        which: Which,
        /// The kernel image (bzImage / Image).
        #[arg(long, value_name = "IMAGE")]
        kernel: Option<PathBuf>,
        /// Or a commit whose kernel kbot check built before (from kbot's cache).
        #[arg(long, value_name = "REV")]
        commit: Option<String>,
        #[arg(long, value_name = "ARCH", default_value = "x86_64")]
        arch: String,
        #[arg(long, value_name = "DIR", env = "KBOT_TREE")]
        tree: Option<PathBuf>,
        /// Instead of one scenario: the first N random scenarios of --seed, alone in one boot
        /// (the trust check: on a good kernel every one must match refcore).
        #[arg(long, value_name = "N")]
        random: Option<u32>,
    },
}

#[derive(clap::Args)]
struct CheckCli {
    /// The series as an mbox (git format-patch, b4 am, a lore t.mbox).
    #[arg(long, value_name = "FILE", group = "input")]
    mbox: Option<PathBuf>,
    /// The series by the message id of any of its mails (cover or patch), `<ID>`, or a lore
    /// link; the whole thread is fetched from the inbox.
    #[arg(long, value_name = "ID", group = "input")]
    msgid: Option<String>,
    /// Look --msgid up in this local public-inbox v2 mirror (git/N.git epochs) instead of
    /// fetching it.
    #[arg(long, value_name = "DIR", requires = "msgid")]
    inbox: Option<PathBuf>,
    /// The inbox to fetch --msgid from (lore or any public-inbox); default: `lore` in the
    /// config file, else https://lore.kernel.org/all/.
    #[arg(long, value_name = "URL", env = "KBOT_LORE")]
    lore: Option<String>,
    /// Configuration file (default: config/kbot.yaml of this repository).
    #[arg(long, value_name = "FILE", env = "KBOT_CONFIG")]
    config: Option<PathBuf>,
    /// Commits BASE..TIP of the tree as the series.
    #[arg(long, value_name = "BASE..TIP", group = "input")]
    range: Option<String>,
    /// Kernel tree (a git repository). Default: the tree `kbot setup` prepared.
    #[arg(long, value_name = "DIR", env = "KBOT_TREE")]
    tree: Option<PathBuf>,
    /// Apply the series to this revision (default: its base-commit: when the tree has it,
    /// else the newest of the tree's HEAD, branches and 20 newest tags that takes the whole
    /// series, checked in memory).
    #[arg(long, value_name = "REV")]
    base: Option<String>,
    /// Without a usable base-commit:, try only these refs as bases (comma separated).
    #[arg(long, value_name = "REFS", conflicts_with = "base")]
    base_from: Option<String>,
    /// Architectures, comma separated.
    #[arg(long, value_name = "LIST", default_value = "x86_64,arm64")]
    arch: String,
    /// Write the kbot.result/v1 JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the Markdown report here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// make -j per arch (default: the number of cores, for each arch).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// How long an operation that must be prompt may block in the guest, in ms.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    watchdog_ms: u64,
    /// Hard limit for one VM run, in seconds.
    #[arg(long, value_name = "S", default_value_t = 180)]
    vm_timeout: u64,
    /// Hard limit for one kernel build, in minutes.
    #[arg(long, value_name = "MIN", default_value_t = 60)]
    build_timeout: u64,
    /// Seed of the random differential scenarios (default: a new one per run, printed in the
    /// report; base and tip always share it).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Test this version of the series when the input holds several (default: the newest).
    #[arg(long, value_name = "N")]
    version: Option<u32>,
    /// In-kernel shadow checks (the reference core built into the kernel with Rust for Linux).
    #[arg(long, value_name = "auto|on|off", default_value = "auto")]
    shadow: check::ShadowMode,
    /// Number of random differential scenarios per boot (besides the fixed corpus).
    #[arg(long, value_name = "N", default_value_t = 8)]
    scenarios: u32,
    /// Who reports: used in the Reported-by: trailer.
    #[arg(long, value_name = "NAME <ADDR>", env = "KBOT_REPORTER", default_value = "kbot <kbot@localhost>")]
    reporter: String,
    /// How the report tells readers to get this input (the service names the list's message
    /// id, not its own copy of the mbox).
    #[arg(long, value_name = "ARGS", hide = true)]
    reproduce_as: Option<String>,
    /// LTP's inotify/fanotify tests in every boot, from this LTP checkout or source tarball
    /// (built static once per LTP commit; also `ltp:` in the config file).
    #[arg(long, value_name = "PATH", env = "KBOT_LTP")]
    ltp: Option<PathBuf>,
    /// Only these LTP tests (comma separated, e.g. fanotify07,inotify01; default: all of them), or
    /// per arch: `x86_64=fanotify07,inotify01;arm64=all`.
    #[arg(long, value_name = "LIST")]
    ltp_tests: Option<String>,
    /// LTP_RUNTIME_MUL for LTP's race tests (fuzzy sync), which run for a set time: inotify09
    /// would take 150 s under TCG at 1; under TCG a short run finds what a long one does.
    #[arg(long, value_name = "X", default_value_t = 0.1)]
    ltp_runtime_mul: f64,
    /// Run LTP's per-filesystem tests on ext2 and ext3 too, not only ext4 and tmpfs (the
    /// kernel's one ext4 driver serves all three; this doubles those tests' time).
    #[arg(long)]
    ltp_all_fs: bool,
    /// Do not run LTP even when the environment or the config names it.
    #[arg(long)]
    no_ltp: bool,
    /// Time for LTP's tests in one boot, in seconds; tests past it are reported as skipped.
    #[arg(long, value_name = "S", default_value_t = 600)]
    ltp_budget: u64,
    /// A task of an LTP test stuck in D state (no context switch) this long is a hang, in ms.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    ltp_hang_ms: u64,
    /// In bisection and confirmation boots, run an LTP test that passes again, up to N runs in
    /// all (no new run after 30 s; the first that fails or hangs decides): a race the kernel has can
    /// go unhit in one run, and a pass there can name the wrong patch.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    ltp_repeat: u32,
    /// Run make, checkpatch and QEMU directly on the host instead of in the bubblewrap sandbox.
    /// Only for series you trust: a Makefile in a patch runs any command at build time.
    #[arg(long)]
    no_sandbox: bool,
}

fn parse_arches(s: &str) -> Result<Vec<Arch>, Fail> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let a = Arch::parse(part)
            .ok_or_else(|| Fail::usage(format!("--arch: unknown architecture {part:?}; use x86_64 and/or arm64")))?;
        if !v.contains(&a) {
            v.push(a);
        }
    }
    if v.is_empty() {
        return Err(Fail::usage("--arch: name at least one of x86_64, arm64"));
    }
    Ok(v)
}

fn check_cmd(c: CheckCli, quiet: bool) -> Result<i32, Fail> {
    let input = match (c.mbox, c.msgid, c.range) {
        (Some(m), _, _) => input::Source::Mbox(m),
        (_, _, Some(r)) => input::Source::Range(r),
        (_, Some(id), _) => match c.inbox.clone() {
            Some(dir) => input::Source::Inbox { id, dir },
            None => {
                let file = match c.config.clone().or_else(config::default_path) {
                    Some(p) => config::load(&p)?,
                    None => config::Config::default(),
                };
                let lore = c.lore.clone().or(file.lore).unwrap_or_else(|| config::DEFAULT_LORE.to_string());
                input::Source::Msgid { id, lore }
            }
        },
        _ => return Err(Fail::usage("name the series: --mbox FILE, --msgid ID or --range BASE..TIP")),
    };
    let arches = parse_arches(&c.arch)?;
    let tests = match &c.ltp_tests {
        Some(l) => check::LtpTests::parse(l).map_err(|e| Fail::usage(format!("--ltp-tests: {e}")))?,
        None => check::LtpTests::default(),
    };
    let ltp = if c.no_ltp {
        None
    } else {
        let file = match c.config.clone().or_else(config::default_path) {
            Some(p) => config::load(&p)?.ltp,
            None => None,
        };
        c.ltp.clone().or(file).map(|source| check::LtpArgs {
            source,
            tests: tests.clone(),
            boot: kbot_runner::lab::LtpBoot {
                hang_ms: c.ltp_hang_ms,
                budget_ms: c.ltp_budget * 1000,
                runtime_mul: c.ltp_runtime_mul.to_string(),
                all_fs: c.ltp_all_fs,
                repeat: c.ltp_repeat,
                ..kbot_runner::lab::LtpBoot::default()
            },
        })
    };
    if let Some(l) = &ltp {
        check::check_ltp_source(&l.source)?;
    }
    // Check the output paths before hours of work, not after.
    for p in [&c.json, &c.report].into_iter().flatten() {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            return Err(Fail::usage(format!("{}: directory {} does not exist", p.display(), dir.display())));
        }
    }
    let home = Home::locate()?;
    set_ccache_dir(&home);
    let sandbox = sandbox_policy(c.no_sandbox, &home, c.config.as_deref())?;
    // Every arch gets all cores: while both build they share them, and when one arch is
    // done (or only needs a bisect step) the other is not left at half speed.
    let jobs = c.jobs.unwrap_or_else(cpus);
    // The reproduce line names the input and the arches, not local output paths.
    let what = c.reproduce_as.clone().unwrap_or_else(|| input.reproduce());
    let progress = Progress::new(quiet);
    let input = input.fetch(&home, &progress)?;
    let command = format!("kbot check {what} --arch {}", arches.iter().map(|a| a.name()).collect::<Vec<_>>().join(","));
    let args = check::CheckArgs {
        input,
        tree: c.tree,
        base: c.base,
        arches,
        jobs,
        watchdog_ms: c.watchdog_ms,
        vm_timeout: Duration::from_secs(c.vm_timeout),
        build_timeout: Duration::from_secs(c.build_timeout * 60),
        reporter: c.reporter,
        command,
        seed: c.seed.unwrap_or_else(new_seed),
        random: c.scenarios,
        shadow: c.shadow,
        version: c.version,
        sandbox,
        ltp,
        base_candidates: c
            .base_from
            .map(|l| l.split(',').map(str::trim).filter(|r| !r.is_empty()).map(str::to_string).collect()),
    };
    let result = check::run(&home, &args, &progress)?;
    if let Some(p) = &c.json {
        write_atomic(p, result.to_json().as_bytes())
            .map_err(|e| Fail::env(format!("cannot write {}: {e}", p.display())))?;
    }
    if let Some(p) = &c.report {
        let md = kbot_report::markdown(&result).map_err(|e| Fail::env(format!("report template: {e}")))?;
        write_atomic(p, md.as_bytes()).map_err(|e| Fail::env(format!("cannot write {}: {e}", p.display())))?;
    }
    print_summary(&result, &c.json, &c.report);
    Ok(result.status.exit_code())
}

fn scenario(cmd: ScenarioCmd, quiet: bool) -> Result<i32, Fail> {
    let pick = |w: &Which| scenario_cmd::select(w.name.as_deref(), w.seed, w.index, w.file.as_deref());
    match cmd {
        ScenarioCmd::Show(w) => {
            print!("{}", scenario_cmd::show(&pick(&w)?)?);
            Ok(0)
        }
        ScenarioCmd::Replay { which, kernel, commit, arch, tree, random: Some(n) } => {
            let seed = which.seed.ok_or_else(|| Fail::usage("--random N needs --seed S"))?;
            let arch = Arch::parse(&arch).ok_or_else(|| Fail::usage(format!("--arch {arch}: use x86_64 or arm64")))?;
            let home = Home::locate()?;
            let r = scenario_cmd::Replay {
                arch,
                kernel: kernel.as_deref(),
                commit: commit.as_deref(),
                tree: tree.unwrap_or_else(|| home.default_tree()),
                vm_timeout: Duration::from_secs(180),
                sandbox: sandbox_policy(false, &home, None)?,
            };
            let run = scenario_cmd::replay_random(&home, seed, n, &r, &Progress::new(quiet))?;
            for (name, detail) in &run.divergent {
                println!("{name}: DIVERGENCE: {detail}");
            }
            println!(
                "{} random scenarios of seed {seed} on {arch}: {} divergent, {} skipped; {} ({})",
                run.ran,
                run.divergent.len(),
                run.skipped,
                run.rate,
                run.log.display()
            );
            Ok(if run.divergent.is_empty() && run.ran > 0 { 0 } else { 1 })
        }
        ScenarioCmd::Replay { which, kernel, commit, arch, tree, random: None } => {
            let sc = pick(&which)?;
            let arch = Arch::parse(&arch).ok_or_else(|| Fail::usage(format!("--arch {arch}: use x86_64 or arm64")))?;
            let home = Home::locate()?;
            let r = scenario_cmd::Replay {
                arch,
                kernel: kernel.as_deref(),
                commit: commit.as_deref(),
                tree: tree.unwrap_or_else(|| home.default_tree()),
                vm_timeout: Duration::from_secs(180),
                sandbox: sandbox_policy(false, &home, None)?,
            };
            let (ok, detail) = scenario_cmd::replay(&home, &sc, &r, &Progress::new(quiet))?;
            println!("{}: {} on {arch}: {detail}", sc.name, if ok { "as predicted" } else { "DIVERGENCE" });
            Ok(if ok { 0 } else { 1 })
        }
    }
}

fn bench_cmd(
    mbox: Option<PathBuf>,
    arch: &str,
    jobs: Option<usize>,
    ltp: Option<PathBuf>,
    warm_only: bool,
    quiet: bool,
) -> Result<i32, Fail> {
    let arches = parse_arches(arch)?;
    if let Some(l) = &ltp {
        check::check_ltp_source(l)?;
    }
    let mbox = mbox.unwrap_or_else(|| agent::workspace().join("examples/bench-4-patches.mbox"));
    let home = Home::locate()?;
    set_ccache_dir(&home);
    let args = check::CheckArgs {
        command: format!("kbot check --mbox {} --arch {arch}", mbox.display()),
        input: input::Source::Mbox(mbox).fetch(&home, &Progress::new(quiet))?,
        tree: None,
        base: None,
        arches,
        jobs: jobs.unwrap_or_else(cpus),
        watchdog_ms: 3000,
        vm_timeout: Duration::from_secs(180),
        build_timeout: Duration::from_secs(3600),
        reporter: "kbot <kbot@localhost>".into(),
        seed: 1,
        random: 8,
        shadow: check::ShadowMode::Auto,
        version: None,
        sandbox: sandbox_policy(false, &home, None)?,
        ltp: ltp.map(|source| check::LtpArgs {
            source,
            tests: check::LtpTests::default(),
            boot: kbot_runner::lab::LtpBoot::default(),
        }),
        base_candidates: None,
    };
    let table = bench::run(&home, args, warm_only, &Progress::new(quiet))?;
    println!("{table}");
    Ok(0)
}

fn print_summary(r: &kbot_report::CheckResult, json: &Option<PathBuf>, report: &Option<PathBuf>) {
    let status = r.status.as_str().to_uppercase();
    println!(
        "kbot: {status}: {:?} (v{}, {} patches) on {}",
        r.series.subject,
        r.series.version,
        r.series.total,
        kbot_report::short_commit(&r.series.base)
    );
    if let Some(e) = &r.error {
        println!("  error: {e}");
    }
    if !r.series.missing.is_empty() {
        println!("  missing patches: {:?}", r.series.missing);
    }
    if let Some(p) = r.apply.failed_patch {
        println!("  patch {p} does not apply:");
        for l in r.apply.detail.lines().take(6) {
            println!("    {l}");
        }
    }
    for a in &r.arches {
        // Skipped tests did not run: they are neither passes nor failures.
        let count = |run: &kbot_report::Run| {
            let n = |o| run.tests.iter().filter(|t| t.result == o).count();
            let skip = n(kbot_report::Outcome::Skip);
            let ran = format!("{}/{} pass", n(kbot_report::Outcome::Pass), run.tests.len() - skip);
            if skip > 0 {
                format!("{ran}, {skip} not run")
            } else {
                ran
            }
        };
        println!(
            "  {}: base build {} tests {}; tip build {} tests {}",
            a.arch,
            a.base.build,
            count(&a.base),
            a.tip.build,
            count(&a.tip)
        );
        for g in &a.regressions {
            let fb = g.first_bad.as_ref().map_or_else(
                || g.bisect.clone(),
                |f| format!("first bad patch {}/{}: {}", f.index, r.series.total, f.subject),
            );
            println!("    REGRESSION {} ({}): {fb}", g.test, g.kind);
        }
        if !a.flaky.is_empty() {
            println!("    flaky (not reported): {}", a.flaky.join(", "));
        }
        if let Some(e) = &a.error {
            println!("    error: {e}");
        }
        if !a.shadow.is_empty() && a.shadow != "on" {
            println!("    shadow checks: {}", a.shadow);
        }
    }
    println!(
        "  scenarios: {} corpus + {} random from seed {}",
        r.scenarios.corpus, r.scenarios.random, r.scenarios.seed
    );
    println!("  time: {:.1}s", r.timings.total_s);
    if let Some(j) = json {
        println!("  json: {}", j.display());
    }
    if let Some(m) = report {
        println!("  report: {}", m.display());
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Setup { no_packages, no_tree, ltp } => {
            let progress = Progress::new(cli.quiet);
            Home::locate().and_then(|home| {
                set_ccache_dir(&home);
                let opts = setup::SetupOpts { packages: !no_packages, tree: !no_tree, ltp };
                setup::run(&home, &opts, &progress).map(|done| {
                    for (b, secs) in &done.ltp {
                        println!(
                            "ltp {} {}: {} tests in {} ({secs:.0}s)",
                            b.arch,
                            b.id,
                            b.tests.len(),
                            b.root.display()
                        );
                    }
                    println!("{}", done.tree.display());
                    0
                })
            })
        }
        Cmd::Check(c) => check_cmd(*c, cli.quiet),
        Cmd::Scenario(s) => scenario(s, cli.quiet),
        Cmd::Bench { mbox, arch, jobs, ltp, no_ltp, warm_only } => {
            bench_cmd(mbox, &arch, jobs, ltp.filter(|_| !no_ltp), warm_only, cli.quiet)
        }
        Cmd::Serve { config, once } => Home::locate().and_then(|home| {
            let cfg = config::load(&config)?;
            if cfg.inboxes.is_empty() && cfg.trees.iter().all(|t| t.branches.is_empty()) {
                return Err(Fail::usage(format!(
                    "config {}: nothing to watch: add inboxes, or branches to a tree",
                    config.display()
                )));
            }
            set_ccache_dir(&home);
            serve::run(cfg, home, once, cli.quiet)
        }),
        Cmd::Web { config } => Home::locate().and_then(|home| {
            let cfg = config::load(&config)?;
            let addr = serve::web(&cfg, &home)?;
            eprintln!("kbot: dashboard on http://{addr}/");
            loop {
                std::thread::park();
            }
        }),
        Cmd::Export { format: _, config, job } => Home::locate().and_then(|home| {
            let cfg = config::load(&config)?;
            let doc = serve::export_kcidb(&cfg, &home, job)?;
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            Ok(0)
        }),
        Cmd::Status { config } => Home::locate().and_then(|home| {
            let cfg = config::load(&config)?;
            print!("{}", serve::status(&cfg, &home)?);
            Ok(0)
        }),
    };
    match code {
        Ok(c) => std::process::exit(c),
        Err(f) => {
            // One line, always: tools' messages embedded in errors may span several.
            let msg: Vec<&str> = f.msg().lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            eprintln!("kbot: error: {}", msg.join("; "));
            std::process::exit(f.code());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Each subcommand's help is its own: a doc comment without its item once gave `serve`
    /// the bench's text and `bench` none.
    #[test]
    fn every_subcommand_says_what_it_does() {
        let cli = Cli::command();
        for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(!about.is_empty(), "{} has no help", sub.get_name());
        }
        let about = |name: &str| cli.find_subcommand(name).and_then(|s| s.get_about()).unwrap().to_string();
        assert!(about("serve").starts_with("The mailing-list reply bot"), "{}", about("serve"));
        assert!(about("bench").starts_with("Print the stage times"), "{}", about("bench"));
    }
}
