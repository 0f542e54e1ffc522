"""Which results directories a notebook (or a script) means: the ones it names, else those in
$IOBENCH_RESULTS, else the newest under results/. Run ids start with the UTC time, so names sort by age."""

from __future__ import annotations

import os
from pathlib import Path

from iobench.errors import UserError


def newest(root: Path | str = "results", count: int = 1) -> list[Path]:
    """The `count` newest results directories under `root`, oldest first (run ids start with the UTC time)."""
    root = Path(root)
    dirs = sorted(d.parent for d in root.glob("*/run.json")) if root.is_dir() else []
    if len(dirs) < count:
        raise UserError(f"{count} results director{'y' if count == 1 else 'ies'} needed under {root}, found {len(dirs)}: "
                        "run `iobench run` first or name the directories.")
    return dirs[-count:]


def pick(*given: str | Path | None, root: Path | str | None = None) -> list[Path]:
    """The results directories a notebook works on: the ones given (its parameters cell), else
    those in $IOBENCH_RESULTS (separated by os.pathsep), else the newest under `root`
    (default: results/ of the current directory or its parent, where notebooks/ sits)."""
    count = len(given) or 1
    chosen = [Path(g) for g in given if g]
    if not chosen and os.environ.get("IOBENCH_RESULTS"):
        chosen = [Path(p) for p in os.environ["IOBENCH_RESULTS"].split(os.pathsep) if p]
    if len(chosen) >= count:
        return chosen[:count]
    if root is None:
        root = next((r for r in (Path("results"), Path("..") / "results") if r.is_dir()), Path("results"))
    return newest(root, count)
