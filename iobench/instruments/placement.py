"""Placement: each VM's threads found by role and pinned (or, with `none`, only found), what the kernel
read back recorded; the traffic peer started on its role's CPUs.

Why an instrument: pinning acts around a VM (after boot: the vCPU, main-loop and vhost threads exist by
then) and around a window (the peer starts inside it), the moments the protocol already has. The
plan is iobench.placement's; the threads found here (boot.facts["roles"]) are what instruments.sched
reads each window.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from iobench import placement
from iobench.counters import proc
from iobench.instruments.base import Boot, Instrument, Reading, RunScope, Window


class Placement(Instrument):
    name = "placement"

    def __init__(self, run: RunScope) -> None:
        self.run = run
        self.spec = placement.parse(run.scn.placement, run.scn.source)
        self.host = placement.host_cpus()

    def describe(self) -> dict[str, Any]:
        host = self.host
        return {"placement": {
            "spec": self.spec.text,
            "host_cpus": {str(c.cpu): {"core": list(c.core), "node": c.node} for c in host.cpus},
            "allowed": placement.cpustr(host.allowed), "isolated": placement.cpustr(host.isolated),
            "plans": {}}}

    def _plan(self, mode: str, roles: list[str], key: str) -> placement.Plan:
        made = placement.plan(self.spec, mode, roles, self.host)
        plans = self.run.meta.setdefault("placement", {}).setdefault("plans", {})
        if key not in plans:
            plans[key] = made.as_dict()
            self.run.log(f"placement {key}: " + "; ".join(made.why) + (
                "" if mode == "none" else " -> " + ", ".join(f"{r} {placement.cpustr(c)}" for r, c in made.cpus.items())))
        return made

    def after_boot(self, boot: Boot) -> None:
        """Find the VM's threads by role, pin them as this round's plan says, read every affinity back."""
        mode = self.spec.mode_in(boot.repeat)
        found = placement.vm_threads(boot.vm)
        if boot.switch is not None:  # the poll-mode switch: its poll core and helpers, one role
            found["pmd"] = [(t.tid, t.comm) for t in boot.switch.threads()]
        if boot.ovs is not None:  # the topology's Open vSwitch: ovs-vswitchd's threads, one role
            found["ovs"] = [(t.tid, t.comm) for t in boot.ovs.threads()]
        roles = placement.roles_for(sum(r.startswith("vcpu") for r in found), "vhost" in found, "iothread" in found,
                                    pmd="pmd" in found, ovs="ovs" in found)
        made = self._plan(mode, roles, f"{boot.backend.name}:{mode}")
        pinned = placement.pin_all(found, made)
        wrong = [p for p in pinned if p.wrong]
        for p in wrong:
            self.run.log(f"{boot.tag}: placement of {p.role} (thread {p.tid}) asked {p.requested}, read back "
                         f"{p.read_back}" + (f": {p.error}" if p.error else ""))
        boot.facts["roles"] = found
        boot.facts["placement"] = {"mode": mode, "plan": made, "pinned": pinned, "wrong": wrong}
        self.run.writer.write_raw(f"{boot.tag}/placement.json", {
            "mode": mode, "plan": made.as_dict(), "threads": [asdict(p) for p in pinned]})

    def _window_plan(self, window: Window) -> tuple[str, placement.Plan | None]:
        if window.boot is not None:
            facts = window.boot.facts.get("placement")
            return (facts["mode"], facts["plan"]) if facts else ("none", None)
        mode = self.spec.mode_in(window.repeat)  # native: the server stands in for the guest's vCPU
        return mode, self._plan(mode, ["vcpu0", "peer"], f"native:{mode}")

    def start(self, window: Window) -> None:
        """The peer's CPUs for the runner to start it on; in a native window, the server pinned to vCPU 0's."""
        mode, made = self._window_plan(window)
        window.facts["placement_mode"] = mode
        window.peer_cpus = made.for_role("peer") if made else None
        if window.vm is None and made is not None:
            server = [placement.pin("server", t.tid, t.comm, made.for_role("vcpu0"))
                      for t in proc.read_threads(window.pid, vhost_tids=())]
            window.facts["native_pinned"] = server

    def read(self, window: Window, samples: list[Any]) -> Reading:
        wrong = window.boot.facts.get("placement", {}).get("wrong", []) if window.boot else [
            p for p in window.facts.get("native_pinned", []) if p.wrong]
        return Reading(columns={"placement": window.facts.get("placement_mode", "none")},
                       na=[f"placement: {p.role} thread {p.tid} asked {p.requested}, read back {p.read_back}"
                           + (f" ({p.error})" if p.error else "") for p in wrong])
