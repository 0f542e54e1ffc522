"""`iobench compare A B`: the same cells of two runs side by side, with ratios.

Cells are matched by backend x direction x workload (x topology, in the backend's label:
"vhost@bridge") on the summary medians;
which way a metric is better is the schema's. Whether two runs can be compared
at all is one rule (`comparability`), shared with the gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iobench import exitsites, hoststate, results, topologies
from iobench.errors import UserError
from iobench.schema import HIGHER_IS_BETTER

SAME_WITHIN = 0.02


@dataclass(frozen=True)
class Line:
    backend: str
    direction: str
    workload: str
    metric: str
    a: float
    b: float
    ratio: float | None
    verdict: str  # better / worse / same (for B against A)


def _load(directory: Path) -> tuple[dict[str, Any], dict[tuple[str, str, str, str], float]]:
    data = results.load(directory)
    if data.summary.empty:
        raise UserError(f"{directory} has no summary.csv rows to compare.")
    records: list[dict[str, Any]] = data.summary.to_dict("records")  # type: ignore[assignment]
    medians = {(str(r["backend"]), str(r["direction"]), str(r["workload"]), str(r["metric"])): float(r["median"])
               for r in topologies.labelled(records)}
    return data.meta, medians


def environment(meta: dict[str, Any]) -> dict[str, Any]:
    """What decides whether two runs' numbers can stand side by side (the gate records it in a baseline)."""
    host = meta.get("host", {})
    scn = meta.get("scenario", {})
    outer = meta.get("lab", {}).get("outer_host", {})  # the lab: the machine whose speed L1's emulation has
    return {"accel": meta["accel"]["accel"], "exit_source": meta["accel"]["exit_source"],
            "environment": meta.get("environment", "host"), "qemu": host.get("qemu"), "kernel": host.get("kernel"),
            "cpu_model": host.get("cpu_model"), "placement": scn.get("placement", "none"),  # runs before it: none
            "outer_kernel": outer.get("kernel"),
            "outer_cpu_model": outer.get("cpu_model"), **_state(outer or host),
            "scenario": {**{k: scn.get(k) for k in ("name", "duration_s", "omit_s", "repeats", "kind", "message_bytes",
                                                    "protocol", "streams", "vcpus", "offloads", "qemu_args")},
                         "kernel_args": list(scn.get("kernel_args") or ())}}  # runs before it: none


def _state(host: dict[str, Any]) -> dict[str, Any]:
    """From run.json's host.state (hoststate; absent in older runs: None, never a difference): whether
    the machine running the guests is a VM, its governors and SMT."""
    st = host.get("state") or {}
    if not st:
        return {"virtualized": None, "governor": None, "smt": None}
    return {"virtualized": (st.get("virtualization") or {}).get("virtualized"),
            "governor": "/".join(hoststate.governors(st)) or None, "smt": (st.get("smt") or {}).get("active")}


def comparability(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The one rule for `compare` and the gate, over two `environment()`s: (why the runs cannot be
    compared at all, what changed between them and is shown). A different accelerator, exit source
    (TCG trap equivalents are not KVM exits) or environment (host, lab) makes numbers of different
    things; a QEMU or kernel change is what a comparison is often *for* (an upgrade), so it is shown."""
    blocking = [f"{what} differs: {a[k]} vs {b[k]}" for k, what in
                (("accel", "accelerator"), ("exit_source", "exit source"), ("environment", "environment"))
                if a[k] != b[k]]
    if a.get("virtualized") is not None and b.get("virtualized") is not None and a["virtualized"] != b["virtualized"]:
        kinds = {True: "a virtualized host", False: "bare metal"}
        blocking.append(f"{kinds[a['virtualized']]} against {kinds[b['virtualized']]}: a VM's CPUs are shared and stolen")
    notes = [f"{what} changed: {a[k]} -> {b[k]}" for k, what in (("qemu", "QEMU"), ("kernel", "host kernel"),
                                                                 ("cpu_model", "CPU model"), ("governor", "governor"),
                                                                 ("smt", "SMT"), ("placement", "placement"))
             if a.get(k) is not None and b.get(k) is not None and a[k] != b[k]]
    scn_diff = [k for k in a["scenario"] if a["scenario"][k] != b["scenario"].get(k)]
    if scn_diff:
        notes.append(f"scenario differs in {', '.join(scn_diff)}")
    return blocking, notes


def compare(dir_a: Path, dir_b: Path) -> tuple[list[Line], list[str], list[str]]:
    """(lines, why not comparable, what changed between the runs); no lines when not comparable."""
    meta_a, med_a = _load(dir_a)
    meta_b, med_b = _load(dir_b)
    blocking, notes = comparability(environment(meta_a), environment(meta_b))
    lines: list[Line] = []
    if blocking:
        return lines, blocking, notes
    for key, a in med_a.items():
        backend, direction, workload, metric = key
        if metric not in HIGHER_IS_BETTER or key not in med_b:
            continue
        b = med_b[key]
        ratio = b / a if a else None
        if ratio is None or abs(ratio - 1) <= SAME_WITHIN:
            verdict = "same"
        else:
            verdict = "better" if (ratio > 1) == HIGHER_IS_BETTER[metric] else "worse"
        lines.append(Line(backend, direction, workload, metric, a, b, round(ratio, 4) if ratio else None, verdict))
    return lines, blocking, notes


@dataclass(frozen=True)
class DetailLine:
    """Exits by reason, or guest accesses by device register, per MTU-sized packet in both runs."""

    backend: str
    direction: str
    what: str  # "reason npf", "e1000 TDT write"
    a: float
    b: float


def _per_packet(frame: Any, name: Any, count: str) -> dict[tuple[str, str], dict[str, float]]:
    """Traffic windows of exit_reasons.csv / exit_sites.csv: per backend and direction, the count per
    packet of each name, over every repeat (exitsites.traffic_sums)."""
    if frame is None or frame.empty:
        return {}
    return {cell: {k: v[0] / packets for k, v in found.items()}
            for cell, (packets, found) in exitsites.traffic_sums(frame.to_dict("records"), name, (count,)).items()
            if packets}


def exit_detail(dir_a: Path, dir_b: Path, top: int = 6) -> list[DetailLine]:
    """Where both runs counted exits by reason (--exit-reasons): the top reasons and device registers
    per packet of each cell, A beside B — what changed in the exits, not only how many."""
    a, b = results.load(dir_a), results.load(dir_b)
    lines: list[DetailLine] = []
    for frames, name, count in (((a.exit_reasons, b.exit_reasons), lambda r: f"reason {r['reason']}", "exits"),
                                ((a.exit_sites, b.exit_sites),
                                 lambda r: f"{r['device']} {r['register']} {r['access']}", "count")):
        pa, pb = _per_packet(frames[0], name, count), _per_packet(frames[1], name, count)
        for cell in [c for c in pa if c in pb]:
            names = sorted(pa[cell].keys() | pb[cell].keys(), key=lambda n: -(pa[cell].get(n, 0) + pb[cell].get(n, 0)))
            lines += [DetailLine(*cell, n, pa[cell].get(n, 0.0), pb[cell].get(n, 0.0)) for n in names[:top]]
    return lines
