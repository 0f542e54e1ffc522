"""Where each thread of the I/O path runs: the scenario's placement, the host's cores, the plan.

Why: where the vCPU, the vhost worker and the traffic peer run decides who waits for whom, and with
it the batching behind every per-packet count; two of them on one core or on SMT siblings change the
numbers as much as the datapath does. A placement is data, like a backend: a mode and, per role,
the CPUs it may use. The roles:

- `vcpu<N>`: QEMU's vCPU thread N (thread id from QMP `query-cpus-fast`);
- `qemu-main`: QEMU's main loop and its helper threads (the emulator threads, as libvirt's
  `emulatorpin`; threads QEMU makes later inherit the main thread's set);
- `iothread`: QEMU's I/O threads, where the scenario has any;
- `vhost`: the vhost-net worker (a kernel thread `vhost-<qemu pid>`, or a task of QEMU on 6.4+);
- `pmd`: the vhost-user switch's threads (testpmd: its poll core, which spins, and its idle helpers);
- `ovs`: the run's Open vSwitch's threads (ovs-vswitchd: main loop, handler, revalidator), over the ovs
  topologies: the host side's switch, placed after the peer;
- `peer`: the traffic tool on the host side (iperf3 or sockperf in the run's namespace); in a native
  window, the server standing in for the guest takes `vcpu0`'s set.

Modes: `none` pins nothing (the facts are still recorded: the documented way to measure unpinned);
`auto` puts the vCPUs, the vhost worker and the peer on distinct physical cores of one NUMA node,
never on SMT siblings of each other, preferring isolated cores and keeping off CPU 0's core while
others are free (housekeeping and most interrupts land there); where the machine has too few cores
the plan says which roles share. An explicit spec names the CPUs: `vcpu0=2,vhost=3,peer=4-5`
(roles left out are not pinned). `alternate` runs `auto` in rounds 1, 4, 5, 8... and `none` in the
others (ABBA, as exit_reasons = "alternate"), so that one run measures what pinning changes.

This module plans and applies; instruments.placement finds the threads of each VM and records what
was read back, instruments.sched reads the scheduling facts of every role per window.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from iobench.counters import proc
from iobench.errors import UserError
from iobench.hoststate import cpulist, read_file

MODES = ("none", "auto", "alternate")
ROLES = ("qemu-main", "iothread", "vhost", "pmd", "peer", "ovs")
_ROLE = re.compile(r"^(vcpu(?P<n>\d{1,2})|qemu-main|iothread|vhost|pmd|peer|ovs)$")
_CPUS = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
SYS_CPU = Path("sys/devices/system/cpu")


def cpustr(cpus: list[int] | set[int] | frozenset[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5" (the kernel's own list format, as Cpus_allowed_list prints it)."""
    out: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


@dataclass(frozen=True)
class Spec:
    """A scenario's placement: its mode, or ("roles") the CPUs of each role named."""

    mode: str = "none"
    roles: tuple[tuple[str, str], ...] = ()  # mode "roles": (role, cpu list)

    @property
    def text(self) -> str:
        return ",".join(f"{r}={c}" for r, c in self.roles) if self.mode == "roles" else self.mode

    def mode_in(self, repeat: int) -> str:
        """The mode a round runs: `alternate` is auto in rounds 1, 4, 5, 8... and none in 2, 3, 6, 7...
        (ABBA: a drift across the run falls on both halves alike)."""
        if self.mode == "alternate":
            return "none" if repeat % 4 in (2, 3) else "auto"
        return self.mode


def parse(text: str, where: str) -> Spec:
    """`auto`, `none`, `alternate` or `role=cpus,role=cpus...`; anything else is one sentence, exit 2."""
    text = text.strip()
    if text in MODES:
        return Spec(text)
    roles: list[tuple[str, str]] = []
    for part in filter(None, re.split(r"[,;]\s*(?=[a-z])", text)):
        role, eq, cpus = part.partition("=")
        role, cpus = role.strip(), cpus.strip()
        if not eq or not _ROLE.match(role) or not _CPUS.match(cpus):
            raise UserError(f"{where}: placement {text!r} is not allowed: expected auto, none, alternate, or roles "
                            "with CPU lists such as \"vcpu0=2,vhost=3,peer=4-5\" (roles: vcpu<N>, qemu-main, iothread, "
                            "vhost, pmd, peer, ovs).")
        if role in dict(roles):
            raise UserError(f"{where}: placement names {role} twice.")
        roles.append((role, cpus))
    if not roles:
        raise UserError(f"{where}: placement is empty: expected auto, none, alternate or role=cpus pairs.")
    return Spec("roles", tuple(roles))


@dataclass(frozen=True)
class Cpu:
    cpu: int
    core: tuple[int, int]  # (package, core id): SMT siblings share it
    node: int


@dataclass(frozen=True)
class HostCpus:
    """The host's online CPUs as the scheduler sees them: cores, SMT siblings, NUMA nodes, isolation."""

    cpus: tuple[Cpu, ...]
    isolated: frozenset[int] = frozenset()
    allowed: frozenset[int] = frozenset()  # this process's own affinity: nothing outside it is used

    @property
    def cores(self) -> dict[tuple[int, int], list[int]]:
        out: dict[tuple[int, int], list[int]] = {}
        for c in self.cpus:
            out.setdefault(c.core, []).append(c.cpu)
        return out


def host_cpus(root: Path = Path("/"), allowed: set[int] | None = None) -> HostCpus:
    """The online CPUs from /sys: core (package, core_id), NUMA node, isolation. `root`: a captured tree."""
    online = cpulist(read_file(root, SYS_CPU / "online") or "")
    allowed = allowed if allowed is not None else (os.sched_getaffinity(0) if root == Path("/") else set(online))
    nodes: dict[int, int] = {}
    for node in (root / "sys/devices/system/node").glob("node[0-9]*"):
        for cpu in cpulist(read_file(root, node.relative_to(root) / "cpulist") or ""):
            nodes[cpu] = int(node.name[4:])
    cpus = []
    for cpu in online:
        topo = SYS_CPU / f"cpu{cpu}" / "topology"
        package = read_file(root, topo / "physical_package_id")
        core = read_file(root, topo / "core_id")
        cpus.append(Cpu(cpu, (int(package or 0), int(core) if core is not None else cpu), nodes.get(cpu, 0)))
    isolated = frozenset(cpulist(read_file(root, SYS_CPU / "isolated") or ""))
    return HostCpus(tuple(cpus), isolated, frozenset(allowed))


@dataclass
class Plan:
    """Role -> CPUs to pin it to (roles absent: not pinned), and why, in words for run.json."""

    mode: str
    cpus: dict[str, list[int]] = field(default_factory=dict)
    why: list[str] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)  # "vhost shares core 0 with peer"

    def for_role(self, role: str) -> list[int] | None:
        return self.cpus.get(role)

    def as_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "cpus": {r: cpustr(c) for r, c in self.cpus.items()}, "why": self.why,
                "shared": self.shared}


def roles_for(vcpus: int, vhost: bool, iothread: bool = False, pmd: bool = False, ovs: bool = False) -> list[str]:
    """The roles of one VM, in the order `auto` gives them cores: the vCPUs first, then the switch's poll
    core (it spins: nothing else should share its core), the vhost worker and the peer (those that pass
    every packet), the host's Open vSwitch (its kernel datapath forwards in softirq: its threads take the
    misses), then QEMU's main loop and I/O threads."""
    return [*(f"vcpu{i}" for i in range(vcpus)), *(["pmd"] if pmd else []), *(["vhost"] if vhost else []), "peer",
            *(["ovs"] if ovs else []), "qemu-main", *(["iothread"] if iothread else [])]


def plan(spec: Spec, mode: str, roles: list[str], host: HostCpus) -> Plan:
    """The CPUs of each role for a round run in `mode` (spec.mode_in(repeat))."""
    if mode == "none":
        return Plan("none", why=["placement none: nothing pinned; the scheduler places every thread"])
    if mode == "roles":
        named = dict(spec.roles)
        out = Plan("roles", {r: cpulist(c) for r, c in named.items()},
                   why=["placement given by role: roles not named are not pinned"])
        outside = sorted({c for cpus in out.cpus.values() for c in cpus} - host.allowed)
        if outside:
            raise UserError(f"placement names CPU {cpustr(outside)}, which this machine does not offer iobench "
                            f"(online and allowed: {cpustr(host.allowed)}); name CPUs from that list.")
        return out
    return _auto(roles, host)


def _auto(roles: list[str], host: HostCpus) -> Plan:
    """Distinct physical cores for the vCPUs, the vhost worker and the peer, on the NUMA node with the
    most usable cores (of equals, one without CPU 0); isolated cores first, CPU 0's core last; each
    role gets every SMT sibling of its core (no other role runs on them). Roles left over when the
    cores run out share, and say so: qemu-main and iothread join the last core given to a non-vCPU
    role, never a vCPU's while another is free."""
    cores = {k: [c for c in v if c in host.allowed] for k, v in host.cores.items()}
    cores = {k: v for k, v in cores.items() if v}
    node_of = {c.core: c.node for c in host.cpus}
    by_node: dict[int, list[tuple[int, int]]] = {}
    for core in cores:
        by_node.setdefault(node_of[core], []).append(core)
    zero_core = next((c.core for c in host.cpus if c.cpu == 0), None)
    node, candidates = max(by_node.items(), key=lambda kv: (len(kv[1]), zero_core not in kv[1], -kv[0]))
    candidates.sort(key=lambda k: (not set(cores[k]) & host.isolated, k == zero_core, k))
    out = Plan("auto", why=[f"NUMA node {node}: {len(candidates)} usable core(s)"
                            + (f", isolated CPUs {cpustr(host.isolated)} first" if host.isolated else "")
                            + (", CPU 0's core last (housekeeping, interrupts)" if len(candidates) > 1 else "")])
    owner: dict[tuple[int, int], list[str]] = {}
    free = list(candidates)
    vcpu_cores: set[tuple[int, int]] = set()
    last_other: tuple[int, int] | None = None
    for role in roles:
        if free:
            core = free.pop(0)
        elif role.startswith("vcpu"):  # more vCPUs than cores: the least crowded core
            core = min(candidates, key=lambda k: (len(owner.get(k, [])), k))
        else:  # a helper role: with the other helpers, away from the vCPUs while possible
            helpers = [k for k in candidates if k not in vcpu_cores] or candidates
            core = last_other if last_other in helpers else min(helpers, key=lambda k: (len(owner.get(k, [])), k))
        owner.setdefault(core, []).append(role)
        if role.startswith("vcpu"):
            vcpu_cores.add(core)
        else:
            last_other = core
        out.cpus[role] = sorted(cores[core])
    for core, who in owner.items():
        if len(who) > 1:
            out.shared.append(f"{', '.join(who)} share core {cpustr(cores[core])}")
    if out.shared:
        out.why.append(f"too few cores for one each ({len(roles)} roles, {len(candidates)} cores): "
                       + "; ".join(out.shared))
    return out


@dataclass(frozen=True)
class Pinned:
    """One thread's placement: what was asked, what the kernel read back, or why it refused."""

    role: str
    tid: int
    comm: str
    requested: str | None  # None: not pinned (mode none, or a role the spec leaves out)
    read_back: str | None  # None: the thread was gone
    error: str = ""

    @property
    def wrong(self) -> bool:
        """Refused, or pinned and read back otherwise."""
        return bool(self.error) or self.requested is not None and self.requested != self.read_back


class QemuProcess(Protocol):
    """What vm_threads needs of a VM: its pid and a QMP command (iobench.vm.VM, the lab's L1)."""

    @property
    def pid(self) -> int: ...

    def command(self, cmd: str, **args: Any) -> Any: ...


def vm_threads(vm: QemuProcess) -> dict[str, list[tuple[int, str]]]:
    """Role -> [(tid, comm)] of one QEMU: vCPUs by QMP's own thread ids, the rest by the names QEMU
    gives its threads (debug-threads=on) and the vhost worker's name (counters.proc.thread_kind)."""
    out: dict[str, list[tuple[int, str]]] = {}
    threads = {t.tid: t for t in proc.read_threads(vm.pid)}
    for cpu in vm.command("query-cpus-fast"):
        tid = int(cpu["thread-id"])
        comm = threads[tid].comm if tid in threads else "?"
        out[f"vcpu{cpu['cpu-index']}"] = [(tid, comm)]
    vcpu_tids = {tid for found in out.values() for tid, _ in found}
    by_kind = {"main": "qemu-main", "other": "qemu-main", "iothread": "iothread", "vhost": "vhost"}
    for t in threads.values():
        if t.tid not in vcpu_tids and t.kind in by_kind:
            out.setdefault(by_kind[t.kind], []).append((t.tid, t.comm))
    out.setdefault("qemu-main", []).sort(key=lambda tc: tc[0] != vm.pid)  # the main loop first
    return out


def pin_all(found: dict[str, list[tuple[int, str]]], made: Plan) -> list[Pinned]:
    """Every thread found pinned as the plan says for its role (roles the plan leaves out: read back only)."""
    return [pin(role, tid, comm, made.for_role(role)) for role, threads in found.items() for tid, comm in threads]


def pin(role: str, tid: int, comm: str, cpus: list[int] | None) -> Pinned:
    """sched_setaffinity on one thread (when `cpus`), then its affinity read back from the kernel."""
    error = ""
    if cpus is not None:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError as exc:
            error = f"sched_setaffinity({tid}, {cpustr(cpus)}) refused: {exc.strerror}"
    try:
        back: str | None = cpustr(os.sched_getaffinity(tid))
    except OSError:
        back = None
    return Pinned(role, tid, comm, cpustr(cpus) if cpus is not None else None, back, error)
