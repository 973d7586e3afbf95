"""A sans-IO streaming reader for pcap and pcapng.

Feed it bytes as they come (from a file, a pipe, a socket: the caller reads them) and get
:class:`Record` values back. It tells the format from the first four bytes:

* pcap (draft-ietf-opsawg-pcap): magic 0xA1B2C3D4 (microseconds) or 0xA1B23C4D (nanoseconds),
  in either byte order;
* pcapng (draft-ietf-opsawg-pcapng): a Section Header Block, whose byte-order magic gives the
  byte order of its section. Interface Description Blocks give each interface its link type and
  timestamp unit (``if_tsresol``, ``if_tsoffset``); Enhanced, Simple and the obsolete Packet
  Blocks give packets; every other block is skipped. A new section forgets the interfaces.

Malformed input raises :class:`MalformedPacket` (and the reader stays failed), never another
exception.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO, NamedTuple

from vmsniff.errors import MalformedPacket
from vmsniff.formats.capture import (
    BT_EPB,
    BT_IDB,
    BT_PB,
    BT_SHB,
    BT_SPB,
    EPB_FLAGS,
    IF_NAME,
    IF_TSOFFSET,
    IF_TSRESOL,
    PCAP_MAGIC_MICROSECONDS,
    PCAP_MAGIC_NANOSECONDS,
    SHB_MAGIC_BYTES,
)

__all__ = ["CaptureReader", "Record", "open_input", "read_records"]

MAX_RECORD = 16 * 1024 * 1024  # refuse a length field above this rather than buffer it
# The magic's bytes in either byte order -> (struct byte order, nanoseconds per unit).
_PCAP_MAGICS = {
    struct.pack(order + "I", magic): (order, per_unit)
    for magic, per_unit in ((PCAP_MAGIC_MICROSECONDS, 1000), (PCAP_MAGIC_NANOSECONDS, 1))
    for order in "<>"
}
_SHB = SHB_MAGIC_BYTES


class Record(NamedTuple):
    """One captured packet. ``ts_ns`` is None for a pcapng Simple Packet Block."""

    ts_ns: int | None
    linktype: int
    data: bytes
    origlen: int
    interface: int
    flags: int = 0
    """pcapng ``epb_flags`` (direction in bits 0-1); 0 when absent or in classic pcap."""


class _Interface(NamedTuple):
    linktype: int
    snaplen: int
    # Timestamp units to nanoseconds: ns = ts * mul // div + offset.
    mul: int
    div: int
    offset_ns: int
    name: str | None = None


class CaptureReader:
    """Push parser: :meth:`feed` bytes, get the records completed by them; :meth:`close` at EOF."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._format: str | None = None  # "pcap" or "pcapng" once known
        self._endian = "<"
        self._pcap_frac_ns = 1000
        self._pcap_linktype = 0
        self._pcap_linktype_known = False
        self._interfaces: list[_Interface] = []
        self._failed: MalformedPacket | None = None
        self._sections = 0
        self.count = 0

    @property
    def header_read(self) -> bool:
        """True once the file's header (pcap's, or pcapng's first Section Header Block) was
        read and accepted: from then on the bytes are a capture, whatever follows."""
        return self._pcap_linktype_known or self._sections > 0

    @property
    def format(self) -> str | None:
        """``"pcap"``, ``"pcapng"`` or None before the first four bytes."""
        return self._format

    def feed(self, data: bytes | bytearray | memoryview) -> list[Record]:
        """Add bytes; return every record they complete, in order."""
        if self._failed is not None:
            raise self._failed
        self._buf += data
        out: list[Record] = []
        try:
            while True:
                rec = self._next()
                if rec is None:
                    break
                if rec is not _SKIP:
                    out.append(rec)
                    self.count += 1
        except MalformedPacket as exc:
            self._failed = exc
            raise
        except (struct.error, ValueError, IndexError, OverflowError) as exc:  # belt and braces
            self._failed = MalformedPacket(f"capture file: {exc}")
            raise self._failed from exc
        if self._pos > 65536:
            del self._buf[: self._pos]
            self._pos = 0
        return out

    def close(self) -> None:
        """Say the input ended; a partial header or record left over is malformed."""
        if self._failed is not None:
            raise self._failed
        left = len(self._buf) - self._pos
        if self._format is None:
            raise MalformedPacket("capture file: empty or shorter than a header")
        if left:
            self._failed = MalformedPacket(f"capture file: {left} bytes of a cut record at end")
            raise self._failed

    # -- parsing --------------------------------------------------------------------------

    def _avail(self) -> int:
        return len(self._buf) - self._pos

    def _next(self) -> Record | None:
        if self._format is None:
            if self._avail() < 4:
                return None
            magic = bytes(self._buf[self._pos : self._pos + 4])
            if magic in _PCAP_MAGICS:
                self._format = "pcap"
            elif magic == _SHB:
                self._format = "pcapng"
            else:
                raise MalformedPacket(f"not a pcap or pcapng file (magic {magic.hex()})")
        if self._format == "pcap":
            return self._next_pcap()
        return self._next_pcapng()

    def _next_pcap(self) -> Record | None:
        if not self._pcap_linktype_known:
            if self._avail() < 24:
                return None
            e, frac = _PCAP_MAGICS[bytes(self._buf[self._pos : self._pos + 4])]
            major, _minor, _zone, _sig, _snap, lt = struct.unpack_from(
                e + "HHiIII", self._buf, self._pos + 4
            )
            if major != 2:
                raise MalformedPacket(f"pcap: version {major}, not 2")
            self._endian, self._pcap_frac_ns = e, frac
            self._pcap_linktype = lt & 0xFFFF  # upper bits: FCS length, reserved
            self._pcap_linktype_known = True
            self._pos += 24
            return _SKIP
        if self._avail() < 16:
            return None
        sec, frac, caplen, origlen = struct.unpack_from(self._endian + "IIII", self._buf, self._pos)
        if caplen > MAX_RECORD:
            raise MalformedPacket(f"pcap: record length {caplen} above {MAX_RECORD}")
        if self._avail() < 16 + caplen:
            return None
        start = self._pos + 16
        data = bytes(self._buf[start : start + caplen])
        self._pos = start + caplen
        ts = sec * 1_000_000_000 + frac * self._pcap_frac_ns
        return Record(ts, self._pcap_linktype, data, max(origlen, caplen), 0)

    def _next_pcapng(self) -> Record | None:
        if self._avail() < 12:
            return None
        buf, pos = self._buf, self._pos
        if buf[pos : pos + 4] == _SHB:
            bom = bytes(buf[pos + 8 : pos + 12])
            if bom == b"\x4d\x3c\x2b\x1a":
                self._endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                self._endian = ">"
            else:
                raise MalformedPacket(f"pcapng: bad byte-order magic {bom.hex()}")
        e = self._endian
        btype, blen = struct.unpack_from(e + "II", buf, pos)
        if blen < 12 or blen % 4:
            raise MalformedPacket(f"pcapng: block length {blen}")
        if blen > MAX_RECORD:
            raise MalformedPacket(f"pcapng: block length {blen} above {MAX_RECORD}")
        if self._avail() < blen:
            return None
        (trailer,) = struct.unpack_from(e + "I", buf, pos + blen - 4)
        if trailer != blen:
            raise MalformedPacket(f"pcapng: block lengths {blen} and {trailer} differ")
        body = memoryview(buf)[pos + 8 : pos + blen - 4]
        try:
            return self._block(btype, body)
        finally:
            body.release()
            self._pos = pos + blen

    def _block(self, btype: int, body: memoryview) -> Record | None:
        e = self._endian
        if btype == BT_SHB:
            if len(body) < 16:
                raise MalformedPacket("pcapng: section header block too short")
            major = struct.unpack_from(e + "H", body, 4)[0]
            if major != 1:
                raise MalformedPacket(f"pcapng: version {major}, not 1")
            self._interfaces = []
            self._sections += 1
            return _SKIP
        if btype == BT_IDB:
            if len(body) < 8:
                raise MalformedPacket("pcapng: interface description block too short")
            linktype, _, snaplen = struct.unpack_from(e + "HHI", body)
            mul, div, offset = 1000, 1, 0  # default resolution: microseconds
            name = None
            for code, value in _iter_options(body[8:], e):
                if code == IF_NAME:
                    name = bytes(value).decode("utf-8", "replace").rstrip("\x00")
                if code == IF_TSRESOL and len(value) >= 1:
                    r = value[0]
                    if r & 0x80:
                        mul, div = 1_000_000_000, 1 << (r & 0x7F)
                    elif r <= 9:
                        mul, div = 10 ** (9 - r), 1
                    else:
                        mul, div = 1, 10 ** (r - 9)
                elif code == IF_TSOFFSET and len(value) >= 8:
                    offset = struct.unpack_from(e + "q", value)[0] * 1_000_000_000
            self._interfaces.append(_Interface(linktype, snaplen, mul, div, offset, name))
            return _SKIP
        if btype == BT_EPB or btype == BT_PB:
            if len(body) < 20:
                raise MalformedPacket("pcapng: packet block too short")
            if btype == BT_EPB:
                iface, hi, lo, caplen, origlen = struct.unpack_from(e + "IIIII", body)
            else:
                iface, _drops, hi, lo, caplen, origlen = struct.unpack_from(e + "HHIIII", body)
            if caplen > len(body) - 20:
                raise MalformedPacket(f"pcapng: captured length {caplen} beyond its block")
            itf = self._interface(iface)
            ts = (hi << 32 | lo) * itf.mul // itf.div + itf.offset_ns
            data = bytes(body[20 : 20 + caplen])
            flags = 0
            opts_at = 20 + caplen + (-caplen % 4)
            if btype == BT_EPB and len(body) >= opts_at + 8:
                for code, value in _iter_options(body[opts_at:], e):
                    if code == EPB_FLAGS and len(value) >= 4:
                        flags = struct.unpack_from(e + "I", value)[0]
            return Record(ts, itf.linktype, data, max(origlen, caplen), iface, flags)
        if btype == BT_SPB:
            if len(body) < 4:
                raise MalformedPacket("pcapng: simple packet block too short")
            itf = self._interface(0)
            origlen = struct.unpack_from(e + "I", body)[0]
            caplen = min(origlen, len(body) - 4)
            if itf.snaplen:
                caplen = min(caplen, itf.snaplen)
            return Record(None, itf.linktype, bytes(body[4 : 4 + caplen]), origlen, 0)
        return _SKIP  # any other block: name resolution, statistics, custom, ...

    def interface_name(self, index: int) -> str | None:
        """The ``if_name`` of the current section's interface ``index`` (None: not named)."""
        return self._interfaces[index].name if 0 <= index < len(self._interfaces) else None

    def _interface(self, index: int) -> _Interface:
        if index >= len(self._interfaces):
            raise MalformedPacket(f"pcapng: packet on undeclared interface {index}")
        return self._interfaces[index]


_SKIP = Record(None, -1, b"", 0, -1)  # sentinel: a header or block that yields no packet


def _iter_options(opts: memoryview, e: str) -> Iterator[tuple[int, memoryview]]:
    pos = 0
    while pos + 4 <= len(opts):
        code, length = struct.unpack_from(e + "HH", opts, pos)
        if code == 0:
            return
        if pos + 4 + length > len(opts):
            raise MalformedPacket(f"pcapng: option {code} runs past its block")
        yield code, opts[pos + 4 : pos + 4 + length]
        pos += 4 + length + (-length % 4)


def read_records(chunks: Iterable[bytes | bytearray | memoryview]) -> Iterator[Record]:
    """Yield every record of a capture given as chunks of bytes (e.g. ``iter(f.read, b"")``)."""
    reader = CaptureReader()
    for chunk in chunks:
        yield from reader.feed(chunk)
    reader.close()


def open_input(path: str, buffering: int = -1) -> BinaryIO:
    """Open a capture file for reading (``-r``, ``vmsniff flows``, ``read_file``); a refusal
    is a vmsniff error naming the path: NotFound, PermissionDenied, UsageError (a directory),
    FileError (anything else)."""
    from vmsniff.errors import FileError, NotFound, PermissionDenied, UsageError

    try:
        return open(path, "rb", buffering=buffering)  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file") from None
    except PermissionError:
        raise PermissionDenied(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory") from None
    except OSError as exc:
        raise FileError(f"{path}: {exc.strerror}") from None
