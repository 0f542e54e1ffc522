"""The lab's KVM hold: one idle VM with one vCPU open for the run inside L1, so that KVM's usage count
and static keys do not return to zero between nested guests (iobench/instruments/kvm_hold.py).
Run against this host's /dev/kvm: creating a VM and a vCPU needs no guest to run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iobench import scenario
from iobench.instruments import REGISTRY, RunScope, kvm_hold


def _scope(accel: str) -> RunScope:
    return RunScope(scenario.Scenario(), accel, "r", None, lambda m: None)  # type: ignore[arg-type]


def test_it_holds_a_vm_and_a_vcpu_until_closed_and_runs_only_in_the_lab_under_kvm(monkeypatch) -> None:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no usable /dev/kvm here to create a VM on")
    entry = next(e for e in REGISTRY if e.name == "kvm-hold")
    monkeypatch.delenv("IOBENCH_ENVIRONMENT", raising=False)
    assert not entry.runs(_scope("kvm"))  # a real host: nothing patched under emulation, nothing held
    monkeypatch.setenv("IOBENCH_ENVIRONMENT", "lab")
    assert entry.runs(_scope("kvm")) and not entry.runs(_scope("tcg"))
    held = entry.make(_scope("kvm"))
    assert isinstance(held, kvm_hold.KvmHold)
    links = [os.readlink(f"/proc/self/fd/{fd}") for fd in held.fds]
    assert links[0] == "/dev/kvm" and links[1] == "anon_inode:kvm-vm" and links[2] == "anon_inode:kvm-vcpu:0"
    assert held.describe()["kvm_hold"].startswith("held: one idle VM with one vCPU")
    fds = list(held.fds)
    held.close()
    assert held.fds == [] and not any(Path(f"/proc/self/fd/{fd}").exists() and
                                      "kvm" in os.readlink(f"/proc/self/fd/{fd}") for fd in fds)


def test_without_kvm_it_says_why_and_holds_nothing(monkeypatch, tmp_path: Path) -> None:
    said: list[str] = []
    real = kvm_hold.hold
    monkeypatch.setattr(kvm_hold, "hold", lambda device="/dev/kvm": real(str(tmp_path / "kvm")))
    held = kvm_hold.KvmHold(RunScope(scenario.Scenario(), "kvm", "r", None, said.append))  # type: ignore[arg-type]
    assert held.fds == [] and held.describe()["kvm_hold"].startswith("not held: No such file or directory")
    assert said and "static keys flip" in said[0]
    held.close()
