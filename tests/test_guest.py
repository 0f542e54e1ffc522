"""The guest image: built from Debian packages, cached by inputs, verified before boot."""

import shutil
from pathlib import Path

import pytest

from iobench import guest
from iobench.errors import UserError


def test_image_manifest_lists_packages_modules_and_hashes(guest_image: guest.GuestImage) -> None:
    m = guest_image.manifest
    names = {p["name"] for p in m["packages"]}
    assert {"busybox-static", "iperf3", "libc6"} <= names
    assert any(n.startswith("linux-image-") for n in names)
    order = m["modules"]
    assert order.index("virtio_ring") < order.index("virtio") < order.index("virtio_net")
    assert "e1000" in order
    for name, digest in m["files"].items():
        assert guest.sha256(guest_image.directory / name) == digest


def test_second_build_reuses_the_cache(guest_image: guest.GuestImage) -> None:
    messages: list[str] = []
    again = guest.build(log=messages.append)
    assert again.directory == guest_image.directory
    assert messages == []  # nothing was rebuilt


def test_modified_image_is_refused(guest_image: guest.GuestImage, tmp_path: Path) -> None:
    copy = tmp_path / "image"
    shutil.copytree(guest_image.directory, copy)
    with (copy / "initramfs.cpio").open("ab") as f:
        f.write(b"tampered")
    with pytest.raises(UserError, match="does not match its manifest"):
        guest.verify(guest.load(copy))


def test_changed_input_changes_the_key() -> None:
    from iobench.debpkg import Package

    a = guest.image_key([Package("iperf3", "3.12-1")])
    b = guest.image_key([Package("iperf3", "3.12-2")])
    assert a != b


def test_vmlinux_is_extracted_from_the_bzimage(guest_image: guest.GuestImage) -> None:
    if guest_image.manifest["boot_path"] == "pvh-elf":
        assert guest_image.kernel.read_bytes()[:4] == b"\x7fELF"
    else:
        pytest.fail("the Debian kernel carries an XZ payload; vmlinux extraction should have worked")
