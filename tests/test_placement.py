"""Placement: the spec, the host's cores from /sys, the auto plan, pinning read back, and the
scheduling facts of a thread (on this machine's real /proc)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from iobench import placement, scenario
from iobench.errors import UserError
from iobench.instruments import sched
from iobench.schema import Row, derive


def fake_sys(root: Path, cores: int, smt: int, nodes: int = 1, isolated: str = "") -> Path:
    """A /sys tree of `nodes` packages x `cores` cores x `smt` threads, numbered as Linux does on x86
    (the first thread of every core first, then the siblings)."""
    cpu_dir = root / "sys/devices/system/cpu"
    total = nodes * cores * smt
    for cpu in range(total):
        thread, rest = divmod(cpu, nodes * cores)
        package, core = divmod(rest, cores)
        topo = cpu_dir / f"cpu{cpu}/topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text(f"{package}\n")
        (topo / "core_id").write_text(f"{core}\n")
    (cpu_dir / "online").write_text(f"0-{total - 1}\n")
    (cpu_dir / "isolated").write_text(isolated + "\n")
    for node in range(nodes):
        d = root / f"sys/devices/system/node/node{node}"
        d.mkdir(parents=True)
        cpus = [c for c in range(total) if (c % (nodes * cores)) // cores == node]
        (d / "cpulist").write_text(placement.cpustr(cpus) + "\n")
    return root


def test_specs_parse_and_bad_ones_say_what_is_allowed() -> None:
    assert placement.parse("auto", "x").mode == "auto"
    assert placement.parse("none", "x").mode == "none"
    spec = placement.parse("vcpu0=2,vhost=3,peer=4-5", "x")
    assert spec.mode == "roles" and dict(spec.roles) == {"vcpu0": "2", "vhost": "3", "peer": "4-5"}
    assert spec.text == "vcpu0=2,vhost=3,peer=4-5"
    for bad in ("fast", "vcpu0=two", "gpu=1", "vhost=1,vhost=2", ""):
        with pytest.raises(UserError, match="placement"):
            placement.parse(bad, "cli")


def test_alternate_is_auto_and_none_in_abba_rounds() -> None:
    spec = placement.parse("alternate", "x")
    assert [spec.mode_in(r) for r in range(1, 9)] == ["auto", "none", "none", "auto", "auto", "none", "none", "auto"]


def test_a_scenario_takes_a_placement_table(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('[placement]\nmode = "auto"\n')
    assert scenario.load(f).placement == "auto"
    f.write_text('[placement]\nvcpu0 = "1"\npeer = "0"\n')
    assert scenario.load(f).placement == "vcpu0=1,peer=0"
    f.write_text('[placement]\nmode = "auto"\nvcpu0 = "1"\n')
    with pytest.raises(UserError, match="not both"):
        scenario.load(f)
    with pytest.raises(UserError, match="placement 'sideways'"):
        scenario.Scenario().with_overrides(placement="sideways")


def test_auto_gives_the_path_distinct_physical_cores_never_siblings(tmp_path: Path) -> None:
    host = placement.host_cpus(fake_sys(tmp_path, cores=4, smt=2, nodes=2), allowed=set(range(16)))
    made = placement.plan(placement.Spec("auto"), "auto", placement.roles_for(2, vhost=True), host)
    core_of = {c.cpu: c.core for c in host.cpus}
    path = ["vcpu0", "vcpu1", "vhost", "peer"]
    cores = [{core_of[c] for c in made.cpus[r]} for r in path]
    assert all(len(c) == 1 for c in cores) and len({next(iter(c)) for c in cores}) == 4  # one core each, distinct
    assert all(len(made.cpus[r]) == 2 for r in path)  # a role holds both SMT siblings of its core
    nodes = {c.node for c in host.cpus if c.cpu in {x for r in path for x in made.cpus[r]}}
    assert len(nodes) == 1  # one NUMA node
    assert 0 not in {x for r in path for x in made.cpus[r]}  # CPU 0's core is left while others are free
    # five roles on the node's four cores: QEMU's main loop joins the last helper, never a vCPU
    assert made.shared == ["peer, qemu-main share core 7,15"]


def test_auto_prefers_isolated_cores_and_says_who_shares_when_cores_run_out(tmp_path: Path) -> None:
    host = placement.host_cpus(fake_sys(tmp_path / "a", cores=4, smt=1, isolated="2-3"), allowed={0, 1, 2, 3})
    made = placement.plan(placement.Spec("auto"), "auto", placement.roles_for(1, vhost=True), host)
    assert made.cpus["vcpu0"] == [2] and made.cpus["vhost"] == [3]
    two = placement.host_cpus(fake_sys(tmp_path / "b", cores=2, smt=1), allowed={0, 1})
    made = placement.plan(placement.Spec("auto"), "auto", placement.roles_for(1, vhost=True), two)
    assert made.cpus["vcpu0"] == [1]  # the vCPU keeps a core to itself
    assert made.cpus["vhost"] == made.cpus["peer"] == made.cpus["qemu-main"] == [0]
    assert made.shared == ["vhost, peer, qemu-main share core 0"] and "too few cores" in made.why[-1]


def test_roles_name_cpus_this_machine_offers(tmp_path: Path) -> None:
    host = placement.host_cpus(fake_sys(tmp_path, cores=2, smt=1), allowed={0, 1})
    spec = placement.parse("vcpu0=1,peer=0", "x")
    assert placement.plan(spec, "roles", ["vcpu0", "peer"], host).cpus == {"vcpu0": [1], "peer": [0]}
    with pytest.raises(UserError, match="CPU 7"):
        placement.plan(placement.parse("vcpu0=7", "x"), "roles", ["vcpu0"], host)


def test_pinning_is_read_back_and_the_scheduling_facts_read() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    child = subprocess.Popen(["sleep", "30"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/comm").read_text().strip() != "sleep" and time.monotonic() < deadline:
        time.sleep(0.01)  # until it has exec'd (before, it is a copy of pytest)
    try:
        got = placement.pin("peer", child.pid, "sleep", [cpus[-1]])
        assert got.requested == got.read_back == str(cpus[-1]) and not got.error
        facts = sched.read_task(child.pid)
        assert facts is not None and facts.allowed == str(cpus[-1]) and facts.comm == "sleep"
        assert facts.migrations is not None and facts.voluntary is not None and facts.involuntary is not None
        unpinned = placement.pin("peer", child.pid, "sleep", None)
        assert unpinned.requested is None and unpinned.read_back == str(cpus[-1])
    finally:
        child.kill()
        child.wait()
    assert sched.read_task(child.pid) is None  # gone: no facts, not zeros


def test_last_cpu_is_field_39_after_a_command_with_spaces() -> None:
    stat = "42 (CPU 0/KVM) S " + " ".join(str(i) for i in range(4, 39)) + " 7 0 0"
    assert sched.last_cpu(stat) == 7


def test_harness_share_relates_iobench_cpu_to_all_cpu_measured() -> None:
    from dataclasses import fields

    values = {f.name: None for f in fields(Row)} | {
        "bytes": 1514, "frames": 1, "exits": 10, "cpu_s_vcpu": 0.8, "cpu_s_main": 0.1, "cpu_s_iothread": 0.0,
        "cpu_s_other": 0.0, "cpu_s_vhost": None, "cpu_s_iperf3_client": 0.09, "cpu_s_harness": 0.01,
        "duration_s": 1.0, "na_reason": ""}
    assert derive(Row(**values))["harness_cpu_pct"] == 1.0
