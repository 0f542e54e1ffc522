"""The history: every results directory in one embedded DuckDB database, queryable with SQL.

One results directory answers one run's question; trends, fleets and "which host type
regressed" need every run side by side. asv and Bencher keep every result in a store
and plot from it; here that store is a DuckDB file (default `results/iobench.duckdb`)
that notebooks and the shell query directly.

Tables (one row per ...):
- `runs`: run — where and with what it ran (host label, machine, fleet, kernel, QEMU,
  accelerator, environment, scenario, iobench version and git revision, status),
  its directory and its whole run.json (`meta`, JSON);
- `rows`: measured cell (rows.csv, every column of this format, `run_id` first);
- `summary`: cell metric (summary.csv with `run_id`);
- `verdicts`: gate verdict (one per baseline cell metric per judging).

Directories of any readable format go in upgraded (`results.load`: columns a later format
added are NULL); unreadable ones are refused with the reason. Adding a run again replaces it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from iobench import results
from iobench.errors import UserError
from iobench.schema import COLUMNS, DERIVED_COLUMNS, SUMMARY_COLUMNS, Row
from iobench.topologies import DEFAULT as DEFAULT_TOPOLOGY

DB_NAME = "iobench.duckdb"
HISTORY_VERSION = 1
# Writers hold the file only while they add one run; two runs finishing together wait for each other.
LOCK_WAIT_S = 15.0


def default_path(results_root: Path) -> Path:
    """The database of a results root: beside the run directories it indexes."""
    return results_root / DB_NAME


def _sql_type(annotation: str) -> str:
    for py, sql in (("bool", "BOOLEAN"), ("int", "BIGINT"), ("float", "DOUBLE"), ("str", "VARCHAR")):
        if annotation.split(" |")[0] == py:
            return sql
    raise TypeError(f"no SQL type for {annotation}")


ROW_TYPES = {f.name: _sql_type(str(f.type)) for f in fields(Row)} | {c: "DOUBLE" for c in DERIVED_COLUMNS}
RUN_COLUMNS = {
    "run_id": "VARCHAR PRIMARY KEY", "directory": "VARCHAR", "host": "VARCHAR", "hostname": "VARCHAR",
    "machine": "VARCHAR", "fleet_id": "VARCHAR", "kernel": "VARCHAR", "qemu": "VARCHAR", "cpu_model": "VARCHAR",
    "accel": "VARCHAR", "exit_source": "VARCHAR", "environment": "VARCHAR", "scenario": "VARCHAR", "kind": "VARCHAR",
    "repeats": "INTEGER", "iobench_version": "VARCHAR", "iobench_revision": "VARCHAR", "format_version": "INTEGER",
    "upgraded_from": "INTEGER", "started": "TIMESTAMP", "finished": "TIMESTAMP", "status": "VARCHAR",
    "added": "TIMESTAMP", "meta": "JSON",
}
SUMMARY_TYPES = {"backend": "VARCHAR", "direction": "VARCHAR", "workload": "VARCHAR", "metric": "VARCHAR", "n": "INTEGER",
                 "median": "DOUBLE", "min": "DOUBLE", "max": "DOUBLE", "cv": "DOUBLE", "flagged": "BOOLEAN",
                 "topology": "VARCHAR"}
VERDICT_COLUMNS = {
    "run_id": "VARCHAR", "baseline": "VARCHAR", "baseline_run_id": "VARCHAR", "judged": "TIMESTAMP",
    "backend": "VARCHAR", "direction": "VARCHAR", "workload": "VARCHAR", "metric": "VARCHAR",
    "baseline_median": "DOUBLE", "current": "DOUBLE", "ratio": "DOUBLE", "tolerance": "DOUBLE", "detectable": "DOUBLE",
    "test": "VARCHAR", "verdict": "VARCHAR",
}
assert list(SUMMARY_TYPES) == SUMMARY_COLUMNS


def _ddl(table: str, columns: dict[str, str]) -> str:
    return f"CREATE TABLE IF NOT EXISTS {table} (" + ", ".join(f'"{c}" {t}' for c, t in columns.items()) + ")"


@dataclass(frozen=True)
class Labels:
    """What a fleet knows about a run that its run.json does not: the inventory's name for the host,
    the physical machine it shares, the fleet run it belonged to."""

    host: str | None = None
    machine: str | None = None
    fleet_id: str | None = None


def connect(path: Path, read_only: bool = False) -> Any:
    """A DuckDB connection with the tables in place; a clear error when another process holds the file."""
    import duckdb

    if read_only and not path.exists():
        raise UserError(f"no history database at {path}: runs are added to it as they finish, "
                        "or with `iobench db add DIR...`.")
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:  # another process has it open for writing (DuckDB's file lock)
            if time.monotonic() > deadline:
                raise UserError(f"cannot open the history database {path} ({str(exc).splitlines()[0]}): another "
                                "process (a notebook, a running iobench) holds it; close it and retry.") from exc
            time.sleep(0.2)
    if not read_only:
        con.execute(_ddl("runs", RUN_COLUMNS))
        row_columns = {"run_id": "VARCHAR"} | {c: ROW_TYPES[c] for c in COLUMNS if c != "run_id"}
        con.execute(_ddl("rows", row_columns))
        _gain_columns(con, "rows", row_columns)
        con.execute(_ddl("summary", {"run_id": "VARCHAR"} | SUMMARY_TYPES))
        _gain_columns(con, "summary", {"run_id": "VARCHAR"} | SUMMARY_TYPES)
        con.execute(_ddl("verdicts", VERDICT_COLUMNS))
        con.execute("CREATE TABLE IF NOT EXISTS history_info (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute("INSERT OR REPLACE INTO history_info VALUES ('version', ?)", [str(HISTORY_VERSION)])
    return con


def _gain_columns(con: Any, table: str, columns: dict[str, str]) -> None:
    """A database made before a format added columns gains them: empty, except `topology`, which every
    earlier run measured `direct`."""
    have = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                                      [table]).fetchall()}
    for column in [c for c in columns if c not in have]:
        default = f" DEFAULT '{DEFAULT_TOPOLOGY}'" if column == "topology" else ""
        con.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {columns[column]}{default}')


def _ts(value: Any) -> Any:
    import datetime

    return None if value is None else datetime.datetime.fromtimestamp(float(value), datetime.UTC).replace(tzinfo=None)


def _run_record(data: results.RunData, labels: Labels) -> dict[str, Any]:
    meta, host = data.meta, data.meta.get("host", {})
    scn = meta.get("scenario", {})
    hostname = host.get("hostname")
    return {
        "run_id": meta["run_id"], "directory": str(data.directory.resolve()),
        "host": labels.host or (hostname if hostname not in (None, "(none)") else None) or meta.get("environment"),
        "hostname": hostname, "machine": labels.machine, "fleet_id": labels.fleet_id,
        "kernel": host.get("kernel"), "qemu": host.get("qemu"), "cpu_model": host.get("cpu_model"),
        "accel": meta.get("accel", {}).get("accel"), "exit_source": meta.get("accel", {}).get("exit_source"),
        "environment": meta.get("environment", "host"), "scenario": scn.get("name"), "kind": scn.get("kind"),
        "repeats": scn.get("repeats"), "iobench_version": meta.get("iobench_version"),
        "iobench_revision": meta.get("iobench_revision"), "format_version": meta.get("format_version"),
        "upgraded_from": meta.get("upgraded_from"), "started": _ts(meta.get("started")),
        "finished": _ts(meta.get("finished")), "status": meta.get("status"), "added": _ts(time.time()),
        "meta": json.dumps(meta),
    }


def _insert_frame(con: Any, table: str, frame: Any) -> None:
    if frame is None or frame.empty:
        return
    con.register("incoming", frame)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
    finally:
        con.unregister("incoming")


def add(con: Any, directory: Path, labels: Labels = Labels()) -> str:
    """Index one results directory (replacing an earlier copy of the same run); returns its run id."""
    import pandas as pd

    data = results.load(directory)  # refuses unreadable formats with the reason, upgrades the others
    record = _run_record(data, labels)
    run_id = record["run_id"]
    rows = data.rows[[c for c in COLUMNS if c in data.rows.columns]].copy()
    rows["run_id"] = run_id  # run.json names the run; a copied directory's rows follow it
    rows = rows.astype({c: "object" for c in rows.columns}).where(rows.notna(), None)
    summary = data.summary[[c for c in SUMMARY_COLUMNS if c in data.summary.columns]].copy()
    summary.insert(0, "run_id", run_id)
    summary = summary.astype("object").where(summary.notna(), None)
    import duckdb

    con.execute("BEGIN TRANSACTION")
    try:
        for table in ("rows", "summary", "runs"):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        _insert_frame(con, "runs", pd.DataFrame([record]))
        _insert_frame(con, "rows", rows)
        _insert_frame(con, "summary", summary)
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        raise UserError(f"cannot add {directory} to the history: {str(exc).splitlines()[0]}") from exc
    return run_id


def add_verdicts(con: Any, run_id: str, baseline: dict[str, Any], verdicts: Iterable[Any]) -> int:
    """Record one judging of a run by the gate (gate.Verdict records); returns how many."""
    import pandas as pd

    judged = _ts(time.time())
    frame = pd.DataFrame([{"run_id": run_id, "baseline": baseline.get("name"), "baseline_run_id": baseline.get("run_id"),
                           "judged": judged, "backend": v.backend, "direction": v.direction, "workload": v.workload,
                           "metric": v.metric, "baseline_median": v.baseline, "current": v.current, "ratio": v.ratio,
                           "tolerance": v.threshold, "detectable": v.detectable,
                           "test": None if v.low is None else f"95% CI {v.low:.4g}..{v.high:.4g}, Holm p {v.p}",
                           "verdict": v.verdict}
                          for v in verdicts])
    _insert_frame(con, "verdicts", frame)
    return len(frame)


def stored_run(con: Any, run_id: str) -> results.RunData:
    """A run as the history holds it (its directory may have moved or gone): run.json and rows."""
    ((meta_json, directory),) = con.execute("SELECT meta, directory FROM runs WHERE run_id = ?", [run_id]).fetchall()
    rows = con.execute("SELECT * FROM rows WHERE run_id = ?", [run_id]).df()
    summary = con.execute("SELECT * EXCLUDE (run_id) FROM summary WHERE run_id = ?", [run_id]).df()
    return results.RunData(Path(directory), json.loads(meta_json), rows, summary, None)


def earlier_runs(con: Any, meta: dict[str, Any], n: int) -> list[results.RunData]:
    """The last `n` ok runs before this one of the same scenario, on the same host, accelerator, exit
    source and environment: what a history baseline is made of."""
    host = meta.get("host", {})
    found = con.execute(
        "SELECT run_id FROM runs WHERE status = 'ok' AND run_id <> ? AND scenario IS NOT DISTINCT FROM ? "
        "AND hostname IS NOT DISTINCT FROM ? AND accel = ? AND exit_source = ? AND environment = ? "
        "AND finished < ? ORDER BY finished DESC LIMIT ?",
        [meta["run_id"], meta.get("scenario", {}).get("name"), host.get("hostname"), meta["accel"]["accel"],
         meta["accel"]["exit_source"], meta.get("environment", "host"), _ts(meta.get("finished") or time.time()), n],
    ).fetchall()
    return [stored_run(con, r[0]) for r in found]


def directories(paths: Sequence[Path]) -> list[tuple[Path, Labels]]:
    """The results directories under `paths`, with their labels: a run directory itself, a fleet
    directory (fleet.json: each host's run, labelled with the inventory's names), or a results root
    holding either."""
    found: list[tuple[Path, Labels]] = []
    for path in paths:
        if (path / "fleet.json").exists():
            fleet = json.loads((path / "fleet.json").read_text())
            for host in fleet.get("hosts", []):
                if host.get("results") and (path / host["results"] / "run.json").exists():
                    found.append((path / host["results"], Labels(host["name"], host.get("machine"), fleet["fleet_id"])))
        elif (path / "run.json").exists():
            found.append((path, Labels()))
        elif path.is_dir():
            children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            found += directories([c for c in children if (c / "run.json").exists() or (c / "fleet.json").exists()])
        else:
            raise UserError(f"{path} is not a results directory, a fleet directory or a results root.")
    return found


def query(con: Any, sql: str) -> Any:
    """A pandas DataFrame of the answer; SQL errors become one clear sentence."""
    import duckdb

    try:
        return con.sql(sql).df()
    except duckdb.Error as exc:
        raise UserError(f"the query failed: {str(exc).splitlines()[0]}") from exc
