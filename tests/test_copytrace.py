"""The copy-trace parser and its refusal on kernels without kprobe events."""

from pathlib import Path

import pytest

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


def test_unavailable_without_kprobe_events(tmp_path: Path) -> None:
    with pytest.raises(copytrace.CopyTraceUnavailable, match="no kprobe events"):
        copytrace.CopyTrace(tracefs=tmp_path)
