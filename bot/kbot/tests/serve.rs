//! `kbot serve` end to end against real parts on loopback: a real public-inbox (lore's URL
//! scheme and Atom feed), a real SMTP server that stores what it receives (Debian's
//! python3-aiosmtpd, Mailbox handler: a maildir), and real kernels built and booted by the
//! jobs (x86_64). Ignored by default (minutes of CPU); CI runs them.

mod common;

use common::{examples, free_port, git, split, Inbox, Smtp};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BAD_PATCH: &str = "d4beaa0b6dce675866cce3d0d2f856abb4e70f42.1795614032.git.alice@example.org";

/// A local stand-in for the GitHub REST API (GitHub itself cannot be reached from here): it
/// answers like GitHub for the three calls kbot makes and records every request. The first
/// commit status answers 502, so the retry is exercised.
const FAKE_GITHUB: &str = r#"
import http.server, json, sys
log = open(sys.argv[2], "a")
failed = []
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def record(self, body):
        log.write(json.dumps({"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"), "body": body}) + "\n")
        log.flush()
    def do_GET(self):
        self.record(None)
        if self.path.endswith("/pulls"):
            self.reply(200, [{"number": 5, "state": "open"}, {"number": 6, "state": "closed"}])
        else:
            self.reply(404, {"message": "Not Found"})
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"null")
        self.record(body)
        if "/statuses/" in self.path and not failed:
            failed.append(1)
            self.reply(502, {"message": "Server Error"})
        elif "/statuses/" in self.path:
            self.reply(201, {"id": 1, "state": body["state"], "context": "kbot"})
        elif "/comments" in self.path:
            self.reply(201, {"id": 2, "body": body["body"]})
        else:
            self.reply(404, {"message": "Not Found"})
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

struct FakeGithub {
    child: Child,
    log: PathBuf,
}

impl FakeGithub {
    fn start(dir: &Path, port: u16) -> FakeGithub {
        let log = dir.join("github-requests.jsonl");
        let child =
            Command::new("/usr/bin/python3").args(["-c", FAKE_GITHUB, &port.to_string()]).arg(&log).spawn().unwrap();
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(20), "fake GitHub did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        FakeGithub { child, log }
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headless Chromium (Debian's, flags from the machine notes): the page's DOM after load, and
/// optionally a screenshot.
fn chromium(url: &str, profile: &Path, screenshot: Option<&Path>) -> String {
    let mut c = Command::new("chromium");
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,2400",
    ]);
    c.arg(format!("--user-data-dir={}", profile.display()));
    match screenshot {
        Some(p) => c.arg(format!("--screenshot={}", p.display())),
        None => c.arg("--dump-dom"),
    };
    let o = c.arg(url).stderr(Stdio::null()).output().expect("chromium (apt-get install chromium)");
    assert!(o.status.success(), "chromium {url}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The first `href="..."` in `html` that starts with `prefix`.
fn link(html: &str, prefix: &str) -> Option<String> {
    let at = html.find(&format!("href=\"{prefix}"))?;
    Some(html[at + 6..].split('"').next()?.to_string())
}

fn config(dir: &Path, inbox: &str, smtp_port: u16) -> PathBuf {
    let p = dir.join("kbot.yaml");
    let yaml = format!(
        "state_dir: {state}\narches: [x86_64]\ntrees:\n  - name: default\ninboxes:\n  - name: fsdevel\n    lore: {inbox}\n    tree: default\n    since: 2020-01-01T00:00:00Z\nmail:\n  smtp: smtp://127.0.0.1:{smtp_port}\n  from: \"kbot <kbot@example.org>\"\nweb:\n  url: https://kbot.example.org\n  listen: 127.0.0.1:{web}\ngrace: 0\npoll_interval: 2s\n",
        state = dir.join("state").display(),
        web = free_port()
    );
    std::fs::write(&p, yaml).unwrap();
    p
}

fn kbot(args: &[&str], cfg: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kbot"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .env("KBOT_TEST_GH_TOKEN", "token-kbot-test")
        .output()
        .unwrap()
}

fn status(cfg: &Path) -> String {
    let o = kbot(&["status"], cfg);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn deliver_examples(ib: &Inbox) {
    for f in ["srcu-stall-regression.mbox", "clean-series.mbox"] {
        for m in split(&std::fs::read_to_string(examples().join(f)).unwrap()) {
            ib.deliver(&m);
        }
    }
}

/// The unfolded value of a header of a received mail.
fn header(mail: &str, name: &str) -> String {
    let head = mail.split("\n\n").next().unwrap().replace("\r\n", "\n").replace("\n ", " ").replace("\n\t", " ");
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&format!("{}: ", name.to_ascii_lowercase())))
        .map(|l| l[name.len() + 2..].to_string())
        .unwrap_or_default()
}

fn check_report(mail: &str) {
    assert_eq!(header(mail, "In-Reply-To"), format!("<{BAD_PATCH}>"), "{mail}");
    assert!(header(mail, "References").contains(BAD_PATCH), "{mail}");
    assert_eq!(
        header(mail, "Subject"),
        "Re: [PATCH 2/3] fsnotify: avoid SRCU round trip around permission event waits",
        "{mail}"
    );
    assert_eq!(header(mail, "To"), "\"Alice Developer\" <alice@example.org>");
    assert!(header(mail, "Cc").contains("fsdevel@example.org"), "the list is Cc'd: {mail}");
    // The envelope (aiosmtpd records it) reaches the author and the list.
    let rcpt = header(mail, "X-RcptTo");
    assert!(rcpt.contains("alice@example.org") && rcpt.contains("fsdevel@example.org"), "{rcpt}");
    assert!(mail.contains("Reported-by: kbot <kbot@example.org>"), "{mail}");
    assert!(mail.contains("| Closes: https://kbot.example.org/runs/"), "{mail}");
    // One group for the one root cause: patch 2, every test named once, one line of
    // evidence and one stack, then the run page.
    let body = mail.replace("\r\n", "\n");
    assert_eq!(body.matches("\n=== ").count(), 1, "{mail}");
    assert!(body.contains("\n=== [2/3] fsnotify: avoid SRCU round trip around permission event waits\non "), "{mail}");
    assert_eq!(body.matches("\n  fanotify_close_with_pending_perm (hang)").count(), 1, "{mail}");
    assert_eq!(body.matches("\n  inotify_close_with_pending_perm (hang)").count(), 1, "{mail}");
    assert_eq!(body.matches("\nevidence: ").count(), 1, "{mail}");
    assert_eq!(body.matches("\nstack:    ").count(), 1, "{mail}");
    assert!(!body.contains("sysrq-w"), "the dump is on the run page: {mail}");
    assert!(body.contains("Full results, logs and the bisection: https://kbot.example.org/runs/"), "{mail}");
    // Reproduced from the list, not from the service's files.
    assert!(
        mail.contains("kbot check --msgid cover.1795614032.git.alice@example.org --lore http://127.0.0.1:"),
        "{mail}"
    );
}

#[test]
#[ignore = "needs public-inbox, python3-aiosmtpd and real kernel builds"]
fn once_mails_one_threaded_report_retries_smtp_and_never_twice() {
    let d = tempfile::tempdir().unwrap();
    let ib = Inbox::start();
    deliver_examples(&ib);
    let smtp_port = free_port();
    let cfg = config(d.path(), &ib.url(), smtp_port);

    // SMTP down: both series are tested, the report waits in the outbox.
    let o = kbot(&["serve", "--once"], &cfg);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let st = status(&cfg);
    assert!(st.contains("queued: 0  running: 0  done: 2"), "{st}\n{err}");
    assert!(st.contains("regression") && st.contains("clean"), "{st}");
    assert!(st.contains("pending") && st.contains("Connection refused"), "the mail waits: {st}");
    assert!(err.contains("not sent yet"), "{err}");

    // SMTP up: exactly one mail, threaded under the first bad patch.
    let smtp = Smtp::start(&d.path().join("maildir"), smtp_port);
    let o = kbot(&["serve", "--once"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    check_report(&mails[0]);
    assert!(status(&cfg).contains("sent"));

    // Nothing new: nothing is tested or sent again.
    let o = kbot(&["serve", "--once"], &cfg);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(smtp.mails().len(), 1);
    assert!(status(&cfg).contains("done: 2"));

    // KCIDB: the runs as one v5 document, valid by kcidb-io's own schema.
    let o = kbot(&["export", "kcidb"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let mut py = Command::new("python3")
        .args(["-c", "import sys, json, kcidb_io\nd = json.load(sys.stdin)\nkcidb_io.schema.LATEST.validate(d)\nprint(len(d['checkouts']), len(d['builds']), len(d['issues']) > 0, len(d['incidents']) > 0)"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with kcidb-io (pip install kcidb-io)");
    std::io::Write::write_all(py.stdin.as_mut().unwrap(), &o.stdout).unwrap();
    drop(py.stdin.take());
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "kcidb-io rejected the export: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2 2 True True");

    // The dashboard in a real headless Chromium: the list, the run page, its links.
    let cfg_text = std::fs::read_to_string(&cfg).unwrap();
    let listen = cfg_text.lines().find_map(|l| l.trim().strip_prefix("listen: ")).unwrap().to_string();
    let mut web = Command::new(env!("CARGO_BIN_EXE_kbot"))
        .args(["web", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "kbot web did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let base = format!("http://{listen}");
    let profile = d.path().join("chromium");
    let list = chromium(&format!("{base}/"), &profile, None);
    assert!(list.contains("<h1>Runs</h1>") && list.contains("s-regression") && list.contains("s-clean"), "{list}");
    let row = list.split("<tr>").find(|r| r.contains("class=\"s-regression\"")).unwrap();
    let run = link(row, "/runs/").unwrap();
    let page = chromium(&format!("{base}{run}"), &profile, None);
    assert!(page.contains("regression</span></h1>") && page.contains("first bad: [2/3]"), "{page}");
    assert!(page.contains("Bisection") && page.contains("Timeline") && page.contains("Alice Developer"), "{page}");
    let console = link(&page, &format!("{run}/logs/x86_64/console-")).expect("a console log link");
    let log = chromium(&format!("{base}{console}"), &profile, None);
    assert!(log.contains("kbot-agent"), "the console log opens: {}", &log[..log.len().min(500)]);
    let mail = chromium(&format!("{base}{run}/mail"), &profile, None);
    assert!(mail.contains(&format!("In-Reply-To: &lt;{BAD_PATCH}&gt;")), "{mail}");
    let filtered = chromium(&format!("{base}/?status=clean"), &profile, None);
    assert!(filtered.contains("s-clean") && !filtered.contains("class=\"s-regression\""), "{filtered}");
    // A screenshot of the run page, kept as an artifact.
    let art = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/kbot-artifacts");
    std::fs::create_dir_all(&art).unwrap();
    let shot = art.join("dashboard-run.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&format!("{base}{run}"), &profile, Some(&shot));
    assert!(std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0) > 10_000, "no screenshot");
    let _ = web.kill();
    let _ = web.wait();
}

#[test]
#[ignore = "needs public-inbox, python3-aiosmtpd and real kernel builds"]
fn killed_mid_job_and_restarted_mails_exactly_once() {
    let d = tempfile::tempdir().unwrap();
    let ib = Inbox::start();
    deliver_examples(&ib);
    let smtp_port = free_port();
    let smtp = Smtp::start(&d.path().join("maildir"), smtp_port);
    let cfg = config(d.path(), &ib.url(), smtp_port);
    let mut svc = Command::new(env!("CARGO_BIN_EXE_kbot"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until a job is running, let it get into its build/boot, then SIGKILL the service.
    let t = Instant::now();
    loop {
        assert!(t.elapsed() < Duration::from_secs(120), "no job started");
        if d.path().join("state/queue.db").exists() && status(&cfg).contains("running: 1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(8));
    svc.kill().unwrap(); // SIGKILL
    svc.wait().unwrap();
    let st = status(&cfg);
    assert!(st.contains("running: 1"), "killed in the middle of a job: {st}");
    assert!(smtp.mails().is_empty());

    let o = kbot(&["serve", "--once"], &cfg);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("1 job(s) requeued"), "{err}");
    let st = status(&cfg);
    assert!(st.contains("done: 2") && st.contains("attempts 2"), "{st}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    check_report(&mails[0]);
    // And a second restart sends nothing more.
    let o = kbot(&["serve", "--once"], &cfg);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(smtp.mails().len(), 1);
}

/// `git am` of the patches of an example series (not its cover letter).
fn am(dir: &Path, example: &str) {
    for (i, m) in split(&std::fs::read_to_string(examples().join(example)).unwrap()).into_iter().enumerate() {
        if m.contains("\ndiff --git ") {
            let f = dir.with_extension(format!("{i}.patch"));
            std::fs::write(&f, format!("From kbot Mon Sep 17 00:00:00 2001\n{m}")).unwrap();
            git(dir, &["am", "-q", "--committer-date-is-author-date", f.to_str().unwrap()]);
        }
    }
}

#[test]
#[ignore = "needs python3-aiosmtpd and real kernel builds"]
fn ci_mode_tests_new_commits_of_a_branch_and_handles_a_force_push() {
    let d = tempfile::tempdir().unwrap();
    let linux = d.path().join("linux");
    // Shares the default tree's objects and checks out only fs/notify (what the patches
    // touch): a full checkout would cost 1.4 GB of disk for nothing; kbot makes its own.
    let st = Command::new("git")
        .args(["clone", "-q", "--shared", "--no-checkout"])
        .arg(common::kbot_home().join("trees/default"))
        .arg(&linux)
        .status()
        .unwrap();
    assert!(st.success());
    git(&linux, &["sparse-checkout", "set", "fs/notify"]);
    git(&linux, &["checkout", "-q", "-B", "master"]);
    let base = git(&linux, &["rev-parse", "HEAD"]);
    let smtp_port = free_port();
    let smtp = Smtp::start(&d.path().join("maildir"), smtp_port);
    let gh_port = free_port();
    let gh = FakeGithub::start(d.path(), gh_port);
    let cfg = d.path().join("kbot.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\narches: [x86_64]\ntrees:\n  - name: linux\n    path: {}\n    branches: [master]\n    github:\n      repo: kbot-test/linux\n      token_env: KBOT_TEST_GH_TOKEN\n      api: http://127.0.0.1:{gh_port}\nmail:\n  smtp: smtp://127.0.0.1:{smtp_port}\n  from: \"kbot <kbot@example.org>\"\nweb:\n  url: https://kbot.example.org\n",
            d.path().join("state").display(),
            linux.display()
        ),
    )
    .unwrap();

    // The first poll only records where the branch is.
    let o = kbot(&["serve", "--once"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("watching linux/master"));
    assert!(status(&cfg).contains("done: 0"));

    // Three commits land, the second reintroduces the SRCU stall.
    am(&linux, "srcu-stall-regression.mbox");
    let commits: Vec<String> =
        git(&linux, &["rev-list", "--reverse", &format!("{base}..HEAD")]).lines().map(String::from).collect();
    assert_eq!(commits.len(), 3);
    let o = kbot(&["serve", "--once"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let st = status(&cfg);
    assert!(
        st.contains("regression") && st.contains(&format!("linux/master {}..{}", &base[..12], &commits[2][..12])),
        "{st}"
    );
    let json = d.path().join("state/jobs/1/result.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // The branch's own commits are tested and named.
    assert_eq!(v["series"]["patches"][1]["commit"], commits[1].as_str());
    let first_bad = &v["arches"][0]["regressions"][0]["first_bad"];
    assert_eq!(first_bad["commit"], commits[1].as_str(), "{v:#}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        header(&mails[0], "Subject"),
        format!(
            "[kbot] linux/master: regression at {} (\"fsnotify: avoid SRCU round trip around permission event waits\")",
            &commits[1][..12]
        )
    );
    assert_eq!(header(&mails[0], "To"), "\"Alice Developer\" <alice@example.org>");
    assert!(header(&mails[0], "Cc").contains("kbot@localhost"), "the committer is Cc'd: {}", mails[0]);
    // GitHub: a failure status on the tip (after one 502, retried), one comment on the open PR.
    let reqs = gh.requests();
    let statuses: Vec<&serde_json::Value> =
        reqs.iter().filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap().contains("/statuses/")).collect();
    assert_eq!(statuses.len(), 2, "one 502, one retry: {reqs:?}");
    assert_eq!(statuses[1]["path"], format!("/repos/kbot-test/linux/statuses/{}", commits[2]));
    assert_eq!(statuses[1]["body"]["state"], "failure");
    assert_eq!(statuses[1]["body"]["context"], "kbot");
    assert_eq!(statuses[1]["body"]["target_url"], "https://kbot.example.org/runs/1");
    assert_eq!(statuses[1]["auth"], "Bearer token-kbot-test");
    let comments: Vec<&serde_json::Value> =
        reqs.iter().filter(|r| r["path"].as_str().unwrap().contains("/comments")).collect();
    assert_eq!(comments.len(), 1, "only the open PR: {reqs:?}");
    assert_eq!(comments[0]["path"], "/repos/kbot-test/linux/issues/5/comments");
    let body = comments[0]["body"]["body"].as_str().unwrap();
    assert!(
        body.contains("kbot found a regression")
            && body.contains(&commits[1][..12])
            && body.contains("Closes: https://kbot.example.org/runs/1"),
        "{body}"
    );
    // Nothing new: nothing posted twice.
    let o = kbot(&["serve", "--once"], &cfg);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(gh.requests().len(), reqs.len(), "posted twice");

    // A force-push replaces them with a clean series: tested from the merge base, no mail.
    git(&linux, &["reset", "-q", "--hard", &base]);
    am(&linux, "clean-series.mbox");
    let tip = git(&linux, &["rev-parse", "HEAD"]);
    let o = kbot(&["serve", "--once"], &cfg);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("(force-push)"), "{err}");
    let st = status(&cfg);
    assert!(st.contains(&format!("linux/master {}..{}", &base[..12], &tip[..12])) && st.contains("clean"), "{st}");
    assert_eq!(smtp.mails().len(), 1, "a clean range sends nothing");
    let reqs = gh.requests();
    let last = reqs.last().unwrap();
    assert_eq!(last["path"], format!("/repos/kbot-test/linux/statuses/{tip}"));
    assert_eq!(last["body"]["state"], "success");
    assert_eq!(
        reqs.iter().filter(|r| r["path"].as_str().unwrap().contains("/comments")).count(),
        1,
        "no comment for a clean range"
    );
}

#[test]
#[ignore = "needs public-inbox and real kernel builds"]
fn git_mirror_inbox_waits_for_the_whole_series_and_sigterm_drains() {
    let d = tempfile::tempdir().unwrap();
    let ib = Inbox::start();
    let mails = split(&std::fs::read_to_string(examples().join("clean-series.mbox")).unwrap());
    assert_eq!(mails.len(), 2, "two patches");
    // Patch 1 only, and a discussion that is no series.
    ib.deliver(&mails[0]);
    ib.deliver("From: Bob <bob@example.org>\nSubject: fanotify question\nMessage-ID: <q1@example.org>\nDate: Wed, 25 Nov 2026 10:00:00 +0000\n\nHow do permission events work?\n");
    let cfg = d.path().join("kbot.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\narches: [x86_64]\ninboxes:\n  - name: fsdevel\n    git: {}\n    tree: default\n    since: 2020-01-01T00:00:00Z\ngrace: 0\npoll_interval: 1s\n",
            d.path().join("state").display(),
            ib.dir.path().join("fsdevel").display()
        ),
    )
    .unwrap();
    let o = kbot(&["serve", "--once"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let st = status(&cfg);
    assert!(st.contains("queued: 0  running: 0  done: 0"), "an incomplete series waits: {st}");

    // Patch 2 arrives; the service picks the series up; SIGTERM while it runs drains it.
    ib.deliver(&mails[1]);
    let svc = Command::new(env!("CARGO_BIN_EXE_kbot"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !status(&cfg).contains("running: 1") {
        assert!(t.elapsed() < Duration::from_secs(120), "the series was not picked up: {}", status(&cfg));
        std::thread::sleep(Duration::from_millis(300));
    }
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(svc.id() as i32, libc::SIGTERM) };
    let out = svc.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("SIGTERM: draining"), "{err}");
    let st = status(&cfg);
    assert!(st.contains("queued: 0  running: 0  done: 1") && st.contains("clean"), "the running job finished: {st}");
    assert!(st.contains("[v1] fsnotify: document that group teardown waits for SRCU (2 patches)"), "{st}");
}
