//! kbot's guest agent. As PID 1 of the test VM it mounts the pseudo filesystems, runs the
//! fanotify hang tests and prints the results in KTAP on the console, then reboots (QEMU runs
//! with -no-reboot, so that ends the VM). Run as an ordinary process it runs the same tests in
//! a temporary directory, which is handy on a development host.

mod ltp;
mod scenario;
mod sys;
mod tests;

use std::time::{Duration, Instant};
use tests::{Ctx, Verdict, TESTS};

/// Writes one whole line with a single write(2), so kernel messages on the same console
/// cannot land in the middle of it.
fn emit(line: &str) {
    let mut buf = String::with_capacity(line.len() + 1);
    for c in line.chars() {
        // One result per line, whatever a detail string holds.
        buf.push(if c == '\n' || c == '\r' { ' ' } else { c });
    }
    buf.push('\n');
    // SAFETY: writing a valid buffer to stdout.
    unsafe { libc::write(1, buf.as_ptr().cast(), buf.len()) };
}

/// `kbot.only=a,b`, `kbot.watchdog_ms=N`, `kbot.seed=N` and `kbot.random=N` on the kernel
/// command line.
struct Params {
    only: Option<Vec<String>>,
    watchdog_ms: u64,
    seed: u64,
    random: u32,
    /// Time for the random scenarios; the ones past it are skipped (and say so).
    budget_ms: u64,
    /// Time to shrink one diverging scenario; 0: report the divergence as it came (bisection
    /// steps only need the verdict).
    shrink_ms: u64,
    /// Time for LTP's tests in this boot; the ones past it are skipped (and say so).
    ltp_budget_ms: u64,
    /// `kbot.ltp=off`: kbot's own tests only, even with LTP in the initramfs.
    ltp_off: bool,
    /// `kbot.scenarios_only=1`: the random scenarios alone (no tests, corpus or LTP): what
    /// `kbot scenario replay --random N` boots for.
    scenarios_only: bool,
    ltp: ltp::Params,
}

fn params(cmdline: &str) -> Params {
    let mut p = Params {
        only: None,
        watchdog_ms: 3000,
        seed: 1,
        random: 8,
        budget_ms: 60_000,
        shrink_ms: 15_000,
        ltp_budget_ms: 600_000,
        ltp_off: false,
        scenarios_only: false,
        ltp: ltp::Params {
            hang_ms: 5000,
            timeout_mul: "1".into(),
            runtime_mul: "1".into(),
            test_limit_ms: 300_000,
            fs: None,
            repeat: 1,
        },
    };
    for word in cmdline.split_whitespace() {
        if let Some(v) = word.strip_prefix("kbot.only=") {
            p.only = Some(v.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect());
        } else if let Some(v) = word.strip_prefix("kbot.watchdog_ms=") {
            p.watchdog_ms = v.parse().unwrap_or(p.watchdog_ms);
        } else if let Some(v) = word.strip_prefix("kbot.seed=") {
            p.seed = v.parse().unwrap_or(p.seed);
        } else if let Some(v) = word.strip_prefix("kbot.random=") {
            p.random = v.parse().unwrap_or(p.random);
        } else if let Some(v) = word.strip_prefix("kbot.shrink_ms=") {
            p.shrink_ms = v.parse().unwrap_or(p.shrink_ms);
        } else if let Some(v) = word.strip_prefix("kbot.budget_ms=") {
            p.budget_ms = v.parse().unwrap_or(p.budget_ms);
        } else if word == "kbot.ltp=off" {
            p.ltp_off = true;
        } else if word == "kbot.scenarios_only=1" {
            p.scenarios_only = true;
            p.ltp_off = true;
        } else if let Some(v) = word.strip_prefix("kbot.ltp_budget_ms=") {
            p.ltp_budget_ms = v.parse().unwrap_or(p.ltp_budget_ms);
        } else if let Some(v) = word.strip_prefix("kbot.ltp_hang_ms=") {
            p.ltp.hang_ms = v.parse().unwrap_or(p.ltp.hang_ms);
        } else if let Some(v) = word.strip_prefix("kbot.ltp_repeat=") {
            // The runner asks for up to 100, twice that for the base's control.
            p.ltp.repeat = v.parse().unwrap_or(p.ltp.repeat).clamp(1, 200);
        } else if let Some(v) = word.strip_prefix("kbot.ltp_limit_ms=") {
            p.ltp.test_limit_ms = v.parse().unwrap_or(p.ltp.test_limit_ms);
        } else if let Some(v) = word.strip_prefix("kbot.ltp_timeout_mul=") {
            if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.') {
                p.ltp.timeout_mul = v.to_string();
            }
        } else if let Some(v) = word.strip_prefix("kbot.ltp_fs=") {
            let fs: Vec<String> = v
                .split(',')
                .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric()))
                .map(str::to_string)
                .collect();
            p.ltp.fs = Some(fs).filter(|f| !f.is_empty());
        } else if let Some(v) = word.strip_prefix("kbot.ltp_runtime_mul=") {
            if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.') {
                p.ltp.runtime_mul = v.to_string();
            }
        }
    }
    p
}

/// The scenarios of this boot: the corpus, `random` scenarios from `seed`, scenarios from
/// `/scenarios.txt` (`name: steps` per line, for replays), and any named in `only`.
fn scenarios(p: &Params) -> Vec<kbot_scenario::Scenario> {
    let mut v = if p.scenarios_only { Vec::new() } else { kbot_scenario::corpus() };
    v.extend((0..p.random).map(|i| kbot_scenario::random(p.seed, i)));
    if let Ok(text) = std::fs::read_to_string("/scenarios.txt") {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (name, steps) = line.split_once(':').unwrap_or(("scenario/file", line));
            match kbot_scenario::parse(steps) {
                Ok(steps) => v.push(kbot_scenario::Scenario { name: name.trim().to_string(), steps }),
                Err(e) => emit(&format!("# bad scenario in /scenarios.txt: {e}")),
            }
        }
    }
    // A random scenario named in `only` runs even when its index is past `random`.
    for name in p.only.iter().flatten() {
        if !v.iter().any(|s| &s.name == name) {
            v.extend(kbot_scenario::from_name(name));
        }
    }
    v
}

const QUEUE_SYSCTLS: [&str; 2] = ["/proc/sys/fs/inotify/max_queued_events", "/proc/sys/fs/fanotify/max_queued_events"];

fn queue_limits() -> [String; 2] {
    QUEUE_SYSCTLS.map(|p| std::fs::read_to_string(p).unwrap_or_default().trim().to_string())
}

fn set_queue_limits(v: &[String; 2]) {
    for (p, v) in QUEUE_SYSCTLS.iter().zip(v) {
        if !v.is_empty() {
            let _ = std::fs::write(p, v);
        }
    }
}

/// The queue limit the kernel applies to new groups now (the smaller of the two sysctls).
fn queue_limit(_pid1: bool) -> usize {
    queue_limits().iter().filter_map(|v| v.parse().ok()).min().unwrap_or(16384)
}

fn main() {
    let start = Instant::now();
    let pid1 = std::process::id() == 1;
    let dir = if pid1 {
        let _ = sys::mount("proc", "/proc", "proc");
        let _ = sys::mount("sysfs", "/sys", "sysfs");
        let _ = sys::mount("tmpfs", "/tmp", "tmpfs");
        // A long hang-task timeout: the tests keep events pending on purpose for seconds.
        let _ = sys::write_file("/proc/sys/kernel/hung_task_timeout_secs", "20");
        "/tmp/kbot".to_string()
    } else {
        format!("/tmp/kbot-agent-{}", std::process::id())
    };
    let _ = std::fs::create_dir_all(&dir);
    // On a host, the same words can come from the environment (KBOT_AGENT_ARGS).
    let cmdline = if pid1 {
        std::fs::read_to_string("/proc/cmdline").unwrap_or_default()
    } else {
        std::env::var("KBOT_AGENT_ARGS").unwrap_or_default()
    };
    let p = params(&cmdline);
    let ctx: &'static Ctx = Box::leak(Box::new(Ctx {
        dir: dir.clone(),
        watchdog: Duration::from_millis(p.watchdog_ms),
        release: Duration::from_millis(p.watchdog_ms * 2),
        sysrq: pid1,
    }));
    let wanted = |name: &str| p.only.as_ref().is_none_or(|o| o.iter().any(|n| n == name));
    let selected: Vec<_> = TESTS.iter().filter(|(name, _)| wanted(name) && !p.scenarios_only).collect();
    let scens: Vec<_> = scenarios(&p).into_iter().filter(|s| wanted(&s.name)).collect();
    let ltp_tests: Vec<_> = if p.ltp_off { Vec::new() } else { ltp::tests() }
        .into_iter()
        .filter(|t| wanted(&format!("ltp/{}", t.name)))
        .collect();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    emit("KTAP version 1");
    emit(&format!(
        "# kbot-agent {} arch={} kernel={} watchdog_ms={}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        release.trim(),
        p.watchdog_ms
    ));
    emit(&format!("# kbot-agent scenarios seed={} random={}", p.seed, p.random));
    if !ltp_tests.is_empty() {
        emit(&format!(
            "# kbot-agent ltp tests={} hang_ms={} budget_ms={} timeout_mul={} runtime_mul={} mkfs={} repeat={}",
            ltp_tests.len(),
            p.ltp.hang_ms,
            p.ltp_budget_ms,
            p.ltp.timeout_mul,
            p.ltp.runtime_mul,
            p.ltp.fs.as_ref().map(|f| f.join(",")).unwrap_or_else(|| "all".into()),
            p.ltp.repeat
        ));
    }
    emit(&format!("1..{}", selected.len() + scens.len() + ltp_tests.len()));
    let limit = ctx.watchdog * 4 + ctx.release * 2;
    let mut i = 0;
    while i < selected.len() {
        // The seed's two hang tests share one pending event and one watchdog when both run.
        let together = selected[i..].iter().map(|(name, _)| *name).take(2).eq(tests::TOGETHER);
        let (batch, (outcomes, took)) = if together {
            (&selected[i..i + 2], tests::run_guarded(ctx, tests::close_tests_together, 2, limit))
        } else {
            let f = selected[i].1;
            (&selected[i..i + 1], tests::run_guarded(ctx, move |c| vec![f(c)], 1, limit))
        };
        for ((name, _), o) in batch.iter().zip(outcomes) {
            i += 1;
            emit(&format!("# {name}: {} (time_ms={})", o.detail, took.as_millis()));
            let n = i;
            emit(&match o.verdict {
                Verdict::Pass => format!("ok {n} {name}"),
                Verdict::Skip => format!("ok {n} {name} # SKIP {}", o.detail),
                Verdict::Fail => format!("not ok {n} {name}"),
                Verdict::Hang => format!("not ok {n} {name} # TIMEOUT {}", o.detail),
            });
        }
    }
    // Differential checks against refcore: a divergence is a failed test of its own. The
    // groups' queues hold QUEUE_LIMIT events while they run (overflow is part of the model);
    // the old limits come back for LTP.
    let saved_limits = queue_limits();
    if pid1 {
        set_queue_limits(&[
            kbot_scenario::kbot_refcore::QUEUE_LIMIT.to_string(),
            kbot_scenario::kbot_refcore::QUEUE_LIMIT.to_string(),
        ]);
    }
    let timing = scenario::Timing {
        prompt: Duration::from_millis(1500),
        settle: Duration::from_millis(200),
        dump: pid1,
        shrink_time: Duration::from_millis(p.shrink_ms),
        queue_limit: queue_limit(pid1),
        own_fs: pid1,
    };
    let mut random_started: Option<Instant> = None;
    for (j, sc) in scens.iter().enumerate() {
        let n = selected.len() + j + 1;
        let t = Instant::now();
        let random = sc.name.starts_with("scenario/random-");
        if random && random_started.get_or_insert_with(Instant::now).elapsed() > Duration::from_millis(p.budget_ms) {
            emit(&format!("ok {n} {} # SKIP time budget of {} ms for random scenarios spent", sc.name, p.budget_ms));
            continue;
        }
        // Random scenarios are shrunk for the evidence; the corpus's are short already and
        // only replayed once (shrinking one that stalls costs ~10 s of the tip's boot).
        let budget = if random { 40 } else { 0 };
        let (ok, detail) = match scenario::check(sc, &format!("{dir}/sc"), &timing, budget) {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        emit(&format!("# {}: {detail} (time_ms={})", sc.name, t.elapsed().as_millis()));
        emit(&format!("{}ok {n} {}", if ok { "" } else { "not " }, sc.name));
    }
    if pid1 {
        set_queue_limits(&saved_limits);
    }
    let done = random_started.map(|s| s.elapsed());
    let nrandom = scens.iter().filter(|s| s.name.starts_with("scenario/random-")).count();
    if let Some(d) = done.filter(|_| nrandom > 0) {
        emit(&format!(
            "# kbot-agent random scenarios: {nrandom} in {} ms ({:.1} scenarios/s)",
            d.as_millis(),
            nrandom as f64 / d.as_secs_f64().max(0.001)
        ));
    }
    // LTP's tests last: they are the slow part, and kbot's own verdicts come first.
    if !ltp_tests.is_empty() && pid1 {
        ltp::prepare_guest(p.ltp.fs.as_deref());
    }
    let ltp_started = Instant::now();
    for (j, t) in ltp_tests.iter().enumerate() {
        let n = selected.len() + scens.len() + j + 1;
        let name = format!("ltp/{}", t.name);
        if ltp_started.elapsed() > Duration::from_millis(p.ltp_budget_ms) {
            emit(&format!("ok {n} {name} # SKIP time budget of {} ms for LTP spent", p.ltp_budget_ms));
            continue;
        }
        let dump = || ctx.dump_blocked_tasks();
        let out = |test: &str, line: &str| emit(&format!("# ltp/{test}| {line}"));
        let mut r = ltp::run(t, &p.ltp, false, &dump, out);
        let mut j = kbot_ltp::judge(&r.output, &r.end);
        let every_fs = p.ltp.fs.is_some() && kbot_ltp::needs_another_fs(&r.output, j.verdict);
        if every_fs {
            // Leaving filesystems out saves time but must not change a verdict.
            emit(&format!("# {name}: wants a filesystem left out: again with every mkfs"));
            let first = r.took;
            r = ltp::run(t, &p.ltp, true, &dump, out);
            r.took += first;
            j = kbot_ltp::judge(&r.output, &r.end);
        }
        // A pass is run again when asked (bisection): the first failure or hang decides.
        let budget = Duration::from_millis(p.ltp_budget_ms);
        let first = j.verdict;
        let rep = ltp::repeat(
            (j, first, r.took),
            p.ltp.repeat,
            || ltp_started.elapsed() < budget,
            |k| {
                emit(&format!("# {name}: passed; run {k} of up to {}", p.ltp.repeat));
                let again = ltp::run(t, &p.ltp, every_fs, &dump, out);
                let ja = kbot_ltp::judge(&again.output, &again.end);
                if ja.verdict == kbot_ltp::Verdict::Skip {
                    emit(&format!("# {name}: run {k} skipped: no more repeats"));
                }
                let v = ja.verdict;
                (ja, v, again.took)
            },
        );
        let (j, runs, spent) = (rep.result, rep.runs, rep.spent);
        // The summary starts with the verdict word, which the result line already says.
        let why = j.summary.strip_prefix(&format!("{}: ", j.verdict.as_str())).unwrap_or(&j.summary);
        let why = match (runs, j.verdict) {
            (1, _) => why.to_string(),
            (_, kbot_ltp::Verdict::Pass) => format!("{why} in each of {runs} runs"),
            _ => format!("{why} (on run {runs}; the {} before passed)", runs - 1),
        };
        let why = why.as_str();
        emit(&format!("# {name}: {why} (time_ms={})", spent.as_millis()));
        emit(&match j.verdict {
            kbot_ltp::Verdict::Pass => format!("ok {n} {name}"),
            kbot_ltp::Verdict::Skip => format!("ok {n} {name} # SKIP {why}"),
            kbot_ltp::Verdict::Fail => format!("not ok {n} {name}"),
            kbot_ltp::Verdict::Hang => format!("not ok {n} {name} # TIMEOUT {why}"),
        });
    }
    emit(&format!("# kbot-agent done in {} ms", start.elapsed().as_millis()));
    if pid1 {
        sys::reboot();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
