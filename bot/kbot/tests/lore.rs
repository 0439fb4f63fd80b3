//! `kbot check --msgid` against a real public-inbox (Debian's `public-inbox`: a v2 inbox,
//! mails delivered with public-inbox-mda, served by public-inbox-httpd on 127.0.0.1 with
//! lore's URL scheme). No kernel is built: the series is applied to a small tree where it
//! cannot apply, which is enough to see what was fetched and assembled.
//! Needs public-inbox installed: `cargo test -- --include-ignored` (CI installs it).

mod common;

use common::{examples, split, tiny_tree, Inbox};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn kbot(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kbot")).env("KBOT_HOME", home).arg("--quiet").args(args).output().unwrap()
}

const COVER: &str = "cover.1795614032.git.alice@example.org";
const PATCH2: &str = "d4beaa0b6dce675866cce3d0d2f856abb4e70f42.1795614032.git.alice@example.org";

#[test]
#[ignore = "needs Debian's public-inbox"]
fn thread_from_any_message_with_trailers_and_errors() {
    let mut ib = Inbox::start();
    let mbox = std::fs::read_to_string(examples().join("srcu-stall-regression.mbox")).unwrap();
    let mails = split(&mbox);
    assert_eq!(mails.len(), 4);
    for m in &mails {
        ib.deliver(m);
    }
    let patch1_id = mails[1]
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: <").or_else(|| l.strip_prefix("Message-Id: <")))
        .unwrap()
        .trim_end_matches('>')
        .to_string();
    ib.deliver(&format!("From: Rev <rev@example.org>\nSubject: Re: [PATCH 1/3] fsnotify: document fsnotify_prepare_user_wait()\nMessage-ID: <r1@example.org>\nIn-Reply-To: <{patch1_id}>\nReferences: <{COVER}> <{patch1_id}>\n\n> quoted\nReviewed-by: Rev <rev@example.org>\n"));
    ib.deliver(&format!("From: Maint <m@example.org>\nSubject: Re: [PATCH 0/3] fsnotify: permission event wait cleanups\nMessage-ID: <r0@example.org>\nIn-Reply-To: <{COVER}>\nReferences: <{COVER}>\n\nAcked-by: Maint <m@example.org>\n"));
    ib.deliver("From: Q <q@example.org>\nSubject: a question about fanotify\nMessage-ID: <question@example.org>\n\nhow do I use it?\n");

    let d = tempfile::tempdir().unwrap();
    let tree = tiny_tree(d.path(), "int unrelated;\n");
    let json = d.path().join("r.json");
    let json_s = json.to_str().unwrap();
    let tree_s = tree.to_str().unwrap();
    // From patch 2 (not the cover): the whole thread comes, in the right order.
    let o = kbot(
        d.path(),
        &["check", "--msgid", &format!("<{PATCH2}>"), "--lore", &ib.url(), "--tree", tree_s, "--json", json_s],
    );
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["status"], "apply-failed");
    assert_eq!(v["series"]["message_id"], COVER);
    assert_eq!(v["series"]["total"], 3);
    let p = v["series"]["patches"].as_array().unwrap();
    assert_eq!(p.iter().map(|x| x["index"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        p[0]["trailers"],
        serde_json::json!(["Reviewed-by: Rev <rev@example.org>", "Acked-by: Maint <m@example.org>"])
    );
    assert_eq!(p[2]["trailers"], serde_json::json!(["Acked-by: Maint <m@example.org>"]));

    // A lore link to the cover works the same.
    let _ = std::fs::remove_file(&json);
    let link = format!("{}{COVER}/T/#u", ib.url());
    let o = kbot(d.path(), &["check", "--msgid", &link, "--tree", tree_s, "--json", json_s]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));

    // Errors: unknown id, a thread without patches, a server that is gone.
    let _ = std::fs::remove_file(&json);
    for (id, want) in
        [("nope@example.org", "no such message"), ("question@example.org", "none of the 1 mails is a patch")]
    {
        let o = kbot(d.path(), &["check", "--msgid", id, "--lore", &ib.url(), "--tree", tree_s, "--json", json_s]);
        assert_eq!(o.status.code(), Some(2), "{id}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want) && err.lines().count() == 1, "{id}: {err}");
        assert!(!json.exists(), "nothing may be written on an error");
    }
    // The same thread from the inbox's own git epochs (a v2 mirror), no network.
    let inbox_dir = ib.dir.path().join("fsdevel");
    let inbox_s = inbox_dir.to_str().unwrap();
    let run_inbox = |d: &Path| {
        let _ = std::fs::remove_file(&json);
        let o = Command::new(env!("CARGO_BIN_EXE_kbot"))
            .env("KBOT_HOME", d)
            .args(["check", "--msgid", PATCH2, "--inbox", inbox_s, "--tree", tree_s, "--json", json_s])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        (String::from_utf8_lossy(&o.stderr).to_string(), v)
    };
    let (err, v2) = run_inbox(d.path());
    assert!(err.contains("indexed 7 new message(s)"), "{err}");
    assert_eq!(v2["series"]["patches"], v["series"]["patches"]);
    // One more reply: the index takes just that commit.
    ib.deliver(&format!("From: T <t@example.org>\nSubject: Re: [PATCH 3/3]\nMessage-ID: <r3@example.org>\nIn-Reply-To: <{COVER}>\nReferences: <{COVER}>\n\nTested-by: T <t@example.org>\n"));
    let (err, v3) = run_inbox(d.path());
    assert!(err.contains("indexed 1 new message(s)") && err.contains("(8 in all)"), "{err}");
    assert!(v3["series"]["patches"][2]["trailers"].to_string().contains("Tested-by: T <t@example.org>"));
    let o = kbot(d.path(), &["check", "--msgid", "nope@example.org", "--inbox", inbox_s, "--tree", tree_s]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no message <nope@example.org> in the inbox"));

    ib.stop();
    let o = kbot(d.path(), &["check", "--msgid", PATCH2, "--lore", &ib.url(), "--tree", tree_s]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unreachable"));
}

fn series_mail(from: &str, subject: &str, id: &str, irt: Option<&str>, body: &str) -> String {
    let irt = irt.map(|i| format!("In-Reply-To: <{i}>\nReferences: <{i}>\n")).unwrap_or_default();
    format!("From: {from}\nTo: fsdevel@example.org\nSubject: {subject}\nMessage-ID: <{id}>\n{irt}MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n")
}

fn diff(n: u32) -> String {
    format!("x\n\nSigned-off-by: J\u{f6}rg <j@example.org>\n---\ndiff --git a/nowhere.c b/nowhere.c\n--- a/nowhere.c\n+++ b/nowhere.c\n@@ -1 +1 @@\n-a\n+{n}\n")
}

#[test]
#[ignore = "needs Debian's public-inbox"]
fn revisions_encoded_headers_cross_posts_and_incomplete_threads() {
    let ib = Inbox::start();
    let jorg = "=?UTF-8?B?SsO2cmc=?= <j@example.org>";
    // v1, then v2 sent in reply to v1's cover; the v2 patch has an encoded subject.
    ib.deliver(&series_mail(jorg, "[PATCH 0/1] x: thing", "v1c@example.org", None, "v1 cover"));
    ib.deliver(&series_mail(jorg, "[PATCH 1/1] x: thing", "v1p@example.org", Some("v1c@example.org"), &diff(1)));
    ib.deliver(&series_mail(jorg, "[PATCH v2 0/1] x: thing", "v2c@example.org", Some("v1c@example.org"), "v2 cover"));
    ib.deliver(&series_mail(
        jorg,
        "=?UTF-8?q?=5BPATCH_v2_1/1=5D_x=3A_caf=C3=A9_thing?=",
        "v2p@example.org",
        Some("v2c@example.org"),
        &diff(2),
    ));
    // A review cross-posted to another list, with fsdevel in Cc.
    ib.deliver("From: Rev <rev@example.org>\nTo: other@example.org\nCc: fsdevel@example.org\nSubject: Re: [PATCH v2 1/1] x: caf\u{e9} thing\nMessage-ID: <rv@example.org>\nIn-Reply-To: <v2p@example.org>\nReferences: <v1c@example.org> <v2c@example.org> <v2p@example.org>\nContent-Type: text/plain; charset=utf-8\n\nReviewed-by: Rev <rev@example.org>\n");
    // An incomplete series: 1/2 only.
    ib.deliver(&series_mail(jorg, "[PATCH 1/2] y: half", "half@example.org", None, &diff(3)));

    let d = tempfile::tempdir().unwrap();
    let tree = tiny_tree(d.path(), "int unrelated;\n");
    let (tree_s, json) = (tree.to_str().unwrap().to_string(), d.path().join("r.json"));
    let url = ib.url();
    let check = |id: &str, version: Option<&str>| {
        let _ = std::fs::remove_file(&json);
        let mut args =
            vec!["check", "--msgid", id, "--lore", &url, "--tree", &tree_s, "--json", json.to_str().unwrap()];
        if let Some(v) = version {
            args.extend(["--version", v]);
        }
        let o = kbot(d.path(), &args);
        let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap_or_default()).unwrap_or(Value::Null);
        (o.status.code(), v)
    };
    // From v1's patch: the newest revision is tested, with the review's trailer.
    let (code, v) = check("v1p@example.org", None);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["series"]["version"], 2);
    let p = &v["series"]["patches"][0];
    assert_eq!(p["message_id"], "v2p@example.org");
    assert_eq!(p["subject"], "x: caf\u{e9} thing");
    assert_eq!(p["author"], "J\u{f6}rg <j@example.org>");
    assert_eq!(p["trailers"], serde_json::json!(["Reviewed-by: Rev <rev@example.org>"]));
    assert!(v["series"]["notes"].to_string().contains("tested v2"));
    // --version 1 picks the older one.
    let (_, v) = check("v2p@example.org", Some("1"));
    assert_eq!(v["series"]["patches"][0]["message_id"], "v1p@example.org");
    // Incomplete: nothing built, exit 1.
    let (code, v) = check("half@example.org", None);
    assert_eq!(code, Some(1));
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["series"]["missing"], serde_json::json!([2]));
}

/// What b4 picks for a thread: (version, patch subjects, trailers per patch), from `b4 am`.
fn b4_am(ib: &Inbox, msgid: &str) -> (u32, Vec<String>, Vec<Vec<String>>) {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("gitconfig");
    let url = format!("http://127.0.0.1:{}/fsdevel/%s", ib.port);
    // No attestation: its DKIM lookups need the network.
    std::fs::write(&cfg, format!("[user]\n\tname = t\n\temail = t@t\n[b4]\n\tmidmask = {url}\n\tlinkmask = {url}\n\tattestation-policy = off\n")).unwrap();
    let out = d.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let o = Command::new("b4")
        .args(["am", "-C", "-t", "-o"])
        .arg(&out)
        .args(["-n", "s", msgid])
        .env("GIT_CONFIG_GLOBAL", &cfg)
        .env("XDG_CACHE_HOME", d.path().join("cache"))
        .current_dir(d.path())
        .output()
        .expect("b4");
    assert!(o.status.success(), "b4 am: {}", String::from_utf8_lossy(&o.stderr));
    let mails = kbot_mbox::parse_mbox(&std::fs::read(out.join("s.mbx")).unwrap()).unwrap();
    let tags: Vec<_> = mails.iter().map(|m| kbot_series::parse_subject(&m.subject)).collect();
    let kinds = ["Reviewed-by:", "Acked-by:", "Tested-by:", "Reported-by:"];
    let trailers = mails
        .iter()
        .map(|m| {
            let mut t: Vec<String> =
                m.body.lines().filter(|l| kinds.iter().any(|k| l.starts_with(k))).map(str::to_string).collect();
            t.sort();
            t
        })
        .collect();
    (tags[0].version, tags.iter().map(|t| t.title.clone()).collect(), trailers)
}

#[test]
#[ignore = "needs Debian's public-inbox and b4"]
fn picks_what_b4_picks() {
    let ib = Inbox::start();
    for m in split(&std::fs::read_to_string(examples().join("srcu-stall-regression.mbox")).unwrap()) {
        ib.deliver(&m);
    }
    ib.deliver(&format!("From: Rev <rev@example.org>\nSubject: Re: [PATCH 2/3]\nMessage-ID: <b4r@example.org>\nIn-Reply-To: <{PATCH2}>\nReferences: <{COVER}> <{PATCH2}>\n\nReviewed-by: Rev <rev@example.org>\n"));
    ib.deliver(&format!("From: M <m@example.org>\nSubject: Re: [PATCH 0/3]\nMessage-ID: <b4c@example.org>\nIn-Reply-To: <{COVER}>\nReferences: <{COVER}>\n\nAcked-by: M <m@example.org>\n"));
    let jorg = "=?UTF-8?B?SsO2cmc=?= <j@example.org>";
    ib.deliver(&series_mail(jorg, "[PATCH 1/1] x: thing", "b1@example.org", None, &diff(1)));
    ib.deliver(&series_mail(jorg, "[PATCH v2 1/1] x: thing", "b2@example.org", Some("b1@example.org"), &diff(2)));
    ib.deliver("From: R <r@example.org>\nSubject: Re: [PATCH v2 1/1] x: thing\nMessage-ID: <b2r@example.org>\nIn-Reply-To: <b2@example.org>\nReferences: <b1@example.org> <b2@example.org>\n\nTested-by: R <r@example.org>\n");

    let d = tempfile::tempdir().unwrap();
    let tree = tiny_tree(d.path(), "int unrelated;\n");
    let json = d.path().join("r.json");
    for id in [PATCH2, "b1@example.org"] {
        let _ = std::fs::remove_file(&json);
        let o = kbot(
            d.path(),
            &[
                "check",
                "--msgid",
                id,
                "--lore",
                &ib.url(),
                "--tree",
                tree.to_str().unwrap(),
                "--json",
                json.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let (version, subjects, trailers) = b4_am(&ib, id);
        assert_eq!(v["series"]["version"], version, "{id}");
        let ours: Vec<String> = v["series"]["patches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["subject"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ours, subjects, "{id}");
        let ours_t: Vec<Vec<String>> = v["series"]["patches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let mut t: Vec<String> =
                    p["trailers"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
                t.sort();
                t
            })
            .collect();
        assert_eq!(ours_t, trailers, "{id}");
    }
}

/// `kbot check --msgid id` on `tree`, then its reproduce line pasted into bash with `kbot`
/// replaced by a recorder: the result and the words that arrived.
fn check_and_paste(d: &Path, ib: &Inbox, tree: &Path, id: &str) -> (Value, Vec<String>) {
    let json = d.join("r.json");
    let _ = std::fs::remove_file(&json);
    let (tree_s, json_s) = (tree.to_str().unwrap(), json.to_str().unwrap());
    let o = kbot(d, &["check", "--msgid", id, "--lore", &ib.url(), "--tree", tree_s, "--json", json_s]);
    assert_eq!(o.status.code(), Some(1), "{id}: {}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let line = v["reproduce"][1].as_str().unwrap().to_string();
    let argv = d.join("argv");
    let script = format!("kbot() {{ printf '%s\\0' \"$@\" > {}; }}\n{line}\n", argv.display());
    let run = Command::new("bash").arg("-c").arg(&script).output().unwrap();
    assert!(run.status.success(), "{line}: {}", String::from_utf8_lossy(&run.stderr));
    let words = std::fs::read_to_string(&argv).unwrap().split_terminator('\0').map(str::to_string).collect();
    (v, words)
}

/// A sender controls the Message-ID, and the Message-ID goes into the reproduce line that
/// readers paste into a shell. Each hostile id is delivered as an incomplete series (nothing
/// is built), checked by id, and its reproduce line is run by bash with `kbot` replaced by a
/// recorder: exactly the expected words must arrive, and nothing else may run.
#[test]
#[ignore = "needs Debian's public-inbox"]
fn reproduce_lines_of_hostile_message_ids_are_safe_to_paste() {
    let ib = Inbox::start();
    let d = tempfile::tempdir().unwrap();
    let marker = d.path().join("pwned");
    let m = marker.to_str().unwrap();
    let ids = [
        format!("c9'$(touch${{IFS}}{m})'@example.org"),
        format!("c8`touch${{IFS}}{m}`@example.org"),
        format!("c7\";touch${{IFS}}{m};\"@example.org"),
        format!("c6$(touch${{IFS}}{m})@example.org"),
    ];
    let tree = tiny_tree(d.path(), "int unrelated;\n");
    let url = ib.url();
    for (i, id) in ids.iter().enumerate() {
        let p1 = format!("p{i}@example.org");
        ib.deliver(&series_mail("A <a@example.org>", &format!("[PATCH 0/2] x: hostile {i}"), id, None, "cover"));
        ib.deliver(&series_mail("A <a@example.org>", &format!("[PATCH 1/2] x: one {i}"), &p1, Some(id), &diff(1)));
        // Named by its patch: the hostile cover id is the series' id in the result.
        let (v, words) = check_and_paste(d.path(), &ib, &tree, &p1);
        assert_eq!((v["status"].as_str(), v["series"]["message_id"].as_str()), (Some("incomplete"), Some(id.as_str())));
        assert_eq!(&words[..5], ["check", "--msgid", p1.as_str(), "--lore", url.as_str()]);
        // Named by the hostile cover id itself: that id is in the line.
        let (_, words) = check_and_paste(d.path(), &ib, &tree, id);
        assert_eq!(&words[..5], ["check", "--msgid", id.as_str(), "--lore", url.as_str()]);
        assert!(!marker.exists(), "pasting a reproduce line for {id:?} ran a command");
    }
}
