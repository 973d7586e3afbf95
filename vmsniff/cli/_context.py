"""The injectable environment of a CLI run: streams, verbosity, colour (tests replace it)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Env", "plain"]


def plain(text: object) -> str:
    """``text`` escaped for rich's markup, so it prints as it is: VM names, reasons and
    messages come from tenants and operators, and ``[/bold]`` in one must not be a tag."""
    from rich.markup import escape

    return escape(str(text))


@dataclass
class Env:
    """What a command needs to talk to the user; rich consoles are created on first use."""

    verbosity: int = 0  #: -1 quiet, 0 normal, 1 -v, 2 -vv (tracebacks)
    color: str = "auto"
    #: a ``--json`` document went to stdout (the error mapper then adds none: one per run)
    json_written: bool = False
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    _out: Console | None = field(default=None, repr=False)
    _err: Console | None = field(default=None, repr=False)

    def _console(self, stream: IO[str]) -> Console:
        from rich.console import Console

        force = {"always": True, "never": False}.get(self.color)
        # Off a terminal rich would wrap at 80 columns and cut table cells; data must stay whole.
        width = None if stream.isatty() else 200

        class _Console(Console):
            def on_broken_pipe(self) -> None:
                # rich would point fd 1 at /dev/null and exit 1; the error mapper decides
                # instead (a closed pipe is a quiet exit 0, for every command alike).
                self.quiet = True
                raise BrokenPipeError

        return _Console(
            file=stream,
            width=width,
            force_terminal=force,
            no_color=self.color == "never",
            highlight=False,
            soft_wrap=False,
            emoji=False,  # a MAC such as fa:16:3e:cd:57:1b holds ":cd:", rich's CD emoji
        )

    @property
    def out(self) -> Console:
        """Rich console on stdout (data and tables)."""
        if self._out is None:
            self._out = self._console(self.stdout)
        return self._out

    @property
    def err(self) -> Console:
        """Rich console on stderr (progress, warnings, errors)."""
        if self._err is None:
            self._err = self._console(self.stderr)
        return self._err

    def json(self, data: Any) -> None:
        """Write one JSON document to stdout (``--json`` output), no colour, no wrapping."""
        self.json_written = True
        self.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        self.stdout.flush()

    def add_verbosity(self, verbose: int = 0, quiet: bool = False) -> None:
        """Merge ``-v``/``-q`` given after a subcommand with the global ones: ``-q`` wins
        wherever it stands, ``-v`` counts add up (``vmsniff -v mirror -v`` is ``-vv``)."""
        if quiet:
            self.verbosity = -1
        elif self.verbosity >= 0:
            self.verbosity += verbose

    def info(self, message: str) -> None:
        """A progress message on stderr, suppressed by ``-q``; printed as it is (no markup:
        messages carry names from the cloud, which tenants choose)."""
        if self.verbosity >= 0:
            self.err.print(plain(message))

    def warn(self, message: str) -> None:
        """A warning on stderr (shown even with ``-q``)."""
        self.err.print(f"[yellow]warning:[/yellow] {plain(message)}")
