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


def _qemu_pids() -> set[int]:
    """QEMU and iperf3 processes now on the machine (a test compares before and after)."""
    out = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() in ("qemu-system-x86", "iperf3"):
                    out.add(int(p.name))
            except OSError:
                pass
    return out


@pytest.fixture(scope="session")
def tcg_run(guest_image, tmp_path_factory: pytest.TempPathFactory):
    """One real run under TCG (e1000, virtio, native; both directions), shared by the
    end-to-end checks and the notebooks. Returns (report, QEMU pids before, VM dirs before)."""
    from iobench.runner import run
    from iobench.scenario import Scenario

    before = _qemu_pids()
    vm_dirs_before = set(Path("/tmp").glob("iobench-vm-*"))
    scn = Scenario(backends=("e1000", "virtio", "native"), accel="tcg", duration_s=3, omit_s=1, repeats=1)
    report = run(scn, tmp_path_factory.mktemp("results"), log=lambda m: None)
    return report, before, vm_dirs_before


@pytest.fixture
def qemu_pids():
    """The function listing QEMU and iperf3 pids now running."""
    return _qemu_pids
