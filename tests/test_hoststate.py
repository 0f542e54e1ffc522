"""The host's state in run.json: read from /sys and /proc (a tree laid out as a Linux host shows it, and
this machine's own), missing facts missing with their reason."""

from __future__ import annotations

from pathlib import Path

from iobench import hostinfo, hoststate


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    return root


TUNED_HOST = {  # as a 2-socket AMD host with amd-pstate shows them (values of a tuned benchmark host)
    "sys/devices/system/cpu/online": "0-3",
    **{f"sys/devices/system/cpu/cpu{c}/cpufreq/{k}": v for c in range(4) for k, v in (
        ("scaling_governor", "performance"), ("scaling_driver", "amd-pstate-epp"),
        ("energy_performance_preference", "performance"), ("scaling_min_freq", "3000000"),
        ("scaling_max_freq", "3000000"), ("scaling_cur_freq", "2999912"))},
    "sys/devices/system/cpu/cpufreq/boost": "0",
    "sys/devices/system/cpu/smt/active": "1", "sys/devices/system/cpu/smt/control": "on",
    "sys/devices/system/node/node0/cpulist": "0-1", "sys/devices/system/node/node1/cpulist": "2-3",
    "sys/devices/system/cpu/isolated": "2-3", "sys/devices/system/cpu/nohz_full": "2-3",
    "proc/cmdline": "BOOT_IMAGE=/vmlinuz root=/dev/sda1 isolcpus=2-3 nohz_full=2-3 rcu_nocbs=2-3 mitigations=off",
    "proc/loadavg": "0.02 0.05 0.01 1/312 4242",
    "proc/812/comm": "irqbalance",
    "etc/tuned/active_profile": "cpu-partitioning",
    "sys/kernel/mm/transparent_hugepage/enabled": "always madvise [never]",
    "sys/kernel/mm/transparent_hugepage/defrag": "always defer defer+madvise [madvise] never",
    "sys/module/vhost_net/parameters/experimental_zcopytx": "0",
}


def test_a_tuned_hosts_state_is_read_fact_by_fact(tmp_path: Path) -> None:
    st = hoststate.state(write(tmp_path, TUNED_HOST), flags=["svm"])
    assert st["cpufreq"]["cpus"]["2"] == {"governor": "performance", "driver": "amd-pstate-epp", "epp": "performance",
                                          "min_khz": "3000000", "max_khz": "3000000", "cur_khz": "2999912"}
    assert st["cpufreq"]["boost"] is False and st["smt"] == {"active": True, "control": "on"}
    assert st["numa_nodes"] == {"node0": "0-1", "node1": "2-3"}
    assert st["cmdline_options"] == {"isolcpus": "2-3", "nohz_full": "2-3", "rcu_nocbs": "2-3", "mitigations": "off"}
    assert st["isolated_cpus"] == "2-3" and st["nohz_full_cpus"] == "2-3"
    assert st["irqbalance_running"] is True and st["tuned_profile"] == "cpu-partitioning"
    assert st["thp"] == {"enabled": "never", "defrag": "madvise"}
    assert st["vhost_net_params"] == {"experimental_zcopytx": "0"}
    assert st["virtualization"]["virtualized"] is False and st["missing"] == {}
    assert hoststate.summary(st) == ("governor performance, boost off, SMT on, NUMA nodes 2, isolcpus 2-3, "
                                     "irqbalance running, THP never, bare metal")


def test_what_a_vm_does_not_have_is_missing_with_its_reason(tmp_path: Path) -> None:
    """As this project's machines show it (a KVM guest): no cpufreq, no tuned, vhost_net not loaded."""
    root = write(tmp_path, {"sys/devices/system/cpu/online": "0-1", "sys/devices/system/cpu/smt/active": "0",
                            "sys/devices/system/cpu/smt/control": "notsupported",
                            "sys/devices/system/node/node0/cpulist": "0-1", "proc/cmdline": "console=ttyS0 quiet",
                            "sys/kernel/mm/transparent_hugepage/enabled": "always [madvise] never"})
    st = hoststate.state(root, flags=["svm", "hypervisor"])
    assert st["cpufreq"] is None and "no cpufreq" in st["missing"]["cpufreq"]
    assert set(st["missing"]) == {"cpufreq", "nohz_full_cpus", "tuned_profile", "vhost_net_params"}
    assert st["virtualization"] == {"virtualized": True, "what": None, "container": None, "cpuid_hypervisor": True,
                                    "how": "CPUID hypervisor flag (/proc/cpuinfo)"}
    assert st["irqbalance_running"] is False
    assert hoststate.summary(st).startswith("no cpufreq, SMT off") and "virtualized" in hoststate.summary(st)


def test_this_hosts_state_is_in_every_runs_host_record() -> None:
    st = hostinfo.describe()["state"]
    assert st["cmdline"] == Path("/proc/cmdline").read_text().strip()
    has_cpufreq = Path("/sys/devices/system/cpu/cpu0/cpufreq").is_dir()
    assert (st["cpufreq"] is not None) == has_cpufreq
    assert has_cpufreq or "cpufreq" in st["missing"]
    assert isinstance(st["virtualization"]["virtualized"], bool)


def test_doctor_warns_about_each_thing_that_spoils_a_measurement(tmp_path: Path) -> None:
    from iobench import doctor

    untuned = {**TUNED_HOST, **{f"sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor": "powersave" for c in range(4)},
               "sys/devices/system/cpu/cpufreq/boost": "1", "sys/devices/system/cpu/isolated": "",
               "proc/cmdline": "BOOT_IMAGE=/vmlinuz root=/dev/sda1"}
    warned = {c.name: c.detail for c in doctor.measurement_checks(hoststate.state(write(tmp_path / "u", untuned),
                                                                                   flags=["svm", "hypervisor"]))}
    assert set(warned) == {"host: governor", "host: turbo", "host: irqbalance", "host: isolation", "host: virtualized"}
    assert "powersave" in warned["host: governor"] and "performance" in warned["host: governor"]
    assert all(d.endswith(".") and d.count(". ") <= 1 for d in warned.values())  # one sentence (with its fix)
    tuned = {**TUNED_HOST}
    del tuned["proc/812/comm"]
    (ok,) = doctor.measurement_checks(hoststate.state(write(tmp_path / "t", tuned), flags=["svm"]))
    assert ok.ok and ok.name == "host state"


def test_on_this_machine_doctor_says_it_is_a_vm() -> None:
    """Provoked where the machine allows: this project's machines are KVM guests without isolated CPUs."""
    from iobench import doctor

    st = hostinfo.describe()["state"]
    names = {c.name for c in doctor.measurement_checks(st)}
    assert ("host: virtualized" in names) == bool(st["virtualization"]["virtualized"])
    assert ("host: isolation" in names) == (not st["isolated_cpus"] and "isolcpus" not in st["cmdline_options"])


def test_compare_and_the_gate_block_a_vm_against_bare_metal_and_note_a_changed_governor(tmp_path: Path) -> None:
    from iobench.compare import comparability, environment

    def meta(tree: dict[str, str], flags: list[str]) -> dict:
        st = hoststate.state(write(tmp_path / str(len(flags)) / tree["proc/cmdline"][-4:], tree), flags=flags)
        return {"accel": {"accel": "kvm", "exit_source": "kvm-stats"}, "host": {"kernel": "6.1", "state": st}}

    bare = meta(TUNED_HOST, ["svm"])
    slow = {**TUNED_HOST, "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "powersave", "proc/cmdline": "slow"}
    blocking, notes = comparability(environment(bare), environment(meta(slow, ["svm"])))
    assert not blocking and "governor changed: performance -> performance/powersave" in notes
    vm = meta({**TUNED_HOST, "proc/cmdline": "in-a-vm"}, ["svm", "hypervisor"])
    blocking, _ = comparability(environment(bare), environment(vm))
    assert blocking == ["bare metal against a virtualized host: a VM's CPUs are shared and stolen"]
    old = {"accel": {"accel": "kvm", "exit_source": "kvm-stats"}, "host": {"kernel": "6.1"}}  # before host.state
    assert comparability(environment(old), environment(vm)) == ([], [])
    # a run before placement existed ran unpinned: against none, no note; against auto, one
    pinned = {**vm, "scenario": {"placement": "auto"}}
    assert comparability(environment(old), environment({**vm, "scenario": {"placement": "none"}})) == ([], [])
    assert "placement changed: none -> auto" in comparability(environment(old), environment(pinned))[1]
