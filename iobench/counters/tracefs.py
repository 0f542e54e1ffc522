"""Writing to tracefs the way the kernel expects, for every counter that arms hist triggers
(copytrace, exitreasons).

Why one helper: a trigger file opened with O_TRUNC (Python's write_text) first removes *every* hist
trigger of its event, and Python's "a" mode seeks to the end on open, which synthetic_events refuses
(EINVAL; measured in the lab's L1). Commands are therefore written to files opened O_WRONLY|O_APPEND,
without a seek, one line per write.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path("/sys/kernel/tracing")


def append(path: Path, line: str) -> None:
    """Write one command line to a tracefs file opened O_APPEND."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def add_trigger(event: Path, trigger: str) -> None:
    """Add (or, with a leading "!", remove) one trigger of `event`, leaving its other triggers alone."""
    append(event / "trigger", trigger)


def kernel_said(root: Path) -> str:
    """The last line of tracefs' error_log, as "; kernel: ...": why the kernel refused a command."""
    try:
        lines = [ln.strip() for ln in (root / "error_log").read_text().splitlines() if ln.strip()]
    except OSError:
        return ""
    return f"; kernel: {lines[-1]}" if lines else ""
