//! A kernel whose console never stops: QEMU is stopped at the console limit, with a note, and
//! kbot returns. Uses a real kernel from kbot's cache (built by the e2e tests), so ignored by
//! default like them.

use kbot_kernel::qemu::{self, Accel, VmSpec};
use kbot_kernel::Arch;
use std::path::PathBuf;
use std::time::Duration;

fn cached_kernel() -> Option<PathBuf> {
    let home = std::env::var_os("KBOT_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".local/share/kbot"));
    let dir = home.join("cache/kernels/x86_64");
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path().join("bzImage")).find(|p| p.is_file())
}

#[test]
#[ignore]
fn console_flood_is_cut_and_the_vm_stopped() {
    let kernel = cached_kernel().expect("no cached x86_64 kernel: run the e2e tests first");
    let d = tempfile::tempdir().unwrap();
    // No init at all: the kernel boots, talks, and panics; far more than 3000 bytes.
    let initrd = d.path().join("empty.cpio");
    std::fs::write(&initrd, b"").unwrap();
    let spec = VmSpec {
        arch: Arch::X86_64,
        kernel: &kernel,
        initrd: &initrd,
        append: String::new(),
        timeout: Duration::from_secs(120),
        accel: Accel::Tcg,
        mem_mb: 256,
        smp: 1,
    };
    let sandbox = kbot_sandbox::Policy::detect(&[]).expect("bubblewrap");
    let log = d.path().join("console.log");
    let t = std::time::Instant::now();
    let vm = qemu::run(&sandbox, &spec, &log, 3000, |_| {}).unwrap();
    assert!(vm.cut, "{}", vm.console);
    assert!(!vm.timed_out);
    assert!(vm.console.len() <= 3000);
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("[kbot: console cut at 3000 bytes; VM stopped]"), "{text}");
}
