//! Judge one run of an LTP test binary (e.g. `fanotify07`): its captured stdout+stderr and how
//! it ended become kbot's verdict (`pass`, `fail`, `skip`, `hang`), a one-line summary, LTP's
//! own TFAIL/TBROK/TWARN lines as evidence, and the result counts.
//!
//! The guest agent calls [`judge`] after each test; the host uses [`parse_lines`] to pull
//! evidence out of a stored log. Plain std and no dependencies: the crate is linked into the
//! static guest agent (x86_64 and aarch64, musl).
//!
//! The formats are LTP's (`lib/tst_test.c`, `lib/tst_res.c`, `include/tst_res_flags.h`):
//! - new API: `"%s:%i: " "%s: " fmt` (file, line, result), e.g.
//!   `fanotify01.c:266: TFAIL: got event: mask=10 (expected 8) pid=80 fd=5`, colored or not;
//!   `tst_res(TINFO, "=== Testing on %s ===", fs)` before each filesystem of
//!   `.all_filesystems` tests; at the end `\nSummary:\n` and `passed   %d` ... `warnings %d`;
//!   the exit status is the OR of the results (TFAIL 1, TBROK 2, TWARN 4, TCONF 32 only when
//!   nothing passed); LTP's timeout writes `Test timeouted, sending SIGKILL!` and then
//!   `TBROK: Test killed! (timeout?)`.
//! - old API (`tst_resm`): `"%-8s %4d  " "%s  :  %s"`, e.g. `inotify01    1  TPASS  :  ...`,
//!   no summary block, the exit status is the same bitmask.

use std::collections::{HashMap, HashSet};
use std::fmt;

/// How the test binary's run ended, as the agent saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// It exited with this status (LTP's result bitmask when it is LTP).
    Exited(i32),
    /// It was killed by this signal (not by kbot: kbot's own stops are `Hung`/`OverBudget`).
    Signaled(i32),
    /// kbot's watchdog saw a task stuck in D state for `stuck_ms`; `task` names it, e.g.
    /// `fanotify07 (pid 80)`.
    Hung { stuck_ms: u64, task: String },
    /// The boot's time budget ran out before or while the test ran; the agent stopped it.
    OverBudget,
    /// kbot could not start it (missing binary, exec error, ...): why.
    NotStarted(String),
}

/// kbot's outcome words. Ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Pass,
    Skip,
    Fail,
    Hang,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Skip => "skip",
            Verdict::Fail => "fail",
            Verdict::Hang => "hang",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result type of one LTP line (`TPASS`, `TFAIL`, `TBROK`, `TCONF`, `TWARN`, `TINFO`,
/// `TDEBUG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Pass,
    Fail,
    Broken,
    Conf,
    Warn,
    Info,
    Debug,
}

impl Kind {
    /// LTP's own word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pass => "TPASS",
            Kind::Fail => "TFAIL",
            Kind::Broken => "TBROK",
            Kind::Conf => "TCONF",
            Kind::Warn => "TWARN",
            Kind::Info => "TINFO",
            Kind::Debug => "TDEBUG",
        }
    }

    fn from_word(w: &str) -> Option<Kind> {
        Some(match w {
            "TPASS" => Kind::Pass,
            "TFAIL" => Kind::Fail,
            "TBROK" => Kind::Broken,
            "TCONF" => Kind::Conf,
            "TWARN" => Kind::Warn,
            "TINFO" => Kind::Info,
            "TDEBUG" => Kind::Debug,
            _ => return None,
        })
    }

    /// Whether LTP counts it as a result (TINFO and TDEBUG are not).
    pub fn is_result(self) -> bool {
        !matches!(self, Kind::Info | Kind::Debug)
    }
}

/// One LTP result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: Kind,
    /// `fanotify01.c:266` (new API; old API when the message starts with it).
    pub file_line: Option<String>,
    pub message: String,
    /// The filesystem of the `=== Testing on X ===` header it came after.
    pub fs: Option<String>,
    /// The line as LTP printed it, without color codes or a trailing `\r`.
    pub text: String,
}

/// LTP's result counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: u32,
    pub failed: u32,
    pub broken: u32,
    pub skipped: u32,
    pub warnings: u32,
}

impl Counts {
    fn total(&self) -> u64 {
        [self.passed, self.failed, self.broken, self.skipped, self.warnings].iter().map(|&n| n as u64).sum()
    }

    /// The exit status LTP derives from these counters (`do_exit()` in `lib/tst_test.c`):
    /// TCONF only when nothing passed.
    pub fn exit_status(&self) -> i32 {
        let mut ret = 0;
        if self.failed > 0 {
            ret |= TFAIL;
        }
        if self.skipped > 0 && self.passed == 0 {
            ret |= TCONF;
        }
        if self.warnings > 0 {
            ret |= TWARN;
        }
        if self.broken > 0 {
            ret |= TBROK;
        }
        ret
    }
}

/// What [`judge`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// A `fail` only because the test broke (TBROK, or a TBROK exit bit), with no TFAIL, no
    /// signal and no start failure: the caller compares it with the base, where a test broken
    /// already is not a regression. The summary then starts with `fail (broken):`.
    pub broken: bool,
    /// One line, at most [`SUMMARY_MAX`] characters, starting with the verdict word.
    pub summary: String,
    /// LTP's own lines verbatim (TFAIL/TBROK/TWARN; TCONF for a skip; the timeout messages;
    /// the `=== Testing on X ===` header before lines of each filesystem), de-duplicated, at
    /// most [`EVIDENCE_MAX`].
    pub evidence: Vec<String>,
    pub counts: Counts,
}

/// The longest summary, in characters.
pub const SUMMARY_MAX: usize = 300;
/// The most evidence lines.
pub const EVIDENCE_MAX: usize = 20;
/// The longest LTP line quoted in a summary, in characters.
const QUOTE_MAX: usize = 200;

/// LTP's result bits (`include/tst_res_flags.h`).
pub const TFAIL: i32 = 1;
pub const TBROK: i32 = 2;
pub const TWARN: i32 = 4;
pub const TINFO: i32 = 16;
pub const TCONF: i32 = 32;

/// An exit status read as LTP's result bitmask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitBits {
    pub fail: bool,
    pub broken: bool,
    pub warn: bool,
    pub info: bool,
    pub conf: bool,
    /// Bits LTP never sets in an exit status (TDEBUG 8, anything above 63, a negative
    /// status): the status is then not an LTP result (a shell's 127, a crash handler...).
    pub other: i32,
}

/// Reads an exit status as LTP's bitmask: `0` is a pass (a pass plus skips is 0 too), `32`
/// only skips, `1|2|4` failures, breakage, warnings, or-ed together.
pub fn decode_exit(code: i32) -> ExitBits {
    const KNOWN: i32 = TFAIL | TBROK | TWARN | TINFO | TCONF;
    ExitBits {
        fail: code & TFAIL != 0,
        broken: code & TBROK != 0,
        warn: code & TWARN != 0,
        info: code & TINFO != 0,
        conf: code & TCONF != 0,
        other: code & !KNOWN,
    }
}

/// The name of a Linux signal (the numbering shared by x86_64 and arm64).
pub fn signal_name(sig: i32) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(sig).ok().and_then(|n| n.checked_sub(1)).and_then(|i| NAMES.get(i).copied())
}

/// Written by LTP's `alarm_handler()` when the test outlives its timeout.
const TIMEOUTED: &str = "Test timeouted, sending SIGKILL!";
/// Written when the test processes survive SIGKILL (then LTP exits with TFAIL).
const UNKILLABLE: [&str; 3] =
    ["Cannot kill test processes!", "Congratulation, likely test hit a kernel bug.", "Exiting uncleanly..."];
/// The TBROK LTP reports when the test process died of SIGKILL, which its timeout sends.
const KILLED_TIMEOUT: &str = "Test killed! (timeout?)";

/// One thing of interest in the output, in order.
enum Item {
    Line(Line),
    /// One of LTP's timeout messages, verbatim.
    Timeout {
        text: String,
        fs: Option<String>,
    },
}

struct Parsed {
    items: Vec<Item>,
    /// The last `Summary:` block.
    summary: Option<Counts>,
    /// `fs` -> its `=== Testing on fs ===` line, verbatim.
    headers: HashMap<String, String>,
    /// The last non-empty line, verbatim.
    last: Option<String>,
}

impl Parsed {
    fn lines(&self) -> impl Iterator<Item = &Line> {
        self.items.iter().filter_map(|i| match i {
            Item::Line(l) => Some(l),
            Item::Timeout { .. } => None,
        })
    }
}

/// Every LTP line of `output` (new and old API), each with the filesystem it ran on.
pub fn parse_lines(output: &str) -> Vec<Line> {
    parse(output)
        .items
        .into_iter()
        .filter_map(|i| match i {
            Item::Line(l) => Some(l),
            Item::Timeout { .. } => None,
        })
        .collect()
}

/// Removes ANSI escape sequences (`LTP_COLORIZE_OUTPUT=y`, or a terminal) and control
/// characters other than tab.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // parameters and intermediates, then one final byte in @..~
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        if c.is_control() && c != '\t' {
            continue;
        }
        out.push(c);
    }
    out
}

fn parse(output: &str) -> Parsed {
    let mut items = Vec::new();
    let mut summary: Option<Counts> = None;
    let mut in_summary: Option<Counts> = None;
    let mut headers = HashMap::new();
    let mut fs: Option<String> = None;
    let mut last = None;
    for raw in output.split('\n') {
        let text = strip_ansi(raw).trim_end().to_string();
        if let Some(c) = in_summary.as_mut() {
            if summary_entry(&text, c) {
                summary = Some(*c);
                continue;
            }
            in_summary = None;
        }
        if text.is_empty() {
            continue;
        }
        last = Some(text.clone());
        if text == "Summary:" {
            in_summary = Some(Counts::default());
            continue;
        }
        if let Some(mut line) = parse_new(&text).or_else(|| parse_old(&text)) {
            if line.kind == Kind::Info {
                if let Some(name) = fs_header(&line.message) {
                    fs = Some(name.to_string());
                    headers.insert(name.to_string(), text.clone());
                }
            }
            line.fs = fs.clone();
            items.push(Item::Line(line));
        } else if text.contains(TIMEOUTED) || UNKILLABLE.iter().any(|m| text.contains(m)) {
            items.push(Item::Timeout { text, fs: fs.clone() });
        }
    }
    Parsed { items, summary, headers, last }
}

/// `=== Testing on ext4 ===` -> `ext4`.
fn fs_header(message: &str) -> Option<&str> {
    let name = message.strip_prefix("=== Testing on ")?.strip_suffix(" ===")?;
    (!name.is_empty() && !name.contains(char::is_whitespace)).then_some(name)
}

/// One line of the `Summary:` block (`passed   3`); false when it is not one.
fn summary_entry(text: &str, c: &mut Counts) -> bool {
    let mut words = text.split_whitespace();
    let (Some(key), Some(value), None) = (words.next(), words.next(), words.next()) else {
        return false;
    };
    let Ok(n) = value.parse::<u32>() else {
        return false;
    };
    let slot = match key {
        "passed" => &mut c.passed,
        "failed" => &mut c.failed,
        "broken" => &mut c.broken,
        "skipped" => &mut c.skipped,
        "warnings" => &mut c.warnings,
        _ => return false,
    };
    *slot = n;
    true
}

/// Whether `s` is `file:123` (no whitespace in the file name).
fn is_file_line(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((file, n)) => {
            !file.is_empty()
                && !file.contains(char::is_whitespace)
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// New API: `file:line: TYPE: message` (`print_result()` in `lib/tst_test.c`). The first such
/// place in the line wins, so a test's own unterminated stdout before it is tolerated and a
/// message quoting another result line is not taken for one.
fn parse_new(text: &str) -> Option<Line> {
    let mut from = 0;
    while let Some(off) = text[from..].find(": T") {
        let at = from + off;
        from = at + 1;
        let rest = &text[at + 2..];
        let word_end = rest.find(':').unwrap_or(rest.len());
        let Some(kind) = Kind::from_word(&rest[..word_end]) else {
            continue;
        };
        let start =
            text[..at].char_indices().rev().find(|(_, c)| c.is_whitespace()).map_or(0, |(i, c)| i + c.len_utf8());
        let file_line = &text[start..at];
        if !is_file_line(file_line) {
            continue;
        }
        let message = rest[word_end..].strip_prefix(':').unwrap_or("").trim().to_string();
        return Some(Line {
            kind,
            file_line: Some(file_line.to_string()),
            message,
            fs: None,
            text: text[start..].to_string(),
        });
    }
    None
}

/// Old API: `TCID  N  TYPE  :  message` (`tst_print()` in `lib/tst_res.c`); the message of a
/// non-pass, non-info result starts with `file:line: `.
fn parse_old(text: &str) -> Option<Line> {
    fn word(s: &str) -> Option<(&str, &str)> {
        let s = s.trim_start();
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        (end > 0).then(|| (&s[..end], &s[end..]))
    }
    let (tcid, rest) = word(text)?;
    let (num, rest) = word(rest)?;
    let (kind_word, rest) = word(rest)?;
    if tcid.contains(':') || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let kind = Kind::from_word(kind_word)?;
    let message = rest.trim_start().strip_prefix(':')?.trim();
    let (file_line, message) = match message.split_once(": ") {
        Some((fl, m)) if is_file_line(fl) => (Some(fl.to_string()), m.to_string()),
        _ => (None, message.to_string()),
    };
    Some(Line { kind, file_line, message, fs: None, text: text.to_string() })
}

fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Cuts `s` to at most `max` characters, marking the cut with `...`.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// The first line quoted, with its filesystem and how many more of its kind there are
/// (`total` from the counters, which also count lines LTP did not print or we lost).
fn quote(lines: &[&Line], total: u32) -> String {
    let Some(first) = lines.first() else {
        return String::new();
    };
    let mut s = clip(&first.text, QUOTE_MAX);
    let more = (total as usize).max(lines.len()).saturating_sub(1);
    match (&first.fs, more) {
        (Some(fs), 0) => s.push_str(&format!(" (on {fs})")),
        (Some(fs), n) => s.push_str(&format!(" (on {fs}; +{n} more)")),
        (None, 0) => {}
        (None, n) => s.push_str(&format!(" (+{n} more)")),
    }
    s
}

/// Up to three distinct skip reasons, then how many more TCONF lines there are.
fn reasons(confs: &[&Line], total: u32) -> String {
    let mut seen = HashSet::new();
    let mut shown = Vec::new();
    let mut used = 0;
    for l in confs {
        if shown.len() == 3 {
            break;
        }
        used += 1;
        if seen.insert(l.message.as_str()) {
            let mut s = clip(&l.text, QUOTE_MAX);
            if let Some(fs) = &l.fs {
                s.push_str(&format!(" (on {fs})"));
            }
            shown.push(s);
        }
    }
    let mut s = shown.join("; ");
    let more = (total as usize).max(confs.len()).saturating_sub(used);
    if more > 0 {
        s.push_str(&format!(" (+{more} more)"));
    }
    s
}

/// `3 passed, 1 skipped, 1 warning`.
fn tally(c: &Counts) -> String {
    let mut parts = vec![format!("{} passed", c.passed)];
    if c.skipped > 0 {
        parts.push(format!("{} skipped", c.skipped));
    }
    if c.warnings > 0 {
        parts.push(plural(c.warnings, "warning", "warnings"));
    }
    parts.join(", ")
}

/// Whether a run that was given only some of the guest's `mkfs` tools ended for want of a
/// filesystem it was not given (a test that pins ext2, say): then it must run again with all
/// of them, since limiting filesystems may save time but never change a verdict.
pub fn needs_another_fs(output: &str, verdict: Verdict) -> bool {
    verdict == Verdict::Skip
        && parse(output).lines().any(|l| {
            l.kind == Kind::Conf
                && (l.message.starts_with("The ") && l.message.ends_with(" filesystem is not supported")
                    || l.message.starts_with("No required filesystems are available")
                    || l.message.starts_with("There are no supported filesystems"))
        })
}

/// Judges one LTP test binary's run. Never panics; every rule says why in a comment.
pub fn judge(output: &str, end: &End) -> Judgement {
    let parsed = parse(output);
    let of = |k: Kind| parsed.lines().filter(|l| l.kind == k).collect::<Vec<_>>();
    let (fails, broks, warns, confs, passes) =
        (of(Kind::Fail), of(Kind::Broken), of(Kind::Warn), of(Kind::Conf), of(Kind::Pass));
    let from_lines = Counts {
        passed: passes.len() as u32,
        failed: fails.len() as u32,
        broken: broks.len() as u32,
        skipped: confs.len() as u32,
        warnings: warns.len() as u32,
    };
    // LTP's Summary block counts every process's results in shared memory, including lines
    // that were lost or never printed: it is preferred to counting lines, except that lines
    // printed after it (a TWARN of the tmpdir's removal in do_cleanup()) are not in it, so
    // each counter is the larger of the two.
    let counts = match parsed.summary {
        Some(s) => Counts {
            passed: s.passed.max(from_lines.passed),
            failed: s.failed.max(from_lines.failed),
            broken: s.broken.max(from_lines.broken),
            skipped: s.skipped.max(from_lines.skipped),
            warnings: s.warnings.max(from_lines.warnings),
        },
        None => from_lines,
    };
    // What LTP derived its exit status from.
    let ltp_counts = parsed.summary.unwrap_or(from_lines);
    let failed = counts.failed;
    let has_results = counts.total() > 0 || from_lines.total() > 0;

    // LTP's own timeout: its alarm handler SIGKILLed the test ("Test timeouted"), or it saw
    // the test die of SIGKILL, which it reports as "Test killed! (timeout?)".
    let timeout_brok = broks.iter().find(|l| l.message == KILLED_TIMEOUT);
    let timeout_marker = parsed.items.iter().find_map(|i| match i {
        Item::Timeout { text, .. } => Some(text.as_str()),
        Item::Line(_) => None,
    });
    let ltp_timeout = timeout_brok.map(|l| l.text.as_str()).or(timeout_marker);
    let unkillable =
        parsed.items.iter().any(|i| matches!(i, Item::Timeout { text, .. } if text.contains(UNKILLABLE[0])));

    let mut broken = false;
    let mut tail_evidence = false;
    let (verdict, summary) = match end {
        // kbot could not run it: that must not look like a pass (nor a skip, which the
        // caller would not compare); the caller compares with the base.
        End::NotStarted(why) => (Verdict::Fail, format!("fail: not started: {}", clip(why.trim(), QUOTE_MAX))),
        // kbot's watchdog saw a task stuck in D state: a kernel hang whatever LTP printed.
        End::Hung { stuck_ms, task } => {
            tail_evidence = true;
            (Verdict::Hang, format!("hang: task {} in D state for {stuck_ms} ms", clip(task.trim(), QUOTE_MAX)))
        }
        // LTP gave up waiting for the test: a hang, however the binary ended afterwards.
        _ if ltp_timeout.is_some() => {
            let line = ltp_timeout.unwrap_or_default();
            let mut s = format!("hang: LTP's timeout: {}", clip(line, QUOTE_MAX));
            if unkillable {
                // the test processes survived SIGKILL: stuck in the kernel
                s.push_str("; the test processes could not be killed");
            }
            (Verdict::Hang, s)
        }
        // Killed by a signal nobody in kbot sent (a crash, the OOM killer): a failure, named.
        End::Signaled(sig) => {
            tail_evidence = true;
            let name = signal_name(*sig).map_or_else(|| format!("signal {sig}"), |n| format!("{n} (signal {sig})"));
            let mut s = format!("fail: killed by {name}");
            if !fails.is_empty() {
                s.push_str(&format!("; {}", quote(&fails, failed)));
            }
            (Verdict::Fail, s)
        }
        // The boot's time budget ran out: not the test's fault, a skip; but a TFAIL LTP
        // already printed is a real failure and must not be hidden by the cut.
        End::OverBudget => {
            tail_evidence = true;
            if !fails.is_empty() {
                (Verdict::Fail, format!("fail: {}; then cut off: time budget of the boot spent", quote(&fails, failed)))
            } else if counts.passed > 0 {
                (Verdict::Skip, format!("skip: time budget of the boot spent (after {} passed)", counts.passed))
            } else {
                (Verdict::Skip, "skip: time budget of the boot spent".to_string())
            }
        }
        End::Exited(code) => {
            let (v, s, b) = judge_exit(*code, &counts, &ltp_counts, has_results, &fails, &broks, &warns, &confs);
            broken = b;
            (v, s)
        }
    };

    let evidence = evidence(&parsed, verdict, tail_evidence);
    Judgement { verdict, broken, summary: clip(&summary, SUMMARY_MAX), evidence, counts }
}

#[allow(clippy::too_many_arguments)]
fn judge_exit(
    code: i32,
    counts: &Counts,
    ltp_counts: &Counts,
    has_results: bool,
    fails: &[&Line],
    broks: &[&Line],
    warns: &[&Line],
    confs: &[&Line],
) -> (Verdict, String, bool) {
    let bits = decode_exit(code);
    let failed = counts.failed;
    let expected = ltp_counts.exit_status();
    // When the status and the results disagree we trust the worse of the two and say so.
    let disagree = if has_results && (code & (TFAIL | TBROK | TWARN | TCONF)) != expected {
        format!("; exit status {code} disagrees with the results (they give {expected})")
    } else {
        String::new()
    };
    // A status with bits LTP never sets (127 from a missing interpreter, 255, ...) is not an
    // LTP result at all: its low bits mean nothing.
    if bits.other != 0 {
        let mut s = format!("fail: exit status {code} is not an LTP result");
        if !fails.is_empty() {
            s.push_str(&format!("; {}", quote(fails, failed)));
        }
        return (Verdict::Fail, s, false);
    }
    // An assertion failed (a TFAIL line or the TFAIL bit): the test's verdict on the kernel.
    if failed > 0 || bits.fail {
        let s = if fails.is_empty() {
            format!("fail: exit status {code} has TFAIL but no TFAIL line was printed")
        } else {
            format!("fail: {}{disagree}", quote(fails, failed))
        };
        return (Verdict::Fail, s, false);
    }
    // The test broke (setup failed, a child crashed...): a failure, but flagged `broken` and
    // worded "broken" so the caller can forgive one the base has too.
    if counts.broken > 0 || !broks.is_empty() || bits.broken {
        let s = if broks.is_empty() {
            format!("fail (broken): exit status {code} has TBROK but no TBROK line was printed")
        } else {
            format!("fail (broken): {}{disagree}", quote(broks, counts.broken))
        };
        return (Verdict::Fail, s, true);
    }
    // LTP always prints results (it even TBROKs a test that reported none): silence means
    // the binary is not an LTP test or something died before LTP could speak.
    if !has_results {
        return (Verdict::Fail, format!("fail: no result lines (exit status {code})"), false);
    }
    let warned = if warns.is_empty() { String::new() } else { format!(": {}", quote(warns, counts.warnings)) };
    // At least one TPASS and nothing failed or broke: a pass (skipped parts are fine: LTP
    // itself exits 0 for pass+skip). Warnings are said, not failed on. A TCONF exit status
    // beside passes cannot come from LTP; the worse (skip) is trusted.
    if counts.passed > 0 {
        if bits.conf {
            return (Verdict::Skip, format!("skip ({}){warned}{disagree}", tally(counts)), false);
        }
        return (Verdict::Pass, format!("pass ({}){warned}{disagree}", tally(counts)), false);
    }
    // Only TCONF (LTP's exit 32): the configuration does not allow the test; LTP's reasons.
    if counts.skipped > 0 || !confs.is_empty() {
        let mut s = format!("skip: {}", reasons(confs, counts.skipped));
        if confs.is_empty() {
            s = format!("skip: {} skipped (no TCONF line printed)", counts.skipped);
        }
        if !warns.is_empty() {
            s.push_str(&format!("; {}", quote(warns, counts.warnings)));
        }
        s.push_str(&disagree);
        return (Verdict::Skip, s, false);
    }
    // Only warnings: nothing failed or broke, so a pass, but the summary says so.
    (Verdict::Pass, format!("pass with warnings ({}){warned}{disagree}", tally(counts)), false)
}

/// LTP's own lines backing the verdict, verbatim and in order: TFAIL, TBROK, TWARN and the
/// timeout messages (TCONF lines too when the verdict is a skip: they are its reasons), each
/// filesystem's header before its first line, each line once per filesystem; with
/// `tail`, the last line printed (where a hung, killed or cut-off test stopped).
fn evidence(parsed: &Parsed, verdict: Verdict, tail: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let mut current_fs: Option<String> = None;
    let mut push = |out: &mut Vec<String>, fs: Option<&String>, text: &str| {
        if out.len() >= EVIDENCE_MAX || !seen.insert((fs.cloned(), text.to_string())) {
            return;
        }
        if let Some(fs) = fs {
            if current_fs.as_ref() != Some(fs) {
                if let Some(h) = parsed.headers.get(fs) {
                    if out.len() + 1 >= EVIDENCE_MAX {
                        return;
                    }
                    out.push(h.clone());
                }
                current_fs = Some(fs.clone());
            }
        }
        out.push(text.to_string());
    };
    for item in &parsed.items {
        match item {
            Item::Line(l) => {
                let wanted = matches!(l.kind, Kind::Fail | Kind::Broken | Kind::Warn)
                    || (verdict == Verdict::Skip && l.kind == Kind::Conf);
                if wanted {
                    push(&mut out, l.fs.as_ref(), &l.text);
                }
            }
            Item::Timeout { text, fs } => push(&mut out, fs.as_ref(), text),
        }
    }
    if tail {
        if let Some(last) = &parsed.last {
            if !out.contains(last) && out.len() < EVIDENCE_MAX {
                out.push(last.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_for_a_filesystem_left_out_asks_for_a_rerun() {
        let pinned = "tst_test.c:1582: TCONF: The ext2 filesystem is not supported\n\nSummary:\npassed   0\nfailed   0\nbroken   0\nskipped  1\nwarnings 0\n";
        assert!(needs_another_fs(pinned, Verdict::Skip));
        let none = "tst_test.c:2014: TCONF: There are no supported filesystems\n";
        assert!(needs_another_fs(none, Verdict::Skip));
        let other = "tst_test.c:2023: TCONF: No required filesystems are available\n";
        assert!(needs_another_fs(other, Verdict::Skip));
        // Other reasons to skip stay skips: rerunning would not change them.
        let debugfs = "tst_cmd.c:270: TCONF: Couldn't find 'debugfs' in $PATH\n";
        assert!(!needs_another_fs(debugfs, Verdict::Skip));
        let overlay = "tst_test.c:1601: TCONF: overlayfs is not configured in this kernel\n";
        assert!(!needs_another_fs(overlay, Verdict::Skip));
        // A verdict other than skip is kept whatever it printed.
        assert!(!needs_another_fs(pinned, Verdict::Fail));
    }

    #[test]
    fn exit_bits() {
        assert_eq!(decode_exit(0), ExitBits::default());
        let b = decode_exit(TFAIL | TBROK | TWARN | TCONF);
        assert!(b.fail && b.broken && b.warn && b.conf && !b.info && b.other == 0);
        assert!(decode_exit(32).conf && !decode_exit(32).fail);
        assert!(decode_exit(16).info);
        assert_eq!(decode_exit(8).other, 8, "TDEBUG is never an exit bit");
        assert_eq!(decode_exit(127).other, 64 | 8);
        assert_eq!(decode_exit(255).other, 128 | 64 | 8);
        assert_ne!(decode_exit(-1).other, 0);
    }

    #[test]
    fn exit_status_from_counts_is_ltps() {
        let c = |passed, failed, broken, skipped, warnings| Counts { passed, failed, broken, skipped, warnings };
        assert_eq!(c(3, 0, 0, 1, 0).exit_status(), 0, "pass + skip is 0");
        assert_eq!(c(0, 0, 0, 2, 0).exit_status(), TCONF);
        assert_eq!(c(1, 1, 1, 0, 1).exit_status(), TFAIL | TBROK | TWARN);
        assert_eq!(c(0, 0, 0, 0, 0).exit_status(), 0);
    }

    #[test]
    fn signals() {
        assert_eq!(signal_name(9), Some("SIGKILL"));
        assert_eq!(signal_name(11), Some("SIGSEGV"));
        assert_eq!(signal_name(31), Some("SIGSYS"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(34), None);
        assert_eq!(signal_name(-3), None);
    }

    #[test]
    fn new_api_lines_plain_and_colored() {
        let l = parse_new("fanotify01.c:266: TFAIL: got event: mask=10 (expected 8) pid=80 fd=5").unwrap();
        assert_eq!(l.kind, Kind::Fail);
        assert_eq!(l.file_line.as_deref(), Some("fanotify01.c:266"));
        assert_eq!(l.message, "got event: mask=10 (expected 8) pid=80 fd=5");
        let colored = strip_ansi("fanotify07.c:174: \x1b[1;32mTPASS: \x1b[0msecond instance destroyed successfully");
        let l = parse_new(&colored).unwrap();
        assert_eq!((l.kind, l.message.as_str()), (Kind::Pass, "second instance destroyed successfully"));
        // LTP_REPRODUCIBLE_OUTPUT: no message
        assert_eq!(parse_new("fanotify07.c:174: TPASS: ").unwrap().message, "");
        // an unterminated stdout write before the line
        let l = parse_new("child ready fanotify07.c:187: TPASS: all children exited successfully").unwrap();
        assert_eq!(l.file_line.as_deref(), Some("fanotify07.c:187"));
        assert_eq!(l.text, "fanotify07.c:187: TPASS: all children exited successfully");
        assert_eq!(parse_new("readyfanotify07.c:187: TPASS: x").unwrap().kind, Kind::Pass);
        // a message quoting another result is one line, of the outer kind
        let l = parse_new("x.c:1: TINFO: saw 'y.c:2: TFAIL: z'").unwrap();
        assert_eq!(l.kind, Kind::Info);
        assert!(parse_new("Summary:").is_none());
        assert!(parse_new("TFAIL: no file").is_none());
        assert!(parse_new("a b: TFAIL: x").is_none());
    }

    #[test]
    fn old_api_lines() {
        let l = parse_old("inotify01    1  TPASS  :  get event: wd=1 mask=2 cookie=0 len=0").unwrap();
        assert_eq!((l.kind, l.file_line.as_deref()), (Kind::Pass, None));
        assert_eq!(l.message, "get event: wd=1 mask=2 cookie=0 len=0");
        let l = parse_old("inotify02    3  TFAIL  :  inotify02.c:210: didn't get event: mask=8").unwrap();
        assert_eq!((l.kind, l.file_line.as_deref()), (Kind::Fail, Some("inotify02.c:210")));
        assert_eq!(l.message, "didn't get event: mask=8");
        assert!(parse_old("passed   3").is_none());
        assert!(parse_old("tst_test.c:1: TINFO: x").is_none());
    }

    #[test]
    fn fs_headers() {
        assert_eq!(fs_header("=== Testing on ext4 ==="), Some("ext4"));
        assert_eq!(fs_header("=== Testing on  ==="), None);
    }

    #[test]
    fn summary_is_clipped() {
        let long = format!("fanotify01.c:266: TFAIL: {}\n", "x".repeat(1000));
        let j = judge(&long, &End::Exited(1));
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.summary.chars().count() <= SUMMARY_MAX);
        assert!(j.summary.ends_with("..."));
    }

    #[test]
    fn evidence_is_capped_and_deduplicated() {
        let mut out = String::new();
        for i in 0..50 {
            out.push_str(&format!("fanotify01.c:266: TFAIL: event {i}\n"));
            out.push_str(&format!("fanotify01.c:266: TFAIL: event {i}\n"));
        }
        let j = judge(&out, &End::Exited(1));
        assert_eq!(j.evidence.len(), EVIDENCE_MAX);
        assert_eq!(j.evidence[1], "fanotify01.c:266: TFAIL: event 1");
        assert_eq!(j.counts.failed, 100);
        assert!(j.summary.ends_with("(+99 more)"), "{}", j.summary);
    }
}
