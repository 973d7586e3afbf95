"""The pcap/pcapng reader under mutation, in CI's size: the first inputs of the fuzz
campaign (``python -m fuzz --decoder pcap``), and hypothesis-chosen damage to files written by
vmsniff's own encoders, fed in any chunking."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.mutate import Mutator
from fuzz.run import inputs
from fuzz.targets import TARGETS
from vmsniff.errors import MalformedPacket
from vmsniff.pcap.pcap import file_header, record
from vmsniff.pcap.pcapng import (
    enhanced_packet_block,
    interface_description_block,
    section_header_block,
)
from vmsniff.pcap.reader import CaptureReader, Record

PACKETS = st.lists(st.tuples(st.integers(0, 2**40), st.binary(max_size=40), st.integers(0, 9)),
                   min_size=1, max_size=5)  # fmt: skip


def capture(fmt: str, packets: list[tuple[int, bytes, int]]) -> bytes:
    if fmt == "pcap":
        body = b"".join(record(ts, d, len(d) + extra, nanosecond=True) for ts, d, extra in packets)
        return file_header(65535, 1, nanosecond=True) + body
    head = section_header_block() + interface_description_block(1, 0, tsresol=9)
    return head + b"".join(enhanced_packet_block(0, ts, d, len(d) + extra, flags=extra % 3 or None)
                           for ts, d, extra in packets)  # fmt: skip


def feed(data: bytes, cuts: list[int]) -> list[Record]:
    reader = CaptureReader()
    out: list[Record] = []
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for a, b in zip(points, points[1:], strict=False):
        out += reader.feed(data[a:b])
    reader.close()
    return out


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["pcap", "pcapng"]), PACKETS, st.lists(st.integers(0, 2**16), max_size=6))
def test_round_trip_in_any_chunking(fmt: str, packets: list[tuple[int, bytes, int]],
                                    cuts: list[int]) -> None:  # fmt: skip
    """decode(encode(x)) == x, however the bytes arrive."""
    got = [(r.ts_ns, r.data, r.origlen) for r in feed(capture(fmt, packets), cuts)]
    assert got == [(ts, d, len(d) + extra) for ts, d, extra in packets]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["pcap", "pcapng"]), PACKETS, st.integers(0, 2**32),
       st.lists(st.integers(0, 2**16), max_size=4))  # fmt: skip
def test_damaged_files_give_records_or_malformed(
    fmt: str, packets: list[tuple[int, bytes, int]], seed: int, cuts: list[int]
) -> None:
    """Bit flips, boundary values in length fields, insertions, deletions, truncation,
    splicing: records or MalformedPacket, never another exception."""
    good = capture(fmt, packets)
    damaged = Mutator(random.Random(seed), [good]).mutate(good)
    try:
        records = feed(damaged, cuts)
    except MalformedPacket:
        return
    assert all(r.origlen >= len(r.data) for r in records)


def test_the_campaigns_first_inputs_run_clean() -> None:
    """What ``python -m fuzz --decoder pcap/pcapng --seed 1`` starts with (every seed, then
    mutations): a few hundred each, so that a broken target or seed shows in CI."""
    for name in ("pcap", "pcapng"):
        run = TARGETS[name].run
        for data in inputs(name, 1, 300):
            run(data)
