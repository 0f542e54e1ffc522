"""The nested lab: real KVM exits and real vhost-net on any Linux host.

A first-level VM ("L1") runs under TCG with an emulated AMD CPU (-cpu EPYC), so
its stock Debian kernel gets KVM through nested SVM and vhost-net as modules.
L1 sees the parts of the host the job needs, read-only over 9p, and runs the *same*
iobench code, Python environment, QEMU and guest image in a chroot (no second
copy to drift), with `--accel kvm`; it writes its results into a lab directory
shared writable at the same absolute path. The host then adds the lab's own
description to run.json and publishes the directory like any other run.

What L1 sees of the host is only what the inner run needs (labexports): /usr,
the Python environment, the iobench tree, the image cache, each read-only at its
own path, and copies of a few /etc files — never /root, /home or /etc themselves;
the lab directory is its one writable share. run.json's `lab.exports` lists them.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from iobench import checkpoint, faults, guest, hostinfo, labexports, labwatch, placement, provenance, stale
from iobench.check import Check
from iobench.counters import proc
from iobench.errors import CellFailed, Terminated, UserError
from iobench.vm import QEMU_BINARY, VM, VMConfig

# L1's modules: KVM, vhost-net, tap and veth for the inner run's topology (bridge, macvtap and
# openvswitch, the kernel datapath, for the others: docs/topology.md), and 9p for the shared cache and results.
# crc32c_generic first: libcrc32c (openvswitch's and conntrack's) asks the crypto API for "crc32c" when it
# loads, a soft dependency modules.dep does not list (without it: "Unknown symbol crc32c" all the way up).
LAB = guest.ImageSpec("lab", ("kvm_amd", "vhost_net", "tun", "veth", "bridge", "macvtap", "crc32c_generic",
                              "openvswitch", "9pnet_virtio", "9p", "virtio_pci"), (), "lab-init.sh")
L1_CPU = "EPYC"
L1_VCPUS = 2
L1_MEMORY_MB = 3072
L1_BOOT_TIMEOUT_S = 120.0
# L1 boots per job: a lost L1 costs one boot (~3 s) and the cells it was measuring, nothing more,
# since the next boot resumes the run.
L1_ATTEMPTS = 4
# L1's kernel: warnings and the stuck CPU's backtrace reach the console (quiet would hide them); an NMI
# from the host (the stall diagnosis) panics with every CPU's backtrace. tsc=reliable: TCG keeps L1's
# TSCs in step (one host clock), but L1 distrusts them at boot and would run on the emulated HPET, whose
# read path one measured stall spun in; with it L1 runs on the TSC (A/B in docs/lab.md).
L1_KERNEL_ARGS = ("loglevel=5", "unknown_nmi_panic", "sysctl.kernel.panic_all_cpu_backtrace=1", "tsc=reliable")
DIAG_QMP_TIMEOUT_S = 5.0
NMI_WAIT_S = 6.0
# A/B studies of L1's settings (docs/lab.md): extra L1 kernel arguments, e.g. "tsc=reliable" or
# "iobench.halt_poll_ns=0" (lab-init writes KVM's halt polling after loading kvm). Recorded in run.json.
EXTRA_ARGS_ENV = "IOBENCH_LAB_L1_ARGS"
# ... and another QEMU build for L1 only (e.g. Debian bookworm-backports' 10.0 unpacked into a folder):
# its binary, and its data folder (-L: option ROMs of the same version). L2 keeps the system's QEMU.
L1_QEMU_ENV = "IOBENCH_LAB_L1_QEMU"
L1_QEMU_DATA_ENV = "IOBENCH_LAB_L1_QEMU_DATA"
# ... and single-threaded TCG for L1 (IOBENCH_LAB_L1_TCG=single): no two vCPUs of L1 run at once, so
# no cross-modifying code between them (docs/lab.md), at the cost of one host core for L1.
L1_TCG_ENV = "IOBENCH_LAB_L1_TCG"
Log = Callable[[str], None]


class L1Lost(CellFailed):
    """L1 stalled, died, never booted or its job left nothing: this L1 attempt is lost."""

    def __init__(self, reason: str, phase: str = "") -> None:
        super().__init__(reason)
        self.phase = phase


def l1_config(image: guest.GuestImage, labdir: Path) -> VMConfig:
    """L1's QEMU: what it may read of the host (labexports: read-only shares, prepared in `labdir`) and
    the lab directory, its one writable share."""
    try:
        exports = labexports.prepare(labdir)
    except ValueError as exc:
        raise UserError(f"the lab cannot run here: {exc}.") from exc
    virtfs = (
        *labexports.virtfs_args(exports),
        "-virtfs", f"local,path={labdir},mount_tag=labdir,security_model=none,multidevs=remap",
    )
    # -d cpu_reset,guest_errors: when L1 dies silently (a triple fault exits QEMU with status 0
    # under -no-reboot), its -D log says why.
    data = os.environ.get(L1_QEMU_DATA_ENV)
    accel = "tcg-single" if os.environ.get(L1_TCG_ENV) == "single" else "tcg"
    return VMConfig(name="iobench-lab", accel=accel, image=image, nic_args=virtfs, guest_cidr="198.18.0.2/24",
                    memory_mb=L1_MEMORY_MB, vcpus=L1_VCPUS,
                    extra_args=("-cpu", L1_CPU, "-d", "cpu_reset,guest_errors", *(("-L", data) if data else ())),
                    cmdline_extra=(f"iobench.labdir={labdir}", *L1_KERNEL_ARGS, *l1_extra_args()),
                    qemu=os.environ.get(L1_QEMU_ENV) or QEMU_BINARY)


def l1_extra_args() -> tuple[str, ...]:
    return tuple(os.environ.get(EXTRA_ARGS_ENV, "").split())


def job_script(argv: list[str], labdir: Path, guest_image: Path, extra_env: dict[str, str] | None = None) -> str:
    """The shell script L1 runs in the chroot: the inner `iobench run` with its environment."""
    env = {
        **(extra_env or {}),
        "HOME": str(Path.home()), "XDG_CACHE_HOME": str(guest.cache_root().parent),
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
        "IOBENCH_ENVIRONMENT": "lab", "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": "/run/iobench-tmp", "MPLCONFIGDIR": "/run/iobench-tmp/mpl",
        guest.PINNED_ENV: str(guest_image),
        **({provenance.REVISION_ENV: rev} if (rev := provenance.revision()) else {}),
        **({"IOBENCH_FAULT": os.environ["IOBENCH_FAULT"]} if os.environ.get("IOBENCH_FAULT") else {}),
    }
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
    return (f"#!/bin/sh\n{exports}\ncd {shlex.quote(str(Path.cwd()))} 2>/dev/null || cd {shlex.quote(str(_tree()))}\n"
            f"{_probes()}{shlex.join(argv)}\necho $? > {shlex.quote(str(labdir / 'exit-code'))}\n")


# Test hook: host paths (':'-separated) the job tries to read in L1 before the run, saying for each
# whether it could (the least-privilege test: a sentinel outside the shares must not be readable).
PROBE_ENV = "IOBENCH_LAB_PROBE"


def _probes() -> str:
    lines = []
    for path in filter(None, os.environ.get(PROBE_ENV, "").split(":")):
        q = shlex.quote(path)
        lines.append(f"if cat {q} >/dev/null 2>&1; then echo {shlex.quote(f'iobench: lab probe: {path} readable in L1')} >&2; "
                     f"else echo {shlex.quote(f'iobench: lab probe: {path} not readable in L1')} >&2; fi\n")
    return "".join(lines)


def _tree() -> Path:
    """The iobench tree (shared with L1): where the job runs when the host's working directory is not shared."""
    return Path(__file__).resolve().parent.parent


def inner_argv(run_args: list[str], labdir: Path) -> list[str]:
    """`iobench run` inside L1: the user's options, accel kvm, results into the lab directory."""
    return [sys.executable, "-m", "iobench", "run", *run_args, "--accel", "kvm", "--out", str(labdir / "out")]


def run(run_args: list[str], out: Path, boot_timeout_s: float, log: Log,
        why: str = "asked for (iobench lab run / --accel lab)", copy_trace: bool = False,
        placement_spec: str = "none", kernels: tuple[str, ...] = ()) -> Path:
    """Boot L1, run the inner matrix, publish its results under `out`. Returns the results dir.

    L1 is watched phase by phase (labwatch): a stalled L1 is diagnosed (raw/lab/diag-*) and
    killed, a dead one recorded, and the next L1 resumes the run from its checkpoint, so no
    finished cell is measured twice or lost. When the attempts run out, or on Ctrl-C/SIGTERM,
    the cells done so far are published as a results directory whose status says so.

    With `copy_trace`, the copy-trace module is built here for L1's kernel first: L1 has no
    network for the headers and sees the cache read-only. With a `placement_spec` other than none,
    L1's vCPU threads are pinned to distinct host cores (the inner run places the threads inside L1).
    `kernels`: the guest kernels of the scenario's variants, whose images are built here too (L1 has no apt).

    Raises UserError when the host lacks QEMU, L1Lost when no attempt measured anything.
    """
    if hostinfo.qemu_version() is None:
        raise UserError("qemu-system-x86_64 is not installed: apt-get install qemu-system-x86 (or run ./setup.sh).")
    guest_image = guest.build(log=log)  # the inner run boots this very image, from the read-only cache
    image = guest.build(log=log, spec=LAB)
    extra_env = _copy_trace_env(image.kernel_release, log) if copy_trace else {}
    if kernels:  # and these, for the variants with a guest kernel of their own
        extra_env[guest.PINNED_KERNELS_ENV] = ",".join(f"{k}={guest.build(log=log, kernel_release=k).directory}"
                                                       for k in kernels)
    out.mkdir(parents=True, exist_ok=True)
    labdir = Path(tempfile.mkdtemp(prefix=".lab-", dir=out.resolve()))
    lock = stale.hold(labdir)  # a live run owns it (iobench clean leaves it alone)
    started = time.monotonic()
    lost: list[dict[str, Any]] = []
    spent: list[tuple[int, str, float]] = []  # (L1 attempt, phase, seconds): where the run's time went
    l1_line, l1_boot_s = "", 0.0
    try:
        for attempt in range(1, L1_ATTEMPTS + 1):
            if _inner_results(labdir):  # the job published before L1 was lost (on its way to power off)
                break
            try:
                l1_line, l1_boot_s = _attempt(labdir, image, guest_image, run_args, extra_env, attempt, boot_timeout_s,
                                              log, placement_spec, spent)
                break
            except L1Lost as exc:
                reason = str(exc).splitlines()[0]
                lost.append({"attempt": attempt, "reason": reason, "phase": exc.phase,
                             "logs": _logs_name(attempt), "cells_done": _cells_done(labdir)})
                more = attempt < L1_ATTEMPTS
                log(f"lab: L1 attempt {attempt} lost ({reason}); "
                    + ("resuming the run in a new L1" if more else "no attempts left"))
        else:
            return _publish_partial(labdir, out, "failed", None, f"L1 lost {len(lost)} times: {lost[-1]['reason']}",
                                    l1_line, l1_boot_s, started, why, lost, spent, log)
        return _publish(labdir, out, l1_line, l1_boot_s, time.monotonic() - started, why, lost, spent, log)
    except (KeyboardInterrupt, Terminated) as exc:
        name = "SIGINT" if isinstance(exc, KeyboardInterrupt) else signal.Signals(exc.signum).name
        try:
            done = _publish_partial(labdir, out, "interrupted", name, None, l1_line, l1_boot_s, started, why, lost,
                                    spent, log)
            log(f"lab: interrupted by {name}; the cells finished so far are in {done}")
        except L1Lost:
            log(f"lab: interrupted by {name} before any cell was finished; nothing to publish")
        raise
    finally:
        shutil.rmtree(labdir, ignore_errors=True)
        stale.release(lock)


def _logs_name(attempt: int) -> str:
    return "l1" if attempt == 1 else f"l1-attempt{attempt}"


def _cells_done(labdir: Path) -> int:
    staging = checkpoint.find_staging(labdir / "out")
    state = checkpoint.load(staging) if staging else None
    return len(state.cells) if state else 0


def _attempt(labdir: Path, image: guest.GuestImage, guest_image: guest.GuestImage, run_args: list[str],
             extra_env: dict[str, str], attempt: int, boot_timeout_s: float, log: Log,
             placement_spec: str = "none", spent: list[tuple[int, str, float]] | None = None) -> tuple[str, float]:
    """One boot of L1 running the job (resumed from the checkpoint after the first).
    Returns L1's info line and boot time, adds the phases it saw to `spent`; raises L1Lost."""
    env = {**extra_env, "IOBENCH_L1_ATTEMPT": str(attempt)}
    staging = checkpoint.find_staging(labdir / "out")
    if staging is not None:
        env["IOBENCH_RESUME"] = str(staging)
    (labdir / "job.sh").write_text(job_script(inner_argv(run_args, labdir), labdir, guest_image.directory, env))
    with VM(l1_config(image, labdir), logs_dest=labdir / _logs_name(attempt)) as l1:
        log(f"lab: booting L1 (TCG, -cpu {L1_CPU}, {L1_VCPUS} vCPUs, {L1_MEMORY_MB} MiB)"
            + (f", attempt {attempt}" if attempt > 1 else ""))
        try:
            l1.launch(boot_timeout=boot_timeout_s)
        except CellFailed as exc:
            raise L1Lost(f"L1 did not boot: {exc}", "L1 boot") from exc
        log(f"lab: L1 ready in {l1.boot_seconds:.1f} s: {l1.ready_line.removeprefix('IOBENCH-INFO lab ')}")
        if placement.parse(placement_spec, "placement").mode != "none":
            _place_l1(l1, labdir / _logs_name(attempt), log)
        watch = labwatch.Watchdog()
        try:
            fired = labdir / FAULT_FIRED
            _follow(l1, watch, log, stall_at=None if fired.exists() else _stall_fault(), on_fault=fired.touch)
        except L1Lost as exc:
            if l1.alive():
                log(f"lab: {exc}; diagnosing L1 before stopping it")
                diagnose(l1, labdir / f"diag-attempt{attempt}", exc)
            raise
        finally:
            if spent is not None:
                spent.extend((attempt, phase, seconds) for phase, seconds in watch.spent)
        return l1.ready_line, l1.boot_seconds


def _place_l1(l1: VM, logs: Path, log: Log) -> None:
    """L1's vCPU threads on distinct host cores (placement auto on the host; its main loop shares what
    is left), read back and kept in raw/lab/<l1 logs>-placement.json."""
    found = placement.vm_threads(l1)
    # Every thread but the vCPUs shares what is left, as QEMU's main loop (L1's I/O threads included).
    threads = {role: tids for role, tids in found.items() if role.startswith("vcpu")}
    threads["qemu-main"] = [t for role, tids in found.items() if not role.startswith("vcpu") for t in tids]
    made = placement.plan(placement.Spec("auto"), "auto", list(threads), placement.host_cpus())
    pinned = placement.pin_all(threads, made)
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "placement.json").write_text(json.dumps({"plan": made.as_dict(), "threads": [asdict(p) for p in pinned]},
                                                    indent=2) + "\n")
    log("lab: L1 placed on the host: " + ", ".join(f"{p.role} {p.read_back}" for p in pinned if p.role.startswith("vcpu"))
        + "; " + "; ".join(made.why))


# Marks, in the lab directory, that the injected stall has fired: it fires once per job, in whichever L1
# reaches its cell first (a real stall may take the first L1 before it gets there).
FAULT_FIRED = ".stall-fault-fired"


def _stall_fault() -> tuple[str, str, str] | None:
    """Test hook: IOBENCH_FAULT=stall-l1:<backend>:<direction> freezes L1's vCPUs (QMP stop) as that
    cell's round-1 traffic starts, once per job, as in the stall where both of L1's vCPUs sleep.
    Returns how that phase's line starts and ends."""
    for fault, where in faults.injected():
        if fault == "stall-l1" and where:
            backend, _, direction = where.partition(":")
            # " vhost/r1" also matches the same cell measured in a later L1 ("vhost/r1-l1attempt2: ...")
            return f"{labwatch.PHASE_MARKER} ", f" {backend}/r1", f" {direction} traffic"
    return None


def _copy_trace_env(release: str, log: Log) -> dict[str, str]:
    """Where the inner run finds the copy-trace module, or why there is none."""
    from iobench.counters import copytrace

    try:
        return {copytrace.MODULE_ENV: str(copytrace.build(release, log))}
    except copytrace.CopyTraceUnavailable as exc:
        log(f"lab: copy trace unavailable: {exc}")
        return {copytrace.NA_ENV: str(exc)}


def _follow(l1: VM, watch: labwatch.Watchdog, log: Log, stall_at: tuple[str, str, str] | None = None,
            on_fault: Callable[[], None] = lambda: None) -> None:
    """Relay the inner run's progress lines until L1 powers off; raise L1Lost when L1 dies or
    stalls (no progress within the phase's budget, or its kernel reports a stuck CPU)."""
    seen = 0
    events: list[dict[str, Any]] = []
    with l1.serial_log.open("rb") as console:
        pending = b""
        while True:
            events += _events(l1)
            pending += console.read()
            *lines, pending = pending.split(b"\n")  # a line still being written: next time, whole
            for raw in lines:
                line = raw.decode(errors="replace").rstrip("\r")
                seen += 1
                watch.line(line)
                if line.startswith(("iobench: ", "IOBENCH-LAB-DONE")):
                    log("lab: " + line.removeprefix("iobench: "))
                if line.startswith("IOBENCH-LAB-DONE"):
                    _wait_poweroff(l1)
                    return
                if stall_at and line.startswith(stall_at[0]) and stall_at[1] in line and line.endswith(stall_at[2]):
                    log("lab: test hook: freezing L1 (QMP stop)")
                    l1.command("stop")
                    on_fault()
                    stall_at = None
            if not l1.alive():
                shutdown = [e.get("data", {}) for e in events + _events(l1) if e.get("event") == "SHUTDOWN"]
                cause = f", QMP SHUTDOWN reason {shutdown[-1].get('reason')}" if shutdown else ""
                raise L1Lost(f"lab VM (L1) stopped before the job finished ({l1.exit_text()}{cause})", watch.phase)
            why = watch.stalled()
            if why:
                raise L1Lost(labwatch.Watchdog.reason(why), watch.phase)
            time.sleep(0.5)


def _events(l1: VM) -> list[dict[str, Any]]:
    """L1's QMP events so far: its SHUTDOWN event says how it ended (guest-reset is a triple fault
    or a reboot under -no-reboot, guest-panic a panic, guest-shutdown a power-off)."""
    if l1.qmp is None:
        return []
    try:
        return l1.qmp.get_events(wait=False)
    except Exception:  # noqa: BLE001 - the connection is gone with L1; the exit status says the rest
        return []


def _wait_poweroff(l1: VM, timeout_s: float = 60.0) -> None:
    """After the job's last line L1 syncs and powers off; a hang there costs nothing measured."""
    deadline = time.monotonic() + timeout_s
    while l1.alive() and time.monotonic() < deadline:
        time.sleep(0.2)


def diagnose(l1: VM, dest: Path, lost: L1Lost) -> dict[str, Any]:
    """Record what explains a stalled L1 before it is killed, into `dest` (raw/lab/diag-attempt<n>/):
    the host threads of L1's QEMU (which vCPU spins, which sleeps: CPU time over 2 s), L1's
    run state and vCPUs over QMP, every vCPU's registers and the instructions at its PC (HMP),
    then an NMI, which L1's kernel turns into a panic with every CPU's backtrace on the console.
    Each step that fails (a QEMU that does not answer) is recorded as such; nothing here raises."""
    dest.mkdir(parents=True, exist_ok=True)
    diag: dict[str, Any] = {"reason": str(lost).splitlines()[0], "phase": lost.phase, "at": time.time()}
    first = proc.thread_states(l1.pid)
    time.sleep(2.0)
    second = proc.thread_states(l1.pid)
    diag["threads"] = [{**t, "cpu_s_in_2s": round(t["cpu_s"] - first.get(tid, t)["cpu_s"], 2)}
                       for tid, t in second.items()]
    if l1.qmp is not None:
        l1.qmp.settimeout(DIAG_QMP_TIMEOUT_S)
    hmp: list[str] = []
    for name, call in (("status", lambda: l1.command("query-status")),
                       ("cpus", lambda: l1.command("query-cpus-fast"))):
        diag[name] = _try(call)
    if isinstance(diag.get("cpus"), list):
        hmp.append("# info registers -a\n" + str(_try(lambda: l1.command("human-monitor-command",
                                                                         **{"command-line": "info registers -a"}))))
        for cpu in diag["cpus"]:
            index = cpu.get("cpu-index", 0)
            for _ in range(2):  # twice: a PC that moves between the two reads is a loop, not a hang
                hmp.append(f"# cpu {index}: x/8i $pc\n" + str(_try(_hmp(l1, "x/8i $pc", index))))
    (dest / "hmp.txt").write_text("\n".join(hmp) + "\n")
    running = isinstance(diag.get("status"), dict) and diag["status"].get("running")
    if running:
        size = l1.serial_log.stat().st_size
        diag["nmi"] = _try(lambda: l1.command("inject-nmi"))
        # The panic ends L1 (-no-reboot) within a second or two; a stalled L1 whose console never moves
        # (measured: a vCPU spinning in the HPET read path with interrupts off) gets NMI_WAIT_S, no more.
        deadline = time.monotonic() + NMI_WAIT_S
        while l1.alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        text = l1.serial_log.read_bytes()[size:].decode(errors="replace")
        diag["nmi_console_lines"] = len(text.splitlines())
        (dest / "nmi-console.log").write_text(text)
    else:
        diag["nmi"] = "not sent: L1's vCPUs are not running (" + str(diag.get("status")) + ")"
    tail = l1.serial_log.read_text(errors="replace").splitlines()[-200:] if l1.serial_log.exists() else []
    (dest / "serial-tail.log").write_text("\n".join(tail) + "\n")
    (dest / "diagnosis.json").write_text(json.dumps(diag, indent=1, default=str) + "\n")
    return diag


def _hmp(l1: VM, command: str, cpu_index: int) -> Callable[[], Any]:
    return lambda: l1.command("human-monitor-command", **{"command-line": command, "cpu-index": cpu_index})


def _try(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - a diagnosis records what failed and goes on
        return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _inner_results(labdir: Path) -> list[Path]:
    """The results directories the inner run published (one, once it finished)."""
    return [p for p in (labdir / "out").glob("*") if p.is_dir() and not p.name.startswith(".")]


def _publish_partial(labdir: Path, out: Path, status: str, interrupted_by: str | None, error: str | None,
                     l1_line: str, l1_boot_s: float, started: float, why: str, lost: list[dict[str, Any]],
                     spent: list[tuple[int, str, float]] | None = None, log: Log | None = None) -> Path:
    """The cells finished before the job was cut short, as an ordinary results directory (its time by
    phase said as a whole run's is: where a cut-short run's time went is what its user asks first)."""
    from iobench import runner

    staging = checkpoint.find_staging(labdir / "out")
    if staging is None or runner.publish_checkpoint(staging, status, interrupted_by, error) is None:
        raise L1Lost(f"the lab job was cut short ({error or interrupted_by}) before it finished any cell")
    return _publish(labdir, out, l1_line, l1_boot_s, time.monotonic() - started, why, lost, spent, log)


def _publish(labdir: Path, out: Path, l1_line: str, l1_boot_s: float, wall_s: float, why: str,
             lost: list[dict[str, Any]], spent: list[tuple[int, str, float]] | None = None,
             log: Log | None = None) -> Path:
    code_file = labdir / "exit-code"
    inner = _inner_results(labdir)
    if not inner:
        code = code_file.read_text().strip() if code_file.exists() else "none"
        tail = "\n".join((labdir / "l1" / "serial.log").read_text(errors="replace").splitlines()[-30:])
        raise L1Lost(f"the inner run left no results (exit code {code}); L1 serial log tail:\n{tail}")
    run_dir = inner[0]
    meta: dict[str, Any] = json.loads((run_dir / "run.json").read_text())
    meta["environment"] = "lab"
    meta["lab"] = {
        "why": why,
        "how": f"L1 under QEMU TCG with -cpu {L1_CPU} (nested SVM), {L1_VCPUS} vCPUs, {L1_MEMORY_MB} MiB; "
               "the benchmark guest runs under L1's KVM; L1 sees only the host paths in `exports`, read-only "
               "over 9p, and writes only to the lab directory",
        "exports": _exports(labdir),
        "l1": _parse_info(l1_line),
        "l1_kernel_args": [*L1_KERNEL_ARGS, *l1_extra_args()],
        "l1_qemu": hostinfo.version_line([os.environ.get(L1_QEMU_ENV) or QEMU_BINARY, "--version"]),
        "l1_tcg": "single-threaded" if os.environ.get(L1_TCG_ENV) == "single" else "multi-threaded",
        "l1_boot_s": round(l1_boot_s, 1),
        "wall_s": round(wall_s, 1),
        # by the host's clock, from one IOBENCH-PHASE line to the next (a traffic window until the next
        # phase, so a VM's shutdown counts in its last window); raw/lab/phases.csv has each phase
        "time_by_phase": labwatch.time_by_kind([(phase, seconds) for _, phase, seconds in spent or []]),
        "inner_exit_code": code_file.read_text().strip() if code_file.exists() else None,
        "failed_l1_attempts": lost,
        "watchdog": {"margin_s": labwatch.MARGIN_S, "startup_budget_s": labwatch.STARTUP_BUDGET_S,
                     "l1_attempts": L1_ATTEMPTS},
        "outer_host": hostinfo.describe(),
    }
    raw = run_dir / "raw" / "lab"
    raw.mkdir(parents=True, exist_ok=True)
    for logs in sorted(labdir.glob("l1*")):
        for name in ("serial.log", "qemu.stderr", "trace.log", "placement.json"):
            if (logs / name).exists():
                shutil.copyfile(logs / name, raw / f"{logs.name}-{name}")
    for diag in sorted(labdir.glob("diag-*")):
        shutil.copytree(diag, raw / diag.name, dirs_exist_ok=True)
    (raw / "job.sh").write_text((labdir / "job.sh").read_text())
    with (raw / "phases.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["l1_attempt", "phase", "kind", "seconds"])
        writer.writerows((a, phase, labwatch.phase_kind(phase), f"{seconds:.2f}") for a, phase, seconds in spent or [])
    if log and meta["lab"]["time_by_phase"]:
        log("lab: where the time went: " + ", ".join(f"{kind} {v['seconds']:.0f} s ({v['count']})"
                                                    for kind, v in meta["lab"]["time_by_phase"].items()))
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    from iobench import report

    report.write_artifacts(run_dir)
    final = out / run_dir.name
    os.rename(run_dir, final)
    return final


def probe_file() -> Path:
    import platform

    return guest.cache_root() / f"lab-probe-{platform.release()}.json"


def usable(log: Log) -> tuple[bool, str]:
    """Whether the lab works on this host: L1 boots with /dev/kvm and /dev/vhost-net inside.
    Cached per host kernel and QEMU version, like the KVM probe."""
    path = probe_file()
    try:
        cached = json.loads(path.read_text())
        if cached.get("qemu") == hostinfo.qemu_version():
            return bool(cached["usable"]), str(cached["reason"]) + " (cached probe)"
    except (OSError, ValueError):
        pass
    log("probing the nested lab: booting L1 once (cached afterwards)")
    checks = doctor(log)
    ok = all(c.ok for c in checks)
    reason = "; ".join(c.detail for c in checks if c.name.startswith("L1"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"usable": ok, "reason": reason, "qemu": hostinfo.qemu_version()}))
    return ok, reason


def doctor(log: Log) -> list[Check]:
    """Boot L1 once with an empty job and report what it found (KVM, vhost-net, CPU)."""
    checks = []
    q = hostinfo.qemu_version()
    checks.append(Check("qemu", q is not None, q or "qemu-system-x86_64 not found"))
    if q is None:
        return checks
    image = guest.build(log=log, spec=LAB)
    checks.append(Check("lab image", True, f"{image.directory} (kernel {image.kernel_release}, "
                                           f"{len(image.manifest['modules'])} modules)"))
    labdir = Path(tempfile.mkdtemp(prefix="iobench-lab-doctor-"))
    try:
        (labdir / "job.sh").write_text("#!/bin/sh\nexit 0\n")
        with VM(l1_config(image, labdir)) as l1:
            try:
                l1.launch(boot_timeout=L1_BOOT_TIMEOUT_S)
            except CellFailed as exc:
                checks.append(Check("L1 boot", False, str(exc).splitlines()[0]))
                return checks
            info = _parse_info(l1.ready_line)
            checks.append(Check("L1 boot", True, f"ready in {l1.boot_seconds:.1f} s, kernel {info.get('kernel')}, "
                                                 f"cpu {info.get('cpu')}"))
            checks.append(Check("L1 kvm", info.get("kvm") == "yes", "/dev/kvm present in L1 (nested SVM)"
                                if info.get("kvm") == "yes" else "no /dev/kvm in L1: kvm_amd did not load"))
            checks.append(Check("L1 vhost", info.get("vhost_net") == "yes", "/dev/vhost-net present in L1"
                                if info.get("vhost_net") == "yes" else "no /dev/vhost-net in L1"))
    finally:
        shutil.rmtree(labdir, ignore_errors=True)
    return checks


def _exports(labdir: Path) -> dict[str, Any]:
    """run.json's record of what L1 could read: the shares and links of exports.txt, the /etc copies."""
    shares, links = [], {}
    for line in (labdir / "exports.txt").read_text().splitlines():
        kind, a, b = (line.split(" ", 2) + ["", ""])[:3]
        if kind == "share":
            shares.append(b)
        elif kind == "link":
            links[a] = b
    etc = sorted(p.name for p in (labdir / "etc").iterdir()) if (labdir / "etc").is_dir() else []
    return {"read_only": shares, "links": links, "etc_copies": etc, "writable": "the lab directory only"}


def _parse_info(line: str) -> dict[str, str]:
    body = line.split("IOBENCH-INFO lab ", 1)[-1].split(";")[0]
    info: dict[str, str] = {}
    key = None
    for token in body.split():
        if "=" in token and not (key == "cpu"):
            key, _, value = token.partition("=")
            info[key] = value
        elif key:
            info[key] += " " + token
    return info
