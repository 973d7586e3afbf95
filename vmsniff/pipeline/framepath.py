"""Capture's fast path: whole TPACKET_V3 blocks of Ethernet frames from a tap, or from a
``--at ovs`` mirror port, into pcap/pcapng records in place (:mod:`.inplace`).

What the packet-by-packet capture stage does per frame, over a whole block with numpy: name it
after its NIC (the pcapng interface), mark its direction (DESIGN.md contract 3: on a tap,
``PACKET_OUTGOING`` is what the host sent into the tap, i.e. to the VM; anything else came from
the VM; a mirror port's direction is fixed), keep only the ``--direction`` asked for, and cut it
to ``-s``. The filter, the direction choice and the snaplen already ran in the kernel; these
checks only catch what a ring opened without that program lets through. Counts as the stage
counts: every frame received, and either written or filtered out.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

from vmsniff.formats.capture import EPB_FROM_VM, EPB_TO_VM, LINKTYPE_ETHERNET
from vmsniff.formats.packet import MAX_SNAPLEN, PACKET_OUTGOING
from vmsniff.pcap.encoder import Encoder
from vmsniff.pipeline.core import Stats
from vmsniff.pipeline.inplace import Array, BlockRecords

__all__ = ["FramePath"]


class FramePath:
    """One ring's blocks, filed under the pcapng interface ``name``.

    ``fixed`` is the direction bits every frame gets (a mirror port), 0 to take it from each
    frame's packet type (a tap); ``wanted`` the direction bits to keep (0: both).
    """

    def __init__(
        self,
        memory: mmap.mmap | bytearray,
        block_size: int,
        encoder: Encoder,
        stats: Stats,
        *,
        name: str,
        fixed: int = 0,
        wanted: int = 0,
        snaplen: int = MAX_SNAPLEN,
    ) -> None:
        self.stats = stats
        self.name = name
        self.fixed = fixed
        self.wanted = wanted
        self.snaplen = snaplen
        self.writer = BlockRecords(memory, block_size, encoder, self._describe)

    def _describe(self, code: int) -> tuple[int | None, int, bool, str | None]:
        return None, LINKTYPE_ETHERNET, False, self.name

    @property
    def copied(self) -> int:
        """Records encoded the ordinary way because they did not fit in their slot."""
        return self.writer.copied

    def close(self) -> None:
        """Let go of the ring's memory."""
        self.writer.close()

    def process(self, base: int, count: int, first: int, limit: int | None = None) -> list[Any]:
        """Interface blocks and records for the block at ``base`` (``count`` packets from
        ``base + first``), at most ``limit`` records, in arrival order."""
        if count == 0 or limit == 0:
            return []
        writer = self.writer
        offs, sel, args = self._select(base, count, first, limit)
        idbs, pieces = writer.encode(base, offs, sel, *args, joined=True)
        self.stats.written += len(sel)
        return idbs + pieces

    def place(
        self, base: int, count: int, first: int
    ) -> tuple[list[bytes], Array, Array, Array, dict[int, bytes]]:
        """The block's records written in place, not counted as written yet (for a merge of
        several rings): ``(interface blocks, timestamps, heads, ends, copies)`` as
        :meth:`BlockRecords.place <.inplace.BlockRecords.place>`, in arrival order."""
        if count == 0:
            empty = np.zeros(0, dtype=np.int64)
            return [], empty, empty, empty, {}
        offs, sel, args = self._select(base, count, first, None)
        idbs, heads, ends, copies = self.writer.place(base, offs, sel, *args)
        return idbs, args[3][sel], heads, ends, copies

    def _select(
        self, base: int, count: int, first: int, limit: int | None
    ) -> tuple[Array, Array, tuple[Array, ...]]:
        """``(offsets, selected packets, (start, cap, wire, ts, code, direction))``, counting
        what is received and filtered out."""
        writer = self.writer
        offs = writer.offsets(base, count, first)
        ts, snap, wire, mac, pkttype = writer.header_fields(offs)
        if self.fixed:
            direction = np.full(count, self.fixed, dtype=np.int64)
        else:
            direction = np.where(pkttype == PACKET_OUTGOING, EPB_TO_VM, EPB_FROM_VM)
        if self.wanted:
            sel = np.flatnonzero(direction == self.wanted)
        else:
            sel = np.arange(count)
        stats = self.stats
        stats.received += count
        stats.filtered_out += count - len(sel)
        if limit is not None and len(sel) > limit:
            sel = sel[:limit]  # what -c cuts is neither written nor filtered out (as drive())
        start = offs + mac
        cap = np.minimum(snap, self.snaplen)
        code = np.zeros(count, dtype=np.int64)
        return offs, sel, (start, cap, wire, ts, code, direction)
