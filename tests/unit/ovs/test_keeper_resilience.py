"""A live session is not lost by one failed look at the tables, nor taken for a stale one."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from vmsniff.ovs import keeper as keeper_mod
from vmsniff.ovs.keeper import Keeper
from vmsniff.ovs.sessions import Session


def test_an_expired_session_whose_owner_runs_is_not_stale() -> None:
    assert not Session("s1", expired=True, alive=True).stale
    assert Session("s1", expired=True, alive=None).stale
    assert Session("s1", expired=False, alive=False).stale


def test_the_keeper_survives_an_exception_while_reading_the_tables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = {"n": 0}

    def flaky(*_args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("dictionary changed size during iteration")

    monkeypatch.setattr(keeper_mod, "idl_ready", lambda _api: True)
    monkeypatch.setattr(keeper_mod, "check_rows", flaky)
    monkeypatch.setattr(keeper_mod, "CHECK_INTERVAL_S", 0.01)
    k = Keeper(object(), [], session="s1", bridge="br-int", ttl=timedelta(hours=1)).start()
    try:
        time.sleep(0.3)
        assert k._thread.is_alive()  # one bad read did not end the watch
        assert calls["n"] > 2 and k.lost is None
    finally:
        k.stop()
