"""Harness overhead: the CPU time iobench itself spends while a window is measured.

Why: counter polling, the timeline sampler, QMP round trips, tracefs reads and starting the traffic
tool all run on the host's cores beside the path being measured; a benchmark that does not know its
own cost cannot say it stayed out of the way. This process's user and system time over the window
(every thread of it: `os.times`, which is getrusage(RUSAGE_SELF)), from before the first instrument
starts to after the last one stops; QEMU, the vhost worker and the traffic tool are not in it.
The row gets `cpu_s_harness`; `harness_cpu_pct` relates it to the CPU the window measured.
"""

from __future__ import annotations

import os
from typing import Any

from iobench.instruments.base import Instrument, Reading, Window


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class HarnessCPU(Instrument):
    name = "harness"

    def __init__(self) -> None:
        self.began = self.ended = 0.0

    def start(self, window: Window) -> None:
        self.began = own_cpu_s()

    def stop(self, window: Window) -> None:
        self.ended = own_cpu_s()

    def read(self, window: Window, samples: list[Any]) -> Reading:
        return Reading(columns={"cpu_s_harness": round(self.ended - self.began, 4)})
