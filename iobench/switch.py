"""The vhost-user backend's switch: DPDK's testpmd, private to the run, between the guest and the tap.

Why testpmd: it is the poll-mode forwarder DPDK ships (Debian's `dpdk-dev`), with the vhost PMD that
serves a guest's virtio rings from userspace over a vhost-user socket, the tap PMD that reaches the
kernel, and `io` forwarding that moves frames between the two untouched. What it shows is what
OVS-DPDK, VPP and SPDK share: the rings are polled by a core that spins whether or not anything
flows, and the guest's transmit kicks disappear (the poller turns notifications off).

The peer port is the tap PMD attached to the topology's own tap (by name), so the traffic peer, the
tap's address and its counters, the bridge it is a port of, are the same as for the other backends:
only who reads and writes the tap changes (testpmd instead of QEMU or vhost-net). The tap PMD reaches
the peer without offloads; TSO over `virtio_user` on /dev/vhost-net is the alternative, left out here
because vhost-net is what this machine lacks. The guest's device is offered no offloads either
(backends.VHOST_USER), so both ends agree; `vhost-nooffload` is vhost-net with the same device, the
like-for-like comparison.

Private to the run: its own `--file-prefix`, `--no-pci` (no device is ever taken from the host),
`--no-huge` (anonymous memory; hugepages are not needed at these rates), and its runtime directory
(EAL's config, multi-process and telemetry sockets) under a directory of the run's, locked while the
run lives and removed after (`iobench clean` removes one a killed run left). Its standard input is a
pipe from iobench: testpmd exits when it reads end-of-file, so it cannot outlive the run that started
it, however that run ends.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iobench.counters.proc import ThreadCPU, read_threads
from iobench.errors import CellFailed, UserError, exit_status
from iobench.stale import SWITCH_DIR_PREFIX, SWITCH_PIDFILE, hold, release
from iobench.topology import enter_netns

TESTPMD = "dpdk-testpmd"
# The PMD plugins testpmd loads for this (Debian ships them as separate packages).
PLUGINS = {"librte_net_vhost.so": "librte-net-vhost23", "librte_net_tap.so": "librte-net-tap23",
           "librte_mempool_ring.so": "librte-mempool-ring23"}
PLUGIN_GLOB = "/usr/lib/*/dpdk/pmds-*/{name}*"
READY_LINE = "Press enter to exit"  # testpmd's non-interactive mode, forwarding started
FORWARDING_BOTH = "nb forwarding ports=2"  # both ports probed: the guest's vhost port and the tap
START_TIMEOUT_S = 60.0  # under the lab's emulation EAL's start takes seconds
MEMORY_MB = 256  # EAL's anonymous memory (--no-huge): the mbuf pool and the vhost queues fit
MBUFS = 8192


class SwitchFailed(CellFailed):
    """testpmd did not start, its socket never appeared, or it died: the attempt's cells fail with this."""


def problem() -> str | None:
    """Why vhost-user cannot run here (None when it can): testpmd or one of its plugins is missing."""
    if shutil.which(TESTPMD) is None:
        return f"{TESTPMD} is not installed (apt-get install dpdk-dev, or run the README's setup command)"
    missing = [pkg for name, pkg in PLUGINS.items() if not glob.glob(PLUGIN_GLOB.format(name=name))]
    if missing:
        return f"DPDK's {', '.join(missing)} plugin package(s) are missing (apt-get install {' '.join(missing)})"
    return None


@dataclass
class Switch:
    """A running testpmd: its process, its private directory, the vhost-user socket QEMU connects to."""

    proc: subprocess.Popen[bytes]
    directory: Path
    prefix: str
    log: Path
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def socket(self) -> Path:
        return self.directory / "vhost-user.sock"

    @property
    def telemetry(self) -> Path:
        return self.directory / "dpdk" / self.prefix / "dpdk_telemetry.v2"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def failure(self, what: str) -> SwitchFailed:
        return SwitchFailed(f"the vhost-user switch ({TESTPMD}) {what}" + _last_words(self.log))

    def check_alive(self) -> None:
        if not self.alive():
            raise self.failure(f"exited ({exit_status(self.proc.returncode)})")

    def threads(self) -> list[ThreadCPU]:
        """Every thread of testpmd with its CPU time (the poll lcore `rte-worker-1` in DPDK 22.11, the main lcore,
        EAL's interrupt, multi-process and telemetry threads)."""
        return [ThreadCPU(t.tid, t.comm, "pmd", t.cpu_s) for t in read_threads(self.pid, vhost_tids=())]

    def port_stats(self) -> dict[int, dict[str, int]]:
        """ethdev's counters of both ports (0: the guest's vhost port, 1: the tap), from testpmd's telemetry
        socket: what the switch itself says it received, sent and dropped."""
        self.check_alive()
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.settimeout(5.0)
            try:
                s.connect(str(self.telemetry))
                json.loads(s.recv(16384))  # the greeting: version, pid, max output length
                out = {}
                for port in (0, 1):
                    s.send(f"/ethdev/stats,{port}".encode())
                    reply = json.loads(s.recv(65536))["/ethdev/stats"]
                    out[port] = {k: int(v) for k, v in reply.items() if isinstance(v, int)}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                try:  # a switch killed mid-read takes a moment to exit: say that it died, when it did
                    self.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
                self.check_alive()
                raise self.failure(f"did not answer on its telemetry socket ({type(exc).__name__}: {exc})") from exc
        return out


def exit_text(sw: Switch) -> str:
    return exit_status(sw.proc.poll())


def _last_words(log: Path, lines: int = 3) -> str:
    try:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-lines:]
    except OSError:
        return ""
    return (": " + " | ".join(tail)) if tail else ""


def argv(directory: Path, prefix: str, tap: str, cpus: str) -> list[str]:
    """testpmd's command line: two lcores (main, one forwarding core) floating over `cpus` until the
    placement pins them, the vhost PMD as server on the run's socket, the tap PMD on the topology's tap,
    io forwarding between them."""
    return [TESTPMD, f"--lcores=(0,1)@({cpus})", "--no-pci", "--no-huge", "-m", str(MEMORY_MB),
            f"--file-prefix={prefix}", "--log-level=lib.eal:notice",
            f"--vdev=net_vhost0,iface={directory / 'vhost-user.sock'},queues=1",
            f"--vdev=net_tap0,iface={tap}",
            "--", "--forward-mode=io", "--nb-cores=1", "--rxq=1", "--txq=1", f"--total-num-mbufs={MBUFS}"]


@contextmanager
def testpmd(run_id: str, netns: str, tap: str, cpus: str, timeout: float = START_TIMEOUT_S,
            keep_log: Path | None = None) -> Iterator[Switch]:
    """Start testpmd in the run's namespace on `tap` and wait until it forwards; stop it and remove
    everything it made on exit, whatever happened (its log, with the forwarding statistics it prints as
    it stops, copied to `keep_log` first)."""
    if (why := problem()) is not None:
        raise UserError(f"backend vhost-user cannot run: {why}.")
    directory = Path(tempfile.mkdtemp(prefix=f"{SWITCH_DIR_PREFIX}{run_id}-"))
    lock = hold(directory)
    # EAL's sockets live under <directory>/dpdk/<prefix>/, and a socket's path has 107 bytes at most: the
    # prefix is short (the run id's random tail), the directory says whose it is
    prefix = f"ib{run_id[-6:]}"
    log = directory / "testpmd.log"
    sw: Switch | None = None
    try:
        args = argv(directory, prefix, tap, cpus)
        # stdbuf: testpmd's stdout is a file, which printf buffers until exit; line by line, its
        # readiness line is seen when it is printed (stdbuf execs testpmd: the pid is testpmd's)
        env = {**os.environ, "RUNTIME_DIRECTORY": str(directory)}  # EAL's runtime dir, even for root
        with log.open("wb") as out:
            popen = subprocess.Popen(["stdbuf", "-oL", *args], stdin=subprocess.PIPE, stdout=out,
                                     stderr=subprocess.STDOUT, env=env, cwd=directory,
                                     preexec_fn=lambda: enter_netns(netns), start_new_session=True)
        sw = Switch(popen, directory, prefix, log, args)
        (directory / SWITCH_PIDFILE).write_text(f"{popen.pid}\n")
        _wait_ready(sw, timeout)
        yield sw
    finally:
        try:
            if sw is not None:
                stop(sw)
            if keep_log is not None and log.exists():
                keep_log.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, keep_log)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            release(lock)


def _wait_ready(sw: Switch, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sw.alive():
            raise sw.failure(f"exited ({exit_status(sw.proc.returncode)}) before it forwarded")
        text = sw.log.read_text(errors="replace") if sw.log.exists() else ""
        if READY_LINE in text and sw.socket.exists():
            if FORWARDING_BOTH not in text:  # a port that failed to probe is left out, and testpmd goes on
                said = [ln.strip() for ln in text.splitlines() if "Unable" in ln or "failed" in ln]
                raise SwitchFailed(f"the vhost-user switch ({TESTPMD}) started without one of its two ports: "
                                   + (" | ".join(said[:3]) if said else text.strip().splitlines()[-1]))
            return
        time.sleep(0.05)
    where = "its vhost-user socket never appeared" if not sw.socket.exists() else "it never started forwarding"
    raise sw.failure(f"was not ready within {timeout:.0f} s: {where}")


def stop(sw: Switch, grace: float = 10.0) -> None:
    """End-of-file on its standard input (testpmd stops its ports and exits), SIGKILL after `grace`."""
    try:
        if sw.proc.stdin is not None:
            sw.proc.stdin.close()
    except OSError:
        pass
    try:
        sw.proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(sw.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        sw.proc.wait()


def describe(sw: Switch) -> dict[str, Any]:
    """run.json's / raw's record of a switch: its command line and version line."""
    return {"argv": sw.argv, "pid": sw.pid}
