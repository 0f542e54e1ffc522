"""The row schema: every column of rows.csv and timeline.csv, what kind of value it holds,
the metrics derived from them, and which direction of a metric is better.

Why one module: the kinds of exits, traps and CPU threads, and the rule that lower exits per
packet is better, are facts every part needs (counters read them, the runner fills them, the
writer orders them, plots stack them, compare and the gate judge them). Written once here,
imported everywhere; this module imports nothing of iobench. docs/metrics.md says what each
column means and where it is read.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

# The results directory's format (store writes it, results reads it). History:
#   1 - first format (iobench 0.1): one row per backend x direction x repeat.
#   2 - rows gain workload identity, idle windows, per-packet and CPU columns; summary.csv.
#   3 - timeline.csv: counters per time slice of every window (idle and traffic).
#       A format-2 directory is read as format 3 with an empty timeline.
#   4 - rows gain `l1_attempt` (the lab: which L1 boot measured the row; empty elsewhere); a
#       lab run cut short is published with its finished cells (status interrupted/failed).
#       `cycles_per_byte` is renamed `est_cycles_per_byte`: CPU seconds times the clock
#       /proc/cpuinfo showed at the run's start, an estimate and not a cycle counter.
#       exit_reasons.csv: KVM exits by reason with their handling time, per window (where KVM's
#       tracepoints are usable); rows gain `exit_reasons_total` and `exit_reasons_coverage`.
#       exit_sites.csv: the MMIO/PIO/MSR accesses and exits to userspace of the VM's vCPUs by
#       device and register, per window (same condition).
#       Formats 2 and 3 are read with an empty `l1_attempt` and the column renamed.
#   5 - paced rows (iperf3 UDP at a fixed offered rate): `datagrams`, `offered_pps`, `achieved_pps`,
#       `loss_pct`, `jitter_ms` and the per-datagram figures. Older formats are read with them empty.
#   6 - a `topology` column (the host side of the tap: direct, bridge; iobench.topologies) in rows,
#       summary, timeline, exit reasons and sites. Older formats are read with it `direct`, what
#       every earlier run measured.
#   7 - the vhost-user backend's poll-mode switch: `cpu_s_pmd` (its CPU, a CPU kind of its own, with
#       `cpu_us_per_packet_pmd` and in the path's total), `idle_cpu_s_pmd` (the same in the VM's idle
#       window: a poller spins when nothing flows), `pmd_packets`, `pmd_drops`, `pmd_syscall_bytes`
#       (what the switch itself counted and copied through syscalls); timeline slices gain `cpu_s_pmd`.
#       Older formats are read with them empty.
#   8 - Open vSwitch topologies (ovs, ovs-netdev): `cpu_s_ovs` (ovs-vswitchd's threads, a CPU kind of the
#       host side, like softirq time not in the path's total: 0 for a window without OVS), `ovs_hits`,
#       `ovs_misses`, `ovs_lost`, `ovs_masks_hit` (the datapath's flow-cache lookups, dpctl/show -s), and
#       derived `ovs_miss_pct`. Older formats are read with them empty.
FORMAT_VERSION = 8
READABLE_VERSIONS = (2, 3, 4, 5, 6, 7, 8)

# The per-vCPU KVM statistics iobench keeps (QMP query-stats), `exits` first; the rest are its kinds.
KVM_STATS = (
    "exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits", "irq_window_exits",
    "request_irq_exits", "signal_exits", "insn_emulation", "hypercalls", "irq_injections",
)
KVM_KINDS = KVM_STATS[1:]
# Under TCG: trap equivalents from QEMU trace events (counters.tcg).
TRAP_KINDS = ("traps_nic", "traps_apic", "traps_other", "virtio_kicks_handled")
EXIT_KINDS = (*KVM_KINDS, *TRAP_KINDS)
# What each kind means in the I/O path (figure legends and the report say this).
MEANING = {
    "mmio_exits": "MMIO to QEMU", "io_exits": "port I/O to QEMU", "halt_exits": "HLT (idle vCPU)",
    "irq_exits": "host interrupt", "irq_window_exits": "interrupt window",
    "request_irq_exits": "interrupt request", "signal_exits": "signal to the vCPU thread",
    "insn_emulation": "instructions emulated by KVM", "hypercalls": "hypercall",
    "irq_injections": "interrupt injected into the guest",
    "traps_nic": "NIC register access", "traps_apic": "LAPIC access (EOI, timer)",
    "virtio_kicks_handled": "virtio kick", "traps_other": "other device access",
    "vcpu": "vCPU threads", "main": "QEMU main loop", "iothread": "QEMU I/O threads",
    "other": "other QEMU threads", "vhost": "vhost worker", "pmd": "poll-mode switch (testpmd)",
    "ovs": "Open vSwitch (ovs-vswitchd)",
    "iperf3_client": "iperf3 client (host)", "iperf3_server": "iperf3 server",
}
# Host threads whose CPU time a VM row charges to the virtual I/O path, by kind (counters.proc.thread_kind).
VM_CPU_KINDS = ("vcpu", "main", "iothread", "other", "vhost")
# The vhost-user backend's switch (testpmd: its poll core and helpers) is a kind of its own, not QEMU's.
CPU_KINDS = (*VM_CPU_KINDS, "pmd", "ovs", "iperf3_client", "iperf3_server")
# CPU of the host side (a topology's own daemons): per packet beside the path's, not in its total, as the
# host's softirq time is not (a bridge forwards in softirq, OVS's kernel datapath too; its threads upcall).
HOST_SIDE_CPU_KINDS = ("ovs",)

# Which direction of a metric is better: compare and the gate judge by this, and nothing else.
HIGHER_IS_BETTER = {
    "throughput_bps": True,
    "exits_per_packet": False,
    "net_exits_per_packet": False,
    "irq_injections_per_packet": False,
    "copies_per_packet_measured": False,
    "cpu_us_per_packet": False,
    "transactions_per_s": True,
    "latency_p50_us": False,
    "latency_p99_us": False,
    "exits_per_transaction": False,
    "irq_injections_per_transaction": False,
    "cpu_us_per_transaction": False,
    "achieved_pps": True,
    "loss_pct": False,
    "exits_per_datagram": False,
    "irq_injections_per_datagram": False,
    "cpu_us_per_datagram": False,
}
# rr rows: the percentiles of the round-trip time the client reports (latency_<point>_us)
LATENCY_POINTS = ("p50", "p90", "p99", "p999", "max")

MTU = 1500
FRAME_AT_MTU = MTU + 14  # Ethernet header; the unit of every "per packet" figure


@dataclass(frozen=True)
class Row:
    """One measured cell: identity plus counter deltas that were read. None means
    "not available from this source", with the reason in `na_reason`. Figures
    derived from these (per packet, per byte) are added by `derive`."""

    run_id: str
    backend: str
    direction: str
    repeat: int
    workload: str
    protocol: str
    streams: int
    message_bytes: int
    offloads: bool
    vcpus: int
    accel: str
    exit_source: str
    duration_s: float
    throughput_bps: float
    iperf3_bytes: int
    retransmits: int | None
    bytes: int
    frames: int
    exits: int
    io_exits: int | None
    mmio_exits: int | None
    halt_exits: int | None
    irq_exits: int | None
    irq_window_exits: int | None
    request_irq_exits: int | None
    signal_exits: int | None
    insn_emulation: int | None
    hypercalls: int | None
    irq_injections: int | None
    traps_nic: int | None
    traps_apic: int | None
    traps_other: int | None
    virtio_kicks_handled: int | None
    idle_s: float | None
    idle_exits: int | None
    idle_irq_injections: int | None
    copy_process: str
    rchar: int | None
    wchar: int | None
    trace_log_bytes: int | None
    syscall_copy_bytes: int | None
    copies_per_packet_model: int | None
    syscall_copies_per_packet_model: int | None
    copy_model_basis: str
    cpu_s_vcpu: float | None
    cpu_s_main: float | None
    cpu_s_iothread: float | None
    cpu_s_other: float | None
    cpu_s_vhost: float | None
    cpu_s_iperf3_client: float
    cpu_s_iperf3_server: float | None
    cpu_hz: float | None
    kcopy_bytes_qemu: int | None
    kcopy_bytes_vhost: int | None
    kcopy_bytes_iperf3: int | None
    kcopy_bytes_other: int | None
    na_reason: str
    transactions: int | None = None  # rr: request/response round trips the client completed in the window
    transactions_per_s: float | None = None  # rr: the client's rate over its valid duration
    latency_p50_us: float | None = None  # rr: round-trip time percentiles from the client's own samples
    latency_p90_us: float | None = None
    latency_p99_us: float | None = None
    latency_p999_us: float | None = None
    latency_max_us: float | None = None
    l1_attempt: int | None = None  # the lab: which boot of the first-level VM measured this row
    exit_reasons_total: int | None = None  # kvm:kvm_exit events of the VM's vCPU threads (counters.exitreasons)
    datagrams: int | None = None  # paced: datagrams the sender sent in the window (iperf3's sum, nothing omitted)
    offered_pps: float | None = None  # paced: datagrams sent per second
    achieved_pps: float | None = None  # paced: datagrams the receiver got per second (its count minus its losses)
    loss_pct: float | None = None  # paced: the receiver's lost datagrams, % of those it counted
    jitter_ms: float | None = None  # paced: the receiver's interarrival jitter (RFC 3550, iperf3's)
    placement: str | None = None  # the round's placement mode: none, auto, roles (iobench.placement)
    migrations: int | None = None  # CPU migrations of every role's threads over the window (/proc/<tid>/sched)
    migrated_roles: str | None = None  # the roles that migrated in the window, comma-separated ("" none)
    cpu_s_harness: float | None = None  # iobench's own CPU time over the window (instruments.harness)
    exit_reasons_kvm_exits: int | None = None  # KVM's exits over the exit-reason count's own span (its reference)
    topology: str = "direct"  # the host side of the tap (iobench.topologies); rows of older runs read as direct
    host_softirq_s: float | None = None  # softirq time of every host CPU over the window (/proc/stat; host-wide)
    host_net_rx_softirqs: int | None = None  # NET_RX softirqs raised on every host CPU (/proc/softirqs)
    host_net_tx_softirqs: int | None = None  # NET_TX softirqs raised
    softnet_dropped: int | None = None  # frames the host's backlog dropped (/proc/net/softnet_stat)
    softnet_time_squeeze: int | None = None  # times net_rx_action ran out of budget with work left
    port_drops: int | None = None  # rx_dropped + tx_dropped of the host-side ports (a bridge's, a macvtap's lower)
    offloads_off: str | None = None  # host-side interfaces' offloads found off ("port:tso,..."; "" none)
    cpu_s_pmd: float | None = None  # the poll-mode switch's CPU over the window (vhost-user; 0 for a path without one)
    idle_cpu_s_pmd: float | None = None  # the same over the VM's idle window
    pmd_packets: int | None = None  # packets the switch received from and sent to the guest's port (its ethdev stats)
    pmd_drops: int | None = None  # what the switch's ports missed, dropped or could not hand on (both ports)
    pmd_syscall_bytes: int | None = None  # the switch's rchar + wchar: its syscall copies to and from the tap
    cpu_s_ovs: float | None = None  # ovs-vswitchd's CPU over the window (ovs topologies; 0 for a window without OVS)
    ovs_hits: int | None = None  # OVS datapath flow-cache lookups that hit (dpctl/show -s)
    ovs_misses: int | None = None  # lookups that missed: each an upcall to ovs-vswitchd's handler
    ovs_lost: int | None = None  # upcalls lost (the handler's queue was full)
    ovs_masks_hit: int | None = None  # masks (subtables) searched by the lookups (kernel datapath only)




def _per(value: float | None, packets: float, scale: float = 1.0, digits: int = 4) -> float | None:
    if value is None or not packets:
        return None
    return round(value * scale / packets, digits)


def derive(row: Row) -> dict[str, Any]:
    """The tidy row of rows.csv: measured columns plus the derived ones (docs/metrics.md).

    packets = bytes / 1514 (MTU-sized packet equivalents, so GSO superframes are
    credited); every *_per_packet divides by it. net_exits_per_packet subtracts
    the idle rate of the same VM over the same duration. est_cycles_per_byte is
    the host CPU time of the virtual I/O path (QEMU threads + vhost workers) times
    `cpu_hz`, the clock /proc/cpuinfo showed for CPU 0 when the run started: an
    estimate (the clock may change under load), not a cycle counter.
    """
    out = asdict(row)
    packets = row.bytes / FRAME_AT_MTU
    out["packets"] = round(packets, 1)
    out["bytes_per_frame"] = round(row.bytes / row.frames, 1) if row.frames else None
    out["exits_per_packet"] = _per(row.exits, packets)
    idle_rate = row.idle_exits / row.idle_s if row.idle_exits is not None and row.idle_s else None
    out["exits_idle_rate"] = round(idle_rate, 2) if idle_rate is not None else None
    irq_idle = row.idle_irq_injections / row.idle_s if row.idle_irq_injections is not None and row.idle_s else None
    out["irq_injections_idle_rate"] = round(irq_idle, 2) if irq_idle is not None else None
    out["net_exits_per_packet"] = (_per(row.exits - idle_rate * row.duration_s, packets)
                                   if idle_rate is not None else None)
    for kind in EXIT_KINDS:
        out[f"{kind}_per_packet"] = _per(getattr(row, kind), packets)
    out["copies_per_packet_measured"] = (round(row.syscall_copy_bytes / row.bytes, 4)
                                         if row.syscall_copy_bytes is not None and row.bytes else None)
    for who in ("qemu", "vhost"):
        value = getattr(row, f"kcopy_bytes_{who}")
        out[f"kernel_copies_per_packet_{who}"] = round(value / row.bytes, 4) if value is not None and row.bytes else None
    cpu_values = {k: getattr(row, f"cpu_s_{k}") for k in CPU_KINDS}
    for kind, value in cpu_values.items():
        out[f"cpu_us_per_packet_{kind}"] = _per(value, packets, 1e6, 3)
    path = [v for k, v in cpu_values.items()
            if v is not None and not k.startswith("iperf3") and k not in HOST_SIDE_CPU_KINDS]
    path_cpu = sum(path) if path else None  # None for native: no VM path to charge
    out["cpu_us_per_packet"] = _per(path_cpu, packets, 1e6, 3)
    out["est_cycles_per_byte"] = (round(path_cpu * row.cpu_hz / row.bytes, 3)
                              if path_cpu is not None and row.cpu_hz and row.bytes else None)
    tx = row.transactions
    out["exits_per_transaction"] = round(row.exits / tx, 4) if tx else None
    out["net_exits_per_transaction"] = (round((row.exits - idle_rate * row.duration_s) / tx, 4)
                                        if tx and idle_rate is not None else None)
    out["irq_injections_per_transaction"] = (round(row.irq_injections / tx, 4)
                                             if tx and row.irq_injections is not None else None)
    out["cpu_us_per_transaction"] = round(path_cpu * 1e6 / tx, 3) if tx and path_cpu is not None else None
    dg = row.datagrams  # paced: per datagram offered, each one crossing the I/O path on its own
    out["exits_per_datagram"] = round(row.exits / dg, 4) if dg else None
    out["irq_injections_per_datagram"] = (round(row.irq_injections / dg, 4)
                                          if dg and row.irq_injections is not None else None)
    out["cpu_us_per_datagram"] = round(path_cpu * 1e6 / dg, 3) if dg and path_cpu is not None else None
    reference = row.exit_reasons_kvm_exits if row.exit_reasons_kvm_exits is not None else row.exits
    out["exit_reasons_coverage"] = (round(row.exit_reasons_total / reference, 4)
                                    if row.exit_reasons_total is not None and reference else None)
    measured = [v for v in (*cpu_values.values(), row.cpu_s_harness) if v is not None]
    out["harness_cpu_pct"] = (round(100 * row.cpu_s_harness / sum(measured), 3)
                              if row.cpu_s_harness is not None and sum(measured) else None)
    out["host_softirq_us_per_packet"] = _per(row.host_softirq_s, packets, 1e6, 3)
    out["pmd_idle_cpu_pct"] = (round(100 * row.idle_cpu_s_pmd / row.idle_s, 1)
                               if row.idle_cpu_s_pmd is not None and row.idle_s else None)
    out["pmd_copies_per_packet"] = (round(row.pmd_syscall_bytes / row.bytes, 4)
                                    if row.pmd_syscall_bytes is not None and row.bytes else None)
    lookups = (row.ovs_hits or 0) + (row.ovs_misses or 0)
    out["ovs_miss_pct"] = (round(100 * row.ovs_misses / lookups, 3)
                           if row.ovs_misses is not None and lookups else None)
    return out


SUMMARY_COLUMNS = ["backend", "direction", "workload", "metric", "n", "median", "min", "max", "cv", "flagged", "topology"]
DERIVED_COLUMNS = [
    "packets", "bytes_per_frame", "exits_per_packet", "exits_idle_rate", "irq_injections_idle_rate",
    "net_exits_per_packet", *(f"{k}_per_packet" for k in EXIT_KINDS), "copies_per_packet_measured",
    "kernel_copies_per_packet_qemu", "kernel_copies_per_packet_vhost",
    *(f"cpu_us_per_packet_{k}" for k in CPU_KINDS), "cpu_us_per_packet", "est_cycles_per_byte",
    "exits_per_transaction", "net_exits_per_transaction", "irq_injections_per_transaction", "cpu_us_per_transaction",
    "exits_per_datagram", "irq_injections_per_datagram", "cpu_us_per_datagram", "exit_reasons_coverage",
    "harness_cpu_pct", "host_softirq_us_per_packet", "pmd_idle_cpu_pct", "pmd_copies_per_packet", "ovs_miss_pct",
]
def cell_kind(direction: str, workload: str) -> str:
    """A row's workload kind from its identity: rr cells have the direction "rr", paced workloads' labels
    start "paced-" (scenario.Workload.label); the rest are streams. Views and the gate split rows by it."""
    return "rr" if direction == "rr" else "paced" if workload.startswith("paced-") else "stream"


def paced_rate(workload: str) -> int | None:
    """A paced workload's offered datagrams per second from its label (`paced-udp-2000pps-l1472B`), else None."""
    m = re.match(r"paced-[a-z]+-(\d+)pps-", workload)
    return int(m[1]) if m else None


# paced rows: the row fields a paced cell fills from iperf3 (traffic.PACED_FIELDS, same names)
PACED_COLUMNS = ("datagrams", "offered_pps", "achieved_pps", "loss_pct", "jitter_ms")
COLUMNS = [f.name for f in fields(Row)] + DERIVED_COLUMNS
INT_COLUMNS = [f.name for f in fields(Row) if str(f.type) in ("int", "int | None")]

# timeline.csv: the same counters per time slice of every window (timeline.rows fills it).
TIMELINE_COLUMNS = ["run_id", "backend", "repeat", "attempt", "workload", "direction", "phase", "slice", "t_start_s",
                    "interval_s", "bytes", "packets", "exits", *KVM_KINDS, *TRAP_KINDS,
                    *(f"cpu_s_{k}" for k in VM_CPU_KINDS), "exits_per_s", "exits_per_packet", "topology", "cpu_s_pmd"]
TIMELINE_INT_COLUMNS = ["repeat", "attempt", "slice", "bytes", "exits", *KVM_KINDS, *TRAP_KINDS]

# exit_reasons.csv: one line per window x exit reason (counters.exitreasons); `handled` exits are those
# whose next VM entry was seen, `handling_ns` their summed time from exit to entry. phase: idle/traffic.
EXIT_REASON_COLUMNS = ["run_id", "backend", "direction", "repeat", "workload", "phase", "attempt", "l1_attempt",
                       "reason", "exits", "handled", "handling_ns", "packets", "topology"]
EXIT_REASON_INT_COLUMNS = ["repeat", "attempt", "l1_attempt", "exits", "handled", "handling_ns"]
# exit_sites.csv: one line per window x place the VM's vCPUs touched (exitsites): kind mmio/pio/msr
# (guest accesses; `address` the guest-physical address, port or MSR index in hex) or userspace (exits
# to QEMU by KVM_EXIT_* reason, in `access`); `device` and `register` name the address.
EXIT_SITE_COLUMNS = ["run_id", "backend", "direction", "repeat", "workload", "phase", "attempt", "l1_attempt",
                     "kind", "access", "address", "device", "register", "count", "packets", "topology"]
EXIT_SITE_INT_COLUMNS = ["repeat", "attempt", "l1_attempt", "count"]
EXIT_REASON_MISMATCH = 0.02  # the reasons sum to the stats' exits within this (exit_reasons_coverage; docs/metrics.md)
