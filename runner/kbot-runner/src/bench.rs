//! `kbot bench`: stage times of a cold and a warm check of a series (by default the shipped
//! 4-patch series whose patch 2 reintroduces the SRCU stall) on the chosen arches.
//!
//! cold: kbot's whole kernel cache emptied, the chosen arches' build directories of the tree
//! emptied, and no ccache: the builds run in the sandbox with an emptied environment, so
//! `CCACHE_DISABLE` in kbot's environment is passed on by `kbot_kernel::build` itself (same
//! `CC=ccache gcc`, so the warm run stays incremental; no ccache directory in the sandbox). The first kernel of each arch is built from scratch, the
//! later ones incrementally in that build directory, as in any check. The worktrees (sources)
//! are kept. warm: what a new series on a known tree gets: the base kernel cached, the build
//! directories as the cold run left them, ccache as before the bench (the cold run neither
//! read nor filled it), but every patched kernel still built.

use crate::check::{self, CheckArgs};
use crate::home::Home;
use crate::progress::Progress;
use crate::Fail;
use kbot_report::{CheckResult, TestFamily};
use std::path::Path;

/// Removes a directory tree; a missing one is fine, one that cannot be removed is an error
/// (the cold run would not be cold).
fn wipe(path: &Path) -> Result<(), Fail> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Fail::env(format!("bench: cannot empty {}: {e}", path.display())))
        }
        _ => Ok(()),
    }
}

/// What the two columns mean, under the table.
pub fn legend(arches: &str, ccache_warm: bool) -> String {
    format!(
        "cold: kernel cache and cached base boots emptied, build directories ({arches}) emptied, no ccache (CCACHE_DISABLE=1 in the sandbox, its directory not there); \
         first kernel per arch from scratch, later ones incremental; worktrees kept.\n\
         warm: base kernels and base boot results cached (same seed), build directories as the cold run left them, {}; patched kernels rebuilt.",
        if ccache_warm { "ccache as before the bench" } else { "no ccache (not installed or CCACHE_DISABLE set)" }
    )
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
        // The first failed test or in-kernel violation printed, after the tip's VM started.
        let tip_first = |r: &CheckResult| sum(r, |s| s == format!("{arch}.first_verdict.{n}"));
        out.push(row(&format!("{arch} first verdict after the tip booted"), tip_first(cold), tip_first(warm)));
        let ltp = |r: &CheckResult| ltp_share(r, arch);
        if ltp(cold).1 + ltp(warm).1 > 0 {
            out.push(row(&format!("{arch} LTP in the tip's boot (tests)"), ltp(cold), ltp(warm)));
        }
    }
    out.push(row("total", (cold.timings.total_s, 1), (warm.timings.total_s, 1)));
    out.join("\n")
}

/// Seconds LTP's tests took in the tip's boot of `arch` (from each test's `time_ms`), with
/// the number of tests: what every series pays (the base's LTP run is cached per base).
fn ltp_share(r: &CheckResult, arch: &str) -> (f64, usize) {
    let Some(a) = r.arches.iter().find(|a| a.arch == arch) else { return (0.0, 0) };
    a.tip.tests.iter().filter(|t| TestFamily::of(&t.name) == TestFamily::Ltp).fold((0.0, 0), |(s, c), t| {
        let ms: f64 =
            t.detail.rsplit("time_ms=").next().and_then(|x| x.trim_end_matches(')').parse().ok()).unwrap_or(0.0);
        (s + ms / 1000.0, c + 1)
    })
}

/// Forgets the series' own kernels (every config), keeping the base's.
fn forget_patched(home: &Home, args: &CheckArgs, r: &CheckResult) -> Result<(), Fail> {
    for a in &args.arches {
        for p in &r.series.patches {
            if let Some(c) = &p.commit {
                for extra in [String::new(), kbot_kernel::shadow::config_extra()] {
                    wipe(&home.kernel_cache(*a, c, &kbot_kernel::kconfig::config_key(*a, &extra)))?;
                }
            }
        }
    }
    Ok(())
}

/// `warm_only`: a first check fills the caches (whatever they held), the second is measured
/// with the series' kernels rebuilt; the table's cold column is that first check.
pub fn run(home: &Home, args: CheckArgs, warm_only: bool, progress: &Progress) -> Result<String, Fail> {
    if warm_only {
        progress.say("bench", "prime", "a check to fill the caches (not measured)");
        let prime = check::run(home, &args, progress)?;
        forget_patched(home, &args, &prime)?;
        progress.say("bench", "warm", "base kernel cached, patched kernels rebuilt incrementally");
        let warm = check::run(home, &args, progress)?;
        let arches = args.arches.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ");
        return Ok(format!(
            "{}\n\nwarm only ({arches}): the cold column is the priming check, whatever the caches held.",
            table(&prime, &warm)
        ));
    }
    let tree = args.tree.clone().unwrap_or_else(|| home.default_tree());
    // Cold: no kernel cache, fresh build directories, no ccache.
    wipe(&home.root.join("cache/kernels"))?;
    wipe(&home.root.join("cache/boots"))?;
    for a in &args.arches {
        wipe(&home.build_dir(&tree, *a))?;
    }
    let arches = args.arches.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ");
    progress.say(
        "bench",
        "cold",
        &format!("kernel cache, cached base boots and build directories ({arches}) emptied, no ccache"),
    );
    let before = std::env::var_os("CCACHE_DISABLE");
    std::env::set_var("CCACHE_DISABLE", "1");
    let cold = check::run(home, &args, progress);
    match &before {
        Some(v) => std::env::set_var("CCACHE_DISABLE", v),
        None => std::env::remove_var("CCACHE_DISABLE"),
    }
    let cold = cold?;
    // Warm: forget the patched kernels, keep the base kernel, build dirs and ccache.
    forget_patched(home, &args, &cold)?;
    let ccache_warm = kbot_kernel::build::use_ccache();
    progress.say(
        "bench",
        "warm",
        &format!(
            "base kernel cached, patched kernels rebuilt incrementally, {}",
            if ccache_warm { "ccache on" } else { "no ccache" }
        ),
    );
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
    Ok(format!("{}\n\n{}", table(&cold, &warm), legend(&arches, ccache_warm)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legend_says_what_cold_and_warm_were() {
        let l = legend("x86_64, arm64", true);
        assert!(
            l.starts_with(
                "cold: kernel cache and cached base boots emptied, build directories (x86_64, arm64) emptied, no ccache (CCACHE_DISABLE=1 in the sandbox, its directory not there);"
            )
        );
        assert!(
            l.contains("\nwarm: base kernels and base boot results cached (same seed), build directories as the cold run left them, ccache as before")
        );
        assert!(legend("arm64", false).contains("no ccache (not installed or CCACHE_DISABLE set)"));
    }

    #[test]
    fn wipe_tolerates_missing_and_empties() {
        let d = tempfile::tempdir().unwrap();
        let x = d.path().join("out");
        wipe(&x).unwrap();
        std::fs::create_dir_all(x.join("a/b")).unwrap();
        std::fs::write(x.join("a/b/vmlinux"), "x").unwrap();
        wipe(&x).unwrap();
        assert!(!x.exists());
    }
}
