"""The window's data on the wire: the tap's (native: the peer veth's) counters over netlink.

Why the link and not iperf3: the tap sees every frame the guest's path carried in the window,
GSO superframes included; `bytes / 1514` is the packet count every `*_per_packet` divides by
(schema.derive), and later instruments find it in the window's facts.
"""

from __future__ import annotations

from typing import Any

from iobench.instruments.base import Instrument, Reading, Window
from iobench.schema import FRAME_AT_MTU


class LinkCounters(Instrument):
    name = "link"

    def sample(self, window: Window) -> dict[str, int]:
        return window.link_stats()

    def record(self, sample: Any) -> dict[str, Any]:
        return {"link": sample}

    def read(self, window: Window, samples: list[Any]) -> Reading:
        bytes_keys, frames_keys = window.data_keys
        first, last = samples[0], samples[-1]
        nbytes = sum(last[k] - first[k] for k in bytes_keys)
        window.facts["packets"] = nbytes / FRAME_AT_MTU
        slices = []
        for a, b in zip(samples, samples[1:], strict=False):
            part = sum(b[k] - a[k] for k in bytes_keys)
            slices.append({"bytes": part, "packets": round(part / FRAME_AT_MTU, 1)})
        return Reading(columns={"bytes": nbytes, "frames": sum(last[k] - first[k] for k in frames_keys)},
                       slices=slices)
