"""Faults injected into real runs under TCG: QEMU killed mid-traffic, with and without a retry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iobench.runner import run
from iobench.scenario import Scenario

pytestmark = pytest.mark.slow


def kill_run(monkeypatch: pytest.MonkeyPatch, out: Path, retries: int):
    monkeypatch.setenv("IOBENCH_FAULT", "kill-qemu:e1000:rx")
    scn = Scenario(backends=("e1000", "virtio"), directions=("rx",), accel="tcg", duration_s=3, omit_s=0,
                   repeats=1, retries=retries)
    return run(scn, out, log=lambda m: None)


def test_qemu_killed_mid_traffic_fails_the_cell_and_the_run_goes_on(guest_image, tmp_path, monkeypatch) -> None:
    report = kill_run(monkeypatch, tmp_path, retries=0)
    meta = json.loads((report.directory / "run.json").read_text())
    cells = {(c["backend"], c["direction"]): c for c in meta["cells"]}
    assert cells[("e1000", "rx")]["status"] == "failed"
    assert "qemu exited (signal 9)" in cells[("e1000", "rx")]["reason"]
    assert "serial log tail" in cells[("e1000", "rx")]["reason"]
    assert cells[("virtio", "rx")]["status"] == "ok"  # the next backend still ran
    assert meta["status"] == "partial"
    assert [r.backend for r in report.rows] == ["virtio"]  # no number for the failed cell
    assert (report.directory / "raw/e1000/r1/serial.log").exists()


def test_a_killed_vm_is_booted_again_and_the_attempt_recorded(guest_image, tmp_path, monkeypatch) -> None:
    report = kill_run(monkeypatch, tmp_path, retries=1)
    meta = json.loads((report.directory / "run.json").read_text())
    assert meta["status"] == "ok"
    (lost,) = meta["failed_attempts"]
    assert lost["backend"] == "e1000" and lost["attempt"] == 1 and "signal 9" in lost["reason"]
    assert {r.backend for r in report.rows} == {"e1000", "virtio"}
    assert (report.directory / "raw/e1000/r1-attempt2/serial.log").exists()
