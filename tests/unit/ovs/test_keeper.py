"""The keeper on a fake switch: renewals touch one key of our rows, losses are noticed."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from tests.unit.ovs.helpers import FOREIGN_PORTS, NOW, SID, VM_PORT, hypervisor, plan
from vmsniff.ovs import keeper as keeper_mod
from vmsniff.ovs.apply import apply_plan
from vmsniff.ovs.fake import FakeOvs, TimeoutException
from vmsniff.ovs.keeper import Keeper, RowRef, check_rows, idl_ready, renew, session_rows
from vmsniff.ovs.ownership import SESSION_KEY
from vmsniff.ovs.plan import MirrorPlan

LATER = "2026-12-01T14:00:00Z"


def started() -> tuple[FakeOvs, MirrorPlan, list[RowRef]]:
    ovs, p = hypervisor(), plan()
    apply_plan(ovs, p)
    return ovs, p, session_rows(ovs, p)


def ours(ovs: FakeOvs, refs: list[RowRef]) -> list[dict[str, str]]:
    return [ovs.tables[r.table].rows[r.uuid].external_ids for r in refs]


def test_session_rows_are_the_ports_interfaces_and_mirrors() -> None:
    ovs, p, refs = started()
    by_table = {t: sorted(r.name for r in refs if r.table == t) for t in ("Port", "Interface")}
    assert by_table == {"Port": sorted(t.name for t in p.tunnels)} | {
        "Interface": sorted(t.name for t in p.tunnels)
    }
    assert sorted(r.name for r in refs if r.table == "Mirror") == sorted(m.name for m in p.mirrors)
    assert all(ovs.tables[r.table].rows[r.uuid].name == r.name for r in refs)


def test_intact_rows_have_no_problem() -> None:
    ovs, p, refs = started()
    assert check_rows(ovs, refs, SID, "br-int") is None


@pytest.mark.parametrize(
    ("meddle", "problem"),
    [
        (lambda o, p: o.del_port(p.tunnels[0].name), "its Port vmsabcdef12-f was removed"),
        (
            lambda o, p: o.db_set(
                "Port", p.tunnels[1].name, ("external_ids", {SESSION_KEY: "someone-else"})
            ),
            "its Port vmsabcdef12-t no longer carries the session's mark",
        ),  # fmt: skip
        (
            lambda o, p: o.db_remove(
                "Bridge", "br-int", "mirrors", o.lookup("Mirror", p.mirrors[0].name).uuid
            ),
            "its Mirror vmsniff-abcdef12-from-vm was removed",
        ),
        (lambda o, p: o.del_port(VM_PORT), "lost the VM's port (VM gone or re-plugged)"),
        (
            lambda o, p: o.db_set("Mirror", p.mirrors[1].name, ("output_port", [])),
            "its mirror vmsniff-abcdef12-to-vm lost its output port",
        ),
    ],
)
def test_each_change_by_others_is_named(
    meddle: Callable[[FakeOvs, MirrorPlan], object], problem: str
) -> None:
    ovs, p, refs = started()
    ovs.run(meddle(ovs, p))
    assert problem in (check_rows(ovs, refs, SID, "br-int") or "")


def test_a_port_moved_to_another_bridge_or_a_bridge_gone_is_named() -> None:
    ovs, p, refs = started()
    port = ovs.lookup("Port", p.tunnels[0].name).uuid
    ovs.run(
        ovs.db_remove("Bridge", "br-int", "ports", port),
        ovs.db_add("Bridge", "br-tun", "ports", port),
    )
    assert check_rows(ovs, refs, SID, "br-int") == "its port vmsabcdef12-f was taken off br-int"
    assert check_rows(ovs, refs[:0], SID, "br-gone") == "bridge br-gone was removed"


def test_renew_sets_only_the_expiry_of_our_rows_in_one_transaction() -> None:
    ovs, p, refs = started()
    before = ours(ovs, refs)
    foreign = {n: ovs.lookup("Port", n).external_ids for n in FOREIGN_PORTS}
    ovs.writes.clear()
    commits = ovs.commits
    renew(ovs, refs, SID, LATER)
    assert ovs.commits == commits + 1
    assert ours(ovs, refs) == [{**ids, "vmsniff-expires": LATER} for ids in before]
    assert {n: ovs.lookup("Port", n).external_ids for n in FOREIGN_PORTS} == foreign
    assert {(op, col) for op, _t, _n, col in ovs.writes} == {("mutate", "external_ids")}


@pytest.mark.parametrize("change", ["removed", "rewritten"])
def test_renew_writes_nothing_when_a_row_is_no_longer_ours(change: str) -> None:
    ovs, p, refs = started()
    if change == "removed":
        ovs.run(ovs.del_port(p.tunnels[1].name))
    else:
        ovs.run(ovs.db_set("Mirror", p.mirrors[1].name, ("external_ids", {SESSION_KEY: "x"})))
    before = [ovs.tables[r.table].rows[r.uuid].external_ids
              for r in refs if r.uuid in ovs.tables[r.table].rows]  # fmt: skip
    with pytest.raises(Exception, match="vmsabcdef12-t|vmsniff-abcdef12-to-vm"):
        renew(ovs, refs, SID, LATER)
    after = [ovs.tables[r.table].rows[r.uuid].external_ids
             for r in refs if r.uuid in ovs.tables[r.table].rows]  # fmt: skip
    assert after == before  # the rows still ours kept their old expiry too


def test_renew_raises_when_the_database_does_not_answer() -> None:
    ovs, _p, refs = started()
    ovs.connected = False
    with pytest.raises(TimeoutException):
        renew(ovs, refs, SID, LATER)


def test_idl_ready_follows_the_connection() -> None:
    ovs = hypervisor()
    assert idl_ready(ovs)
    ovs.connected = False
    assert not idl_ready(ovs)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keeper_mod, "CHECK_INTERVAL_S", 0.01)
    monkeypatch.setattr(keeper_mod, "RENEW_RETRY_S", 0.01)


def wait_for(condition: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def keeper(ovs: FakeOvs, refs: list[RowRef], ttl: timedelta = timedelta(hours=1)) -> Keeper:
    return Keeper(ovs, refs, session=SID, bridge="br-int", ttl=ttl, clock=lambda: NOW)


@pytest.mark.usefixtures("fast")
def test_the_keeper_renews_the_expiry_while_the_session_runs() -> None:
    ovs, _p, refs = started()
    k = keeper(ovs, refs, ttl=timedelta(seconds=0.6)).start()  # renews every 0.2 s
    try:
        wait_for(lambda: k.renewed >= 2)
    finally:
        k.stop()
    assert {ids["vmsniff-expires"] for ids in ours(ovs, refs)} == {"2026-12-01T12:00:00Z"}
    assert k.lost is None and k.renew_error is None


@pytest.mark.usefixtures("fast")
def test_the_keeper_notices_lost_rows() -> None:
    ovs, p, refs = started()
    k = keeper(ovs, refs).start()
    try:
        time.sleep(0.05)
        assert k.lost is None
        ovs.run(ovs.del_port(p.tunnels[0].name))
        wait_for(lambda: k.lost is not None)
    finally:
        k.stop()
    assert k.lost == "its Port vmsabcdef12-f was removed"


@pytest.mark.usefixtures("fast")
def test_the_keeper_judges_nothing_while_the_database_is_away() -> None:
    ovs, p, refs = started()
    k = keeper(ovs, refs).start()
    try:
        ovs.connected = False  # the IDL reconnects: its copy of the tables is not whole
        port = ovs.lookup("Port", p.tunnels[0].name)
        del ovs.tables["Port"].rows[port.uuid]
        time.sleep(0.2)  # some 20 checks
        assert k.lost is None
        ovs.tables["Port"].rows[port.uuid] = port  # the copy is whole again
        ovs.connected = True
        time.sleep(0.1)
        assert k.lost is None and k._thread.is_alive()
    finally:
        k.stop()


@pytest.mark.usefixtures("fast")
def test_a_failed_renewal_is_retried_and_said(monkeypatch: pytest.MonkeyPatch) -> None:
    ovs, _p, refs = started()
    errors: list[str | None] = []
    real = keeper_mod.renew

    def flaky(*args: object, **kwargs: object) -> None:
        errors.append(k.renew_error)
        if len(errors) <= 2:
            raise TimeoutException("Commands exceeded timeout")
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(keeper_mod, "renew", flaky)
    k = keeper(ovs, refs, ttl=timedelta(seconds=0.6))
    k.start()
    try:
        wait_for(lambda: k.renewed >= 1)
    finally:
        k.stop()
    assert errors[:3] == [None, "Commands exceeded timeout", "Commands exceeded timeout"]
    assert k.renew_error is None and k.lost is None


@pytest.mark.usefixtures("fast")
def test_a_problem_seen_once_is_no_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reconnect refills the tables row by row: one odd look is not judged."""
    ovs, _p, refs = started()
    looks: list[str | None] = ["its Port vmsabcdef12-f was removed"]
    real = keeper_mod.check_rows
    monkeypatch.setattr(keeper_mod, "check_rows", lambda *a: looks.pop() if looks else real(*a))
    k = keeper(ovs, refs).start()
    try:
        wait_for(lambda: not looks)
        time.sleep(0.1)
    finally:
        k.stop()
    assert k.lost is None
