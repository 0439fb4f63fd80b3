extern crate std;

use super::*;
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

fn run(m: &mut Model, task: u8, op: Op) -> Outcome {
    m.step(Step { task, op }).expect("valid step")
}

/// A listener (task 0) with a permission mark on inode 0 and a waiter (task 1) blocked in
/// open(); returns the listener group.
fn pending_open(m: &mut Model) -> u8 {
    let g = match run(m, 0, Op::CreateGroup(Class::FanContent)).ret {
        Some(Ret::Ok(g)) => g as u8,
        r => panic!("{r:?}"),
    };
    assert_eq!(run(m, 0, Op::AddMark { group: g, inode: 0, mask: mask::OPEN_PERM }).ret, Some(Ret::Ok(0)));
    assert_eq!(run(m, 1, Op::Open { inode: 0 }).ret, None, "open must block");
    let r = run(m, 0, Op::ReadEvents { group: g });
    assert_eq!(r.ret, Some(Ret::Ok(1)));
    assert_eq!(r.events.as_slice(), &[Ev { mask: mask::OPEN_PERM, inode: 0, task: 1, name: NO_NAME, dir: NO_NODE }]);
    g
}

#[test]
fn allow_and_deny() {
    for (allow, want) in [(true, Ret::Ok(0)), (false, Ret::Err(EPERM))] {
        let mut m = Model::new(Semantics::Current);
        let g = pending_open(&mut m);
        let r = run(&mut m, 0, Op::Answer { group: g, waiter: 1, allow });
        assert_eq!(r.ret, Some(Ret::Ok(0)));
        assert_eq!(r.released.as_slice(), &[Release { task: 1, since: 2, ret: want }]);
        assert!(!m.blocked(1));
    }
}

#[test]
fn answer_needs_a_read_event() {
    let mut m = Model::new(Semantics::Current);
    run(&mut m, 0, Op::CreateGroup(Class::FanContent));
    run(&mut m, 0, Op::AddMark { group: 0, inode: 0, mask: mask::OPEN_PERM });
    assert_eq!(run(&mut m, 1, Op::Open { inode: 0 }).ret, None);
    assert_eq!(run(&mut m, 0, Op::Answer { group: 0, waiter: 1, allow: true }).ret, Some(Ret::Err(ENOENT)));
    assert!(m.blocked(1));
}

#[test]
fn the_seed_stall_under_pre412_only() {
    for sem in [Semantics::Current, Semantics::Pre412] {
        let mut m = Model::new(sem);
        let g = pending_open(&mut m);
        // Task 2 creates an unrelated inotify group with a watch and closes it.
        let i = match run(&mut m, 2, Op::CreateGroup(Class::Inotify)).ret {
            Some(Ret::Ok(i)) => i as u8,
            r => panic!("{r:?}"),
        };
        run(&mut m, 2, Op::AddMark { group: i, inode: 1, mask: mask::OPEN });
        let close = run(&mut m, 2, Op::Close { group: i });
        match sem {
            Semantics::Current => assert_eq!(close.ret, Some(Ret::Ok(0))),
            Semantics::Pre412 => {
                assert_eq!(close.ret, None, "close must wait for the grace period");
                assert!(m.waits_for_grace_period(2));
                // Answering the permission event releases the open and then the close.
                let r = run(&mut m, 0, Op::Answer { group: g, waiter: 1, allow: true });
                let rel: Vec<u8> = r.released.as_slice().iter().map(|x| x.task).collect();
                assert_eq!(rel, [2, 1], "the close is released when the waiter leaves SRCU");
                assert_eq!(r.released.as_slice()[0].since, 6);
            }
        }
        assert!(m.no_lost_wakeups());
    }
}

#[test]
fn closing_a_group_without_marks_never_waits() {
    let mut m = Model::new(Semantics::Pre412);
    pending_open(&mut m);
    run(&mut m, 2, Op::CreateGroup(Class::Inotify));
    assert_eq!(run(&mut m, 2, Op::Close { group: 1 }).ret, Some(Ret::Ok(0)));
}

#[test]
fn closing_the_listener_allows_its_waiters_even_pre412() {
    for sem in [Semantics::Current, Semantics::Pre412] {
        let mut m = Model::new(sem);
        let g = pending_open(&mut m);
        // A second waiter whose event was not read yet.
        assert_eq!(run(&mut m, 3, Op::Open { inode: 0 }).ret, None);
        let r = run(&mut m, 0, Op::Close { group: g });
        assert_eq!(r.ret, Some(Ret::Ok(0)), "{sem:?}");
        let mut rel: Vec<(u8, Ret)> = r.released.as_slice().iter().map(|x| (x.task, x.ret)).collect();
        rel.sort_by_key(|x| x.0);
        assert_eq!(rel, [(1, Ret::Ok(0)), (3, Ret::Ok(0))]);
        assert_eq!(m.blocked_count(), 0);
    }
}

#[test]
fn groups_are_asked_in_priority_order_and_deny_stops_delivery() {
    let mut m = Model::new(Semantics::Current);
    let notif = 0;
    run(&mut m, 0, Op::CreateGroup(Class::FanContent)); // 0... reuse ids below
    run(&mut m, 0, Op::CreateGroup(Class::FanPreContent)); // 1
    run(&mut m, 0, Op::CreateGroup(Class::FanNotif)); // 2
    run(&mut m, 0, Op::AddMark { group: 0, inode: 0, mask: mask::OPEN_PERM });
    run(&mut m, 0, Op::AddMark { group: 1, inode: 0, mask: mask::OPEN_PERM });
    run(&mut m, 0, Op::AddMark { group: 2, inode: 0, mask: mask::OPEN });
    assert_eq!(run(&mut m, 1, Op::Open { inode: 0 }).ret, None);
    // Pre-content first: the content group has nothing yet.
    assert_eq!(run(&mut m, 0, Op::ReadEvents { group: 0 }).ret, Some(Ret::Err(EAGAIN)));
    assert_eq!(run(&mut m, 0, Op::ReadEvents { group: 1 }).ret, Some(Ret::Ok(1)));
    let r = run(&mut m, 0, Op::Answer { group: 1, waiter: 1, allow: true });
    assert!(r.released.is_empty(), "still waiting for the content group");
    assert_eq!(run(&mut m, 0, Op::ReadEvents { group: 0 }).ret, Some(Ret::Ok(1)));
    let r = run(&mut m, 0, Op::Answer { group: 0, waiter: 1, allow: true });
    assert_eq!(r.released.as_slice()[0].ret, Ret::Ok(0));
    // The notification group sees the open afterwards.
    let r = run(&mut m, 0, Op::ReadEvents { group: 2 });
    assert_eq!(r.events.as_slice(), &[Ev { mask: mask::OPEN, inode: 0, task: 1, name: NO_NAME, dir: NO_NODE }]);
    // A deny by the first group: the second never hears of the access.
    assert_eq!(run(&mut m, 3, Op::Open { inode: 0 }).ret, None);
    run(&mut m, 0, Op::ReadEvents { group: 1 });
    let r = run(&mut m, 0, Op::Answer { group: 1, waiter: 3, allow: false });
    assert_eq!(r.released.as_slice()[0].ret, Ret::Err(EPERM));
    assert_eq!(run(&mut m, 0, Op::ReadEvents { group: 0 }).ret, Some(Ret::Err(EAGAIN)));
    assert_eq!(run(&mut m, 0, Op::ReadEvents { group: notif + 2 }).ret, Some(Ret::Err(EAGAIN)));
}

#[test]
fn mark_removal_and_unlink_while_pending_then_answer() {
    let mut m = Model::new(Semantics::Current);
    let g = pending_open(&mut m);
    assert_eq!(run(&mut m, 0, Op::RemoveMark { group: g, inode: 0 }).ret, Some(Ret::Ok(0)));
    let r = run(&mut m, 0, Op::Answer { group: g, waiter: 1, allow: true });
    assert_eq!(r.released.as_slice()[0].ret, Ret::Ok(0));

    let mut m = Model::new(Semantics::Current);
    let g = pending_open(&mut m);
    let w = match run(&mut m, 2, Op::CreateGroup(Class::Inotify)).ret {
        Some(Ret::Ok(w)) => w as u8,
        r => panic!("{r:?}"),
    };
    run(&mut m, 2, Op::AddMark { group: w, inode: 0, mask: mask::OPEN });
    assert_eq!(run(&mut m, 0, Op::Unlink { inode: 0 }).ret, Some(Ret::Ok(0)));
    // The inode lives on while the open waits: no IN_IGNORED yet.
    assert_eq!(run(&mut m, 2, Op::ReadEvents { group: w }).ret, Some(Ret::Err(EAGAIN)));
    let r = run(&mut m, 0, Op::Answer { group: g, waiter: 1, allow: true });
    assert_eq!(r.released.as_slice()[0].ret, Ret::Ok(0));
    let ev = run(&mut m, 2, Op::ReadEvents { group: w });
    assert!(ev.events.as_slice().iter().any(|e| e.mask == mask::IGNORED), "{ev:?}");
    assert_eq!(run(&mut m, 3, Op::Open { inode: 0 }).ret, Some(Ret::Err(ENOENT)));
}

#[test]
fn notifications_merge_like_the_kernel() {
    let mut m = Model::new(Semantics::Current);
    run(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    run(&mut m, 0, Op::CreateGroup(Class::Inotify));
    run(&mut m, 0, Op::AddMark { group: 0, inode: 0, mask: mask::OPEN });
    run(&mut m, 0, Op::AddMark { group: 1, inode: 0, mask: mask::OPEN });
    for t in [1, 1, 2] {
        assert_eq!(run(&mut m, t, Op::Open { inode: 0 }).ret, Some(Ret::Ok(0)));
    }
    // fanotify: one event per (object, task); inotify: identical events collapse.
    let fan = run(&mut m, 0, Op::ReadEvents { group: 0 });
    assert_eq!(
        fan.events.as_slice(),
        &[
            Ev { mask: mask::OPEN, inode: 0, task: 1, name: NO_NAME, dir: NO_NODE },
            Ev { mask: mask::OPEN, inode: 0, task: 2, name: NO_NAME, dir: NO_NODE }
        ]
    );
    let ino = run(&mut m, 0, Op::ReadEvents { group: 1 });
    assert_eq!(ino.events.as_slice(), &[Ev { mask: mask::OPEN, inode: 0, task: 0, name: NO_NAME, dir: NO_NODE }]);
}

#[test]
fn queued_fanotify_events_keep_an_unlinked_file_alive() {
    let mut m = Model::new(Semantics::Current);
    run(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    run(&mut m, 0, Op::CreateGroup(Class::Inotify));
    run(&mut m, 0, Op::AddMark { group: 0, inode: 2, mask: mask::OPEN });
    run(&mut m, 0, Op::AddMark { group: 1, inode: 2, mask: mask::OPEN });
    run(&mut m, 1, Op::Open { inode: 2 });
    assert_eq!(run(&mut m, 1, Op::Unlink { inode: 2 }).ret, Some(Ret::Ok(0)));
    // The unread FAN_OPEN holds the path: no IN_IGNORED yet, only IN_OPEN.
    let r = run(&mut m, 0, Op::ReadEvents { group: 1 });
    assert_eq!(r.events.as_slice(), &[Ev { mask: mask::OPEN, inode: 2, task: 0, name: NO_NAME, dir: NO_NODE }]);
    // fanotify removes marks by path: gone with the name.
    assert_eq!(run(&mut m, 0, Op::RemoveMark { group: 0, inode: 2 }).ret, Some(Ret::Err(ENOENT)));
    run(&mut m, 0, Op::ReadEvents { group: 0 });
    let r = run(&mut m, 0, Op::ReadEvents { group: 1 });
    assert_eq!(r.events.as_slice(), &[Ev { mask: mask::IGNORED, inode: 2, task: 0, name: NO_NAME, dir: NO_NODE }]);
}

#[test]
fn bad_requests() {
    let mut m = Model::new(Semantics::Current);
    run(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    assert_eq!(run(&mut m, 0, Op::AddMark { group: 0, inode: 0, mask: mask::OPEN_PERM }).ret, Some(Ret::Err(EINVAL)));
    assert_eq!(run(&mut m, 0, Op::AddMark { group: 5, inode: 0, mask: mask::OPEN }).ret, Some(Ret::Err(EBADF)));
    assert_eq!(run(&mut m, 0, Op::RemoveMark { group: 0, inode: 0 }).ret, Some(Ret::Err(ENOENT)));
    run(&mut m, 0, Op::CreateGroup(Class::Inotify));
    assert_eq!(run(&mut m, 0, Op::RemoveMark { group: 1, inode: 0 }).ret, Some(Ret::Err(EINVAL)));
    // An inotify fd cannot be written to: no permission answers there.
    assert_eq!(run(&mut m, 0, Op::Answer { group: 1, waiter: 0, allow: true }).ret, Some(Ret::Err(EBADF)));
    assert_eq!(m.step(Step { task: 99, op: Op::Open { inode: 0 } }), Err(Invalid::TaskOutOfRange { task: 99 }));
    let g = {
        let mut m2 = Model::new(Semantics::Current);
        pending_open(&mut m2);
        m2
    };
    let mut m2 = g;
    assert_eq!(m2.step(Step { task: 1, op: Op::Open { inode: 1 } }), Err(Invalid::TaskBlocked { task: 1 }));
}

// --- property tests -------------------------------------------------------------------

const TASKS: u8 = 4;
const INODES: u8 = 3;

fn op_strategy() -> impl Strategy<Value = Op> {
    let class =
        prop_oneof![Just(Class::Inotify), Just(Class::FanNotif), Just(Class::FanContent), Just(Class::FanPreContent)];
    prop_oneof![
        class.prop_map(Op::CreateGroup),
        (0u16..16, any::<bool>()).prop_map(|(r, unpriv)| Op::FidGroup { report: r << 9, unpriv }),
        (0u8..6, any::<u32>(), any::<u16>(), 0u8..3).prop_map(|(group, mask, flags, o)| Op::PipeMark {
            group,
            mask: mask & (mask::EVENTS | mask::ISDIR | mask::ON_CHILD),
            flags: flags & flag::FANOTIFY,
            obj: [MarkObj::Inode, MarkObj::Mount, MarkObj::Fs][o as usize],
        }),
        (0u8..6, 0..INODES, prop_oneof![Just(mask::OPEN), Just(mask::OPEN_PERM), Just(mask::OPEN | mask::OPEN_PERM)])
            .prop_map(|(group, inode, mask)| Op::AddMark { group, inode, mask }),
        (0u8..6, 0..INODES).prop_map(|(group, inode)| Op::RemoveMark { group, inode }),
        (0..INODES).prop_map(|inode| Op::Open { inode }),
        (0u8..6).prop_map(|group| Op::ReadEvents { group }),
        (0u8..6, 0..TASKS, any::<bool>()).prop_map(|(group, waiter, allow)| Op::Answer { group, waiter, allow }),
        (0..INODES).prop_map(|inode| Op::Unlink { inode }),
        (0u8..6).prop_map(|group| Op::Close { group }),
        (
            0u8..6,
            0..INODES,
            prop_oneof![Just(mask::OPEN), Just(mask::OPEN_PERM), Just(mask::OPEN | mask::ISDIR)],
            any::<bool>()
        )
            .prop_map(|(group, inode, mask, mount)| Op::FsMark { group, inode, mask, flags: 0, mount }),
        (any::<u16>(), any::<u8>(), any::<bool>()).prop_map(|(flags, fflags, unpriv)| Op::Init {
            flags,
            fflags,
            unpriv
        }),
    ]
}

fn scenario() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec((0..TASKS, op_strategy()).prop_map(|(task, op)| Step { task, op }), 0..40)
}

/// Runs the steps the model accepts (steps of blocked tasks are skipped), checking the
/// invariants after each; returns the model and every release seen.
fn play(sem: Semantics, steps: &[Step]) -> (Model, Vec<(u16, Release)>) {
    let mut m = Model::new(sem);
    let mut releases = Vec::new();
    let mut step_no = 0u16;
    for s in steps {
        if m.blocked(s.task) {
            continue;
        }
        let out = m.step(*s).expect("the generator only makes valid steps");
        for r in out.released.as_slice() {
            releases.push((step_no, *r));
        }
        assert!(m.no_lost_wakeups(), "lost wake-up after {s:?}");
        step_no += 1;
    }
    (m, releases)
}

/// Reads every group and answers every permission event until nothing is left.
fn drain(m: &mut Model, allow: bool) {
    for _ in 0..64 {
        let helper = (0..MAX_TASKS as u8).find(|t| !m.blocked(*t)).expect("someone runs");
        for g in m.unread_groups().as_slice().to_vec() {
            m.step(Step { task: helper, op: Op::ReadEvents { group: g } }).unwrap();
        }
        let pending = m.unanswered();
        if pending.is_empty() {
            return;
        }
        for (g, w) in pending.as_slice().to_vec() {
            m.step(Step { task: helper, op: Op::Answer { group: g, waiter: w, allow } }).unwrap();
        }
    }
    panic!("draining did not converge");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Answering every permission event leaves nothing blocked, under both semantics.
    #[test]
    fn answering_everything_unblocks_everyone(steps in scenario(), allow in any::<bool>()) {
        for sem in [Semantics::Current, Semantics::Pre412] {
            let (mut m, _) = play(sem, &steps);
            drain(&mut m, allow);
            prop_assert_eq!(m.blocked_count(), 0, "{:?}", sem);
        }
    }

    /// Since 4.12 nothing ever waits for a grace period for long: a close never blocks.
    #[test]
    fn current_semantics_never_stall_a_close(steps in scenario()) {
        let mut m = Model::new(Semantics::Current);
        for s in &steps {
            if m.blocked(s.task) { continue; }
            m.step(*s).unwrap();
            for t in 0..TASKS {
                prop_assert!(!m.waits_for_grace_period(t));
            }
        }
    }

    /// Every release names the step that blocked, which came before the releasing step,
    /// and each blocked step is released at most once.
    #[test]
    fn releases_name_their_blocked_step(steps in scenario()) {
        for sem in [Semantics::Current, Semantics::Pre412] {
            let (_, releases) = play(sem, &steps);
            let mut seen = std::collections::BTreeSet::new();
            for (at, r) in &releases {
                prop_assert!(r.since < *at, "{:?} released at {} before it blocked", r, at);
                prop_assert!(seen.insert((r.task, r.since)), "released twice: {:?}", r);
            }
        }
    }

    /// The two semantics agree on every result except that pre-4.12 may block a close:
    /// the difference is exactly the seed's stall.
    #[test]
    fn semantics_differ_only_in_blocked_closes(steps in scenario()) {
        let mut cur = Model::new(Semantics::Current);
        let mut old = Model::new(Semantics::Pre412);
        for s in &steps {
            if cur.blocked(s.task) || old.blocked(s.task) { continue; }
            let a = cur.step(*s).unwrap();
            let b = old.step(*s).unwrap();
            if a.ret != b.ret {
                prop_assert!(matches!(s.op, Op::Close { .. }) && b.ret.is_none(), "{:?}: {:?} vs {:?}", s, a, b);
                // From here on the states differ by design.
                break;
            }
        }
    }
}

// Rules of the tree (issue #16), from inotify(7), fanotify(7) and fanotify_mark(2).

fn ok(m: &mut Model, task: u8, op: Op) -> Outcome {
    let o = run(m, task, op);
    assert!(matches!(o.ret, Some(Ret::Ok(_))), "{op:?}: {:?}", o.ret);
    o
}

fn err(m: &mut Model, op: Op) -> i32 {
    match run(m, 0, op).ret {
        Some(Ret::Err(e)) => e,
        r => panic!("{op:?}: {r:?}"),
    }
}

fn evs(m: &mut Model, g: u8) -> Vec<Ev> {
    run(m, 0, Op::ReadEvents { group: g }).events.as_slice().to_vec()
}

const D0: u8 = path::of(0, path::SELF);
const D1: u8 = path::of(1, path::SELF);
const ROOT: u8 = MAX_INODES as u8;

fn ev(mask: u32, inode: u8, task: u8, name: u8) -> Ev {
    Ev { mask, inode, task, name, dir: NO_NODE }
}

/// inotify(7): "When monitoring a directory, the events marked above with an asterisk (*)
/// can occur both for the directory itself and for objects inside the directory; in this
/// case, the name field in the returned inotify_event structure identifies the name of the
/// file within the directory." IN_CREATE/IN_DELETE/IN_MOVED_* only for objects inside.
#[test]
fn a_watched_directory_hears_its_children_by_name() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::Inotify));
    let all = mask::OPEN | mask::ACCESS | mask::CLOSE_NOWRITE | mask::CREATE | mask::DELETE | mask::ATTRIB;
    ok(&mut m, 0, Op::AddMark { group: 0, inode: D0, mask: all });
    ok(&mut m, 1, Op::Cat { inode: 3 });
    assert_eq!(
        evs(&mut m, 0),
        [ev(mask::OPEN, ROOT, 0, 3), ev(mask::ACCESS, ROOT, 0, 3), ev(mask::CLOSE_NOWRITE, ROOT, 0, 3)]
    );
    ok(&mut m, 1, Op::Mkdir { inode: D1 });
    ok(&mut m, 1, Op::Unlink { inode: 2 });
    // The unlinked file's own IN_ATTRIB (link count) goes to its watches only, not the parent.
    assert_eq!(
        evs(&mut m, 0),
        [ev(mask::CREATE | mask::ISDIR, ROOT, 0, path::dir_entry_name(1)), ev(mask::DELETE, ROOT, 0, 2)]
    );
    // An empty file: read(2) returns 0 and there is no IN_ACCESS.
    ok(&mut m, 1, Op::Create { inode: path::of(1, 0) });
    ok(&mut m, 0, Op::AddMark { group: 0, inode: D1, mask: mask::ACCESS | mask::OPEN });
    ok(&mut m, 1, Op::Cat { inode: path::of(1, 0) });
    let d1 = m.lookup(D1).unwrap();
    assert_eq!(evs(&mut m, 0), [ev(mask::OPEN, d1, 0, 0)]);
}

/// inotify(7): IN_ONESHOT "Monitor the filesystem object corresponding to pathname for one
/// event, then remove from watch list"; IN_MASK_CREATE: "If pathname is already being
/// watched, fail with EEXIST"; IN_MASK_ADD with IN_MASK_CREATE: EINVAL; IN_ONLYDIR on a file:
/// ENOTDIR (inotify_add_watch(2)).
#[test]
fn inotify_watch_flags() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::Inotify));
    ok(&mut m, 0, Op::Watch { group: 0, inode: 1, mask: mask::OPEN | mask::CLOSE_NOWRITE, flags: flag::ONESHOT });
    ok(&mut m, 1, Op::Open { inode: 1 });
    ok(&mut m, 1, Op::Open { inode: 1 });
    assert_eq!(evs(&mut m, 0), [ev(mask::OPEN, 1, 0, NO_NAME), ev(mask::IGNORED, 1, 0, NO_NAME)]);
    ok(&mut m, 0, Op::AddMark { group: 0, inode: 1, mask: mask::OPEN });
    assert_eq!(err(&mut m, Op::Watch { group: 0, inode: 1, mask: mask::ACCESS, flags: flag::MASK_CREATE }), EEXIST);
    let both = flag::MASK_CREATE | flag::MASK_ADD;
    assert_eq!(err(&mut m, Op::Watch { group: 0, inode: 1, mask: mask::ACCESS, flags: both }), EINVAL);
    assert_eq!(err(&mut m, Op::Watch { group: 0, inode: 1, mask: mask::ACCESS, flags: flag::ONLYDIR }), ENOTDIR);
    // IN_MASK_ADD: "add (OR) the events in mask to the watch mask"; without it, replace.
    ok(&mut m, 0, Op::Watch { group: 0, inode: 1, mask: mask::ACCESS, flags: flag::MASK_ADD });
    ok(&mut m, 1, Op::Cat { inode: 1 });
    assert_eq!(evs(&mut m, 0), [ev(mask::OPEN, 1, 0, NO_NAME), ev(mask::ACCESS, 1, 0, NO_NAME)]);
    ok(&mut m, 0, Op::AddMark { group: 0, inode: 1, mask: mask::ACCESS });
    ok(&mut m, 1, Op::Cat { inode: 1 });
    assert_eq!(evs(&mut m, 0), [ev(mask::ACCESS, 1, 0, NO_NAME)]);
    // A permission bit has no inotify meaning: EINVAL, even on a closed fd.
    assert_eq!(err(&mut m, Op::AddMark { group: 0, inode: 1, mask: mask::OPEN_PERM }), EINVAL);
}

/// fanotify_mark(2): FAN_EVENT_ON_CHILD "Events for the immediate children of marked
/// directories shall be created"; FAN_ONDIR "Create events for directories"; without FID
/// reporting, dirent events are EINVAL.
#[test]
fn fanotify_directory_marks() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    ok(&mut m, 0, Op::AddMark { group: 0, inode: D0, mask: mask::OPEN });
    ok(&mut m, 1, Op::Open { inode: 0 });
    ok(&mut m, 1, Op::Open { inode: D0 });
    assert_eq!(run(&mut m, 0, Op::ReadEvents { group: 0 }).ret, Some(Ret::Err(EAGAIN)));
    ok(&mut m, 0, Op::AddMark { group: 0, inode: D0, mask: mask::ON_CHILD });
    ok(&mut m, 1, Op::Open { inode: 0 });
    ok(&mut m, 1, Op::Mkdir { inode: D1 });
    ok(&mut m, 1, Op::Open { inode: D1 });
    assert_eq!(evs(&mut m, 0), [ev(mask::OPEN, 0, 1, NO_NAME)]);
    ok(&mut m, 0, Op::AddMark { group: 0, inode: D0, mask: mask::ISDIR });
    ok(&mut m, 1, Op::Open { inode: D1 });
    ok(&mut m, 1, Op::Open { inode: D0 });
    let d1 = m.lookup(D1).unwrap();
    assert_eq!(evs(&mut m, 0), [ev(mask::OPEN, d1, 1, NO_NAME), ev(mask::OPEN, ROOT, 1, NO_NAME)]);
    assert_eq!(err(&mut m, Op::AddMark { group: 0, inode: D0, mask: mask::CREATE }), EINVAL);
    assert_eq!(err(&mut m, Op::Watch { group: 0, inode: 0, mask: mask::OPEN, flags: flag::ONLYDIR }), ENOTDIR);
    assert_eq!(err(&mut m, Op::Watch { group: 0, inode: 5, mask: mask::OPEN, flags: flag::REMOVE }), ENOENT);
}

/// fanotify_mark(2): FAN_MARK_IGNORED_MASK; "FAN_MARK_IGNORED_SURV_MODIFY: The ignore mask
/// shall survive modify events. If this flag is not set, the ignore mask is cleared when a
/// modify event occurs on the marked object."
#[test]
fn ignore_masks_and_modify() {
    for surv in [false, true] {
        let mut m = Model::new(Semantics::Current);
        ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
        ok(&mut m, 0, Op::AddMark { group: 0, inode: 0, mask: mask::OPEN | mask::CLOSE_WRITE });
        let flags = flag::IGNORED | if surv { flag::SURV } else { 0 };
        ok(&mut m, 0, Op::Watch { group: 0, inode: 0, mask: mask::OPEN, flags });
        ok(&mut m, 1, Op::Open { inode: 0 });
        assert_eq!(run(&mut m, 0, Op::ReadEvents { group: 0 }).ret, Some(Ret::Err(EAGAIN)));
        // The write's own open is still ignored (the modification comes after it).
        ok(&mut m, 1, Op::Write { inode: 0 });
        assert_eq!(evs(&mut m, 0), [ev(mask::CLOSE_WRITE, 0, 1, NO_NAME)]);
        ok(&mut m, 1, Op::Open { inode: 0 });
        let want = if surv { Vec::new() } else { std::vec![ev(mask::OPEN, 0, 1, NO_NAME)] };
        assert_eq!(evs(&mut m, 0), want, "surv={surv}");
    }
}

/// inotify(7) IN_Q_OVERFLOW / fanotify(7) FAN_Q_OVERFLOW: past the queue limit one overflow
/// event is queued and further events are lost until it is read.
#[test]
fn queue_overflow() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::Inotify));
    ok(&mut m, 0, Op::AddMark { group: 0, inode: D0, mask: mask::ATTRIB });
    for i in 0..QUEUE_LIMIT as u8 + 3 {
        ok(&mut m, 1, Op::Attrib { inode: i % 2 });
    }
    let got = evs(&mut m, 0);
    assert_eq!(got.len(), QUEUE_LIMIT + 1);
    assert_eq!(got[QUEUE_LIMIT], ev(mask::OVERFLOW, NO_NODE, 0, NO_NAME));
    // A permission event that finds the queue full is dropped: the open goes on.
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::FanContent));
    ok(&mut m, 0, Op::AddMark { group: 0, inode: 0, mask: mask::OPEN_PERM });
    // fanotify merges events of one object and task: eight different ones fill the queue.
    for i in 1..=4 {
        ok(&mut m, 0, Op::AddMark { group: 0, inode: i, mask: mask::OPEN });
        ok(&mut m, 1, Op::Open { inode: i });
        ok(&mut m, 2, Op::Open { inode: i });
    }
    assert_eq!(run(&mut m, 3, Op::Open { inode: 0 }).ret, Some(Ret::Ok(0)));
}

/// fanotify_init(2), ERRORS (EINVAL) and the flag rules of its DESCRIPTION.
#[test]
fn fanotify_init_flags_follow_the_man_page() {
    use init::*;
    let ok = |f: u16, ff: u8| fanotify_init_errno(f, ff, false).is_none();
    // Plain groups of every class; FAN_CLOEXEC/FAN_NONBLOCK and unlimited queue and marks.
    assert!(ok(0, 0) && ok(CLASS_CONTENT, 0) && ok(CLASS_PRE_CONTENT, fflag::RDWR));
    assert!(ok(CLOEXEC | NONBLOCK | UNLIMITED_QUEUE | UNLIMITED_MARKS, fflag::WRONLY | fflag::CLOEXEC));
    // "FAN_REPORT_FID ... cannot be used with FAN_CLASS_CONTENT or FAN_CLASS_PRE_CONTENT".
    assert!(ok(REPORT_FID, 0) && !ok(REPORT_FID | CLASS_CONTENT, 0) && !ok(REPORT_DIR_FID | CLASS_PRE_CONTENT, 0));
    // "FAN_REPORT_NAME ... requires FAN_REPORT_DIR_FID".
    assert!(!ok(REPORT_NAME, 0) && !ok(REPORT_NAME | REPORT_FID, 0) && ok(REPORT_NAME | REPORT_DIR_FID, 0));
    // "FAN_REPORT_TARGET_FID ... must be provided in conjunction with FAN_REPORT_FID,
    // FAN_REPORT_DIR_FID and FAN_REPORT_NAME".
    assert!(ok(REPORT_TARGET_FID | REPORT_FID | REPORT_DIR_FID | REPORT_NAME, 0));
    assert!(!ok(REPORT_TARGET_FID | REPORT_DIR_FID | REPORT_NAME, 0) && !ok(REPORT_TARGET_FID | REPORT_FID, 0));
    // "EINVAL ... FAN_REPORT_PIDFD and FAN_REPORT_TID were both set".
    assert!(ok(REPORT_PIDFD, 0) && ok(REPORT_TID, 0) && !ok(REPORT_PIDFD | REPORT_TID, 0));
    // Both class bits: no such class; an unknown flag; FAN_ENABLE_AUDIT without audit.
    assert!(!ok(CLASS_BITS, 0) && !ok(UNKNOWN, 0) && !ok(ENABLE_AUDIT, 0));
    // event_f_flags: an access mode that is none of the three, or a flag that is no event
    // file flag.
    assert!(!ok(0, fflag::ACCMODE) && !ok(0, fflag::DIRECTORY));
    assert!(ok(0, fflag::APPEND | fflag::NONBLOCK | fflag::NOATIME | fflag::LARGEFILE));
    // Through the model: a step that changes nothing else.
    let mut m = Model::new(Semantics::Current);
    assert_eq!(run(&mut m, 0, Op::Init { flags: REPORT_NAME, fflags: 0, unpriv: false }).ret, Some(Ret::Err(EINVAL)));
    assert_eq!(run(&mut m, 0, Op::Init { flags: CLASS_CONTENT, fflags: 0, unpriv: false }).ret, Some(Ret::Ok(0)));
    assert_eq!(m.groups_created(), 0);
    // Unprivileged (fanotify(7)): a notification group with file handles only; admin flags and
    // fd reporting are EPERM, checked before anything else.
    let unpriv = |f: u16, ff: u8| fanotify_init_errno(f, ff, true);
    assert_eq!(unpriv(REPORT_FID, 0), None);
    assert_eq!(unpriv(REPORT_DIR_FID | REPORT_NAME | CLOEXEC, fflag::RDWR), None);
    assert_eq!(unpriv(0, 0), Some(EPERM));
    assert_eq!(unpriv(REPORT_FID | CLASS_CONTENT, 0), Some(EPERM));
    assert_eq!(unpriv(REPORT_FID | UNLIMITED_QUEUE, 0), Some(EPERM));
    assert_eq!(unpriv(REPORT_FID | REPORT_TID, 0), Some(EPERM));
    assert_eq!(unpriv(CLASS_BITS, fflag::ACCMODE), Some(EPERM), "EPERM before EINVAL");
    // Past the privilege check the flag rules are the same.
    assert_eq!(unpriv(REPORT_NAME | REPORT_FID, 0), Some(EINVAL));
    assert_eq!(unpriv(REPORT_FID | UNKNOWN, 0), Some(EINVAL));
}

/// fanotify_mark(2): "FAN_MARK_FILESYSTEM: Mark the filesystem specified by pathname. ... All
/// the contained files and directories of the filesystem from any mount point will be
/// monitored"; FAN_MARK_MOUNT likewise for the mount. FAN_ONDIR: "Without this flag, events
/// are created only for files". An inode mark's ignore mask applies to the group's events from
/// its filesystem mark (the kernel merges a group's marks of every type, send_to_group()).
#[test]
fn filesystem_and_mount_marks() {
    for mount in [false, true] {
        let mut m = Model::new(Semantics::Current);
        ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
        ok(&mut m, 0, Op::FsMark { group: 0, inode: 3, mask: mask::OPEN, flags: 0, mount });
        ok(&mut m, 1, Op::Mkdir { inode: D1 });
        ok(&mut m, 1, Op::Create { inode: path::of(1, 0) });
        ok(&mut m, 1, Op::Open { inode: 0 });
        ok(&mut m, 1, Op::Open { inode: path::of(1, 0) });
        ok(&mut m, 1, Op::Open { inode: D1 });
        let (d1, f) = (m.lookup(D1).unwrap(), m.lookup(path::of(1, 0)).unwrap());
        assert_ne!(d1, f);
        assert_eq!(evs(&mut m, 0), [ev(mask::OPEN, 0, 1, NO_NAME), ev(mask::OPEN, f, 1, NO_NAME)], "mount={mount}");
        // FAN_ONDIR: directories too.
        ok(&mut m, 0, Op::FsMark { group: 0, inode: 0, mask: mask::OPEN | mask::ISDIR, flags: 0, mount });
        ok(&mut m, 1, Op::Open { inode: D1 });
        assert_eq!(evs(&mut m, 0), [ev(mask::OPEN, d1, 1, NO_NAME)]);
        // An ignore mask on one file's mark silences the filesystem mark for that file only.
        ok(&mut m, 0, Op::Watch { group: 0, inode: 1, mask: mask::OPEN, flags: flag::IGNORED | flag::SURV });
        ok(&mut m, 1, Op::Open { inode: 1 });
        ok(&mut m, 1, Op::Open { inode: 2 });
        assert_eq!(evs(&mut m, 0), [ev(mask::OPEN, 2, 1, NO_NAME)]);
        // Removing the filesystem mark's events ends them; removing it twice is ENOENT.
        ok(&mut m, 0, Op::FsMark { group: 0, inode: 0, mask: mask::OPEN | mask::ISDIR, flags: flag::REMOVE, mount });
        ok(&mut m, 1, Op::Open { inode: 2 });
        assert_eq!(run(&mut m, 0, Op::ReadEvents { group: 0 }).ret, Some(Ret::Err(EAGAIN)));
        let again = Op::FsMark { group: 0, inode: 0, mask: mask::OPEN, flags: flag::REMOVE, mount };
        assert_eq!(err(&mut m, again), ENOENT);
        // The other kind of mark is a mark of its own.
        ok(&mut m, 0, Op::FsMark { group: 0, inode: 0, mask: mask::ACCESS, flags: 0, mount: !mount });
        assert_eq!(err(&mut m, again), ENOENT);
    }
}

/// fanotify_mark(2) EINVAL: "The fanotify file descriptor was not obtained with
/// fanotify_init(2)" (an inotify fd); events that need file handles (FAN_CREATE, FAN_ATTRIB,
/// ...) with a group reporting fds; "FAN_MARK_MOUNT" with them in any case; permission events
/// for a FAN_CLASS_NOTIF group; ENOENT for a path that is not there; ENOTDIR with
/// FAN_MARK_ONLYDIR on a file. FAN_EVENT_ON_CHILD is dropped from such marks.
#[test]
fn filesystem_mark_errors() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::Inotify));
    ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    let fs = |group, inode, mask, flags| Op::FsMark { group, inode, mask, flags, mount: false };
    assert_eq!(err(&mut m, fs(0, 0, mask::OPEN, 0)), EINVAL);
    assert_eq!(err(&mut m, fs(1, 0, mask::OPEN | mask::CREATE, 0)), EINVAL);
    assert_eq!(err(&mut m, Op::FsMark { group: 1, inode: 0, mask: mask::ATTRIB, flags: 0, mount: true }), EINVAL);
    assert_eq!(err(&mut m, fs(1, 0, mask::OPEN_PERM, 0)), EINVAL);
    assert_eq!(err(&mut m, fs(1, path::of(1, 0), mask::OPEN, 0)), ENOENT);
    assert_eq!(err(&mut m, fs(1, 0, mask::OPEN, flag::ONLYDIR)), ENOTDIR);
    assert_eq!(err(&mut m, fs(5, 0, mask::OPEN, 0)), EBADF);
    assert_eq!(err(&mut m, fs(1, 0, 0, 0)), EINVAL);
    // FAN_EVENT_ON_CHILD alone: nothing left but the (umask) flag, so nothing to remove.
    ok(&mut m, 0, fs(1, D0, mask::OPEN | mask::ON_CHILD, 0));
    ok(&mut m, 1, Op::Open { inode: 0 });
    assert_eq!(evs(&mut m, 1), [ev(mask::OPEN, 0, 1, NO_NAME)]);
    // inotify flags are not fanotify's.
    assert_eq!(m.step(Step { task: 0, op: fs(1, 0, mask::OPEN, flag::ONESHOT) }), Err(Invalid::BadArgs));
}

/// A permission event from a filesystem mark blocks every open in the filesystem until the
/// listener answers, in priority order with inode marks of other groups.
#[test]
fn filesystem_permission_marks() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::FanContent));
    ok(&mut m, 0, Op::CreateGroup(Class::FanPreContent));
    ok(&mut m, 0, Op::FsMark { group: 0, inode: 0, mask: mask::OPEN_PERM, flags: 0, mount: false });
    ok(&mut m, 0, Op::AddMark { group: 1, inode: 2, mask: mask::OPEN_PERM });
    assert_eq!(run(&mut m, 1, Op::Open { inode: 2 }).ret, None);
    // Pre-content first, then content.
    assert_eq!(evs(&mut m, 1), [ev(mask::OPEN_PERM, 2, 1, NO_NAME)]);
    assert_eq!(run(&mut m, 0, Op::ReadEvents { group: 0 }).ret, Some(Ret::Err(EAGAIN)));
    ok(&mut m, 0, Op::Answer { group: 1, waiter: 1, allow: true });
    assert!(m.blocked(1));
    assert_eq!(evs(&mut m, 0), [ev(mask::OPEN_PERM, 2, 1, NO_NAME)]);
    let r = run(&mut m, 0, Op::Answer { group: 0, waiter: 1, allow: true });
    assert_eq!(r.released.as_slice()[0].task, 1);
    // An ignore mask on the file's own mark of the same group lets it through.
    ok(&mut m, 0, Op::Watch { group: 0, inode: 3, mask: mask::OPEN_PERM, flags: flag::IGNORED | flag::SURV });
    ok(&mut m, 2, Op::Open { inode: 3 });
    assert_eq!(run(&mut m, 2, Op::Open { inode: 1 }).ret, None);
}

/// inotify(7): "If successive output inotify events produced on the inotify file descriptor
/// are identical (same wd, mask, cookie, and name), then they are coalesced". A watch removed
/// and added again gets a new wd, so its IN_IGNORED is not the old one's (found by a trust
/// run in session 6: seed 41, scenario 10).
#[test]
fn inotify_merges_only_events_of_one_watch() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::Inotify));
    ok(&mut m, 0, Op::AddMark { group: 0, inode: 0, mask: mask::OPEN });
    ok(&mut m, 0, Op::RemoveMark { group: 0, inode: 0 });
    ok(&mut m, 0, Op::AddMark { group: 0, inode: 0, mask: mask::OPEN });
    ok(&mut m, 0, Op::RemoveMark { group: 0, inode: 0 });
    assert_eq!(evs(&mut m, 0), [ev(mask::IGNORED, 0, 0, NO_NAME), ev(mask::IGNORED, 0, 0, NO_NAME)]);
    // One watch: two identical events in a row are one.
    ok(&mut m, 0, Op::AddMark { group: 0, inode: 0, mask: mask::OPEN });
    ok(&mut m, 1, Op::Open { inode: 0 });
    ok(&mut m, 1, Op::Open { inode: 0 });
    assert_eq!(evs(&mut m, 0), [ev(mask::OPEN, 0, 0, NO_NAME)]);
}

/// fsnotify_destroy_group(): "Some marks can still be pinned when waiting for response from
/// userspace. Wait for those now." A permission waiter pins the mark at the cursor of each
/// list (fsnotify_prepare_user_wait()): on the filesystem's list that is the filesystem mark
/// of the next group in delivery order, so closing that group waits for the answer; a group
/// already passed is not pinned. Found by the first trust run with filesystem marks
/// (session 6: seed 43, scenario 307).
#[test]
fn closing_a_group_whose_filesystem_mark_a_waiter_pins_waits_for_the_answer() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::FanPreContent));
    ok(&mut m, 0, Op::CreateGroup(Class::FanContent));
    ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    ok(&mut m, 0, Op::AddMark { group: 1, inode: 1, mask: mask::OPEN_PERM });
    ok(&mut m, 0, Op::FsMark { group: 0, inode: 0, mask: mask::OPEN, flags: 0, mount: false });
    ok(&mut m, 0, Op::FsMark { group: 2, inode: 0, mask: mask::OPEN, flags: 0, mount: false });
    assert_eq!(run(&mut m, 1, Op::Open { inode: 1 }).ret, None);
    // The pre-content group comes first: passed, not pinned.
    assert_eq!(run(&mut m, 2, Op::Close { group: 0 }).ret, Some(Ret::Ok(0)));
    // The notification group comes after the waiting content group: pinned.
    assert_eq!(run(&mut m, 3, Op::Close { group: 2 }).ret, None);
    assert!(m.blocked(3) && !m.waits_for_grace_period(3));
    assert_eq!(evs(&mut m, 1), [ev(mask::OPEN_PERM, 1, 1, NO_NAME)]);
    let r = run(&mut m, 0, Op::Answer { group: 1, waiter: 1, allow: true });
    let released: Vec<u8> = r.released.as_slice().iter().map(|x| x.task).collect();
    assert!(released.contains(&1) && released.contains(&3), "{released:?}");
    assert!(m.no_lost_wakeups());
    // Under pre-4.12 semantics there is no pin (the waiter holds SRCU instead).
    let mut m = Model::new(Semantics::Pre412);
    ok(&mut m, 0, Op::CreateGroup(Class::FanContent));
    ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    ok(&mut m, 0, Op::AddMark { group: 0, inode: 1, mask: mask::OPEN_PERM });
    assert_eq!(run(&mut m, 1, Op::Open { inode: 1 }).ret, None);
    assert_eq!(run(&mut m, 3, Op::Close { group: 1 }).ret, Some(Ret::Ok(0)), "no marks: no grace period");
}

/// do_fanotify_mark(): "If some other task has this inode open for write we should not add an
/// ignore mask, unless that ignore mask is supposed to survive modification changes anyway"
/// (and the call returns 0). A write's open() waiting for a permission answer holds the file
/// open for write. Found by a trust run in session 6 (seed 54, scenario 326).
#[test]
fn no_ignore_mask_on_a_file_open_for_write() {
    for surv in [false, true] {
        let mut m = Model::new(Semantics::Current);
        ok(&mut m, 0, Op::CreateGroup(Class::FanContent));
        ok(&mut m, 0, Op::AddMark { group: 0, inode: 0, mask: mask::OPEN | mask::OPEN_PERM });
        assert_eq!(run(&mut m, 1, Op::Write { inode: 0 }).ret, None);
        let flags = flag::IGNORED | if surv { flag::SURV } else { 0 };
        ok(&mut m, 0, Op::Watch { group: 0, inode: 0, mask: mask::OPEN, flags });
        assert_eq!(evs(&mut m, 0), [ev(mask::OPEN_PERM, 0, 1, NO_NAME)]);
        ok(&mut m, 0, Op::Answer { group: 0, waiter: 1, allow: true });
        // Without SURV the ignore mask was never added: the write's OPEN is reported.
        let want = if surv { Vec::new() } else { std::vec![ev(mask::OPEN, 0, 1, NO_NAME)] };
        assert_eq!(evs(&mut m, 0), want, "surv={surv}");
    }
}

/// do_fanotify_mark(): for a non-directory "umask = FAN_EVENT_ON_CHILD" replaces the legacy
/// ignore mask's umask (FAN_ONDIR | FAN_EVENT_ON_CHILD), so a mark on a file left with only
/// FAN_ONDIR in its mask survives an ignore-mask removal and can still be removed (0, not
/// ENOENT). Found by a review in session 6.
#[test]
fn a_file_mark_left_with_ondir_survives_an_ignore_removal() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    ok(&mut m, 0, Op::AddMark { group: 0, inode: 0, mask: mask::OPEN | mask::ISDIR });
    ok(&mut m, 0, Op::Watch { group: 0, inode: 0, mask: mask::OPEN, flags: flag::REMOVE });
    ok(&mut m, 0, Op::Watch { group: 0, inode: 0, mask: mask::ACCESS, flags: flag::REMOVE | flag::IGNORED });
    ok(&mut m, 0, Op::Watch { group: 0, inode: 0, mask: mask::ACCESS, flags: flag::REMOVE });
}

/// proc(5) "/proc/pid/fdinfo": for inotify "wd ... mask: The mask of events being monitored"
/// (with IN_ONESHOT / IN_EXCL_UNLINK, inotify_mark_user_mask()); for fanotify "mflags ...
/// mask ... ignored_mask" per inode, mount or filesystem mark (fs/notify/fdinfo.c).
#[test]
fn fdinfo_shows_every_mark_with_its_masks() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    ok(&mut m, 0, Op::CreateGroup(Class::Inotify));
    ok(&mut m, 0, Op::AddMark { group: 0, inode: D0, mask: mask::OPEN | mask::ISDIR | mask::ON_CHILD });
    ok(&mut m, 0, Op::Watch { group: 0, inode: 1, mask: mask::ACCESS, flags: flag::IGNORED | flag::SURV });
    ok(&mut m, 0, Op::FsMark { group: 0, inode: 0, mask: mask::MODIFY | mask::ON_CHILD, flags: 0, mount: false });
    ok(&mut m, 0, Op::Watch { group: 1, inode: 2, mask: mask::OPEN, flags: flag::ONESHOT | flag::EXCL_UNLINK });
    ok(&mut m, 0, Op::AddMark { group: 1, inode: D0, mask: mask::CREATE });
    let fd = |m: &mut Model, g| {
        let mut v = run(m, 0, Op::Fdinfo { group: g }).events.as_slice().to_vec();
        v.sort();
        v
    };
    let mut want = std::vec![
        ev(mask::OPEN | mask::ISDIR | mask::ON_CHILD, ROOT, 0, FDINFO_MARK),
        Ev { mask: 0, inode: 1, task: flag::SURV as u8, name: FDINFO_MARK, dir: NO_NODE },
        ev(mask::ACCESS, 1, 0, FDINFO_IGNORED),
        // FAN_EVENT_ON_CHILD is dropped from a filesystem mark.
        ev(mask::MODIFY, SB_NODE, 0, FDINFO_MARK),
    ];
    want.sort();
    assert_eq!(fd(&mut m, 0), want);
    // inotify: events and flags; a directory's watch shows no FS_EVENT_ON_CHILD.
    let mut want = std::vec![
        Ev {
            mask: mask::OPEN,
            inode: 2,
            task: (flag::ONESHOT | flag::EXCL_UNLINK) as u8,
            name: FDINFO_MARK,
            dir: NO_NODE
        },
        ev(mask::CREATE, ROOT, 0, FDINFO_MARK),
    ];
    want.sort();
    assert_eq!(fd(&mut m, 1), want);
    // A modification clears the (non-surviving) ignore mask; the mark stays with mask 0.
    ok(&mut m, 0, Op::Watch { group: 0, inode: 3, mask: mask::ACCESS, flags: flag::IGNORED });
    ok(&mut m, 1, Op::Write { inode: 3 });
    assert!(fd(&mut m, 0).contains(&ev(0, 3, 0, FDINFO_MARK)));
    // A oneshot watch that fired is gone; a closed group is EBADF.
    ok(&mut m, 1, Op::Open { inode: 2 });
    assert_eq!(fd(&mut m, 1), [ev(mask::CREATE, ROOT, 0, FDINFO_MARK)]);
    ok(&mut m, 0, Op::Close { group: 1 });
    assert_eq!(run(&mut m, 0, Op::Fdinfo { group: 1 }).ret, Some(Ret::Err(EBADF)));
}

/// fanotify_mark(2), FAN_MARK_IGNORE (5.19) and do_fanotify_mark()'s checks in 6.12: not with
/// FAN_MARK_IGNORED_MASK (EINVAL, before the fd); on a directory (EISDIR) or a filesystem or
/// mount (EINVAL) only with FAN_MARK_IGNORED_SURV_MODIFY; FAN_ONDIR / FAN_EVENT_ON_CHILD on a
/// file's mark are ENOTDIR ("strict validation ... with v5.17+ APIs"); and
/// fanotify_may_update_existing_mark(): no going back to the legacy kind, nor from surviving
/// modification to not (EEXIST).
#[test]
fn fan_mark_ignore_errnos() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    let w = |inode, mask, flags| Op::Watch { group: 0, inode, mask, flags };
    assert_eq!(err(&mut m, w(0, mask::OPEN, flag::IGNORE | flag::IGNORED)), EINVAL);
    assert_eq!(
        err(&mut m, Op::Watch { group: 9, inode: 0, mask: mask::OPEN, flags: flag::IGNORE | flag::IGNORED }),
        EINVAL
    );
    assert_eq!(err(&mut m, w(D0, mask::OPEN, flag::IGNORE)), EISDIR);
    ok(&mut m, 0, w(D0, mask::OPEN, flag::IGNORE | flag::SURV));
    let fs = |flags| Op::FsMark { group: 0, inode: 0, mask: mask::OPEN, flags, mount: false };
    assert_eq!(err(&mut m, fs(flag::IGNORE)), EINVAL);
    ok(&mut m, 0, fs(flag::IGNORE | flag::SURV));
    assert_eq!(err(&mut m, w(0, mask::OPEN | mask::ISDIR, flag::IGNORE)), ENOTDIR);
    assert_eq!(err(&mut m, w(0, mask::OPEN | mask::ON_CHILD, flag::IGNORE | flag::SURV)), ENOTDIR);
    // The legacy kind may take FAN_ONDIR on a file (it is masked out).
    ok(&mut m, 0, w(1, mask::OPEN | mask::ISDIR, flag::IGNORED));
    // A file's mark: FAN_MARK_IGNORE without SURV is fine, then the legacy kind is EEXIST.
    ok(&mut m, 0, w(0, mask::OPEN, flag::IGNORE));
    assert_eq!(err(&mut m, w(0, mask::ACCESS, flag::IGNORED)), EEXIST);
    // A legacy ignore mask may become the new kind; one that survives cannot stop surviving.
    ok(&mut m, 0, w(1, mask::ACCESS, flag::IGNORE | flag::SURV));
    assert_eq!(err(&mut m, w(1, mask::OPEN, flag::IGNORE)), EEXIST);
    ok(&mut m, 0, w(2, mask::OPEN, flag::IGNORED | flag::SURV));
    ok(&mut m, 0, w(2, mask::OPEN, flag::IGNORED));
    // Removing a FAN_MARK_IGNORE mask needs no SURV.
    ok(&mut m, 0, w(D0, mask::OPEN, flag::IGNORE | flag::REMOVE));
}

/// fsnotify_effective_ignore_mask(): a FAN_MARK_IGNORE mask applies to events on a directory
/// only with FAN_ONDIR and to events on a child only with FAN_EVENT_ON_CHILD; the legacy kind
/// always applies to the directory and to children when the mark watches them. A parent mark
/// whose ignore mask has FAN_EVENT_ON_CHILD takes part in its children's events
/// (fsnotify_iter_select_report_types()).
#[test]
fn fan_mark_ignore_applies_by_its_flags() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    ok(&mut m, 0, Op::FsMark { group: 0, inode: 0, mask: mask::OPEN | mask::ISDIR, flags: 0, mount: true });
    let opens = |m: &mut Model| {
        ok(m, 1, Op::Open { inode: D0 });
        ok(m, 1, Op::Open { inode: 0 });
        let mut v: Vec<u8> = evs(m, 0).iter().map(|e| e.inode).collect();
        v.sort();
        v
    };
    assert_eq!(opens(&mut m), [0, ROOT]);
    let w = |mask, flags| Op::Watch { group: 0, inode: D0, mask, flags };
    // Without the flags the directory's own open and its child's are both still reported.
    ok(&mut m, 0, w(mask::OPEN, flag::IGNORE | flag::SURV));
    assert_eq!(opens(&mut m), [0, ROOT]);
    ok(&mut m, 0, w(mask::OPEN | mask::ISDIR, flag::IGNORE | flag::SURV));
    assert_eq!(opens(&mut m), [0]);
    ok(&mut m, 0, w(mask::OPEN | mask::ON_CHILD, flag::IGNORE | flag::SURV));
    assert_eq!(opens(&mut m), Vec::<u8>::new());
    ok(&mut m, 0, w(mask::ISDIR, flag::IGNORE | flag::REMOVE));
    assert_eq!(opens(&mut m), [ROOT]);
    // The legacy kind on another group's directory mark: the directory always, the child not
    // (the mark does not watch children).
    ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    ok(&mut m, 0, Op::FsMark { group: 1, inode: 0, mask: mask::OPEN | mask::ISDIR, flags: 0, mount: false });
    ok(&mut m, 0, Op::Watch { group: 1, inode: D0, mask: mask::OPEN, flags: flag::IGNORED | flag::SURV });
    ok(&mut m, 1, Op::Open { inode: D0 });
    ok(&mut m, 1, Op::Open { inode: 0 });
    let got: Vec<u8> = evs(&mut m, 1).iter().map(|e| e.inode).collect();
    assert_eq!(got, [0]);
}

/// fanotify_mark_user_flags(): fdinfo's `mflags:` shows FAN_MARK_IGNORE for a mark whose
/// ignore mask is that kind (FSNOTIFY_MARK_FLAG_HAS_IGNORE_FLAGS), with SURV.
#[test]
fn fdinfo_shows_fan_mark_ignore() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    ok(&mut m, 0, Op::Watch { group: 0, inode: D0, mask: mask::OPEN | mask::ISDIR, flags: flag::IGNORE | flag::SURV });
    ok(&mut m, 0, Op::Watch { group: 0, inode: 0, mask: mask::OPEN, flags: flag::IGNORED });
    let mut got = run(&mut m, 0, Op::Fdinfo { group: 0 }).events.as_slice().to_vec();
    got.sort();
    let mut want = std::vec![
        Ev {
            mask: 0,
            inode: ROOT,
            task: fdinfo_flags_to_task(flag::IGNORE | flag::SURV),
            name: FDINFO_MARK,
            dir: NO_NODE
        },
        ev(mask::OPEN | mask::ISDIR, ROOT, 0, FDINFO_IGNORED),
        ev(0, 0, 0, FDINFO_MARK),
        ev(mask::OPEN, 0, 0, FDINFO_IGNORED),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(fdinfo_flags_from_task(fdinfo_flags_to_task(flag::IGNORE | flag::SURV)), flag::IGNORE | flag::SURV);
}

/// Permission events and ignore masks: a FAN_MARK_IGNORE mask on the file hides the file's
/// permission event; a directory mark with FAN_EVENT_ON_CHILD asks for its children's
/// (the parent's mark list is walked: `__fsnotify_parent()`), and the directory's
/// FAN_MARK_IGNORE mask with FAN_EVENT_ON_CHILD hides them again.
#[test]
fn permission_events_through_a_parent_and_ignore_masks() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::FanContent));
    ok(&mut m, 0, Op::AddMark { group: 0, inode: 0, mask: mask::OPEN_PERM });
    ok(&mut m, 0, Op::Watch { group: 0, inode: 0, mask: mask::OPEN_PERM, flags: flag::IGNORE });
    ok(&mut m, 1, Op::Open { inode: 0 });
    ok(&mut m, 0, Op::AddMark { group: 0, inode: D0, mask: mask::OPEN_PERM | mask::ON_CHILD });
    assert_eq!(run(&mut m, 1, Op::Open { inode: 1 }).ret, None, "the child's open waits");
    assert_eq!(evs(&mut m, 0), [ev(mask::OPEN_PERM, 1, 1, NO_NAME)]);
    ok(&mut m, 0, Op::Answer { group: 0, waiter: 1, allow: true });
    ok(
        &mut m,
        0,
        Op::Watch { group: 0, inode: D0, mask: mask::OPEN_PERM | mask::ON_CHILD, flags: flag::IGNORE | flag::SURV },
    );
    ok(&mut m, 1, Op::Open { inode: 1 });
    // Without FAN_EVENT_ON_CHILD in the ignore mask the children are asked again.
    ok(&mut m, 0, Op::Watch { group: 0, inode: D0, mask: mask::ON_CHILD, flags: flag::IGNORE | flag::REMOVE });
    assert_eq!(run(&mut m, 1, Op::Open { inode: 1 }).ret, None);
}

// FAN_REPORT_FID / DIR_FID / NAME / TARGET_FID (fanotify_init(2), fanotify(7)).

const FID: u16 = init::REPORT_FID;
const DFID_NAME: u16 = init::REPORT_DIR_FID | init::REPORT_NAME;

/// An event of a group reporting file handles: `dir`/`name` the DFID(_NAME) record,
/// `inode` the FID record ([`NO_NODE`]: none).
fn fev(mask: u32, inode: u8, dir: u8, name: u8, task: u8) -> Ev {
    Ev { mask, inode, task, name, dir }
}

/// fanotify(7): with FAN_REPORT_FID "the events FAN_CREATE, FAN_DELETE, FAN_MOVE ... the
/// file handle identifies the directory"; FAN_ONDIR is reported for events on directories;
/// FAN_ATTRIB and FAN_DELETE_SELF, which need file handles, are EINVAL for an fd group
/// (fanotify_mark(2)) and on a mount mark.
#[test]
fn fid_groups_report_the_directory_for_entry_events() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    ok(&mut m, 0, Op::FidGroup { report: FID, unpriv: false });
    ok(&mut m, 1, Op::Unlink { inode: 5 });
    let dirent = mask::CREATE | mask::DELETE | mask::ISDIR;
    assert_eq!(err(&mut m, Op::Watch { group: 0, inode: D0, mask: dirent, flags: 0 }), EINVAL);
    assert_eq!(err(&mut m, Op::FsMark { group: 1, inode: D0, mask: mask::ATTRIB, flags: 0, mount: true }), EINVAL);
    ok(&mut m, 0, Op::FsMark { group: 1, inode: D0, mask: mask::ATTRIB, flags: 0, mount: false });
    ok(&mut m, 0, Op::Watch { group: 1, inode: D0, mask: dirent, flags: 0 });
    ok(&mut m, 1, Op::Create { inode: 5 });
    ok(&mut m, 2, Op::Mkdir { inode: D1 });
    ok(&mut m, 2, Op::Attrib { inode: 5 });
    ok(&mut m, 2, Op::Attrib { inode: 5 });
    let i5 = m.lookup(5).unwrap();
    // Two chmods of one file by one task merge; the create and the mkdir do not (FAN_ONDIR).
    assert_eq!(
        evs(&mut m, 1),
        [
            fev(mask::CREATE, ROOT, NO_NODE, NO_NAME, 1),
            fev(mask::CREATE | mask::ISDIR, ROOT, NO_NODE, NO_NAME, 2),
            fev(mask::ATTRIB, i5, NO_NODE, NO_NAME, 2),
        ]
    );
}

/// fanotify_init(2): without CAP_SYS_ADMIN a group must report file handles and may not
/// report thread ids; fanotify_mark(2): "EPERM ... an unprivileged user ... mount or
/// filesystem mark" (for such a group whoever calls). fanotify(7): an unprivileged listener
/// sees the pid only of its own process; without FAN_REPORT_TID that is the thread group's,
/// so the events of two threads on one file merge.
#[test]
fn unprivileged_groups_mark_inodes_only_and_see_their_process() {
    let mut m = Model::new(Semantics::Current);
    assert_eq!(err(&mut m, Op::Init { flags: init::REPORT_FID | init::REPORT_TID, fflags: 0, unpriv: true }), EPERM);
    ok(&mut m, 0, Op::FidGroup { report: FID, unpriv: true });
    ok(&mut m, 0, Op::FidGroup { report: FID, unpriv: false });
    for g in [0, 1] {
        ok(&mut m, 0, Op::Watch { group: g, inode: 5, mask: mask::ATTRIB, flags: 0 });
    }
    for mount in [false, true] {
        let fs = Op::FsMark { group: 0, inode: D0, mask: mask::OPEN, flags: 0, mount };
        assert_eq!(err(&mut m, fs), EPERM);
        // Before the mount mark's own EINVAL for events that need file handles, and on removal.
        let attrib = Op::FsMark { group: 0, inode: D0, mask: mask::ATTRIB, flags: flag::REMOVE, mount };
        assert_eq!(err(&mut m, attrib), EPERM);
        assert_eq!(err(&mut m, Op::PipeMark { group: 0, mask: mask::OPEN, flags: 0, obj: MarkObj::Fs }), EPERM);
    }
    // A bad class still fails as EINVAL, before the privilege check.
    assert_eq!(err(&mut m, Op::FsMark { group: 1, inode: D0, mask: mask::ATTRIB, flags: 0, mount: true }), EINVAL);
    ok(&mut m, 1, Op::Attrib { inode: 5 });
    ok(&mut m, 2, Op::Attrib { inode: 5 });
    let i5 = m.lookup(5).unwrap();
    assert_eq!(evs(&mut m, 0), [fev(mask::ATTRIB, i5, NO_NODE, NO_NAME, PROCESS_TASK)]);
    assert_eq!(
        evs(&mut m, 1),
        [fev(mask::ATTRIB, i5, NO_NODE, NO_NAME, 1), fev(mask::ATTRIB, i5, NO_NODE, NO_NAME, 2)]
    );
}

/// fanotify(7): FAN_REPORT_DFID_NAME reports "the directory file handle and the name of the
/// entry"; for an event on a directory itself the name is "."; with FAN_REPORT_FID too the
/// child's file handle follows in a second record; DIR_FID marks on files ask for the
/// parent (FAN_EVENT_ON_CHILD shows in fdinfo).
#[test]
fn dfid_name_groups_report_parent_and_name() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::FidGroup { report: DFID_NAME, unpriv: false });
    ok(&mut m, 0, Op::FidGroup { report: DFID_NAME | FID, unpriv: false });
    ok(&mut m, 1, Op::Unlink { inode: 6 });
    for g in 0..2 {
        ok(&mut m, 0, Op::Watch { group: g, inode: 3, mask: mask::OPEN | mask::ATTRIB, flags: 0 });
        ok(&mut m, 0, Op::Watch { group: g, inode: D0, mask: mask::OPEN | mask::ISDIR | mask::CREATE, flags: 0 });
    }
    let info = run(&mut m, 0, Op::Fdinfo { group: 0 });
    assert!(info.events.as_slice().contains(&Ev {
        mask: mask::OPEN | mask::ATTRIB | mask::ON_CHILD,
        inode: 3,
        task: 0,
        name: FDINFO_MARK,
        dir: NO_NODE
    }));
    ok(&mut m, 1, Op::Open { inode: 3 });
    ok(&mut m, 1, Op::Open { inode: D0 });
    ok(&mut m, 1, Op::Create { inode: 6 });
    ok(&mut m, 2, Op::Unlink { inode: 3 });
    assert_eq!(
        evs(&mut m, 0),
        [
            fev(mask::OPEN, NO_NODE, ROOT, 3, 1),
            fev(mask::OPEN | mask::ISDIR, NO_NODE, ROOT, DOT_NAME, 1),
            fev(mask::CREATE, NO_NODE, ROOT, 6, 1),
        ]
    );
    // The unlinked file's FAN_ATTRIB (link count) has no parent: only FID can report it.
    assert_eq!(
        evs(&mut m, 1),
        [
            fev(mask::OPEN, 3, ROOT, 3, 1),
            fev(mask::OPEN | mask::ISDIR, NO_NODE, ROOT, DOT_NAME, 1),
            fev(mask::CREATE, NO_NODE, ROOT, 6, 1),
            fev(mask::ATTRIB, 3, NO_NODE, NO_NAME, 2),
        ]
    );
    // FAN_REPORT_NAME needs FAN_REPORT_DIR_FID (fanotify_init(2): EINVAL); no group is made.
    assert_eq!(err(&mut m, Op::FidGroup { report: init::REPORT_NAME, unpriv: false }), EINVAL);
    assert_eq!(m.groups_created(), 2);
}

/// fanotify_init(2): FAN_REPORT_TARGET_FID reports the child's file handle with entry
/// events; fanotify_mark(2): ENOTDIR for entry events or FAN_ONDIR on a file's mark in such
/// a group (strict validation).
#[test]
fn target_fid_reports_the_entry() {
    let mut m = Model::new(Semantics::Current);
    let target = DFID_NAME | FID | init::REPORT_TARGET_FID;
    ok(&mut m, 0, Op::FidGroup { report: target, unpriv: false });
    ok(&mut m, 1, Op::Unlink { inode: 7 });
    assert_eq!(err(&mut m, Op::Watch { group: 0, inode: 2, mask: mask::CREATE, flags: 0 }), ENOTDIR);
    assert_eq!(err(&mut m, Op::Watch { group: 0, inode: 2, mask: mask::OPEN | mask::ISDIR, flags: 0 }), ENOTDIR);
    ok(&mut m, 0, Op::Watch { group: 0, inode: D0, mask: mask::CREATE | mask::MOVED_TO | mask::ISDIR, flags: 0 });
    ok(&mut m, 1, Op::Create { inode: 7 });
    ok(&mut m, 1, Op::Mkdir { inode: D1 });
    ok(&mut m, 1, Op::Rename { from: path::of(0, 1), to: path::of(0, 2) });
    let (i7, d1) = (m.lookup(7).unwrap(), m.lookup(D1).unwrap());
    assert_eq!(
        evs(&mut m, 0),
        [
            fev(mask::CREATE, i7, ROOT, 7, 1),
            fev(mask::CREATE | mask::ISDIR, d1, ROOT, path::dir_entry_name(1), 1),
            fev(mask::MOVED_TO, 1, ROOT, 2, 1),
        ]
    );
}

/// DIR_FID without FID has nothing to report for a file's event that comes without its
/// parent (FAN_DELETE_SELF, FAN_MOVE_SELF): fanotify_group_event_mask() drops it. The
/// DELETE_SELF of a file unlinked while a queued fd event pins it comes with the final
/// dput, in the task that reads that event (it closes the event's fd at once); after an
/// answer, in the released waiter (the guest closes the event's fd before answering).
#[test]
fn events_without_a_parent() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::FidGroup { report: init::REPORT_DIR_FID, unpriv: false });
    ok(&mut m, 0, Op::FidGroup { report: init::REPORT_DIR_FID | FID, unpriv: false });
    ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    for g in 0..2 {
        ok(
            &mut m,
            0,
            Op::FsMark { group: g, inode: D0, mask: mask::DELETE_SELF | mask::MOVE_SELF, flags: 0, mount: false },
        );
    }
    ok(&mut m, 0, Op::AddMark { group: 2, inode: 4, mask: mask::OPEN });
    ok(&mut m, 1, Op::Rename { from: 0, to: 1 });
    ok(&mut m, 1, Op::Open { inode: 4 });
    ok(&mut m, 1, Op::Unlink { inode: 4 });
    assert_eq!(evs(&mut m, 0), []);
    assert_eq!(
        evs(&mut m, 1),
        [fev(mask::MOVE_SELF, 0, NO_NODE, NO_NAME, 1), fev(mask::DELETE_SELF, 1, NO_NODE, NO_NAME, 1)]
    );
    // Reading the fd group's event drops the last pin of i4.
    assert_eq!(evs(&mut m, 2), [ev(mask::OPEN, 4, 1, NO_NAME)]);
    assert_eq!(evs(&mut m, 1), [fev(mask::DELETE_SELF, 4, NO_NODE, NO_NAME, 0)]);
    ok(&mut m, 0, Op::CreateGroup(Class::FanContent));
    ok(&mut m, 0, Op::AddMark { group: 3, inode: 5, mask: mask::OPEN_PERM });
    assert_eq!(run(&mut m, 2, Op::Open { inode: 5 }).ret, None);
    ok(&mut m, 1, Op::Unlink { inode: 5 });
    assert_eq!(evs(&mut m, 3), [ev(mask::OPEN_PERM, 5, 2, NO_NAME)]);
    ok(&mut m, 0, Op::Answer { group: 3, waiter: 2, allow: true });
    assert_eq!(evs(&mut m, 1), [fev(mask::DELETE_SELF, 5, NO_NODE, NO_NAME, 2)]);
}

/// fanotify_should_merge(): two fid events of one object by one task merge whatever their
/// types, and the record is chosen by the merged mask: a DIR_FID group's file event (read as
/// the parent's FID record) merged with an entry event in that directory is read as DFID.
#[test]
fn fid_events_merge_by_object_and_read_by_mask() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::FidGroup { report: init::REPORT_DIR_FID, unpriv: false });
    ok(&mut m, 2, Op::Unlink { inode: 2 });
    ok(&mut m, 0, Op::FsMark { group: 0, inode: 0, mask: mask::CREATE | mask::MODIFY, flags: 0, mount: false });
    ok(&mut m, 3, Op::Write { inode: 1 });
    assert_eq!(evs(&mut m, 0), [fev(mask::MODIFY, ROOT, NO_NODE, NO_NAME, 3)]);
    ok(&mut m, 3, Op::Create { inode: 2 });
    ok(&mut m, 3, Op::Write { inode: 2 });
    assert_eq!(evs(&mut m, 0), [fev(mask::CREATE | mask::MODIFY, NO_NODE, ROOT, NO_NAME, 3)]);
}

/// fanotify_mark(2) of a pipe by its fd (no path): "mount and sb marks are not allowed on
/// kernel internal pseudo fs, like pipe_mnt" (EINVAL on adding; removing one finds nothing, or
/// in a group reporting file handles cannot decode them: EOPNOTSUPP); an inode mark on the pipe
/// is allowed, also a permission one and one needing file handles in such a group; FAN_MARK_ONLYDIR:
/// ENOTDIR; an inotify fd: EINVAL.
#[test]
fn marks_on_a_pipe() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::FanContent));
    ok(&mut m, 0, Op::FidGroup { report: FID, unpriv: false });
    ok(&mut m, 0, Op::CreateGroup(Class::Inotify));
    let pipe = |group, mask, flags, obj| Op::PipeMark { group, mask, flags, obj };
    assert_eq!(err(&mut m, pipe(0, mask::OPEN, 0, MarkObj::Fs)), EINVAL);
    assert_eq!(err(&mut m, pipe(0, mask::OPEN, 0, MarkObj::Mount)), EINVAL);
    assert_eq!(err(&mut m, pipe(0, mask::OPEN, flag::REMOVE, MarkObj::Fs)), ENOENT);
    assert_eq!(err(&mut m, pipe(1, mask::ATTRIB, flag::REMOVE, MarkObj::Fs)), EOPNOTSUPP);
    assert_eq!(err(&mut m, pipe(2, mask::OPEN, 0, MarkObj::Inode)), EINVAL);
    assert_eq!(err(&mut m, pipe(0, mask::OPEN, flag::ONLYDIR, MarkObj::Inode)), ENOTDIR);
    assert_eq!(err(&mut m, pipe(0, mask::CREATE, 0, MarkObj::Inode)), EINVAL);
    ok(&mut m, 0, pipe(0, mask::OPEN_PERM, 0, MarkObj::Inode));
    ok(&mut m, 0, pipe(1, mask::CREATE | mask::ATTRIB, 0, MarkObj::Inode));
    let info = run(&mut m, 0, Op::Fdinfo { group: 1 });
    assert_eq!(
        info.events.as_slice(),
        &[Ev { mask: mask::CREATE | mask::ATTRIB, inode: PIPE_NODE, task: 0, name: FDINFO_MARK, dir: NO_NODE }]
    );
}

/// fanotify_mark(2): FAN_MARK_EVICTABLE "is only relevant for inode marks" (EINVAL on a
/// filesystem or mount); a mark that pins its inode cannot become evictable (EEXIST), an
/// evictable one updated without the flag pins it from then on; fdinfo's `mflags:` shows it.
#[test]
fn evictable_marks() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::CreateGroup(Class::FanNotif));
    let mark = |inode, mask, flags| Op::Watch { group: 0, inode, mask, flags };
    assert_eq!(
        err(&mut m, Op::FsMark { group: 0, inode: 0, mask: mask::OPEN, flags: flag::EVICTABLE, mount: false }),
        EINVAL
    );
    ok(&mut m, 0, mark(0, mask::OPEN, flag::EVICTABLE));
    ok(&mut m, 0, mark(1, mask::OPEN, 0));
    assert_eq!(err(&mut m, mark(1, mask::ACCESS, flag::EVICTABLE)), EEXIST);
    ok(&mut m, 0, mark(0, mask::ACCESS, flag::EVICTABLE));
    let shown = |m: &mut Model| {
        run(m, 0, Op::Fdinfo { group: 0 })
            .events
            .as_slice()
            .iter()
            .map(|e| (e.inode, fdinfo_flags_from_task(e.task)))
            .collect::<Vec<_>>()
    };
    assert_eq!(shown(&mut m), [(0, flag::EVICTABLE), (1, 0)]);
    ok(&mut m, 0, mark(0, mask::MODIFY, 0));
    assert_eq!(shown(&mut m), [(0, 0), (1, 0)]);
    assert_eq!(err(&mut m, mark(0, mask::MODIFY, flag::EVICTABLE)), EEXIST);
}

/// d_delete() only unhashes a dentry that others hold: a directory removed while an unlinked
/// file in it is still pinned (a waiter in open()) goes after that file, with the same task,
/// and the file's events keep naming the old directory as their parent.
#[test]
fn a_removed_directory_waits_for_its_pinned_child() {
    let mut m = Model::new(Semantics::Current);
    ok(&mut m, 0, Op::Mkdir { inode: D1 });
    ok(&mut m, 0, Op::Create { inode: path::of(1, 0) });
    let (d1, f) = (m.lookup(D1).unwrap(), m.lookup(path::of(1, 0)).unwrap());
    assert_ne!(d1, f);
    ok(&mut m, 0, Op::CreateGroup(Class::FanContent));
    ok(&mut m, 0, Op::FidGroup { report: init::REPORT_DIR_FID, unpriv: false });
    ok(&mut m, 0, Op::AddMark { group: 0, inode: path::of(1, 0), mask: mask::OPEN_PERM });
    let all = mask::OPEN | mask::DELETE_SELF | mask::DELETE | mask::ISDIR;
    ok(&mut m, 0, Op::FsMark { group: 1, inode: D0, mask: all, flags: 0, mount: false });
    assert_eq!(run(&mut m, 1, Op::Open { inode: path::of(1, 0) }).ret, None);
    ok(&mut m, 2, Op::Unlink { inode: path::of(1, 0) });
    ok(&mut m, 2, Op::Rmdir { inode: D1 });
    // The entry is gone at once; the directory's own end waits.
    assert_eq!(
        evs(&mut m, 1),
        [fev(mask::DELETE, NO_NODE, d1, NO_NAME, 2), fev(mask::DELETE | mask::ISDIR, NO_NODE, ROOT, NO_NAME, 2)]
    );
    assert_eq!(evs(&mut m, 0), [ev(mask::OPEN_PERM, f, 1, NO_NAME)]);
    ok(&mut m, 0, Op::Answer { group: 0, waiter: 1, allow: true });
    assert_eq!(
        evs(&mut m, 1),
        [
            // DIR_FID without FID: the file's open reported by its (old) parent; its own
            // DELETE_SELF has no directory to report.
            fev(mask::OPEN, d1, NO_NODE, NO_NAME, 1),
            fev(mask::DELETE_SELF | mask::ISDIR, NO_NODE, d1, NO_NAME, 1),
        ]
    );
}
