"""Shared fixtures. Tests that need QEMU, root or apt run for real; where the
machine cannot, they skip with the reason printed (pytest -ra)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def host_problem() -> str | None:
    """Why this machine cannot boot guests into a namespace (None when it can)."""
    if os.geteuid() != 0:
        return "not root: namespaces and taps need CAP_NET_ADMIN"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun missing"
    for tool in ("qemu-system-x86_64", "iperf3", "apt-get", "dpkg-deb", "cpio"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (run ./setup.sh)"
    return None


@pytest.fixture(scope="session")
def vm_host() -> None:
    problem = host_problem()
    if problem:
        pytest.skip(f"cannot boot guests here: {problem}")


@pytest.fixture(scope="session")
def guest_image(vm_host: None):
    from iobench import guest

    return guest.build(log=lambda m: None)


@pytest.fixture
def data() -> Path:
    return DATA
