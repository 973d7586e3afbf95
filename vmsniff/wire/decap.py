"""Take a mirrored frame out of its GRE or ERSPAN envelope: the receiver's hot path.

Two entry points, one per source of bytes:

* :func:`decap_ip` takes an IP packet as a raw ``IPPROTO_GRE`` socket hands it over (IPv4
  header included); an IPv6 packet with its header is accepted too;
* :func:`decap_ethernet` takes an Ethernet frame as an offline capture stores it
  (:func:`decap_linktype` picks the entry point from a pcap link type).

Both return a :class:`Decapsulated` or raise :class:`MalformedPacket`, and nothing else. A
frame that is well formed but simply not GRE (ARP, a UDP packet, IPv6 ND in a ``tcpdump -i
any`` capture) raises the subclass :class:`NotTunnelled`, so that counters can tell "not ours"
from "broken". The inner frame is a ``memoryview`` into the caller's buffer: no copy is made.

Link type of the inner frame: Ethernet for GRE protocol 0x6558 (transparent Ethernet bridging,
what OVS sends) and for ERSPAN (type III with frame type 2 carries IP); ``LINKTYPE_RAW`` for GRE
protocols 0x0800 and 0x86DD, so that one pcap file can hold a tunnel carrying both families.
Other GRE protocols (PPP, NHRP, keepalives, ...) are not mirrored traffic and are refused.

Truncation: an OVS ``Mirror.snaplen`` cuts the packet but leaves the outer IP length claiming
the full size (FACTS.md). ``caplen`` is what we have; ``origlen`` is computed from the claimed
outer length, which is what the mirrored frame measured before the cut.

The header layouts are documented in :mod:`.ipv4`, :mod:`.gre` and :mod:`.erspan`; this module
decodes the same fields inline with precompiled ``struct`` formats on a ``memoryview``, creating
no object but the result (tests check that it agrees with those parsers).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from vmsniff.errors import MalformedPacket
from vmsniff.formats.capture import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)
from vmsniff.formats.erspan import (
    ERSPAN_II_LEN,
    ERSPAN_III_LEN,
    ERSPAN_III_PLATFORM_LEN,
    FT_ETHERNET,
    FT_IP,
)
from vmsniff.formats.ethernet import (
    ETH_HEADER_LEN,
    ETH_TYPE_OFFSET,
    ETHERTYPE_ERSPAN_II,
    ETHERTYPE_ERSPAN_III,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_TEB,
    TPIDS,
    VLAN_TAG_LEN,
)
from vmsniff.formats.gre import (
    FLAG_C,
    FLAG_K,
    FLAG_S,
    GRE_FIXED_LEN,
    OPTIONAL_FLAGS,
    UNDECODABLE,
    VERSION_MASK,
)
from vmsniff.formats.ip import IPPROTO_GRE, IPV6_EXTENSIONS, IPV6_FRAGMENT
from vmsniff.wire.ipv4 import Reassembler, parse_ipv4

__all__ = [
    "Decapsulated",
    "NotTunnelled",
    "decap_ethernet",
    "decap_ip",
    "decap_linktype",
]

_IP4 = struct.Struct("!B1xH2xH1xB2x4s4s")  # version/IHL, total length, flags/offset, proto, addrs
_IP6 = struct.Struct("!B3xHB1x16s16s")  # version, payload length, next header, addrs
_HH = struct.Struct("!HH")
_H = struct.Struct("!H")
_I = struct.Struct("!I")
_II_HDR = struct.Struct("!HH4x")
_III_HDR = struct.Struct("!HH6xH")
_TPIDS = frozenset(TPIDS)
_MAX_TAGS = 8
_IP6_EXT = IPV6_EXTENSIONS
_IP6_FRAGMENT = IPV6_FRAGMENT


class NotTunnelled(MalformedPacket):
    """A well-formed frame that carries no GRE (another EtherType or IP protocol): not the
    peer's fault, just not mirrored traffic. A subclass so that callers that only know
    :class:`MalformedPacket` still catch it."""


class Decapsulated(NamedTuple):
    """One mirrored frame out of its envelope.

    A ``NamedTuple`` rather than a frozen dataclass: it is built once per packet, and tuple
    construction is several times cheaper than a frozen dataclass's ``__init__``.
    """

    inner: memoryview
    """The mirrored frame (a view into the caller's buffer), ``caplen`` bytes."""
    linktype: int
    """``LINKTYPE_ETHERNET`` or ``LINKTYPE_RAW``."""
    proto: int
    """The GRE protocol type (0x6558, 0x0800, 0x86DD, 0x88BE, 0x22EB)."""
    key: int | None
    """GRE key (RFC 2890), None when absent."""
    seq: int | None
    """GRE sequence number (RFC 2890), None when absent."""
    erspan_type: int | None
    """1, 2 or 3 for ERSPAN types I, II and III; None for plain GRE."""
    erspan_session: int | None
    """ERSPAN session id (types II and III)."""
    erspan_vlan: int | None
    """The VLAN field of the ERSPAN header (types II and III)."""
    erspan_direction: int | None
    """ERSPAN type III ``D`` bit: 0 ingress, 1 egress; None otherwise."""
    outer_src: bytes
    """Outer source address, 4 or 16 bytes."""
    outer_dst: bytes
    """Outer destination address, 4 or 16 bytes."""
    caplen: int
    """Bytes of the inner frame we have."""
    origlen: int
    """Bytes the inner frame had before any snaplen cut (from the outer IP length)."""

    @property
    def erspan_version(self) -> int | None:
        """The ERSPAN header's version field: 1 (type II), 2 (type III); None otherwise."""
        return None if self.erspan_type is None or self.erspan_type == 1 else self.erspan_type - 1

    @property
    def truncated(self) -> bool:
        """True when the inner frame was cut short (``caplen < origlen``)."""
        return self.caplen < self.origlen


_new = tuple.__new__


def decap_ip(
    packet: bytes | bytearray | memoryview,
    reassembler: Reassembler | None = None,
    now: float = 0.0,
) -> Decapsulated | None:
    """Decapsulate a GRE/ERSPAN packet given as an IP packet (IPv4 or IPv6, header included).

    Fragments of an outer IPv4 packet go to ``reassembler`` with the caller's timestamp
    ``now``; ``None`` is returned until the datagram is complete. Without a reassembler a
    fragment is a :class:`MalformedPacket`.
    """
    mv = packet if isinstance(packet, memoryview) else memoryview(packet)
    return _decap_ip(mv, 0, reassembler, now)


def decap_ethernet(
    frame: bytes | bytearray | memoryview,
    reassembler: Reassembler | None = None,
    now: float = 0.0,
) -> Decapsulated | None:
    """Decapsulate a GRE/ERSPAN packet given as an Ethernet frame (VLAN tags allowed)."""
    mv = frame if isinstance(frame, memoryview) else memoryview(frame)
    n = len(mv)
    if n < ETH_HEADER_LEN:
        raise MalformedPacket(f"Ethernet: {n} bytes, shorter than a header")
    etype = _H.unpack_from(mv, ETH_TYPE_OFFSET)[0]
    off = ETH_HEADER_LEN
    while etype in _TPIDS:
        if off >= ETH_HEADER_LEN + VLAN_TAG_LEN * _MAX_TAGS or n < off + VLAN_TAG_LEN:
            raise MalformedPacket(f"Ethernet: VLAN tags cut short or more than {_MAX_TAGS}")
        etype = _H.unpack_from(mv, off + 2)[0]
        off += VLAN_TAG_LEN
    if etype != ETHERTYPE_IPV4 and etype != ETHERTYPE_IPV6:
        raise NotTunnelled(f"not GRE: EtherType 0x{etype:04x}")
    return _decap_ip(mv, off, reassembler, now)


def decap_linktype(
    linktype: int,
    data: bytes | bytearray | memoryview,
    reassembler: Reassembler | None = None,
    now: float = 0.0,
) -> Decapsulated | None:
    """Decapsulate a captured frame of the given pcap link type (offline captures)."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if linktype == LINKTYPE_ETHERNET:
        return decap_ethernet(mv, reassembler, now)
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return _decap_ip(mv, 0, reassembler, now)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        # The 4-byte address family differs per OS; the IP version nibble is what matters.
        return _decap_ip(mv, 4, reassembler, now)
    if linktype == LINKTYPE_LINUX_SLL or linktype == LINKTYPE_LINUX_SLL2:
        # Linux cooked capture (https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html and
        # LINKTYPE_LINUX_SLL2.html): the protocol (an EtherType) sits at offset 14 of a 16-byte
        # header (v1), or at offset 0 of a 20-byte header (v2, `tcpdump -i any`).
        size, at = (16, 14) if linktype == LINKTYPE_LINUX_SLL else (20, 0)
        if len(mv) < size:
            raise MalformedPacket("Linux cooked header cut short")
        proto = _H.unpack_from(mv, at)[0]
        if proto != ETHERTYPE_IPV4 and proto != ETHERTYPE_IPV6:
            raise NotTunnelled(f"not GRE: cooked protocol 0x{proto:04x}")
        return _decap_ip(mv, size, reassembler, now)
    raise MalformedPacket(f"unsupported link type {linktype}")


def _decap_ip(
    mv: memoryview, start: int, reassembler: Reassembler | None, now: float
) -> Decapsulated | None:
    n = len(mv)
    if n < start + 1:
        raise MalformedPacket("IP: no header")
    version = mv[start] >> 4
    if version == 6:
        return _decap_ip6(mv, start, reassembler, now)
    if version != 4:
        raise MalformedPacket(f"IP: version {version}")
    if n < start + 20:
        raise MalformedPacket(f"IPv4: {n - start} bytes, shorter than a header")
    vihl, total, frag, proto, src, dst = _IP4.unpack_from(mv, start)
    hlen = (vihl & 0x0F) * 4
    if hlen < 20 or total < hlen:
        raise MalformedPacket(f"IPv4: header length {hlen}, total length {total}")
    if proto != IPPROTO_GRE:
        raise NotTunnelled(f"not GRE: IP protocol {proto}")
    if frag & 0x3FFF:
        return _reassemble(mv, start, reassembler, now)
    claimed = start + total
    return _decap_gre(mv, start + hlen, claimed if claimed < n else n, claimed, src, dst)


def _decap_ip6(
    mv: memoryview, start: int, reassembler: Reassembler | None = None, now: float = 0.0
) -> Decapsulated | None:
    n = len(mv)
    if n < start + 40:
        raise MalformedPacket(f"IPv6: {n - start} bytes, shorter than a header")
    _, plen, nh, src, dst = _IP6.unpack_from(mv, start)
    if plen == 0:
        raise MalformedPacket("IPv6: jumbogram or empty payload")
    off = start + 40
    claimed = off + plen
    prev = start + 6  # where the "next header" byte that names the current header sits
    while nh in _IP6_EXT:
        if n < off + 8:
            raise MalformedPacket("IPv6: extension header cut short")
        prev = off
        nh = mv[off]
        off += (mv[off + 1] + 1) * 8
    if nh == _IP6_FRAGMENT:
        return _reassemble6(mv, start, off, prev, claimed, src, dst, reassembler, now)
    if nh != IPPROTO_GRE:
        raise NotTunnelled(f"not GRE: IPv6 next header {nh}")
    if off > claimed:
        raise MalformedPacket("IPv6: extension headers beyond the payload length")
    return _decap_gre(mv, off, claimed if claimed < n else n, claimed, src, dst)


def _reassemble(
    mv: memoryview, start: int, reassembler: Reassembler | None, now: float
) -> Decapsulated | None:
    if reassembler is None:
        raise MalformedPacket("IPv4 fragment and no reassembler")
    header, payload, _ = parse_ipv4(mv[start:])
    whole = reassembler.push(header, payload, now)
    if whole is None:
        return None
    return _decap_ip(memoryview(whole), 0, None, now)


def _reassemble6(
    mv: memoryview,
    start: int,
    frag: int,
    prev: int,
    claimed: int,
    src: bytes,
    dst: bytes,
    reassembler: Reassembler | None,
    now: float,
) -> Decapsulated | None:
    """An IPv6 Fragment header at ``frag`` (RFC 8200 section 4.5): reassemble, then decap the
    packet rebuilt from the unfragmentable headers and the whole fragmentable part."""
    if reassembler is None:
        raise MalformedPacket("IPv6 fragment and no reassembler")
    if len(mv) < frag + 8 or claimed > len(mv):
        raise MalformedPacket("IPv6 fragment cut short: cannot reassemble")
    nxt = mv[frag]
    offset_flags = _H.unpack_from(mv, frag + 2)[0]
    ident = _I.unpack_from(mv, frag + 4)[0]
    whole = reassembler.push_ipv6(
        bytes(src), bytes(dst), ident, offset_flags & 0xFFF8, bool(offset_flags & 1),
        mv[frag + 8 : claimed], now,
    )  # fmt: skip
    if whole is None:
        return None
    head = bytearray(mv[start:frag])  # fixed header and the unfragmentable extension headers
    head[prev - start] = nxt  # the header before the Fragment header now names what it named
    if len(head) - 40 + len(whole) > 0xFFFF:
        raise MalformedPacket("IPv6 fragment: reassembled payload above 65535 bytes")
    head[4:6] = (len(head) - 40 + len(whole)).to_bytes(2, "big")
    return _decap_ip6(memoryview(bytes(head) + whole), 0)


def _decap_gre(
    mv: memoryview, off: int, end: int, claimed: int, src: bytes, dst: bytes
) -> Decapsulated:
    """GRE (RFC 2784/2890) at ``off``; ``end`` is where our bytes stop, ``claimed`` where the
    outer IP header says the packet stops."""
    if end - off < GRE_FIXED_LEN:
        raise MalformedPacket("GRE: header cut short")
    flags, proto = _HH.unpack_from(mv, off)
    if flags & UNDECODABLE:
        if flags & VERSION_MASK == 1:
            raise MalformedPacket("GRE: unsupported version 1 (PPTP enhanced GRE)")
        raise MalformedPacket(f"GRE: unsupported flags/version 0x{flags:04x}")
    p = off + GRE_FIXED_LEN
    key = seq = None
    if flags & OPTIONAL_FLAGS:
        if flags & FLAG_C:
            p += 4
        if flags & FLAG_K:
            if end < p + 4:
                raise MalformedPacket("GRE: header cut short")
            key = _I.unpack_from(mv, p)[0]
            p += 4
        if flags & FLAG_S:
            if end < p + 4:
                raise MalformedPacket("GRE: header cut short")
            seq = _I.unpack_from(mv, p)[0]
            p += 4
        elif end < p:
            raise MalformedPacket("GRE: header cut short")
    etype = None
    session = vlan = direction = None
    if proto == ETHERTYPE_TEB:
        linktype = LINKTYPE_ETHERNET
    elif proto == ETHERTYPE_IPV4 or proto == ETHERTYPE_IPV6:
        linktype = LINKTYPE_RAW
    elif proto == ETHERTYPE_ERSPAN_II:
        linktype = LINKTYPE_ETHERNET
        if seq is None:
            etype = 1  # type I: no header (draft-foschiano-erspan-03 section 4.1)
        else:
            etype = 2  # type II: 8-byte header (section 4.2)
            if end < p + ERSPAN_II_LEN:
                raise MalformedPacket("ERSPAN II: header cut short")
            w0, w1 = _II_HDR.unpack_from(mv, p)
            if w0 >> 12 != 1:
                raise MalformedPacket(f"ERSPAN II: version {w0 >> 12}, not 1")
            vlan = w0 & 0x0FFF
            session = w1 & 0x03FF
            p += ERSPAN_II_LEN
    elif proto == ETHERTYPE_ERSPAN_III:
        etype = 3  # type III: 12-byte header, 8 more when O is set (section 4.3)
        if end < p + ERSPAN_III_LEN:
            raise MalformedPacket("ERSPAN III: header cut short")
        w0, w1, w3 = _III_HDR.unpack_from(mv, p)
        if w0 >> 12 != 2:
            raise MalformedPacket(f"ERSPAN III: version {w0 >> 12}, not 2")
        ft = (w3 >> 10) & 0x1F
        if ft == FT_ETHERNET:
            linktype = LINKTYPE_ETHERNET
        elif ft == FT_IP:
            linktype = LINKTYPE_RAW
        else:
            raise MalformedPacket(f"ERSPAN III: unsupported frame type {ft}")
        vlan = w0 & 0x0FFF
        session = w1 & 0x03FF
        direction = (w3 >> 3) & 1
        p += ERSPAN_III_LEN + ERSPAN_III_PLATFORM_LEN if w3 & 1 else ERSPAN_III_LEN
        if end < p:
            raise MalformedPacket("ERSPAN III: platform subheader cut short")
    else:
        raise MalformedPacket(f"GRE: unsupported protocol 0x{proto:04x}")
    # tuple.__new__ skips the NamedTuple's generated __new__ (half the cost per packet).
    return _new(
        Decapsulated,
        (
            mv[p:end],
            linktype,
            proto,
            key,
            seq,
            etype,
            session,
            vlan,
            direction,
            src,
            dst,
            end - p,
            claimed - p,
        ),
    )
