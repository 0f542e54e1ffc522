"""Time slices of a window: cut a real trace log at arbitrary points (mid-line too)
and KVM stats read from a real QEMU; the slices must add up to the window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iobench import timeline
from iobench.counters import kvm, tcg
from iobench.counters.proc import ThreadCPU
from iobench.measure import Snapshot


def snap(t: float, tx_bytes: int, trace_offset: int = 0, kvm_stats: dict[str, int] | None = None,
         vcpu_s: float = 0.0) -> Snapshot:
    return Snapshot(t, {"tx_bytes": tx_bytes, "rx_bytes": 0}, {}, [ThreadCPU(7, "CPU 0/KVM", "vcpu", vcpu_s)],
                    kvm_stats, trace_offset)


IDENT = timeline.SliceId("run", "e1000", 1, 1, "tcp-P1-ldefault", "rx", "traffic")


@pytest.mark.parametrize("cuts", [(0.25, 0.5, 0.75), (0.0, 0.001, 0.999), (0.333, 0.333, 0.9)])
def test_tcg_slices_add_up_to_the_window_wherever_the_samples_land(data: Path, cuts: tuple[float, ...]) -> None:
    log = data / "trace-e1000-rx.log"
    size = log.stat().st_size
    whole = tcg.parse(log.read_text().splitlines())
    offsets = [0, *(int(size * c) for c in cuts), size]  # int(size * c) lands mid-line almost always
    snaps = [snap(i * 1.0, i * 1514 * 100, off) for i, off in enumerate(offsets)]
    rows = timeline.rows(IDENT, snaps, ("tx_bytes",), log)
    assert len(rows) == len(offsets) - 1
    assert sum(r["exits"] for r in rows) == whole.total
    assert sum(r["traps_nic"] for r in rows) == whole.nic
    assert sum(r["irq_injections"] for r in rows) == whole.irq_deliveries
    assert all(r["packets"] == 100.0 for r in rows)
    assert rows[0]["exits_per_s"] == rows[0]["exits"]  # one-second slices


def test_kvm_slices_are_deltas_of_stats_read_from_qemu(data: Path) -> None:
    before = kvm.sum_vcpu_stats(json.loads((data / "qmp-query-stats-vcpu-before.json").read_text()))
    after = kvm.sum_vcpu_stats(json.loads((data / "qmp-query-stats-vcpu-after.json").read_text()))
    snaps = [snap(10.0, 0, kvm_stats=before), snap(12.0, 3028, kvm_stats=after, vcpu_s=0.5)]
    (row,) = timeline.rows(IDENT, snaps, ("tx_bytes",), None)
    assert row["exits"] == after["exits"] - before["exits"] > 0
    assert row["mmio_exits"] == after["mmio_exits"] - before["mmio_exits"]
    assert row["traps_nic"] is None
    assert row["exits_per_s"] == round(row["exits"] / 2.0, 1)
    assert row["exits_per_packet"] == round(row["exits"] / 2.0, 4)
    assert row["cpu_s_vcpu"] == 0.5 and row["interval_s"] == 2.0


def test_no_exit_source_gives_no_slices() -> None:
    assert timeline.rows(IDENT, [snap(0, 0), snap(1, 10)], ("tx_bytes",), None) == []


def test_sampler_samples_only_when_the_interval_has_passed() -> None:
    taken = []

    def take() -> Snapshot:
        taken.append(1)
        return snap(float(len(taken)) + 100.0, 0)

    s = timeline.Sampler(take, interval_s=3600)
    s.first(snap(1e12, 0))  # the last sample is "in the future": nothing is due
    s.poke()
    assert taken == []
    off = timeline.Sampler(take, interval_s=0)  # 0 = edges only
    off.first(snap(0.0, 0))
    off.poke()
    assert taken == [] and len(off.last(snap(5.0, 0))) == 2
    due = timeline.Sampler(take, interval_s=0.5)
    due.first(snap(0.0, 0))  # long ago on the monotonic clock
    due.poke()
    assert taken == [1]
