"""`iobench run`: plan the cells, run them round by round, publish the results directory.

The runner is a function of (scenario, host) -> results dir; every fact about
the host goes into run.json, so results can be merged across machines later.
Backends are interleaved in rounds (round 1: every backend once, then round 2...)
so that drift hits all backends alike; each round boots a fresh VM per backend,
so repeats also sample boot-to-boot variation. Cleanup is structural: the
namespaces, each VM and each iperf3 process live in context managers, so
success, failure, Ctrl-C and SIGTERM all unwind them.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from iobench import __version__, accel, backends, guest, hostinfo, summary, timeline, topology, traffic
from iobench.counters import copytrace, tcg
from iobench.errors import STOP_SIGNALS, CellFailed, Terminated, UserError, stop_signals_unwind
from iobench.measure import (
    TAP_BYTES_BOTH,
    TAP_DATA_COUNTERS,
    CellId,
    IdleWindow,
    children_cpu_s,
    exit_counts,
    native_row,
    set_trace,
    snapshot,
    vm_row,
)
from iobench.results import ResultsWriter, Row, disk_refused, new_run_id
from iobench.scenario import Scenario, Workload, as_dict
from iobench.vm import VM, VMConfig

Log = Callable[[str], None]
NATIVE = "native"
SETTLE_S = 1.0  # after READY, before the idle window: let the guest's boot-time timers quiet down


@dataclass
class CellOutcome:
    backend: str
    direction: str
    repeat: int
    workload: str
    status: str
    reason: str = ""


@dataclass
class RunReport:
    """What the CLI needs after the run: where the results went and what happened."""

    directory: Path
    rows: list[Row]
    cells: list[CellOutcome]
    unavailable: dict[str, str]
    status: str
    meta: dict[str, Any] = field(default_factory=dict)


def select_backends(requested: tuple[str, ...], accel_name: str) -> tuple[list[str], dict[str, str]]:
    """Backend names to run (NIC backends, then `native`) and the unavailable ones with reasons.

    Raises UserError (exit 2) for an unknown name or an explicitly requested
    backend that cannot run here.
    """
    everything = [*backends.BACKENDS, NATIVE]
    names = everything if "all" in requested else list(dict.fromkeys(requested))
    chosen, unavailable = [], {}
    for name in names:
        if name == NATIVE:
            chosen.append(name)
            continue
        if name not in backends.BACKENDS:
            raise UserError(f"unknown backend {name!r}: choose from {', '.join(everything)} or all.")
        reason = backends.unavailable_reason(backends.BACKENDS[name], accel_name)
        if reason is None:
            chosen.append(name)
        elif "all" in requested:
            unavailable[name] = reason
        else:
            raise UserError(f"backend {name} is unavailable here: {reason}.")
    if not [n for n in chosen if n != NATIVE] and "all" in requested:
        raise UserError("no VM backend can run on this host: " + "; ".join(f"{k}: {v}" for k, v in unavailable.items()))
    return chosen, unavailable


def preflight(accel_name: str = "auto") -> None:
    """Checks that must pass before anything is created: every missing privilege in one sentence."""
    problems = []
    ok, why = topology.can_create_netns()
    if not ok:
        problems.append(f"cannot create the run's network namespace: {why}")
    if accel_name == "kvm" and (kvm := accel.kvm_device_problem()):
        problems.append(f"--accel kvm is impossible: {kvm}")
    if problems:
        raise UserError("; ".join(problems) + ".")
    for tool, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("iperf3", "iperf3")):
        if hostinfo.version_line([tool, "--version"]) is None:
            raise UserError(f"{tool} is not installed: apt-get install {pkg} (or run the README's setup command).")


Progress = Callable[[int, int], None]


def run(scn: Scenario, out: Path, log: Log = print, progress: Progress | None = None) -> RunReport:
    preflight(scn.accel)
    image = guest.build(log=log)
    guest.verify(image)
    choice = accel.choose(scn.accel, image, log=log)
    log(f"accelerator: {choice.accel} ({choice.reason})")
    chosen, unavailable = select_backends(scn.backends, choice.accel)
    for name, reason in unavailable.items():
        log(f"{name}: unavailable: {reason}")
    run_id = new_run_id()
    writer = ResultsWriter(out, run_id)
    host = hostinfo.describe()
    cpu_hz = hostinfo.cpu_hz(host)
    ctx = _Context(scn, run_id, writer, image, choice, cpu_hz, log,
                   total=scn.repeats * len(chosen) * len(scn.workloads) * len(scn.directions), progress=progress)
    if progress:
        progress(0, ctx.total)
    if scn.copy_trace:
        try:
            ctx.copytrace = copytrace.CopyTrace(log=log)
            log(f"copy trace: counting {', '.join(ctx.copytrace.armed)} per thread (kprobes)")
        except copytrace.CopyTraceUnavailable as exc:
            ctx.copytrace_na = f"copy trace unavailable here: {exc}"
            log(ctx.copytrace_na)
    status, interrupted_by, error = "failed", None, None
    started = time.time()
    try:
        with stop_signals_unwind(), topology.tap_topology(run_id, native=NATIVE in chosen) as topo:
            for repeat in range(1, scn.repeats + 1):
                for name in chosen:
                    if name == NATIVE:
                        _run_native(ctx, topo, repeat)
                    else:
                        _run_vm(ctx, topo, backends.BACKENDS[name], repeat)
        status = "ok" if all(c.status == "ok" for c in ctx.cells) else "partial"
    except KeyboardInterrupt:
        status, interrupted_by = "interrupted", "SIGINT"
        raise
    except Terminated as exc:
        status, interrupted_by = "interrupted", signal.Signals(exc.signum).name
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OSError) and disk_refused(exc) and writer.lost is None:
            writer.lost = exc  # e.g. QEMU's logs copied into raw/ at shutdown
        raise
    finally:
        if ctx.copytrace is not None:
            ctx.copytrace.close()
        summ = summary.summarize(ctx.rows)
        meta = {
            "iobench_version": __version__, "run_id": run_id, "status": status, "interrupted_by": interrupted_by,
            "error": error,
            "started": started, "finished": time.time(),
            "environment": os.environ.get("IOBENCH_ENVIRONMENT", "host"), "host": host,
            "accel": accel.as_dict(choice), "image": image.manifest, "scenario": as_dict(scn),
            "backends": {n: {"status": "available", "summary": _summary_of(n)} for n in chosen}
            | {n: {"status": f"unavailable: {r}"} for n, r in unavailable.items()},
            "cells": [asdict(c) for c in ctx.cells],
            "failed_attempts": ctx.attempts,
            "copy_trace": (f"on: kprobes on {', '.join(ctx.copytrace.armed)} (module {copytrace.MODULE}), "
                           "bytes summed per thread by a hist trigger" if ctx.copytrace else ctx.copytrace_na),
            "timeline": {"interval_s": scn.timeline_interval_s, "sampling_cost": timeline.SAMPLING_COST},
            "flagged": summary.flagged(summ),
        }
        directory = writer.finish(meta, ctx.rows, summ, timeline=ctx.timeline,
                                  artifacts=_artifacts if ctx.rows else None)
    return RunReport(directory, ctx.rows, ctx.cells, unavailable, status, meta)


def _artifacts(staging: Path) -> None:
    """Plots and report.md; in the lab the host draws them (matplotlib under emulation is slow)."""
    if os.environ.get("IOBENCH_ENVIRONMENT") == "lab":
        return
    from iobench import report

    report.write_artifacts(staging)


def _summary_of(name: str) -> str:
    if name == NATIVE:
        return "no VM: iperf3 between two namespaces over veth, the ceiling of every backend"
    return backends.BACKENDS[name].summary


@dataclass
class _Context:
    scn: Scenario
    run_id: str
    writer: ResultsWriter
    image: guest.GuestImage
    choice: accel.AccelChoice
    cpu_hz: float | None
    log: Log
    total: int = 0
    progress: Progress | None = None
    rows: list[Row] = field(default_factory=list)
    cells: list[CellOutcome] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    copytrace: copytrace.CopyTrace | None = None
    copytrace_na: str = "copy trace off (--copy-trace)"

    def cell_ids(self, backend: str, repeat: int) -> list[CellId]:
        return [CellId(backend, d, repeat, w, self.scn.offloads, self.scn.vcpus)
                for w in self.scn.workloads for d in self.scn.directions]

    def fail(self, cell: CellId, reason: str) -> None:
        self.cells.append(CellOutcome(cell.backend, cell.direction, cell.repeat, cell.workload.label, "failed", reason))
        self._advance()

    def ok(self, cell: CellId, row: Row) -> None:
        self.rows.append(row)
        self.cells.append(CellOutcome(cell.backend, cell.direction, cell.repeat, cell.workload.label, "ok"))
        self._advance()

    def _advance(self) -> None:
        if self.progress:
            self.progress(len(self.cells), self.total)


def _default_signals_in_child() -> None:
    """Forked children (pyroute2 forks to open sockets in a namespace) must not
    inherit iobench's handlers: a child that turned SIGTERM or Ctrl-C into an
    exception would unwind *our* stack, run our cleanup (QMP quit, rmtree, the
    results rename) from the wrong process and steal replies on the QMP socket."""
    for sig in STOP_SIGNALS:
        try:
            signal.signal(sig, signal.SIG_DFL)
        except ValueError:  # not the main thread: nothing of ours to undo there
            pass


os.register_at_fork(after_in_child=_default_signals_in_child)


def vm_config(scn: Scenario, backend: backends.Backend, choice_accel: str, image: guest.GuestImage,
              topo_tap: str, guest_cidr: str, netns: str | None) -> VMConfig:
    return VMConfig(
        name=backend.name, accel=choice_accel, image=image, nic_args=backends.nic_args(backend, topo_tap),
        guest_cidr=guest_cidr, memory_mb=scn.memory_mb, vcpus=scn.vcpus, netns=netns, extra_args=scn.qemu_args,
        cmdline_extra=() if scn.offloads else ("iobench.offloads=off",),
    )


def traffic_spec(server: str, direction: str, scn: Scenario, w: Workload) -> traffic.TrafficSpec:
    return traffic.TrafficSpec(server, direction, scn.duration_s, scn.omit_s, w.protocol, w.streams,
                               w.message_bytes, w.udp_bitrate)


def _run_vm(ctx: _Context, topo: topology.Topology, backend: backends.Backend, repeat: int) -> None:
    """Run this backend's cells of one round; a VM that dies or never boots is booted
    again (at most `retries` times) for the cells it left, and each lost attempt is
    recorded with its logs under raw/."""
    pending = ctx.cell_ids(backend.name, repeat)
    for attempt in range(1, ctx.scn.retries + 2):
        pending, reason = _vm_attempt(ctx, topo, backend, repeat, pending, attempt)
        if not pending:
            return
        ctx.attempts.append({"backend": backend.name, "repeat": repeat, "attempt": attempt, "reason": reason,
                             "cells_left": [c.name for c in pending]})
        if attempt <= ctx.scn.retries:
            ctx.log(f"{backend.name}/r{repeat}: attempt {attempt} lost ({reason.splitlines()[0]}); booting again")
    for cell in pending:
        ctx.fail(cell, f"gave up after {ctx.scn.retries + 1} attempts: {reason}")


def _vm_attempt(ctx: _Context, topo: topology.Topology, backend: backends.Backend, repeat: int,
                cells: list[CellId], attempt: int) -> tuple[list[CellId], str]:
    """Boot one VM, measure its idle window, then the cells. Returns the cells left
    undone because the VM died or never booted (empty when none), and why."""
    scn, log = ctx.scn, ctx.log
    cfg = vm_config(scn, backend, ctx.choice.accel, ctx.image, topo.tap, f"{topo.plan.guest}/{topo.plan.prefixlen}",
                    topo.netns)
    tag = f"{backend.name}/r{repeat}" + (f"-attempt{attempt}" if attempt > 1 else "")
    with VM(cfg, logs_dest=ctx.writer.raw / tag) as vm:
        try:
            log(f"{tag}: booting the guest ({ctx.choice.accel})")
            try:
                vm.launch(boot_timeout=scn.boot_timeout_s)
            finally:
                ctx.writer.write_raw(f"{tag}/qemu-cmdline.json", vm.argv)
            log(f"{tag}: READY in {vm.boot_seconds:.1f} s; idle window {scn.duration_s} s")
            time.sleep(SETTLE_S)
            idle = _idle_window(ctx, vm, topo, backend.name, repeat, attempt)
            ctx.writer.write_raw(f"{tag}/boot-and-idle.json", {
                "boot_seconds": vm.boot_seconds, "ready_line": vm.ready_line, "idle": asdict(idle)})
        except CellFailed as exc:
            log(f"{tag}: boot failed: {str(exc).splitlines()[0]}")
            return cells, f"boot: {exc}"
        for i, cell in enumerate(cells):
            log(f"{tag}: {cell.workload.label} {cell.direction}: {scn.duration_s} s of traffic")
            try:
                ctx.ok(cell, _measure_vm_cell(ctx, vm, topo, backend, cell, idle, attempt))
            except CellFailed as exc:
                if not vm.alive():
                    log(f"{tag}: {cell.direction}: {str(exc).splitlines()[0]}")
                    return cells[i:], str(exc)
                log(f"{tag}: {cell.direction} failed: {str(exc).splitlines()[0]}")
                ctx.fail(cell, str(exc))
    return [], ""


def _fault(cell: CellId) -> str | None:
    """Test hook: IOBENCH_FAULT=<fault>:<backend>:<direction> injects a real fault into that cell:
    `kill-qemu` SIGKILLs QEMU one second into its first attempt; `iperf3-port` points the
    client at a port where the guest has no server."""
    fault, _, where = os.environ.get("IOBENCH_FAULT", "").partition(":")
    return fault if where == f"{cell.backend}:{cell.direction}" else None


def _fault_timer(vm: VM, cell: CellId, attempt: int) -> threading.Timer | None:
    if attempt != 1 or _fault(cell) != "kill-qemu":
        return None
    timer = threading.Timer(1.0, lambda: os.kill(vm.pid, signal.SIGKILL) if vm.alive() else None)
    timer.start()
    return timer


def _idle_window(ctx: _Context, vm: VM, topo: topology.Topology, backend: str, repeat: int, attempt: int) -> IdleWindow:
    """The same VM with no traffic for one window, sampled like a traffic window."""
    accel_name, seconds = ctx.choice.accel, ctx.scn.duration_s
    tracing = accel_name == "tcg"
    if tracing:
        set_trace(vm, True)
    sampler = timeline.Sampler(lambda: snapshot(vm.pid, topo.link_stats, vm, accel_name), ctx.scn.timeline_interval_s)
    try:
        before = snapshot(vm.pid, topo.link_stats, vm, accel_name)
        sampler.first(before)
        sampler.sleep(seconds)
        after = snapshot(vm.pid, topo.link_stats, vm, accel_name)
    finally:
        if tracing and vm.alive():
            set_trace(vm, False)
    traps = tcg.parse(tcg.read_range(vm.trace_log, before.trace_offset, after.trace_offset)) if tracing else None
    ident = timeline.SliceId(ctx.run_id, backend, repeat, attempt, "", "", "idle")
    ctx.timeline += timeline.rows(ident, sampler.last(after), TAP_BYTES_BOTH, vm.trace_log if tracing else None)
    exits = exit_counts(before, after, traps)
    return IdleWindow(round(after.monotonic - before.monotonic, 3), int(exits["exits"] or 0),
                      int(exits["irq_injections"] or 0))


def _measure_vm_cell(ctx: _Context, vm: VM, topo: topology.Topology, backend: backends.Backend, cell: CellId,
                     idle: IdleWindow, attempt: int = 1) -> Row:
    spec = traffic_spec(str(topo.plan.guest), cell.direction, ctx.scn, cell.workload)
    if _fault(cell) == "iperf3-port":  # test hook: nothing listens there, iperf3 fails with its own error
        spec = replace(spec, port=traffic.IPERF3_PORT + 98)
    accel_name = ctx.choice.accel
    tracing = accel_name == "tcg"
    sampler = timeline.Sampler(lambda: snapshot(vm.pid, topo.link_stats, vm, accel_name), ctx.scn.timeline_interval_s)
    client_pids: list[int] = []
    if tracing:
        set_trace(vm, True)
    try:
        if ctx.copytrace:
            ctx.copytrace.start()
        before = snapshot(vm.pid, topo.link_stats, vm, accel_name)
        sampler.first(before)
        cpu0 = children_cpu_s()
        fault = _fault_timer(vm, cell, attempt)

        def watch() -> str | None:
            if not vm.alive():
                return str(vm.failure(vm.exit_text()))
            sampler.poke()
            return None

        try:
            raw = traffic.run(spec, topo.netns, watch=watch, started=client_pids.append)
        finally:
            if fault:
                fault.cancel()
        client_cpu = children_cpu_s() - cpu0
        ctx.writer.write_raw(f"{cell.name}.iperf3.json", raw)
        after = snapshot(vm.pid, topo.link_stats, vm, accel_name)
    finally:
        if tracing and vm.alive():
            set_trace(vm, False)
        kcopies = None
        if ctx.copytrace:
            counts, hist = ctx.copytrace.stop()
            ctx.writer.write_raw(f"{cell.name}.copytrace.hist", hist)
    if ctx.copytrace:
        kcopies = copytrace.by_kind(counts, {t.tid for t in after.threads if t.kind != "vhost"}, vm.pid,
                                    set(client_pids))
    ctx.writer.write_raw(f"{cell.name}.iperf3-argv.json", traffic.client_argv(spec))
    ctx.writer.write_raw(f"{cell.name}.counters.json", {"before": before.as_dict(), "after": after.as_dict()})
    result = traffic.parse(raw)
    traps = None
    if tracing:
        lines = tcg.read_range(vm.trace_log, before.trace_offset, after.trace_offset)
        traps = tcg.parse(lines)
        ctx.writer.write_raw(f"{cell.name}.trace-head.log", "\n".join(lines[:200]) + "\n")
        ctx.writer.write_raw(f"{cell.name}.traps.json", asdict(traps))
    ident = timeline.SliceId(ctx.run_id, cell.backend, cell.repeat, attempt, cell.workload.label, cell.direction,
                             "traffic")
    ctx.timeline += timeline.rows(ident, sampler.last(after), TAP_DATA_COUNTERS[cell.direction][:1],
                                  vm.trace_log if tracing else None)
    return vm_row(run_id=ctx.run_id, cell=cell, backend=backend, accel=accel_name, before=before, after=after,
                  traffic=result, traps=traps, idle=idle, client_cpu_s=client_cpu, cpu_hz=ctx.cpu_hz,
                  kcopies=kcopies, kcopy_na=ctx.copytrace_na)


def _run_native(ctx: _Context, topo: topology.Topology, repeat: int) -> None:
    pair = topo.native
    assert pair is not None
    for cell in ctx.cell_ids(NATIVE, repeat):
        ctx.log(f"native/r{repeat}: {cell.workload.label} {cell.direction}: {ctx.scn.duration_s} s of traffic")
        spec = traffic_spec(str(pair.plan.guest), cell.direction, ctx.scn, cell.workload)
        try:
            with traffic.server(pair.peer_netns) as srv:
                before = snapshot(srv.pid, pair.peer_link_stats)
                cpu0 = children_cpu_s()
                raw = traffic.run(spec, topo.netns)
                client_cpu = children_cpu_s() - cpu0
                ctx.writer.write_raw(f"{cell.name}.iperf3.json", raw)
                after = snapshot(srv.pid, pair.peer_link_stats)
            ctx.writer.write_raw(f"{cell.name}.iperf3-argv.json", traffic.client_argv(spec))
            ctx.writer.write_raw(f"{cell.name}.counters.json", {"before": before.as_dict(), "after": after.as_dict()})
            row = native_row(run_id=ctx.run_id, cell=cell, before=before, after=after, traffic=traffic.parse(raw),
                             client_cpu_s=client_cpu, cpu_hz=ctx.cpu_hz)
            ctx.ok(cell, row)
        except CellFailed as exc:
            ctx.log(f"native/r{repeat}: {cell.direction} failed: {exc}")
            ctx.fail(cell, str(exc))

