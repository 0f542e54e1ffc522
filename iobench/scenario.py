"""Scenario files (TOML) validated into a frozen record, and the plan of cells.

Why validate everything before anything starts: a typo in a key must not cost a
ten-minute run, and must not leave a namespace behind. Every error names the
file, the key and what is allowed, and exits with code 2.

File layout (every key optional; defaults below):

    [run]
    backends = ["all"]          # e1000, virtio, vhost, native (= all), e1000e, rtl8139, a variant
    directions = ["rx", "tx"]   # rx = host->guest, tx = guest->host
    accel = "auto"              # auto, kvm, tcg
    duration_s = 5              # measured traffic per cell (also the idle window)
    omit_s = 1                  # iperf3 warm-up, not counted in throughput
    repeats = 3                 # rounds; backends interleaved inside each round
    boot_timeout_s = 90
    retries = 1                 # a VM that dies (or never boots) is booted again this many times
    copy_trace = false          # count kernel copy routines per thread (kprobes; where the kernel allows it)
    exit_reasons = false        # KVM exits by reason, handling time and where they land (tracefs hist triggers,
                                # where KVM's tracepoints are: the lab, real KVM hosts; elsewhere the run says why);
                                # off by default: suspected of raising the lab's L1 stall rate (docs/metrics.md);
                                # "alternate": on in rounds 1, 4, 5, 8..., off in 2, 3, 6, 7... (its own cost, measured)
    timeline_interval_s = 1.0   # read the counters this often inside each window (timeline.csv); 0 = edges only
    topology = ["direct"]       # what the guest's tap is attached to on the host, every one in every round:
                                # direct (the peer on the tap itself), bridge (tap and the peer's veth on a
                                # Linux bridge), ovs / ovs-netdev (the same on a private Open vSwitch, kernel
                                # or userspace datapath), macvtap (a macvtap on the peer's veth instead of a
                                # tap), all (every one this host can build); native runs over each too
                                # (docs/topology.md)

    [workload]
    kind = "stream"             # stream (iperf3 bulk transfer), rr (sockperf ping-pong: one request in flight)
                                # or paced (iperf3 UDP at a fixed offered packet rate, below saturation)
    protocol = "tcp"            # tcp or udp (paced: udp)
    streams = 1                 # iperf3 -P
    message_bytes = [0]         # iperf3 -l / sockperf -m; 0 = the tool's default; several values = a sweep
                                # (paced: the datagram's payload, required)
    udp_bitrate = "1G"          # iperf3 -b for udp streams
    rates_pps = []              # paced: offered datagrams per second (several values = a sweep)

    Several workloads in one scenario: write [[workload]] tables instead of one [workload]; each is
    checked on its own and the cells of all of them run in every round. The first takes the
    command line's --workload/--protocol/... options.

    [guest]
    vcpus = 1
    memory_mb = 256
    offloads = true             # false: the guest's init turns TSO/GSO/GRO/checksum offloads off with ethtool
    qemu_args = []              # raw QEMU arguments appended to every VM (e.g. "-global", "e1000.mitigation=off")
    kernel_args = []            # words added to every guest's kernel command line (e.g. "nohz=off": a periodic
                                # tick, so the guest's LAPIC timer writes stop following its idle periods)

    [placement]                 # where the I/O path's threads run (iobench.placement; docs/placement.md)
    mode = "none"               # none (the scheduler places them; facts still recorded), auto (vCPUs, vhost
                                # worker and peer on distinct physical cores of one NUMA node), alternate (auto
                                # in rounds 1, 4, 5, 8..., none in the others: what pinning changes, one run)
    # or per role, instead of mode: vcpu0 = "2", vhost = "3", peer = "4-5", qemu-main = "0", iothread = "0"

    [gate]
    on_host_change = "not-comparable"  # metrics that follow the host's speed under an emulator (hostspeed.py),
                                # against a baseline from another host kernel or CPU or when the native ceiling
                                # moved: "not-comparable" (exit 2) or "report" (shown, not gated: a CI job that
                                # judges the code, not the machine it ran on)
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from iobench import placement, topologies
from iobench.backends import BACKENDS, GUEST_TOOLS, RESERVED_DEVICE_PROPS, RESERVED_NETDEV_PROPS, Variant, qemu_value
from iobench.errors import UserError

BACKEND_NAMES = ("e1000", "virtio", "vhost", "e1000e", "rtl8139", "native")
_VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
# A Debian kernel release (linux-image-<release>): 6.1.0-47-amd64, 6.12.100+deb12-amd64, 6.1.0-47-cloud-amd64
_KERNEL_RELEASE = re.compile(r"[0-9][0-9A-Za-z.+~]*(?:-[0-9A-Za-z.+~]+)+")
_VARIANT_KEYS = ("base", "device", "netdev", "queues", "guest", "qemu_args", "qemu", "kernel")
# A word of the guest kernel's command line: no spaces or quotes (one word each), and none of the words
# iobench's guest depends on (vm.kernel_cmdline, guest-init.sh reads iobench.*)
_KERNEL_WORD = re.compile(r"^[A-Za-z0-9_.,:=/+-]{1,200}$")
_RESERVED_KERNEL_WORDS = ("console=", "panic=", "iobench.", "init=", "rdinit=")
_GUEST_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Workload:
    """What the traffic tool does in one cell: iperf3 streams, or sockperf request/response."""

    protocol: str = "tcp"
    streams: int = 1
    message_bytes: int = 0
    udp_bitrate: str = "1G"
    kind: str = "stream"
    rate_pps: int = 0  # paced: offered datagrams per second

    @property
    def label(self) -> str:
        size = "default" if self.message_bytes == 0 else f"{self.message_bytes}B"
        if self.kind == "rr":
            return f"rr-{self.protocol}-l{size}"
        if self.kind == "paced":
            return f"paced-{self.protocol}-{self.rate_pps}pps-l{size}"
        return f"{self.protocol}-P{self.streams}-l{size}"

    @property
    def directions(self) -> tuple[str, ...] | None:
        """rr cells have one direction of their own ("rr": requests host->guest, responses back);
        None: the scenario's directions."""
        return ("rr",) if self.kind == "rr" else None


def expand(kind: str, protocol: str, streams: int, message_bytes: tuple[int, ...], udp_bitrate: str,
           rates_pps: tuple[int, ...]) -> list[Workload]:
    """One [workload] table as its cells' workloads: a sweep over message sizes (and, paced, rates)."""
    rates = rates_pps if kind == "paced" else (0,)
    return [Workload(protocol, streams, m, udp_bitrate, kind, r) for r in rates for m in message_bytes]


@dataclass(frozen=True)
class Scenario:
    name: str = "default"
    backends: tuple[str, ...] = ("all",)
    directions: tuple[str, ...] = ("rx", "tx")
    accel: str = "auto"
    duration_s: int = 5
    omit_s: int = 1
    repeats: int = 3
    boot_timeout_s: float = 90.0
    retries: int = 1
    copy_trace: bool = False
    exit_reasons: bool | str = False  # or "alternate"; off by default until its effect on the lab's stalls is measured
    timeline_interval_s: float = 1.0
    kind: str = "stream"
    protocol: str = "tcp"
    streams: int = 1
    message_bytes: tuple[int, ...] = (0,)
    udp_bitrate: str = "1G"
    rates_pps: tuple[int, ...] = ()
    more_workloads: tuple[Workload, ...] = ()  # from the second [[workload]] table on, expanded
    vcpus: int = 1
    memory_mb: int = 256
    offloads: bool = True
    qemu_args: tuple[str, ...] = field(default=())
    kernel_args: tuple[str, ...] = field(default=())  # [guest]: guest kernel command-line words (vm.kernel_cmdline)
    variants: tuple[Variant, ...] = ()  # [backends.<name>]: built-ins with knobs set (backends.Variant)
    order: str = "fixed"  # [run]: "abba" reverses the backends' order every other round (iobench ab)
    topology: tuple[str, ...] = (topologies.DEFAULT,)  # [run]: the host side of the tap (iobench.topologies)
    placement: str = "none"  # [placement]: none, auto, alternate, or "role=cpus,..." (iobench.placement.parse)
    on_host_change: str = "not-comparable"  # [gate]: what the gate does with host-bound metrics on another host
    source: str = "built-in defaults"

    @property
    def workloads(self) -> list[Workload]:
        return [*expand(self.kind, self.protocol, self.streams, self.message_bytes, self.udp_bitrate, self.rates_pps),
                *self.more_workloads]

    @property
    def kinds(self) -> set[str]:
        return {w.kind for w in self.workloads}

    def cell_directions(self, w: Workload) -> tuple[str, ...]:
        return w.directions or self.directions

    @property
    def cells_per_backend_round(self) -> int:
        return sum(len(self.cell_directions(w)) for w in self.workloads)

    def with_overrides(self, **changes: Any) -> Scenario:
        """Apply CLI options (None = not given) and validate the result."""
        given = {k: v for k, v in changes.items() if v is not None}
        out = replace(self, **given)
        validate(out, origin="command line" if given else self.source)
        return out


# section -> key -> (type, check, allowed-text)
_SCHEMA: dict[str, dict[str, tuple[type, Any, str]]] = {
    "run": {
        "backends": (list, lambda v: v and all(isinstance(b, str) for b in v),
                     f"a non-empty list of {', '.join(BACKEND_NAMES)}, the scenario's variants, or all"),
        "directions": (list, lambda v: v and all(d in ("rx", "tx") for d in v), 'a non-empty list of "rx", "tx"'),
        "accel": (str, lambda v: v in ("auto", "kvm", "tcg", "lab"), "auto, kvm, tcg or lab"),
        "duration_s": (int, lambda v: 1 <= v <= 3600, "an integer from 1 to 3600"),
        "omit_s": (int, lambda v: 0 <= v <= 60, "an integer from 0 to 60"),
        "repeats": (int, lambda v: 1 <= v <= 100, "an integer from 1 to 100"),
        "boot_timeout_s": (float, lambda v: 5 <= v <= 3600, "a number of seconds from 5 to 3600"),
        "retries": (int, lambda v: 0 <= v <= 5, "an integer from 0 to 5"),
        "copy_trace": (bool, lambda v: True, "true or false"),
        "exit_reasons": (object, lambda v: isinstance(v, bool) or v == "alternate",
                         'true, false or "alternate" (on in half the rounds, ABBA: the tracing\'s own cost)'),
        "timeline_interval_s": (float, lambda v: v == 0 or 0.5 <= v <= 60, "0 (off) or seconds from 0.5 to 60"),
        "topology": (list, lambda v: v and all(t in (*topologies.TOPOLOGIES, topologies.ALL) for t in v)
                     and len(set(v)) == len(v),
                     f"a non-empty list of distinct topologies: {', '.join(topologies.TOPOLOGIES)} or "
                     f"{topologies.ALL} (every one this host can build)"),
        "order": (str, lambda v: v in ("fixed", "abba"),
                  '"fixed" (every round in the backends\' order) or "abba" (every other round reversed: drift '
                  'falls on every backend alike; what `iobench ab` runs)'),
    },
    "workload": {
        "kind": (str, lambda v: v in ("stream", "rr", "paced"),
                 '"stream" (iperf3), "rr" (sockperf request/response) or "paced" (iperf3 UDP at fixed rates)'),
        "protocol": (str, lambda v: v in ("tcp", "udp"), '"tcp" or "udp"'),
        "streams": (int, lambda v: 1 <= v <= 128, "an integer from 1 to 128"),
        "message_bytes": (list, lambda v: v and all(isinstance(x, int) and not isinstance(x, bool)
                                                    and (x == 0 or 14 <= x <= 1 << 20) for x in v),
                          "a non-empty list of sizes in bytes, 14 to 1048576, or 0 for the tool's default"),
        "udp_bitrate": (str, lambda v: v[:-1].isdigit() and v[-1] in "0123456789KMG" or v.isdigit(),
                        'an iperf3 bitrate such as "500M" or "1G"'),
        "rates_pps": (list, lambda v: all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 1_000_000
                                          for x in v), "a list of datagram rates per second, 1 to 1000000"),
    },
    "guest": {
        "vcpus": (int, lambda v: 1 <= v <= 64, "an integer from 1 to 64"),
        "memory_mb": (int, lambda v: 128 <= v <= 65536, "an integer from 128 to 65536"),
        "offloads": (bool, lambda v: True, "true or false"),
        "qemu_args": (list, lambda v: all(isinstance(x, str) for x in v), "a list of strings"),
        "kernel_args": (list, lambda v: all(isinstance(x, str) and _KERNEL_WORD.match(x)
                                            and not x.startswith(_RESERVED_KERNEL_WORDS) for x in v),
                        'a list of kernel command-line words such as "nohz=off" (no spaces or quotes; '
                        'console=, panic=, iobench.* and init= are iobench\'s own)'),
    },
    "gate": {
        "on_host_change": (str, lambda v: v in ("not-comparable", "report"), '"not-comparable" or "report"'),
    },
}


def _check(section: str, key: str, value: Any, origin: str) -> Any:
    kind, ok, allowed = _SCHEMA[section][key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise UserError(f"{origin}: [{section}] {key} = {value!r} has the wrong type: expected {allowed}.")
    if not ok(value):
        raise UserError(f"{origin}: [{section}] {key} = {value!r} is not allowed: expected {allowed}.")
    return tuple(value) if isinstance(value, list) else value


def load(path: Path) -> Scenario:
    """Parse and validate a scenario file. Raises UserError (exit 2) naming the file and key."""
    origin = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UserError(f"{origin}: no such scenario file.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{origin}: not valid TOML ({exc}).") from exc
    values: dict[str, Any] = {"name": path.stem, "source": origin}
    if "backends" in data:
        values["variants"] = _variants(data.pop("backends"), origin)
    if "placement" in data:
        values["placement"] = _placement(data.pop("placement"), origin)
    tables = data.pop("workload", None)
    if isinstance(tables, list):  # [[workload]]: the first is the scenario's own, the rest are expanded here
        if not tables or not all(isinstance(t, dict) for t in tables):
            raise UserError(f"{origin}: [[workload]] must be tables, one per workload.")
        data["workload"] = tables[0]
        values["more_workloads"] = tuple(w for i, t in enumerate(tables[1:], 2)
                                         for w in _workload_table(t, f"{origin}: [[workload]] #{i}"))
    elif tables is not None:
        data["workload"] = tables
    for section, table in data.items():
        if section not in _SCHEMA:
            raise UserError(f"{origin}: unknown section [{section}]: allowed are {', '.join(f'[{s}]' for s in _SCHEMA)}.")
        if not isinstance(table, dict):
            raise UserError(f"{origin}: {section} must be a [{section}] table.")
        for key, value in table.items():
            if key not in _SCHEMA[section]:
                raise UserError(f"{origin}: unknown key {key!r} in [{section}]: allowed are {', '.join(_SCHEMA[section])}.")
            values[key] = _check(section, key, value, origin)
    scenario = Scenario(**values)
    validate(scenario, origin)
    return scenario


def _placement(table: Any, origin: str) -> str:
    """[placement]: mode = "auto" | "none" | "alternate", or one CPU list per role; as the spec text."""
    if not isinstance(table, dict) or not table:
        raise UserError(f"{origin}: [placement] must be a table: mode = \"auto\", or roles such as vcpu0 = \"2\".")
    if "mode" in table:
        if len(table) > 1 or not isinstance(table["mode"], str):
            raise UserError(f"{origin}: [placement] has mode = \"auto\"|\"none\"|\"alternate\" or CPU lists per "
                            "role, not both.")
        text = table["mode"]
    else:
        text = ",".join(f"{role}={cpus}" for role, cpus in table.items())
    placement.parse(text, f"{origin}: [placement]")
    return text


def _workload_table(table: dict[str, Any], where: str) -> list[Workload]:
    """A second or later [[workload]] table: the same keys and checks as [workload]."""
    given = Scenario()
    values: dict[str, Any] = {f.name: getattr(given, f.name) for f in fields(Scenario) if f.name in _SCHEMA["workload"]}
    for key, value in table.items():
        if key not in _SCHEMA["workload"]:
            raise UserError(f"{where}: unknown key {key!r}: allowed are {', '.join(_SCHEMA['workload'])}.")
        values[key] = _check("workload", key, value, where)
    _check_workload(values["kind"], values["protocol"], values["streams"], values["message_bytes"],
                    values["rates_pps"], where)
    return expand(values["kind"], values["protocol"], values["streams"], values["message_bytes"],
                  values["udp_bitrate"], values["rates_pps"])


def _check_workload(kind: str, protocol: str, streams: int, message_bytes: tuple[int, ...], rates_pps: tuple[int, ...],
                    where: str) -> None:
    """What a workload's own keys must agree on (the types were checked one by one)."""
    if protocol == "udp" and message_bytes != (0,) and max(message_bytes) > 65507:
        raise UserError(f"{where}: [workload] message_bytes above 65507 are impossible with UDP.")
    if kind == "stream" and any(0 < m < 64 for m in message_bytes):
        raise UserError(f"{where}: [workload] message_bytes below 64 are not measured with kind = \"stream\" "
                        "(iperf3 writes): use 64 or more, or kind = \"rr\" for small request/response messages.")
    if kind == "rr" and streams != 1:
        raise UserError(f"{where}: [workload] streams must be 1 with kind = \"rr\": one transaction in flight.")
    if kind == "paced":
        if protocol != "udp":
            raise UserError(f"{where}: [workload] kind = \"paced\" offers UDP datagrams at a fixed rate: "
                            "set protocol = \"udp\".")
        if not rates_pps:
            raise UserError(f"{where}: [workload] kind = \"paced\" needs rates_pps, e.g. rates_pps = [1000, 10000].")
        if 0 in message_bytes or any(m < 64 for m in message_bytes):
            raise UserError(f"{where}: [workload] kind = \"paced\" needs the datagram's size: message_bytes of 64 "
                            "or more (the offered bit rate is rate x size).")
        if streams != 1:
            raise UserError(f"{where}: [workload] kind = \"paced\" is one sender at the offered rate: streams = 1.")
    elif rates_pps:
        raise UserError(f"{where}: [workload] rates_pps is for kind = \"paced\" only.")


def _variants(table: Any, origin: str) -> tuple[Variant, ...]:
    """[backends.<name>] tables: base = "e1000"|"virtio"|"vhost", device = {...}, netdev = {...}."""
    if not isinstance(table, dict) or not all(isinstance(t, dict) for t in table.values()):
        raise UserError(f"{origin}: [backends] must hold one [backends.<name>] table per variant.")
    out = []
    for name, spec in table.items():
        where = f"{origin}: [backends.{name}]"
        if not _VARIANT_NAME.match(name) or name in (*BACKEND_NAMES, "all"):
            raise UserError(f"{where}: a variant's name is 1-40 of a-z 0-9 _ . - and not a built-in name "
                            f"({', '.join(BACKEND_NAMES)}, all).")
        unknown = [k for k in spec if k not in _VARIANT_KEYS]
        if unknown:
            raise UserError(f"{where}: unknown key {unknown[0]!r}: allowed are {', '.join(_VARIANT_KEYS)}.")
        if spec.get("base") not in BACKENDS:
            raise UserError(f"{where}: base = {spec.get('base')!r}: expected one of {', '.join(BACKENDS)}.")
        knobs = {}
        for section, reserved in (("device", RESERVED_DEVICE_PROPS), ("netdev", RESERVED_NETDEV_PROPS)):
            given = spec.get(section, {})
            if not isinstance(given, dict):
                raise UserError(f"{where}: {section} must be a table, e.g. {section} = {{ key = value }}.")
            for key, value in given.items():
                if key in reserved:
                    raise UserError(f"{where}: {section}.{key} is set by iobench itself (the topology and the "
                                    "datapath depend on it); choose the base backend instead.")
                if not isinstance(value, bool | int | str) or isinstance(value, str) and re.search(r"[,=\s]", value):
                    raise UserError(f"{where}: {section}.{key} = {value!r}: expected true/false, an integer or a "
                                    "word without commas, '=' or spaces.")
            knobs[section] = tuple((k, qemu_value(v)) for k, v in given.items())
        queues = spec.get("queues", 1)
        if isinstance(queues, bool) or not isinstance(queues, int) or not 1 <= queues <= 8:
            raise UserError(f"{where}: queues = {queues!r}: expected an integer from 1 to 8.")
        if queues > 1 and not BACKENDS[spec["base"]].device.startswith("virtio"):
            raise UserError(f"{where}: queues = {queues}: multiqueue is a virtio-net feature; base must be virtio or vhost.")
        if queues > 1 and {"mq", "vectors"} & {k for k, _ in knobs["device"]} | {"queues"} & {k for k, _ in knobs["netdev"]}:
            raise UserError(f"{where}: queues = {queues} sets the device's mq and vectors and the tap's queues "
                            "itself; leave those out.")
        qemu_args = spec.get("qemu_args", [])
        if not isinstance(qemu_args, list) or not all(isinstance(a, str) for a in qemu_args):
            raise UserError(f"{where}: qemu_args = {qemu_args!r}: expected a list of strings, e.g. "
                            '["-cpu", "host,kvm-pv-eoi=off"].')
        qemu = spec.get("qemu", "")
        if not isinstance(qemu, str) or (spec.get("qemu") is not None and not qemu.strip()):
            raise UserError(f"{where}: qemu = {qemu!r}: expected the path of a qemu-system-x86_64 binary, e.g. "
                            "one `iobench qemu fetch` unpacked.")
        kernel = spec.get("kernel", "")
        if not isinstance(kernel, str) or (spec.get("kernel") is not None and not _KERNEL_RELEASE.fullmatch(kernel)):
            raise UserError(f"{where}: kernel = {kernel!r}: expected a Debian kernel release, what follows "
                            "linux-image- in its package name (e.g. \"6.12.100+deb12-amd64\"; "
                            "`apt-cache search --names-only '^linux-image-[0-9]'` lists them).")
        out.append(Variant(name, spec["base"], knobs["device"], knobs["netdev"], queues,
                           _guest_knobs(spec.get("guest", {}), where), tuple(qemu_args),
                           os.path.expanduser(qemu) if qemu else "", kernel))
    return tuple(out)


def _guest_knobs(table: Any, where: str) -> tuple[tuple[str, str, str], ...]:
    """guest = { sysctl = {"net.core.busy_poll" = 50}, coalesce = {rx-usecs = 0}, features = {gro = false},
    rings = {rx = 1024}, channels = {combined = 2} }: what guest-init.sh sets with sysctl and ethtool."""
    if not isinstance(table, dict):
        raise UserError(f"{where}: guest must be a table, e.g. guest = {{ sysctl = {{ \"net.core.busy_poll\" = 50 }} }}.")
    out = []
    for tool, knobs in table.items():
        if tool not in GUEST_TOOLS:
            raise UserError(f"{where}: guest.{tool}: allowed are {', '.join(GUEST_TOOLS)}.")
        if not isinstance(knobs, dict):
            raise UserError(f"{where}: guest.{tool} must be a table of settings.")
        for key, value in knobs.items():
            text = qemu_value(value) if isinstance(value, bool | int) else value
            if not _GUEST_KEY.match(key) or not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", text):
                raise UserError(f"{where}: guest.{tool}.{key} = {value!r}: expected a setting name and a number, "
                                "true/false or a word.")
            out.append((tool, key, text))
    return tuple(out)


def variant_kernels(s: Scenario) -> tuple[str, ...]:
    """The guest kernels of the variants this scenario runs (each needs an image of its own)."""
    runs = set(s.backends)
    return tuple(sorted({v.kernel for v in s.variants if v.kernel and ("all" in runs or v.name in runs)}))


def backend_names(s: Scenario) -> tuple[str, ...]:
    """The backends this scenario can name: the built-ins, its variants, native."""
    return (*BACKENDS, *(v.name for v in s.variants), "native")


def validate(s: Scenario, origin: str) -> None:
    """Cross-field checks and CLI values (the file's own types were checked on load)."""
    for f in fields(Scenario):
        for section, keys in _SCHEMA.items():
            if f.name in keys:
                value = getattr(s, f.name)
                _check(section, f.name, list(value) if isinstance(value, tuple) else value, origin)
    for v in s.variants:
        if v.queues > s.vcpus:
            raise UserError(f"{origin}: [backends.{v.name}] queues = {v.queues} needs as many vCPUs (one queue pair "
                            f"per vCPU): set [guest] vcpus = {v.queues}.")
        if v.queues > max(w.streams for w in s.workloads) and "stream" in s.kinds:
            raise UserError(f"{origin}: [backends.{v.name}] queues = {v.queues} spreads the workload's streams over "
                            f"the queues: set [workload] streams to at least {v.queues}.")
    unknown = [b for b in s.backends if b not in (*backend_names(s), "all")]
    if unknown:
        raise UserError(f"{origin}: [run] backends: unknown backend {unknown[0]!r}: choose from "
                        f"{', '.join(backend_names(s))} or all.")
    _check_workload(s.kind, s.protocol, s.streams, s.message_bytes, s.rates_pps, origin)
    placement.parse(s.placement, origin)


def as_dict(s: Scenario) -> dict[str, Any]:
    out = {f.name: getattr(s, f.name) for f in fields(Scenario)}
    out["variants"] = [{"name": v.name, "base": v.base, "device": dict(v.device), "netdev": dict(v.netdev),
                        "queues": v.queues, "guest": [list(g) for g in v.guest], "qemu_args": list(v.qemu_args), "qemu": v.qemu,
                        "kernel": v.kernel}
                       for v in s.variants]
    out["more_workloads"] = [asdict(w) for w in s.more_workloads]
    return out
