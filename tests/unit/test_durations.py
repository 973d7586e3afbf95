"""vmsniff.durations: what operators type, and the one upper bound of every duration option."""

from __future__ import annotations

from datetime import timedelta

import pytest

from vmsniff.durations import MAX_DURATION, parse_duration
from vmsniff.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("30s", 30), ("10m", 600), ("1h30m", 5400), ("2d", 172800), ("365d", 31536000)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0", "x", "10q", "-5", "1h-"])
def test_not_a_duration(text: str) -> None:
    with pytest.raises(UsageError, match="--ttl .* is not a duration"):
        parse_duration(text, "--ttl")


@pytest.mark.parametrize("text", ["365d1s", "99999999h", "9" * 400, "9" * 400 + "d"])
def test_longer_than_the_maximum_is_a_usage_error_naming_it(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration(text, "--ttl")
    assert caught.value.message.startswith("--ttl ")
    assert "longer than the maximum, 365d" in caught.value.message
    assert MAX_DURATION == timedelta(days=365)
