"""pcap and pcapng files: magics, layouts, block types, options and link types.

pcap: draft-ietf-opsawg-pcap ("PCAP Capture File Format"): a 24-byte file header, then
records of a 16-byte header and the captured bytes. pcapng: draft-ietf-opsawg-pcapng: blocks
of ``type, total length, body, total length``, the body padded to 32 bits (section 3.1);
options ``code, length, value`` padded to 32 bits and closed by ``opt_endofopt`` (3.5).
vmsniff writes both little-endian. Link types: https://www.tcpdump.org/linktypes.html.

Direction (DESIGN.md contract 3) has one representation, :class:`~vmsniff.model.Direction`,
and one mapping to the pcapng ``epb_flags`` direction bits (section 4.3.1), here:
:data:`EPB_FROM_VM` is "outbound" (the VM sent it), :data:`EPB_TO_VM` "inbound".
"""

from __future__ import annotations

import struct

from vmsniff.model import Direction

__all__ = [
    "BLOCK_TOTAL_LENGTH_OFFSET",
    "BT_EPB",
    "BT_IDB",
    "BT_PB",
    "BT_SPB",
    "BT_SHB",
    "BYTE_ORDER_MAGIC",
    "EPB_DIRECTION_MASK",
    "EPB_FLAGS",
    "EPB_FLAGS_OPTION",
    "EPB_FROM_VM",
    "EPB_HEAD",
    "EPB_TO_VM",
    "EPB_TRAILER_LEN",
    "IF_DESCRIPTION",
    "IF_NAME",
    "IF_TSOFFSET",
    "IF_TSRESOL",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "OPT_COMMENT",
    "OPT_ENDOFOPT",
    "PCAP_FILE_HEADER",
    "PCAP_MAGIC_MICROSECONDS",
    "PCAP_MAGIC_NANOSECONDS",
    "PCAP_RECORD_HEADER",
    "PCAP_VERSION",
    "SHB_MAGIC_BYTES",
    "SHB_USERAPPL",
    "direction_from_epb",
    "epb_flags_of",
]

# -- link types ---------------------------------------------------------------------------
LINKTYPE_NULL = 0  #: BSD loopback: 4-byte address family in host byte order
LINKTYPE_ETHERNET = 1  #: DLT_EN10MB
LINKTYPE_RAW = 101  #: raw IPv4 or IPv6, told apart by the version nibble
LINKTYPE_LOOP = 108  #: OpenBSD loopback: 4-byte address family in network byte order
LINKTYPE_LINUX_SLL = 113  #: Linux "cooked" capture, 16-byte header, protocol at offset 14
LINKTYPE_LINUX_SLL2 = 276  #: cooked v2 (`tcpdump -i any` since 4.99): 20 bytes, protocol at 0
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229

# -- pcap ----------------------------------------------------------------------------------
#: The magic also says the timestamp unit (draft-ietf-opsawg-pcap section 4).
PCAP_MAGIC_MICROSECONDS = 0xA1B2C3D4
PCAP_MAGIC_NANOSECONDS = 0xA1B23C4D
PCAP_VERSION = (2, 4)
#: magic, major, minor, reserved1 (this zone), reserved2 (sigfigs), snaplen, link type
PCAP_FILE_HEADER = struct.Struct("<IHHiIII")
#: seconds, fraction (µs or ns), captured length, original length
PCAP_RECORD_HEADER = struct.Struct("<IIII")

# -- pcapng --------------------------------------------------------------------------------
BT_SHB = 0x0A0D0D0A  #: Section Header Block (4.1); the same bytes in either byte order
BT_IDB = 0x00000001  #: Interface Description Block (4.2)
BT_EPB = 0x00000006  #: Enhanced Packet Block (4.3)
BT_PB = 0x00000002  #: Packet Block (obsolete, appendix A): read, never written
BT_SPB = 0x00000003  #: Simple Packet Block (4.4): read, never written
SHB_MAGIC_BYTES = struct.pack("<I", BT_SHB)
BYTE_ORDER_MAGIC = 0x1A2B3C4D
BLOCK_TOTAL_LENGTH_OFFSET = 4  #: every block says its total length right after its type
OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9
IF_TSOFFSET = 14
EPB_FLAGS = 2  #: option code of ``epb_flags`` (4.3.1)
#: An EPB up to its packet data: block type, total length, interface id, timestamp high and
#: low, captured length, original length.
EPB_HEAD = struct.Struct("<IIIIIII")
#: The ``epb_flags`` option with its value, then ``opt_endofopt``: what ends a marked EPB
#: before its trailing total length.
EPB_FLAGS_OPTION = struct.Struct("<HHIHH")
EPB_TRAILER_LEN = 4  #: the block total length repeated at the end

# -- direction -----------------------------------------------------------------------------
EPB_DIRECTION_MASK = 0b11  #: epb_flags bits 0-1: 00 unknown, 01 inbound, 10 outbound
EPB_TO_VM = 0b01  #: inbound: what the VM received
EPB_FROM_VM = 0b10  #: outbound: what the VM sent

_EPB_OF = {Direction.FROM_VM: EPB_FROM_VM, Direction.TO_VM: EPB_TO_VM}
_DIRECTION_OF = {EPB_FROM_VM: Direction.FROM_VM, EPB_TO_VM: Direction.TO_VM}


def epb_flags_of(direction: Direction | None) -> int:
    """The ``epb_flags`` direction bits of a packet going ``direction`` (0: not known)."""
    return _EPB_OF.get(direction, 0) if direction is not None else 0


def direction_from_epb(flags: int) -> Direction | None:
    """The direction of a packet whose ``epb_flags`` are ``flags`` (None: not marked)."""
    return _DIRECTION_OF.get(flags & EPB_DIRECTION_MASK)
