"""Plan a session as OVN Northbound ``Mirror`` rows. Pure, no database.

The streams are those of an OVS session (:mod:`vmsniff.ovs.spread`): a stream per NIC and
direction (``dedicated``), or one per host and direction (``shared``, when a host has more NICs
than two mirrors each would fit in its br-int's 32), with keys ``K+2i`` (from-vm) and
``K+2i+1`` (to-vm). Each stream and direction is one NB Mirror: ``type`` gre or erspan (OVN
makes ERSPAN version 1 with the index as session id and erspan_idx), ``index`` its key,
``filter`` ``from-lport`` (what the VM sends) or ``to-lport`` (what it receives), ``sink`` the
receiver, attached to the logical switch ports (the Neutron port ids) of the stream's NICs.
ovn-controller turns each into an OVS Mirror on every chassis that binds one of those ports
(one OVS Mirror selecting all of them there), with a GRE port ``ovn-NAME`` keyed ``index``.

Names are ``vmsniff-`` + 8 hex digits of the session + ``-STREAM-DIRECTION``; the rows carry
vmsniff's ownership marks (:func:`~vmsniff.ovs.ownership.ownership_ids`) like OVSDB rows.
"""

from __future__ import annotations

import random
import shlex
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from vmsniff.errors import InvalidState, UsageError
from vmsniff.manifest import Manifest, ManifestNic, Stream
from vmsniff.model import Direction
from vmsniff.ovs.ownership import rfc3339
from vmsniff.ovs.plan import MAX_MIRRORS, MirrorOptions, Tunnel, _pick_keys, _q, _ways
from vmsniff.ovs.receiver import parse_receiver
from vmsniff.ovs.spread import MAX_STREAMS, Member, stream_ids

__all__ = ["FILTERS", "NbMirror", "NbPlan", "plan_nb"]

#: OVN's ``Mirror.filter`` for each direction (from the VM's point of view).
FILTERS = {Direction.FROM_VM: "from-lport", Direction.TO_VM: "to-lport"}


@dataclass(frozen=True, slots=True)
class NbMirror:
    """One Northbound Mirror row to create, and the ports to attach it to."""

    name: str
    type: str
    index: int  #: the tunnel key
    direction: Direction
    sink: str
    external_ids: dict[str, str]
    ports: tuple[str, ...]  #: logical switch port names (Neutron port ids)

    @property
    def filter(self) -> str:
        return FILTERS[self.direction]


@dataclass(frozen=True, slots=True)
class NbPlan:
    """A session's Northbound rows, and its manifest."""

    session: str
    mirrors: tuple[NbMirror, ...]
    manifest: Manifest
    shared: dict[str, bool]  #: host -> whether its NICs share one stream

    @property
    def expires(self) -> str:
        return self.manifest.expires

    def ovn_nbctl_command(self, db: str | None = None) -> str:
        """The equivalent single ``ovn-nbctl`` command line (for --dry-run)."""
        argv = ["ovn-nbctl"] + ([f"--db={db}"] if db else [])
        for i, m in enumerate(self.mirrors):
            argv += ["--", f"--id=@m{i}", "create", "Mirror", f"name={m.name}", f"type={m.type}",
                     f"index={m.index}", f"filter={m.filter}", f"sink={m.sink}"]  # fmt: skip
            argv += [f"external_ids:{k}={_q(v)}" for k, v in m.external_ids.items()]
            for port in m.ports:
                argv += ["--", "add", "Logical_Switch_Port", port, "mirror_rules", f"@m{i}"]
        return shlex.join(argv)

    def to_dict(self) -> dict[str, object]:
        return {
            "session": self.session,
            "via": "ovn",
            "expires": self.expires,
            "mirrors": [
                {
                    "name": m.name,
                    "type": m.type,
                    "index": m.index,
                    "filter": m.filter,
                    "sink": m.sink,
                    "ports": list(m.ports),
                }  # fmt: skip
                for m in self.mirrors
            ],
            "shared": self.shared,
            "manifest": self.manifest.to_dict(),
        }


def _check_options(opts: MirrorOptions) -> None:
    refused = [
        (
            opts.erspan_version not in (None, 1),
            "--erspan-version 2",
            "OVN makes ERSPAN version 1 (type II) mirrors only",
        ),
        (
            opts.erspan_index is not None,
            "--erspan-index",
            "OVN sets the ERSPAN index to the mirror's own index (the session id)",
        ),
        (opts.snaplen is not None, "--snaplen", "an OVN mirror has no snaplen"),
        (opts.bridge is not None, "--bridge", "OVN picks the bridge (br-int) itself"),
    ]
    for bad, option, why in refused:
        if bad:
            raise UsageError(f"{option} does not go with --via ovn: {why}",
                             hint="leave it out, or use --via ovs")  # fmt: skip


def plan_nb(
    members: Sequence[Member],
    opts: MirrorOptions,
    *,
    existing: Sequence[Tunnel] = (),
    now: datetime,
    shared: bool | None = None,
    session: str | None = None,
    rng: random.Random | None = None,
) -> NbPlan:
    """The NB rows of a session over ``members`` (their hosts group shared streams); keys
    avoid the indexes of ``existing`` NB mirrors toward the same sink. Raises before anything
    is touched when it cannot work."""
    _check_options(opts)
    if not members:
        raise UsageError("no VM NIC to mirror")
    remote = parse_receiver(opts.to)
    for m in members:
        if not m.nic.port_id:
            raise InvalidState(
                f"NIC {m.name} has no Neutron port id: OVN knows it as the logical switch port "
                "of that id",
                hint="resolve through the cloud API (OS_CLOUD), or use --via ovs",
            )
    by_host: dict[str, list[Member]] = {}
    for m in members:
        by_host.setdefault(m.host, []).append(m)
    ways = _ways(opts.direction)
    streams: list[tuple[str, list[Member]]] = []
    shared_of: dict[str, bool] = {}
    for host, group in by_host.items():
        # ovn-controller makes one OVS Mirror per NB Mirror on the chassis: keep the host's
        # share of the bridge's 32 well below it (others' mirrors are not visible from NB)
        share = len(ways) * len(group) > MAX_MIRRORS // 2 if shared is None else shared
        shared_of[host] = share and len(group) > 1
        streams.extend([(host, group)] if shared_of[host] else [(host, [m]) for m in group])
    if len(streams) > MAX_STREAMS:
        raise UsageError(f"{len(streams)} streams is more than one session carries",
                         hint="mirror fewer NICs, or --shared-mirrors")  # fmt: skip
    session = session or str(uuid.uuid4())
    short = session.replace("-", "")[:8]
    base = _pick_keys(opts, 2 * len(streams), existing, remote, rng or random.SystemRandom())
    mirrors: list[NbMirror] = []
    manifest_streams: list[Stream] = []
    for i, (host, group) in enumerate(streams):
        for way in ways:
            key = base + 2 * i + (0 if way is Direction.FROM_VM else 1)
            ids = stream_ids(session, i, group, f"mirror-{way.value}", opts, now)
            mirrors.append(
                NbMirror(
                    name=f"vmsniff-{short}-{i}-{way.value}", type=opts.encap, index=key,
                    direction=way, sink=remote, external_ids=ids,
                    ports=tuple(str(m.nic.port_id) for m in group),
                )
            )  # fmt: skip
            manifest_streams.append(Stream(key, way, host, tuple(m.name for m in group)))
    manifest = Manifest(
        session=session,
        to=remote,
        encap=opts.encap,
        expires=rfc3339(now + opts.ttl),
        nics=tuple(
            # OVN plugs every NIC straight into br-int: mirrored frames carry no VLAN tag
            ManifestNic(
                m.name, m.server.name, m.server.id, m.nic.mac.lower(), m.host, m.nic.port_id, None
            )  # fmt: skip
            for m in members
        ),
        streams=tuple(manifest_streams),
        via="ovn",
    )
    return NbPlan(session, tuple(mirrors), manifest, shared_of)
