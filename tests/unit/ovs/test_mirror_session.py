"""vmsniff.mirror's workflow on a fake switch: start, stop, list and cleanup.

(These test vmsniff/mirror.py and belong in tests/unit/test_mirror.py by the mirroring rule;
they sit here with the fake switch's other tests for now.)
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.ovs.helpers import (
    FOREIGN_MIRRORS,
    FOREIGN_PORTS,
    NIC,
    SERVER,
    SID,
    hypervisor,
    plan,
    vswitchd,
)
from vmsniff import mirror as mirror_mod
from vmsniff.errors import NotFound, SessionLost, SwitchError, Unreachable, UsageError
from vmsniff.mirror import MirrorSession, cleanup, list_sessions
from vmsniff.model import Direction
from vmsniff.ovs import apply as apply_mod
from vmsniff.ovs.apply import apply_plan
from vmsniff.ovs.fake import FakeOvs
from vmsniff.ovs.ownership import liveness_ids
from vmsniff.ovs.plan import MirrorOptions

REMOTE = "tcp:192.0.2.1:6640"  # never connected to: the fake stands in for it
OLD = "0000aaaa-0000-4000-8000-000000000000"  #: expired, its owner unknown: stale
LIVE = "0000bbbb-0000-4000-8000-000000000000"  #: not expired
BROKEN = "0000cccc-0000-4000-8000-000000000000"  #: not expired, but orphaned


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        mirror_mod, "wait_tunnels", functools.partial(apply_mod.wait_tunnels, timeout=0.2)
    )
    monkeypatch.setattr(
        mirror_mod, "wait_egress", functools.partial(apply_mod.wait_egress, timeout=0.2)
    )
    monkeypatch.setattr(mirror_mod, "TEARDOWN_WAIT_S", 0.1)


def now() -> datetime:
    return datetime.now(UTC)


def three_sessions() -> FakeOvs:
    ovs = hypervisor()
    apply_plan(ovs, plan(session=OLD, now=now() - timedelta(hours=2), key=1 << 25))
    apply_plan(ovs, plan(session=LIVE, now=now(), key=1 << 26))
    broken = plan(Direction.FROM_VM, session=BROKEN, now=now(), key=1 << 27)
    apply_plan(ovs, broken)
    ovs.run(ovs.del_port(broken.tunnels[0].name))  # its mirror lost its output port
    return ovs


def ids(ovs: FakeOvs) -> list[str]:
    return sorted(s.id for s in list_sessions(REMOTE, ovs))


def test_list_sessions_reads_the_given_switch() -> None:
    assert ids(three_sessions()) == sorted([OLD, LIVE, BROKEN])


def test_cleanup_expired_removes_stale_and_orphaned_sessions_only() -> None:
    ovs = three_sessions()
    report = cleanup(REMOTE, expired=True, backend=ovs)
    assert sorted(s.id for s in report.removed) == sorted([OLD, BROKEN]) and report.kept == 1
    assert ids(ovs) == [LIVE]
    assert ovs.names("Mirror") - FOREIGN_MIRRORS == {
        "vmsniff-0000bbbb-from-vm",
        "vmsniff-0000bbbb-to-vm",
    }
    assert ovs.names("Port") - FOREIGN_PORTS == {"vms0000bbbb-f", "vms0000bbbb-t"}
    assert FOREIGN_PORTS <= ovs.names("Port") and FOREIGN_MIRRORS <= ovs.names("Mirror")


def test_cleanup_selects_by_id_prefix_or_vm_and_dry_run_removes_nothing() -> None:
    ovs = three_sessions()
    report = cleanup(REMOTE, sessions=["0000bb"], dry_run=True, backend=ovs)
    assert [s.id for s in report.removed] == [LIVE] and report.dry_run
    assert len(ids(ovs)) == 3
    cleanup(REMOTE, sessions=["0000bb"], backend=ovs)
    assert ids(ovs) == sorted([OLD, BROKEN])
    cleanup(REMOTE, vm=SERVER.id, backend=ovs)
    assert ids(ovs) == []
    assert ovs.names("Port") == FOREIGN_PORTS and ovs.names("Mirror") == FOREIGN_MIRRORS


def test_cleanup_of_an_unknown_session_removes_nothing() -> None:
    ovs = three_sessions()
    with pytest.raises(NotFound, match="session 9999"):
        cleanup(REMOTE, sessions=["0000bb", "9999"], backend=ovs)
    with pytest.raises(NotFound, match="--vm nobody"):
        cleanup(REMOTE, vm="nobody", everything=True, backend=ovs)
    with pytest.raises(NotFound):
        cleanup(REMOTE, sessions=["000"], backend=ovs)  # too short to be a prefix
    assert len(ids(ovs)) == 3


def test_cleanup_everything_leaves_foreign_rows() -> None:
    ovs = three_sessions()
    assert len(cleanup(REMOTE, everything=True, backend=ovs).removed) == 3
    assert ovs.names("Port") == FOREIGN_PORTS and ovs.names("Mirror") == FOREIGN_MIRRORS
    assert {r.name for r in ovs.lookup("Bridge", "br-int").mirrors} == FOREIGN_MIRRORS


OPTS = MirrorOptions(to="192.0.2.10")


@pytest.fixture
def switch() -> FakeOvs:
    ovs = three_sessions()
    ovs.add_port("br-tun", "eth1", type="system", mtu=1500)
    vswitchd(ovs)
    return ovs


@pytest.fixture
def session(switch: FakeOvs) -> Iterator[MirrorSession]:
    with MirrorSession(REMOTE, switch) as s:
        yield s


def test_prepare_removes_stale_sessions_on_the_bridge_then_plans(
    switch: FakeOvs, session: MirrorSession
) -> None:
    p, removed = session.prepare(SERVER, NIC, OPTS)
    assert removed == [OLD] and session.removed_why == {OLD: "expired"}
    assert ids(switch) == sorted([LIVE, BROKEN])  # the orphan is cleanup's to judge
    assert p.bridge == "br-int" and p.vm_port == NIC.ovs_port
    assert not {p.keys["from-vm"], p.keys["to-vm"]} & {1 << 25, 1 << 26, (1 << 26) + 1}


def test_prepare_refuses_this_switchs_own_tunnel_endpoint(session: MirrorSession) -> None:
    with pytest.raises(UsageError, match="own tunnel endpoint"):
        session.prepare(SERVER, NIC, MirrorOptions(to="10.0.0.1"))


def test_start_and_stop_leave_the_switch_as_it_was(switch: FakeOvs) -> None:
    before = {t: switch.names(t) for t in ("Port", "Interface", "Mirror")}
    with MirrorSession(REMOTE, switch) as s:
        p, _ = s.prepare(SERVER, NIC, OPTS)
        before = {t: switch.names(t) for t in ("Port", "Interface", "Mirror")}
        started = s.start(p, NIC, None)
        assert [st.egress_iface for st in started.tunnels] == ["eth1", "eth1"]
        assert started.warnings and "MTU 1500" in started.warnings[0]  # 1518 + 28 > 1500
        assert s.keeper is not None and s.lost is None
        (mine,) = [x for x in list_sessions(REMOTE, switch) if x.id == p.session]
        assert mine.pid is not None and mine.alive is True and not mine.stale
        s.check()
    assert {t: switch.names(t) for t in ("Port", "Interface", "Mirror")} == before
    assert s.keeper is not None and not s.keeper._thread.is_alive()


def test_a_detached_session_stays(switch: FakeOvs) -> None:
    with MirrorSession(REMOTE, switch) as s:
        p, _ = s.prepare(SERVER, NIC, OPTS)
        s.start(p, NIC, None, detach=True)
        assert s.keeper is None
    (mine,) = [x for x in list_sessions(REMOTE, switch) if x.id == p.session]
    assert mine.detached and mine.alive is None


@pytest.mark.parametrize(
    ("egress", "error"),
    [("", "did not come up"), (None, "no route to --to"), ("lo", "it is this host")],
)
def test_a_tunnel_that_cannot_work_is_removed_again(egress: str | None, error: str) -> None:
    ovs = hypervisor()
    if egress != "":  # "": no ovs-vswitchd gives the tunnels an OpenFlow port
        vswitchd(ovs, egress=egress)
    before = {t: ovs.names(t) for t in ("Port", "Interface", "Mirror")}
    with MirrorSession(REMOTE, ovs) as s:
        p, _ = s.prepare(SERVER, NIC, OPTS)
        with pytest.raises((SwitchError, UsageError), match=error):
            s.start(p, NIC, None, detach=True)
    assert {t: ovs.names(t) for t in ("Port", "Interface", "Mirror")} == before


def test_a_lost_session_says_so(switch: FakeOvs) -> None:
    with MirrorSession(REMOTE, switch) as s:
        p, _ = s.prepare(SERVER, NIC, OPTS)
        s.start(p, NIC, None)
        assert s.keeper is not None
        s.keeper.lost = "its Port vms-x was removed"
        with pytest.raises(SessionLost, match="its Port vms-x was removed"):
            s.check()


def test_stop_without_the_database_says_the_rows_remain(switch: FakeOvs) -> None:
    s = MirrorSession(REMOTE, switch).__enter__()
    p, _ = s.prepare(SERVER, NIC, OPTS)
    s.start(p, NIC, None)
    switch.connected = False
    with pytest.raises(Unreachable, match="rows remain") as info:
        s.stop()
    assert f"vmsniff cleanup {p.session}" in (info.value.hint or "")
    switch.connected = True
    s.stop()
    assert p.session not in ids(switch)


def test_the_owner_marks_make_a_killed_session_dead() -> None:
    ovs = hypervisor()
    marks = {**liveness_ids(detached=False), "vmsniff-pid-start": "1"}  # another process
    apply_plan(ovs, mirror_mod.with_marks(plan(session=SID, now=now()), marks))
    (s,) = list_sessions(REMOTE, ovs)
    assert s.dead and s.stale
    assert [x.id for x in cleanup(REMOTE, expired=True, backend=ovs).removed] == [SID]


def test_stop_waits_for_the_database_to_come_back(
    switch: FakeOvs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mirror_mod, "TEARDOWN_WAIT_S", 3.0)
    with MirrorSession(REMOTE, switch) as s:
        p, _ = s.prepare(SERVER, NIC, OPTS)
        s.start(p, NIC, None)
        switch.connected = False  # an ovsdb-server restart
        threading.Timer(0.2, lambda: setattr(switch, "connected", True)).start()
    assert p.session not in ids(switch)
