"""Which iobench made a result: its version and, from a git checkout, its revision.

A history of runs is only as useful as its ability to say which code produced each
point of a trend; the version string alone does not change between commits. The lab's
inner run gets the host's answer in IOBENCH_REVISION (L1's chroot has no git)."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

REVISION_ENV = "IOBENCH_REVISION"


@functools.cache
def revision() -> str | None:
    """The git commit of the iobench source in use, with "-dirty" if its tracked files differ;
    None outside a git checkout (an installed wheel) or without git."""
    if os.environ.get(REVISION_ENV):
        return os.environ[REVISION_ENV]
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "") if head else None
