"""Request/response workloads (kind = "rr"): sockperf ping-pong parsed from its real output
(sockperf 3.7, Debian 12, captured in a namespace of ours on 198.18.0.0/15), the scenario's rules,
and the per-transaction figures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from iobench import scenario, traffic
from iobench.errors import CellFailed, UserError
from iobench.schema import derive
from tests.test_measure import vm_tidy


def spec(protocol: str = "tcp", size: int = 64) -> traffic.TrafficSpec:
    return traffic.TrafficSpec("198.18.7.2", "rr", 5, 0, protocol, 1, size, kind="rr")


def test_sockperf_argv_asks_for_round_trips_without_warmup() -> None:
    assert traffic.client_argv(spec()) == ["sockperf", "ping-pong", "-i", "198.18.7.2", "-p", "11111", "-t", "5",
                                           "--full-rtt", "--dontwarmup", "--tcp", "-m", "64"]
    assert "--tcp" not in traffic.client_argv(spec("udp"))
    assert spec().raw_name == "sockperf.txt" and spec().tool == "sockperf"


@pytest.mark.parametrize(("protocol", "received", "runtime", "valid", "valid_runtime", "latency"), [
    ("tcp", 58100, 2.001, 44157, 1.550, {"p50": 43.534, "p99": 71.246, "max": 4187.732}),
    ("udp", 170920, 2.000, 148700, 1.550, {"p50": 10.125, "p90": 10.695, "p99": 11.376, "p999": 30.315,
                                           "max": 3627.348}),
])
def test_a_real_ping_pong_summary(data: Path, protocol: str, received: int, runtime: float, valid: int,
                                  valid_runtime: float, latency: dict[str, float]) -> None:
    """The numbers are read off the captured files by eye: [Total Run] (all round trips of the run,
    the window the counters cover), [Valid Duration] (sockperf's trimmed rate) and the percentiles."""
    r = traffic.parse_rr((data / f"sockperf-pingpong-{protocol}-64.txt").read_text(), 64)
    assert r.transactions == received
    assert r.transactions_per_s == pytest.approx(valid / valid_runtime, abs=0.1)
    assert r.bits_per_second == pytest.approx(2 * 64 * 8 * received / runtime)
    assert r.latency_us is not None and {k: r.latency_us[k] for k in latency} == latency


def test_sockperf_that_completed_nothing_is_a_failed_cell() -> None:
    text = "sockperf: == version #3.7 ==\nsockperf: ERROR: Failed to connect to 198.18.7.2:11111 (errno=111)\n"
    with pytest.raises(CellFailed, match="ERROR: Failed to connect"):
        traffic.parse_rr(text, 64)


def test_rr_scenarios_have_one_direction_of_their_own_and_sockperfs_sizes(tmp_path: Path) -> None:
    s = scenario.Scenario().with_overrides(kind="rr", message_bytes=(14, 1024))
    assert [w.label for w in s.workloads] == ["rr-tcp-l14B", "rr-tcp-l1024B"]
    assert [s.cell_directions(w) for w in s.workloads] == [("rr",), ("rr",)] and s.cells_per_backend_round == 2
    assert scenario.Scenario().cells_per_backend_round == 2  # stream: the scenario's directions
    with pytest.raises(UserError, match="one transaction in flight"):
        scenario.Scenario().with_overrides(kind="rr", streams=4)
    with pytest.raises(UserError, match="below 64 are not measured"):
        scenario.Scenario().with_overrides(message_bytes=(14,))
    f = tmp_path / "x.toml"
    f.write_text('[workload]\nkind = "pingpong"\n')
    with pytest.raises(UserError, match=r"\[workload\] kind = 'pingpong' is not allowed"):
        scenario.load(f)
    assert scenario.load(Path(__file__).parent.parent / "scenarios" / "latency.toml").kind == "rr"


def test_per_transaction_figures_divide_by_the_clients_transactions(data: Path) -> None:
    base, *_ = vm_tidy(data, "e1000", "rx")
    from iobench.schema import Row

    row = Row(**{k: base[k] for k in Row.__dataclass_fields__})
    r = derive(replace(row, transactions=1000))
    assert r["exits_per_transaction"] == pytest.approx(row.exits / 1000, abs=1e-4)
    assert r["cpu_us_per_transaction"] == pytest.approx(base["cpu_us_per_packet"] * base["packets"] / 1000, rel=1e-3)
    assert derive(row)["exits_per_transaction"] is None  # a stream row has no transactions


def test_replies_that_stop_mid_window_are_a_hung_path_booted_again(data: Path) -> None:
    """Captured in the lab (ci-kvm, vhost-user round 5): 182 replies, then the switch path hung and
    sockperf waited out its 3 s; the next cell's sockperf did not finish at all. A path that stops
    answering is the guest's (or switch's) hang, retried on a new boot, not a failed measurement."""
    text = (data / "sockperf-pingpong-udp-stopped-answering.txt").read_text()
    with pytest.raises(traffic.GuestUnresponsive, match="stopped answering: sockperf got 182 replies.*request 183"):
        traffic.parse_rr(text, 64)
    never = text.replace("ReceivedMessages=182", "ReceivedMessages=0")
    with pytest.raises(CellFailed) as info:  # never answered at all: a failed cell, as before
        traffic.parse_rr(never, 64)
    assert not isinstance(info.value, traffic.GuestUnresponsive)
