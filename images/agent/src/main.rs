//! kbot's guest agent. As PID 1 of the test VM it mounts the pseudo filesystems, runs the
//! fanotify hang tests and prints the results in KTAP on the console, then reboots (QEMU runs
//! with -no-reboot, so that ends the VM). Run as an ordinary process it runs the same tests in
//! a temporary directory, which is handy on a development host.

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

/// `kbot.only=a,b` and `kbot.watchdog_ms=N` on the kernel command line.
struct Params {
    only: Option<Vec<String>>,
    watchdog_ms: u64,
}

fn params(cmdline: &str) -> Params {
    let mut p = Params {
        only: None,
        watchdog_ms: 3000,
    };
    for word in cmdline.split_whitespace() {
        if let Some(v) = word.strip_prefix("kbot.only=") {
            p.only = Some(
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            );
        } else if let Some(v) = word.strip_prefix("kbot.watchdog_ms=") {
            p.watchdog_ms = v.parse().unwrap_or(p.watchdog_ms);
        }
    }
    p
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
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let p = params(if pid1 { &cmdline } else { "" });
    let ctx: &'static Ctx = Box::leak(Box::new(Ctx {
        dir: dir.clone(),
        watchdog: Duration::from_millis(p.watchdog_ms),
        release: Duration::from_millis(p.watchdog_ms * 2),
        sysrq: pid1,
    }));
    let selected: Vec<_> = TESTS
        .iter()
        .filter(|(name, _)| p.only.as_ref().is_none_or(|o| o.iter().any(|n| n == name)))
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
    emit(&format!("1..{}", selected.len()));
    let limit = ctx.watchdog * 4 + ctx.release * 2;
    for (i, (name, f)) in selected.iter().enumerate() {
        let (o, took) = tests::run_guarded(ctx, *f, limit);
        emit(&format!(
            "# {name}: {} (time_ms={})",
            o.detail,
            took.as_millis()
        ));
        let n = i + 1;
        let line = match o.verdict {
            Verdict::Pass => format!("ok {n} {name}"),
            Verdict::Skip => format!("ok {n} {name} # SKIP {}", o.detail),
            Verdict::Fail => format!("not ok {n} {name}"),
            Verdict::Hang => format!("not ok {n} {name} # TIMEOUT {}", o.detail),
        };
        emit(&line);
    }
    emit(&format!(
        "# kbot-agent done in {} ms",
        start.elapsed().as_millis()
    ));
    if pid1 {
        sys::reboot();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
