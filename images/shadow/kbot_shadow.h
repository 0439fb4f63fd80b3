/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kbot shadow checks: hooks in the notification core that feed kbot's reference core
 * (fs/notify/kbot_shadow.rs, rules in fs/notify/kbot_rules.rs). Added by kbot to the kernel
 * under test; not part of any series.
 */
#ifndef _LINUX_KBOT_SHADOW_H
#define _LINUX_KBOT_SHADOW_H

enum kbot_shadow_hook {
	KBOT_SRCU_ENTER = 1,
	KBOT_SRCU_EXIT = 2,
	KBOT_WAIT_START = 3,
	KBOT_WAIT_END = 4,
	KBOT_PIN = 5,
	KBOT_UNPIN = 6,
	KBOT_SHUTDOWN = 7,
	KBOT_QUEUED = 8,
	KBOT_FREE = 9,
	KBOT_GRACE_START = 10,
	KBOT_GRACE_END = 11,
};

#ifdef CONFIG_KBOT_SHADOW
#include <asm/current.h>
#include <linux/sched.h>
void kbot_shadow_hook(unsigned int hook, int pid, unsigned long obj);
#define kbot_shadow(hook, obj) kbot_shadow_hook((hook), current->pid, (unsigned long)(obj))
#else
#define kbot_shadow(hook, obj) do { } while (0)
#endif

#endif /* _LINUX_KBOT_SHADOW_H */
