"""Reading a results directory back: run.json upgraded to this format (`load_meta`), the tidy
CSVs as pandas frames (`load`).

What the files hold is `schema`'s (with the format's history); writing them is `store`'s; which
directories a notebook means is `directories`'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iobench.errors import UserError
from iobench.schema import (
    COLUMNS,
    EXIT_REASON_COLUMNS,
    EXIT_SITE_COLUMNS,
    FORMAT_VERSION,
    READABLE_VERSIONS,
    SUMMARY_COLUMNS,
    TIMELINE_COLUMNS,
)
from iobench.topologies import DEFAULT as DEFAULT_TOPOLOGY


def load_meta(directory: Path) -> dict[str, Any]:
    """run.json of a results directory, upgraded to this format; refuses what it cannot read."""
    if not (directory / "run.json").exists() or not (directory / "rows.csv").exists():
        raise UserError(f"{directory} is not an iobench results directory (no run.json and rows.csv).")
    meta: dict[str, Any] = json.loads((directory / "run.json").read_text())
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise UserError(f"{directory} has results format {version}; this iobench reads formats "
                        f"{', '.join(map(str, READABLE_VERSIONS))}: re-run the scenario to get a readable directory.")
    if version != FORMAT_VERSION:
        meta["upgraded_from"] = version
        meta["format_version"] = FORMAT_VERSION
    return meta


@dataclass
class RunData:
    """One results directory in memory, upgraded to the current format: what notebooks,
    plots, reports and the gate read (pandas frames of the tidy CSVs)."""

    directory: Path
    meta: dict[str, Any]
    rows: Any  # pandas.DataFrame: rows.csv
    summary: Any  # pandas.DataFrame: summary.csv (median, min, max, CV per metric)
    timeline: Any  # pandas.DataFrame: timeline.csv (empty for a format-2 directory)
    exit_reasons: Any = None  # pandas.DataFrame: exit_reasons.csv (empty where none were counted)
    exit_sites: Any = None  # pandas.DataFrame: exit_sites.csv (empty where none were counted)

    def records(self) -> list[dict[str, Any]]:
        """rows.csv as dicts (NaN where a column is empty)."""
        return [{str(k): v for k, v in r.items()} for r in self.rows.to_dict("records")]


def load(directory: Path | str) -> RunData:
    """Read a results directory (any readable format) for analysis."""
    import pandas as pd

    directory = Path(directory)
    meta = load_meta(directory)
    rows = pd.read_csv(directory / "rows.csv")
    if "l1_attempt" not in rows.columns:  # formats 2 and 3
        rows["l1_attempt"] = pd.Series(pd.NA, index=rows.index, dtype="Int64")
        rows = rows.rename(columns={"cycles_per_byte": "est_cycles_per_byte"})
    for column in COLUMNS:  # columns a later format added (format 5: the paced ones) are empty
        if column not in rows.columns:
            rows[column] = pd.NA
    summary_path, timeline_path = directory / "summary.csv", directory / "timeline.csv"
    summary = pd.read_csv(summary_path) if summary_path.exists() else pd.DataFrame(columns=SUMMARY_COLUMNS)
    slices = pd.read_csv(timeline_path) if timeline_path.exists() else pd.DataFrame(columns=TIMELINE_COLUMNS)
    reasons_path = directory / "exit_reasons.csv"
    reasons = pd.read_csv(reasons_path) if reasons_path.exists() else pd.DataFrame(columns=EXIT_REASON_COLUMNS)
    sites_path = directory / "exit_sites.csv"
    sites = pd.read_csv(sites_path) if sites_path.exists() else pd.DataFrame(columns=EXIT_SITE_COLUMNS)
    for frame in (rows, summary, slices, reasons, sites):  # before format 6 every run was `direct`
        old = frame["topology"].astype(object) if "topology" in frame.columns else None
        frame["topology"] = old.where(old.notna(), DEFAULT_TOPOLOGY) if old is not None else DEFAULT_TOPOLOGY
    return RunData(directory, meta, rows, summary, slices, reasons, sites)


DB_ENV = "IOBENCH_DB"


def history_db(given: Path | str | None = None) -> Path:
    """The history database a notebook means: the one given, else $IOBENCH_DB, else iobench.duckdb
    under results/ of the current directory or its parent (where notebooks/ sits)."""
    import os

    if given:
        return Path(given)
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV])
    for root in (Path("results"), Path("..") / "results"):
        if (root / "iobench.duckdb").exists():
            return root / "iobench.duckdb"
    raise UserError("no history database: run `iobench run` or `iobench db add DIR...` first, or set $IOBENCH_DB.")


def query(sql: str, db: Path | str | None = None, params: list[Any] | None = None) -> Any:
    """A pandas DataFrame answering `sql` from the history (tables runs, rows, summary, verdicts;
    iobench.history describes them), opened read-only so a running iobench can still add to it."""
    import duckdb

    path = history_db(db)
    if not path.exists():
        raise UserError(f"no history database at {path}.")
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql, params or []).df()
