"""The run's namespace and tap, created for real (root only)."""

import ipaddress
import os
from pathlib import Path

import pytest
from pyroute2 import netns

from iobench import topology


def test_address_plan_stays_in_the_benchmarking_range() -> None:
    for run_id in ("a", "20261130-015756-ec291e", "zzzzzz", "x" * 40):
        plan = topology.AddressPlan.for_run(run_id)
        assert plan.subnet.subnet_of(ipaddress.ip_network("198.18.0.0/15"))
        assert plan.host in plan.subnet and plan.guest in plan.subnet and plan.host != plan.guest


def test_address_plan_refuses_other_ranges() -> None:
    with pytest.raises(ValueError):
        topology.AddressPlan(ipaddress.ip_network("10.0.0.0/24"))


def test_tap_names_fit_ifnamsiz() -> None:
    assert len(topology.tap_name("20261130-015756-ec291e")) <= 15


def test_remove_refuses_foreign_namespaces() -> None:
    with pytest.raises(ValueError, match="not iobench's"):
        topology.remove_netns("somebody-elses")


def test_topology_creates_a_vnet_hdr_tap_in_its_own_namespace_and_removes_it(vm_host: None) -> None:
    run_id = "test-topo-0001"
    with topology.tap_topology(run_id) as topo:
        assert topo.netns in netns.listnetns()
        links = {link.get_attr("IFLA_IFNAME"): link for link in topo.ipr.get_links()}
        assert topo.tap in links
        addrs = [a.get_attr("IFA_ADDRESS") for a in topo.ipr.get_addr(index=links[topo.tap]["index"])]
        assert addrs == [str(topo.plan.host)]
        assert topo.link_stats()["tx_bytes"] >= 0
        with open("/sys/class/net/lo/address"):  # the root namespace is untouched:
            pass
        from pyroute2 import IPRoute
        with IPRoute() as root:
            assert not root.link_lookup(ifname=topo.tap)
    assert topo.netns not in netns.listnetns()


def peer_reaches_native(topo: topology.Topology) -> None:
    """A TCP connection from the peer's namespace to an iperf3 server in the native stand-in's."""
    import socket

    from iobench import traffic

    assert topo.native is not None
    with traffic.server(topo.native.peer_netns):
        netns.pushns(topo.client_netns)
        try:
            socket.create_connection((str(topo.native.server), traffic.IPERF3_PORT), timeout=5).close()
        finally:
            netns.popns()


def test_bridge_topology_puts_the_tap_and_the_peers_veth_on_one_bridge_and_removes_everything(vm_host: None) -> None:

    from pyroute2 import IPRoute


    run_id = "test-topo-0002"
    with topology.tap_topology(run_id, native=True, kind="bridge") as topo:
        assert topo.kind == "bridge" and topo.client_netns == f"{topo.netns}-peer" and topo.native is not None
        links = {link.get_attr("IFLA_IFNAME"): link for link in topo.ipr.get_links()}
        bridge = links[topo.bridge]
        info = dict(bridge.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")["attrs"])
        assert info["IFLA_BR_STP_STATE"] == 0 and info["IFLA_BR_FORWARD_DELAY"] == 0
        for port in (topo.tap, *topo.ports):  # the tap, the peer's veth and the native stand-in's veth
            assert links[port].get_attr("IFLA_MASTER") == bridge["index"], port
        assert not topo.ipr.get_addr(index=links[topo.tap]["index"])  # a bridge port holds no address
        offloads = topo.offloads()  # every host-side interface of the path, the peer's veth end included
        assert set(offloads) == {topo.tap, topo.bridge, *topo.ports, topo.ports[0][:-1] + "b"}
        assert all(isinstance(f["tso"], bool) and isinstance(f["gro"], bool) for f in offloads.values())
        with IPRoute(netns=topo.client_netns) as peer:
            addrs = [a.get_attr("IFA_ADDRESS") for a in peer.get_addr(family=2) if a.get_attr("IFA_ADDRESS") != "127.0.0.1"]
        assert addrs == [str(topo.plan.host)]
        peer_reaches_native(topo)  # through the bridge, as it reaches the guest
        assert topo.native.server in topo.plan.subnet and topo.native.server not in (topo.plan.host, topo.plan.guest)
        topo.tap_for(2)  # made again multi-queue: still a port of the bridge
        links = {link.get_attr("IFLA_IFNAME"): link for link in topo.ipr.get_links()}
        assert links[topo.tap].get_attr("IFLA_MASTER") == bridge["index"]
        names = {topo.netns, topo.client_netns, topo.native.peer_netns}
        assert names <= set(netns.listnetns())
    assert not names & set(netns.listnetns())


def test_unknown_topology_and_missing_module_are_one_sentence(tmp_path) -> None:
    from iobench import topologies
    from iobench.errors import UserError

    with pytest.raises(UserError, match="unknown topology 'ovs-dpdk': choose from direct, bridge"):
        topologies.check(["direct", "ovs-dpdk"], "scenario.toml")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "modules.dep").write_text("kernel/net/ipv4/tunnel4.ko:\n")
    why = topology.support_problem("bridge", sys_module=tmp_path / "sys", lib_modules=tmp_path / "lib")
    assert why is not None and "needs the kernel's bridge module" in why and "--topology direct" in why
    (tmp_path / "lib" / "modules.builtin").write_text("kernel/net/bridge/bridge.ko\n")
    assert topology.support_problem("bridge", sys_module=tmp_path / "sys", lib_modules=tmp_path / "lib") is None
    assert topology.support_problem("direct") is None


@pytest.mark.slow
def test_every_topology_in_one_run_under_tcg_each_with_its_own_native_and_nothing_left(guest_image, tmp_path,
                                                                                       qemu_pids) -> None:
    """One round over every topology: each cell ok, rows, summary, report and figures keep them apart,
    the native ceiling runs over each, and no namespace, bridge, macvtap, veth or process is left."""
    import csv
    import glob
    import json

    from iobench import ovs, stale
    from iobench.runner import run
    from iobench.scenario import Scenario

    before = qemu_pids()
    kinds = ("direct", "bridge", "macvtap", *(("ovs-netdev",) if ovs.problem() is None else ()))
    if len(kinds) < 4:
        print(f"ovs-netdev left out of this run: {ovs.problem()}")
    scn = Scenario(backends=("e1000", "native"), directions=("rx",), accel="tcg", duration_s=2, omit_s=0, repeats=1,
                   topology=kinds)
    report = run(scn, tmp_path, log=lambda m: None)
    assert report.status == "ok", report.cells
    rows = list(csv.DictReader((report.directory / "rows.csv").open()))
    assert sorted((r["backend"], r["topology"]) for r in rows) == sorted(
        (b, k) for b in ("e1000", "native") for k in kinds)
    for r in rows:  # the run's Open vSwitch: its lookups and its threads' CPU, in its windows only
        if r["topology"] == "ovs-netdev":
            assert int(r["ovs_hits"]) + int(r["ovs_misses"]) > 0 and float(r["cpu_s_ovs"]) > 0, r
            assert r["ovs_masks_hit"] == ""  # the userspace datapath does not count masks
        else:
            assert r["ovs_hits"] == "" and float(r["cpu_s_ovs"]) == 0, r
    for r in rows:  # the device's counters carry the data (a macvtap's read mirrored): at least iperf3's payload
        assert float(r["throughput_bps"]) > 0 and int(r["bytes"]) >= int(r["iperf3_bytes"]) > 0, r
    vm = {r["topology"]: r for r in rows if r["backend"] == "e1000"}
    assert int(vm["bridge"]["traps_nic"]) > 0  # the guest's side is the same device either way
    for r in rows:  # the host side, read in every window; the bridge's ports only where there is one
        assert r["host_softirq_s"] != "" and r["host_net_rx_softirqs"] != ""
        # QEMU's e1000 takes no segmentation offload: it switches its tap's TSO off (TUNSETOFFLOAD), which
        # ethtool shows on a tap; a macvtap's features are its lower device's (the offload set is the
        # queue's, which ethtool does not show); a native row never crosses the tap.
        tap = topology.tap_name(r["run_id"])
        assert (f"{tap}:tso" in r["offloads_off"]) == (r["backend"] == "e1000" and r["topology"] != "macvtap"), r
        if r["topology"] == "bridge":  # the veth hop goes through a CPU's backlog: receive softirqs
            assert int(r["host_net_rx_softirqs"]) > 0, r
        assert (r["port_drops"] != "") == (r["topology"] != "direct"), r
    raw = report.directory / "raw"
    assert (raw / "e1000@bridge" / "r1" / "qemu-cmdline.json").exists() and (raw / "e1000" / "r1").is_dir()
    argv = " ".join(json.loads((raw / "e1000@macvtap" / "r1" / "qemu-cmdline.json").read_text()))
    assert "tap,id=n0,fd=" in argv and f"mac={topology.GUEST_MAC}" in argv and "ifname=" not in argv
    shares = {(s["backend"], s["topology"]) for s in csv.DictReader((report.directory / "summary.csv").open())
              if s["metric"] == "throughput_vs_native"}
    assert shares == {("e1000", k) for k in kinds}  # each: its own native
    md = (report.directory / "report.md").read_text()
    assert "| e1000@bridge | rx |" in md and "| native@bridge | rx |" in md and "| e1000@macvtap | rx |" in md
    assert (report.directory / "plots" / "throughput-bridge.png").exists()
    assert (report.directory / "plots" / "throughput.png").exists()
    assert (report.directory / "plots" / "topology-cost.png").exists()
    assert "## What each topology adds over direct" in md
    assert not [n for n in netns.listnetns() if report.meta["run_id"] in n]
    assert not [i for i in os.listdir("/sys/class/net") if i.startswith(("ibb", "ibv", "ibw", "ibt"))]
    assert not glob.glob("/tmp/iobench-macvtap-*")
    if "ovs-netdev" in kinds:
        assert "| e1000@ovs-netdev | rx |" in md and "## Open vSwitch" in md
        assert not glob.glob(f"/tmp/{stale.OVS_DIR_PREFIX}*") and not processes_named("ovs-vswitchd", "ovsdb-server")
    assert stale.find([tmp_path]) == [] and qemu_pids() <= before


def processes_named(*names: str) -> list[int]:
    """Pids of the running processes with one of these command names (/proc/<pid>/comm)."""
    found = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and (p / "comm").read_text().strip() in names:
                found.append(int(p.name))
        except OSError:
            pass
    return found


def test_macvtap_topology_hands_qemu_a_device_file_and_leaves_nothing(vm_host: None) -> None:
    """The macvtap sits on a veth whose far end the peer holds; its character device opens through a node
    that is gone at once; the native stand-in is a macvlan on the same veth; all of it goes on exit."""
    import glob

    from pyroute2 import IPRoute


    run_id = "test-topo-0003"
    with topology.tap_topology(run_id, native=True, kind="macvtap") as topo:
        assert topo.kind == "macvtap" and topo.char_device is not None and topo.native is not None
        links = {link.get_attr("IFLA_IFNAME"): link for link in topo.ipr.get_links()}
        info = links[topo.tap].get_attr("IFLA_LINKINFO")
        assert info.get_attr("IFLA_INFO_KIND") == "macvtap"
        assert links[topo.tap].get_attr("IFLA_ADDRESS") == topology.GUEST_MAC
        assert links[topo.tap].get_attr("IFLA_LINK") == links[topo.ports[0]]["index"]  # on the veth
        with topo.open_tap() as fd:
            assert fd is not None and os.readlink(f"/proc/self/fd/{fd}").endswith("(deleted)")
        assert not glob.glob("/tmp/iobench-macvtap-*")
        assert topo.data_counters("rx") == (("rx_bytes",), ("rx_packets",))  # mirrored: a macvtap receives
        with IPRoute(netns=topo.client_netns) as peer:
            assert str(topo.plan.host) in [a.get_attr("IFA_ADDRESS") for a in peer.get_addr(family=2)]
        peer_reaches_native(topo)  # through the macvlan switching of the same veth
        names = {topo.netns, topo.client_netns, topo.native.peer_netns}
    assert not names & set(netns.listnetns())


def test_a_device_node_left_by_a_killed_run_is_found_and_cleaned(tmp_path) -> None:
    import tempfile
    import time

    from iobench import stale

    left = Path(tempfile.mkdtemp(prefix=stale.NODE_DIR_PREFIX))
    (left / "tap").write_text("")
    try:
        found = [x for x in stale.find([tmp_path]) if x.kind == "node-dir"]
        assert [x.name for x in found] == [str(left)] and found[0].in_use  # fresh: a live run may be opening it
        old = time.time() - 60
        os.utime(left, (old, old))
        assert f"removed {left}" in stale.clean([tmp_path])
        assert not left.exists()
    finally:
        if left.exists():
            import shutil
            shutil.rmtree(left)
