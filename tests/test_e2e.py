"""End to end under TCG: boot the guest with e1000 and with virtio, carry traffic
both ways, then check the numbers and that nothing is left behind."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from pyroute2 import netns

from iobench.runner import RunOptions, run

pytestmark = pytest.mark.slow


def qemu_pids() -> set[int]:
    out = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() in ("qemu-system-x86", "iperf3"):
                    out.add(int(p.name))
            except OSError:
                pass
    return out


@pytest.fixture(scope="module")
def tcg_run(guest_image, tmp_path_factory: pytest.TempPathFactory):
    before = qemu_pids()
    vm_dirs_before = set(Path("/tmp").glob("iobench-vm-*"))
    report = run(RunOptions(backends=("e1000", "virtio"), accel="tcg", duration_s=3, omit_s=1,
                            out=tmp_path_factory.mktemp("results")), log=lambda m: None)
    return report, before, vm_dirs_before


def test_rows_for_each_backend_and_direction(tcg_run) -> None:
    report, *_ = tcg_run
    assert report.status == "ok", report.cells
    rows = list(csv.DictReader((report.directory / "rows.csv").open()))
    assert sorted((r["backend"], r["direction"]) for r in rows) == [
        ("e1000", "rx"), ("e1000", "tx"), ("virtio", "rx"), ("virtio", "tx")]
    for r in rows:
        assert r["exit_source"] == "tcg-traps"
        assert float(r["throughput_bps"]) > 0
        assert int(r["bytes"]) > 0 and int(r["frames"]) > 0
        assert int(r["exits"]) > 0
        assert int(r["rchar"]) > 0 and int(r["wchar"]) > 0
        # tap bytes and iperf3 bytes agree within warm-up, headers and ACK-free overhead
        assert int(r["iperf3_bytes"]) <= int(r["bytes"]) < 3 * int(r["iperf3_bytes"])
        assert 0.8 < float(r["copies_per_packet_measured"]) < 1.3


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
    assert meta["format_version"] == 1 and meta["status"] == "ok"
    assert meta["accel"]["accel"] == "tcg" and meta["accel"]["exit_source"] == "tcg-traps"
    assert meta["host"]["qemu"] and meta["host"]["iperf3"] and meta["image"]["files"]
    assert set(meta["backends"]) == {"e1000", "virtio"}
    raw = report.directory / "raw"
    for backend in ("e1000", "virtio"):
        argv = json.loads((raw / backend / "qemu-cmdline.json").read_text())
        assert argv[0] == "qemu-system-x86_64"
        assert "IOBENCH-READY" in (raw / backend / "serial.log").read_text()
        for d in ("rx", "tx"):
            assert json.loads((raw / backend / f"{d}-r1.iperf3.json").read_text())["end"]
    assert not list(report.directory.parent.glob(".*partial"))


def test_nothing_is_left_behind(tcg_run) -> None:
    report, pids_before, vm_dirs_before = tcg_run
    assert not [n for n in netns.listnetns() if report.meta["run_id"] in n]
    assert qemu_pids() <= pids_before
    assert set(Path("/tmp").glob("iobench-vm-*")) <= vm_dirs_before
    assert not [i for i in os.listdir("/sys/class/net") if i.startswith("ibt")]
