"""Counter parsers on captured real output (QEMU 7.2 under TCG, KVM query-stats, /proc)."""

import json
from pathlib import Path

import pytest

from iobench import schema
from iobench.counters import kvm, proc, tcg


def test_parse_io_of_a_real_qemu(data: Path) -> None:
    io = proc.parse_io((data / "proc/qemu-io.txt").read_text())
    assert io["rchar"] > 0 and io["wchar"] > 0 and "syscr" in io


def test_stat_parser_handles_thread_names_with_spaces_and_slashes(data: Path) -> None:
    text = (data / "proc/task-CPU_0-TCG.stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    expected = (int(fields[11]) + int(fields[12])) / proc.CLK_TCK
    assert proc.parse_stat_cpu_s(text) == pytest.approx(expected)
    assert expected > 0


@pytest.mark.parametrize(("comm", "tid", "kind"), [
    ("CPU 0/TCG", 11, "vcpu"), ("CPU 1/KVM", 12, "vcpu"), ("qemu-system-x86", 10, "main"),
    ("IO mon_iothread", 13, "iothread"), ("vhost-10", 99, "vhost"), ("qemu-system-x86", 14, "other"),
])
def test_thread_kind_from_qemu_thread_names(comm: str, tid: int, kind: str) -> None:
    assert proc.thread_kind(comm, tid, pid=10) == kind


def test_kvm_stats_sum_and_delta_from_real_query_stats(data: Path) -> None:
    before = kvm.sum_vcpu_stats(json.loads((data / "qmp-query-stats-vcpu-before.json").read_text()))
    after = kvm.sum_vcpu_stats(json.loads((data / "qmp-query-stats-vcpu-after.json").read_text()))
    assert before["exits"] == 5869 and after["exits"] == 6423
    d = kvm.delta(before, after)
    assert d["exits"] == 554
    assert set(d) == set(schema.KVM_STATS)


def test_kvm_stats_reject_a_reply_without_exits() -> None:
    with pytest.raises(ValueError):
        kvm.sum_vcpu_stats([{"provider": "kvm", "stats": [{"name": "halt_exits", "value": 3}]}])


def test_tcg_trap_counts_from_a_real_e1000_trace(data: Path) -> None:
    lines = (data / "trace-e1000-rx.log").read_text().splitlines()
    counts = tcg.parse(lines)
    by_hand_nic = sum(1 for ln in lines if ln.startswith("memory_region_ops_") and "name 'e1000" in ln)
    assert counts.nic == by_hand_nic > 0
    assert counts.virtio_kicks_handled == 0
    assert counts.total == sum(counts.by_region.values())
    assert counts.nic + counts.apic + counts.other == sum(counts.by_region.values())


def test_tcg_device_writes_are_not_guest_traps(data: Path) -> None:
    lines = (data / "trace-virtio-tx.log").read_text().splitlines()
    counts = tcg.parse(lines)
    cpu_minus_one = sum(1 for ln in lines if ln.startswith("memory_region_ops_") and " cpu -1 " in ln)
    assert counts.device_writes == cpu_minus_one
    assert counts.virtio_kicks_handled == sum(1 for ln in lines if ln.startswith("virtio_queue_notify "))
    assert counts.total == sum(counts.by_region.values()) + counts.virtio_kicks_handled


def test_tcg_parser_accepts_the_timestamped_log_format() -> None:
    line = "1234@1700000000.000001:memory_region_ops_write cpu 0 mr 0x1 addr 0x3818 value 0x5 size 4 name 'e1000-mmio'"
    assert tcg.parse([line]).nic == 1
