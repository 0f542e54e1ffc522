"""`iobench doctor`: one screen on what this host can run and why.

Every line is a check that was performed, not a guess: /dev/kvm is probed by
booting the guest (the cached verdict is shown if there is one).
"""

from __future__ import annotations

import os
from pathlib import Path

from iobench import accel, backends, guest, hostinfo, hoststate, stale, switch, topology
from iobench.check import Check


def _cached_lab_probe() -> bool | None:
    import json

    from iobench import lab

    try:
        cached = json.loads(lab.probe_file().read_text())
    except (OSError, ValueError):
        return None
    return bool(cached.get("usable")) if cached.get("qemu") == hostinfo.qemu_version() else None


def checks(probe: bool = True, out_roots: list[Path] | None = None) -> list[Check]:
    out = []
    q, i = hostinfo.qemu_version(), hostinfo.iperf3_version()
    out.append(Check("qemu", q is not None, q or "qemu-system-x86_64 not found: apt-get install qemu-system-x86"))
    out.append(Check("iperf3", i is not None, i or "iperf3 not found: apt-get install iperf3"))
    ok, why = topology.can_create_netns()
    out.append(Check("privileges", ok, why))
    found = stale.find(out_roots or [Path("results")])
    abandoned = [f.describe() for f in found if not f.in_use]
    running = [f for f in found if f.in_use]
    out.append(Check("leftovers", not abandoned,
                     ("left behind by a killed run: " + "; ".join(abandoned) + " - `iobench clean` removes them")
                     if abandoned else "nothing left behind by earlier runs"
                     + (f" ({len(running)} object(s) of a running iobench)" if running else "")))
    images = guest.cached_images()
    out.append(Check("guest image", bool(images),
                     f"{len(images)} cached under {guest.cache_root() / 'images'}" + (
                         f", newest kernel {images[-1].kernel_release}" if images else " (built on first run)")))
    problem = accel.kvm_device_problem()
    if problem:
        out.append(Check("kvm", False, problem))
    else:
        cached = accel.cached_probe()
        if cached is None and probe and images and q:
            usable, reason = accel.probe_kvm(images[-1])
        elif cached is not None:
            usable, reason = bool(cached["kvm_usable"]), str(cached["reason"]) + " (cached probe)"
        else:
            usable, reason = False, "/dev/kvm present; not probed yet (needs QEMU and a guest image)"
        out.append(Check("kvm", usable, ("/dev/kvm present and " if usable else "") + reason))
    kvm_ok = out[-1].ok
    if kvm_ok:
        auto = "will use kvm"
    else:
        lab_cached = _cached_lab_probe()
        if lab_cached is None:
            auto = ("will probe the nested lab on the first run (iobench lab doctor checks it now); "
                    "if it works, the lab (real KVM exits), else tcg (trap counts)")
        elif lab_cached:
            auto = "will use the nested lab: real KVM exits and vhost-net inside an L1 VM (iobench lab doctor)"
        else:
            auto = "will use tcg (trap counts, exit_source=tcg-traps): neither KVM nor the nested lab works here"
    out.append(Check("accel auto", True, auto))
    vhost = backends.unavailable_reason(backends.VHOST, "kvm" if kvm_ok else "tcg")
    out.append(Check("vhost-net", vhost is None, "/dev/vhost-net usable" if vhost is None else vhost))
    vhost_user = backends.unavailable_reason(backends.VHOST_USER, "kvm" if kvm_ok else "tcg")
    out.append(Check("vhost-user", vhost_user is None,
                     f"{switch.TESTPMD} and its vhost, tap and mempool plugins installed: the vhost-user backend can "
                     "run (over direct or bridge; its poll core spins while the VM runs)" if vhost_user is None
                     else vhost_user))
    out.append(Check("netns", os.path.isdir("/var/run/netns") or os.geteuid() == 0, "named namespaces under /var/run/netns"))
    return out + measurement_checks(hoststate.state(flags=hostinfo.cpuinfo().get("flags", "").split()))


def measurement_checks(st: dict[str, object]) -> list[Check]:
    """What in the host's state spoils a measurement: a warning each, with the fix; one ok line otherwise."""
    found = hoststate.warnings(st)
    if not found:
        return [Check("host state", True, "nothing that spoils a measurement: " + hoststate.summary(st))]
    return [Check(f"host: {name}", False, sentence) for name, sentence in found]
