"""The capture's stage, sans-IO: ring frames in, :class:`~vmsniff.pipeline.core.Packet` out.

:func:`vmsniff.pipeline.run.drive` runs every batch through :meth:`CaptureStage.push`. The
filter, the direction choice and the snaplen already ran in the kernel
(:func:`vmsniff.capture.plan.kernel_program`); what is left per packet is naming it (the NIC's
pcapng interface), marking its direction and copying it out of the ring.

Frames are ``(timestamp_ns, frame, pkttype, wire_length)`` as
:meth:`vmsniff.pipeline.ring.Ring.typed_blocks` gives them when there is one capture point,
and the same with the point's index appended when several are merged
(:class:`vmsniff.capture.source.RingSource`). Direction (DESIGN.md contract 3, pcapng
``epb_flags``): on a tap, ``PACKET_OUTGOING`` is what the host sent into the tap, i.e. to the
VM (inbound); anything else arrived from the VM (outbound). A ``--at ovs`` port carries one
direction only, fixed per point.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vmsniff.formats.capture import EPB_FROM_VM, EPB_TO_VM, LINKTYPE_ETHERNET, epb_flags_of
from vmsniff.formats.packet import MAX_SNAPLEN, PACKET_OUTGOING
from vmsniff.model import Direction
from vmsniff.pipeline.core import Packet, Stats

__all__ = ["CaptureStage", "StagePoint", "direction_bits"]

_new = tuple.__new__


def direction_bits(direction: Direction) -> int:
    """The ``epb_flags`` bits a packet of one direction gets (0 for ``both``)."""
    return epb_flags_of(direction)


@dataclass(frozen=True, slots=True)
class StagePoint:
    """One ring as the stage sees it: the interface name its packets are filed under, and
    the direction all of them have (``None``: from each packet's type, a tap)."""

    name: str
    fixed: Direction | None = None


class CaptureStage:
    """Name, mark and copy captured frames; count them in :attr:`stats`.

    ``keep`` drops the other direction (the kernel already did; a frame that slips through,
    e.g. from a ring opened without the program, is counted as filtered out).
    """

    def __init__(
        self,
        points: Sequence[StagePoint],
        *,
        snaplen: int = MAX_SNAPLEN,
        keep: Direction = Direction.BOTH,
    ) -> None:
        if not points:
            raise ValueError("a capture needs at least one point")
        self.points = tuple(points)
        self.snaplen = snaplen
        self.keep = keep
        self.stats = Stats()
        self._wanted = direction_bits(keep)
        # per point: (name, fixed direction bits or 0)
        self._table = [(p.name, direction_bits(p.fixed) if p.fixed else 0) for p in points]

    def push(self, frames: Iterable[Any], linktype: int = LINKTYPE_ETHERNET) -> list[Packet]:
        """One batch: 4-tuples with a single point, 5-tuples (point index last) otherwise."""
        out: list[Packet] = []
        append = out.append
        stats = self.stats
        wanted = self._wanted
        snaplen = self.snaplen
        n = 0
        dropped = 0
        if len(self._table) == 1:
            name, fixed = self._table[0]
            for ts, frame, ptype, wire in frames:
                n += 1
                way = fixed or (EPB_TO_VM if ptype == PACKET_OUTGOING else EPB_FROM_VM)
                if wanted and way != wanted:
                    dropped += 1
                    continue
                data = bytes(frame[:snaplen]) if len(frame) > snaplen else bytes(frame)
                append(_new(Packet, (ts, data, wire, linktype, None, way, False, name)))
        else:
            table = self._table
            for ts, frame, ptype, wire, index in frames:
                n += 1
                name, fixed = table[index]
                way = fixed or (EPB_TO_VM if ptype == PACKET_OUTGOING else EPB_FROM_VM)
                if wanted and way != wanted:
                    dropped += 1
                    continue
                data = bytes(frame[:snaplen]) if len(frame) > snaplen else bytes(frame)
                append(_new(Packet, (ts, data, wire, linktype, None, way, False, name)))
        stats.received += n
        stats.filtered_out += dropped
        stats.written += n - dropped
        return out
