"""`iobench qemu fetch`: another Debian suite's QEMU unpacked into the cache, for a variant's `qemu`
(iobench.qemubuilds); the system's QEMU is not touched."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    qemu = sub.add_parser("qemu", help="other QEMU builds for A/B runs (the system's QEMU untouched)",
                          description="fetch: download Debian's qemu-system-x86 (with its firmware) of a suite "
                                      "through a private apt state and unpack it under the cache; a scenario's "
                                      "variant then runs it with qemu = \"<path printed>\".")
    qemu_sub = qemu.add_subparsers(dest="qemu_command", required=True)
    fetch = qemu_sub.add_parser("fetch", help="unpack another suite's QEMU into the cache and print its binary")
    fetch.add_argument("--suite", default="bookworm-backports",
                       help="the Debian suite to take it from (default: bookworm-backports)")


def run(args: argparse.Namespace) -> int:
    from iobench import qemubuilds

    binary = qemubuilds.fetch(args.suite)
    stable = qemubuilds.fetched(args.suite)
    print(qemubuilds.version(str(binary)))
    print(f"binary: {binary}")
    print(f"in a scenario: [backends.<name>] base = \"virtio\"  qemu = \"{stable}\"")
    return 0
