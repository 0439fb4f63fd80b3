//! Report mail against a real SMTP server (Debian's python3-aiosmtpd) on 127.0.0.1:
//! STARTTLS and TLS with AUTH, a certificate from a private CA (`mail.ca_file`), the failures
//! that must not send (wrong password, no TLS, an untrusted certificate, a missing credential
//! variable), and the outbox when `kbot serve` is killed while the server holds the DATA phase.
//! No kernel is built.

use kbot_queue::{queue_path, JobKind, MailState, NewMail, Queue};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// An SMTP server in one Python process (aiosmtpd's Controller). Modes:
/// - `tls PORT OUT START_TLS_PORT TLS_PORT PLAIN_PORT CERTDIR`: STARTTLS required then AUTH
///   required (user `kbot`, password `s3cret pass`); the same behind TLS from the start; and a
///   plain server without STARTTLS (what a downgrade would reach).
/// - `hold OUT PORT`: plain, no AUTH; takes the whole message, then never answers DATA.
/// - `record OUT PORT`: plain, no AUTH, stores what it gets.
///
/// Every MAIL FROM, AUTH and stored mail is a line of `OUT/log.jsonl`; mails are `OUT/N.eml`.
const SERVER: &str = r#"
import asyncio, json, os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

mode, out = sys.argv[1], sys.argv[2]

def record(kind, **kw):
    with open(os.path.join(out, "log.jsonl"), "a") as f:
        f.write(json.dumps(dict(kind=kind, **kw)) + "\n")

class Handler:
    def __init__(self, name):
        self.name = name

    def who(self, server, session):
        tls = server.transport.get_extra_info("ssl_object") is not None
        user = session.login_data.decode() if session.authenticated and session.login_data else None
        return dict(server=self.name, tls=tls, user=user)

    async def handle_MAIL(self, server, session, envelope, address, options):
        record("mail-from", address=address, **self.who(server, session))
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if mode == "hold":
            record("data-held", **self.who(server, session))
            await asyncio.sleep(3600)
        n = len([f for f in os.listdir(out) if f.endswith(".eml")])
        with open(os.path.join(out, f"{n}.eml"), "wb") as f:
            f.write(envelope.original_content)
        record("stored", rcpt=envelope.rcpt_tos, mail_from=envelope.mail_from, **self.who(server, session))
        return "250 OK stored"

def authenticator(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == b"kbot" and data.password == b"s3cret pass"
    tls = server.transport.get_extra_info("ssl_object") is not None
    record("auth", mechanism=mechanism, ok=ok, tls=tls)
    return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

controllers = []
if mode == "tls":
    starttls_port, tls_port, plain_port, certs = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"))
    controllers.append(Controller(Handler("starttls"), hostname="127.0.0.1", port=starttls_port,
        tls_context=ctx, require_starttls=True, authenticator=authenticator,
        auth_required=True, auth_require_tls=True))
    # TLS from the start: aiosmtpd's auth_require_tls only knows STARTTLS; the transport is TLS.
    controllers.append(Controller(Handler("tls"), hostname="127.0.0.1", port=tls_port,
        ssl_context=ctx, authenticator=authenticator, auth_required=True, auth_require_tls=False))
    controllers.append(Controller(Handler("plain"), hostname="127.0.0.1", port=plain_port,
        authenticator=authenticator, auth_required=True, auth_require_tls=False))
else:
    controllers.append(Controller(Handler(mode), hostname="127.0.0.1", port=int(sys.argv[3])))
for c in controllers:
    c.start()
open(os.path.join(out, "ready"), "w").close()
while True:
    time.sleep(3600)
"#;

struct Server {
    child: Child,
    out: PathBuf,
}

impl Server {
    fn start(dir: &Path, args: &[String]) -> Server {
        let out = dir.join(format!("smtp-{}-{}", args[0], free_port()));
        std::fs::create_dir_all(&out).unwrap();
        let script = dir.join("smtp_server.py");
        std::fs::write(&script, SERVER).unwrap();
        let child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(&args[0])
            .arg(&out)
            .args(&args[1..])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(out.join("stderr")).unwrap())
            .spawn()
            .expect("/usr/bin/python3 with aiosmtpd (apt-get install python3-aiosmtpd)");
        let mut s = Server { child, out };
        let t = Instant::now();
        while !s.out.join("ready").exists() {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("SMTP server exited ({st}): {}", std::fs::read_to_string(s.out.join("stderr")).unwrap());
            }
            assert!(t.elapsed() < Duration::from_secs(30), "SMTP server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// The server's log lines (JSON objects).
    fn log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.out.join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn stored(&self) -> Vec<serde_json::Value> {
        self.log().into_iter().filter(|l| l["kind"] == "stored").collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `openssl` in `dir` with the words of `args`.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl").current_dir(dir).args(args.split(' ')).output().expect("openssl");
    assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A private CA (`ca.pem`) and a server certificate it signed for 127.0.0.1 and localhost
/// (`server.pem`, `server.key`). A second, unrelated CA (`other-ca.pem`).
fn certificates(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &format!(
                "req -x509 -newkey rsa:2048 -nodes -keyout {ca}.key -out {ca}.pem -subj /CN=kbot-test-{ca} -days 1"
            ),
        );
    }
    openssl(dir, "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost");
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile server.ext",
    );
}

const RAW: &[u8] = b"From: kbot <kbot@example.org>\r\nTo: alice@example.org\r\nSubject: Re: [PATCH 2/3] x\r\n\
Message-ID: <kbot-smtp-test@example.org>\r\n\r\nhello\r\n";

fn creds(password: &str) -> Option<(String, String)> {
    Some(("kbot".to_string(), password.to_string()))
}

fn send(url: &str, creds: Option<(String, String)>, ca: Option<&[u8]>) -> Result<(), kbot_mail::SendError> {
    let smtp = kbot_mail::Smtp { url, creds, ca_pem: ca };
    kbot_mail::send(&smtp, "kbot@example.org", &["alice@example.org".to_string()], RAW)
}

#[test]
fn smtp_auth_over_tls_sends_only_with_the_right_password_and_a_trusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let other_ca = std::fs::read(dir.path().join("other-ca.pem")).unwrap();
    let (p_starttls, p_tls, p_plain) = (free_port(), free_port(), free_port());
    let srv = Server::start(
        dir.path(),
        &[
            "tls".into(),
            p_starttls.to_string(),
            p_tls.to_string(),
            p_plain.to_string(),
            dir.path().display().to_string(),
        ],
    );
    let starttls = format!("smtp+starttls://127.0.0.1:{p_starttls}");
    let tls = format!("smtps://127.0.0.1:{p_tls}");
    let auths = || srv.log().iter().filter(|l| l["kind"] == "auth").count();

    // STARTTLS, the private CA trusted, the right password: the mail arrives, over TLS, logged
    // in, byte for byte.
    send(&starttls, creds("s3cret pass"), Some(&ca)).unwrap();
    let stored = srv.stored();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["server"], "starttls");
    assert_eq!(stored[0]["tls"], true);
    assert_eq!(stored[0]["user"], "kbot");
    assert_eq!(stored[0]["rcpt"], serde_json::json!(["alice@example.org"]));
    // (lettre ends DATA with CRLF "." CRLF after the message's own last CRLF.)
    let got = String::from_utf8(std::fs::read(srv.out.join("0.eml")).unwrap()).unwrap();
    assert_eq!(got.strip_suffix("\r\n"), Some(std::str::from_utf8(RAW).unwrap()));

    // TLS from the start: the same.
    send(&tls, creds("s3cret pass"), Some(&ca)).unwrap();
    let stored = srv.stored();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(
        (&stored[1]["server"], &stored[1]["tls"], &stored[1]["user"]),
        (&"tls".into(), &true.into(), &"kbot".into())
    );
    let good_auths = auths();
    assert_eq!(good_auths, 2);

    // A wrong password: permanent, with the server's own reason; nothing sent.
    for url in [&starttls, &tls] {
        let e = send(url, creds("wrong"), Some(&ca)).unwrap_err();
        assert!(!e.transient, "{}", e.message);
        assert!(e.message.contains("535") && e.message.contains("Authentication credentials invalid"), "{}", e.message);
    }
    assert_eq!(srv.log().iter().filter(|l| l["kind"] == "auth" && l["ok"] == false).count(), 2);

    // No credentials where the server wants them: permanent, nothing sent.
    let e = send(&starttls, None, Some(&ca)).unwrap_err();
    assert!(!e.transient && e.message.contains("530"), "{}", e.message);
    assert!(e.message.contains("Authentication required"), "{}", e.message);

    // A certificate kbot was not told to trust (the built-in roots, or another CA): the TLS
    // handshake fails before AUTH, so the password never reaches that server.
    let before = auths();
    for ca in [None, Some(&other_ca[..])] {
        for url in [&starttls, &tls] {
            let e = send(url, creds("s3cret pass"), ca).unwrap_err();
            assert!(e.message.contains("UnknownIssuer"), "{}", e.message);
        }
    }
    assert_eq!(auths(), before, "a password went to a server whose certificate was not trusted");

    // Plain SMTP to the STARTTLS-only server: it offers no AUTH before TLS; kbot does not send
    // unauthenticated. smtp+starttls:// to a server without STARTTLS: no downgrade to plain.
    let e = send(&format!("smtp://127.0.0.1:{p_starttls}"), creds("s3cret pass"), None).unwrap_err();
    assert!(e.message.contains("authentication mechanism"), "{}", e.message);
    let e = send(&format!("smtp+starttls://127.0.0.1:{p_plain}"), creds("s3cret pass"), Some(&ca)).unwrap_err();
    assert!(e.message.to_ascii_lowercase().contains("starttls"), "{}", e.message);
    assert_eq!(auths(), before, "a password crossed a connection without TLS");
    assert!(srv.log().iter().filter(|l| l["kind"] == "mail-from").all(|l| l["tls"] == true && l["user"] == "kbot"));
    assert_eq!(srv.stored().len(), 2, "{:?}", srv.log());
}

fn kbot(args: &[&str], home: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kbot"));
    c.args(args).env("KBOT_HOME", home).env_remove("KBOT_TEST_SMTP_PASSWORD");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn write_config(dir: &Path, name: &str, mail: &str) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    // The inbox is a mirror that does not exist: polling it fails at once (logged), and
    // nothing is ever queued from it.
    write!(
        f,
        "state_dir: {}\ninboxes:\n  - name: nowhere\n    git: {}\n    tree: default\nmail:\n{mail}",
        dir.join("state").display(),
        dir.join("no-such-mirror").display()
    )
    .unwrap();
    p
}

#[test]
fn a_named_credential_variable_that_is_not_set_stops_serve_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        "k.yaml",
        &format!(
            "  smtp: smtp://127.0.0.1:{port}\n  from: kbot@example.org\n  user_env: KBOT_TEST_SMTP_USER\n  \
             password_env: KBOT_TEST_SMTP_PASSWORD\n"
        ),
    );
    let cfg_s = cfg.to_str().unwrap();
    let out = kbot(&["serve", "--once", "--config", cfg_s], &home, &[("KBOT_TEST_SMTP_USER", "kbot")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err,
        "kbot: error: config: mail.password_env: the environment variable KBOT_TEST_SMTP_PASSWORD is not set \
         (kbot serve reads the SMTP password from it)\n"
    );
    assert!(!dir.path().join("state").exists(), "the service started before refusing");
    // A CA file that is not there: the same, naming the file.
    let cfg = write_config(
        dir.path(),
        "k2.yaml",
        &format!(
            "  smtp: smtps://127.0.0.1:{port}\n  from: kbot@example.org\n  ca_file: {}\n",
            dir.path().join("no-ca.pem").display()
        ),
    );
    let out = kbot(&["serve", "--once", "--config", cfg.to_str().unwrap()], &home, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with(&format!("kbot: error: config: mail.ca_file: {}: ", dir.path().join("no-ca.pem").display()))
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(!dir.path().join("state").exists(), "the service started before refusing");
}

fn mails(state: &Path) -> Vec<kbot_queue::Mail> {
    Queue::open(&queue_path(state)).unwrap().mails().unwrap()
}

/// `kbot serve` SIGKILLed while the server holds the DATA phase (the whole message sent, no
/// answer yet: it may or may not have been accepted). On restart the mail is `uncertain`, is
/// not sent again, and `kbot status` lists it.
#[test]
fn killed_during_smtp_data_the_mail_is_uncertain_and_never_resent() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let state = dir.path().join("state");
    {
        let mut q = Queue::open(&queue_path(&state)).unwrap();
        let id = q.enqueue("series:x:a@b:v1", JobKind::Series, "x", "[PATCH 0/3] x", "-", "default").unwrap().unwrap();
        q.claim().unwrap().unwrap();
        let rcpt = ["alice@example.org".to_string()];
        let mail =
            NewMail { message_id: "<kbot-smtp-test@example.org>", sender: "kbot@example.org", rcpt: &rcpt, raw: RAW };
        assert!(q.finish(id, "regression", None, None, Some(mail)).unwrap());
    }
    let hold_port = free_port();
    let hold = Server::start(dir.path(), &["hold".into(), hold_port.to_string()]);
    let cfg = write_config(
        dir.path(),
        "hold.yaml",
        &format!("  smtp: smtp://127.0.0.1:{hold_port}\n  from: kbot@example.org\n"),
    );
    let mut serve = Command::new(env!("CARGO_BIN_EXE_kbot"))
        .args(["serve", "--once", "--config", cfg.to_str().unwrap()])
        .env("KBOT_HOME", &home)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("serve1.err")).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !hold.log().iter().any(|l| l["kind"] == "data-held") {
        if let Ok(Some(st)) = serve.try_wait() {
            panic!("kbot serve ended ({st}): {}", std::fs::read_to_string(dir.path().join("serve1.err")).unwrap());
        }
        assert!(t.elapsed() < Duration::from_secs(60), "kbot serve never reached DATA: {:?}", hold.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Mid-DATA: the outbox says so.
    let m = mails(&state);
    assert_eq!((m.len(), m[0].state, m[0].attempts), (1, MailState::Sending, 1), "{m:?}");
    // SAFETY: a pid this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(serve.id() as i32, libc::SIGKILL) }, 0);
    let st = serve.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    drop(hold);

    // Restarted with a server that takes everything: nothing reaches it.
    let rec_port = free_port();
    let rec = Server::start(dir.path(), &["record".into(), rec_port.to_string()]);
    let cfg = write_config(
        dir.path(),
        "record.yaml",
        &format!("  smtp: smtp://127.0.0.1:{rec_port}\n  from: kbot@example.org\n"),
    );
    let cfg_s = cfg.to_str().unwrap();
    for round in 0..2 {
        let out = kbot(&["serve", "--once", "--config", cfg_s], &home, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert_eq!(
            err.contains("recovered: 0 job(s) requeued, 1 mail(s) uncertain (not resent)"),
            round == 0,
            "round {round}: {err}"
        );
    }
    assert!(rec.log().is_empty(), "the mail was sent again: {:?}", rec.log());
    let m = mails(&state);
    assert_eq!((m.len(), m[0].state, m[0].attempts), (1, MailState::Uncertain, 1), "{m:?}");
    assert_eq!(m[0].error.as_deref(), Some("the service stopped during SMTP; not resent (it may have arrived)"));
    let out = kbot(&["status", "--config", cfg_s], &home, &[]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = status.lines().find(|l| l.starts_with("mail ")).unwrap_or_else(|| panic!("{status}"));
    assert!(
        line.contains(" uncertain ")
            && line.contains("to alice@example.org")
            && line.ends_with("<kbot-smtp-test@example.org>"),
        "{status}"
    );
    assert!(status.contains("not resent (it may have arrived)"), "{status}");
}
