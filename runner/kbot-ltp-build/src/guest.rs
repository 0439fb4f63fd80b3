//! The tools LTP's fanotify and inotify tests call inside the guest: a static busybox as
//! `/bin/sh` (LTP runs `mkfs.<fs>` through `system()`), Debian's `mke2fs` as
//! `mkfs.ext2/3/4` (it picks the fs type from argv[0]) with its libraries and loader at the
//! paths it expects, and `/etc/passwd` + `/etc/group` with root and nobody/nogroup.
//!
//! The host's own arch takes them from the host's packages (`busybox-static`, `e2fsprogs`);
//! the other arch from Debian's multiarch packages, downloaded (not installed) with
//! `apt-get download` and unpacked with `dpkg -x`. Assembled once per arch under
//! `<cache>/<arch>/root/` (`<cache>` is kbot's `cache/guest-tools`).

use crate::{elf, guest_mode, io, lock, GuestFile, LtpError};
use kbot_kernel::Arch;
use std::collections::{BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The Debian packages of a foreign arch's guest tools: the tools, mke2fs's libraries, libc.
pub const FOREIGN_DEBS: &[&str] =
    &["busybox-static", "e2fsprogs", "libext2fs2", "libcom-err2", "libblkid1", "libuuid1", "libc6"];

const MARKER: &str = ".kbot-complete";

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
pub const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

fn triplet(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-linux-gnu",
        Arch::Arm64 => "aarch64-linux-gnu",
    }
}

/// Debian's name of the arch (`dpkg --print-architecture`).
pub fn deb_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::Arm64 => "arm64",
    }
}

fn native(arch: Arch) -> bool {
    arch.cross_compile().is_none()
}

/// What the cached tools were assembled from: a change of the host's packages reassembles.
fn key(arch: Arch) -> String {
    // What kbot writes itself: a change rebuilds the tools like a new package does.
    let own = kbot_kernel::fnv64(format!("{PASSWD}{GROUP}{}", kbot_images::GUEST_MKE2FS_CONF).as_bytes());
    format!("{} files {own:016x}", package_key(arch))
}

fn package_key(arch: Arch) -> String {
    if !native(arch) {
        return format!("debs {}", FOREIGN_DEBS.join(" "));
    }
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package}=${Version} ", "busybox-static", "e2fsprogs", "libext2fs2", "libc6"])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    format!("host {}", out.trim())
}

/// The guest tools for `arch` as guest files (directories first), assembled once under
/// `<cache>/<arch>/root/`. For a foreign arch this needs dpkg's foreign architecture and an
/// `apt-get update` (both done by `kbot setup` as root); the error says so.
pub fn guest_tools(arch: Arch, cache: &Path, say: &dyn Fn(&str)) -> Result<Vec<GuestFile>, LtpError> {
    let dir = cache.join(arch.name());
    let root = dir.join("root");
    let key = key(arch);
    let done = |dir: &Path| fs::read_to_string(dir.join(MARKER)).is_ok_and(|m| m.trim() == key) && root.is_dir();
    if !done(&dir) {
        let _lock = lock(&cache.join(format!("{}.lock", arch.name())), || {
            say(&format!("guest tools {arch}: waiting for another kbot assembling them"))
        })?;
        if !done(&dir) {
            let t = Instant::now();
            fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
            let tmp = tempfile::Builder::new()
                .prefix(".tmp-")
                .tempdir_in(&dir)
                .map_err(io("cannot create a directory in", &dir))?;
            let from = if native(arch) { PathBuf::from("/") } else { unpack_debs(arch, &dir, tmp.path(), say)? };
            let stage = tmp.path().join("root");
            assemble(arch, &from, &stage)?;
            let _ = fs::remove_file(dir.join(MARKER));
            if root.exists() {
                fs::remove_dir_all(&root).map_err(io("cannot remove the old guest tools", &root))?;
            }
            fs::rename(&stage, &root).map_err(io("cannot move the guest tools into", &root))?;
            fs::write(dir.join(MARKER), format!("{key}\n")).map_err(io("cannot write", &dir))?;
            say(&format!(
                "guest tools {arch}: assembled in {} from {} in {:.1}s",
                root.display(),
                if native(arch) { "the host's packages".to_string() } else { dir.join("debs").display().to_string() },
                t.elapsed().as_secs_f64()
            ));
        }
    }
    let mut v = Vec::new();
    walk(&root, "", &mut v)?;
    Ok(v)
}

/// The tree under `dir` as guest files, sorted, each directory before its contents.
fn walk(dir: &Path, rel: &str, out: &mut Vec<GuestFile>) -> Result<(), LtpError> {
    let mut entries: Vec<_> = fs::read_dir(dir).map_err(io("cannot read", dir))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let p = e.path();
        let md = fs::symlink_metadata(&p).map_err(io("cannot read", &p))?;
        if md.file_type().is_symlink() {
            let target = fs::read_link(&p).map_err(io("cannot read the link", &p))?.to_string_lossy().into_owned();
            out.push(GuestFile::Symlink { path, target });
        } else if md.is_dir() {
            out.push(GuestFile::Dir { path: path.clone(), mode: 0o755 });
            walk(&p, &path, out)?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            out.push(GuestFile::File { path, src: p, mode: guest_mode(md.permissions().mode()) });
        }
    }
    Ok(())
}

fn foreign_arch_enabled(deb: &str) -> bool {
    Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().any(|a| a == deb))
}

/// Downloads (once) and unpacks the foreign arch's packages; returns the unpacked tree.
fn unpack_debs(arch: Arch, dir: &Path, tmp: &Path, say: &dyn Fn(&str)) -> Result<PathBuf, LtpError> {
    let deb = deb_arch(arch);
    let debs = dir.join("debs");
    fs::create_dir_all(&debs).map_err(io("cannot create", &debs))?;
    let find = |pkg: &str| -> Option<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(&debs)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().unwrap_or_default().to_string_lossy();
                n.starts_with(&format!("{pkg}_")) && n.ends_with(&format!("_{deb}.deb"))
            })
            .collect();
        v.sort();
        v.pop()
    };
    let missing: Vec<&str> = FOREIGN_DEBS.iter().copied().filter(|p| find(p).is_none()).collect();
    if !missing.is_empty() {
        let setup = format!(
            "run `kbot setup` as root (it runs `dpkg --add-architecture {deb}` and `apt-get update`), and check the network to the Debian mirror"
        );
        if !foreign_arch_enabled(deb) {
            return Err(LtpError::GuestTools(format!(
                "the {arch} guest tools come from Debian's {deb} packages but dpkg has no {deb} architecture; {setup}"
            )));
        }
        let names: Vec<String> = missing.iter().map(|p| format!("{p}:{deb}")).collect();
        say(&format!("guest tools {arch}: apt-get download {}", names.join(" ")));
        let out = Command::new("apt-get")
            .args(["download", "-q"])
            .args(&names)
            .current_dir(&debs)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                LtpError::GuestTools(format!("cannot run apt-get ({e}); the {arch} guest tools need Debian's apt"))
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            return Err(LtpError::GuestTools(format!("apt-get download {} failed ({last}); {setup}", names.join(" "))));
        }
    }
    let x = tmp.join("debs");
    for pkg in FOREIGN_DEBS {
        let f = find(pkg).ok_or_else(|| {
            LtpError::GuestTools(format!(
                "{pkg}:{deb} is not in {} after apt-get download; run `kbot setup` as root",
                debs.display()
            ))
        })?;
        let out = Command::new("dpkg-deb").arg("-x").arg(&f).arg(&x).output().map_err(|e| {
            LtpError::GuestTools(format!("cannot run dpkg-deb ({e}); the {arch} guest tools need Debian's dpkg"))
        })?;
        if !out.status.success() {
            return Err(LtpError::GuestTools(format!(
                "dpkg-deb -x {} failed ({}); delete it and run `kbot setup` again",
                f.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(x)
}

fn first(from: &Path, candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(|c| from.join(c)).find(|p| p.is_file())
}

fn read_elf(p: &Path) -> Result<elf::Elf, LtpError> {
    let data = fs::read(p).map_err(io("cannot read", p))?;
    elf::parse(&data)
        .map_err(|e| LtpError::GuestTools(format!("{}: {e}; reinstall the package that has it", p.display())))
}

/// A library found for the guest: where it goes (relative) and where it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lib {
    pub guest: String,
    pub host: PathBuf,
}

/// The loader and every library `bin` needs, recursively (`DT_NEEDED`), found under `from`
/// (`/` for the host, the unpacked packages otherwise) in the loader's default directories.
/// Libraries of another machine are passed over, as the loader does.
pub fn resolve_libs(arch: Arch, from: &Path, bin: &Path) -> Result<Vec<Lib>, LtpError> {
    let t = triplet(arch);
    let mut dirs = vec![format!("lib/{t}"), format!("usr/lib/{t}"), "lib".to_string(), "usr/lib".to_string()];
    if arch == Arch::X86_64 {
        dirs.push("lib64".into());
    }
    let want = elf::machine(arch);
    let top = read_elf(bin)?;
    let mut libs = Vec::new();
    let mut seen = BTreeSet::new();
    if let Some(interp) = &top.interp {
        let rel = interp.trim_start_matches('/').to_string();
        let host = from.join(&rel);
        if !host.is_file() {
            return Err(LtpError::GuestTools(format!(
                "the loader {interp} of {} is missing under {}; install libc6 for {arch}",
                bin.display(),
                from.display()
            )));
        }
        if let Some(n) = Path::new(&rel).file_name() {
            seen.insert(n.to_string_lossy().into_owned());
        }
        libs.push(Lib { guest: rel, host });
    }
    let mut queue: VecDeque<(String, elf::Elf)> = VecDeque::from([(bin.display().to_string(), top)]);
    while let Some((who, e)) = queue.pop_front() {
        for name in e.needed {
            if !seen.insert(name.clone()) {
                continue;
            }
            let found = dirs.iter().find_map(|d| {
                let p = from.join(d).join(&name);
                let e = read_elf(&p).ok().filter(|e| e.machine == want)?;
                Some((format!("{d}/{name}"), p, e))
            });
            let Some((guest, host, e)) = found else {
                return Err(LtpError::GuestTools(format!(
                    "{name} (needed by {who}) is in none of {} under {}; {}",
                    dirs.join(" "),
                    from.display(),
                    if from == Path::new("/") {
                        "install the package that has it".to_string()
                    } else {
                        format!("add its {} package to kbot-ltp-build's FOREIGN_DEBS", deb_arch(arch))
                    }
                )));
            };
            libs.push(Lib { guest, host: host.clone() });
            queue.push_back((host.display().to_string(), e));
        }
    }
    Ok(libs)
}

/// Puts busybox, mke2fs, its libraries and /etc into `root`.
fn assemble(arch: Arch, from: &Path, root: &Path) -> Result<(), LtpError> {
    let pkg_hint = |pkg: &str| {
        if native(arch) {
            format!("install {pkg} (kbot setup as root)")
        } else {
            format!("delete {} and run `kbot setup` as root", from.display())
        }
    };
    let want = elf::machine(arch);
    let busybox = first(from, &["usr/bin/busybox", "bin/busybox"]).ok_or_else(|| {
        LtpError::GuestTools(format!("no busybox under {}; {}", from.display(), pkg_hint("busybox-static")))
    })?;
    let e = read_elf(&busybox)?;
    if e.machine != want || e.interp.is_some() {
        return Err(LtpError::GuestTools(format!(
            "{} is not a static {arch} busybox (the dynamic `busybox` package?); {}",
            busybox.display(),
            pkg_hint("busybox-static")
        )));
    }
    let mke2fs = first(from, &["usr/sbin/mke2fs", "sbin/mke2fs"]).ok_or_else(|| {
        LtpError::GuestTools(format!("no mke2fs under {}; {}", from.display(), pkg_hint("e2fsprogs")))
    })?;
    if read_elf(&mke2fs)?.machine != want {
        return Err(LtpError::GuestTools(format!(
            "{} is not an {arch} binary; {}",
            mke2fs.display(),
            pkg_hint("e2fsprogs")
        )));
    }
    let put = |rel: &str, src: &Path| -> Result<(), LtpError> {
        let to = root.join(rel);
        if let Some(p) = to.parent() {
            fs::create_dir_all(p).map_err(io("cannot create", p))?;
        }
        // Follows symlinks: the guest gets the file itself.
        fs::copy(src, &to).map(|_| ()).map_err(io("cannot copy to", &to))
    };
    let link = |rel: &str, target: &str| -> Result<(), LtpError> {
        let to = root.join(rel);
        std::os::unix::fs::symlink(target, &to).map_err(io("cannot create the link", &to))
    };
    put("bin/busybox", &busybox)?;
    link("bin/sh", "busybox")?;
    put("sbin/mke2fs", &mke2fs)?;
    for fs_type in ["ext2", "ext3", "ext4"] {
        link(&format!("sbin/mkfs.{fs_type}"), "mke2fs")?;
    }
    for lib in resolve_libs(arch, from, &mke2fs)? {
        put(&lib.guest, &lib.host)?;
    }
    let etc = root.join("etc");
    fs::create_dir_all(&etc).map_err(io("cannot create", &etc))?;
    fs::write(etc.join("passwd"), PASSWD).map_err(io("cannot write", &etc))?;
    fs::write(etc.join("group"), GROUP).map_err(io("cannot write", &etc))?;
    fs::write(etc.join("mke2fs.conf"), kbot_images::GUEST_MKE2FS_CONF).map_err(io("cannot write", &etc))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_arch() -> Arch {
        Arch::ALL.into_iter().find(|a| native(*a)).unwrap()
    }

    /// mke2fs's libraries on the host: libext2fs & co. and libc, each once, loader first.
    #[test]
    fn host_mke2fs_libraries_resolve() {
        let Some(mke2fs) = first(Path::new("/"), &["usr/sbin/mke2fs", "sbin/mke2fs"]) else {
            eprintln!("no mke2fs (install e2fsprogs): skipped");
            return;
        };
        let libs = resolve_libs(host_arch(), Path::new("/"), &mke2fs).unwrap();
        let names: Vec<&str> = libs.iter().map(|l| l.guest.rsplit('/').next().unwrap()).collect();
        assert!(names[0].starts_with("ld-linux"), "{names:?}");
        for n in ["libext2fs.so.2", "libcom_err.so.2", "libblkid.so.1", "libuuid.so.1", "libe2p.so.2", "libc.so.6"] {
            assert_eq!(names.iter().filter(|x| **x == n).count(), 1, "{n} in {names:?}");
        }
        assert!(libs.iter().all(|l| l.host.is_file() && !l.guest.starts_with('/')), "{libs:?}");
    }

    /// The host's own arch from its packages; as root the assembled tree runs mkfs.ext4 in a
    /// chroot (the loader finds every library where it was put).
    #[test]
    fn host_guest_tools_work_in_a_chroot() {
        let arch = host_arch();
        if first(Path::new("/"), &["usr/sbin/mke2fs", "sbin/mke2fs"]).is_none()
            || first(Path::new("/"), &["usr/bin/busybox", "bin/busybox"]).is_none()
        {
            eprintln!("needs busybox-static and e2fsprogs: skipped");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let lines = std::cell::RefCell::new(Vec::new());
        let files = guest_tools(arch, d.path(), &|l| lines.borrow_mut().push(l.to_string())).unwrap();
        assert_eq!(lines.borrow().len(), 1, "{:?}", lines.borrow());
        let has = |p: &str| files.iter().any(|f| f.path() == p);
        for p in ["bin", "bin/busybox", "sbin/mke2fs", "etc/passwd", "etc/group"] {
            assert!(has(p), "{p}: {files:?}");
        }
        assert!(files.contains(&GuestFile::Symlink { path: "bin/sh".into(), target: "busybox".into() }));
        assert!(files.contains(&GuestFile::Symlink { path: "sbin/mkfs.ext4".into(), target: "mke2fs".into() }));
        for (i, f) in files.iter().enumerate() {
            if let Some((parent, _)) = f.path().rsplit_once('/') {
                assert!(files[..i].iter().any(|d| matches!(d, GuestFile::Dir { path, .. } if path == parent)), "{f:?}");
            }
        }
        // Cached: the second call assembles nothing.
        assert_eq!(guest_tools(arch, d.path(), &|l| panic!("{l}")).unwrap(), files);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let root = d.path().join(arch.name()).join("root");
        let out = Command::new("chroot")
            .arg(&root)
            .args(["/bin/sh", "-c", "/sbin/mkfs.ext4 -q -F /img 2048 && echo made"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("made"), "{out:?}");
    }
}
