"""Request/response end to end under TCG: sockperf ping-pong against the guest's server under e1000
and virtio, and between namespaces for native; then the numbers, the tables and the figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from iobench.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rr_run(guest_image, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rr")
    code = main(["run", "--accel", "tcg", "--backend", "e1000", "--backend", "virtio", "--backend", "native",
                 "--workload", "rr", "--message-size", "64", "--duration", "3", "--omit", "0", "--repeats", "1",
                 "--out", str(out)])
    assert code == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run_dir


def test_rr_rows_count_transactions_and_their_cost(rr_run: Path) -> None:
    rows = {r["backend"]: r for r in csv.DictReader((rr_run / "rows.csv").open())}
    assert set(rows) == {"e1000", "virtio", "native"}
    for backend, r in rows.items():
        assert r["direction"] == "rr" and r["workload"] == "rr-tcp-l64B"
        assert int(r["transactions"]) > 100 and float(r["transactions_per_s"]) > 0
        assert 0 < float(r["latency_p50_us"]) <= float(r["latency_p99_us"]) <= float(r["latency_max_us"])
        # One request and one response frame per transaction cross the tap (or the native veth): TCP's ACKs
        # ride on the next message, so frames in both directions come to about twice the transactions.
        assert 1.9 < int(r["frames"]) / int(r["transactions"]) < 2.4, (backend, r["frames"], r["transactions"])
        if backend != "native":
            assert float(r["exits_per_transaction"]) > 0 and float(r["cpu_us_per_transaction"]) > 0
    # the story, per transaction: full emulation traps more than virtio
    assert float(rows["e1000"]["exits_per_transaction"]) > float(rows["virtio"]["exits_per_transaction"])
    assert (rr_run / "raw/e1000/r1-rr-tcp-l64B-rr.sockperf.txt").exists()


def test_rr_reaches_the_summary_report_and_figures(rr_run: Path) -> None:
    metrics = {(s["backend"], s["metric"]) for s in csv.DictReader((rr_run / "summary.csv").open())}
    assert {("e1000", "exits_per_transaction"), ("virtio", "latency_p99_us"), ("native", "transactions_per_s")} <= metrics
    report = (rr_run / "report.md").read_text()
    assert "## Request/response" in report and "emulator time" in report
    assert {p.name for p in (rr_run / "plots").glob("*.png")} >= {"latency-rr.png", "per-transaction-rr.png"}
    meta = json.loads((rr_run / "run.json").read_text())
    assert meta["scenario"]["kind"] == "rr" and meta["status"] == "ok"


def test_unpinned_runs_record_the_same_scheduling_facts(rr_run: Path) -> None:
    """placement none (the default): nothing pinned, and the same facts recorded: each role's threads
    with the CPUs the kernel allows them (all of iobench's), the CPU last run on, migrations, switches."""
    import os

    from iobench.hoststate import cpulist

    allowed = sorted(os.sched_getaffinity(0))
    for r in csv.DictReader((rr_run / "rows.csv").open()):
        assert r["placement"] == "none" and r["migrations"] != ""
        facts = json.loads((rr_run / "raw" / r["backend"] / f"r1-{r['workload']}-rr.sched.json").read_text())
        roles = {t["role"] for t in facts["tasks"]}
        assert roles >= ({"server"} if r["backend"] == "native" else {"vcpu0", "qemu-main"}), roles
        for t in facts["tasks"]:
            assert t["requested"] is None, t
            if t["allowed"] is not None:  # None: the peer ended between two samples (its switches still counted)
                assert cpulist(t["allowed"]) == allowed and t["last_cpu"] in allowed, t
            assert t["voluntary"] is not None, t
