"""The terminal table of a run: one line per backend x direction (median over repeats).

Kept apart from measuring so that `iobench report <dir>` can print the same
table from a results directory on any machine.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

HEADERS = ("backend", "dir", "Mbit/s", "tap MB", "frames", "packets", "exits", "exits/pkt",
           "syscall B/B (measured)", "copies model", "cpu s vcpu/main/vhost", "status")


def _med(values: Iterable[Any]) -> float:
    vals = [float(v) for v in values]
    return statistics.median(vals) if vals else float("nan")


def summary_lines(rows: Sequence[dict[str, Any]], cells: Sequence[dict[str, Any]],
                  unavailable: dict[str, str]) -> list[tuple[str, ...]]:
    """Median over repeats of each backend x direction, plus failed and unavailable lines."""
    lines: list[tuple[str, ...]] = []
    keys = list(dict.fromkeys((r["backend"], r["direction"]) for r in rows))
    for backend, direction in keys:
        rs = [r for r in rows if r["backend"] == backend and r["direction"] == direction]
        n_fail = sum(1 for c in cells if c["backend"] == backend and c["direction"] == direction and c["status"] != "ok")
        src = rs[0]["exit_source"]
        lines.append((
            backend, direction,
            f"{_med(r['throughput_bps'] for r in rs) / 1e6:.0f}",
            f"{_med(r['bytes'] for r in rs) / 1e6:.0f}",
            f"{_med(r['frames'] for r in rs):.0f}",
            f"{_med(r['packets'] for r in rs):.0f}",
            f"{_med(r['exits'] for r in rs):.0f} ({src})",
            f"{_med(r['exits_per_packet'] for r in rs):.3f}",
            f"{_med(r['copies_per_packet_measured'] for r in rs):.2f}",
            f"{rs[0]['copies_per_packet_model']} ({rs[0]['syscall_copies_per_packet_model']} syscall)",
            "/".join(f"{_med(r[k] for r in rs):.1f}" for k in ("cpu_s_vcpu", "cpu_s_main", "cpu_s_vhost")),
            f"ok x{len(rs)}" + (f", {n_fail} failed" if n_fail else ""),
        ))
    measured = set(keys)
    for c in cells:
        if c["status"] != "ok" and (c["backend"], c["direction"]) not in measured:
            lines.append((c["backend"], c["direction"], *["-"] * 9, f"failed: {c['reason'].splitlines()[0][:80]}"))
            measured.add((c["backend"], c["direction"]))
    for name in unavailable:
        lines.append((name, "-", *["-"] * 9, "unavailable"))
    return lines


def print_table(lines: list[tuple[str, ...]], title: str, notes: dict[str, str] | None = None,
                console: Console | None = None) -> None:
    """Print the table; piped output (CI logs) gets a wide plain layout instead of wrapped cells."""
    console = console or Console(width=None if Console().is_terminal else 200)
    table = Table(title=title)
    for h in HEADERS:
        table.add_column(h, overflow="fold")
    for line in lines:
        table.add_row(*line)
    console.print(table)
    for name, note in (notes or {}).items():
        console.print(f"{name}: unavailable: {note}")
