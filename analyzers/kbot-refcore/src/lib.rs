//! refcore: a reference model of what user space can observe of the fsnotify core —
//! notification groups, marks on inodes, events delivered in priority order, permission
//! events that block the accessing task until the listener answers, and the
//! `fsnotify_mark_srcu` read-side sections and grace periods behind them.
//!
//! Given a scenario (steps by a few tasks), the model predicts for each step whether it
//! completes (and with what result and which events it read) or blocks, and which later
//! step releases it. It has two semantics:
//!
//! - [`Semantics::Current`] (since Linux 4.12): a task waiting for a permission response pins
//!   the mark and leaves the SRCU read-side section, so grace periods never wait for user space.
//! - [`Semantics::Pre412`]: the task stays inside the read-side section while it waits, so any
//!   operation that waits for a grace period (closing a group that has marks) blocks until the
//!   pending permission events are answered — the stall the 4.12 series fixed.
//!
//! `no_std` and allocation free (fixed capacities), so the same source can run in the guest
//! agent, on the host and inside the kernel.

#![no_std]

pub mod rules;

/// The source of [`rules`]: the runner builds it into the kernel under test as is (so it
/// must not refer to its own file name).
pub const RULES_SOURCE: &str = include_str!("rules.rs");

pub const MAX_TASKS: usize = 8;
pub const MAX_GROUPS: usize = 8;
pub const MAX_MARKS: usize = 16;
pub const MAX_INODES: usize = 8;
pub const MAX_QUEUE: usize = 16;

pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const EBADF: i32 = 9;
pub const EAGAIN: i32 = 11;
pub const EINVAL: i32 = 22;
pub const EMFILE: i32 = 24;

/// Event mask bits of the model (not the kernel's values).
pub mod mask {
    pub const OPEN: u32 = 1;
    pub const OPEN_PERM: u32 = 2;
    /// inotify's IN_IGNORED: the watch is gone.
    pub const IGNORED: u32 = 4;
    pub const PERM: u32 = OPEN_PERM;
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Semantics {
    Current,
    Pre412,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    Inotify,
    FanNotif,
    FanContent,
    FanPreContent,
}

impl Class {
    /// Delivery order: pre-content groups first, then content, then notification groups.
    pub fn priority(self) -> u8 {
        match self {
            Class::FanPreContent => 2,
            Class::FanContent => 1,
            Class::FanNotif | Class::Inotify => 0,
        }
    }

    pub fn can_perm(self) -> bool {
        matches!(self, Class::FanContent | Class::FanPreContent)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    /// Returns the new group's id (groups are numbered in creation order).
    CreateGroup(Class),
    AddMark {
        group: u8,
        inode: u8,
        mask: u32,
    },
    RemoveMark {
        group: u8,
        inode: u8,
    },
    Open {
        inode: u8,
    },
    /// Non-blocking read of a group's queue; returns the number of events.
    ReadEvents {
        group: u8,
    },
    /// Answers the permission event `waiter` is waiting for (it must have been read).
    Answer {
        group: u8,
        waiter: u8,
        allow: bool,
    },
    Unlink {
        inode: u8,
    },
    Close {
        group: u8,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Step {
    pub task: u8,
    pub op: Op,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Ret {
    Ok(i32),
    Err(i32),
}

/// An event as a listener reads it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct Ev {
    pub mask: u32,
    pub inode: u8,
    /// The task whose access caused it (for permission events: the waiter).
    pub task: u8,
}

/// A fixed-capacity list.
#[derive(Clone, Copy, Debug)]
pub struct List<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy + Default, const N: usize> Default for List<T, N> {
    fn default() -> Self {
        List { items: [T::default(); N], len: 0 }
    }
}

impl<T: Copy + Default, const N: usize> List<T, N> {
    /// Appends; false when full.
    pub fn push(&mut self, t: T) -> bool {
        if self.len == N {
            return false;
        }
        self.items[self.len] = t;
        self.len += 1;
        true
    }

    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn remove(&mut self, i: usize) -> T {
        let t = self.items[i];
        self.items.copy_within(i + 1..self.len, i);
        self.len -= 1;
        t
    }
}

impl<T: Copy + Default + PartialEq, const N: usize> PartialEq for List<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// A task released by a step: it was blocked since step `since` and now returns `ret`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Release {
    pub task: u8,
    pub since: u16,
    pub ret: Ret,
}

impl Default for Release {
    fn default() -> Self {
        Release { task: 0, since: 0, ret: Ret::Ok(0) }
    }
}

/// What one step does.
#[derive(Clone, Copy, PartialEq, Debug, Default)]
pub struct Outcome {
    /// `None`: the step blocks.
    pub ret: Option<Ret>,
    /// Events the step read (for `ReadEvents`).
    pub events: List<Ev, MAX_QUEUE>,
    /// Tasks that this step released, in the order they were released.
    pub released: List<Release, MAX_TASKS>,
}

/// A step the model cannot take: the scenario is malformed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Invalid {
    /// The task is blocked in an earlier step.
    TaskBlocked {
        task: u8,
    },
    TaskOutOfRange {
        task: u8,
    },
    InodeOutOfRange {
        inode: u8,
    },
    /// A fixed capacity of the model was exceeded.
    Capacity,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Queued {
    ev: Ev,
    perm: bool,
    reported: bool,
}

#[derive(Clone, Copy, Debug)]
struct Group {
    class: Class,
    alive: bool,
    queue: List<Queued, MAX_QUEUE>,
}

impl Group {
    /// Queues a notification (non-permission) event, merged the way the kernel merges:
    /// inotify drops an event identical to the last one queued; fanotify folds it into an
    /// unread event of the same object and task.
    fn notify(&mut self, ev: Ev) -> Result<(), Invalid> {
        let n = self.queue.len;
        if self.class == Class::Inotify {
            if n > 0 && self.queue.items[n - 1].ev == ev && !self.queue.items[n - 1].reported {
                return Ok(());
            }
        } else if let Some(q) = self.queue.items[..n]
            .iter_mut()
            .find(|q| !q.perm && !q.reported && q.ev.inode == ev.inode && q.ev.task == ev.task)
        {
            q.ev.mask |= ev.mask;
            return Ok(());
        }
        if self.queue.push(Queued { ev, perm: false, reported: false }) {
            Ok(())
        } else {
            Err(Invalid::Capacity)
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Mark {
    group: u8,
    inode: u8,
    mask: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Idle,
    /// In open(): waiting for `group`'s answer; delivery resumes after (priority, group).
    PermWait {
        inode: u8,
        group: u8,
    },
    /// Waiting for a grace period: until every task in `readers` left its read-side section.
    GraceWait {
        readers: u16,
    },
}

#[derive(Clone, Copy, Debug)]
struct Task {
    state: State,
    /// Inside an fsnotify_mark_srcu read-side section across steps.
    in_srcu: bool,
    since: u16,
}

#[derive(Clone, Copy, Debug, Default)]
struct Inode {
    unlinked: bool,
    /// Unlinked while an open() on it was waiting: marks go when the last such open ends.
    evict_pending: bool,
}

/// The model's state.
#[derive(Clone, Debug)]
pub struct Model {
    pub semantics: Semantics,
    groups: [Option<Group>; MAX_GROUPS],
    ngroups: u8,
    marks: [Option<Mark>; MAX_MARKS],
    inodes: [Inode; MAX_INODES],
    tasks: [Task; MAX_TASKS],
    steps: u16,
}

impl Model {
    pub fn new(semantics: Semantics) -> Model {
        Model {
            semantics,
            groups: [None; MAX_GROUPS],
            ngroups: 0,
            marks: [None; MAX_MARKS],
            inodes: [Inode::default(); MAX_INODES],
            tasks: [Task { state: State::Idle, in_srcu: false, since: 0 }; MAX_TASKS],
            steps: 0,
        }
    }

    /// Whether `task` is blocked.
    pub fn blocked(&self, task: u8) -> bool {
        self.tasks.get(task as usize).is_some_and(|t| t.state != State::Idle)
    }

    /// Number of blocked tasks.
    pub fn blocked_count(&self) -> usize {
        self.tasks.iter().filter(|t| t.state != State::Idle).count()
    }

    /// Whether `task` waits for a grace period (as opposed to a permission answer).
    pub fn waits_for_grace_period(&self, task: u8) -> bool {
        self.tasks.get(task as usize).is_some_and(|t| matches!(t.state, State::GraceWait { .. }))
    }

    /// Permission events that were read and not answered: (group, waiter).
    pub fn unanswered(&self) -> List<(u8, u8), MAX_QUEUE> {
        let mut out = List::default();
        for (g, grp) in self.groups.iter().enumerate() {
            if let Some(grp) = grp.filter(|g| g.alive) {
                for q in grp.queue.as_slice().iter().filter(|q| q.perm && q.reported) {
                    out.push((g as u8, q.ev.task));
                }
            }
        }
        out
    }

    /// Live groups with unread events.
    pub fn unread_groups(&self) -> List<u8, MAX_GROUPS> {
        let mut out = List::default();
        for (g, grp) in self.groups.iter().enumerate() {
            if grp.is_some_and(|grp| grp.alive && grp.queue.as_slice().iter().any(|q| !q.reported)) {
                out.push(g as u8);
            }
        }
        out
    }

    pub fn group_alive(&self, g: u8) -> bool {
        self.group(g).is_some()
    }

    pub fn groups_created(&self) -> u8 {
        self.ngroups
    }

    fn group(&self, g: u8) -> Option<&Group> {
        self.groups.get(g as usize).and_then(|x| x.as_ref()).filter(|x| x.alive)
    }

    fn group_mut(&mut self, g: u8) -> Option<&mut Group> {
        self.groups.get_mut(g as usize).and_then(|x| x.as_mut()).filter(|x| x.alive)
    }

    fn mark_of(&self, group: u8, inode: u8) -> Option<usize> {
        self.marks.iter().position(|m| m.is_some_and(|m| m.group == group && m.inode == inode))
    }

    /// Takes one step.
    pub fn step(&mut self, s: Step) -> Result<Outcome, Invalid> {
        let t = s.task as usize;
        if t >= MAX_TASKS {
            return Err(Invalid::TaskOutOfRange { task: s.task });
        }
        if self.tasks[t].state != State::Idle {
            return Err(Invalid::TaskBlocked { task: s.task });
        }
        let inode_ok = |i: u8| {
            if (i as usize) < MAX_INODES {
                Ok(i as usize)
            } else {
                Err(Invalid::InodeOutOfRange { inode: i })
            }
        };
        let step_no = self.steps;
        self.steps = self.steps.wrapping_add(1);
        let mut out = Outcome::default();
        let ret = match s.op {
            Op::CreateGroup(class) => {
                if self.ngroups as usize >= MAX_GROUPS {
                    Some(Ret::Err(EMFILE))
                } else {
                    let g = self.ngroups;
                    self.groups[g as usize] = Some(Group { class, alive: true, queue: List::default() });
                    self.ngroups += 1;
                    Some(Ret::Ok(g as i32))
                }
            }
            Op::AddMark { group, inode, mask } => {
                let i = inode_ok(inode)?;
                Some(self.add_mark(group, i as u8, mask)?)
            }
            Op::RemoveMark { group, inode } => {
                inode_ok(inode)?;
                Some(self.remove_mark(group, inode)?)
            }
            Op::Open { inode } => {
                let i = inode_ok(inode)?;
                if self.inodes[i].unlinked {
                    Some(Ret::Err(ENOENT))
                } else {
                    self.tasks[t].since = step_no;
                    self.deliver_open(s.task, inode, None, &mut out)?
                }
            }
            Op::ReadEvents { group } => Some(self.read_events(group, &mut out)),
            Op::Answer { group, waiter, allow } => Some(self.answer(group, waiter, allow, &mut out)?),
            Op::Unlink { inode } => {
                let i = inode_ok(inode)?;
                if self.inodes[i].unlinked {
                    Some(Ret::Err(ENOENT))
                } else {
                    self.inodes[i].unlinked = true;
                    if self.pins(inode) == 0 {
                        self.evict(inode)?;
                    } else {
                        self.inodes[i].evict_pending = true;
                    }
                    Some(Ret::Ok(0))
                }
            }
            Op::Close { group } => {
                self.tasks[t].since = step_no;
                self.close(s.task, group, &mut out)?
            }
        };
        // Reading, answering and closing drop events that may have pinned an unlinked file.
        if matches!(s.op, Op::ReadEvents { .. } | Op::Answer { .. } | Op::Close { .. }) {
            self.maybe_evict_all()?;
        }
        out.ret = ret;
        Ok(out)
    }

    fn add_mark(&mut self, group: u8, inode: u8, mask: u32) -> Result<Ret, Invalid> {
        let Some(g) = self.group(group) else {
            return Ok(Ret::Err(EBADF));
        };
        if mask & mask::PERM != 0 && !g.class.can_perm() {
            return Ok(Ret::Err(EINVAL));
        }
        if self.inodes[inode as usize].unlinked {
            return Ok(Ret::Err(ENOENT));
        }
        let inotify = g.class == Class::Inotify;
        if let Some(m) = self.mark_of(group, inode) {
            let mark = self.marks[m].as_mut().expect("found");
            // inotify_add_watch replaces the mask; fanotify_mark(FAN_MARK_ADD) adds to it.
            mark.mask = if inotify { mask } else { mark.mask | mask };
            return Ok(Ret::Ok(0));
        }
        let slot = self.marks.iter().position(Option::is_none).ok_or(Invalid::Capacity)?;
        self.marks[slot] = Some(Mark { group, inode, mask });
        Ok(Ret::Ok(0))
    }

    fn remove_mark(&mut self, group: u8, inode: u8) -> Result<Ret, Invalid> {
        let Some(g) = self.group(group) else {
            return Ok(Ret::Err(EBADF));
        };
        let inotify = g.class == Class::Inotify;
        // fanotify names the object by path, which is gone once unlinked; inotify by wd.
        if !inotify && self.inodes[inode as usize].unlinked {
            return Ok(Ret::Err(ENOENT));
        }
        let Some(m) = self.mark_of(group, inode) else {
            return Ok(Ret::Err(if inotify { EINVAL } else { ENOENT }));
        };
        self.destroy_mark(m)?;
        Ok(Ret::Ok(0))
    }

    /// Detaches a mark. Destruction finishes in the reaper, after a grace period, without
    /// blocking the caller; inotify tells its listener with IN_IGNORED.
    fn destroy_mark(&mut self, m: usize) -> Result<(), Invalid> {
        let mark = self.marks[m].take().expect("live mark");
        if let Some(g) = self.group_mut(mark.group) {
            if g.class == Class::Inotify {
                g.notify(Ev { mask: mask::IGNORED, inode: mark.inode, task: 0 })?;
            }
        }
        Ok(())
    }

    fn evict(&mut self, inode: u8) -> Result<(), Invalid> {
        self.inodes[inode as usize].evict_pending = false;
        for m in 0..MAX_MARKS {
            if self.marks[m].is_some_and(|mk| mk.inode == inode) {
                self.destroy_mark(m)?;
            }
        }
        Ok(())
    }

    /// What keeps an unlinked file's dentry alive: tasks in open() on it and fanotify events
    /// queued or awaiting an answer (they hold its path; inotify events do not). Its marks go
    /// (inotify: IN_IGNORED) when the last one ends.
    fn pins(&self, inode: u8) -> usize {
        let waiters =
            self.tasks.iter().filter(|t| matches!(t.state, State::PermWait { inode: i, .. } if i == inode)).count();
        let events: usize = self
            .groups
            .iter()
            .flatten()
            .filter(|g| g.alive && g.class != Class::Inotify)
            .map(|g| g.queue.as_slice().iter().filter(|q| q.ev.inode == inode).count())
            .sum();
        waiters + events
    }

    fn maybe_evict(&mut self, inode: u8) -> Result<(), Invalid> {
        if self.inodes[inode as usize].evict_pending && self.pins(inode) == 0 {
            self.evict(inode)?;
        }
        Ok(())
    }

    fn maybe_evict_all(&mut self) -> Result<(), Invalid> {
        for i in 0..MAX_INODES as u8 {
            self.maybe_evict(i)?;
        }
        Ok(())
    }

    /// The next group interested in a permission event on `inode`, after `after`
    /// (priority, group) in delivery order: higher priority first, then group id.
    fn next_perm_group(&self, inode: u8, after: Option<(u8, u8)>) -> Option<u8> {
        let key = |g: u8| (core::cmp::Reverse(self.group(g).map_or(0, |x| x.class.priority())), g);
        let mut best: Option<u8> = None;
        for mk in self.marks.iter().flatten() {
            let Some(g) = self.group(mk.group) else {
                continue;
            };
            if mk.inode != inode || mk.mask & mask::OPEN_PERM == 0 || !g.class.can_perm() {
                continue;
            }
            if let Some((p, ag)) = after {
                if key(mk.group) <= (core::cmp::Reverse(p), ag) {
                    continue;
                }
            }
            if best.is_none_or(|b| key(mk.group) < key(b)) {
                best = Some(mk.group);
            }
        }
        best
    }

    /// open(): permission events to each interested group in order; blocks at the first one.
    /// Returns `None` when the task blocks.
    fn deliver_open(
        &mut self,
        task: u8,
        inode: u8,
        after: Option<(u8, u8)>,
        out: &mut Outcome,
    ) -> Result<Option<Ret>, Invalid> {
        if let Some(g) = self.next_perm_group(inode, after) {
            let ev = Ev { mask: mask::OPEN_PERM, inode, task };
            let grp = self.group_mut(g).expect("live group");
            if !grp.queue.push(Queued { ev, perm: true, reported: false }) {
                return Err(Invalid::Capacity);
            }
            let t = &mut self.tasks[task as usize];
            t.state = State::PermWait { inode, group: g };
            // The whole delivery is one read-side section; since 4.12 it is left while waiting.
            t.in_srcu = self.semantics == Semantics::Pre412;
            return Ok(None);
        }
        // Allowed by everyone: the open succeeds and notification events follow; then the
        // file is closed, which may let an unlinked file go (inotify: IN_IGNORED after IN_OPEN).
        for mk in self.marks.iter().flatten().copied().collect_marks() {
            if mk.inode == inode && mk.mask & mask::OPEN != 0 {
                if let Some(g) = self.group_mut(mk.group) {
                    let task = if g.class == Class::Inotify { 0 } else { task };
                    g.notify(Ev { mask: mask::OPEN, inode, task })?;
                }
            }
        }
        self.finish_task(task, out)?;
        Ok(Some(Ret::Ok(0)))
    }

    /// The task's open() ends (allowed or denied): it leaves its read-side section, which may
    /// end grace periods, and a pending eviction of the inode may now happen.
    fn finish_task(&mut self, task: u8, out: &mut Outcome) -> Result<(), Invalid> {
        let t = &mut self.tasks[task as usize];
        let inode = match t.state {
            State::PermWait { inode, .. } => Some(inode),
            _ => None,
        };
        t.state = State::Idle;
        let was_reader = core::mem::replace(&mut t.in_srcu, false);
        if was_reader {
            self.reader_left(task, out);
        }
        if let Some(i) = inode {
            self.maybe_evict(i)?;
        }
        Ok(())
    }

    fn reader_left(&mut self, reader: u8, out: &mut Outcome) {
        for w in 0..MAX_TASKS {
            if let State::GraceWait { readers } = self.tasks[w].state {
                let left = readers & !(1 << reader);
                if left == 0 {
                    self.tasks[w].state = State::Idle;
                    out.released.push(Release { task: w as u8, since: self.tasks[w].since, ret: Ret::Ok(0) });
                } else {
                    self.tasks[w].state = State::GraceWait { readers: left };
                }
            }
        }
    }

    /// Resumes a task whose permission event on `group` was answered.
    fn resume(&mut self, waiter: u8, group: u8, prio: u8, allow: bool, out: &mut Outcome) -> Result<(), Invalid> {
        let State::PermWait { inode, .. } = self.tasks[waiter as usize].state else {
            return Ok(());
        };
        let since = self.tasks[waiter as usize].since;
        if !allow {
            self.finish_task(waiter, out)?;
            out.released.push(Release { task: waiter, since, ret: Ret::Err(EPERM) });
            return Ok(());
        }
        // Since 4.12 the task re-enters the read-side section to resume; before, it never left.
        if let Some(ret) = self.deliver_open(waiter, inode, Some((prio, group)), out)? {
            out.released.push(Release { task: waiter, since, ret });
        }
        Ok(())
    }

    fn read_events(&mut self, group: u8, out: &mut Outcome) -> Ret {
        let Some(g) = self.group_mut(group) else {
            return Ret::Err(EBADF);
        };
        let mut i = 0;
        while i < g.queue.len() {
            let q = g.queue.as_slice()[i];
            if q.reported {
                i += 1;
                continue;
            }
            out.events.push(q.ev);
            if q.perm {
                g.queue.items[i].reported = true;
                i += 1;
            } else {
                g.queue.remove(i);
            }
        }
        if out.events.is_empty() {
            Ret::Err(EAGAIN)
        } else {
            Ret::Ok(out.events.len() as i32)
        }
    }

    fn answer(&mut self, group: u8, waiter: u8, allow: bool, out: &mut Outcome) -> Result<Ret, Invalid> {
        let Some(g) = self.group_mut(group) else {
            return Ok(Ret::Err(EBADF));
        };
        // An inotify fd is not open for writing.
        if g.class == Class::Inotify {
            return Ok(Ret::Err(EBADF));
        }
        let Some(i) = g.queue.as_slice().iter().position(|q| q.perm && q.reported && q.ev.task == waiter) else {
            return Ok(Ret::Err(ENOENT));
        };
        g.queue.remove(i);
        let prio = g.class.priority();
        self.resume(waiter, group, prio, allow, out)?;
        Ok(Ret::Ok(0))
    }

    /// close() of a group: pending permission events are allowed, the marks detached, and the
    /// closer waits for the mark reaper's grace period when the group had marks.
    fn close(&mut self, closer: u8, group: u8, out: &mut Outcome) -> Result<Option<Ret>, Invalid> {
        let Some(g) = self.group_mut(group) else {
            return Ok(Some(Ret::Err(EBADF)));
        };
        g.alive = false;
        let prio = g.class.priority();
        let queue = core::mem::take(&mut g.queue);
        for q in queue.as_slice().iter().filter(|q| q.perm) {
            self.resume(q.ev.task, group, prio, true, out)?;
        }
        let mut had_marks = false;
        for m in 0..MAX_MARKS {
            if self.marks[m].is_some_and(|mk| mk.group == group) {
                self.marks[m] = None;
                had_marks = true;
            }
        }
        if !had_marks {
            return Ok(Some(Ret::Ok(0)));
        }
        let readers = self.tasks.iter().enumerate().filter(|(_, t)| t.in_srcu).fold(0u16, |acc, (i, _)| acc | (1 << i));
        if readers == 0 {
            return Ok(Some(Ret::Ok(0)));
        }
        self.tasks[closer as usize].state = State::GraceWait { readers };
        Ok(None)
    }

    /// Invariant check for tests: nobody waits for something that already happened.
    pub fn no_lost_wakeups(&self) -> bool {
        self.tasks.iter().all(|t| match t.state {
            State::Idle => true,
            State::GraceWait { readers } => (0..MAX_TASKS).any(|r| readers & (1 << r) != 0 && self.tasks[r].in_srcu),
            State::PermWait { group, .. } => self.group(group).is_some(),
        })
    }
}

/// Copies the marks out so events can be queued while iterating.
trait CollectMarks {
    fn collect_marks(self) -> List<Mark, MAX_MARKS>;
}

impl<I: Iterator<Item = Mark>> CollectMarks for I {
    fn collect_marks(self) -> List<Mark, MAX_MARKS> {
        let mut l = List::default();
        for m in self {
            l.push(m);
        }
        l
    }
}

impl<T: Copy + Default, const N: usize> IntoIterator for List<T, N> {
    type Item = T;
    type IntoIter = core::iter::Take<core::array::IntoIter<T, N>>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter().take(self.len)
    }
}

#[cfg(test)]
mod tests;
