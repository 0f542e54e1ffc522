"""Counters read at the edges of a measurement window, never polled during it.

One module per source: `proc` (/proc of QEMU and vhost workers), `link` (tap
statistics over netlink), `kvm` (KVM binary stats through QMP query-stats),
`tcg` (trap equivalents from QEMU trace events). Each has a pure parser tested
on captured real output and a reader that takes the snapshot.
"""
