"""Every exit named: KVM exits by reason with their handling time, and the registers, ports and MSRs
they land on, per window (`--exit-reasons`, where KVM's tracepoints are: the lab, real KVM hosts).

The tracefs hist triggers (counters.exitreasons) are armed per window and read at its end; the
addresses are named from QEMU's own memory map of the VM, read once after boot (exitsites). The
rows go to exit_reasons.csv and exit_sites.csv; a traffic row gets their sum (`exit_reasons_total`),
so the coverage of KVM's own count is checked cell by cell. With exit_reasons = "alternate" they
are on in rounds 1, 4, 5, 8... only (ABBA), so that the rounds without them measure their cost.
"""

from __future__ import annotations

from typing import Any

from iobench import exitsites
from iobench.counters import exitreasons, kvm
from iobench.instruments.base import Boot, Instrument, Reading, RunScope, Window


def _kvm_exits(window: Window) -> int:
    assert window.vm is not None
    exits = kvm.sum_vcpu_stats(window.vm.command("query-stats", target="vcpu"))["exits"]
    assert exits is not None  # sum_vcpu_stats raises without it
    return exits


class ExitReasons(Instrument):
    name = "exit-reasons"

    def __init__(self, run: RunScope) -> None:
        self.run = run
        self.tracer: exitreasons.ExitReasons | None = None
        self.address_map = exitsites.AddressMap()  # of the VM being measured
        self.counts: exitreasons.WindowCounts | None = None
        self.kvm_at: list[int] = []  # KVM's exit count right after the count starts and right after it stops
        self.na = self._arm()

    def _arm(self) -> str:
        """Arm the counters where KVM's tracepoints are usable; else say why not."""
        scn, run = self.run.scn, self.run
        if not scn.exit_reasons:
            return "exit reasons off (--no-exit-reasons / exit_reasons = false)"
        if run.accel != "kvm":
            return f"exit reasons: no KVM exits under {run.accel}"
        try:
            # armed once for the run, except for the A/B of their own cost, whose rounds without them
            # must have nothing armed
            self.tracer = exitreasons.ExitReasons(once=scn.exit_reasons != "alternate")
        except exitreasons.ExitReasonsUnavailable as exc:
            run.log(f"exit reasons unavailable here: {exc}")
            return f"exit reasons unavailable here: {exc}"
        for event, text in self.tracer.formats.items():
            run.writer.write_raw(f"tracefs/{event}.format", text)
        for kind, why in self.tracer.sites_na.items():
            run.log(f"exit sites: {kind} not counted: {why}")
        return ""

    def describe(self) -> dict[str, Any]:
        t = self.tracer
        if t is None:
            return {"exit_reasons": self.na, "exit_sites": self.na}
        alternate = self.run.scn.exit_reasons == "alternate"
        return {
            "exit_reasons": (("on in rounds 1, 4, 5, 8... only (exit_reasons = \"alternate\")" if alternate else "on")
                             + ": kvm:kvm_exit by reason per vCPU thread (hist trigger)"
                             + (", handling time to the next kvm_entry (synthetic event)" if t.timed else
                                f"; handling time unavailable: {t.time_na}")),
            "exit_sites": ({kind: ("on: " + exitreasons.SITE_TRIGGERS[kind][0] + " per vCPU thread (hist trigger)")
                            for kind in t.sites} | t.sites_na),
        }

    def active(self, repeat: int) -> exitreasons.ExitReasons | None:
        """The counters for this round's windows: every round, or with exit_reasons = "alternate" half of
        them in ABBA order — on in rounds 1, 4, 5, 8, 9..., off in 2, 3, 6, 7... — so that the rounds without
        them measure the path in the same run, and a drift across the run (the lab's rounds drift) falls
        on both halves alike instead of on whichever comes first."""
        if self.run.scn.exit_reasons == "alternate" and repeat % 4 in (2, 3):
            return None
        return self.tracer

    def after_boot(self, boot: Boot) -> None:
        """QEMU's memory map of this VM (its BARs are placed by now: the guest is up), kept in raw/; it
        names the device and register of every MMIO address and port the vCPUs touch."""
        if (tracer := self.active(boot.repeat)) and tracer.sites:
            text = str(boot.vm.command("human-monitor-command", **{"command-line": "info mtree -f"}))
            self.run.writer.write_raw(f"{boot.tag}/mtree.txt", text)
            self.address_map = exitsites.parse_mtree(text)

    def start(self, window: Window) -> None:
        """Start counting, then read KVM's own exit count: the reference the reasons must add up to."""
        self.counts, self.kvm_at = None, []
        if window.vm is not None and (tracer := self.active(window.repeat)):
            tracer.start()
            self.kvm_at.append(_kvm_exits(window))

    def stop(self, window: Window) -> None:
        """Stop counting, read KVM's exit count again, then read and clear the window's histograms
        (kept in raw/), whatever happened in the window.

        Why KVM's count is read here and not taken from the window's row: each read is a QMP round trip
        (tens of ms in the lab's emulated L1, thousands of exits a second); read in the same order at
        both ends (count, then ask; stop, then ask), the exits the kernel counts before KVM's first
        answer are matched by those it misses before the last, where the row's samples, taken inside
        the count, left a whole round trip of extra exits (coverage up to 1.0135 in the lab)."""
        if window.vm is not None and (tracer := self.active(window.repeat)):
            tracer.pause()
            if window.vm.alive():
                self.kvm_at.append(_kvm_exits(window))
            self.counts, text = tracer.stop()
            self.run.writer.write_raw(f"{window.raw_name}.exitreasons.hist", text)

    def read(self, window: Window, samples: list[Any]) -> Reading:
        if window.vm is None:
            return Reading()
        tracer = self.active(window.repeat)
        if self.counts is None or tracer is None:
            why = self.na or "off in this round (exit_reasons = \"alternate\": rounds 1, 4, 5, 8... only)"
            return Reading(columns={"exit_reasons_total": None, "exit_reasons_kvm_exits": None},
                           na=[f"exit_reasons_total: {why}"]) if window.traffic else Reading()
        cell = window.cell
        ident = {"backend": window.backend, "direction": cell.direction if cell else "", "repeat": window.repeat,
                 "workload": cell.workload.label if cell else "", "phase": window.phase, "attempt": window.attempt,
                 "topology": window.topology}
        vcpus = {t.tid for t in window.facts.get("threads", ()) if t.kind == "vcpu"}
        found = exitreasons.by_reason(self.counts.exits, self.counts.times, vcpus, tracer.names)
        packets = window.facts.get("packets") if window.traffic else None
        per = round(packets, 1) if packets is not None else None
        common = {"run_id": self.run.run_id, **ident, "l1_attempt": self.run.l1_attempt}
        reasons = [{**common, "reason": r.reason, "exits": r.exits, "handled": r.handled,
                    "handling_ns": r.handling_ns, "packets": per} for r in found.reasons]
        sites = [{**common, "kind": s.kind, "access": s.access, "address": f"{s.address:#x}", "device": s.device,
                  "register": s.register, "count": s.count, "packets": per}
                 for s in exitsites.sites(self.counts.sites, vcpus, self.address_map, tracer.site_names)]
        kvm_exits = self.kvm_at[-1] - self.kvm_at[0] if len(self.kvm_at) == 2 else None
        return Reading(columns={"exit_reasons_total": found.total, "exit_reasons_kvm_exits": kvm_exits}
                       if window.traffic else {}, tables={"exit_reasons": reasons, "exit_sites": sites})

    def close(self) -> None:
        if self.tracer is not None:
            self.tracer.close()
