"""Capture's block fast path writes what the packet-by-packet capture stage and encoder write."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.pipeline.blocks import block
from tests.unit.pipeline.helpers import icmp_frame
from tests.unit.pipeline.test_fastpath import same_capture
from vmsniff.capture.stage import CaptureStage, StagePoint
from vmsniff.formats.capture import EPB_FROM_VM, EPB_TO_VM
from vmsniff.formats.packet import PACKET_OUTGOING
from vmsniff.model import Direction
from vmsniff.pcap.encoder import new_encoder
from vmsniff.pipeline.core import Stats
from vmsniff.pipeline.framepath import FramePath
from vmsniff.pipeline.scatter import joined

BITS = {Direction.FROM_VM: EPB_FROM_VM, Direction.TO_VM: EPB_TO_VM}


def traffic(n: int = 120) -> list[tuple[int, bytes, int]]:
    return [
        (1_700_000_000_000_000_000 + i * 1000, icmp_frame(i, size=(i * 37) % 1400),
         PACKET_OUTGOING if i % 3 == 0 else 0)
        for i in range(n)
    ]  # fmt: skip


def reference(
    frames: list[tuple[int, bytes, int]], fmt: str, keep: Direction, fixed: Direction | None,
    snaplen: int,
) -> tuple[bytes, Stats]:  # fmt: skip
    stage = CaptureStage([StagePoint("tap0", fixed)], snaplen=snaplen, keep=keep)
    enc = new_encoder(fmt, snaplen, "vmsniff capture")
    pkts = stage.push([(ts, f, t, len(f)) for ts, f, t in frames])
    return b"".join(enc.encode(p) for p in pkts), stage.stats


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("keep", list(Direction))
@pytest.mark.parametrize("fixed", [None, Direction.TO_VM])
@pytest.mark.parametrize("snaplen", [262144, 60])
@pytest.mark.parametrize("mac", [82, 68])
def test_frame_path_equals_the_capture_stage(
    fmt: str, keep: Direction, fixed: Direction | None, snaplen: int, mac: int
) -> None:
    frames = traffic()
    want, want_stats = reference(frames, fmt, keep, fixed, snaplen)
    mem, base, count, first = block(frames, size=1 << 18, mac=mac)  # type: ignore[arg-type]
    stats = Stats()
    fp = FramePath(
        mem, 1 << 18, new_encoder(fmt, snaplen, "vmsniff capture"), stats, name="tap0",
        fixed=BITS.get(fixed, 0) if fixed else 0, wanted=BITS.get(keep, 0), snaplen=snaplen,
    )  # fmt: skip
    got = joined(fp.process(base, count, first))
    fp.close()
    same_capture(fmt, got, want)
    assert stats.as_dict() == want_stats.as_dict()


def test_limit_and_a_record_that_does_not_fit() -> None:
    frames: list[Any] = []
    size, used, i = 1 << 14, 48, 0
    while used + 2 * (82 + 200) <= size:
        f = icmp_frame(i, size=i % 50)
        frames.append((i, f, 0))
        used += (82 + len(f) + 7) & ~7
        i += 1
    frames.append((i, icmp_frame(i, size=size - used - 82 - len(icmp_frame(i))), 0))
    want, _ = reference(frames, "pcapng", Direction.BOTH, None, 262144)
    mem, base, count, first = block(frames, size=size, mac=82)
    stats = Stats()
    fp = FramePath(mem, size, new_encoder("pcapng", 262144, "vmsniff capture"), stats, name="tap0")
    got = joined(fp.process(base, count, first))
    assert fp.copied == 1
    same_capture("pcapng", got, want)
    mem, base, count, first = block(frames, size=size, mac=82)
    stats = Stats()
    fp = FramePath(mem, size, new_encoder("pcap", 262144), stats, name="tap0")
    got = joined(fp.process(base, count, first, limit=7))
    assert stats.written == 7
    assert got == reference(frames[:7], "pcap", Direction.BOTH, None, 262144)[0]
