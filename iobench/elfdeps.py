"""Shared-library closure of a dynamically linked program, read from ELF headers.

Why not `ldd`: it runs the binary's loader on the host and answers for the
host's libraries; the initramfs must carry the libraries of the packages it was
built from, so the closure is resolved inside the unpacked package tree.
"""

from __future__ import annotations

from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from iobench.errors import UserError

LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib")


def _needed_and_interp(path: Path) -> tuple[list[str], str | None]:
    with path.open("rb") as f:
        elf = ELFFile(f)
        needed: list[str] = []
        interp = None
        for seg in elf.iter_segments():
            if seg.header.p_type == "PT_INTERP":
                interp = seg.get_interp_name()  # type: ignore[attr-defined]
        for sec in elf.iter_sections():
            if isinstance(sec, DynamicSection):
                needed += [t.needed for t in  # type: ignore[attr-defined]
                            sec.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
        return needed, interp


def find_library(root: Path, soname: str) -> Path:
    for d in LIB_DIRS:
        candidate = root / d / soname
        if candidate.exists():
            return candidate
    raise UserError(f"library {soname} is not in the unpacked packages; the guest image cannot carry iperf3.")


def closure(root: Path, binary: Path) -> dict[str, Path]:
    """Map of path-inside-image -> file under `root` for every library `binary` needs,
    plus the ELF interpreter at its absolute path."""
    out: dict[str, Path] = {}
    todo = [binary]
    seen: set[str] = set()
    while todo:
        current = todo.pop()
        needed, interp = _needed_and_interp(current)
        if interp:
            out[interp.lstrip("/")] = root / interp.lstrip("/")
        for soname in needed:
            if soname in seen:
                continue
            seen.add(soname)
            lib = find_library(root, soname)
            out[f"lib/x86_64-linux-gnu/{soname}"] = lib
            todo.append(lib)
    return out
