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
    /// What the test itself printed (`# name| ...` lines; LTP's output), in order.
    pub output: Vec<String>,
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
    /// `<prefix> in <function>` where the function is the one that faulted: the `RIP:` (x86)
    /// or `pc :` (arm64) line's, or, when that is a generic helper (memcpy, a user-copy
    /// routine, a lock primitive), the first non-generic frame of the stack.
    AtPc(&'static str),
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
            Title::AtPc("BUG: kernel NULL pointer dereference"),
        ),
        r(
            SplatKind::Oops,
            r"^BUG: unable to handle (page fault|kernel paging request)",
            Title::AtPc("BUG: unable to handle page fault"),
        ),
        r(
            SplatKind::Oops,
            r"^Unable to handle kernel NULL pointer dereference",
            Title::AtPc("Unable to handle kernel NULL pointer dereference"),
        ),
        r(
            SplatKind::Oops,
            r"^Unable to handle kernel paging request",
            Title::AtPc("Unable to handle kernel paging request"),
        ),
        r(SplatKind::Oops, r"^(Oops: )?general protection fault", Title::AtPc("general protection fault")),
        r(SplatKind::Oops, r"^(Internal error: )?Oops", Title::AtPc("Oops")),
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

/// Frames that say nothing about the bug when a fault is named: helpers every caller uses
/// (string and memory routines, user copies, locks, sanitizer hooks), the fault's own
/// handling, and the plumbing that calls everything (initcalls, kthreads, syscall entry).
/// Besides these, any frame of [`WAIT_FRAMES`] is generic.
const GENERIC_FRAMES: &[&str] = &[
    "memcpy",
    "__memcpy",
    "memcpy_orig",
    "memmove",
    "__memmove",
    "memset",
    "__memset",
    "memset_orig",
    "memcmp",
    "__memcmp",
    "bcmp",
    "strlen",
    "strnlen",
    "strcmp",
    "strncmp",
    "strcpy",
    "strncpy",
    "strscpy",
    "strchr",
    "_copy_to_user",
    "_copy_from_user",
    "copy_user_generic",
    "copy_user_generic_string",
    "copy_user_enhanced_fast_string",
    "rep_movs_alternative",
    "__arch_copy_to_user",
    "__arch_copy_from_user",
    "_raw_spin_lock",
    "_raw_spin_lock_irq",
    "_raw_spin_lock_irqsave",
    "_raw_spin_lock_bh",
    "_raw_read_lock",
    "_raw_write_lock",
    "queued_spin_lock_slowpath",
    "native_queued_spin_lock_slowpath",
    "do_raw_spin_lock",
    "mutex_lock",
    "__mutex_lock",
    "down_read",
    "down_write",
    "refcount_warn_saturate",
    "kasan_report",
    "kasan_check_range",
    "check_memory_region",
    "asm_exc_page_fault",
    "exc_page_fault",
    "do_user_addr_fault",
    "handle_page_fault",
    "page_fault_oops",
    "kernelmode_fixup_or_oops",
    "__bad_area_nosemaphore",
    "bad_area_nosemaphore",
    "asm_exc_general_protection",
    "exc_general_protection",
    "die",
    "die_addr",
    "__die",
    "__die_body",
    "oops_end",
    "do_mem_abort",
    "do_translation_fault",
    "do_page_fault",
    "do_bad_area",
    "__do_kernel_fault",
    "die_kernel_fault",
    "el1_abort",
    "el1h_64_sync_handler",
    "el1h_64_sync",
    "do_one_initcall",
    "do_initcalls",
    "do_initcall_level",
    "do_basic_setup",
    "kernel_init_freeable",
    "kernel_init",
];

/// `RIP: 0010:func+0x31/0x1b0` (x86_64, also the old `IP: [<...>] func+...`) or
/// `pc : func+0x24/0x1a0` (arm64).
static PC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?:RIP: (?:[0-9a-f]{4}:)?|IP: (?:\[<[0-9a-f]+>\]\s*)?|pc : )([A-Za-z_][A-Za-z0-9_.]*)\+0x[0-9a-f]+/0x[0-9a-f]+")
        .unwrap()
});

fn is_generic(f: &str) -> bool {
    GENERIC_FRAMES.contains(&f)
        || WAIT_FRAMES.contains(&f)
        || f.starts_with("__x86_indirect_thunk")
        || f.starts_with("__asan_")
        || f.starts_with("__kasan_")
        || f.starts_with("__ubsan_")
        || f.starts_with("__sanitizer_")
        || f.starts_with("__put_user_")
        || f.starts_with("__get_user_")
}

/// The function a fault happened in: the first `RIP:`/`pc :` of the splat unless it is a
/// generic helper, else the first non-generic frame of its stack.
pub fn faulting_function(excerpt: &[String]) -> Option<String> {
    let pc = excerpt.iter().find_map(|l| PC.captures(l)).map(|c| c[1].to_string());
    if let Some(f) = pc.filter(|f| !is_generic(f)) {
        return Some(f);
    }
    frames(excerpt.iter().map(String::as_str)).into_iter().find(|f| !is_generic(f))
}

/// A console line without the kernel's `[    1.234567] ` timestamp.
pub fn strip_timestamp(l: &str) -> &str {
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

/// `Oops: 0002 [#1] SMP` (x86) and `Internal error: Oops: ...` (arm64): the line a fault's
/// report carries after its first line, not a splat of its own then.
static OOPS_LINE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(Internal error: )?Oops\b").unwrap());

/// What differs between two reports of the same bug: exit codes, addresses, line and column
/// numbers, pids, CPU numbers, durations. Each rule is (pattern, replacement).
static TITLE_NOISE: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"\s*\bexitcode=0x[0-9a-fA-F]+", ""),
        (r"\b0x[0-9a-fA-F]+\b", "ADDR"),
        (r"\b[0-9a-fA-F]{8,}\b", "ADDR"),
        (r"(\.[A-Za-z]{1,3}):\d+(:\d+)?\b", "$1"),
        (r"(?i)\b(pid|tgid|ppid)([:=]\s*|\s+)\d+\b", "${1}${2}N"),
        (r"\b(task \S+):\d+\b", "$1"),
        (r"\[(\S+):\d+\]", "[$1]"),
        (r"\bfor more than \d+ seconds\b", "for more than N seconds"),
        (r"\b(CPU#?|CPU: )\d+\b", "${1}N"),
        (r"\bfor \d+s\b", "for Ns"),
        (r"\s+", " "),
    ]
    .into_iter()
    .map(|(re, to)| (Regex::new(re).unwrap(), to))
    .collect()
});

/// A splat title with what varies between runs of the same bug taken out (addresses, line
/// numbers, pids, exit codes), for deciding whether the tip's splat is one the base had.
pub fn title_key(title: &str) -> String {
    let mut t = title.trim().to_string();
    for (re, to) in TITLE_NOISE.iter() {
        t = re.replace_all(&t, *to).into_owned();
    }
    t.trim().to_string()
}

/// Where a splat ends: the kernel's end marker, a blank line, another splat, or the agent.
/// The `Oops:` line of a fault that began with `BUG: ...`/`Unable to handle ...` belongs to it.
fn splat_end(lines: &[&str], start: usize, kind: SplatKind) -> usize {
    let mut i = start + 1;
    let mut oops_seen = OOPS_LINE.is_match(lines[start]);
    while i < lines.len() && i - start < EXCERPT_LINES {
        let l = lines[i];
        if l.starts_with("---[ end") {
            return i + 1;
        }
        if kind == SplatKind::Oops && !oops_seen && OOPS_LINE.is_match(l) {
            oops_seen = true;
            i += 1;
            continue;
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
    let mut output: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
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
            let output = output.remove(&name).unwrap_or_default();
            c.tests.push(TestLine { number: m[2].parse().unwrap_or(0), name, outcome, detail, output });
        } else if let Some((name, text)) =
            l.strip_prefix("# ").and_then(|d| d.split_once("| ")).filter(|(n, _)| !n.is_empty() && !n.contains(' '))
        {
            output.entry(name.to_string()).or_default().push(text.to_string());
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
            let end = splat_end(&lines, i, rule.kind);
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
                Title::AtPc(p) => faulting_function(&excerpt).map_or_else(|| p.to_string(), |f| format!("{p} in {f}")),
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
            for o in &t.output {
                s += &format!("  | {o}\n");
            }
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

    #[test]
    fn title_keys_drop_what_varies_between_runs() {
        let same = [
            (
                "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009",
                "Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b",
            ),
            ("kernel BUG at fs/notify/mark.c:123!", "kernel BUG at fs/notify/mark.c:140!"),
            (
                "UBSAN: shift-out-of-bounds in fs/notify/fanotify/fanotify.c:12:5",
                "UBSAN: shift-out-of-bounds in fs/notify/fanotify/fanotify.c:40:9",
            ),
            ("BUG: scheduling while atomic: sh/1/0x00000002", "BUG: scheduling while atomic: sh/1/0x00000003"),
            ("BUG: bad page state in process init  pfn:0a2c1", "BUG: bad page state in process init pfn:0a2c1"),
            (
                "general protection fault at address 0xdead000000000122 pid 73",
                "general protection fault at address 0xdead000000000100 pid 80",
            ),
            ("WARNING: CPU: 1 PID: 73 at fs/notify/mark.c:200 x", "WARNING: CPU: 0 PID: 1 at fs/notify/mark.c:210 x"),
            ("BUG: spinlock bad magic on CPU#1, init/1", "BUG: spinlock bad magic on CPU#0, init/1"),
            // Raw first lines, as a splat without a better title keeps them.
            (
                "INFO: task kworker/u4:1:23 blocked for more than 120 seconds.",
                "INFO: task kworker/u4:1:31 blocked for more than 122 seconds.",
            ),
            (
                "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [init:1]",
                "watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [init:77]",
            ),
            (
                "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000008",
                "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000010",
            ),
            (
                "BUG: KASAN: slab-use-after-free in fsnotify_put_mark+0x1c/0x90",
                "BUG: KASAN: slab-use-after-free in fsnotify_put_mark+0x20/0x90",
            ),
            (
                "Kernel panic - not syncing: hung_task: blocked tasks",
                "Kernel panic - not syncing:  hung_task: blocked tasks",
            ),
        ];
        for (a, b) in same {
            assert_eq!(title_key(a), title_key(b), "{a} / {b}");
        }
        assert_eq!(
            title_key("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009"),
            "Kernel panic - not syncing: Attempted to kill init!"
        );
        // What names the bug stays.
        let differ = [
            ("WARNING in fsnotify_put_mark", "WARNING in fsnotify_destroy_mark"),
            ("kernel BUG at fs/notify/mark.c:1!", "kernel BUG at fs/notify/group.c:1!"),
            ("BUG: KASAN: slab-use-after-free in ext4_read", "BUG: KASAN: slab-use-after-free in ext2_read"),
        ];
        for (a, b) in differ {
            assert_ne!(title_key(a), title_key(b), "{a} / {b}");
        }
    }

    #[test]
    fn a_fault_is_named_by_its_pc_not_its_callers() {
        let x86 = "BUG: kernel NULL pointer dereference, address: 0000000000000000\n#PF: supervisor write access in kernel mode\nOops: 0002 [#1] SMP\nRIP: 0010:fanotify_user_setup+0x31/0x1b0\nCall Trace:\n <TASK>\n do_one_initcall+0x47/0x1f0\n kernel_init_freeable+0x1a4/0x230\n kernel_init+0x1a/0x130\n ret_from_fork+0x34/0x50\n </TASK>\n";
        let c = parse(x86);
        let titles: Vec<&str> = c.splats.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(
            titles,
            ["BUG: kernel NULL pointer dereference in fanotify_user_setup"],
            "the Oops line is part of it"
        );
        let arm = "Unable to handle kernel paging request at virtual address dead000000000108\nInternal error: Oops: 0000000096000044 [#1] SMP\npc : __memset+0x10/0x188\nlr : fsnotify_put_mark+0x2c/0x90\nCall trace:\n __memset+0x10/0x188\n fsnotify_put_mark+0x2c/0x90\n do_one_initcall+0x60/0x1d8\n";
        assert_eq!(
            parse(arm).splats[0].title,
            "Unable to handle kernel paging request in fsnotify_put_mark",
            "memset is generic"
        );
        let gpf = "general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] SMP\nRIP: 0010:fsnotify_detach_mark+0x11/0x80\nCall Trace:\n fsnotify_destroy_group+0x40/0x100\n";
        assert_eq!(parse(gpf).splats[0].title, "general protection fault in fsnotify_detach_mark");
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
