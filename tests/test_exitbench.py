"""The tiny VMM on the real /dev/kvm (skips, saying why, only where /dev/kvm is absent)."""

import os
from pathlib import Path

import pytest

from iobench.exitbench import bench, kvmapi, programs


def test_ioctl_numbers_match_the_uapi_header() -> None:
    # values as _IO/_IOR/_IOW expand them in include/uapi/linux/kvm.h on x86-64
    assert kvmapi.KVM_GET_API_VERSION == 0xAE00
    assert kvmapi.KVM_RUN == 0xAE80
    assert kvmapi.KVM_SET_USER_MEMORY_REGION == 0x4020AE46
    assert kvmapi.KVM_GET_REGS == 0x8090AE81 and kvmapi.KVM_SET_SREGS == 0x4138AE84
    assert kvmapi.KVM_IOEVENTFD == 0x4040AE79
    assert kvmapi.KVM_GET_STATS_FD == 0xAECE


def test_assembled_loop_jumps_back_to_its_body() -> None:
    code = programs.assemble(programs.OUT_DX_AL, 7)
    assert code[:3] == b"\xba\x10\x00" and code[3:5] == b"\xb0\x01"
    assert code[5:11] == b"\x66\xb9\x07\x00\x00\x00"
    body_at = 11
    jnz_at = code.index(b"\x75", body_at)
    assert jnz_at + 2 + int.from_bytes(code[jnz_at + 1:jnz_at + 2], "little", signed=True) == body_at
    assert code[-3:] == b"\xe6\xf0\xf4"  # out DONE, al; hlt


def test_assemble_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        programs.assemble(programs.HLT, 0)


@pytest.fixture(scope="module")
def kvm() -> None:
    if not os.path.exists("/dev/kvm"):
        pytest.skip("/dev/kvm is absent on this machine: the tiny VMM needs KVM")


N = 300


def test_pio_user_exits_once_per_operation(kvm: None) -> None:
    row = bench.run(["pio-user"], N, 1, None)[0]
    assert row.userspace_exits == N
    assert row.exits >= N  # KVM's own count agrees (plus the done marker and any host interrupts)
    assert row.exits_per_op >= 1.0


def test_mmio_user_and_hlt_exit_to_userspace(kvm: None) -> None:
    rows = {r.kind: r for r in bench.run(["mmio-user", "hlt"], N, 1, None)}
    assert rows["mmio-user"].userspace_exits == N and rows["mmio-user"].mmio_exits >= N
    assert rows["hlt"].userspace_exits == N and rows["hlt"].halt_exits >= N


@pytest.mark.parametrize("kind", ["pio-eventfd", "mmio-eventfd"])
def test_eventfd_kinds_stay_in_the_kernel(kvm: None, kind: str) -> None:
    row = bench.run([kind], N, 1, None)[0]
    assert row.userspace_exits == 0
    assert row.eventfd_count == N


def test_stats_fd_has_the_exit_counters(kvm: None) -> None:
    fd = kvmapi.preflight()
    vm = kvmapi.VM(fd)
    vcpu = kvmapi.VCPU(vm, 0)
    stats = vcpu.stats()
    try:
        assert {"exits", "io_exits", "mmio_exits", "halt_exits"} <= set(stats.descs)
        assert all(v >= 0 for v in stats.read(("exits", "halt_exits")).values())
    finally:
        stats.close()
        vcpu.close()
        vm.close()
        os.close(fd)


def test_exitbench_command_writes_a_results_dir(kvm: None, tmp_path: Path, capsys) -> None:
    from iobench.cli import main

    assert main(["exitbench", "--iterations", "200", "--repeats", "2", "--out", str(tmp_path)]) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert (run_dir / "rows.csv").read_text().count("\n") == 1 + 2 * 5
    assert (run_dir / "plots/exit-cost.png").stat().st_size > 1000
    assert "pio-eventfd" in capsys.readouterr().out


def test_missing_kvm_is_one_clear_error(tmp_path: Path) -> None:
    from iobench.errors import UserError

    with pytest.raises(UserError, match="is missing"):
        kvmapi.preflight(str(tmp_path / "kvm"))
