//! The dashboard of `kbot serve`: the list of runs (series and tree ranges; newest first,
//! status per arch, filters), one page per run (series, patches with trailers and checks,
//! base/tip results per arch, regressions with the first bad patch and evidence, bisection
//! steps, the timeline of stages), the logs, the report mail as sent and the JSON. HTML is
//! rendered on the server from `templates/` and needs no JavaScript; a running job's page
//! refreshes itself and shows its progress. Every page is also served as JSON (`.json`).
//! Links are stable: `/runs/<id>` is the job's id in the queue.
//!
//! Slow or idle clients cannot pin it ([`Limits`], module `server`): header read, request and
//! write-stall timeouts, a connection cap, a cap on requests answered at once, and files
//! streamed in small chunks. Pages show control and format characters (bidi overrides, ...)
//! as visible stand-ins (module `visible`); the JSON names trees by their configured name,
//! never by their path on this host.

mod server;
pub mod visible;

pub use server::{serve, Limits, CSP};

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kbot_queue::{Job, JobDir, JobState, Queue, QueueError};
use kbot_report::CheckResult;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub struct Site {
    /// The service's state directory (queue.db, jobs/).
    pub state: PathBuf,
}

/// The dashboard's templates, parsed once; every value they print is made visible
/// ([`visible::visible`]) before it is escaped.
fn env() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = kbot_templates::web_environment().expect("the dashboard's templates parse");
        env.set_formatter(|out, state, value| {
            if let Some(s) = value.as_str() {
                if let std::borrow::Cow::Owned(shown) = visible::visible(s) {
                    let v = if value.is_safe() {
                        minijinja::Value::from_safe_string(shown)
                    } else {
                        minijinja::Value::from(shown)
                    };
                    return minijinja::escape_formatter(out, state, &v);
                }
            }
            minijinja::escape_formatter(out, state, value)
        });
        env
    })
}

/// The status shown for a job: its result when done, else its state.
pub fn shown(job: &Job) -> String {
    job.status.clone().unwrap_or_else(|| job.state.to_string())
}

/// Per arch at a glance: error, regression or clean.
pub fn arch_status(r: &CheckResult) -> Vec<Value> {
    r.arches
        .iter()
        .map(|a| {
            let s = if a.error.is_some() {
                "error"
            } else if !a.regressions.is_empty() {
                "regression"
            } else {
                "clean"
            };
            json!({"arch": a.arch, "status": s})
        })
        .collect()
}

fn time(t: i64) -> String {
    let [y, m, d, h, mi, se] = kbot_report::utc(t);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{se:02} UTC")
}

#[derive(Deserialize, Default, Debug)]
pub struct Filter {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub source: String,
}

/// Host paths a result may hold and what the dashboard says instead: the tree's path (from
/// `environment.tree`, "PATH (SUBJECT)") becomes its configured name, each log's path its
/// dashboard URL, the state directory `$state_dir`.
struct Scrub(Vec<(String, String)>);

impl Scrub {
    fn new(site: &Site, job: &Job, r: Option<&CheckResult>) -> Scrub {
        let mut pairs = Vec::new();
        if let Some(r) = r {
            let t = &r.environment.tree;
            let path = t.split_once(" (").map_or(t.as_str(), |(p, _)| p);
            if path.starts_with('/') && path.len() > 1 {
                pairs.push((path.to_string(), job.tree.clone()));
            }
            for a in &r.arches {
                for (name, p) in arch_logs(a) {
                    pairs.push((p, format!("/runs/{}/logs/{}/{name}", job.id, a.arch)));
                }
            }
        }
        let state = site.state.display().to_string();
        if state.len() > 1 {
            pairs.push((state, "$state_dir".into()));
        }
        // Longest first: a log path holds the state directory, say.
        pairs.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Scrub(pairs)
    }

    fn str(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (from, to) in &self.0 {
            if s.contains(from.as_str()) {
                s = s.replace(from.as_str(), to);
            }
        }
        s
    }

    fn value(&self, v: &mut Value) {
        match v {
            Value::String(s) => *s = self.str(s),
            Value::Array(a) => a.iter_mut().for_each(|x| self.value(x)),
            Value::Object(o) => o.values_mut().for_each(|x| self.value(x)),
            _ => {}
        }
    }
}

/// A result as the dashboard shows it: without host paths ([`Scrub`]).
fn public_result(site: &Site, job: &Job, r: &CheckResult) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    Scrub::new(site, job, Some(r)).value(&mut v);
    v
}

fn job_json(site: &Site, j: &Job, r: Option<&CheckResult>) -> Value {
    let error = j.error.as_deref().map(|e| Scrub::new(site, j, r).str(e));
    json!({
        "id": j.id, "key": j.key, "kind": j.kind.as_str(), "source": j.source, "tree": j.tree, "title": j.title,
        "state": j.state.as_str(), "status": j.status, "shown": shown(j), "attempts": j.attempts, "error": error,
        "created": j.created, "updated": time(j.updated),
        "arches": r.map(arch_status).unwrap_or_default(),
    })
}

/// The run list as data (newest first, filtered).
pub fn index_data(q: &Queue, site: &Site, f: &Filter) -> Result<Value, QueueError> {
    let jobs = q.jobs(500)?;
    let statuses: BTreeSet<String> = jobs.iter().map(shown).collect();
    let sources: BTreeSet<String> = jobs.iter().flat_map(|j| [j.source.clone(), j.tree.clone()]).collect();
    let runs: Vec<Value> = jobs
        .iter()
        .filter(|j| f.status.is_empty() || shown(j) == f.status)
        .filter(|j| f.source.is_empty() || j.source == f.source || j.tree == f.source)
        .map(|j| job_json(site, j, j.load_result(&site.state).as_ref()))
        .collect();
    Ok(
        json!({"runs": runs, "statuses": statuses, "sources": sources, "filter": {"status": f.status, "source": f.source}}),
    )
}

fn file_name(p: &str) -> Option<String> {
    std::path::Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned())
}

/// The logs of an arch a run page links to: (name, path) from the result.
fn arch_logs(a: &kbot_report::ArchResult) -> Vec<(String, String)> {
    [&a.base.build_log, &a.base.console_log, &a.tip.build_log, &a.tip.console_log]
        .into_iter()
        .filter(|p| !p.is_empty())
        .filter_map(|p| file_name(p).map(|n| (n, p.clone())))
        .collect()
}

/// One run as data: the job, its result with per-arch test rows, mails, live progress.
pub fn run_data(q: &Queue, site: &Site, id: i64) -> Result<Option<Value>, QueueError> {
    let Some(job) = q.job(id)? else { return Ok(None) };
    let r = job.load_result(&site.state);
    let dir = job.dir(&site.state);
    let mails: Vec<Value> = q
        .mails_of(id)?
        .into_iter()
        .map(|m| json!({"message_id": m.message_id, "rcpt": m.rcpt, "state": m.state.as_str(), "error": m.error}))
        .collect();
    let live = (job.state == JobState::Running).then(|| dir.log_tail(40)).flatten();
    // Every tested revision of the same series (b4 change-id, or subject and author), oldest
    // first: v1 links to v2 and back.
    let revisions: Vec<Value> = match q.family_of(id)? {
        Some(f) => {
            let mut v = q.family_jobs(&f)?;
            v.sort_by_key(|&(job, version)| (version, job));
            v.into_iter().map(|(job, version)| json!({"id": job, "version": version, "this": job == id})).collect()
        }
        None => Vec::new(),
    };
    let mut rv = r.as_ref().map(|r| public_result(site, &job, r)).unwrap_or(Value::Null);
    if let (Some(r), Some(obj)) = (&r, rv.as_object_mut()) {
        for (i, a) in r.arches.iter().enumerate() {
            let mut names: Vec<String> = a.base.tests.iter().map(|t| t.name.clone()).collect();
            for t in &a.tip.tests {
                if !names.contains(&t.name) {
                    names.push(t.name.clone());
                }
            }
            let res = |run: &kbot_report::Run, n: &str| {
                run.tests.iter().find(|t| t.name == n).map(|t| t.result.to_string()).unwrap_or_else(|| "-".into())
            };
            let rows: Vec<Value> =
                names.iter().map(|n| json!({"name": n, "base": res(&a.base, n), "tip": res(&a.tip, n)})).collect();
            let logs: Vec<String> = arch_logs(a).into_iter().map(|(n, _)| n).collect();
            if let Some(arch) = obj.get_mut("arches").and_then(|x| x.get_mut(i)).and_then(|x| x.as_object_mut()) {
                arch.insert("rows".into(), json!(rows));
                arch.insert("logs".into(), json!(logs));
            }
        }
        // One finding per first bad patch (all arches), with its full detail; scrubbed like
        // the result it is computed from.
        let mut findings = serde_json::to_value(kbot_report::group::findings(r)).unwrap_or(Value::Null);
        Scrub::new(site, &job, Some(r)).value(&mut findings);
        obj.insert("findings".into(), findings);
    }
    Ok(Some(json!({
        "job": job_json(site, &job, r.as_ref()), "shown": shown(&job), "r": rv, "mails": mails, "live": live,
        "revisions": if revisions.len() > 1 { json!(revisions) } else { Value::Null },
        "has_report": dir.report_md().is_file(),
        "refresh": if job.state == JobState::Done { Value::Null } else { json!(5) },
    })))
}

type Shared = Arc<Site>;

fn text(status: StatusCode, ctype: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, ctype)], body).into_response()
}

fn not_found(what: &str) -> Response {
    text(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", format!("{what}: not found\n"))
}

fn render(name: &str, mut ctx: Value) -> Response {
    ctx["root"] = json!("");
    match env().get_template(name).and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&ctx)))) {
        Ok(html) => text(StatusCode::OK, "text/html; charset=utf-8", html),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", format!("template: {e}\n")),
    }
}

fn json_response(v: &Value) -> Response {
    text(StatusCode::OK, "application/json", serde_json::to_string_pretty(v).unwrap_or_default())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

fn queue(site: &Site) -> Result<Queue, QueueError> {
    Queue::open(&kbot_queue::queue_path(&site.state))
}

fn server_error(e: QueueError) -> Response {
    text(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string())
}

async fn index(State(site): State<Shared>, Query(f): Query<Filter>) -> Response {
    blocking(move || match queue(&site).and_then(|q| index_data(&q, &site, &f)) {
        Ok(v) => render("index.html.j2", v),
        Err(e) => server_error(e),
    })
    .await
}

async fn index_json(State(site): State<Shared>, Query(f): Query<Filter>) -> Response {
    blocking(move || match queue(&site).and_then(|q| index_data(&q, &site, &f)) {
        Ok(v) => json_response(&v["runs"]),
        Err(e) => server_error(e),
    })
    .await
}

async fn run(State(site): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    let (id, as_json) = match id.strip_suffix(".json") {
        Some(i) => (i.to_string(), true),
        None => (id, false),
    };
    let Ok(id) = id.parse::<i64>() else { return not_found("run") };
    blocking(move || {
        let q = match queue(&site) {
            Ok(q) => q,
            Err(e) => return server_error(e),
        };
        if as_json {
            // The run's kbot.result/v1 as `kbot check` wrote it, with the job and its mails.
            return match (q.job(id), q.mails_of(id)) {
                (Ok(Some(job)), Ok(mails)) => {
                    let r = job.load_result(&site.state);
                    let mails: Vec<Value> = mails
                        .iter()
                        .map(|m| json!({"message_id": m.message_id, "rcpt": m.rcpt, "state": m.state.as_str()}))
                        .collect();
                    let result = r.as_ref().map(|r| public_result(&site, &job, r));
                    json_response(&json!({"job": job_json(&site, &job, r.as_ref()), "result": result, "mails": mails}))
                }
                (Ok(None), _) => not_found(&format!("run {id}")),
                (Err(e), _) | (_, Err(e)) => server_error(e),
            };
        }
        match run_data(&q, &site, id) {
            Ok(Some(v)) => render("run.html.j2", v),
            Ok(None) => not_found(&format!("run {id}")),
            Err(e) => server_error(e),
        }
    })
    .await
}

/// What a file route answers: a file to stream, or a response made already.
enum Answer {
    File(PathBuf, &'static str),
    Done(Response),
}

/// Sends the file at `path` in chunks of `chunk` bytes as it is read, so a slow reader holds
/// one chunk in memory, not the file.
async fn stream_file(path: &Path, ctype: &'static str, chunk: usize, what: &str) -> Response {
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(_) => return not_found(what),
    };
    let mut r = Response::new(Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, chunk)));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ctype));
    r
}

async fn answer(a: Answer, what: &str) -> Response {
    match a {
        Answer::File(p, ctype) => stream_file(&p, ctype, FILE_CHUNK, what).await,
        Answer::Done(r) => r,
    }
}

const PLAIN: &str = "text/plain; charset=utf-8";

/// The chunk a file is sent in: what one reader of a log holds in memory.
pub const FILE_CHUNK: usize = 16 * 1024;

async fn run_file(State(site): State<Shared>, UrlPath((id, what)): UrlPath<(i64, String)>) -> Response {
    let s = site.clone();
    let w = what.clone();
    let a = blocking(move || {
        let dir = JobDir::new(&s.state, id);
        let q = match queue(&s) {
            Ok(q) => q,
            Err(e) => return Answer::Done(server_error(e)),
        };
        if q.job(id).ok().flatten().is_none() {
            return Answer::Done(not_found(&format!("run {id}")));
        }
        match w.as_str() {
            "log" => Answer::File(dir.log(), PLAIN),
            // Plain text: the report quotes the series, whose raw HTML no reader should render.
            "report.md" => Answer::File(dir.report_md(), PLAIN),
            "mail" => {
                let mails: Vec<String> = q
                    .mails_of(id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| String::from_utf8_lossy(&m.raw).replace("\r\n", "\n"))
                    .collect();
                Answer::Done(if mails.is_empty() {
                    not_found("mail")
                } else {
                    text(StatusCode::OK, PLAIN, mails.join("\n\n"))
                })
            }
            _ => Answer::Done(not_found(&w)),
        }
    })
    .await;
    answer(a, &what).await
}

async fn arch_log(State(site): State<Shared>, UrlPath((id, arch, name)): UrlPath<(i64, String, String)>) -> Response {
    let s = site.clone();
    let n = name.clone();
    let a = blocking(move || {
        let Some(job) = queue(&s).ok().and_then(|q| q.job(id).ok().flatten()) else {
            return Answer::Done(not_found("run"));
        };
        // Only files the result names: a URL cannot reach anything else.
        let path = job
            .load_result(&s.state)
            .and_then(|r| r.arches.into_iter().find(|a| a.arch == arch))
            .and_then(|a| arch_logs(&a).into_iter().find(|(l, _)| *l == n).map(|(_, p)| p));
        match path {
            Some(p) => Answer::File(PathBuf::from(p), PLAIN),
            None => Answer::Done(not_found(&n)),
        }
    })
    .await;
    answer(a, &name).await
}

pub fn router(site: Site) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.json", get(index_json))
        .route("/runs/{id}", get(run))
        .route("/runs/{id}/{what}", get(run_file))
        .route("/runs/{id}/logs/{arch}/{name}", get(arch_log))
        .with_state(Arc::new(site))
}

/// Serves the dashboard on `listen` until the process ends (its own runtime and thread, so
/// the service's loop never stalls a page), with the default [`Limits`].
pub fn spawn(listen: std::net::SocketAddr, site: Site) -> std::io::Result<std::thread::JoinHandle<()>> {
    spawn_with(listen, site, Limits::default())
}

/// [`spawn`] with other limits.
pub fn spawn_with(
    listen: std::net::SocketAddr,
    site: Site,
    limits: Limits,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let l = std::net::TcpListener::bind(listen)?;
    l.set_nonblocking(true)?;
    Ok(std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).expect("listener");
            serve(l, router(site), limits).await;
        });
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbot_queue::JobKind;

    #[test]
    fn times_are_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_795_622_729), "2026-11-25 16:05:29 UTC");
    }

    #[test]
    fn list_filters_and_pages_render() {
        let d = tempfile::tempdir().unwrap();
        let mut q = Queue::open(&d.path().join("queue.db")).unwrap();
        q.enqueue("a", JobKind::Series, "fsdevel", "[v1] A <script>", "/a", "default").unwrap();
        q.enqueue("b", JobKind::Range, "linux", "linux/master x..y", "x..y", "linux").unwrap();
        let a = q.claim().unwrap().unwrap();
        q.finish(a.id, "clean", None, None, None).unwrap();
        let site = Site { state: d.path().to_path_buf() };
        let all = index_data(&q, &site, &Filter::default()).unwrap();
        assert_eq!(all["runs"].as_array().unwrap().len(), 2);
        let f = Filter { status: "clean".into(), source: String::new() };
        let v = index_data(&q, &site, &f).unwrap();
        assert_eq!(v["runs"].as_array().unwrap().len(), 1);
        let f = Filter { status: String::new(), source: "linux".into() };
        assert_eq!(index_data(&q, &site, &f).unwrap()["runs"][0]["kind"], "range");
        assert_eq!(all["runs"][1]["state"], "done");
        assert_eq!(all["runs"][0]["shown"], "queued");
        let mut ctx = all.clone();
        ctx["root"] = json!("");
        let html = env()
            .get_template("index.html.j2")
            .unwrap()
            .render(minijinja::Value::from(minijinja::value::Serde(&ctx)))
            .unwrap();
        assert!(html.contains("href=\"/runs/1\"") && html.contains("href=\"/runs/2\""), "{html}");
        assert!(html.contains("&lt;script&gt;") && !html.contains("A <script>"), "titles are escaped");
        let mut run = run_data(&q, &site, 2).unwrap().unwrap();
        assert_eq!(run["refresh"], 5, "a queued run refreshes itself");
        run["root"] = json!("");
        let html = env()
            .get_template("run.html.j2")
            .unwrap()
            .render(minijinja::Value::from(minijinja::value::Serde(&run)))
            .unwrap();
        assert!(html.contains("Run #2"), "{html}");
        assert!(run_data(&q, &site, 99).unwrap().is_none());
    }

    #[test]
    fn run_pages_link_the_revisions_of_a_series() {
        let d = tempfile::tempdir().unwrap();
        let mut q = Queue::open(&d.path().join("queue.db")).unwrap();
        let recorded =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../analyzers/kbot-testdata/testdata/recorded-run-55f6523.json");
        let site = Site { state: d.path().to_path_buf() };
        // v1 and v2 of one family, and an unrelated series.
        for (key, family, version) in [("a1", "fam", 1), ("b", "other", 1), ("a2", "fam", 2)] {
            q.enqueue(key, JobKind::Series, "fsdevel", key, "/a", "default").unwrap();
            let job = q.claim().unwrap().unwrap();
            let dir = job.dir(d.path());
            std::fs::create_dir_all(dir.path()).unwrap();
            std::fs::copy(recorded, dir.result_json()).unwrap();
            let result = dir.result_json().display().to_string();
            q.finish(job.id, "regression", Some(&result), None, None).unwrap();
            q.set_family(job.id, family, version).unwrap();
        }
        let html = |id: i64| {
            let mut run = run_data(&q, &site, id).unwrap().unwrap();
            run["root"] = json!("");
            env()
                .get_template("run.html.j2")
                .unwrap()
                .render(minijinja::Value::from(minijinja::value::Serde(&run)))
                .unwrap()
        };
        let v1 = html(1);
        assert!(v1.contains("<b>v1 (this run)</b> &middot; <a href=\"/runs/3\">v2 (run #3)</a>"), "{v1}");
        let v2 = html(3);
        assert!(v2.contains("<a href=\"/runs/1\">v1 (run #1)</a> &middot; <b>v2 (this run)</b>"), "{v2}");
        assert!(!html(2).contains("id=\"revisions\""), "a single revision links nothing");
    }

    /// The run page of the recorded check of the 3-patch example (six tests and rules per
    /// arch, all at patch 2): one section for patch 2 naming every test and both arches, each
    /// blocked-task stack once.
    #[test]
    fn the_run_page_has_one_section_per_first_bad_patch() {
        let d = tempfile::tempdir().unwrap();
        let mut q = Queue::open(&d.path().join("queue.db")).unwrap();
        q.enqueue("a", JobKind::Series, "fsdevel", "[v1] A", "/a", "default").unwrap();
        let job = q.claim().unwrap().unwrap();
        let dir = job.dir(d.path());
        std::fs::create_dir_all(dir.path()).unwrap();
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../analyzers/kbot-testdata/testdata/recorded-run-55f6523.json"),
            dir.result_json(),
        )
        .unwrap();
        let result = dir.result_json().display().to_string();
        q.finish(job.id, "regression", Some(&result), None, None).unwrap();
        let site = Site { state: d.path().to_path_buf() };
        let mut run = run_data(&q, &site, job.id).unwrap().unwrap();
        run["root"] = json!("");
        let html = env()
            .get_template("run.html.j2")
            .unwrap()
            .render(minijinja::Value::from(minijinja::value::Serde(&run)))
            .unwrap();
        assert_eq!(html.matches("<h3 class=\"s-regression\">").count(), 1, "{html}");
        assert!(html.contains("first bad: [2/3] fsnotify: avoid SRCU round trip"), "{html}");
        assert!(html.contains("on x86_64, arm64 (12 regressions in the JSON)"), "{html}");
        for t in ["shadow/wait-in-srcu", "inotify_close_with_pending_perm", "scenario/seed-stall-fanotify"] {
            // minijinja escapes `/` in HTML.
            assert!(html.contains(&format!("<h4>{} (", t.replace('/', "&#x2f;"))), "{t}: {html}");
        }
        assert_eq!(html.matches("Blocked tasks (sysrq-w), each stack once").count(), 1, "{html}");
        assert_eq!(html.matches("fsnotify_destroy_group &lt;- inotify_release").count(), 1, "{html}");
    }
}
