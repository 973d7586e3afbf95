"""Frames of capture files, dissected: :func:`read_file`."""

from __future__ import annotations

from collections.abc import Iterator

from vmsniff.dissect.frame import Frame, decode
from vmsniff.errors import FileError, MalformedPacket
from vmsniff.formats.capture import direction_from_epb

__all__ = ["read_file"]

_CHUNK = 1 << 20


def read_file(path: str) -> Iterator[Frame]:
    """Every frame of the pcap or pcapng file at ``path``, dissected, in file order, with its
    time, original length, and (pcapng) interface name and direction. A file that is not a
    capture, or damaged, is a :class:`~vmsniff.errors.FileError` after the frames before it."""
    from vmsniff.pcap.reader import CaptureReader, open_input

    reader = CaptureReader()
    with open_input(path) as fh:
        try:
            while chunk := fh.read(_CHUNK):
                for rec in reader.feed(chunk):
                    yield decode(rec.data, rec.linktype, ts_ns=rec.ts_ns, length=rec.origlen,
                                 interface=reader.interface_name(rec.interface),
                                 direction=direction_from_epb(rec.flags))  # fmt: skip
            reader.close()
        except MalformedPacket as exc:
            raise FileError(f"{path}: {exc.message}") from None
