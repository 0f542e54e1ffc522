"""iperf3 -J parsing on captured real output (iperf 3.12 against the guest)."""

from pathlib import Path

import pytest

from iobench import traffic
from iobench.errors import CellFailed


def test_parse_host_to_guest_result(data: Path) -> None:
    r = traffic.parse((data / "run-tcg/e1000-rx.iperf3.json").read_text())
    assert r.bits_per_second > 1e6
    assert r.bytes_received > 0 and r.bytes_sent >= r.bytes_received


def test_parse_reverse_result(data: Path) -> None:
    r = traffic.parse((data / "run-tcg/virtio-tx.iperf3.json").read_text())
    assert r.raw["start"]["test_start"]["reverse"] == 1
    assert r.bits_per_second > 1e6


@pytest.mark.parametrize(("name", "text"), [
    ("iperf3-error-refused.json", "Connection refused"),
    ("iperf3-error-no-route.json", "Network is unreachable"),
])
def test_iperf3_errors_become_failed_cells_with_its_own_text(data: Path, name: str, text: str) -> None:
    with pytest.raises(CellFailed, match=text):
        traffic.parse((data / name).read_text())


def test_non_json_output_is_a_failed_cell() -> None:
    with pytest.raises(CellFailed, match="no JSON"):
        traffic.parse("iperf3: error - something")


def test_client_argv_uses_reverse_for_guest_to_host() -> None:
    spec = traffic.TrafficSpec("198.18.0.2", "tx", 5, 1)
    assert traffic.client_argv(spec) == ["iperf3", "-c", "198.18.0.2", "-J", "-t", "5", "-O", "1", "-R"]
    assert "-R" not in traffic.client_argv(traffic.TrafficSpec("198.18.0.2", "rx", 5, 1))


def test_a_guest_that_stopped_answering_is_told_from_one_that_refuses() -> None:
    """iperf3's own error texts: "No route to host" (ARP gets no answer: the guest's network is gone)
    makes the VM suspect; "Connection refused" (something answered: no server) fails just the cell."""
    from iobench.errors import CellFailed

    hung = '{"error": "unable to connect to server: No route to host"}'
    refused = '{"error": "unable to connect to server: Connection refused"}'
    with pytest.raises(traffic.GuestUnresponsive):
        traffic.parse(hung)
    with pytest.raises(CellFailed) as info:
        traffic.parse(refused)
    assert not isinstance(info.value, traffic.GuestUnresponsive)
