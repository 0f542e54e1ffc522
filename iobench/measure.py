"""A cell's identity and its row, assembled from what the window's instruments read.

The instruments (iobench.instruments) read the counters at the window's edges and
every `timeline_interval_s` inside it; every number in a row is a delta of a
counter that was read, except the `*_model` columns, which say so in
`copy_model_basis`. This module knows no counter: it puts the cell's identity,
the traffic tool's result, the instruments' columns and the idle window of the
same VM into one `schema.Row`.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

from iobench import topologies
from iobench.backends import Backend
from iobench.scenario import Workload
from iobench.schema import KVM_KINDS, LATENCY_POINTS, PACED_COLUMNS, Row
from iobench.traffic import TrafficResult


@dataclass(frozen=True)
class CellId:
    backend: str
    direction: str
    repeat: int
    workload: Workload
    offloads: bool
    vcpus: int
    topology: str = "direct"

    @property
    def where(self) -> str:
        """The backend, and the topology when it is not `direct` ("vhost@bridge"): names of raw files."""
        return topologies.label(self.backend, self.topology)

    @property
    def name(self) -> str:
        return f"{self.where}/r{self.repeat}-{self.workload.label}-{self.direction}"

    @property
    def key(self) -> tuple[str, str, int, str, str]:
        """How a cell outcome names its cell (checkpoint.Progress.done)."""
        return (self.backend, self.direction, self.repeat, self.workload.label, self.topology)


@dataclass(frozen=True)
class IdleWindow:
    """Exits and interrupts of the same VM with no traffic, over `seconds`."""

    seconds: float
    exits: int
    irq_injections: int | None  # None: this kernel reports no irq_injections stat
    pmd_cpu_s: float | None = None  # the poll-mode switch's CPU (vhost-user): it spins with nothing to do


def idle_window(seconds: float, columns: dict[str, Any]) -> IdleWindow:
    """The idle window's exits, interrupts and switch CPU from its instruments' columns (a stat the kernel
    lacks stays None)."""
    return IdleWindow(seconds, columns["exits"], columns.get("irq_injections"), columns.get("cpu_s_pmd"))


_NO_KVM_KINDS: dict[str, Any] = dict.fromkeys(KVM_KINDS, None)


def vm_row(*, run_id: str, cell: CellId, backend: Backend, accel: str, traffic: TrafficResult,
           measured: dict[str, Any], na: list[str], duration_s: float, idle: IdleWindow | None,
           cpu_hz: float | None) -> Row:
    """A VM cell's row: the cell's identity and iperf3's (or sockperf's) result, what the window's
    instruments read (`measured`: columns by name, `na`: why some are empty), the idle window of the
    same VM, and the backend's copy model."""
    model = backend.copy_model.get(cell.direction)  # none for rr: its bytes go both ways
    columns = {
        **_window(run_id, cell, accel, "kvm-stats" if accel == "kvm" else "tcg-traps", duration_s, traffic),
        **measured,
        "idle_s": idle.seconds if idle else None, "idle_exits": idle.exits if idle else None,
        "idle_irq_injections": idle.irq_injections if idle else None,
        "idle_cpu_s_pmd": idle.pmd_cpu_s if idle else None,
        "copies_per_packet_model": model.copies if model else None,
        "syscall_copies_per_packet_model": model.syscall_copies if model else None,
        "copy_model_basis": f"model: {model.where}" if model else
        "model: per direction only; a request/response window carries both (see the rx and tx rows)",
        "cpu_hz": cpu_hz,
    }
    return _row(columns, na)


def _row(columns: dict[str, Any], na: list[str]) -> Row:
    """A Row from columns by name: a column no instrument read is empty, and the row says so."""
    unread = [f.name for f in fields(Row) if f.name not in columns and f.name != "na_reason"
              and f.default is MISSING]
    if unread:
        na = [*na, f"{', '.join(unread)}: no instrument read it"]
    known = {f.name for f in fields(Row)}
    values: dict[str, Any] = {k: v for k, v in columns.items() if k in known} | dict.fromkeys(unread)
    return Row(**values, na_reason="; ".join(na))


def native_row(*, run_id: str, cell: CellId, traffic: TrafficResult, measured: dict[str, Any],
               duration_s: float, cpu_hz: float | None) -> Row:
    """The ceiling: the same iperf3 between two namespaces over veth, no VM in the path."""
    columns = {
        **_window(run_id, cell, "none", "none", duration_s, traffic), **measured,
        "exits": 0, **_NO_KVM_KINDS,
        "traps_nic": None, "traps_apic": None, "traps_other": None, "virtio_kicks_handled": None,
        "idle_s": None, "idle_exits": None, "idle_irq_injections": None,
        "copies_per_packet_model": 0, "syscall_copies_per_packet_model": 0,
        "copy_model_basis": "model: no VM, so no copy between a guest buffer and the host stack "
                            "(the socket copies of both iperf3 ends exist in every row)",
        "cpu_hz": cpu_hz, **{f"kcopy_bytes_{k}": None for k in ("qemu", "vhost", "iperf3", "other")},
    }
    return _row(columns, ["native: no VM, 0 exits by construction; no QEMU, so no QEMU copies or threads"])


def _window(run_id: str, cell: CellId, accel: str, exit_source: str, duration_s: float,
            traffic: TrafficResult) -> dict[str, Any]:
    """The columns every row shares: the cell's identity, the window and iperf3's result."""
    w = cell.workload
    return {"run_id": run_id, "backend": cell.backend, "direction": cell.direction, "repeat": cell.repeat,
            "workload": w.label, "protocol": w.protocol, "streams": w.streams, "message_bytes": w.message_bytes,
            "offloads": cell.offloads, "vcpus": cell.vcpus, "topology": cell.topology, "accel": accel, "exit_source": exit_source,
            "duration_s": duration_s,
            "throughput_bps": traffic.bits_per_second, "iperf3_bytes": traffic.bytes_received,
            "retransmits": traffic.retransmits,
            "transactions": traffic.transactions, "transactions_per_s": traffic.transactions_per_s,
            **{f"latency_{p}_us": (traffic.latency_us or {}).get(p) for p in LATENCY_POINTS},
            **{k: (traffic.paced or {}).get(k) for k in PACED_COLUMNS}}
