//! The I/O edge of kbot: kernel trees and kbot-owned worktrees, `git am`, kconfig, builds,
//! the initramfs and QEMU. Everything that runs a process lives here; the decisions about
//! what to run live in the `kbot` binary and the pure crates.

pub mod arch;
pub mod build;
pub mod checkpatch;
pub mod cpio;
pub mod git;
pub mod kconfig;
pub mod proc;
pub mod qemu;
pub mod shadow;

pub use arch::Arch;

/// FNV-1a, 64 bit: a stable content hash for cache keys (not for security).
pub fn fnv64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}
