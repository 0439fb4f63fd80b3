//! Running child processes with a deadline, in their own process group so a timeout kills
//! everything they started (make's children, QEMU), with output captured to a log file.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub enum Exit {
    Status(ExitStatus),
    TimedOut,
}

impl Exit {
    pub fn success(&self) -> bool {
        matches!(self, Exit::Status(s) if s.success())
    }
}

/// Puts the command in a new process group.
pub fn own_group(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0)
}

/// Kills the whole process group led by `pid`.
pub fn kill_group(pid: u32) {
    // SAFETY: signalling a process group we created.
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
}

/// Runs `cmd` with stdout and stderr merged into `log` (at most `max_log` bytes kept; the
/// rest is dropped with a note), killing its process group after `timeout`.
pub fn run_logged(cmd: &mut Command, log: &Path, timeout: Duration, max_log: u64) -> io::Result<Exit> {
    let mut out = File::create(log)?;
    own_group(cmd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let pipes: Vec<Box<dyn Read + Send>> =
        vec![Box::new(child.stdout.take().expect("piped")), Box::new(child.stderr.take().expect("piped"))];
    let readers: Vec<_> = pipes
        .into_iter()
        .map(|mut p| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = p.read(&mut buf) {
                    if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut written = 0u64;
    let mut cut = false;
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))) {
            Ok(chunk) => {
                if written < max_log {
                    let take = chunk.len().min((max_log - written) as usize);
                    out.write_all(&chunk[..take])?;
                    written += take as u64;
                } else if !cut {
                    cut = true;
                    writeln!(out, "\n[kbot: log cut at {max_log} bytes]")?;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if Instant::now() >= deadline {
                    timed_out = true;
                    kill_group(child.id());
                    break;
                }
            }
        }
    }
    let status = child.wait()?;
    for r in readers {
        let _ = r.join();
    }
    if timed_out {
        writeln!(out, "\n[kbot: killed after {} s]", timeout.as_secs())?;
        return Ok(Exit::TimedOut);
    }
    Ok(Exit::Status(status))
}

/// Whether `prog` is on PATH.
pub fn have(prog: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file())).unwrap_or(false)
}
