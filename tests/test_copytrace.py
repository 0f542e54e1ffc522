"""The copy trace: its hist parser, its module build for the lab's kernel, the kernel-log
reader that says why a kernel refused, and its refusals (each with the reason).

The module loading and counting itself runs in the lab (tests/test_lab.py): this host's
kernel has no kprobes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from iobench import guest, lab
from iobench.counters import copytrace

# The shape of a hist trigger keyed by common_pid.execname (Documentation/trace/histogram.rst).
HIST = """# event histogram
#
# trigger info: hist:keys=common_pid.execname:vals=hitcount,bytes:sort=hitcount:size=2048 [active]
#

{ common_pid: vhost-1234      [      1301] } hitcount:        812  bytes:    1195236
{ common_pid: qemu-system-x86 [      1234] } hitcount:         10  bytes:      15140
{ common_pid: iperf3          [      1400] } hitcount:         99  bytes:     131072

Totals:
    Hits: 921
    Entries: 3
    Dropped: 0
"""


def test_parse_hist_by_thread() -> None:
    by_tid = copytrace.parse_hist(HIST)
    assert by_tid[1301].comm == "vhost-1234" and by_tid[1301].bytes == 1195236 and by_tid[1301].calls == 812
    assert by_tid[1234].comm == "qemu-system-x86" and by_tid[1234].bytes == 15140


def test_bytes_by_kind_finds_the_vhost_worker_by_name() -> None:
    counts = copytrace.CopyCounts(copytrace.parse_hist(HIST))
    assert copytrace.by_kind(counts, qemu_tids={1234}, qemu_pid=1234) == {
        "qemu": 15140, "vhost": 1195236, "iperf3": 131072, "other": 0}


def test_the_iperf3_client_is_known_by_pid_whatever_the_kernel_named_it() -> None:
    """Measured in the lab: the hist entry of the host's iperf3 client said "python3" (its
    first copy came before the exec), and its 316 MB were charged to "other"."""
    counts = copytrace.CopyCounts(copytrace.parse_hist(HIST.replace("iperf3          [      1400]",
                                                                     "python3         [      1400]")))
    assert copytrace.by_kind(counts, qemu_tids={1234}, qemu_pid=1234)["other"] == 131072
    assert copytrace.by_kind(counts, qemu_tids={1234}, qemu_pid=1234, iperf3_pids={1400}) == {
        "qemu": 15140, "vhost": 1195236, "iperf3": 131072, "other": 0}


def test_unavailable_without_trace_events(tmp_path: Path) -> None:
    with pytest.raises(copytrace.CopyTraceUnavailable, match="no trace events"):
        copytrace.CopyTrace(tracefs=tmp_path)


def test_the_reason_given_by_the_lab_host_is_the_inner_runs_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(copytrace.NA_ENV, "no kernel headers for 6.1.0-99-amd64 to build the copy-trace module with")
    with pytest.raises(copytrace.CopyTraceUnavailable, match="no kernel headers for 6.1.0-99-amd64"):
        copytrace.CopyTrace()


def test_this_hosts_kernel_says_why_it_cannot_trace_copies() -> None:
    """This machine's kernel has no kprobes: the run records that, not a build error."""
    why = copytrace.problem()
    if Path("/sys/kernel/tracing/events").is_dir() and "register_kprobe" in Path("/proc/kallsyms").read_text():
        assert why is None
    else:
        assert why is not None and ("kprobes" in why or "trace events" in why)


@pytest.mark.skipif(not os.access("/dev/kmsg", os.W_OK), reason="needs root to write a marker into /dev/kmsg")
def test_kernel_log_gives_only_lines_written_after_it_was_opened() -> None:
    """The old reader returned a boot line ("kprobe jump-optimization is enabled") as the
    reason a probe was refused; only what the kernel says during the attempt counts."""
    before = os.urandom(4).hex()
    Path("/dev/kmsg").write_text(f"iobench-test {before}\n")
    klog = copytrace.KernelLog()
    after = os.urandom(4).hex()
    Path("/dev/kmsg").write_text(f"iobench-test {after}\n")
    lines = klog.new_lines()
    klog.close()
    assert any(after in ln for ln in lines)
    assert not any(before in ln for ln in lines)


@pytest.mark.slow
def test_module_builds_for_the_lab_kernel_from_debian_headers() -> None:
    """The module the lab loads: built from Debian's headers packages for L1's kernel,
    its vermagic names that kernel (else the kernel refuses it), cached by source digest."""
    release = guest.build(log=lambda _: None, spec=lab.LAB).kernel_release
    path = copytrace.build(release, log=lambda _: None)
    assert path == copytrace.module_path(release) and path.parent.name.endswith(copytrace.source_digest())
    with path.open("rb") as f:
        modinfo = ELFFile(f).get_section_by_name(".modinfo").data().split(b"\0")
    fields = dict(item.decode().split("=", 1) for item in modinfo if b"=" in item)
    assert fields["vermagic"].split()[0] == release
    assert fields["name"] == copytrace.MODULE and fields["license"] == "GPL"
    assert copytrace.build(release, log=lambda _: None) == path  # cached: no second build
