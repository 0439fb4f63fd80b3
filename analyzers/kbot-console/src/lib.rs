//! Reads a test VM's serial console: the agent's KTAP results, kernel splats (a table of
//! oops formats, in the manner of syzkaller's `pkg/report`), and the stacks of blocked tasks
//! that the agent asks for with sysrq-w when it sees a hang.

use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;

pub use kbot_report::{Outcome, SplatKind};

impl From<&Splat> for kbot_report::SplatInfo {
    fn from(s: &Splat) -> Self {
        kbot_report::SplatInfo { kind: s.kind, title: s.title.clone(), excerpt: s.excerpt.clone() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestLine {
    pub number: usize,
    pub name: String,
    pub outcome: Outcome,
    /// The agent's diagnostic for this test (the `# name: ...` line before the result).
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Splat {
    pub kind: SplatKind,
    /// A short stable title, e.g. `WARNING in fsnotify_destroy_mark`.
    pub title: String,
    /// 1-based line in the console log.
    pub line: usize,
    /// The splat's lines, timestamps removed, at most [`EXCERPT_LINES`].
    pub excerpt: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockedTask {
    pub task: String,
    pub pid: u32,
    pub frames: Vec<String>,
}

/// A record of kbot's in-kernel shadow checks (the reference core's rules, online).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowViolation {
    pub rule: String,
    pub pid: u32,
    /// The task's last hooks, oldest first.
    pub hooks: Vec<String>,
    /// The stack printed with it (function names).
    pub frames: Vec<String>,
    pub line: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Console {
    /// `KTAP version 1` seen: the agent started.
    pub started: bool,
    pub plan: Option<usize>,
    pub tests: Vec<TestLine>,
    /// The agent's closing line seen: it ran to the end.
    pub done: bool,
    pub splats: Vec<Splat>,
    pub blocked: Vec<BlockedTask>,
    /// The agent's header line (version, arch, kernel release).
    pub agent: Option<String>,
    /// The kernel has kbot's shadow checks built in (`kbot-shadow: active`).
    pub shadow: bool,
    pub violations: Vec<ShadowViolation>,
}

pub const EXCERPT_LINES: usize = 40;

/// `[    1.234567]` and an optional `[    T1]` caller id.
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\[\s*\d+\.\d+\]\s?(\[\s*[TC]\d+\]\s?)?").unwrap());
static RESULT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(not )?ok (\d+) (\S+)(?:\s+#\s*(SKIP|TIMEOUT)\b\s*(.*))?$").unwrap());
static PLAN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^1\.\.(\d+)$").unwrap());
static FRAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:\[<[0-9a-f]+>\]\s*)?(?:\? )?([A-Za-z_][A-Za-z0-9_.]*)\+0x[0-9a-f]+/0x[0-9a-f]+").unwrap()
});
static SHADOW: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^kbot-shadow: VIOLATION rule=(\S+) pid=(\d+) hooks=(\S*)").unwrap());
static TASK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^task:(\S+)\s+state:\S+.*\bpid:\s*(\d+)").unwrap());

/// How a title is made from the first line's captures and the splat's stack.
#[derive(Clone, Copy)]
enum Title {
    /// The first line as it is.
    Line,
    /// `<prefix> in <function>`: capture 1 is the function.
    InCapture(&'static str),
    /// `<prefix> in <function>` where the function is the first interesting stack frame.
    InStack(&'static str),
}

struct Rule {
    kind: SplatKind,
    re: Regex,
    title: Title,
}

/// The splat table: first match wins, so specific formats come before general ones.
static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let r = |kind, pat: &str, title| Rule { kind, re: Regex::new(pat).unwrap(), title };
    vec![
        r(
            SplatKind::HungTask,
            r"^INFO: task \S+:\d+ blocked for more than \d+ seconds",
            Title::InStack("INFO: task hung"),
        ),
        r(
            SplatKind::RcuStall,
            r"^rcu: INFO: \S+ (self-)?detected stalls? on CPUs?/tasks",
            Title::InStack("INFO: rcu detected stall"),
        ),
        r(SplatKind::RcuStall, r"^INFO: rcu_\S+ (self-)?detected stalls?", Title::InStack("INFO: rcu detected stall")),
        r(
            SplatKind::SoftLockup,
            r"^watchdog: BUG: soft lockup - CPU#\d+ stuck for",
            Title::InStack("BUG: soft lockup"),
        ),
        r(
            SplatKind::Lockdep,
            r"^WARNING: possible (circular|recursive) locking dependency detected",
            Title::InStack("possible deadlock"),
        ),
        r(SplatKind::Lockdep, r"^WARNING: inconsistent lock state", Title::InStack("inconsistent lock state")),
        r(
            SplatKind::Lockdep,
            r"^BUG: sleeping function called from invalid context",
            Title::InStack("BUG: sleeping function called from invalid context"),
        ),
        r(SplatKind::Kasan, r"^BUG: KASAN: ", Title::Line),
        r(SplatKind::Ubsan, r"^UBSAN: ", Title::Line),
        r(SplatKind::Bug, r"^kernel BUG at (\S+)!", Title::Line),
        r(
            SplatKind::Oops,
            r"^BUG: kernel NULL pointer dereference",
            Title::InStack("BUG: kernel NULL pointer dereference"),
        ),
        r(SplatKind::Oops, r"^BUG: unable to handle page fault", Title::InStack("BUG: unable to handle page fault")),
        r(
            SplatKind::Oops,
            r"^Unable to handle kernel NULL pointer dereference",
            Title::InStack("Unable to handle kernel NULL pointer dereference"),
        ),
        r(
            SplatKind::Oops,
            r"^Unable to handle kernel paging request",
            Title::InStack("Unable to handle kernel paging request"),
        ),
        r(SplatKind::Oops, r"^(Oops|general protection fault)", Title::InStack("general protection fault")),
        r(SplatKind::Bug, r"^BUG: ", Title::Line),
        r(SplatKind::Warning, r"^WARNING: CPU: \d+ PID: \d+ at \S+ ([A-Za-z0-9_.]+)\+", Title::InCapture("WARNING")),
        r(SplatKind::Warning, r"^WARNING: ", Title::Line),
        r(SplatKind::Panic, r"^Kernel panic - not syncing: ", Title::Line),
    ]
});

/// Frames that say how a task waits, not where: skipped when naming a stall.
const WAIT_FRAMES: &[&str] = &[
    "__schedule",
    "schedule",
    "schedule_timeout",
    "schedule_preempt_disabled",
    "io_schedule",
    "__switch_to",
    "__wait_for_common",
    "wait_for_common",
    "wait_for_completion",
    "wait_for_completion_killable",
    "wait_for_completion_state",
    "do_wait_for_common",
    "__flush_work",
    "flush_work",
    "ret_from_fork",
    "ret_from_fork_asm",
    "kthread",
    "worker_thread",
    "process_one_work",
    "dump_stack",
    "dump_stack_lvl",
    "show_stack",
    "__warn",
    "report_bug",
    "handle_bug",
    "exc_invalid_op",
    "asm_exc_invalid_op",
    "entry_SYSCALL_64_after_hwframe",
    "do_syscall_64",
    "el0t_64_sync",
    "el0t_64_sync_handler",
    "el0_svc",
    "do_el0_svc",
    "invoke_syscall",
    "el0_svc_common",
];

fn strip_timestamp(l: &str) -> &str {
    let l = match TIMESTAMP.find(l) {
        Some(m) => &l[m.end()..],
        None => l,
    };
    // Rust's pr_* macros prefix the module name.
    l.strip_prefix("kbot_shadow: ").unwrap_or(l)
}

/// Function names of the stack frames in `lines`, in order. Frames the unwinder marks
/// unreliable (`? name`) are left out when there are reliable ones.
pub fn frames<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let all: Vec<(bool, String)> = lines
        .into_iter()
        .filter_map(|l| FRAME.captures(l).map(|c| (l.trim_start().starts_with("? "), c[1].to_string())))
        .collect();
    let any_reliable = all.iter().any(|(unreliable, _)| !unreliable);
    all.into_iter().filter(|(u, _)| !any_reliable || !u).map(|(_, f)| f).collect()
}

/// The first frame that is not scheduler or wait plumbing.
pub fn interesting_frame(frames: &[String]) -> Option<&str> {
    frames.iter().map(String::as_str).find(|f| !WAIT_FRAMES.contains(f))
}

/// Where a splat ends: the kernel's end marker, a blank line, another splat, or the agent.
fn splat_end(lines: &[&str], start: usize) -> usize {
    let mut i = start + 1;
    while i < lines.len() && i - start < EXCERPT_LINES {
        let l = lines[i];
        if l.starts_with("---[ end") {
            return i + 1;
        }
        if l.trim().is_empty() || RULES.iter().any(|r| r.re.is_match(l)) || l.starts_with("KTAP") || RESULT.is_match(l)
        {
            return i;
        }
        i += 1;
    }
    i
}

pub fn parse(log: &str) -> Console {
    let lines: Vec<&str> = log.lines().map(|l| strip_timestamp(l.trim_end_matches('\r'))).collect();
    let mut c = Console::default();
    let mut pending_detail: Option<(String, String)> = None;
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l == "KTAP version 1" {
            c.started = true;
        } else if let Some(m) = PLAN.captures(l) {
            c.plan = m[1].parse().ok();
        } else if let Some(rest) = l.strip_prefix("# kbot-agent ") {
            if rest.starts_with("done") {
                c.done = true;
            } else if c.agent.is_none() {
                c.agent = Some(rest.to_string());
            }
        } else if let Some(m) = RESULT.captures(l) {
            let name = m[3].to_string();
            let outcome = match (m.get(1).is_some(), m.get(4).map(|d| d.as_str())) {
                (_, Some("SKIP")) => Outcome::Skip,
                (_, Some("TIMEOUT")) => Outcome::Hang,
                (true, _) => Outcome::Fail,
                (false, _) => Outcome::Pass,
            };
            let detail = match pending_detail.take() {
                Some((n, d)) if n == name => d,
                _ => m.get(5).map(|d| d.as_str().to_string()).unwrap_or_default(),
            };
            c.tests.push(TestLine { number: m[2].parse().unwrap_or(0), name, outcome, detail });
        } else if let Some(d) = l.strip_prefix("# ") {
            if let Some((name, detail)) = d.split_once(": ") {
                if !name.contains(' ') {
                    pending_detail = Some((name.to_string(), detail.to_string()));
                }
            }
        } else if l.starts_with("kbot-shadow: active") {
            c.shadow = true;
        } else if let Some(m) = SHADOW.captures(l) {
            // The stack follows: CPU/Hardware/Call Trace lines, then frames.
            let end = (i + 1..lines.len().min(i + EXCERPT_LINES))
                .find(|&j| {
                    lines[j].trim().is_empty()
                        || lines[j].starts_with("kbot-shadow:")
                        || RESULT.is_match(lines[j])
                        || lines[j].starts_with("# ")
                })
                .unwrap_or(lines.len().min(i + EXCERPT_LINES));
            let frames = frames(lines[i + 1..end].iter().copied())
                .into_iter()
                .filter(|f| {
                    !["dump_stack", "dump_stack_lvl", "dump_backtrace", "show_stack", "kbot_shadow_hook"]
                        .contains(&f.as_str())
                })
                .collect();
            c.violations.push(ShadowViolation {
                rule: m[1].to_string(),
                pid: m[2].parse().unwrap_or(0),
                hooks: m[3].split(',').filter(|h| !h.is_empty()).map(str::to_string).collect(),
                frames,
                line: i + 1,
            });
            i = end;
            continue;
        } else if let Some(m) = TASK.captures(l) {
            // A few header lines (Workqueue:, ...) may come before the call trace.
            let trace = (i + 1..lines.len().min(i + 6))
                .find(|&j| lines[j].starts_with("Call Trace") || lines[j].starts_with("Call trace"))
                .map_or(i + 1, |j| j + 1);
            let end = (trace..lines.len())
                .find(|&j| !(FRAME.is_match(lines[j]) || lines[j].trim_start().starts_with('<')))
                .unwrap_or(lines.len());
            c.blocked.push(BlockedTask {
                task: m[1].to_string(),
                pid: m[2].parse().unwrap_or(0),
                frames: frames(lines[trace..end].iter().copied()),
            });
            i = end;
            continue;
        } else if let Some(rule) = RULES.iter().find(|r| r.re.is_match(l)) {
            let end = splat_end(&lines, i);
            let excerpt: Vec<String> = lines[i..end].iter().map(|s| s.to_string()).collect();
            let title = match rule.title {
                Title::Line => l.trim().to_string(),
                Title::InCapture(p) => {
                    let f = rule.re.captures(l).and_then(|m| m.get(1)).map(|m| m.as_str().to_string());
                    f.map_or_else(|| l.to_string(), |f| format!("{p} in {f}"))
                }
                Title::InStack(p) => {
                    let fr = frames(excerpt.iter().map(String::as_str));
                    interesting_frame(&fr).map_or_else(|| p.to_string(), |f| format!("{p} in {f}"))
                }
            };
            c.splats.push(Splat { kind: rule.kind, title, line: i + 1, excerpt });
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    c
}

impl Console {
    pub fn test(&self, name: &str) -> Option<&TestLine> {
        self.tests.iter().find(|t| t.name == name)
    }

    /// Blocked tasks whose stack passes through one of `funcs`.
    pub fn blocked_in<'a>(&'a self, funcs: &'a [&str]) -> impl Iterator<Item = &'a BlockedTask> + 'a {
        self.blocked.iter().filter(move |b| b.frames.iter().any(|f| funcs.contains(&f.as_str())))
    }

    /// A stable plain-text account, used by the table tests in `testdata/`.
    pub fn describe(&self) -> String {
        let mut s = format!("started: {}\nplan: {:?}\ndone: {}\n", self.started, self.plan, self.done);
        for t in &self.tests {
            s += &format!("test {} {}: {} | {}\n", t.number, t.name, t.outcome.as_str(), t.detail);
        }
        for p in &self.splats {
            s += &format!("splat {} at line {}: {}\n", p.kind, p.line, p.title);
        }
        for b in &self.blocked {
            s += &format!("blocked {}:{}: {}\n", b.task, b.pid, b.frames.join(" < "));
        }
        if self.shadow {
            s += "shadow: active\n";
        }
        for v in &self.violations {
            s += &format!(
                "violation {} pid {} hooks {} at line {}: {}\n",
                v.rule,
                v.pid,
                v.hooks.join(","),
                v.line,
                v.frames.join(" < ")
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ktap_lines() {
        let c = parse("KTAP version 1\n1..3\n# a: fine (time_ms=1)\nok 1 a\nnot ok 2 b\nnot ok 3 c # TIMEOUT blocked > 3000 ms\nok 4 d # SKIP no fanotify\n# kbot-agent done in 5 ms\n");
        assert!(c.started && c.done);
        assert_eq!(c.plan, Some(3));
        let got: Vec<_> = c.tests.iter().map(|t| (t.name.as_str(), t.outcome)).collect();
        assert_eq!(got, [("a", Outcome::Pass), ("b", Outcome::Fail), ("c", Outcome::Hang), ("d", Outcome::Skip)]);
        assert_eq!(c.tests[0].detail, "fine (time_ms=1)");
        assert_eq!(c.tests[2].detail, "blocked > 3000 ms");
    }

    #[test]
    fn interleaved_timestamps_and_cr() {
        let c = parse(
            "[    0.000000] Linux version 6.12\r\nKTAP version 1\r\n[    1.1] random: crng init done\r\nok 1 a\r\n",
        );
        assert_eq!(c.tests.len(), 1);
        assert_eq!(c.tests[0].outcome, Outcome::Pass);
    }

    /// Each `testdata/NAME.log` is parsed and compared with `testdata/NAME.txt`
    /// (regenerate after a reviewed change with `KBOT_BLESS=1 cargo test`).
    #[test]
    fn testdata_table() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let n = kbot_testdata::run(&dir, "log", |data| parse(&String::from_utf8_lossy(data)).describe());
        assert!(n >= 4, "testdata cases missing");
    }
}
