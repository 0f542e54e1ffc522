"""Command line: a thin layer over library functions (tests call those directly).

Messages for people go to stderr; results go to files and the table to stdout.
A UserError becomes one line and its exit code; Ctrl-C exits 130, SIGTERM 143.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from iobench import __version__
from iobench.commands import ab as ab_command
from iobench.commands import db as db_command
from iobench.commands import host as host_command
from iobench.commands import qemu as qemu_command
from iobench.errors import CellFailed, Terminated, UserError, stop_signals_unwind
from iobench.topologies import TOPOLOGIES

ENVIRONMENT_LABEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _add_environment_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--environment", metavar="LABEL",
                   help="where this runs, recorded in run.json (default: host): runs of different environments are "
                        "never compared or gated against each other, e.g. github-hosted-ubuntu-24.04 for a hosted "
                        "CI runner's nested KVM, which must not meet bare metal")


def _set_environment(label: str | None) -> None:
    """--environment: the label every run of this process records (the runner reads IOBENCH_ENVIRONMENT,
    which the lab sets to "lab" for its inner run)."""
    if label is None:
        return
    if label == "lab" or not ENVIRONMENT_LABEL.match(label):
        raise UserError(f"--environment {label!r}: a label of a-z 0-9 . _ - (up to 64), not lab (the nested lab's "
                        "own runs are labelled lab).")
    os.environ["IOBENCH_ENVIRONMENT"] = label


def _log(message: str) -> None:
    print(f"iobench: {message}", file=sys.stderr, flush=True)


def _add_scenario_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `run` and `plan`; each overrides the scenario file's value."""
    p.add_argument("--scenario", type=Path, help="scenario TOML file (default: built-in defaults = scenarios/default.toml)")
    p.add_argument("--backend", action="append",
                   help="backend to run (repeatable): e1000, virtio, vhost, vhost-user, vhost-nooffload, e1000e, rtl8139, "
                        "native, a scenario's variant, or all (e1000, virtio, vhost, vhost-user, vhost-nooffload and the "
                        "variants this host can run, plus native)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg", "lab"),
                   help="kvm, tcg, lab (= iobench lab run), or auto: kvm only if a guest boots under it")
    p.add_argument("--direction", choices=("rx", "tx", "both"), help="rx = host->guest, tx = guest->host")
    p.add_argument("--duration", type=int, help="seconds of measured traffic per cell, and of the idle window")
    p.add_argument("--omit", type=int, help="iperf3 warm-up seconds not counted in throughput")
    p.add_argument("--repeats", type=int, help="rounds; every backend runs once per round")
    p.add_argument("--workload", choices=("stream", "rr", "paced"),
                   help="stream: iperf3 bulk transfer; rr: sockperf ping-pong, one request in flight (latency, per "
                        "transaction); paced: iperf3 UDP at --rate datagrams per second (per datagram, loss)")
    p.add_argument("--rate", type=int, action="append",
                   help="paced: offered datagrams per second (repeatable: a sweep)")
    p.add_argument("--message-size", type=int, action="append",
                   help="iperf3 -l / sockperf -m in bytes (repeatable: a sweep)")
    p.add_argument("--streams", type=int, help="iperf3 -P parallel streams")
    p.add_argument("--protocol", choices=("tcp", "udp"), help="tcp, or udp at --udp-bitrate")
    p.add_argument("--udp-bitrate", help="iperf3 -b for udp, e.g. 500M")
    p.add_argument("--vcpus", type=int, help="guest vCPUs")
    p.add_argument("--memory", type=int, help="guest memory in MiB")
    p.add_argument("--offloads", choices=("on", "off"), help="guest NIC offloads (TSO/GSO/GRO/checksum) via ethtool")
    p.add_argument("--qemu-arg", action="append", help="raw QEMU argument appended to every VM (repeatable)")
    p.add_argument("--boot-timeout", type=float, help="seconds to wait for the guest's READY")
    p.add_argument("--copy-trace", action="store_true", default=None,
                   help="count kernel copy routines per thread with kprobes (where the kernel allows it; the lab does)")
    p.add_argument("--exit-reasons", action=argparse.BooleanOptionalAction, default=None,
                   help="count KVM exits by reason with their handling time and where they land, where KVM's "
                        "tracepoints are (default off: docs/metrics.md says why)")
    p.add_argument("--exit-reasons-alternate", action="store_const", const="alternate", dest="exit_reasons",
                   help="count exits by reason in half the rounds (ABBA: 1, 4, 5, 8...): the others show what the tracing costs")
    p.add_argument("--retries", type=int, help="times a VM that died or never booted is booted again (default 1)")
    p.add_argument("--order", choices=("fixed", "abba"),
                   help="abba: every other round runs the backends in reverse order, so that drift falls on all alike")
    p.add_argument("--placement", metavar="auto|none|alternate|ROLE=CPUS,...",
                   help="pin the vCPUs, vhost worker, QEMU main loop and traffic peer: auto (distinct physical cores), "
                        "none (unpinned, facts still recorded), alternate (auto and none in ABBA rounds), or e.g. "
                        "vcpu0=2,vhost=3,peer=4-5")
    p.add_argument("--topology", action="append", choices=(*TOPOLOGIES, "all"),
                   help="what the guest's tap is attached to on the host (repeatable; default direct): direct (the "
                        "peer on the tap), bridge (tap and the peer's veth on a Linux bridge), macvtap (a macvtap on "
                        "the peer's veth instead of a tap); native runs over each")


def _add_db_options(p: argparse.ArgumentParser) -> None:
    """Where a finished run (and a gate's verdicts) are recorded: the history database."""
    p.add_argument("--db", type=Path, help="history database to add the run to (default <out>/iobench.duckdb)")
    p.add_argument("--no-db", action="store_true", help="do not add the run to the history database")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iobench", description="Compare the network I/O path of a KVM guest under e1000, virtio and vhost-net.")
    parser.add_argument("--version", action="version", version=f"iobench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="boot the guest under each NIC backend and measure iperf3 traffic",
                         description="Boot the same guest under each NIC backend, drive iperf3 both ways, "
                                     "count exits (or TCG trap equivalents), copies and CPU time, and write "
                                     "results/<run-id>/.")
    _add_scenario_options(run)
    run.add_argument("--out", type=Path, default=Path("results"), help="results root (default ./results)")
    _add_environment_option(run)
    _add_db_options(run)

    plan = sub.add_parser("plan", help="print the cells and exact QEMU/iperf3 command lines, run nothing",
                          description="Validate a scenario and print its cells and command lines without running them.")
    plan.add_argument("scenario_file", nargs="?", type=Path, help="scenario TOML file")
    _add_scenario_options(plan)
    plan.add_argument("--power", type=Path, metavar="BASELINE",
                      help="also say, per cell of this baseline, the smallest change a gate of the scenario's "
                           "repeats would catch (80%% power) and the repeats 10%% would take (docs/gate.md)")

    image = sub.add_parser("image", help="build or show the guest image",
                           description="The guest image: kernel + initramfs from Debian packages.")
    image_sub = image.add_subparsers(dest="image_command", required=True)
    build = image_sub.add_parser("build", help="build the guest image (cached by package versions)",
                                 description="Download the Debian packages and build the guest kernel and initramfs.")
    build.add_argument("--force", action="store_true", help="rebuild even if a cached image matches")
    image_sub.add_parser("show", help="print the cached images' manifests",
                         description="Print the manifests of cached guest images.")

    lab = sub.add_parser("lab", help="the nested lab: real KVM exits and vhost-net on any Linux host",
                         description="Run the matrix inside a first-level VM (TCG, -cpu EPYC) whose KVM and vhost-net "
                                     "are real, and publish an ordinary results directory on the host.")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    lab_run = lab_sub.add_parser("run", help="iobench run inside the lab VM (same options as iobench run)",
                                 description="Boot the lab VM and run the requested matrix inside it with accel kvm.")
    _add_scenario_options(lab_run)
    lab_run.add_argument("--out", type=Path, default=Path("results"), help="results root (default ./results)")
    _add_db_options(lab_run)
    lab_sub.add_parser("doctor", help="what the lab would use and whether it works here",
                       description="Show the lab's images and QEMU, and boot L1 once to check KVM and vhost-net inside.")

    rep = sub.add_parser("report", help="print a results directory's table and (re)write its report.md",
                         description="Print the table of a results directory and write its report.md.")
    rep.add_argument("directory", type=Path)
    plot = sub.add_parser("plot", help="(re)draw a results directory's figures into its plots/",
                          description="Draw the four figures of a results directory into DIR/plots/.")
    plot.add_argument("directory", type=Path)

    cmp_ = sub.add_parser("compare", help="two runs side by side: ratios and which is better per metric",
                          description="Compare the summary medians of two results directories, cell by cell.")
    cmp_.add_argument("a", type=Path, help="the reference run")
    cmp_.add_argument("b", type=Path, nargs="+", help="the run(s) compared against it")

    exitb = sub.add_parser("exitbench", help="cost of one VM exit: userspace vs in-kernel, on a tiny VMM of our own",
                           description="Run a tiny Python VMM over /dev/kvm: guest out/store/hlt loops that exit to "
                                       "userspace, and the same accesses handled in the kernel through ioeventfd.")
    exitb.add_argument("--iterations", type=int, default=20000, help="guest operations per run (default 20000)")
    exitb.add_argument("--repeats", type=int, default=5, help="rounds over all kinds (default 5)")
    exitb.add_argument("--kind", action="append", choices=("pio-user", "mmio-user", "pio-eventfd", "mmio-eventfd", "hlt"),
                       help="kinds to run (repeatable; default all)")
    exitb.add_argument("--out", type=Path, default=Path("results"), help="results root (default ./results)")

    doctor = sub.add_parser("doctor", help="what this host can run, and why",
                            description="Check QEMU, iperf3, KVM, vhost-net, privileges and the cache.")
    doctor.add_argument("--no-probe", action="store_true", help="do not boot a guest to probe KVM")
    doctor.add_argument("--out", type=Path, action="append", help="results root to check for unpublished runs "
                        "(repeatable; default ./results)")

    gate = sub.add_parser("gate", help="a run against a committed baseline: exit 1 when an I/O path got worse",
                          description="Compare every gated metric of a run (exits, interrupts and copies per packet, "
                                      "CPU per packet, throughput) with a baseline of one or more runs: per cell an "
                                      "interval of the change and one of worse / ok / inconclusive (better), worse "
                                      "only past a 1% threshold with the gate's family-wise error held (Holm); "
                                      "docs/gate.md. Exit 0 nothing worse, 1 worse, 2 not comparable.")
    gate.add_argument("directory", nargs="*", type=Path,
                      help="results directory (or --scenario to run one first); with --update-baseline, one or more: "
                           "a baseline of several runs knows how far runs drift apart")
    gate.add_argument("--baseline", type=Path, help="baseline JSON (results/baselines/<name>.json)")
    gate.add_argument("--scenario", type=Path, help="run this scenario first and gate its results (the CI job)")
    gate.add_argument("--out", type=Path, default=Path("results"), help="results root for --scenario (default ./results)")
    gate.add_argument("--update-baseline", action="store_true",
                      help="write the baseline from these runs (each complete, at least 5 repeats, all of one scenario "
                           "and environment)")
    gate.add_argument("--format", choices=("table", "json", "bmf", "gab"), default="table",
                      help="table (default); json (verdicts); bmf (Bencher Metric Format); gab (github-action-benchmark)")
    gate.add_argument("--output", type=Path, help="file for json/bmf; directory for gab (two files); default stdout")
    gate.add_argument("--allow-partial", action="store_true",
                      help="judge a run with failed cells or missing repeats on what it has (default: not comparable)")
    gate.add_argument("--summary", type=Path, help="also write the markdown summary here (always: <run>/gate.md, "
                                                   "and $GITHUB_STEP_SUMMARY when set)")
    gate.add_argument("--backend", action="append",
                      help="with --scenario: run and judge only this backend (repeatable); the baseline's other "
                           "backends are named as not gated instead of making the run not comparable")
    gate.add_argument("--qemu-arg", action="append", default=[],
                      help="with --scenario: a raw QEMU argument for every VM of the run (repeatable): gate a "
                           "candidate QEMU setting, or inject a change to see that the gate catches it")
    gate.add_argument("--max-repeats", type=int, metavar="N",
                      help="with --scenario: while cells are inconclusive, run their backends again (the scenario's "
                           "repeats at a time) and judge the pooled rounds, up to N repeats per cell; the error over "
                           "the looks is held (docs/gate.md)")
    gate.add_argument("--accel", choices=("auto", "kvm", "tcg", "lab"),
                      help="with --scenario: the accelerator of the run it starts (e.g. kvm on a CI runner with /dev/kvm)")
    _add_environment_option(gate)
    gate.add_argument("--baseline-history", type=int, metavar="N",
                      help="instead of --baseline: the last N ok runs of the same scenario and environment in the "
                           "history database (a baseline of several runs: their drift is measured)")
    _add_db_options(gate)

    fleet = sub.add_parser("fleet", help="run a scenario on every host of an Ansible inventory",
                           description="Through Ansible (ansible-runner): per host, check or install iobench, run the "
                                       "scenario, fetch its results; hosts of one physical machine one after the other.")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True)
    fleet_run = fleet_sub.add_parser("run", help="run the scenario on every inventory host and merge the results",
                                     description="Run the scenario on every host of the inventory (README: fleet "
                                                 "runs) and publish one fleet directory with fleet.json.")
    fleet_run.add_argument("--inventory", type=Path, required=True, help="Ansible inventory (YAML or INI)")
    _add_scenario_options(fleet_run)
    fleet_run.add_argument("--out", type=Path, default=Path("results"), help="results root (default ./results)")
    _add_db_options(fleet_run)

    host_command.add_parser(sub)
    qemu_command.add_parser(sub)
    ab_command.add_parser(sub)
    db_command.add_parser(sub)

    bk = sub.add_parser("backends", help="list the built-in backends and a scenario's variants with their QEMU arguments",
                        description="Every backend a scenario can run: the built-ins and its [backends.<name>] "
                                    "variants, each with its base, knobs and exact -netdev/-device arguments; the "
                                    "variants are checked against this QEMU's own description first.")
    bk.add_argument("--scenario", type=Path, help="scenario TOML file whose variants to list")

    clean = sub.add_parser("clean", help="remove what a killed iobench left behind (only abandoned iobench objects)",
                           description="Find iobench namespaces, QEMU runtime dirs (and their QEMU) and unpublished "
                                       "results dirs whose run is dead (no live iobench holds their lock) and remove "
                                       "them. Objects of a running iobench are never touched.")
    clean.add_argument("--out", type=Path, action="append", help="results root to clean (repeatable; default ./results)")
    clean.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    return parser


def scenario_from_args(args: argparse.Namespace) -> Any:
    """The scenario file (or defaults) with every given option applied and validated."""
    from iobench import scenario

    path = getattr(args, "scenario_file", None) or args.scenario
    base = scenario.load(path) if path else scenario.Scenario()
    directions = {"both": ("rx", "tx"), "rx": ("rx",), "tx": ("tx",)}.get(args.direction or "")
    return base.with_overrides(
        backends=tuple(args.backend) if args.backend else None, accel=args.accel, directions=directions,
        duration_s=args.duration, omit_s=args.omit, repeats=args.repeats,
        message_bytes=tuple(args.message_size) if args.message_size else None, streams=args.streams,
        kind=args.workload, rates_pps=tuple(args.rate) if args.rate else None, protocol=args.protocol,
        udp_bitrate=args.udp_bitrate, vcpus=args.vcpus, memory_mb=args.memory,
        offloads=None if args.offloads is None else args.offloads == "on",
        qemu_args=(*base.qemu_args, *args.qemu_arg) if args.qemu_arg else None,
        boot_timeout_s=args.boot_timeout, retries=args.retries, copy_trace=args.copy_trace,
        exit_reasons=args.exit_reasons, order=args.order, placement=getattr(args, "placement", None),
        topology=tuple(args.topology) if getattr(args, "topology", None) else None,
    )


def cmd_run(args: argparse.Namespace) -> int:
    from iobench import labwatch, report
    from iobench.runner import run

    scn = scenario_from_args(args)
    if getattr(args, "environment", None) and scn.accel == "lab":
        raise UserError("--environment labels a host's own runs; the nested lab's runs are labelled lab.")
    _set_environment(getattr(args, "environment", None))
    if scn.accel == "lab":
        return cmd_lab_run(args)
    if scn.accel == "auto" and "IOBENCH_ENVIRONMENT" not in os.environ:
        lab_reason = _auto_wants_lab()
        if lab_reason:
            _log(f"accelerator: lab ({lab_reason})")
            return cmd_lab_run(args, why=f"--accel auto: {lab_reason}")
    resume = Path(os.environ["IOBENCH_RESUME"]) if os.environ.get("IOBENCH_RESUME") else None  # set by the lab
    with labwatch.heartbeat():  # beats only inside the lab
        with _progress_display() as (log, progress):
            result = run(scn, args.out, log=log, progress=progress, resume=resume)
        report.print_run(result.directory)
    print(f"results: {result.directory}")
    if os.environ.get("IOBENCH_ENVIRONMENT") != "lab":  # the lab's host adds the published copy
        _record_run(result.directory, args)
    if (result.directory / "report.md").exists():
        print(f"report: {result.directory / 'report.md'}; figures: {result.directory / 'plots'}")
    if result.status != "ok":
        _log(f"run status: {result.status}; see {result.directory / 'run.json'}")
        return 1
    return 0


def _history_path(args: argparse.Namespace, results_root: Path) -> Path | None:
    from iobench import history

    if getattr(args, "no_db", False):
        return None
    return getattr(args, "db", None) or history.default_path(results_root)


def _record_run(directory: Path, args: argparse.Namespace) -> None:
    """Add a published run to the history (a run directory or a fleet directory's runs, labelled). A
    history that cannot be written (another process holds it) costs the run nothing: it is said, with
    the command that adds the run later."""
    from iobench import history

    path = _history_path(args, directory.parent)
    if path is None:
        return
    try:
        with history.connect(path) as con:
            for run_dir, labels in history.directories([directory]):
                history.add(con, run_dir, labels)
        _log(f"history: added {directory.name} to {path}")
    except UserError as exc:
        _log(f"history: not added ({exc}); add it later with `iobench db add {directory} --db {path}`")


@contextlib.contextmanager
def _progress_display() -> Iterator[tuple[Callable[[str], None], Callable[[int, int], None] | None]]:
    """In a terminal: a live bar of cells done / to do with the current phase; piped (CI logs): plain lines.
    Inside the lab, stderr is L1's serial console, a tty to the kernel but a log file to the host
    (which relays whole `iobench:` lines): plain lines there too, and no redraws under emulation."""
    if not sys.stderr.isatty() or os.environ.get("IOBENCH_ENVIRONMENT") == "lab":
        yield _log, None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("cells"), TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    task = bar.add_task("preparing", total=None)

    def log(message: str) -> None:
        bar.console.print(f"iobench: {message}", highlight=False)
        bar.update(task, description=message[:60])

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield log, progress


def passthrough(argv: list[str]) -> list[str]:
    """The run options of `argv` for the inner run: without --out/--accel (the lab sets them),
    with the scenario path made absolute (the chroot keeps paths, not the meaning of '.')."""
    out: list[str] = []
    skip = False
    for i, token in enumerate(argv):
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        if name in ("--out", "--accel"):
            skip = "=" not in token
            continue
        if name == "--scenario" and "=" not in token and i + 1 < len(argv):
            out += [token, str(Path(argv[i + 1]).resolve())]
            skip = True
            continue
        out.append(token)
    return out


def _auto_wants_lab() -> str | None:
    """Why `auto` should use the nested lab here (None: use KVM or TCG directly).

    The mission's numbers are KVM exits: when this host's KVM cannot run the guest
    but the lab works, the lab is the better answer than TCG trap counts."""
    from iobench import accel, guest, lab, runner

    runner.preflight("auto")
    choice = accel.choose("auto", guest.build(log=_log), log=_log)
    if choice.accel == "kvm":
        return None
    ok, why = lab.usable(_log)
    if not ok:
        _log(f"the nested lab does not work here either ({why}); using TCG")
        return None
    return f"{choice.reason}; the nested lab works here ({why}), so its real KVM exits are used"


def cmd_lab_run(args: argparse.Namespace, why: str = "asked for (iobench lab run / --accel lab)") -> int:
    import json as _json

    from iobench import lab, qemudesc, report, scenario

    scn = scenario_from_args(args)  # validated on the host, before L1 boots
    qemudesc.check_variants(scn.variants, scn.source)  # L1 runs the same Debian QEMU; it checks again
    argv = sys.argv[1:] if args.raw_argv is None else args.raw_argv
    run_args = passthrough(argv[argv.index("run") + 1:])
    if scn.retries == type(scn)().retries and not any(a.split("=")[0] == "--retries" for a in run_args):
        run_args += ["--retries", "2"]  # nested guests can die silently (docs/lab.md): two more boots per cell set
    try:
        directory = lab.run(run_args, args.out, lab.L1_BOOT_TIMEOUT_S, _log, why, copy_trace=scn.copy_trace,
                            placement_spec=scn.placement, kernels=scenario.variant_kernels(scn))
    except CellFailed as exc:
        _log(f"lab run failed: {exc}")
        return 1
    report.print_run(directory)
    print(f"results: {directory}")
    _record_run(directory, args)
    status = _json.loads((directory / "run.json").read_text())["status"]
    return 0 if status == "ok" else 1


def cmd_backends(args: argparse.Namespace) -> int:
    import shlex

    from iobench import backends, qemudesc, scenario

    scn = scenario.load(args.scenario) if args.scenario else scenario.Scenario()
    qemudesc.check_variants(scn.variants, scn.source)
    for b in backends.catalog(scn.variants).values():
        print(f"{b.name}" + (f"  (variant of {b.base})" if b.base else "  (built-in)"))
        print(f"  {b.summary}")
        print("  qemu: " + shlex.join(backends.nic_args(b, "<tap>", socket="<switch-dir>/vhost-user.sock")))
        if words := backends.guest_cmdline(b):
            print("  guest kernel command line: " + " ".join(words))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from iobench import plan, qemudesc

    scn = scenario_from_args(args)
    if args.power:  # first: it needs only the baseline, and the plan may not be runnable on this host
        _print_power(args.power, scn.repeats)
    qemudesc.check_variants(scn.variants, scn.source)
    print(plan.describe(scn))
    return 0


def _print_power(path: Path, repeats: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from iobench import gate

    baseline = gate.load_baseline(path)
    rows = gate.power(baseline, repeats)
    table = Table(title=f"what a gate of {repeats} repeats against {path} can see (80% power, Holm over "
                        f"{len(rows)} cell metrics)")
    for h in ("cell", "metric", "within-run SD", "drift", "detects", "n for 10%"):
        table.add_column(h)
    for r in rows:
        table.add_row(f"{r.backend}/{r.direction}/{r.workload}", r.metric, f"{r.within:.1%}", f"{r.drift:.1%}",
                      f"±{r.detectable:.1%}", "never" if r.repeats_for_10 is None else str(r.repeats_for_10))
    Console(width=None if Console().is_terminal else 160).print(table)
    blind = [r for r in rows if r.detectable > 0.10]
    print(f"power: {len(rows) - len(blind)} of {len(rows)} cell metric(s) would see a 10% change at {repeats} repeats"
          + (f"; {sum(r.repeats_for_10 is None for r in blind)} never could against this baseline (drift "
             "between runs: compare in one job, iobench ab)" if any(r.repeats_for_10 is None for r in blind) else ""))


def cmd_image(args: argparse.Namespace) -> int:
    from iobench import guest

    if args.image_command == "build":
        img = guest.build(force=args.force, log=_log)
        print(json.dumps(img.manifest, indent=2))
        print(f"image: {img.directory}")
        return 0
    images = guest.cached_images()
    if not images:
        _log("no guest image cached yet: run 'iobench image build'")
        return 1
    for img in images:
        print(f"{img.directory}")
        print(json.dumps(img.manifest, indent=2))
    return 0


def cmd_exitbench(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from iobench.exitbench import command
    from iobench.exitbench.programs import PROGRAMS

    if not 1 <= args.iterations < 2**32 or not 1 <= args.repeats <= 1000:
        raise UserError("--iterations must be 1 to 4294967295 and --repeats 1 to 1000.")
    directory, rows = command.run(args.iterations, args.repeats, args.kind or list(PROGRAMS), args.out)
    console = Console(width=None if Console().is_terminal else 160)
    table = Table(title="VM exit cost on this host (median over repeats; time = host clock around the run loop)")
    for h in ("kind", "ops", "exits/op (KVM stats)", "userspace exits", "eventfd count", "ns/op (min-max)",
              "ns/exit", "n"):
        table.add_column(h)
    for line in command.table_lines(rows):
        table.add_row(*line)
    console.print(table)
    for note in command.kvm_flavor()["notes"]:
        console.print(f"note: {note}")
    print(f"results: {directory}")
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    if args.lab_command == "run":
        return cmd_lab_run(args)
    from iobench import lab

    for check in lab.doctor(log=_log):
        print(f"{'ok ' if check.ok else 'no '} {check.name:12} {check.detail}")
    return 0


def _results_dir(path: Path) -> Path:
    from iobench import results

    results.load_meta(path)  # not a results dir, or a format this version cannot read: one sentence
    return path


def cmd_report(args: argparse.Namespace) -> int:
    from iobench import report

    directory = _results_dir(args.directory)
    report.print_run(directory)
    (directory / "report.md").write_text(report.markdown(directory))
    print(f"report: {directory / 'report.md'}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from iobench import plots

    for path in plots.draw_all(_results_dir(args.directory)):
        print(path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """A against one run or several (B1, B2, ...): each B's median and ratio to A, cell by cell."""
    from rich.console import Console
    from rich.table import Table

    from iobench import compare

    by_run: list[dict[tuple[str, str, str, str], compare.Line]] = []
    for b in args.b:
        lines, blocking, notes = compare.compare(args.a, b)
        if blocking:
            raise UserError(f"{args.a} and {b} are not comparable: " + "; ".join(blocking) + ".")
        for note in notes:
            _log(f"note ({b.name}): {note}")
        by_run.append({(ln.backend, ln.direction, ln.workload, ln.metric): ln for ln in lines})
    console = Console(width=None if Console().is_terminal else 160 + 40 * (len(args.b) - 1))
    names = ["B"] if len(args.b) == 1 else [f"B{i}" for i in range(1, len(args.b) + 1)]
    table = Table(title=", ".join(f"{n} = {b.name}" for n, b in zip(names, args.b, strict=True))
                  + f" against A = {args.a.name} (summary medians)")
    for h in ("backend", "dir", "workload", "metric", "A"):
        table.add_column(h)
    for n in names:
        for h in (n, f"{n}/A", f"{n} is"):
            table.add_column(h)
    for key in by_run[0]:
        cells = [run.get(key) for run in by_run]
        first = next(c for c in cells if c is not None)
        row = [*key, f"{first.a:.4g}"]
        for c in cells:
            row += (["-", "-", "-"] if c is None else
                    [f"{c.b:.4g}", "-" if c.ratio is None else f"{c.ratio:.3f}", c.verdict])
        table.add_row(*row)
    console.print(table)
    for b in args.b:
        detail = compare.exit_detail(args.a, b)
        if detail:
            table = Table(title=f"Exits by reason and where they land, per MTU-sized packet (traffic windows, all "
                                f"repeats): A = {args.a.name}, B = {b.name}")
            for h in ("backend", "dir", "reason / device register access", "A", "B"):
                table.add_column(h)
            for d in detail:
                table.add_row(d.backend, d.direction, d.what, f"{d.a:.4f}", f"{d.b:.4f}")
            console.print(table)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from iobench import doctor

    for check in doctor.checks(probe=not args.no_probe, out_roots=args.out or [Path("results")]):
        print(f"{'ok ' if check.ok else 'no '} {check.name:12} {check.detail}")
    return 0


def _run_scenario_for_gate(scenario: Path, out: Path, backend: list[str] | None = None,
                           qemu_args: list[str] | None = None, accel: str | None = None,
                           environment: str | None = None, extra: Sequence[str] = ()) -> Path:
    """`iobench run --scenario FILE --out OUT` as the CI job runs it; returns the new results dir."""
    before = set(out.glob("*/run.json")) if out.is_dir() else set()
    argv = ["run", "--scenario", str(scenario), "--out", str(out), *(f"--backend={b}" for b in backend or ()),
            *(f"--qemu-arg={a}" for a in qemu_args or ()), *([f"--accel={accel}"] if accel else []),
            *([f"--environment={environment}"] if environment else []), *extra]
    args = build_parser().parse_args(argv)
    args.raw_argv = argv
    cmd_run(args)  # a partial run still has a results dir; the gate says what is missing
    new = sorted(set(out.glob("*/run.json")) - before)
    if not new:
        raise UserError(f"the run of {scenario} produced no results directory under {out}.")
    return new[-1].parent


def _gate_export(args: argparse.Namespace, run: Any) -> None:
    """--format bmf/gab: the run's medians and ranges for the CI tools users already have."""
    from iobench import gate

    data: Any = gate.bmf(run) if args.format == "bmf" else gate.gab(run)
    if args.format == "gab" and args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        for tool, entries in data.items():
            (args.output / f"{tool}.json").write_text(json.dumps(entries, indent=1) + "\n")
        _log(f"github-action-benchmark files: {', '.join(str(args.output / (t + '.json')) for t in data)}")
        return
    _emit(json.dumps(data, indent=1) + "\n", args.output)


def _emit(text: str, path: Path | None) -> None:
    if path:
        path.write_text(text)
    else:
        sys.stdout.write(text)


def _write_baseline(args: argparse.Namespace, runs: list[Any]) -> int:
    import statistics

    from rich.console import Console
    from rich.table import Table

    from iobench import gate

    baseline = gate.make_baseline(runs, args.baseline.stem)
    args.baseline.parent.mkdir(parents=True, exist_ok=True)
    args.baseline.write_text(json.dumps(baseline, indent=1) + "\n")
    console = Console(width=None if Console().is_terminal else 160)
    table = Table(title=f"baseline {args.baseline}: {len(runs)} run(s); noise per cell (log scale)")
    for h in ("cell", "metric", "median", "within-run SD", "between-run SD"):
        table.add_column(h)
    for c in baseline["cells"]:
        table.add_row(f"{c['backend']}/{c['direction']}/{c['workload']}", c["metric"],
                      gate.fmt(c["metric"], statistics.median(c["values"])), f"{c['sigma_within']:.1%}",
                      "-" if c["sigma_between"] is None else f"{c['sigma_between']:.1%}")
    console.print(table)
    print(f"baseline: {args.baseline} ({baseline['how']})")
    return 0


def _baseline(args: argparse.Namespace, run: Any) -> dict[str, Any]:
    """--baseline FILE, or --baseline-history N: the last N earlier ok runs like this one in the history."""
    from iobench import gate, history

    if bool(args.baseline) == bool(args.baseline_history):
        raise UserError("give exactly one of --baseline FILE and --baseline-history N.")
    if args.baseline:
        return gate.load_baseline(args.baseline)
    path = _history_path(args, run.directory.parent)
    if path is None:
        raise UserError("--baseline-history reads the history database: drop --no-db.")
    with history.connect(path, read_only=True) as con:
        earlier = history.earlier_runs(con, run.meta, args.baseline_history)
    if len(earlier) < args.baseline_history:
        raise UserError(f"the history {path} holds {len(earlier)} earlier ok run(s) of scenario "
                        f"{run.meta.get('scenario', {}).get('name')} on this host, accelerator and environment; "
                        f"--baseline-history {args.baseline_history} needs {args.baseline_history}.")
    return gate.pooled_baseline(earlier, f"history-last-{args.baseline_history}")


def _record_verdicts(directory: Path, run: Any, baseline: dict[str, Any], result: Any, args: argparse.Namespace) -> None:
    """The run and this judging of it go into the history (not when not comparable: nothing was judged)."""
    from iobench import history

    path = _history_path(args, directory.parent)
    if path is None or result.blocking:
        return
    try:
        with history.connect(path) as con:
            if not con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run.meta["run_id"]]).fetchall():
                history.add(con, directory)
            n = history.add_verdicts(con, run.meta["run_id"], baseline, result.verdicts)
        _log(f"history: {n} verdicts of {run.meta['run_id']} recorded in {path}")
    except UserError as exc:
        _log(f"history: verdicts not recorded ({exc})")


def fleet_passthrough(argv: list[str]) -> list[str]:
    """The run options of `iobench fleet run` argv for each host's `iobench run`: without what the
    controller keeps (--inventory, --out, --db, --no-db) or ships itself (--scenario)."""
    out: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        if name in ("--inventory", "--out", "--db", "--scenario"):
            skip = "=" not in token
            continue
        if name != "--no-db":
            out.append(token)
    return out


def cmd_fleet(args: argparse.Namespace) -> int:
    from iobench import fleet

    scenario_from_args(args)  # a bad scenario or option: one error here, before any host starts
    argv = sys.argv[1:] if args.raw_argv is None else args.raw_argv
    run_args = fleet_passthrough(argv[argv.index("run") + 1:])
    directory, meta = fleet.run(args.inventory, args.out, args.scenario, run_args, _log)
    for h in meta["hosts"]:
        print(f"{h['name']:16} {h['status']:12} {h['machine']:12} {h['start'] or '-'} .. {h['end'] or '-'}"
              + (f"  {h['reason']}" if h["reason"] else ""))
    print(f"fleet: {directory} ({meta['status']})")
    if any(h["results"] for h in meta["hosts"]):
        _record_run(directory, args)
    return 130 if meta["status"] == "interrupted" else 0 if meta["status"] == "ok" else 1


def cmd_gate(args: argparse.Namespace) -> int:
    import time as _time

    from iobench import gate, results

    started = _time.monotonic()
    if (args.backend or args.qemu_arg or args.accel or args.environment or args.max_repeats) and not args.scenario:
        raise UserError("--backend, --qemu-arg, --accel, --environment and --max-repeats shape the runs that "
                        "--scenario starts; a finished run is judged as it is.")
    if args.max_repeats is not None and (args.max_repeats < 2 or args.update_baseline):
        raise UserError(f"--max-repeats {args.max_repeats}: give at least 2, and not with --update-baseline "
                        "(a baseline is made of whole runs).")
    early = None  # a missing or unreadable baseline is said before a long run, not after it
    if args.scenario and args.baseline and not args.update_baseline and not args.baseline_history:
        early = gate.load_baseline(args.baseline)
    if args.scenario:
        directory = _run_scenario_for_gate(args.scenario, args.out, args.backend, args.qemu_arg, args.accel,
                                           args.environment)
    elif args.directory:
        directory = args.directory[-1]
    else:
        raise UserError("name a results directory, or --scenario FILE to run one first.")
    if len(args.directory) > 1 and not args.update_baseline:
        raise UserError("the gate judges one run: name one results directory (several only with --update-baseline).")
    run = results.load(directory)
    if args.format in ("bmf", "gab"):
        _gate_export(args, run)
    if args.update_baseline:
        if not args.baseline:
            raise UserError("--update-baseline writes the file --baseline names: give it.")
        return _write_baseline(args, [results.load(d) for d in args.directory[:-1]] + [run])
    baseline = early or _baseline(args, run)
    if args.max_repeats:
        from iobench import sequential

        def run_more(backends: list[str], repeats: int) -> Any:
            return results.load(_run_scenario_for_gate(args.scenario, args.out, backends, args.qemu_arg, args.accel,
                                                       args.environment, extra=[f"--repeats={repeats}"]))

        result = sequential.gate_until_decided(run, baseline, run_more, args.max_repeats, args.allow_partial,
                                               args.backend, log=_log)
    else:
        result = gate.gate(run, baseline, allow_partial=args.allow_partial, only_backends=args.backend)
    _record_verdicts(directory, run, baseline, result, args)
    return show_gate(args, directory, run, baseline, result, _time.monotonic() - started if args.scenario else None)


def show_gate(args: argparse.Namespace, directory: Path, run: Any, baseline: dict[str, Any], result: Any,
              job_seconds: float | None) -> int:
    """The gate's verdicts as json (--format json), gate.md (always), the step summary, and the table."""
    from rich.console import Console
    from rich.table import Table

    from iobench import gate

    if args.format == "json":
        _emit(json.dumps(gate.as_json(result), indent=1) + "\n", args.output)
    md = gate.markdown(result, run, baseline, job_seconds)
    (directory / "gate.md").write_text(md)
    for target in filter(None, (getattr(args, "summary", None), os.environ.get("GITHUB_STEP_SUMMARY"))):
        with open(target, "a") as f:
            f.write(md)
    if args.format == "table":
        console = Console(width=None if Console().is_terminal else 220)
        table = Table(title=md.splitlines()[0].removeprefix("## "))
        for h in gate.HEADERS:
            table.add_column(h, overflow="fold")
        for row in gate.table_rows(result):
            table.add_row(*row, style="bold red" if row[-1] == "WORSE" else None)
        console.print(table)
        for line in md.splitlines()[2:]:
            if line.startswith("- "):
                print(line[2:])
    if result.blocking or result.host_changed:
        _log("gate: not comparable: " + "; ".join((*result.blocking, *result.host_changed)))
    return int(result.exit_code)


def cmd_clean(args: argparse.Namespace) -> int:
    from iobench import stale, topology

    ok, why = topology.can_create_netns()
    if not ok:
        raise UserError(f"cannot remove namespaces or stop QEMU: {why}.")
    roots = args.out or [Path("results")]
    done = stale.clean(roots, dry_run=args.dry_run)
    busy = [item for item in stale.find(roots) if item.in_use]
    for line in done:
        print(("would: " if args.dry_run else "") + line)
    for item in busy:
        print(f"left alone: {item.describe()}")
    if not done:
        print("nothing abandoned to remove")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.raw_argv = argv
    handlers = {"run": cmd_run, "plan": cmd_plan, "backends": cmd_backends, "image": cmd_image, "doctor": cmd_doctor,
                "exitbench": cmd_exitbench, "lab": cmd_lab, "report": cmd_report, "plot": cmd_plot,
                "compare": cmd_compare, "clean": cmd_clean, "gate": cmd_gate, "db": db_command.run,
                "fleet": cmd_fleet, "host": host_command.run, "qemu": qemu_command.run,
                "ab": lambda a: ab_command.run(a, _run_scenario_for_gate, show_gate)}
    try:
        with stop_signals_unwind():
            return handlers[args.command](args)
    except UserError as exc:
        print(f"iobench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        _log("interrupted; everything the run created was removed")
        return 130
    except Terminated as exc:
        _log(f"stopped by {signal.Signals(exc.signum).name}; everything the run created was removed")
        return 128 + exc.signum
