"""Helpers shared by the wall-clock benchmarks (bench/cli_help.py, bench/resolve.py)."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar


class Timed(Protocol):
    samples_ms: list[float]


T = TypeVar("T", bound=Timed)


def sample_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """Median, p90 (nearest rank) and minimum of some milliseconds."""
    ordered = sorted(samples_ms)
    p90_index = max(0, round(0.9 * len(ordered) + 0.5) - 1)  # nearest-rank percentile
    return {
        "median_ms": statistics.median(ordered),
        "p90_ms": ordered[min(p90_index, len(ordered) - 1)],
        "min_ms": ordered[0],
    }


def rounds(items: Sequence[T], runs: int, warmup: int, time_one: Callable[[T], float]) -> None:
    """``warmup`` discarded rounds, then ``runs`` rounds, each item once per round (so that a
    noisy moment hits every item alike); fills each item's ``samples_ms``."""
    for round_number in range(warmup + runs):
        for item in items:
            elapsed = time_one(item)
            if round_number >= warmup:
                item.samples_ms.append(elapsed)


def importtime_lines(stderr: str) -> Iterator[tuple[int, int, str]]:
    """``(self µs, cumulative µs, raw name)`` per line of ``python -X importtime`` (the raw
    name keeps its indentation, which tells who imported it)."""
    for line in stderr.splitlines():
        # "import time:       self [us] |  cumulative | imported package"
        if not line.startswith("import time:") or "imported package" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|", 2)
        yield int(own), int(cumulative), name


def timing_args(
    description: str, argv: list[str] | None, *, runs: int, warmup: int, what: str
) -> argparse.Namespace:
    """``--runs``, ``--warmup`` and ``--json``, checked."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--runs", type=int, default=runs, help=f"timed runs per {what} (default {runs})"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=warmup,
        help=f"untimed {'runs' if what == 'tool' else 'rounds'} first (default {warmup})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    args.error = parser.error
    return args
