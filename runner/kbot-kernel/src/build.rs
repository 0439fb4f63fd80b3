//! Kernel builds: `make` in a stable output directory with ccache, and the compiler's error
//! lines picked out of the log for reports.

use crate::proc::{have, run_logged, Exit};
use crate::Arch;
use kbot_sandbox::{Jail, Limits, Policy};
use regex::Regex;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;
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
    let ccache_dir = match std::env::var_os("CCACHE_DIR") {
        Some(d) if ccache => Some(jail.rw(Path::new(&d), "ccache")?),
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
}

/// The tools a build needs for `arch`, missing ones listed.
pub fn missing_tools(arch: Arch) -> Vec<String> {
    let cc = format!("{}gcc", arch.cross_compile().unwrap_or(""));
    ["make", "flex", "bison", "bc", "perl", cc.as_str()].iter().filter(|t| !have(t)).map(|t| t.to_string()).collect()
}

pub fn build(
    sandbox: &Policy,
    src: &Path,
    out: &Path,
    arch: Arch,
    jobs: usize,
    log: &Path,
    timeout: Duration,
) -> std::io::Result<BuildResult> {
    let t = Instant::now();
    let mut jail = sandbox.jail();
    let (mut cmd, src_in, out_in) = make_cmd(&mut jail, src, out, arch, jobs, have("ccache"))?;
    cmd.arg(arch.image_target());
    let exit = run_logged(&mut cmd, log, timeout, 64 << 20)?;
    let text = std::fs::read(log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let image = out.join(arch.image_path());
    let ok = exit.success() && image.is_file();
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
