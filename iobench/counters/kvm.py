"""KVM exit statistics of the guest's vCPUs, from QMP `query-stats`.

Why QMP and not debugfs: `query-stats` reads the VM's own binary stats fds, so
the counts are this guest's alone, not the host-wide totals of every VM.
"""

from __future__ import annotations

from typing import Any

from iobench.schema import KVM_STATS


def sum_vcpu_stats(reply: list[dict[str, Any]]) -> dict[str, int | None]:
    """Sum the cumulative KVM_STATS over every vCPU in a `query-stats target=vcpu` reply.

    A stat that some vCPU does not report (this kernel has no such counter) is None, not 0:
    a kernel that lacks `irq_window_exits` has not measured zero of them. Raises ValueError
    without `exits`, the one stat every row needs."""
    totals: dict[str, int] = dict.fromkeys(KVM_STATS, 0)
    vcpus = 0
    seen: dict[str, int] = dict.fromkeys(KVM_STATS, 0)
    for entry in reply:
        if entry.get("provider") != "kvm":
            continue
        vcpus += 1
        for stat in entry.get("stats", []):
            name = stat["name"]
            if name in totals and isinstance(stat["value"], int) and not isinstance(stat["value"], bool):
                totals[name] += stat["value"]
                seen[name] += 1
    if not vcpus or seen["exits"] < vcpus:
        raise ValueError("query-stats reply has no KVM 'exits' counter")
    return {k: (v if seen[k] == vcpus else None) for k, v in totals.items()}


def missing(stats: dict[str, int | None]) -> list[str]:
    """The stats this kernel did not report (for na_reason)."""
    return [k for k, v in stats.items() if v is None]


def delta(before: dict[str, int | None], after: dict[str, int | None]) -> dict[str, int | None]:
    return {k: (a - b if (a := after[k]) is not None and (b := before[k]) is not None else None) for k in KVM_STATS}
