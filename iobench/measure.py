"""Measurement windows: snapshot counters, run traffic (or sit idle), snapshot again.

A row's figures are deltas between the two edge snapshots of its window. Inside
the window the same counters are also read once per `timeline_interval_s` for
timeline.csv (iobench.timeline, which says what that costs the guest: nothing
under TCG, at most one exit per vCPU per sample under KVM). Every number in a row
is a delta of a counter that was read, except the `*_model` columns, which say
so in `copy_model_basis`.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iobench.backends import Backend
from iobench.counters import kvm, proc, tcg
from iobench.scenario import Workload
from iobench.schema import KVM_KINDS, KVM_STATS, LATENCY_POINTS, PACED_COLUMNS, TRAP_KINDS, VM_CPU_KINDS, Row
from iobench.traffic import TrafficResult
from iobench.vm import VM

# Tap counters are named from the host kernel: data going into the guest leaves
# through the tap (tx), data from the guest arrives on it (rx).
TAP_DATA_COUNTERS = {"rx": (("tx_bytes",), ("tx_packets",)), "tx": (("rx_bytes",), ("rx_packets",)),
                     "rr": (("tx_bytes", "rx_bytes"), ("tx_packets", "rx_packets"))}  # rr: requests and responses
# The idle window has no data direction: its bytes are the tap's both ways.
TAP_BYTES_BOTH = ("tx_bytes", "rx_bytes")
# The native peer's veth is the guest's stand-in: data for it arrives (rx).
PEER_DATA_COUNTERS = {"rx": (("rx_bytes",), ("rx_packets",)), "tx": (("tx_bytes",), ("tx_packets",)),
                      "rr": (("tx_bytes", "rx_bytes"), ("tx_packets", "rx_packets"))}


@dataclass(frozen=True)
class CellId:
    backend: str
    direction: str
    repeat: int
    workload: Workload
    offloads: bool
    vcpus: int

    @property
    def name(self) -> str:
        return f"{self.backend}/r{self.repeat}-{self.workload.label}-{self.direction}"

    @property
    def key(self) -> tuple[str, str, int, str]:
        """How a cell outcome names its cell (checkpoint.Progress.done)."""
        return (self.backend, self.direction, self.repeat, self.workload.label)


@dataclass(frozen=True)
class Snapshot:
    monotonic: float
    link: dict[str, int]
    io: dict[str, int]
    threads: list[proc.ThreadCPU]
    kvm: dict[str, int | None] | None
    trace_offset: int | None  # size of QEMU's -D log; None: the file is missing

    def as_dict(self) -> dict[str, Any]:
        return {"monotonic": self.monotonic, "link": self.link, "io": self.io,
                "threads": [t.__dict__ for t in self.threads], "kvm": self.kvm,
                "trace_offset": self.trace_offset}


@dataclass(frozen=True)
class IdleWindow:
    """Exits and interrupts of the same VM with no traffic, over `seconds`."""

    seconds: float
    exits: int
    irq_injections: int | None  # None: this kernel reports no irq_injections stat


def snapshot(pid: int, link_stats: Callable[[], dict[str, int]], vm: VM | None = None,
             accel: str = "tcg") -> Snapshot:
    """Read every counter once. Raises VMLaunchFailure if QEMU is gone."""
    kvm_stats = None
    trace_offset: int | None = 0
    if vm is not None:
        vm.check_alive()
        if accel == "kvm":
            kvm_stats = kvm.sum_vcpu_stats(vm.command("query-stats", target="vcpu"))
        trace_offset = tcg.log_size(vm.trace_log)
    return Snapshot(time.monotonic(), link_stats(), proc.read_io(pid), proc.read_threads(pid), kvm_stats, trace_offset)


def set_trace(vm: VM, enable: bool) -> None:
    for event in tcg.EVENTS:
        vm.command("trace-event-set-state", name=event, enable=enable)


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped children (the iperf3 client, once it exited)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_delta(before: list[proc.ThreadCPU], after: list[proc.ThreadCPU]) -> dict[str, float]:
    """CPU seconds per thread kind over the window, matched by thread id."""
    start = {t.tid: t.cpu_s for t in before}
    out = dict.fromkeys(VM_CPU_KINDS, 0.0)
    for t in after:
        out[t.kind] = out.get(t.kind, 0.0) + t.cpu_s - start.get(t.tid, 0.0)
    return {k: round(v, 3) for k, v in out.items()}


def idle_window(before: Snapshot, after: Snapshot, traps: tcg.TrapCounts | None) -> IdleWindow:
    """The idle window's exits and interrupts (a stat the kernel lacks stays None)."""
    exits = exit_counts(before, after, traps)
    assert exits["exits"] is not None  # kvm.sum_vcpu_stats and tcg.parse always give it
    return IdleWindow(round(after.monotonic - before.monotonic, 3), exits["exits"], exits["irq_injections"])


def exit_counts(before: Snapshot, after: Snapshot, traps: tcg.TrapCounts | None) -> dict[str, int | None]:
    """Exit columns of a VM window: KVM stats deltas, or TCG trap equivalents."""
    if before.kvm is not None and after.kvm is not None:
        d: dict[str, int | None] = dict(kvm.delta(before.kvm, after.kvm))
        return d | dict.fromkeys(TRAP_KINDS, None)
    assert traps is not None
    d = dict.fromkeys(KVM_STATS, None)
    return d | {"exits": traps.total, "irq_injections": traps.irq_deliveries, "traps_nic": traps.nic,
                "traps_apic": traps.apic, "traps_other": traps.other,
                "virtio_kicks_handled": traps.virtio_kicks_handled}


_NO_KVM_KINDS: dict[str, Any] = dict.fromkeys(KVM_KINDS, None)
TCG_NA = ("KVM exit kinds are empty under TCG: exits are trap equivalents (device MMIO/PIO dispatches + "
          "virtio kicks), irq_injections are LAPIC deliveries")
KVM_NA = "traps_* are TCG-only"


def vm_row(*, run_id: str, cell: CellId, backend: Backend, accel: str, before: Snapshot, after: Snapshot,
           traffic: TrafficResult, traps: tcg.TrapCounts | None, idle: IdleWindow | None,
           client_cpu_s: float, cpu_hz: float | None, kcopies: dict[str, int] | None = None,
           kcopy_na: str = "copy trace off") -> Row:
    """A VM cell's row from two snapshots, iperf3's result, the trap counts (TCG) and the idle window."""
    exits = exit_counts(before, after, traps)
    assert exits["exits"] is not None  # kvm.sum_vcpu_stats and tcg.parse always give it
    rchar = after.io["rchar"] - before.io["rchar"]
    wchar = after.io["wchar"] - before.io["wchar"]
    trace_bytes, trace_na = _trace_bytes(before, after, accel)
    model = backend.copy_model.get(cell.direction)  # none for rr: its bytes go both ways
    cpu = cpu_delta(before.threads, after.threads)
    vhost_na = ""
    if backend.vhost and not any(t.kind == "vhost" for t in after.threads):
        vhost_na = f"; cpu_s_vhost: no vhost-{after_pid(after)} worker thread was found, its CPU was not read"
    missing = [k for k, v in exits.items() if v is None and k in KVM_KINDS] if accel == "kvm" else []
    return Row(
        **_window(run_id, cell, accel, "kvm-stats" if accel == "kvm" else "tcg-traps", before, after, traffic,
                  TAP_DATA_COUNTERS[cell.direction]),
        exits=exits["exits"],
        **_kinds(exits),
        traps_nic=exits["traps_nic"], traps_apic=exits["traps_apic"], traps_other=exits["traps_other"],
        virtio_kicks_handled=exits["virtio_kicks_handled"],
        idle_s=idle.seconds if idle else None, idle_exits=idle.exits if idle else None,
        idle_irq_injections=idle.irq_injections if idle else None,
        copy_process="qemu", rchar=rchar, wchar=wchar, trace_log_bytes=trace_bytes,
        syscall_copy_bytes=rchar + wchar - trace_bytes if trace_bytes is not None else None,
        copies_per_packet_model=model.copies if model else None,
        syscall_copies_per_packet_model=model.syscall_copies if model else None,
        copy_model_basis=f"model: {model.where}" if model else
        "model: per direction only; a request/response window carries both (see the rx and tx rows)",
        cpu_s_vcpu=cpu["vcpu"], cpu_s_main=cpu["main"], cpu_s_iothread=cpu["iothread"],
        cpu_s_other=cpu["other"], cpu_s_vhost=None if vhost_na else cpu["vhost"],
        cpu_s_iperf3_client=round(client_cpu_s, 3), cpu_s_iperf3_server=None, cpu_hz=cpu_hz,
        **_kcopy_columns(kcopies),
        na_reason=(TCG_NA if accel == "tcg" else KVM_NA) + "; iperf3 server CPU is inside the guest"
        + ("" if kcopies else f"; kcopy_*: {kcopy_na}") + trace_na + vhost_na
        + (f"; {', '.join(missing)}: this kernel's KVM reports no such stat" if missing else ""),
    )


def after_pid(snap: Snapshot) -> str:
    """QEMU's pid as its main thread names it (the vhost worker is vhost-<pid>)."""
    return next((str(t.tid) for t in snap.threads if t.kind == "main"), "<qemu pid>")


def _trace_bytes(before: Snapshot, after: Snapshot, accel: str) -> tuple[int | None, str]:
    """Bytes QEMU wrote to its own -D trace log in the window (they are in wchar, and are not
    packet copies), and why they are unknown when they are. Under KVM no trace event is on:
    a -D file QEMU never created had nothing written to it. Under TCG the trap counts are
    written there: a missing file is a lost measurement."""
    if before.trace_offset is not None and after.trace_offset is not None:
        return after.trace_offset - before.trace_offset, ""
    if accel == "kvm":
        return 0, ""
    return None, "; syscall_copy_bytes: QEMU's trace log was missing, its bytes could not be taken out of wchar"


def _kcopy_columns(kcopies: dict[str, int] | None) -> dict[str, Any]:
    return {f"kcopy_bytes_{k}": (kcopies[k] if kcopies else None) for k in ("qemu", "vhost", "iperf3", "other")}


def _kinds(exits: dict[str, int | None]) -> dict[str, Any]:
    return {k: exits[k] for k in KVM_KINDS}


def native_row(*, run_id: str, cell: CellId, before: Snapshot, after: Snapshot, traffic: TrafficResult,
               client_cpu_s: float, cpu_hz: float | None) -> Row:
    """The ceiling: the same iperf3 between two namespaces over veth, no VM in the path."""
    server_cpu = sum(t.cpu_s for t in after.threads) - sum(t.cpu_s for t in before.threads)
    return Row(
        **_window(run_id, cell, "none", "none", before, after, traffic, PEER_DATA_COUNTERS[cell.direction]),
        exits=0, **_NO_KVM_KINDS,
        traps_nic=None, traps_apic=None, traps_other=None, virtio_kicks_handled=None,
        idle_s=None, idle_exits=None, idle_irq_injections=None,
        copy_process="none", rchar=None, wchar=None, trace_log_bytes=None, syscall_copy_bytes=None,
        copies_per_packet_model=0, syscall_copies_per_packet_model=0,
        copy_model_basis="model: no VM, so no copy between a guest buffer and the host stack "
                         "(the socket copies of both iperf3 ends exist in every row)",
        cpu_s_vcpu=None, cpu_s_main=None, cpu_s_iothread=None, cpu_s_other=None, cpu_s_vhost=None,
        cpu_s_iperf3_client=round(client_cpu_s, 3), cpu_s_iperf3_server=round(server_cpu, 3), cpu_hz=cpu_hz,
        **_kcopy_columns(None),
        na_reason="native: no VM, 0 exits by construction; no QEMU, so no QEMU copies or threads",
    )


def _window(run_id: str, cell: CellId, accel: str, exit_source: str, before: Snapshot, after: Snapshot,
            traffic: TrafficResult, data_keys: tuple[tuple[str, ...], tuple[str, ...]]) -> dict[str, Any]:
    """The columns every row shares: the cell's identity, the window, iperf3's result and the
    data-direction link counters."""
    w = cell.workload
    bytes_key, frames_key = data_keys
    return {"run_id": run_id, "backend": cell.backend, "direction": cell.direction, "repeat": cell.repeat,
            "workload": w.label, "protocol": w.protocol, "streams": w.streams, "message_bytes": w.message_bytes,
            "offloads": cell.offloads, "vcpus": cell.vcpus, "accel": accel, "exit_source": exit_source,
            "duration_s": round(after.monotonic - before.monotonic, 3),
            "throughput_bps": traffic.bits_per_second, "iperf3_bytes": traffic.bytes_received,
            "retransmits": traffic.retransmits,
            "bytes": sum(after.link[k] - before.link[k] for k in bytes_key),
            "frames": sum(after.link[k] - before.link[k] for k in frames_key),
            "transactions": traffic.transactions, "transactions_per_s": traffic.transactions_per_s,
            **{f"latency_{p}_us": (traffic.latency_us or {}).get(p) for p in LATENCY_POINTS},
            **{k: (traffic.paced or {}).get(k) for k in PACED_COLUMNS}}
