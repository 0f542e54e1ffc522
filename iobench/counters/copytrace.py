"""Measured kernel copies per thread (`--copy-trace`), from tracefs kprobes with hist triggers.

Why: rchar/wchar see only the copies QEMU asks for through syscalls; vhost-net's
copies happen in a kernel thread and never show there. Counting the kernel's
copy routines by thread shows who copies how many bytes on every path. Only
where the kernel allows it: kprobe events in tracefs (CONFIG_KPROBE_EVENTS) and
hist triggers; elsewhere the run records why not, and the columns stay empty.

Probed routines (x86-64 argument registers, Linux 6.x signatures):
  _copy_to_iter(addr, bytes, iter)            bytes in %si  (kernel -> iovec: tap read, vhost rx into the guest)
  _copy_from_iter(addr, bytes, iter)          bytes in %si  (iovec -> kernel: tap write, vhost tx from the guest)
  copy_page_to_iter(page, off, bytes, iter)   bytes in %dx  (paged skb data to an iovec)
  copy_page_from_iter(page, off, bytes, iter) bytes in %dx
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")
GROUP = "iobench"
PROBES = {
    "copy_to_iter": ("_copy_to_iter", "%si"),
    "copy_from_iter": ("_copy_from_iter", "%si"),
    "copy_page_to_iter": ("copy_page_to_iter", "%dx"),
    "copy_page_from_iter": ("copy_page_from_iter", "%dx"),
}
_HIST_LINE = re.compile(r"\{\s*common_pid:\s*(?P<comm>.*?)\s*\[\s*(?P<pid>\d+)\]\s*\}\s*hitcount:\s*(?P<hits>\d+)"
                        r"\s+bytes:\s*(?P<bytes>\d+)")


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


def kernel_log_lines(word: str, limit: int = 4096) -> list[str]:
    """Recent kernel log lines containing `word` (/dev/kmsg, read without blocking): the
    kernel says there why a probe could not be armed (e.g. "Could not insert probe ... -22")."""
    import os

    lines: list[str] = []
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return lines
    try:
        for _ in range(limit):
            try:
                record = os.read(fd, 8192).decode(errors="replace")
            except BlockingIOError:
                break
            except OSError:  # EPIPE: records overwritten while reading; skip on
                continue
            text = record.split(";", 1)[-1].strip()
            if word in text:
                lines.append(text)
    finally:
        os.close(fd)
    return lines


def problem(tracefs: Path = TRACEFS) -> str | None:
    if not (tracefs / "kprobe_events").exists():
        return f"no kprobe events in {tracefs} (tracefs not mounted, or the kernel lacks CONFIG_KPROBE_EVENTS)"
    try:
        names = {line.split()[2] for line in Path("/proc/kallsyms").read_text().splitlines() if len(line.split()) >= 3}
    except OSError:
        return None  # cannot tell in advance: adding the probes will say
    missing = [sym for sym, _ in PROBES.values() if sym not in names]
    if missing:
        return f"the kernel has no symbol {', '.join(missing)} to probe"
    return None


class CopyTrace:
    """Install the probes once per run; `window()` counts one measurement window."""

    def __init__(self, tracefs: Path = TRACEFS) -> None:
        why = problem(tracefs)
        if why:
            raise CopyTraceUnavailable(why)
        self.tracefs = tracefs
        try:
            for name, (sym, reg) in PROBES.items():
                with (tracefs / "kprobe_events").open("a") as f:
                    f.write(f"p:{GROUP}/{name} {sym} bytes={reg}:u64\n")
        except OSError as exc:
            self.close()
            try:
                # the kernel's reason is the line before the echoed command and its caret
                detail = " ".join(" ".join((tracefs / "error_log").read_text().splitlines()[-3:]).split())
            except OSError:
                detail = ""
            kernel = kernel_log_lines("probe")
            raise CopyTraceUnavailable(f"the kernel refused the kprobe on {sym} ({exc.strerror})"
                                       + (f"; tracefs error_log: {detail}" if detail else "")
                                       + (f"; kernel log: {kernel[-1]}" if kernel else "")) from exc

    def _event(self, name: str) -> Path:
        return self.tracefs / "events" / GROUP / name

    def start(self) -> None:
        for name in PROBES:
            (self._event(name) / "trigger").write_text("hist:keys=common_pid.execname:vals=hitcount,bytes\n")
            (self._event(name) / "enable").write_text("1\n")

    def stop(self) -> tuple[CopyCounts, str]:
        """Disable, read and clear the histograms. Returns the counts and the raw hist text."""
        counts = CopyCounts()
        raw = []
        for name in PROBES:
            (self._event(name) / "enable").write_text("0\n")
            text = (self._event(name) / "hist").read_text()
            raw.append(f"# {name}\n{text}")
            for tid, c in parse_hist(text).items():
                total = counts.by_tid.setdefault(tid, ThreadCopies(c.comm))
                total.calls += c.calls
                total.bytes += c.bytes
            (self._event(name) / "trigger").write_text("!hist:keys=common_pid.execname:vals=hitcount,bytes\n")
        return counts, "\n".join(raw)

    def close(self) -> None:
        """Remove every probe of ours (those that exist), leaving the kernel as it was."""
        for name in PROBES:
            if not self._event(name).exists():
                continue
            try:
                (self._event(name) / "enable").write_text("0\n")
                with (self.tracefs / "kprobe_events").open("a") as f:
                    f.write(f"-:{GROUP}/{name}\n")
            except OSError:
                pass


def by_kind(counts: CopyCounts, qemu_tids: set[int], qemu_pid: int | None) -> dict[str, int]:
    """Copied bytes per thread kind: QEMU's threads, its vhost workers, iperf3, everything else."""
    out = {"qemu": 0, "vhost": 0, "iperf3": 0, "other": 0}
    for tid, c in counts.by_tid.items():
        if qemu_pid is not None and c.comm == f"vhost-{qemu_pid}":  # a kernel thread before 6.4, a QEMU task after
            out["vhost"] += c.bytes
        elif tid in qemu_tids:
            out["qemu"] += c.bytes
        elif c.comm == "iperf3":
            out["iperf3"] += c.bytes
        else:
            out["other"] += c.bytes
    return out
