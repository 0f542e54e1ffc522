"""Counters of a measurement window: read at its edges, and once per `timeline_interval_s` inside it
for timeline.csv.

One module per source: `proc` (/proc of QEMU and the vhost workers: syscall bytes, CPU per thread),
`kvm` (KVM binary stats through QMP query-stats), `tcg` (trap equivalents from QEMU trace events),
`copytrace` (the kernel's copy routines per thread, with --copy-trace). The tap's and veth's counters
are read over netlink by `topology`. Each source has a pure parser tested on captured real output
and a reader that takes the snapshot (`measure.snapshot`). What each column means: docs/metrics.md.
"""
