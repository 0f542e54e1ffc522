"""The results directory: run.json (metadata), rows.csv (tidy rows), raw/ (evidence).

Written into a hidden temp dir beside the final one and renamed at the end, so
a reader never sees half a run; a run that fails midway still renames, with
run.json saying what failed. FORMAT_VERSION history:
  1 - first format (iobench 0.1): one row per backend x direction x repeat.
  2 - rows gain workload identity, idle windows, per-packet and CPU columns; summary.csv.
  3 - timeline.csv: counters per time slice of every window (idle and traffic).
      A format-2 directory is read as format 3 with an empty timeline.
  4 - rows gain `l1_attempt` (the lab: which L1 boot measured the row; empty elsewhere); a
      lab run cut short is published with its finished cells (status interrupted/failed).
      Formats 2 and 3 are read with an empty `l1_attempt`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from iobench import stale
from iobench.errors import UserError

FORMAT_VERSION = 4
READABLE_VERSIONS = (2, 3, 4)
MTU = 1500
FRAME_AT_MTU = MTU + 14  # Ethernet header; the unit of every "per packet" figure


@dataclass(frozen=True)
class Row:
    """One measured cell: identity plus counter deltas that were read. None means
    "not available from this source", with the reason in `na_reason`. Figures
    derived from these (per packet, per byte) are added by `derive`."""

    run_id: str
    backend: str
    direction: str
    repeat: int
    workload: str
    protocol: str
    streams: int
    message_bytes: int
    offloads: bool
    vcpus: int
    accel: str
    exit_source: str
    duration_s: float
    throughput_bps: float
    iperf3_bytes: int
    retransmits: int | None
    bytes: int
    frames: int
    exits: int
    io_exits: int | None
    mmio_exits: int | None
    halt_exits: int | None
    irq_exits: int | None
    irq_window_exits: int | None
    request_irq_exits: int | None
    signal_exits: int | None
    insn_emulation: int | None
    hypercalls: int | None
    irq_injections: int | None
    traps_nic: int | None
    traps_apic: int | None
    traps_other: int | None
    virtio_kicks_handled: int | None
    idle_s: float | None
    idle_exits: int | None
    idle_irq_injections: int | None
    copy_process: str
    rchar: int | None
    wchar: int | None
    trace_log_bytes: int | None
    syscall_copy_bytes: int | None
    copies_per_packet_model: int | None
    syscall_copies_per_packet_model: int | None
    copy_model_basis: str
    cpu_s_vcpu: float | None
    cpu_s_main: float | None
    cpu_s_iothread: float | None
    cpu_s_other: float | None
    cpu_s_vhost: float | None
    cpu_s_iperf3_client: float
    cpu_s_iperf3_server: float | None
    cpu_hz: float | None
    kcopy_bytes_qemu: int | None
    kcopy_bytes_vhost: int | None
    kcopy_bytes_iperf3: int | None
    kcopy_bytes_other: int | None
    na_reason: str
    l1_attempt: int | None = None  # the lab: which boot of the first-level VM measured this row


EXIT_KINDS = ("io_exits", "mmio_exits", "halt_exits", "irq_exits", "irq_window_exits", "request_irq_exits",
              "signal_exits", "insn_emulation", "hypercalls", "irq_injections",
              "traps_nic", "traps_apic", "traps_other", "virtio_kicks_handled")
CPU_KINDS = ("vcpu", "main", "iothread", "other", "vhost", "iperf3_client", "iperf3_server")


def _per(value: float | None, packets: float, scale: float = 1.0, digits: int = 4) -> float | None:
    if value is None or not packets:
        return None
    return round(value * scale / packets, digits)


def derive(row: Row) -> dict[str, Any]:
    """The tidy row of rows.csv: measured columns plus the derived ones of DESIGN.md §4.

    packets = bytes / 1514 (MTU-sized packet equivalents, so GSO superframes are
    credited); every *_per_packet divides by it. net_exits_per_packet subtracts
    the idle rate of the same VM over the same duration. cycles_per_byte counts
    the host CPU of the virtual I/O path (QEMU threads + vhost workers) at the
    nominal clock from /proc/cpuinfo.
    """
    out = asdict(row)
    packets = row.bytes / FRAME_AT_MTU
    out["packets"] = round(packets, 1)
    out["bytes_per_frame"] = round(row.bytes / row.frames, 1) if row.frames else None
    out["exits_per_packet"] = _per(row.exits, packets)
    idle_rate = row.idle_exits / row.idle_s if row.idle_exits is not None and row.idle_s else None
    out["exits_idle_rate"] = round(idle_rate, 2) if idle_rate is not None else None
    irq_idle = row.idle_irq_injections / row.idle_s if row.idle_irq_injections is not None and row.idle_s else None
    out["irq_injections_idle_rate"] = round(irq_idle, 2) if irq_idle is not None else None
    out["net_exits_per_packet"] = (_per(row.exits - idle_rate * row.duration_s, packets)
                                   if idle_rate is not None else None)
    for kind in EXIT_KINDS:
        out[f"{kind}_per_packet"] = _per(getattr(row, kind), packets)
    out["copies_per_packet_measured"] = (round(row.syscall_copy_bytes / row.bytes, 4)
                                         if row.syscall_copy_bytes is not None and row.bytes else None)
    for who in ("qemu", "vhost"):
        value = getattr(row, f"kcopy_bytes_{who}")
        out[f"kernel_copies_per_packet_{who}"] = round(value / row.bytes, 4) if value is not None and row.bytes else None
    cpu_values = {k: getattr(row, f"cpu_s_{k}") for k in CPU_KINDS}
    for kind, value in cpu_values.items():
        out[f"cpu_us_per_packet_{kind}"] = _per(value, packets, 1e6, 3)
    path = [v for k, v in cpu_values.items() if v is not None and not k.startswith("iperf3")]
    path_cpu = sum(path) if path else None  # None for native: no VM path to charge
    out["cpu_us_per_packet"] = _per(path_cpu, packets, 1e6, 3)
    out["cycles_per_byte"] = (round(path_cpu * row.cpu_hz / row.bytes, 3)
                              if path_cpu is not None and row.cpu_hz and row.bytes else None)
    return out


SUMMARY_COLUMNS = ["backend", "direction", "workload", "metric", "n", "median", "min", "max", "cv", "flagged"]
DERIVED_COLUMNS = [
    "packets", "bytes_per_frame", "exits_per_packet", "exits_idle_rate", "irq_injections_idle_rate",
    "net_exits_per_packet", *(f"{k}_per_packet" for k in EXIT_KINDS), "copies_per_packet_measured",
    "kernel_copies_per_packet_qemu", "kernel_copies_per_packet_vhost",
    *(f"cpu_us_per_packet_{k}" for k in CPU_KINDS), "cpu_us_per_packet", "cycles_per_byte",
]
COLUMNS = [f.name for f in fields(Row)] + DERIVED_COLUMNS
INT_COLUMNS = [f.name for f in fields(Row) if str(f.type) in ("int", "int | None")]


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
               timeline: Sequence[dict[str, Any]] = (), artifacts: Callable[[Path], None] | None = None) -> Path:
        """Write rows.csv, summary.csv, timeline.csv and run.json, derive `artifacts` (plots,
        report) from them in the staging dir, then rename into place. When the disk refused
        any write of this run (now or before), the staging dir is removed instead: no
        results dir with holes."""
        if self.lost is None:
            try:
                return self._finish(meta, rows, stats, timeline, artifacts)
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
                timeline: Sequence[dict[str, Any]], artifacts: Callable[[Path], None] | None) -> Path:
        import pandas as pd

        from iobench import timeline as tl

        frame = pd.DataFrame([derive(r) for r in rows], columns=COLUMNS)
        # Counters are integers: keep them so in the CSV even where a column has gaps (pandas would write 1.0).
        frame = frame.astype({c: "Int64" for c in INT_COLUMNS})
        frame.to_csv(self.tmp / "rows.csv", index=False)
        pd.DataFrame([asdict(s) for s in stats], columns=SUMMARY_COLUMNS).to_csv(self.tmp / "summary.csv", index=False)
        slices = pd.DataFrame(list(timeline), columns=tl.COLUMNS)
        slices = slices.astype({c: "Int64" for c in ("repeat", "attempt", "slice", "bytes", "exits", *tl.EXIT_KINDS,
                                                     *tl.TRAP_KINDS)})
        slices.to_csv(self.tmp / "timeline.csv", index=False)
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

    def records(self) -> list[dict[str, Any]]:
        """rows.csv as dicts (NaN where a column is empty)."""
        return [{str(k): v for k, v in r.items()} for r in self.rows.to_dict("records")]


def load(directory: Path | str) -> RunData:
    """Read a results directory (any readable format) for analysis."""
    import pandas as pd

    from iobench import timeline as tl

    directory = Path(directory)
    meta = load_meta(directory)
    rows = pd.read_csv(directory / "rows.csv")
    if "l1_attempt" not in rows.columns:  # formats 2 and 3
        rows["l1_attempt"] = pd.Series(pd.NA, index=rows.index, dtype="Int64")
    summary_path, timeline_path = directory / "summary.csv", directory / "timeline.csv"
    summary = pd.read_csv(summary_path) if summary_path.exists() else pd.DataFrame(columns=SUMMARY_COLUMNS)
    slices = pd.read_csv(timeline_path) if timeline_path.exists() else pd.DataFrame(columns=tl.COLUMNS)
    return RunData(directory, meta, rows, summary, slices)


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
