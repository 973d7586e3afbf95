"""The one loop that drives a source through the pipeline into a sink (the only I/O loop).

It stops at the end of the source, after ``count`` packets written, after ``duration``
seconds, when the sink is finished (``-G`` with ``-W``), or when ``stop()`` says so (the CLI's
signal handler sets it). Buffered records are flushed at least every ``flush_interval``
seconds, so ``-w - | wireshark -k -i -`` sees packets while they come.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from vmsniff.pipeline.core import Packet, Stats
from vmsniff.pipeline.sinks import FileSink, Sink
from vmsniff.pipeline.sources import RING_BLOCK, Batch

if TYPE_CHECKING:
    from vmsniff.pipeline.fastpath import FastPath

__all__ = ["Source", "Stage", "StopFlag", "drive", "stop_on_signals"]


class Source(Protocol):
    """Where frames come from: :class:`~.sources.FileSource`, :class:`~.sources.LiveSource`,
    or a capture's tap source (``batches`` yields ``(linktype, frames)``)."""

    kernel_dropped: int

    def batches(self) -> Iterator[Batch] | Iterator[tuple[int, list[Any]]]: ...

    def close(self) -> None: ...


class Stage(Protocol):
    """What :func:`drive` runs each batch through: :class:`~.core.Pipeline` for ``receive``
    (frames are ``(timestamp_ns, bytes)``); ``capture`` has its own, whose frames carry the
    packet type too. Every frame is counted in :attr:`stats`."""

    stats: Stats

    def push(self, frames: Any, linktype: int) -> list[Packet]: ...


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
    pipeline: Stage,
    sink: Sink,
    *,
    fast: FastPath | None = None,
    count: int | None = None,
    duration: float | None = None,
    stop: Callable[[], bool] = lambda: False,
    flush_interval: float = 1.0,
    on_tick: Callable[[Stats], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Stats:
    """Run until one of the stop conditions; return the pipeline's stats (kernel drops in).

    With ``fast`` (whose pipeline is ``pipeline``), batches of :data:`~.sources.RING_BLOCK` go
    through it straight into ``sink``, a :class:`~.sinks.FileSink` without rotation.
    """
    stats = pipeline.stats
    start = last_flush = last_tick = clock()
    try:
        for linktype, frames in source.batches():
            if linktype == RING_BLOCK:
                if frames and fast is not None:
                    left = None if count is None else count - stats.written
                    before = stats.written
                    records = fast.process(*frames, limit=left)  # type: ignore[misc]
                    assert isinstance(sink, FileSink)
                    sink.write_records(records, stats.written - before)
                    if count is not None and stats.written >= count:
                        break
            elif frames:
                packets = pipeline.push(frames, linktype)
                if count is not None and stats.written >= count:
                    extra = stats.written - count
                    if extra:
                        del packets[len(packets) - extra :]
                        stats.written = count
                sink.write(packets)
                if count is not None and stats.written >= count:
                    break
                if sink.finished:
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
