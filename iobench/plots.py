"""Figures of a results directory: one figure per file, same backend order and colours everywhere.

Each figure answers one question of the seed article for someone who has read
only that: how many exits per packet and of which kind, how many copies,
how fast compared with no VM at all, and where the host's CPU goes. Values are
medians over repeats; error bars span min to max.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

BACKEND_ORDER = ("e1000", "virtio", "vhost", "native")
BACKEND_COLOURS = {"e1000": "#c0392b", "virtio": "#2980b9", "vhost": "#27ae60", "native": "#7f8c8d"}
KVM_KINDS = {  # stacked segments of `exits`, with what they mean in the I/O path
    "mmio_exits": "MMIO to QEMU", "io_exits": "port I/O to QEMU", "halt_exits": "HLT (idle vCPU)",
    "irq_exits": "host interrupt", "irq_window_exits": "interrupt window",
}
TCG_KINDS = {"traps_nic": "NIC register access", "traps_apic": "LAPIC access (EOI, timer)",
             "virtio_kicks_handled": "virtio kick", "traps_other": "other device access"}
CPU_KINDS = {"vcpu": "vCPU threads", "main": "QEMU main loop", "iothread": "QEMU I/O threads",
             "other": "other QEMU threads", "vhost": "vhost worker"}
KIND_COLOURS = ["#8e44ad", "#e67e22", "#16a085", "#f1c40f", "#34495e", "#95a5a6", "#d35400"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cells(rows: Sequence[dict[str, Any]], vm_only: bool = False) -> list[tuple[str, str]]:
    """(backend, direction) pairs present, in the fixed backend order."""
    present = {(r["backend"], r["direction"]) for r in rows}
    return [(b, d) for b in BACKEND_ORDER for d in ("rx", "tx")
            if (b, d) in present and not (vm_only and b == "native")]


def _values(rows: Sequence[dict[str, Any]], backend: str, direction: str, column: str) -> list[float]:
    out = []
    for r in rows:
        if r["backend"] == backend and r["direction"] == direction:
            v = r.get(column)
            if v is not None and v == v:  # not NaN
                out.append(float(v))
    return out


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values) if values else 0.0


def _label(backend: str, direction: str) -> str:
    return f"{backend}\n{'host→guest' if direction == 'rx' else 'guest→host'}"


def _error(rows: Sequence[dict[str, Any]], pairs: list[tuple[str, str]], column: str) -> list[list[float]]:
    lo, hi = [], []
    for b, d in pairs:
        vals = _values(rows, b, d, column)
        m = _median(vals)
        lo.append(m - min(vals) if vals else 0.0)
        hi.append(max(vals) - m if vals else 0.0)
    return [lo, hi]


def _figure(rows: Sequence[dict[str, Any]]) -> tuple[Any, Any, list[tuple[str, str]], list[int]]:
    """A new figure with one x position per VM backend x direction."""
    fig, ax = _plt().subplots(figsize=(9, 5))
    pairs = cells(rows, vm_only=True)
    return fig, ax, pairs, list(range(len(pairs)))


def _stack(ax: Any, rows: Sequence[dict[str, Any]], pairs: list[tuple[str, str]], x: list[int],
           segments: dict[str, str]) -> list[float]:
    """Stacked bars of the per-packet medians of `segments` (column -> meaning); returns the tops."""
    bottom = [0.0] * len(pairs)
    for i, (column, meaning) in enumerate(segments.items()):
        heights = [_median(_values(rows, b, d, column)) for b, d in pairs]
        ax.bar(x, heights, bottom=bottom, color=KIND_COLOURS[i % len(KIND_COLOURS)], label=meaning)
        bottom = [a + b for a, b in zip(bottom, heights, strict=True)]
    return bottom


def _finish(fig: Any, ax: Any, pairs: list[tuple[str, str]], x: list[int], ylabel: str, title: str, path: Path,
            legend: bool = True) -> None:
    ax.set_xticks(x, [_label(b, d) for b, d in pairs])
    for tick, (b, _) in zip(ax.get_xticklabels(), pairs, strict=True):
        tick.set_color(BACKEND_COLOURS[b])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(fontsize=8)
    _save(fig, path)


def exits_figure(rows: Sequence[dict[str, Any]], exit_source: str, path: Path) -> None:
    fig, ax, pairs, x = _figure(rows)
    tcg = exit_source == "tcg-traps"
    kinds = TCG_KINDS if tcg else KVM_KINDS
    bottom = _stack(ax, rows, pairs, x, {f"{k}_per_packet": meaning for k, meaning in kinds.items()})
    totals = [_median(_values(rows, b, d, "exits_per_packet")) for b, d in pairs]
    if not tcg:  # KVM's other exit reasons (NPF, MSR, ...) that have no stat of their own
        rest = [max(0.0, t - s) for t, s in zip(totals, bottom, strict=True)]
        ax.bar(x, rest, bottom=bottom, color="#bdc3c7", label="other (NPF, MSR writes, ...)")
    ax.errorbar(x, totals, yerr=_error(rows, pairs, "exits_per_packet"), fmt="none", ecolor="black", capsize=4)
    what = "trap equivalents under TCG (no real VM exits)" if tcg else "KVM VM exits"
    _finish(fig, ax, pairs, x, f"{'trap equivalents' if tcg else 'VM exits'} per MTU-sized packet",
            f"Exits per packet by kind: {what}", path)


def copies_figure(rows: Sequence[dict[str, Any]], path: Path) -> None:
    fig, ax, pairs, x = _figure(rows)
    width = 0.27
    measured = [_median(_values(rows, b, d, "copies_per_packet_measured")) for b, d in pairs]
    model_sys = [_median(_values(rows, b, d, "syscall_copies_per_packet_model")) for b, d in pairs]
    model_all = [_median(_values(rows, b, d, "copies_per_packet_model")) for b, d in pairs]
    colours = [BACKEND_COLOURS[b] for b, _ in pairs]
    ax.bar([i - width for i in x], measured, width, color=colours, label="measured: QEMU read/write syscall bytes")
    ax.errorbar([i - width for i in x], measured, yerr=_error(rows, pairs, "copies_per_packet_measured"),
                fmt="none", ecolor="black", capsize=3)
    ax.bar(x, model_sys, width, color=colours, alpha=0.45, hatch="//", label="model: copies through QEMU syscalls")
    ax.bar([i + width for i in x], model_all, width, color="white", edgecolor=colours, hatch="..",
           label="model: all copies guest buffer ↔ host stack")
    _finish(fig, ax, pairs, x, "copies of each payload byte (per MTU-sized packet)",
            "Data copies per packet: measured beside the copy model", path)


def throughput_figure(rows: Sequence[dict[str, Any]], path: Path) -> None:
    fig, ax, pairs, x = _figure(rows)
    gbps = [_median(_values(rows, b, d, "throughput_bps")) / 1e9 for b, d in pairs]
    err = [[v / 1e9 for v in side] for side in _error(rows, pairs, "throughput_bps")]
    ax.bar(x, gbps, color=[BACKEND_COLOURS[b] for b, _ in pairs], yerr=err, capsize=4)
    for direction, style in (("rx", "--"), ("tx", ":")):
        native = _values(rows, "native", direction, "throughput_bps")
        if native:
            ax.axhline(_median(native) / 1e9, color=BACKEND_COLOURS["native"], linestyle=style,
                       label=f"native ceiling {'host→guest' if direction == 'rx' else 'guest→host'}: "
                             f"{_median(native) / 1e9:.1f} Gbit/s (no VM)")
    _finish(fig, ax, pairs, x, "iperf3 goodput (Gbit/s)", "Throughput by backend, against the native ceiling", path,
            legend=any(r["backend"] == "native" for r in rows))


def cpu_figure(rows: Sequence[dict[str, Any]], path: Path) -> None:
    fig, ax, pairs, x = _figure(rows)
    _stack(ax, rows, pairs, x, {f"cpu_us_per_packet_{k}": meaning for k, meaning in CPU_KINDS.items()})
    _finish(fig, ax, pairs, x, "host CPU time per MTU-sized packet (µs)",
            "Where the host's CPU goes, per packet, by thread", path)


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)


FIGURES = ("exits-per-packet.png", "copies-per-packet.png", "throughput.png", "cpu-per-packet.png")


def draw_all(directory: Path) -> list[Path]:
    """Draw every figure of a results directory into its plots/ folder; returns the paths."""
    import json

    import pandas as pd

    meta = json.loads((directory / "run.json").read_text())
    rows = [{str(k): v for k, v in r.items()} for r in pd.read_csv(directory / "rows.csv").to_dict("records")]
    out = directory / "plots"
    if not [r for r in rows if r["backend"] != "native"]:
        return []
    paths = [out / name for name in FIGURES]
    exits_figure(rows, meta["accel"]["exit_source"], paths[0])
    copies_figure(rows, paths[1])
    throughput_figure(rows, paths[2])
    cpu_figure(rows, paths[3])
    return paths
