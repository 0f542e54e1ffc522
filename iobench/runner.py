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
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from iobench import (
    __version__,
    accel,
    backends,
    checkpoint,
    faults,
    guest,
    hostinfo,
    instruments,
    labwatch,
    placement,
    provenance,
    qemubuilds,
    qemudesc,
    summary,
    switch,
    timeline,
    topologies,
    topology,
    traffic,
)
from iobench.errors import STOP_SIGNALS, CellFailed, Terminated, UserError, stop_signals_unwind
from iobench.instruments import Boot, Instrument, Measurement, RunScope, Window
from iobench.measure import (
    CellId,
    IdleWindow,
    idle_window,
    native_row,
    vm_row,
)
from iobench.scenario import Scenario, Workload, as_dict
from iobench.schema import Row
from iobench.store import ResultsWriter, disk_refused, new_run_id
from iobench.vm import QEMU_BINARY, VM, VMConfig

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
    l1_attempt: int | None = None
    topology: str = "direct"


@dataclass
class RunReport:
    """What the CLI needs after the run: where the results went and what happened."""

    directory: Path
    rows: list[Row]
    cells: list[CellOutcome]
    unavailable: dict[str, str]
    status: str
    meta: dict[str, Any] = field(default_factory=dict)


def select_backends(requested: tuple[str, ...], accel_name: str, variants: tuple[backends.Variant, ...] = (),
                    topologies_: tuple[str, ...] = ()) -> tuple[list[str], dict[str, str]]:
    """Backend names to run (NIC backends, then `native`) and the unavailable ones with reasons.

    Raises UserError (exit 2) for an unknown name or an explicitly requested
    backend that cannot run here.
    """
    known = backends.catalog(variants)
    everything = [*known, NATIVE]
    in_all = [n for n in known if n in backends.IN_ALL or known[n].base]
    if "all" in requested:  # all, plus whatever else is named beside it (e1000e, rtl8139), native last
        names = list(dict.fromkeys([*in_all, *(n for n in requested if n not in ("all", NATIVE)), NATIVE]))
    else:
        names = list(dict.fromkeys(requested))
    chosen, unavailable = [], {}
    for name in names:
        if name == NATIVE:
            chosen.append(name)
            continue
        if name not in known:
            raise UserError(f"unknown backend {name!r}: choose from {', '.join(everything)} or all.")
        reason = backends.unavailable_reason(known[name], accel_name, topologies_)
        if reason is None:
            chosen.append(name)
        elif "all" in requested:
            unavailable[name] = reason
        else:
            raise UserError(f"backend {name} is unavailable here: {reason}.")
    if not [n for n in chosen if n != NATIVE] and "all" in requested:
        raise UserError("no VM backend can run on this host: " + "; ".join(f"{k}: {v}" for k, v in unavailable.items()))
    return chosen, unavailable


def preflight(accel_name: str = "auto", kinds: Collection[str] = ("stream",),
              topologies: Collection[str] = ("direct",)) -> None:
    """Checks that must pass before anything is created: every missing privilege in one sentence."""
    problems = []
    ok, why = topology.can_create_netns()
    if not ok:
        problems.append(f"cannot create the run's network namespace: {why}")
    problems += [p for kind in topologies if (p := topology.support_problem(kind))]
    if accel_name == "kvm" and (kvm := accel.kvm_device_problem()):
        problems.append(f"--accel kvm is impossible: {kvm}")
    if problems:
        raise UserError("; ".join(problems) + ".")
    tools = [("qemu-system-x86_64", "qemu-system-x86", "--version"), ("iperf3", "iperf3", "--version")]
    if "rr" in kinds:
        tools.append(("sockperf", "sockperf", "--version"))
    for tool, pkg, flag in tools:
        if hostinfo.version_line([tool, flag]) is None:
            raise UserError(f"{tool} is not installed: apt-get install {pkg} (or run the README's setup command).")


Progress = Callable[[int, int], None]


def run(scn: Scenario, out: Path, log: Log = print, progress: Progress | None = None,
        resume: Path | None = None) -> RunReport:
    """Run the scenario's cells and publish the results directory.

    `resume` names the staging dir of a run that was cut short (the lab's L1 stalled
    or died): its run id, its checkpoint and its raw/ are taken over, and only the
    cells without an outcome are run, in the same rounds.
    """
    labwatch.announce("preparing the run", labwatch.STARTUP_BUDGET_S)
    chosen_topologies, topologies_unavailable = topologies.resolve(scn.topology, topology.support_problem)
    scn = replace(scn, topology=chosen_topologies)
    for name, reason in topologies_unavailable.items():
        log(f"topology {name}: unavailable: {reason}")
    preflight(scn.accel, scn.kinds, scn.topology)
    qemudesc.check_variants(scn.variants, scn.source)
    image = guest.build(log=log)
    guest.verify(image)
    choice = accel.choose(scn.accel, image, log=log)
    log(f"accelerator: {choice.accel} ({choice.reason})")
    chosen, unavailable = select_backends(scn.backends, choice.accel, scn.variants, tuple(scn.topology))
    for name, reason in unavailable.items():
        log(f"{name}: unavailable: {reason}")
    images = {"": image, **variant_images(chosen, scn, log)}
    multi = [n for n in chosen if n != NATIVE and backends.catalog(scn.variants)[n].queues > 1]
    if "macvtap" in scn.topology and multi:
        raise UserError(f"topology macvtap gives QEMU one queue of the macvtap, and {', '.join(multi)} asks for "
                        "several: run multiqueue variants over direct or bridge.")
    prior = checkpoint.load(resume) if resume is not None else None
    if resume is not None and prior is not None:
        run_id = prior.meta["run_id"]
        writer = ResultsWriter.adopt(resume)
    else:
        run_id = new_run_id()
        writer = ResultsWriter(out, run_id)
    host = hostinfo.describe()
    cpu_hz = hostinfo.cpu_hz(host)
    ctx = _Context(scn, run_id, writer, images, choice, cpu_hz, log,
                   total=scn.repeats * len(chosen) * len(scn.topology) * scn.cells_per_backend_round, progress=progress,
                   l1_attempt=int(os.environ["IOBENCH_L1_ATTEMPT"]) if os.environ.get("IOBENCH_L1_ATTEMPT") else None)
    ctx.state = prior or checkpoint.Progress({
        "iobench_version": __version__, "iobench_revision": provenance.revision(), "run_id": run_id, "started": time.time(),
        "environment": os.environ.get("IOBENCH_ENVIRONMENT", "host"), "host": host,
        "accel": accel.as_dict(choice), "image": image.manifest, "scenario": as_dict(scn),
        "variant_images": {k: img.manifest for k, img in images.items() if k},
        "backends": {n: {"status": "available", **_described(n, scn)} for n in chosen}
        | {n: {"status": f"unavailable: {r}"} for n, r in unavailable.items()},
        "timeline": {"interval_s": scn.timeline_interval_s, "sampling_cost": timeline.SAMPLING_COST},
    } | ({"topologies_unavailable": topologies_unavailable} if topologies_unavailable else {}))
    if prior is not None:
        reopened = prior.reopen_failed()
        log(f"resuming run {run_id}: {len(prior.cells)} of {ctx.total} cells already done"
            + (f"; {len(reopened)} that failed in the lost L1 measured again" if reopened else ""))
        ctx.state.meta.setdefault("resumed", []).append(time.time())
    ctx.save()
    if progress:
        progress(len(ctx.state.cells), ctx.total)
    # The instruments, last before the cells (one that loads a module or takes a lock is closed below):
    # each says in run.json whether it is on and why not (a resumed run keeps what its first part said).
    ctx.scope = RunScope(scn, choice.accel, run_id, writer, log, ctx.l1_attempt, ctx.state.meta)
    ctx.instruments = instruments.open_all(ctx.scope)
    for key, value in instruments.describe_all(ctx.instruments).items():
        ctx.state.meta.setdefault(key, value)
    status, interrupted_by, error = "failed", None, None
    try:
        with stop_signals_unwind():
            for repeat in range(1, scn.repeats + 1):
                for kind in scn.topology:  # built again every round: a round's cells share its state
                    if not ctx.cell_ids_of_round(chosen, repeat, kind):
                        continue  # a resumed run: this round of this topology was measured before
                    with topology.tap_topology(run_id, native=NATIVE in chosen, kind=kind) as topo:
                        for name in (chosen[::-1] if scn.order == "abba" and repeat % 2 == 0 else chosen):
                            if name == NATIVE:
                                _run_native(ctx, topo, repeat)
                            else:
                                _run_vm(ctx, topo, backends.catalog(scn.variants)[name], repeat)
        status = "ok" if all(c["status"] == "ok" for c in ctx.state.cells) else "partial"
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
        instruments.close_all(ctx.instruments)
        labwatch.announce("writing results", labwatch.FINISH_BUDGET_S)
        directory, meta = publish(writer, ctx.state, status, interrupted_by, error, artifacts=_artifacts)
    return RunReport(directory, [Row(**r) for r in ctx.state.rows], [CellOutcome(**c) for c in ctx.state.cells],
                     unavailable, status, meta)


def publish(writer: ResultsWriter, state: checkpoint.Progress, status: str, interrupted_by: str | None,
            error: str | None, artifacts: Callable[[Path], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """Write the results directory of `state` (every cell done so far) and rename it into place.
    Used at the end of a run and, by the lab's host, for the checkpoint of a run cut short."""
    rows = [Row(**r) for r in state.rows]
    summ = summary.summarize(rows)
    meta = {**state.meta, "status": status, "interrupted_by": interrupted_by, "error": error,
            "finished": time.time(), "cells": state.cells, "failed_attempts": state.attempts,
            "flagged": summary.flagged(summ)}
    directory = writer.finish(meta, rows, summ, timeline=state.timeline, artifacts=artifacts if rows else None,
                              exit_reasons=state.exit_reasons, exit_sites=state.exit_sites)
    return directory, meta


def publish_checkpoint(staging: Path, status: str, interrupted_by: str | None, error: str | None) -> Path | None:
    """Publish a staging dir left by a run that could not finish (its process or its L1 is gone);
    None when it has no checkpoint (the run stopped before it wrote one)."""
    state = checkpoint.load(staging)
    if state is None:
        return None
    return publish(ResultsWriter.adopt(staging), state, status, interrupted_by, error)[0]


def _artifacts(staging: Path) -> None:
    """Plots and report.md; in the lab the host draws them (matplotlib under emulation is slow)."""
    if os.environ.get("IOBENCH_ENVIRONMENT") == "lab":
        return
    from iobench import report

    report.write_artifacts(staging)


def variant_images(chosen: list[str] | tuple[str, ...], scn: Scenario, log: Log) -> dict[str, guest.GuestImage]:
    """The images of the chosen variants' own guest kernels, built (or found in the cache) and verified
    before the first boot: a kernel apt does not know stops the run here, not in the middle."""
    catalog = backends.catalog(scn.variants)
    kernels = sorted({catalog[n].kernel for n in chosen if n != NATIVE and catalog[n].kernel})
    out = {}
    for release in kernels:
        out[release] = guest.build(log=log, kernel_release=release)
        guest.verify(out[release])
    return out


def _described(name: str, scn: Scenario) -> dict[str, Any]:
    """run.json's record of one backend: what it is, and for a variant its base and knobs."""
    if name == NATIVE:
        return {"summary": "no VM: iperf3 between two namespaces over veth, the ceiling of every backend"}
    b = backends.catalog(scn.variants)[name]
    built = {"qemu": qemubuilds.record(b.qemu or QEMU_BINARY)} | ({"guest_kernel": b.kernel} if b.kernel else {})
    if not b.base:
        return {"summary": b.summary} | built
    return {"summary": b.summary, "base": b.base, "device": dict(b.device_props), "netdev": dict(b.netdev_props),
            "queues": b.queues, "guest": [list(g) for g in b.guest]} | built


@dataclass
class _Context:
    scn: Scenario
    run_id: str
    writer: ResultsWriter
    images: dict[str, guest.GuestImage]  # by guest kernel release ("": the default image)
    choice: accel.AccelChoice
    cpu_hz: float | None
    log: Log
    total: int = 0
    progress: Progress | None = None
    l1_attempt: int | None = None  # in the lab: which L1 boot measures (rows say so)
    state: checkpoint.Progress = field(default_factory=lambda: checkpoint.Progress({}))
    scope: RunScope | None = None
    instruments: list[Instrument] = field(default_factory=list)  # this run's, in registry order

    def cell_ids(self, backend: str, repeat: int, kind: str) -> list[CellId]:
        """This backend's cells of one round over topology `kind` that have no outcome yet (all of
        them, unless resumed)."""
        done = self.state.done()
        return [c for w in self.scn.workloads for d in self.scn.cell_directions(w)
                if (c := CellId(backend, d, repeat, w, self.scn.offloads, self.scn.vcpus, kind)).key not in done]

    def cell_ids_of_round(self, backends_: list[str], repeat: int, kind: str) -> list[CellId]:
        return [c for b in backends_ for c in self.cell_ids(b, repeat, kind)]

    @property
    def timeline(self) -> list[dict[str, Any]]:
        return self.state.timeline

    def lost_attempt(self, record: dict[str, Any]) -> None:
        self.state.attempts.append({**record, "l1_attempt": self.l1_attempt} if self.l1_attempt else record)
        self.save()

    def fail(self, cell: CellId, reason: str) -> None:
        self._outcome(CellOutcome(cell.backend, cell.direction, cell.repeat, cell.workload.label, "failed", reason,
                                  topology=cell.topology))

    def ok(self, cell: CellId, row: Row) -> None:
        self.state.rows.append(asdict(replace(row, l1_attempt=self.l1_attempt)))
        self._outcome(CellOutcome(cell.backend, cell.direction, cell.repeat, cell.workload.label, "ok",
                                  topology=cell.topology))

    def _outcome(self, outcome: CellOutcome) -> None:
        record = asdict(outcome)
        if self.l1_attempt is not None:
            record["l1_attempt"] = self.l1_attempt
        self.state.cells.append(record)
        self.save()
        if self.progress:
            self.progress(len(self.state.cells), self.total)

    def save(self) -> None:
        """The checkpoint after every outcome: what is done survives this process (and its L1)."""
        try:
            checkpoint.save(self.writer.staging, self.state)
        except OSError as exc:
            if disk_refused(exc):
                self.writer.lost = exc
                raise UserError(self.writer.lost_text(exc)) from exc
            raise


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
              topo_tap: str, guest_cidr: str, netns: str | None, tap_fd: int | None = None,
              socket: str | None = None) -> VMConfig:
    """One VM's configuration; `tap_fd`: the macvtap device QEMU inherits (its MAC is the guest's);
    `socket`: the vhost-user switch's (its guest memory then a shared memfd the switch maps)."""
    mac = topology.GUEST_MAC if tap_fd is not None else None
    return VMConfig(
        name=backend.name, accel=choice_accel, image=image,
        nic_args=backends.nic_args(backend, topo_tap, tap_fd, mac, socket, choice_accel),
        guest_cidr=guest_cidr, memory_mb=scn.memory_mb, vcpus=scn.vcpus, netns=netns,
        pass_fds=(tap_fd,) if tap_fd is not None else (), qemu=backend.qemu or QEMU_BINARY,
        extra_args=(*(qemubuilds.data_args(backend.qemu) if backend.qemu else ()),
                    *backends.shared_memory_args(backend, scn.memory_mb), *scn.qemu_args, *backend.qemu_args),
        cmdline_extra=((() if scn.offloads else ("iobench.offloads=off",)) + scn.kernel_args
                       + backends.guest_cmdline(backend)),
    )


def traffic_spec(server: str, direction: str, scn: Scenario, w: Workload) -> traffic.TrafficSpec:
    return traffic.TrafficSpec(server, direction, scn.duration_s, scn.omit_s, w.protocol, w.streams,
                               w.message_bytes, w.udp_bitrate, kind=w.kind, rate_pps=w.rate_pps)


def _where(backend: str, topo: topology.Topology) -> str:
    """A VM's tag's first part: the backend, and the topology unless it is `direct` (CellId.where)."""
    return topologies.label(backend, topo.kind)


def _run_vm(ctx: _Context, topo: topology.Topology, backend: backends.Backend, repeat: int) -> None:
    """Run this backend's cells of one round; a VM that dies or never boots is booted
    again (at most `retries` times) for the cells it left, and each lost attempt is
    recorded with its logs under raw/."""
    pending = ctx.cell_ids(backend.name, repeat, topo.kind)
    if not pending:  # a resumed run: this round of this backend was measured before
        return
    for attempt in range(1, ctx.scn.retries + 2):
        pending, reason = _vm_attempt(ctx, topo, backend, repeat, pending, attempt)
        if not pending:
            return
        ctx.lost_attempt({"backend": backend.name, "repeat": repeat, "attempt": attempt, "reason": reason,
                          "cells_left": [c.name for c in pending], "topology": topo.kind})
        if attempt <= ctx.scn.retries:
            ctx.log(f"{_where(backend.name, topo)}/r{repeat}: attempt {attempt} lost ({reason.splitlines()[0]}); booting again")
    for cell in pending:
        ctx.fail(cell, f"gave up after {ctx.scn.retries + 1} attempts: {reason}")


def _vm_attempt(ctx: _Context, topo: topology.Topology, backend: backends.Backend, repeat: int,
                cells: list[CellId], attempt: int) -> tuple[list[CellId], str]:
    """Boot one VM, measure its idle window, then the cells. Returns the cells left
    undone because the VM died or never booted (empty when none), and why."""
    topo.tap_for(backend.queues)
    try:
        with topo.open_tap() as tap_fd, _switch_for(ctx, topo, backend, repeat, attempt) as sw:
            cfg = vm_config(ctx.scn, backend, ctx.choice.accel, ctx.images[backend.kernel], topo.tap,
                            f"{topo.plan.guest}/{topo.plan.prefixlen}", topo.netns, tap_fd,
                            socket=str(sw.socket) if sw is not None else None)
            return _vm_boot_and_measure(ctx, topo, backend, repeat, cells, attempt, cfg, sw)
    except switch.SwitchFailed as exc:  # it never started: like a boot that failed, the attempt is lost
        ctx.log(f"{_where(backend.name, topo)}/r{repeat}: {str(exc).splitlines()[0]}")
        return cells, f"switch: {exc}"


@contextmanager
def _switch_for(ctx: _Context, topo: topology.Topology, backend: backends.Backend, repeat: int,
                attempt: int) -> Iterator[switch.Switch | None]:
    """The backend's userspace switch on the topology's tap for one VM (None: the backend has none); the tap
    is given back as it was after it. testpmd starts on every CPU iobench may use; the placement pins it."""
    if not backend.switch:
        yield None
        return
    tag = f"{_where(backend.name, topo)}/r{repeat}" + (f"-attempt{attempt}" if attempt > 1 else "")
    labwatch.announce(f"{tag}: switch start", switch.START_TIMEOUT_S + labwatch.QMP_SLACK_S)
    topo.remake_tap(multi_queue=True)  # DPDK's tap PMD attaches only to a multi-queue tap
    try:
        with switch.testpmd(ctx.run_id, topo.netns, topo.tap, placement.cpustr(os.sched_getaffinity(0)),
                            keep_log=ctx.writer.raw / f"{tag}-switch" / "testpmd.log") as sw:
            ctx.log(f"{tag}: {switch.TESTPMD} forwarding between vhost-user and {topo.tap} (pid {sw.pid})")
            ctx.writer.write_raw(f"{tag}-switch/argv.json", sw.argv)
            yield sw
    finally:
        topo.remake_tap(multi_queue=False)


def _vm_boot_and_measure(ctx: _Context, topo: topology.Topology, backend: backends.Backend, repeat: int,
                         cells: list[CellId], attempt: int, cfg: VMConfig,
                         sw: switch.Switch | None = None) -> tuple[list[CellId], str]:
    scn, log = ctx.scn, ctx.log
    tag = (f"{_where(backend.name, topo)}/r{repeat}" + (f"-attempt{attempt}" if attempt > 1 else "")
           + (f"-l1attempt{ctx.l1_attempt}" if ctx.l1_attempt and ctx.l1_attempt > 1 else ""))
    with VM(cfg, logs_dest=ctx.writer.raw / tag) as vm:
        try:
            log(f"{tag}: booting the guest ({ctx.choice.accel})")
            labwatch.announce(f"{tag}: boot", scn.boot_timeout_s + labwatch.QMP_SLACK_S)
            try:
                vm.launch(boot_timeout=scn.boot_timeout_s)
            finally:
                ctx.writer.write_raw(f"{tag}/qemu-cmdline.json", vm.argv)
            log(f"{tag}: READY in {vm.boot_seconds:.1f} s; idle window {scn.duration_s} s")
            boot = Boot(vm, backend, tag, repeat, attempt, host_offloads=topo.offloads, switch=sw,
                        ovs=topo.ovs)
            instruments.after_boot(ctx.instruments, boot)
            labwatch.announce(f"{tag}: idle window", SETTLE_S + scn.duration_s + labwatch.QMP_SLACK_S)
            time.sleep(SETTLE_S)
            idle = _idle_window(ctx, topo, boot)
            ctx.writer.write_raw(f"{tag}/boot-and-idle.json", {
                "boot_seconds": vm.boot_seconds, "ready_line": vm.ready_line, "idle": asdict(idle),
                "negotiated": boot.facts.get("negotiated")})
        except CellFailed as exc:
            log(f"{tag}: boot failed: {str(exc).splitlines()[0]}")
            return cells, f"boot: {exc}"
        for i, cell in enumerate(cells):
            log(f"{tag}: {cell.workload.label} {cell.direction}: {scn.duration_s} s of traffic")
            labwatch.announce(f"{tag}: {cell.workload.label} {cell.direction} traffic",
                              labwatch.traffic_budget(scn.duration_s, scn.omit_s))
            try:
                ctx.ok(cell, _measure_vm_cell(ctx, topo, boot, cell, idle))
            except CellFailed as exc:
                # dead or hung (a QEMU whose monitor stopped answering included): boot again (a switch that
                # died or failed once is not trusted with another window)
                gone = not vm.alive() or vm.wedged or (sw is not None and not sw.alive())
                if gone or isinstance(exc, traffic.GuestUnresponsive | switch.SwitchFailed):
                    log(f"{tag}: {cell.direction}: {str(exc).splitlines()[0]}")
                    return cells[i:], str(exc)
                log(f"{tag}: {cell.direction} failed: {str(exc).splitlines()[0]}")
                ctx.fail(cell, str(exc))
    return [], ""


def _idle_window(ctx: _Context, topo: topology.Topology, boot: Boot) -> IdleWindow:
    """The same VM with no traffic for one window, sampled like a traffic window."""
    name = f"{_where(boot.backend.name, topo)}/r{boot.repeat}" + (f"-attempt{boot.attempt}" if boot.attempt > 1 else "")
    window = Window("idle", boot.backend.name, boot.repeat, boot.attempt, f"{name}-idle", boot.vm.pid,
                    topo.link_stats, (topology.TAP_BYTES_BOTH, ("tx_packets", "rx_packets")), vm=boot.vm, boot=boot,
                    topology=topo.kind, port_stats=topo.port_stats, ovs=topo.ovs)
    with Measurement(_scope(ctx), ctx.instruments, window, ctx.scn.timeline_interval_s) as m:
        m.sleep(ctx.scn.duration_s)
    got = m.read()
    _keep_tables(ctx, got.tables)
    ident = timeline.SliceId(ctx.run_id, boot.backend.name, boot.repeat, boot.attempt, "", "", "idle", topo.kind)
    ctx.timeline.extend(timeline.rows(ident, m.times, got.slices))
    return idle_window(got.duration_s, got.columns)


def _scope(ctx: _Context) -> RunScope:
    assert ctx.scope is not None  # set by run() before the first window
    return ctx.scope


def _keep_tables(ctx: _Context, tables: dict[str, list[dict[str, Any]]]) -> None:
    """Per-window tables into the run's state (exit_reasons.csv, exit_sites.csv)."""
    ctx.state.exit_reasons.extend(tables.get("exit_reasons", []))
    ctx.state.exit_sites.extend(tables.get("exit_sites", []))


def _measure_vm_cell(ctx: _Context, topo: topology.Topology, boot: Boot, cell: CellId, idle: IdleWindow) -> Row:
    """One traffic window of a booted VM: the instruments around the traffic tool, then the row."""
    vm = boot.vm
    spec = faults.adjust_spec(traffic_spec(str(topo.plan.guest), cell.direction, ctx.scn, cell.workload), cell.backend,
                              cell.direction)
    window = Window("traffic", cell.backend, cell.repeat, boot.attempt, cell.name, vm.pid, topo.link_stats,
                    topo.data_counters(cell.direction), cell=cell, vm=vm, boot=boot, topology=cell.topology,
                    port_stats=topo.port_stats, ovs=topo.ovs)

    def watch() -> str | None:
        if not vm.alive():
            return str(vm.failure(vm.exit_text()))
        if boot.switch is not None and not boot.switch.alive():
            return str(boot.switch.failure(f"exited ({switch.exit_text(boot.switch)}) mid-window"))
        m.poke()
        return None

    with Measurement(_scope(ctx), ctx.instruments, window, ctx.scn.timeline_interval_s) as m:
        raw = traffic.run(spec, topo.client_netns, watch=watch, started=window.client_pids.append,
                          cpus=window.peer_cpus)
        ctx.writer.write_raw(f"{cell.name}.{spec.raw_name}", raw)
    got = m.read()
    ctx.writer.write_raw(f"{cell.name}.iperf3-argv.json", traffic.client_argv(spec))
    ctx.writer.write_raw(f"{cell.name}.counters.json", m.edges())
    _keep_tables(ctx, got.tables)
    ident = timeline.SliceId(ctx.run_id, cell.backend, cell.repeat, boot.attempt, cell.workload.label, cell.direction,
                             "traffic", cell.topology)
    ctx.timeline.extend(timeline.rows(ident, m.times, got.slices))
    return vm_row(run_id=ctx.run_id, cell=cell, backend=boot.backend, accel=ctx.choice.accel,
                  traffic=traffic.parse_output(raw, spec), measured=got.columns, na=got.na,
                  duration_s=got.duration_s, idle=idle, cpu_hz=ctx.cpu_hz)


def _run_native(ctx: _Context, topo: topology.Topology, repeat: int) -> None:
    pair = topo.native
    assert pair is not None
    for cell in ctx.cell_ids(NATIVE, repeat, topo.kind):
        ctx.log(f"{cell.where}/r{repeat}: {cell.workload.label} {cell.direction}: {ctx.scn.duration_s} s of traffic")
        labwatch.announce(f"{cell.where}/r{repeat}: {cell.workload.label} {cell.direction} traffic",
                          labwatch.traffic_budget(ctx.scn.duration_s, ctx.scn.omit_s))
        spec = traffic_spec(str(pair.server), cell.direction, ctx.scn, cell.workload)
        try:
            with traffic.server(pair.peer_netns, spec=spec) as srv:
                window = Window("traffic", NATIVE, repeat, 1, cell.name, srv.pid, pair.peer_link_stats,
                                topology.PEER_DATA_COUNTERS[cell.direction], cell=cell, topology=cell.topology,
                                port_stats=topo.port_stats, ovs=topo.ovs, host_offloads=topo.native_offloads)
                with Measurement(_scope(ctx), ctx.instruments, window) as m:
                    raw = traffic.run(spec, topo.client_netns, started=window.client_pids.append,
                                      cpus=window.peer_cpus)
                    ctx.writer.write_raw(f"{cell.name}.{spec.raw_name}", raw)
                got = m.read()  # before the server is reaped: only the client's CPU is a child's here
            ctx.writer.write_raw(f"{cell.name}.iperf3-argv.json", traffic.client_argv(spec))
            ctx.writer.write_raw(f"{cell.name}.counters.json", m.edges())
            row = native_row(run_id=ctx.run_id, cell=cell, traffic=traffic.parse_output(raw, spec),
                             measured=got.columns, duration_s=got.duration_s, cpu_hz=ctx.cpu_hz)
            ctx.ok(cell, row)
        except CellFailed as exc:
            ctx.log(f"{cell.where}/r{repeat}: {cell.direction} failed: {exc}")
            ctx.fail(cell, str(exc))
