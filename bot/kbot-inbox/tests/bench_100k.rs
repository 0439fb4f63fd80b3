//! A large synthetic inbox: 100,000 messages in one v2 epoch, written with `git fast-import`
//! (one commit per message with the blob `m`, as public-inbox does), in threads of 10.
//! Prints how long a cold index, a warm lookup and an incremental update take; asserts only
//! that the answers are right. `cargo test --release -p kbot-inbox -- --ignored --nocapture`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

const N: usize = 100_000;
const THREAD: usize = 10;

fn message(i: usize) -> String {
    let root = i - i % THREAD;
    let reply =
        if i == root { String::new() } else { format!("In-Reply-To: <m{root}@bench>\nReferences: <m{root}@bench>\n") };
    format!("From: Bench <b@bench>\nSubject: [PATCH {}/{}] bench: message {i}\nMessage-ID: <m{i}@bench>\n{reply}\nbody {i}\n", i % THREAD, THREAD - 1)
}

/// Appends messages `from..to` as commits to refs/heads/master of `repo`.
fn import(repo: &std::path::Path, from: usize, to: usize) {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    let mut w = std::io::BufWriter::new(child.stdin.take().unwrap());
    for i in from..to {
        let m = message(i);
        write!(w, "blob\nmark :1\ndata {}\n{}\n", m.len(), m).unwrap();
        write!(w, "commit refs/heads/master\ncommitter b <b@bench> {} +0000\ndata 0\n", 1_700_000_000 + i).unwrap();
        if i == from && from > 0 {
            w.write_all(b"from refs/heads/master^0\n").unwrap();
        }
        w.write_all(b"M 100644 :1 m\n\n").unwrap();
    }
    drop(w);
    assert!(child.wait().unwrap().success());
}

#[test]
#[ignore = "benchmark: builds a 100k-message inbox (about a minute)"]
fn hundred_thousand_messages() {
    let d = tempfile::tempdir().unwrap();
    let epoch = d.path().join("inbox/git/0.git");
    let st = Command::new("git").args(["init", "-q", "--bare", "-b", "master"]).arg(&epoch).status().unwrap();
    assert!(st.success());
    let t = Instant::now();
    import(&epoch, 0, N);
    let build = t.elapsed().as_secs_f64();
    let dir = d.path().join("inbox");
    let index = d.path().join("index.tsv");

    let (ix, cold) = kbot_inbox::open_indexed(&dir, &index).unwrap();
    assert_eq!((cold.new, cold.total), (N, N));
    let t = Instant::now();
    let mbox = ix.thread_mbox(&dir, "m12345@bench").unwrap();
    let cold_thread = t.elapsed().as_secs_f64();
    assert_eq!(String::from_utf8_lossy(&mbox).matches("\nMessage-ID: <m123").count(), THREAD);

    let t = Instant::now();
    let (ix, warm) = kbot_inbox::open_indexed(&dir, &index).unwrap();
    assert_eq!(warm.new, 0);
    let mbox = ix.thread_mbox(&dir, "m99999@bench").unwrap();
    let warm_lookup = t.elapsed().as_secs_f64();
    assert_eq!(String::from_utf8_lossy(&mbox).matches("Message-ID: <m9999").count(), THREAD);

    import(&epoch, N, N + 1);
    let t = Instant::now();
    let (_, inc) = kbot_inbox::open_indexed(&dir, &index).unwrap();
    let incremental = t.elapsed().as_secs_f64();
    assert_eq!((inc.new, inc.total), (1, N + 1));

    println!(
        "inbox of {N} messages: built with fast-import in {build:.1}s; cold index {:.2}s, thread lookup {cold_thread:.3}s; warm lookup (load index + check epoch + thread) {warm_lookup:.3}s; +1 message: {incremental:.3}s",
        cold.seconds
    );
}
