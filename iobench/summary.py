"""Statistics over repeats: median, spread and coefficient of variation per cell group.

A group is backend x direction x workload x topology; its repeats are the rounds. The
summary is tidy (one line per group x metric) so that reports, notebooks and the
regression gate read the same table. A group whose repeats disagree (CV above
CV_FLAG on a headline metric) is flagged rather than silently averaged.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iobench.schema import Row, derive

HEADLINE = ("throughput_bps", "exits_per_packet", "net_exits_per_packet", "irq_injections_per_packet",
            "copies_per_packet_measured", "cpu_us_per_packet")
# Request/response rows (workload kind rr): flagged like the headline, where present.
RR_HEADLINE = ("transactions_per_s", "latency_p50_us", "latency_p99_us", "exits_per_transaction",
               "net_exits_per_transaction", "irq_injections_per_transaction", "cpu_us_per_transaction")
# Paced rows (workload kind paced): flagged like the headline, where present.
PACED_HEADLINE = ("achieved_pps", "exits_per_datagram", "irq_injections_per_datagram", "cpu_us_per_datagram")
# Summarized too, never flagged: present only in --copy-trace, rr and paced runs (a loss near 0 has no useful CV).
ALSO = ("kernel_copies_per_packet_qemu", "kernel_copies_per_packet_vhost", "latency_p90_us", "latency_p999_us",
        "latency_max_us", "exit_reasons_coverage", "offered_pps", "loss_pct", "jitter_ms", "host_softirq_us_per_packet")
FLAGGED = (*HEADLINE, *RR_HEADLINE, *PACED_HEADLINE)
CV_FLAG = 0.10


@dataclass(frozen=True)
class Stat:
    backend: str
    direction: str
    workload: str
    metric: str
    n: int
    median: float
    min: float
    max: float
    cv: float | None
    flagged: bool
    topology: str = "direct"


def cv(values: Sequence[float]) -> float | None:
    """Coefficient of variation (sample stdev / |mean|); None for one value or a zero mean."""
    mean = statistics.fmean(values)
    return statistics.stdev(values) / abs(mean) if len(values) >= 2 and mean else None


Group = tuple[str, str, str, str]  # backend, direction, workload, topology


def _stat(key: Group, metric: str, values: Sequence[float], flag: bool = True) -> Stat | None:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None
    cv_ = cv(vals)
    return Stat(*key[:3], metric, len(vals), statistics.median(vals), min(vals), max(vals),
                round(cv_, 4) if cv_ is not None else None, bool(flag and cv_ is not None and cv_ > CV_FLAG),
                key[3])


def summarize(rows: Sequence[Row]) -> list[Stat]:
    """Headline metrics per group, plus throughput as a fraction of the native ceiling over the same
    topology."""
    tidy = [derive(r) for r in rows]
    groups: dict[Group, list[dict[str, Any]]] = {}
    for r in tidy:
        groups.setdefault((r["backend"], r["direction"], r["workload"], r["topology"]), []).append(r)
    out: list[Stat] = []
    for key, members in groups.items():
        for metric in (*FLAGGED, *ALSO):
            st = _stat(key, metric, [m[metric] for m in members], flag=metric in FLAGGED)
            if st:
                out.append(st)
    native = {k[1:]: statistics.median(float(m["throughput_bps"]) for m in ms)
              for k, ms in groups.items() if k[0] == "native"}
    for key, members in groups.items():
        ceiling = native.get(key[1:])
        if ceiling and key[0] != "native":
            st = _stat(key, "throughput_vs_native", [float(m["throughput_bps"]) / ceiling for m in members])
            if st:
                out.append(st)
    return out


def flagged(stats: Sequence[Stat]) -> list[dict[str, Any]]:
    """Groups whose repeats disagree, for run.json."""
    return [{"backend": s.backend, "direction": s.direction, "workload": s.workload, "metric": s.metric,
             "cv": s.cv, "n": s.n, **({"topology": s.topology} if s.topology != "direct" else {})}
            for s in stats if s.flagged]
