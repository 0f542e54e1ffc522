"""Paced workloads (kind = "paced"): iperf3 UDP at a fixed offered datagram rate, parsed from its
real output (iperf3 3.12, Debian 12, captured in a namespace of ours: 100 datagrams of 1000 bytes in
1 s, both ways), the scenario's rules (including several [[workload]] tables in one file), the
per-datagram figures, and, under TCG, a real paced run end to end."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from iobench import scenario, traffic
from iobench.cli import main
from iobench.errors import CellFailed, UserError
from iobench.schema import Row, derive
from tests.test_measure import vm_tidy
from tests.test_notebooks import execute, images


def spec(direction: str = "rx", rate: int = 1000, size: int = 1000) -> traffic.TrafficSpec:
    return traffic.TrafficSpec("198.18.7.2", direction, 5, 1, "udp", 1, size, kind="paced", rate_pps=rate)


def test_paced_argv_offers_the_rate_as_iperf3_bits_and_spaces_the_datagrams() -> None:
    assert traffic.client_argv(spec()) == ["iperf3", "-c", "198.18.7.2", "-J", "-t", "5", "-O", "0", "-u",
                                           "-b", "8000000", "-l", "1000", "--pacing-timer", "1000"]
    # 20000/s: a datagram every 50 us, so iperf3's pacing tick is 50 us, not its default 1 ms (bursts of 20)
    fast = traffic.client_argv(spec("tx", 20000, 64))
    assert fast[fast.index("-b") + 1] == str(20000 * 64 * 8) and fast[fast.index("--pacing-timer") + 1] == "50"
    assert fast[-1] == "-R"


@pytest.mark.parametrize("direction", ["rx", "tx"])
def test_a_real_paced_run_is_read_from_the_sender_and_the_receiver(data: Path, direction: str) -> None:
    """Read off the captured files by eye: sum_sent 100 packets in 1.0001 s, sum_received 100 counted, 0 lost."""
    r = traffic.parse_paced((data / f"iperf3-udp-paced-{direction}.json").read_text())
    assert r.paced is not None
    assert r.paced["datagrams"] == 100 and r.paced["loss_pct"] == 0
    assert r.paced["offered_pps"] == pytest.approx(100, abs=0.1)
    assert r.paced["achieved_pps"] == pytest.approx(100, abs=0.1)
    assert r.paced["jitter_ms"] >= 0 and r.bytes_received == 100_000


def test_loss_is_the_receivers_lost_count_over_what_it_counted(data: Path) -> None:
    raw = json.loads((data / "iperf3-udp-paced-rx.json").read_text())
    raw["end"]["sum_received"].update(packets=100, lost_packets=7, bytes=93_000, seconds=1.0)
    r = traffic.parse_paced(json.dumps(raw))
    assert r.paced is not None and r.paced["loss_pct"] == 7.0 and r.paced["achieved_pps"] == 93.0
    del raw["end"]["sum_sent"]
    with pytest.raises(CellFailed, match="no UDP datagram counts"):
        traffic.parse_paced(json.dumps(raw))


def test_paced_workloads_sweep_rates_and_sizes_and_refuse_what_cannot_be_paced() -> None:
    s = scenario.Scenario().with_overrides(kind="paced", protocol="udp", rates_pps=(1000, 20000), message_bytes=(1024,))
    assert [w.label for w in s.workloads] == ["paced-udp-1000pps-l1024B", "paced-udp-20000pps-l1024B"]
    assert s.cells_per_backend_round == 4  # both directions, like a stream
    for bad, match in (({"protocol": "tcp"}, 'protocol = "udp"'), ({"rates_pps": ()}, "needs rates_pps"),
                       ({"message_bytes": (0,)}, "datagram's size"), ({"streams": 2}, "streams = 1")):
        given = {"kind": "paced", "protocol": "udp", "rates_pps": (1000,), "message_bytes": (1024,), **bad}
        with pytest.raises(UserError, match=match):
            scenario.Scenario().with_overrides(**given)
    with pytest.raises(UserError, match="for kind = \"paced\" only"):
        scenario.Scenario().with_overrides(rates_pps=(1000,))


def test_several_workload_tables_run_in_one_scenario(tmp_path: Path) -> None:
    f = tmp_path / "mixed.toml"
    f.write_text('[[workload]]\nkind = "rr"\nmessage_bytes = [64]\n\n'
                 '[[workload]]\nkind = "rr"\nprotocol = "udp"\nmessage_bytes = [64, 1024]\n\n'
                 '[[workload]]\nkind = "paced"\nprotocol = "udp"\nmessage_bytes = [1024]\nrates_pps = [500, 5000]\n')
    s = scenario.load(f)
    assert [w.label for w in s.workloads] == ["rr-tcp-l64B", "rr-udp-l64B", "rr-udp-l1024B",
                                              "paced-udp-500pps-l1024B", "paced-udp-5000pps-l1024B"]
    assert s.kinds == {"rr", "paced"} and s.cells_per_backend_round == 3 + 2 * 2
    f.write_text('[[workload]]\nkind = "rr"\n\n[[workload]]\nkind = "paced"\nprotocol = "udp"\nmessage_bytes = [1024]\n')
    with pytest.raises(UserError, match=r"\[\[workload\]\] #2: .*needs rates_pps"):
        scenario.load(f)
    f.write_text('[[workload]]\nkind = "rr"\n\n[[workload]]\nrate = 5\n')
    with pytest.raises(UserError, match=r"#2: unknown key 'rate'"):
        scenario.load(f)


def test_the_shipped_latency_scenario_has_rr_both_protocols_and_two_paced_rates() -> None:
    s = scenario.load(Path(__file__).parents[1] / "scenarios" / "latency.toml")
    labels = [w.label for w in s.workloads]
    for protocol in ("tcp", "udp"):
        assert {f"rr-{protocol}-l{m}B" for m in (14, 64, 1024, 16384)} <= set(labels)
    assert len([w for w in s.workloads if w.kind == "paced"]) >= 2


def test_per_datagram_figures_divide_by_the_datagrams_offered(data: Path) -> None:
    base, *_ = vm_tidy(data, "e1000", "rx")
    row = Row(**{k: base[k] for k in Row.__dataclass_fields__})
    d = derive(replace(row, datagrams=5000, offered_pps=1000.0, achieved_pps=999.0, loss_pct=0.1, jitter_ms=0.02))
    assert d["exits_per_datagram"] == pytest.approx(row.exits / 5000, abs=1e-4)
    assert d["cpu_us_per_datagram"] == pytest.approx(base["cpu_us_per_packet"] * base["packets"] / 5000, rel=1e-3)
    assert derive(row)["exits_per_datagram"] is None  # a stream row has no datagrams


@pytest.mark.slow
def test_rr_and_paced_in_one_scenario_under_tcg_count_datagrams_loss_and_cost(guest_image, tmp_path: Path) -> None:
    """One scenario, two [[workload]] tables: rr UDP 64 B and paced UDP 1024 B at 200/s, on e1000, virtio
    and native. Paced: every datagram offered arrives at this rate (loss below 5%), the tap's frames
    agree with iperf3's datagrams, e1000 traps more per datagram than virtio; the report, the figure,
    the summary and the overview notebook carry both workloads."""
    f = tmp_path / "mixed.toml"
    f.write_text('[run]\naccel = "tcg"\nbackends = ["e1000", "virtio", "native"]\nduration_s = 3\nomit_s = 0\n'
                 'repeats = 1\n\n[[workload]]\nkind = "rr"\nprotocol = "udp"\nmessage_bytes = [64]\n\n'
                 '[[workload]]\nkind = "paced"\nprotocol = "udp"\nmessage_bytes = [1024]\nrates_pps = [200]\n')
    out = tmp_path / "out"
    assert main(["run", "--scenario", str(f), "--out", str(out)]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    all_rows = list(csv.DictReader((run_dir / "rows.csv").open()))
    assert {r["workload"] for r in all_rows if r["direction"] == "rr"} == {"rr-udp-l64B"}
    rows = {(r["backend"], r["direction"]): r for r in all_rows if r["direction"] != "rr"}
    assert set(rows) == {(b, d) for b in ("e1000", "virtio", "native") for d in ("rx", "tx")}
    for (backend, direction), r in rows.items():
        assert r["workload"] == "paced-udp-200pps-l1024B"
        assert 150 < float(r["offered_pps"]) < 250 and float(r["loss_pct"]) < 5, (backend, direction, r["loss_pct"])
        # the datagrams cross the tap one frame each (iperf3's control connection adds a few)
        assert 0.95 < int(r["frames"]) / int(r["datagrams"]) < 1.3, (backend, direction, r["frames"], r["datagrams"])
        if backend != "native":
            assert float(r["exits_per_datagram"]) > 0 and float(r["cpu_us_per_datagram"]) > 0
    for d in ("rx", "tx"):
        assert float(rows[("e1000", d)]["exits_per_datagram"]) > float(rows[("virtio", d)]["exits_per_datagram"])
    report = (run_dir / "report.md").read_text()
    assert "## Paced" in report and "paced-udp-200pps-l1024B" in report and "## Request/response" in report
    assert {p.name for p in (run_dir / "plots").glob("*.png")} >= {"paced.png", "latency-rr.png"}
    metrics = {(s["backend"], s["metric"]) for s in csv.DictReader((run_dir / "summary.csv").open())}
    assert {("e1000", "exits_per_datagram"), ("virtio", "loss_pct"), ("native", "achieved_pps")} <= metrics
    nb = execute("overview.ipynb", str(run_dir))
    texts = str([c.get("outputs") for c in nb.cells])
    assert "exits_per_datagram" in texts and "exits_per_transaction" in texts and images(nb) >= 3
