"""Several rings merged block by block give what the packet-by-packet merge gives: every frame
once, in timestamp order, filed under its NIC, with its direction."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.pipeline.blocks import block
from tests.unit.pipeline.helpers import icmp_frame
from tests.unit.pipeline.test_fastpath import pcapng_view
from vmsniff.capture.stage import CaptureStage, StagePoint
from vmsniff.formats.capture import EPB_FROM_VM, EPB_TO_VM
from vmsniff.formats.packet import PACKET_OUTGOING
from vmsniff.model import Direction
from vmsniff.pcap.encoder import new_encoder
from vmsniff.pipeline.core import Stats
from vmsniff.pipeline.framepath import FramePath
from vmsniff.pipeline.merge import MergedFramePaths
from vmsniff.pipeline.scatter import Scatter, joined

SIZE = 1 << 16
HOLD = 40_000_000
BITS = {Direction.FROM_VM: EPB_FROM_VM, Direction.TO_VM: EPB_TO_VM}
Frame = tuple[int, bytes, int]


def reference(rings: list[list[Frame]], points: list[StagePoint], fmt: str) -> list[Any]:
    """The packet-by-packet stage over every ring's frames in timestamp order (as RingSource
    merges them), encoded; as (interface, ts, caplen, origlen, flags, bytes) per record."""
    stage = CaptureStage(points, snaplen=262144, keep=Direction.BOTH)
    enc = new_encoder(fmt, 262144, "vmsniff capture")
    frames = sorted(
        ((ts, data, ptype, len(data), i) for i, ring in enumerate(rings)
         for ts, data, ptype in ring),
        key=lambda f: f[0],
    )  # fmt: skip
    return pcapng_view(b"".join(enc.encode(p) for p in stage.push(frames)))


def run(rings: list[list[Frame]], points: list[StagePoint], per_block: int, order: list[int],
        empty_gap: int = 0) -> tuple[bytes, Stats]:  # fmt: skip
    """Feed every ring's blocks, in the ring ``order`` given (each ring's own blocks in order),
    releasing after each block as the source does after a round; then the final release."""
    enc = new_encoder("pcapng", 262144, "vmsniff capture")
    stats = Stats()
    out: list[Any] = []
    mems = [[block(ring[k : k + per_block], size=SIZE, mac=82)
             for k in range(0, len(ring), per_block)] for ring in rings]  # fmt: skip
    paths = []
    for point in points:
        # every block of a ring lives in one memory, as in a real ring: copy each in turn
        paths.append(FramePath(bytearray(SIZE), SIZE, enc, stats, name=point.name,
                               fixed=BITS[point.fixed] if point.fixed else 0))  # fmt: skip
    merged = MergedFramePaths(paths, stats, hold_ns=HOLD)
    nxt = [0] * len(rings)
    newest_seen = [0] * len(rings)
    for ring in order:
        if nxt[ring] >= len(mems[ring]):
            continue
        mem, base, count, first = mems[ring][nxt[ring]]
        nxt[ring] += 1
        paths[ring].writer.a[:] = memoryview(mem)  # the kernel filled the ring's block
        out += merged.process(ring, (base, count, first), [0] * len(rings), False)
        newest_seen[ring] = max(newest_seen[ring], max(f[0] for f in rings[ring]))
        # a release as after a round: the rings not read now were "empty" long ago
        empty = [0 if nxt[r] < len(mems[r]) else 10**19 for r in range(len(rings))]
        out += merged.process(None, None, empty, False)
        assert all(isinstance(p, bytes | Scatter) for p in out)
        out = [p.tobytes() if isinstance(p, Scatter) else p for p in out]  # before reuse
    out += merged.process(None, None, [0] * len(rings), True)
    assert merged.holding == 0
    merged.close()
    return joined(out), stats


def take_every_block(
    rings: list[list[Frame]], points: list[StagePoint], size: int
) -> tuple[MergedFramePaths, list[Any]]:
    """Each ring's frames as one block of ``size``, taken by a merge over two FramePaths;
    the interface blocks it returned."""
    enc = new_encoder("pcapng", 262144, "vmsniff capture")
    stats = Stats()
    mems = [block(r, size=size, mac=82) for r in rings]
    paths = [
        FramePath(m[0], size, enc, stats, name=p.name) for m, p in zip(mems, points, strict=True)
    ]
    merged = MergedFramePaths(paths, stats, hold_ns=HOLD)
    out: list[Any] = []
    for i, (_, base, count, first) in enumerate(mems):
        out += merged.process(i, (base, count, first), [0] * len(rings), False)
    return merged, out


def traffic(n: int, seed: int, *, step: int = 1000) -> list[list[Frame]]:
    rng = random.Random(seed)
    rings: list[list[Frame]] = [[], []]
    ts = 1_700_000_000_000_000_000
    for i in range(n):
        ts += rng.randrange(1, step)
        ring = rng.randrange(2)
        ptype = PACKET_OUTGOING if rng.random() < 0.3 else 0
        rings[ring].append((ts, icmp_frame(i, size=rng.choice([0, 0, 0, 30, 700])), ptype))
    return rings


POINTS = {
    "two taps": [StagePoint("tapA"), StagePoint("tapB")],
    "ovs both ways": [StagePoint("tapA", Direction.FROM_VM), StagePoint("tapA", Direction.TO_VM)],
}


@pytest.mark.parametrize("name", sorted(POINTS))
@pytest.mark.parametrize("order", ["alternate", "ring 0 first", "ring 1 first"])
def test_merged_blocks_equal_the_packet_merge(name: str, order: str) -> None:
    rings = traffic(400, seed=3)
    points = POINTS[name]
    feed = {
        "alternate": [0, 1] * 40,
        "ring 0 first": [0] * 40 + [1] * 40,
        "ring 1 first": [1] * 40 + [0] * 40,
    }[order]
    got, stats = run(rings, points, 25, feed)
    assert pcapng_view(got) == reference(rings, points, "pcapng")
    assert stats.written == stats.received == 400


def test_nothing_newer_than_a_ring_that_may_still_deliver_is_released() -> None:
    ts0 = 1_700_000_000_000_000_000
    rings: list[list[Frame]] = [[(ts0 + i * 10, icmp_frame(i), 0) for i in range(5)], []]
    enc = new_encoder("pcapng", 262144, "vmsniff capture")
    stats = Stats()
    mem, base, count, first = block(rings[0], size=SIZE, mac=82)
    paths = [FramePath(mem, SIZE, enc, stats, name="a"),
             FramePath(bytearray(SIZE), SIZE, enc, stats, name="b")]  # fmt: skip
    merged = MergedFramePaths(paths, stats, hold_ns=HOLD)
    idbs = merged.process(0, (base, count, first), [0, 0], False)
    assert len(idbs) == 1  # the interface block, written at once
    # ring b was found empty 20 ns after the third packet: it may still deliver anything
    # newer than that minus the hold, so nothing is released yet
    assert merged.process(None, None, [ts0, ts0 + 20], False) == []
    assert merged.holding == 5
    # found empty one hold after the third packet: the first two can go (strictly older)
    out = merged.process(None, None, [ts0, ts0 + 20 + HOLD], False)
    assert stats.written == 2 and merged.holding == 3
    assert [r[1] for r in pcapng_view(joined(idbs + out))] == [ts0, ts0 + 10]
    merged.process(None, None, [0, 0], True)
    assert stats.written == 5 and merged.holding == 0


def test_limit_cuts_in_time_order() -> None:
    rings = traffic(100, seed=5)
    points = POINTS["two taps"]
    merged, out = take_every_block(rings, points, SIZE)
    stats = merged.stats
    out += merged.process(None, None, [0, 0], True, limit=7)
    assert stats.written == stats.received == 7  # what -c left held was not received
    want = reference(rings, points, "pcapng")[:7]
    assert pcapng_view(joined(out)) == want


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 60), st.lists(st.integers(0, 1), max_size=200))
def test_random_rings_and_feeds(seed: int, per_block: int, feed: list[int]) -> None:
    rings = traffic(150, seed=seed, step=3)
    points = POINTS["two taps"]
    got, stats = run(rings, points, per_block, feed + [0, 1] * 160)
    assert pcapng_view(got) == reference(rings, points, "pcapng")
    assert stats.written == 150


def test_equal_timestamps_keep_the_order_they_came_in() -> None:
    ts = 1_700_000_000_000_000_000
    rings: list[list[Frame]] = [[(ts, icmp_frame(i), 0) for i in range(3)],
                                [(ts, icmp_frame(10 + i), 0) for i in range(3)]]  # fmt: skip
    points = POINTS["two taps"]
    got, _ = run(rings, points, 10, [1, 0])
    assert [r[0] for r in pcapng_view(got)] == ["tapB"] * 3 + ["tapA"] * 3


def test_a_record_that_did_not_fit_its_slot_is_merged_too() -> None:
    """The last packet of a full block cannot take its pcapng trailer in place: it is
    encoded the ordinary way and held with the others."""
    size, ts0 = 1 << 14, 1_700_000_000_000_000_000
    rings: list[list[Frame]] = [[], []]
    for r in range(2):
        used, i = 48, 0
        while used + 2 * (82 + 200) <= size:
            f = icmp_frame(i, size=i % 50)
            rings[r].append((ts0 + 2 * i + r, f, 0))
            used += (82 + len(f) + 7) & ~7
            i += 1
        rings[r].append((ts0 + 2 * i + r, icmp_frame(i, size=size - used - 82 - 42), 0))
    points = POINTS["two taps"]
    merged, out = take_every_block(rings, points, size)
    out += merged.process(None, None, [0, 0], True)
    assert merged.copied == 2
    assert pcapng_view(joined(out)) == reference(rings, points, "pcapng")
