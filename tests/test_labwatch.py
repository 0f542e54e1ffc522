"""The lab's progress watchdog and the checkpoint a run cut short is resumed or published from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest

from iobench import checkpoint, labwatch, runner, stale
from iobench.store import ResultsWriter
from tests.replay import captured_row, cell

# Lines as L1's kernel printed them in the stalls of this machine kind (issue 18).
SOFT_LOCKUP = "[  412.120331] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [CPU 0/KVM:151]"
HUNG_TASK = "[  845.002113] INFO: task kworker/u4:2:88 blocked for more than 120 seconds."


def test_a_phase_line_sets_the_budget_and_silence_past_it_is_a_stall() -> None:
    w = labwatch.Watchdog(margin_s=30, since=0.0)
    w.line("IOBENCH-PHASE 66 e1000/r3: tcp-P1-ldefault tx traffic", now=100.0)
    assert w.phase == "e1000/r3: tcp-P1-ldefault tx traffic" and w.budget_s == 66
    assert w.stalled(now=100.0 + 96) is None  # within budget + margin
    why = w.stalled(now=100.0 + 97)
    assert why and "no progress from L1 for 97 s during e1000/r3: tcp-P1-ldefault tx traffic" in why
    assert "budget 66 s + 30 s margin" in why


def test_each_phase_is_timed_by_the_host_clock_from_its_line_to_the_next() -> None:
    w = labwatch.Watchdog(since=0.0)
    for now, line in ((12.0, "IOBENCH-PHASE 300 preparing the run"), (20.0, "IOBENCH-PHASE 120 e1000/r1: boot"),
                      (21.0, "IOBENCH-BEAT"), (29.5, "IOBENCH-PHASE 36 e1000/r1: idle window"),
                      (36.0, "IOBENCH-PHASE 66 e1000/r1: tcp-P1-ldefault rx traffic"),
                      (43.0, "IOBENCH-PHASE 66 e1000/r1: rr-udp-l64 tx traffic"),
                      (52.0, "IOBENCH-PHASE 66 native/r1: tcp-P1-ldefault rx traffic"),
                      (59.0, "IOBENCH-PHASE 120 virtio/r1: boot"), (66.0, "IOBENCH-PHASE 300 writing results"),
                      (80.0, "IOBENCH-LAB-DONE status=0")):
        w.line(line, now=now)
    assert w.spent[0] == ("startup (L1 ready, before the inner run's first phase)", 12.0)
    assert w.spent[2] == ("e1000/r1: boot", 9.5)  # the beat inside it neither ends nor splits it
    assert w.spent[-1] == ("writing results", 14.0)
    by = labwatch.time_by_kind(w.spent)
    assert by["traffic window"] == {"seconds": 23.0, "count": 3}
    assert by["boot"] == {"seconds": 16.5, "count": 2}
    assert by["startup"]["seconds"] == 12.0 and by["idle window"]["count"] == 1
    assert list(by)[0] == "traffic window"  # largest first
    assert sum(v["seconds"] for v in by.values()) == 80.0  # every second between L1 ready and done, once


def test_other_lines_do_not_extend_a_phase() -> None:
    """Relayed progress inside a phase is not a new budget: only a phase line is."""
    w = labwatch.Watchdog(margin_s=30, since=0.0)
    w.line("IOBENCH-PHASE 10 virtio/r1: idle window", now=0.0)
    w.line("iobench: virtio/r1: something", now=30.0)
    assert w.stalled(now=41.0) is not None


@pytest.mark.parametrize("line", [SOFT_LOCKUP, HUNG_TASK,
                                  "[ 1000.1] rcu: INFO: rcu_preempt self-detected stall on CPU"])
def test_a_stuck_cpu_or_task_reported_by_l1_is_a_stall_at_once(line: str) -> None:
    w = labwatch.Watchdog(since=0.0)
    w.line("IOBENCH-PHASE 120 vhost/r1: boot", now=0.0)
    w.line(line, now=1.0)
    why = w.stalled(now=1.0)
    assert why and "stuck CPU or task during vhost/r1: boot" in why and line.strip() in why


def test_once_the_inner_run_beats_a_silent_console_is_a_stall_long_before_the_budget() -> None:
    w = labwatch.Watchdog(margin_s=30, since=0.0)
    w.line("IOBENCH-PHASE 66 vhost/r1: tcp-P1-ldefault rx traffic", now=0.0)
    assert w.stalled(now=40.0) is None  # no beat seen yet (an older inner run): only the budget counts
    w.line("IOBENCH-BEAT", now=40.0)
    w.line("iobench: vhost/r1: something", now=50.0)  # any line after a beat proves L1 alive
    assert w.stalled(now=50.0 + labwatch.BEAT_GAP_S - 1) is None
    why = w.stalled(now=50.0 + labwatch.BEAT_GAP_S + 1)
    assert why and why.startswith("L1's console silent for 31 s") and "vhost/r1: tcp-P1-ldefault rx traffic" in why


def test_a_phase_overrun_while_l1_beats_is_the_inner_run_stuck_not_l1() -> None:
    """The ci-kvm lab runs' "stalls" in e1000 rr: L1 idle and beating, the inner run waiting on a stuck
    QEMU of its own. Still a lost attempt (L1 is replaced), named for what it is."""
    w = labwatch.Watchdog(margin_s=30, since=0.0)
    w.line("IOBENCH-PHASE 63 e1000/r2: rr-tcp-l64B rr traffic", now=100.0)
    for t in range(105, 200, 5):
        w.line("IOBENCH-BEAT", now=float(t))
    why = w.stalled(now=195.0)
    assert why and why.startswith("inner run stuck: no progress for 95 s during e1000/r2: rr-tcp-l64B rr traffic")
    assert "while L1 kept beating" in why and labwatch.Watchdog.reason(why) == why
    assert labwatch.Watchdog.reason("L1's console silent for 31 s").startswith("L1 stalled: ")


def test_the_heartbeat_beats_only_inside_the_lab(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("IOBENCH_ENVIRONMENT", "lab")
    with labwatch.heartbeat(every_s=0.05):
        time.sleep(0.3)
    beats = capsys.readouterr().err.splitlines()
    assert beats and set(beats) == {"IOBENCH-BEAT"}
    monkeypatch.delenv("IOBENCH_ENVIRONMENT")
    with labwatch.heartbeat(every_s=0.05):
        time.sleep(0.2)
    assert capsys.readouterr().err == ""


def test_startup_has_its_own_budget_before_the_first_phase() -> None:
    w = labwatch.Watchdog(since=0.0)
    assert w.stalled(now=labwatch.STARTUP_BUDGET_S + labwatch.MARGIN_S - 1) is None
    assert "startup" in (w.stalled(now=labwatch.STARTUP_BUDGET_S + labwatch.MARGIN_S + 1) or "")


def test_announce_prints_only_inside_the_lab(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("IOBENCH_ENVIRONMENT", raising=False)
    labwatch.announce("x", 5)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("IOBENCH_ENVIRONMENT", "lab")
    labwatch.announce("e1000/r1: boot", 120)
    assert capsys.readouterr().err == "IOBENCH-PHASE 120 e1000/r1: boot\n"


def _real_row(data: Path, direction: str, repeat: int):
    return captured_row(data, "e1000", direction, repeat)


def test_a_phase_that_overruns_its_budget_prints_where_the_inner_run_is() -> None:
    """Before the host gives up on L1, the inner run dumps its threads' stacks to the console: a call
    of its own that hangs (here a sleep standing for a stuck wait) is named, not taken for L1 stopping.
    Outside the lab nothing is armed."""
    code = ("import time; from iobench import labwatch\n"
            "labwatch.MARGIN_S = 0.4\n"
            "def stuck_wait(): time.sleep(1.5)\n"
            "with labwatch.heartbeat(60):\n"
            "    labwatch.announce('e1000/r2: rr-tcp-l64B rr traffic', 0.3); stuck_wait()\n"
            "    labwatch.announce('next', 60)\n"
            "time.sleep(0.1)\n")
    lab = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "IOBENCH_ENVIRONMENT": "lab"})
    assert lab.returncode == 0, lab.stderr
    assert "IOBENCH-PHASE 0 e1000/r2: rr-tcp-l64B rr traffic" in lab.stderr
    assert "most recent call first" in lab.stderr and 'in stuck_wait' in lab.stderr
    assert lab.stderr.count("Timeout (") == 1  # once: the next phase's and the end's dumps are cancelled
    env = {k: v for k, v in os.environ.items() if k != "IOBENCH_ENVIRONMENT"}
    outside = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert outside.returncode == 0 and outside.stderr == ""


def test_a_checkpoint_of_a_run_cut_short_publishes_its_finished_cells(data: Path, tmp_path: Path) -> None:
    """Round 1 finished in L1 attempt 1, round 2 had one cell in attempt 2 when the run was
    interrupted: the results directory holds those three rows, says `interrupted`, and each
    row names the L1 attempt that measured it."""
    writer = ResultsWriter(tmp_path, "20261130-000000-abcdef")
    state = checkpoint.Progress({"run_id": "20261130-000000-abcdef", "scenario": {"repeats": 2}})
    for direction, repeat, attempt in (("rx", 1, 1), ("tx", 1, 1), ("rx", 2, 2)):
        c, row = _real_row(data, direction, repeat)
        state.rows.append({**asdict(row), "l1_attempt": attempt})
        state.cells.append({"backend": "e1000", "direction": direction, "repeat": repeat,
                            "workload": c.workload.label, "status": "ok", "reason": "", "l1_attempt": attempt})
    checkpoint.save(writer.staging, state)
    stale.release(writer._lock)  # the process that wrote it is gone, and its lock with it
    published = runner.publish_checkpoint(writer.staging, "interrupted", "SIGINT", None)
    assert published == tmp_path / "20261130-000000-abcdef" and not writer.staging.exists()
    meta = json.loads((published / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["interrupted_by"] == "SIGINT" and len(meta["cells"]) == 3
    rows = pd.read_csv(published / "rows.csv")
    assert list(zip(rows["direction"], rows["repeat"], rows["l1_attempt"], strict=True)) == [
        ("rx", 1, 1), ("tx", 1, 1), ("rx", 2, 2)]
    # the throughput of the first row is iperf3's own figure from the captured JSON
    raw = json.loads((data / "run-tcg" / "e1000-rx.iperf3.json").read_text())
    assert rows["throughput_bps"][0] == pytest.approx(raw["end"]["sum_received"]["bits_per_second"])
    assert (published / "summary.csv").exists()


def test_a_resumed_run_skips_exactly_the_cells_with_an_outcome(data: Path, tmp_path: Path) -> None:
    state = checkpoint.Progress({"run_id": "r"})
    c, row = _real_row(data, "rx", 1)
    state.cells.append({"backend": "e1000", "direction": "rx", "repeat": 1, "workload": c.workload.label,
                        "status": "ok", "reason": ""})
    checkpoint.save(tmp_path, state)
    loaded = checkpoint.load(tmp_path)
    assert loaded is not None and c.key in loaded.done()
    assert cell("e1000", "tx").key not in loaded.done()
    assert checkpoint.load(tmp_path / "nothing-here") is None


def test_cells_that_failed_in_a_lost_l1_are_measured_again_and_their_failure_kept() -> None:
    """A CI lab run: L1 stalled during e1000/r1, its two rr cells failed on QMP timeouts before the watchdog
    called L1 lost; the resumed run counted them done and the gate refused a partial run."""
    state = checkpoint.Progress({"run_id": "r"})
    ok = {"backend": "e1000", "direction": "rr", "repeat": 1, "workload": "rr-udp-l64B", "status": "ok", "reason": ""}
    bad = {"backend": "e1000", "direction": "rr", "repeat": 1, "workload": "rr-tcp-l64B", "status": "failed",
           "reason": "QMP command query-stats got no answer in 30 s", "l1_attempt": 1}
    state.cells += [ok, bad]
    (reopened,) = state.reopen_failed()
    assert reopened == bad
    assert state.done() == {("e1000", "rr", 1, "rr-udp-l64B", "direct")}  # a checkpoint before topologies: direct
    (lost,) = state.attempts
    assert lost["l1_attempt"] == 1 and lost["cells_left"] == ["rr/rr-tcp-l64B"]
    assert lost["reason"].startswith("QMP command query-stats got no answer")
    assert state.reopen_failed() == []
