"""Trap equivalents under TCG, from QEMU trace events.

Under TCG there are no VM exits. What would exit under KVM is a guest access
that QEMU's memory core dispatches to a device model (`memory_region_ops_read`/
`_write`, by region name) and an interrupt delivered to the guest's LAPIC
(`apic_deliver_irq`). virtio kicks under TCG are intercepted by QEMU's
ioeventfd emulation before the dispatch trace point, so `virtio_queue_notify`
counts them instead; it fires once per eventfd wake-up, so kicks that land
before QEMU drains the eventfd are counted once (a lower bound, said in the
column name). Events are switched on over QMP only for the measured window;
QEMU's log trace backend writes them to the `-D` file, whose growth over the
window is also what QEMU's wchar gained from tracing (subtracted by the caller).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

EVENTS = ("memory_region_ops_read", "memory_region_ops_write", "virtio_queue_notify",
          "virtio_notify", "apic_deliver_irq")
_LINE = re.compile(r"^(?:\d+@[\d.]+:)?(?P<event>[a-z0-9_]+) (?P<args>.*)$")
_MR = re.compile(r"cpu (?P<cpu>-?\d+) .* name '(?P<name>[^']*)'")
NIC_REGION_PREFIXES = ("e1000", "virtio-pci", "msix-", "rtl8139")  # e1000 covers e1000e-mmio


@dataclass
class TrapCounts:
    """Counts of one window. `by_region` keys are QEMU memory-region names."""

    by_region: dict[str, int] = field(default_factory=dict)
    device_writes: int = 0  # cpu -1: device-originated (MSI) writes, not guest traps
    virtio_kicks_handled: int = 0
    virtio_notify: int = 0
    irq_deliveries: int = 0

    @property
    def nic(self) -> int:
        return sum(v for k, v in self.by_region.items() if k.startswith(NIC_REGION_PREFIXES))

    @property
    def apic(self) -> int:
        return self.by_region.get("apic-msi", 0)

    @property
    def other(self) -> int:
        return sum(self.by_region.values()) - self.nic - self.apic

    @property
    def total(self) -> int:
        """Trap equivalents: guest-originated dispatches plus kicks that bypass the dispatch trace."""
        return sum(self.by_region.values()) + self.virtio_kicks_handled


def parse(lines: list[str]) -> TrapCounts:
    """Count trace lines of the log backend (with or without the pid@time: prefix)."""
    c = TrapCounts()
    for line in lines:
        m = _LINE.match(line)
        if not m:
            continue
        event = m["event"]
        if event.startswith("memory_region_ops_"):
            mr = _MR.search(m["args"])
            if not mr:
                continue
            if int(mr["cpu"]) < 0:
                c.device_writes += 1
            else:
                c.by_region[mr["name"]] = c.by_region.get(mr["name"], 0) + 1
        elif event == "virtio_queue_notify":
            c.virtio_kicks_handled += 1
        elif event == "virtio_notify":
            c.virtio_notify += 1
        elif event == "apic_deliver_irq":
            c.irq_deliveries += 1
    return c


def read_range(path: Path, start: int, end: int) -> list[str]:
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(max(0, end - start))
    return data.decode(errors="replace").splitlines()


def log_size(path: Path) -> int | None:
    """Size of QEMU's -D log, None when the file is missing (a missing log is not an empty one)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def trace_slices(trace_log: Path, offsets: Sequence[int]) -> list[TrapCounts]:
    """Trap counts of each slice between consecutive offsets of the log, cut at line starts: a sample can
    land mid-line while QEMU writes, and the slices must add up exactly to the window."""
    if len(offsets) < 2:
        return []
    with trace_log.open("rb") as f:
        f.seek(offsets[0])
        data = f.read(max(0, offsets[-1] - offsets[0]))
    cuts = [0]
    for off in offsets[1:-1]:
        pos = max(off - offsets[0], cuts[-1])
        if pos == 0:
            cuts.append(0)
            continue
        nl = data.find(b"\n", pos - 1)  # a cut just after a newline stays where it is
        cuts.append(len(data) if nl < 0 else nl + 1)
    cuts.append(len(data))
    return [parse(data[a:b].decode(errors="replace").splitlines()) for a, b in zip(cuts, cuts[1:], strict=False)]
