"""The receive workflow as a library: typed options in, a running pipeline out.

``vmsniff receive`` is a thin shell over this module, as ``capture`` is over
:func:`vmsniff.capture.live.open_capture`::

    opts = ReceiveOptions(OutputOptions(write="vm.pcapng"), interface="eth0", keys=(100,),
                          direction=Direction.BOTH)
    with open_receive(opts) as rx:
        stats = rx.run(stop=flag)

The order of :func:`open_receive` is what a failure may leave behind: options and the filter
are checked first, then the source is opened (the ring needs CAP_NET_RAW; ``-r`` reads the
file's header, so a non-capture fails before any output exists), then ``-Z`` drops privileges,
then the output is created (as the new user, as tcpdump does), and only then is the stage
chosen (:func:`vmsniff.pipeline.run.choose_stage`). Leaving the ``with`` closes the stage,
the sink and the source, in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from vmsniff.errors import UsageError
from vmsniff.formats.packet import MAX_SNAPLEN
from vmsniff.manifest import Manifest
from vmsniff.model import Direction
from vmsniff.pipeline.core import PipelineConfig, Stats, parse_sources
from vmsniff.pipeline.run import RunResult, choose_stage, drive
from vmsniff.pipeline.sinks import OutputOptions

__all__ = ["Receive", "ReceiveOptions", "open_receive", "parse_strip_vlan", "read_manifest"]


def read_manifest(path: str) -> Manifest:
    """The session manifest at ``path`` (``--manifest``); a UsageError saying what is wrong."""
    from vmsniff.manifest import parse_manifest

    try:
        with open(path, "rb") as fh:
            text = fh.read(16 << 20)
    except OSError as exc:
        raise UsageError(f"--manifest {path}: {exc.strerror or exc}") from None
    return parse_manifest(text, origin=f"--manifest {path}")


def parse_strip_vlan(value: str | None) -> tuple[bool, int | None]:
    """``--strip-vlan [ID]``: (strip at all, only this VLAN id or any)."""
    if value is None:
        return False, None
    if value in ("", "any"):
        return True, None
    try:
        vid = int(value)
    except ValueError:
        raise UsageError(f"--strip-vlan {value!r}: a VLAN id (0-4095) or 'any'") from None
    if not 0 <= vid <= 4095:
        raise UsageError(f"--strip-vlan {value}: a VLAN id is 0-4095")
    return True, vid


@dataclass(frozen=True, slots=True)
class ReceiveOptions:
    """What ``vmsniff receive`` was asked for (docs/receive.md); checked when made."""

    output: OutputOptions  #: -w, --print, --format (default: pcapng when marking direction)
    interface: str | None = None  #: -i: listen on this interface only (None: all)
    read_file: str | None = None  #: -r: a capture file (``-`` stdin) instead of the network
    keys: tuple[int, ...] = ()
    direction: Direction | None = None
    strip_vlan: bool = False
    vlan_id: int | None = None
    sources: tuple[str, ...] = ()  #: --from ADDR[/LEN]
    expression: str = ""  #: the tcpdump filter on the inner frame
    snaplen: int = MAX_SNAPLEN
    buffer_kib: int = 16384  #: -B: the kernel ring, in KiB
    user: str | None = None  #: -Z: drop privileges to this user after opening the sockets
    manifest: Manifest | None = None  #: --manifest: a multi-VM session (keys, NICs)

    def __post_init__(self) -> None:
        if self.read_file and (self.interface or self.user):
            raise UsageError("-r reads a file: -i and -Z do not apply")

    def pipeline_config(self) -> PipelineConfig:
        """The pipeline's configuration; a bad filter is a :class:`UsageError` (libpcap's
        message), raised before anything is opened."""
        inner = None
        if self.expression:
            from vmsniff.filter import InnerFilter

            inner = InnerFilter(self.expression)
        return PipelineConfig(
            keys=self.keys,
            direction=self.direction,
            strip_vlan=self.strip_vlan,
            vlan_id=self.vlan_id,
            filter=inner,
            snaplen=self.snaplen,
            sources=parse_sources(self.sources),
            manifest=self.manifest,
        )


@dataclass
class Receive(RunResult):
    """An open receive run: :meth:`run` it, then read :attr:`stats` and :attr:`files`."""

    source: Any  #: FileSource or LiveSource

    @property
    def damage(self) -> str | None:
        """What was wrong with a ``-r`` file after its header (the records before it were
        processed), else None."""
        return getattr(self.source, "damage", None)

    def run(
        self,
        *,
        count: int | None = None,
        duration: float | None = None,
        stop: Callable[[], bool] = lambda: False,
        on_tick: Callable[[Stats], None] | None = None,
    ) -> Stats:
        """Receive until the source ends, ``count`` packets are written, ``duration`` seconds
        pass or ``stop()``; the stats, kernel drops included."""
        return drive(self.source, self.stage, self.sink, count=count, duration=duration,
                     stop=stop, on_tick=on_tick)  # fmt: skip


@contextmanager
def open_receive(
    opts: ReceiveOptions,
    *,
    stop: Callable[[], bool] = lambda: False,
    application: str = "vmsniff receive",
) -> Iterator[Receive]:
    """Open the source, the output and the stage of ``opts``; close them all after.
    ``stop`` ends a wait for a FIFO's reader (see :func:`~vmsniff.pipeline.sinks.open_sink`)."""
    from vmsniff.pipeline.core import Pipeline

    config = opts.pipeline_config()  # a bad filter fails here, before any capture
    fmt = "pcapng" if config.marks_direction else "pcap"
    with ExitStack() as stack:
        source = stack.enter_context(_closing(_open_source(opts, config)))
        block_path: Callable[[], Any] | None = None
        if opts.read_file is None:
            # Imported before -Z: after it the interpreter may no longer read numpy's files.
            from vmsniff.pipeline.fastpath import FastPath

            def block_path() -> Any:
                return FastPath(source.ring.memory, source.ring.block_size, pipeline,
                                sink.encoder, kernel_filtered=source.kernel_filtered)  # fmt: skip

        if opts.user:
            from vmsniff.pipeline.sources import drop_privileges

            drop_privileges(opts.user)
        identity = getattr(source, "identity", None)
        keep = frozenset() if identity is None else frozenset({identity})
        sink = stack.enter_context(_closing(opts.output.open(
            fmt, opts.snaplen, application=application, keep=keep, stop=stop)))  # fmt: skip
        pipeline = Pipeline(config)
        stage = stack.enter_context(_closing(choose_stage(source, sink, pipeline, block_path)))
        yield Receive(stage, sink, source)


def _open_source(opts: ReceiveOptions, config: PipelineConfig) -> Any:
    if opts.read_file:
        from vmsniff.pipeline.sources import FileSource

        return FileSource(opts.read_file)
    from vmsniff.pipeline.sources import LiveSource

    inner = None
    if opts.expression:
        from vmsniff.filter import bpf_instructions
        from vmsniff.formats.capture import LINKTYPE_ETHERNET

        inner = bpf_instructions(opts.expression, LINKTYPE_ETHERNET)
    return LiveSource(
        opts.interface,
        [str(n) for n in config.sources],
        inner=inner,
        strip_vlan=opts.strip_vlan,
        vlan_id=opts.vlan_id,
        block_count=max(1, round(opts.buffer_kib / 1024)),
    )


@contextmanager
def _closing(thing: Any) -> Iterator[Any]:
    try:
        yield thing
    finally:
        thing.close()
