"""pipeline.run: the one choice between per-packet and per-block processing, and drive() over
either with one sink interface."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.pipeline.helpers import gre, icmp_frame
from vmsniff.formats.capture import LINKTYPE_RAW
from vmsniff.pcap.reader import read_records
from vmsniff.pipeline.core import Pipeline, PipelineConfig, Stats
from vmsniff.pipeline.run import BlockStage, PacketStage, Records, choose_stage, drive
from vmsniff.pipeline.sinks import FileSink, PrintSink, Rotation, TeeSink, open_sink


class _Source:
    """A source that can yield blocks, as LiveSource and RingSource can."""

    def __init__(self, real_rings: bool = True) -> None:
        self.real_rings = real_rings
        self.blocks = False
        self.kernel_dropped = 0

    def batches(self) -> Iterator[Any]:
        return iter(())

    def close(self) -> None:
        pass


class _Path:
    def __init__(self) -> None:
        self.closed = False

    def process(self, *block: Any, limit: int | None = None) -> list[Any]:
        return []

    def close(self) -> None:
        self.closed = True


def _sinks(tmp_path: Path) -> dict[str, Any]:
    return {
        "file": FileSink(str(tmp_path / "a.pcap"), "pcap", 100),
        "rotated": FileSink(str(tmp_path / "b.pcap"), "pcap", 100, rotation=Rotation(size=10**6)),
        "print": PrintSink(io.StringIO()),
        "file+print": TeeSink(
            [FileSink(str(tmp_path / "c.pcap"), "pcap", 100), PrintSink(io.StringIO())]
        ),
        "keyed": open_sink(str(tmp_path / "k-{key}.pcap"), "pcap", 100, application="t"),
    }


@pytest.mark.parametrize("kind", ["file", "rotated", "print", "file+print", "keyed"])
@pytest.mark.parametrize("real_rings", [True, False])
def test_blocks_only_for_one_plain_file_from_real_rings(
    tmp_path: Path, kind: str, real_rings: bool
) -> None:
    sink = _sinks(tmp_path)[kind]
    source = _Source(real_rings)
    built: list[_Path] = []

    def block_path() -> _Path:
        built.append(_Path())
        return built[-1]

    pipeline = Pipeline(PipelineConfig())
    stage = choose_stage(source, sink, pipeline, block_path)
    blocks = kind == "file" and real_rings
    assert isinstance(stage, BlockStage if blocks else PacketStage)
    assert source.blocks is blocks
    assert len(built) == int(blocks)  # the block path (it maps the rings) only when chosen
    assert stage.stats is pipeline.stats
    stage.close()
    assert all(p.closed for p in built)
    sink.close()


def test_a_file_source_never_takes_blocks(tmp_path: Path) -> None:
    sink = FileSink(str(tmp_path / "a.pcap"), "pcap", 100)
    stage = choose_stage(object(), sink, Pipeline(PipelineConfig()), None)  # type: ignore[arg-type]
    assert isinstance(stage, PacketStage)
    sink.close()


class _Frames:
    """(linktype, frames) batches, as FileSource and a ring in frame mode give them."""

    def __init__(self, batches: list[list[tuple[int, bytes]]]) -> None:
        self._batches = batches
        self.kernel_dropped = 3

    def batches(self) -> Iterator[Any]:
        for frames in self._batches:
            yield LINKTYPE_RAW, frames

    def close(self) -> None:
        pass


def test_count_cuts_inside_a_batch_and_is_not_counted_as_filtered(tmp_path: Path) -> None:
    frames = [(i, gre(icmp_frame(i), key=5)) for i in range(10)]
    out = tmp_path / "out.pcap"
    sink = FileSink(str(out), "pcap", 65535)
    stage = PacketStage(Pipeline(PipelineConfig()))
    stats = drive(_Frames([frames[:4], frames[4:]]), stage, sink, count=6)
    sink.close()
    assert (stats.received, stats.written, stats.filtered_out) == (10, 6, 0)
    assert stats.kernel_dropped == 3
    assert [r.ts_ns for r in read_records([out.read_bytes()])] == [0, 1, 2, 3, 4, 5]


class _Blocks:
    def __init__(self, n: int) -> None:
        self.n = n
        self.kernel_dropped = 0

    def batches(self) -> Iterator[Any]:
        for i in range(self.n):
            yield None if i % 2 else (i, 1, 48)  # None: the ring timed out, nothing new

    def close(self) -> None:
        pass


class _RecordsPath:
    """Each block gives one 4-byte record; -c's limit honoured as the real paths do."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def process(self, base: int, count: int, first: int, limit: int | None = None) -> list[Any]:
        if limit == 0:
            return []
        self.stats.written += 1
        return [base.to_bytes(4, "little")]

    def close(self) -> None:
        pass


def test_block_records_reach_the_file_sink_through_the_same_write(tmp_path: Path) -> None:
    out = tmp_path / "out.pcap"
    sink = FileSink(str(out), "pcap", 65535)
    stats = Stats()
    stage = BlockStage(_RecordsPath(stats), stats)
    assert stage.push(None, None) == Records([], 0)
    drive(_Blocks(8), stage, sink, count=3)
    sink.close()
    assert stats.written == 3
    assert out.read_bytes()[24:] == b"".join(i.to_bytes(4, "little") for i in (0, 2, 4))


def test_records_are_refused_by_sinks_that_need_packets() -> None:
    with pytest.raises(AssertionError):
        PrintSink(io.StringIO()).write(Records([b"x"], 1))
