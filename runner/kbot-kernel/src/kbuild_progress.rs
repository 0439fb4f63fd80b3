//! How far a kernel build is, from kbuild's own output. Pure: fed the lines of the build log
//! as they come, no I/O.
//!
//! At `V=0` kbuild prints one line per step, `  TAG     target` (`  CC      fs/notify/mark.o`,
//! `  AR      built-in.a`, `  CC [M]  ...`, `  RUSTC L rust/kernel.o`, `  LD      vmlinux`).
//! The estimator counts those lines. With the total of the previous build in the same build
//! directory (or, for an empty build directory with no history, a typical total for kbot's
//! tinyconfig + fragment kernel of that arch, labelled as such) it gives a fraction and an
//! estimate of the time left from the rate so far: `left = (total - done) * elapsed / done`.
//! When the build goes past the expected total, or there is none, it says only how many steps
//! are done and which one is current.

use std::fmt;
use std::time::Duration;

/// Where the expected number of steps comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The previous successful build in this build directory.
    Previous,
    /// A typical cold build of kbot's configuration for the arch: a guess.
    Typical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub total: u64,
    pub basis: Basis,
}

/// One report of a build's progress: plain data, shown with `Display`.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildProgress {
    /// Step lines seen so far.
    pub done: u64,
    /// The expected total, while the build has not gone past it.
    pub expected: Option<Expected>,
    /// The expected total the build went past, if it did.
    pub overrun: Option<u64>,
    /// The newest step, `CC fs/notify/mark.o`.
    pub current: Option<String>,
    pub elapsed: Duration,
    /// Estimated time left, once there is a fraction and enough steps to have a rate, until
    /// the expected last step.
    pub left: Option<Duration>,
}

impl BuildProgress {
    /// Done over expected, 0.0 to 1.0, when there is an expected total.
    pub fn fraction(&self) -> Option<f64> {
        self.expected.map(|e| (self.done as f64 / e.total.max(1) as f64).min(1.0))
    }
}

/// `1234/4100 steps (30%), CC fs/ext4/inode.o, ~4 min left`;
/// `312/~1400 steps (22%, typical cold build), CC ..., ~6 min left`; `57 steps, LD vmlinux`.
impl fmt::Display for BuildProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.expected, self.fraction()) {
            (Some(e), Some(frac)) => {
                let pct = (frac * 100.0).floor() as u64;
                match e.basis {
                    Basis::Previous => write!(f, "{}/{} steps ({pct}%)", self.done, e.total)?,
                    Basis::Typical => write!(f, "{}/~{} steps ({pct}%, typical cold build)", self.done, e.total)?,
                }
            }
            _ => {
                write!(f, "{} steps", self.done)?;
                if let Some(t) = self.overrun {
                    write!(f, " (more than the {t} expected)")?;
                }
            }
        }
        if let Some(c) = &self.current {
            write!(f, ", {c}")?;
        }
        if let Some(l) = self.left {
            write!(f, ", {} left", eta(l))?;
        }
        Ok(())
    }
}

/// `~40 s`, `~4 min`.
fn eta(d: Duration) -> String {
    let s = d.as_secs();
    if s < 90 {
        format!("~{} s", s.div_ceil(10).max(1) * 10)
    } else {
        format!("~{} min", (s + 30) / 60)
    }
}

/// A kbuild step line's tag and target: `  CC      fs/notify/mark.o` gives `("CC", "fs/...")`.
/// Tags are capitals, digits and `_`, optionally followed by ` [M]` or one capital
/// (`RUSTC L`); compiler diagnostics (`  530 |`, `  --> file`, `  = note`) are not steps.
pub fn step(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("  ")?;
    let b = rest.as_bytes();
    if !b.first()?.is_ascii_uppercase() {
        return None;
    }
    let mut i = b.iter().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || **c == b'_').count();
    if rest[i..].starts_with(" [M]") {
        i += 4;
    } else if b.len() > i + 2 && b[i] == b' ' && b[i + 1].is_ascii_uppercase() && b[i + 2] == b' ' {
        i += 2;
    }
    let tag = &rest[..i];
    let target = rest[i..].strip_prefix(' ')?.trim();
    if target.is_empty() {
        return None;
    }
    Some((tag, target))
}

/// Counts the step lines of a whole log.
pub fn count_steps(log: &str) -> u64 {
    log.lines().filter(|l| step(l).is_some()).count() as u64
}

/// A typical step count of a cold build of kbot's tinyconfig + fragment kernel (with the
/// shadow checks) of Linux 6.12, from the objects such a build leaves (`.*.cmd` files in the
/// build directory: 1415 on x86_64, 1202 on arm64). Only a guess for the first build of a
/// directory; any build after it uses that directory's own history.
pub fn typical_cold_total(arch: crate::Arch) -> u64 {
    match arch {
        crate::Arch::X86_64 => 1400,
        crate::Arch::Arm64 => 1200,
    }
}

/// Fewest steps and seconds before a time left is estimated: the first seconds of a build
/// (make reading makefiles, `GEN`, `SYNC`) say little about its rate.
const MIN_STEPS_FOR_RATE: u64 = 20;
const MIN_SECS_FOR_RATE: f64 = 5.0;

#[derive(Debug, Clone)]
pub struct Estimator {
    expected: Option<Expected>,
    done: u64,
    current: Option<String>,
    /// Strips the sandbox's inside paths from targets (`CALL /mnt/kbot/src/scripts/...`).
    prefixes: Vec<String>,
}

impl Estimator {
    pub fn new(expected: Option<Expected>) -> Estimator {
        Estimator { expected: expected.filter(|e| e.total > 0), done: 0, current: None, prefixes: Vec::new() }
    }

    /// Targets starting with one of these (`/mnt/kbot/src/`) are shown without it.
    pub fn strip_prefixes(mut self, p: impl IntoIterator<Item = String>) -> Estimator {
        self.prefixes = p.into_iter().collect();
        self
    }

    /// Takes one line of kbuild output; true when it was a step.
    pub fn feed(&mut self, line: &str) -> bool {
        let Some((tag, target)) = step(line) else { return false };
        self.done += 1;
        let target = self.prefixes.iter().find_map(|p| target.strip_prefix(p.as_str())).unwrap_or(target);
        self.current = Some(format!("{tag} {target}"));
        true
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    /// Where the build is after `elapsed`.
    pub fn progress(&self, elapsed: Duration) -> BuildProgress {
        let within = self.expected.filter(|e| self.done <= e.total);
        let overrun = self.expected.filter(|e| self.done > e.total).map(|e| e.total);
        let secs = elapsed.as_secs_f64();
        let rated = self.done >= MIN_STEPS_FOR_RATE && secs >= MIN_SECS_FOR_RATE;
        let left = within.filter(|e| rated && e.total > self.done).map(|e| {
            let per_step = secs / self.done as f64;
            Duration::from_secs_f64(per_step * (e.total - self.done) as f64)
        });
        BuildProgress { done: self.done, expected: within, overrun, current: self.current.clone(), elapsed, left }
    }
}

/// What a build directory remembers of its previous builds (`.kbot-build-lines`):
/// `last N` (the previous successful build) and `full N` (the last one that started from an
/// empty build directory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    pub last: Option<u64>,
    pub full: Option<u64>,
}

impl History {
    /// Reads the file's text; anything it does not understand is ignored (the build directory
    /// is writable by the sandboxed build, so this is untrusted text).
    pub fn parse(text: &str) -> History {
        let mut h = History::default();
        for l in text.lines().take(8) {
            let mut w = l.split_whitespace();
            let (Some(k), Some(v), None) = (w.next(), w.next(), w.next()) else { continue };
            let Ok(n) = v.parse::<u64>() else { continue };
            if n == 0 || n > 10_000_000 {
                continue;
            }
            match k {
                "last" => h.last = Some(n),
                "full" => h.full = Some(n),
                _ => {}
            }
        }
        h
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for (k, v) in [("last", self.last), ("full", self.full)] {
            if let Some(n) = v {
                s += &format!("{k} {n}\n");
            }
        }
        s
    }

    /// The expected total of the next build: the last full build's when the build directory
    /// holds no kernel yet (else a typical total for the arch), the previous build's otherwise.
    pub fn expected(&self, empty_build_dir: bool, arch: crate::Arch) -> Option<Expected> {
        if empty_build_dir {
            Some(match self.full {
                Some(n) => Expected { total: n, basis: Basis::Previous },
                None => Expected { total: typical_cold_total(arch), basis: Basis::Typical },
            })
        } else {
            self.last.map(|n| Expected { total: n, basis: Basis::Previous })
        }
    }

    /// After a successful build of `steps` steps.
    pub fn record(&mut self, steps: u64, was_empty: bool) {
        self.last = Some(steps);
        if was_empty {
            self.full = Some(steps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Arch;

    /// A complete real log of kbot's x86_64 base build after its configuration changed
    /// (most of the kernel rebuilt, with Rust shadow checks), and of the incremental build
    /// of the next patch in the same build directory.
    const BIG: &str = include_str!("../testdata/kbuild-x86_64-reconfigured.log");
    const SMALL: &str = include_str!("../testdata/kbuild-x86_64-incremental.log");
    /// The first and last lines of a real arm64 build of the same kind.
    const ARM: &str = include_str!("../testdata/kbuild-arm64-head-tail.log");

    #[test]
    fn step_lines_and_not_diagnostics() {
        assert_eq!(step("  CC      fs/notify/mark.o"), Some(("CC", "fs/notify/mark.o")));
        assert_eq!(step("  CC [M]  fs/ext4/inode.o"), Some(("CC [M]", "fs/ext4/inode.o")));
        assert_eq!(step("  RUSTC L rust/kernel.o"), Some(("RUSTC L", "rust/kernel.o")));
        assert_eq!(step("  SORTTAB vmlinux"), Some(("SORTTAB", "vmlinux")));
        assert_eq!(step("  GEN     Makefile"), Some(("GEN", "Makefile")));
        assert_eq!(step("  HOSTCC  scripts/basic/fixdep"), Some(("HOSTCC", "scripts/basic/fixdep")));
        for not in [
            "  530 |         foo();",
            "  --> /mnt/kbot/src/fs/notify/kbot_rules.rs:21:1",
            "  = note: requested on the command line with `-W unreachable-pub`",
            "make[1]: Entering directory '/mnt/kbot/out'",
            "Kernel: arch/x86/boot/bzImage is ready  (#15)",
            "  Compiling foo",
            "  CC",
            "   |",
        ] {
            assert_eq!(step(not), None, "{not:?}");
        }
    }

    #[test]
    fn counts_the_recorded_logs() {
        assert_eq!(count_steps(BIG), 899);
        assert_eq!(count_steps(SMALL), 51);
        // The whole log's steps, of which the file keeps the first 300 and the last 60.
        assert_eq!(count_steps(ARM), 360);
    }

    /// The big build fed line by line against its own total (what its next identical build
    /// would expect), with time passing at a steady 0.5 s per log line.
    #[test]
    fn estimates_a_recorded_build_against_its_total() {
        let total = count_steps(BIG);
        let mut e = Estimator::new(Some(Expected { total, basis: Basis::Previous }))
            .strip_prefixes(["/mnt/kbot/src/".to_string()]);
        let lines: Vec<&str> = BIG.lines().collect();
        let mut seen = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            e.feed(l);
            seen.push(e.progress(Duration::from_millis(500 * (i as u64 + 1))));
        }
        // Early: steps counted, no time left yet.
        let p = &seen[9];
        assert_eq!(p.to_string(), "8/899 steps (0%), CALL scripts/checksyscalls.sh");
        // A quarter of the way through the log (line 252, 126 s): 250 steps, 126 s / 250 * 649
        // steps left = 327 s.
        let q = &seen[lines.len() / 4];
        assert_eq!((q.done, q.elapsed), (250, Duration::from_secs(126)));
        let left = q.left.unwrap().as_secs_f64();
        assert!((left - 126.0 / 250.0 * 649.0).abs() < 0.01, "{left}");
        assert_eq!(q.to_string(), "250/899 steps (27%), CC kernel/time/tick-sched.o, ~5 min left");
        // At a quarter, half and three quarters of the log the estimate falls, and stays within
        // 20% of the true time left (0.5 s per remaining log line; lines that are not steps,
        // rustc's warnings, make it rise for a while in between).
        let n = lines.len();
        let at = [n / 4, n / 2, 3 * n / 4].map(|i| {
            let est = seen[i].left.unwrap().as_secs_f64();
            let truth = 0.5 * (n - i - 1) as f64;
            assert!((est / truth - 1.0).abs() < 0.2, "line {i}: {est} s estimated, {truth} s true");
            est
        });
        assert!(at[0] > at[1] && at[1] > at[2], "{at:?}");
        let last = seen.last().unwrap();
        assert_eq!(last.fraction(), Some(1.0));
        assert_eq!(last.left, None);
        assert_eq!(last.to_string(), "899/899 steps (100%), BUILD arch/x86/boot/bzImage");
    }

    #[test]
    fn no_history_counts_and_overrun_drops_the_fraction() {
        let mut e = Estimator::new(None);
        SMALL.lines().for_each(|l| {
            e.feed(l);
        });
        assert_eq!(e.progress(Duration::from_secs(30)).to_string(), "51 steps, BUILD arch/x86/boot/bzImage");
        // The big build after a small one: past the small total, only counts.
        let mut e = Estimator::new(Some(Expected { total: 51, basis: Basis::Previous }));
        BIG.lines().take(200).for_each(|l| {
            e.feed(l);
        });
        let p = e.progress(Duration::from_secs(60));
        assert_eq!((p.fraction(), p.left, p.overrun), (None, None, Some(51)));
        assert!(p.to_string().starts_with(&format!("{} steps (more than the 51 expected), CC ", p.done)));
    }

    #[test]
    fn typical_cold_total_is_labelled_a_guess() {
        let h = History::default();
        let exp = h.expected(true, Arch::Arm64);
        assert_eq!(exp, Some(Expected { total: 1200, basis: Basis::Typical }));
        let mut e = Estimator::new(exp);
        ARM.lines().take(150).for_each(|l| {
            e.feed(l);
        });
        // 148 steps in 100 s: 100 / 148 * 1052 = 711 s left.
        let s = e.progress(Duration::from_secs(100)).to_string();
        assert_eq!(s, "148/~1200 steps (12%, typical cold build), CC kernel/printk/printk_safe.o, ~12 min left");
        // No history and a kernel already built: nothing to expect.
        assert_eq!(h.expected(false, Arch::X86_64), None);
    }

    #[test]
    fn history_round_trips_and_ignores_junk() {
        let mut h = History::default();
        h.record(899, true);
        h.record(51, false);
        assert_eq!(h.render(), "last 51\nfull 899\n");
        assert_eq!(History::parse(&h.render()), h);
        assert_eq!(h.expected(false, Arch::X86_64), Some(Expected { total: 51, basis: Basis::Previous }));
        assert_eq!(h.expected(true, Arch::X86_64), Some(Expected { total: 899, basis: Basis::Previous }));
        let junk = History::parse("last -3\nfull 0\nlast 1 2\nnope 5\nlast 99999999999\n\u{0}\n");
        assert_eq!(junk, History::default());
    }

    #[test]
    fn eta_rounds() {
        assert_eq!(eta(Duration::from_secs(0)), "~10 s");
        assert_eq!(eta(Duration::from_secs(41)), "~50 s");
        assert_eq!(eta(Duration::from_secs(95)), "~2 min");
        assert_eq!(eta(Duration::from_secs(250)), "~4 min");
    }
}
