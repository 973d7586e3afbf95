"""The one place where exceptions become messages and exit codes.

json and traceback are imported at the top on purpose: after ``receive -Z USER`` drops
privileges the interpreter may no longer be able to read its own standard library (seen
with a Python under /root), and reporting an error must still work then.

With ``--json`` on the command line, stdout holds exactly one JSON document whatever
happens: the command's own, or (when it fails before writing one) the error as data, for
click's usage errors too, so that a script never has to parse stderr. The only exception
is ``-w -``: stdout carries the capture then, and the error document goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import click

from vmsniff.cli._context import Env
from vmsniff.errors import VmsniffError
from vmsniff.exitcodes import ExitCode

__all__ = ["ClosedPipe", "run"]


class ClosedPipe(Exception):
    """The reader of stdout went away (EPIPE) while a command ran.

    vmsniff's root group raises it in place of the BrokenPipeError, which click would turn
    into ``sys.exit(1)`` before this mapper could see it (click's ``main`` catches every
    EPIPE, in standalone mode or not)."""


def _verbosity(argv: list[str]) -> int:
    # Parsed by hand because the error may come before click parsed anything.
    count = 0
    for arg in argv:
        if arg == "--verbose":
            count += 1
        elif arg.startswith("-") and not arg.startswith("--") and set(arg[1:]) == {"v"}:
            count += len(arg) - 1
    return count


def _options(argv: list[str]) -> list[str]:
    """The arguments before ``--`` (after it, ``--json`` would be a filter word)."""
    return argv[: argv.index("--")] if "--" in argv else argv


def _json_wanted(argv: list[str]) -> bool:
    return "--json" in _options(argv)


def _writes_stdout(argv: list[str]) -> bool:
    """``-w -`` (or ``--write -``): stdout carries a capture, not a JSON document."""
    args = _options(argv)
    pairs = zip(args, [*args[1:], ""], strict=True)
    return any((a in ("-w", "--write") and b == "-") or a in ("-w-", "--write=-") for a, b in pairs)


def _json_error(argv: list[str], env: Env, doc: dict[str, object]) -> None:
    """The error as the one JSON document of a ``--json`` run (unless one was written)."""
    if not _json_wanted(argv) or env.json_written:
        return
    click.echo(json.dumps(doc, indent=2), err=_writes_stdout(argv))
    env.json_written = True


def _error_doc(kind: str, message: str, code: ExitCode) -> dict[str, object]:
    # The same keys as VmsniffError.to_dict(), for errors that are not VmsniffErrors.
    return {"error": kind, "message": message, "hint": None, "exit_code": int(code)}


def _detach_stdout() -> None:
    """Point stdout at /dev/null after its reader went away, so that the interpreter's last
    flush at exit cannot fail again (Python's documentation, "Note on SIGPIPE"); otherwise
    that flush turns a quiet ``vmsniff ... | head`` into exit 1 (or 120)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a test's StringIO: nothing to detach
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def run(command: click.Command, argv: list[str] | None = None) -> int:
    """Run ``command`` and turn every outcome into an exit code, printing what went wrong.

    A closed stdout (``vmsniff ... | head``) is not an error: exit 0, no message.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    env = Env()
    try:
        code = _outcome(command, args, env)
        sys.stdout.flush()  # here, not at exit, where a closed pipe could not be caught
    except (BrokenPipeError, ClosedPipe):
        # The reader of our stdout went away (`vmsniff ... | head`): not an error.
        _detach_stdout()
        return int(ExitCode.OK)
    return code


def _outcome(command: click.Command, args: list[str], env: Env) -> int:
    try:
        # obj=env: the root command fills this Env in, so that its JSON bookkeeping is ours
        result = command.main(args=args, prog_name="vmsniff", standalone_mode=False, obj=env)
    except (BrokenPipeError, ClosedPipe):
        raise
    except VmsniffError as exc:
        if _verbosity(args) >= 2:
            traceback.print_exc()
        click.echo(f"vmsniff: error: {exc.message}", err=True)
        for candidate in getattr(exc, "candidates", ()):
            click.echo(f"  - {candidate}", err=True)
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        # Scripts asked for JSON: give them the error as data too (stdout), same exit code.
        _json_error(args, env, exc.to_dict())
        return int(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("vmsniff: interrupted", err=True)
        _json_error(args, env, _error_doc("Interrupted", "interrupted", ExitCode.INTERRUPTED))
        return int(ExitCode.INTERRUPTED)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        _json_error(args, env, _error_doc("UsageError", exc.format_message(), ExitCode.USAGE))
        return int(ExitCode.USAGE)
    except Exception as exc:  # a bug: say so, show where
        traceback.print_exc()
        click.echo(
            "vmsniff: internal error (a bug in vmsniff); please report it with the output above",
            err=True,
        )
        message = f"internal error: {type(exc).__name__}: {exc}"
        _json_error(args, env, _error_doc("InternalError", message, ExitCode.ERROR))
        return int(ExitCode.ERROR)
    return int(result) if isinstance(result, int) else int(ExitCode.OK)
