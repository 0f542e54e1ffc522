"""Bytes the kernel's copy routines were asked to copy, per thread (`--copy-trace`).

The module and its kprobes are loaded once per run (counters.copytrace); a hist trigger sums the
bytes per thread inside each VM traffic window. Where the kernel refuses, every row says why.
"""

from __future__ import annotations

from typing import Any

from iobench.counters import copytrace
from iobench.instruments.base import Instrument, Reading, RunScope, Window

WHO = ("qemu", "vhost", "iperf3", "other")


class CopyTrace(Instrument):
    name = "copy-trace"

    def __init__(self, run: RunScope) -> None:
        self.run = run
        self.trace: copytrace.CopyTrace | None = None
        self.na = "copy trace off (--copy-trace)"
        self.counted: tuple[copytrace.CopyCounts, str] | None = None
        if run.scn.copy_trace:
            try:
                self.trace = copytrace.CopyTrace(log=run.log)
                run.log(f"copy trace: counting {', '.join(self.trace.armed)} per thread (kprobes)")
            except copytrace.CopyTraceUnavailable as exc:
                self.na = f"copy trace unavailable here: {exc}"
                run.log(self.na)

    def describe(self) -> dict[str, Any]:
        if self.trace is None:
            return {"copy_trace": self.na}
        return {"copy_trace": f"on: kprobes on {', '.join(self.trace.armed)} (module {copytrace.MODULE}), "
                              "bytes summed per thread by a hist trigger"}

    def _counts(self, window: Window) -> bool:
        return self.trace is not None and window.traffic and window.vm is not None

    def start(self, window: Window) -> None:
        self.counted = None
        if self.trace is not None and self._counts(window):
            self.trace.start()

    def stop(self, window: Window) -> None:
        """Read and clear the window's histogram (kept in raw/), whatever happened in the window."""
        if self.trace is not None and self._counts(window):
            self.counted = self.trace.stop()
            self.run.writer.write_raw(f"{window.raw_name}.copytrace.hist", self.counted[1])

    def read(self, window: Window, samples: list[Any]) -> Reading:
        empty = {f"kcopy_bytes_{k}": None for k in WHO}
        if window.vm is None or not window.traffic:
            return Reading(columns=empty if window.traffic else {})
        if self.counted is None:
            return Reading(columns=empty, na=[f"kcopy_*: {self.na}"])
        qemu_tids = {t.tid for t in window.facts.get("threads", ()) if t.kind != "vhost"}
        kcopies = copytrace.by_kind(self.counted[0], qemu_tids, window.vm.pid, set(window.client_pids))
        return Reading(columns={f"kcopy_bytes_{k}": kcopies[k] for k in WHO})

    def close(self) -> None:
        if self.trace is not None:
            self.trace.close()
