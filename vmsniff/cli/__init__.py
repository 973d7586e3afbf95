"""The ``vmsniff`` command: a thin click shell over the library.

Subcommands live in their own modules and are imported only when click needs them
(:class:`_LazyGroup`); command modules import click and vmsniff's light modules at the top
and anything heavy (openstacksdk, libvirt, ovsdbapp, scapy, pyroute2) inside the function
that runs the command, so that ``vmsniff --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from vmsniff import __version__
from vmsniff.cli._context import Env
from vmsniff.cli._errors import ClosedPipe, run

__all__ = ["cli", "main"]

#: command name -> "module:attribute"; the only registry of subcommands.
COMMANDS: dict[str, str] = {
    "capture": "vmsniff.cli.capture:capture",
    "cleanup": "vmsniff.cli.mirror:cleanup",
    "flows": "vmsniff.cli.flows:flows",
    "lab": "vmsniff.cli.lab:lab",
    "receive": "vmsniff.cli.receive:receive",
    "list": "vmsniff.cli.mirror:list_command",
    "mirror": "vmsniff.cli.mirror:mirror",
    "resolve": "vmsniff.cli.resolve:resolve",
    "snoop": "vmsniff.cli.snoop:snoop",
}


class _Context(click.Context):
    """click's context, but for the width of help text, worked out by :func:`_help_width`
    when the command line starts (subcommands' contexts inherit it). click's own test
    runner's fixed width (``FORCED_WIDTH``) still wins."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.terminal_width is None and click.formatting.FORCED_WIDTH is None:
            self.terminal_width = _help_width()


class _LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that command is needed."""

    context_class = _Context

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:  # `vmsniff ... | head`: see ClosedPipe
            raise ClosedPipe() from exc

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return _with_verbosity(command)


_VERBOSE_HELP = "More detail; -vv shows tracebacks."
_QUIET_HELP = "Only errors and requested data."


def _merge_verbosity(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value:
        env = ctx.find_object(Env)
        if env is not None:
            env.add_verbosity(**{str(param.name): value})


def _with_verbosity(command: click.Command) -> click.Command:
    """Give ``command`` (and a group's subcommands) their own ``-v``/``-q``, merged with the
    global ones (:meth:`Env.add_verbosity`): users type ``vmsniff mirror -q ...`` as they
    type ``tcpdump -q``, and click would otherwise refuse an option after the subcommand.
    Added once, when the command is first looked up, so command modules need not know."""
    if any(p.name == "verbose" for p in command.params):
        return command
    command.params += [
        click.Option(["-v", "--verbose"], count=True, expose_value=False,
                     callback=_merge_verbosity, help=_VERBOSE_HELP),
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False,
                     callback=_merge_verbosity, help=_QUIET_HELP),
    ]  # fmt: skip
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _with_verbosity(sub)
    return command


def _help_width() -> int:
    """The width click's help formatter would pick (``$COLUMNS``, else the terminal's, at
    most 80, less 2, at least 50; as ``shutil.get_terminal_size`` reads them), without the
    ``shutil`` import click makes for it: that import (with bz2, lzma and fnmatch) is ~5 ms
    of ``vmsniff --help`` (bench/cli_help.py)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return max(min(columns or 80, 80) - 2, 50)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="vmsniff")
@click.option("-v", "--verbose", count=True, help=_VERBOSE_HELP)
@click.option("-q", "--quiet", is_flag=True, help=_QUIET_HELP)
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Colour in human-readable output.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, color: str) -> None:
    """See an OpenStack VM's traffic from the hypervisor side.

    Resolve a VM to its tap and Open vSwitch port, capture or mirror its traffic, and
    clean up after yourself. Run `vmsniff lab up` for a sandbox hypervisor to try it on.
    """
    # The error mapper passes its Env in (obj=) to see whether a --json document was written.
    env = ctx.ensure_object(Env)
    env.verbosity, env.color = (-1 if quiet else verbose), color


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: run the CLI and exit with vmsniff's exit code."""
    raise SystemExit(run(cli, argv))
