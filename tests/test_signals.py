"""Ctrl-C, SIGTERM and a closed terminal (SIGHUP) in the middle of a real run: everything goes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyroute2 import netns

from iobench import ovs, switch

pytestmark = pytest.mark.slow


def processes_mentioning(text: str) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if text.encode() in (p / "cmdline").read_bytes():
                    found.append(int(p.name))
            except OSError:
                pass
    return found


@pytest.mark.parametrize(("sig", "code", "topology", "backend"), [
    (signal.SIGINT, 130, "bridge", "e1000"), (signal.SIGTERM, 143, "macvtap", "e1000"),
    pytest.param(signal.SIGINT, 130, "ovs-netdev", "e1000",
                 marks=pytest.mark.skipif(ovs.problem() is not None, reason=f"{ovs.problem()}")),
    (signal.SIGHUP, 129, "direct", "vhost-user" if switch.problem() is None else "e1000")])
def test_signal_mid_traffic_cleans_up_and_records(guest_image, tmp_path: Path, sig: int, code: int,
                                                  topology: str, backend: str) -> None:
    """Ctrl-C is sent over the bridge topology and over a private Open vSwitch, SIGTERM over macvtap: their
    bridge, OVS daemons and directory, macvtap, veths and peer namespaces go too. A closed terminal hits a
    vhost-user run: its switch and its directory go."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "iobench", "run", "--accel", "tcg", "--backend", backend, "--direction", "rx",
         "--duration", "6", "--repeats", "1", "--topology", topology, "--out", str(tmp_path)],
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # wait until traffic flows
        if "s of traffic" in line or time.monotonic() > deadline:
            break
    time.sleep(2)
    os.kill(proc.pid, sig)
    proc.stderr.read()
    assert proc.wait(timeout=60) == code
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["interrupted_by"] == signal.Signals(sig).name
    run_id = meta["run_id"]
    assert not [n for n in netns.listnetns() if run_id in n]
    assert not processes_mentioning(f"ibt{run_id[-8:]}")  # no QEMU (or testpmd) holding the run's tap
    assert not processes_mentioning(f"iobench-switch-{run_id}") and not list(Path("/tmp").glob(f"iobench-switch-{run_id}-*"))
    assert not processes_mentioning(f"iobench-ovs-{run_id}") and not list(Path("/tmp").glob(f"iobench-ovs-{run_id}-*"))
    assert not [i for i in os.listdir("/sys/class/net") if i.endswith((f"{run_id[-8:]}a", f"{run_id[-8:]}b"))
                or i == f"ibb{run_id[-8:]}"]  # no bridge or veth of the run's left in the root namespace
    assert not list(tmp_path.glob(".*partial"))
