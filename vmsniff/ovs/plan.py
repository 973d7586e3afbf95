"""Plan a mirror session: Target + options -> the OVS rows to create. Pure, no switch.

A session mirrors one NIC's OVS port to a tunnel port toward ``--to``:

- ``from-vm``: a Mirror selecting ``select_src_port`` (what the switch receives from the
  VM's port) -> tunnel port with key K;
- ``to-vm``: a Mirror selecting ``select_dst_port`` (what the switch sends to it) ->
  tunnel port with key K+1 (DESIGN.md contract 3, so the receiver can tell them apart);
- ``both``: both of the above (two Mirror rows, two tunnel ports).

Tunnel identity in OVS is (type, remote_ip, local_ip, key): a port equal to one Neutron
already has would receive that tunnel's traffic. Keys are therefore drawn above 2**24 (no
VXLAN VNI or usual GRE segmentation id can be there) and checked against every explicit
key on the switch. Port names are ``vms`` + 8 hex digits of the session + ``-f``/``-t``
(13 characters; Linux allows 15).
"""

from __future__ import annotations

import ipaddress
import json
import random
import shlex
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from vmsniff.errors import InvalidState, SwitchError, UsageError
from vmsniff.model import Direction, Nic, Server
from vmsniff.ovs.ownership import ownership_ids
from vmsniff.ovs.receiver import parse_receiver

__all__ = [
    "MAX_MIRRORS",
    "MirrorOptions",
    "MirrorPlan",
    "MirrorRow",
    "TunnelPort",
    "Tunnel",
    "encap_overhead",
    "plan_local_mirror",
    "plan_mirror",
    "require_mirrorable",
]

MAX_MIRRORS = 32  #: Open vSwitch's per-bridge limit (MAX_MIRRORS in ofproto), shared by all
GRE_KEY_MIN = 1 << 24
GRE_KEY_MAX = (1 << 32) - 2
ERSPAN_ID_MAX = 1023  #: ERSPAN session ids are 10 bits
#: ``options:erspan_idx`` (version 1 only): 20 bits, which ovs-vswitchd parses as
#: hexadecimal (``strtol(value, NULL, 16)`` in lib/netdev-vport.c, checked against
#: ERSPAN_IDX_MASK 0xfffff), so the plan writes it as ``0x…``: a decimal "300" would be
#: index 0x300, and "1048575" an invalid one.
ERSPAN_INDEX_MAX = 0xFFFFF
ERSPAN_VERSIONS = (1, 2)  #: ``options:erspan_ver``: 1 (type II) or 2 (type III)


@dataclass(frozen=True, slots=True)
class Tunnel:
    """An existing tunnel interface on the switch (for collision checks)."""

    name: str
    type: str
    remote_ip: str | None
    local_ip: str | None
    key: str | None  #: as OVS stores it: a number, "flow", or None


@dataclass(frozen=True, slots=True)
class MirrorOptions:
    """What the user asked for."""

    to: str
    direction: Direction = Direction.BOTH
    encap: str = "gre"  #: gre or erspan
    erspan_version: int | None = None  #: ERSPAN only; None: 1
    erspan_index: int | None = None  #: ERSPAN version 1 only; None: 1
    key: int | None = None
    snaplen: int | None = None
    ttl: timedelta = timedelta(hours=1)
    reason: str | None = None
    bridge: str | None = None

    def __post_init__(self) -> None:
        """Refuse what cannot work as soon as the options exist: the CLI builds them
        before it resolves the VM or connects to the switch, so nothing is touched."""
        parse_receiver(self.to)
        if self.encap not in ("gre", "erspan"):
            raise UsageError(f"--encap {self.encap!r}: choose gre or erspan")
        erspan_given = [
            name
            for name, value in (
                ("--erspan-version", self.erspan_version),
                ("--erspan-index", self.erspan_index),
            )
            if value is not None
        ]
        if erspan_given and self.encap != "erspan":
            raise UsageError(
                f"{' and '.join(erspan_given)} only "
                f"{'applies' if len(erspan_given) == 1 else 'apply'} to ERSPAN, "
                f"not --encap {self.encap}",
                hint="add --encap erspan, or leave them out",
            )
        if self.erspan_version is not None and self.erspan_version not in ERSPAN_VERSIONS:
            raise UsageError(f"--erspan-version {self.erspan_version}: choose 1 or 2")
        if self.erspan_index is not None:
            if self.erspan_version == 2:
                raise UsageError(
                    "--erspan-index is a field of ERSPAN version 1 (type II); version 2 "
                    "(type III) carries a direction and a hardware id instead",
                    hint="leave out --erspan-index, or use --erspan-version 1",
                )
            if not 0 <= self.erspan_index <= ERSPAN_INDEX_MAX:
                raise UsageError(
                    f"--erspan-index {self.erspan_index} is out of range "
                    f"(0..{ERSPAN_INDEX_MAX}: 20 bits)"
                )
        if self.snaplen is not None and self.snaplen < 14:
            raise UsageError("--snaplen must be at least 14 (an Ethernet header)")


@dataclass(frozen=True, slots=True)
class TunnelPort:
    """An output Port+Interface to create: a tunnel toward ``--to``, or (``type`` internal,
    no options, ``key`` 0 and unused) the local port a ``capture --at ovs`` reads."""

    name: str
    type: str
    options: dict[str, str]
    external_ids: dict[str, str]
    direction: Direction
    key: int


@dataclass(frozen=True, slots=True)
class MirrorRow:
    """A Mirror row to create."""

    name: str
    direction: Direction  #: FROM_VM selects src port, TO_VM selects dst port
    vm_port: str
    output_port: str
    snaplen: int | None
    external_ids: dict[str, str]
    select: tuple[str, ...] = ()
    """The ports it selects when they are several (a shared mirror of a multi-VM session);
    empty: ``vm_port`` alone."""

    @property
    def ports(self) -> tuple[str, ...]:
        """The OVS ports this mirror selects."""
        return self.select or (self.vm_port,)


@dataclass(frozen=True, slots=True)
class MirrorPlan:
    """Everything ``apply`` needs, and what the user is told."""

    session: str
    bridge: str
    vm_port: str
    remote_ip: str
    encap: str
    direction: Direction
    keys: dict[str, int]  #: direction value -> key
    tag: int | None  #: the VM port's VLAN tag: mirrored frames carry it
    tunnels: tuple[TunnelPort, ...]
    mirrors: tuple[MirrorRow, ...]
    expires: str
    warnings: tuple[str, ...] = field(default=())

    def vsctl_command(self, db: str | None = None) -> str:
        """The equivalent single ``ovs-vsctl`` command line (for --dry-run)."""
        argv = ["ovs-vsctl"] + ([f"--db={db}"] if db else [])
        for t in self.tunnels:
            argv += ["--", "add-port", self.bridge, t.name]
            argv += ["--", "set", "Interface", t.name, f"type={t.type}"]
            argv += [f"options:{k}={_q(v)}" for k, v in t.options.items()]
            argv += [f"external_ids:{k}={_q(v)}" for k, v in t.external_ids.items()]
            argv += ["--", "set", "Port", t.name]
            argv += [f"external_ids:{k}={_q(v)}" for k, v in t.external_ids.items()]
        vm_ids: dict[str, str] = {}
        for m in self.mirrors:
            for port in m.ports:
                if port not in vm_ids:
                    vm_ids[port] = "@vm" if not vm_ids else f"@vm{len(vm_ids)}"
                    argv += ["--", f"--id={vm_ids[port]}", "get", "Port", port]
        for i, m in enumerate(self.mirrors):
            argv += ["--", f"--id=@out{i}", "get", "Port", m.output_port]
            select = "select_src_port" if m.direction is Direction.FROM_VM else "select_dst_port"
            row = ["--", f"--id=@m{i}", "create", "Mirror", f"name={m.name}"]
            row += [f"{select}={','.join(vm_ids[p] for p in m.ports)}", f"output_port=@out{i}"]
            if m.snaplen:
                row.append(f"snaplen={m.snaplen}")
            row += [f"external_ids:{k}={_q(v)}" for k, v in m.external_ids.items()]
            argv += row
            argv += ["--", "add", "Bridge", self.bridge, "mirrors", f"@m{i}"]
        return shlex.join(argv)

    def to_dict(self) -> dict[str, object]:
        return {
            "session": self.session,
            "bridge": self.bridge,
            "vm_port": self.vm_port,
            "remote_ip": self.remote_ip,
            "encap": self.encap,
            "direction": self.direction.value,
            "keys": self.keys,
            "tag": self.tag,
            "expires": self.expires,
            "tunnel_ports": [t.name for t in self.tunnels],
            "mirrors": [m.name for m in self.mirrors],
            "warnings": list(self.warnings),
        }


def _q(value: str) -> str:
    """``value`` in ovs-vsctl's own syntax for a string: always double-quoted, with JSON's
    escapes, which ovs-vsctl undoes (``json_string_unescape`` in lib/ovsdb-data.c) for a
    value that starts with a quote. Quoting only some values and escaping only ``"`` broke
    on a backslash in --reason. Shell quoting comes on top (shlex.join)."""
    return json.dumps(value, ensure_ascii=False)


def encap_overhead(encap: str) -> int:
    """Bytes a mirrored frame grows by on the underlay, beyond the inner Ethernet frame.

    Outer IPv4 (20) + GRE with key (8) for ``gre``; outer IPv4 + GRE with sequence (8) +
    ERSPAN type II header (8) for ``erspan`` (version 1; type III is 12 + up to 8 more).
    """
    return {"gre": 20 + 8, "erspan": 20 + 8 + 8}[encap]


def _used_keys(tunnels: Iterable[Tunnel], type_: str, remote: str) -> set[int]:
    used = set()
    for t in tunnels:
        if t.type == type_ and t.remote_ip in (remote, "flow", None) and t.key:
            if t.key.isdigit():
                used.add(int(t.key))
    return used


def _pick_keys(
    opts: MirrorOptions, count: int, tunnels: Sequence[Tunnel], remote: str, rng: random.Random
) -> int:
    type_ = opts.encap
    used = _used_keys(tunnels, type_, remote)
    top = ERSPAN_ID_MAX if type_ == "erspan" else GRE_KEY_MAX
    low = 1 if type_ == "erspan" else GRE_KEY_MIN
    if opts.key is not None:
        if not 0 <= opts.key <= top - (count - 1):
            raise UsageError(f"--key {opts.key} is out of range for {type_} (0..{top - count + 1})")
        clash = {opts.key + i for i in range(count)} & used
        if clash:
            names = [t.name for t in tunnels if t.key and t.key.isdigit() and int(t.key) in clash]
            raise SwitchError(
                f"key {sorted(clash)} toward {remote} is already used by tunnel port(s) "
                f"{', '.join(names)}: a second port would take over that tunnel's traffic",
                hint="pick another --key, or leave it out to get a free one",
            )
        return opts.key
    for _ in range(1000):
        key = rng.randint(low, top - (count - 1))
        if not {key + i for i in range(count)} & used:
            return key
    raise SwitchError(f"no free {type_} key toward {remote}")  # pragma: no cover


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:  # "flow" and other non-addresses OVS allows in local_ip
        return False


def _bridge_of(nic: Nic, asked: str | None) -> str:
    """The bridge to mirror on: the NIC's, and ``--bridge`` only when it names that one. A
    Mirror on another bridge would select a port that is not there and mirror nothing."""
    if asked and nic.bridge and asked != nic.bridge:
        raise UsageError(
            f"--bridge {asked}: the port {nic.ovs_port} of NIC {nic.mac} is on bridge "
            f"{nic.bridge}, not {asked}, so a mirror on {asked} would see none of its traffic",
            hint=f"leave out --bridge, or pass --bridge {nic.bridge}",
        )
    bridge = asked or nic.bridge
    if not bridge:
        raise InvalidState(f"the bridge of NIC {nic.mac} is unknown", hint="pass --bridge")
    return bridge


def require_mirrorable(nic: Nic) -> None:
    """Raise InvalidState unless the NIC's traffic passes an OVS port on this switch."""
    if not nic.plug.on_ovs:
        raise InvalidState(
            f"NIC {nic.mac} is {nic.plug.value}: its traffic does not pass Open vSwitch, so it "
            "cannot be mirrored there",
            hint="capture inside the VM or on the physical function's switch port instead",
        )
    if not nic.ovs_port:
        raise InvalidState(
            f"NIC {nic.mac} has no OVS port on this switch",
            hint="check `vmsniff resolve` for where the VM runs and which OVSDB was asked",
        )


def _ways(direction: Direction) -> list[Direction]:
    """The directions one Mirror row each: ``both`` is from-vm and to-vm."""
    return [Direction.FROM_VM, Direction.TO_VM] if direction is Direction.BOTH else [direction]


def _require_room(
    bridge: str, mirrors_on_bridge: int, owners: Sequence[str], ways: int, what: str, hint: str
) -> None:
    """Refuse a session that would pass Open vSwitch's per-bridge mirror limit."""
    if mirrors_on_bridge + ways > MAX_MIRRORS:
        ours = sum(1 for o in owners if o.startswith("vmsniff"))
        raise SwitchError(
            f"bridge {bridge} has {mirrors_on_bridge} of Open vSwitch's {MAX_MIRRORS} mirrors in "
            f"use ({ours} by vmsniff sessions, {mirrors_on_bridge - ours} by others); this "
            f"{what} needs {ways} more",
            hint=hint,
        )


@dataclass(frozen=True, slots=True)
class _Owner:
    """What every row of one session carries: who made it, for which VM NIC, until when."""

    session: str
    server: Server
    nic: Nic
    vm_port: str
    now: datetime
    ttl: timedelta
    reason: str | None

    @property
    def short(self) -> str:
        return self.session.replace("-", "")[:8]


def _rows(
    who: _Owner,
    way: Direction,
    *,
    role: str,
    type_: str,
    options: dict[str, str],
    key: int,
    snaplen: int | None,
) -> tuple[TunnelPort, MirrorRow]:
    """One direction's output port (``vms`` + 8 hex digits + ``-f``/``-t``) and the Mirror
    selecting the VM's port into it, both owned (``role``: ``tunnel`` or ``capture``)."""
    port = f"vms{who.short}-{'f' if way is Direction.FROM_VM else 't'}"
    ids = ownership_ids(
        session=who.session, vm_name=who.server.name, vm_id=who.server.id, now=who.now,
        ttl=who.ttl, reason=who.reason, role=f"{role}-{way.value}", nic=who.nic.mac,
    )  # fmt: skip
    mirror = MirrorRow(
        name=f"vmsniff-{who.short}-{way.value}",
        direction=way,
        vm_port=who.vm_port,
        output_port=port,
        snaplen=snaplen,
        external_ids={**ids, "vmsniff-role": f"mirror-{way.value}"},
    )
    return TunnelPort(port, type_, options, ids, way, key), mirror


def _plan(
    who: _Owner,
    bridge: str,
    rows: list[tuple[TunnelPort, MirrorRow]],
    *,
    remote_ip: str,
    encap: str,
    direction: Direction,
    keys: dict[str, int],
) -> MirrorPlan:
    ports = tuple(port for port, _mirror in rows)
    return MirrorPlan(
        session=who.session,
        bridge=bridge,
        vm_port=who.vm_port,
        remote_ip=remote_ip,
        encap=encap,
        direction=direction,
        keys=keys,
        tag=who.nic.tag,
        tunnels=ports,
        mirrors=tuple(mirror for _port, mirror in rows),
        expires=ports[0].external_ids["vmsniff-expires"],
    )


def plan_local_mirror(
    server: Server,
    nic: Nic,
    *,
    direction: Direction = Direction.BOTH,
    ttl: timedelta = timedelta(hours=1),
    reason: str | None = None,
    bridge: str | None = None,
    mirrors_on_bridge: int = 0,
    owners: Sequence[str] = (),
    now: datetime,
    session: str | None = None,
) -> MirrorPlan:
    """The rows for ``capture --at ovs``: per direction an internal port (``type=internal``,
    whose kernel network device the capture reads) and a Mirror selecting the VM's port into
    it. The same ownership marks, names and one-transaction apply/teardown as a GRE session
    (:func:`plan_mirror`), so ``list`` and ``cleanup`` see and remove these rows too; one
    port per direction, because frames arriving on it carry no other mark of their way.
    """
    require_mirrorable(nic)
    assert nic.ovs_port is not None  # checked just above
    bridge = _bridge_of(nic, bridge)
    ways = _ways(direction)
    _require_room(
        bridge, mirrors_on_bridge, owners, len(ways), "capture",
        "see `vmsniff list`; capture one direction only, or use --at tap",
    )  # fmt: skip
    who = _Owner(session or str(uuid.uuid4()), server, nic, nic.ovs_port, now, ttl, reason)
    rows = [
        _rows(who, way, role="capture", type_="internal", options={}, key=0, snaplen=None)
        for way in ways
    ]
    return _plan(who, bridge, rows, remote_ip="", encap="internal", direction=direction, keys={})


def tunnel_options(opts: MirrorOptions, way: Direction, key: int, remote: str) -> dict[str, str]:
    """A tunnel port's ``options`` toward ``remote`` with ``key``, for one direction."""
    options = {"remote_ip": remote, "key": str(key)}
    if opts.encap == "erspan":
        version = opts.erspan_version or 1
        options["erspan_ver"] = str(version)
        if version == 1:
            index = 1 if opts.erspan_index is None else opts.erspan_index
            options["erspan_idx"] = f"0x{index:x}"  # hexadecimal: see ERSPAN_INDEX_MAX
        else:
            options["erspan_dir"] = "0" if way is Direction.FROM_VM else "1"
            options["erspan_hwid"] = "1"
    return options


def plan_mirror(
    server: Server,
    nic: Nic,
    opts: MirrorOptions,
    *,
    tunnels: Sequence[Tunnel] = (),
    mirrors_on_bridge: int = 0,
    owners: Sequence[str] = (),
    refused_receivers: Mapping[str, str] | None = None,
    now: datetime,
    session: str | None = None,
    rng: random.Random | None = None,
) -> MirrorPlan:
    """The rows for one session; raises before anything is touched when it cannot work.

    ``refused_receivers`` maps addresses that cannot receive a mirror sent from this switch
    to why (its own tunnel endpoints, :func:`vmsniff.ovs.apply.local_tunnel_ips`; its own
    addresses and subnet broadcasts, :func:`vmsniff.ovs.routes.unusable_receivers`)."""
    require_mirrorable(nic)
    assert nic.ovs_port is not None  # checked just above
    bridge = _bridge_of(nic, opts.bridge)
    remote = parse_receiver(opts.to)
    why = [why for ip, why in (refused_receivers or {}).items() if _same_ip(ip, remote)]
    if why:
        raise UsageError(
            f"--to {remote} cannot receive this mirror: it is {why[0]}",
            hint="give the address of the host that runs `vmsniff receive`",
        )
    ways = _ways(opts.direction)
    _require_room(
        bridge, mirrors_on_bridge, owners, len(ways), "session",
        "see `vmsniff list` for vmsniff's own sessions; mirror one direction only "
        "(--direction from-vm or to-vm), or remove unused mirrors",
    )  # fmt: skip
    rng = rng or random.SystemRandom()
    who = _Owner(session or str(uuid.uuid4()), server, nic, nic.ovs_port, now, opts.ttl,
                 opts.reason)  # fmt: skip
    base = _pick_keys(opts, 2, tunnels, remote, rng)
    rows, keys = [], {}
    for way in ways:
        # K for from-vm, K+1 for to-vm (DESIGN.md contract 3), also when only one direction
        # is mirrored, so that `receive --key K` always knows which way a packet went.
        key = base + (0 if way is Direction.FROM_VM else 1)
        keys[way.value] = key
        options = tunnel_options(opts, way, key, remote)
        rows.append(
            _rows(who, way, role="tunnel", type_=opts.encap, options=options, key=key,
                  snaplen=opts.snaplen)
        )  # fmt: skip
    return _plan(
        who, bridge, rows, remote_ip=remote, encap=opts.encap, direction=opts.direction, keys=keys
    )
