"""Errors meant for people.

`UserError` carries one sentence that says what is wrong and what to do; the CLI
prints it to stderr and exits with its code. Everything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A problem the user can fix (missing program, bad option, unavailable backend)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class CellFailed(Exception):
    """One measurement cell could not produce numbers; the run records why and goes on."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP (a closed terminal), turned into an exception so that every
    context manager unwinds."""

    def __init__(self, signum: int = 15) -> None:
        super().__init__(signum)
        self.signum = signum


# The signals that stop a run: Ctrl-C, kill, and a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_status(code: int | None) -> str:
    """How a child process ended, as its failure messages say it (Popen's returncode: None while it
    runs, -N killed by signal N)."""
    if code is None:
        return "still running"
    return f"signal {-code}" if code < 0 else f"status {code}"


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextmanager
def stop_signals_unwind() -> Iterator[None]:
    """Inside: Ctrl-C raises KeyboardInterrupt and SIGTERM/SIGHUP raise Terminated, so every
    context manager (QEMU, L1, namespaces) unwinds; the previous handlers come back after.

    Explicit even for SIGINT: a shell that runs a background job starts it with SIGINT ignored.
    """
    handlers = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: _raise_terminated,
                signal.SIGHUP: _raise_terminated}
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
