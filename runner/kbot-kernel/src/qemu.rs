//! Booting a test kernel in QEMU with the console captured live, under a hard timeout.

use crate::proc::{kill_group, own_group};
use crate::Arch;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

pub struct VmSpec<'a> {
    pub arch: Arch,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    /// Extra kernel command line (e.g. `kbot.only=...`).
    pub append: String,
    pub timeout: Duration,
    pub accel: Accel,
    pub mem_mb: u32,
    pub smp: u32,
}

#[derive(Debug, Clone)]
pub struct VmRun {
    pub console: String,
    pub timed_out: bool,
    /// The console grew past its limit and was cut (the VM was stopped).
    pub cut: bool,
    pub seconds: f64,
    /// What QEMU itself said on stderr (start-up errors).
    pub qemu_stderr: String,
}

/// Longest console line kept whole; longer ones are split.
pub const MAX_LINE: usize = 4096;

/// Removes the complete lines (and over-long pieces) from the front of `buf`.
pub fn take_lines(buf: &mut Vec<u8>, max_line: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) if i <= max_line => {
                out.push(String::from_utf8_lossy(&rest[..i]).trim_end_matches('\r').to_string());
                start += i + 1;
            }
            _ if rest.len() > max_line => {
                out.push(String::from_utf8_lossy(&rest[..max_line]).into_owned());
                start += max_line;
            }
            _ => break,
        }
    }
    buf.drain(..start);
    out
}

/// The marker the agent prints last; after it the VM only has to reboot.
pub const AGENT_DONE: &str = "# kbot-agent done";

/// The QEMU command in `jail`, which sees only the kernel and the initramfs (and /dev/kvm).
pub fn command(jail: &mut kbot_sandbox::Jail, spec: &VmSpec) -> io::Result<Command> {
    let kernel = jail.ro(spec.kernel, "kernel")?;
    let initrd = jail.ro(spec.initrd, "initrd")?;
    if spec.accel == Accel::Kvm {
        jail.dev(Path::new("/dev/kvm"));
    }
    let mut c = jail.command(spec.arch.qemu(), kbot_sandbox::Limits::VM);
    match spec.accel {
        Accel::Tcg => {
            c.args(["-accel", "tcg"]).args(spec.arch.qemu_machine());
        }
        Accel::Kvm => {
            let m = if spec.arch == Arch::X86_64 { "pc" } else { "virt" };
            c.args(["-accel", "kvm", "-M", m, "-cpu", "host"]);
        }
    }
    c.args(["-m", &spec.mem_mb.to_string(), "-smp", &spec.smp.to_string()]);
    c.args(["-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio"]);
    c.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd);
    let append = format!("console={} panic=-1 loglevel=7 {}", spec.arch.console(), spec.append);
    c.args(["-append", append.trim()]);
    Ok(c)
}

/// Boots the VM; every console line goes to `log` and to `on_line` as it arrives.
/// Sends whole console lines to `tx`; a line that never ends is cut: a hostile kernel must
/// not make kbot buffer without bound.
fn read_lines(mut r: impl Read + Send + 'static, tx: mpsc::Sender<String>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut buf: Vec<u8> = Vec::new();
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            for line in take_lines(&mut buf, MAX_LINE) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        }
        if !buf.is_empty() {
            let _ = tx.send(String::from_utf8_lossy(&buf).trim_end_matches('\r').to_string());
        }
    })
}

/// Keeps the start of QEMU's stderr (what it says when it cannot start); drains the rest.
fn read_start(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let room = (64 * 1024usize).saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..n.min(room)]);
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

pub fn run(
    sandbox: &kbot_sandbox::Policy,
    spec: &VmSpec,
    log: &Path,
    max_console: usize,
    mut on_line: impl FnMut(&str),
) -> io::Result<VmRun> {
    let t = Instant::now();
    let mut jail = sandbox.jail();
    let mut cmd = command(&mut jail, spec)?;
    own_group(&mut cmd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = read_lines(child.stdout.take().expect("piped"), tx);
    let err_reader = read_start(child.stderr.take().expect("piped"));
    let mut out = File::create(log)?;
    let mut console = String::new();
    let mut deadline = t + spec.timeout;
    let (mut timed_out, mut cut) = (false, false);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(line) => {
                writeln!(out, "{line}")?;
                if console.len() + line.len() + 1 > max_console {
                    cut = true;
                    writeln!(out, "[kbot: console cut at {max_console} bytes; VM stopped]")?;
                    kill_group(child.id());
                    break;
                }
                console.push_str(&line);
                console.push('\n');
                if line.starts_with(AGENT_DONE) {
                    // Only the reboot is left; do not wait the full timeout for it.
                    deadline = deadline.min(Instant::now() + Duration::from_secs(10));
                }
                on_line(&line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if Instant::now() >= deadline {
                    timed_out = !console.contains(AGENT_DONE);
                    kill_group(child.id());
                    break;
                }
            }
        }
    }
    let _ = child.wait();
    let _ = reader.join();
    let qemu_stderr = err_reader.join().unwrap_or_default();
    if timed_out {
        writeln!(out, "[kbot: VM killed after {} s]", spec.timeout.as_secs())?;
    }
    Ok(VmRun { console, timed_out, cut, seconds: t.elapsed().as_secs_f64(), qemu_stderr })
}

/// Whether KVM really works for `arch` here: boots the kernel with no tests under KVM and
/// waits briefly for the agent. Nested KVM can exist and still fail or spin.
pub fn kvm_works(sandbox: &kbot_sandbox::Policy, arch: Arch, kernel: &Path, initrd: &Path, log: &Path) -> bool {
    if !arch.kvm_possible() || std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return false;
    }
    let spec = VmSpec {
        arch,
        kernel,
        initrd,
        append: "kbot.only=none".into(),
        timeout: Duration::from_secs(15),
        accel: Accel::Kvm,
        mem_mb: 256,
        smp: 1,
    };
    run(sandbox, &spec, log, 1 << 20, |_| {}).is_ok_and(|r| r.console.contains(AGENT_DONE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_endless_ones_cut() {
        let mut b = b"one\r\ntwo\npart".to_vec();
        assert_eq!(take_lines(&mut b, 10), ["one", "two"]);
        assert_eq!(b, b"part");
        let mut b = vec![b'x'; 25];
        let l = take_lines(&mut b, 10);
        assert_eq!(l.len(), 2);
        assert!(l.iter().all(|x| x.len() == 10));
        assert_eq!(b.len(), 5);
        let mut b = vec![0xffu8, b'\n'];
        assert_eq!(take_lines(&mut b, 10), ["\u{fffd}"]);
    }
}
