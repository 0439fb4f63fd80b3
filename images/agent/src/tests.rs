//! The fanotify hang tests. Each one is a real interaction with the kernel under test; every
//! wait has a watchdog, and after a hang the pending events are answered so the guest ends.

use crate::sys::{self, Event, FAN_ALLOW, FAN_DENY, FAN_MARK_ADD, FAN_MARK_REMOVE, FAN_OPEN_PERM};
use std::io;
use std::os::fd::RawFd;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Hang,
    Skip,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    pub detail: String,
}

impl Outcome {
    fn pass(detail: impl Into<String>) -> Self {
        Outcome { verdict: Verdict::Pass, detail: detail.into() }
    }
    fn fail(detail: impl Into<String>) -> Self {
        Outcome { verdict: Verdict::Fail, detail: detail.into() }
    }
    fn hang(detail: impl Into<String>) -> Self {
        Outcome { verdict: Verdict::Hang, detail: detail.into() }
    }
    pub fn skip(detail: impl Into<String>) -> Self {
        Outcome { verdict: Verdict::Skip, detail: detail.into() }
    }
}

/// Turns a setup error into a failed test with context.
impl From<(&str, io::Error)> for Outcome {
    fn from((what, e): (&str, io::Error)) -> Self {
        if e.raw_os_error() == Some(libc::ENOSYS) || e.raw_os_error() == Some(libc::EINVAL) {
            // fanotify (or its permission events) not built in: not this test's finding.
            return Outcome::skip(format!("{what}: {e}"));
        }
        Outcome::fail(format!("{what}: {e}"))
    }
}

pub struct Ctx {
    pub dir: String,
    /// How long an operation that must be prompt may take before it counts as hung.
    pub watchdog: Duration,
    /// How long to wait for a hung operation after its events were answered.
    pub release: Duration,
    /// Dump blocked tasks (sysrq-w) to the console when a hang is seen.
    pub sysrq: bool,
}

impl Ctx {
    fn file(&self, name: &str) -> String {
        let p = format!("{}/{}", self.dir, name);
        let _ = std::fs::write(&p, "kbot\n");
        p
    }

    pub fn dump_blocked_tasks(&self) {
        if self.sysrq {
            let _ = std::fs::write("/proc/sysrq-trigger", "w");
        }
    }
}

pub type TestFn = fn(&Ctx) -> Outcome;

/// The test table. Names are stable: reports and bisection refer to them.
pub const TESTS: &[(&str, TestFn)] = &[
    ("inotify_close_with_pending_perm", inotify_close_with_pending_perm),
    ("fanotify_close_with_pending_perm", fanotify_close_with_pending_perm),
    ("perm_allow_deny", perm_allow_deny),
    ("listener_close_releases_waiters", listener_close_releases_waiters),
    ("listener_exit_releases_waiters", listener_exit_releases_waiters),
    ("mark_remove_while_pending", mark_remove_while_pending),
    ("unlink_while_pending", unlink_while_pending),
    ("many_waiters_reverse_answer", many_waiters_reverse_answer),
];

/// The seed's two hang tests, run as one when both are asked for: one permission event is
/// made pending, and then both unrelated groups are closed, the second 0.3 s into the first's
/// wait, each under its own watchdog (3.3 s instead of 6 s on a kernel that stalls). The
/// waiter is inside its wait before either close starts, so on a kernel that makes a grace
/// period wait for it every close that needs a grace period waits, whichever starts it; on one
/// that does not, none does. (Two pending events,
/// one per test, would not do: a grace period that one close starts does not wait for a
/// reader that enters later, so the other close could finish early: seen on arm64.)
pub const TOGETHER: [&str; 2] = ["inotify_close_with_pending_perm", "fanotify_close_with_pending_perm"];

/// A permission-event listener: a FAN_CLASS_CONTENT group with FAN_OPEN_PERM on one file.
/// Dropping it closes the group, which allows every event still pending.
struct Listener {
    fd: RawFd,
}

impl Listener {
    fn new(path: &str) -> io::Result<Self> {
        let fd = sys::fanotify_init(sys::FAN_CLASS_CONTENT)?;
        let l = Listener { fd };
        sys::fanotify_mark(fd, FAN_MARK_ADD, FAN_OPEN_PERM, path)?;
        Ok(l)
    }

    /// Reads until `n` permission events arrived or `timeout` passed.
    fn wait_events(&self, n: usize, timeout: Duration) -> io::Result<Vec<Event>> {
        let deadline = Instant::now() + timeout;
        let mut evs = Vec::new();
        while evs.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            evs.extend(sys::read_events(self.fd, left)?.into_iter().filter(|e| e.mask & FAN_OPEN_PERM != 0));
        }
        Ok(evs)
    }

    fn answer(&self, evs: &[Event], verdict: u32) {
        for ev in evs {
            let _ = sys::respond(self.fd, ev, verdict);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        sys::close(self.fd);
    }
}

type OpenResult = (io::Result<()>, Duration);

/// The first permission event of `l`, or the failed test when none comes in time.
fn first_event(ctx: &Ctx, l: &Listener) -> Result<Vec<Event>, Outcome> {
    match l.wait_events(1, ctx.watchdog) {
        Ok(e) if !e.is_empty() => Ok(e),
        Ok(_) => Err(Outcome::fail(format!("no permission event within {} ms of open()", ms(ctx.watchdog)))),
        Err(e) => Err(("reading permission events", e).into()),
    }
}

/// A listener on `path` and an open() of it blocked on its (read, unanswered) event.
fn one_pending(ctx: &Ctx, path: &str) -> Result<(Listener, Receiver<OpenResult>, Vec<Event>), Outcome> {
    let l = Listener::new(path).map_err(|e| Outcome::from(("fanotify permission listener", e)))?;
    let opener = spawn_open(path);
    let evs = first_event(ctx, &l)?;
    Ok((l, opener, evs))
}

/// Opens `path` in a new thread; the result (and how long open() took) arrives on the channel.
fn spawn_open(path: &str) -> Receiver<OpenResult> {
    let (tx, rx) = mpsc::channel();
    let path = path.to_string();
    thread::spawn(move || {
        let t = Instant::now();
        let r = sys::open_rdonly(&path).map(sys::close);
        let _ = tx.send((r, t.elapsed()));
    });
    rx
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Waits for every opener; each must finish within `timeout` and succeed.
fn expect_opens_ok(openers: &[Receiver<OpenResult>], timeout: Duration) -> Result<(), Outcome> {
    let deadline = Instant::now() + timeout;
    let mut bad = Vec::new();
    for (i, rx) in openers.iter().enumerate() {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((Ok(()), _)) => {}
            Ok((Err(e), _)) => bad.push(format!("open #{} failed: {e}", i + 1)),
            Err(_) => {
                return Err(Outcome::hang(format!(
                    "open #{} of the watched file still blocked {} ms after its permission event was released",
                    i + 1,
                    ms(timeout)
                )))
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Outcome::fail(bad.join("; ")))
    }
}

type MakeGroup = fn(&str) -> io::Result<RawFd>;

/// How long a close must have been waiting before the next one starts (see below).
const STAGGER: Duration = Duration::from_millis(300);

/// The seed's SRCU stall: with a permission event pending (listener not answering), tearing
/// down an unrelated group waits for an fsnotify_mark_srcu grace period. Since 4.12 the waiter
/// drops SRCU, so this completes in milliseconds. Each of `groups` (name, how to make one with
/// a mark) is made and closed in its own thread, all while the one event is pending; one
/// outcome per group.
fn close_groups_while_pending(ctx: &Ctx, groups: &[(&'static str, MakeGroup)]) -> Vec<Outcome> {
    let watched = ctx.file("close-watched");
    let (l, opener, evs) = match one_pending(ctx, &watched) {
        Ok(x) => x,
        Err(o) => return groups.iter().map(|_| o.clone()).collect(),
    };
    // Each close starts once the one before it finished or has surely begun waiting. Two
    // closes that flush the mark reaper at the same instant can let one return without waiting:
    // one flush deletes the reaper's timer and is about to queue it, and the other, seeing
    // neither timer nor queued work, returns at once (1 boot in 24 on arm64 under load).
    let mut done: Vec<Option<io::Result<Duration>>> = groups.iter().map(|_| None).collect();
    let mut closes = Vec::new();
    for (i, &(what, make_group)) in groups.iter().enumerate() {
        let other = ctx.file(&format!("{what}-other"));
        let (tx, rx) = mpsc::channel();
        let (closing_tx, closing_rx) = mpsc::channel::<()>();
        thread::spawn(move || {
            let r = make_group(&other).map(|fd| {
                let _ = closing_tx.send(());
                let t = Instant::now();
                sys::close(fd);
                t.elapsed()
            });
            let _ = tx.send(r);
        });
        // Timed from the close itself (making the group takes its time under load); a group
        // that could not be made says nothing and its thread ends at once.
        let _ = closing_rx.recv_timeout(ctx.watchdog);
        let deadline = Instant::now() + ctx.watchdog;
        if i + 1 < groups.len() {
            done[i] = rx.recv_timeout(STAGGER).ok();
        }
        closes.push((rx, deadline));
    }
    for (i, (rx, deadline)) in closes.iter().enumerate() {
        if done[i].is_none() {
            done[i] = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok();
        }
    }
    let answered = Instant::now();
    if done.iter().any(Option::is_none) {
        ctx.dump_blocked_tasks();
    }
    l.answer(&evs, FAN_ALLOW);
    let mut outcomes = Vec::new();
    for (i, &(what, _)) in groups.iter().enumerate() {
        let o = match done[i].take() {
            Some(Ok(d)) => {
                Outcome::pass(format!("close() of the {what} group took {} ms with a permission event pending", ms(d)))
            }
            Some(Err(e)) => (format!("creating the {what} group").as_str(), e).into(),
            None => match closes[i].0.recv_timeout(ctx.release) {
                Ok(_) => Outcome::hang(format!(
                    "close() of an unrelated {what} group blocked for more than {} ms while a permission event was pending; it completed {} ms after the event was answered",
                    ms(ctx.watchdog),
                    ms(answered.elapsed())
                )),
                Err(_) => Outcome::hang(format!(
                    "close() of an unrelated {what} group blocked for more than {} ms while a permission event was pending, and was still blocked {} ms after the event was answered",
                    ms(ctx.watchdog),
                    ms(ctx.release)
                )),
            },
        };
        outcomes.push(o);
    }
    if let Err(o) = expect_opens_ok(&[opener], ctx.release) {
        for x in outcomes.iter_mut().filter(|x| x.verdict == Verdict::Pass) {
            *x = o.clone();
        }
    }
    outcomes
}

fn make_inotify(path: &str) -> io::Result<RawFd> {
    sys::inotify_with_watch(path)
}

fn make_fanotify(path: &str) -> io::Result<RawFd> {
    let fd = sys::fanotify_init(sys::FAN_CLASS_NOTIF)?;
    if let Err(e) = sys::fanotify_mark(fd, FAN_MARK_ADD, sys::FAN_MODIFY, path) {
        sys::close(fd);
        return Err(e);
    }
    Ok(fd)
}

/// Both of [`TOGETHER`] under one pending event and one watchdog.
pub fn close_tests_together(ctx: &Ctx) -> Vec<Outcome> {
    close_groups_while_pending(ctx, &[("inotify", make_inotify), ("fanotify", make_fanotify)])
}

fn one(mut v: Vec<Outcome>) -> Outcome {
    v.pop().unwrap_or_else(|| Outcome::fail("no outcome"))
}

fn inotify_close_with_pending_perm(ctx: &Ctx) -> Outcome {
    one(close_groups_while_pending(ctx, &[("inotify", make_inotify)]))
}

fn fanotify_close_with_pending_perm(ctx: &Ctx) -> Outcome {
    one(close_groups_while_pending(ctx, &[("fanotify", make_fanotify)]))
}

/// FAN_ALLOW lets open() succeed; FAN_DENY makes it fail with EPERM.
fn perm_allow_deny(ctx: &Ctx) -> Outcome {
    let f = ctx.file("allow-deny");
    let l = match Listener::new(&f) {
        Ok(l) => l,
        Err(e) => return ("fanotify permission listener", e).into(),
    };
    for (verdict, want_ok) in [(FAN_ALLOW, true), (FAN_DENY, false)] {
        let opener = spawn_open(&f);
        let evs = match first_event(ctx, &l) {
            Ok(e) => e,
            Err(o) => return o,
        };
        l.answer(&evs, verdict);
        let name = if want_ok { "FAN_ALLOW" } else { "FAN_DENY" };
        match opener.recv_timeout(ctx.watchdog) {
            Ok((Ok(()), _)) if want_ok => {}
            Ok((Err(e), _)) if !want_ok && e.raw_os_error() == Some(libc::EPERM) => {}
            Ok((r, _)) => {
                return Outcome::fail(format!(
                    "after {name}, open() returned {:?}; expected {}",
                    r.map(|_| "success"),
                    if want_ok { "success" } else { "EPERM" }
                ))
            }
            Err(_) => return Outcome::hang(format!("open() still blocked {} ms after {name}", ms(ctx.watchdog))),
        }
    }
    Outcome::pass("FAN_ALLOW -> open() ok, FAN_DENY -> EPERM")
}

/// Closing the listener with unanswered events allows every waiter.
fn listener_close_releases_waiters(ctx: &Ctx) -> Outcome {
    let f = ctx.file("listener-close");
    let l = match Listener::new(&f) {
        Ok(l) => l,
        Err(e) => return ("fanotify permission listener", e).into(),
    };
    let openers: Vec<_> = (0..3).map(|_| spawn_open(&f)).collect();
    match l.wait_events(3, ctx.watchdog) {
        Ok(e) if e.len() == 3 => {}
        Ok(e) => return Outcome::fail(format!("{} of 3 permission events within {} ms", e.len(), ms(ctx.watchdog))),
        Err(e) => return ("reading permission events", e).into(),
    }
    let t = Instant::now();
    drop(l);
    match expect_opens_ok(&openers, ctx.watchdog) {
        Ok(()) => Outcome::pass(format!("3 waiters released {} ms after close(listener)", ms(t.elapsed()))),
        Err(o) => o,
    }
}

/// The listener process dying (SIGKILL) releases every waiter.
fn listener_exit_releases_waiters(ctx: &Ctx) -> Outcome {
    let f = ctx.file("listener-exit");
    let cf = std::ffi::CString::new(f.clone()).unwrap();
    let mut pipe = [0i32; 2];
    // SAFETY: valid array of two ints.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return ("pipe", io::Error::last_os_error()).into();
    }
    // SAFETY: the child only makes raw syscalls (no allocation) and ends with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe { listener_child(cf.as_ptr(), pipe[1]) }
    }
    sys::close(pipe[1]);
    if pid < 0 {
        sys::close(pipe[0]);
        return ("fork", io::Error::last_os_error()).into();
    }
    let outcome = listener_exit_parent(ctx, &f, pid, pipe[0]);
    sys::close(pipe[0]);
    // SAFETY: our child; reap it whatever happened.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    outcome
}

/// Child: one permission group, reports "r" when ready and one "e" per event read; never answers.
unsafe fn listener_child(path: *const libc::c_char, w: RawFd) -> ! {
    let fd = libc::syscall(libc::SYS_fanotify_init, sys::FAN_CLASS_CONTENT, libc::O_RDONLY as u32) as i32;
    if fd < 0 || libc::syscall(libc::SYS_fanotify_mark, fd, FAN_MARK_ADD, FAN_OPEN_PERM, libc::AT_FDCWD, path) < 0 {
        libc::write(w, b"x".as_ptr().cast(), 1);
        libc::_exit(1);
    }
    libc::write(w, b"r".as_ptr().cast(), 1);
    let mut buf = [0u8; 1024];
    loop {
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        if n <= 0 {
            continue;
        }
        let mut off = 0usize;
        while off + 24 <= n as usize {
            let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            libc::write(w, b"e".as_ptr().cast(), 1);
            if len < 24 {
                break;
            }
            off += len;
        }
    }
}

fn read_byte(fd: RawFd, timeout: Duration) -> Option<u8> {
    if !sys::poll_readable(fd, timeout).ok()? {
        return None;
    }
    let mut b = [0u8; 1];
    // SAFETY: one-byte buffer.
    (unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) } == 1).then_some(b[0])
}

fn listener_exit_parent(ctx: &Ctx, f: &str, pid: i32, r: RawFd) -> Outcome {
    match read_byte(r, ctx.watchdog) {
        Some(b'r') => {}
        Some(_) => return Outcome::skip("listener child could not set up a fanotify permission group"),
        None => return Outcome::fail("listener child did not get ready"),
    }
    let openers: Vec<_> = (0..2).map(|_| spawn_open(f)).collect();
    let deadline = Instant::now() + ctx.watchdog;
    let mut seen = 0;
    while seen < 2 {
        match read_byte(r, deadline.saturating_duration_since(Instant::now())) {
            Some(b'e') => seen += 1,
            _ => return Outcome::fail(format!("listener saw {seen} of 2 permission events")),
        }
    }
    if openers[0].recv_timeout(Duration::from_millis(100)).is_ok() {
        return Outcome::fail("open() returned before the listener answered");
    }
    let t = Instant::now();
    // SAFETY: our child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    match expect_opens_ok(&openers[1..], ctx.watchdog) {
        Ok(()) => Outcome::pass(format!("waiters released {} ms after the listener was killed", ms(t.elapsed()))),
        Err(o) => o,
    }
}

/// Removing the mark while its event is pending, then answering: no hang.
fn mark_remove_while_pending(ctx: &Ctx) -> Outcome {
    pending_then(ctx, "mark-remove", |l, path| {
        sys::fanotify_mark(l.fd, FAN_MARK_REMOVE, FAN_OPEN_PERM, path).map_err(|e| ("removing the mark", e).into())
    })
}

/// Unlinking the watched file while its event is pending, then answering: no hang.
fn unlink_while_pending(ctx: &Ctx) -> Outcome {
    pending_then(ctx, "unlink", |_, path| std::fs::remove_file(path).map_err(|e| ("unlink", e).into()))
}

fn pending_then(ctx: &Ctx, name: &str, act: fn(&Listener, &str) -> Result<(), Outcome>) -> Outcome {
    let f = ctx.file(name);
    let (l, opener, evs) = match one_pending(ctx, &f) {
        Ok(x) => x,
        Err(o) => return o,
    };
    // The action itself must not block either.
    let t = Instant::now();
    if let Err(o) = act(&l, &f) {
        l.answer(&evs, FAN_ALLOW);
        return o;
    }
    let took = t.elapsed();
    l.answer(&evs, FAN_ALLOW);
    match expect_opens_ok(&[opener], ctx.watchdog) {
        Ok(()) => Outcome::pass(format!("{name} took {} ms; open() completed after FAN_ALLOW", ms(took))),
        Err(o) => o,
    }
}

/// Many concurrent waiters answered in reverse order all complete.
fn many_waiters_reverse_answer(ctx: &Ctx) -> Outcome {
    const N: usize = 16;
    let f = ctx.file("many");
    let l = match Listener::new(&f) {
        Ok(l) => l,
        Err(e) => return ("fanotify permission listener", e).into(),
    };
    let openers: Vec<_> = (0..N).map(|_| spawn_open(&f)).collect();
    let mut evs = match l.wait_events(N, ctx.watchdog * 2) {
        Ok(e) if e.len() == N => e,
        Ok(e) => {
            let n = e.len();
            l.answer(&e, FAN_ALLOW);
            return Outcome::fail(format!("{n} of {N} permission events within {} ms", ms(ctx.watchdog * 2)));
        }
        Err(e) => return ("reading permission events", e).into(),
    };
    evs.reverse();
    let t = Instant::now();
    l.answer(&evs, FAN_ALLOW);
    match expect_opens_ok(&openers, ctx.watchdog) {
        Ok(()) => {
            Outcome::pass(format!("{N} waiters answered in reverse order, all released in {} ms", ms(t.elapsed())))
        }
        Err(o) => o,
    }
}

/// Runs `f` (one test, or [`TOGETHER`] as one: `n` outcomes) in its own thread so that even
/// a test stuck in the kernel cannot stop the agent: after `limit` each outcome is reported
/// as a hang and the thread left behind.
pub fn run_guarded(
    ctx: &'static Ctx,
    f: impl FnOnce(&'static Ctx) -> Vec<Outcome> + Send + 'static,
    n: usize,
    limit: Duration,
) -> (Vec<Outcome>, Duration) {
    let (tx, rx) = mpsc::channel();
    let t = Instant::now();
    let spawned = thread::Builder::new().spawn(move || {
        let _ = tx.send(f(ctx));
    });
    let all = |o: Outcome| (0..n).map(|_| o.clone()).collect();
    if let Err(e) = spawned {
        return (all(Outcome::fail(format!("cannot start test thread: {e}"))), t.elapsed());
    }
    match rx.recv_timeout(limit) {
        Ok(o) => (o, t.elapsed()),
        Err(RecvTimeoutError::Timeout) => {
            ctx.dump_blocked_tasks();
            (all(Outcome::hang(format!("test did not finish within {} ms", ms(limit)))), t.elapsed())
        }
        Err(RecvTimeoutError::Disconnected) => (all(Outcome::fail("test panicked")), t.elapsed()),
    }
}
