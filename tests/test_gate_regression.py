"""The gate catches a real, injected regression and passes a same-config rerun.

Three real runs of the CI scenario under TCG (the gate's logic does not depend on
the accelerator, and TCG keeps this under ten minutes): a baseline run (5 repeats,
tolerances from its own noise), a rerun with nothing changed (must pass), and a
run with e1000's interrupt mitigation switched off in QEMU (`-global
e1000.mitigation=off`, the knob that makes QEMU ignore the guest driver's
interrupt throttling): the gate must fail on e1000's interrupt and exit figures and
on nothing of virtio, which the knob does not touch."""

from __future__ import annotations

from pathlib import Path

import pytest

from iobench import gate, results, scenario
from iobench.runner import run

pytestmark = pytest.mark.slow
CI_SCENARIO = Path(__file__).parent.parent / "scenarios" / "ci.toml"
REGRESSION = ("-global", "e1000.mitigation=off")


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


def test_e1000_without_interrupt_mitigation_fails_the_gate_on_e1000_only(ci_runs) -> None:
    baseline = gate.make_baseline(ci_runs["baseline"], "ci-tcg-test")
    result = gate.gate(ci_runs["regressed"], baseline)
    print_table(result)
    worse = {(v.backend, v.direction, v.metric) for v in result.verdicts if v.verdict == "worse"}
    assert result.exit_code == 1
    assert {b for b, _, _ in worse} == {"e1000"}  # virtio is untouched by the knob, and passes
    assert {m for _, _, m in worse} & {"irq_injections_per_packet", "exits_per_packet"}
    assert ci_runs["regressed"].meta["scenario"]["qemu_args"] == list(REGRESSION)  # recorded in run.json
