"""`iobench run`: plan the cells, run them, publish the results directory.

The runner is a function of (options, host) -> results dir; every fact about
the host goes into run.json, so results can be merged across machines later.
Cleanup is structural: the namespace, each VM and each iperf3 client live in
context managers, so success, failure, Ctrl-C and SIGTERM all unwind them.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from iobench import __version__, accel, backends, guest, hostinfo, topology, traffic
from iobench.backends import DIRECTIONS
from iobench.counters import tcg
from iobench.errors import CellFailed, Terminated, UserError
from iobench.measure import make_row, set_trace, snapshot
from iobench.results import ResultsWriter, Row, new_run_id
from iobench.vm import VM, VMConfig, VMLaunchFailure

Log = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    backends: tuple[str, ...] = ("all",)
    accel: str = "auto"
    directions: tuple[str, ...] = DIRECTIONS
    duration_s: int = 10
    omit_s: int = 1
    repeats: int = 1
    out: Path = Path("results")
    boot_timeout_s: float = 90.0
    memory_mb: int = 256
    vcpus: int = 1
    qemu_args: tuple[str, ...] = ()


@dataclass
class CellOutcome:
    backend: str
    direction: str
    repeat: int
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


def select_backends(requested: tuple[str, ...], accel_name: str) -> tuple[list[backends.Backend], dict[str, str]]:
    """Backends to run and the unavailable ones with reasons.

    Raises UserError (exit 2) for an unknown name or an explicitly requested
    backend that cannot run here.
    """
    names = list(backends.BACKENDS) if "all" in requested else list(dict.fromkeys(requested))
    chosen, unavailable = [], {}
    for name in names:
        if name not in backends.BACKENDS:
            raise UserError(f"unknown backend {name!r}: choose from {', '.join(backends.BACKENDS)} or all.")
        backend = backends.BACKENDS[name]
        reason = backends.unavailable_reason(backend, accel_name)
        if reason is None:
            chosen.append(backend)
        elif "all" in requested:
            unavailable[name] = reason
        else:
            raise UserError(f"backend {name} is unavailable here: {reason}.")
    if not chosen:
        raise UserError("no backend can run on this host: " + "; ".join(f"{k}: {v}" for k, v in unavailable.items()))
    return chosen, unavailable


def preflight(opts: RunOptions) -> None:
    """Checks that must pass before anything is created."""
    ok, why = topology.can_create_netns()
    if not ok:
        raise UserError(f"cannot create the run's network namespace: {why}.")
    for tool, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("iperf3", "iperf3")):
        if hostinfo._first_line([tool, "--version"]) is None:
            raise UserError(f"{tool} is not installed: apt-get install {pkg} (or run the README's setup command).")
    if opts.duration_s <= 0 or opts.repeats <= 0 or opts.omit_s < 0:
        raise UserError("duration and repeats must be positive and omit non-negative.")


def run(opts: RunOptions, log: Log = print) -> RunReport:
    preflight(opts)
    image = guest.build(log=log)
    guest.verify(image)
    choice = accel.choose(opts.accel, image, log=log)
    log(f"accelerator: {choice.accel} ({choice.reason})")
    chosen, unavailable = select_backends(opts.backends, choice.accel)
    for name, reason in unavailable.items():
        log(f"{name}: unavailable: {reason}")
    run_id = new_run_id()
    writer = ResultsWriter(opts.out, run_id)
    rows: list[Row] = []
    cells: list[CellOutcome] = []
    status = "failed"
    meta: dict[str, Any] = {}
    started = time.time()
    # Explicit handlers: a run started from a non-interactive shell inherits SIGINT ignored.
    previous = {sig: signal.signal(sig, handler) for sig, handler in
                ((signal.SIGTERM, _raise_terminated), (signal.SIGINT, signal.default_int_handler))}
    interrupted_by = None
    try:
        with topology.tap_topology(run_id) as topo:
            for backend in chosen:
                _run_backend(backend, topo, image, choice, opts, run_id, writer, rows, cells, log)
        status = "ok" if all(c.status == "ok" for c in cells) else "partial"
    except KeyboardInterrupt:
        status, interrupted_by = "interrupted", "SIGINT"
        raise
    except Terminated:
        status, interrupted_by = "interrupted", "SIGTERM"
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        meta = {
            "iobench_version": __version__, "run_id": run_id, "status": status, "interrupted_by": interrupted_by,
            "started": started, "finished": time.time(), "host": hostinfo.describe(),
            "accel": accel.as_dict(choice), "environment": "host",
            "image": image.manifest, "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
            "backends": {b.name: {"status": "available", "summary": b.summary} for b in chosen}
            | {n: {"status": f"unavailable: {r}"} for n, r in unavailable.items()},
            "cells": [asdict(c) for c in cells],
        }
        directory = writer.finish(meta, rows)
    return RunReport(directory, rows, cells, unavailable, status, meta)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def _default_signals_in_child() -> None:
    """Forked children (pyroute2 forks to open sockets in a namespace) must not
    inherit iobench's handlers: a child that turned SIGTERM or Ctrl-C into an
    exception would unwind *our* stack, run our cleanup (QMP quit, rmtree, the
    results rename) from the wrong process and steal replies on the QMP socket."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_DFL)
        except ValueError:  # not the main thread: nothing of ours to undo there
            pass


os.register_at_fork(after_in_child=_default_signals_in_child)


def _run_backend(backend: backends.Backend, topo: topology.Topology, image: guest.GuestImage,
                 choice: accel.AccelChoice, opts: RunOptions, run_id: str, writer: ResultsWriter,
                 rows: list[Row], cells: list[CellOutcome], log: Log) -> None:
    """Boot one VM for this backend and run every direction x repeat on it."""
    cfg = VMConfig(
        name=f"{backend.name}", accel=choice.accel, image=image,
        nic_args=backends.nic_args(backend, topo.tap),
        guest_cidr=f"{topo.plan.guest}/{topo.plan.prefixlen}",
        memory_mb=opts.memory_mb, vcpus=opts.vcpus, netns=topo.netns, extra_args=opts.qemu_args,
    )
    todo = [(d, r) for r in range(1, opts.repeats + 1) for d in opts.directions]
    with VM(cfg, logs_dest=writer.raw / backend.name) as vm:
        try:
            log(f"{backend.name}: booting the guest ({choice.accel})")
            try:
                vm.launch(boot_timeout=opts.boot_timeout_s)
            finally:
                writer.write_raw(f"{backend.name}/qemu-cmdline.json", vm.argv)
            log(f"{backend.name}: READY in {vm.boot_seconds:.1f} s")
            writer.write_raw(f"{backend.name}/boot.json", {"boot_seconds": vm.boot_seconds, "ready_line": vm.ready_line})
        except VMLaunchFailure as exc:
            log(f"{backend.name}: boot failed: {exc.reason}")
            cells.extend(CellOutcome(backend.name, d, r, "failed", f"boot: {exc}") for d, r in todo)
            return
        for direction, repeat in todo:
            name = f"{backend.name}/{direction}-r{repeat}"
            log(f"{backend.name}: {direction} repeat {repeat}: {opts.duration_s} s of traffic")
            try:
                rows.append(_measure_cell(vm, topo, backend, direction, repeat, choice, opts, run_id, writer, name))
                cells.append(CellOutcome(backend.name, direction, repeat, "ok"))
            except CellFailed as exc:
                log(f"{backend.name}: {direction} repeat {repeat} failed: {exc}")
                cells.append(CellOutcome(backend.name, direction, repeat, "failed", str(exc)))
                if not vm.alive():
                    for d, r in todo[todo.index((direction, repeat)) + 1:]:
                        cells.append(CellOutcome(backend.name, d, r, "failed", "not run: QEMU is gone"))
                    return


def _measure_cell(vm: VM, topo: topology.Topology, backend: backends.Backend, direction: str, repeat: int,
                  choice: accel.AccelChoice, opts: RunOptions, run_id: str, writer: ResultsWriter,
                  name: str) -> Row:
    spec = traffic.TrafficSpec(str(topo.plan.guest), direction, opts.duration_s, opts.omit_s)
    tracing = choice.accel == "tcg"
    if tracing:
        set_trace(vm, True)
    try:
        before = snapshot(vm, topo, choice.accel)
        raw = traffic.run(spec, topo.netns)
        writer.write_raw(f"{name}.iperf3.json", raw)
        after = snapshot(vm, topo, choice.accel)
    finally:
        if tracing and vm.alive():
            set_trace(vm, False)
    writer.write_raw(f"{name}.iperf3-argv.json", traffic.client_argv(spec))
    writer.write_raw(f"{name}.counters.json", {"before": before.as_dict(), "after": after.as_dict()})
    result = traffic.parse(raw)
    traps = None
    if tracing:
        lines = tcg.read_range(vm.trace_log, before.trace_offset, after.trace_offset)
        traps = tcg.parse(lines)
        writer.write_raw(f"{name}.trace-head.log", "\n".join(lines[:200]) + "\n")
        writer.write_raw(f"{name}.traps.json", {"by_region": traps.by_region, "device_writes": traps.device_writes,
                                                "virtio_kicks_handled": traps.virtio_kicks_handled,
                                                "virtio_notify": traps.virtio_notify,
                                                "irq_deliveries": traps.irq_deliveries})
    return make_row(run_id=run_id, backend=backend, direction=direction, repeat=repeat, accel=choice.accel,
                    before=before, after=after, traffic=result, traps=traps)
