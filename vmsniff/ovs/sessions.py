"""vmsniff's sessions as found in OVSDB: list them, and remove them (only ours, ever).

A session is every Mirror, Port and Interface row whose ``external_ids`` carry the same
``vmsniff-session``. Rows without it are never read into a session, so nothing here can
touch another operator's mirror or a Neutron port.

A session is *dead* when its liveness marks say it was made on this host by a process that
no longer runs (:func:`~vmsniff.ovs.ownership.owner_alive`): ``list`` shows it so, and
``cleanup --expired`` and every new session remove it like an expired one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vmsniff.ovs.apply import remove_rows
from vmsniff.ovs.backend import OvsBackend
from vmsniff.ovs.ownership import (
    SESSION_KEY,
    Host,
    is_expired,
    owner_alive,
    process_start,
    this_host,
)

__all__ = ["Session", "find_sessions", "judge", "meta", "remove_sessions"]


@dataclass
class Session:
    """One vmsniff session on a switch."""

    id: str
    vm: str = ""
    nic: str = ""
    owner: str = ""
    reason: str | None = None
    created: str | None = None
    expires: str | None = None
    encap: str | None = None
    remote_ip: str | None = None
    keys: dict[str, int] = field(default_factory=dict)
    directions: list[str] = field(default_factory=list)
    mirrors: list[dict[str, Any]] = field(default_factory=list)  #: uuid, name, bridge, stats
    ports: list[dict[str, Any]] = field(default_factory=list)  #: name, bridge
    expired: bool = False
    orphaned: bool = False
    problems: list[str] = field(default_factory=list)
    host: str | None = None  #: where the owner ran (vmsniff-host)
    pid: int | None = None  #: the owning process of a foreground session
    detached: bool = False
    alive: bool | None = None  #: the owner still runs; None: cannot tell from here
    marks: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def dead(self) -> bool:
        """Its owner, on this host, is gone: nobody will remove these rows."""
        return self.alive is False

    @property
    def state(self) -> str:
        """One word for ``list``: orphaned, dead, expired or active."""
        if self.orphaned:
            return "orphaned"
        if self.dead:
            return "dead"
        return "expired" if self.expired else "active"

    @property
    def stale(self) -> bool:
        """Dead, or expired with no owner known to run: what ``cleanup --expired`` and every
        new session remove. A session whose owner on this host still runs is never stale,
        even past its expiry (its renewal may have failed; removing it would lose it)."""
        return self.dead or (self.expired and self.alive is not True)

    @property
    def packets(self) -> int:
        return sum(int(m["stats"].get("tx_packets", 0)) for m in self.mirrors)

    @property
    def bytes(self) -> int:
        return sum(int(m["stats"].get("tx_bytes", 0)) for m in self.mirrors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.id,
            "vm": self.vm,
            "nic": self.nic,
            "direction": "both" if len(set(self.directions)) == 2 else "".join(self.directions[:1]),
            "encap": self.encap,
            "remote_ip": self.remote_ip,
            "keys": self.keys,
            "owner": self.owner,
            "reason": self.reason,
            "created": self.created,
            "expires": self.expires,
            "state": self.state,
            "expired": self.expired,
            "orphaned": self.orphaned,
            "dead": self.dead,
            "owner_alive": self.alive,
            "host": self.host,
            "pid": self.pid,
            "detached": self.detached,
            "problems": self.problems,
            "mirrored_packets": self.packets,
            "mirrored_bytes": self.bytes,
            "mirrors": [{k: v for k, v in m.items() if k != "uuid"} for m in self.mirrors],
            "ports": self.ports,
        }


def meta(session: Session, ids: dict[str, str]) -> None:
    # a multi-VM session's rows name different VMs: list each once
    known = session.vm.split(", ") if session.vm else []
    known += [v for v in ids.get("vmsniff-vm", "").split(", ") if v and v not in known]
    session.vm = ", ".join(known)
    session.nic = session.nic or ids.get("vmsniff-nic", "")
    session.owner = session.owner or ids.get("vmsniff-owner", "")
    session.reason = session.reason or ids.get("vmsniff-reason")
    session.created = session.created or ids.get("vmsniff-created")
    session.expires = session.expires or ids.get("vmsniff-expires")
    if not session.marks:
        session.marks = {k: v for k, v in ids.items() if k in _LIVENESS}


_LIVENESS = ("vmsniff-host", "vmsniff-pid", "vmsniff-pid-start", "vmsniff-boot-id",
             "vmsniff-pidns", "vmsniff-detached")  # fmt: skip


def find_sessions(
    api: OvsBackend,
    now: datetime,
    host: Host | None = None,
    start_of: Callable[[int], str | None] = process_start,
) -> list[Session]:
    """Every vmsniff session on the switch, with expiry, orphan and liveness status.

    ``host`` (default: this one) and ``start_of`` (a pid's start time) judge liveness; tests
    pass their own.
    """
    host = host or this_host()
    # Each table is read from a copy of its rows: ovsdbapp's IDL thread may change the
    # tables while we read them ("dictionary changed size during iteration").
    found: dict[str, Session] = {}
    bridge_of_port: dict[Any, str] = {}
    bridge_of_mirror: dict[Any, str] = {}
    for bridge in list(api.tables["Bridge"].rows.values()):
        for port in bridge.ports:
            bridge_of_port[port.uuid] = bridge.name
        for mirror in bridge.mirrors:
            bridge_of_mirror[mirror.uuid] = bridge.name
    for port in list(api.tables["Port"].rows.values()):
        ids = dict(port.external_ids)
        sid = ids.get(SESSION_KEY)
        if not sid:
            continue
        s = found.setdefault(sid, Session(sid))
        meta(s, ids)
        s.ports.append({"name": port.name, "bridge": bridge_of_port.get(port.uuid)})
        for iface in port.interfaces:
            opts = dict(iface.options)
            s.encap = iface.type
            s.remote_ip = opts.get("remote_ip")
            direction = ids.get("vmsniff-role", "").removeprefix("tunnel-")
            if opts.get("key", "").isdigit() and direction:
                s.keys[direction] = int(opts["key"])
    for mirror in list(api.tables["Mirror"].rows.values()):
        ids = dict(mirror.external_ids)
        sid = ids.get(SESSION_KEY)
        if not sid:
            continue
        s = found.setdefault(sid, Session(sid))
        meta(s, ids)
        direction = ids.get("vmsniff-role", "").removeprefix("mirror-")
        if direction:
            s.directions.append(direction)
        s.mirrors.append(
            {
                "uuid": mirror.uuid,
                "name": mirror.name,
                "bridge": bridge_of_mirror.get(mirror.uuid),
                "stats": dict(getattr(mirror, "statistics", {})),  # not there yet: just made
            }
        )
        if not mirror.output_port:
            s.problems.append(f"mirror {mirror.name} lost its output port")
        if not (mirror.select_src_port or mirror.select_dst_port):
            s.problems.append(f"mirror {mirror.name} lost the VM's port (VM gone or re-plugged)")
        if bridge_of_mirror.get(mirror.uuid) is None:
            s.problems.append(f"mirror {mirror.name} is on no bridge")
    for s in found.values():
        s.directions.sort()  # from-vm before to-vm
        if not s.mirrors:
            s.problems.append("tunnel ports without a mirror")
        if not s.ports:
            s.problems.append("mirrors without a tunnel port")
        judge(s, now, host, start_of)
    return sorted(found.values(), key=lambda s: s.created or "")


def judge(s: Session, now: datetime, host: Host, start_of: Callable[[int], str | None]) -> None:
    """Fill in what a session's rows say of it: orphaned (its problems), expired, where and by
    which process it was made, and whether that process still runs (any kind of row: OVSDB,
    or OVN Northbound)."""
    s.orphaned = bool(s.problems)
    s.expired = is_expired({SESSION_KEY: s.id, "vmsniff-expires": s.expires or ""}, now)
    s.host = s.marks.get("vmsniff-host")
    pid = s.marks.get("vmsniff-pid", "")
    s.pid = int(pid) if pid.isdigit() else None
    s.detached = s.marks.get("vmsniff-detached") == "true"
    s.alive = owner_alive(s.marks, host, start_of)


def remove_sessions(
    api: OvsBackend, sessions: Sequence[Session], timeout: float | None = None
) -> None:
    """Remove every row of ``sessions`` in one transaction (idempotent for gone rows)."""
    bridge_of: dict[str, str] = {}
    mirrors = []
    ports = []
    for s in sessions:
        for m in s.mirrors:
            if m["bridge"]:
                bridge_of[str(m["uuid"])] = m["bridge"]
                mirrors.append(m["uuid"])
        for p in s.ports:
            if p["bridge"]:
                bridge_of[p["name"]] = p["bridge"]
            ports.append(p["name"])
    if mirrors or ports:
        remove_rows(api, bridge_of, mirrors, ports, timeout)
