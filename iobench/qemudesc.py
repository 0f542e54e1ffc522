"""What this QEMU says about itself: the properties of a device model and the options of a tap netdev,
for checking a scenario's backend variants before anything runs.

Why from QEMU and not from a table of ours: device properties come and go between QEMU releases
(`packed` arrived in 4.2, `rss` in 5.1) and a typo in a knob must be an error naming the file and the
key, not a VM that refuses to start mid-run or — worse — a knob silently ignored. Device properties
come from `-device <model>,help`; netdev options from the QMP schema (`query-qmp-schema`: the `tap`
branch of `netdev_add`'s arguments), read with qemu.qmp from a QEMU started with `-M none`.
Both are cached per QEMU binary and version (~/.cache/iobench/qemu-describe/).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iobench import hostinfo
from iobench.errors import UserError

TIMEOUT_S = 30.0
_PROPERTY = re.compile(r"^\s+([\w.-]+)=<([^>]+)>", re.M)


@dataclass(frozen=True)
class Description:
    """This QEMU's knobs: device model -> property -> type as QEMU prints it (bool, uint16, str...);
    netdev tap option -> JSON type of the QMP schema (boolean, int, string)."""

    qemu: str
    version: str
    devices: dict[str, dict[str, str]]
    tap_options: dict[str, str]


def parse_device_help(text: str) -> dict[str, str]:
    """`-device <model>,help`: property -> type."""
    return {m[1]: m[2] for m in _PROPERTY.finditer(text)}


def tap_options_from_schema(schema: list[dict[str, Any]]) -> dict[str, str]:
    """The members of the `tap` branch of netdev_add's argument type, with their JSON types."""
    by_name = {e["name"]: e for e in schema}
    args = by_name[by_name["netdev_add"]["arg-type"]]
    (tap,) = [v for v in args.get("variants", []) if v["case"] == "tap"]
    members = by_name[tap["type"]]["members"]
    return {m["name"]: str(by_name.get(m["type"], {}).get("json-type", m["type"])) for m in members}


def _cache_file(qemu: str, version: str) -> Path:
    from iobench import guest

    key = hashlib.sha256(f"{shutil.which(qemu) or qemu}\n{version}".encode()).hexdigest()[:16]
    return guest.cache_root() / "qemu-describe" / f"{key}.json"


def describe(models: tuple[str, ...], qemu: str = "qemu-system-x86_64") -> Description:
    """This QEMU's description for these device models (cached per binary and version)."""
    if shutil.which(qemu) is None:
        raise UserError(f"{qemu} is not installed: apt-get install qemu-system-x86 (or run the README's setup command).")
    version = hostinfo.version_line([qemu, "--version"]) or "unknown version"
    cache = _cache_file(qemu, version)
    known: dict[str, Any] = json.loads(cache.read_text()) if cache.exists() else {"devices": {}}
    changed = False
    for model in models:
        if model not in known["devices"]:
            proc = subprocess.run([qemu, "-device", f"{model},help"], capture_output=True, text=True, check=False,
                                  timeout=TIMEOUT_S)
            props = parse_device_help(proc.stdout)
            if not props:
                raise UserError(f"{qemu} does not know the device model {model!r}: {proc.stderr.strip() or 'no properties'}")
            known["devices"][model] = props
            changed = True
    if "tap_options" not in known:
        known["tap_options"] = tap_options_from_schema(_qmp_schema(qemu))
        changed = True
    if changed:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
        tmp.rename(cache)
    return Description(qemu, version, known["devices"], known["tap_options"])


def _qmp_schema(qemu: str) -> list[dict[str, Any]]:
    """query-qmp-schema of a QEMU with no machine (it starts in a few ms and runs nothing).

    A QEMU that cannot start here (e.g. a build copied away from the modules it loads TCG from) is a
    UserError with QEMU's own last words, not a protocol traceback."""
    from qemu.qmp.legacy import QEMUMonitorProtocol

    with tempfile.TemporaryDirectory(prefix="iobench-qmp-") as tmp:
        sock = str(Path(tmp) / "qmp.sock")
        mon = QEMUMonitorProtocol(sock, server=True)
        with (Path(tmp) / "stderr").open("wb") as err:
            proc = subprocess.Popen([qemu, "-M", "none", "-accel", "tcg", "-nodefaults", "-display", "none",
                                     "-qmp", f"unix:{sock}"], stdout=subprocess.DEVNULL, stderr=err)
        try:
            try:
                mon.accept(timeout=TIMEOUT_S)
                schema = mon.cmd("query-qmp-schema")
            except Exception as exc:
                said = (Path(tmp) / "stderr").read_text(errors="replace").strip().splitlines()
                raise UserError(f"{qemu} did not start here ({said[-1] if said else type(exc).__name__}): "
                                "give a QEMU build that runs on this host with its modules and firmware.") from exc
            finally:
                mon.close()
        finally:
            proc.terminate()  # nothing runs in it: SIGTERM ends it at once
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert isinstance(schema, list)
    return schema


_BOOL = {"on", "off", "true", "false", "yes", "no"}


def check_value(kind: str, value: str) -> str | None:
    """Why `value` cannot be a value of QEMU type `kind` (None when it can)."""
    if kind in ("bool", "boolean"):
        return None if value in _BOOL else "expected true or false"
    if kind.startswith("uint") or kind in ("size",):
        return None if value.isdigit() else "expected a non-negative integer"
    if kind.startswith("int") or kind == "int":
        return None if value.lstrip("-").isdigit() else "expected an integer"
    return None


def check_variants(variants: tuple[Any, ...], origin: str, qemu: str = "qemu-system-x86_64") -> None:
    """Every knob of every variant against the description of the QEMU that will run it (its own `qemu`,
    checked to be a QEMU first, or `qemu`): one error naming the file, the variant and the key
    (UserError, exit 2) before anything starts."""
    from iobench import backends, qemubuilds

    by_binary: dict[str, list[Any]] = {}
    for v in variants:
        by_binary.setdefault(v.qemu or qemu, []).append(v)
    for binary, group in by_binary.items():
        models = tuple(sorted({backends.BACKENDS[v.base].device for v in group}))
        if binary == qemu:
            desc = describe(models, binary)
        else:
            try:  # a variant's own build: a QEMU (-version), and one that starts here (its schema)
                qemubuilds.version(binary)
                desc = describe(models, binary)
            except UserError as exc:
                names = ", ".join(f"[backends.{v.name}]" for v in group)
                raise UserError(f"{origin}: {names} {exc}") from None
        _check_knobs(tuple(group), origin, desc)


def _check_knobs(variants: tuple[Any, ...], origin: str, desc: Description) -> None:
    from iobench import backends

    problems = []
    for v in variants:
        model = backends.BACKENDS[v.base].device
        for section, knobs, known in (("device", v.device, desc.devices[model]), ("netdev", v.netdev, desc.tap_options)):
            for key, value in knobs:
                where = f"[backends.{v.name}] {section}.{key}"
                if key not in known:
                    what = f"{model} has" if section == "device" else "a tap netdev has"
                    lister = f"-device {model},help" if section == "device" else "-netdev"
                    problems.append(f"{where}: {what} no such property in {desc.version} "
                                    f"(`{desc.qemu} {lister}` lists them)")
                elif why := check_value(known[key], value):
                    problems.append(f"{where} = {value!r}: {why} ({known[key]})")
    if problems:
        raise UserError(f"{origin}: " + "; ".join(problems) + ".")
