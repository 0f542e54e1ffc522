"""Which gated metrics follow the host's speed, and whether two runs' hosts differ in speed.

Why: under an emulator (TCG, and the nested lab, whose L1 runs under TCG) the guest's CPU is
host CPU time through a translator, so how fast the guest and QEMU's device models run follows
the host's kernel, CPU and load. Metrics that follow timing follow the host with it: rates and
CPU time always; per-packet counts of saturated streams (how many packets one kick or one
interrupt covers depends on who waits for whom); per-transaction counts of devices whose
interrupt moderation QEMU emulates with timers (e1000's `mitigation`, e1000e's throttling); and
paced cells faster than PACED_HOLDS_PPS, whose per-datagram counts were not shown to hold across
hosts (slower ones were, under load: PACED_HOLDS_PPS).

Measured on this project's machine kind when its host kernel changed (6.18.44 v669 -> v1300, the
same code): under TCG throughput 0.55-0.69x, CPU per packet 1.37-1.69x, the native ceiling
0.55-0.67x, e1000 guest->host traps per packet up to +19% and interrupts +20%, virtio guest->host
traps per packet +12%, e1000's request/response trap equivalents per transaction 9.3 -> 12-14; in
the lab (L1 ran at half the transaction rate) e1000's exits per transaction 13.7 -> 17.3 (UDP) and
interrupts 1.96 -> 2.76. What held: copies per packet (1.000x), virtio's trap equivalents per
transaction under TCG (3.1 on both kernels), e1000 with mitigation off (CV 0.4% within a run, and
in a run slowed by other load), and in the lab virtio's and vhost's exits per transaction (0.96-1.03x)
and interrupts per transaction (1.07-1.08x).

Such metrics cannot judge code against a baseline from another host: `host_bound` says which
metric of which cell is one, `host_differences` why two runs' hosts differ. A kernel change on
real KVM is not a host-speed question (the guest runs on the CPU): there it stays a note, and
may be the very change a user gates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iobench.backends import BACKENDS
from iobench.schema import paced_rate

# Rates and CPU time: the emulator's speed, whatever the cell.
SPEED_METRICS = frozenset({"throughput_bps", "cpu_us_per_packet", "cpu_us_per_transaction", "cpu_us_per_datagram"})
# Per-packet counts of a saturated stream: batching follows timing.
STREAM_COUNTS = frozenset({"exits_per_packet", "irq_injections_per_packet"})
# Paced datagrams at most this often are each handled alone, whatever the host's speed. Measured under TCG
# (2026-12-08, scenarios/ci.toml's 2000/s of 1472 B, guest tick periodic), with one of the machine's two
# cores taken by a busy loop: the per-datagram medians of e1000, e1000 without mitigation and virtio came out
# 0.7-4.4% *lower* than in quiet runs (a delayed sender sends a burst, and a burst shares interrupts), never
# higher: quiet runs already take one interrupt per datagram (0.99-1.00), the most there can be, so a slower
# or faster host cannot make them look worse. e1000's moderation does not batch them: QEMU raises an
# interrupt at once and holds only those that come within its delay window (ITR, at least 500 x 256 ns =
# 128 us), and datagrams 500 us apart do not. Faster paced cells near a backend's ceiling batch as streams do.
PACED_HOLDS_PPS = 2000


def emulated(env: Mapping[str, Any]) -> bool:
    """Whether the guest's speed is an emulator's (`compare.environment()` of a run)."""
    return env.get("accel") == "tcg" or env.get("environment") == "lab"


def timer_moderated(backend: str, scenario: Mapping[str, Any]) -> str | None:
    """What makes this backend's interrupts follow QEMU's timers, or None: its base device's timer
    moderation, unless the variant (or a `-global` of the scenario) turns it off."""
    variants = {v["name"]: v for v in scenario.get("variants") or ()}
    variant = variants.get(backend)
    base = BACKENDS.get(variant["base"] if variant else backend)
    if base is None or not base.timer_moderation:
        return None
    if base.timer_moderation_off:
        prop, off = base.timer_moderation_off
        if variant and str(variant.get("device", {}).get(prop)) == off:
            return None
        args = list(scenario.get("qemu_args") or ())
        if any(a == f"{base.device}.{prop}={off}" for a in args):
            return None
    return base.timer_moderation


def host_bound(env: Mapping[str, Any], scenario: Mapping[str, Any], backend: str, kind: str,
               metric: str, workload: str) -> str | None:
    """Why this metric of this cell follows the host's speed (None: it does not, or the guest runs on
    the CPU itself). `env` is the run's `compare.environment()`, `scenario` its run.json scenario,
    `workload` the cell's workload label (a paced cell's rate is in it)."""
    if not emulated(env):
        return None
    if metric in SPEED_METRICS:
        return "a rate or CPU time under an emulator"
    if metric == "copies_per_packet_measured":
        return None  # bytes copied per byte carried: 1.000x across the host kernel change above
    if kind == "stream" and metric in STREAM_COUNTS:
        return "a per-packet count of a saturated stream under an emulator (batching follows timing)"
    if kind == "paced":
        rate = paced_rate(workload)
        if rate is None or rate > PACED_HOLDS_PPS:
            return (f"a per-datagram count at more than {PACED_HOLDS_PPS} datagrams/s under an emulator, not shown "
                    "to hold across hosts (near saturation batching follows timing)")
        return None
    if kind == "rr" and (why := timer_moderated(backend, scenario)):
        return f"per-transaction counts under an emulator follow the device's moderation timers ({why})"
    return None


def host_differences(base: Mapping[str, Any], cur: Mapping[str, Any]) -> list[str]:
    """What differs between two runs' hosts in a way that sets an emulator's speed: the kernel and the CPU
    model of the machine that runs the emulator (`compare.environment()`: the host's own under TCG; in
    the lab the outer host's, under L1, not L1's kernel); empty when not emulated or the same. A
    baseline that does not record the lab's outer host (older than this rule) differs by default."""
    if not (emulated(base) and emulated(cur)):
        return []
    keys = ((("outer_kernel", "host kernel under L1"), ("outer_cpu_model", "CPU under L1"))
            if cur.get("environment") == "lab" else (("kernel", "host kernel"), ("cpu_model", "CPU")))
    return [f"{what} {base.get(k) or 'not recorded'} -> {cur.get(k)}" for k, what in keys if base.get(k) != cur.get(k)]
