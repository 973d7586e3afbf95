"""The mirror workflow as a library: resolve -> plan -> apply -> (run) -> teardown; list; cleanup.

The CLI (``vmsniff mirror``, ``list``, ``cleanup``) is a thin shell over :class:`MirrorSession`,
:func:`list_sessions` and :func:`cleanup`. Every write is one OVSDB transaction; only rows
carrying vmsniff's ownership marks are ever removed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from vmsniff.errors import SwitchError
from vmsniff.model import Direction, Nic, Server
from vmsniff.ovs.apply import TunnelState, apply_plan, switch_facts, wait_tunnels
from vmsniff.ovs.plan import (
    MirrorOptions,
    MirrorPlan,
    encap_overhead,
    plan_local_mirror,
    plan_mirror,
    require_mirrorable,
)
from vmsniff.ovs.sessions import Session, find_sessions, remove_sessions

__all__ = ["CleanupReport", "MirrorSession", "cleanup", "list_sessions", "mtu_warning"]


def _now() -> datetime:
    return datetime.now(UTC)


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


class MirrorSession(AbstractContextManager["MirrorSession"]):
    """One mirror session on one switch; ``stop()`` (or leaving the ``with``) tears it down.

    With ``detach`` the rows stay after the ``with`` (they carry their expiry).
    """

    def __init__(self, remote: str) -> None:
        self.remote = remote
        self._stack = ExitStack()
        self.api: Any = None
        self.plan: MirrorPlan | None = None
        self.detach = False
        self._stopped = False

    def __enter__(self) -> MirrorSession:
        from vmsniff.ovs.connection import ovsdb

        self.api = self._stack.enter_context(ovsdb(self.remote))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if not self.detach:
                self.stop()
        finally:
            self._stack.close()

    def _remove_expired(self, bridge: str, now: datetime) -> list[str]:
        """Remove vmsniff's expired sessions with a row on ``bridge``; their ids."""
        expired = [
            s
            for s in find_sessions(self.api, now)
            if s.expired
            and any(m["bridge"] == bridge for m in s.mirrors)
            or s.expired
            and any(p["bridge"] == bridge for p in s.ports)
        ]
        if expired:
            remove_sessions(self.api, expired)
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
        _tunnels, count, owners = switch_facts(self.api, bridge)
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
        tunnels, count, owners = switch_facts(self.api, bridge)
        plan = plan_mirror(
            server, nic, opts, tunnels=tunnels, mirrors_on_bridge=count, now=now, owners=owners,
        )  # fmt: skip
        return plan, removed

    def start(self, plan: MirrorPlan, nic: Nic, snaplen: int | None) -> Started:
        """Apply the plan in one transaction and check the tunnel ports came up."""
        self.plan = plan  # set first: an interrupt during the commit still tears down
        apply_plan(self.api, plan)
        states = wait_tunnels(self.api, [t.name for t in plan.tunnels])
        bad = [s for s in states if s.error or not s.ofport]
        if bad:
            detail = "; ".join(f"{s.name}: {s.error or 'no OpenFlow port'}" for s in bad)
            self.stop()
            raise SwitchError(
                f"the tunnel port did not come up ({detail}); the session was removed again",
                hint="check that this Open vSwitch supports the tunnel type and that "
                "--to is routable from its tunnel endpoint",
            )
        warnings = []
        egress = next((s for s in states if s.egress_mtu), None)
        if egress is not None:
            text = mtu_warning(nic, plan.encap, egress.egress_iface, egress.egress_mtu, snaplen)
            if text:
                warnings.append(text)
        return Started(plan, states, warnings=warnings)

    def stats(self) -> tuple[int, int]:
        """Mirrored packets and bytes so far (OVS refreshes Mirror statistics every ~5 s)."""
        if self.plan is None:
            return 0, 0
        packets = bytes_ = 0
        for m in self.plan.mirrors:
            row = self.api.lookup("Mirror", m.name, default=None)
            if row is not None:
                stats = dict(row.statistics)
                packets += int(stats.get("tx_packets", 0))
                bytes_ += int(stats.get("tx_bytes", 0))
        return packets, bytes_

    def stop(self) -> None:
        """Tear the session down in one transaction (idempotent)."""
        if self.plan is None or self._stopped or self.api is None:
            return
        sessions = [s for s in find_sessions(self.api, _now()) if s.id == self.plan.session]
        remove_sessions(self.api, sessions)
        self._stopped = True


def list_sessions(remote: str) -> list[Session]:
    """Every vmsniff session on the switch at ``remote``."""
    from vmsniff.ovs.connection import ovsdb

    with ovsdb(remote) as api:
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
) -> CleanupReport:
    """Remove vmsniff sessions matching the selectors (OR-ed) in one transaction."""
    from vmsniff.ovs.connection import ovsdb

    with ovsdb(remote) as api:
        found = find_sessions(api, _now())
        chosen = list(_select(found, sessions, vm, expired, everything))
        if chosen and not dry_run:
            remove_sessions(api, chosen)
        return CleanupReport(chosen, dry_run, len(found) - len(chosen))


def _select(
    found: list[Session], ids: Sequence[str], vm: str | None, expired: bool, everything: bool
) -> Iterator[Session]:
    for s in found:
        if (
            everything
            or (expired and (s.expired or s.orphaned))
            or any(s.id.startswith(i) for i in ids if len(i) >= 4)
            or (vm and (s.vm.startswith(f"{vm} (") or f"({vm})" in s.vm))
        ):
            yield s
