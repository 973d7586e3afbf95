"""Durations as operators type them: ``30``, ``30s``, ``10m``, ``1h30m``, ``2d``.

Every duration option (``--duration``, ``--ttl``) goes through :func:`parse_duration`, so
one upper bound holds for all of them: ``MAX_DURATION``. Without it ``--ttl 99999999h``
overflowed the expiry timestamp (an OverflowError traceback) and ``--duration 99999999h``
ran a mirror for 11 000 years; a year is longer than any capture or mirror an operator
means, so anything beyond is taken for a typo.
"""

from __future__ import annotations

import re
from datetime import timedelta

from vmsniff.errors import UsageError

__all__ = ["MAX_DURATION", "MAX_DURATION_TEXT", "parse_duration"]

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = timedelta(days=365)  #: the longest duration any option accepts
MAX_DURATION_TEXT = "365d"  #: MAX_DURATION as users type it (in messages and --help)


def parse_duration(text: str, option: str = "--duration") -> timedelta:
    """Parse ``text``; a bare number is seconds. Raises UsageError naming ``option``
    when ``text`` is not a duration, is zero, or exceeds ``MAX_DURATION``."""
    value = text.strip().lower()
    pos, total = 0, 0.0
    while pos < len(value):
        match = _PART.match(value, pos)
        if not match:
            break
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if not value or pos != len(value) or total <= 0:
        raise UsageError(
            f"{option} {text!r} is not a duration", hint="examples: 30, 30s, 10m, 1h30m, 2d"
        )
    # float('9' * 400) is inf: compare before timedelta() can overflow on it
    if total > MAX_DURATION.total_seconds():
        raise UsageError(
            f"{option} {text!r} is longer than the maximum, {MAX_DURATION_TEXT}",
            hint=f"give at most {MAX_DURATION_TEXT} (e.g. 1h, 7d)",
        )
    return timedelta(seconds=total)
