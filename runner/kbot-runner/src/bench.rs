//! `kbot bench`: stage times of a cold and a warm check of a series (by default the shipped
//! 4-patch series whose patch 2 reintroduces the SRCU stall) on the chosen arches.
//!
//! cold: no cached kernels, empty build directories, ccache disabled: every kernel from
//! scratch. warm: what a new series on a known tree gets: the base kernel cached, build
//! directories and ccache warm, but every patched kernel still built.

use crate::check::{self, CheckArgs};
use crate::home::Home;
use crate::progress::Progress;
use crate::Fail;
use kbot_report::CheckResult;

fn wipe(path: &std::path::Path) {
    let _ = std::fs::remove_dir_all(path);
}

/// Sums the stage times whose name matches `f`, with the count.
fn sum(r: &CheckResult, f: impl Fn(&str) -> bool) -> (f64, usize) {
    r.timings.stages.iter().filter(|(n, _)| f(n)).fold((0.0, 0), |(s, c), (_, v)| (s + v, c + 1))
}

fn row(name: &str, cold: (f64, usize), warm: (f64, usize)) -> String {
    let cell = |(s, c): (f64, usize)| {
        if c == 0 {
            "-".to_string()
        } else if c == 1 {
            format!("{s:.1}")
        } else {
            format!("{s:.1} ({c}x)")
        }
    };
    format!("| {name} | {} | {} |", cell(cold), cell(warm))
}

/// The table of stage times, cold vs warm, per arch.
pub fn table(cold: &CheckResult, warm: &CheckResult) -> String {
    let mut out = vec!["| stage | cold s | warm s |".to_string(), "|---|---|---|".to_string()];
    for stage in ["parse", "worktrees", "apply"] {
        out.push(row(stage, sum(cold, |n| n == stage), sum(warm, |n| n == stage)));
    }
    for a in &cold.arches {
        let arch = a.arch.as_str();
        let n = cold.series.total as usize;
        let build = |p: &str| format!("{arch}.build.{p}");
        out.push(row(&format!("{arch} build base"), sum(cold, |s| s == build("0")), sum(warm, |s| s == build("0"))));
        out.push(row(
            &format!("{arch} build tip"),
            sum(cold, |s| s == build(&n.to_string())),
            sum(warm, |s| s == build(&n.to_string())),
        ));
        let mid = |r: &CheckResult| {
            sum(r, |s| s.starts_with(&format!("{arch}.build.")) && s != build("0") && s != build(&n.to_string()))
        };
        out.push(row(&format!("{arch} builds inside the series"), mid(cold), mid(warm)));
        let boots = |r: &CheckResult| sum(r, |s| s.starts_with(&format!("{arch}.boot.")));
        out.push(row(&format!("{arch} boots + tests"), boots(cold), boots(warm)));
        let steps = |r: &CheckResult| {
            let st = r.arches.iter().find(|x| x.arch == arch).map(|x| x.bisect_steps.clone()).unwrap_or_default();
            (st.iter().map(|s| s.seconds).sum::<f64>(), st.len())
        };
        out.push(row(&format!("{arch} bisect steps (build + boot + tests)"), steps(cold), steps(warm)));
    }
    out.push(row("total", (cold.timings.total_s, 1), (warm.timings.total_s, 1)));
    out.join("\n")
}

pub fn run(home: &Home, args: CheckArgs, progress: &Progress) -> Result<String, Fail> {
    let tree = args.tree.clone().unwrap_or_else(|| home.default_tree());
    // Cold: no kernel cache, fresh build directories, no ccache.
    wipe(&home.root.join("cache/kernels"));
    for a in &args.arches {
        wipe(&home.build_dir(&tree, *a));
    }
    progress.say("bench", "cold", "no cached kernels, empty build directories, ccache off");
    std::env::set_var("CCACHE_DISABLE", "1");
    let cold = check::run(home, &args, progress)?;
    std::env::remove_var("CCACHE_DISABLE");
    // Warm: forget the patched kernels, keep the base kernel, build dirs and ccache.
    for a in &args.arches {
        for p in &cold.series.patches {
            if let Some(c) = &p.commit {
                for extra in [String::new(), kbot_kernel::shadow::config_extra()] {
                    wipe(&home.kernel_cache(*a, c, &kbot_kernel::kconfig::config_key(*a, &extra)));
                }
            }
        }
    }
    progress.say("bench", "warm", "base kernel cached, patched kernels rebuilt incrementally");
    let warm = check::run(home, &args, progress)?;
    for (name, r) in [("cold", &cold), ("warm", &warm)] {
        let status =
            serde_json::to_value(r.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let found: Vec<String> = r
            .arches
            .iter()
            .flat_map(|a| {
                a.regressions.iter().map(move |g| {
                    format!(
                        "{}:{}@{}",
                        a.arch,
                        g.test,
                        g.first_bad.as_ref().map_or("?".into(), |f| f.index.to_string())
                    )
                })
            })
            .collect();
        progress.say("bench", name, &format!("{status}: {}", found.join(" ")));
    }
    Ok(table(&cold, &warm))
}
