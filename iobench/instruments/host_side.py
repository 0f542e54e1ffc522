"""The host side of the path: softirq work, the stack's backlog drops, and the bridge's own ports.

Why: a topology (iobench.topologies) changes only what sits behind the guest's tap, so what it costs
shows on the host, not in the guest's exits: the bridge forwards in softirq context (NET_RX on the CPU
that received the frame), a veth hop is one more backlog enqueue, a full backlog drops
(`softnet_stat`) or defers (time squeeze). Read per window from /proc (host-wide: every CPU, every
namespace — the machine's other traffic counts too, which the idle window of each VM shows) and the
kernel's 64-bit counters of the topology's host-side ports over netlink (a bridge's ports besides the
tap, a macvtap's lower veth).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iobench.counters.proc import CLK_TCK
from iobench.hoststate import read_file
from iobench.instruments.base import Boot, Instrument, Reading, RunScope, Window


def parse_softirqs(text: str) -> dict[str, int]:
    """/proc/softirqs: NET_RX and NET_TX raised, summed over the CPUs."""
    out = {}
    for line in text.splitlines():
        name, _, counts = line.partition(":")
        if name.strip() in ("NET_RX", "NET_TX"):
            out[name.strip()] = sum(int(c) for c in counts.split())
    return out


def parse_softnet(text: str) -> dict[str, int]:
    """/proc/net/softnet_stat (one line per CPU, hex): frames processed, dropped (backlog full) and
    time squeezes (net_rx_action ran out of budget or time), summed over the CPUs."""
    out = {"processed": 0, "dropped": 0, "time_squeeze": 0}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            out["processed"] += int(fields[0], 16)
            out["dropped"] += int(fields[1], 16)
            out["time_squeeze"] += int(fields[2], 16)
    return out


def parse_stat_softirq_s(text: str) -> float:
    """/proc/stat's first line: time every CPU spent in softirq context (7th field), in seconds."""
    fields = text.split("\n", 1)[0].split()
    return int(fields[7]) / CLK_TCK


# The offloads a row names when found off: segmentation, which decides how many frames a byte takes on the
# host side (the full set, GRO and checksums with it, is in raw/<vm>/host-offloads.json; GRO is off on a
# veth by default, so naming it would say nothing).
FLAGGED_OFFLOADS = ("tso", "gso")


def offloads_off(found: dict[str, dict[str, bool | None]]) -> str:
    """"ibv1a:tso,ibv1a:gso" for every segmentation offload found off ("" none): the row's record of it."""
    return ",".join(f"{port}:{name}" for port, feats in found.items() for name, on in feats.items()
                    if on is False and name in FLAGGED_OFFLOADS)


class HostSide(Instrument):
    name = "host-side"
    edges_only = True  # three /proc files and the ports' netlink counters: the row needs the edges alone

    def __init__(self, run: RunScope) -> None:
        self.run = run

    def after_boot(self, boot: Boot) -> None:
        """The offloads of the path's host-side interfaces as this VM left them (QEMU sets the tap's)."""
        if boot.host_offloads is None:
            return
        found = boot.host_offloads()
        boot.facts["host_offloads"] = found
        self.run.writer.write_raw(f"{boot.tag}/host-offloads.json", found)

    def start(self, window: Window) -> None:
        if window.boot is None and window.host_offloads is not None:  # native: no boot, read per window
            window.facts["host_offloads"] = window.host_offloads()

    def sample(self, window: Window) -> dict[str, Any]:
        stat, softirqs, softnet = (read_file(Path("/"), f"proc/{name}") for name in ("stat", "softirqs", "net/softnet_stat"))
        return {"softirq_s": parse_stat_softirq_s(stat) if stat else None,
                "softirqs": parse_softirqs(softirqs) if softirqs else {},
                "softnet": parse_softnet(softnet) if softnet else {},
                "ports": window.port_stats() if window.port_stats else {}}

    def record(self, sample: Any) -> dict[str, Any]:
        return {"host_side": sample}

    def read(self, window: Window, samples: list[Any]) -> Reading:
        first, last = samples[0], samples[-1]
        na: list[str] = []

        def delta(group: str, key: str) -> int | None:
            a, b = first[group].get(key), last[group].get(key)
            return b - a if a is not None and b is not None else None

        columns: dict[str, Any] = {
            "host_softirq_s": (round(last["softirq_s"] - first["softirq_s"], 3)
                               if first["softirq_s"] is not None and last["softirq_s"] is not None else None),
            "host_net_rx_softirqs": delta("softirqs", "NET_RX"), "host_net_tx_softirqs": delta("softirqs", "NET_TX"),
            "softnet_dropped": delta("softnet", "dropped"), "softnet_time_squeeze": delta("softnet", "time_squeeze"),
        }
        if columns["host_softirq_s"] is None or columns["softnet_dropped"] is None:
            na.append("host softirq: /proc/stat, /proc/softirqs or /proc/net/softnet_stat unreadable here")
        ports = [p for p in last["ports"] if p in first["ports"]]
        if ports:
            columns["port_drops"] = sum(last["ports"][p][k] - first["ports"][p][k] for p in ports
                                               for k in ("rx_dropped", "tx_dropped"))
        else:
            columns["port_drops"] = None
            if window.traffic:
                na.append(f"port_drops: no host-side port in topology {window.topology}")
        found = window.boot.facts.get("host_offloads") if window.boot else window.facts.get("host_offloads")
        columns["offloads_off"] = offloads_off(found) if found is not None else None
        return Reading(columns=columns, na=na)
