"""What one captured frame says about its flow: a few fields read with ``struct``, no objects.

This is the flow table's hot path, so it reads only what a flow needs (addresses, ports, the
VLAN, the overlay network, a mirror key, TCP flags and payload length, a fragment's
identification), for every link type vmsniff reads, and looks inside GRE (Ethernet or IP,
also over UDP), ERSPAN, VXLAN and Geneve to the innermost frame. It does not look inside ICMP
errors or OpenFlow messages: the packets quoted there belong to other flows. A frame cut short
or malformed says nothing (None): it is counted, never fatal.
"""

from __future__ import annotations

import struct

from vmsniff.flows.table import Observation
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
    ETHERTYPE_ERSPAN_II,
    ETHERTYPE_ERSPAN_III,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_TEB,
    TPIDS,
    VLAN_TAG_LEN,
    VLAN_VID_MASK,
)
from vmsniff.formats.gre import FLAG_C, FLAG_K, FLAG_S, GRE_FIXED_LEN, UNDECODABLE
from vmsniff.formats.ip import IPPROTO_GRE, IPV6_EXTENSIONS, IPV6_FRAGMENT, IPV6_HEADER

__all__ = ["GENEVE_PORT", "GRE_UDP_PORT", "VXLAN_PORT", "observe"]

VXLAN_PORT = 4789  #: RFC 7348 section 5
GENEVE_PORT = 6081  #: RFC 8926 section 3.3
GRE_UDP_PORT = 4754  #: GRE-in-UDP, RFC 8086 section 3
_TCP, _UDP, _ICMP, _ICMPV6 = 6, 17, 1, 58
_ECHO = {(_ICMP, 8), (_ICMP, 0), (_ICMPV6, 128), (_ICMPV6, 129)}
_H = struct.Struct("!H").unpack_from
_HH = struct.Struct("!HH").unpack_from
_I = struct.Struct("!I").unpack_from
_TPIDS = frozenset(TPIDS)
_MAX_DEPTH = 4  # tunnels inside tunnels: enough for any mirror, bounded for hostile input

Data = bytes | memoryview


def observe(data: Data, linktype: int, length: int | None = None) -> Observation | None:
    """The flow observation of one frame of ``linktype`` (None: nothing to say); ``length``
    is its original length on the wire (default: ``len(data)``)."""
    wire = len(data) if length is None else length
    try:
        if linktype == LINKTYPE_ETHERNET:
            return _ethernet(data, 0, wire, None, None, 0)
        if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
            return _ip(data, 0, wire, None, None, None, 0)
        if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):  # 4-byte address family, then IP
            return _ip(data, 4, wire, None, None, None, 0)
        if linktype == LINKTYPE_LINUX_SLL:  # 16-byte header, protocol at 14
            return _by_ethertype(data, _H(data, 14)[0], 16, wire, None, None, None, 0)
        if linktype == LINKTYPE_LINUX_SLL2:  # 20-byte header, protocol at 0
            return _by_ethertype(data, _H(data, 0)[0], 20, wire, None, None, None, 0)
    except (struct.error, IndexError):
        return None
    return None


def _ethernet(
    data: Data, off: int, wire: int, vni: int | None, mirror: int | None, depth: int
) -> Observation | None:
    etype = _H(data, off + 12)[0]
    at = off + ETH_HEADER_LEN
    vlan = None
    while etype in _TPIDS:
        if vlan is None:
            vlan = _H(data, at)[0] & VLAN_VID_MASK
        etype = _H(data, at + 2)[0]
        at += VLAN_TAG_LEN
    if etype == ETHERTYPE_IPV4 or etype == ETHERTYPE_IPV6:
        return _ip(data, at, wire, vlan, vni, mirror, depth)
    src = bytes(data[off + 6 : off + 12])
    if len(src) != 6:
        return None
    return Observation(etype, src, bytes(data[off : off + 6]), 0, 0, wire, False, vlan, vni,
                       mirror)  # fmt: skip


def _by_ethertype(
    data: Data,
    etype: int,
    at: int,
    wire: int,
    vlan: int | None,
    vni: int | None,
    mirror: int | None,
    depth: int,
) -> Observation | None:
    if etype == ETHERTYPE_IPV4 or etype == ETHERTYPE_IPV6:
        return _ip(data, at, wire, vlan, vni, mirror, depth)
    return None


def _ip(
    data: Data,
    at: int,
    wire: int,
    vlan: int | None,
    vni: int | None,
    mirror: int | None,
    depth: int,
) -> Observation | None:
    version = data[at] >> 4
    fragment = None
    if version == 4:
        ihl = (data[at] & 0x0F) * 4
        end = at + _H(data, at + 2)[0]
        flags_offset = _H(data, at + 6)[0]
        proto = data[at + 9]
        src = bytes(data[at + 12 : at + 16])
        dst = bytes(data[at + 16 : at + 20])
        if len(dst) != 4 or ihl < 20:
            return None
        l4 = at + ihl
        if flags_offset & 0x3FFF:  # MF or an offset: a fragment
            fragment = _H(data, at + 4)[0]
            if flags_offset & 0x1FFF:  # not the first: no transport header here
                return Observation(proto, src, dst, -1, -1, wire, True, vlan, vni, mirror,
                                   fragment=fragment)  # fmt: skip
    elif version == 6:
        nh = data[at + 6]
        end = at + IPV6_HEADER + _H(data, at + 4)[0]
        src = bytes(data[at + 8 : at + 24])
        dst = bytes(data[at + 24 : at + 40])
        if len(dst) != 16:
            return None
        l4 = at + IPV6_HEADER
        for _ in range(8):
            if nh in IPV6_EXTENSIONS:
                nh, l4 = data[l4], l4 + 8 + data[l4 + 1] * 8
            elif nh == IPV6_FRAGMENT:
                offset_more = _H(data, l4 + 2)[0]
                fragment = _I(data, l4 + 4)[0]
                nh, l4 = data[l4], l4 + 8
                if offset_more & 0xFFF8:
                    return Observation(nh, src, dst, -1, -1, wire, True, vlan, vni, mirror,
                                       fragment=fragment)  # fmt: skip
            else:
                break
        proto = nh
    else:
        return None
    if proto == _TCP:
        sport, dport = _HH(data, l4)
        doff = (data[l4 + 12] >> 4) * 4
        payload = max(0, end - l4 - doff)  # on the wire, even where the capture cut it
        return Observation(proto, src, dst, sport, dport, wire, True, vlan, vni, mirror,
                           data[l4 + 13], payload, fragment)  # fmt: skip
    if proto == _UDP:
        sport, dport = _HH(data, l4)
        if depth < _MAX_DEPTH and fragment is None and dport in _UDP_TUNNELS:
            inner = _UDP_TUNNELS[dport](data, l4 + 8, wire, mirror, depth + 1)
            if inner is not None:
                return inner
        return Observation(proto, src, dst, sport, dport, wire, True, vlan, vni, mirror,
                           fragment=fragment)  # fmt: skip
    if proto == _ICMP or proto == _ICMPV6:
        kind = data[l4]
        ident = _H(data, l4 + 4)[0] if (proto, kind) in _ECHO else 0
        return Observation(proto, src, dst, ident, ident, wire, True, vlan, vni, mirror,
                           fragment=fragment)  # fmt: skip
    if proto == IPPROTO_GRE and depth < _MAX_DEPTH and fragment is None:
        inner = _gre(data, l4, wire, vni, depth + 1)
        if inner is not None:
            return inner
    return Observation(proto, src, dst, 0, 0, wire, True, vlan, vni, mirror, fragment=fragment)


def _gre(data: Data, at: int, wire: int, vni: int | None, depth: int) -> Observation | None:
    """GRE's inner frame; its bytes count as the outer frame's (as tshark's conv tables do),
    and its key (or ERSPAN session) is the mirror key."""
    flags, proto = _HH(data, at)
    if flags & UNDECODABLE:
        return None
    p = at + GRE_FIXED_LEN
    key = None
    if flags & FLAG_C:
        p += 4
    if flags & FLAG_K:
        key = _I(data, p)[0]
        p += 4
    if flags & FLAG_S:
        p += 4
    if proto == ETHERTYPE_TEB:
        return _ethernet(data, p, wire, vni, key, depth)
    if proto == ETHERTYPE_IPV4 or proto == ETHERTYPE_IPV6:
        return _ip(data, p, wire, None, vni, key, depth)
    if proto == ETHERTYPE_ERSPAN_II:
        if not flags & FLAG_S:  # type I: the frame follows GRE
            return _ethernet(data, p, wire, vni, key, depth)
        session = _H(data, p + 2)[0] & 0x03FF
        return _ethernet(data, p + ERSPAN_II_LEN, wire, vni, session, depth)
    if proto == ETHERTYPE_ERSPAN_III:
        session = _H(data, p + 2)[0] & 0x03FF
        w3 = _H(data, p + 10)[0]
        p += ERSPAN_III_LEN + (ERSPAN_III_PLATFORM_LEN if w3 & 1 else 0)
        if (w3 >> 10) & 0x1F == FT_IP:
            return _ip(data, p, wire, None, vni, session, depth)
        return _ethernet(data, p, wire, vni, session, depth)
    return None


def _vxlan(data: Data, at: int, wire: int, mirror: int | None, depth: int) -> Observation | None:
    # 8 bytes: flags (the I bit says the VNI is valid), reserved, VNI (24 bits), reserved
    if not data[at] & 0x08:
        return None
    return _ethernet(data, at + 8, wire, _I(data, at + 4)[0] >> 8, mirror, depth)


def _geneve(data: Data, at: int, wire: int, mirror: int | None, depth: int) -> Observation | None:
    # version and option length (4-byte words), flags, protocol type, VNI (24 bits)
    if _H(data, at + 2)[0] != ETHERTYPE_TEB:
        return None
    inner = at + 8 + (data[at] & 0x3F) * 4
    return _ethernet(data, inner, wire, _I(data, at + 4)[0] >> 8, mirror, depth)


def _gre_in_udp(
    data: Data, at: int, wire: int, mirror: int | None, depth: int
) -> Observation | None:
    return _gre(data, at, wire, None, depth)


_UDP_TUNNELS = {VXLAN_PORT: _vxlan, GENEVE_PORT: _geneve, GRE_UDP_PORT: _gre_in_udp}
