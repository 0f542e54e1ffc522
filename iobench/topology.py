"""The run's private network: one namespace, one tap, addresses from 198.18.0.0/15.

Why a namespace per run: the host's own interfaces and routes are never touched,
two runs can coexist, and removing the namespace removes everything in it. All
netlink work goes through pyroute2.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyroute2 import IPRoute, netns

from iobench.stale import NETNS_PREFIX, hold, netns_lock, release

BENCH_RANGE = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544 benchmarking range


@dataclass(frozen=True)
class AddressPlan:
    """Host and guest addresses on one /24 inside 198.18.0.0/15."""

    subnet: ipaddress.IPv4Network

    @classmethod
    def for_run(cls, run_id: str) -> AddressPlan:
        """Pick one of the 512 /24s from the run id, so concurrent runs differ."""
        index = int.from_bytes(run_id.encode(), "big") % 512
        return cls(ipaddress.IPv4Network((int(BENCH_RANGE.network_address) + (index << 8), 24)))

    @property
    def host(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    @property
    def guest(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 2

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    def __post_init__(self) -> None:
        if self.subnet.version != 4 or not self.subnet.subnet_of(BENCH_RANGE):
            raise ValueError(f"{self.subnet} is outside {BENCH_RANGE}")


@dataclass
class Topology:
    """What exists while the run holds it: the namespace, the tap inside it, and
    one netlink socket opened in that namespace.

    Why keep the socket: pyroute2 opens a socket in another namespace by forking
    a helper process; doing that once, before any QEMU runs, keeps forks out of
    the measurement windows.
    """

    netns: str
    tap: str
    plan: AddressPlan
    ipr: IPRoute
    native: NativePair | None = None
    multi_queue: bool = False  # how the tap was created (QEMU must open it the same way)

    def tap_for(self, queues: int) -> None:
        """Make the tap match the next VM's queues: the kernel lets QEMU attach to a persistent tap only
        with the same IFF_MULTI_QUEUE flag it was created with, and QEMU asks for it only when
        queues > 1. The tap is made again (same name, address and state) when the mode changes."""
        multi = queues > 1
        if multi == self.multi_queue:
            return
        self.ipr.link("del", index=self.ipr.link_lookup(ifname=self.tap)[0])
        _add_tap(self.ipr, self.tap, self.plan, multi)
        self.multi_queue = multi

    def link_stats(self, ifname: str | None = None) -> dict[str, int]:
        """The kernel's 64-bit counters of one interface (the tap by default)."""
        name = ifname or self.tap
        idx = self.ipr.link_lookup(ifname=name)
        if not idx:
            raise LookupError(f"no interface {name} in namespace {self.netns}")
        stats = self.ipr.get_links(idx[0])[0].get("IFLA_STATS64")
        return {k: int(v) for k, v in dict(stats).items()}


@dataclass(frozen=True)
class NativePair:
    """The `native` ceiling: a veth from the run's namespace to a peer namespace that
    plays the guest (its own /24, next to the tap's)."""

    peer_netns: str
    veth: str
    peer_veth: str
    plan: AddressPlan
    peer_ipr: IPRoute

    def peer_link_stats(self) -> dict[str, int]:
        idx = self.peer_ipr.link_lookup(ifname=self.peer_veth)
        if not idx:
            raise LookupError(f"no interface {self.peer_veth} in namespace {self.peer_netns}")
        stats = self.peer_ipr.get_links(idx[0])[0].get("IFLA_STATS64")
        return {k: int(v) for k, v in dict(stats).items()}


def netns_name(run_id: str) -> str:
    return f"{NETNS_PREFIX}{run_id}"


def tap_name(run_id: str, n: int = 0) -> str:
    """Interface names have 15 characters at most; the run id's tail keeps them unique."""
    return f"ibt{run_id[-8:]}{n}"[:15]


def enter_netns(name: str) -> None:
    """Move the calling process into namespace `name` (used as a Popen preexec_fn).

    Only opens the existing namespace: flags=0 keeps pyroute2 from creating it.
    """
    netns.setns(name, flags=0)


def _write_sysctl_in(name: str, settings: dict[str, str]) -> None:
    """Write sysctls of namespace `name`: /proc/sys/net shows the netns of the
    opening thread, so switch this thread in and back out."""
    netns.pushns(name)
    try:
        for key, value in settings.items():
            path = f"/proc/sys/{key.replace('.', '/')}"
            if not os.path.exists(path):  # e.g. IPv6 switched off on the kernel command line: nothing to quiet
                continue
            with open(path, "w") as f:
                f.write(value)
    finally:
        netns.popns()


@contextmanager
def tap_topology(run_id: str, native: bool = False) -> Iterator[Topology]:
    """Create the run's namespace with a vnet_hdr tap holding the host-side address
    (and, for the `native` row, a veth to a peer namespace); remove the namespaces
    (and with them the tap and veth) on exit, whatever happened."""
    name = netns_name(run_id)
    plan = AddressPlan.for_run(run_id)
    tap = tap_name(run_id)
    peer = f"{name}-peer"
    lock = hold(netns_lock(name))  # says "a live run owns these namespaces" to `iobench clean`
    peer_ipr = None
    try:
        netns.create(name)
        # IPv6 off keeps router solicitations and DAD out of the idle windows.
        _write_sysctl_in(name, {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"})
        with IPRoute(netns=name) as ipr:
            _add_tap(ipr, tap, plan, multi_queue=False)
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=lo, state="up")
            pair = None
            if native:
                netns.create(peer)
                _write_sysctl_in(peer, {"net.ipv6.conf.all.disable_ipv6": "1",
                                        "net.ipv6.conf.default.disable_ipv6": "1"})
                peer_ipr = IPRoute(netns=peer)
                pair = _native_pair(run_id, ipr, peer, peer_ipr, plan)
            yield Topology(name, tap, plan, ipr, pair)
    finally:
        if peer_ipr is not None:
            peer_ipr.close()
        remove_netns(peer)
        remove_netns(name)
        release(lock, netns_lock(name))


def _add_tap(ipr: IPRoute, tap: str, plan: AddressPlan, multi_queue: bool) -> None:
    """The run's vnet_hdr tap with the host-side address, up."""
    ipr.link("add", ifname=tap, kind="tuntap", mode="tap",
             ifr={"vnet_hdr": True, "no_pi": True, "one_queue": False, "multi_queue": multi_queue})
    idx = ipr.link_lookup(ifname=tap)[0]
    ipr.addr("add", index=idx, address=str(plan.host), prefixlen=plan.prefixlen)
    ipr.link("set", index=idx, state="up")


def _native_pair(run_id: str, ipr: IPRoute, peer: str, peer_ipr: IPRoute, tap_plan: AddressPlan) -> NativePair:
    """veth from the run's namespace into `peer`, on the /24 after the tap's (same host/guest offsets)."""
    base = int(BENCH_RANGE.network_address)
    index = ((int(tap_plan.subnet.network_address) - base) >> 8) + 1
    plan = AddressPlan(ipaddress.IPv4Network((base + ((index % 512) << 8), 24)))
    veth, peer_veth = f"ibv{run_id[-8:]}a"[:15], f"ibv{run_id[-8:]}b"[:15]
    ipr.link("add", ifname=veth, kind="veth", peer={"ifname": peer_veth, "net_ns_fd": peer})
    idx = ipr.link_lookup(ifname=veth)[0]
    ipr.addr("add", index=idx, address=str(plan.host), prefixlen=24)
    ipr.link("set", index=idx, state="up")
    pidx = peer_ipr.link_lookup(ifname=peer_veth)[0]
    peer_ipr.addr("add", index=pidx, address=str(plan.guest), prefixlen=24)
    peer_ipr.link("set", index=pidx, state="up")
    peer_ipr.link("set", index=peer_ipr.link_lookup(ifname="lo")[0], state="up")
    return NativePair(peer, veth, peer_veth, plan, peer_ipr)


def remove_netns(name: str) -> None:
    """Remove a namespace of ours; its tap goes with it once no process holds it."""
    if not name.startswith(NETNS_PREFIX):
        raise ValueError(f"refusing to remove namespace {name!r}: not iobench's")
    if name in netns.listnetns():
        netns.remove(name)


CAPABILITIES = ((21, "CAP_SYS_ADMIN (to create and enter network namespaces)"),
                (12, "CAP_NET_ADMIN (to create the tap and veth and give them addresses)"))


def missing_capabilities(status: str | None = None) -> list[str]:
    """The capabilities a run needs that this process lacks, from CapEff in /proc/self/status."""
    text = status if status is not None else open("/proc/self/status").read()
    eff = int(next(line.split()[1] for line in text.splitlines() if line.startswith("CapEff:")), 16)
    return [name for bit, name in CAPABILITIES if not eff >> bit & 1]


def can_create_netns() -> tuple[bool, str]:
    """Whether this process may create namespaces and taps (capabilities, /dev/net/tun)."""
    missing = missing_capabilities()
    if missing:
        return False, f"this user lacks {' and '.join(missing)}: run iobench as root"
    if not os.path.exists("/dev/net/tun"):
        return False, "/dev/net/tun is missing: load the tun module (modprobe tun)"
    return True, "CAP_SYS_ADMIN and CAP_NET_ADMIN held, /dev/net/tun present"
