"""Where the exits land: QEMU's own memory map (captured from QEMU 7.2's `info mtree -f` with an e1000
and a virtio-net-pci after firmware placed their BARs) names the device, the hardware's register map
names the register; the tracepoints' formats name the access."""

from __future__ import annotations

from pathlib import Path

import pytest

from iobench import exitsites

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def amap() -> exitsites.AddressMap:
    return exitsites.parse_mtree((DATA / "qemu-7.2-info-mtree-f.txt").read_text())


def test_the_memory_map_is_read_from_qemus_flat_views(amap: exitsites.AddressMap) -> None:
    e1000 = amap.find("mmio", 0xFEBC00C0)
    assert e1000 is not None and (e1000.name, e1000.start, e1000.end) == ("e1000-mmio", 0xFEBC0000, 0xFEBDFFFF)
    pm_timer = amap.find("pio", 0x608)
    assert pm_timer is not None and pm_timer.name == "acpi-tmr"
    assert amap.find("mmio", 0x608) is None or amap.find("mmio", 0x608).name != "acpi-tmr"  # type: ignore[union-attr]
    # The SMM view repeats the memory regions; only the view of AS "memory" is taken.
    assert sum(r.name == "e1000-mmio" for r in amap.memory) == 1


@pytest.mark.parametrize(("gpa", "named"), [
    (0xFEBC0000 + 0x3818, ("e1000", "TDT")), (0xFEBC0000 + 0x00C0, ("e1000", "ICR")),
    (0xFEBC0000 + 0x00D0, ("e1000", "IMS")), (0xFEBC0000 + 0x00D8, ("e1000", "IMC")),
    (0xFEBC0000 + 0x2818, ("e1000", "RDT")), (0xFEBC0000 + 0x0008, ("e1000", "STATUS")),
    (0xFEBC0000 + 0x4010, ("e1000", "statistics")), (0xFEBC0000 + 0x7000, ("e1000", "0x7000")),
    (0xFEBFF000, ("virtio-net", "notify vq0 (rx0)")), (0xFEBFF004, ("virtio-net", "notify vq1 (tx0)")),
    (0xFEBFF008, ("virtio-net", "notify vq2")), (0xFEBFD000, ("virtio-net", "isr")),
    (0xFEBFC014, ("virtio-net", "common+0x14")),
    (0xFEE000B0, ("lapic", "EOI")), (0xFEE00300, ("lapic", "ICR")), (0xFEE00380, ("lapic", "TMICT")),
    (0xFEBE0010, ("msix-table", "+0x10")), (0x12345678, ("unmapped", "0x12345678")),
])
def test_mmio_addresses_are_named_by_device_and_register(amap: exitsites.AddressMap, gpa: int,
                                                         named: tuple[str, str]) -> None:
    assert exitsites.name_mmio(amap, gpa) == named


def test_ports_and_msrs_are_named(amap: exitsites.AddressMap) -> None:
    assert exitsites.name_pio(amap, 0x608) == ("acpi-tmr", "+0x0")
    assert exitsites.name_pio(amap, 0xC008) == ("e1000-io", "+0x8")
    assert exitsites.name_msr(0x80B) == ("lapic", "EOI")  # x2APIC: register offset (msr - 0x800) << 4
    assert exitsites.name_msr(0x830) == ("lapic", "ICR")
    assert exitsites.name_msr(0x838) == ("lapic", "TMICT")
    assert exitsites.name_msr(0x6E0) == ("msr", "IA32_TSC_DEADLINE")
    assert exitsites.name_msr(0xDEAD) == ("msr", "0xdead")


def test_sites_keep_the_vms_vcpu_threads_and_name_every_access(amap: exitsites.AddressMap) -> None:
    hists = {
        "mmio": {(151, 2, 0xFEBC3818): {"hitcount": 40}, (151, 0, 0xFEBC00C0): {"hitcount": 7},
                 (151, 1, 0xFEBC00C0): {"hitcount": 7}, (152, 2, 0xFEBC3818): {"hitcount": 2},
                 (999, 2, 0xFEBC3818): {"hitcount": 5000}},
        "msr": {(151, 1, 0x80B): {"hitcount": 9}},
        "pio": {(152, 0, 0x608): {"hitcount": 3}},
        "userspace": {(151, 6, 0): {"hitcount": 7}, (151, 6, (1 << 32) - 4): {"hitcount": 2}},
    }
    names = {"mmio": {0: "unsatisfied-read", 1: "read", 2: "write"}, "userspace": {6: "KVM_EXIT_MMIO"}}
    found = exitsites.sites(hists, {151, 152}, amap, names)
    got = [(s.kind, s.access, s.device, s.register, s.count) for s in found]
    assert got == [
        ("mmio", "write", "e1000", "TDT", 42),
        ("msr", "write", "lapic", "EOI", 9),
        ("mmio", "read", "e1000", "ICR", 7),
        ("mmio", "unsatisfied-read", "e1000", "ICR", 7),
        ("userspace", "KVM_EXIT_MMIO", "kvm", "KVM_EXIT_MMIO", 7),
        ("pio", "read", "acpi-tmr", "+0x0", 3),
        ("userspace", "restart", "kvm", "restart", 2),
    ]
    # A read that went to QEMU is traced twice (unsatisfied, then completed): counted once as an access.
    assert sum(s.count for s in exitsites.accesses(found)) == 42 + 9 + 7 + 3


def test_top_per_packet_sums_every_repeat_of_a_cell() -> None:
    def rec(repeat: int, register: str, count: int, packets: float, access: str = "write") -> dict[str, object]:
        return {"backend": "e1000", "direction": "tx", "repeat": repeat, "attempt": 1, "phase": "traffic",
                "kind": "mmio", "access": access, "device": "e1000", "register": register, "count": count,
                "packets": packets}

    records = [rec(1, "TDT", 300, 1000.0), rec(1, "ICR", 100, 1000.0, "read"), rec(2, "TDT", 500, 3000.0),
               rec(2, "ICR", 999, 3000.0, "unsatisfied-read"),
               {**rec(1, "TDT", 1, 0.0), "phase": "idle"}]
    (top,) = exitsites.top_per_packet(records).values()
    assert [(t.register, t.access, round(t.per_packet, 4), t.count) for t in top] == [
        ("TDT", "write", 0.2, 800), ("ICR", "read", 0.025, 100)]


def test_sites_and_the_tracings_cost_reach_the_results_dir_report_and_figure(data: Path, tmp_path: Path) -> None:
    """A run with exit_reasons = "alternate" (rows of rounds 1 and 4 counted by reason, 2 and 3 not):
    exit_sites.csv is written, the report names the registers per packet and sets the traced rounds
    beside the untraced ones, and the registers figure is drawn."""
    from dataclasses import asdict, replace

    from iobench import checkpoint, plots, report, runner, stale
    from iobench.store import ResultsWriter
    from tests.test_labwatch import _real_row

    run_id = "20261130-000000-abcdef"
    writer = ResultsWriter(tmp_path, run_id)
    state = checkpoint.Progress({"run_id": run_id, "scenario": {"repeats": 4, "exit_reasons": "alternate"},
                                 "accel": {"exit_source": "kvm-stats"}})
    for repeat in (1, 2, 3, 4):
        c, row = _real_row(data, "tx", repeat)
        traced = repeat in (1, 4)
        row = replace(row, exit_reasons_total=row.exits if traced else None,
                      throughput_bps=row.throughput_bps * (0.9 if traced else 1.0))
        state.rows.append(asdict(row))
        state.cells.append({"backend": "e1000", "direction": "tx", "repeat": repeat, "workload": c.workload.label,
                            "status": "ok", "reason": ""})
        if traced:
            for register, access, count in (("TDT", "write", 400), ("ICR", "read", 100), ("ICR", "unsatisfied-read", 100)):
                state.exit_sites.append({"run_id": run_id, "backend": "e1000", "direction": "tx", "repeat": repeat,
                                         "workload": c.workload.label, "phase": "traffic", "attempt": 1,
                                         "l1_attempt": None, "kind": "mmio", "access": access, "address": "0xfebc3818",
                                         "device": "e1000", "register": register, "count": count, "packets": 1000.0})
    checkpoint.save(writer.staging, state)
    stale.release(writer._lock)
    published = runner.publish_checkpoint(writer.staging, "ok", None, None)
    assert published is not None
    sites = (published / "exit_sites.csv").read_text().splitlines()
    assert sites[0].startswith("run_id,backend,direction,repeat") and len(sites) == 1 + 6

    lines = report.exit_site_lines(published)
    assert "| e1000 | tx | e1000 | TDT | write | 0.4000 |" in lines
    assert "| e1000 | tx | e1000 | ICR | read | 0.1000 |" in lines  # the unsatisfied half is not an access

    (cost,) = [ln for ln in report.perturbation_lines(published) if ln.startswith("| e1000 | tx |")]
    cells = [c.strip() for c in cost.strip("|").split("|")]
    assert cells[2] == "2/2" and cells[5] == "-10.0%", cells  # throughput: traced rounds 10% lower

    path = tmp_path / "e1000-registers.png"
    plots.registers_figure([{**s, "repeat": s["repeat"]} for s in state.exit_sites], "e1000", path)
    assert path.stat().st_size > 10_000


def test_rounds_alternate_between_counting_by_reason_and_not() -> None:
    from iobench.instruments.exits import ExitReasons
    from tests.replay import scope

    marker = object()
    for mode, expected in ((True, [True] * 8), ("alternate", [True, False, False, True, True, False, False, True])):
        inst = ExitReasons.__new__(ExitReasons)
        inst.run, inst.tracer = scope("kvm", exit_reasons=mode), marker  # type: ignore[assignment]
        assert [inst.active(r) is marker for r in range(1, 9)] == expected, mode


def _run_with_reasons(data: Path, root: Path, run_id: str, npf: int, tdt: int) -> Path:
    from dataclasses import asdict

    from iobench import checkpoint, runner, stale
    from iobench.store import ResultsWriter
    from tests.test_labwatch import _real_row

    writer = ResultsWriter(root, run_id)
    state = checkpoint.Progress({"run_id": run_id, "scenario": {"repeats": 1}, "accel": {"exit_source": "kvm-stats"}})
    c, row = _real_row(data, "tx", 1)
    state.rows.append(asdict(row))
    state.cells.append({"backend": "e1000", "direction": "tx", "repeat": 1, "workload": c.workload.label,
                        "status": "ok", "reason": ""})
    ident = {"run_id": run_id, "backend": "e1000", "direction": "tx", "repeat": 1, "workload": c.workload.label,
             "phase": "traffic", "attempt": 1, "l1_attempt": None, "packets": 1000.0}
    state.exit_reasons += [{**ident, "reason": "npf", "exits": npf, "handled": npf, "handling_ns": npf * 1000},
                           {**ident, "reason": "msr", "exits": 100, "handled": 100, "handling_ns": 100}]
    state.exit_sites += [{**ident, "kind": "mmio", "access": "write", "address": "0xfebc3818", "device": "e1000",
                          "register": "TDT", "count": tdt},
                         {**ident, "kind": "mmio", "access": "unsatisfied-read", "address": "0xfebc00c0",
                          "device": "e1000", "register": "ICR", "count": 999}]
    checkpoint.save(writer.staging, state)
    stale.release(writer._lock)
    published = runner.publish_checkpoint(writer.staging, "ok", None, None)
    assert published is not None
    return published


def test_compare_sets_reasons_and_registers_of_two_runs_side_by_side(data: Path, tmp_path: Path) -> None:
    from iobench import compare

    a = _run_with_reasons(data, tmp_path, "20261130-000000-aaaaaa", npf=300, tdt=250)
    b = _run_with_reasons(data, tmp_path, "20261130-000001-bbbbbb", npf=150, tdt=100)
    got = {d.what: (d.a, d.b) for d in compare.exit_detail(a, b)}
    assert got == {"reason npf": (0.3, 0.15), "reason msr": (0.1, 0.1), "e1000 TDT write": (0.25, 0.1)}


def _captured(name: str) -> tuple[dict[str, dict[tuple[int, ...], dict[str, int]]], dict[tuple[int, ...], dict[str, int]],
                                  set[int], exitsites.AddressMap]:
    """A real window from the lab (L1 Debian 6.1, L2 under QEMU 7.2): the raw hist file the run kept,
    split into its sections as counters.exitreasons reads them, the VM's vCPU threads, its memory map."""
    import json
    import re

    from iobench.counters import exitreasons

    text = (DATA / f"lab-sites/{name}-tx.exitreasons.hist").read_text()
    parts = re.split(r"(?m)^# sites: (\w+)\n", text)
    exits = exitreasons.parse_hist(exitreasons._only(parts[0].split("# handling time")[0], exitreasons.EXIT_TRIGGER))
    hists = {kind: exitreasons.parse_hist(body) for kind, body in zip(parts[1::2], parts[2::2], strict=True)}
    after = json.loads((DATA / f"lab-sites/{name}-tx.counters.json").read_text())["after"] if name == "e1000" else None
    vcpus = {t["tid"] for t in after["threads"] if t["kind"] == "vcpu"} if after else {k[0] for k in exits}
    return hists, exits, vcpus, exitsites.parse_mtree((DATA / f"lab-sites/{name}-mtree.txt").read_text())


@pytest.fixture(scope="module")
def site_names() -> dict[str, dict[int, str]]:
    from iobench.counters import exitreasons

    return {kind: exitreasons.print_symbols((DATA / f"tracefs/{event}.format").read_text(), exitreasons.SITE_SYMBOLS[kind])
            for kind, (event, _) in exitreasons.SITE_TRIGGERS.items() if kind in exitreasons.SITE_SYMBOLS}


def test_access_and_exit_names_come_from_the_tracepoints_formats(site_names: dict[str, dict[int, str]]) -> None:
    assert site_names["mmio"] == {0: "unsatisfied-read", 1: "read", 2: "write"}
    # kvm_userspace_exit's table is built from C literals side by side: { 6, "KVM_EXIT_" "MMIO" }
    assert site_names["userspace"][6] == "KVM_EXIT_MMIO" and site_names["userspace"][2] == "KVM_EXIT_IO"
    assert len(site_names["userspace"]) == 31


def test_a_real_e1000_window_lands_on_its_registers(site_names: dict[str, dict[int, str]]) -> None:
    """e1000 guest->host in the lab: every MMIO address is in QEMU's map (or the LAPIC); the driver's
    transmit tail, interrupt cause/mask and status registers are there; the MSR accesses traced equal
    the `msr` exits by reason, and MMIO accesses do not outnumber the nested page faults."""
    from iobench.counters import exitreasons

    hists, exits, vcpus, amap = _captured("e1000")
    found = exitsites.sites(hists, vcpus, amap, site_names)
    assert not [s for s in found if s.device == "unmapped"]
    regs = {(s.register, s.access): s.count for s in found if s.device == "e1000"}
    for key in (("TDT", "write"), ("ICR", "read"), ("IMC", "write"), ("IMS", "write"), ("STATUS", "read")):
        assert regs.get(key, 0) > 0, (key, regs)
    assert {s.access for s in found if s.kind == "userspace"} >= {"KVM_EXIT_MMIO"}
    names = exitreasons.reason_names((DATA / "tracefs/kvm_exit.format").read_text())
    by_reason = {r.reason: r.exits for r in exitreasons.by_reason(exits, {}, vcpus, names).reasons}
    msr_sites = sum(s.count for s in found if s.kind == "msr")
    assert abs(msr_sites - by_reason["msr"]) <= 0.02 * by_reason["msr"], (msr_sites, by_reason["msr"])
    mmio = sum(s.count for s in exitsites.accesses(found) if s.kind == "mmio")
    assert 0 < mmio <= by_reason["npf"], (mmio, by_reason["npf"])


def test_a_real_virtio_window_rings_the_tx_doorbell(site_names: dict[str, dict[int, str]]) -> None:
    hists, _, vcpus, amap = _captured("virtio")
    found = exitsites.sites(hists, vcpus, amap, site_names)
    (top,) = [s for s in found if s.device == "virtio-net"][:1]
    assert (top.register, top.access) == ("notify vq1 (tx0)", "write") and top.count > 0
    assert not [s for s in found if s.device in ("unmapped", "e1000")]


def test_the_exit_reasons_instrument_gives_a_real_windows_tables_and_total(site_names: dict[str, dict[int, str]]) -> None:
    """The captured e1000 guest->host window of the lab through the instrument: its tables are keyed to the
    window (run, cell, phase, attempt, L1 attempt), per packet from the link's count, and the row's
    exit_reasons_total is the sum of the VM's own vCPU threads' exits by reason."""
    import json
    from types import SimpleNamespace

    from iobench.counters import exitreasons
    from iobench.counters.proc import ThreadCPU
    from iobench.instruments.exits import ExitReasons
    from tests.replay import scope, window

    hists, exits, vcpus, amap = _captured("e1000")
    after = json.loads((DATA / "lab-sites/e1000-tx.counters.json").read_text())["after"]
    inst = ExitReasons.__new__(ExitReasons)
    inst.run = scope("kvm", exit_reasons=True)
    inst.tracer = SimpleNamespace(names=exitreasons.reason_names((DATA / "tracefs/kvm_exit.format").read_text()),
                                  site_names=site_names)  # type: ignore[assignment]
    inst.na, inst.address_map = "", amap
    inst.counts = exitreasons.WindowCounts(exits, {}, hists)
    inst.kvm_at = [1000, 1000 + 9000]  # KVM's exit count as the count started and as it stopped
    w = window("e1000-tx", "e1000")
    w.facts |= {"threads": [ThreadCPU(**t) for t in after["threads"]], "packets": 1234.44}
    got = inst.read(w, [])
    reasons, sites = got.tables["exit_reasons"], got.tables["exit_sites"]
    assert got.columns["exit_reasons_total"] == sum(r["exits"] for r in reasons) > 0
    assert got.columns["exit_reasons_kvm_exits"] == 9000  # the coverage's reference: KVM over the count's span
    assert {r["phase"] for r in reasons} == {"traffic"} and {r["packets"] for r in reasons} == {1234.4}
    assert {(r["backend"], r["direction"], r["attempt"]) for r in sites} == {("e1000", "tx", 1)}
    assert any(s["register"] == "TDT" and s["access"] == "write" for s in sites)
    assert vcpus == {t["tid"] for t in after["threads"] if t["kind"] == "vcpu"}


def test_coverage_is_against_kvms_count_over_the_counts_own_span() -> None:
    """The reasons are checked against KVM's exits read at the count's own edges; a row without that
    reference (older runs) falls back to the window's exits."""
    from dataclasses import fields

    from iobench.schema import Row, derive

    values = {f.name: None for f in fields(Row)} | {"bytes": 15140, "frames": 10, "exits": 9100, "duration_s": 1.0,
                                                    "cpu_s_iperf3_client": 0.1, "na_reason": "",
                                                    "exit_reasons_total": 9000, "exit_reasons_kvm_exits": 9000}
    assert derive(Row(**values))["exit_reasons_coverage"] == 1.0
    assert derive(Row(**(values | {"exit_reasons_kvm_exits": None})))["exit_reasons_coverage"] == round(9000 / 9100, 4)
