"""Capture files through :func:`~vmsniff.dissect.flow_key` into a :class:`~.table.FlowTable`,
streaming: a file is read in chunks and each record dropped once counted."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from vmsniff.dissect.flow import flow_key
from vmsniff.errors import FileError, MalformedPacket
from vmsniff.flows.table import FlowTable, Observation

__all__ = ["table_of_files"]

_CHUNK = 1 << 20


def table_of_files(
    paths: Iterable[str],
    *,
    keep: Callable[[bytes, int], bool] | None = None,
    table: FlowTable | None = None,
    block_path: bool = True,
) -> FlowTable:
    """Every record of every file (pcap or pcapng, any link type vmsniff reads) in one table.
    ``keep(frame, linktype)`` filters records (a compiled tcpdump filter); a file that is not
    a capture is a :class:`FileError`, one that cannot be opened names itself."""
    from vmsniff.flows.fast import pcap_header, table_of_pcap
    from vmsniff.pcap.reader import CaptureReader, open_input

    table = table if table is not None else FlowTable()
    add = table.add
    for path in paths:
        reader = CaptureReader()
        with open_input(path, buffering=0) as fh:
            try:
                head = fh.read(24)
                fast = pcap_header(head) if keep is None and block_path else None
                if fast is not None:
                    table_of_pcap(fh, fast, table)
                    continue
                chunk = head
                while chunk:
                    for rec in reader.feed(chunk):
                        if keep is not None and not keep(rec.data, rec.linktype):
                            continue
                        obs: Observation | None = flow_key(rec.data, rec.linktype, rec.origlen)
                        add(rec.ts_ns or 0, obs)
                    chunk = fh.read(_CHUNK)
                reader.close()
            except MalformedPacket as exc:
                raise FileError(f"{path}: {exc.message}") from None
    return table
