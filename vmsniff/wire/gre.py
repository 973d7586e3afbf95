"""GRE header, RFC 2784 with the key and sequence extensions of RFC 2890 (the layout is drawn
in :mod:`vmsniff.formats.gre`).

Only version 0 is decoded. Version 1 is PPTP's enhanced GRE (RFC 2637): a different header
with an acknowledgment field, never produced by a mirror; it raises :class:`MalformedPacket`.

RFC 2784 section 2.3 asks a receiver to discard packets with any of bits 1-5 set unless it
implements RFC 1701. We follow RFC 1701 where that changes nothing: the strict-source-route
bit ``s`` and the recursion control only matter to routers and add no fields, so they are
accepted (tcpdump and Wireshark do the same). The routing bit ``R`` adds RFC 1701 source route
entries; nobody sends them any more and they are rejected.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vmsniff.errors import MalformedPacket
from vmsniff.formats.gre import FLAG_C, FLAG_K, FLAG_R, FLAG_S
from vmsniff.formats.gre import VERSION_MASK as _VERSION
from vmsniff.wire.ipv4 import checksum as _inet_checksum

__all__ = [
    "FLAG_C",
    "FLAG_K",
    "FLAG_R",
    "FLAG_S",
    "GreHeader",
    "encode_gre",
    "parse_gre",
    "verify_gre_checksum",
]

_FIXED = struct.Struct("!HH")
_WORD = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class GreHeader:
    """A decoded GRE version 0 header. ``flags`` is the whole first 16-bit word."""

    flags: int
    proto: int
    checksum: int | None
    key: int | None
    seq: int | None
    header_len: int


def parse_gre(buf: bytes | bytearray | memoryview) -> GreHeader:
    """Decode the GRE header at the start of ``buf``; :class:`MalformedPacket` if it is not one."""
    mv = memoryview(buf)
    if len(mv) < 4:
        raise MalformedPacket(f"GRE: {len(mv)} bytes, shorter than a header")
    flags, proto = _FIXED.unpack_from(mv)
    version = flags & _VERSION
    if version != 0:
        what = " (PPTP enhanced GRE)" if version == 1 else ""
        raise MalformedPacket(f"GRE: unsupported version {version}{what}")
    if flags & FLAG_R:
        raise MalformedPacket("GRE: unsupported routing present bit (RFC 1701)")
    hlen = 4 + 4 * (bool(flags & FLAG_C) + bool(flags & FLAG_K) + bool(flags & FLAG_S))
    if len(mv) < hlen:
        raise MalformedPacket(f"GRE: header of {hlen} bytes cut at {len(mv)}")
    off = 4
    csum = key = seq = None
    if flags & FLAG_C:
        csum = mv[4] << 8 | mv[5]
        off = 8
    if flags & FLAG_K:
        key = _WORD.unpack_from(mv, off)[0]
        off += 4
    if flags & FLAG_S:
        seq = _WORD.unpack_from(mv, off)[0]
    return GreHeader(flags, proto, csum, key, seq, hlen)


def encode_gre(
    proto: int,
    payload: bytes = b"",
    *,
    key: int | None = None,
    seq: int | None = None,
    with_checksum: bool = False,
    extra_flags: int = 0,
) -> bytes:
    """Build a GRE version 0 header followed by ``payload``.

    With ``with_checksum`` the checksum covers header and payload (RFC 2784 section 2.5).
    ``extra_flags`` ORs in other bits of the first word (``s``, recursion) for tests.
    """
    flags = extra_flags & ~(FLAG_C | FLAG_K | FLAG_S | _VERSION)
    opt = b""
    if with_checksum:
        flags |= FLAG_C
        opt += b"\x00\x00\x00\x00"
    if key is not None:
        flags |= FLAG_K
        opt += _WORD.pack(key)
    if seq is not None:
        flags |= FLAG_S
        opt += _WORD.pack(seq)
    out = _FIXED.pack(flags, proto) + opt + payload
    if with_checksum:
        out = out[:4] + _inet_checksum(out).to_bytes(2, "big") + out[6:]
    return out


def verify_gre_checksum(buf: bytes | bytearray | memoryview) -> bool | None:
    """Check the GRE checksum of a whole (uncut) GRE packet; None when it carries none."""
    head = parse_gre(buf)
    if head.checksum is None:
        return None
    return _inet_checksum(buf) == 0
