"""Choosing the accelerator: `kvm` only when a guest really boots under it.

Why a probe and not a check for /dev/kvm: a nested or paravirtual KVM can open
/dev/kvm and still be unable to boot a stock Linux guest in useful time (as on
this project's own machines). `auto` boots the guest under KVM with a short
timeout and falls back to TCG with the reason; the answer is cached per host
kernel and QEMU version, because neither changes without a reboot or upgrade.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass

from iobench import guest, hostinfo
from iobench.errors import CellFailed, UserError
from iobench.vm import VM, VMConfig

PROBE_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class AccelChoice:
    accel: str
    requested: str
    reason: str

    @property
    def exit_source(self) -> str:
        return "kvm-stats" if self.accel == "kvm" else "tcg-traps"


def kvm_device_problem() -> str | None:
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm is missing (no hardware virtualization here: use --accel tcg or the nested lab)"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not readable and writable by this user (add it to the kvm group or run as root)"
    return None


def _cache_file() -> str:
    return str(guest.cache_root() / f"accel-probe-{platform.release()}.json")


def cached_probe() -> dict | None:
    try:
        with open(_cache_file()) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if data.get("qemu") != hostinfo.qemu_version():
        return None
    return data


def probe_kvm(image: guest.GuestImage) -> tuple[bool, str]:
    """Boot the guest under KVM (no NIC; init stops after loading modules) and cache the verdict."""
    problem = kvm_device_problem()
    if problem:
        return False, problem
    cfg = VMConfig(name="kvm-probe", accel="kvm", image=image, nic_args=(), guest_cidr="198.18.0.2/24",
                   cmdline_extra=("iobench.probe=1",))
    with VM(cfg) as vm:
        try:
            vm.launch(boot_timeout=PROBE_TIMEOUT_S)
            ok, why = True, f"a guest reached READY under KVM in {vm.boot_seconds:.1f} s"
        except CellFailed as exc:
            ok = False
            why = (f"/dev/kvm exists but cannot run the guest: {exc.args[0]} "
                   "(a nested or paravirtual KVM too slow for a Linux guest)")
    guest.cache_root().mkdir(parents=True, exist_ok=True)
    with open(_cache_file(), "w") as f:
        json.dump({"kvm_usable": ok, "reason": why, "qemu": hostinfo.qemu_version()}, f)
    return ok, why


def choose(requested: str, image: guest.GuestImage, log=print) -> AccelChoice:
    """Resolve --accel auto|kvm|tcg. Raises UserError when `kvm` is asked for and impossible."""
    if requested == "tcg":
        return AccelChoice("tcg", requested, "asked for with --accel tcg")
    if requested == "kvm":
        problem = kvm_device_problem()
        if problem:
            raise UserError(f"--accel kvm is impossible: {problem}.")
        return AccelChoice("kvm", requested, "asked for with --accel kvm")
    if requested != "auto":
        raise UserError(f"unknown accelerator {requested!r}: use auto, kvm or tcg.")
    cached = cached_probe()
    if cached is None:
        log("probing KVM: booting the guest under /dev/kvm with a "
            f"{PROBE_TIMEOUT_S:.0f} s timeout (cached afterwards)")
        ok, why = probe_kvm(image)
    else:
        ok, why = bool(cached["kvm_usable"]), str(cached["reason"]) + " (cached probe)"
    if ok:
        return AccelChoice("kvm", requested, why)
    return AccelChoice("tcg", requested, f"TCG because {why}")


def as_dict(choice: AccelChoice) -> dict[str, str]:
    return {**asdict(choice), "exit_source": choice.exit_source}
