"""The results directory: run.json (metadata), rows.csv (tidy rows), raw/ (evidence).

Written into a hidden temp dir beside the final one and renamed at the end, so
a reader never sees half a run; a run that fails midway still renames, with
run.json saying what failed. FORMAT_VERSION history:
  1 - first format (iobench 0.1): one row per backend x direction x repeat.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from iobench.errors import UserError

FORMAT_VERSION = 1
MTU = 1500
FRAME_AT_MTU = MTU + 14  # Ethernet header; the unit of every "per packet" figure


@dataclass(frozen=True)
class Row:
    """One measured cell. None means not available from this exit source (see `na_reason`)."""

    run_id: str
    backend: str
    direction: str
    repeat: int
    accel: str
    exit_source: str
    duration_s: float
    throughput_bps: float
    iperf3_bytes: int
    bytes: int
    frames: int
    packets: float
    exits: int
    exits_per_packet: float
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
    rchar: int
    wchar: int
    trace_log_bytes: int
    syscall_copy_bytes: int
    copies_per_packet_measured: float
    copies_per_packet_model: int
    syscall_copies_per_packet_model: int
    copy_model_basis: str
    cpu_s_vcpu: float
    cpu_s_main: float
    cpu_s_iothread: float
    cpu_s_other: float
    cpu_s_vhost: float
    na_reason: str


COLUMNS = [f.name for f in fields(Row)]


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

    def write_raw(self, name: str, content: str | bytes | dict[str, Any] | list[Any]) -> Path:
        path = self.raw / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, (dict, list)):
            path.write_text(json.dumps(content, indent=1, default=str) + "\n")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def finish(self, meta: dict[str, Any], rows: list[Row]) -> Path:
        """Write rows.csv and run.json, then rename into place."""
        import pandas as pd

        frame = pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)
        frame.to_csv(self.tmp / "rows.csv", index=False)
        (self.tmp / "run.json").write_text(json.dumps({"format_version": FORMAT_VERSION, **meta},
                                                      indent=2, default=str) + "\n")
        os.chmod(self.tmp, 0o755)
        self.tmp.rename(self.final)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def load_rows(directory: Path):  # -> pandas.DataFrame
    import pandas as pd

    return pd.read_csv(directory / "rows.csv")


def load_meta(directory: Path) -> dict[str, Any]:
    meta = json.loads((directory / "run.json").read_text())
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(f"{directory} has results format {version}, this iobench reads {FORMAT_VERSION}.")
    return meta
