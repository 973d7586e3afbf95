"""Rendering for ``vmsniff receive``: the live stats line and the final summary."""

from __future__ import annotations

import json
from collections.abc import Callable

from vmsniff.cli._context import Env
from vmsniff.pipeline.core import Stats

__all__ = ["live_line", "render_stats"]

_ORDER = ("received", "decapsulated", "malformed", "filtered_out", "written", "kernel_dropped")


def _line(stats: Stats) -> str:
    d = stats.as_dict()
    return ", ".join(f"{d[k]} {k.replace('_', ' ')}" for k in _ORDER)


def live_line(env: Env) -> Callable[[Stats], None]:
    """A callback that rewrites one status line on a terminal's stderr."""

    def tick(stats: Stats) -> None:
        env.stderr.write("\r\x1b[2K" + _line(stats))
        env.stderr.flush()

    return tick


def render_stats(
    env: Env, stats: Stats, *, as_json: bool, json_to_stderr: bool, files: list[str]
) -> None:
    """The end-of-run summary on stderr; ``--json`` as one document (stdout unless ``-w -``)."""
    if as_json:
        doc = {**stats.as_dict(), "files": files}
        text = json.dumps(doc, indent=2) + "\n"
        stream = env.stderr if json_to_stderr else env.stdout
        stream.write(text)
        stream.flush()
        return
    if env.stderr.isatty():
        env.stderr.write("\r\x1b[2K")
    if env.verbosity >= 0:
        env.stderr.write(_line(stats) + "\n")
        if stats.fragments_held:
            env.stderr.write(f"{stats.fragments_held} IP fragments (reassembled or pending)\n")
        if stats.malformed and env.verbosity >= 1:
            for reason, n in stats.malformed_reasons.items():
                env.stderr.write(f"  malformed: {n} x {reason}\n")
        env.stderr.flush()
