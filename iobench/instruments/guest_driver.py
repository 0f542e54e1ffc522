"""What the guest's driver negotiated at each boot, and a multiqueue variant's packets per queue.

The guest's init prints the driver's offer and features on its READY line; a variant's knob the
guest did not get is said at once and listed in run.json (the report flags it). With several queue
pairs, the driver's own per-queue counters (printed on the console once a second) show whether the
traffic really spread.
"""

from __future__ import annotations

from typing import Any

from iobench import negotiated
from iobench.instruments.base import Boot, Instrument, Reading, RunScope, Window


class GuestDriver(Instrument):
    name = "guest-driver"

    def __init__(self, run: RunScope) -> None:
        self.run = run
        self.console_from = 0

    def _entry(self, backend: str) -> dict[str, Any]:
        entry: dict[str, Any] = self.run.meta.setdefault("backends", {}).setdefault(backend, {})
        return entry

    def after_boot(self, boot: Boot) -> None:
        got = negotiated.parse(boot.vm.ready_line)
        if got is None:
            return
        backend = boot.backend
        entry = self._entry(backend.name)
        entry["negotiated"] = boot.facts["negotiated"] = got.as_dict()
        missed = negotiated.knobs_not_applied(backend.device_props, got, backend.queues)
        if missed:
            entry["knobs_not_applied"] = sorted(set(entry.get("knobs_not_applied", [])) | set(missed))
            self.run.log(f"{boot.tag}: knob(s) of {backend.name} did not take effect: {'; '.join(missed)}")

    def _queues(self, window: Window) -> bool:
        return window.traffic and window.boot is not None and window.boot.backend.queues > 1

    def start(self, window: Window) -> None:
        if self._queues(window) and window.vm is not None:
            self.console_from = window.vm.serial_log.stat().st_size

    def read(self, window: Window, samples: list[Any]) -> Reading:
        if not self._queues(window) or window.vm is None:
            return Reading()
        with window.vm.serial_log.open("rb") as f:
            f.seek(self.console_from)
            deltas = negotiated.queue_deltas(f.read().decode(errors="replace"))
        self._entry(window.backend).setdefault("queue_packets", {})[window.raw_name] = deltas
        return Reading(raw={f"{window.raw_name}.queues.json": deltas})
