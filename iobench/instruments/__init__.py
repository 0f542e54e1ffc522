"""Instruments: everything that measures or acts around a VM or a window, behind one interface.

`base` is the protocol; `REGISTRY` says which instrument runs where; `open_all` builds a run's
instruments; `Measurement` drives one window over them (start, samples at the edges and at each
timeline tick, stop, read) and assembles what they returned. The runner calls only these.

To add an instrument: one module here with a class that overrides the hooks it needs (base.py says
when each is called), one line in REGISTRY (where it runs), one test on captured real output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from iobench import faults
from iobench.instruments.base import Boot, Instrument, Reading, RunScope, Window
from iobench.instruments.client import ClientCPU
from iobench.instruments.copies import CopyTrace
from iobench.instruments.exits import ExitReasons
from iobench.instruments.fault_hook import FaultHook
from iobench.instruments.guest_driver import GuestDriver
from iobench.instruments.harness import HarnessCPU
from iobench.instruments.host_side import HostSide
from iobench.instruments.kvm_hold import KvmHold
from iobench.instruments.kvm_hold import wanted as kvm_hold_wanted
from iobench.instruments.kvm_stats import KvmStats
from iobench.instruments.link import LinkCounters
from iobench.instruments.ovs import OvsCounters
from iobench.instruments.placement import Placement
from iobench.instruments.pmd import PmdCounters
from iobench.instruments.sched import SchedFacts
from iobench.instruments.tcg_traps import TcgTraps
from iobench.instruments.threads import ProcCounters

__all__ = ["REGISTRY", "Boot", "Instrument", "Measurement", "Reading", "RunScope", "Window", "open_all"]


@dataclass(frozen=True)
class Entry:
    """One registry line: an instrument's name, where it runs, and how it is made for a run."""

    name: str
    runs: Callable[[RunScope], bool]
    make: Callable[[RunScope], Instrument]


def _always(run: RunScope) -> bool:
    return True


# In this order: `start` and `read` go down the list, `stop` up it. An instrument may read what one
# above it put in the window's facts (the link's packets, /proc's threads).
# The harness's own CPU is sampled first at a window's first sample and last at its last: every other
# instrument's reading lies inside its span.
# The exit sources come next: a window's first sample reads them right after the last `start` (the exit-
# reason triggers count from the end of theirs), and its last sample, taken in reverse order, reads them
# right before the first `stop`, so that the kernel's per-window trace and KVM's own count cover the same
# exits. Whatever does work in `start` (placement pins a native server) sits above exit-reasons.
REGISTRY: tuple[Entry, ...] = (
    Entry("harness", _always, lambda run: HarnessCPU()),
    Entry("kvm-stats", lambda run: run.accel == "kvm", KvmStats),
    Entry("tcg-traps", lambda run: run.accel == "tcg", TcgTraps),
    Entry("link", _always, lambda run: LinkCounters()),
    Entry("host-side", _always, HostSide),
    Entry("proc", _always, ProcCounters),
    Entry("pmd", _always, lambda run: PmdCounters()),
    Entry("ovs", _always, lambda run: OvsCounters()),
    Entry("client-cpu", _always, lambda run: ClientCPU()),
    Entry("placement", _always, Placement),
    Entry("sched", _always, SchedFacts),
    Entry("copy-trace", _always, CopyTrace),
    Entry("exit-reasons", _always, ExitReasons),
    Entry("guest-driver", _always, GuestDriver),
    Entry("kvm-hold", kvm_hold_wanted, KvmHold),
    Entry("fault-hook", lambda run: any(f in FaultHook.faults for f, _ in faults.injected()), lambda run: FaultHook()),
)


def open_all(run: RunScope) -> list[Instrument]:
    """This run's instruments, in registry order. If one fails to start, those made before it are
    closed before the error goes on."""
    made: list[Instrument] = []
    try:
        for entry in REGISTRY:
            if entry.runs(run):
                made.append(entry.make(run))
    except BaseException:
        close_all(made)
        raise
    return made


def close_all(instruments: Sequence[Instrument]) -> None:
    """Close every instrument, last first; one that fails to close does not keep the others open."""
    errors: list[BaseException] = []
    for inst in reversed(instruments):
        try:
            inst.close()
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the others are closed
            errors.append(exc)
    if errors:
        raise errors[0]


def describe_all(instruments: Sequence[Instrument]) -> dict[str, Any]:
    """run.json's entries of every instrument (each says whether it is on, and why not)."""
    out: dict[str, Any] = {}
    for inst in instruments:
        out |= inst.describe()
    return out


def after_boot(instruments: Sequence[Instrument], boot: Boot) -> None:
    for inst in instruments:
        inst.after_boot(boot)


@dataclass
class Measured:
    """What a window's instruments read, put together: the row's columns (first instrument wins a
    column), why some are empty, the per-window tables and the timeline's slices."""

    columns: dict[str, Any]
    na: list[str]
    tables: dict[str, list[dict[str, Any]]]
    slices: list[dict[str, Any]]
    duration_s: float


@dataclass
class Measurement:
    """One window over a run's instruments: `with Measurement(...) as m:` starts them and takes the
    first sample; `m.poke()` samples again when the timeline's interval has passed (from loops that
    already wait: iperf3's watchdog, the idle window's sleep, so no thread shares QMP with the
    runner); leaving the block takes the last sample (when the window completed) and stops them,
    whatever happened; `m.read()` then gathers their readings, writes their raw files and
    assembles the window's columns, tables and timeline slices."""

    run: RunScope
    instruments: Sequence[Instrument]
    window: Window
    interval_s: float = 0.0
    times: list[float] = field(default_factory=list)
    samples: list[list[Any]] = field(default_factory=list)  # per sample, one value per instrument
    _started: list[Instrument] = field(default_factory=list)

    def __enter__(self) -> Measurement:
        try:
            for inst in self.instruments:
                inst.start(self.window)
                self._started.append(inst)
            self._sample()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self._sample(last=True)
        except BaseException:
            self._stop(quiet=True)
            raise
        self._stop(quiet=exc_type is not None)

    def _stop(self, quiet: bool = False) -> None:
        """Stop every started instrument, last first, each even if one before it fails. `quiet`: the
        window already failed, and that failure is the one to report (a stuck QEMU's first timeout, not
        an instrument's later "not sent")."""
        errors: list[Exception] = []
        for inst in reversed(self._started):
            try:
                inst.stop(self.window)
            except Exception as exc:  # noqa: BLE001 - raised below unless the window's own failure goes first
                errors.append(exc)
        self._started = []
        if errors and not quiet:
            raise errors[0]

    def _sample(self, last: bool = False, edge: bool = True) -> None:
        """One reading of every instrument, kept in registry order; the window's last one is taken last
        instrument first, so that the exit sources are read closest to the hooks around the window.
        Between the edges (`edge` False: a timeline tick) an `edges_only` instrument is not read."""
        if self.window.vm is not None:
            self.window.vm.check_alive()  # raises VMLaunchFailure if QEMU is gone
        now = time.monotonic()
        order = list(reversed(self.instruments)) if last else list(self.instruments)
        taken = {id(inst): inst.sample(self.window) if edge or not inst.edges_only else None for inst in order}
        self.samples.append([taken[id(inst)] for inst in self.instruments])
        self.times.append(now)

    def poke(self) -> None:
        if self.interval_s > 0 and self.times and time.monotonic() - self.times[-1] >= self.interval_s:
            self._sample(edge=False)

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, sampling on the way (the idle window)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
            self.poke()

    def edges(self) -> dict[str, Any]:
        """The counters at the window's first and last sample, as raw/<cell>.counters.json keeps them."""
        def at(i: int) -> dict[str, Any]:
            out: dict[str, Any] = {"monotonic": self.times[i]}
            for inst, value in zip(self.instruments, self.samples[i], strict=True):
                out |= inst.record(value)
            return out

        return {"before": at(0), "after": at(-1)}

    def read(self) -> Measured:
        columns: dict[str, Any] = {}
        na: list[str] = []
        tables: dict[str, list[dict[str, Any]]] = {}
        slices: list[dict[str, Any]] = [{} for _ in self.times[1:]]
        for i, inst in enumerate(self.instruments):
            got = inst.read(self.window, [s[i] for s in self.samples])
            for name, content in got.raw.items():
                self.run.writer.write_raw(name, content)
            for key, value in got.columns.items():
                columns.setdefault(key, value)
            na += got.na
            for name, rows in got.tables.items():
                tables.setdefault(name, []).extend(rows)
            for part, extra in zip(slices, got.slices, strict=False):
                part.update(extra)
        return Measured(columns, na, tables, slices, round(self.times[-1] - self.times[0], 3))
