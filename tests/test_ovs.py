"""The run's private Open vSwitch (iobench.ovs): its counters parsed from captured output, its daemons
started in the run's namespace and stopped with it, and a killed run's daemons found by `iobench clean`."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyroute2 import netns

from iobench import ovs, stale, topology
from tests.test_topology import peer_reaches_native

# ovs-appctl dpctl/show -s, Open vSwitch 3.1: the kernel datapath (lab, L1) and the userspace one (here)
SYSTEM_SHOW = """system@ovs-system:
  lookups: hit:1290 missed:7 lost:0
  flows: 4
  masks: hit:2581 total:2 hit/pkt:1.99
  cache: hit:1288 hit-rate:99.30%
  caches:
    masks-cache: size:256
  port 0: ovs-system (internal)
    RX packets:0 errors:0 dropped:0 overruns:0 frame:0
"""
NETDEV_SHOW = """netdev@ovs-netdev:
  lookups: hit:39630 missed:4 lost:0
  flows: 4
  port 0: ovs-netdev (tap)
    RX packets:0 errors:0 dropped:0 overruns:0 frame:0
"""
needs_ovs = pytest.mark.skipif(ovs.problem() is not None, reason=f"{ovs.problem()}")


def test_datapath_counters_are_read_from_dpctl_show() -> None:
    assert ovs.parse_dpctl_show(SYSTEM_SHOW) == {"hit": 1290, "missed": 7, "lost": 0, "flows": 4,
                                                 "masks_hit": 2581, "masks_total": 2}
    assert ovs.parse_dpctl_show(NETDEV_SHOW) == {"hit": 39630, "missed": 4, "lost": 0, "flows": 4}


def test_ovs_topologies_name_what_is_missing(monkeypatch) -> None:
    monkeypatch.setattr(ovs.shutil, "which", lambda name: None if name == "ovs-vswitchd" else "/usr/bin/" + name)
    why = topology.support_problem("ovs-netdev")
    assert why is not None and "ovs-vswitchd missing" in why and "apt-get install openvswitch-switch" in why
    monkeypatch.undo()
    if ovs.problem() is None and not os.path.exists("/sys/module/openvswitch"):
        why = topology.support_problem("ovs", sys_module=Path("/nonexistent"), lib_modules=Path("/nonexistent"))
        assert why is not None and "openvswitch module" in why and "ovs-netdev" in why


@needs_ovs
def test_ovs_netdev_topology_switches_through_the_runs_own_daemons_and_leaves_nothing(vm_host: None) -> None:
    """ovs-vswitchd runs in the run's namespace on the run's database; the tap and both veths are ports of
    its bridge; the peer reaches the native stand-in through it (lookups counted); all of it goes on exit."""
    run_id = "test-ovs-0001"
    with topology.tap_topology(run_id, native=True, kind="ovs-netdev") as topo:
        sw = topo.ovs
        assert sw is not None and sw.datapath_type == "netdev" and topo.native is not None
        assert str(sw.directory).startswith(f"/tmp/{stale.OVS_DIR_PREFIX}{run_id}-")
        ns_inode = os.stat(f"/var/run/netns/{topo.netns}").st_ino
        assert os.stat(f"/proc/{sw.vswitchd.pid}/ns/net").st_ino == ns_inode  # in the run's namespace
        assert set(sw.vsctl("list-ports", sw.bridge).split()) == {topo.tap, *topo.ports}
        assert "n-handler-threads=\"1\"" in sw.vsctl("get", "Open_vSwitch", ".", "other_config").replace(" ", "")
        before = sw.datapath_stats()
        peer_reaches_native(topo)
        after = sw.datapath_stats()
        assert after["hit"] + after["missed"] > before["hit"] + before["missed"]
        assert {t.kind for t in sw.threads()} == {"ovs"} and any(t.comm.startswith("handler") for t in sw.threads())
        topo.tap_for(2)  # made again multi-queue: a port of the OVS bridge again
        assert topo.tap in sw.vsctl("list-ports", sw.bridge).split()
        pids, directory = [sw.db.pid, sw.vswitchd.pid], sw.directory
        names = {topo.netns, topo.client_netns, topo.native.peer_netns}
    assert not names & set(netns.listnetns())
    assert not directory.exists() and not [p for p in pids if Path(f"/proc/{p}").exists()]


@needs_ovs
def test_a_killed_runs_ovs_daemons_are_found_and_removed_by_clean(vm_host: None, tmp_path: Path) -> None:
    """A run killed outright (SIGKILL: no cleanup of its own) leaves its Open vSwitch running in its
    directory and namespace; `iobench clean` finds both daemons by their pidfiles and removes them."""
    code = ("import sys, time; from iobench import topology\n"
            "with topology.tap_topology('test-ovs-0002', kind='ovs-netdev') as t:\n"
            "    print(t.ovs.directory, flush=True); time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        directory = Path(holder.stdout.readline().strip())
        assert directory.name.startswith(f"{stale.OVS_DIR_PREFIX}test-ovs-0002-")
        found = [x for x in stale.find([tmp_path]) if x.name == str(directory)]
        assert len(found) == 1 and found[0].in_use  # the live run holds it: clean leaves it alone
        assert found[0].name not in " ".join(stale.clean([tmp_path], dry_run=True))
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        pids = stale.OWNED_DIRS["ovs-dir"].owners(directory)
        assert len(pids) == 2  # ovs-vswitchd and ovsdb-server outlived it
        done = stale.clean([tmp_path])
        # each daemon killed once: by the namespace it runs in, or by the directory its pidfile is in
        assert all(sum(d.startswith("killed") and f" {pid} " in f"{d} " for d in done) == 1 for pid in pids), done
        assert f"removed {directory}" in done
        time.sleep(0.2)
        assert not directory.exists() and not [p for p in pids if Path(f"/proc/{p}").exists()
                                                and not stale._is_zombie(p)]
        assert not [n for n in netns.listnetns() if "test-ovs-0002" in n]
    finally:
        if holder.poll() is None:
            holder.kill()
        stale.clean([tmp_path])


def test_ovs_threads_are_a_placement_role_of_their_own() -> None:
    from iobench import placement

    assert placement.roles_for(1, True, ovs=True) == ["vcpu0", "vhost", "peer", "ovs", "qemu-main"]
    spec = placement.parse("vcpu0=1,ovs=0", "test")
    assert dict(spec.roles)["ovs"] == "0"
