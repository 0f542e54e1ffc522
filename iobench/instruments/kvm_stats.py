"""VM exits by kind from KVM's own per-vCPU statistics (QMP `query-stats`): the exit source under KVM.

Why QMP and not debugfs: `query-stats` reads this VM's binary stats fds, so the counts are this
guest's alone. A stat this kernel's KVM does not report is None with the reason, never 0.
"""

from __future__ import annotations

from typing import Any

from iobench.counters import kvm
from iobench.instruments.base import Instrument, Reading, RunScope, Window
from iobench.schema import KVM_KINDS, TRAP_KINDS

KVM_NA = "traps_* are TCG-only"


class KvmStats(Instrument):
    name = "kvm-stats"

    def __init__(self, run: RunScope) -> None:
        self.run = run

    def sample(self, window: Window) -> dict[str, int | None] | None:
        if window.vm is None:
            return None
        return kvm.sum_vcpu_stats(window.vm.command("query-stats", target="vcpu"))

    def record(self, sample: Any) -> dict[str, Any]:
        return {"kvm": sample}

    def read(self, window: Window, samples: list[Any]) -> Reading:
        if window.vm is None:
            return Reading()
        no_traps: dict[str, Any] = dict.fromkeys(TRAP_KINDS, None)
        columns = kvm.delta(samples[0], samples[-1]) | no_traps
        missing = [k for k in KVM_KINDS if columns[k] is None]
        return Reading(columns=columns,
                       na=[KVM_NA, *([f"{', '.join(missing)}: this kernel's KVM reports no such stat"] if missing else [])],
                       slices=[kvm.delta(a, b) | no_traps for a, b in zip(samples, samples[1:], strict=False)])
