"""Figures of a results directory: one figure per file, same backend order and colours everywhere.

Each figure answers one question of the seed article for someone who has read
only that: how many exits per packet and of which kind, how many copies,
how fast compared with no VM at all, and where the host's CPU goes. Values are
medians over repeats; error bars span min to max.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from iobench.schema import MEANING, TRAP_KINDS, VM_CPU_KINDS, cell_kind
from iobench.topologies import DEFAULT as DEFAULT_TOPOLOGY

BACKEND_ORDER = ("e1000", "e1000e", "rtl8139", "virtio", "vhost", "native")
BACKEND_COLOURS = {"e1000": "#c0392b", "e1000e": "#e74c3c", "rtl8139": "#7b241c", "virtio": "#2980b9",
                   "vhost": "#27ae60", "native": "#7f8c8d"}
# A scenario's variants (backends.Variant) get a colour of their own, the same in every figure.
VARIANT_COLOURS = ("#e67e22", "#8e44ad", "#16a085", "#d35400", "#2c3e50", "#f1c40f", "#e84393", "#6c5ce7",
                   "#00b894", "#a0522d")


def backend_order(names: Iterable[str]) -> list[str]:
    """Backends present in figure order: each built-in followed by the variants named after it
    ("virtio-packed" after virtio), then other variants, native last."""
    present = set(names)
    out: list[str] = []
    for b in BACKEND_ORDER[:-1]:
        out += [b] if b in present else []
        out += sorted(n for n in present if n not in BACKEND_ORDER and n.startswith(f"{b}-"))
    out += sorted(present - set(out) - {"native"})
    return out + (["native"] if "native" in present else [])


def colour(backend: str) -> str:
    import zlib

    return BACKEND_COLOURS.get(backend) or VARIANT_COLOURS[zlib.crc32(backend.encode()) % len(VARIANT_COLOURS)]
# The KVM exit kinds stacked in the exits figure (the rest of `exits` is drawn as "other"); they do
# not overlap one another, unlike insn_emulation or irq_injections.
STACKED_KVM_KINDS = ("mmio_exits", "io_exits", "halt_exits", "irq_exits", "irq_window_exits")
KVM_KINDS = {k: MEANING[k] for k in STACKED_KVM_KINDS}
TCG_KINDS = {k: MEANING[k] for k in TRAP_KINDS}
CPU_KINDS = {k: MEANING[k] for k in (*VM_CPU_KINDS, "pmd")}  # the path's threads: QEMU's, vhost's, the switch's
KIND_COLOURS = ["#8e44ad", "#e67e22", "#16a085", "#f1c40f", "#34495e", "#95a5a6", "#d35400"]


def _plt() -> Any:
    """pyplot; headless (Agg) unless running inside a Jupyter kernel, which shows figures inline."""
    import sys

    import matplotlib

    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cells(rows: Sequence[dict[str, Any]], vm_only: bool = False) -> list[tuple[str, str]]:
    """(backend, direction) pairs present, in the fixed backend order."""
    present = {(r["backend"], r["direction"]) for r in rows}
    return [(b, d) for b in backend_order(r["backend"] for r in rows) for d in ("rx", "tx")
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
    """The median, or NaN where nothing was measured: a missing figure is a gap, never a 0 bar."""
    import statistics

    return statistics.median(values) if values else float("nan")


def _known(values: Sequence[float]) -> list[float]:
    return [v for v in values if v == v]


def _mark_gaps(ax: Any, x: Sequence[float], values: Sequence[float]) -> None:
    """Say "n/a" where a bar is missing (its reason is in the rows' na_reason column)."""
    for xi, v in zip(x, values, strict=True):
        if v != v:
            ax.annotate("n/a\n(see na_reason)", (xi, 0), xytext=(0, 4), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7, color="#555555")


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
        bottom = [a + b if b == b else a for a, b in zip(bottom, heights, strict=True)]  # a gap adds no height
    return bottom


def _workload_line(rows: Sequence[dict[str, Any]]) -> str:
    """The workload of the figure in words (every bar figure shows one workload)."""
    r = rows[0]
    size = f"{int(r['message_bytes'])}-byte writes" if int(r["message_bytes"]) else "iperf3's default write size"
    over = f", over {r['topology']}" if r.get("topology", DEFAULT_TOPOLOGY) != DEFAULT_TOPOLOGY else ""
    return f"{str(r['protocol']).upper()}, {int(r['streams'])} stream(s), {size}{over}"


def _finish(fig: Any, ax: Any, pairs: list[tuple[str, str]], x: list[int], ylabel: str, title: str,
            path: Path | None, legend: bool = True, rows: Sequence[dict[str, Any]] = ()) -> Any:
    ax.set_xticks(x, [_label(b, d) for b, d in pairs])
    for tick, (b, _) in zip(ax.get_xticklabels(), pairs, strict=True):
        tick.set_color(colour(b))
    ax.set_ylabel(ylabel)
    ax.set_title(title + (f"\n{_workload_line(rows)}" if rows else ""))
    if legend:
        ax.legend(fontsize=8)
    return _save(fig, path)


def reason_columns(rows: Sequence[dict[str, Any]], reasons: Sequence[dict[str, Any]], top: int = 6) -> list[str]:
    """Put each traffic window's exits by reason (exit_reasons.csv) onto its row as `reason:<name>` per
    packet, for the `top` most frequent reasons overall; returns those column names."""
    traffic = [r for r in reasons if r["phase"] == "traffic"]
    totals: dict[str, float] = {}
    for r in traffic:
        totals[str(r["reason"])] = totals.get(str(r["reason"]), 0.0) + float(r["exits"])
    names = sorted(totals, key=lambda n: -totals[n])[:top]
    for row in rows:
        mine = {str(r["reason"]): float(r["exits"]) for r in traffic
                if (r["backend"], r["direction"], str(r["repeat"]), str(r["workload"])) ==
                (row["backend"], row["direction"], str(row["repeat"]), str(row["workload"]))}
        if not mine:
            continue
        for n in names:
            row[f"reason:{n}"] = mine.get(n, 0.0) / row["packets"] if row["packets"] else None
    return [f"reason:{n}" for n in names]


def exits_figure(rows: Sequence[dict[str, Any]], exit_source: str, path: Path | None = None,
                 reasons: Sequence[dict[str, Any]] = ()) -> Any:
    """Exits per packet stacked by kind; with exit_reasons.csv (--exit-reasons), by exit reason instead,
    so that nothing hides in "other"."""
    fig, ax, pairs, x = _figure(rows)
    tcg = exit_source == "tcg-traps"
    rows = [dict(r) for r in rows]
    by_reason = reason_columns(rows, reasons) if reasons and not tcg else []
    kinds = TCG_KINDS if tcg else KVM_KINDS
    segments = ({c: f"reason {c.removeprefix('reason:')}" for c in by_reason} if by_reason
                else {f"{k}_per_packet": meaning for k, meaning in kinds.items()})
    bottom = _stack(ax, rows, pairs, x, segments)
    totals = [_median(_values(rows, b, d, "exits_per_packet")) for b, d in pairs]
    if by_reason:
        rest = [max(0.0, t - s) for t, s in zip(totals, bottom, strict=True)]
        ax.bar(x, rest, bottom=bottom, color="#bdc3c7", label="the other reasons")
    elif not tcg:  # KVM's other exit reasons (NPF, MSR, ...) that have no stat of their own
        rest = [max(0.0, t - s) for t, s in zip(totals, bottom, strict=True)]
        ax.bar(x, rest, bottom=bottom, color="#bdc3c7", label="other (NPF, MSR writes, ...)")
    ax.errorbar(x, totals, yerr=_error(rows, pairs, "exits_per_packet"), fmt="none", ecolor="black", capsize=4)
    _mark_gaps(ax, x, totals)
    what = "trap equivalents under TCG (no real VM exits)" if tcg else "KVM VM exits"
    return _finish(fig, ax, pairs, x, f"{'trap equivalents' if tcg else 'VM exits'} per MTU-sized packet",
            f"Exits per packet by {'exit reason' if by_reason else 'kind'}: {what}", path, rows=rows)


def copies_figure(rows: Sequence[dict[str, Any]], path: Path | None = None) -> Any:
    fig, ax, pairs, x = _figure(rows)
    # QEMU's + the vhost worker's kernel copies per byte, row by row (both or neither are set)
    kernel = [[q + v for q, v in zip(_values(rows, b, d, "kernel_copies_per_packet_qemu"),
                                     _values(rows, b, d, "kernel_copies_per_packet_vhost"), strict=True)]
              for b, d in pairs]
    traced = any(kernel)  # only runs with --copy-trace have a fourth, kernel-side bar
    n = 4 if traced else 3
    width = 0.8 / n
    at = [[i + (k - (n - 1) / 2) * width for i in x] for k in range(n)]
    measured = [_median(_values(rows, b, d, "copies_per_packet_measured")) for b, d in pairs]
    model_sys = [_median(_values(rows, b, d, "syscall_copies_per_packet_model")) for b, d in pairs]
    model_all = [_median(_values(rows, b, d, "copies_per_packet_model")) for b, d in pairs]
    colours = [colour(b) for b, _ in pairs]
    ax.bar(at[0], measured, width, color=colours, label="measured: QEMU read/write syscall bytes")
    ax.errorbar(at[0], measured, yerr=_error(rows, pairs, "copies_per_packet_measured"),
                fmt="none", ecolor="black", capsize=3)
    if traced:
        ax.bar(at[1], [_median(k) for k in kernel], width, color=colours, edgecolor="black", hatch="xx",
               label="measured (--copy-trace): kernel copy routines in QEMU and vhost threads")
    ax.bar(at[-2], model_sys, width, color=colours, alpha=0.45, hatch="//", label="model: copies through QEMU syscalls")
    ax.bar(at[-1], model_all, width, color="white", edgecolor=colours, hatch="..",
           label="model: all copies guest buffer ↔ host stack")
    ax.set_ylim(0, max(_known([*model_all, *measured, 1.0])) * 1.45)  # room for the legend above the bars
    _mark_gaps(ax, at[0], measured)
    return _finish(fig, ax, pairs, x, "copies of each payload byte (per MTU-sized packet)",
            "Data copies per packet: measured beside the copy model", path, rows=rows)


def throughput_figure(rows: Sequence[dict[str, Any]], path: Path | None = None) -> Any:
    fig, ax, pairs, x = _figure(rows)
    gbps = [_median(_values(rows, b, d, "throughput_bps")) / 1e9 for b, d in pairs]
    err = [[v / 1e9 for v in side] for side in _error(rows, pairs, "throughput_bps")]
    ax.bar(x, gbps, color=[colour(b) for b, _ in pairs], yerr=err, capsize=4)
    _mark_gaps(ax, x, gbps)
    for direction, style in (("rx", "--"), ("tx", ":")):
        native = _values(rows, "native", direction, "throughput_bps")
        if native:
            ax.axhline(_median(native) / 1e9, color=colour("native"), linestyle=style,
                       label=f"native ceiling {'host→guest' if direction == 'rx' else 'guest→host'}: "
                             f"{_median(native) / 1e9:.1f} Gbit/s (no VM)")
    return _finish(fig, ax, pairs, x, "iperf3 goodput (Gbit/s)", "Throughput by backend, against the native ceiling", path,
            legend=any(r["backend"] == "native" for r in rows), rows=rows)


def cpu_figure(rows: Sequence[dict[str, Any]], path: Path | None = None) -> Any:
    fig, ax, pairs, x = _figure(rows)
    _stack(ax, rows, pairs, x, {f"cpu_us_per_packet_{k}": meaning for k, meaning in CPU_KINDS.items()})
    _mark_gaps(ax, x, [_median(_values(rows, b, d, "cpu_us_per_packet")) for b, d in pairs])
    return _finish(fig, ax, pairs, x, "host CPU time per MTU-sized packet (µs)",
            "Where the host's CPU goes, per packet, by thread", path, rows=rows)


def close(fig: Any) -> None:
    """Release a figure returned open (no path given), once shown."""
    _plt().close(fig)


def _save(fig: Any, path: Path | None) -> Any:
    """Write the figure to `path` and close it; with no path, return it open (notebooks show it)."""
    fig.tight_layout()
    if path is None:
        return fig
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return fig


FIGURES = ("exits-per-packet.png", "copies-per-packet.png", "throughput.png", "cpu-per-packet.png")
SWEEP_METRICS = {  # column -> (axis label, scale)
    "throughput_bps": ("iperf3 goodput (Gbit/s)", 1e-9),
    "exits_per_packet": ("VM exits (or TCG trap equivalents) per MTU-sized packet", 1.0),
    "copies_per_packet_measured": ("measured copies per MTU-sized packet (QEMU syscall bytes)", 1.0),
    "cpu_us_per_packet": ("host CPU µs per MTU-sized packet (QEMU + vhost threads)", 1.0),
}
TIMELINE_FIGURE = "exits-timeline.png"
REGISTERS_FIGURE = "{backend}-registers.png"


def registers_figure(sites: Sequence[dict[str, Any]], backend: str, path: Path | None = None, top: int = 10) -> Any:
    """One backend's guest accesses per MTU-sized packet by device register (exit_sites.csv), a bar per
    direction: which registers the driver touches per packet, i.e. where the exits land."""
    from iobench import exitsites

    ranked = {d: found for (b, d), found in exitsites.top_per_packet(sites, top=50).items() if b == backend}
    totals: dict[tuple[str, str, str], float] = {}
    for found in ranked.values():
        for s in found:
            if s.kind != "userspace":
                key = (s.device, s.register, s.access)
                totals[key] = totals.get(key, 0.0) + s.per_packet
    keys = sorted(totals, key=lambda k: -totals[k])[:top]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5))
    directions = sorted(ranked)
    height = 0.8 / max(len(directions), 1)
    for i, d in enumerate(directions):
        mine = {(s.device, s.register, s.access): s.per_packet for s in ranked[d]}
        ax.barh([k + (i - (len(directions) - 1) / 2) * height for k in range(len(keys))],
                [mine.get(key, 0.0) for key in keys], height, label={"rx": "rx host→guest", "tx": "tx guest→host"}.get(d, d))
    ax.set_yticks(range(len(keys)), [f"{dev} {reg} ({acc})" for dev, reg, acc in keys], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("guest accesses per MTU-sized packet (each one a VM exit)")
    ax.set_title(f"{backend}: where the exits land, by device register\n(kvm_mmio / kvm_pio / kvm_msr of the VM's vCPUs,"
                 " traffic windows, all repeats)")
    if directions:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def workloads(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Workload labels present, smallest message first (iperf3's default, 0, last)."""
    sizes = {r["workload"]: int(r["message_bytes"]) for r in rows}
    return sorted(sizes, key=lambda w: (sizes[w] == 0, sizes[w], w))


def sweep_figure(rows: Sequence[dict[str, Any]], column: str, path: Path | None = None) -> Any:
    """One metric against iperf3's message length: a line per backend x direction, min-max bars."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5))
    order = workloads(rows)
    sizes = {r["workload"]: int(r["message_bytes"]) for r in rows}
    label, scale = SWEEP_METRICS[column]
    x = list(range(len(order)))
    for b, d in cells(rows, vm_only=column != "throughput_bps"):
        med, lo, hi = [], [], []
        for w in order:
            vals = _values([r for r in rows if r["workload"] == w], b, d, column)
            m = _median(vals) * scale if vals else float("nan")
            med.append(m)
            lo.append(m - min(vals) * scale if vals else 0.0)
            hi.append(max(vals) * scale - m if vals else 0.0)
        ax.errorbar(x, med, yerr=[lo, hi], color=colour(b), linestyle="-" if d == "rx" else "--",
                    marker="o" if d == "rx" else "s", capsize=3,
                    label=f"{b} {'host→guest' if d == 'rx' else 'guest→host'}")
    ax.set_xticks(x, [f"{sizes[w]} B" if sizes[w] else "iperf3 default" for w in order])
    ax.set_xlabel("iperf3 message length (-l): bytes per application write")
    ax.set_ylabel(label)
    ax.set_title(f"{label.split(' (')[0]} against message length")
    ax.legend(fontsize=8)
    return _save(fig, path)


def timeline_figure(slices: Any, path: Path | None = None, repeat: int = 1) -> Any:
    """One VM's life per backend in round `repeat`: exits per second and goodput per time slice,
    idle window first, then each traffic window, laid end to end (gaps between windows removed).
    A window's last slice, when shorter than a quarter of a second, is left off the figure (its
    rate is noise from a few events); timeline.csv keeps it."""
    plt = _plt()
    fig, (ax_exits, ax_tput) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    data = slices[(slices["repeat"] == repeat) & (slices["attempt"] == 1)]
    boundaries: dict[float, str] = {}
    for backend in backend_order(data["backend"]):
        mine = data[data["backend"] == backend]
        t_offset, xs, exits_s, gbps = 0.0, [], [], []
        windows = mine[["phase", "workload", "direction"]].drop_duplicates().fillna("").values.tolist()
        windows.sort(key=lambda w: (w[0] != "idle",))
        for phase, workload, direction in windows:
            win = mine[(mine["phase"] == phase) & (mine["workload"].fillna("") == workload)
                       & (mine["direction"].fillna("") == direction)]
            if all(abs(t_offset - t) > 0.5 for t in boundaries):  # backends' windows differ by a few tenths
                boundaries[round(t_offset, 1)] = "idle" if phase == "idle" else (
                    "host→guest" if direction == "rx" else "guest→host")
            for _, r in win.iterrows():
                if float(r["interval_s"]) < 0.25:
                    continue
                xs.append(t_offset + float(r["t_start_s"]) + float(r["interval_s"]) / 2)
                exits_s.append(float(r["exits_per_s"]))
                gbps.append(float(r["bytes"]) * 8 / float(r["interval_s"]) / 1e9 if phase == "traffic" else 0.0)
            if len(win):
                t_offset += float(win["t_start_s"].iloc[-1]) + float(win["interval_s"].iloc[-1])
        ax_exits.plot(xs, exits_s, marker=".", color=colour(backend), label=backend)
        ax_tput.plot(xs, gbps, marker=".", color=colour(backend), label=backend)
    for t, name in boundaries.items():
        for ax in (ax_exits, ax_tput):
            ax.axvline(t, color="#7f8c8d", linestyle=":", linewidth=0.8)
        ax_exits.annotate(name, (t, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                          textcoords="offset points", fontsize=8, color="#7f8c8d")
    ax_exits.set_yscale("log")
    ax_exits.set_ylabel("exits (or trap equivalents) per second")
    ax_exits.set_title(f"One VM per backend over time (round {repeat}): idle window, then traffic windows")
    ax_exits.legend(fontsize=8)
    ax_tput.set_ylabel("data on the tap (Gbit/s)")
    ax_tput.set_xlabel("seconds inside measured windows (windows laid end to end)")
    return _save(fig, path)


RR_FIGURES = ("latency-rr.png", "per-transaction-rr.png")
LATENCY_LABELS = {"p50": "p50", "p90": "p90", "p99": "p99", "p999": "p99.9", "max": "max"}


def latency_figure(rows: Sequence[dict[str, Any]], exit_source: str, path: Path | None = None) -> Any:
    """Request/response round-trip time: the percentile ladder per backend (median over repeats), one
    panel per rr workload, log scale. Under TCG the times are emulator time, and the title says so."""
    plt = _plt()
    order = workloads(rows)
    fig, axes = plt.subplots(1, len(order), figsize=(4.5 * len(order), 4.5), squeeze=False, sharey=True)
    points = list(LATENCY_LABELS)
    for ax, w in zip(axes[0], order, strict=True):
        sub = [r for r in rows if r["workload"] == w]
        for b in backend_order(r["backend"] for r in sub):
            med = [_median(_values(sub, b, "rr", f"latency_{p}_us")) for p in points]
            if all(m != m for m in med):
                continue
            ax.plot(range(len(points)), med, marker="o", color=colour(b), label=b)
        ax.set_xticks(range(len(points)), [LATENCY_LABELS[p] for p in points])
        ax.set_yscale("log")
        ax.set_title(w)
        ax.set_xlabel("percentile of round trips")
    axes[0][0].set_ylabel("round-trip time (µs)")
    axes[0][0].legend(fontsize=8)
    emulated = " (TCG: emulator time, not a KVM latency)" if exit_source == "tcg-traps" else ""
    fig.suptitle(f"Request/response round-trip time, one transaction in flight{emulated}")
    return _save(fig, path)


def per_transaction_figure(rows: Sequence[dict[str, Any]], exit_source: str, path: Path | None = None) -> Any:
    """Exits, interrupt injections and host CPU per transaction, per backend and rr workload."""
    plt = _plt()
    order = workloads(rows)
    metrics = (("exits_per_transaction", "trap equivalents" if exit_source == "tcg-traps" else "VM exits"),
               ("irq_injections_per_transaction", "interrupts injected"),
               ("cpu_us_per_transaction", "host CPU µs (QEMU + vhost)"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.5), squeeze=False)
    backends = [b for b in backend_order(r["backend"] for r in rows) if b != "native"]
    width = 0.8 / max(1, len(backends))
    for ax, (column, label) in zip(axes[0], metrics, strict=True):
        for i, b in enumerate(backends):
            vals = [_median(_values([r for r in rows if r["workload"] == w], b, "rr", column)) for w in order]
            ax.bar([k + (i - (len(backends) - 1) / 2) * width for k in range(len(order))], vals, width,
                   color=colour(b), label=b)
        ax.set_xticks(range(len(order)), order, fontsize=8)
        ax.set_ylabel(f"{label} per transaction")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Per request/response transaction")
    return _save(fig, path)


PACED_FIGURE = "paced.png"


def paced_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of paced workloads (label paced-...), drawn by paced_figure."""
    return [r for r in rows if cell_kind(str(r["direction"]), str(r["workload"])) == "paced"]


def stream_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the per-workload bar figures and the sweep draw: neither request/response nor paced."""
    return [r for r in rows if cell_kind(str(r["direction"]), str(r["workload"])) == "stream"]


def paced_rate(workload: str) -> int:
    """The offered rate a paced workload's label names (scenario.Workload.label: paced-udp-<rate>pps-l<size>)."""
    found = re.search(r"-(\d+)pps-", workload)
    return int(found.group(1)) if found else 0


def paced_figure(rows: Sequence[dict[str, Any]], exit_source: str, path: Path | None = None) -> Any:
    """Per datagram against the offered rate (paced workloads): exits, interrupts, host CPU and the
    receiver's loss; a line per backend x direction (medians over repeats), one line style per
    datagram size. Below saturation nothing is batched away: the per-datagram cost of the device."""
    plt = _plt()
    metrics = (("exits_per_datagram", ("trap equivalents" if exit_source == "tcg-traps" else "VM exits") + " per datagram"),
               ("irq_injections_per_datagram", "interrupts injected per datagram"),
               ("cpu_us_per_datagram", "host CPU µs per datagram (QEMU + vhost)"),
               ("loss_pct", "datagrams lost (%)"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 4.5), squeeze=False)
    sizes = sorted({int(r["message_bytes"]) for r in rows})
    styles = ("-", "--", ":", "-.")
    for ax, (column, label) in zip(axes[0], metrics, strict=True):
        for b, d in cells(rows, vm_only=column != "loss_pct"):
            for k, size in enumerate(sizes):
                sub = [r for r in rows if int(r["message_bytes"]) == size and r["backend"] == b and r["direction"] == d]
                rates = sorted({paced_rate(r["workload"]) for r in sub})
                med = [_median(_values([r for r in sub if paced_rate(r["workload"]) == rate], b, d, column))
                       for rate in rates]
                ax.plot(rates, med, marker="o" if d == "rx" else "s", color=colour(b), linestyle=styles[k % len(styles)],
                        label=f"{b} {'host→guest' if d == 'rx' else 'guest→host'}" + (f" {size} B" if len(sizes) > 1 else ""))
        ax.set_xscale("log")
        ax.set_xlabel("offered datagrams per second")
        ax.set_ylabel(label)
    axes[0][0].legend(fontsize=7)
    size_text = ", ".join(f"{s} B" for s in sizes)
    fig.suptitle(f"Paced UDP ({size_text} datagrams): cost per datagram against the offered rate")
    fig.tight_layout()
    return _save(fig, path)


TOPOLOGY_FIGURE = "topology-cost.png"
TOPOLOGY_PANELS = (("exits_per_packet", "exits (or TCG traps) / packet"), ("cpu_us_per_packet", "QEMU + vhost CPU µs / packet"),
                   ("host_softirq_us_per_packet", "host softirq µs / packet (every CPU)"))
TOPOLOGY_HATCH = ("", "//", "..", "xx")


def topology_figure(rows: Sequence[dict[str, Any]], path: Path | None = None) -> Any:
    """What each topology adds over direct, per packet of the stream cells: one panel per metric, per VM
    backend and direction one bar per topology (hatched by topology, coloured by backend)."""
    rows = stream_rows(rows)
    kinds = list(dict.fromkeys(str(r["topology"]) for r in rows))
    pairs = cells(rows, vm_only=True)
    fig, axes = _plt().subplots(1, len(TOPOLOGY_PANELS), figsize=(5 * len(TOPOLOGY_PANELS), 4.8))
    width = 0.8 / max(len(kinds), 1)
    for ax, (column, ylabel) in zip(axes, TOPOLOGY_PANELS, strict=True):
        for i, kind in enumerate(kinds):
            mine = [r for r in rows if r["topology"] == kind]
            x = [j + (i - (len(kinds) - 1) / 2) * width for j in range(len(pairs))]
            heights = [_median(_values(mine, b, d, column)) for b, d in pairs]
            ax.bar(x, heights, width, color=[colour(b) for b, _ in pairs], edgecolor="black", linewidth=0.5,
                   hatch=TOPOLOGY_HATCH[i % len(TOPOLOGY_HATCH)], label=kind)
            _mark_gaps(ax, x, heights)
        ax.set_xticks(range(len(pairs)), [_label(b, d) for b, d in pairs], fontsize=8)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8, title="topology")
    fig.suptitle("What the host side adds, per MTU-sized packet (medians over rounds)")
    return _save(fig, path)


def draw_all(directory: Path) -> list[Path]:
    """Draw every figure of a results directory into its plots/ folder; returns the paths.

    One workload: the four bar figures. Several (a message-size sweep): the four per
    workload (suffixed with its label) plus one sweep figure per headline metric.
    A timeline figure where the run sampled one. Every topology is a facet of its own: the
    figures of `direct` keep their names, another's are suffixed with it ("throughput-bridge.png")."""
    from iobench import results

    data = results.load(directory)
    every = data.records()
    exit_source = data.meta["accel"]["exit_source"]
    paths: list[Path] = []
    for kind in dict.fromkeys(str(r["topology"]) for r in every):
        def mine(frame: Any, _kind: str = kind) -> Any:
            return frame[frame["topology"] == _kind] if "topology" in frame.columns else frame

        suffix = "" if kind == DEFAULT_TOPOLOGY else f"-{kind}"
        paths += _draw_topology([r for r in every if r["topology"] == kind], exit_source, directory / "plots", suffix,
                                mine(data.exit_reasons).to_dict("records"), mine(data.exit_sites).to_dict("records"),
                                mine(data.timeline))
    if len({str(r["topology"]) for r in every}) > 1 and [r for r in stream_rows(every) if r["backend"] != "native"]:
        topology_figure(every, directory / "plots" / TOPOLOGY_FIGURE)
        paths.append(directory / "plots" / TOPOLOGY_FIGURE)
    return paths


def _draw_topology(rows: list[dict[str, Any]], exit_source: str, out: Path, suffix: str,
                   reasons: list[dict[str, Any]], sites: list[dict[str, Any]], slices: Any) -> list[Path]:
    def named(name: str) -> Path:
        return out / name.replace(".png", f"{suffix}.png")

    if not [r for r in rows if r["backend"] != "native"]:
        return []
    paths: list[Path] = []
    rr = [r for r in rows if r["direction"] == "rr"]
    if rr:
        paths += [latency_figure(rr, exit_source, named(RR_FIGURES[0])),
                  per_transaction_figure(rr, exit_source, named(RR_FIGURES[1]))]
    paced = paced_rows(rows)
    if paced:
        paths.append(paced_figure(paced, exit_source, named(PACED_FIGURE)))
    rows = stream_rows(rows)
    order = workloads(rows)
    for w in order:
        sub = [r for r in rows if r["workload"] == w]
        names = FIGURES if len(order) == 1 else tuple(n.replace(".png", f"-{w}.png") for n in FIGURES)
        drawn = [named(n) for n in names]
        exits_figure(sub, exit_source, drawn[0], reasons=reasons)
        copies_figure(sub, drawn[1])
        throughput_figure(sub, drawn[2])
        cpu_figure(sub, drawn[3])
        paths += drawn
    if len(order) > 1:
        for column in SWEEP_METRICS:
            path = named(f"sweep-{column.replace('_', '-')}.png")
            sweep_figure(rows, column, path)
            paths.append(path)
    for backend in sorted({str(s["backend"]) for s in sites if s["phase"] == "traffic" and s["direction"] != "rr"}):
        path = named(REGISTERS_FIGURE.format(backend=backend))
        registers_figure([s for s in sites if s["direction"] != "rr"], backend, path)
        paths.append(path)
    if not slices.empty:
        timeline_figure(slices, named(TIMELINE_FIGURE))
        paths.append(named(TIMELINE_FIGURE))
    return paths
