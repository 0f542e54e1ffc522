"""The gate's statistics and verdicts. The exact U test is checked against values from
tables; verdicts and exports on the repeats of a real lab run."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from iobench import decide, gate, results
from iobench.cli import main
from iobench.schema import HIGHER_IS_BETTER


def test_exact_mann_whitney_matches_the_tables() -> None:
    """The native ceiling's check (has the host's speed moved?) keeps the exact U test."""
    assert gate.mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert gate.mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert gate.mann_whitney_p([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == 1.0
    assert gate.mann_whitney_p([1, 2, 3, 4, 6], [5, 7, 8, 9, 10]) == pytest.approx(4 / 252)


def test_holm_matches_its_definition() -> None:
    # sorted 0.01, 0.02, 0.03, 0.5 -> 4x0.01, max(.04, 3x0.02), max(.06, 2x0.03), max(.06, 0.5)
    assert decide.holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert decide.holm([0.9]) == [0.9] and decide.holm([]) == []


def test_hodges_lehmann_shrugs_off_one_wild_repeat() -> None:
    assert decide.hodges_lehmann([1, 2, 3]) == 2.0
    assert decide.hodges_lehmann([10, 10.1, 9.9, 10.0, 100]) < 10.2  # an L2 that booted twice
    # the within-run scale: one wild repeat among three runs' residuals does not set it (plain SD: ~15)
    scale, df = decide.pooled_within([[9, 10, 10, 11, 50], [10, 10.5, 9.5, 10, 10], [10, 11, 9, 10, 10]])
    assert scale == pytest.approx(1.4826 * 0.5) and df == pytest.approx(0.37 * 12)


def test_repeats_needed_match_the_normal_approximation() -> None:
    """GATE.md: n = 2 (z_(1-a) + z_(1-b))^2 (c / ln 1.1)^2 per side for two samples of n. With no drift
    (one job) and the baseline side as large as the current one, repeats_for agrees within KAPPA."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf
    for c in (0.05, 0.10, 0.14):
        want = 2 * (z(0.95) + z(0.8)) ** 2 * (c / math.log(1.1)) ** 2 * decide.KAPPA
        # a baseline of `want` repeats in one run, like the current side; SDs known (many degrees of freedom)
        nb = math.ceil(want)
        got = decide.repeats_for(decide.Noise(c, 0.0, 1, nb, within_df=10**6), 0.0, 1)
        assert got is not None and abs(got - want) <= 1.5, (c, got, want)
    assert decide.repeats_for(decide.Noise(0.01, 0.06, 3, 5, within_df=12), 0.01, 10) is None  # drift forbids 10%
    # few degrees of freedom cost repeats: the same noise estimated from 4 values needs more
    assert decide.repeats_for(decide.Noise(0.05, 0.0, 1, 5, within_df=4), 0.0, 1) > decide.repeats_for(
        decide.Noise(0.05, 0.0, 1, 5, within_df=10**6), 0.0, 1)


def _noisy(rng: random.Random, median: float, cv: float, n: int) -> list[float]:
    return [median * math.exp(rng.gauss(0, cv)) for _ in range(n)]


def _family(rng: random.Random, cvs: list[float], shift: dict[int, float], drift: float,
            runs: int) -> list[gate.Verdict]:
    """One simulated gate: len(cvs) cells, a baseline of `runs` runs, a current run drifted like any run."""
    cells, medians = [], []
    for i, cv in enumerate(cvs):
        base = [_noisy(rng, 100 * math.exp(rng.gauss(0, drift)), cv, 5) for _ in range(runs)]
        cur = _noisy(rng, 100 * math.exp(rng.gauss(0, drift)) * shift.get(i, 1.0), cv, 5)
        cell = {"backend": "b", "direction": "tx", "workload": f"w{i}", "metric": "exits_per_packet",
                "runs": base, "values": [v for r in base for v in r]}
        rule = {"higher_is_better": False, "floor": 0.0}
        cells.append(gate._cell(cell, cur, rule, {"accel": "tcg", "exit_source": "tcg-traps"}, False))
        medians.append((1.0, 1.0))
    return gate.judge(cells, medians, [""] * len(cvs))


def test_an_unchanged_rerun_is_rarely_worse_anywhere_and_a_10pct_change_is_caught() -> None:
    """The rule's promise, simulated on the model it assumes (normal noise on log values, runs drifting by
    the environment's floor, TCG's here): across 40 cells an unchanged rerun has any cell worse in at most
    ~5% of gates, and +10% in a cell whose printed detectable effect is under 10% is caught in at least 80%
    of gates. (Seeded: the same draws every time.)"""
    rng = random.Random(7)
    drift = gate.DRIFT_FLOOR["tcg"][0]
    cvs = [rng.choice([0.005, 0.01, 0.02, 0.05]) for _ in range(40)]
    alarms = sum("worse" in [v.verdict for v in _family(rng, cvs, {}, drift, 3)] for _ in range(300))
    assert alarms / 300 <= 0.06, alarms
    cvs[0] = 0.02
    trials = [_family(rng, cvs, {0: 1.10}, drift, 3)[0] for _ in range(200)]
    seen = [v for v in trials if v.detectable <= 0.10]  # what the gate said it could see
    assert len(seen) >= 120 and sum(v.verdict == "worse" for v in seen) / len(seen) >= 0.80
    cvs[0] = 0.10  # a cell this noisy says it cannot see 10% with 5 repeats, and how many it would need
    noisy = [_family(rng, cvs, {}, drift, 3)[0] for _ in range(20)]
    assert all(v.detectable > 0.10 and (v.repeats_for_10 is None or v.repeats_for_10 > 5) for v in noisy)
    assert any(v.repeats_for_10 for v in noisy)


def test_three_outcomes() -> None:
    env = {"accel": "kvm", "exit_source": "kvm-stats"}
    rule = {"higher_is_better": False, "floor": 0.002}
    base = [[0.100, 0.101, 0.099, 0.100, 0.102], [0.1005, 0.1, 0.099, 0.101, 0.1]]
    cell = {"backend": "e1000", "direction": "tx", "workload": "w", "metric": "exits_per_packet", "runs": base,
            "values": [v for r in base for v in r]}

    def verdict(cur: list[float], one_job: bool = False, r: dict | None = None) -> str:
        (v,) = gate.judge([gate._cell(cell, cur, r or rule, env, one_job)], [(0.1, 0.1)], [""])
        return v.verdict

    assert verdict([0.130, 0.131, 0.129, 0.133, 0.128]) == "worse"
    assert verdict([0.100, 0.1005, 0.099, 0.101, 0.100]) == "ok"  # 10% ruled out
    assert verdict([0.08, 0.20, 0.09, 0.21, 0.10]) == "inconclusive"  # 2x median but the noise is as large
    assert verdict([0.070, 0.071, 0.069, 0.070, 0.072]) == "better"
    assert verdict([0.130, 0.131, 0.129, 0.133, 0.128], r=dict(rule, higher_is_better=True)) == "better"
    # +4%: against another run's baseline the drift (2%) leaves it undecided; in one job it is worse
    assert verdict([0.104, 0.1045, 0.1035, 0.104, 0.1042]) in ("inconclusive", "ok")
    assert verdict([0.104, 0.1045, 0.1035, 0.104, 0.1042], one_job=True) == "worse"


def test_a_change_under_the_floor_is_not_worse() -> None:
    env = {"accel": "kvm", "exit_source": "kvm-stats"}
    tiny = [[0.0001] * 5]
    cell = {"backend": "e", "direction": "tx", "workload": "w", "metric": "copies_per_packet_measured", "runs": tiny,
            "values": tiny[0]}
    c = gate._cell(cell, [0.0009, 0.0008, 0.0009, 0.0010, 0.0009], {"higher_is_better": False, "floor": 0.05}, env, True)
    (v,) = gate.judge([c], [(0.0001, 0.0009)], [""])
    assert v.verdict != "worse" and v.threshold == pytest.approx(0.05 / 0.0001)


def lab_run(data: Path) -> results.RunData:
    return results.load(data / "results-v2-lab")


def test_baseline_needs_five_repeats(data: Path) -> None:
    with pytest.raises(Exception, match="at least 5"):
        gate.make_baseline(lab_run(data), "x")


def fake_baseline(run: results.RunData, scale: dict[str, float]) -> dict:
    """A baseline holding the run's own values, scaled per metric (to stage a change)."""
    values = gate.samples(run)
    return {"baseline_version": gate.BASELINE_VERSION, "name": "t", "run_id": "r", "created": "2026-11-30",
            "how": "test", "environment": gate.environment(run.meta),
            "metrics": {m: {"higher_is_better": HIGHER_IS_BETTER[m], "floor": r.floor, "unit": r.unit,
                            } for m, r in gate.GATED.items()},
            "cells": [{"backend": k[0], "direction": k[1], "workload": k[2], "metric": k[3],
                       "runs": [[v * scale.get(k[3], 1.0)] * 3] * 2, "values": [v * scale.get(k[3], 1.0)] * 6}
                      for k, v0 in values.items() for v in v0]}


def test_gate_on_a_real_run_and_what_blocks_it(data: Path) -> None:
    run = lab_run(data)
    same = gate.gate(run, fake_baseline(run, {}))
    # one repeat a cell against a lab baseline: nothing can be ruled out (the lab's runs drift 12%)
    assert same.exit_code == 0 and {v.verdict for v in same.verdicts} == {"inconclusive"}
    # a baseline whose exits were 70% lower: past anything the drift and the family explain
    worse = gate.gate(run, fake_baseline(run, {"exits_per_packet": 0.3}))
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
    se = math.sqrt(gate.DRIFT_FLOOR["lab"][0] ** 2 * 1.5)  # two baseline runs, no scatter: the drift alone
    assert v.detectable == pytest.approx(decide.detectable(se, v.threshold, len(result.verdicts)), abs=1e-4)
    assert v.repeats_for_10 is None and v.drift_source.startswith("floor 12%")
    row = next(r for r in gate.table_rows(result) if r[:4] == ("e1000", "rx", "tcp-P1-ldefault", "exits_per_packet"))
    assert row[gate.HEADERS.index("n for 10%")] == "never"
    assert "cannot see 10% at these repeats" in gate.how(result)


def test_gate_command_exit_codes_and_exports(data: Path, tmp_path: Path, capsys) -> None:
    run = lab_run(data)
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps(fake_baseline(run, {"cpu_us_per_packet": 0.25})))
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


def test_the_committed_ci_baselines_are_complete() -> None:
    """results/baselines/ci-tcg.json: the CI scenario under TCG, every VM backend TCG can run x direction
    (paced, with the guest's periodic tick) and request/response, made of several runs (their drift
    measured), each run's repeats kept apart, and the rule written down; ci-lab.json likewise for the lab."""
    root = Path(__file__).parent.parent / "results" / "baselines"
    base = gate.load_baseline(root / "ci-tcg.json")
    assert base["environment"]["accel"] == "tcg" and base["environment"]["exit_source"] == "tcg-traps"
    assert base["environment"]["scenario"]["name"] == "ci" and base["environment"]["scenario"]["repeats"] >= 5
    assert base["environment"]["scenario"]["kernel_args"] == ["nohz=off"] and len(base["runs"]) >= 10
    cells = {(c["backend"], c["direction"], c["workload"].split("-")[0]) for c in base["cells"]}
    vms = ("e1000", "virtio", "e1000-nomitigation")
    assert cells == {*((b, d, "paced") for b in vms for d in ("rx", "tx")), *((b, "rr", "rr") for b in vms)}
    for name, runs in (("ci-tcg.json", 5), ("ci-lab.json", 3)):
        base = gate.load_baseline(root / name)
        assert len(base["runs"]) >= runs and base["created"] and "between-run SD" in base["how"]
        assert all(len(c["runs"]) == len(base["runs"]) and all(len(r) >= 5 for r in c["runs"])
                   and c["sigma_between"] is not None for c in base["cells"])


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
                   ("tx", "copies_per_packet_measured"),  # a paced cell's copies per packet: one datagram, one packet
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
    assert "shape the runs that --scenario starts" in capsys.readouterr().err
    assert main(["gate", str(tmp_path), "--baseline", str(tmp_path / "none.json"), "--max-repeats", "9"]) == 2
    assert "shape the runs that --scenario starts" in capsys.readouterr().err
    assert main(["gate", "--scenario", str(ci), "--baseline", str(tmp_path / "none.json"), "--max-repeats", "1",
                 "--out", str(tmp_path / "out")]) == 2
    assert "--max-repeats 1: give at least 2" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_an_environment_label_is_checked(tmp_path: Path, capsys) -> None:
    assert main(["run", "--environment", "Lab Runner", "--out", str(tmp_path)]) == 2
    assert "--environment 'Lab Runner': a label of a-z 0-9" in capsys.readouterr().err
    assert main(["run", "--environment", "ci-x", "--accel", "lab", "--out", str(tmp_path)]) == 2
    assert "nested lab's runs are labelled lab" in capsys.readouterr().err


def test_ab_refuses_bad_sides_before_running_anything(tmp_path: Path, capsys) -> None:
    ci_lab = Path(__file__).parent.parent / "scenarios" / "ab-lab.toml"
    out = tmp_path / "out"
    assert main(["ab", "--scenario", str(ci_lab), "--a", "virtio", "--b", "virtio", "--out", str(out)]) == 2
    assert "--a and --b are both virtio" in capsys.readouterr().err
    assert main(["ab", "--scenario", str(ci_lab), "--a", "virtio", "--b", "virtio-nopveo", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "virtio-nopveo is not a backend or variant of" in err and "virtio-nopveoi" in err
    assert main(["ab", "--scenario", str(tmp_path / "none.toml"), "--a", "e1000", "--b", "virtio"]) == 2
    assert not out.exists()


def test_a_baseline_of_runs_of_different_scenarios_is_refused(data: Path, tmp_path: Path) -> None:
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    for path, name in ((a, "default"), (b, "other")):
        shutil.copytree(data / "results-v2-lab", path)
        meta = json.loads((path / "run.json").read_text())
        meta["scenario"].update(name=name, repeats=3)  # 6 repeats in all: enough for a baseline
        (path / "run.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="cannot share a baseline .*scenario"):
        gate.make_baseline([results.load(a), results.load(b)], "x")


def test_plan_says_what_a_gate_could_see_before_running(data: Path, tmp_path: Path, capsys) -> None:
    run = lab_run(data)
    base = tmp_path / "b.json"
    base.write_text(json.dumps(fake_baseline(run, {})))
    rows = gate.power(json.loads(base.read_text()), 5)
    assert rows and all(r.drift == gate.DRIFT_FLOOR["lab"][0] or r.metric in gate.HOST_SPEED_METRICS for r in rows)
    assert all(r.detectable > 0.10 and r.repeats_for_10 is None for r in rows)  # the lab's drift forbids 10%
    assert main(["plan", "--power", str(base), "--repeats", "5"]) == 0
    out = capsys.readouterr().out
    assert "what a gate of 5 repeats against" in out and "never could against this baseline" in out
    assert main(["plan", "--power", str(tmp_path / "none.json")]) == 2


def _synthetic(run: results.RunData, repeats: int, rng: random.Random, cv: float = 0.03,
               scale: dict[tuple[str, str], float] | None = None, backends: Sequence[str] | None = None) -> results.RunData:
    """`run`'s cells measured `repeats` times: every gated metric with lognormal noise of `cv`, scaled per
    (backend, metric) by `scale`; on a real KVM host (the lab's markers removed), so the drift floor is KVM's."""
    import pandas as pd

    rows = run.rows[run.rows["backend"].isin(backends or run.rows["backend"].unique())]
    frames = []
    for r in range(1, repeats + 1):
        one = rows.copy()
        one["repeat"] = r
        for metric in ("throughput_bps", "exits_per_packet", "irq_injections_per_packet", "copies_per_packet_measured",
                       "cpu_us_per_packet"):
            one[metric] = [v * math.exp(rng.gauss(0, cv)) * (scale or {}).get((b, metric), 1.0)
                           for v, b in zip(one[metric], one["backend"], strict=True)]
        frames.append(one)
    cells = [{**c, "repeat": r} for r in range(1, repeats + 1) for c in run.meta["cells"]
             if c["repeat"] == 1 and c["backend"] in set(rows["backend"])]
    host = {k: v for k, v in run.meta["host"].items()}
    meta = dict(run.meta, environment="host", host=host, cells=cells,
                scenario=dict(run.meta["scenario"], repeats=repeats))
    meta.pop("lab", None)
    return results.RunData(run.directory, meta, pd.concat(frames, ignore_index=True), run.summary, run.timeline)


def test_sequential_repeats_decide_what_one_look_left_open(data: Path) -> None:
    """`--max-repeats`: the backends with an inconclusive cell that more repeats would sharpen, and only
    they, run again; a true +12% in virtio's host->guest exits per packet that 3 repeats cannot call is
    called worse once pooled rounds can; cells decided at the first look keep that decision; cells that
    more repeats cannot sharpen (rates, against KVM's drift floor) are not run again; the looks' error is
    spent by Bonferroni."""
    from iobench import sequential

    rng = random.Random(7)
    base_run = lab_run(data)
    baseline = gate.make_baseline([_synthetic(base_run, 5, rng) for _ in range(4)], "seq")
    assert gate.drift_kind(baseline["environment"]) == "kvm"
    change = {("virtio", "exits_per_packet"): 1.12}
    first = _synthetic(base_run, 3, rng, scale=change)
    asked: list[tuple[list[str], int]] = []

    def run_more(backends: list[str], repeats: int) -> results.RunData:
        asked.append((backends, repeats))
        return _synthetic(base_run, repeats, rng, scale=change, backends=backends)

    one_look = {(v.backend, v.direction, v.metric): v for v in gate.gate(first, baseline, looks=4).verdicts}
    assert one_look[("virtio", "rx", "exits_per_packet")].verdict == "inconclusive"
    assert one_look[("virtio", "tx", "exits_per_packet")].verdict == "worse"
    result = sequential.gate_until_decided(first, baseline, run_more, 12, log=lambda m: None)
    assert sequential.looks_planned(3, 12) == 4 and 1 <= len(asked) <= 3 and all(n == 3 for _, n in asked)
    assert "vhost" not in asked[0][0] and "native" not in asked[0][0]  # only rates open there: drift-bound
    assert all(set(later) <= set(asked[0][0]) for later, _ in asked)  # only what stayed open runs again
    by_key = {(v.backend, v.direction, v.metric): v for v in result.verdicts}
    assert by_key[("virtio", "rx", "exits_per_packet")].verdict == "worse"
    assert by_key[("virtio", "rx", "exits_per_packet")].detectable < one_look[("virtio", "rx", "exits_per_packet")].detectable
    for v in one_look.values():  # decided at the first look: kept as they were
        if v.verdict != "inconclusive":
            assert by_key[(v.backend, v.direction, v.metric)] == v
    assert not [v for v in result.verdicts if v.verdict == "worse" and v.backend != "virtio"]
    assert result.exit_code == 1 and "Bonferroni over the looks" in result.notes[-1]
    assert any("not run again" in n for n in result.notes)
    # the pooled run numbers the later rounds after the earlier ones, per backend
    pooled = sequential.pooled([first, run_more(["virtio"], 3)])
    assert sorted(pooled.rows[pooled.rows["backend"] == "virtio"]["repeat"].unique()) == [1, 2, 3, 4, 5, 6]
    assert sorted(pooled.rows[pooled.rows["backend"] == "e1000"]["repeat"].unique()) == [1, 2, 3]
