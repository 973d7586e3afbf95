"""Durations as operators type them: ``30``, ``30s``, ``10m``, ``1h30m``, ``2d``."""

from __future__ import annotations

import re
from datetime import timedelta

from vmsniff.errors import UsageError

__all__ = ["parse_duration"]

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str = "--duration") -> timedelta:
    """Parse ``text``; a bare number is seconds. Raises UsageError naming ``option``."""
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
    return timedelta(seconds=total)
