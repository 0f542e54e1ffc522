"""examples/lab-soak.py, the tally behind docs/lab.md's soak tables: every loss charged to the cell that
was running, of the kind its record says, and a cell failed inside a lost L1 counted as that L1's loss
only (on a run.json shaped like a real lab run's, 20261207-164419-349aa1)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType


def soak() -> ModuleType:
    path = Path(__file__).parent.parent / "examples" / "lab-soak.py"
    spec = importlib.util.spec_from_file_location("lab_soak", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_losses_are_charged_to_their_cell_and_kind(tmp_path: Path) -> None:
    cells = [{"backend": b, "direction": d, "repeat": r, "workload": "w", "status": "ok"}
             for b in ("e1000", "virtio", "native") for d in ("rx", "tx") for r in (1, 2)]
    meta = {"cells": cells, "failed_attempts": [
        {"backend": "virtio", "repeat": 2, "attempt": 1, "cells_left": ["virtio/r2-tx"],
         "reason": "qemu exited (status 0)\nserial log tail: ..."},
        {"backend": "e1000", "repeat": 1, "attempt": 1, "cells_left": ["e1000/r1-rx", "e1000/r1-tx"],
         "reason": "boot: the guest printed no READY line in 90 s"},
        {"backend": "e1000", "repeat": 2, "attempt": 1, "cells_left": ["e1000/r2-tx"],
         "reason": "the path stopped answering: sockperf got 182 replies"},
        {"backend": "e1000", "repeat": 2, "attempt": None, "cells_left": ["tx/stream"],
         "reason": "QMP command query-stats got no answer in 30 s (in an L1 that was then lost: measured again)"}],
        "lab": {"wall_s": 300.0, "failed_l1_attempts": [
            {"attempt": 1, "reason": "L1 stalled: no progress from L1 for 93 s during e1000/r2: stream tx traffic",
             "phase": "e1000/r2: stream tx traffic"},
            {"attempt": 2, "reason": "L1's QEMU exited (signal 6)", "phase": "virtio/r1-l1attempt2: boot"},
            {"attempt": 3, "reason": "inner run stuck: no progress for 95 s during virtio/r2-l1attempt3: stream rx "
             "traffic (budget 63 s + 30 s margin) while L1 kept beating", "phase": "virtio/r2-l1attempt3: stream rx traffic"}]}}
    (tmp_path / "run.json").write_text(json.dumps(meta))
    m = soak()
    counted, lost, walls = m.tally([tmp_path])
    assert counted == {("e1000", "rx"): 2, ("e1000", "tx"): 2, ("virtio", "rx"): 2, ("virtio", "tx"): 2}
    assert lost["L2 reset"] == {("virtio", "tx"): 1} and lost["L2 boot lost"] == {("e1000", "rx"): 1}
    assert lost["L2 hung"] == {("e1000", "tx"): 1}  # the cell failed in the lost L1 is not an L2 loss
    assert lost["L1 stall"] == {("e1000", "tx"): 1} and lost["L1 death"] == {("virtio", "boot"): 1}
    assert lost["inner stuck"] == {("virtio", "rx"): 1}
    text = m.table(counted, lost, "backend direction")
    assert "| **all** | 8 | 1 (12.5) | 1 (12.5) | 1 (12.5) | 1 (12.5) | 1 (12.5) | 1 (12.5) |" in text
    assert walls == [300.0]
