"""One measurement window: snapshot counters, run traffic, snapshot again, make a row.

Counters are read only at the edges of the window (never polled during it), so
reading them costs the guest nothing while traffic flows. Every number in the
row is a delta of a counter that was read, except the `*_model` columns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from iobench import topology
from iobench.backends import Backend
from iobench.counters import kvm, proc, tcg
from iobench.results import FRAME_AT_MTU, Row
from iobench.traffic import TrafficResult
from iobench.vm import VM

# Tap counters are named from the host kernel: data going into the guest leaves
# through the tap (tx), data from the guest arrives on it (rx).
TAP_DATA_COUNTERS = {"rx": ("tx_bytes", "tx_packets"), "tx": ("rx_bytes", "rx_packets")}


@dataclass(frozen=True)
class Snapshot:
    monotonic: float
    tap: dict[str, int]
    io: dict[str, int]
    threads: list[proc.ThreadCPU]
    kvm: dict[str, int] | None
    trace_offset: int

    def as_dict(self) -> dict[str, Any]:
        return {"monotonic": self.monotonic, "tap": self.tap, "io": self.io,
                "threads": [t.__dict__ for t in self.threads], "kvm": self.kvm,
                "trace_offset": self.trace_offset}


def snapshot(vm: VM, topo: topology.Topology, accel: str) -> Snapshot:
    """Read every counter once. Raises VMLaunchFailure if QEMU is gone."""
    vm.check_alive()
    kvm_stats = kvm.sum_vcpu_stats(vm.command("query-stats", target="vcpu")) if accel == "kvm" else None
    return Snapshot(
        monotonic=time.monotonic(),
        tap=topo.link_stats(),
        io=proc.read_io(vm.pid),
        threads=proc.read_threads(vm.pid),
        kvm=kvm_stats,
        trace_offset=tcg.log_size(vm.trace_log),
    )


def set_trace(vm: VM, enable: bool) -> None:
    for event in tcg.EVENTS:
        vm.command("trace-event-set-state", name=event, enable=enable)


def cpu_delta(before: list[proc.ThreadCPU], after: list[proc.ThreadCPU]) -> dict[str, float]:
    """CPU seconds per thread kind over the window, matched by thread id."""
    start = {t.tid: t.cpu_s for t in before}
    out = dict.fromkeys(("vcpu", "main", "iothread", "other", "vhost"), 0.0)
    for t in after:
        out[t.kind] = out.get(t.kind, 0.0) + t.cpu_s - start.get(t.tid, 0.0)
    return {k: round(v, 3) for k, v in out.items()}


def make_row(*, run_id: str, backend: Backend, direction: str, repeat: int, accel: str,
             before: Snapshot, after: Snapshot, traffic: TrafficResult,
             traps: tcg.TrapCounts | None) -> Row:
    """Turn two snapshots, iperf3's result and (under TCG) the trap counts into a row."""
    bytes_key, frames_key = TAP_DATA_COUNTERS[direction]
    data_bytes = after.tap[bytes_key] - before.tap[bytes_key]
    frames = after.tap[frames_key] - before.tap[frames_key]
    packets = data_bytes / FRAME_AT_MTU
    rchar = after.io["rchar"] - before.io["rchar"]
    wchar = after.io["wchar"] - before.io["wchar"]
    trace_bytes = after.trace_offset - before.trace_offset
    copy_bytes = rchar + wchar - trace_bytes
    model = backend.copy_model[direction]
    cpu = cpu_delta(before.threads, after.threads)
    kvm_delta: dict[str, int | None]
    if before.kvm is not None and after.kvm is not None:
        kvm_delta = dict(kvm.delta(before.kvm, after.kvm))
        exits = int(kvm_delta["exits"] or 0)
        trap_cols: dict[str, int | None] = dict.fromkeys(
            ("traps_nic", "traps_apic", "traps_other", "virtio_kicks_handled"), None)
        na = "traps_* are TCG-only"
        exit_source = "kvm-stats"
    else:
        assert traps is not None
        kvm_delta = dict.fromkeys(kvm.KVM_STATS, None)
        kvm_delta["irq_injections"] = traps.irq_deliveries
        exits = traps.total
        trap_cols = {"traps_nic": traps.nic, "traps_apic": traps.apic, "traps_other": traps.other,
                     "virtio_kicks_handled": traps.virtio_kicks_handled}
        na = ("KVM exit kinds are empty under TCG: exits are trap equivalents (device MMIO/PIO "
              "dispatches + virtio kicks), irq_injections are LAPIC deliveries")
        exit_source = "tcg-traps"
    return Row(
        run_id=run_id, backend=backend.name, direction=direction, repeat=repeat, accel=accel,
        exit_source=exit_source, duration_s=round(after.monotonic - before.monotonic, 3),
        throughput_bps=traffic.bits_per_second, iperf3_bytes=traffic.bytes_received,
        bytes=data_bytes, frames=frames, packets=round(packets, 1),
        exits=exits, exits_per_packet=round(exits / packets, 4) if packets else float("nan"),
        io_exits=kvm_delta["io_exits"], mmio_exits=kvm_delta["mmio_exits"],
        halt_exits=kvm_delta["halt_exits"], irq_exits=kvm_delta["irq_exits"],
        irq_window_exits=kvm_delta["irq_window_exits"], request_irq_exits=kvm_delta["request_irq_exits"],
        signal_exits=kvm_delta["signal_exits"], insn_emulation=kvm_delta["insn_emulation"],
        hypercalls=kvm_delta["hypercalls"], irq_injections=kvm_delta["irq_injections"],
        traps_nic=trap_cols["traps_nic"], traps_apic=trap_cols["traps_apic"],
        traps_other=trap_cols["traps_other"], virtio_kicks_handled=trap_cols["virtio_kicks_handled"],
        rchar=rchar, wchar=wchar, trace_log_bytes=trace_bytes, syscall_copy_bytes=copy_bytes,
        copies_per_packet_measured=round(copy_bytes / data_bytes, 4) if data_bytes else float("nan"),
        copies_per_packet_model=model.copies, syscall_copies_per_packet_model=model.syscall_copies,
        copy_model_basis=f"model: {model.where}",
        cpu_s_vcpu=cpu["vcpu"], cpu_s_main=cpu["main"], cpu_s_iothread=cpu["iothread"],
        cpu_s_other=cpu["other"], cpu_s_vhost=cpu["vhost"],
        na_reason=na,
    )
