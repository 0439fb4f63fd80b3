//! Per-architecture facts: how to build, what to boot, which console.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Arm64];

    pub fn parse(s: &str) -> Option<Arch> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "amd64" | "x86" => Some(Arch::X86_64),
            "arm64" | "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// `ARCH=` for make.
    pub fn make_arch(self) -> &'static str {
        self.name()
    }

    pub fn cross_compile(self) -> Option<&'static str> {
        match (self, std::env::consts::ARCH) {
            (Arch::X86_64, "x86_64") | (Arch::Arm64, "aarch64") => None,
            (Arch::X86_64, _) => Some("x86_64-linux-gnu-"),
            (Arch::Arm64, _) => Some("aarch64-linux-gnu-"),
        }
    }

    pub fn image_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "bzImage",
            Arch::Arm64 => "Image",
        }
    }

    /// The boot image, relative to the build directory.
    pub fn image_path(self) -> &'static str {
        match self {
            Arch::X86_64 => "arch/x86/boot/bzImage",
            Arch::Arm64 => "arch/arm64/boot/Image",
        }
    }

    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Arm64 => "aarch64-unknown-linux-musl",
        }
    }

    pub fn qemu(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Arm64 => "qemu-system-aarch64",
        }
    }

    pub fn console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Arm64 => "ttyAMA0",
        }
    }

    /// Machine and CPU for TCG.
    pub fn qemu_machine(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["-M", "pc", "-cpu", "qemu64"],
            Arch::Arm64 => &["-M", "virt", "-cpu", "max"],
        }
    }

    /// Whether KVM could run this arch on this host at all.
    pub fn kvm_possible(self) -> bool {
        matches!((self, std::env::consts::ARCH), (Arch::X86_64, "x86_64") | (Arch::Arm64, "aarch64"))
    }

    /// The kconfig fragment kbot applies on top of tinyconfig.
    pub fn fragment(self) -> String {
        let arch = match self {
            Arch::X86_64 => kbot_images::KCONFIG_X86_64,
            Arch::Arm64 => kbot_images::KCONFIG_ARM64,
        };
        format!("{}{}", kbot_images::KCONFIG_COMMON, arch)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
