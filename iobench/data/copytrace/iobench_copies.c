// SPDX-License-Identifier: GPL-2.0
/*
 * iobench_copies: a tracepoint on each call of the kernel's iov_iter copy routines.
 *
 * Why a module: tracefs kprobe events (and perf/bpftrace, which use them) refuse
 * functions without an ftrace site, and on Debian's 6.1 kernel all of lib/iov_iter.c
 * is such ("Could not probe notrace function _copy_to_iter"). SystemTap, which builds
 * a module like this one, does not build against 6.1.1xx with Debian 12's 4.8.
 * register_kprobe() itself has no such restriction; this module arms plain kprobes
 * and turns each hit into the tracepoint iobench:copy (routine, bytes), so that the
 * kernel's own hist triggers do the per-thread sums, exactly as for a kprobe event.
 *
 * Routines (x86-64; `bytes` is their size argument, i.e. what they were asked to copy):
 *   0 _copy_to_iter(addr, bytes, i)             kernel -> iovec (tap read, vhost rx, socket recv)
 *   1 _copy_from_iter(addr, bytes, i)           iovec -> kernel (tap write, vhost tx, socket send)
 *   2 _copy_from_iter_nocache(addr, bytes, i)   iovec -> kernel, non-temporal (TCP send)
 *   3 csum_and_copy_to_iter(addr, bytes, c, i)  copy + checksum (UDP recv)
 *   4 csum_and_copy_from_iter(addr, bytes, c, i)
 * copy_page_{to,from}_iter and skb_copy_datagram_{iter,from_iter} end in these, so they
 * are not probed themselves (no double counting).
 */
#include <linux/module.h>
#include <linux/kprobes.h>

#define CREATE_TRACE_POINTS
#include "iobench_copies_trace.h"

static struct kprobe probes[] = {
	{ .symbol_name = "_copy_to_iter" },
	{ .symbol_name = "_copy_from_iter" },
	{ .symbol_name = "_copy_from_iter_nocache" },
	{ .symbol_name = "csum_and_copy_to_iter" },
	{ .symbol_name = "csum_and_copy_from_iter" },
};
static bool armed[ARRAY_SIZE(probes)];

static int on_copy(struct kprobe *p, struct pt_regs *regs)
{
	trace_copy((unsigned int)(p - probes), regs->si);
	return 0;
}

static int __init iobench_copies_init(void)
{
	int i, n = 0, err = 0;

	for (i = 0; i < ARRAY_SIZE(probes); i++) {
		probes[i].pre_handler = on_copy;
		err = register_kprobe(&probes[i]);
		armed[i] = err == 0;
		if (armed[i])
			n++;
		else
			pr_info("iobench_copies: %s not probed (%d)\n", probes[i].symbol_name, err);
	}
	if (!armed[0] || !armed[1]) {
		for (i = 0; i < ARRAY_SIZE(probes); i++)
			if (armed[i])
				unregister_kprobe(&probes[i]);
		return armed[0] ? err : -ENOENT;
	}
	pr_info("iobench_copies: %d copy routines probed\n", n);
	return 0;
}

static void __exit iobench_copies_exit(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(probes); i++)
		if (armed[i])
			unregister_kprobe(&probes[i]);
}

module_init(iobench_copies_init);
module_exit(iobench_copies_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("iobench: a tracepoint per kernel iov_iter copy, for per-thread copy counts");
