"""MirrorSession.hold: the foreground wait of `vmsniff mirror`, without a switch."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from vmsniff.errors import SessionLost
from vmsniff.mirror import MirrorSession


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.1
        return self.now


def _session() -> MirrorSession:
    return MirrorSession("unix:/nonexistent")  # not entered: nothing connects


def test_duration_ends_it_and_ticks_report_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)
    ticks: list[tuple[float, int, int]] = []
    why = _session().hold(duration=1.0, signalled=lambda: None, clock=_Clock(),
                          on_tick=lambda *t: ticks.append(t))  # fmt: skip
    assert why == "duration"
    assert ticks and all(t[1:] == (0, 0) for t in ticks)


@pytest.mark.parametrize(
    ("signum", "why"),
    [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")],
)
def test_a_signal_ends_it_by_name(signum: int, why: str) -> None:
    assert _session().hold(duration=None, signalled=lambda: signum) == why


def test_lost_rows_raise_session_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)
    session = _session()
    session.plan = type("Plan", (), {"session": "abcd1234", "mirrors": ()})()  # type: ignore[assignment]
    keeper: Any = type("Keeper", (), {"lost": "its Mirror row was deleted"})()
    session.keeper = keeper
    with pytest.raises(SessionLost, match="abcd1234 was lost"):
        session.hold(duration=None, signalled=lambda: None)
