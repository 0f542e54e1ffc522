"""Run the exit programs on /dev/kvm and turn them into rows.

Exit counts come from the vCPU's own binary stats (KVM_GET_STATS_FD), read before
and after; the run loop counts only what reached userspace. Time is the host's
monotonic clock around the whole run loop (so for the eventfd kinds it covers
the guest's loop with all its in-kernel exits). cycles are ns times the nominal
clock from /proc/cpuinfo, labelled as such.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from iobench.exitbench import kvmapi
from iobench.exitbench.programs import CODE_GPA, DONE_PORT, MMIO_GPA, PIO_PORT, PROGRAMS, assemble

STATS = ("exits", "io_exits", "mmio_exits", "halt_exits", "insn_emulation")


@dataclass(frozen=True)
class ExitRow:
    kind: str
    repeat: int
    iterations: int
    exits: int  # from KVM stats, the whole run (done marker included)
    io_exits: int
    mmio_exits: int
    halt_exits: int
    insn_emulation: int
    exits_per_op: float
    userspace_exits: int  # exits of the measured operation seen by the run loop
    eventfd_count: int | None
    elapsed_ns: int
    ns_per_op: float
    ns_per_exit: float
    cycles_per_exit: float | None


class GuestFault(Exception):
    """The guest stopped for a reason the program does not produce (a bug or a hostile host)."""


def run_once(kvm_fd: int, kind: str, iterations: int, repeat: int, cpu_hz: float | None) -> ExitRow:
    prog = PROGRAMS[kind]
    vm = kvmapi.VM(kvm_fd)
    vcpu = None
    stats = None
    try:
        vm.load(CODE_GPA, assemble(prog.body, iterations))
        efd = None
        if prog.eventfd == "pio":
            efd = vm.ioeventfd(PIO_PORT, 1, pio=True)
        elif prog.eventfd == "mmio":
            efd = vm.ioeventfd(MMIO_GPA, 1, pio=False)
        vcpu = kvmapi.VCPU(vm, 0)
        vcpu.set_real_mode(CODE_GPA, data_segment_base=MMIO_GPA)
        stats = vcpu.stats()
        before = stats.read(STATS)
        seen = 0
        start = time.monotonic_ns()
        while True:
            ex = vcpu.run()
            if ex.reason == kvmapi.KVM_EXIT_IO and ex.port == DONE_PORT:
                break
            if ((ex.reason == kvmapi.KVM_EXIT_IO and ex.port == PIO_PORT)
                    or (ex.reason == kvmapi.KVM_EXIT_MMIO and ex.phys_addr == MMIO_GPA)
                    or ex.reason == kvmapi.KVM_EXIT_HLT):
                seen += 1
                continue
            raise GuestFault(f"{kind}: unexpected exit {kvmapi.EXIT_NAMES.get(ex.reason, ex.reason)}")
        elapsed = time.monotonic_ns() - start
        after = stats.read(STATS)
    finally:
        if stats is not None:
            stats.close()
        if vcpu is not None:
            vcpu.close()
        count = kvmapi.read_eventfd(efd) if prog.eventfd and efd is not None else None
        vm.close()
    d = {k: after[k] - before[k] for k in STATS}
    exits = d["exits"]
    return ExitRow(
        kind=kind, repeat=repeat, iterations=iterations, exits=exits, io_exits=d["io_exits"],
        mmio_exits=d["mmio_exits"], halt_exits=d["halt_exits"], insn_emulation=d["insn_emulation"],
        exits_per_op=round(exits / iterations, 4), userspace_exits=seen, eventfd_count=count,
        elapsed_ns=elapsed, ns_per_op=round(elapsed / iterations, 1),
        ns_per_exit=round(elapsed / exits, 1) if exits else float("nan"),
        cycles_per_exit=round(elapsed / exits * cpu_hz / 1e9, 0) if exits and cpu_hz else None,
    )


def run(kinds: list[str], iterations: int, repeats: int, cpu_hz: float | None) -> list[ExitRow]:
    """Every kind once per round, rounds repeated (interleaved, like the main runner)."""
    fd = kvmapi.preflight()
    try:
        return [run_once(fd, k, iterations, r, cpu_hz) for r in range(1, repeats + 1) for k in kinds]
    finally:
        import os

        os.close(fd)


def medians(rows: list[ExitRow]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for kind in dict.fromkeys(r.kind for r in rows):
        rs = [r for r in rows if r.kind == kind]
        out[kind] = {
            "exits_per_op": statistics.median(r.exits_per_op for r in rs),
            "userspace_exits": statistics.median(r.userspace_exits for r in rs),
            "ns_per_op": statistics.median(r.ns_per_op for r in rs),
            "ns_per_op_min": min(r.ns_per_op for r in rs), "ns_per_op_max": max(r.ns_per_op for r in rs),
            "ns_per_exit": statistics.median(r.ns_per_exit for r in rs),
        }
    return out
