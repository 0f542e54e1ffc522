"""KVM exit statistics of the guest's vCPUs, from QMP `query-stats`.

Why QMP and not debugfs: `query-stats` reads the VM's own binary stats fds, so
the counts are this guest's alone, not the host-wide totals of every VM.
"""

from __future__ import annotations

from typing import Any

from iobench.schema import KVM_STATS


def sum_vcpu_stats(reply: list[dict[str, Any]]) -> dict[str, int]:
    """Sum the cumulative KVM_STATS over every vCPU in a `query-stats target=vcpu` reply."""
    totals = dict.fromkeys(KVM_STATS, 0)
    seen = set()
    for entry in reply:
        if entry.get("provider") != "kvm":
            continue
        for stat in entry.get("stats", []):
            name = stat["name"]
            if name in totals and isinstance(stat["value"], int) and not isinstance(stat["value"], bool):
                totals[name] += stat["value"]
                seen.add(name)
    if "exits" not in seen:
        raise ValueError("query-stats reply has no KVM 'exits' counter")
    return totals


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in KVM_STATS}
