//! `kbot scenario show` and `kbot scenario replay`: what a developer who got a divergence
//! report needs — the scenario with refcore's prediction, and a run of just that scenario on
//! a kernel of their choice.

use crate::home::Home;
use crate::progress::Progress;
use crate::{agent, Fail};
use kbot_kernel::qemu::{self, Accel, VmSpec};
use kbot_kernel::{cpio, kconfig, Arch};
use kbot_scenario::kbot_refcore::Semantics;
use kbot_scenario::{format_step, from_name, parse, predict, ret_name, Scenario};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Picks the scenario: by name (`scenario/...`), by seed and index, or from a file.
pub fn select(name: Option<&str>, seed: Option<u64>, index: u32, file: Option<&Path>) -> Result<Scenario, Fail> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| Fail::usage(format!("cannot read {}: {e}", f.display())))?;
        let steps = parse(&text).map_err(|e| Fail::usage(format!("{}: {e}", f.display())))?;
        if steps.is_empty() {
            return Err(Fail::usage(format!("{}: no steps", f.display())));
        }
        return Ok(Scenario { name: "scenario/file".into(), steps });
    }
    if let Some(n) = name {
        let scenario = kbot_report::TestFamily::Scenario;
        let n = if kbot_report::TestFamily::of(n) == scenario {
            n.to_string()
        } else {
            format!("{}{n}", scenario.prefix())
        };
        return from_name(&n).ok_or_else(|| {
            let known: Vec<String> = kbot_scenario::corpus().into_iter().map(|s| s.name).collect();
            Fail::usage(format!(
                "no scenario {n}; the corpus has {} and random ones are scenario/random-<seed>-<index>",
                known.join(", ")
            ))
        });
    }
    match seed {
        Some(s) => Ok(kbot_scenario::random(s, index)),
        None => Err(Fail::usage("name a scenario: --name NAME, --seed N [--index I] or --file F")),
    }
}

/// The scenario, one step per line, with what refcore predicts for each.
pub fn show(sc: &Scenario) -> Result<String, Fail> {
    let pred = predict(&sc.steps, Semantics::Current).map_err(|e| Fail::usage(e.to_string()))?;
    let mut out = format!("{} ({} steps)\n", sc.name, sc.steps.len());
    for (i, (s, p)) in sc.steps.iter().zip(&pred).enumerate() {
        let mut line = format!("{:>3}. {:<24} {}", i + 1, format_step(s), ret_name(p.ret));
        if !p.events.is_empty() {
            let ev: Vec<String> = p.events.iter().map(kbot_scenario::event_name).collect();
            line += &format!("; reads [{}]", ev.join(", "));
        }
        if !p.released.is_empty() {
            let r: Vec<String> = p.released.iter().map(|(t, r)| format!("t{t} ({})", ret_name(Some(*r)))).collect();
            line += &format!("; releases {}", r.join(", "));
        }
        out += &line;
        out.push('\n');
    }
    out += &format!("text: {}\n", kbot_scenario::format(&sc.steps));
    Ok(out)
}

/// Finds the kernel image: a path, or a commit already built by `kbot check`.
fn kernel_image(
    home: &Home,
    arch: Arch,
    kernel: Option<&Path>,
    commit: Option<&str>,
    tree: &Path,
) -> Result<PathBuf, Fail> {
    if let Some(k) = kernel {
        return if k.is_file() {
            Ok(k.to_path_buf())
        } else {
            Err(Fail::usage(format!("--kernel {}: no such file", k.display())))
        };
    }
    let rev = commit
        .ok_or_else(|| Fail::usage("name the kernel: --kernel IMAGE or --commit REV (built before by kbot check)"))?;
    let t = kbot_kernel::git::Tree::open(tree).map_err(|e| Fail::usage(format!("--tree: {e}")))?;
    let c = t.resolve(rev).ok_or_else(|| Fail::usage(format!("--commit {rev}: not in {}", tree.display())))?;
    // With or without the shadow checks, whichever kbot check built.
    let found = [kbot_kernel::shadow::config_extra(), String::new()]
        .iter()
        .map(|extra| home.kernel_cache(arch, &c, &kconfig::config_key(arch, extra)).join(arch.image_target()))
        .find(|img| img.is_file());
    if let Some(img) = found {
        Ok(img)
    } else {
        Err(Fail::usage(format!("no {arch} kernel for {} in kbot's cache; run kbot check on a series with that commit first, or pass --kernel", kbot_report::short_commit(&c))))
    }
}

pub struct Replay<'a> {
    pub arch: Arch,
    pub kernel: Option<&'a Path>,
    pub commit: Option<&'a str>,
    pub tree: PathBuf,
    pub vm_timeout: Duration,
    pub sandbox: kbot_sandbox::Policy,
}

/// Boots the kernel with only this scenario; returns the agent's verdict line and detail.
pub fn replay(home: &Home, sc: &Scenario, r: &Replay, progress: &Progress) -> Result<(bool, String), Fail> {
    let image = kernel_image(home, r.arch, r.kernel, r.commit, &r.tree)?;
    let agent_bin = agent::build(r.arch)?;
    let agent = std::fs::read(&agent_bin).map_err(|e| Fail::env(e.to_string()))?;
    let dir = home.new_run_dir().map_err(|e| Fail::env(e.to_string()))?;
    let name = "scenario/replay";
    let file = format!("{name}: {}\n", kbot_scenario::format(&sc.steps));
    let initrd = dir.join("initramfs.cpio");
    std::fs::write(&initrd, cpio::initramfs_with(&agent, &[("scenarios.txt", file.as_bytes())]))
        .map_err(|e| Fail::env(e.to_string()))?;
    let spec = VmSpec {
        arch: r.arch,
        kernel: &image,
        initrd: &initrd,
        append: format!("kbot.only={name} kbot.random=0"),
        timeout: r.vm_timeout,
        accel: Accel::Tcg,
        mem_mb: 512,
        smp: 2,
    };
    progress.say(r.arch.name(), "replay", &format!("{} on {}", sc.name, image.display()));
    let log = dir.join("console.log");
    let vm = qemu::run(&r.sandbox, &spec, &log, 16 << 20, |_| {})
        .map_err(|e| Fail::env(format!("cannot start {}: {e}", r.arch.qemu())))?;
    let console = kbot_console::parse(&vm.console);
    match console.test(name) {
        Some(t) => Ok((t.outcome == kbot_console::Outcome::Pass, format!("{} ({})", t.detail, log.display()))),
        None => Err(Fail::env(format!(
            "the guest did not report the scenario ({}); see {}",
            if vm.timed_out {
                "VM timed out".to_string()
            } else if let Some(l) = vm.qemu_stderr.lines().find(|l| !l.trim().is_empty()) {
                format!("{} said: {}", r.arch.qemu(), l.trim())
            } else {
                "agent did not finish".to_string()
            },
            log.display()
        ))),
    }
}

/// What a boot of random scenarios found: how many ran, the divergent ones (name and detail),
/// the agent's scenarios-per-second line, and the console log.
pub struct RandomRun {
    pub ran: usize,
    pub skipped: usize,
    pub divergent: Vec<(String, String)>,
    pub rate: String,
    pub log: PathBuf,
}

/// Boots the kernel with the random scenarios `0..n` of `seed` alone (no tests, corpus or
/// LTP): the trust check of refcore against a kernel that is known good.
pub fn replay_random(home: &Home, seed: u64, n: u32, r: &Replay, progress: &Progress) -> Result<RandomRun, Fail> {
    let image = kernel_image(home, r.arch, r.kernel, r.commit, &r.tree)?;
    let agent_bin = agent::build(r.arch)?;
    let agent = std::fs::read(&agent_bin).map_err(|e| Fail::env(e.to_string()))?;
    let dir = home.new_run_dir().map_err(|e| Fail::env(e.to_string()))?;
    let initrd = dir.join("initramfs.cpio");
    std::fs::write(&initrd, cpio::initramfs_with(&agent, &[])).map_err(|e| Fail::env(e.to_string()))?;
    let spec = VmSpec {
        arch: r.arch,
        kernel: &image,
        initrd: &initrd,
        append: format!("kbot.scenarios_only=1 kbot.seed={seed} kbot.random={n} kbot.budget_ms=100000000"),
        timeout: r.vm_timeout + Duration::from_secs(2) * n,
        accel: Accel::Tcg,
        mem_mb: 512,
        smp: 2,
    };
    progress.say(r.arch.name(), "replay", &format!("{n} random scenarios of seed {seed} on {}", image.display()));
    let log = dir.join("console.log");
    let vm = qemu::run(&r.sandbox, &spec, &log, 64 << 20, |_| {})
        .map_err(|e| Fail::env(format!("cannot start {}: {e}", r.arch.qemu())))?;
    let console = kbot_console::parse(&vm.console);
    let mut out = RandomRun { ran: 0, skipped: 0, divergent: Vec::new(), rate: String::new(), log: log.clone() };
    for i in 0..n {
        let name = format!("scenario/random-{seed}-{i}");
        match console.test(&name) {
            Some(t) if t.outcome == kbot_console::Outcome::Pass => out.ran += 1,
            Some(t) if t.outcome == kbot_console::Outcome::Skip => out.skipped += 1,
            Some(t) => {
                out.ran += 1;
                out.divergent.push((name, t.detail.clone()));
            }
            None => out.skipped += 1,
        }
    }
    out.rate = vm
        .console
        .lines()
        .find_map(|l| l.split_once("# kbot-agent random scenarios: ").map(|(_, r)| r.trim().to_string()))
        .unwrap_or_else(|| "no rate (the agent did not finish)".into());
    Ok(out)
}
