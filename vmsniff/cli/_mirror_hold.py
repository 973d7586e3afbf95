"""Holding a started mirror session in the foreground, one or many hosts alike."""

from __future__ import annotations

from typing import Any

from vmsniff.cli._context import Env

OVS_STATS_INTERVAL_S = 5  #: ovs-vswitchd's default other_config:stats-update-interval


def hold_with_progress(env: Env, session: Any, duration: float | None, flag: Any) -> str:
    """Hold the session (the library's loop, for every session kind), with a progress line
    on a terminal; why it ended."""
    from vmsniff.mirror import hold_session

    on_tick = None
    live = env.stderr.isatty() and env.verbosity >= 0
    if live:

        def on_tick(elapsed: float, packets: int, bytes_: int) -> None:
            env.stderr.write(f"\r  {elapsed:6.0f} s  {packets} packets  {bytes_} bytes   ")
            env.stderr.flush()

    try:
        return hold_session(session, duration=duration, signalled=lambda: flag.signal,
                            on_tick=on_tick)  # fmt: skip
    finally:
        if live:
            env.stderr.write("\n")
