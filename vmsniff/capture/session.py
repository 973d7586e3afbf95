"""The capture workflow as a library: resolve and plan, then open and run.

``vmsniff capture`` is a thin shell over these two calls, as ``receive`` is over
:func:`vmsniff.receive.open_receive`::

    planned = plan_capture(ResolveOptions(query="c-private"), CaptureOptions(), all_nics=False)
    with open_capture_run(planned, CaptureOptions(), OutputOptions(write="vm.pcapng")) as run:
        stats = run.run(count=100)

:func:`plan_capture` touches nothing: the filter is compiled and the packet-socket privilege
checked first (a bad filter or a missing CAP_NET_RAW fails before the cloud is asked), then the
VM is resolved, checked to run on this host, and its capture points planned.
:func:`open_capture_run` opens them (:func:`~vmsniff.capture.live.open_capture`: rings, and
``--at ovs`` rows owned and removed like ``mirror``'s), then the output (so a refused point
leaves no file), then the stage (:func:`~vmsniff.pipeline.run.choose_stage`); leaving it
closes the stage and the output, then removes the points.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from vmsniff.capture import live
from vmsniff.capture.live import OpenCapture
from vmsniff.capture.plan import CaptureOptions, CapturePoint, plan_points, require_local
from vmsniff.model import Target
from vmsniff.pipeline.core import Stats
from vmsniff.pipeline.run import RunResult, drive
from vmsniff.pipeline.sinks import OutputOptions

__all__ = ["CaptureRun", "Planned", "open_capture_run", "plan_capture"]


@dataclass(frozen=True, slots=True)
class Planned:
    """A resolved VM on this host and where each of its NICs will be read."""

    target: Target
    points: tuple[CapturePoint, ...]


def plan_capture(resolve_opts: Any, opts: CaptureOptions, *, all_nics: bool) -> Planned:
    """Resolve ``resolve_opts`` (:class:`vmsniff.resolve.ResolveOptions`) and plan a point per
    NIC (every NIC with ``all_nics``, else the one ``--nic`` names or the only one)."""
    from vmsniff import resolve as resolving
    from vmsniff.capture import netdev
    from vmsniff.resolve import single_nic
    from vmsniff.resolve.endpoints import local_host

    live.compile_filter(opts.filter)  # a bad filter fails here, before anything is resolved or made
    live.require_packet_sockets()  # and so does a missing CAP_NET_RAW
    if all_nics:
        resolve_opts = replace(resolve_opts, nic=None)
    target = resolving.resolve(resolve_opts)
    me = local_host()
    require_local(target, me)
    if not all_nics:
        target = replace(target, nics=(single_nic(target.nics),))
    points = plan_points(target, opts, me=me, device_exists=netdev.link_exists)
    return Planned(target, tuple(points))


@dataclass
class CaptureRun(RunResult):
    """An open capture: :meth:`run` it, then read :attr:`stats` and :attr:`files`."""

    planned: Planned
    cap: OpenCapture

    def run(
        self, *, count: int | None = None, on_tick: Callable[[Stats], None] | None = None
    ) -> Stats:
        """Capture until ``count`` packets are written, the duration passes, the stop flag
        is set or a session's rows are lost (the source then drains and ends)."""
        return drive(self.cap.source, self.stage, self.sink, count=count,
                     stop=self.cap.source.drained_flag, on_tick=on_tick)  # fmt: skip


@contextmanager
def open_capture_run(
    planned: Planned,
    opts: CaptureOptions,
    output: OutputOptions,
    *,
    stop: Callable[[], bool] = lambda: False,
    duration: float | None = None,
) -> Iterator[CaptureRun]:
    """Open ``planned``'s points, the output and the stage; close them all after (and raise
    :class:`~vmsniff.errors.SessionLost` when ``--at ovs`` rows were removed under the run).
    ``stop`` ends the run, and a wait for a FIFO's reader."""
    # Through the module: tests replace open_capture there with fake rings.
    with live.open_capture(planned.target, planned.points, opts, stop=stop) as cap:
        # A FIFO's reader is waited for with the rows renewed and watched; a signal ends it.
        sink = output.open("pcapng", opts.snaplen, application="vmsniff capture", stop=stop)
        try:
            if duration is not None:
                cap.source.deadline = time.monotonic() + duration
            stage = live.capture_stage(cap, sink, opts.direction)
            try:
                yield CaptureRun(stage, sink, planned, cap)
            finally:
                stage.close()
        finally:
            sink.close()
