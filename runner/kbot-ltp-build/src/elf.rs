//! Just enough of ELF (64-bit, little-endian: x86_64 and arm64) to tell the machine, whether
//! a binary is static (no `PT_INTERP`), its loader and the libraries it needs (`DT_NEEDED`).

use kbot_kernel::Arch;

pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

/// The ELF machine (`e_machine`) of an arch.
pub fn machine(arch: Arch) -> u16 {
    match arch {
        Arch::X86_64 => EM_X86_64,
        Arch::Arm64 => EM_AARCH64,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elf {
    pub machine: u16,
    /// The program interpreter (dynamic loader), `None` for a static binary.
    pub interp: Option<String>,
    /// `DT_NEEDED` in order.
    pub needed: Vec<String>,
}

fn u16_at(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(d: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(o..o + 8)?.try_into().ok()?))
}
fn cstr(d: &[u8], o: usize) -> Option<String> {
    let rest = d.get(o..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// Parses the header, program headers and dynamic section. `Err` says what is wrong.
pub fn parse(d: &[u8]) -> Result<Elf, String> {
    if d.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if d.get(4) != Some(&2) || d.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let bad = || "truncated ELF file".to_string();
    let machine = u16_at(d, 0x12).ok_or_else(bad)?;
    let phoff = u64_at(d, 0x20).ok_or_else(bad)? as usize;
    let phentsize = u16_at(d, 0x36).ok_or_else(bad)? as usize;
    let phnum = u16_at(d, 0x38).ok_or_else(bad)? as usize;
    let mut interp = None;
    let mut dynamic = None;
    let mut loads = Vec::new();
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        let ty = u32_at(d, p).ok_or_else(bad)?;
        let offset = u64_at(d, p + 8).ok_or_else(bad)?;
        let vaddr = u64_at(d, p + 16).ok_or_else(bad)?;
        let filesz = u64_at(d, p + 32).ok_or_else(bad)?;
        match ty {
            PT_INTERP => interp = Some(cstr(d, offset as usize).ok_or_else(bad)?),
            PT_DYNAMIC => dynamic = Some((offset, filesz)),
            PT_LOAD => loads.push((vaddr, offset, filesz)),
            _ => {}
        }
    }
    let mut needed = Vec::new();
    if let Some((off, size)) = dynamic {
        let (mut strtab, mut names) = (None, Vec::new());
        for e in (off..off + size).step_by(16) {
            let tag = u64_at(d, e as usize).ok_or_else(bad)?;
            let val = u64_at(d, e as usize + 8).ok_or_else(bad)?;
            match tag {
                0 => break,
                DT_NEEDED => names.push(val),
                DT_STRTAB => strtab = Some(val),
                _ => {}
            }
        }
        if !names.is_empty() {
            let addr = strtab.ok_or("DT_NEEDED without DT_STRTAB")?;
            let (vaddr, offset, _) = loads
                .iter()
                .find(|(v, _, sz)| addr >= *v && addr < v + sz)
                .ok_or("DT_STRTAB outside every PT_LOAD segment")?;
            let base = (addr - vaddr + offset) as usize;
            for n in names {
                needed.push(cstr(d, base + n as usize).ok_or_else(bad)?);
            }
        }
    }
    Ok(Elf { machine, interp, needed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_elf() {
        assert!(parse(b"#!/bin/sh\n").is_err());
        assert!(parse(b"\x7fELF\x02\x01").is_err());
    }

    /// Debian's mke2fs is dynamic: its loader and libext2fs & co. come out of the real file.
    #[test]
    fn host_mke2fs_needs_libext2fs() {
        let Some(p) = ["/usr/sbin/mke2fs", "/sbin/mke2fs"].into_iter().find(|p| std::path::Path::new(p).exists())
        else {
            eprintln!("no mke2fs on this host (install e2fsprogs): skipped");
            return;
        };
        let e = parse(&std::fs::read(p).unwrap()).unwrap();
        let host = if cfg!(target_arch = "x86_64") { EM_X86_64 } else { EM_AARCH64 };
        assert_eq!(e.machine, host);
        assert!(e.interp.as_deref().is_some_and(|i| i.starts_with("/lib")), "{e:?}");
        for lib in ["libext2fs.so.2", "libcom_err.so.2", "libc.so.6"] {
            assert!(e.needed.iter().any(|n| n == lib), "{lib} not in {:?}", e.needed);
        }
    }
}
