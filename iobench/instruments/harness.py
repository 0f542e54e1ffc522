"""Harness overhead: the CPU time iobench itself spends while a window is measured.

Why: counter polling, the timeline sampler, QMP round trips, tracefs reads and starting the traffic
tool all run on the host's cores beside the path being measured; a benchmark that does not know its
own cost cannot say it stayed out of the way.

What: this process's user and system time, every thread of it (getrusage(RUSAGE_SELF), to the
microsecond, where `os.times` counts clock ticks), over the span the path's own CPU is measured:
from the window's first sample to its last. This instrument is read first at the first sample and
last at the last, so every other instrument's reading is inside; arming and disarming tracers
before and after that span is not. QEMU, the vhost worker and the traffic tool are not in it either.
The row gets `cpu_s_harness`; `harness_cpu_pct` relates it to the CPU the window measured.
"""

from __future__ import annotations

import resource
from typing import Any

from iobench.instruments.base import Instrument, Reading, Window


def own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class HarnessCPU(Instrument):
    name = "harness"

    def sample(self, window: Window) -> float:
        return own_cpu_s()

    def record(self, sample: Any) -> dict[str, Any]:
        return {"harness_cpu_s": sample}

    def read(self, window: Window, samples: list[Any]) -> Reading:
        return Reading(columns={"cpu_s_harness": round(samples[-1] - samples[0], 4)})
