"""Rendering for ``vmsniff receive`` (and ``capture``): the live stats line, the live flow
table of ``--flows``, and the summary.

``capture`` has no envelope to decapsulate, so it passes its own ``fields`` (a subset of the
counters, same names) and ``extra`` keys for the JSON document.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from vmsniff.cli._context import Env

if TYPE_CHECKING:  # the commands import this module at load time: keep it light
    from vmsniff.pipeline.core import Stats

__all__ = ["LiveFlows", "live_line", "progress", "render_failed_run", "render_stats"]

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


class LiveFlows:
    """``--flows`` on a terminal: the busiest flows, redrawn in place at most once per
    ``interval`` seconds (and less often when drawing takes long: at most a tenth of the time
    goes to it), the stats line as the table's caption; gone when the run ends, when the
    whole table is printed once (:func:`flows_extra`).

    ``tick`` is the run's ``on_tick`` (:func:`vmsniff.pipeline.run.drive` calls it about
    twice a second); ``clock`` is injectable for tests."""

    def __init__(
        self,
        console: Any,
        table: Any,
        fields: Sequence[str] = _ORDER,
        *,
        top: int | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.table = table
        self.fields = fields
        self.top = top
        self.interval = interval
        self.clock = clock
        self.draws = 0
        self._next = 0.0
        self._live: Any = None

    def render(self, stats: Stats | None) -> Any:
        """The table of the ``top`` busiest flows (by bytes) so far, fitted to the terminal's
        height unless ``top`` says otherwise."""
        from vmsniff.cli._render import flow_rows
        from vmsniff.flows.report import report

        top = self.top if self.top is not None else max(3, self.console.size.height - 9)
        table = self.table
        result = report(table.flows(), packets=table.packets, not_flows=table.not_flows, top=top)
        parts = [_line(stats, self.fields)] if stats is not None else []
        parts += [f"{name} {t['flows']}" for name, t in result.totals.items()]
        return flow_rows(result, caption=", ".join(parts) or None)

    def __enter__(self) -> LiveFlows:
        from rich.live import Live

        self._live = Live(self.render(None), console=self.console, auto_refresh=False,
                          transient=True, redirect_stdout=False, redirect_stderr=False)  # fmt: skip
        self._live.start(refresh=True)
        self._next = self.clock() + self.interval
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def tick(self, stats: Stats) -> None:
        """Redraw when the interval has passed."""
        now = self.clock()
        if now < self._next:
            return
        self._live.update(self.render(stats), refresh=True)
        self.draws += 1
        spent = self.clock() - now
        self._next = now + max(self.interval, 10 * spent)


@contextmanager
def progress(
    env: Env, flows: Any, *, as_json: bool, lines_on_stdout: bool, fields: Sequence[str] = _ORDER
) -> Iterator[Callable[[Stats], None] | None]:
    """A run's ``on_tick``: with ``--flows`` (``flows``: the table) the live flow table when
    stdout is a terminal that no packet line is printed on; else the stats line when stderr
    is a terminal; else nothing. Never with ``--json`` or ``-q``."""
    if as_json or env.verbosity < 0:
        yield None
    elif flows is not None and not lines_on_stdout and env.stdout.isatty():
        with LiveFlows(env.out, flows, fields) as live:
            yield live.tick
    elif env.stderr.isatty():
        yield live_line(env, fields)
    else:
        yield None


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
