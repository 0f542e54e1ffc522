"""Stale state and concurrency, with real processes: an iobench killed outright (SIGKILL)
leaves its QEMU, iperf3, namespace and staging dir behind; `iobench doctor` finds them and
`iobench clean` removes them. Two runs at once both complete, and `iobench clean` during
them leaves them alone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyroute2 import netns

from iobench import stale
from iobench.cli import main

pytestmark = pytest.mark.slow


def start_run(out: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "iobench", "run", "--accel", "tcg", "--backend", "e1000", "--repeats", "1",
            "--out", str(out), *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(proc: subprocess.Popen[str], text: str, timeout: float = 120) -> list[str]:
    """Read the run's progress lines until one contains `text`."""
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"never saw {text!r}: {''.join(seen)[-2000:]}")


def our_netns() -> list[str]:
    return [n for n in netns.listnetns() if n.startswith("iobench-")]


def test_killed_run_is_found_by_doctor_and_removed_by_clean(guest_image, tmp_path, capsys, qemu_pids) -> None:
    out = tmp_path / "results"
    before = qemu_pids()
    # 8 s windows: the traffic still runs 1 s in (and the idle window before it is no longer than that)
    proc = start_run(out, "--direction", "rx", "--duration", "8", "--omit", "0")
    wait_for(proc, "s of traffic")
    time.sleep(1)
    proc.kill()  # SIGKILL: no handler runs, nothing is cleaned up by the run itself
    proc.wait()
    left = [item for item in stale.find([out]) if not item.in_use]
    assert {item.kind for item in left} == {"netns", "vm-dir", "staging-dir"}
    assert qemu_pids() - before  # QEMU and the iperf3 client outlived iobench
    namespace = next(item.name for item in left if item.kind == "netns")

    assert main(["doctor", "--no-probe", "--out", str(out)]) == 0
    doctor_out = capsys.readouterr().out
    assert "left behind by a killed run" in doctor_out and namespace in doctor_out

    assert main(["clean", "--out", str(out)]) == 0
    cleaned = capsys.readouterr().out
    assert re.search(r"killed (QEMU|qemu-system-x86) \d+", cleaned) and re.search(r"killed iperf3 \d+", cleaned)
    assert f"removed namespace {namespace}" in cleaned
    assert stale.find([out]) == []
    assert qemu_pids() <= before
    assert namespace not in our_netns()
    assert list(out.iterdir()) == []  # the unpublished staging dir is gone too
    assert main(["doctor", "--no-probe", "--out", str(out)]) == 0
    assert "nothing left behind" in capsys.readouterr().out


def test_two_runs_at_once_both_complete_and_clean_leaves_them_alone(guest_image, tmp_path, capsys, qemu_pids) -> None:
    out = tmp_path / "results"
    before = qemu_pids()
    runs = [start_run(out, "--duration", "3", "--omit", "1") for _ in range(2)]
    for proc in runs:
        wait_for(proc, "READY in", timeout=180)
    namespaces = our_netns()
    assert len(namespaces) >= 2  # one per run, by run id
    assert main(["clean", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "nothing abandoned to remove" in said and "left alone" in said
    for proc in runs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    dirs = sorted(p for p in out.iterdir() if p.is_dir())  # and the history file both runs added to
    assert len(dirs) == 2 and all(not p.name.startswith(".") for p in dirs)
    metas = [json.loads((d / "run.json").read_text()) for d in dirs]
    assert all(m["status"] == "ok" for m in metas)
    assert metas[0]["run_id"] != metas[1]["run_id"]
    vm_dirs = [json.loads((d / "raw/e1000/r1/qemu-cmdline.json").read_text()) for d in dirs]
    assert vm_dirs[0] != vm_dirs[1]  # distinct runtime dirs (QMP socket, pidfile, logs)
    assert stale.find([out]) == [] and qemu_pids() <= before
    assert not our_netns() and not [i for i in os.listdir("/sys/class/net") if i.startswith("ib")]
