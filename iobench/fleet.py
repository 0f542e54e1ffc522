"""Fleet runs: one scenario on every host of an Ansible inventory, results merged on the controller.

The field runs a benchmark across machines with an orchestration engine, not ssh loops
(pbench drives its agents with Ansible). The playbook (data/fleet/fleet.yml, usable with
plain ansible-playbook) does the work per host; this module drives it with ansible-runner,
follows its events, and turns what came back into one fleet directory:

    <out>/fleet-<id>/fleet.json        hosts, their facts and versions, status and reason per host
    <out>/fleet-<id>/<host>/           that host's results directory (run.json, rows.csv, ...)
    <out>/fleet-<id>/fleet_rows.csv    every host's rows, with `host` and `machine` first
    <out>/fleet-<id>/ansible.log       what Ansible printed

Hosts naming the same `iobench_machine` measure one after the other (the playbook's
slots); a host that fails or cannot be reached is recorded with its reason and the others go
on. SIGINT/SIGTERM stop the play, then data/fleet/stop.yml interrupts every host's run
(its own handler removes what it created) and runs `iobench clean` there.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from iobench import __version__, provenance
from iobench.errors import UserError

PLAYBOOKS = Path(__file__).parent / "data" / "fleet"
Log = Callable[[str], None]


@dataclass
class HostOutcome:
    """One inventory host's part in a fleet run, as fleet.json records it."""

    name: str
    machine: str
    status: str  # ok / partial (its run had failed cells) / failed / unreachable / interrupted / not run
    reason: str = ""
    results: str | None = None  # its results directory, relative to the fleet directory
    run_id: str | None = None
    start: str | None = None  # the `iobench run` window on the host's clock
    end: str | None = None
    slot: int | None = None
    iobench: str | None = None
    qemu: str | None = None  # from its run.json: what measured
    accel: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def _ansible_on_path() -> None:
    """ansible-runner finds ansible-playbook and ansible-inventory on PATH: make that the ones installed
    beside this Python (the venv's bin, which a bare `.venv/bin/iobench` does not put on PATH)."""
    import sys

    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    if shutil.which("ansible-playbook") is None:
        raise UserError("ansible-playbook is not installed: run ./setup.sh (it installs ansible-core and "
                        "ansible-runner into .venv).")


def inventory_hosts(inventory: Path) -> dict[str, dict[str, Any]]:
    """Host name -> host variables, as Ansible itself reads the inventory."""
    import ansible_runner

    _ansible_on_path()

    if not inventory.is_file():
        raise UserError(f"no inventory at {inventory}: write one (README: fleet runs) and pass it with --inventory.")
    out, err = ansible_runner.get_inventory(action="list", inventories=[str(inventory.resolve())],
                                            response_format="json", quiet=True)
    data = out if isinstance(out, dict) else {}
    hostvars: dict[str, dict[str, Any]] = data.get("_meta", {}).get("hostvars", {})
    hosts = set(hostvars)
    for group in data.values():
        if isinstance(group, dict):
            hosts.update(group.get("hosts", []))
    if not hosts:
        why = (err or "").strip().splitlines()
        raise UserError(f"{inventory} names no hosts" + (f" ({why[-1]})" if why else "") +
                        ": see the README's inventory format.")
    return {h: hostvars.get(h, {}) for h in sorted(hosts)}


# In the fleet's work dir: what local_defaults adds, as an inventory source (JSON, which Ansible's yaml
# inventory plugin reads as YAML).
LOCAL_HOSTS = "local-hosts.json"


def local_defaults(hosts: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """What iobench sets for hosts on the controller itself (`ansible_connection: local`) that the
    inventory leaves unset: the controller's own Python as `ansible_python_interpreter` (Ansible's
    interpreter discovery can pick a shim that does not run, e.g. pyenv's in root's home: every task
    then fails with "modules failed to execute"), and one `iobench_machine`, the controller's (they share
    its cores, so they must not measure at the same time). The inventory's own values always win."""
    out: dict[str, dict[str, str]] = {}
    for name, hostvars in hosts.items():
        if hostvars.get("ansible_connection") != "local":
            continue
        extra = {}
        if "ansible_python_interpreter" not in hostvars:
            extra["ansible_python_interpreter"] = sys.executable
        if "iobench_machine" not in hostvars:
            extra["iobench_machine"] = socket.gethostname()
        if extra:
            out[name] = extra
    return out


def check_collisions(hosts: dict[str, dict[str, Any]]) -> None:
    """Refuse, before anything runs, hosts on this controller that would install into one directory at the
    same time (different machines run in parallel): the second unpack fails midway otherwise."""
    seen: dict[str, tuple[str, str]] = {}
    for name, hostvars in sorted(hosts.items()):
        if hostvars.get("ansible_connection") != "local" or hostvars.get("iobench_setup") != "install":
            continue
        where = str(hostvars.get("iobench_dir", "/opt/iobench"))
        machine = str(hostvars.get("iobench_machine", name))
        if where in seen and seen[where][1] != machine:
            raise UserError(f"hosts {seen[where][0]} and {name} are this controller (ansible_connection=local) on "
                            f"different iobench_machine values and both install into {where} at the same time: "
                            "give them one iobench_machine (they share this machine's cores) or different iobench_dir.")
        seen.setdefault(where, (name, machine))


def source_tarball(dest: Path) -> Path:
    """This iobench's source as a tarball for hosts with `iobench_setup: install`: the files git
    tracks or would track (local changes included), else the package tree without venv and results."""
    root = Path(__file__).resolve().parent.parent
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard"], capture_output=True,
                                text=True, check=True, timeout=30)
        files = [f for f in listed.stdout.splitlines() if f and (root / f).is_file()]
    except (OSError, subprocess.SubprocessError):
        files = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not
                 {".venv", "results", ".git", "__pycache__", ".tox"} & set(p.relative_to(root).parts)]
    path = dest / "iobench-source.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for f in sorted(files):
            tar.add(root / f, arcname=f)
    return path


class _Stopper:
    """SIGINT/SIGTERM during the play: remember it (ansible-runner polls `cancelled`); a second one is
    said to be in hand, not a reason to abandon the hosts."""

    def __init__(self, log: Log) -> None:
        self.event = threading.Event()
        self.log = log
        self.signal: str | None = None

    def handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set():
            self.log("already stopping every host; wait for `iobench clean` to finish on each")
            return
        self.signal = signal.Signals(signum).name
        self.log(f"{self.signal}: stopping the play, then interrupting and cleaning every host")
        self.event.set()

    def cancelled(self) -> bool:
        return self.event.is_set()


def explain_failure(host: str, task: str, msg: str) -> str:
    """A host's failed task as one line; Ansible's word for a Python it could not run on the host (its
    interpreter discovery picked one that does not work) gets the fix beside it."""
    msg = msg.strip()
    if "modules failed to execute" in msg or "interpreter" in msg.lower():
        return (f"{task}: Ansible could not run Python on {host} ({msg}): set ansible_python_interpreter for "
                "it in the inventory (e.g. ansible_python_interpreter: /usr/bin/python3)")
    return f"{task}: {msg}"


class _Events:
    """What ansible-runner's events say per host: unreachable and failure messages, progress lines."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.unreachable: dict[str, str] = {}
        self.failed: dict[str, str] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        data = event.get("event_data", {})
        host, task = data.get("host"), data.get("task", "")
        kind = event.get("event")
        if kind == "runner_on_unreachable" and host:
            self.unreachable[host] = str(data.get("res", {}).get("msg", "unreachable")).strip()
            self.log(f"{host}: unreachable: {self.unreachable[host]}")
        elif kind == "runner_on_failed" and host and not data.get("ignore_errors"):
            self.failed.setdefault(host, explain_failure(host, task, str(data.get("res", {}).get("msg", "failed"))))
        elif kind == "runner_on_start" and host and task == "iobench run":
            self.log(f"{host}: iobench run")
        elif kind == "runner_on_ok" and host and task == "iobench run":
            self.log(f"{host}: iobench run finished (exit {data.get('res', {}).get('rc')})")
        elif kind == "runner_on_ok" and host and task == "setup.sh (system packages, .venv)":
            self.log(f"{host}: iobench installed (setup.sh)")
        return True


def _ansible(playbook: str, inventory: Path, extravars: dict[str, Any], workdir: Path, ident: str,
             events: Callable[[dict[str, Any]], bool] | None = None,
             cancel: Callable[[], bool] | None = None) -> Any:
    """Run a playbook over the user's inventory and, after it, `workdir/local-hosts.json` when there is one
    (local_defaults: a later inventory source adds host variables)."""
    import ansible_runner

    overlay = workdir / LOCAL_HOSTS
    inventories = [str(inventory.resolve()), *([str(overlay)] if overlay.exists() else [])]
    return ansible_runner.run(
        private_data_dir=str(workdir), ident=ident, playbook=str(PLAYBOOKS / playbook),
        inventory=inventories, extravars=extravars, quiet=True, event_handler=events,
        cancel_callback=cancel, settings={"pexpect_timeout": 1, "suppress_ansible_output": True},
        envvars={"ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
                 "ANSIBLE_RETRY_FILES_ENABLED": "False"},
    )


def _unpack(tgz: Path, dest: Path) -> str:
    """Extract a host's results.tgz (one run directory) as `dest`; returns the run id."""
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp, tarfile.open(tgz) as tar:
        tar.extractall(tmp, filter="data")
        (run_dir,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        shutil.move(str(run_dir), dest)
        return run_dir.name


def _outcome(name: str, hostvars: dict[str, Any], fetched: Path, fleet_dir: Path, events: _Events,
             interrupted: bool) -> HostOutcome:
    machine = str(hostvars.get("iobench_machine", name))
    record_path = fetched / name / "host.json"
    if record_path.exists():
        rec = json.loads(record_path.read_text())
        host = HostOutcome(name, machine, rec["status"], rec.get("reason", ""), start=rec.get("start"),
                           end=rec.get("end"), slot=int(rec["slot"]) if rec.get("slot") is not None else None,
                           iobench=rec.get("iobench"), facts=rec.get("facts", {}))
        if host.status == "failed":
            tail = [line for line in rec.get("stderr_tail", []) if line.strip()]
            host.reason = f"{rec.get('failed_task')}: {rec.get('reason') or 'failed'}" + (
                f" ({tail[-1].strip()})" if tail else "")
        elif host.status == "partial":
            host.reason = "its run finished with failed cells (see its run.json)"
        tgz = fetched / name / "results.tgz"
        if tgz.exists():
            host.run_id = _unpack(tgz, fleet_dir / name)
            host.results = name
            run_meta = json.loads((fleet_dir / name / "run.json").read_text())
            host.qemu = run_meta.get("host", {}).get("qemu")
            host.accel = run_meta.get("accel", {}).get("accel")
        elif host.status in ("ok", "partial"):
            host.status, host.reason = "failed", "its run exited but left no results directory to fetch"
        return host
    if name in events.unreachable:
        return HostOutcome(name, machine, "unreachable", events.unreachable[name])
    if name in events.failed:
        return HostOutcome(name, machine, "failed", events.failed[name])
    return HostOutcome(name, machine, "interrupted" if interrupted else "not run",
                       "the fleet run was stopped before this host finished" if interrupted else
                       "the play ended before this host's turn")


def _merge_rows(fleet_dir: Path, hosts: list[HostOutcome]) -> None:
    """fleet_rows.csv: every host's rows.csv with `host` and `machine` first."""
    import pandas as pd

    from iobench import results

    frames = []
    for h in hosts:
        if h.results:
            rows = results.load(fleet_dir / h.results).rows
            labels = pd.DataFrame({"host": h.name, "machine": h.machine}, index=rows.index)
            frames.append(pd.concat([labels, rows], axis=1))
    if frames:
        pd.concat(frames, ignore_index=True).to_csv(fleet_dir / "fleet_rows.csv", index=False)


def run(inventory: Path, out: Path, scenario: Path | None, run_args: list[str], log: Log) -> tuple[Path, dict[str, Any]]:
    """Run the fleet; returns (fleet directory, fleet.json). Publishes the directory also when a host
    failed or the run was stopped by a signal (fleet.json's status and hosts say which)."""
    hosts = inventory_hosts(inventory)
    added = local_defaults(hosts)
    hosts = {h: {**v, **added.get(h, {})} for h, v in hosts.items()}
    check_collisions(hosts)
    if scenario is not None and not scenario.is_file():
        raise UserError(f"no scenario file at {scenario}.")
    fleet_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".fleet-{fleet_id}.partial"
    staging.mkdir()
    fetched = staging / ".fetched"
    work = Path(tempfile.mkdtemp(prefix=f"iobench-fleet-{fleet_id}-"))
    try:
        if added:
            (work / LOCAL_HOSTS).write_text(json.dumps({"all": {"hosts": added}}, indent=1) + "\n")
            for name, extra in added.items():
                log(f"{name}: local connection: " + ", ".join(f"{k}={v}" for k, v in extra.items())
                    + " (set them in the inventory to choose otherwise)")
        stopper, events = _Stopper(log), _Events(log)
        extravars: dict[str, Any] = {"iobench_fleet_id": fleet_id, "iobench_fleet_dest": str(fetched.resolve()),
                                     "iobench_scenario": str(scenario.resolve()) if scenario else "",
                                     "iobench_run_args": run_args}
        if any(v.get("iobench_setup") == "install" for v in hosts.values()):
            extravars["iobench_source"] = str(source_tarball(work))
        machines = {str(v.get("iobench_machine", h)) for h, v in hosts.items()}
        log(f"fleet {fleet_id}: {len(hosts)} host(s) on {len(machines)} machine(s); hosts of one machine run one "
            "after the other")
        started = time.time()
        previous = {s: signal.signal(s, stopper.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            result = _ansible("fleet.yml", inventory, extravars, work, "fleet", events, stopper.cancelled)
            if stopper.cancelled():
                log("interrupting every host's run and running iobench clean there")
                stop = _ansible("stop.yml", inventory, {"iobench_fleet_id": fleet_id}, work, "stop")
                log(f"stop play: {stop.status}")
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        outcomes = [_outcome(h, v, fetched, staging, events, stopper.cancelled()) for h, v in hosts.items()]
        shutil.rmtree(fetched, ignore_errors=True)
        ansible_log = work / "artifacts" / "fleet" / "stdout"
        if ansible_log.exists():
            shutil.copy(ansible_log, staging / "ansible.log")
        _merge_rows(staging, outcomes)
        ok = [h for h in outcomes if h.status == "ok"]
        status = ("interrupted" if stopper.cancelled() else "ok" if len(ok) == len(outcomes) else
                  "partial" if ok else "failed")
        meta = {"fleet_id": fleet_id, "status": status, "interrupted_by": stopper.signal, "started": started,
                "finished": time.time(), "inventory": str(inventory.resolve()),
                "scenario": str(scenario.resolve()) if scenario else None, "run_args": run_args,
                "ansible_status": result.status, "controller": {"iobench_version": __version__,
                                                                "iobench_revision": provenance.revision()},
                "hosts": [asdict(h) for h in outcomes]}
        (staging / "fleet.json").write_text(json.dumps(meta, indent=1) + "\n")
    except BaseException:  # nothing half-written: no fleet directory unless it is complete
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    final = out / f"fleet-{fleet_id}"
    staging.rename(final)
    return final, meta
