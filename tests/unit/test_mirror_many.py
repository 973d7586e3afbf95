"""SpreadSession on fake switches: one session over several hosts, all or nothing."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tests.unit.ovs.helpers import FOREIGN_MIRRORS, FOREIGN_PORTS, NIC, hypervisor, vswitchd
from vmsniff import mirror as mirror_mod
from vmsniff.errors import SessionLost, SwitchError, Unreachable
from vmsniff.mirror_many import SpreadSession
from vmsniff.model import Server
from vmsniff.ovs import apply as apply_mod
from vmsniff.ovs.fake import FakeOvs
from vmsniff.ovs.plan import MirrorOptions
from vmsniff.ovs.spread import Member

HOSTS = ("compute-1", "compute-2", "compute-3")


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("wait_tunnels", "wait_egress"):
        monkeypatch.setattr(
            mirror_mod, name, functools.partial(getattr(apply_mod, name), timeout=0.2)
        )
    monkeypatch.setattr(mirror_mod, "TEARDOWN_WAIT_S", 0.1)


def switches(egress: dict[str, str | None] | None = None) -> dict[str, FakeOvs]:
    out = {}
    for host in HOSTS:
        ovs = hypervisor()
        vswitchd(ovs, egress=(egress or {}).get(host, "eth1"))
        out[host] = ovs
    return out


def members() -> list[Member]:
    return [
        Member(Server(id=f"id-{i}", name=f"vm{i}", host=host), NIC, f"vm{i}/eth0", host)
        for i, host in enumerate(HOSTS)
    ]


def remotes() -> dict[str, str]:
    return {h: f"unix:/nonexistent/{h}/db.sock" for h in HOSTS}


def ours(ovs: FakeOvs) -> set[str]:
    return {n for n in ovs.names("Port") | ovs.names("Mirror") if n.startswith("vms")}


def untouched(ovs: FakeOvs) -> bool:
    return (
        not ours(ovs)
        and FOREIGN_PORTS <= ovs.names("Port")
        and FOREIGN_MIRRORS <= ovs.names("Mirror")
    )


OPTS = MirrorOptions(to="192.0.2.10")


def test_one_session_on_every_host_then_nothing_anywhere() -> None:
    fakes = switches()
    with SpreadSession(remotes(), fakes) as spread:
        plan = spread.prepare(members(), OPTS)
        started = spread.start(plan, members(), None)
        assert list(started) == list(HOSTS)
        for host, ovs in fakes.items():
            assert len(ours(ovs)) == 4, host
            marks = [dict(r.external_ids) for r in ovs.tables["Mirror"].rows.values()]
            sids = {m["vmsniff-session"] for m in marks if "vmsniff-session" in m}
            assert sids == {plan.session}
        spread.check()
    assert all(untouched(ovs) for ovs in fakes.values())


@pytest.mark.parametrize("detach", [False, True])
def test_a_host_refusing_the_transaction_leaves_nothing_on_the_others(detach: bool) -> None:
    fakes = switches()
    fakes["compute-3"].fail_next(RuntimeError("constraint violation"))
    with pytest.raises(SwitchError, match=r"^host compute-3: .*nothing was left on any host"):
        with SpreadSession(remotes(), fakes) as spread:
            spread.start(spread.prepare(members(), OPTS), members(), None, detach=detach)
    assert all(untouched(ovs) for ovs in fakes.values())


def test_a_host_whose_tunnel_has_no_route_undoes_every_host() -> None:
    fakes = switches({"compute-2": None})
    with pytest.raises(SwitchError, match=r"^host compute-2: Open vSwitch has no route"):
        with SpreadSession(remotes(), fakes) as spread:
            spread.start(spread.prepare(members(), OPTS), members(), None)
    assert all(untouched(ovs) for ovs in fakes.values())


def test_an_unreachable_host_is_named_before_any_change() -> None:
    fakes = switches()
    del fakes["compute-2"]  # its remote is a socket that does not exist
    with pytest.raises(Unreachable, match=r"^host compute-2: .*nothing was changed on any host"):
        with SpreadSession(remotes(), fakes) as spread:
            spread.start(spread.prepare(members(), OPTS), members(), None)
    assert all(untouched(ovs) for ovs in fakes.values())


def test_a_stop_between_hosts_undoes_the_first() -> None:
    fakes = switches()
    calls = iter([False, True])
    with pytest.raises(KeyboardInterrupt):
        with SpreadSession(remotes(), fakes) as spread:
            spread.start(
                spread.prepare(members(), OPTS), members(), None, stopped=lambda: next(calls)
            )
    assert all(untouched(ovs) for ovs in fakes.values())


def test_rows_removed_on_one_host_lose_the_whole_session_naming_it() -> None:
    fakes = switches()
    with SpreadSession(remotes(), fakes) as spread:
        spread.start(spread.prepare(members(), OPTS), members(), None)
        keeper = spread.hosts["compute-2"].keeper
        assert keeper is not None
        keeper.lost = "its Mirror x was removed"
        with pytest.raises(SessionLost, match="^host compute-2: session"):
            spread.check()
    assert all(untouched(ovs) for ovs in fakes.values())


def test_detached_sessions_stay_on_every_host(tmp_path: Path) -> None:
    fakes = switches()
    with SpreadSession(remotes(), fakes) as spread:
        spread.start(spread.prepare(members(), OPTS), members(), None, detach=True)
    assert all(len(ours(ovs)) == 4 for ovs in fakes.values())
