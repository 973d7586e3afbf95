"""Dissect a frame into its layers: :func:`decode` and :class:`Frame`.

Dissection reads each header with ``struct`` from the frame's bytes and stops at the first one
it cannot read: the layers before it are kept and :attr:`Frame.error` says what stopped it (a
header cut short, a length that does not add up), never an exception. Tunnels are followed
(GRE with Ethernet or IP inside, GRE-in-UDP, ERSPAN I/II/III, VXLAN, Geneve), so a frame can
hold a layer name more than once: :meth:`Frame.find` gives the outermost by default and the
innermost with ``innermost=True``. Payload hints (DNS, DHCP, OpenFlow) are read where cheap.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar, overload

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
from vmsniff.formats.ip import IPPROTO_GRE, IPV6_EXTENSIONS, IPV6_FRAGMENT, IPV6_HEADER
from vmsniff.model import Direction

__all__ = ["Frame", "decode"]

L = TypeVar("L", bound=Layer)
Data = bytes | bytearray | memoryview

_H = struct.Struct("!H").unpack_from
_HH = struct.Struct("!HH").unpack_from
_I = struct.Struct("!I").unpack_from
_TPIDS = frozenset(TPIDS)
_ECHO4 = (0, 8)
_ECHO6 = (128, 129)
_ND = (135, 136)
_OPENFLOW_PORTS = (6653, 6633)
_TUNNEL_DEPTH = 4  # tunnels inside tunnels: enough for any mirror, bounded for hostile input
_NAMES = {cls.name: cls for cls in (Ethernet, Vlan, Arp, IPv4, IPv6, Icmp, ICMPv6, Tcp, Udp,
                                    Gre, Erspan, Vxlan, Geneve, Dns, Dhcp, OpenFlow)}  # fmt: skip


class _Stop(Exception):
    """Dissection cannot go on: the reason becomes Frame.error."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A dissected frame: its layers, outermost first, and what was known of it."""

    data: bytes
    """The frame's bytes as captured."""
    linktype: int
    layers: tuple[Layer, ...]
    error: str | None = None
    """Why dissection stopped before the end (a header cut short, a bad length), else None."""
    ts_ns: int | None = None
    """Capture time, nanoseconds since the epoch."""
    length: int | None = None
    """Length on the wire (the record's original length); ``len(data)`` when not known."""
    interface: str | None = None
    """The pcapng interface (vmsniff names one per NIC: ``c-private/eth0``, ``tap1234``)."""
    direction: Direction | None = None
    """From the VM's point of view, when marked (pcapng ``epb_flags``)."""

    @overload
    def find(self, name: str, *, innermost: bool = False) -> Layer | None: ...

    @overload
    def find(self, name: type[L], *, innermost: bool = False) -> L | None: ...

    def find(self, name: str | type[L], *, innermost: bool = False) -> Layer | L | None:
        """The layer called ``name`` (``"ipv4"``) or of class ``name`` (``IPv4``): the
        outermost, or the innermost (inside tunnels) with ``innermost``; None when absent.
        An unknown name is a ``KeyError`` (a typo should not look like an absent layer)."""
        cls = _NAMES[name] if isinstance(name, str) else name
        found = (layer for layer in (reversed(self.layers) if innermost else self.layers)
                 if isinstance(layer, cls))  # fmt: skip
        return next(found, None)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    @property
    def wire_length(self) -> int:
        return self.length if self.length is not None else len(self.data)

    def payload(self, layer: Layer) -> bytes:
        """The bytes after ``layer``'s header up to the next layer (or the frame's end)."""
        later = [x.offset for x in self.layers if x.offset > layer.offset]
        start = _header_end(layer, self.data)
        return self.data[start : min(later) if later else len(self.data)]


def _header_end(layer: Layer, data: bytes) -> int:
    size = {Ethernet: ETH_HEADER_LEN, Vlan: VLAN_TAG_LEN, Udp: 8, Icmp: 8, ICMPv6: 8}
    if isinstance(layer, IPv4 | Tcp):
        return layer.offset + layer.header_length
    if isinstance(layer, IPv6):
        return layer.offset + IPV6_HEADER
    return layer.offset + size.get(type(layer), 0)


def decode(
    data: Data,
    linktype: int = LINKTYPE_ETHERNET,
    *,
    ts_ns: int | None = None,
    length: int | None = None,
    interface: str | None = None,
    direction: Direction | None = None,
) -> Frame:
    """Dissect ``data``, a frame of ``linktype`` (a pcap LINKTYPE_*: Ethernet, raw IP, Linux
    cooked v1/v2, BSD loopback). Never raises for the frame's content."""
    raw = bytes(data)
    layers: list[Layer] = []
    error = None
    try:
        if linktype == LINKTYPE_ETHERNET:
            _ethernet(raw, 0, layers, 0)
        elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
            _ip(raw, 0, layers, 0)
        elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            _ip(raw, 4, layers, 0)
        elif linktype == LINKTYPE_LINUX_SLL:
            _ethertype(raw, _H(raw, 14)[0], 16, layers, 0)
        elif linktype == LINKTYPE_LINUX_SLL2:
            _ethertype(raw, _H(raw, 0)[0], 20, layers, 0)
        else:
            error = f"link type {linktype}: not dissected"
    except _Stop as exc:
        error = str(exc)
    except (struct.error, IndexError, ValueError):
        last = layers[-1].name if layers else "frame"
        error = f"cut short after {last}" if layers else "cut short"
    return Frame(raw, linktype, tuple(layers), error, ts_ns, length, interface, direction)


def _mac(raw: bytes, at: int) -> str:
    mac = raw[at : at + 6]
    if len(mac) != 6:
        raise _Stop("MAC address cut short")
    return mac.hex(":")


def _ethernet(raw: bytes, at: int, layers: list[Layer], depth: int) -> None:
    if len(raw) - at < ETH_HEADER_LEN:
        raise _Stop(f"Ethernet: {len(raw) - at} bytes, shorter than a header")
    etype = _H(raw, at + 12)[0]
    tags = []
    pos = at + ETH_HEADER_LEN
    tag_at = at + 12
    while etype in _TPIDS:
        tci, inner = _HH(raw, pos)
        tags.append(Vlan(tag_at, etype, tci >> 13, tci >> 12 & 1, tci & 0x0FFF, inner))
        tag_at, etype, pos = pos + 2, inner, pos + VLAN_TAG_LEN
        if len(tags) > 8:
            raise _Stop("Ethernet: more than 8 VLAN tags")
    layers.append(Ethernet(at, _mac(raw, at), _mac(raw, at + 6), etype))
    layers.extend(tags)
    _ethertype(raw, etype, pos, layers, depth)


def _ethertype(raw: bytes, etype: int, at: int, layers: list[Layer], depth: int) -> None:
    if etype == ETHERTYPE_IPV4 or etype == ETHERTYPE_IPV6:
        _ip(raw, at, layers, depth)
    elif etype == ETHERTYPE_ARP:
        htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", raw, at)
        if (htype, ptype, hlen, plen) != (1, ETHERTYPE_IPV4, 6, 4):
            return  # not IPv4 over Ethernet: left undissected
        layers.append(Arp(at, op, _mac(raw, at + 8), _ip4(raw, at + 14), _mac(raw, at + 18),
                          _ip4(raw, at + 24)))  # fmt: skip


def _ip4(raw: bytes, at: int) -> str:
    addr = raw[at : at + 4]
    if len(addr) != 4:
        raise _Stop("IPv4 address cut short")
    return socket.inet_ntop(socket.AF_INET, addr)


def _ip6(raw: bytes, at: int) -> str:
    addr = raw[at : at + 16]
    if len(addr) != 16:
        raise _Stop("IPv6 address cut short")
    return socket.inet_ntop(socket.AF_INET6, addr)


def _ip(raw: bytes, at: int, layers: list[Layer], depth: int) -> None:
    version = raw[at] >> 4
    if version == 4:
        vihl, tos, total, ident, flags_offset, ttl, proto, csum = struct.unpack_from(
            "!BBHHHBBH", raw, at
        )
        ihl = (vihl & 0x0F) * 4
        if ihl < 20:
            raise _Stop(f"IPv4: header length {ihl}, below 20")
        ip = IPv4(at, ihl, tos, total, ident, bool(flags_offset & 0x4000),
                  bool(flags_offset & 0x2000), (flags_offset & 0x1FFF) * 8, ttl, proto, csum,
                  _ip4(raw, at + 12), _ip4(raw, at + 16), raw[at + 20 : at + ihl])  # fmt: skip
        layers.append(ip)
        if ip.fragment_offset:
            return  # a later fragment: no transport header here
        _transport(raw, proto, at + ihl, at + total, layers, depth)
    elif version == 6:
        vtf, plen, nh, hops = struct.unpack_from("!IHBB", raw, at)
        src, dst = _ip6(raw, at + 8), _ip6(raw, at + 24)
        pos, proto = at + IPV6_HEADER, nh
        exts: list[int] = []
        frag_off, more, frag_id = 0, False, None
        while proto in IPV6_EXTENSIONS or proto == IPV6_FRAGMENT:
            if len(exts) >= 8:
                raise _Stop("IPv6: more than 8 extension headers")
            exts.append(proto)
            if proto == IPV6_FRAGMENT:
                offset_more, frag_id = _H(raw, pos + 2)[0], _I(raw, pos + 4)[0]
                frag_off, more = offset_more & 0xFFF8, bool(offset_more & 1)
                proto, pos = raw[pos], pos + 8
            else:
                proto, pos = raw[pos], pos + 8 + raw[pos + 1] * 8
        layers.append(IPv6(at, vtf >> 20 & 0xFF, vtf & 0xFFFFF, plen, nh, hops, src, dst,
                           tuple(exts), proto, frag_off, more, frag_id))  # fmt: skip
        if frag_off:
            return
        _transport(raw, proto, pos, at + IPV6_HEADER + plen, layers, depth)
    else:
        raise _Stop(f"IP version {version}")


def _transport(raw: bytes, proto: int, at: int, end: int, layers: list[Layer], depth: int) -> None:
    if proto == 6:
        sport, dport, seq, ack, off_flags, window, csum, urg = struct.unpack_from(
            "!HHIIHHHH", raw, at
        )
        hlen = (off_flags >> 12) * 4
        if hlen < 20:
            raise _Stop(f"TCP: header length {hlen}, below 20")
        layers.append(Tcp(at, sport, dport, seq, ack, hlen, off_flags & 0xFF, window, csum, urg,
                          raw[at + 20 : at + hlen], max(0, end - at - hlen)))  # fmt: skip
        if (sport in _OPENFLOW_PORTS or dport in _OPENFLOW_PORTS) and len(raw) >= at + hlen + 8:
            version, kind, length, xid = struct.unpack_from("!BBHI", raw, at + hlen)
            if 1 <= version <= 6 and length >= 8:
                layers.append(OpenFlow(at + hlen, version, kind, length, xid))
        elif sport == 53 or dport == 53:
            _dns(raw, at + hlen + 2, layers)  # a 2-byte length before each message
    elif proto == 17:
        sport, dport, length, csum = struct.unpack_from("!HHHH", raw, at)
        layers.append(Udp(at, sport, dport, length, csum))
        body = at + 8
        if depth < _TUNNEL_DEPTH and dport == 4789:
            flags, vni = raw[body], _I(raw, body + 4)[0] >> 8
            if flags & 0x08:
                layers.append(Vxlan(body, vni))
                _ethernet(raw, body + 8, layers, depth + 1)
        elif depth < _TUNNEL_DEPTH and dport == 6081:
            optlen, proto_type, vni = (
                (raw[body] & 0x3F) * 4,
                _H(raw, body + 2)[0],
                _I(raw, body + 4)[0] >> 8,
            )  # noqa: E501
            layers.append(Geneve(body, vni, proto_type, raw[body + 8 : body + 8 + optlen]))
            if proto_type == ETHERTYPE_TEB:
                _ethernet(raw, body + 8 + optlen, layers, depth + 1)
        elif depth < _TUNNEL_DEPTH and dport == 4754:
            _gre(raw, body, layers, depth + 1)
        elif sport == 53 or dport == 53:
            _dns(raw, body, layers)
        elif {sport, dport} <= {67, 68}:
            _dhcp(raw, body, layers)
    elif proto == 1:
        kind, code, csum = struct.unpack_from("!BBH", raw, at)
        ident, seq = _HH(raw, at + 4) if kind in _ECHO4 else (None, None)
        layers.append(Icmp(at, kind, code, csum, ident, seq))
    elif proto == 58:
        kind, code, csum = struct.unpack_from("!BBH", raw, at)
        ident, seq = _HH(raw, at + 4) if kind in _ECHO6 else (None, None)
        target = _ip6(raw, at + 8) if kind in _ND else None
        layers.append(ICMPv6(at, kind, code, csum, ident, seq, target))
    elif proto == IPPROTO_GRE and depth < _TUNNEL_DEPTH:
        _gre(raw, at, layers, depth + 1)


def _gre(raw: bytes, at: int, layers: list[Layer], depth: int) -> None:
    flags, proto = _HH(raw, at)
    if flags & UNDECODABLE:
        raise _Stop(f"GRE: flags/version 0x{flags:04x} not decoded")
    pos = at + GRE_FIXED_LEN + (4 if flags & FLAG_C else 0)
    key = seq = None
    if flags & FLAG_K:
        key, pos = _I(raw, pos)[0], pos + 4
    if flags & FLAG_S:
        seq, pos = _I(raw, pos)[0], pos + 4
    layers.append(Gre(at, flags, proto, key, seq))
    if proto == ETHERTYPE_TEB:
        _ethernet(raw, pos, layers, depth)
    elif proto == ETHERTYPE_IPV4 or proto == ETHERTYPE_IPV6:
        _ip(raw, pos, layers, depth)
    elif proto == ETHERTYPE_ERSPAN_II:
        if seq is None:
            layers.append(Erspan(pos, 1, None, None, None))
            _ethernet(raw, pos, layers, depth)
            return
        w0, w1 = _HH(raw, pos)
        layers.append(Erspan(pos, 2, w1 & 0x03FF, w0 & 0x0FFF, None))
        _ethernet(raw, pos + ERSPAN_II_LEN, layers, depth)
    elif proto == ETHERTYPE_ERSPAN_III:
        w0, w1 = _HH(raw, pos)
        w3 = _H(raw, pos + 10)[0]
        layers.append(Erspan(pos, 3, w1 & 0x03FF, w0 & 0x0FFF, w3 >> 3 & 1))
        inner = pos + ERSPAN_III_LEN + (ERSPAN_III_PLATFORM_LEN if w3 & 1 else 0)
        if (w3 >> 10) & 0x1F == FT_IP:
            _ip(raw, inner, layers, depth)
        else:
            _ethernet(raw, inner, layers, depth)


def _dns(raw: bytes, at: int, layers: list[Layer]) -> None:
    if len(raw) < at + 12:
        return
    ident, flags, qdcount = struct.unpack_from("!HHH", raw, at)
    qname = qtype = None
    if qdcount:
        labels: list[str] = []
        pos = at + 12
        while pos < len(raw) and raw[pos] and len(labels) < 128:
            size = raw[pos]
            if size & 0xC0 or pos + 1 + size > len(raw):  # compression in a question, or cut
                labels = []
                break
            labels.append(raw[pos + 1 : pos + 1 + size].decode("ascii", "replace"))
            pos += 1 + size
        if labels and pos + 5 <= len(raw):
            qname = ".".join(labels)
            qtype = _H(raw, pos + 1)[0]
    layers.append(Dns(at, ident, bool(flags & 0x8000), qname, qtype))


def _dhcp(raw: bytes, at: int, layers: list[Layer]) -> None:
    if len(raw) < at + 240 or raw[at + 236 : at + 240] != b"\x63\x82\x53\x63":
        return  # not BOOTP with the DHCP magic cookie
    op, xid = raw[at], _I(raw, at + 4)[0]
    kind, pos = None, at + 240
    while pos < len(raw) and raw[pos] != 255:
        if raw[pos] == 0:
            pos += 1
            continue
        if pos + 2 > len(raw):
            break
        if raw[pos] == 53 and pos + 2 < len(raw):
            kind = raw[pos + 2]
            break
        pos += 2 + raw[pos + 1]
    layers.append(Dhcp(at, op, xid, kind))
