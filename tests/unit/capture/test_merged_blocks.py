"""Several rings through the block fast path, end to end without a kernel: RingSource in
blocks mode, capture_stage, drive and a real FileSink, over fake rings that hand out real
TPACKET_V3 blocks and scribble over each block once it is handed back."""

from __future__ import annotations

import os
import random
import types
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.pipeline.blocks import block
from tests.unit.pipeline.helpers import icmp_frame
from tests.unit.pipeline.test_fastpath import pcapng_view
from vmsniff.capture.live import capture_stage
from vmsniff.capture.source import RingSource
from vmsniff.capture.stage import CaptureStage, StagePoint
from vmsniff.formats.packet import PACKET_OUTGOING
from vmsniff.model import Direction
from vmsniff.pipeline.merge import MergedFramePaths
from vmsniff.pipeline.run import BlockStage, PacketStage, drive
from vmsniff.pipeline.sinks import FileSink

SIZE = 1 << 16
MS = 1_000_000


class BlockRing:
    """Hands out each round's blocks once the wall clock has reached that round (then nothing
    until the next), as a ring whose blocks the kernel has retired. A block handed back is
    zeroed, as the kernel would reuse it."""

    block_size = SIZE
    block_count = 4

    def __init__(self, rounds: list[list[list[Any]]], clock: list[int]) -> None:
        self.ready = [(T0 + r * STEP, packets) for r, blocks in enumerate(rounds)
                      for packets in blocks]  # fmt: skip
        self.clock = clock
        self.memory = bytearray(SIZE * self.block_count)
        self.r, self.w = os.pipe()
        self._next = 0

    def fileno(self) -> int:
        return self.r

    def raw_blocks(self, timeout_ms: int = 100) -> Generator[tuple[int, int, int] | None]:
        while True:
            if not self.ready or self.ready[0][0] > self.clock[0]:
                yield None
                continue
            _, packets = self.ready.pop(0)
            mem, _, count, first = block(packets, size=SIZE, mac=82)
            base = self._next * SIZE
            self.memory[base : base + SIZE] = mem
            try:
                yield base, count, first
            finally:
                self.memory[base : base + SIZE] = bytes(SIZE)
                self._next = (self._next + 1) % self.block_count

    def typed_blocks(self, timeout_ms: int = 100) -> Generator[list[Any]]:
        """The same blocks as frames, for the packet-by-packet merge."""
        while True:
            if not self.ready or self.ready[0][0] > self.clock[0]:
                yield []
                continue
            _, packets = self.ready.pop(0)
            yield [(ts, memoryview(data), ptype, len(data)) for ts, data, ptype in packets]

    def statistics(self) -> tuple[int, int]:
        return 0, 0

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


ROUNDS = 8
STEP = 30 * MS  # the wall clock moves this much each round
HOLD = 70  # ms: a block comes at most this long after its first frame (2 rounds + slack)


def traffic(seed: int) -> tuple[list[list[list[list[Any]]]], int]:
    """Per ring and round, the blocks it hands over. The frames of round r's window
    ``[T_r - 30 ms, T_r)`` come in round r, or, for a ring whose block was late (the kernel
    retires it on a timer), in round r + 1, before that ring's next frames: each ring's frames
    in time order, the rings' interleaved and sometimes behind each other."""
    rng = random.Random(seed)
    rounds: list[list[list[list[Any]]]] = [[[] for _ in range(ROUNDS + 1)] for _ in range(2)]
    total = 0
    for rnd in range(ROUNDS):
        now = T0 + rnd * STEP
        for ring in range(2):
            stamps = sorted(rng.randrange(now - STEP, now) for _ in range(rng.randrange(0, 40)))
            late = rng.random() < 0.4
            for k in range(0, len(stamps), 15):
                packets = [(t, icmp_frame(total + j, size=rng.choice([0, 30, 700])),
                            rng.choice([0, PACKET_OUTGOING]))
                           for j, t in enumerate(stamps[k : k + 15])]  # fmt: skip
                total += len(packets)
                rounds[ring][rnd + late].append(packets)
    return rounds, total


T0 = 10_000 * MS


def run(
    tmp_path: Path, seed: int, count: int | None, *, blocks: bool = True
) -> tuple[list[Any], Any, int]:
    rounds, total = traffic(seed)
    clock = [T0]
    rings = [BlockRing(rounds[0], clock), BlockRing(rounds[1], clock)]
    ticks = iter(range(3 * (ROUNDS + 2)))

    def stop() -> bool:  # asked once a poll round: the clock moves on
        clock[0] += STEP // 3
        return next(ticks, 3 * (ROUNDS + 2)) >= 3 * (ROUNDS + 2) - 1

    source = RingSource(rings, stop=stop, hold_ms=HOLD, timeout_ms=0, wall_ns=lambda: clock[0])
    stage = CaptureStage([StagePoint("tapA"), StagePoint("tapB")], snaplen=262144,
                         keep=Direction.BOTH)  # fmt: skip
    out = tmp_path / f"out-{seed}-{count}-{blocks}.pcapng"
    sink = FileSink(str(out), "pcapng", 262144, application="vmsniff capture")
    cap: Any = types.SimpleNamespace(source=source, stage=stage)
    if blocks:
        run_stage = capture_stage(cap, sink, Direction.BOTH)
        assert isinstance(run_stage, BlockStage) and isinstance(run_stage.path, MergedFramePaths)
        run_stage.path.hold_ns = HOLD * MS
    else:
        run_stage = PacketStage(stage)
    stats = drive(source, run_stage, sink, count=count, stop=source.drained_flag)
    run_stage.close()
    sink.close()
    source.close()
    return pcapng_view(out.read_bytes()), stats, total


@pytest.mark.parametrize("seed", range(8))
def test_every_frame_once_in_time_order(tmp_path: Path, seed: int) -> None:
    got, stats, total = run(tmp_path, seed, None)
    ts = [g[1] for g in got]
    assert len(got) == total and ts == sorted(ts)
    assert stats.received == stats.written == total
    # each frame filed under its ring's NIC, with the direction of its packet type
    assert {g[0] for g in got} <= {"tapA", "tapB"}
    assert {g[4] for g in got} <= {1, 2}


@pytest.mark.parametrize("seed", range(3))
def test_count_stops_at_the_first_records_in_time(tmp_path: Path, seed: int) -> None:
    whole, _, _ = run(tmp_path, seed, None)
    got, stats, _ = run(tmp_path, seed, 5)
    assert got == whole[:5]
    assert stats.written == 5


@pytest.mark.parametrize("seed", range(4))
def test_the_packet_by_packet_merge_writes_the_same(tmp_path: Path, seed: int) -> None:
    fast, fast_stats, total = run(tmp_path, seed, None)
    slow, slow_stats, _ = run(tmp_path, seed, None, blocks=False)
    assert slow == fast and len(slow) == total
    assert slow_stats.as_dict() == fast_stats.as_dict()
