//! Live progress on stderr: elapsed time, arch, stage, what is being worked on.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

pub struct Progress {
    start: Instant,
    quiet: bool,
    out: Mutex<()>,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress { start: Instant::now(), quiet, out: Mutex::new(()) }
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// `[  12.3s] x86_64  build    tip (3/3 patches)`
    pub fn say(&self, arch: &str, stage: &str, msg: &str) {
        if self.quiet {
            return;
        }
        let _g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(std::io::stderr(), "[{:7.1}s] {:<7} {:<8} {}", self.elapsed(), arch, stage, msg);
    }
}
