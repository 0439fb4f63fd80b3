//! The sandbox against a hostile step, with the real bubblewrap (`kbot setup` installs it):
//! writes outside its directories, network, credentials, kbot's state, runaway processes,
//! memory and output floods.

use kbot_sandbox::proc::{run_logged, Exit};
use kbot_sandbox::{Limits, Policy};
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

/// A host directory the sandbox would see (read-only) if nothing hid it. Not under /tmp: the
/// sandbox has its own empty /tmp, so a probe of a path there proves nothing.
fn host_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// The exit status of a step that ran to its end (not killed at its timeout).
fn status(exit: &Exit, log: &str) -> std::process::ExitStatus {
    match exit {
        Exit::Status(s) => *s,
        Exit::TimedOut => panic!("timed out: {log}"),
    }
}

fn policy(hide: &[&Path]) -> Policy {
    Policy::detect(&hide.iter().map(|p| p.to_path_buf()).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("these tests need bubblewrap: {e}"))
}

fn sh(p: &Policy, rw: &Path, script: &str, limits: Limits, timeout: Duration) -> (Exit, String) {
    let mut j = p.jail();
    let w = j.rw(rw, "w").unwrap();
    let mut c = j.command("sh", limits);
    // One stream, in order: each probe's error follows what it printed before.
    c.arg("-c").arg(format!("exec 2>&1; {script}")).env("W", &w);
    let log = tempfile::NamedTempFile::new().unwrap();
    let exit = run_logged(&mut c, log.path(), timeout, 1 << 20).unwrap();
    (exit, std::fs::read_to_string(log.path()).unwrap_or_default())
}

#[test]
fn writes_only_where_it_was_given() {
    let p = policy(&[]);
    let host = host_dir();
    let w = host.path().join("w");
    let outside = host.path().join("outside");
    // The writable directory first (the probe runs and can write), then each escape, each
    // with the shell's own reason, then a last marker (the probe ran to its end).
    let script = format!(
        "echo in > $W/made; echo x > {o}; echo y > /etc/kbot-escape; echo z > /tmp/t && echo tmp-ok; cat /tmp/t; \
         echo end > $W/end",
        o = outside.display()
    );
    let (exit, log) = sh(&p, &w, &script, Limits::TOOL, Duration::from_secs(30));
    assert!(exit.success(), "{log}");
    assert_eq!(std::fs::read_to_string(w.join("made")).unwrap(), "in\n");
    assert_eq!(std::fs::read_to_string(w.join("end")).unwrap(), "end\n");
    assert!(!outside.exists(), "wrote outside its directories: {log}");
    // Read-only, or not there at all when the checkout itself is under one of the directories
    // the sandbox replaces with its own (a clone in /tmp).
    let replaced = ["/tmp", "/var/tmp", "/run", "/mnt"].iter().any(|d| outside.starts_with(d));
    let why = if replaced { "Directory nonexistent" } else { "Read-only file system" };
    assert!(log.contains(&format!("cannot create {}: {why}", outside.display())), "{log}");
    assert!(!Path::new("/etc/kbot-escape").exists());
    assert!(log.contains("cannot create /etc/kbot-escape: Read-only file system"), "{log}");
    assert!(log.contains("tmp-ok\nz\n"), "{log}");
    // Its /tmp is its own.
    assert!(!Path::new("/tmp/t").exists() || std::fs::read_to_string("/tmp/t").unwrap_or_default() != "z\n");
}

#[test]
fn has_no_network_not_even_loopback() {
    let p = policy(&[]);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let host = tempfile::tempdir().unwrap();
    let script = format!(
        "echo probe; bash -c 'echo GET / > /dev/tcp/127.0.0.1/{port}' && echo CONNECTED; \
         echo devices=$(grep -c : /proc/net/dev); grep : /proc/net/dev | cut -d: -f1"
    );
    let (exit, log) = sh(&p, host.path(), &script, Limits::TOOL, Duration::from_secs(30));
    assert!(exit.success(), "{log}");
    assert!(log.starts_with("probe\n"), "{log}");
    assert!(!log.contains("CONNECTED"), "{log}");
    // Refused by the namespace's own loopback (nothing listens there), not a missing bash.
    assert!(log.contains(&format!("/dev/tcp/127.0.0.1/{port}: Connection refused")), "{log}");
    // Only the namespace's own loopback device exists.
    assert!(log.contains("devices=1\n") && log.lines().any(|l| l.trim() == "lo"), "{log}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(l.accept().is_err(), "the loopback server saw a connection");
}

#[test]
fn sees_no_credentials_and_no_kbot_state() {
    // Outside /tmp, where the sandbox would see it but for `hide`.
    let state = host_dir();
    std::fs::write(state.path().join("smtp-password"), "hunter2").unwrap();
    let p = policy(&[state.path()]);
    std::env::set_var("KBOT_SMTP_PASSWORD", "hunter2");
    let host = tempfile::tempdir().unwrap();
    let dir = state.path().display();
    let script = format!("env; cat {dir}/smtp-password; echo ls: $(ls -A {dir} | wc -l) entries; echo done");
    let (exit, log) = sh(&p, host.path(), &script, Limits::TOOL, Duration::from_secs(30));
    assert!(exit.success(), "{log}");
    assert!(log.ends_with("done\n"), "{log}");
    // The environment was printed (it ran), and holds only what the jail gives.
    assert!(log.lines().any(|l| l.starts_with("PATH=")) && log.contains("HOME=/tmp\n"), "{log}");
    assert!(!log.contains("KBOT_SMTP_PASSWORD"), "{log}");
    // The state directory is there, empty: hidden, not missing.
    assert!(log.contains(&format!("cat: {dir}/smtp-password: No such file or directory")), "{log}");
    assert!(log.contains("ls: 0 entries\n"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
}

#[test]
fn timeout_kills_everything_it_started() {
    let p = policy(&[]);
    let host = tempfile::tempdir().unwrap();
    let w = host.path().join("w");
    // Two background children (one in a session of its own) that would write after the
    // timeout, and a foreground that never ends. Each child first says it started, and can write.
    let t = Instant::now();
    let (exit, log) = sh(
        &p,
        &w,
        "(echo up > $W/up; sleep 3; echo late > $W/late) & \
         setsid sh -c 'echo up > $W/up2; sleep 3; echo late > $W/late2' & while :; do :; done",
        Limits::TOOL,
        Duration::from_secs(1),
    );
    assert!(matches!(exit, Exit::TimedOut), "{log}");
    assert!(log.ends_with("[kbot: killed after 1 s]\n"), "{log}");
    assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
    assert_eq!(std::fs::read_to_string(w.join("up")).unwrap(), "up\n", "the first child never ran");
    assert_eq!(std::fs::read_to_string(w.join("up2")).unwrap(), "up\n", "the second child never ran");
    std::thread::sleep(Duration::from_secs(4));
    assert!(!w.join("late").exists() && !w.join("late2").exists(), "a process outlived the step");
}

#[test]
fn memory_and_file_size_are_bounded() {
    let p = policy(&[]);
    let host = tempfile::tempdir().unwrap();
    let w = host.path().join("w");
    let small = Limits { memory: 512 << 20, processes: 256, file_size: 1 << 20 };
    // 100 MiB fit (perl runs, the limit is not simply "nothing works"); 1 GiB does not.
    let (exit, log) = sh(
        &p,
        &w,
        "perl -e '$x = \"a\" x (100 << 20); print length($x), \"\\n\"' && perl -e '$x = \"a\" x (1 << 30); print length($x)'",
        small,
        Duration::from_secs(60),
    );
    // perl dies with errno as its status: ENOMEM (12).
    assert_eq!(status(&exit, &log).code(), Some(12), "allocated 1 GiB under a 512 MiB limit: {log}");
    assert!(log.starts_with("104857600\nOut of memory!\n"), "{log}");
    assert!(!log.contains("1073741824"), "{log}");
    // The write stops at exactly the limit, killed by SIGXFSZ (128 + 25).
    let (exit, log) = sh(&p, &w, "head -c 5000000 /dev/zero > $W/big; echo rc=$?", small, Duration::from_secs(60));
    assert!(exit.success(), "{log}");
    assert!(log.contains("rc=153\n"), "{log}");
    assert_eq!(std::fs::metadata(w.join("big")).unwrap().len(), 1 << 20, "{log}");
}

#[test]
fn processes_are_bounded_when_unprivileged() {
    let p = policy(&[]);
    if p.drop_to.is_none() {
        // Not root: RLIMIT_NPROC would count all of this user's processes; not set (README).
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let small = Limits { memory: 1 << 30, processes: 64, file_size: 1 << 20 };
    let (exit, log) = sh(
        &p,
        host.path(),
        "echo probe; n=0; for i in $(seq 200); do sleep 2 & n=$((n+1)); done; echo started $n; wait",
        small,
        Duration::from_secs(30),
    );
    let _ = status(&exit, &log);
    assert!(log.starts_with("probe\n"), "{log}");
    // dash's own words when fork(2) fails with EAGAIN under RLIMIT_NPROC.
    assert!(log.contains("Cannot fork"), "{log}");
    assert!(!log.contains("started 200"), "200 processes under a limit of 64: {log}");
}

#[test]
fn a_flood_of_output_is_cut_with_a_note() {
    let p = policy(&[]);
    let host = tempfile::tempdir().unwrap();
    let mut j = p.jail();
    let mut c = j.command("yes", Limits::TOOL);
    c.arg("flood");
    let _ = j.rw(host.path(), "w");
    let log = host.path().join("log");
    let exit = run_logged(&mut c, &log, Duration::from_secs(2), 100_000).unwrap();
    assert!(matches!(exit, Exit::TimedOut));
    let mut text = String::new();
    std::fs::File::open(&log).unwrap().read_to_string(&mut text).unwrap();
    assert!(text.len() < 101_000, "{}", text.len());
    // Exactly the first 100,000 bytes of what it wrote, then the notes.
    assert!(text[..100_000] == "flood\n".repeat(100_000 / 6 + 1)[..100_000], "{}", &text[..200]);
    assert_eq!(&text[100_000..], "\n[kbot: log cut at 100000 bytes]\n\n[kbot: killed after 2 s]\n");
}
