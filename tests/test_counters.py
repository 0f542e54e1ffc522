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
    """The captured stat of QEMU's "CPU 0/TCG" thread: utime 425 and stime 18 ticks (fields 14 and
    15 of proc(5), read off the file by hand), at this machine's 100 ticks per second."""
    text = (data / "proc/task-CPU_0-TCG.stat").read_text()
    assert proc.CLK_TCK == 100
    assert proc.parse_stat_cpu_s(text) == pytest.approx(4.43)


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


def test_a_kvm_stat_the_kernel_lacks_is_missing_not_zero(data: Path) -> None:
    """A kernel without one stat (here irq_window_exits, removed from one vCPU's real reply) has
    not counted zero of them: the sum is None and so is the window's delta."""
    reply = json.loads((data / "qmp-query-stats-vcpu-after.json").read_text())
    vcpus = [e for e in reply if e.get("provider") == "kvm"]
    vcpus[0]["stats"] = [s for s in vcpus[0]["stats"] if s["name"] != "irq_window_exits"]
    after = kvm.sum_vcpu_stats(reply)
    assert after["irq_window_exits"] is None and after["exits"] == 6423
    before = kvm.sum_vcpu_stats(json.loads((data / "qmp-query-stats-vcpu-before.json").read_text()))
    assert kvm.delta(before, after)["irq_window_exits"] is None
    assert kvm.missing(after) == ["irq_window_exits"]


def test_kvm_stats_reject_a_reply_without_exits() -> None:
    with pytest.raises(ValueError):
        kvm.sum_vcpu_stats([{"provider": "kvm", "stats": [{"name": "halt_exits", "value": 3}]}])


def test_tcg_trap_counts_from_a_real_e1000_trace(data: Path) -> None:
    lines = (data / "trace-e1000-rx.log").read_text().splitlines()
    """Counted by hand (grep) in the captured log: 196 dispatches, 3 of them device writes (cpu -1);
    of the 193 guest accesses 112 hit 'e1000-mmio', 69 'apic-msi' and 12 'hpet'; no kicks."""
    counts = tcg.parse(lines)
    assert (counts.nic, counts.apic, counts.other, counts.device_writes) == (112, 69, 12, 3)
    assert counts.virtio_kicks_handled == 0 and counts.total == 193


def test_tcg_device_writes_are_not_guest_traps(data: Path) -> None:
    lines = (data / "trace-virtio-tx.log").read_text().splitlines()
    """By hand: 41 device-originated MSI writes (cpu -1), 51 guest LAPIC accesses, 25 kicks handled."""
    counts = tcg.parse(lines)
    assert counts.device_writes == 41
    assert (counts.nic, counts.apic, counts.other, counts.virtio_kicks_handled) == (0, 51, 0, 25)
    assert counts.total == 76


def test_a_missing_trace_log_has_no_size(tmp_path: Path) -> None:
    assert tcg.log_size(tmp_path / "trace.log") is None  # not 0: nothing was read
    (tmp_path / "trace.log").write_text("")
    assert tcg.log_size(tmp_path / "trace.log") == 0


def test_tcg_parser_accepts_the_timestamped_log_format() -> None:
    line = "1234@1700000000.000001:memory_region_ops_write cpu 0 mr 0x1 addr 0x3818 value 0x5 size 4 name 'e1000-mmio'"
    assert tcg.parse([line]).nic == 1


def test_known_vhost_workers_are_read_without_a_scan_of_every_process() -> None:
    """read_threads with the workers found before reads those (the lab's samples spent most of their
    time scanning /proc for `vhost-<pid>`); with none possible it reads only the process's own tasks."""
    import os
    import subprocess

    from iobench.counters import proc

    worker = subprocess.Popen(["sleep", "30"])
    try:
        threads = proc.read_threads(os.getpid(), vhost_tids=[worker.pid])
        assert [t.tid for t in threads if t.kind == "vhost"] == [worker.pid]
        assert not [t for t in proc.read_threads(os.getpid(), vhost_tids=()) if t.kind == "vhost"]
    finally:
        worker.kill()
        worker.wait()
    assert not [t for t in proc.read_threads(os.getpid(), vhost_tids=[worker.pid]) if t.kind == "vhost"]  # gone
