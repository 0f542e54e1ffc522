"""The history database: results directories of every readable format in, SQL out; what refuses
and why; the gate's baseline from the history; compare over more than two runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from iobench import gate, history, results
from iobench.cli import _record_run, build_parser, main
from iobench.errors import UserError


def copy_run(data: Path, name: str, dest: Path, run_id: str | None = None, **meta_changes) -> Path:
    target = dest / (run_id or name)
    shutil.copytree(data / name, target)
    if run_id or meta_changes:
        meta = json.loads((target / "run.json").read_text())
        meta.update({"run_id": run_id or meta["run_id"], **meta_changes})
        (target / "run.json").write_text(json.dumps(meta))
    return target


def test_older_formats_go_in_upgraded_and_a_second_add_replaces(data: Path, tmp_path: Path) -> None:
    con = history.connect(tmp_path / "h.duckdb")
    ids = [history.add(con, d, labels) for d, labels in history.directories([data])]
    assert len(ids) == 2  # results-v2-lab and results-v3-tcg-sweep
    runs = history.query(con, "SELECT run_id, format_version, upgraded_from, environment, accel FROM runs ORDER BY run_id")
    assert set(runs["upgraded_from"]) == {2, 3} and set(runs["environment"]) == {"lab", "host"}
    per_run = history.query(con, "SELECT run_id, count(*) AS n FROM rows GROUP BY run_id ORDER BY run_id")
    expected = sorted((results.load(d).meta["run_id"], len(results.load(d).rows)) for d, _ in history.directories([data]))
    assert sorted(zip(per_run["run_id"], per_run["n"], strict=True)) == expected
    # a column a later format added is NULL for the older runs, not missing
    assert history.query(con, "SELECT count(*) AS n FROM rows WHERE achieved_pps IS NOT NULL")["n"][0] == 0
    history.add(con, data / "results-v2-lab")
    assert history.query(con, "SELECT count(*) AS n FROM runs")["n"][0] == 2
    assert history.query(con, "SELECT count(*) AS n FROM rows")["n"].iloc[0] == sum(n for _, n in expected)


def test_a_database_made_before_new_row_columns_gains_them(data: Path, tmp_path: Path) -> None:
    """A history made by an iobench whose rows had fewer columns (here: before placement) takes a run of
    today's format: the missing columns are added, empty for the runs already in it."""
    path = tmp_path / "old.duckdb"
    con = history.connect(path)
    history.add(con, data / "results-v2-lab")
    for column in ("placement", "migrations", "migrated_roles", "cpu_s_harness", "harness_cpu_pct"):
        con.execute(f'ALTER TABLE rows DROP COLUMN "{column}"')
    con.close()
    con = history.connect(path)
    history.add(con, data / "results-v3-tcg-sweep")
    got = history.query(con, "SELECT count(*) AS n, count(placement) AS placed FROM rows")
    assert got["n"][0] > 0 and got["placed"][0] == 0
    con.close()


def test_an_unreadable_format_is_refused_with_the_reason(data: Path, tmp_path: Path) -> None:
    old = copy_run(data, "results-v2-lab", tmp_path, format_version=1)
    con = history.connect(tmp_path / "h.duckdb")
    with pytest.raises(UserError, match="results format 1"):
        history.add(con, old)
    assert history.query(con, "SELECT count(*) AS n FROM runs")["n"][0] == 0


def test_db_commands_add_and_query(data: Path, tmp_path: Path, capsys) -> None:
    db = tmp_path / "h.duckdb"
    assert main(["db", "add", str(data / "results-v2-lab"), "--db", str(db)]) == 0
    assert main(["db", "query", "SELECT backend, count(*) AS n FROM rows GROUP BY backend ORDER BY backend",
                 "--db", str(db), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "backend,n\ne1000,2\nnative,2\n" in out  # rx and tx of each
    assert main(["db", "query", "SELECT nope FROM runs", "--db", str(db)]) == 2
    assert "the query failed" in capsys.readouterr().err
    assert main(["db", "query", "SELECT 1", "--db", str(tmp_path / "none.duckdb")]) == 2
    assert "no history database" in capsys.readouterr().err
    assert main(["db", "add", str(tmp_path / "empty"), "--db", str(db)]) == 2


def test_a_published_run_is_added_beside_it_unless_told_not_to(data: Path, tmp_path: Path) -> None:
    run_dir = copy_run(data, "results-v3-tcg-sweep", tmp_path / "results")
    args = build_parser().parse_args(["run", "--out", str(tmp_path / "results")])
    _record_run(run_dir, args)
    got = results.query("SELECT run_id, scenario FROM runs", tmp_path / "results" / "iobench.duckdb")
    assert list(got["run_id"]) == [results.load(run_dir).meta["run_id"]]
    other = copy_run(data, "results-v2-lab", tmp_path / "elsewhere")
    _record_run(other, build_parser().parse_args(["run", "--no-db"]))
    assert not (tmp_path / "elsewhere" / "iobench.duckdb").exists()


def test_the_gate_takes_its_baseline_from_the_history_and_records_its_verdicts(data: Path, tmp_path: Path,
                                                                                capsys) -> None:
    root = tmp_path / "results"
    earlier = copy_run(data, "results-v2-lab", root, "20261130-000000-aaaaaa", finished=1.0e9)
    later = copy_run(data, "results-v2-lab", root, "20261130-000001-bbbbbb", finished=1.1e9)
    assert main(["gate", str(later), "--baseline-history", "2"]) == 2  # no history database yet
    assert "no history database" in capsys.readouterr().err
    assert main(["db", "add", str(earlier), "--db", str(root / "iobench.duckdb")]) == 0
    assert main(["gate", str(later), "--baseline-history", "2"]) == 2
    assert "holds 1 earlier ok run(s)" in capsys.readouterr().err
    assert main(["gate", str(later), "--baseline-history", "1"]) == 2  # one run of one repeat: no noise known
    assert "hold 1 repeat(s) in all; a baseline needs at least 5" in capsys.readouterr().err
    for i in range(1, 5):
        more = copy_run(data, "results-v2-lab", root, f"20261130-00000{i}-aaaaa{i}", finished=1.0e9 + i)
        assert main(["db", "add", str(more), "--db", str(root / "iobench.duckdb")]) == 0
    assert main(["gate", str(later), "--baseline-history", "5"]) == 0  # the same numbers: nothing worse
    verdicts = results.query("SELECT run_id, baseline, baseline_run_id, verdict FROM verdicts", root / "iobench.duckdb")
    assert set(verdicts["run_id"]) == {"20261130-000001-bbbbbb"}
    assert set(verdicts["verdict"]) <= {"ok", "inconclusive"}
    assert set(verdicts["baseline_run_id"]) == {"20261130-000004-aaaaa4"}
    assert main(["gate", str(later), "--baseline-history", "1", "--baseline", "x.json"]) == 2


def test_a_baseline_of_several_runs_measures_their_drift() -> None:
    """Two runs each steady but 12% apart: either alone assumes its environment's drift and says so; both
    together measure it (the SD of their locations, ~8%), and keep each run's repeats apart."""
    import math

    import pandas as pd

    def run(run_id: str, level: float, finished: float, accel: str = "kvm") -> results.RunData:
        rows = pd.DataFrame([{"backend": "e1000", "direction": "rx", "workload": "w", "exit_source": "kvm-stats",
                              "exits_per_packet": level * (1 + 0.001 * i)} for i in range(5)])
        meta = {"run_id": run_id, "finished": finished, "accel": {"accel": accel, "exit_source": "kvm-stats"},
                "environment": "host", "host": {}, "scenario": {"repeats": 5, "name": "s"}, "status": "ok"}
        return results.RunData(Path(run_id), meta, rows, None, None)

    a, b = run("a", 1.0, 1.0), run("b", 1.12, 2.0)
    alone = gate.pooled_baseline([a], "x")
    assert alone["cells"][0]["sigma_between"] is None and "no between-run SD of its own" in alone["how"]
    pooled = gate.pooled_baseline([a, b], "x")
    cell = pooled["cells"][0]
    assert pooled["runs"] == ["a", "b"] and [len(r) for r in cell["runs"]] == [5, 5]
    assert cell["sigma_between"] == pytest.approx(math.log(1.12) / math.sqrt(2), rel=0.05)
    with pytest.raises(UserError, match="accelerator differs"):
        gate.make_baseline([a, run("c", 1.0, 3.0, accel="tcg")], "x")


def test_each_environment_has_its_measured_drift_floor() -> None:
    tcg, kvm, lab = {"accel": "tcg"}, {"accel": "kvm", "environment": "host"}, {"accel": "kvm", "environment": "lab"}
    assert gate.drift_floor("throughput_bps", tcg) == gate.DRIFT_FLOOR["tcg"][2]
    assert gate.drift_floor("exits_per_packet", tcg, host_bound=True) == gate.DRIFT_FLOOR["tcg"][1]
    assert gate.drift_floor("exits_per_packet", tcg) == gate.DRIFT_FLOOR["tcg"][0]
    assert gate.drift_floor("exits_per_transaction", lab) == gate.DRIFT_FLOOR["lab"][0] >= 0.10
    assert gate.drift_floor("exits_per_packet", kvm) == gate.DRIFT_FLOOR["kvm"][0]


def test_compare_takes_more_than_two_runs(data: Path, tmp_path: Path, capsys) -> None:
    a = copy_run(data, "results-v3-tcg-sweep", tmp_path, "a")
    b = copy_run(data, "results-v3-tcg-sweep", tmp_path, "b")
    c = copy_run(data, "results-v3-tcg-sweep", tmp_path, "c")
    assert main(["compare", str(a), str(b), str(c)]) == 0
    out = capsys.readouterr().out
    assert "B1 = b, B2 = c against A = a" in out and "B2/A" in out
