"""Open a capture's points on this host: tap rings, ``--at ovs`` mirror ports; close them all.

Order matters for what a failure leaves behind: the filter is compiled and the packet-socket
privilege checked before anything is touched; ``--at ovs`` rows are created (one OVSDB
transaction per NIC, :class:`vmsniff.mirror.MirrorSession`) only then, and every exit from the
``with`` (error, Ctrl-C, the end) closes the rings and removes those rows again, each in one
transaction. After SIGKILL the rows stay with their expiry, for ``vmsniff cleanup --expired``.

While the capture runs its mirror sessions are kept renewed and watched (as ``vmsniff
mirror``'s, :mod:`vmsniff.ovs.keeper`): when their rows are removed under it the source stops
at once and leaving the ``with`` raises :class:`~vmsniff.errors.SessionLost` (exit 12), after
what was captured so far is written and the rest of the rows removed.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from typing import Any

from vmsniff.capture.plan import CaptureOptions, CapturePoint, Instruction, kernel_program
from vmsniff.capture.source import RingLike, RingSource
from vmsniff.capture.stage import CaptureStage, StagePoint
from vmsniff.errors import PermissionDenied
from vmsniff.formats.capture import LINKTYPE_ETHERNET
from vmsniff.model import Direction, Target
from vmsniff.pipeline.run import Stage, choose_stage

__all__ = [
    "OpenCapture",
    "capture_stage",
    "compile_filter",
    "open_capture",
    "require_packet_sockets",
]

#: ``(device, socket filter, retire_ms, block_count)`` -> a ring of 1 MiB blocks
RingFactory = Callable[[str, list[Instruction], int, int], RingLike]


@dataclass
class OpenCapture:
    """A capture ready to :func:`~vmsniff.pipeline.run.drive`."""

    source: RingSource
    stage: CaptureStage
    devices: list[str]  #: the kernel devices read, in ring order
    devices_of: dict[str, list[str]] = field(default_factory=dict)  #: point name -> devices
    sessions: list[Any] = field(default_factory=list)  #: MirrorPlan of each --at ovs NIC
    removed_expired: list[str] = field(default_factory=list)


def compile_filter(expression: str) -> list[Instruction]:
    """libpcap's classic BPF for ``expression`` on Ethernet; a bad one is a UsageError."""
    from vmsniff.filter import bpf_instructions

    return bpf_instructions(expression, LINKTYPE_ETHERNET)


def require_packet_sockets() -> None:
    """Fail early, before any switch row exists, without CAP_NET_RAW."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError:
        raise PermissionDenied(
            "capturing needs CAP_NET_RAW (packet sockets)",
            hint="run as root, or give the interpreter cap_net_raw (setcap)",
        ) from None


#: The kernel hands a ring block over when full or ``retire_ms`` after it opened (up to twice
#: that: its timer may have just fired). One ring keeps the ring's default (50 ms: at low rates
#: 16 blocks then absorb a writer stall of 800 ms); several rings retire blocks after
#: ``MERGED_RETIRE_MS``, as their merge holds frames ``HOLD_MS``, until no ring can precede them.
SINGLE_RETIRE_MS = 50
MERGED_RETIRE_MS = 10
HOLD_MS = 2 * MERGED_RETIRE_MS + 20


def _ring(
    device: str, program: list[Instruction], retire_ms: int = SINGLE_RETIRE_MS, blocks: int = 32
) -> RingLike:
    from vmsniff.pipeline.ring import Ring

    return Ring(device, kind=socket.SOCK_RAW, program=program, block_count=blocks,
                block_size=1 << 20, retire_ms=retire_ms)  # fmt: skip


@contextmanager
def open_capture(
    target: Target,
    points: Sequence[CapturePoint],
    opts: CaptureOptions,
    *,
    stop: Callable[[], bool] = lambda: False,
    deadline: float | None = None,
    ring_factory: RingFactory = _ring,
) -> Iterator[OpenCapture]:
    """Open every point; yield the source and stage; close and remove everything after."""
    base = compile_filter(opts.filter)
    require_packet_sockets()
    with ExitStack() as stack:
        rings: list[RingLike] = []
        stage_points: list[StagePoint] = []
        devices: list[str] = []
        devices_of: dict[str, list[str]] = {}
        sessions: list[Any] = []
        mirrors: list[Any] = []  # the MirrorSession of each --at ovs NIC
        removed: list[str] = []

        # one ring per tap, one per direction for a local mirror
        rings_wanted = sum(1 if p.at == "tap" or opts.direction is not Direction.BOTH else 2
                           for p in points)  # fmt: skip
        retire_ms = SINGLE_RETIRE_MS if rings_wanted == 1 else MERGED_RETIRE_MS
        blocks = max(2, opts.buffer_kib // 1024 // rings_wanted)  # -B, split between the rings

        def add(device: str, program: list[Instruction], point: StagePoint) -> None:
            ring = ring_factory(device, program, retire_ms, blocks)
            stack.enter_context(closing(ring))
            rings.append(ring)
            stage_points.append(point)
            devices.append(device)
            devices_of.setdefault(point.name, []).append(device)

        tap_program = kernel_program(base, opts.snaplen, opts.direction)
        # An ovs port holds one direction; its device's own outgoing packets (none, once
        # quiet_up ran) are not the VM's: keep only what arrives, like a tap's from-vm.
        port_program = kernel_program(base, opts.snaplen, Direction.FROM_VM)
        for point in points:
            if point.at == "tap":
                assert point.device is not None
                add(point.device, tap_program, StagePoint(point.name))
                continue
            mirror = _start_mirror(stack, target, point, opts, removed)
            mirrors.append(mirror)
            plan = mirror.plan
            sessions.append(plan)
            from vmsniff.capture.netdev import quiet_up, wait_link

            for port in plan.tunnels:
                wait_link(port.name)
                quiet_up(port.name)
                add(port.name, port_program, StagePoint(point.name, port.direction))

        def ending() -> bool:
            return stop() or any(m.lost is not None for m in mirrors)

        yield OpenCapture(
            source=RingSource(rings, stop=ending, deadline=deadline, hold_ms=HOLD_MS),
            stage=CaptureStage(stage_points, snaplen=opts.snaplen, keep=opts.direction),
            devices=devices,
            devices_of=devices_of,
            sessions=sessions,
            removed_expired=removed,
        )
        for mirror in mirrors:
            mirror.check()  # SessionLost: the rows went away under the capture


def _start_mirror(
    stack: ExitStack, target: Target, point: CapturePoint, opts: CaptureOptions, removed: list[str]
) -> Any:
    from vmsniff.mirror import MirrorSession

    assert target.ovsdb is not None  # plan_points checked
    session = stack.enter_context(MirrorSession(target.ovsdb))
    plan, expired = session.prepare_local(
        target.server, point.nic, direction=opts.direction, ttl=opts.ttl, reason=opts.reason,
        bridge=opts.bridge,
    )  # fmt: skip
    removed.extend(expired)
    session.start(plan, point.nic, None)
    return session


def capture_stage(cap: OpenCapture, sink: Any, direction: Direction) -> Stage:
    """How ``cap``'s packets are processed on their way to ``sink``, as
    :func:`~vmsniff.pipeline.run.choose_stage` decides: whole blocks when it can
    (:class:`~vmsniff.pipeline.framepath.FramePath` for one ring,
    :class:`~vmsniff.pipeline.merge.MergedFramePaths` over one per ring for several), else
    frame by frame through the capture stage. Close it after the run."""

    def block_path() -> Any:
        from vmsniff.capture.stage import direction_bits
        from vmsniff.pipeline.framepath import FramePath

        rings: list[Any] = list(cap.source.rings)
        paths = [
            FramePath(
                ring.memory,
                ring.block_size,
                sink.encoder,
                cap.stage.stats,
                name=point.name,
                fixed=direction_bits(point.fixed) if point.fixed else 0,
                wanted=direction_bits(direction),
                snaplen=cap.stage.snaplen,
            )  # fmt: skip
            for ring, point in zip(rings, cap.stage.points, strict=True)
        ]
        if len(paths) == 1:
            return paths[0]
        from vmsniff.pipeline.merge import MergedFramePaths

        return MergedFramePaths(paths, cap.stage.stats, hold_ns=HOLD_MS * 1_000_000)

    return choose_stage(cap.source, sink, cap.stage, block_path)
