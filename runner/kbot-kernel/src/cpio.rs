//! A minimal `newc` cpio writer for the initramfs: /init (the agent), the mount points, and
//! /dev/console (without it the kernel gives init no stdout).

pub enum Entry<'a> {
    Dir(&'a str),
    File { name: &'a str, mode: u32, data: &'a [u8] },
    CharDev { name: &'a str, major: u32, minor: u32 },
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn header(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, size: usize, rdev: (u32, u32)) {
    let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
    let fields = [ino, mode, 0, 0, nlink, 0, size as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

pub fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            Entry::Dir(name) => header(&mut out, ino, name, 0o040755, 0, (0, 0)),
            Entry::CharDev { name, major, minor } => header(&mut out, ino, name, 0o020600, 0, (*major, *minor)),
            Entry::File { name, mode, data } => {
                header(&mut out, ino, name, 0o100000 | mode, data.len(), (0, 0));
                out.extend_from_slice(data);
                pad4(&mut out);
            }
        }
    }
    header(&mut out, 0, "TRAILER!!!", 0, 0, (0, 0));
    out
}

/// The test VM's initramfs around the agent binary.
pub fn initramfs(agent: &[u8]) -> Vec<u8> {
    initramfs_with(agent, &[])
}

/// The initramfs plus extra files at the top level (e.g. `scenarios.txt` for a replay).
pub fn initramfs_with(agent: &[u8], extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut entries = vec![
        Entry::Dir("dev"),
        Entry::CharDev { name: "dev/console", major: 5, minor: 1 },
        Entry::Dir("proc"),
        Entry::Dir("sys"),
        Entry::Dir("tmp"),
        Entry::File { name: "init", mode: 0o755, data: agent },
    ];
    entries.extend(extra.iter().map(|(name, data)| Entry::File { name, mode: 0o644, data }));
    archive(&entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the archive with the real cpio tool when it is installed.
    #[test]
    fn cpio_tool_lists_it() {
        let a = initramfs(b"#!/bin/true\n");
        assert!(a.len().is_multiple_of(4));
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
        if !crate::proc::have("cpio") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.cpio");
        std::fs::write(&p, &a).unwrap();
        let out = std::process::Command::new("cpio").args(["-itv", "-F"]).arg(&p).output().unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(list.contains("dev/console") && list.contains("init"), "{list}");
        assert!(list.lines().any(|l| l.starts_with("crw") && l.contains("5,") && l.contains("dev/console")), "{list}");
    }
}
