//! The reference core's rules, checked online from hooks in the kernel under test: the same
//! source is linked into kbot's built-in kernel component (no `std`, no allocation, fixed
//! tables) and tested on the host.
//!
//! Rules:
//! - `wait-in-srcu` (the seed's rule): no task waits for a user-space permission response
//!   inside an `fsnotify_mark_srcu` read-side section.
//! - `unpin-unpinned`: a mark pinned for a wait is unpinned exactly once (never more often
//!   than it was pinned).
//! - `event-after-shutdown`: no event is queued to a group after its shutdown started.
//! - `wait-without-pin`: a task waiting for a permission response holds a pin on the mark
//!   (what makes leaving SRCU safe since 4.12).
//! - `waiter-outlives-group`: every waiter is released by its group's shutdown: no task is
//!   still waiting on a group when the group is freed.
//! - `grace-period-waits-for-listener`: a grace period of mark destruction starts while a
//!   task waits for a listener inside a read-side section, so it cannot end until user space
//!   answers (the stall itself, as the model predicts it under pre-4.12 semantics).

/// A hook in the kernel's notification core.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Hook {
    SrcuEnter,
    SrcuExit,
    /// Start of waiting for a listener's answer; `obj` is the group.
    WaitStart,
    WaitEnd,
    Pin,
    Unpin,
    /// A group stops queueing events; `obj` is the group.
    Shutdown,
    /// An event is queued to the group `obj`.
    Queued,
    /// The group `obj` is freed (its address may be reused by a new group).
    Free,
    /// Mark destruction starts / ends waiting for an SRCU grace period.
    GraceStart,
    GraceEnd,
}

impl Hook {
    pub fn from_code(c: u32) -> Option<Hook> {
        Some(match c {
            1 => Hook::SrcuEnter,
            2 => Hook::SrcuExit,
            3 => Hook::WaitStart,
            4 => Hook::WaitEnd,
            5 => Hook::Pin,
            6 => Hook::Unpin,
            7 => Hook::Shutdown,
            8 => Hook::Queued,
            9 => Hook::Free,
            10 => Hook::GraceStart,
            11 => Hook::GraceEnd,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Hook::SrcuEnter => "srcu-enter",
            Hook::SrcuExit => "srcu-exit",
            Hook::WaitStart => "wait-start",
            Hook::WaitEnd => "wait-end",
            Hook::Pin => "pin",
            Hook::Unpin => "unpin",
            Hook::Shutdown => "shutdown",
            Hook::Queued => "queued",
            Hook::Free => "free",
            Hook::GraceStart => "grace-start",
            Hook::GraceEnd => "grace-end",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rule {
    WaitInSrcu,
    UnpinUnpinned,
    EventAfterShutdown,
    WaitWithoutPin,
    WaiterOutlivesGroup,
    GraceWaitsForListener,
}

impl Rule {
    pub const ALL: [Rule; 6] = [
        Rule::WaitInSrcu,
        Rule::UnpinUnpinned,
        Rule::EventAfterShutdown,
        Rule::WaitWithoutPin,
        Rule::WaiterOutlivesGroup,
        Rule::GraceWaitsForListener,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::WaitInSrcu => "wait-in-srcu",
            Rule::UnpinUnpinned => "unpin-unpinned",
            Rule::EventAfterShutdown => "event-after-shutdown",
            Rule::WaitWithoutPin => "wait-without-pin",
            Rule::WaiterOutlivesGroup => "waiter-outlives-group",
            Rule::GraceWaitsForListener => "grace-period-waits-for-listener",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

pub const HISTORY: usize = 8;
const SLOTS: usize = 64;
const GROUPS: usize = 64;

/// A violation: the rule, the task, and that task's last hooks (oldest first).
#[derive(Clone, Copy, Debug)]
pub struct Violation {
    pub rule: Rule,
    pub pid: i32,
    pub history: [Option<Hook>; HISTORY],
}

#[derive(Clone, Copy)]
struct Slot {
    pid: i32,
    srcu: i32,
    pins: i32,
    /// The group this task waits on for a permission answer (0: not waiting).
    waiting: usize,
    history: [Option<Hook>; HISTORY],
}

const EMPTY: Slot = Slot { pid: 0, srcu: 0, pins: 0, waiting: 0, history: [None; HISTORY] };

/// Per-task state in a fixed table, shut-down groups in a ring. A task whose slot cannot be
/// found or made is not checked (never a false report).
pub struct Monitor {
    slots: [Slot; SLOTS],
    shut: [usize; GROUPS],
    next_shut: usize,
    reported: u32,
}

impl Default for Monitor {
    fn default() -> Self {
        Self::new()
    }
}

impl Monitor {
    pub const fn new() -> Monitor {
        Monitor { slots: [EMPTY; SLOTS], shut: [0; GROUPS], next_shut: 0, reported: 0 }
    }

    fn slot(&mut self, pid: i32) -> Option<&mut Slot> {
        let i = match self.slots.iter().position(|s| s.pid == pid) {
            Some(i) => i,
            None => {
                // Reuse a slot of a task that holds nothing.
                let i = self.slots.iter().position(|s| s.pid == 0 || (s.srcu == 0 && s.pins == 0 && s.waiting == 0))?;
                self.slots[i] = Slot { pid, ..EMPTY };
                i
            }
        };
        Some(&mut self.slots[i])
    }

    /// Feeds one hook; returns a violation the first time each rule is broken.
    pub fn hook(&mut self, pid: i32, hook: Hook, obj: usize) -> Option<Violation> {
        let broken = match hook {
            Hook::Shutdown => {
                self.shut[self.next_shut % GROUPS] = obj;
                self.next_shut += 1;
                None
            }
            Hook::Queued if obj != 0 && self.shut.contains(&obj) => Some(Rule::EventAfterShutdown),
            Hook::Queued => None,
            Hook::Free => {
                for g in self.shut.iter_mut().filter(|g| **g == obj) {
                    *g = 0;
                }
                // Report against the waiter, whose history tells the story.
                let waiter = self.slots.iter().find(|s| obj != 0 && s.waiting == obj).map(|s| s.pid);
                return waiter.and_then(|w| self.report(Rule::WaiterOutlivesGroup, w));
            }
            Hook::GraceStart => {
                let waiter = self.slots.iter().find(|s| s.waiting != 0 && s.srcu > 0).map(|s| s.pid);
                return waiter.and_then(|w| self.report(Rule::GraceWaitsForListener, w));
            }
            Hook::GraceEnd => None,
            _ => {
                let s = self.slot(pid)?;
                s.history.copy_within(1.., 0);
                s.history[HISTORY - 1] = Some(hook);
                match hook {
                    Hook::SrcuEnter => {
                        s.srcu += 1;
                        None
                    }
                    Hook::SrcuExit => {
                        s.srcu = (s.srcu - 1).max(0);
                        None
                    }
                    Hook::Pin => {
                        s.pins += 1;
                        None
                    }
                    Hook::Unpin if s.pins == 0 => Some(Rule::UnpinUnpinned),
                    Hook::Unpin => {
                        s.pins -= 1;
                        None
                    }
                    Hook::WaitStart => {
                        s.waiting = obj;
                        if s.srcu > 0 {
                            Some(Rule::WaitInSrcu)
                        } else if s.pins == 0 {
                            Some(Rule::WaitWithoutPin)
                        } else {
                            None
                        }
                    }
                    Hook::WaitEnd => {
                        s.waiting = 0;
                        None
                    }
                    _ => None,
                }
            }
        }?;
        self.report(broken, pid)
    }

    /// A violation of `rule` by `pid`, the first time only.
    fn report(&mut self, rule: Rule, pid: i32) -> Option<Violation> {
        if self.reported & rule.bit() != 0 {
            return None;
        }
        self.reported |= rule.bit();
        let history = self.slots.iter().find(|s| s.pid == pid).map_or([None; HISTORY], |s| s.history);
        Some(Violation { rule, pid, history })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hooks of one permission event as 6.12 (current semantics) fires them.
    fn current(m: &mut Monitor, pid: i32) -> Option<Violation> {
        let mut v = None;
        for h in [
            Hook::SrcuEnter,
            Hook::Pin,
            Hook::SrcuExit,
            Hook::WaitStart,
            Hook::WaitEnd,
            Hook::SrcuEnter,
            Hook::Unpin,
            Hook::SrcuExit,
        ] {
            v = v.or(m.hook(pid, h, 0x1000));
        }
        v
    }

    #[test]
    fn current_semantics_break_no_rule() {
        let mut m = Monitor::new();
        for pid in 1..200 {
            assert!(current(&mut m, pid).is_none());
        }
        m.hook(1, Hook::Queued, 0x1000);
        m.hook(1, Hook::Shutdown, 0x1000);
        assert!(m.hook(1, Hook::Queued, 0x2000).is_none());
    }

    #[test]
    fn the_seeds_bug_breaks_wait_in_srcu_once() {
        let mut m = Monitor::new();
        let seq = [Hook::SrcuEnter, Hook::Pin, Hook::WaitStart];
        let v = seq.iter().fold(None, |v, h| v.or(m.hook(7, *h, 0x1000))).expect("violation");
        assert_eq!(v.rule, Rule::WaitInSrcu);
        assert_eq!(v.pid, 7);
        let names: [Option<&str>; HISTORY] = v.history.map(|h| h.map(Hook::name));
        assert_eq!(&names[HISTORY - 3..], &[Some("srcu-enter"), Some("pin"), Some("wait-start")]);
        // Reported once per rule and boot.
        assert!(seq.iter().fold(None, |v, h| v.or(m.hook(8, *h, 0x1000))).is_none());
    }

    #[test]
    fn pins_and_shutdown() {
        let mut m = Monitor::new();
        assert_eq!(m.hook(3, Hook::Unpin, 0).unwrap().rule, Rule::UnpinUnpinned);
        assert_eq!(m.hook(4, Hook::WaitStart, 0).unwrap().rule, Rule::WaitWithoutPin);
        m.hook(5, Hook::Shutdown, 0xabc);
        m.hook(5, Hook::Shutdown, 0xdef);
        m.hook(5, Hook::Free, 0xdef);
        // A new group at a freed group's address is not shut down.
        assert!(m.hook(6, Hook::Queued, 0xdef).is_none());
        assert_eq!(m.hook(6, Hook::Queued, 0xabc).unwrap().rule, Rule::EventAfterShutdown);
    }

    #[test]
    fn grace_period_behind_a_waiter_and_waiters_outliving_their_group() {
        let mut m = Monitor::new();
        // Current semantics: the waiter is outside SRCU, the grace period is not held up.
        for h in [Hook::SrcuEnter, Hook::Pin, Hook::SrcuExit, Hook::WaitStart] {
            assert!(m.hook(1, h, 0x10).is_none());
        }
        assert!(m.hook(99, Hook::GraceStart, 0).is_none());
        // The seed's bug: the grace period now waits for the listener.
        let mut m = Monitor::new();
        m.hook(1, Hook::SrcuEnter, 0x10);
        m.hook(1, Hook::Pin, 0x10);
        assert_eq!(m.hook(1, Hook::WaitStart, 0x10).unwrap().rule, Rule::WaitInSrcu);
        let v = m.hook(99, Hook::GraceStart, 0).unwrap();
        assert_eq!((v.rule, v.pid), (Rule::GraceWaitsForListener, 1));
        // A group freed while a task still waits on it.
        let mut m = Monitor::new();
        m.hook(2, Hook::Pin, 0x20);
        m.hook(2, Hook::WaitStart, 0x20);
        assert!(m.hook(3, Hook::Free, 0x30).is_none());
        let v = m.hook(3, Hook::Free, 0x20).unwrap();
        assert_eq!((v.rule, v.pid), (Rule::WaiterOutlivesGroup, 2));
        // Not after the wait ended.
        let mut m = Monitor::new();
        m.hook(2, Hook::Pin, 0x20);
        m.hook(2, Hook::WaitStart, 0x20);
        m.hook(2, Hook::WaitEnd, 0x20);
        assert!(m.hook(3, Hook::Free, 0x20).is_none());
    }

    #[test]
    fn a_full_table_checks_nothing_rather_than_guessing() {
        let mut m = Monitor::new();
        for pid in 1..=SLOTS as i32 {
            m.hook(pid, Hook::SrcuEnter, 0);
        }
        // No free slot: the new task is not checked.
        assert!(m.hook(1000, Hook::WaitStart, 0).is_none());
        // Known tasks still are.
        assert_eq!(m.hook(5, Hook::WaitStart, 0).unwrap().rule, Rule::WaitInSrcu);
    }
}
