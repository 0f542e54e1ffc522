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


def test_refusals_say_what_the_kernel_lacks(tmp_path: Path) -> None:
    """Kprobes first (nothing else helps without them), then the routines, then tracefs."""
    with_kprobes = tmp_path / "kallsyms"
    with_kprobes.write_text("ffffffff81100000 T register_kprobe\nffffffff81536c20 T _copy_to_iter\n"
                            "ffffffff81535f00 T _copy_from_iter\n")
    without = tmp_path / "kallsyms-nokprobes"
    without.write_text("ffffffff81536c20 T _copy_to_iter\nffffffff81535f00 T _copy_from_iter\n")
    empty_tracefs = tmp_path / "tracing"
    empty_tracefs.mkdir()
    assert copytrace.problem(empty_tracefs, without) == "this kernel has no kprobes (CONFIG_KPROBES is off)"
    assert "not mounted" in str(copytrace.problem(empty_tracefs, with_kprobes))
    (empty_tracefs / "events").mkdir()
    assert copytrace.problem(empty_tracefs, with_kprobes) is None
    with pytest.raises(copytrace.CopyTraceUnavailable):
        copytrace.CopyTrace(tracefs=tmp_path / "nowhere")


def test_the_reason_given_by_the_lab_host_is_the_inner_runs_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(copytrace.NA_ENV, "no kernel headers for 6.1.0-99-amd64 to build the copy-trace module with")
    with pytest.raises(copytrace.CopyTraceUnavailable, match="no kernel headers for 6.1.0-99-amd64"):
        copytrace.CopyTrace()


def test_this_hosts_kernel_says_why_it_cannot_trace_copies() -> None:
    """On a kernel without kprobes (this machine's) the run records that, not a build error."""
    if "register_kprobe" in Path("/proc/kallsyms").read_text():
        pytest.skip("this kernel has kprobes: the refusal cannot be seen here (the lab test loads the module)")
    assert copytrace.problem() == "this kernel has no kprobes (CONFIG_KPROBES is off)"


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
