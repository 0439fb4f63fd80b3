//! What kbot builds into its test kernels, handed to the runner as data: the kconfig
//! fragments (`kconfig/`) and the in-kernel shadow checks (`shadow/`). The guest agent is its
//! own crate (`agent/`).

/// kconfig lines for every arch, on top of tinyconfig.
pub const KCONFIG_COMMON: &str = include_str!("kconfig/common.config");
pub const KCONFIG_X86_64: &str = include_str!("kconfig/x86_64.config");
pub const KCONFIG_ARM64: &str = include_str!("kconfig/arm64.config");

/// The hooks patched into fs/notify for the shadow checks.
pub const SHADOW_HOOKS_PATCH: &str = include_str!("shadow/hooks.patch");
/// The C side of the shadow component.
pub const SHADOW_HEADER: &str = include_str!("shadow/kbot_shadow.h");
/// The Rust glue that runs refcore's rules in the kernel.
pub const SHADOW_GLUE: &str = include_str!("shadow/kbot_shadow.rs");

/// The test VM's `/etc/mke2fs.conf` (for the filesystems LTP's tests format).
pub const GUEST_MKE2FS_CONF: &str = include_str!("guest/mke2fs.conf");
