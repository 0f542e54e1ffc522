"""The instrument protocol: what acts around a VM or a measured window, and what it gives back.

Why one interface: the runner should orchestrate, not know each counter. Every source of a number
(KVM statistics, TCG trap equivalents, /proc, the link counters, exit reasons and where they land,
the copy trace, what the guest driver negotiated) and everything else that acts around a window
(the fault hook) is an `Instrument`. The runner calls the same hooks on all of them, in the
registry's order, and assembles rows from what they return; adding a source is one module, one
registry line and one test, as pbench registers its tools and perf attaches its tools by name.

The moments an instrument acts:
- `describe()`: once, its entries for run.json (on, off and why, what it counts);
- `after_boot(boot)`: a VM is up (the guest's driver has negotiated, its BARs are placed);
- `start(window)` / `stop(window)`: around a window (idle or traffic), in order / in reverse order;
- `sample(window)`: a reading of its counters, at the window's edges and at each timeline tick
  (None: it has none); an instrument with `edges_only` is sampled at the edges alone;
- `read(window, samples)`: after `stop`, what the window measured: a `Reading`;
- `record(sample)`: a sample as JSON, for raw/<cell>.counters.json (the counters at the window's edges);
- `close()`: the run is over (unload, unlock), whatever happened.

Availability is the instrument's own answer: one that cannot run here says why in `describe()`
and returns its columns empty, with the reason in the reading's `na`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iobench.backends import Backend
from iobench.measure import CellId
from iobench.ovs import Ovs
from iobench.scenario import Scenario
from iobench.store import ResultsWriter
from iobench.switch import Switch
from iobench.vm import VM

Log = Callable[[str], None]


@dataclass
class RunScope:
    """What every instrument may know of the run it serves. `meta` is run.json in the making (an
    instrument records what it learns of a backend under meta["backends"][name])."""

    scn: Scenario
    accel: str
    run_id: str
    writer: ResultsWriter
    log: Log
    l1_attempt: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Boot:
    """A VM that has just booted: one attempt of one backend in one round. `facts` carries what an
    instrument learned for the others and for raw/<tag>/boot-and-idle.json."""

    vm: VM
    backend: Backend
    tag: str
    repeat: int
    attempt: int
    facts: dict[str, Any] = field(default_factory=dict)
    host_offloads: Callable[[], dict[str, dict[str, bool | None]]] | None = None  # the topology's interfaces'
    switch: Switch | None = None  # the userspace switch serving this VM's rings (vhost-user), if any
    ovs: Ovs | None = None  # the topology's Open vSwitch the VM's tap is a port of (ovs, ovs-netdev), if any


@dataclass
class Window:
    """One measured window: a VM's idle window, a VM's traffic window, or a native traffic window
    (no VM: `vm` and `boot` are None, `pid` is the peer's iperf3 server).

    `data_keys`: the link counters whose bytes and frames are the window's data; `facts`: what an
    earlier instrument learned in this window for a later one (the threads seen, the packets)."""

    phase: str  # "idle" or "traffic"
    backend: str
    repeat: int
    attempt: int
    raw_name: str  # where its raw files go: "<backend>/r<n>-<workload>-<dir>" or "<tag>-idle"
    pid: int
    link_stats: Callable[[], dict[str, int]]
    data_keys: tuple[tuple[str, ...], tuple[str, ...]]
    cell: CellId | None = None  # None: the idle window
    vm: VM | None = None
    boot: Boot | None = None
    client_pids: list[int] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    peer_cpus: list[int] | None = None  # where the traffic tool starts (the placement's `peer`); None: anywhere
    topology: str = "direct"  # the host side of the tap the window runs over (iobench.topologies)
    port_stats: Callable[[], dict[str, dict[str, int]]] | None = None  # the bridge's ports' counters, by name
    host_offloads: Callable[[], dict[str, dict[str, bool | None]]] | None = None  # as Boot's (native windows)
    ovs: Ovs | None = None  # the topology's own Open vSwitch (ovs, ovs-netdev), whose bridge the window crosses

    @property
    def traffic(self) -> bool:
        return self.phase == "traffic"


@dataclass
class Reading:
    """What one instrument read in one window.

    `columns`: the row's columns it owns (None where not read); `na`: why some are None, one phrase
    each; `raw`: files for raw/ (name -> content); `tables`: rows for per-window tables
    (exit_reasons.csv, exit_sites.csv); `slices`: its columns for each timeline slice between
    consecutive samples (empty: it adds nothing to the timeline)."""

    columns: dict[str, Any] = field(default_factory=dict)
    na: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    slices: list[dict[str, Any]] = field(default_factory=list)


class Instrument:
    """The hooks, each a no-op here: an instrument overrides the moments it acts at."""

    name = ""
    # True: read at a window's edges only, not at each timeline tick (its reading has no slices; between
    # the edges its samples are None): a source whose read costs more than the timeline needs of it.
    edges_only = False

    def describe(self) -> dict[str, Any]:
        return {}

    def after_boot(self, boot: Boot) -> None:
        return None

    def start(self, window: Window) -> None:
        return None

    def sample(self, window: Window) -> Any:
        return None

    def stop(self, window: Window) -> None:
        return None

    def read(self, window: Window, samples: list[Any]) -> Reading:
        return Reading()

    def record(self, sample: Any) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return None
