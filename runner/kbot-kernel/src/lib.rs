//! The I/O edge of kbot: kernel trees and kbot-owned worktrees, `git am`, kconfig, builds,
//! the initramfs and QEMU. Everything that runs a process lives here; the decisions about
//! what to run live in the `kbot` binary and the pure crates.

pub mod apply_check;
pub mod arch;
pub mod build;
pub mod checkpatch;
pub mod cpio;
pub mod git;
pub mod kbuild_progress;
pub mod kconfig;
pub mod proc;
pub mod qemu;
pub mod shadow;

pub use arch::Arch;

/// FNV-1a, 64 bit: a stable content hash for cache keys and ids (not for security). The one
/// copy for runner and bot: its values name caches and mails on disk, so they must not change.
pub fn fnv64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    /// The published FNV-1a 64 test vectors: cache keys and names stay what they were.
    #[test]
    fn fnv64_is_fnv1a() {
        assert_eq!(super::fnv64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::fnv64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
