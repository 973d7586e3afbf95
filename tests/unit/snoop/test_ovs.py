"""--ovs redirection and its restore, on an in-memory Controller table."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

import pytest

from vmsniff.errors import InvalidState, NotFound, UsageError
from vmsniff.snoop.ovs import (
    TARGET_KEY,
    VIA_KEY,
    ControllerRow,
    plan_upstream,
    redirect_bridge,
    restore_abandoned,
)
from vmsniff.snoop.session import Endpoint

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


class FakeControllers:
    """Bridges -> Controller rows, changed only through :meth:`change` (one 'transaction')."""

    def __init__(self, bridges: dict[str, list[tuple[str, dict[str, str]]]]) -> None:
        self.rows: dict[str, ControllerRow] = {}
        self.bridges: dict[str, list[str]] = {}
        for bridge, targets in bridges.items():
            self.bridges[bridge] = []
            for target, ids in targets:
                uuid = f"uuid-{len(self.rows)}"
                self.rows[uuid] = ControllerRow(uuid, target, dict(ids), bridge)
                self.bridges[bridge].append(uuid)
        self.transactions = 0

    def controllers(self, bridge: str) -> list[ControllerRow]:
        if bridge not in self.bridges:
            raise NotFound(f"no bridge {bridge}")
        return [self.rows[u] for u in self.bridges[bridge]]

    def marked(self) -> list[ControllerRow]:
        return [r for r in self.rows.values() if TARGET_KEY in r.external_ids]

    def change(self, changes: list[tuple[str, str | None, dict[str, str], list[str]]]) -> None:
        self.transactions += 1
        for uuid, target, add, remove in changes:
            row = self.rows[uuid]
            ids = {k: v for k, v in row.external_ids.items() if k not in remove}
            for k, v in add.items():
                ids.setdefault(k, v)  # ovsdb map insert: an existing key is kept
            self.rows[uuid] = ControllerRow(uuid, target or row.target, ids, row.bridge)

    def target(self, bridge: str) -> list[str]:
        return [self.rows[u].target for u in self.bridges[bridge]]


@pytest.fixture
def upstream() -> tuple[str, int]:
    return ("127.0.0.1", 6633)


def test_targets_are_planned_or_refused() -> None:
    assert plan_upstream("tcp:127.0.0.1:6633") == (Endpoint("127.0.0.1", 6633), False)
    assert plan_upstream("ssl:10.0.0.1") == (Endpoint("10.0.0.1", 6653), True)
    assert plan_upstream("tcp:[::1]:6653") == (Endpoint("::1", 6653), False)
    for passive in ("ptcp:6653", "punix:/x", "unix:/var/run/x.sock", "pssl:1"):
        with pytest.raises(UsageError, match="only tcp: and ssl:"):
            plan_upstream(passive)


def test_redirect_marks_and_restore_puts_back_exactly() -> None:
    fake = FakeControllers({"br-int": [("tcp:127.0.0.1:6633", {"theirs": "1"})],
                            "br-x": [("tcp:10.0.0.9:6653", {})]})  # fmt: skip
    routes, redirect = redirect_bridge("br-int", None, None, None, ttl=600, backend=fake, now=NOW)
    try:
        (row,) = fake.controllers("br-int")
        port = routes[0].listener.getsockname()[1]
        assert row.target == f"tcp:127.0.0.1:{port}"
        assert routes[0].upstream == (socket.AF_INET, ("127.0.0.1", 6633))
        ids = row.external_ids
        assert ids[TARGET_KEY] == "tcp:127.0.0.1:6633" and ids[VIA_KEY] == row.target
        assert ids["vmsniff-expires"] == "2026-12-03T08:10:00Z" and ids["theirs"] == "1"
        assert fake.target("br-x") == ["tcp:10.0.0.9:6653"]
        assert fake.transactions == 1
    finally:
        for r in routes:
            r.listener.close()
    assert redirect.restore() == ["tcp:127.0.0.1:6633"]
    (row,) = fake.controllers("br-int")
    assert row.target == "tcp:127.0.0.1:6633" and row.external_ids == {"theirs": "1"}
    assert redirect.restore() == []  # once


def test_a_target_changed_meanwhile_is_left_alone_but_unmarked() -> None:
    fake = FakeControllers({"br0": [("tcp:127.0.0.1:6633", {})]})
    routes, redirect = redirect_bridge("br0", None, None, None, ttl=600, backend=fake, now=NOW)
    routes[0].listener.close()
    fake.change([("uuid-0", "tcp:192.0.2.1:6653", {}, [])])  # an operator's set-controller
    logs: list[str] = []
    redirect.log = logs.append
    assert redirect.restore() == []
    assert fake.target("br0") == ["tcp:192.0.2.1:6653"]
    assert fake.rows["uuid-0"].external_ids == {}
    assert "someone else" in logs[0]


def test_refusals_change_nothing() -> None:
    fake = FakeControllers({"empty": [], "passive": [("tcp:1.2.3.4:1", {}), ("ptcp:6653", {})],
                            "tls": [("ssl:127.0.0.1:6653", {})]})  # fmt: skip
    with pytest.raises(InvalidState, match="no controller"):
        redirect_bridge("empty", None, None, None, ttl=60, backend=fake)
    with pytest.raises(NotFound):
        redirect_bridge("nope", None, None, None, ttl=60, backend=fake)
    with pytest.raises(UsageError, match="only tcp: and ssl:"):
        redirect_bridge("passive", None, None, None, ttl=60, backend=fake)
    with pytest.raises(UsageError, match="uses TLS"):
        redirect_bridge("tls", None, None, None, ttl=60, backend=fake)
    assert fake.transactions == 0
    assert fake.target("passive") == ["tcp:1.2.3.4:1", "ptcp:6653"]


def test_two_snoops_on_two_bridges_and_a_second_on_the_same_bridge() -> None:
    fake = FakeControllers({"a": [("tcp:127.0.0.1:1", {})], "b": [("tcp:127.0.0.1:2", {})]})
    ra, snoop_a = redirect_bridge("a", None, None, None, ttl=60, backend=fake, now=NOW)
    rb, snoop_b = redirect_bridge("b", None, None, None, ttl=60, backend=fake, now=NOW)
    with pytest.raises(InvalidState, match="already redirected"):
        redirect_bridge("a", None, None, None, ttl=60, backend=fake, now=NOW)
    for r in ra + rb:
        r.listener.close()
    assert snoop_a.restore() == ["tcp:127.0.0.1:1"]
    assert fake.target("b") != ["tcp:127.0.0.1:2"]  # b's snoop still runs
    assert snoop_b.restore() == ["tcp:127.0.0.1:2"]


def _as_if(fake: FakeControllers, **ids: str) -> None:
    """Rewrite the marks of every redirected row (another host's snoop, a dead one)."""
    for row in fake.rows.values():
        if row.external_ids:
            row.external_ids.update(ids)
            for key in [k for k, v in ids.items() if v == ""]:
                del row.external_ids[key]


def test_a_dead_snoops_redirection_is_restored_at_once() -> None:
    fake = FakeControllers({"a": [("tcp:127.0.0.1:1", {})]})
    routes, _crashed = redirect_bridge("a", None, None, None, ttl=60, backend=fake, now=NOW)
    routes[0].listener.close()
    assert fake.rows["uuid-0"].external_ids["vmsniff-pid"] == str(os.getpid())
    # its owner (this process) runs: kept, even past the expiry
    assert restore_abandoned(backend=fake, now=NOW + timedelta(hours=2)) == []
    _as_if(fake, **{"vmsniff-pid-start": "1"})  # the pid now belongs to another process
    assert restore_abandoned(backend=fake, now=NOW + timedelta(seconds=1)) == ["tcp:127.0.0.1:1"]
    assert fake.target("a") == ["tcp:127.0.0.1:1"] and fake.rows["uuid-0"].external_ids == {}


def test_another_hosts_redirection_is_restored_once_expired() -> None:
    fake = FakeControllers({"a": [("tcp:127.0.0.1:1", {})]})
    routes, _crashed = redirect_bridge("a", None, None, None, ttl=60, backend=fake, now=NOW)
    routes[0].listener.close()
    _as_if(fake, **{"vmsniff-host": "elsewhere"})  # cannot be judged here: expiry decides
    assert restore_abandoned(backend=fake, now=NOW + timedelta(seconds=30)) == []
    assert restore_abandoned(backend=fake, now=NOW + timedelta(seconds=61)) == ["tcp:127.0.0.1:1"]
    assert fake.target("a") == ["tcp:127.0.0.1:1"] and fake.rows["uuid-0"].external_ids == {}
    # and a new snoop cleans abandoned ones before it starts
    routes, _crashed = redirect_bridge("a", None, None, None, ttl=60, backend=fake, now=NOW)
    routes[0].listener.close()
    _as_if(fake, **{"vmsniff-host": "elsewhere"})
    routes, fresh = redirect_bridge("a", None, None, None, ttl=60, backend=fake,
                                    now=NOW + timedelta(hours=1))  # fmt: skip
    routes[0].listener.close()
    assert fresh.restore() == ["tcp:127.0.0.1:1"]
