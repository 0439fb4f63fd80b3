//! `kbot.result/v1` is a contract: the JSON of a recorded run must come out of the typed
//! model byte for byte as it went in. The recording is a real check of the example series
//! on both arches with the shadow checks (`--seed 1`), written by kbot 55f6523, the last
//! version before the result's vocabulary became enums.

use kbot_report::{BootState, BuildState, CheckResult, Outcome, RegressionKind, Status, Verdict};

const RECORDED: &str = "recorded-run-55f6523.json";

#[test]
fn a_recorded_run_round_trips_byte_for_byte() {
    let bytes = kbot_testdata::fixture_bytes(RECORDED);
    let text = String::from_utf8(bytes).unwrap();
    let r: CheckResult = serde_json::from_str(&text).expect("the recorded run parses into the typed model");
    assert_eq!(r.to_json(), text, "kbot.result/v1 changed for a recorded run");
    // And the typed values are what the words said.
    assert_eq!(r.status, Status::Regression);
    let a = &r.arches[0];
    assert_eq!((a.base.build, a.base.boot), (BuildState::Pass, BootState::Pass));
    assert!(a.tip.tests.iter().any(|t| t.result == Outcome::Hang));
    assert!(a.regressions.iter().any(|g| g.kind == RegressionKind::Divergence));
    assert!(a.bisect_steps.iter().any(|s| s.verdicts.values().any(|v| *v == Verdict::Bad)));
    assert_eq!(r.arches.len(), 2);
}

#[test]
fn an_unknown_word_is_refused_not_guessed() {
    let text = String::from_utf8(kbot_testdata::fixture_bytes(RECORDED)).unwrap();
    let broken = text.replacen("\"result\": \"hang\"", "\"result\": \"stuck\"", 1);
    assert_ne!(broken, text);
    assert!(serde_json::from_str::<CheckResult>(&broken).is_err());
}
