"""Classic pcap encoder (draft-ietf-opsawg-pcap, "PCAP Capture File Format").

A file is a 24-byte header followed by records of a 16-byte header and the captured bytes
(section 4 and 5 of the draft). We always write little-endian; readers detect the byte order
from the magic number. The magic also says the timestamp unit: 0xA1B2C3D4 for microseconds,
0xA1B23C4D for nanoseconds.
"""

from __future__ import annotations

from vmsniff.formats.capture import (
    PCAP_FILE_HEADER,
    PCAP_MAGIC_MICROSECONDS,
    PCAP_MAGIC_NANOSECONDS,
    PCAP_RECORD_HEADER,
    PCAP_VERSION,
)

__all__ = ["file_header", "record"]

Timestamp = int | tuple[int, int]


def file_header(snaplen: int, linktype: int, *, nanosecond: bool = False) -> bytes:
    """The 24-byte file header: magic, version 2.4, zone 0, sigfigs 0, snaplen, link type."""
    if not 0 < snaplen <= 0xFFFFFFFF or not 0 <= linktype <= 0xFFFF:
        raise ValueError(f"bad snaplen {snaplen} or link type {linktype}")
    magic = PCAP_MAGIC_NANOSECONDS if nanosecond else PCAP_MAGIC_MICROSECONDS
    return PCAP_FILE_HEADER.pack(magic, *PCAP_VERSION, 0, 0, snaplen, linktype)


def record(
    ts: Timestamp,
    data: bytes | bytearray | memoryview,
    origlen: int | None = None,
    *,
    nanosecond: bool = False,
) -> bytes:
    """One record: header plus ``data``.

    ``ts`` is integer nanoseconds since the epoch or a ``(seconds, microseconds)`` pair;
    ``nanosecond`` must match the file header. ``origlen`` is the length on the wire before
    any snaplen cut (defaults to ``len(data)``, and is never below it).
    """
    if isinstance(ts, tuple):
        sec, usec = ts
        if not 0 <= usec < 1_000_000:
            raise ValueError(f"microseconds out of range: {usec}")
        frac = usec * 1000 if nanosecond else usec
    else:
        sec, ns = divmod(ts, 1_000_000_000)
        frac = ns if nanosecond else ns // 1000
    caplen = len(data)
    wire = caplen if origlen is None else max(origlen, caplen)
    return PCAP_RECORD_HEADER.pack(sec, frac, caplen, wire) + bytes(data)
