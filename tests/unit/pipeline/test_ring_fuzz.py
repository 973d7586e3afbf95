"""Ring.blocks() and Ring.typed_blocks(), the per-packet walkers of a TPACKET_V3 block, fed
corrupted blocks (what ``python -m fuzz --decoder ring-py`` found): MalformedPacket, never
another exception, a hang or a frame outside the block."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.pipeline.blocks import block
from vmsniff.errors import MalformedPacket
from vmsniff.pipeline.ring import Ring

SIZE = 1 << 14
STEP = (96 + 60 + 7) & ~7  # one slot of packets() below


class NoPoll:
    def poll(self, timeout: int) -> list[tuple[int, int]]:
        return []


def ring_over(mem: bytearray) -> Ring:
    """A Ring over ``mem`` (two blocks) with no socket behind it: only its walkers run."""
    ring = Ring.__new__(Ring)
    ring._view = memoryview(mem)
    ring.block_size = SIZE
    ring.block_count = 2
    ring._next = 0
    ring._poll = NoPoll()  # type: ignore[assignment]
    return ring


def packets(n: int) -> bytearray:
    mem, *_ = block([(i, bytes([i]) * 60) for i in range(n)], size=SIZE, total=2 * SIZE)
    return mem


def first_block(mem: bytearray, typed: bool) -> list[Any]:
    ring = ring_over(mem)
    gen: Iterator[list[Any]] = ring.typed_blocks(0) if typed else ring.blocks(0)
    try:
        return [(f[0], bytes(f[1]), *f[2:]) for f in next(gen)]  # views die with the block
    finally:
        gen.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("typed", [False, True])
def test_a_valid_block_is_walked(typed: bool) -> None:
    frames = first_block(packets(5), typed)
    assert [bytes(f[1]) for f in frames] == [bytes([i]) * 60 for i in range(5)]


@pytest.mark.parametrize("typed", [False, True])
def test_more_packets_than_the_block_can_hold(typed: bool) -> None:
    """A count of 100000 with a tp_next_offset of 0 handed out one slot 100000 times (with
    0xffffffff: 4 billion times, a hang that eats the memory)."""
    mem = packets(5)
    struct.pack_into("=I", mem, 12, 100_000)
    struct.pack_into("=I", mem, 48 + 4 * STEP, 0)
    with pytest.raises(MalformedPacket, match="cannot fit"):
        first_block(mem, typed)


@pytest.mark.parametrize("typed", [False, True])
def test_a_link_past_the_ring(typed: bool) -> None:
    """Was struct.error reading the next slot's header beyond the buffer."""
    mem = packets(5)
    struct.pack_into("=I", mem, 48 + STEP, 4 * SIZE)
    with pytest.raises(MalformedPacket, match="outside the block"):
        first_block(mem, typed)


@pytest.mark.parametrize("typed", [False, True])
def test_a_frame_running_into_the_next_block(typed: bool) -> None:
    """A tp_snaplen past the block's end gave a frame made of the next block's bytes."""
    mem = packets(5)
    struct.pack_into("=I", mem, 48 + 2 * STEP + 12, SIZE)
    with pytest.raises(MalformedPacket, match="outside the block"):
        first_block(mem, typed)


def test_the_campaigns_first_inputs_run_clean() -> None:
    """What ``python -m fuzz --decoder ring-py --seed 1`` starts with."""
    from fuzz.run import inputs
    from fuzz.targets import TARGETS

    run = TARGETS["ring-py"].run
    for data in inputs("ring-py", 1, 300):
        run(data)
