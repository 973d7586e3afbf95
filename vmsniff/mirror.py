"""The mirror workflow as a library: resolve -> plan -> apply -> (run) -> teardown; list; cleanup.

The CLI (``vmsniff mirror``, ``list``, ``cleanup``) is a thin shell over :class:`MirrorSession`,
:func:`list_sessions` and :func:`cleanup`. Every write is one OVSDB transaction; only rows
carrying vmsniff's ownership marks are ever removed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from vmsniff.errors import NotFound, SessionLost, SwitchError, Unreachable, UsageError
from vmsniff.model import Direction, Nic, Server
from vmsniff.ovs.apply import (
    TunnelState,
    apply_plan,
    local_tunnel_ips,
    switch_facts,
    wait_egress,
    wait_tunnels,
)
from vmsniff.ovs.backend import OvsBackend
from vmsniff.ovs.keeper import Keeper, idl_ready, session_rows
from vmsniff.ovs.ownership import liveness_ids, parse_time
from vmsniff.ovs.plan import (
    MirrorOptions,
    MirrorPlan,
    encap_overhead,
    plan_local_mirror,
    plan_mirror,
    require_mirrorable,
)
from vmsniff.ovs.sessions import Session, find_sessions, remove_sessions
from vmsniff.ovs.spread import HostFacts

__all__ = [
    "CleanupReport",
    "MirrorSession",
    "cleanup",
    "hold_session",
    "mirror_counters",
    "list_sessions",
    "mtu_warning",
    "with_marks",
]

#: How long teardown waits for an unreachable database to come back before saying so.
TEARDOWN_WAIT_S = 3.0


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _switch(remote: str, backend: OvsBackend | None) -> Iterator[OvsBackend]:
    """The switch at ``remote`` (a shared ovsdbapp connection), or ``backend`` when given."""
    if backend is not None:
        yield backend
        return
    from vmsniff.ovs.connection import ovsdb

    with ovsdb(remote) as api:
        yield api


def mtu_warning(
    nic: Nic, encap: str, egress: str | None, egress_mtu: int | None, snaplen: int | None
) -> str | None:
    """Warn when full-size frames of the VM cannot fit the underlay once encapsulated.

    Open vSwitch drops such packets without a word (seen in the lab: 1500-byte IP packets
    vanish from a GRE mirror while the underlay MTU is 1500). The inner frame is the VM's
    IP MTU + 14 (Ethernet) + 4 (the access port's VLAN tag, which mirrored frames carry).
    """
    if egress_mtu is None:
        return None
    vm_mtu = nic.mtu or 1500
    inner = vm_mtu + 14 + (4 if nic.tag else 0)
    if snaplen:
        inner = min(inner, snaplen)
    needed = inner + encap_overhead(encap)
    if needed <= egress_mtu:
        return None
    fit = egress_mtu - encap_overhead(encap)
    return (
        f"full-size frames of this VM (IP MTU {vm_mtu}) need {needed} bytes on the underlay "
        f"once {encap}-encapsulated, but {egress} has MTU {egress_mtu}: Open vSwitch will drop "
        f"them silently. Raise the underlay MTU to at least {needed}, or pass --snaplen {fit} "
        "(frames are then cut, but arrive)"
    )


@dataclass
class Started:
    """What a started session looks like to the user."""

    plan: MirrorPlan
    tunnels: list[TunnelState]
    removed_expired: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def with_marks(plan: MirrorPlan, marks: dict[str, str]) -> MirrorPlan:
    """``plan`` with ``marks`` added to every row's external_ids (the liveness marks are
    facts of the running process, so they are added here rather than by the pure planner)."""
    return replace(
        plan,
        tunnels=tuple(replace(t, external_ids={**t.external_ids, **marks}) for t in plan.tunnels),
        mirrors=tuple(replace(m, external_ids={**m.external_ids, **marks}) for m in plan.mirrors),
    )


def _ttl_of(plan: MirrorPlan) -> timedelta:
    ids = (plan.tunnels or plan.mirrors)[0].external_ids
    created = parse_time(ids.get("vmsniff-created"))
    expires = parse_time(ids.get("vmsniff-expires"))
    if created is None or expires is None:
        return timedelta(hours=1)
    return expires - created


class MirrorSession(AbstractContextManager["MirrorSession"]):
    """One mirror session on one switch; ``stop()`` (or leaving the ``with``) tears it down.

    With ``detach`` the rows stay after the ``with`` (they carry their expiry). While a
    foreground session runs, a :class:`~vmsniff.ovs.keeper.Keeper` renews its expiry and
    watches its rows; :meth:`check` raises :class:`SessionLost` once they are gone.
    ``backend`` stands in for the switch at ``remote`` (tests pass a FakeOvs).
    """

    def __init__(self, remote: str, backend: OvsBackend | None = None) -> None:
        self.remote = remote
        self._backend = backend
        self._stack = ExitStack()
        self.api: OvsBackend | None = None  #: the switch, while in the ``with``
        self.plan: MirrorPlan | None = None
        self.detach = False
        self.keeper: Keeper | None = None
        self.removed_why: dict[str, str] = {}  #: session id -> "expired" or "dead"
        self._stopped = False

    def __enter__(self) -> MirrorSession:
        self.api = self._stack.enter_context(_switch(self.remote, self._backend))
        return self

    @property
    def _api(self) -> OvsBackend:
        if self.api is None:
            raise RuntimeError("MirrorSession is used outside its with block")
        return self.api

    def __exit__(self, *exc: object) -> None:
        try:
            if not self.detach:
                self.stop()
        finally:
            self._stack.close()

    def _remove_expired(self, bridge: str, now: datetime) -> list[str]:
        """Remove vmsniff's expired and dead sessions with a row on ``bridge``; their ids."""
        expired = [
            s
            for s in find_sessions(self._api, now)
            if s.stale
            and (
                any(m["bridge"] == bridge for m in s.mirrors)
                or any(p["bridge"] == bridge for p in s.ports)
            )
        ]
        if expired:
            remove_sessions(self._api, expired)
        self.removed_why.update({s.id: "dead" if s.dead else "expired" for s in expired})
        return [s.id for s in expired]

    def prepare_local(
        self,
        server: Server,
        nic: Nic,
        *,
        direction: Direction = Direction.BOTH,
        ttl: timedelta = timedelta(hours=1),
        reason: str | None = None,
        bridge: str | None = None,
    ) -> tuple[MirrorPlan, list[str]]:
        """Like :meth:`prepare`, for ``capture --at ovs``: mirror into local internal ports
        (:func:`~vmsniff.ovs.plan.plan_local_mirror`); start it with :meth:`start`."""
        require_mirrorable(nic)
        bridge = bridge or nic.bridge or ""
        now = _now()
        removed = self._remove_expired(bridge, now)
        _tunnels, count, owners = switch_facts(self._api, bridge)
        plan = plan_local_mirror(
            server, nic, direction=direction, ttl=ttl, reason=reason, bridge=bridge,
            mirrors_on_bridge=count, owners=owners, now=now,
        )  # fmt: skip
        return plan, removed

    def prepare(
        self, server: Server, nic: Nic, opts: MirrorOptions
    ) -> tuple[MirrorPlan, list[str]]:
        """Remove expired vmsniff rows on the bridge, then plan (nothing else is touched)."""
        require_mirrorable(nic)
        bridge = opts.bridge or nic.bridge or ""
        now = _now()
        removed = self._remove_expired(bridge, now)
        tunnels, count, owners = switch_facts(self._api, bridge)
        plan = plan_mirror(
            server, nic, opts, tunnels=tunnels, mirrors_on_bridge=count, now=now, owners=owners,
            refused_receivers=self._refused_receivers(),
        )  # fmt: skip
        return plan, removed

    def facts(self, bridge: str) -> tuple[HostFacts, list[str]]:
        """For a multi-VM session (:mod:`vmsniff.mirror_many`): remove expired vmsniff rows
        on ``bridge``, then read what :func:`~vmsniff.ovs.spread.plan_spread` needs of this
        switch; and the ids of the sessions removed."""
        removed = self._remove_expired(bridge, _now())
        tunnels, count, owners = switch_facts(self._api, bridge)
        facts = HostFacts(tuple(tunnels), count, tuple(owners), self._refused_receivers())
        return facts, removed

    def _refused_receivers(self) -> dict[str, str]:
        """Addresses --to must not be: this switch's own tunnel endpoints (OVSDB), its own
        addresses and subnet broadcasts (ovs-vswitchd's route table, when it is local)."""
        from vmsniff.ovs.routes import parse_routes, read_routes, unusable_receivers

        table = read_routes(self.remote)
        refused = unusable_receivers(parse_routes(table)) if table else {}
        return {**refused, **local_tunnel_ips(self._api)}

    def start(
        self, plan: MirrorPlan, nic: Nic, snaplen: int | None, *, detach: bool = False
    ) -> Started:
        """Apply the plan in one transaction, check the tunnel ports came up with a route,
        and (unless ``detach``) keep the session renewed and watched until :meth:`stop`."""
        plan = with_marks(plan, liveness_ids(detached=detach))
        self.plan = plan  # set first: an interrupt during the commit still tears down
        self.detach = detach
        apply_plan(self._api, plan)
        states = wait_tunnels(self._api, [t.name for t in plan.tunnels])
        bad = [s for s in states if s.error or not s.ofport]
        if bad:
            detail = "; ".join(f"{s.name}: {s.error or 'no OpenFlow port'}" for s in bad)
            self._undo()
            raise SwitchError(
                f"the tunnel port did not come up ({detail}); the session was removed again",
                hint="check that this Open vSwitch supports the tunnel type and that "
                "--to is routable from its tunnel endpoint",
            )
        if plan.remote_ip:  # a tunnel (capture --at ovs makes internal ports: no route)
            states = wait_egress(self._api, states)
            self._require_route(plan, states)
        warnings = []
        egress = next((s for s in states if s.egress_mtu), None)
        if egress is not None:
            text = mtu_warning(nic, plan.encap, egress.egress_iface, egress.egress_mtu, snaplen)
            if text:
                warnings.append(text)
        if not detach:
            self.keeper = Keeper(
                self._api, session_rows(self._api, plan), session=plan.session,
                bridge=plan.bridge, ttl=_ttl_of(plan),
            ).start()  # fmt: skip
        return Started(plan, states, warnings=warnings)

    def _undo(self) -> None:
        """Remove a session that is refused right after it was made (detached or not)."""
        self.detach = False
        self.stop()

    def _require_route(self, plan: MirrorPlan, states: list[TunnelState]) -> None:
        """Refuse a tunnel OVS has no route for, or one that leaves by loopback (to itself)."""
        if not any(s.egress_iface for s in states):
            self._undo()
            raise SwitchError(
                f"Open vSwitch has no route to --to {plan.remote_ip} (the tunnel port shows no "
                "egress interface, Interface status:tunnel_egress_iface); the session was "
                "removed again",
                hint="check the address, and the routes of the tunnel endpoint "
                "(`ovs-appctl ovs/route/show`)",
            )
        loop = [s for s in states if s.egress_iface == "lo"]
        if loop:
            self._undo()
            raise UsageError(
                f"--to {plan.remote_ip} is routed through {loop[0].egress_iface} by Open vSwitch:"
                " it is this host; the session was removed again",
                hint="give the address of the host that runs `vmsniff receive`",
            )

    @property
    def lost(self) -> str | None:
        """Why the running session's rows are lost, or None."""
        return self.keeper.lost if self.keeper is not None else None

    def check(self) -> None:
        """Raise SessionLost when the session's rows vanished or changed under it."""
        if self.lost is not None and self.plan is not None:
            sid = self.plan.session
            raise SessionLost(
                f"session {sid} was lost while it ran: {self.lost}; it no longer mirrors "
                "(what was left of its rows is removed)",
                hint="someone ran `vmsniff cleanup`, ovs-vsctl or restarted the switch with "
                "another database; see `vmsniff list`, and start a new session",
            )

    def stats(self) -> tuple[int, int]:
        """Mirrored packets and bytes so far (OVS refreshes Mirror statistics every ~5 s)."""
        if self.plan is None:
            return 0, 0
        return mirror_counters(self._api, {m.name for m in self.plan.mirrors})

    def hold(
        self,
        *,
        duration: float | None,
        signalled: Callable[[], int | None],
        on_tick: Callable[[float, int, int], None] | None = None,
        tick: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> str:
        """Keep the started session until ``duration`` seconds pass or ``signalled()`` gives a
        signal number (the handlers only record it); return why it ended: ``duration``,
        ``interrupted`` (SIGINT) or the signal's name. Raises :class:`SessionLost` as soon as
        the keeper sees the rows gone. ``on_tick(elapsed, packets, bytes)`` every ``tick``."""
        return hold_session(self, duration=duration, signalled=signalled, on_tick=on_tick,
                            tick=tick, clock=clock)  # fmt: skip

    def stop(self) -> None:
        """Tear the session down in one transaction (idempotent).

        With the database unreachable it waits up to :data:`TEARDOWN_WAIT_S` for it to come
        back, then raises Unreachable saying that the rows remain and how to remove them.
        """
        if self.plan is None or self._stopped or self.api is None:
            return
        if self.keeper is not None:
            self.keeper.stop()
        sid = self.plan.session
        names = ", ".join([t.name for t in self.plan.tunnels] + [m.name for m in self.plan.mirrors])
        truth = Unreachable(
            f"the OVSDB at {self.remote} does not answer, so session {sid}'s rows remain on "
            f"the switch ({names}); they expire at {self.plan.expires} or sooner once "
            "vmsniff sees their owner is gone",
            hint=f"once the database is back, remove them with:  vmsniff cleanup {sid}",
        )
        deadline = time.monotonic() + TEARDOWN_WAIT_S
        while not idl_ready(self.api):
            if time.monotonic() >= deadline:
                raise truth
            time.sleep(0.05)
        sessions = [s for s in find_sessions(self.api, _now()) if s.id == sid]
        try:
            remove_sessions(self.api, sessions, timeout=TEARDOWN_WAIT_S)
        except Unreachable:
            raise truth from None
        self._stopped = True


def mirror_counters(api: OvsBackend, names: set[str]) -> tuple[int, int]:
    """Packets and bytes the Mirror rows named ``names`` sent so far (``statistics``)."""
    packets = bytes_ = 0
    for row in list(api.tables["Mirror"].rows.values()):
        if row.name in names:
            stats = dict(getattr(row, "statistics", {}))
            packets += int(stats.get("tx_packets", 0))
            bytes_ += int(stats.get("tx_bytes", 0))
    return packets, bytes_


class Holdable(Protocol):
    """A started session: :meth:`check` raises SessionLost, :meth:`stats` counts."""

    def check(self) -> None: ...

    def stats(self) -> tuple[int, int]: ...


def hold_session(
    session: Holdable,
    *,
    duration: float | None,
    signalled: Callable[[], int | None],
    on_tick: Callable[[float, int, int], None] | None = None,
    tick: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """The foreground loop of every session kind (one switch, many hosts, OVN Northbound):
    see :meth:`MirrorSession.hold`."""
    import signal

    start = clock()
    while True:
        elapsed = clock() - start
        signum = signalled()
        if signum is not None:
            name = signal.Signals(signum).name
            return "interrupted" if name == "SIGINT" else name
        if duration is not None and elapsed >= duration:
            return "duration"
        session.check()
        if on_tick is not None:
            on_tick(elapsed, *session.stats())
        time.sleep(min(tick, duration - elapsed) if duration is not None else tick)


def list_sessions(remote: str, backend: OvsBackend | None = None) -> list[Session]:
    """Every vmsniff session on the switch at ``remote`` (or on ``backend``)."""
    with _switch(remote, backend) as api:
        return find_sessions(api, _now())


@dataclass
class CleanupReport:
    """What cleanup removed (or would remove, with dry_run)."""

    removed: list[Session]
    dry_run: bool
    kept: int


def cleanup(
    remote: str,
    *,
    sessions: Sequence[str] = (),
    vm: str | None = None,
    expired: bool = False,
    everything: bool = False,
    dry_run: bool = False,
    backend: OvsBackend | None = None,
) -> CleanupReport:
    """Remove vmsniff sessions matching the selectors (OR-ed) in one transaction (on the
    switch at ``remote``, or on ``backend``)."""
    with _switch(remote, backend) as api:
        found = find_sessions(api, _now())
        chosen = choose(found, sessions, vm, expired, everything, where="",
                        hint="`vmsniff list` shows the sessions on this host (ids: 4 or more "
                        "leading characters)")  # fmt: skip
        if chosen and not dry_run:
            remove_sessions(api, chosen)
        return CleanupReport(chosen, dry_run, len(found) - len(chosen))


def choose(
    found: list[Session],
    sessions: Sequence[str],
    vm: str | None,
    expired: bool,
    everything: bool,
    *,
    where: str,
    hint: str,
) -> list[Session]:
    """The sessions ``cleanup``'s selectors (OR-ed) pick from ``found``; NotFound, naming
    ``where`` they were looked for, when an id or ``vm`` matches none."""
    missing = [f"session {i}" for i in sessions if not any(_by_id(s, i) for s in found)]
    if vm and not any(_by_vm(s, vm) for s in found):
        missing.append(f"--vm {vm}")
    if missing:
        raise NotFound(
            f"no vmsniff session{where} matches {', '.join(missing)}; nothing was removed",
            hint=hint,
        )
    return list(_select(found, sessions, vm, expired, everything))


def _select(
    found: list[Session], ids: Sequence[str], vm: str | None, expired: bool, everything: bool
) -> Iterator[Session]:
    for s in found:
        if (
            everything
            or (expired and (s.stale or s.orphaned))
            or any(_by_id(s, i) for i in ids)
            or (vm and _by_vm(s, vm))
        ):
            yield s


def _by_id(s: Session, prefix: str) -> bool:
    return len(prefix) >= 4 and s.id.startswith(prefix)


def _by_vm(s: Session, vm: str) -> bool:
    # "name (id)", or "a (id1), b (id2)" for a stream shared by several VMs
    return any(part.startswith(f"{vm} (") or f"({vm})" in part for part in s.vm.split(", "))
