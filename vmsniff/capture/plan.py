"""Plan a capture, pure: a resolved Target and the user's options -> where to read each NIC.

A NIC is read at one of two points (issue #7):

- ``tap``: its kernel tap device on this host, through an AF_PACKET ring. What the VM sends
  *arrives* at the host's tap (any packet type but ``PACKET_OUTGOING``); what the host sends
  into the tap goes to the VM (``PACKET_OUTGOING``). Direction is named from the VM's side
  (DESIGN.md contract 3).
- ``ovs``: a local Mirror of the NIC's OVS port into vmsniff-owned internal ports, one per
  direction (:func:`vmsniff.ovs.plan.plan_local_mirror`), each read through a ring on its
  kernel network device. For NICs with no kernel tap (OVS-DPDK vhost-user), or for the
  switch's view.

The default is ``tap`` wherever the NIC's tap exists on this host, else ``ovs``. The tcpdump
filter is compiled by libpcap into classic BPF and attached to every ring, so rejected
packets never reach Python; the direction choice and the snaplen go into the same program
(:func:`kernel_program`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from vmsniff.errors import InvalidState, NotFound, UsageError
from vmsniff.formats.packet import MAX_SNAPLEN, PACKET_OUTGOING
from vmsniff.model import Direction, Nic, PlugKind, Target

__all__ = [
    "AT_CHOICES",
    "CaptureOptions",
    "CapturePoint",
    "Instruction",
    "MAX_SNAPLEN",
    "kernel_program",
    "plan_points",
    "require_local",
]

AT_CHOICES = ("tap", "ovs")
Instruction = tuple[int, int, int, int]

# Classic BPF (linux/filter.h): an ancillary load of skb->pkt_type, a jump if equal, returns.
_LD_PKTTYPE: Instruction = (0x20, 0, 0, (-0x1000 + 4) & 0xFFFFFFFF)  # ld [SKF_AD_OFF+PKTTYPE]
_RET_K = 0x06  # BPF_RET | BPF_K
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """What the user asked for (checked by :meth:`__post_init__`)."""

    at: str | None = None  #: "tap", "ovs" or None (tap where it exists, else ovs)
    direction: Direction = Direction.BOTH
    filter: str = ""  #: tcpdump syntax, on the frame as the VM sees it
    snaplen: int = MAX_SNAPLEN
    ttl: timedelta = timedelta(hours=1)  #: expiry of the rows of ``--at ovs``
    reason: str | None = None
    bridge: str | None = None
    buffer_kib: int = 32 * 1024  #: ring memory (-B), split between the rings

    def __post_init__(self) -> None:
        if self.at is not None and self.at not in AT_CHOICES:
            raise UsageError(f"--at must be one of {', '.join(AT_CHOICES)}")
        if not 1 <= self.snaplen <= MAX_SNAPLEN:
            raise UsageError(f"-s must be between 1 and {MAX_SNAPLEN}")


@dataclass(frozen=True, slots=True)
class CapturePoint:
    """Where one NIC is read."""

    nic: Nic
    at: str  #: "tap" or "ovs"
    name: str  #: the pcapng interface name of its packets: the tap, else the OVS port
    device: str | None  #: the tap device (``at == "tap"``); the ovs ports come at start


def require_local(target: Target, me: str) -> None:
    """Refuse a VM that runs on another host: its tap and port are not here."""
    if target.local:
        return
    name, host = target.server.name, target.server.host or "another host"
    raise InvalidState(
        f"{name} runs on {host}, not on this host ({me}); capture reads the VM's tap or OVS "
        "port on the host that runs it",
        hint=f"run vmsniff capture on {host}, or mirror its traffic to this host: "
        f"`vmsniff mirror {name} --to THIS-HOST-IP` there and `vmsniff receive` here",
    )


def _no_tap(nic: Nic) -> InvalidState:
    if not nic.plug.on_ovs:
        return InvalidState(
            f"NIC {nic.mac} is {nic.plug.value}: its traffic passes neither a host tap nor "
            "Open vSwitch, so it cannot be captured on the host",
            hint="capture inside the VM, or on the physical port's switch",
        )
    return InvalidState(
        f"NIC {nic.mac} ({nic.plug.value}) has no kernel tap on this host",
        hint="--at ovs captures it from the switch (a local mirror into a vmsniff port)",
    )


def _point(nic: Nic, at: str | None, device_exists: Callable[[str], bool]) -> CapturePoint:
    name = nic.tap or nic.ovs_port or nic.mac
    tap = nic.tap if nic.plug is not PlugKind.VHOSTUSER else None
    if at is None:
        if tap and device_exists(tap):
            return CapturePoint(nic, "tap", name, tap)
        if nic.plug.on_ovs and nic.ovs_port:
            return CapturePoint(nic, "ovs", name, None)
        if tap:  # on OVS by plug but no port found: say the tap is missing
            at = "tap"
        else:
            raise _no_tap(nic)
    if at == "tap":
        if not tap:
            raise _no_tap(nic)
        if not device_exists(tap):
            raise NotFound(
                f"the tap {tap} of NIC {nic.mac} does not exist here",
                hint="run vmsniff in the host's network namespace (where the taps are), "
                "or use --at ovs",
            )
        return CapturePoint(nic, "tap", name, tap)
    from vmsniff.ovs.plan import require_mirrorable

    require_mirrorable(nic)
    return CapturePoint(nic, "ovs", name, None)


def plan_points(
    target: Target,
    opts: CaptureOptions,
    *,
    me: str,
    device_exists: Callable[[str], bool],
) -> list[CapturePoint]:
    """One :class:`CapturePoint` per NIC of ``target`` (already narrowed by ``--nic``)."""
    require_local(target, me)
    if not target.nics:
        raise NotFound(f"{target.server.name} has no NICs to capture")
    points = [_point(nic, opts.at, device_exists) for nic in target.nics]
    if any(p.at == "ovs" for p in points) and not target.ovsdb:
        raise UsageError(
            "--at ovs needs this host's OVSDB", hint="pass --ovsdb REMOTE (or VMSNIFF_OVSDB)"
        )
    names = [p.name for p in points]
    if len(set(names)) != len(names):  # pragma: no cover - resolve keys NICs by MAC
        raise UsageError(f"two NICs share the interface name {names}")
    return points


def kernel_program(base: Sequence[Instruction], snaplen: int, keep: Direction) -> list[Instruction]:
    """The socket filter of one ring: ``base`` (libpcap's program for the user's filter),
    its accepting returns lowered to ``snaplen`` (the kernel then copies no more), behind a
    packet-type test when only one direction is wanted: ``FROM_VM`` keeps what arrived at the
    device, ``TO_VM`` what the host sent out of it (``PACKET_OUTGOING``)."""
    prog = [
        (code, jt, jf, min(k, snaplen) if code == _RET_K and k else k) for code, jt, jf, k in base
    ]
    if keep is Direction.FROM_VM:  # outgoing -> reject; else run base
        prefix = [_LD_PKTTYPE, (_JEQ_K, 0, 1, PACKET_OUTGOING), (_RET_K, 0, 0, 0)]
    elif keep is Direction.TO_VM:  # outgoing -> run base; else reject
        prefix = [_LD_PKTTYPE, (_JEQ_K, 1, 0, PACKET_OUTGOING), (_RET_K, 0, 0, 0)]
    else:
        prefix = []
    return prefix + prog
