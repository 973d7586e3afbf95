"""Liveness marks: who owns a session and whether it still runs (judged only when sure)."""

from __future__ import annotations

import os

import pytest

from vmsniff.ovs.ownership import Host, liveness_ids, owner_alive, process_start

HERE = Host("hv1", "boot-a", "pid:[1]")


def marks(**over: str) -> dict[str, str]:
    ids = liveness_ids(detached=False, host=HERE, pid=os.getpid())
    ids.update(over)
    return ids


def test_this_process_has_a_start_time_and_is_alive() -> None:
    assert process_start(os.getpid()) is not None
    assert owner_alive(marks(), HERE) is True


def test_a_gone_or_reused_pid_is_dead() -> None:
    assert owner_alive(marks(), HERE, start_of=lambda pid: None) is False
    assert owner_alive(marks(), HERE, start_of=lambda pid: "1") is False  # reused pid


def test_only_this_host_boot_and_pid_namespace_judge() -> None:
    gone = {"start_of": lambda pid: None}
    assert owner_alive(marks(**{"vmsniff-host": "hv2"}), HERE, **gone) is None
    assert owner_alive(marks(**{"vmsniff-boot-id": "boot-b"}), HERE, **gone) is None
    assert owner_alive(marks(**{"vmsniff-pidns": "pid:[2]"}), HERE, **gone) is None
    assert owner_alive({}, HERE, **gone) is None  # rows of an older vmsniff


def test_detached_sessions_have_no_owner_to_judge() -> None:
    ids = liveness_ids(detached=True, host=HERE)
    assert ids == {"vmsniff-host": "hv1", "vmsniff-detached": "true"}
    assert owner_alive(ids, HERE, start_of=lambda pid: None) is None


def test_a_command_name_with_parentheses_and_spaces_is_skipped(tmp_path: object) -> None:
    # proc(5): fields are counted after the last ')' of the command name
    import vmsniff.ovs.ownership as own

    text = "42 (a) b) c) S " + " ".join(str(n) for n in range(4, 60))
    real = own._read
    try:
        own._read = lambda path: text  # type: ignore[assignment]
        assert process_start(42) == "22"
    finally:
        own._read = real  # type: ignore[assignment]


def test_a_row_expires_at_its_expiry_and_only_when_it_is_ours_and_readable() -> None:
    from datetime import UTC, datetime

    from vmsniff.ovs.ownership import is_expired

    at = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    ids = {"vmsniff-session": "s1", "vmsniff-expires": "2026-12-01T13:00:00Z"}
    assert is_expired(ids, at)
    assert not is_expired(ids, at.replace(second=0, minute=0, hour=12))
    assert not is_expired({**ids, "vmsniff-expires": "soon"}, at)
    assert not is_expired({"vmsniff-expires": "2026-12-01T13:00:00Z"}, at)  # not ours


def test_a_zombie_owner_is_dead(monkeypatch: pytest.MonkeyPatch) -> None:
    # proc(5): field 3 is the state; Z (zombie) has exited, it waits only to be reaped
    import vmsniff.ovs.ownership as own

    rest = " ".join(str(n) for n in range(4, 60))
    monkeypatch.setattr(own, "_read", lambda path: f"42 (vmsniff) S {rest}")
    assert process_start(42) == "22"
    ids = marks(**{"vmsniff-pid": "42", "vmsniff-pid-start": "22"})
    assert owner_alive(ids, HERE) is True
    monkeypatch.setattr(own, "_read", lambda path: f"42 (vmsniff) Z {rest}")
    assert process_start(42) is None
    assert owner_alive(ids, HERE) is False
