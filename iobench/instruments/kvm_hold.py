"""One idle KVM VM with one vCPU, held open for the whole run inside the lab's L1 (never run).

Why: Linux 6.1's KVM turns hardware virtualization off on every CPU when its last VM goes away and on
again for the next (IPIs to every CPU), and flips static keys as VMs and local APICs come and go
(`preempt_notifier_key` per VM, `apic_sw_disabled` per vCPU's APIC until the guest enables it): live
kernel text patching at every nested guest's boot and exit. In L1, under multi-threaded TCG, the lab's
stall diagnoses caught vCPUs livelocked in exactly such patching (`asm_exc_int3` while another CPU
waited in `smp_call_function_many_cond` under KVM's `on_each_cpu_cond_mask`, as an L2 QEMU exited;
docs/lab.md). With one VM held, KVM's usage count never returns to zero and those keys never return to
zero either (the held vCPU's APIC stays software-disabled), so an L2 boot or exit no longer patches
them. What it costs: a VM and a vCPU that never run (a few pages), nothing per window.

Only in the lab (IOBENCH_ENVIRONMENT=lab) under KVM: on a real host nothing is patched under emulation.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

from iobench import labwatch
from iobench.instruments.base import Instrument, RunScope

KVM_CREATE_VM = 0xAE01  # _IO(KVMIO, 0x01), linux/kvm.h
KVM_CREATE_IRQCHIP = 0xAE60  # _IO(KVMIO, 0x60): an in-kernel LAPIC for the vCPU (apic_sw_disabled)
KVM_CREATE_VCPU = 0xAE41  # _IO(KVMIO, 0x41)


def hold(device: str = "/dev/kvm") -> list[int]:
    """Open `device`, create a VM with an in-kernel irqchip and one vCPU; returns the open descriptors
    (the device's, the VM's, the vCPU's), which keep them alive until closed."""
    fds = [os.open(device, os.O_RDWR | os.O_CLOEXEC)]
    try:
        fds.append(fcntl.ioctl(fds[0], KVM_CREATE_VM, 0))
        fcntl.ioctl(fds[1], KVM_CREATE_IRQCHIP, 0)
        fds.append(fcntl.ioctl(fds[1], KVM_CREATE_VCPU, 0))
    except OSError:
        release(fds)
        raise
    return fds


def release(fds: list[int]) -> None:
    for fd in reversed(fds):
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()


class KvmHold(Instrument):
    name = "kvm-hold"

    def __init__(self, run: RunScope) -> None:
        self.fds: list[int] = []
        self.state = ""
        try:
            self.fds = hold()
            self.state = "held: one idle VM with one vCPU (in-kernel LAPIC) open for the run, never run"
        except OSError as exc:
            self.state = f"not held: {exc.strerror or exc} (KVM's static keys flip at each guest's boot and exit)"
            run.log(f"kvm hold: {self.state}")

    def describe(self) -> dict[str, Any]:
        return {"kvm_hold": self.state}

    def close(self) -> None:
        release(self.fds)


def wanted(run: RunScope) -> bool:
    return run.accel == "kvm" and labwatch.in_lab()
