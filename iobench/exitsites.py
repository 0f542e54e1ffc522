"""Where the exits land: the VM's MMIO and port I/O accesses, MSR accesses and exits to userspace,
counted per window by the kernel (counters.exitreasons arms the hist triggers), mapped here to the
device and register they hit.

Why: an exit reason says *how* the guest left ("npf", "msr", "ioio"), not *what* it touched. The
e1000's cost is the registers its driver touches per packet (TDT per transmit batch, ICR reads and
IMC/IMS writes per interrupt, RDT per refill), virtio's is its notify writes (kicks), and every
interrupt costs an EOI. `perf kvm stat report --event=mmio|ioport` answers this host-wide by
address; iobench names the address per VM, per window, per packet.

Names come from the VM itself wherever it has them: QEMU's own memory map (`info mtree -f`) says
which device region a guest-physical address or port belongs to ("e1000-mmio",
"virtio-pci-notify-virtio-net", "acpi-tmr", ...). Inside a region, registers are named from the
hardware's documented register map (the 8254x's, the local APIC's) — short tables of architectural
offsets, the same ones QEMU's e1000_regs.h and Linux's apicdef.h hold; offsets not in them keep their
number. Access kinds come from the tracepoints' own print formats.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from iobench import topologies

# The local APIC's MMIO page (IA32_APIC_BASE's reset value; Linux never moves it). KVM emulates it
# in the kernel, so QEMU's memory map shows only the MSI window ("apic-msi"/"kvm-apic-msi") there.
LAPIC_BASE = 0xFEE00000
# x2APIC MSRs 0x800-0x8ff are the APIC registers at offset (msr - 0x800) << 4 (SDM vol. 3, 11.12.1.2).
X2APIC_MSRS = range(0x800, 0x900)

# Local APIC register offsets (SDM vol. 3, table 11-1; Linux arch/x86/include/asm/apicdef.h).
LAPIC_REGISTERS = {
    0x20: "ID", 0x30: "VERSION", 0x80: "TPR", 0x90: "APR", 0xA0: "PPR", 0xB0: "EOI", 0xD0: "LDR", 0xE0: "DFR",
    0xF0: "SVR", 0x280: "ESR", 0x2F0: "LVT_CMCI", 0x300: "ICR", 0x310: "ICR2", 0x320: "LVT_TIMER",
    0x330: "LVT_THERMAL", 0x340: "LVT_PMC", 0x350: "LVT_LINT0", 0x360: "LVT_LINT1", 0x370: "LVT_ERROR",
    0x380: "TMICT", 0x390: "TMCCT", 0x3E0: "TDCR", 0x3F0: "SELF_IPI",
    **{0x100 + 0x10 * i: f"ISR{i}" for i in range(8)}, **{0x180 + 0x10 * i: f"TMR{i}" for i in range(8)},
    **{0x200 + 0x10 * i: f"IRR{i}" for i in range(8)},
}
# MSRs a Linux guest writes in steady state besides the x2APIC (SDM vol. 4; KVM's paravirtual MSRs
# from Documentation/virt/kvm/x86/msr.rst).
MSR_NAMES = {
    0x10: "IA32_TSC", 0x1B: "IA32_APIC_BASE", 0x48: "IA32_SPEC_CTRL", 0x49: "IA32_PRED_CMD",
    0x6E0: "IA32_TSC_DEADLINE", 0xC0000100: "FS_BASE", 0xC0000101: "GS_BASE", 0xC0000102: "KERNEL_GS_BASE",
    0xC0000103: "TSC_AUX", 0x4B564D00: "KVM_WALL_CLOCK_NEW", 0x4B564D01: "KVM_SYSTEM_TIME_NEW",
    0x4B564D02: "KVM_ASYNC_PF_EN", 0x4B564D03: "KVM_STEAL_TIME", 0x4B564D04: "KVM_PV_EOI_EN",
    0x4B564D05: "KVM_POLL_CONTROL", 0x4B564D06: "KVM_ASYNC_PF_INT", 0x4B564D07: "KVM_ASYNC_PF_ACK",
}
# The 8254x's register map by offset in its MMIO BAR (Intel 8254x Family SDM, section 13; QEMU's
# hw/net/e1000_regs.h). Ranges of arrays are matched by E1000_ARRAYS below.
E1000_REGISTERS = {
    0x0000: "CTRL", 0x0008: "STATUS", 0x0010: "EECD", 0x0014: "EERD", 0x0018: "CTRL_EXT", 0x0020: "MDIC",
    0x0028: "FCAL", 0x002C: "FCAH", 0x0030: "FCT", 0x0038: "VET", 0x00C0: "ICR", 0x00C4: "ITR", 0x00C8: "ICS",
    0x00D0: "IMS", 0x00D8: "IMC", 0x0100: "RCTL", 0x0170: "FCTTV", 0x0178: "TXCW", 0x0180: "RXCW",
    0x0400: "TCTL", 0x0410: "TIPG", 0x0E00: "LEDCTL", 0x1000: "PBA", 0x2160: "FCRTL", 0x2168: "FCRTH",
    0x2800: "RDBAL", 0x2804: "RDBAH", 0x2808: "RDLEN", 0x2810: "RDH", 0x2818: "RDT", 0x2820: "RDTR",
    0x282C: "RADV", 0x2C00: "RSRPD", 0x3800: "TDBAL", 0x3804: "TDBAH", 0x3808: "TDLEN", 0x3810: "TDH",
    0x3818: "TDT", 0x3820: "TIDV", 0x3828: "TXDCTL", 0x382C: "TADV", 0x3830: "TSPMT", 0x5000: "RXCSUM",
    0x5800: "WUC", 0x5808: "WUFC", 0x5820: "MANC",
}
E1000_ARRAYS = ((0x4000, 0x4100, "statistics"), (0x5200, 0x5400, "MTA"), (0x5400, 0x5480, "RA"),
                (0x5600, 0x5800, "VFTA"))
# The RTL8139C+'s registers by offset in its I/O or MMIO BAR (Realtek's datasheet; QEMU's hw/net/rtl8139.c
# and Linux's 8139cp.c use the same names): in C+ mode a transmit is one TxPoll write.
RTL8139_REGISTERS = {
    0x00: "MAC0", 0x08: "MAR0", 0x10: "TxStatus0", 0x20: "TxAddr0", 0x30: "RxBuf", 0x37: "ChipCmd",
    0x38: "RxBufPtr", 0x3A: "RxBufAddr", 0x3C: "IntrMask", 0x3E: "IntrStatus", 0x40: "TxConfig", 0x44: "RxConfig",
    0x48: "Timer", 0x4C: "RxMissed", 0x50: "Cfg9346", 0x52: "Config1", 0x58: "MediaStatus", 0x5C: "MultiIntr",
    0x60: "TxSummary", 0x62: "BasicModeCtrl", 0x64: "BasicModeStatus", 0xD9: "TxPoll", 0xDA: "RxMaxSize",
    0xE0: "CpCmd", 0xE2: "IntrMitigate", 0xE4: "RxRingAddrLO", 0xE8: "RxRingAddrHI",
}
# virtio-pci's notify region holds one doorbell per virtqueue, `multiplier` bytes apart; QEMU sizes
# the region multiplier x VIRTIO_QUEUE_MAX (1024), so the multiplier is read off the region's size.
VIRTIO_QUEUE_MAX = 1024

_FLAT = re.compile(r"^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, [^)]+\): (\S+)(?: @([0-9a-f]+))?", re.M)


@dataclass(frozen=True)
class Region:
    start: int
    end: int  # inclusive, as QEMU prints it
    name: str
    offset: int = 0  # offset of `start` within the region (an alias or a split region)


@dataclass(frozen=True)
class AddressMap:
    """The guest's MMIO and port address spaces as QEMU lays them out (from `info mtree -f`)."""

    memory: tuple[Region, ...] = ()
    io: tuple[Region, ...] = ()

    def find(self, space: str, address: int) -> Region | None:
        for r in self.memory if space == "mmio" else self.io:
            if r.start <= address <= r.end:
                return r
        return None


def parse_mtree(text: str) -> AddressMap:
    """QEMU's `info mtree -f`: the flat view of address space "memory" and the one of "I/O"."""
    memory: list[Region] = []
    io: list[Region] = []
    for view in re.split(r"(?m)^FlatView #\d+\s*$", text):
        spaces = re.findall(r'(?m)^\s*AS "([^"]+)"', view)
        target = memory if "memory" in spaces else io if "I/O" in spaces else None
        if target is None:
            continue
        target.extend(Region(int(m[1], 16), int(m[2], 16), m[3], int(m[4], 16) if m[4] else 0)
                      for m in _FLAT.finditer(view))
    return AddressMap(tuple(memory), tuple(io))


@dataclass(frozen=True)
class Site:
    """One place the VM's vCPUs touched in a window: `kind` mmio/pio/msr/userspace; `access` as the
    tracepoint names it (read, write, unsatisfied-read; for userspace, KVM_EXIT_* or restart)."""

    kind: str
    access: str
    address: int
    device: str
    register: str
    count: int


def e1000_register(offset: int) -> str:
    if offset in E1000_REGISTERS:
        return E1000_REGISTERS[offset]
    for lo, hi, name in E1000_ARRAYS:
        if lo <= offset < hi:
            return name
    return f"{offset:#06x}"


def lapic_register(offset: int) -> str:
    return LAPIC_REGISTERS.get(offset, f"{offset:#05x}")


def name_mmio(amap: AddressMap, gpa: int) -> tuple[str, str]:
    """(device, register) of a guest-physical address."""
    if LAPIC_BASE <= gpa < LAPIC_BASE + 0x1000:
        return "lapic", lapic_register(gpa - LAPIC_BASE)
    region = amap.find("mmio", gpa)
    if region is None:
        return "unmapped", f"{gpa:#x}"
    offset = gpa - region.start + region.offset
    if region.name in ("e1000-mmio", "e1000e-mmio"):  # the 82574L keeps the 8254x's offsets for these
        return region.name.removesuffix("-mmio"), e1000_register(offset)
    if region.name.startswith("rtl8139"):
        return "rtl8139", RTL8139_REGISTERS.get(offset, f"{offset:#04x}")
    if region.name.startswith("virtio-pci-"):  # virtio-pci-<area>-<device>, e.g. virtio-pci-notify-virtio-net
        area, _, device = region.name.removeprefix("virtio-pci-").partition("-")
        if area == "notify":
            multiplier = max((region.end - region.start + 1) // VIRTIO_QUEUE_MAX, 1)
            vq = offset // multiplier
            return device, f"notify vq{vq}" + {0: " (rx0)", 1: " (tx0)"}.get(vq, "")
        return device, area if area == "isr" else f"{area}+{offset:#x}"
    return region.name, f"+{offset:#x}"


def name_pio(amap: AddressMap, port: int) -> tuple[str, str]:
    region = amap.find("pio", port)
    if region is None:
        return "unmapped", f"{port:#x}"
    offset = port - region.start + region.offset
    if region.name == "rtl8139":  # 8139too drives it through the I/O BAR
        return "rtl8139", RTL8139_REGISTERS.get(offset, f"{offset:#04x}")
    return region.name, f"+{offset:#x}"


def name_msr(index: int) -> tuple[str, str]:
    if index in X2APIC_MSRS:
        return "lapic", lapic_register((index - 0x800) << 4)
    return "msr", MSR_NAMES.get(index, f"{index:#x}")


def sites(hists: dict[str, dict[tuple[int, ...], dict[str, int]]], vcpu_tids: Collection[int], amap: AddressMap,
          access_names: dict[str, dict[int, str]]) -> list[Site]:
    """One window's sites of the VM's vCPU threads, most frequent first. `hists` holds each trigger's
    parsed histogram by kind (keys: mmio (pid, type, gpa), pio (pid, rw, port), msr (pid, write, ecx),
    userspace (pid, reason, errno)); `access_names` the tracepoints' symbol tables (mmio: type, userspace:
    reason)."""
    counts: dict[tuple[str, str, int], int] = {}
    for kind, hist in hists.items():
        for key, vals in hist.items():
            if len(key) != 3 or key[0] not in vcpu_tids:
                continue
            _, a, b = key
            if kind == "mmio":
                access = access_names.get("mmio", {}).get(a, str(a))
            elif kind == "userspace":  # errno < 0: the exit carried no reason (EINTR is a restart)
                errno = b - (1 << 64) if b >= 1 << 63 else b - (1 << 32) if b >= 1 << 31 else b
                access, b = ("restart" if errno == -4 else "error", 0) if errno < 0 else (
                    access_names.get("userspace", {}).get(a, f"KVM_EXIT_{a}"), 0)
            else:
                access = "write" if a else "read"
            ident = (kind, access, b)
            counts[ident] = counts.get(ident, 0) + vals.get("hitcount", 0)
    out = [Site(kind, access, address, *_name(kind, access, address, amap), n)
           for (kind, access, address), n in counts.items()]
    return sorted(out, key=lambda s: (-s.count, s.kind, s.address, s.access))


def _name(kind: str, access: str, address: int, amap: AddressMap) -> tuple[str, str]:
    if kind == "mmio":
        return name_mmio(amap, address)
    if kind == "pio":
        return name_pio(amap, address)
    if kind == "msr":
        return name_msr(address)
    return "kvm", access


def accesses(found: Iterable[Site]) -> Iterable[Site]:
    """The sites that are guest accesses (a read KVM could not satisfy in the kernel is traced twice:
    `unsatisfied-read` when it leaves for userspace, `read` when it completes; count it once)."""
    return (s for s in found if s.kind in ("mmio", "pio", "msr") and s.access != "unsatisfied-read")


@dataclass(frozen=True)
class TopSite:
    device: str
    register: str
    access: str
    kind: str
    per_packet: float
    count: int


K = TypeVar("K")


def _number(v: object) -> float:
    """A CSV or pandas cell as a number: empty and NaN count 0."""
    if v is None or v == "":
        return 0.0
    x = float(str(v))
    return 0.0 if x != x else x


def traffic_sums(records: Iterable[Mapping[str, object]], key: Callable[[Mapping[str, object]], K],
                 fields: Sequence[str]) -> dict[tuple[str, str], tuple[float, dict[K, list[float]]]]:
    """exit_reasons.csv / exit_sites.csv records summed over the traffic windows of every repeat, per
    backend and direction: (the windows' MTU-sized packets, each window once — repeat x attempt x
    workload —, and per `key` the sums of `fields`). The one aggregation the report, the figures and
    `compare` divide by packets. A read KVM hands to QEMU is traced twice (`unsatisfied-read`, then
    `read`): counted once."""
    sums: dict[tuple[str, str], dict[K, list[float]]] = {}
    windows: dict[tuple[str, str], dict[tuple[str, str, str], float]] = {}
    for r in records:
        if r["phase"] != "traffic" or r.get("access") == "unsatisfied-read":
            continue
        cell = (topologies.label(str(r["backend"]), r.get("topology")), str(r["direction"]))
        slot = sums.setdefault(cell, {}).setdefault(key(r), [0.0] * len(fields))
        for i, f in enumerate(fields):
            slot[i] += _number(r[f])
        window = (str(r["repeat"]), str(r["attempt"]), str(r.get("workload", "")))
        windows.setdefault(cell, {})[window] = _number(r["packets"])
    return {cell: (sum(windows[cell].values()), found) for cell, found in sums.items()}


def top_per_packet(records: Iterable[Mapping[str, object]], top: int = 8) -> dict[tuple[str, str], list[TopSite]]:
    """exit_sites.csv's traffic windows summed per backend and direction over every repeat: the `top`
    guest accesses (mmio/pio/msr) and userspace exits per MTU-sized packet, most frequent first."""
    out: dict[tuple[str, str], list[TopSite]] = {}
    ident = lambda r: (str(r["device"]), str(r["register"]), str(r["access"]), str(r["kind"]))  # noqa: E731
    for cell, (pkts, found) in traffic_sums(records, ident, ("count",)).items():
        if not pkts:
            continue
        ranked = sorted(found.items(), key=lambda kv: -kv[1][0])[:top]
        out[cell] = [TopSite(d, reg, acc, kind, n / pkts, int(n)) for (d, reg, acc, kind), (n,) in ranked]
    return out
