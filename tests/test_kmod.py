"""Module ordering from real modules of the Debian 6.1 kernel (tests/data/*.ko)."""

from pathlib import Path

import pytest

from iobench import kmod
from iobench.errors import UserError


def test_modinfo_reads_depends_of_a_real_module(data: Path) -> None:
    info = kmod.modinfo((data / "net_failover.ko").read_bytes())
    assert info["depends"] == ["failover"]
    assert kmod.depends((data / "failover.ko").read_bytes()) == []


def test_load_order_puts_dependencies_first(data: Path) -> None:
    index = kmod.index_modules(data)
    assert kmod.load_order(["net_failover"], index) == ["failover", "net_failover"]


def test_missing_module_is_a_clear_error(data: Path) -> None:
    with pytest.raises(UserError, match="no module virtio_net"):
        kmod.load_order(["virtio_net"], kmod.index_modules(data))


def test_built_in_modules_need_no_loading(data: Path, tmp_path: Path) -> None:
    """Debian's 6.12 builds virtio, virtio_ring and virtio_pci in (its modules.builtin, as shipped): asked for,
    they are left out of the load order instead of failing the image; a module neither shipped nor built in
    still fails."""
    (tmp_path / "modules.builtin").write_text("kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n"
                                              "kernel/drivers/virtio/virtio_pci.ko\nkernel/net/core/failover.ko\n")
    builtin = kmod.builtin_modules(tmp_path)
    assert {"virtio", "virtio_ring", "virtio_pci", "failover"} <= builtin
    assert kmod.load_order(["net_failover", "virtio_pci"], kmod.index_modules(data), builtin) == ["net_failover"]
    assert kmod.builtin_modules(tmp_path / "none") == frozenset()
    with pytest.raises(UserError, match="no module virtio_net, and does not build it in"):
        kmod.load_order(["virtio_net"], kmod.index_modules(data), builtin)
