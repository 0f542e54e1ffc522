"""Missing stays missing: a value that was not read is None/NaN with its reason in na_reason,
never a 0 that reads as a measurement (each case here once produced a silent zero)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from iobench import backends, plots, report, traffic
from iobench.counters import tcg
from iobench.errors import CellFailed
from iobench.instruments.tcg_traps import TCG_NA, TcgTraps, trap_columns
from iobench.measure import idle_window, vm_row
from iobench.schema import KVM_STATS, derive
from tests.replay import Given, cell, load, measure, scope, window
from tests.test_measure import vm_tidy


def _stats(**given: int | None) -> dict[str, int | None]:
    return dict.fromkeys(KVM_STATS, 0) | given


def _counters(data: Path, name: str) -> tuple[dict, dict]:
    counters = load(data / "run-tcg" / f"{name}.counters.json")
    return counters["before"], counters["after"]


def _traps(data: Path, name: str) -> Given:
    traps = tcg.TrapCounts(**json.loads((data / f"run-tcg/{name}.traps.json").read_text()))
    return Given(trap_columns(traps) | {"cpu_s_iperf3_client": 0.5}, [TCG_NA])


def _row(data: Path, name: str, backend: str, accel: str, before, after, exits=None):
    got = measure(before, after, window(name, backend), accel, exits).read()
    return derive(vm_row(run_id="t", cell=cell(*name.split("-")), backend=backends.BACKENDS[backend], accel=accel,
                         traffic=traffic.parse((data / "run-tcg" / f"{name}.iperf3.json").read_text()),
                         measured=got.columns, na=got.na, duration_s=got.duration_s, idle=None, cpu_hz=2.1e9))


def test_a_vhost_run_whose_worker_was_not_found_has_no_vhost_cpu(data: Path) -> None:
    before, after = _counters(data, "virtio-rx")  # QEMU's threads, and no vhost-<pid> among them
    r = _row(data, "virtio-rx", "vhost", "tcg", before, after, _traps(data, "virtio-rx"))
    assert r["cpu_s_vhost"] is None and r["cpu_us_per_packet_vhost"] is None
    assert "no vhost-" in r["na_reason"] and "worker thread was found" in r["na_reason"]
    # a backend without vhost has no worker by construction: 0 there is a fact, not a gap
    assert _row(data, "virtio-rx", "virtio", "tcg", before, after, _traps(data, "virtio-rx"))["cpu_s_vhost"] == 0


def test_a_missing_trace_log_leaves_syscall_copies_unknown_under_tcg(data: Path) -> None:
    before, after = _counters(data, "e1000-rx")
    r = _row(data, "e1000-rx", "e1000", "tcg", before, {**after, "trace_offset": None}, _traps(data, "e1000-rx"))
    assert r["trace_log_bytes"] is None and r["syscall_copy_bytes"] is None
    assert r["copies_per_packet_measured"] is None and "trace log was missing" in r["na_reason"]


def test_under_kvm_a_trace_log_qemu_never_created_had_nothing_written(data: Path) -> None:
    before, after = _counters(data, "e1000-rx")
    b = {**before, "trace_offset": None, "kvm": _stats(exits=10, irq_injections=2)}
    a = {**after, "trace_offset": None, "kvm": _stats(exits=110, irq_injections=12)}
    r = _row(data, "e1000-rx", "e1000", "kvm", b, a)
    assert r["trace_log_bytes"] == 0 and r["syscall_copy_bytes"] == r["rchar"] + r["wchar"]
    assert r["exits"] == 100 and r["traps_nic"] is None


def test_a_tcg_window_without_its_trace_log_fails_instead_of_counting_zero_traps(tmp_path: Path) -> None:
    w = window("e1000-rx", "e1000")
    w.vm.trace_log = tmp_path / "trace.log"  # type: ignore[union-attr]
    with pytest.raises(CellFailed, match="trace log .* is missing"):
        TcgTraps(scope("tcg")).read(w, [None, None])


def test_an_idle_window_without_an_interrupt_stat_has_no_interrupt_rate(data: Path) -> None:
    before, after = _counters(data, "e1000-rx")
    b = {**before, "kvm": _stats(exits=100, irq_injections=None)}
    a = {**after, "kvm": _stats(exits=160, irq_injections=None)}
    got = measure(b, a, window("e1000-rx", "e1000"), "kvm").read()
    idle = idle_window(got.duration_s, got.columns)
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
