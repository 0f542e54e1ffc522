"""Trap equivalents under TCG, from QEMU trace events switched on over QMP for the window only.

Under TCG nothing exits; what would is a guest access QEMU dispatches to a device model, a virtio
kick and a LAPIC delivery (counters.tcg). The events go to QEMU's `-D` log; a sample is the log's
size, so the window's lines (and each timeline slice's, cut at line starts) are read back from it.
A missing log is a failed cell, never 0 traps.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from iobench.counters import tcg
from iobench.errors import CellFailed
from iobench.instruments.base import Instrument, Reading, RunScope, Window
from iobench.schema import KVM_STATS
from iobench.vm import VM

TCG_NA = ("KVM exit kinds are empty under TCG: exits are trap equivalents (device MMIO/PIO dispatches + "
          "virtio kicks), irq_injections are LAPIC deliveries")


def set_trace(vm: VM, enable: bool) -> None:
    for event in tcg.EVENTS:
        vm.command("trace-event-set-state", name=event, enable=enable)


def trap_columns(traps: tcg.TrapCounts) -> dict[str, Any]:
    """A row's (or a slice's) exit columns from trap counts: the KVM kinds empty."""
    none: dict[str, Any] = dict.fromkeys(KVM_STATS, None)
    return none | {"exits": traps.total, "irq_injections": traps.irq_deliveries, "traps_nic": traps.nic,
                   "traps_apic": traps.apic, "traps_other": traps.other,
                   "virtio_kicks_handled": traps.virtio_kicks_handled}


class TcgTraps(Instrument):
    name = "tcg-traps"

    def __init__(self, run: RunScope) -> None:
        self.run = run

    def start(self, window: Window) -> None:
        if window.vm is not None:
            set_trace(window.vm, True)

    def sample(self, window: Window) -> int | None:
        return tcg.log_size(window.vm.trace_log) if window.vm is not None else None

    def stop(self, window: Window) -> None:
        if window.vm is not None and window.vm.alive():
            set_trace(window.vm, False)

    def read(self, window: Window, samples: list[Any]) -> Reading:
        vm = window.vm
        if vm is None:
            return Reading()
        if samples[0] is None or samples[-1] is None:
            raise CellFailed(f"QEMU's trace log {vm.trace_log} is missing: the window's trap counts cannot be read")
        lines = tcg.read_range(vm.trace_log, samples[0], samples[-1])
        traps = tcg.parse(lines)
        window.facts["traps"] = traps
        raw: dict[str, Any] = {}
        if window.traffic:
            raw = {f"{window.raw_name}.trace-head.log": "\n".join(lines[:200]) + "\n",
                   f"{window.raw_name}.traps.json": asdict(traps)}
        slices = [] if None in samples else [trap_columns(t) for t in tcg.trace_slices(vm.trace_log, samples)]
        return Reading(columns=trap_columns(traps), na=[TCG_NA], raw=raw, slices=slices)
