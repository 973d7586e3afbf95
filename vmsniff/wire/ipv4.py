"""Outer IPv4 header (RFC 791) and a small sans-IO fragment reassembler (RFC 815).

The receiver sees GRE inside IPv4. Two facts shape this module:

* an OVS ``Mirror.snaplen`` cuts the packet on the wire, but the outer IPv4 total length still
  claims the uncut size (FACTS.md). So the parser trusts the bytes it was given, reports
  ``truncated`` and keeps ``total_length`` so that callers can work out the original size;
* a GRE packet bigger than the underlay MTU arrives fragmented. :class:`Reassembler` takes
  fragments with the caller's timestamps (no clock inside) and hands back the whole datagram.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from vmsniff.errors import MalformedPacket

__all__ = [
    "IPV4_MIN_HEADER",
    "IPv4Header",
    "Reassembler",
    "checksum",
    "encode_ipv4",
    "format_ipv4",
    "parse_ipv4",
]

IPV4_MIN_HEADER = 20
_HDR = struct.Struct("!BBHHHBBH4s4s")
_FLAG_DF = 0x4000
_FLAG_MF = 0x2000
_OFFSET_MASK = 0x1FFF


@dataclass(frozen=True, slots=True)
class IPv4Header:
    """A decoded IPv4 header. ``frag_offset`` is in bytes (the field times 8)."""

    header_len: int
    tos: int
    total_length: int
    ident: int
    df: bool
    mf: bool
    frag_offset: int
    ttl: int
    proto: int
    checksum: int
    src: bytes
    dst: bytes
    options: bytes = b""

    @property
    def is_fragment(self) -> bool:
        """True for any fragment of a datagram (MF set or a non-zero offset)."""
        return self.mf or self.frag_offset != 0


def parse_ipv4(buf: bytes | bytearray | memoryview) -> tuple[IPv4Header, memoryview, bool]:
    """Decode the IPv4 header at the start of ``buf``.

    Returns ``(header, payload, truncated)``. ``payload`` is a view of the bytes after the
    header, ending at the total length (link-layer padding after it is dropped) or at the end of
    ``buf`` when the packet was cut short; ``truncated`` says it was. Raises
    :class:`MalformedPacket` when the bytes are not a decodable IPv4 header.
    """
    mv = memoryview(buf)
    if len(mv) < IPV4_MIN_HEADER:
        raise MalformedPacket(f"IPv4: {len(mv)} bytes, shorter than a header")
    vihl, tos, total, ident, frag, ttl, proto, csum, src, dst = _HDR.unpack_from(mv)
    if vihl >> 4 != 4:
        raise MalformedPacket(f"IPv4: version {vihl >> 4}, not 4")
    hlen = (vihl & 0x0F) * 4
    if hlen < IPV4_MIN_HEADER:
        raise MalformedPacket(f"IPv4: header length {hlen} below 20")
    if len(mv) < hlen:
        raise MalformedPacket(f"IPv4: header of {hlen} bytes cut at {len(mv)}")
    if total < hlen:
        raise MalformedPacket(f"IPv4: total length {total} smaller than header {hlen}")
    end = min(total, len(mv))
    header = IPv4Header(
        header_len=hlen,
        tos=tos,
        total_length=total,
        ident=ident,
        df=bool(frag & _FLAG_DF),
        mf=bool(frag & _FLAG_MF),
        frag_offset=(frag & _OFFSET_MASK) * 8,
        ttl=ttl,
        proto=proto,
        checksum=csum,
        src=src,
        dst=dst,
        options=bytes(mv[IPV4_MIN_HEADER:hlen]),
    )
    return header, mv[hlen:end], end < total


def checksum(data: bytes | bytearray | memoryview) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    b = bytes(data)
    if len(b) % 2:
        b += b"\x00"
    total = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def encode_ipv4(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    *,
    ident: int = 0,
    ttl: int = 64,
    tos: int = 0,
    df: bool = False,
    mf: bool = False,
    frag_offset: int = 0,
    options: bytes = b"",
    total_length: int | None = None,
) -> bytes:
    """Build an IPv4 packet with a correct checksum (for tests and the reassembler).

    ``total_length`` overrides the length field (to model a snaplen-cut packet).
    """
    if len(options) % 4 or len(options) > 40:
        raise ValueError("IPv4 options must be a multiple of 4 bytes, at most 40")
    if frag_offset % 8:
        raise ValueError("fragment offset must be a multiple of 8")
    hlen = IPV4_MIN_HEADER + len(options)
    total = hlen + len(payload) if total_length is None else total_length
    frag = (_FLAG_DF if df else 0) | (_FLAG_MF if mf else 0) | (frag_offset // 8)
    head = _HDR.pack(0x40 | hlen // 4, tos, total, ident, frag, ttl, proto, 0, src, dst) + options
    csum = checksum(head)
    return head[:10] + csum.to_bytes(2, "big") + head[12:] + payload


def format_ipv4(addr: bytes) -> str:
    """Dotted-quad text of a 4-byte address."""
    return ".".join(str(b) for b in addr)


class _Pending:
    """Fragments of one datagram seen so far."""

    __slots__ = ("first_seen", "header", "parts", "total")

    def __init__(self, now: float) -> None:
        self.first_seen = now
        self.header: Any = None  # what the fragment at offset 0 brought (IPv4: its header)
        self.parts: dict[int, bytes] = {}  # offset -> data
        self.total: int | None = None  # known once the last fragment (MF=0) arrives


class Reassembler:
    """Sans-IO IPv4 reassembly (RFC 815 style), bounded in entries and bytes.

    The caller passes each fragment with its own timestamp ``now`` (seconds, any epoch); the
    reassembler keeps at most ``max_datagrams`` partial datagrams and drops those older than
    ``timeout`` (RFC 791 suggests 15 s; Linux uses 30 s). When the table is full the oldest
    partial datagram is evicted. Overlapping or inconsistent fragments are a peer's fault: the
    datagram is dropped and :class:`MalformedPacket` raised (overlaps are how fragment attacks
    work, and a mirror never produces them). So is a datagram in more than ``max_fragments``
    pieces: each new fragment is checked against every piece held, so 8-byte fragments
    (8190 of them fit below 64 KiB) would cost seconds per datagram; a 65535-byte datagram cut
    for the smallest MTU IPv4 allows to be reassembled (576) has 120 pieces.
    """

    def __init__(
        self, *, max_datagrams: int = 64, timeout: float = 30.0, max_fragments: int = 256
    ) -> None:
        if max_datagrams < 1 or timeout <= 0 or max_fragments < 1:
            raise ValueError("max_datagrams and max_fragments must be >= 1 and timeout > 0")
        self.max_datagrams = max_datagrams
        self.max_fragments = max_fragments
        self.timeout = timeout
        self.expired = 0
        self.evicted = 0
        self._table: dict[tuple[bytes, bytes, int, int], _Pending] = {}

    def __len__(self) -> int:
        return len(self._table)

    def expire(self, now: float) -> int:
        """Drop partial datagrams older than the timeout; returns how many were dropped."""
        old = [k for k, p in self._table.items() if now - p.first_seen > self.timeout]
        for k in old:
            del self._table[k]
        self.expired += len(old)
        return len(old)

    def push(
        self, header: IPv4Header, payload: bytes | bytearray | memoryview, now: float
    ) -> bytes | None:
        """Add one fragment; return the whole reassembled IPv4 packet once complete.

        A packet that is not a fragment is returned as is (rebuilt from its parts).
        """
        data = bytes(payload)
        if header.header_len + len(data) != header.total_length:
            raise MalformedPacket("IPv4 fragment cut short: cannot reassemble")
        if not header.is_fragment:
            return _rebuild(header, data)
        if header.mf and len(data) % 8:
            raise MalformedPacket("IPv4 fragment: non-final fragment not a multiple of 8 bytes")
        end = header.frag_offset + len(data)
        if end > 0xFFFF - IPV4_MIN_HEADER:
            raise MalformedPacket("IPv4 fragment: reassembled datagram above 65535 bytes")
        key = (header.src, header.dst, header.proto, header.ident)
        done = self._collect(key, header.frag_offset, header.mf, data, now, header, "IPv4")
        if done is None:
            return None
        first, whole = done
        if first.header_len + len(whole) > 0xFFFF:
            # the offset check above counts a 20-byte header; the first fragment's options
            # may push the whole past what a total length can say (the ping of death)
            raise MalformedPacket("IPv4 fragments: reassembled datagram above 65535 bytes")
        return _rebuild(first, whole)

    def push_ipv6(
        self,
        src: bytes,
        dst: bytes,
        ident: int,
        offset: int,
        more: bool,
        data: bytes | bytearray | memoryview,
        now: float,
    ) -> bytes | None:
        """Add one IPv6 fragment (RFC 8200 section 4.5): ``offset`` in bytes, ``more`` the M
        flag, ``data`` what follows the Fragment header; return the whole fragmentable part
        once every fragment is in (the caller puts the headers back in front)."""
        data = bytes(data)
        if more and len(data) % 8:
            raise MalformedPacket("IPv6 fragment: non-final fragment not a multiple of 8 bytes")
        if offset + len(data) > 0xFFFF:
            raise MalformedPacket("IPv6 fragment: reassembled payload above 65535 bytes")
        done = self._collect((src, dst, 44, ident), offset, more, data, now, True, "IPv6")
        return None if done is None else done[1]

    def _collect(
        self,
        key: tuple[bytes, bytes, int, int],
        start: int,
        more: bool,
        data: bytes,
        now: float,
        first: Any,
        family: str,
    ) -> tuple[Any, bytes] | None:
        """File one fragment; ``(what the first fragment brought, whole payload)`` when done."""
        self.expire(now)
        pending = self._table.get(key)
        if pending is None:
            if len(self._table) >= self.max_datagrams:
                del self._table[next(iter(self._table))]
                self.evicted += 1
            pending = self._table[key] = _Pending(now)
        try:
            if len(pending.parts) >= self.max_fragments and start not in pending.parts:
                raise MalformedPacket(f"{family} fragments: more than {self.max_fragments}")
            _add(pending, start, more, data, first, family)
        except MalformedPacket:
            del self._table[key]
            raise
        if pending.total is None or pending.header is None:
            return None
        got = sum(len(p) for p in pending.parts.values())
        if got != pending.total:
            return None
        del self._table[key]
        whole = b"".join(pending.parts[o] for o in sorted(pending.parts))
        return pending.header, whole


def _add(pending: _Pending, start: int, more: bool, data: bytes, first: Any, family: str) -> None:
    end = start + len(data)
    if not more:
        if pending.total is not None and pending.total != end:
            raise MalformedPacket(f"{family} fragment: two different last fragments")
        pending.total = end
    if pending.total is not None and end > pending.total:
        raise MalformedPacket(f"{family} fragment beyond the last fragment")
    for off, part in pending.parts.items():
        if start < off + len(part) and off < end:
            if off == start and part == data:
                return  # an exact duplicate (retransmitted by a switch): ignore it
            raise MalformedPacket(f"{family} fragments overlap")
    pending.parts[start] = data
    if start == 0:
        pending.header = first


def _rebuild(header: IPv4Header, payload: bytes) -> bytes:
    return encode_ipv4(
        header.src,
        header.dst,
        header.proto,
        payload,
        ident=header.ident,
        ttl=header.ttl,
        tos=header.tos,
        df=header.df,
        options=header.options,
    )
