"""The capture's packet source: one TPACKET_V3 ring per capture point, merged in time order.

With one ring, each block goes to the stage as the ring gives it (views into the ring, copied
by the stage). With several (``--nic all``, ``--at ovs`` with both directions), one ``poll``
waits on every ring; the frames are copied out and held until no ring can still deliver an
older one, then released in timestamp order: a ring delivers nothing older than the newest
frame read from it, nor than when it was last found empty minus ``hold_ms`` (the kernel
hands a block over when it is full, or at most twice the ring's ``retire_ms`` after it
opened). Each frame then carries its point's index for the stage.

With the block fast path, several rings go to :class:`~vmsniff.pipeline.merge.MergedFramePaths`
block by block instead, which holds records only until no ring can precede them.

Stopping (a signal, ``--duration``) is decided here rather than in :func:`drive`: on the way
out every held frame is released first, then :attr:`drained` turns true, and the CLI passes
``stop=source.drained_flag`` to ``drive`` so nothing captured is left behind.
"""

from __future__ import annotations

import heapq
import select
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, Protocol

from vmsniff.formats.capture import LINKTYPE_ETHERNET

__all__ = ["RingLike", "RingSource"]


class RingLike(Protocol):
    """What the source needs of :class:`vmsniff.pipeline.ring.Ring` (tests pass fakes)."""

    def typed_blocks(self, timeout_ms: int = 100) -> Iterator[list[tuple[int, Any, int, int]]]: ...

    def raw_blocks(
        self, timeout_ms: int = 100
    ) -> Generator[tuple[int, int, int] | None, None, None]: ...

    def fileno(self) -> int: ...

    def statistics(self) -> tuple[int, int]: ...

    def close(self) -> None: ...


class RingSource:
    """Batches ``(LINKTYPE_ETHERNET, frames)`` from ``rings``, until ``stop()`` or ``deadline``
    (a ``clock()`` value), releasing every held frame before it ends."""

    def __init__(
        self,
        rings: Sequence[RingLike],
        *,
        stop: Callable[[], bool] = lambda: False,
        deadline: float | None = None,
        hold_ms: int = 250,
        timeout_ms: int = 100,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if not rings:
            raise ValueError("no rings to read")
        self.rings = list(rings)
        self.stop = stop
        self.deadline = deadline
        self.hold_ns = hold_ms * 1_000_000
        self.timeout_ms = timeout_ms
        self.clock = clock
        self.wall_ns = wall_ns
        self.drained = False
        self.blocks = False
        """Yield whole blocks instead of ``(linktype, frames)`` (set by
        :func:`~vmsniff.pipeline.run.choose_stage`): for
        :class:`~vmsniff.pipeline.framepath.FramePath` with one ring, for
        :class:`~vmsniff.pipeline.merge.MergedFramePaths` with several."""

    @property
    def real_rings(self) -> bool:
        """Kernel rings (a test's fake rings have no memory for a block path to write in)."""
        return all(hasattr(ring, "memory") for ring in self.rings)

    def drained_flag(self) -> bool:
        """For ``drive(stop=…)``: true once the source has released everything and ended."""
        return self.drained

    @property
    def kernel_dropped(self) -> int:
        return sum(r.statistics()[1] for r in self.rings)

    def close(self) -> None:
        """Close every ring (idempotent; :func:`~vmsniff.capture.live.open_capture` also does)."""
        for ring in self.rings:
            ring.close()

    def _ending(self) -> bool:
        return self.stop() or (self.deadline is not None and self.clock() >= self.deadline)

    def batches(self) -> Iterator[Any]:
        if len(self.rings) == 1:
            yield from self._single()
        elif self.blocks:
            yield from self._merged_blocks()
        else:
            yield from self._merged()
        self.drained = True

    def _single(self) -> Iterator[Any]:
        if self.blocks:
            for raw in self.rings[0].raw_blocks(self.timeout_ms):
                yield raw
                if self._ending():
                    return
            return
        for block in self.rings[0].typed_blocks(self.timeout_ms):
            yield LINKTYPE_ETHERNET, block
            if self._ending():
                return

    def _merged_blocks(self) -> Iterator[Any]:
        """Several rings, for :class:`~vmsniff.pipeline.merge.MergedFramePaths`: each ready
        block as ``(index, block, empty_at, False)`` (the block is handed back when the
        generator resumes), and after each round, once every ring was read until it had
        nothing ready (at most ``block_count`` blocks each), ``(None, None, empty_at,
        ending)`` to release what no ring can precede any more."""
        poller = select.poll()
        for ring in self.rings:
            poller.register(ring.fileno(), select.POLLIN | select.POLLERR)
        gens = [ring.raw_blocks(0) for ring in self.rings]
        rounds = [getattr(ring, "block_count", 16) for ring in self.rings]
        empty_at = [self.wall_ns()] * len(gens)
        try:
            while True:
                poller.poll(self.timeout_ms)
                for index, gen in enumerate(gens):
                    for _ in range(rounds[index]):
                        now = self.wall_ns()  # before looking: what comes later is newer
                        block = next(gen)
                        if block is None:
                            empty_at[index] = now
                            break
                        yield index, block, empty_at, False
                ending = self._ending()
                yield None, None, tuple(empty_at), ending
                if ending:
                    return
        finally:
            for gen in gens:  # hand the last block of each ring back to the kernel
                gen.close()

    def _merged(self) -> Iterator[tuple[int, list[Any]]]:
        poller = select.poll()
        for ring in self.rings:
            poller.register(ring.fileno(), select.POLLIN | select.POLLERR)
        gens = [ring.typed_blocks(0) for ring in self.rings]
        held: list[tuple[int, int, tuple[int, bytes, int, int, int]]] = []
        push, pop = heapq.heappush, heapq.heappop
        seq = 0
        # The same watermark as MergedFramePaths: nothing can come from ring i older than
        # the newest frame read from it, nor than when it was last found empty minus the hold.
        newest = [0] * len(gens)
        empty_at = [self.wall_ns()] * len(gens)
        rounds = [getattr(ring, "block_count", 16) for ring in self.rings]
        try:
            while True:
                poller.poll(self.timeout_ms)
                for index, gen in enumerate(gens):
                    for _ in range(rounds[index]):  # a busy ring does not starve the others
                        now = self.wall_ns()  # before looking: what comes later is newer
                        block = next(gen)
                        if not block:  # empty list: nothing more in this ring now
                            empty_at[index] = now
                            break
                        for ts, frame, ptype, wire in block:
                            push(held, (ts, seq, (ts, bytes(frame), ptype, wire, index)))
                            seq += 1
                            newest[index] = max(newest[index], ts)
                ending = self._ending()
                mark = min(max(n, e - self.hold_ns) for n, e in zip(newest, empty_at, strict=True))
                out = []
                while held and (ending or held[0][0] < mark):
                    out.append(pop(held)[2])
                yield LINKTYPE_ETHERNET, out
                if ending:
                    return
        finally:
            for gen in gens:  # hand the last block of each ring back to the kernel
                close = getattr(gen, "close", None)
                if close is not None:
                    close()
