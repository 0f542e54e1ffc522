"""A run's progress on disk, cell by cell, so that finished work outlives the process.

Why: in the nested lab the whole first-level VM (L1) can stall or die in the
middle of a run. Everything the inner run had measured must survive that: the
host resumes the run in a fresh L1 (only the cells still missing are run, under
the same run id and round structure), and on Ctrl-C, SIGTERM or an exhausted
retry budget it publishes the cells done as an ordinary results directory.

The checkpoint is `progress.json` in the run's staging directory: the run's
fixed description (`meta`: everything run.json says before the first cell), and
every cell outcome, row, lost VM attempt and timeline slice so far. It is
rewritten whole after each cell (write to a temp file, fsync, rename), so a
reader sees either the previous or the next state, never half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME = "progress.json"
VERSION = 1


@dataclass
class Progress:
    """What a run has done so far; `meta` is the part of run.json known at its start."""

    meta: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    cells: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    exit_reasons: list[dict[str, Any]] = field(default_factory=list)
    exit_sites: list[dict[str, Any]] = field(default_factory=list)

    def done(self) -> set[tuple[str, str, int, str, str]]:
        """(backend, direction, repeat, workload, topology) of every cell with an outcome (ok or failed)."""
        return {(c["backend"], c["direction"], int(c["repeat"]), c["workload"], c.get("topology", "direct"))
                for c in self.cells}

    def reopen_failed(self) -> list[dict[str, Any]]:
        """Give the failed cells another chance, when the run resumes in a new L1. Why: an L1 that stalls
        often fails a cell or two before its watchdog calls it lost (a QMP command with no answer, a guest
        that stopped answering), and those failures say nothing about the cell. Each becomes a lost attempt
        in run.json (its reason kept) and is measured again; one that fails for a reason of its own fails
        again, at most once per L1 attempt."""
        failed = [c for c in self.cells if c.get("status") != "ok"]
        self.cells = [c for c in self.cells if c.get("status") == "ok"]
        self.attempts.extend({"backend": c["backend"], "repeat": c["repeat"], "attempt": None,
                              "reason": f"{c.get('reason') or 'failed'} (in an L1 that was then lost: measured again)",
                              "cells_left": [f"{c['direction']}/{c['workload']}"],
                              **({"l1_attempt": c["l1_attempt"]} if "l1_attempt" in c else {})} for c in failed)
        return failed


def save(staging: Path, progress: Progress) -> None:
    path = staging / NAME
    tmp = staging / f".{NAME}.tmp"
    body = {"checkpoint_version": VERSION, "meta": progress.meta, "rows": progress.rows, "cells": progress.cells,
            "attempts": progress.attempts, "timeline": progress.timeline, "exit_reasons": progress.exit_reasons,
            "exit_sites": progress.exit_sites}
    with tmp.open("w") as f:
        json.dump(body, f, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def load(staging: Path) -> Progress | None:
    """The checkpoint of a staging dir, or None where there is none (the run died before its first cell)."""
    try:
        body = json.loads((staging / NAME).read_text())
    except FileNotFoundError:
        return None
    if body.get("checkpoint_version") != VERSION:
        raise ValueError(f"{staging / NAME}: checkpoint version {body.get('checkpoint_version')}, expected {VERSION}")
    return Progress(body["meta"], body["rows"], body["cells"], body["attempts"], body["timeline"],
                    body.get("exit_reasons", []), body.get("exit_sites", []))


def find_staging(root: Path) -> Path | None:
    """The one unpublished staging dir under `root` that holds a checkpoint (the lab's inner run)."""
    found = sorted(p.parent for p in root.glob(f".*.partial/{NAME}"))
    return found[-1] if found else None
