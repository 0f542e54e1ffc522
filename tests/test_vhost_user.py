"""The vhost-user backend: its QEMU arguments, where it can run, and its switch (DPDK testpmd) started,
read and stopped for real, with the bad cases provoked: testpmd missing, its socket never appearing,
the poller dying mid-window; nothing of it left behind after success, failure or a signal."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from iobench import backends, stale, switch
from iobench.errors import UserError
from iobench.runner import select_backends

needs_testpmd = pytest.mark.skipif(switch.problem() is not None, reason=f"vhost-user cannot run here: {switch.problem()}")


def test_qemu_connects_to_the_switch_with_shared_memory_and_no_offloads() -> None:
    nic = backends.nic_args(backends.VHOST_USER, "tap0", socket="/run/x/vhost-user.sock")
    assert nic[:4] == ("-chardev", "socket,id=vu0,path=/run/x/vhost-user.sock,reconnect=1",
                       "-netdev", "vhost-user,id=n0,chardev=vu0")
    assert nic[5].startswith("virtio-net-pci,netdev=n0,romfile=,csum=off,guest_csum=off")
    assert backends.shared_memory_args(backends.VHOST_USER, 256) == (
        "-object", "memory-backend-memfd,id=mem0,size=256M,share=on", "-machine", "memory-backend=mem0")
    assert backends.shared_memory_args(backends.VIRTIO, 256) == ()
    # its like-for-like twin on vhost-net: the same device, in-kernel datapath
    twin = backends.BACKENDS["vhost-nooffload"]
    assert twin.vhost and twin.base == "vhost" and twin.device_props == backends.VHOST_USER.device_props
    assert "vhost=on" in backends.nic_args(twin, "tap0")[1] and ",csum=off" in backends.nic_args(twin, "tap0")[3]


def test_where_vhost_user_cannot_run_it_says_why(monkeypatch) -> None:
    over_macvtap = backends.unavailable_reason(backends.VHOST_USER, "tcg", ("direct", "macvtap"))
    assert over_macvtap is not None and "direct or bridge" in over_macvtap
    monkeypatch.setattr(switch.shutil, "which", lambda name: None)
    missing = backends.unavailable_reason(backends.VHOST_USER, "tcg")
    assert missing == "dpdk-testpmd is not installed (apt-get install dpdk-dev, or run the README's setup command)"
    chosen, unavailable = select_backends(("all",), "tcg")
    assert "vhost-user" not in chosen and unavailable["vhost-user"] == missing
    with pytest.raises(UserError, match="backend vhost-user is unavailable here: dpdk-testpmd is not installed") as info:
        select_backends(("vhost-user",), "tcg")
    assert info.value.exit_code == 2


@needs_testpmd
def test_all_runs_vhost_user_where_it_can_and_lists_vhost_nooffload_with_vhost() -> None:
    chosen, unavailable = select_backends(("all",), "tcg")
    assert chosen == ["e1000", "virtio", "vhost-user", "native"]
    assert unavailable["vhost-nooffload"] == unavailable["vhost"]


@pytest.fixture
def scratch_netns(vm_host: None):
    """A namespace with one multi-queue tap, as the runner gives the switch (removed after)."""
    name = f"iobench-t{os.getpid()}"
    netns.create(name)
    with IPRoute(netns=name) as ipr:
        ipr.link("add", ifname="ibtswitch0", kind="tuntap", mode="tap", ifr={"no_pi": True, "multi_queue": True})
        ipr.link("set", index=ipr.link_lookup(ifname="ibtswitch0")[0], state="up")
    yield name
    netns.remove(name)


def switch_leftovers(run_id: str) -> list[str]:
    dirs = [str(p) for p in Path("/tmp").glob(f"{stale.SWITCH_DIR_PREFIX}{run_id}-*")]
    procs = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if f"{stale.SWITCH_DIR_PREFIX}{run_id}".encode() in (p / "cmdline").read_bytes():
                    procs.append(p.name)
            except OSError:
                pass
    return dirs + procs


@needs_testpmd
def test_the_switch_forwards_counts_and_leaves_nothing(scratch_netns: str, tmp_path: Path) -> None:
    keep = tmp_path / "testpmd.log"
    with switch.testpmd("t1switch", scratch_netns, "ibtswitch0", "0-1", keep_log=keep) as sw:
        assert sw.socket.is_socket() and stat.S_IMODE(sw.directory.stat().st_mode) == 0o700
        assert sw.telemetry.is_socket()  # EAL's runtime dir is the switch's own, not /var/run/dpdk
        ports = sw.port_stats()
        assert set(ports) == {0, 1} and {"ipackets", "opackets", "oerrors"} <= set(ports[0])
        threads = sw.threads()
        assert any(t.comm.startswith(("rte-worker", "lcore-worker")) for t in threads) and {t.kind for t in threads} == {"pmd"}
        time.sleep(0.5)
        assert sum(t.cpu_s for t in sw.threads()) > sum(t.cpu_s for t in threads)  # the poll core spins
        assert [s.kind for s in stale.find([]) if s.name == str(sw.directory)] == ["switch-dir"]
    assert switch_leftovers("t1switch") == []
    assert "Forward statistics" in keep.read_text() or "Bye" in keep.read_text()


@needs_testpmd
def test_a_switch_whose_socket_never_appears_is_stopped_with_one_sentence(scratch_netns: str, tmp_path: Path,
                                                                         monkeypatch) -> None:
    fake = tmp_path / "bin" / "dpdk-testpmd"  # starts, says nothing, makes no socket
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'EAL: Detected CPU lcores: 2'\nexec sleep 600\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    with pytest.raises(switch.SwitchFailed) as info:
        with switch.testpmd("t2switch", scratch_netns, "ibtswitch0", "0-1", timeout=3):
            pass
    assert str(info.value) == ("the vhost-user switch (dpdk-testpmd) was not ready within 3 s: its vhost-user socket "
                               "never appeared: EAL: Detected CPU lcores: 2")
    assert switch_leftovers("t2switch") == []


@needs_testpmd
def test_a_switch_that_cannot_attach_to_its_tap_fails_with_its_own_words(scratch_netns: str) -> None:
    """testpmd goes on with the ports that did probe (here: forwarding the guest's port to itself); the
    switch refuses to call that ready. A tap made without IFF_MULTI_QUEUE refuses DPDK's tap PMD."""
    with IPRoute(netns=scratch_netns) as ipr:
        ipr.link("add", ifname="ibtsingle0", kind="tuntap", mode="tap", ifr={"no_pi": True, "multi_queue": False})
    with pytest.raises(switch.SwitchFailed) as info:
        with switch.testpmd("t3switch", scratch_netns, "ibtsingle0", "0-1"):
            pass
    assert str(info.value).startswith("the vhost-user switch (dpdk-testpmd) started without one of its two ports: "
                                      "tun_alloc(): Unable to set TUNSETIFF for ibtsingle0: Invalid argument")
    assert switch_leftovers("t3switch") == []


@pytest.mark.slow
@needs_testpmd
def test_vhost_user_runs_both_ways_and_rr_and_survives_its_poller_dying(guest_image, tmp_path: Path,
                                                                        qemu_pids) -> None:
    """One real run under TCG: stream both ways and request/response over vhost-user, the switch killed
    one second into the tx window of the first VM: that attempt is lost with the switch's reason, the
    VM and a new switch come up again for the cells left, every cell ends ok, and nothing remains."""
    before = qemu_pids()
    env = {**os.environ, "IOBENCH_FAULT": "kill-switch:vhost-user:tx"}
    scenario = Path(__file__).parent.parent / "scenarios/vhost-user.toml"  # stream both ways, and rr
    proc = subprocess.run(
        [sys.executable, "-m", "iobench", "run", "--scenario", str(scenario), "--accel", "tcg", "--backend", "vhost-user",
         "--duration", "3", "--repeats", "1", "--retries", "1", "--out", str(tmp_path), "--no-db"],
        env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    meta = json.loads((run_dir / "run.json").read_text())
    assert [c["status"] for c in meta["cells"]] == ["ok"] * 3
    (lost,) = meta["failed_attempts"]
    assert lost["backend"] == "vhost-user" and "the vhost-user switch (dpdk-testpmd)" in lost["reason"]
    rows = {r["direction"]: r for r in csv.DictReader((run_dir / "rows.csv").open())}
    assert set(rows) == {"rx", "tx", "rr"}
    for r in rows.values():
        assert float(r["cpu_s_pmd"]) > 0 and int(r["pmd_packets"]) > 0, r
        assert float(r["pmd_idle_cpu_pct"]) > 50, r  # the poll core spins with nothing to do
        assert float(r["throughput_bps"] or 0) > 0 or float(r["transactions"] or 0) > 0
    # the guest's transmit kicks disappear: the switch polls with notifications off
    assert float(rows["tx"]["virtio_kicks_handled_per_packet"]) < 0.05, rows["tx"]
    assert float(rows["tx"]["pmd_copies_per_packet"]) > 0.5  # its writev() to the tap
    negotiated = json.loads(next((run_dir / "raw/vhost-user").glob("r1*/boot-and-idle.json")).read_text())["negotiated"]
    assert negotiated is not None
    assert (run_dir / "raw/vhost-user/r1-switch/testpmd.log").exists()
    assert qemu_pids() <= before
    assert switch_leftovers(meta["run_id"]) == []
    assert not [n for n in netns.listnetns() if meta["run_id"] in n]


def test_a_switch_left_by_a_killed_run_is_found_and_removed_by_clean(tmp_path: Path) -> None:
    """A run killed outright leaves its switch's directory (testpmd itself exits at end-of-file on its
    standard input; one that did not is killed, by the pid in its pidfile, only if its command line names
    that directory)."""
    import tempfile

    left = Path(tempfile.mkdtemp(prefix=f"{stale.SWITCH_DIR_PREFIX}t4switch-"))
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",  # stands in for a testpmd
                              f"--vdev=net_vhost0,iface={left / 'vhost-user.sock'}"])
    (left / "testpmd.pid").write_text(f"{stray.pid}\n")
    deadline = time.monotonic() + 10
    while str(left).encode() not in Path(f"/proc/{stray.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)  # until the child has exec'd
    try:
        (item,) = [i for i in stale.find([]) if i.name == str(left)]
        assert item.kind == "switch-dir" and not item.in_use and f"testpmd {stray.pid} running" in item.detail
        done = stale.clean([])
        assert f"killed testpmd {stray.pid} of {left}" in done and f"removed {left}" in done
        assert stray.wait(timeout=10) == -9 and not left.exists()
    finally:
        if stray.poll() is None:
            stray.kill()
        shutil.rmtree(left, ignore_errors=True)
