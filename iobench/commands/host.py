"""`iobench host tune|reset`: reversible host tuning for measurements (iobench.hosttune)."""

from __future__ import annotations

import argparse

from iobench.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    host = sub.add_parser("host", help="tune this host for measuring, and put it back (root)",
                          description="tune: save the host's state, then set every CPU's governor to performance, "
                                      "switch turbo off, stop irqbalance and steer IRQs to housekeeping CPUs; "
                                      "reset: restore exactly what tune saved.")
    host_sub = host.add_subparsers(dest="host_command", required=True)
    tune = host_sub.add_parser("tune", help="save the state, then tune (what `iobench doctor` warns about)")
    tune.add_argument("--isolate", metavar="CPUS",
                      help="CPUs to keep free of interrupts, e.g. 1-3 (default: every CPU but the first)")
    tune.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    host_sub.add_parser("reset", help="restore what `iobench host tune` saved")


def run(args: argparse.Namespace) -> int:
    from iobench import hoststate, hosttune

    if args.host_command == "reset":
        done = hosttune.reset()
        for line in done["restored"]:
            print(f"restored: {line}")
        for line in done["refused"]:
            print(f"refused: {line}")
        return 0 if not done["refused"] else 1
    try:
        isolate = hoststate.cpulist(args.isolate) if args.isolate else None
    except ValueError as exc:
        raise UserError(f"--isolate {args.isolate!r}: a CPU list such as 1-3 or 2,3.") from exc
    saved = hosttune.tune(isolate=isolate, dry_run=args.dry_run)
    would = [f"cpu{c} governor {g} -> performance" for c, g in saved["governor"].items()]
    would += ["boost on -> off"] if saved["boost"] else []
    would += ["intel_pstate no_turbo 0 -> 1"] if saved["no_turbo"] else []
    would += ["irqbalance: stop"] if saved["irqbalance_was_running"] else []
    would += ([f"{len(saved['irq_affinity'])} IRQ(s) -> CPU(s) {','.join(map(str, saved['housekeeping_cpus']))}"]
              if saved["irq_affinity"] else [])
    if args.dry_run:
        print("\n".join(f"would change: {w}" for w in would) or "nothing to change")
        return 0
    for line in saved["changed"]:
        print(f"changed: {line}")
    for line in saved["refused"]:
        print(f"refused: {line}")
    print(f"saved the previous state in {hosttune.STATE}; `iobench host reset` restores it")
    return 0 if not saved["refused"] else 1
