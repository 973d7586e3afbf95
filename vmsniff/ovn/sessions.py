"""vmsniff's sessions in an OVN Northbound database: apply, find, check, remove. Only ours.

A session is every NB ``Mirror`` row whose ``external_ids`` carry the same
``vmsniff-session``; rows without the mark (``ovn-nbctl mirror-add``, Neutron TaaS) are never
read into a session, so nothing here can touch them. ``Logical_Switch_Port.mirror_rules``
holds weak references: deleting a Mirror row detaches it from every port in the same
transaction, so removing a session is deleting its rows. Expiry, liveness (dead owners) and
the renewal are the OVSDB session's (:mod:`vmsniff.ovs.sessions`, :mod:`vmsniff.ovs.keeper`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from vmsniff.errors import NotFound, SwitchError, Unreachable
from vmsniff.ovn.plan import NbPlan
from vmsniff.ovs.keeper import RowRef
from vmsniff.ovs.ownership import (
    SESSION_KEY,
    Host,
    process_start,
    this_host,
)
from vmsniff.ovs.plan import Tunnel
from vmsniff.ovs.sessions import Session, judge, meta

__all__ = ["apply_nb", "check_nb_rows", "existing_mirrors", "find_nb_sessions",
           "nb_session_rows", "remove_nb_sessions"]  # fmt: skip


def _translate(exc: Exception, what: str, hint: str) -> SwitchError | Unreachable:
    if type(exc).__name__ == "TimeoutException":
        return Unreachable(f"the OVN Northbound database did not answer in time to {what}",
                           hint=hint)  # fmt: skip
    return SwitchError(f"the OVN Northbound database refused to {what}: {exc}", hint=hint)


def existing_mirrors(api: Any) -> list[Tunnel]:
    """Every NB Mirror as a tunnel (type, sink, key = index), for the key choice."""
    return [
        Tunnel(m.name, str(m.type), str(m.sink), None, str(m.index))
        for m in list(api.tables["Mirror"].rows.values())
    ]


def apply_nb(api: Any, plan: NbPlan) -> None:
    """Create the plan's Mirror rows and attach them to their ports, in one transaction."""
    ports = {p for m in plan.mirrors for p in m.ports}
    missing = sorted(p for p in ports if api.lookup("Logical_Switch_Port", p, default=None) is None)
    if missing:
        raise NotFound(
            f"no logical switch port {', '.join(missing)} in the OVN Northbound database",
            hint="is the NIC's network on OVN, and the NB endpoint (--ovn-nb) this cloud's?",
        )
    try:
        with api.transaction(check_error=True) as txn:
            for m in plan.mirrors:
                row = txn.add(api.db_create("Mirror", name=m.name, type=m.type, index=m.index,
                                            filter=m.filter, sink=m.sink,
                                            external_ids=m.external_ids))  # fmt: skip
                for port in m.ports:
                    txn.add(api.db_add("Logical_Switch_Port", port, "mirror_rules", row))
    except Exception as exc:
        hint = "check ovn-northd and the NB database; nothing was left behind"
        raise _translate(exc, "create the mirrors", hint) from None


def nb_session_rows(api: Any, plan: NbPlan) -> list[RowRef]:
    """The session's Mirror rows as the IDL sees them right after apply."""
    refs = []
    for m in plan.mirrors:
        row = next(r for r in list(api.tables["Mirror"].rows.values()) if r.name == m.name)
        refs.append(RowRef("Mirror", row.uuid, m.name))
    return refs


def check_nb_rows(api: Any, refs: list[RowRef], session: str) -> str | None:
    """What is wrong with a running session's NB rows (in words), or None."""
    attached: set[Any] = set()
    for lsp in list(api.tables["Logical_Switch_Port"].rows.values()):
        attached.update(r.uuid for r in lsp.mirror_rules)
    for ref in refs:
        row = api.tables["Mirror"].rows.get(ref.uuid)
        if row is None:
            return f"its NB Mirror {ref.name} was removed"
        if dict(row.external_ids).get(SESSION_KEY) != session:
            return f"its NB Mirror {ref.name} no longer carries the session's mark"
        if ref.uuid not in attached:
            return f"its NB Mirror {ref.name} is attached to no port (VM deleted or detached)"
    return None


def find_nb_sessions(
    api: Any,
    now: datetime,
    host: Host | None = None,
    start_of: Callable[[int], str | None] = process_start,
) -> list[Session]:
    """Every vmsniff session in the NB database, with expiry, orphan and liveness status;
    ``ports`` lists the logical switch ports each is attached to."""
    host = host or this_host()
    ports_of: dict[Any, list[str]] = {}
    for lsp in list(api.tables["Logical_Switch_Port"].rows.values()):
        for rule in lsp.mirror_rules:
            ports_of.setdefault(rule.uuid, []).append(lsp.name)
    found: dict[str, Session] = {}
    for mirror in list(api.tables["Mirror"].rows.values()):
        ids = dict(mirror.external_ids)
        sid = ids.get(SESSION_KEY)
        if not sid:
            continue
        s = found.setdefault(sid, Session(sid))
        meta(s, ids)
        s.encap, s.remote_ip = str(mirror.type), str(mirror.sink)
        direction = ids.get("vmsniff-role", "").removeprefix("mirror-")
        if direction:
            s.directions.append(direction)
            s.keys.setdefault(direction, int(mirror.index))
        attached = ports_of.get(mirror.uuid, [])
        s.mirrors.append({"uuid": mirror.uuid, "name": mirror.name, "bridge": None,
                          "stats": {}, "ports": attached})  # fmt: skip
        s.ports.extend({"name": p, "bridge": None} for p in attached
                       if {"name": p, "bridge": None} not in s.ports)  # fmt: skip
        if not attached:
            s.problems.append(f"NB mirror {mirror.name} is attached to no port")
    for s in found.values():
        s.directions.sort()
        judge(s, now, host, start_of)
    return sorted(found.values(), key=lambda s: s.created or "")


def remove_nb_sessions(api: Any, sessions: Sequence[Session], timeout: float | None = None) -> None:
    """Delete every Mirror row of ``sessions`` in one transaction (detaching them from their
    ports: the references are weak)."""
    rows = [m["uuid"] for s in sessions for m in s.mirrors]
    if not rows:
        return
    try:
        with api.transaction(check_error=True) as txn:
            if timeout is not None:
                txn.timeout = timeout
            for uuid in rows:
                txn.add(api.db_destroy("Mirror", uuid))
    except Exception as exc:
        hint = "the rows remain: run `vmsniff cleanup --ovn` once it answers"
        raise _translate(exc, "remove vmsniff's mirrors", hint) from None
