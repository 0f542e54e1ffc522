"""`iobench exitbench`: run, publish a results directory, print the table, draw the figure."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from iobench import __version__, hostinfo
from iobench.exitbench import bench
from iobench.exitbench.programs import PROGRAMS
from iobench.store import ResultsWriter, new_run_id


def kvm_flavor() -> dict[str, Any]:
    """What kind of KVM this is: it decides what an "exit" costs and even what counts as one."""
    modules = sorted(p.name for p in Path("/sys/module").glob("kvm*")) if Path("/sys/module").exists() else []
    info = hostinfo.cpuinfo()
    flags = info.get("flags", "").split()
    notes = []
    if "kvm_pvm" in modules:
        notes.append("PVM: a paravirtualized KVM that runs without hardware virtualization; the guest's "
                     "real-mode code is executed by KVM's instruction emulator (insn_emulation counts it), and "
                     "ioeventfd writes handled in the kernel are not counted as exits")
    if "hypervisor" in flags:
        notes.append("this host is itself a virtual machine: exits are nested and cost more than on bare metal")
    return {"kvm_modules": modules, "cpu_virt_flags": [f for f in ("vmx", "svm", "hypervisor") if f in flags],
            "notes": notes}


def run(iterations: int, repeats: int, kinds: list[str], out: Path) -> tuple[Path, list[bench.ExitRow]]:
    host = hostinfo.describe()
    cpu_hz = hostinfo.cpu_hz(host)
    rows = bench.run(kinds, iterations, repeats, cpu_hz)  # preflight inside: nothing written if /dev/kvm is unusable
    run_id = new_run_id()
    writer = ResultsWriter(out, run_id)
    import pandas as pd

    pd.DataFrame([asdict(r) for r in rows]).to_csv(writer.staging / "rows.csv", index=False)
    figure(rows, writer.staging / "plots" / "exit-cost.png")
    meta = {
        "kind": "exitbench", "iobench_version": __version__, "run_id": run_id, "status": "ok",
        "finished": time.time(), "environment": "host", "host": host, "kvm": kvm_flavor(),
        "options": {"iterations": iterations, "repeats": repeats, "kinds": kinds},
        "programs": {k: PROGRAMS[k].doc for k in kinds},
        "medians": bench.medians(rows),
        "cycles_note": "cycles_per_exit = ns x nominal clock from /proc/cpuinfo, not a cycle counter",
    }
    return writer.publish(meta), rows


def figure(rows: list[bench.ExitRow], path: Path) -> None:
    """Nanoseconds per guest operation by kind, median with min-max bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    med = bench.medians(rows)
    kinds = list(med)
    values = [med[k]["ns_per_op"] / 1000 for k in kinds]
    lo = [v - med[k]["ns_per_op_min"] / 1000 for k, v in zip(kinds, values, strict=True)]
    hi = [med[k]["ns_per_op_max"] / 1000 - v for k, v in zip(kinds, values, strict=True)]
    colors = ["#c0392b" if med[k]["userspace_exits"] else "#2980b9" for k in kinds]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar(kinds, values, yerr=[lo, hi], color=colors, capsize=4)
    for i, k in enumerate(kinds):
        ax.annotate(f"{med[k]['exits_per_op']:.2f} exits/op", (i, values[i]), ha="center", va="bottom",
                    xytext=(0, 6), textcoords="offset points", fontsize=8)
    ax.set_ylabel("host time per guest operation (µs)")
    ax.set_title("Cost of one guest I/O operation: exit to the VMM (red) vs handled in the kernel (blue)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table_lines(rows: list[bench.ExitRow]) -> list[tuple[str, ...]]:
    med = bench.medians(rows)
    lines: list[tuple[str, ...]] = []
    for kind, m in med.items():
        rs = [r for r in rows if r.kind == kind]
        efd = rs[0].eventfd_count
        spread = f"{m['ns_per_op']:.0f} ({m['ns_per_op_min']:.0f}-{m['ns_per_op_max']:.0f})"
        per_exit = f"{m['ns_per_exit']:.0f}" if m["exits_per_op"] >= 0.5 else "- (no exit per op)"
        lines.append((kind, str(rs[0].iterations), f"{m['exits_per_op']:.3f}", f"{m['userspace_exits']:.0f}",
                      "-" if efd is None else str(efd), spread, per_exit, str(len(rs))))
    return lines
