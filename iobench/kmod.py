"""Kernel modules from an unpacked kernel package: find them, read their
dependencies, order them for loading.

Why read `depends=` from each module's `.modinfo` section: a kernel package
ships no `modules.dep` (depmod makes it at install time), and a hard-coded load
order breaks on the next kernel. The lab image uses the same functions.
"""

from __future__ import annotations

import ctypes
import io
import lzma
import os
from pathlib import Path

from elftools.elf.elffile import ELFFile

from iobench.errors import UserError

_SUFFIXES = (".ko", ".ko.xz")
_SYS_FINIT_MODULE = 313  # x86-64
_SYS_DELETE_MODULE = 176


def loaded(name: str) -> bool:
    """Whether the running kernel has module `name` loaded."""
    return Path(f"/sys/module/{name}").exists()


def _syscall(number: int, *args: object) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, *args) != 0:
        return ctypes.get_errno()
    return 0


def insert(path: Path) -> int:
    """Load the module file at `path` into the running kernel (0, or the errno). finit_module,
    not insmod: the lab's L1 runs without kmod."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _syscall(_SYS_FINIT_MODULE, fd, b"", 0)
    finally:
        os.close(fd)


def remove(name: str) -> int:
    """Unload module `name` if it is loaded (0, or the errno)."""
    return _syscall(_SYS_DELETE_MODULE, name.encode(), os.O_NONBLOCK) if loaded(name) else 0


def canonical(name: str) -> str:
    """Module names treat '-' and '_' alike; the kernel uses '_'."""
    return name.replace("-", "_")


def index_modules(modules_root: Path) -> dict[str, Path]:
    """Map module name -> file under lib/modules/<version>/kernel."""
    found: dict[str, Path] = {}
    for path in modules_root.rglob("*.ko*"):
        for suffix in _SUFFIXES:
            if path.name.endswith(suffix):
                found[canonical(path.name[: -len(suffix)])] = path
    return found


def module_bytes(path: Path) -> bytes:
    """The plain ELF object (busybox insmod cannot read compressed modules)."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        data = lzma.decompress(data)
    return data


def modinfo(data: bytes) -> dict[str, list[str]]:
    """Parse a module's `.modinfo` section: NUL-separated key=value strings."""
    section = ELFFile(io.BytesIO(data)).get_section_by_name(".modinfo")
    info: dict[str, list[str]] = {}
    if section is None:
        return info
    for item in section.data().split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            info.setdefault(key, []).append(value)
    return info


def depends(data: bytes) -> list[str]:
    values = modinfo(data).get("depends", [""])
    return [canonical(d) for d in values[0].split(",") if d]


def builtin_modules(modules_dir: Path) -> frozenset[str]:
    """The modules this kernel has built in (`modules.builtin`: one `kernel/.../name.ko` per line), which
    need no loading: Debian's 6.12 builds virtio, virtio_ring and virtio_pci in, its 6.1 ships them as modules."""
    path = modules_dir / "modules.builtin"
    if not path.exists():
        return frozenset()
    return frozenset(canonical(Path(line.strip()).name.split(".ko")[0]) for line in path.read_text().splitlines()
                     if line.strip())


def load_order(wanted: list[str], index: dict[str, Path], builtin: frozenset[str] = frozenset()) -> list[str]:
    """`wanted` and all their dependencies, each after everything it depends on; those the kernel has
    built in (`builtin`) are left out.

    Raises UserError naming a module the kernel package neither ships nor has built in.
    """
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        name = canonical(name)
        if name in order or name in builtin:
            return
        if name in visiting:
            raise UserError(f"kernel module dependency cycle through {name}.")
        if name not in index:
            raise UserError(f"the guest kernel package has no module {name}, and does not build it in.")
        visiting.add(name)
        for dep in depends(module_bytes(index[name])):
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name)
    return order
