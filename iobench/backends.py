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

BACKENDS: dict[str, Backend] = {b.name: b for b in (E1000, VIRTIO, VHOST)}
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


def qemu_value(value: object) -> str:
    """A TOML value in QEMU's option syntax (true -> on)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def make(variant: Variant) -> Backend:
    """The backend record of a variant (its base's device, datapath and copy model)."""
    base = BACKENDS[variant.base]
    knobs = ", ".join(f"{k}={v}" for k, v in (*variant.device, *variant.netdev))
    return replace(base, name=variant.name, summary=f"{base.name} with {knobs}" if knobs else f"{base.name} (a copy)",
                   base=base.name, device_props=variant.device, netdev_props=variant.netdev)


def catalog(variants: tuple[Variant, ...] = ()) -> dict[str, Backend]:
    """Every backend a scenario can run: the built-ins, then its variants in the file's order."""
    return {**BACKENDS, **{v.name: make(v) for v in variants}}


def nic_args(backend: Backend, tap: str) -> tuple[str, ...]:
    """QEMU -netdev/-device arguments: a vnet_hdr tap, no option ROM (direct kernel boot needs none),
    then a variant's own knobs."""
    netdev = f"tap,id=n0,ifname={tap},script=no,downscript=no,vnet_hdr=on"
    if backend.device.startswith("virtio"):
        netdev += f",vhost={'on' if backend.vhost else 'off'}"
    netdev += "".join(f",{k}={v}" for k, v in backend.netdev_props)
    device = f"{backend.device},netdev=n0,romfile=" + "".join(f",{k}={v}" for k, v in backend.device_props)
    return ("-netdev", netdev, "-device", device)


def unavailable_reason(backend: Backend, accel: str) -> str | None:
    """Why `backend` cannot run on this host (None when it can)."""
    if backend.needs_vhost_net:
        if not os.path.exists("/dev/vhost-net"):
            return "/dev/vhost-net is missing (load the vhost_net module, or use the nested lab)"
        if not os.access("/dev/vhost-net", os.R_OK | os.W_OK):
            return "/dev/vhost-net is not readable and writable by this user"
        if accel != "kvm":
            return "vhost-net needs KVM's ioeventfd/irqfd; this run uses TCG"
    return None
