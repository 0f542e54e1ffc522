"""A QEMU whose monitor stops answering (seen in the lab: query-stats waiting on a vCPU that never left
KVM_RUN): after one QMP timeout it is asked nothing more, and its shutdown kills it without a `quit`
that would wait again. A real process stands in for QEMU; the QMP client is a stand-in that never
answers, as the stuck monitor did."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from iobench import vm
from iobench.errors import CellFailed


class SilentMonitor:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def cmd(self, name: str, **args: Any) -> Any:
        self.asked.append(name)
        raise TimeoutError

    def cmd_obj(self, obj: dict[str, Any]) -> Any:
        self.asked.append(obj["execute"])
        raise TimeoutError

    def settimeout(self, timeout: float) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_wedged_qemu_is_asked_nothing_more_and_killed_without_a_quit(tmp_path: Path) -> None:
    cfg = vm.VMConfig(name="wedged", accel="tcg", image=mock.Mock(), nic_args=(), guest_cidr="198.18.0.2/24")
    machine = vm.VM(cfg, logs_dest=tmp_path / "logs")
    machine.proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    monitor = SilentMonitor()
    machine.qmp = monitor  # type: ignore[assignment]
    with pytest.raises(CellFailed, match="QMP command query-stats got no answer in 30 s: QEMU's monitor is stuck"):
        machine.command("query-stats", target="vcpu")
    assert machine.wedged and machine.alive()
    with pytest.raises(CellFailed, match="an earlier QMP command got no answer\\): query-status not sent"):
        machine.command("query-status")
    rundir = machine.rundir
    machine.shutdown()
    assert monitor.asked == ["query-stats"]  # neither the second question nor a quit
    assert machine.proc.returncode == -9 and not rundir.exists()


def test_a_process_sigkill_cannot_end_is_described_thread_by_thread() -> None:
    """What the run prints for a QEMU still there after SIGKILL: every thread's tid, name, state and
    kernel stack (root reads it here; elsewhere the reason it could not be read)."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while " S: " not in (said := vm._threads_in_kernel(child.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)  # until it is asleep in the kernel (just started, it may still run)
    finally:
        child.kill()
        child.wait()
    assert said.startswith(f"{child.pid} sleep S: ")
    assert "hrtimer_nanosleep" in said or "(stack:" in said
    assert vm._threads_in_kernel(child.pid) == "(no threads left to read)"
