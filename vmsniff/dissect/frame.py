"""Dissect a frame into its layers: :func:`decode` and :class:`Frame`, lazily, without copies.

:func:`decode` only wraps the frame's bytes: nothing is read until the frame is asked for a
layer (:meth:`Frame.find`, :attr:`Frame.layers`, iteration) or for :attr:`Frame.error`. Then
the one header walk (:mod:`._walk`) finds where each layer is, and each layer object is built
from the bytes the first time it is asked for: ``frame.find("tcp")`` builds the TCP layer and
no other. Dissection stops at the first header it cannot read: the layers before it are kept
and :attr:`Frame.error` says what stopped it, never an exception. Tunnels are followed, so a
frame can hold a layer name more than once: :meth:`Frame.find` gives the outermost by default
and the innermost with ``innermost=True``. Payload hints (DNS, DHCP, OpenFlow) are read where
cheap.

The frame keeps the object it was given (bytes, bytearray or memoryview), not a copy: a
caller that reuses a buffer must not change it while the frame is in use.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast, overload

from vmsniff.dissect._walk import DHCP_MAGIC, ECHO4, ECHO6, ND, Data, Entry, walk
from vmsniff.dissect.layers import (
    LAYERS,
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
from vmsniff.formats.capture import LINKTYPE_ETHERNET
from vmsniff.formats.ethernet import ETH_HEADER_LEN, VLAN_TAG_LEN
from vmsniff.formats.ip import IPV6_HEADER
from vmsniff.model import Direction

__all__ = ["Frame", "decode"]

L = TypeVar("L", bound=Layer)

_NAMES = {cls.name: cls for cls in LAYERS}
#: what find(cls) matches: the class itself (a user's subclass of Layer: by issubclass)
_KINDS: dict[type[Layer], tuple[type[Layer], ...]] = {cls: (cls,) for cls in LAYERS}
_KINDS[Layer] = LAYERS


class Frame:
    """A dissected frame: its layers, outermost first, and what was known of it.

    Read-only; its layers are found and built when first asked for."""

    __slots__ = ("_data", "_linktype", "_ts_ns", "_length", "_interface", "_direction",
                 "_found", "_error", "_built", "_layers")  # fmt: skip

    def __init__(
        self,
        data: Data,
        linktype: int = LINKTYPE_ETHERNET,
        ts_ns: int | None = None,
        length: int | None = None,
        interface: str | None = None,
        direction: Direction | None = None,
    ) -> None:
        self._data = data
        self._linktype = linktype
        self._ts_ns = ts_ns
        self._length = length
        self._interface = interface
        self._direction = direction
        self._found: list[Entry] | None = None
        self._error: str | None = None
        self._built: list[Layer | None] | None = None
        self._layers: tuple[Layer, ...] | None = None

    @property
    def data(self) -> Data:
        """The frame's bytes as captured (the object given to :func:`decode`, not a copy)."""
        return self._data

    @property
    def linktype(self) -> int:
        """Its pcap link type."""
        return self._linktype

    @property
    def ts_ns(self) -> int | None:
        """Capture time, nanoseconds since the epoch."""
        return self._ts_ns

    @property
    def length(self) -> int | None:
        """Length on the wire (the record's original length); ``len(data)`` when not known."""
        return self._length

    @property
    def interface(self) -> str | None:
        """The pcapng interface (vmsniff names one per NIC: ``c-private/eth0``, ``tap1234``)."""
        return self._interface

    @property
    def direction(self) -> Direction | None:
        """From the VM's point of view, when marked (pcapng ``epb_flags``)."""
        return self._direction

    @property
    def layers(self) -> tuple[Layer, ...]:
        """Every layer, outermost first, tunnels included."""
        if self._layers is None:
            found = self._found if self._found is not None else self._walk()
            self._layers = tuple(self._layer(i) for i in range(len(found)))
        return self._layers

    @property
    def error(self) -> str | None:
        """Why dissection stopped before the end (a header cut short, a bad length), else None."""
        if self._found is None:
            self._walk()
        return self._error

    @property
    def wire_length(self) -> int:
        return self._length if self._length is not None else len(self._data)

    @overload
    def find(self, name: str, *, innermost: bool = False) -> Layer | None: ...

    @overload
    def find(self, name: type[L], *, innermost: bool = False) -> L | None: ...

    def find(self, name: str | type[L], *, innermost: bool = False) -> Layer | L | None:
        """The layer called ``name`` (``"ipv4"``) or of class ``name`` (``IPv4``): the
        outermost, or the innermost (inside tunnels) with ``innermost``; None when absent.
        An unknown name is a ``KeyError`` (a typo should not look like an absent layer)."""
        cls = _NAMES[name] if isinstance(name, str) else name
        kinds = _KINDS.get(cls)
        if kinds is None:  # a class of the caller's: whatever is one
            kinds = tuple(k for k in LAYERS if issubclass(k, cls))
        found = self._found if self._found is not None else self._walk()
        if innermost:
            for i in range(len(found) - 1, -1, -1):
                if found[i][0] in kinds:
                    return self._layer(i)
        else:
            for i, entry in enumerate(found):
                if entry[0] in kinds:
                    return self._layer(i)
        return None

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def payload(self, layer: Layer) -> bytes:
        """The bytes after ``layer``'s header up to the next layer (or the frame's end)."""
        found = self._found if self._found is not None else self._walk()
        later = [at for _kind, at, _ctx in found if at > layer.offset]
        start = _header_end(layer)
        return bytes(self._data[start : min(later) if later else len(self._data)])

    def __repr__(self) -> str:
        return (f"Frame(data={bytes(self._data)!r}, linktype={self._linktype}, "
                f"layers={self.layers!r}, error={self.error!r}, ts_ns={self._ts_ns!r}, "
                f"length={self._length!r}, interface={self._interface!r}, "
                f"direction={self._direction!r})")  # fmt: skip

    def _key(self) -> tuple[object, ...]:
        return (bytes(self._data), self._linktype, self._ts_ns, self._length, self._interface,
                self._direction)  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _walk(self) -> list[Entry]:
        found, self._error = walk(self._data, self._linktype)
        self._found = found
        return found

    def _layer(self, i: int) -> Layer:
        """The i-th layer, built from the bytes the first time."""
        found = self._found
        assert found is not None  # walked before asked
        built = self._built
        if built is None:
            built = self._built = [None] * len(found)
        layer = built[i]
        if layer is None:
            kind, at, ctx = found[i]
            layer = built[i] = _BUILD[kind](self._data, at, ctx)
        return layer


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
    cooked v1/v2, BSD loopback). Never raises for the frame's content. The frame is read
    when first asked for a layer or its error, from ``data`` itself (not a copy)."""
    return Frame(data, linktype, ts_ns, length, interface, direction)


_HEADER_SIZE = {Ethernet: ETH_HEADER_LEN, Vlan: VLAN_TAG_LEN, Udp: 8, Icmp: 8, ICMPv6: 8}


def _header_end(layer: Layer) -> int:
    if isinstance(layer, IPv4 | Tcp):
        return layer.offset + layer.header_length
    if isinstance(layer, IPv6):
        return layer.offset + IPV6_HEADER
    return layer.offset + _HEADER_SIZE.get(type(layer), 0)


# -- building a layer from its entry -----------------------------------------------------------


def _maker(cls: type[L]) -> Callable[..., L]:
    """A constructor of ``cls`` (a frozen, slotted dataclass) giving the same object as
    ``cls(...)`` about three times faster: a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``. This one fills a twin class with the same slots by plain
    assignment, then makes the object a ``cls`` (same layout, so Python allows it); from
    then on it is frozen like any other. A test holds every layer to ``cls(...)``."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    args = ", ".join(names)
    body = "".join(f"\n    self.{name} = {name}" for name in names)
    scope: dict[str, Any] = {}
    exec(f"def __init__(self, {args}):{body}", scope)  # noqa: S102 (our own field names)
    twin = type(cls.__name__, cls.__bases__, {"__slots__": tuple(names),
                                              "__init__": scope["__init__"]})  # fmt: skip
    scope = {"twin": twin, "cls": cls}
    exec(f"def make({args}):\n    obj = twin({args})\n    obj.__class__ = cls\n    return obj",
         scope)  # fmt: skip
    return cast(Callable[..., L], scope["make"])


_ntop = socket.inet_ntop
_AF4, _AF6 = socket.AF_INET, socket.AF_INET6
_H = struct.Struct("!H").unpack_from
_HH = struct.Struct("!HH").unpack_from
_I = struct.Struct("!I").unpack_from
_VLAN = struct.Struct("!HHH").unpack_from
_IP4 = struct.Struct("!BBHHHBBH4s4s").unpack_from
_IP6 = struct.Struct("!IHBB16s16s").unpack_from
_TCP = struct.Struct("!HHIIHHHH").unpack_from
_UDP = struct.Struct("!HHHH").unpack_from
_ICMP = struct.Struct("!BBH").unpack_from
_DNS = struct.Struct("!HHH").unpack_from
_OPENFLOW = struct.Struct("!BBHI").unpack_from
_new_ethernet, _new_vlan, _new_arp = _maker(Ethernet), _maker(Vlan), _maker(Arp)
_new_ipv4, _new_ipv6, _new_tcp, _new_udp = _maker(IPv4), _maker(IPv6), _maker(Tcp), _maker(Udp)
_new_icmp, _new_icmpv6, _new_gre = _maker(Icmp), _maker(ICMPv6), _maker(Gre)
_new_erspan, _new_vxlan, _new_geneve = _maker(Erspan), _maker(Vxlan), _maker(Geneve)
_new_dns, _new_dhcp, _new_openflow = _maker(Dns), _maker(Dhcp), _maker(OpenFlow)


def _ethernet(raw: Data, at: int, etype: int) -> Layer:
    return _new_ethernet(at, raw[at : at + 6].hex(":"), raw[at + 6 : at + 12].hex(":"), etype)


def _vlan(raw: Data, at: int, _ctx: None) -> Layer:
    tpid, tci, inner = _VLAN(raw, at)
    return _new_vlan(at, tpid, tci >> 13, tci >> 12 & 1, tci & 0x0FFF, inner)


def _arp(raw: Data, at: int, _ctx: None) -> Layer:
    return _new_arp(at, _H(raw, at + 6)[0], raw[at + 8 : at + 14].hex(":"),
                    _ntop(_AF4, raw[at + 14 : at + 18]), raw[at + 18 : at + 24].hex(":"),
                    _ntop(_AF4, raw[at + 24 : at + 28]))  # fmt: skip


def _ipv4(raw: Data, at: int, _ctx: None) -> Layer:
    vihl, tos, total, ident, flags_offset, ttl, proto, csum, src, dst = _IP4(raw, at)
    ihl = (vihl & 0x0F) * 4
    df, mf, offset = bool(flags_offset & 0x4000), bool(flags_offset & 0x2000), flags_offset & 0x1FFF
    return _new_ipv4(at, ihl, tos, total, ident, df, mf, offset * 8, ttl, proto, csum,
                     _ntop(_AF4, src), _ntop(_AF4, dst),
                     bytes(raw[at + 20 : at + ihl]))  # fmt: skip


def _ipv6(raw: Data, at: int, ctx: tuple[tuple[int, ...], int, int, bool, int | None]) -> Layer:
    vtf, plen, nh, hops, src, dst = _IP6(raw, at)
    return _new_ipv6(at, vtf >> 20 & 0xFF, vtf & 0xFFFFF, plen, nh, hops, _ntop(_AF6, src),
                     _ntop(_AF6, dst), *ctx)  # fmt: skip


def _tcp(raw: Data, at: int, end: int) -> Layer:
    sport, dport, seq, ack, off_flags, window, csum, urg = _TCP(raw, at)
    hlen = (off_flags >> 12) * 4
    return _new_tcp(at, sport, dport, seq, ack, hlen, off_flags & 0xFF, window, csum, urg,
                    bytes(raw[at + 20 : at + hlen]), max(0, end - at - hlen))  # fmt: skip


def _udp(raw: Data, at: int, _ctx: None) -> Layer:
    return _new_udp(at, *_UDP(raw, at))


def _icmp(raw: Data, at: int, _ctx: None) -> Layer:
    kind, code, csum = _ICMP(raw, at)
    ident, seq = _HH(raw, at + 4) if kind in ECHO4 else (None, None)
    return _new_icmp(at, kind, code, csum, ident, seq)


def _icmpv6(raw: Data, at: int, _ctx: None) -> Layer:
    kind, code, csum = _ICMP(raw, at)
    ident, seq = _HH(raw, at + 4) if kind in ECHO6 else (None, None)
    target = _ntop(_AF6, raw[at + 8 : at + 24]) if kind in ND else None
    return _new_icmpv6(at, kind, code, csum, ident, seq, target)


def _gre(raw: Data, at: int, ctx: tuple[int | None, int | None]) -> Layer:
    flags, proto = _HH(raw, at)
    return _new_gre(at, flags, proto, *ctx)


def _erspan(raw: Data, at: int, kind: int) -> Layer:
    if kind == 1:
        return _new_erspan(at, 1, None, None, None)
    w0, w1 = _HH(raw, at)
    direction = _H(raw, at + 10)[0] >> 3 & 1 if kind == 3 else None
    return _new_erspan(at, kind, w1 & 0x03FF, w0 & 0x0FFF, direction)


def _vxlan(raw: Data, at: int, _ctx: None) -> Layer:
    return _new_vxlan(at, _I(raw, at + 4)[0] >> 8)


def _geneve(raw: Data, at: int, _ctx: None) -> Layer:
    optlen = (raw[at] & 0x3F) * 4
    return _new_geneve(at, _I(raw, at + 4)[0] >> 8, _H(raw, at + 2)[0],
                       bytes(raw[at + 8 : at + 8 + optlen]))  # fmt: skip


def _dns(raw: Data, at: int, _ctx: None) -> Layer:
    ident, flags, qdcount = _DNS(raw, at)
    qname = qtype = None
    if qdcount:
        labels: list[str] = []
        pos = at + 12
        while pos < len(raw) and raw[pos] and len(labels) < 128:
            size = raw[pos]
            if size & 0xC0 or pos + 1 + size > len(raw):  # compression in a question, or cut
                labels = []
                break
            labels.append(str(raw[pos + 1 : pos + 1 + size], "ascii", "replace"))
            pos += 1 + size
        if labels and pos + 5 <= len(raw):
            qname = ".".join(labels)
            qtype = _H(raw, pos + 1)[0]
    return _new_dns(at, ident, bool(flags & 0x8000), qname, qtype)


def _dhcp(raw: Data, at: int, _ctx: None) -> Layer:
    op, xid = raw[at], _I(raw, at + 4)[0]
    kind, pos = None, at + len(DHCP_MAGIC) + 236
    while pos < len(raw) and raw[pos] != 255:
        if raw[pos] == 0:
            pos += 1
            continue
        if pos + 2 > len(raw):
            break
        if raw[pos] == 53 and pos + 2 < len(raw):  # message type (RFC 2132 section 9.6)
            kind = raw[pos + 2]
            break
        pos += 2 + raw[pos + 1]
    return _new_dhcp(at, op, xid, kind)


def _openflow(raw: Data, at: int, _ctx: None) -> Layer:
    return _new_openflow(at, *_OPENFLOW(raw, at))


_BUILD: dict[type[Layer], Callable[[Data, int, Any], Layer]] = {
    Ethernet: _ethernet, Vlan: _vlan, Arp: _arp, IPv4: _ipv4, IPv6: _ipv6, Tcp: _tcp,
    Udp: _udp, Icmp: _icmp, ICMPv6: _icmpv6, Gre: _gre, Erspan: _erspan, Vxlan: _vxlan,
    Geneve: _geneve, Dns: _dns, Dhcp: _dhcp, OpenFlow: _openflow,
}  # fmt: skip
