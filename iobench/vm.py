"""One QEMU process running the benchmark guest, modelled on qemu.machine.QEMUMachine.

Launch is three steps: build argv and the private runtime dir (QMP socket,
serial log, QEMU log) -> Popen inside the run's namespace -> accept QMP and
wait for the guest's READY marker. Shutdown asks QMP `quit` first and kills
after a grace period; the runtime dir goes in every case. Any launch failure
carries the QEMU command, its exit status and the tails of the serial and QEMU
logs, because "the guest did not boot" is useless without them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from qemu.qmp import ExecInterruptedError
from qemu.qmp.legacy import QEMUMonitorProtocol

from iobench.counters import proc
from iobench.errors import CellFailed, UserError, exit_status
from iobench.guest import ERROR_MARKER, READY_MARKER, GuestImage
from iobench.stale import VM_DIR_PREFIX, hold, release
from iobench.topology import enter_netns

QEMU_BINARY = "qemu-system-x86_64"
QMP_TIMEOUT_S = 30.0
KILL_WAIT_S = 20.0  # SIGKILL -> reaped: a process still there by then is stuck in the kernel


class VMLaunchFailure(CellFailed):
    """QEMU exited, never answered QMP, or the guest never printed READY."""

    def __init__(self, reason: str, argv: list[str], serial_tail: str, qemu_log_tail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.argv = argv
        self.serial_tail = serial_tail
        self.qemu_log_tail = qemu_log_tail

    def __str__(self) -> str:
        parts = [self.reason]
        if self.serial_tail:
            parts.append("serial log tail:\n" + self.serial_tail)
        if self.qemu_log_tail:
            parts.append("QEMU stderr tail:\n" + self.qemu_log_tail)
        return "\n".join(parts)


@dataclass(frozen=True)
class VMConfig:
    """Everything that decides the QEMU command line of one guest."""

    name: str
    accel: str  # "kvm" or "tcg"
    image: GuestImage
    nic_args: tuple[str, ...]
    guest_cidr: str
    memory_mb: int = 256
    vcpus: int = 1
    netns: str | None = None
    extra_args: tuple[str, ...] = ()
    cmdline_extra: tuple[str, ...] = ()
    qemu: str = QEMU_BINARY  # another build only for the lab's L1 A/B studies (lab.L1_QEMU_ENV)
    pass_fds: tuple[int, ...] = ()  # files QEMU inherits under the same numbers (a macvtap's device)


def accel_args(accel: str) -> list[str]:
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    if accel == "tcg":
        return ["-accel", "tcg,thread=multi"]
    if accel == "tcg-single":  # the lab's A/B of single-threaded TCG for L1
        return ["-accel", "tcg,thread=single"]
    raise ValueError(f"unknown accel {accel!r}")


def kernel_cmdline(cfg: VMConfig) -> str:
    # quiet: every console byte costs time under TCG; ipv6 off keeps idle windows quiet.
    parts = ["console=ttyS0", "panic=-1", "quiet", "ipv6.disable=1", "mitigations=off",
             f"iobench.addr={cfg.guest_cidr}", *cfg.cmdline_extra]
    return " ".join(parts)


def build_argv(cfg: VMConfig, rundir: Path) -> list[str]:
    """The exact QEMU command line (saved in raw/ with the results)."""
    return [
        cfg.qemu,
        "-name", f"{cfg.name},debug-threads=on",
        *accel_args(cfg.accel),
        "-m", str(cfg.memory_mb), "-smp", str(cfg.vcpus),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(cfg.image.kernel), "-initrd", str(cfg.image.initrd),
        "-append", kernel_cmdline(cfg),
        "-chardev", f"file,id=ser0,path={rundir / 'serial.log'}", "-serial", "chardev:ser0",
        "-chardev", f"socket,id=qmp0,path={rundir / 'qmp.sock'}", "-mon", "chardev=qmp0,mode=control",
        "-D", str(rundir / "trace.log"),
        "-pidfile", str(rundir / "qemu.pid"),
        *cfg.nic_args,
        *cfg.extra_args,
    ]


def _threads_in_kernel(pid: int) -> str:
    """Each thread's name, state and kernel stack (/proc/<pid>/task/<tid>/stack, root only), on one line."""
    said = []
    for tid, t in sorted(proc.thread_states(pid).items()):
        try:
            frames = Path(f"/proc/{pid}/task/{tid}/stack").read_text().splitlines()[:8]
            stack = " < ".join(ln.split()[-1] for ln in frames) or "(no kernel stack)"
        except OSError as exc:
            stack = f"(stack: {exc.strerror})"
        said.append(f"{tid} {t['comm']} {t['state']}: {stack}")
    return "; ".join(said) or "(no threads left to read)"


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class VM:
    """A running guest. Use as a context manager: `with VM(cfg).launched(timeout) as vm`."""

    cfg: VMConfig
    logs_dest: Path | None = None  # where serial and QEMU logs are kept after shutdown
    rundir: Path = field(init=False)
    argv: list[str] = field(init=False, default_factory=list)
    proc: subprocess.Popen[bytes] | None = field(init=False, default=None)
    qmp: QEMUMonitorProtocol | None = field(init=False, default=None)
    boot_seconds: float = field(init=False, default=0.0)
    ready_line: str = field(init=False, default="")
    # A QMP command got no answer while QEMU runs: its main loop is stuck (seen in the lab: query-stats
    # waiting for a vCPU that never left KVM_RUN). Nothing more is asked of it; the runner boots again.
    wedged: bool = field(init=False, default=False)
    _lock: int | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        # mkdtemp makes the directory 0700: the QMP socket inside is private.
        self.rundir = Path(tempfile.mkdtemp(prefix=f"{VM_DIR_PREFIX}{self.cfg.name}-"))
        self._lock = hold(self.rundir)  # a live iobench owns this dir and its QEMU (iobench clean)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def serial_log(self) -> Path:
        return self.rundir / "serial.log"

    @property
    def qemu_log(self) -> Path:
        return self.rundir / "qemu.stderr"

    @property
    def trace_log(self) -> Path:
        return self.rundir / "trace.log"

    def failure(self, reason: str) -> VMLaunchFailure:
        return VMLaunchFailure(reason, self.argv, _tail(self.serial_log), _tail(self.qemu_log))

    def launch(self, boot_timeout: float) -> None:
        """Start QEMU, accept QMP, wait for READY.

        Raises UserError when QEMU is not installed, VMLaunchFailure for anything
        the guest or QEMU did wrong (with logs attached).
        """
        if shutil.which(self.cfg.qemu) is None:
            raise UserError(f"{self.cfg.qemu} is not installed: apt-get install qemu-system-x86, "
                            "or run the README's setup command.")
        self.argv = build_argv(self.cfg, self.rundir)
        qmp = QEMUMonitorProtocol(str(self.rundir / "qmp.sock"), server=True)
        self.qmp = qmp
        start = time.monotonic()
        ns = self.cfg.netns
        with self.qemu_log.open("wb") as err:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                preexec_fn=(lambda: enter_netns(ns)) if ns else None, pass_fds=self.cfg.pass_fds,
                start_new_session=True,  # Ctrl-C reaches iobench, which then stops QEMU in order
            )
        try:
            # Part of the boot budget: inside the lab, QEMU's first start reads its binary and
            # libraries over 9p under emulation, which alone can take tens of seconds.
            qmp.accept(timeout=boot_timeout)
        except Exception as exc:
            raise self.failure(f"QEMU did not open its QMP socket within {boot_timeout:.0f} s "
                               f"({self.exit_text()})") from exc
        qmp.settimeout(QMP_TIMEOUT_S)  # a QMP command that hangs becomes an error, not a stuck run
        self._wait_ready(max(5.0, boot_timeout - (time.monotonic() - start)))
        self.boot_seconds = time.monotonic() - start

    def exit_text(self) -> str:
        assert self.proc is not None
        code = self.proc.poll()
        return "still running" if code is None else f"qemu exited ({exit_status(code)})"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.serial_log.read_text(errors="replace") if self.serial_log.exists() else ""
            for line in text.splitlines():
                if line.startswith(ERROR_MARKER):
                    raise self.failure(f"guest reported an error: {line}")
            if READY_MARKER in text:
                self.ready_line = "; ".join(ln for ln in text.splitlines() if ln.startswith("IOBENCH-INFO"))
                return
            if not self.alive():
                raise self.failure(f"{self.exit_text()} before the guest was ready")
            time.sleep(0.05)
        raise self.failure(f"guest not READY after {timeout:.0f} s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise VMLaunchFailure if QEMU is gone (e.g. killed mid-traffic)."""
        if not self.alive():
            raise self.failure(self.exit_text())

    def command(self, cmd: str, **args: Any) -> Any:
        """Execute one QMP command and return its 'return' value. A wedged QEMU is not asked again: each
        question would cost another QMP timeout (the window's last counter reads, its sampler)."""
        assert self.qmp is not None
        self.check_alive()
        if self.wedged:
            raise self.failure(f"QEMU's monitor is stuck (an earlier QMP command got no answer): {cmd} not sent")
        try:
            return self.qmp.cmd(cmd, **args)
        except TimeoutError as exc:
            self.wedged = True
            raise self.failure(f"QMP command {cmd} got no answer in {QMP_TIMEOUT_S:.0f} s: QEMU's monitor is "
                               "stuck") from exc
        except (ExecInterruptedError, EOFError, OSError) as exc:
            # The connection went away under the command: QEMU died (a counter is read once a
            # second during traffic, so a death lands mid-command sooner or later). Say how it ended.
            assert self.proc is not None
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            raise self.failure(f"{self.exit_text()} (QMP {cmd} interrupted: {type(exc).__name__})") from exc

    def shutdown(self, grace: float = 5.0) -> None:
        """QMP quit, then SIGKILL after `grace` seconds; always reaps and removes the runtime dir."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    if self.qmp is not None and not self.wedged:
                        self.qmp.settimeout(grace)
                        self.qmp.cmd_obj({"execute": "quit"})
                except Exception:  # noqa: BLE001 - QMP may already be gone; kill below handles it
                    pass
                try:
                    self.proc.wait(timeout=0 if self.wedged else grace)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    try:
                        self.proc.wait(timeout=KILL_WAIT_S)
                    except subprocess.TimeoutExpired:
                        # A process SIGKILL cannot end is in the kernel, uninterruptibly: say where, and go
                        # on (iobench clean finds it later) rather than hang the run on it.
                        print(f"iobench: QEMU {self.proc.pid} still there {KILL_WAIT_S:.0f} s after SIGKILL: "
                              f"{_threads_in_kernel(self.proc.pid)}", file=sys.stderr, flush=True)
        finally:
            try:
                self._keep_logs()  # may fail (a full disk): the runtime dir goes anyway
            finally:
                if self.qmp is not None:
                    try:
                        self.qmp.close()
                    except Exception:  # noqa: BLE001 - closing a dead socket
                        pass
                    self.qmp = None
                shutil.rmtree(self.rundir, ignore_errors=True)
                release(self._lock)
                self._lock = None

    def _keep_logs(self) -> None:
        if self.logs_dest is None:
            return
        self.logs_dest.mkdir(parents=True, exist_ok=True)
        for src, name in ((self.serial_log, "serial.log"), (self.qemu_log, "qemu.stderr"), (self.trace_log, "trace.log")):
            # the -D log only when QEMU wrote something small there (errors, not a window's trace events)
            if src.exists() and (name != "trace.log" or 0 < src.stat().st_size < 4 << 20):
                shutil.copyfile(src, self.logs_dest / name)

    def __enter__(self) -> VM:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()
