"""Other QEMU builds beside the system's: what a variant's `qemu = PATH` names, checked, and Debian's
builds of other suites fetched into the cache for an A/B (`iobench qemu fetch`).

Why fetch and unpack instead of installing: the point is to judge two builds on one host in one job
(`iobench ab`), so the system's QEMU must stay what it is. apt does the fetching with a private
state (its own sources file, lists and archive cache under the cache directory), so the host's apt
configuration is neither read for sources nor changed, and the packages are verified against the
suite's signed Release file with Debian's keyring like any other. `dpkg-deb -x` unpacks without root.

A build unpacked this way has its binary in `<root>/usr/bin` and its firmware in
`<root>/usr/share/{qemu,seabios}`; `data_args` points QEMU there with -L, so a QEMU never boots the
other version's option ROMs. Its shared libraries are the host's: a build whose libraries the host
lacks is refused when it is fetched (ldd), not when the run starts.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from iobench import guest, hostinfo
from iobench.errors import UserError

DEFAULT_SUITE = "bookworm-backports"
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# The x86 system emulator, its common files, its firmware and ROMs, and the BIOS it was built against.
PACKAGES = ("qemu-system-x86", "qemu-system-common", "qemu-system-data", "seabios")
VERSION_RE = re.compile(r"QEMU emulator version (\S+)")
DATA_DIRS = ("qemu", "seabios")  # under <prefix>/share: where a build's ROMs and BIOS are
BINARY = Path("usr") / "bin" / "qemu-system-x86_64"  # in an unpacked tree


def fetched(suite: str = DEFAULT_SUITE, root: Path | None = None) -> Path:
    """Where `fetch` leaves the suite's current build: the binary under the suite's link, a path a
    scenario can keep across versions."""
    return (root or guest.cache_root() / "qemu") / suite / BINARY


def version(binary: str) -> str:
    """`binary -version`'s first line, or UserError naming what is wrong with it (one sentence)."""
    path = shutil.which(binary)
    if path is None:
        what = "does not exist" if not os.path.lexists(binary) else "is not an executable file"
        raise UserError(f"qemu = {binary!r} {what}: give the path of a qemu-system-x86_64 binary "
                        "(e.g. one `iobench qemu fetch` unpacked).")
    line = hostinfo.version_line([path, "-version"]) or ""
    if not VERSION_RE.search(line):
        raise UserError(f"qemu = {binary!r} is not a QEMU: `{binary} -version` answered "
                        f"{line or 'nothing'!r}, not 'QEMU emulator version ...'.")
    return line


@functools.cache
def record(binary: str) -> dict[str, str | None]:
    """run.json's record of the QEMU a backend runs on: its resolved path and its version line."""
    return {"binary": shutil.which(binary) or binary, "version": hostinfo.version_line([binary, "-version"])}


def data_args(binary: str) -> tuple[str, ...]:
    """-L for the firmware folders that belong to `binary` (<prefix>/share/qemu and .../seabios beside
    its bin/), so that another build boots its own option ROMs and BIOS, not the system's."""
    prefix = Path(shutil.which(binary) or binary).resolve().parent.parent
    out: list[str] = []
    for name in DATA_DIRS:
        if (prefix / "share" / name).is_dir():
            out += ["-L", str(prefix / "share" / name)]
    return tuple(out)


def _apt_options(state: Path) -> list[str]:
    """apt with only `state`'s sources, lists and archive cache: the host's apt state is not used."""
    return ["-o", "Dir::Etc::sourcelist=/dev/null", "-o", f"Dir::Etc::sourceparts={state / 'sources'}",
            "-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
            "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root"]


def _apt(state: Path, *argv: str, cwd: Path | None = None) -> str:
    proc = subprocess.run([argv[0], *_apt_options(state), *argv[1:]], capture_output=True, text=True,
                          check=False, cwd=cwd)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{' '.join(argv[:2])} for the QEMU build failed ({last}); check that {MIRROR} is "
                        "reachable.")
    return proc.stdout


def fetch(suite: str = DEFAULT_SUITE, root: Path | None = None) -> Path:
    """Debian `suite`'s qemu-system-x86 (and its firmware) unpacked under the cache, in a folder named by
    its version and reachable as `<cache>/qemu/<suite>` (a link); returns its binary.

    Unpacked once per version: a second call finds the tree and only checks it."""
    if not re.fullmatch(r"[a-z]+(-[a-z]+)?", suite):
        raise UserError(f"--suite {suite!r}: a Debian suite name such as bookworm-backports.")
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} is missing: `iobench qemu fetch` needs a Debian or Ubuntu host.")
    base = root or guest.cache_root() / "qemu"
    state = base / f"apt-{suite}"
    for sub in ("sources", "lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "sources" / f"{suite}.sources").write_text(
        f"Types: deb\nURIs: {MIRROR}\nSuites: {suite}\nComponents: main\nSigned-By: {KEYRING}\n")
    _apt(state, "apt-get", "update")
    shown = _apt(state, "apt-cache", "show", "--no-all-versions", "qemu-system-x86")
    match = re.search(r"^Version: (\S+)", shown, re.M)
    if match is None:
        raise UserError(f"{suite} has no qemu-system-x86 for this architecture.")
    tree = base / match[1].replace(":", "_")
    binary = tree / BINARY
    if not binary.exists():
        debs = state / "debs"
        shutil.rmtree(debs, ignore_errors=True)
        debs.mkdir()
        # the suite's version of each: apt-get download picks the candidate, and only this suite is known
        _apt(state, "apt-get", "download", *PACKAGES, cwd=debs)
        partial = tree.with_name(tree.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
        shutil.rmtree(debs)
        partial.rename(tree)  # complete or absent: a fetch cut short leaves only .partial
    link = base / suite  # the suite's current build under a name a scenario can keep (`fetched`)
    if not link.is_symlink() or os.readlink(link) != tree.name:
        tmp = base / f".{suite}.link"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(tree.name)
        tmp.replace(link)
    missing = _missing_libraries(binary)
    if missing:
        raise UserError(f"{binary} needs libraries this host lacks ({', '.join(missing)}): install them "
                        f"from {suite}, or use a build made for this release.")
    version(str(binary))
    return binary


def _missing_libraries(binary: Path) -> list[str]:
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in proc.stdout.splitlines() if "not found" in line]
