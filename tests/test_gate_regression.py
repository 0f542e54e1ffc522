"""The gate catches a real, injected regression and passes a same-config rerun.

Three real runs of the CI scenario under TCG (the gate's logic does not depend on
the accelerator, and TCG keeps this under ten minutes): a baseline run (5 repeats,
tolerances from its own noise), a rerun with nothing changed (must pass), and a
run where QEMU's virtio-net no longer offers TSO to the guest (`-global
virtio-net-pci.host_tso4=off`, as a QEMU upgrade that lost a default would): the
guest then sends every MTU-sized segment as its own frame, and the gate must fail
on virtio's guest->host cell and on nothing of e1000, a device the knob does not
touch. (virtio's host->guest cell is the same device: in one run its interrupts per
packet moved +10% at p = 0.03 against a +-8% tolerance; it is not run here.)

Why this knob and not e1000's interrupt mitigation (`e1000.mitigation=off`, +30%
exits and interrupts per packet on e1000 guest->host against the committed
baseline): measured, the test's own 2 s baseline can carry 12% robust CV on that
cell (0.32-0.52 exits/packet in one run), which sets its tolerance to 38% and the
gate rightly lets +28% through; the test failed so once in three runs. Losing TSO
costs ~4x throughput and ~4x CPU per packet (471 against ~2000 Mbit/s, 37 against
~8 us/packet, measured), far outside any tolerance the noise can set; exits per
packet hardly move (0.09 against 0.10: kicks stay batched)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from iobench import gate, results, scenario
from iobench.cli import main
from iobench.runner import run

pytestmark = pytest.mark.slow
CI_SCENARIO = Path(__file__).parent.parent / "scenarios" / "ci.toml"
REGRESSION = ("-global", "virtio-net-pci.host_tso4=off")


@pytest.fixture(scope="module")
def ci_runs(guest_image, tmp_path_factory: pytest.TempPathFactory) -> dict[str, results.RunData]:
    # the stream cells only, guest->host only: the knob below is a guest->host stream regression (the scenario's
    # rr cells and host->guest windows would add four minutes to the test command)
    scn = scenario.load(CI_SCENARIO).with_overrides(accel="tcg", backends=("e1000", "virtio"), duration_s=2,
                                                    more_workloads=(), directions=("tx",))
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


def test_a_baseline_from_another_host_kernel_is_not_comparable_for_host_bound_metrics(ci_runs, tmp_path: Path,
                                                                                      capsys) -> None:
    """What broke CI on a fresh clone: the host kernel changed under an unchanged baseline. Under TCG the
    metrics that follow the host's speed are then not comparable (exit 2, the kernels named), never worse;
    copies per packet, which do not, are still judged. The run's scenario (ci.toml) reports them instead."""
    baseline = gate.make_baseline(ci_runs["baseline"], "ci-tcg-test")
    baseline["environment"]["kernel"] = "6.1.0-other-host"
    path = tmp_path / "other-kernel.json"
    path.write_text(json.dumps(baseline))
    rerun = ci_runs["rerun"]
    staged = tmp_path / "rerun"
    shutil.copytree(rerun.directory, staged)
    meta = json.loads((staged / "run.json").read_text())
    meta["scenario"]["on_host_change"] = "not-comparable"
    (staged / "run.json").write_text(json.dumps(meta))
    code = main(["gate", str(staged), "--baseline", str(path), "--format", "json", "--output",
                 str(tmp_path / "v.json"), "--no-db"])
    verdicts = json.loads((tmp_path / "v.json").read_text())
    assert code == 2, verdicts
    assert "host kernel 6.1.0-other-host -> " in verdicts["host_changed"][0]
    by_metric = {(v["backend"], v["direction"], v["metric"]): v for v in verdicts["verdicts"]}
    assert by_metric[("e1000", "tx", "exits_per_packet")]["verdict"] == "not comparable"
    assert by_metric[("virtio", "tx", "throughput_bps")]["verdict"] == "not comparable"
    copies = {v["verdict"] for k, v in by_metric.items() if k[2] == "copies_per_packet_measured"}
    assert copies <= {"ok", "inconclusive", "better"}
    assert "NOT COMPARABLE (host-bound metrics)" in (staged / "gate.md").read_text()
    capsys.readouterr()
    # as the CI scenario says (on_host_change = "report"): shown, not gated
    assert main(["gate", str(rerun.directory), "--baseline", str(path), "--no-db"]) == 0
    assert "reported, not gated" in capsys.readouterr().out
