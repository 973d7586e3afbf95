"""What one frame says about its flow, fast: :func:`flow_key`, no layer objects built.

It stands on the same header walk as :func:`~vmsniff.dissect.decode` (:mod:`._walk`) and
reads the few fields a flow table needs at the offsets the walk found: the addresses, the
ports (an ICMP echo's identifier), the first VLAN tag, the overlay network (VXLAN/Geneve VNI)
and the mirror key (GRE key, ERSPAN session) the packet arrived under, TCP flags and payload
length, an IP fragment's identification. Through tunnels it keys the innermost packet; it
does not look inside an IP fragment's payload (a tunnel cut in pieces is counted in the
outer flow), nor inside ICMP errors or OpenFlow messages (the packets quoted there belong to
other flows). A frame whose innermost packet cannot be read to its transport header says
nothing (None): it is counted, never fatal. A test holds it to :func:`decode`'s layers.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from vmsniff.dissect._walk import ECHO4, ECHO6, Data, walk
from vmsniff.dissect.layers import (
    Erspan,
    Ethernet,
    Geneve,
    Gre,
    Icmp,
    ICMPv6,
    IPv4,
    IPv6,
    Tcp,
    Udp,
    Vlan,
    Vxlan,
)
from vmsniff.formats.capture import LINKTYPE_ETHERNET
from vmsniff.formats.ethernet import (
    ETHERTYPE_ERSPAN_II,
    ETHERTYPE_ERSPAN_III,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_TEB,
    VLAN_VID_MASK,
)
from vmsniff.formats.ip import IPV4_FRAGMENT_MASK

__all__ = ["FlowKey", "flow_key"]

_H = struct.Struct("!H").unpack_from
_HH = struct.Struct("!HH").unpack_from
_I = struct.Struct("!I").unpack_from
_IP4_FIELDS = struct.Struct("!4xHHxB2x4s4s").unpack_from  # ident, flags/offset, proto, src, dst
_IP6_ADDRS = struct.Struct("!8x16s16s").unpack_from  # src, dst
_TCP_FIELDS = struct.Struct("!HH8xBB").unpack_from  # ports, data offset, flags
#: a FlowKey from a tuple of all its fields: the NamedTuple's own __new__ is a Python
#: function taking them one by one, twice as slow for the same object
_new = tuple.__new__
_TCP, _UDP, _ICMP, _ICMPV6 = 6, 17, 1, 58
#: what GRE carries that the walk follows (an ERSPAN header, then a frame)
_GRE_CARRIES = frozenset({ETHERTYPE_TEB, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_ERSPAN_II,
                          ETHERTYPE_ERSPAN_III})  # fmt: skip


class FlowKey(NamedTuple):
    """What one packet says about its flow (the flow table's observation of it)."""

    proto: int
    """IP protocol number; for a non-IP frame the EtherType, with ``ip`` false."""
    src: bytes
    """Source address (IPv4 4 bytes, IPv6 16) or, not IP, source MAC."""
    dst: bytes
    sport: int
    """Port (TCP, UDP); ICMP/ICMPv6 echo identifier; else 0."""
    dport: int
    length: int
    """Bytes on the wire (the frame's original length)."""
    ip: bool = True
    vlan: int | None = None
    vni: int | None = None
    """The VXLAN/Geneve network the frame arrived in (part of the flow)."""
    mirror: int | None = None
    """The GRE key or ERSPAN session it was mirrored under (reported, not part of the flow)."""
    tcp_flags: int = 0
    payload: int = 0
    """TCP payload bytes (``D`` in the history)."""
    fragment: int | None = None
    """An IP fragment's identification; then ``sport``/``dport`` are -1 after the first."""


def _fragmented(data: Data, kind: type, at: int, ctx: object) -> bool:
    if kind is IPv4:
        return bool(_H(data, at + 6)[0] & IPV4_FRAGMENT_MASK)
    return ctx[4] is not None  # type: ignore[index]  # IPv6: a Fragment header's ident


def flow_key(data: Data, linktype: int = LINKTYPE_ETHERNET, length: int | None = None
             ) -> FlowKey | None:  # fmt: skip
    """The :class:`FlowKey` of one frame of ``linktype`` (None: nothing to say); ``length``
    is its original length on the wire (default: ``len(data)``)."""
    found, _error = walk(data, linktype)
    # The innermost packet's level: its Ethernet header (if any), first VLAN tag, IP and
    # transport headers, and the network and mirror key it arrived under; a tunnel's entry
    # says what the frame inside it arrives under.
    eth = eth_type = ip_at = l4_at = l4_ctx = -1
    ip_kind: type | None = None
    ip_ctx: object = None
    vlan = vni = mirror = inner_vni = inner_mirror = None
    previous: type | None = None
    inside = False  # a tunnel said a frame follows: the walk must reach it
    for kind, at, ctx in found:
        if kind is Ethernet:
            eth, eth_type, ip_kind, vlan, vni, mirror = at, ctx, None, None, inner_vni, inner_mirror
            inside = False
        elif kind is IPv4 or kind is IPv6:
            if ip_kind is not None:  # IP inside GRE or ERSPAN: a level of its own
                eth, vlan, vni, mirror = -1, None, inner_vni, inner_mirror
            ip_kind, ip_at, ip_ctx, l4_at = kind, at, ctx, -1
            inside = False
        elif kind is Tcp or kind is Udp or kind is Icmp or kind is ICMPv6:
            l4_at, l4_ctx = at, ctx
        elif kind is Vlan:
            if vlan is None:
                vlan = _H(data, at + 2)[0] & VLAN_VID_MASK
        elif kind is Vxlan or kind is Geneve or kind is Gre:
            if ip_kind is not None and _fragmented(data, ip_kind, ip_at, ip_ctx):
                break  # a piece of a tunnelled packet: counted in the outer flow
            if kind is Gre:
                inner_vni = None if previous is Udp else vni  # GRE-in-UDP: a network of its own
                inner_mirror = ctx[0]
                inside = _H(data, at + 2)[0] in _GRE_CARRIES
            else:
                inner_vni, inner_mirror = _I(data, at + 4)[0] >> 8, mirror
                inside = kind is Vxlan or _H(data, at + 2)[0] == ETHERTYPE_TEB
        elif kind is Erspan and ctx != 1:  # types II and III: the session is the key
            inner_mirror = _H(data, at + 2)[0] & 0x03FF
        previous = kind
    if inside:
        return None  # the tunnelled frame could not be read
    wire = len(data) if length is None else length
    if ip_kind is None:
        if eth < 0 or eth_type == ETHERTYPE_IPV4 or eth_type == ETHERTYPE_IPV6:
            return None  # no frame, or its IP header could not be read
        return FlowKey(eth_type, bytes(data[eth + 6 : eth + 12]), bytes(data[eth : eth + 6]),
                       0, 0, wire, False, vlan, vni, mirror)  # fmt: skip
    fragment: int | None
    if ip_kind is IPv4:
        ident, flags_offset, proto, src, dst = _IP4_FIELDS(data, ip_at)
        fragment = ident if flags_offset & IPV4_FRAGMENT_MASK else None
        later = flags_offset & 0x1FFF
    else:
        _exts, proto, later, _more, fragment = ip_ctx  # type: ignore[misc]
        src, dst = _IP6_ADDRS(data, ip_at)
    if later:  # not the first fragment: no transport header
        return _new(FlowKey, (proto, src, dst, -1, -1, wire, True, vlan, vni, mirror, 0, 0,
                              fragment))  # fmt: skip
    if proto == _TCP or proto == _UDP or proto == _ICMP or proto == _ICMPV6:
        if l4_at < 0:
            return None  # its transport header could not be read
        if proto == _TCP:
            sport, dport, data_offset, flags = _TCP_FIELDS(data, l4_at)
            payload = l4_ctx - l4_at - (data_offset >> 4) * 4  # by the IP length
            return _new(FlowKey, (proto, src, dst, sport, dport, wire, True, vlan, vni, mirror,
                                  flags, payload if payload > 0 else 0, fragment))  # fmt: skip
        if proto == _UDP:
            sport, dport = _HH(data, l4_at)
        else:
            echo = ECHO4 if proto == _ICMP else ECHO6
            sport = dport = _H(data, l4_at + 4)[0] if data[l4_at] in echo else 0
        return _new(FlowKey, (proto, src, dst, sport, dport, wire, True, vlan, vni, mirror, 0, 0,
                              fragment))  # fmt: skip
    return _new(FlowKey, (proto, src, dst, 0, 0, wire, True, vlan, vni, mirror, 0, 0, fragment))
