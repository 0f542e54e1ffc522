"""Repeat statistics, checked against the standard library on the real rows of a run."""

import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from iobench import summary
from iobench.schema import derive
from tests.test_measure import cell, load_snapshot


def real_rows(data: Path):
    import json

    from iobench import backends, traffic
    from iobench.counters import tcg
    from iobench.measure import IdleWindow, vm_row

    rows = []
    for b in ("e1000", "virtio"):
        for d in ("rx", "tx"):
            base = data / "run-tcg" / f"{b}-{d}"
            c = json.loads(base.with_suffix(".counters.json").read_text())
            rows.append(vm_row(
                run_id="t", cell=cell(b, d), backend=backends.BACKENDS[b], accel="tcg",
                before=load_snapshot(c["before"]), after=load_snapshot(c["after"]),
                traffic=traffic.parse(base.with_suffix(".iperf3.json").read_text()),
                traps=tcg.TrapCounts(**json.loads(base.with_suffix(".traps.json").read_text())),
                idle=IdleWindow(**json.loads((data / "run-tcg" / f"{b}.boot-and-idle.json").read_text())["idle"]),
                client_cpu_s=0.5, cpu_hz=2.1e9))
    return rows


def test_median_and_cv_match_statistics(data: Path) -> None:
    base = real_rows(data)[0]
    rows = [replace(base, repeat=i, throughput_bps=base.throughput_bps * f) for i, f in enumerate((0.8, 1.0, 1.3), 1)]
    stats = {s.metric: s for s in summary.summarize(rows)}
    values = [r.throughput_bps for r in rows]
    tp = stats["throughput_bps"]
    assert tp.median == statistics.median(values) and tp.n == 3
    assert tp.cv == pytest.approx(statistics.stdev(values) / statistics.fmean(values), abs=1e-4)
    assert tp.flagged  # 25% CV
    assert not stats["exits_per_packet"].flagged  # identical counters: CV 0
    assert stats["exits_per_packet"].median == pytest.approx(derive(base)["exits_per_packet"])


def test_single_repeat_has_no_cv_and_no_flag(data: Path) -> None:
    stats = summary.summarize(real_rows(data))
    assert stats and all(s.cv is None and not s.flagged for s in stats)
    assert {(s.backend, s.direction) for s in stats} == {("e1000", "rx"), ("e1000", "tx"), ("virtio", "rx"), ("virtio", "tx")}
