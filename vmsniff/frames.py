"""Live receive and capture as dissected frames: the packet API over a run, not only a file.

::

    from vmsniff.frames import capture_frames
    from vmsniff.capture import CaptureOptions
    from vmsniff.capture.session import plan_capture
    from vmsniff.resolve import ResolveOptions

    opts = CaptureOptions(filter="tcp port 443")
    planned = plan_capture(ResolveOptions(query="web-1", offline=True), opts, all_nics=False)
    for frame in capture_frames(planned, opts, count=100):
        tcp = frame.find("tcp")
        print(frame.ts_ns, frame.direction, tcp.sport, tcp.dport, tcp.flags)

:func:`receive_frames` does the same for a receive (``ReceiveOptions``: a live GRE/ERSPAN
receiver, or ``read_file``). Each frame is what the run would have written (after its filter,
``--key``, ``--strip-vlan`` and snaplen), dissected by :mod:`vmsniff.dissect` with its time,
interface and direction, as :func:`vmsniff.dissect.read_file` gives a file's.

Underneath, :class:`FrameSink` is a sink (:mod:`vmsniff.pipeline.sinks`) that dissects the
packets given to it; put it in ``OutputOptions(sinks=...)`` of any run opened with
:func:`vmsniff.receive.open_receive` or :func:`vmsniff.capture.session.open_capture_run`
(beside ``-w`` if wanted: both get the same packets) and iterate :meth:`FrameSink.frames`.
The run goes on in a thread while the caller reads; frames wait in a bounded queue, so a
reader slower than the traffic holds the run back and the kernel's ring drops (counted in the
stats as ``kernel_dropped``), as a slow tcpdump does. Leaving the loop early ends the run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from vmsniff.dissect.frame import Frame
from vmsniff.pipeline.core import Packet, Stats
from vmsniff.pipeline.run import Records
from vmsniff.pipeline.sinks import OutputOptions, Sink, dissect

if TYPE_CHECKING:
    from vmsniff.capture.plan import CaptureOptions
    from vmsniff.capture.session import Planned
    from vmsniff.receive import ReceiveOptions

__all__ = ["FrameSink", "capture_frames", "receive_frames"]

_POLL = 0.1  # seconds: how often a waiting reader looks whether the run ended


class FrameSink(Sink):
    """A sink that dissects the packets given to it (:func:`~vmsniff.pipeline.sinks.dissect`)
    into :class:`~vmsniff.dissect.Frame` values for :meth:`frames`; at most ``maxsize`` wait."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self._queue: queue.Queue[Frame] = queue.Queue(maxsize)
        self.finished = False  #: set when the reader left: the run then ends (drive checks)
        self.stats: Stats | None = None  #: the run's stats, once it ended

    def write(self, batch: list[Packet] | Records) -> None:
        assert not isinstance(batch, Records), "records go to a plain FileSink only"
        for pkt in batch:
            frame = dissect(pkt)
            while not self.finished:  # a full queue holds the run back, until the reader left
                try:
                    self._queue.put(frame, timeout=_POLL)
                    break
                except queue.Full:
                    continue

    def close(self) -> None:
        pass

    def frames(self, run: Callable[[], Stats]) -> Iterator[Frame]:
        """Call ``run`` (an open run's ``run`` with its arguments bound, e.g.
        ``partial(rx.run, count=10)``) in a thread and yield the frames as they come, until it
        ends; then :attr:`stats` holds its stats and an error it raised is raised here.
        Leaving the loop early (``break``, an exception, closing the generator) ends the run
        at its next batch and waits for it."""
        done = threading.Event()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                self.stats = run()
            except BaseException as exc:  # handed to the reader's thread
                failure.append(exc)
            finally:
                done.set()

        worker = threading.Thread(target=work, name="vmsniff-frames", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    frame = self._queue.get(timeout=_POLL)
                except queue.Empty:
                    # every frame is queued before ``done`` is set: empty after done is the end
                    if done.is_set() and self._queue.empty():
                        break
                    continue
                yield frame
        finally:
            self.finished = True
            worker.join()
        if failure:
            raise failure[0]


def receive_frames(
    opts: ReceiveOptions,
    *,
    count: int | None = None,
    duration: float | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[Frame]:
    """The frames of a receive run (its output may be ``OutputOptions()``: frames only, or
    ``-w`` and the like beside them), dissected, until ``count`` frames, ``duration`` seconds,
    ``stop()`` or the end of a ``read_file``."""
    from vmsniff.receive import open_receive

    sink = FrameSink()
    opts = replace(opts, output=_with(opts.output, sink))
    with open_receive(opts, stop=stop) as rx:
        yield from sink.frames(partial(rx.run, count=count, duration=duration, stop=stop))


def capture_frames(
    planned: Planned,
    opts: CaptureOptions,
    output: OutputOptions | None = None,
    *,
    count: int | None = None,
    duration: float | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[Frame]:
    """The frames of a capture (``planned`` by :func:`vmsniff.capture.session.plan_capture`
    with the same :class:`~vmsniff.capture.CaptureOptions` ``opts``), dissected, until
    ``count`` frames, ``duration`` seconds or ``stop()``; ``output`` adds ``-w`` and the like.
    ``--at ovs`` rows are removed when the loop ends, however it ends."""
    from vmsniff.capture.session import open_capture_run

    sink = FrameSink()
    out = _with(output or OutputOptions(), sink)
    with open_capture_run(planned, opts, out, stop=stop, duration=duration) as run:
        yield from sink.frames(partial(run.run, count=count))


def _with(output: OutputOptions, sink: Sink) -> OutputOptions:
    return replace(output, sinks=(*output.sinks, sink))
