"""Ethernet II header with 802.1Q and 802.1ad (QinQ) tags.

A mirror on an access port adds the port's 802.1Q tag, which the VM never sent (FACTS.md);
:func:`strip_vlan` takes it off again.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vmsniff.errors import MalformedPacket
from vmsniff.formats.ethernet import (
    ETH_HEADER_LEN,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_QINQ,
    ETHERTYPE_VLAN,
    TPIDS,
)

__all__ = [
    "ETH_HEADER_LEN",
    "ETHERTYPE_IPV4",
    "ETHERTYPE_IPV6",
    "ETHERTYPE_VLAN",
    "ETHERTYPE_QINQ",
    "TPIDS",
    "EthernetHeader",
    "VlanTag",
    "encode_ethernet",
    "parse_ethernet",
    "strip_vlan",
]

_MAX_TAGS = 8
_H = struct.Struct("!H")


@dataclass(frozen=True, slots=True)
class VlanTag:
    """One VLAN tag: its TPID and the tag control information split into PCP, DEI and VID."""

    tpid: int
    pcp: int
    dei: int
    vid: int


@dataclass(frozen=True, slots=True)
class EthernetHeader:
    """Destination, source, VLAN tags (outermost first) and the final EtherType.

    An EtherType below 0x0600 is an IEEE 802.3 length field; it is reported as is.
    """

    dst: bytes
    src: bytes
    tags: tuple[VlanTag, ...]
    ethertype: int
    header_len: int


def parse_ethernet(buf: bytes | bytearray | memoryview) -> EthernetHeader:
    """Decode the Ethernet header (and up to 8 VLAN tags) at the start of ``buf``."""
    mv = memoryview(buf)
    if len(mv) < ETH_HEADER_LEN:
        raise MalformedPacket(f"Ethernet: {len(mv)} bytes, shorter than a header")
    off = 12
    tags: list[VlanTag] = []
    etype = _H.unpack_from(mv, off)[0]
    while etype in TPIDS:
        if len(tags) == _MAX_TAGS:
            raise MalformedPacket("Ethernet: more than 8 VLAN tags")
        if len(mv) < off + 6:
            raise MalformedPacket("Ethernet: VLAN tag cut short")
        tci, inner = struct.unpack_from("!HH", mv, off + 2)
        tags.append(VlanTag(etype, tci >> 13, (tci >> 12) & 1, tci & 0x0FFF))
        off += 4
        etype = inner
    return EthernetHeader(bytes(mv[0:6]), bytes(mv[6:12]), tuple(tags), etype, off + 2)


def encode_ethernet(
    dst: bytes, src: bytes, ethertype: int, payload: bytes = b"", tags: tuple[VlanTag, ...] = ()
) -> bytes:
    """Build an Ethernet frame (no FCS) with the given tags, outermost first."""
    out = dst + src
    for t in tags:
        out += struct.pack("!HH", t.tpid, t.pcp << 13 | t.dei << 12 | t.vid)
    return out + _H.pack(ethertype) + payload


def strip_vlan(frame: bytes | bytearray | memoryview, vid: int | None = None) -> bytes:
    """Remove the outermost VLAN tag; with ``vid`` only when the tag carries that VLAN id.

    A frame without a tag (or with another VLAN id) comes back unchanged, as bytes.
    """
    mv = memoryview(frame)
    if len(mv) < ETH_HEADER_LEN:
        raise MalformedPacket(f"Ethernet: {len(mv)} bytes, shorter than a header")
    if _H.unpack_from(mv, 12)[0] not in TPIDS:
        return bytes(mv)
    if len(mv) < 18:
        raise MalformedPacket("Ethernet: VLAN tag cut short")
    if vid is not None and _H.unpack_from(mv, 14)[0] & 0x0FFF != vid:
        return bytes(mv)
    return bytes(mv[:12]) + bytes(mv[16:])
