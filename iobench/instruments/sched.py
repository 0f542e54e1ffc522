"""Scheduling facts per window and role: the CPUs each thread may use, the CPU it last ran on, its
migrations and its voluntary and involuntary context switches over the window.

Why: whether the vCPU, the vhost worker or the peer moved between CPUs, or was preempted, during a
window explains a noisy per-packet count better than any statistic after the fact. Read from
/proc/<tid>/sched (the scheduler's own counters; CONFIG_SCHED_DEBUG), /proc/<tid>/stat (the CPU last
run on) and /proc/<tid>/status (the allowed CPUs, as the kernel reads the affinity back; and the
context switches where /proc/<tid>/sched is missing). Each window's facts go to
raw/<window>.sched.json; the row gets `migrations` (all roles) and `migrated_roles`.

The peer (the traffic client) starts and ends inside the window: its context switches are exact from
the kernel's accounting of reaped children (RUSAGE_CHILDREN); its CPU and migrations are as of the
last sample taken while it ran (a timeline tick), and missing with the reason when none was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from iobench import placement
from iobench.counters import proc
from iobench.instruments.base import Instrument, Reading, RunScope, Window


@dataclass(frozen=True)
class TaskSched:
    tid: int
    comm: str
    allowed: str | None
    last_cpu: int | None
    migrations: int | None  # None: no /proc/<tid>/sched on this kernel
    voluntary: int | None
    involuntary: int | None


def parse_sched(text: str) -> dict[str, int]:
    """/proc/<tid>/sched's "name : value" lines, the integer ones."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip().lstrip("-").isdigit():
            out[key.strip()] = int(value)
    return out


def parse_status(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines())}


def last_cpu(stat: str) -> int:
    """Field 39 of /proc/<tid>/stat (processor), counted after the command's closing parenthesis."""
    return int(stat[stat.rindex(")") + 2:].split()[36])


def read_task(tid: int, root: Path = Path("/proc")) -> TaskSched | None:
    """One thread's facts now (None: it is gone)."""
    base = root / str(tid)
    try:
        status = parse_status((base / "status").read_text())
        stat = (base / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        sched: dict[str, int] | None = parse_sched((base / "sched").read_text())
    except OSError:
        sched = None
    vol = sched.get("nr_voluntary_switches") if sched else None
    invol = sched.get("nr_involuntary_switches") if sched else None
    if vol is None and "voluntary_ctxt_switches" in status:
        vol, invol = int(status["voluntary_ctxt_switches"]), int(status["nonvoluntary_ctxt_switches"])
    return TaskSched(tid, status.get("Name", "?"), status.get("Cpus_allowed_list"), last_cpu(stat),
                     sched.get("se.nr_migrations") if sched else None, vol, invol)


def _over(now: TaskSched, before: TaskSched | None) -> dict[str, int | None]:
    """The counts over the window: since its first sample, or (a thread that started inside it, as the
    peer does) since the thread began."""
    def delta(name: str) -> int | None:
        after = getattr(now, name)
        if before is None:
            return int(after) if after is not None else None
        first = getattr(before, name)
        return after - first if after is not None and first is not None else None

    return {name: delta(name) for name in ("migrations", "voluntary", "involuntary")}


class SchedFacts(Instrument):
    name = "sched"

    def __init__(self, run: RunScope) -> None:
        self.run = run
        self.children_at_start = proc.ChildrenUsage(0.0, 0, 0)

    @staticmethod
    def _roles(window: Window) -> dict[str, list[tuple[int, str]]]:
        if window.boot is not None:
            roles: dict[str, list[tuple[int, str]]] = dict(window.boot.facts.get("roles", {}))
        else:  # native: the server stands in for the guest
            roles = {"server": [(t.tid, t.comm) for t in proc.read_threads(window.pid, vhost_tids=())]}
        if window.client_pids:
            roles["peer"] = [(pid, "peer") for pid in window.client_pids]
        return roles

    def start(self, window: Window) -> None:
        self.children_at_start = proc.children_usage()

    def sample(self, window: Window) -> dict[int, tuple[str, TaskSched]]:
        out = {}
        for role, threads in self._roles(window).items():
            for tid, _ in threads:
                if (got := read_task(tid)) is not None:
                    out[tid] = (role, got)
        return out

    def read(self, window: Window, samples: list[Any]) -> Reading:
        first: dict[int, tuple[str, TaskSched]] = samples[0] if samples else {}
        latest: dict[int, tuple[str, TaskSched]] = {}
        for s in samples:
            latest.update(s)
        requested = {p.tid: p.requested for p in (window.boot.facts.get("placement", {}).get("pinned", [])
                                                  if window.boot else window.facts.get("native_pinned", []))}
        tasks: list[dict[str, Any]] = []
        for tid, (role, now) in sorted(latest.items(), key=lambda kv: (kv[1][0], kv[0])):
            asked = requested.get(tid)
            if role == "peer":
                asked = placement.cpustr(window.peer_cpus) if window.peer_cpus else None
            tasks.append({"role": role, "tid": tid, "comm": now.comm, "requested": asked, "allowed": now.allowed,
                          "last_cpu": now.last_cpu, **_over(now, first.get(tid, (role, None))[1])})
        na = []
        if window.client_pids and window.traffic:
            used = proc.children_usage() - self.children_at_start
            vol, invol = used.voluntary, used.involuntary
            seen = [t for t in tasks if t["role"] == "peer"]
            for t in seen:
                t["voluntary"], t["involuntary"], t["as_of"] = vol, invol, "cpu and migrations: the last sample it ran at"
            if not seen:
                tasks.append({"role": "peer", "tid": window.client_pids[-1], "comm": "peer", "requested": None,
                              "allowed": None, "last_cpu": None, "migrations": None, "voluntary": vol,
                              "involuntary": invol, "as_of": "ended before any sample: switches from its rusage only"})
                na.append("migrations: the peer ran between two samples (timeline_interval_s), its migrations unread")
        counted = [t["migrations"] for t in tasks if t["migrations"] is not None]
        if any(t["migrations"] is None for t in tasks if t["role"] != "peer"):
            na.append("migrations: no /proc/<tid>/sched on this kernel (CONFIG_SCHED_DEBUG)")
        moved = sorted({str(t["role"]) for t in tasks if t["migrations"]})
        return Reading(columns={"migrations": sum(counted) if counted else None, "migrated_roles": ",".join(moved)},
                       na=na, raw={f"{window.raw_name}.sched.json": {"window": window.phase, "tasks": tasks}})

    def record(self, sample: Any) -> dict[str, Any]:
        return {"sched": {str(tid): {"role": role, **asdict(t)} for tid, (role, t) in (sample or {}).items()}}
