"""Backend variants: a scenario's [backends.<name>] tables become backends of their own, checked against
this QEMU's own description (the real qemu-system-x86_64: `-device <model>,help` and the QMP schema)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iobench import backends, plots, qemudesc, scenario
from iobench.errors import UserError
from iobench.runner import select_backends

KNOBS = """
[run]
backends = ["virtio", "virtio-packed", "e1000-nomit", "vhost-poll50", "native"]

[backends.virtio-packed]
base = "virtio"
device = { packed = true, rx_queue_size = 1024 }

[backends.e1000-nomit]
base = "e1000"
device = { mitigation = false }

[backends.vhost-poll50]
base = "vhost"
netdev = { poll-us = 50 }
"""


def _load(tmp_path: Path, text: str) -> scenario.Scenario:
    path = tmp_path / "knobs.toml"
    path.write_text(text)
    return scenario.load(path)


def test_variants_are_backends_with_their_bases_datapath_and_their_own_knobs(tmp_path: Path) -> None:
    scn = _load(tmp_path, KNOBS)
    assert [v.name for v in scn.variants] == ["virtio-packed", "e1000-nomit", "vhost-poll50"]
    known = backends.catalog(scn.variants)
    packed, poll = known["virtio-packed"], known["vhost-poll50"]
    assert (packed.base, packed.device, packed.vhost, packed.copy_model) == ("virtio", "virtio-net-pci", False,
                                                                              backends.VIRTIO.copy_model)
    assert backends.nic_args(packed, "tap0") == (
        "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no,vnet_hdr=on,vhost=off",
        "-device", "virtio-net-pci,netdev=n0,romfile=,packed=on,rx_queue_size=1024")
    assert backends.nic_args(poll, "tap0")[1].endswith(",vhost=on,poll-us=50")
    assert backends.nic_args(known["e1000-nomit"], "t")[3] == "e1000,netdev=n0,romfile=,mitigation=off"
    # run.json records every variant's base and knobs
    assert scenario.as_dict(scn)["variants"][0] == {"name": "virtio-packed", "base": "virtio",
                                                   "device": {"packed": "on", "rx_queue_size": "1024"}, "netdev": {},
                                                   "queues": 1, "guest": [], "qemu_args": [], "qemu": "", "kernel": ""}
    # "all" runs the variants too; a vhost variant needs what vhost needs (TCG has no vhost-net)
    chosen, unavailable = select_backends(("all",), "tcg", scn.variants)
    assert [c for c in chosen if c != "vhost-user"] == ["e1000", "virtio", "virtio-packed", "e1000-nomit", "native"]
    assert set(unavailable) - {"vhost-user"} == {"vhost", "vhost-nooffload", "vhost-poll50"}
    assert unavailable["vhost-poll50"] == unavailable["vhost"]


@pytest.mark.parametrize(("text", "message"), [
    ('[backends.virtio]\nbase = "virtio"\n', "not a built-in name"),
    ('[backends.x]\nbase = "ne2k_pci"\n',
     "base = 'ne2k_pci': expected one of e1000, virtio, vhost, vhost-user, vhost-nooffload, e1000e, rtl8139"),
    ('[backends.x]\nbase = "virtio"\nmtu = 9000\n',
     "unknown key 'mtu': allowed are base, device, netdev, queues, guest, qemu_args, qemu, kernel"),
    ('[backends.x]\nbase = "virtio"\nkernel = "linux-image-6.1"\n',
     "kernel = 'linux-image-6.1': expected a Debian kernel release, what follows linux-image- in its package name"),
    ('[backends.x]\nbase = "virtio"\nkernel = 6\n', "kernel = 6: expected a Debian kernel release"),
    ('[backends.x]\nbase = "virtio"\nqemu = 10\n', "qemu = 10: expected the path of a qemu-system-x86_64 binary"),
    ('[backends.x]\nbase = "virtio"\nqemu_args = "-cpu host"\n', "qemu_args = '-cpu host': expected a list of strings"),
    ('[backends.x]\nbase = "virtio"\nnetdev = { vhost = true }\n', "netdev.vhost is set by iobench itself"),
    ('[backends.x]\nbase = "virtio"\ndevice = { netdev = "n1" }\n', "device.netdev is set by iobench itself"),
    ('[backends.x]\nbase = "virtio"\ndevice = { tx = "timer,x=1" }\n', "without commas"),
    ('[run]\nbackends = ["virtio-packd"]\n[backends.virtio-packed]\nbase = "virtio"\n',
     "unknown backend 'virtio-packd': choose from e1000, virtio, vhost, vhost-user, vhost-nooffload, e1000e, rtl8139, "
     "virtio-packed, native or all"),
])
def test_a_bad_variant_is_one_error_naming_file_variant_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        _load(tmp_path, text)
    assert message in str(info.value) and str(tmp_path / "knobs.toml") in str(info.value)
    assert info.value.exit_code == 2


def test_knobs_are_checked_against_this_qemus_own_description(tmp_path: Path) -> None:
    """A typo in a device property, a value of the wrong type and an unknown netdev option are caught
    from QEMU's help and QMP schema, each naming its variant and key; known knobs pass."""
    scn = _load(tmp_path, KNOBS)
    qemudesc.check_variants(scn.variants, scn.source)  # packed, rx_queue_size, mitigation, poll-us: all known
    bad = _load(tmp_path, KNOBS.replace("packed = true", "packd = true").replace("mitigation = false", 'mitigation = "sometimes"')
                .replace("poll-us = 50", "poll-ms = 50"))
    with pytest.raises(UserError) as info:
        qemudesc.check_variants(bad.variants, bad.source)
    text = str(info.value)
    assert "[backends.virtio-packed] device.packd: virtio-net-pci has no such property in QEMU emulator version" in text
    assert "[backends.e1000-nomit] device.mitigation = 'sometimes': expected true or false (bool)" in text
    assert "[backends.vhost-poll50] netdev.poll-ms: a tap netdev has no such property" in text
    assert info.value.exit_code == 2


def test_a_variants_own_qemu_is_checked_before_anything_starts_and_runs_its_vms(tmp_path: Path) -> None:
    """`qemu = PATH`: missing, not executable, or not a QEMU is one sentence naming the variant (exit 2);
    a real build (here the system's, copied to another path) is described on its own, its knobs checked
    against it, and its VMs start it, with -L only for a build that carries its firmware beside it."""
    import shutil

    from iobench import qemubuilds, runner

    def check(qemu: str) -> str:
        scn = _load(tmp_path, f'[backends.other]\nbase = "virtio"\nqemu = "{qemu}"\ndevice = {{ packed = true }}\n')
        with pytest.raises(UserError) as info:
            qemudesc.check_variants(scn.variants, scn.source)
        assert info.value.exit_code == 2 and "[backends.other]" in str(info.value)
        return str(info.value)

    assert "does not exist" in check(str(tmp_path / "nowhere" / "qemu"))
    (tmp_path / "plain").write_text("#!/bin/sh\necho hello\n")
    assert "is not an executable file" in check(str(tmp_path / "plain"))
    (tmp_path / "plain").chmod(0o755)
    assert "is not a QEMU" in check(str(tmp_path / "plain")) and "'hello'" in check(str(tmp_path / "plain"))
    copy = tmp_path / "prefix" / "bin" / "qemu-system-x86_64"
    copy.parent.mkdir(parents=True)
    shutil.copy2(shutil.which("qemu-system-x86_64") or "", copy)
    # QEMU finds its modules relative to its binary: a copy without them does not start (Debian's loads TCG
    # from one), which is said before anything starts; with them beside it, it is the same build elsewhere
    assert "did not start here (qemu-system-x86_64: fatal: could not load module" in check(str(copy))
    (tmp_path / "prefix" / "lib").mkdir()
    (tmp_path / "prefix" / "lib" / "x86_64-linux-gnu").symlink_to("/usr/lib/x86_64-linux-gnu")
    (tmp_path / "prefix" / "share").mkdir()
    scn = _load(tmp_path, f'[backends.other]\nbase = "virtio"\nqemu = "{copy}"\ndevice = {{ packed = true }}\n')
    qemudesc.check_variants(scn.variants, scn.source)
    other = backends.catalog(scn.variants)["other"]
    assert other.qemu == str(copy) and f"QEMU {copy}" in other.summary
    cfg = runner.vm_config(scn, other, "tcg", None, "tap0", "198.18.0.2/30", None)  # type: ignore[arg-type]
    assert cfg.qemu == str(copy) and "-L" not in cfg.extra_args  # no firmware of its own beside it
    (tmp_path / "prefix" / "share" / "qemu").mkdir()  # a build with its own firmware folder
    cfg = runner.vm_config(scn, other, "tcg", None, "tap0", "198.18.0.2/30", None)  # type: ignore[arg-type]
    assert cfg.extra_args[:2] == ("-L", str(tmp_path / "prefix" / "share" / "qemu"))
    assert qemubuilds.record(str(copy))["version"] == qemubuilds.record("qemu-system-x86_64")["version"]


def _other_kernel_release() -> str:
    """A Debian kernel release apt lists here other than the default guest's (bookworm carries several)."""
    import subprocess

    from iobench import debpkg

    default = debpkg.kernel_package().name.removeprefix("linux-image-")
    listed = subprocess.run(["apt-cache", "search", "--names-only", r"^linux-image-[0-9].*-amd64$"],
                            capture_output=True, text=True, check=False).stdout.split()
    others = sorted({w.removeprefix("linux-image-") for w in listed if w.startswith("linux-image-")
                     and not w.endswith(("-dbg", "-unsigned", "-rt-amd64", "-cloud-amd64"))} - {default})
    if not others:
        pytest.skip(f"apt lists no kernel besides the default {default} here (run apt-get update)")
    return others[0]


def test_a_variants_guest_kernel_is_its_own_image_resolved_by_apt_before_anything_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kernel = RELEASE`: the variant's VMs boot an image built on Debian's linux-image-RELEASE (its own
    key, its own modules); a release apt does not know is one sentence before any boot (exit 2); in the lab
    the inner run boots only the images the host built and passed in, by kernel."""
    from iobench import guest, runner

    other = _other_kernel_release()
    scn = _load(tmp_path, f'[run]\nbackends = ["virtio", "virtio-k"]\n[backends.virtio-k]\nbase = "virtio"\n'
                          f'kernel = "{other}"\n')
    variant = backends.catalog(scn.variants)["virtio-k"]
    assert variant.kernel == other and f"guest kernel {other}" in variant.summary
    assert scenario.variant_kernels(scn) == (other,) and scenario.as_dict(scn)["variants"][0]["kernel"] == other
    mine, default = guest.resolve_inputs(kernel_release=other), guest.resolve_inputs()
    kernels = [p.name for p in mine if p.name.startswith("linux-image-")]
    assert kernels == [f"linux-image-{other}"] and f"linux-image-{other}" not in {p.name for p in default}
    assert guest.image_key(mine) != guest.image_key(default)
    # a release apt does not know: one sentence naming it and how to list the others, before any image is built
    bad = _load(tmp_path, '[run]\nbackends = ["virtio-k"]\n[backends.virtio-k]\nbase = "virtio"\n'
                          'kernel = "6.0.0-99-amd64"\n')
    with pytest.raises(UserError) as info:
        runner.variant_images(["virtio-k", "native"], bad, log=lambda _: None)
    assert str(info.value).count(". ") == 0 and "apt knows no package linux-image-6.0.0-99-amd64" in str(info.value)
    assert "apt-cache search" in str(info.value) and info.value.exit_code == 2
    # the lab: the host's images by kernel, nothing built inside L1
    for name, release in (("default", ""), ("other", other)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(f'{{"kernel_file": "vmlinux", "kernel_release": "{release}"}}')
    monkeypatch.setenv(guest.PINNED_ENV, str(tmp_path / "default"))
    monkeypatch.setenv(guest.PINNED_KERNELS_ENV, f"{other}={tmp_path / 'other'}")
    assert guest.build().directory == tmp_path / "default"
    assert guest.build(kernel_release=other).directory == tmp_path / "other"
    with pytest.raises(UserError, match="guest kernel '6.0.0-99-amd64' has no image here"):
        guest.build(kernel_release="6.0.0-99-amd64")


def test_qemus_help_and_schema_are_parsed() -> None:
    props = qemudesc.parse_device_help("virtio-net-pci options:\n  packed=<bool>          - on/off (default: false)\n"
                                       "  rx_queue_size=<uint16> -  (default: 256)\n  bootindex=<int32>\n")
    assert props == {"packed": "bool", "rx_queue_size": "uint16", "bootindex": "int32"}
    desc = qemudesc.describe(("virtio-net-pci",))
    assert desc.tap_options["poll-us"] == "int" and desc.tap_options["queues"] == "int"
    assert desc.devices["virtio-net-pci"]["packed"] == "bool"


def test_figures_keep_each_variant_beside_its_base_in_a_colour_of_its_own() -> None:
    names = ["native", "vhost-poll50", "virtio", "e1000", "virtio-packed", "vhost", "custom"]
    assert plots.backend_order(names) == ["e1000", "virtio", "virtio-packed", "vhost", "vhost-poll50", "custom",
                                          "native"]
    assert plots.colour("virtio") == plots.BACKEND_COLOURS["virtio"]
    assert plots.colour("virtio-packed") in plots.VARIANT_COLOURS
    assert plots.colour("virtio-packed") == plots.colour("virtio-packed")


def test_backends_lists_built_ins_and_variants_with_their_qemu_arguments(tmp_path: Path, capsys) -> None:
    from iobench.cli import main

    path = tmp_path / "knobs.toml"
    path.write_text(KNOBS)
    assert main(["backends", "--scenario", str(path)]) == 0
    out = capsys.readouterr().out
    assert "virtio-packed  (variant of virtio)" in out and "-device virtio-net-pci,netdev=n0,romfile=,packed=on" in out
    assert "e1000  (built-in)" in out


def test_what_the_guest_negotiated_is_decoded_and_checked_against_the_knobs() -> None:
    from iobench import negotiated

    # As guest-init.sh prints it for virtio-net-pci,packed=on under QEMU 7.2 (bits 0.. of `features`)
    bits = ["0"] * 64
    for b in (0, 1, 5, 15, 16, 17, 28, 29, 32, 34):
        bits[b] = "1"
    line = (f"IOBENCH-INFO kernel=6.1.0 driver=virtio_net; IOBENCH-INFO nic features={''.join(bits)} rxqueues=1 "
            "txqueues=1 rings=RX:256,TX:256, offloads=rx-checksumming,tx-checksumming,")
    got = negotiated.parse(line)
    assert got is not None and got.rings == {"RX": 256, "TX": 256} and (got.rx_queues, got.tx_queues) == (1, 1)
    assert got.features is not None and {"RING_PACKED", "RING_EVENT_IDX", "MRG_RXBUF", "VERSION_1"} <= set(got.features)
    assert "rx-checksumming" in got.offloads
    assert negotiated.knobs_not_applied((("packed", "on"), ("rx_queue_size", "256")), got) == []
    assert negotiated.knobs_not_applied((("event_idx", "off"), ("tx_queue_size", "1024"), ("mq", "on")), got) == [
        "event_idx=off: the guest still negotiated VIRTIO_F_RING_EVENT_IDX",
        "tx_queue_size=1024: the guest's TX ring has 256 entries (ethtool -g)",
        "mq=on: the guest did not negotiate VIRTIO_NET_F_MQ"]
    e1000 = negotiated.parse("IOBENCH-INFO nic features=none rxqueues=1 txqueues=1 rings=RX:256,TX:256, offloads=none")
    assert e1000 is not None and e1000.features is None and e1000.offloads == ()
    assert negotiated.parse("IOBENCH-INFO kernel=6.1.0 driver=e1000") is None  # an older guest image


@pytest.mark.slow
def test_variants_run_as_backends_of_their_own_and_an_ignored_knob_is_flagged(guest_image, tmp_path: Path) -> None:
    """Under TCG: virtio, a packed-ring variant and a variant asking for a 1024-entry tx ring, which
    QEMU keeps at 256 for a tap backend: each is a row of its own, the packed variant's guest
    negotiated VIRTIO_F_RING_PACKED (and plain virtio's did not), and the ignored knob is flagged in
    run.json, on the console and in the report."""
    import csv
    import json

    from iobench.cli import main

    path = tmp_path / "knobs.toml"
    path.write_text('[run]\nbackends = ["virtio", "virtio-packed", "virtio-tx1024"]\ndirections = ["tx"]\n'
                    'duration_s = 2\nomit_s = 0\nrepeats = 1\naccel = "tcg"\n'
                    '[backends.virtio-packed]\nbase = "virtio"\ndevice = { packed = true }\n'
                    '[backends.virtio-tx1024]\nbase = "virtio"\ndevice = { tx_queue_size = 1024 }\n')
    out = tmp_path / "results"
    assert main(["run", "--scenario", str(path), "--out", str(out)]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    rows = {r["backend"]: r for r in csv.DictReader((run_dir / "rows.csv").open())}
    assert set(rows) == {"virtio", "virtio-packed", "virtio-tx1024"}
    assert all(float(r["throughput_bps"]) > 0 and float(r["exits_per_packet"]) > 0 for r in rows.values())
    meta = json.loads((run_dir / "run.json").read_text())
    b = meta["backends"]
    assert b["virtio-packed"]["base"] == "virtio" and b["virtio-packed"]["device"] == {"packed": "on"}
    assert "RING_PACKED" in b["virtio-packed"]["negotiated"]["features"]
    assert "RING_PACKED" not in b["virtio"]["negotiated"]["features"]
    assert "knobs_not_applied" not in b["virtio-packed"]
    assert b["virtio-tx1024"]["knobs_not_applied"] == [
        "tx_queue_size=1024: the guest's TX ring has 256 entries (ethtool -g)"]
    report = (run_dir / "report.md").read_text()
    assert "## Knobs that did not take effect" in report and "knob not applied" in report
    cmdline = json.loads((run_dir / "raw/virtio-packed/r1/qemu-cmdline.json").read_text())
    assert "virtio-net-pci,netdev=n0,romfile=,packed=on" in cmdline
    assert (run_dir / "plots/throughput.png").exists()


def test_all_means_the_three_paths_and_the_variants_and_more_can_be_named_beside_it() -> None:
    chosen, _ = select_backends(("all", "e1000e", "rtl8139"), "tcg")
    assert [c for c in chosen if c != "vhost-user"] == ["e1000", "virtio", "e1000e", "rtl8139", "native"]
    assert [c for c in select_backends(("all",), "tcg")[0] if c != "vhost-user"] == ["e1000", "virtio", "native"]


@pytest.mark.slow
def test_the_other_emulated_nics_run_and_their_registers_are_named(guest_image, tmp_path: Path) -> None:
    """e1000e (82574L) and rtl8139 (RTL8139C+) under TCG: the guest binds e1000e and 8139cp, traffic
    flows, and their register accesses count as NIC traps (QEMU regions e1000e-mmio, rtl8139)."""
    import csv
    import json

    from iobench.cli import main

    out = tmp_path / "results"
    assert main(["run", "--accel", "tcg", "--backend", "e1000e", "--backend", "rtl8139", "--direction", "tx",
                 "--duration", "2", "--omit", "0", "--repeats", "1", "--out", str(out)]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    rows = {r["backend"]: r for r in csv.DictReader((run_dir / "rows.csv").open())}
    assert set(rows) == {"e1000e", "rtl8139"}
    for backend, driver in (("e1000e", "e1000e"), ("rtl8139", "8139cp")):
        r = rows[backend]
        assert float(r["throughput_bps"]) > 0 and float(r["traps_nic_per_packet"]) > 0, r
        boot = json.loads((run_dir / f"raw/{backend}/r1/boot-and-idle.json").read_text())
        assert f"driver={driver}" in boot["ready_line"], boot["ready_line"]


def test_multiqueue_and_guest_knobs_set_every_layer(tmp_path: Path) -> None:
    scn = _load(tmp_path, '[guest]\nvcpus = 2\n[workload]\nstreams = 2\n'
                          '[backends.vhost-mq2]\nbase = "vhost"\nqueues = 2\n'
                          '[backends.virtio-bp]\nbase = "virtio"\n'
                          'guest = { sysctl = { "net.core.busy_poll" = 50 }, coalesce = { rx-usecs = 0 } }\n')
    known = backends.catalog(scn.variants)
    mq, bp = known["vhost-mq2"], known["virtio-bp"]
    netdev, device = backends.nic_args(mq, "t")[1], backends.nic_args(mq, "t")[3]
    assert netdev.endswith(",vhost=on,queues=2") and device.endswith(",mq=on,vectors=6")
    assert backends.guest_cmdline(mq) == ("iobench.ethtool=L:combined:2", "iobench.qstats=1")
    assert backends.guest_cmdline(bp) == ("iobench.sysctl=net.core.busy_poll:50", "iobench.ethtool=C:rx-usecs:0")


@pytest.mark.parametrize(("text", "message"), [
    ('[backends.x]\nbase = "vhost"\nqueues = 2\n', "queues = 2 needs as many vCPUs"),
    ('[guest]\nvcpus = 2\n[backends.x]\nbase = "vhost"\nqueues = 2\n', "set [workload] streams to at least 2"),
    ('[backends.x]\nbase = "e1000"\nqueues = 2\n', "multiqueue is a virtio-net feature"),
    ('[backends.x]\nbase = "virtio"\nqueues = 9\n', "queues = 9: expected an integer from 1 to 8"),
    ('[guest]\nvcpus = 2\n[workload]\nstreams = 2\n[backends.x]\nbase = "virtio"\nqueues = 2\ndevice = { mq = true }\n',
     "sets the device's mq and vectors and the tap's queues itself"),
    ('[backends.x]\nbase = "virtio"\nguest = { ethtool = { rx = 1 } }\n',
     "guest.ethtool: allowed are sysctl, coalesce, features, rings, channels"),
    ('[backends.x]\nbase = "virtio"\nguest = { sysctl = { "net.core.busy_poll" = "50 ; reboot" } }\n',
     "guest.sysctl.net.core.busy_poll"),
])
def test_bad_multiqueue_or_guest_knobs_are_errors_before_anything_runs(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        _load(tmp_path, text)
    assert message in str(info.value), str(info.value)


def test_guest_knob_outcomes_and_queue_counters_are_read_from_the_console() -> None:
    from iobench import negotiated

    line = ("IOBENCH-INFO knob sysctl net.core.busy_poll=50: ok; IOBENCH-INFO knob ethtool -C rx-usecs 0: failed: "
            "Cannot set device coalesce parameters: Operation not supported ; IOBENCH-INFO nic features=none "
            "rxqueues=1 txqueues=1 rings=RX:256,TX:256, offloads=none")
    got = negotiated.parse(line)
    assert got is not None and got.knobs == (("sysctl net.core.busy_poll=50", "ok"), (
        "ethtool -C rx-usecs 0", "failed: Cannot set device coalesce parameters: Operation not supported"))
    assert negotiated.knobs_not_applied((), got, queues=2) == [
        "guest ethtool -C rx-usecs 0: failed: Cannot set device coalesce parameters: Operation not supported",
        "queues=2: the guest uses 1 rx and 1 tx queues"]
    console = ("IOBENCH-QSTATS rx_queue_0_packets:100,rx_queue_1_packets:50,tx_queue_0_packets:10,tx_queue_1_packets:0,\n"
               "noise\nIOBENCH-QSTATS rx_queue_0_packets:900,rx_queue_1_packets:1250,tx_queue_0_packets:410,"
               "tx_queue_1_packets:0,\n")
    assert negotiated.queue_deltas(console) == {"rx_queue_0": 800, "rx_queue_1": 1200, "tx_queue_0": 400,
                                                "tx_queue_1": 0}
    assert negotiated.queue_deltas("IOBENCH-QSTATS rx_queue_0_packets:1,\n") == {}


@pytest.mark.slow
def test_two_queue_pairs_both_carry_traffic_and_a_refused_guest_knob_is_flagged(guest_image, tmp_path: Path) -> None:
    """Under TCG with 2 vCPUs: virtio with queues = 2 negotiates MQ, the guest uses 2 queue pairs, and
    host->guest traffic of 16 streams (the tap spreads flows over its queues by hash) arrives on both rx
    queues by the guest driver's own counters; e1000 asked for rx-usecs 0 is flagged: its driver refuses
    `ethtool -C`."""
    import csv
    import json

    from iobench.cli import main

    path = tmp_path / "mq.toml"
    path.write_text('[run]\nbackends = ["virtio-mq2", "e1000-coalesce0"]\ndirections = ["rx"]\nduration_s = 3\n'
                    'omit_s = 0\nrepeats = 1\naccel = "tcg"\n[workload]\nstreams = 16\n[guest]\nvcpus = 2\n'
                    '[backends.virtio-mq2]\nbase = "virtio"\nqueues = 2\n'
                    '[backends.e1000-coalesce0]\nbase = "e1000"\nguest = { coalesce = { rx-usecs = 0 } }\n')
    out = tmp_path / "results"
    assert main(["run", "--scenario", str(path), "--out", str(out)]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    meta = json.loads((run_dir / "run.json").read_text())
    mq = meta["backends"]["virtio-mq2"]
    assert "MQ" in mq["negotiated"]["features"] and mq["negotiated"]["rx_queues"] == 2, mq["negotiated"]
    assert mq["negotiated"]["guest_knobs"] == {"ethtool -L combined 2": "ok"}
    assert "knobs_not_applied" not in mq, mq
    (counts,) = mq["queue_packets"].values()
    assert counts["rx_queue_0"] > 0 and counts["rx_queue_1"] > 0, counts
    cmdline = json.loads((run_dir / "raw/virtio-mq2/r1/qemu-cmdline.json").read_text())
    assert any(a.endswith(",queues=2") for a in cmdline) and any(a.endswith(",mq=on,vectors=6") for a in cmdline)
    (why,) = meta["backends"]["e1000-coalesce0"]["knobs_not_applied"]
    assert why.startswith("guest ethtool -C rx-usecs 0: failed:"), why
    rows = {r["backend"] for r in csv.DictReader((run_dir / "rows.csv").open())}
    assert rows == {"virtio-mq2", "e1000-coalesce0"}
    report = (run_dir / "report.md").read_text()
    assert "## Packets per queue" in report and "rx_queue_1" in report


def test_a_variants_qemu_arguments_go_to_its_vms_only(tmp_path: Path) -> None:
    """A candidate CPU model or -global judged against its base in one job (iobench ab): the variant's
    arguments follow the scenario's on its own VMs' command lines, and its summary names them."""
    from iobench import guest, runner

    scn = _load(tmp_path, '[run]\nbackends = ["virtio", "nopveoi"]\n[guest]\nqemu_args = ["-global", "x.y=1"]\n'
                          '[backends.nopveoi]\nbase = "virtio"\nqemu_args = ["-cpu", "host,kvm-pv-eoi=off"]\n')
    cat = backends.catalog(scn.variants)
    assert "-cpu host,kvm-pv-eoi=off" in cat["nopveoi"].summary
    image = guest.GuestImage(Path("d"), Path("k"), Path("i"), {})
    own = runner.vm_config(scn, cat["nopveoi"], "tcg", image, "tap0", "198.18.0.2/30", None).extra_args
    base = runner.vm_config(scn, cat["virtio"], "tcg", image, "tap0", "198.18.0.2/30", None).extra_args
    assert own == ("-global", "x.y=1", "-cpu", "host,kvm-pv-eoi=off") and base == ("-global", "x.y=1")
    assert scenario.as_dict(scn)["variants"][0]["qemu_args"] == ["-cpu", "host,kvm-pv-eoi=off"]


def test_qemu_fetch_unpacks_another_suites_build_beside_the_systems(tmp_path: Path) -> None:
    """`iobench qemu fetch`: bookworm-backports' qemu-system-x86 with its firmware, through a private apt
    state (the host's apt sources untouched), unpacked under a folder named by its version, reachable by
    the suite's name, a QEMU that starts here with its own firmware; a second fetch reuses the tree."""
    import subprocess

    from iobench import qemubuilds

    sources = sorted(Path("/etc/apt").rglob("*"))
    try:
        binary = qemubuilds.fetch(root=tmp_path)
    except UserError as exc:
        if "check that http://deb.debian.org/debian is reachable" in str(exc):
            pytest.skip(f"Debian's archive is not reachable from here: {exc}")
        raise
    assert binary.is_file() and binary.parent.parent.parent.name.startswith("1_10.")  # the epoch's ':' made '_'
    assert (tmp_path / "bookworm-backports").resolve() == binary.parent.parent.parent
    assert qemubuilds.fetched(root=tmp_path) == tmp_path / "bookworm-backports/usr/bin/qemu-system-x86_64"
    assert "QEMU emulator version 10." in qemubuilds.version(str(qemubuilds.fetched(root=tmp_path)))
    assert qemubuilds.data_args(str(binary)) == ("-L", str(binary.parent.parent / "share/qemu"),
                                                 "-L", str(binary.parent.parent / "share/seabios"))
    assert sorted(Path("/etc/apt").rglob("*")) == sources and not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    proc = subprocess.run([str(binary), "-M", "pc", "-accel", "tcg", "-nodefaults", "-display", "none", "-S",
                           *qemubuilds.data_args(str(binary)), "-qmp", "stdio"], input='{"execute":"qmp_capabilities"}\n'
                          '{"execute":"quit"}\n', capture_output=True, text=True, timeout=60, check=False)
    assert '"major": 10' in proc.stdout and "could not load" not in proc.stderr, proc.stderr
    again = qemubuilds.fetch(root=tmp_path)
    assert again == binary
    with pytest.raises(UserError, match="a Debian suite name"):
        qemubuilds.fetch("bookworm backports; rm", root=tmp_path)
