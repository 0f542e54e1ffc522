import pytest

from iobench import backends
from iobench.errors import UserError
from iobench.runner import select_backends


def test_backends_are_records_with_a_copy_model_for_both_directions() -> None:
    for b in backends.BACKENDS.values():
        assert set(b.copy_model) == set(backends.DIRECTIONS)
        for path in b.copy_model.values():
            assert path.syscall_copies <= path.copies and path.where


def test_nic_args_select_datapath() -> None:
    assert backends.nic_args(backends.E1000, "tap0") == (
        "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no,vnet_hdr=on",
        "-device", "e1000,netdev=n0,romfile=")
    assert "vhost=off" in backends.nic_args(backends.VIRTIO, "tap0")[1]
    assert "vhost=on" in backends.nic_args(backends.VHOST, "tap0")[1]


def test_vhost_is_unavailable_under_tcg() -> None:
    assert backends.unavailable_reason(backends.VHOST, "tcg") is not None
    assert backends.unavailable_reason(backends.E1000, "tcg") is None


def test_all_reports_unavailable_backends_and_keeps_the_rest() -> None:
    chosen, unavailable = select_backends(("all",), "tcg")
    assert [c for c in chosen if c != "vhost-user"] == ["e1000", "virtio", "native"]  # vhost-user: test_vhost_user
    assert "vhost" in unavailable and "vhost-nooffload" in unavailable


def test_explicit_unavailable_backend_is_an_error_with_exit_code_2() -> None:
    with pytest.raises(UserError, match="vhost is unavailable") as info:
        select_backends(("vhost",), "tcg")
    assert info.value.exit_code == 2


def test_unknown_backend_is_an_error() -> None:
    with pytest.raises(UserError, match="unknown backend"):
        select_backends(("ne2k_pci",), "tcg")
