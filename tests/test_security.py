"""Security properties, checked on the real thing: private runtime dirs and QMP sockets
that go away, no shell between iobench and any program it runs, and guest images
built only from .debs whose sha256 is the one apt's signed index gives."""

from __future__ import annotations

import ast
import shutil
import stat
from pathlib import Path

import pytest

from iobench import debpkg, guest
from iobench.vm import VM, VMConfig

SOURCE = Path(__file__).parent.parent / "iobench"


@pytest.mark.slow
def test_runtime_dir_and_qmp_socket_are_private_and_removed(guest_image: guest.GuestImage) -> None:
    cfg = VMConfig(name="security", accel="tcg", image=guest_image, nic_args=(), guest_cidr="198.18.0.2/24",
                   cmdline_extra=("iobench.probe=1",))
    with VM(cfg) as vm:
        vm.launch(boot_timeout=60)
        assert stat.S_IMODE(vm.rundir.stat().st_mode) == 0o700
        sock = vm.rundir / "qmp.sock"
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert sock.stat().st_uid == 0
        rundir = vm.rundir
    assert not rundir.exists()


def test_no_program_is_run_through_a_shell() -> None:
    """Every subprocess call gets an argv list; no shell=True, os.system or os.popen anywhere."""
    offences = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"):
                offences.append(f"{path.name}:{node.lineno} {name}")
            if name.startswith("subprocess."):
                if any(k.arg == "shell" for k in node.keywords):
                    offences.append(f"{path.name}:{node.lineno} shell=")
                if node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
                    offences.append(f"{path.name}:{node.lineno} command given as a string")
    assert offences == []


@pytest.mark.slow
def test_a_tampered_cached_deb_is_never_unpacked(guest_image: guest.GuestImage, tmp_path: Path) -> None:
    """A cached .deb whose bytes differ from apt's sha256 is thrown away and fetched again
    (apt-get download verifies it against the signed index); the image's manifest carries
    each package's sha256."""
    (pkg,) = [p for p in debpkg.library_closure("busybox-static") if p.name == "busybox-static"]
    assert len(pkg.sha256) == 64
    cached = guest.cache_root() / "debs"
    good = debpkg.download([pkg], cached)["busybox-static"]
    dest = tmp_path / "debs"
    dest.mkdir()
    tampered = dest / good.name
    shutil.copyfile(good, tampered)
    with tampered.open("ab") as f:
        f.write(b"\0")
    fetched = debpkg.download([pkg], dest)["busybox-static"]
    assert fetched.read_bytes() == good.read_bytes()
    bad = debpkg.Package(pkg.name, pkg.version, "0" * 64)
    with pytest.raises(Exception, match="refusing to use it"):
        debpkg.download([bad], dest)
    assert all(len(p["sha256"]) == 64 for p in guest_image.manifest["packages"])
