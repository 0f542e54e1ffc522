"""Repeat statistics, checked against the standard library on the real rows of a run."""

import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from iobench import summary
from iobench.schema import derive
from tests.replay import captured_row


def real_rows(data: Path):
    return [captured_row(data, b, d)[1] for b in ("e1000", "virtio") for d in ("rx", "tx")]


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
