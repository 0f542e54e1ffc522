"""The host side's counters, on /proc text captured on this project's machine."""

import os
from pathlib import Path

import pytest

from iobench.instruments.base import Window
from iobench.instruments.host_side import HostSide, parse_softirqs, parse_softnet, parse_stat_softirq_s


def test_proc_files_parse_to_sums_over_the_cpus(data: Path) -> None:
    softirqs = (data / "proc/softirqs.txt").read_text()
    rows = {line.split(":")[0].strip(): [int(c) for c in line.split(":")[1].split()] for line in softirqs.splitlines()
            if line.strip().startswith(("NET_RX", "NET_TX"))}
    assert parse_softirqs(softirqs) == {k: sum(v) for k, v in rows.items()}
    softnet = (data / "proc/softnet_stat.txt").read_text()
    lines = [line.split() for line in softnet.splitlines()]
    got = parse_softnet(softnet)
    assert got["processed"] == sum(int(f[0], 16) for f in lines) > 0
    assert got["dropped"] == sum(int(f[1], 16) for f in lines)
    assert got["time_squeeze"] == sum(int(f[2], 16) for f in lines)
    stat = (data / "proc/stat-head.txt").read_text()
    assert parse_stat_softirq_s(stat) == pytest.approx(int(stat.split()[7]) / os.sysconf("SC_CLK_TCK"))
    assert parse_stat_softirq_s("cpu  1 2 3 4 5 6 700 8 9 10\n") == 700 / os.sysconf("SC_CLK_TCK")


def _window(ports: list[dict[str, dict[str, int]]], topology: str) -> Window:
    it = iter(ports)
    return Window("traffic", "e1000", 1, 1, "e1000/r1-x-rx", 1, dict, ((), ()), topology=topology,
                  port_stats=(lambda: next(it)) if ports else None)


def test_port_drops_are_the_ports_deltas_and_direct_says_why_it_has_none() -> None:
    inst = HostSide(None)  # type: ignore[arg-type]  # no boot here: the run is not used
    port = {"ibv1a": {"rx_dropped": 1, "tx_dropped": 0}, "ibw1a": {"rx_dropped": 0, "tx_dropped": 2}}
    later = {"ibv1a": {"rx_dropped": 4, "tx_dropped": 0}, "ibw1a": {"rx_dropped": 0, "tx_dropped": 7}}
    w = _window([port, later], "bridge")
    got = inst.read(w, [inst.sample(w), inst.sample(w)])
    assert got.columns["port_drops"] == 3 + 5
    assert got.columns["host_softirq_s"] >= 0 and got.columns["host_net_rx_softirqs"] >= 0
    w = _window([], "direct")
    got = inst.read(w, [inst.sample(w), inst.sample(w)])
    assert got.columns["port_drops"] is None and got.na == ["port_drops: no host-side port in topology direct"]
