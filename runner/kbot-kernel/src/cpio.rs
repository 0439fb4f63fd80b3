//! A minimal `newc` cpio writer for the initramfs: /init (the agent), the mount points, and
//! /dev/console (without it the kernel gives init no stdout); with [`initramfs_with_tree`]
//! also a tree of directories, files and symlinks (LTP and the tools it calls).

pub enum Entry<'a> {
    /// A directory, mode 0755.
    Dir(&'a str),
    /// A directory with its own permission bits.
    DirMode {
        name: &'a str,
        mode: u32,
    },
    /// A regular file; `mode`'s permission bits (0o7777) are kept, a file type in it ignored,
    /// so `metadata().mode()` can be passed as is.
    File {
        name: &'a str,
        mode: u32,
        data: &'a [u8],
    },
    CharDev {
        name: &'a str,
        major: u32,
        minor: u32,
    },
    /// A symbolic link (`target` is its content, relative or absolute).
    Symlink {
        name: &'a str,
        target: &'a str,
    },
}

impl Entry<'_> {
    pub fn name(&self) -> &str {
        match self {
            Entry::Dir(name)
            | Entry::DirMode { name, .. }
            | Entry::File { name, .. }
            | Entry::CharDev { name, .. }
            | Entry::Symlink { name, .. } => name,
        }
    }

    fn is_dir(&self) -> bool {
        matches!(self, Entry::Dir(_) | Entry::DirMode { .. })
    }
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
            Entry::DirMode { name, mode } => header(&mut out, ino, name, 0o040000 | (mode & 0o7777), 0, (0, 0)),
            Entry::CharDev { name, major, minor } => header(&mut out, ino, name, 0o020600, 0, (*major, *minor)),
            Entry::File { name, mode, data } => {
                header(&mut out, ino, name, 0o100000 | (mode & 0o7777), data.len(), (0, 0));
                out.extend_from_slice(data);
                pad4(&mut out);
            }
            Entry::Symlink { name, target } => {
                header(&mut out, ino, name, 0o120777, target.len(), (0, 0));
                out.extend_from_slice(target.as_bytes());
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
    archive(&base_entries(agent, extra))
}

/// The mount points, /dev/console, the agent as /init and `extra` at the top level.
fn base_entries<'a>(agent: &'a [u8], extra: &[(&'a str, &'a [u8])]) -> Vec<Entry<'a>> {
    let mut entries = vec![
        Entry::Dir("dev"),
        Entry::CharDev { name: "dev/console", major: 5, minor: 1 },
        Entry::Dir("proc"),
        Entry::Dir("sys"),
        Entry::Dir("tmp"),
        Entry::File { name: "init", mode: 0o755, data: agent },
    ];
    entries.extend(extra.iter().map(|(name, data)| Entry::File { name, mode: 0o644, data }));
    entries
}

/// The initramfs with the root directory `.` at mode 0755 (a test that drops privileges must
/// still get into /etc), plus `files` (names relative, a leading `/` or `./` is dropped).
/// A directory missing before its contents is added (0755); a directory given twice, or one
/// of the base image's (`dev`, `tmp`, ...), is written once.
pub fn initramfs_with_tree(agent: &[u8], extra: &[(&str, &[u8])], files: &[Entry]) -> Vec<u8> {
    let mut entries = vec![Entry::Dir(".")];
    entries.extend(base_entries(agent, extra));
    let mut dirs: std::collections::BTreeSet<String> =
        entries.iter().filter(|e| e.is_dir()).map(|e| e.name().to_string()).collect();
    // First the names of the missing parents, then the entries borrowing them.
    enum Slot {
        Parent(usize),
        Given(usize),
    }
    let (mut parents, mut slots) = (Vec::new(), Vec::new());
    for (i, e) in files.iter().enumerate() {
        let name = clean(e.name());
        let mut missing = Vec::new();
        let mut p = name;
        while let Some((parent, _)) = p.rsplit_once('/') {
            if !dirs.contains(parent) {
                missing.push(parent.to_string());
            }
            p = parent;
        }
        for m in missing.into_iter().rev() {
            dirs.insert(m.clone());
            parents.push(m);
            slots.push(Slot::Parent(parents.len() - 1));
        }
        if !e.is_dir() || dirs.insert(name.to_string()) {
            slots.push(Slot::Given(i));
        }
    }
    for slot in slots {
        entries.push(match slot {
            Slot::Parent(p) => Entry::Dir(&parents[p]),
            Slot::Given(i) => match &files[i] {
                Entry::Dir(n) => Entry::Dir(clean(n)),
                Entry::DirMode { name, mode } => Entry::DirMode { name: clean(name), mode: *mode },
                Entry::File { name, mode, data } => Entry::File { name: clean(name), mode: *mode, data },
                Entry::CharDev { name, major, minor } => {
                    Entry::CharDev { name: clean(name), major: *major, minor: *minor }
                }
                Entry::Symlink { name, target } => Entry::Symlink { name: clean(name), target },
            },
        });
    }
    archive(&entries)
}

fn clean(name: &str) -> &str {
    let n = name.trim_start_matches("./").trim_start_matches('/');
    n.trim_end_matches('/')
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

        // A tree: symlinks, modes, missing parents added, duplicate directories once.
        let t = initramfs_with_tree(
            b"agent",
            &[("scenarios.txt", b"x")],
            &[
                Entry::DirMode { name: "tmp", mode: 0o1777 },
                Entry::File { name: "/bin/busybox", mode: 0o100755, data: b"\x7fELF" },
                Entry::Symlink { name: "bin/sh", target: "busybox" },
                Entry::File { name: "etc/passwd", mode: 0o644, data: b"root:x:0:0::/:/bin/sh\n" },
                Entry::DirMode { name: "etc", mode: 0o755 },
            ],
        );
        std::fs::write(&p, &t).unwrap();
        let out = std::process::Command::new("cpio").args(["-itv", "-F"]).arg(&p).output().unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let names: Vec<&str> =
            list.lines().filter_map(|l| l.split(" -> ").next().and_then(|l| l.split_whitespace().last())).collect();
        assert_eq!(
            names,
            [
                ".",
                "dev",
                "dev/console",
                "proc",
                "sys",
                "tmp",
                "init",
                "scenarios.txt",
                "bin",
                "bin/busybox",
                "bin/sh",
                "etc",
                "etc/passwd"
            ],
            "{list}"
        );
        assert!(list.lines().any(|l| l.starts_with("drwxr-xr-x") && l.ends_with(" .")), "{list}");
        assert!(list.lines().any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("bin/sh -> busybox")), "{list}");
        assert!(list.lines().any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with("bin/busybox")), "{list}");
        assert!(list.lines().any(|l| l.starts_with("-rw-r--r--") && l.ends_with("etc/passwd")), "{list}");
        // Unpacked for real: the link points at the file.
        let x = dir.path().join("x");
        std::fs::create_dir(&x).unwrap();
        let st = std::process::Command::new("cpio")
            .args(["-id", "--quiet", "-F"])
            .arg(&p)
            .arg("bin/*")
            .current_dir(&x)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read_link(x.join("bin/sh")).unwrap(), std::path::Path::new("busybox"));
        assert_eq!(std::fs::read(x.join("bin/sh")).unwrap(), b"\x7fELF");
    }
}
