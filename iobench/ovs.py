"""A private Open vSwitch for the `ovs` and `ovs-netdev` topologies: its own database, daemons, sockets
and logs in a directory of the run's, never the system's service.

Why private: a run must not touch the host's switching (its bridges, flows and controller are the
host's business), and two runs must not share one. `ovsdb-server` serves a database made for the run
from Open vSwitch's schema; `ovs-vswitchd` runs inside the run's namespace, so the datapath it makes
(the kernel's `ovs-system`, or the userspace `ovs-netdev`) and every port it opens are the
namespace's and go with it. Every path OVS would take from its build (run, log, database and
configuration directories) points into the run's directory (OVS_RUNDIR and its siblings); the
daemons are stopped by their own control sockets, then by pid, and `iobench clean` finds a directory a
killed run left by the pidfiles the daemons write (stale.OWNED_DIRS).

Two datapaths, two topologies (iobench.topologies): `ovs` is the kernel datapath every KVM host
with OVS runs (a flow cache in the kernel's softirq path, misses upcalled to ovs-vswitchd's handler
thread); `ovs-netdev` is the userspace datapath (no kernel module: ovs-vswitchd itself moves every
frame between AF_PACKET sockets on the ports, as OVS-DPDK does with DPDK ports). One handler and one
revalidator thread, so what OVS's threads cost is one thread of each kind, not one per CPU.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from iobench.counters.proc import ThreadCPU, read_threads
from iobench.errors import CellFailed, UserError, exit_status
from iobench.stale import OVS_DIR_PREFIX, hold, release

PROGRAMS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl")
SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DATAPATH_TYPES = {"ovs": "system", "ovs-netdev": "netdev"}  # topology -> OVS's datapath_type
# The userspace datapath reads and writes its ports through AF_PACKET; without this it takes frames without
# their virtio-net header, so a frame whose checksum the sender left to offload (a guest's, a veth's) leaves
# with it never computed and the receiver drops it. With it the header goes along (PACKET_VNET_HDR).
USERSPACE_OFFLOADS = {"netdev": ("other_config:userspace-tso-enable=true",)}
START_TIMEOUT_S = 60.0  # under the lab's emulation the daemons take seconds to come up
CTL_TIMEOUT_S = 20


class OvsFailed(CellFailed):
    """A daemon of the run's Open vSwitch did not start, refused a command, or died."""


def problem() -> str | None:
    """Why Open vSwitch cannot run here (None when it can): a program or the schema is missing. (The
    kernel datapath's module is the topology's own check: iobench.topology.support_problem.)"""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing or not SCHEMA.exists():
        what = ", ".join(missing) if missing else str(SCHEMA)
        return (f"Open vSwitch is not installed ({what} missing): apt-get install openvswitch-switch "
                "(or run the README's setup command; iobench starts its own daemons, never the service)")
    return None


@dataclass
class Ovs:
    """The run's Open vSwitch: its directory, its two daemons, its bridge and the datapath it runs on."""

    directory: Path
    datapath_type: str
    bridge: str
    db: subprocess.Popen[bytes]
    vswitchd: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return _env(self.directory)

    @property
    def db_socket(self) -> Path:
        return self.directory / "db.sock"

    @property
    def ctl(self) -> Path:
        return self.directory / "ovs-vswitchd.ctl"

    def vsctl(self, *args: str) -> str:
        """ovs-vsctl against the run's database (waiting for ovs-vswitchd to apply the change once it runs)."""
        wait = [] if self.vswitchd is not None else ["--no-wait"]
        return self._call(["ovs-vsctl", f"--db=unix:{self.db_socket}", f"--timeout={CTL_TIMEOUT_S}", *wait, *args])

    def appctl(self, *args: str) -> str:
        return self._call(["ovs-appctl", "-t", str(self.ctl), f"--timeout={CTL_TIMEOUT_S}", *args])

    def _call(self, argv: list[str]) -> str:
        got = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=CTL_TIMEOUT_S + 10)
        if got.returncode != 0:
            self.check_alive()
            raise OvsFailed(f"Open vSwitch refused `{' '.join(argv[:1] + argv[-3:])}`: "
                            f"{(got.stderr or got.stdout).strip()[:300]}" + _last_words(self.directory))
        return got.stdout

    def check_alive(self) -> None:
        for name, proc in (("ovsdb-server", self.db), ("ovs-vswitchd", self.vswitchd)):
            if proc is not None and proc.poll() is not None:
                raise OvsFailed(f"the run's Open vSwitch ({name}) exited ({exit_status(proc.returncode)})"
                                + _last_words(self.directory))

    def threads(self) -> list[ThreadCPU]:
        """ovs-vswitchd's threads with their CPU time, as CPU kind `ovs`: the main thread (the userspace
        datapath's forwarding, for ovs-netdev), the handler (upcalls: a kernel flow miss), the revalidator
        (flow expiry and statistics), urcu and the conntrack cleaners."""
        if self.vswitchd is None or self.vswitchd.poll() is not None:
            return []
        return [ThreadCPU(t.tid, t.comm, "ovs", t.cpu_s) for t in read_threads(self.vswitchd.pid, vhost_tids=())]

    def datapath_stats(self) -> dict[str, float]:
        """The datapath's own counters (`ovs-appctl dpctl/show -s`): flow-cache lookups that hit, that missed
        (an upcall to the handler) and that were lost (the upcall queue was full), flows installed, and
        for the kernel datapath its mask lookups (`masks: hit:` — subtables searched)."""
        return parse_dpctl_show(self.appctl("dpctl/show", "-s"))


def _env(directory: Path) -> dict[str, str]:
    """Every path OVS takes from its build (run, log, database, configuration) pointed into `directory`."""
    d = str(directory)
    return {**os.environ, "OVS_RUNDIR": d, "OVS_LOGDIR": d, "OVS_DBDIR": d, "OVS_SYSCONFDIR": d}


_COUNTER = re.compile(r"(\w[\w/]*):(\d+(?:\.\d+)?)")


def parse_dpctl_show(text: str) -> dict[str, float]:
    """`dpctl/show -s`'s datapath lines: {"hit", "missed", "lost", "flows", "masks_hit", "masks_total"}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("lookups:"):
            out.update({k: int(v) for k, v in _COUNTER.findall(line)})
        elif line.startswith("flows:"):
            out["flows"] = int(line.split(":", 1)[1])
        elif line.startswith("masks:"):
            got = dict(_COUNTER.findall(line))
            out.update({"masks_hit": int(got["hit"]), "masks_total": int(got["total"])} if "hit" in got else {})
    return out


def _last_words(directory: Path, lines: int = 2) -> str:
    """The last warnings or errors ovs-vswitchd logged (its log is where OVS says why)."""
    try:
        text = (directory / "ovs-vswitchd.log").read_text(errors="replace")
    except OSError:
        return ""
    said = [ln for ln in text.splitlines() if "|ERR|" in ln or "|EMER|" in ln or "|WARN|" in ln][-lines:]
    return (": " + " | ".join(ln.split("|", 4)[-1] for ln in said)) if said else ""


@contextmanager
def private_ovs(run_id: str, datapath_type: str, bridge: str, enter_netns: Callable[[], None],
                timeout: float = START_TIMEOUT_S) -> Iterator[Ovs]:
    """Start the run's ovsdb-server and ovs-vswitchd (the latter in the run's namespace, through
    `enter_netns`) with one bridge on `datapath_type`, and wait until the bridge exists; stop both and
    remove their directory on exit, whatever happened."""
    if (why := problem()) is not None:
        raise UserError(f"topology {'ovs' if datapath_type == 'system' else 'ovs-netdev'} cannot run: {why}.")
    directory = Path(tempfile.mkdtemp(prefix=f"{OVS_DIR_PREFIX}{run_id}-"))
    lock = hold(directory)
    sw: Ovs | None = None
    try:
        env = _env(directory)
        db_file = directory / "conf.db"
        subprocess.run(["ovsdb-tool", "create", str(db_file), str(SCHEMA)], check=True, capture_output=True,
                       env=env, timeout=CTL_TIMEOUT_S)
        db = _daemon(["ovsdb-server", str(db_file), f"--remote=punix:{directory / 'db.sock'}",
                      f"--unixctl={directory / 'ovsdb-server.ctl'}"], directory, env, enter_netns)
        sw = Ovs(directory, datapath_type, bridge, db)
        _wait_for(sw, lambda: sw.db_socket.exists(), timeout, "its database socket never appeared")
        sw.vsctl("init")
        sw.vsctl("set", "Open_vSwitch", ".", "other_config:n-handler-threads=1",
                 "other_config:n-revalidator-threads=1", *USERSPACE_OFFLOADS.get(datapath_type, ()))
        sw.vswitchd = _daemon(["ovs-vswitchd", f"unix:{sw.db_socket}", f"--unixctl={sw.ctl}"], directory, env,
                              enter_netns)
        _wait_for(sw, lambda: sw.ctl.exists(), timeout, "ovs-vswitchd's control socket never appeared")
        sw.vsctl("add-br", bridge, "--", "set", "bridge", bridge, f"datapath_type={datapath_type}")
        yield sw
    finally:
        try:
            if sw is not None:
                stop(sw)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            release(lock)


def _daemon(argv: list[str], directory: Path, env: dict[str, str],
            enter_netns: Callable[[], None]) -> subprocess.Popen[bytes]:
    """One OVS daemon, in the foreground (our child: its exit is seen at once), its pidfile and log in
    `directory` (the pidfile is what `iobench clean` reads), in the run's namespace."""
    name = Path(argv[0]).name  # its pidfile's name is stale.OVS_PIDFILES's
    with (directory / f"{name}.out").open("wb") as out:
        return subprocess.Popen([*argv, f"--pidfile={directory / (name + '.pid')}",
                                 f"--log-file={directory / (name + '.log')}", "--no-chdir"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=directory, preexec_fn=enter_netns, start_new_session=True)


def _wait_for(sw: Ovs, ready: Callable[[], bool], timeout: float, never: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sw.check_alive()
        if ready():
            return
        time.sleep(0.05)
    raise OvsFailed(f"the run's Open vSwitch was not ready within {timeout:.0f} s: {never}"
                    + _last_words(sw.directory))


def stop(sw: Ovs, grace: float = 10.0) -> None:
    """ovs-vswitchd first (`exit --cleanup`: it deletes its datapath and ports), then ovsdb-server
    (SIGTERM); SIGKILL to whichever is still there after `grace`."""
    if sw.vswitchd is not None and sw.vswitchd.poll() is None:
        try:
            sw.appctl("exit", "--cleanup")
        except (OvsFailed, subprocess.TimeoutExpired):
            pass
    for proc in (sw.vswitchd, sw.db):
        if proc is None:
            continue
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

