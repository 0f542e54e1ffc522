"""Row arithmetic on the counters of a real TCG run (tests/data/run-tcg)."""

import json
from pathlib import Path

import pytest

from iobench import backends, traffic
from iobench.counters import proc, tcg
from iobench.measure import Snapshot, cpu_delta, make_row
from iobench.results import FRAME_AT_MTU


def load_snapshot(d: dict) -> Snapshot:
    return Snapshot(d["monotonic"], d["tap"], d["io"], [proc.ThreadCPU(**t) for t in d["threads"]],
                    d["kvm"], d["trace_offset"])


def row_for(data: Path, backend: str, direction: str):
    base = data / "run-tcg" / f"{backend}-{direction}"
    counters = json.loads(base.with_suffix(".counters.json").read_text())
    traps_raw = json.loads(base.with_suffix(".traps.json").read_text())
    traps = tcg.TrapCounts(traps_raw["by_region"], traps_raw["device_writes"], traps_raw["virtio_kicks_handled"],
                           traps_raw["virtio_notify"], traps_raw["irq_deliveries"])
    before, after = load_snapshot(counters["before"]), load_snapshot(counters["after"])
    result = traffic.parse(base.with_suffix(".iperf3.json").read_text())
    row = make_row(run_id="t", backend=backends.BACKENDS[backend], direction=direction, repeat=1, accel="tcg",
                   before=before, after=after, traffic=result, traps=traps)
    return row, before, after, traps


@pytest.mark.parametrize("backend", ["e1000", "virtio"])
@pytest.mark.parametrize("direction", ["rx", "tx"])
def test_row_uses_the_data_direction_of_the_tap(data: Path, backend: str, direction: str) -> None:
    row, before, after, _ = row_for(data, backend, direction)
    key = "tx_bytes" if direction == "rx" else "rx_bytes"
    assert row.bytes == after.tap[key] - before.tap[key]
    assert row.packets == pytest.approx(row.bytes / FRAME_AT_MTU, abs=0.1)
    # tap bytes cover the whole window (iperf3 warm-up included), so never fewer than iperf3 counted
    assert row.bytes >= row.iperf3_bytes


@pytest.mark.parametrize("backend", ["e1000", "virtio"])
@pytest.mark.parametrize("direction", ["rx", "tx"])
def test_syscall_copies_exclude_the_trace_log(data: Path, backend: str, direction: str) -> None:
    row, before, after, _ = row_for(data, backend, direction)
    assert row.trace_log_bytes == after.trace_offset - before.trace_offset > 0
    assert row.syscall_copy_bytes == row.rchar + row.wchar - row.trace_log_bytes
    # one user/kernel copy per payload byte in QEMU's userspace datapath, both backends
    assert row.copies_per_packet_measured == pytest.approx(1.0, abs=0.1)


def test_tcg_row_says_kvm_columns_are_empty_and_why(data: Path) -> None:
    row, *_ = row_for(data, "e1000", "tx")
    assert row.exit_source == "tcg-traps"
    assert row.io_exits is None and row.halt_exits is None
    assert "TCG" in row.na_reason
    assert row.exits == row.traps_nic + row.traps_apic + row.traps_other + row.virtio_kicks_handled
    assert row.exits_per_packet == pytest.approx(row.exits / row.packets, rel=1e-3)


def test_virtio_frames_are_superframes_but_packets_are_mtu_sized(data: Path) -> None:
    row, *_ = row_for(data, "virtio", "rx")
    assert row.bytes / row.frames > 10 * FRAME_AT_MTU  # GSO superframes on the tap
    assert row.packets > 10 * row.frames


def test_cpu_delta_matches_threads_by_id() -> None:
    before = [proc.ThreadCPU(1, "qemu-system-x86", "main", 1.0), proc.ThreadCPU(2, "CPU 0/TCG", "vcpu", 5.0)]
    after = [proc.ThreadCPU(1, "qemu-system-x86", "main", 1.5), proc.ThreadCPU(2, "CPU 0/TCG", "vcpu", 7.0),
             proc.ThreadCPU(3, "worker", "other", 0.25)]
    assert cpu_delta(before, after) == {"vcpu": 2.0, "main": 0.5, "iothread": 0.0, "other": 0.25, "vhost": 0.0}
