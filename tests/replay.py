"""Replay a captured window through the instruments: the counters a real run kept in
raw/<cell>.counters.json (tests/data/run-tcg, lab-sites) become the samples of the link, KVM and /proc
instruments, and `instruments.Measurement.read` assembles them as in a run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from iobench import backends
from iobench.counters import proc
from iobench.instruments import Instrument, Measurement, Reading, RunScope, Window
from iobench.instruments.kvm_stats import KvmStats
from iobench.instruments.link import LinkCounters
from iobench.instruments.threads import ProcCounters, ProcSample
from iobench.measure import CellId
from iobench.scenario import Scenario, Workload
from iobench.topology import PEER_DATA_COUNTERS, TAP_DATA_COUNTERS


class Given(Instrument):
    """Columns the test states (what an instrument whose input was not captured would have read)."""

    name = "given"

    def __init__(self, columns: dict[str, Any], na: list[str] | None = None) -> None:
        self.columns, self.na = columns, na or []

    def read(self, window: Window, samples: list[Any]) -> Reading:
        return Reading(columns=self.columns, na=self.na)


class Raw:
    """A results writer that keeps raw files in memory."""

    def __init__(self) -> None:
        self.files: dict[str, Any] = {}

    def write_raw(self, name: str, content: Any) -> None:
        self.files[name] = content


def cell(backend: str, direction: str) -> CellId:
    return CellId(backend, direction, 1, Workload(), True, 1)


def scope(accel: str, **scn: Any) -> RunScope:
    return RunScope(Scenario(**scn), accel, "t", Raw(), lambda _: None)  # type: ignore[arg-type]


def load(path: Path) -> dict[str, Any]:
    counters: dict[str, Any] = json.loads(path.read_text())
    return counters


def proc_sample(d: dict[str, Any]) -> ProcSample:
    return ProcSample(d["io"], [proc.ThreadCPU(**t) for t in d["threads"]], d["trace_offset"])


def window(name: str, backend: str, vm: bool = True) -> Window:
    """The traffic window of `name` ("<backend>-<direction>"), measuring `backend`."""
    direction = name.split("-")[-1]
    keys = TAP_DATA_COUNTERS[direction] if vm else PEER_DATA_COUNTERS[direction]
    fake_vm = SimpleNamespace(pid=0, trace_log=Path("/nonexistent"), alive=lambda: True) if vm else None
    boot = SimpleNamespace(backend=backends.BACKENDS[backend]) if vm else None
    return Window("traffic", backend, 1, 1, f"{backend}/r1-x-{direction}", 0, dict, keys,
                  cell=cell(backend, direction), vm=fake_vm, boot=boot)  # type: ignore[arg-type]


def measure(before: dict[str, Any], after: dict[str, Any], w: Window, accel: str,
            exits: Instrument | None = None) -> Measurement:
    """A Measurement over the captured edges: link, the exit source (KVM stats when the capture has
    them, else `exits`), /proc. `read()` it."""
    run = scope(accel)
    insts: list[Instrument] = [LinkCounters()]
    edges: list[list[Any]] = [[before["link"]], [after["link"]]]
    if exits is None and before.get("kvm") is not None:
        insts.append(KvmStats(run))
        edges[0].append(before["kvm"])
        edges[1].append(after["kvm"])
    elif exits is not None:
        insts.append(exits)
        edges[0].append(None)
        edges[1].append(None)
    insts.append(ProcCounters(run))
    edges[0].append(proc_sample(before))
    edges[1].append(proc_sample(after))
    return Measurement(run, insts, w, times=[before["monotonic"], after["monotonic"]], samples=edges)


def captured_row(data: Path, backend: str, direction: str, repeat: int = 1) -> tuple[CellId, Any]:
    """The row of a cell of the captured TCG run (tests/data/run-tcg), assembled as a run does."""
    from iobench import traffic
    from iobench.counters import tcg
    from iobench.instruments.tcg_traps import TCG_NA, trap_columns
    from iobench.measure import IdleWindow, vm_row

    base = data / "run-tcg" / f"{backend}-{direction}"
    counters = load(base.with_suffix(".counters.json"))
    traps = tcg.TrapCounts(**json.loads(base.with_suffix(".traps.json").read_text()))
    idle = IdleWindow(**json.loads((data / "run-tcg" / f"{backend}.boot-and-idle.json").read_text())["idle"])
    got = measure(counters["before"], counters["after"], window(f"{backend}-{direction}", backend), "tcg",
                  Given(trap_columns(traps) | {"cpu_s_iperf3_client": 0.5}, [TCG_NA])).read()
    c = cell(backend, direction)
    c = CellId(c.backend, c.direction, repeat, c.workload, c.offloads, c.vcpus)
    row = vm_row(run_id="20261130-000000-abcdef", cell=c, backend=backends.BACKENDS[backend], accel="tcg",
                 traffic=traffic.parse(base.with_suffix(".iperf3.json").read_text()), measured=got.columns,
                 na=got.na, duration_s=got.duration_s, idle=idle, cpu_hz=2.1e9)
    return c, row
