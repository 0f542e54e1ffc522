"""Command line: a thin layer over library functions (tests call those directly).

Messages for people go to stderr; results go to files and the table to stdout.
A UserError becomes one line and its exit code; Ctrl-C exits 130, SIGTERM 143.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from iobench import __version__, backends
from iobench.errors import Terminated, UserError


def _log(message: str) -> None:
    print(f"iobench: {message}", file=sys.stderr, flush=True)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iobench", description="Compare the network I/O path of a KVM guest under e1000, virtio and vhost-net.")
    parser.add_argument("--version", action="version", version=f"iobench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="boot the guest under each NIC backend and measure iperf3 traffic",
                         description="Boot the same guest under each NIC backend, drive iperf3 both ways, "
                                     "count exits (or TCG trap equivalents), copies and CPU time, and write "
                                     "results/<run-id>/.")
    run.add_argument("--backend", action="append", choices=[*backends.BACKENDS, "all"],
                     help="backend to run (repeatable); 'all' = every backend this host can run (default)")
    run.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                     help="kvm, tcg, or auto: kvm only if a guest really boots under it (default auto)")
    run.add_argument("--direction", choices=("rx", "tx", "both"), default="both",
                     help="rx = host->guest, tx = guest->host (default both)")
    run.add_argument("--duration", type=_positive_int, default=10, help="seconds of measured traffic per cell (default 10)")
    run.add_argument("--omit", type=int, default=1, help="iperf3 warm-up seconds not counted in throughput (default 1)")
    run.add_argument("--repeats", type=_positive_int, default=1, help="repeats of each cell (default 1)")
    run.add_argument("--out", type=Path, default=Path("results"), help="results root (default ./results)")
    run.add_argument("--boot-timeout", type=float, default=90.0, help="seconds to wait for the guest's READY (default 90)")

    image = sub.add_parser("image", help="build or show the guest image",
                           description="The guest image: kernel + initramfs from Debian packages.")
    image_sub = image.add_subparsers(dest="image_command", required=True)
    build = image_sub.add_parser("build", help="build the guest image (cached by package versions)",
                                 description="Download the Debian packages and build the guest kernel and initramfs.")
    build.add_argument("--force", action="store_true", help="rebuild even if a cached image matches")
    image_sub.add_parser("show", help="print the cached images' manifests",
                         description="Print the manifests of cached guest images.")

    doctor = sub.add_parser("doctor", help="what this host can run, and why",
                            description="Check QEMU, iperf3, KVM, vhost-net, privileges and the cache.")
    doctor.add_argument("--no-probe", action="store_true", help="do not boot a guest to probe KVM")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from iobench import report
    from iobench.runner import RunOptions, run

    opts = RunOptions(
        backends=tuple(args.backend or ["all"]), accel=args.accel,
        directions=backends.DIRECTIONS if args.direction == "both" else (args.direction,),
        duration_s=args.duration, omit_s=args.omit, repeats=args.repeats, out=args.out,
        boot_timeout_s=args.boot_timeout,
    )
    result = run(opts, log=_log)
    lines = report.summary_lines([r.__dict__ for r in result.rows], [c.__dict__ for c in result.cells], result.unavailable)
    report.print_table(lines, title=f"iobench {result.meta['run_id']} - accel {result.meta['accel']['accel']}",
                       notes=result.unavailable)
    print(f"results: {result.directory}")
    if result.status != "ok":
        _log(f"run status: {result.status}; see {result.directory / 'run.json'}")
        return 1
    return 0


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


def cmd_doctor(args: argparse.Namespace) -> int:
    from iobench import doctor

    for check in doctor.checks(probe=not args.no_probe):
        print(f"{'ok ' if check.ok else 'no '} {check.name:12} {check.detail}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"run": cmd_run, "image": cmd_image, "doctor": cmd_doctor}
    try:
        return handlers[args.command](args)
    except UserError as exc:
        print(f"iobench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        _log("interrupted; everything the run created was removed")
        return 130
    except Terminated:
        _log("terminated; everything the run created was removed")
        return 143
