//! Helpers shared by the integration tests (each test binary uses some of them).
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use kbot_testdata::git;

/// A one-commit tree under `dir` whose fs/notify/mark.c holds `content`.
pub fn tiny_tree(dir: &Path, content: &str) -> PathBuf {
    let t = dir.join("tree");
    std::fs::create_dir_all(t.join("fs/notify")).unwrap();
    std::fs::write(t.join("fs/notify/mark.c"), content).unwrap();
    git(&t, &["init", "-q", "-b", "main"]);
    git(&t, &["add", "-A"]);
    git(&t, &["commit", "-q", "-m", "base"]);
    t
}

/// kbot's data directory as the binary finds it (the tests share its trees and caches).
pub fn kbot_home() -> PathBuf {
    std::env::var_os("KBOT_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".local/share/kbot"))
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Splits an mbox into mails (mboxo `From ` lines after an empty line).
pub fn split(mbox: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut prev_blank = true;
    for l in mbox.lines() {
        if l.starts_with("From ") && prev_blank {
            out.push(String::new());
        } else if let Some(m) = out.last_mut() {
            m.push_str(l);
            m.push('\n');
        }
        prev_blank = l.is_empty();
    }
    out
}

pub struct Inbox {
    pub dir: tempfile::TempDir,
    pub httpd: Option<Child>,
    pub port: u16,
}

impl Inbox {
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn start() -> Inbox {
        Inbox::start_with(&[])
    }

    /// An inbox made with more `public-inbox-init` options (e.g. `-L basic`: no search).
    pub fn start_with(init: &[&str]) -> Inbox {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut ib = Inbox { dir, httpd: None, port };
        let url = format!("http://127.0.0.1:{port}/fsdevel");
        let st = Command::new("public-inbox-init")
            .args(["-V2"])
            .args(init)
            .arg("fsdevel")
            .arg(ib.dir.path().join("fsdevel"))
            .args([url.as_str(), "fsdevel@example.org"])
            .env("PI_CONFIG", ib.config())
            .status()
            .expect("public-inbox-init (apt-get install public-inbox)");
        assert!(st.success());
        let st = Command::new("git")
            .arg("config")
            .arg("-f")
            .arg(ib.config())
            .args(["publicinboxmda.spamcheck", "none"])
            .status()
            .unwrap();
        assert!(st.success());
        ib.httpd = Some(ib.serve());
        ib
    }

    pub fn serve(&self) -> Child {
        // One process (-W0): killing it closes the listening socket. With a worker, the
        // worker outlived a killed master for a moment and answered the readiness probe of a
        // restart whose new server could not bind (CI rehearsal: "error sending request").
        let mut child = Command::new("public-inbox-httpd")
            .arg("-W0")
            .arg("-l")
            .arg(format!("http://127.0.0.1:{}", self.port))
            .env("PI_CONFIG", self.config())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("public-inbox-httpd");
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(20), "public-inbox-httpd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(child.try_wait().unwrap().is_none(), "public-inbox-httpd exited: port {} taken?", self.port);
        child
    }

    pub fn deliver(&self, mail: &str) {
        let mail = if mail.lines().take_while(|l| !l.is_empty()).any(|l| l.starts_with("To:")) {
            mail.to_string()
        } else {
            format!("To: fsdevel@example.org\n{mail}")
        };
        let mut c = Command::new("public-inbox-mda")
            .arg("--no-precheck")
            .env("PI_CONFIG", self.config())
            .env("ORIGINAL_RECIPIENT", "fsdevel@example.org")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(c.stdin.as_mut().unwrap(), mail.as_bytes()).unwrap();
        drop(c.stdin.take());
        assert!(c.wait().unwrap().success(), "public-inbox-mda refused a mail");
    }

    /// Restarts public-inbox-httpd: it reopens the search index on its own only every few
    /// seconds, so a test that searches what it just delivered restarts it.
    pub fn restart(&mut self) {
        self.stop();
        self.httpd = Some(self.serve());
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/fsdevel/", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.httpd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free TCP port on loopback (the test servers each get their own).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A real SMTP sink on loopback: Debian's python3-aiosmtpd writing a maildir; stopped on drop.
pub struct Smtp {
    child: Child,
    dir: PathBuf,
}

impl Smtp {
    pub fn start(dir: &Path, port: u16) -> Smtp {
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3-aiosmtpd (apt-get install python3-aiosmtpd)");
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(20), "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Smtp { child, dir: dir.to_path_buf() }
    }

    /// The mails received, oldest first.
    pub fn mails(&self) -> Vec<String> {
        let mut v = Vec::new();
        for sub in ["new", "cur"] {
            for e in std::fs::read_dir(self.dir.join(sub)).into_iter().flatten().flatten() {
                let t = e.metadata().unwrap().modified().unwrap();
                v.push((t, std::fs::read_to_string(e.path()).unwrap()));
            }
        }
        v.sort_by_key(|x| x.0);
        v.into_iter().map(|x| x.1).collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
