/* SPDX-License-Identifier: GPL-2.0 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM iobench

#if !defined(_IOBENCH_COPIES_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _IOBENCH_COPIES_TRACE_H

#include <linux/tracepoint.h>

TRACE_EVENT(copy,
	TP_PROTO(unsigned int routine, unsigned long bytes),
	TP_ARGS(routine, bytes),
	TP_STRUCT__entry(
		__field(unsigned int, routine)
		__field(u64, bytes)
	),
	TP_fast_assign(
		__entry->routine = routine;
		__entry->bytes = bytes;
	),
	TP_printk("routine=%u bytes=%llu", __entry->routine, __entry->bytes)
);

#endif

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#define TRACE_INCLUDE_FILE iobench_copies_trace
#include <trace/define_trace.h>
