"""The lab's progress watchdog: how long each phase of the inner run may take, and when L1 has stalled.

Why: the first-level VM (L1) runs under emulation and can stop making progress
(a vCPU spinning inside nested SVM, or both vCPUs asleep with a lost timer)
without dying. One timeout for the whole job made the host wait for up to 50
minutes. Instead, the inner run announces each phase on L1's serial console with
the longest it may take (`IOBENCH-PHASE <budget_s> <what>`), and the host
declares L1 stalled when the next line of progress does not arrive within that
budget plus a margin. A soft lockup or hung task reported by L1's kernel is a
stall at once: the stuck vCPU will not recover by itself.

The budgets include the inner run's own timeouts (the guest's boot timeout,
iperf3's slack, one QMP timeout), so an inner failure that is handled inside
(a guest that never boots, a QMP command that gets no answer) prints its line
before the host's watchdog fires.

A phase budget is an upper bound for the inner run's *work*; L1 itself going
quiet is caught sooner: a thread of the inner run prints `IOBENCH-BEAT` every
BEAT_S seconds whatever the run is waiting for, so once beats have been seen, a
console silent for BEAT_GAP_S means L1 (its vCPUs, timers or console) has stopped,
not that our code is slow.
"""

from __future__ import annotations

import faulthandler
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

PHASE_MARKER = "IOBENCH-PHASE"
INNER_STUCK = "inner run stuck"
BEAT_MARKER = "IOBENCH-BEAT"
DONE_MARKER = "IOBENCH-LAB-DONE"  # L1's init, once the job has ended (data/lab-init.sh)
BEAT_S = 5.0
BEAT_GAP_S = 30.0  # six beats missed: measured beats under load arrive within a second or two of their time
MARGIN_S = 30.0  # on top of every budget: writing raw files, a VM's shutdown, 9p under emulation
STARTUP_BUDGET_S = 300.0  # L1 ready -> the inner run's first phase (Python over 9p, image check, namespaces)
QMP_SLACK_S = 30.0  # one QMP command that gets no answer (vm.QMP_TIMEOUT_S) before the inner run says so
FINISH_BUDGET_S = 300.0  # the inner run's summary and CSVs (pandas imported under emulation)

# L1's kernel saying that a CPU or a task is stuck: L1 will not make progress again.
LOCKUP = re.compile(r"watchdog: BUG: soft lockup|INFO: task .* blocked for more than|"
                    r"rcu: INFO: rcu_\w+ (?:self-)?detected stall")


def in_lab() -> bool:
    return os.environ.get("IOBENCH_ENVIRONMENT") == "lab"


def announce(what: str, budget_s: float) -> None:
    """Inside the lab: tell the host's watchdog that `what` starts and may take `budget_s` at most.

    And arm a dump of every thread's Python stack to the console for when the phase overruns its budget
    (half the margin before the host gives up on L1): an inner run stuck in a call of its own (a child
    it waits for, a QMP socket) is then told apart from L1 stopping, and the call is named."""
    if in_lab():
        print(f"{PHASE_MARKER} {budget_s:.0f} {what}", file=sys.stderr, flush=True)
        try:
            faulthandler.dump_traceback_later(budget_s + MARGIN_S / 2, repeat=False, file=sys.stderr)
        except (AttributeError, ValueError, OSError):  # a stderr with no file descriptor (a test's capture)
            pass


@contextmanager
def heartbeat(every_s: float = BEAT_S) -> Iterator[None]:
    """Inside the lab: a daemon thread prints a beat every `every_s` while the block runs."""
    if not in_lab():
        yield
        return
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every_s):
            print(BEAT_MARKER, file=sys.stderr, flush=True)

    thread = threading.Thread(target=beat, name="iobench-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=1.0)
        faulthandler.cancel_dump_traceback_later()  # the last phase's overrun dump (announce)


def traffic_budget(duration_s: float, omit_s: float) -> float:
    """A traffic window's budget: the client's own limit (traffic.run: the window plus its overrun
    slack) and one QMP timeout."""
    from iobench.traffic import OVERRUN_SLACK_S  # here: this module stays a leaf for the lab's host side

    return duration_s + omit_s + OVERRUN_SLACK_S + QMP_SLACK_S


@dataclass
class Watchdog:
    """Tracks the current phase from L1's console lines and says when L1 has stalled."""

    margin_s: float = MARGIN_S
    phase: str = "startup (L1 ready, before the inner run's first phase)"
    budget_s: float = STARTUP_BUDGET_S
    since: float = field(default_factory=time.monotonic)
    lockup: str | None = None
    beat_gap_s: float = BEAT_GAP_S
    last_beat: float | None = None  # when the last console line came, once the inner run beats
    # Each finished phase and how long it took by the host's clock (L1's own clock runs under emulation):
    # where a lab run's time goes, so that a slow run is explained by its phases, not guessed at.
    spent: list[tuple[str, float]] = field(default_factory=list)

    def line(self, text: str, now: float | None = None) -> None:
        """Take one console line."""
        now = time.monotonic() if now is None else now
        if text.startswith(BEAT_MARKER) or self.last_beat is not None:
            self.last_beat = now  # any line proves L1 alive; beats make silence meaningful
        if text.startswith(PHASE_MARKER):
            budget, _, what = text.removeprefix(PHASE_MARKER).strip().partition(" ")
            try:
                self.budget_s = float(budget)
            except ValueError:
                return
            self._begin(what, now)
        elif text.startswith(DONE_MARKER):
            self._begin("done", now)
        elif self.lockup is None and LOCKUP.search(text):
            self.lockup = text.strip()

    def _begin(self, phase: str, now: float) -> None:
        """End the current phase (its time into `spent`) and start `phase`."""
        self.spent.append((self.phase, now - self.since))
        self.phase, self.since = phase, now

    def stalled(self, now: float | None = None) -> str | None:
        """Why L1 counts as stalled now, or None."""
        now = time.monotonic() if now is None else now
        if self.lockup:
            return f"L1's kernel reports a stuck CPU or task during {self.phase}: {self.lockup}"
        if self.last_beat is not None and now - self.last_beat > self.beat_gap_s:
            return (f"L1's console silent for {now - self.last_beat:.0f} s (the inner run beats every {BEAT_S:.0f} s) "
                    f"during {self.phase}")
        waited = now - self.since
        if waited > self.budget_s + self.margin_s:
            budget = f"(budget {self.budget_s:.0f} s + {self.margin_s:.0f} s margin)"
            if self.last_beat is not None:  # beats within the gap: L1 runs, the inner run's main thread does not
                return (f"{INNER_STUCK}: no progress for {waited:.0f} s during {self.phase} {budget} while L1 kept "
                        "beating (the inner run's thread stacks are on L1's console)")
            return f"no progress from L1 for {waited:.0f} s during {self.phase} {budget}"
        return None

    @staticmethod
    def reason(why: str) -> str:
        """The lost L1 attempt's reason: an L1 stall, or the inner run stuck while L1 ran (L1 is replaced
        either way: the host cannot reach into L1 to end one call)."""
        return why if why.startswith(INNER_STUCK) else f"L1 stalled: {why}"


def phase_kind(phase: str) -> str:
    """What a phase is, without its VM and cell: "e1000/r2: tcp-P1-ldefault rx traffic" -> "traffic window"."""
    kind = phase.split(": ", 1)[1] if ": " in phase and "/r" in phase.split(": ", 1)[0] else phase
    if kind.endswith(" traffic"):
        return "traffic window"
    return kind.split(" (", 1)[0]


def time_by_kind(spent: list[tuple[str, float]]) -> dict[str, dict[str, float]]:
    """Seconds and count per kind of phase, largest first (run.json's lab.time_by_phase)."""
    out: dict[str, dict[str, float]] = {}
    for phase, seconds in spent:
        entry = out.setdefault(phase_kind(phase), {"seconds": 0.0, "count": 0})
        entry["seconds"] += seconds
        entry["count"] += 1
    return {k: {"seconds": round(v["seconds"], 1), "count": v["count"]}
            for k, v in sorted(out.items(), key=lambda kv: -kv[1]["seconds"])}
