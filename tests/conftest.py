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
    """QEMU and iperf3 processes now on the machine (a test compares before and after).
    Zombies are left out: killed, holding nothing, waiting for init to reap them (a process
    whose parent - a SIGKILLed iobench - is gone is reaped by PID 1, not at once)."""
    out = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            comm, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
            if comm in ("qemu-system-x86", "iperf3", "dpdk-testpmd") and state != "Z":
                out.add(int(p.name))
    return out


@pytest.fixture(scope="session")
def tcg_run(guest_image, tmp_path_factory: pytest.TempPathFactory):
    """One real run under TCG (e1000, virtio, native; both directions; placement auto), shared by the
    end-to-end checks and the notebooks. Returns (report, QEMU pids before, VM dirs before)."""
    from iobench.runner import run
    from iobench.scenario import Scenario

    before = _qemu_pids()
    vm_dirs_before = set(Path("/tmp").glob("iobench-vm-*"))
    scn = Scenario(backends=("e1000", "virtio", "native"), accel="tcg", duration_s=3, omit_s=1, repeats=1,
                   placement="auto")
    report = run(scn, tmp_path_factory.mktemp("results"), log=lambda m: None)
    return report, before, vm_dirs_before


@pytest.fixture
def qemu_pids():
    """The function listing QEMU and iperf3 pids now running."""
    return _qemu_pids


def iobench_objects() -> set[str]:
    """Everything of iobench's on this machine: namespaces, interfaces, QEMU/iperf3
    processes, VM runtime dirs, ownership locks and the copy-trace module."""
    import tempfile

    from pyroute2 import netns

    from iobench import kmod, stale

    objs = {f"netns {n}" for n in netns.listnetns() if n.startswith("iobench-")}
    objs |= {f"interface {i}" for i in os.listdir("/sys/class/net") if i.startswith(("ibt", "ibv"))}
    objs |= {f"process {pid}" for pid in _qemu_pids()}
    objs |= {f"dir {p}" for p in Path(tempfile.gettempdir()).glob("iobench-vm-*")}
    objs |= {f"dir {p}" for p in Path(tempfile.gettempdir()).glob(f"{stale.SWITCH_DIR_PREFIX}*")}
    lock_dir = Path("/run/iobench")
    objs |= {f"lock {p}" for p in lock_dir.glob("*.lock")} if lock_dir.is_dir() else set()
    objs |= {f"kernel module {stale.COPYTRACE_MODULE}"} if kmod.loaded(stale.COPYTRACE_MODULE) else set()
    return objs


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEFORE] = iobench_objects()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite's last check: nothing the tests started is left (the issue's 'after the whole
    test suite, ip netns list, the process table and /sys/class/net show nothing of iobench's')."""
    left = sorted(iobench_objects() - session.config.stash.get(_BEFORE, set()))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write("\n")
    if left:
        if reporter:
            reporter.write_line(f"LEFT BEHIND by the tests: {'; '.join(left)}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter:
        reporter.write_line("leftover check: no iobench namespace, interface, QEMU/iperf3 process, runtime dir "
                            "or lock is left after the suite")


_BEFORE = pytest.StashKey[set[str]]()
