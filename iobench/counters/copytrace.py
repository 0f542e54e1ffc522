"""Measured kernel copies per thread (`--copy-trace`): every call of the kernel's iov_iter
copy routines, summed per thread by a tracefs hist trigger.

Why: rchar/wchar see only the copies QEMU asks for through syscalls; vhost-net's
copies happen in a kernel worker and never show there. Counting the kernel's
copy routines by thread shows who copies how many bytes on every path.

Why a small kernel module and not a tracefs kprobe event, perf or bpftrace: all
three go through trace_kprobe, which refuses functions without an ftrace site,
and Debian's 6.1 kernel builds lib/iov_iter.c without them (measured in the lab's
L1: "trace_kprobe: Could not probe notrace function _copy_to_iter"). SystemTap,
which would build a module of its own, does not compile against 6.1.1xx with
Debian 12's systemtap 4.8 (stp_task_work.c: task_work_cancel's changed
signature). register_kprobe() has no ftrace requirement, so `iobench_copies.ko`
(source in iobench/data/copytrace, ~60 lines) arms plain kprobes on the routines
and turns each hit into the tracepoint `iobench:copy` (routine, bytes); the
kernel's own hist trigger then keeps the per-thread sums, as for any event.

The module is built for the target kernel from Debian's linux-headers packages
(downloaded and unpacked into the cache like the guest's packages, no root, or
the installed /lib/modules/<release>/build), once per kernel and source version.
For the lab, the host builds it before L1 boots (L1 has no network and sees the
cache read-only) and hands the inner run its path in IOBENCH_COPYTRACE_MODULE,
or the reason it could not in IOBENCH_COPYTRACE_NA.

Ownership: one copy trace per kernel at a time (the event and its hist trigger
are global): a live run holds /run/iobench/copytrace.lock; a module left loaded
by a killed run is unloaded by the next one (or by `iobench clean`).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from iobench import debpkg, kmod, stale
from iobench.counters import tracefs
from iobench.errors import UserError

TRACEFS = tracefs.ROOT
MODULE = stale.COPYTRACE_MODULE
SOURCE = Path(__file__).resolve().parent.parent / "data" / "copytrace"
SOURCE_FILES = ("iobench_copies.c", "iobench_copies_trace.h", "Kbuild")
# The routines the module probes, in its order (the event's `routine` field indexes this).
ROUTINES = ("_copy_to_iter", "_copy_from_iter", "_copy_from_iter_nocache",
            "csum_and_copy_to_iter", "csum_and_copy_from_iter")
LOCK = stale.COPYTRACE_LOCK
MODULE_ENV = "IOBENCH_COPYTRACE_MODULE"
NA_ENV = "IOBENCH_COPYTRACE_NA"
TRIGGER = "hist:keys=common_pid.execname:vals=hitcount,bytes"
_HIST_LINE = re.compile(r"\{\s*common_pid:\s*(?P<comm>.*?)\s*\[\s*(?P<pid>\d+)\]\s*\}\s*hitcount:\s*(?P<hits>\d+)"
                        r"\s+bytes:\s*(?P<bytes>\d+)")
Log = Callable[[str], None]


class CopyTraceUnavailable(Exception):
    """This kernel cannot count copies per thread; the message says why."""


@dataclass
class ThreadCopies:
    comm: str
    calls: int = 0
    bytes: int = 0


@dataclass
class CopyCounts:
    """Bytes and calls per thread id over one window, all probed routines together."""

    by_tid: dict[int, ThreadCopies] = field(default_factory=dict)


def parse_hist(text: str) -> dict[int, ThreadCopies]:
    """Parse a hist trigger's output keyed by common_pid.execname with vals=hitcount,bytes."""
    out: dict[int, ThreadCopies] = {}
    for m in _HIST_LINE.finditer(text):
        out[int(m["pid"])] = ThreadCopies(m["comm"], int(m["hits"]), int(m["bytes"]))
    return out


class KernelLog:
    """The kernel log lines written after this object was made (/dev/kmsg, from its end):
    the kernel says there why it refused a module or a probe. None of the boot's lines."""

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            self.fd = None

    def new_lines(self, limit: int = 256) -> list[str]:
        lines: list[str] = []
        if self.fd is None:
            return lines
        for _ in range(limit):
            try:
                record = os.read(self.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                break
            except OSError:  # EPIPE: records overwritten while reading; skip on
                continue
            lines.append(record.split(";", 1)[-1].strip())
        return lines

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def source_digest() -> str:
    h = hashlib.sha256()
    for name in SOURCE_FILES:
        h.update(name.encode() + b"\0" + (SOURCE / name).read_bytes())
    return h.hexdigest()[:12]


def module_path(release: str) -> Path:
    from iobench import guest

    return guest.cache_root() / "copytrace" / f"{release}-{source_digest()}" / f"{MODULE}.ko"


def build(release: str, log: Log) -> Path:
    """The module for kernel `release`, built once and cached. Raises CopyTraceUnavailable
    with the reason when it cannot be built here (no headers package, no compiler)."""
    out = module_path(release)
    if out.exists():
        return out
    if shutil.which("make") is None:  # before fetching the headers: without make they are of no use
        raise CopyTraceUnavailable("building the copy-trace module needs make and gcc: apt-get install make gcc")
    tree = Path(f"/lib/modules/{release}/build")
    if not (tree / "Makefile").exists():
        tree = _headers(release, log)
    log(f"copy trace: building {MODULE}.ko for kernel {release}")
    with tempfile.TemporaryDirectory(prefix="iobench-copytrace-") as tmp:
        for name in SOURCE_FILES:
            shutil.copyfile(SOURCE / name, Path(tmp) / name)
        proc = subprocess.run(["make", "-C", str(tree), f"M={tmp}", "modules"],
                              capture_output=True, text=True, check=False)
        built = Path(tmp) / f"{MODULE}.ko"
        if proc.returncode != 0 or not built.exists():
            errors = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if "rror" in ln or "not found" in ln]
            raise CopyTraceUnavailable(f"building the copy-trace module for kernel {release} failed: "
                                       + (errors[0] if errors else f"make exited with {proc.returncode}"))
        out.parent.mkdir(parents=True, exist_ok=True)
        staged = out.with_suffix(".ko.partial")
        shutil.copyfile(built, staged)
        os.rename(staged, out)
    return out


def _headers(release: str, log: Log) -> Path:
    """Debian's kbuild tree for `release`: linux-headers-<release> with the -common headers
    and linux-kbuild it depends on, unpacked side by side into the cache (as dpkg would
    under /), with the one absolute include of its Makefile pointed at that copy."""
    from iobench import guest

    root = guest.cache_root() / "copytrace" / f"headers-{release}"
    tree = root / "usr" / "src" / f"linux-headers-{release}"
    if (root / ".complete").exists():
        return tree
    name = f"linux-headers-{release}"
    try:
        top = debpkg.candidate(name)
        deps = debpkg.dependency_names(debpkg.control_fields(name).get("Depends", ""))
        packages = [top] + [debpkg.candidate(d) for d in deps if d.startswith(("linux-headers-", "linux-kbuild-"))]
        log(f"copy trace: fetching {', '.join(p.spec for p in packages)}")
        debs = debpkg.download(packages, guest.cache_root() / "debs")
    except UserError as exc:
        raise CopyTraceUnavailable(f"no kernel headers for {release} to build the copy-trace module with ({exc})") from exc
    shutil.rmtree(root, ignore_errors=True)  # a half-unpacked tree (no .complete) is never used
    root.mkdir(parents=True)
    for deb in debs.values():
        debpkg.extract(deb, root)
    makefile = tree / "Makefile"
    makefile.write_text(makefile.read_text().replace("include /usr/src/", f"include {root}/usr/src/"))
    (root / ".complete").write_text("")
    return tree


def problem(tracefs: Path = TRACEFS, kallsyms: Path = Path("/proc/kallsyms")) -> str | None:
    """Why this kernel cannot run the copy trace at all, or None. Kprobes first: without
    them nothing else helps."""
    try:
        names = {line.split()[2] for line in kallsyms.read_text().splitlines() if len(line.split()) >= 3}
    except OSError:
        names = set()  # cannot tell in advance: loading the module will say
    if names and "register_kprobe" not in names:
        return "this kernel has no kprobes (CONFIG_KPROBES is off)"
    missing = [sym for sym in ROUTINES[:2] if sym not in names]
    if names and missing:
        return f"the kernel has no symbol {', '.join(missing)} to probe"
    if not (tracefs / "events").is_dir():
        mountable = "tracefs" in Path("/proc/filesystems").read_text()
        return (f"tracefs is not mounted at {tracefs} (mount -t tracefs tracefs {tracefs})" if mountable
                else "the kernel has no trace events (CONFIG_TRACING is off)")
    return None


class CopyTrace:
    """Load the module once per run; `start()`/`stop()` count one measurement window."""

    def __init__(self, module: Path | None = None, tracefs: Path = TRACEFS, log: Log = lambda _: None) -> None:
        if os.environ.get(NA_ENV):
            raise CopyTraceUnavailable(os.environ[NA_ENV])
        why = problem(tracefs)
        if why:
            raise CopyTraceUnavailable(why)
        self.tracefs = tracefs
        self.event = tracefs / "events" / "iobench" / "copy"
        try:
            self.lock: int | None = stale.hold(LOCK)
        except BlockingIOError as exc:
            raise CopyTraceUnavailable("another iobench run is tracing copies on this kernel") from exc
        try:
            path = module or (Path(os.environ[MODULE_ENV]) if os.environ.get(MODULE_ENV)
                              else build(platform.release(), log))
            if kmod.loaded(MODULE):
                self._clear()
                kmod.remove(MODULE)  # left by a killed run: we hold the lock, so nobody uses it
            klog = KernelLog()
            err = kmod.insert(path)
            said = [ln for ln in klog.new_lines() if MODULE in ln or "kprobe" in ln]
            klog.close()
            if err:
                raise CopyTraceUnavailable(f"the kernel refused the copy-trace module {path.name} ({os.strerror(err)})"
                                           + (f"; kernel log: {said[-1]}" if said else ""))
            self.armed = [r for r in ROUTINES if not any(f"{r} not probed" in ln for ln in said)]
            if not self.event.is_dir():
                raise CopyTraceUnavailable(f"the module loaded but {self.event} is missing")
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        tracefs.add_trigger(self.event, TRIGGER)
        (self.event / "enable").write_text("1\n")

    def stop(self) -> tuple[CopyCounts, str]:
        """Disable, read and clear the histogram. Returns the counts and the raw hist text."""
        (self.event / "enable").write_text("0\n")
        text = (self.event / "hist").read_text()
        tracefs.add_trigger(self.event, f"!{TRIGGER}")
        return CopyCounts(parse_hist(text)), text

    def _clear(self) -> None:
        try:
            (self.event / "enable").write_text("0\n")
        except OSError:
            pass
        try:
            tracefs.add_trigger(self.event, f"!{TRIGGER}")
        except OSError:
            pass

    def close(self) -> None:
        """Unload the module and drop the lock, leaving the kernel as it was."""
        if self.lock is None:
            return
        if kmod.loaded(MODULE):
            self._clear()
            kmod.remove(MODULE)  # if the kernel still holds it busy, `iobench clean` unloads it later
        stale.release(self.lock, LOCK)
        self.lock = None


def by_kind(counts: CopyCounts, qemu_tids: set[int], qemu_pid: int | None,
            iperf3_pids: Collection[int] = ()) -> dict[str, int]:
    """Copied bytes per thread kind: QEMU's threads, its vhost workers, iperf3, everything else.
    The iperf3 client is known by pid: a hist entry keeps the name its thread had at its first
    copy, which for a client forked by Python and exec'd into iperf3 can be "python3"."""
    out = {"qemu": 0, "vhost": 0, "iperf3": 0, "other": 0}
    for tid, c in counts.by_tid.items():
        if qemu_pid is not None and c.comm == f"vhost-{qemu_pid}":  # a kernel thread before 6.4, a QEMU task after
            out["vhost"] += c.bytes
        elif tid in qemu_tids:
            out["qemu"] += c.bytes
        elif c.comm == "iperf3" or tid in iperf3_pids:
            out["iperf3"] += c.bytes
        else:
            out["other"] += c.bytes
    return out
