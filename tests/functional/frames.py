"""Comparing captured frames with what the VM saw (shared by the lab tests)."""

from __future__ import annotations


def flow(frame: bytes) -> bytes:
    """A frame's flow: EtherType, and for IPv4 the protocol, addresses and ports."""
    if frame[12:14] != b"\x08\x00":
        return frame[12:14]
    ihl = (frame[14] & 0x0F) * 4
    return frame[12:14] + frame[23:24] + frame[26:34] + frame[14 + ihl : 18 + ihl]


def same_run_per_flow(part: list[bytes], whole: list[bytes]) -> bool:
    """``part`` is a run of ``whole`` up to the order *between* flows: OVS's userspace datapath
    sends the first packet of a new flow through an upcall, so the switch's view (``--at ovs``)
    may let a later packet of an established flow pass it. Within a flow the order holds."""
    n = len(part)
    for i in range(len(whole) - n + 1):
        window = whole[i : i + n]
        if sorted(window) != sorted(part):
            continue
        if all(
            [f for f in part if flow(f) == key] == [f for f in window if flow(f) == key]
            for key in {flow(f) for f in part}
        ):
            return True
    return False
