"""The gate catches a real, injected regression and passes a same-config rerun.

Three real runs of the CI scenario under TCG (the gate's logic does not depend on
the accelerator, and TCG keeps this under ten minutes): a baseline run (5 repeats,
tolerances from its own noise), a rerun with nothing changed (must pass), and a
run where QEMU's virtio-net no longer offers TSO to the guest (`-global
virtio-net-pci.host_tso4=off`, as a QEMU upgrade that lost a default would): the
guest then sends every MTU-sized segment as its own frame, and the gate must fail
on virtio's guest->host cell and on nothing of e1000, a device the knob does not
touch. (virtio's host->guest cell is the same device: in one run its interrupts per
packet moved +10% at p = 0.03 against a +-8% tolerance, so it is not asserted on.)

Why this knob and not e1000's interrupt mitigation (`e1000.mitigation=off`, +30%
exits and interrupts per packet on e1000 guest->host against the committed
baseline): measured, the test's own 2 s baseline can carry 12% robust CV on that
cell (0.32-0.52 exits/packet in one run), which sets its tolerance to 38% and the
gate rightly lets +28% through; the test failed so once in three runs. Losing TSO
costs ~4x throughput and ~4x CPU per packet (471 against ~2000 Mbit/s, 37 against
~8 us/packet, measured), far outside any tolerance the noise can set; exits per
packet hardly move (0.09 against 0.10: kicks stay batched)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iobench import gate, results, scenario
from iobench.runner import run

pytestmark = pytest.mark.slow
CI_SCENARIO = Path(__file__).parent.parent / "scenarios" / "ci.toml"
REGRESSION = ("-global", "virtio-net-pci.host_tso4=off")


@pytest.fixture(scope="module")
def ci_runs(guest_image, tmp_path_factory: pytest.TempPathFactory) -> dict[str, results.RunData]:
    scn = scenario.load(CI_SCENARIO).with_overrides(accel="tcg", backends=("e1000", "virtio"), duration_s=2)
    out = tmp_path_factory.mktemp("ci-runs")
    runs = {}
    for name, qemu_args in (("baseline", ()), ("rerun", ()), ("regressed", REGRESSION)):
        report = run(scn.with_overrides(qemu_args=qemu_args), out / name, log=lambda m: None)
        assert report.status == "ok", report.cells
        runs[name] = results.load(report.directory)
    return runs


def print_table(result: gate.GateResult) -> None:
    print("\n" + " | ".join(gate.HEADERS))
    for row in gate.table_rows(result):
        print(" | ".join(row))


def test_a_same_config_rerun_passes(ci_runs) -> None:
    baseline = gate.make_baseline(ci_runs["baseline"], "ci-tcg-test")
    result = gate.gate(ci_runs["rerun"], baseline)
    print_table(result)
    assert result.blocking == [] and result.exit_code == 0, [v for v in result.verdicts if v.verdict == "worse"]


def test_virtio_without_tso_fails_the_gate_on_virtio_guest_to_host_not_on_e1000(ci_runs) -> None:
    baseline = gate.make_baseline(ci_runs["baseline"], "ci-tcg-test")
    result = gate.gate(ci_runs["regressed"], baseline)
    print_table(result)
    worse = {(v.backend, v.direction, v.metric) for v in result.verdicts if v.verdict == "worse"}
    assert result.exit_code == 1
    assert {m for b, d, m in worse if (b, d) == ("virtio", "tx")} & {"throughput_bps", "cpu_us_per_packet"}, worse
    # Nothing of the device model the knob does not touch: e1000's traps, interrupts and copies per packet.
    # Its throughput and CPU time follow the host's speed under TCG, which drifts between back-to-back runs:
    # measured, e1000 host->guest throughput -11% at p = 0.016 against this test's own baseline (1 of 3 runs).
    assert not [w for w in worse if w[0] == "e1000" and w[2] not in ("throughput_bps", "cpu_us_per_packet")], worse
    assert ci_runs["regressed"].meta["scenario"]["qemu_args"] == list(REGRESSION)  # recorded in run.json
