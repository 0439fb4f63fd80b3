//! Runs refcore scenarios against the real kernel: one thread per task, each step sent to
//! its task and watched; the kernel's results (return value or errno, events read, which
//! blocked tasks a step released) are mapped back to the model's terms and compared step by
//! step with refcore's prediction. A divergence is shrunk to a minimal scenario on the same
//! kernel and replayed once to confirm it.

use crate::sys;
use kbot_scenario::kbot_refcore::{
    fflag, flag, init, mask, path, Class, Ev, MarkObj, Op, Ret, Semantics, Step, DOT_NAME, MAX_INODES, MAX_TASKS,
    NO_NAME, NO_NODE, PIPE_NODE, PROCESS_TASK,
};
use kbot_scenario::{compare_step, format, predict_with, shrink, signature, Scenario, StepObs};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const FAN_CLASS_PRE_CONTENT: u32 = 0x08;
const FAN_NONBLOCK: u32 = 0x02;
const FAN_REPORT_TID: u32 = 0x100;
const FAN_ONDIR: u64 = 0x4000_0000;
const FAN_EVENT_ON_CHILD: u64 = 0x0800_0000;
const FAN_MARK_ONLYDIR: u32 = 0x08;
const FAN_MARK_MOUNT: u32 = 0x10;
const FAN_MARK_FILESYSTEM: u32 = 0x100;
const FAN_MARK_IGNORED_MASK: u32 = 0x20;
const FAN_MARK_IGNORED_SURV_MODIFY: u32 = 0x40;
const FAN_MARK_IGNORE: u32 = 0x400;
const FAN_MARK_EVICTABLE: u32 = 0x200;
/// A fanotify_init flag no kernel defines (the model's `init::UNKNOWN`).
const FAN_INIT_UNKNOWN: u32 = 0x0100_0000;
/// The kernel's O_LARGEFILE (glibc and musl may define it as 0 on 64-bit arches).
#[cfg(target_arch = "aarch64")]
const KERNEL_O_LARGEFILE: u32 = 0o400000;
#[cfg(not(target_arch = "aarch64"))]
const KERNEL_O_LARGEFILE: u32 = 0o100000;

/// fanotify_init as user `nobody` (no capabilities), in a child process: raw syscalls change
/// only the child's one thread. The child says its errno or fd on a pipe and waits; the new
/// group's fd is taken with pidfd_getfd(2) (the guest kernel has no sockets for SCM_RIGHTS).
/// -1: the child could not say.
fn init_unprivileged(flags: u32, event_f_flags: u32) -> Result<RawFd, i32> {
    let (mut said, mut release) = ([0; 2], [0; 2]);
    // SAFETY: pipe2 fills two fds each.
    unsafe {
        if libc::pipe2(said.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(errno());
        }
        if libc::pipe2(release.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            let e = errno();
            for fd in said {
                sys::close(fd);
            }
            return Err(e);
        }
    }
    // SAFETY: fork; the child makes raw syscalls only and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; the buffers are live stack values.
        unsafe {
            libc::close(said[0]);
            libc::close(release[1]);
            let nobody: libc::c_long = 65534;
            let mut msg: [i32; 2] = [-1, -1];
            if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == 0
                && libc::syscall(libc::SYS_setresgid, nobody, nobody, nobody) == 0
                && libc::syscall(libc::SYS_setresuid, nobody, nobody, nobody) == 0
            {
                let fd = libc::syscall(libc::SYS_fanotify_init, flags, event_f_flags) as i32;
                msg = if fd < 0 { [*libc::__errno_location(), -1] } else { [0, fd] };
            }
            libc::write(said[1], msg.as_ptr().cast(), 8);
            // Until the parent has taken the fd (it closes its end).
            let mut b = 0u8;
            libc::read(release[0], (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    sys::close(said[1]);
    sys::close(release[0]);
    let mut msg: [i32; 2] = [-1, -1];
    let got = if pid < 0 {
        Err(errno())
    } else {
        // SAFETY: reading 8 bytes into a live array; pidfd calls with integer arguments.
        unsafe {
            if libc::read(said[0], msg.as_mut_ptr().cast(), 8) != 8 {
                Err(-1)
            } else if msg[0] != 0 {
                Err(msg[0])
            } else {
                let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
                let fd = if pidfd < 0 { -1 } else { libc::syscall(libc::SYS_pidfd_getfd, pidfd, msg[1], 0) };
                if pidfd >= 0 {
                    libc::close(pidfd as RawFd);
                }
                if fd < 0 {
                    Err(-1)
                } else {
                    // pidfd_getfd sets FD_CLOEXEC on the new fd.
                    Ok(fd as RawFd)
                }
            }
        }
    };
    sys::close(said[0]);
    sys::close(release[1]);
    if pid > 0 {
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid status pointer.
        while unsafe { libc::waitpid(pid, &mut status, 0) } != pid && errno() == libc::EINTR {}
    }
    got
}

/// fanotify_init's arguments for the model's [`init`] and [`fflag`] bits.
fn init_args(flags: u16, fflags: u8) -> (u32, u32) {
    let mut f = u32::from(flags & !init::UNKNOWN);
    if flags & init::UNKNOWN != 0 {
        f |= FAN_INIT_UNKNOWN;
    }
    let mut e = u32::from(fflags & fflag::ACCMODE);
    for (bit, o) in [
        (fflag::APPEND, libc::O_APPEND as u32),
        (fflag::NONBLOCK, libc::O_NONBLOCK as u32),
        (fflag::CLOEXEC, libc::O_CLOEXEC as u32),
        (fflag::NOATIME, libc::O_NOATIME as u32),
        (fflag::LARGEFILE, KERNEL_O_LARGEFILE),
        (fflag::DIRECTORY, libc::O_DIRECTORY as u32),
    ] {
        if fflags & bit != 0 {
            e |= o;
        }
    }
    (f, e)
}

/// The model's event bits and the kernel's (inotify and fanotify share them; a model bit
/// without an inotify meaning, like the permission event, is passed as is and refused).
const EVENT_BITS: &[(u32, u64)] = &[
    (mask::ACCESS, 0x1),
    (mask::MODIFY, 0x2),
    (mask::ATTRIB, 0x4),
    (mask::CLOSE_WRITE, 0x8),
    (mask::CLOSE_NOWRITE, 0x10),
    (mask::OPEN, 0x20),
    (mask::MOVED_FROM, 0x40),
    (mask::MOVED_TO, 0x80),
    (mask::CREATE, 0x100),
    (mask::DELETE, 0x200),
    (mask::DELETE_SELF, 0x400),
    (mask::MOVE_SELF, 0x800),
    (mask::OVERFLOW, 0x4000),
    (mask::IGNORED, 0x8000),
    (mask::OPEN_PERM, 0x1_0000),
    (mask::ON_CHILD, 0x0800_0000),
    (mask::ISDIR, 0x4000_0000),
];

fn to_kernel(m: u32) -> u64 {
    EVENT_BITS.iter().filter(|(b, _)| m & b != 0).fold(0, |a, (_, k)| a | k)
}

fn from_kernel(k: u64) -> u32 {
    EVENT_BITS.iter().filter(|(_, kb)| k & kb != 0).fold(0, |a, (b, _)| a | b)
}

const IN_FLAGS: &[(u16, u32)] = &[
    (flag::ONLYDIR, 0x0100_0000),
    (flag::EXCL_UNLINK, 0x0400_0000),
    (flag::MASK_CREATE, 0x1000_0000),
    (flag::MASK_ADD, 0x2000_0000),
    (flag::ONESHOT, 0x8000_0000),
];

pub struct Timing {
    /// How long a step the model says completes may take before it counts as blocked.
    pub prompt: Duration,
    /// How long a step the model says blocks is watched for completing anyway.
    pub settle: Duration,
    /// Dump blocked tasks (sysrq-w) when a step blocks that should not.
    pub dump: bool,
    /// Time allowed for shrinking one divergent scenario.
    pub shrink_time: Duration,
    /// The groups' queue limit (`max_queued_events`), for the prediction.
    pub queue_limit: usize,
    /// Each run in a tmpfs of its own (the guest, as root): filesystem and mount marks then
    /// see the scenario's tree and nothing else.
    pub own_fs: bool,
}

/// What the tasks share: the kernel objects behind the model's ids.
#[derive(Default)]
struct Kernel {
    dir: String,
    /// Group id -> (fd, class); `None` once closed.
    groups: Vec<Option<(RawFd, Class)>>,
    /// inotify (group, inode) -> wd, and back.
    wds: HashMap<(u8, u8), i32>,
    wd_inode: HashMap<(u8, i32), u8>,
    /// Permission events read and not answered: (group, waiter) -> event fd.
    perm: HashMap<(u8, u8), RawFd>,
    tid_task: HashMap<i32, u8>,
    classes: Vec<Class>,
    /// Each group's FAN_REPORT_*FID bits (0: it reports fds).
    reports: Vec<u16>,
    /// The model's node of each file handle (type and bytes, as `name_to_handle_at(2)` gives
    /// them) and the scenario filesystem's fsid: what fid records are mapped back by.
    fh_node: HashMap<(i32, Vec<u8>), u8>,
    fsid: [i32; 2],
    /// The scenario's pipe (read end, write end): the model's PIPE_NODE.
    pipe: Option<(RawFd, RawFd)>,
    /// The model's node of each kernel inode number, and of each path (the node it named
    /// last: what the model resolves a watch's wd by).
    ino_node: HashMap<(u64, u64), u8>,
    path_node: HashMap<u8, u8>,
    next_node: u8,
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if let Some((r, w)) = self.pipe.take() {
            sys::close(r);
            sys::close(w);
        }
    }
}

impl Kernel {
    fn path(&self, p: u8) -> String {
        let (d, n) = (path::dir(p), path::name(p));
        let dir = if d == 0 { self.dir.clone() } else { format!("{}/d{d}", self.dir) };
        if n == path::SELF {
            dir
        } else {
            format!("{dir}/i{n}")
        }
    }

    /// A new object at `p` (created by this step): the next node id, as the model numbers them.
    fn created(&mut self, p: u8) {
        let node = self.next_node;
        self.next_node += 1;
        self.learn(p, node);
    }

    fn learn(&mut self, p: u8, node: u8) {
        if let Ok(md) = std::fs::metadata(self.path(p)) {
            use std::os::unix::fs::MetadataExt;
            self.ino_node.insert((kdev(md.dev()), md.ino()), node);
        }
        if let Some(fh) = file_handle(&self.path(p)) {
            self.fh_node.insert(fh, node);
        }
        self.path_node.insert(p, node);
    }

    /// A group made (its fd, or the errno): the next group id, as the model numbers them.
    fn made(&mut self, fd: Result<RawFd, i32>, class: Class, report: u16) -> (Ret, Vec<Ev>) {
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) => return (Ret::Err(e), vec![]),
        };
        self.groups.push(Some((fd, class)));
        self.classes.push(class);
        self.reports.push(report);
        (Ret::Ok(self.groups.len() as i32 - 1), vec![])
    }

    /// Whether group `g` reports file handles (else fds, or it is inotify's).
    fn reports_fids(&self, g: u8) -> bool {
        self.reports.get(g as usize).is_some_and(|r| *r != 0)
    }

    /// The group's fd (-1 once closed) and class (also once closed: a call on a closed
    /// group goes to the same syscall, which checks its arguments before the fd).
    fn group_fd(&self, g: u8) -> (RawFd, Option<Class>) {
        match self.groups.get(g as usize) {
            Some(Some((fd, c))) => (*fd, Some(*c)),
            _ => (-1, self.classes.get(g as usize).copied()),
        }
    }
}

/// `name_to_handle_at(2)` of a path: the handle's type and bytes.
fn file_handle(p: &str) -> Option<(i32, Vec<u8>)> {
    // struct file_handle: handle_bytes, handle_type, then up to MAX_HANDLE_SZ (128) bytes.
    let mut buf = [0u8; 8 + 128];
    buf[..4].copy_from_slice(&128u32.to_ne_bytes());
    let mut mount_id: libc::c_int = 0;
    let c = cstr(p);
    // SAFETY: a buffer as large as handle_bytes says, valid path and mount id pointers.
    let r = unsafe {
        libc::syscall(libc::SYS_name_to_handle_at, libc::AT_FDCWD, c.as_ptr(), buf.as_mut_ptr(), &mut mount_id, 0)
    };
    if r != 0 {
        return None;
    }
    let len = (u32::from_ne_bytes(buf[..4].try_into().ok()?) as usize).min(128);
    Some((i32::from_ne_bytes(buf[4..8].try_into().ok()?), buf[8..8 + len].to_vec()))
}

/// The fsid `statfs(2)` reports for a path (what fanotify's fid records carry).
fn fsid_of(p: &str) -> [i32; 2] {
    let c = cstr(p);
    // SAFETY: statfs into a zeroed struct; fsid_t is two ints.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return [0, 0];
        }
        std::mem::transmute::<libc::fsid_t, [i32; 2]>(st.f_fsid)
    }
}

/// A device number as the kernel keeps it (`MAJOR << 20 | MINOR`, what fdinfo prints as
/// `sdev:`), from the one stat(2) gives: objects are (device, inode) pairs (a pipe's inode
/// number may be a tmpfs file's too).
fn kdev(st_dev: u64) -> u64 {
    (u64::from(libc::major(st_dev)) << 20) | u64::from(libc::minor(st_dev))
}

/// fanotify_init(2)'s arguments for a scenario group: `flags` (class and reporting mode),
/// non-blocking, thread ids when `tid` (an unprivileged group may not have them), events
/// opened read-only.
fn group_args(flags: u32, tid: bool) -> (u32, u32) {
    let flags = flags | sys::FAN_CLOEXEC | FAN_NONBLOCK | if tid { FAN_REPORT_TID } else { 0 };
    (flags, (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32)
}

/// fanotify_init(2) for a scenario group made by the agent (privileged): see [`group_args`].
fn fanotify_group(flags: u32) -> Result<RawFd, i32> {
    let (flags, ev) = group_args(flags, true);
    // SAFETY: plain syscall with integer arguments.
    fd_or_errno(unsafe { libc::syscall(libc::SYS_fanotify_init, flags, ev) })
}

/// A syscall's new fd, or its errno (read at once, before anything else may set it).
fn fd_or_errno(r: libc::c_long) -> Result<RawFd, i32> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as RawFd)
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn ret_of(r: libc::c_long) -> Ret {
    if r < 0 {
        Ret::Err(errno())
    } else {
        Ret::Ok(0)
    }
}

fn cstr(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).expect("no NUL in test paths")
}

fn gettid() -> i32 {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Performs one step in the calling thread. Blocking syscalls run without the lock held.
fn perform(k: &Mutex<Kernel>, step: &Step) -> (Ret, Vec<Ev>) {
    let lock = || k.lock().unwrap_or_else(|e| e.into_inner());
    match step.op {
        Op::CreateGroup(class) => {
            let fd = match class {
                // SAFETY: plain syscall with integer arguments.
                Class::Inotify => {
                    fd_or_errno(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) }.into())
                }
                Class::FanNotif => fanotify_group(sys::FAN_CLASS_NOTIF),
                Class::FanContent => fanotify_group(sys::FAN_CLASS_CONTENT),
                Class::FanPreContent => fanotify_group(FAN_CLASS_PRE_CONTENT),
            };
            lock().made(fd, class, 0)
        }
        // A notification group reporting file handles (the model's init bits are the kernel's).
        Op::FidGroup { report, unpriv: false } => {
            lock().made(fanotify_group(sys::FAN_CLASS_NOTIF | u32::from(report)), Class::FanNotif, report)
        }
        // Without FAN_REPORT_TID, which needs CAP_SYS_ADMIN.
        Op::FidGroup { report, unpriv: true } => {
            let (flags, ev) = group_args(sys::FAN_CLASS_NOTIF | u32::from(report), false);
            lock().made(init_unprivileged(flags, ev), Class::FanNotif, report)
        }
        Op::AddMark { group, inode, mask: m } => add_mark(&mut lock(), group, inode, m, 0),
        Op::Watch { group, inode, mask: m, flags } => add_mark(&mut lock(), group, inode, m, flags),
        Op::FsMark { group, inode, mask: m, flags, mount } => {
            let k = lock();
            let (fd, _) = k.group_fd(group);
            let path = cstr(&k.path(inode));
            // fanotify_mark(2) whatever the group is: on an inotify fd that is EINVAL.
            let kf = fan_mark_flags(flags) | if mount { FAN_MARK_MOUNT } else { FAN_MARK_FILESYSTEM };
            // SAFETY: valid fd or -1, valid path; on 64-bit arches the mask is one register.
            let r =
                unsafe { libc::syscall(libc::SYS_fanotify_mark, fd, kf, to_kernel(m), libc::AT_FDCWD, path.as_ptr()) };
            (ret_of(r), vec![])
        }
        Op::PipeMark { group, mask: m, flags, obj } => {
            let k = lock();
            let (fd, _) = k.group_fd(group);
            let pipe = k.pipe.map_or(-1, |p| p.0);
            let kf = fan_mark_flags(flags)
                | match obj {
                    MarkObj::Inode => 0,
                    MarkObj::Mount => FAN_MARK_MOUNT,
                    MarkObj::Fs => FAN_MARK_FILESYSTEM,
                };
            // fanotify_mark(2) with no path: the object is the pipe's fd.
            // SAFETY: valid fds or -1, a null path; on 64-bit arches the mask is one register.
            let r = unsafe {
                libc::syscall(libc::SYS_fanotify_mark, fd, kf, to_kernel(m), pipe, std::ptr::null::<libc::c_char>())
            };
            (ret_of(r), vec![])
        }
        Op::RemoveMark { group, inode } => {
            let k = lock();
            let (fd, class) = k.group_fd(group);
            if class == Some(Class::Inotify) {
                let node = k.path_node.get(&inode).copied().unwrap_or(NO_NODE);
                let wd = k.wds.get(&(group, node)).copied().unwrap_or(-1);
                // SAFETY: plain syscall.
                let r = unsafe { libc::inotify_rm_watch(fd, wd) };
                return (ret_of(r as libc::c_long), vec![]);
            }
            let path = cstr(&k.path(inode));
            // Remove every bit the group's class may hold (a permission bit in the mask of a
            // notification group is EINVAL even for removal; events that need file handles in
            // a group reporting fds too), and the event flags.
            let every = if k.reports_fids(group) { mask::EVENTS } else { mask::FAN_FD };
            let all = to_kernel(every & !if class.is_some_and(Class::can_perm) { 0 } else { mask::PERM })
                | FAN_ONDIR
                | FAN_EVENT_ON_CHILD;
            // SAFETY: as above.
            let r = unsafe {
                libc::syscall(libc::SYS_fanotify_mark, fd, sys::FAN_MARK_REMOVE, all, libc::AT_FDCWD, path.as_ptr())
            };
            (ret_of(r), vec![])
        }
        Op::Open { inode } | Op::Cat { inode } | Op::Write { inode } => {
            let path = cstr(&lock().path(inode));
            let write = matches!(step.op, Op::Write { .. });
            let flags = if write {
                libc::O_WRONLY
            } else if path::is_dir(inode) {
                libc::O_RDONLY | libc::O_DIRECTORY
            } else {
                libc::O_RDONLY
            };
            // SAFETY: valid path; may block in the kernel, no lock held.
            let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
            if fd < 0 {
                return (Ret::Err(errno()), vec![]);
            }
            let mut ret = Ret::Ok(0);
            let mut b = [b'x'; 1];
            // SAFETY: a one-byte buffer.
            let r = match step.op {
                Op::Cat { .. } => unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) },
                Op::Write { .. } => unsafe { libc::write(fd, b.as_ptr().cast(), 1) },
                _ => 0,
            };
            if r < 0 {
                ret = Ret::Err(errno());
            }
            sys::close(fd);
            (ret, vec![])
        }
        Op::Create { inode } | Op::Mkdir { inode } => {
            let mut k = lock();
            let path = cstr(&k.path(inode));
            // SAFETY: valid path.
            let r = unsafe {
                if matches!(step.op, Op::Mkdir { .. }) {
                    libc::mkdir(path.as_ptr(), 0o755)
                } else {
                    libc::mknod(path.as_ptr(), libc::S_IFREG | 0o644, 0)
                }
            };
            if r == 0 {
                k.created(inode);
            }
            (ret_of(r as libc::c_long), vec![])
        }
        Op::Rmdir { inode } => {
            let path = cstr(&lock().path(inode));
            // SAFETY: valid path.
            (ret_of(unsafe { libc::rmdir(path.as_ptr()) } as libc::c_long), vec![])
        }
        Op::Attrib { inode } => {
            let path = cstr(&lock().path(inode));
            let mode = if path::is_dir(inode) { 0o755 } else { 0o644 };
            // SAFETY: valid path.
            (ret_of(unsafe { libc::chmod(path.as_ptr(), mode) } as libc::c_long), vec![])
        }
        Op::Rename { from, to } => {
            let mut k = lock();
            let (a, b) = (cstr(&k.path(from)), cstr(&k.path(to)));
            // SAFETY: valid paths.
            let r = unsafe { libc::rename(a.as_ptr(), b.as_ptr()) };
            if r == 0 && from != to {
                if let Some(n) = k.path_node.get(&from).copied() {
                    k.path_node.insert(to, n);
                }
            }
            (ret_of(r as libc::c_long), vec![])
        }
        Op::ReadEvents { group } => read_events(&mut lock(), group),
        Op::Fdinfo { group } => fdinfo(&lock(), group),
        Op::Init { flags, fflags, unpriv } => {
            let (f, e) = init_args(flags, fflags);
            if unpriv {
                let r = init_unprivileged(f, e).map(sys::close);
                return (r.map_or_else(Ret::Err, |_| Ret::Ok(0)), vec![]);
            }
            // SAFETY: plain syscall with integer arguments.
            let fd = unsafe { libc::syscall(libc::SYS_fanotify_init, f, e) };
            if fd < 0 {
                return (Ret::Err(errno()), vec![]);
            }
            sys::close(fd as RawFd);
            (Ret::Ok(0), vec![])
        }
        Op::Answer { group, waiter, allow } => {
            let mut k = lock();
            let (fd, _) = k.group_fd(group);
            // No such pending event: answer with an fd that is not one, and let the kernel say so.
            let ev = k.perm.remove(&(group, waiter));
            let resp = [ev.unwrap_or(fd.max(0)), if allow { sys::FAN_ALLOW as i32 } else { sys::FAN_DENY as i32 }];
            drop(k);
            // The event's fd goes before the answer (the kernel finds the event by the number
            // it gave), so the released waiter drops the file's last reference: an unlinked
            // file's DELETE_SELF then comes from the waiter, not from whichever task is last.
            if let Some(e) = ev {
                sys::close(e);
            }
            // SAFETY: an 8-byte fanotify_response.
            let r = unsafe { libc::write(fd, resp.as_ptr().cast(), 8) };
            (ret_of(r as libc::c_long), vec![])
        }
        Op::Unlink { inode } => {
            let path = cstr(&lock().path(inode));
            // SAFETY: valid path.
            (ret_of(unsafe { libc::unlink(path.as_ptr()) } as libc::c_long), vec![])
        }
        Op::Close { group } => {
            let (fd, stale) = {
                let mut k = lock();
                let fd = k.group_fd(group).0;
                if let Some(slot) = k.groups.get_mut(group as usize) {
                    *slot = None;
                }
                let keys: Vec<(u8, u8)> = k.perm.keys().filter(|(g, _)| *g == group).copied().collect();
                let stale: Vec<RawFd> = keys.iter().filter_map(|key| k.perm.remove(key)).collect();
                (fd, stale)
            };
            // Read permission events' fds first, so a waiter the close releases drops its
            // file's last reference (as after an answer).
            for e in stale {
                sys::close(e);
            }
            // SAFETY: closing our fd (or -1: EBADF); may block in the kernel, no lock held.
            let r = unsafe { libc::close(fd) };
            (ret_of(r as libc::c_long), vec![])
        }
    }
}

fn add_mark(k: &mut Kernel, group: u8, inode: u8, m: u32, flags: u16) -> (Ret, Vec<Ev>) {
    let (fd, class) = k.group_fd(group);
    let path = cstr(&k.path(inode));
    if class == Some(Class::Inotify) {
        let km = to_kernel(m) as u32 | IN_FLAGS.iter().filter(|(f, _)| flags & f != 0).fold(0, |a, (_, b)| a | b);
        // SAFETY: valid fd or -1, valid path.
        let wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), km) };
        if wd < 0 {
            return (Ret::Err(errno()), vec![]);
        }
        let node = k.path_node.get(&inode).copied().unwrap_or(NO_NODE);
        k.wds.insert((group, node), wd);
        k.wd_inode.insert((group, wd), node);
        return (Ret::Ok(0), vec![]);
    }
    let kf = fan_mark_flags(flags);
    // SAFETY: as above; on 64-bit arches the mask is one register.
    let r = unsafe { libc::syscall(libc::SYS_fanotify_mark, fd, kf, to_kernel(m), libc::AT_FDCWD, path.as_ptr()) };
    (ret_of(r), vec![])
}

/// fanotify_mark(2)'s flags for the model's [`flag`]s (the mark type apart).
fn fan_mark_flags(flags: u16) -> u32 {
    let mut kf = if flags & flag::REMOVE != 0 { sys::FAN_MARK_REMOVE } else { sys::FAN_MARK_ADD };
    for (f, b) in [
        (flag::ONLYDIR, FAN_MARK_ONLYDIR),
        (flag::IGNORED, FAN_MARK_IGNORED_MASK),
        (flag::SURV, FAN_MARK_IGNORED_SURV_MODIFY),
        (flag::IGNORE, FAN_MARK_IGNORE),
        (flag::EVICTABLE, FAN_MARK_EVICTABLE),
    ] {
        if flags & f != 0 {
            kf |= b;
        }
    }
    kf
}

/// The hex value of `key:` in an fdinfo line.
fn fdinfo_field(line: &str, key: &str) -> Option<u64> {
    let v = line.split_whitespace().find_map(|w| w.strip_prefix(key))?;
    u64::from_str_radix(v, 16).ok()
}

/// `/proc/self/fdinfo/<fd>` of a group in the model's terms ([`kbot_scenario::kbot_refcore::FDINFO_MARK`]).
fn fdinfo(k: &Kernel, group: u8) -> (Ret, Vec<Ev>) {
    let (fd, _) = k.group_fd(group);
    if fd < 0 {
        return (Ret::Err(libc::EBADF), vec![]);
    }
    let text = match std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) {
        Ok(t) => t,
        Err(e) => return (Ret::Err(e.raw_os_error().unwrap_or(libc::EIO)), vec![]),
    };
    let node = |l: &str| match fdinfo_field(l, "ino:") {
        Some(ino) => k.ino_node.get(&(fdinfo_field(l, "sdev:").unwrap_or(0), ino)).copied().unwrap_or(NO_NODE - 1),
        None if l.contains("mnt_id:") => kbot_scenario::kbot_refcore::MNT_NODE,
        None => kbot_scenario::kbot_refcore::SB_NODE,
    };
    let (mut evs, mut n) = (Vec::new(), 0);
    for l in text.lines() {
        let Some(m) = fdinfo_field(l, "mask:") else { continue };
        if l.starts_with("inotify wd:") {
            // The events (IN_ALL_EVENTS) and the flags inotify keeps in the mark.
            let flags = if m & 0x8000_0000 != 0 { flag::ONESHOT } else { 0 }
                | if m & 0x0400_0000 != 0 { flag::EXCL_UNLINK } else { 0 };
            evs.push(Ev {
                mask: from_kernel(m & 0xfff),
                inode: node(l),
                task: flags as u8,
                name: kbot_scenario::kbot_refcore::FDINFO_MARK,
                dir: NO_NODE,
            });
            n += 1;
        } else if l.starts_with("fanotify ") && l.contains("mflags:") {
            let mflags = fdinfo_field(l, "mflags:").unwrap_or(0);
            // FAN_MARK_IGNORED_SURV_MODIFY and FAN_MARK_IGNORE (fanotify_mark_user_flags()).
            let flags = if mflags & 0x40 != 0 { flag::SURV } else { 0 }
                | if mflags & u64::from(FAN_MARK_IGNORE) != 0 { flag::IGNORE } else { 0 }
                | if mflags & u64::from(FAN_MARK_EVICTABLE) != 0 { flag::EVICTABLE } else { 0 };
            evs.push(Ev {
                mask: from_kernel(m),
                inode: node(l),
                task: kbot_scenario::kbot_refcore::fdinfo_flags_to_task(flags),
                name: kbot_scenario::kbot_refcore::FDINFO_MARK,
                dir: NO_NODE,
            });
            let ignored = fdinfo_field(l, "ignored_mask:").unwrap_or(0);
            if ignored != 0 {
                evs.push(Ev {
                    mask: from_kernel(ignored),
                    inode: node(l),
                    task: 0,
                    name: kbot_scenario::kbot_refcore::FDINFO_IGNORED,
                    dir: NO_NODE,
                });
            }
            n += 1;
        }
    }
    (Ret::Ok(n), evs)
}

/// An inotify event's name (`i3`, `d1`) as the model numbers names.
fn name_id(name: &[u8]) -> u8 {
    let s = std::str::from_utf8(name).unwrap_or("").trim_end_matches('\0');
    if let Some(n) = s.strip_prefix('i').and_then(|n| n.parse::<u8>().ok()) {
        n
    } else if let Some(n) = s.strip_prefix('d').and_then(|n| n.parse::<u8>().ok()) {
        path::dir_entry_name(n)
    } else {
        NO_NAME - 1
    }
}

fn read_events(k: &mut Kernel, group: u8) -> (Ret, Vec<Ev>) {
    let (fd, class) = k.group_fd(group);
    let mut buf = vec![0u8; 16384];
    // SAFETY: valid buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return (Ret::Err(errno()), vec![]);
    }
    let n = n as usize;
    let mut evs = Vec::new();
    let mut off = 0;
    if class == Some(Class::Inotify) {
        while off + 16 <= n {
            let word = |i: usize| u32::from_ne_bytes(buf[off + i..off + i + 4].try_into().unwrap());
            let (wd, m, len) = (word(0) as i32, word(4), word(12) as usize);
            let inode = if wd < 0 { NO_NODE } else { k.wd_inode.get(&(group, wd)).copied().unwrap_or(NO_NODE - 1) };
            let name = if len == 0 { NO_NAME } else { name_id(&buf[off + 16..(off + 16 + len).min(n)]) };
            evs.push(Ev { mask: from_kernel(m as u64), inode, task: 0, name, dir: NO_NODE });
            off += 16 + len;
        }
    } else {
        while off + 24 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let m = u64::from_ne_bytes(buf[off + 8..off + 16].try_into().unwrap());
            let efd = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap());
            let tid = i32::from_ne_bytes(buf[off + 20..off + 24].try_into().unwrap());
            let meta_len = u16::from_ne_bytes(buf[off + 6..off + 8].try_into().unwrap()) as usize;
            let (mut dir, mut name, mut fid) = (NO_NODE, NO_NAME, NO_NODE);
            if k.reports_fids(group) {
                let end = (off + len).min(n);
                (dir, name, fid) = fid_records(k, &buf[(off + meta_len).min(end)..end]);
            }
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: fstat into a zeroed struct.
            let inode = if fid != NO_NODE {
                fid
            } else if efd >= 0 && unsafe { libc::fstat(efd, &mut st) } == 0 {
                k.ino_node.get(&(kdev(st.st_dev), st.st_ino as u64)).copied().unwrap_or(NO_NODE - 1)
            } else {
                NO_NODE
            };
            let mm = from_kernel(m);
            // An unprivileged group shows the process's pid (no FAN_REPORT_TID): the agent's.
            let task = match k.tid_task.get(&tid) {
                _ if mm == mask::OVERFLOW => 0,
                Some(t) => *t,
                None if tid as u32 == std::process::id() => PROCESS_TASK,
                None => u8::MAX,
            };
            if m & sys::FAN_OPEN_PERM != 0 {
                if let Some(old) = k.perm.insert((group, task), efd) {
                    sys::close(old);
                }
            } else if efd >= 0 {
                sys::close(efd);
            }
            evs.push(Ev { mask: mm, inode, task, name, dir });
            if len < 24 {
                break;
            }
            off += len;
        }
    }
    (Ret::Ok(evs.len() as i32), evs)
}

/// A fanotify event's info records in the model's terms: the DFID / DFID_NAME record's node
/// and name, and the FID record's node (see `Ev::dir`). A handle of another filesystem, or one
/// the agent never saw, maps to a node no scenario has.
fn fid_records(k: &Kernel, mut rec: &[u8]) -> (u8, u8, u8) {
    const FID: u8 = 1;
    const DFID_NAME: u8 = 2;
    const DFID: u8 = 3;
    let (mut dir, mut name, mut fid) = (NO_NODE, NO_NAME, NO_NODE);
    while rec.len() >= 4 {
        let (ty, len) = (rec[0], u16::from_ne_bytes([rec[2], rec[3]]) as usize);
        if len < 4 || len > rec.len() {
            break;
        }
        let body = &rec[..len];
        rec = &rec[len..];
        // fanotify_event_info_fid: header, fsid, then a struct file_handle and a name.
        if body.len() < 20 {
            continue;
        }
        let int = |i: usize| i32::from_ne_bytes(body[i..i + 4].try_into().unwrap());
        let (fsid, bytes, htype) = ([int(4), int(8)], int(12) as usize, int(16));
        let fh_end = (20 + bytes).min(body.len());
        let node = if fsid != k.fsid {
            NO_NODE - 2
        } else {
            k.fh_node.get(&(htype, body[20..fh_end].to_vec())).copied().unwrap_or(NO_NODE - 1)
        };
        match ty {
            FID => fid = node,
            DFID | DFID_NAME => {
                dir = node;
                if ty == DFID_NAME {
                    let raw = &body[fh_end..];
                    let s = &raw[..raw.iter().position(|b| *b == 0).unwrap_or(raw.len())];
                    name = if s == b"." { DOT_NAME } else { name_id(s) };
                }
            }
            _ => {}
        }
    }
    (dir, name, fid)
}

struct Actor {
    tx: Sender<Step>,
    rx: Receiver<(Ret, Vec<Ev>)>,
}

fn spawn_actor(k: Arc<Mutex<Kernel>>, task: u8) -> Actor {
    let (tx, cmd) = mpsc::channel::<Step>();
    let (done, rx) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    thread::spawn(move || {
        k.lock().unwrap_or_else(|e| e.into_inner()).tid_task.insert(gettid(), task);
        let _ = ready_tx.send(());
        while let Ok(step) = cmd.recv() {
            if done.send(perform(&k, &step)).is_err() {
                break;
            }
        }
    });
    let _ = ready.recv();
    Actor { tx, rx }
}

/// Runs `steps` once on the kernel; `Err` describes the first divergence from refcore.
/// A divergence: what happened, and its id-free signature (see `kbot_scenario::signature`).
pub struct Diverged {
    pub text: String,
    pub sig: String,
}

fn diverged(text: String, sig: &str) -> Diverged {
    Diverged { text, sig: sig.to_string() }
}

pub fn run_once(steps: &[Step], dir: &str, t: &Timing) -> Result<(), Diverged> {
    let pred = predict_with(steps, Semantics::Current, t.queue_limit).map_err(|e| diverged(e.to_string(), "setup"))?;
    let _ = unmount(dir);
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| diverged(format!("mkdir {dir}: {e}"), "setup"))?;
    if t.own_fs {
        sys::mount("tmpfs", dir, "tmpfs").map_err(|e| diverged(format!("mount a tmpfs on {dir}: {e}"), "setup"))?;
    }
    let mut kern = Kernel::default();
    kern.dir = dir.to_string();
    for i in 0..MAX_INODES as u8 {
        let p = kern.path(i);
        std::fs::write(&p, "kbot\n").map_err(|e| diverged(format!("create {p}: {e}"), "setup"))?;
        kern.learn(i, i);
    }
    // The root is node 8; objects the steps create are numbered from 9 on.
    kern.learn(path::of(0, path::SELF), MAX_INODES as u8);
    kern.fsid = fsid_of(dir);
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: a two-int array for pipe2.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
        kern.pipe = Some((fds[0], fds[1]));
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat of our own fd into a zeroed struct.
        if unsafe { libc::fstat(fds[0], &mut st) } == 0 {
            kern.ino_node.insert((kdev(st.st_dev), st.st_ino as u64), PIPE_NODE);
        }
    }
    kern.next_node = MAX_INODES as u8 + 1;
    let k = Arc::new(Mutex::new(kern));
    let mut actors: Vec<Option<Actor>> = (0..MAX_TASKS).map(|_| None).collect();
    let mut busy = [false; MAX_TASKS];
    let mut result = Ok(());
    for (i, step) in steps.iter().enumerate() {
        let task = step.task as usize;
        if busy[task] {
            result = Err(diverged(
                format!("step {}: t{task} is still blocked in the kernel; the model says it finished", i + 1),
                "busy",
            ));
            break;
        }
        let actor = actors[task].get_or_insert_with(|| spawn_actor(k.clone(), step.task));
        if actor.tx.send(*step).is_err() {
            result = Err(diverged(format!("step {}: task t{task} died", i + 1), "died"));
            break;
        }
        let want = &pred[i];
        let mut got = StepObs::default();
        match actor.rx.recv_timeout(if want.ret.is_some() { t.prompt } else { t.settle }) {
            Ok((ret, evs)) => {
                got.ret = Some(ret);
                got.events = evs;
            }
            Err(_) => busy[task] = true,
        }
        // Releases the model predicts get the full prompt time; others a short look.
        for (w, _) in &want.released {
            let w = *w as usize;
            if busy[w] {
                if let Some(Ok((ret, _))) = actors[w].as_ref().map(|a| a.rx.recv_timeout(t.prompt)) {
                    busy[w] = false;
                    got.released.push((w as u8, ret));
                }
            }
        }
        if busy.iter().any(|b| *b) {
            thread::sleep(Duration::from_millis(20));
        }
        for w in 0..MAX_TASKS {
            if busy[w] {
                if let Some(Ok((ret, _))) = actors[w].as_ref().map(|a| a.rx.try_recv()) {
                    busy[w] = false;
                    got.released.push((w as u8, ret));
                }
            }
        }
        got.released.sort();
        if let Some(d) = compare_step(step, want, &got) {
            if t.dump && want.ret.is_some() && got.ret.is_none() {
                // Where the kernel is stuck, while it still is.
                let _ = std::fs::write("/proc/sysrq-trigger", "w");
            }
            result = Err(Diverged { text: format!("step {}: {d}", i + 1), sig: signature(step, want, &got) });
            break;
        }
    }
    let stuck = cleanup(&k, &actors, &mut busy);
    if t.own_fs {
        // Lazily: a task the kernel never released may still be inside.
        let _ = unmount(dir);
    }
    if stuck > 0 && result.is_ok() {
        // The kernel kept tasks blocked after every group was closed: that is a finding too.
        result = Err(diverged(
            format!("after the last step and closing every group, {stuck} task(s) are still blocked in the kernel"),
            "stuck",
        ));
    }
    result
}

/// Detaches the tmpfs of a run (MNT_DETACH: busy or not).
fn unmount(dir: &str) -> std::io::Result<()> {
    let c = cstr(dir);
    // SAFETY: valid C string.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Closes every group (which allows pending permission events) and waits a little for
/// blocked tasks; a task the kernel never releases is left behind.
fn cleanup(k: &Arc<Mutex<Kernel>>, actors: &[Option<Actor>], busy: &mut [bool; MAX_TASKS]) -> usize {
    let fds: Vec<RawFd> = {
        let mut k = k.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<RawFd> = k.perm.drain().map(|(_, fd)| fd).collect();
        v.extend(k.groups.iter_mut().filter_map(|g| g.take().map(|(fd, _)| fd)));
        v
    };
    // Every fd in its own thread: on a kernel with the seed's bug, closing a group with marks
    // blocks until another group's pending permission events are answered, which only
    // closing that other group does. One after the other could deadlock and leave a waiter
    // inside SRCU for the rest of the boot.
    let (tx, rx) = mpsc::channel();
    let n = fds.len();
    for fd in fds {
        let tx = tx.clone();
        thread::spawn(move || {
            sys::close(fd);
            let _ = tx.send(());
        });
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for _ in 0..n {
        if rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    for (w, a) in actors.iter().enumerate() {
        if busy[w] {
            if let Some(a) = a {
                if a.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok() {
                    busy[w] = false;
                }
            }
        }
    }
    busy.iter().filter(|b| **b).count()
}

/// Runs a scenario; on a divergence shrinks it and replays the minimum to confirm.
/// Returns `Ok(detail)` when the kernel matched the model (or the divergence did not
/// reproduce), `Err(detail)` for a confirmed divergence.
pub fn check(sc: &Scenario, dir: &str, t: &Timing, shrink_budget: usize) -> Result<String, String> {
    let started = Instant::now();
    let first = match run_once(&sc.steps, dir, t) {
        Ok(()) => return Ok(format!("{} steps as predicted", sc.steps.len())),
        Err(d) => d,
    };
    let same = |r: Result<(), Diverged>| r.err().filter(|d| d.sig == first.sig);
    if t.shrink_time.is_zero() {
        // Verdict only (a bisection step): kbot reruns the step that names the culprit itself.
        return Err(format!("divergence: {} (not shrunk)", first.text));
    }
    let mut tries = 0;
    // Shrinking is bounded in tries and in time: a kernel that hangs makes every try slow.
    let deadline = started + t.shrink_time;
    let min = shrink(
        &sc.steps,
        |cand| {
            if Instant::now() >= deadline {
                return false;
            }
            tries += 1;
            same(run_once(cand, dir, t)).is_some()
        },
        shrink_budget,
    );
    let again = same(run_once(&min, dir, t));
    if shrink_budget == 0 && again.is_none() {
        // The replay of the scenario as written did not diverge: a third run would be the same.
        return Ok(format!("flaky: diverged once ({}) but not on replay", first.text));
    }
    match again {
        // Budget 0: a corpus scenario, short and written by hand; the replay confirms it.
        Some(_) if shrink_budget == 0 => Err(format!(
            "divergence: {}; it diverged again on a replay ({} steps, not shrunk: a corpus scenario, {} ms): {}",
            first.text,
            min.len(),
            started.elapsed().as_millis(),
            format(&min)
        )),
        Some(d) => Err(format!(
            "divergence: {}; minimal scenario ({} steps, {tries} shrink runs, {} ms): {}; it diverges at {}",
            first.text,
            min.len(),
            started.elapsed().as_millis(),
            format(&min),
            d.text
        )),
        None => match same(run_once(&sc.steps, dir, t)) {
            Some(d) => Err(format!("divergence: {} (did not shrink reproducibly)", d.text)),
            None => Ok(format!("flaky: diverged once ({}) but not on replay", first.text)),
        },
    }
}
