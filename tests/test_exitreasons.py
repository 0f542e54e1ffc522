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


def _fake_tracefs(root: Path) -> Path:
    """A tracefs tree as the lab's L1 kernel has it (its captured formats), whose files take what is
    written to them: the commands the counter sends, in order, without a kernel to obey them."""
    for event in ("kvm_exit", "kvm_entry", "kvm_mmio", "kvm_pio", "kvm_msr", "kvm_userspace_exit"):
        d = root / "events" / "kvm" / event
        d.mkdir(parents=True)
        captured = DATA / "tracefs" / f"{event}.format"
        (d / "format").write_text(captured.read_text() if captured.exists() else "print fmt: \"\"\n")
        (d / "trigger").write_text("")
        (d / "hist").write_text("\nTotals:\n    Hits: 0\n    Entries: 0\n    Dropped: 0\n")
    synth = root / "events" / "synthetic" / exitreasons.SYNTH
    synth.mkdir(parents=True)
    (synth / "hist").write_text("\nTotals:\n    Hits: 0\n")
    (synth / "trigger").write_text("")
    (root / "synthetic_events").write_text("")
    return root


def test_triggers_are_armed_once_per_run_and_only_cleared_per_window(tmp_path: Path, monkeypatch) -> None:
    """What the counter tells the kernel: every trigger added once (the counting ones paused) when it is
    made; per window only clear, cont (sites, exits, then handling times) and pause in reverse — no
    trigger added or removed, so no tracepoint is enabled or disabled per window (no kernel text
    patched); every trigger and the synthetic event removed when it closes. The alternate A/B's
    counter (once=False) adds them at each window's start and removes them at its end."""
    from iobench import stale
    from iobench.counters import tracefs

    monkeypatch.setattr(exitreasons, "LOCK", tmp_path / "lock")
    monkeypatch.setattr(stale, "LOCK_DIR", tmp_path)
    root = _fake_tracefs(tmp_path / "tracefs")
    written: list[str] = []
    real = tracefs.add_trigger
    monkeypatch.setattr(tracefs, "add_trigger", lambda event, line: (written.append(line), real(event, line))[1])
    tracer = exitreasons.ExitReasons(root)
    try:
        assert tracer.armed and tracer.timed and set(tracer.sites) == set(exitreasons.SITE_TRIGGERS)
        added = [w for w in written if not w.startswith("!")]
        assert f"{exitreasons.EXIT_TRIGGER}:pause" in added and exitreasons.ENTRY_TRIGGER in added
        for _ in range(3):
            written.clear()
            tracer.start()
            tracer.pause()
            tracer.stop()
            counting = len(tracer.sites) + 2  # the sites, the exits, the handling times
            assert [w.rsplit(":", 1)[1] for w in written] == ["clear"] * counting + ["cont"] * counting + \
                ["pause"] * counting * 2, written
            conts = [w for w in written if w.endswith(":cont")]
            assert conts[-2:] == [f"{exitreasons.EXIT_TRIGGER}:cont", f"{exitreasons.TIME_TRIGGER}:cont"]
        written.clear()
    finally:
        tracer.close()
    assert f"!{exitreasons.EXIT_TRIGGER}" in written and f"!{exitreasons.ENTRY_TRIGGER}" in written
    assert (root / "synthetic_events").read_text().splitlines()[-1] == f"!{exitreasons.SYNTH_DEF}"
    written.clear()
    per_window = exitreasons.ExitReasons(root, once=False)
    try:
        assert not per_window.armed
        written.clear()
        per_window.start()
        assert f"{exitreasons.EXIT_TRIGGER}:pause" in written and not any(w.endswith(":clear") for w in written)
        written.clear()
        per_window.stop()
        assert f"!{exitreasons.EXIT_TRIGGER}" in written and not per_window.armed
    finally:
        per_window.close()
