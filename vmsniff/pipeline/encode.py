"""Turn :class:`~vmsniff.pipeline.core.Packet` values into pcap or pcapng bytes (sans-IO).

An encoder is stateful only in what a file needs once: the header, and for pcapng the
Interface Description Blocks. A fresh encoder starts each file (so a rotated file stands alone).

pcap has one link type per file. OVS mirrors carry Ethernet, so a pcap file is Ethernet; a
raw-IP inner frame (GRE 0x0800/0x86DD, ERSPAN III frame type 2) gets a 14-byte Ethernet header
with zero addresses and the EtherType of its IP version, and both lengths grow by 14. pcapng has
no such limit: each (session, direction, link type) is an interface of its own, named like
``gre-key-100-from-vm``, and packets carry the direction in ``epb_flags`` (pcapng section 4.3.1).
"""

from __future__ import annotations

import struct

from vmsniff.pcap.linktypes import LINKTYPE_ETHERNET, LINKTYPE_RAW
from vmsniff.pcap.pcapng import interface_description_block, section_header_block
from vmsniff.pipeline.core import Packet, direction_name

__all__ = [
    "FORMATS",
    "Encoder",
    "PcapEncoder",
    "PcapngEncoder",
    "interface_name",
    "new_encoder",
    "whole_prefix",
]

FORMATS = ("pcap", "pcapng")
_PCAP_FILE = struct.Struct("<IHHiIII")
_PCAP_REC = struct.Struct("<IIII")
_EPB_HEAD = struct.Struct("<IIIIIII")  # block type, length, interface, ts hi, ts lo, caplen, len
_EPB_FLAGS = struct.Struct("<HHIHH")  # option epb_flags (2), length 4, value, opt_endofopt
_U32 = struct.Struct("<I")
_ZERO_MACS = bytes(12)


def interface_name(session: int | None, direction: int, erspan: bool) -> str:
    """A pcapng interface name: ``gre-key-100-from-vm``, ``erspan-session-7``, ``gre``."""
    if session is None:
        name = "erspan" if erspan else "gre"
    elif erspan:
        name = f"erspan-session-{session}"
    else:
        name = f"gre-key-{session}"
    way = direction_name(direction)
    return f"{name}-{way}" if way else name


class Encoder:
    """Base of the two encoders: :meth:`header` once, then :meth:`encode` per packet."""

    def __init__(self, snaplen: int, application: str = "vmsniff receive") -> None:
        self.snaplen = snaplen
        self.application = application

    def header(self) -> bytes:
        raise NotImplementedError

    def encode(self, pkt: Packet) -> bytes:
        raise NotImplementedError


class PcapEncoder(Encoder):
    """Classic pcap, little-endian, nanosecond timestamps, Ethernet link type."""

    def header(self) -> bytes:
        # Magic 0xA1B23C4D: nanosecond timestamps (draft-ietf-opsawg-pcap section 4).
        return _PCAP_FILE.pack(0xA1B23C4D, 2, 4, 0, 0, self.snaplen, LINKTYPE_ETHERNET)

    def encode(self, pkt: Packet) -> bytes:
        data = pkt.data
        origlen = pkt.origlen
        if pkt.linktype == LINKTYPE_RAW and data:
            etype = b"\x86\xdd" if data[0] >> 4 == 6 else b"\x08\x00"
            data = _ZERO_MACS + etype + data
            origlen += 14
        sec, ns = divmod(pkt.ts_ns, 1_000_000_000)
        n = len(data)
        return _PCAP_REC.pack(sec, ns, n, origlen if origlen > n else n) + data


class PcapngEncoder(Encoder):
    """pcapng: one Section Header Block, one interface per (session, direction, link type)."""

    def __init__(self, snaplen: int, application: str = "vmsniff receive") -> None:
        super().__init__(snaplen, application)
        self._interfaces: dict[tuple[int | None, int, int, bool, str | None], int] = {}

    def header(self) -> bytes:
        return section_header_block(userappl=self.application)

    def interface(
        self, session: int | None, direction: int, linktype: int, erspan: bool, name: str | None
    ) -> tuple[int, bytes]:
        """The interface index for these packets, and its Interface Description Block when
        this is the first packet to use it (else ``b""``)."""
        # A named interface (capture: one per NIC) holds both directions; epb_flags tell them
        # apart. Unnamed ones (receive) are one per session and direction.
        ident = (
            (session, direction, linktype, erspan, name)
            if name is None
            else (None, 0, linktype, False, name)
        )
        index = self._interfaces.get(ident)
        if index is not None:
            return index, b""
        index = self._interfaces[ident] = len(self._interfaces)
        if name is None:
            name = interface_name(session, direction, erspan)
            description = "inner frames decapsulated by vmsniff"
        else:
            description = f"captured by {self.application}"
        idb = interface_description_block(
            linktype, self.snaplen, name=name, description=description, tsresol=9
        )
        return index, idb

    def encode(self, pkt: Packet) -> bytes:
        index, idb = self.interface(
            pkt.session, pkt.direction, pkt.linktype, pkt.erspan, pkt.interface
        )
        data = pkt.data
        n = len(data)
        pad = -n % 4
        opts = _EPB_FLAGS.pack(2, 4, pkt.direction, 0, 0) if pkt.direction else b""
        total = 32 + n + pad + len(opts)
        ts = pkt.ts_ns
        origlen = pkt.origlen if pkt.origlen > n else n
        head = _EPB_HEAD.pack(6, total, index, ts >> 32, ts & 0xFFFFFFFF, n, origlen)
        return b"".join((idb, head, data, b"\x00" * pad, opts, _U32.pack(total)))


def new_encoder(fmt: str, snaplen: int, application: str = "vmsniff receive") -> Encoder:
    """A fresh encoder for ``pcap`` or ``pcapng``; ``application`` goes into pcapng's
    ``shb_userappl``."""
    if fmt == "pcap":
        return PcapEncoder(snaplen, application)
    if fmt == "pcapng":
        return PcapngEncoder(snaplen, application)
    raise ValueError(f"unknown format {fmt!r}")


def whole_prefix(fmt: str, data: bytes, n: int, *, file_header: bool) -> int:
    """How many of the first ``n`` bytes of ``data`` (what an encoder of ``fmt`` made, in
    order) are whole records: where to cut a file after a short write. ``file_header`` says
    ``data`` starts with the pcap file header. Off the hot path: only read after a failure.
    """
    n = min(n, len(data))
    pos = 0
    if fmt == "pcap":
        if file_header:
            if n < _PCAP_FILE.size:
                return 0
            pos = _PCAP_FILE.size
        while pos + _PCAP_REC.size <= n:
            end = pos + _PCAP_REC.size + _U32.unpack_from(data, pos + 8)[0]  # incl_len
            if end > n:
                break
            pos = end
        return pos
    # pcapng: every block (SHB, IDB, EPB) says its total length at offset 4 (section 3.1).
    while pos + 8 <= n:
        end = pos + _U32.unpack_from(data, pos + 4)[0]
        if end > n or end <= pos:
            break
        pos = end
    return pos
