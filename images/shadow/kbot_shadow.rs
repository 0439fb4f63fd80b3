// SPDX-License-Identifier: GPL-2.0

//! kbot shadow checks: the rules of kbot's reference core, checked online from hooks in the
//! notification core (see include/linux/kbot_shadow.h). `kbot_rules.rs` is the same source
//! as kbot's `crates/kbot-refcore/src/rules.rs`. A violation prints one parseable record per
//! rule and boot, then the stack:
//!
//!     kbot-shadow: VIOLATION rule=wait-in-srcu pid=25 hooks=srcu-enter,pin,wait-start

use core::sync::atomic::{AtomicBool, Ordering};
use kernel::prelude::*;

#[path = "kbot_rules.rs"]
#[allow(dead_code)]
mod rules;

module! {
    type: KbotShadow,
    name: "kbot_shadow",
    author: "kbot",
    description: "kbot shadow checks of the notification core",
    license: "GPL",
}

struct KbotShadow;

impl kernel::Module for KbotShadow {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("kbot-shadow: active rules=wait-in-srcu,unpin-unpinned,event-after-shutdown,wait-without-pin,waiter-outlives-group,grace-period-waits-for-listener\n");
        Ok(KbotShadow)
    }
}

static LOCK: AtomicBool = AtomicBool::new(false);
static mut MONITOR: rules::Monitor = rules::Monitor::new();

extern "C" {
    fn dump_stack();
}

/// Formats the hook history into a fixed buffer (no allocation on the hook path).
struct Buf {
    b: [u8; 160],
    n: usize,
}

impl core::fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let take = s.len().min(self.b.len() - self.n);
        self.b[self.n..self.n + take].copy_from_slice(&s.as_bytes()[..take]);
        self.n += take;
        Ok(())
    }
}

/// Called from the C hooks.
#[no_mangle]
pub extern "C" fn kbot_shadow_hook(hook: u32, pid: i32, obj: usize) {
    let Some(h) = rules::Hook::from_code(hook) else { return };
    while LOCK.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        core::hint::spin_loop();
    }
    // SAFETY: LOCK serializes every access to MONITOR.
    let v = unsafe { (*core::ptr::addr_of_mut!(MONITOR)).hook(pid, h, obj) };
    LOCK.store(false, Ordering::Release);
    if let Some(v) = v {
        let mut buf = Buf { b: [0; 160], n: 0 };
        let mut first = true;
        for h in v.history.iter().flatten() {
            let _ = core::fmt::Write::write_str(&mut buf, if first { "" } else { "," });
            let _ = core::fmt::Write::write_str(&mut buf, h.name());
            first = false;
        }
        let hooks = core::str::from_utf8(&buf.b[..buf.n]).unwrap_or("?");
        pr_err!("kbot-shadow: VIOLATION rule={} pid={} hooks={}\n", v.rule.name(), v.pid, hooks);
        // SAFETY: dump_stack() has no preconditions.
        unsafe { dump_stack() };
    }
}
