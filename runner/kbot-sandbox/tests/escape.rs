//! The sandbox against a hostile step, with the real bubblewrap (`kbot setup` installs it):
//! writes outside its directories, network, credentials, kbot's state, runaway processes,
//! memory and output floods.

use kbot_sandbox::proc::{run_logged, Exit};
use kbot_sandbox::{Limits, Policy};
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

fn policy(hide: &[&Path]) -> Policy {
    Policy::detect(&hide.iter().map(|p| p.to_path_buf()).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("these tests need bubblewrap: {e}"))
}

fn sh(p: &Policy, rw: &Path, script: &str, limits: Limits, timeout: Duration) -> (Exit, String) {
    let mut j = p.jail();
    let w = j.rw(rw, "w").unwrap();
    let mut c = j.command("sh", limits);
    c.arg("-c").arg(script).env("W", &w);
    let log = tempfile::NamedTempFile::new().unwrap();
    let exit = run_logged(&mut c, log.path(), timeout, 1 << 20).unwrap();
    (exit, std::fs::read_to_string(log.path()).unwrap_or_default())
}

#[test]
fn writes_only_where_it_was_given() {
    let p = policy(&[]);
    let host = tempfile::tempdir().unwrap();
    let w = host.path().join("w");
    let outside = host.path().join("outside");
    let script = format!(
        "echo in > $W/made; echo x > {o}; echo y > /etc/kbot-escape; echo z > /tmp/t && echo tmp-ok; cat /tmp/t",
        o = outside.display()
    );
    let (exit, log) = sh(&p, &w, &script, Limits::TOOL, Duration::from_secs(30));
    assert!(exit.success(), "{log}");
    assert_eq!(std::fs::read_to_string(w.join("made")).unwrap(), "in\n");
    assert!(!outside.exists(), "wrote outside its directories: {log}");
    assert!(!Path::new("/etc/kbot-escape").exists());
    assert!(log.contains("tmp-ok"), "{log}");
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
        "bash -c 'echo GET / > /dev/tcp/127.0.0.1/{port}' && echo CONNECTED; cat /proc/net/dev | grep -c : ; true"
    );
    let (exit, log) = sh(&p, host.path(), &script, Limits::TOOL, Duration::from_secs(30));
    assert!(exit.success(), "{log}");
    assert!(!log.contains("CONNECTED"), "{log}");
    // Only the namespace's own loopback device exists.
    assert!(log.lines().any(|l| l.trim() == "1"), "{log}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(l.accept().is_err(), "the loopback server saw a connection");
}

#[test]
fn sees_no_credentials_and_no_kbot_state() {
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("smtp-password"), "hunter2").unwrap();
    let p = policy(&[state.path()]);
    std::env::set_var("KBOT_SMTP_PASSWORD", "hunter2");
    let host = tempfile::tempdir().unwrap();
    let script =
        format!("env; cat {}/smtp-password; ls -a {}; echo done", state.path().display(), state.path().display());
    let (_, log) = sh(&p, host.path(), &script, Limits::TOOL, Duration::from_secs(30));
    assert!(log.contains("done"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
}

#[test]
fn timeout_kills_everything_it_started() {
    let p = policy(&[]);
    let host = tempfile::tempdir().unwrap();
    let w = host.path().join("w");
    // A background child that would write after the timeout, and a foreground that never ends.
    let t = Instant::now();
    let (exit, _) = sh(
        &p,
        &w,
        "(sleep 3; echo late > $W/late) & setsid sh -c 'sleep 3; echo late > $W/late2' & while :; do :; done",
        Limits::TOOL,
        Duration::from_secs(1),
    );
    assert!(matches!(exit, Exit::TimedOut));
    assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
    std::thread::sleep(Duration::from_secs(4));
    assert!(!w.join("late").exists() && !w.join("late2").exists(), "a process outlived the step");
}

#[test]
fn memory_and_file_size_are_bounded() {
    let p = policy(&[]);
    let host = tempfile::tempdir().unwrap();
    let w = host.path().join("w");
    let small = Limits { memory: 512 << 20, processes: 256, file_size: 1 << 20 };
    let (exit, log) = sh(&p, &w, "perl -e '$x = \"a\" x (1 << 30); print length($x)'", small, Duration::from_secs(60));
    assert!(!exit.success(), "allocated 1 GiB under a 512 MiB limit: {log}");
    let (_, log) = sh(&p, &w, "head -c 5000000 /dev/zero > $W/big; echo rc=$?", small, Duration::from_secs(60));
    assert!(std::fs::metadata(w.join("big")).map(|m| m.len()).unwrap_or(0) <= 1 << 20, "{log}");
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
    let (_, log) = sh(
        &p,
        host.path(),
        "for i in $(seq 200); do sleep 2 & done; echo started; wait",
        small,
        Duration::from_secs(30),
    );
    assert!(log.contains("fork") || log.contains("Resource temporarily unavailable"), "{log}");
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
    assert!(text.contains("[kbot: log cut at 100000 bytes]"));
}
