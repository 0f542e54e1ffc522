"""Every exit named: KVM exits of the VM's own vCPU threads by exit reason, with the time each reason
took to handle, counted by the kernel per window (`--exit-reasons`; on wherever the kvm tracepoints
are usable: the lab and real KVM hosts).

Why: KVM's binary statistics give exit *kinds* and leave a large remainder (nested page faults, MSR
writes, interrupt windows...), and `mmio_exits` counts only the MMIO exits that reach QEMU, so the
ioeventfd kicks virtio and vhost live on land in no kind at all. The tracepoint `kvm:kvm_exit` carries
the hardware's exit reason. Two tracefs hist triggers do the counting in the kernel, as kvm_stat and
`perf kvm stat` do host-wide, but per thread and per window:

- on `kvm:kvm_exit`: `keys=common_pid,isa,exit_reason, vals=hitcount` - exits per thread and reason;
  it also saves the exit's time and reason per thread (`ts0`, `reason`);
- on `kvm:kvm_entry`: on the next entry of the same thread, a synthetic event `iobench_exit_time`
  (reason, ns from exit to entry) is generated (`onmatch`), whose own hist trigger sums the handling
  time and counts per thread and reason.

Where the exits land (exitsites names them): hist triggers on `kvm:kvm_mmio` (by access type and
guest-physical address), `kvm:kvm_pio` (by direction and port), `kvm:kvm_msr` (by direction and MSR)
and `kvm:kvm_userspace_exit` (by KVM_EXIT_* reason), each per thread. A kernel without one of these
events, or refusing its trigger, loses only that table (`sites_na` says why).

The VM's vCPU threads are picked out afterwards by thread id (the host's other VMs are left out).
Reason names come from the tracepoint's own print format (`__print_symbolic` tables for VMX and SVM in
`events/kvm/kvm_exit/format`), never from a table of ours. Hist triggers soft-enable their event:
nothing is written to the trace ring buffer.

The triggers are armed once for the run, their counting paused, and per window only cleared, let
count and paused again: enabling a tracepoint patches kernel text (a static key: int3 and IPIs to every
CPU), which in the lab's L1 under multi-threaded TCG is what its stall diagnoses caught vCPUs looping in;
per window it now happens never, per run once. (The timing chain's two variable-defining triggers cannot
be paused, so they stay live for the run: handling times cost a little between windows too.)

One user per kernel at a time (the triggers are global): a run holds /run/iobench/exitreasons.lock.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from iobench import stale
from iobench.counters import tracefs

TRACEFS = tracefs.ROOT
LOCK = stale.LOCK_DIR / "exitreasons.lock"
SYNTH = "iobench_exit_time"
SYNTH_DEF = f"{SYNTH} u32 reason; u32 isa; u64 ns"
EXIT_TRIGGER = "hist:keys=common_pid,isa,exit_reason:vals=hitcount:size=8192"
SAVE_TRIGGER = "hist:keys=common_pid:ts0=common_timestamp:reason=exit_reason:isa0=isa"
ENTRY_TRIGGER = (f"hist:keys=common_pid:ns=common_timestamp-$ts0:"
                 f"onmatch(kvm.kvm_exit).trace({SYNTH},$reason,$isa0,$ns)")
TIME_TRIGGER = "hist:keys=common_pid,isa,reason:vals=hitcount,ns:size=8192"
ISA_NAMES = {1: "vmx", 2: "svm"}
# Where the exits land: kind -> (event under events/kvm, its trigger). Every key starts with the thread.
SITE_TRIGGERS = {
    "mmio": ("kvm_mmio", "hist:keys=common_pid,type,gpa:vals=hitcount:size=8192"),
    "pio": ("kvm_pio", "hist:keys=common_pid,rw,port:vals=hitcount:size=4096"),
    "msr": ("kvm_msr", "hist:keys=common_pid,write,ecx:vals=hitcount:size=4096"),
    "userspace": ("kvm_userspace_exit", "hist:keys=common_pid,reason,errno:vals=hitcount:size=1024"),
}
# The fields whose names the tracepoints print from a symbol table (exitsites.sites' access_names).
SITE_SYMBOLS = {"mmio": "type", "userspace": "reason"}
_ENTRY = re.compile(r"\{(?P<keys>[^}]*)\}\s*(?P<vals>(?:\w+:\s*\d+\s*)+)")
_PAIR = re.compile(r"(\w+):\s*(-?\d+)")
# A table entry's value may be an expression: SVM's exceptions are printed as { 0x040 + 14, "PF excp" }.
# A name may be C literals the preprocessor left side by side: { 6, "KVM_EXIT_" "MMIO" }.
_SYMBOLIC = re.compile(r"__print_symbolic\(REC->\w+[^,]*,(?P<table>(?:\s*\{[^{}\"]+,\s*(?:\"[^\"]*\"\s*)+\},?)+)\)")
_SYMBOL = re.compile(r"\{(?P<value>[^{}\"]+),\s*(?P<name>(?:\"[^\"]*\"\s*)+)\}")


class ExitReasonsUnavailable(Exception):
    """This kernel cannot count exits by reason here (the message says why)."""


def _table(text: str) -> dict[int, str]:
    """A __print_symbolic table's entries: value (an expression such as 0x040 + 14, as the u32 field
    holds it) -> name (its C literals joined)."""
    return {sum(int(term, 0) for term in m["value"].split("+")) & 0xFFFFFFFF: "".join(re.findall(r'"([^"]*)"', m["name"]))
            for m in _SYMBOL.finditer(text)}


def print_symbols(format_text: str, field_name: str) -> dict[int, str]:
    """The first `__print_symbolic(REC-><field_name>, {value, "name"}...)` table of a tracepoint's print
    format (empty when it has none)."""
    start = format_text.find(f"__print_symbolic(REC->{field_name},")
    if start < 0:
        return {}
    m = _SYMBOLIC.match(format_text, start)
    if m is None:
        return {}
    return _table(m["table"])


def reason_names(format_text: str) -> dict[int, dict[int, str]]:
    """isa (1 VMX, 2 SVM) -> exit reason -> the name the kernel prints, from kvm_exit's format file.
    The print format holds the VMX table first (`REC->isa == 1 ? ... : ...`), then SVM's."""
    tables = [m["table"] for m in _SYMBOLIC.finditer(format_text) if m[0].startswith("__print_symbolic(REC->exit_reason")]
    if len(tables) != 2:
        raise ExitReasonsUnavailable(f"kvm_exit's print format has {len(tables)} reason tables, expected VMX and SVM")
    out: dict[int, dict[int, str]] = {}
    for isa, table in zip((1, 2), tables, strict=True):
        out[isa] = _table(table)
    return out


def parse_hist(text: str) -> dict[tuple[int, ...], dict[str, int]]:
    """A hist trigger's output: key values (in key order) -> the entry's vals (hitcount, ns...)."""
    out: dict[tuple[int, ...], dict[str, int]] = {}
    for m in _ENTRY.finditer(text):
        keys = tuple(int(v) for _, v in _PAIR.findall(m["keys"]))
        out[keys] = {k: int(v) for k, v in _PAIR.findall(m["vals"])}
    return out


@dataclass(frozen=True)
class ReasonCount:
    reason: str
    exits: int
    handled: int | None  # exits whose next entry was seen (their time is in handling_ns)
    handling_ns: int | None


@dataclass
class WindowReasons:
    """One window's exits by reason for the VM's vCPU threads, most frequent first."""

    reasons: list[ReasonCount] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(r.exits for r in self.reasons)


def by_reason(exits: dict[tuple[int, ...], dict[str, int]], times: dict[tuple[int, ...], dict[str, int]],
              vcpu_tids: Collection[int], names: dict[int, dict[int, str]]) -> WindowReasons:
    """Sum the hist entries of the VM's vCPU threads per reason name (an unnamed code keeps its number)."""
    counts: dict[str, list[int]] = {}
    for source, column in ((exits, 0), (times, 1)):
        for key, vals in source.items():
            if len(key) != 3:
                continue
            pid, isa, code = key
            if pid not in vcpu_tids:
                continue
            name = names.get(isa, {}).get(code & 0xFFFF if isa == 1 else code,
                                         f"{ISA_NAMES.get(isa, 'isa' + str(isa))}_{code:#x}")
            slot = counts.setdefault(name, [0, 0, 0])
            if column == 0:
                slot[0] += vals.get("hitcount", 0)
            else:
                slot[1] += vals.get("hitcount", 0)
                slot[2] += vals.get("ns", 0)
    timed = bool(times)
    rows = [ReasonCount(n, c[0], c[1] if timed else None, c[2] if timed else None) for n, c in counts.items()]
    return WindowReasons(sorted(rows, key=lambda r: (-r.exits, r.reason)))


def problem(tracefs: Path = TRACEFS) -> str | None:
    """Why exits cannot be counted by reason here, or None."""
    event = tracefs / "events" / "kvm" / "kvm_exit"
    if not (tracefs / "events").is_dir():
        return f"tracefs is not mounted at {tracefs}"
    if not event.is_dir():
        return "the kernel has no kvm:kvm_exit tracepoint (KVM not loaded)"
    if not (event / "hist").exists():
        return "the kernel has no hist triggers (CONFIG_HIST_TRIGGERS is off)"
    return None


class ExitReasons:
    """Count exits by reason (and their handling time) per window: `start()` / `stop()`."""

    def __init__(self, tracefs: Path = TRACEFS, once: bool = True) -> None:
        """`once`: arm every trigger once, for the whole run, and per window only clear and let count
        (`start`/`stop`); else arm and remove them every window (the exit_reasons = "alternate" A/B,
        whose rounds without them must have nothing armed)."""
        self.once = once
        self.armed = False
        why = problem(tracefs)
        if why:
            raise ExitReasonsUnavailable(why)
        self.tracefs = tracefs
        self.exit = tracefs / "events" / "kvm" / "kvm_exit"
        self.entry = tracefs / "events" / "kvm" / "kvm_entry"
        self.synth = tracefs / "events" / "synthetic" / SYNTH
        self.synth_error = "its directory did not appear"
        self.sites: dict[str, tuple[Path, str]] = {}
        self.sites_na: dict[str, str] = {}
        self.site_names: dict[str, dict[int, str]] = {}
        self.formats: dict[str, str] = {}  # event -> its format file: where every name came from (kept in raw/)
        try:
            self.lock: int | None = stale.hold(LOCK)
        except BlockingIOError as exc:
            raise ExitReasonsUnavailable("another iobench run is counting exit reasons on this kernel") from exc
        try:
            self.formats["kvm_exit"] = (self.exit / "format").read_text()
            self.names = reason_names(self.formats["kvm_exit"])
            self._remove()  # left by a killed run: we hold the lock, so nobody uses them
            self.timed = self._define_synthetic()
            self.time_na = "" if self.timed else f"the kernel refused the synthetic event {SYNTH} ({self.synth_error})"
            self.sites, self.sites_na, self.site_names = self._try_sites()
            self._try_once()
        except BaseException:
            self.close()
            raise

    def _try_once(self) -> None:
        """Arm every trigger once before the first window (and, unless they stay armed for the run,
        remove them again), so that a kernel that refuses one says so here (counts without handling
        time, or no exit reasons at all), not mid-run."""
        try:
            tracefs.add_trigger(self.exit, EXIT_TRIGGER)
            tracefs.add_trigger(self.exit, f"!{EXIT_TRIGGER}")
        except OSError as exc:
            raise ExitReasonsUnavailable(f"the kernel refused the hist trigger on kvm:kvm_exit ({exc.strerror}"
                                         f"{tracefs.kernel_said(self.tracefs)})") from exc
        if not self.timed:
            return
        try:
            self._arm()
            if not self.once:
                self._disarm()
        except OSError as exc:
            self.time_na = f"the kernel refused the handling-time triggers ({exc.strerror}{tracefs.kernel_said(self.tracefs)})"
            self._remove()
            self.armed = False
            self.timed = False

    def _try_sites(self) -> tuple[dict[str, tuple[Path, str]], dict[str, str], dict[str, dict[int, str]]]:
        """The site triggers this kernel takes (kind -> (event dir, trigger)), why the others are not
        counted, and the access names from the events' formats."""
        usable: dict[str, tuple[Path, str]] = {}
        na: dict[str, str] = {}
        names: dict[str, dict[int, str]] = {}
        for kind, (event_name, trigger) in SITE_TRIGGERS.items():
            event = self.tracefs / "events" / "kvm" / event_name
            if not event.is_dir():
                na[kind] = f"the kernel has no kvm:{event_name} tracepoint"
                continue
            try:
                tracefs.add_trigger(event, trigger)
                tracefs.add_trigger(event, f"!{trigger}")
            except OSError as exc:
                said = tracefs.kernel_said(self.tracefs)
                na[kind] = f"the kernel refused the hist trigger on kvm:{event_name} ({exc.strerror}{said})"
                continue
            usable[kind] = (event, trigger)
            self.formats[event_name] = (event / "format").read_text()
            if kind in SITE_SYMBOLS:
                names[kind] = print_symbols(self.formats[event_name], SITE_SYMBOLS[kind])
        return usable, na, names

    def _define_synthetic(self) -> bool:
        """Whether the handling-time synthetic event could be made (older kernels: counts only)."""
        try:
            tracefs.append(self.tracefs / "synthetic_events", SYNTH_DEF)
            return self.synth.is_dir()
        except OSError as exc:
            self.synth_error = f"{exc.strerror}{tracefs.kernel_said(self.tracefs)}"
            return False

    def _triggers(self) -> list[tuple[Path, str]]:
        """(event dir, trigger) in the order they must be added (removed in reverse)."""
        out = [(self.exit, EXIT_TRIGGER), *self.sites.values()]
        if self.timed:
            out += [(self.synth, TIME_TRIGGER), (self.exit, SAVE_TRIGGER), (self.entry, ENTRY_TRIGGER)]
        return out

    def _counting(self) -> list[tuple[Path, str]]:
        """The triggers that count, in the order they start counting: the sites, the exits, then the
        handling times (so an exit is handled only while the exits are counted; a trigger that defines
        variables, as the two of the timing chain do, cannot be paused: the kernel refuses to parse it
        again, "variable already defined")."""
        return [*self.sites.values(), (self.exit, EXIT_TRIGGER), *([(self.synth, TIME_TRIGGER)] if self.timed else [])]

    def _arm(self) -> None:
        """Add every trigger, the counting ones paused.

        Why paused: adding a trigger enables its tracepoint, which patches kernel text (a static key:
        int3 and IPIs to every CPU); in the lab's L1, under TCG, that takes tens of ms per event, and
        the guest exits meanwhile. Armed one by one and counting at once, the exit count ran ~40 ms
        ahead of the window KVM's statistics measure (1.2% more exits than KVM counted in one e1000 tx
        window). Of the timing chain, only its counting end (the synthetic event's histogram) is paused:
        the two triggers that define variables cannot be (the kernel refuses to parse them again)."""
        counting = set(self._counting())
        for event, trigger in self._triggers():
            tracefs.add_trigger(event, f"{trigger}:pause" if (event, trigger) in counting else trigger)
        self.armed = True

    def _disarm(self) -> None:
        for event, trigger in reversed(self._triggers()):
            tracefs.add_trigger(event, f"!{trigger}")
        self.armed = False

    def start(self) -> None:
        """Let the counting triggers count from zero, in order (the sites, the exits, then the handling
        times): armed once for the run (`once`) they are only cleared here, so no tracepoint is enabled
        or disabled per window — no kernel text patched, no IPIs — which in the lab's L1 under
        multi-threaded TCG is the live code patching its stall diagnoses point at; `cont` and `clear`
        only set flags and empty tables. Otherwise they are armed here, empty, and removed by `stop`."""
        if self.armed:
            for event, trigger in self._counting():
                tracefs.add_trigger(event, f"{trigger}:clear")
        else:
            self._arm()
        for event, trigger in self._counting():
            tracefs.add_trigger(event, f"{trigger}:cont")

    def pause(self) -> None:
        """Stop counting: the counting triggers paused in the reverse order (the handling times, then
        the exits, then the sites)."""
        for event, trigger in reversed(self._counting()):
            tracefs.add_trigger(event, f"{trigger}:pause")

    def stop(self) -> tuple[WindowCounts, str]:
        """Pause (if `pause` was not called) and read the histograms (the next `start` clears them; without
        `once` the triggers are removed here). Returns the counts and the raw hist texts (kept in raw/)."""
        self.pause()
        exit_text = (self.exit / "hist").read_text()
        time_text = (self.synth / "hist").read_text() if self.timed else ""
        site_texts = {kind: (event / "hist").read_text() for kind, (event, _) in self.sites.items()}
        if not self.once:
            self._disarm()
        counts = WindowCounts(parse_hist(_only(exit_text, EXIT_TRIGGER)), parse_hist(time_text),
                              {kind: parse_hist(text) for kind, text in site_texts.items()})
        raw = exit_text + ("\n# handling time\n" + time_text if time_text else "")
        return counts, raw + "".join(f"\n# sites: {kind}\n{text}" for kind, text in site_texts.items())

    def _remove(self) -> None:
        sites = [(self.tracefs / "events" / "kvm" / e, t) for e, t in SITE_TRIGGERS.values()]
        for event, trigger in ((self.entry, ENTRY_TRIGGER), (self.exit, SAVE_TRIGGER), (self.synth, TIME_TRIGGER),
                               (self.exit, EXIT_TRIGGER), *sites):
            try:
                tracefs.add_trigger(event, f"!{trigger}")
            except OSError:
                pass
        try:
            tracefs.append(self.tracefs / "synthetic_events", f"!{SYNTH_DEF}")
        except OSError:
            pass

    def close(self) -> None:
        if self.lock is None:
            return
        self._remove()
        stale.release(self.lock, LOCK)
        self.lock = None


@dataclass(frozen=True)
class WindowCounts:
    exits: dict[tuple[int, ...], dict[str, int]]
    times: dict[tuple[int, ...], dict[str, int]]
    sites: dict[str, dict[tuple[int, ...], dict[str, int]]] = field(default_factory=dict)  # kind -> histogram




def _only(text: str, trigger: str) -> str:
    """kvm_exit's hist file shows every hist trigger on the event, each in a section that starts
    with "# event histogram" and names its trigger; keep the section of `trigger`."""
    head = trigger.split(":vals=")[0]  # hist:keys=...
    for section in re.split(r"(?m)^# event histogram\s*$", text):
        if re.search(rf"(?m)^# trigger info: {re.escape(head)}:", section):
            return section
    return text
