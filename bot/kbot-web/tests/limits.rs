//! The dashboard under hostile clients, served the way `kbot web` serves it
//! (`kbot_web::spawn` with the default limits) in a child process of its own: this test
//! binary run again with `KBOT_WEB_TEST_SERVE=<state dir>` (the `child_server` test), so the
//! memory measured is the server's alone (`/proc/<pid>/status`).

use kbot_queue::{JobKind, Queue};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "KBOT_WEB_TEST_SERVE";
const MB: usize = 1024 * 1024;

/// Not a test of its own: the server process the other tests start.
#[test]
fn child_server() {
    let Ok(state) = std::env::var(CHILD_ENV) else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let h = kbot_web::spawn(addr, kbot_web::Site { state: state.into() }).unwrap();
    println!("listening {addr}");
    std::io::stdout().flush().unwrap();
    h.join().unwrap();
}

/// The server process; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    _state: tempfile::TempDir,
}

impl Server {
    fn start(state: tempfile::TempDir) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child_server", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, state.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut addr = None;
        for l in out.lines() {
            // After libtest's "test child_server ... " on the same line.
            if let Some((_, a)) = l.unwrap().split_once("listening ") {
                addr = Some(a.trim().parse().unwrap());
                break;
            }
        }
        let addr = addr.expect("the server says where it listens");
        Server { child, addr, _state: state }
    }

    /// (VmRSS, VmHWM) of the server in MB.
    fn memory(&self) -> (f64, f64) {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb = |k: &str| {
            let l = s.lines().find(|l| l.starts_with(k)).unwrap();
            l[k.len()..].trim().trim_end_matches("kB").trim().parse::<f64>().unwrap() / 1024.0
        };
        (kb("VmRSS:"), kb("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A state directory with one finished job (id 1, tree `linux`) whose result names a
/// console log of `log_mb` MB under the state directory and a tree path on this host; the
/// subject carries bidi characters, the report raw HTML.
fn state(log_mb: usize) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("runs/1-1/x86_64/console.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
    let line = format!("[{:>12}] {:<50}\n", "0.000000", "console line");
    let mut n = 0;
    while n < log_mb * MB {
        let l = &line.as_bytes()[..line.len().min(log_mb * MB - n)];
        f.write_all(l).unwrap();
        n += l.len();
    }
    f.flush().unwrap();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/../../analyzers/kbot-testdata/testdata/recorded-run-55f6523.json");
    let mut r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(src).unwrap()).unwrap();
    r["environment"]["tree"] = format!("{}/trees/linux (Linux 6.12)", d.path().display()).into();
    r["series"]["subject"] = "[PATCH] fix \u{2066}evil\u{2069} \u{202E}gnp.exe".into();
    for a in r["arches"].as_array_mut().unwrap() {
        for run in ["base", "tip"] {
            a[run]["console_log"] = "".into();
            a[run]["build_log"] = "".into();
        }
    }
    r["arches"][0]["arch"] = "x86_64".into();
    r["arches"][0]["base"]["console_log"] = log.display().to_string().into();
    let mut q = Queue::open(&kbot_queue::queue_path(d.path())).unwrap();
    q.enqueue("k1", JobKind::Series, "fsdevel", "[PATCH] title \u{202E}fdp.exe", "/in.mbox", "linux").unwrap();
    let job = q.claim().unwrap().unwrap();
    let dir = job.dir(d.path());
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.result_json(), serde_json::to_string(&r).unwrap()).unwrap();
    std::fs::write(dir.report_md(), "# report\n<script>alert(1)</script>\n").unwrap();
    std::fs::write(dir.log(), "progress\n").unwrap();
    let result = dir.result_json().display().to_string();
    q.finish(job.id, "regression", Some(&result), None, None).unwrap();
    d
}

/// One request (HTTP/1.0: the body ends with the connection): status line, headers
/// (lowercase names), body.
fn get(addr: SocketAddr, path: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8(all[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string())).collect();
    (status, headers, all[end + 4..].to_vec())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Whether the server closed `s` (or answered and closed), waiting at most `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // an error response before the close
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slowloris_and_idle_connections_are_cut_off_while_others_are_served() {
    let server = Server::start(state(1));
    let addr = server.addr;
    let header_read = kbot_web::Limits::default().header_read;
    let t0 = Instant::now();
    // One header line a second, never the blank line that ends the head.
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n").unwrap();
        let mut lines = 0;
        while t0.elapsed() < header_read * 3 {
            if s.write_all(format!("X-Slow-{lines}: {}\r\n", "a".repeat(20)).as_bytes()).is_err()
                || closed_within(&mut s, Duration::from_secs(1))
            {
                return (Some(t0.elapsed()), lines);
            }
            lines += 1;
        }
        (None, lines)
    });
    // Connected, silent.
    let idle = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        closed_within(&mut s, header_read * 3).then(|| t0.elapsed())
    });
    // Meanwhile a normal client is served, again and again.
    let mut served = Vec::new();
    while t0.elapsed() < header_read + Duration::from_secs(1) {
        let t = Instant::now();
        let (status, h, body) = get(addr, "/");
        assert!(status.contains(" 200 "), "{status}");
        assert!(String::from_utf8_lossy(&body).contains("Runs"));
        assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
        served.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(1500));
    }
    let (slow_cut, lines) = slow.join().unwrap();
    let idle_cut = idle.join().unwrap();
    let worst = served.iter().max().unwrap();
    println!(
        "header_read timeout {header_read:?}: slowloris ({lines} header lines sent, one a second) cut off after {slow_cut:?}, \
         idle connection after {idle_cut:?}; {} normal requests meanwhile, slowest {worst:?}",
        served.len()
    );
    let limit = header_read + Duration::from_secs(3);
    let slow_cut = slow_cut.expect("the slowloris connection was never closed");
    assert!(slow_cut <= limit, "slowloris held its connection {slow_cut:?}");
    assert!(slow_cut + Duration::from_secs(2) >= header_read, "cut off too early ({slow_cut:?}): not the timeout?");
    let idle_cut = idle_cut.expect("the idle connection was never closed");
    assert!(idle_cut <= limit, "an idle connection stayed {idle_cut:?}");
    assert!(served.len() >= 5 && *worst < Duration::from_secs(2), "normal clients waited: {served:?}");
}

#[test]
fn slow_readers_of_a_64_mb_log_keep_the_server_small() {
    const LOG_MB: usize = 64;
    const READERS: usize = 32;
    const LIMIT_MB: f64 = 200.0;
    let server = Server::start(state(LOG_MB));
    let addr = server.addr;
    let path = "/runs/1/logs/x86_64/console.log";
    // The whole file, once, fast: streaming loses nothing.
    let t = Instant::now();
    let (status, h, body) = get(addr, path);
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(header(&h, "content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(body.len(), LOG_MB * MB, "the whole log");
    assert!(body.starts_with(b"[    0.000000] console line"));
    let full = t.elapsed();
    let (base_rss, _) = server.memory();
    // 32 readers, one more every 100 ms, each reading 4 KB a second.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    let mut peak: f64 = 0.0;
    let check = |peak: &mut f64| {
        let (rss, _) = server.memory();
        *peak = peak.max(rss);
        assert!(rss < LIMIT_MB, "the server holds {rss:.1} MB with slow readers (limit {LIMIT_MB} MB)");
    };
    for _ in 0..READERS {
        let (stop, ok) = (stop.clone(), ok.clone());
        readers.push(std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
            let mut b = [0u8; 4096];
            let n = s.read(&mut b).unwrap();
            if b[..n].starts_with(b"HTTP/1.1 200 ") {
                ok.fetch_add(1, Ordering::SeqCst);
            }
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(1));
                if s.read(&mut b).unwrap_or(0) == 0 {
                    break;
                }
            }
        }));
        std::thread::sleep(Duration::from_millis(100));
        check(&mut peak);
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(200));
        check(&mut peak);
    }
    let (rss, hwm) = server.memory();
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    println!(
        "{LOG_MB} MB log: one full read {full:?}; {READERS} slow readers (4 KB/s each): server VmRSS {base_rss:.1} MB before, \
         peak sampled {peak:.1} MB, {rss:.1} MB at the end, VmHWM (peak ever, includes the full read) {hwm:.1} MB; limit {LIMIT_MB} MB"
    );
    assert_eq!(ok.load(Ordering::SeqCst), READERS, "every slow reader got 200");
    assert!(hwm < LIMIT_MB, "peak resident {hwm:.1} MB");
}

#[test]
fn responses_carry_safe_headers_show_hidden_characters_and_no_host_paths() {
    let st = state(1);
    let dir = st.path().display().to_string();
    let server = Server::start(st);
    for path in ["/", "/index.json", "/runs/1", "/runs/1.json", "/runs/1/log", "/runs/1/report.md", "/runs/9", "/nope"]
    {
        let (status, h, body) = get(server.addr, path);
        assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"), "{path}: {status}");
        let csp = header(&h, "content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(csp.contains("default-src 'none'") && !csp.contains("script"), "{path}: {csp}");
        let body = String::from_utf8_lossy(&body);
        if header(&h, "content-type").is_some_and(|t| t.starts_with("text/html")) {
            for c in ['\u{202E}', '\u{2066}', '\u{2069}'] {
                assert!(!body.contains(c), "{path}: {c:?}");
            }
        }
        assert!(!body.contains(&dir), "{path} shows a host path: {body}");
    }
    let (_, h, body) = get(server.addr, "/runs/1/report.md");
    assert_eq!(header(&h, "content-type"), Some("text/plain; charset=utf-8"));
    assert!(String::from_utf8_lossy(&body).contains("<script>"), "served as it is, as text");
    let (_, _, page) = get(server.addr, "/runs/1");
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("fix &lt;U+2066&gt;evil&lt;U+2069&gt; &lt;U+202E&gt;gnp.exe"), "{page}");
    assert!(page.contains("title &lt;U+202E&gt;fdp.exe"), "{page}");
    let (_, _, list) = get(server.addr, "/");
    assert!(String::from_utf8(list).unwrap().contains("title &lt;U+202E&gt;fdp.exe"));
    let (_, _, j) = get(server.addr, "/runs/1.json");
    let j: serde_json::Value = serde_json::from_slice(&j).unwrap();
    assert_eq!(j["result"]["environment"]["tree"], "linux (Linux 6.12)");
    assert_eq!(j["result"]["arches"][0]["base"]["console_log"], "/runs/1/logs/x86_64/console.log");
    assert_eq!(j["job"]["title"], "[PATCH] title \u{202E}fdp.exe", "JSON is the data as it is");
}

/// A server in this process with `limits`, on a free port.
fn serve_here(state: &std::path::Path, limits: kbot_web::Limits) -> SocketAddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    kbot_web::spawn_with(addr, kbot_web::Site { state: state.into() }, limits).unwrap();
    addr
}

#[test]
fn connections_over_the_cap_get_503_and_a_stalled_reader_is_dropped() {
    let st = state(32);
    let limits =
        kbot_web::Limits { max_connections: 2, write_stall: Duration::from_secs(1), ..kbot_web::Limits::default() };
    let addr = serve_here(st.path(), limits);
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, h, body) = get(addr, "/");
    assert!(status.contains(" 503 "), "a third connection: {status}");
    assert_eq!(body, b"too many connections\n", "the whole body, as its content-length says");
    assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, _) = get(addr, "/");
    assert!(status.contains(" 200 "), "once the idle ones are gone: {status}");
    // Asks for a 32 MB log and reads nothing for 4 s: more than the socket buffers hold.
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /runs/1/logs/x86_64/console.log HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut got, mut b) = (0usize, vec![0u8; 64 * 1024]);
    let t = Instant::now();
    let end = loop {
        match s.read(&mut b) {
            Ok(0) => break "closed",
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
            Err(e) => panic!("{e} after {got} bytes"),
        }
    };
    println!(
        "a reader stalled 4 s (write_stall 1 s) got {got} of {} bytes, then the connection was {end} ({:?})",
        32 * MB,
        t.elapsed()
    );
    assert!(got < 32 * MB, "the stalled reader was served to the end");
}
