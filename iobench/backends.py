"""NIC backends as data: QEMU arguments, requirements and copy model.

Adding a backend (e1000e, vhost-user...) is adding a record to BACKENDS. A *variant* is a backend
made from a built-in one in a scenario (`[backends.<name>]`): the same device and datapath with some
of its knobs set — device properties (`packed`, `event_idx`, `mitigation`, `rx_queue_size`...) and tap
netdev options (`poll-us`, `sndbuf`...). It is a record like the built-ins, its name is the backend
everywhere (rows, summary, figures, compare, the gate), and its copy model is its base's.
The copy model counts, per direction, how often each payload byte is copied on
its way between the guest's buffer and the host's network stack, and how many
of those copies cross the user/kernel boundary in QEMU (the part that QEMU's
rchar/wchar can measure). Directions are named from the guest: `rx` is
host->guest, `tx` is guest->host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from iobench import switch


@dataclass(frozen=True)
class CopyPath:
    """The copies of one direction of one backend (a model, labelled as such in results)."""

    copies: int
    syscall_copies: int
    where: str


@dataclass(frozen=True)
class Backend:
    name: str
    summary: str
    device: str
    vhost: bool
    copy_model: dict[str, CopyPath]
    base: str = ""  # the built-in a variant was made from ("" for a built-in)
    device_props: tuple[tuple[str, str], ...] = ()  # QEMU -device properties, in QEMU's syntax
    netdev_props: tuple[tuple[str, str], ...] = ()  # -netdev tap options
    queues: int = 1  # virtio queue pairs: every layer set at once (nic_args, guest_cmdline)
    guest: tuple[tuple[str, str, str], ...] = ()  # (tool, key, value): ("sysctl", "net.core.busy_poll", "50"),
    #                                                ("ethtool -C", "rx-usecs", "0")...
    # Interrupt moderation that QEMU's model emulates with timers (why interrupts and exits per transaction
    # follow the emulator's speed under TCG: hostspeed.py), and the -device property that turns it off.
    timer_moderation: str = ""
    timer_moderation_off: tuple[str, str] | None = None
    qemu_args: tuple[str, ...] = ()  # a variant's raw QEMU arguments, after the scenario's
    switch: str = ""  # the userspace switch serving the rings ("testpmd": vhost-user; iobench.switch)
    qemu: str = ""  # another QEMU build for this backend's VMs ("": the system's; iobench.qemubuilds)
    kernel: str = ""  # another Debian guest kernel for this backend's VMs (its release; "": the default image's)

    @property
    def needs_vhost_net(self) -> bool:
        return self.vhost


E1000 = Backend(
    name="e1000",
    summary="emulated Intel 82540EM: every driver register access traps into QEMU",
    device="e1000",
    vhost=False,
    copy_model={
        "tx": CopyPath(2, 1, "QEMU hw/net/e1000.c process_tx_desc: pci_dma_read() of the buffer into "
                             "tp->data, then net/tap.c tap_write_packet: writev() to the tap"),
        "rx": CopyPath(2, 1, "QEMU net/tap.c tap_send: read() from the tap into QEMU's buffer, then "
                             "hw/net/e1000.c e1000_receive_iov: pci_dma_write() into guest memory"),
    },
    timer_moderation="hw/net/e1000.c: ITR, RADV and TADV emulated with QEMU timers (mit_timer)",
    timer_moderation_off=("mitigation", "off"),
)

VIRTIO = Backend(
    name="virtio",
    summary="virtio-net with QEMU's userspace datapath (vhost=off): batched rings, one kick per batch",
    device="virtio-net-pci",
    vhost=False,
    copy_model={
        "tx": CopyPath(1, 1, "QEMU hw/net/virtio-net.c virtio_net_flush_tx: qemu_sendv_packet_async() "
                             "-> net/tap.c writev() straight from the guest's mapped buffers"),
        "rx": CopyPath(2, 1, "QEMU net/tap.c tap_send: read() into QEMU's buffer, then "
                             "hw/net/virtio-net.c virtio_net_receive_rcu: iov_from_buf() into the guest's buffers"),
    },
)

VHOST = Backend(
    name="vhost",
    summary="virtio-net with the in-kernel vhost-net datapath (vhost=on): QEMU leaves the data path",
    device="virtio-net-pci",
    vhost=True,
    copy_model={
        "tx": CopyPath(1, 0, "Linux drivers/vhost/net.c handle_tx: tun_sendmsg() copies guest memory into "
                             "an skb (zerocopy only towards a real NIC, never for local delivery)"),
        "rx": CopyPath(1, 0, "Linux drivers/vhost/net.c handle_rx: tun_recvmsg() -> "
                             "skb_copy_datagram_iter() into guest memory"),
    },
)

E1000E = Backend(
    name="e1000e",
    summary="emulated Intel 82574L (PCIe): register traps like e1000, with MSI-X and interrupt throttling",
    device="e1000e",
    vhost=False,
    copy_model={
        "tx": CopyPath(1, 1, "QEMU hw/net/e1000e_core.c e1000e_process_tx_desc: net_tx_pkt_add_raw_fragment() "
                             "maps the guest's buffers (pci_dma_map, QEMU 7.2), net_tx_pkt_send -> tap writev()"),
        "rx": CopyPath(2, 1, "QEMU net/tap.c tap_send: read() into QEMU's buffer, then hw/net/e1000e_core.c "
                             "e1000e_write_packet_to_guest: pci_dma_write() into guest memory"),
    },
    timer_moderation="hw/net/e1000e_core.c: ITR/EITR throttling and RADV/TADV/RDTR/TIDV emulated with QEMU timers",
)

RTL8139 = Backend(
    name="rtl8139",
    summary="emulated Realtek RTL8139C+: a 1990s NIC model, one register write per transmitted frame",
    device="rtl8139",
    vhost=False,
    copy_model={
        "tx": CopyPath(2, 1, "QEMU hw/net/rtl8139.c rtl8139_cplus_transmit_one: pci_dma_read() of each buffer "
                             "into s->cplus_txbuffer, then rtl8139_transfer_frame -> tap write()"),
        "rx": CopyPath(2, 1, "QEMU net/tap.c tap_send: read() into QEMU's buffer, then hw/net/rtl8139.c "
                             "rtl8139_do_receive: pci_dma_write() into the guest's rx buffer"),
    },
    timer_moderation="hw/net/rtl8139.c: the TimerInt interrupt, from QEMU's virtual clock",
)

# A device offered no checksum or segmentation offload either way: what testpmd's vhost PMD and tap PMD
# can carry without computing checksums themselves (switch.py), and vhost-net's like-for-like twin.
NO_OFFLOAD_PROPS = tuple((p, "off") for p in (
    "csum", "guest_csum", "gso", "guest_tso4", "guest_tso6", "guest_ecn", "guest_ufo",
    "host_tso4", "host_tso6", "host_ecn", "host_ufo"))

VHOST_USER = Backend(
    name="vhost-user",
    summary="virtio-net served by a userspace poll-mode switch (DPDK testpmd's vhost PMD) over vhost-user: "
            "the guest's memory is shared, a core polls the rings, the guest's transmit kicks disappear",
    device="virtio-net-pci",
    vhost=False,
    copy_model={
        "tx": CopyPath(2, 1, "DPDK lib/vhost virtio_net.c virtio_dev_tx_split: rte_memcpy() of the guest's buffer "
                             "into an mbuf, then drivers/net/tap rte_eth_tap.c pmd_tx_burst: writev() to the tap "
                             "(the syscall copy is testpmd's, not QEMU's)"),
        "rx": CopyPath(2, 1, "DPDK drivers/net/tap rte_eth_tap.c pmd_rx_burst: readv() from the tap into an mbuf, "
                             "then lib/vhost virtio_net.c copy_mbuf_to_desc: rte_memcpy() into guest memory"),
    },
    device_props=NO_OFFLOAD_PROPS,
    switch="testpmd",
)

VHOST_NOOFFLOAD = replace(
    VHOST, name="vhost-nooffload", base="vhost", device_props=NO_OFFLOAD_PROPS,
    summary="vhost with the device vhost-user gets: no checksum or segmentation offload, per packet like for like")

# `all` runs the paths the product compares (and a scenario's variants, and the built-in variant that
# makes vhost-user's comparison fair); e1000e and rtl8139, the other emulated NICs the guest kernel
# drives, run when named.
BACKENDS: dict[str, Backend] = {b.name: b for b in (E1000, VIRTIO, VHOST, VHOST_USER, VHOST_NOOFFLOAD, E1000E, RTL8139)}
IN_ALL = ("e1000", "virtio", "vhost", "vhost-user", "vhost-nooffload")
DIRECTIONS = ("rx", "tx")
# What iobench itself sets on every NIC: a variant may not change these (the topology and the
# datapath choice depend on them; vhost on/off is the base backend's choice).
RESERVED_DEVICE_PROPS = frozenset({"netdev", "romfile", "id"})
RESERVED_NETDEV_PROPS = frozenset({"id", "ifname", "script", "downscript", "vnet_hdr", "vhost", "fd", "fds",
                                   "vhostfd", "vhostfds", "br", "helper"})


@dataclass(frozen=True)
class Variant:
    """A scenario's `[backends.<name>]`: a built-in backend with some knobs set."""

    name: str
    base: str
    device: tuple[tuple[str, str], ...] = ()
    netdev: tuple[tuple[str, str], ...] = ()
    queues: int = 1
    guest: tuple[tuple[str, str, str], ...] = ()
    qemu_args: tuple[str, ...] = ()  # raw QEMU arguments for this variant's VMs only (a CPU model, a -global)
    qemu: str = ""  # another QEMU binary for this variant's VMs (an A/B of two builds: iobench ab)
    kernel: str = ""  # another Debian guest kernel (a release such as 6.12.100+deb12-amd64): its own image


def qemu_value(value: object) -> str:
    """A TOML value in QEMU's option syntax (true -> on)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def make(variant: Variant) -> Backend:
    """The backend record of a variant (its base's device, datapath and copy model)."""
    base = BACKENDS[variant.base]
    knobs = ", ".join([*(f"{k}={v}" for k, v in (*variant.device, *variant.netdev)),
                       *([f"{variant.queues} queue pairs"] if variant.queues > 1 else []),
                       *(f"guest {tool} {k}={v}" for tool, k, v in variant.guest),
                       *([" ".join(variant.qemu_args)] if variant.qemu_args else []),
                       *([f"QEMU {variant.qemu}"] if variant.qemu else []),
                       *([f"guest kernel {variant.kernel}"] if variant.kernel else [])])
    return replace(base, name=variant.name, summary=f"{base.name} with {knobs}" if knobs else f"{base.name} (a copy)",
                   base=base.name, device_props=(*base.device_props, *variant.device), netdev_props=variant.netdev,
                   queues=variant.queues, guest=variant.guest, qemu_args=variant.qemu_args, qemu=variant.qemu,
                   kernel=variant.kernel)


def catalog(variants: tuple[Variant, ...] = ()) -> dict[str, Backend]:
    """Every backend a scenario can run: the built-ins, then its variants in the file's order."""
    return {**BACKENDS, **{v.name: make(v) for v in variants}}


# QEMU 7.2 under TCG (no irqfd) dies with SIGSEGV in msix_set_vector_notifiers when a vhost-user
# device's driver starts it (virtio_set_status -> vhost_net_start -> virtio_pci_set_guest_notifiers);
# without MSI-X vectors the device interrupts through INTx and QEMU lives. Only there: under KVM the
# irqfd path is taken and MSI-X works.
TCG_SWITCH_DEVICE_PROPS = (("vectors", "0"),)


def nic_args(backend: Backend, tap: str, fd: int | None = None, mac: str | None = None,
             socket: str | None = None, accel: str = "kvm") -> tuple[str, ...]:
    """QEMU -netdev/-device arguments: a vnet_hdr tap, no option ROM (direct kernel boot needs none),
    then a variant's own knobs. With `fd`, the tap is a file QEMU inherits (a macvtap's device) instead
    of one it opens by name; `mac`, the device's address (a macvtap's must be it). A backend with a
    switch connects to the switch's vhost-user `socket` instead (a client that reconnects); under TCG
    without MSI-X (TCG_SWITCH_DEVICE_PROPS)."""
    if backend.switch:
        if socket is None:
            raise ValueError(f"backend {backend.name} needs its switch's socket")
        chardev: tuple[str, ...] = ("-chardev", f"socket,id=vu0,path={socket},reconnect=1")
        netdev = "vhost-user,id=n0,chardev=vu0"
    else:
        chardev = ()
        netdev = (f"tap,id=n0,fd={fd}" if fd is not None  # QEMU asks an inherited tap for its vnet_hdr itself
                  else f"tap,id=n0,ifname={tap},script=no,downscript=no,vnet_hdr=on")
        if backend.device.startswith("virtio"):
            netdev += f",vhost={'on' if backend.vhost else 'off'}"
    netdev += _options(backend.netdev_props)
    device = f"{backend.device},netdev=n0,romfile=" + (f",mac={mac}" if mac else "") + _options(backend.device_props)
    if backend.switch and accel.startswith("tcg"):
        device += _options(TCG_SWITCH_DEVICE_PROPS)
    # N tap queues, the device's mq, and MSI-X vectors: one per queue, config, control (the switch serves one
    # queue pair)
    if backend.queues > 1 and not backend.switch:
        netdev += f",queues={backend.queues}"
        device += f",mq=on,vectors={2 * backend.queues + 2}"
    return (*chardev, "-netdev", netdev, "-device", device)


def _options(pairs: tuple[tuple[str, str], ...]) -> str:
    """(key, value) pairs in QEMU's option syntax, each after a comma."""
    return "".join(f",{k}={v}" for k, v in pairs)


# Guest-side knobs: the tools guest-init.sh applies, and the ethtool option of each.
GUEST_TOOLS = {"sysctl": "", "coalesce": "C", "features": "K", "rings": "G", "channels": "L"}


def guest_cmdline(backend: Backend) -> tuple[str, ...]:
    """Kernel command-line words that make guest-init.sh set the variant's guest side: sysctls, ethtool
    settings, `ethtool -L combined N` for its queues, and per-queue counters printed once a second."""
    sysctl = [f"{k}:{v}" for tool, k, v in backend.guest if tool == "sysctl"]
    ethtool = [f"{GUEST_TOOLS[tool]}:{k}:{v}" for tool, k, v in backend.guest if tool != "sysctl"]
    if backend.queues > 1:
        ethtool.append(f"L:combined:{backend.queues}")
    out = []
    if sysctl:
        out.append("iobench.sysctl=" + ",".join(sysctl))
    if ethtool:
        out.append("iobench.ethtool=" + ",".join(ethtool))
    if backend.queues > 1:
        out.append("iobench.qstats=1")
    return tuple(out)


def shared_memory_args(backend: Backend, memory_mb: int) -> tuple[str, ...]:
    """Guest RAM a switch can map: vhost-user hands the switch the memory's file descriptors, so the RAM
    must be a shared file (memfd: no hugepages needed). Nothing for a backend without a switch."""
    if not backend.switch:
        return ()
    return ("-object", f"memory-backend-memfd,id=mem0,size={memory_mb}M,share=on", "-machine", "memory-backend=mem0")


def unavailable_reason(backend: Backend, accel: str, topologies: tuple[str, ...] = ()) -> str | None:
    """Why `backend` cannot run on this host (None when it can) over the run's `topologies`."""
    if backend.switch:
        if "macvtap" in topologies:
            return ("its switch attaches to a tap, and topology macvtap gives the guest a macvtap device instead: "
                    "run vhost-user over direct or bridge")
        return switch.problem()
    if backend.needs_vhost_net:
        if not os.path.exists("/dev/vhost-net"):
            return "/dev/vhost-net is missing (load the vhost_net module, or use the nested lab)"
        if not os.access("/dev/vhost-net", os.R_OK | os.W_OK):
            return "/dev/vhost-net is not readable and writable by this user"
        if accel != "kvm":
            return "vhost-net needs KVM's ioeventfd/irqfd; this run uses TCG"
    return None
