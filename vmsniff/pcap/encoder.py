"""The one pcap and pcapng encoder of the program: :class:`Packet` values in, bytes out (sans-IO).

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
from typing import NamedTuple

from vmsniff.formats.capture import (
    BLOCK_TOTAL_LENGTH_OFFSET,
    BT_EPB,
    EPB_FLAGS,
    EPB_FLAGS_OPTION,
    EPB_HEAD,
    EPB_TRAILER_LEN,
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    OPT_ENDOFOPT,
    PCAP_FILE_HEADER,
    PCAP_RECORD_HEADER,
    direction_from_epb,
)
from vmsniff.formats.ethernet import ETH_ADDRS_LEN, ETH_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6
from vmsniff.pcap.pcap import file_header
from vmsniff.pcap.pcapng import interface_description_block, section_header_block

__all__ = [
    "FORMATS",
    "Encoder",
    "Packet",
    "PcapEncoder",
    "PcapngEncoder",
    "interface_name",
    "new_encoder",
    "whole_prefix",
]

FORMATS = ("pcap", "pcapng")
_ETHER_FOR_IP = {
    4: bytes(ETH_ADDRS_LEN) + ETHERTYPE_IPV4.to_bytes(2, "big"),
    6: bytes(ETH_ADDRS_LEN) + ETHERTYPE_IPV6.to_bytes(2, "big"),
}
_U32 = struct.Struct("<I")


class Packet(NamedTuple):
    """One frame ready to write: what the pipelines produce and the encoders take."""

    ts_ns: int
    data: bytes
    """The frame, cut to the snaplen."""
    origlen: int
    """Its length before any cut (by the mirror's snaplen, or ours)."""
    linktype: int
    session: int | None
    """GRE key, else ERSPAN session id; None when the envelope carries neither."""
    direction: int
    """pcapng ``epb_flags`` direction bits (:mod:`vmsniff.formats.capture`): 0 unknown,
    ``EPB_TO_VM`` or ``EPB_FROM_VM``."""
    erspan: bool
    """True when the envelope was ERSPAN (for naming)."""
    interface: str | None = None
    """A pcapng interface name to file the packet under (``capture``: the NIC's name); None
    names it from the session and direction."""


def interface_name(session: int | None, direction: int, erspan: bool) -> str:
    """A pcapng interface name: ``gre-key-100-from-vm``, ``erspan-session-7``, ``gre``."""
    if session is None:
        name = "erspan" if erspan else "gre"
    elif erspan:
        name = f"erspan-session-{session}"
    else:
        name = f"gre-key-{session}"
    way = direction_from_epb(direction)
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
        return file_header(self.snaplen, LINKTYPE_ETHERNET, nanosecond=True)

    def encode(self, pkt: Packet) -> bytes:
        data = pkt.data
        origlen = pkt.origlen
        if pkt.linktype == LINKTYPE_RAW and data:
            data = _ETHER_FOR_IP[6 if data[0] >> 4 == 6 else 4] + data
            origlen += ETH_HEADER_LEN
        sec, ns = divmod(pkt.ts_ns, 1_000_000_000)
        n = len(data)
        return PCAP_RECORD_HEADER.pack(sec, ns, n, origlen if origlen > n else n) + data


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
        opts = (
            EPB_FLAGS_OPTION.pack(EPB_FLAGS, 4, pkt.direction, OPT_ENDOFOPT, 0)
            if pkt.direction
            else b""
        )
        total = EPB_HEAD.size + n + pad + len(opts) + EPB_TRAILER_LEN
        ts = pkt.ts_ns
        origlen = pkt.origlen if pkt.origlen > n else n
        head = EPB_HEAD.pack(BT_EPB, total, index, ts >> 32, ts & 0xFFFFFFFF, n, origlen)
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
            if n < PCAP_FILE_HEADER.size:
                return 0
            pos = PCAP_FILE_HEADER.size
        while pos + PCAP_RECORD_HEADER.size <= n:
            end = pos + PCAP_RECORD_HEADER.size + _U32.unpack_from(data, pos + 8)[0]  # incl_len
            if end > n:
                break
            pos = end
        return pos
    # pcapng: every block (SHB, IDB, EPB) says its total length at offset 4 (section 3.1).
    while pos + 8 <= n:
        end = pos + _U32.unpack_from(data, pos + BLOCK_TOTAL_LENGTH_OFFSET)[0]
        if end > n or end <= pos:
            break
        pos = end
    return pos
