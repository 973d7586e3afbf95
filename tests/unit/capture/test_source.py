"""Reading and merging rings (vmsniff/capture/source.py), with fake rings on real pipes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from vmsniff.capture.source import RingSource


class FakeRing:
    """Blocks handed out in order; its fd (a pipe) is readable while blocks remain."""

    def __init__(self, blocks: list[list[tuple[int, bytes, int, int]]], drops: int = 0) -> None:
        self.blocks = list(blocks)
        self.r, self.w = os.pipe()
        if self.blocks:
            os.write(self.w, b"x")
        self.drops = drops
        self.released = 0
        self.closed = False

    def fileno(self) -> int:
        return self.r

    def typed_blocks(self, timeout_ms: int = 100) -> Iterator[list[Any]]:
        while True:
            if not self.blocks:
                yield []
                continue
            block = [(ts, memoryview(bytearray(d)), pt, n) for ts, d, pt, n in self.blocks.pop(0)]
            try:
                yield block
            finally:
                for _, view, _, _ in block:
                    view.release()  # what the real ring does: views die with the block
                self.released += 1

    def statistics(self) -> tuple[int, int]:
        return 0, self.drops

    def close(self) -> None:
        if not self.closed:
            os.close(self.r)
            os.close(self.w)
            self.closed = True


def test_one_ring_passes_blocks_through_until_stopped() -> None:
    ring = FakeRing([[(1, b"a", 0, 1)], [(2, b"b", 4, 1)]], drops=7)
    stops = iter([False, True])
    source = RingSource([ring], stop=lambda: next(stops))
    got = [[(ts, bytes(f)) for ts, f, _, _ in frames] for _, frames in source.batches()]
    assert got == [[(1, b"a")], [(2, b"b")]]
    assert source.drained and source.kernel_dropped == 7
    source.close()
    assert ring.closed


def test_several_rings_are_merged_in_time_order_and_released_at_the_end() -> None:
    a = FakeRing([[(10, b"a10", 0, 3), (30, b"a30", 0, 3)]])
    b = FakeRing([[(5, b"b05", 4, 3)], [(20, b"b20", 4, 3)]])
    rounds = iter([False, True])
    # wall clock 25 ns, no hold: ring b, found empty at 25, may still deliver anything from
    # 25 on, so a30 waits for the end
    source = RingSource([a, b], stop=lambda: next(rounds), hold_ms=0, timeout_ms=0,
                        wall_ns=lambda: 25)  # fmt: skip
    batches = [frames for _, frames in source.batches()]
    flat = [(ts, data, index) for batch in batches for ts, data, _, _, index in batch]
    # Everything once, in timestamp order across rings, each with its ring's index; the
    # frames are copies that outlive their blocks.
    assert flat == [(5, b"b05", 1), (10, b"a10", 0), (20, b"b20", 1), (30, b"a30", 0)]
    assert [len(batch) for batch in batches] == [3, 1]
    assert source.drained
    for ring in (a, b):
        ring.close()


def test_a_ring_that_may_still_deliver_holds_the_others_back() -> None:
    """Ring b was found empty at 1.5 ms with a hold of 1 ms: it may still hand over a block
    with frames from 0.5 ms on, so ring a's frames after that wait."""
    a = FakeRing([[(t, b"a", 0, 1) for t in (10, 2_000_000)]])
    b = FakeRing([])
    rounds = iter([False, True])
    source = RingSource([a, b], stop=lambda: next(rounds), hold_ms=1, timeout_ms=0,
                        wall_ns=lambda: 1_500_000)  # fmt: skip
    batches = [[ts for ts, *_ in frames] for _, frames in source.batches()]
    assert batches == [[10], [2_000_000]]
    for ring in (a, b):
        ring.close()


def test_a_deadline_ends_the_source_too() -> None:
    ring = FakeRing([[(1, b"a", 0, 1)]])
    clock = iter([0.0, 5.0])
    source = RingSource([ring], deadline=1.0, clock=lambda: next(clock))
    assert len(list(source.batches())) == 2  # the block, then the deadline passes
    ring.close()


def test_no_rings_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        RingSource([])
