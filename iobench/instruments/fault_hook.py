"""The test hook's faults inside a window (IOBENCH_FAULT, iobench.faults): `kill-qemu` SIGKILLs QEMU
one second into the cell's first VM attempt, so that the runner's retry and the lab's recording of a
lost attempt are tested on a real death; `kill-switch` does the same to the vhost-user switch (the
poller dying mid-window)."""

from __future__ import annotations

import os
import signal
import threading

from iobench import faults
from iobench.instruments.base import Instrument, Window


class FaultHook(Instrument):
    name = "fault-hook"

    def __init__(self) -> None:
        self.timer: threading.Timer | None = None

    def start(self, window: Window) -> None:
        vm, cell = window.vm, window.cell
        if vm is None or cell is None or window.attempt != 1:
            return
        here = faults.at(f"{cell.backend}:{cell.direction}")
        if "kill-qemu" in here:
            self.timer = threading.Timer(1.0, lambda: os.kill(vm.pid, signal.SIGKILL) if vm.alive() else None)
            self.timer.start()
        sw = window.boot.switch if window.boot is not None else None
        if "kill-switch" in here and sw is not None:
            self.timer = threading.Timer(1.0, lambda: os.kill(sw.pid, signal.SIGKILL) if sw.alive() else None)
            self.timer.start()

    def stop(self, window: Window) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
