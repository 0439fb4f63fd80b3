//! Live progress on stderr: elapsed time, arch, stage, what is being worked on.
//!
//! Besides plain messages ([`Progress::say`]) there are live reports of long work
//! ([`Progress::live`], e.g. a kernel build's steps): on a terminal they update one status line
//! in place (`\r`, clear to the end of the line), redrawn below the plain messages; otherwise
//! (a log file, `kbot serve`'s job log) each is a plain line, at most one per
//! [`PLAIN_EVERY`] for the same arch and stage. A plain message for an arch and stage ends that
//! stage's live report.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Least time between two plain lines of the same live report.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);
/// Least time between two redraws of the status line on a terminal.
const REDRAW_EVERY: Duration = Duration::from_millis(500);
/// A live report not updated for this long is dropped from the status line.
const STALE: Duration = Duration::from_secs(60);

struct Live {
    arch: String,
    stage: String,
    msg: String,
    /// When it was last updated.
    seen: Instant,
    /// When it was last printed as a plain line (or started, before the first one).
    printed: Instant,
}

#[derive(Default)]
struct State {
    live: Vec<Live>,
    /// Whether the status line is on the screen (the cursor is at its end).
    shown: bool,
    drawn: Option<Instant>,
}

pub struct Progress {
    start: Instant,
    quiet: bool,
    /// Status lines updated in place (stderr is a terminal that understands `\x1b[K`).
    tty: bool,
    out: Mutex<State>,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal() && std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb");
        Progress { start: Instant::now(), quiet, tty, out: Mutex::new(State::default()) }
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn line(&self, arch: &str, stage: &str, msg: &str) -> String {
        format!("[{:7.1}s] {:<7} {:<8} {}", self.elapsed(), arch, stage, msg)
    }

    /// `[  12.3s] x86_64  build    tip (3/3 patches)`
    pub fn say(&self, arch: &str, stage: &str, msg: &str) {
        if self.quiet {
            return;
        }
        let mut st = self.out.lock().unwrap_or_else(|e| e.into_inner());
        st.live.retain(|l| !(l.arch == arch && l.stage == stage));
        let mut err = std::io::stderr().lock();
        if st.shown {
            let _ = write!(err, "\r\x1b[K");
            st.shown = false;
        }
        let _ = writeln!(err, "{}", self.line(arch, stage, msg));
        if self.tty {
            self.draw(&mut st, &mut err);
        }
    }

    /// A progress report of long work (`base: 312/1400 steps (22%), CC fs/x.o, ~6 min left`):
    /// replaces the previous one of the same arch and stage. On a terminal it shows in the status
    /// line; otherwise it is printed as a plain line when the previous plain line of this arch
    /// and stage is [`PLAIN_EVERY`] old (the first after [`PLAIN_EVERY`]: short work prints none).
    pub fn live(&self, arch: &str, stage: &str, msg: &str) {
        if self.quiet {
            return;
        }
        let now = Instant::now();
        let mut st = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let i = match st.live.iter().position(|l| l.arch == arch && l.stage == stage) {
            Some(i) => i,
            None => {
                st.live.push(Live {
                    arch: arch.into(),
                    stage: stage.into(),
                    msg: String::new(),
                    seen: now,
                    printed: now,
                });
                st.live.len() - 1
            }
        };
        st.live[i].msg = msg.to_string();
        st.live[i].seen = now;
        let mut err = std::io::stderr().lock();
        if self.tty {
            if st.drawn.is_none_or(|d| now.duration_since(d) >= REDRAW_EVERY) {
                self.draw(&mut st, &mut err);
            }
        } else if now.duration_since(st.live[i].printed) >= PLAIN_EVERY {
            st.live[i].printed = now;
            let _ = writeln!(err, "{}", self.line(arch, stage, msg));
        }
    }

    /// Redraws the status line from the live reports that are not stale (clears it when none).
    fn draw(&self, st: &mut State, err: &mut impl Write) {
        let now = Instant::now();
        st.live.retain(|l| now.duration_since(l.seen) < STALE);
        st.drawn = Some(now);
        if st.live.is_empty() {
            if st.shown {
                let _ = write!(err, "\r\x1b[K");
                let _ = err.flush();
                st.shown = false;
            }
            return;
        }
        let text =
            status_line(self.elapsed(), st.live.iter().map(|l| (l.arch.as_str(), l.stage.as_str(), l.msg.as_str())));
        let _ = write!(err, "\r\x1b[K{}", fit(&text, width()));
        let _ = err.flush();
        st.shown = true;
    }
}

impl Drop for Progress {
    /// Leaves no half line behind.
    fn drop(&mut self) {
        let st = self.out.get_mut().unwrap_or_else(|e| e.into_inner());
        if st.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

/// `[  12.3s] x86_64  build    base: 10/899 steps ... | arm64   build    base: ...`
fn status_line<'a>(elapsed: f64, live: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> String {
    let parts: Vec<String> = live.map(|(a, s, m)| format!("{a:<7} {s:<8} {m}")).collect();
    format!("[{elapsed:7.1}s] {}", parts.join(" | "))
}

/// At most `width - 1` characters, so the line never wraps (a wrapped line cannot be redrawn
/// in place).
fn fit(s: &str, width: usize) -> String {
    let max = width.saturating_sub(1).max(20);
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

/// The terminal's width (stderr), 80 when it cannot be asked.
fn width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize we own.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            return ws.ws_col as usize;
        }
    }
    80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_joins_arches_and_fits_the_terminal() {
        let s = status_line(
            12.34,
            [("x86_64", "build", "base: 10/899 steps (1%), CC init/main.o"), ("arm64", "build", "base: 3 steps")]
                .into_iter(),
        );
        assert_eq!(
            s,
            "[   12.3s] x86_64  build    base: 10/899 steps (1%), CC init/main.o | arm64   build    base: 3 steps"
        );
        assert_eq!(fit(&s, 200), s);
        let f = fit(&s, 40);
        assert_eq!(f.chars().count(), 39);
        assert_eq!(f, "[   12.3s] x86_64  build    base: 10/8…");
    }

    #[test]
    fn quiet_keeps_no_live_reports() {
        let p = Progress::new(true);
        p.live("x86_64", "build", "base: 1 steps");
        p.say("x86_64", "build", "base: ok");
        assert!(p.out.lock().unwrap().live.is_empty());
    }

    #[test]
    fn a_plain_message_ends_its_stages_live_report() {
        let mut p = Progress::new(false);
        p.tty = false;
        p.live("x86_64", "build", "base: 1 steps");
        p.live("arm64", "build", "base: 2 steps");
        p.live("x86_64", "build", "base: 5 steps");
        {
            let st = p.out.lock().unwrap();
            assert_eq!(st.live.len(), 2);
            assert_eq!(st.live[0].msg, "base: 5 steps");
        }
        p.say("x86_64", "build", "base: ok in 1.0s");
        let st = p.out.lock().unwrap();
        assert_eq!(st.live.iter().map(|l| l.arch.as_str()).collect::<Vec<_>>(), ["arm64"]);
    }
}
