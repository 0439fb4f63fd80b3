//! LTP's inotify/fanotify tests in the guest (`/ltp`, put there by the runner when the user
//! gave kbot an LTP build). Each test runs as a child with its output captured; a watchdog
//! declares a hang as soon as one of its tasks sits in D state without a single context switch
//! for `hang_ms` (the seed's stall: LTP alone would wait for its own timeout, minutes under
//! TCG), dumps the blocked tasks, kills the test and goes on with the next one.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the runner puts LTP in the initramfs (LTPROOT).
pub const ROOT: &str = "/ltp";

/// One LTP test: its name (`fanotify07`, reported as `ltp/fanotify07`) and command line.
pub struct Test {
    pub name: String,
    pub argv: Vec<String>,
}

/// The tests in `/ltp/tests.txt` (`name command args...` per line, LTP's runtest format).
pub fn tests() -> Vec<Test> {
    let text = std::fs::read_to_string(format!("{ROOT}/tests.txt")).unwrap_or_default();
    parse_list(&text)
}

pub fn parse_list(text: &str) -> Vec<Test> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?.to_string();
            let argv: Vec<String> = w.map(str::to_string).collect();
            let argv = if argv.is_empty() { vec![name.clone()] } else { argv };
            Some(Test { name, argv })
        })
        .collect()
}

pub struct Params {
    /// A task of the test in D state with no context switch for this long is a hang.
    pub hang_ms: u64,
    /// LTP's own timeout multiplier (TCG is slow; a test LTP kills for time is a hang too).
    pub timeout_mul: String,
    /// LTP's runtime multiplier for tests that run for a time (fuzzy-sync race tests).
    pub runtime_mul: String,
    /// Wall-clock limit for one test, whatever it does.
    pub test_limit_ms: u64,
    /// The mkfs-made filesystems LTP may use (None: every one the guest has tools for).
    pub fs: Option<Vec<String>>,
    /// Runs of a test that keeps passing (`kbot.ltp_repeat`, 1: once). The runner asks for
    /// more in bisection and confirmation boots: a race the kernel has (fanotify07's) can go
    /// unhit in one run, and there a pass names the culprit.
    pub repeat: u32,
}

/// The time a test's repeats may take in all: a pass of fanotify07 takes well under a
/// second; a race test that runs for a set time is not repeated past this.
pub const REPEAT_TIME: Duration = Duration::from_secs(30);

/// Whether a test that passed `runs` times in a row, `spent` in all, runs once more.
pub fn again(runs: u32, repeat: u32, spent: Duration) -> bool {
    runs < repeat && spent < REPEAT_TIME
}

/// A test's deciding run after its repeats: its result and verdict, how many runs counted and
/// the time of all of them.
pub struct Repeated<R> {
    pub result: R,
    pub verdict: kbot_ltp::Verdict,
    pub runs: u32,
    pub spent: Duration,
}

/// Runs a test that passed again (`next(run number)` gives a run's result, verdict and time)
/// while [`again`] and `more()` (the boot's LTP budget) allow. Only a failure or a hang
/// overrides the passes: the first one decides; a skip (LTP's own time budget, a missing
/// device) says nothing about the kernel and ends the repeats with the pass.
pub fn repeat<R>(
    first: (R, kbot_ltp::Verdict, Duration),
    repeat: u32,
    more: impl Fn() -> bool,
    mut next: impl FnMut(u32) -> (R, kbot_ltp::Verdict, Duration),
) -> Repeated<R> {
    let (result, verdict, spent) = first;
    let mut r = Repeated { result, verdict, runs: 1, spent };
    while r.verdict == kbot_ltp::Verdict::Pass && again(r.runs, repeat, r.spent) && more() {
        let (result, verdict, took) = next(r.runs + 1);
        r.spent += took;
        if verdict == kbot_ltp::Verdict::Skip {
            break;
        }
        r = Repeated { result, verdict, runs: r.runs + 1, spent: r.spent };
    }
    r
}

/// Every mkfs tool of the guest, when some are left out (see [`prepare_guest`]).
pub const MKFS_ALL: &str = "/kbot-mkfs/all";
/// Only the kept ones.
pub const MKFS_FAST: &str = "/kbot-mkfs/fast";

/// The environment LTP expects (once per boot, as PID 1): device nodes for loop devices,
/// /dev/shm for its result area, a world-readable root for the tests that drop privileges.
/// LTP tests a filesystem when the kernel has it and `mkfs.<fs>` is on PATH, so with `fs`
/// the mkfs tools move off PATH into [`MKFS_ALL`], and those of `fs` also into [`MKFS_FAST`];
/// each run puts one of the two on PATH.
pub fn prepare_guest(fs: Option<&[String]>) {
    if let Some(keep) = fs {
        let _ = std::fs::create_dir_all(MKFS_ALL);
        let _ = std::fs::create_dir_all(MKFS_FAST);
        for d in ["/sbin", "/usr/sbin", "/bin", "/usr/bin"] {
            let Ok(dir) = std::fs::read_dir(d) else { continue };
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(f) = name.strip_prefix("mkfs.") else { continue };
                // Absolute targets: the tools are often relative links (mkfs.ext4 -> mke2fs).
                let Ok(target) = std::fs::canonicalize(e.path()) else { continue };
                let _ = std::os::unix::fs::symlink(&target, format!("{MKFS_ALL}/{name}"));
                if keep.iter().any(|k| k == f) {
                    let _ = std::os::unix::fs::symlink(&target, format!("{MKFS_FAST}/{name}"));
                }
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let _ = crate::sys::mount("devtmpfs", "/dev", "devtmpfs");
    let _ = std::fs::create_dir_all("/dev/shm");
    let _ = crate::sys::mount("tmpfs", "/dev/shm", "tmpfs");
    let _ = std::fs::create_dir_all("/tmp/ltp");
    // SAFETY: chmod on constant NUL-terminated paths.
    unsafe {
        libc::chmod(c"/".as_ptr(), 0o755);
        libc::chmod(c"/tmp".as_ptr(), 0o1777);
        libc::chmod(c"/tmp/ltp".as_ptr(), 0o1777);
    }
}

/// What one task looked like at one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSample {
    pub tid: i32,
    pub comm: String,
    pub state: char,
    /// voluntary + involuntary context switches: a task that moves at all changes them.
    pub switches: u64,
}

/// Remembers since when each task has been in D state without switching.
#[derive(Default)]
pub struct Stuck {
    since: HashMap<i32, (Duration, u64)>,
}

impl Stuck {
    /// Feeds the samples taken at `now` (time since the test started); returns a task stuck
    /// for at least `limit`, with how long.
    pub fn feed(&mut self, now: Duration, samples: &[TaskSample], limit: Duration) -> Option<(TaskSample, Duration)> {
        let mut next = HashMap::new();
        let mut found = None;
        for s in samples.iter().filter(|s| s.state == 'D') {
            let since = match self.since.get(&s.tid) {
                Some(&(t, sw)) if sw == s.switches => t,
                _ => now,
            };
            next.insert(s.tid, (since, s.switches));
            let stuck = now.saturating_sub(since);
            if stuck >= limit && found.as_ref().is_none_or(|(_, d)| stuck > *d) {
                found = Some((s.clone(), stuck));
            }
        }
        self.since = next;
        found
    }
}

/// `(pid, ppid, pgrp)` of every process.
fn processes() -> Vec<(i32, i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let f = stat_fields(&stat)?;
            Some((pid, f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?))
        })
        .collect()
}

/// The fields after `comm`: state, ppid, pgrp, ... (comm may hold spaces and parens).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// `root` and every process below it, plus everything in their process groups (LTP's
/// library puts the test in a group of its own).
pub fn family(root: i32, procs: &[(i32, i32, i32)]) -> Vec<i32> {
    let mut fam = vec![root];
    let mut i = 0;
    while i < fam.len() {
        let p = fam[i];
        for &(pid, ppid, _) in procs {
            if ppid == p && !fam.contains(&pid) {
                fam.push(pid);
            }
        }
        i += 1;
    }
    let groups: Vec<i32> = procs.iter().filter(|(pid, _, _)| fam.contains(pid)).map(|&(_, _, g)| g).collect();
    for &(pid, _, g) in procs {
        if g > 1 && groups.contains(&g) && !fam.contains(&pid) {
            fam.push(pid);
        }
    }
    fam
}

fn task_samples(pids: &[i32]) -> Vec<TaskSample> {
    let mut v = Vec::new();
    for pid in pids {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for tid in dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
            let base = format!("/proc/{pid}/task/{tid}");
            let Ok(stat) = std::fs::read_to_string(format!("{base}/stat")) else { continue };
            let comm = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')).map_or("", |(c, _)| c).to_string();
            let Some(state) = stat_fields(&stat).and_then(|f| f.first().and_then(|s| s.chars().next())) else {
                continue;
            };
            let status = std::fs::read_to_string(format!("{base}/status")).unwrap_or_default();
            let switches = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            v.push(TaskSample { tid, comm, state, switches });
        }
    }
    v
}

fn kill_family(root: i32) {
    let fam = family(root, &processes());
    for pid in fam {
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Collects exited children (as PID 1 every orphan becomes ours); returns the status of
/// `child` once it has exited.
fn reap(child: i32) -> Option<i32> {
    let mut found = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return found;
        }
        if pid == child {
            found = Some(status);
        }
    }
}

/// How one test ended, for the judge.
pub struct Run {
    pub output: String,
    pub end: kbot_ltp::End,
    pub took: Duration,
}

/// Runs one test; every output line goes to `line` as it comes (from a reader thread that
/// is left behind when an unkillable task keeps the pipe open).
/// With `every_fs`, the mkfs tools left out by `p.fs` are on PATH too.
pub fn run(t: &Test, p: &Params, every_fs: bool, dump_blocked: &dyn Fn(), line: fn(&str, &str)) -> Run {
    let start = Instant::now();
    let not_started =
        |why: String| Run { output: String::new(), end: kbot_ltp::End::NotStarted(why), took: start.elapsed() };
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return not_started(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created and are owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let wr2 = match wr.try_clone() {
        Ok(w) => w,
        Err(e) => return not_started(format!("dup: {e}")),
    };
    let bin = format!("{ROOT}/testcases/bin/{}", t.argv[0]);
    let mkfs = match (&p.fs, every_fs) {
        (None, _) => String::new(),
        (Some(_), false) => format!("{MKFS_FAST}:"),
        (Some(_), true) => format!("{MKFS_ALL}:"),
    };
    let mut cmd = Command::new(&bin);
    cmd.args(&t.argv[1..])
        .env_clear()
        .env("PATH", format!("{ROOT}/testcases/bin:{mkfs}/bin:/sbin:/usr/bin:/usr/sbin"))
        .env("LTPROOT", ROOT)
        .env("TMPDIR", "/tmp/ltp")
        .env("LTP_TIMEOUT_MUL", &p.timeout_mul)
        .env("LTP_RUNTIME_MUL", &p.runtime_mul)
        .env("LTP_COLORIZE_OUTPUT", "0")
        // The kernel's .config, for tests that check options (no /proc/config.gz here).
        .env("KCONFIG_PATH", format!("{ROOT}/kernel.config"))
        // Tests on one device use LTP's default (ext2) unless told: the first kept one.
        .env(
            "LTP_DEV_FS_TYPE",
            p.fs.as_ref().and_then(|f| f.first()).filter(|_| !every_fs).map(String::as_str).unwrap_or("ext2"),
        )
        .current_dir("/tmp/ltp")
        .stdin(Stdio::null())
        .stdout(Stdio::from(wr))
        .stderr(Stdio::from(wr2));
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return not_started(format!("{bin}: {e}")),
    };
    // The write ends live in `cmd`: close them here so the reader sees the end of output.
    drop(cmd);
    let pid = child.id() as i32;
    let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    {
        let out = out.clone();
        let name = t.name.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(std::fs::File::from(rd));
            let mut buf = Vec::new();
            while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let l = String::from_utf8_lossy(&buf).trim_end().to_string();
                line(&name, &l);
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                // A runaway test: keep reading (so it does not block) but stop keeping.
                if o.len() < 256 << 10 {
                    o.push_str(&l);
                    o.push('\n');
                }
                buf.clear();
            }
            let _ = done_tx.send(());
        });
    }
    let mut stuck = Stuck::default();
    let limit = Duration::from_millis(p.hang_ms);
    let end = loop {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(status) = reap(pid) {
            break if libc::WIFSIGNALED(status) {
                kbot_ltp::End::Signaled(libc::WTERMSIG(status))
            } else {
                kbot_ltp::End::Exited(libc::WEXITSTATUS(status))
            };
        }
        let fam = family(pid, &processes());
        if let Some((task, d)) = stuck.feed(start.elapsed(), &task_samples(&fam), limit) {
            dump_blocked();
            kill_family(pid);
            break kbot_ltp::End::Hung {
                stuck_ms: d.as_millis() as u64,
                task: format!("{} (pid {})", task.comm, task.tid),
            };
        }
        if start.elapsed() > Duration::from_millis(p.test_limit_ms) {
            dump_blocked();
            kill_family(pid);
            break kbot_ltp::End::Hung {
                stuck_ms: start.elapsed().as_millis() as u64,
                task: format!("{} still running at kbot's limit of {} ms", t.name, p.test_limit_ms),
            };
        }
    };
    // Children the test left behind hold the pipe; a hung one may never let go.
    let _ = done_rx.recv_timeout(Duration::from_secs(2));
    reap(pid);
    let output = out.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Run { output, end, took: start.elapsed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(tid: i32, state: char, switches: u64) -> TaskSample {
        TaskSample { tid, comm: format!("t{tid}"), state, switches }
    }

    #[test]
    fn a_task_in_d_without_switches_is_stuck() {
        let mut st = Stuck::default();
        let lim = Duration::from_millis(500);
        let ms = Duration::from_millis;
        assert!(st.feed(ms(0), &[s(1, 'D', 5)], lim).is_none());
        assert!(st.feed(ms(300), &[s(1, 'D', 5)], lim).is_none());
        let (t, d) = st.feed(ms(600), &[s(1, 'D', 5), s(2, 'R', 1)], lim).unwrap();
        assert_eq!((t.tid, d), (1, ms(600)));
    }

    #[test]
    fn switching_or_leaving_d_resets_the_clock() {
        let mut st = Stuck::default();
        let lim = Duration::from_millis(500);
        let ms = Duration::from_millis;
        st.feed(ms(0), &[s(1, 'D', 5)], lim);
        // Doing I/O: in D at every sample but switching in between.
        assert!(st.feed(ms(400), &[s(1, 'D', 6)], lim).is_none());
        assert!(st.feed(ms(800), &[s(1, 'D', 6)], lim).is_none());
        assert!(st.feed(ms(900), &[s(1, 'S', 6)], lim).is_none());
        assert!(st.feed(ms(1000), &[s(1, 'D', 6)], lim).is_none());
        assert!(st.feed(ms(1400), &[s(1, 'D', 6)], lim).is_none());
        assert!(st.feed(ms(1500), &[s(1, 'D', 6)], lim).is_some());
    }

    #[test]
    fn family_follows_children_and_groups() {
        // 10 -> 11 -> 12; 13 is in 11's group but reparented to 1; 20 is unrelated.
        let procs = [(10, 1, 10), (11, 10, 11), (12, 11, 11), (13, 1, 11), (20, 1, 20)];
        let mut f = family(10, &procs);
        f.sort();
        assert_eq!(f, [10, 11, 12, 13]);
    }

    #[test]
    fn a_passing_test_repeats_up_to_the_count_and_the_time() {
        let s = Duration::from_secs;
        assert!(!again(1, 1, s(0)), "once by default");
        assert!(again(1, 5, s(1)));
        assert!(again(4, 5, s(4)));
        assert!(!again(5, 5, s(4)), "five runs in all");
        assert!(!again(2, 5, REPEAT_TIME), "a slow test stops repeating");
    }

    #[test]
    fn the_first_failure_or_hang_decides_and_a_skip_keeps_the_pass() {
        use kbot_ltp::Verdict::{Fail, Hang, Pass, Skip};
        let s = Duration::from_secs;
        let drive = |first: kbot_ltp::Verdict, then: &[kbot_ltp::Verdict], n: u32, each: u64| {
            let mut calls = Vec::new();
            let r = repeat(
                (1u32, first, s(each)),
                n,
                || true,
                |k| {
                    calls.push(k);
                    (k, then[k as usize - 2], s(each))
                },
            );
            (r.result, r.verdict, r.runs, r.spent.as_secs(), calls)
        };
        assert_eq!(drive(Pass, &[Pass, Fail, Pass], 5, 1), (3, Fail, 3, 3, vec![2, 3]));
        assert_eq!(drive(Pass, &[Pass, Pass, Pass, Pass], 5, 1), (5, Pass, 5, 5, vec![2, 3, 4, 5]));
        assert_eq!(drive(Pass, &[Hang], 5, 1), (2, Hang, 2, 2, vec![2]));
        // The skipped run's time counts; its verdict does not.
        assert_eq!(drive(Pass, &[Pass, Skip, Fail], 5, 1), (2, Pass, 2, 3, vec![2, 3]));
        // A first run that did not pass is not repeated, nor is one run asked for.
        assert_eq!(drive(Fail, &[], 5, 1), (1, Fail, 1, 1, vec![]));
        assert_eq!(drive(Pass, &[], 1, 1), (1, Pass, 1, 1, vec![]));
        // No new run after REPEAT_TIME (a 20 s test runs twice), nor past the boot's budget.
        assert_eq!(drive(Pass, &[Pass, Pass], 5, 20), (2, Pass, 2, 40, vec![2]));
        let r = repeat((0, Pass, s(1)), 5, || false, |_| panic!("the budget is spent"));
        assert_eq!(r.runs, 1);
    }

    #[test]
    fn list_is_ltps_runtest_format() {
        let t = parse_list("# comment\nfanotify01 fanotify01\n\ninotify_init1_01 inotify_init1_01 -i 2\nx\n");
        let names: Vec<_> = t.iter().map(|t| (t.name.as_str(), t.argv.join(" "))).collect();
        assert_eq!(
            names,
            [
                ("fanotify01", "fanotify01".into()),
                ("inotify_init1_01", "inotify_init1_01 -i 2".into()),
                ("x", "x".into())
            ]
        );
    }
}
