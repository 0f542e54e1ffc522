"""`iobench host tune` / `reset` on a host tree laid out as Linux shows it (never this machine's own
settings: the suite shares the host with CI); the real machine only in --dry-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iobench import hosttune
from iobench.cli import main
from iobench.errors import UserError
from tests.test_hoststate import TUNED_HOST, write

UNTUNED = {**TUNED_HOST, **{f"sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor": "powersave" for c in range(4)},
           "sys/devices/system/cpu/cpufreq/boost": "1",
           "proc/irq/24/smp_affinity_list": "0-3", "proc/irq/25/smp_affinity_list": "2", "proc/irq/26/smp_affinity_list": "0"}


def test_tune_saves_first_then_sets_and_reset_restores_exactly(tmp_path: Path) -> None:
    root = write(tmp_path / "host", UNTUNED)
    state = tmp_path / "run" / "host-tune.json"
    calls: list[tuple[str, str]] = []

    def service(action: str, unit: str) -> bool:
        calls.append((action, unit))
        return True

    saved = hosttune.tune(root, state, isolate=[2, 3], service=service)
    gov = root / "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor"
    assert gov.read_text().strip() == "performance"
    assert (root / "sys/devices/system/cpu/cpufreq/boost").read_text().strip() == "0"
    assert {irq: (root / f"proc/irq/{irq}/smp_affinity_list").read_text().strip() for irq in ("24", "25", "26")} == {
        "24": "0,1", "25": "0,1", "26": "0,1"}
    assert calls == [("stop", "irqbalance")] and saved["refused"] == []
    on_disk = json.loads(state.read_text())
    assert on_disk["governor"] == {str(c): "powersave" for c in range(4)} and on_disk["boost"] == "1"
    assert on_disk["irq_affinity"] == {"24": "0-3", "25": "2", "26": "0"}
    with pytest.raises(UserError, match="already tuned"):
        hosttune.tune(root, state, service=service)
    done = hosttune.reset(state, service=service)
    assert gov.read_text().strip() == "powersave"
    assert (root / "sys/devices/system/cpu/cpufreq/boost").read_text().strip() == "1"
    assert (root / "proc/irq/25/smp_affinity_list").read_text().strip() == "2"
    assert calls[-1] == ("start", "irqbalance") and done["refused"] == [] and not state.exists()
    with pytest.raises(UserError, match="nothing to reset"):
        hosttune.reset(state, service=service)


def test_what_the_kernel_refuses_is_listed_and_the_rest_done(tmp_path: Path) -> None:
    root = write(tmp_path / "host", UNTUNED)
    stuck = root / "proc/irq/24/smp_affinity_list"
    stuck.unlink()
    stuck.write_text("0-3\n")
    stuck.chmod(0o444)
    (root / "proc/irq/27").mkdir()
    (root / "proc/irq/27/smp_affinity_list").mkdir()  # not writable as a file: the kernel's "no" stand-in
    saved = hosttune.tune(root, tmp_path / "state.json", isolate=[1, 2, 3], service=lambda a, u: False)
    assert any("irqbalance stopped" == r for r in saved["refused"])
    assert any("proc/irq/27/smp_affinity_list" in r for r in saved["refused"])
    assert "cpu0 governor -> performance" in saved["changed"]


def test_tune_and_reset_refuse_without_root(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["host", "tune"]) == 2
    assert "iobench host tune changes the host's CPU frequency and interrupt settings: run it as root." in \
        capsys.readouterr().err
    assert main(["host", "reset"]) == 2


def test_a_dry_run_on_this_machine_changes_nothing(capsys) -> None:
    if not Path("/proc/irq").is_dir() or hosttune.STATE.exists():
        pytest.skip("no /proc/irq here, or this host is already tuned")
    before = {p: p.read_text() for p in Path("/proc/irq").glob("*/smp_affinity_list")}
    assert main(["host", "tune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(("would change:", "nothing to change"))
    assert {p: p.read_text() for p in before} == before and not hosttune.STATE.exists()
