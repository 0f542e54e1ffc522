"""What a killed iobench left behind, and removing it (`iobench clean`, `iobench doctor`).

A run that ends, fails or is interrupted removes everything it made. A run
killed outright (SIGKILL, the OOM killer) cannot: its QEMU keeps running (it has
its own session), its namespace stays mounted with the tap and an iperf3 in it,
its staging directory and a vhost-user switch's directory stay (the switch itself,
testpmd, exits when its standard input from the run closes).

Ownership: a live run holds an exclusive flock on each thing it made - its VM
runtime directories, switch directories and results staging directory (the directory itself) and
`/run/iobench/<namespace>.lock` for its namespaces. The kernel drops a flock
when its process dies, however it dies, so "locked" means "in use by a live
iobench" and "unlocked" means abandoned; a pid alone is never trusted (pids are
reused). Only objects named with iobench's prefixes are looked at; a QEMU is
killed only when the pid in its pidfile is alive *and* its command line names
that very runtime directory; in an abandoned namespace only QEMU and iperf3
processes are killed (found by namespace identity, not by name alone).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import netns

from iobench import kmod

NETNS_PREFIX = "iobench-"
VM_DIR_PREFIX = "iobench-vm-"
SWITCH_DIR_PREFIX = "iobench-switch-"  # a vhost-user switch's directory: its socket, EAL's runtime files (switch.py)
SWITCH_PIDFILE = "testpmd.pid"  # in it, the switch's pid (switch.py writes it)
OVS_DIR_PREFIX = "iobench-ovs-"  # a private Open vSwitch's directory: its database, sockets, pidfiles, logs (ovs.py)
OVS_PIDFILES = ("ovs-vswitchd.pid", "ovsdb-server.pid")  # in it, written by the daemons themselves (--pidfile)
NODE_DIR_PREFIX = "iobench-macvtap-"  # a macvtap's device node, made and unlinked at once (topology.open_tap)
LOCK_DIR = Path("/run/iobench")
OUR_PROGRAMS = ("qemu-system-x86", "iperf3", "sockperf", "dpdk-testpmd", "ovs-vswitchd", "ovsdb-server")
# The copy trace's kernel module and its owner's lock (counters.copytrace loads it under this lock)
COPYTRACE_MODULE = "iobench_copies"
COPYTRACE_LOCK = LOCK_DIR / "copytrace.lock"


def hold(path: Path) -> int:
    """Take the exclusive lock that says `path` belongs to this live process; returns
    the fd to pass to `release`. A directory is locked through its own fd; any other
    path is a lock file created 0600."""
    if path.is_dir():
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def release(fd: int | None, remove: Path | None = None) -> None:
    """Drop a lock from `hold` (and remove its lock file, when given)."""
    if remove is not None:
        try:
            remove.unlink()
        except FileNotFoundError:
            pass
    if fd is not None:
        os.close(fd)


def in_use(path: Path) -> bool:
    """Whether a live process holds `path`'s lock (a missing lock file: nobody does)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)
    return False


PEER_SUFFIX = "-peer"  # the traffic peer's namespace (bridge), or the native stand-in's (direct)
NATIVE_SUFFIX = "-native"  # the native stand-in's namespace where the peer has one of its own (bridge)


def netns_lock(name: str) -> Path:
    """The lock file of a run's namespaces (its peer and stand-in namespaces share the run's)."""
    return LOCK_DIR / f"{name.removesuffix(PEER_SUFFIX).removesuffix(NATIVE_SUFFIX)}.lock"


@dataclass(frozen=True)
class Leftover:
    kind: str  # netns, vm-dir, switch-dir, staging-dir, node-dir, module
    name: str
    in_use: bool
    detail: str = ""

    def describe(self) -> str:
        state = "in use by a running iobench" if self.in_use else "abandoned"
        return f"{self.kind} {self.name} ({state}{'; ' + self.detail if self.detail else ''})"


def _ns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def processes_in_netns(name: str) -> list[tuple[int, str]]:
    """(pid, comm) of every process whose network namespace is `name`."""
    inode = _ns_inode(name)
    out: list[tuple[int, str]] = []
    if inode is None:
        return out
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino == inode:
                out.append((int(entry.name), (entry / "comm").read_text().strip()))
        except OSError:
            continue
    return out


@dataclass(frozen=True)
class OwnedDir:
    """A kind of directory a live run owns with its processes in it: a VM's runtime directory (QEMU),
    a vhost-user switch's (testpmd), a private Open vSwitch's (ovs-vswitchd and ovsdb-server)."""

    prefix: str
    program: str
    pidfiles: tuple[str, ...]

    def dirs(self) -> list[Path]:
        return sorted(p for p in Path(tempfile.gettempdir()).glob(f"{self.prefix}*") if p.is_dir())

    def owners(self, directory: Path) -> list[int]:
        """The live processes whose pidfiles are in `directory` and whose command lines name `directory`
        (a pid reused by another program since is not one of them)."""
        found = []
        for name in self.pidfiles:
            try:
                pid = int((directory / name).read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except (OSError, ValueError):
                continue
            if str(directory) in cmdline:
                found.append(pid)
        return found


OWNED_DIRS = {"vm-dir": OwnedDir(VM_DIR_PREFIX, "QEMU", ("qemu.pid",)),
              "switch-dir": OwnedDir(SWITCH_DIR_PREFIX, "testpmd", (SWITCH_PIDFILE,)),
              "ovs-dir": OwnedDir(OVS_DIR_PREFIX, "Open vSwitch", OVS_PIDFILES)}


def _staging_dirs(out_roots: list[Path]) -> list[Path]:
    found: list[Path] = []
    for root in out_roots:
        if root.is_dir():
            found += [p for p in root.iterdir() if p.is_dir() and p.name.startswith(".")
                      and (p.name.endswith(".partial") or p.name.startswith(".lab-"))]
    return sorted(found)


def find(out_roots: list[Path]) -> list[Leftover]:
    """Every iobench object on this machine, each marked in use or abandoned."""
    found: list[Leftover] = []
    for name in sorted(n for n in netns.listnetns() if n.startswith(NETNS_PREFIX)):
        procs = processes_in_netns(name)
        detail = ", ".join(f"{comm} {pid}" for pid, comm in procs)
        found.append(Leftover("netns", name, in_use(netns_lock(name)), detail))
    for kind, owned in OWNED_DIRS.items():
        for directory in owned.dirs():
            pids = owned.owners(directory)
            found.append(Leftover(kind, str(directory), in_use(directory),
                                  f"{owned.program} {', '.join(map(str, pids))} running" if pids
                                  else f"no {owned.program} running"))
    for node_dir in sorted(Path(tempfile.gettempdir()).glob(f"{NODE_DIR_PREFIX}*")):
        fresh = time.time() - node_dir.stat().st_mtime < 10  # a live run's, between its mknod and its unlink
        found.append(Leftover("node-dir", str(node_dir), fresh, "a macvtap device node of a run killed while opening it"))
    for staging in _staging_dirs(out_roots):
        found.append(Leftover("staging-dir", str(staging), in_use(staging), "unpublished results of a run"))
    if kmod.loaded(COPYTRACE_MODULE):
        found.append(Leftover("module", COPYTRACE_MODULE, in_use(COPYTRACE_LOCK),
                              "the copy-trace kernel module (--copy-trace)"))
    return found


def clean(out_roots: list[Path], dry_run: bool = False) -> list[str]:
    """Remove the abandoned objects (never one in use); returns what was (or would be) done."""
    done: list[str] = []
    for item in find(out_roots):
        if item.in_use:
            continue
        if item.kind in OWNED_DIRS:  # a VM's, a switch's or an OVS's directory: its processes killed, then it
            directory = Path(item.name)
            for pid in OWNED_DIRS[item.kind].owners(directory):
                done.append(f"killed {OWNED_DIRS[item.kind].program} {pid} of {directory}")
                if not dry_run:
                    _kill(pid)
            done.append(f"removed {directory}")
            if not dry_run:
                shutil.rmtree(directory, ignore_errors=True)
        elif item.kind == "netns":
            for pid, comm in processes_in_netns(item.name):
                if comm.startswith(OUR_PROGRAMS):
                    done.append(f"killed {comm} {pid} in {item.name}")
                    if not dry_run:
                        _kill(pid)
                else:
                    done.append(f"left {comm} {pid} in {item.name} alone (not started by iobench)")
            done.append(f"removed namespace {item.name}")
            if not dry_run:
                netns.remove(item.name)
                release(None, netns_lock(item.name))
        elif item.kind == "module":
            done.append(f"unloaded kernel module {item.name}")
            if not dry_run:
                kmod.remove(COPYTRACE_MODULE)
        elif item.kind in ("staging-dir", "node-dir"):
            done.append(f"removed {item.name}")
            if not dry_run:
                shutil.rmtree(item.name, ignore_errors=True)
    return done


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(100):  # the pid is not our child: wait for it to vanish, not to be reaped
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
