"""Change points over the history: found where a series steps, not where it only wanders."""

import csv
import json
import os
import random
import shutil
from pathlib import Path

import pytest

from iobench import changes
from iobench.cli import main


def test_a_step_of_15_percent_is_found_where_it_is_and_a_flat_noisy_series_has_none() -> None:
    rng = random.Random(7)
    step = [100 * (1 + rng.gauss(0, 0.02)) for _ in range(6)] + [115 * (1 + rng.gauss(0, 0.02)) for _ in range(6)]
    (shift,) = changes.in_series(step)
    assert shift.index == 6 and shift.p < 0.01 and len(shift.before) == len(shift.after) == 6
    flat = 0
    for seed in range(100):  # 100 series of 12 runs with 2% noise and no change: ~1% false alarms measured
        rng = random.Random(seed)
        flat += bool(changes.in_series([100 * (1 + rng.gauss(0, 0.02)) for _ in range(12)]))
    assert flat <= 3
    assert changes.in_series([1.0] * 5 + [2.0] * 0) == []  # too short to segment
    assert changes.noise([1.0, 1.0, 1.0]) == pytest.approx(1e-3)  # floored: a flat series has a finite penalty


def eight_runs_one_step(data: Path, tmp_path: Path) -> list[str]:
    """Eight copies of one run, one cell's exits per packet 20% higher from the fifth on."""
    roots = []
    for i in range(8):
        target = tmp_path / f"run{i}"
        shutil.copytree(data / "results-v3-tcg-sweep", target)
        meta = json.loads((target / "run.json").read_text())
        meta.update({"run_id": f"20261201-00000{i}-aaaaaa", "finished": 1_800_000_000 + 3600 * i})
        (target / "run.json").write_text(json.dumps(meta))
        lines = list(csv.DictReader((target / "summary.csv").open()))
        for line in lines:
            if (line["backend"], line["direction"], line["workload"], line["metric"]) == \
                    ("e1000", "rx", "tcp-P1-l256B", "exits_per_packet"):
                line["median"] = str(float(line["median"]) * (1.2 if i >= 4 else 1.0) * (1 + 0.005 * (i % 3)))
        with (target / "summary.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(lines[0]))
            writer.writeheader()
            writer.writerows(lines)
        roots.append(str(target))
    return roots


def test_db_changes_reads_the_history_and_names_the_run_where_a_cell_stepped(data: Path, tmp_path: Path,
                                                                             capsys) -> None:
    """One change point, at run 5 of 8, worse; every other series (identical medians) has none. The
    history notebook finds the same and marks it."""
    roots = eight_runs_one_step(data, tmp_path)
    db = tmp_path / "h.duckdb"
    assert main(["db", "add", *roots, "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["db", "changes", "--db", str(db), "--format", "json"]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    assert found["cell"] == "e1000/rx/tcp-P1-l256B" and found["metric"] == "exits_per_packet"
    assert found["from run"] == "20261201-000004-aaaaaa" and found["run #"] == "5 of 8"
    assert found["verdict"] == "worse" and found["size"].startswith("+2") and found["U p"] < 0.05
    assert main(["db", "changes", "--db", str(db), "--alpha", "2"]) == 2
    os.environ["IOBENCH_DB"] = str(db)
    try:
        from tests.test_notebooks import execute

        nb = execute("history.ipynb", "")
    finally:
        os.environ.pop("IOBENCH_DB")
    said = [o.get("data", {}).get("text/markdown", "") for c in nb.cells for o in c.get("outputs", [])]
    assert any("1 change point(s) in their series" in text for text in said), said
