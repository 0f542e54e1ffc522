"""Scenario files: the shipped ones load, bad ones give one clear error naming file and key."""

from pathlib import Path

import pytest

from iobench import scenario
from iobench.cli import main
from iobench.errors import UserError

ROOT = Path(__file__).parent.parent


def test_default_toml_is_the_built_in_default() -> None:
    loaded = scenario.load(ROOT / "scenarios/default.toml")
    assert scenario.as_dict(loaded) | {"source": "x"} == scenario.as_dict(scenario.Scenario()) | {"source": "x"}


@pytest.mark.parametrize("name", ["default", "quick", "msgsize", "topology"])
def test_shipped_scenarios_load(name: str) -> None:
    s = scenario.load(ROOT / f"scenarios/{name}.toml")
    assert s.name == name and s.workloads


def test_msgsize_is_a_sweep() -> None:
    s = scenario.load(ROOT / "scenarios/msgsize.toml")
    assert [w.message_bytes for w in s.workloads] == [256, 1448, 16384, 131072]


def test_exit_reasons_can_alternate_between_rounds(tmp_path: Path) -> None:
    path = tmp_path / "ab.toml"
    path.write_text('[run]\nexit_reasons = "alternate"\nrepeats = 10\n')
    assert scenario.load(path).exit_reasons == "alternate"


@pytest.mark.parametrize(("text", "message"), [
    ("[run]\nduration_s = 0\n", "[run] duration_s = 0 is not allowed"),
    ("[run]\nrepeats = -1\n", "[run] repeats = -1 is not allowed"),
    ("[run]\nbackends = [\"ne2k_pci\"]\n", "[run] backends"),
    ("[run]\ndurration_s = 5\n", "unknown key 'durration_s' in [run]"),
    ("[runn]\nduration_s = 5\n", "unknown section [runn]"),
    ("[run]\nduration_s = \"5\"\n", "wrong type"),
    ("[guest]\noffloads = 1\n", "wrong type"),
    ("[run]\nexit_reasons = \"sometimes\"\n",
     '[run] exit_reasons = \'sometimes\' is not allowed: expected true, false or "alternate"'),
    ("[run]\nexit_reasons = 1\n", "[run] exit_reasons = 1 is not allowed"),
    ("[run\nduration_s = 5\n", "not valid TOML"),
    ("[guest]\nkernel_args = \"nohz=off\"\n", "[guest] kernel_args = 'nohz=off' has the wrong type"),
    ("[guest]\nkernel_args = [\"nohz=off idle=poll\"]\n", "is not allowed: expected a list of kernel command-line words"),
    ("[guest]\nkernel_args = [\"console=tty0\"]\n", "console=, panic=, iobench.* and init= are iobench's own"),
    ("[guest]\nkernel_args = [\"iobench.addr=1.2.3.4\"]\n", "[guest] kernel_args"),
])
def test_bad_scenarios_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        scenario.load(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert info.value.exit_code == 2


def test_bad_scenario_on_the_cli_is_exit_2_and_creates_nothing(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[run]\nbackends = [\"e1000\", \"ne2k_pci\"]\n")
    out = tmp_path / "results"
    assert main(["run", "--scenario", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"iobench: error: {path}")
    assert not out.exists()


def test_cli_overrides_are_validated_too(capsys) -> None:
    assert main(["plan", "--duration", "-3"]) == 2
    assert "duration_s = -3 is not allowed" in capsys.readouterr().err


def test_plan_prints_cells_and_command_lines(capsys) -> None:
    assert main(["plan", str(ROOT / "scenarios/quick.toml"), "--accel", "tcg"]) == 0
    out = capsys.readouterr().out
    assert "qemu-system-x86_64 -name e1000,debug-threads=on" in out
    assert "iperf3 -c" in out and " -R" in out
    assert "cells: 4 = 1 rounds x 2 backends x 1 workloads x 2 directions" in out


def test_topologies_are_checked_and_counted(tmp_path: Path) -> None:
    s = scenario.load(ROOT / "scenarios/topology.toml")
    assert s.topology == ("all",) and scenario.Scenario().topology == ("direct",)
    from iobench import topologies
    chosen, unavailable = topologies.resolve(s.topology, lambda n: "no module" if n == "ovs" else None)
    assert chosen == ("direct", "bridge", "ovs-netdev", "macvtap") and unavailable == {"ovs": "no module"}
    assert topologies.resolve(("bridge",), lambda n: "never asked") == (("bridge",), {})
    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\ntopology = ["direct", "ovs-dpdk"]\n')
    with pytest.raises(UserError, match=r"\[run\] topology = \['direct', 'ovs-dpdk'\] is not allowed: expected a "
                                        "non-empty list of distinct topologies: direct, bridge"):
        scenario.load(bad)
    assert main(["plan", str(ROOT / "scenarios/topology.toml"), "--accel", "tcg", "--backend", "e1000"]) == 0


def test_kernel_args_reach_every_guests_command_line(tmp_path: Path) -> None:
    """[guest] kernel_args: words on every guest's kernel command line, after iobench's own, and part of
    what makes two runs comparable (a gate baseline made with a periodic tick is not one without)."""
    from iobench import backends, compare, runner, vm

    path = tmp_path / "tick.toml"
    path.write_text('[guest]\nkernel_args = ["nohz=off", "tsc=reliable"]\n')
    scn = scenario.load(path)
    cfg = runner.vm_config(scn, backends.catalog(())["virtio"], "tcg", None, "tap0",  # type: ignore[arg-type]
                           "198.18.0.2/30", None)
    line = vm.kernel_cmdline(cfg).split()
    assert line[0] == "console=ttyS0" and line[-2:] == ["nohz=off", "tsc=reliable"]
    meta = {"accel": {"accel": "tcg", "exit_source": "tcg-traps"}, "scenario": scenario.as_dict(scn)}
    assert compare.environment(meta)["scenario"]["kernel_args"] == ["nohz=off", "tsc=reliable"]
    assert scenario.load(ROOT / "scenarios/ci.toml").kernel_args == ("nohz=off",)
