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


def test_topologies_are_groups_of_their_own_and_each_is_held_against_its_own_native(data: Path) -> None:
    """A bridge cell never mixes with its direct twin, and its share of native is the bridge's native."""
    from iobench import topologies

    base = real_rows(data)[0]  # e1000 rx
    native = replace(base, backend="native", exit_source="none")
    rows = [replace(base, throughput_bps=100.0), replace(native, throughput_bps=200.0),
            replace(base, topology="bridge", throughput_bps=60.0), replace(native, topology="bridge", throughput_bps=80.0)]
    stats = summary.summarize(rows)
    share = {(s.backend, s.topology): s.median for s in stats if s.metric == "throughput_vs_native"}
    assert share == {("e1000", "direct"): 0.5, ("e1000", "bridge"): 0.75}
    tp = {(s.backend, s.topology): s.median for s in stats if s.metric == "throughput_bps"}
    assert tp[("e1000", "bridge")] == 60.0 and tp[("e1000", "direct")] == 100.0
    labels = {r["backend"] for r in topologies.labelled([{"backend": s.backend, "topology": s.topology} for s in stats])}
    assert labels == {"e1000", "native", "e1000@bridge", "native@bridge"}
    assert topologies.label("vhost", float("nan")) == "vhost"  # an older directory's empty cell: direct
    assert topologies.backend_of("native@bridge") == "native"


def test_the_report_sets_each_topology_beside_direct() -> None:
    from iobench import report

    def line(backend: str, topo: str, metric: str, median: float) -> dict:
        return {"backend": backend if topo == "direct" else f"{backend}@{topo}", "direction": "rx",
                "workload": "tcp-1x", "metric": metric, "median": median, "topology": topo}

    summary = [line("vhost", "direct", "cpu_us_per_packet", 2.0), line("vhost", "bridge", "cpu_us_per_packet", 3.0),
               line("vhost", "direct", "exits_per_packet", 0.5), line("vhost", "bridge", "exits_per_packet", 0.5)]
    lines = report.topology_lines(summary)
    (row,) = [x for x in lines if x.startswith("| vhost |")]
    assert "| bridge |" in row and "0.500 (1.00x)" in row and "3.00 (1.50x)" in row
    assert report.topology_lines([line("vhost", "direct", "cpu_us_per_packet", 2.0)]) == []
