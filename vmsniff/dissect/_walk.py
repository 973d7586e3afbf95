"""The one walk over a frame's headers: which layers it holds and where, nothing built.

:func:`walk` reads, with ``struct`` and indexing over the frame's own bytes (no copy), only
what tells the next header apart (EtherTypes, header lengths, protocols, ports, tunnel
flags) and checks that each header it records is whole. It gives a list of entries
``(layer class, offset, context)``, outermost first, and why it stopped early (else None).
Both readers of a frame stand on it: :class:`~vmsniff.dissect.frame.Frame` builds a layer
from an entry when first asked for it, and :func:`~vmsniff.dissect.flow.flow_key` reads the
few fields a flow needs at the entries' offsets. The context is what the entry's header
alone does not say: the EtherType after VLAN tags (Ethernet), the end of the IP payload
(TCP), the extension headers walked (IPv6), the key and sequence number (GRE), the type
(ERSPAN).

Tunnels are followed (GRE with Ethernet or IP inside, GRE-in-UDP, ERSPAN I/II/III, VXLAN,
Geneve) to a bounded depth; payload hints (DNS, DHCP, OpenFlow) are recorded where their
header is there. A header cut short stops the walk with ``cut short after <layer>``; a field
that cannot be (an IPv4 header length below 20, enhanced GRE) with its own reason.
"""

from __future__ import annotations

import struct
from typing import Any

from vmsniff.dissect.layers import (
    Arp,
    Dhcp,
    Dns,
    Erspan,
    Ethernet,
    Geneve,
    Gre,
    Icmp,
    ICMPv6,
    IPv4,
    IPv6,
    Layer,
    OpenFlow,
    Tcp,
    Udp,
    Vlan,
    Vxlan,
)
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
from vmsniff.formats.erspan import ERSPAN_II_LEN, ERSPAN_III_LEN, ERSPAN_III_PLATFORM_LEN, FT_IP
from vmsniff.formats.ethernet import (
    ETH_HEADER_LEN,
    ETHERTYPE_ARP,
    ETHERTYPE_ERSPAN_II,
    ETHERTYPE_ERSPAN_III,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_TEB,
    TPIDS,
    VLAN_TAG_LEN,
)
from vmsniff.formats.gre import FLAG_C, FLAG_K, FLAG_S, GRE_FIXED_LEN, UNDECODABLE
from vmsniff.formats.ip import (
    GENEVE_PORT,
    GRE_UDP_PORT,
    IPPROTO_GRE,
    IPV4_MIN_HEADER,
    IPV6_EXTENSIONS,
    IPV6_FRAGMENT,
    IPV6_HEADER,
    VXLAN_PORT,
)

__all__ = ["DHCP_MAGIC", "ECHO4", "ECHO6", "ND", "OPENFLOW_PORTS", "Data", "Entry", "walk"]

Data = bytes | bytearray | memoryview
#: (layer class, where its header starts, what the header alone does not say)
Entry = tuple[type[Layer], int, Any]

_H = struct.Struct("!H").unpack_from
_I = struct.Struct("!I").unpack_from
_IP4 = struct.Struct("!BxHxxHxBxx").unpack_from  # version/IHL, total length, flags/offset, proto
_IP6 = struct.Struct("!4xHBx").unpack_from  # payload length, next header
_TCP = struct.Struct("!HH8xH6x").unpack_from  # ports, data offset and flags
_UDP = struct.Struct("!HH4x").unpack_from
_ARP = struct.Struct("!HHBB2x").unpack_from
_GRE = struct.Struct("!HH").unpack_from
_OPENFLOW = struct.Struct("!BxH").unpack_from  # version, length
_TPIDS = frozenset(TPIDS)
ECHO4 = (0, 8)  #: ICMP echo reply and request: ident and seq follow
ECHO6 = (128, 129)  #: ICMPv6 echo request and reply
ND = (135, 136)  #: ICMPv6 neighbor solicitation and advertisement: a target address follows
OPENFLOW_PORTS = (6653, 6633)
DHCP_MAGIC = b"\x63\x82\x53\x63"  #: RFC 2131 section 3, after the 236 bytes of BOOTP
_DHCP_OPTIONS = 240
_TUNNEL_DEPTH = 4  # tunnels inside tunnels: enough for any mirror, bounded for hostile input


class _Stop(Exception):
    """The walk cannot go on: the reason becomes the frame's error."""


def walk(raw: Data, linktype: int) -> tuple[list[Entry], str | None]:
    """The layers of ``raw``, a frame of ``linktype``, and why the walk stopped early (a
    header cut short, a field that cannot be, a link type not dissected), else None."""
    found: list[Entry] = []
    try:
        if linktype == LINKTYPE_ETHERNET:
            _ethernet(raw, 0, found, 0)
        elif linktype == LINKTYPE_RAW or linktype == LINKTYPE_IPV4 or linktype == LINKTYPE_IPV6:
            _ip(raw, 0, found, 0)
        elif linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:  # 4-byte family, then IP
            _ip(raw, 4, found, 0)
        elif linktype == LINKTYPE_LINUX_SLL:  # 16-byte header, protocol at 14
            _ethertype(raw, _H(raw, 14)[0], 16, found, 0)
        elif linktype == LINKTYPE_LINUX_SLL2:  # 20-byte header, protocol at 0
            _ethertype(raw, _H(raw, 0)[0], 20, found, 0)
        else:
            return found, f"link type {linktype}: not dissected"
    except _Stop as exc:
        return found, str(exc)
    except (struct.error, IndexError):
        return found, f"cut short after {found[-1][0].name}" if found else "cut short"
    return found, None


def _ethernet(raw: Data, at: int, found: list[Entry], depth: int) -> None:
    if len(raw) - at < ETH_HEADER_LEN:
        raise _Stop(f"Ethernet: {len(raw) - at} bytes, shorter than a header")
    etype = _H(raw, at + 12)[0]
    pos = at + ETH_HEADER_LEN
    if etype not in _TPIDS:
        found.append((Ethernet, at, etype))
    else:  # 802.1Q/802.1ad tags: TPID, TCI, then the next EtherType (or TPID)
        tags: list[Entry] = []
        tag_at = at + 12
        while etype in _TPIDS:
            inner = _H(raw, pos + 2)[0]  # the whole tag must be there
            tags.append((Vlan, tag_at, None))
            tag_at, etype, pos = pos + 2, inner, pos + VLAN_TAG_LEN
            if len(tags) > 8:
                raise _Stop("Ethernet: more than 8 VLAN tags")
        found.append((Ethernet, at, etype))
        found += tags
    if etype == ETHERTYPE_IPV4 or etype == ETHERTYPE_IPV6:  # the common case, one call less
        _ip(raw, pos, found, depth)
    else:
        _ethertype(raw, etype, pos, found, depth)


def _ethertype(raw: Data, etype: int, at: int, found: list[Entry], depth: int) -> None:
    if etype == ETHERTYPE_IPV4 or etype == ETHERTYPE_IPV6:
        _ip(raw, at, found, depth)
    elif etype == ETHERTYPE_ARP:
        if _ARP(raw, at) != (1, ETHERTYPE_IPV4, 6, 4):
            return  # not IPv4 over Ethernet: left undissected
        # sender MAC, sender IP, target MAC, target IP (RFC 826), each whole or a reason
        have = len(raw) - at
        for end, what in ((14, "MAC"), (18, "IPv4"), (24, "MAC"), (28, "IPv4")):
            if have < end:
                raise _Stop(f"{what} address cut short")
        found.append((Arp, at, None))


def _ip(raw: Data, at: int, found: list[Entry], depth: int) -> None:
    version = raw[at] >> 4
    if version == 4:
        vihl, total, flags_offset, proto = _IP4(raw, at)
        ihl = (vihl & 0x0F) * 4
        if ihl < IPV4_MIN_HEADER:
            raise _Stop(f"IPv4: header length {ihl}, below 20")
        if len(raw) < at + IPV4_MIN_HEADER:
            raise _Stop("IPv4 address cut short")
        found.append((IPv4, at, None))
        if flags_offset & 0x1FFF:
            return  # a later fragment: no transport header here
        _transport(raw, proto, at + ihl, at + total, found, depth)
    elif version == 6:
        plen, nh = _IP6(raw, at)
        if len(raw) < at + IPV6_HEADER:
            raise _Stop("IPv6 address cut short")
        pos, proto = at + IPV6_HEADER, nh
        exts: list[int] = []
        frag_off, more, frag_id = 0, False, None
        while proto in IPV6_EXTENSIONS or proto == IPV6_FRAGMENT:
            if len(exts) >= 8:
                raise _Stop("IPv6: more than 8 extension headers")
            exts.append(proto)
            if proto == IPV6_FRAGMENT:  # RFC 8200 section 4.5
                offset_more, frag_id = _H(raw, pos + 2)[0], _I(raw, pos + 4)[0]
                frag_off, more = offset_more & 0xFFF8, bool(offset_more & 1)
                proto, pos = raw[pos], pos + 8
            else:  # length in 8-byte units, not counting the first 8 (section 4.3)
                proto, pos = raw[pos], pos + 8 + raw[pos + 1] * 8
        found.append((IPv6, at, (tuple(exts), proto, frag_off, more, frag_id)))
        if frag_off:
            return
        _transport(raw, proto, pos, at + IPV6_HEADER + plen, found, depth)
    else:
        raise _Stop(f"IP version {version}")


def _transport(raw: Data, proto: int, at: int, end: int, found: list[Entry], depth: int) -> None:
    """``end``: where the IP payload ends by the IP header's length."""
    if proto == 6:
        sport, dport, off_flags = _TCP(raw, at)
        hlen = (off_flags >> 12) * 4
        if hlen < 20:
            raise _Stop(f"TCP: header length {hlen}, below 20")
        found.append((Tcp, at, end))
        if sport in OPENFLOW_PORTS or dport in OPENFLOW_PORTS:
            if len(raw) >= at + hlen + 8:
                version, length = _OPENFLOW(raw, at + hlen)
                if 1 <= version <= 6 and length >= 8:
                    found.append((OpenFlow, at + hlen, None))
        elif sport == 53 or dport == 53:
            _dns(raw, at + hlen + 2, found)  # a 2-byte length before each message
    elif proto == 17:
        sport, dport = _UDP(raw, at)
        found.append((Udp, at, None))
        body = at + 8
        if depth < _TUNNEL_DEPTH and dport == VXLAN_PORT:  # RFC 7348 section 5
            flags = raw[body]
            if len(raw) < body + 8:
                raise IndexError
            if flags & 0x08:  # the I flag: a valid VNI, an Ethernet frame follows
                found.append((Vxlan, body, None))
                _ethernet(raw, body + 8, found, depth + 1)
        elif depth < _TUNNEL_DEPTH and dport == GENEVE_PORT:  # RFC 8926 section 3.4
            optlen = (raw[body] & 0x3F) * 4
            if len(raw) < body + 8:
                raise IndexError
            found.append((Geneve, body, None))
            if _H(raw, body + 2)[0] == ETHERTYPE_TEB:
                _ethernet(raw, body + 8 + optlen, found, depth + 1)
        elif depth < _TUNNEL_DEPTH and dport == GRE_UDP_PORT:  # RFC 8086 section 3
            _gre(raw, body, found, depth + 1)
        elif sport == 53 or dport == 53:
            _dns(raw, body, found)
        elif (sport == 67 or sport == 68) and (dport == 67 or dport == 68):
            if len(raw) >= body + _DHCP_OPTIONS and raw[body + 236 : body + 240] == DHCP_MAGIC:
                found.append((Dhcp, body, None))
    elif proto == 1:
        if len(raw) < at + (8 if raw[at] in ECHO4 else 4):
            raise IndexError
        found.append((Icmp, at, None))
    elif proto == 58:
        kind = raw[at]
        if len(raw) < at + (8 if kind in ECHO6 else 4):
            raise IndexError
        if kind in ND and len(raw) < at + 24:
            raise _Stop("IPv6 address cut short")
        found.append((ICMPv6, at, None))
    elif proto == IPPROTO_GRE and depth < _TUNNEL_DEPTH:
        _gre(raw, at, found, depth + 1)


def _gre(raw: Data, at: int, found: list[Entry], depth: int) -> None:
    """GRE (RFC 2784, RFC 2890) and what it carries: Ethernet, IP, ERSPAN."""
    flags, proto = _GRE(raw, at)
    if flags & UNDECODABLE:
        raise _Stop(f"GRE: flags/version 0x{flags:04x} not decoded")
    pos = at + GRE_FIXED_LEN + (4 if flags & FLAG_C else 0)
    key = seq = None
    if flags & FLAG_K:
        key, pos = _I(raw, pos)[0], pos + 4
    if flags & FLAG_S:
        seq, pos = _I(raw, pos)[0], pos + 4
    found.append((Gre, at, (key, seq)))
    if proto == ETHERTYPE_TEB:
        _ethernet(raw, pos, found, depth)
    elif proto == ETHERTYPE_IPV4 or proto == ETHERTYPE_IPV6:
        _ip(raw, pos, found, depth)
    elif proto == ETHERTYPE_ERSPAN_II:
        if seq is None:  # type I: no header, the frame follows GRE
            found.append((Erspan, pos, 1))
            _ethernet(raw, pos, found, depth)
            return
        _GRE(raw, pos)  # the header's first words must be there
        found.append((Erspan, pos, 2))
        _ethernet(raw, pos + ERSPAN_II_LEN, found, depth)
    elif proto == ETHERTYPE_ERSPAN_III:
        _GRE(raw, pos)
        w3 = _H(raw, pos + 10)[0]
        found.append((Erspan, pos, 3))
        inner = pos + ERSPAN_III_LEN + (ERSPAN_III_PLATFORM_LEN if w3 & 1 else 0)
        if (w3 >> 10) & 0x1F == FT_IP:
            _ip(raw, inner, found, depth)
        else:
            _ethernet(raw, inner, found, depth)


def _dns(raw: Data, at: int, found: list[Entry]) -> None:
    if len(raw) >= at + 12:  # the fixed header (RFC 1035 section 4.1.1)
        found.append((Dns, at, None))
