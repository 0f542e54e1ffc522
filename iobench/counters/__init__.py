"""Readers and parsers of one counter source each, with no knowledge of windows or rows.

`proc` (/proc of QEMU and the vhost workers: syscall bytes, CPU per thread), `kvm` (KVM binary stats
through QMP query-stats), `tcg` (trap equivalents from QEMU trace events), `copytrace` (the kernel's
copy routines per thread, with --copy-trace), `exitreasons` (KVM exits by reason and where they land,
with --exit-reasons), `tracefs` (hist triggers). Each has pure parsers tested on captured real output;
the instruments (iobench.instruments) call them around every window. What each column means:
docs/metrics.md.
"""
