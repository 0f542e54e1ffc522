"""Faults injected into real runs under TCG: QEMU killed mid-traffic, with and without a retry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iobench import stale, traffic, vm
from iobench.runner import run
from iobench.scenario import Scenario

pytestmark = pytest.mark.slow


def kill_run(monkeypatch: pytest.MonkeyPatch, out: Path, retries: int, also: str = ""):
    monkeypatch.setenv("IOBENCH_FAULT", "kill-qemu:e1000:rx" + also)
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


def test_a_killed_vm_is_booted_again_and_the_attempt_recorded(guest_image, tmp_path, monkeypatch, qemu_pids) -> None:
    """And one that stops (SIGSTOP: alive, its guest and monitor silent) is booted again too: under TCG no
    counter is read over QMP mid-window, so the client's overrun says it first; the instruments' QMP at the
    window's end then times out (3 s here), quietly, and the stopped QEMU is killed without a quit
    (test_vm_wedged.py has the wedged monitor itself)."""
    before = qemu_pids()
    monkeypatch.setattr(vm, "QMP_TIMEOUT_S", 3.0)
    monkeypatch.setattr(traffic, "OVERRUN_SLACK_S", 5.0)  # the stopped guest's client gives up 5 s past its window
    report = kill_run(monkeypatch, tmp_path, retries=1, also=",stop-qemu:virtio:rx")
    meta = json.loads((report.directory / "run.json").read_text())
    assert meta["status"] == "ok"
    killed, stopped = meta["failed_attempts"]
    assert killed["backend"] == "e1000" and killed["attempt"] == 1 and "signal 9" in killed["reason"]
    assert stopped["backend"] == "virtio" and stopped["attempt"] == 1
    assert "did not finish within" in stopped["reason"]  # the window's own failure, not a later instrument's
    assert {r.backend for r in report.rows} == {"e1000", "virtio"}
    assert (report.directory / "raw/e1000/r1-attempt2/serial.log").exists()
    assert (report.directory / "raw/virtio/r1-attempt2/serial.log").exists()
    assert qemu_pids() <= before  # the stopped QEMU too


def test_guest_that_never_becomes_ready_fails_after_one_retry(guest_image, tmp_path) -> None:
    """An impossible kernel argument (an init that does not exist, no panic=): the kernel
    panics and hangs, the guest never prints READY. One retry, then the cells fail with
    the serial tail; nothing keeps booting."""
    scn = Scenario(backends=("e1000",), directions=("rx",), accel="tcg", duration_s=2, omit_s=0, repeats=1,
                   retries=1, boot_timeout_s=15,
                   qemu_args=("-append", "console=ttyS0 rdinit=/no/such/init iobench.addr=198.18.0.2/24"))
    report = run(scn, tmp_path, log=lambda m: None)
    meta = json.loads((report.directory / "run.json").read_text())
    (cell,) = meta["cells"]
    assert cell["status"] == "failed" and "gave up after 2 attempts" in cell["reason"]
    assert "guest not READY" in cell["reason"] and "Kernel panic" in cell["reason"]  # the serial tail says why
    assert [a["attempt"] for a in meta["failed_attempts"]] == [1, 2]
    assert report.rows == [] and meta["status"] == "partial"
    assert (report.directory / "raw/e1000/r1-attempt2/serial.log").exists()
    assert not (report.directory / "raw/e1000/r1-attempt3").exists()


def test_iperf3_failure_is_the_cells_reason_in_iperf3s_words(guest_image, tmp_path, monkeypatch) -> None:
    """The client talks to a port where the guest has no server: a real iperf3 error."""
    monkeypatch.setenv("IOBENCH_FAULT", "iperf3-port:e1000:rx")
    scn = Scenario(backends=("e1000",), directions=("rx", "tx"), accel="tcg", duration_s=2, omit_s=0, repeats=1)
    report = run(scn, tmp_path, log=lambda m: None)
    meta = json.loads((report.directory / "run.json").read_text())
    cells = {c["direction"]: c for c in meta["cells"]}
    assert cells["rx"]["status"] == "failed"
    assert cells["rx"]["reason"].startswith("iperf3: unable to connect to server")
    assert cells["tx"]["status"] == "ok"  # same VM, next cell
    assert [r.direction for r in report.rows] == ["tx"]
    raw = json.loads((report.directory / "raw/e1000/r1-tcp-P1-ldefault-rx.iperf3.json").read_text())
    assert raw["error"].startswith("unable to connect")  # iperf3's own output kept as evidence


def test_disk_full_while_writing_results_keeps_nothing(guest_image, tmp_path, capsys, qemu_pids) -> None:
    """--out on a 32 KiB tmpfs: the raw files fill it mid-run. One sentence, exit 2, an
    empty results root, and the VM, namespace and tap gone."""
    import subprocess

    from pyroute2 import netns as pyroute2_netns

    from iobench.cli import main

    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(small)], check=True)
    before = qemu_pids()
    try:
        code = main(["run", "--accel", "tcg", "--backend", "e1000", "--direction", "rx", "--duration", "2",
                     "--omit", "0", "--repeats", "1", "--retries", "0", "--out", str(small)])
        err = capsys.readouterr().err
        assert code == 2
        assert "No space left on device" in err and "nothing was kept" in err
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert qemu_pids() <= before
    assert not [n for n in pyroute2_netns.listnetns() if n.startswith("iobench-")]
    assert [item for item in stale.find([small]) if item.kind == "vm-dir"] == []  # QEMU's runtime dir too


def test_qemu_dying_under_a_qmp_command_is_a_cell_failure(guest_image) -> None:
    """Counters are read over QMP once a second during traffic, so QEMU can die in the middle
    of a command: that must be the cell's failure ("qemu exited (...)"), not a crash of the run."""
    import os
    import signal
    import threading

    from iobench.errors import CellFailed
    from iobench.vm import VM, VMConfig

    cfg = VMConfig(name="qmp-death", accel="tcg", image=guest_image, nic_args=(), guest_cidr="198.18.0.2/24",
                   cmdline_extra=("iobench.probe=1",))
    def kill(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    with VM(cfg) as vm:
        vm.launch(boot_timeout=60)
        timer = threading.Timer(0.3, kill, (vm.pid,))
        timer.start()
        # (the probe guest also powers itself off soon after READY: whichever comes first, QEMU
        # goes away under a command, and the failure says how it ended)
        with pytest.raises(CellFailed, match=r"qemu exited \((signal 9|status 0)\)"):
            for _ in range(100_000):
                vm.command("query-status")
        timer.join()
