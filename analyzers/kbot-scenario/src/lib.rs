//! Scenarios for the differential checks: small programs of steps across a few tasks that
//! the guest agent runs against the real kernel and refcore predicts.
//!
//! Text format, one step per `;` or line: `t<task> <verb> <args>` with verbs
//! `group inotify|notif|content|precontent` (or `group REPORT`, a notification group that
//! reports file handles: `fid`, `dfid`, `name`, `target` joined by `+`),
//! `mark g<G> i<I> open|perm|open+perm`,
//! `unmark g<G> i<I>`, `open i<I>`, `read g<G>`, `allow g<G> t<W>`, `deny g<G> t<W>`,
//! `unlink i<I>`, `close g<G>`. Groups are numbered in creation order.
//!
//! The tree (issue #16): a path is `i<N>` (in `d0`, the root), `d<K>/i<N>` or `d<K>` (the
//! directory itself); verbs `cat P`, `write P`, `chmod P`, `create P`, `mkdir dK`,
//! `rmdir dK`, `rename P Q`, and `mark g<G> P MASK [FLAGS]` with masks joined by `+` (`open`,
//! `perm`, `access`, `modify`, `attrib`, `closew`, `closenw`, `create`, `delete`,
//! `movedfrom`, `movedto`, `deleteself`, `moveself`, `ondir`, `child`) and flags (`oneshot`,
//! `madd`, `mcreate`, `exclunlink`, `onlydir`, `ignored`, `surv`, `remove`).
//!
//! `pipemark g<G> MASK [FLAGS]` (and `pipe-mountmark`, `pipe-fsmark`) calls fanotify_mark(2)
//! on the scenario's pipe by its fd (a pseudo filesystem's object).
//!
//! `init FLAGS FFLAGS` calls fanotify_init(2) and closes what it makes (only the errno is
//! compared): FLAGS `notif` or joined by `+` from `content`, `precontent`, `cloexec`,
//! `nonblock`, `uqueue`, `umarks`, `audit`, `pidfd`, `tid`, `fid`, `dfid`, `name`, `target`,
//! `fderror`, `unknown`; FFLAGS an access mode `rdonly`, `wronly`, `rdwr` or `badacc`, with
//! `append`, `nonblock`, `cloexec`, `noatime`, `largefile`, `directory`; `unpriv` at the end
//! makes the call as an unprivileged user.

use kbot_refcore::{
    fflag, flag, init, mask, path, Class, Ev, MarkObj, Model, Op, Ret, Semantics, Step, NO_NAME, NO_NODE,
};

pub use kbot_refcore;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Stable name: `scenario/<corpus name>` or `scenario/random-<seed>-<index>`.
    pub name: String,
    pub steps: Vec<Step>,
}

fn class_name(c: Class) -> &'static str {
    match c {
        Class::Inotify => "inotify",
        Class::FanNotif => "notif",
        Class::FanContent => "content",
        Class::FanPreContent => "precontent",
    }
}

const MASKS: &[(u32, &str)] = &[
    (mask::OPEN, "open"),
    (mask::OPEN_PERM, "perm"),
    (mask::IGNORED, "ignored"),
    (mask::ACCESS, "access"),
    (mask::MODIFY, "modify"),
    (mask::ATTRIB, "attrib"),
    (mask::CLOSE_WRITE, "closew"),
    (mask::CLOSE_NOWRITE, "closenw"),
    (mask::CREATE, "create"),
    (mask::DELETE, "delete"),
    (mask::MOVED_FROM, "movedfrom"),
    (mask::MOVED_TO, "movedto"),
    (mask::DELETE_SELF, "deleteself"),
    (mask::MOVE_SELF, "moveself"),
    (mask::OVERFLOW, "overflow"),
    (mask::ISDIR, "ondir"),
    (mask::ON_CHILD, "child"),
];

const FLAGS: &[(u16, &str)] = &[
    (flag::ONESHOT, "oneshot"),
    (flag::MASK_ADD, "madd"),
    (flag::MASK_CREATE, "mcreate"),
    (flag::EXCL_UNLINK, "exclunlink"),
    (flag::ONLYDIR, "onlydir"),
    (flag::IGNORED, "ignored"),
    (flag::SURV, "surv"),
    (flag::REMOVE, "remove"),
    (flag::IGNORE, "ignore"),
    (flag::EVICTABLE, "evictable"),
];

const INIT_FLAGS: &[(u16, &str)] = &[
    (init::CLASS_CONTENT, "content"),
    (init::CLASS_PRE_CONTENT, "precontent"),
    (init::CLOEXEC, "cloexec"),
    (init::NONBLOCK, "nonblock"),
    (init::UNLIMITED_QUEUE, "uqueue"),
    (init::UNLIMITED_MARKS, "umarks"),
    (init::ENABLE_AUDIT, "audit"),
    (init::REPORT_PIDFD, "pidfd"),
    (init::REPORT_TID, "tid"),
    (init::REPORT_FID, "fid"),
    (init::REPORT_DIR_FID, "dfid"),
    (init::REPORT_NAME, "name"),
    (init::REPORT_TARGET_FID, "target"),
    (init::REPORT_FD_ERROR, "fderror"),
    (init::UNKNOWN, "unknown"),
];

const ACCMODES: [&str; 4] = ["rdonly", "wronly", "rdwr", "badacc"];

const FFLAGS: &[(u8, &str)] = &[
    (fflag::APPEND, "append"),
    (fflag::NONBLOCK, "nonblock"),
    (fflag::CLOEXEC, "cloexec"),
    (fflag::NOATIME, "noatime"),
    (fflag::LARGEFILE, "largefile"),
    (fflag::DIRECTORY, "directory"),
];

pub fn init_flags_name(f: u16) -> String {
    let v: Vec<&str> = INIT_FLAGS.iter().filter(|(b, _)| f & b == *b).map(|(_, n)| *n).collect();
    if v.is_empty() {
        "notif".into()
    } else {
        v.join("+")
    }
}

pub fn fflags_name(f: u8) -> String {
    let mut v = vec![ACCMODES[(f & fflag::ACCMODE) as usize]];
    v.extend(FFLAGS.iter().filter(|(b, _)| f & b != 0).map(|(_, n)| *n));
    v.join("+")
}

fn parse_init_flags(tok: Option<&str>) -> Result<u16, StepError> {
    let tok = tok.ok_or(StepError::Missing("fanotify_init flags"))?;
    tok.split('+').try_fold(0, |f, p| match INIT_FLAGS.iter().find(|(_, n)| *n == p) {
        Some((b, _)) => Ok(f | b),
        None if p == "notif" => Ok(f),
        None => Err(StepError::UnknownInitFlag(p.to_string())),
    })
}

fn parse_fflags(tok: Option<&str>) -> Result<u8, StepError> {
    let tok = tok.ok_or(StepError::Missing("event file flags"))?;
    tok.split('+').try_fold(0, |f, p| {
        if let Some(a) = ACCMODES.iter().position(|n| *n == p) {
            return Ok(f | a as u8);
        }
        match FFLAGS.iter().find(|(_, n)| *n == p) {
            Some((b, _)) => Ok(f | b),
            None => Err(StepError::UnknownInitFlag(p.to_string())),
        }
    })
}

pub fn flags_name(f: u16) -> String {
    FLAGS.iter().filter(|(b, _)| f & b != 0).map(|(_, n)| *n).collect::<Vec<_>>().join("+")
}

/// A path's text: `i3`, `d1/i3`, `d1`.
pub fn path_name(p: u8) -> String {
    let (d, n) = (path::dir(p), path::name(p));
    if n == path::SELF {
        format!("d{d}")
    } else if d == 0 {
        format!("i{n}")
    } else {
        format!("d{d}/i{n}")
    }
}

/// An event's child name: `i3` or `d1`.
pub fn entry_name(n: u8) -> String {
    if n >= 8 {
        format!("d{}", n - 8)
    } else {
        format!("i{n}")
    }
}

pub fn mask_name(m: u32) -> String {
    let v: Vec<&str> = MASKS.iter().filter(|(b, _)| m & b != 0).map(|(_, n)| *n).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join("+")
    }
}

pub fn format_step(s: &Step) -> String {
    let t = s.task;
    match s.op {
        Op::CreateGroup(c) => format!("t{t} group {}", class_name(c)),
        Op::FidGroup { report, unpriv } => {
            format!("t{t} group {}{}", init_flags_name(report), if unpriv { " unpriv" } else { "" })
        }
        Op::AddMark { group, inode, mask } => {
            format!("t{t} mark g{group} {} {}", path_name(inode), mask_name(mask))
        }
        Op::Watch { group, inode, mask, flags } => {
            format!("t{t} mark g{group} {} {} {}", path_name(inode), mask_name(mask), flags_name(flags))
        }
        Op::FsMark { group, inode, mask, flags, mount } => format!(
            "t{t} {} g{group} {} {}{}",
            if mount { "mountmark" } else { "fsmark" },
            path_name(inode),
            mask_name(mask),
            if flags == 0 { String::new() } else { format!(" {}", flags_name(flags)) }
        ),
        Op::RemoveMark { group, inode } => format!("t{t} unmark g{group} {}", path_name(inode)),
        Op::PipeMark { group, mask, flags, obj } => format!(
            "t{t} {} g{group} {}{}",
            match obj {
                MarkObj::Inode => "pipemark",
                MarkObj::Mount => "pipe-mountmark",
                MarkObj::Fs => "pipe-fsmark",
            },
            mask_name(mask),
            if flags == 0 { String::new() } else { format!(" {}", flags_name(flags)) }
        ),
        Op::Open { inode } => format!("t{t} open {}", path_name(inode)),
        Op::Cat { inode } => format!("t{t} cat {}", path_name(inode)),
        Op::Write { inode } => format!("t{t} write {}", path_name(inode)),
        Op::Attrib { inode } => format!("t{t} chmod {}", path_name(inode)),
        Op::Create { inode } => format!("t{t} create {}", path_name(inode)),
        Op::Mkdir { inode } => format!("t{t} mkdir {}", path_name(inode)),
        Op::Rmdir { inode } => format!("t{t} rmdir {}", path_name(inode)),
        Op::Rename { from, to } => format!("t{t} rename {} {}", path_name(from), path_name(to)),
        Op::ReadEvents { group } => format!("t{t} read g{group}"),
        Op::Fdinfo { group } => format!("t{t} fdinfo g{group}"),
        Op::Answer { group, waiter, allow } => {
            format!("t{t} {} g{group} t{waiter}", if allow { "allow" } else { "deny" })
        }
        Op::Unlink { inode } => format!("t{t} unlink {}", path_name(inode)),
        Op::Close { group } => format!("t{t} close g{group}"),
        Op::Init { flags, fflags, unpriv } => format!(
            "t{t} init {} {}{}",
            init_flags_name(flags),
            fflags_name(fflags),
            if unpriv { " unpriv" } else { "" }
        ),
    }
}

pub fn format(steps: &[Step]) -> String {
    steps.iter().map(format_step).collect::<Vec<_>>().join("; ")
}

/// Why a step's text is not a step. The messages name what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{what} should look like {prefix}N, not {tok:?}")]
    BadNumber { what: &'static str, prefix: char, tok: String },
    #[error("unknown mask {0:?} (open, perm)")]
    UnknownMask(String),
    #[error(
        "unknown flag {0:?} (oneshot, madd, mcreate, exclunlink, onlydir, ignored, surv, remove, ignore, evictable)"
    )]
    UnknownFlag(String),
    #[error("path should look like iN, dK/iN or dK, not {0:?}")]
    BadPath(String),
    #[error("task t{0} out of range (at most {max} tasks)", max = kbot_refcore::MAX_TASKS)]
    TaskOutOfRange(u8),
    #[error("unknown fanotify_init flag {0:?} (notif, content, precontent, cloexec, nonblock, uqueue, umarks, audit, pidfd, tid, fid, dfid, name, target, fderror, unknown; event file flags rdonly, wronly, rdwr, badacc, append, nonblock, cloexec, noatime, largefile, directory)")]
    UnknownInitFlag(String),
    #[error("unknown group class {0:?} (inotify, notif, content, precontent, or a reporting mode: fid, dfid, name, target joined by +)")]
    UnknownClass(String),
    #[error("unexpected {0:?} after a reporting mode (only \"unpriv\": made by an unprivileged user)")]
    UnknownGroupWord(String),
    #[error("unknown step {0:?}")]
    UnknownStep(String),
    #[error("unexpected {0:?}")]
    Unexpected(String),
    #[error("inode i{0} out of range")]
    InodeOutOfRange(u8),
}

/// A scenario text with a bad step: which one (1-based, comments and blank steps not
/// counted), its text, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("step {index} ({text:?}): {error}")]
pub struct ParseError {
    pub index: usize,
    pub text: String,
    pub error: StepError,
}

/// A step refcore cannot take (the scenario is malformed): the step and refcore's reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {invalid:?}")]
pub struct PredictError {
    pub step: String,
    pub invalid: kbot_refcore::Invalid,
}

fn num(tok: Option<&str>, prefix: char, what: &'static str) -> Result<u8, StepError> {
    let tok = tok.ok_or(StepError::Missing(what))?;
    tok.strip_prefix(prefix).and_then(|n| n.parse().ok()).ok_or_else(|| StepError::BadNumber {
        what,
        prefix,
        tok: tok.to_string(),
    })
}

fn parse_mask(tok: Option<&str>) -> Result<u32, StepError> {
    let tok = tok.ok_or(StepError::Missing("mask"))?;
    if tok == "none" {
        return Ok(0);
    }
    tok.split('+').try_fold(0, |m, p| match MASKS.iter().find(|(_, n)| *n == p) {
        Some((b, _)) => Ok(m | b),
        None => Err(StepError::UnknownMask(p.to_string())),
    })
}

fn parse_flags(tok: &str) -> Result<u16, StepError> {
    tok.split('+').try_fold(0, |f, p| match FLAGS.iter().find(|(_, n)| *n == p) {
        Some((b, _)) => Ok(f | b),
        None => Err(StepError::UnknownFlag(p.to_string())),
    })
}

/// `iN`, `dK/iN`, `dK`; numbers out of range are reported as such.
fn parse_path(tok: Option<&str>) -> Result<u8, StepError> {
    let tok = tok.ok_or(StepError::Missing("inode"))?;
    let bad = || StepError::BadPath(tok.to_string());
    let file = |t: &str| -> Result<u8, StepError> {
        let n: u8 = num(Some(t), 'i', "inode")?;
        if n as usize >= kbot_refcore::MAX_INODES {
            return Err(StepError::InodeOutOfRange(n));
        }
        Ok(n)
    };
    let dir = |t: &str| -> Result<u8, StepError> {
        let k: u8 = t.strip_prefix('d').and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        if k as usize >= kbot_refcore::MAX_DIRS {
            return Err(bad());
        }
        Ok(k)
    };
    if let Some((d, f)) = tok.split_once('/') {
        return Ok(path::of(dir(d)?, file(f)?));
    }
    if tok.starts_with('d') {
        return Ok(path::of(dir(tok)?, path::SELF));
    }
    Ok(path::of(0, file(tok)?))
}

pub fn parse_step(text: &str) -> Result<Step, StepError> {
    let mut w = text.split_whitespace();
    let task = num(w.next(), 't', "task")?;
    if task as usize >= kbot_refcore::MAX_TASKS {
        return Err(StepError::TaskOutOfRange(task));
    }
    let verb = w.next().ok_or(StepError::Missing("verb"))?;
    let op = match verb {
        "group" => match w.next() {
            Some("inotify") => Op::CreateGroup(Class::Inotify),
            Some("notif") => Op::CreateGroup(Class::FanNotif),
            Some("content") => Op::CreateGroup(Class::FanContent),
            Some("precontent") => Op::CreateGroup(Class::FanPreContent),
            // A notification group reporting file handles: `fid`, `dfid+name`, ...
            // ... made by an unprivileged user: `fid unpriv`.
            Some(r) => match parse_init_flags(Some(r)) {
                Ok(report) if report != 0 && report & !init::FID_BITS == 0 => match w.next() {
                    None => Op::FidGroup { report, unpriv: false },
                    Some("unpriv") => Op::FidGroup { report, unpriv: true },
                    Some(x) => return Err(StepError::UnknownGroupWord(x.to_string())),
                },
                _ => return Err(StepError::UnknownClass(r.to_string())),
            },
            None => return Err(StepError::Missing("group class")),
        },
        "mark" => {
            let (group, inode, mask) = (num(w.next(), 'g', "group")?, parse_path(w.next())?, parse_mask(w.next())?);
            match w.next() {
                Some(f) => Op::Watch { group, inode, mask, flags: parse_flags(f)? },
                None => Op::AddMark { group, inode, mask },
            }
        }
        "fsmark" | "mountmark" => {
            let (group, inode, mask) = (num(w.next(), 'g', "group")?, parse_path(w.next())?, parse_mask(w.next())?);
            let flags = w.next().map(parse_flags).transpose()?.unwrap_or(0);
            Op::FsMark { group, inode, mask, flags, mount: verb == "mountmark" }
        }
        "pipemark" | "pipe-mountmark" | "pipe-fsmark" => {
            let (group, mask) = (num(w.next(), 'g', "group")?, parse_mask(w.next())?);
            let flags = w.next().map(parse_flags).transpose()?.unwrap_or(0);
            let obj = match verb {
                "pipemark" => MarkObj::Inode,
                "pipe-mountmark" => MarkObj::Mount,
                _ => MarkObj::Fs,
            };
            Op::PipeMark { group, mask, flags, obj }
        }
        "unmark" => Op::RemoveMark { group: num(w.next(), 'g', "group")?, inode: parse_path(w.next())? },
        "open" => Op::Open { inode: parse_path(w.next())? },
        "cat" => Op::Cat { inode: parse_path(w.next())? },
        "write" => Op::Write { inode: parse_path(w.next())? },
        "chmod" => Op::Attrib { inode: parse_path(w.next())? },
        "create" => Op::Create { inode: parse_path(w.next())? },
        "mkdir" => Op::Mkdir { inode: parse_path(w.next())? },
        "rmdir" => Op::Rmdir { inode: parse_path(w.next())? },
        "rename" => Op::Rename { from: parse_path(w.next())?, to: parse_path(w.next())? },
        "read" => Op::ReadEvents { group: num(w.next(), 'g', "group")? },
        "fdinfo" => Op::Fdinfo { group: num(w.next(), 'g', "group")? },
        "allow" | "deny" => Op::Answer {
            group: num(w.next(), 'g', "group")?,
            waiter: num(w.next(), 't', "waiter")?,
            allow: verb == "allow",
        },
        "unlink" => Op::Unlink { inode: parse_path(w.next())? },
        "close" => Op::Close { group: num(w.next(), 'g', "group")? },
        "init" => {
            let (flags, fflags) = (parse_init_flags(w.next())?, parse_fflags(w.next())?);
            let unpriv = match w.next() {
                None => false,
                Some("unpriv") => true,
                Some(other) => return Err(StepError::Unexpected(other.to_string())),
            };
            Op::Init { flags, fflags, unpriv }
        }
        other => return Err(StepError::UnknownStep(other.to_string())),
    };
    if let Some(extra) = w.next() {
        return Err(StepError::Unexpected(extra.to_string()));
    }
    Ok(Step { task, op })
}

pub fn parse(text: &str) -> Result<Vec<Step>, ParseError> {
    text.split([';', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with('#'))
        .enumerate()
        .map(|(i, s)| parse_step(s).map_err(|error| ParseError { index: i + 1, text: s.to_string(), error }))
        .collect()
}

/// What a step did: its result (`None`: still blocked), the events it read, and the tasks
/// it released (with their results). The model's prediction and the kernel's observation
/// have this same shape.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StepObs {
    pub ret: Option<Ret>,
    pub events: Vec<Ev>,
    pub released: Vec<(u8, Ret)>,
}

/// refcore's prediction for each step.
pub fn predict(steps: &[Step], sem: Semantics) -> Result<Vec<StepObs>, PredictError> {
    predict_with(steps, sem, kbot_refcore::QUEUE_LIMIT)
}

/// The prediction for a kernel whose groups hold at most `queue_limit` events (the
/// `max_queued_events` sysctls the guest sets; a host run may have other values).
pub fn predict_with(steps: &[Step], sem: Semantics, queue_limit: usize) -> Result<Vec<StepObs>, PredictError> {
    let mut m = Model::new(sem);
    m.queue_limit = queue_limit;
    steps
        .iter()
        .map(|s| {
            let o = m.step(*s).map_err(|invalid| PredictError { step: format_step(s), invalid })?;
            let mut released: Vec<(u8, Ret)> = o.released.as_slice().iter().map(|r| (r.task, r.ret)).collect();
            released.sort_by_key(|r| r.0);
            Ok(StepObs { ret: o.ret, events: o.events.as_slice().to_vec(), released })
        })
        .collect()
}

/// Drops the steps the model cannot take (steps of a task that is blocked by then, steps
/// past a capacity): what remains is a scenario the executor can run as written.
pub fn normalize(steps: &[Step]) -> Vec<Step> {
    let mut m = Model::new(Semantics::Current);
    let mut out = Vec::new();
    for s in steps {
        if m.blocked(s.task) {
            continue;
        }
        let mut probe = m.clone();
        if probe.step(*s).is_ok() {
            m = probe;
            out.push(*s);
        }
    }
    out
}

pub fn errno_name(e: i32) -> String {
    match e {
        1 => "EPERM (1)".into(),
        2 => "ENOENT (2)".into(),
        9 => "EBADF (9)".into(),
        11 => "EAGAIN (11)".into(),
        13 => "EACCES (13)".into(),
        17 => "EEXIST (17)".into(),
        20 => "ENOTDIR (20)".into(),
        21 => "EISDIR (21)".into(),
        22 => "EINVAL (22)".into(),
        39 => "ENOTEMPTY (39)".into(),
        24 => "EMFILE (24)".into(),
        95 => "EOPNOTSUPP (95)".into(),
        n => format!("errno {n}"),
    }
}

pub fn ret_name(r: Option<Ret>) -> String {
    match r {
        None => "blocks".into(),
        Some(Ret::Ok(v)) => format!("returns {v}"),
        Some(Ret::Err(e)) => format!("fails with {}", errno_name(e)),
    }
}

/// An event: `mask n<node> t<task>` (nodes `0..8` are `d0/i0..i7`, `8` is `d0`, later ones in
/// creation order) and the child's name for a watching directory.
pub fn event_name(e: &Ev) -> String {
    let node = match e.inode {
        NO_NODE => "-".to_string(),
        kbot_refcore::SB_NODE => "fs".to_string(),
        kbot_refcore::MNT_NODE => "mount".to_string(),
        kbot_refcore::PIPE_NODE => "pipe".to_string(),
        n => format!("n{n}"),
    };
    // An fdinfo line: the mark's mask and flags, or its ignored mask.
    match e.name {
        kbot_refcore::FDINFO_MARK => {
            let f = if e.task == 0 {
                String::new()
            } else {
                format!(" {}", flags_name(kbot_refcore::fdinfo_flags_from_task(e.task)))
            };
            return format!("mark {node} {}{f}", mask_name(e.mask));
        }
        kbot_refcore::FDINFO_IGNORED => return format!("ignored {node} {}", mask_name(e.mask)),
        _ => {}
    }
    let name = match e.name {
        NO_NAME => String::new(),
        kbot_refcore::DOT_NAME => " .".to_string(),
        n => format!(" {}", entry_name(n)),
    };
    // An unprivileged group's event names the process, not a thread.
    let task = if e.task == kbot_refcore::PROCESS_TASK { "tP".to_string() } else { format!("t{}", e.task) };
    if e.dir != NO_NODE {
        // A group reporting file handles: the DFID(_NAME) record, then the FID record if any.
        let fid = if e.inode == NO_NODE { String::new() } else { format!(" fid {node}") };
        return format!("{} dfid n{}{name}{fid} {task}", mask_name(e.mask), e.dir);
    }
    format!("{} {node} {task}{name}", mask_name(e.mask))
}

fn events_name(evs: &[Ev]) -> String {
    let v: Vec<String> = evs.iter().map(event_name).collect();
    format!("[{}]", v.join(", "))
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Compares one step; `None` when the kernel did what the model predicted. Events are
/// compared as multisets (the order across groups is not observable).
pub fn compare_step(step: &Step, want: &StepObs, got: &StepObs) -> Option<String> {
    let s = format_step(step);
    if want.ret != got.ret {
        return Some(format!("{s}: model: {}; kernel: {}", ret_name(want.ret), ret_name(got.ret)));
    }
    let key = |e: &Ev| (e.mask, e.inode, e.task, e.name, e.dir);
    let (we, ge): (Vec<_>, Vec<_>) = (
        sorted(&want.events.iter().map(key).collect::<Vec<_>>()),
        sorted(&got.events.iter().map(key).collect::<Vec<_>>()),
    );
    if we != ge {
        return Some(format!(
            "{s}: model read {}; kernel read {}",
            events_name(&want.events),
            events_name(&got.events)
        ));
    }
    if sorted(&want.released) != sorted(&got.released) {
        let name = |v: &[(u8, Ret)]| {
            let x: Vec<String> = v.iter().map(|(t, r)| format!("t{t} ({})", ret_name(Some(*r)))).collect();
            if x.is_empty() {
                "nobody".to_string()
            } else {
                x.join(", ")
            }
        };
        return Some(format!("{s}: model releases {}; kernel released {}", name(&want.released), name(&got.released)));
    }
    None
}

/// What kind of divergence a step shows, without ids: the verb and what differed. Shrinking
/// keeps only candidates with the same signature, so it cannot drift to another divergence.
pub fn signature(step: &Step, want: &StepObs, got: &StepObs) -> String {
    let verb = format_step(step).split_whitespace().nth(1).unwrap_or("").to_string();
    if want.ret != got.ret {
        format!("{verb}: model {} / kernel {}", ret_name(want.ret), ret_name(got.ret))
    } else if want.events.len() != got.events.len()
        || compare_step(step, want, &StepObs { released: want.released.clone(), ..got.clone() }).is_some()
    {
        format!("{verb}: events")
    } else {
        format!("{verb}: releases")
    }
}

/// A small deterministic PRNG (splitmix64): the same seed gives the same scenarios on every
/// machine, so a report's seed replays exactly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

pub const GEN_TASKS: u8 = 4;
const GEN_INODES: u8 = 3;
const GEN_GROUPS: u8 = 5;

/// Paths the generator uses: a few files in each directory and the directories.
fn gen_path(r: &mut Rng) -> u8 {
    match r.below(10) {
        0..=3 => path::of(0, r.below(4) as u8),
        4..=5 => path::of(1, r.below(3) as u8),
        6 => path::of(2, r.below(2) as u8),
        7 => path::of(0, path::SELF),
        8 => path::of(1, path::SELF),
        _ => path::of(2, path::SELF),
    }
}

fn gen_file(r: &mut Rng) -> u8 {
    match r.below(6) {
        0..=2 => path::of(0, r.below(4) as u8),
        3..=4 => path::of(1, r.below(3) as u8),
        _ => path::of(2, r.below(2) as u8),
    }
}

/// A few event bits out of `from`.
fn gen_events(r: &mut Rng, from: &[u32]) -> u32 {
    let mut m = 0;
    for _ in 0..1 + r.below(3) {
        m |= from[r.below(from.len() as u64) as usize];
    }
    m
}

const IN_EVENTS: &[u32] = &[
    mask::OPEN,
    mask::ACCESS,
    mask::MODIFY,
    mask::ATTRIB,
    mask::CLOSE_WRITE,
    mask::CLOSE_NOWRITE,
    mask::CREATE,
    mask::DELETE,
    mask::MOVED_FROM,
    mask::MOVED_TO,
    mask::DELETE_SELF,
    mask::MOVE_SELF,
];
const FAN_EVENTS: &[u32] = &[mask::OPEN, mask::ACCESS, mask::MODIFY, mask::CLOSE_WRITE, mask::CLOSE_NOWRITE];

/// A mark step of the tree areas: inotify watches with flags, fanotify marks on files and
/// directories with FAN_ONDIR/FAN_EVENT_ON_CHILD, ignore masks, and invalid combinations.
fn gen_mark(r: &mut Rng, group: u8, class: Class) -> Op {
    let inode = gen_path(r);
    if class == Class::Inotify {
        // Half the watches want everything: events pile up (overflow) and every kind shows.
        let mut mask = if r.below(2) == 0 { IN_EVENTS.iter().fold(0, |a, b| a | b) } else { gen_events(r, IN_EVENTS) };
        if r.below(25) == 0 {
            mask |= mask::OPEN_PERM; // EINVAL
        }
        let mut flags = 0;
        for (f, odds) in [
            (flag::ONESHOT, 6),
            (flag::MASK_ADD, 6),
            (flag::MASK_CREATE, 8),
            (flag::EXCL_UNLINK, 6),
            (flag::ONLYDIR, 8),
        ] {
            if r.below(odds) == 0 {
                flags |= f;
            }
        }
        return if flags == 0 { Op::AddMark { group, inode, mask } } else { Op::Watch { group, inode, mask, flags } };
    }
    let mut mask = gen_events(r, FAN_EVENTS);
    if r.below(2) == 0 {
        mask |= mask::ISDIR;
    }
    if r.below(2) == 0 {
        mask |= mask::ON_CHILD;
    }
    if r.below(20) == 0 {
        mask |= [mask::CREATE, mask::ATTRIB, mask::DELETE_SELF][r.below(3) as usize];
        // EINVAL without FID
    }
    let mut flags = 0;
    match r.below(10) {
        0..=2 => flags |= flag::IGNORED | if r.below(2) == 0 { flag::SURV } else { 0 },
        3 => flags |= flag::REMOVE | if r.below(2) == 0 { flag::IGNORED } else { 0 },
        _ => {}
    }
    if r.below(10) == 0 {
        flags |= flag::ONLYDIR;
    }
    if flags == 0 {
        Op::AddMark { group, inode, mask }
    } else {
        Op::Watch { group, inode, mask, flags }
    }
}

/// A random scenario of about `len` steps. Steps are chosen with the model so they are
/// meaningful (answers name pending events, blocked tasks get no steps), and two groups of the
/// same priority never both want permission events for one inode (the kernel orders those by
/// address, which nobody can predict). Permission marks go on files only (a directory's
/// permission mark with FAN_EVENT_ON_CHILD is not modelled). Weighted so every area is
/// reached: permission events, the tree's steps, inotify flags, fanotify directory marks and
/// ignore masks, invalid calls, and queue overflow (8 events).
pub fn generate(seed: u64, len: usize) -> Vec<Step> {
    let mut r = Rng::new(seed);
    let mut m = Model::new(Semantics::Current);
    let mut classes: Vec<Class> = Vec::new();
    let mut perm_marks: Vec<(u8, u8)> = Vec::new(); // (group, node)
    let mut out = Vec::new();
    // One scenario in three reads its groups rarely, so queues reach their limit (overflow).
    let quiet = r.below(3) == 0;
    let mut tries = 0;
    while out.len() < len && tries < len * 20 {
        tries += 1;
        let idle: Vec<u8> = (0..GEN_TASKS).filter(|t| !m.blocked(*t)).collect();
        if idle.is_empty() {
            break;
        }
        let task = idle[r.below(idle.len() as u64) as usize];
        let ngroups = m.groups_created();
        let group = if ngroups == 0 { 0 } else { r.below(ngroups as u64) as u8 };
        let inode = r.below(GEN_INODES as u64) as u8;
        let unanswered = m.unanswered();
        let op = match r.below(100) {
            0..=9 if ngroups < GEN_GROUPS => {
                let c = [
                    Class::Inotify,
                    Class::Inotify,
                    Class::FanNotif,
                    Class::FanContent,
                    Class::FanContent,
                    Class::FanPreContent,
                ][r.below(6) as usize];
                Op::CreateGroup(c)
            }
            10..=20 if ngroups > 0 => {
                let class = classes[group as usize];
                let Some(node) = m.lookup(inode) else { continue };
                let same_prio_perm = perm_marks
                    .iter()
                    .any(|(g, i)| *i == node && *g != group && classes[*g as usize].priority() == class.priority());
                let mask = if class.can_perm() && !same_prio_perm {
                    [mask::OPEN_PERM, mask::OPEN_PERM, mask::OPEN | mask::OPEN_PERM, mask::OPEN][r.below(4) as usize]
                } else {
                    mask::OPEN
                };
                if mask & mask::OPEN_PERM != 0 {
                    perm_marks.push((group, node));
                }
                Op::AddMark { group, inode, mask }
            }
            21..=29 if ngroups > 0 => gen_mark(&mut r, group, classes[group as usize]),
            30..=32 if ngroups > 0 => {
                // The path removed, not the one drawn first (a permission mark forgotten while
                // it stays let a second group of its priority ask for the same file).
                let p = if r.below(3) == 0 { gen_path(&mut r) } else { inode };
                if let Some(node) = m.lookup(p) {
                    perm_marks.retain(|x| *x != (group, node));
                }
                Op::RemoveMark { group, inode: p }
            }
            // Keep two tasks free so the scenario can always go on.
            33..=47 if idle.len() > 2 => {
                let p = if r.below(3) != 0 { inode } else { gen_path(&mut r) };
                match r.below(3) {
                    0 => Op::Open { inode: p },
                    1 => Op::Cat { inode: p },
                    _ => Op::Write { inode: if path::is_dir(p) && r.below(3) != 0 { gen_file(&mut r) } else { p } },
                }
            }
            48..=58 if ngroups > 0 && (!quiet || r.below(6) == 0) => Op::ReadEvents { group },
            59..=70 if !unanswered.is_empty() => {
                let (g, w) = unanswered.as_slice()[r.below(unanswered.len() as u64) as usize];
                Op::Answer { group: g, waiter: w, allow: r.below(4) != 0 }
            }
            71..=72 => Op::Unlink { inode: GEN_INODES - 1 },
            73..=85 => match r.below(7) {
                0 | 1 => Op::Create { inode: gen_file(&mut r) },
                2 => Op::Unlink { inode: gen_file(&mut r) },
                3 => Op::Rename { from: gen_file(&mut r), to: gen_file(&mut r) },
                4 => Op::Mkdir { inode: path::of(1 + r.below(2) as u8, path::SELF) },
                5 => Op::Rmdir { inode: path::of(1 + r.below(2) as u8, path::SELF) },
                _ => Op::Attrib { inode: gen_path(&mut r) },
            },
            // Not when it would release two waiters at once: their opens then go on side by
            // side, and which of them first clears an ignore mask or fills a queue is a race.
            86..=88 if ngroups > 0 && m.perm_waiters(group) < 2 => Op::Close { group },
            _ => continue,
        };
        let s = Step { task, op };
        let mut probe = m.clone();
        if probe.step(s).is_err() {
            continue;
        }
        m = probe;
        if let Op::CreateGroup(c) = op {
            if classes.len() < m.groups_created() as usize {
                classes.push(c);
            }
        }
        out.push(s);
    }
    // Finally every live group is read, so whatever it queued (an overflow too) is compared.
    if let Some(task) = (0..GEN_TASKS).find(|t| !m.blocked(*t)) {
        for group in 0..m.groups_created() {
            let s = Step { task, op: Op::ReadEvents { group } };
            if m.group_alive(group) && m.clone().step(s).is_ok() {
                m.step(s).expect("probed");
                out.push(s);
            }
        }
    }
    out
}

/// The random scenario `index` of `seed` (each gets its own stream).
pub fn random(seed: u64, index: u32) -> Scenario {
    let mixed = seed ^ (u64::from(index).wrapping_mul(0xa076_1d64_78bd_642f));
    Scenario {
        name: format!("scenario/random-{seed}-{index}"),
        steps: with_fdinfo(
            with_pipe_mark(
                with_fid_group(
                    with_ignore_marks(with_fs_marks(with_inits(generate(mixed, 24), mixed), mixed), mixed),
                    mixed,
                ),
                mixed,
            ),
            mixed,
        ),
    }
}

/// A random filesystem or mount mark for `group` on the object at `path`: fd-reporting
/// events (with FAN_ONDIR at times), ignore masks, removal, and now and then an invalid one
/// (an event that needs FID reporting, or FAN_EVENT_ON_CHILD, which such marks drop). No
/// permission events: with a filesystem mark every open in the tree would ask that group, and
/// the kernel orders groups of one priority by address.
fn gen_fs_mark(r: &mut Rng, group: u8, path: u8) -> Op {
    let mut mask = gen_events(r, FAN_EVENTS);
    if r.below(3) == 0 {
        mask |= mask::ISDIR;
    }
    if r.below(8) == 0 {
        mask |= mask::ON_CHILD;
    }
    if r.below(20) == 0 {
        mask |= [mask::CREATE, mask::ATTRIB, mask::DELETE_SELF][r.below(3) as usize];
    }
    let flags = match r.below(10) {
        0 | 1 => flag::IGNORED | if r.below(2) == 0 { flag::SURV } else { 0 },
        2 => flag::REMOVE | if r.below(3) == 0 { flag::IGNORED } else { 0 },
        3 if r.below(3) == 0 => flag::ONLYDIR,
        _ => 0,
    };
    Op::FsMark { group, inode: path, mask, flags, mount: r.below(2) == 0 }
}

/// Adds one to three filesystem or mount marks at random places from a stream of their own,
/// mostly for a live fanotify group and a path that is there. They change
/// what fanotify groups read and which closes wait (a permission waiter pins the next group's
/// filesystem mark), so a mark after which a later step would be invalid is left out, and so
/// is a mark for a group with the priority of another group that asks for permission events
/// (the kernel orders those two by address: which mark a waiter pins is not predictable).
fn with_fs_marks(steps: Vec<Step>, seed: u64) -> Vec<Step> {
    let mut end = Model::new(Semantics::Current);
    for s in &steps {
        end.step(*s).expect("generated steps are valid");
    }
    let perm_groups: Vec<u8> = steps
        .iter()
        .filter_map(|s| match s.op {
            Op::AddMark { group, mask, .. } | Op::Watch { group, mask, .. } if mask & mask::OPEN_PERM != 0 => {
                Some(group)
            }
            _ => None,
        })
        .collect();
    let prio = |g: u8| end.group_class(g).map(|c| c.priority());
    let ambiguous = |g: u8| perm_groups.iter().any(|p| *p != g && prio(*p) == prio(g));
    // (priority, mount, group) of the marks added: two groups of one priority with marks of one
    // kind are ordered by address too (which of them a waiter pins is not predictable).
    let mut kinds: Vec<(Option<u8>, bool, u8)> = Vec::new();
    let mut r = Rng::new(seed ^ 0x2f5a_17c0_ffee_0002);
    let mut left = 1 + r.below(3) as usize;
    let mut out: Vec<Step> = Vec::with_capacity(steps.len() + left);
    let mut m = Model::new(Semantics::Current);
    for i in 0..=steps.len() {
        // About one place in eight, once some fanotify group exists (mostly one of those, now
        // and then any group number: an inotify group's or a closed one's errno).
        let fan = fanotify_groups(&m);
        if left > 0 && !fan.is_empty() && r.below(8) == 0 {
            left -= 1;
            let group = if r.below(10) == 0 {
                r.below(u64::from(m.groups_created()) + 1) as u8
            } else {
                fan[r.below(fan.len() as u64) as usize]
            };
            let path = path_mostly_there(&mut r, &m);
            let op = gen_fs_mark(&mut r, group, path);
            let mount = matches!(op, Op::FsMark { mount: true, .. });
            let twin = kinds.iter().any(|(p, k, g)| *g != group && *k == mount && *p == prio(group));
            if let Some(s) = insert_mark(&mut r, &mut m, op, &steps[i..], !ambiguous(group) && !twin) {
                kinds.push((prio(group), mount, group));
                out.push(s);
            }
        }
        if let Some(&s) = steps.get(i) {
            m.step(s).expect("generated steps are valid");
            out.push(s);
        }
    }
    out
}

/// The live fanotify groups of `m`.
fn fanotify_groups(m: &Model) -> Vec<u8> {
    (0..m.groups_created()).filter(|g| m.group_alive(*g) && m.group_class(*g) != Some(Class::Inotify)).collect()
}

/// A random path, mostly one that is there (up to four more tries).
fn path_mostly_there(r: &mut Rng, m: &Model) -> u8 {
    let mut path = gen_path(r);
    for _ in 0..4 {
        if m.lookup(path).is_some() || r.below(10) == 0 {
            break;
        }
        path = gen_path(r);
    }
    path
}

/// Steps `m` with `op` by an idle task when `ok` and no task waits (the kernel resumes its
/// mark lists where a waiter left them, and a mark added meanwhile may be passed over; the
/// model looks afresh), and only if `rest` still runs as generated after it.
fn insert_mark(r: &mut Rng, m: &mut Model, op: Op, rest: &[Step], ok: bool) -> Option<Step> {
    let waiting = (0..GEN_TASKS).any(|t| m.blocked(t));
    let idle: Vec<u8> = (0..GEN_TASKS).filter(|t| !m.blocked(*t)).collect();
    let task = *idle.get(r.below(idle.len().max(1) as u64) as usize)?;
    let s = Step { task, op };
    if !ok || waiting {
        return None;
    }
    let mut probe = m.clone();
    if probe.step(s).is_ok() && rest.iter().all(|x| probe.step(*x).is_ok()) {
        m.step(s).expect("probed");
        return Some(s);
    }
    None
}

/// Adds up to three FAN_MARK_IGNORE marks (5.19: ignore masks whose FAN_ONDIR and
/// FAN_EVENT_ON_CHILD take effect) at random places from a stream of their own, so the rest of
/// each random scenario stays as it was: inode marks of a live fanotify group on mostly a path
/// that is there, files and directories, with and without those flags, surviving modification
/// or not (EISDIR on a directory, ENOTDIR for the flags on a file), a removal now and then; and
/// now and then a filesystem or mount mark without FAN_MARK_IGNORED_SURV_MODIFY (EINVAL). Not
/// while a task waits, and not when a later step would become invalid (as in
/// [`with_fs_marks`]).
fn with_ignore_marks(steps: Vec<Step>, seed: u64) -> Vec<Step> {
    let mut r = Rng::new(seed ^ 0x1960_7e00_0000_0004);
    let mut left = r.below(4) as usize;
    let mut out: Vec<Step> = Vec::with_capacity(steps.len() + left);
    let mut m = Model::new(Semantics::Current);
    for i in 0..=steps.len() {
        let fan = fanotify_groups(&m);
        if left > 0 && !fan.is_empty() && r.below(6) == 0 {
            left -= 1;
            let group = fan[r.below(fan.len() as u64) as usize];
            let path = path_mostly_there(&mut r, &m);
            let mut mask = gen_events(&mut r, FAN_EVENTS);
            // The flags mostly where they mean something (on a file they are ENOTDIR). A
            // permission event now and then in a file's (EINVAL for a notification group); not
            // in a directory's: its children's permission events would walk its mark list,
            // where groups of one priority go by address.
            let is_dir = path::is_dir(path);
            if !is_dir && r.below(4) == 0 {
                mask |= mask::OPEN_PERM;
            }
            let one_in = if is_dir { 2 } else { 8 };
            if r.below(one_in) == 0 {
                mask |= mask::ISDIR;
            }
            if r.below(one_in) == 0 {
                mask |= mask::ON_CHILD;
            }
            let op = match r.below(12) {
                0 => Op::FsMark { group, inode: path, mask, flags: flag::IGNORE, mount: r.below(2) == 0 },
                1 => Op::Watch { group, inode: path, mask, flags: flag::IGNORE | flag::REMOVE },
                2..=4 => Op::Watch { group, inode: path, mask, flags: flag::IGNORE },
                _ => Op::Watch { group, inode: path, mask, flags: flag::IGNORE | flag::SURV },
            };
            if let Some(s) = insert_mark(&mut r, &mut m, op, &steps[i..], true) {
                out.push(s);
            }
        }
        if let Some(&s) = steps.get(i) {
            m.step(s).expect("generated steps are valid");
            out.push(s);
        }
    }
    out
}

/// Reporting modes of the groups [`with_fid_group`] makes: every valid mix, and an invalid
/// one (FAN_REPORT_NAME without FAN_REPORT_DIR_FID).
const FID_REPORTS: &[u16] = &[
    init::REPORT_FID,
    init::REPORT_FID,
    init::REPORT_DIR_FID,
    init::REPORT_DIR_FID,
    init::REPORT_DIR_FID | init::REPORT_NAME,
    init::REPORT_FID | init::REPORT_DIR_FID,
    init::REPORT_FID | init::REPORT_DIR_FID,
    init::REPORT_FID | init::REPORT_DIR_FID | init::REPORT_NAME,
    init::REPORT_FID | init::REPORT_DIR_FID | init::REPORT_NAME,
    init::REPORT_FID | init::REPORT_DIR_FID | init::REPORT_NAME | init::REPORT_TARGET_FID,
    init::REPORT_FID | init::REPORT_DIR_FID | init::REPORT_NAME | init::REPORT_TARGET_FID,
    init::REPORT_NAME,
];

/// Every event a group reporting file handles may ask for.
const FID_EVENTS: &[u32] = IN_EVENTS;

/// A mark for a group reporting file handles: every event (half the time all of them), on
/// files, directories, the filesystem, or (where such events are EINVAL) the mount; ignore
/// masks of both kinds, removal.
fn gen_fid_mark(r: &mut Rng, group: u8, path: u8, fs_ok: bool, mount_ok: bool) -> Op {
    let mut mask = if r.below(3) == 0 { FID_EVENTS.iter().fold(0, |a, b| a | b) } else { gen_events(r, FID_EVENTS) };
    let is_dir = path::is_dir(path);
    let ondir = if is_dir { r.below(3) != 0 } else { r.below(6) == 0 };
    if ondir {
        mask |= mask::ISDIR;
    }
    let child = if is_dir { r.below(3) != 0 } else { r.below(8) == 0 };
    if child {
        mask |= mask::ON_CHILD;
    }
    let mut flags = match r.below(12) {
        0 | 1 => flag::IGNORED | if r.below(2) == 0 { flag::SURV } else { 0 },
        2 => flag::IGNORE | flag::SURV,
        3 => flag::REMOVE,
        4 if r.below(3) == 0 => flag::ONLYDIR,
        _ => 0,
    };
    if r.below(6) == 0 {
        flags |= flag::EVICTABLE;
    }
    match r.below(10) {
        0..=1 if fs_ok => Op::FsMark { group, inode: path, mask, flags, mount: false },
        2 if mount_ok => {
            // Mostly events a mount mark may carry.
            let mask = if r.below(3) == 0 { mask } else { gen_events(r, FAN_EVENTS) | (mask & mask::ISDIR) };
            Op::FsMark { group, inode: path, mask, flags, mount: true }
        }
        _ if flags == 0 => Op::AddMark { group, inode: path, mask },
        _ => Op::Watch { group, inode: path, mask, flags },
    }
}

/// The step with each group number `g` as `f(g)`.
fn renumber(s: Step, mut f: impl FnMut(u8) -> u8) -> Step {
    let op = match s.op {
        Op::AddMark { group, inode, mask } => Op::AddMark { group: f(group), inode, mask },
        Op::RemoveMark { group, inode } => Op::RemoveMark { group: f(group), inode },
        Op::ReadEvents { group } => Op::ReadEvents { group: f(group) },
        Op::Answer { group, waiter, allow } => Op::Answer { group: f(group), waiter, allow },
        Op::Close { group } => Op::Close { group: f(group) },
        Op::Watch { group, inode, mask, flags } => Op::Watch { group: f(group), inode, mask, flags },
        Op::FsMark { group, inode, mask, flags, mount } => Op::FsMark { group: f(group), inode, mask, flags, mount },
        Op::Fdinfo { group } => Op::Fdinfo { group: f(group) },
        Op::PipeMark { group, mask, flags, obj } => Op::PipeMark { group: f(group), mask, flags, obj },
        // Every step that names no group (listed, so a new step that does is not missed).
        op @ (Op::CreateGroup(_)
        | Op::FidGroup { .. }
        | Op::Open { .. }
        | Op::Cat { .. }
        | Op::Write { .. }
        | Op::Attrib { .. }
        | Op::Create { .. }
        | Op::Mkdir { .. }
        | Op::Rmdir { .. }
        | Op::Rename { .. }
        | Op::Unlink { .. }
        | Op::Init { .. }) => op,
    };
    Step { op, ..s }
}

/// The group a step names, if any.
#[cfg(test)]
fn group_of(s: &Step) -> Option<u8> {
    let mut g = None;
    renumber(*s, |x| {
        g = Some(x);
        x
    });
    g
}

/// A random scenario without [`with_fid_group`]'s group and its steps: what the other
/// streams made.
#[cfg(test)]
fn without_fid_group(steps: &[Step]) -> Vec<Step> {
    // It is made before any other group (an fdinfo of a group not made yet may come first).
    let Some(at) = steps.iter().position(|s| matches!(s.op, Op::FidGroup { .. })) else {
        return steps.to_vec();
    };
    let Op::FidGroup { report, unpriv } = steps[at].op else { unreachable!() };
    let made = kbot_refcore::fanotify_init_errno(report, 0, unpriv).is_none();
    let mut out = steps[..at].to_vec();
    out.extend(steps[at + 1..].iter().filter(|s| !made || group_of(s) != Some(0)).map(|s| {
        if made {
            renumber(*s, |g| g - 1)
        } else {
            *s
        }
    }));
    out
}

/// In two scenarios of three, a group that reports file handles (FAN_REPORT_FID, DIR_FID,
/// NAME, TARGET_FID; from a stream of its own) made first, so it hears the whole scenario;
/// the other steps keep their meaning with every group number one higher. It gets one to four
/// marks and two to five reads at random places, and a read at the end. No filesystem or mount
/// mark when another notification group has one of that kind (a permission waiter pins the
/// next group's mark on those lists, and groups of one priority go by address), and not while
/// a task waits, nor when a later step would become invalid (as in [`with_fs_marks`]).
fn with_fid_group(steps: Vec<Step>, seed: u64) -> Vec<Step> {
    let mut r = Rng::new(seed ^ 0xf1d0_0000_0000_0005);
    if r.below(3) == 0 {
        return steps;
    }
    let report = FID_REPORTS[r.below(FID_REPORTS.len() as u64) as usize];
    // One in four made by an unprivileged user (a stream of its own, so the rest of the
    // scenario is what it was without).
    let unpriv = Rng::new(seed ^ 0x0e9e_0000_0000_0007).below(4) == 0;
    let make = Step { task: r.below(u64::from(GEN_TASKS)) as u8, op: Op::FidGroup { report, unpriv } };
    let mut m = Model::new(Semantics::Current);
    m.step(make).expect("a group can be made");
    if m.groups_created() == 0 {
        // Refused (EINVAL): no group number taken, nothing else changes.
        let mut out = vec![make];
        out.extend(steps);
        return out;
    }
    let steps: Vec<Step> = steps.into_iter().map(|s| renumber(s, |g| g + 1)).collect();
    let mut end = m.clone();
    for s in &steps {
        end.step(*s).expect("generated steps are valid");
    }
    // Another notification-priority group's filesystem (mount) mark, made or tried.
    let twin = |mount: bool| {
        steps.iter().any(|s| {
            matches!(s.op, Op::FsMark { group, mount: k, .. }
                if k == mount && end.group_class(group).is_none_or(|c| c.priority() == 0))
        })
    };
    let (fs_ok, mount_ok) = (!twin(false), !twin(true));
    let mut marks = 1 + r.below(4) as usize;
    let mut reads = 2 + r.below(4) as usize;
    let mut out = vec![make];
    for i in 0..=steps.len() {
        // Marks early on, reads anywhere.
        if marks > 0 && r.below(3) == 0 {
            marks -= 1;
            // Directories often (entry events, "." records), the root most (it sees most).
            let path = match r.below(10) {
                0..=2 => path::of(0, path::SELF),
                3 => path::of(1 + r.below(2) as u8, path::SELF),
                _ => path_mostly_there(&mut r, &m),
            };
            let op = gen_fid_mark(&mut r, 0, path, fs_ok, mount_ok);
            if let Some(s) = insert_mark(&mut r, &mut m, op, &steps[i..], true) {
                out.push(s);
            }
        }
        if reads > 0 && r.below(5) == 0 {
            reads -= 1;
            let idle: Vec<u8> = (0..GEN_TASKS).filter(|t| !m.blocked(*t)).collect();
            if let Some(&task) = idle.get(r.below(idle.len().max(1) as u64) as usize) {
                let s = Step { task, op: Op::ReadEvents { group: 0 } };
                m.step(s).expect("reading is always valid");
                out.push(s);
            }
        }
        if let Some(&s) = steps.get(i) {
            m.step(s).expect("generated steps are valid");
            out.push(s);
        }
    }
    if let Some(task) = (0..GEN_TASKS).find(|t| !m.blocked(*t)) {
        let s = Step { task, op: Op::ReadEvents { group: 0 } };
        m.step(s).expect("reading is always valid");
        out.push(s);
    }
    out
}

/// In one scenario of three, a fanotify_mark(2) of the scenario's pipe (a pseudo
/// filesystem's object) by any group made so far, from a stream of its own: on the pipe, its
/// mount or its filesystem (EINVAL: SB_NOUSER), added or removed, now and then an ignore mask
/// or FAN_MARK_ONLYDIR. Nothing happens on the pipe, so it changes nothing but that call's
/// result and what fdinfo shows.
fn with_pipe_mark(steps: Vec<Step>, seed: u64) -> Vec<Step> {
    let mut r = Rng::new(seed ^ 0x919e_0000_0000_0006);
    if r.below(3) != 0 {
        return steps;
    }
    let at = r.below(steps.len() as u64 + 1) as usize;
    let mut m = Model::new(Semantics::Current);
    let mut out = Vec::with_capacity(steps.len() + 1);
    for s in &steps[..at] {
        m.step(*s).expect("generated steps are valid");
        out.push(*s);
    }
    let group = r.below(u64::from(m.groups_created()).max(1)) as u8;
    let mut mask = if r.below(2) == 0 { gen_events(&mut r, FAN_EVENTS) } else { gen_events(&mut r, FID_EVENTS) };
    if r.below(5) == 0 {
        mask |= mask::OPEN_PERM;
    }
    let flags = match r.below(10) {
        0 => flag::IGNORED,
        1 => flag::IGNORE | if r.below(2) == 0 { flag::SURV } else { 0 },
        2 => flag::REMOVE,
        3 => flag::ONLYDIR,
        4 => flag::EVICTABLE,
        _ => 0,
    };
    let obj = [MarkObj::Inode, MarkObj::Inode, MarkObj::Inode, MarkObj::Mount, MarkObj::Fs][r.below(5) as usize];
    let op = Op::PipeMark { group, mask, flags, obj };
    if let Some(s) = insert_mark(&mut r, &mut m, op, &steps[at..], true) {
        out.push(s);
    }
    out.extend_from_slice(&steps[at..]);
    out
}

/// Whether `s` is one of [`with_ignore_marks`]' steps (the main generator makes no
/// FAN_MARK_IGNORE marks).
#[cfg(test)]
fn is_ignore_mark(s: &Step) -> bool {
    matches!(s.op, Op::Watch { flags, .. } | Op::FsMark { flags, .. } if flags & flag::IGNORE != 0)
}

/// A random fanotify_init call: every class (and no class), the reporting modes and their
/// rules, the other flags, event file flags. Not FAN_REPORT_FD_ERROR (its kernels vary).
fn gen_init(r: &mut Rng) -> Op {
    let mut flags = [0, 0, 0, 0, init::CLASS_CONTENT, init::CLASS_CONTENT, init::CLASS_PRE_CONTENT, init::CLASS_BITS]
        [r.below(8) as usize];
    for (bit, one_in) in [
        (init::REPORT_FID, 3),
        (init::REPORT_DIR_FID, 3),
        (init::REPORT_NAME, 3),
        (init::REPORT_TARGET_FID, 4),
        (init::REPORT_PIDFD, 6),
        (init::REPORT_TID, 6),
        (init::CLOEXEC, 2),
        (init::NONBLOCK, 2),
        (init::UNLIMITED_QUEUE, 6),
        (init::UNLIMITED_MARKS, 6),
        (init::ENABLE_AUDIT, 20),
        (init::UNKNOWN, 20),
    ] {
        if r.below(one_in) == 0 {
            flags |= bit;
        }
    }
    let mut fflags = [0, 0, 0, fflag::WRONLY, fflag::RDWR, fflag::RDWR, 0, fflag::ACCMODE][r.below(8) as usize];
    if fflags == fflag::ACCMODE && r.below(2) == 0 {
        fflags = 0;
    }
    for (bit, one_in) in [
        (fflag::APPEND, 5),
        (fflag::NONBLOCK, 5),
        (fflag::CLOEXEC, 5),
        (fflag::NOATIME, 5),
        (fflag::LARGEFILE, 5),
        (fflag::DIRECTORY, 20),
    ] {
        if r.below(one_in) == 0 {
            fflags |= bit;
        }
    }
    // One in four as an unprivileged user, most of those with a file handle mode.
    let unpriv = r.below(4) == 0;
    if unpriv && r.below(3) != 0 {
        flags = (flags & !init::CLASS_BITS) | init::REPORT_FID;
    }
    Op::Init { flags, fflags, unpriv }
}

/// Adds up to two fanotify_init calls at random places, by idle tasks, from a stream of their
/// own: they change no state, so the rest of the scenario is what [`generate`] made for this
/// seed before init calls existed (recorded results of random scenarios stay valid).
fn with_inits(steps: Vec<Step>, seed: u64) -> Vec<Step> {
    let mut r = Rng::new(seed ^ 0x1417_f00d_5eed_0001);
    let n = r.below(3) as usize;
    let mut at: Vec<usize> = (0..n).map(|_| r.below(steps.len() as u64 + 1) as usize).collect();
    at.sort_unstable();
    let mut m = Model::new(Semantics::Current);
    let mut out = Vec::with_capacity(steps.len() + n);
    let mut next = at.into_iter().peekable();
    for i in 0..=steps.len() {
        while next.next_if_eq(&i).is_some() {
            let idle: Vec<u8> = (0..GEN_TASKS).filter(|t| !m.blocked(*t)).collect();
            let op = gen_init(&mut r);
            if let Some(&task) = idle.get(r.below(idle.len().max(1) as u64) as usize) {
                let s = Step { task, op };
                if m.step(s).is_ok() {
                    out.push(s);
                }
            }
        }
        if let Some(&s) = steps.get(i) {
            m.step(s).expect("generated steps are valid");
            out.push(s);
        }
    }
    out
}

/// Adds `fdinfo` reads from a stream of their own: up to two at random places and one per live
/// group at the end (what every mark's masks and flags came to). They change nothing.
fn with_fdinfo(steps: Vec<Step>, seed: u64) -> Vec<Step> {
    let mut r = Rng::new(seed ^ 0x3fd1_2f00_0000_0003);
    let n = r.below(3) as usize;
    let mut at: Vec<usize> = (0..n).map(|_| r.below(steps.len() as u64 + 1) as usize).collect();
    at.sort_unstable();
    let mut m = Model::new(Semantics::Current);
    let mut out = Vec::with_capacity(steps.len() + n + 5);
    let mut next = at.into_iter().peekable();
    let idle = |m: &Model| (0..GEN_TASKS).find(|t| !m.blocked(*t));
    for i in 0..=steps.len() {
        while next.next_if_eq(&i).is_some() {
            let g = r.below(u64::from(m.groups_created()).max(1)) as u8;
            if let Some(task) = idle(&m) {
                let s = Step { task, op: Op::Fdinfo { group: g } };
                if m.step(s).is_ok() {
                    out.push(s);
                }
            }
        }
        if let Some(&s) = steps.get(i) {
            m.step(s).expect("generated steps are valid");
            out.push(s);
        }
    }
    for g in 0..m.groups_created() {
        if let (true, Some(task)) = (m.group_alive(g), idle(&m)) {
            let s = Step { task, op: Op::Fdinfo { group: g } };
            if m.step(s).is_ok() {
                out.push(s);
            }
        }
    }
    out
}

/// Parses a `scenario/random-<seed>-<index>` name back into its scenario.
pub fn from_name(name: &str) -> Option<Scenario> {
    if let Some(rest) = name.strip_prefix("scenario/random-") {
        let (seed, index) = rest.rsplit_once('-')?;
        return Some(random(seed.parse().ok()?, index.parse().ok()?));
    }
    corpus().into_iter().find(|s| s.name == name)
}

/// The fixed corpus: the seed's stall and the rules a listener relies on.
pub fn corpus() -> Vec<Scenario> {
    let c = |name: &str, text: &str| Scenario {
        name: format!("scenario/{name}"),
        steps: parse(text).expect("corpus parses"),
    };
    vec![
        c("seed-stall-inotify", "t0 group content; t0 mark g0 i0 perm; t1 open i0; t0 read g0; t2 group inotify; t2 mark g1 i1 open; t2 close g1; t0 allow g0 t1"),
        c("seed-stall-fanotify", "t0 group content; t0 mark g0 i0 perm; t1 open i0; t0 read g0; t2 group notif; t2 mark g1 i1 open; t2 close g1; t0 allow g0 t1"),
        c("allow-deny", "t0 group content; t0 mark g0 i0 perm; t1 open i0; t0 read g0; t0 allow g0 t1; t1 open i0; t0 read g0; t0 deny g0 t1; t0 allow g0 t1"),
        c("priority-order", "t0 group content; t0 group precontent; t0 group notif; t0 mark g0 i0 perm; t0 mark g1 i0 perm; t0 mark g2 i0 open; t1 open i0; t0 read g0; t0 read g1; t0 allow g1 t1; t0 read g0; t0 allow g0 t1; t0 read g2"),
        c("deny-stops-delivery", "t0 group precontent; t0 group content; t0 mark g0 i0 perm; t0 mark g1 i0 perm; t1 open i0; t0 read g0; t0 deny g0 t1; t0 read g1"),
        c("listener-close-allows", "t0 group content; t0 mark g0 i0 perm; t1 open i0; t2 open i0; t0 read g0; t3 close g0; t1 open i1"),
        c("mark-remove-pending", "t0 group content; t0 mark g0 i0 perm; t1 open i0; t0 read g0; t0 unmark g0 i0; t0 allow g0 t1; t1 open i0"),
        c("unlink-pending", "t0 group content; t0 mark g0 i0 perm; t2 group inotify; t2 mark g1 i0 open; t1 open i0; t0 read g0; t3 unlink i0; t2 read g1; t0 allow g0 t1; t2 read g1; t3 open i0"),
        c("reverse-answers", "t0 group content; t0 mark g0 i0 perm; t1 open i0; t2 open i0; t3 open i0; t0 read g0; t0 allow g0 t3; t0 allow g0 t2; t0 allow g0 t1"),
        c("merge-notifications", "t0 group notif; t0 group inotify; t0 mark g0 i1 open; t0 mark g1 i1 open; t1 open i1; t1 open i1; t2 open i1; t0 read g0; t0 read g1"),
        // Issue #16: one scenario per area of the tree.
        c("tree-child-events", "t0 group inotify; t0 mark g0 d0 create+delete+movedfrom+movedto+attrib+access+open+closenw; t1 mkdir d1; t0 mark g0 d1 create+delete+movedto+deleteself; t1 create d1/i0; t1 cat i3; t1 rename i3 d1/i1; t1 chmod d1; t1 unlink d1/i0; t1 unlink d1/i1; t1 rmdir d1; t0 read g0"),
        c("inotify-flags", "t0 group inotify; t0 mark g0 i1 open+closenw oneshot; t1 open i1; t1 open i1; t0 mark g0 i1 access; t0 mark g0 i1 open mcreate; t0 mark g0 i1 open madd; t0 mark g0 i1 open onlydir; t0 mark g0 i1 open madd+mcreate; t1 cat i1; t0 mark g0 d0 open exclunlink; t1 open i2; t0 read g0"),
        c("fanotify-dir-marks", "t0 group notif; t0 mark g0 d0 open; t1 open i0; t1 open d0; t0 read g0; t0 mark g0 d0 open+child; t1 mkdir d1; t1 open i0; t1 open d1; t0 read g0; t0 mark g0 d0 open+child+ondir; t1 open d1; t1 open d0; t0 read g0; t0 mark g0 d0 create"),
        c("ignore-surv-modify", "t0 group notif; t0 mark g0 i0 open+closew; t0 mark g0 i0 open ignored; t0 mark g0 i1 open+closew; t0 mark g0 i1 open ignored+surv; t1 open i0; t1 open i1; t1 write i0; t1 write i1; t0 read g0; t1 open i0; t1 open i1; t0 read g0"),
        c("queue-overflow", "t0 group inotify; t0 mark g0 d0 attrib; t1 chmod i0; t1 chmod i1; t1 chmod i0; t1 chmod i1; t1 chmod i0; t1 chmod i1; t1 chmod i0; t1 chmod i1; t1 chmod i0; t1 chmod i1; t0 read g0; t1 chmod i2; t0 read g0"),
        c("invalid-calls", "t0 group notif; t0 group inotify; t0 mark g0 i0 perm; t0 mark g0 d0 open+create; t0 mark g0 i0 open onlydir; t0 unmark g0 i5; t0 mark g1 i0 perm; t0 mark g1 d2/i0 open; t0 close g1; t0 mark g1 i0 perm; t0 mark g1 i0 open; t1 rmdir i0; t1 unlink d0; t1 mkdir d1; t1 mkdir d1; t1 create d1/i0; t1 rmdir d1; t1 create d2/i0"),
        c("fanotify-fs-marks", "t0 group notif; t0 fsmark g0 i3 open; t1 mkdir d1; t1 create d1/i0; t1 open i0; t1 open d1/i0; t1 open d1; t0 read g0; t0 mountmark g0 d0 open+ondir+closenw; t1 cat d1/i0; t1 open d1; t0 mark g0 i1 open ignored+surv; t1 open i1; t1 write i2; t0 read g0; t0 fsmark g0 i0 open remove; t1 open i2; t0 read g0; t0 fsmark g0 i0 open remove; t0 fsmark g0 d0 create; t0 group inotify; t0 fsmark g1 i0 open; t0 mountmark g0 i0 attrib; t0 fsmark g0 d2 open; t0 group content; t0 mark g2 i4 perm; t1 open i4; t2 close g0; t0 read g2; t0 allow g2 t1"),
        c("fdinfo", "t0 group inotify; t0 mark g0 i0 modify+attrib oneshot; t0 mark g0 d0 create exclunlink; t0 fdinfo g0; t1 write i0; t0 read g0; t0 fdinfo g0; t0 group notif; t0 mark g1 i1 open+closew; t0 mark g1 i1 open ignored+surv; t0 mark g1 i2 open ignored; t0 mark g1 d0 open+child+ondir; t0 fsmark g1 i3 open+modify; t0 mountmark g1 d0 open; t0 fdinfo g1; t1 write i1; t1 write i2; t0 fdinfo g1; t0 unmark g1 i1; t0 fdinfo g1; t0 group content; t0 fdinfo g2; t0 close g0; t0 fdinfo g0"),
        c("fan-mark-ignore", "t0 group notif; t0 mountmark g0 d0 open+ondir; t0 mark g0 d0 open ignore+surv; t1 open d0; t1 open i0; t0 read g0; t0 mark g0 d0 open+ondir ignore+surv; t1 open d0; t1 open i0; t0 read g0; t0 mark g0 d0 open+child ignore+surv; t1 open i0; t1 open i1; t0 read g0; t0 fdinfo g0; t0 mark g0 d0 ondir ignore+remove; t1 open d0; t0 read g0; t0 mark g0 d0 open ignore; t0 mark g0 i2 open+ondir ignore; t0 mark g0 i2 open ignore; t0 mark g0 i2 access ignored; t0 mark g0 i3 open ignored+surv; t0 mark g0 i3 open ignore; t0 fsmark g0 i0 open ignore; t0 fsmark g0 i0 access+ondir ignore+surv; t1 cat i2; t1 open d0; t0 read g0; t0 mark g0 i2 open ignore+ignored; t0 mark g0 d0 child ignore+remove; t1 cat i2; t1 write i2; t1 open i2; t0 read g0; t0 fdinfo g0"),
        c("fanotify-fid", "t0 group fid+dfid+name; t0 group fid; t0 group fid+dfid+name+target; t0 group dfid; t1 unlink i5; t0 mark g0 d0 create+delete+movedfrom+movedto+ondir+open+attrib; t0 mark g0 i3 open+attrib+closenw; t0 fsmark g1 d0 attrib+deleteself+moveself+create+ondir; t0 mountmark g1 d0 attrib; t0 mark g2 d0 create+movedto+delete+ondir; t0 mark g2 i2 create; t0 mark g3 i1 moveself+attrib; t1 create i5; t1 mkdir d1; t2 chmod i3; t2 cat i3; t2 cat i3; t1 open d0; t1 rename i1 d1/i0; t2 unlink i4; t0 read g0; t0 read g1; t0 read g2; t0 read g3; t0 fdinfo g0; t0 fdinfo g3"),
        c("fan-mark-evictable", "t0 group notif; t0 mark g0 i0 open evictable; t0 fdinfo g0; t0 mark g0 i0 access; t0 mark g0 i0 modify evictable; t0 mark g0 i1 open+closenw evictable; t0 fsmark g0 d0 open evictable; t0 mountmark g0 d0 open evictable; t1 cat i1; t0 read g0; t0 mark g0 i1 modify evictable; t0 mark g0 i1 access ignored+surv+evictable; t0 fdinfo g0; t1 unlink i1; t0 fdinfo g0"),
        c("rmdir-pinned-child", "t0 mkdir d1; t0 create d1/i0; t0 group content; t0 group dfid; t0 group inotify; t0 mark g0 d1/i0 perm; t0 fsmark g1 d0 open+closenw; t0 mark g1 d1 deleteself+ondir; t0 mark g2 d1 deleteself+open; t1 open d1/i0; t2 unlink d1/i0; t2 rmdir d1; t0 read g1; t0 read g2; t0 read g0; t2 mkdir d1; t0 allow g0 t1; t0 read g1; t0 read g2"),
        c("pipe-marks", "t0 group notif; t0 group fid; t0 group content; t0 group inotify; t0 pipemark g0 open+modify; t0 pipe-fsmark g0 open; t0 pipe-mountmark g0 open; t0 pipe-fsmark g0 open remove; t0 pipe-fsmark g1 attrib remove; t0 pipemark g1 attrib+modify; t0 pipemark g2 perm; t0 pipemark g3 open; t0 pipemark g0 open onlydir; t0 pipemark g0 access ignored; t0 pipemark g0 create; t0 pipemark g1 create; t0 pipemark g0 modify remove; t0 pipemark g2 access ignore; t0 fdinfo g0; t0 fdinfo g1; t0 fdinfo g2"),
        c("fanotify-unpriv", "t0 group fid+dfid+name unpriv; t0 group fid unpriv; t0 group fid; t0 mark g0 d0 create+delete+attrib+ondir; t0 mark g1 i1 attrib+open+closenw; t0 mark g2 i1 attrib; t0 fsmark g0 d0 attrib; t0 mountmark g1 d0 open; t0 fsmark g1 d0 attrib remove; t0 pipe-fsmark g0 open; t0 pipemark g0 open; t1 chmod i1; t2 chmod i1; t1 unlink i5; t2 create i5; t2 mkdir d1; t1 chmod d0; t2 cat i1; t0 read g0; t0 read g1; t0 read g2; t0 fdinfo g0; t0 fdinfo g1"),
        c("fanotify-init-flags", "t0 init notif rdonly; t0 init content+fid rdonly; t0 init fid+name rdonly; t0 init fid+dfid+name+target rdwr+cloexec; t0 init dfid+name+target rdonly; t0 init pidfd+tid rdonly; t0 init content+precontent rdonly; t0 init notif badacc; t0 init notif rdonly+directory; t0 init unknown rdonly; t0 init audit wronly; t0 init precontent+uqueue+umarks+cloexec+nonblock rdwr+append+noatime+largefile; t0 init notif rdonly unpriv; t0 init fid+uqueue rdonly unpriv; t0 init dfid+name+cloexec rdwr unpriv; t0 init fid+unknown rdonly unpriv"),
    ]
}

/// Greedy shrinking: drops chunks of steps, then single steps, while `diverges` still holds;
/// candidates are normalized so they stay runnable. `budget` bounds the number of tries.
pub fn shrink(steps: &[Step], mut diverges: impl FnMut(&[Step]) -> bool, budget: usize) -> Vec<Step> {
    let mut cur = steps.to_vec();
    let mut tries = 0;
    let mut chunk = cur.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        let mut progressed = false;
        while i < cur.len() {
            if tries >= budget {
                return cur;
            }
            let mut cand = cur.clone();
            cand.drain(i..(i + chunk).min(cand.len()));
            let cand = normalize(&cand);
            if cand.len() < cur.len() {
                tries += 1;
                if diverges(&cand) {
                    cur = cand;
                    progressed = true;
                    continue;
                }
            }
            i += chunk;
        }
        if chunk == 1 && !progressed {
            return cur;
        }
        chunk = (chunk / 2).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for s in corpus() {
            assert_eq!(parse(&format(&s.steps)).unwrap(), s.steps, "{}", s.name);
        }
        for seed in 0..50 {
            let g = generate(seed, 30);
            assert_eq!(parse(&format(&g)).unwrap(), g);
        }
    }

    #[test]
    fn random_scenarios_add_init_calls_and_keep_the_rest() {
        let (mut ok, mut einval) = (0, 0);
        for i in 0..200 {
            let sc = random(5, i);
            let mixed = 5 ^ (u64::from(i).wrapping_mul(0xa076_1d64_78bd_642f));
            let rest: Vec<Step> = without_fid_group(&sc.steps)
                .iter()
                .filter(|s| {
                    !matches!(s.op, Op::Init { .. } | Op::FsMark { .. } | Op::Fdinfo { .. } | Op::PipeMark { .. })
                        && !is_ignore_mark(s)
                })
                .copied()
                .collect();
            assert_eq!(rest, generate(mixed, 24), "{}", sc.name);
            assert_eq!(parse(&format(&sc.steps)).unwrap(), sc.steps);
            for o in predict(&sc.steps, Semantics::Current).unwrap().iter().zip(&sc.steps) {
                if let (Op::Init { flags, .. }, Some(ret)) = (o.1.op, o.0.ret) {
                    assert_eq!(flags & init::REPORT_FD_ERROR, 0, "never generated");
                    match ret {
                        Ret::Ok(_) => ok += 1,
                        Ret::Err(_) => einval += 1,
                    }
                }
            }
        }
        // Both outcomes are reached often.
        assert!(ok > 20 && einval > 20, "{ok} succeed, {einval} fail");
        let text = "t0 init content+fid+name rdwr+append; t1 init notif badacc+directory; t2 init fid rdonly unpriv";
        let steps = parse(text).unwrap();
        assert_eq!(format(&steps), text);
        assert!(parse("t0 init fid bogus").unwrap_err().to_string().contains("unknown fanotify_init flag \"bogus\""));
    }

    #[test]
    fn bad_text_is_explained() {
        assert!(parse("t0 fly g0").unwrap_err().to_string().contains("unknown step"));
        assert!(parse("t0 open x3").unwrap_err().to_string().contains("inode should look like iN"));
        assert!(parse("t0 group weird").unwrap_err().to_string().contains("group class"));
        assert!(parse("t9 open i0").unwrap_err().to_string().contains("out of range"));
        assert!(parse("t0 mark g0 i0 write").unwrap_err().to_string().contains("unknown mask"));
    }

    /// The exact messages (the CLI and the agent's console show them as they are).
    #[test]
    fn error_messages_are_stable() {
        let msg = |t: &str| parse(t).unwrap_err().to_string();
        assert_eq!(msg("t0 fly g0"), r#"step 1 ("t0 fly g0"): unknown step "fly""#);
        assert_eq!(msg("# c\nt0 open i0; t0 open x3"), r#"step 2 ("t0 open x3"): inode should look like iN, not "x3""#);
        assert_eq!(
            msg("t0 group weird"),
            r#"step 1 ("t0 group weird"): unknown group class "weird" (inotify, notif, content, precontent, or a reporting mode: fid, dfid, name, target joined by +)"#
        );
        assert_eq!(
            msg("t0 group fid+content"),
            r#"step 1 ("t0 group fid+content"): unknown group class "fid+content" (inotify, notif, content, precontent, or a reporting mode: fid, dfid, name, target joined by +)"#
        );
        assert_eq!(msg("t0 group"), r#"step 1 ("t0 group"): missing group class"#);
        assert_eq!(msg("t9 open i0"), r#"step 1 ("t9 open i0"): task t9 out of range (at most 8 tasks)"#);
        assert_eq!(msg("t0 open i8"), r#"step 1 ("t0 open i8"): inode i8 out of range"#);
        assert_eq!(msg("t0 mark g0 i0 write"), r#"step 1 ("t0 mark g0 i0 write"): unknown mask "write" (open, perm)"#);
        assert_eq!(msg("t0 mark g0 i0"), r#"step 1 ("t0 mark g0 i0"): missing mask"#);
        assert_eq!(msg("t0"), r#"step 1 ("t0"): missing verb"#);
        assert_eq!(msg("t0 close g1 now"), r#"step 1 ("t0 close g1 now"): unexpected "now""#);
        assert_eq!(parse_step("").unwrap_err().to_string(), "missing task");
        let blocked = parse("t0 group content; t0 mark g0 i0 perm; t1 open i0; t1 open i0").unwrap();
        assert_eq!(
            predict(&blocked, Semantics::Current).unwrap_err().to_string(),
            "t1 open i0: TaskBlocked { task: 1 }"
        );
    }

    #[test]
    fn corpus_predictions_differ_only_for_the_seed_stall() {
        for s in corpus() {
            let cur = predict(&s.steps, Semantics::Current).unwrap();
            let old = predict(&s.steps, Semantics::Pre412).unwrap();
            let differs = cur.iter().zip(&old).position(|(a, b)| a != b);
            let is_seed = s.name.starts_with("scenario/seed-stall");
            assert_eq!(differs.is_some(), is_seed, "{}: {:?}", s.name, differs);
            if is_seed {
                // The close of the unrelated group: completes now, blocked before 4.12.
                let i = differs.unwrap();
                assert!(matches!(s.steps[i].op, Op::Close { .. }));
                assert_eq!(old[i].ret, None);
                let msg = compare_step(&s.steps[i], &cur[i], &old[i]).unwrap();
                assert_eq!(msg, "t2 close g1: model: returns 0; kernel: blocks");
            }
        }
    }

    #[test]
    fn generated_scenarios_are_runnable_and_deterministic() {
        for seed in 0..200 {
            let g = generate(seed, 24);
            assert_eq!(g, generate(seed, 24));
            assert_eq!(normalize(&g), g, "seed {seed}");
            // Generated for the current semantics (what the kernel under test should have);
            // under pre-4.12 a task may be stuck where the scenario goes on with it.
            predict(&g, Semantics::Current).unwrap();
        }
        assert_eq!(from_name("scenario/random-7-3").unwrap(), random(7, 3));
        assert_eq!(from_name("scenario/allow-deny").unwrap().steps.len(), 9);
        assert!(from_name("scenario/nope").is_none());
    }

    #[test]
    fn random_scenarios_exercise_permission_events() {
        let perms = (0..100u32)
            .filter(|i| predict(&random(1, *i).steps, Semantics::Current).unwrap().iter().any(|o| o.ret.is_none()))
            .count();
        // The generator also covers the tree, inotify flags, fanotify directory marks and
        // ignore masks since issue #16, so fewer scenarios reach a permission wait.
        assert!(perms > 15, "only {perms} of 100 scenarios block at all");
    }

    /// Every area of issue #16 is reached by the first 300 random scenarios of a seed.
    #[test]
    fn random_scenarios_reach_every_area() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..300 {
            let sc = random(3, i);
            let pred = predict(&sc.steps, Semantics::Current).unwrap();
            for (s, o) in sc.steps.iter().zip(&pred) {
                let text = format_step(s);
                seen.insert(text.split_whitespace().nth(1).unwrap().to_string());
                for f in [
                    "oneshot",
                    "madd",
                    "mcreate",
                    "exclunlink",
                    "onlydir",
                    "ignored",
                    "surv",
                    "remove",
                    "child",
                    "ondir",
                ] {
                    if text.contains(f) {
                        seen.insert(f.to_string());
                    }
                }
                if let Some(Ret::Err(e)) = o.ret {
                    seen.insert(errno_name(e));
                }
                for e in &o.events {
                    seen.insert(mask_name(e.mask));
                }
            }
        }
        for want in [
            "create",
            "mkdir",
            "rmdir",
            "rename",
            "chmod",
            "cat",
            "write",
            "unlink",
            "oneshot",
            "madd",
            "mcreate",
            "exclunlink",
            "onlydir",
            "ignored",
            "surv",
            "remove",
            "child",
            "ondir",
            "overflow",
            "EINVAL (22)",
            "ENOTDIR (20)",
            "EEXIST (17)",
            "ENOTEMPTY (39)",
            "perm",
            "movedfrom",
            "closew",
        ] {
            assert!(seen.contains(want), "no random scenario reaches {want}: {seen:?}");
        }
    }

    /// Random scenarios make filesystem and mount marks (session 6), most of them accepted,
    /// some refused, and in many scenarios they change what a group reads: without them the
    /// prediction differs. The rest of each scenario is what the generator made before.
    #[test]
    fn random_scenarios_reach_filesystem_marks() {
        let (mut fs_ok, mut mount_ok, mut refused, mut matter) = (0, 0, 0, 0);
        for i in 0..300 {
            let sc = random(3, i);
            let pred = predict(&sc.steps, Semantics::Current).unwrap();
            for (s, o) in sc.steps.iter().zip(&pred) {
                if let Op::FsMark { mount, .. } = s.op {
                    match o.ret {
                        Some(Ret::Ok(_)) if mount => mount_ok += 1,
                        Some(Ret::Ok(_)) => fs_ok += 1,
                        _ => refused += 1,
                    }
                }
            }
            let without: Vec<Step> =
                sc.steps.iter().filter(|s| !matches!(s.op, Op::FsMark { .. } | Op::Fdinfo { .. })).copied().collect();
            let pred2 = predict(&without, Semantics::Current).unwrap();
            let reads = |p: &[StepObs], st: &[Step]| -> Vec<Vec<Ev>> {
                st.iter()
                    .zip(p)
                    .filter(|(s, _)| matches!(s.op, Op::ReadEvents { .. }))
                    .map(|(_, o)| o.events.clone())
                    .collect()
            };
            if reads(&pred, &sc.steps) != reads(&pred2, &without) {
                matter += 1;
            }
        }
        eprintln!("300 scenarios: {fs_ok} filesystem and {mount_ok} mount marks accepted, {refused} refused; they change what is read in {matter}");
        assert!(fs_ok > 50 && mount_ok > 50 && refused > 20, "fs {fs_ok}, mount {mount_ok}, refused {refused}");
        assert!(matter > 30, "filesystem marks change what is read in only {matter} of 300 scenarios");
    }

    /// Random scenarios make FAN_MARK_IGNORE marks (session 7): accepted ones on files and
    /// directories, each of its errnos, and in some scenarios what is read or what fdinfo shows
    /// changes without them.
    /// The kernel orders groups of one priority by address: two of them asking for permission
    /// on one file at once would make the order (and what each reads) unpredictable, so the
    /// generator never lets that happen.
    #[test]
    fn random_scenarios_never_have_two_permission_groups_of_one_priority_on_a_file() {
        // Seed 162 is where a trust run met the generator's one lapse (a permission mark it
        // forgot while the mark stayed).
        for (seed, i) in (0..3000).map(|i| (8, i)).chain((0..100).map(|i| (162, i))) {
            let sc = random(seed, i);
            let mut m = Model::new(Semantics::Current);
            for (k, s) in sc.steps.iter().enumerate() {
                m.step(*s).unwrap();
                for node in 0..kbot_refcore::MAX_NODES as u8 {
                    let asking = m.groups_marking(node, mask::OPEN_PERM);
                    for a in 0..8u8 {
                        for b in a + 1..8u8 {
                            let both = asking & (1 << a) != 0 && asking & (1 << b) != 0;
                            let prio = |g: u8| m.group_class(g).map(Class::priority);
                            assert!(
                                !both || prio(a) != prio(b),
                                "{} step {}: groups {a} and {b} both ask on node {node}",
                                sc.name,
                                k + 1
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn random_scenarios_reach_pipe_marks() {
        let mut results = std::collections::BTreeMap::new();
        for i in 0..600 {
            let sc = random(9, i);
            let pred = predict(&sc.steps, Semantics::Current).unwrap();
            for (s, o) in sc.steps.iter().zip(&pred) {
                if matches!(s.op, Op::PipeMark { .. }) {
                    *results.entry(o.ret.expect("a mark never blocks")).or_insert(0) += 1;
                }
            }
        }
        eprintln!("600 scenarios: pipe marks {results:?}");
        for r in [Ret::Ok(0), Ret::Err(kbot_refcore::EINVAL), Ret::Err(kbot_refcore::ENOTDIR)] {
            assert!(results.get(&r).copied().unwrap_or(0) > 5, "{r:?}: {results:?}");
        }
    }

    #[test]
    fn random_scenarios_reach_fid_groups() {
        let (mut made, mut accepted) = (0, 0);
        let mut errnos = std::collections::BTreeMap::new();
        // Records read: FID only, DFID, DFID_NAME with a name, with ".", and with the child's FID.
        let mut kinds = [0usize; 5];
        for i in 0..600 {
            let sc = random(6, i);
            let pred = predict(&sc.steps, Semantics::Current).unwrap();
            let Some(at) = sc.steps.iter().position(|s| matches!(s.op, Op::FidGroup { .. })) else { continue };
            if pred[at].ret != Some(Ret::Ok(0)) {
                continue;
            }
            made += 1;
            for (s, o) in sc.steps.iter().zip(&pred).skip(at + 1) {
                match s.op {
                    Op::AddMark { group: 0, .. } | Op::Watch { group: 0, .. } | Op::FsMark { group: 0, .. } => {
                        match o.ret {
                            Some(Ret::Ok(_)) => accepted += 1,
                            Some(Ret::Err(e)) => *errnos.entry(e).or_insert(0) += 1,
                            None => panic!("a mark blocked"),
                        }
                    }
                    Op::ReadEvents { group: 0 } => {
                        for e in o.events.iter().filter(|e| e.mask != mask::OVERFLOW) {
                            let k = match (e.dir, e.name, e.inode) {
                                (NO_NODE, _, _) => 0,
                                (_, NO_NAME, NO_NODE) => 1,
                                (_, kbot_refcore::DOT_NAME, _) => 3,
                                (_, _, NO_NODE) => 2,
                                _ => 4,
                            };
                            kinds[k] += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        eprintln!("600 scenarios: {made} with a group reporting file handles; marks {accepted} accepted, refused {errnos:?}; events read as FID, DFID, DFID_NAME, \".\", with the child's FID: {kinds:?}");
        assert!(made > 300, "{made}");
        assert!(accepted > 500, "{accepted}");
        for e in [kbot_refcore::EINVAL, kbot_refcore::ENOTDIR, kbot_refcore::ENOENT] {
            assert!(errnos.get(&e).copied().unwrap_or(0) > 3, "errno {e}: {errnos:?}");
        }
        // A "." record needs a group reporting names and an event on a directory itself,
        // which the main stream makes now and then (the corpus has one).
        assert!(kinds.iter().enumerate().all(|(i, k)| *k > if i == 3 { 6 } else { 20 }), "{kinds:?}");
    }

    /// A quarter of the groups reporting file handles are unprivileged: their filesystem and
    /// mount marks are refused (EPERM), their inode marks hear events that show the process.
    #[test]
    fn random_scenarios_reach_unprivileged_groups() {
        let (mut made, mut eperm, mut process_events) = (0, 0, 0);
        for i in 0..600 {
            let sc = random(8, i);
            let pred = predict(&sc.steps, Semantics::Current).unwrap();
            let Some(at) = sc.steps.iter().position(|s| matches!(s.op, Op::FidGroup { unpriv: true, .. })) else {
                continue;
            };
            if pred[at].ret != Some(Ret::Ok(0)) {
                continue;
            }
            made += 1;
            for (s, o) in sc.steps.iter().zip(&pred).skip(at + 1) {
                match s.op {
                    Op::FsMark { group: 0, .. } | Op::PipeMark { group: 0, obj: MarkObj::Fs | MarkObj::Mount, .. } => {
                        assert_eq!(o.ret, Some(Ret::Err(kbot_refcore::EPERM)), "{}", format_step(s));
                        eperm += 1;
                    }
                    Op::ReadEvents { group: 0 } => {
                        let evs = o.events.iter().filter(|e| e.mask != mask::OVERFLOW);
                        assert!(evs.clone().all(|e| e.task == kbot_refcore::PROCESS_TASK), "{:?}", o.events);
                        assert!(evs.clone().all(|e| event_name(e).contains(" tP")), "{}", events_name(&o.events));
                        process_events += evs.count();
                    }
                    _ => {}
                }
            }
        }
        eprintln!("600 scenarios: {made} unprivileged groups, {eperm} marks refused, {process_events} events read");
        assert!((60..200).contains(&made), "{made}");
        assert!(eperm > 10 && process_events > 40, "{eperm} {process_events}");
        let text = "t0 group fid+dfid+name unpriv";
        assert_eq!(format_step(&parse_step(text).unwrap()), text);
        assert_eq!(parse_step("t0 group fid root"), Err(StepError::UnknownGroupWord("root".into())));
    }

    #[test]
    fn random_scenarios_reach_fan_mark_ignore() {
        let (mut accepted, mut matter) = (0, 0);
        let mut errnos = std::collections::BTreeMap::new();
        for i in 0..300 {
            let sc = random(4, i);
            let pred = predict(&sc.steps, Semantics::Current).unwrap();
            for (s, o) in sc.steps.iter().zip(&pred) {
                if is_ignore_mark(s) {
                    match o.ret {
                        Some(Ret::Ok(_)) => accepted += 1,
                        Some(Ret::Err(e)) => *errnos.entry(e).or_insert(0) += 1,
                        None => panic!("a mark blocked"),
                    }
                }
            }
            let without: Vec<Step> = sc.steps.iter().filter(|s| !is_ignore_mark(s)).copied().collect();
            let pred2 = predict(&without, Semantics::Current).unwrap();
            let seen = |p: &[StepObs], st: &[Step]| -> Vec<Vec<Ev>> {
                st.iter()
                    .zip(p)
                    .filter(|(s, _)| matches!(s.op, Op::ReadEvents { .. } | Op::Fdinfo { .. }))
                    .map(|(_, o)| o.events.clone())
                    .collect()
            };
            if seen(&pred, &sc.steps) != seen(&pred2, &without) {
                matter += 1;
            }
        }
        eprintln!("300 scenarios: {accepted} FAN_MARK_IGNORE marks accepted, refused {errnos:?}; they change what is seen in {matter}");
        assert!(accepted > 150, "{accepted}");
        for e in [kbot_refcore::EINVAL, kbot_refcore::EISDIR, kbot_refcore::ENOTDIR] {
            assert!(errnos.get(&e).copied().unwrap_or(0) > 3, "errno {e}: {errnos:?}");
        }
        assert!(matter > 80, "FAN_MARK_IGNORE marks change what is seen in only {matter} of 300 scenarios");
    }

    #[test]
    fn shrinking_finds_the_seed_stall_core() {
        // A long random prefix and suffix around the seed's stall; "diverges" = pre-4.12 and
        // current disagree. The minimum keeps the permission wait and the close.
        let mut steps = generate(42, 10).into_iter().filter(|s| s.task > 3).collect::<Vec<_>>();
        steps.extend(from_name("scenario/seed-stall-inotify").unwrap().steps);
        steps.extend(parse("t3 group notif; t3 mark g2 i2 open; t3 open i2; t3 read g2").unwrap());
        let differs = |s: &[Step]| predict(s, Semantics::Current).unwrap() != predict(s, Semantics::Pre412).unwrap();
        assert!(differs(&steps));
        let min = shrink(&steps, differs, 500);
        assert!(differs(&min));
        assert!(min.len() <= 6, "{}", format(&min));
        let text = format(&min);
        assert!(text.contains("open i0") && text.contains("close g1"), "{text}");
    }

    #[test]
    fn signatures_ignore_ids() {
        let a = parse_step("t1 close g3").unwrap();
        let b = parse_step("t2 close g1").unwrap();
        let want = StepObs { ret: Some(Ret::Ok(0)), ..Default::default() };
        let got = StepObs::default();
        assert_eq!(signature(&a, &want, &got), signature(&b, &want, &got));
        assert_eq!(signature(&a, &want, &got), "close: model returns 0 / kernel blocks");
        let open = parse_step("t1 open i0").unwrap();
        assert_ne!(signature(&open, &want, &got), signature(&a, &want, &got));
    }

    #[test]
    fn compare_step_names_the_difference() {
        let s = parse_step("t1 open i0").unwrap();
        let want = StepObs { ret: Some(Ret::Err(1)), ..Default::default() };
        let got = StepObs { ret: Some(Ret::Err(13)), ..Default::default() };
        assert_eq!(
            compare_step(&s, &want, &got).unwrap(),
            "t1 open i0: model: fails with EPERM (1); kernel: fails with EACCES (13)"
        );
        assert_eq!(compare_step(&s, &want, &want), None);
    }
}
