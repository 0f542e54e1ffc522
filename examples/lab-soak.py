#!/usr/bin/env python3
"""Tally the lab's losses over many runs (the method behind docs/lab.md's soak tables).

    examples/lab-soak.py RUN_DIR [RUN_DIR ...] [--label TEXT]

Each RUN_DIR is a results directory of a lab run (`--accel lab`). Read from its run.json only:
- VM cells: the cells of VM backends that reached an outcome (ok or failed), per backend and direction;
- L1 lost (`lab.failed_l1_attempts`): a *stall* (the watchdog's "L1 stalled: ...": no progress or a
  silent console), the *inner run stuck* while L1 kept beating ("inner run stuck: ...", L1 replaced all
  the same) or a *death* (anything else: L1's QEMU or kernel ended), charged to the backend and
  direction of the phase L1 was in (a boot or idle window counts as its backend's "boot"/"idle");
- L2 lost (`failed_attempts`, each retried on a new boot): a *reset* ("qemu exited (status 0)": the
  nested guest reset under -no-reboot), a *boot* lost, or a *hung* guest or path (no answer, an
  overrun window), charged to the cell that was running (the first of the attempt's cells left); a
  cell that failed inside an L1 that was then lost (measured again in the next) is that L1's loss.
Printed: one Markdown table, per backend and direction and in total, the counts and the rate per 100
VM cells of each kind, with the runs' lab wall times. Nothing is inferred: a loss whose phase names no
cell is charged to "(unknown)"."""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

NATIVE = "native"
_PHASE = re.compile(r"^(?P<backend>[\w.+-]+)/r\d+(?:-[\w]+)*: (?P<what>.*)$")
_CELL = re.compile(r"(?P<direction>rx|tx|rr)(?:-|$)")


def direction_of_cell(name: str) -> str:
    """A cell name's direction: its last rx/tx/rr token (r3-rx, r3-rr-tcp-l64B-rr, ...)."""
    found = _CELL.findall(name.split("/")[-1])
    return found[-1] if found else "(unknown)"


def charge_l1(phase: str) -> tuple[str, str]:
    m = _PHASE.match(phase or "")
    if not m:
        return "(unknown)", "(unknown)"
    what = m["what"]
    if "traffic" in what:
        return m["backend"], what.split(" traffic")[0].split()[-1]
    return m["backend"], "boot" if "boot" in what else "idle" if "idle" in what else what.split()[0]


def kind_of_l2(reason: str) -> str:
    if reason.startswith("boot:"):
        return "L2 boot lost"
    if "qemu exited (status 0)" in reason:
        return "L2 reset"
    return "L2 hung"


KINDS = ("L1 stall", "inner stuck", "L1 death", "L2 reset", "L2 hung", "L2 boot lost")


def tally(dirs: list[Path]) -> tuple[Counter[tuple[str, str]], dict[str, Counter[tuple[str, str]]], list[float]]:
    cells: Counter[tuple[str, str]] = Counter()
    lost: dict[str, Counter[tuple[str, str]]] = {k: Counter() for k in KINDS}
    walls = []
    for d in dirs:
        meta = json.loads((d / "run.json").read_text())
        lab = meta.get("lab") or {}
        if lab.get("wall_s") is not None:
            walls.append(float(lab["wall_s"]))
        for c in meta.get("cells", []):
            if c["backend"] != NATIVE and c["status"] in ("ok", "failed"):
                cells[(c["backend"], c["direction"])] += 1
        for a in lab.get("failed_l1_attempts", []):
            why = str(a.get("reason", ""))
            kind = ("L1 stall" if why.startswith("L1 stalled") else "inner stuck" if why.startswith("inner run stuck")
                    else "L1 death")
            lost[kind][charge_l1(a.get("phase", ""))] += 1
        for a in meta.get("failed_attempts", []):
            if a.get("attempt") is None:  # a cell failed inside an L1 that was then lost: that L1's loss
                continue
            left = a.get("cells_left") or []
            where = (a["backend"], direction_of_cell(left[0]) if left else "(unknown)")
            lost[kind_of_l2(str(a.get("reason", "")))][where] += 1
    return cells, lost, walls


def table(cells: Counter[tuple[str, str]], lost: dict[str, Counter[tuple[str, str]]], label: str) -> str:
    keys = sorted(set(cells) | {k for c in lost.values() for k in c})
    head = "| " + label + " | VM cells | " + " | ".join(f"{k} (/100)" for k in KINDS) + " |"
    lines = [head, "|" + "---|" * (2 + len(KINDS))]

    def line(name: str, n: int, counts: list[int]) -> str:
        rate = [f"{c} ({100 * c / n:.1f})" if n else f"{c} (-)" for c in counts]
        return f"| {name} | {n} | " + " | ".join(rate) + " |"

    for key in keys:
        lines.append(line(f"{key[0]} {key[1]}", cells[key], [lost[k][key] for k in KINDS]))
    lines.append(line("**all**", sum(cells.values()), [sum(lost[k].values()) for k in KINDS]))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--label", default="backend direction")
    args = ap.parse_args()
    dirs = [p for p in args.runs if (p / "run.json").is_file()]
    cells, lost, walls = tally(dirs)
    print(table(cells, lost, args.label))
    if walls:
        print(f"\n{len(dirs)} runs; lab wall {min(walls):.0f}-{max(walls):.0f} s")


if __name__ == "__main__":
    main()
