"""The ring block walker fed corrupted blocks (what ``python -m fuzz --decoder ring`` found):
it raises MalformedPacket, never another exception, never hangs, never hands out a slot or a
frame outside the block, and agrees with a slow walk wherever the block is one the kernel
could have written."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.pipeline.blocks import block
from tests.unit.pipeline.helpers import gre, icmp_frame
from vmsniff.errors import MalformedPacket
from vmsniff.pcap.encoder import new_encoder
from vmsniff.pipeline.core import Pipeline, PipelineConfig
from vmsniff.pipeline.fastpath import FastPath
from vmsniff.pipeline.inplace import BlockRecords

SIZE = 1 << 14
STEP = (96 + 60 + 7) & ~7  # a slot of packets(): header, gap to tp_mac = 96, 60-byte frame


def writer(mem: bytearray) -> BlockRecords:
    return BlockRecords(mem, SIZE, new_encoder("pcap", 262144), lambda code: (None, 1, False, None))


def packets(n: int, size: int = 60) -> tuple[bytearray, int, int, int]:
    return block([(i, bytes([i]) * size) for i in range(n)], size=SIZE)


def slow_walk(mem: bytearray, count: int, first: int) -> list[int] | None:
    """The chain one packet at a time with struct at the exact offsets; None unless every
    slot is 8-aligned, after the block descriptor, with header and frame inside the block."""
    out, pos = [], first
    if first < 48:
        return None
    for i in range(count):
        if pos % 8 or pos + 68 > SIZE:
            return None
        nxt, snap, mac = (struct.unpack_from("=I", mem, pos)[0],
                          struct.unpack_from("=I", mem, pos + 12)[0],
                          struct.unpack_from("=H", mem, pos + 24)[0])  # fmt: skip
        if pos + mac + snap > SIZE or (i + 1 < count and nxt == 0):
            return None
        out.append(pos)
        pos += nxt
    return out


@pytest.mark.parametrize("count", [0xFFFFFFFF, 0x7FFFFFFF, SIZE])
def test_a_packet_count_the_block_cannot_hold(count: int) -> None:
    """Was a 32 GiB allocation (MemoryError) or a walk of 2**31 packets (a hang)."""
    mem, base, _, first = packets(10)
    with pytest.raises(MalformedPacket, match="cannot fit"):
        writer(mem).offsets(base, count, first)


@pytest.mark.parametrize("step", [SIZE * 4, 0xFFFFFFF8])
def test_a_link_past_the_ring(step: int) -> None:
    """Was IndexError reading the next slot's header beyond the buffer."""
    mem, base, count, first = packets(10)
    struct.pack_into("=I", mem, first, step)
    with pytest.raises(MalformedPacket, match="outside the block"):
        writer(mem).offsets(base, count, first)


@pytest.mark.parametrize("n", [5, 100])  # walked, and found by the stride/scan shortcuts
def test_a_chain_ended_early(n: int) -> None:
    """A tp_next_offset of 0 before the last packet: the same slot again and again was
    handed out as every later packet."""
    mem, base, count, first = packets(n)
    struct.pack_into("=I", mem, first + 2 * STEP, 0)
    with pytest.raises(MalformedPacket, match="outside the block"):
        writer(mem).offsets(base, count, first)


def test_a_frame_running_past_the_block() -> None:
    """A tp_snaplen reaching past the block's end: the record would have been cut from the
    next block of the ring."""
    mem, base, count, first = packets(5)
    struct.pack_into("=I", mem, first + 4 * STEP + 12, SIZE)
    with pytest.raises(MalformedPacket, match="outside the block"):
        writer(mem).offsets(base, count, first)


def test_receive_fast_path_refuses_a_corrupted_block() -> None:
    """Through receive's fast path: MalformedPacket, not IndexError out of numpy."""
    frames = [(i, gre(icmp_frame(i), key=5)) for i in range(4)]
    mem, base, count, first = block(frames, size=SIZE)
    struct.pack_into("=I", mem, first, 0xFFFFFFF8)
    fp = FastPath(mem, SIZE, Pipeline(PipelineConfig()), new_encoder("pcap", 262144),
                  kernel_filtered=False)  # fmt: skip
    with pytest.raises(MalformedPacket):
        fp.process(base, count, first)
    fp.close()


FIELDS = {"next": 0, "snaplen": 12, "mac": 24}
VALUES = [0, 1, 4, 8, 48, 68, 96, 0xFFFF, SIZE - 48, SIZE, 0x7FFFFFFF, 0xFFFFFFF8, 0xFFFFFFFF]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 120),
    st.sampled_from([60, 64, 100]),
    st.lists(st.tuples(st.integers(0, 119), st.sampled_from(sorted(FIELDS)),
                       st.sampled_from(VALUES)), max_size=3),
    st.sampled_from([None, 0, 8, 40, 47, 52, 56, SIZE]),
)  # fmt: skip
def test_corrupted_blocks_never_mislead_the_walker(
    n: int, size: int, damage: list[tuple[int, str, int]], first_at: int | None
) -> None:
    mem, base, count, first = packets(min(n, SIZE // (96 + size + 8) - 1), size)
    step = (96 + size + 7) & ~7
    for packet, name, value in damage:
        at = first + (packet % count) * step + FIELDS[name]
        struct.pack_into(
            "=H" if name == "mac" else "=I",
            mem,
            at,
            value & (0xFFFF if name == "mac" else 0xFFFFFFFF),
        )
    if first_at is not None:
        first = first_at
    expected = slow_walk(mem, count, first)
    try:
        got = writer(mem).offsets(base, count, first).tolist()
    except MalformedPacket:
        assert expected is None
    else:
        assert got == expected


def test_a_guessed_run_whose_last_link_leaves_the_block() -> None:
    """Found by the fuzzer after the checks above: 16 packets guessed at once, the last of
    them pointing past the block, and the next, longer guess was made from there (ValueError
    from numpy: a negative number of candidates)."""
    mem, base, count, first = packets(100)  # too many for a walk, no stride, no scan either
    last_guessed = first + 15 * STEP
    struct.pack_into("=I", mem, last_guessed, SIZE + 20 * STEP - last_guessed)  # 20 slots past
    with pytest.raises(MalformedPacket, match="outside the block"):
        writer(mem).offsets(base, count, first)


def test_the_campaigns_first_inputs_run_clean() -> None:
    """What ``python -m fuzz --decoder ring --seed 1`` starts with (every seed block, then
    corrupted ones), through offsets(), header_fields(), place() and encode()."""
    from fuzz.run import inputs
    from fuzz.targets import TARGETS

    run = TARGETS["ring"].run
    for data in inputs("ring", 1, 300):
        run(data)
