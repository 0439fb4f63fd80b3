//! Table tests: every `testdata/NAME.out` (an LTP test binary's output) with `NAME.end` (how
//! it ended) is judged and compared with the golden `NAME.want`. After a reviewed change,
//! `KBOT_BLESS=1 cargo test -p kbot-ltp` rewrites the `.want` files.
//!
//! `.end` is one line: `exit N`, `signal N`, `hung MS TASK...`, `budget`, `notstarted WHY...`.

use std::path::{Path, PathBuf};

use kbot_ltp::{judge, End, Judgement};

fn parse_end(s: &str) -> End {
    let s = s.trim();
    let (word, rest) = s.split_once(' ').unwrap_or((s, ""));
    let num = |r: &str| r.trim().parse().unwrap_or_else(|e| panic!("bad number in .end {s:?}: {e}"));
    match word {
        "exit" => End::Exited(num(rest)),
        "signal" => End::Signaled(num(rest)),
        "hung" => {
            let (ms, task) = rest.split_once(' ').unwrap_or_else(|| panic!("hung MS TASK: {s:?}"));
            End::Hung { stuck_ms: ms.parse().unwrap(), task: task.to_string() }
        }
        "budget" => End::OverBudget,
        "notstarted" => End::NotStarted(rest.to_string()),
        _ => panic!("unknown .end {s:?}"),
    }
}

/// The golden text of a judgement.
fn render(j: &Judgement) -> String {
    let c = &j.counts;
    let mut s = format!(
        "verdict: {}\nbroken: {}\nsummary: {}\ncounts: passed {} failed {} broken {} skipped {} warnings {}\nevidence:\n",
        j.verdict,
        if j.broken { "yes" } else { "no" },
        j.summary,
        c.passed,
        c.failed,
        c.broken,
        c.skipped,
        c.warnings
    );
    for e in &j.evidence {
        s.push_str("  ");
        s.push_str(e);
        s.push('\n');
    }
    s
}

/// A line diff: `-` what the golden file says, `+` what we got (common prefix and suffix
/// elided).
fn diff(want: &str, got: &str) -> String {
    let w: Vec<&str> = want.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let pre = w.iter().zip(&g).take_while(|(a, b)| a == b).count();
    let suf = w[pre..].iter().rev().zip(g[pre..].iter().rev()).take_while(|(a, b)| a == b).count();
    let mut out = String::new();
    for l in &w[pre..w.len() - suf] {
        out.push_str(&format!("-{l}\n"));
    }
    for l in &g[pre..g.len() - suf] {
        out.push_str(&format!("+{l}\n"));
    }
    out
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

#[test]
fn table() {
    let dir = testdata();
    let mut outs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "out"))
        .collect();
    outs.sort();
    let bless = std::env::var_os("KBOT_BLESS").is_some();
    let mut failures = Vec::new();
    for out in &outs {
        let output = String::from_utf8_lossy(&std::fs::read(out).unwrap()).into_owned();
        let end_path = out.with_extension("end");
        let end =
            parse_end(&std::fs::read_to_string(&end_path).unwrap_or_else(|_| panic!("missing {}", end_path.display())));
        let got = render(&judge(&output, &end));
        let want_path = out.with_extension("want");
        if bless {
            std::fs::write(&want_path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&want_path).unwrap_or_default();
        if want != got {
            failures.push(format!("{}:\n{}", want_path.display(), diff(&want, &got)));
        }
    }
    assert!(outs.len() >= 13, "only {} cases in {}", outs.len(), dir.display());
    assert!(
        failures.is_empty(),
        "{} of {} cases differ (KBOT_BLESS=1 after review):\n{}",
        failures.len(),
        outs.len(),
        failures.join("\n")
    );
}

/// Every `.end` and `.want` belongs to a case: a renamed `.out` must not leave a golden file
/// that is never checked.
#[test]
fn no_orphans() {
    for e in std::fs::read_dir(testdata()).unwrap().flatten() {
        let p = e.path();
        let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
        assert!(matches!(ext, "out" | "end" | "want"), "stray file {}", p.display());
        assert!(p.with_extension("out").is_file(), "{} has no .out", p.display());
    }
}

#[test]
fn diff_shows_only_the_change() {
    assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "-b\n+x\n");
    assert_eq!(diff("a\n", "a\nb\n"), "+b\n");
}
