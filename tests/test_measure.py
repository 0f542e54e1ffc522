"""Row arithmetic on the counters of a real TCG run (tests/data/run-tcg, iobench 0.1 on this machine kind),
replayed through the instruments that read them (tests/replay.py)."""

import json
import math
from pathlib import Path

import pytest

from iobench import backends, traffic
from iobench.counters import proc, tcg
from iobench.instruments.tcg_traps import TCG_NA, trap_columns
from iobench.instruments.threads import cpu_delta
from iobench.measure import IdleWindow, native_row, vm_row
from iobench.schema import COLUMNS, FRAME_AT_MTU, derive
from tests.replay import Given, cell, load, measure, window


def vm_tidy(data: Path, backend: str, direction: str, measured_as: str | None = None, accel: str = "tcg"):
    """The row of a captured cell; `measured_as`: the backend it is replayed as (default: its own)."""
    base = data / "run-tcg" / f"{backend}-{direction}"
    counters = load(base.with_suffix(".counters.json"))
    traps = tcg.TrapCounts(**json.loads(base.with_suffix(".traps.json").read_text()))
    idle = IdleWindow(**json.loads((data / "run-tcg" / f"{backend}.boot-and-idle.json").read_text())["idle"])
    as_backend = measured_as or backend
    given = Given(trap_columns(traps) | {"cpu_s_iperf3_client": 0.5}, [TCG_NA])
    got = measure(counters["before"], counters["after"], window(f"{backend}-{direction}", as_backend), accel,
                  given).read()
    result = traffic.parse(base.with_suffix(".iperf3.json").read_text())
    row = vm_row(run_id="t", cell=cell(backend, direction), backend=backends.BACKENDS[as_backend], accel=accel,
                 traffic=result, measured=got.columns, na=got.na, duration_s=got.duration_s, idle=idle, cpu_hz=2.1e9)
    return derive(row), counters["before"], counters["after"], traps, idle


@pytest.mark.parametrize("backend", ["e1000", "virtio"])
@pytest.mark.parametrize("direction", ["rx", "tx"])
def test_row_uses_the_data_direction_of_the_tap(data: Path, backend: str, direction: str) -> None:
    r, before, after, _, _ = vm_tidy(data, backend, direction)
    key = "tx" if direction == "rx" else "rx"  # host->guest data leaves the host through the tap
    assert r["bytes"] == after["link"][f"{key}_bytes"] - before["link"][f"{key}_bytes"]
    assert r["frames"] == after["link"][f"{key}_packets"] - before["link"][f"{key}_packets"]
    assert r["packets"] == pytest.approx(r["bytes"] / FRAME_AT_MTU, abs=0.1)
    assert r["bytes"] >= r["iperf3_bytes"]
    assert r["duration_s"] == round(after["monotonic"] - before["monotonic"], 3)


@pytest.mark.parametrize("backend", ["e1000", "virtio"])
@pytest.mark.parametrize("direction", ["rx", "tx"])
def test_syscall_copies_exclude_the_trace_log(data: Path, backend: str, direction: str) -> None:
    r, before, after, _, _ = vm_tidy(data, backend, direction)
    assert r["trace_log_bytes"] == after["trace_offset"] - before["trace_offset"] > 0
    assert r["syscall_copy_bytes"] == r["rchar"] + r["wchar"] - r["trace_log_bytes"]
    assert r["copies_per_packet_measured"] == pytest.approx(r["syscall_copy_bytes"] / r["bytes"], rel=1e-3)
    # one user/kernel copy per payload byte in QEMU's userspace datapath, both backends
    assert r["copies_per_packet_measured"] == pytest.approx(1.0, abs=0.1)


def test_idle_rate_and_net_exits(data: Path) -> None:
    r, _, _, _, idle = vm_tidy(data, "e1000", "rx")
    rate = idle.exits / idle.seconds
    assert r["exits_idle_rate"] == pytest.approx(rate, abs=0.01)
    assert r["net_exits_per_packet"] == pytest.approx((r["exits"] - rate * r["duration_s"]) / r["packets"], rel=1e-3)
    assert r["net_exits_per_packet"] < r["exits_per_packet"]


def test_tcg_row_says_kvm_columns_are_empty_and_why(data: Path) -> None:
    r, *_ = vm_tidy(data, "e1000", "tx")
    assert r["exit_source"] == "tcg-traps"
    assert r["io_exits"] is None and r["halt_exits_per_packet"] is None
    assert "TCG" in r["na_reason"] and "iperf3 server CPU is inside the guest" in r["na_reason"]
    assert r["exits"] == r["traps_nic"] + r["traps_apic"] + r["traps_other"] + r["virtio_kicks_handled"]
    assert r["traps_nic_per_packet"] == pytest.approx(r["traps_nic"] / r["packets"], rel=1e-3)


def test_cpu_per_packet_and_estimated_cycles_per_byte(data: Path) -> None:
    r, *_ = vm_tidy(data, "virtio", "rx")
    path = sum(r[f"cpu_s_{k}"] for k in ("vcpu", "main", "iothread", "other", "vhost"))
    assert r["cpu_us_per_packet"] == pytest.approx(path * 1e6 / r["packets"], rel=1e-3)
    assert r["est_cycles_per_byte"] == pytest.approx(path * 2.1e9 / r["bytes"], rel=1e-3)
    assert r["cpu_us_per_packet_iperf3_client"] == pytest.approx(0.5e6 / r["packets"], rel=1e-3)


def test_virtio_frames_are_superframes_but_packets_are_mtu_sized(data: Path) -> None:
    r, *_ = vm_tidy(data, "virtio", "rx")
    assert r["bytes_per_frame"] > 10 * FRAME_AT_MTU  # GSO superframes on the tap
    assert r["packets"] > 10 * r["frames"]


@pytest.mark.parametrize("direction", ["rx", "tx"])
def test_native_row_has_no_vm_figures(data: Path, direction: str) -> None:
    base = data / "run-tcg" / f"native-{direction}"
    counters = load(base.with_suffix(".counters.json"))
    before, after = counters["before"], counters["after"]
    got = measure(before, after, window(f"native-{direction}", "native", vm=False), "tcg",
                  Given({"cpu_s_iperf3_client": 0.5})).read()
    r = derive(native_row(run_id="t", cell=cell("native", direction),
                          traffic=traffic.parse(base.with_suffix(".iperf3.json").read_text()),
                          measured=got.columns, duration_s=got.duration_s, cpu_hz=2.1e9))
    assert r["exits"] == 0 and r["exits_per_packet"] == 0
    assert r["copies_per_packet_measured"] is None and r["cpu_us_per_packet"] is None
    assert r["cpu_s_iperf3_server"] > 0 and r["cpu_s_iperf3_client"] == 0.5
    key = "rx" if direction == "rx" else "tx"  # the peer veth plays the guest
    assert r["bytes"] == after["link"][f"{key}_bytes"] - before["link"][f"{key}_bytes"] >= r["iperf3_bytes"]
    assert r["na_reason"].startswith("native: no VM")


def test_tidy_rows_have_exactly_the_documented_columns(data: Path) -> None:
    r, *_ = vm_tidy(data, "e1000", "rx")
    assert list(r) == COLUMNS


def test_a_column_no_instrument_read_is_empty_with_the_reason(data: Path) -> None:
    """A row is assembled from what the instruments returned: one that is missing leaves its columns empty
    and says so, never a 0 or an error."""
    base = data / "run-tcg" / "e1000-rx"
    counters = load(base.with_suffix(".counters.json"))
    got = measure(counters["before"], counters["after"], window("e1000-rx", "e1000"), "tcg",
                  Given({"exits": 5, "cpu_s_iperf3_client": 0.5})).read()
    row = vm_row(run_id="t", cell=cell("e1000", "rx"), backend=backends.BACKENDS["e1000"], accel="tcg",
                 traffic=traffic.parse(base.with_suffix(".iperf3.json").read_text()), measured=got.columns,
                 na=got.na, duration_s=got.duration_s, idle=None, cpu_hz=None)
    assert row.traps_nic is None and row.kcopy_bytes_qemu is None
    assert "traps_nic" in row.na_reason and "no instrument read it" in row.na_reason


def test_cpu_delta_matches_threads_by_id() -> None:
    before = [proc.ThreadCPU(1, "qemu-system-x86", "main", 1.0), proc.ThreadCPU(2, "CPU 0/TCG", "vcpu", 5.0)]
    after = [proc.ThreadCPU(1, "qemu-system-x86", "main", 1.5), proc.ThreadCPU(2, "CPU 0/TCG", "vcpu", 7.0),
             proc.ThreadCPU(3, "worker", "other", 0.25)]
    assert cpu_delta(before, after) == {"vcpu": 2.0, "main": 0.5, "iothread": 0.0, "other": 0.25, "vhost": 0.0}
    assert not math.isnan(sum(cpu_delta(before, after).values()))
