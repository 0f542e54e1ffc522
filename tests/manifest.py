"""What a results directory holds, as a comparable record: the columns of each CSV and the set of files,
with what varies from run to run (the run id, attempt numbers) normalized away.

Why: the instruments refactor must not change what a run produces. The manifests under
tests/data/manifests/ were captured from runs of the code before it (same scenario, same options);
a run of today's code must give the same. Files that depend on what went wrong in that very run
(a stalled L1's diagnosis, the console of a replacement L1) are left out: their presence is the
fault tests' business.

Run as a script to capture one: `python -m tests.manifest RESULTS_DIR > tests/data/manifests/NAME.json`.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any

CSVS = ("rows.csv", "summary.csv", "timeline.csv", "exit_reasons.csv", "exit_sites.csv")
_ATTEMPT = re.compile(r"-(l1)?attempt\d+")
_ROUND = re.compile(r"/r\d+(?=[-/.])")
_SKIP = re.compile(r"^raw/lab/(diag-attempt\d+/|l1-attempt\d+)")


def normalize(rel: str) -> str:
    """A raw file's path without what varies between runs of one scenario: attempt numbers and the round
    (`raw/e1000/r2-attempt2/serial.log` -> `raw/e1000/r<n>/serial.log`)."""
    return _ROUND.sub("/r<n>", _ATTEMPT.sub("", rel))


def manifest(directory: Path) -> dict[str, Any]:
    columns = {}
    for name in CSVS:
        path = directory / name
        if path.exists():
            with path.open() as f:
                columns[name] = next(csv.reader(f), [])
    files = sorted({normalize(str(p.relative_to(directory))) for p in directory.rglob("*")
                    if p.is_file() and not _SKIP.match(str(p.relative_to(directory)))})
    meta = json.loads((directory / "run.json").read_text())
    return {"columns": columns, "files": files, "run_json_keys": sorted(meta)}


if __name__ == "__main__":
    json.dump(manifest(Path(sys.argv[1])), sys.stdout, indent=1)
    sys.stdout.write("\n")
