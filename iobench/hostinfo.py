"""Facts about the host that make a results directory self-describing (docs/architecture.md, "Beyond one host")."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path

from iobench import hoststate


def version_line(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if lines else None


def qemu_version() -> str | None:
    return version_line(["qemu-system-x86_64", "--version"])


def iperf3_version() -> str | None:
    return version_line(["iperf3", "--version"])


def cpuinfo() -> dict[str, str]:
    """Model name and MHz of the first CPU in /proc/cpuinfo."""
    out: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "cpu MHz", "flags") and key not in out:
            out[key] = value.strip()
        if not line.strip() and out:
            break
    return out


def cpu_hz(host: dict[str, object]) -> float | None:
    """CPU 0's clock as /proc/cpuinfo showed it when `describe()` ran, in Hz (None where it shows no
    MHz). It is the current clock, not a nominal one: figures computed with it are estimates."""
    mhz = host.get("cpu_mhz")
    return float(mhz) * 1e6 if isinstance(mhz, (int, float)) else None


def describe() -> dict[str, object]:
    info = cpuinfo()
    flags = info.get("flags", "").split()
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "machine": platform.machine(),
        "cpu_model": info.get("model name"),
        "cpu_mhz": float(info["cpu MHz"]) if "cpu MHz" in info else None,
        "cpu_virt_flags": [f for f in ("vmx", "svm", "hypervisor") if f in flags],
        "cores": os.cpu_count(),
        "qemu": qemu_version(),
        "iperf3": iperf3_version(),
        "python": platform.python_version(),
        "state": hoststate.state(flags=flags),  # governor, boost, SMT, NUMA, cmdline, THP, virtualized...
    }
