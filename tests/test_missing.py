"""Missing stays missing: a value that was not read is None/NaN with its reason in na_reason,
never a 0 that reads as a measurement (each case here once produced a silent zero)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from iobench import backends, plots, report, traffic
from iobench.counters import tcg
from iobench.errors import CellFailed
from iobench.measure import idle_window, vm_row
from iobench.runner import _trace_lines
from iobench.schema import KVM_STATS, derive
from tests.test_measure import cell, load_snapshot, vm_tidy


def _stats(**given: int | None) -> dict[str, int | None]:
    return dict.fromkeys(KVM_STATS, 0) | given


def _counters(data: Path, name: str):
    counters = json.loads((data / "run-tcg" / f"{name}.counters.json").read_text())
    return load_snapshot(counters["before"]), load_snapshot(counters["after"])


def _row(data: Path, name: str, backend: str, accel: str, before, after, traps=None):
    return derive(vm_row(run_id="t", cell=cell(*name.split("-")), backend=backends.BACKENDS[backend], accel=accel,
                         before=before, after=after,
                         traffic=traffic.parse((data / "run-tcg" / f"{name}.iperf3.json").read_text()),
                         traps=traps, idle=None, client_cpu_s=0.5, cpu_hz=2.1e9))


def test_a_vhost_run_whose_worker_was_not_found_has_no_vhost_cpu(data: Path) -> None:
    before, after = _counters(data, "virtio-rx")  # QEMU's threads, and no vhost-<pid> among them
    traps = tcg.TrapCounts(**json.loads((data / "run-tcg/virtio-rx.traps.json").read_text()))
    r = _row(data, "virtio-rx", "vhost", "tcg", before, after, traps)
    assert r["cpu_s_vhost"] is None and r["cpu_us_per_packet_vhost"] is None
    assert "no vhost-" in r["na_reason"] and "worker thread was found" in r["na_reason"]
    # a backend without vhost has no worker by construction: 0 there is a fact, not a gap
    assert _row(data, "virtio-rx", "virtio", "tcg", before, after, traps)["cpu_s_vhost"] == 0


def test_a_missing_trace_log_leaves_syscall_copies_unknown_under_tcg(data: Path) -> None:
    before, after = _counters(data, "e1000-rx")
    traps = tcg.TrapCounts(**json.loads((data / "run-tcg/e1000-rx.traps.json").read_text()))
    lost = replace(after, trace_offset=None)
    r = _row(data, "e1000-rx", "e1000", "tcg", before, lost, traps)
    assert r["trace_log_bytes"] is None and r["syscall_copy_bytes"] is None
    assert r["copies_per_packet_measured"] is None and "trace log was missing" in r["na_reason"]


def test_under_kvm_a_trace_log_qemu_never_created_had_nothing_written(data: Path) -> None:
    before, after = _counters(data, "e1000-rx")
    b = replace(before, trace_offset=None, kvm=_stats(exits=10, irq_injections=2))
    a = replace(after, trace_offset=None, kvm=_stats(exits=110, irq_injections=12))
    r = _row(data, "e1000-rx", "e1000", "kvm", b, a)
    assert r["trace_log_bytes"] == 0 and r["syscall_copy_bytes"] == r["rchar"] + r["wchar"]


def test_a_tcg_window_without_its_trace_log_fails_instead_of_counting_zero_traps(data: Path, tmp_path: Path) -> None:
    before, after = _counters(data, "e1000-rx")
    vm = SimpleNamespace(trace_log=tmp_path / "trace.log")
    with pytest.raises(CellFailed, match="trace log .* is missing"):
        _trace_lines(vm, replace(before, trace_offset=None), replace(after, trace_offset=None))  # type: ignore[arg-type]


def test_an_idle_window_without_an_interrupt_stat_has_no_interrupt_rate(data: Path) -> None:
    before, after = _counters(data, "e1000-rx")
    b = replace(before, kvm=_stats(exits=100, irq_injections=None))
    a = replace(after, kvm=_stats(exits=160, irq_injections=None))
    idle = idle_window(b, a, None)
    assert idle.exits == 60 and idle.irq_injections is None


def test_a_missing_metric_is_a_gap_in_the_figure_not_a_zero_bar(data: Path) -> None:
    rows = [vm_tidy(data, b, "rx")[0] for b in ("e1000", "virtio")]
    rows[1]["copies_per_packet_measured"] = None
    fig = plots.copies_figure(rows)
    try:
        ax = fig.axes[0]
        (measured,) = [c for c in ax.containers if c.get_label() == "measured: QEMU read/write syscall bytes"]
        heights = [p.get_height() for p in measured.patches]
        assert heights[0] == pytest.approx(rows[0]["copies_per_packet_measured"]) and math.isnan(heights[1])
        assert [t.get_text() for t in ax.texts] == ["n/a\n(see na_reason)"]
    finally:
        plots.close(fig)


def test_the_report_sets_syscall_copies_beside_the_syscall_model(data: Path) -> None:
    """QEMU's read/write bytes measure the copies through its syscalls: e1000 host->guest has one
    there (the tap read) of two in all (the model's second is QEMU's memcpy into guest memory)."""
    row = vm_tidy(data, "e1000", "rx")[0]
    summary = [{"backend": "e1000", "direction": "rx", "workload": row["workload"], "metric": m, "median": row[m],
                "min": row[m], "max": row[m], "n": 1, "cv": 0.0, "flagged": False}
               for m in ("throughput_bps", "copies_per_packet_measured")]
    (line,) = report.table_lines(summary, [row], [], {})
    assert line[report.HEADERS.index("copies/pkt syscall meas | model (all)")] == "1.01 | 1 (2)"
