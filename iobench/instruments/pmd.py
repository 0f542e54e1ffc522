"""The vhost-user switch's own counters: its CPU (the poll core and its helpers), what its ports counted,
and the bytes it copied through syscalls to and from the tap.

Why a kind of its own: a poll-mode switch's core spins whether or not anything flows, so its CPU is
part of every packet's cost on that path and of the idle window's (where the other paths are quiet);
QEMU's threads and the vhost worker do not include it. Its port counters (ethdev stats over testpmd's
telemetry socket) say what the switch itself received, sent and dropped; its rchar + wchar
(/proc/<pid>/io) are the syscall copies between its mbufs and the tap, which QEMU's do not include.
Windows of a path without a switch read 0 CPU (no such thread exists) and no port counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iobench.counters import proc
from iobench.instruments.base import Instrument, Reading, Window

# ethdev counters that mean a frame the switch did not hand on (the vhost PMD counts a full guest ring
# as a transmit error of port 0; rx_nombuf: no mbuf to receive into)
DROP_KEYS = ("imissed", "ierrors", "oerrors", "rx_nombuf")


@dataclass(frozen=True)
class PmdSample:
    cpu_s: float
    io: dict[str, int] | None
    ports: dict[int, dict[str, int]]


class PmdCounters(Instrument):
    name = "pmd"

    def sample(self, window: Window) -> PmdSample | None:
        sw = window.boot.switch if window.boot is not None else None
        if sw is None:
            return None
        sw.check_alive()  # a poller that died mid-window fails the window now, saying so
        return PmdSample(round(sum(t.cpu_s for t in sw.threads()), 3), proc.read_io(sw.pid), sw.port_stats())

    def record(self, sample: Any) -> dict[str, Any]:
        if sample is None:
            return {}
        return {"pmd": {"cpu_s": sample.cpu_s, "io": sample.io or {},
                        "ports": {str(p): stats for p, stats in sample.ports.items()}}}

    def read(self, window: Window, samples: list[Any]) -> Reading:
        first, last = samples[0], samples[-1]
        if first is None or last is None:
            none: dict[str, Any] = {"pmd_packets": None, "pmd_drops": None, "pmd_syscall_bytes": None}
            return Reading(columns={"cpu_s_pmd": 0.0 if window.vm is not None else None, **none})

        def delta(port: int, key: str) -> int:
            return last.ports[port].get(key, 0) - first.ports[port].get(key, 0)

        io = (last.io["rchar"] + last.io["wchar"] - first.io["rchar"] - first.io["wchar"]
              if first.io and last.io else None)
        slices = [{"cpu_s_pmd": round(b.cpu_s - a.cpu_s, 3)} if a is not None and b is not None else {}
                  for a, b in zip(samples, samples[1:], strict=False)]
        return Reading(
            columns={"cpu_s_pmd": round(last.cpu_s - first.cpu_s, 3),
                     "pmd_packets": delta(0, "ipackets") + delta(0, "opackets"),
                     "pmd_drops": sum(delta(p, k) for p in (0, 1) for k in DROP_KEYS),
                     "pmd_syscall_bytes": io},
            na=[] if io is not None else ["pmd_syscall_bytes: the switch's /proc/<pid>/io could not be read"],
            slices=slices)
