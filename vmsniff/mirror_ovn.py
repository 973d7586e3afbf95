"""The mirror workflow on OVN (``mirror --via ovn``): the session is Northbound rows.

One database for the whole cloud, so one transaction makes the whole session (all or
nothing by construction) and OVN realises it on every chassis that binds one of the ports,
following a port that moves. Like an OVSDB session it carries an expiry that a
:class:`~vmsniff.ovs.keeper.Keeper` renews while it runs, liveness marks that make a killed
owner's rows *dead*, and it is removed by ``stop()``, ``cleanup --ovn`` or expiry; rows
vmsniff did not make are never touched (:mod:`vmsniff.ovn.sessions`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from vmsniff.errors import SessionLost, Unreachable
from vmsniff.mirror import CleanupReport, mirror_counters
from vmsniff.ovn.plan import NbPlan, plan_nb
from vmsniff.ovn.sessions import (
    apply_nb,
    check_nb_rows,
    existing_mirrors,
    find_nb_sessions,
    nb_session_rows,
    remove_nb_sessions,
)
from vmsniff.ovs.keeper import Keeper, idl_ready
from vmsniff.ovs.ownership import liveness_ids, parse_time
from vmsniff.ovs.plan import MirrorOptions
from vmsniff.ovs.sessions import Session
from vmsniff.ovs.spread import Member

__all__ = ["NbSession", "cleanup_nb", "list_nb_sessions"]

TEARDOWN_WAIT_S = 3.0


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _northbound(remote: str, backend: Any) -> Iterator[Any]:
    if backend is not None:
        yield backend
        return
    from vmsniff.ovn.connection import nb

    with nb(remote) as api:
        yield api


class NbSession(AbstractContextManager["NbSession"]):
    """One session as NB Mirror rows; ``stop()`` (or leaving the ``with``) removes them."""

    def __init__(
        self, remote: str, backend: Any = None, chassis: Mapping[str, str] | None = None
    ) -> None:
        self.remote = remote
        self._backend = backend
        #: host -> its OVSDB: where :meth:`stats` reads the OVS Mirrors OVN made (Northbound
        #: keeps no counters); a host not listed is not counted
        self.chassis = dict(chassis or {})
        self._stack = ExitStack()
        self.api: Any = None
        self.plan: NbPlan | None = None
        self.detach = False
        self.keeper: Keeper | None = None
        self.removed: list[str] = []  #: stale vmsniff sessions removed by prepare()
        self._stopped = False

    def __enter__(self) -> NbSession:
        self.api = self._stack.enter_context(_northbound(self.remote, self._backend))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if not self.detach:
                self.stop()
        finally:
            self._stack.close()

    def prepare(
        self, members: Sequence[Member], opts: MirrorOptions, *, shared: bool | None = None
    ) -> NbPlan:
        """Remove stale (expired, dead) vmsniff sessions on these ports, then plan."""
        ports = {m.nic.port_id for m in members}
        stale = [
            s for s in find_nb_sessions(self.api, _now())
            if s.stale and any(p["name"] in ports for p in s.ports)
        ]  # fmt: skip
        if stale:
            remove_nb_sessions(self.api, stale)
        self.removed = [s.id for s in stale]
        return plan_nb(members, opts, existing=existing_mirrors(self.api), now=_now(),
                       shared=shared)  # fmt: skip

    def start(
        self,
        plan: NbPlan,
        members: Sequence[Member] = (),
        snaplen: int | None = None,
        *,
        detach: bool = False,
        stopped: Callable[[], bool] = lambda: False,
    ) -> NbPlan:
        """Create every row in one transaction; unless ``detach``, keep them renewed and
        watched until :meth:`stop`."""
        marks = liveness_ids(detached=detach)
        marked = tuple(replace(m, external_ids={**m.external_ids, **marks}) for m in plan.mirrors)
        plan = replace(plan, mirrors=marked)
        self.plan = plan  # set first: an interrupt during the commit still tears down
        self.detach = detach
        if stopped():
            raise KeyboardInterrupt
        apply_nb(self.api, plan)
        if not detach:
            created = parse_time(plan.mirrors[0].external_ids.get("vmsniff-created"))
            expires = parse_time(plan.expires)
            ttl = expires - created if created and expires else timedelta(hours=1)
            refs = nb_session_rows(self.api, plan)
            self.keeper = Keeper(self.api, refs, session=plan.session, bridge="", ttl=ttl,
                                 check=check_nb_rows).start()  # fmt: skip
        return plan

    def check(self) -> None:
        """Raise SessionLost once the session's NB rows are gone or detached."""
        lost = self.keeper.lost if self.keeper is not None else None
        if lost is not None and self.plan is not None:
            raise SessionLost(
                f"session {self.plan.session} was lost while it ran: {lost}; it no longer "
                "mirrors (what was left of its rows is removed)",
                hint="someone ran `vmsniff cleanup --ovn` or ovn-nbctl mirror-del; see "
                "`vmsniff list --ovn`, and start a new session",
            )

    def stats(self) -> tuple[int, int]:
        """Mirrored packets and bytes so far, summed over the OVS Mirrors ovn-controller made
        for the session's rows (named as the NB rows) on the chassis in :attr:`chassis`; OVS
        refreshes them every ~5 s. A chassis that does not answer is not counted."""
        if self.plan is None or not self.chassis:
            return 0, 0
        from vmsniff.errors import VmsniffError
        from vmsniff.ovs.connection import ovsdb

        names = {m.name for m in self.plan.mirrors}
        packets = bytes_ = 0
        for remote in self.chassis.values():
            try:
                with ovsdb(remote) as api:
                    p, b = mirror_counters(api, names)
            except VmsniffError:
                continue  # a chassis that does not answer is not counted
            packets, bytes_ = packets + p, bytes_ + b
        return packets, bytes_

    def stop(self) -> None:
        """Remove the session's rows in one transaction (idempotent)."""
        if self.plan is None or self._stopped or self.api is None:
            return
        if self.keeper is not None:
            self.keeper.stop()
        sid = self.plan.session
        truth = Unreachable(
            f"the OVN Northbound database at {self.remote} does not answer, so session {sid}'s "
            f"mirrors remain; they expire at {self.plan.expires} or sooner once vmsniff sees "
            "their owner is gone",
            hint=f"once it answers, remove them with:  vmsniff cleanup --ovn {sid}",
        )
        deadline = time.monotonic() + TEARDOWN_WAIT_S
        while self._backend is None and not idl_ready(self.api):
            if time.monotonic() >= deadline:
                raise truth
            time.sleep(0.05)
        sessions = [s for s in find_nb_sessions(self.api, _now()) if s.id == sid]
        try:
            remove_nb_sessions(self.api, sessions, timeout=TEARDOWN_WAIT_S)
        except Unreachable:
            raise truth from None
        self._stopped = True


def list_nb_sessions(remote: str, backend: Any = None) -> list[Session]:
    """Every vmsniff session in the NB database at ``remote``."""
    with _northbound(remote, backend) as api:
        return find_nb_sessions(api, _now())


def cleanup_nb(
    remote: str,
    *,
    sessions: Sequence[str] = (),
    vm: str | None = None,
    expired: bool = False,
    everything: bool = False,
    dry_run: bool = False,
    backend: Any = None,
) -> CleanupReport:
    """Remove vmsniff's NB sessions matching the selectors (OR-ed), in one transaction."""
    from vmsniff.mirror import choose

    with _northbound(remote, backend) as api:
        found = find_nb_sessions(api, _now())
        chosen = choose(found, sessions, vm, expired, everything,
                        where=" in the OVN Northbound database",
                        hint="`vmsniff list --ovn` shows them")  # fmt: skip
        if chosen and not dry_run:
            remove_nb_sessions(api, chosen)
        return CleanupReport(chosen, dry_run, len(found) - len(chosen))
