"""A real two-host fleet through Ansible on this machine (the issue's "done when"): two inventory
entries on the local connection declared as one physical machine run the real iobench under TCG
one after the other; their results come back labelled and merged; the history holds both and
answers a query; the gate judges one against the history; the fleet and history notebooks run
against that database. And Ctrl-C in the middle of a fleet leaves nothing behind on either host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iobench import results
from iobench.cli import main

from .conftest import iobench_objects
from .test_notebooks import execute, images

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent
QUICK = ROOT / "scenarios" / "quick.toml"


def installed_here(tmp_path: Path) -> Path:
    """An iobench 'set up' in a directory of its own, as the playbook expects (DIR/.venv/bin/iobench),
    running the code under test with this interpreter."""
    root = tmp_path / "iobench-host"
    (root / ".venv" / "bin").mkdir(parents=True)
    wrapper = root / ".venv" / "bin" / "iobench"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m iobench \"$@\"\n")
    wrapper.chmod(0o755)
    return root


def two_hosts_one_machine(tmp_path: Path, install_b: bool = False) -> Path:
    """host-a has iobench set up already (checked); host-b, with `install_b`, gets it installed by the
    playbook: the controller's source unpacked and the README's setup.sh run there."""
    import yaml

    where = installed_here(tmp_path)
    hosts = {name: {"ansible_connection": "local", "iobench_machine": "this-machine", "iobench_dir": str(where),
                    "iobench_results_root": str(tmp_path / f"on-{name}")} for name in ("host-a", "host-b")}
    if install_b:
        hosts["host-b"] |= {"iobench_setup": "install", "iobench_dir": str(tmp_path / "fresh-install")}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts, "vars": {"ansible_python_interpreter": sys.executable}}}))
    return path


@pytest.fixture(scope="module")
def fleet_run(guest_image, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("fleet")
    inventory = two_hosts_one_machine(tmp, install_b=True)
    started = time.monotonic()
    code = main(["fleet", "run", "--inventory", str(inventory), "--scenario", str(QUICK), "--out", str(tmp / "out"),
                 "--accel", "tcg", "--backend", "e1000", "--direction", "rx"])
    wall = time.monotonic() - started
    (directory,) = (tmp / "out").glob("fleet-*")
    print(f"two-host fleet wall time: {wall:.0f} s")
    return code, directory, json.loads((directory / "fleet.json").read_text()), tmp / "out" / "iobench.duckdb"


def test_two_hosts_of_one_machine_run_one_after_the_other_and_come_back_labelled(fleet_run) -> None:
    code, directory, meta, _ = fleet_run
    assert code == 0 and meta["status"] == "ok", meta
    hosts = {h["name"]: h for h in meta["hosts"]}
    assert set(hosts) == {"host-a", "host-b"}
    assert hosts["host-b"]["iobench"].startswith("iobench ")  # installed by the playbook, then it ran
    windows = []
    for h in hosts.values():
        run = results.load(directory / h["results"])  # each host's own results directory, readable as any
        assert run.meta["status"] == "ok" and run.meta["accel"]["accel"] == "tcg"
        assert set(run.rows["backend"]) == {"e1000"} and h["machine"] == "this-machine" and h["facts"]["kernel"]
        windows.append((run.meta["started"], run.meta["finished"]))  # the measurement windows of the runs
    (a0, a1), (b0, b1) = sorted(windows)
    assert a1 <= b0, f"the two hosts of one machine measured at the same time: {windows}"
    merged = __import__("pandas").read_csv(directory / "fleet_rows.csv")
    assert sorted(set(merged["host"])) == ["host-a", "host-b"] and (merged["backend"] == "e1000").all()


def test_the_history_holds_both_answers_a_query_and_feeds_the_gate(fleet_run, capsys) -> None:
    _, directory, meta, db = fleet_run
    got = results.query("SELECT r.host, count(*) AS rows, median(w.exits_per_packet) AS exits FROM rows w "
                        "JOIN runs r USING (run_id) WHERE r.fleet_id = ? GROUP BY r.host ORDER BY r.host",
                        db, [meta["fleet_id"]])
    assert list(got["host"]) == ["host-a", "host-b"] and (got["rows"] == 1).all() and (got["exits"] > 0).all()
    assert main(["db", "query", "SELECT host, machine, accel, status FROM runs ORDER BY host", "--db", str(db)]) == 0
    assert "host-b" in capsys.readouterr().out
    # the gate takes its baseline from the history: host-a's run (the earlier run of this scenario) is found,
    # and refused as a baseline, since one repeat says nothing of the noise (test_history.py judges against
    # five earlier runs and records the verdicts)
    later = max(meta["hosts"], key=lambda h: h["end"])
    capsys.readouterr()
    code = main(["gate", str(directory / later["results"]), "--baseline-history", "1", "--db", str(db)])
    assert code == 2 and "hold 1 repeat(s) in all; a baseline needs at least 5" in capsys.readouterr().err


def test_the_fleet_and_history_notebooks_run_against_the_database(fleet_run) -> None:
    *_, db = fleet_run
    old = os.environ.get("IOBENCH_DB")
    os.environ["IOBENCH_DB"] = str(db)
    try:
        fleet_nb = execute("fleet.ipynb", "")
        history_nb = execute("history.ipynb", "")
    finally:
        os.environ.pop("IOBENCH_DB") if old is None else os.environ.__setitem__("IOBENCH_DB", old)
    assert images(fleet_nb) >= 3 and "host-b" in str(fleet_nb.cells[2].outputs)
    assert images(history_nb) >= 1


def test_ctrl_c_in_a_fleet_leaves_nothing_behind_on_either_host(guest_image, tmp_path: Path) -> None:
    before = iobench_objects()
    inventory = two_hosts_one_machine(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "iobench", "fleet", "run", "--inventory", str(inventory),
                             "--scenario", str(QUICK), "--out", str(tmp_path / "out"), "--accel", "tcg"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(o.startswith("process") for o in iobench_objects() - before):
        time.sleep(0.5)  # until the first host's QEMU runs
    assert proc.poll() is None, proc.communicate()[0]
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    print(out)
    assert proc.returncode == 130, out
    meta = json.loads(next((tmp_path / "out").glob("fleet-*/fleet.json")).read_text())
    assert meta["status"] == "interrupted" and meta["interrupted_by"] == "SIGINT"
    assert {h["status"] for h in meta["hosts"]} <= {"interrupted", "failed"}, meta["hosts"]
    left = iobench_objects() - before
    assert not left, f"left behind: {left}"
