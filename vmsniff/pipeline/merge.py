"""Several rings into one capture file in time order, still without a Python object per packet.

``capture --nic all`` (several NICs) and ``capture --at ovs`` with both directions read one
TPACKET_V3 ring per device. Each ring's block is encoded in place by that ring's
:class:`~.framepath.FramePath`, then its records are copied out of the ring in one piece (the
block has to go back to the kernel) and held, with their timestamps, until no ring can still
deliver an earlier packet. Then every held record older than that is released in timestamp
order as one :class:`~.scatter.Scatter` over the held copies.

When no ring can hold anything older (the watermark): a ring's packets come in timestamp order,
so a ring that has just been read delivers nothing older than the newest packet read from it,
and a ring found with no block ready at time ``t`` delivers nothing older than ``t - hold``:
the kernel hands a block over at most two retire periods after it opened (see the ring's
``retire_ms``), and every packet in it is newer than its opening. The source tells when it
found each ring empty (:meth:`MergedFramePaths.process`); the watermark is the minimum over
rings of the later of the two bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vmsniff.pipeline.core import Stats
from vmsniff.pipeline.framepath import FramePath
from vmsniff.pipeline.inplace import Array
from vmsniff.pipeline.scatter import Scatter

__all__ = ["MergedFramePaths"]


@dataclass(slots=True)
class _Held:
    """Records of one block, copied out of the ring into ``buf``."""

    buf: Array  # uint8; keeps the bytes alive while a Scatter points into them
    ts: Array
    heads: Array  # offsets into buf
    lens: Array
    seq: Array  # arrival order, to keep equal timestamps as they came


class MergedFramePaths:
    """The block fast path for several rings, ``paths[i]`` encoding ring ``i``'s blocks.
    A frame counts in ``stats`` as received and written when it is released (what ``-c``
    leaves held is neither), as filtered out when its block is taken."""

    def __init__(self, paths: Sequence[FramePath], stats: Stats, *, hold_ns: int) -> None:
        self.paths = list(paths)
        self.stats = stats
        self.hold_ns = hold_ns
        self.newest = [0] * len(self.paths)  # newest timestamp read from each ring
        self.held: list[_Held] = []
        self._seq = 0

    @property
    def copied(self) -> int:
        return sum(p.copied for p in self.paths)

    @property
    def holding(self) -> int:
        """Records read but not released yet."""
        return sum(len(h.ts) for h in self.held)

    def close(self) -> None:
        for path in self.paths:
            path.close()

    def process(
        self,
        index: int | None,
        block: tuple[int, int, int] | None,
        empty_at: Sequence[int],
        final: bool,
        limit: int | None = None,
    ) -> list[Any]:
        """With ``index``: take ring ``index``'s ``block`` (``(base, count, first)``) and
        return the interface blocks it introduces (write them now). Without: release what is
        older than the watermark (everything when ``final``), at most ``limit`` records;
        ``empty_at[i]`` is the wall-clock time (ns) ring ``i`` was last found with nothing
        ready."""
        if index is not None:
            assert block is not None
            return self._take(index, *block)
        if final:
            return self._release(None, limit)
        mark = min(max(n, e - self.hold_ns) for n, e in zip(self.newest, empty_at, strict=True))
        return self._release(mark, limit)

    def _take(self, index: int, base: int, count: int, first: int) -> list[Any]:
        path = self.paths[index]
        idbs, ts, heads, ends, copies = path.place(base, count, first)
        n = len(ts)
        self.stats.received -= n  # counted when released, as the packet-by-packet merge does
        if not n:
            return idbs
        a = path.writer.a
        if copies:
            inside = np.ones(n, dtype=bool)
            inside[list(copies)] = False
            lo = int(heads[inside].min()) if inside.any() else 0
            hi = int(ends[inside].max()) if inside.any() else 0
            extra = b"".join(copies.values())
            buf = np.concatenate([a[lo:hi], np.frombuffer(extra, dtype=np.uint8)])
            heads = heads - lo
            ends = ends - lo
            at = hi - lo
            for j, rec in copies.items():
                heads[j], ends[j] = at, at + len(rec)
                at += len(rec)
        else:
            lo, hi = int(heads[0]), int(ends[-1])
            buf = a[lo:hi].copy()
            heads = heads - lo
            ends = ends - lo
        seq = np.arange(self._seq, self._seq + n, dtype=np.int64)
        self._seq += n
        self.held.append(_Held(buf, ts, heads, ends - heads, seq))
        self.newest[index] = max(self.newest[index], int(ts.max()))
        return idbs

    def _release(self, mark: int | None, limit: int | None) -> list[Any]:
        out: list[tuple[Array, Array, Array, Array, Array]] = []
        keep: list[_Held] = []
        owners: list[Array] = []
        for h in self.held:
            if mark is not None and int(h.ts.min()) >= mark:
                keep.append(h)
                continue
            go = slice(None) if mark is None else h.ts < mark
            address = h.buf.ctypes.data
            out.append((h.ts[go], h.heads[go] + address, h.lens[go], h.seq[go], h.buf))
            owners.append(h.buf)
            if mark is not None and not go.all():  # type: ignore[union-attr]
                stay = ~go  # type: ignore[operator]
                keep.append(_Held(h.buf, h.ts[stay], h.heads[stay], h.lens[stay], h.seq[stay]))
        self.held = keep
        if not out:
            return []
        ts = np.concatenate([o[0] for o in out])
        addr = np.concatenate([o[1] for o in out])
        lens = np.concatenate([o[2] for o in out])
        seq = np.concatenate([o[3] for o in out])
        order = np.lexsort((seq, ts))
        if limit is not None:
            order = order[:limit]  # what -c cuts is not written (the run ends)
        if not len(order):
            return []
        iov = np.empty((len(order), 2), dtype=np.uint64)
        iov[:, 0] = addr[order]
        iov[:, 1] = lens[order]
        self.stats.received += len(order)
        self.stats.written += len(order)
        return [Scatter(iov, int(lens[order].sum()), owners)]
