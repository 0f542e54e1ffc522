"""The run's Open vSwitch (topologies ovs, ovs-netdev): its datapath's flow-cache lookups and the CPU of
ovs-vswitchd's threads, per window.

Why: on the kernel datapath a frame that hits the flow cache is switched in softirq (the host side's
`host_softirq_s` has it) and one that misses is upcalled to ovs-vswitchd's handler thread, which adds
a flow: hits against misses say whether a window ran on the fast path, and `masks_hit` how many
subtables each lookup searched. On the userspace datapath ovs-vswitchd's own threads move every
frame. Read at the window's edges only (two ovs-appctl round trips: not free under emulation); a
window without OVS reads 0 CPU (no such thread) and no lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iobench.instruments.base import Instrument, Reading, Window

LOOKUPS = {"ovs_hits": "hit", "ovs_misses": "missed", "ovs_lost": "lost", "ovs_masks_hit": "masks_hit"}


@dataclass(frozen=True)
class OvsSample:
    cpu_s: float
    datapath: dict[str, float]


class OvsCounters(Instrument):
    name = "ovs"
    edges_only = True

    def sample(self, window: Window) -> OvsSample | None:
        if window.ovs is None:
            return None
        window.ovs.check_alive()  # a daemon that died fails the window now, saying which and why
        return OvsSample(round(sum(t.cpu_s for t in window.ovs.threads()), 3), window.ovs.datapath_stats())

    def record(self, sample: Any) -> dict[str, Any]:
        return {} if sample is None else {"ovs": {"cpu_s": sample.cpu_s, "datapath": sample.datapath}}

    def read(self, window: Window, samples: list[Any]) -> Reading:
        first, last = samples[0], samples[-1]
        if first is None or last is None:
            return Reading(columns={"cpu_s_ovs": 0.0, **dict.fromkeys(LOOKUPS)})
        columns: dict[str, Any] = {"cpu_s_ovs": round(last.cpu_s - first.cpu_s, 3)}
        na = []
        for column, key in LOOKUPS.items():
            a, b = first.datapath.get(key), last.datapath.get(key)
            columns[column] = int(b - a) if a is not None and b is not None else None
            if columns[column] is None:
                na.append(f"{column}: the {window.ovs.datapath_type if window.ovs else ''} datapath does not count it")
        return Reading(columns=columns, na=na)
