//! Hostile input for the parsers: huge, malformed or binary mail must give a correct result
//! or a clear error, never a panic, and in time linear in the input.

use kbot_series::assemble;

fn patch(i: usize, total: usize) -> String {
    format!(
        "From x Mon Sep 17 00:00:00 2001\nFrom: A <a@x>\nSubject: [PATCH {i}/{total}] f: change {i}\nMessage-ID: <p{i}@x>\n\nSigned-off-by: A <a@x>\n---\ndiff --git a/f{i} b/f{i}\n--- a/f{i}\n+++ b/f{i}\n@@ -1 +1 @@\n-a\n+b\n\n"
    )
}

#[test]
fn five_thousand_patches_assemble_in_order() {
    let total = 5000;
    // Shuffled: every 7th index first, then the rest.
    let order: Vec<usize> = (1..=total).filter(|i| i % 7 == 0).chain((1..=total).filter(|i| i % 7 != 0)).collect();
    let mbox: String = order.iter().map(|i| patch(*i, total)).collect();
    let t = std::time::Instant::now();
    let mails = kbot_mbox::parse_mbox(mbox.as_bytes()).unwrap();
    let s = assemble(&mails, None).unwrap();
    assert_eq!(s.patches.len(), total);
    assert!(s.patches.windows(2).all(|w| w[0].index + 1 == w[1].index));
    assert!(s.missing.is_empty());
    eprintln!("5000 patches parsed and assembled in {:.2}s", t.elapsed().as_secs_f64());
}

#[test]
fn a_hundred_megabyte_mbox_is_parsed() {
    // One real patch followed by a 100 MB body of junk lines in a second mail.
    let mut mbox = patch(1, 1);
    mbox.push_str("From y Mon Sep 17 00:00:00 2001\nFrom: B <b@x>\nSubject: noise\nMessage-ID: <n@x>\n\n");
    let line = "x".repeat(99) + "\n";
    mbox.push_str(&line.repeat(1_000_000));
    assert!(mbox.len() > 100_000_000);
    let t = std::time::Instant::now();
    let mails = kbot_mbox::parse_mbox(mbox.as_bytes()).unwrap();
    assert_eq!(mails.len(), 2);
    assert_eq!(assemble(&mails, None).unwrap().patches.len(), 1);
    eprintln!("100 MB mbox parsed in {:.2}s", t.elapsed().as_secs_f64());
}

#[test]
fn nul_bytes_invalid_utf8_and_broken_mime() {
    let mut m = patch(1, 1).into_bytes();
    // NUL and invalid UTF-8 in the subject and the body.
    let at = m.windows(6).position(|w| w == b"change").unwrap();
    m.splice(at..at, [0u8, 0xff, 0xfe].iter().copied());
    m.extend_from_slice(b"\xff\xfe\x00 tail\n");
    let mails = kbot_mbox::parse_mbox(&m).unwrap();
    let s = assemble(&mails, None).unwrap();
    assert_eq!(s.patches.len(), 1);
    assert!(!s.patches[0].subject.contains('\n'));
    // A multipart mail whose boundary never comes, and an undecodable base64 part.
    let broken = "From x\nFrom: a@x\nSubject: [PATCH] f: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"never\"\n\nno parts at all\n\nFrom y\nFrom: a@x\nSubject: [PATCH] f: y\nContent-Transfer-Encoding: base64\n\n!!!not base64!!!\n";
    let mails = kbot_mbox::parse_mbox(broken.as_bytes()).unwrap();
    // Neither carries a diff: a clear "no patches with a diff", not a panic.
    let s = assemble(&mails, None).unwrap();
    assert!(s.patches.is_empty());
    assert_eq!(s.missing, [1]);
}

#[test]
fn header_injection_in_subjects_is_flattened() {
    let m = "From x\nFrom: a@x\nSubject: =?UTF-8?q?=5BPATCH=5D_f=3A_x=0D=0ABcc=3A_evil=40x?=\nMessage-ID: <i@x>\n\nSigned-off-by: a@x\n---\ndiff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n";
    let mails = kbot_mbox::parse_mbox(m.as_bytes()).unwrap();
    let s = assemble(&mails, None).unwrap();
    let subj = &s.patches[0].subject;
    assert!(!subj.contains('\r') && !subj.contains('\n'), "{subj:?}");
}
