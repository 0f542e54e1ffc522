"""The run's table, read back from a results directory (so it prints the same on any machine).

One line per backend x direction x workload: the median over repeats with its
spread, throughput as a share of the native ceiling, and a flag where the
repeats disagree.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from iobench import exitsites, hoststate, results, topologies
from iobench.schema import cell_kind

HEADERS = ("backend", "dir", "workload", "Mbit/s (min-max)", "of native", "exits/pkt", "net exits/pkt",
           "irq/pkt", "copies/pkt syscall meas | model (all)", "cpu us/pkt", "n", "flags")


def _num(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(float(v), fmt)


def _present(v: Any) -> bool:
    """A value was read (rows.csv leaves a gap empty; pandas reads it as NaN)."""
    return v is not None and v != "" and not (isinstance(v, float) and math.isnan(v))


def _model(pair: tuple[Any, Any] | None) -> str:
    syscall, everything = pair or (None, None)
    return f"{_num(syscall, '.0f')} ({_num(everything, '.0f')})"


RR_HEADERS = ("backend", "workload", "transactions/s", "RTT p50 µs", "RTT p99 µs", "RTT p99.9 µs",
              "exits/txn", "net exits/txn", "irq/txn", "cpu us/txn", "n")


def rr_lines(summary: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Request/response cells (direction rr): medians over repeats of the per-transaction figures."""
    stats: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for s in summary:
        if s["direction"] == "rr":
            stats.setdefault((s["backend"], s["workload"]), {})[s["metric"]] = s
    out: list[tuple[str, ...]] = []
    for (backend, workload), m in stats.items():
        def med(metric: str, fmt: str, _m: dict[str, dict[str, Any]] = m) -> str:
            return _num(_m[metric]["median"], fmt) if metric in _m else "-"
        n = m.get("transactions_per_s", {}).get("n", 0)
        out.append((backend, workload, med("transactions_per_s", ".0f"), med("latency_p50_us", ".1f"),
                    med("latency_p99_us", ".1f"), med("latency_p999_us", ".1f"), med("exits_per_transaction", ".2f"),
                    med("net_exits_per_transaction", ".2f"), med("irq_injections_per_transaction", ".2f"),
                    med("cpu_us_per_transaction", ".1f"), str(n)))
    return out


PACED_HEADERS = ("backend", "direction", "workload", "offered pps", "achieved pps", "loss %", "jitter ms",
                 "exits/datagram", "irq/datagram", "cpu us/datagram", "n")


def paced_lines(summary: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Paced cells (workload paced-*): medians over repeats of the per-datagram figures at each rate."""
    stats: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for s in summary:
        if cell_kind(str(s["direction"]), str(s["workload"])) == "paced":
            stats.setdefault((s["backend"], s["direction"], s["workload"]), {})[s["metric"]] = s
    out: list[tuple[str, ...]] = []
    for (backend, direction, workload), m in stats.items():
        def med(metric: str, fmt: str, _m: dict[str, dict[str, Any]] = m) -> str:
            return _num(_m[metric]["median"], fmt) if metric in _m else "-"
        out.append((backend, direction, workload, med("offered_pps", ".0f"), med("achieved_pps", ".0f"),
                    med("loss_pct", ".2f"), med("jitter_ms", ".3f"), med("exits_per_datagram", ".2f"),
                    med("irq_injections_per_datagram", ".2f"), med("cpu_us_per_datagram", ".1f"),
                    str(m.get("achieved_pps", {}).get("n", 0))))
    return out


def table_lines(summary: list[dict[str, Any]], rows: list[dict[str, Any]], cells: list[dict[str, Any]],
                backends_meta: dict[str, dict[str, Any]]) -> list[tuple[str, ...]]:
    stats: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    summary = [s for s in summary if s["direction"] != "rr"]
    for s in summary:
        stats.setdefault((s["backend"], s["direction"], s["workload"]), {})[s["metric"]] = s
    # QEMU's syscall bytes are measured against the syscall part of the copy model; the model of all
    # copies (QEMU's userspace copy into guest memory included, which no counter sees) in parentheses.
    model = {(r["backend"], r["direction"]): (r.get("syscall_copies_per_packet_model"), r.get("copies_per_packet_model"))
             for r in rows}
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
        if backends_meta.get(backend, {}).get("knobs_not_applied"):
            flags.append("knob not applied")
        lines.append((
            backend, direction, workload,
            (_num(tp["median"] / 1e6, ".0f") + spread) if tp else "-",
            f"{share['median']:.0%}" if share else "-",
            med("exits_per_packet", ".3f") + (f" ({src[backend]})" if backend in src else ""),
            med("net_exits_per_packet", ".3f"), med("irq_injections_per_packet", ".3f"),
            f"{med('copies_per_packet_measured', '.2f')}{_kernel(m)} | {_model(model.get((backend, direction)))}",
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


def _kernel(m: dict[str, dict[str, Any]]) -> str:
    """With --copy-trace: the kernel's copies in QEMU's and the vhost worker's threads, beside
    the syscall-measured figure ("1.00, kernel 1.00")."""
    parts = [m[k]["median"] for k in ("kernel_copies_per_packet_qemu", "kernel_copies_per_packet_vhost") if k in m]
    return f", kernel {_num(sum(parts), '.2f')}" if len(parts) == 2 else ""


def load(directory: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """run.json, rows and summary of a results directory (any readable format) as plain dicts."""
    data = results.load(directory)
    summary = topologies.labelled({str(k): v for k, v in r.items()} for r in data.summary.to_dict("records"))
    meta = {**data.meta, "cells": topologies.labelled(data.meta.get("cells", [])),
            "flagged": topologies.labelled(data.meta.get("flagged", []))}
    return meta, topologies.labelled(data.records()), summary


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
    if any(s["direction"] != "rr" for s in summary):
        console.print(table)
    if rr := rr_lines(summary):
        emulated = " (TCG: emulator time)" if meta["accel"]["exit_source"] == "tcg-traps" else ""
        rr_table = Table(title=f"request/response: sockperf ping-pong, one transaction in flight{emulated}")
        for h in RR_HEADERS:
            rr_table.add_column(h, overflow="fold")
        for line in rr:
            rr_table.add_row(*line)
        console.print(rr_table)
    if paced := paced_lines(summary):
        paced_table = Table(title="paced: iperf3 UDP at a fixed offered rate (per datagram offered)")
        for h in PACED_HEADERS:
            paced_table.add_column(h, overflow="fold")
        for line in paced:
            paced_table.add_row(*line)
        console.print(paced_table)
    for name, info in meta.get("backends", {}).items():
        if info["status"].startswith("unavailable"):
            console.print(f"{name}: {info['status']}")
    if meta.get("flagged"):
        console.print(f"flagged: {len(meta['flagged'])} metric(s) whose repeats disagree by more than 10% (CV)")


def markdown(directory: Path) -> str:
    """report.md: the table, the host and guest, the accelerator and why, flags, figures."""
    meta, rows, summary = load(directory)
    lines = table_lines(summary, rows, meta.get("cells", []), meta.get("backends", {}))
    host = meta.get("host", {})
    image = meta.get("image", {})
    kernel_pkg: dict[str, Any] = next((p for p in image.get("packages", []) if p["name"].startswith("linux-image-")), {})
    out = [f"# iobench run {meta['run_id']}", ""]
    out.append(f"- status: **{meta.get('status')}**" + (f" ({meta['error']})" if meta.get("error") else ""))
    where = meta.get("environment", "host")
    out.append(f"- accelerator: **{meta['accel']['accel']}** (exits from `{meta['accel']['exit_source']}`), "
               f"environment: **{where}**; why: {meta['accel']['reason']}")
    if where == "lab":
        lab = meta.get("lab", {})
        out.append(f"- lab: {lab.get('how')}; L1 {lab.get('l1', {}).get('cpu')}, kernel "
                   f"{lab.get('l1', {}).get('kernel')}; L1 boot {lab.get('l1_boot_s')} s, wall {lab.get('wall_s')} s"
                   + (f"; chosen because {lab['why']}" if lab.get("why") else ""))
    outer = meta.get("lab", {}).get("outer_host") if where == "lab" else None
    if outer:
        out.append(f"- host: {outer.get('cpu_model')}, {outer.get('cores')} cores, kernel {outer.get('kernel')}")
    machine = "machine running the guest (L1)" if outer else "host"
    out.append(f"- {machine}: {host.get('cpu_model')}, {host.get('cores')} cores, kernel {host.get('kernel')}; "
               f"{host.get('qemu')}; {host.get('iperf3')}")
    state = (outer or host).get("state")
    if state:
        out.append(f"- host state: {hoststate.summary(state)} (run.json host.state; unread: "
                   f"{', '.join(state.get('missing', {})) or 'nothing'})")
    out.append(f"- guest: kernel {kernel_pkg.get('name')} {kernel_pkg.get('version')} "
               f"({image.get('boot_path')}), image {image.get('key')}")
    if placed := meta.get("placement"):
        plans = placed.get("plans") or {}
        out.append(f"- placement: **{placed.get('spec')}**" + "".join(
            f"; {key}: " + (", ".join(f"{role} on {cpus}" for role, cpus in plan["cpus"].items()) or "nothing pinned")
            + (f" ({'; '.join(plan['shared'])})" if plan.get("shared") else "") for key, plan in plans.items())
            + " (raw/*.sched.json: where each thread ran, per window)")
    scn = meta.get("scenario", {})
    out.append(f"- scenario: {scn.get('source')}: {scn.get('repeats')} rounds of {scn.get('duration_s')} s windows "
               f"(warm-up {scn.get('omit_s')} s); packets are MTU-sized (1514 B) equivalents")
    out += ["", "| " + " | ".join(h.replace("|", "/") for h in HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in line) + " |" for line in lines]
    if rr := rr_lines(summary):
        emulated = " Under TCG the round-trip times are emulator time, not KVM latencies." \
            if meta["accel"]["exit_source"] == "tcg-traps" else ""
        out += ["", "## Request/response (sockperf ping-pong, one transaction in flight)", "",
                f"Round-trip times from sockperf's own samples; exits, interrupts and CPU per transaction.{emulated}",
                "", "| " + " | ".join(RR_HEADERS) + " |", "|" + "---|" * len(RR_HEADERS)]
        out += ["| " + " | ".join(line) + " |" for line in rr]
    if paced := paced_lines(summary):
        out += ["", "## Paced (iperf3 UDP at a fixed offered datagram rate, below saturation)", "",
                "Each datagram crosses the I/O path at its own time, so exits and interrupts per datagram show "
                "what a device costs when nothing is batched; loss and jitter are the receiver's (iperf3's count "
                "by sequence number).", "", "| " + " | ".join(PACED_HEADERS) + " |", "|" + "---|" * len(PACED_HEADERS)]
        out += ["| " + " | ".join(line) + " |" for line in paced]
    if meta.get("flagged"):
        out += ["", "Repeats that disagree (coefficient of variation above 10%):", ""]
        out += [f"- {f['backend']} {f['direction']} {f['workload']}: {f['metric']} CV {f['cv']:.0%} (n={f['n']})"
                for f in meta["flagged"]]
    failed = [c for c in meta.get("cells", []) if c["status"] != "ok"]
    if failed:
        out += ["", "Failed cells:", ""]
        out += [f"- {c['backend']} {c['direction']} r{c['repeat']}: {c['reason'].splitlines()[0]}" for c in failed]
    for lost in meta.get("failed_attempts", []):
        what = (f"lost VM attempt {lost['attempt']} of" if lost.get("attempt") is not None
                else f"cell {', '.join(lost.get('cells_left', []))} failed in L1 attempt {lost.get('l1_attempt', '?')} of")
        out.append(f"- {what} {lost['backend']} r{lost['repeat']} (retried): {lost['reason'].splitlines()[0]}")
    for lost in meta.get("lab", {}).get("failed_l1_attempts", []):
        out.append(f"- lost L1 attempt {lost['attempt']} during {lost.get('phase') or '?'} (the run resumed in a new "
                   f"L1; {lost.get('cells_done', '?')} cells were done): {lost['reason']}")
    out += knob_lines(meta)
    out += offload_lines(meta)
    out += switch_lines(rows)
    out += ovs_lines(rows)
    out += exit_reason_lines(directory)
    out += exit_site_lines(directory)
    out += perturbation_lines(directory)
    out += topology_lines(summary)
    figures = sorted((directory / "plots").glob("*.png")) if (directory / "plots").exists() else []
    if figures:
        out += ["", "## Figures", ""] + [f"![{p.stem}](plots/{p.name})" for p in figures]
    return "\n".join(out) + "\n"


def knob_lines(meta: dict[str, Any]) -> list[str]:
    """Variants whose knobs the guest did not get (measured, but not what their name says), and how
    multiqueue variants spread their packets over the queues."""
    backends = meta.get("backends", {})
    out: list[str] = []
    missed = {name: b["knobs_not_applied"] for name, b in backends.items() if b.get("knobs_not_applied")}
    if missed:
        out += ["", "## Knobs that did not take effect (flagged: these rows measure the base's behaviour)", ""]
        out += [f"- **{name}**: {'; '.join(why)}" for name, why in missed.items()]
    spread = {name: b["queue_packets"] for name, b in backends.items() if b.get("queue_packets")}
    if spread:
        out += ["", "## Packets per queue (multiqueue variants; the guest driver's own counters)", ""]
        for name, cells in spread.items():
            for cell, counts in cells.items():
                parts = []
                for side in ("rx", "tx"):
                    mine = {k: v for k, v in counts.items() if k.startswith(side)}
                    total = sum(mine.values())
                    if total:
                        parts.append(", ".join(f"{k} {v / total:.0%}" for k, v in sorted(mine.items())))
                out.append(f"- **{name}** {cell}: " + ("; ".join(parts) or "no counters read"))
    return out


# The virtio features that decide how many frames and checksums a byte takes (negotiated.VIRTIO_NET_FEATURES)
OFFLOAD_FEATURES = ("CSUM", "GUEST_CSUM", "HOST_TSO4", "HOST_TSO6", "GUEST_TSO4", "GUEST_TSO6", "HOST_UFO", "GUEST_UFO")


def offload_lines(meta: dict[str, Any]) -> list[str]:
    """Which offloads each virtio path's device and driver agreed on (vhost-user's device is offered none, so
    per-packet figures compare like with like only against a path that has none either: vhost-nooffload)."""
    got = {name: b["negotiated"] for name, b in meta.get("backends", {}).items()
           if isinstance(b.get("negotiated"), dict) and b["negotiated"].get("features") is not None}
    if not got:
        return []
    out = ["", "## Offloads each virtio path negotiated (the guest driver's features at boot)", ""]
    for name, n in got.items():
        on = [f for f in OFFLOAD_FEATURES if f in n["features"]]
        out.append(f"- **{name}**: {', '.join(on) or 'none'}" + (f"; guest offloads on: {', '.join(n['offloads'])}"
                                                                  if n.get("offloads") else ""))
    return out


_IDENTITY = [("backend", "backend", ""), ("dir", "direction", ""), ("workload", "workload", "")]


def _per_row_table(title: str, rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> list[str]:
    """A report section with one line per row: `columns` are (header, row key, format: "" as it is, else
    _num's format, with a trailing "%" printed after the number)."""
    out = ["", title, "", "| " + " | ".join(h for h, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [str(r[key]) if not fmt else _num(r.get(key), fmt.rstrip("%")) + ("%" if fmt.endswith("%") else "")
                 for _, key, fmt in columns]
        out.append("| " + " | ".join(cells) + " |")
    return out


def switch_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The poll-mode switch's cost (vhost-user): its CPU per packet, its idle window's CPU, what it dropped."""
    mine = [r for r in rows if _present(r.get("pmd_packets"))]
    if not mine:
        return []
    return _per_row_table("## The vhost-user switch (testpmd: a core polls the rings, traffic or not)", mine, [
        *_IDENTITY, ("switch CPU µs/pkt", "cpu_us_per_packet_pmd", ".2f"), ("path CPU µs/pkt", "cpu_us_per_packet", ".2f"),
        ("idle window: switch CPU", "pmd_idle_cpu_pct", ".0f%"), ("drops", "pmd_drops", ".0f"),
        ("switch syscall copies/pkt", "pmd_copies_per_packet", ".2f")])


def ovs_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The run's Open vSwitch per window (ovs, ovs-netdev): its flow cache's hits and misses (each miss an
    upcall), and the CPU of its threads per packet beside the path's and the host's softirq time."""
    mine = [r for r in rows if _present(r.get("ovs_hits"))]
    if not mine:
        return []
    return _per_row_table("## Open vSwitch (the run's own: flow-cache lookups and ovs-vswitchd's CPU per window)", mine, [
        *_IDENTITY, ("repeat", "repeat", ""), ("hits", "ovs_hits", ".0f"), ("misses", "ovs_misses", ".0f"),
        ("miss %", "ovs_miss_pct", ".3f"), ("lost", "ovs_lost", ".0f"), ("masks hit", "ovs_masks_hit", ".0f"),
        ("OVS CPU µs/pkt", "cpu_us_per_packet_ovs", ".2f"),
        ("host softirq µs/pkt", "host_softirq_us_per_packet", ".2f"), ("path CPU µs/pkt", "cpu_us_per_packet", ".2f")])


def exit_reason_lines(directory: Path, top: int = 6) -> list[str]:
    """report.md's section on exits by reason (--exit-reasons): per backend and direction, the most
    frequent reasons per MTU-sized packet over all repeats, with their mean handling time."""
    path = directory / "exit_reasons.csv"
    if not path.exists():
        return []
    with path.open() as f:
        records = [r for r in csv.DictReader(f) if r["phase"] == "traffic"]
    if not records:
        return []
    out = ["", "## Exits by reason (kvm:kvm_exit of the VM's vCPU threads, traffic windows)", "",
           "| backend | dir | reason | exits/pkt | share | mean handling µs |", "|---|---|---|---|---|---|"]
    sums = exitsites.traffic_sums(records, lambda r: str(r["reason"]), ("exits", "handled", "handling_ns"))
    for key, (pkts, reasons) in sums.items():
        total = sum(v[0] for v in reasons.values())
        for name, (exits, handled, ns) in sorted(reasons.items(), key=lambda kv: -kv[1][0])[:top]:
            out.append(f"| {key[0]} | {key[1]} | {name} | " + (f"{exits / pkts:.4f}" if pkts else "-")
                       + f" | {exits / total:.0%} | " + (f"{ns / handled / 1000:.1f}" if handled else "-") + " |")
    return out


def exit_site_lines(directory: Path, top: int = 10) -> list[str]:
    """report.md's section on where the exits land: per backend and direction, the registers, ports and
    MSRs the vCPUs touched most per MTU-sized packet, and the exits to QEMU by reason."""
    path = directory / "exit_sites.csv"
    if not path.exists():
        return []
    with path.open() as f:
        ranked = exitsites.top_per_packet(csv.DictReader(f), top)
    if not ranked:
        return []
    out = ["", "## Where the exits land (kvm_mmio, kvm_pio, kvm_msr, kvm_userspace_exit; traffic windows)", "",
           "| backend | dir | device | register | access | per pkt |", "|---|---|---|---|---|---|"]
    for (backend, direction), found in ranked.items():  # below 1 in 10,000 packets: in exit_sites.csv only
        out += [f"| {backend} | {direction} | {s.device} | {s.register} | "
                f"{s.access if s.kind != 'userspace' else 'exit to QEMU'} | {s.per_packet:.4f} |"
                for s in found if s.per_packet >= 0.0001]
    return out


TOPOLOGY_METRICS = (("throughput_bps", "Mbit/s", 1e-6, ".0f"), ("exits_per_packet", "exits/pkt", 1.0, ".3f"),
                    ("copies_per_packet_measured", "copies/pkt", 1.0, ".2f"), ("cpu_us_per_packet", "cpu µs/pkt", 1.0, ".2f"),
                    ("host_softirq_us_per_packet", "host softirq µs/pkt", 1.0, ".2f"))


def topology_lines(summary: list[dict[str, Any]]) -> list[str]:
    """With more than one topology: per backend, direction and workload, each topology's medians beside
    `direct`'s and the ratio: what the host side adds (docs/topology.md). Request/response cells by
    transaction: their packets go both ways."""
    medians: dict[tuple[str, str, str], dict[str, dict[str, float]]] = {}
    for s in summary:
        where = (topologies.backend_of(str(s["backend"])), str(s["direction"]), str(s["workload"]))
        medians.setdefault(where, {}).setdefault(str(s.get("topology", "direct")), {})[str(s["metric"])] = s["median"]
    others = sorted({t for by in medians.values() for t in by} - {topologies.DEFAULT})
    if not others:
        return []
    out = ["", "## What each topology adds over direct (medians; ratio to direct in parentheses)", "",
           "| backend | dir | workload | topology | " + " | ".join(label for _, label, _, _ in TOPOLOGY_METRICS) + " |",
           "|---|---|---|---|" + "---|" * len(TOPOLOGY_METRICS)]
    for (backend, direction, workload), by in medians.items():
        base = by.get(topologies.DEFAULT, {})
        for topo in [t for t in others if t in by]:
            cells = []
            for column, _, scale, fmt in TOPOLOGY_METRICS:
                metric = column if direction != "rr" else column.replace("_per_packet", "_per_transaction")
                v, b = by[topo].get(metric), base.get(metric)
                if v is None or not _present(v):
                    cells.append("-")
                    continue
                ratio = f" ({v / b:.2f}x)" if b is not None and _present(b) and b else ""
                cells.append(format(v * scale, fmt) + ratio)
            out.append(f"| {backend} | {direction} | {workload} | {topo} | " + " | ".join(cells) + " |")
    return out


PERTURBATION_METRICS = (("throughput_bps", "Mbit/s", 1e-6, ".0f"), ("exits_per_packet", "exits/pkt", 1.0, ".3f"),
                        ("cpu_us_per_packet", "cpu µs/pkt", 1.0, ".2f"))


def perturbation_lines(directory: Path) -> list[str]:
    """With exit_reasons = "alternate": per backend and direction, the medians of the rounds counted by
    reason (tracing on) beside those of the rounds without (off), and the change: what the tracing costs
    the path it measures."""
    import statistics

    meta, rows, _ = load(directory)
    if meta.get("scenario", {}).get("exit_reasons") != "alternate":
        return []
    groups: dict[tuple[str, str], dict[bool, list[dict[str, Any]]]] = {}
    for r in rows:
        if topologies.backend_of(r["backend"]) != "native" and r["direction"] != "rr":
            groups.setdefault((r["backend"], r["direction"]), {}).setdefault(_present(r["exit_reasons_total"]), []).append(r)
    out = ["", "## What counting exits by reason costs (exit_reasons = \"alternate\": "
           "rounds 1, 4, 5, 8... on, 2, 3, 6, 7... off)", "",
           "| backend | dir | rounds on/off | " + " | ".join(f"{label} on | off | change" for _, label, _, _ in
                                                          PERTURBATION_METRICS) + " |",
           "|---|---|---|" + "---|---|---|" * len(PERTURBATION_METRICS)]
    for (backend, direction), sides in groups.items():
        on, off = sides.get(True, []), sides.get(False, [])
        cells = [f"{len(on)}/{len(off)}"]
        for column, _, scale, fmt in PERTURBATION_METRICS:
            a = [float(r[column]) for r in on if _present(r.get(column))]
            b = [float(r[column]) for r in off if _present(r.get(column))]
            if not a or not b:
                cells += ["-", "-", "-"]
                continue
            ma, mb = statistics.median(a), statistics.median(b)
            cells += [format(ma * scale, fmt), format(mb * scale, fmt), f"{(ma - mb) / mb:+.1%}" if mb else "-"]
        out.append(f"| {backend} | {direction} | " + " | ".join(cells) + " |")
    return out


def write_artifacts(directory: Path) -> None:
    """The derived files of a results directory: plots/ and report.md (re-creatable at any time)."""
    from iobench import plots

    plots.draw_all(directory)
    (directory / "report.md").write_text(markdown(directory))
