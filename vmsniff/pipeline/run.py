"""The one loop that drives a source through a stage into a sink (the only I/O loop), and
the one place that chooses how packets are processed.

:func:`choose_stage` decides, for ``receive`` and ``capture`` alike, between the two ways of
processing: packet by packet (:class:`~.core.Pipeline`, ``capture``'s
:class:`~vmsniff.capture.stage.CaptureStage`) into :class:`~vmsniff.pcap.encoder.Packet`
values, or a whole TPACKET_V3 ring block at a time
(:class:`~.fastpath.FastPath`, :class:`~.framepath.FramePath`, :class:`~.merge.MergedFramePaths`)
into records encoded in the ring (:class:`Records`). Blocks are taken only when the sink is
one plain file (no rotation, no ``{key}`` template, no ``--print``) and the source reads real
rings; the source is then told to yield whole blocks. Either way the result is a
:class:`Stage`: :func:`drive` and :meth:`~.sinks.Sink.write` each have one interface.

:func:`drive` stops at the end of the source, after ``count`` packets written, after
``duration`` seconds, when the sink is finished (``-G`` with ``-W``), or when ``stop()`` says so
(the CLI's signal handler sets it). Buffered records are flushed at least every
``flush_interval`` seconds, so ``-w - | wireshark -k -i -`` sees packets while they come.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from vmsniff.pcap.encoder import Packet
from vmsniff.pipeline.core import Stats

__all__ = [
    "BlockStage",
    "PacketStage",
    "Records",
    "RunResult",
    "Source",
    "Stage",
    "StopFlag",
    "choose_stage",
    "drive",
    "stop_on_signals",
]


class Records(NamedTuple):
    """What a block stage hands its sink: records already encoded by the sink's encoder
    (bytes-likes and :class:`~.scatter.Scatter` stretches into the ring, in order), holding
    ``packets`` packets. Only a plain :class:`~.sinks.FileSink` is given these."""

    pieces: list[Any]
    packets: int


class Source(Protocol):
    """Where batches come from: :class:`~.sources.FileSource`, :class:`~.sources.LiveSource`
    or a capture's :class:`~vmsniff.capture.source.RingSource`."""

    @property
    def kernel_dropped(self) -> int: ...

    def batches(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


class BlockSource(Source, Protocol):
    """A source that can yield whole ring blocks instead of frames, once told to."""

    blocks: bool

    @property
    def real_rings(self) -> bool:
        """True when its rings are kernel rings whose memory a block path may write into."""
        ...


class Stage(Protocol):
    """What :func:`drive` runs each batch through. Every frame is counted in :attr:`stats`;
    at most ``limit`` packets come out (None: no limit)."""

    stats: Stats

    def push(self, batch: Any, limit: int | None) -> list[Packet] | Records: ...

    def close(self) -> None: ...


class _FrameStage(Protocol):
    stats: Stats

    def push(self, frames: Any, linktype: int) -> list[Packet]: ...


class PacketStage:
    """Packet by packet: ``(linktype, frames)`` batches through ``inner`` (a
    :class:`~.core.Pipeline` or a :class:`~vmsniff.capture.stage.CaptureStage`)."""

    def __init__(self, inner: _FrameStage) -> None:
        self.inner = inner
        self.stats = inner.stats

    def push(self, batch: tuple[int, Any], limit: int | None) -> list[Packet]:
        linktype, frames = batch
        if not frames:
            return []
        packets = self.inner.push(frames, linktype)
        if limit is not None and len(packets) > limit:
            # what -c cuts is neither written nor filtered out
            self.stats.written -= len(packets) - limit
            del packets[limit:]
        return packets

    def close(self) -> None:
        pass


class _BlockPath(Protocol):
    def process(self, *block: Any, limit: int | None = None) -> list[Any]: ...

    def close(self) -> None: ...


class BlockStage:
    """A ring block at a time: each batch is what the source yields in block mode, handed to
    ``path`` (:class:`~.fastpath.FastPath`, :class:`~.framepath.FramePath`,
    :class:`~.merge.MergedFramePaths`), whose records come out as :class:`Records`."""

    def __init__(self, path: _BlockPath, stats: Stats) -> None:
        self.path = path
        self.stats = stats

    def push(self, batch: tuple[Any, ...] | None, limit: int | None) -> Records:
        if batch is None:  # the ring had nothing new for a while: drive gets to check the time
            return Records([], 0)
        before = self.stats.written
        pieces = self.path.process(*batch, limit=limit)
        return Records(pieces, self.stats.written - before)

    def close(self) -> None:
        self.path.close()


def choose_stage(
    source: Source,
    sink: Any,
    per_packet: _FrameStage,
    block_path: Callable[[], _BlockPath] | None,
) -> Stage:
    """The one decision between per-packet and per-block processing (see the module's
    docstring). ``block_path`` builds the block path (after the decision: it maps the
    rings); None when the command has none for this source (``-r FILE``)."""
    from vmsniff.pipeline.sinks import FileSink

    if (
        block_path is not None
        and getattr(source, "real_rings", False)
        and isinstance(sink, FileSink)
        and not sink.rotation.active
    ):
        stage = BlockStage(block_path(), per_packet.stats)
        source.blocks = True  # type: ignore[attr-defined]
        return stage
    return PacketStage(per_packet)


@dataclass
class RunResult:
    """What every run (receive, capture) holds open: its stage and sink; what it counted and
    the files it wrote."""

    stage: Stage
    sink: Any

    @property
    def stats(self) -> Stats:
        """The counters so far (also after a failed run)."""
        return self.stage.stats

    @property
    def files(self) -> list[str]:
        """The files written, in order (rotation, ``{key}``)."""
        from vmsniff.pipeline.sinks import written_files

        return written_files(self.sink)


class StopFlag:
    """Set by a signal handler, read by :func:`drive` between batches."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.signal is not None


@contextmanager
def stop_on_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """SIGINT, SIGTERM and SIGHUP end the capture cleanly instead of raising."""
    caught = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: object) -> None:
        flag.signal = signum

    for sig in caught:
        previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def drive(
    source: Source,
    stage: Stage,
    sink: Any,
    *,
    count: int | None = None,
    duration: float | None = None,
    stop: Callable[[], bool] = lambda: False,
    flush_interval: float = 1.0,
    on_tick: Callable[[Stats], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Stats:
    """Run until one of the stop conditions; return the stage's stats (kernel drops in).
    ``sink`` is a :class:`~.sinks.Sink`."""
    stats = stage.stats
    start = last_flush = last_tick = clock()
    try:
        for batch in source.batches():
            left = None if count is None else count - stats.written
            sink.write(stage.push(batch, left))
            if (count is not None and stats.written >= count) or sink.finished:
                break
            now = clock()
            if now - last_flush >= flush_interval:
                sink.flush()
                last_flush = now
            if on_tick is not None and now - last_tick >= 0.5:
                on_tick(stats)
                last_tick = now
            if stop() or (duration is not None and now - start >= duration):
                break
    finally:
        sink.flush()
        try:
            stats.kernel_dropped = source.kernel_dropped
        except OSError:
            pass
    return stats
