"""What the guest's NIC driver negotiated at boot, and whether a variant's knobs took effect.

Why: QEMU accepts a device property and the guest may still not get what it names. A feature is
only on when device *and* driver accept it (vhost-net in the kernel does not offer packed rings;
QEMU keeps virtio-net's tx ring at 256 entries for a tap backend whatever `tx_queue_size` says), and
a knob that did not take effect measured as if it had is a wrong conclusion in a results table. The
guest prints what it got (guest-init.sh: the `features` bit string of its virtio device, queues, the
rings' current sizes, the offloads that are on); this module decodes it and checks every knob that
has a guest-visible effect.

Feature bit names are the virtio specification's (virtio 1.2, 5.1.3 and 6): bits never change meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

VIRTIO_NET_FEATURES = {
    0: "CSUM", 1: "GUEST_CSUM", 2: "CTRL_GUEST_OFFLOADS", 3: "MTU", 5: "MAC", 7: "GUEST_TSO4", 8: "GUEST_TSO6",
    9: "GUEST_ECN", 10: "GUEST_UFO", 11: "HOST_TSO4", 12: "HOST_TSO6", 13: "HOST_ECN", 14: "HOST_UFO",
    15: "MRG_RXBUF", 16: "STATUS", 17: "CTRL_VQ", 18: "CTRL_RX", 19: "CTRL_VLAN", 20: "CTRL_RX_EXTRA",
    21: "GUEST_ANNOUNCE", 22: "MQ", 23: "CTRL_MAC_ADDR", 24: "NOTF_COAL", 28: "RING_INDIRECT_DESC",
    29: "RING_EVENT_IDX", 32: "VERSION_1", 33: "ACCESS_PLATFORM", 34: "RING_PACKED", 35: "IN_ORDER",
    36: "ORDER_PLATFORM", 37: "SR_IOV", 38: "NOTIFICATION_DATA", 39: "NOTIF_CONFIG_DATA", 40: "RING_RESET",
    54: "GUEST_USO4", 55: "GUEST_USO6", 56: "HOST_USO", 57: "HASH_REPORT", 59: "GUEST_HDRLEN", 60: "RSS",
    61: "RSC_EXT", 62: "STANDBY", 63: "SPEED_DUPLEX",
}
# virtio-net-pci properties whose effect is one feature bit (QEMU's property names).
PROPERTY_FEATURES = {
    "packed": "RING_PACKED", "event_idx": "RING_EVENT_IDX", "indirect_desc": "RING_INDIRECT_DESC",
    "mrg_rxbuf": "MRG_RXBUF", "mq": "MQ", "csum": "CSUM", "guest_csum": "GUEST_CSUM", "host_tso4": "HOST_TSO4",
    "host_tso6": "HOST_TSO6", "guest_tso4": "GUEST_TSO4", "guest_tso6": "GUEST_TSO6", "ctrl_vq": "CTRL_VQ",
    "rss": "RSS", "hash": "HASH_REPORT", "in_order": "IN_ORDER", "host_mtu": "MTU",
}
# Properties that set a ring size the guest reads back with `ethtool -g` (RX/TX current).
PROPERTY_RINGS = {"rx_queue_size": "RX", "tx_queue_size": "TX"}
_INFO = re.compile(r"IOBENCH-INFO nic (?P<body>[^;]*)")
_KNOB = re.compile(r"IOBENCH-INFO knob (?P<what>.+?): (?P<result>ok|failed:[^;]*)")


@dataclass(frozen=True)
class Negotiated:
    """One boot's NIC as the guest saw it."""

    features: tuple[str, ...] | None = None  # virtio feature names on; None for a non-virtio NIC
    rx_queues: int | None = None
    tx_queues: int | None = None
    rings: dict[str, int] = field(default_factory=dict)  # "RX"/"TX" -> current ring size (ethtool -g)
    offloads: tuple[str, ...] = ()
    knobs: tuple[tuple[str, str], ...] = ()  # guest-side settings: ("ethtool -C rx-usecs 0", "ok" / "failed: ...")

    def as_dict(self) -> dict[str, object]:
        return {"features": list(self.features) if self.features is not None else None, "rx_queues": self.rx_queues,
                "tx_queues": self.tx_queues, "rings": self.rings, "offloads": list(self.offloads),
                "guest_knobs": dict(self.knobs)}


def spec_name(feature: str) -> str:
    """The specification's name: device-independent bits (24-40) are VIRTIO_F_*, the rest VIRTIO_NET_F_*."""
    bit = {v: k for k, v in VIRTIO_NET_FEATURES.items()}.get(feature, 0)
    return f"VIRTIO_F_{feature}" if 24 <= bit <= 40 and feature != "NOTF_COAL" else f"VIRTIO_NET_F_{feature}"


def decode_features(bits: str) -> tuple[str, ...]:
    """A virtio device's `features` file (one 0/1 per bit, bit 0 first) as names."""
    return tuple(VIRTIO_NET_FEATURES.get(i, f"bit{i}") for i, b in enumerate(bits.strip()) if b == "1")


def parse(ready_line: str) -> Negotiated | None:
    """The guest's `IOBENCH-INFO nic ...` line (None when the guest image predates it)."""
    m = _INFO.search(ready_line)
    if m is None:
        return None
    kv = dict(item.split("=", 1) for item in m["body"].split() if "=" in item)
    features = kv.get("features", "none")
    rings = {k: int(v) for k, _, v in (r.partition(":") for r in kv.get("rings", "").split(",")) if v.isdigit()}
    return Negotiated(
        features=None if features == "none" else decode_features(features),
        rx_queues=int(kv["rxqueues"]) if kv.get("rxqueues", "").isdigit() else None,
        tx_queues=int(kv["txqueues"]) if kv.get("txqueues", "").isdigit() else None,
        rings=rings, offloads=tuple(o for o in kv.get("offloads", "").split(",") if o and o != "none"),
        knobs=tuple((k["what"], k["result"].strip()) for k in _KNOB.finditer(ready_line)))


def knobs_not_applied(device_props: tuple[tuple[str, str], ...], got: Negotiated, queues: int = 1) -> list[str]:
    """The variant's knobs with a guest-visible effect that the guest did not get, each with why: device
    properties (feature bits, ring sizes), the queue pairs in use, and every guest-side setting the
    guest's tools refused."""
    out = [f"guest {what}: {result}" for what, result in got.knobs if result != "ok"]
    if queues > 1 and (got.rx_queues, got.tx_queues) != (queues, queues):
        out.append(f"queues={queues}: the guest uses {got.rx_queues} rx and {got.tx_queues} tx queues")
    for key, value in device_props:
        if key in PROPERTY_FEATURES and got.features is not None:
            want = value in ("on", "true", "yes")
            feature = PROPERTY_FEATURES[key]
            if (feature in got.features) != want:
                out.append(f"{key}={value}: the guest {'did not negotiate' if want else 'still negotiated'} "
                           f"{spec_name(feature)}")
        elif key in PROPERTY_RINGS and value.isdigit():
            ring = PROPERTY_RINGS[key]
            if ring in got.rings and got.rings[ring] != int(value):
                out.append(f"{key}={value}: the guest's {ring} ring has {got.rings[ring]} entries (ethtool -g)")
    return out


_QSTATS = re.compile(r"^IOBENCH-QSTATS (?P<body>.*)$", re.M)


def queue_deltas(console: str) -> dict[str, int]:
    """Per-queue packets over a stretch of the guest's console (multiqueue variants print the driver's
    `ethtool -S` queue counters once a second): last line minus first, per counter."""
    lines = [dict((k, int(v)) for k, _, v in (item.partition(":") for item in m["body"].split(",")) if v.isdigit())
             for m in _QSTATS.finditer(console)]
    lines = [ln for ln in lines if ln]
    if len(lines) < 2:
        return {}
    return {k.removesuffix("_packets"): lines[-1][k] - lines[0].get(k, 0) for k in lines[-1]}
