"""`iobench db add|query|changes`: the history database (iobench.history) and what it shows over time."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iobench.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    db = sub.add_parser("db", help="the history database: every run, queryable with SQL (DuckDB)",
                        description="Index results directories into a DuckDB file (tables runs, rows, summary, "
                                    "verdicts) and query it. Finished runs and gate verdicts are added automatically.")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_add = db_sub.add_parser("add", help="import results directories (runs, fleet dirs or results roots)",
                               description="Add results directories of any readable format (upgraded on import).")
    db_add.add_argument("paths", nargs="+", type=Path)
    db_q = db_sub.add_parser("query", help="answer a SQL query from the history",
                             description="Run SQL against the history (tables runs, rows, summary, verdicts).")
    db_q.add_argument("sql")
    db_q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    db_c = db_sub.add_parser(
        "changes", help="change points in each cell's per-run medians (ruptures PELT, exact U test)",
        description="Per scenario, host, environment and accelerator, and per cell and metric: the runs' medians "
                    "in the order they finished, segmented by ruptures' PELT on their logs (penalty 2σ²ln n, σ the "
                    "series' own robust noise); each change point whose segments differ by an exact two-sided "
                    "Mann-Whitney U test at --alpha is printed with its size. Series of fewer than 6 runs are "
                    "not segmented.")
    db_c.add_argument("--metric", action="append", help="only this metric (repeatable; default every one)")
    db_c.add_argument("--scenario", help="only this scenario (by name)")
    db_c.add_argument("--alpha", type=float, default=0.05, help="significance of a change (default 0.05)")
    db_c.add_argument("--format", choices=("table", "csv", "json"), default="table")
    for p_ in (db_add, db_q, db_c):
        p_.add_argument("--db", type=Path, default=Path("results") / "iobench.duckdb",
                        help="history database (default results/iobench.duckdb)")


def run(args: argparse.Namespace) -> int:
    from iobench import history

    if args.db_command == "add":
        found = history.directories(args.paths)
        if not found:
            raise UserError(f"no results directories under {', '.join(map(str, args.paths))}.")
        with history.connect(args.db) as con:
            for directory, labels in found:
                run_id = history.add(con, directory, labels)
                print(f"added {run_id} ({directory}{', host ' + labels.host if labels.host else ''})")
        print(f"history: {args.db}")
        return 0
    if args.db_command == "changes":
        return _changes(args)
    with history.connect(args.db, read_only=True) as con:
        frame = history.query(con, args.sql)
    _print(frame, args.format)
    return 0


def _print(frame: object, fmt: str) -> None:
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    if fmt == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif fmt == "json":
        sys.stdout.write(frame.to_json(orient="records", date_format="iso") + "\n")
    else:
        print(frame.to_string(index=False) if not frame.empty else "(no rows)")


def _changes(args: argparse.Namespace) -> int:
    import pandas as pd

    from iobench import changes, history

    if not 0 < args.alpha < 1:
        raise UserError(f"--alpha {args.alpha}: a significance between 0 and 1, such as 0.05.")
    with history.connect(args.db, read_only=True) as con:
        medians = history.query(con, changes.HISTORY_SQL)
    if args.scenario:
        medians = medians[medians["scenario"] == args.scenario]
    found = changes.find(medians, alpha=args.alpha, metrics=args.metric)
    frame = pd.DataFrame([{"scenario": c.scenario, "host": c.host, "env": c.environment, "accel": c.accel,
                           "cell": f"{c.backend}/{c.direction}/{c.workload}", "metric": c.metric,
                           "from run": c.run_id, "run #": f"{c.index + 1} of {c.runs}",
                           "before": round(c.before, 6), "after": round(c.after, 6), "size": f"{c.size:+.1%}",
                           "verdict": c.verdict, "U p": round(c.p, 5), "runs before/after": f"{c.n_before}/{c.n_after}"}
                          for c in found])
    series = medians.groupby(list(changes.SERIES_KEYS), dropna=False).ngroups if not medians.empty else 0
    _print(frame, args.format)
    if args.format == "table":
        print(f"{len(found)} change point(s) in {series} series (scenario x host x environment x accel x cell x metric)"
              f"; alpha {args.alpha}; series of fewer than {changes.MIN_RUNS} runs are not segmented")
    return 0
