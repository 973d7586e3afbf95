"""Ownership marks on every OVS row vmsniff creates (DESIGN.md contract 1).

``external_ids`` keys: ``vmsniff-session`` (uuid), ``vmsniff-vm`` (server name and id),
``vmsniff-owner`` (user@host), ``vmsniff-created`` and ``vmsniff-expires`` (RFC 3339 UTC),
``vmsniff-reason`` when given, plus ``vmsniff-role`` (which part of the session the row is)
and ``vmsniff-nic``. Rows without ``vmsniff-session`` are never touched by vmsniff.

Liveness marks (:func:`liveness_ids`) say who keeps a session alive, so that a session whose
process died (``kill -9``) is not taken for a live one until its expiry: ``vmsniff-host``,
and for a foreground session ``vmsniff-pid``, ``vmsniff-pid-start`` (field 22 of
``/proc/PID/stat``: a reused pid has another start time), ``vmsniff-boot-id`` (pids and start
times restart at boot) and ``vmsniff-pidns`` (a pid means something only in its namespace);
a ``--detach`` session has no owning process and says so with ``vmsniff-detached=true``.
:func:`owner_alive` answers only when it can be sure; otherwise the expiry decides.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "LIVENESS_KEYS",
    "SESSION_KEY",
    "Host",
    "liveness_ids",
    "owner_alive",
    "process_start",
    "this_host",
    "is_ours",
    "is_expired",
    "owner",
    "ownership_ids",
    "parse_time",
    "rfc3339",
]

SESSION_KEY = "vmsniff-session"
#: the marks :func:`liveness_ids` may add (a row restored by vmsniff loses all of them)
LIVENESS_KEYS = (
    "vmsniff-host", "vmsniff-detached", "vmsniff-pid", "vmsniff-pid-start", "vmsniff-boot-id",
    "vmsniff-pidns",
)  # fmt: skip


def rfc3339(moment: datetime) -> str:
    """``2026-12-01T21:00:00Z``: UTC, second precision."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """The inverse of :func:`rfc3339`; None for a missing or unreadable value."""
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def owner() -> str:
    """``user@host`` of whoever runs vmsniff (the sudo caller when run through sudo)."""
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"{user}@{socket.gethostname()}"


def ownership_ids(
    *,
    session: str,
    vm_name: str,
    vm_id: str,
    now: datetime,
    ttl: timedelta,
    reason: str | None,
    role: str,
    nic: str,
    who: str | None = None,
) -> dict[str, str]:
    """The external_ids for one row of a session."""
    ids = {
        SESSION_KEY: session,
        "vmsniff-vm": f"{vm_name} ({vm_id})",
        "vmsniff-owner": who or owner(),
        "vmsniff-created": rfc3339(now),
        "vmsniff-expires": rfc3339(now + ttl),
        "vmsniff-role": role,
        "vmsniff-nic": nic,
    }
    if reason:
        ids["vmsniff-reason"] = reason
    return ids


def is_ours(external_ids: Mapping[str, str]) -> bool:
    """Whether a row carries vmsniff's ownership marks."""
    return bool(external_ids.get(SESSION_KEY))


def is_expired(external_ids: Mapping[str, str], now: datetime) -> bool:
    """A vmsniff row whose expiry has passed (a row without a readable expiry is not)."""
    expires = parse_time(external_ids.get("vmsniff-expires"))
    return is_ours(external_ids) and expires is not None and expires <= now


@dataclass(frozen=True, slots=True)
class Host:
    """What tells this machine and this boot apart: hostname, boot id, pid namespace."""

    hostname: str
    boot_id: str | None
    pidns: str | None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def this_host() -> Host:
    """The host, boot and pid namespace this process runs in."""
    try:
        pidns: str | None = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = None
    return Host(socket.gethostname(), _read("/proc/sys/kernel/random/boot_id"), pidns)


#: States of field 3 of ``/proc/PID/stat`` whose process has exited (proc(5)): a zombie
#: waits only to be reaped and will never remove its session's rows.
_EXITED_STATES = frozenset("ZXx")


def process_start(pid: int) -> str | None:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks after boot); None if gone,
    or exited and not yet reaped (a zombie).

    The command name (field 2) may hold spaces and parentheses: fields are counted after
    its last ``)`` (proc(5)).
    """
    text = _read(f"/proc/{pid}/stat")
    if text is None or ")" not in text:
        return None
    fields = text[text.rindex(")") + 1 :].split()  # fields 3, 4, ...
    if not fields or fields[0] in _EXITED_STATES:
        return None
    return fields[22 - 3] if len(fields) > 22 - 3 else None


def liveness_ids(
    *, detached: bool, host: Host | None = None, pid: int | None = None
) -> dict[str, str]:
    """The marks that let a later run on this host tell whether the session's owner lives."""
    host = host or this_host()
    ids = {"vmsniff-host": host.hostname}
    if detached:
        ids["vmsniff-detached"] = "true"
        return ids
    pid = os.getpid() if pid is None else pid
    start = process_start(pid)
    if start is None or host.boot_id is None or host.pidns is None:
        return ids  # cannot be judged later: expiry alone will decide
    ids.update(
        {
            "vmsniff-pid": str(pid),
            "vmsniff-pid-start": start,
            "vmsniff-boot-id": host.boot_id,
            "vmsniff-pidns": host.pidns,
        }
    )
    return ids


def owner_alive(
    ids: Mapping[str, str],
    host: Host,
    start_of: Callable[[int], str | None] = process_start,
) -> bool | None:
    """Whether the process that owns a session still runs: True, False, or None (cannot tell).

    Only a row made on this host, in this boot and pid namespace, by a foreground session is
    judged; a detached session, one of another host (or of an earlier boot: a hostname may
    be shared, a boot id is not) or of an older vmsniff without the marks gives None.
    """
    pid = ids.get("vmsniff-pid", "")
    if ids.get("vmsniff-detached") == "true" or not pid.isdigit():
        return None
    same = (
        ids.get("vmsniff-host") == host.hostname
        and host.boot_id is not None
        and ids.get("vmsniff-boot-id") == host.boot_id
        and host.pidns is not None
        and ids.get("vmsniff-pidns") == host.pidns
    )
    if not same:
        return None
    return start_of(int(pid)) == ids.get("vmsniff-pid-start")
