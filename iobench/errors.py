"""Errors meant for people.

`UserError` carries one sentence that says what is wrong and what to do; the CLI
prints it to stderr and exits with its code. Everything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


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
