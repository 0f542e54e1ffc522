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
