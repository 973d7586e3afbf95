"""find_sessions and remove_sessions on a fake switch: only vmsniff's rows, ever."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from tests.unit.ovs.helpers import (
    FOREIGN_MIRRORS,
    FOREIGN_PORTS,
    NOW,
    SID,
    VM_PORT,
    bridge_members,
    hypervisor,
    plan,
)
from vmsniff.model import Direction
from vmsniff.ovs.apply import apply_plan
from vmsniff.ovs.fake import FakeOvs, FakeRow
from vmsniff.ovs.ownership import Host
from vmsniff.ovs.plan import MirrorPlan
from vmsniff.ovs.sessions import find_sessions, remove_sessions

HERE = Host("hv1", "boot-a", "pid:[1]")
OTHER = "0000beef-0000-4000-8000-000000000000"


def marked(p: MirrorPlan, **marks: str) -> MirrorPlan:
    from vmsniff.mirror import with_marks

    return with_marks(p, marks)


def alive_marks(pid: str = "4242", start: str = "77") -> dict[str, str]:
    return {"vmsniff-host": "hv1", "vmsniff-pid": pid, "vmsniff-pid-start": start,
            "vmsniff-boot-id": "boot-a", "vmsniff-pidns": "pid:[1]"}  # fmt: skip


def find(ovs: FakeOvs, now: Any = NOW, running: dict[int, str] | None = None) -> list[Any]:
    table = running or {}
    return find_sessions(ovs, now, host=HERE, start_of=table.get)


def test_a_session_gathers_its_rows_and_facts_and_foreign_rows_are_not_read() -> None:
    ovs, p = hypervisor(), plan()
    apply_plan(ovs, p)
    (s,) = find(ovs)
    assert s.id == SID and s.vm == "c-private (11111111-2222-3333-4444-555555555555)"
    assert s.nic == "fa:16:3e:00:00:01" and s.encap == "gre" and s.remote_ip == "192.0.2.10"
    assert s.keys == p.keys and s.expires == p.expires and s.created == "2026-12-01T12:00:00Z"
    assert sorted(m["name"] for m in s.mirrors) == sorted(m.name for m in p.mirrors)
    assert {(x["name"], x["bridge"]) for x in s.ports} == {(t.name, "br-int") for t in p.tunnels}
    assert all(m["bridge"] == "br-int" for m in s.mirrors)
    assert s.directions == ["from-vm", "to-vm"]
    assert s.to_dict()["direction"] == "both"
    assert s.state == "active" and not s.stale and s.problems == [] and s.alive is None


def test_two_sessions_are_told_apart() -> None:
    ovs = hypervisor()
    apply_plan(ovs, plan(Direction.FROM_VM))
    apply_plan(ovs, plan(Direction.TO_VM, session=OTHER, now=NOW + timedelta(minutes=1)))
    found = find(ovs)
    assert [s.id for s in found] == [SID, OTHER]  # oldest first
    assert [s.directions for s in found] == [["from-vm"], ["to-vm"]]
    assert [len(s.ports) for s in found] == [1, 1]


def test_expiry_makes_a_session_stale_unless_its_owner_runs() -> None:
    ovs = hypervisor()
    apply_plan(ovs, marked(plan(ttl=timedelta(minutes=5)), **alive_marks()))
    later = NOW + timedelta(minutes=6)
    assert [s.state for s in find(ovs, running={4242: "77"})] == ["active"]
    (s,) = find(ovs, later)
    assert s.expired and s.state == "dead" and s.stale  # expired, and its owner is gone
    (s,) = find(ovs, later, running={4242: "77"})
    assert s.expired and s.alive is True and not s.stale and s.state == "expired"
    (s,) = find(ovs, NOW, running={4242: "78"})  # the pid was reused: another process
    assert not s.expired and s.dead and s.stale


def test_an_owner_elsewhere_cannot_be_judged_and_expiry_decides() -> None:
    ovs = hypervisor()
    apply_plan(ovs, marked(plan(), **{**alive_marks(), "vmsniff-host": "hv2"}))
    (s,) = find(ovs)
    assert s.alive is None and s.host == "hv2" and s.pid == 4242 and not s.stale
    (s,) = find(ovs, NOW + timedelta(hours=2))
    assert s.stale and s.state == "expired"


def test_rows_broken_by_others_make_an_orphan() -> None:
    ovs, p = hypervisor(), plan()
    apply_plan(ovs, p)
    ovs.run(ovs.del_port(p.tunnels[0].name, "br-int"))  # someone ran ovs-vsctl del-port
    (s,) = find(ovs)
    assert s.orphaned and s.state == "orphaned"
    assert f"mirror {p.mirrors[0].name} lost its output port" in s.problems
    ovs.run(ovs.del_port(VM_PORT))  # the VM went away
    (s,) = find(ovs)
    assert any("lost the VM's port" in why for why in s.problems)


def test_tunnel_ports_without_a_mirror_are_an_orphan() -> None:
    ovs, p = hypervisor(), plan()
    apply_plan(ovs, p)
    for m in p.mirrors:
        ovs.run(ovs.db_remove("Bridge", "br-int", "mirrors", ovs.lookup("Mirror", m.name).uuid))
    (s,) = find(ovs)
    assert s.problems == ["tunnel ports without a mirror"] and s.orphaned


def test_remove_sessions_removes_only_the_given_sessions_rows() -> None:
    ovs, mine, theirs = hypervisor(), plan(), plan(session=OTHER)
    theirs = plan(session=OTHER, key=mine.keys["from-vm"] + 100)
    apply_plan(ovs, mine)
    apply_plan(ovs, theirs)
    ovs.writes.clear()
    commits = ovs.commits
    remove_sessions(ovs, [s for s in find(ovs) if s.id == SID])
    assert ovs.commits == commits + 1
    assert [s.id for s in find(ovs)] == [OTHER]
    assert ovs.names("Port") == FOREIGN_PORTS | {t.name for t in theirs.tunnels}
    assert ovs.names("Mirror") == FOREIGN_MIRRORS | {m.name for m in theirs.mirrors}
    assert bridge_members(ovs, "br-int", "mirrors") == FOREIGN_MIRRORS | {
        m.name for m in theirs.mirrors
    }
    assert not [w for w in ovs.writes if w[0] == "update"]  # set columns were mutated


def test_remove_sessions_is_idempotent_and_removes_an_orphans_leftovers() -> None:
    ovs, p = hypervisor(), plan()
    apply_plan(ovs, p)
    found = find(ovs)
    remove_sessions(ovs, found)
    commits = ovs.commits
    remove_sessions(ovs, found)  # gone already: one transaction that changes nothing
    assert ovs.names("Port") == FOREIGN_PORTS
    apply_plan(ovs, p)
    ovs.run(ovs.del_port(p.tunnels[0].name))
    remove_sessions(ovs, find(ovs))
    assert ovs.names("Port") == FOREIGN_PORTS and ovs.names("Mirror") == FOREIGN_MIRRORS
    remove_sessions(ovs, [])
    assert ovs.commits == commits + 4  # and nothing to remove: no transaction


class Racing:
    """A row whose column ``on``, once read, lets "the IDL thread" add a row to its table."""

    def __init__(self, row: Any, rows: dict[Any, Any], on: str) -> None:
        self._row, self._rows, self._on, self._raced = row, rows, on, False

    def __getattr__(self, name: str) -> Any:
        if name == self._on and not self._raced:
            self._raced = True
            row, new = self._row, uuid.uuid4()  # an update adds an unmarked row meanwhile
            self._rows[new] = FakeRow(row._db, row._table, new, {**row._data, "external_ids": {}})
        return getattr(self._row, name)


def test_find_sessions_survives_rows_changing_while_it_reads() -> None:
    """ovsdbapp's IDL thread updates the tables while we read them: reading each table
    from a copy of its rows avoids "dictionary changed size during iteration"."""
    ovs, p = hypervisor(), plan()
    apply_plan(ovs, p)
    for table, column in (
        ("Bridge", "ports"),
        ("Port", "external_ids"),
        ("Mirror", "external_ids"),
    ):
        rows = ovs.tables[table].rows  # each loop of find_sessions reads these columns
        first = next(iter(rows))
        rows[first] = Racing(rows[first], rows, column)
    (s,) = find(ovs)
    assert s.id == SID and len(s.ports) == 2 and len(s.mirrors) == 2
