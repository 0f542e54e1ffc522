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
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from iobench import (
    __version__,
    accel,
    backends,
    checkpoint,
    exitsites,
    faults,
    guest,
    hostinfo,
    labwatch,
    negotiated,
    provenance,
    qemudesc,
    summary,
    timeline,
    topology,
    traffic,
)
from iobench.counters import copytrace, exitreasons, tcg
from iobench.counters.exitreasons import ExitReasons
from iobench.errors import STOP_SIGNALS, CellFailed, Terminated, UserError, stop_signals_unwind
from iobench.measure import (
    TAP_BYTES_BOTH,
    TAP_DATA_COUNTERS,
    CellId,
    IdleWindow,
    Snapshot,
    children_cpu_s,
    idle_window,
    native_row,
    set_trace,
    snapshot,
    vm_row,
)
from iobench.scenario import Scenario, Workload, as_dict
from iobench.schema import FRAME_AT_MTU, Row
from iobench.store import ResultsWriter, disk_refused, new_run_id
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
    l1_attempt: int | None = None


@dataclass
class RunReport:
    """What the CLI needs after the run: where the results went and what happened."""

    directory: Path
    rows: list[Row]
    cells: list[CellOutcome]
    unavailable: dict[str, str]
    status: str
    meta: dict[str, Any] = field(default_factory=dict)


def select_backends(requested: tuple[str, ...], accel_name: str,
                    variants: tuple[backends.Variant, ...] = ()) -> tuple[list[str], dict[str, str]]:
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
        reason = backends.unavailable_reason(known[name], accel_name)
        if reason is None:
            chosen.append(name)
        elif "all" in requested:
            unavailable[name] = reason
        else:
            raise UserError(f"backend {name} is unavailable here: {reason}.")
    if not [n for n in chosen if n != NATIVE] and "all" in requested:
        raise UserError("no VM backend can run on this host: " + "; ".join(f"{k}: {v}" for k, v in unavailable.items()))
    return chosen, unavailable


def preflight(accel_name: str = "auto", kinds: Collection[str] = ("stream",)) -> None:
    """Checks that must pass before anything is created: every missing privilege in one sentence."""
    problems = []
    ok, why = topology.can_create_netns()
    if not ok:
        problems.append(f"cannot create the run's network namespace: {why}")
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
    preflight(scn.accel, scn.kinds)
    qemudesc.check_variants(scn.variants, scn.source)
    image = guest.build(log=log)
    guest.verify(image)
    choice = accel.choose(scn.accel, image, log=log)
    log(f"accelerator: {choice.accel} ({choice.reason})")
    chosen, unavailable = select_backends(scn.backends, choice.accel, scn.variants)
    for name, reason in unavailable.items():
        log(f"{name}: unavailable: {reason}")
    prior = checkpoint.load(resume) if resume is not None else None
    if resume is not None and prior is not None:
        run_id = prior.meta["run_id"]
        writer = ResultsWriter.adopt(resume)
    else:
        run_id = new_run_id()
        writer = ResultsWriter(out, run_id)
    host = hostinfo.describe()
    cpu_hz = hostinfo.cpu_hz(host)
    ctx = _Context(scn, run_id, writer, image, choice, cpu_hz, log,
                   total=scn.repeats * len(chosen) * scn.cells_per_backend_round, progress=progress,
                   l1_attempt=int(os.environ["IOBENCH_L1_ATTEMPT"]) if os.environ.get("IOBENCH_L1_ATTEMPT") else None)
    if scn.copy_trace:
        try:
            ctx.copytrace = copytrace.CopyTrace(log=log)
            log(f"copy trace: counting {', '.join(ctx.copytrace.armed)} per thread (kprobes)")
        except copytrace.CopyTraceUnavailable as exc:
            ctx.copytrace_na = f"copy trace unavailable here: {exc}"
            log(ctx.copytrace_na)
    ctx.exitreasons_na = _start_exit_reasons(ctx, scn, choice.accel)
    ctx.state = prior or checkpoint.Progress({
        "iobench_version": __version__, "iobench_revision": provenance.revision(), "run_id": run_id, "started": time.time(),
        "environment": os.environ.get("IOBENCH_ENVIRONMENT", "host"), "host": host,
        "accel": accel.as_dict(choice), "image": image.manifest, "scenario": as_dict(scn),
        "backends": {n: {"status": "available", **_described(n, scn)} for n in chosen}
        | {n: {"status": f"unavailable: {r}"} for n, r in unavailable.items()},
        "copy_trace": (f"on: kprobes on {', '.join(ctx.copytrace.armed)} (module {copytrace.MODULE}), "
                       "bytes summed per thread by a hist trigger" if ctx.copytrace else ctx.copytrace_na),
        "timeline": {"interval_s": scn.timeline_interval_s, "sampling_cost": timeline.SAMPLING_COST},
        "exit_reasons": (("on in rounds 1, 4, 5, 8... only (exit_reasons = \"alternate\")" if scn.exit_reasons == "alternate"
                          else "on") + ": kvm:kvm_exit by reason per vCPU thread (hist trigger)"
                         + (", handling time to the next kvm_entry (synthetic event)" if ctx.exitreasons.timed else
                            f"; handling time unavailable: {ctx.exitreasons.time_na}")
                         if ctx.exitreasons else ctx.exitreasons_na),
        "exit_sites": ({kind: ("on: " + exitreasons.SITE_TRIGGERS[kind][0] + " per vCPU thread (hist trigger)")
                        for kind in ctx.exitreasons.sites} | ctx.exitreasons.sites_na
                       if ctx.exitreasons else ctx.exitreasons_na),
    })
    if prior is not None:
        log(f"resuming run {run_id}: {len(prior.cells)} of {ctx.total} cells already done")
        ctx.state.meta.setdefault("resumed", []).append(time.time())
    ctx.save()
    if progress:
        progress(len(ctx.state.cells), ctx.total)
    status, interrupted_by, error = "failed", None, None
    try:
        with stop_signals_unwind(), topology.tap_topology(run_id, native=NATIVE in chosen) as topo:
            for repeat in range(1, scn.repeats + 1):
                for name in chosen:
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
        if ctx.copytrace is not None:
            ctx.copytrace.close()
        if ctx.exitreasons is not None:
            ctx.exitreasons.close()
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


def _start_exit_reasons(ctx: _Context, scn: Scenario, accel_name: str) -> str:
    """Arm the exit-reason counters where KVM's tracepoints are usable; else say why not."""
    if not scn.exit_reasons:
        return "exit reasons off (--no-exit-reasons / exit_reasons = false)"
    if accel_name != "kvm":
        return f"exit reasons: no KVM exits under {accel_name}"
    try:
        ctx.exitreasons = exitreasons.ExitReasons()
    except exitreasons.ExitReasonsUnavailable as exc:
        ctx.log(f"exit reasons unavailable here: {exc}")
        return f"exit reasons unavailable here: {exc}"
    for event, text in ctx.exitreasons.formats.items():
        ctx.writer.write_raw(f"tracefs/{event}.format", text)
    for kind, why in ctx.exitreasons.sites_na.items():
        ctx.log(f"exit sites: {kind} not counted: {why}")
    return ""


def _artifacts(staging: Path) -> None:
    """Plots and report.md; in the lab the host draws them (matplotlib under emulation is slow)."""
    if os.environ.get("IOBENCH_ENVIRONMENT") == "lab":
        return
    from iobench import report

    report.write_artifacts(staging)


def _described(name: str, scn: Scenario) -> dict[str, Any]:
    """run.json's record of one backend: what it is, and for a variant its base and knobs."""
    if name == NATIVE:
        return {"summary": "no VM: iperf3 between two namespaces over veth, the ceiling of every backend"}
    b = backends.catalog(scn.variants)[name]
    if not b.base:
        return {"summary": b.summary}
    return {"summary": b.summary, "base": b.base, "device": dict(b.device_props), "netdev": dict(b.netdev_props),
            "queues": b.queues, "guest": [list(g) for g in b.guest]}


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
    l1_attempt: int | None = None  # in the lab: which L1 boot measures (rows say so)
    state: checkpoint.Progress = field(default_factory=lambda: checkpoint.Progress({}))
    copytrace: copytrace.CopyTrace | None = None
    copytrace_na: str = "copy trace off (--copy-trace)"
    exitreasons: exitreasons.ExitReasons | None = None
    exitreasons_na: str = ""
    address_map: exitsites.AddressMap = field(default_factory=exitsites.AddressMap)  # of the VM being measured

    def tracer(self, repeat: int) -> ExitReasons | None:
        """The exit-reason counters for this round's windows: every round, or with exit_reasons =
        "alternate" half of them in ABBA order — on in rounds 1, 4, 5, 8, 9..., off in 2, 3, 6, 7... —
        so that the rounds without them measure the path in the same run, and a drift across the run
        (the lab's rounds drift) falls on both halves alike instead of on whichever comes first."""
        if self.scn.exit_reasons == "alternate" and repeat % 4 in (2, 3):
            return None
        return self.exitreasons

    def cell_ids(self, backend: str, repeat: int) -> list[CellId]:
        """This backend's cells of one round that have no outcome yet (all of them, unless resumed)."""
        done = self.state.done()
        return [c for w in self.scn.workloads for d in self.scn.cell_directions(w)
                if (c := CellId(backend, d, repeat, w, self.scn.offloads, self.scn.vcpus)).key not in done]

    @property
    def timeline(self) -> list[dict[str, Any]]:
        return self.state.timeline

    def lost_attempt(self, record: dict[str, Any]) -> None:
        self.state.attempts.append({**record, "l1_attempt": self.l1_attempt} if self.l1_attempt else record)
        self.save()

    def fail(self, cell: CellId, reason: str) -> None:
        self._outcome(CellOutcome(cell.backend, cell.direction, cell.repeat, cell.workload.label, "failed", reason))

    def ok(self, cell: CellId, row: Row) -> None:
        self.state.rows.append(asdict(replace(row, l1_attempt=self.l1_attempt)))
        self._outcome(CellOutcome(cell.backend, cell.direction, cell.repeat, cell.workload.label, "ok"))

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
              topo_tap: str, guest_cidr: str, netns: str | None) -> VMConfig:
    return VMConfig(
        name=backend.name, accel=choice_accel, image=image, nic_args=backends.nic_args(backend, topo_tap),
        guest_cidr=guest_cidr, memory_mb=scn.memory_mb, vcpus=scn.vcpus, netns=netns, extra_args=scn.qemu_args,
        cmdline_extra=(() if scn.offloads else ("iobench.offloads=off",)) + backends.guest_cmdline(backend),
    )


def traffic_spec(server: str, direction: str, scn: Scenario, w: Workload) -> traffic.TrafficSpec:
    return traffic.TrafficSpec(server, direction, scn.duration_s, scn.omit_s, w.protocol, w.streams,
                               w.message_bytes, w.udp_bitrate, kind=w.kind, rate_pps=w.rate_pps)


def _run_vm(ctx: _Context, topo: topology.Topology, backend: backends.Backend, repeat: int) -> None:
    """Run this backend's cells of one round; a VM that dies or never boots is booted
    again (at most `retries` times) for the cells it left, and each lost attempt is
    recorded with its logs under raw/."""
    pending = ctx.cell_ids(backend.name, repeat)
    if not pending:  # a resumed run: this round of this backend was measured before
        return
    for attempt in range(1, ctx.scn.retries + 2):
        pending, reason = _vm_attempt(ctx, topo, backend, repeat, pending, attempt)
        if not pending:
            return
        ctx.lost_attempt({"backend": backend.name, "repeat": repeat, "attempt": attempt, "reason": reason,
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
    topo.tap_for(backend.queues)
    tag = (f"{backend.name}/r{repeat}" + (f"-attempt{attempt}" if attempt > 1 else "")
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
            got = _record_negotiated(ctx, backend, vm.ready_line, tag)
            if (tracer := ctx.tracer(repeat)) and tracer.sites:
                ctx.address_map = _address_map(ctx, vm, tag)
            labwatch.announce(f"{tag}: idle window", SETTLE_S + scn.duration_s + labwatch.QMP_SLACK_S)
            time.sleep(SETTLE_S)
            idle = _idle_window(ctx, vm, topo, backend.name, repeat, attempt)
            ctx.writer.write_raw(f"{tag}/boot-and-idle.json", {
                "boot_seconds": vm.boot_seconds, "ready_line": vm.ready_line, "idle": asdict(idle),
                "negotiated": got.as_dict() if got else None})
        except CellFailed as exc:
            log(f"{tag}: boot failed: {str(exc).splitlines()[0]}")
            return cells, f"boot: {exc}"
        for i, cell in enumerate(cells):
            log(f"{tag}: {cell.workload.label} {cell.direction}: {scn.duration_s} s of traffic")
            labwatch.announce(f"{tag}: {cell.workload.label} {cell.direction} traffic",
                              labwatch.traffic_budget(scn.duration_s, scn.omit_s))
            try:
                ctx.ok(cell, _measure_vm_cell(ctx, vm, topo, backend, cell, idle, attempt))
            except CellFailed as exc:
                if not vm.alive() or isinstance(exc, traffic.GuestUnresponsive):  # dead or hung: boot again
                    log(f"{tag}: {cell.direction}: {str(exc).splitlines()[0]}")
                    return cells[i:], str(exc)
                log(f"{tag}: {cell.direction} failed: {str(exc).splitlines()[0]}")
                ctx.fail(cell, str(exc))
    return [], ""



def _fault(cell: CellId) -> str | None:
    here = [f for f in faults.at(f"{cell.backend}:{cell.direction}") if f in ("kill-qemu", "iperf3-port")]
    return here[0] if here else None


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
    tag = f"{backend}/r{repeat}" + (f"-attempt{attempt}" if attempt > 1 else "")
    tracer = ctx.tracer(repeat)
    try:
        if tracer:
            tracer.start()
        before = snapshot(vm.pid, topo.link_stats, vm, accel_name)
        sampler.first(before)
        sampler.sleep(seconds)
        after = snapshot(vm.pid, topo.link_stats, vm, accel_name)
    finally:
        if tracing and vm.alive():
            set_trace(vm, False)
        reasons = _stop_exit_reasons(ctx, tracer, f"{tag}-idle.exitreasons.hist")
    traps = tcg.parse(_trace_lines(vm, before, after)) if tracing else None
    _record_exit_reasons(ctx, tracer, reasons, after, {"backend": backend, "direction": "", "repeat": repeat,
                                                       "workload": "", "phase": "idle", "attempt": attempt}, None)
    ident = timeline.SliceId(ctx.run_id, backend, repeat, attempt, "", "", "idle")
    ctx.timeline.extend(timeline.rows(ident, sampler.last(after), TAP_BYTES_BOTH, vm.trace_log if tracing else None))
    return idle_window(before, after, traps)


def _record_negotiated(ctx: _Context, backend: backends.Backend, ready_line: str,
                       tag: str) -> negotiated.Negotiated | None:
    """What the guest's driver got at this boot, into run.json's record of the backend; a variant
    knob the guest did not get is said at once and listed (the report flags it)."""
    got = negotiated.parse(ready_line)
    if got is None:
        return None
    entry = ctx.state.meta["backends"].setdefault(backend.name, {})
    entry["negotiated"] = got.as_dict()
    missed = negotiated.knobs_not_applied(backend.device_props, got, backend.queues)
    if missed:
        entry["knobs_not_applied"] = sorted(set(entry.get("knobs_not_applied", [])) | set(missed))
        ctx.log(f"{tag}: knob(s) of {backend.name} did not take effect: {'; '.join(missed)}")
    return got


def _record_queues(ctx: _Context, vm: VM, backend: backends.Backend, cell: CellId, console_from: int) -> None:
    """A multiqueue variant's packets per queue in this window, from the guest driver's own counters
    (printed on its console once a second): raw/<cell>.queues.json and run.json."""
    with vm.serial_log.open("rb") as f:
        f.seek(console_from)
        deltas = negotiated.queue_deltas(f.read().decode(errors="replace"))
    ctx.writer.write_raw(f"{cell.name}.queues.json", deltas)
    entry = ctx.state.meta["backends"].setdefault(backend.name, {})
    entry.setdefault("queue_packets", {})[cell.name] = deltas


def _address_map(ctx: _Context, vm: VM, tag: str) -> exitsites.AddressMap:
    """QEMU's memory map of this VM (its BARs are placed by now: the guest is up), kept in raw/; it
    names the device and register of every MMIO address and port the vCPUs touch."""
    text = str(vm.command("human-monitor-command", **{"command-line": "info mtree -f"}))
    ctx.writer.write_raw(f"{tag}/mtree.txt", text)
    return exitsites.parse_mtree(text)


def _stop_exit_reasons(ctx: _Context, tracer: exitreasons.ExitReasons | None,
                       raw_name: str) -> exitreasons.WindowCounts | None:
    """Read and clear the window's exit-reason histograms (kept in raw/)."""
    if not tracer:
        return None
    counts, text = tracer.stop()
    ctx.writer.write_raw(raw_name, text)
    return counts


def _record_exit_reasons(ctx: _Context, tracer: exitreasons.ExitReasons | None,
                         counts: exitreasons.WindowCounts | None, after: Snapshot,
                         ident: dict[str, Any], packets: float | None) -> int | None:
    """The window's exits by reason of this VM's vCPU threads into exit_reasons.csv; returns their sum."""
    if counts is None or tracer is None:
        return None
    vcpus = {t.tid for t in after.threads if t.kind == "vcpu"}
    window = exitreasons.by_reason(counts.exits, counts.times, vcpus, tracer.names)
    per = round(packets, 1) if packets is not None else None
    for r in window.reasons:
        ctx.state.exit_reasons.append({"run_id": ctx.run_id, **ident, "l1_attempt": ctx.l1_attempt,
                                       "reason": r.reason, "exits": r.exits, "handled": r.handled,
                                       "handling_ns": r.handling_ns, "packets": per})
    for s in exitsites.sites(counts.sites, vcpus, ctx.address_map, tracer.site_names):
        ctx.state.exit_sites.append({"run_id": ctx.run_id, **ident, "l1_attempt": ctx.l1_attempt, "kind": s.kind,
                                     "access": s.access, "address": f"{s.address:#x}", "device": s.device,
                                     "register": s.register, "count": s.count, "packets": per})
    return window.total


def _trace_lines(vm: VM, before: Snapshot, after: Snapshot) -> list[str]:
    """The window's lines of QEMU's trace log (TCG). A missing log is a failed cell, never 0 traps."""
    if before.trace_offset is None or after.trace_offset is None:
        raise CellFailed(f"QEMU's trace log {vm.trace_log} is missing: the window's trap counts cannot be read")
    return tcg.read_range(vm.trace_log, before.trace_offset, after.trace_offset)


def _measure_vm_cell(ctx: _Context, vm: VM, topo: topology.Topology, backend: backends.Backend, cell: CellId,
                     idle: IdleWindow, attempt: int = 1) -> Row:
    spec = traffic_spec(str(topo.plan.guest), cell.direction, ctx.scn, cell.workload)
    if _fault(cell) == "iperf3-port":  # test hook: nothing listens there, iperf3 fails with its own error
        spec = replace(spec, port=traffic.IPERF3_PORT + 98)
    accel_name = ctx.choice.accel
    tracing = accel_name == "tcg"
    sampler = timeline.Sampler(lambda: snapshot(vm.pid, topo.link_stats, vm, accel_name), ctx.scn.timeline_interval_s)
    client_pids: list[int] = []
    tracer = ctx.tracer(cell.repeat)
    console_from = vm.serial_log.stat().st_size if backend.queues > 1 else 0
    if tracing:
        set_trace(vm, True)
    try:
        if ctx.copytrace:
            ctx.copytrace.start()
        if tracer:
            tracer.start()
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
        ctx.writer.write_raw(f"{cell.name}.{spec.raw_name}", raw)
        after = snapshot(vm.pid, topo.link_stats, vm, accel_name)
    finally:
        if tracing and vm.alive():
            set_trace(vm, False)
        kcopies = None
        if ctx.copytrace:
            counts, hist = ctx.copytrace.stop()
            ctx.writer.write_raw(f"{cell.name}.copytrace.hist", hist)
        reasons = _stop_exit_reasons(ctx, tracer, f"{cell.name}.exitreasons.hist")
    if ctx.copytrace:
        kcopies = copytrace.by_kind(counts, {t.tid for t in after.threads if t.kind != "vhost"}, vm.pid,
                                    set(client_pids))
    ctx.writer.write_raw(f"{cell.name}.iperf3-argv.json", traffic.client_argv(spec))
    ctx.writer.write_raw(f"{cell.name}.counters.json", {"before": before.as_dict(), "after": after.as_dict()})
    if backend.queues > 1:
        _record_queues(ctx, vm, backend, cell, console_from)
    result = traffic.parse_output(raw, spec)
    traps = None
    if tracing:
        lines = _trace_lines(vm, before, after)
        traps = tcg.parse(lines)
        ctx.writer.write_raw(f"{cell.name}.trace-head.log", "\n".join(lines[:200]) + "\n")
        ctx.writer.write_raw(f"{cell.name}.traps.json", asdict(traps))
    ident = timeline.SliceId(ctx.run_id, cell.backend, cell.repeat, attempt, cell.workload.label, cell.direction,
                             "traffic")
    ctx.timeline.extend(timeline.rows(ident, sampler.last(after), TAP_DATA_COUNTERS[cell.direction][0],
                                      vm.trace_log if tracing else None))
    row = vm_row(run_id=ctx.run_id, cell=cell, backend=backend, accel=accel_name, before=before, after=after,
                 traffic=result, traps=traps, idle=idle, client_cpu_s=client_cpu, cpu_hz=ctx.cpu_hz,
                 kcopies=kcopies, kcopy_na=ctx.copytrace_na)
    total = _record_exit_reasons(ctx, tracer, reasons, after, {"backend": cell.backend, "direction": cell.direction,
                                                       "repeat": cell.repeat, "workload": cell.workload.label,
                                                       "phase": "traffic", "attempt": attempt},
                                 row.bytes / FRAME_AT_MTU)
    if total is None:
        why = ctx.exitreasons_na or "off in this round (exit_reasons = \"alternate\": rounds 1, 4, 5, 8... only)"
        return replace(row, na_reason=f"{row.na_reason}; exit_reasons_total: {why}")
    return replace(row, exit_reasons_total=total)


def _run_native(ctx: _Context, topo: topology.Topology, repeat: int) -> None:
    pair = topo.native
    assert pair is not None
    for cell in ctx.cell_ids(NATIVE, repeat):
        ctx.log(f"native/r{repeat}: {cell.workload.label} {cell.direction}: {ctx.scn.duration_s} s of traffic")
        labwatch.announce(f"native/r{repeat}: {cell.workload.label} {cell.direction} traffic",
                          labwatch.traffic_budget(ctx.scn.duration_s, ctx.scn.omit_s))
        spec = traffic_spec(str(pair.plan.guest), cell.direction, ctx.scn, cell.workload)
        try:
            with traffic.server(pair.peer_netns, spec=spec) as srv:
                before = snapshot(srv.pid, pair.peer_link_stats)
                cpu0 = children_cpu_s()
                raw = traffic.run(spec, topo.netns)
                client_cpu = children_cpu_s() - cpu0
                ctx.writer.write_raw(f"{cell.name}.{spec.raw_name}", raw)
                after = snapshot(srv.pid, pair.peer_link_stats)
            ctx.writer.write_raw(f"{cell.name}.iperf3-argv.json", traffic.client_argv(spec))
            ctx.writer.write_raw(f"{cell.name}.counters.json", {"before": before.as_dict(), "after": after.as_dict()})
            row = native_row(run_id=ctx.run_id, cell=cell, before=before, after=after, traffic=traffic.parse_output(raw, spec),
                             client_cpu_s=client_cpu, cpu_hz=ctx.cpu_hz)
            ctx.ok(cell, row)
        except CellFailed as exc:
            ctx.log(f"native/r{repeat}: {cell.direction} failed: {exc}")
            ctx.fail(cell, str(exc))

