"""ERSPAN headers, after draft-foschiano-erspan-03 ("Cisco Systems' Encapsulated Remote Switch
Port Analyzer (ERSPAN)", https://datatracker.ietf.org/doc/html/draft-foschiano-erspan-03).

ERSPAN rides in GRE (section 4):

* type I: GRE protocol 0x88BE with no sequence number; no ERSPAN header, the mirrored Ethernet
  frame follows the 4-byte GRE header (section 4.1);
* type II: GRE protocol 0x88BE with the S bit; an 8-byte header, version 1 (section 4.2)::

    |  Ver  |          VLAN         | COS | En|T|    Session ID     |
    |      Reserved         |                 Index                 |

* type III: GRE protocol 0x22EB; a 12-byte header, version 2, and when ``O`` is set an 8-byte
  platform-specific subheader (section 4.3)::

    |  Ver  |          VLAN         | COS |BSO|T|     Session ID    |
    |                          Timestamp                            |
    |             SGT               |P|    FT   |   Hw ID   |D|Gra|O|
    |  Platf ID |               Platform Specific Info              |  (when O = 1)
    |                  Platform Specific Info                       |

  ``FT`` is the frame type: 0 is an Ethernet frame, 2 an IP packet; ``D`` the direction of the
  mirrored traffic, 0 ingress and 1 egress.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vmsniff.errors import MalformedPacket
from vmsniff.formats.erspan import DIRECTION_EGRESS, DIRECTION_INGRESS, FT_ETHERNET, FT_IP
from vmsniff.formats.ethernet import ETHERTYPE_ERSPAN_II as ERSPAN_II_PROTO
from vmsniff.formats.ethernet import ETHERTYPE_ERSPAN_III as ERSPAN_III_PROTO

__all__ = [
    "DIRECTION_EGRESS",
    "DIRECTION_INGRESS",
    "ERSPAN_II_PROTO",
    "ERSPAN_III_PROTO",
    "FT_ETHERNET",
    "FT_IP",
    "ErspanII",
    "ErspanIII",
    "encode_erspan_ii",
    "encode_erspan_iii",
    "parse_erspan_ii",
    "parse_erspan_iii",
]

_II = struct.Struct("!HHI")
_III = struct.Struct("!HHIHH")
_PLATFORM = struct.Struct("!Q")


@dataclass(frozen=True, slots=True)
class ErspanII:
    """An ERSPAN type II header (version 1), 8 bytes."""

    vlan: int
    cos: int
    en: int
    t: int
    session_id: int
    index: int
    header_len: int = 8


@dataclass(frozen=True, slots=True)
class ErspanIII:
    """An ERSPAN type III header (version 2), 12 bytes or 20 with the platform subheader."""

    vlan: int
    cos: int
    bso: int
    t: int
    session_id: int
    timestamp: int
    sgt: int
    p: int
    ft: int
    hw_id: int
    d: int
    gra: int
    platf_id: int | None = None
    platf_info: int | None = None

    @property
    def o(self) -> int:
        """The O bit: 1 when the platform-specific subheader follows."""
        return int(self.platf_id is not None)

    @property
    def header_len(self) -> int:
        """Bytes of ERSPAN header before the mirrored frame."""
        return 20 if self.platf_id is not None else 12


def parse_erspan_ii(buf: bytes | bytearray | memoryview) -> ErspanII:
    """Decode an ERSPAN type II header (after a GRE header with the S bit)."""
    mv = memoryview(buf)
    if len(mv) < 8:
        raise MalformedPacket(f"ERSPAN II: {len(mv)} bytes, shorter than its 8-byte header")
    w0, w1, w2 = _II.unpack_from(mv)
    if w0 >> 12 != 1:
        raise MalformedPacket(f"ERSPAN II: version {w0 >> 12}, not 1")
    return ErspanII(
        vlan=w0 & 0x0FFF,
        cos=w1 >> 13,
        en=(w1 >> 11) & 3,
        t=(w1 >> 10) & 1,
        session_id=w1 & 0x03FF,
        index=w2 & 0x000FFFFF,
    )


def parse_erspan_iii(buf: bytes | bytearray | memoryview) -> ErspanIII:
    """Decode an ERSPAN type III header and its optional platform subheader."""
    mv = memoryview(buf)
    if len(mv) < 12:
        raise MalformedPacket(f"ERSPAN III: {len(mv)} bytes, shorter than its 12-byte header")
    w0, w1, ts, sgt, w3 = _III.unpack_from(mv)
    if w0 >> 12 != 2:
        raise MalformedPacket(f"ERSPAN III: version {w0 >> 12}, not 2")
    platf_id = platf_info = None
    if w3 & 1:
        if len(mv) < 20:
            raise MalformedPacket("ERSPAN III: platform subheader cut short")
        word = _PLATFORM.unpack_from(mv, 12)[0]
        platf_id = word >> 58
        platf_info = word & ((1 << 58) - 1)
    return ErspanIII(
        vlan=w0 & 0x0FFF,
        cos=w1 >> 13,
        bso=(w1 >> 11) & 3,
        t=(w1 >> 10) & 1,
        session_id=w1 & 0x03FF,
        timestamp=ts,
        sgt=sgt,
        p=w3 >> 15,
        ft=(w3 >> 10) & 0x1F,
        hw_id=(w3 >> 4) & 0x3F,
        d=(w3 >> 3) & 1,
        gra=(w3 >> 1) & 3,
        platf_id=platf_id,
        platf_info=platf_info,
    )


def encode_erspan_ii(h: ErspanII) -> bytes:
    """The 8 bytes of an ERSPAN type II header (the reserved bits are zero)."""
    return _II.pack(
        1 << 12 | h.vlan,
        h.cos << 13 | h.en << 11 | h.t << 10 | h.session_id,
        h.index,
    )


def encode_erspan_iii(h: ErspanIII) -> bytes:
    """The 12 (or 20) bytes of an ERSPAN type III header."""
    w3 = h.p << 15 | h.ft << 10 | h.hw_id << 4 | h.d << 3 | h.gra << 1 | h.o
    out = _III.pack(
        2 << 12 | h.vlan,
        h.cos << 13 | h.bso << 11 | h.t << 10 | h.session_id,
        h.timestamp,
        h.sgt,
        w3,
    )
    if h.platf_id is not None:
        out += _PLATFORM.pack(h.platf_id << 58 | (h.platf_info or 0))
    return out
