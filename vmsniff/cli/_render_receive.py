"""Rendering for ``vmsniff receive`` (and ``capture``): the live stats line and the summary.

``capture`` has no envelope to decapsulate, so it passes its own ``fields`` (a subset of the
counters, same names) and ``extra`` keys for the JSON document.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from vmsniff.cli._context import Env

if TYPE_CHECKING:  # the commands import this module at load time: keep it light
    from vmsniff.pipeline.core import Stats

__all__ = ["live_line", "render_failed_run", "render_stats"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_ORDER = (
    "received",
    "decapsulated",
    "malformed",
    "not_tunnelled",
    "filtered_out",
    "written",
    "kernel_dropped",
)


def _line(stats: Stats, fields: Sequence[str] = _ORDER) -> str:
    d = stats.as_dict()
    return ", ".join(f"{d[k]} {k.replace('_', ' ')}" for k in fields)


def live_line(env: Env, fields: Sequence[str] = _ORDER) -> Callable[[Stats], None]:
    """A callback that rewrites one status line on a terminal's stderr."""

    def tick(stats: Stats) -> None:
        env.stderr.write("\r\x1b[2K" + _line(stats, fields))
        env.stderr.flush()

    return tick


def render_stats(
    env: Env,
    stats: Stats,
    *,
    as_json: bool,
    json_to_stderr: bool,
    files: list[str],
    fields: Sequence[str] | None = None,
    extra: Mapping[str, object] | None = None,
) -> None:
    """The end-of-run summary on stderr; ``--json`` as one document (stdout unless ``-w -``).

    ``fields`` narrows the counters shown and put in the document (default: all of receive's).
    """
    if as_json:
        counters = stats.as_dict()
        if fields is not None:
            counters = {k: counters[k] for k in fields}
        doc = {**counters, "files": files, **(extra or {})}
        text = json.dumps(doc, indent=2) + "\n"
        stream = env.stderr if json_to_stderr else env.stdout
        stream.write(text)
        stream.flush()
        return
    if env.stderr.isatty():
        env.stderr.write("\r\x1b[2K")
    if env.verbosity >= 0:
        env.stderr.write(_line(stats, _ORDER if fields is None else fields) + "\n")
        if stats.fragments_held:
            env.stderr.write(f"{stats.fragments_held} IP fragments (reassembled or pending)\n")
        if stats.malformed and env.verbosity >= 1:
            for reason, n in stats.malformed_reasons.items():
                env.stderr.write(f"  malformed: {n} x {reason}\n")
        env.stderr.flush()


def render_failed_run(env: Env, stats: Stats, fields: Sequence[str] = _ORDER) -> None:
    """The counters of a run that a file error ended, as a text line on stderr (also with
    ``--json``: stdout then holds only the error document the CLI prints)."""
    if env.stderr.isatty():
        env.stderr.write("\r\x1b[2K")
    env.stderr.write(_line(stats, fields) + "\n")
    env.stderr.flush()


def flows_extra(env: Env, table: Any, as_json: bool) -> dict[str, object]:
    """--flows: the table on stdout (after the stats), or its JSON for the document."""
    if table is None:
        return {}
    from vmsniff.cli._render import flows_table
    from vmsniff.flows.report import report

    result = report(table.flows(), packets=table.packets, not_flows=table.not_flows)
    if as_json:
        return {"flows": result.to_dict()}
    flows_table(env, result)
    return {}
