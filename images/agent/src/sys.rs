//! Thin wrappers over the syscalls the tests use. fanotify's ABI is spelled out here
//! (it is stable) so the agent depends on nothing but `libc`.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

pub const FAN_CLASS_NOTIF: u32 = 0x0000_0000;
pub const FAN_CLASS_CONTENT: u32 = 0x0000_0004;
pub const FAN_CLOEXEC: u32 = 0x0000_0001;
pub const FAN_MARK_ADD: u32 = 0x0000_0001;
pub const FAN_MARK_REMOVE: u32 = 0x0000_0002;
pub const FAN_MODIFY: u64 = 0x0000_0002;
pub const FAN_OPEN_PERM: u64 = 0x0001_0000;
pub const FAN_ALLOW: u32 = 0x01;
pub const FAN_DENY: u32 = 0x02;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct EventMetadata {
    event_len: u32,
    vers: u8,
    reserved: u8,
    metadata_len: u16,
    mask: u64,
    fd: i32,
    pid: i32,
}

#[repr(C)]
struct Response {
    fd: i32,
    response: u32,
}

fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cpath(path: &str) -> CString {
    CString::new(path).expect("test paths have no NUL")
}

pub fn fanotify_init(class: u32) -> io::Result<RawFd> {
    let flags = class | FAN_CLOEXEC;
    let event_f_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32;
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_fanotify_init, flags, event_f_flags) })?;
    Ok(fd as RawFd)
}

pub fn fanotify_mark(fd: RawFd, flags: u32, mask: u64, path: &str) -> io::Result<()> {
    let p = cpath(path);
    // SAFETY: `p` outlives the call; on 64-bit arches the mask is one register.
    cvt(unsafe { libc::syscall(libc::SYS_fanotify_mark, fd, flags, mask, libc::AT_FDCWD, p.as_ptr()) })?;
    Ok(())
}

/// One permission (or notification) event read from a fanotify group.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub fd: RawFd,
    pub mask: u64,
}

/// Waits up to `timeout` for the group to become readable, then reads the events queued.
pub fn read_events(fd: RawFd, timeout: Duration) -> io::Result<Vec<Event>> {
    if !poll_readable(fd, timeout)? {
        return Ok(Vec::new());
    }
    let mut buf = [0u8; 4096];
    // SAFETY: buf is valid for its length.
    let n = cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } as libc::c_long)? as usize;
    let mut out = Vec::new();
    let mut off = 0;
    let sz = std::mem::size_of::<EventMetadata>();
    while off + sz <= n {
        // SAFETY: bounds checked above; read_unaligned copes with any alignment.
        let m: EventMetadata = unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast::<EventMetadata>()) };
        if m.event_len < sz as u32 {
            break;
        }
        out.push(Event { fd: m.fd, mask: m.mask });
        off += m.event_len as usize;
    }
    Ok(out)
}

pub fn respond(group: RawFd, ev: &Event, verdict: u32) -> io::Result<()> {
    let r = Response { fd: ev.fd, response: verdict };
    let sz = std::mem::size_of::<Response>();
    // SAFETY: r is a plain repr(C) struct of `sz` bytes.
    cvt(unsafe { libc::write(group, (&r as *const Response).cast(), sz) } as libc::c_long)?;
    close(ev.fd);
    Ok(())
}

pub fn poll_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let n = cvt(unsafe { libc::poll(&mut p, 1, ms) } as libc::c_long)?;
    Ok(n > 0)
}

pub fn close(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: closing a descriptor we own.
        unsafe { libc::close(fd) };
    }
}

pub fn open_rdonly(path: &str) -> io::Result<RawFd> {
    let p = cpath(path);
    // SAFETY: valid C string.
    let fd = cvt(unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) } as libc::c_long)?;
    Ok(fd as RawFd)
}

pub fn inotify_with_watch(path: &str) -> io::Result<RawFd> {
    // SAFETY: plain syscalls.
    let fd = cvt(unsafe { libc::inotify_init1(libc::IN_CLOEXEC) } as libc::c_long)? as RawFd;
    let p = cpath(path);
    let w = unsafe { libc::inotify_add_watch(fd, p.as_ptr(), libc::IN_MODIFY | libc::IN_OPEN) };
    if w < 0 {
        let e = io::Error::last_os_error();
        close(fd);
        return Err(e);
    }
    Ok(fd)
}

pub fn write_file(path: &str, data: &str) -> io::Result<()> {
    std::fs::write(path, data)
}

pub fn mount(src: &str, target: &str, fstype: &str) -> io::Result<()> {
    let _ = std::fs::create_dir_all(target);
    let (s, t, f) = (cpath(src), cpath(target), cpath(fstype));
    // SAFETY: valid C strings, no data argument.
    cvt(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) } as libc::c_long)?;
    Ok(())
}

pub fn reboot() -> ! {
    // SAFETY: flush is done by the caller; as PID 1 in a throwaway VM this ends it.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT);
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
