//! `kbot serve --once` as a mailing-list bot, against a real public-inbox (Debian's, on
//! 127.0.0.1) and a real SMTP sink (python3-aiosmtpd, a maildir): `#kbot` commands answered in
//! thread and acted on once across restarts, follow-ups across revisions (still present, no
//! longer reproduces, invalid findings not mailed again), maintainers from the tree's real
//! get_maintainer.pl on Cc, opt-outs never mailed, no host path in any mail. No kernel is
//! built: the `KBOT_SERVE_CHECK` seam runs a script that writes a prepared result (the
//! example's real one, analyzers/kbot-testdata/testdata/srcu-stall-regression.json, its
//! message ids adapted to each revision).

mod common;

use common::{examples, free_port, git, split, Inbox, Smtp};
use std::path::{Path, PathBuf};
use std::process::Command;

fn header(mail: &str, name: &str) -> String {
    let head = mail.split("\n\n").next().unwrap().replace("\r\n", "\n").replace("\n ", " ").replace("\n\t", " ");
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&format!("{}: ", name.to_ascii_lowercase())))
        .map(|l| l[name.len() + 2..].to_string())
        .unwrap_or_default()
}

/// The fake `kbot check`: writes `$KBOT_TEST_RESULTS/<message id>.json` of the first message
/// id of the thread that has one as the job's --json.
const FAKE_CHECK: &str = r#"#!/usr/bin/python3
import sys, os, re, shutil
a = sys.argv[1:]
mbox = a[a.index("--mbox") + 1]
out = a[a.index("--json") + 1]
d = os.environ["KBOT_TEST_RESULTS"]
for m in re.findall(r"(?im)^Message-ID:\s*<([^>]+)>", open(mbox, errors="replace").read()):
    if os.path.exists(os.path.join(d, m + ".json")):
        shutil.copy(os.path.join(d, m + ".json"), out)
        open(os.path.join(d, "args.log"), "a").write(" ".join(a) + "\n")
        sys.exit(1)
sys.exit("no prepared result")
"#;

const CANNED: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../analyzers/kbot-testdata/testdata/srcu-stall-regression.json");

/// Revision `v` of the example series (ids and subjects of their own) and its result:
/// `findings` are the test names of its regressions (none: clean).
fn revision(ib: &Inbox, results: &Path, v: u32, findings: &[&str]) {
    let stamp = format!("17956140{v:02}");
    let mbox = std::fs::read_to_string(examples().join("srcu-stall-regression.mbox")).unwrap();
    let mbox = mbox.replace("1795614032", &stamp);
    let mbox = if v > 1 { mbox.replace("Subject: [PATCH ", &format!("Subject: [PATCH v{v} ")) } else { mbox };
    for m in split(&mbox) {
        ib.deliver(&m);
    }
    let mut r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(CANNED).unwrap().replace("1795614032", &stamp)).unwrap();
    r["series"]["version"] = v.into();
    let template = r["arches"][0]["regressions"][0].clone();
    let regs: Vec<serde_json::Value> = findings
        .iter()
        .map(|t| {
            let mut x = template.clone();
            let ev = x["evidence"].as_str().unwrap().replace(x["test"].as_str().unwrap(), t);
            x["test"] = (*t).into();
            x["evidence"] = ev.into();
            x
        })
        .collect();
    if regs.is_empty() {
        r["status"] = "clean".into();
    }
    r["arches"][0]["regressions"] = regs.into();
    let id = format!("cover.{stamp}.git.alice@example.org");
    std::fs::write(results.join(format!("{id}.json")), serde_json::to_string(&r).unwrap()).unwrap();
}

fn reply(ib: &Inbox, from: &str, id: &str, to_msgid: &str, subject: &str, body: &str) {
    ib.deliver(&format!(
        "From: {from}\nTo: fsdevel@example.org\nSubject: Re: {subject}\nMessage-ID: <{id}>\nIn-Reply-To: {to_msgid}\nReferences: {to_msgid}\nDate: Thu, 26 Nov 2026 10:00:00 +0000\n\n{body}\n"
    ));
}

struct Bot {
    dir: PathBuf,
    cfg: PathBuf,
    results: PathBuf,
}

impl Bot {
    fn once(&self) -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_kbot"))
            .env("KBOT_HOME", self.dir.join("home"))
            .env("KBOT_SERVE_CHECK", self.dir.join("fake-check"))
            .env("KBOT_TEST_RESULTS", &self.results)
            .env_remove("KBOT_TREE")
            .args(["serve", "--once", "--config"])
            .arg(&self.cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(0), "{err}");
        err
    }
}

#[test]
#[ignore = "needs Debian's public-inbox, python3-aiosmtpd and the default tree's get_maintainer.pl"]
fn commands_followups_maintainers_and_optouts_by_real_mail() {
    let d = tempfile::tempdir().unwrap();
    let ib = Inbox::start();
    let smtp_port = free_port();
    let smtp = Smtp::start(&d.path().join("maildir"), smtp_port);
    // A small tree: MAINTAINERS names Nora for fs/notify/; the real get_maintainer.pl.
    let tree = d.path().join("tiny");
    std::fs::create_dir_all(tree.join("scripts")).unwrap();
    std::fs::copy(
        common::kbot_home().join("trees/default/scripts/get_maintainer.pl"),
        tree.join("scripts/get_maintainer.pl"),
    )
    .expect("the default tree (kbot setup)");
    std::fs::write(
        tree.join("MAINTAINERS"),
        "FSNOTIFY\nM:\tNora Notify <nora@example.org>\nL:\tnotify-list@example.org\nS:\tMaintained\nF:\tfs/notify/\n",
    )
    .unwrap();
    git(&tree, &["init", "-q", "-b", "main"]);
    git(&tree, &["add", "-A"]);
    git(&tree, &["commit", "-q", "-m", "base"]);
    git(&tree, &["branch", "next"]);
    let results = d.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    let fake = d.path().join("fake-check");
    std::fs::write(&fake, FAKE_CHECK).unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&fake).unwrap().permissions(), 0o755);
    Command::new("chmod").arg("755").arg(&fake).status().unwrap();
    let cfg = d.path().join("kbot.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\narches: [x86_64]\ntrees:\n  - name: tiny\n    path: {}\n    url: https://git.example.org/tiny.git main\ninboxes:\n  - name: fsdevel\n    lore: {}\n    tree: tiny\n    since: 2020-01-01T00:00:00Z\nmail:\n  smtp: smtp://127.0.0.1:{smtp_port}\n  from: \"kbot <kbot@example.org>\"\n  optout: [never@example.org]\nweb:\n  url: https://kbot.example.org\ngrace: 0\npoll_interval: 1s\n",
            d.path().join("state").display(),
            tree.display(),
            ib.url()
        ),
    )
    .unwrap();
    let bot = Bot { dir: d.path().to_path_buf(), cfg, results: results.clone() };
    let host = d.path().display().to_string();
    let no_host = |m: &str| {
        assert!(!m.contains(&host) && !m.contains("/root/") && !m.contains("/.local/share/kbot"), "a host path: {m}")
    };

    // v1: the full report, threaded, with the maintainer from get_maintainer.pl on Cc.
    revision(&ib, &results, 1, &["inotify_close_with_pending_perm", "fanotify_close_with_pending_perm"]);
    let log = bot.once();
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{log}");
    let v1 = &mails[0];
    let cc = header(v1, "Cc");
    assert!(
        cc.contains("nora@example.org") && cc.contains("notify-list@example.org"),
        "maintainers on Cc: {cc}\n{log}"
    );
    assert!(header(v1, "X-RcptTo").contains("nora@example.org"), "{v1}");
    assert!(v1.contains("tiny (https://git.example.org/tiny.git main)"), "the tree by name and url: {v1}");
    no_host(v1);
    let report_id = header(v1, "Message-ID");

    // Commands in replies to the report: each answered in thread, acted on once.
    let subj = "[PATCH 2/3] fsnotify: avoid SRCU round trip around permission event waits";
    reply(&ib, "Bob <bob@example.org>", "cmd-test@example.org", &report_id, subj, "Please retest.\n\n#kbot test\n");
    reply(&ib, "Bob <bob@example.org>", "cmd-quoted@example.org", &report_id, subj, "> #kbot test\nno command\n");
    reply(&ib, "Bob <bob@example.org>", "cmd-unknown@example.org", &report_id, subj, "#kbot frobnicate\n");
    reply(&ib, "Bob <bob@example.org>", "cmd-tree@example.org", &report_id, subj, "#kbot test mainline master\n");
    reply(&ib, "Bob <bob@example.org>", "cmd-next@example.org", &report_id, subj, "#kbot test tiny next\n");
    let log = bot.once();
    let mails = smtp.mails();
    let answer = |id: &str| -> Vec<String> {
        mails.iter().filter(|m| header(m, "In-Reply-To") == format!("<{id}>")).cloned().collect()
    };
    assert_eq!(answer("cmd-quoted@example.org").len(), 0, "a quoted line is no command");
    let a = answer("cmd-test@example.org");
    assert_eq!(a.len(), 1, "{log}\n{mails:?}");
    assert!(a[0].contains("Done: the series is queued for testing again"), "{}", a[0]);
    assert!(header(&a[0], "To").contains("bob@example.org"));
    assert!(answer("cmd-unknown@example.org")[0].contains("Refused: unknown command"));
    assert!(answer("cmd-tree@example.org")[0].contains("Refused: no tree named \"mainline\" is configured here"));
    assert!(answer("cmd-next@example.org")[0].contains("Done: the series is queued for testing again on tiny next"));
    let args = std::fs::read_to_string(results.join("args.log")).unwrap();
    assert_eq!(args.lines().count(), 3, "v1 and two reruns: {args}");
    assert!(args.lines().any(|l| l.contains("--base ")), "tested on the named base: {args}");
    // The reruns asked for their results: mailed (two more reports).
    let n = mails.len();
    assert_eq!(n, 1 + 4 + 2, "{log}");
    for m in &mails {
        no_host(m);
    }
    // Polled again (a restart): nothing acted on or answered twice.
    let log = bot.once();
    assert_eq!(smtp.mails().len(), n, "{log}");
    assert_eq!(std::fs::read_to_string(results.join("args.log")).unwrap().lines().count(), 3);

    // v2, the same bug: one short "still present" reply in v2's thread.
    revision(&ib, &results, 2, &["inotify_close_with_pending_perm", "fanotify_close_with_pending_perm"]);
    let log = bot.once();
    let mails = smtp.mails();
    assert_eq!(mails.len(), n + 1, "{log}");
    let still = mails.last().unwrap();
    assert!(header(still, "Subject").starts_with("Re: [PATCH v2 "), "{still}");
    assert!(
        still.contains("still present in v2")
            && still.contains("first reported on v1: https://kbot.example.org/runs/1"),
        "{still}"
    );
    // v3 fixed: one "no longer reproduces" note.
    revision(&ib, &results, 3, &[]);
    let log = bot.once();
    let mails = smtp.mails();
    assert_eq!(mails.len(), n + 2, "{log}");
    assert!(mails.last().unwrap().contains("no longer reproduces in v3"), "{}", mails.last().unwrap());

    // #kbot invalid on v1's report, #kbot stop from the maintainer.
    reply(&ib, "Alice Developer <alice@example.org>", "cmd-invalid@example.org", &report_id, subj, "#kbot invalid\n");
    reply(&ib, "Nora Notify <nora@example.org>", "cmd-stop@example.org", &report_id, subj, "#kbot stop\n");
    let log = bot.once();
    let mails = smtp.mails();
    assert_eq!(mails.len(), n + 4, "{log}");
    let inv = mails.iter().find(|m| header(m, "In-Reply-To") == "<cmd-invalid@example.org>").unwrap();
    assert!(inv.contains("Done: marked invalid"), "{inv}");
    let stop = mails.iter().find(|m| header(m, "In-Reply-To") == "<cmd-stop@example.org>").unwrap();
    assert!(!header(stop, "X-RcptTo").contains("nora@"), "{stop}");

    // v4: the invalid finding again and a new one: the full report names only the new one,
    // and Nora, who stopped kbot's mail, is on no header and no envelope.
    revision(&ib, &results, 4, &["inotify_close_with_pending_perm", "fanotify_new_bug"]);
    let log = bot.once();
    let mails = smtp.mails();
    assert_eq!(mails.len(), n + 5, "{log}");
    let v4 = mails.last().unwrap();
    assert!(v4.contains("fanotify_new_bug") && !v4.contains("inotify_close_with_pending_perm"), "{v4}");
    assert!(!v4.contains("nora@example.org"), "opted out: {v4}");
    assert!(header(v4, "Cc").contains("notify-list@example.org"), "{v4}");
    for m in &mails {
        no_host(m);
        assert!(!header(m, "X-RcptTo").contains("never@example.org"));
    }
}
