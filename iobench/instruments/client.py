"""The traffic client's CPU time: iperf3 or sockperf, run by iobench on the host side of the path.

From this process's reaped children (RUSAGE_CHILDREN): the client is the one child that ends inside
a window (the native peer's server is reaped only after its window is read).
"""

from __future__ import annotations

from typing import Any

from iobench.counters.proc import children_usage
from iobench.instruments.base import Instrument, Reading, Window


class ClientCPU(Instrument):
    name = "client-cpu"

    def __init__(self) -> None:
        self.start_s = 0.0

    def start(self, window: Window) -> None:
        self.start_s = children_usage().cpu_s

    def read(self, window: Window, samples: list[Any]) -> Reading:
        if not window.traffic:
            return Reading()
        return Reading(columns={"cpu_s_iperf3_client": round(children_usage().cpu_s - self.start_s, 3)})
