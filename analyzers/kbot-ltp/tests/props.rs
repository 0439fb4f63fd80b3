//! `judge` never panics and keeps its promises (summary starts with the verdict and is short,
//! evidence is bounded and each line is LTP's own) on arbitrary output and any end.

use kbot_ltp::{decode_exit, judge, parse_lines, End, Verdict, EVIDENCE_MAX, SUMMARY_MAX};
use proptest::prelude::*;

fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        any::<i32>().prop_map(End::Exited),
        (0i32..64).prop_map(End::Exited),
        any::<i32>().prop_map(End::Signaled),
        (any::<u64>(), ".{0,400}").prop_map(|(stuck_ms, task)| End::Hung { stuck_ms, task }),
        Just(End::OverBudget),
        ".{0,400}".prop_map(End::NotStarted),
    ]
}

/// Lines that look like LTP's, to reach deep into the parser, mixed with noise.
fn ltpish() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("TPASS"),
        Just("TFAIL"),
        Just("TBROK"),
        Just("TCONF"),
        Just("TWARN"),
        Just("TINFO"),
        Just("TDEBUG"),
        Just("TNOPE"),
    ];
    let line = prop_oneof![
        (".{0,8}", 0u32..5000, word.clone(), ".{0,60}").prop_map(|(f, n, w, m)| format!("{f}.c:{n}: {w}: {m}")),
        ("[a-z0-9]{1,12}", 0u32..50, word, ".{0,60}").prop_map(|(t, n, w, m)| format!("{t:<8} {n:>4}  {w}  :  {m}")),
        "[a-z0-9]{0,6}".prop_map(|fs| format!("tst_test.c:1986: TINFO: === Testing on {fs} ===")),
        Just("Summary:".to_string()),
        ("(passed|failed|broken|skipped|warnings)", ".{0,12}").prop_map(|(k, v)| format!("{k}   {v}")),
        Just("Test timeouted, sending SIGKILL!".to_string()),
        Just("tst_test.c:1950: TBROK: Test killed! (timeout?)".to_string()),
        Just("Cannot kill test processes!".to_string()),
        ".{0,80}",
        Just("\x1b[1;31m".to_string()),
        Just("\x1b[".to_string()),
    ];
    prop::collection::vec(line, 0..60).prop_map(|v| v.join("\n"))
}

fn check(output: &str, end: &End) {
    let j = judge(output, end);
    assert!(j.summary.starts_with(j.verdict.as_str()), "{:?}", j.summary);
    assert!(j.summary.chars().count() <= SUMMARY_MAX);
    assert!(!j.summary.contains('\n'));
    assert!(j.evidence.len() <= EVIDENCE_MAX);
    assert!(!j.broken || j.verdict == Verdict::Fail);
    // NotStarted never passes: a test kbot could not run must not look like one that passed
    if matches!(end, End::NotStarted(_)) {
        assert_eq!(j.verdict, Verdict::Fail);
    }
    if matches!(end, End::Hung { .. }) {
        assert_eq!(j.verdict, Verdict::Hang);
    }
    let _ = parse_lines(output);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_anything(output in ".{0,2000}", end in end()) {
        check(&output, &end);
    }

    #[test]
    fn never_panics_on_ltp_like_output(output in ltpish(), end in end()) {
        check(&output, &end);
    }

    #[test]
    fn never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000), code in any::<i32>()) {
        check(&String::from_utf8_lossy(&bytes), &End::Exited(code));
    }

    #[test]
    fn a_tfail_bit_or_line_is_never_a_pass(output in ltpish(), code in 0i32..64) {
        let j = judge(&output, &End::Exited(code | 1));
        prop_assert!(j.verdict >= Verdict::Fail);
    }

    #[test]
    fn exit_bits_roundtrip(code in any::<i32>()) {
        let b = decode_exit(code);
        let back = (b.fail as i32) | (b.broken as i32) << 1 | (b.warn as i32) << 2 | (b.info as i32) << 4 | (b.conf as i32) << 5 | b.other;
        prop_assert_eq!(back, code);
    }
}
