"""The run's table, read back from a results directory (so it prints the same on any machine).

One line per backend x direction x workload: the median over repeats with its
spread, throughput as a share of the native ceiling, and a flag where the
repeats disagree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HEADERS = ("backend", "dir", "workload", "Mbit/s (min-max)", "of native", "exits/pkt", "net exits/pkt",
           "irq/pkt", "copies/pkt meas | model", "cpu us/pkt", "n", "flags")


def _num(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(float(v), fmt)


def table_lines(summary: list[dict[str, Any]], rows: list[dict[str, Any]], cells: list[dict[str, Any]],
                backends_meta: dict[str, dict[str, str]]) -> list[tuple[str, ...]]:
    stats: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for s in summary:
        stats.setdefault((s["backend"], s["direction"], s["workload"]), {})[s["metric"]] = s
    model = {(r["backend"], r["direction"]): r.get("copies_per_packet_model") for r in rows}
    src = {r["backend"]: r["exit_source"] for r in rows}
    lines: list[tuple[str, ...]] = []
    for (backend, direction, workload), m in stats.items():
        def med(metric: str, fmt: str, _m: dict[str, dict[str, Any]] = m) -> str:
            return _num(_m[metric]["median"], fmt) if metric in _m else "-"
        tp = m.get("throughput_bps")
        spread = f" ({_num(tp['min'] / 1e6, '.0f')}-{_num(tp['max'] / 1e6, '.0f')})" if tp and tp["n"] > 1 else ""
        share = m.get("throughput_vs_native")
        flags = [f"CV {s['metric']} {s['cv']:.0%}" for s in m.values() if str(s.get("flagged")) == "True"]
        failed = sum(1 for c in cells if c["backend"] == backend and c["direction"] == direction
                     and c["workload"] == workload and c["status"] != "ok")
        if failed:
            flags.append(f"{failed} failed")
        lines.append((
            backend, direction, workload,
            (_num(tp["median"] / 1e6, ".0f") + spread) if tp else "-",
            f"{share['median']:.0%}" if share else "-",
            med("exits_per_packet", ".3f") + (f" ({src[backend]})" if backend in src else ""),
            med("net_exits_per_packet", ".3f"), med("irq_injections_per_packet", ".3f"),
            f"{med('copies_per_packet_measured', '.2f')} | {_num(model.get((backend, direction)), '.0f')}",
            med("cpu_us_per_packet", ".2f"), str(tp["n"]) if tp else "0", ", ".join(flags) or "",
        ))
    measured = {(b, d) for b, d, _ in stats}
    for c in cells:
        if c["status"] != "ok" and (c["backend"], c["direction"]) not in measured:
            lines.append((c["backend"], c["direction"], c["workload"], *["-"] * 8,
                          "failed: " + c["reason"].splitlines()[0][:80]))
            measured.add((c["backend"], c["direction"]))
    for name, info in backends_meta.items():
        if info["status"].startswith("unavailable"):
            lines.append((name, "-", "-", *["-"] * 8, "unavailable"))
    return lines


def load(directory: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    import pandas as pd

    meta: dict[str, Any] = json.loads((directory / "run.json").read_text())
    rows = [{str(k): v for k, v in r.items()} for r in pd.read_csv(directory / "rows.csv").to_dict("records")]
    summary_path = directory / "summary.csv"
    summary = ([{str(k): v for k, v in r.items()} for r in pd.read_csv(summary_path).to_dict("records")]
               if summary_path.exists() else [])
    return meta, rows, summary


def print_run(directory: Path, console: Console | None = None) -> None:
    """Print the table of a results directory; piped output gets a wide layout instead of wrapped cells."""
    meta, rows, summary = load(directory)
    console = console or Console(width=None if Console().is_terminal else 220)
    where = " in the nested lab" if meta.get("environment") == "lab" else ""
    title = (f"iobench {meta['run_id']} - accel {meta['accel']['accel']}{where} ({meta['accel']['exit_source']}), "
             "medians over repeats; packets = MTU-sized (1514 B) packet equivalents")
    table = Table(title=title)
    for h in HEADERS:
        table.add_column(h, overflow="fold")
    for line in table_lines(summary, rows, meta.get("cells", []), meta.get("backends", {})):
        table.add_row(*line)
    console.print(table)
    for name, info in meta.get("backends", {}).items():
        if info["status"].startswith("unavailable"):
            console.print(f"{name}: {info['status']}")
    if meta.get("flagged"):
        console.print(f"flagged: {len(meta['flagged'])} metric(s) whose repeats disagree by more than 10% (CV)")
