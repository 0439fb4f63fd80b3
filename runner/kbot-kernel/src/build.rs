//! Kernel builds: `make` in a stable output directory with ccache, progress reports from
//! kbuild's own lines while it runs, and the compiler's error lines picked out of the log for
//! reports.

pub use crate::kbuild_progress::BuildProgress;
use crate::kbuild_progress::{count_steps, Estimator, History};
use crate::proc::{have, run_logged, Exit};
use crate::Arch;
use kbot_sandbox::{Jail, Limits, Policy};
use regex::Regex;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, LazyLock};
use std::time::{Duration, Instant};

/// `make -C src O=out ARCH=... [CROSS_COMPILE=...] CC="ccache gcc"` with fixed build stamps,
/// so identical sources give identical objects and ccache hits; in `jail`, which sees `src`
/// read-only and `out` (and the ccache directory) writable. Returns the command and the inside
/// paths of src and out.
pub fn make_cmd(
    jail: &mut Jail,
    src: &Path,
    out: &Path,
    arch: Arch,
    jobs: usize,
    ccache: bool,
) -> std::io::Result<(Command, PathBuf, PathBuf)> {
    let src_in = jail.ro(src, "src")?;
    let out_in = jail.rw(out, "out")?;
    // `CC=ccache gcc` whenever ccache is there, used or not: kbuild rebuilds every object whose
    // command line changed, so a cold run with plain `gcc` would make the next run cold too.
    // Not used (CCACHE_DISABLE in kbot's environment, e.g. the bench's cold run): ccache
    // only runs the compiler, and its directory is not in the sandbox.
    let reuse = ccache && use_ccache();
    let ccache_dir = match std::env::var_os("CCACHE_DIR") {
        Some(d) if reuse => Some(jail.rw(Path::new(&d), "ccache")?),
        _ => None,
    };
    let mut c = jail.command("make", Limits::BUILD);
    c.arg("-C").arg(&src_in).arg(format!("O={}", out_in.display()));
    c.arg(format!("ARCH={}", arch.make_arch()));
    let cross = arch.cross_compile().unwrap_or("");
    if !cross.is_empty() {
        c.arg(format!("CROSS_COMPILE={cross}"));
    }
    if ccache {
        c.arg(format!("CC=ccache {cross}gcc"));
        if let Some(d) = &ccache_dir {
            c.env("CCACHE_DIR", d);
        }
        if !reuse {
            c.env("CCACHE_DISABLE", "1");
        }
    }
    c.arg(format!("-j{jobs}"));
    c.env("KBUILD_BUILD_TIMESTAMP", "1970-01-01").env("KBUILD_BUILD_USER", "kbot").env("KBUILD_BUILD_HOST", "kbot");
    Ok((c, src_in, out_in))
}

#[derive(Debug, Clone)]
pub struct BuildResult {
    pub ok: bool,
    pub timed_out: bool,
    pub image: Option<PathBuf>,
    pub log: PathBuf,
    /// Compiler and linker error lines (`file:line:col: error: ...`), 0-day style.
    pub errors: Vec<String>,
    pub seconds: f64,
    /// kbuild's step lines in the log (`  CC      fs/notify/mark.o`, ...).
    pub steps: u64,
}

/// Whether ccache is to be used: installed, and not disabled in kbot's own environment the way
/// ccache itself reads `CCACHE_DISABLE` (set, and not `0`/`false`/`no`/`disable`). The build
/// runs with an emptied environment, so the variable is passed on by [`make_cmd`] (and the
/// ccache directory is left out of the sandbox).
pub fn use_ccache() -> bool {
    let disabled = std::env::var("CCACHE_DISABLE")
        .map(|v| !["0", "false", "no", "disable"].contains(&v.trim().to_ascii_lowercase().as_str()))
        .unwrap_or_else(|e| matches!(e, std::env::VarError::NotUnicode(_)));
    !disabled && have("ccache")
}

/// Where a build directory keeps the step counts of its previous builds (see [`History`]).
pub const HISTORY_FILE: &str = ".kbot-build-lines";

/// Reads `out/.kbot-build-lines` without following a symlink or blocking on a FIFO: the build
/// directory is writable by the sandboxed build.
fn read_history(out: &Path) -> History {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(out.join(HISTORY_FILE));
    let Ok(f) = f else { return History::default() };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return History::default();
    }
    let mut text = String::new();
    let _ = f.take(256).read_to_string(&mut text);
    History::parse(&text)
}

/// Replaces `out/.kbot-build-lines`: whatever the build left under that name (a symlink
/// included) is removed, and the new file is created afresh, never through a link.
fn write_history(out: &Path, h: &History) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let p = out.join(HISTORY_FILE);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).mode(0o644).open(&p)?;
    f.write_all(h.render().as_bytes())
}

/// How often a running build reports its progress.
const TICK: Duration = Duration::from_secs(1);

/// Follows `log` (created anew by the build) until `stop` is dropped, feeding its lines to `est`
/// and calling `report` every [`TICK`].
fn follow(log: &Path, mut est: Estimator, start: Instant, stop: mpsc::Receiver<()>, report: &dyn Fn(BuildProgress)) {
    let mut file: Option<std::fs::File> = None;
    let mut pos = 0u64;
    let mut partial: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(TICK) {
        if file.is_none() {
            file = std::fs::File::open(log).ok();
        }
        if let Some(f) = file.as_mut() {
            if f.metadata().is_ok_and(|m| m.len() < pos) {
                // Truncated: read from the start again.
                pos = 0;
                partial.clear();
            }
            if f.seek(SeekFrom::Start(pos)).is_ok() {
                while let Ok(n) = f.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    pos += n as u64;
                    partial.extend_from_slice(&buf[..n]);
                }
            }
            if let Some(end) = partial.iter().rposition(|&b| b == b'\n') {
                for line in String::from_utf8_lossy(&partial[..end]).lines() {
                    est.feed(line);
                }
                partial.drain(..=end);
            }
        }
        report(est.progress(start.elapsed()));
    }
}

/// The tools a build needs for `arch`, missing ones listed.
pub fn missing_tools(arch: Arch) -> Vec<String> {
    let cc = format!("{}gcc", arch.cross_compile().unwrap_or(""));
    let mut tools = vec!["make", "flex", "bison", "bc", "perl", cc.as_str()];
    if arch == Arch::X86_64 {
        // Its bzImage is LZ4-compressed (images/kconfig/x86_64.config).
        tools.push("lz4");
    }
    tools.into_iter().filter(|t| !have(t)).map(str::to_string).collect()
}

/// Builds the kernel image of `arch` from `src` in `out`, logging to `log`. While make runs,
/// `progress` is called about once a second with kbuild's steps done so far, compared with
/// the previous build of this build directory (kept in `out/.kbot-build-lines`), or for an
/// empty build directory without history with a typical total (labelled as a guess).
#[allow(clippy::too_many_arguments)]
pub fn build(
    sandbox: &Policy,
    src: &Path,
    out: &Path,
    arch: Arch,
    jobs: usize,
    log: &Path,
    timeout: Duration,
    progress: &(dyn Fn(BuildProgress) + Sync),
) -> std::io::Result<BuildResult> {
    let t = Instant::now();
    let mut jail = sandbox.jail();
    let (mut cmd, src_in, out_in) = make_cmd(&mut jail, src, out, arch, jobs, have("ccache"))?;
    cmd.arg(arch.image_target());
    let empty = !out.join("vmlinux").exists();
    let mut history = read_history(out);
    let est = Estimator::new(history.expected(empty, arch))
        .strip_prefixes([format!("{}/", src_in.display()), format!("{}/", out_in.display())]);
    // The follower must only ever see this build's log.
    match std::fs::remove_file(log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let (stop, stopped) = mpsc::channel::<()>();
    let exit = std::thread::scope(|s| {
        s.spawn(|| follow(log, est, t, stopped, progress));
        let exit = run_logged(&mut cmd, log, timeout, 64 << 20);
        drop(stop);
        exit
    })?;
    let text = std::fs::read(log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let steps = count_steps(&text);
    let image = out.join(arch.image_path());
    let ok = exit.success() && image.is_file();
    if ok && steps > 0 {
        history.record(steps, empty);
        // Only the next build's progress estimate depends on it.
        let _ = write_history(out, &history);
    }
    Ok(BuildResult {
        ok,
        timed_out: matches!(exit, Exit::TimedOut),
        image: ok.then_some(image),
        log: log.to_path_buf(),
        errors: if ok {
            Vec::new()
        } else if matches!(exit, Exit::TimedOut) {
            vec![format!("build stopped by its time limit ({} s)", timeout.as_secs())]
        } else {
            error_lines(&text, &src_in, &out_in)
        },
        seconds: t.elapsed().as_secs_f64(),
        steps,
    })
}

static ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\S+?:\d+(?::\d+)?: (?:fatal )?error: .*|\S+: undefined reference to .*|.*: undefined symbol: .*|ld(?:\.\S+)?: .*error.*)$").unwrap()
});
static MAKE_ERR: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^make(\[\d+\])?: \*\*\* ").unwrap());

/// The error lines of a build log, paths made relative to the tree, duplicates dropped.
/// Falls back to make's own `***` lines when the compiler said nothing recognizable.
pub fn error_lines(log: &str, src: &Path, out: &Path) -> Vec<String> {
    let prefixes = [format!("{}/", src.display()), format!("{}/", out.display())];
    let rel = |l: &str| prefixes.iter().fold(l.to_string(), |l, p| l.replace(p.as_str(), ""));
    let mut v: Vec<String> = Vec::new();
    for l in log.lines().filter(|l| ERROR.is_match(l)).map(rel) {
        if !v.contains(&l) {
            v.push(l);
        }
    }
    if v.is_empty() {
        v = log.lines().filter(|l| MAKE_ERR.is_match(l)).map(rel).collect();
    }
    if v.is_empty() {
        v = log.lines().rev().take(5).map(rel).collect::<Vec<_>>().into_iter().rev().collect();
    }
    v.truncate(20);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log written while it is followed, in pieces cut mid-line: every step is seen once.
    #[test]
    fn follows_a_growing_log() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("build.log");
        let seen = std::sync::Mutex::new(Vec::new());
        let (stop, stopped) = mpsc::channel();
        let est = Estimator::new(None).strip_prefixes(["/mnt/kbot/src/".to_string()]);
        std::thread::scope(|s| {
            s.spawn(|| follow(&log, est, Instant::now(), stopped, &|p| seen.lock().unwrap().push(p)));
            let mut f = std::fs::File::create(&log).unwrap();
            for piece in ["make[1]: Entering\n  CC      init/main.o\n  CA", "LL    /mnt/kbot/src/scripts/x.sh\n  LD"] {
                f.write_all(piece.as_bytes()).unwrap();
                // Until the follower has reported what this piece completes.
                let want = seen.lock().unwrap().len() + 1;
                let t = Instant::now();
                while seen.lock().unwrap().len() < want && t.elapsed() < Duration::from_secs(30) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            drop(stop);
        });
        let seen = seen.into_inner().unwrap();
        let last = seen.last().unwrap();
        assert_eq!(last.to_string(), "2 steps, CALL scripts/x.sh");
        assert!(seen.iter().any(|p| p.to_string() == "1 steps, CC init/main.o"), "{seen:?}");
    }

    #[test]
    fn history_is_written_afresh_not_through_a_link() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, out.join(HISTORY_FILE)).unwrap();
        assert_eq!(read_history(&out), History::default());
        let h = History { last: Some(51), full: Some(899) };
        write_history(&out, &h).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(read_history(&out), h);
    }

    #[test]
    fn picks_compiler_errors() {
        let log = "  CC      fs/notify/mark.o\n/w/src/fs/notify/mark.c:530:9: error: implicit declaration of function 'foo' [-Werror=implicit-function-declaration]\n  530 |         foo();\n/w/src/fs/notify/mark.c:530:9: error: implicit declaration of function 'foo' [-Werror=implicit-function-declaration]\nmake[4]: *** [scripts/Makefile.build:229: fs/notify/mark.o] Error 1\n";
        let e = error_lines(log, Path::new("/w/src"), Path::new("/w/out"));
        assert_eq!(e, ["fs/notify/mark.c:530:9: error: implicit declaration of function 'foo' [-Werror=implicit-function-declaration]"]);
    }

    #[test]
    fn linker_and_make_fallbacks() {
        let e = error_lines(
            "ld: vmlinux.o: in function `x':\nmark.c:(.text+0x1): undefined reference to `nope'\n",
            Path::new("/s"),
            Path::new("/o"),
        );
        assert_eq!(e, ["mark.c:(.text+0x1): undefined reference to `nope'"]);
        let e = error_lines("make[1]: *** [Makefile:1] Error 2\n", Path::new("/s"), Path::new("/o"));
        assert_eq!(e, ["make[1]: *** [Makefile:1] Error 2"]);
    }
}
