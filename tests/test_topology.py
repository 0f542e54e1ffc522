"""The run's namespace and tap, created for real (root only)."""

import ipaddress

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
