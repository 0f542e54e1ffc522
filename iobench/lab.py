"""The nested lab: real KVM exits and real vhost-net on any Linux host.

A first-level VM ("L1") runs under TCG with an emulated AMD CPU (-cpu EPYC), so
its stock Debian kernel gets KVM through nested SVM and vhost-net as modules.
L1 sees the host's root file system read-only over 9p and runs the *same*
iobench code, Python environment, QEMU and guest image in a chroot (no second
copy to drift), with `--accel kvm`; it writes its results into a lab directory
shared writable at the same absolute path. The host then adds the lab's own
description to run.json and publishes the directory like any other run.

Why the whole root read-only: the chroot must find the interpreter, the
installed package (an editable install points into the work tree), QEMU with its
data files and libraries, iperf3 and the image cache at the paths recorded on
the host; sharing them one by one would break whenever one of them moves.
Nothing in L1 can write to the host except the lab directory.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iobench import guest, hostinfo, stale
from iobench.errors import CellFailed, UserError
from iobench.vm import VM, VMConfig

LAB = guest.ImageSpec("lab", ("kvm_amd", "vhost_net", "tun", "veth", "9pnet_virtio", "9p", "virtio_pci"), (),
                      "lab-init.sh")
L1_CPU = "EPYC"
L1_VCPUS = 2
L1_MEMORY_MB = 3072
L1_BOOT_TIMEOUT_S = 120.0
L1_RETRIES = 1
Log = Callable[[str], None]


def l1_config(image: guest.GuestImage, labdir: Path) -> VMConfig:
    virtfs = (
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={labdir},mount_tag=labdir,security_model=none,multidevs=remap",
    )
    # -d cpu_reset,guest_errors: when L1 dies silently (a triple fault exits QEMU with status 0
    # under -no-reboot), its -D log says why.
    return VMConfig(name="iobench-lab", accel="tcg", image=image, nic_args=virtfs, guest_cidr="198.18.0.2/24",
                    memory_mb=L1_MEMORY_MB, vcpus=L1_VCPUS, extra_args=("-cpu", L1_CPU, "-d", "cpu_reset,guest_errors"),
                    cmdline_extra=(f"iobench.labdir={labdir}",))


def job_script(argv: list[str], labdir: Path, guest_image: Path, extra_env: dict[str, str] | None = None) -> str:
    """The shell script L1 runs in the chroot: the inner `iobench run` with its environment."""
    env = {
        **(extra_env or {}),
        "HOME": str(Path.home()), "XDG_CACHE_HOME": str(guest.cache_root().parent),
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
        "IOBENCH_ENVIRONMENT": "lab", "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": "/run/iobench-tmp", "MPLCONFIGDIR": "/run/iobench-tmp/mpl",
        "IOBENCH_GUEST_IMAGE": str(guest_image),
        **({"IOBENCH_FAULT": os.environ["IOBENCH_FAULT"]} if os.environ.get("IOBENCH_FAULT") else {}),
    }
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
    return (f"#!/bin/sh\n{exports}\ncd {shlex.quote(str(Path.cwd()))}\n"
            f"{shlex.join(argv)}\necho $? > {shlex.quote(str(labdir / 'exit-code'))}\n")


def inner_argv(run_args: list[str], labdir: Path) -> list[str]:
    """`iobench run` inside L1: the user's options, accel kvm, results into the lab directory."""
    return [sys.executable, "-m", "iobench", "run", *run_args, "--accel", "kvm", "--out", str(labdir / "out")]


def run(run_args: list[str], out: Path, boot_timeout_s: float, log: Log, job_timeout_s: float,
        why: str = "asked for (iobench lab run / --accel lab)", copy_trace: bool = False) -> Path:
    """Boot L1, run the inner matrix, publish its results under `out`. Returns the results dir.

    With `copy_trace`, the copy-trace module is built here for L1's kernel first: L1 has no
    network for the headers and sees the cache read-only.

    Raises UserError when the host lacks QEMU, CellFailed when L1 dies or the job overruns.
    """
    if hostinfo.qemu_version() is None:
        raise UserError("qemu-system-x86_64 is not installed: apt-get install qemu-system-x86 (or run ./setup.sh).")
    guest_image = guest.build(log=log)  # the inner run boots this very image, from the read-only cache
    image = guest.build(log=log, spec=LAB)
    extra_env = _copy_trace_env(image.kernel_release, log) if copy_trace else {}
    out.mkdir(parents=True, exist_ok=True)
    labdir = Path(tempfile.mkdtemp(prefix=".lab-", dir=out.resolve()))
    lock = stale.hold(labdir)  # a live run owns it (iobench clean leaves it alone)
    started = time.monotonic()
    lost: list[dict[str, Any]] = []
    try:
        (labdir / "job.sh").write_text(job_script(inner_argv(run_args, labdir), labdir, guest_image.directory,
                                                  extra_env))
        for attempt in range(1, L1_RETRIES + 2):
            logs = labdir / ("l1" if attempt == 1 else f"l1-attempt{attempt}")
            with VM(l1_config(image, labdir), logs_dest=logs) as l1:
                log(f"lab: booting L1 (TCG, -cpu {L1_CPU}, {L1_VCPUS} vCPUs, {L1_MEMORY_MB} MiB)")
                try:
                    l1.launch(boot_timeout=boot_timeout_s)
                    log(f"lab: L1 ready in {l1.boot_seconds:.1f} s: {l1.ready_line.removeprefix('IOBENCH-INFO lab ')}")
                    _follow(l1, job_timeout_s, log)
                    break
                except CellFailed as exc:
                    # L1 itself can die under nested emulation (LAB.md): the whole job runs again, bounded.
                    if l1.alive() or attempt > L1_RETRIES:
                        raise
                    reason = str(exc).splitlines()[0]
                    lost.append({"attempt": attempt, "reason": reason, "logs": logs.name})
                    log(f"lab: L1 attempt {attempt} lost ({reason}); running the job again")
                    shutil.rmtree(labdir / "out", ignore_errors=True)
        return _publish(labdir, out, l1.ready_line, l1.boot_seconds, time.monotonic() - started, why, lost)
    finally:
        shutil.rmtree(labdir, ignore_errors=True)
        stale.release(lock)


def _copy_trace_env(release: str, log: Log) -> dict[str, str]:
    """Where the inner run finds the copy-trace module, or why there is none."""
    from iobench.counters import copytrace

    try:
        return {copytrace.MODULE_ENV: str(copytrace.build(release, log))}
    except copytrace.CopyTraceUnavailable as exc:
        log(f"lab: copy trace unavailable: {exc}")
        return {copytrace.NA_ENV: str(exc)}


def _follow(l1: VM, timeout_s: float, log: Log) -> None:
    """Relay the inner run's progress lines until L1 powers off; raise if it dies or overruns."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while True:
        text = l1.serial_log.read_text(errors="replace") if l1.serial_log.exists() else ""
        lines = text.splitlines()
        if text and not text.endswith("\n"):
            lines = lines[:-1]  # a line still being written: relay it whole, next time
        for line in lines[seen:]:
            if line.startswith("iobench: ") or line.startswith("IOBENCH-LAB-DONE"):
                log("lab: " + line.removeprefix("iobench: "))
        seen = len(lines)
        if not l1.alive():
            if not any(ln.startswith("IOBENCH-LAB-DONE") for ln in lines):
                raise l1.failure(f"lab VM (L1) stopped before the job finished ({l1.exit_text()})")
            return
        if time.monotonic() > deadline:
            raise l1.failure(f"lab job did not finish within {timeout_s:.0f} s")
        time.sleep(0.5)


def _publish(labdir: Path, out: Path, l1_line: str, l1_boot_s: float, wall_s: float, why: str,
             lost: list[dict[str, Any]]) -> Path:
    code_file = labdir / "exit-code"
    inner = [p for p in (labdir / "out").glob("*") if p.is_dir() and not p.name.startswith(".")]
    if not inner:
        code = code_file.read_text().strip() if code_file.exists() else "none"
        tail = "\n".join((labdir / "l1" / "serial.log").read_text(errors="replace").splitlines()[-30:])
        raise CellFailed(f"the inner run left no results (exit code {code}); L1 serial log tail:\n{tail}")
    run_dir = inner[0]
    meta: dict[str, Any] = json.loads((run_dir / "run.json").read_text())
    meta["environment"] = "lab"
    meta["lab"] = {
        "why": why,
        "how": f"L1 under QEMU TCG with -cpu {L1_CPU} (nested SVM), {L1_VCPUS} vCPUs, {L1_MEMORY_MB} MiB; "
               "the benchmark guest runs under L1's KVM; L1 sees the host root read-only over 9p",
        "l1": _parse_info(l1_line),
        "l1_boot_s": round(l1_boot_s, 1),
        "wall_s": round(wall_s, 1),
        "inner_exit_code": code_file.read_text().strip() if code_file.exists() else None,
        "failed_l1_attempts": lost,
        "outer_host": hostinfo.describe(),
    }
    raw = run_dir / "raw" / "lab"
    raw.mkdir(parents=True, exist_ok=True)
    for logs in sorted(labdir.glob("l1*")):
        for name in ("serial.log", "qemu.stderr", "trace.log"):
            if (logs / name).exists():
                shutil.copyfile(logs / name, raw / f"{logs.name}-{name}")
    (raw / "job.sh").write_text((labdir / "job.sh").read_text())
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


def doctor(log: Log) -> list[Any]:
    """Boot L1 once with an empty job and report what it found (KVM, vhost-net, CPU)."""
    from iobench.doctor import Check

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
