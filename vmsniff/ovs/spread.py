"""Plan one session over many VM NICs on many hosts: rows per host, and the manifest. Pure.

Each host gets one :class:`~vmsniff.ovs.plan.MirrorPlan` (one OVSDB transaction there); the
receiver gets a :class:`~vmsniff.manifest.Manifest`. The NICs of a host are mirrored in
*streams*, each with its own tunnel key per direction (stream ``i``: ``K+2i`` from-vm,
``K+2i+1`` to-vm, the single-VM contract repeated), so the receiver needs nothing but the key
to know a frame's stream:

- **dedicated** (the default while it fits): one stream per NIC, two Mirror rows and two
  tunnel ports each; every frame is known by its key alone;
- **shared** (when a host's bridge has no room for two mirrors per NIC within Open vSwitch's
  32, or when asked): one stream for all the host's NICs, i.e. one Mirror per direction
  selecting every NIC's port, into one tunnel port per direction. Two mirrors then serve 50
  NICs or 500; the receiver files each frame under its NIC by MAC address and direction
  (:mod:`vmsniff.pipeline.attribute`).

Keys are checked against every tunnel of every host toward the same receiver, so one base
``K`` serves the whole session. Port names are ``vms`` + 8 hex digits of the session + the
stream (2 hex digits) + ``f``/``t``: 14 characters.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from vmsniff.errors import UsageError
from vmsniff.manifest import Manifest, ManifestNic, Stream
from vmsniff.model import Direction, Nic, Server
from vmsniff.ovs.ownership import ownership_ids, rfc3339
from vmsniff.ovs.plan import (
    ERSPAN_ID_MAX,
    MAX_MIRRORS,
    MirrorOptions,
    MirrorPlan,
    MirrorRow,
    Tunnel,
    TunnelPort,
    _bridge_of,
    _pick_keys,
    _require_room,
    _same_ip,
    _ways,
    require_mirrorable,
    tunnel_options,
)
from vmsniff.ovs.receiver import parse_receiver

__all__ = ["HostFacts", "Member", "SpreadPlan", "plan_spread", "stream_ids"]

MAX_STREAMS = 256  #: two hex digits in the port names


@dataclass(frozen=True, slots=True)
class Member:
    """One VM NIC of the session, and where it runs."""

    server: Server
    nic: Nic
    name: str  #: the receiver's interface name for it: ``c-private/eth0``
    host: str


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What a host's switch already has, read before planning."""

    tunnels: tuple[Tunnel, ...] = ()
    mirrors_on_bridge: int = 0
    owners: tuple[str, ...] = ()
    refused: Mapping[str, str] = field(default_factory=dict)  #: receiver address -> why not


@dataclass(frozen=True, slots=True)
class SpreadPlan:
    """A session's rows, per host, and its manifest."""

    session: str
    plans: dict[str, MirrorPlan]  #: host -> its rows (applied in one transaction there)
    manifest: Manifest
    shared: dict[str, bool]  #: host -> whether its NICs share one stream

    @property
    def hosts(self) -> list[str]:
        return list(self.plans)

    def to_dict(self) -> dict[str, object]:
        return {
            "session": self.session,
            "expires": self.manifest.expires,
            "hosts": [
                {**plan.to_dict(), "host": host, "shared": self.shared[host]}
                for host, plan in self.plans.items()
            ],
            "manifest": self.manifest.to_dict(),
        }


def stream_ids(
    session: str,
    index: int,
    group: Sequence[Member],
    role: str,
    opts: MirrorOptions,
    now: datetime,
) -> dict[str, str]:
    """The ownership marks of one row of stream ``index`` carrying ``group``'s NICs: every
    VM named (``a (id1), b (id2)``), every MAC, and ``vmsniff-stream``."""
    ids = ownership_ids(
        session=session, vm_name=group[0].server.name, vm_id=group[0].server.id, now=now,
        ttl=opts.ttl, reason=opts.reason, role=role, nic=",".join(m.nic.mac for m in group),
    )  # fmt: skip
    ids["vmsniff-vm"] = ", ".join(dict.fromkeys(f"{m.server.name} ({m.server.id})" for m in group))
    ids["vmsniff-stream"] = str(index)
    return ids


def plan_spread(
    members: Sequence[Member],
    opts: MirrorOptions,
    facts: Mapping[str, HostFacts],
    *,
    now: datetime,
    shared: bool | None = None,
    session: str | None = None,
    rng: random.Random | None = None,
) -> SpreadPlan:
    """The rows of every host and the manifest; raises, naming the host, before anything is
    touched when the session cannot work. ``shared``: None chooses per host (dedicated while
    it fits), True or False forces one form."""
    if not members:
        raise UsageError("no VM NIC to mirror")
    remote = parse_receiver(opts.to)
    by_host: dict[str, list[Member]] = {}
    for m in members:
        require_mirrorable(m.nic)
        by_host.setdefault(m.host, []).append(m)
    ways = _ways(opts.direction)
    streams: list[tuple[str, list[Member]]] = []
    shared_of: dict[str, bool] = {}
    bridges: dict[str, str] = {}
    for host, group in by_host.items():
        f = facts.get(host, HostFacts())
        why = [why for ip, why in f.refused.items() if _same_ip(ip, remote)]
        if why:
            raise UsageError(
                f"--to {remote} cannot receive the mirror of host {host}: it is {why[0]}",
                hint="give the address of the host that runs `vmsniff receive`",
            )
        found = {_bridge_of(m.nic, opts.bridge) for m in group}
        if len(found) > 1:
            raise UsageError(
                f"the NICs on host {host} are on bridges {', '.join(sorted(found))}: one "
                "session mirrors one bridge per host",
                hint="mirror each bridge's VMs in a session of its own",
            )
        bridges[host] = found.pop()
        fits = f.mirrors_on_bridge + len(ways) * len(group) <= MAX_MIRRORS
        share = (not fits if shared is None else shared) and len(group) > 1
        shared_of[host] = share
        _require_room(
            bridges[host], f.mirrors_on_bridge, f.owners, len(ways) * (1 if share else len(group)),
            f"session on host {host}",
            "see `vmsniff list` on that host; mirror fewer NICs there, one direction only, "
            "or let their mirrors be shared (the default when they do not fit)",
        )  # fmt: skip
        streams.extend([(host, group)] if share else [(host, [m]) for m in group])
    if len(streams) > MAX_STREAMS or (opts.encap == "erspan" and 2 * len(streams) > ERSPAN_ID_MAX):
        raise UsageError(
            f"{len(streams)} tunnel streams is more than one session carries",
            hint="mirror fewer NICs, or share each host's mirrors (--shared-mirrors)",
        )
    session = session or str(uuid.uuid4())
    short = session.replace("-", "")[:8]
    every_tunnel = [t for f in facts.values() for t in f.tunnels]
    base = _pick_keys(opts, 2 * len(streams), every_tunnel, remote, rng or random.SystemRandom())
    rows: dict[str, list[tuple[TunnelPort, MirrorRow]]] = {h: [] for h in by_host}
    manifest_streams: list[Stream] = []
    for i, (host, group) in enumerate(streams):
        for way in ways:
            key = base + 2 * i + (0 if way is Direction.FROM_VM else 1)
            ids = stream_ids(session, i, group, f"tunnel-{way.value}", opts, now)
            port = f"vms{short}{i:02x}{'f' if way is Direction.FROM_VM else 't'}"
            ports = tuple(str(m.nic.ovs_port) for m in group)
            mirror = MirrorRow(
                name=f"vmsniff-{short}-{i}-{way.value}",
                direction=way,
                vm_port=ports[0],
                output_port=port,
                snaplen=opts.snaplen,
                external_ids={**ids, "vmsniff-role": f"mirror-{way.value}"},
                select=ports if len(ports) > 1 else (),
            )
            options = tunnel_options(opts, way, key, remote)
            rows[host].append((TunnelPort(port, opts.encap, options, ids, way, key), mirror))
            manifest_streams.append(Stream(key, way, host, tuple(m.name for m in group)))
    expires = rfc3339(now + opts.ttl)
    plans = {
        host: MirrorPlan(
            session=session,
            bridge=bridges[host],
            vm_port=str(group[0].nic.ovs_port),
            remote_ip=remote,
            encap=opts.encap,
            direction=opts.direction,
            keys={t.direction.value: t.key for t, _m in rows[host][: len(ways)]},
            tag=None,
            tunnels=tuple(t for t, _m in rows[host]),
            mirrors=tuple(m for _t, m in rows[host]),
            expires=expires,
        )
        for host, group in by_host.items()
    }
    manifest = Manifest(
        session=session,
        to=remote,
        encap=opts.encap,
        expires=expires,
        nics=tuple(
            ManifestNic(
                m.name,
                m.server.name,
                m.server.id,
                m.nic.mac.lower(),
                m.host,
                m.nic.port_id,
                m.nic.tag,
            )  # fmt: skip
            for m in members
        ),
        streams=tuple(manifest_streams),
    )
    return SpreadPlan(session, plans, manifest, shared_of)
