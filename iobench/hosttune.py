"""`iobench host tune` / `iobench host reset`: set what `iobench doctor` warns about, reversibly.

As `pyperf system tune` does: the previous state is saved first (/run/iobench/host-tune.json, gone
at reboot like the settings themselves), then every CPU's frequency governor is set to performance,
turbo/boost is switched off, irqbalance is stopped, and every IRQ that accepts it is steered to the
housekeeping CPUs (`--cpus`: the ones to keep free of interrupts, default every CPU but the first).
`reset` restores exactly what was saved and removes the file. Each setting the kernel refuses is
listed with its reason; nothing is guessed. Both need root.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iobench import hoststate, stale
from iobench.errors import UserError

STATE = stale.LOCK_DIR / "host-tune.json"
CPU = Path("sys/devices/system/cpu")
Service = Callable[[str, str], bool]  # (action, unit) -> whether systemctl did it


def systemctl(action: str, unit: str) -> bool:
    return subprocess.run(["systemctl", action, unit], capture_output=True, check=False).returncode == 0


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise UserError(f"iobench host {what} changes the host's CPU frequency and interrupt settings: run it as root.")


def _write(path: Path, value: str, refused: list[str]) -> bool:
    try:
        path.write_text(value + "\n")
        return True
    except OSError as exc:
        refused.append(f"{path}: {exc.strerror}")
        return False


def _cpus_text(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus)


def tune(root: Path = Path("/"), state_file: Path = STATE, isolate: list[int] | None = None,
         service: Service = systemctl, dry_run: bool = False) -> dict[str, Any]:
    """Save the host's state, then tune it; returns the record saved (its `changed` says what was set,
    `refused` what the kernel would not take). `isolate`: CPUs to keep free of IRQs."""
    _need_root("tune")
    if state_file.exists():
        raise UserError(f"the host is already tuned ({state_file}): run iobench host reset first.")
    st = hoststate.state(root)
    cpus = hoststate.cpulist(st.get("cpus_online") or "0")
    isolate = isolate if isolate is not None else cpus[1:]
    housekeeping = [c for c in cpus if c not in isolate] or cpus[:1]
    saved: dict[str, Any] = {"at": time.time(), "root": str(root), "governor": {}, "boost": None, "no_turbo": None,
                             "irqbalance_was_running": bool(st.get("irqbalance_running")), "irq_affinity": {},
                             "housekeeping_cpus": housekeeping, "changed": [], "refused": []}
    for cpu, facts in ((st.get("cpufreq") or {}).get("cpus") or {}).items():
        if facts.get("governor") and facts["governor"] != "performance":
            saved["governor"][cpu] = facts["governor"]
    boost, no_turbo = root / CPU / "cpufreq/boost", root / CPU / "intel_pstate/no_turbo"
    if boost.exists() and boost.read_text().strip() == "1":
        saved["boost"] = "1"
    if no_turbo.exists() and no_turbo.read_text().strip() == "0":
        saved["no_turbo"] = "0"
    irq_dir = root / "proc/irq"
    for irq in sorted((p for p in irq_dir.glob("[0-9]*") if p.is_dir()), key=lambda p: int(p.name)):
        try:
            current: str | None = (irq / "smp_affinity_list").read_text().strip()
        except OSError as exc:  # an IRQ whose affinity cannot be read is left alone, and said
            saved["refused"].append(f"{irq / 'smp_affinity_list'}: {exc.strerror}")
            current = None
        if current is not None and current != _cpus_text(housekeeping):
            saved["irq_affinity"][irq.name] = current
    if dry_run:
        return saved
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(saved, indent=1) + "\n")  # saved before anything changes
    refused: list[str] = saved["refused"]
    for cpu in saved["governor"]:
        if _write(root / CPU / f"cpu{cpu}/cpufreq/scaling_governor", "performance", refused):
            saved["changed"].append(f"cpu{cpu} governor -> performance")
    if saved["boost"] and _write(boost, "0", refused):
        saved["changed"].append("boost -> off")
    if saved["no_turbo"] and _write(no_turbo, "1", refused):
        saved["changed"].append("intel_pstate no_turbo -> 1")
    if saved["irqbalance_was_running"]:
        (saved["changed"] if service("stop", "irqbalance") else refused).append("irqbalance stopped")
    moved = [irq for irq in saved["irq_affinity"]
             if _write(irq_dir / irq / "smp_affinity_list", _cpus_text(housekeeping), refused)]
    if moved:
        saved["changed"].append(f"{len(moved)} IRQ(s) -> CPU(s) {_cpus_text(housekeeping)}")
    state_file.write_text(json.dumps(saved, indent=1) + "\n")
    return saved


def reset(state_file: Path = STATE, service: Service = systemctl) -> dict[str, Any]:
    """Restore what `tune` saved and remove its file; returns what was restored and what was refused."""
    _need_root("reset")
    try:
        saved: dict[str, Any] = json.loads(state_file.read_text())
    except FileNotFoundError as exc:
        raise UserError(f"nothing to reset: iobench host tune was not run (no {state_file}).") from exc
    root = Path(saved["root"])
    done: list[str] = []
    refused: list[str] = []
    for cpu, governor in saved["governor"].items():
        if _write(root / CPU / f"cpu{cpu}/cpufreq/scaling_governor", governor, refused):
            done.append(f"cpu{cpu} governor -> {governor}")
    if saved.get("boost") and _write(root / CPU / "cpufreq/boost", saved["boost"], refused):
        done.append("boost -> on")
    if saved.get("no_turbo") and _write(root / CPU / "intel_pstate/no_turbo", saved["no_turbo"], refused):
        done.append("intel_pstate no_turbo -> 0")
    restored = [irq for irq, cpus in saved["irq_affinity"].items()
                if _write(root / "proc/irq" / irq / "smp_affinity_list", cpus, refused)]
    if restored:
        done.append(f"{len(restored)} IRQ affinities restored")
    if saved.get("irqbalance_was_running"):
        (done if service("start", "irqbalance") else refused).append("irqbalance started")
    state_file.unlink()
    return {"restored": done, "refused": refused}
