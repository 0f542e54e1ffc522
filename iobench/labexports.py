"""What the lab's first-level VM (L1) may see of the host: only what the inner run needs, read-only.

Why not the whole root: L1 runs a stock kernel, a nested hypervisor and a benchmark guest; anything
the host shares with it can be read from there, and by whatever escapes the nested guest. Fleet hosts
and CI runners keep SSH keys, tokens and other users' files under /root, /home and /etc. The inner
run needs much less: the system's programs, libraries and data (/usr: QEMU with its firmware and
keymaps, iperf3, sockperf, ethtool, the shell), the Python it runs on (the venv and the interpreter
it was made from), the iobench tree, the image cache, and a few files of /etc that programs read
(the dynamic linker's cache, user and host names). Each is one read-only 9p share, mounted in L1 at
its own path; /etc is a folder of copies of those few files, never the host's /etc. The lab
directory is the only writable share. L1's init (data/lab-init.sh) builds its root from
`exports.txt` in the lab directory; a path the run needs and does not find fails it, naming the path.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import iobench
from iobench import guest

# The files of /etc that the inner run's programs read, copied (never shared): the dynamic linker's
# cache and configuration, user/group/host names and services, the time zone, the OS release,
# Debian's alternatives (symlinks the programs in /usr/bin go through).
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf", "hosts",
             "host.conf", "localtime", "os-release", "protocols", "services", "alternatives", "iproute2")
# Top-level names that are symlinks into /usr on a merged-/usr system (bin -> usr/bin...).
TOP_LINKS = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")
# Never shared, nor anything that contains them.
PRIVATE = (Path("/root"), Path("/home"), Path("/etc"))
MAX_SHARES = 12  # one virtio-9p PCI device each


@dataclass(frozen=True)
class Exports:
    shares: tuple[tuple[str, Path], ...]  # (9p mount tag, host path), read-only, mounted at the same path
    links: tuple[tuple[str, str], ...]  # (name at L1's root, target), as the host has them
    etc: tuple[str, ...]  # the /etc files copied into the lab directory's etc/


def needed(cwd: Path | None = None) -> list[Path]:
    """The host paths the inner run reads, outermost first, none inside another."""
    here = (cwd or Path.cwd()).resolve()  # the job runs from here (relative paths in its options)
    paths = [Path("/usr"), Path(sys.prefix), Path(os.path.realpath(sys.base_prefix)),
             Path(iobench.__file__).resolve().parent.parent, guest.cache_root(),
             *([here] if not _holds_private(here) else [])]
    for top in TOP_LINKS:  # a system whose /bin, /lib... are real directories shares them too
        p = Path("/") / top
        if p.is_dir() and not p.is_symlink():
            paths.append(p)
    out: list[Path] = []
    for p in sorted({p.resolve() for p in paths}, key=lambda p: len(p.parts)):
        if not any(p == q or q in p.parents for q in out):
            out.append(p)
    for p in out:
        if _holds_private(p):
            raise ValueError(f"the lab would share {p}, which holds {', '.join(map(str, PRIVATE))} or is one of them")
    return out


def _holds_private(p: Path) -> bool:
    return p == Path("/") or any(p == private or p in private.parents for private in PRIVATE)


def prepare(labdir: Path, cwd: Path | None = None) -> Exports:
    """Write the lab directory's etc/ (copies) and exports.txt (what L1's init mounts); returns the shares."""
    paths = needed(cwd)
    if len(paths) > MAX_SHARES:
        raise ValueError(f"the lab would need {len(paths)} shares (at most {MAX_SHARES}): {', '.join(map(str, paths))}")
    shares = tuple((f"x{i}", p) for i, p in enumerate(paths))
    links = tuple((top, os.readlink(Path("/") / top)) for top in TOP_LINKS if (Path("/") / top).is_symlink())
    etc = labdir / "etc"
    shutil.rmtree(etc, ignore_errors=True)  # made anew for every L1 boot of the job (a resumed run boots again)
    etc.mkdir()
    copied = []
    for name in ETC_FILES:
        src = Path("/etc") / name
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, etc / name, symlinks=True, dirs_exist_ok=True)
        elif src.exists() or src.is_symlink():
            shutil.copy2(src, etc / name, follow_symlinks=name != "os-release" and name != "localtime")
        else:
            continue
        copied.append(name)
    lines = [f"share {tag} {path}" for tag, path in shares] + [f"link {name} {target}" for name, target in links]
    (labdir / "exports.txt").write_text("\n".join(lines) + "\n")
    return Exports(shares, links, tuple(copied))


def virtfs_args(exports: Exports) -> tuple[str, ...]:
    out: list[str] = []
    for tag, path in exports.shares:
        out += ["-virtfs", f"local,path={path},mount_tag={tag},security_model=none,readonly=on,multidevs=remap"]
    return tuple(out)
