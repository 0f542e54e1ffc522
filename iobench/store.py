"""The results directory's writer: one run's files in a private staging dir, published atomically.

Written into a hidden temp dir beside the final one and renamed at the end, so a reader
never sees half a run; a run that fails midway still renames, with run.json saying what
failed. A disk that refuses a write (full, over quota, read-only) loses the whole run,
never half of it. The layout of what is written is `schema`'s; reading it back is `results`'.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from iobench import stale
from iobench.errors import UserError
from iobench.schema import (
    COLUMNS,
    EXIT_REASON_COLUMNS,
    EXIT_REASON_INT_COLUMNS,
    EXIT_SITE_COLUMNS,
    EXIT_SITE_INT_COLUMNS,
    FORMAT_VERSION,
    INT_COLUMNS,
    SUMMARY_COLUMNS,
    TIMELINE_COLUMNS,
    TIMELINE_INT_COLUMNS,
    Row,
    derive,
)


def disk_refused(exc: BaseException) -> bool:
    """A write failed because the disk is full, over quota or read-only (not a bug of ours)."""
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def new_run_id(now: float | None = None) -> str:
    import time

    t = time.gmtime(now)
    return time.strftime("%Y%m%d-%H%M%S", t) + "-" + os.urandom(3).hex()


class ResultsWriter:
    """Collects one run's files in a private temp dir and publishes them atomically."""

    def __init__(self, out_root: Path, run_id: str) -> None:
        try:
            out_root.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{run_id}.", suffix=".partial", dir=out_root))
        except OSError as exc:
            raise UserError(f"cannot write results under {out_root} ({exc.strerror}): pass a writable --out.") from exc
        self.final = out_root / run_id
        self.raw = self.tmp / "raw"
        self.raw.mkdir()
        self._lock: int | None = stale.hold(self.tmp)  # a live run owns this staging dir (iobench clean)

    @classmethod
    def adopt(cls, staging: Path) -> ResultsWriter:
        """Take over the staging dir of a run cut short (`.<run-id>.<random>.partial`): a
        resumed run goes on filling it, or the lab's host publishes its checkpoint."""
        writer = cls.__new__(cls)
        writer.tmp = staging
        writer.final = staging.parent / staging.name.removeprefix(".").split(".")[0]
        writer.raw = staging / "raw"
        writer.raw.mkdir(exist_ok=True)
        writer._lock = stale.hold(staging)
        return writer

    lost: OSError | None = None  # set when the disk refused a write: nothing of the run is kept

    def write_raw(self, name: str, content: str | bytes | dict[str, Any] | list[Any]) -> Path:
        try:
            return self._write_raw(name, content)
        except OSError as exc:
            if disk_refused(exc):
                self.lost = exc
                raise UserError(self.lost_text(exc)) from exc
            raise

    def lost_text(self, exc: OSError) -> str:
        return (f"could not write results under {self.final.parent} ({exc.strerror}); the run stopped and nothing "
                "was kept there: free space or pass another --out.")

    def _write_raw(self, name: str, content: str | bytes | dict[str, Any] | list[Any]) -> Path:
        path = self.raw / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, (dict, list)):
            path.write_text(json.dumps(content, indent=1, default=str) + "\n")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def finish(self, meta: dict[str, Any], rows: list[Row], stats: Sequence[Any] = (),
               timeline: Sequence[dict[str, Any]] = (), artifacts: Callable[[Path], None] | None = None,
               exit_reasons: Sequence[dict[str, Any]] = (), exit_sites: Sequence[dict[str, Any]] = ()) -> Path:
        """Write rows.csv, summary.csv, timeline.csv and run.json, derive `artifacts` (plots,
        report) from them in the staging dir, then rename into place. When the disk refused
        any write of this run (now or before), the staging dir is removed instead: no
        results dir with holes."""
        if self.lost is None:
            try:
                return self._finish(meta, rows, stats, timeline, artifacts, exit_reasons, exit_sites)
            except OSError as exc:
                if not disk_refused(exc):
                    raise
                self.lost = exc
        self.discard()
        assert self.lost is not None
        raise UserError(self.lost_text(self.lost)) from self.lost

    def discard(self) -> None:
        """Remove the staging dir and everything in it."""
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)
        stale.release(self._lock)
        self._lock = None

    def _finish(self, meta: dict[str, Any], rows: list[Row], stats: Sequence[Any],
                timeline: Sequence[dict[str, Any]], artifacts: Callable[[Path], None] | None,
                exit_reasons: Sequence[dict[str, Any]] = (), exit_sites: Sequence[dict[str, Any]] = ()) -> Path:
        import pandas as pd

        frame = pd.DataFrame([derive(r) for r in rows], columns=COLUMNS)
        # Counters are integers: keep them so in the CSV even where a column has gaps (pandas would write 1.0).
        frame = frame.astype({c: "Int64" for c in INT_COLUMNS})
        frame.to_csv(self.tmp / "rows.csv", index=False)
        pd.DataFrame([asdict(s) for s in stats], columns=SUMMARY_COLUMNS).to_csv(self.tmp / "summary.csv", index=False)
        slices = pd.DataFrame(list(timeline), columns=TIMELINE_COLUMNS)
        slices = slices.astype({c: "Int64" for c in TIMELINE_INT_COLUMNS})
        slices.to_csv(self.tmp / "timeline.csv", index=False)
        reasons = pd.DataFrame(list(exit_reasons), columns=EXIT_REASON_COLUMNS)
        reasons.astype({c: "Int64" for c in EXIT_REASON_INT_COLUMNS}).to_csv(self.tmp / "exit_reasons.csv", index=False)
        sites = pd.DataFrame(list(exit_sites), columns=EXIT_SITE_COLUMNS)
        sites.astype({c: "Int64" for c in EXIT_SITE_INT_COLUMNS}).to_csv(self.tmp / "exit_sites.csv", index=False)
        self._write_meta(meta)
        if artifacts is not None:
            artifacts(self.tmp)
        return self.publish(meta)

    @property
    def staging(self) -> Path:
        """The private directory being filled (for files other than rows and run.json)."""
        return self.tmp

    def _write_meta(self, meta: dict[str, Any]) -> None:
        (self.tmp / "run.json").write_text(json.dumps({"format_version": FORMAT_VERSION, **meta},
                                                      indent=2, default=str) + "\n")

    def publish(self, meta: dict[str, Any]) -> Path:
        """Write run.json and rename the directory into place."""
        self._write_meta(meta)
        os.chmod(self.tmp, 0o755)
        self.tmp.rename(self.final)
        stale.release(self._lock)
        self._lock = None
        return self.final
