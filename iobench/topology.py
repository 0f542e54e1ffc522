"""The run's private network: namespaces, the guest's tap and what it is attached to, addresses from
198.18.0.0/15.

Why a namespace per run: the host's own interfaces and routes are never touched, two runs can coexist,
and removing the namespaces removes everything in them. All netlink work goes through pyroute2.

A topology is what sits on the host side of the guest's tap (data, like a backend: iobench.topologies):

- `direct`: the tap holds the host's address and the traffic peer runs in the tap's own namespace, so
  nothing but the tap is between QEMU (or vhost) and the peer's socket;
- `bridge`: the tap and one end of a veth are ports of a Linux bridge (STP off, forward delay 0) in the
  run's namespace; the peer runs in its own namespace behind the veth's other end, as on a host whose
  guests hang off `virbr0`: the bridge's forwarding, FDB lookup and the veth hop are on the path;
- `ovs` / `ovs-netdev`: as `bridge`, on an Open vSwitch bridge of the run's own (iobench.ovs) on the
  kernel datapath (a flow cache in softirq, misses upcalled to ovs-vswitchd) or the userspace one
  (ovs-vswitchd moves every frame itself);
- `macvtap`: no tap and no bridge: a macvtap in bridge mode on one end of a veth (libvirt's
  `type='direct'`), its character device handed to QEMU as a file descriptor; the peer behind the
  veth's other end.

The `native` ceiling runs over the same topology: for `direct` a veth from the run's namespace to a
namespace standing in for the guest; for `bridge` a second veth port on the same bridge, for
`macvtap` a macvlan on the same veth, so the peer's packets cross what the guest's do, like with like.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute, netns

from iobench import ovs, topologies
from iobench.stale import NATIVE_SUFFIX, NETNS_PREFIX, NODE_DIR_PREFIX, PEER_SUFFIX, hold, netns_lock, release

BENCH_RANGE = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544 benchmarking range
# The guest NIC's MAC: QEMU's default for the first NIC, set explicitly on the device over macvtap, whose
# address it must be (a macvtap passes on only frames for its own address).
GUEST_MAC = "52:54:00:12:34:56"
# Tap counters are named from the host kernel: data going into the guest leaves through the tap (tx),
# data from the guest arrives on it (rx); rr's bytes go both ways (requests and responses).
TAP_DATA_COUNTERS = {"rx": (("tx_bytes",), ("tx_packets",)), "tx": (("rx_bytes",), ("rx_packets",)),
                     "rr": (("tx_bytes", "rx_bytes"), ("tx_packets", "rx_packets"))}
# The idle window has no data direction: its bytes are the tap's both ways.
TAP_BYTES_BOTH = ("tx_bytes", "rx_bytes")
# The native peer's veth is the guest's stand-in: data for it arrives (rx). A macvtap's are these too:
# it transmits what the guest sends and receives what is queued for the guest (Topology.data_counters).
PEER_DATA_COUNTERS = {"rx": (("rx_bytes",), ("rx_packets",)), "tx": (("tx_bytes",), ("tx_packets",)),
                      "rr": (("tx_bytes", "rx_bytes"), ("tx_packets", "rx_packets"))}


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
    def stand_in(self) -> ipaddress.IPv4Address:
        """The native row's stand-in for the guest where it shares the guest's subnet (bridge)."""
        return self.subnet.network_address + 3

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
    kind: str = "direct"
    client_netns: str = ""  # where the traffic peer runs (direct: the tap's namespace)
    bridge: str | None = None  # the bridge the tap is a port of (bridge)
    ports: tuple[str, ...] = ()  # the host-side ports in the run's namespace (for their counters)
    char_device: tuple[int, int] | None = None  # macvtap: (major, minor) of the device QEMU gets as a file
    ovs: ovs.Ovs | None = None  # ovs, ovs-netdev: the run's Open vSwitch, whose bridge the tap is a port of

    @contextmanager
    def open_tap(self) -> Iterator[int | None]:
        """The macvtap's character device, open, for one QEMU (`-netdev tap,fd=N`; None for a tap, which
        QEMU opens by name). A device node made for the moment in a private directory and unlinked
        at once: the open file is all QEMU needs, and nothing is left in /dev or anywhere else."""
        if self.char_device is None:
            yield None
            return
        where = tempfile.mkdtemp(prefix=NODE_DIR_PREFIX)
        node = os.path.join(where, "tap")
        try:
            os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(*self.char_device))
            fd = os.open(node, os.O_RDWR | os.O_CLOEXEC)
        finally:
            if os.path.exists(node):
                os.unlink(node)
            os.rmdir(where)
        try:
            yield fd
        finally:
            os.close(fd)

    def data_counters(self, direction: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The guest-side device's counters that carry `direction`'s data. A tap *receives* what the
        guest sends (QEMU writes into it); a macvtap *transmits* it (written frames leave through the
        macvlan) and receives what is queued for the guest: its counters are the tap's mirrored."""
        return (PEER_DATA_COUNTERS if self.char_device is not None else TAP_DATA_COUNTERS)[direction]

    def __post_init__(self) -> None:
        self.client_netns = self.client_netns or self.netns

    def tap_for(self, queues: int) -> None:
        """Make the tap match the next VM's queues: the kernel lets QEMU attach to a persistent tap only
        with the same IFF_MULTI_QUEUE flag it was created with, and QEMU asks for it only when
        queues > 1. The tap is made again (same name, address and state) when the mode changes.
        (A macvtap has no such flag: the run refuses multiqueue variants over it before starting.)"""
        multi = queues > 1
        if multi == self.multi_queue or self.char_device is not None:
            return
        self.remake_tap(multi)

    def remake_tap(self, multi_queue: bool) -> None:
        """The tap deleted and made again: same name, address (or bridge), up, with or without
        IFF_MULTI_QUEUE. Also how a tap is given back after the vhost-user switch held it (DPDK's tap PMD
        attaches with IFF_MULTI_QUEUE, sets its own MAC and promiscuity, and leaves the link down)."""
        if self.ovs is not None:  # OVS would keep a port on a device that is gone: taken out, put back
            self.ovs.vsctl("--if-exists", "del-port", self.tap)
        self.ipr.link("del", index=self.ipr.link_lookup(ifname=self.tap)[0])
        bridged = self.bridge is not None or self.ovs is not None
        _add_tap(self.ipr, self.tap, None if bridged else self.plan, multi_queue)
        if self.bridge is not None:
            _enslave(self.ipr, self.tap, self.bridge)
        if self.ovs is not None:
            self.ovs.vsctl("add-port", self.ovs.bridge, self.tap)
        self.multi_queue = multi_queue

    def offloads(self) -> dict[str, dict[str, bool | None]]:
        """Whether each host-side interface of the path does TSO, GSO, GRO, checksum offload and
        scatter-gather (ethtool's features, read in its namespace): a topology that silently switches
        an offload off changes every per-packet figure. QEMU sets the tap's as the guest negotiated, so
        this is read after each boot."""
        return self._offloads(with_tap=True)

    def native_offloads(self) -> dict[str, dict[str, bool | None]]:
        """The same without the guest's tap, which a native window does not cross."""
        return self._offloads(with_tap=False)

    def _offloads(self, with_tap: bool) -> dict[str, dict[str, bool | None]]:
        where = [(self.netns, [*([self.tap] if with_tap else []), *([self.bridge] if self.bridge else []),
                               *self.ports])]
        if self.client_netns != self.netns:
            where.append((self.client_netns, [p[:-1] + "b" for p in self.ports if p.startswith("ibv")]))
        out: dict[str, dict[str, bool | None]] = {}
        for ns, names in where:
            out.update(_features_in(ns, names))
        return out

    def port_stats(self) -> dict[str, dict[str, int]]:
        """The counters of every port of the bridge besides the tap (the peer's and the native stand-in's
        veths); empty without a bridge."""
        return {port: self.link_stats(port) for port in self.ports}

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
    """The `native` ceiling: a veth into a namespace that plays the guest (`peer_netns`, the server's),
    reached at `server` from the topology's client namespace: for `direct` from the run's namespace
    over the veth (its own /24, next to the tap's), for `bridge` through the bridge."""

    peer_netns: str
    veth: str
    peer_veth: str
    server: ipaddress.IPv4Address
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
def tap_topology(run_id: str, native: bool = False, kind: str = "direct") -> Iterator[Topology]:
    """Create the run's namespace with the guest's tap and what `kind` attaches it to (and, for the
    `native` row, a namespace standing in for the guest); remove the namespaces (and with them the
    tap, bridge, macvtap and veths) on exit, whatever happened."""
    topologies.check([kind], "topology")
    name = netns_name(run_id)
    names = _Names(run_id, name)
    lock = hold(netns_lock(name))  # says "a live run owns these namespaces" to `iobench clean`
    opened: list[IPRoute] = []

    def namespace(ns: str) -> IPRoute:
        """A namespace of the run's, with a netlink socket opened in it (closed on exit)."""
        _quiet_netns(ns)
        opened.append(ipr := IPRoute(netns=ns))
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        return ipr

    try:
        with ExitStack() as daemons:  # a topology's own daemons (OVS) stop before its namespaces go
            ipr = namespace(name)
            yield _BUILDERS[kind](names, ipr, namespace, native, daemons)
    finally:
        for opened_ipr in opened:
            opened_ipr.close()
        for ns in (names.stand_in, names.peer, name):
            remove_netns(ns)
        release(lock, netns_lock(name))


@dataclass(frozen=True)
class _Names:
    """A run's namespaces and interfaces (15 characters at most; the run id's tail keeps them unique)."""

    run_id: str
    netns: str

    @property
    def peer(self) -> str:
        return f"{self.netns}{PEER_SUFFIX}"

    @property
    def stand_in(self) -> str:
        return f"{self.netns}{NATIVE_SUFFIX}"

    def link(self, prefix: str, end: str = "") -> str:
        return f"{prefix}{self.run_id[-8:]}{end}"[:15]


def _direct(names: _Names, ipr: IPRoute, namespace: Callable[[str], IPRoute], native: bool,
            daemons: ExitStack) -> Topology:
    """The tap holds the host's address; the native stand-in behind a veth on the next /24."""
    plan = AddressPlan.for_run(names.run_id)
    _add_tap(ipr, tap_name(names.run_id), plan, multi_queue=False)
    pair = _native_pair(names.run_id, ipr, names.peer, namespace(names.peer), plan) if native else None
    return Topology(names.netns, tap_name(names.run_id), plan, ipr, pair)


def _bridge(names: _Names, ipr: IPRoute, namespace: Callable[[str], IPRoute], native: bool,
            daemons: ExitStack) -> Topology:
    """A Linux bridge (STP off, no forward delay) with the tap and the peer's veth as ports; the native
    stand-in on a second veth port of the same bridge."""
    plan, tap, bridge = AddressPlan.for_run(names.run_id), tap_name(names.run_id), names.link("ibb")
    ipr.link("add", ifname=bridge, kind="bridge", br_stp_state=0, br_forward_delay=0)
    ipr.link("set", index=ipr.link_lookup(ifname=bridge)[0], state="up")
    _add_tap(ipr, tap, None, multi_queue=False)
    _enslave(ipr, tap, bridge)
    ports, pair = _switch_ports(names, ipr, namespace, native, plan, bridge)
    return Topology(names.netns, tap, plan, ipr, pair, kind="bridge", client_netns=names.peer, bridge=bridge,
                    ports=tuple(ports))


def _macvtap(names: _Names, ipr: IPRoute, namespace: Callable[[str], IPRoute], native: bool,
             daemons: ExitStack) -> Topology:
    """A macvtap in bridge mode on one end of a veth (libvirt's `type='direct'`), the peer behind the
    veth's other end; QEMU gets the macvtap's character device as a file descriptor (Topology.open_tap).
    The native stand-in is a macvlan in bridge mode on the same veth, moved into its own namespace: the
    same macvlan switching, without the character device."""
    plan, tap = AddressPlan.for_run(names.run_id), tap_name(names.run_id)
    lower = _veth(ipr, names.link("ibv", "a"), names.link("ibv", "b"), names.peer, namespace(names.peer), plan.host,
                  plan.prefixlen)
    low = ipr.link_lookup(ifname=lower)[0]
    ipr.link("add", ifname=tap, kind="macvtap", link=low, macvtap_mode="bridge", address=GUEST_MAC)
    ipr.link("set", index=ipr.link_lookup(ifname=tap)[0], state="up")
    pair = None
    if native:
        stand_ipr = namespace(names.stand_in)
        stand = names.link("ibw", "a")
        ipr.link("add", ifname=stand, kind="macvlan", link=low, macvlan_mode="bridge")
        ipr.link("set", index=ipr.link_lookup(ifname=stand)[0], net_ns_fd=names.stand_in)
        sidx = stand_ipr.link_lookup(ifname=stand)[0]
        stand_ipr.addr("add", index=sidx, address=str(plan.stand_in), prefixlen=plan.prefixlen)
        stand_ipr.link("set", index=sidx, state="up")
        pair = NativePair(names.stand_in, stand, stand, plan.stand_in, stand_ipr)
    return Topology(names.netns, tap, plan, ipr, pair, kind="macvtap", client_netns=names.peer, ports=(lower,),
                    char_device=_char_device(names.netns, tap))


def _switch_ports(names: _Names, ipr: IPRoute, namespace: Callable[[str], IPRoute], native: bool,
                  plan: AddressPlan, bridge: str | None) -> tuple[list[str], NativePair | None]:
    """A switch's ports besides the tap: the peer's veth and, for the native row, the stand-in's veth
    (`.3` of the guest's /24); enslaved to Linux bridge `bridge` where one is given (OVS adds its own)."""
    ports = [_veth(ipr, names.link("ibv", "a"), names.link("ibv", "b"), names.peer, namespace(names.peer),
                   plan.host, plan.prefixlen, bridge=bridge)]
    pair = None
    if native:
        stand_ipr = namespace(names.stand_in)
        ports.append(_veth(ipr, names.link("ibw", "a"), names.link("ibw", "b"), names.stand_in, stand_ipr,
                           plan.stand_in, plan.prefixlen, bridge=bridge))
        pair = NativePair(names.stand_in, ports[-1], names.link("ibw", "b"), plan.stand_in, stand_ipr)
    return ports, pair


def _ovs(kind: str) -> Callable[[_Names, IPRoute, Callable[[str], IPRoute], bool, ExitStack], Topology]:
    """`bridge`'s shape on an Open vSwitch bridge of the run's (its daemons started here, in the run's
    namespace, stopped when the topology goes), on the datapath `kind` names (ovs.DATAPATH_TYPES). The
    bridge's one flow is OVS's default: NORMAL, a learning switch, as a Linux bridge is."""
    def build(names: _Names, ipr: IPRoute, namespace: Callable[[str], IPRoute], native: bool,
              daemons: ExitStack) -> Topology:
        plan, tap, bridge = AddressPlan.for_run(names.run_id), tap_name(names.run_id), names.link("ibo")
        sw = daemons.enter_context(ovs.private_ovs(names.run_id, ovs.DATAPATH_TYPES[kind], bridge,
                                                   lambda: enter_netns(names.netns)))
        _add_tap(ipr, tap, None, multi_queue=False)
        ports, pair = _switch_ports(names, ipr, namespace, native, plan, bridge=None)
        adds = [arg for port in (tap, *ports) for arg in ("--", "add-port", bridge, port)][1:]
        sw.vsctl(*adds)
        return Topology(names.netns, tap, plan, ipr, pair, kind=kind, client_netns=names.peer, ports=tuple(ports),
                        ovs=sw)
    return build


_BUILDERS: dict[str, Callable[[_Names, IPRoute, Callable[[str], IPRoute], bool, ExitStack], Topology]] = {
    "direct": _direct, "bridge": _bridge, "macvtap": _macvtap, "ovs": _ovs("ovs"), "ovs-netdev": _ovs("ovs-netdev")}


OFFLOADS = {"tso": "tx-tcp-segmentation", "gso": "tx-generic-segmentation", "gro": "rx-gro",
            "tx-csum": "tx-checksum-ip-generic", "rx-csum": "rx-checksum", "sg": "tx-scatter-gather"}


def _features_in(ns: str, names: list[str]) -> dict[str, dict[str, bool | None]]:
    """OFFLOADS of each interface of namespace `ns` (None: the kernel does not list the feature for it)."""
    from pyroute2.ethtool import Ethtool

    netns.pushns(ns)  # ethtool's sockets answer for the namespace they are opened in
    try:
        tool = Ethtool()
    finally:
        netns.popns()
    out: dict[str, dict[str, bool | None]] = {}
    try:
        for name in names:
            features = tool.get_features(name).features
            out[name] = {short: (features[long].enable if long in features else None)
                         for short, long in OFFLOADS.items()}
    finally:
        tool.close()
    return out


def _char_device(ns: str, ifname: str) -> tuple[int, int]:
    """The macvtap's character device (major, minor): sysfs shows it only from inside its namespace, so
    `ip netns exec` (which mounts that namespace's sysfs for the command) reads it."""
    got = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", f"cat /sys/class/net/{ifname}/macvtap/*/dev"],
                         capture_output=True, text=True, timeout=10)
    try:
        major, minor = (int(x) for x in got.stdout.strip().split(":"))
    except ValueError as exc:
        raise RuntimeError(f"cannot find the character device of macvtap {ifname} in {ns}: "
                           f"{(got.stderr or got.stdout).strip()[:200]}") from exc
    return major, minor


def _quiet_netns(name: str) -> None:
    """A new namespace of ours with IPv6 off: router solicitations and DAD stay out of the idle windows."""
    netns.create(name)
    _write_sysctl_in(name, {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"})


def _add_tap(ipr: IPRoute, tap: str, plan: AddressPlan | None, multi_queue: bool) -> None:
    """The run's vnet_hdr tap, up; with the host-side address unless it is a bridge port (`plan` None)."""
    ipr.link("add", ifname=tap, kind="tuntap", mode="tap",
             ifr={"vnet_hdr": True, "no_pi": True, "one_queue": False, "multi_queue": multi_queue})
    idx = ipr.link_lookup(ifname=tap)[0]
    if plan is not None:
        ipr.addr("add", index=idx, address=str(plan.host), prefixlen=plan.prefixlen)
    ipr.link("set", index=idx, state="up")


def _enslave(ipr: IPRoute, port: str, bridge: str) -> None:
    ipr.link("set", index=ipr.link_lookup(ifname=port)[0], master=ipr.link_lookup(ifname=bridge)[0])


def _veth(ipr: IPRoute, near: str, far: str, far_ns: str, far_ipr: IPRoute, address: ipaddress.IPv4Address,
          prefixlen: int, near_address: ipaddress.IPv4Address | None = None, bridge: str | None = None) -> str:
    """A veth from the run's namespace into `far_ns`: its `far` end holds `address`, its `near` end
    `near_address` (direct's native pair) or nothing, and is a port of `bridge` where one is given; both
    up. Returns the near end's name."""
    ipr.link("add", ifname=near, kind="veth", peer={"ifname": far, "net_ns_fd": far_ns})
    if bridge is not None:
        _enslave(ipr, near, bridge)
    idx = ipr.link_lookup(ifname=near)[0]
    if near_address is not None:
        ipr.addr("add", index=idx, address=str(near_address), prefixlen=prefixlen)
    ipr.link("set", index=idx, state="up")
    fidx = far_ipr.link_lookup(ifname=far)[0]
    far_ipr.addr("add", index=fidx, address=str(address), prefixlen=prefixlen)
    far_ipr.link("set", index=fidx, state="up")
    return near


def _native_pair(run_id: str, ipr: IPRoute, peer: str, peer_ipr: IPRoute, tap_plan: AddressPlan) -> NativePair:
    """veth from the run's namespace into `peer`, on the /24 after the tap's (same host/guest offsets)."""
    base = int(BENCH_RANGE.network_address)
    index = ((int(tap_plan.subnet.network_address) - base) >> 8) + 1
    plan = AddressPlan(ipaddress.IPv4Network((base + ((index % 512) << 8), 24)))
    veth, peer_veth = f"ibv{run_id[-8:]}a"[:15], f"ibv{run_id[-8:]}b"[:15]
    _veth(ipr, veth, peer_veth, peer, peer_ipr, plan.guest, plan.prefixlen, near_address=plan.host)
    return NativePair(peer, veth, peer_veth, plan.guest, peer_ipr)


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


# The kernel module each topology needs beyond tun and veth, and where its driver lives in the tree.
MODULES = {"bridge": ("bridge", "net/bridge/bridge.ko"), "macvtap": ("macvtap", "drivers/net/macvtap.ko"),
           "ovs": ("openvswitch", "net/openvswitch/openvswitch.ko")}


def _char_majors(path: Path) -> set[str]:
    """The character device drivers the kernel has registered (/proc/devices): a built-in macvtap shows
    here even where /sys/module and /lib/modules say nothing of it."""
    try:
        text = path.read_text()
    except OSError:
        return set()
    part = text.split("Block devices:")[0]
    return {line.split()[1] for line in part.splitlines() if len(line.split()) == 2 and line.split()[0].isdigit()}


def support_problem(kind: str, sys_module: Path = Path("/sys/module"), lib_modules: Path | None = None,
                    proc_devices: Path = Path("/proc/devices")) -> str | None:
    """Why this kernel cannot build topology `kind` (None: it can): its module is neither loaded nor
    built in nor installed (modules.builtin / modules.dep of the running kernel)."""
    if kind in ovs.DATAPATH_TYPES and (why := ovs.problem()):
        return f"topology {kind} cannot run: {why}"
    if kind not in MODULES:
        return None
    name, path = MODULES[kind]
    if (sys_module / name).exists() or name in _char_majors(proc_devices):
        return None
    lib = lib_modules or Path("/lib/modules") / os.uname().release
    for listing in ("modules.builtin", "modules.dep"):
        try:
            if path in (lib / listing).read_text():
                return None
        except OSError:
            continue
    return (f"topology {kind} needs the kernel's {name} module, which this kernel ({os.uname().release}) has neither "
            f"loaded, built in nor installed: install the kernel's modules package or use --topology "
            + ("ovs-netdev (Open vSwitch's userspace datapath, no module)" if kind == "ovs" else "direct"))


def can_create_netns() -> tuple[bool, str]:
    """Whether this process may create namespaces and taps (capabilities, /dev/net/tun)."""
    missing = missing_capabilities()
    if missing:
        return False, f"this user lacks {' and '.join(missing)}: run iobench as root"
    if not os.path.exists("/dev/net/tun"):
        return False, "/dev/net/tun is missing: load the tun module (modprobe tun)"
    return True, "CAP_SYS_ADMIN and CAP_NET_ADMIN held, /dev/net/tun present"
