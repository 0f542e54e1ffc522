"""The topologies a scenario can name: what sits on the host side of the guest's tap.

Data only (like backends), so that a scenario is checked without netlink; iobench.topology builds them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from iobench.errors import UserError

TOPOLOGIES = {
    "direct": "tap only: the traffic peer in the tap's namespace holds the host's address",
    "bridge": "tap and a veth on a Linux bridge (STP off); the peer behind the veth, in its own namespace",
    "ovs": "tap and a veth on an Open vSwitch bridge of the run's own, kernel datapath; the peer behind the veth",
    "ovs-netdev": "as ovs, on Open vSwitch's userspace datapath (ovs-vswitchd moves every frame; no kernel module)",
    "macvtap": "a macvtap (bridge mode) on a veth, its device passed to QEMU as a file; the peer behind the veth",
}
DEFAULT = "direct"
ALL = "all"  # every topology this host can build; the others listed unavailable with the reason


def check(names: Sequence[str], where: str) -> None:
    """Unknown topologies are one sentence, exit 2, before anything starts."""
    if not names:
        raise UserError(f"{where}: topology is empty: name at least one of {', '.join(TOPOLOGIES)}.")
    for name in names:
        if name not in TOPOLOGIES and name != ALL:
            raise UserError(f"{where}: unknown topology {name!r}: choose from {', '.join(TOPOLOGIES)} or {ALL}.")
    if len(set(names)) != len(names):
        raise UserError(f"{where}: topology names one twice: {', '.join(names)}.")


def resolve(names: Sequence[str], problem: Callable[[str], str | None]) -> tuple[tuple[str, ...], dict[str, str]]:
    """The topologies a run builds, and those `all` leaves out with why (`problem`: why this host cannot
    build one, None when it can). As backends' `all`: what can run here runs, the rest is listed; a
    topology named on its own is built or refused by the preflight (one sentence, exit 2)."""
    if ALL not in names:
        return tuple(names), {}
    wanted = list(dict.fromkeys([*TOPOLOGIES, *(n for n in names if n != ALL)]))
    unavailable = {n: why for n in wanted if (why := problem(n)) is not None}
    chosen = tuple(n for n in wanted if n not in unavailable)
    return chosen, unavailable


def label(backend: str, topology: object = DEFAULT) -> str:
    """How views and the gate name a cell's backend: the backend alone over `direct` (so every older run
    and baseline keeps its names), "vhost@bridge" over another topology."""
    topo = str(topology) if isinstance(topology, str) and topology else DEFAULT  # NaN, None: older data
    return backend if topo == DEFAULT else f"{backend}@{topo}"


def backend_of(name: str) -> str:
    """The backend of a label ("vhost@bridge" -> "vhost")."""
    return name.split("@", 1)[0]


def labelled(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Records (rows, summary lines, cell outcomes) with `backend` as its label: what the report's tables,
    `compare` and the gate key on, so that a bridge cell never mixes with its direct twin."""
    return [{**r, "backend": label(str(r["backend"]), r.get("topology"))} for r in records]
