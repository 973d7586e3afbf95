"""Classic pcap encoder (draft-ietf-opsawg-pcap, "PCAP Capture File Format").

A file is a 24-byte header followed by records of a 16-byte header and the captured bytes
(section 4 and 5 of the draft). We always write little-endian; readers detect the byte order
from the magic number. The magic also says the timestamp unit: 0xA1B2C3D4 for microseconds,
0xA1B23C4D for nanoseconds.
"""

from __future__ import annotations

import struct

__all__ = ["MAGIC_NANOSECONDS", "MAGIC_MICROSECONDS", "file_header", "record"]

MAGIC_MICROSECONDS = 0xA1B2C3D4
MAGIC_NANOSECONDS = 0xA1B23C4D
_FILE = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")

Timestamp = int | tuple[int, int]


def file_header(snaplen: int, linktype: int, *, nanosecond: bool = False) -> bytes:
    """The 24-byte file header: magic, version 2.4, zone 0, sigfigs 0, snaplen, link type."""
    if not 0 < snaplen <= 0xFFFFFFFF or not 0 <= linktype <= 0xFFFF:
        raise ValueError(f"bad snaplen {snaplen} or link type {linktype}")
    magic = MAGIC_NANOSECONDS if nanosecond else MAGIC_MICROSECONDS
    return _FILE.pack(magic, 2, 4, 0, 0, snaplen, linktype)


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
    return _RECORD.pack(sec, frac, caplen, wire) + bytes(data)
