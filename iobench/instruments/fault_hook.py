"""The test hook's faults inside a window (IOBENCH_FAULT, iobench.faults): `kill-qemu` SIGKILLs QEMU
one second into the first window of its backend, round and direction that runs (once per run: an
attempt lost before on its own, a nested guest that died while booting, does not use it up), so that
the runner's retry and the lab's recording of a lost attempt are tested on a real death; `kill-switch`
does the same to the vhost-user switch (the poller dying mid-window); `stop-qemu` SIGSTOPs QEMU instead
(alive, its monitor silent: the stuck main loop the lab has seen, where a QMP command never gets its
answer)."""

from __future__ import annotations

import os
import signal
import threading

from iobench import faults
from iobench.instruments.base import Instrument, Window
from iobench.switch import Switch
from iobench.vm import VM


class FaultHook(Instrument):
    name = "fault-hook"
    faults = ("kill-qemu", "kill-switch", "stop-qemu")  # what it injects (the registry makes it only where one is asked for)

    def __init__(self) -> None:
        self.timer: threading.Timer | None = None
        self.fired: set[tuple[str, int, str, str]] = set()  # (backend, round, direction, topology) fired

    def start(self, window: Window) -> None:
        vm, cell = window.vm, window.cell
        if vm is None or cell is None:
            return
        key = (cell.backend, cell.repeat, cell.direction, cell.topology)
        if key in self.fired:
            return
        victims = {"kill-qemu": (vm, signal.SIGKILL), "stop-qemu": (vm, signal.SIGSTOP),
                   "kill-switch": (window.boot.switch if window.boot is not None else None, signal.SIGKILL)}
        for fault in faults.at(f"{cell.backend}:{cell.direction}"):
            victim, sig = victims.get(fault, (None, signal.SIGKILL))
            if victim is not None:
                self.fired.add(key)
                self.timer = threading.Timer(1.0, _signal, (victim, sig))
                self.timer.start()

    def stop(self, window: Window) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _signal(victim: VM | Switch, sig: signal.Signals) -> None:
    """The fault's signal, unless the victim is gone already."""
    if victim.alive():
        os.kill(victim.pid, sig)
