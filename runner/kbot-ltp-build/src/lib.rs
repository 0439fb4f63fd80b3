//! LTP (the Linux Test Project) for kbot's guests: a static build of LTP's fanotify and
//! inotify tests per arch, cached by LTP commit under `<cache>/<id>/<arch>/`, and the guest
//! tools those tests call (a static busybox as `/bin/sh`, Debian's `mke2fs` as
//! `mkfs.ext2/3/4` with its libraries, `/etc/passwd` and `/etc/group`), both as
//! [`GuestFile`] lists the initramfs writer places into the guest.
//!
//! The test list is LTP's own: the lines of `runtest/syscalls` whose executable starts with
//! `fanotify` or `inotify` and is built from `testcases/kernel/syscalls/{fanotify,inotify}`
//! (`inotify_init1_*` live in another directory and are not built).

pub mod elf;
pub mod guest;

pub use guest::guest_tools;
use kbot_kernel::{fnv64, Arch};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The two directories of LTP kbot builds, relative to the LTP top directory.
pub const TEST_DIRS: [&str; 2] = ["testcases/kernel/syscalls/fanotify", "testcases/kernel/syscalls/inotify"];
/// The test list in the build's root (one `name command...` line per test, in order).
pub const TESTS_FILE: &str = "tests.txt";
/// Written last into a complete build: a directory without it is not a build.
const MARKER: &str = ".kbot-complete";

#[derive(Debug, thiserror::Error)]
pub enum LtpError {
    /// The LTP source given is not usable.
    #[error("{0}")]
    Source(String),
    /// A build step failed; its output is in the log.
    #[error("LTP build for {arch} failed at `{step}` ({status}); see the log {}", log.display())]
    Step { arch: Arch, step: String, status: String, log: PathBuf },
    /// A file or directory of the cache.
    #[error("{what} {}: {err}; check the disk and the permissions of kbot's cache (or set KBOT_HOME)", path.display())]
    Io { what: &'static str, path: PathBuf, err: std::io::Error },
    /// The guest tools (busybox, mke2fs and its libraries) cannot be had.
    #[error("{0}")]
    GuestTools(String),
    /// The build ran but its result does not fit the test list.
    #[error("{0}")]
    Tests(String),
}

pub(crate) fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LtpError + 'a {
    move |err| LtpError::Io { what, path: path.to_path_buf(), err }
}

/// Where LTP comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The top directory of an LTP checkout (git or not).
    Checkout(PathBuf),
    /// A `.tar`, `.tar.xz` or `.tar.gz` made by `git archive` (unpacking to `ltp/`).
    Tarball(PathBuf),
}

const TARBALL_ENDINGS: [&str; 5] = [".tar", ".tar.xz", ".txz", ".tar.gz", ".tgz"];

/// Tells a checkout from a tarball; anything else is an error that says what to give.
pub fn locate(path: &Path) -> Result<Source, LtpError> {
    let md = fs::metadata(path).map_err(|e| {
        LtpError::Source(format!(
            "LTP source {}: {e}; give the top directory of an LTP checkout or a tarball of it (`git archive`)",
            path.display()
        ))
    })?;
    let abs = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if md.is_dir() {
        let is_ltp = |d: &Path| d.join("include/tst_test.h").is_file() && d.join("configure.ac").is_file();
        if is_ltp(path) {
            return Ok(Source::Checkout(abs));
        }
        let hint = if is_ltp(&path.join("ltp")) {
            format!(" (did you mean {}?)", path.join("ltp").display())
        } else {
            String::new()
        };
        return Err(LtpError::Source(format!(
            "{} is not an LTP checkout (no include/tst_test.h and configure.ac){hint}; give the top directory of an LTP checkout",
            path.display()
        )));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if md.is_file() && TARBALL_ENDINGS.iter().any(|e| name.ends_with(e)) {
        return Ok(Source::Tarball(abs));
    }
    Err(LtpError::Source(format!(
        "{} is neither an LTP checkout (a directory) nor a tarball (.tar, .tar.xz, .tar.gz); give one of those",
        path.display()
    )))
}

fn git_out(dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).stderr(Stdio::null()).output().ok()?;
    out.status.success().then_some(out.stdout)
}

fn is_git(dir: &Path) -> bool {
    git_out(dir, &["rev-parse", "--is-inside-work-tree"]).is_some_and(|o| o.starts_with(b"true"))
}

fn is_commit_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The LTP commit of a source. A git checkout: `git rev-parse HEAD`, plus `-dirty-<hash of
/// the changes>` when `git status --porcelain` shows any (each state of the edits is its own
/// build). A checkout without git: `unversioned-<hash of VERSION and the path>` (edits are
/// then not noticed: delete the cache entry to rebuild). A tarball: the commit `git archive`
/// put into it (`git get-tar-commit-id`), else `content-<hash of the file>`.
pub fn id(src: &Source) -> Result<String, LtpError> {
    match src {
        Source::Checkout(dir) => {
            if !is_git(dir) {
                let version = fs::read(dir.join("VERSION")).unwrap_or_default();
                let key = [version.as_slice(), b"\0", dir.to_string_lossy().as_bytes()].concat();
                return Ok(format!("unversioned-{:016x}", fnv64(&key)));
            }
            let head = git_out(dir, &["rev-parse", "HEAD"])
                .map(|o| String::from_utf8_lossy(&o).trim().to_string())
                .filter(|h| is_commit_id(h))
                .ok_or_else(|| {
                    LtpError::Source(format!(
                        "{}: `git rev-parse HEAD` failed; commit something or check the checkout",
                        dir.display()
                    ))
                })?;
            let status = git_out(dir, &["status", "--porcelain"]).unwrap_or_default();
            if status.is_empty() {
                return Ok(head);
            }
            let mut key = status;
            key.extend(git_out(dir, &["diff", "HEAD", "--binary"]).unwrap_or_default());
            for f in git_out(dir, &["ls-files", "-z", "--others", "--exclude-standard"])
                .unwrap_or_default()
                .split(|&b| b == 0)
            {
                if !f.is_empty() {
                    key.extend_from_slice(f);
                    key.extend(fs::read(dir.join(String::from_utf8_lossy(f).as_ref())).unwrap_or_default());
                }
            }
            Ok(format!("{head}-dirty-{:08x}", fnv64(&key) as u32))
        }
        Source::Tarball(file) => {
            if let Some(c) = tar_commit_id(file) {
                return Ok(c);
            }
            let data = fs::read(file).map_err(io("cannot read the LTP tarball", file))?;
            Ok(format!("content-{:016x}", fnv64(&data)))
        }
    }
}

/// `git get-tar-commit-id` over the decompressed tarball.
fn tar_commit_id(file: &Path) -> Option<String> {
    let name = file.to_string_lossy().to_ascii_lowercase();
    let decompress = if name.ends_with(".xz") || name.ends_with(".txz") {
        Some("xz")
    } else if name.ends_with(".gz") || name.ends_with(".tgz") {
        Some("gzip")
    } else {
        None
    };
    let (mut child, stdin) = match decompress {
        Some(tool) => {
            let mut c =
                Command::new(tool).arg("-dc").arg(file).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().ok()?;
            let out = c.stdout.take()?;
            (Some(c), Stdio::from(out))
        }
        None => (None, Stdio::from(fs::File::open(file).ok()?)),
    };
    let out = Command::new("git").arg("get-tar-commit-id").stdin(stdin).stderr(Stdio::null()).output();
    if let Some(c) = child.as_mut() {
        // git reads only the first header: the decompressor is ours to stop.
        let _ = c.kill();
        let _ = c.wait();
    }
    let out = out.ok()?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && is_commit_id(&id)).then_some(id)
}

/// The directory name of an id: a commit shortened to 12 hex digits, the rest kept.
pub fn dir_name(id: &str) -> String {
    let short =
        if id.len() >= 40 && is_commit_id(&id[..40]) { format!("{}{}", &id[..12], &id[40..]) } else { id.to_string() };
    short.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// One line of a runtest file: the test's name (first column) and its command (the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntestEntry {
    pub name: String,
    pub command: String,
}

impl RuntestEntry {
    /// The executable the command runs.
    pub fn executable(&self) -> &str {
        self.command.split_whitespace().next().unwrap_or("")
    }
}

/// Parses an LTP runtest file: `name command...` lines; `#` comments and blank lines skipped.
pub fn parse_runtest(text: &str) -> Vec<RuntestEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (name, command) = l.split_once(char::is_whitespace)?;
            let command = command.trim();
            (!command.is_empty()).then(|| RuntestEntry { name: name.to_string(), command: command.to_string() })
        })
        .collect()
}

/// The tests kbot runs: the entries of `runtest/syscalls` whose executable starts with
/// `fanotify` or `inotify` and has its source (`<exe>.c`) among `sources`; each must be in
/// `built`. The executables built but not listed are helpers (`fanotify_child`).
pub fn select_tests(
    runtest: &[RuntestEntry],
    sources: &BTreeSet<String>,
    built: &BTreeSet<String>,
) -> Result<Vec<RuntestEntry>, LtpError> {
    let tests: Vec<RuntestEntry> = runtest
        .iter()
        .filter(|e| {
            let x = e.executable();
            (x.starts_with("fanotify") || x.starts_with("inotify")) && sources.contains(x)
        })
        .cloned()
        .collect();
    let missing: Vec<&str> = tests.iter().map(|t| t.executable()).filter(|x| !built.contains(*x)).collect();
    if !missing.is_empty() {
        return Err(LtpError::Tests(format!(
            "LTP lists {} in runtest/syscalls but the build made no binary for it; check the build log",
            missing.join(" ")
        )));
    }
    if tests.is_empty() {
        return Err(LtpError::Tests(
            "runtest/syscalls lists no fanotify or inotify test; is this LTP complete?".to_string(),
        ));
    }
    Ok(tests)
}

/// A static LTP build on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LtpBuild {
    /// The full LTP id (see [`id`]).
    pub id: String,
    pub arch: Arch,
    /// LTPROOT on the host: `root/testcases/bin/<binaries>`, `root/tests.txt`.
    pub root: PathBuf,
    /// Test names in LTP's order, e.g. `fanotify01`.
    pub tests: Vec<String>,
}

impl LtpBuild {
    /// The tests with their commands, from `tests.txt`.
    pub fn entries(&self) -> Result<Vec<RuntestEntry>, LtpError> {
        let p = self.root.join(TESTS_FILE);
        Ok(parse_runtest(&fs::read_to_string(&p).map_err(io("cannot read the LTP test list", &p))?))
    }
}

/// A file of the guest's root filesystem. Paths are relative (no leading slash); a directory
/// comes before its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFile {
    Dir { path: String, mode: u32 },
    File { path: String, src: PathBuf, mode: u32 },
    Symlink { path: String, target: String },
}

impl GuestFile {
    pub fn path(&self) -> &str {
        match self {
            GuestFile::Dir { path, .. } | GuestFile::File { path, .. } | GuestFile::Symlink { path, .. } => path,
        }
    }
}

/// 0755 for executables, else 0644: the guest never sees the host's umask.
pub(crate) fn guest_mode(src_mode: u32) -> u32 {
    if src_mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// The LTP build at `ltp/` in the guest: `ltp/testcases/bin/*` and `ltp/tests.txt`.
pub fn ltp_files(b: &LtpBuild) -> Vec<GuestFile> {
    let mut v = ["ltp", "ltp/testcases", "ltp/testcases/bin"]
        .iter()
        .map(|d| GuestFile::Dir { path: d.to_string(), mode: 0o755 })
        .collect::<Vec<_>>();
    let bin = b.root.join("testcases/bin");
    let mut names: Vec<(String, PathBuf, u32)> = fs::read_dir(&bin)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let md = e.metadata().ok()?;
            md.is_file()
                .then(|| (e.file_name().to_string_lossy().into_owned(), e.path(), guest_mode(md.permissions().mode())))
        })
        .collect();
    names.sort();
    v.extend(names.into_iter().map(|(n, src, mode)| GuestFile::File {
        path: format!("ltp/testcases/bin/{n}"),
        src,
        mode,
    }));
    v.push(GuestFile::File { path: format!("ltp/{TESTS_FILE}"), src: b.root.join(TESTS_FILE), mode: 0o644 });
    v
}

/// The test VM's initramfs (the agent as /init, `extra` files at the top) with `files` added.
pub fn initramfs(agent: &[u8], extra: &[(&str, &[u8])], files: &[GuestFile]) -> Result<Vec<u8>, LtpError> {
    use kbot_kernel::cpio::Entry;
    let mut data = Vec::with_capacity(files.len());
    for f in files {
        data.push(match f {
            GuestFile::File { src, .. } => fs::read(src).map_err(io("cannot read a guest file", src))?,
            _ => Vec::new(),
        });
    }
    let entries: Vec<Entry> = files
        .iter()
        .zip(&data)
        .map(|(f, d)| match f {
            GuestFile::Dir { path, mode } => Entry::DirMode { name: path, mode: *mode },
            GuestFile::File { path, mode, .. } => Entry::File { name: path, mode: *mode, data: d },
            GuestFile::Symlink { path, target } => Entry::Symlink { name: path, target },
        })
        .collect();
    Ok(kbot_kernel::cpio::initramfs_with_tree(agent, extra, &entries))
}

/// An exclusive flock on a file, held until drop.
pub(crate) struct Lock(#[allow(dead_code)] fs::File);

pub(crate) fn lock(path: &Path, waiting: impl FnOnce()) -> Result<Lock, LtpError> {
    use std::os::fd::AsRawFd;
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).map_err(io("cannot create", p))?;
    }
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io("cannot open the lock file", path))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        waiting();
        // SAFETY: as above.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io("cannot lock", path)(std::io::Error::last_os_error()));
        }
    }
    Ok(Lock(f))
}

/// Copies a file or symlink, keeping the mode (fs::copy does).
pub(crate) fn copy_entry(from: &Path, to: &Path) -> Result<(), LtpError> {
    if let Some(p) = to.parent() {
        fs::create_dir_all(p).map_err(io("cannot create", p))?;
    }
    let md = fs::symlink_metadata(from).map_err(io("cannot read", from))?;
    if md.file_type().is_symlink() {
        let t = fs::read_link(from).map_err(io("cannot read the link", from))?;
        std::os::unix::fs::symlink(t, to).map_err(io("cannot create the link", to))
    } else if md.is_dir() {
        fs::create_dir_all(to).map_err(io("cannot create", to))
    } else {
        fs::copy(from, to).map(|_| ()).map_err(io("cannot copy to", to))
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), LtpError> {
    fs::create_dir_all(to).map_err(io("cannot create", to))?;
    for e in fs::read_dir(from).map_err(io("cannot read", from))?.flatten() {
        if e.file_name() == ".git" {
            continue;
        }
        let (f, t) = (e.path(), to.join(e.file_name()));
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            copy_tree(&f, &t)?;
        } else {
            copy_entry(&f, &t)?;
        }
    }
    Ok(())
}

/// A finished build in `out`, if there is one.
fn cached(id: &str, arch: Arch, out: &Path) -> Option<LtpBuild> {
    let marker = fs::read_to_string(out.join(MARKER)).ok()?;
    if marker.trim() != id {
        return None;
    }
    let tests = parse_runtest(&fs::read_to_string(out.join(TESTS_FILE)).ok()?);
    Some(LtpBuild {
        id: id.to_string(),
        arch,
        root: out.to_path_buf(),
        tests: tests.into_iter().map(|t| t.name).collect(),
    })
}

/// Runs the build steps, logging into one file.
struct Steps<'a> {
    arch: Arch,
    log: PathBuf,
    start: Instant,
    prefix: String,
    say: &'a dyn Fn(&str),
}

impl Steps<'_> {
    fn run(&self, dir: &Path, step: &str, cmd: &mut Command) -> Result<(), LtpError> {
        use std::io::Write;
        let t = Instant::now();
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io("cannot write the log", &self.log))?;
        let _ = writeln!(log, "\n### {step}  (in {})", dir.display());
        let err = log.try_clone().map_err(io("cannot write the log", &self.log))?;
        let status = cmd
            .current_dir(dir)
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .status();
        let fail =
            |status: String| LtpError::Step { arch: self.arch, step: step.to_string(), status, log: self.log.clone() };
        match status {
            Err(e) => return Err(fail(format!("cannot run it: {e}"))),
            Ok(s) if !s.success() => return Err(fail(s.to_string())),
            Ok(_) => {}
        }
        (self.say)(&format!(
            "{}: {step} {:.0}s (total {:.0}s)",
            self.prefix,
            t.elapsed().as_secs_f64(),
            self.start.elapsed().as_secs_f64()
        ));
        Ok(())
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The LTP top directory inside an unpacked tarball: `ltp/` (or whatever single directory).
fn top_dir(unpacked: &Path) -> Option<PathBuf> {
    let ok = |d: &Path| d.join("include/tst_test.h").is_file();
    if ok(unpacked) {
        return Some(unpacked.to_path_buf());
    }
    let dirs: Vec<PathBuf> = fs::read_dir(unpacked)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    match dirs.as_slice() {
        [one] if ok(one) => Some(one.clone()),
        _ => None,
    }
}

/// Builds LTP's fanotify and inotify tests statically for `arch`, or returns the cached
/// build at `<cache>/<dir_name(id)>/<arch>/`. Concurrent callers wait on a lock; the build
/// happens in a private directory under the cache and is renamed into place when complete.
pub fn build(src: &Source, arch: Arch, cache: &Path, say: &dyn Fn(&str)) -> Result<LtpBuild, LtpError> {
    let id = id(src)?;
    let name = dir_name(&id);
    let base = cache.join(&name);
    let out = base.join(arch.name());
    let prefix = format!("LTP {name} {arch}");
    if let Some(b) = cached(&id, arch, &out) {
        say(&format!("{prefix}: cached in {} ({} tests)", out.display(), b.tests.len()));
        return Ok(b);
    }
    let _lock = lock(&base.join(format!("{}.lock", arch.name())), || {
        say(&format!("{prefix}: waiting for another kbot building the same LTP"))
    })?;
    if let Some(b) = cached(&id, arch, &out) {
        say(&format!("{prefix}: built meanwhile by another kbot ({} tests)", b.tests.len()));
        return Ok(b);
    }
    let log = base.join(format!("{}.log", arch.name()));
    fs::write(&log, format!("LTP {id} for {arch} from {src:?}\n")).map_err(io("cannot write the log", &log))?;
    if id.starts_with("unversioned-") {
        say(&format!("{prefix}: note: {src:?} is not a git checkout, so the cache is keyed by its VERSION and path only: edits are not noticed (delete {} to rebuild)", base.display()));
    }
    say(&format!("{prefix}: building (log: {})", log.display()));
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{}-", arch.name()))
        .tempdir_in(&base)
        .map_err(io("cannot create a build directory in", &base))?;
    let steps = Steps { arch, log: log.clone(), start: Instant::now(), prefix: prefix.clone(), say };

    // The source, private to this build.
    let unpacked = tmp.path().join("src");
    fs::create_dir_all(&unpacked).map_err(io("cannot create", &unpacked))?;
    let top = match src {
        Source::Tarball(file) => {
            steps.run(&unpacked, "tar -xf", Command::new("tar").arg("-xf").arg(file))?;
            top_dir(&unpacked).ok_or_else(|| {
                LtpError::Source(format!(
                    "{} does not unpack to an LTP tree (no ltp/include/tst_test.h); give a `git archive` of LTP",
                    file.display()
                ))
            })?
        }
        Source::Checkout(dir) => {
            let t = Instant::now();
            let top = unpacked.join("ltp");
            if is_git(dir) {
                // The tracked and new files, not the checkout's own build products.
                let list = git_out(dir, &["ls-files", "-z", "--cached", "--others", "--exclude-standard"]).ok_or_else(
                    || LtpError::Source(format!("{}: `git ls-files` failed; check the checkout", dir.display())),
                )?;
                for f in list.split(|&b| b == 0).filter(|f| !f.is_empty()) {
                    let rel = String::from_utf8_lossy(f);
                    let from = dir.join(rel.as_ref());
                    if fs::symlink_metadata(&from).is_ok() {
                        copy_entry(&from, &top.join(rel.as_ref()))?;
                    }
                }
            } else {
                copy_tree(dir, &top)?;
            }
            say(&format!("{prefix}: copied the checkout {:.0}s", t.elapsed().as_secs_f64()));
            top
        }
    };

    let jobs = format!("-j{}", cpus());
    steps.run(&top, "make autotools", Command::new("make").arg("autotools"))?;
    let mut configure = Command::new("./configure");
    let mut configure_step = "./configure".to_string();
    if let Some(prefix) = arch.cross_compile() {
        let host = prefix.trim_end_matches('-');
        configure.arg(format!("--host={host}")).arg(format!("CC={prefix}gcc"));
        configure_step += &format!(" --host={host} CC={prefix}gcc");
    }
    configure.arg("LDFLAGS=-static");
    configure_step += " LDFLAGS=-static";
    steps.run(&top, &configure_step, &mut configure)?;
    steps.run(&top, "make -C lib", Command::new("make").arg(&jobs).args(["-C", "lib"]))?;
    for d in TEST_DIRS {
        steps.run(&top, &format!("make -C {d}"), Command::new("make").arg(&jobs).args(["-C", d]))?;
    }

    // The executables of the two directories: tests and helpers.
    let stage = tmp.path().join("out");
    let bin = stage.join("testcases/bin");
    fs::create_dir_all(&bin).map_err(io("cannot create", &bin))?;
    let (mut sources, mut built) = (BTreeSet::new(), BTreeSet::new());
    for d in TEST_DIRS {
        let dir = top.join(d);
        for e in fs::read_dir(&dir).map_err(io("cannot read", &dir))?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = n.strip_suffix(".c") {
                sources.insert(stem.to_string());
            }
            let p = e.path();
            let Ok(md) = fs::symlink_metadata(&p) else { continue };
            if !md.is_file() || md.permissions().mode() & 0o111 == 0 {
                continue;
            }
            let data = fs::read(&p).map_err(io("cannot read", &p))?;
            if !data.starts_with(b"\x7fELF") {
                continue;
            }
            let e = elf::parse(&data)
                .map_err(|e| LtpError::Tests(format!("{}: {e}; check the build log {}", p.display(), log.display())))?;
            if e.machine != elf::machine(arch) || e.interp.is_some() {
                return Err(LtpError::Tests(format!(
                    "{} is not a static {arch} binary (machine {}, loader {:?}); check the cross compiler and the static libc (libc6-dev-arm64-cross), see {}",
                    p.display(),
                    e.machine,
                    e.interp,
                    log.display()
                )));
            }
            fs::copy(&p, bin.join(&n)).map_err(io("cannot copy to", &bin))?;
            built.insert(n);
        }
    }
    // LTP builds with -g: without the debug info the guest's initramfs is a third smaller.
    let strip = format!("{}strip", arch.cross_compile().unwrap_or(""));
    steps.run(&bin, &format!("{strip} --strip-debug"), Command::new(&strip).arg("--strip-debug").args(&built))?;
    let runtest_path = top.join("runtest/syscalls");
    let runtest = fs::read_to_string(&runtest_path).map_err(io("cannot read", &runtest_path))?;
    let tests = select_tests(&parse_runtest(&runtest), &sources, &built)?;
    let listed: BTreeSet<&str> = tests.iter().map(|t| t.executable()).collect();
    let helpers: Vec<&str> = built.iter().map(String::as_str).filter(|b| !listed.contains(b)).collect();
    let text: String = tests.iter().map(|t| format!("{} {}\n", t.name, t.command)).collect();
    fs::write(stage.join(TESTS_FILE), text).map_err(io("cannot write", &stage))?;
    fs::write(stage.join("ltp-id"), format!("{id}\n")).map_err(io("cannot write", &stage))?;
    fs::write(stage.join(MARKER), format!("{id}\n")).map_err(io("cannot write", &stage))?;
    if out.exists() {
        fs::remove_dir_all(&out).map_err(io("cannot remove the incomplete build", &out))?;
    }
    fs::rename(&stage, &out).map_err(io("cannot move the build into", &out))?;
    say(&format!(
        "{prefix}: {} tests, helpers: {}; done in {:.0}s",
        tests.len(),
        if helpers.is_empty() { "none".to_string() } else { helpers.join(" ") },
        steps.start.elapsed().as_secs_f64()
    ));
    Ok(LtpBuild { id, arch, root: out, tests: tests.into_iter().map(|t| t.name).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
    }

    pub(crate) const REAL_TARBALL: &str = "/work/shared/ltp/ltp-695827725f4f.tar.xz";

    #[test]
    fn runtest_is_parsed_and_selected() {
        let all = parse_runtest(&fs::read_to_string(testdata("runtest-syscalls")).unwrap());
        assert_eq!(all[0], RuntestEntry { name: "abort01".into(), command: "abort01".into() });
        let named = all.iter().find(|e| e.name == "fanotify_named").unwrap();
        assert_eq!(named.command, "fanotify05 -c 3");
        assert_eq!(named.executable(), "fanotify05");
        assert!(all.iter().all(|e| !e.name.starts_with('#') && !e.command.is_empty()));
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let sources = set(&["fanotify01", "fanotify05", "fanotify_child", "inotify01"]);
        let built = set(&["fanotify01", "fanotify05", "fanotify_child", "inotify01"]);
        let tests = select_tests(&all, &sources, &built).unwrap();
        let names: Vec<&str> = tests.iter().map(|t| t.name.as_str()).collect();
        // inotify_init1_01 starts with inotify but is built elsewhere; abort01 is no fanotify test.
        assert_eq!(names, ["inotify01", "fanotify01", "fanotify05", "fanotify_named"]);
        let err = select_tests(&all, &sources, &set(&["fanotify01", "inotify01"])).unwrap_err().to_string();
        assert!(err.contains("fanotify05") && err.contains("no binary"), "{err}");
        assert!(select_tests(&all, &set(&[]), &built).is_err());
    }

    #[test]
    fn sources_are_told_apart() {
        let d = tempfile::tempdir().unwrap();
        let err = locate(&d.path().join("nope")).unwrap_err().to_string();
        assert!(err.contains("give the top directory"), "{err}");
        assert!(locate(d.path()).unwrap_err().to_string().contains("not an LTP checkout"));
        let ltp = d.path().join("ltp");
        fs::create_dir_all(ltp.join("include")).unwrap();
        fs::write(ltp.join("include/tst_test.h"), "").unwrap();
        fs::write(ltp.join("configure.ac"), "").unwrap();
        assert!(locate(d.path()).unwrap_err().to_string().contains("did you mean"));
        assert_eq!(locate(&ltp).unwrap(), Source::Checkout(fs::canonicalize(&ltp).unwrap()));
        for n in ["a.tar", "a.tar.xz", "a.tar.gz"] {
            fs::write(d.path().join(n), "x").unwrap();
            assert!(matches!(locate(&d.path().join(n)).unwrap(), Source::Tarball(_)), "{n}");
        }
        fs::write(d.path().join("a.zip"), "x").unwrap();
        assert!(locate(&d.path().join("a.zip")).unwrap_err().to_string().contains("neither"));
        // Not git: keyed by VERSION and path.
        fs::write(ltp.join("VERSION"), "20260529").unwrap();
        let id1 = id(&locate(&ltp).unwrap()).unwrap();
        assert!(id1.starts_with("unversioned-"), "{id1}");
        fs::write(ltp.join("VERSION"), "20260530").unwrap();
        assert_ne!(id(&locate(&ltp).unwrap()).unwrap(), id1);
        // A tarball without a commit id: by content.
        let t = id(&Source::Tarball(d.path().join("a.tar"))).unwrap();
        assert_eq!(t, format!("content-{:016x}", fnv64(b"x")));
    }

    #[test]
    fn git_checkout_id_and_dirty() {
        if !kbot_kernel::proc::have("git") {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let g = |args: &[&str]| {
            let s = Command::new("git")
                .arg("-C")
                .arg(d.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .output()
                .unwrap();
            assert!(s.status.success(), "{s:?}");
            String::from_utf8_lossy(&s.stdout).trim().to_string()
        };
        g(&["init", "-q"]);
        fs::write(d.path().join("VERSION"), "1").unwrap();
        g(&["add", "VERSION"]);
        g(&["commit", "-q", "-m", "x"]);
        let head = g(&["rev-parse", "HEAD"]);
        let src = Source::Checkout(d.path().to_path_buf());
        assert_eq!(id(&src).unwrap(), head);
        fs::write(d.path().join("VERSION"), "2").unwrap();
        let dirty = id(&src).unwrap();
        assert!(dirty.starts_with(&format!("{head}-dirty-")), "{dirty}");
        fs::write(d.path().join("VERSION"), "3").unwrap();
        assert_ne!(id(&src).unwrap(), dirty, "each state of the edits is its own build");
        assert_eq!(dir_name(&dirty), format!("{}{}", &head[..12], &dirty[40..]));
    }

    #[test]
    fn real_tarball_id() {
        if !Path::new(REAL_TARBALL).exists() {
            eprintln!("{REAL_TARBALL} missing: skipped");
            return;
        }
        let src = locate(Path::new(REAL_TARBALL)).unwrap();
        assert_eq!(id(&src).unwrap(), "695827725f4fc14fe583043127e0335c29bbd52d");
        assert_eq!(dir_name("695827725f4fc14fe583043127e0335c29bbd52d"), "695827725f4f");
    }

    #[test]
    fn ltp_files_place_the_build_under_ltp() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("testcases/bin");
        fs::create_dir_all(&bin).unwrap();
        for n in ["fanotify_child", "fanotify01"] {
            fs::write(bin.join(n), "\x7fELF").unwrap();
            fs::set_permissions(bin.join(n), fs::Permissions::from_mode(0o700)).unwrap();
        }
        fs::write(d.path().join(TESTS_FILE), "fanotify01 fanotify01\n").unwrap();
        let b =
            LtpBuild { id: "x".into(), arch: Arch::X86_64, root: d.path().into(), tests: vec!["fanotify01".into()] };
        let f = ltp_files(&b);
        let paths: Vec<&str> = f.iter().map(GuestFile::path).collect();
        assert_eq!(
            paths,
            [
                "ltp",
                "ltp/testcases",
                "ltp/testcases/bin",
                "ltp/testcases/bin/fanotify01",
                "ltp/testcases/bin/fanotify_child",
                "ltp/tests.txt"
            ]
        );
        assert!(matches!(&f[3], GuestFile::File { mode: 0o755, .. }));
        assert_eq!(b.entries().unwrap(), [RuntestEntry { name: "fanotify01".into(), command: "fanotify01".into() }]);
        let cpio = initramfs(b"agent", &[], &f).unwrap();
        assert!(cpio.windows(29).any(|w| w == b"ltp/testcases/bin/fanotify01\0"));
    }
}
