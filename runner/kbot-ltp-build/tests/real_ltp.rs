//! The real LTP of /work/shared/ltp (an unmodified `git archive`), built statically for both
//! arches, and the real guest tools. Slow (about 5 min on 2 cores the first time) and cached
//! by LTP commit in cargo's target/tmp, so a second run only checks.

use kbot_kernel::Arch;
use kbot_ltp_build::{build, elf, guest_tools, locate, ltp_files, GuestFile};
use std::path::Path;
use std::time::Instant;

const TARBALL: &str = "/work/shared/ltp/ltp-695827725f4f.tar.xz";

fn cache() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("kbot-ltp-cache")
}

#[test]
#[ignore = "builds LTP for x86_64 and arm64: minutes"]
fn real_ltp_builds_static_for_both_arches() {
    let src = locate(Path::new(TARBALL)).expect("the LTP tarball of /work/shared/ltp");
    for arch in Arch::ALL {
        let t = Instant::now();
        let b = build(&src, arch, &cache(), &|l| eprintln!("{l}")).unwrap();
        eprintln!("{arch}: LTP build {:.0}s in {}", t.elapsed().as_secs_f64(), b.root.display());
        assert_eq!(b.id, "695827725f4fc14fe583043127e0335c29bbd52d");
        assert_eq!(b.tests.len(), 37, "{:?}", b.tests);
        assert_eq!(b.tests.iter().filter(|t| t.starts_with("fanotify")).count(), 25);
        assert!(b.tests.iter().all(|t| t != "fanotify_child" && !t.starts_with("inotify_init")), "{:?}", b.tests);
        let bin = b.root.join("testcases/bin");
        for t in b.entries().unwrap() {
            assert!(bin.join(t.executable()).is_file(), "{}", t.name);
        }
        assert!(bin.join("fanotify_child").is_file(), "the helper is there");
        let mut n = 0;
        for e in std::fs::read_dir(&bin).unwrap().flatten() {
            let f = elf::parse(&std::fs::read(e.path()).unwrap()).unwrap();
            assert_eq!(f.machine, elf::machine(arch), "{}", e.path().display());
            assert_eq!(f.interp, None, "static: {}", e.path().display());
            n += 1;
        }
        assert_eq!(n, 38, "37 tests and fanotify_child");
        let files = ltp_files(&b);
        assert!(files.iter().any(|f| f.path() == "ltp/testcases/bin/fanotify_child"));
        assert!(matches!(files.last(), Some(GuestFile::File { path, .. }) if path == "ltp/tests.txt"));
    }
}

#[test]
#[ignore = "needs busybox-static, e2fsprogs and Debian's arm64 packages (kbot setup as root)"]
fn real_guest_tools_for_both_arches() {
    for arch in Arch::ALL {
        let t = Instant::now();
        let files = guest_tools(arch, &cache().join("guest-tools"), &|l| eprintln!("{l}")).unwrap();
        eprintln!("{arch}: guest tools {:.1}s, {} entries", t.elapsed().as_secs_f64(), files.len());
        let file = |p: &str| {
            files.iter().find_map(|f| match f {
                GuestFile::File { path, src, .. } if path == p => Some(src.clone()),
                _ => None,
            })
        };
        let busybox = elf::parse(&std::fs::read(file("bin/busybox").unwrap()).unwrap()).unwrap();
        assert_eq!((busybox.machine, busybox.interp), (elf::machine(arch), None));
        let mke2fs = elf::parse(&std::fs::read(file("sbin/mke2fs").unwrap()).unwrap()).unwrap();
        assert_eq!(mke2fs.machine, elf::machine(arch));
        let interp = mke2fs.interp.expect("Debian's mke2fs is dynamic");
        assert!(file(interp.trim_start_matches('/')).is_some(), "the loader {interp}: {files:?}");
        for lib in &mke2fs.needed {
            assert!(files.iter().any(|f| f.path().ends_with(&format!("/{lib}"))), "{lib}: {files:?}");
        }
        let passwd = std::fs::read_to_string(file("etc/passwd").unwrap()).unwrap();
        assert!(passwd.contains("nobody:x:65534"), "{passwd}");
        for l in ["bin/sh", "sbin/mkfs.ext2", "sbin/mkfs.ext3", "sbin/mkfs.ext4"] {
            assert!(files.iter().any(|f| matches!(f, GuestFile::Symlink { path, .. } if path == l)), "{l}");
        }
    }
}
