"""pcapng encoder, after draft-ietf-opsawg-pcapng ("PCAP Now Generic (pcapng) Capture File
Format", https://datatracker.ietf.org/doc/draft-ietf-opsawg-pcapng/).

Every block is ``type, total length, body, total length`` with the body padded to 32 bits
(section 3.1). Options are ``code, length, value`` padded to 32 bits and closed by
``opt_endofopt`` (section 3.5). We write little-endian; the Section Header Block's byte-order
magic tells readers so (section 4.1).
"""

from __future__ import annotations

import struct

from vmsniff.formats.capture import (
    BT_EPB,
    BT_IDB,
    BT_SHB,
    BYTE_ORDER_MAGIC,
    EPB_FLAGS,
    IF_DESCRIPTION,
    IF_NAME,
    IF_TSRESOL,
    OPT_COMMENT,
    OPT_ENDOFOPT,
    SHB_USERAPPL,
)

__all__ = [
    "enhanced_packet_block",
    "interface_description_block",
    "section_header_block",
]

_U32 = struct.Struct("<I")


def _pad(n: int) -> int:
    return -n % 4


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * _pad(len(value))


def _options(opts: list[bytes]) -> bytes:
    return b"".join(opts) + _option(OPT_ENDOFOPT, b"") if opts else b""


def _block(block_type: int, body: bytes) -> bytes:
    body += b"\x00" * _pad(len(body))
    total = len(body) + 12
    return struct.pack("<II", block_type, total) + body + _U32.pack(total)


def section_header_block(*, userappl: str | None = None, comment: str | None = None) -> bytes:
    """A Section Header Block (section 4.1): version 1.0, section length unknown (-1)."""
    opts = []
    if comment:
        opts.append(_option(OPT_COMMENT, comment.encode()))
    if userappl:
        opts.append(_option(SHB_USERAPPL, userappl.encode()))
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts)
    return _block(BT_SHB, body)


def interface_description_block(
    linktype: int,
    snaplen: int = 0,
    *,
    name: str | None = None,
    description: str | None = None,
    tsresol: int = 9,
) -> bytes:
    """An Interface Description Block (section 4.2).

    ``tsresol`` is the decimal exponent of the timestamp unit (``if_tsresol``, 9 = ns); 6 is
    the default of the format and then the option is left out. ``snaplen`` 0 means no limit.
    """
    if not 0 <= tsresol <= 0x7F:
        raise ValueError(f"bad tsresol {tsresol}")
    opts = []
    if name:
        opts.append(_option(IF_NAME, name.encode()))
    if description:
        opts.append(_option(IF_DESCRIPTION, description.encode()))
    if tsresol != 6:
        opts.append(_option(IF_TSRESOL, bytes([tsresol])))
    body = struct.pack("<HHI", linktype, 0, snaplen) + _options(opts)
    return _block(BT_IDB, body)


def enhanced_packet_block(
    interface_id: int,
    ts_ns: int,
    data: bytes | bytearray | memoryview,
    origlen: int | None = None,
    *,
    flags: int | None = None,
    tsresol: int = 9,
) -> bytes:
    """An Enhanced Packet Block (section 4.3) for the interface numbered ``interface_id``.

    ``ts_ns`` is nanoseconds since the epoch, written in the unit ``10**-tsresol`` s that the
    interface's IDB declared. ``flags`` is the ``epb_flags`` word (section 4.3.1); put
    :data:`~vmsniff.formats.capture.EPB_TO_VM` or :data:`~vmsniff.formats.capture.EPB_FROM_VM`
    in its low two bits.
    """
    if tsresol >= 9:
        ts = ts_ns * 10 ** (tsresol - 9)
    else:
        ts = ts_ns // 10 ** (9 - tsresol)
    caplen = len(data)
    wire = caplen if origlen is None else max(origlen, caplen)
    head = struct.pack("<IIIII", interface_id, ts >> 32, ts & 0xFFFFFFFF, caplen, wire)
    opts = [] if flags is None else [_option(EPB_FLAGS, _U32.pack(flags))]
    body = head + bytes(data) + b"\x00" * _pad(caplen) + _options(opts)
    return _block(BT_EPB, body)
