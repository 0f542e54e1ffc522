"""`iobench ab`: two backends or variants of one scenario, run interleaved in one job, B judged against A.

Why: a baseline from another run carries that run's drift, and in the lab a whole run moves by more than
the 10% a QEMU or kernel developer wants to see (gate.DRIFT_FLOOR). Run in one job, round by round in ABBA
order (A B, B A, A B ...), the two sides share the machine, the L1 and the hour: what drifts falls on both,
and only their repeats' scatter is left to beat. The decision is the gate's (`decide`), with no between-run
term. A and B are backends or the scenario's variants: a variant can carry its own QEMU arguments
(`qemu_args = ["-cpu", "host,kvm-pv-eoi=off"]`), device and netdev properties, queues and guest settings.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iobench.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ab = sub.add_parser("ab", help="run two backends or variants interleaved in one job and judge B against A",
                        description="Run the scenario with only backends A and B, rounds in ABBA order, and judge "
                                    "every gated metric of B against A in the same run: worse / ok / inconclusive "
                                    "(better) per cell, as the gate decides (docs/gate.md). Exit 0 nothing worse, "
                                    "1 worse, 2 not comparable.")
    ab.add_argument("--scenario", type=Path, required=True, help="scenario TOML file (its variants can be A or B)")
    ab.add_argument("--a", required=True, metavar="BACKEND", help="the reference: a backend or the scenario's variant")
    ab.add_argument("--b", required=True, metavar="BACKEND", help="the candidate judged against A")
    ab.add_argument("--repeats", type=int, help="rounds (each runs A and B once); default the scenario's")
    ab.add_argument("--accel", choices=("auto", "kvm", "tcg", "lab"), help="the accelerator (default the scenario's)")
    ab.add_argument("--out", type=Path, default=Path("results"), help="results root (default ./results)")
    ab.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json (verdicts)")
    ab.add_argument("--output", type=Path, help="file for json (default stdout)")
    ab.add_argument("--allow-partial", action="store_true",
                    help="judge a run with failed cells on what it has (default: not comparable)")


# How the CLI runs a scenario (as `iobench run`, the lab included) and shows a gate's verdicts: given by
# cli.py, which owns both, so that this module does not import it back.
RunScenario = Callable[..., Path]
ShowGate = Callable[[argparse.Namespace, Path, Any, dict[str, Any], Any, float | None], int]


def run(args: argparse.Namespace, run_scenario: RunScenario, show: ShowGate) -> int:
    import time

    from iobench import gate, results, scenario

    if args.a == args.b:
        raise UserError(f"--a and --b are both {args.a}: name two different backends or variants.")
    scn = scenario.load(args.scenario)
    names = scenario.backend_names(scn)
    for side in (args.a, args.b):
        if side not in names or side in ("native", "all"):
            raise UserError(f"{side} is not a backend or variant of {args.scenario}: choose from "
                            f"{', '.join(n for n in names if n != 'native')}.")
    started = time.monotonic()
    extra = ["--order=abba", *([f"--repeats={args.repeats}"] if args.repeats else [])]
    directory = run_scenario(args.scenario, args.out, [args.a, args.b], accel=args.accel, extra=extra)
    data = results.load(directory)
    baseline = gate.ab_baseline(data, args.a, args.b)
    result = gate.gate(data, baseline, allow_partial=args.allow_partial, only_backends=[args.b], one_job=True)
    result.notes[:] = [n for n in result.notes if not n.startswith("cells not in the baseline")]
    return show(args, directory, data, baseline, result, time.monotonic() - started)
