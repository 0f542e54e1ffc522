"""The host's state that sets its speed and noise, read once per run into run.json (`host.state`).

Why: the first questions asked of any virtio/vhost number are which frequency governor and turbo
state, SMT, NUMA layout and kernel command line (isolcpus, nohz_full, mitigations) it ran under,
whether irqbalance moved interrupts, and whether the host is itself a VM; `compare` and the gate cannot
tell a tuned host from an untuned one otherwise. pyperf stores CPU config and frequency with each
result, pbench collects sysinfo around a run; these are the same facts, from the same files.

Every fact is read from /sys, /proc or a tool's own answer; one that cannot be read is missing, with
the reason under `missing` (a VM without cpufreq has no governor: that is said, never guessed).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

CPU = Path("sys/devices/system/cpu")


def read_file(root: Path, rel: str | Path) -> str | None:
    try:
        return (root / rel).read_text().strip()
    except OSError:
        return None


def _bracketed(text: str | None) -> str | None:
    """The selected word of a sysfs choice list: "always [madvise] never" -> "madvise"."""
    if text is None:
        return None
    m = re.search(r"\[([^\]]+)\]", text)
    return m.group(1) if m else text


def cpufreq(root: Path, cpus: list[int]) -> tuple[dict[str, Any], str | None]:
    """Per CPU: governor, scaling driver, energy-performance preference, min/max/current kHz; and
    boost (the cpufreq `boost` switch, or intel_pstate's no_turbo inverted)."""
    per: dict[str, Any] = {}
    for cpu in cpus:
        base = CPU / f"cpu{cpu}" / "cpufreq"
        if not (root / base).is_dir():
            continue
        per[str(cpu)] = {key: read_file(root, base / name) for key, name in (
            ("governor", "scaling_governor"), ("driver", "scaling_driver"),
            ("epp", "energy_performance_preference"), ("min_khz", "scaling_min_freq"),
            ("max_khz", "scaling_max_freq"), ("cur_khz", "scaling_cur_freq"))}
    if not per:
        return {}, "no cpufreq in /sys (a VM, or a kernel without frequency scaling): governor, boost and EPP unknown"
    boost = read_file(root, CPU / "cpufreq" / "boost")
    no_turbo = read_file(root, CPU / "intel_pstate" / "no_turbo")
    out: dict[str, Any] = {"cpus": per,
                           "boost": boost == "1" if boost is not None else (no_turbo == "0" if no_turbo else None)}
    return out, None


def cmdline_options(cmdline: str) -> dict[str, str]:
    """The kernel options that decide where work may run and what it costs."""
    out = {}
    for word in cmdline.split():
        key, _, value = word.partition("=")
        if key in ("isolcpus", "nohz_full", "rcu_nocbs", "irqaffinity", "mitigations", "intel_pstate", "amd_pstate",
                   "processor.max_cstate", "intel_idle.max_cstate", "idle"):
            out[key] = value
    return out


def running(root: Path, comm: str) -> bool | None:
    """Whether a process named `comm` runs (None: /proc unreadable)."""
    proc = root / "proc"
    try:
        entries = list(proc.iterdir())
    except OSError:
        return None
    for entry in entries:
        if entry.name.isdigit() and read_file(proc, f"{entry.name}/comm") == comm:
            return True
    return False


def virtualization(root: Path, flags: list[str]) -> dict[str, Any]:
    """Whether the host is itself a VM: `systemd-detect-virt --vm` where it is installed (its plain answer
    names a container first, which says nothing of the CPU underneath), else the CPUID hypervisor bit as
    /proc/cpuinfo shows it; and the container, if any."""
    hypervisor_bit = "hypervisor" in flags
    if root == Path("/") and shutil.which("systemd-detect-virt"):
        def ask(flag: str) -> str:
            proc = subprocess.run(["systemd-detect-virt", flag], capture_output=True, text=True, check=False)
            return proc.stdout.strip() or "none"

        vm = ask("--vm")
        return {"virtualized": vm != "none" or hypervisor_bit, "what": vm if vm != "none" else None,
                "container": ask("--container"), "cpuid_hypervisor": hypervisor_bit, "how": "systemd-detect-virt --vm"}
    return {"virtualized": hypervisor_bit, "what": None, "container": None, "cpuid_hypervisor": hypervisor_bit,
            "how": "CPUID hypervisor flag (/proc/cpuinfo)"}


def state(root: Path = Path("/"), cpus: list[int] | None = None, flags: list[str] | None = None) -> dict[str, Any]:
    """The host's state now. `root`: where /sys and /proc are (a captured tree in tests); `cpus`: those
    to describe (default: every online CPU); `flags`: CPU 0's /proc/cpuinfo flags."""
    missing: dict[str, str] = {}
    online = read_file(root, CPU / "online")
    cpus = cpus if cpus is not None else cpulist(online or "")
    out: dict[str, Any] = {"cpus_online": online}
    freq, why = cpufreq(root, cpus)
    if why:
        missing["cpufreq"] = why
    out["cpufreq"] = freq or None
    smt_active, smt_control = read_file(root, CPU / "smt" / "active"), read_file(root, CPU / "smt" / "control")
    out["smt"] = {"active": smt_active == "1" if smt_active is not None else None, "control": smt_control}
    if smt_active is None:
        missing["smt"] = "no /sys/devices/system/cpu/smt (kernel without SMT control)"
    nodes = sorted((root / "sys/devices/system/node").glob("node[0-9]*"), key=lambda p: int(p.name[4:]))
    out["numa_nodes"] = {p.name: read_file(root, p.relative_to(root) / "cpulist") for p in nodes} or None
    if not nodes:
        missing["numa_nodes"] = "no /sys/devices/system/node (kernel without NUMA)"
    cmdline = read_file(root, "proc/cmdline")
    out["cmdline"] = cmdline
    out["cmdline_options"] = cmdline_options(cmdline or "")
    out["isolated_cpus"] = read_file(root, CPU / "isolated")
    out["nohz_full_cpus"] = read_file(root, CPU / "nohz_full")
    if out["nohz_full_cpus"] is None:
        missing["nohz_full_cpus"] = "no /sys/devices/system/cpu/nohz_full (kernel without NO_HZ_FULL)"
    out["irqbalance_running"] = running(root, "irqbalance")
    profile = read_file(root, "etc/tuned/active_profile")
    out["tuned_profile"] = profile
    if profile is None:
        missing["tuned_profile"] = "no /etc/tuned/active_profile (tuned not installed or never run)"
    out["thp"] = {"enabled": _bracketed(read_file(root, "sys/kernel/mm/transparent_hugepage/enabled")),
                  "defrag": _bracketed(read_file(root, "sys/kernel/mm/transparent_hugepage/defrag"))}
    params = root / "sys/module/vhost_net/parameters"
    out["vhost_net_params"] = ({p.name: read_file(root, p.relative_to(root)) for p in sorted(params.iterdir())}
                               if params.is_dir() else None)
    if not params.is_dir():
        missing["vhost_net_params"] = "vhost_net is not loaded"
    out["virtualization"] = virtualization(root, flags or [])
    out["loadavg"] = read_file(root, "proc/loadavg")
    out["missing"] = missing
    return out


def cpulist(text: str) -> list[int]:
    """"0-3,8" -> [0, 1, 2, 3, 8]."""
    out: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def governors(st: dict[str, Any]) -> list[str]:
    """The cpufreq governors of the CPUs in a state (sorted, each once; empty without cpufreq)."""
    cpus = ((st.get("cpufreq") or {}).get("cpus") or {}).values()
    return sorted({c.get("governor") for c in cpus} - {None})


def summary(st: dict[str, Any]) -> str:
    """One line for the report's header."""
    freq = st.get("cpufreq") or {}
    govs = governors(st)
    virt = st.get("virtualization", {})
    smt = (st.get("smt") or {}).get("active")
    parts = [f"governor {'/'.join(govs)}" if govs else "no cpufreq",
             f"boost {'on' if freq.get('boost') else 'off'}" if freq.get("boost") is not None else None,
             f"SMT {'on' if smt else 'off'}" if smt is not None else None,
             f"NUMA nodes {len(st['numa_nodes'])}" if st.get("numa_nodes") else None,
             f"isolcpus {st['cmdline_options']['isolcpus']}" if st.get("cmdline_options", {}).get("isolcpus") else None,
             f"irqbalance {'running' if st.get('irqbalance_running') else 'not running'}"
             if st.get("irqbalance_running") is not None else None,
             f"THP {st['thp']['enabled']}" if (st.get("thp") or {}).get("enabled") else None,
             f"virtualized ({virt.get('what') or virt.get('how')})" if virt.get("virtualized") else "bare metal"]
    return ", ".join(p for p in parts if p)


def warnings(st: dict[str, Any]) -> list[tuple[str, str]]:
    """What in this state spoils a measurement, each (name, one sentence with the fix), as pyperf's
    `system show` advises: frequency that moves, interrupts that move, no cores set apart, a host that
    is itself a VM."""
    out = []
    freq = st.get("cpufreq") or {}
    slow = [g for g in governors(st) if g != "performance"]
    if slow:
        out.append(("governor", f"CPU frequency governor {'/'.join(slow)}: the clock moves with load, and with it every "
                                "per-packet CPU figure; set it to performance (`iobench host tune`, or cpupower "
                                "frequency-set -g performance)."))
    if freq.get("boost"):
        out.append(("turbo", "turbo/boost is on: the clock depends on temperature and how many cores are busy; "
                             "turn it off for comparable runs (`iobench host tune`, or echo 0 > "
                             "/sys/devices/system/cpu/cpufreq/boost, or intel_pstate/no_turbo = 1)."))
    if st.get("irqbalance_running"):
        out.append(("irqbalance", "irqbalance is running: it moves interrupts onto the cores being measured mid-run; "
                                  "stop it and steer IRQs away (`iobench host tune --isolate CPUS`)."))
    if not st.get("isolated_cpus") and not (st.get("cmdline_options") or {}).get("isolcpus"):
        out.append(("isolation", "no CPUs are isolated (isolcpus/nohz_full): the vCPU, vhost worker and traffic peer "
                                 "share their cores with everything else; boot with isolcpus= and nohz_full= for the "
                                 "measured cores (or the tuned profile cpu-partitioning)."))
    virt = st.get("virtualization") or {}
    if virt.get("virtualized"):
        what = virt.get("what") or "a hypervisor"
        out.append(("virtualized", f"this host is itself a VM ({what}): its CPUs are shared and may be stolen, so "
                                   "its numbers compare only with runs on the same kind of VM, never with bare metal."))
    return out
