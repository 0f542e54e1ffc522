"""End to end under TCG: boot the guest with e1000 and with virtio, carry traffic
both ways, then check the numbers and that nothing is left behind."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from pyroute2 import netns

from iobench import schema

pytestmark = pytest.mark.slow


def test_rows_for_each_backend_and_direction(tcg_run) -> None:
    report, *_ = tcg_run
    assert report.status == "ok", report.cells
    rows = list(csv.DictReader((report.directory / "rows.csv").open()))
    assert sorted((r["backend"], r["direction"]) for r in rows) == [
        ("e1000", "rx"), ("e1000", "tx"), ("native", "rx"), ("native", "tx"), ("virtio", "rx"), ("virtio", "tx")]
    for r in (r for r in rows if r["backend"] != "native"):
        assert r["exit_source"] == "tcg-traps"
        assert float(r["throughput_bps"]) > 0
        assert int(r["bytes"]) > 0 and int(r["frames"]) > 0
        assert int(r["exits"]) > 0
        assert int(r["rchar"]) > 0 and int(r["wchar"]) > 0
        # the data-direction syscall copies of QEMU's userspace datapath: one per payload byte
        assert 0.9 < float(r["copies_per_packet_measured"]) < 1.15
        assert float(r["exits_idle_rate"]) > 0 and r["net_exits_per_packet"]


def test_bytes_frames_packets_and_iperf3_agree(tcg_run) -> None:
    report, *_ = tcg_run
    for r in csv.DictReader((report.directory / "rows.csv").open()):
        tap, iperf, frames, packets = int(r["bytes"]), int(r["iperf3_bytes"]), int(r["frames"]), float(r["packets"])
        timed = float(r["duration_s"])
        # The tap/veth window spans iperf3's setup and warm-up (-O 1) as well as its timed part, and frames
        # carry headers (one set per GSO superframe): so at least iperf3's timed payload, and at most the
        # whole window at the timed rate plus header overhead and TCG's rate swings.
        assert tap >= iperf
        assert tap <= float(r["throughput_bps"]) / 8 * timed * 1.5
        assert packets == pytest.approx(tap / 1514, abs=0.1)
        assert frames <= packets * 1.05 + 50  # superframes make frames fewer, never many more


def test_e1000_traps_on_its_registers_and_virtio_kicks(tcg_run) -> None:
    report, *_ = tcg_run
    rows = {(r["backend"], r["direction"]): r for r in csv.DictReader((report.directory / "rows.csv").open())}
    for d in ("rx", "tx"):
        assert int(rows[("e1000", d)]["traps_nic"]) > 0
        assert int(rows[("virtio", d)]["virtio_kicks_handled"]) > 0
        # the story: per MTU-sized packet, full emulation traps more than virtio
        assert float(rows[("e1000", d)]["exits_per_packet"]) > float(rows[("virtio", d)]["exits_per_packet"])


def test_results_dir_is_self_describing(tcg_run) -> None:
    report, *_ = tcg_run
    meta = json.loads((report.directory / "run.json").read_text())
    assert meta["format_version"] == schema.FORMAT_VERSION and meta["status"] == "ok"
    assert meta["accel"]["accel"] == "tcg" and meta["accel"]["exit_source"] == "tcg-traps"
    assert meta["host"]["qemu"] and meta["host"]["iperf3"] and meta["image"]["files"]
    assert set(meta["backends"]) == {"e1000", "virtio", "native"}
    raw = report.directory / "raw"
    for backend in ("e1000", "virtio"):
        argv = json.loads((raw / backend / "r1/qemu-cmdline.json").read_text())
        assert argv[0] == "qemu-system-x86_64"
        assert "IOBENCH-READY" in (raw / backend / "r1/serial.log").read_text()
        for d in ("rx", "tx"):
            assert json.loads((raw / backend / f"r1-tcp-P1-ldefault-{d}.iperf3.json").read_text())["end"]
    summary = list(csv.DictReader((report.directory / "summary.csv").open()))
    shares = {(s["backend"], s["direction"]): float(s["median"]) for s in summary if s["metric"] == "throughput_vs_native"}
    assert set(shares) == {("e1000", "rx"), ("e1000", "tx"), ("virtio", "rx"), ("virtio", "tx")}
    assert all(0 < v < 1 for v in shares.values())
    assert not list(report.directory.parent.glob(".*partial"))


def test_native_row_is_the_ceiling_with_no_exits(tcg_run) -> None:
    report, *_ = tcg_run
    rows = [r for r in csv.DictReader((report.directory / "rows.csv").open()) if r["backend"] == "native"]
    for r in rows:
        assert r["exits"] == "0" and r["exit_source"] == "none"
        assert r["copies_per_packet_measured"] == ""  # no QEMU in the path: not measured, not zero
        assert float(r["cpu_s_iperf3_server"]) > 0 and float(r["cpu_s_iperf3_client"]) > 0


def test_nothing_is_left_behind(tcg_run, qemu_pids) -> None:
    report, pids_before, vm_dirs_before = tcg_run
    assert not [n for n in netns.listnetns() if report.meta["run_id"] in n]
    assert qemu_pids() <= pids_before
    assert set(Path("/tmp").glob("iobench-vm-*")) <= vm_dirs_before
    assert not [i for i in os.listdir("/sys/class/net") if i.startswith("ibt")]


def test_figures_and_report_are_written(tcg_run) -> None:
    from iobench import plots

    report, *_ = tcg_run
    for name in (*plots.FIGURES, plots.TIMELINE_FIGURE):
        assert (report.directory / "plots" / name).stat().st_size > 10_000
    md = (report.directory / "report.md").read_text()
    assert "| backend | dir |" in md and "tcg-traps" in md
    assert "![exits-per-packet](plots/exits-per-packet.png)" in md


def test_report_command_reads_the_results_dir_back(tcg_run, capsys) -> None:
    from iobench.cli import main

    report, *_ = tcg_run
    assert main(["report", str(report.directory)]) == 0
    out = capsys.readouterr().out
    assert "e1000" in out and "virtio" in out and "report.md" in out


def test_compare_a_run_with_itself_and_refuse_tcg_against_kvm(tcg_run, tmp_path, capsys) -> None:
    import shutil

    from iobench import compare
    from iobench.cli import main

    report, *_ = tcg_run
    lines, blocking, _ = compare.compare(report.directory, report.directory)
    assert not blocking and lines and {ln.verdict for ln in lines} == {"same"}
    kvm_copy = tmp_path / "kvm-run"
    shutil.copytree(report.directory, kvm_copy)
    meta = json.loads((kvm_copy / "run.json").read_text())
    meta["accel"] |= {"accel": "kvm", "exit_source": "kvm-stats"}
    (kvm_copy / "run.json").write_text(json.dumps(meta))
    assert main(["compare", str(report.directory), str(kvm_copy)]) == 2
    err = capsys.readouterr().err
    assert "not comparable" in err and "accelerator differs: tcg vs kvm" in err


def test_timeline_slices_add_up_to_each_row(tcg_run) -> None:
    import pandas as pd

    report, *_ = tcg_run
    rows = pd.read_csv(report.directory / "rows.csv")
    slices = pd.read_csv(report.directory / "timeline.csv")
    traffic = slices[slices["phase"] == "traffic"].groupby(["backend", "direction"])[["exits", "bytes"]].sum()
    idle = slices[slices["phase"] == "idle"].groupby("backend")["exits"].sum()
    for r in rows[rows["backend"] != "native"].itertuples():
        assert traffic.loc[(r.backend, r.direction), "exits"] == r.exits
        assert traffic.loc[(r.backend, r.direction), "bytes"] == r.bytes
        assert idle[r.backend] == r.idle_exits
    # a 3 s window (+1 s warm-up) read once a second: several slices, not just the edges
    assert (slices[slices["phase"] == "traffic"].groupby(["backend", "direction"]).size() >= 4).all()


def test_the_run_produces_the_same_columns_and_files_as_before_the_instruments(tcg_run) -> None:
    """The instruments refactor changed how a run measures, not what it produces: the same columns in every
    CSV and the same files (run id, rounds and attempt numbers aside) as the code before it, captured from
    a run of this very configuration (tests/manifest.py)."""
    from tests.manifest import manifest

    report, *_ = tcg_run
    before = json.loads((Path(__file__).parent / "data/manifests/tcg-run.json").read_text())
    now = manifest(report.directory)
    assert now["columns"] == before["columns"]
    assert set(now["files"]) ^ set(before["files"]) == set(), sorted(set(now["files"]) ^ set(before["files"]))
    assert now["run_json_keys"] == before["run_json_keys"]


def test_every_role_is_placed_read_back_and_its_scheduling_facts_kept(tcg_run) -> None:
    """placement = "auto": the plan in run.json; per VM, each role's threads pinned and read back equal;
    per cell and role, the CPUs allowed, the CPU last run on, migrations and context switches; every row
    says its placement and iobench's own CPU over the window."""
    report, *_ = tcg_run
    run_dir = report.directory
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["placement"]["spec"] == "auto" and meta["scenario"]["placement"] == "auto"
    plans = meta["placement"]["plans"]
    assert {"e1000:auto", "virtio:auto", "native:auto"} <= set(plans), plans
    assert "- placement: **auto**; e1000:auto: vcpu0 on " in (run_dir / "report.md").read_text()
    cpus = sorted(os.sched_getaffinity(0))
    for backend in ("e1000", "virtio"):
        placed = json.loads((run_dir / "raw" / backend / "r1" / "placement.json").read_text())
        roles = {t["role"] for t in placed["threads"]}
        assert {"vcpu0", "qemu-main"} <= roles, roles
        for t in placed["threads"]:
            assert t["requested"] is not None and t["requested"] == t["read_back"] and not t["error"], t
    rows = list(csv.DictReader((run_dir / "rows.csv").open()))
    for r in rows:
        assert r["placement"] == "auto"
        assert float(r["cpu_s_harness"]) > 0 and 0 < float(r["harness_cpu_pct"]) < 50, r["harness_cpu_pct"]
        assert r["migrations"] != ""  # counted (0 is a count)
        facts = json.loads((run_dir / "raw" / r["backend"] / f"r1-{r['workload']}-{r['direction']}.sched.json")
                           .read_text())
        by_role = {t["role"]: t for t in facts["tasks"]}
        assert ("vcpu0" in by_role or "server" in by_role) and "peer" in by_role, by_role.keys()
        for t in facts["tasks"]:
            if t["role"] != "peer" or t["allowed"] is not None:
                assert t["requested"] == t["allowed"], t  # pinned, and the kernel says so in this window
                assert t["last_cpu"] in cpus and t["migrations"] is not None and t["voluntary"] is not None, t
            assert t["voluntary"] is not None and t["involuntary"] is not None, t
