"""Exits by reason from KVM's own tracepoint format and hist output (captured in the lab's L1,
Debian 6.1.0-57-amd64, kvm_amd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iobench.counters import exitreasons

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def names() -> dict[int, dict[int, str]]:
    return exitreasons.reason_names((DATA / "tracefs/kvm_exit.format").read_text())


def test_reason_names_come_from_the_tracepoints_own_tables(names: dict[int, dict[int, str]]) -> None:
    """SVM codes from the AMD manual (APM vol. 2, appendix C) and VMX basic exit reasons (SDM vol. 3,
    appendix C), named as the kernel prints them."""
    svm, vmx = names[2], names[1]
    assert (svm[0x400], svm[0x07C], svm[0x078], svm[0x060], svm[0x064]) == ("npf", "msr", "hlt", "interrupt", "vintr")
    assert svm[0x040 + 14] == "PF excp"  # an entry written as an expression in the format: { 0x040 + 14, ... }
    assert svm[0xFFFFFFFF] == "invalid_guest_state"  # { -1, ... }, as the u32 field holds it
    assert (vmx[12], vmx[48], vmx[30], vmx[32]) == ("HLT", "EPT_VIOLATION", "IO_INSTRUCTION", "MSR_WRITE")
    assert len(svm) == 108 and len(vmx) == 62


def test_a_format_without_both_tables_is_refused() -> None:
    with pytest.raises(exitreasons.ExitReasonsUnavailable, match="reason tables"):
        exitreasons.reason_names('print fmt: "vcpu %u", REC->vcpu_id')


def test_by_reason_keeps_only_the_vms_vcpu_threads(names: dict[int, dict[int, str]]) -> None:
    exits = {(151, 2, 0x400): {"hitcount": 700}, (151, 2, 0x07C): {"hitcount": 200},
             (152, 2, 0x400): {"hitcount": 100}, (999, 2, 0x400): {"hitcount": 5000},
             (151, 2, 0x12345): {"hitcount": 3}}
    times = {(151, 2, 0x400): {"hitcount": 699, "ns": 6_990_000}, (999, 2, 0x400): {"hitcount": 1, "ns": 9}}
    w = exitreasons.by_reason(exits, times, {151, 152}, names)
    assert [(r.reason, r.exits, r.handled, r.handling_ns) for r in w.reasons] == [
        ("npf", 800, 699, 6_990_000), ("msr", 200, 0, 0), ("svm_0x12345", 3, 0, 0)]
    assert w.total == 1003


def test_the_exits_figure_stacks_reasons_when_they_were_counted(data: Path) -> None:
    from iobench import plots
    from tests.test_measure import vm_tidy

    rows = [vm_tidy(data, "e1000", "rx")[0]]
    row = rows[0]
    reasons = [{"backend": "e1000", "direction": "rx", "repeat": 1, "workload": row["workload"], "phase": "traffic",
                "reason": name, "exits": n} for name, n in (("npf", 600), ("msr", 300), ("hlt", 50))]
    fig = plots.exits_figure(rows, "kvm-stats", reasons=reasons)
    try:
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert labels[:3] == ["reason npf", "reason msr", "reason hlt"] and "by exit reason" in fig.axes[0].get_title()
        (npf,) = [c for c in fig.axes[0].containers if c.get_label() == "reason npf"]
        assert npf.patches[0].get_height() == pytest.approx(600 / row["packets"])
    finally:
        plots.close(fig)
