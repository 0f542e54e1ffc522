"""The command line: help on every verb, one-sentence errors with exit code 2."""

import subprocess
import sys

import pytest

from iobench.cli import build_parser, main


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["image", "--help"], ["image", "build", "--help"],
                                  ["image", "show", "--help"], ["doctor", "--help"]])
def test_every_verb_has_help(argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "iobench", *argv], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: iobench" in proc.stdout


def test_bad_option_values_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["run", "--accel", "xen"])
    assert info.value.code == 2
    # backend names include a scenario's variants, so they are checked against the scenario
    assert main(["run", "--backend", "rtl8193"]) == 2
    assert ("unknown backend 'rtl8193': choose from e1000, virtio, vhost, vhost-user, vhost-nooffload, e1000e, "
            "rtl8139, native or all" in capsys.readouterr().err)
    assert main(["run", "--duration", "0"]) == 2
    assert "duration_s = 0 is not allowed" in capsys.readouterr().err


def test_explicit_unavailable_backend_is_one_line_and_exit_2(vm_host: None, guest_image, capsys) -> None:
    assert main(["run", "--backend", "vhost", "--accel", "tcg", "--out", "/tmp/iobench-test-never"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("iobench: error: backend vhost is unavailable here:")
    import os
    assert not os.path.exists("/tmp/iobench-test-never")  # nothing created


def test_doctor_reports_kvm_and_vhost(vm_host: None, capsys) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("qemu", "iperf3", "kvm", "accel auto", "vhost-net", "privileges"):
        assert name in out


def test_report_refuses_what_it_cannot_read(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "is not an iobench results directory" in capsys.readouterr().err
    (tmp_path / "run.json").write_text('{"format_version": 1}')
    (tmp_path / "rows.csv").write_text("run_id\n")
    assert main(["report", str(tmp_path)]) == 2
    assert "results format 1" in capsys.readouterr().err


def test_progress_bar_only_on_a_terminal() -> None:
    from iobench.cli import _log, _progress_display

    with _progress_display() as (log, progress):  # pytest's stderr is not a terminal: plain lines for CI logs
        assert log is _log and progress is None


def test_progress_bar_on_a_real_terminal_but_not_on_the_labs_console(monkeypatch) -> None:
    """A pty is a terminal: the bar is on. Inside the lab stderr is L1's serial console (a tty too),
    whose lines the host relays: plain lines there."""
    import os
    import pty
    import sys

    from iobench.cli import _log, _progress_display

    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w") as tty:
            monkeypatch.setattr(sys, "stderr", tty)
            monkeypatch.delenv("IOBENCH_ENVIRONMENT", raising=False)
            with _progress_display() as (log, progress):
                assert progress is not None and log is not _log
            monkeypatch.setenv("IOBENCH_ENVIRONMENT", "lab")
            with _progress_display() as (log, progress):
                assert progress is None and log is _log
    finally:
        os.close(master)


def test_a_format_2_directory_is_upgraded_on_read(tmp_path, data, capsys, monkeypatch) -> None:
    """A real lab run written by iobench's format 2 (before timeline.csv) is read as format 3."""
    import shutil

    from iobench import directories, plots, results, schema

    old = tmp_path / "old"
    shutil.copytree(data / "results-v2-lab", old)
    run = results.load(old)
    assert run.meta["upgraded_from"] == 2 and run.meta["format_version"] == schema.FORMAT_VERSION
    assert run.timeline.empty and set(run.rows["backend"]) == {"e1000", "virtio", "vhost", "native"}
    assert main(["report", str(old)]) == 0
    assert "vhost" in capsys.readouterr().out
    assert main(["plot", str(old)]) == 0
    assert sorted(p.name for p in (old / "plots").iterdir()) == sorted(plots.FIGURES)
    monkeypatch.delenv("IOBENCH_RESULTS", raising=False)
    assert directories.pick(root=tmp_path) == [old]


def test_a_message_size_sweep_gets_figures_per_size_and_against_size(tmp_path, data) -> None:
    """A real TCG sweep (-l 256 and 16384): the bar figures per message size, one figure per
    headline metric against message size, the timeline."""
    import shutil

    from iobench import plots

    sweep = tmp_path / "sweep"
    shutil.copytree(data / "results-v3-tcg-sweep", sweep)
    assert main(["plot", str(sweep)]) == 0
    names = {p.name for p in (sweep / "plots").iterdir()}
    for size in ("256B", "16384B"):
        assert {n.replace(".png", f"-tcp-P1-l{size}.png") for n in plots.FIGURES} <= names
    assert {f"sweep-{c.replace('_', '-')}.png" for c in plots.SWEEP_METRICS} <= names
    assert plots.TIMELINE_FIGURE in names
    assert plots.workloads([{"workload": "b", "message_bytes": 0}, {"workload": "a", "message_bytes": 256}]) == ["a", "b"]


def test_non_root_is_told_which_privileges_are_missing_before_anything_is_created(tmp_path) -> None:
    """Really run as an unprivileged user (setpriv to nobody): one sentence naming the missing
    capabilities and /dev/kvm, exit 2, no results dir, no namespace."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from pyroute2 import netns

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to become an unprivileged user")
    parent = Path(tempfile.mkdtemp(prefix="iobench-nonroot-", dir="/tmp"))
    try:
        parent.chmod(0o777)
        out = parent / "results"
        before = set(netns.listnetns())
        # nobody, holding only CAP_DAC_READ_SEARCH so that it can read the test environment (tox makes
        # .tox 0700): no CAP_SYS_ADMIN, no CAP_NET_ADMIN, no write access to /dev/kvm.
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", sys.executable, "-m",
                               "iobench", "run", "--accel", "kvm", "--out", str(out)],
                              capture_output=True, text=True, timeout=60, cwd=parent)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert "CAP_SYS_ADMIN" in line and "CAP_NET_ADMIN" in line and "/dev/kvm" in line
        assert not out.exists() and set(netns.listnetns()) == before
    finally:
        shutil.rmtree(parent)


def test_missing_capabilities_from_real_status_files(data) -> None:
    from iobench import topology

    assert topology.missing_capabilities((data / "proc/status-root.txt").read_text()) == []
    missing = topology.missing_capabilities((data / "proc/status-nobody.txt").read_text())
    assert [m.split()[0] for m in missing] == ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]


def test_an_unwritable_out_is_one_sentence_and_exit_2(vm_host, guest_image, tmp_path, capsys) -> None:
    """--out on a read-only filesystem: refused before any namespace or VM exists."""
    import subprocess

    from pyroute2 import netns

    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], check=True)
    before = set(netns.listnetns())
    try:
        assert main(["run", "--accel", "tcg", "--backend", "e1000", "--out", str(ro / "results")]) == 2
        err = capsys.readouterr().err
        assert "cannot write results under" in err and "Read-only file system" in err and "--out" in err
        assert set(netns.listnetns()) == before
    finally:
        subprocess.run(["umount", str(ro)], check=True)
