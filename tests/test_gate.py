"""The gate's statistics and verdicts. The exact U test is checked against values from
tables; verdicts and exports on the repeats of a real lab run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from iobench import gate, results
from iobench.cli import main
from iobench.schema import HIGHER_IS_BETTER


def test_exact_mann_whitney_matches_the_tables() -> None:
    # 5 vs 5, complete separation: 2 / C(10, 5) = 2/252
    assert gate.mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    # 3 vs 3, complete separation: 2/20, the smallest two-sided p there is
    assert gate.mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    # identical samples: no evidence at all
    assert gate.mann_whitney_p([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == 1.0
    # one swap among 5 vs 5: U = 1, P(U <= 1) = 2/252
    assert gate.mann_whitney_p([1, 2, 3, 4, 6], [5, 7, 8, 9, 10]) == pytest.approx(4 / 252)
    assert sum(gate._u_distribution(4, 6)) == math.comb(10, 4)


def test_few_repeats_fall_back_to_disjoint_ranges() -> None:
    assert gate.separated([1, 2, 3], [4, 5, 6]) == (True, "ranges apart")
    assert gate.separated([1, 2, 5], [4, 5, 6]) == (False, "ranges overlap")
    # 5 vs 2 and 3 vs 4 repeats: the smallest two-sided U-test p is 2/21 = 0.095 and 2/35 = 0.057,
    # so the U test could never call them apart; completely separated samples are apart by range
    assert gate.separated([1, 2, 3, 4, 5], [8, 9]) == (True, "ranges apart")
    assert gate.separated([1, 2, 3], [7, 8, 9, 10]) == (True, "ranges apart")
    assert gate.separated([1, 2, 3, 4, 5, 6, 7], [9, 10]) == (True, "ranges apart")  # 2/36 = 0.056
    assert gate.separated([1, 2, 3, 4, 5, 6, 7, 8], [9, 10]) == (True, "U test p=0.044")  # 2/45
    assert gate.separated([1, 2, 3, 4, 5], [7, 8, 9]) == (True, "U test p=0.036")  # 2/56
    apart, test = gate.separated([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert apart and test.startswith("U test p=0.008")


RULE = {"higher_is_better": False, "tolerance": 0.10, "floor": 0.002}


def test_worse_needs_both_the_tolerance_and_separation() -> None:
    base = [0.100, 0.101, 0.099, 0.100, 0.102]
    assert gate.judge(base, [0.130, 0.131, 0.129, 0.133, 0.128], RULE)[2] == "worse"
    assert gate.judge(base, [0.105, 0.106, 0.104, 0.105, 0.107], RULE)[2] == "same"  # separated, within 10%
    assert gate.judge(base, [0.08, 0.20, 0.09, 0.21, 0.10], RULE)[2] == "same"  # 2x median but noise overlaps
    assert gate.judge(base, [0.070, 0.071, 0.069, 0.070, 0.072], RULE)[2] == "better"
    tiny = [0.0001] * 5
    assert gate.judge(tiny, [0.0009, 0.0008, 0.0009, 0.0010, 0.0009], RULE)[2] == "same"  # under the floor
    up = dict(RULE, higher_is_better=True)
    assert gate.judge(base, [0.130, 0.131, 0.129, 0.133, 0.128], up)[2] == "better"


def lab_run(data: Path) -> results.RunData:
    return results.load(data / "results-v2-lab")


def test_tolerance_follows_the_cells_robust_noise() -> None:
    assert gate.robust_cv([10, 10, 10, 10, 10]) == 0.0 and gate.tolerance([10] * 5) == gate.TOL_MIN
    # one disturbed repeat does not set the noise: MAD of (0, 0, 1, 1, 40) around 10 is 1
    assert gate.robust_cv([9, 10, 10, 11, 50]) == pytest.approx(0.14826)
    assert gate.tolerance([9, 10, 10, 11, 50]) == 0.45
    assert gate.tolerance([1, 10, 20, 30, 100]) == gate.TOL_MAX


def test_baseline_needs_five_repeats(data: Path) -> None:
    with pytest.raises(Exception, match="at least 5"):
        gate.make_baseline(lab_run(data), "x")


def fake_baseline(run: results.RunData, scale: dict[str, float]) -> dict:
    """A baseline holding the run's own values, scaled per metric (to stage a change)."""
    values = gate.samples(run)
    return {"baseline_version": 1, "name": "t", "run_id": "r", "created": "2026-11-30", "how": "test",
            "environment": gate.environment(run.meta),
            "metrics": {m: {"higher_is_better": HIGHER_IS_BETTER[m], "floor": r.floor, "unit": r.unit,
                            } for m, r in gate.GATED.items()},
            "cells": [{"backend": k[0], "direction": k[1], "workload": k[2], "metric": k[3],
                       "values": [v * scale.get(k[3], 1.0)] * 3, "tolerance": 0.1}
                      for k, v0 in values.items() for v in v0]}


def test_gate_on_a_real_run_and_what_blocks_it(data: Path) -> None:
    run = lab_run(data)
    same = gate.gate(run, fake_baseline(run, {}))
    assert same.exit_code == 0 and {v.verdict for v in same.verdicts} == {"same"}
    # a baseline whose exits were 30% lower: the run's single repeat sits outside its range
    worse = gate.gate(run, fake_baseline(run, {"exits_per_packet": 0.7}))
    assert worse.exit_code == 1
    assert {v.metric for v in worse.verdicts if v.verdict == "worse"} == {"exits_per_packet"}
    other = fake_baseline(run, {})
    other["environment"] = dict(other["environment"], accel="tcg", exit_source="tcg-traps")
    blocked = gate.gate(run, other)
    assert blocked.exit_code == 2 and "accelerator differs" in blocked.blocking[0]
    extra = fake_baseline(run, {})
    extra["cells"].append({"backend": "e1000", "direction": "rx", "workload": "udp-P1-ldefault",
                           "metric": "exits_per_packet", "values": [1.0]})
    assert gate.gate(run, extra).exit_code == 2
    upgraded = fake_baseline(run, {})
    upgraded["environment"] = dict(upgraded["environment"], qemu="QEMU emulator version 9.2.0")
    result = gate.gate(run, upgraded)
    assert result.exit_code == 0 and any("QEMU changed" in n for n in result.notes)


def test_a_run_with_failed_cells_or_missing_repeats_is_not_comparable(data: Path) -> None:
    """A failed cell or a missing repeat once passed silently (samples() dropped it)."""
    run = lab_run(data)
    base = fake_baseline(run, {})
    failed = results.RunData(run.directory, {**run.meta, "status": "partial", "cells": [
        *run.meta["cells"], {"backend": "virtio", "direction": "tx", "repeat": 2, "workload": "tcp-P1-ldefault",
                             "status": "failed", "reason": "gave up"}]}, run.rows, run.summary, run.timeline)
    result = gate.gate(failed, base)
    assert result.exit_code == 2 and "status is partial, 1 failed cell(s): virtio/tx/r2" in result.blocking[0]
    lenient = gate.gate(failed, base, allow_partial=True)
    assert lenient.exit_code == 0 and any("failed cell" in n for n in lenient.notes)
    # the scenario asked for 2 repeats; every cell has 1
    fewer = results.RunData(run.directory, {**run.meta, "scenario": {**run.meta["scenario"], "repeats": 2}},
                            run.rows, run.summary, run.timeline)
    result = gate.gate(fewer, base)
    assert result.exit_code == 2
    assert any("fewer repeats than the run's 2" in b and "e1000/rx/tcp-P1-ldefault/exits_per_packet (1 of 2)" in b
               for b in result.blocking), result.blocking


def test_each_verdict_says_the_smallest_change_it_can_detect(data: Path) -> None:
    run = lab_run(data)
    result = gate.gate(run, fake_baseline(run, {}))
    by = {(v.backend, v.direction, v.metric): v for v in result.verdicts}
    v = by[("e1000", "rx", "exits_per_packet")]
    assert v.detectable == pytest.approx(max(0.1 * v.baseline, 0.002))
    copies = by[("vhost", "rx", "copies_per_packet_measured")]  # ~0: the floor decides
    assert copies.detectable == 0.05
    row = next(r for r in gate.table_rows(result) if r[:4] == ("e1000", "rx", "tcp-P1-ldefault", "exits_per_packet"))
    assert row[gate.HEADERS.index("detects ±")] == gate.fmt("exits_per_packet", v.detectable)


def test_gate_command_exit_codes_and_exports(data: Path, tmp_path: Path, capsys) -> None:
    run = lab_run(data)
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps(fake_baseline(run, {"cpu_us_per_packet": 0.5})))
    summary = tmp_path / "summary.md"
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(data / "results-v2-lab", copy)
    assert main(["gate", str(copy), "--baseline", str(base), "--summary", str(summary)]) == 1
    out = capsys.readouterr().out
    assert "WORSE" in out and "cpu_us_per_packet" in out
    assert "| backend | dir |" in summary.read_text() and (copy / "gate.md").exists()
    assert main(["gate", str(copy), "--baseline", str(base), "--format", "bmf", "--output", str(tmp_path / "b.json")]) == 1
    bmf = json.loads((tmp_path / "b.json").read_text())
    assert bmf["e1000/rx/tcp-P1-ldefault"]["exits-per-packet"]["value"] > 0
    capsys.readouterr()
    assert main(["gate", str(copy), "--baseline", str(base), "--format", "gab", "--output", str(tmp_path / "gab")]) == 1
    smaller = json.loads((tmp_path / "gab/customSmallerIsBetter.json").read_text())
    bigger = json.loads((tmp_path / "gab/customBiggerIsBetter.json").read_text())
    assert {e["unit"] for e in bigger} == {"bit/s"} and all(e["value"] >= 0 for e in smaller)
    assert main(["gate", str(copy), "--baseline", str(tmp_path / "none.json")]) == 2
    assert "no baseline at" in capsys.readouterr().err


def test_the_committed_ci_baseline_is_complete() -> None:
    """results/baselines/ci-tcg.json: the CI scenario under TCG, 5 repeats, every backend TCG can run
    x direction (streams) and request/response, a tolerance from each cell's noise, and the rule written down."""
    path = Path(__file__).parent.parent / "results" / "baselines" / "ci-tcg.json"
    base = gate.load_baseline(path)
    assert base["environment"]["accel"] == "tcg" and base["environment"]["exit_source"] == "tcg-traps"
    assert base["environment"]["scenario"]["name"] == "ci" and base["environment"]["scenario"]["repeats"] >= 5
    cells = {(c["backend"], c["direction"]) for c in base["cells"]}
    vms = ("e1000", "virtio", "e1000-nomitigation")
    assert cells == {*((b, d) for b in (*vms, "native") for d in ("rx", "tx")), *((b, "rr") for b in vms)}
    assert all(len(c["values"]) >= 5 and gate.TOL_MIN <= c["tolerance"] <= gate.TOL_MAX for c in base["cells"])
    assert "robust" in base["how"] and "CV" in base["how"] and base["created"]


def test_rr_and_paced_cells_are_gated_on_their_per_transaction_and_per_datagram_cost() -> None:
    """What the device model decides per transaction or datagram gates those cells; their rates and CPU
    time (the host's speed, L1's emulation in the lab) and the per-packet figures of 64-byte messages do not."""
    import pandas as pd

    base = {"exit_source": "kvm-stats", "throughput_bps": 1e6, "exits_per_packet": 9.0, "cpu_us_per_packet": 3.0,
            "irq_injections_per_packet": 1.0, "copies_per_packet_measured": 1.0}
    rows = pd.DataFrame([
        {**base, "backend": "e1000", "direction": "rr", "workload": "rr-udp-l64B", "exits_per_transaction": 4.5,
         "irq_injections_per_transaction": 2.0, "cpu_us_per_transaction": 80.0, "transactions_per_s": 3000.0},
        {**base, "backend": "e1000", "direction": "tx", "workload": "paced-udp-1000pps-l1024B",
         "exits_per_datagram": 3.5, "irq_injections_per_datagram": 1.5},
        {**base, "backend": "e1000", "direction": "tx", "workload": "tcp-P1-ldefault"}])
    run = results.RunData(Path("x"), {}, rows, pd.DataFrame(), pd.DataFrame())
    got = {(k[1], k[3]) for k in gate.samples(run)}
    assert got == {("rr", "exits_per_transaction"), ("rr", "irq_injections_per_transaction"),
                   ("tx", "exits_per_datagram"), ("tx", "irq_injections_per_datagram"),
                   *(("tx", m) for m in gate.GATED_BY_KIND["stream"])}


def test_a_run_of_chosen_backends_is_judged_on_them_and_names_the_rest(data: Path) -> None:
    run = lab_run(data)
    backends = sorted({k[0] for k in gate.samples(run)})
    baseline = fake_baseline(run, {})
    baseline["cells"].append({"backend": "vhost-extra", "direction": "rx", "workload": "tcp-P1-ldefault",
                              "metric": "exits_per_packet", "values": [1.0] * 3, "tolerance": 0.1})
    assert gate.gate(run, baseline).exit_code == 2  # a baseline backend the run lacks: not comparable
    chosen = gate.gate(run, baseline, only_backends=backends)
    assert chosen.exit_code == 0 and {v.backend for v in chosen.verdicts} == set(backends)
    assert any("not run by choice (not gated): vhost-extra" in n for n in chosen.notes)


def test_a_gate_job_without_its_baseline_says_so_before_running(tmp_path: Path, capsys) -> None:
    """A CI runner class whose first baseline is not made yet: exit 2 at once, nothing run."""
    ci = Path(__file__).parent.parent / "scenarios" / "ci-kvm.toml"
    assert main(["gate", "--scenario", str(ci), "--baseline", str(tmp_path / "none.json"),
                 "--out", str(tmp_path / "out"), "--environment", "github-hosted-ubuntu-24.04"]) == 2
    assert "no baseline at" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(["gate", str(tmp_path), "--baseline", str(tmp_path / "none.json"), "--accel", "kvm"]) == 2
    assert "shape the run that --scenario starts" in capsys.readouterr().err


def test_an_environment_label_is_checked(tmp_path: Path, capsys) -> None:
    assert main(["run", "--environment", "Lab Runner", "--out", str(tmp_path)]) == 2
    assert "--environment 'Lab Runner': a label of a-z 0-9" in capsys.readouterr().err
    assert main(["run", "--environment", "ci-x", "--accel", "lab", "--out", str(tmp_path)]) == 2
    assert "nested lab's runs are labelled lab" in capsys.readouterr().err
