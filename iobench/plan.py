"""`iobench plan`: what a scenario would run, without running it.

Prints the cells in run order and the exact QEMU and iperf3 command lines, with
placeholders only where a value exists at run time alone (run id, runtime dir).
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

from iobench import accel, backends, guest, switch, topologies
from iobench.errors import UserError
from iobench.runner import NATIVE, select_backends, traffic_spec, vm_config
from iobench.scenario import Scenario
from iobench.topologies import TOPOLOGIES
from iobench.topology import GUEST_MAC, AddressPlan, support_problem
from iobench.traffic import client_argv
from iobench.vm import build_argv


def _planned_accel(scn: Scenario) -> tuple[str, str]:
    if scn.accel == "lab":
        return "kvm", "accel = lab: the matrix runs with KVM inside the lab VM (iobench lab run)"
    if scn.accel != "auto":
        return scn.accel, f"asked for with accel = {scn.accel}"
    cached = accel.cached_probe()
    if cached is None:
        return "tcg", "auto: decided at run time by booting the guest under KVM (assumed tcg here)"
    return ("kvm" if cached["kvm_usable"] else "tcg"), f"auto, from the cached probe: {cached['reason']}"


def describe(scn: Scenario) -> str:
    accel_name, why = _planned_accel(scn)
    chosen_topologies, topologies_unavailable = topologies.resolve(scn.topology, support_problem)
    scn = replace(scn, topology=chosen_topologies)
    try:
        chosen, unavailable = select_backends(scn.backends, accel_name, scn.variants, tuple(scn.topology))
    except UserError as exc:
        raise UserError(f"the plan cannot run here: {exc}") from exc
    images = guest.cached_images()
    image = images[-1] if images else guest.GuestImage(Path("<guest image>"), Path("<guest image>/vmlinux"),
                                                        Path("<guest image>/initramfs.cpio"), {})
    plan = AddressPlan.for_run("<run-id>")
    lines = [f"scenario: {scn.source}", f"accel: {accel_name} ({why})"]
    lines += [f"{n}: unavailable: {r}" for n, r in unavailable.items()]
    lines += [f"topology {n}: unavailable: {r}" for n, r in topologies_unavailable.items()]
    n_cells = scn.repeats * len(chosen) * len(scn.topology) * scn.cells_per_backend_round
    rr = sum(1 for w in scn.workloads if w.kind == "rr")
    one_way = len(scn.workloads) - rr
    per_round = " + ".join(([f"{one_way} workloads x {len(scn.directions)} directions"] if one_way else [])
                           + ([f"{rr} request/response workloads"] if rr else []))
    over = f" x {len(scn.topology)} topologies ({', '.join(scn.topology)})" if len(scn.topology) > 1 else ""
    if one_way and rr:
        per_round = f"({per_round})"
    lines.append(f"cells: {n_cells} = {scn.repeats} rounds x {len(chosen)} backends{over} x {per_round}; "
                 f"each VM boot also has a {scn.duration_s} s idle window")
    for kind in scn.topology:
        lines.append(f"topology {kind}: {TOPOLOGIES[kind]}" + (
            f" (QEMU gets -netdev tap,id=n0,fd=<the macvtap's device> and the device mac={GUEST_MAC} in place of the "
            "tap by name shown below)" if kind == "macvtap" else ""))
    for name in chosen:
        lines.append(f"\n[{name}]")
        if name == NATIVE:
            servers = " and ".join(sorted({"sockperf server" if w.kind == "rr" else "iperf3 -s" for w in scn.workloads}))
            lines.append(f"  server: {servers} "
                         "(in the peer namespace iobench-<run-id>-peer, over veth)")
            server = "<peer address>"
        else:
            backend = backends.catalog(scn.variants)[name]
            socket = "<switch-dir>/vhost-user.sock" if backend.switch else None
            cfg = vm_config(scn, backend, accel_name, image, "ibt<run-id>0",
                            f"{plan.guest}/{plan.prefixlen}", "iobench-<run-id>", socket=socket)
            if backend.switch:
                lines.append("  switch: " + shlex.join(switch.argv(Path("<switch-dir>"), "ib<run-id's last 6>",
                                                                   "ibt<run-id>0", "<cpus>"))
                             + " (in iobench-<run-id>, on the tap; the placement pins it as `pmd`)")
            lines.append("  qemu: " + shlex.join(build_argv(cfg, Path("<vm-runtime-dir>"))))
            server = "<guest address>"
        for w in scn.workloads:
            for d in scn.cell_directions(w):
                lines.append(f"  {w.label} {d}: " + shlex.join(client_argv(traffic_spec(server, d, scn, w))))
    lines.append(f"\nround order: {', '.join(chosen)} (repeated {scn.repeats} times)")
    return "\n".join(lines)
