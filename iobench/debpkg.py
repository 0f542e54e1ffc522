"""Debian packages as build inputs: resolve versions, download, unpack.

Why apt and not a mirror URL: `apt-get download` fetches through the host's own
configured sources and verifies checksums against the signed Release files, so
the guest image is built from the same trusted, versioned bits the host uses.
No root is needed to unpack (`dpkg-deb -x`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from iobench.errors import UserError


@dataclass(frozen=True)
class Package:
    """A Debian binary package pinned to one version."""

    name: str
    version: str
    sha256: str = ""  # of the .deb, from apt's index (itself verified against the signed Release file)

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}"


def _apt_cache_show(*names: str) -> dict[str, dict[str, str]]:
    """Control fields of the candidate version of each of `names`, in one apt-cache call
    (each call costs about a second where apt keeps no binary cache).

    Raises UserError when apt knows one of them not (usually: `apt-get update` never ran).
    """
    if shutil.which("apt-cache") is None:
        raise UserError("apt-cache is missing: iobench builds its guest from Debian packages and needs a Debian or Ubuntu host.")
    proc = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", *names],
        capture_output=True, text=True, check=False,
    )
    found = {s["Package"]: s for s in parse_control(proc.stdout) if "Package" in s}
    missing = [n for n in names if n not in found]
    if missing:
        raise UserError(
            f"apt does not know the package {missing[0]!r}: run 'apt-get update' (as root) and try again."
        )
    return found


def parse_control(text: str) -> list[dict[str, str]]:
    """Parse RFC 822-style control stanzas (continuation lines joined)."""
    stanzas: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                stanzas.append(fields)
            fields, key = {}, ""
            continue
        if line[0] in " \t" and key:
            fields[key] += "\n" + line.strip()
            continue
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    if fields:
        stanzas.append(fields)
    return stanzas


def dependency_names(depends: str) -> list[str]:
    """Names of a Depends field, taking the first alternative of each `a | b` group."""
    names = []
    for group in depends.split(","):
        first = group.split("|")[0].strip()
        if first:
            names.append(re.split(r"[\s(:]", first, maxsplit=1)[0])
    return names


def candidate(name: str) -> Package:
    """The version apt would install for `name`."""
    return _package(_apt_cache_show(name)[name])


def control_fields(name: str) -> dict[str, str]:
    """The control fields of the version apt would install for `name` (Depends, ...)."""
    return _apt_cache_show(name)[name]


def _package(fields: dict[str, str]) -> Package:
    return Package(fields["Package"], fields["Version"], fields.get("SHA256", ""))


def kernel_package() -> Package:
    """The distribution's generic kernel image package (what linux-image-amd64 depends on)."""
    fields = _apt_cache_show("linux-image-amd64")["linux-image-amd64"]
    for dep in dependency_names(fields.get("Depends", "")):
        if dep.startswith("linux-image-"):
            return candidate(dep)
    raise UserError("linux-image-amd64 does not depend on a linux-image-* package; cannot pick a guest kernel.")


def library_closure(*roots: str) -> list[Package]:
    """`roots` and every `lib*` package they depend on, recursively, one apt call per level.

    Only libraries matter for a static initramfs: the ELF reader later picks the
    files that are really NEEDED out of these packages.
    """
    seen: dict[str, Package] = {}
    level = list(roots)
    while level:
        nxt: set[str] = set()
        for name, fields in _apt_cache_show(*level).items():
            seen[name] = _package(fields)
            deps = dependency_names(fields.get("Depends", "")) + dependency_names(fields.get("Pre-Depends", ""))
            nxt.update(d for d in deps if d.startswith("lib"))
        level = sorted(nxt - set(seen))
    return sorted(seen.values(), key=lambda p: p.name)


def download(packages: list[Package], dest: Path) -> dict[str, Path]:
    """Download the exact versions into `dest` (reusing files already there).

    Every .deb, downloaded now or reused from the cache, must have the sha256 apt's index
    gives for that version: a cached file that does not is deleted and fetched again, and
    a fetched one that does not is an error (nothing unverified is ever unpacked).
    Returns package name -> .deb path. Raises UserError with apt's own message on failure.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for p in packages:
        path = _deb_path(p, dest)
        if path is not None and not _matches(p, path):
            path.unlink()
    missing = [p for p in packages if _deb_path(p, dest) is None]
    if missing:
        proc = subprocess.run(
            ["apt-get", "download", "-q", *[p.spec for p in missing]],
            cwd=dest, capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            msg = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "unknown error"
            raise UserError(f"apt-get download failed ({msg}): check the package sources "
                            "and network access to the Debian mirror.")
    out = {}
    for p in packages:
        path = _deb_path(p, dest)
        if path is None:
            raise UserError(f"apt-get download did not produce {p.spec}.")
        if not _matches(p, path):
            raise UserError(f"{path.name} does not have the sha256 apt's index gives for {p.spec}: refusing to use it.")
        out[p.name] = path
    return out


def _matches(p: Package, path: Path) -> bool:
    """The file's sha256 is apt's (a package apt gave no checksum for cannot be verified: refused)."""
    import hashlib

    if not p.sha256:
        return False
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest() == p.sha256


def _deb_path(p: Package, dest: Path) -> Path | None:
    # apt names files name_version_arch.deb with ':' in the version escaped as %3a.
    version = p.version.replace(":", "%3a")
    matches = sorted(dest.glob(f"{p.name}_{version}_*.deb"))
    return matches[0] if matches else None


def extract(deb: Path, dest: Path) -> None:
    """Unpack a .deb's data into `dest` without installing it."""
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
