"""Ownership marks on every OVS row vmsniff creates (DESIGN.md contract 1).

``external_ids`` keys: ``vmsniff-session`` (uuid), ``vmsniff-vm`` (server name and id),
``vmsniff-owner`` (user@host), ``vmsniff-created`` and ``vmsniff-expires`` (RFC 3339 UTC),
``vmsniff-reason`` when given, plus ``vmsniff-role`` (which part of the session the row is)
and ``vmsniff-nic``. Rows without ``vmsniff-session`` are never touched by vmsniff.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

__all__ = [
    "SESSION_KEY",
    "is_ours",
    "is_expired",
    "owner",
    "ownership_ids",
    "parse_time",
    "rfc3339",
]

SESSION_KEY = "vmsniff-session"


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
