"""Fleet runs through Ansible, fast: the real playbook and ansible-runner on local-connection hosts
whose `iobench` is a stand-in that copies a recorded results directory (tests/data) after a pause.
What this proves is the orchestration: hosts of one machine serialize, distinct machines overlap,
failures are recorded with their reason, results come back merged and into the history.
tests/test_fleet_e2e.py runs the real iobench on two hosts."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pytest

from iobench import fleet, history
from iobench.cli import fleet_passthrough, main

DATA = Path(__file__).parent / "data"
FAKE = """#!/usr/bin/env python3
# stand-in for iobench on a fleet host: `--version`, or `run --out DIR ...`: a recorded run copied with a new id
import json, secrets, shutil, sys, time
if sys.argv[1] == "--version":
    print("iobench 0.0-fake"); sys.exit(0)
args = sys.argv[2:]
out = args[args.index("--out") + 1]
if "--backend" in args and args[args.index("--backend") + 1] == "broken":
    print("iobench: error: backend 'broken' does not exist", file=sys.stderr); sys.exit(2)
run_id = "20261201-000000-" + secrets.token_hex(3)
shutil.copytree(%(template)r, f"{out}/{run_id}")
meta = json.load(open(f"{out}/{run_id}/run.json"))
meta["run_id"] = run_id
meta["started"] = time.time(); time.sleep(%(pause)s); meta["finished"] = time.time()
json.dump(meta, open(f"{out}/{run_id}/run.json", "w"))
"""


def fake_iobench(tmp_path: Path, pause: float = 2.0) -> Path:
    """A directory laid out like an installed iobench (.venv/bin/iobench) holding the stand-in."""
    root = tmp_path / "fake-iobench"
    (root / ".venv" / "bin").mkdir(parents=True)
    script = root / ".venv" / "bin" / "iobench"
    script.write_text(FAKE % {"template": str(DATA / "results-v3-tcg-sweep"), "pause": pause})
    script.chmod(0o755)
    return root


def inventory(tmp_path: Path, hosts: dict[str, dict[str, str]]) -> Path:
    import yaml

    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts, "vars": {"ansible_python_interpreter": shutil.which("python3")}}}))
    return path


def window(host: dict) -> tuple[datetime.datetime, datetime.datetime]:
    return datetime.datetime.fromisoformat(host["start"]), datetime.datetime.fromisoformat(host["end"])


def test_hosts_of_one_machine_serialize_and_distinct_machines_overlap(tmp_path: Path) -> None:
    fake = fake_iobench(tmp_path)
    local = {"ansible_connection": "local", "iobench_dir": str(fake)}
    inv = inventory(tmp_path, {"a1": {**local, "iobench_machine": "m1", "iobench_results_root": str(tmp_path / "ra1")},
                               "a2": {**local, "iobench_machine": "m1", "iobench_results_root": str(tmp_path / "ra2")},
                               "b1": {**local, "iobench_machine": "m2", "iobench_results_root": str(tmp_path / "rb1")}})
    assert main(["fleet", "run", "--inventory", str(inv), "--out", str(tmp_path / "out"), "--accel", "tcg"]) == 0
    (fleet_dir,) = (tmp_path / "out").glob("fleet-*")
    meta = json.loads((fleet_dir / "fleet.json").read_text())
    hosts = {h["name"]: h for h in meta["hosts"]}
    assert meta["status"] == "ok" and {h["status"] for h in hosts.values()} == {"ok"}
    assert meta["run_args"] == ["--accel", "tcg"]
    (a1s, a1e), (a2s, a2e), (b1s, b1e) = window(hosts["a1"]), window(hosts["a2"]), window(hosts["b1"])
    assert a1e <= a2s or a2e <= a1s, "two hosts of machine m1 measured at the same time"
    assert a1s < b1e and b1s < a1e, "hosts of different machines should run in parallel"
    for name, h in hosts.items():  # labelled and merged
        assert (fleet_dir / name / "run.json").exists() and h["run_id"] and h["facts"]["kernel"]
    merged = __import__("pandas").read_csv(fleet_dir / "fleet_rows.csv")
    assert set(merged["host"]) == {"a1", "a2", "b1"} and set(merged.loc[merged.host == "a2", "machine"]) == {"m1"}
    assert not list((tmp_path / "out").glob(".fleet-*"))  # published by rename, nothing half-written
    con = history.connect(tmp_path / "out" / "iobench.duckdb", read_only=True)
    got = history.query(con, "SELECT host, machine, fleet_id FROM runs ORDER BY host")
    assert list(got["host"]) == ["a1", "a2", "b1"] and set(got["fleet_id"]) == {meta["fleet_id"]}
    assert list(got["machine"]) == ["m1", "m1", "m2"]


def test_a_failing_and_an_unreachable_host_are_recorded_and_the_other_completes(tmp_path: Path, capsys) -> None:
    fake = fake_iobench(tmp_path, pause=0.5)
    local = {"ansible_connection": "local", "iobench_dir": str(fake)}
    inv = inventory(tmp_path, {
        "good": {**local, "iobench_results_root": str(tmp_path / "r-good")},
        "missing": {"ansible_connection": "local", "iobench_dir": str(tmp_path / "nowhere")},
        # ssh whose connection is a program that exits at once: unreachable, and no packet leaves the machine
        "gone": {"ansible_connection": "ssh", "ansible_host": "gone", "ansible_ssh_common_args": "-o ProxyCommand=false"},
    })
    directory, meta = fleet.run(inv, tmp_path / "out", None, [], log=print)
    hosts = {h["name"]: h for h in meta["hosts"]}
    assert hosts["good"]["status"] == "ok" and (directory / "good" / "rows.csv").exists()
    assert hosts["missing"]["status"] == "failed" and "not set up" in hosts["missing"]["reason"]
    assert hosts["gone"]["status"] == "unreachable" and "ssh" in hosts["gone"]["reason"]
    assert meta["status"] == "partial"
    assert "unreachable" in capsys.readouterr().out


def test_a_host_whose_run_fails_is_recorded_with_the_runs_own_error(tmp_path: Path) -> None:
    fake = fake_iobench(tmp_path, pause=0.5)
    inv = inventory(tmp_path, {"h": {"ansible_connection": "local", "iobench_dir": str(fake),
                                     "iobench_results_root": str(tmp_path / "r")}})
    directory, meta = fleet.run(inv, tmp_path / "out", None, ["--backend", "broken"], log=lambda m: None)
    (host,) = meta["hosts"]
    assert host["status"] == "failed" and "backend 'broken' does not exist" in host["reason"], host
    assert meta["status"] == "failed" and not (directory / "h").exists()


def test_inventory_errors_are_one_sentence(tmp_path: Path) -> None:
    from iobench.errors import UserError

    with pytest.raises(UserError, match="no inventory at"):
        fleet.inventory_hosts(tmp_path / "none.yml")
    empty = tmp_path / "empty.yml"
    empty.write_text("all:\n  hosts: {}\n")
    with pytest.raises(UserError, match="names no hosts"):
        fleet.inventory_hosts(empty)


def test_run_options_pass_to_each_host_without_what_the_controller_keeps() -> None:
    argv = ["--inventory", "i.yml", "--scenario", "s.toml", "--accel", "tcg", "--out=o", "--db", "x.duckdb",
            "--no-db", "--repeats", "2"]
    assert fleet_passthrough(argv) == ["--accel", "tcg", "--repeats", "2"]


def test_a_fleet_that_breaks_leaves_no_half_written_directory(tmp_path: Path, monkeypatch) -> None:
    inv = inventory(tmp_path, {"h": {"ansible_connection": "local", "iobench_dir": str(tmp_path)}})

    def broken(*args, **kwargs):
        raise RuntimeError("ansible-runner broke")

    monkeypatch.setattr(fleet, "_ansible", broken)
    with pytest.raises(RuntimeError, match="broke"):
        fleet.run(inv, tmp_path / "out", None, [], log=lambda m: None)
    assert list((tmp_path / "out").iterdir()) == []


def test_local_hosts_with_no_interpreter_set_run_and_are_one_machine(tmp_path: Path, capsys) -> None:
    """As a user writes them: two `ansible_connection: local` hosts, no interpreter, no machine. Ansible's
    interpreter discovery alone picked a pyenv shim on this machine kind that does not run (every host
    failed at "Gathering Facts"); iobench gives local hosts the controller's Python, and makes them one
    machine (this controller's cores), so they measure one after the other."""
    import socket

    import yaml

    fake = fake_iobench(tmp_path, pause=1.0)
    local = {"ansible_connection": "local", "iobench_dir": str(fake)}
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {
        "h1": {**local, "iobench_results_root": str(tmp_path / "r1")},
        "h2": {**local, "iobench_results_root": str(tmp_path / "r2")}}}}))
    assert main(["fleet", "run", "--inventory", str(inv), "--out", str(tmp_path / "out"), "--no-db"]) == 0
    (fleet_dir,) = (tmp_path / "out").glob("fleet-*")
    hosts = {h["name"]: h for h in json.loads((fleet_dir / "fleet.json").read_text())["hosts"]}
    assert {h["status"] for h in hosts.values()} == {"ok"}, hosts
    assert {h["machine"] for h in hosts.values()} == {socket.gethostname()}
    (s1, e1), (s2, e2) = window(hosts["h1"]), window(hosts["h2"])
    assert e1 <= s2 or e2 <= s1, "two hosts of this controller measured at the same time"
    assert "local connection: ansible_python_interpreter=" in capsys.readouterr().err


def test_local_hosts_that_would_install_into_one_directory_at_once_are_refused(tmp_path: Path, capsys) -> None:
    local = {"ansible_connection": "local", "iobench_setup": "install", "iobench_dir": str(tmp_path / "iob")}
    inv = inventory(tmp_path, {"a": {**local, "iobench_machine": "m1"}, "b": {**local, "iobench_machine": "m2"}})
    assert main(["fleet", "run", "--inventory", str(inv), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "hosts a and b are this controller" in err and "both install into" in err and "one iobench_machine" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_python_ansible_cannot_run_is_named_with_the_fix() -> None:
    said = fleet.explain_failure("h1", "Gathering Facts",
                                 "The following modules failed to execute: ansible.legacy.setup.\n")
    assert said.startswith("Gathering Facts: Ansible could not run Python on h1")
    assert "set ansible_python_interpreter" in said
    assert fleet.explain_failure("h1", "iobench run", "exit 2") == "iobench run: exit 2"
