"""One finding of `iobench doctor` (and of `iobench lab doctor`): what was checked on this host,
whether it is fine, and the detail a person needs to act on it. Its own module so that the
parts that probe (doctor, the lab) share the record without importing each other."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
