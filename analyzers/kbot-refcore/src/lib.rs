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
//! Since issue #16 it also models a small tmpfs-like tree (see [`path`]): directories `d0`
//! (the scenario's root), `d1`, `d2`, files `i0`..`i7` in each; create, unlink, rename, mkdir,
//! rmdir, open/read/write/close (as whole steps), chmod; inotify watches with their flags and
//! the events a watching directory gets for its children; fanotify marks (fd reporting) on
//! files and directories with and without `FAN_EVENT_ON_CHILD`/`FAN_ONDIR`, legacy ignore
//! masks with `FAN_MARK_IGNORED_SURV_MODIFY` and `FAN_MARK_IGNORE`'s (5.19) whose event flags
//! take effect; what fdinfo shows of marks; queue overflow; the errno of invalid
//! `fanotify_mark`/`inotify_add_watch` calls. The rules follow Linux 6.12's
//! `fs/notify/fsnotify.c` (`send_to_group`, `fsnotify_iter_select_report_types`),
//! `fanotify_group_event_mask()`, `inotify_handle_inode_event()` and `do_fanotify_mark()`.
//! Filesystem and mount marks (`FAN_MARK_FILESYSTEM`, `FAN_MARK_MOUNT`) are one mark per
//! group and kind on [`SB_NODE`] / [`MNT_NODE`], merged with the group's other marks as
//! `send_to_group()` does. Groups that report file handles (`FAN_REPORT_FID`, `_DIR_FID`,
//! `_NAME`, `_TARGET_FID`; [`Op::FidGroup`]) get entry events and events without a path, with
//! the records `fanotify_alloc_event()` and `copy_info_records_to_user()` choose ([`Ev::dir`]).
//! A pipe ([`PIPE_NODE`]) is the pseudo filesystem object marks may name; `FAN_MARK_EVICTABLE`
//! has its errnos and fdinfo flag. Not modelled: `FAN_RENAME`, `FAN_REPORT_PIDFD` records,
//! eviction under memory pressure.
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
pub const MAX_MARKS: usize = 24;
/// Files `i0`..`i7` per directory (the legacy inodes are `d0`'s, present from the start).
pub const MAX_INODES: usize = 8;
/// Directories: `d0` (the root, always there), `d1`, `d2` (children of `d0`).
pub const MAX_DIRS: usize = 3;
/// Objects ever created in one scenario (node ids are never reused): `0..8` are `d0/i0..i7`,
/// `8` is `d0`, later ones in creation order.
pub const MAX_NODES: usize = 40;
pub const MAX_QUEUE: usize = 24;
/// The queue limit the model assumes (`fs.inotify.max_queued_events` and
/// `fs.fanotify.max_queued_events`, which the guest agent sets to this for the scenarios;
/// both are read when a group is created). Config: the fanotify sysctl exists since 5.13.
pub const QUEUE_LIMIT: usize = 8;
/// `Ev::name` / node of an event that has none (e.g. inotify's IN_Q_OVERFLOW).
pub const NO_NAME: u8 = 0xff;
pub const NO_NODE: u8 = 0xff;
/// The object of a filesystem mark (FAN_MARK_FILESYSTEM) and of a mount mark
/// (FAN_MARK_MOUNT), where a mark's node would be: the scenario's tree is one filesystem,
/// mounted once (the guest agent mounts a tmpfs for each run).
pub const SB_NODE: u8 = 0xfd;
/// `Ev::name` of an [`Op::Fdinfo`] entry for a mark: `mask` is what fdinfo prints as `mask:`
/// (fanotify: the mark's mask with FAN_ONDIR / FAN_EVENT_ON_CHILD; inotify: its events), `inode`
/// the marked object ([`SB_NODE`] / [`MNT_NODE`] for filesystem and mount marks), `task` the
/// mark's user-visible [`flag`]s (fanotify `mflags:` SURV; inotify IN_ONESHOT/IN_EXCL_UNLINK in
/// its mask). A mark with an ignore mask has a second entry, [`FDINFO_IGNORED`].
pub const FDINFO_MARK: u8 = 0xfc;
/// An fdinfo entry's flags as its `Ev::task` byte: the mark flags fdinfo shows, with
/// FAN_MARK_IGNORE's and FAN_MARK_EVICTABLE's (which do not fit a byte) in the bits of
/// [`flag::REMOVE`] and [`flag::MASK_CREATE`] (never a mark's flags).
pub fn fdinfo_flags_to_task(f: u16) -> u8 {
    (f & 0x7b) as u8 | if f & flag::IGNORE != 0 { 0x80 } else { 0 } | if f & flag::EVICTABLE != 0 { 0x04 } else { 0 }
}

/// The inverse of [`fdinfo_flags_to_task`].
pub fn fdinfo_flags_from_task(t: u8) -> u16 {
    u16::from(t & 0x7b) | if t & 0x80 != 0 { flag::IGNORE } else { 0 } | if t & 0x04 != 0 { flag::EVICTABLE } else { 0 }
}

/// `Ev::name` of a mark's `ignored_mask:` entry in an [`Op::Fdinfo`] step.
pub const FDINFO_IGNORED: u8 = 0xfb;
/// `Ev::name` of the name "." that a group with FAN_REPORT_NAME gets in the DFID_NAME record
/// of an event on a directory itself (`copy_info_records_to_user()`).
pub const DOT_NAME: u8 = 0xfa;
pub const MNT_NODE: u8 = 0xfe;
/// A pipe the scenario holds open (both ends) from the start: an object of a pseudo
/// filesystem (pipefs, SB_NOUSER), named by its fd ([`Op::PipeMark`]). Nothing happens on it.
pub const PIPE_NODE: u8 = 0xf9;
/// `Ev::task` of an unprivileged group's event ([`Op::FidGroup`] with `unpriv`): such a group
/// cannot have FAN_REPORT_TID, so the event's pid is the thread group's, and it is shown only
/// to a reader of that same process (`copy_event_to_user()`), else 0. The scenario's tasks are
/// threads of one process, which also reads: every event shows that process.
pub const PROCESS_TASK: u8 = 0xf0;

pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const EBADF: i32 = 9;
pub const EAGAIN: i32 = 11;
pub const EEXIST: i32 = 17;
pub const ENOTDIR: i32 = 20;
pub const EISDIR: i32 = 21;
pub const EINVAL: i32 = 22;
pub const EMFILE: i32 = 24;
pub const ENOTEMPTY: i32 = 39;
pub const EOPNOTSUPP: i32 = 95;

/// Paths are one byte: `dir << 4 | name`, name `0..8` for `i<name>`, [`path::SELF`] for the
/// directory itself. The legacy inodes `0..8` are `d0/i0..i7`, so old scenarios keep their
/// meaning.
pub mod path {
    pub const SELF: u8 = 15;
    /// Not a path: the scenario's pipe, named by its fd ([`super::Op::PipeMark`]).
    pub const PIPE: u8 = 0xff;
    pub const fn of(dir: u8, name: u8) -> u8 {
        dir << 4 | name
    }
    pub const fn dir(p: u8) -> u8 {
        p >> 4
    }
    pub const fn name(p: u8) -> u8 {
        p & 15
    }
    pub const fn is_dir(p: u8) -> bool {
        name(p) == SELF
    }
    pub fn valid(p: u8) -> bool {
        (dir(p) as usize) < super::MAX_DIRS && ((name(p) as usize) < super::MAX_INODES || name(p) == SELF)
    }
    /// The name a directory `d<k>` has in `d0`, as event names count (files are `0..8`).
    pub const fn dir_entry_name(k: u8) -> u8 {
        8 + k
    }
}

/// Flags of a mark step (`mark g P MASK FLAGS`): inotify_add_watch's and fanotify_mark's.
pub mod flag {
    pub const ONESHOT: u16 = 1;
    pub const MASK_ADD: u16 = 2;
    pub const MASK_CREATE: u16 = 4;
    pub const EXCL_UNLINK: u16 = 8;
    /// IN_ONLYDIR / FAN_MARK_ONLYDIR.
    pub const ONLYDIR: u16 = 16;
    /// FAN_MARK_IGNORED_MASK (the legacy ignore mask).
    pub const IGNORED: u16 = 32;
    pub const SURV: u16 = 64;
    /// FAN_MARK_REMOVE instead of FAN_MARK_ADD.
    pub const REMOVE: u16 = 128;
    /// FAN_MARK_IGNORE (5.19): an ignore mask whose FAN_ONDIR / FAN_EVENT_ON_CHILD take effect.
    /// On a mark: it has such a mask (the kernel's FSNOTIFY_MARK_FLAG_HAS_IGNORE_FLAGS).
    pub const IGNORE: u16 = 256;
    /// FAN_MARK_EVICTABLE (5.19): an inode mark that does not pin its inode (on the mark:
    /// FSNOTIFY_MARK_FLAG_NO_IREF). A tmpfs inode goes only when it is gone, so such a mark
    /// behaves like any other here; its rules are its errnos and fdinfo's `mflags:`.
    pub const EVICTABLE: u16 = 512;
    pub const INOTIFY: u16 = ONESHOT | MASK_ADD | MASK_CREATE | EXCL_UNLINK | ONLYDIR;
    pub const FANOTIFY: u16 = ONLYDIR | IGNORED | SURV | REMOVE | IGNORE | EVICTABLE;
}

/// fanotify_init(2)'s `flags`, with the kernel's values (uapi `linux/fanotify.h`), and
/// [`init::UNKNOWN`] for a bit no kernel defines.
pub mod init {
    pub const CLOEXEC: u16 = 0x1;
    pub const NONBLOCK: u16 = 0x2;
    pub const CLASS_CONTENT: u16 = 0x4;
    pub const CLASS_PRE_CONTENT: u16 = 0x8;
    /// Both class bits: no such class.
    pub const CLASS_BITS: u16 = CLASS_CONTENT | CLASS_PRE_CONTENT;
    pub const UNLIMITED_QUEUE: u16 = 0x10;
    pub const UNLIMITED_MARKS: u16 = 0x20;
    /// Needs CONFIG_AUDITSYSCALL (see [`super::AUDITSYSCALL`]).
    pub const ENABLE_AUDIT: u16 = 0x40;
    pub const REPORT_PIDFD: u16 = 0x80;
    pub const REPORT_TID: u16 = 0x100;
    pub const REPORT_FID: u16 = 0x200;
    pub const REPORT_DIR_FID: u16 = 0x400;
    pub const REPORT_NAME: u16 = 0x800;
    pub const REPORT_TARGET_FID: u16 = 0x1000;
    /// Linux 6.13, backported to Debian's 6.12.117 (see [`super::FD_ERROR`]).
    pub const REPORT_FD_ERROR: u16 = 0x2000;
    /// The agent passes a bit no kernel defines (0x0100_0000).
    pub const UNKNOWN: u16 = 0x8000;
    pub const FID_BITS: u16 = REPORT_FID | REPORT_DIR_FID | REPORT_NAME | REPORT_TARGET_FID;
}

/// fanotify_init(2)'s `event_f_flags`: the access mode in the low two bits (3 is none of
/// O_RDONLY/O_WRONLY/O_RDWR), then open flags the agent maps to the arch's values.
pub mod fflag {
    pub const ACCMODE: u8 = 3;
    pub const WRONLY: u8 = 1;
    pub const RDWR: u8 = 2;
    pub const APPEND: u8 = 4;
    pub const NONBLOCK: u8 = 8;
    pub const CLOEXEC: u8 = 16;
    pub const NOATIME: u8 = 32;
    pub const LARGEFILE: u8 = 64;
    /// O_DIRECTORY: not an event file flag (FANOTIFY_INIT_ALL_EVENT_F_BITS).
    pub const DIRECTORY: u8 = 128;
}

/// Kernel fact: kbot's kernel configuration has no CONFIG_AUDITSYSCALL, so FAN_ENABLE_AUDIT is
/// an unknown flag (EINVAL); with it, it would need CAP_AUDIT_WRITE.
pub const AUDITSYSCALL: bool = false;
/// Kernel fact: FAN_REPORT_FD_ERROR is known (6.13+, and Debian's 6.12.117). The scenario
/// generator does not use it, so a base without it shows no divergence.
pub const FD_ERROR: bool = true;

/// fanotify_init(2)'s errno, in the kernel's order of checks (6.12 `fanotify_init()`); None
/// when it succeeds. `unpriv`: the caller lacks CAP_SYS_ADMIN (5.13+: allowed a notification
/// group that reports file handles, without the admin-only flags).
pub fn fanotify_init_errno(flags: u16, fflags: u8, unpriv: bool) -> Option<i32> {
    let admin = init::CLASS_BITS
        | init::REPORT_TID
        | init::REPORT_PIDFD
        | init::REPORT_FD_ERROR
        | init::UNLIMITED_QUEUE
        | init::UNLIMITED_MARKS;
    if unpriv && (flags & admin != 0 || flags & init::FID_BITS == 0) {
        return Some(EPERM);
    }
    let mut known = init::CLOEXEC
        | init::NONBLOCK
        | init::CLASS_BITS
        | init::UNLIMITED_QUEUE
        | init::UNLIMITED_MARKS
        | init::REPORT_PIDFD
        | init::REPORT_TID
        | init::FID_BITS;
    if AUDITSYSCALL {
        known |= init::ENABLE_AUDIT;
    }
    if FD_ERROR {
        known |= init::REPORT_FD_ERROR;
    }
    let fid_mode = flags & init::FID_BITS;
    let class = flags & init::CLASS_BITS;
    let bad = flags & !known != 0
        // A pidfd is only for a thread-group leader: not with FAN_REPORT_TID.
        || (flags & init::REPORT_PIDFD != 0 && flags & init::REPORT_TID != 0)
        || fflags & fflag::DIRECTORY != 0
        || fflags & fflag::ACCMODE == fflag::ACCMODE
        // File handles only for notification groups.
        || (fid_mode != 0 && class != 0)
        // A name is reported with the parent's fid.
        || (fid_mode & init::REPORT_NAME != 0 && fid_mode & init::REPORT_DIR_FID == 0)
        || (fid_mode & init::REPORT_TARGET_FID != 0
            && (fid_mode & init::REPORT_NAME == 0 || fid_mode & init::REPORT_FID == 0))
        // The class is checked last, after the group was allocated.
        || class == init::CLASS_BITS;
    bad.then_some(EINVAL)
}

/// Event mask bits of the model (not the kernel's values).
pub mod mask {
    pub const OPEN: u32 = 1;
    pub const OPEN_PERM: u32 = 2;
    /// inotify's IN_IGNORED: the watch is gone.
    pub const IGNORED: u32 = 4;
    pub const PERM: u32 = OPEN_PERM;
    pub const ACCESS: u32 = 1 << 3;
    pub const MODIFY: u32 = 1 << 4;
    pub const ATTRIB: u32 = 1 << 5;
    pub const CLOSE_WRITE: u32 = 1 << 6;
    pub const CLOSE_NOWRITE: u32 = 1 << 7;
    pub const CREATE: u32 = 1 << 8;
    pub const DELETE: u32 = 1 << 9;
    pub const MOVED_FROM: u32 = 1 << 10;
    pub const MOVED_TO: u32 = 1 << 11;
    pub const DELETE_SELF: u32 = 1 << 12;
    pub const MOVE_SELF: u32 = 1 << 13;
    /// IN_Q_OVERFLOW / FAN_Q_OVERFLOW.
    pub const OVERFLOW: u32 = 1 << 14;
    /// IN_ISDIR in events, FAN_ONDIR in marks (the same kernel bit, FS_ISDIR).
    pub const ISDIR: u32 = 1 << 15;
    /// FAN_EVENT_ON_CHILD in a fanotify mark.
    pub const ON_CHILD: u32 = 1 << 16;
    /// Event types (ALL_FSNOTIFY_EVENTS of the model).
    pub const EVENTS: u32 = OPEN
        | OPEN_PERM
        | ACCESS
        | MODIFY
        | ATTRIB
        | CLOSE_WRITE
        | CLOSE_NOWRITE
        | CREATE
        | DELETE
        | MOVED_FROM
        | MOVED_TO
        | DELETE_SELF
        | MOVE_SELF;
    /// Events a fanotify group reporting fds may ask for (FANOTIFY_FD_EVENTS); the others
    /// need FAN_REPORT_FID (fanotify_mark(2): EINVAL).
    pub const FAN_FD: u32 = OPEN | OPEN_PERM | ACCESS | MODIFY | CLOSE_WRITE | CLOSE_NOWRITE;
    /// Directory entry events (ALL_FSNOTIFY_DIRENT_EVENTS of the model).
    pub const DIRENT: u32 = CREATE | DELETE | MOVED_FROM | MOVED_TO;
    /// FANOTIFY_DIRONLY_EVENT_BITS: what a strict fanotify_mark(2) refuses on a file's mark.
    pub const DIR_ONLY: u32 = DIRENT | ISDIR | ON_CHILD;
    /// Events that fsnotify_parent() may report to a watching parent (FS_EVENTS_POSS_ON_CHILD).
    pub const ON_CHILD_POSSIBLE: u32 = OPEN | OPEN_PERM | ACCESS | MODIFY | ATTRIB | CLOSE_WRITE | CLOSE_NOWRITE;
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
    /// A notification group (FAN_CLASS_NOTIF) that reports file handles: `report` is its
    /// [`init::FID_BITS`] (FAN_REPORT_FID, _DIR_FID, _NAME, _TARGET_FID). An invalid mix fails
    /// as fanotify_init(2) does and makes no group.
    FidGroup {
        report: u16,
        /// Made without CAP_SYS_ADMIN (5.13+; the agent makes it as user `nobody`): no
        /// filesystem or mount marks (EPERM, whoever calls fanotify_mark(2)), and events show
        /// the process, not the thread ([`PROCESS_TASK`]).
        unpriv: bool,
    },
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
    /// A mark with flags ([`flag`]): inotify_add_watch or fanotify_mark (FAN_MARK_ADD, or
    /// FAN_MARK_REMOVE with [`flag::REMOVE`]). `AddMark` is this with no flags.
    Watch {
        group: u8,
        inode: u8,
        mask: u32,
        flags: u16,
    },
    /// open(O_RDONLY), read(1), close.
    Cat {
        inode: u8,
    },
    /// open(O_WRONLY), write(1 byte), close.
    Write {
        inode: u8,
    },
    /// chmod.
    Attrib {
        inode: u8,
    },
    /// mknod(S_IFREG): an empty file.
    Create {
        inode: u8,
    },
    Mkdir {
        inode: u8,
    },
    Rmdir {
        inode: u8,
    },
    /// rename(2) of a file.
    Rename {
        from: u8,
        to: u8,
    },
    /// fanotify_mark(2) with FAN_MARK_FILESYSTEM (or, `mount`, FAN_MARK_MOUNT) on the
    /// filesystem (mount) holding `inode`; `flags` as for [`Op::Watch`] (fanotify's).
    FsMark {
        group: u8,
        inode: u8,
        mask: u32,
        flags: u16,
        mount: bool,
    },
    /// fanotify_mark(2) of the scenario's pipe ([`PIPE_NODE`]) by its fd (no path), on the
    /// pipe itself, its mount or its filesystem; `flags` as for [`Op::FsMark`].
    PipeMark {
        group: u8,
        mask: u32,
        flags: u16,
        obj: MarkObj,
    },
    /// Reads `/proc/self/fdinfo/<fd>` of the group: one entry per mark (see [`FDINFO_MARK`]).
    Fdinfo {
        group: u8,
    },
    /// fanotify_init(2) with these [`init`] flags and [`fflag`] event file flags, as root or
    /// (`unpriv`) as an unprivileged user; a group it makes is closed at once (only the errno
    /// is compared; groups keep their numbers).
    Init {
        flags: u16,
        fflags: u8,
        unpriv: bool,
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
    /// The node: for inotify the watched object (a directory for its children's events),
    /// for fanotify the object the event's fd refers to; [`NO_NODE`] for an overflow.
    pub inode: u8,
    /// The task whose access caused it (for permission events: the waiter); 0 for inotify.
    pub task: u8,
    /// The child's name (inotify events for a watching directory; a fanotify group's
    /// DFID_NAME record, [`DOT_NAME`] for "."), else [`NO_NAME`].
    pub name: u8,
    /// A fanotify group reporting file handles: the node of its DFID or DFID_NAME record,
    /// else [`NO_NODE`] (`inode` is then the node of its FID record, or [`NO_NODE`]).
    pub dir: u8,
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
    /// Flags the group's API cannot express (e.g. IN_ONESHOT for fanotify), or a path the
    /// step cannot take (rename of a directory, rmdir of the root).
    BadArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Queued {
    ev: Ev,
    perm: bool,
    reported: bool,
    /// inotify: the watch's descriptor (the model's mark serial); a watch removed and added
    /// again on one file has a new one, and inotify merges only events of the same watch.
    wd: u16,
}

#[derive(Clone, Copy, Debug)]
struct Group {
    class: Class,
    /// [`init::FID_BITS`] of a group that reports file handles; 0: it reports fds.
    report: u16,
    /// Made without CAP_SYS_ADMIN (FANOTIFY_UNPRIV).
    unpriv: bool,
    alive: bool,
    queue: List<Queued, MAX_QUEUE>,
}

impl Group {
    /// Events in the notification list (read permission events wait on another list and do
    /// not count: `fsnotify_remove_first_event()` decrements `q_len`).
    fn q_len(&self) -> usize {
        self.queue.as_slice().iter().filter(|q| !q.reported).count()
    }

    /// `fsnotify_insert_event()`: when the queue holds the limit, the overflow event is queued
    /// instead (once until it is read), *before* any merge is tried; otherwise the event is
    /// merged the way the kernel merges: inotify drops an event identical to the last one
    /// queued (not IN_MOVED_*: their cookies differ); fanotify folds it into an unread event
    /// of the same object and task (`fanotify_should_merge()`: with file handles the same
    /// records, and both on a directory or both not). Returns false when the event was not
    /// queued as itself.
    fn insert(&mut self, ev: Ev, perm: bool, limit: usize) -> Result<bool, Invalid> {
        self.insert_wd(ev, perm, 0, limit)
    }

    fn insert_wd(&mut self, ev: Ev, perm: bool, wd: u16, limit: usize) -> Result<bool, Invalid> {
        let n = self.queue.len;
        if self.q_len() >= limit {
            let queued = self.queue.as_slice().iter().any(|q| !q.reported && q.ev.mask == mask::OVERFLOW);
            if !queued {
                let ov = Ev { mask: mask::OVERFLOW, inode: NO_NODE, task: 0, name: NO_NAME, dir: NO_NODE };
                if !self.queue.push(Queued { ev: ov, perm: false, reported: false, wd: 0 }) {
                    return Err(Invalid::Capacity);
                }
            }
            return Ok(false);
        }
        if perm {
        } else if self.class == Class::Inotify {
            let moved = ev.mask & (mask::MOVED_FROM | mask::MOVED_TO) != 0;
            let last = self.queue.items[n.saturating_sub(1)];
            if n > 0 && !moved && last.ev == ev && last.wd == wd && !last.reported {
                return Ok(false);
            }
        } else if let Some(q) = self.queue.items[..n].iter_mut().find(|q| {
            !q.perm
                && !q.reported
                && q.ev.mask != mask::OVERFLOW
                && (q.ev.inode, q.ev.dir, q.ev.name, q.ev.task) == (ev.inode, ev.dir, ev.name, ev.task)
                && q.ev.mask & mask::ISDIR == ev.mask & mask::ISDIR
        }) {
            q.ev.mask |= ev.mask;
            return Ok(false);
        }
        if self.queue.push(Queued { ev, perm, reported: false, wd }) {
            Ok(true)
        } else {
            Err(Invalid::Capacity)
        }
    }

    /// An inotify event of the watch `wd`.
    fn notify_wd(&mut self, ev: Ev, wd: u16, limit: usize) -> Result<(), Invalid> {
        self.insert_wd(ev, false, wd, limit).map(|_| ())
    }

    fn notify(&mut self, ev: Ev, limit: usize) -> Result<(), Invalid> {
        // The pid an unprivileged group keeps is the process's: events of its threads merge.
        let ev = if self.unpriv { Ev { task: PROCESS_TASK, ..ev } } else { ev };
        self.insert(ev, false, limit).map(|_| ())
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Mark {
    group: u8,
    inode: u8,
    mask: u32,
    /// The ignore mask: event types only for the legacy kind (FAN_MARK_IGNORED_MASK), with
    /// FAN_ONDIR / FAN_EVENT_ON_CHILD for FAN_MARK_IGNORE's ([`flag::IGNORE`] in `flags`).
    ignore: u32,
    flags: u16,
    /// The mark's serial (inotify: its watch descriptor).
    wd: u16,
}

impl Mark {
    /// `fsnotify_ignore_mask()`: the ignore mask with its event flags. FAN_MARK_IGNORE's are
    /// its own; a legacy one always applies to directories and applies to children when the
    /// mark watches them.
    fn ignore_with_flags(&self) -> u32 {
        if self.flags & flag::IGNORE != 0 {
            return self.ignore;
        }
        (self.ignore | mask::ISDIR) & !mask::ON_CHILD | (self.mask & mask::ON_CHILD)
    }

    /// `fsnotify_effective_ignore_mask()`: the events this mark's ignore mask hides of an
    /// event on a directory (`is_dir`) or on a child of the marked directory (`parent`).
    fn effective_ignore(&self, is_dir: bool, parent: bool) -> u32 {
        let events = self.ignore & mask::EVENTS;
        if events == 0 || (!is_dir && !parent) {
            return events;
        }
        let full = self.ignore_with_flags();
        if (is_dir && full & mask::ISDIR == 0) || (parent && full & mask::ON_CHILD == 0) {
            return 0;
        }
        events
    }

    /// `fsnotify_iter_select_report_types()`: a mark on the parent takes part in an event on a
    /// child only if it watches children (its mask) or ignores events on them (its ignore mask).
    fn on_children(&self) -> bool {
        (self.mask | self.ignore_with_flags()) & mask::ON_CHILD != 0
    }

    /// `fsnotify_calc_mask()`: what the object must show interest in for this mark.
    fn calc(&self) -> u32 {
        if self.ignore & mask::EVENTS == 0 {
            return self.mask;
        }
        let modify = if self.flags & flag::SURV == 0 { mask::MODIFY } else { 0 };
        self.mask | modify | self.ignore
    }
}

/// The event a group reporting file handles (`report`: its [`init::FID_BITS`]) reads, in the
/// model's terms (see [`Ev::dir`]): `fanotify_alloc_event()` picks the objects and
/// `copy_info_records_to_user()` the record types. `node` is the event's object (for a
/// directory entry event, `dirent`, the entry's; FAN_ONDIR in `m` says it is a directory),
/// `dir` the directory passed with it (the parent of a non-directory, or the directory of the
/// entry) and `name` the entry's name.
fn fid_event(report: u16, m: u32, node: u8, dir: Option<u8>, name: u8, task: u8, dirent: bool) -> Ev {
    let ondir = m & mask::ISDIR != 0;
    let target = report & init::REPORT_TARGET_FID != 0;
    // fanotify_fid_inode(): the directory for an entry event, unless TARGET_FID.
    let mut id = if dirent && !target { dir } else { Some(node) };
    // fanotify_dfid_inode(): the directory of an entry event, a directory itself, else the
    // parent passed with the event.
    let dirid = if !dirent && ondir { Some(node) } else { dir };
    let (mut child, mut name_event, mut file_name) = (None, false, dir.map(|_| name));
    if report & init::REPORT_DIR_FID != 0 && dirid.is_some() {
        // fanotify_report_child_fid(): with TARGET_FID for entry events, else with FID for
        // non-directories.
        let child_fid = if dirent { target } else { report & init::REPORT_FID != 0 && !ondir };
        if child_fid && id != dirid {
            child = id;
        }
        id = dirid;
        if report & init::REPORT_NAME == 0 {
            name_event = child.is_some();
            file_name = None;
        } else if dirent || !ondir {
            name_event = true;
        }
    } else {
        file_name = None;
    }
    let ev = Ev { mask: m & (mask::EVENTS | mask::ISDIR), inode: NO_NODE, task, name: NO_NAME, dir: NO_NODE };
    if name_event && (file_name.is_some() || child.is_some()) {
        // A DFID_NAME (or DFID) record, then the child's FID record.
        return Ev {
            dir: dirid.unwrap_or(NO_NODE),
            name: file_name.unwrap_or(NO_NAME),
            inode: child.unwrap_or(NO_NODE),
            ..ev
        };
    }
    // A fid event: one object; which record type it is read as depends on the mask it has
    // when it is read (merged events of one object may mix entry and other events).
    Ev { inode: id.unwrap_or(NO_NODE), ..ev }
}

/// How a queued event of a group reporting file handles is read (`copy_info_records_to_user()`):
/// a fid event ([`fid_event`]: one object, no `dir`) becomes a FID record, or a DFID one (for
/// entry events and events on directories, with "." in a DFID_NAME record when names are
/// reported); name events are read as queued.
fn read_as(report: u16, e: Ev) -> Ev {
    if report == 0 || e.dir != NO_NODE || e.inode == NO_NODE || e.mask == mask::OVERFLOW {
        return e;
    }
    let ondir = e.mask & mask::ISDIR != 0;
    if report & init::FID_BITS == init::REPORT_FID {
        e
    } else if report & init::REPORT_NAME != 0 && ondir {
        // "if name was not recorded in an event on a directory, report the name '.'".
        Ev { dir: e.inode, name: DOT_NAME, inode: NO_NODE, ..e }
    } else if e.mask & mask::DIRENT != 0 || ondir {
        Ev { dir: e.inode, inode: NO_NODE, ..e }
    } else {
        e
    }
}

/// What a fanotify mark is on (`FAN_MARK_INODE`, `FAN_MARK_MOUNT`, `FAN_MARK_FILESYSTEM`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MarkObj {
    Inode,
    Mount,
    Fs,
}

/// What an open() does once every permission event allowed it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Access {
    Open,
    Read,
    Write,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Idle,
    /// In open(): waiting for `group`'s answer; delivery resumes after (priority, group).
    PermWait {
        inode: u8,
        group: u8,
        access: Access,
        /// Groups whose marks the wait pins (`fsnotify_prepare_user_wait()` takes the mark at
        /// each list's cursor: this group's, and on the other lists the next group's in
        /// delivery order), one bit per group; closing such a group waits for the answer.
        pins: u8,
    },
    /// close(): waiting until no permission waiter pins one of `group`'s marks
    /// (`fsnotify_destroy_group()` waits for `group->user_waits` to drop to 0).
    UserWait {
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
    exists: bool,
    dir: bool,
    unlinked: bool,
    /// Unlinked while pinned (an open() waiting on it, fanotify events holding its path):
    /// IN_DELETE_SELF and the marks' end come when the last pin goes.
    evict_pending: bool,
    /// Has data (read(1) returns 1 and so sends IN_ACCESS).
    data: bool,
    /// Its name where it is (or was last).
    name: u8,
    /// The parent directory's node (its dentry's `d_parent`): after an rmdir or a new mkdir
    /// of that name, an unlinked file that something still pins keeps the old one.
    parent: u8,
}

/// The model's state.
#[derive(Clone, Debug)]
pub struct Model {
    pub semantics: Semantics,
    /// See [`QUEUE_LIMIT`].
    pub queue_limit: usize,
    groups: [Option<Group>; MAX_GROUPS],
    ngroups: u8,
    marks: [Option<Mark>; MAX_MARKS],
    inodes: [Inode; MAX_NODES],
    nnodes: u8,
    /// The node each path names now (`None`: nothing), and the one it named last.
    entries: [[Option<u8>; MAX_INODES]; MAX_DIRS],
    dirs: [Option<u8>; MAX_DIRS],
    last: [[u8; MAX_INODES + 1]; MAX_DIRS],
    tasks: [Task; MAX_TASKS],
    steps: u16,
    /// Marks made so far (each mark's serial: an inotify watch descriptor).
    made: u16,
}

impl Model {
    pub fn new(semantics: Semantics) -> Model {
        let mut m = Model {
            semantics,
            queue_limit: QUEUE_LIMIT,
            groups: [None; MAX_GROUPS],
            ngroups: 0,
            marks: [None; MAX_MARKS],
            inodes: [Inode::default(); MAX_NODES],
            nnodes: MAX_INODES as u8 + 1,
            entries: [[None; MAX_INODES]; MAX_DIRS],
            dirs: [None; MAX_DIRS],
            last: [[NO_NODE; MAX_INODES + 1]; MAX_DIRS],
            tasks: [Task { state: State::Idle, in_srcu: false, since: 0 }; MAX_TASKS],
            steps: 0,
            made: 0,
        };
        for i in 0..MAX_INODES {
            m.inodes[i] =
                Inode { exists: true, data: true, name: i as u8, parent: MAX_INODES as u8, ..Inode::default() };
            m.entries[0][i] = Some(i as u8);
            m.last[0][i] = i as u8;
        }
        let root = MAX_INODES;
        m.inodes[root] =
            Inode { exists: true, dir: true, data: true, name: NO_NAME, parent: NO_NODE, ..Inode::default() };
        m.dirs[0] = Some(root as u8);
        m.last[0][MAX_INODES] = root as u8;
        m
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

    /// The live groups (one bit each) whose mark on `node` has an event of `ev` in its mask.
    pub fn groups_marking(&self, node: u8, ev: u32) -> u8 {
        self.marks
            .iter()
            .flatten()
            .filter(|mk| mk.inode == node && mk.mask & ev != 0 && self.group(mk.group).is_some())
            .fold(0, |a, mk| a | 1 << mk.group)
    }

    /// How many tasks wait for `group`'s answer to a permission event.
    pub fn perm_waiters(&self, group: u8) -> usize {
        self.tasks.iter().filter(|t| matches!(t.state, State::PermWait { group: g, .. } if g == group)).count()
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

    pub fn group_class(&self, g: u8) -> Option<Class> {
        self.groups.get(g as usize).and_then(|x| x.as_ref()).map(|x| x.class)
    }

    pub fn groups_created(&self) -> u8 {
        self.ngroups
    }

    /// The node a path names now.
    pub fn lookup(&self, p: u8) -> Option<u8> {
        if !path::valid(p) {
            return None;
        }
        let (d, n) = (path::dir(p) as usize, path::name(p));
        if n == path::SELF {
            self.dirs[d]
        } else {
            self.dirs[d]?;
            self.entries[d][n as usize]
        }
    }

    /// The node a path named last (it may be gone); what inotify_rm_watch's wd names.
    fn last_at(&self, p: u8) -> Option<u8> {
        let (d, n) = (path::dir(p) as usize, path::name(p));
        let i = if n == path::SELF { MAX_INODES } else { n as usize };
        Some(self.last[d][i]).filter(|x| *x != NO_NODE)
    }

    pub fn is_dir(&self, node: u8) -> bool {
        self.inodes.get(node as usize).is_some_and(|i| i.dir)
    }

    /// The [`init::FID_BITS`] a group reports with (0: fds, or no such group).
    pub fn group_report(&self, g: u8) -> u16 {
        self.group(g).map_or(0, |x| x.report)
    }

    fn create_group(&mut self, class: Class, report: u16, unpriv: bool) -> Ret {
        if self.ngroups as usize >= MAX_GROUPS {
            return Ret::Err(EMFILE);
        }
        let g = self.ngroups;
        self.groups[g as usize] = Some(Group { class, report, unpriv, alive: true, queue: List::default() });
        self.ngroups += 1;
        Ret::Ok(g as i32)
    }

    fn group(&self, g: u8) -> Option<&Group> {
        self.groups.get(g as usize).and_then(|x| x.as_ref()).filter(|x| x.alive)
    }

    fn group_mut(&mut self, g: u8) -> Option<&mut Group> {
        self.groups.get_mut(g as usize).and_then(|x| x.as_mut()).filter(|x| x.alive)
    }

    /// What `/proc/<pid>/fdinfo/<fd>` of `group` shows of its marks (fs/notify/fdinfo.c:
    /// `inotify_fdinfo()`, `fanotify_fdinfo()`), one or two entries per mark; the order is the
    /// kernel's list order, which the comparison does not look at.
    fn fdinfo(&self, group: u8, out: &mut Outcome) -> Result<Ret, Invalid> {
        let Some(g) = self.group(group) else {
            return Ok(Ret::Err(EBADF));
        };
        let inotify = g.class == Class::Inotify;
        let mut n = 0;
        for mk in self.marks.iter().flatten().filter(|m| m.group == group) {
            n += 1;
            // inotify_mark_user_mask(): the events, and IN_EXCL_UNLINK / IN_ONESHOT from the
            // mark's flags (FS_EVENT_ON_CHILD and FS_UNMOUNT are not shown).
            let (m, f) = if inotify {
                (mk.mask & mask::EVENTS, mk.flags & (flag::ONESHOT | flag::EXCL_UNLINK))
            } else {
                // fanotify_mark_user_flags(): FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE,
                // and FAN_MARK_IGNORE when the mark's ignore mask is that kind
                // (FSNOTIFY_MARK_FLAG_HAS_IGNORE_FLAGS).
                (mk.mask, mk.flags & (flag::SURV | flag::IGNORE | flag::EVICTABLE))
            };
            let task = fdinfo_flags_to_task(f);
            if !out.events.push(Ev { mask: m, inode: mk.inode, task, name: FDINFO_MARK, dir: NO_NODE }) {
                return Err(Invalid::Capacity);
            }
            if !inotify
                && mk.ignore != 0
                && !out.events.push(Ev {
                    mask: mk.ignore,
                    inode: mk.inode,
                    task: 0,
                    name: FDINFO_IGNORED,
                    dir: NO_NODE,
                })
            {
                return Err(Invalid::Capacity);
            }
        }
        Ok(Ret::Ok(n))
    }

    /// Whether some task holds `node` open for write: a write's open() waiting for a
    /// permission answer (the model's other writes are whole steps).
    fn open_for_write(&self, node: u8) -> bool {
        self.tasks
            .iter()
            .any(|t| matches!(t.state, State::PermWait { inode, access: Access::Write, .. } if inode == node))
    }

    fn mark_of(&self, group: u8, inode: u8) -> Option<usize> {
        self.marks.iter().position(|m| m.is_some_and(|m| m.group == group && m.inode == inode))
    }

    /// A new object named `name` in directory `d<parent_dir>`.
    fn new_node(&mut self, dir: bool, parent_dir: u8, name: u8) -> Result<u8, Invalid> {
        if self.nnodes as usize >= MAX_NODES {
            return Err(Invalid::Capacity);
        }
        let n = self.nnodes;
        self.nnodes += 1;
        let parent = self.dirs[parent_dir as usize].unwrap_or(NO_NODE);
        self.inodes[n as usize] = Inode { exists: true, dir, parent, name, ..Inode::default() };
        Ok(n)
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
        let path_ok = |p: u8| if path::valid(p) { Ok(p) } else { Err(Invalid::InodeOutOfRange { inode: p }) };
        match s.op {
            Op::AddMark { inode, .. }
            | Op::RemoveMark { inode, .. }
            | Op::Watch { inode, .. }
            | Op::FsMark { inode, .. }
            | Op::Open { inode }
            | Op::Cat { inode }
            | Op::Write { inode }
            | Op::Attrib { inode }
            | Op::Unlink { inode }
            | Op::Create { inode }
            | Op::Mkdir { inode }
            | Op::Rmdir { inode } => {
                path_ok(inode)?;
            }
            Op::Rename { from, to } => {
                path_ok(from)?;
                path_ok(to)?;
            }
            _ => {}
        }
        let step_no = self.steps;
        let mut out = Outcome::default();
        let mut probe = self.clone();
        probe.steps = probe.steps.wrapping_add(1);
        let ret = probe.take(s, step_no, &mut out)?;
        *self = probe;
        out.ret = ret;
        Ok(out)
    }

    fn take(&mut self, s: Step, step_no: u16, out: &mut Outcome) -> Result<Option<Ret>, Invalid> {
        let t = s.task as usize;
        let ret = match s.op {
            Op::CreateGroup(class) => Some(self.create_group(class, 0, false)),
            Op::FidGroup { report, unpriv } => {
                if report & !init::FID_BITS != 0 {
                    return Err(Invalid::BadArgs);
                }
                match fanotify_init_errno(report, 0, unpriv) {
                    Some(e) => Some(Ret::Err(e)),
                    None => Some(self.create_group(Class::FanNotif, report, unpriv)),
                }
            }
            Op::AddMark { group, inode, mask } => Some(self.add_mark(group, inode, mask, 0, MarkObj::Inode)?),
            Op::Watch { group, inode, mask, flags } => {
                Some(self.add_mark(group, inode, mask, flags, MarkObj::Inode)?)
            }
            Op::FsMark { group, inode, mask, flags, mount } => {
                Some(self.add_mark(group, inode, mask, flags, if mount { MarkObj::Mount } else { MarkObj::Fs })?)
            }
            Op::RemoveMark { group, inode } => Some(self.remove_mark(group, inode)?),
            Op::PipeMark { group, mask, flags, obj } => Some(self.add_mark(group, path::PIPE, mask, flags, obj)?),
            Op::Open { inode } | Op::Cat { inode } | Op::Write { inode } => {
                let access = match s.op {
                    Op::Open { .. } => Access::Open,
                    Op::Cat { .. } => Access::Read,
                    _ => Access::Write,
                };
                match self.lookup(inode) {
                    None => Some(Ret::Err(ENOENT)),
                    // may_open() refuses to open a directory for writing before any event.
                    Some(n) if access == Access::Write && self.is_dir(n) => Some(Ret::Err(EISDIR)),
                    Some(n) => {
                        self.tasks[t].since = step_no;
                        self.deliver_open(s.task, n, access, None, out)?
                    }
                }
            }
            Op::ReadEvents { group } => Some(self.read_events(group, out)),
            Op::Answer { group, waiter, allow } => Some(self.answer(group, waiter, allow, out)?),
            Op::Attrib { inode } => match self.lookup(inode) {
                None => Some(Ret::Err(ENOENT)),
                Some(n) => {
                    // notify_change() -> fsnotify_change(): a dentry event, so a watching
                    // parent hears it too.
                    self.notify(mask::ATTRIB, n, s.task, true, false)?;
                    Some(Ret::Ok(0))
                }
            },
            Op::Create { inode } => {
                let (d, nm) = (path::dir(inode), path::name(inode));
                if path::is_dir(inode) {
                    return Err(Invalid::BadArgs);
                }
                match self.dirs[d as usize] {
                    None => Some(Ret::Err(ENOENT)),
                    Some(_) if self.entries[d as usize][nm as usize].is_some() => Some(Ret::Err(EEXIST)),
                    Some(dn) => {
                        let n = self.new_node(false, d, nm)?;
                        self.entries[d as usize][nm as usize] = Some(n);
                        self.last[d as usize][nm as usize] = n;
                        self.notify_dirent(mask::CREATE, dn, nm, n, s.task)?;
                        Some(Ret::Ok(0))
                    }
                }
            }
            Op::Mkdir { inode } => {
                let k = path::dir(inode);
                if !path::is_dir(inode) || k == 0 {
                    return Err(Invalid::BadArgs);
                }
                if self.dirs[k as usize].is_some() {
                    Some(Ret::Err(EEXIST))
                } else {
                    let n = self.new_node(true, 0, path::dir_entry_name(k))?;
                    self.dirs[k as usize] = Some(n);
                    self.last[k as usize][MAX_INODES] = n;
                    self.entries[k as usize] = [None; MAX_INODES];
                    let name = path::dir_entry_name(k);
                    self.notify_dirent(mask::CREATE | mask::ISDIR, MAX_INODES as u8, name, n, s.task)?;
                    Some(Ret::Ok(0))
                }
            }
            Op::Rmdir { inode } => {
                let k = path::dir(inode);
                if k == 0 && path::is_dir(inode) {
                    return Err(Invalid::BadArgs);
                }
                if !path::is_dir(inode) {
                    Some(Ret::Err(if self.lookup(inode).is_some() { ENOTDIR } else { ENOENT }))
                } else if let Some(n) = self.dirs[k as usize] {
                    if self.entries[k as usize].iter().any(Option::is_some) {
                        Some(Ret::Err(ENOTEMPTY))
                    } else {
                        self.dirs[k as usize] = None;
                        self.unlinked(n, s.task)?;
                        let name = path::dir_entry_name(k);
                        self.notify_dirent(mask::DELETE | mask::ISDIR, MAX_INODES as u8, name, n, s.task)?;
                        Some(Ret::Ok(0))
                    }
                } else {
                    Some(Ret::Err(ENOENT))
                }
            }
            Op::Unlink { inode } => match self.lookup(inode) {
                None => Some(Ret::Err(ENOENT)),
                // unlink(2) of a directory: EISDIR on Linux.
                Some(_) if path::is_dir(inode) => Some(Ret::Err(EISDIR)),
                Some(n) => {
                    let d = path::dir(inode) as usize;
                    // vfs_unlink(): fsnotify_link_count() (IN_ATTRIB on the file only), then
                    // d_delete_notify(): the dentry goes (IN_DELETE_SELF, IN_IGNORED if nothing
                    // pins it), then IN_DELETE to the directory.
                    self.notify(mask::ATTRIB, n, s.task, false, false)?;
                    self.entries[d][path::name(inode) as usize] = None;
                    self.unlinked(n, s.task)?;
                    let dn = self.dirs[d].expect("looked up");
                    self.notify_dirent(mask::DELETE, dn, path::name(inode), n, s.task)?;
                    Some(Ret::Ok(0))
                }
            },
            Op::Rename { from, to } => {
                if path::is_dir(from) || path::is_dir(to) {
                    return Err(Invalid::BadArgs);
                }
                let (fd, td) = (path::dir(from) as usize, path::dir(to) as usize);
                match (self.lookup(from), self.dirs[td]) {
                    (None, _) | (_, None) => Some(Ret::Err(ENOENT)),
                    _ if from == to => Some(Ret::Ok(0)),
                    (Some(n), Some(tdn)) => {
                        let fdn = self.dirs[fd].expect("looked up");
                        let target = self.entries[td][path::name(to) as usize];
                        self.entries[fd][path::name(from) as usize] = None;
                        self.entries[td][path::name(to) as usize] = Some(n);
                        self.last[td][path::name(to) as usize] = n;
                        self.inodes[n as usize].parent = tdn;
                        self.inodes[n as usize].name = path::name(to);
                        // fsnotify_move(): IN_MOVED_FROM, IN_MOVED_TO, IN_ATTRIB on a replaced
                        // target, IN_MOVE_SELF; the target's dentry goes at the final dput.
                        self.notify_dirent(mask::MOVED_FROM, fdn, path::name(from), n, s.task)?;
                        self.notify_dirent(mask::MOVED_TO, tdn, path::name(to), n, s.task)?;
                        if let Some(tg) = target {
                            self.notify(mask::ATTRIB, tg, s.task, false, false)?;
                        }
                        self.notify(mask::MOVE_SELF, n, s.task, false, false)?;
                        if let Some(tg) = target {
                            self.unlinked(tg, s.task)?;
                        }
                        Some(Ret::Ok(0))
                    }
                }
            }
            Op::Close { group } => {
                self.tasks[t].since = step_no;
                self.close(s.task, group, out)?
            }
            Op::Fdinfo { group } => Some(self.fdinfo(group, out)?),
            Op::Init { flags, fflags, unpriv } => Some(match fanotify_init_errno(flags, fflags, unpriv) {
                Some(e) => Ret::Err(e),
                None => Ret::Ok(0),
            }),
        };
        // Reading, answering and closing drop events that may have pinned an unlinked file.
        // Who drops the last reference: the reader (the event's path, and the fd the reader
        // closes at once) or the closer; after an answer the released waiter (freeing the
        // event, closing its file; the guest closes the event's fd before it answers).
        match s.op {
            Op::ReadEvents { .. } | Op::Close { .. } => self.maybe_evict_all(s.task)?,
            Op::Answer { waiter, .. } => self.maybe_evict_all(waiter)?,
            _ => {}
        }
        Ok(ret)
    }

    /// A node lost its last name: it goes now unless something pins its dentry.
    fn unlinked(&mut self, n: u8, task: u8) -> Result<(), Invalid> {
        self.inodes[n as usize].unlinked = true;
        if self.pins(n) == 0 {
            self.evict(n, task)
        } else {
            self.inodes[n as usize].evict_pending = true;
            Ok(())
        }
    }

    fn add_mark(&mut self, group: u8, inode: u8, m: u32, flags: u16, obj: MarkObj) -> Result<Ret, Invalid> {
        if obj != MarkObj::Inode && flags & !flag::FANOTIFY != 0 {
            return Err(Invalid::BadArgs);
        }
        // A group number never made is fanotify_mark(2) on a bad fd (what the guest calls).
        let class = self.group_class(group);
        let inotify = class == Some(Class::Inotify);
        let pipe = inode == path::PIPE;
        // The pipe is always marked with fanotify_mark(2) (on an inotify fd: EINVAL).
        let via_inotify = inotify && obj == MarkObj::Inode && !pipe;
        if flags & !(if via_inotify { flag::INOTIFY } else { flag::FANOTIFY }) != 0 {
            return Err(Invalid::BadArgs);
        }
        if via_inotify {
            return self.inotify_add_watch(group, inode, m, flags);
        }
        // do_fanotify_mark(), in its order: mask bits, then the fd, then the group's class,
        // then events that need FID reporting, then the path.
        if m & !(mask::EVENTS | mask::ISDIR | mask::ON_CHILD) != 0 || m == 0 {
            return Ok(Ret::Err(EINVAL));
        }
        // "We don't allow FAN_MARK_IGNORE & FAN_MARK_IGNORED_MASK together".
        if flags & flag::IGNORED != 0 && flags & flag::IGNORE != 0 {
            return Ok(Ret::Err(EINVAL));
        }
        let legacy_ignore = flags & flag::IGNORED != 0;
        let new_ignore = flags & flag::IGNORE != 0;
        let any_ignore = legacy_ignore || new_ignore;
        let add = flags & flag::REMOVE == 0;
        // "Event flags (FAN_ONDIR, FAN_EVENT_ON_CHILD) have no effect with
        // FAN_MARK_IGNORED_MASK": they are masked out (and may not be removed either).
        let (mut m, mut umask) =
            if legacy_ignore { (m & !(mask::ISDIR | mask::ON_CHILD), mask::ISDIR | mask::ON_CHILD) } else { (m, 0) };
        let Some(class) = class.filter(|_| self.group(group).is_some()) else {
            return Ok(Ret::Err(EBADF));
        };
        // fanotify_mark(2) on an inotify fd: "verify that this is indeed an fanotify instance".
        if inotify {
            return Ok(Ret::Err(EINVAL));
        }
        // "An unprivileged user is not allowed to setup mount nor filesystem marks. This also
        // includes setting up such marks by a group that was initialized by an unprivileged
        // user" (and removing them: the check comes before the command).
        if obj != MarkObj::Inode && self.group(group).is_some_and(|g| g.unpriv) {
            return Ok(Ret::Err(EPERM));
        }
        if m & mask::PERM != 0 && !class.can_perm() {
            return Ok(Ret::Err(EINVAL));
        }
        // "Evictable is only relevant for inode marks".
        if flags & flag::EVICTABLE != 0 && obj != MarkObj::Inode {
            return Ok(Ret::Err(EINVAL));
        }
        // "Events that do not carry enough information to report event->fd require a group
        // that supports reporting fid. Those events are not supported on a mount mark."
        let report = self.group_report(group);
        if m & !(mask::FAN_FD | mask::ISDIR | mask::ON_CHILD) != 0 && (report == 0 || obj == MarkObj::Mount) {
            return Ok(Ret::Err(EINVAL));
        }
        let Some(node) = (if pipe { Some(PIPE_NODE) } else { self.lookup(inode) }) else {
            return Ok(Ret::Err(ENOENT));
        };
        if flags & flag::ONLYDIR != 0 && !self.is_dir(node) {
            return Ok(Ret::Err(ENOTDIR));
        }
        // fanotify_events_supported(): "mount and sb marks are not allowed on kernel internal
        // pseudo fs, like pipe_mnt" (SB_NOUSER).
        if add && pipe && obj != MarkObj::Inode {
            return Ok(Ret::Err(EINVAL));
        }
        // fanotify_events_supported(): with FAN_MARK_IGNORE or in a FAN_REPORT_TARGET_FID group
        // (5.17+ APIs, so strict) the directory-only bits on a non-directory's inode mark are
        // ENOTDIR.
        let strict = new_ignore || report & init::REPORT_TARGET_FID != 0;
        if add && strict && obj == MarkObj::Inode && !self.is_dir(node) && m & mask::DIR_ONLY != 0 {
            return Ok(Ret::Err(ENOTDIR));
        }
        let on_dir = obj == MarkObj::Inode && self.is_dir(node);
        if pipe && obj != MarkObj::Inode {
            // Removal. Kernel fact (a corpus run): pipefs reports a nonzero fsid, so
            // fanotify_test_fsid() passes, and fanotify_test_fid() refuses a filesystem or mount
            // mark where file handles cannot be decoded (EOPNOTSUPP); a group reporting fds
            // finds no such mark (ENOENT).
            return Ok(Ret::Err(if report != 0 { EOPNOTSUPP } else { ENOENT }));
        }
        // "FAN_MARK_IGNORE requires SURV_MODIFY for sb/mount/dir marks": EINVAL for a
        // filesystem or mount mark, EISDIR for a directory.
        if add && new_ignore && flags & flag::SURV == 0 {
            if obj != MarkObj::Inode {
                return Ok(Ret::Err(EINVAL));
            }
            if self.is_dir(node) {
                return Ok(Ret::Err(EISDIR));
            }
        }
        // FAN_EVENT_ON_CHILD means nothing on a non-directory: masked out, and it is the only
        // umask bit ("umask = FAN_EVENT_ON_CHILD" in do_fanotify_mark() replaces the ignore
        // mask's FAN_ONDIR: a legacy ignore-mask removal keeps a mark left with FAN_ONDIR).
        if !self.is_dir(node) {
            m &= !mask::ON_CHILD;
            umask = mask::ON_CHILD;
        }
        // Filesystem and mount marks: likewise, and the mark is on the filesystem (mount),
        // whichever object named it ("umask = FAN_EVENT_ON_CHILD" in do_fanotify_mark()).
        let node = match obj {
            MarkObj::Inode => node,
            MarkObj::Mount | MarkObj::Fs => {
                m &= !mask::ON_CHILD;
                umask = mask::ON_CHILD;
                if obj == MarkObj::Mount {
                    MNT_NODE
                } else {
                    SB_NODE
                }
            }
        };
        // "If group needs to report parent fid, register for getting events with parent/name
        // info for non-directory": FAN_EVENT_ON_CHILD on such a mark (fdinfo shows it), which
        // makes `__fsnotify_parent()` pass the parent and name for its events.
        if report & init::REPORT_DIR_FID != 0 && add && !any_ignore && !on_dir {
            m |= mask::ON_CHILD;
        }
        // do_fanotify_mark(): "If some other task has this inode open for write we should not
        // add an ignore mask, unless that ignore mask is supposed to survive modification
        // changes anyway" -- and it returns 0. Here a file is open for write while a write's
        // open() waits for a permission answer (write access is taken before that event).
        if add && any_ignore && flags & flag::SURV == 0 && self.open_for_write(node) {
            return Ok(Ret::Ok(0));
        }
        let existing = self.mark_of(group, node);
        if flags & flag::REMOVE != 0 {
            let Some(i) = existing else {
                return Ok(Ret::Err(ENOENT));
            };
            let mk = self.marks[i].as_mut().expect("found");
            let m = m & !umask;
            if any_ignore {
                mk.ignore &= !m;
            } else {
                mk.mask &= !m;
            }
            // "Destroy mark when only umask bits remain."
            if (mk.mask | mk.ignore) & !umask == 0 {
                self.destroy_mark(i)?;
            }
            return Ok(Ret::Ok(0));
        }
        let i = match existing {
            Some(i) => i,
            None => {
                let slot = self.marks.iter().position(Option::is_none).ok_or(Invalid::Capacity)?;
                self.made += 1;
                // fanotify_add_new_mark(): an evictable mark holds no inode reference.
                let f = flags & flag::EVICTABLE;
                self.marks[slot] = Some(Mark { group, inode: node, mask: 0, ignore: 0, flags: f, wd: self.made });
                slot
            }
        };
        let mk = self.marks[i].as_mut().expect("live");
        // fanotify_may_update_existing_mark(): a mark that pins its inode cannot become
        // evictable, an ignore mask with effective flags cannot go back to the legacy kind, nor
        // one that survives modification to one that does not.
        if (flags & flag::EVICTABLE != 0 && mk.flags & flag::EVICTABLE == 0)
            || (legacy_ignore && mk.flags & flag::IGNORE != 0)
            || (new_ignore && flags & flag::SURV == 0 && mk.flags & flag::SURV != 0)
        {
            return Ok(Ret::Err(EEXIST));
        }
        // fanotify_mark_update_flags(): "NO_IREF may be removed from a mark, but not added".
        if flags & flag::EVICTABLE == 0 {
            mk.flags &= !flag::EVICTABLE;
        }
        if any_ignore {
            mk.ignore |= m;
            // fanotify_mark_update_flags(): the mark now has FSNOTIFY_MARK_FLAG_HAS_IGNORE_FLAGS
            // (kept here as flag::IGNORE) and, once asked, survives modification.
            mk.flags |= flags & (flag::SURV | flag::IGNORE);
        } else {
            mk.mask |= m;
        }
        Ok(Ret::Ok(0))
    }

    /// inotify_add_watch(2): an inotify mark always watches children of a directory
    /// (`inotify_arg_to_mask()`); without IN_MASK_ADD the mask *and flags* are replaced.
    fn inotify_add_watch(&mut self, group: u8, inode: u8, m: u32, flags: u16) -> Result<Ret, Invalid> {
        // Bits inotify has no name for (a permission event) or no bits at all: EINVAL before
        // the fd is looked at.
        if m & !(mask::EVENTS & !mask::OPEN_PERM) != 0 || (m == 0 && flags == 0) {
            return Ok(Ret::Err(EINVAL));
        }
        if self.group(group).is_none() {
            return Ok(Ret::Err(EBADF));
        }
        if flags & flag::MASK_ADD != 0 && flags & flag::MASK_CREATE != 0 {
            return Ok(Ret::Err(EINVAL));
        }
        let Some(node) = self.lookup(inode) else {
            return Ok(Ret::Err(ENOENT));
        };
        if flags & flag::ONLYDIR != 0 && !self.is_dir(node) {
            return Ok(Ret::Err(ENOTDIR));
        }
        let child = if self.is_dir(node) { mask::ON_CHILD } else { 0 };
        let keep = flag::ONESHOT | flag::EXCL_UNLINK;
        if let Some(i) = self.mark_of(group, node) {
            if flags & flag::MASK_CREATE != 0 {
                return Ok(Ret::Err(EEXIST));
            }
            let mk = self.marks[i].as_mut().expect("found");
            if flags & flag::MASK_ADD == 0 {
                mk.mask = 0;
                mk.flags = 0;
            }
            mk.mask |= m | child;
            mk.flags |= flags & keep;
            return Ok(Ret::Ok(0));
        }
        let slot = self.marks.iter().position(Option::is_none).ok_or(Invalid::Capacity)?;
        self.made += 1;
        self.marks[slot] =
            Some(Mark { group, inode: node, mask: m | child, ignore: 0, flags: flags & keep, wd: self.made });
        Ok(Ret::Ok(0))
    }

    fn remove_mark(&mut self, group: u8, inode: u8) -> Result<Ret, Invalid> {
        let Some(g) = self.group(group) else {
            return Ok(Ret::Err(EBADF));
        };
        let class = g.class;
        if class != Class::Inotify {
            // fanotify_mark(FAN_MARK_REMOVE) of every event bit the class may hold (and the
            // event flags): the mark goes unless an ignore mask remains.
            let every = if g.report == 0 { mask::FAN_FD } else { mask::EVENTS };
            let all = every & !if class.can_perm() { 0 } else { mask::PERM };
            return self.add_mark(group, inode, all | mask::ISDIR | mask::ON_CHILD, flag::REMOVE, MarkObj::Inode);
        }
        // inotify names the watch by wd: the object the path named when it was watched.
        let Some(m) = self.last_at(inode).and_then(|n| self.mark_of(group, n)) else {
            return Ok(Ret::Err(EINVAL));
        };
        self.destroy_mark(m)?;
        Ok(Ret::Ok(0))
    }

    /// Detaches a mark. Destruction finishes in the reaper, after a grace period, without
    /// blocking the caller; inotify tells its listener with IN_IGNORED.
    fn destroy_mark(&mut self, m: usize) -> Result<(), Invalid> {
        let mark = self.marks[m].take().expect("live mark");
        let limit = self.queue_limit;
        if let Some(g) = self.group_mut(mark.group) {
            if g.class == Class::Inotify {
                g.notify_wd(
                    Ev { mask: mask::IGNORED, inode: mark.inode, task: 0, name: NO_NAME, dir: NO_NODE },
                    mark.wd,
                    limit,
                )?;
            }
        }
        Ok(())
    }

    /// The last dentry of an unlinked node goes (`fsnotify_inoderemove()`, in `task`):
    /// IN_DELETE_SELF, then its marks are destroyed (IN_IGNORED).
    fn evict(&mut self, inode: u8, task: u8) -> Result<(), Invalid> {
        self.inodes[inode as usize].evict_pending = false;
        if !self.inodes[inode as usize].exists {
            return Ok(());
        }
        self.notify(mask::DELETE_SELF, inode, task, false, false)?;
        self.inodes[inode as usize].exists = false;
        for m in 0..MAX_MARKS {
            if self.marks[m].is_some_and(|mk| mk.inode == inode) {
                self.destroy_mark(m)?;
            }
        }
        // The dentry's end drops its parent's, which may have been the last.
        let p = self.inodes[inode as usize].parent;
        if p != NO_NODE {
            self.maybe_evict(p, task)?;
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
            // Events with file handles hold no path.
            .filter(|g| g.alive && g.class != Class::Inotify && g.report == 0)
            .map(|g| g.queue.as_slice().iter().filter(|q| q.ev.inode == inode).count())
            .sum();
        // A directory removed while an unlinked file in it is pinned: that file's dentry holds
        // its parent's (`d_delete()` only unhashes a dentry others hold).
        let children = self.inodes[..self.nnodes as usize]
            .iter()
            .filter(|c| c.exists && c.evict_pending && c.parent == inode)
            .count();
        waiters + events + children
    }

    /// A pending eviction of `inode` happens when nothing pins it any more, in `task` (the one
    /// dropping the last reference).
    fn maybe_evict(&mut self, inode: u8, task: u8) -> Result<(), Invalid> {
        if self.inodes[inode as usize].evict_pending && self.pins(inode) == 0 {
            self.evict(inode, task)?;
        }
        Ok(())
    }

    fn maybe_evict_all(&mut self, task: u8) -> Result<(), Invalid> {
        for i in 0..self.nnodes {
            self.maybe_evict(i, task)?;
        }
        Ok(())
    }

    /// `__fsnotify_parent()`: the directory holding `node` when some mark on it watches children
    /// (FS_EVENT_ON_CHILD in its i_fsnotify_mask) and wants event `ev` (with its type bit).
    fn watching_parent(&self, node: u8, ev: u32) -> Option<u8> {
        let ino = self.inodes[node as usize];
        let p = Some(ino.parent).filter(|p| *p != NO_NODE)?;
        let pm = self.object_mask(p);
        (pm & mask::ON_CHILD != 0 && pm & mask::ON_CHILD_POSSIBLE & ev != 0).then_some(p)
    }

    /// `group`'s mark on the watching `parent` if it takes part in a child's event
    /// ([`Mark::on_children`]).
    fn parent_mark(&self, group: u8, parent: Option<u8>) -> Option<usize> {
        parent.and_then(|p| self.mark_of(group, p)).filter(|i| self.marks[*i].is_some_and(|m| m.on_children()))
    }

    /// Union of the object's marks' interest (`i_fsnotify_mask`).
    fn object_mask(&self, node: u8) -> u32 {
        self.marks.iter().flatten().filter(|m| m.inode == node).fold(0, |a, m| a | m.calc())
    }

    /// One fsnotify() call for event `ev` (one event type) on `node` by `task`. `dentry`:
    /// the event came through `fsnotify_parent()` (a path or dentry event: a watching parent
    /// may hear it with the child's name) rather than `fsnotify_inode()`; `path`: it carries
    /// a path (open/read/write/close), which fanotify needs to report an fd.
    fn notify(&mut self, ev: u32, node: u8, task: u8, dentry: bool, path: bool) -> Result<(), Invalid> {
        let ino = self.inodes[node as usize];
        let is_dir = ino.dir;
        let ev = ev | if is_dir { mask::ISDIR } else { 0 };
        let parent = if dentry { self.watching_parent(node, ev) } else { None };
        let limit = self.queue_limit;
        for g in 0..self.ngroups {
            let Some(class) = self.group(g).map(|x| x.class) else {
                continue;
            };
            let im = self.mark_of(g, node);
            let pm = self.parent_mark(g, parent);
            // The filesystem's mark, and the mount's for an event with a path.
            let sm = self.mark_of(g, SB_NODE);
            let mm = if path { self.mark_of(g, MNT_NODE) } else { None };
            if im.is_none() && pm.is_none() && sm.is_none() && mm.is_none() {
                continue;
            }
            // send_to_group(): a modification clears the ignore masks of the marks that
            // take part, unless they survive modification.
            if ev & mask::MODIFY != 0 {
                for i in [im, pm, sm, mm].into_iter().flatten() {
                    let mk = self.marks[i].as_mut().expect("live");
                    if mk.flags & flag::SURV == 0 {
                        mk.ignore = 0;
                    }
                }
            }
            let (imk, pmk) = (im.and_then(|i| self.marks[i]), pm.and_then(|i| self.marks[i]));
            let (smk, mmk) = (sm.and_then(|i| self.marks[i]), mm.and_then(|i| self.marks[i]));
            let (mut marks_mask, mut ignore) = (0, 0);
            for (mk, parent_type) in [(imk, false), (pmk, true), (smk, false), (mmk, false)] {
                if let Some(mk) = mk {
                    marks_mask |= mk.mask;
                    ignore |= mk.effective_ignore(is_dir, parent_type);
                }
            }
            if ev & mask::EVENTS & marks_mask & !ignore == 0 {
                continue;
            }
            let unlinked = ino.unlinked;
            if class == Class::Inotify {
                // fsnotify_handle_event(): once to the parent's watch with the name, once to
                // the child's own watch without; each checks its own mask and IN_EXCL_UNLINK
                // (path events on an unlinked child are dropped). IN_ISDIR is not reported
                // with IN_DELETE_SELF/IN_MOVE_SELF.
                let out = if ev & (mask::DELETE_SELF | mask::MOVE_SELF) != 0 { ev & !mask::ISDIR } else { ev };
                for (mk, idx, on, name) in [(pmk, pm, parent, ino.name), (imk, im, Some(node), NO_NAME)] {
                    let (Some(mk), Some(idx), Some(on)) = (mk, idx, on) else {
                        continue;
                    };
                    if mk.flags & flag::EXCL_UNLINK != 0 && path && unlinked {
                        continue;
                    }
                    if ev & mk.mask & mask::EVENTS == 0 || self.marks[idx].is_none() {
                        continue;
                    }
                    let name = if name == NO_NAME { NO_NAME } else { name };
                    let grp = self.group_mut(g).expect("live");
                    grp.notify_wd(Ev { mask: out, inode: on, task: 0, name, dir: NO_NODE }, mk.wd, limit)?;
                    if mk.flags & flag::ONESHOT != 0 {
                        self.destroy_mark(idx)?;
                    }
                }
                continue;
            }
            // fanotify_group_event_mask(), fd reporting: only events with a path, on regular
            // files and directories; a mark applies to a directory only with FAN_ONDIR and to
            // a child only with FAN_EVENT_ON_CHILD; legacy ignore masks apply to both (their
            // flags are implied). FAN_ONDIR is not reported in this mode.
            // fanotify_group_event_mask(): reporting fds needs a path; reporting file handles
            // does not (see fid_event() for what it reports).
            let report = self.group_report(g);
            if report == 0 && !path {
                continue;
            }
            // Filesystem and mount marks apply like the object's own (to a directory only with
            // FAN_ONDIR).
            let mut fmask = 0;
            for (mk, parent_type) in [(imk, false), (pmk, true), (smk, false), (mmk, false)] {
                let Some(mk) = mk else {
                    continue;
                };
                if is_dir && mk.mask & mask::ISDIR == 0 {
                    continue;
                }
                if parent_type && mk.mask & mask::ON_CHILD == 0 {
                    continue;
                }
                fmask |= mk.mask;
            }
            let test = ev & fmask & !ignore & (mask::EVENTS | mask::ISDIR);
            if test & mask::EVENTS == 0 {
                continue;
            }
            let e = if report == 0 {
                Ev { mask: test & mask::EVENTS, inode: node, task, name: NO_NAME, dir: NO_NODE }
            } else {
                // `__fsnotify_parent()` passes the parent and the name for a non-directory's
                // event when a mark wants them (a DIR_FID group's marks always do: see
                // add_mark()) or the parent watches children; `fsnotify_inode()` passes none.
                let dir = if dentry && !is_dir { Some(ino.parent).filter(|p| *p != NO_NODE) } else { None };
                // "Do we have a directory inode to report?"
                if report & init::REPORT_FID == 0 && dir.is_none() && !is_dir {
                    continue;
                }
                fid_event(report, test, node, dir, ino.name, task, false)
            };
            self.group_mut(g).expect("live").notify(e, limit)?;
        }
        Ok(())
    }

    /// A directory entry event (create, delete, moves) about `child`, by `task`: to the
    /// directory's own marks with the entry's name, and to filesystem marks. fanotify hears
    /// them only when it reports file handles (`fsnotify_name()` has no path).
    fn notify_dirent(&mut self, ev: u32, dir: u8, name: u8, child: u8, task: u8) -> Result<(), Invalid> {
        let limit = self.queue_limit;
        for g in 0..self.ngroups {
            if self.group_report(g) != 0 {
                self.notify_dirent_fid(g, ev, dir, name, child, task)?;
                continue;
            }
            if self.group(g).map(|x| x.class) != Some(Class::Inotify) {
                continue;
            }
            let Some(i) = self.mark_of(g, dir) else {
                continue;
            };
            let mk = self.marks[i].expect("live");
            if ev & mk.mask & mask::EVENTS == 0 {
                continue;
            }
            let grp = self.group_mut(g).expect("live");
            grp.notify_wd(Ev { mask: ev, inode: dir, task: 0, name, dir: NO_NODE }, mk.wd, limit)?;
            if mk.flags & flag::ONESHOT != 0 {
                self.destroy_mark(i)?;
            }
        }
        Ok(())
    }

    /// [`Model::notify_dirent`] for group `g`, which reports file handles: the directory's
    /// inode mark and the filesystem's mark (no mount mark: no path), each applying to a
    /// subdirectory's entry only with FAN_ONDIR.
    fn notify_dirent_fid(&mut self, g: u8, ev: u32, dir: u8, name: u8, child: u8, task: u8) -> Result<(), Invalid> {
        let ondir = ev & mask::ISDIR != 0;
        let (mut fmask, mut ignore) = (0, 0);
        for mk in [self.mark_of(g, dir), self.mark_of(g, SB_NODE)].into_iter().flatten().filter_map(|i| self.marks[i]) {
            ignore |= mk.effective_ignore(ondir, false);
            if !ondir || mk.mask & mask::ISDIR != 0 {
                fmask |= mk.mask;
            }
        }
        let test = ev & fmask & !ignore & (mask::EVENTS | mask::ISDIR);
        if test & mask::EVENTS == 0 {
            return Ok(());
        }
        let e = fid_event(self.group_report(g), test, child, Some(dir), name, task, true);
        let limit = self.queue_limit;
        self.group_mut(g).expect("live").notify(e, limit)
    }

    /// The next group interested in a permission event on `inode`, after `after`
    /// (priority, group) in delivery order: higher priority first, then group id.
    fn next_perm_group(&self, inode: u8, after: Option<(u8, u8)>) -> Option<u8> {
        let key = |g: u8| (core::cmp::Reverse(self.group(g).map_or(0, |x| x.class.priority())), g);
        let is_dir = self.inodes[inode as usize].dir;
        let parent = self.watching_parent(inode, mask::OPEN_PERM | if is_dir { mask::ISDIR } else { 0 });
        let mut best: Option<u8> = None;
        for g in 0..self.ngroups {
            if !self.group(g).is_some_and(|x| x.class.can_perm()) {
                continue;
            }
            // The group's marks on the file, its mount and its filesystem (and on a directory
            // watching its children): the ignore mask of any of them applies to all
            // (send_to_group(), fsnotify_effective_ignore_mask()).
            let pm = self.parent_mark(g, parent);
            let (mut want, mut ignore) = (0, 0);
            for (i, parent_type) in [
                (self.mark_of(g, inode), false),
                (pm, true),
                (self.mark_of(g, MNT_NODE), false),
                (self.mark_of(g, SB_NODE), false),
            ] {
                let Some(mk) = i.and_then(|i| self.marks[i]) else {
                    continue;
                };
                ignore |= mk.effective_ignore(is_dir, parent_type);
                // fsnotify_mask_applicable(): to a directory with FAN_ONDIR, to a child with
                // FAN_EVENT_ON_CHILD.
                let applies =
                    (!is_dir || mk.mask & mask::ISDIR != 0) && (!parent_type || mk.mask & mask::ON_CHILD != 0);
                if applies {
                    want |= mk.mask;
                }
            }
            if want & mask::OPEN_PERM & !ignore == 0 {
                continue;
            }
            if let Some((p, ag)) = after {
                if key(g) <= (core::cmp::Reverse(p), ag) {
                    continue;
                }
            }
            if best.is_none_or(|b| key(g) < key(b)) {
                best = Some(g);
            }
        }
        best
    }

    /// open(): permission events to each interested group in order; blocks at the first one.
    /// Returns `None` when the task blocks. Then the access's own events.
    fn deliver_open(
        &mut self,
        task: u8,
        inode: u8,
        access: Access,
        mut after: Option<(u8, u8)>,
        out: &mut Outcome,
    ) -> Result<Option<Ret>, Invalid> {
        while let Some(g) = self.next_perm_group(inode, after) {
            let ev = Ev { mask: mask::OPEN_PERM, inode, task, name: NO_NAME, dir: NO_NODE };
            let limit = self.queue_limit;
            let grp = self.group_mut(g).expect("live group");
            let prio = grp.class.priority();
            // A permission event that finds the queue full is dropped (the overflow event
            // tells the listener) and the access goes on as allowed by this group.
            if !grp.insert(ev, true, limit)? {
                after = Some((prio, g));
                continue;
            }
            let pins = if self.semantics == Semantics::Current { self.pinned_groups(inode, g) } else { 0 };
            let t = &mut self.tasks[task as usize];
            t.state = State::PermWait { inode, group: g, access, pins };
            // The whole delivery is one read-side section; since 4.12 it is left while waiting.
            t.in_srcu = self.semantics == Semantics::Pre412;
            return Ok(None);
        }
        // Allowed by everyone: the open succeeds and its events follow, then the file is
        // closed, which may let an unlinked file go (inotify: IN_IGNORED after IN_OPEN).
        self.notify(mask::OPEN, inode, task, true, true)?;
        let is_dir = self.inodes[inode as usize].dir;
        let mut ret = Ret::Ok(0);
        match access {
            Access::Open => {}
            // read(2) of a directory: EISDIR, no event; of an empty file: 0, no event.
            Access::Read if is_dir => ret = Ret::Err(EISDIR),
            Access::Read => {
                if self.inodes[inode as usize].data {
                    self.notify(mask::ACCESS, inode, task, true, true)?;
                }
            }
            Access::Write => {
                self.inodes[inode as usize].data = true;
                self.notify(mask::MODIFY, inode, task, true, true)?;
            }
        }
        let close = if access == Access::Write { mask::CLOSE_WRITE } else { mask::CLOSE_NOWRITE };
        self.notify(close, inode, task, true, true)?;
        self.finish_task(task, out)?;
        Ok(Some(ret))
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
        // The waiter's file and event go last, in the waiter (the guest closes a permission
        // event's fd before it answers or closes the group).
        if let Some(i) = inode {
            self.maybe_evict(i, task)?;
        }
        self.release_user_waits(out);
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
        let State::PermWait { inode, access, .. } = self.tasks[waiter as usize].state else {
            return Ok(());
        };
        let since = self.tasks[waiter as usize].since;
        if !allow {
            self.finish_task(waiter, out)?;
            out.released.push(Release { task: waiter, since, ret: Ret::Err(EPERM) });
            return Ok(());
        }
        // The task leaves the wait: the pin moves from "waiting" to "opening".
        self.tasks[waiter as usize].state = State::Idle;
        self.tasks[waiter as usize].state = State::PermWait { inode, group: u8::MAX, access, pins: 0 };
        // Since 4.12 the task re-enters the read-side section to resume; before, it never left.
        if let Some(ret) = self.deliver_open(waiter, inode, access, Some((prio, group)), out)? {
            out.released.push(Release { task: waiter, since, ret });
        }
        self.release_user_waits(out);
        Ok(())
    }

    /// The groups whose marks a wait for `group`'s answer on `inode` pins: on the file's, the
    /// mount's, the filesystem's and (when walked) the parent's mark lists (each sorted in
    /// delivery order), the first mark
    /// of `group` or a group after it. Groups of one priority go by group number here; the
    /// kernel goes by address, which nobody can predict (the generator avoids such ties).
    fn pinned_groups(&self, inode: u8, group: u8) -> u8 {
        let key = |g: u8| (core::cmp::Reverse(self.group(g).map_or(0, |x| x.class.priority())), g);
        let mut pins = 0u8;
        // The parent's list too when it is walked: when a mark on it watches children for
        // permission events (by its mask or its ignore mask).
        let dir = if self.inodes[inode as usize].dir { mask::ISDIR } else { 0 };
        let parent = self.watching_parent(inode, mask::OPEN_PERM | dir);
        for obj in [Some(inode), Some(MNT_NODE), Some(SB_NODE), parent].into_iter().flatten() {
            let cursor = self
                .marks
                .iter()
                .flatten()
                .filter(|mk| mk.inode == obj && self.group(mk.group).is_some() && key(mk.group) >= key(group))
                .map(|mk| mk.group)
                .min_by_key(|g| key(*g));
            if let Some(g) = cursor {
                pins |= 1 << g;
            }
        }
        pins
    }

    /// Closers waiting for a group that no permission waiter pins any more go on.
    fn release_user_waits(&mut self, out: &mut Outcome) {
        let pinned = self.tasks.iter().fold(0u8, |a, t| match t.state {
            State::PermWait { pins, .. } => a | pins,
            _ => a,
        });
        for w in 0..MAX_TASKS {
            if let State::UserWait { group } = self.tasks[w].state {
                if pinned & (1 << group) == 0 {
                    self.tasks[w].state = State::Idle;
                    out.released.push(Release { task: w as u8, since: self.tasks[w].since, ret: Ret::Ok(0) });
                }
            }
        }
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
            out.events.push(read_as(g.report, q.ev));
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
        // A permission waiter of another group still pins one of its marks: wait for it.
        let pinned =
            self.tasks.iter().any(|t| matches!(t.state, State::PermWait { pins, .. } if pins & (1 << group) != 0));
        if pinned {
            self.tasks[closer as usize].state = State::UserWait { group };
            return Ok(None);
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
            State::UserWait { group } => {
                self.tasks.iter().any(|t| matches!(t.state, State::PermWait { pins, .. } if pins & (1 << group) != 0))
            }
        })
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
