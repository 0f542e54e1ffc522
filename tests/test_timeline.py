"""Time slices of a window: cut a real trace log at arbitrary points (mid-line too)
and KVM stats read from a real QEMU; the slices must add up to the window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iobench import timeline
from iobench.counters import kvm, tcg
from iobench.counters.proc import ThreadCPU
from iobench.instruments import Instrument, Measurement
from iobench.instruments.kvm_stats import KvmStats
from iobench.instruments.link import LinkCounters
from iobench.instruments.tcg_traps import TcgTraps
from iobench.instruments.threads import ProcCounters, ProcSample
from tests.replay import scope, window

IDENT = timeline.SliceId("run", "e1000", 1, 1, "tcp-P1-ldefault", "rx", "traffic")


def link(tx_bytes: int) -> dict[str, int]:
    return {"tx_bytes": tx_bytes, "rx_bytes": 0, "tx_packets": 0, "rx_packets": 0}


def threads(vcpu_s: float) -> ProcSample:
    return ProcSample({"rchar": 0, "wchar": 0}, [ThreadCPU(7, "CPU 0/KVM", "vcpu", vcpu_s)], 0)


def slices(insts: list[Instrument], times: list[float], samples: list[list], trace_log: Path | None = None):
    w = window("e1000-rx", "e1000")
    if trace_log is not None:
        w.vm.trace_log = trace_log  # type: ignore[union-attr]
    m = Measurement(scope("tcg"), insts, w, times=times, samples=samples)
    return timeline.rows(IDENT, m.times, m.read().slices)


@pytest.mark.parametrize("cuts", [(0.25, 0.5, 0.75), (0.0, 0.001, 0.999), (0.333, 0.333, 0.9)])
def test_tcg_slices_add_up_to_the_window_wherever_the_samples_land(data: Path, cuts: tuple[float, ...]) -> None:
    log = data / "trace-e1000-rx.log"
    size = log.stat().st_size
    whole = tcg.parse(log.read_text().splitlines())
    offsets = [0, *(int(size * c) for c in cuts), size]  # int(size * c) lands mid-line almost always
    rows = slices([LinkCounters(), TcgTraps(scope("tcg"))], [float(i) for i in range(len(offsets))],
                  [[link(i * 1514 * 100), off] for i, off in enumerate(offsets)], log)
    assert len(rows) == len(offsets) - 1
    assert sum(r["exits"] for r in rows) == whole.total
    assert sum(r["traps_nic"] for r in rows) == whole.nic
    assert sum(r["irq_injections"] for r in rows) == whole.irq_deliveries
    assert all(r["packets"] == 100.0 for r in rows)
    assert rows[0]["exits_per_s"] == rows[0]["exits"]  # one-second slices


def test_kvm_slices_are_deltas_of_stats_read_from_qemu(data: Path) -> None:
    before = kvm.sum_vcpu_stats(json.loads((data / "qmp-query-stats-vcpu-before.json").read_text()))
    after = kvm.sum_vcpu_stats(json.loads((data / "qmp-query-stats-vcpu-after.json").read_text()))
    run = scope("kvm")
    (row,) = slices([LinkCounters(), KvmStats(run), ProcCounters(run)], [10.0, 12.0],
                    [[link(0), before, threads(0.0)], [link(3028), after, threads(0.5)]])
    assert row["exits"] == after["exits"] - before["exits"] > 0
    assert row["mmio_exits"] == after["mmio_exits"] - before["mmio_exits"]
    assert row["traps_nic"] is None
    assert row["exits_per_s"] == round(row["exits"] / 2.0, 1)
    assert row["exits_per_packet"] == round(row["exits"] / 2.0, 4)
    assert row["cpu_s_vcpu"] == 0.5 and row["interval_s"] == 2.0


def test_no_exit_source_gives_no_slices() -> None:
    assert slices([LinkCounters()], [0.0, 1.0], [[link(0)], [link(10)]]) == []


class Counting(Instrument):
    name = "counting"

    def __init__(self) -> None:
        self.taken = 0

    def sample(self, window):  # type: ignore[no-untyped-def]
        self.taken += 1
        return self.taken


def test_a_window_samples_only_when_the_interval_has_passed() -> None:
    w = window("e1000-rx", "e1000")
    w.vm.check_alive = lambda: None  # type: ignore[union-attr]
    for interval, due in ((3600, False), (0, False), (1e-9, True)):
        counting = Counting()
        with Measurement(scope("tcg"), [counting], w, interval) as m:
            m.poke()
        assert counting.taken == 2 + due, interval  # the two edges, and a tick only when due
        assert len(m.times) == len(m.samples) == counting.taken


class EdgesOnly(Counting):
    name = "edges-only"
    edges_only = True


def test_an_edges_only_instrument_is_read_at_the_edges_and_not_at_the_ticks() -> None:
    w = window("e1000-rx", "e1000")
    w.vm.check_alive = lambda: None  # type: ignore[union-attr]
    ticking, edges = Counting(), EdgesOnly()
    with Measurement(scope("tcg"), [ticking, edges], w, 1e-9) as m:
        m.poke()
        m.poke()
    assert ticking.taken == 4 and edges.taken == 2
    assert [s[1] for s in m.samples] == [1, None, None, 2]  # its own first and last readings at the edges
