"""The benchmark guest: a direct-boot kernel and an initramfs, built from Debian packages.

The image is what makes the three backends comparable: the same kernel, the
same drivers and the same iperf3 boot under each NIC. It is cached under
`$XDG_CACHE_HOME/iobench/images/<key>` where the key hashes every input (package
versions, module list, init script, builder version), so a second run reuses it
and a changed input rebuilds it. `manifest.json` records the packages and the
sha256 of every produced file; `verify` checks them before each boot.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from iobench import debpkg, elfdeps, kmod
from iobench.errors import UserError

PINNED_ENV = "IOBENCH_GUEST_IMAGE"  # the lab: the default image's directory, built by the host
PINNED_KERNELS_ENV = "IOBENCH_GUEST_IMAGES"  # the lab: release=directory,... of the variants' guest kernels
BUILDER_VERSION = 2  # 2: the manifest records each .deb's sha256 (verified against apt's index)
READY_MARKER = "IOBENCH-READY"
ERROR_MARKER = "IOBENCH-ERROR"


@dataclass(frozen=True)
class ImageSpec:
    """What goes into an image besides the kernel: modules (dependencies added and
    ordered), dynamically linked programs (from the package of the same name, with
    their libraries), and the init script."""

    name: str
    modules: tuple[str, ...]
    tools: tuple[str, ...]
    init: str  # resource under iobench/data


# The benchmark guest: iperf3 is the stream server, sockperf the request/response server;
# ethtool switches offloads off when a scenario asks (offloads = false).
# The NIC drivers: e1000, virtio-net, and e1000e and 8139cp for the other emulated NICs (QEMU's rtl8139
# reports a C+ revision, which 8139cp drives).
GUEST = ImageSpec("guest", ("e1000", "virtio_net", "virtio_pci", "e1000e", "8139cp"), ("iperf3", "ethtool", "sockperf"),
                  "guest-init.sh")
XZ_MAGIC = b"\xfd7zXZ\x00"


@dataclass(frozen=True)
class GuestImage:
    """A built image: the files QEMU boots and the manifest that describes them."""

    directory: Path
    kernel: Path
    initrd: Path
    manifest: dict

    @property
    def kernel_release(self) -> str:
        return str(self.manifest["kernel_release"])


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "iobench"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def init_script(spec: ImageSpec = GUEST) -> bytes:
    return resources.files("iobench").joinpath(f"data/{spec.init}").read_bytes()


def resolve_inputs(spec: ImageSpec = GUEST, kernel_release: str = "") -> list[debpkg.Package]:
    """The exact package versions this host's apt would use for the image (with `kernel_release`, that
    Debian kernel instead of the distribution's default)."""
    kernel = kernel_package(kernel_release) if kernel_release else debpkg.kernel_package()
    pkgs = {p.name: p for p in debpkg.library_closure(*spec.tools, "busybox-static")}
    pkgs[kernel.name] = kernel
    return sorted(pkgs.values(), key=lambda p: p.name)


def image_key(packages: list[debpkg.Package], spec: ImageSpec = GUEST) -> str:
    h = hashlib.sha256()
    h.update(f"builder={BUILDER_VERSION}\n".encode())
    for p in packages:
        h.update(f"{p.spec}\n".encode())
    h.update(",".join(spec.modules + spec.tools).encode())
    h.update(init_script(spec))
    return h.hexdigest()[:16]


def extract_vmlinux(bzimage: Path, dest: Path) -> bool:
    """Decompress the XZ payload of a bzImage into an ELF `vmlinux`.

    Why: QEMU boots an ELF kernel through its PVH entry point (Debian kernels have
    CONFIG_PVH=y), skipping real-mode setup and in-guest decompression; under TCG
    that cut READY from 11.9 s to 4.9 s. Returns False when there is no XZ
    payload that yields an ELF (then the caller boots the bzImage itself).
    """
    data = bzimage.read_bytes()
    start = data.find(XZ_MAGIC)
    while start != -1:
        try:
            out = lzma.LZMADecompressor().decompress(data[start:])
        except lzma.LZMAError:
            out = b""
        if out.startswith(b"\x7fELF"):
            dest.write_bytes(out)
            return True
        start = data.find(XZ_MAGIC, start + 1)
    return False


def _stage_initramfs(tree: Path, stage: Path, kernel_release: str, spec: ImageSpec) -> list[str]:
    """Lay out the initramfs root in `stage`; returns the module load order."""
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc/iobench", "lib/modules"):
        (stage / d).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tree / "bin/busybox", stage / "bin/busybox")
    (stage / "bin/busybox").chmod(0o755)
    for tool in spec.tools:
        binary = next((tree / d / tool for d in ("usr/bin", "usr/sbin", "bin", "sbin") if (tree / d / tool).exists()), None)
        if binary is None:
            raise UserError(f"the {tool} package has no {tool} program; cannot build the guest image.")
        shutil.copyfile(binary, stage / "bin" / tool)
        (stage / "bin" / tool).chmod(0o755)
        for inside, src in elfdeps.closure(tree, binary).items():
            (stage / inside).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, stage / inside)
            (stage / inside).chmod(0o755)
    index = kmod.index_modules(tree / "lib/modules" / kernel_release / "kernel")
    order = kmod.load_order(list(spec.modules), index, kmod.builtin_modules(tree / "lib/modules" / kernel_release))
    for name in order:
        (stage / "lib/modules" / f"{name}.ko").write_bytes(kmod.module_bytes(index[name]))
    (stage / "etc/iobench/modules.order").write_text("\n".join(order) + "\n")
    (stage / "init").write_bytes(init_script(spec))
    (stage / "init").chmod(0o755)
    return order


def _write_cpio(stage: Path, dest: Path) -> None:
    """newc archive of `stage`, uncompressed: under TCG the kernel's decompression costs boot time."""
    names = sorted(str(p.relative_to(stage)) for p in stage.rglob("*"))
    with dest.open("wb") as out:
        subprocess.run(
            ["cpio", "--quiet", "-o", "-H", "newc", "--reproducible", "-R", "0:0"],
            input="\n".join(names).encode(), cwd=stage, stdout=out, check=True,
        )


def _check_tools() -> None:
    for tool, package in (("apt-get", "apt"), ("dpkg-deb", "dpkg"), ("cpio", "cpio")):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} is missing: apt-get install {package}, or run the README's setup command.")


def kernel_package(release: str) -> debpkg.Package:
    """A variant's guest kernel: Debian's linux-image-<release>, or one sentence saying how to find one."""
    try:
        return debpkg.candidate(f"linux-image-{release}")
    except UserError:
        raise UserError(f"guest kernel {release!r}: apt knows no package linux-image-{release}; name a release "
                        "that `apt-cache search --names-only '^linux-image-[0-9]'` lists (after apt-get update).") from None


def pinned_images() -> dict[str, Path]:
    """The images the lab's host built for the inner run, by guest kernel ("" the default one): L1 boots
    exactly these (and runs no apt: it has no network, and apt is slow under emulation)."""
    out = {"": Path(p)} if (p := os.environ.get(PINNED_ENV)) else {}
    for item in filter(None, os.environ.get(PINNED_KERNELS_ENV, "").split(",")):
        release, _, path = item.partition("=")
        out[release] = Path(path)
    return out


def build(force: bool = False, log: Callable[[str], None] = print, spec: ImageSpec = GUEST,
          kernel_release: str = "") -> GuestImage:
    """Build the image of `spec` (the benchmark guest by default; with `kernel_release`, on that Debian
    kernel), or return the cached one whose inputs match.

    Raises UserError when apt cannot resolve or download a package.
    """
    pinned = pinned_images()
    if pinned and spec is GUEST:
        if kernel_release in pinned:
            return load(pinned[kernel_release])
        raise UserError(f"guest kernel {kernel_release!r} has no image here: the host that started this run "
                        "builds each variant's image before it starts (iobench lab run).")
    _check_tools()
    packages = resolve_inputs(spec, kernel_release)
    key = image_key(packages, spec)
    final = cache_root() / ("images" if spec is GUEST else f"{spec.name}-images") / key
    if final.exists() and not force:
        return load(final)
    log(f"building {spec.name} image {key} from {len(packages)} Debian packages")
    debs = debpkg.download(packages, cache_root() / "debs")
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".build-") as tmp:
        work = Path(tmp)
        tree = work / "tree"
        for path in debs.values():
            debpkg.extract(path, tree)
        kernel_pkg = next(p for p in packages if p.name.startswith("linux-image-"))
        release = kernel_pkg.name.removeprefix("linux-image-")
        out = work / "out"
        out.mkdir()
        bzimage = tree / "boot" / f"vmlinuz-{release}"
        if extract_vmlinux(bzimage, out / "vmlinux"):
            kernel_name, boot_path = "vmlinux", "pvh-elf"
        else:
            shutil.copyfile(bzimage, out / "vmlinuz")
            kernel_name, boot_path = "vmlinuz", "bzimage"
        order = _stage_initramfs(tree, work / "stage", release, spec)
        _write_cpio(work / "stage", out / "initramfs.cpio")
        manifest = {
            "image": spec.name,
            "key": key,
            "builder_version": BUILDER_VERSION,
            "kernel_release": release,
            "kernel_file": kernel_name,
            "boot_path": boot_path,
            "modules": order,
            "packages": [asdict(p) for p in packages],
            "files": {name: sha256(out / name) for name in (kernel_name, "initramfs.cpio")},
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        out.rename(final)
    return load(final)


def load(directory: Path) -> GuestImage:
    manifest = json.loads((directory / "manifest.json").read_text())
    return GuestImage(directory, directory / manifest["kernel_file"], directory / "initramfs.cpio", manifest)


def cached_images() -> list[GuestImage]:
    root = cache_root() / "images"
    if not root.exists():
        return []
    dirs = [d for d in root.iterdir() if (d / "manifest.json").exists()]
    return [load(d) for d in sorted(dirs, key=lambda d: d.stat().st_mtime)]


def verify(image: GuestImage) -> None:
    """Refuse an image whose files no longer match their manifest sha256."""
    for name, digest in image.manifest["files"].items():
        if sha256(image.directory / name) != digest:
            raise UserError(f"guest image file {image.directory / name} does not match its manifest: "
                            "run 'iobench image build --force'.")
